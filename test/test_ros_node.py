"""The localizer node with real ROS 2: its own process (as launch_ros starts it),
frames published from this process over DDS, fixes checked on arrival."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed (make test installs the ROS 2 wheels)")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image, NavSatFix  # noqa: E402

from jzi_ros.data import CameraPose, Pinhole, render_frame  # noqa: E402
from jzi_ros.geo import MapDir  # noqa: E402
from jzi_ros.geo.ortho import LocalOrtho  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "config" / "localize.yaml"


def _executable() -> list[str]:
    exe = Path(sys.executable).with_name("localizer")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "jzi_ros.ros.node"]


def start_node(domain: int, **params) -> subprocess.Popen:
    args = [*_executable(), "--ros-args", "--params-file", str(PARAMS)]
    for k, v in params.items():
        args += ["-p", f"{k}:={v}"]
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1")
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


class Client:
    """This test's own node: publishes frames, collects fixes and diagnostics."""

    def __init__(self, domain: int, topic: str, compressed: bool) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("jzi_test_client", context=self.context)
        self.pub = self.node.create_publisher(CompressedImage if compressed else Image, topic, qos_profile_sensor_data)
        self.fixes: list[tuple[NavSatFix, float]] = []
        self.diagnostics: list[DiagnosticArray] = []
        self.node.create_subscription(NavSatFix, "/jzi/fix", lambda m: self.fixes.append((m, time.monotonic())), 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)

    def send_and_wait(self, msg, stamp_ns: int, timeout: float = 15.0, tries: int = 3) -> float:
        """Publish a frame and wait for its fix (one frame in flight, so the
        node never has to drop one); best-effort QoS may lose a message, so
        resend it. Returns the time of the send that got the fix."""
        for _ in range(tries):
            sent = time.monotonic()
            self.pub.publish(msg)
            end = sent + timeout / tries
            while time.monotonic() < end:
                self.spin(0.02)
                if any(f.header.stamp.sec * 10**9 + f.header.stamp.nanosec == stamp_ns for f, _ in self.fixes):
                    return sent
        return sent

    def wait_for_subscriber(self, proc: subprocess.Popen, timeout: float = 90.0) -> None:
        end = time.monotonic() + timeout
        while self.pub.get_subscription_count() == 0:
            assert proc.poll() is None, f"node exited early:\n{proc.stdout.read()}"
            assert time.monotonic() < end, "the node never subscribed"
            self.spin(0.2)
        self.spin(1.0)  # let discovery settle both ways

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def image_msg(frame: np.ndarray, stamp_ns: int, encoding: str = "rgb8") -> Image:
    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    msg.header.frame_id = "camera"
    msg.height, msg.width = frame.shape[:2]
    msg.encoding = encoding
    msg.step = frame.shape[1] * (frame.shape[2] if frame.ndim == 3 else 1)
    msg.data = frame.tobytes()
    return msg


def compressed_msg(frame: np.ndarray, stamp_ns: int) -> CompressedImage:
    import cv2

    msg = CompressedImage()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    msg.format = "jpeg"
    msg.data = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    return msg


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
        out.append((render_frame(ortho, cam, pose)[0], float(lat), float(lon)))
    return out, grid


def _error_m(fix: NavSatFix, lat: float, lon: float) -> float:
    from jzi_ros.tools.metrics import geodesic_m

    return float(geodesic_m(fix.latitude, fix.longitude, lat, lon))


@pytest.mark.parametrize("transport", ["raw", "compressed"])
def test_node_publishes_fixes_for_camera_frames(trained, frames, transport):
    map_dir, model, _ = trained
    domain = random.randint(1, 200)
    proc = start_node(
        domain,
        map_path=map_dir,
        model_path=model,
        image_topic="/test/image",
        transport=transport,
        frame_id="test_cam",
        altitude_m=42.5,
        beam_width=4,
    )
    client = Client(domain, "/test/image", compressed=transport == "compressed")
    try:
        client.wait_for_subscriber(proc)
        shots, grid = frames
        sent = {}
        for i, (frame, lat, lon) in enumerate(shots):
            stamp = 1_700_000_000 * 10**9 + i * 200_000_000
            if transport == "raw" and i == 3:  # a corrupt frame: the node logs it and goes on
                bad = image_msg(frame, stamp)
                bad.data = bytes(10)
                client.pub.publish(bad)
                client.spin(0.3)
                continue
            msg = compressed_msg(frame, stamp) if transport == "compressed" else image_msg(frame, stamp)
            sent[stamp] = (lat, lon, client.send_and_wait(msg, stamp))
        client.spin(1.0)
        assert proc.poll() is None
        got = {f.header.stamp.sec * 10**9 + f.header.stamp.nanosec: (f, t) for f, t in client.fixes}
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
        diag = [s for d in client.diagnostics for s in d.status if s.name.startswith("jzi_localizer")]
        assert diag, "diagnostics are published"
        keys = {kv.key for kv in diag[-1].values}
        assert {"frames_processed", "frames_dropped", "latency_p95_ms", "last_confidence"} <= keys
        if transport == "raw":
            values = {kv.key: kv.value for kv in diag[-1].values}
            assert values["frames_rejected"] == "1"
    finally:
        client.close()
        proc.terminate()
        out = proc.communicate(timeout=20)[0]
    if transport == "raw":
        assert "frame skipped" in out


def test_node_with_a_bad_map_logs_one_error_and_exits_non_zero(trained, tmp_path):
    proc = start_node(random.randint(1, 200), map_path=tmp_path / "no_map", model_path=trained[1])
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode != 0
    errors = [line for line in out.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "not a jzi map" in errors[0]
    assert "Traceback" not in out
