"""The map's orthophoto pyramid: the region in its local frame as a cloud-optimized GeoTIFF.

The registration stage reads crops around candidate cells at any resolution;
the map directory alone must serve them quickly. :func:`write_pyramid` renders
the region, grown by :data:`PAD_CELLS` terminal cells on every side (as far as
the rasters reach), into ``ortho.tif``:

- CRS: the region's local frame (transverse Mercator centred on it,
  ``LocalFrame.proj4``), north up; the frame's origin is also stored as the
  tags ``JZI_LAT0`` / ``JZI_LON0`` [deg]. Pixel edges fall on the region's
  west and north edges.
- Layout: COG (GDAL's COG driver), 256 px tiles, JPEG (YCbCr, quality 75, overviews 80),
  average overviews down to less than one tile, the coverage as a per-dataset
  mask (with its own overviews).

It is written block by block (:data:`BLOCK_PX`) into a lossless tiled GeoTIFF
beside the target, copied into a COG under a temporary name, and moved into
place: memory stays bounded, and a failed write leaves nothing behind.
:class:`Pyramid` reads crops of any box at any ground resolution; coarse reads
come from the overviews.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import rasterio
import rasterio.errors
import rasterio.shutil
from rasterio.enums import ColorInterp, Resampling
from rasterio.transform import from_origin
from rasterio.windows import Window

from .errors import GeoError, MapError, RasterError
from .frame import LocalFrame
from .grid import BoundsM, ZoomGrid
from .mapdir import PYRAMID_FILE, MapDir
from .ortho import LocalOrtho
from .raster import DOWNSAMPLE_AVERAGE_RATIO, RasterMosaic

PAD_CELLS = 2
"""The pyramid covers the region grown by this many terminal cells on every side (where rasters cover it)."""

TILE_PX = 256
"""Side [px] of the pyramid's tiles; overviews go down to less than one tile."""

BLOCK_PX = 2048
"""Side [px] of the blocks rendered at a time (a multiple of TILE_PX; about 12 MB of RGB each)."""

JPEG_QUALITY = 75
"""JPEG quality of the full-resolution tiles: about 1.4x the bytes of Zürich's own JPEG source for the
same area (90: 2.3x), and registration on Zürich, Rotterdam and NAIP as accurate as with 90."""
OVERVIEW_JPEG_QUALITY = 80
"""The overviews' pixels each stand for many, so they get a little more quality than the tiles."""

MEMORY_PIXELS = 16_000_000
"""A pyramid of at most this many pixels (a 4 km square at 1 m) is decoded once and kept in memory (64 MB):
a crop then costs a warp (about 1 ms) instead of decoding its tiles (about 8 ms for 500 x 500 px)."""

PEAK_BYTES_PER_PX = 4.5
"""Disk [bytes/px] a pyramid takes while it is written, at most: the lossless
intermediate (up to 3 + mask), the overviews and the JPEG COG (typically 0.2-0.6)."""

_EPS_PX = 1e-6
"""Slack [px] when deciding whether a read's pixel lies inside the pyramid."""

Progress = Callable[[Iterable[int], int], Iterable[int]]


class PyramidPlan(NamedTuple):
    """Extent and size of a pyramid before it is rendered."""

    bounds: BoundsM
    """Extent [m] in the region's local frame, on the pixel grid."""
    gsd_m: float
    """Ground sample distance [m/px]."""
    width_px: int
    height_px: int

    @property
    def disk_bytes(self) -> int:
        """Upper estimate of the disk [bytes] the pyramid needs while it is written."""
        return int(self.width_px * self.height_px * PEAK_BYTES_PER_PX) + 2**20


def plan_pyramid(
    mosaic: RasterMosaic, grid: ZoomGrid, gsd_m: float | None = None, pad_m: float | None = None
) -> PyramidPlan:
    """Extent and pixel size of the pyramid of ``grid``'s region rendered from ``mosaic``.

    Args:
        mosaic: The source rasters.
        grid: The map's zoom grid; its frame is the pyramid's CRS.
        gsd_m: Ground sample distance [m/px]; default the finest raster's
            (rounded to 4 significant digits).
        pad_m: Margin [m] around the region; default ``PAD_CELLS`` terminal cells.

    Returns:
        The region grown by ``pad_m``, cut to the rasters' footprints and
        snapped outwards to the pixel grid anchored at the region's north-west corner.

    Raises:
        MapError: ``gsd_m`` or ``pad_m`` is not a positive (non-negative) number.
        RasterError: The rasters do not reach the region.
    """
    # the finest raster's resolution measured in the local frame (0.49998 for a 0.5 m raster), to 4 digits
    gsd = float(f"{min(info.resolution_m for info in mosaic.infos):.4g}") if gsd_m is None else float(gsd_m)
    pad = PAD_CELLS * grid.terminal_size_m if pad_m is None else float(pad_m)
    if not (math.isfinite(gsd) and gsd > 0):
        raise MapError(f"gsd_m must be a positive number of metres per pixel, got {gsd_m}")
    if not (math.isfinite(pad) and pad >= 0):
        raise MapError(f"pad_m must be zero or more metres, got {pad_m}")
    half = grid.size_m / 2
    feet = mosaic.footprints_m(grid.frame)
    west = max(-half - pad, min(b.west_m for b in feet))
    east = min(half + pad, max(b.east_m for b in feet))
    south = max(-half - pad, min(b.south_m for b in feet))
    north = min(half + pad, max(b.north_m for b in feet))
    # pixel edges on the region's west and north edges
    c0, c1 = math.floor((west + half) / gsd + _EPS_PX), math.ceil((east + half) / gsd - _EPS_PX)
    r0, r1 = math.floor((half - north) / gsd + _EPS_PX), math.ceil((half - south) / gsd - _EPS_PX)
    if c1 <= c0 or r1 <= r0:
        raise RasterError(f"the rasters do not reach the region ({grid.describe()}); no orthophoto to store")
    bounds = BoundsM(-half + c0 * gsd, half - r1 * gsd, -half + c1 * gsd, half - r0 * gsd)
    return PyramidPlan(bounds, gsd, c1 - c0, r1 - r0)


def _remove(*paths: Path) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def _render_blocks(
    mosaic: RasterMosaic, frame: LocalFrame, plan: PyramidPlan, path: Path, progress: Progress | None
) -> None:
    """Render the plan's extent block by block into a lossless tiled GeoTIFF with an internal mask."""
    west, _, _, north = plan.bounds
    gsd = plan.gsd_m
    profile = dict(
        driver="GTiff",
        width=plan.width_px,
        height=plan.height_px,
        count=3,
        dtype="uint8",
        crs=frame.proj4,
        transform=from_origin(west, north, gsd, gsd),
        tiled=True,
        blockxsize=TILE_PX,
        blockysize=TILE_PX,
        compress="deflate",
        zlevel=1,
        predictor=2,
        bigtiff="IF_SAFER",
    )
    blocks = [(r, c) for r in range(0, plan.height_px, BLOCK_PX) for c in range(0, plan.width_px, BLOCK_PX)]
    iterate = progress or (lambda it, total: it)
    with rasterio.open(path, "w", **profile) as dst:
        dst.update_tags(JZI_LAT0=repr(frame.lat0), JZI_LON0=repr(frame.lon0))
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
        for i in iterate(range(len(blocks)), len(blocks)):
            r, c = blocks[i]
            h, w = min(BLOCK_PX, plan.height_px - r), min(BLOCK_PX, plan.width_px - c)
            box = BoundsM(west + c * gsd, north - (r + h) * gsd, west + (c + w) * gsd, north - r * gsd)
            rgb, valid = mosaic.render(frame, box, w, h)
            window = Window(c, r, w, h)
            dst.write(np.moveaxis(rgb, -1, 0), window=window)
            dst.write_mask(valid.astype(np.uint8) * 255, window=window)


def write_pyramid(
    mosaic: RasterMosaic,
    grid: ZoomGrid,
    path: Path,
    *,
    gsd_m: float | None = None,
    pad_m: float | None = None,
    progress: Progress | None = None,
) -> dict:
    """Render the region of ``grid`` from ``mosaic`` into a cloud-optimized GeoTIFF at ``path``.

    Args:
        mosaic: The source rasters (finest wins where they overlap).
        grid: The map's zoom grid; the pyramid is in ``grid.frame``.
        path: The file to write (replaced if it exists, only once the new one is complete).
        gsd_m: Ground sample distance [m/px]; default the finest raster's ``resolution_m``
            (to 4 significant digits).
        pad_m: Margin [m] around the region; default ``PAD_CELLS * grid.terminal_size_m``.
        progress: ``progress(iterable, total)`` wraps the loop over the rendered blocks.

    Returns:
        The record map.yaml keeps: ``file``, ``gsd_m``, ``bounds_m`` [west, south,
        east, north] (local metres), ``width_px``, ``height_px``, ``bytes`` and
        ``overviews`` (decimation factors).

    Raises:
        MapError: The file cannot be written, or a bad ``gsd_m``/``pad_m``.
        RasterError: The rasters cannot be read or do not reach the region.
    """
    path = Path(path)
    plan = plan_pyramid(mosaic, grid, gsd_m, pad_m)
    blocks_tif = path.with_name(f"{path.name}.render.tif")
    tmp = path.with_name(f"{path.name}.partial")
    try:
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
            _render_blocks(mosaic, grid.frame, plan, blocks_tif, progress)
            rasterio.shutil.copy(
                blocks_tif,
                tmp,
                driver="COG",
                compress="JPEG",
                quality=JPEG_QUALITY,
                overview_quality=OVERVIEW_JPEG_QUALITY,
                blocksize=TILE_PX,
                overviews="AUTO",
                resampling="AVERAGE",
                bigtiff="IF_SAFER",
                num_threads="ALL_CPUS",
            )
        with rasterio.open(tmp) as ds:
            overviews = ds.overviews(1)
        os.replace(tmp, path)
    except rasterio.errors.RasterioError as exc:
        raise MapError(f"cannot write the orthophoto pyramid {path}: {exc}") from None
    finally:
        _remove(blocks_tif, tmp, *path.parent.glob(f"{tmp.name}.*"), *path.parent.glob(f"{blocks_tif.name}.*"))
    return {
        "file": path.name,
        "gsd_m": plan.gsd_m,
        "bounds_m": [round(float(v), 6) for v in plan.bounds],
        "width_px": plan.width_px,
        "height_px": plan.height_px,
        "bytes": path.stat().st_size,
        "overviews": list(overviews),
    }


def source_bytes_in(sources: list[dict], frame: LocalFrame, bounds: BoundsM) -> float:
    """Bytes of the source rasters' files that fall on ``bounds`` [m] of ``frame``.

    Each raster (a map's ``sources`` record, with ``bounds_latlon`` and
    ``size_bytes``) counts with the share of its box that lies in ``bounds``;
    what a map would carry if it kept its sources' pixels of the area instead.
    """
    total = 0.0
    for s in sources:
        west, south, east, north = s["bounds_latlon"]
        x, y = frame.to_local([south, south, north, north], [west, east, west, east])
        box = BoundsM(float(x.min()), float(y.min()), float(x.max()), float(y.max()))
        area = (box.east_m - box.west_m) * (box.north_m - box.south_m)
        dx = min(box.east_m, bounds.east_m) - max(box.west_m, bounds.west_m)
        dy = min(box.north_m, bounds.north_m) - max(box.south_m, bounds.south_m)
        if area > 0 and dx > 0 and dy > 0:
            total += s["size_bytes"] * dx * dy / area
    return total


def add_pyramid(
    mapdir: MapDir | str | Path,
    rasters: list[str | Path] | None = None,
    gsd_m: float | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict:
    """Add the orthophoto pyramid to an existing map (built before maps had one) and record it in map.yaml.

    Args:
        mapdir: The map (or its directory).
        rasters: Rasters to render it from; default the map's recorded sources.
        gsd_m: Ground sample distance [m/px]; default the finest raster's.
        overwrite: Replace a pyramid the map already has.
        progress: ``progress(iterable, total)`` wraps the loop over the rendered blocks.

    Returns:
        The pyramid's record in map.yaml (as :func:`write_pyramid` returns it,
        with ``sources`` when ``rasters`` were given).

    Raises:
        MapError: The map has a pyramid (and not ``overwrite``), its sources are
            gone, or the disk cannot hold the pyramid.
        RasterError: The rasters cannot be read or do not reach the region.
    """
    from .build import human_bytes

    mapdir = mapdir if isinstance(mapdir, MapDir) else MapDir(mapdir)
    if gsd_m is not None and not gsd_m > 0:
        raise MapError(f"pyramid_gsd_m must be a positive number of metres per pixel, got {gsd_m}")
    if mapdir.has_pyramid and not overwrite:
        raise MapError(f"map {mapdir.path} already has an orthophoto pyramid; pass --overwrite to replace it")
    given = bool(rasters)
    paths = [Path(p) for p in rasters] if rasters else [Path(s["path"]) for s in mapdir.sources if s.get("path")]
    if not paths:
        raise MapError(f"map {mapdir.path} records no source rasters; give them with --geotiff")
    missing = [p for p in paths if not p.exists()]
    if missing and not given:
        raise MapError(
            f"the source raster {missing[0]} of map {mapdir.path} is missing (moved?); give the rasters with --geotiff"
        )
    with RasterMosaic(list(paths)) as mosaic:
        plan = plan_pyramid(mosaic, mapdir.grid, gsd_m)
        free = shutil.disk_usage(mapdir.path).free
        if plan.disk_bytes > free:
            raise MapError(
                f"the orthophoto pyramid ({plan.width_px}x{plan.height_px} px at {plan.gsd_m:.3g} m/px) needs up to "
                f"{human_bytes(plan.disk_bytes)} on disk while it is written, but {mapdir.path} has "
                f"{human_bytes(free)} free; give a coarser --pyramid-gsd-m"
            )
        record = write_pyramid(mosaic, mapdir.grid, mapdir.path / PYRAMID_FILE, gsd_m=plan.gsd_m, progress=progress)
        if given:
            record["sources"] = [info.path for info in mosaic.infos]
    mapdir.record_pyramid(record)
    return record


def _frame_of(ds) -> LocalFrame:
    """The local frame of an open pyramid: from its tags, else from its CRS's parameters."""
    tags = ds.tags()
    try:
        if "JZI_LAT0" in tags and "JZI_LON0" in tags:
            return LocalFrame(float(tags["JZI_LAT0"]), float(tags["JZI_LON0"]))
        params = ds.crs.to_dict() if ds.crs is not None else {}
        if params.get("proj") == "tmerc":
            return LocalFrame(float(params["lat_0"]), float(params["lon_0"]))
    except (KeyError, ValueError):
        pass
    raise MapError(f"{ds.name} is not in a local frame of a map (no JZI_LAT0/JZI_LON0 tags, no tmerc CRS)")


class Pyramid:
    """Reads crops of a map's orthophoto pyramid at any ground resolution.

    Keeps the file open (use as a context manager or call :meth:`close`); not
    thread-safe: open one per thread.

    Attributes:
        path: The pyramid's file.
        frame: The region's local frame, the pyramid's CRS.
        bounds: The pyramid's extent [m] in ``frame``.
        gsd_m: Its finest ground sample distance [m/px].
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        fix = f"add one with `jzi build-pyramid --map {self.path.parent} --overwrite`"
        if not self.path.is_file():
            raise MapError(f"no orthophoto pyramid at {self.path}; {fix}")
        try:
            self._ds = rasterio.open(self.path)
        except rasterio.errors.RasterioError as exc:
            raise MapError(f"cannot read the orthophoto pyramid {self.path} ({exc}); {fix}") from None
        try:
            t = self._ds.transform
            if self._ds.count != 3 or self._ds.dtypes[0] != "uint8" or t.b != 0 or t.d != 0 or t.e >= 0:
                raise MapError(f"{self.path} is not an orthophoto pyramid (north-up RGB uint8); {fix}")
            self.frame = _frame_of(self._ds)
        except BaseException:
            self.close()
            raise
        self.bounds = BoundsM(*self._ds.bounds)
        self.gsd_m = float(t.a)
        self._res_y = float(-t.e)
        self._memory: LocalOrtho | None = None

    def __enter__(self) -> Pyramid:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the file; the pyramid reads nothing after."""
        if getattr(self, "_ds", None) is not None:
            self._ds.close()
            self._ds = None

    def _in_memory(self) -> LocalOrtho:
        """The whole pyramid decoded once, for a small map: crops then cost a warp, not a decode."""
        if self._memory is None:
            try:
                data = self._ds.read()
                mask = self._ds.read_masks(1) > 0
            except rasterio.errors.RasterioError as exc:
                raise MapError(f"cannot read the orthophoto pyramid {self.path} (corrupt?): {exc}") from None
            image = np.ascontiguousarray(np.moveaxis(data, 0, -1))
            image[~mask] = 0
            self._memory = LocalOrtho(image, mask, self.bounds, self.gsd_m, self.frame)
        return self._memory

    @property
    def overviews(self) -> list[int]:
        """Decimation factors of the overviews (2, 4, ...)."""
        return list(self._ds.overviews(1))

    def read(self, bounds: BoundsM, gsd_m: float) -> tuple[np.ndarray, np.ndarray]:
        """The orthophoto of ``bounds`` [m, local frame] at ``gsd_m`` [m/px].

        The crop is ``W = round((east - west) / gsd_m)`` by ``H = round((north -
        south) / gsd_m)`` pixels; pixel (r, c) has its centre at ``(west + (c +
        0.5) * gsd_m, north - (r + 0.5) * gsd_m)``. Pixels outside the pyramid
        (also those it covers only in part) are 0 and not valid. Reads coarser
        than 1.5x the pyramid's resolution average (from the overviews; from
        2x on, read at twice the resolution and averaged 2 x 2), finer ones
        interpolate bilinearly; the coverage is read nearest. A pyramid of at
        most :data:`MEMORY_PIXELS` is decoded once and read from memory
        (:meth:`~jzi_ros.geo.ortho.LocalOrtho.read`: bilinear from the nearest
        finer level of 2 x 2 means, edge pixels valid by their centre).

        Args:
            bounds: The box to read (west, south, east, north) [m].
            gsd_m: Ground sample distance of the crop [m/px].

        Returns:
            ``(rgb, valid)``: (H, W, 3) uint8 and (H, W) bool.

        Raises:
            GeoError: An empty box or a non-positive ``gsd_m``.
            MapError: The file cannot be read (corrupt).
        """
        west, south, east, north = (float(v) for v in bounds)
        if not (gsd_m > 0 and east > west and north > south):
            raise GeoError(f"cannot read {tuple(bounds)} at {gsd_m} m/px: need east > west, north > south, gsd_m > 0")
        if self._ds.width * self._ds.height <= MEMORY_PIXELS:
            return self._in_memory().read(bounds, gsd_m)
        width, height = round((east - west) / gsd_m), round((north - south) / gsd_m)
        if width < 1 or height < 1:
            raise GeoError(f"{tuple(bounds)} at {gsd_m} m/px is less than one pixel")
        rgb = np.zeros((height, width, 3), np.uint8)
        valid = np.zeros((height, width), bool)
        # the output pixels wholly inside the pyramid
        b = self.bounds
        c0 = max(0, math.ceil((b.west_m - west) / gsd_m - _EPS_PX))
        c1 = min(width, math.floor((b.east_m - west) / gsd_m + _EPS_PX))
        r0 = max(0, math.ceil((north - b.north_m) / gsd_m - _EPS_PX))
        r1 = min(height, math.floor((north - b.south_m) / gsd_m + _EPS_PX))
        if c1 <= c0 or r1 <= r0:
            return rgb, valid
        ds = self._ds
        col = max(0.0, (west + c0 * gsd_m - b.west_m) / self.gsd_m)
        row = max(0.0, (b.north_m - north + r0 * gsd_m) / self._res_y)
        window = Window(
            col,
            row,
            min(ds.width - col, (c1 - c0) * gsd_m / self.gsd_m),
            min(ds.height - row, (r1 - r0) * gsd_m / self._res_y),
        )
        shape = (r1 - r0, c1 - c0)
        # 2x or coarser: read at twice the resolution (the next finer overview) and average 2 x 2, which
        # halves the error against the full-resolution pixels (JPEG noise of the overview, misaligned grids)
        ratio = gsd_m / self.gsd_m
        k = 2 if ratio >= 2 else 1
        resampling = Resampling.average if ratio / k >= DOWNSAMPLE_AVERAGE_RATIO else Resampling.bilinear
        try:
            data = ds.read(window=window, out_shape=(3, shape[0] * k, shape[1] * k), resampling=resampling)
            mask = ds.read_masks(1, window=window, out_shape=shape, resampling=Resampling.nearest)
        except rasterio.errors.RasterioError as exc:
            raise MapError(f"cannot read the orthophoto pyramid {self.path} (corrupt?): {exc}") from None
        if k == 2:
            data = (data.reshape(3, shape[0], 2, shape[1], 2).sum((2, 4), dtype=np.uint16) + 2) // 4
        valid[r0:r1, c0:c1] = mask > 0
        rgb[r0:r1, c0:c1] = np.moveaxis(data, 0, -1)
        rgb[~valid] = 0
        return rgb, valid


__all__ = [
    "PAD_CELLS",
    "PYRAMID_FILE",
    "Pyramid",
    "PyramidPlan",
    "add_pyramid",
    "plan_pyramid",
    "source_bytes_in",
    "write_pyramid",
]
