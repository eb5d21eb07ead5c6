"""Training and query data: camera rendering, aerial self-supervision, geotagged images, bags, flights, sensors."""

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
from .errors import BagError, DataError
from .fixes import FixTrack
from .flight import FlightConfig, FlightReport, Trajectory, write_flight
from .importers import ImportReport, import_bag, import_benchmark, import_exif, write_csv
from .sensors import AttitudeTrack, HeightTrack, read_attitude_track, read_height_track

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
