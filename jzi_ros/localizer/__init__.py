"""jzi_ros.localizer"""
