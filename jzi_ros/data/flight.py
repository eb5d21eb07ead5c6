"""A simulated camera flight over an orthophoto, written as a rosbag2.

A downward-looking (optionally tilted) pinhole camera flies a lawn-mower
pattern, a random walk or a CSV of waypoints at a given altitude and speed;
its frames are rendered from the orthophoto with motion blur, noise and
slowly drifting exposure, and written with the camera info and the
ground-truth position (``sensor_msgs/NavSatFix``) at their own rates.

Positions are (east, north) [m] in the flight area's local frame, headings
[deg] clockwise from north. Stamps start at :data:`START_NS`, so the same
configuration writes the same bag.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..geo import BoundsM, MapDir, ZoomGrid, largest_square_region, read_info
from ..geo.ortho import LocalOrtho
from ..geo.raster import RasterMosaic
from . import bags
from .augment import motion_blur, photometric
from .camera import CameraPose, Pinhole, render_frame
from .errors import DataError

log = logging.getLogger(__name__)

START_NS = 1_735_689_600 * 10**9
"""Stamp of the first message [ns]: 2025-01-01T00:00:00Z, so that bags are reproducible."""
CAMERA_INFO_TOPIC = "/camera/camera_info"
GT_VARIANCES_M2 = (0.25, 0.25, 1.0)
"""East, north and up variances [m²] written with every ground-truth fix."""
TRAJECTORIES = ("lawnmower", "random")
"""Named patterns; any other ``trajectory`` is a CSV of waypoints."""
RANDOM_DURATION_S = 120.0
"""Length of a random walk when no duration is given [s]."""


@dataclass(frozen=True)
class Trajectory:
    """Positions ``east_north_m`` (N, 2) [m] in a local frame at times ``t_s`` (N,) [s].

    The heading follows the direction of motion.
    """

    t_s: np.ndarray
    east_north_m: np.ndarray

    def at(self, t_s: float) -> tuple[float, float, float]:
        """(east [m], north [m], heading [deg, clockwise from north]) at time ``t_s`` [s]."""
        e = float(np.interp(t_s, self.t_s, self.east_north_m[:, 0]))
        n = float(np.interp(t_s, self.t_s, self.east_north_m[:, 1]))
        dt = 0.5
        e2 = float(np.interp(t_s + dt, self.t_s, self.east_north_m[:, 0]))
        n2 = float(np.interp(t_s + dt, self.t_s, self.east_north_m[:, 1]))
        if abs(e2 - e) + abs(n2 - n) < 1e-6:  # at the end: look back instead
            e1 = float(np.interp(t_s - dt, self.t_s, self.east_north_m[:, 0]))
            n1 = float(np.interp(t_s - dt, self.t_s, self.east_north_m[:, 1]))
            e, n, e2, n2 = e1, n1, e, n
        return e, n, math.degrees(math.atan2(e2 - e, n2 - n)) % 360

    @property
    def duration_s(self) -> float:
        """Time from the first position to the last [s]."""
        return float(self.t_s[-1] - self.t_s[0])


def _timed(points_m: np.ndarray, speed_mps: float) -> Trajectory:
    """Points (N, 2) [m] flown in order at ``speed_mps``; repeated points dropped."""
    seg = np.hypot(*np.diff(points_m, axis=0).T)
    t_s = np.concatenate([[0.0], np.cumsum(seg) / speed_mps])
    keep = np.concatenate([[True], seg > 1e-9])
    return Trajectory(t_s[keep], points_m[keep])


def lawnmower(half_m: float, spacing_m: float, speed_mps: float) -> Trajectory:
    """Lanes west->east and back, ``spacing_m`` apart, north to south, inside ±``half_m``."""
    ys = np.arange(half_m, -half_m - 1e-9, -spacing_m)
    pts = []
    for i, y in enumerate(ys):
        xs = (-half_m, half_m) if i % 2 == 0 else (half_m, -half_m)
        pts += [(xs[0], y), (xs[1], y)]
    return _timed(np.array(pts, float), speed_mps)


def random_walk(half_m: float, speed_mps: float, duration_s: float, rng: np.random.Generator) -> Trajectory:
    """A smooth random walk (turn rate as an Ornstein-Uhlenbeck process) kept inside ±``half_m``."""
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


def waypoints(path: str | Path, grid: ZoomGrid, speed_mps: float) -> Trajectory:
    """A CSV with columns latitude, longitude [deg] (or lat, lon), flown in order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such waypoint file: {path}")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    try:
        lat = np.array([float(r["latitude"] if "latitude" in r else r["lat"]) for r in rows])
        lon = np.array([float(r["longitude"] if "longitude" in r else r["lon"]) for r in rows])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{path} needs numeric latitude and longitude columns") from None
    if len(lat) < 2:
        raise DataError(f"{path} needs at least two waypoints")
    east, north = grid.frame.to_local(lat, lon)
    return _timed(np.stack([east, north], 1), speed_mps)


@dataclass(frozen=True)
class FlightConfig:
    """A simulated flight and the bag it is written to.

    What to fly over: ``geotiff`` (rasters; the area is the square of side
    ``size_m`` around ``center`` (lat, lon) [deg], by default the largest
    square they cover) or ``map`` (a map directory: its region and rasters),
    or both: the map's region rendered from ``geotiff`` (the same place at
    another date or from another sensor, as a real camera sees it).
    ``trajectory``: "lawnmower", "random" or the path of a CSV of waypoints.
    ``altitude_m`` defaults to the height at which a frame sees a tenth of
    the area; ``duration_s`` to the whole pattern (random walk: 120 s).
    ``tilt_deg`` is the standard deviation of pitch and roll; ``exposure_s``
    sets the motion blur. ``compressed`` writes JPEG ``CompressedImage``
    (on ``image_topic`` + "/compressed") instead of raw ``Image``.
    """

    out: Path
    geotiff: tuple[Path, ...] = ()
    map: Path | None = None
    storage: str = "mcap"
    center: tuple[float, float] | None = None
    size_m: float | None = None
    trajectory: str = "lawnmower"
    altitude_m: float | None = None
    speed_mps: float = 8.0
    duration_s: float | None = None
    camera_hz: float = 5.0
    gps_hz: float = 10.0
    image_px: int = 224
    hfov_deg: float = 60.0
    tilt_deg: float = 3.0
    exposure_s: float = 0.004
    compressed: bool = False
    image_topic: str = "/camera/image_raw"
    gt_topic: str = "/gps/fix"
    seed: int = 0
    quiet: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "geotiff", tuple(Path(p) for p in self.geotiff or ()))
        if not self.geotiff and self.map is None:
            raise DataError("give geotiff (rasters) or map (a map directory), or both, to fly over")
        if self.storage not in bags.STORAGES:
            raise DataError(f"storage must be one of {', '.join(sorted(bags.STORAGES))}, not {self.storage!r}")
        if not self.trajectory:
            raise DataError(f"trajectory must be {' or '.join(TRAJECTORIES)} or a CSV of waypoints")
        for name in ("speed_mps", "camera_hz", "gps_hz", "hfov_deg"):
            _check_positive(name, getattr(self, name))
        for name in ("size_m", "altitude_m", "duration_s"):
            if getattr(self, name) is not None:
                _check_positive(name, getattr(self, name))
        if self.hfov_deg >= 180.0:
            raise DataError(f"hfov_deg must be below 180, not {self.hfov_deg}")
        if int(self.image_px) != self.image_px or self.image_px < 8:
            raise DataError(f"image_px must be an integer >= 8, not {self.image_px}")
        for name in ("tilt_deg", "exposure_s"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise DataError(f"{name} must be zero or positive, not {getattr(self, name)}")
        if not (self.image_topic and self.gt_topic):
            raise DataError("image_topic and gt_topic must be topic names")

    @property
    def camera(self) -> Pinhole:
        """The square pinhole camera that takes the frames."""
        return Pinhole(self.image_px, self.image_px, self.hfov_deg)

    @property
    def frame_topic(self) -> str:
        """The topic the frames are written on (with "/compressed" for JPEG frames)."""
        if self.compressed and not self.image_topic.endswith("compressed"):
            return self.image_topic + "/compressed"
        return self.image_topic


def _check_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise DataError(f"{name} must be positive, not {value}")


@dataclass(frozen=True)
class FlightReport:
    """What :func:`write_flight` wrote.

    The bag at ``path`` (``storage``) holds ``frames`` frames on
    ``image_topic``, each with its camera info on ``camera_info_topic``, and
    ``fixes`` ground-truth fixes on ``gt_topic``. The camera flew for
    ``duration_s`` [s] at ``altitude_m`` [m] (a view ``footprint_m`` [m]
    wide) and ``speed_mps`` [m/s] over a square of side ``area_m`` [m].
    """

    path: Path
    storage: str
    frames: int
    fixes: int
    duration_s: float
    altitude_m: float
    footprint_m: float
    speed_mps: float
    area_m: float
    image_topic: str
    camera_info_topic: str
    gt_topic: str

    @property
    def topics(self) -> dict[str, int]:
        """Messages written per topic."""
        return {self.image_topic: self.frames, self.camera_info_topic: self.frames, self.gt_topic: self.fixes}


def _flight_area(config: FlightConfig) -> tuple[ZoomGrid, list[str | Path]]:
    """The square to fly over (as a one-level grid) and the rasters to render it from."""
    rasters: list[str | Path] = [str(p) for p in config.geotiff]
    if config.map is not None:
        mapdir = MapDir(config.map)
        return mapdir.grid, rasters or [s["path"] for s in mapdir.sources]
    with RasterMosaic(rasters) as mosaic:
        auto = largest_square_region(mosaic, levels=1)
    center = config.center or (auto.center_lat, auto.center_lon)
    return ZoomGrid(center[0], center[1], config.size_m or auto.size_m, 4, 1), rasters


def _trajectory(
    config: FlightConfig, area: ZoomGrid, half_m: float, lane_m: float, rng: np.random.Generator
) -> Trajectory:
    """The configured pattern inside ±``half_m`` of the area's centre."""
    if config.trajectory == "lawnmower":
        return lawnmower(half_m, lane_m, config.speed_mps)
    if config.trajectory == "random":
        return random_walk(half_m, config.speed_mps, config.duration_s or RANDOM_DURATION_S, rng)
    return waypoints(Path(config.trajectory), area, config.speed_mps)


def write_flight(config: FlightConfig) -> FlightReport:
    """Fly the configured camera and write its frames, camera info and ground truth as a rosbag2.

    Raises:
        DataError: the camera sees more than the area at that altitude, or the
            waypoints cannot be read; :class:`~jzi_ros.data.errors.BagError`
            when the bag exists or cannot be written.
    """
    rng = np.random.default_rng(config.seed)
    area, rasters = _flight_area(config)
    cam = config.camera
    altitude_m = config.altitude_m or cam.altitude_for_footprint(area.size_m / 10)
    footprint_m = 2 * altitude_m * math.tan(math.radians(config.hfov_deg) / 2)
    half_m = area.size_m / 2 - footprint_m / 2
    if half_m <= 0:
        raise DataError(
            f"at {altitude_m:.0f} m the camera sees {footprint_m:.0f} m, more than the {area.size_m:.0f} m area"
        )
    traj = _trajectory(config, area, half_m, footprint_m * 0.8, rng)
    duration_s = min(config.duration_s or traj.duration_s, traj.duration_s)
    log.info("rendering the orthophoto of the %.0f m flight area ...", area.size_m)
    finest_m = min(read_info(r).resolution_m for r in rasters)
    half_area_m = area.size_m / 2
    ortho = LocalOrtho.render(
        rasters,
        area.frame,
        BoundsM(-half_area_m, -half_area_m, half_area_m, half_area_m),
        gsd_m=max(footprint_m / config.image_px / 2, finest_m / 2),
    )
    frame_times_s = np.arange(0.0, duration_s, 1.0 / config.camera_hz)
    gps_times_s = np.arange(0.0, duration_s, 1.0 / config.gps_hz)
    blur_px = config.speed_mps * config.exposure_s / (altitude_m / cam.focal_px)
    topic = config.frame_topic
    to_message = bags.compressed if config.compressed else bags.image
    gain = 1.0
    with bags.BagWriter(config.out, config.storage) as bag:
        for t_s in gps_times_s:
            e, n, _ = traj.at(t_s)
            lat, lon = area.frame.to_latlon(e, n)
            stamp_ns = START_NS + int(t_s * 1e9)
            fix = bags.navsatfix(
                stamp_ns, "gps", float(lat), float(lon), altitude_m, np.diag(GT_VARIANCES_M2), cov_type=2
            )
            bag.add(config.gt_topic, fix, stamp_ns)
        for t_s in tqdm(frame_times_s, desc="rendering frames", unit="frame", disable=config.quiet):
            e, n, heading = traj.at(t_s)
            pose = CameraPose(
                e,
                n,
                altitude_m * rng.uniform(0.98, 1.02),
                heading,
                rng.normal(0, config.tilt_deg),
                rng.normal(0, config.tilt_deg),
            )
            frame, _ = render_frame(ortho, cam, pose)
            frame = motion_blur(frame, blur_px, -90.0)  # the camera moves towards the image top
            gain = float(np.clip(gain * math.exp(rng.normal(0, 0.02)), 0.7, 1.3))  # slow exposure drift
            frame = photometric(np.clip(frame * gain, 0, 255).astype(np.uint8), rng, 0.3)
            stamp_ns = START_NS + int(t_s * 1e9)
            bag.add(topic, to_message(stamp_ns, "camera", frame), stamp_ns)
            info = bags.camera_info(stamp_ns, "camera", cam.width_px, cam.height_px, cam.K)
            bag.add(CAMERA_INFO_TOPIC, info, stamp_ns)
    return FlightReport(
        path=config.out,
        storage=config.storage,
        frames=len(frame_times_s),
        fixes=len(gps_times_s),
        duration_s=duration_s,
        altitude_m=altitude_m,
        footprint_m=footprint_m,
        speed_mps=config.speed_mps,
        area_m=area.size_m,
        image_topic=topic,
        camera_info_topic=CAMERA_INFO_TOPIC,
        gt_topic=config.gt_topic,
    )
