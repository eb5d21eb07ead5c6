"""The localizer node with real ROS 2: its own process (as launch_ros starts it),
frames published from this process over DDS, fixes checked on arrival."""

from __future__ import annotations

import random

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed (make test installs the ROS 2 wheels)")

from sensor_msgs.msg import NavSatFix  # noqa: E402

from jzi_ros.data import CameraPose, Pinhole, render_frame  # noqa: E402
from jzi_ros.geo import MapDir  # noqa: E402
from jzi_ros.geo.ortho import LocalOrtho  # noqa: E402
from jzi_ros.ros.harness import Client, compressed_msg, image_msg, stamp_ns_of, start_node  # noqa: E402


@pytest.fixture(scope="module")
def frames(trained):
    mapdir = MapDir(trained[0])
    grid = mapdir.grid
    ortho = LocalOrtho.for_map(mapdir, pad_m=2 * grid.terminal_size_m)
    cam = Pinhole(64, 64, 60.0)
    rng = np.random.default_rng(21)
    out = []
    for _ in range(12):
        e, n = rng.uniform(-0.45, 0.45, 2) * grid.size_m
        pose = CameraPose(e, n, cam.altitude_for_footprint(1.5 * grid.terminal_size_m), rng.uniform(0, 360))
        lat, lon = grid.frame.to_latlon(e, n)
        out.append((render_frame(ortho, cam, pose)[0], float(lat), float(lon), pose))
    return out, grid


def _flight(map_dir, count: int) -> tuple[list[np.ndarray], list[CameraPose]]:
    """``count`` frames of a straight flight over the map (a tenth of a cell apart, heading 30 deg) and poses."""
    mapdir = MapDir(map_dir)
    grid, cell = mapdir.grid, mapdir.grid.terminal_size_m
    ortho = LocalOrtho.for_map(mapdir, pad_m=2 * cell)
    cam = Pinhole(64, 64, 60.0)
    poses = [
        CameraPose(-0.2 * grid.size_m + 0.1 * cell * i, 0.1 * grid.size_m, cam.altitude_for_footprint(1.5 * cell), 30.0)
        for i in range(count)
    ]
    return [render_frame(ortho, cam, p)[0] for p in poses], poses


def _error_m(fix: NavSatFix, lat: float, lon: float) -> float:
    from jzi_ros.evaluation import geodesic_m

    return float(geodesic_m(fix.latitude, fix.longitude, lat, lon))


def _sensors(client, pose, stamp: int, width: int, prefix: str = "/test") -> None:
    """Publish what the robot knows at a frame's stamp: IMU attitude, rangefinder height, camera info."""
    from sensor_msgs.msg import CameraInfo, Imu, Range

    from jzi_ros.geo.camera import body_quaternion

    imu, rng, info = Imu(), Range(), CameraInfo()
    for m in (imu, rng, info):
        m.header.stamp.sec, m.header.stamp.nanosec = divmod(stamp, 10**9)
    imu.orientation.x, imu.orientation.y, imu.orientation.z, imu.orientation.w = (
        float(v) for v in body_quaternion(pose)
    )
    rng.range, rng.min_range, rng.max_range = float(pose.altitude_m), 0.1, 1000.0
    info.width = info.height = width
    info.k = [float(v) for v in Pinhole(width, width, 60.0).K.ravel()]
    for topic, msg in (("imu", imu), ("range", rng), ("camera_info", info)):
        client.publishers[f"{prefix}/{topic}"].publish(msg)


@pytest.mark.parametrize("transport", ["raw", "compressed"])
def test_node_publishes_fixes_for_camera_frames(trained, frames, transport):
    """Raw frames come with the robot's IMU, rangefinder and camera info (and verify against the map);
    compressed ones come alone (the registration searches the heading)."""
    from sensor_msgs.msg import CameraInfo, Imu, Range

    map_dir, model, _ = trained
    domain = random.randint(1, 200)
    knows = transport == "raw"
    sensors = {"imu_topic": "/test/imu", "height_topic": "/test/range", "camera_info_topic": "/test/camera_info"}
    proc = start_node(
        domain,
        map_path=map_dir,
        model_path=model,
        image_topic="/test/image",
        transport=transport,
        frame_id="test_cam",
        altitude_m=42.5,
        beam_width=4,
        tracking=False,  # the frames jump across the map: no robot flies so
        # compressed: an integer for a float parameter is taken, and a GPS in outage (NO_FIX) must not pin the search
        **(sensors if knows else {"min_confidence": 1, "prior_topic": "/test/prior"}),
    )
    client = Client(domain, "/test/image", compressed=transport == "compressed")
    client.publishers = {
        t: client.node.create_publisher(m, t, 10)
        for t, m in (("/test/imu", Imu), ("/test/range", Range), ("/test/camera_info", CameraInfo))
    }
    try:
        client.wait_for_node(proc)
        shots, grid = frames
        sent = {}
        if not knows:
            lost = NavSatFix()
            lost.status.status = NavSatFix().status.STATUS_NO_FIX
            lost.latitude, lost.longitude = shots[0][1], shots[0][2]
            lost.position_covariance_type = NavSatFix.COVARIANCE_TYPE_UNKNOWN
            prior_pub = client.node.create_publisher(NavSatFix, "/test/prior", 10)
            for _ in range(5):
                prior_pub.publish(lost)
                client.spin(0.1)
        for i, (frame, lat, lon, pose) in enumerate(shots):
            stamp = 1_700_000_000 * 10**9 + i * 200_000_000
            if knows:
                _sensors(client, pose, stamp, frame.shape[1])
                client.spin(0.05)
            if transport == "raw" and i == 3:  # a corrupt frame: the node logs it and goes on
                bad = image_msg(frame, stamp)
                bad.data = bytes(10)
                client.pub.publish(bad)
                client.spin(0.3)
                continue
            msg = compressed_msg(frame, stamp) if transport == "compressed" else image_msg(frame, stamp)
            sent[stamp] = (lat, lon, client.send_and_wait(msg))
        client.spin(1.0)
        assert proc.poll() is None
        got = {stamp_ns_of(f): (f, t) for f, t in client.fixes}
        assert set(got) == set(sent), "every frame gets exactly its own fix, stamped with the frame's stamp"
        errors, latency = [], []
        for stamp, (fix, t_recv) in got.items():
            lat, lon, t_sent = sent[stamp]
            assert fix.header.frame_id == "test_cam"
            assert fix.altitude == 42.5 and np.isfinite(fix.altitude)
            assert fix.status.status in (NavSatFix().status.STATUS_FIX, NavSatFix().status.STATUS_NO_FIX)
            assert fix.position_covariance_type == NavSatFix.COVARIANCE_TYPE_APPROXIMATED
            cov = np.array(fix.position_covariance).reshape(3, 3)
            assert np.allclose(cov, cov.T) and np.all(np.linalg.eigvalsh(cov) > 0)
            errors.append(_error_m(fix, lat, lon))
            latency.append(t_recv - t_sent)
        assert np.median(errors) < grid.terminal_size_m
        print(
            f"{transport}: median error {np.median(errors):.1f} m, end-to-end latency "
            f"p50 {1e3 * np.median(latency):.0f} ms"
        )
        values = client.diagnostic_values()
        assert values, "diagnostics are published"
        assert {"frames_processed", "frames_dropped", "latency_p95_ms", "last_confidence"} <= set(values)
        assert values["refinement"] == "on"
        if transport == "raw":
            assert values["frames_rejected"] == "1"
            assert values["stale_attitude"] == "0" and values["stale_height"] == "0"
            # the node's own frames of the map's raster, with the robot's attitude: verified and metric
            assert int(values["frames_verified"]) >= 9, values
            assert np.median(errors) < 0.25 * grid.terminal_size_m
    finally:
        client.close()
        proc.terminate()
        out = proc.communicate(timeout=20)[0]
    if transport == "raw":
        assert "frame skipped" in out
    else:
        assert "ignoring the prior: the prior's status is NO_FIX" in out


def test_node_with_a_bad_map_logs_one_error_and_exits_non_zero(trained, tmp_path):
    proc = start_node(random.randint(1, 200), map_path=tmp_path / "no_map", model_path=trained[1])
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode != 0
    errors = [line for line in out.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "not a jzi map" in errors[0]
    assert "Traceback" not in out


@pytest.mark.parametrize(
    "params, names",
    [
        ({"beam_width": 0}, "beam 0"),
        ({"min_confidence": "high"}, "parameter min_confidence must be a float"),
        ({"hfov_deg": 200.0}, "hfov_deg"),
        ({"matcher": "loftr"}, "unknown matcher"),
        ({"max_speed_mps": 0.0}, "max_speed_mps"),
    ],
)
def test_node_with_bad_parameters_says_which_and_exits_non_zero(trained, params, names):
    proc = start_node(random.randint(1, 200), map_path=trained[0], model_path=trained[1], **params)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode != 0 and "Traceback" not in out
    errors = [line for line in out.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and names in errors[0], out


def test_node_tracks_a_flight_with_its_imu_turns_frames_by_its_yaw_and_outlives_a_silent_imu(trained):
    """A continuous flight with IMU, rangefinder and camera info: tracked after the first verified fix; the
    same view turned by 90 degrees with the IMU's yaw turned too gives the same fix; frames without IMU
    messages are counted as stale and still localized."""
    from dataclasses import replace

    from sensor_msgs.msg import CameraInfo, Imu, Range

    map_dir, model, _ = trained
    grid, cell = MapDir(map_dir).grid, MapDir(map_dir).grid.terminal_size_m
    frames, poses = _flight(map_dir, 8)
    # the last view again, the camera turned 90 degrees clockwise: its image turns counter-clockwise
    poses.append(replace(poses[-1], yaw_deg=120.0))
    frames.append(np.ascontiguousarray(np.rot90(frames[-1])))
    domain = random.randint(1, 200)
    proc = start_node(
        domain,
        map_path=map_dir,
        model_path=model,
        image_topic="/test/image",
        imu_topic="/test/imu",
        height_topic="/test/range",
        camera_info_topic="/test/camera_info",
    )
    client = Client(domain, "/test/image", compressed=False)
    client.publishers = {
        t: client.node.create_publisher(m, t, 10)
        for t, m in (("/test/imu", Imu), ("/test/range", Range), ("/test/camera_info", CameraInfo))
    }
    try:
        client.wait_for_node(proc)
        stamps = []
        for i, (frame, pose) in enumerate(zip(frames + frames[:2], poses + poses[:2], strict=True)):
            stamp = 1_700_000_000 * 10**9 + i * 200_000_000 + (i >= len(frames)) * 10**9
            if i < len(frames):  # the last two frames come a second later without any IMU message near them
                _sensors(client, pose, stamp, frame.shape[1])
                client.spin(0.05)
            client.send_and_wait(image_msg(frame, stamp))
            stamps.append(stamp)
        client.spin(1.5)
        assert proc.poll() is None
        got = {stamp_ns_of(f): f for f, _ in client.fixes}
        assert set(got) == set(stamps), "every frame is localized, the two without IMU messages too"
        fixes = [got[s] for s in stamps]
        errors = [_error_m(f, *grid.frame.to_latlon(p.east_m, p.north_m)) for f, p in zip(fixes, poses, strict=False)]
        assert np.median(errors) < 0.25 * cell, errors
        turned, upright = fixes[8], fixes[7]
        assert turned.status.status == upright.status.status == NavSatFix().status.STATUS_FIX
        assert _error_m(turned, upright.latitude, upright.longitude) < 0.1 * cell
        _assert_poses_hold_the_headings(client, fixes, poses + poses[:2])
        values = client.diagnostic_values()
        assert values["stale_attitude"] == "2", values
        assert int(values["frames_verified"]) >= 8, values
        assert values["search_mode"] in ("tracking", "global")
        by_mode = dict(item.rsplit(" ", 1) for item in values["frames_by_mode"].split(", "))
        assert int(by_mode["tracking"]) >= 7, values
    finally:
        client.close()
        proc.terminate()
        proc.communicate(timeout=20)


def _assert_poses_hold_the_headings(client, fixes: list[NavSatFix], poses: list[CameraPose]) -> None:
    """Every FIX came with a pose of its stamp; their headings hold the truth within two of their sigmas."""
    import math

    from jzi_ros.geo.camera import body_yaw_deg, yaw_of

    client.spin(0.5)
    by_stamp = {stamp_ns_of(p): p for p in client.poses}
    fixed = [(f, pose) for f, pose in zip(fixes, poses, strict=True) if f.status.status == f.status.STATUS_FIX]
    assert set(by_stamp) == {stamp_ns_of(f) for f, _ in fixed}, "a pose for every FIX, none for a NO_FIX"
    within = []
    for fix, truth in fixed:
        msg = by_stamp[stamp_ns_of(fix)]
        o, cov = msg.pose.pose.orientation, np.array(msg.pose.covariance).reshape(6, 6)
        assert msg.header.frame_id == "jzi_map" and np.all(np.diag(cov) > 0)
        error = (yaw_of((o.x, o.y, o.z, o.w)) - body_yaw_deg(truth) + 180.0) % 360.0 - 180.0
        within.append(abs(error) <= 2 * math.degrees(math.sqrt(cov[5, 5])))
    assert len(fixed) >= 8 and np.mean(within) >= 0.8, within


def test_a_replay_under_sim_time_gives_the_same_fixes_at_half_and_double_speed(trained):
    """With use_sim_time the node goes by /clock: diagnostics come before any clock, a replay at 2x gives
    the fixes a replay at 0.5x gives, and the rate the diagnostics report is the replay's own."""
    from jzi_ros.evaluation import geodesic_m

    frames, poses = _flight(trained[0], 6)
    runs = {rate: _replay_under_clock(trained, frames, poses, rate) for rate in (0.5, 2.0)}
    fixes, _ = runs[0.5]
    assert len(fixes) == len(frames)
    for rate in (0.5, 2.0):
        got, rate_hz = runs[rate]
        assert set(got) == set(fixes), rate
        for stamp, (lat, lon, status) in fixes.items():
            assert got[stamp][2] == status
            assert geodesic_m(lat, lon, got[stamp][0], got[stamp][1]) < 1e-6, (rate, stamp)
        assert 0.75 < rate_hz < 1.33, f"frames 1 s apart on the replay's clock, at {rate}x: {rate_hz} Hz"


def _replay_under_clock(trained, frames, poses, rate: float) -> tuple[dict, float]:
    """Replay frames 1 s apart (with IMU, range, camera info) driven by a /clock at ``rate`` x real time.

    Returns the fixes by stamp (lat, lon, status) and the rate [Hz] the last diagnostics reported.
    """
    import time

    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CameraInfo, Imu, Range

    domain = random.randint(1, 200)
    topics = {"/sim/imu": Imu, "/sim/range": Range, "/sim/camera_info": CameraInfo}
    proc = start_node(
        domain,
        map_path=trained[0],
        model_path=trained[1],
        image_topic="/sim/image",
        imu_topic="/sim/imu",
        height_topic="/sim/range",
        camera_info_topic="/sim/camera_info",
        use_sim_time=True,
    )
    client = Client(domain, "/sim/image", compressed=False)
    client.publishers = {t: client.node.create_publisher(m, t, 10) for t, m in topics.items()}
    clock = client.node.create_publisher(Clock, "/clock", 10)
    start_ns, period_ns = 1_700_000_000 * 10**9, 10**9
    stamps = [start_ns + (i + 1) * period_ns for i in range(len(frames))]
    try:
        client.wait_for_node(proc)
        assert client.diagnostic_statuses(), "diagnostics come before any /clock"
        wall0 = time.monotonic()
        sent = told = 0
        while time.monotonic() - wall0 < (len(frames) + 2) / rate + 20:
            now_ns = start_ns + int((time.monotonic() - wall0) * rate * 1e9)
            tick = Clock()
            tick.clock.sec, tick.clock.nanosec = divmod(now_ns, 10**9)
            clock.publish(tick)
            # as `ros2 bag play --clock` does: each message when the clock reaches it, the sensors (stamped with
            # the frame) on the replay's clock a tenth of a second before the frame, as a 50 Hz IMU's come
            if told < len(frames) and now_ns >= stamps[told] - period_ns // 10:
                _sensors(client, poses[told], stamps[told], frames[told].shape[1], prefix="/sim")
                told += 1
            if sent < told and now_ns >= stamps[sent]:
                client.pub.publish(image_msg(frames[sent], stamps[sent]))
                sent += 1
            if sent == len(frames) and all(client.has_fix(s) for s in stamps) and now_ns > stamps[-1] + 1.5e9:
                break
            client.spin(0.01)
        assert proc.poll() is None
        fixes = {stamp_ns_of(f): (f.latitude, f.longitude, f.status.status) for f, _ in client.fixes}
        return fixes, float(client.diagnostic_values()["rate_hz"])
    finally:
        client.close()
        proc.terminate()
        proc.communicate(timeout=20)


def test_node_refuses_a_heading_known_model_without_an_imu_heading(trained, tmp_path):
    import torch

    state = torch.load(trained[1], map_location="cpu", weights_only=True)
    state["extra"].setdefault("train_config", {})["heading_known"] = True
    torch.save(state, tmp_path / "north_up.pt")
    for extra in ({}, {"imu_topic": "/imu", "imu_heading": False}):
        proc = start_node(random.randint(1, 200), map_path=trained[0], model_path=tmp_path / "north_up.pt", **extra)
        out = proc.communicate(timeout=60)[0]
        assert proc.returncode != 0 and "Traceback" not in out
        errors = [line for line in out.splitlines() if "ERROR" in line]
        assert len(errors) == 1 and "--heading-known" in errors[0], out


def test_the_localizer_executable_without_ros_says_where_rclpy_comes_from():
    import subprocess
    import sys

    code = "import sys; sys.modules['rclpy'] = None; from jzi_ros.ros.entry import main; sys.exit(main([]))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "rclpy is missing" in proc.stderr and "Source a ROS 2 installation" in proc.stderr


def test_node_tracks_a_ground_drive_with_its_imu_and_odometry(trained, tmp_path):
    """A ground robot over real DDS: a street-level checkpoint, a camera looking ahead 1.6 m up, IMU, wheel
    odometry and a last GPS fix as the prior; after it the node tracks the drive with the odometry and
    publishes verified fixes registered on the ground plane."""
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import CameraInfo, Imu

    from jzi_ros.data import bags
    from jzi_ros.data.drive import write_drive
    from jzi_ros.data.flight import CAMERA_INFO_TOPIC, FlightConfig
    from jzi_ros.images import decode_message
    from jzi_ros.model import load_checkpoint, save_checkpoint

    map_dir, model_path, tif = trained
    grid = MapDir(map_dir).grid
    # the checkpoint of a street-level model (the zoom's guesses do not matter once the prior starts tracking)
    model, extra = load_checkpoint(model_path)
    extra = {
        **extra,
        "train_config": {**extra.get("train_config", {}), "street": True, "aerial": False},
        # a street model's registration scale is not fitted (its frames are registered on the ground plane)
        "calibration": {**extra.get("calibration", {}), "registration_scale": 1.0},
    }
    street = save_checkpoint(tmp_path / "street.pt", model, extra)
    drive = FlightConfig(
        out=tmp_path / "drive",
        geotiff=(tif,),
        center=(grid.center_lat, grid.center_lon),
        size_m=grid.size_m,
        platform="ground",
        duration_s=10.0,
        camera_hz=2.0,
        speed_mps=5.0,
        image_px=480,
        seed=4,
        quiet=True,
    )
    write_drive(drive)
    with bags.BagReader(drive.out) as reader:
        truth = bags.read_fix_track(reader, drive.gt_topic)
        messages = {t: [(bags.stamp_of(m.msg, m.bag_ns), m.msg) for m in reader.messages([t])] for t in reader.topics}

    def stamped(msg, stamp: int):
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
        return msg

    def near(topic: str, stamp: int) -> list:  # the messages of a sensor either side of a frame's stamp
        items = messages[topic]
        i = int(np.searchsorted([s for s, _ in items], stamp))
        return items[max(0, i - 1) : i + 1]

    domain = random.randint(1, 200)
    proc = start_node(
        domain,
        map_path=map_dir,
        model_path=street,
        image_topic="/test/image",
        imu_topic="/test/imu",
        odom_topic="/test/odom",
        camera_info_topic="/test/camera_info",
        prior_topic="/test/prior",
        height_m=1.6,
        mount_pitch_deg=90.0,
    )
    client = Client(domain, "/test/image", compressed=False)
    pubs = {
        t: client.node.create_publisher(m, t, 10)
        for t, m in (("/test/imu", Imu), ("/test/odom", Odometry), ("/test/camera_info", CameraInfo))
    }
    prior_pub = client.node.create_publisher(NavSatFix, "/test/prior", 10)
    frames = messages[drive.frame_topic]
    try:
        client.wait_for_node(proc)
        lat0, lon0 = truth.at(frames[0][0], 1.0)
        prior = stamped(NavSatFix(), frames[0][0])
        prior.latitude, prior.longitude = lat0, lon0
        prior.status.status = prior.status.STATUS_FIX
        prior.position_covariance = [4.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 4.0]
        prior.position_covariance_type = NavSatFix.COVARIANCE_TYPE_DIAGONAL_KNOWN
        prior_pub.publish(prior)
        client.spin(0.3)
        for stamp, msg in frames:
            for s, m in near(drive.imu_topic, stamp):
                imu = stamped(Imu(), s)
                imu.orientation.x, imu.orientation.y = m.orientation.x, m.orientation.y
                imu.orientation.z, imu.orientation.w = m.orientation.z, m.orientation.w
                pubs["/test/imu"].publish(imu)
            for s, m in near(drive.odom_topic, stamp):
                odom = stamped(Odometry(), s)
                p, o = m.pose.pose.position, m.pose.pose.orientation
                odom.pose.pose.position.x, odom.pose.pose.position.y = p.x, p.y
                odom.pose.pose.orientation.z, odom.pose.pose.orientation.w = o.z, o.w
                pubs["/test/odom"].publish(odom)
            for s, m in near(CAMERA_INFO_TOPIC, stamp):
                info = stamped(CameraInfo(), s)
                info.width, info.height, info.k = m.width, m.height, [float(v) for v in m.k]
                pubs["/test/camera_info"].publish(info)
            client.spin(0.05)
            client.send_and_wait(image_msg(*decode_message(msg)[:1], stamp))
        client.spin(1.5)
        assert proc.poll() is None
        got = {stamp_ns_of(f): f for f, _ in client.fixes}
        assert set(got) == {s for s, _ in frames}, "every frame is localized"
        fixed = [got[s] for s, _ in frames if got[s].status.status == NavSatFix().status.STATUS_FIX]
        errors = [_error_m(got[s], *truth.at(s, 1.0)) for s, _ in frames if got[s] in fixed]
        assert len(fixed) >= 0.7 * len(frames), (len(fixed), len(frames))
        assert np.median(errors) < 2.0, errors
        values = client.diagnostic_values()
        by_mode = dict(item.rsplit(" ", 1) for item in values["frames_by_mode"].split(", "))
        assert int(by_mode.get("tracking", 0)) >= len(frames) - 2, values
        assert values["refinement"] == "on", values
    finally:
        client.close()
        proc.terminate()
        proc.communicate(timeout=20)
