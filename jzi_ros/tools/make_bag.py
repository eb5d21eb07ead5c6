"""`jzi make-bag`: a simulated flight or ground drive over a GeoTIFF, written as a rosbag2.

With a surface model (``--dsm``, or a generated scene's own) frames are
rendered from the 3D world: relief, facades, occlusion. ``--platform ground``
drives a robot along the roads with a forward or 360° camera, wheel
odometry and IMU (:mod:`jzi_ros.data.drive`).

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
from ..data.drive import write_drive
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
    p.add_argument(
        "--platform",
        choices=("drone", "ground"),
        default="drone",
        help="drone (a camera looking down) or ground (a robot driving the roads, camera ahead)",
    )
    p.add_argument(
        "--trajectory",
        default=None,
        help="drone: lawnmower (default) or random; ground: roads (default); or waypoints (CSV of latitude,longitude "
        "or a GeoJSON LineString)",
    )
    p.add_argument("--altitude-m", type=float, default=None, help="flight altitude above ground [m]")
    p.add_argument("--speed-mps", type=float, default=8.0, help="ground speed [m/s] (default 8)")
    p.add_argument("--duration-s", type=float, default=None, help="flight time [s] (default: the whole pattern)")
    p.add_argument("--camera-hz", type=float, default=5.0, help="camera frame rate (default 5)")
    p.add_argument("--gps-hz", type=float, default=10.0, help="ground-truth fix rate (default 10)")
    p.add_argument("--image-px", type=int, default=224, help="square image side [px] (default 224)")
    p.add_argument("--hfov-deg", type=float, default=None, help="horizontal field of view (default 60; ground 90)")
    p.add_argument("--tilt-deg", type=float, default=3.0, help="random tilt, standard deviation (default 3)")
    p.add_argument("--exposure-s", type=float, default=0.004, help="exposure time for motion blur (default 4 ms)")
    p.add_argument("--compressed", action="store_true", help="write CompressedImage (JPEG) instead of Image")
    p.add_argument("--image-topic", default="/camera/image_raw", help="camera topic (default /camera/image_raw)")
    p.add_argument("--gt-topic", default="/gps/fix", help="ground-truth topic (default /gps/fix)")
    p.add_argument(
        "--gt-imu-topic",
        default="/gt/imu",
        help='the true attitude at each ground-truth fix, as an INS gives it (default /gt/imu; "" for none)',
    )
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
    lens = p.add_argument_group("a real lens (frames rendered through it, CameraInfo carries it)")
    lens.add_argument(
        "--distortion",
        type=_coefficients,
        default=(),
        metavar="K1,K2,P1,P2[,K3]",
        help="lens distortion in OpenCV's order (plumb_bob; 8 for rational_polynomial), e.g. -0.26,0.1,0,0,-0.03",
    )
    lens.add_argument(
        "--principal-offset-px",
        type=number_pair(",", "DX,DY", "40,-25"),
        default=(0.0, 0.0),
        metavar="DX,DY",
        help="the principal point's offset from the image centre [px], right and down (default 0,0)",
    )
    world = p.add_argument_group("3D world (relief, facades)")
    world.add_argument("--dsm", type=Path, help="surface model under the rasters (GeoTIFF, metres, any CRS)")
    world.add_argument("--dtm", type=Path, help="terrain model (default: estimated from the DSM)")
    world.add_argument("--buildings", type=Path, help="GeoJSON of building footprints whose facades to draw")
    world.add_argument("--flat", action="store_true", help="ignore a generated scene's own surface model")
    world.add_argument(
        "--tilt-forward-deg", type=float, default=0.0, help="drone: camera looking ahead of nadir, 0-45 (default 0)"
    )
    ground = p.add_argument_group("ground robot (--platform ground)")
    ground.add_argument(
        "--roads", type=Path, help="road centre lines (GeoJSON; default the scene's NAME_roads.geojson)"
    )
    ground.add_argument("--camera-height-m", type=float, default=1.6, help="camera above the ground [m] (default 1.6)")
    ground.add_argument("--panorama", action="store_true", help="a 360° camera: equirectangular frames, 2:1")
    ground.add_argument("--odom-topic", default="/odom", help='wheel odometry topic (default /odom; "" for none)')
    ground.add_argument("--odom-hz", type=float, default=20.0, help="wheel odometry rate (default 20)")
    ground.add_argument(
        "--odom-scale-error", type=float, default=0.02, help="odometry's distance error, relative (default 0.02)"
    )
    ground.add_argument(
        "--odom-yaw-drift-dps", type=float, default=0.05, help="odometry's yaw-rate bias [deg/s] (default 0.05)"
    )
    ground.add_argument(
        "--odom-yaw-noise-dps", type=float, default=0.5, help="odometry's yaw-rate noise, std [deg/s] (default 0.5)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=run)


def _coefficients(text: str) -> tuple[float, ...]:
    """An argparse type: comma-separated numbers."""
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, not {text!r}") from None


def run(args: argparse.Namespace) -> int:
    """Fly or drive, write the bag, and say what it holds."""
    started = time.monotonic()
    config = config_from(FlightConfig, args)
    if config.platform == "ground":
        flight = write_drive(config)
        print(f"drove {flight.duration_s:.0f} s at {flight.speed_mps:g} m/s, camera {flight.altitude_m:g} m high")
    else:
        flight = write_flight(config)
        print(
            f"flew {flight.duration_s:.0f} s at {flight.altitude_m:.0f} m ({flight.footprint_m:.0f} m footprint), "
            f"{flight.speed_mps:g} m/s"
        )
    if not flight.relief:
        print("no surface model: the world is flat (relief is absent); give --dsm DSM.tif for relief")
    print(f"wrote {flight.path} ({flight.storage}) in {time.monotonic() - started:.1f} s:")
    for topic, count in flight.topics.items():
        print(f"  {topic}: {count} messages")
    return 0
