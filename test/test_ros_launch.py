"""The launch file and the node's parameter file."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from jzi_ros.ros.node import PARAMETERS  # noqa: F401 - also proves the node module imports

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch" / "localize.launch.py"
CONFIG = ROOT / "config" / "localize.yaml"


def test_config_file_sets_exactly_the_declared_parameters_with_their_defaults():
    doc = yaml.safe_load(CONFIG.read_text())
    params = doc["jzi_localizer"]["ros__parameters"]
    assert set(params) == set(PARAMETERS)
    for name, (default, description) in PARAMETERS.items():
        assert params[name] == default, name
        assert description in CONFIG.read_text(), f"{name} is documented in the YAML"


def test_launch_file_names_the_installed_executable_and_config():
    tree = ast.parse(LAUNCH.read_text())
    calls = {n.func.id: n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    node = calls["Node"]
    kw = {k.arg: k.value for k in node.keywords}
    assert ast.literal_eval(kw["package"]) == "jzi_ros"
    assert ast.literal_eval(kw["executable"]) == "localizer"
    assert ast.literal_eval(kw["name"]) == "jzi_localizer"  # the node name the YAML is keyed by
    text = LAUNCH.read_text()
    assert '"config", "localize.yaml"' in text and 'get_package_share_directory("jzi_ros")' in text
    declared = {
        ast.literal_eval(c.args[0])
        for c in ast.walk(tree)
        if isinstance(c, ast.Call) and getattr(c.func, "id", "") == "DeclareLaunchArgument"
    }
    assert {"map", "model", "image_topic", "transport", "params_file"} <= declared
    setup = (ROOT / "setup.py").read_text()
    assert "launch/*.launch.py" in setup and "config/*.yaml" in setup
    assert "localizer = jzi_ros.ros.entry:executable" in setup


def test_launch_description_builds_where_launch_ros_exists():
    pytest.importorskip("launch_ros", reason="launch_ros is not installable from PyPI; a ROS 2 install has it")
    import importlib.util

    spec = importlib.util.spec_from_file_location("localize_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert any(type(e).__name__ == "Node" for e in description.entities)


def test_the_config_folder_is_found_from_the_package_and_a_missing_file_is_named():
    from jzi_ros.errors import JziError
    from jzi_ros.share import config_file, load_preset, preset_names

    assert config_file("localize.yaml").read_text() == CONFIG.read_text()
    assert {"jzi_paper", "robot"} <= set(preset_names())
    assert load_preset("jzi_paper", "map")["levels"] == 4
    with pytest.raises(JziError, match="nothing.yaml"):
        config_file("nothing.yaml")
