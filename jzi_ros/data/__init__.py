"""Training and query data: camera rendering, aerial self-supervision, geotagged images."""

from .aerial import AerialConfig, heldout_cells, in_heldout, pose_paths, render_samples, sample_poses
from .camera import CameraPose, Pinhole, ground_footprint, ground_to_image, image_to_ground, render_frame
from .errors import DataError

__all__ = [
    "AerialConfig",
    "CameraPose",
    "DataError",
    "Pinhole",
    "ground_footprint",
    "ground_to_image",
    "heldout_cells",
    "in_heldout",
    "image_to_ground",
    "pose_paths",
    "render_frame",
    "render_samples",
    "sample_poses",
]
