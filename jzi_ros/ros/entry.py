"""The ``localizer`` executable: the node, or one clear line where ROS 2's Python packages are missing.

Before the node (and, for a checkpoint, torch) is imported, the process gets its
defaults (:data:`PROCESS_DEFAULTS`, each only where the environment does not
set it already), and torch's import skips the modules a node running eager
models never uses (:data:`UNUSED_MODULES`).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

ROS_MODULES = ("rclpy", "rcl_interfaces", "sensor_msgs", "geometry_msgs", "diagnostic_msgs", "std_msgs")

PROCESS_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}
"""Environment defaults of the node's process; OpenMP reads them once, when torch is imported.

``OMP_WAIT_POLICY=PASSIVE``: torch's OpenMP threads sleep as soon as they
are idle instead of spinning for a while (the default), so between the
encoder's layers and between frames they leave the cores to the node's
worker, the camera driver and the rest of the robot (on 2 cores a spinning
thread competes with them). Set the variable to ACTIVE to have the spinning back.
"""

UNUSED_MODULES = ("triton",)
"""Modules that torch's import loads where they are installed and that the node does not use.

``triton`` (GPU kernels of ``torch.compile``; 75 MB resident): the node runs
its models eagerly. Skipped only while the node's modules are imported and
while its configure imports torch (a checkpoint; an export needs no torch), so
code that needs it later (a TensorRT backend's plugins) can still import it.
"""


def set_process_defaults() -> None:
    """Set each of :data:`PROCESS_DEFAULTS` that the environment does not set (call before torch is imported)."""
    for name, value in PROCESS_DEFAULTS.items():
        os.environ.setdefault(name, value)


@contextmanager
def skipped_imports(names: tuple[str, ...] = UNUSED_MODULES) -> Iterator[None]:
    """Within the block, importing one of ``names`` fails (ImportError), as if it were not installed.

    Names already imported are left alone; afterwards the names can be imported again.
    """
    blocked = [name for name in names if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # the import system's "not importable" marker
    try:
        yield
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


_SIGNALS: list[int] = []
"""The SIGINT and SIGTERM the process received before rclpy took them over."""


def _interrupt(signum: int, frame: Any) -> None:
    _SIGNALS.append(signum)
    raise KeyboardInterrupt(f"signal {signum}")


def take_signals() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt (and are remembered, :func:`signalled`) from here on.

    Also SIGINT, which Python would handle so already, unless the process started with it ignored: a
    background job of a shell without job control (``make test &`` in a script, a CI runner) inherits
    SIGINT ignored, and Python then leaves it so; a launch's SIGINT during the node's imports was lost.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)


def signalled() -> bool:
    """Whether SIGINT or SIGTERM came, also one whose KeyboardInterrupt an import swallowed (a bare except)."""
    return bool(_SIGNALS)


def main(argv: list[str] | None = None) -> int:
    """Run the node (:func:`jzi_ros.ros.node.main`); exit 1 with a hint when rclpy or the messages are missing.

    SIGTERM, like SIGINT, stops the node cleanly at any moment, also while it imports and loads
    (rclpy handles both once it is initialized): 0, as after a shutdown.
    """
    set_process_defaults()
    take_signals()
    try:
        with skipped_imports():
            from .node import main as node_main
    except KeyboardInterrupt:
        return 0
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
    if signalled():  # its KeyboardInterrupt was lost in an import: the signal still ends the process
        return 0
    return node_main(argv, stop_requested=signalled)


def executable() -> NoReturn:
    """The ``localizer`` executable: :func:`main`, then out of the process at once.

    The node has shut down and its output is flushed; what is left is the
    interpreter's teardown of torch and the models (a second or more), which
    would make a robot's launch system wait for nothing.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    executable()
