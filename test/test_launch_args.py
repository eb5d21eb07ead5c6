"""The launch arguments: only those set override the params file, each converted to its parameter's type."""

from __future__ import annotations

import ast
import importlib.util
import math
import sys
import types
from pathlib import Path

import pytest
import yaml

from jzi_ros.launch_args import LAUNCH_ARGUMENTS, LaunchArgumentError, parameter_overrides

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch" / "localize.launch.py"
CONFIG = ROOT / "config" / "localize.yaml"
PER_ROBOT = {
    "camera_info_topic",
    "imu_topic",
    "height_topic",
    "prior_topic",
    "height_m",
    "mount_pitch_deg",
    "odom_topic",
    "autostart",
    "backend",
    "device",
    "tracking",
    "max_speed_mps",
    "reacquire_after",
}


def test_unset_arguments_set_nothing():
    assert parameter_overrides({}) == {}
    assert parameter_overrides({name: "" for name in LAUNCH_ARGUMENTS}) == {}
    assert parameter_overrides({"imu_topic": "  "}) == {}


def test_set_arguments_become_parameters_of_the_node_s_types():
    got = parameter_overrides(
        {
            "map": "maps/city",
            "imu_topic": "/imu/data",
            "height_m": "30",
            "tracking": "False",
            "max_speed_mps": "12.5",
            "reacquire_after": "7",
            "device": "cuda:0",
            "prior_topic": "",
        }
    )
    assert got == {
        "map_path": "maps/city",
        "imu_topic": "/imu/data",
        "height_m": 30.0,
        "device": "cuda:0",
        "tracking": False,
        "max_speed_mps": 12.5,
        "reacquire_after": 7,
    }
    assert [type(got[k]) for k in ("height_m", "tracking", "reacquire_after")] == [float, bool, int]


@pytest.mark.parametrize("text, value", [("true", True), ("TRUE", True), ("1", True), ("on", True), ("no", False)])
def test_booleans_are_read_in_every_common_spelling(text, value):
    assert parameter_overrides({"tracking": text}) == {"tracking": value}


@pytest.mark.parametrize(
    "name, value, match",
    [
        ("tracking", "maybe", "tracking must be true or false"),
        ("height_m", "high", "height_m must be a number"),
        ("height_m", "nan", "height_m must be finite"),
        ("reacquire_after", "2.5", "reacquire_after must be an integer"),
        ("imu", "/imu", "unknown launch arguments imu"),
    ],
)
def test_bad_values_and_unknown_arguments_are_named(name, value, match):
    with pytest.raises(LaunchArgumentError, match=match):
        parameter_overrides({name: value})


def test_every_argument_sets_a_declared_node_parameter_of_its_type():
    from jzi_ros.ros.params import PARAMETERS

    assert PER_ROBOT | {"map", "model", "image_topic", "transport"} == set(LAUNCH_ARGUMENTS)
    for name, arg in LAUNCH_ARGUMENTS.items():
        assert arg.parameter in PARAMETERS, name
        assert type(PARAMETERS[arg.parameter][0]) is arg.type, name


def test_the_launch_file_declares_every_argument_with_an_empty_default():
    tree = ast.parse(LAUNCH.read_text())
    declared = {
        ast.literal_eval(c.args[0]): {k.arg: k.value for k in c.keywords}
        for c in ast.walk(tree)
        if isinstance(c, ast.Call)
        and getattr(c.func, "id", "") == "DeclareLaunchArgument"
        and isinstance(c.args[0], ast.Constant)  # the bring-up arguments are declared from BRINGUP_ARGUMENTS
    }
    assert set(declared) == set(LAUNCH_ARGUMENTS) | {"params_file"}
    for name in LAUNCH_ARGUMENTS:
        assert ast.literal_eval(declared[name]["default_value"]) == "", name
    doc = ast.get_docstring(tree)
    assert all(name in doc for name in LAUNCH_ARGUMENTS)


class _Call:
    """Stands for a launch class: keeps its arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration:
    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context[self.name]


@pytest.fixture
def launch_module(monkeypatch):
    """The launch file loaded with stand-ins for launch, launch_ros and the ament index."""
    stubs = {
        "launch": {"LaunchDescription": _Call},
        "launch.actions": {"DeclareLaunchArgument": _Call, "OpaqueFunction": _Call},
        "launch.substitutions": {"LaunchConfiguration": _LaunchConfiguration},
        "launch_ros": {},
        "launch_ros.actions": {"Node": _Call},
        "ament_index_python": {},
        "ament_index_python.packages": {"get_package_share_directory": lambda name: f"/opt/share/{name}"},
    }
    for name, attrs in stubs.items():
        monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**attrs))
    spec = importlib.util.spec_from_file_location("localize_launch_under_test", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _launch(module, **given) -> list:
    """The node's ``parameters`` when the launch runs with the arguments ``given``."""
    description = module.generate_launch_description()
    (entities,) = description.args
    declared = [e for e in entities if e.kwargs.get("default_value") is not None]
    context = {e.args[0]: e.kwargs["default_value"] for e in declared} | given
    (opaque,) = [e for e in entities if "function" in e.kwargs]
    (node,) = opaque.kwargs["function"](context)
    assert (node.kwargs["executable"], node.kwargs["name"]) == ("localizer", "jzi_localizer")
    return node.kwargs["parameters"]


def test_the_launch_passes_the_params_file_alone_when_no_argument_is_set(launch_module):
    assert _launch(launch_module) == ["/opt/share/jzi_ros/config/localize.yaml", {"use_sim_time": False}]


def test_the_launch_passes_the_set_arguments_after_the_params_file_and_the_node_accepts_them(launch_module):
    from jzi_ros.ros.params import NodeParams

    params = _launch(launch_module, params_file=str(CONFIG), imu_topic="/imu", height_m="2", tracking="false")
    assert params == [str(CONFIG), {"imu_topic": "/imu", "height_m": 2.0, "tracking": False, "use_sim_time": False}]
    del params[1]["use_sim_time"]  # ROS's own parameter, not the node's
    merged = yaml.safe_load(CONFIG.read_text())["/**/jzi_localizer"]["ros__parameters"] | params[1]  # later wins
    node = NodeParams.from_values(merged)
    assert (node.imu_topic, node.height_m, node.tracking, node.image_topic) == ("/imu", 2.0, False, "/camera/image_raw")


def test_the_bringup_arguments_are_typed_and_checked(launch_module):
    from jzi_ros.launch_args import Bringup, bringup

    assert bringup({}) == Bringup("", False, "info", False)
    assert bringup({"namespace": "/robot1/", "use_sim_time": "True", "log_level": "DEBUG", "use_respawn": "1"}) == (
        Bringup("robot1", True, "debug", True)
    )
    with pytest.raises(LaunchArgumentError, match="log_level must be one of debug, info"):
        bringup({"log_level": "verbose"})
    with pytest.raises(LaunchArgumentError, match="use_sim_time must be true or false"):
        bringup({"use_sim_time": "sometimes"})
    description = launch_module.generate_launch_description()
    (entities,) = description.args
    context = {e.args[0]: e.kwargs["default_value"] for e in entities if e.kwargs.get("default_value") is not None}
    (opaque,) = [e for e in entities if "function" in e.kwargs]
    context |= {"namespace": "robot1", "use_sim_time": "true", "log_level": "warn", "use_respawn": "true"}
    (node,) = opaque.kwargs["function"](context)
    assert node.kwargs["namespace"] == "robot1" and node.kwargs["respawn"] is True
    assert node.kwargs["parameters"][-1] == {"use_sim_time": True}
    assert node.kwargs["arguments"] == ["--ros-args", "--log-level", "warn"]


def test_a_map_datum_adds_the_static_transform_to_the_poses_frame(launch_module, tmp_path):
    from jzi_ros.geo import ZoomGrid
    from jzi_ros.launch_args import POSE_FRAME
    from jzi_ros.ros.params import PARAMETERS

    assert PARAMETERS["pose_frame"][0] == POSE_FRAME
    grid = ZoomGrid(47.05, 8.05, 4000.0)
    grid.save(tmp_path / "grid.yaml")
    description = launch_module.generate_launch_description()
    (entities,) = description.args
    context = {e.args[0]: e.kwargs["default_value"] for e in entities if e.kwargs.get("default_value") is not None}
    (opaque,) = [e for e in entities if "function" in e.kwargs]
    assert len(opaque.kwargs["function"](context)) == 1  # no datum: the node alone
    context |= {"map": str(tmp_path), "map_datum": "47.04, 8.06", "namespace": "robot1"}
    node, frame = opaque.kwargs["function"](context)
    assert (frame.kwargs["package"], frame.kwargs["executable"]) == ("tf2_ros", "static_transform_publisher")
    assert frame.kwargs["namespace"] == "robot1"
    args = frame.kwargs["arguments"]
    value = dict(zip(args[0::2], args[1::2], strict=True))
    assert (value["--frame-id"], value["--child-frame-id"]) == ("map", POSE_FRAME)
    # the map's centre seen from a datum 0.01 deg south and 0.01 deg east: about 1112 m north, 760 m west
    east, north = (float(v) for v in grid.frame.to_local(47.04, 8.06))
    assert float(value["--x"]) == pytest.approx(-east, abs=0.5) and float(value["--y"]) == pytest.approx(
        -north, abs=0.5
    )
    assert 700 < -float(value["--x"]) < 800 and 1100 < float(value["--y"]) < 1125
    assert abs(float(value["--yaw"])) < 0.002  # the meridians 760 m apart converge by about 0.01 deg
    # in the datum's UTM zone (central meridian 9 E) the axes turn by the zone's grid convergence
    utm = launch_module.map_frame_transform(tmp_path, "47.04,8.06", crs="EPSG:32632")
    convergence = math.radians((8.05 - 9.0) * math.sin(math.radians(47.05)))
    assert float(utm[utm.index("--yaw") + 1]) == pytest.approx(convergence, abs=2e-4)
    context |= {"map_datum": "47.04"}
    with pytest.raises(LaunchArgumentError, match="two numbers"):
        opaque.kwargs["function"](context)
    context |= {"map_datum": "47.04,8.06", "map": str(tmp_path / "nothing")}
    with pytest.raises(LaunchArgumentError, match="not a map directory"):
        opaque.kwargs["function"](context)
