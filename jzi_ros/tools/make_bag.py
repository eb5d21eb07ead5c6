"""`jzi make-bag`: a simulated flight over a GeoTIFF, written as a rosbag2.

A downward-looking (optionally tilted) pinhole camera flies a lawn-mower
pattern, a random walk or a CSV of waypoints at a given altitude and speed;
its frames are rendered from the orthophoto with motion blur, noise and
slowly drifting exposure, and written with the camera info and the
ground-truth position (``sensor_msgs/NavSatFix``) at their own rates.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data import CameraPose, Pinhole, bags, render_frame
from ..data.augment import motion_blur, photometric
from ..errors import JziError
from ..geo import BoundsM, MapDir, ZoomGrid, largest_square_region, read_info
from ..geo.ortho import LocalOrtho
from ..geo.raster import RasterMosaic
from .build_map import parse_center

START_NS = 1_735_689_600 * 10**9  # 2025-01-01T00:00:00Z: bags are reproducible


@dataclass
class Trajectory:
    """Positions (N, 2) [m] in a local frame at times (N,) [s]; heading [deg]
    follows the direction of motion."""

    t: np.ndarray
    east_north: np.ndarray

    def at(self, t: float) -> tuple[float, float, float]:
        """(east, north, heading [deg, clockwise from north]) at time ``t`` [s]."""
        e = float(np.interp(t, self.t, self.east_north[:, 0]))
        n = float(np.interp(t, self.t, self.east_north[:, 1]))
        dt = 0.5
        e2 = float(np.interp(t + dt, self.t, self.east_north[:, 0]))
        n2 = float(np.interp(t + dt, self.t, self.east_north[:, 1]))
        if abs(e2 - e) + abs(n2 - n) < 1e-6:
            e1 = float(np.interp(t - dt, self.t, self.east_north[:, 0]))
            n1 = float(np.interp(t - dt, self.t, self.east_north[:, 1]))
            e, n, e2, n2 = e1, n1, e, n
        return e, n, math.degrees(math.atan2(e2 - e, n2 - n)) % 360

    @property
    def duration_s(self) -> float:
        return float(self.t[-1] - self.t[0])


def _timed(points: np.ndarray, speed_mps: float) -> Trajectory:
    seg = np.hypot(*np.diff(points, axis=0).T)
    t = np.concatenate([[0.0], np.cumsum(seg) / speed_mps])
    keep = np.concatenate([[True], seg > 1e-9])
    return Trajectory(t[keep], points[keep])


def lawnmower(half_m: float, spacing_m: float, speed_mps: float) -> Trajectory:
    """Lanes west->east and back, ``spacing_m`` apart, north to south."""
    ys = np.arange(half_m, -half_m - 1e-9, -spacing_m)
    pts = []
    for i, y in enumerate(ys):
        xs = (-half_m, half_m) if i % 2 == 0 else (half_m, -half_m)
        pts += [(xs[0], y), (xs[1], y)]
    return _timed(np.array(pts, float), speed_mps)


def random_walk(half_m: float, speed_mps: float, duration_s: float, rng: np.random.Generator) -> Trajectory:
    """A smooth random walk (turn rate as an Ornstein-Uhlenbeck process) kept inside the square."""
    dt = 0.2
    steps = int(duration_s / dt) + 1
    pos, heading, rate = np.zeros(2), rng.uniform(0, 2 * np.pi), 0.0
    pts = [pos.copy()]
    for _ in range(steps):
        rate += -rate * dt / 5.0 + rng.normal(0, 0.25) * math.sqrt(dt)
        heading += rate * dt
        step = speed_mps * dt * np.array([math.sin(heading), math.cos(heading)])
        if (np.abs(pos + step) > half_m).any():  # turn back towards the centre
            heading = math.atan2(-pos[0], -pos[1]) + rng.normal(0, 0.3)
            step = speed_mps * dt * np.array([math.sin(heading), math.cos(heading)])
        pos = np.clip(pos + step, -half_m, half_m)
        pts.append(pos.copy())
    return _timed(np.array(pts), speed_mps)


def waypoints(path: Path, grid: ZoomGrid, speed_mps: float) -> Trajectory:
    """A CSV with columns latitude, longitude (degrees), flown in order."""
    if not path.is_file():
        raise JziError(f"no such waypoint file: {path}")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    try:
        lat = np.array([float(r.get("latitude", r.get("lat"))) for r in rows])
        lon = np.array([float(r.get("longitude", r.get("lon"))) for r in rows])
    except (TypeError, ValueError):
        raise JziError(f"{path} needs numeric latitude and longitude columns") from None
    if len(lat) < 2:
        raise JziError(f"{path} needs at least two waypoints")
    east, north = grid.frame.to_local(lat, lon)
    return _timed(np.stack([east, north], 1), speed_mps)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this command."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--geotiff", nargs="+", type=Path, help="rasters to fly over")
    src.add_argument("--map", type=Path, help="fly over the region (and rasters) of a map")
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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    rng = np.random.default_rng(args.seed)
    if args.map:
        mapdir = MapDir(args.map)
        area = mapdir.grid
        rasters = [s["path"] for s in mapdir.sources]
    else:
        rasters = [str(p) for p in args.geotiff]
        with RasterMosaic(rasters) as mosaic:
            auto = largest_square_region(mosaic, levels=1)
        center = args.center or (auto.center_lat, auto.center_lon)
        area = ZoomGrid(center[0], center[1], args.size_m or auto.size_m, 4, 1)
    cam = Pinhole(args.image_px, args.image_px, args.hfov_deg)
    altitude = args.altitude_m or cam.altitude_for_footprint(area.size_m / 10)
    footprint = 2 * altitude * math.tan(math.radians(args.hfov_deg) / 2)
    half = area.size_m / 2 - footprint / 2
    if half <= 0:
        raise JziError(f"at {altitude:.0f} m the camera sees {footprint:.0f} m, more than the {area.size_m:.0f} m area")
    if args.trajectory == "lawnmower":
        traj = lawnmower(half, footprint * 0.8, args.speed_mps)
    elif args.trajectory == "random":
        traj = random_walk(half, args.speed_mps, args.duration_s or 120.0, rng)
    else:
        traj = waypoints(Path(args.trajectory), area, args.speed_mps)
    duration = min(args.duration_s or traj.duration_s, traj.duration_s)
    print(f"rendering the orthophoto of the {area.size_m:.0f} m flight area ...")
    finest = min(read_info(r).resolution_m for r in rasters)
    half_area = area.size_m / 2
    ortho = LocalOrtho.render(
        rasters,
        area.frame,
        BoundsM(-half_area, -half_area, half_area, half_area),
        gsd_m=max(footprint / args.image_px / 2, finest / 2),
    )
    frame_times = np.arange(0.0, duration, 1.0 / args.camera_hz)
    gps_times = np.arange(0.0, duration, 1.0 / args.gps_hz)
    gain = 1.0
    topic = args.image_topic + (
        "/compressed" if args.compressed and not args.image_topic.endswith("compressed") else ""
    )
    with bags.BagWriter(args.out, args.storage) as bag:
        for t in gps_times:
            e, n, _ = traj.at(t)
            lat, lon = area.frame.to_latlon(e, n)
            cov = np.diag([0.25, 0.25, 1.0])
            bag.add(
                args.gt_topic,
                bags.navsatfix(START_NS + int(t * 1e9), "gps", lat, lon, altitude, cov, cov_type=2),
                START_NS + int(t * 1e9),
            )
        for t in tqdm(frame_times, desc="rendering frames", unit="frame", disable=args.quiet):
            e, n, heading = traj.at(t)
            pose = CameraPose(
                e,
                n,
                altitude * rng.uniform(0.98, 1.02),
                heading,
                rng.normal(0, args.tilt_deg),
                rng.normal(0, args.tilt_deg),
            )
            frame, _ = render_frame(ortho, cam, pose)
            blur_px = args.speed_mps * args.exposure_s / (altitude / cam.focal_px)
            frame = motion_blur(frame, blur_px, -90.0)  # the camera moves towards the image top
            gain = float(np.clip(gain * math.exp(rng.normal(0, 0.02)), 0.7, 1.3))  # slow exposure drift
            frame = photometric(np.clip(frame * gain, 0, 255).astype(np.uint8), rng, 0.3)
            stamp = START_NS + int(t * 1e9)
            msg = (bags.compressed if args.compressed else bags.image)(stamp, "camera", frame)
            bag.add(topic, msg, stamp)
            bag.add("/camera/camera_info", bags.camera_info(stamp, "camera", cam.width_px, cam.height_px, cam.K), stamp)
    print(
        f"flew {duration:.0f} s at {altitude:.0f} m ({footprint:.0f} m footprint), {args.speed_mps:g} m/s: "
        f"{len(frame_times)} frames on {topic}, {len(gps_times)} fixes on {args.gt_topic}"
    )
    print(f"wrote {args.out} ({args.storage}) in {time.monotonic() - started:.1f} s")
    return 0
