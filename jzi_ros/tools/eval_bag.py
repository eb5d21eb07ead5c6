"""`jzi eval-bag`: replay a rosbag2 through the localizer and measure it.

Every camera frame (or every n-th, or those a real-time node would have
taken) is localized; ground truth (``NavSatFix``) is interpolated to the
frame's stamp. Writes metrics.json, frames.csv, pictures, flight.geojson,
truth.tum and fixes.tum (for evo) and a bag of the localized frames beside their fixes (/jzi/fix) and
candidates (/jzi/candidates).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.bags import STORAGES
from ..evaluation import BagEvalConfig, evaluate_bag
from ..localizer import LocalizerConfig, TrackingConfig
from ..localizer.refine import RefineConfig
from ..share import resolve_model
from .common import add_model_argument, calibrated_for, config_from, print_flight_report


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this command."""
    p.add_argument("--bag", required=True, type=Path, help="rosbag2 directory (sqlite3 or MCAP)")
    p.add_argument("--map", required=True, type=Path, help="map directory, indexed for the model")
    add_model_argument(p, "checkpoint from jzi train, or an export folder")
    p.add_argument("--image-topic", required=True, help="camera topic (Image or CompressedImage)")
    p.add_argument("--gt-topic", required=True, help="ground-truth NavSatFix topic")
    p.add_argument(
        "--gt-imu-topic",
        default="",
        help="an INS's true attitude (sensor_msgs/Imu; make-bag writes /gt/imu): the verified headings' errors",
    )
    p.add_argument("--out", type=Path, default=Path("eval_out"), help="folder for the results (default eval_out)")
    p.add_argument("--every", type=int, default=1, help="localize every n-th frame (default 1)")
    p.add_argument("--realtime", action="store_true", help="drop frames like the node would at its measured speed")
    p.add_argument("--max-gap-s", type=float, default=1.0, help="largest ground-truth gap to interpolate over")
    p.add_argument("--beam", type=int, default=4, help="beam width (default 4)")
    p.add_argument(
        "--greedy-above",
        type=float,
        default=1.0,
        help="greedy until unsure: where the best cell holds this share, only it goes on (default 1: the beam)",
    )
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--min-confidence", type=float, default=LocalizerConfig.min_confidence)
    p.add_argument(
        "--trust-unverified",
        action="store_true",
        help="publish zoom fixes the registration could not verify as FIX by their confidence (the node's "
        "trust_unverified parameter)",
    )
    p.add_argument(
        "--matcher",
        default="auto",
        help="registration matcher, as the node's parameter: auto (the model's learned one where it verified more "
        "than cfog), learned, cfog, sift, akaze or orb",
    )
    p.add_argument(
        "--fallback-matcher",
        default=RefineConfig.fallback_matcher,
        help=f"where the model's learned matcher verified none of a frame's places and the heading is known, this "
        f"matcher registers them again with its own checks and covariance factor, as the node's parameter (default "
        f"{RefineConfig.fallback_matcher}; '' for none)",
    )
    p.add_argument(
        "--global-candidates",
        type=int,
        default=RefineConfig.global_candidates,
        help=f"zoom candidates registered for a frame searched over the whole map (or a prior's box) with the IMU's "
        f"heading, as the node's parameter (default {RefineConfig.global_candidates}; at least "
        f"{RefineConfig.candidates}, the number registered when tracking or with the heading searched)",
    )
    p.add_argument(
        "--sweep-places",
        type=int,
        default=RefineConfig.sweep_places,
        help=f"places of a lattice one footprint apart over the map (or a prior's box) registered for a frame with the "
        f"IMU's heading and a height none of whose candidates verified, when there are at most this many, as the "
        f"node's parameter (default {RefineConfig.sweep_places}; 0: never)",
    )
    p.add_argument(
        "--reference-cache-mb",
        type=float,
        default=RefineConfig.reference_cache_mb,
        help=f"memory [MB] for the map's descriptors, described by tile once and reused by the registrations after, "
        f"for a learned matcher trained with a window (train-matcher --window), as the node's parameter (default "
        f"{RefineConfig.reference_cache_mb:g}; 0: each crop described anew)",
    )
    p.add_argument(
        "--backend", default="torch", help="torch, onnxruntime or tensorrt, as the node's backend (default torch)"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--storage", choices=sorted(STORAGES), default="mcap", help="format of the output bag")
    p.add_argument("--imu-topic", default="", help="sensor_msgs/Imu topic: the camera's attitude (default none)")
    p.add_argument(
        "--no-imu-heading",
        dest="imu_heading",
        action="store_false",
        help="use only the IMU's roll and pitch; search the heading",
    )
    p.add_argument(
        "--mount-pitch-deg",
        type=float,
        default=0.0,
        help="the camera looks this far ahead of the body's down axis (make-bag --tilt-forward-deg; default 0)",
    )
    p.add_argument("--height-topic", default="", help="sensor_msgs/Range topic: height above ground (default none)")
    p.add_argument(
        "--height-m",
        type=float,
        default=0.0,
        help="the camera's fixed height above ground [m] without --height-topic, as a ground robot's (default unknown)",
    )
    p.add_argument(
        "--odom-topic",
        default="",
        help="nav_msgs/Odometry topic: between verified fixes the search moves with the robot (default none)",
    )
    p.add_argument("--camera-info-topic", default="", help="sensor_msgs/CameraInfo topic: intrinsics (default none)")
    p.add_argument(
        "--sensor-max-age-s",
        type=float,
        default=0.2,
        help="IMU and height messages more than this from a frame's stamp are stale (default 0.2, the node's)",
    )
    p.add_argument(
        "--no-tracking",
        dest="tracking",
        action="store_false",
        help="search every frame over the whole map (default: near the last verified fix, as the node does)",
    )
    p.add_argument(
        "--max-speed-mps",
        type=float,
        default=TrackingConfig.max_speed_mps,
        help=f"the robot's top ground speed, for tracking (default {TrackingConfig.max_speed_mps:g})",
    )
    p.add_argument(
        "--reacquire-after",
        type=int,
        default=TrackingConfig.reacquire_after,
        help=f"frames without a verified fix before the search is global again (default "
        f"{TrackingConfig.reacquire_after})",
    )
    p.add_argument(
        "--initial-pose-m",
        type=float,
        default=0.0,
        help="start from a known pose: the ground truth at the first frame with this standard deviation [m] and "
        "its direction of travel, as a Nav2 user sets an initial pose (default 0: none, a global start)",
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Replay the bag, print the summary and what was written."""
    model = resolve_model(args.model)
    calibrated_for(args.map, model, args.quiet)
    report = evaluate_bag(config_from(BagEvalConfig, args, model=model))
    print_flight_report(report, f"wrote {report.estimates_path} (the camera frames, /jzi/fix and /jzi/candidates)")
    return 0
