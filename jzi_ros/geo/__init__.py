"""Geometry of the zoom grid, GeoTIFF rendering and the map directory (no torch here).

The grid and the map directory import without rasterio; the raster readers and
the map builder and the orthophoto pyramid (which need it) load on first use, so that the model layer can
use the grid's arithmetic cheaply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes
from .camera import CameraPose, Pinhole, ground_footprint, ground_to_image, image_to_ground
from .errors import GeoError, MapError, OutsideRegionError, RasterError
from .frame import LocalFrame
from .grid import BoundsM, CellPath, LatLonBounds, ZoomGrid, terminal_number, terminal_paths, view_indices
from .mapdir import MapDir, MapWriter, feature_key

if TYPE_CHECKING:
    from .build import build_map, largest_square_region
    from .pyramid import Pyramid, add_pyramid, write_pyramid
    from .raster import RasterInfo, RasterMosaic, read_info

_LAZY = {
    "build_map": "build",
    "largest_square_region": "build",
    "Pyramid": "pyramid",
    "add_pyramid": "pyramid",
    "write_pyramid": "pyramid",
    "RasterInfo": "raster",
    "RasterMosaic": "raster",
    "read_info": "raster",
}

__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "BoundsM",
    "CameraPose",
    "CellPath",
    "GeoError",
    "LatLonBounds",
    "LocalFrame",
    "MapDir",
    "MapError",
    "MapWriter",
    "OutsideRegionError",
    "Pinhole",
    "Pyramid",
    "RasterError",
    "RasterInfo",
    "RasterMosaic",
    "ZoomGrid",
    "add_pyramid",
    "build_map",
    "feature_key",
    "ground_footprint",
    "ground_to_image",
    "image_to_ground",
    "largest_square_region",
    "read_info",
    "terminal_number",
    "terminal_paths",
    "view_indices",
    "write_pyramid",
]
