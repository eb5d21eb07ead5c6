"""Building a map: choose the region, render every view and the orthophoto pyramid, write the directory."""

from __future__ import annotations

import datetime as dt
import logging
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pyproj
import rasterio

from .. import __version__
from ..outputs import check_replaceable, check_writable
from .errors import MapError, RasterError
from .frame import LocalFrame
from .grid import BoundsM, ZoomGrid
from .heights import heights_resolution_m
from .mapdir import PYRAMID_FILE, SURFACE_FILE, MapDir, MapWriter, view_bounds_m, view_bytes
from .pyramid import PyramidPlan, plan_pyramid, write_pyramid
from .raster import COARSE_MASK_PX, RasterMosaic
from .surface import write_surface

log = logging.getLogger(__name__)

FULL_COVERAGE = 0.999
"""Coverage share above which a region counts as fully covered."""

Progress = Callable[[Iterable[int], int], Iterable[int]]


def _largest_square(valid: np.ndarray, prefer: tuple[float, float]) -> tuple[int, int, int]:
    """Largest all-True square in a 2-D mask: (side, row, col) of its top-left pixel.

    Among equals, the one nearest to ``prefer`` (row, col).
    """
    sat = np.zeros((valid.shape[0] + 1, valid.shape[1] + 1), np.int64)
    sat[1:, 1:] = (~valid).cumsum(0).cumsum(1)

    def fits(s: int) -> np.ndarray:
        holes = sat[s:, s:] - sat[:-s, s:] - sat[s:, :-s] + sat[:-s, :-s]
        return holes == 0

    lo, hi = 0, min(valid.shape)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid).any():
            lo = mid
        else:
            hi = mid - 1
    if lo == 0:
        return 0, 0, 0
    rows, cols = np.nonzero(fits(lo))
    best = np.argmin((rows + lo / 2 - prefer[0]) ** 2 + (cols + lo / 2 - prefer[1]) ** 2)
    return lo, int(rows[best]), int(cols[best])


BLACK_WARNING = 0.1
"""A region whose covered pixels are pure black at this share or more is warned of: likely undeclared no data."""


def coverage_of(mosaic: RasterMosaic, grid: ZoomGrid, px: int = 256) -> float:
    """Share of the region that the rasters cover (from their coarse masks)."""
    valid = mosaic.coverage(grid.frame, grid.bounds_m(()), px)
    return float(valid.mean())


def largest_square_region(mosaic: RasterMosaic, grid: int = 4, levels: int = 4) -> ZoomGrid:
    """The largest square region the rasters cover, as a zoom grid."""
    box = mosaic.bounds_latlon
    frame = LocalFrame((box.south + box.north) / 2, (box.west + box.east) / 2)
    feet = mosaic.footprints_m(frame)
    west, south = min(b.west_m for b in feet), min(b.south_m for b in feet)
    east, north = max(b.east_m for b in feet), max(b.north_m for b in feet)
    step = max(east - west, north - south) / COARSE_MASK_PX
    w, h = int(np.ceil((east - west) / step)), int(np.ceil((north - south) / step))
    valid = mosaic.coverage(frame, BoundsM(west, north - h * step, west + w * step, north), w, h)
    side, row, col = _largest_square(valid, prefer=(h / 2, w / 2))
    if side < 3:
        raise RasterError("the rasters cover no square area of useful size; give --center and --size-m")
    size_m = (side - 2) * step
    lat, lon = frame.to_latlon(west + (col + side / 2) * step, north - (row + side / 2) * step)
    region = ZoomGrid(float(lat), float(lon), size_m, grid, levels)
    # The region's own frame is turned slightly against the planning frame
    # (meridian convergence); shrink until the rasters cover it.
    for _ in range(20):
        if coverage_of(mosaic, region) >= FULL_COVERAGE:
            break
        region = ZoomGrid(region.center_lat, region.center_lon, region.size_m * 0.99, grid, levels)
    return region


def _free_bytes(path: Path) -> int:
    for parent in [path, *path.parents]:
        if parent.exists():
            return shutil.disk_usage(parent).free
    return 0


def human_bytes(n: float) -> str:
    """A byte count as text with one decimal in B, KB, MB, GB or TB (steps of 1024)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def check_disk(grid: ZoomGrid, view_px: int, out_dir: Path, pyramid: PyramidPlan | None = None) -> int:
    """Bytes the map's views (and its orthophoto pyramid while written) take; raise if the disk cannot hold them."""
    need = view_bytes(grid, view_px) + (pyramid.disk_bytes if pyramid is not None else 0)
    free = _free_bytes(out_dir.resolve())
    if need * 1.02 + 64 * 2**20 > free:
        ortho = (
            f" and an orthophoto pyramid of {pyramid.width_px}x{pyramid.height_px} px at {pyramid.gsd_m:.3g} m/px"
            if pyramid is not None
            else ""
        )
        raise MapError(
            f"this map needs {human_bytes(need)} on disk ({grid.num_views:,} views of {view_px}x{view_px} px{ortho}) "
            f"but {out_dir.resolve().parent} has {human_bytes(free)} free; use fewer --levels, a smaller "
            f"--view-px, a coarser --pyramid-gsd-m or another --out"
        )
    return need


def build_map(
    geotiffs: list[str | Path],
    out_dir: str | Path,
    *,
    center: tuple[float, float] | None = None,
    size_m: float | None = None,
    grid: int = 4,
    levels: int = 4,
    view_px: int = 224,
    margin: float = 0.0,
    overwrite: bool = False,
    pyramid_gsd_m: float | None = None,
    progress: Progress | None = None,
    pyramid_progress: Progress | None = None,
    dsm: str | Path | None = None,
) -> MapDir:
    """Render the views of every non-terminal cell of a region, and its orthophoto pyramid, from GeoTIFFs.

    ``center`` (lat, lon) [deg] and ``size_m`` [m] default to the largest
    square the rasters cover. ``margin`` grows each view by that share of its
    cell's side on every side (context). The pyramid (``ortho.tif``, see
    ``geo.pyramid``) has ``pyramid_gsd_m`` [m/px], default the finest
    raster's. ``progress(iterable, total)`` wraps the render loop of the views
    (a tqdm bar in the CLI), ``pyramid_progress`` (default ``progress``) that
    of the pyramid's blocks. ``dsm``: an elevation model (DSM, or DTM;
    GeoTIFF, metres, any CRS) stored over the pyramid's extent as the map's
    surface model (``geo.surface``).
    """
    out_dir = Path(out_dir)
    if view_px < 8:
        raise MapError(f"--view-px {view_px} is too small (8 or more)")
    if not 0.0 <= margin <= 1.0:
        raise MapError(f"--margin {margin} must be within 0..1 (a share of the cell side)")
    if pyramid_gsd_m is not None and not pyramid_gsd_m > 0:
        raise MapError(f"pyramid_gsd_m must be a positive number of metres per pixel, got {pyramid_gsd_m}")
    if out_dir.exists() and not overwrite:
        raise MapError(f"{out_dir} exists; choose another --out or pass --overwrite")
    check_replaceable(out_dir, "map.yaml", "map", inputs=geotiffs)  # before any work, and before any loss
    check_writable(out_dir)
    if dsm is not None:
        heights_resolution_m(dsm)  # a model that cannot be read fails before any work
    started = time.perf_counter()
    with RasterMosaic(list(geotiffs)) as mosaic:
        if center is None or size_m is None:
            auto = largest_square_region(mosaic, grid, levels)
            center = center or (auto.center_lat, auto.center_lon)
            size_m = size_m or auto.size_m
        region = ZoomGrid(center[0], center[1], float(size_m), grid, levels)
        covered = coverage_of(mosaic, region)
        if covered == 0.0:
            b = mosaic.bounds_latlon
            raise RasterError(
                f"the region ({region.describe()}) lies outside the rasters, which cover "
                f"lat {b.south:.5f}..{b.north:.5f}, lon {b.west:.5f}..{b.east:.5f}"
            )
        if covered < FULL_COVERAGE:
            log.warning(
                "the rasters cover only %.2f %% of the region; uncovered pixels are black "
                "and marked in the coverage mask",
                100 * covered,
            )
        ortho = plan_pyramid(mosaic, region, pyramid_gsd_m)
        check_disk(region, view_px, out_dir, ortho)
        iterate = progress or (lambda it, total: it)
        with MapWriter(out_dir, region, view_px, margin, overwrite=overwrite) as writer:
            frame = region.frame
            black = 0.0  # the share of the region's covered pixels that are pure black (its root view's)
            for i in iterate(range(region.num_views), region.num_views):
                path = region.path_of_view(i)
                bounds = view_bounds_m(region, path, margin)
                rgb, valid = mosaic.render(frame, bounds, view_px)
                writer.write_view(i, rgb, valid)
                if path == () and valid.any():
                    black = float((rgb.max(axis=-1) == 0)[valid].mean())
            if black >= BLACK_WARNING:
                log.warning(
                    "%.0f %% of the region's imagery is pure black in rasters that declare no nodata: if that is no "
                    "imagery, declare it (rasterio's rio edit-info --nodata 0 RASTER) and build again, or give "
                    "--center and --size-m inside the imagery",
                    100 * black,
                )
            pyramid = write_pyramid(
                mosaic,
                region,
                writer.tmp_dir / PYRAMID_FILE,
                gsd_m=ortho.gsd_m,
                progress=pyramid_progress or progress,
            )
            surface = None
            if dsm is not None:
                surface = write_surface(dsm, frame, ortho.bounds, writer.tmp_dir / SURFACE_FILE)
            build = {
                "jzi_ros": __version__,
                "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "seconds": round(time.perf_counter() - started, 3),
                "command": " ".join(sys.argv),
                "host": platform.node(),
                "gdal": rasterio.__gdal_version__,
                "rasterio": rasterio.__version__,
                "proj": pyproj.proj_version_str,
                "region_coverage": round(covered, 6),
            }
            return writer.finish([info.to_dict() for info in mosaic.infos], build, pyramid, surface)
