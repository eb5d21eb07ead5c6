"""The launch arguments of ``localize.launch.py`` and the node parameters they set.

A launch argument is a string; the node checks each parameter's type (a
``height_m`` of ``"30"`` or ``30`` instead of ``30.0`` is refused), so
:func:`parameter_overrides` converts every argument to its parameter's type.
An argument left at its default ``""`` sets nothing: the value in the launch's
``params_file`` stands (launch_ros lets parameters listed after the YAML win,
so an unset argument must not be passed at all). A string parameter can
therefore not be set to ``""`` from the command line; clear it in the params
file.

No ROS here: the launch file imports this module, and tests run it without
launch_ros.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from .errors import JziError


class LaunchArgument(NamedTuple):
    """One launch argument: the node parameter it sets, that parameter's type and a description."""

    parameter: str
    type: type
    description: str


LAUNCH_ARGUMENTS: dict[str, LaunchArgument] = {
    "map": LaunchArgument("map_path", str, "map directory (jzi build-map, indexed for the model)"),
    "model": LaunchArgument(
        "model_path", str, "model: a checkpoint (jzi train), an export folder (jzi export) or a shipped model's name"
    ),
    "image_topic": LaunchArgument("image_topic", str, "camera topic"),
    "transport": LaunchArgument("transport", str, "raw (sensor_msgs/Image) or compressed (CompressedImage)"),
    "camera_info_topic": LaunchArgument("camera_info_topic", str, "sensor_msgs/CameraInfo topic of the intrinsics"),
    "imu_topic": LaunchArgument("imu_topic", str, "sensor_msgs/Imu topic of the body's orientation (ENU)"),
    "height_topic": LaunchArgument("height_topic", str, "sensor_msgs/Range topic of the height above ground"),
    "prior_topic": LaunchArgument("prior_topic", str, "NavSatFix topic of a prior position that narrows the search"),
    "height_m": LaunchArgument("height_m", float, "fixed camera height above ground [m] when there is no height topic"),
    "mount_pitch_deg": LaunchArgument(
        "mount_pitch_deg", float, "camera tilt forward from straight down [deg] (90: a ground robot's, looking ahead)"
    ),
    "odom_topic": LaunchArgument("odom_topic", str, "nav_msgs/Odometry topic: the search moves with the robot"),
    "backend": LaunchArgument("backend", str, "inference backend: torch, onnxruntime or tensorrt"),
    "device": LaunchArgument("device", str, "device of the backend: cpu, cuda or cuda:N"),
    "tracking": LaunchArgument("tracking", bool, "after a verified fix, search near it (true or false)"),
    "max_speed_mps": LaunchArgument("max_speed_mps", float, "the robot's top ground speed [m/s], for tracking"),
    "autostart": LaunchArgument(
        "autostart", bool, "configure and activate at launch (false: wait for a lifecycle manager)"
    ),
    "reacquire_after": LaunchArgument(
        "reacquire_after", int, "frames without a verified fix after which the search is global again"
    ),
}
"""Launch argument name -> the parameter it sets; every one defaults to "" (unset)."""

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class LaunchArgumentError(JziError):
    """A launch argument's value cannot be converted to its parameter's type."""


def _convert(name: str, value: str, want: type) -> Any:
    """``value`` as a ``want``; raises :class:`LaunchArgumentError` naming the argument."""
    if want is str:
        return value
    if want is bool:
        if value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise LaunchArgumentError(f"launch argument {name} must be true or false, not {value!r}")
    try:
        number = want(value)
    except ValueError:
        kind = "an integer" if want is int else "a number"
        raise LaunchArgumentError(f"launch argument {name} must be {kind}, not {value!r}") from None
    if want is float and not math.isfinite(number):
        raise LaunchArgumentError(f"launch argument {name} must be finite, not {value!r}")
    return number


def parameter_overrides(values: Mapping[str, str]) -> dict[str, Any]:
    """The node parameters that the launch arguments set, each of its parameter's type.

    Args:
        values: Launch argument name -> its value as the launch gives it
            (a string; "" or only spaces: not set).

    Returns:
        Parameter name -> value (str, bool, int or float) for every argument
        that was set, in the order of :data:`LAUNCH_ARGUMENTS`.

    Raises:
        LaunchArgumentError: An unknown argument, or a value that is not of
            its parameter's type (bool: true/false/1/0/yes/no/on/off, any case).
    """
    unknown = sorted(set(values) - set(LAUNCH_ARGUMENTS))
    if unknown:
        raise LaunchArgumentError(
            f"unknown launch arguments {', '.join(unknown)}; known: {', '.join(LAUNCH_ARGUMENTS)}"
        )
    overrides: dict[str, Any] = {}
    for name, arg in LAUNCH_ARGUMENTS.items():
        value = str(values.get(name, "")).strip()
        if value:
            overrides[arg.parameter] = _convert(name, value, arg.type)
    return overrides


class Bringup(NamedTuple):
    """How the launch file starts the node, as Nav2's bring-up arguments say it."""

    namespace: str
    use_sim_time: bool
    log_level: str
    respawn: bool


BRINGUP_ARGUMENTS: dict[str, tuple[str, str]] = {
    "namespace": ("", "namespace of the node and of its relative topics (jzi/fix)"),
    "use_sim_time": ("false", "use the /clock topic's time (true when replaying a bag with ros2 bag play --clock)"),
    "log_level": ("info", "the node's log level: debug, info, warn, error or fatal"),
    "use_respawn": ("false", "start the node again when it exits (2 s later)"),
}
"""Launch argument name -> (default, description) of the arguments that say how the node is started."""

LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")


def bringup(values: Mapping[str, str]) -> Bringup:
    """The bring-up arguments (:data:`BRINGUP_ARGUMENTS`, as strings) checked and typed.

    Raises:
        LaunchArgumentError: A value that is not of its argument's type, or an unknown log level.
    """
    get = {name: str(values.get(name, default)).strip() or default for name, (default, _) in BRINGUP_ARGUMENTS.items()}
    level = get["log_level"].lower()
    if level not in LOG_LEVELS:
        raise LaunchArgumentError(f"launch argument log_level must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
    return Bringup(
        get["namespace"].strip("/"),
        _convert("use_sim_time", get["use_sim_time"], bool),
        level,
        _convert("use_respawn", get["use_respawn"], bool),
    )


POSE_FRAME = "jzi_map"
"""The frame of the node's poses (its ``pose_frame`` parameter's default): ENU [m] about the map's centre."""

MAP_FRAME_ARGUMENTS: dict[str, tuple[str, str]] = {
    "map_datum": (
        "",
        "lat,lon [deg] where the robot's map frame has its origin (robot_localization's datum): the launch "
        f"publishes the static transform from map_frame to {POSE_FRAME} (needs map:=)",
    ),
    "map_frame": ("map", "the robot's map frame, the parent of the poses' frame"),
    "map_crs": (
        "",
        "projected CRS whose axes the robot's map frame has (navsat_transform's UTM zone, e.g. EPSG:32632); "
        "default: east and north at the datum",
    ),
}
"""Launch argument name -> (default, description) of the map frame's static transform."""


def parse_datum(text: str) -> tuple[float, float]:
    """A datum given as "lat,lon" or "lat lon" [deg].

    Raises:
        LaunchArgumentError: Not two finite numbers, or outside ±90 / ±180.
    """
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    try:
        lat, lon = (float(p) for p in parts)
    except ValueError:
        raise LaunchArgumentError(f"a datum is two numbers, lat,lon [deg], not {text!r}") from None
    if not (math.isfinite(lat) and math.isfinite(lon) and abs(lat) <= 90 and abs(lon) <= 180):
        raise LaunchArgumentError(f"a datum's latitude is within ±90 and its longitude within ±180, not {text!r}")
    return lat, lon


def map_frame_transform(
    map_dir: str | Path, datum: str, parent: str = "map", child: str = POSE_FRAME, crs: str = ""
) -> list[str]:
    """The arguments of ``tf2_ros static_transform_publisher`` for the transform from ``parent`` to the map's frame.

    ``parent`` has its origin at ``datum`` ("lat,lon") and the axes of ``crs``
    (east and north at the datum without one); ``child`` is the map's local
    frame (:meth:`jzi_ros.geo.LocalFrame.pose_in`), read from the map's grid.

    Raises:
        LaunchArgumentError: A bad datum or CRS, or a directory that holds no map.
    """
    from .geo import ZoomGrid  # pyproj; launch files that set no datum do not need it

    grid_file = Path(map_dir) / "grid.yaml"
    if not grid_file.is_file():
        raise LaunchArgumentError(f"{map_dir} is not a map directory (no grid.yaml): map_datum needs the map")
    lat, lon = parse_datum(datum)
    try:
        x, y, yaw = ZoomGrid.load(grid_file).frame.pose_in(lat, lon, crs or None)
    except Exception as exc:  # noqa: BLE001 - pyproj's errors: an unknown CRS
        raise LaunchArgumentError(f"cannot place the map in the frame of CRS {crs!r}: {exc}") from None
    return [
        "--x",
        f"{x:.4f}",
        "--y",
        f"{y:.4f}",
        "--z",
        "0",
        "--yaw",
        f"{yaw:.9f}",
        "--pitch",
        "0",
        "--roll",
        "0",
        "--frame-id",
        parent,
        "--child-frame-id",
        child,
    ]
