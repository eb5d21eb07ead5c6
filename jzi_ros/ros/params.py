"""The node's parameters, read once into a frozen dataclass.

Each field is one ROS parameter: its name, default and description (the
``doc`` metadata) are declared on the node and written, with the same values,
in ``config/localize.yaml``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ..errors import JziError
from ..localizer import VERTICAL_VARIANCE_M2, LocalizerConfig, Mount, TrackingConfig, height_above_ground
from ..localizer.refine import Attitude, RefineConfig

MAX_MOUNT_PITCH_DEG = 120.0
"""The highest a camera may look [deg from straight down]: a street camera looks ahead (90) or a little up."""


def _param(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class NodeParams:
    """Everything the node is configured with; see each field's ``doc``."""

    autostart: bool = _param(True, "configure and activate at start-up (false: wait for a lifecycle manager)")
    map_path: str = _param("", "map directory (jzi build-map), indexed for the model (jzi index-map)")
    model_path: str = _param(
        "",
        "model checkpoint (jzi train), or an export folder (jzi export --map; backend onnxruntime, no torch); "
        "a shipped model by name (general-aerial, general-street for street-level cameras); "
        "empty: the shipped general-aerial (a general model is calibrated for the map by jzi calibrate)",
    )
    backend: str = _param("torch", "inference backend: torch, onnxruntime or tensorrt")
    device: str = _param("cpu", "device of the backend: cpu, cuda or cuda:N")
    threads: int = _param(0, "CPU threads of the backend (0 = its default)")
    tensorrt_fp16: bool = _param(True, "backend tensorrt with an export: build fp16 engines (false: fp32)")
    force_engine_update: bool = _param(
        False, "backend tensorrt with an export: rebuild the cached engines at configure, even when current"
    )
    map_precision: str = _param(
        "", "how the map's view tokens are held: '' (as the decoder computes), float16, or int8 for city-scale maps"
    )
    image_topic: str = _param("/camera/image_raw", "camera topic")
    transport: str = _param("raw", "raw (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage)")
    fix_topic: str = _param("jzi/fix", "output sensor_msgs/NavSatFix topic (relative: in the node's namespace)")
    frame_id: str = _param("jzi_camera", "frame_id of the published fixes (the camera's frame)")
    pose_topic: str = _param(
        "jzi/pose",
        "output geometry_msgs/PoseWithCovarianceStamped of each FIX: x, y and the verified heading ('' = none)",
    )
    pose_frame: str = _param("jzi_map", "frame_id of the poses: ENU [m] about the map's centre (jzi map-frame)")
    altitude_m: float = _param(
        0.0, "altitude [m] of fixes the map's surface model does not give one (finite: robot_localization drops NaN)"
    )
    vertical_variance_m2: float = _param(
        VERTICAL_VARIANCE_M2, "variance [m^2] of the altitude, which the localizer does not measure"
    )
    beam_width: int = _param(4, "beam width of the zoom search (1 = greedy)")
    greedy_above: float = _param(
        1.0, "greedy until unsure: at a level where the best cell holds this share of the probability, only it goes on"
    )
    top_k: int = _param(5, "candidate cells kept per frame")
    min_confidence: float = _param(
        LocalizerConfig.min_confidence,
        "below this probability of lying within 2 terminal cells of the truth a fix is published as NO_FIX",
    )
    trust_unverified: bool = _param(
        False, "publish a zoom fix the registration could not verify as FIX (by its confidence); off: verified only"
    )
    max_rate_hz: float = _param(0.0, "most frames localized per second (0 = as fast as possible)")
    prior_topic: str = _param("", "optional NavSatFix topic of a prior position that narrows the search ('' = none)")
    prior_max_age_s: float = _param(5.0, "a prior older than this [s] is ignored")
    smoothing_noise_m2_s: float = _param(0.0, "temporal filter process noise [m^2/s] (0 = no smoothing)")
    publish_candidates: bool = _param(False, "publish the top-K candidates as geometry_msgs/PoseArray")
    candidates_topic: str = _param(
        "jzi/candidates", "PoseArray topic (x east, y north [m] in the map frame, z = probability)"
    )

    refine: bool = _param(True, "register each frame against the map's orthophoto pyramid to verify and refine the fix")
    matcher: str = _param(
        "auto",
        "registration matcher: auto (the model's learned matcher where it verified more than cfog, else cfog), "
        "learned, cfog (dense; robust across sensors), sift, akaze or orb",
    )
    fallback_matcher: str = _param(
        RefineConfig.fallback_matcher,
        "where the model's learned matcher verified none of a frame's places and the heading is known, this "
        "matcher registers them again with its own checks and covariance factor: cfog ('' = none)",
    )
    global_candidates: int = _param(
        RefineConfig.global_candidates,
        "zoom candidates registered for a frame searched over the whole map (or a prior's box) with the IMU's "
        "heading, at start and after a loss: more verify at once, each refused one costs a registration (at least "
        "5, the number registered when tracking or with the heading searched)",
    )
    sweep_places: int = _param(
        RefineConfig.sweep_places,
        "a frame searched over the whole map (or a prior's box) with the IMU's heading and a height, none of whose "
        "candidates verified, is registered around the places of a lattice one camera footprint apart over it when "
        "there are at most this many (a small map; 0: never)",
    )
    reference_cache_mb: float = _param(
        RefineConfig.reference_cache_mb,
        "memory [MB] for the map's descriptors, described by tile once and reused by every registration after, where "
        "the matcher's descriptors depend on nearby ground alone (a learned matcher trained with train-matcher "
        "--window; any other describes each crop anew; 0: each crop described anew)",
    )
    hfov_deg: float = _param(60.0, "camera's horizontal field of view [deg], used when camera_info_topic is ''")
    camera_info_topic: str = _param("", "sensor_msgs/CameraInfo topic of the camera's intrinsics ('' = use hfov_deg)")
    imu_topic: str = _param("", "sensor_msgs/Imu topic: orientation of the robot's body, ENU per REP-103 ('' = none)")
    imu_heading: bool = _param(True, "trust the IMU's yaw (false: use its roll and pitch only and search the heading)")
    yaw_offset_deg: float = _param(0.0, "added to the IMU's yaw [deg, counter-clockwise] for sources that are not ENU")
    height_topic: str = _param("", "sensor_msgs/Range topic of the height above ground along the body's -z ('' = none)")
    height_m: float = _param(0.0, "fixed camera height above ground [m] when height_topic is '' (0 = unknown)")
    mount_pitch_deg: float = _param(
        0.0, "camera tilt forward from straight down [deg] (a ground robot's looking ahead: 90)"
    )
    mount_image_rotation_deg: float = _param(0.0, "image top's angle clockwise from the body's forward axis [deg]")
    sensor_max_age_s: float = _param(0.2, "IMU and height messages more than this [s] from a frame's stamp are stale")
    tracking: bool = _param(True, "after a verified fix search near it (within max_speed_mps), not over the whole map")
    max_speed_mps: float = _param(TrackingConfig.max_speed_mps, "the robot's top ground speed [m/s], for tracking")
    reacquire_after: int = _param(
        TrackingConfig.reacquire_after, "frames in a row without a verified fix after which the search is global again"
    )
    odom_topic: str = _param(
        "", "nav_msgs/Odometry topic: between verified fixes the search moves with the robot ('' = none)"
    )
    odom_error_share: float = _param(
        TrackingConfig.odom_error_share, "the odometry's drift, one standard deviation, as a share of the distance"
    )

    def __post_init__(self) -> None:
        if self.transport not in ("raw", "compressed"):
            raise JziError(f"transport must be raw or compressed, not {self.transport!r}")
        if not 0 < self.hfov_deg < 180:
            raise JziError(f"hfov_deg must be within 0..180 (exclusive), not {self.hfov_deg}")
        if not (math.isfinite(self.sensor_max_age_s) and self.sensor_max_age_s >= 0):
            raise JziError(f"sensor_max_age_s must be 0 or more, not {self.sensor_max_age_s}")
        if not (math.isfinite(self.height_m) and self.height_m >= 0):
            raise JziError(f"height_m must be 0 (unknown) or a height above ground, not {self.height_m}")
        if not all(math.isfinite(v) for v in (self.yaw_offset_deg, self.mount_image_rotation_deg)):
            raise JziError("yaw_offset_deg and mount_image_rotation_deg must be finite")
        if not -90 < self.mount_pitch_deg <= MAX_MOUNT_PITCH_DEG:
            raise JziError(
                f"mount_pitch_deg must be above -90 and at most {MAX_MOUNT_PITCH_DEG:g} (90: looking ahead), "
                f"not {self.mount_pitch_deg}"
            )
        for name in ("max_rate_hz", "prior_max_age_s", "threads"):
            if not getattr(self, name) >= 0:
                raise JziError(f"{name} must be 0 or more, not {getattr(self, name)}")
        if not (self.vertical_variance_m2 > 0 and math.isfinite(self.altitude_m)):
            raise JziError("vertical_variance_m2 must be positive and altitude_m finite")
        self.localizer_config()  # beam_width, top_k, min_confidence, smoothing, matcher, tracking: checked there

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> NodeParams:
        """Parameters from ROS values, each of its default's type (an integer for a float is taken as such).

        Raises:
            JziError: A value of another type, naming the parameter.
        """
        typed: dict[str, Any] = {}
        for f in fields(cls):
            value, want = values.get(f.name, f.default), type(f.default)
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise JziError(f"parameter {f.name} must be a {want.__name__}, not {value!r}")
            typed[f.name] = value
        return cls(**typed)

    @property
    def min_period_s(self) -> float:
        """Shortest time [s] between the starts of two localizations (0 = none)."""
        return 1.0 / self.max_rate_hz if self.max_rate_hz > 0 else 0.0

    def localizer_config(self) -> LocalizerConfig:
        """The per-frame settings the :class:`~jzi_ros.localizer.Localizer` takes."""
        return LocalizerConfig(
            beam=self.beam_width,
            greedy_above=self.greedy_above,
            top_k=self.top_k,
            min_confidence=self.min_confidence,
            smoothing_noise_m2_s=self.smoothing_noise_m2_s,
            hfov_deg=self.hfov_deg,
            refine=RefineConfig(
                enabled=self.refine,
                matcher=self.matcher,
                fallback_matcher=self.fallback_matcher,
                global_candidates=self.global_candidates,
                sweep_places=self.sweep_places,
                reference_cache_mb=self.reference_cache_mb,
            ),
            tracking=TrackingConfig(
                self.tracking, self.max_speed_mps, self.reacquire_after, odom_error_share=self.odom_error_share
            ),
            map_precision=self.map_precision or None,
            trust_unverified=self.trust_unverified,
        )

    @property
    def mount(self) -> Mount:
        """How the camera sits on the body."""
        return Mount(self.mount_pitch_deg, self.mount_image_rotation_deg)

    def knowledge(self, orientation: np.ndarray | None, range_m: float | None) -> tuple[Attitude | None, float | None]:
        """Attitude and height above ground from the body's orientation (x, y, z, w) and a range [m] (None: none).

        Without ``height_topic`` the height is ``height_m`` (None when 0); a
        range of a body upside down, or a bogus one, gives no height.
        """
        attitude = None
        if orientation is not None:
            attitude = Attitude.from_body(orientation, self.mount, self.imu_heading, self.yaw_offset_deg)
        height = self.height_m if self.height_m > 0 else None
        if self.height_topic:
            height = height_above_ground(range_m, orientation) if range_m is not None else None
            if height is not None and height <= 0:
                height = None
        return attitude, height


PARAMETERS: dict[str, tuple[Any, str]] = {f.name: (f.default, f.metadata["doc"]) for f in fields(NodeParams)}
"""Parameter name -> (default, description), in declaration order."""
