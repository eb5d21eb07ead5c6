"""jzi_ros.inference"""
