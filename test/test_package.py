"""The ROS 2 package: metadata, and a real `colcon build` of it."""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]


def test_package_xml_is_format_3_ament_python_with_the_runtime_deps():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "jzi_ros"
    assert root.find("export/build_type").text == "ament_python"
    deps = {e.text for e in root.findall("exec_depend")}
    assert {
        "rclpy",
        "sensor_msgs",
        "geometry_msgs",
        "diagnostic_msgs",
        "python3-pyproj",
        "python3-rasterio",
        "python3-opencv",
        "python3-numpy",
    } <= deps


def _pins(path: Path, python: str) -> dict[str, str]:
    """The exact pins a requirements file gives on ``python`` (its markers evaluated there), by package."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("-r"):
            pins |= _pins(path.parent / line.split()[1], python)
        elif line and not line.startswith("#"):
            req = Requirement(line)
            where = {"python_version": python, "python_full_version": f"{python}.0"}
            if req.marker is None or req.marker.evaluate(where):
                assert req.name not in pins, f"{req.name} pinned twice for Python {python} in {path.name}"
                (pin,) = req.specifier
                assert pin.operator == "==", f"{line}: an exact pin"
                pins[req.name] = pin.version
    return pins


@pytest.mark.parametrize("python", ["3.10", "3.11", "3.12"])
def test_every_requirement_is_pinned_once_for_each_python(python):
    """Humble's Python 3.10 gets the last releases built for it; every file pins each package once there."""
    for name in ("requirements.txt", "requirements-test.txt", "requirements-robot.txt"):
        pins = _pins(ROOT / name, python)
        assert {"numpy", "onnxruntime", "pyproj"} <= set(pins)
    runtime = _pins(ROOT / "requirements.txt", python)
    assert _pins(ROOT / "requirements-robot.txt", python).items() <= runtime.items()  # the robot's are the same
    # NumPy 2.3 and later need Python 3.11
    assert (runtime["numpy"] in SpecifierSet("<2.3")) == (python == "3.10")


def test_colcon_builds_and_installs_the_package(colcon_install, tmp_path):
    prefix = colcon_install
    for exe in ("jzi", "localizer"):  # where `ros2 run jzi_ros <exe>` looks
        assert os.access(prefix / "lib" / "jzi_ros" / exe, os.X_OK)
    assert (prefix / "share" / "jzi_ros" / "package.xml").is_file()
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "jzi_ros").is_file()
    site = next((prefix / "lib").glob("python3*/site-packages"))
    assert (site / "jzi_ros" / "geo" / "grid.py").is_file()
    # the installed command runs from the install space
    res = subprocess.run(
        [str(prefix / "lib" / "jzi_ros" / "jzi"), "--version"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(site)),
        cwd=tmp_path,
        timeout=60,
    )
    assert res.returncode == 0 and "jzi_ros" in res.stdout
