"""The zoom grid: a square region cut into g x g children at every level.

A cell is named by its *path*, the tuple of actions that zoom from the whole
region down to it; each action is ``row * g + col`` of the chosen child, rows
counted from the north, columns from the west (row-major from the north-west
corner). The root (the whole region) has the empty path; the cells of level
``k`` have paths of length ``k``; the terminal cells are those of level ``L``
(``levels``). Every cell of levels ``0 .. L-1`` has an overhead *view*; views
are stored breadth first: the root, then the g² cells of level 1, then the g⁴
of level 2, ..., each level in the order of its paths read as base-g² numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path as FsPath
from typing import Any, NamedTuple, TypeVar

import numpy as np
import yaml

from .errors import GeoError, OutsideRegionError
from .frame import LocalFrame

ArrayT = TypeVar("ArrayT", bound=Any)
"""An integer array: a NumPy array or a torch tensor (geo never imports torch, so it cannot name it)."""

CellPath = tuple[int, ...]

MAX_SIZE_M = 200_000.0
"""Largest region side [m]; beyond it the local frame's scale error nears 0.1 %."""
MAX_ABS_LAT_DEG = 85.0


class BoundsM(NamedTuple):
    """Axis-aligned box in a region's local frame [m]."""

    west_m: float
    south_m: float
    east_m: float
    north_m: float


class LatLonBounds(NamedTuple):
    """Box in WGS84 longitude/latitude [deg]."""

    west: float
    south: float
    east: float
    north: float


def view_indices(paths: ArrayT, actions: int) -> ArrayT:
    """Breadth-first view index of each cell given by its path (..., k) [actions].

    The cells of the levels above k come first, then the cell's number in base
    g*g. NumPy arrays or torch tensors of integers, any leading shape. This is
    the one definition of the map's view order.
    """
    offset = sum(actions**j for j in range(paths.shape[-1]))
    number = paths.sum(-1) * 0  # zeros of the input's kind and leading shape
    for j in range(paths.shape[-1]):
        number = number * actions + paths[..., j]
    return number + offset


def terminal_paths(index: np.ndarray, actions: int, levels: int) -> np.ndarray:
    """Terminal cell numbers (...) in the map's row-major order -> their paths (..., levels) [actions].

    The terminal cells (the children of the last level's views) follow the
    views in breadth-first order: number t is view index
    ``num_views + t`` of a map with one level more (:func:`view_indices`).
    """
    index = np.asarray(index, np.int64)
    digits = [(index // actions ** (levels - 1 - k)) % actions for k in range(levels)]
    return np.stack(digits, axis=-1)


def terminal_number(paths: np.ndarray, actions: int) -> np.ndarray:
    """Terminal paths (..., levels) -> their numbers in the map's row-major order (:func:`terminal_paths` inverted)."""
    paths = np.asarray(paths, np.int64)
    return view_indices(paths, actions) - sum(actions**j for j in range(paths.shape[-1]))


@dataclass(frozen=True)
class ZoomGrid:
    """A square region of ``size_m`` metres centred on (center_lat, center_lon) [deg].

    The region is split ``grid`` x ``grid`` at each of ``levels`` zoom steps.
    """

    center_lat: float
    center_lon: float
    size_m: float
    grid: int = 4
    levels: int = 4

    def __post_init__(self) -> None:
        if not (math.isfinite(self.center_lat) and abs(self.center_lat) <= MAX_ABS_LAT_DEG):
            raise GeoError(f"centre latitude {self.center_lat} must lie within ±{MAX_ABS_LAT_DEG}°")
        if not (math.isfinite(self.center_lon) and -180.0 <= self.center_lon <= 180.0):
            raise GeoError(f"centre longitude {self.center_lon} must lie within ±180°")
        if not (math.isfinite(self.size_m) and 0.0 < self.size_m <= MAX_SIZE_M):
            raise GeoError(f"region side {self.size_m} m must be in (0, {MAX_SIZE_M:.0f}] m")
        if int(self.grid) != self.grid or self.grid < 2:
            raise GeoError(f"grid {self.grid} must be an integer >= 2")
        if int(self.levels) != self.levels or self.levels < 1:
            raise GeoError(f"levels {self.levels} must be an integer >= 1")

    # -- sizes and counts ---------------------------------------------------

    @property
    def frame(self) -> LocalFrame:
        """Local metric frame (transverse Mercator) centred on the region."""
        return LocalFrame(self.center_lat, self.center_lon)

    @property
    def actions(self) -> int:
        """Number of children of a cell (g²), the decoder's classes."""
        return self.grid * self.grid

    def cell_size_m(self, level: int) -> float:
        """Side [m] of a cell of ``level`` (0 = the whole region)."""
        return self.size_m / self.grid**level

    @property
    def terminal_size_m(self) -> float:
        """Side [m] of a terminal cell (level L)."""
        return self.cell_size_m(self.levels)

    def num_cells(self, level: int) -> int:
        """Number of cells of ``level``: (g²)^level."""
        return self.actions**level

    def level_offset(self, level: int) -> int:
        """View index of the first cell of ``level``."""
        return sum(self.actions**k for k in range(level))

    @property
    def num_views(self) -> int:
        """Number of non-terminal cells (levels 0 .. L-1), each with one view."""
        return self.level_offset(self.levels)

    # -- paths --------------------------------------------------------------

    def check_path(self, path: CellPath) -> CellPath:
        """``path`` as a tuple of ints; GeoError if deeper than L or an action is outside 0 .. g²-1."""
        path = tuple(int(a) for a in path)
        if len(path) > self.levels:
            raise GeoError(f"path {path} is deeper than the grid's {self.levels} levels")
        if any(a < 0 or a >= self.actions for a in path):
            raise GeoError(f"path {path} has an action outside 0..{self.actions - 1}")
        return path

    def parent(self, path: CellPath) -> CellPath:
        """Path of the cell's parent, one level up; GeoError for the root."""
        path = self.check_path(path)
        if not path:
            raise GeoError("the root cell has no parent")
        return path[:-1]

    def children(self, path: CellPath) -> list[CellPath]:
        """Paths of the g² children of a non-terminal cell, in action order."""
        path = self.check_path(path)
        if len(path) == self.levels:
            raise GeoError(f"terminal cell {path} has no children")
        return [path + (a,) for a in range(self.actions)]

    def view_index(self, path: CellPath) -> int:
        """Breadth-first index of a non-terminal cell's view."""
        path = self.check_path(path)
        if len(path) == self.levels:
            raise GeoError(f"terminal cell {path} has no view")
        return int(view_indices(np.array(path, np.int64), self.actions))

    def view_indices(self, paths: ArrayT) -> ArrayT:
        """Vectorized :meth:`view_index`: paths (..., k) of level-k cells, k < L -> (...,)."""
        if paths.shape[-1] >= self.levels:
            raise GeoError(f"cells of level {paths.shape[-1]} are terminal and have no view")
        return view_indices(paths, self.actions)

    def path_of_view(self, index: int) -> CellPath:
        """Inverse of :meth:`view_index`."""
        if not 0 <= index < self.num_views:
            raise GeoError(f"view index {index} outside 0..{self.num_views - 1}")
        level = 0
        while index >= self.level_offset(level + 1):
            level += 1
        number = index - self.level_offset(level)
        path = []
        for _ in range(level):
            number, a = divmod(number, self.actions)
            path.append(a)
        return tuple(reversed(path))

    def row_col(self, path: CellPath) -> tuple[int, int]:
        """Row (from north) and column (from west) of a cell among the g^k x g^k cells of its level."""
        row = col = 0
        for a in self.check_path(path):
            r, c = divmod(a, self.grid)
            row, col = row * self.grid + r, col * self.grid + c
        return row, col

    def path_of_row_col(self, row: int, col: int, level: int) -> CellPath:
        """Inverse of :meth:`row_col`: path of the cell at (row, col) among the g^k x g^k cells of level k."""
        n = self.grid**level
        if not (0 <= row < n and 0 <= col < n):
            raise GeoError(f"row/col ({row}, {col}) outside the {n} x {n} cells of level {level}")
        path = []
        for k in range(level - 1, -1, -1):
            step = self.grid**k
            path.append(((row // step) % self.grid) * self.grid + (col // step) % self.grid)
        return tuple(path)

    # -- geometry -----------------------------------------------------------

    def bounds_m(self, path: CellPath) -> BoundsM:
        """Bounds [m] of a cell in the local frame."""
        row, col = self.row_col(path)
        size = self.cell_size_m(len(path))
        half = self.size_m / 2.0
        west, north = -half + col * size, half - row * size
        return BoundsM(west, north - size, west + size, north)

    def center_m(self, path: CellPath) -> tuple[float, float]:
        """Centre (east, north) [m] of a cell in the local frame."""
        b = self.bounds_m(path)
        return (b.west_m + b.east_m) / 2.0, (b.south_m + b.north_m) / 2.0

    def centers_m(self, paths) -> np.ndarray:
        """Centres (..., 2) (east, north) [m] of cells given as an integer array (..., k) of paths of one length k.

        The vectorized :meth:`center_m`, for the K candidates of N searches at once.
        """
        paths = np.asarray(paths)
        actions = self.grid * self.grid
        if paths.ndim == 0 or paths.shape[-1] < 1 or ((paths < 0) | (paths >= actions)).any():
            raise GeoError(f"paths must be (..., k) arrays of actions in 0..{actions - 1}, k >= 1")
        rows, cols = np.divmod(paths.astype(np.int64), self.grid)
        weights = self.grid ** np.arange(paths.shape[-1] - 1, -1, -1)
        size = self.cell_size_m(paths.shape[-1])
        half = self.size_m / 2.0
        east = -half + ((cols * weights).sum(-1) + 0.5) * size
        north = half - ((rows * weights).sum(-1) + 0.5) * size
        return np.stack([east, north], -1)

    def center_latlon(self, path: CellPath) -> tuple[float, float]:
        """Centre (lat, lon) [deg] of a cell."""
        lat, lon = self.frame.to_latlon(*self.center_m(path))
        return float(lat), float(lon)

    def corners_latlon(self, path: CellPath) -> np.ndarray:
        """(4, 2) array of (lat, lon) [deg]: NW, NE, SE, SW corners."""
        b = self.bounds_m(path)
        east = np.array([b.west_m, b.east_m, b.east_m, b.west_m])
        north = np.array([b.north_m, b.north_m, b.south_m, b.south_m])
        lat, lon = self.frame.to_latlon(east, north)
        return np.stack([lat, lon], axis=1)

    def bounds_latlon(self, path: CellPath) -> LatLonBounds:
        """Smallest lon/lat box [deg] that holds the cell (edges densified)."""
        b = self.bounds_m(path)
        t = np.linspace(0.0, 1.0, 17)
        xs = b.west_m + t * (b.east_m - b.west_m)
        ys = b.south_m + t * (b.north_m - b.south_m)
        east = np.concatenate([xs, xs, np.full_like(ys, b.west_m), np.full_like(ys, b.east_m)])
        north = np.concatenate([np.full_like(xs, b.south_m), np.full_like(xs, b.north_m), ys, ys])
        lat, lon = self.frame.to_latlon(east, north)
        return LatLonBounds(float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max()))

    def terminal_rows_cols_m(self, east_m, north_m) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row (from north) and column (from west) of the terminal cells that hold local points [m].

        Also whether each point is inside the region (its east and south
        borders included); outside points get row/col 0.
        """
        east = np.atleast_1d(np.asarray(east_m, float))
        north = np.atleast_1d(np.asarray(north_m, float))
        n = self.grid**self.levels
        size = self.terminal_size_m
        half = self.size_m / 2.0
        eps = 1e-9 * self.size_m
        inside = (np.abs(east) <= half + eps) & (np.abs(north) <= half + eps)
        with np.errstate(invalid="ignore"):
            col = np.clip(np.floor((east + half) / size), 0, n - 1)
            row = np.clip(np.floor((half - north) / size), 0, n - 1)
        return np.where(inside, row, 0).astype(np.int64), np.where(inside, col, 0).astype(np.int64), inside

    def paths_at_m(self, east_m, north_m, level: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Paths of the cells of ``level`` (default: terminal) that hold local points [m].

        Returns ``(paths, inside)``: an (N, level) int array and an (N,) bool
        array; rows of points outside the region are -1.
        """
        level = self.levels if level is None else level
        if not 0 <= level <= self.levels:
            raise GeoError(f"level {level} outside 0..{self.levels}")
        # Locate the terminal cell and read coarser levels off it, so that the
        # path at every level is a prefix of the terminal path, even on borders.
        row, col, inside = self.terminal_rows_cols_m(east_m, north_m)
        paths = np.empty((row.size, level), np.int64)
        for i in range(level):
            step = self.grid ** (self.levels - 1 - i)
            paths[:, i] = ((row // step) % self.grid) * self.grid + (col // step) % self.grid
        paths[~inside] = -1
        return paths, inside

    def paths_at(self, lat_deg, lon_deg, level: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised :meth:`path_at` for WGS84 points [deg]; see :meth:`paths_at_m`."""
        return self.paths_at_m(*self.frame.to_local(lat_deg, lon_deg), level=level)

    def path_at(self, lat_deg: float, lon_deg: float, level: int | None = None) -> CellPath:
        """Path of the cell of ``level`` (default: terminal) holding (lat, lon) [deg]."""
        paths, inside = self.paths_at(lat_deg, lon_deg, level)
        if not inside[0]:
            raise OutsideRegionError(
                f"({lat_deg:.6f}, {lon_deg:.6f}) lies outside the {self.size_m:.0f} m region "
                f"centred on ({self.center_lat:.6f}, {self.center_lon:.6f})"
            )
        return tuple(int(a) for a in paths[0])

    # -- persistence --------------------------------------------------------

    def to_dict(self) -> dict:
        """The defining fields (centre [deg], side [m], grid, levels) as a plain dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ZoomGrid:
        """Grid from a mapping like :meth:`to_dict`'s (grid and levels default to 4); GeoError if malformed."""
        try:
            return cls(
                center_lat=float(d["center_lat"]),
                center_lon=float(d["center_lon"]),
                size_m=float(d["size_m"]),
                grid=int(d.get("grid", 4)),
                levels=int(d.get("levels", 4)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise GeoError(f"not a zoom grid definition ({exc!r}): {d}") from None

    def save(self, path: str | FsPath) -> None:
        """Write the grid as commented YAML, with the derived fields (for reading only) after it."""
        doc = self.to_dict() | {
            "terminal_size_m": self.terminal_size_m,
            "num_views": self.num_views,
            "local_crs": self.frame.proj4,
        }
        FsPath(path).write_text(
            "# Zoom grid of a jzi_ros map: centre [deg WGS84], side [m], g x g children, L levels.\n"
            "# terminal_size_m, num_views and local_crs are derived, for reading only.\n"
            + yaml.safe_dump(doc, sort_keys=False)
        )

    @classmethod
    def load(cls, path: str | FsPath) -> ZoomGrid:
        """Read a grid file written by :meth:`save`; GeoError if unreadable or not a grid."""
        try:
            doc = yaml.safe_load(FsPath(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise GeoError(f"cannot read grid file {path}: {exc}") from None
        if not isinstance(doc, dict):
            raise GeoError(f"grid file {path} does not hold a mapping")
        return cls.from_dict(doc)

    def describe(self) -> str:
        """One line for people: side, centre, grid, levels, terminal cell size and number of views."""
        return (
            f"{self.size_m:.0f} m region at ({self.center_lat:.6f}, {self.center_lon:.6f}), "
            f"{self.grid}x{self.grid} grid, {self.levels} levels, terminal cell "
            f"{self.terminal_size_m:.2f} m, {self.num_views} views"
        )
