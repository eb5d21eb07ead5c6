"""A simulated camera flight over an orthophoto, written as a rosbag2.

A downward-looking (optionally tilted) pinhole camera flies a lawn-mower
pattern, a random walk or a CSV of waypoints at a given altitude and speed;
its frames are rendered from the orthophoto with motion blur, noise and
slowly drifting exposure, and written with the camera info and the
ground-truth position (``sensor_msgs/NavSatFix``) at their own rates.

The robot also carries the sensors a robot without GPS has, each at its own
rate: an IMU (``sensor_msgs/Imu``, orientation only) and a downward
rangefinder (``sensor_msgs/Range``).

- The true motion: the image top points along the direction of motion; the
  camera's pitch and roll (:class:`~jzi_ros.geo.camera.CameraPose` angles)
  are smooth random processes (Ornstein-Uhlenbeck, standard deviation
  ``tilt_deg``, time constant :data:`TILT_TAU_S`), and so is the altitude
  (within ±:data:`ALTITUDE_JITTER` of ``altitude_m``), so that frames and the
  faster sensors see the same motion at the same stamps.
- The IMU reports the body attitude that carries the camera (the default
  :class:`~jzi_ros.geo.camera.Mount`: straight down, image top forward; see
  :func:`~jzi_ros.geo.camera.body_quaternion`) in ENU per REP-103, rotated by
  an error about the vertical (a constant ``imu_yaw_bias_deg`` added to the
  REP-103 yaw, i.e. counter-clockwise, plus a slowly varying error of
  standard deviation ``imu_yaw_noise_deg``, time constant
  :data:`IMU_YAW_TAU_S`, as a compass or an estimator has) and about the
  horizontal axes (``imu_tilt_noise_deg``, time constant :data:`IMU_TILT_TAU_S`).
- The rangefinder measures the slant range along the body's -z,
  ``height / (cos roll cos pitch)``, plus white noise ``height_noise_m``.

Positions are (east, north) [m] in the flight area's local frame, headings
[deg] clockwise from north. Stamps start at :data:`START_NS`, and every
random process draws from its own stream of the seed, so the same
configuration writes the same bag (and leaving a sensor out changes nothing
else).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..geo import BoundsM, LocalFrame, MapDir, ZoomGrid, largest_square_region, read_info
from ..geo.camera import (
    CameraPose,
    Mount,
    body_quaternion,
    camera_pose_from_body,
    quaternion_from_rotation,
    rotation_from_quaternion,
)
from ..geo.ortho import LocalOrtho
from ..geo.raster import RasterMosaic
from . import bags
from .aerial import MIN_SOURCE_COVERAGE
from .augment import motion_blur, photometric
from .camera import Pinhole, render_frame
from .errors import DataError
from .render3d import World3D
from .scene import SceneFiles

log = logging.getLogger(__name__)

START_NS = 1_735_689_600 * 10**9
"""Stamp of the first message [ns]: 2025-01-01T00:00:00Z, so that bags are reproducible."""
CAMERA_INFO_TOPIC = "/camera/camera_info"
TF_STATIC_TOPIC = "/tf_static"
CAMERA_FRAME = "camera"
"""The camera's frame id: its optical frame (x right, y down, z ahead)."""
GT_VARIANCES_M2 = (0.25, 0.25, 1.0)
"""East, north and up variances [m²] written with every ground-truth fix."""
TRAJECTORIES = ("lawnmower", "random", "roads")
"""Named patterns (roads: a ground robot's); any other ``trajectory`` is a CSV or GeoJSON of waypoints."""
PLATFORMS = ("drone", "ground")
RANDOM_DURATION_S = 120.0
"""Length of a random walk when no duration is given [s]."""
MOTION_DT_S = 0.01
"""Time step [s] of the simulated tilt and altitude processes (linearly interpolated between steps)."""
TILT_TAU_S = 1.0
"""Time constant [s] of the camera's tilt."""
ALTITUDE_TAU_S = 3.0
"""Time constant [s] of the altitude's variation."""
ALTITUDE_JITTER = 0.02
"""Largest relative deviation of the altitude from ``altitude_m`` (its standard deviation is half of it)."""
IMU_YAW_TAU_S = 5.0
"""Time constant [s] of the IMU's heading error."""
IMU_TILT_TAU_S = 1.0
"""Time constant [s] of the IMU's tilt error."""
IMU_MIN_STD_DEG = 0.1
"""Smallest orientation standard deviation [deg] an IMU message claims (all-zero covariance reads as unknown)."""
RANGE_MIN_M = 0.1
"""Shortest distance [m] the simulated rangefinder measures; it reaches twice the flight altitude."""
RANGE_FOV_RAD = 0.05
"""Field of view [rad] of the simulated (laser) rangefinder."""
IMU_FRAME = "imu"
RANGE_FRAME = "rangefinder"


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


def waypoints(path: str | Path, frame: LocalFrame, speed_mps: float) -> Trajectory:
    """A CSV with columns latitude, longitude [deg] (or lat, lon), or a GeoJSON LineString, travelled in order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such waypoint file: {path}")
    if path.suffix.lower() in (".geojson", ".json"):
        return _timed(np.stack(frame.to_local(*_linestring_latlon(path)), 1), speed_mps)
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    try:
        lat = np.array([float(r["latitude"] if "latitude" in r else r["lat"]) for r in rows])
        lon = np.array([float(r["longitude"] if "longitude" in r else r["lon"]) for r in rows])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{path} needs numeric latitude and longitude columns") from None
    if len(lat) < 2:
        raise DataError(f"{path} needs at least two waypoints")
    east, north = frame.to_local(lat, lon)
    return _timed(np.stack([east, north], 1), speed_mps)


def _linestring_latlon(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(lat, lon) [deg] of the first LineString of a GeoJSON (a FeatureCollection, a Feature or a geometry)."""
    try:
        doc = json.loads(path.read_text())
        features = doc.get("features") or [doc]
        geometries = [f.get("geometry", f) for f in features]
        line = next(g for g in geometries if g.get("type") == "LineString")
        lonlat = np.asarray(line["coordinates"], np.float64)[:, :2]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, StopIteration, IndexError):
        raise DataError(f"{path} needs a GeoJSON LineString of (longitude, latitude) points") from None
    if len(lonlat) < 2:
        raise DataError(f"{path} needs at least two waypoints")
    return lonlat[:, 1], lonlat[:, 0]


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

    The robot's own sensors (the module docstring says how they err): an
    IMU on ``imu_topic`` at ``imu_hz`` with a heading error of standard
    deviation ``imu_yaw_noise_deg``, a constant ``imu_yaw_bias_deg`` (added
    to the REP-103 yaw, counter-clockwise) and a tilt error of standard
    deviation ``imu_tilt_noise_deg``; a rangefinder on ``height_topic`` at
    ``height_hz`` with noise ``height_noise_m`` (standard deviation [m];
    default 0.5 % of the altitude, at least 0.02 m). An empty topic leaves
    the sensor out. ``blackouts``: (start, duration) [s] windows in which the
    camera publishes nothing (a stalled driver, a cable), as robots see them.

    A real lens: ``distortion`` (OpenCV's k1, k2, p1, p2[, k3], or eight
    coefficients) and ``principal_offset_px`` (dx right, dy down [px] of the
    principal point from the image centre) render every frame through it,
    and every ``CameraInfo`` carries it (:attr:`lens_k`).

    The 3D world (:mod:`jzi_ros.data.render3d`): ``dsm`` is the surface model
    under the rasters (any CRS), ``dtm`` its terrain and ``buildings`` a
    GeoJSON of facades; a generated scene's own (``NAME_dsm.tif`` beside
    ``NAME.tif``) are found by themselves unless ``flat``, and else the surface
    model of ``map`` when it was built with one. With a DSM the
    drone's frames show relief and its rangefinder measures to the roofs;
    ``tilt_forward_deg`` (0-45) mounts its camera looking ahead of nadir
    (the bag's ``/tf_static`` says so; replay it with ``eval-bag --mount-pitch-deg``).

    ``platform`` "ground" drives a robot instead (:func:`jzi_ros.data.drive.write_drive`):
    ``trajectory`` "roads" (a random drive on ``roads``, by default the
    scene's ``NAME_roads.geojson``) or waypoints; a camera ``camera_height_m``
    above the ground looking ahead (``image_px`` wide, 4:3, ``hfov_deg``
    default 90) or, with ``panorama``, a 360° camera (``image_px`` wide, half
    as high, as street-level training renders them); wheel odometry on ``odom_topic`` at ``odom_hz`` with a
    ``odom_scale_error`` (relative) and a yaw-rate drift ``odom_yaw_drift_dps``
    and noise ``odom_yaw_noise_dps`` [deg/s]; no rangefinder.
    """

    out: Path
    geotiff: tuple[Path, ...] = ()
    map: Path | None = None
    storage: str = "mcap"
    center: tuple[float, float] | None = None
    size_m: float | None = None
    trajectory: str | None = None
    altitude_m: float | None = None
    speed_mps: float = 8.0
    duration_s: float | None = None
    camera_hz: float = 5.0
    gps_hz: float = 10.0
    image_px: int = 224
    hfov_deg: float | None = None
    tilt_deg: float = 3.0
    exposure_s: float = 0.004
    compressed: bool = False
    image_topic: str = "/camera/image_raw"
    gt_topic: str = "/gps/fix"
    gt_imu_topic: str = "/gt/imu"
    imu_topic: str = "/imu/data"
    imu_hz: float = 50.0
    imu_yaw_noise_deg: float = 3.0
    imu_yaw_bias_deg: float = 0.0
    imu_tilt_noise_deg: float = 0.5
    height_topic: str = "/rangefinder/range"
    height_hz: float = 20.0
    height_noise_m: float | None = None
    blackouts: tuple[tuple[float, float], ...] = ()
    seed: int = 0
    quiet: bool = False
    distortion: tuple[float, ...] = ()
    principal_offset_px: tuple[float, float] = (0.0, 0.0)
    platform: str = "drone"
    dsm: Path | None = None
    dtm: Path | None = None
    buildings: Path | None = None
    flat: bool = False
    tilt_forward_deg: float = 0.0
    roads: Path | None = None
    camera_height_m: float = 1.6
    panorama: bool = False
    odom_topic: str = "/odom"
    odom_hz: float = 20.0
    odom_scale_error: float = 0.02
    odom_yaw_drift_dps: float = 0.05
    odom_yaw_noise_dps: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "geotiff", tuple(Path(p) for p in self.geotiff or ()))
        object.__setattr__(self, "blackouts", tuple((float(a), float(b)) for a, b in self.blackouts))
        for name in ("dsm", "dtm", "buildings", "roads"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
                if not getattr(self, name).is_file():
                    raise DataError(f"no such {name} file: {getattr(self, name)}")
        if self.platform not in PLATFORMS:
            raise DataError(f"platform must be one of {', '.join(PLATFORMS)}, not {self.platform!r}")
        if self.hfov_deg is None:
            object.__setattr__(self, "hfov_deg", 90.0 if self.platform == "ground" else 60.0)
        if not (math.isfinite(self.tilt_forward_deg) and 0 <= self.tilt_forward_deg <= 45):
            raise DataError(f"tilt_forward_deg must be 0 to 45, not {self.tilt_forward_deg}")
        if self.tilt_forward_deg and self.platform == "ground":
            raise DataError("tilt_forward_deg is for drones; a ground robot's camera looks ahead")
        object.__setattr__(self, "distortion", tuple(float(v) for v in self.distortion))
        object.__setattr__(self, "principal_offset_px", tuple(float(v) for v in self.principal_offset_px))
        if len(self.distortion) not in (0, 4, 5, 8) or not all(map(math.isfinite, self.distortion)):
            raise DataError(f"distortion takes 4, 5 or 8 finite coefficients (OpenCV's order), not {self.distortion}")
        if len(self.principal_offset_px) != 2 or not all(map(math.isfinite, self.principal_offset_px)):
            raise DataError(f"principal_offset_px is (dx, dy) in pixels, not {self.principal_offset_px}")
        for name in ("dtm", "buildings"):
            if getattr(self, name) is not None and self.dsm is None:
                raise DataError(f"{name} needs the surface model (dsm) it stands on")
        if any(not (math.isfinite(a) and math.isfinite(b) and a >= 0 and b > 0) for a, b in self.blackouts):
            raise DataError(f"a blackout is a start of 0 s or more and a duration above 0 s, not {self.blackouts}")
        if not self.geotiff and self.map is None:
            raise DataError("give geotiff (rasters) or map (a map directory), or both, to fly over")
        if self.storage not in bags.STORAGES:
            raise DataError(f"storage must be one of {', '.join(sorted(bags.STORAGES))}, not {self.storage!r}")
        if self.trajectory is None:
            object.__setattr__(self, "trajectory", "roads" if self.platform == "ground" else "lawnmower")
        if not self.trajectory:
            raise DataError(f"trajectory must be {' or '.join(TRAJECTORIES)} or a CSV of waypoints")
        if (self.trajectory == "roads") != (self.platform == "ground") and self.trajectory in TRAJECTORIES:
            fits = "roads or waypoints" if self.platform == "ground" else "lawnmower, random or waypoints"
            raise DataError(f"the {self.platform} platform follows {fits}, not the trajectory {self.trajectory!r}")
        for name in (
            "speed_mps",
            "camera_hz",
            "gps_hz",
            "hfov_deg",
            "imu_hz",
            "height_hz",
            "odom_hz",
            "camera_height_m",
        ):
            _check_positive(name, getattr(self, name))
        for name in ("size_m", "altitude_m", "duration_s"):
            if getattr(self, name) is not None:
                _check_positive(name, getattr(self, name))
        if self.hfov_deg is not None and self.hfov_deg >= 180.0:
            raise DataError(f"hfov_deg must be below 180, not {self.hfov_deg}")
        if int(self.image_px) != self.image_px or self.image_px < 8:
            raise DataError(f"image_px must be an integer >= 8, not {self.image_px}")
        if not (math.isfinite(self.odom_scale_error) and abs(self.odom_scale_error) < 0.5):
            raise DataError(f"odom_scale_error must be within ±0.5, not {self.odom_scale_error}")
        if not math.isfinite(self.odom_yaw_drift_dps):
            raise DataError(f"odom_yaw_drift_dps must be finite, not {self.odom_yaw_drift_dps}")
        for name in (
            "tilt_deg",
            "exposure_s",
            "imu_yaw_noise_deg",
            "imu_tilt_noise_deg",
            "height_noise_m",
            "odom_yaw_noise_dps",
        ):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise DataError(f"{name} must be zero or positive, not {value}")
        if not math.isfinite(self.imu_yaw_bias_deg):
            raise DataError(f"imu_yaw_bias_deg must be a finite angle, not {self.imu_yaw_bias_deg}")
        if not (self.image_topic and self.gt_topic):
            raise DataError("image_topic and gt_topic must be topic names")
        topics = [self.frame_topic, CAMERA_INFO_TOPIC, self.gt_topic, self.gt_imu_topic, self.imu_topic]
        topics += [self.odom_topic] if self.platform == "ground" else [self.height_topic]
        named = [t for t in topics if t]
        if len(set(named)) < len(named):
            raise DataError(f"each sensor needs its own topic, not {', '.join(named)}")

    @property
    def camera(self) -> Pinhole:
        """The pinhole camera that takes the frames: square on a drone, 4:3 on a ground robot."""
        assert self.hfov_deg is not None  # set in __post_init__
        height = self.image_px if self.platform == "drone" else round(self.image_px * 3 / 4)
        return Pinhole(self.image_px, height, self.hfov_deg)

    @property
    def lens_k(self) -> np.ndarray:
        """The camera's intrinsic matrix (3x3) [px] with the principal point moved by ``principal_offset_px``."""
        k = self.camera.K.copy()
        k[0, 2] += self.principal_offset_px[0]
        k[1, 2] += self.principal_offset_px[1]
        return k

    @property
    def lens(self) -> bool:
        """Whether frames go through a real lens (distortion or an off-centre principal point)."""
        return any(self.distortion) or any(self.principal_offset_px)

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
    ``image_topic``, each with its camera info on ``camera_info_topic``,
    ``fixes`` ground-truth fixes on ``gt_topic``, ``attitudes`` IMU messages
    on ``imu_topic`` and ``ranges`` rangefinder messages on ``height_topic``
    (a sensor left out has an empty topic and no messages); the true attitude
    at each ground-truth fix on ``gt_imu_topic`` (an INS's, for heading errors). The camera flew
    ``trajectory`` (the flight area's local frame) for ``duration_s`` [s] at
    ``altitude_m`` [m] (a view ``footprint_m`` [m] wide) and ``speed_mps``
    [m/s] over a square of side ``area_m`` [m].
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
    imu_topic: str
    attitudes: int
    height_topic: str
    ranges: int
    trajectory: Trajectory
    odom_topic: str = ""
    odometry: int = 0
    relief: bool = False
    gt_imu_topic: str = ""

    @property
    def topics(self) -> dict[str, int]:
        """Messages written per topic (the sensors left out are not listed)."""
        counts = {self.image_topic: self.frames, self.camera_info_topic: self.frames, self.gt_topic: self.fixes}
        counts[self.gt_imu_topic] = self.fixes
        counts |= {self.imu_topic: self.attitudes, self.height_topic: self.ranges, self.odom_topic: self.odometry}
        counts[TF_STATIC_TOPIC] = 1  # base_link -> camera: how the camera is mounted
        return {topic: n for topic, n in counts.items() if topic}


def ou_process(n: int, dt_s: float, std: float, tau_s: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples, ``dt_s`` [s] apart, of a stationary Ornstein-Uhlenbeck process.

    Zero mean, standard deviation ``std`` and time constant ``tau_s`` [s]
    (correlation ``exp(-dt / tau_s)``); it draws ``n`` normals whatever ``std``.
    """
    a = math.exp(-dt_s / tau_s)
    b = math.sqrt(1.0 - a * a)
    z = (rng.standard_normal(n) * std).tolist()
    for k in range(1, n):  # z[0] is drawn from the stationary distribution
        z[k] = a * z[k - 1] + b * z[k]
    return np.array(z, np.float64)


@dataclass(frozen=True)
class _Motion:
    """The camera's true pose over time: position and heading from the trajectory, tilt and altitude sampled."""

    trajectory: Trajectory
    t_s: np.ndarray
    altitude_m: np.ndarray
    pitch_deg: np.ndarray
    roll_deg: np.ndarray

    @classmethod
    def simulate(
        cls, trajectory: Trajectory, duration_s: float, altitude_m: float, tilt_deg: float, rng: np.random.Generator
    ) -> _Motion:
        n = int(math.ceil(duration_s / MOTION_DT_S)) + 2
        jitter = ou_process(n, MOTION_DT_S, ALTITUDE_JITTER / 2, ALTITUDE_TAU_S, rng)
        return cls(
            trajectory,
            np.arange(n) * MOTION_DT_S,
            altitude_m * (1 + np.clip(jitter, -ALTITUDE_JITTER, ALTITUDE_JITTER)),
            ou_process(n, MOTION_DT_S, tilt_deg, TILT_TAU_S, rng),
            ou_process(n, MOTION_DT_S, tilt_deg, TILT_TAU_S, rng),
        )

    def pose(self, t_s: float) -> CameraPose:
        """The camera's pose at ``t_s`` [s] after the start."""
        e, n, heading = self.trajectory.at(t_s)
        return CameraPose(
            e,
            n,
            float(np.interp(t_s, self.t_s, self.altitude_m)),
            heading,
            float(np.interp(t_s, self.t_s, self.pitch_deg)),
            float(np.interp(t_s, self.t_s, self.roll_deg)),
        )


def write_frame(bag: bags.BagWriter, config: FlightConfig, t_s: float, frame: np.ndarray, info: bool = True) -> None:
    """A frame taken ``t_s`` [s] after the start on the frame topic, with the camera's ``CameraInfo`` if ``info``."""
    stamp_ns = START_NS + int(t_s * 1e9)
    to_message = bags.compressed if config.compressed else bags.image
    bag.add(config.frame_topic, to_message(stamp_ns, CAMERA_FRAME, frame), stamp_ns)
    if info:
        cam = config.camera
        msg = bags.camera_info(stamp_ns, CAMERA_FRAME, cam.width_px, cam.height_px, config.lens_k, config.distortion)
        bag.add(CAMERA_INFO_TOPIC, msg, stamp_ns)


def sensor_times(config: FlightConfig, duration_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times [s] of the frames (less the blackouts), the ground-truth fixes and the IMU messages (none: no topic)."""
    frame_times_s = np.arange(0.0, duration_s, 1.0 / config.camera_hz)
    for start_s, length_s in config.blackouts:
        frame_times_s = frame_times_s[(frame_times_s < start_s) | (frame_times_s >= start_s + length_s)]
    gps_times_s = np.arange(0.0, duration_s, 1.0 / config.gps_hz)
    imu_times_s = np.arange(0.0, duration_s, 1.0 / config.imu_hz) if config.imu_topic else np.zeros(0)
    return frame_times_s, gps_times_s, imu_times_s


def axis_rotation(axis: int, angle_rad: float) -> np.ndarray:
    """Rotation (3x3) by ``angle_rad`` about the x (0), y (1) or z (2) axis, counter-clockwise."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def write_imu(
    bag: bags.BagWriter, config: FlightConfig, attitude: Callable[[float], np.ndarray], times_s: np.ndarray, rng
) -> None:
    """The body attitude (``attitude(t)``: x, y, z, w) at ``times_s`` [s] with the IMU's heading and tilt errors."""
    dt_s = 1.0 / config.imu_hz
    n = len(times_s)
    yaw_err = config.imu_yaw_bias_deg + ou_process(n, dt_s, config.imu_yaw_noise_deg, IMU_YAW_TAU_S, rng)
    east_err = ou_process(n, dt_s, config.imu_tilt_noise_deg, IMU_TILT_TAU_S, rng)
    north_err = ou_process(n, dt_s, config.imu_tilt_noise_deg, IMU_TILT_TAU_S, rng)
    tilt_var = math.radians(max(config.imu_tilt_noise_deg, IMU_MIN_STD_DEG)) ** 2
    yaw_var = math.radians(max(config.imu_yaw_noise_deg, IMU_MIN_STD_DEG)) ** 2
    variance_rad2 = (tilt_var, tilt_var, yaw_var)
    for k, t_s in enumerate(times_s):
        truth = rotation_from_quaternion(attitude(t_s))
        error = (
            axis_rotation(2, math.radians(yaw_err[k]))
            @ axis_rotation(0, math.radians(east_err[k]))
            @ axis_rotation(1, math.radians(north_err[k]))
        )  # about the world's up, east and north axes
        quaternion = quaternion_from_rotation(error @ truth)
        stamp_ns = START_NS + int(t_s * 1e9)
        bag.add(config.imu_topic, bags.imu(stamp_ns, IMU_FRAME, quaternion, variance_rad2), stamp_ns)


def write_true_attitude(
    bag: bags.BagWriter, topic: str, attitude: Callable[[float], np.ndarray], times_s: np.ndarray
) -> None:
    """The body's true attitude (``attitude(t)``: x, y, z, w) at ``times_s`` [s] on ``topic``, as an INS gives it."""
    variance_rad2 = (math.radians(0.05) ** 2,) * 3
    for t_s in times_s:
        stamp_ns = START_NS + int(t_s * 1e9)
        bag.add(topic, bags.imu(stamp_ns, IMU_FRAME, attitude(t_s), variance_rad2), stamp_ns)


def _write_ranges(
    bag: bags.BagWriter,
    config: FlightConfig,
    range_at: Callable[[float], float],
    max_m: float,
    times_s: np.ndarray,
    noise_m: float,
    rng,
) -> None:
    """The slant range ``range_at(t)`` [m] along the body's -z at ``times_s`` [s], with noise, on ``height_topic``."""
    noise = rng.standard_normal(len(times_s)) * noise_m
    for k, t_s in enumerate(times_s):
        range_m = range_at(t_s) + noise[k]
        if not RANGE_MIN_M <= range_m <= max_m:  # REP-117: -inf too close, +inf nothing within reach
            range_m = math.inf if range_m > max_m else -math.inf
        stamp_ns = START_NS + int(t_s * 1e9)
        msg = bags.range_msg(stamp_ns, RANGE_FRAME, range_m, RANGE_MIN_M, max_m, RANGE_FOV_RAD)
        bag.add(config.height_topic, msg, stamp_ns)


def world_3d(config: FlightConfig, ortho: LocalOrtho, rasters: list) -> World3D | None:
    """The 3D world of the orthophoto over the configured DSM, the generated scene's own, or the map's; None: flat."""
    files = SceneFiles.beside(rasters[0])
    own = config.dsm is None and not config.flat and files.dsm.is_file()
    dsm = config.dsm or (files.dsm if own else None)
    if dsm is None and not config.flat and config.map is not None:
        mapdir = MapDir(config.map)
        if mapdir.has_surface:  # the map was built with its place's surface model: the flight sees that relief
            return World3D.over(ortho, mapdir.surface())
    if dsm is None:
        return None
    dtm = config.dtm or (files.dtm if own and files.dtm.is_file() else None)
    buildings = config.buildings or (files.buildings if own and files.buildings.is_file() else None)
    return World3D.over(ortho, dsm, dtm, buildings)


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
    return waypoints(Path(str(config.trajectory)), area.frame, config.speed_mps)


def write_flight(config: FlightConfig) -> FlightReport:
    """Fly the configured camera and write its frames, camera info, ground truth, IMU and ranges as a rosbag2.

    Raises:
        DataError: the camera sees more than the area at that altitude, the
            waypoints cannot be read, or the rasters cover under half of the area;
            :class:`~jzi_ros.data.errors.BagError` when the bag exists or cannot be written.
    """
    writer = bags.BagWriter(config.out, config.storage)  # refuses an existing output before any work
    rng = np.random.default_rng(config.seed)
    motion_rng, imu_rng, range_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(3))
    area, rasters = _flight_area(config)
    cam = config.camera
    altitude_m = config.altitude_m or cam.altitude_for_footprint(area.size_m / 10)
    footprint_m = cam.footprint_at(altitude_m)
    half_m = area.size_m / 2 - footprint_m / 2
    if half_m <= 0:
        raise DataError(
            f"at {altitude_m:.0f} m the camera sees {footprint_m:.0f} m, more than the {area.size_m:.0f} m area"
        )
    traj = _trajectory(config, area, half_m, footprint_m * 0.8, rng)
    duration_s = min(config.duration_s or traj.duration_s, traj.duration_s)
    if config.duration_s and config.duration_s > duration_s + 0.5:
        log.warning(
            "the %s pattern over this area takes %.0f s: the flight ends there, not at %.0f s",
            config.trajectory if config.trajectory in ("lawnmower", "random") else "waypoint",
            duration_s,
            config.duration_s,
        )
    log.info("rendering the orthophoto of the %.0f m flight area ...", area.size_m)
    finest_m = min(read_info(r).resolution_m for r in rasters)
    half_area_m = area.size_m / 2
    ortho = LocalOrtho.render(
        rasters,
        area.frame,
        BoundsM(-half_area_m, -half_area_m, half_area_m, half_area_m),
        gsd_m=max(footprint_m / config.image_px / 2, finest_m / 2),
    )
    covered = float(ortho.valid.mean())
    if not covered >= MIN_SOURCE_COVERAGE:  # the frames would be mostly black
        names = ", ".join(str(r) for r in rasters)
        verb = "covers" if len(rasters) == 1 else "cover"
        if config.map is not None and config.geotiff:
            why = "it must show the map's place" if len(rasters) == 1 else "they must show the map's place"
        elif config.map is not None:
            why = "the map's own rasters leave most of its region without imagery"
        else:
            why = "choose the area (center, size_m) inside them"
        raise DataError(
            f"{names} {verb} {100 * covered:.0f} % of the {area.size_m:.0f} m flight area "
            f"(at least {100 * MIN_SOURCE_COVERAGE:.0f} % needed): {why}"
        )
    motion = _Motion.simulate(traj, duration_s, altitude_m, config.tilt_deg, motion_rng)
    world = world_3d(config, ortho, rasters)
    lens = (world or World3D(ortho)) if config.lens else None  # rays through the lens, over relief or flat
    mount = Mount(pitch_deg=config.tilt_forward_deg)
    max_range_m = 2 * float(motion.altitude_m.max(initial=0.0))

    def camera_pose(t_s: float) -> CameraPose:
        body = motion.pose(t_s)  # the pose of a camera on the default mount: the body's attitude
        if not config.tilt_forward_deg:
            return body
        return camera_pose_from_body(body.east_m, body.north_m, body.altitude_m, body_quaternion(body), mount)

    def slant_range(t_s: float) -> float:
        pose = motion.pose(t_s)
        down = -rotation_from_quaternion(body_quaternion(pose))[:, 2]  # the body's -z in the world
        if world is None:  # a flat ground
            return pose.altitude_m / max(float(-down[2]), 1e-6)
        distance, _ = world.cast(world.camera_centre(pose)[None], down[None])
        return float(min(distance[0], 2 * max_range_m))

    frame_times_s, gps_times_s, imu_times_s = sensor_times(config, duration_s)
    range_times_s = np.arange(0.0, duration_s, 1.0 / config.height_hz) if config.height_topic else np.zeros(0)
    if config.height_noise_m is None:
        height_noise_m = max(0.005 * altitude_m, 0.02)
    else:
        height_noise_m = config.height_noise_m
    blur_px = config.speed_mps * config.exposure_s / (altitude_m / cam.focal_px)
    topic = config.frame_topic
    gain = 1.0
    with writer as bag:
        camera = ("base_link", "camera", np.zeros(3), quaternion_from_rotation(mount.body_from_camera()))
        bag.add(TF_STATIC_TOPIC, bags.transforms(START_NS, [camera]), START_NS)  # how the camera is mounted
        for t_s in gps_times_s:
            e, n, _ = traj.at(t_s)
            lat, lon = area.frame.to_latlon(e, n)
            stamp_ns = START_NS + int(t_s * 1e9)
            fix = bags.navsatfix(
                stamp_ns, "gps", float(lat), float(lon), altitude_m, np.diag(GT_VARIANCES_M2), cov_type=2
            )
            bag.add(config.gt_topic, fix, stamp_ns)
        if config.imu_topic:
            write_imu(bag, config, lambda t: body_quaternion(motion.pose(t)), imu_times_s, imu_rng)
        if config.gt_imu_topic:
            write_true_attitude(bag, config.gt_imu_topic, lambda t: body_quaternion(motion.pose(t)), gps_times_s)
        if config.height_topic:
            _write_ranges(bag, config, slant_range, max_range_m, range_times_s, height_noise_m, range_rng)
        for t_s in tqdm(frame_times_s, desc="rendering frames", unit="frame", disable=config.quiet):
            if lens is not None:
                frame = lens.render(config.lens_k, (cam.width_px, cam.height_px), camera_pose(t_s), config.distortion)
            elif world is None:
                frame, _ = render_frame(ortho, cam, camera_pose(t_s))
            else:
                frame = world.render(cam.K, (cam.width_px, cam.height_px), camera_pose(t_s))
            frame = motion_blur(frame, blur_px, -90.0)  # the camera moves towards the image top
            gain = float(np.clip(gain * math.exp(rng.normal(0, 0.02)), 0.7, 1.3))  # slow exposure drift
            frame = photometric(np.clip(frame * gain, 0, 255).astype(np.uint8), rng, 0.3)
            write_frame(bag, config, t_s, frame)
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
        imu_topic=config.imu_topic,
        attitudes=len(imu_times_s),
        height_topic=config.height_topic,
        ranges=len(range_times_s),
        trajectory=traj,
        relief=world is not None,
        gt_imu_topic=config.gt_imu_topic,
    )
