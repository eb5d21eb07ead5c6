"""`jzi map-frame`: the static transform from a robot's map frame to the map's own (``jzi_map``).

The node's poses (``/jzi/pose``) are in the map's local frame: x east and y
north [m] from the map's centre. A robot whose ``map`` frame has its origin
elsewhere (robot_localization's datum) publishes this transform once; the
launch file does it itself with ``map_datum:=LAT,LON``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..launch_args import POSE_FRAME, map_frame_transform


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this command."""
    p.add_argument("map", type=Path, help="map directory made by `jzi build-map`")
    p.add_argument("--datum", required=True, help="lat,lon [deg] of the robot's map frame's origin")
    p.add_argument(
        "--crs",
        default="",
        help="projected CRS of the map frame's axes (navsat_transform's UTM zone, e.g. EPSG:32632; "
        "default: east and north at the datum)",
    )
    p.add_argument("--parent", default="map", help="the robot's map frame (default map)")
    p.add_argument(
        "--child", default=POSE_FRAME, help=f"the poses' frame, the node's pose_frame (default {POSE_FRAME})"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the transform and the command that publishes it."""
    tf = map_frame_transform(args.map, args.datum, args.parent, args.child, args.crs)
    value = dict(zip(tf[0::2], tf[1::2], strict=True))
    print(
        f"{args.child} in {args.parent}: x {float(value['--x']):.2f} m, y {float(value['--y']):.2f} m, "
        f"yaw {math.degrees(float(value['--yaw'])):.4f} deg"
    )
    print("ros2 run tf2_ros static_transform_publisher " + " ".join(tf))
    return 0
