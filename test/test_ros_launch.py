"""The launch file and the node's parameter file."""

from __future__ import annotations

import ast
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from jzi_ros.ros.node import PARAMETERS  # noqa: F401 - also proves the node module imports

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch" / "localize.launch.py"
CONFIG = ROOT / "config" / "localize.yaml"


def test_config_file_sets_exactly_the_declared_parameters_with_their_defaults():
    doc = yaml.safe_load(CONFIG.read_text())
    params = doc["/**/jzi_localizer"]["ros__parameters"]
    assert set(params) == set(PARAMETERS)
    for name, (default, description) in PARAMETERS.items():
        assert params[name] == default, name
        assert description in CONFIG.read_text(), f"{name} is documented in the YAML"


def test_launch_file_names_the_installed_executable_and_config():
    tree = ast.parse(LAUNCH.read_text())
    nodes = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "Node"]
    kws = [{k.arg: k.value for k in n.keywords} for n in nodes]
    (kw,) = [k for k in kws if ast.literal_eval(k["package"]) == "jzi_ros"]  # besides: the map frame's transform
    assert [ast.literal_eval(k["package"]) for k in kws if k is not kw] == ["tf2_ros"]
    assert ast.literal_eval(kw["package"]) == "jzi_ros"
    assert ast.literal_eval(kw["executable"]) == "localizer"
    assert ast.literal_eval(kw["name"]) == "jzi_localizer"  # the node name the YAML is keyed by
    text = LAUNCH.read_text()
    assert '"config", "localize.yaml"' in text and 'get_package_share_directory("jzi_ros")' in text
    declared = {
        ast.literal_eval(c.args[0])
        for c in ast.walk(tree)
        if isinstance(c, ast.Call)
        and getattr(c.func, "id", "") == "DeclareLaunchArgument"
        and isinstance(c.args[0], ast.Constant)
    }
    assert {"map", "model", "image_topic", "transport", "params_file"} <= declared
    setup = (ROOT / "setup.py").read_text()
    assert "launch/*.launch.py" in setup and "config/*.yaml" in setup
    assert "localizer = jzi_ros.ros.entry:executable" in setup


def test_the_config_folder_is_found_from_the_package_and_a_missing_file_is_named():
    from jzi_ros.errors import JziError
    from jzi_ros.share import config_file, load_preset, preset_names

    assert config_file("localize.yaml").read_text() == CONFIG.read_text()
    assert {"jzi_paper", "robot"} <= set(preset_names())
    assert load_preset("jzi_paper", "map")["levels"] == 4
    with pytest.raises(JziError, match="nothing.yaml"):
        config_file("nothing.yaml")


# --- the launch file under the real launch_ros (../shared/vendor) ----------------------------------------------

VENDOR = ROOT.parent / "shared" / "vendor" / "py"
LAUNCH_RUNNER = """
import sys
from ament_index_python.packages import get_package_share_directory
from launch import LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

# what `ros2 launch jzi_ros localize.launch.py NAME:=VALUE ...` does (ros2launch is not vendored)
path = get_package_share_directory("jzi_ros") + "/launch/localize.launch.py"
arguments = [tuple(a.split(":=", 1)) for a in sys.argv[1:]]
service = LaunchService(argv=sys.argv[1:])
service.include_launch_description(
    IncludeLaunchDescription(PythonLaunchDescriptionSource(path), launch_arguments=arguments)
)
sys.exit(service.run())
"""
COMPOSITION_STUB = '''"""Test set-up only: launch_ros.actions imports composition_interfaces.srv for composable
nodes (a compiled interface package with no wheel); the launch file under test loads none: the import is all."""


class LoadNode:
    """Never called: no composable node is loaded (its types are named in launch_ros's annotations)."""

    class Request:
        pass

    class Response:
        pass
'''


@pytest.fixture(scope="module")
def ros2_launch(colcon_install, tmp_path_factory):
    """Start ``ros2 launch jzi_ros localize.launch.py ARGS`` (a real LaunchService) in ROS domain ``domain``."""
    if not (VENDOR / "launch").is_dir() or not (VENDOR / "launch_ros").is_dir():
        pytest.skip(f"the launch_ros sources are absent ({VENDOR}: see ../shared/vendor/README.md)")
    pytest.importorskip("osrf_pycommon", reason="launch's dependency osrf-pycommon is missing (make test installs it)")
    setup = tmp_path_factory.mktemp("launch_setup")
    (setup / "composition_interfaces" / "srv").mkdir(parents=True)
    (setup / "composition_interfaces" / "__init__.py").write_text("")
    (setup / "composition_interfaces" / "srv" / "__init__.py").write_text(COMPOSITION_STUB)
    runner = setup / "ros2_launch.py"
    runner.write_text(LAUNCH_RUNNER)
    site = next((colcon_install / "lib").glob("python3*/site-packages"))

    def start(domain: int, *args: str) -> subprocess.Popen:
        env = dict(
            os.environ,
            ROS_DOMAIN_ID=str(domain),
            AMENT_PREFIX_PATH=str(colcon_install),
            PYTHONPATH=os.pathsep.join([str(VENDOR), str(setup), str(site)]),
            PYTHONUNBUFFERED="1",
        )
        # as from a terminal, where Ctrl-C reaches `ros2 launch`: a CI runner's background job passes SIGINT on
        # ignored, and launch keeps an ignored SIGINT ignored
        cmd = [sys.executable, "-c", FROM_A_TERMINAL, str(runner), *args]
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    return start


FROM_A_TERMINAL = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)
"""Run the rest of the command line with SIGINT's default action, as a terminal's foreground job has it."""


def _parameters_of(client, node: str, names: list[str]) -> dict:
    """A node's parameters, read over its parameter service as `ros2 param get` does."""
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    values = _call(client, GetParameters, f"{node}/get_parameters", GetParameters.Request(names=names)).values
    return dict(zip(names, (parameter_value_to_python(v) for v in values), strict=True))


@pytest.mark.parametrize("params_file", [False, True])
def test_ros2_launch_starts_the_node_with_the_arguments_given_and_it_publishes_fixes(
    ros2_launch, trained, tmp_path, params_file
):
    """``params_file`` sets what the arguments do not; the arguments given win, typed as the node wants them."""
    from jzi_ros.data.aerial import frames_over_map
    from jzi_ros.geo import MapDir
    from jzi_ros.ros.harness import Client, compressed_msg

    map_dir, model, _ = trained
    args = [f"map:={map_dir}", f"model:={model}", "image_topic:=/l/image", "transport:=compressed"]
    args += ["height_m:=120", "tracking:=false", "max_speed_mps:=7"]
    if params_file:
        doc = yaml.safe_load(CONFIG.read_text())
        doc["/**/jzi_localizer"]["ros__parameters"] |= {"beam_width": 2, "max_speed_mps": 99.0, "frame_id": "from_yaml"}
        (tmp_path / "robot.yaml").write_text(yaml.safe_dump(doc))
        args.append(f"params_file:={tmp_path / 'robot.yaml'}")
    domain = random.randint(1, 200)
    proc = ros2_launch(domain, *args)
    client = Client(domain, "/l/image", compressed=True)
    try:
        client.wait_for_node(proc, timeout_s=120)
        names = ["map_path", "transport", "height_m", "tracking", "max_speed_mps", "beam_width"]
        got = _parameters_of(client, "/jzi_localizer", names)
        assert got == {
            "map_path": str(map_dir),
            "transport": "compressed",
            "height_m": 120.0,
            "tracking": False,
            "max_speed_mps": 7.0,  # the argument beats the params file
            "beam_width": 2 if params_file else 4,
        }
        frame = frames_over_map(MapDir(map_dir), 128, 1, footprint_cells=2.0)[0]
        client.send_and_wait(compressed_msg(frame, 10**18))
        assert len(client.fixes) == 1
        assert client.fixes[0][0].header.frame_id == ("from_yaml" if params_file else "jzi_camera")
    finally:
        client.close()
        proc.send_signal(signal.SIGINT)  # Ctrl-C on `ros2 launch`
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out
    assert "Traceback" not in out and "process has died" not in out, out


def test_ros2_launch_without_a_model_uses_the_shipped_general_one(ros2_launch, tmp_path):
    """``map:=`` alone: the installed general model, the map indexed for it on first use, and fixes come."""
    from jzi_ros.data.aerial import frames_over_map
    from jzi_ros.data.scene import SceneSpec, write_scene
    from jzi_ros.geo import MapDir, build_map
    from jzi_ros.ros.harness import Client, compressed_msg

    tif = write_scene(tmp_path / "scene.tif", SceneSpec(size_px=512, seed=31))
    mapdir = build_map([tif], tmp_path / "map", grid=4, levels=2, view_px=64)
    domain = random.randint(1, 200)
    proc = ros2_launch(domain, f"map:={mapdir.path}", "image_topic:=/s/image", "transport:=compressed")
    client = Client(domain, "/s/image", compressed=True)
    try:
        client.wait_for_node(proc, timeout_s=180)
        assert _parameters_of(client, "/jzi_localizer", ["model_path"]) == {"model_path": ""}
        frame = frames_over_map(MapDir(mapdir.path), 128, 1, footprint_cells=2.0)[0]
        client.send_and_wait(compressed_msg(frame, 10**18))
        assert len(client.fixes) == 1
    finally:
        client.close()
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out
    assert "Traceback" not in out and "process has died" not in out, out
    assert list((mapdir.path / "features").iterdir()), "indexed for the shipped model on first use"


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "set the parameter map_path (launch argument map:=)"),
        (["map:=/nowhere", "model:=/nowhere.pt", "height_m:=high"], "launch argument height_m must be a number"),
        (["map:=/nowhere", "model:=/nowhere.pt", "transport:=mjpeg"], "transport must be raw or compressed"),
    ],
    ids=["map-missing", "not-a-number", "wrong-transport"],
)
def test_ros2_launch_with_missing_or_wrong_arguments_says_what_in_one_line(ros2_launch, args, message):
    proc = ros2_launch(random.randint(1, 200), *args)
    out = proc.communicate(timeout=120)[0]
    lines = [line for line in out.splitlines() if message in line]
    assert len(lines) == 1, out
    assert "Traceback" not in out, out


def _call(client, service_type, name: str, request, timeout_s: float = 60.0):
    """Call a service of the node over DDS, as `ros2 service call` (and a lifecycle manager) does."""
    service = client.node.create_client(service_type, name)
    assert service.wait_for_service(timeout_sec=timeout_s), name
    future = service.call_async(request)
    end = time.monotonic() + timeout_s
    while not future.done() and time.monotonic() < end:
        client.spin(0.05)
    assert future.done(), f"{name} did not answer within {timeout_s} s"
    return future.result()


class _Manager:
    """What nav2_lifecycle_manager does to a node: change its state, ask for it."""

    def __init__(self, client, node: str) -> None:
        self.client, self.node = client, node

    def state(self) -> str:
        from lifecycle_msgs.srv import GetState

        return _call(self.client, GetState, f"{self.node}/get_state", GetState.Request()).current_state.label

    def change(self, transition: str) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        request = ChangeState.Request(transition=Transition(id=getattr(Transition, f"TRANSITION_{transition}")))
        return _call(self.client, ChangeState, f"{self.node}/change_state", request).success


def test_a_lifecycle_manager_drives_the_node_that_ros2_launch_started_with_autostart_false(
    ros2_launch, trained, tmp_path
):
    from sensor_msgs.msg import Imu, Range

    from jzi_ros.data.aerial import posed_frames_over_map
    from jzi_ros.geo import MapDir
    from jzi_ros.ros.harness import Client, compressed_msg, sensor_msgs_at

    map_dir, model, _ = trained
    args = [f"map:={map_dir}", f"model:={model}", "image_topic:=/lc/image", "transport:=compressed"]
    args += ["autostart:=false", "namespace:=robot1", "use_sim_time:=true", "log_level:=info"]
    args += ["imu_topic:=/lc/imu", "height_topic:=/lc/range"]
    doc = yaml.safe_load(CONFIG.read_text())
    doc["/**/jzi_localizer"]["ros__parameters"]["frame_id"] = "from_yaml"  # the params file applies in a namespace too
    (tmp_path / "robot.yaml").write_text(yaml.safe_dump(doc))
    args.append(f"params_file:={tmp_path / 'robot.yaml'}")
    domain = random.randint(1, 200)
    proc = ros2_launch(domain, *args)
    client = Client(domain, "/lc/image", compressed=True, fix_topic="/robot1/jzi/fix")
    ((frame, pose),) = posed_frames_over_map(MapDir(map_dir), 128, 1, footprint_cells=1.5)  # one that verifies
    manager = _Manager(client, "/robot1/jzi_localizer")
    imu, height = client.node.create_publisher(Imu, "/lc/imu", 10), client.node.create_publisher(Range, "/lc/range", 10)

    def localized(stamp: int) -> bool:
        for pub, msg in zip((imu, height), sensor_msgs_at(pose, stamp), strict=True):  # the drone's IMU and range
            pub.publish(msg)
        client.spin(0.1)
        client.send_and_wait(compressed_msg(frame, stamp), timeout_s=9.0)
        return client.has_fix(stamp)

    try:
        assert manager.state() == "unconfigured"
        assert client.pub.get_subscription_count() == 0, "no subscription before activate"
        assert manager.change("CONFIGURE") and manager.state() == "inactive"
        assert manager.change("ACTIVATE") and manager.state() == "active"
        client.wait_for_node(proc)
        assert localized(11 * 10**17) and client.fixes[-1][0].header.frame_id == "from_yaml"
        _assert_pose_beside_the_fix(client)
        got = _parameters_of(client, "/robot1/jzi_localizer", ["use_sim_time", "map_path"])
        assert got == {"use_sim_time": True, "map_path": str(map_dir)}
        assert manager.change("DEACTIVATE") and manager.state() == "inactive"
        assert client.pub.get_subscription_count() == 0 and not localized(12 * 10**17)
        assert manager.change("ACTIVATE")
        client.wait_for_node(proc)
        assert localized(13 * 10**17)
        assert manager.change("DEACTIVATE") and manager.change("CLEANUP") and manager.state() == "unconfigured"
        assert manager.change("UNCONFIGURED_SHUTDOWN") and manager.state() == "finalized"
        assert proc.poll() is None
    finally:
        client.close()
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0 and "Traceback" not in out, out


def _assert_pose_beside_the_fix(client) -> None:
    """The last FIX came with a pose of the same stamp in jzi_map: x, y and a heading, a covariance never zero."""
    import math

    from sensor_msgs.msg import NavSatStatus

    from jzi_ros.ros.harness import stamp_ns_of

    fix = client.fixes[-1][0]
    assert fix.status.status == NavSatStatus.STATUS_FIX
    client.spin(0.5)
    (pose,) = [p for p in client.poses if stamp_ns_of(p) == stamp_ns_of(fix)]
    assert pose.header.frame_id == "jzi_map"
    cov = np.array(pose.pose.covariance).reshape(6, 6)
    assert np.all(np.diag(cov) > 0) and np.allclose(
        cov[:2, :2], np.array(fix.position_covariance).reshape(3, 3)[:2, :2]
    )
    o = pose.pose.pose.orientation
    assert (o.x, o.y) == (0.0, 0.0) and math.isclose(o.z**2 + o.w**2, 1.0)
    assert cov[5, 5] < 0.1, "a verified fix's heading is known to a few degrees"  # 0.1 rad^2: 18 deg


def test_a_configure_that_fails_leaves_the_managed_node_unconfigured_and_alive(ros2_launch):
    from jzi_ros.ros.harness import Client

    domain = random.randint(1, 200)
    proc = ros2_launch(domain, "map:=/nowhere", "model:=/nowhere.pt", "autostart:=false", "image_topic:=/lc2/image")
    client = Client(domain, "/lc2/image", compressed=False)
    manager = _Manager(client, "/jzi_localizer")
    try:
        assert manager.state() == "unconfigured"
        assert not manager.change("CONFIGURE")
        assert manager.state() == "unconfigured" and proc.poll() is None
        client.spin(2.5)
        last = client.diagnostic_statuses()[-1]
        assert last.level == last.ERROR and last.message.startswith("configure failed: "), last.message
    finally:
        client.close()
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=30)[0]
    errors = [line for line in out.splitlines() if "ERROR" in line and "/nowhere" in line]
    assert len(errors) == 1 and proc.returncode == 0, out
