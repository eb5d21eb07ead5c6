"""`jzi score`: score what the node published in the field against a truth recorded beside it.

    ros2 bag record -o run /jzi/fix /jzi/pose /gps/fix /camera/image_raw
    jzi score --bag run --map maps/site --gt-topic /gps/fix --pose-topic /jzi/pose

The same metrics, frames.csv, pictures and flight.geojson as `jzi eval-bag`,
the node's latency, and the truth and fixes as TUM trajectories for evo.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..evaluation.score import ScoreConfig, score_bag
from .common import config_from, print_flight_report


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this command."""
    p.add_argument("--bag", required=True, type=Path, help="rosbag2 recording of the node's output (sqlite3 or MCAP)")
    p.add_argument("--map", required=True, type=Path, help="the map the node ran with")
    p.add_argument("--fix-topic", default="/jzi/fix", help="the node's fixes (default /jzi/fix)")
    p.add_argument("--gt-topic", required=True, help="the truth's NavSatFix topic (an RTK or GPS receiver)")
    p.add_argument("--pose-topic", default="", help="the node's poses (/jzi/pose): verification and headings")
    p.add_argument("--gt-imu-topic", default="", help="an INS's attitude (sensor_msgs/Imu): the headings' errors")
    p.add_argument("--image-topic", default="", help="the camera, if recorded: frames the node did not answer")
    p.add_argument("--out", type=Path, default=Path("score_out"), help="folder for the results (default score_out)")
    p.add_argument("--max-gap-s", type=float, default=1.0, help="largest ground-truth gap to interpolate over")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Score the recording, print the summary and what was written."""
    print_flight_report(score_bag(config_from(ScoreConfig, args)))
    return 0
