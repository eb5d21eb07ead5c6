"""The node as its own process, and a client that talks to it over DDS.

``start_node`` runs the installed ``localizer`` executable with
``--ros-args --params-file config/localize.yaml`` (what launch_ros does) in
a ROS domain of its own; :class:`Client` publishes camera frames and collects
fixes and diagnostics. The node benchmark and the node's tests both use them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rclpy
import rclpy.executors
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, Imu, NavSatFix, Range

from ..share import config_file


def node_command(**params: Any) -> list[str]:
    """The command line that starts the node with the package's parameter file and ``params``."""
    exe = Path(sys.executable).with_name("localizer")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "jzi_ros.ros.entry"]
    cmd += ["--ros-args", "--params-file", str(config_file("localize.yaml"))]
    for name, value in params.items():
        cmd += ["-p", f"{name}:={value}"]
    return cmd


def start_node(domain_id: int, **params: Any) -> subprocess.Popen:
    """Start the node in ROS domain ``domain_id``; its stdout and stderr go to one text pipe."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        node_command(**params), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def proc_status(pid: int) -> dict[str, int]:
    """The numeric fields of ``/proc/PID/status`` (``VmRSS``, ``VmHWM`` [kB], ``Threads``, ...): name -> value."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        first = rest.split()[:1]
        if first and first[0].isdigit():
            out[name] = int(first[0])
    return out


def stamp_ns_of(msg: Any) -> int:
    """A message's header stamp [ns]."""
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def image_msg(frame: np.ndarray, stamp_ns: int, encoding: str = "rgb8") -> Image:
    """A ``sensor_msgs/Image`` of an (H, W[, C]) uint8 frame."""
    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    msg.header.frame_id = "camera"
    msg.height, msg.width = frame.shape[:2]
    msg.encoding = encoding
    msg.step = frame.shape[1] * (frame.shape[2] if frame.ndim == 3 else 1)
    msg.data = frame.tobytes()
    return msg


def compressed_msg(frame: np.ndarray, stamp_ns: int, quality: int = 95) -> CompressedImage:
    """A JPEG ``sensor_msgs/CompressedImage`` of an (H, W, 3) RGB frame."""
    msg = CompressedImage()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    msg.header.frame_id = "camera"
    msg.format = "jpeg"
    msg.data = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
    return msg


def sensor_msgs_at(pose: Any, stamp_ns: int) -> tuple[Imu, Range]:
    """What a drone's IMU and rangefinder report at a camera ``pose`` (a :class:`~jzi_ros.data.CameraPose`).

    The body's attitude (ENU, default mount) and the range [m] along its -z, stamped ``stamp_ns``.
    """
    from ..geo.camera import body_quaternion

    imu, rng = Imu(), Range()
    for m in (imu, rng):
        m.header.stamp.sec, m.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    o = imu.orientation
    o.x, o.y, o.z, o.w = (float(v) for v in body_quaternion(pose))
    rng.range, rng.min_range, rng.max_range = float(pose.altitude_m), 0.1, 10_000.0
    return imu, rng


class Client:
    """A node of its own in ``domain_id`` that publishes frames on ``topic``.

    It collects the fixes on ``fix_topic`` (with their arrival time [s, monotonic]),
    the poses on the topic beside it (``jzi/pose`` beside ``jzi/fix``) and the diagnostics.
    """

    def __init__(self, domain_id: int, topic: str, compressed: bool, fix_topic: str = "/jzi/fix") -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("jzi_client", context=self.context)
        self.pub = self.node.create_publisher(CompressedImage if compressed else Image, topic, qos_profile_sensor_data)
        self.fixes: list[tuple[NavSatFix, float]] = []
        self.diagnostics: list[DiagnosticArray] = []
        self.node.create_subscription(NavSatFix, fix_topic, lambda m: self.fixes.append((m, time.monotonic())), 10)
        self.poses: list[PoseWithCovarianceStamped] = []
        pose_topic = fix_topic.rsplit("/", 1)[0] + "/pose"
        self.node.create_subscription(PoseWithCovarianceStamped, pose_topic, self.poses.append, 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin(self, seconds: float) -> None:
        """Handle messages for ``seconds``."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=min(0.02, max(0.0, end - time.monotonic())))

    def has_fix(self, stamp_ns: int) -> bool:
        """Whether the fix of the frame stamped ``stamp_ns`` has arrived."""
        return any(stamp_ns_of(f) == stamp_ns for f, _ in self.fixes)

    def send_and_wait(self, msg: Image | CompressedImage, timeout_s: float = 15.0, tries: int = 3) -> float:
        """Publish a frame and wait for its fix, resending it up to ``tries`` times.

        One frame is in flight, so the node never has to drop one; best-effort
        QoS may lose a message, so it is resent. Returns the time [s, monotonic]
        of the send that got the fix.
        """
        stamp_ns = stamp_ns_of(msg)
        sent = time.monotonic()
        for _ in range(tries):
            sent = time.monotonic()
            self.pub.publish(msg)
            end = sent + timeout_s / tries
            while time.monotonic() < end:
                self.spin(0.02)
                if self.has_fix(stamp_ns):
                    return sent
        return sent

    def wait_for_node(self, proc: subprocess.Popen, timeout_s: float = 90.0) -> None:
        """Wait until the node subscribes to the frames; a clear error if it exits or never does."""
        end = time.monotonic() + timeout_s
        while self.pub.get_subscription_count() == 0:
            if proc.poll() is not None:
                raise RuntimeError(f"the node exited early:\n{proc.stdout.read() if proc.stdout else ''}")
            if time.monotonic() > end:
                raise RuntimeError(f"the node did not subscribe to {self.pub.topic_name} within {timeout_s:.0f} s")
            self.spin(0.2)
        self.spin(1.0)  # let discovery settle both ways

    def diagnostic_statuses(self) -> list[Any]:
        """The node's diagnostics statuses (``DiagnosticStatus``: level, message, values) that came, oldest first."""
        return [s for d in self.diagnostics for s in d.status if s.name.startswith("jzi_localizer")]

    def diagnostic_values(self) -> dict[str, str]:
        """The key/values of the node's latest diagnostics status ({} if none came)."""
        statuses = self.diagnostic_statuses()
        return {kv.key: kv.value for kv in statuses[-1].values} if statuses else {}

    def close(self) -> None:
        """Shut this client's node and context down."""
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


class Recorder:
    """What ``ros2 bag record`` does, on a node of this process.

    ``topics`` (name -> message class) are written to a rosbag2 at ``path`` as they come (serialized, with
    their receive time); :meth:`close` ends the bag.
    """

    def __init__(self, node: Any, path: str | Path, topics: dict[str, type], storage: str = "mcap") -> None:
        from ..data.bags import BagWriter

        self.bag = BagWriter(path, storage).__enter__()
        self.counts = dict.fromkeys(topics, 0)
        self.subscriptions = [  # cameras with sensor-data QoS, as they publish; the rest reliable, as the node does
            node.create_subscription(t, topic, self._writer(topic, _msgtype(t)), _qos_of(t), raw=True)
            for topic, t in topics.items()
        ]

    def _writer(self, topic: str, msgtype: str):
        def write(cdr: bytes) -> None:
            self.bag.add_raw(topic, msgtype, cdr, time.time_ns())
            self.counts[topic] += 1

        return write

    def close(self) -> None:
        """Finish the bag."""
        self.bag.__exit__(None, None, None)


def _qos_of(t: type) -> Any:
    return qos_profile_sensor_data if t in (Image, CompressedImage) else 100


def _msgtype(t: type) -> str:
    """The ROS name of a message class (``sensor_msgs/msg/NavSatFix``)."""
    return f"{t.__module__.split('.')[0]}/msg/{t.__name__}"
