"""jzi_ros: localize a robot without GPS by zooming in on an overhead map."""

__version__ = "0.1.0"
