"""jzi_ros.data"""
