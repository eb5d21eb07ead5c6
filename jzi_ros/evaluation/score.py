"""Scoring what the node published in the field: :func:`score_bag` (`jzi score`).

A recording (``ros2 bag record``) of the node's fixes (``NavSatFix`` on
``/jzi/fix``), optionally its poses (``PoseWithCovarianceStamped`` on
``/jzi/pose``) and the camera, beside a truth (an RTK or GPS ``NavSatFix``,
optionally an INS's attitude) is scored as `jzi eval-bag` scores a replay:
each fix is matched with the truth at its stamp (the camera frame's), and the
rows (:func:`.bag.frame_row`), metrics, pictures, GeoJSON and TUM trajectories
are the same. What only a recording knows: the node's latency, the time from a
frame's stamp to the fix's arrival in the recorder (meaningful when the camera
and the recorder share a clock), and, with the camera's topic, the frames
(by stamp) the node never answered: those it dropped or could not read. A
fix is taken as verified when its pose carries a heading (the node gives one
only to a registered fix); without the pose topic nothing is said about
verification.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import bags
from ..data.errors import BagError
from ..data.sensors import AttitudeTrack, read_attitude_track
from ..geo import MapDir, ZoomGrid
from ..geo.camera import CameraPose, yaw_of
from ..localizer.estimate import Estimate
from ..outputs import check_replaceable, check_writable, finish_partial, start_partial
from .bag import BagReport, frame_row, frame_statistics, refusals, write_frames_csv
from .errors import EvaluationError
from .flight_outputs import write_geojson, write_tum
from .metrics import error_summary, heading_summary
from .plots import plot_eval

UNKNOWN_YAW_VARIANCE_RAD2 = 1.0
"""A pose whose yaw variance is at least this [rad²] carries no heading (the node then says 1e4)."""


@dataclass(frozen=True)
class ScoreConfig:
    """What `jzi score` reads and where it writes.

    ``bag``: the recording; ``map``: the map the node ran with (its local
    frame and cell size); ``fix_topic`` and ``gt_topic``: the node's fixes and
    the truth (both ``NavSatFix``); ``pose_topic``: the node's poses ("" for
    none); ``gt_imu_topic``: an INS's attitude for the headings ("" for none);
    ``image_topic``: the camera, to count the frames left unanswered ("" for
    none); ``max_gap_s``: the largest truth gap [s] interpolated over.
    """

    bag: Path
    map: Path
    fix_topic: str = "/jzi/fix"
    gt_topic: str = "/gps/fix"
    pose_topic: str = ""
    gt_imu_topic: str = ""
    image_topic: str = ""
    out: Path = Path("score_out")
    max_gap_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.max_gap_s >= 0:
            raise EvaluationError(f"max_gap_s must be 0 or more, not {self.max_gap_s}")


def estimate_of(grid: ZoomGrid, fix, pose=None, latency_ms: float = math.nan) -> Estimate:
    """The estimate a published fix (and its pose, if recorded) stands for: position, covariance, status, heading.

    ``latency_ms`` becomes its one timing (``latency_ms`` in the rows).
    The pose's heading is the body's yaw (REP-103); it is kept as the camera
    of a level body on the default mount, which gives that yaw back.
    """
    cov = np.asarray(fix.position_covariance, float).reshape(3, 3)[:2, :2]
    east, north = (float(v) for v in grid.frame.to_local(fix.latitude, fix.longitude))
    trusted = fix.status.status >= 0
    camera, yaw_var = None, math.nan
    if pose is not None:
        o = pose.pose.pose.orientation
        yaw = yaw_of((o.x, o.y, o.z, o.w))
        var_rad2 = float(np.asarray(pose.pose.covariance, float)[35])
        if yaw is not None and var_rad2 < UNKNOWN_YAW_VARIANCE_RAD2:
            camera = CameraPose(east, north, math.nan, (90.0 - yaw) % 360.0)
            yaw_var = math.degrees(1.0) ** 2 * var_rad2
    return Estimate(
        fix.latitude,
        fix.longitude,
        east,
        north,
        cov,
        confidence=math.nan,
        trusted=trusted,
        path=(),
        candidates=[],
        cell_size_m=grid.terminal_size_m,
        timings_ms={"latency": latency_ms},
        verified=camera is not None,
        mode="",
        camera=camera,
        yaw_variance_deg2=yaw_var,
    )


def score_bag(config: ScoreConfig) -> BagReport:
    """Score a recording of the node's fixes against its truth; write what `jzi eval-bag` writes.

    Returns:
        The metrics and rows (``estimates_path`` is the recording itself).

    Raises:
        BagError: The bag, a topic or the truth is missing or unusable.
    """
    started = time.monotonic()
    out = Path(config.out)
    inputs = (config.bag, config.map)
    check_replaceable(out, "metrics.json", "score output", inputs)
    check_writable(out)
    mapdir = MapDir(config.map)
    grid = mapdir.grid
    with bags.BagReader(config.bag) as reader:
        reader.check(config.fix_topic, (bags.NAVSATFIX,), "the node's fixes")
        truth = bags.read_fix_track(reader, config.gt_topic)
        attitude: AttitudeTrack | None = None
        if config.gt_imu_topic:
            attitude = read_attitude_track(reader, config.gt_imu_topic)
        fixes = [(bags.stamp_of(m.msg, m.bag_ns), m.bag_ns, m.msg) for m in reader.messages([config.fix_topic])]
        poses = {}
        if config.pose_topic:
            reader.check(config.pose_topic, (bags.POSE_WITH_COVARIANCE,), "the node's poses")
            poses = {bags.stamp_of(m.msg, m.bag_ns): m.msg for m in reader.messages([config.pose_topic])}
        camera: set[int] | None = None
        if config.image_topic:
            reader.check(config.image_topic, (bags.IMAGE, bags.COMPRESSED), "camera")
            camera = {bags.stamp_of(m.msg, m.bag_ns) for m in reader.messages([config.image_topic])}
    if not fixes:
        raise BagError(f"{config.bag} has no fix on {config.fix_topic}")
    fixes.sort(key=lambda f: f[0])
    rows, latencies, without_truth = [], [], 0
    for stamp_ns, received_ns, fix in fixes:
        gt = truth.at(stamp_ns, config.max_gap_s)
        if gt is None:
            without_truth += 1
            continue
        est = estimate_of(grid, fix, poses.get(stamp_ns), (received_ns - stamp_ns) / 1e6)
        q = attitude.at(stamp_ns) if attitude is not None else None
        true_yaw = yaw_of(q) if q is not None else None
        rows.append(frame_row(grid, stamp_ns, fixes[0][0], est, gt, math.nan if true_yaw is None else true_yaw))
        latencies.append(est.timings_ms["latency"])
    if not rows:
        raise BagError(f"no fix of {config.bag} has ground truth within {config.max_gap_s} s on {config.gt_topic}")
    tmp = start_partial(out.with_name(out.name + ".partial"))
    metrics = error_summary([r["error_m"] for r in rows], grid.terminal_size_m)
    metrics |= frame_statistics(rows, grid.terminal_size_m, verified=bool(config.pose_topic), stages=())
    metrics |= {
        "fixes_recorded": len(fixes),
        "frames_without_truth": without_truth,
        "frames_in_bag": None if camera is None else len(camera),
        "frames_unanswered": None if camera is None else len(camera - {stamp for stamp, _, _ in fixes}),
        "latency_ms": {
            "node": {"p50": float(np.percentile(latencies, 50)), "p95": float(np.percentile(latencies, 95))}
        },
        "heading": heading_summary([r["yaw_error_deg"] for r in rows], [r["yaw_sigma_deg"] for r in rows]),
        "refusals": refusals(rows) if config.pose_topic else {},
        "terminal_size_m": grid.terminal_size_m,
        "topics": {
            "fix": config.fix_topic,
            "gt": config.gt_topic,
            "pose": config.pose_topic,
            "gt_imu": config.gt_imu_topic,
            "image": config.image_topic,
        },
        "bag": str(config.bag),
        "map": str(config.map),
        "seconds": round(time.monotonic() - started, 1),
    }
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_frames_csv(rows, tmp / "frames.csv")
    write_geojson(rows, tmp / "flight.geojson")
    write_tum(grid, rows, tmp)
    pictures = plot_eval(rows, mapdir, tmp)
    finish_partial(tmp, out, "metrics.json", "score output", inputs)
    return BagReport(
        metrics,
        rows,
        out / "metrics.json",
        out / "frames.csv",
        Path(config.bag),
        out / "flight.geojson",
        [out / p.name for p in pictures],
    )
