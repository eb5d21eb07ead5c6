"""The fine stage of a ground robot: the road ahead, projected onto the ground plane, registered against the map.

A street-level camera sees the map's ground only in the lower part of its
frame, steeply foreshortened. :func:`street_view` undoes that (inverse
perspective mapping): with the camera's height and its roll and pitch
(the IMU's, or a level mount), every pixel that sees the ground between
:data:`NEAR_HEIGHTS` camera heights and ``range_m`` ahead is laid on the
ground plane, north up, around the camera. :class:`GroundRegistrar`
correlates that view with the map's orthophoto pyramid (the dense matcher's
oriented-gradient channels, :func:`~jzi_ros.localizer.matchers.cfog`) over
every offset of a search window, for a few headings about the known one.

**What a road tells and what it does not.** Across the road (kerbs, lane
lines, the lawn's edge) the correlation peaks sharply; along a straight road
every stretch looks alike but for its markings, and the peak becomes a
ridge. Every offset of the window therefore weighs as a likelihood,
``exp((score - peak) / (spread * peak))``: a ridge, or a second place that
scores nearly as well, spreads it as much as it makes the place uncertain.
Where the robot is known to be (the odometry's region after a verified fix,
:mod:`.tracking`, or a prior) the fix is the posterior of that likelihood
and the region's Gaussian: across the road the frame decides, along it the
odometry carries the position between crossings and markings.

Checks, each with the reason it gives when it fails: the frame shows enough
ground ahead; the best score is at least ``min_score`` (``min_start_score``
where no track vouches for the place: a start from a prior, or none); with a region, the
likelihood's own mean lies within its 99.9 % bound (the frame agrees with
the odometry) and the posterior's ellipse keeps at most ``max_area_share``
of the region's area (the frame told something); without one, the
likelihood alone is at most ``max_major_m`` long (both directions fixed, as
at a crossing), which a street frame rarely is.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import cv2
import numpy as np

from ..geo import BoundsM, CameraPose, Pinhole, image_to_ground
from .errors import LocalizerError
from .matchers import DenseMatcher, MatcherConfig
from .refine import Attitude, GroundView, OrthoReader, Registration, grey

VIEW_SMOOTH_PX = 1.0
"""Smoothing [view pixels] of a street view after it is read from the frame's pyramid."""
PYRAMID_LEVELS = 4
"""Levels of the frame's pyramid a street view reads from (the nearest ground is seen 8x finer than the view)."""
NEAR_HEIGHTS = 1.5
"""A street view starts this many camera heights ahead: nearer, the robot's own body fills the frame."""
CHI2_999_2DOF = 13.82
"""The 99.9 % bound of a 2-D Mahalanobis distance squared: a measurement farther from the odometry disagrees."""


def street_view(frame_grey: np.ndarray, camera: Pinhole, pose: CameraPose, gsd_m: float, range_m: float) -> GroundView:
    """Project the ground part of a street-level frame onto the ground plane, north up (inverse perspective mapping).

    ``pose`` (at east = north = 0, ``altitude_m`` the camera's height above
    the ground) looks at the horizon (pitch near 90°); every ground point
    from :data:`NEAR_HEIGHTS` heights to ``range_m`` [m] from the camera that
    the frame sees lands in the view at ``gsd_m`` [m/px]; the rest (the sky,
    what lies beyond) is not valid. What stands on the ground (facades,
    trees, cars) is smeared away from the camera, as in any ground-plane
    projection.

    Raises:
        LocalizerError: the frame sees no ground within ``range_m``.
    """
    h_ig = image_to_ground(camera, pose)
    near = NEAR_HEIGHTS * pose.altitude_m
    # where the frame sees the ground in range: its pixels on a coarse grid, laid on the ground
    u, v = np.meshgrid(np.linspace(0, camera.width_px - 1, 33), np.linspace(0, camera.height_px - 1, 33))
    g = h_ig @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
    ahead = g[2] > 0
    ground = g[:2, ahead] / g[2, ahead]
    dist = np.hypot(*ground)
    ground = ground[:, (dist >= near) & (dist <= range_m)]
    if ground.shape[1] < 4:
        raise LocalizerError(f"the frame sees no ground between {near:.1f} and {range_m:.0f} m from the camera")
    west, east = ground[0].min() - 2 * gsd_m, ground[0].max() + 2 * gsd_m
    south, north = ground[1].min() - 2 * gsd_m, ground[1].max() + 2 * gsd_m
    width = max(8, int(math.ceil((east - west) / gsd_m)))
    height = max(8, int(math.ceil((north - south) / gsd_m)))
    bounds = BoundsM(west, north - height * gsd_m, west + width * gsd_m, north)
    view_to_ground = np.array([[gsd_m, 0, west + gsd_m / 2], [0, -gsd_m, north - gsd_m / 2], [0, 0, 1.0]])
    to_frame = np.linalg.inv(h_ig) @ view_to_ground
    cols, rows = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    pix = np.stack([cols.ravel(), rows.ravel(), np.ones(cols.size)])
    p = to_frame @ pix
    w = p[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        x, y = p[0] / w, p[1] / w
    at = view_to_ground @ pix
    dist = np.hypot(at[0], at[1])
    valid = (w > 0) & (x >= 0) & (x <= camera.width_px - 1) & (y >= 0) & (y <= camera.height_px - 1)
    valid &= (dist >= near) & (dist <= range_m)
    # the near ground is seen by many frame pixels per view pixel, the far by few: each view pixel is read from the
    # level of the frame's pyramid at which one frame pixel covers about one view pixel along the line of sight
    per_px = gsd_m * pose.altitude_m * camera.focal_px / np.maximum(dist, near) ** 2
    level = np.clip(np.floor(np.log2(np.maximum(per_px, 1.0))), 0, PYRAMID_LEVELS - 1).astype(int)
    image = np.zeros(height * width, np.float32)
    src: np.ndarray = frame_grey.astype(np.float32)
    for k in range(PYRAMID_LEVELS):
        at = valid & (level == k)
        if at.any():
            s = 2.0**k  # pixel i of level k is centred on pixel s * i of the frame (cv2.pyrDown)
            map_x, map_y = (x[at] / s).astype(np.float32)[None], (y[at] / s).astype(np.float32)[None]
            image[at] = cv2.remap(src, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[0]
        if k + 1 < PYRAMID_LEVELS:
            src = cv2.pyrDown(src)
    view = cv2.GaussianBlur(image.reshape(height, width), (0, 0), VIEW_SMOOTH_PX)
    return GroundView(view, valid.reshape(height, width), gsd_m, bounds, to_frame)


def yaw_for_facing(facing_deg: float, pitch_deg: float, roll_deg: float) -> float:
    """The :class:`~jzi_ros.geo.CameraPose` yaw at which a camera of this tilt faces ``facing_deg`` (from north)."""
    return (facing_deg - CameraPose(0.0, 0.0, 1.0, 0.0, pitch_deg, roll_deg).facing_deg()) % 360.0


@dataclass(frozen=True)
class GroundConfig:
    """Settings of the ground robot's registration (the module docstring explains each check).

    ``range_m``: how far ahead the ground is used [m]; ``gsd_m``: the
    view's ground resolution [m/px]; ``heading_span_deg`` and
    ``heading_step_deg``: headings tried about a known one; ``search_step_deg``:
    the step of the headings tried when none is known; ``spread``: how
    fast an offset's likelihood falls with its score, as a share of the
    peak's (its covariance is the measurement's);
    ``max_reach_m``: the largest window searched around a place [m].
    """

    range_m: float = 12.0
    gsd_m: float = 0.25
    heading_span_deg: float = 4.0
    heading_step_deg: float = 2.0
    search_step_deg: float = 10.0
    spread: float = 0.25
    min_score: float = 0.05
    min_start_score: float = 0.08
    max_major_m: float = 3.0
    max_area_share: float = 0.9
    max_reach_m: float = 30.0
    min_valid_share: float = 0.3
    floor_px: float = 0.5

    def __post_init__(self) -> None:
        values = (self.range_m, self.gsd_m, self.heading_step_deg, self.search_step_deg, self.max_reach_m)
        if not all(math.isfinite(v) and v > 0 for v in values) or not 0 < self.spread < 1:
            raise LocalizerError(
                f"ground registration needs positive range_m, gsd_m, heading steps and max_reach_m and a spread "
                f"within 0..1, not {values} and {self.spread}"
            )


@dataclass(frozen=True)
class _Scored:
    """One heading's correlation over the window: the camera position of every offset and its score."""

    east_m: np.ndarray  # (H, W): where the camera is when the view lies at this offset
    north_m: np.ndarray
    score: np.ndarray  # (H, W) normalized correlation
    yaw_deg: float


def _mahalanobis2(scored: _Scored, centre: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    """(H, W) squared Mahalanobis distance of every offset's camera position from ``centre`` under ``covariance``."""
    d = np.stack([scored.east_m - centre[0], scored.north_m - centre[1]], -1)
    return np.einsum("...i,ij,...j->...", d, np.linalg.inv(covariance), d)


def _yaw_variance(
    yaws: list[float], tops: list[float], best_deg: float, peak: float, step: float, spread: float
) -> float:
    """The heading's variance [deg²]: each heading tried weighs as the offsets do, plus its ``step``'s own."""
    off = (np.asarray(yaws, float) - best_deg + 180.0) % 360.0 - 180.0
    w = np.exp(np.minimum((np.asarray(tops, float) - peak) / (spread * abs(peak) + 1e-12), 0.0))
    return float(w @ off**2 / w.sum() + step**2 / 12.0)


def _moments(weight: np.ndarray, east: np.ndarray, north: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (2,) and covariance (2, 2) [m, m²] of positions under (unnormalized) weights."""
    w = weight.ravel() / weight.sum()
    pts = np.c_[east.ravel(), north.ravel()]
    mean = w @ pts
    d = pts - mean
    return mean, (d * w[:, None]).T @ d


class GroundRegistrar:
    """Registers street-level frames against a map's orthophoto (see the module docstring)."""

    def __init__(self, ortho: OrthoReader, config: GroundConfig = GroundConfig()) -> None:
        self.ortho, self.config = ortho, config
        self.matcher = DenseMatcher(MatcherConfig())
        self.gsd_m = max(config.gsd_m, 0.5 * ortho.gsd_m)

    def register(
        self,
        frame_rgb: np.ndarray,
        camera: Pinhole,
        centre_m: np.ndarray,
        reach_m: float,
        attitude: Attitude,
        height_m: float,
        prior_covariance_m2: np.ndarray | None = None,
        facing_deg: float | None = None,
        tracked: bool = False,
    ) -> Registration:
        """Register the frame in the window of ``reach_m`` [m] about ``centre_m`` (east, north) [m].

        ``attitude``: the camera's (its roll and pitch; a level camera when
        unknown); ``facing_deg`` (where the odometry says the robot faces,
        from a registered heading), else the attitude's heading, else every
        heading is searched.
        ``prior_covariance_m2``: where the robot is known to be (the
        odometry's region, a prior): the fix is the posterior of the
        registration's likelihood and that prior; without one the
        registration alone must fix both directions. ``tracked``: the prior
        is the odometry's region after a verified fix, which vouches for the
        place; a start (a prior, or none) needs ``min_start_score``.
        """
        t0 = time.perf_counter()
        c = self.config
        pitch = attitude.pitch_deg if attitude.pitch_deg is not None else 90.0
        roll = attitude.roll_deg if attitude.roll_deg is not None else 0.0
        if facing_deg is not None:  # the track's heading: a registered one turned by the odometry, finer than a compass
            yaws = [yaw_for_facing(facing_deg, pitch, roll) + d for d in self._span()]
        elif attitude.yaw_deg is not None:
            yaws = [attitude.yaw_deg + d for d in self._span()]
        else:
            yaws = list(np.arange(0.0, 360.0, c.search_step_deg))
        step = c.search_step_deg if facing_deg is None and attitude.yaw_deg is None else c.heading_step_deg
        centre = np.asarray(centre_m, float)
        reach = min(float(reach_m), c.max_reach_m)
        prior = None if prior_covariance_m2 is None else np.asarray(prior_covariance_m2, float)[:2, :2]
        frame_grey = grey(frame_rgb)
        best: tuple[float, _Scored] | None = None
        base: dict = {"gsd_m": self.gsd_m, "height_m": height_m}
        tops: list[float] = []
        for yaw in yaws:
            scored = self._score(
                frame_grey, camera, CameraPose(0.0, 0.0, height_m, yaw % 360.0, pitch, roll), centre, reach
            )
            if isinstance(scored, str):
                return Registration(False, scored, **base)
            inside = np.ones(scored.score.shape, bool)
            if prior is not None:  # the heading that matches best where the robot can be
                inside = _mahalanobis2(scored, centre, prior) <= 9.0
            top = float(scored.score[inside].max()) if inside.any() else -math.inf
            tops.append(top)
            if best is None or top > best[0]:
                best = (top, scored)
        assert best is not None
        peak, scored = best
        base |= {
            "peak": peak,
            "yaw_deg": scored.yaw_deg % 360.0,
            "yaw_variance_deg2": _yaw_variance(yaws, tops, scored.yaw_deg, peak, step, c.spread),
            "tilt_deg": float(math.hypot(pitch - 90, roll)),
        }
        least = c.min_score if tracked else c.min_start_score
        if not peak >= least:
            return Registration(False, f"the ground ahead does not match the map (score {peak:.3f} < {least})", **base)
        # each offset weighs as a likelihood exp((score - peak) / (spread * peak)): a ridge along the road, or a
        # second place that scores nearly as well, widens it as much as it makes the place uncertain
        loglik = (scored.score - peak) / (c.spread * peak)
        floor = np.eye(2) * (c.floor_px * self.gsd_m) ** 2
        at, cov = _moments(np.exp(np.minimum(loglik, 0.0)), scored.east_m, scored.north_m)
        cov = cov + floor
        sig = np.sqrt(np.maximum(np.linalg.eigvalsh(cov), 0.0))
        timings = {"ground": (time.perf_counter() - t0) * 1e3}
        if prior is None:
            found = dict(base, east_m=float(at[0]), north_m=float(at[1]), covariance_m2=cov, timings_ms=timings)
            if sig[1] > c.max_major_m:
                why = f"ambiguous: ±{sig[0]:.1f} by ±{sig[1]:.1f} m, and nothing else to tell the places apart"
                return Registration(False, why, **found)
            return Registration(True, "ok", **found)
        logpost = loglik - 0.5 * _mahalanobis2(scored, centre, prior)
        mean, post = _moments(np.exp(logpost - logpost.max()), scored.east_m, scored.north_m)
        post = post + floor
        found = dict(base, east_m=float(mean[0]), north_m=float(mean[1]), covariance_m2=post, timings_ms=timings)
        off = at - centre
        m2 = float(off @ np.linalg.solve(prior + cov, off))
        if m2 > CHI2_999_2DOF:
            return Registration(False, f"{math.sqrt(m2):.1f} sigma from where the robot is known to be", **found)
        shrink = math.sqrt(max(np.linalg.det(post), 0.0) / max(np.linalg.det(prior), 1e-12))
        if shrink > c.max_area_share:
            why = f"the ground adds little to what is known (the ellipse keeps {100 * shrink:.0f} % of its area)"
            return Registration(False, why, **found)
        return Registration(True, "ok", **found)

    def _span(self) -> list[float]:
        c = self.config
        n = int(round(c.heading_span_deg / c.heading_step_deg))
        return [k * c.heading_step_deg for k in range(-n, n + 1)]

    def _window(self, view: GroundView, centre_m: np.ndarray, reach: float) -> BoundsM:
        """The map's window in which the view is searched: the view about ``centre_m``, grown by ``reach``."""
        b, g = view.bounds, self.gsd_m
        west = math.floor((centre_m[0] + b.west_m - reach) / g) * g
        north = math.ceil((centre_m[1] + b.north_m + reach) / g) * g
        width = int(math.ceil((b.east_m - b.west_m + 2 * reach) / g))
        height = int(math.ceil((b.north_m - b.south_m + 2 * reach) / g))
        return BoundsM(west, north - height * g, west + width * g, north)

    def _score(
        self, frame_grey: np.ndarray, camera: Pinhole, pose: CameraPose, centre_m: np.ndarray, reach: float
    ) -> _Scored | str:
        """The view at ``pose`` correlated over the window about ``centre_m`` (or why it cannot be)."""
        c = self.config
        try:
            view = street_view(frame_grey, camera, pose, self.gsd_m, c.range_m)
        except LocalizerError as exc:
            return str(exc)
        if view.valid.mean() < c.min_valid_share:
            return "the frame shows too little ground ahead"
        window = self._window(view, centre_m, reach)
        rgb, valid = self.ortho.read(window, self.gsd_m)
        if valid.mean() < 0.5:
            return "the map has no imagery around the place"
        ref = grey(rgb)
        ref[~valid] = float(ref[valid].mean())
        mask = cv2.erode(view.valid.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        score = self.matcher._correlate(self.matcher.describe(view.image), mask, self.matcher.describe(ref))
        ys, xs = np.mgrid[0 : score.shape[0], 0 : score.shape[1]]
        # the view's top-left at window pixel (x, y) puts the camera (the view's origin) here
        east = window.west_m + xs * self.gsd_m - view.bounds.west_m
        north = window.north_m - ys * self.gsd_m - view.bounds.north_m
        return _Scored(east, north, score, pose.yaw_deg)
