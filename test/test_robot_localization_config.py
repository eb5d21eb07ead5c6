"""The robot_localization example: its nodes, the parameters that matter for jzi's fixes and the topic it reads."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "robot_localization.yaml"
NODE = yaml.safe_load((ROOT / "config" / "localize.yaml").read_text())["/**/jzi_localizer"]["ros__parameters"]
X, Y, Z = 0, 1, 2


def _params() -> dict:
    doc = yaml.safe_load(EXAMPLE.read_text())
    assert set(doc) == {"ekf_filter_node_odom", "ekf_filter_node_map", "navsat_transform"}
    return {name: node["ros__parameters"] for name, node in doc.items()}


def test_navsat_transform_takes_jzi_s_fix_as_horizontal_only():
    navsat = _params()["navsat_transform"]
    assert navsat["zero_altitude"] is True
    assert navsat["use_odometry_yaw"] is False and navsat["wait_for_datum"] is False
    assert navsat["publish_filtered_gps"] is True
    for name in ("magnetic_declination_radians", "yaw_offset", "frequency", "delay"):
        assert isinstance(navsat[name], float), name
    assert len(navsat["datum"]) == 3


def test_the_map_ekf_fuses_x_and_y_of_the_fixes_and_the_odom_ekf_none():
    params = _params()
    odom, map_ = params["ekf_filter_node_odom"], params["ekf_filter_node_map"]
    assert (odom["world_frame"], map_["world_frame"]) == ("odom", "map")
    for node in (odom, map_):
        for key, value in node.items():
            if key.endswith("_config"):
                assert len(value) == 15 and all(isinstance(v, bool) for v in value), key
        assert isinstance(node["two_d_mode"], bool)
    gps = [
        k.removesuffix("_config")
        for k in map_
        if k.endswith("_config") and map_[k.removesuffix("_config")] == "odometry/gps"
    ]
    assert gps == ["odom1"]
    assert [i for i, used in enumerate(map_["odom1_config"]) if used] == [X, Y]  # never z: no altitude in a fix
    assert "odometry/gps" not in odom.values()
    assert map_["smooth_lagged_data"] is True and map_["history_length"] > 0
    assert "odom1_pose_rejection_threshold" not in map_  # a false datum would lock out every right fix


def test_the_documented_commands_read_the_node_s_fix_topic_and_frame():
    text = EXAMPLE.read_text()
    assert re.findall(r"-r gps/fix:=(\S+)", text) == ["/" + NODE["fix_topic"]]  # the node's, in no namespace
    assert f"--child-frame-id {NODE['frame_id']}" in text
    for node in ("ekf_filter_node_odom", "ekf_filter_node_map", "navsat_transform"):
        assert f"-r __node:={node} --params-file" in text
    assert "STATUS_NO_FIX" in text  # what navsat_transform does with an untrusted fix is said


def test_the_example_is_installed_with_the_package_config():
    setup = (ROOT / "setup.py").read_text()
    assert '(f"share/{PACKAGE}/config", glob("config/*.yaml"))' in setup


POSE_EXAMPLE = ROOT / "config" / "robot_localization_pose.yaml"
YAW = 5


def test_the_pose_example_fuses_x_y_and_yaw_of_jzi_s_poses_in_one_ekf_with_odometry_and_imu():
    doc = yaml.safe_load(POSE_EXAMPLE.read_text())
    assert set(doc) == {"ekf_filter_node_jzi"}
    ekf = doc["ekf_filter_node_jzi"]["ros__parameters"]
    for key, value in ekf.items():
        if key.endswith("_config"):
            assert len(value) == 15 and all(isinstance(v, bool) for v in value), key
    assert ekf["pose0"] == "/" + NODE["pose_topic"]  # the node's, in no namespace
    assert [i for i, used in enumerate(ekf["pose0_config"]) if used] == [X, Y, YAW]
    assert not any(ekf["odom0_config"][:6]), "the odometry's drifting pose is not fused, its velocities are"
    assert not ekf["imu0_config"][YAW], "the IMU's yaw is not world-referenced: jzi's poses give the heading"
    assert ekf["world_frame"] == ekf["map_frame"] == "map"
    assert ekf["smooth_lagged_data"] is True and ekf["history_length"] > 0
    text = POSE_EXAMPLE.read_text()
    assert "map_datum:=" in text and "jzi map-frame" in text and NODE["pose_frame"] in text
    assert "-r __node:=ekf_filter_node_jzi --params-file" in text
