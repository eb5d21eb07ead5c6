"""The ``localizer`` executable: the node, or one clear line where ROS 2's Python packages are missing."""

from __future__ import annotations

import sys

ROS_MODULES = ("rclpy", "rcl_interfaces", "sensor_msgs", "geometry_msgs", "diagnostic_msgs", "std_msgs")


def main(argv: list[str] | None = None) -> int:
    """Run the node (:func:`jzi_ros.ros.node.main`); exit 1 with a hint when rclpy or the messages are missing."""
    try:
        from .node import main as node_main
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in ROS_MODULES:
            raise
        print(
            f"localizer: the Python module {exc.name} is missing: the node needs ROS 2's Python packages. "
            "Source a ROS 2 installation (Humble, Jazzy or Kilted: source /opt/ros/<distro>/setup.bash) "
            "or install the ROS 2 wheels of the test dependencies (make test does).",
            file=sys.stderr,
        )
        return 1
    return node_main(argv)


if __name__ == "__main__":
    sys.exit(main())
