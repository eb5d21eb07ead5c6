"""A simulated ground robot driving through the 3D world, written as a rosbag2.

The robot drives the road network (a GeoJSON of centre lines, as the
generated scene writes it beside its orthophoto) at random turns, on the
right-hand lane, or a route the user gives (waypoints as CSV or a GeoJSON
LineString). Its camera sits ``camera_height_m`` above the ground looking
forward (a pinhole with ``CameraInfo``) or all around (a 360° equirectangular
camera); frames are rendered by :class:`~jzi_ros.data.render3d.World3D`.

It writes the sensors a ground robot has, each at its own rate:

- ``sensor_msgs/Imu``: the body attitude (heading along the road, pitch and
  roll following the terrain's slope plus vibration), with the heading and
  tilt errors of :mod:`jzi_ros.data.flight`'s IMU;
- ``nav_msgs/Odometry`` (wheel odometry): integrated from the true speed
  times ``1 + odom_scale_error`` and the true yaw rate plus a constant
  ``odom_yaw_drift_dps`` and white noise ``odom_yaw_noise_dps`` [deg/s]; it
  starts at the identity in ``odom`` (REP-105) and drifts as real odometry does;
- ``sensor_msgs/NavSatFix``: the ground truth;
- ``tf2_msgs/TFMessage`` on ``/tf_static``: ``base_link`` → ``camera`` (the
  camera's optical frame: x right, y down, z ahead).

Positions are (east, north) [m] in the area's local frame, headings [deg]
clockwise from north; REP-103 yaws counter-clockwise from east.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..geo import BoundsM, LocalFrame, read_info
from ..geo.camera import Mount, quaternion_from_rotation
from ..geo.ortho import LocalOrtho
from . import bags
from .augment import photometric
from .errors import DataError
from .flight import (
    CAMERA_FRAME,
    CAMERA_INFO_TOPIC,
    GT_VARIANCES_M2,
    START_NS,
    TF_STATIC_TOPIC,
    FlightConfig,
    FlightReport,
    Trajectory,
    _flight_area,
    _timed,
    axis_rotation,
    ou_process,
    sensor_times,
    waypoints,
    world_3d,
    write_frame,
    write_imu,
    write_true_attitude,
)
from .render3d import World3D
from .scene import SceneFiles

log = logging.getLogger(__name__)

BODY_FRAME = "base_link"
ODOM_FRAME = "odom"
VIBRATION_DEG = 0.4
"""Standard deviation [deg] of the body's pitch and roll vibration on the road."""
VIBRATION_TAU_S = 0.3
WHEELBASE_PROBE_M = 1.5
"""Half the distance [m] over which the terrain's slope under the robot is measured."""
LANE_SHARE = 0.25
"""The robot drives this share of the road's width right of the centre line."""


@dataclass(frozen=True)
class RoadNetwork:
    """Straight road stretches ``segments`` (N, 2, 2) [(east, north) m] with ``widths_m`` (N,)."""

    segments: np.ndarray
    widths_m: np.ndarray

    @classmethod
    def from_geojson(cls, path: str | Path, frame: LocalFrame) -> RoadNetwork:
        """The LineStrings of a GeoJSON (lon, lat; ``width_m`` property, default 6 m) in ``frame``."""
        try:
            features = json.loads(Path(path).read_text())["features"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"cannot read the roads of {path}: {e}") from None
        segments, widths = [], []
        for feature in features:
            geometry = feature.get("geometry") or {}
            if geometry.get("type") != "LineString":
                continue
            lonlat = np.asarray(geometry["coordinates"], np.float64)[:, :2]
            east, north = frame.to_local(lonlat[:, 1], lonlat[:, 0])
            pts = np.stack([east, north], 1)
            for a, b in zip(pts[:-1], pts[1:], strict=True):
                if np.hypot(*(b - a)) > 1.0:
                    segments.append((a, b))
                    widths.append(float((feature.get("properties") or {}).get("width_m", 6.0)))
        if not segments:
            raise DataError(f"{path} has no road (LineString) to drive")
        return cls(np.array(segments, np.float64), np.array(widths))

    def clipped(self, half_m: float) -> RoadNetwork:
        """The stretches inside the square ±``half_m`` [m] around the frame's origin (Liang-Barsky).

        Raises:
            DataError: no road lies inside.
        """
        keep, widths = [], []
        for (a, b), width in zip(self.segments, self.widths_m, strict=True):
            d = b - a
            lo, hi = 0.0, 1.0
            for p, q in ((-d[0], a[0] + half_m), (d[0], half_m - a[0]), (-d[1], a[1] + half_m), (d[1], half_m - a[1])):
                if abs(p) < 1e-12:
                    if q < 0:
                        lo, hi = 1.0, 0.0
                    continue
                t = q / p
                lo, hi = (max(lo, t), hi) if p < 0 else (lo, min(hi, t))
            if hi - lo > 1e-9 and np.hypot(*((hi - lo) * d)) > 1.0:
                keep.append((a + lo * d, a + hi * d))
                widths.append(width)
        if not keep:
            raise DataError(f"no road lies within the {2 * half_m:.0f} m area")
        return RoadNetwork(np.array(keep), np.array(widths))

    def graph(self, snap_m: float = 2.0) -> tuple[np.ndarray, dict[int, set[int]]]:
        """Nodes (M, 2) [m] (ends and crossings, closer than ``snap_m`` merged) and each node's neighbours."""
        cuts: list[list[float]] = [[0.0, 1.0] for _ in self.segments]
        for i, (a, b) in enumerate(self.segments):
            for j in range(i + 1, len(self.segments)):
                c, d = self.segments[j]
                r, s = b - a, d - c
                denom = r[0] * s[1] - r[1] * s[0]
                if abs(denom) < 1e-9:
                    continue
                t = ((c[0] - a[0]) * s[1] - (c[1] - a[1]) * s[0]) / denom
                u = ((c[0] - a[0]) * r[1] - (c[1] - a[1]) * r[0]) / denom
                if -0.02 <= t <= 1.02 and -0.02 <= u <= 1.02:
                    cuts[i].append(float(np.clip(t, 0, 1)))
                    cuts[j].append(float(np.clip(u, 0, 1)))
        nodes: list[np.ndarray] = []

        def node(p: np.ndarray) -> int:
            for k, q in enumerate(nodes):
                if np.hypot(*(p - q)) < snap_m:
                    return k
            nodes.append(p)
            return len(nodes) - 1

        links: dict[int, set[int]] = {}
        for (a, b), ts in zip(self.segments, cuts, strict=True):
            ids = [node(a + t * (b - a)) for t in sorted(set(ts))]
            for p, q in zip(ids[:-1], ids[1:], strict=True):
                if p != q:
                    links.setdefault(p, set()).add(q)
                    links.setdefault(q, set()).add(p)
        return np.array(nodes), links

    def drive(self, length_m: float, rng: np.random.Generator) -> np.ndarray:
        """A random route (K, 2) [m] at least ``length_m`` long along the roads, on the right-hand lane.

        At each crossing it takes a random road other than the one it came
        by (it turns round only at a dead end); corners are rounded.
        """
        nodes, links = self.graph()
        if not links:
            raise DataError("the roads do not connect into anything drivable")
        start = int(rng.choice(sorted(links)))
        route, previous = [start], -1
        travelled = 0.0
        while travelled < length_m:
            here = route[-1]
            options = sorted(links[here] - {previous}) or [previous]
            following = int(rng.choice(options))
            travelled += float(np.hypot(*(nodes[following] - nodes[here])))
            previous = here
            route.append(following)
        pts = nodes[route]
        lane = LANE_SHARE * float(np.median(self.widths_m))
        return _round_corners(_offset_right(pts, lane))


def _offset_right(points: np.ndarray, offset_m: float) -> np.ndarray:
    """A polyline (K, 2) moved ``offset_m`` to the right of its direction of travel (each vertex by its mean normal)."""
    d = np.diff(points, axis=0)
    d /= np.maximum(np.hypot(d[:, 0], d[:, 1])[:, None], 1e-9)
    right = np.stack([d[:, 1], -d[:, 0]], 1)  # (east, north) rotated clockwise
    normals = np.concatenate([right[:1], (right[:-1] + right[1:]) / 2, right[-1:]])
    normals /= np.maximum(np.hypot(normals[:, 0], normals[:, 1])[:, None], 1e-9)
    return points + offset_m * normals


def _round_corners(points: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Chaikin's corner cutting: the polyline with its corners rounded, the ends kept."""
    for _ in range(iterations):
        a, b = points[:-1], points[1:]
        cut = np.empty((2 * len(a), 2))
        cut[0::2], cut[1::2] = 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b
        points = np.concatenate([points[:1], cut, points[-1:]])
    return points


@dataclass(frozen=True)
class GroundMotion:
    """The robot's true motion: along ``trajectory`` on the terrain of ``world``, vibrating."""

    trajectory: Trajectory
    world: World3D
    t_s: np.ndarray
    pitch_deg: np.ndarray
    roll_deg: np.ndarray

    @classmethod
    def simulate(cls, trajectory: Trajectory, world: World3D, duration_s: float, rng) -> GroundMotion:
        """The motion for ``duration_s`` [s], its vibration drawn from ``rng``."""
        n = int(math.ceil(duration_s / 0.01)) + 2
        vibration = [ou_process(n, 0.01, VIBRATION_DEG, VIBRATION_TAU_S, rng) for _ in range(2)]
        return cls(trajectory, world, np.arange(n) * 0.01, *vibration)

    def body_rotation(self, t_s: float) -> np.ndarray:
        """World-from-body rotation (3x3, REP-103) at ``t_s`` [s]: heading, the terrain's slope, vibration."""
        e, n, heading = self.trajectory.at(t_s)
        h = math.radians(heading)
        ahead, right = np.array([math.sin(h), math.cos(h)]), np.array([math.cos(h), -math.sin(h)])
        p = WHEELBASE_PROBE_M
        probes = (p * ahead, -p * ahead, p * right, -p * right)
        z = [float(self.world.ground_m(*(np.array([e, n]) + v))) for v in probes]
        pitch = math.atan2(z[1] - z[0], 2 * p) + math.radians(float(np.interp(t_s, self.t_s, self.pitch_deg)))
        roll = math.atan2(z[3] - z[2], 2 * p) + math.radians(float(np.interp(t_s, self.t_s, self.roll_deg)))
        yaw = math.radians(90.0 - heading)
        return axis_rotation(2, yaw) @ axis_rotation(1, pitch) @ axis_rotation(0, roll)


def _write_odometry(bag: bags.BagWriter, config: FlightConfig, trajectory: Trajectory, times_s: np.ndarray, rng):
    """Wheel odometry at ``times_s`` [s]: the true motion with a scale error and a yaw-rate drift, integrated."""
    e, n, heading = (np.array(v) for v in zip(*(trajectory.at(t) for t in times_s), strict=True))
    if len(times_s) == 0:
        return
    dt = np.diff(times_s, prepend=times_s[0] - 1.0 / config.odom_hz)
    speed = np.hypot(np.diff(e, prepend=e[0]), np.diff(n, prepend=n[0])) / dt
    yaw_true = np.unwrap(np.radians(90.0 - heading))
    yaw_rate = np.diff(yaw_true, prepend=yaw_true[0]) / dt
    noise = rng.standard_normal(len(times_s)) * math.radians(config.odom_yaw_noise_dps)
    speed_m = speed * (1.0 + config.odom_scale_error)
    rate_m = yaw_rate + math.radians(config.odom_yaw_drift_dps) + noise
    x = y = yaw = 0.0
    pose_var = 0.0
    for k, t_s in enumerate(times_s):
        if k:
            yaw += rate_m[k] * dt[k]
            x += speed_m[k] * math.cos(yaw) * dt[k]
            y += speed_m[k] * math.sin(yaw) * dt[k]
            pose_var += (0.02 * speed_m[k] * dt[k]) ** 2
        stamp_ns = START_NS + int(t_s * 1e9)
        msg = bags.odometry(
            stamp_ns,
            ODOM_FRAME,
            BODY_FRAME,
            (x, y, yaw),
            (speed_m[k], rate_m[k]),
            (pose_var + 1e-4, pose_var + 1e-4, (math.radians(config.odom_yaw_drift_dps) * t_s) ** 2 + 1e-4),
            ((0.02 * speed_m[k]) ** 2 + 1e-4, math.radians(config.odom_yaw_noise_dps) ** 2 + 1e-6),
        )
        bag.add(config.odom_topic, msg, stamp_ns)


def _route(config: FlightConfig, frame: LocalFrame, half_m: float, rasters: list, length_m: float, rng) -> Trajectory:
    """The drive: a random one on the road network, or the user's waypoints."""
    if config.trajectory != "roads":
        return waypoints(Path(str(config.trajectory)), frame, config.speed_mps)
    roads = config.roads or SceneFiles.beside(rasters[0]).roads
    if not Path(roads).is_file():
        raise DataError(f"no road network at {roads}: give --roads ROADS.geojson or a --trajectory of waypoints")
    network = RoadNetwork.from_geojson(roads, frame).clipped(half_m - 5.0)  # the lane stays inside the area
    return _timed(network.drive(length_m, rng), config.speed_mps)


def write_drive(config: FlightConfig) -> FlightReport:
    """Drive the configured ground robot and write its frames and sensors as a rosbag2 (the module docstring).

    Raises:
        DataError: no road network or route, or the route leaves the area;
            :class:`~jzi_ros.data.errors.BagError` when the bag exists or cannot be written.
    """
    writer = bags.BagWriter(config.out, config.storage)  # refuses an existing output before any work
    route_rng, motion_rng, imu_rng, odom_rng, frame_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(5)
    )
    area, rasters = _flight_area(config)
    duration_s = config.duration_s or 60.0
    traj = _route(config, area.frame, area.size_m / 2, rasters, config.speed_mps * duration_s, route_rng)
    duration_s = min(duration_s, traj.duration_s)
    driven = traj.east_north_m[traj.t_s <= duration_s]
    if np.abs(driven).max() > area.size_m / 2:
        raise DataError(f"the route leaves the {area.size_m:.0f} m area; give a larger --size-m or another route")
    log.info("building the 3D world of the %.0f m area ...", area.size_m)
    half = area.size_m / 2
    finest_m = min(read_info(r).resolution_m for r in rasters)
    ortho = LocalOrtho.render(rasters, area.frame, BoundsM(-half, -half, half, half), gsd_m=finest_m)
    world = world_3d(config, ortho, rasters) or World3D(ortho)
    motion = GroundMotion.simulate(traj, world, duration_s, motion_rng)
    mount = Mount(pitch_deg=90.0)  # looking ahead, the image's top up
    cam = config.camera
    frame_times_s, gps_times_s, imu_times_s = sensor_times(config, duration_s)
    odom_times_s = np.arange(0.0, duration_s, 1.0 / config.odom_hz) if config.odom_topic else np.zeros(0)
    camera_offset = np.array([0.0, 0.0, config.camera_height_m])
    with writer as bag:
        tf = [(BODY_FRAME, CAMERA_FRAME, camera_offset, quaternion_from_rotation(mount.body_from_camera()))]
        bag.add(TF_STATIC_TOPIC, bags.transforms(START_NS, tf), START_NS)
        for t_s in gps_times_s:
            e, n, _ = traj.at(t_s)
            lat, lon = area.frame.to_latlon(e, n)
            alt = float(world.ground_m(e, n)) + config.camera_height_m
            stamp_ns = START_NS + int(t_s * 1e9)
            fix = bags.navsatfix(stamp_ns, "gps", float(lat), float(lon), alt, np.diag(GT_VARIANCES_M2), cov_type=2)
            bag.add(config.gt_topic, fix, stamp_ns)

        def true_attitude(t_s: float) -> np.ndarray:
            return quaternion_from_rotation(motion.body_rotation(t_s))

        if config.imu_topic:
            write_imu(bag, config, true_attitude, imu_times_s, imu_rng)
        if config.gt_imu_topic:
            write_true_attitude(bag, config.gt_imu_topic, true_attitude, gps_times_s)
        if config.odom_topic:
            _write_odometry(bag, config, traj, odom_times_s, odom_rng)
        for t_s in tqdm(frame_times_s, desc="rendering street frames", unit="frame", disable=config.quiet):
            e, n, heading = traj.at(t_s)
            body = motion.body_rotation(t_s)
            centre = np.array([e, n, float(world.ground_m(e, n))]) + body @ camera_offset
            if config.panorama:
                frame = world.panorama(e, n, config.camera_height_m, heading, (config.image_px, config.image_px // 2))
            else:
                view = body @ mount.body_from_camera()
                frame = world.render_view(config.lens_k, (cam.width_px, cam.height_px), centre, view, config.distortion)
            write_frame(bag, config, t_s, photometric(frame, frame_rng, 0.3), info=not config.panorama)
    return FlightReport(
        path=config.out,
        storage=config.storage,
        frames=len(frame_times_s),
        fixes=len(gps_times_s),
        duration_s=duration_s,
        altitude_m=config.camera_height_m,
        footprint_m=0.0,
        speed_mps=config.speed_mps,
        area_m=area.size_m,
        image_topic=config.frame_topic,
        camera_info_topic="" if config.panorama else CAMERA_INFO_TOPIC,
        gt_topic=config.gt_topic,
        imu_topic=config.imu_topic,
        attitudes=len(imu_times_s),
        height_topic="",
        ranges=0,
        trajectory=traj,
        odom_topic=config.odom_topic,
        odometry=len(odom_times_s),
        relief=world.relief,
        gt_imu_topic=config.gt_imu_topic,
    )
