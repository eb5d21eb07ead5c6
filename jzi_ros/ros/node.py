"""The `localizer` node: camera frames in, ``sensor_msgs/NavSatFix`` on jzi/fix out.

A managed (lifecycle) node: ``configure`` loads the map and model, ``activate``
subscribes and localizes, ``deactivate`` stops, ``cleanup`` unloads; with the
``autostart`` parameter (the default) it goes through the first two by itself.

Frames arrive with sensor-data QoS; a worker thread decodes and localizes the
newest one while the executor keeps spinning, and a frame that arrives while
another is being processed replaces the one waiting (counted as dropped; it
cost its deserialization only). What the
robot knows besides its frames (optional): the camera's intrinsics
(``CameraInfo``), the body's attitude (``Imu``) and its height above ground
(``Range`` or a fixed ``height_m``), and its odometry. Each is read at the
frame's stamp, interpolated between the messages around it (as `jzi eval-bag`
reads a bag's) when they are within ``sensor_max_age_s`` of it; otherwise the
frame is localized without it and the stale message is counted. After a verified
fix the next frames are searched near it (``tracking``, see
:mod:`jzi_ros.localizer.tracking`); diagnostics say how each frame was
searched (``search_mode``: global, tracking or prior).

Time: what ages or times (a prior's age, ``max_rate_hz``, the diagnostics'
rate and silence) runs on the node's ROS clock, the ``/clock`` topic's under
``use_sim_time`` (a bag replayed at any speed gives the fixes it gives in real
time); sensors and tracking go by the messages' stamps; latencies are wall
time, and diagnostics come every wall second even while ``/clock`` stands still.
"""

from __future__ import annotations

import ctypes
import math
import os
import re
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseArray, PoseWithCovarianceStamped
from nav_msgs.msg import Odometry as OdometryMsg
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, Imu, NavSatFix, Range

from ..data.tracks import AttitudeTrack, HeightTrack, OdometryTrack
from ..errors import JziError
from ..geo.lens import Lens
from ..localizer import Estimate, InputError, Localizer, Odometry, PriorError
from ..localizer.localizer import HEADING_NEEDED, EngineSettings
from ..localizer.refine import Attitude
from ..share import resolve_model
from .convert import (
    camera_info_to_lens,
    candidates_to_poses,
    estimate_to_fix,
    estimate_to_pose,
    fix_to_prior,
    frame_to_array,
    imu_orientation,
    odometry_pose,
    range_height,
)
from .entry import skipped_imports
from .params import PARAMETERS, NodeParams

FAILED_IN_A_ROW = 10
"""Diagnostics turn ERROR when this many frames in a row could not be localized."""
SENSOR_HISTORY = 200
"""IMU, height and odometry messages kept to be looked up at a frame's stamp (2 s at :data:`SENSOR_SPACING_NS`),
interpolated between the two around it as `jzi eval-bag` reads a bag's."""
SENSOR_SPACING_NS = 10_000_000
"""A sensor message stamped less than this [ns] after the last one kept is not kept: a 1 kHz IMU keeps
2 s of history, not 0.2 s (a frame waiting for the worker would find its attitude gone)."""


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

    Frames localized and rejected, recent latencies [ms, wall clock], recent
    completion times [s, the node's ROS clock: sim time under ``use_sim_time``]
    and the last confidence.
    """

    received: int = 0
    processed: int = 0
    rejected: int = 0
    failed: int = 0
    failures: Counter = field(default_factory=Counter)
    recent_ok: deque[bool] = field(default_factory=lambda: deque(maxlen=FAILED_IN_A_ROW))
    last_failure: str = ""
    worker_restarts: int = 0
    worker_death: str = ""
    verified: int = 0
    stale_attitude: int = 0
    stale_height: int = 0
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=200))
    done_at_s: deque[float] = field(default_factory=lambda: deque(maxlen=50))
    recent_verified: deque[bool] = field(default_factory=lambda: deque(maxlen=50))
    confidence: float = float("nan")
    verdict: str = ""
    mode: str = ""
    modes: Counter = field(default_factory=Counter)

    def record(self, latency_ms: float, done_s: float, est: Estimate) -> None:
        """Count one localized frame, done ``latency_ms`` after it arrived, at ``done_s`` [s, ROS clock]."""
        self.processed += 1
        self.verified += est.verified
        self.recent_verified.append(est.verified)
        self.latency_ms.append(latency_ms)
        self.done_at_s.append(done_s)
        self.confidence = est.confidence
        self.verdict = est.verdict
        self.mode = est.mode
        self.modes[est.mode] += 1
        self.recent_ok.append(True)

    def fail(self, kind: str, reason: str) -> None:
        """Count a frame that could not be localized: ``rejected`` (bad input) or an error's kind."""
        if kind.startswith("rejected"):
            self.rejected += 1
        else:
            self.failed += 1
        self.failures[kind] += 1
        self.recent_ok.append(False)
        self.last_failure = reason

    @property
    def rate_hz(self) -> float:
        """Frames localized per second over the recent ones."""
        done = self.done_at_s
        return (len(done) - 1) / (done[-1] - done[0]) if len(done) > 1 and done[-1] > done[0] else 0.0


class LocalizerNode(LifecycleNode):
    """The localizer node, a managed (lifecycle) node; the work is the :class:`~jzi_ros.localizer.Localizer`'s.

    - ``configure``: read and check the parameters, load the map, model and backend (a failure fails
      the transition with its one-line reason; the node stays unconfigured and alive);
    - ``activate``: subscribe to the camera and the sensors and start the worker thread; fixes are published;
    - ``deactivate``: stop localizing (the map and model stay loaded);
    - ``cleanup``: free the map and model; ``shutdown``: from any state.

    Diagnostics are published in every state. ``autostart`` (a parameter; the launch file's default)
    has :func:`main` configure and activate the node itself, without a lifecycle manager.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("jzi_localizer", **kwargs)
        for name, (default, text) in PARAMETERS.items():
            # dynamic typing: `min_confidence:=1` (an integer) is read and checked by NodeParams, not refused by rclpy
            self.declare_parameter(name, default, ParameterDescriptor(description=text, dynamic_typing=True))
        self.params = NodeParams()
        self.mailbox = LatestFrame()
        self.mailbox.close()  # nothing is taken before activate
        self.fix_pub: Any = None
        self.pose_pub: Any = None
        self.cand_pub: Any = None
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.inputs: list[Any] = []  # the subscriptions, while active
        self.prior: tuple[NavSatFix, float] | None = None
        # recent (stamp [ns], body quaternion) and (stamp [ns], range [m]): looked up at each frame's stamp
        self.attitudes: deque[tuple[int, np.ndarray]] = deque(maxlen=SENSOR_HISTORY)
        self.ranges: deque[tuple[int, float]] = deque(maxlen=SENSOR_HISTORY)
        self.odometry: deque[tuple[int, Odometry]] = deque(maxlen=SENSOR_HISTORY)
        self.camera: Lens | None = None
        self.verified_at_s = -math.inf  # when a frame last verified [s, ROS clock]: a prior older than it is spent
        # diagnostics every wall second, also under use_sim_time before /clock runs or while a replay is paused
        self.create_timer(1.0, self.publish_diagnostics, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.localizer: Localizer | None = None
        self.worker: threading.Thread | None = None
        self.active = False
        self.not_configured = "not configured"  # why, for the diagnostics
        self.stats = NodeStats()
        self._warned: dict[str, float] = {}

    def read_params(self) -> NodeParams:
        """The declared parameters' values, once, as a :class:`NodeParams` (types and ranges checked)."""
        return NodeParams.from_values({name: self.get_parameter(name).value for name in PARAMETERS})

    def load_localizer(self) -> Localizer:
        """Load map and model; raises JziError with a clear message."""
        p = self.params
        if not p.map_path:
            raise JziError("set the parameter map_path (launch argument map:=)")
        model_path = str(resolve_model(p.model_path))  # none: the shipped general one; or one by name
        if not Path(model_path).is_dir():  # a checkpoint: torch and timm load it, skipping what no node uses
            with skipped_imports():
                from .. import model  # noqa: F401
        loc = Localizer(
            p.map_path,
            model_path,
            backend=p.backend,
            config=p.localizer_config(),
            device=p.device,
            threads=p.threads,
            engines=EngineSettings(p.tensorrt_fp16, p.force_engine_update),
        )
        if loc.heading_known and not (p.imu_topic and p.imu_heading):
            raise JziError(f"{model_path}: {HEADING_NEEDED}: set imu_topic (with imu_heading true)")
        return loc

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Check the parameters and load the map, model and backend; FAILURE with the reason logged."""
        try:
            self.params = self.read_params()
            self.localizer = self.load_localizer()
        except JziError as exc:
            self.not_configured = f"configure failed: {exc}"
            self.get_logger().error(str(exc))
            return TransitionCallbackReturn.FAILURE
        except Exception as exc:  # noqa: BLE001 - rclpy would swallow it without a word
            self.not_configured = f"configure failed ({type(exc).__name__}): {exc}"
            self.get_logger().error(self.not_configured)
            return TransitionCallbackReturn.FAILURE
        release_freed_memory()
        p = self.params
        self.fix_pub = self.create_lifecycle_publisher(NavSatFix, p.fix_topic, 10)
        if p.pose_topic:
            self.pose_pub = self.create_lifecycle_publisher(PoseWithCovarianceStamped, p.pose_topic, 10)
        if p.publish_candidates:
            self.cand_pub = self.create_lifecycle_publisher(PoseArray, p.candidates_topic, 10)
        backend = self.localizer.backend.name
        self.get_logger().info(
            f"configured: {self.localizer.grid.describe()}, backend {backend} ({cpu_threads(backend, p.threads)})"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe to the camera and the sensors and start the worker: fixes are published."""
        p = self.params
        msg_type = CompressedImage if p.transport == "compressed" else Image
        self.inputs = [self.create_subscription(msg_type, p.image_topic, self.on_frame, qos_profile_sensor_data)]
        sensors: list[tuple[str, Any, Any, QoSProfile | int]] = [
            (p.prior_topic, NavSatFix, self.on_prior, 10),
            (p.imu_topic, Imu, self.on_imu, qos_profile_sensor_data),
            (p.height_topic, Range, self.on_range, qos_profile_sensor_data),
            (p.camera_info_topic, CameraInfo, self.on_camera_info, qos_profile_sensor_data),
            (p.odom_topic, OdometryMsg, self.on_odometry, qos_profile_sensor_data),
        ]
        self.inputs += [self.create_subscription(t, topic, cb, qos) for topic, t, cb, qos in sensors if topic]
        self.mailbox = LatestFrame()
        self.start_worker()
        self.active = True
        self.get_logger().info(f"localizing {p.image_topic} ({p.transport}); publishing {p.fix_topic}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop localizing: unsubscribe and stop the worker after its frame; the map and model stay loaded."""
        self._stop_inputs()
        self.get_logger().info("deactivated: not localizing")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Free the map, model and publishers: back to unconfigured."""
        self._unload()
        self.not_configured = "cleaned up"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop and free everything, from whichever state."""
        self._stop_inputs()
        self._unload()
        self.not_configured = "shut down"
        return TransitionCallbackReturn.SUCCESS

    def _stop_inputs(self) -> None:
        self.active = False
        for sub in self.inputs:
            self.destroy_subscription(sub)
        self.inputs = []
        self.stop()

    def _unload(self) -> None:
        for pub in (self.fix_pub, self.pose_pub, self.cand_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self.fix_pub = self.pose_pub = self.cand_pub = None
        self.localizer = None
        self.prior, self.camera = None, None
        for history in (self.attitudes, self.ranges, self.odometry):
            history.clear()
        release_freed_memory()

    def start_worker(self) -> None:
        """Start the worker thread that localizes the frames the mailbox holds."""
        self.worker = threading.Thread(target=self.work, name="jzi_localizer_worker", daemon=True)
        self.worker.start()

    def revive_worker(self) -> bool:
        """The watchdog: start a new worker when the last one died (not when stopped); whether it had to."""
        if self.worker is None or self.worker.is_alive() or self.mailbox.closed:
            return False
        self.stats.worker_restarts += 1
        self.get_logger().error(
            f"the localization worker died ({self.stats.worker_death}); restarting it ({self.stats.worker_restarts})"
        )
        self.start_worker()
        return True

    def stop(self, wait_s: float = 5.0) -> None:
        """Stop the worker thread after the frame it is on (waiting for it at most ``wait_s``)."""
        self.mailbox.close()
        if self.worker is not None:
            self.worker.join(timeout=wait_s)

    def on_frame(self, msg: Image | CompressedImage) -> None:
        """Camera callback: the frame replaces any that waits (decoded by the worker, if it is taken)."""
        self.stats.received += 1
        self.mailbox.put((msg, time.monotonic(), self.now_s()))

    def on_prior(self, msg: NavSatFix) -> None:
        """Prior callback: keep the newest, with its arrival time."""
        self.prior = (msg, self.now_s())

    def on_imu(self, msg: Imu) -> None:
        """IMU callback: keep the newest orientation with its stamp."""
        q = imu_orientation(msg)
        if q is not None:
            _keep(self.attitudes, _stamp_ns(msg.header), q)

    def on_range(self, msg: Range) -> None:
        """Rangefinder callback: keep the newest valid range with its stamp."""
        r = range_height(msg)
        if r is not None:
            _keep(self.ranges, _stamp_ns(msg.header), r)

    def on_odometry(self, msg: OdometryMsg) -> None:
        """Odometry callback: keep the newest planar poses with their stamps (one that is not finite is skipped)."""
        pose = odometry_pose(msg)
        if pose is not None:
            _keep(self.odometry, _stamp_ns(msg.header), pose)

    def on_camera_info(self, msg: CameraInfo) -> None:
        """Camera info callback: keep the intrinsics; one that cannot be used is reported."""
        try:
            self.camera = camera_info_to_lens(msg)
        except JziError as exc:
            self.get_logger().warning(f"camera info ignored: {exc}", throttle_duration_sec=10.0)

    def knowledge(self, stamp_ns: int) -> tuple[Attitude | None, float | None]:
        """What the robot knows at a frame's stamp besides its camera: attitude and height (None: unknown or stale)."""
        p = self.params
        max_ns = p.sensor_max_age_s * 1e9
        q = _attitude_at(self.attitudes, stamp_ns, max_ns) if p.imu_topic else None
        self.stats.stale_attitude += bool(p.imu_topic) and q is None
        r = _range_at(self.ranges, stamp_ns, max_ns) if p.height_topic else None
        attitude, height = p.knowledge(q, r)
        self.stats.stale_height += bool(p.height_topic) and height is None
        return attitude, height

    def work(self) -> None:
        """The worker thread's loop: take the newest frame, localize it, at most ``max_rate_hz``."""
        try:
            self._work()
        except BaseException as exc:  # what escapes the loop kills the thread: the watchdog reports and revives it
            self.stats.worker_death = f"{type(exc).__name__}: {exc}"
            raise

    def _work(self) -> None:
        min_period = self.params.min_period_s
        last_start = -math.inf
        while not self.mailbox.closed:
            while self.now_s() < last_start + min_period and not self.mailbox.closed:
                time.sleep(0.005)  # max_rate_hz on the ROS clock: a replay at 2x is throttled as the robot was
            item = self.mailbox.take()
            if item is None:
                continue
            last_start = self.now_s()
            try:
                self.process(*item)
            except Exception as exc:  # noqa: BLE001 - the worker must outlive any one frame
                self.stats.fail(type(exc).__name__, str(exc))
                self.get_logger().error(f"frame failed ({type(exc).__name__}): {exc}", throttle_duration_sec=2.0)

    def now_s(self) -> float:
        """The node's ROS clock [s]: the system's, or the /clock topic's under ``use_sim_time``."""
        return self.get_clock().now().nanoseconds * 1e-9

    def process(self, msg: Image | CompressedImage, received_s: float, received_ros_s: float) -> None:
        """Localize one frame and publish its fix; a frame that cannot be used is counted and skipped.

        ``received_s``: when it arrived [s, monotonic: its latency]; ``received_ros_s``: the same on the
        ROS clock (the stamp of a camera that sends none).
        """
        assert self.localizer is not None, "start() sets the localizer before frames are processed"
        try:
            array, order = frame_to_array(msg)
            prior = None
            fresh = self.prior is not None and self.now_s() - self.prior[1] <= self.params.prior_max_age_s
            # a prior is spent once a frame verified after it: from there tracking knows better where the robot is
            if self.prior is not None and fresh and self.prior[1] > self.verified_at_s:
                try:
                    prior = fix_to_prior(self.prior[0])
                except PriorError as exc:
                    self.get_logger().warning(f"ignoring the prior: {exc}", throttle_duration_sec=5.0)
            # an unstamped camera: the arrival time stands in (tracking needs the time between frames)
            stamp_s: float = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9 or received_ros_s
            attitude, height = self.knowledge(_stamp_ns(msg.header))
            odometry = None
            if self.params.odom_topic:
                odometry = _odometry_at(self.odometry, _stamp_ns(msg.header), self.params.sensor_max_age_s * 1e9)
            # the camera info's field of view (the localizer scales it to the frame), else hfov_deg
            known: dict[str, Any] = {
                "stamp_s": stamp_s,
                "camera": self.camera,
                "attitude": attitude,
                "height_m": height,
                "odometry": odometry,
            }
            try:
                est = self.localizer.localize(array, order, prior=prior, **known)
            except PriorError as exc:
                self.get_logger().warning(f"ignoring the prior: {exc}", throttle_duration_sec=5.0)
                est = self.localizer.localize(array, order, **known)
        except InputError as exc:
            self.stats.fail(f"rejected ({kind_of(str(exc))})", str(exc))
            self.warn_once_per_kind(f"frame skipped: {exc}")
            return
        if est.verified:
            self.verified_at_s = self.now_s()
        p = self.params
        fix = estimate_to_fix(est, msg.header, p.altitude_m, p.vertical_variance_m2)
        fix.header.frame_id = p.frame_id
        if self.pose_pub is not None and est.trusted:  # a pose has no status: only a FIX is one
            pose = estimate_to_pose(est, fix.header, p.pose_frame, fix.altitude, p.vertical_variance_m2, p.mount)
            self.pose_pub.publish(pose)
        self.fix_pub.publish(fix)
        if self.cand_pub is not None:
            self.cand_pub.publish(candidates_to_poses(est, fix.header))
        self.stats.record((time.monotonic() - received_s) * 1e3, self.now_s(), est)

    def warn_once_per_kind(self, text: str, error: bool = False, period_s: float = 2.0) -> None:
        """Log ``text`` unless the same kind of message (its words without numbers) was logged within ``period_s``."""
        kind = re.sub(r"[\d.]+", "N", text)[:80]
        now = time.monotonic()
        if now - self._warned.get(kind, -math.inf) < period_s:
            return
        self._warned[kind] = now
        (self.get_logger().error if error else self.get_logger().warning)(text)

    def publish_diagnostics(self) -> None:
        """Publish rate, latency, drops and confidence on /diagnostics."""
        s = self.stats
        lat = np.array(s.latency_ms) if s.latency_ms else np.array([np.nan])
        done = s.done_at_s
        status = DiagnosticStatus(name="jzi_localizer: localization", hardware_id="jzi_ros")
        if self.localizer is None:  # unconfigured: waiting for a lifecycle manager, or its configure failed
            failed = self.not_configured.startswith("configure failed")
            status.level = DiagnosticStatus.ERROR if failed else DiagnosticStatus.WARN
            status.message = self.not_configured
        elif not self.active:
            status.level, status.message = DiagnosticStatus.WARN, "inactive: configured, not localizing"
        elif self.revive_worker():
            status.level = DiagnosticStatus.ERROR
            status.message = f"the localization worker died ({s.worker_death}) and was restarted"
        elif len(s.recent_ok) == s.recent_ok.maxlen and not any(s.recent_ok):
            status.level = DiagnosticStatus.ERROR
            status.message = f"the last {len(s.recent_ok)} frames all failed: {s.last_failure}"
        elif not done or self.now_s() - done[-1] > 2.0:
            status.level, status.message = DiagnosticStatus.WARN, "no frames localized in the last 2 s"
        elif s.confidence < self.params.min_confidence:
            status.level, status.message = DiagnosticStatus.WARN, "low confidence"
        elif s.recent_verified and s.recent_verified[-1]:
            status.level, status.message = DiagnosticStatus.OK, f"localizing ({s.mode}), verified against the map"
        else:
            status.level, status.message = DiagnosticStatus.OK, f"localizing ({s.mode})"
        values = {
            "frames_received": s.received,
            "frames_processed": s.processed,
            "frames_dropped": self.mailbox.dropped,
            "frames_rejected": s.rejected,
            "frames_failed": s.failed,
            "failures_by_kind": ", ".join(f"{k} {n}" for k, n in s.failures.most_common()),
            "rate_hz": f"{s.rate_hz:.2f}",
            "latency_p50_ms": f"{np.percentile(lat, 50):.1f}",
            "latency_p95_ms": f"{np.percentile(lat, 95):.1f}",
            "last_confidence": f"{s.confidence:.3f}",
            "frames_verified": s.verified,
            "verified_share_recent": f"{np.mean(s.recent_verified) if s.recent_verified else 0.0:.2f}",
            "last_verdict": s.verdict,
            "refinement": "on" if self.localizer is not None and self.localizer.refine_summary()["on"] else "off",
            "stale_attitude": s.stale_attitude,
            "stale_height": s.stale_height,
            "search_mode": s.mode,
            "frames_by_mode": ", ".join(f"{k} {n}" for k, n in s.modes.most_common()),
            "worker_restarts": s.worker_restarts,
        }
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [status]
        self.diag_pub.publish(msg)


def kind_of(text: str) -> str:
    """What kind of message ``text`` is: its words before any details (in brackets, after ``:;,``), numbers as N."""
    return re.sub(r"[\d.]+", "N", re.split(r" \(|[:;,]", text)[0])[:80]


def cpu_threads(backend: str, threads: int) -> str:
    """The process's CPU thread settings, for the log: the backend's threads and OpenMP's wait policy.

    torch is asked only when it runs the model (an export runs without importing it).
    """
    if backend == "torch":
        import torch

        threads = torch.get_num_threads()
    count = str(threads) if threads > 0 else "default"
    return f"{backend} threads {count}, OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'unset')}"


def release_freed_memory() -> None:
    """Return the heap memory freed so far to the system (glibc keeps it otherwise); nothing elsewhere.

    Loading the model and map frees tens of MB (the checkpoint's copy of the
    weights, temporaries) that would otherwise stay resident for the node's life.
    """
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _attitude_at(history: deque, stamp_ns: int, max_ns: float) -> np.ndarray | None:
    """The attitude at a frame's stamp, slerped between the messages around it as `jzi eval-bag` reads a bag's."""
    return AttitudeTrack.from_rows(history).at(stamp_ns, int(max_ns)) if history else None


def _range_at(history: deque, stamp_ns: int, max_ns: float) -> float | None:
    """The range at a frame's stamp, interpolated between the (valid) messages around it, as `jzi eval-bag` does."""
    if not history:
        return None
    stamps, ranges = zip(*sorted(history, key=lambda item: item[0]), strict=True)
    n = len(stamps)
    track = HeightTrack(np.array(stamps, np.int64), np.array(ranges, float), np.zeros(n), np.full(n, np.inf))
    return track.at(stamp_ns, int(max_ns))


def _odometry_at(history: deque, stamp_ns: int, max_ns: float) -> Odometry | None:
    """The odometry's pose at a frame's stamp, interpolated between the messages around it, as `jzi eval-bag` does."""
    if not history:
        return None
    track = OdometryTrack.from_rows([(stamp, o.x_m, o.y_m, o.yaw_deg) for stamp, o in history])
    pose = track.at(stamp_ns, int(max_ns))
    return Odometry(*pose) if pose is not None else None


def _keep(history: deque, stamp_ns: int, value: Any) -> None:
    """Append (``stamp_ns``, ``value``) unless it follows the last one kept by less than :data:`SENSOR_SPACING_NS`.

    A stamp before the last one (a replay looping, a clock reset) is kept: the lookup is by nearness in time.
    """
    if history and 0 <= stamp_ns - history[-1][0] < SENSOR_SPACING_NS:
        return
    history.append((stamp_ns, value))


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def main(argv: list[str] | None = None, stop_requested: Callable[[], bool] = lambda: False) -> int:
    """Spin the node until SIGINT or SIGTERM (then 0); with ``autostart`` configure and activate it first.

    With ``autostart`` a failed configure is the process's end (1, after its one-line reason), as a
    launch without a lifecycle manager expects; without, the node waits, unconfigured, for its
    manager, and a failed configure leaves it so. ``stop_requested``: whether a signal came before rclpy
    handled signals (:func:`jzi_ros.ros.entry.signalled`); checked before each step, so that one whose
    KeyboardInterrupt was lost still ends the process.
    """
    node = None
    try:  # a signal while rclpy initializes ends the process as cleanly as one while it spins
        rclpy.init(args=argv if argv is not None else sys.argv)
        if stop_requested():
            return 0
        node = LocalizerNode()
        if node.get_parameter("autostart").value is not False:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                return 0 if stop_requested() else 1
            if stop_requested():
                return 0
            node.trigger_activate()
        else:
            node.get_logger().info("waiting for a lifecycle manager to configure and activate it")
        if not stop_requested():
            rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.stop(wait_s=1.0)  # a frame still in flight is not waited for: the process ends
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":  # `python -m jzi_ros.ros.entry` (the executable) sets the process defaults first
    sys.exit(main())
