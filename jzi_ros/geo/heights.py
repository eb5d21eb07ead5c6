"""Elevation models (DSM, DTM) of a region, read into its local frame.

A surface model (DSM: roofs, tree crowns) or terrain model (DTM: the bare
ground) is a single-band GeoTIFF of elevations in metres, in any CRS and
resolution (a feet-based CRS is fine: only the horizontal units follow the
CRS; the values must be metres: a model in feet needs converting first).
:func:`read_heights` warps it onto a
pixel grid of a region's local frame, as :class:`~jzi_ros.geo.ortho.LocalOrtho`
lays out the orthophoto; cells without data are NaN until :func:`fill_gaps`
fills them. :func:`ground_from_surface` estimates the terrain under a surface
model when no terrain model is given.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import rasterio
import rasterio.errors
from rasterio.transform import from_origin
from rasterio.warp import Resampling, reproject

from .errors import RasterError
from .frame import LocalFrame
from .grid import BoundsM
from .raster import _resolution_m

log = logging.getLogger(__name__)


MIN_ELEVATION_M = -500.0
"""Values below this are no data (a raster without a no-data tag: -9999, -3.4e38); the Dead Sea is at -430 m."""
MAX_ELEVATION_M = 9000.0
"""Values above this are no data."""


def heights_resolution_m(path: str | Path) -> float:
    """Ground size [m] of an elevation raster's cells at its centre (any CRS)."""
    try:
        with rasterio.open(path) as ds:
            if ds.crs is None:
                raise RasterError(f"{path} has no CRS; an elevation model needs a georeference")
            return _resolution_m(ds)
    except rasterio.errors.RasterioError as e:
        raise RasterError(f"cannot read the elevation model {path}: {e}") from None


def read_heights(path: str | Path, frame: LocalFrame, bounds: BoundsM, gsd_m: float) -> np.ndarray:
    """Elevations [m] of the raster ``path`` on ``bounds`` [m] of ``frame`` at ``gsd_m`` [m/px], north up.

    Pixel (r, c) has its centre at (west + (c + 0.5) gsd, north - (r + 0.5) gsd),
    as in :meth:`LocalOrtho.read <jzi_ros.geo.ortho.LocalOrtho.read>`.
    Nearest-neighbour sampling keeps walls sharp. Returns (H, W) float32,
    NaN where the raster has no data or does not reach.

    Raises:
        RasterError: the file cannot be read or is not a single-band elevation raster.
    """
    width = max(1, round((bounds.east_m - bounds.west_m) / gsd_m))
    height = max(1, round((bounds.north_m - bounds.south_m) / gsd_m))
    out = np.full((height, width), np.nan, np.float32)
    try:
        with rasterio.open(path) as ds:
            if ds.crs is None:
                raise RasterError(f"{path} has no CRS; an elevation model needs a georeference")
            if ds.count != 1:
                raise RasterError(f"{path} has {ds.count} bands; an elevation model has one (metres)")
            reproject(
                source=rasterio.band(ds, 1),
                destination=out,
                src_nodata=ds.nodata,
                dst_transform=from_origin(bounds.west_m, bounds.north_m, gsd_m, gsd_m),
                dst_crs=frame.proj4,
                dst_nodata=np.nan,
                resampling=Resampling.nearest,
            )
    except rasterio.errors.RasterioError as e:
        raise RasterError(f"cannot read the elevation model {path}: {e}") from None
    out[~(np.isfinite(out) & (out > MIN_ELEVATION_M) & (out < MAX_ELEVATION_M))] = np.nan  # untagged no-data values
    return out


def fill_gaps(heights: np.ndarray) -> np.ndarray:
    """``heights`` [m] with every NaN replaced from the valid cells around it (OpenCV inpainting).

    Raises:
        RasterError: no cell is valid.
    """
    missing = ~np.isfinite(heights)
    if missing.mean() > 0.05:
        log.info("the elevation model has no data on %.0f %% of the area: filled from around it", 100 * missing.mean())
    if not missing.any():
        return heights.astype(np.float32)
    if missing.all():
        raise RasterError("the elevation model has no data over this area")
    low = float(np.nanmin(heights))
    relative = (np.where(missing, low, heights) - low).astype(np.float32)
    return (cv2.inpaint(relative, missing.astype(np.uint8), 3, cv2.INPAINT_TELEA) + low).astype(np.float32)


def ground_from_surface(surface_m: np.ndarray, gsd_m: float, window_m: float = 40.0) -> np.ndarray:
    """An estimate of the bare terrain [m] under a surface model [m]: a grey opening ``window_m`` wide, smoothed.

    Buildings and trees narrower than the window disappear; terrain keeps
    its shape. A crude ground filter, for a surface model with no terrain
    model beside it.
    """
    k = max(3, int(round(window_m / gsd_m)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    ground = cv2.morphologyEx(surface_m.astype(np.float32), cv2.MORPH_OPEN, kernel)
    return cv2.GaussianBlur(ground, (0, 0), k / 4).astype(np.float32)
