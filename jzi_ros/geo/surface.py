"""A map's surface model: the elevations a camera sees, and frames projected onto them.

A flat ground is exact only for a camera looking straight down at a plain;
a tilted camera over hills or buildings sees each point displaced by its
height times the tangent of its ray's angle from the vertical (10 m of relief
seen 30° off nadir move a point 6 m). With a surface model (a DSM, or a DTM
where the buildings do not matter) a frame is *orthorectified*: every cell of
a north-up grid takes the elevation under it and the colour of the pixel it
projects to (:func:`orthorectify`), as photogrammetry does; no occlusion test
is made (a cell hidden behind a building takes the building's colour, a
small share at the tilts registration accepts).

:class:`Surface` holds the model in a region's local frame (east, north [m],
elevations [m] in the model's own vertical datum), reads it at any point or
grid (bilinear), and casts rays onto it (:meth:`Surface.cast`). A map keeps
its surface model as ``surface.tif`` (:func:`write_surface`, written by
``jzi build-map --dsm``), a float32 GeoTIFF in the map's local frame.

Camera conventions: a camera is a rotation ``rotation`` (world from camera,
OpenCV's camera frame: x right, y down, z forward) and a centre [m, local
frame, elevation in the surface's datum]; :func:`camera_rt` gives OpenCV's
``rvec``/``tvec`` of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import rasterio
import rasterio.errors
from rasterio.transform import from_origin

from .errors import GeoError, MapError, RasterError
from .frame import LocalFrame
from .grid import BoundsM
from .heights import fill_gaps, heights_resolution_m, read_heights
from .lens import Lens
from .mapdir import SURFACE_FILE, MapDir

MAX_SURFACE_SIDE = 4096
"""Largest side [px] of a map's surface model (64 MB of float32): a larger region gets a coarser one."""
MIN_SURFACE_GSD_M = 0.25
"""Finest cell [m] a map's surface model is stored at."""


def camera_rt(rotation: np.ndarray, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's (rvec, tvec) of a camera: world-from-camera ``rotation`` (3x3) and ``centre`` (3,) [m]."""
    r_cw = np.asarray(rotation, np.float64).T
    rvec, _ = cv2.Rodrigues(r_cw)
    return rvec.ravel(), -r_cw @ np.asarray(centre, np.float64).ravel()


class Surface:
    """Elevations [m] on a north-up grid of a region's local frame: ``heights`` (H, W) over ``bounds`` [m].

    Pixel (r, c) has its centre at (west + (c + 0.5) gsd, north - (r + 0.5) gsd).
    Reads outside ``bounds`` are NaN.
    """

    def __init__(self, heights: np.ndarray, bounds: BoundsM, gsd_m: float) -> None:
        heights = np.ascontiguousarray(heights, np.float32)
        if heights.ndim != 2 or min(heights.shape) < 2 or not gsd_m > 0:
            raise GeoError(f"a surface model needs a 2-D grid of at least 2 x 2 and a cell size, not {heights.shape}")
        self.heights, self.bounds, self.gsd_m = heights, bounds, float(gsd_m)

    @classmethod
    def open(cls, path: str | Path) -> Surface:
        """A surface model written by :func:`write_surface`.

        Raises:
            MapError: the file is missing or is not a surface model.
        """
        try:
            with rasterio.open(path) as ds:
                t = ds.transform
                if ds.count != 1 or t.b != 0 or t.d != 0 or abs(t.a + t.e) > 1e-9 * t.a:
                    raise MapError(f"{path} is not a surface model (one band on a north-up square grid)")
                heights = ds.read(1).astype(np.float32)
                if ds.nodata is not None:
                    heights[heights == ds.nodata] = np.nan
                return cls(heights, BoundsM(*ds.bounds), float(t.a))
        except rasterio.errors.RasterioError as exc:
            raise MapError(f"cannot read the surface model {path} ({exc}); rebuild the map with --dsm") from None

    def _pixels(self, east, north) -> tuple[np.ndarray, np.ndarray]:
        col = (np.asarray(east, np.float64) - self.bounds.west_m) / self.gsd_m - 0.5
        row = (self.bounds.north_m - np.asarray(north, np.float64)) / self.gsd_m - 0.5
        return col, row

    def at(self, east, north) -> np.ndarray:
        """Elevations [m] at points [m] (any shape), bilinear; NaN outside the model."""
        col, row = self._pixels(east, north)
        shape = col.shape
        col, row = col.ravel(), row.ravel()
        h, w = self.heights.shape
        inside = (col >= 0) & (col <= w - 1) & (row >= 0) & (row <= h - 1)
        c0 = np.clip(np.floor(col), 0, w - 2).astype(int)
        r0 = np.clip(np.floor(row), 0, h - 2).astype(int)
        fc, fr = np.clip(col - c0, 0, 1), np.clip(row - r0, 0, 1)
        z = self.heights
        out = (
            z[r0, c0] * (1 - fc) * (1 - fr)
            + z[r0, c0 + 1] * fc * (1 - fr)
            + z[r0 + 1, c0] * (1 - fc) * fr
            + z[r0 + 1, c0 + 1] * fc * fr
        )
        return np.where(inside, out, np.nan).reshape(shape)

    def read(self, bounds: BoundsM, gsd_m: float) -> np.ndarray:
        """Elevations [m] of ``bounds`` at ``gsd_m`` [m/px], laid out as the map's orthophoto crops (NaN outside)."""
        width = max(1, round((bounds.east_m - bounds.west_m) / gsd_m))
        height = max(1, round((bounds.north_m - bounds.south_m) / gsd_m))
        east = bounds.west_m + (np.arange(width) + 0.5) * gsd_m
        north = bounds.north_m - (np.arange(height) + 0.5) * gsd_m
        col, row = self._pixels(east, north)
        map_x = np.broadcast_to(col[None, :], (height, width)).astype(np.float32)
        map_y = np.broadcast_to(row[:, None], (height, width)).astype(np.float32)
        return cv2.remap(
            self.heights, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan
        )

    def cast(self, centre: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """Where rays from ``centre`` (3,) [m] along ``directions`` (N, 3) (world) first meet the surface: (N, 3).

        Marched in steps of half a cell across the heights the model holds,
        then bisected to a millimetre; NaN for a ray that misses (upwards,
        or leaving the model before it meets the surface).
        """
        c = np.asarray(centre, np.float64).ravel()
        d = np.asarray(directions, np.float64).reshape(-1, 3)
        d = d / np.linalg.norm(d, axis=1, keepdims=True)
        out = np.full((len(d), 3), np.nan)
        low, high = float(np.nanmin(self.heights)), float(np.nanmax(self.heights))
        down = d[:, 2] < -1e-9
        if c[2] <= low or not down.any():
            return out
        t_top = np.where(down, np.maximum(0.0, (c[2] - high) / np.maximum(-d[:, 2], 1e-12)), np.inf)
        t_end = np.where(down, (c[2] - low) / np.maximum(-d[:, 2], 1e-12), -np.inf)
        step = self.gsd_m / 2
        t_prev = t_top.copy()
        active = down & (t_end >= t_top)
        hit_lo, hit_hi = np.full(len(d), np.nan), np.full(len(d), np.nan)
        above = lambda t, idx: c[2] + t * d[idx, 2] - self.at(c[0] + t * d[idx, 0], c[1] + t * d[idx, 1])  # noqa: E731
        while active.any():
            idx = np.flatnonzero(active)
            t = np.minimum(t_prev[idx] + step, t_end[idx])
            gap = above(t, idx)
            crossed = gap <= 0
            lost = ~np.isfinite(gap)
            hit_lo[idx[crossed]], hit_hi[idx[crossed]] = t_prev[idx[crossed]], t[crossed]
            done = crossed | lost | (t >= t_end[idx])
            t_prev[idx] = t
            active[idx[done]] = False
        found = np.flatnonzero(np.isfinite(hit_lo))
        lo, hi = hit_lo[found], hit_hi[found]
        while found.size and (hi - lo).max() > 1e-3:
            mid = (lo + hi) / 2
            below = above(mid, found) <= 0
            hi, lo = np.where(below, mid, hi), np.where(below, lo, mid)
        out[found] = c + hi[:, None] * d[found]
        return out


def write_surface(
    source: str | Path, frame: LocalFrame, bounds: BoundsM, path: str | Path, gsd_m: float | None = None
) -> dict:
    """Warp an elevation model (GeoTIFF, metres, any CRS) onto ``bounds`` of ``frame`` and write it to ``path``.

    ``gsd_m`` defaults to the model's own resolution, no finer than
    :data:`MIN_SURFACE_GSD_M` and coarse enough for :data:`MAX_SURFACE_SIDE`.
    Gaps are filled from around them. Returns the record kept in map.yaml.

    Raises:
        RasterError: the model cannot be read, or holds no data over ``bounds``.
    """
    native = heights_resolution_m(source)
    side = max(bounds.east_m - bounds.west_m, bounds.north_m - bounds.south_m)
    gsd = float(gsd_m or max(native, MIN_SURFACE_GSD_M, side / MAX_SURFACE_SIDE))
    heights = read_heights(source, frame, bounds, gsd)
    covered = float(np.isfinite(heights).mean())
    if covered < 0.5:
        raise RasterError(
            f"the elevation model {source} covers only {100 * covered:.0f} % of the map's area; "
            f"give one that covers the region"
        )
    heights = fill_gaps(heights)
    h, w = heights.shape
    profile = dict(
        driver="GTiff",
        width=w,
        height=h,
        count=1,
        dtype="float32",
        crs=frame.proj4,
        transform=from_origin(bounds.west_m, bounds.north_m, gsd, gsd),
        compress="deflate",
        predictor=3,
        tiled=True,
        blockxsize=256,
        blockysize=256,
    )
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(heights, 1)
        ds.update_tags(JZI_LAT0=repr(frame.lat0), JZI_LON0=repr(frame.lon0))
    return {
        "file": Path(path).name,
        "source": str(Path(source).resolve()),
        "gsd_m": round(gsd, 4),
        "min_m": round(float(heights.min()), 2),
        "max_m": round(float(heights.max()), 2),
        "covered": round(covered, 4),
    }


@dataclass(frozen=True)
class Orthophoto:
    """A frame projected onto a surface: ``image`` and ``valid`` on ``bounds`` [m] at ``gsd_m`` [m/px].

    ``frame_px`` (H, W, 2) float32: the pixel of the frame (col, row) each cell took its colour from.
    """

    image: np.ndarray
    valid: np.ndarray
    bounds: BoundsM
    gsd_m: float
    frame_px: np.ndarray


def orthorectify(
    image: np.ndarray,
    lens: Lens,
    rotation: np.ndarray,
    centre: np.ndarray,
    surface: Surface,
    bounds: BoundsM,
    gsd_m: float,
) -> Orthophoto:
    """The frame ``image`` (the lens's size) seen from ``centre`` at ``rotation``, laid on ``surface`` north up.

    Each cell of ``bounds`` at ``gsd_m`` takes the elevation under it and the
    colour of the frame's pixel it projects to (bilinear; the frame is
    averaged down first where its pixels are much finer than the cells, so
    that nothing aliases). Cells behind the camera, outside the frame or off
    the surface model are not valid.
    """
    if image.shape[:2] != (lens.height_px, lens.width_px):
        raise GeoError(f"a {image.shape[1]}x{image.shape[0]} frame for a {lens.width_px}x{lens.height_px} lens")
    z = surface.read(bounds, gsd_m)
    height, width = z.shape
    east = bounds.west_m + (np.arange(width) + 0.5) * gsd_m
    north = bounds.north_m - (np.arange(height) + 0.5) * gsd_m
    pts = np.stack(np.broadcast_arrays(east[None, :], north[:, None], z), axis=-1).reshape(-1, 3)
    finite = np.isfinite(pts[:, 2])
    rvec, tvec = camera_rt(rotation, centre)
    cam = (pts - np.asarray(centre, np.float64)) @ np.asarray(rotation, np.float64)
    depth = cam[:, 2]
    x0, x1, y0, y1 = lens.field
    with np.errstate(invalid="ignore", divide="ignore"):
        xn, yn = cam[:, 0] / depth, cam[:, 1] / depth
    # in front, and inside the lens's field (a polynomial lens folds back beyond it)
    front = finite & (depth > 1e-3) & (xn >= x0) & (xn <= x1) & (yn >= y0) & (yn <= y1)
    px = np.full((len(pts), 2), -1e6)
    if front.any():
        px[front] = lens.project(pts[front], rvec, tvec)
    frame_px = px.reshape(height, width, 2).astype(np.float32)
    w, h = lens.width_px, lens.height_px
    valid = front.reshape(height, width) & (frame_px[..., 0] >= -0.5) & (frame_px[..., 0] <= w - 0.5)
    valid &= (frame_px[..., 1] >= -0.5) & (frame_px[..., 1] <= h - 0.5)
    # average the frame down where one cell covers several of its pixels
    frame_gsd = float(np.median(depth[front])) / lens.k[0] if front.any() else gsd_m
    shrink = min(1.0, 2 * frame_gsd / gsd_m)
    src, maps = image, frame_px
    if shrink < 0.75:
        src = cv2.resize(image, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
        maps = (frame_px + 0.5) * shrink - 0.5
    out = cv2.remap(src, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out[~valid] = 0
    return Orthophoto(out, valid, bounds, float(gsd_m), frame_px)


def add_surface(mapdir: MapDir, dsm: str | Path, overwrite: bool = False) -> dict:
    """Add a surface model to a built map (over its pyramid's extent) and record it in map.yaml.

    Raises:
        MapError: the map has one already (and not ``overwrite``), or no pyramid to lay it under.
        RasterError: the model cannot be read or does not cover the map.
    """
    if mapdir.has_surface and not overwrite:
        raise MapError(f"map {mapdir.path} already has a surface model; pass --overwrite to replace it")
    with mapdir.pyramid() as pyramid:
        bounds = pyramid.bounds
    tmp = mapdir.path / f"{SURFACE_FILE}.partial"
    try:
        record = write_surface(dsm, mapdir.grid.frame, bounds, tmp)
        tmp.replace(mapdir.path / SURFACE_FILE)
    finally:
        tmp.unlink(missing_ok=True)
    record["file"] = SURFACE_FILE
    mapdir.record_pyramid(record, key="surface")
    return record
