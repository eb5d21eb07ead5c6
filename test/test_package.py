"""The ROS 2 package: metadata, and a real `colcon build` of it."""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

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
