"""The `localizer` node (ros2 run jzi_ros localizer)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("localizer: the node is not built yet in this version of jzi_ros", file=sys.stderr)
    return 1
