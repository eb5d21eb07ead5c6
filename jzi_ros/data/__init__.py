"""Training and query data: camera rendering, aerial self-supervision, geotagged images, bags, flights, sensors.

Each name loads its module on first use: the node reads its sensors' tracks
(:mod:`.sensors`) without importing the renderers and importers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes
from .errors import BagError, DataError

if TYPE_CHECKING:
    from .aerial import (
        AerialConfig,
        covered_frames,
        heldout_cells,
        in_heldout,
        pose_paths,
        query_raster_problem,
        render_samples,
        sample_poses,
        source_ortho,
    )
    from .camera import CameraPose, Pinhole, ground_footprint, ground_to_image, image_to_ground, render_frame
    from .fixes import FixTrack
    from .flight import FlightConfig, FlightReport, Trajectory, write_flight
    from .importers import ImportReport, import_bag, import_benchmark, import_exif, write_csv
    from .sensors import AttitudeTrack, HeightTrack, read_attitude_track, read_height_track

_LAZY = {
    "AerialConfig": "aerial",
    "covered_frames": "aerial",
    "heldout_cells": "aerial",
    "in_heldout": "aerial",
    "pose_paths": "aerial",
    "query_raster_problem": "aerial",
    "render_samples": "aerial",
    "sample_poses": "aerial",
    "source_ortho": "aerial",
    "CameraPose": "camera",
    "Pinhole": "camera",
    "ground_footprint": "camera",
    "ground_to_image": "camera",
    "image_to_ground": "camera",
    "render_frame": "camera",
    "FixTrack": "fixes",
    "FlightConfig": "flight",
    "FlightReport": "flight",
    "Trajectory": "flight",
    "write_flight": "flight",
    "ImportReport": "importers",
    "import_bag": "importers",
    "import_benchmark": "importers",
    "import_exif": "importers",
    "write_csv": "importers",
    "AttitudeTrack": "sensors",
    "HeightTrack": "sensors",
    "read_attitude_track": "sensors",
    "read_height_track": "sensors",
}

__getattr__ = lazy_attributes(__name__, _LAZY)

__all__ = [
    "AerialConfig",
    "AttitudeTrack",
    "BagError",
    "CameraPose",
    "DataError",
    "FixTrack",
    "FlightConfig",
    "FlightReport",
    "HeightTrack",
    "ImportReport",
    "Pinhole",
    "Trajectory",
    "covered_frames",
    "ground_footprint",
    "ground_to_image",
    "heldout_cells",
    "image_to_ground",
    "import_bag",
    "import_benchmark",
    "import_exif",
    "in_heldout",
    "pose_paths",
    "query_raster_problem",
    "read_attitude_track",
    "read_height_track",
    "render_frame",
    "render_samples",
    "sample_poses",
    "source_ortho",
    "write_csv",
    "write_flight",
]
