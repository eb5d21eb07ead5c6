"""Geometry of the zoom grid, GeoTIFF rendering and the map directory (no torch here)."""

from .build import build_map, largest_square_region
from .errors import GeoError, MapError, OutsideRegionError, RasterError
from .frame import LocalFrame
from .grid import BoundsM, CellPath, LatLonBounds, ZoomGrid
from .mapdir import MapDir, MapWriter, feature_key
from .raster import RasterInfo, RasterMosaic, read_info

__all__ = [
    "BoundsM",
    "CellPath",
    "GeoError",
    "LatLonBounds",
    "LocalFrame",
    "MapDir",
    "MapError",
    "MapWriter",
    "OutsideRegionError",
    "RasterError",
    "RasterInfo",
    "RasterMosaic",
    "ZoomGrid",
    "build_map",
    "feature_key",
    "largest_square_region",
    "read_info",
]
