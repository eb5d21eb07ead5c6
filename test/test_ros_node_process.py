"""What keeps the node's process lean: frames decoded only when localized, the process's defaults set
before torch is imported, message buffers read in place, and the node benchmark's in-process baseline."""

from __future__ import annotations

import array
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed (make test installs the ROS 2 wheels)")

from jzi_ros.images import decode_compressed, decode_raw  # noqa: E402
from jzi_ros.localizer import Candidate, Estimate  # noqa: E402
from jzi_ros.ros.harness import compressed_msg  # noqa: E402


class _Recorder:
    """A localizer that remembers the images it was given and places every frame at one spot."""

    grid = SimpleNamespace(describe=lambda: "a test grid")
    backend = SimpleNamespace(name="recorder")
    refiner = None

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []

    def localize(self, image, encoding="rgb", prior=None, stamp_s=None, **known) -> Estimate:
        self.images.append(image)
        cand = Candidate((1, 2), 47.0, 8.0, 10.0, -5.0, 0.7)
        return Estimate(47.0, 8.0, 10.0, -5.0, np.eye(2) * 25.0, 0.7, True, (1, 2), [cand], 39.0)


@pytest.fixture
def node(monkeypatch):
    from jzi_ros.ros import node as node_module

    decoded, decode = [], node_module.frame_to_array

    def counting(msg):
        decoded.append(msg)
        return decode(msg)

    monkeypatch.setattr(node_module, "frame_to_array", counting)
    monkeypatch.setattr(node_module.LocalizerNode, "load_localizer", lambda self: _Recorder())
    rclpy.init()
    n = node_module.LocalizerNode()
    assert n.trigger_configure() == node_module.TransitionCallbackReturn.SUCCESS
    n.mailbox = node_module.LatestFrame()  # not activated: no worker takes the frames, the test does
    n.decoded = decoded
    try:
        yield n
    finally:
        n.destroy_node()
        rclpy.shutdown()


def test_frames_replaced_before_the_worker_takes_one_are_never_decoded(node):
    frames = [np.full((32, 32, 3), (60 * (i + 1), 20, 10), np.uint8) for i in range(3)]  # RGB, told apart by red
    msgs = [compressed_msg(f, 10**9 * (i + 1)) for i, f in enumerate(frames)]
    for msg in msgs:  # three frames arrive while the worker is busy
        node.on_frame(msg)
    assert node.decoded == [], "the camera callback only leaves the message in the mailbox"
    node.process(*node.mailbox.take(timeout=0.0))
    assert node.decoded == [msgs[-1]], "only the newest frame, the one localized, is decoded"
    assert node.mailbox.dropped == 2 and node.stats.processed == 1
    (image,) = node.localizer.images
    assert np.abs(image[..., ::-1].astype(int) - frames[-1]).max() <= 4  # the newest frame's JPEG, decoded BGR


def _torch_import_probe(env_value: str | None, *ros_args: str) -> list[str]:
    """Run the executable's main in a fresh interpreter; report what torch's import saw and what was loaded.

    ``ros_args``: the node's parameters (``-p name:=value``); a configure that fails ends it with 1.
    """
    argv = ["localizer", *(["--ros-args", *ros_args] if ros_args else [])]
    code = f"""
import importlib.abc, importlib.util, os, sys
seen = []
class Spy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.append(os.environ.get("OMP_WAIT_POLICY", "unset"))
sys.meta_path.insert(0, Spy())
os.environ.pop("OMP_WAIT_POLICY", None)
if {env_value!r} is not None:
    os.environ["OMP_WAIT_POLICY"] = {env_value!r}
from jzi_ros.ros.entry import main
code = main({argv!r})  # a configure that fails: exits 1
installed = importlib.util.find_spec("triton") is not None
loaded = "triton" in sys.modules
if installed:
    import triton  # importable again once the node's modules are in
print(seen[0] if seen else "torch never imported", code, "triton-loaded" if loaded else "triton-not-loaded")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()[-3:]


def _torch_loading(trained) -> tuple[str, ...]:
    """Parameters whose configure imports torch (the torch backend loads the checkpoint) and then fails."""
    return ("-p", f"map_path:={trained[0]}", "-p", "model_path:=/nowhere/model.pt")


def test_the_executable_sets_its_process_defaults_before_torch_is_imported(trained):
    seen, code, triton = _torch_import_probe(None, *_torch_loading(trained))
    assert seen == "PASSIVE" and code == "1"
    assert triton == "triton-not-loaded", "torch's import skips triton, which the node does not use"
    # the node's own modules import no torch: only the torch backend does, when it loads a checkpoint
    assert _torch_import_probe(None)[:2] == ["imported", "1"]  # "torch never imported"


def test_the_process_defaults_leave_what_the_user_set(trained):
    seen, _, _ = _torch_import_probe("ACTIVE", *_torch_loading(trained))
    assert seen == "ACTIVE"


def test_raw_pixels_are_read_in_place_from_the_message_buffer_and_stay_read_only():
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    data = array.array("B", rgb.tobytes())  # what rclpy gives for uint8[]
    image, order = decode_raw("rgb8", 4, 5, 15, data)
    assert order == "rgb" and np.array_equal(image, rgb)
    assert np.shares_memory(image, np.frombuffer(data, np.uint8)), "no copy of the frame's 1.2 MB"
    assert not image.flags.writeable, "the decoded image must not write into the message"
    listed, _ = decode_raw("rgb8", 4, 5, 15, list(rgb.tobytes()))  # a buffer-less sequence is copied
    assert np.array_equal(listed, rgb)


def test_compressed_frames_decode_from_every_kind_of_buffer():
    import cv2

    bgr = np.zeros((16, 16, 3), np.uint8)
    bgr[..., 2] = 200
    png = cv2.imencode(".png", bgr)[1].tobytes()
    for data in (png, bytearray(png), array.array("B", png), np.frombuffer(png, np.uint8), list(png)):
        image, order = decode_compressed(data, "png")
        assert order == "bgr" and np.array_equal(image, bgr)


def test_the_node_benchmark_reports_the_in_process_baseline_of_the_same_frames(trained):
    """Frames alone (the bench's test in test_inference.py feeds them with the IMU and the rangefinder)."""
    from jzi_ros.ros.bench import bench_node

    map_dir, model, _ = trained
    report = bench_node(map_dir, model, rate_hz=5.0, frames=10, image_px=64, beam=2, transport="compressed")
    assert report["fixes_received"] >= 1 and report["sensors"] is False, report
    assert report["inprocess_cpu_ms_per_frame"] > 0
    assert report["node_cpu_per_inprocess"] == pytest.approx(
        report["cpu_ms_per_fix"] / report["inprocess_cpu_ms_per_frame"]
    )
    assert report["node_peak_rss_mb"] > 0 and report["latency_ms"]["p95"] >= report["latency_ms"]["p50"]


def test_sigint_ends_the_executable_even_when_its_parent_ignored_it():
    """A CI runner's background job starts the node with SIGINT ignored; the executable takes it back."""
    probe = (
        "import os, signal\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"  # as inherited from a shell without job control
        "from jzi_ros.ros import entry\n"
        "entry.take_signals()\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    for _ in range(1000):\n"
        "        pass\n"
        "    print('lost')\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', entry.signalled())\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["interrupted", "True"], proc.stdout + proc.stderr
