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
from dataclasses import dataclass, field

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
from ..localizer import InputError, Localizer, PriorError
from .convert import candidates_to_poses, compressed_to_array, estimate_to_fix, fix_to_prior, image_to_array
from .params import PARAMETERS, NodeParams


class LatestFrame:
    """A one-slot mailbox: ``put`` replaces what waits (a drop), ``take`` blocks."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item = None
        self.dropped = 0
        self.closed = False

    def put(self, item) -> None:
        """Leave ``item`` in the slot, replacing (and counting as dropped) one still waiting."""
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify()

    def take(self, timeout: float = 0.5):
        """Empty the slot and return what it held; None after ``timeout`` [s] without a frame, or once closed."""
        with self._cond:
            if self._item is None and not self.closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        """Mark the mailbox closed and wake every :meth:`take` that waits."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()


@dataclass
class NodeStats:
    """What the node has done, for its diagnostics.

    Frames localized and rejected, recent latencies [ms], recent completion
    times [s, monotonic] and the last confidence.
    """

    processed: int = 0
    rejected: int = 0
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=200))
    done_at_s: deque[float] = field(default_factory=lambda: deque(maxlen=50))
    confidence: float = float("nan")

    def record(self, received_s: float, done_s: float, confidence: float) -> None:
        """Count one localized frame, received and done at these monotonic times [s]."""
        self.processed += 1
        self.latency_ms.append((done_s - received_s) * 1e3)
        self.done_at_s.append(done_s)
        self.confidence = confidence

    @property
    def rate_hz(self) -> float:
        """Frames localized per second over the recent ones."""
        done = self.done_at_s
        return (len(done) - 1) / (done[-1] - done[0]) if len(done) > 1 and done[-1] > done[0] else 0.0


class LocalizerNode(Node):
    """The localizer node: declares the parameters, publishers and subscriptions.

    The work is the :class:`~jzi_ros.localizer.Localizer`'s, on a worker thread.
    """

    def __init__(self) -> None:
        super().__init__("jzi_localizer")
        for name, (default, text) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=text))
        self.params = self.read_params()
        p = self.params
        self.mailbox = LatestFrame()
        self.fix_pub = self.create_publisher(NavSatFix, p.fix_topic, 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.cand_pub = self.create_publisher(PoseArray, p.candidates_topic, 10) if p.publish_candidates else None
        msg_type = CompressedImage if p.transport == "compressed" else Image
        self.create_subscription(msg_type, p.image_topic, self.on_frame, qos_profile_sensor_data)
        self.prior: tuple[NavSatFix, float] | None = None
        if p.prior_topic:
            self.create_subscription(NavSatFix, p.prior_topic, self.on_prior, 10)
        self.create_timer(1.0, self.publish_diagnostics)
        self.localizer: Localizer | None = None
        self.worker: threading.Thread | None = None
        self.stats = NodeStats()

    def read_params(self) -> NodeParams:
        """The declared parameters' values, once, as a :class:`NodeParams`."""
        return NodeParams(**{name: self.get_parameter(name).value for name in PARAMETERS})

    def load_localizer(self) -> Localizer:
        """Load map and model; raises JziError with a clear message."""
        p = self.params
        if not p.map_path or not p.model_path:
            raise JziError("set the parameters map_path and model_path (launch arguments map:= and model:=)")
        if p.threads > 0:
            import torch

            torch.set_num_threads(p.threads)
        return Localizer(p.map_path, p.model_path, backend=p.backend, config=p.localizer_config(), device=p.device)

    def start(self, localizer: Localizer) -> None:
        """Start localizing frames with ``localizer`` on the worker thread."""
        self.localizer = localizer
        self.worker = threading.Thread(target=self.work, name="jzi_localizer_worker", daemon=True)
        self.worker.start()
        self.get_logger().info(
            f"localizing {self.params.image_topic} ({self.params.transport}) on {localizer.grid.describe()}, "
            f"backend {localizer.backend.name}; publishing {self.params.fix_topic}"
        )

    def stop(self) -> None:
        """Stop the worker thread (after the frame it is on)."""
        self.mailbox.close()
        if self.worker is not None:
            self.worker.join(timeout=5.0)

    def on_frame(self, msg: Image | CompressedImage) -> None:
        """Camera callback: the frame replaces any that waits."""
        self.mailbox.put((msg, time.monotonic()))

    def on_prior(self, msg: NavSatFix) -> None:
        """Prior callback: keep the newest, with its arrival time."""
        self.prior = (msg, time.monotonic())

    def work(self) -> None:
        """The worker thread's loop: take the newest frame, localize it, at most ``max_rate_hz``."""
        min_period = self.params.min_period_s
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

    def process(self, msg: Image | CompressedImage, received_s: float) -> None:
        """Localize one frame and publish its fix; a frame that cannot be used is counted and skipped."""
        assert self.localizer is not None, "start() sets the localizer before frames are processed"
        try:
            array, order = compressed_to_array(msg) if isinstance(msg, CompressedImage) else image_to_array(msg)
            prior = None
            if self.prior is not None and time.monotonic() - self.prior[1] <= self.params.prior_max_age_s:
                prior = fix_to_prior(self.prior[0])
            stamp_s = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            try:
                est = self.localizer.localize(array, order, prior=prior, stamp_s=stamp_s)
            except PriorError as exc:
                self.get_logger().warning(f"ignoring the prior: {exc}", throttle_duration_sec=5.0)
                est = self.localizer.localize(array, order, stamp_s=stamp_s)
        except InputError as exc:
            self.stats.rejected += 1
            self.get_logger().warning(f"frame skipped: {exc}", throttle_duration_sec=2.0)
            return
        fix = estimate_to_fix(est, msg.header, self.params.altitude_m, self.params.vertical_variance_m2)
        fix.header.frame_id = self.params.frame_id
        self.fix_pub.publish(fix)
        if self.cand_pub is not None:
            self.cand_pub.publish(candidates_to_poses(est, fix.header))
        self.stats.record(received_s, time.monotonic(), est.confidence)

    def publish_diagnostics(self) -> None:
        """Publish rate, latency, drops and confidence on /diagnostics."""
        s = self.stats
        lat = np.array(s.latency_ms) if s.latency_ms else np.array([np.nan])
        done = s.done_at_s
        status = DiagnosticStatus(name="jzi_localizer: localization", hardware_id="jzi_ros")
        if self.localizer is None:
            status.level, status.message = DiagnosticStatus.ERROR, "not loaded"
        elif not done or time.monotonic() - done[-1] > 2.0:
            status.level, status.message = DiagnosticStatus.WARN, "no frames localized in the last 2 s"
        elif s.confidence < self.params.min_confidence:
            status.level, status.message = DiagnosticStatus.WARN, "low confidence"
        else:
            status.level, status.message = DiagnosticStatus.OK, "localizing"
        values = {
            "frames_processed": s.processed,
            "frames_dropped": self.mailbox.dropped,
            "frames_rejected": s.rejected,
            "rate_hz": f"{s.rate_hz:.2f}",
            "latency_p50_ms": f"{np.percentile(lat, 50):.1f}",
            "latency_p95_ms": f"{np.percentile(lat, 95):.1f}",
            "last_confidence": f"{s.confidence:.3f}",
        }
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [status]
        self.diag_pub.publish(msg)


def main(argv: list[str] | None = None) -> int:
    """The ``localizer`` executable: load, spin, shut down cleanly; 1 on a configuration error."""
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
