"""Reading GeoTIFFs and rendering overhead views of cells (rasterio/GDAL).

A :class:`RasterMosaic` holds any number of georeferenced rasters in any CRS
and resolution. :meth:`RasterMosaic.render` warps them into a square of a
region's local frame: where rasters overlap, the finest one wins; nodata
values, alpha bands and internal masks mark pixels as not covered.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.errors
from rasterio.enums import ColorInterp, Resampling
from rasterio.transform import from_bounds
from rasterio.vrt import WarpedVRT
from rasterio.warp import reproject, transform_bounds

from .errors import RasterError
from .frame import LocalFrame
from .grid import BoundsM, LatLonBounds

DOWNSAMPLE_AVERAGE_RATIO = 1.5
"""A view pixel this many source pixels wide (or more) is the average of the
source pixels under it; finer views are interpolated bilinearly."""

COARSE_MASK_PX = 1024
"""Longest side [px] of the coarse coverage masks used to plan a map."""


@dataclass(frozen=True)
class RasterInfo:
    """What a map records about one source raster."""

    path: str
    crs: str
    width: int
    height: int
    dtype: str
    rgb_bands: tuple[int, int, int]
    alpha_band: int | None
    resolution_m: float
    """Ground sample distance [m/px] at the raster's centre."""
    bounds_latlon: LatLonBounds
    stretch: tuple[float, float] | None
    """(low, high) source values mapped to 0 and 255; None for uint8."""
    size_bytes: int

    def to_dict(self) -> dict:
        """The record as plain YAML types (lists, resolution and bounds rounded), as a map stores it."""
        return {
            "path": self.path,
            "crs": self.crs,
            "width": self.width,
            "height": self.height,
            "dtype": self.dtype,
            "rgb_bands": list(self.rgb_bands),
            "alpha_band": self.alpha_band,
            "resolution_m": round(self.resolution_m, 6),
            "bounds_latlon": [round(v, 9) for v in self.bounds_latlon],
            "stretch": None if self.stretch is None else [float(v) for v in self.stretch],
            "size_bytes": self.size_bytes,
        }


def _crs_name(crs) -> str:
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def _pick_bands(ds, path: str) -> tuple[tuple[int, int, int], int | None]:
    interp = list(ds.colorinterp)
    if ColorInterp.palette in interp:
        raise RasterError(
            f"{path} is a paletted raster; expand it to RGB first (gdal_translate -expand rgb {path} rgb.tif)"
        )
    alpha = interp.index(ColorInterp.alpha) + 1 if ColorInterp.alpha in interp else None
    if all(c in interp for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue)):
        red, green, blue = (interp.index(c) + 1 for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue))
    else:
        colour = [i + 1 for i in range(ds.count) if i + 1 != alpha]
        red, green, blue = colour[:3] if len(colour) >= 3 else [colour[0]] * 3
    return (red, green, blue), alpha


def _resolution_m(ds) -> float:
    """Ground sample distance [m/px] at the raster centre.

    Measured through a local frame there so that geographic and projected CRSs agree.
    """
    cols = np.array([ds.width / 2, ds.width / 2 + 1, ds.width / 2])
    rows = np.array([ds.height / 2, ds.height / 2, ds.height / 2 + 1])
    xs, ys = rasterio.transform.xy(ds.transform, rows, cols, offset="ul")
    lon, lat = rasterio.warp.transform(ds.crs, "EPSG:4326", xs, ys)
    frame = LocalFrame(float(lat[0]), float(lon[0]))
    east, north = frame.to_local(lat, lon)
    dx = math.hypot(east[1] - east[0], north[1] - north[0])
    dy = math.hypot(east[2] - east[0], north[2] - north[0])
    return math.sqrt(dx * dy)


def _stretch(ds, bands: tuple[int, int, int]) -> tuple[float, float] | None:
    """Percentile stretch (0.5 %, 99.5 %) for rasters that are not 8-bit."""
    if ds.dtypes[bands[0] - 1] == "uint8":
        return None
    scale = max(1.0, max(ds.width, ds.height) / COARSE_MASK_PX)
    shape = (len(bands), max(1, int(ds.height / scale)), max(1, int(ds.width / scale)))
    data = ds.read(list(bands), out_shape=shape, masked=True).astype("float64")
    values = data.compressed()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise RasterError(f"{ds.name} has no valid pixels")
    low, high = np.percentile(values, [0.5, 99.5])
    return float(low), float(max(high, low + 1e-6))


def read_info(path: str | Path) -> RasterInfo:
    """Open a raster and check it can serve a map; raise :class:`RasterError` if not."""
    path = Path(path)
    if not path.exists():
        raise RasterError(f"no such file: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)  # the errors below say it
            opened = rasterio.open(path)
        with opened as ds:
            if ds.crs is None:
                hint = " (it has GCPs: warp it first with gdalwarp)" if ds.gcps[0] else ""
                raise RasterError(
                    f"{path} has no CRS{hint}; georeference it "
                    f"(gdal_edit.py -a_srs EPSG:XXXX -a_ullr ...) or use a GeoTIFF with a CRS"
                )
            if ds.transform.is_identity:
                raise RasterError(f"{path} has a CRS but no geotransform; it cannot be placed on the map")
            rgb, alpha = _pick_bands(ds, str(path))
            west, south, east, north = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
            return RasterInfo(
                path=str(path.resolve()),
                crs=_crs_name(ds.crs),
                width=ds.width,
                height=ds.height,
                dtype=ds.dtypes[rgb[0] - 1],
                rgb_bands=rgb,
                alpha_band=alpha,
                resolution_m=_resolution_m(ds),
                bounds_latlon=LatLonBounds(west, south, east, north),
                stretch=_stretch(ds, rgb),
                size_bytes=path.stat().st_size,
            )
    except rasterio.errors.RasterioError as exc:
        raise RasterError(f"cannot read {path} as a raster: {exc}") from None


class RasterMosaic:
    """Open rasters, finest first, that render views in a local frame.

    Use as a context manager (or call :meth:`close`); datasets stay open
    between renders so that thousands of views cost one open each.
    """

    def __init__(self, paths: list[str | Path]) -> None:
        if not paths:
            raise RasterError("no raster given")
        infos = [read_info(p) for p in paths]
        order = sorted(range(len(infos)), key=lambda i: infos[i].resolution_m)
        self.infos: list[RasterInfo] = [infos[i] for i in order]
        self._datasets = []
        self._footprints: dict[LocalFrame, list[BoundsM]] = {}
        self._coarse_masks: dict[int, tuple[np.ndarray, object]] = {}
        try:
            for info in self.infos:
                self._datasets.append(rasterio.open(info.path))
        except rasterio.errors.RasterioError as exc:
            self.close()
            raise RasterError(f"cannot open raster: {exc}") from None

    def __enter__(self) -> RasterMosaic:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the open datasets; the mosaic renders nothing after."""
        for ds in self._datasets:
            ds.close()
        self._datasets = []

    @property
    def bounds_latlon(self) -> LatLonBounds:
        """Lon/lat box [deg] around all rasters."""
        b = np.array([i.bounds_latlon for i in self.infos])
        return LatLonBounds(b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max())

    def footprints_m(self, frame: LocalFrame) -> list[BoundsM]:
        """Box [m] around each raster in ``frame`` (same order as ``infos``)."""
        if frame not in self._footprints:
            boxes = []
            for ds in self._datasets:
                b = transform_bounds(ds.crs, frame.proj4, *ds.bounds, densify_pts=21)
                boxes.append(BoundsM(*b))
            self._footprints[frame] = boxes
        return self._footprints[frame]

    def render(
        self, frame: LocalFrame, bounds: BoundsM, width_px: int, height_px: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Warp the rasters into ``bounds`` [m] of ``frame``.

        Returns ``(rgb, valid)``: an (H, W, 3) uint8 image and an (H, W) bool
        mask of the pixels some raster covers.
        """
        rgb, valid = self._warp(frame, bounds, width_px, height_px, colour=True)
        assert rgb is not None  # asked for colour
        return rgb, valid

    def coverage(self, frame: LocalFrame, bounds: BoundsM, width_px: int, height_px: int | None = None) -> np.ndarray:
        """The (H, W) bool mask of the pixels of ``bounds`` [m] some raster covers (cheap: no colour)."""
        return self._warp(frame, bounds, width_px, height_px, colour=False)[1]

    def _warp(
        self, frame: LocalFrame, bounds: BoundsM, width_px: int, height_px: int | None, colour: bool
    ) -> tuple[np.ndarray | None, np.ndarray]:
        height_px = width_px if height_px is None else height_px
        transform = from_bounds(*bounds, width_px, height_px)
        pixel_m = (bounds.east_m - bounds.west_m) / width_px
        rgb = np.zeros((height_px, width_px, 3), np.uint8) if colour else None
        valid = np.zeros((height_px, width_px), bool)
        for ds, info, box in zip(self._datasets, self.infos, self.footprints_m(frame), strict=True):
            if (
                box.east_m <= bounds.west_m
                or box.west_m >= bounds.east_m
                or box.north_m <= bounds.south_m
                or box.south_m >= bounds.north_m
            ):
                continue
            if rgb is None:  # coverage only
                mask, src_transform = self._coarse_mask(ds, info)
                out = np.zeros((height_px, width_px), np.uint8)
                reproject(
                    mask,
                    out,
                    src_transform=src_transform,
                    src_crs=ds.crs,
                    dst_transform=transform,
                    dst_crs=frame.proj4,
                    resampling=Resampling.nearest,
                    src_nodata=0,
                    dst_nodata=0,
                )
                valid |= out > 0
                continue
            resampling = (
                Resampling.average if pixel_m >= DOWNSAMPLE_AVERAGE_RATIO * info.resolution_m else Resampling.bilinear
            )
            try:
                with WarpedVRT(
                    ds,
                    crs=frame.proj4,
                    transform=transform,
                    width=width_px,
                    height=height_px,
                    resampling=resampling,
                    add_alpha=info.alpha_band is None,
                ) as vrt:
                    mask = vrt.dataset_mask() > 0
                    new = mask & ~valid
                    if not new.any():
                        continue
                    data = vrt.read(list(info.rgb_bands), out_dtype="float32" if info.stretch else None)
            except rasterio.errors.RasterioError as exc:
                raise RasterError(f"cannot read pixels of {info.path} (corrupt file?): {exc}") from None
            data = np.moveaxis(data, 0, -1)
            if info.stretch is not None:
                low, high = info.stretch
                data = np.clip((data - low) * (255.0 / (high - low)), 0, 255).round().astype(np.uint8)
            rgb[new] = data[new]
            valid |= new
            if valid.all():
                break
        return rgb, valid

    def _coarse_mask(self, ds, info: RasterInfo) -> tuple[np.ndarray, object]:
        """A raster's validity mask read at <= COARSE_MASK_PX, with its transform."""
        key = id(ds)
        if key not in self._coarse_masks:
            scale = max(1.0, max(ds.width, ds.height) / COARSE_MASK_PX)
            h, w = max(1, round(ds.height / scale)), max(1, round(ds.width / scale))
            try:
                mask = ds.dataset_mask(out_shape=(h, w))
            except rasterio.errors.RasterioError as exc:
                raise RasterError(f"cannot read the mask of {info.path} (corrupt file?): {exc}") from None
            self._coarse_masks[key] = (mask, ds.transform @ ds.transform.scale(ds.width / w, ds.height / h))
        return self._coarse_masks[key]
