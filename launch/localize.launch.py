"""Start the jzi_ros localizer: ros2 launch jzi_ros localize.launch.py map:=DIR model:=CKPT image_topic:=T"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(get_package_share_directory("jzi_ros"), "config", "localize.yaml")
    args = [
        DeclareLaunchArgument("map", description="map directory (jzi build-map, indexed for the model)"),
        DeclareLaunchArgument("model", description="model checkpoint (jzi train)"),
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw", description="camera topic"),
        DeclareLaunchArgument("transport", default_value="raw", description="raw or compressed"),
        DeclareLaunchArgument("params_file", default_value=default_params, description="node parameters (YAML)"),
    ]
    node = Node(
        package="jzi_ros",
        executable="localizer",
        name="jzi_localizer",
        output="screen",
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "map_path": LaunchConfiguration("map"),
                "model_path": LaunchConfiguration("model"),
                "image_topic": LaunchConfiguration("image_topic"),
                "transport": LaunchConfiguration("transport"),
            },
        ],
    )
    return LaunchDescription([*args, node])
