"""Refine and verify: register the frame against the map around the zoom's candidates.

The zoom ends in a terminal cell; this stage makes the fix metric and checks
it. For each candidate (best first) the frame is projected onto the ground
(:func:`ground_view`: the camera's intrinsics, its heading when known, its
tilt when known and its height), a crop of the map's orthophoto pyramid is
read around the candidate (the cell grown by the camera's footprint on every
side), and a :class:`~jzi_ros.localizer.matchers.Matcher` finds
correspondences between the two. The first candidate whose registration
passes every check (:class:`RefineConfig`) is the fix; the others are not
tried. A candidate within a terminal cell of one already registered is
skipped; one farther off is registered even where an earlier crop reached
it, since a crop centred near the place verifies it more often than one
holding it off-centre (the energy floor and the runner-up are the crop's).
The fix is the camera's position on the ground, not the image
centre's, so a tilted camera's fix is not biased by its tilt:

- **Attitude known** (the IMU's roll and pitch; heading known or searched):
  the view is already corrected for tilt and centred on the camera's nadir
  point, so a similarity ``ground = s R(a) rel + t`` fitted to the inliers
  (RANSAC, then least squares: :func:`fit_similarity`) gives the
  position ``t``, the height's error ``s`` and the heading's ``a``.
  Covariance: ``s² (Xᵀ X)⁻¹`` of the linear fit, ``s²`` the residuals'
  variance ``Σ r² / (2n - 4)`` (at least ``(min_sigma_px · gsd)²``); its
  translation block.
- **Tilt unknown**: planar PnP from the image points and the ground points
  they match (OpenCV's IPPE, then Levenberg-Marquardt) gives the camera's
  position, height and tilt. Covariance: the parameters (rotation vector r,
  translation t) have ``s² (Jᵀ J)⁻¹``, J the Jacobian of the inliers'
  reprojections and ``s² = Σ e² / (2n - 6)`` (at least ``min_sigma_px²``);
  the centre ``C = -R(r)ᵀ t`` carries it through ``A = ∂C/∂(r, t)``
  (numerical): ``Σ_C = A Cov Aᵀ``. A nadir view determines tilt and position
  together poorly, and this covariance says so.

Either covariance is multiplied by the matches' overlap (a dense matcher's
patches overlap, so their residuals are not independent: with a stride of
half a patch each pixel is in four) and gets a floor of ``(floor_px · gsd)²``
per axis, gsd being
the registration's ground resolution [m/px]: correspondences between two
images of different dates or sensors are not independent, and the map's own
georeferencing is not exact. The heading's variance
(:attr:`Registration.yaw_variance_deg2`) comes from the same fits (the
similarity's turn, the 3D pose's yaw, the PnP rotation's heading), times the
same overlap (no floor: a map shifted as a whole turns no heading).

Checks, each with the reason it gives when it fails (:attr:`Registration.verdict`):
enough inliers, and a share of the matches (``min_inlier_share``, or
``sure_inlier_share`` when the best global match is ``sure_distinctiveness``
times the runner-up: a distinct match on ground that changed); inliers spread over the image
(the bounding box of the inliers covers ``min_spread`` of the image in both
directions); the best global match distinct from the runner-up
(``min_distinctiveness``; ``min_distinctiveness_searched`` when the heading
is searched, whose 24 tries make a chance match likelier); a plausible height (within ``height_tolerance`` of
the known height, or of the searched range); a tilt below ``max_tilt_deg``; a
heading within ``max_heading_error_deg`` of the known one.

**A second look.** A verification with the heading known that does not stand
out (its best match under ``sure_distinctiveness`` times the runner-up) and
that no tracking gate vouches for (below) is registered again around its pose
at each ground resolution of ``confirm_px`` in turn (the frame's side in
pixels, as ``work_px``; never finer than the map's, so over a map coarser
than the frame a look differs from the first only by its crop, centred on
the accepted pose); it stands when one of them verifies within two of that
registration's pixels of it, and is refused otherwise (the next candidate is
then tried). A frame searched over the whole map with its heading known
has more of the zoom's candidates registered (``global_candidates``, 16,
against ``candidates``, 5): past the fifth, each try is another chance for
a wrong place to pass, so there a match that does not stand out must be
seen again at every resolution of ``confirm_px``. A chance match of a
dozen inliers rarely recurs at another resolution; a right place does: on
the demo's autumn flight searched
frame by frame all five wrong places verified by the general model failed
both second looks, which 61 of the 63 right fixes passed
(``docs/results.md``). A searched heading's match that stands out
(``min_distinctiveness_searched``) is not looked at again. One that falls
short of that but stands out as a known heading's must (``min_distinctiveness``)
is registered again at the heading it found, now known, and must be seen
again at every resolution of ``confirm_px``; tracking's gate, where it
vouches for the place, replaces that as it replaces the check. (A second look
that searched the 24 headings again cost ten points of a tracked flight's
frames: Rotterdam, IMU tilt only, 55 to 45 %.) A keypoint matcher's match (its
distinctiveness infinite) never takes it; a learned matcher's takes it on the
same scale as CFOG's. A frame whose heading and height are both unknown (a
camera alone) is registered at 24 headings and three heights around each
candidate: there every match, however it stands out (a keypoint matcher's
too), is registered again at the heading and height it found and must be seen
again at every resolution of ``confirm_px``, unless tracking's gate vouches for
the place (``docs/results.md``: on three real flights every fix a camera alone
had verified before was a registration metres to kilometres off).

**The map swept.** A frame searched over the whole map (or a prior's box)
with its heading and height known, none of whose candidates verified, is
registered again around the centres of a lattice one camera footprint apart
over that region, nearest to the zoom's first candidate first, when the
lattice has at most ``sweep_places`` places (a small map, or a small box:
the crop around each reaches a footprint beyond the frame, so the lattice
leaves no place unseen). Each place is a late candidate: a match that does
not stand out must be seen again at every resolution of ``confirm_px``. It
turns a zoom that missed into a verified fix where the registration can see
the place (``docs/results.md``: the general model on Rotterdam, 81.8 to
96.8 % of frames one by one, no false fix) at a registration per place; a
frame whose heading is searched (24 headings each) or whose height is unknown
is not swept. The localizer asks for it (``sweep`` of :meth:`Refiner.refine`);
a registration around given candidates alone (the matcher study, the
calibration, the matcher's fitted checks) does not.

**Gated by the robot's motion.** When tracking gives a *gate* (the last
verified fix and how far the robot can have moved since,
:mod:`.tracking`), a registration that lands inside it is also accepted
when only the inlier share or the distinctiveness fell short (never the
minimum of inliers, their spread, the height, tilt or heading): a wrong
match lands inside a gate of radius r within a crop of area A with a
probability of about π r² / A, so the gate is independent evidence for
the place while that share is small (at most ``max_gate_share``, 2 %; a
gate grown larger by a long gap relaxes nothing). :attr:`Registration.forgiven` names
the check it replaced.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import cv2
import numpy as np

from ..geo import BoundsM, CameraPose, Pinhole, ZoomGrid, ground_footprint, image_to_ground
from ..geo.camera import Mount, camera_pose_from_body, quaternion_from_rotation, rotation_from_quaternion
from ..geo.lens import Lens
from ..geo.surface import Orthophoto, Surface, orthorectify
from .described import DescribedMap
from .errors import LocalizerError
from .matchers import DenseMatcher, Matcher, Matches, check_matcher_name, make_matcher
from .tracking import Region

Gate = tuple[np.ndarray, float] | Region
"""Where tracking says the camera is: (centre (2,) [m], radius [m]) first."""


class OrthoReader(Protocol):
    """Anything that reads a crop of a region's orthophoto: the map's pyramid, an in-memory orthophoto."""

    gsd_m: float

    def read(self, bounds: BoundsM, gsd_m: float) -> tuple[np.ndarray, np.ndarray]:
        """RGB (H, W, 3) uint8 and valid (H, W) bool of ``bounds`` [m] at ``gsd_m`` [m/px]."""
        ...


FALLBACK_MATCHERS = ("cfog", "")
"""What may register again where the learned matcher verified nothing: CFOG, or none."""


@dataclass(frozen=True)
class RefineConfig:
    """Settings of the refinement and its checks (the module docstring explains each check).

    ``matcher``: a name of :data:`~jzi_ros.localizer.matchers.MATCHERS`, or ``learned`` (the model's
    learned matcher) or ``auto`` (the model's when it has one, else ``cfog``);
    ``fallback_matcher``: where the model's learned matcher verified none of a frame's places and the
    heading is known, this one (:data:`FALLBACK_MATCHERS`: cfog, whose covariance factor is fitted
    beside the learned one's) registers them again with its own checks ("": none), since the two fail
    on different frames;
    ``candidates``: how many of the zoom's candidates may be registered;
    ``global_candidates``: how many when the heading is known and no
    tracking gate is given (a frame searched over the whole map or a
    prior's box): beyond ``candidates`` a match that does not stand out
    must be seen again at every resolution of ``confirm_px``, not one;
    ``work_px``: side of the ground-projected frame [px] (its ground
    resolution is the footprint over ``work_px``, never finer than the map);
    ``search_footprints``: how far around a candidate's cell the crop reaches,
    in camera footprints; ``heights``: relative heights tried when the height
    is unknown (times ``assumed_height_m``); ``max_gate_share``: the
    largest share of the crop a tracking gate may cover to relax any check;
    ``confirm_px``: the ground-projected frame's sides [px] of the second look
    (empty: none); ``sweep_places``: the most places of a lattice one footprint
    apart over the searched region that a frame none of whose candidates
    verified is registered around (the module docstring; 0: none); ``reference_cache_mb``:
    memory [MB] for the dense matcher's descriptors of the map, described by tile once and
    reused by every registration after, where the matcher's descriptors depend on nearby ground
    alone (:mod:`~jzi_ros.localizer.described`; 0: each crop described anew).
    """

    enabled: bool = True
    matcher: str = "auto"
    fallback_matcher: str = "cfog"
    candidates: int = 5
    global_candidates: int = 16
    work_px: int = 64
    search_footprints: float = 1.0
    min_inliers: int = 10
    min_inlier_share: float = 0.6
    min_spread: float = 0.4
    min_distinctiveness: float = 1.15
    min_distinctiveness_searched: float = 1.5
    sure_distinctiveness: float = 2.0
    sure_inlier_share: float = 0.4
    height_tolerance: float = 0.1
    max_tilt_deg: float = 30.0
    max_heading_error_deg: float = 10.0
    min_sigma_px: float = 0.3
    floor_px: float = 0.5
    heights: tuple[float, ...] = (0.75, 1.0, 1.33)
    max_gate_share: float = 0.02
    confirm_px: tuple[int, ...] = (48, 96)
    sweep_places: int = 144
    reference_cache_mb: float = 32.0

    def __post_init__(self) -> None:
        check_matcher_name(self.matcher)
        if self.fallback_matcher not in FALLBACK_MATCHERS:
            raise LocalizerError(f"the fallback matcher is cfog or '' (none), not {self.fallback_matcher!r}")
        if (
            min(self.candidates, self.global_candidates) < 1
            or min((self.work_px, *self.confirm_px)) < 16
            or self.min_inliers < 4
            or self.sweep_places < 0
            or self.reference_cache_mb < 0
        ):
            raise LocalizerError(
                f"refinement needs candidates and global_candidates >= 1, work_px and confirm_px >= 16, "
                f"min_inliers >= 4, sweep_places >= 0 and reference_cache_mb >= 0, not {self.candidates}, "
                f"{self.global_candidates}, {self.work_px}, {self.confirm_px}, {self.min_inliers}, "
                f"{self.sweep_places}, {self.reference_cache_mb}"
            )

    def registered(self, heading_known: bool, gated: bool) -> int:
        """How many of the zoom's candidates are registered: ``global_candidates`` only with a heading and no gate."""
        return max(self.candidates, self.global_candidates) if heading_known and not gated else self.candidates


@dataclass(frozen=True)
class Attitude:
    """What the robot knows of its camera's orientation, in :class:`~jzi_ros.geo.CameraPose`'s convention.

    ``yaw_deg``: heading of the image's top, clockwise from north (None:
    unknown, searched); ``pitch_deg``/``roll_deg``: the tilt (None: assumed
    level; the PnP recovers it).
    """

    yaw_deg: float | None = None
    pitch_deg: float | None = None
    roll_deg: float | None = None

    @classmethod
    def from_body(
        cls, quaternion_xyzw, mount: Mount = Mount(), heading: bool = True, yaw_offset_deg: float = 0.0
    ) -> Attitude:
        """The camera's attitude from the body's (an IMU's ``orientation``, ENU per REP-103) and the mounting.

        ``heading`` False keeps only the tilt (a yaw that cannot be trusted);
        ``yaw_offset_deg`` is added to the body's yaw (counter-clockwise), for
        sources whose yaw is not ENU's.
        """
        if yaw_offset_deg:
            a = math.radians(yaw_offset_deg)
            turn = np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
            quaternion_xyzw = quaternion_from_rotation(turn @ rotation_from_quaternion(quaternion_xyzw))
        pose = camera_pose_from_body(0.0, 0.0, 1.0, quaternion_xyzw, mount)
        return cls(pose.yaw_deg if heading else None, pose.pitch_deg, pose.roll_deg)

    @classmethod
    def imu_like(cls, pose: CameraPose, rng: np.random.Generator, heading: bool = True) -> Attitude:
        """A camera pose's attitude as an IMU reports it, with :data:`IMU_SIGMAS_DEG` of noise."""
        noise = rng.normal(0, IMU_SIGMAS_DEG)
        yaw = pose.yaw_deg + noise[0] if heading else None
        return cls(yaw, pose.pitch_deg + noise[1], pose.roll_deg + noise[2])


GATE = -1
""":attr:`Registration.candidate` of a registration around tracking's gate."""
SWEPT = -2
""":attr:`Registration.candidate` of a registration around a place of the map's sweep (the module docstring)."""


@dataclass(frozen=True)
class Registration:
    """The outcome of registering a frame around one candidate.

    ``verified``: every check passed; ``verdict``: "ok" or why it was refused;
    the camera's ``east_m``/``north_m`` [m, local frame] and ``height_m`` [m],
    its ``yaw_deg`` and ``tilt_deg``; ``covariance_m2`` (2x2); ``inliers`` of
    ``matches``; ``gsd_m`` the ground resolution it worked at; ``candidate``
    the index of the zoom's candidate it started from (:data:`GATE`: tracking's
    gate, :data:`SWEPT`: a place of the map's sweep); ``forgiven``: the
    check that failed but the motion gate replaced ("" when none did);
    ``altitude_m``: the camera's elevation [m] in the surface model's datum
    when the map has one (its ``height_m`` is then above the surface under it);
    ``yaw_variance_deg2``: the variance [deg²] of ``yaw_deg`` from the fit;
    ``unconfirmed``: the check a searched heading's match fell short of that a
    second look at the heading it found may replace ("" when none); ``matcher``: the name of the
    matcher it registered with (:attr:`RefineConfig.fallback_matcher` where that one verified it).
    """

    verified: bool
    verdict: str
    candidate: int = GATE
    east_m: float = math.nan
    north_m: float = math.nan
    height_m: float = math.nan
    yaw_deg: float = math.nan
    tilt_deg: float = math.nan
    covariance_m2: np.ndarray = field(default_factory=lambda: np.full((2, 2), np.nan))
    inliers: int = 0
    matches: int = 0
    reprojection_px: float = math.nan
    distinctiveness: float = math.nan
    peak: float = math.nan
    scale: float = math.nan
    gsd_m: float = math.nan
    timings_ms: dict = field(default_factory=dict)
    forgiven: str = ""
    altitude_m: float = math.nan
    yaw_variance_deg2: float = math.nan
    unconfirmed: str = ""
    matcher: str = ""


IMU_SIGMAS_DEG = (3.0, 0.5, 0.5)
"""Standard deviations [deg] of the heading, pitch and roll of a flight controller's IMU: the attitude noise
with which registration is calibrated (:func:`jzi_ros.train.calibrate.calibrate_registration`) and measured."""

MAX_VIEW_FOOTPRINTS = 4.0
"""A frame whose ground footprint is this many times longer than wide is too oblique to register."""


def grey(rgb: np.ndarray) -> np.ndarray:
    """A frame as float32 grey (the mean of its channels, robust to any colour balance)."""
    if rgb.ndim == 3:
        rgb = cv2.transform(np.ascontiguousarray(rgb), np.full((1, rgb.shape[2]), 1 / rgb.shape[2], np.float32))
    return rgb.astype(np.float32)


def map_grey(rgb: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """A crop of the map as :func:`grey`, its gaps filled with the mean of what it covers (0 when nothing)."""
    ref = grey(rgb)
    ref[~valid] = float(ref[valid].mean()) if valid.any() else 0.0
    return ref


@dataclass(frozen=True)
class GroundView:
    """A frame projected onto the ground, north up: ``image`` (grey) and ``valid``, ``gsd_m`` [m/px].

    ``bounds`` [m] relative to the camera's nadir point; ``to_frame`` maps a
    pixel (col, row, 1) of the view to a pixel of the original frame.
    """

    image: np.ndarray
    valid: np.ndarray
    gsd_m: float
    bounds: BoundsM
    to_frame: np.ndarray


def ground_view(frame_grey: np.ndarray, camera: Pinhole, pose: CameraPose, gsd_m: float) -> GroundView:
    """Project a frame onto the ground at ``gsd_m`` [m/px] as a camera at ``pose`` (at east = north = 0) sees it."""
    h_ig = image_to_ground(camera, pose)
    w, h = camera.width_px - 1, camera.height_px - 1
    corners = h_ig @ np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], float).T
    if (corners[2] <= 0).any():
        raise LocalizerError("the camera sees the horizon; it cannot be registered against the map")
    ground = corners[:2] / corners[2]
    if np.ptp(ground, axis=1).max() > MAX_VIEW_FOOTPRINTS * np.ptp(ground, axis=1).min():
        raise LocalizerError("the view is too oblique to register against the map")
    west, east = ground[0].min(), ground[0].max()
    south, north = ground[1].min(), ground[1].max()
    width = max(8, int(math.ceil((east - west) / gsd_m)))
    height = max(8, int(math.ceil((north - south) / gsd_m)))
    bounds = BoundsM(west, north - height * gsd_m, west + width * gsd_m, north)
    view_to_ground = np.array([[gsd_m, 0, west + gsd_m / 2], [0, -gsd_m, north - gsd_m / 2], [0, 0, 1.0]])
    to_frame = np.linalg.inv(h_ig) @ view_to_ground
    # shrink the frame first so that the warp does not alias (a pixel of the view covers several of the frame)
    frame_gsd = pose.altitude_m / camera.focal_px
    shrink = min(1.0, 2 * frame_gsd / gsd_m)
    src = frame_grey
    to_src = to_frame
    if shrink < 0.75:
        src = cv2.resize(frame_grey, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
        s = np.diag([shrink, shrink, 1.0])
        s[:2, 2] = (shrink - 1) / 2  # pixel centres at integers
        to_src = s @ to_frame
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    image = cv2.warpPerspective(src, to_src, (width, height), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    ones = np.ones(src.shape[:2], np.uint8)
    valid = cv2.warpPerspective(ones, to_src, (width, height), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) > 0
    return GroundView(image, valid, gsd_m, bounds, to_frame)


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.c_[pts, np.ones(len(pts))] @ m.T
    return p[:, :2] / p[:, 2:3]


def _centre(rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    r, _ = cv2.Rodrigues(rvec)
    return (-r.T @ tvec.reshape(3, 1)).ravel()


def fit_similarity(rel_m: np.ndarray, ground_m: np.ndarray, min_sigma_m: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares similarity ``ground = [[a, -b], [b, a]] rel + (e, n)`` and its covariance.

    Args:
        rel_m: (N, 2) points of the tilt-corrected view [m] relative to the camera's nadir point.
        ground_m: (N, 2) where they lie on the map [m, local frame].
        min_sigma_m: Floor of the residuals' standard deviation [m].

    Returns:
        The parameters (a, b, e, n), their covariance ``s² (Xᵀ X)⁻¹`` (4x4) with
        ``s² = max(Σ r² / (2N - 4), min_sigma_m²)``, and the residuals' RMS
        distance [m]. ``(e, n)`` is the camera's position; its covariance is
        the lower-right 2x2 block.
    """
    n = len(rel_m)
    x = np.zeros((2 * n, 4))
    x[0::2] = np.c_[rel_m[:, 0], -rel_m[:, 1], np.ones(n), np.zeros(n)]
    x[1::2] = np.c_[rel_m[:, 1], rel_m[:, 0], np.zeros(n), np.ones(n)]
    y = np.asarray(ground_m, float).ravel()
    params, *_ = np.linalg.lstsq(x, y, rcond=None)
    res = y - x @ params
    sigma2 = max(float(res @ res) / max(2 * n - 4, 1), min_sigma_m**2)
    cov = sigma2 * np.linalg.inv(x.T @ x)
    return params, cov, float(np.sqrt(np.mean(res.reshape(-1, 2) ** 2) * 2))


def pose_covariance(
    obj: np.ndarray, img: np.ndarray, k: np.ndarray, rvec: np.ndarray, tvec: np.ndarray, min_sigma_px: float
) -> tuple[np.ndarray, float]:
    """Covariance (4x4) of the camera centre [m] and heading [deg] from the PnP fit, and the residuals' RMS [px].

    The formula is in the module docstring; the heading (:func:`_yaw_deg`) is carried like the centre.
    """
    proj, jac = cv2.projectPoints(obj, rvec, tvec, k, None)
    res = (proj.reshape(-1, 2) - img).ravel()
    n = len(obj)
    dof = max(2 * n - 6, 1)
    sigma2 = max(float(res @ res) / dof, min_sigma_px**2)
    j = jac[:, :6]
    cov_params = sigma2 * np.linalg.pinv(j.T @ j)

    def pose(params: np.ndarray) -> np.ndarray:
        r, t = np.split(params, 2)
        return np.r_[_centre(r, t), _yaw_deg(r)]

    a = np.zeros((4, 6))
    params = np.r_[rvec.ravel(), tvec.ravel()]
    for i in range(6):
        d = np.zeros(6)
        d[i] = 1e-6 * max(1.0, abs(params[i]))
        diff = pose(params + d) - pose(params - d)
        diff[3] = (diff[3] + 180.0) % 360.0 - 180.0
        a[:, i] = diff / (2 * d[i])
    return a @ cov_params @ a.T, float(np.sqrt(np.mean(res.reshape(-1, 2) ** 2) * 2))


def _yaw_deg(rvec: np.ndarray) -> float:
    """Heading [deg, clockwise from north, 0-360] of the image top of a camera of world-to-camera rotation ``rvec``."""
    top = -cv2.Rodrigues(np.asarray(rvec, np.float64).reshape(3, 1))[0].T[:, 1]
    return math.degrees(math.atan2(top[0], top[1])) % 360


def solve_pose(
    obj: np.ndarray,
    img: np.ndarray,
    k: np.ndarray,
    centre: np.ndarray,
    yaw_deg: float,
    pitch_deg: float,
    roll_deg: float,
    min_sigma_m: float,
    iterations: int = 10,
) -> tuple[np.ndarray, float, np.ndarray, float]:
    """The camera's centre and heading from 3D points and their pixels, its tilt known (Gauss-Newton).

    Args:
        obj: (N, 3) points of the world [m] (east, north, elevation).
        img: (N, 2) their pixels in the (ideal pinhole) frame.
        k: The pinhole's intrinsic matrix.
        centre: (3,) the centre to start from [m].
        yaw_deg: The heading to start from [deg].
        pitch_deg: The pitch (:class:`~jzi_ros.geo.CameraPose`'s angle), held fixed.
        roll_deg: The roll, held fixed.
        min_sigma_m: Floor of the residuals' standard deviation [m].
        iterations: Most Gauss-Newton steps.

    Returns:
        The centre (3,) [m], the heading [deg], the covariance (4x4) of the
        centre [m²] and the heading [deg²], and the residuals' RMS [m]. Residuals are the pixel errors
        times each point's depth over the focal length: metres across the ray,
        comparable with the flat ground's fit (:func:`fit_similarity`); the
        covariance is ``s² (Jᵀ J)⁻¹`` of the four parameters with ``s² =
        max(Σ r² / (2N - 4), min_sigma_m²)``.
    """
    obj, img = np.asarray(obj, np.float64), np.asarray(img, np.float64)
    f = float(k[0, 0])

    def residuals(p: np.ndarray) -> np.ndarray:
        rot = CameraPose(0.0, 0.0, 1.0, p[3], pitch_deg, roll_deg).rotation()
        cam = (obj - p[:3]) @ rot  # camera coordinates: rotᵀ (X - C), row by row
        depth = np.maximum(cam[:, 2:3], 1e-6)
        uv = cam @ k.T
        return ((uv[:, :2] / uv[:, 2:3] - img) * depth / f).ravel()

    steps = np.array([1e-3, 1e-3, 1e-3, 1e-4])
    p = np.r_[np.asarray(centre, np.float64).ravel(), float(yaw_deg)]

    def jacobian(p: np.ndarray) -> np.ndarray:
        return np.stack(
            [
                (residuals(p + np.eye(4)[i] * steps[i]) - residuals(p - np.eye(4)[i] * steps[i])) / (2 * steps[i])
                for i in range(4)
            ],
            axis=1,
        )

    for _ in range(iterations):
        r, j = residuals(p), jacobian(p)
        delta, *_ = np.linalg.lstsq(j, -r, rcond=None)
        p = p + delta
        if np.abs(delta[:3]).max() < 1e-4 and abs(delta[3]) < 1e-5:
            break
    r, j = residuals(p), jacobian(p)
    n = len(obj)
    sigma2 = max(float(r @ r) / max(2 * n - 4, 1), min_sigma_m**2)
    cov = sigma2 * np.linalg.pinv(j.T @ j)
    return p[:3], float(p[3]), cov, float(np.sqrt(np.mean(r.reshape(-1, 2) ** 2) * 2))


class Refiner:
    """Registers frames against a map's orthophoto (see the module docstring)."""

    def __init__(
        self,
        grid: ZoomGrid,
        ortho: OrthoReader,
        config: RefineConfig = RefineConfig(),
        surface: Surface | None = None,
        learned: Matcher | None = None,
    ) -> None:
        """``learned``: the model's learned matcher, used for ``matcher`` ``learned`` and ``auto``.

        With it, :attr:`fallback` registers what it verifies nowhere (:attr:`RefineConfig.fallback_matcher`).
        """
        self.grid, self.ortho, self.config, self.surface = grid, ortho, config, surface
        use_learned = learned is not None and config.matcher in ("auto", "learned")
        self.matcher: Matcher = learned if use_learned else make_matcher(config.matcher)  # type: ignore[assignment]
        self._described: tuple[Matcher, DescribedMap] | None = None
        self.fallback: Refiner | None = None
        if use_learned and config.fallback_matcher:
            again = replace(config, matcher=config.fallback_matcher, fallback_matcher="")
            self.fallback = Refiner(grid, ortho, again, surface)

    def refine(
        self,
        frame_rgb: np.ndarray,
        camera: Pinhole,
        candidates_m: np.ndarray,
        attitude: Attitude = Attitude(),
        height_m: float | None = None,
        assumed_height_m: float | None = None,
        gate: Gate | None = None,
        sweep: BoundsM | None = None,
    ) -> Registration:
        """Register the frame around the candidates (N, 2) [m] in order; the first verified one, else the best refusal.

        ``height_m``: the camera's known height above ground [m]; without it
        the heights :attr:`RefineConfig.heights` x ``assumed_height_m`` are tried.
        ``gate``: (centre (2,) [m], radius [m]) where tracking says the camera
        is: its centre is tried first, before the candidates
        (:attr:`Registration.candidate` -1), and the module docstring says
        what it relaxes. ``sweep``: the searched region [m] (the map, a prior's box)
        to sweep when none of the candidates verifies (the module docstring; None:
        no sweep, a registration around the candidates alone).
        """
        t0 = time.perf_counter()
        c = self.config
        if height_m is None and assumed_height_m is None:
            raise LocalizerError("registration needs the camera's height (height_m) or an assumed height")
        if height_m is not None:
            heights = [float(height_m)]
            band = (height_m * (1 - c.height_tolerance), height_m * (1 + c.height_tolerance))
        else:
            assumed = float(assumed_height_m)  # type: ignore[arg-type]
            heights = [assumed * f for f in c.heights]
            band = (min(heights) / (1 + c.height_tolerance), max(heights) * (1 + c.height_tolerance))
        g = grey(frame_rgb)
        blind = attitude.yaw_deg is None and height_m is None  # a camera alone: the most tries per candidate
        cell = self.grid.terminal_size_m
        searched: list[np.ndarray] = []
        best: Registration | None = None
        count = c.registered(attitude.yaw_deg is not None, gate is not None)
        starts = list(enumerate(np.asarray(candidates_m, float).reshape(-1, 2)[:count]))
        if gate is not None:
            starts.insert(0, (GATE, np.asarray(gate[0], float)))
        elif sweep is not None and attitude.yaw_deg is not None and height_m is not None:
            first = starts[0][1] if starts else np.zeros(2)
            starts += [(SWEPT, p) for p in self._sweep(camera, height_m, sweep, first)]
        for idx, centre in starts:
            if any(np.abs(centre - s).max() <= 1.01 * cell for s in searched):
                continue  # next to a candidate already registered: its crop would be nearly the same
            # one of many tried (a late candidate; 24 headings at 3 heights): a chance match must recur at every look
            late = idx >= c.candidates or idx == SWEPT or blind
            for h in heights:
                reg = self._register(g, camera, centre, attitude, h, band, gate, every_look=late, blind=blind)
                reg = replace(reg, candidate=idx)
                if best is None or _better(reg, best):
                    best = reg
                if reg.verified:
                    break
            searched.append(centre)
            if best is not None and best.verified:
                break
        if best is None:
            best = Registration(False, "no candidate to register around")
        best = replace(best, matcher=self.matcher.name)
        if not best.verified and self.fallback is not None and attitude.yaw_deg is not None:
            again = self.fallback.refine(
                frame_rgb, camera, candidates_m, attitude, height_m, assumed_height_m, gate, sweep
            )
            if again.verified:
                best = again
        timings = dict(best.timings_ms, refine=(time.perf_counter() - t0) * 1e3)
        return replace(best, timings_ms=timings)

    def _sweep(self, camera: Pinhole, height_m: float, r: BoundsM, first: np.ndarray) -> list[np.ndarray]:
        """Centres [m] of a lattice one footprint apart over ``r``, nearest ``first`` first.

        Empty when it would take more than ``sweep_places`` places.
        """
        step = camera.footprint_at(height_m)
        nx, ny = (max(1, math.ceil(side / step)) for side in (r.east_m - r.west_m, r.north_m - r.south_m))
        if nx * ny > self.config.sweep_places:
            return []
        xs = r.west_m + (np.arange(nx) + 0.5) * (r.east_m - r.west_m) / nx
        ys = r.south_m + (np.arange(ny) + 0.5) * (r.north_m - r.south_m) / ny
        places = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
        return list(places[np.argsort(np.hypot(*(places - first).T), kind="stable")])

    def _reach_m(self, camera: Pinhole, height_m: float) -> float:
        return self.config.search_footprints * camera.footprint_at(height_m)

    def _register(
        self,
        frame_grey: np.ndarray,
        camera: Pinhole,
        centre_m: np.ndarray,
        attitude: Attitude,
        height_m: float,
        band: tuple[float, float],
        gate: Gate | None = None,
        work_px: int | None = None,
        every_look: bool = False,
        blind: bool = False,
    ) -> Registration:
        """Register around one candidate: on the flat ground, then (surface model, tilt known) on the surface.

        ``work_px``: the ground-projected frame's side [px] (default the settings'); a second look
        (the module docstring) is taken at the settings' own only, and with ``every_look`` must
        verify at every resolution of ``confirm_px`` (a searched heading's match then always takes it).
        ``blind``: a camera alone (no heading, ``height_m`` a guess among three): every match is
        seen again, at the heading and the height it found.
        """
        c = self.config
        tilt = math.hypot(attitude.pitch_deg or 0.0, attitude.roll_deg or 0.0)
        if tilt > c.max_tilt_deg:
            return Registration(False, f"the camera is tilted {tilt:.0f}°, more than {c.max_tilt_deg:.0f}°")
        pose = CameraPose(
            0.0, 0.0, height_m, attitude.yaw_deg or 0.0, attitude.pitch_deg or 0.0, attitude.roll_deg or 0.0
        )
        footprint = camera.footprint_at(height_m)
        gsd = max(self.ortho.gsd_m, footprint / (work_px or c.work_px))
        described = self.described()
        if described is not None:
            gsd = described.gsd(gsd)  # a resolution the map is described at
        reach = self._reach_m(camera, height_m) + self.grid.terminal_size_m / 2
        t0 = time.perf_counter()
        view = ground_view(frame_grey, camera, pose, gsd)
        b = view.bounds
        crop = BoundsM(
            centre_m[0] + b.west_m - reach,
            centre_m[1] + b.south_m - reach,
            centre_m[0] + b.east_m + reach,
            centre_m[1] + b.north_m + reach,
        )
        # a gate is evidence only while a chance match is unlikely to land in it
        gated = gate is not None and math.pi * gate[1] ** 2 <= c.max_gate_share * (crop.east_m - crop.west_m) * (
            crop.north_m - crop.south_m
        )
        timings: dict[str, float] = {}
        got = self._reference(crop, gsd, timings, t0)
        if got is None:
            return Registration(False, "the map has no imagery around the candidate", gsd_m=gsd, timings_ms=timings)
        crop = got[2]
        t1 = time.perf_counter()
        m = covered(self.matcher.match(view.image, view.valid, got[0], attitude.yaw_deg is not None), got[1])
        t2 = time.perf_counter()
        timings["match"] = (t2 - t1) * 1e3
        reg = self._pose(m, view, crop, gsd, camera, attitude, height_m, band, gated)
        timings["pose"] = (time.perf_counter() - t2) * 1e3
        if self.surface is not None and attitude.pitch_deg is not None and attitude.roll_deg is not None:
            # the flat ground's pose (else the candidate) is where the frame is laid on the surface; a pass
            # that does not start from the flat ground's pose is a second chance for a chance match and, unless
            # tracking's gate vouches for the place, must stand out as a searched heading's does
            flat = reg
            rescue = not math.isfinite(reg.east_m)
            start = np.asarray(centre_m, float) if rescue else np.array([reg.east_m, reg.north_m])
            yaw = attitude.yaw_deg if rescue else reg.yaw_deg
            # from a searched heading's match still to be seen again: at its heading, with a known heading's check
            laid = replace(attitude, yaw_deg=reg.yaw_deg) if reg.unconfirmed else attitude
            for _ in range(2):  # a second pass from the first one's pose when that was refused
                if yaw is None:
                    break
                on_surface = self._on_surface(
                    frame_grey, camera, start, yaw, laid, height_m, band, gated, reach, gsd, rescue and not gated
                )
                if on_surface is None:
                    break
                reg = on_surface
                timings.update({f"surface_{k}": v for k, v in on_surface.timings_ms.items()})
                if reg.verified or not math.isfinite(reg.east_m):
                    break
                start, yaw, rescue = np.array([reg.east_m, reg.north_m]), reg.yaw_deg, True
            if flat.verified and not reg.verified:  # the surface refines a flat verification, never undoes it
                reg = flat
            elif flat.unconfirmed and reg.verified:  # started from a match still to be seen again: so is it
                reg = replace(reg, unconfirmed=flat.unconfirmed)
        in_gate = (
            gate is not None and gated and math.hypot(reg.east_m - gate[0][0], reg.north_m - gate[0][1]) <= gate[1]
        )
        if reg.forgiven and reg.verified and not in_gate:
            reg = replace(reg, verified=False, verdict=reg.forgiven)  # outside the gate: the check stands
        if not reg.verified:
            reg = replace(reg, forgiven="", unconfirmed="")
        elif reg.unconfirmed and work_px is not None:  # a look is never seen again: the check stands
            reg = replace(reg, verified=False, verdict=reg.unconfirmed, unconfirmed="")
        elif (reg.unconfirmed or blind) and work_px is None and not in_gate:
            # a searched heading's match seen again at its heading, now known: one standing out only as a known
            # heading's must, and with the height unknown too (a camera alone) every one, at the height it found
            t3 = time.perf_counter()
            found = replace(attitude, yaw_deg=reg.yaw_deg)
            guessed = blind and math.isfinite(reg.height_m) and reg.height_m > 0  # the height tried was a guess
            again = self._second_look(
                frame_grey, camera, reg, found, reg.height_m if guessed else height_m, band, every_look=True
            )
            refused = reg.unconfirmed and not again.verified
            verdict = f"{reg.unconfirmed}, and {again.verdict}" if refused else again.verdict
            reg = replace(again, verdict=verdict, unconfirmed="")
            timings["confirm"] = (time.perf_counter() - t3) * 1e3
        elif (
            c.confirm_px
            and work_px is None
            and attitude.yaw_deg is not None  # a searched heading's match must stand out (or be seen again)
            and not in_gate
            and not reg.distinctiveness >= c.sure_distinctiveness
        ):
            t3 = time.perf_counter()
            reg = self._second_look(frame_grey, camera, reg, attitude, height_m, band, every_look)
            timings["confirm"] = (time.perf_counter() - t3) * 1e3
        return replace(reg, timings_ms=timings)

    def _second_look(
        self,
        frame_grey: np.ndarray,
        camera: Pinhole,
        reg: Registration,
        attitude: Attitude,
        height_m: float,
        band: tuple[float, float],
        every_look: bool = False,
    ) -> Registration:
        """``reg`` where the frame verifies again around it at one of ``confirm_px`` (``every_look``: at each).

        Else refused, with the resolutions it was not seen at.
        """
        here, missed = np.array([reg.east_m, reg.north_m]), []
        for px in self.config.confirm_px:
            again = self._register(frame_grey, camera, here, attitude, height_m, band, work_px=px)
            if again.verified and math.hypot(again.east_m - here[0], again.north_m - here[1]) <= 2 * again.gsd_m:
                if not every_look:
                    return reg
            else:
                missed.append(f"{px} px")
                if every_look:
                    break
        if every_look and not missed:
            return reg
        return replace(
            reg, verified=False, verdict=f"not seen again at {' or '.join(missed)} around its pose (a chance match)"
        )

    def described(self) -> DescribedMap | None:
        """The map as the matcher describes it, else None.

        A dense matcher whose descriptors depend on nearby ground alone (its ``reach_px``), given
        ``reference_cache_mb``. Made anew when :attr:`matcher` is replaced, so its tiles are always
        the matcher's own.
        """
        m = self.matcher
        if self.config.reference_cache_mb <= 0 or not isinstance(m, DenseMatcher) or m.reach_px is None:
            return None
        if self._described is None or self._described[0] is not m:
            corner = self.grid.bounds_m(())
            origin = (corner.west_m, corner.north_m)
            cache = DescribedMap(self.ortho, m.describe, map_grey, self.config.reference_cache_mb, m.reach_px, origin)
            self._described = (m, cache)
        return self._described[1]

    def _reference(
        self, crop: BoundsM, gsd: float, timings: dict, t0: float
    ) -> tuple[np.ndarray, np.ndarray, BoundsM] | None:
        """The map's crop for the matcher, its coverage and where it lies; None where it has too little.

        With the map described (:attr:`RefineConfig.reference_cache_mb`) the crop is the dense
        matcher's descriptors of it, moved by under half a pixel onto the described tiles; else grey,
        its gaps filled with its mean.
        """
        described = self.described()
        if described is not None:
            crop, ref, valid = described.crop(crop, gsd)
        else:
            ref, valid = self.ortho.read(crop, gsd)  # RGB, made grey below when it is kept
        timings["read"] = timings.get("read", 0.0) + (time.perf_counter() - t0) * 1e3
        if valid.mean() < 0.2:
            return None
        return (ref if described is not None else map_grey(ref, valid)), valid, crop

    def _on_surface(
        self,
        frame_grey: np.ndarray,
        camera: Pinhole,
        start_m: np.ndarray,
        yaw_deg: float,
        attitude: Attitude,
        height_m: float,
        band: tuple[float, float],
        gated: bool,
        reach_m: float,
        gsd: float,
        strict: bool = False,
    ) -> Registration | None:
        """Register the frame orthorectified onto the surface model from ``start_m``; None where the model has no data.

        The camera is put ``height_m`` above the surface at ``start_m`` with
        the attitude's tilt and ``yaw_deg``; the frame is laid on the surface
        (:func:`~jzi_ros.geo.surface.orthorectify`) over its footprint at ``gsd`` [m/px], matched
        against the map's crop grown by ``reach_m``, and the pose solved
        against the matched map points lifted onto the surface
        (:func:`solve_pose`). ``strict``: a pass that does not start from the
        flat ground's pose (a second chance) needs the distinctiveness of a
        searched heading, unless tracking's gate is evidence for the place.
        """
        assert self.surface is not None
        t0 = time.perf_counter()
        ground = float(self.surface.at(start_m[0], start_m[1]))
        if not math.isfinite(ground):
            return None
        pitch, roll = float(attitude.pitch_deg or 0.0), float(attitude.roll_deg or 0.0)
        pose = CameraPose(0.0, 0.0, height_m, yaw_deg, pitch, roll)
        footprint = ground_footprint(camera, pose)
        bounds = BoundsM(
            start_m[0] + footprint[:, 0].min(),
            start_m[1] + footprint[:, 1].min(),
            start_m[0] + footprint[:, 0].max(),
            start_m[1] + footprint[:, 1].max(),
        )
        centre = np.array([start_m[0], start_m[1], ground + height_m])
        ortho = orthorectify(frame_grey, Lens.of(camera), pose.rotation(), centre, self.surface, bounds, gsd)
        if ortho.valid.mean() < 0.2:
            return None
        crop = BoundsM(
            bounds.west_m - reach_m, bounds.south_m - reach_m, bounds.east_m + reach_m, bounds.north_m + reach_m
        )
        timings: dict[str, float] = {}
        got = self._reference(crop, gsd, timings, t0)
        if got is None:
            return Registration(False, "the map has no imagery around the candidate", gsd_m=gsd, timings_ms=timings)
        crop = got[2]
        t1 = time.perf_counter()
        m = covered(self.matcher.match(ortho.image, ortho.valid, got[0], True), got[1])
        t2 = time.perf_counter()
        timings["match"] = (t2 - t1) * 1e3
        reg = self._pose_3d(m, ortho, crop, camera, attitude, yaw_deg, centre, height_m, band, gated, strict)
        timings["pose"] = (time.perf_counter() - t2) * 1e3
        return replace(reg, timings_ms=timings)

    def _pose_3d(
        self,
        m: Matches,
        ortho: Orthophoto,
        crop: BoundsM,
        camera: Pinhole,
        attitude: Attitude,
        yaw_deg: float,
        centre: np.ndarray,
        height_m: float,
        band: tuple[float, float],
        gated: bool,
        strict: bool = False,
    ) -> Registration:
        """The pose from matches between an orthorectified frame and the map, solved against 3D points.

        ``strict``: the global match must stand out as for a searched heading (a second chance).
        """
        assert self.surface is not None
        c, gsd = self.config, ortho.gsd_m
        base: dict[str, Any] = {"matches": len(m), "distinctiveness": m.distinctiveness, "peak": m.peak, "gsd_m": gsd}
        if len(m) < c.min_inliers:
            return Registration(False, f"{len(m)} matches, fewer than {c.min_inliers}", **base)
        seen = np.c_[
            ortho.bounds.west_m + (m.query_px[:, 0] + 0.5) * gsd, ortho.bounds.north_m - (m.query_px[:, 1] + 0.5) * gsd
        ]
        ground = np.c_[
            crop.west_m + (m.reference_px[:, 0] + 0.5) * gsd, crop.north_m - (m.reference_px[:, 1] + 0.5) * gsd
        ]
        # the orthophoto and the map differ by a small similarity (the start's error): it picks the inliers
        model, mask = cv2.estimateAffinePartial2D(
            seen, ground, method=cv2.RANSAC, ransacReprojThreshold=1.5 * gsd, maxIters=500, confidence=0.999
        )
        if model is None or mask is None:
            return Registration(False, "no consistent geometry among the matches", **base)
        q = m.query_px.astype(np.float32).reshape(1, -1, 2)
        img_pts = np.stack(
            [cv2.remap(ortho.frame_px[..., i], q[..., 0], q[..., 1], cv2.INTER_LINEAR).ravel() for i in (0, 1)], axis=1
        ).astype(np.float64)
        heights = self.surface.at(ground[:, 0], ground[:, 1])
        inl = mask.ravel().astype(bool) & np.isfinite(heights)
        refused = self._agreement(m, inl, img_pts, camera, attitude.yaw_deg is not None and not strict, gated, base)
        if refused is not None:
            return refused
        obj = np.c_[ground, heights][inl]
        pitch, roll = float(attitude.pitch_deg or 0.0), float(attitude.roll_deg or 0.0)
        found_centre, yaw, cov, rms_m = solve_pose(
            obj, img_pts[inl], camera.K, centre, yaw_deg, pitch, roll, c.min_sigma_px * gsd
        )
        under = float(self.surface.at(found_centre[0], found_centre[1]))
        if not math.isfinite(under):
            return Registration(False, "the pose lies off the surface model", **base)
        height = float(found_centre[2]) - under
        found = dict(
            base,
            east_m=float(found_centre[0]),
            north_m=float(found_centre[1]),
            height_m=height,
            altitude_m=float(found_centre[2]),
            scale=height / height_m,
            yaw_deg=yaw % 360,
            yaw_variance_deg2=m.overlap * float(cov[3, 3]),
            tilt_deg=float(math.hypot(pitch, roll)),
            covariance_m2=m.overlap * cov[:2, :2] + np.eye(2) * (c.floor_px * gsd) ** 2,
            reprojection_px=rms_m / gsd,
        )
        return self._verdict(found, attitude, band)

    def _pose(
        self,
        m: Matches,
        view: GroundView,
        crop: BoundsM,
        gsd: float,
        camera: Pinhole,
        attitude: Attitude,
        height_m: float,
        band: tuple[float, float],
        gated: bool = False,
    ) -> Registration:
        """The pose from the matches, and the checks; ``gated``: share and distinctiveness are left to the gate."""
        c = self.config
        base: dict[str, Any] = {"matches": len(m), "distinctiveness": m.distinctiveness, "peak": m.peak, "gsd_m": gsd}
        if len(m) < c.min_inliers:
            return Registration(False, f"{len(m)} matches, fewer than {c.min_inliers}", **base)
        ground = np.c_[
            crop.west_m + (m.reference_px[:, 0] + 0.5) * gsd, crop.north_m - (m.reference_px[:, 1] + 0.5) * gsd
        ]
        rel = np.c_[
            view.bounds.west_m + (m.query_px[:, 0] + 0.5) * gsd, view.bounds.north_m - (m.query_px[:, 1] + 0.5) * gsd
        ]
        tilt_known = attitude.pitch_deg is not None and attitude.roll_deg is not None
        if tilt_known:  # the view is tilt-corrected: the map and the view differ by a similarity
            model, mask = cv2.estimateAffinePartial2D(
                rel, ground, method=cv2.RANSAC, ransacReprojThreshold=1.5 * gsd, maxIters=500, confidence=0.999
            )
        else:  # an unknown tilt makes the view a projective image of the ground
            model, mask = cv2.findHomography(rel, ground, cv2.RANSAC, 1.5 * gsd, maxIters=500, confidence=0.999)
        if model is None or mask is None:
            return Registration(False, "no consistent geometry among the matches", **base)
        inl = mask.ravel().astype(bool)
        img_pts = _apply(view.to_frame, m.query_px)
        heading_known = attitude.yaw_deg is not None
        confirmable = not heading_known and bool(c.confirm_px)
        refused = self._agreement(m, inl, img_pts, camera, heading_known, gated, base, confirmable)
        if refused is not None:
            return refused
        if tilt_known:
            return self._similarity(rel[inl], ground[inl], base, gsd, attitude, height_m, band, m.overlap)
        origin = ground.mean(0)
        obj = np.c_[ground - origin, np.zeros(len(ground))]
        k = camera.K
        obj_in, img_in = obj[inl].astype(np.float64), img_pts[inl].astype(np.float64)
        ok, rvecs, tvecs, _ = cv2.solvePnPGeneric(obj_in, img_in, k, None, flags=cv2.SOLVEPNP_IPPE)
        if not ok:
            return Registration(False, "no camera pose fits the matches", **base)
        sols = []
        for rvec, tvec in zip(rvecs, tvecs, strict=True):
            rvec, tvec = cv2.solvePnPRefineLM(obj_in, img_in, k, None, rvec.copy(), tvec.copy())
            centre = _centre(rvec, tvec)
            if centre[2] > 0:
                sols.append((rvec, tvec, centre))
        if not sols:
            return Registration(False, "no camera pose above the ground fits the matches", **base)
        rvec, tvec, centre = min(sols, key=lambda s: _tilt_deg(s[0]))
        cov, rms = pose_covariance(obj_in, img_in, k, rvec, tvec, c.min_sigma_px)
        yaw = _yaw_deg(rvec)
        tilt = _tilt_deg(rvec)
        east, north = float(centre[0] + origin[0]), float(centre[1] + origin[1])
        cov2 = m.overlap * cov[:2, :2] + np.eye(2) * (c.floor_px * gsd) ** 2
        found = dict(
            base,
            east_m=east,
            north_m=north,
            height_m=float(centre[2]),
            yaw_deg=yaw,
            yaw_variance_deg2=m.overlap * float(cov[3, 3]),
            tilt_deg=tilt,
            covariance_m2=cov2,
            reprojection_px=rms,
        )
        return self._verdict(found, attitude, band)

    def _agreement(
        self,
        m: Matches,
        inl: np.ndarray,
        img_pts: np.ndarray,
        camera: Pinhole,
        heading_known: bool,
        gated: bool,
        base: dict,
        confirmable: bool = False,
    ) -> Registration | None:
        """The checks on the matches themselves (count, share, spread, distinctiveness): a refusal, or None.

        Sets ``base["inliers"]``, ``base["forgiven"]`` for a check the gate may replace, and with
        ``confirmable`` (a searched heading, no gate) ``base["unconfirmed"]`` for a distinctiveness
        that a known heading's check would accept: a second look decides (:meth:`_register`).
        """
        c = self.config
        n_in = int(inl.sum())
        base["inliers"] = n_in
        measured = math.isfinite(m.distinctiveness)  # keypoint matchers do not measure it
        share = c.sure_inlier_share if measured and m.distinctiveness >= c.sure_distinctiveness else c.min_inlier_share
        need = max(c.min_inliers, math.ceil(share * len(m)))
        if n_in < need:
            base["forgiven"] = f"{n_in} of {len(m)} matches agree; {need} needed"
            if not gated or n_in < c.min_inliers:
                return Registration(False, base.pop("forgiven"), **base)
        span = np.ptp(img_pts[inl], axis=0) / np.array([camera.width_px, camera.height_px])
        if span.min() < c.min_spread:
            return Registration(False, f"the inliers span only {100 * span.min():.0f} % of the image", **base)
        least = self._least(heading_known)
        if measured and m.distinctiveness < least:
            ambiguous = f"ambiguous: the best match is only {m.distinctiveness:.2f}x the runner-up"
            if gated:
                base["forgiven"] = "; ".join(filter(None, (base.get("forgiven"), ambiguous)))
            elif confirmable and m.distinctiveness >= self._least(True):
                base["unconfirmed"] = ambiguous  # it stands out as a known heading's: looked at again
            else:
                return Registration(False, ambiguous, **base)
        return None

    def _least(self, heading_known: bool) -> float:
        """The least ratio of the best global match to the runner-up that the checks accept."""
        c = self.config
        # a learned matcher, whose peaks stand out more than CFOG's, asks more of them (fitted with it)
        if heading_known:
            return max(c.min_distinctiveness, getattr(self.matcher, "min_distinctiveness", 0.0))
        return max(c.min_distinctiveness_searched, getattr(self.matcher, "searched_distinctiveness", 0.0))

    def _similarity(
        self,
        rel: np.ndarray,
        ground: np.ndarray,
        base: dict,
        gsd: float,
        attitude: Attitude,
        height_m: float,
        band: tuple[float, float],
        overlap: float,
    ) -> Registration:
        """The camera's nadir point from a similarity between the tilt-corrected view and the map (attitude known).

        ``ground = s R(a) rel + t``: the view is the ground around the nadir
        point, so ``t`` is the camera's position, ``s`` its height's error and
        ``a`` (counter-clockwise) its heading's.
        """
        c = self.config
        params, cov, rms_m = fit_similarity(rel, ground, c.min_sigma_px * gsd)
        a, b, east, north = (float(v) for v in params)
        turn_deg = math.degrees(math.atan2(b, a))
        d_turn = np.array([-b, a]) / (a * a + b * b)  # ∂ atan2(b, a) / ∂(a, b)
        turn_var_deg2 = math.degrees(1.0) ** 2 * float(d_turn @ cov[:2, :2] @ d_turn)
        rms_px = rms_m / gsd
        found = dict(
            base,
            east_m=east,
            north_m=north,
            height_m=height_m * math.hypot(a, b),
            scale=math.hypot(a, b),
            yaw_deg=((attitude.yaw_deg or 0.0) - turn_deg) % 360,
            yaw_variance_deg2=overlap * turn_var_deg2,
            tilt_deg=float(math.hypot(attitude.pitch_deg or 0.0, attitude.roll_deg or 0.0)),
            covariance_m2=overlap * cov[2:, 2:] + np.eye(2) * (c.floor_px * gsd) ** 2,
            reprojection_px=rms_px,
        )
        return self._verdict(found, attitude, band)

    def _verdict(self, found: dict, attitude: Attitude, band: tuple[float, float]) -> Registration:
        """The checks of the module docstring on a pose; ``band``: the plausible heights [m]."""
        c = self.config
        h = found["height_m"]
        if not band[0] <= h <= band[1]:
            return Registration(
                False, f"implausible height {h:.1f} m (expected {band[0]:.1f}..{band[1]:.1f} m)", **found
            )
        if found["tilt_deg"] > c.max_tilt_deg:
            return Registration(
                False, f"implausible tilt {found['tilt_deg']:.0f}° (at most {c.max_tilt_deg:.0f}°)", **found
            )
        if attitude.yaw_deg is not None:
            off = abs((found["yaw_deg"] - attitude.yaw_deg + 180) % 360 - 180)
            if off > c.max_heading_error_deg:
                return Registration(False, f"heading {off:.0f}° off the attitude's", **found)
        return Registration(True, "ok", **found)


def covered(m: Matches, valid: np.ndarray) -> Matches:
    """The matches whose map point lies where the map has imagery (a match in a gap matched the filler)."""
    h, w = valid.shape
    col = np.clip(np.rint(m.reference_px[:, 0]).astype(int), 0, w - 1)
    row = np.clip(np.rint(m.reference_px[:, 1]).astype(int), 0, h - 1)
    keep = valid[row, col]
    if keep.all():
        return m
    return replace(m, query_px=m.query_px[keep], reference_px=m.reference_px[keep], score=m.score[keep])


def _tilt_deg(rvec: np.ndarray) -> float:
    """Angle [deg] between the camera's optical axis and straight down."""
    axis = cv2.Rodrigues(rvec)[0].T[:, 2]
    return float(math.degrees(math.acos(float(np.clip(-axis[2], -1.0, 1.0)))))


def _better(a: Registration, b: Registration) -> bool:
    """Whether registration ``a`` is preferable to ``b``: verified first, then more inliers."""
    return (a.verified, a.inliers, a.matches) > (b.verified, b.inliers, b.matches)
