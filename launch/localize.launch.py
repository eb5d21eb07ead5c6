"""Start the jzi_ros localizer node with config/localize.yaml (or params_file) and per-robot launch arguments.

    ros2 launch jzi_ros localize.launch.py map:=DIR [model:=CKPT] image_topic:=T [NAME:=VALUE ...]

Arguments (each sets the node parameter in brackets; see config/localize.yaml):
  map [map_path], model [model_path; none: the shipped general model;
  general-street: the shipped street-level one], image_topic, transport (raw
  or compressed), camera_info_topic, imu_topic, height_topic, prior_topic,
  height_m [m], mount_pitch_deg [deg], odom_topic, backend (torch,
  onnxruntime, tensorrt), device (cpu, cuda:N),
  tracking (true/false), max_speed_mps [m/s], reacquire_after (frames),
  autostart (true: configure and activate at launch; false: wait for a
  lifecycle manager); params_file: the parameter YAML (default: the
  installed config/localize.yaml).
How it is started, as Nav2's bring-up has it: namespace (of the node and its
relative topics: jzi/fix), use_sim_time (false), log_level (info),
use_respawn (false). The robot's map frame: map_datum (lat,lon: publish the
static transform from map_frame, default map, to the poses' frame jzi_map;
needs map:=), map_crs (the map frame's projected CRS, e.g. navsat_transform's
UTM zone; default east and north at the datum).

An argument left unset ("", its default) passes nothing, so the params file's
value stands; a set one overrides it, converted to the parameter's type
(height_m:=30 becomes the double 30.0, tracking:=false a bool), by
jzi_ros.launch_args.parameter_overrides. A string parameter cannot be cleared
to "" from here: clear it in the params file.

A drone with an IMU and a rangefinder:
    ros2 launch jzi_ros localize.launch.py map:=maps/city model:=model.pt \
        image_topic:=/camera/image_raw camera_info_topic:=/camera/camera_info \
        imu_topic:=/imu/data height_topic:=/rangefinder max_speed_mps:=20.0
A ground robot (the shipped street-level model, or one of your own) with a
camera 1.6 m up looking ahead, wheel odometry and an IMU, started from its
last GPS fix on /gps/fix:
    ros2 launch jzi_ros localize.launch.py map:=maps/campus model:=general-street \
        image_topic:=/camera/image_raw/compressed transport:=compressed \
        camera_info_topic:=/camera/camera_info imu_topic:=/imu/data \
        odom_topic:=/odom height_m:=1.6 mount_pitch_deg:=90.0 prior_topic:=/gps/fix
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from jzi_ros.launch_args import (
    BRINGUP_ARGUMENTS,
    LAUNCH_ARGUMENTS,
    MAP_FRAME_ARGUMENTS,
    POSE_FRAME,
    bringup,
    map_frame_transform,
    parameter_overrides,
)
from launch import LaunchDescription


def _node(context):
    """The localizer node, with the params file and the launch arguments that were set."""
    values = {name: LaunchConfiguration(name).perform(context) for name in LAUNCH_ARGUMENTS}
    params_file = LaunchConfiguration("params_file").perform(context)
    overrides = parameter_overrides(values)
    how = bringup({name: LaunchConfiguration(name).perform(context) for name in BRINGUP_ARGUMENTS})
    node = Node(
        package="jzi_ros",
        executable="localizer",
        name="jzi_localizer",
        namespace=how.namespace,
        output="screen",
        respawn=how.respawn,
        respawn_delay=2.0,
        parameters=[params_file, overrides | {"use_sim_time": how.use_sim_time}],
        arguments=["--ros-args", "--log-level", how.log_level],
    )
    datum = LaunchConfiguration("map_datum").perform(context).strip()
    if not datum:
        return [node]
    tf_args = map_frame_transform(
        values["map"],
        datum,
        LaunchConfiguration("map_frame").perform(context).strip() or "map",
        POSE_FRAME,
        LaunchConfiguration("map_crs").perform(context).strip(),
    )
    frame = Node(
        package="tf2_ros",
        executable="static_transform_publisher",
        name="jzi_map_frame",
        namespace=how.namespace,
        output="screen",
        arguments=tf_args,
        parameters=[{"use_sim_time": how.use_sim_time}],
    )
    return [node, frame]


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(get_package_share_directory("jzi_ros"), "config", "localize.yaml")

    described = {name: a.description for name, a in LAUNCH_ARGUMENTS.items()}
    args = [
        DeclareLaunchArgument("params_file", default_value=default_params, description="node parameters (YAML)"),
        # the rest default to "": unset, the params file's value stands
        DeclareLaunchArgument("map", default_value="", description=described["map"]),
        DeclareLaunchArgument("model", default_value="", description=described["model"]),
        DeclareLaunchArgument("image_topic", default_value="", description=described["image_topic"]),
        DeclareLaunchArgument("transport", default_value="", description=described["transport"]),
        DeclareLaunchArgument("camera_info_topic", default_value="", description=described["camera_info_topic"]),
        DeclareLaunchArgument("imu_topic", default_value="", description=described["imu_topic"]),
        DeclareLaunchArgument("height_topic", default_value="", description=described["height_topic"]),
        DeclareLaunchArgument("prior_topic", default_value="", description=described["prior_topic"]),
        DeclareLaunchArgument("height_m", default_value="", description=described["height_m"]),
        DeclareLaunchArgument("mount_pitch_deg", default_value="", description=described["mount_pitch_deg"]),
        DeclareLaunchArgument("odom_topic", default_value="", description=described["odom_topic"]),
        DeclareLaunchArgument("backend", default_value="", description=described["backend"]),
        DeclareLaunchArgument("device", default_value="", description=described["device"]),
        DeclareLaunchArgument("tracking", default_value="", description=described["tracking"]),
        DeclareLaunchArgument("max_speed_mps", default_value="", description=described["max_speed_mps"]),
        DeclareLaunchArgument("reacquire_after", default_value="", description=described["reacquire_after"]),
        DeclareLaunchArgument("autostart", default_value="", description=described["autostart"]),
        # how the node is started, as Nav2's bring-up has it
        *(DeclareLaunchArgument(name, default_value=d, description=t) for name, (d, t) in BRINGUP_ARGUMENTS.items()),
        # the robot's map frame: the static transform to the poses' frame
        *(DeclareLaunchArgument(name, default_value=d, description=t) for name, (d, t) in MAP_FRAME_ARGUMENTS.items()),
    ]
    return LaunchDescription([*args, OpaqueFunction(function=_node)])
