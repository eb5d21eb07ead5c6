"""The ROS 2 node and message conversions: the only place that imports rclpy."""
