"""The `localizer` node: camera frames in, ``sensor_msgs/NavSatFix`` on /jzi/fix out.

Frames arrive with sensor-data QoS; a worker thread localizes the newest one
while the executor keeps spinning, and a frame that arrives while another
is being processed replaces the one waiting (counted as dropped).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseArray
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, NavSatFix

from ..errors import JziError
from ..localizer import InputError, Localizer, LocalizerConfig
from .convert import candidates_to_poses, compressed_to_array, estimate_to_fix, fix_to_prior, image_to_array

PARAMETERS = {
    # name: (default, description)
    "map_path": ("", "map directory (jzi build-map), indexed for the model (jzi index-map)"),
    "model_path": ("", "model checkpoint (jzi train)"),
    "backend": ("torch", "inference backend: torch, onnxruntime or tensorrt"),
    "device": ("cpu", "device of the backend: cpu, cuda or cuda:N"),
    "threads": (0, "CPU threads for torch (0 = torch's default)"),
    "image_topic": ("/camera/image_raw", "camera topic"),
    "transport": ("raw", "raw (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage)"),
    "fix_topic": ("/jzi/fix", "output sensor_msgs/NavSatFix topic"),
    "frame_id": ("jzi_camera", "frame_id of the published fixes (the camera's frame)"),
    "altitude_m": (0.0, "altitude [m] written into every fix (finite: robot_localization drops NaN)"),
    "vertical_variance_m2": (1.0e4, "variance [m^2] of the altitude, which the localizer does not measure"),
    "beam_width": (4, "beam width of the zoom search (1 = greedy)"),
    "top_k": (5, "candidate cells kept per frame"),
    "min_confidence": (0.2, "below this best-cell probability a fix is published with status NO_FIX"),
    "max_rate_hz": (0.0, "most frames localized per second (0 = as fast as possible)"),
    "prior_topic": ("", "optional NavSatFix topic of a prior position that narrows the search ('' = none)"),
    "prior_max_age_s": (5.0, "a prior older than this [s] is ignored"),
    "smoothing_noise_m2_s": (0.0, "temporal filter process noise [m^2/s] (0 = no smoothing)"),
    "publish_candidates": (False, "publish the top-K candidates as geometry_msgs/PoseArray"),
    "candidates_topic": ("/jzi/candidates", "PoseArray topic (x east, y north [m] in the map frame, z = probability)"),
}


class LatestFrame:
    """A one-slot mailbox: ``put`` replaces what waits (a drop), ``take`` blocks."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item = None
        self.dropped = 0
        self.closed = False

    def put(self, item) -> None:
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify()

    def take(self, timeout: float = 0.5):
        with self._cond:
            if self._item is None and not self.closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class LocalizerNode(Node):
    def __init__(self) -> None:
        super().__init__("jzi_localizer")
        for name, (default, text) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=text))
        p = self.param
        if p("transport") not in ("raw", "compressed"):
            raise JziError(f"transport must be raw or compressed, not {p('transport')!r}")
        self.mailbox = LatestFrame()
        self.fix_pub = self.create_publisher(NavSatFix, p("fix_topic"), 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.cand_pub = self.create_publisher(PoseArray, p("candidates_topic"), 10) if p("publish_candidates") else None
        msg_type = CompressedImage if p("transport") == "compressed" else Image
        self.create_subscription(msg_type, p("image_topic"), self.on_frame, qos_profile_sensor_data)
        self.prior: tuple[NavSatFix, float] | None = None
        if p("prior_topic"):
            self.create_subscription(NavSatFix, p("prior_topic"), self.on_prior, 10)
        self.create_timer(1.0, self.publish_diagnostics)
        self.localizer: Localizer | None = None
        self.worker: threading.Thread | None = None
        self.stats = {
            "processed": 0,
            "rejected": 0,
            "latency_ms": deque(maxlen=200),
            "done_at": deque(maxlen=50),
            "confidence": float("nan"),
        }

    def param(self, name: str):
        return self.get_parameter(name).value

    def load_localizer(self) -> Localizer:
        """Load map and model; raises JziError with a clear message."""
        p = self.param
        if not p("map_path") or not p("model_path"):
            raise JziError("set the parameters map_path and model_path (launch arguments map:= and model:=)")
        if p("threads") > 0:
            import torch

            torch.set_num_threads(p("threads"))
        cfg = LocalizerConfig(
            beam=p("beam_width"),
            top_k=p("top_k"),
            min_confidence=p("min_confidence"),
            smoothing_noise_m2_s=p("smoothing_noise_m2_s"),
        )
        return Localizer(p("map_path"), p("model_path"), backend=p("backend"), config=cfg, device=p("device"))

    def start(self, localizer: Localizer) -> None:
        self.localizer = localizer
        self.worker = threading.Thread(target=self.work, name="jzi_localizer_worker", daemon=True)
        self.worker.start()
        self.get_logger().info(
            f"localizing {self.param('image_topic')} ({self.param('transport')}) on {localizer.grid.describe()}, "
            f"backend {localizer.backend.name}; publishing {self.param('fix_topic')}"
        )

    def stop(self) -> None:
        self.mailbox.close()
        if self.worker is not None:
            self.worker.join(timeout=5.0)

    def on_frame(self, msg) -> None:
        self.mailbox.put((msg, time.monotonic()))

    def on_prior(self, msg: NavSatFix) -> None:
        self.prior = (msg, time.monotonic())

    def work(self) -> None:
        min_period = 1.0 / self.param("max_rate_hz") if self.param("max_rate_hz") > 0 else 0.0
        last_start = 0.0
        while not self.mailbox.closed:
            wait = last_start + min_period - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            item = self.mailbox.take()
            if item is None:
                continue
            last_start = time.monotonic()
            self.process(*item)

    def process(self, msg, received: float) -> None:
        try:
            array, order = compressed_to_array(msg) if isinstance(msg, CompressedImage) else image_to_array(msg)
            prior = None
            if self.prior is not None and time.monotonic() - self.prior[1] <= self.param("prior_max_age_s"):
                prior = fix_to_prior(self.prior[0])
            stamp_s = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            try:
                est = self.localizer.localize(array, order, prior=prior, stamp_s=stamp_s)
            except InputError as exc:
                if prior is None or "prior" not in str(exc):
                    raise
                self.get_logger().warning(f"ignoring the prior: {exc}", throttle_duration_sec=5.0)
                est = self.localizer.localize(array, order, stamp_s=stamp_s)
        except InputError as exc:
            self.stats["rejected"] += 1
            self.get_logger().warning(f"frame skipped: {exc}", throttle_duration_sec=2.0)
            return
        fix = estimate_to_fix(est, msg.header, self.param("altitude_m"), self.param("vertical_variance_m2"))
        fix.header.frame_id = self.param("frame_id")
        self.fix_pub.publish(fix)
        if self.cand_pub is not None:
            self.cand_pub.publish(candidates_to_poses(est, fix.header))
        now = time.monotonic()
        self.stats["processed"] += 1
        self.stats["latency_ms"].append((now - received) * 1e3)
        self.stats["done_at"].append(now)
        self.stats["confidence"] = est.confidence

    def publish_diagnostics(self) -> None:
        s = self.stats
        lat = np.array(s["latency_ms"]) if s["latency_ms"] else np.array([np.nan])
        done = list(s["done_at"])
        rate = (len(done) - 1) / (done[-1] - done[0]) if len(done) > 1 and done[-1] > done[0] else 0.0
        status = DiagnosticStatus(name="jzi_localizer: localization", hardware_id="jzi_ros")
        if self.localizer is None:
            status.level, status.message = DiagnosticStatus.ERROR, "not loaded"
        elif not done or time.monotonic() - done[-1] > 2.0:
            status.level, status.message = DiagnosticStatus.WARN, "no frames localized in the last 2 s"
        elif s["confidence"] < self.param("min_confidence"):
            status.level, status.message = DiagnosticStatus.WARN, "low confidence"
        else:
            status.level, status.message = DiagnosticStatus.OK, "localizing"
        values = {
            "frames_processed": s["processed"],
            "frames_dropped": self.mailbox.dropped,
            "frames_rejected": s["rejected"],
            "rate_hz": f"{rate:.2f}",
            "latency_p50_ms": f"{np.percentile(lat, 50):.1f}",
            "latency_p95_ms": f"{np.percentile(lat, 95):.1f}",
            "last_confidence": f"{s['confidence']:.3f}",
        }
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [status]
        self.diag_pub.publish(msg)


def main(argv: list[str] | None = None) -> int:
    rclpy.init(args=argv if argv is not None else sys.argv)
    node = None
    try:
        node = LocalizerNode()
        localizer = node.load_localizer()
    except JziError as exc:
        (node.get_logger() if node else rclpy.logging.get_logger("jzi_localizer")).error(str(exc))
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        return 1
    node.start(localizer)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.stop()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
