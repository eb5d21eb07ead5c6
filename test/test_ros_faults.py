"""The node over real DDS for a while: a one-minute soak, the faults a robot meets, signals, the watchdog.

The faults run in one soak (each in a window of its own, see
:func:`jzi_ros.ros.soak.fault_windows`) and each has its own test of what
the node did in its window.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed (make test installs the ROS 2 wheels)")

from jzi_ros.ros.harness import Client, compressed_msg, start_node  # noqa: E402
from jzi_ros.ros.soak import FAULTS, SoakPlan, soak  # noqa: E402

FRAME_PX = 128


@pytest.fixture(scope="module")
def soaked(trained, tmp_path_factory):
    """A one-minute soak at 30 Hz with corrupt frames, a sensor gap and a camera blackout."""
    map_dir, model, _ = trained
    out = tmp_path_factory.mktemp("soak")
    plan = SoakPlan(
        minutes=1.0, rate_hz=30.0, image_px=FRAME_PX, sensor_gap_every_s=30, sensor_gap_s=4, blackout_every_s=60,
        blackout_s=6,
    )  # fmt: skip
    return soak(map_dir, model, plan, out, show_progress=False), out


@pytest.fixture(scope="module")
def faulted(trained):
    """Every fault in one 70 s soak, one after the other, with no gaps or blackouts beside them."""
    map_dir, model, _ = trained
    plan = SoakPlan(
        minutes=70 / 60, rate_hz=30.0, image_px=FRAME_PX, sensor_gap_every_s=0, blackout_every_s=0, faults=FAULTS
    )
    return soak(map_dir, model, plan, show_progress=False)


def test_a_soak_accounts_for_every_frame_and_the_node_keeps_publishing(soaked):
    report, out = soaked
    assert (out / "soak.json").is_file() and (out / "soak.png").stat().st_size > 10_000
    assert report["fixes"] > 60, report["not_localized_by_reason"]
    # every frame sent got a fix or is counted by why it did not
    reasons = report["not_localized_by_reason"]
    assert report["fixes"] + sum(reasons.values()) == report["frames_sent"], reasons
    rejected = sum(n for k, n in reasons.items() if "rejected (cannot decode the compressed image)" in k)
    assert 1 <= rejected <= report["corrupt_sent"], reasons
    # the camera's blackout and the sensor gap do not stop the fixes once the camera is back
    assert report["longest_without_fix_camera_on_s"] < 5.0
    assert all(row["fixes_per_s"] > 0.5 for row in report["minutes"])
    assert abs(report["rss_change_share"]) < 0.05, report["rss_mb_reference"]
    assert report["exit"] == {"signal": "SIGINT", "code": 0, "seconds": pytest.approx(0.5, abs=1.5)}
    assert not report["node_errors"], report["node_errors"]


def _window(report: dict, fault: str) -> dict:
    f = report["faults"][fault]
    print(fault, {k: v for k, v in f.items() if k != "diagnostics"}, "outside:", report["outside_faults"])
    return f


@pytest.mark.parametrize("fault", ["imu-flood", "resolution", "stalled-subscriber", "ortho"])
def test_the_node_keeps_publishing_through_a_fault(faulted, fault):
    """A 1 kHz IMU, frames of another size, a reader that never reads, the map's file truncated under it."""
    f = _window(faulted, fault)
    base = faulted["outside_faults"]
    assert f["fixes_per_s"] >= 0.3 * base["fixes_per_s"], (f, base)
    if fault in ("stalled-subscriber", "resolution"):  # the node's pace does not depend on its readers or frame size
        assert f["fixes_per_s"] >= 0.6 * base["fixes_per_s"], (f, base)
        assert f["latency_p95_ms"] <= 2 * base["latency_p95_ms"] + 200, (f, base)
    assert not faulted["node_errors"], faulted["node_errors"]


def test_a_clock_that_jumps_back_resets_tracking_and_the_fixes_go_on(faulted):
    f = _window(faulted, "clock-jump")
    global_frames = [int(d["frames_by_mode"].split("global ")[1].split(",")[0]) for d in f["diagnostics"]]
    assert f["fixes_per_s"] > 0 and global_frames[-1] > global_frames[0], "a global search after the jump"
    a, b = f["window_s"]
    after = [row for row in faulted["minutes"] if row["minute"] * 60 >= b]
    assert faulted["longest_without_fix_camera_on_s"] < 10.0 and all(r["fixes_per_s"] > 0 for r in after)


def test_a_truncated_map_file_falls_back_to_the_zoom_with_the_reason_and_recovers(trained, tmp_path):
    """The pyramid goes bad after the node opened it, before it was read: fixes go on, unverified, with
    the registration's reason; restored, frames verify again."""
    from jzi_ros.data.aerial import posed_frames_over_map
    from jzi_ros.geo import MapDir

    map_dir, model, _ = trained
    work = shutil.copytree(map_dir, tmp_path / "map")
    ortho = work / "ortho.tif"
    good = ortho.read_bytes()
    posed = posed_frames_over_map(MapDir(work), FRAME_PX, 6, footprint_cells=2.0, seed=3)
    domain = random.randint(1, 200)
    proc = start_node(domain, map_path=work, model_path=model, image_topic="/t/image", transport="compressed",
                      tracking=False)  # fmt: skip
    client = Client(domain, "/t/image", compressed=True)
    try:
        client.wait_for_node(proc)
        with open(ortho, "r+b") as fh:  # in place: the node's open file sees it
            fh.truncate(len(good) // 3)
        verdicts = []
        for i, (frame, _) in enumerate(posed[:3]):
            client.send_and_wait(compressed_msg(frame, 10**18 + i * 10**8))
            client.spin(1.2)
            verdicts.append(client.diagnostic_values()["last_verdict"])
        assert len(client.fixes) == 3 and all(f.status.status == f.status.STATUS_NO_FIX for f, _ in client.fixes)
        assert all("cannot read the orthophoto pyramid" in v for v in verdicts), verdicts
        ortho.write_bytes(good)
        for i, (frame, _) in enumerate(posed[3:]):
            client.send_and_wait(compressed_msg(frame, 2 * 10**18 + i * 10**8))
        client.spin(1.2)
        assert int(client.diagnostic_values()["frames_verified"]) >= 1, client.diagnostic_values()
        assert proc.poll() is None
    finally:
        client.close()
        proc.terminate()
        proc.communicate(timeout=20)


def _started(proc: subprocess.Popen, pattern: str, timeout_s: float = 120.0) -> list[str]:
    lines = []
    end = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < end:
        line = proc.stdout.readline()
        lines.append(line)
        if pattern in line or not line:
            return lines
    raise AssertionError(f"{pattern!r} not in the node's output within {timeout_s} s")


@pytest.mark.parametrize(
    "sig, moment",
    [
        (signal.SIGINT, 0.3),  # while Python imports the node's modules
        (signal.SIGTERM, 2.5),  # importing torch or loading the model and map
        (signal.SIGINT, "localizing"),
        (signal.SIGTERM, "localizing"),
    ],
)
def test_sigint_and_sigterm_end_the_node_cleanly_within_two_seconds(trained, sig, moment):
    map_dir, model, _ = trained
    domain = random.randint(1, 200)
    proc = start_node(domain, map_path=map_dir, model_path=model, image_topic="/s/image", transport="compressed")
    client = None
    try:
        if moment == "localizing":  # frames flowing at 30 Hz, the worker busy
            _started(proc, "localizing /s/image")
            client = Client(domain, "/s/image", compressed=True)
            client.wait_for_node(proc)  # discovered both ways: no frame is published to nobody
            frame = np.random.default_rng(0).integers(0, 255, (FRAME_PX, FRAME_PX, 3), np.uint8)
            for i in range(45):
                client.pub.publish(compressed_msg(frame, 10**18 + i * 33_000_000))
                client.spin(1 / 30)
            assert client.fixes, "the node was localizing when the signal came"
        else:
            time.sleep(moment)
        sent = time.monotonic()
        proc.send_signal(sig)
        out = proc.communicate(timeout=10)[0]
        took = time.monotonic() - sent
    finally:
        if client is not None:
            client.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in out, out
    assert took < 2.0, f"{sig.name} at {moment}: {took:.2f} s"


def test_diagnostics_turn_error_after_ten_frames_in_a_row_fail(trained):
    map_dir, model, _ = trained
    domain = random.randint(1, 200)
    proc = start_node(domain, map_path=map_dir, model_path=model, image_topic="/d/image", transport="compressed")
    client = Client(domain, "/d/image", compressed=True)
    try:
        client.wait_for_node(proc)
        bad = compressed_msg(np.zeros((32, 32, 3), np.uint8), 0)
        bad.data = bytes(range(200))
        for i in range(12):
            bad.header.stamp.sec = 1_000 + i
            client.pub.publish(bad)
            client.spin(0.25)
        client.spin(2.5)
        last = client.diagnostic_statuses()[-1]
        assert last.level == last.ERROR, (last.level, last.message)
        expected = "the last 10 frames all failed: cannot decode the compressed image"
        assert last.message.startswith(expected), last.message
        assert not client.fixes
    finally:
        client.close()
        proc.terminate()
        proc.communicate(timeout=20)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the death is the test
def test_a_dead_worker_is_reported_as_error_over_dds_and_revived(monkeypatch):
    """The worker dies of something no frame should raise; the watchdog says so on /diagnostics and starts a new one."""
    from jzi_ros.localizer import Candidate, Estimate
    from jzi_ros.ros import node as node_module

    class Dying:
        """Kills the worker on its first frame, places the rest at one spot."""

        grid = SimpleNamespace(describe=lambda: "a test grid")
        backend = SimpleNamespace(name="dying")
        refiner = None
        calls = 0

        def localize(self, image, encoding="rgb", prior=None, stamp_s=None, **known) -> Estimate:
            Dying.calls += 1
            if Dying.calls == 1:
                raise SystemExit("a fault that escapes every handler")
            cand = Candidate((1, 2), 47.0, 8.0, 10.0, -5.0, 0.7)
            return Estimate(47.0, 8.0, 10.0, -5.0, np.eye(2) * 25.0, 0.7, True, (1, 2), [cand], 39.0)

        def refine_summary(self) -> dict:
            return {"on": False}

    domain = random.randint(1, 200)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain, args=["--ros-args", "-p", "transport:=compressed"])
    monkeypatch.setattr(node_module.LocalizerNode, "load_localizer", lambda self: Dying())
    node = node_module.LocalizerNode(context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    client = Client(domain, "/camera/image_raw", compressed=True)
    try:
        assert node.trigger_configure() == node_module.TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == node_module.TransitionCallbackReturn.SUCCESS
        client.spin(1.5)
        frame = compressed_msg(np.full((32, 32, 3), 90, np.uint8), 10**18)
        client.pub.publish(frame)
        end = time.monotonic() + 10
        while time.monotonic() < end and not any(s.level == s.ERROR for s in client.diagnostic_statuses()):
            client.spin(0.2)
        errors = [s for s in client.diagnostic_statuses() if s.level == s.ERROR]
        assert errors and "the localization worker died (SystemExit: a fault that escapes" in errors[0].message
        assert client.send_and_wait(compressed_msg(np.full((32, 32, 3), 90, np.uint8), 2 * 10**18)) and client.fixes
        values = client.diagnostic_values()
        assert values["worker_restarts"] == "1", values
    finally:
        client.close()
        node.stop()
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
