"""jzi_ros.model"""
