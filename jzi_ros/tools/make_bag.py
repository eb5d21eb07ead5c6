"""`jzi make-bag`: a simulated flight over a GeoTIFF, written as a rosbag2.

A downward-looking (optionally tilted) pinhole camera flies a lawn-mower
pattern, a random walk or a CSV of waypoints at a given altitude and speed;
its frames are rendered from the orthophoto with motion blur, noise and
slowly drifting exposure, and written with the camera info, the
ground-truth position (``sensor_msgs/NavSatFix``), the IMU attitude
(``sensor_msgs/Imu``) and the rangefinder's height (``sensor_msgs/Range``)
at their own rates.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..data import bags
from ..data.flight import FlightConfig, write_flight
from .build_map import parse_center
from .common import config_from, number_pair


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this command."""
    p.add_argument("--geotiff", nargs="+", type=Path, help="rasters to fly over (with --map: over the map's region)")
    p.add_argument("--map", type=Path, help="fly over the region (and, without --geotiff, the rasters) of a map")
    p.add_argument("--out", required=True, type=Path, help="bag directory to write")
    p.add_argument("--storage", choices=sorted(bags.STORAGES), default="mcap", help="bag format (default mcap)")
    p.add_argument("--center", type=parse_center, help="centre LAT,LON of the flight area (with --geotiff)")
    p.add_argument("--size-m", type=float, help="side of the flight area [m] (default: largest covered square)")
    p.add_argument("--trajectory", default="lawnmower", help="lawnmower, random, or a CSV of latitude,longitude")
    p.add_argument("--altitude-m", type=float, default=None, help="flight altitude above ground [m]")
    p.add_argument("--speed-mps", type=float, default=8.0, help="ground speed [m/s] (default 8)")
    p.add_argument("--duration-s", type=float, default=None, help="flight time [s] (default: the whole pattern)")
    p.add_argument("--camera-hz", type=float, default=5.0, help="camera frame rate (default 5)")
    p.add_argument("--gps-hz", type=float, default=10.0, help="ground-truth fix rate (default 10)")
    p.add_argument("--image-px", type=int, default=224, help="square image side [px] (default 224)")
    p.add_argument("--hfov-deg", type=float, default=60.0, help="horizontal field of view (default 60)")
    p.add_argument("--tilt-deg", type=float, default=3.0, help="random tilt, standard deviation (default 3)")
    p.add_argument("--exposure-s", type=float, default=0.004, help="exposure time for motion blur (default 4 ms)")
    p.add_argument("--compressed", action="store_true", help="write CompressedImage (JPEG) instead of Image")
    p.add_argument("--image-topic", default="/camera/image_raw", help="camera topic (default /camera/image_raw)")
    p.add_argument("--gt-topic", default="/gps/fix", help="ground-truth topic (default /gps/fix)")
    p.add_argument("--imu-topic", default="/imu/data", help='IMU attitude topic (default /imu/data; "" for none)')
    p.add_argument("--imu-hz", type=float, default=50.0, help="IMU rate (default 50)")
    p.add_argument(
        "--imu-yaw-noise-deg", type=float, default=3.0, help="IMU heading error, slowly varying, std (default 3)"
    )
    p.add_argument(
        "--imu-yaw-bias-deg", type=float, default=0.0, help="constant error of the IMU's yaw, CCW (default 0)"
    )
    p.add_argument("--imu-tilt-noise-deg", type=float, default=0.5, help="IMU roll/pitch error, std (default 0.5)")
    p.add_argument(
        "--height-topic",
        default="/rangefinder/range",
        help='rangefinder topic (default /rangefinder/range; "" for none)',
    )
    p.add_argument("--height-hz", type=float, default=20.0, help="rangefinder rate (default 20)")
    p.add_argument(
        "--height-noise-m", type=float, default=None, help="rangefinder noise, std [m] (default 0.5 %% of altitude)"
    )
    p.add_argument(
        "--blackout",
        dest="blackouts",
        type=number_pair(":", "START_S:DURATION_S", "60:10"),
        action="append",
        default=[],
        metavar="START_S:DURATION_S",
        help="a window without camera frames, e.g. 60:10 (repeatable)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Fly, write the bag, and say what it holds."""
    started = time.monotonic()
    flight = write_flight(config_from(FlightConfig, args))
    print(
        f"flew {flight.duration_s:.0f} s at {flight.altitude_m:.0f} m ({flight.footprint_m:.0f} m footprint), "
        f"{flight.speed_mps:g} m/s"
    )
    print(f"wrote {flight.path} ({flight.storage}) in {time.monotonic() - started:.1f} s:")
    for topic, count in flight.topics.items():
        print(f"  {topic}: {count} messages")
    return 0
