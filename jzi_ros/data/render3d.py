"""Rendering a 3D world from any viewpoint: pinhole frames and 360° panoramas.

A :class:`World3D` is an orthophoto (:class:`~jzi_ros.geo.ortho.LocalOrtho`)
draped over a surface model: a triangle mesh with one vertex per cell of the
heights grid (a 2.5D heightfield: roofs, crowns and terrain, the walls
between them steep triangles one cell wide). Rays are cast with Intel
Embree (the ``embreex`` binding): on this class of CPU it traced a
640 x 480 frame over a 2 M-triangle city in 50 ms on one core, as fast per
core as Open3D's ``RaycastingScene`` (30 ms on two threads) without
Open3D's 300 MB and its system libraries (``jzi bench --render`` measures).

What a ray hits is coloured as follows:

- a surface facing up (ground, roofs, crowns): the orthophoto at that
  point, from the pyramid level whose pixels match the ray's footprint (no
  aliasing far away);
- a wall of a known building (:class:`Facades`, from a buildings GeoJSON):
  its facade, drawn from the hit's height above the building's base and
  its position along the wall: storeys of windows, a ground floor with a
  shop front or doors, lit by the sun by the wall's orientation;
- any other steep surface (a crown's side, a real DSM's walls): the
  orthophoto just inside it, darkened;
- nothing: the sky, lighter towards the horizon; everything fades into the
  horizon's haze with distance.

A world without a surface model is flat (heights 0): frames then look as
the flat renderer (:func:`jzi_ros.data.camera.render_frame`) draws them,
with perspective but no relief.

Coordinates: the world's local frame, east/north/up [m]. A camera's
:class:`~jzi_ros.geo.camera.CameraPose` altitude is its height above the
terrain under it (:meth:`World3D.ground_m`), its angles as in
:mod:`jzi_ros.geo.camera` (pitch 90: looking horizontally towards the image
top's heading). A panorama is equirectangular: its centre column looks
along ``yaw_deg``, headings grow to the right (clockwise from above), its
top row looks up and its bottom row down (:func:`panorama_heading_deg`).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from embreex import rtcore_scene
from embreex.mesh_construction import TriangleMesh

from ..geo import BoundsM, LocalFrame
from ..geo.camera import CameraPose
from ..geo.heights import fill_gaps, ground_from_surface, heights_resolution_m, read_heights
from ..geo.ortho import LocalOrtho
from ..geo.surface import Surface
from .errors import DataError

log = logging.getLogger(__name__)

ANTIALIAS_MAX_PX = 320 * 240
"""Frames up to this many pixels are rendered with four rays per pixel."""
MAX_MESH_SIDE = 1024
"""Most vertices along a side of the mesh; a finer heights grid is sampled down to this."""
STEEP_NZ = 0.45
"""A surface whose normal's up component is below this is a wall, not a top."""
HAZE_M = 2500.0
"""Distance [m] over which a colour fades to ``1/e`` of itself towards the horizon's haze."""
SKY_ZENITH = np.array((92, 140, 205), np.float32)
SKY_HORIZON = np.array((205, 218, 230), np.float32)
GLASS = np.array((62, 76, 92), np.float32)
DOOR = np.array((92, 64, 44), np.float32)
STOREY_M = 3.0
DEFAULT_SUN = (200.0, 40.0)
"""(azimuth [deg], elevation [deg]) of the sun that lights walls when none is known."""


@dataclass(frozen=True)
class Facades:
    """Buildings whose walls are drawn as facades.

    ``ids`` (H, W) int32 on the world's heights grid: the index of the
    building under each cell, -1 for none; per building its ``base_m``
    elevation [m], wall ``wall_rgb`` (N, 3), shop front ``shop_rgb`` (N, 3;
    NaN: none), ``window_spacing_m`` (N,). ``sun``: (azimuth, elevation) [deg].
    """

    ids: np.ndarray
    base_m: np.ndarray
    wall_rgb: np.ndarray
    shop_rgb: np.ndarray
    window_spacing_m: np.ndarray
    sun: tuple[float, float]

    @classmethod
    def from_geojson(cls, path: str | Path, frame: LocalFrame, bounds: BoundsM, gsd_m: float) -> Facades:
        """Buildings of a GeoJSON (:func:`jzi_ros.data.scene.write_scene`'s ``NAME_buildings.geojson``) on a grid.

        Each feature is a Polygon or MultiPolygon (lon, lat) with, optionally,
        ``base_m`` (the ground's elevation under it [m]; default the lowest
        terrain under its footprint), ``wall_rgb``, ``shop_rgb`` and
        ``window_spacing_m``; other geometries are skipped. A top-level
        ``sun`` {azimuth_deg, elevation_deg} lights the walls.
        """
        try:
            doc = json.loads(Path(path).read_text())
            features = doc["features"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"cannot read the buildings of {path}: {e}") from None
        width = max(1, round((bounds.east_m - bounds.west_m) / gsd_m))
        height = max(1, round((bounds.north_m - bounds.south_m) / gsd_m))
        ids = np.full((height, width), -1, np.int32)
        base: list[float] = []
        wall, shop, spacing = [], [], []
        for feature in features:
            props = (feature.get("properties") if isinstance(feature, dict) else None) or {}
            rings = _outer_rings(feature.get("geometry") if isinstance(feature, dict) else None)
            if not rings:
                continue  # not a (Multi)Polygon: nothing to draw
            k = len(base)
            for ring in rings:
                east, north = frame.to_local(ring[:, 1], ring[:, 0])
                cols = (np.asarray(east) - bounds.west_m) / gsd_m - 0.5
                rows = (bounds.north_m - np.asarray(north)) / gsd_m - 0.5
                pts = np.round(np.stack([cols, rows], 1) * 8).astype(np.int32)  # 3 fractional bits
                cv2.fillPoly(ids, [pts], k, shift=3)
            base.append(float(props["base_m"]) if props.get("base_m") is not None else math.nan)
            wall.append(props.get("wall_rgb") or (200, 195, 185))
            shop.append(props.get("shop_rgb") or (math.nan,) * 3)
            spacing.append(float(props.get("window_spacing_m", 3.0)))
        sun = doc.get("sun") or {}
        return cls(
            ids,
            np.array(base, np.float32),
            np.array(wall, np.float32).reshape(-1, 3),
            np.array(shop, np.float32).reshape(-1, 3),
            np.array(spacing, np.float32),
            (float(sun.get("azimuth_deg", DEFAULT_SUN[0])), float(sun.get("elevation_deg", DEFAULT_SUN[1]))),
        )


def _outer_rings(geometry: Any) -> list[np.ndarray]:
    """The outer rings (K, 2) (lon, lat) of a GeoJSON Polygon or MultiPolygon; [] for anything else."""
    if not isinstance(geometry, dict):
        return []
    kind, coordinates = geometry.get("type"), geometry.get("coordinates")
    polygons: Any = [coordinates] if kind == "Polygon" else coordinates if kind == "MultiPolygon" else None
    rings = []
    for polygon in polygons or []:
        try:
            ring = np.asarray(polygon[0], np.float64)[:, :2]
        except (TypeError, IndexError, ValueError):
            raise DataError(f"a building's {geometry.get('type')} has no ring of (lon, lat) points") from None
        if len(ring) >= 3:
            rings.append(ring)
    return rings


def _direction(azimuth_deg, elevation_deg) -> np.ndarray:
    """Unit vectors (..., 3) east/north/up of headings [deg, clockwise from north] and elevations [deg]."""
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    return np.stack([np.sin(az) * np.cos(el), np.cos(az) * np.cos(el), np.sin(el)], -1)


def _sample(image: np.ndarray, col: np.ndarray, row: np.ndarray, width: int = 4096) -> np.ndarray:
    """Bilinear colours (N, 3) float32 of ``image`` at fractional pixels (col, row) (N,), edges repeated."""
    n = len(col)
    rows = max(1, -(-n // width))
    maps = np.zeros((2, rows * width), np.float32)
    maps[0, :n], maps[1, :n] = col, row
    sampled = cv2.remap(
        image,
        maps[0].reshape(rows, width),
        maps[1].reshape(rows, width),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return sampled.reshape(-1, 3)[:n].astype(np.float32)


def _rotate(vectors: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``vectors`` (N, 3) times ``matrix.T`` (M, 3): element-wise, without BLAS.

    BLAS spreads even this small product over every core and spins there,
    which halves the throughput of renderers running side by side.
    """
    return sum(vectors[:, k : k + 1] * matrix[:, k] for k in range(3))


_RAYS: dict[tuple, np.ndarray] = {}


def _camera_rays(camera_k: np.ndarray, size_px: tuple[int, int], distortion) -> np.ndarray:
    """Unit viewing directions (W*H, 3) float32 of a camera's pixels in its own frame (x right, y down, z ahead).

    Row-major over the image; pixel centres at integers. The last few cameras are kept.
    """
    coeffs = None if distortion is None or not np.any(np.asarray(distortion)) else np.asarray(distortion, np.float64)
    key = (camera_k.tobytes(), size_px, None if coeffs is None else coeffs.tobytes())
    if key not in _RAYS:
        w, h = size_px
        u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        pixels = np.stack([u.ravel(), v.ravel()], 1)
        if coeffs is not None:
            xy = cv2.undistortPoints(pixels[:, None], camera_k, coeffs).reshape(-1, 2)
        else:
            xy = (pixels - camera_k[:2, 2]) / np.diag(camera_k)[:2]
        rays = np.concatenate([xy, np.ones((len(xy), 1))], 1)
        if len(_RAYS) >= 8:
            _RAYS.pop(next(iter(_RAYS)))
        _RAYS[key] = (rays / np.linalg.norm(rays, axis=1, keepdims=True)).astype(np.float32)
    return _RAYS[key]


def panorama_heading_deg(column, width_px: int, yaw_deg: float = 0.0):
    """Heading [deg, clockwise from north, 0-360] that a panorama's column (pixel centres at integers) looks along."""
    return (yaw_deg + (np.asarray(column, np.float64) + 0.5) / width_px * 360.0 - 180.0) % 360.0


def panorama_column(heading_deg, width_px: int, yaw_deg: float = 0.0):
    """The (fractional) column of a panorama looking along ``heading_deg``: :func:`panorama_heading_deg` inverted."""
    return ((np.asarray(heading_deg, np.float64) - yaw_deg + 180.0) % 360.0) / 360.0 * width_px - 0.5


class World3D:
    """An orthophoto over a surface model, ready to be rendered from any viewpoint (see the module docstring).

    Args:
        ortho: the colours, in the world's local frame.
        surface_m: (H, W) elevations [m] over ``ortho.bounds`` at ``heights_gsd_m``,
            NaN-free; None for a flat world.
        ground_m: the terrain under it (same grid); None: estimated from the surface.
        heights_gsd_m: the heights grid's cell size [m].
        facades: buildings drawn as facades, on the heights grid.
    """

    def __init__(
        self,
        ortho: LocalOrtho,
        surface_m: np.ndarray | None = None,
        ground_m: np.ndarray | None = None,
        heights_gsd_m: float | None = None,
        facades: Facades | None = None,
    ) -> None:
        self.ortho = ortho
        self.relief = surface_m is not None
        b = ortho.bounds
        if surface_m is None:
            gsd = max(b.east_m - b.west_m, b.north_m - b.south_m) / 8
            shape = (max(2, round((b.north_m - b.south_m) / gsd)), max(2, round((b.east_m - b.west_m) / gsd)))
            surface_m = np.zeros(shape, np.float32)
            heights_gsd_m = (b.east_m - b.west_m) / shape[1]
        if heights_gsd_m is None:
            raise DataError("a surface model needs the size of its cells (heights_gsd_m)")
        self.gsd_m = float(heights_gsd_m)
        self.surface_m = surface_m.astype(np.float32)
        if ground_m is None:
            ground_m = ground_from_surface(self.surface_m, self.gsd_m) if self.relief else self.surface_m
        self.ground = ground_m.astype(np.float32)
        if facades is not None and np.isnan(facades.base_m).any():  # a building of unknown base: on the ground
            lowest = np.full(len(facades.base_m), np.inf, np.float32)
            inside = facades.ids >= 0
            np.minimum.at(lowest, facades.ids[inside], self.ground[inside])
            known = np.where(np.isfinite(lowest), lowest, 0.0).astype(np.float32)
            facades = replace(facades, base_m=np.where(np.isnan(facades.base_m), known, facades.base_m))
        self.facades = facades
        self.sun = _direction(*(facades.sun if facades else DEFAULT_SUN))
        # one vertex per cell centre, and a ring on the bounds so that the ground reaches the edges
        rows, cols = self.surface_m.shape
        north = np.concatenate([[b.north_m], b.north_m - (np.arange(rows) + 0.5) * self.gsd_m, [b.south_m]])
        east = np.concatenate([[b.west_m], b.west_m + (np.arange(cols) + 0.5) * self.gsd_m, [b.east_m]])
        ee, nn = np.meshgrid(east, north)
        heights = np.pad(self.surface_m, 1, mode="edge")
        vertices = np.stack([ee.ravel(), nn.ravel(), heights.ravel()], 1).astype(np.float32)
        rows, cols = rows + 2, cols + 2
        idx = np.arange(rows * cols).reshape(rows, cols)
        a, b_, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
        faces = np.concatenate([np.stack([a, c, b_], 1), np.stack([b_, c, d], 1)]).astype(np.int32)
        normals = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        normals[normals[:, 2] < 0] *= -1  # every face of a heightfield faces up or sideways
        self._normals = normals.astype(np.float32)
        self._scene = rtcore_scene.EmbreeScene()
        self._mesh = TriangleMesh(self._scene, vertices, faces)

    @classmethod
    def from_rasters(
        cls,
        rasters: list[str | Path],
        frame: LocalFrame,
        bounds: BoundsM,
        gsd_m: float,
        dsm: str | Path | None = None,
        dtm: str | Path | None = None,
        buildings: str | Path | None = None,
    ) -> World3D:
        """The world of ``rasters`` (colour, at ``gsd_m`` [m/px]) over ``bounds`` [m] of ``frame``; see :meth:`over`."""
        return cls.over(LocalOrtho.render(list(rasters), frame, bounds, gsd_m), dsm, dtm, buildings)

    @classmethod
    def over(
        cls,
        ortho: LocalOrtho,
        dsm: str | Path | Surface | None = None,
        dtm: str | Path | None = None,
        buildings: str | Path | None = None,
    ) -> World3D:
        """The world of an orthophoto over the surface model ``dsm`` (a GeoTIFF in any CRS, or a map's ``Surface``).

        Without a DSM the world is flat, and a line in the log says so;
        ``dtm``: its terrain model (default: estimated from the DSM);
        ``buildings``: a GeoJSON whose walls are drawn as facades.
        """
        if dsm is None:
            log.info("no surface model given: the world is flat (relief is absent)")
            return cls(ortho)
        b = ortho.bounds
        side = max(b.east_m - b.west_m, b.north_m - b.south_m)
        native = dsm.gsd_m if isinstance(dsm, Surface) else heights_resolution_m(dsm)
        step = max(native, side / MAX_MESH_SIDE, ortho.gsd_m)
        heights = dsm.read(b, step) if isinstance(dsm, Surface) else read_heights(dsm, ortho.frame, b, step)
        surface = fill_gaps(heights)
        ground = None if dtm is None else fill_gaps(read_heights(dtm, ortho.frame, b, step))
        facades = None if buildings is None else Facades.from_geojson(buildings, ortho.frame, b, step)
        return cls(ortho, surface, ground, step, facades)

    # --- geometry -------------------------------------------------------------------------------

    def _cell(self, east_m, north_m) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) of the heights grid's cells holding local points [m], clipped to the grid."""
        b = self.ortho.bounds
        rows = np.clip(((b.north_m - np.asarray(north_m)) / self.gsd_m).astype(int), 0, self.surface_m.shape[0] - 1)
        cols = np.clip(((np.asarray(east_m) - b.west_m) / self.gsd_m).astype(int), 0, self.surface_m.shape[1] - 1)
        return rows, cols

    def ground_m(self, east_m, north_m):
        """Terrain elevation [m] at local points [m] (nearest cell)."""
        rows, cols = self._cell(east_m, north_m)
        return self.ground[rows, cols]

    def surface_at(self, east_m, north_m):
        """Surface elevation [m] (roofs, crowns) at local points [m] (nearest cell)."""
        rows, cols = self._cell(east_m, north_m)
        return self.surface_m[rows, cols]

    def camera_centre(self, pose: CameraPose) -> np.ndarray:
        """(east, north, up) [m] of a camera ``pose.altitude_m`` above the terrain."""
        return np.array([pose.east_m, pose.north_m, float(self.ground_m(pose.east_m, pose.north_m)) + pose.altitude_m])

    def cast(self, origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distances [m] from ``origins`` (N, 3) along unit ``directions`` (N, 3) to the first hit, and the faces hit.

        A ray that hits nothing has distance inf and face -1.
        """
        o = np.ascontiguousarray(origins, np.float32)
        d = np.ascontiguousarray(directions, np.float32)
        hit = self._scene.run(o, d, output=1)
        prim = np.asarray(hit["primID"]).astype(np.int64)
        prim[np.asarray(hit["geomID"]) < 0] = -1
        t = np.where(prim >= 0, np.asarray(hit["tfar"], np.float32), np.float32(np.inf))
        return t, prim

    # --- rendering ------------------------------------------------------------------------------

    def render_rays(self, origin: np.ndarray, directions: np.ndarray, pixel_rad: float) -> np.ndarray:
        """Colours (N, 3) float32 of rays from one ``origin`` (3,) along unit ``directions`` (N, 3).

        ``pixel_rad``: the angle one pixel spans [rad], which picks the orthophoto's pyramid level.
        """
        directions = np.ascontiguousarray(directions, np.float32)
        n = len(directions)
        t, prim = self.cast(np.broadcast_to(np.asarray(origin, np.float32), (n, 3)), directions)
        colour = np.empty((n, 3), np.float32)
        missed = prim < 0
        sky = np.clip(directions[missed, 2], 0, 1)[:, None] ** 0.6
        colour[missed] = SKY_HORIZON * (1 - sky) + SKY_ZENITH * sky
        hit = np.flatnonzero(~missed)
        if len(hit) == 0:
            return colour
        t, dirs = t[hit].astype(np.float32), directions[hit]
        points = np.asarray(origin, np.float32) + dirs * t[:, None]
        normals = self._normals[prim[hit]]
        cos_in = np.abs(np.einsum("ij,ij->i", normals, dirs))
        footprint_m = t * np.float32(pixel_rad) / np.maximum(cos_in, 0.15)
        steep = np.flatnonzero(normals[:, 2] < STEEP_NZ)
        lookup = points[:, :2].copy()
        inward = normals[steep, :2] / np.maximum(np.linalg.norm(normals[steep, :2], axis=1, keepdims=True), 1e-6)
        lookup[steep] -= inward * np.float32(0.6 * self.gsd_m)  # a wall shows what is just behind it from above
        out = self._ortho_colour(lookup, footprint_m)
        if len(steep):
            if self.facades is not None:
                rows, cols = self._cell(lookup[steep, 0], lookup[steep, 1])
                ids = self.facades.ids[rows, cols]
                known = ids >= 0
                out[steep[known]] = self._facade(points[steep[known]], inward[known], ids[known])
            lit = _rotate(normals[steep], self.sun[None].astype(np.float32))[:, 0]  # n . sun
            out[steep] *= (0.55 + 0.4 * np.clip(lit, 0, 1))[:, None]
        haze = (1 - np.exp(-t / np.float32(HAZE_M)))[:, None]
        colour[hit] = out * (1 - haze) + SKY_HORIZON * haze
        return colour

    def _ortho_colour(self, points_m: np.ndarray, footprint_m: np.ndarray) -> np.ndarray:
        """Orthophoto colours (N, 3) float32 at local points (N, 2) [m], each from the level of its footprint [m]."""
        out = np.zeros((len(points_m), 3), np.float32)
        levels = np.minimum(np.log2(np.maximum(footprint_m / self.ortho.gsd_m, 1.0)), 12).astype(np.intp)
        for k in np.flatnonzero(np.bincount(levels)):
            sel = np.flatnonzero(levels == k)
            image, gsd = self.ortho.level(self.ortho.gsd_m * 2.0**k)
            m = self.ortho.pixel_matrix(gsd)
            out[sel] = _sample(image, m[0, 0] * points_m[sel, 0] + m[0, 2], m[1, 1] * points_m[sel, 1] + m[1, 2])
        return out

    def _facade(self, points: np.ndarray, inward: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Facade colours (N, 3) of wall points (N, 3) [m] with inward horizontal normals, of buildings ``ids``."""
        f = self.facades
        assert f is not None
        up = points[:, 2] - f.base_m[ids]
        storey, within = np.floor(up / STOREY_M), np.mod(up, STOREY_M)
        along = points[:, 0] * -inward[:, 1] + points[:, 1] * inward[:, 0]  # position along the wall [m]
        spacing = f.window_spacing_m[ids]
        slot = np.mod(along, spacing) / spacing
        bay = np.floor(along / spacing)
        colour = f.wall_rgb[ids].copy()
        window = (storey >= 1) & (within > 0.9) & (within < 2.3) & (slot > 0.28) & (slot < 0.72)
        colour[window] = GLASS
        shop = f.shop_rgb[ids]
        has_shop = np.isfinite(shop[:, 0])
        ground = storey == 0
        front = ground & has_shop & (within > 0.3) & (within < 2.5) & (slot > 0.08) & (slot < 0.92)
        sign = ground & has_shop & (within >= 2.5) & (within < 2.95)
        colour[sign] = shop[sign]
        colour[front] = GLASS * 0.7 + shop[front] * 0.3
        door = ground & ~has_shop & (np.mod(bay, 4) == 1) & (within < 2.2) & (slot > 0.3) & (slot < 0.7)
        plain_window = ground & ~has_shop & ~door & (within > 0.9) & (within < 2.1) & (slot > 0.3) & (slot < 0.7)
        colour[door] = DOOR
        colour[plain_window] = GLASS
        return colour

    def render(self, camera_k: np.ndarray, size_px: tuple[int, int], pose: CameraPose, distortion=None) -> np.ndarray:
        """The (H, W, 3) uint8 RGB frame of a camera with intrinsics ``camera_k`` (3x3) [px] at ``pose``.

        ``size_px``: (width, height); ``distortion``: OpenCV's coefficients
        (k1, k2, p1, p2[, k3, ...]) of the lens, None for none.
        """
        return self.render_view(camera_k, size_px, self.camera_centre(pose), pose.rotation(), distortion)

    def render_view(
        self, camera_k: np.ndarray, size_px: tuple[int, int], centre_m, world_from_camera: np.ndarray, distortion=None
    ) -> np.ndarray:
        """As :meth:`render`, for a camera at ``centre_m`` (east, north, up) [m] turned by ``world_from_camera`` (3x3).

        For views no :class:`CameraPose` can hold (a camera looking at the horizon).
        Frames of up to :data:`ANTIALIAS_MAX_PX` pixels are rendered with 2 x 2
        rays per pixel and averaged, so that edges do not alias.
        """
        w, h = int(size_px[0]), int(size_px[1])
        k = np.asarray(camera_k, np.float64)
        s = 2 if w * h <= ANTIALIAS_MAX_PX else 1
        if s > 1:  # pixel (u, v) covers the fine pixels (2u, 2v) .. (2u + 1, 2v + 1)
            k = np.array([[s, 0, (s - 1) / 2], [0, s, (s - 1) / 2], [0, 0, 1.0]]) @ k
        rays = _camera_rays(k, (s * w, s * h), distortion)
        world = _rotate(rays, np.asarray(world_from_camera, np.float32))
        colour = self.render_rays(np.asarray(centre_m, np.float32), world, 1.0 / float(k[0][0]))
        image = colour.reshape(s * h, s * w, 3)
        if s > 1:
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        return np.clip(image, 0, 255).astype(np.uint8)

    def panorama(
        self, east_m: float, north_m: float, height_m: float, yaw_deg: float, size_px=(1024, 512)
    ) -> np.ndarray:
        """A 360° equirectangular (H, W, 3) uint8 panorama from ``height_m`` above the terrain at (east, north) [m].

        Its centre column looks along ``yaw_deg`` (see :func:`panorama_heading_deg`); rows span +90° to -90°.
        """
        w, h = size_px
        heading = panorama_heading_deg(np.arange(w), w, yaw_deg)
        elevation = 90.0 - (np.arange(h) + 0.5) / h * 180.0
        dirs = _direction(*np.meshgrid(heading, elevation)).reshape(-1, 3)
        centre = self.camera_centre(CameraPose(east_m, north_m, height_m))
        colour = self.render_rays(centre, dirs, 2 * math.pi / w)
        return np.clip(colour, 0, 255).reshape(h, w, 3).astype(np.uint8)
