"""Replaying a rosbag2 through the localizer and measuring it: :func:`evaluate_bag`.

Every camera frame (or every n-th, or those a real-time node would have
taken: :func:`select_realtime`) is localized; ground truth (``NavSatFix``,
read by :func:`jzi_ros.data.bags.read_fix_track`) is interpolated to the
frame's stamp, at most over ``max_gap_s``. Each frame with truth gives a row
(:func:`frame_row`): its stamp (``stamp_ns``, and ``t_s`` since the first
frame), truth and estimate, error [m], confidence, the status published (FIX
or NO_FIX), whether the truth lies inside the 95 % ellipse, the covariance
and the timings [ms]. The metrics add what the fixes are worth to a robot
(:func:`.metrics.fix_summary`), the checkpoint's calibration, how frames were
searched (tracking, :mod:`jzi_ros.localizer.tracking`, runs as in the node)
and how fast the fixes came back after each gap in the camera's stream
(:func:`recoveries`). Written to ``out``: ``metrics.json``,
``frames.csv``, pictures (:func:`.plots.plot_eval`), ``flight.geojson``
(truth, fixes, errors and ellipses for QGIS or a web map) and a bag that
holds the localized camera frames with their fixes (``NavSatFix`` on
``/jzi/fix``) and candidates (``PoseArray`` on ``/jzi/candidates``) to scrub
through in a bag viewer (:mod:`.flight_outputs`).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from ..data import bags
from ..data.errors import BagError
from ..data.fixes import FixTrack
from ..data.sensors import (
    AttitudeTrack,
    HeightTrack,
    OdometryTrack,
    read_attitude_track,
    read_height_track,
    read_odometry_track,
)
from ..geo import ZoomGrid
from ..geo.camera import Mount, body_yaw_deg, height_above_ground, yaw_of
from ..geo.errors import GeoError
from ..geo.lens import Lens, lens_of
from ..images import decode_message
from ..localizer import Estimate, InputError, Localizer, LocalizerConfig, Odometry, TrackingConfig
from ..localizer.calibration import MIN_REGISTRATION_FRAMES, ellipse_factor
from ..localizer.localizer import GROUND_MATCHER, HEADING_NEEDED
from ..localizer.matchers import check_matcher_name
from ..localizer.refine import Attitude, RefineConfig
from ..outputs import check_replaceable, check_writable, finish_partial, start_partial
from .errors import EvaluationError
from .flight_outputs import write_geojson, write_replay_bag, write_tum
from .metrics import error_summary, fix_summary, geodesic_m, heading_summary
from .plots import plot_eval

log = logging.getLogger(__name__)

WARMUP_FRAMES = 5
"""Frames localized to measure the per-frame cost of a real-time replay."""
LATENCY_STAGES = ("decode", "encode", "search", "refine", "total")
GAP_S = 2.0
"""A pause of the camera's stream longer than this [s] is a gap after which :func:`recoveries` counts frames."""


@dataclass(frozen=True)
class BagEvalConfig:
    """What `jzi eval-bag` replays and where it writes.

    ``bag``: rosbag2 directory (sqlite3 or MCAP) with camera frames on
    ``image_topic`` (Image or CompressedImage) and ground truth on
    ``gt_topic`` (NavSatFix); ``map`` and ``model``: the map, indexed for the
    model, and its checkpoint; ``out``: folder for the results. ``every``:
    localize every n-th frame; ``realtime``: instead drop frames as the node
    would at the measured speed; ``max_gap_s``: largest ground-truth gap [s]
    to interpolate over. ``beam``, ``greedy_above``, ``top_k``, ``min_confidence``: the
    localizer's (:class:`~jzi_ros.localizer.LocalizerConfig`); ``matcher``, ``fallback_matcher``,
    ``global_candidates``, ``sweep_places``, ``reference_cache_mb``: the registration's (the
    node's parameters of those names); ``backend``,
    ``device``: where it runs; ``storage``: format of the estimates bag;
    ``quiet``: no progress bar. What the robot knows, as the node uses it:
    ``imu_topic`` (``sensor_msgs/Imu`` orientation: the camera's attitude;
    ``imu_heading`` False keeps only its tilt; ``mount_pitch_deg``: the camera
    looks that far ahead of the body's -z, as the node's parameter of that name), ``height_topic``
    (``sensor_msgs/Range``: height above ground; without it ``height_m``, a
    fixed camera height such as a ground robot's, 0 for unknown),
    ``odom_topic`` (``nav_msgs/Odometry``: the search moves with the robot
    between verified fixes, :mod:`jzi_ros.localizer.tracking`) and ``camera_info_topic``
    (``sensor_msgs/CameraInfo``: the whole calibration, each frame with the one
    in force at its stamp); "" for none; a message more
    than ``sensor_max_age_s`` from a frame's stamp is stale (the node's
    parameter of that name). ``tracking``, ``max_speed_mps`` and
    ``reacquire_after``: the search near the last verified fix, as the
    node's parameters of those names. ``initial_pose_m`` (0: none): the robot
    starts from a known pose, the ground truth's position at the first frame
    with this standard deviation [m] and its direction of travel (as a user
    gives Nav2's initial pose), tracked from there. ``gt_imu_topic``
    (``sensor_msgs/Imu``, an INS's true attitude; "" for none): the heading
    of every verified frame (the body's, through the mount) is compared with it.
    """

    bag: Path
    map: Path
    model: Path
    image_topic: str
    gt_topic: str
    out: Path = Path("eval_out")
    every: int = 1
    realtime: bool = False
    max_gap_s: float = 1.0
    beam: int = 4
    greedy_above: float = 1.0
    top_k: int = 5
    min_confidence: float = LocalizerConfig.min_confidence
    trust_unverified: bool = False
    matcher: str = "auto"
    fallback_matcher: str = RefineConfig.fallback_matcher
    global_candidates: int = RefineConfig.global_candidates
    sweep_places: int = RefineConfig.sweep_places
    reference_cache_mb: float = RefineConfig.reference_cache_mb
    backend: str = "torch"
    device: str = "cpu"
    storage: str = "mcap"
    quiet: bool = False
    imu_topic: str = ""
    imu_heading: bool = True
    mount_pitch_deg: float = 0.0
    height_topic: str = ""
    height_m: float = 0.0
    odom_topic: str = ""
    camera_info_topic: str = ""
    sensor_max_age_s: float = 0.2
    tracking: bool = True
    max_speed_mps: float = TrackingConfig.max_speed_mps
    reacquire_after: int = TrackingConfig.reacquire_after
    initial_pose_m: float = 0.0
    gt_imu_topic: str = ""

    def __post_init__(self) -> None:
        if not (self.initial_pose_m >= 0 and math.isfinite(self.initial_pose_m)):
            raise EvaluationError(
                f"initial_pose_m must be 0 (none) or a standard deviation [m], not {self.initial_pose_m}"
            )
        if self.every < 1:
            raise EvaluationError(f"every must be 1 or more, not {self.every}")
        check_matcher_name(self.matcher)
        if not self.max_gap_s >= 0:
            raise EvaluationError(f"max_gap_s must be 0 or more, not {self.max_gap_s}")
        if not (self.height_m >= 0 and math.isfinite(self.height_m)):
            raise EvaluationError(f"height_m must be 0 (unknown) or a height above ground [m], not {self.height_m}")
        if self.storage not in bags.STORAGES:
            raise EvaluationError(f"storage must be one of {', '.join(bags.STORAGES)}, not {self.storage!r}")


@dataclass(frozen=True)
class BagReport:
    """What :func:`evaluate_bag` measured and wrote.

    ``metrics``: the content of ``metrics.json``; ``rows``: the frames with
    ground truth, as in ``frames.csv``; the paths of ``metrics.json``,
    ``frames.csv``, the bag of frames and estimates, ``flight.geojson`` and the pictures.
    """

    metrics: dict
    rows: list[dict]
    metrics_path: Path
    frames_path: Path
    estimates_path: Path
    geojson_path: Path
    pictures: list[Path]


class _Replay(NamedTuple):
    """The outcome of localizing a bag's frames."""

    rows: list[dict]  # one per frame with ground truth (see frame_row)
    estimates: list[tuple[int, Estimate]]  # (stamp [ns], estimate) of every frame localized
    without_truth: int  # frames localized without ground truth within max_gap_s
    rejected: int  # frames the localizer refused (InputError)
    without_attitude: int  # frames without a fresh IMU message (when an IMU topic is given)
    without_height: int  # frames without a fresh, valid height (when a height topic is given)
    first_rejection: str  # why the first refused frame was refused ("" when none was)


class _Sensors(NamedTuple):
    """What the robot knows besides its frames, read from the bag."""

    attitude: AttitudeTrack | None
    height: HeightTrack | None
    cameras: tuple[tuple[int, Lens], ...]  # (stamp [ns], calibration), by stamp

    max_age_ns: int
    odometry: OdometryTrack | None = None
    fixed_height_m: float | None = None  # the camera's height when no rangefinder is read
    true_attitude: AttitudeTrack | None = None  # an INS's, for the headings' errors

    def odometry_at(self, stamp_ns: int) -> Odometry | None:
        """The odometry's pose at a frame's stamp (None: none or stale)."""
        pose = self.odometry.at(stamp_ns, self.max_age_ns) if self.odometry is not None else None
        return Odometry(*pose) if pose is not None else None

    def camera_at(self, stamp_ns: int) -> Lens | None:
        """The calibration in force at a frame's stamp: the last published at or before it (else the first)."""
        if not self.cameras:
            return None
        before = [lens for stamp, lens in self.cameras if stamp <= stamp_ns]
        return before[-1] if before else self.cameras[0][1]

    def at(self, stamp_ns: int) -> tuple[np.ndarray | None, float | None]:
        """The attitude's quaternion and the height [m] at a frame's stamp (None: none, stale or not positive)."""
        q = self.attitude.at(stamp_ns, self.max_age_ns) if self.attitude is not None else None
        r = self.height.at(stamp_ns, self.max_age_ns) if self.height is not None else None
        height = height_above_ground(r, q) if r is not None else None
        if self.height is None:
            height = self.fixed_height_m
        return q, (height if height is not None and height > 0 else None)


def select_realtime(stamps_ns: np.ndarray, cost_s: float) -> np.ndarray:
    """The frames a node localizes when each takes ``cost_s``.

    Whenever the node is free it takes the newest frame that has arrived; the
    frames replaced in between are dropped.

    Args:
        stamps_ns: Sorted frame stamps [ns].
        cost_s: Time [s] to localize one frame.

    Returns:
        Indices into ``stamps_ns`` of the frames taken, ascending.
    """
    t = np.asarray(stamps_ns, np.int64) / 1e9
    picked, i, free_at = [], 0, -np.inf
    while i < len(t):
        j = max(i, int(np.searchsorted(t, free_at, side="right")) - 1)
        picked.append(j)
        free_at = max(free_at, t[j]) + cost_s
        i = j + 1
    return np.array(picked, int)


def frame_row(
    grid: ZoomGrid,
    stamp_ns: int,
    start_ns: int,
    est: Estimate,
    truth_latlon: tuple[float, float],
    true_yaw_deg: float = math.nan,
    mount: Mount = Mount(),
) -> dict:
    """One line of ``frames.csv``: a frame's estimate against its ground truth.

    Args:
        grid: The map's zoom grid (its local frame).
        stamp_ns: The frame's stamp [ns].
        start_ns: The first frame's stamp [ns], the origin of ``t_s``.
        est: The frame's estimate.
        truth_latlon: Ground truth (lat, lon) [deg] at ``stamp_ns``.
        true_yaw_deg: The body's true yaw [deg, REP-103] at ``stamp_ns`` (NaN: unknown).
        mount: How the camera sits on the body (the estimate's heading is the camera's).

    Returns:
        ``stamp_ns``, ``t_s``, truth and estimate [deg], ``error_m``,
        ``confidence``, ``trusted``, ``status`` (FIX or NO_FIX, as
        published), ``verified`` (registered against the map), its
        ``verdict``, ``inliers`` and ``matcher`` (the one that verified it), ``inside_95`` and
        ``mahalanobis2`` (the truth's squared
        Mahalanobis distance under the covariance), the covariance entries
        [m²], the cell path (hex digits) and one ``<stage>_ms`` per timing.
        ``mode``: how the frame was searched (global, tracking or prior);
        ``gated``: verified only because it landed inside tracking's gate.
        ``yaw_deg`` and ``yaw_sigma_deg``: the body's heading (REP-103, from
        the verified registration through ``mount``, as ``/jzi/pose`` has it)
        and its standard deviation; ``yaw_error_deg`` against ``true_yaw_deg``
        (NaN where either is unknown).
    """
    true_lat, true_lon = truth_latlon
    yaw = body_yaw_deg(est.camera, mount) if est.camera is not None else math.nan
    east_m, north_m = (float(v) for v in grid.frame.to_local(true_lat, true_lon))
    return {
        "stamp_ns": stamp_ns,
        "t_s": (stamp_ns - start_ns) / 1e9,
        "true_lat": true_lat,
        "true_lon": true_lon,
        "est_lat": est.lat,
        "est_lon": est.lon,
        "error_m": float(geodesic_m(est.lat, est.lon, true_lat, true_lon)),
        "confidence": est.confidence,
        "trusted": est.trusted,
        "status": "FIX" if est.trusted else "NO_FIX",
        "verified": est.verified,
        "verdict": est.verdict,
        "inliers": est.inliers,
        "matcher": est.matcher,
        "mode": est.mode,
        "gated": est.gated,
        "inside_95": est.contains(east_m, north_m),
        "mahalanobis2": est.mahalanobis2(east_m, north_m),
        "cov_ee_m2": est.covariance_m2[0, 0],
        "cov_en_m2": est.covariance_m2[0, 1],
        "cov_nn_m2": est.covariance_m2[1, 1],
        "path": "".join(f"{a:x}" for a in est.path),
        "yaw_deg": yaw,
        "yaw_sigma_deg": math.sqrt(est.yaw_variance_deg2) if est.yaw_variance_deg2 >= 0 else math.nan,
        "yaw_error_deg": (yaw - true_yaw_deg + 180.0) % 360.0 - 180.0,
        **{f"{k}_ms": v for k, v in est.timings_ms.items()},
    }


def recoveries(stamps_ns: np.ndarray, estimates: list[tuple[int, Estimate]], gap_s: float = GAP_S) -> list[dict]:
    """After each pause of more than ``gap_s`` [s] in the camera's stream: how soon a fix was verified again.

    Args:
        stamps_ns: Sorted stamps [ns] of every frame in the bag (the stream).
        estimates: (stamp [ns], estimate) of the localized frames, in time order.
        gap_s: The shortest pause that counts [s].

    Returns:
        One dict per gap: ``at_s`` (its start, since the first frame),
        ``length_s``, and ``frames_to_verified``: localized frames after the
        gap up to the first verified one (1: the first was verified; None:
        none was before the next gap).
    """
    stamps = np.asarray(stamps_ns, np.int64)
    pauses = np.flatnonzero(np.diff(stamps) > gap_s * 1e9)
    done = np.array([s for s, _ in estimates], np.int64)
    verified = np.array([est.verified for _, est in estimates], bool)
    out = []
    for k, i in enumerate(pauses):
        end = stamps[pauses[k + 1] + 1] if k + 1 < len(pauses) else np.iinfo(np.int64).max
        window = verified[(done >= stamps[i + 1]) & (done < end)]
        out.append(
            {
                "at_s": float(stamps[i] - stamps[0]) / 1e9,
                "length_s": float(stamps[i + 1] - stamps[i]) / 1e9,
                "frames_to_verified": int(np.argmax(window)) + 1 if window.any() else None,
            }
        )
    return out


def refusals(rows: list[dict], most: int = 5) -> dict[str, int]:
    """The commonest reasons frames were not verified (numbers replaced by N), with their counts."""
    counts = Counter(re.sub(r"\d+(\.\d+)?", "N", r["verdict"]) for r in rows if not r["verified"])
    return dict(counts.most_common(most))


def matcher_factor(rows: list[dict], matcher: str) -> dict:
    """``matcher_ellipse_factor`` where a fallback matcher verified some fixes; empty otherwise.

    The factor the covariances of ``matcher``'s own verified fixes need to hold 95 % of the truths:
    what ``jzi calibrate --from-replay`` fits on.
    """
    own = [r["mahalanobis2"] for r in rows if r["verified"] and r.get("matcher") == matcher]
    if len(own) == sum(bool(r["verified"]) for r in rows) or len(own) < MIN_REGISTRATION_FRAMES:
        return {}
    return {"matcher_ellipse_factor": ellipse_factor(np.array(own))}


def frame_statistics(
    rows: list[dict], cell_m: float, verified: bool = True, stages: tuple[str, ...] = LATENCY_STAGES
) -> dict:
    """:func:`.metrics.fix_summary` and ``latency_ms`` (p50 and p95 of each of ``stages``) of frame rows.

    ``verified`` False: the rows do not know whether a frame was verified (a recording without poses).
    With ``verified`` and :data:`~jzi_ros.localizer.calibration.MIN_REGISTRATION_FRAMES` verified
    rows or more, ``verified_ellipse_factor``: the factor their covariances need to hold 95 % of
    the truths (:func:`~jzi_ros.localizer.calibration.ellipse_factor`; ``jzi calibrate --from-replay``
    refits the map's registration factor on an ``eval-bag`` replay).
    """
    d2 = [r["mahalanobis2"] for r in rows if r["verified"]] if verified else []
    factor = {"verified_ellipse_factor": ellipse_factor(np.array(d2))} if len(d2) >= MIN_REGISTRATION_FRAMES else {}
    return {
        **factor,
        **fix_summary(
            [r["error_m"] for r in rows],
            [r["trusted"] for r in rows],
            [r["inside_95"] for r in rows],
            [r["confidence"] for r in rows],
            cell_m,
            [r["verified"] for r in rows] if verified else None,
        ),
        "latency_ms": {
            k: {
                "p50": float(np.percentile([r[f"{k}_ms"] for r in rows], 50)),
                "p95": float(np.percentile([r[f"{k}_ms"] for r in rows], 95)),
            }
            for k in stages
            if f"{k}_ms" in rows[0]
        },
    }


def write_frames_csv(rows: list[dict], path: str | Path) -> Path:
    """Write frame rows (:func:`frame_row`) as a CSV with a header line; returns its path."""
    path = Path(path)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def format_summary(m: dict) -> str:
    """A few lines for people: frame counts, recalls, errors, the published fixes, ellipse coverage, latency.

    Args:
        m: The metrics of :func:`evaluate_bag` (``BagReport.metrics``).

    Returns:
        The lines joined by newlines.
    """
    fix = (
        f"published as FIX: {100 * m['fix_share']:.1f} % of frames; their median {m['fix_median_m']:.1f} m, "
        f"p95 {m['fix_p95_m']:.1f} m, false fixes (>2 cells) {100 * m['false_fix_rate']:.1f} %, "
        f"truth in 95 % ellipse {100 * m['fix_ellipse95_coverage']:.1f} %"
        if m.get("fix_count")
        else "published as FIX: no frame"
    )
    verified = (
        f"verified against the map: {100 * m['verified_share']:.1f} % of frames; their median "
        f"{m['verified_median_m']:.2f} m ({m['verified_median_m'] / m['terminal_size_m']:.3f} cells), "
        f"p95 {m['verified_p95_m']:.1f} m, false accepts (>2 cells) {100 * m['false_accept_rate']:.1f} %, "
        f"truth in 95 % ellipse {100 * m['verified_ellipse95_coverage']:.1f} %"
        if m.get("verified_median_m") is not None
        else "verified against the map: no frame"
        + ("" if m.get("refinement", {}).get("on", True) else f" ({m['refinement']['why']})")
        if "verified_share" in m
        else "verified against the map: not known (no pose topic recorded)"
    )
    cal = m.get("calibration", {})
    if "verified_ellipse_factor" in m:
        # an eval-bag replay of a drone model can be fitted on; a recording or a street model's replay cannot
        factor, refit = m["verified_ellipse_factor"], m.get("registration", {}).get("matcher") != GROUND_MATCHER
        ran, own = cal.get("registration_scale", 1.0), m.get("matcher_ellipse_factor", factor)  # without a fallback's
        verified += f"\nits covariances need x{factor:.2f} to hold 95 % of the truths" + (
            f" (a registration factor of {own * ran:.2f} instead of {ran:.2f}: jzi calibrate --from-replay "
            "fits it on this replay)"
            if refit and "calibration" in m
            else ""
        )
    lines = [
        f"frames: {m['frames_in_bag']} in bag, {m['frames_localized']} localized, {m['frames_dropped']} dropped, "
        f"{m['frames_without_truth']} without ground truth, {m['frames_rejected']} rejected"
        if "frames_localized" in m
        else f"fixes: {m['fixes_recorded']} recorded, {m['frames_without_truth']} without ground truth"
        + (f"; {m['frames_in_bag']} camera frames in the bag" if m.get("frames_in_bag") is not None else ""),
        f"{'R@40m':>8}{'R@50m':>8}{'R@100m':>8}{'R@1cell':>9}{'R@2cell':>9}{'R@4cell':>9}"
        f"{'median':>9}{'mean':>9}{'p95':>9}{'in 95%':>9}",
        f"{100 * m['R@40m']:>7.1f}%{100 * m['R@50m']:>7.1f}%{100 * m['R@100m']:>7.1f}%{100 * m['R@1cell']:>8.1f}%"
        f"{100 * m['R@2cell']:>8.1f}%{100 * m['R@4cell']:>8.1f}%{m['median_m']:>7.1f} m{m['mean_m']:>7.1f} m"
        f"{m['p95_m']:>7.1f} m{100 * m['ellipse95_coverage']:>8.1f}%",
        fix,
        verified,
    ]
    if "confidence_reliability" in m:
        lines.append(
            f"confidence (P within 2 cells) ECE {m['confidence_reliability']['ece']:.3f}; "
            + (
                f"calibration fit on {cal['frames']} frames"
                if cal.get("frames")
                else "the model holds no calibration (the search's own probabilities)"
            )
        )
    lines.append(
        "latency p50/p95 [ms]: " + ", ".join(f"{k} {v['p50']:.1f}/{v['p95']:.1f}" for k, v in m["latency_ms"].items())
    )
    heading = m.get("heading", {})
    if heading.get("count"):
        lines.append(
            f"heading of {heading['count']} verified frames: median error {heading['median_abs_deg']:.2f} deg, "
            f"p95 {heading['p95_abs_deg']:.2f} deg, within 2 sigma {100 * heading['within_2sigma']:.1f} % "
            f"(median sigma {heading['median_sigma_deg']:.2f} deg)"
        )
    if m.get("search_modes"):
        modes = ", ".join(f"{k} {n}" for k, n in sorted(m["search_modes"].items()))
        lines.append(f"searched: {modes} frames" + ("" if m["tracking"]["on"] else " (tracking off)"))
    for gap in m.get("recoveries", []):
        back = gap["frames_to_verified"]
        lines.append(
            f"after the {gap['length_s']:.1f} s gap at {gap['at_s']:.1f} s: "
            + (f"verified again at frame {back}" if back else "never verified again")
        )
    return "\n".join(lines)


def _read_bag(config: BagEvalConfig) -> tuple[FixTrack, list[tuple[int, object]], _Sensors]:
    """Ground truth, the camera messages (stamp [ns], message), sorted by stamp, and the robot's sensors."""
    with bags.BagReader(config.bag) as reader:
        reader.check(config.image_topic, (bags.IMAGE, bags.COMPRESSED), "camera")
        truth = bags.read_fix_track(reader, config.gt_topic)
        sensors = _Sensors(
            read_attitude_track(reader, config.imu_topic) if config.imu_topic else None,
            read_height_track(reader, config.height_topic) if config.height_topic else None,
            (),
            int(config.sensor_max_age_s * 1e9),
            read_odometry_track(reader, config.odom_topic) if config.odom_topic else None,
            config.height_m or None,
            read_attitude_track(reader, config.gt_imu_topic) if config.gt_imu_topic else None,
        )
        if config.camera_info_topic:
            reader.check(config.camera_info_topic, (bags.CAMERA_INFO,), "camera info")
            sensors = sensors._replace(cameras=_read_cameras(reader, config.camera_info_topic, config.bag))
        frames = [(bags.stamp_of(m.msg, m.bag_ns), m.msg) for m in reader.messages([config.image_topic])]
    if not frames:
        raise BagError(f"{config.bag} has no message on {config.image_topic}")
    frames.sort(key=lambda f: f[0])
    return truth, frames, sensors


def _read_cameras(reader: bags.BagReader, topic: str, bag: Path) -> tuple[tuple[int, Lens], ...]:
    """Every calibration on ``topic`` with its stamp [ns], by stamp; a run of equal ones kept once.

    Raises:
        BagError: no message on the topic holds a calibration that can be used.
    """
    cameras: list[tuple[int, Lens]] = []
    refused = ""
    for m in reader.messages([topic]):
        try:
            lens = lens_of(m.msg)
        except GeoError as exc:
            refused = refused or str(exc)
            continue
        if not cameras or cameras[-1][1] != lens:
            cameras.append((bags.stamp_of(m.msg, m.bag_ns), lens))
    if not cameras:
        raise BagError(f"{bag} has no usable message on {topic}" + (f" ({refused})" if refused else ""))
    return tuple(sorted(cameras, key=lambda c: c[0]))


def _localize(
    loc: Localizer,
    stamp_ns: int,
    msg,
    q: np.ndarray | None,
    height_m: float | None,
    sensors: _Sensors,
    config: BagEvalConfig,
) -> Estimate:
    """One frame through the localizer with what the robot knew at its stamp (``sensors.at`` gives q and height)."""
    mount = Mount(pitch_deg=config.mount_pitch_deg)
    attitude = Attitude.from_body(q, mount, heading=config.imu_heading) if q is not None else None
    image, encoding = decode_message(msg)
    return loc.localize(
        image,
        encoding,
        stamp_s=stamp_ns / 1e9,
        camera=sensors.camera_at(stamp_ns),
        attitude=attitude,
        height_m=height_m,
        odometry=sensors.odometry_at(stamp_ns),
    )


def _initial_pose(loc: Localizer, stamp_ns: int, truth: FixTrack, sensors: _Sensors, config: BagEvalConfig) -> None:
    """Give the localizer the ground truth at ``stamp_ns`` as a robot's initial pose (its heading: the track's)."""
    here = truth.at(stamp_ns, config.max_gap_s)
    ahead = truth.at(stamp_ns + 500_000_000, config.max_gap_s)
    if here is None:
        raise BagError(f"{config.bag} has no ground truth at its first frame for the initial pose")
    heading = None
    if ahead is not None:
        (e0, n0), (e1, n1) = (loc.grid.frame.to_local(*p) for p in (here, ahead))
        if math.hypot(float(e1 - e0), float(n1 - n0)) > 0.1:
            heading = math.degrees(math.atan2(float(e1 - e0), float(n1 - n0))) % 360.0
    cov = np.eye(2) * config.initial_pose_m**2
    loc.initial_pose(here[0], here[1], cov, stamp_ns / 1e9, heading, sensors.odometry_at(stamp_ns))


def _replay(
    loc: Localizer,
    frames: list[tuple[int, object]],
    chosen: np.ndarray,
    truth: FixTrack,
    sensors: _Sensors,
    config: BagEvalConfig,
) -> _Replay:
    """Localize the ``chosen`` frames; rows for those with ground truth."""
    rows: list[dict] = []
    estimates: list[tuple[int, Estimate]] = []
    without_truth = rejected = without_attitude = without_height = 0
    first_rejection = ""
    if config.initial_pose_m > 0:
        _initial_pose(loc, frames[chosen[0]][0], truth, sensors, config)
    for i in tqdm(chosen, desc="localizing frames", unit="frame", disable=config.quiet, dynamic_ncols=True):
        stamp_ns, msg = frames[i]
        gt = truth.at(stamp_ns, config.max_gap_s)
        q, height_m = sensors.at(stamp_ns)
        without_attitude += sensors.attitude is not None and q is None
        without_height += sensors.height is not None and height_m is None
        try:
            est = _localize(loc, stamp_ns, msg, q, height_m, sensors, config)
        except InputError as exc:
            rejected += 1
            first_rejection = first_rejection or str(exc)
            log.warning("frame at %d ns skipped: %s", stamp_ns, exc)
            continue
        estimates.append((stamp_ns, est))
        if gt is None:
            without_truth += 1
            continue
        true_q = sensors.true_attitude.at(stamp_ns) if sensors.true_attitude is not None else None
        true_yaw = yaw_of(true_q) if true_q is not None else None
        mount = Mount(pitch_deg=config.mount_pitch_deg)
        rows.append(
            frame_row(loc.grid, stamp_ns, frames[0][0], est, gt, math.nan if true_yaw is None else true_yaw, mount)
        )
    return _Replay(rows, estimates, without_truth, rejected, without_attitude, without_height, first_rejection)


def evaluate_bag(config: BagEvalConfig) -> BagReport:
    """Replay a bag through the localizer; write metrics, frames, pictures and the estimates bag.

    Args:
        config: What to replay and where to write.

    Returns:
        The metrics, the frame rows and the paths written.

    Raises:
        BagError: The bag, a topic or the ground truth is missing or unusable.
    """
    started = time.monotonic()
    out = Path(config.out)
    inputs = (config.bag, config.map, config.model)
    check_replaceable(out, "metrics.json", "evaluation output", inputs)  # before the work, not after it
    check_writable(out)
    truth, frames, sensors = _read_bag(config)
    loc = Localizer(
        config.map,
        config.model,
        backend=config.backend,
        device=config.device,
        config=LocalizerConfig(
            beam=config.beam,
            greedy_above=config.greedy_above,
            top_k=config.top_k,
            min_confidence=config.min_confidence,
            tracking=TrackingConfig(config.tracking, config.max_speed_mps, config.reacquire_after),
            trust_unverified=config.trust_unverified,
            refine=RefineConfig(
                matcher=config.matcher,
                fallback_matcher=config.fallback_matcher,
                global_candidates=config.global_candidates,
                sweep_places=config.sweep_places,
                reference_cache_mb=config.reference_cache_mb,
            ),
        ),
    )
    if loc.heading_known and not (config.imu_topic and config.imu_heading):
        raise EvaluationError(f"{config.model}: {HEADING_NEEDED}: give --imu-topic (without --no-imu-heading)")
    stamps_ns = np.array([f[0] for f in frames], np.int64)
    chosen = np.arange(0, len(frames), config.every)
    if config.realtime:  # measure the per-frame cost on a few frames, then replay as the node would
        warm_ms = []
        for i in chosen[: 4 * WARMUP_FRAMES]:  # a corrupt frame does not stop the measurement
            try:
                stamp_ns, msg = frames[i]
                loc.reset()  # each frame timed as a global search: the node's cost when it has no track
                est = _localize(loc, stamp_ns, msg, *sensors.at(stamp_ns), sensors, config)
                warm_ms.append(est.timings_ms["total"])
            except InputError:
                continue
            if len(warm_ms) == WARMUP_FRAMES:
                break
        if not warm_ms:
            raise BagError(f"the first {4 * WARMUP_FRAMES} frames of {config.bag} cannot be localized")
        log.info("real-time replay at %.1f ms per frame", np.median(warm_ms))
        loc.reset()  # the replay starts afresh, as the node does
        chosen = chosen[select_realtime(stamps_ns[chosen], np.median(warm_ms) / 1e3)]
    replay = _replay(loc, frames, chosen, truth, sensors, config)
    if not replay.estimates:
        raise BagError(
            f"every frame of {config.bag} on {config.image_topic} was refused ({replay.rejected}); "
            f"the first: {replay.first_rejection}"
        )
    if not replay.rows:
        raise BagError(f"no frame of {config.bag} has ground truth within {config.max_gap_s} s on {config.gt_topic}")
    tmp = start_partial(out.with_name(out.name + ".partial"))
    metrics = error_summary([r["error_m"] for r in replay.rows], loc.grid.terminal_size_m)
    registration = loc.refine_summary()
    metrics |= {
        "frames_in_bag": len(frames),
        "frames_localized": len(replay.estimates),
        "frames_dropped": int(len(frames) - len(chosen)),
        "frames_without_truth": replay.without_truth,
        "frames_rejected": replay.rejected,
        "frames_without_attitude": replay.without_attitude,
        "frames_without_height": replay.without_height,
        "sensors": {
            "imu_topic": config.imu_topic,
            "imu_heading": config.imu_heading,
            "height_topic": config.height_topic,
            "height_m": config.height_m,
            "odom_topic": config.odom_topic,
            "camera_info_topic": config.camera_info_topic,
            "gt_imu_topic": config.gt_imu_topic,
        },
        "refinement": loc.refine_summary(),
        "initial_pose_m": config.initial_pose_m,
        "tracking": {
            "on": config.tracking,
            "max_speed_mps": config.max_speed_mps,
            "reacquire_after": config.reacquire_after,
        },
        "search_modes": dict(Counter(est.mode for _, est in replay.estimates)),
        "verified_by_matcher": dict(Counter(est.matcher for _, est in replay.estimates if est.verified)),
        **matcher_factor(replay.rows, registration.get("matcher", "")),
        "recoveries": recoveries(stamps_ns, replay.estimates),
        "refusals": refusals(replay.rows),
        "heading": heading_summary(
            [r["yaw_error_deg"] for r in replay.rows], [r["yaw_sigma_deg"] for r in replay.rows]
        ),
        **frame_statistics(replay.rows, loc.grid.terminal_size_m),
        "min_confidence": config.min_confidence,
        "trust_unverified": config.trust_unverified,
        "registration": registration,
        "calibration": loc.calibration.to_dict(),
        "model_digest": loc.model_digest,
        "region": loc.grid.to_dict(),
        "terminal_size_m": loc.grid.terminal_size_m,
        "bag": str(config.bag),
        "model": str(config.model),
        "map": str(config.map),
        "mode": "realtime" if config.realtime else f"every {config.every}",
        "seconds": round(time.monotonic() - started, 1),
    }
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_frames_csv(replay.rows, tmp / "frames.csv")
    write_replay_bag(replay.estimates, frames, tmp / "estimates", config.storage, image_topic=config.image_topic)
    write_geojson(replay.rows, tmp / "flight.geojson")
    write_tum(loc.grid, replay.rows, tmp)
    pictures = plot_eval(replay.rows, loc.map, tmp)
    finish_partial(tmp, out, "metrics.json", "evaluation output", inputs)
    return BagReport(
        metrics,
        replay.rows,
        out / "metrics.json",
        out / "frames.csv",
        out / "estimates",
        out / "flight.geojson",
        [out / p.name for p in pictures],
    )
