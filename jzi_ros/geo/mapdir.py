"""The map directory a robot carries: a zoom grid, its views, and encoder features.

Layout (every file is plain YAML or a NumPy ``.npy`` that memory-maps)::

    NAME/
      map.yaml              format, version, view size, context margin, sources, build provenance
      grid.yaml             the zoom grid (ZoomGrid.save)
      views.npy             uint8 (N, P, P, 3) RGB, one view per non-terminal cell, breadth first
      coverage.npy          uint8 (N, P, ceil(P/8)): per-pixel coverage, np.packbits along rows
      coverage_fraction.npy float32 (N,): covered share of each view
      features/KEY/         one folder per encoder the map was indexed for
        identity.yaml       the encoder's identity (name, weights digest, input size, ...)
        features.npy        float (N, ...) encoder output for every view
      calibrations/DIGEST.yaml  the calibration fit on this map for one model (``jzi calibrate``; a general
                            model's own for the map): temperature, covariance and registration scales
      ortho.tif             the orthophoto pyramid: the region (grown by 2 terminal cells) in its local
                            frame, a cloud-optimized GeoTIFF (JPEG, 256 px tiles, overviews, coverage
                            mask) that the registration reads crops of (``MapDir.pyramid()``)
      surface.tif           optional: the surface model (DSM or DTM) over the pyramid's extent, float32
                            metres in the local frame (``geo.surface``; ``jzi build-map --dsm``), onto
                            which the registration lays tilted frames (``MapDir.surface()``)

Features of several encoders live side by side; a model asks for the folder of
its own identity and is refused, with the list of what the map has, when the
map was not indexed for it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

from ..outputs import PARTIAL_MARKER, check_replaceable, start_partial
from ..progress import Progress
from .errors import MapError
from .grid import BoundsM, CellPath, ZoomGrid, terminal_paths

if TYPE_CHECKING:
    from .pyramid import Pyramid
    from .surface import Surface

FORMAT = "jzi-map"
VERSION = 1

PYRAMID_FILE = "ortho.tif"
"""File name of the orthophoto pyramid in a map directory (see ``geo.pyramid``)."""
SURFACE_FILE = "surface.tif"
"""File name of the optional surface model in a map directory (see ``geo.surface``)."""


def feature_key(identity: dict) -> str:
    """Folder name for an encoder identity: a readable name and a digest of the whole."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(identity.get("name", "encoder")))[:48]
    return f"{name}-{digest}"


def view_bytes(grid: ZoomGrid, view_px: int) -> int:
    """Bytes on disk of the views and coverage of a map."""
    per_view = view_px * view_px * 3 + view_px * ((view_px + 7) // 8) + 4
    return grid.num_views * per_view


def view_bounds_m(grid: ZoomGrid, path: CellPath, margin: float) -> BoundsM:
    """Area [m] a view shows: its cell grown by ``margin`` x the cell side on every side."""
    b = grid.bounds_m(path)
    pad = margin * grid.cell_size_m(len(path))
    return BoundsM(b.west_m - pad, b.south_m - pad, b.east_m + pad, b.north_m + pad)


class MapWriter:
    """Writes a map into ``NAME.partial`` and renames it to ``NAME`` when done.

    A failed or interrupted build thus never leaves a half map behind.
    """

    def __init__(
        self, out_dir: str | Path, grid: ZoomGrid, view_px: int, margin: float, overwrite: bool = False
    ) -> None:
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not overwrite:
            raise MapError(f"{self.out_dir} exists; choose another --out or pass --overwrite")
        self.grid, self.view_px, self.margin = grid, view_px, margin
        self.tmp_dir = start_partial(self.out_dir.with_name(self.out_dir.name + ".partial"))
        n, p = grid.num_views, view_px
        self.views: np.memmap | None = np.lib.format.open_memmap(
            self.tmp_dir / "views.npy", "w+", np.uint8, (n, p, p, 3)
        )
        self.coverage: np.memmap | None = np.lib.format.open_memmap(
            self.tmp_dir / "coverage.npy", "w+", np.uint8, (n, p, (p + 7) // 8)
        )
        self.fraction = np.zeros(n, np.float32)

    def __enter__(self) -> MapWriter:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is not None:
            self.abort()

    def write_view(self, index: int, rgb: np.ndarray, valid: np.ndarray) -> None:
        """Store the view of cell ``index`` (breadth first): RGB (P, P, 3) and its valid mask (P, P)."""
        assert self.views is not None and self.coverage is not None, "the writer is finished or aborted"
        self.views[index] = rgb
        self.coverage[index] = np.packbits(valid, axis=1)
        self.fraction[index] = valid.mean()

    def abort(self) -> None:
        """Drop the views and delete ``NAME.partial``; the writer cannot be used after."""
        self.views = self.coverage = None
        shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def finish(
        self, sources: list[dict], build: dict, pyramid: dict | None = None, surface: dict | None = None
    ) -> MapDir:
        """Write the rest of the map and move it to ``out_dir``; the finished map.

        ``pyramid`` is the record of the orthophoto pyramid written into
        ``tmp_dir`` (``write_pyramid``'s result), ``surface`` that of the
        surface model (``write_surface``'s), both kept in map.yaml.
        """
        assert self.views is not None and self.coverage is not None, "the writer is finished or aborted"
        self.views.flush()
        self.coverage.flush()
        self.views = self.coverage = None
        np.save(self.tmp_dir / "coverage_fraction.npy", self.fraction)
        self.grid.save(self.tmp_dir / "grid.yaml")
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "view_px": self.view_px,
            "margin": self.margin,
            "num_views": self.grid.num_views,
            "views": "views.npy",
            "coverage": "coverage.npy",
            "sources": sources,
            "build": build,
        }
        if pyramid is not None:
            doc["pyramid"] = pyramid
        if surface is not None:
            doc["surface"] = surface
        (self.tmp_dir / "map.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        (self.tmp_dir / PARTIAL_MARKER).unlink()
        if self.out_dir.exists():
            check_replaceable(self.out_dir, "map.yaml", "map")
            shutil.rmtree(self.out_dir)
        self.tmp_dir.rename(self.out_dir)
        return MapDir(self.out_dir)


class MapDir:
    """A built map, opened read-only; views are memory-mapped, not loaded."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta = self.path / "map.yaml"
        if not meta.is_file():
            raise MapError(f"{self.path} is not a jzi map (no map.yaml); build one with `jzi build-map`")
        try:
            self.meta = yaml.safe_load(meta.read_text())
        except yaml.YAMLError as exc:
            raise MapError(f"{meta} is not valid YAML: {exc}") from None
        if not isinstance(self.meta, dict) or self.meta.get("format") != FORMAT:
            raise MapError(f"{meta} is not a jzi map description")
        if self.meta.get("version") != VERSION:
            raise MapError(
                f"{self.path} has map format version {self.meta.get('version')}; "
                f"this jzi_ros reads version {VERSION}: rebuild it with `jzi build-map`"
            )
        self.grid = ZoomGrid.load(self.path / "grid.yaml")
        self.view_px = int(self.meta["view_px"])
        self.margin = float(self.meta["margin"])
        self.views = self._load("views.npy", (self.grid.num_views, self.view_px, self.view_px, 3))
        self._coverage = self._load("coverage.npy", (self.grid.num_views, self.view_px, (self.view_px + 7) // 8))
        self.coverage_fraction = self._load("coverage_fraction.npy", (self.grid.num_views,))

    def _load(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        try:
            array = np.load(self.path / name, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise MapError(f"cannot read {self.path / name} ({exc}); the map is incomplete: rebuild it") from None
        if array.shape != shape:
            raise MapError(f"{self.path / name} has shape {array.shape}, expected {shape}: rebuild the map")
        return array

    @property
    def name(self) -> str:
        """The map's name: the name of its directory."""
        return self.path.name

    @property
    def sources(self) -> list[dict]:
        """Records of the source rasters the map was built from (``RasterInfo.to_dict``), finest first."""
        return list(self.meta.get("sources", []))

    @property
    def has_pyramid(self) -> bool:
        """Whether the map has its orthophoto pyramid (maps built before it existed have none)."""
        return "pyramid" in self.meta and (self.path / PYRAMID_FILE).is_file()

    def pyramid(self) -> Pyramid:
        """Open the map's orthophoto pyramid (a new reader per call: one per thread).

        Raises:
            MapError: The map has none; the message says how to add it.
        """
        if not self.has_pyramid:
            raise MapError(
                f"map {self.path} has no orthophoto pyramid (built before it existed); "
                f"add one with `jzi build-pyramid --map {self.path}`"
            )
        from .pyramid import Pyramid

        return Pyramid(self.path / PYRAMID_FILE)

    @property
    def has_surface(self) -> bool:
        """Whether the map has a surface model (``jzi build-map --dsm``)."""
        return "surface" in self.meta and (self.path / SURFACE_FILE).is_file()

    def surface(self) -> Surface:
        """The map's surface model, read into memory.

        Raises:
            MapError: The map has none; the message says how to add it.
        """
        if not self.has_surface:
            raise MapError(f"map {self.path} has no surface model; rebuild it with `jzi build-map ... --dsm DSM.tif`")
        from .surface import Surface

        return Surface.open(self.path / SURFACE_FILE)

    def record_pyramid(self, record: dict, key: str = "pyramid") -> None:
        """Keep the record of a newly written pyramid (or ``key``: another layer) in map.yaml (replaced atomically)."""
        meta = dict(self.meta, **{key: record})
        tmp = self.path / "map.yaml.partial"
        tmp.write_text(yaml.safe_dump(meta, sort_keys=False))
        os.replace(tmp, self.path / "map.yaml")
        self.meta = meta

    def coverage(self, index: int) -> np.ndarray:
        """(P, P) bool: pixels of view ``index`` that some raster covered."""
        return np.unpackbits(self._coverage[index], axis=1, count=self.view_px).astype(bool)

    def view_bounds_m(self, index: int) -> BoundsM:
        """Area [m] view ``index`` shows in the local frame: its cell grown by the context margin."""
        return view_bounds_m(self.grid, self.grid.path_of_view(index), self.margin)

    def terminal_views(self, progress: Progress | None = None) -> Iterator[np.ndarray]:
        """Every terminal cell's own overhead view (view_px square, with the context margin), in row-major order.

        The map holds views of the cells the zoom looks into, not of the terminal
        cells; these are read from its orthophoto pyramid at the views' size (as
        a flat retrieval system would tile the map), one at a time.

        Raises:
            MapError: The map has no pyramid (on the first view).
        """
        grid = self.grid
        count = grid.actions**grid.levels
        iterate = progress or (lambda it, total: it)
        with self.pyramid() as pyramid:
            for number in iterate(range(count), count):
                bounds = view_bounds_m(grid, tuple(terminal_paths(number, grid.actions, grid.levels)), self.margin)
                rgb, _ = pyramid.read(bounds, (bounds.east_m - bounds.west_m) / self.view_px)
                yield rgb

    def mosaic(self, level: int) -> np.ndarray:
        """The cells of ``level`` side by side, each cropped to its own area (without the context margin).

        An (n*c, n*c, 3) image, n = g**level.
        """
        if not 0 <= level < self.grid.levels:
            raise MapError(f"level {level} has no views (levels 0..{self.grid.levels - 1})")
        n = self.grid.grid**level
        crop = self.view_px / (1.0 + 2.0 * self.margin)
        lo = int(round((self.view_px - crop) / 2))
        c = self.view_px - 2 * lo
        out = np.zeros((n * c, n * c, 3), np.uint8)
        first = self.grid.level_offset(level)
        for k in range(self.grid.num_cells(level)):
            row, col = self.grid.row_col(self.grid.path_of_view(first + k))
            out[row * c : (row + 1) * c, col * c : (col + 1) * c] = self.views[first + k, lo : lo + c, lo : lo + c]
        return out

    # -- features of encoders -------------------------------------------------

    def feature_sets(self) -> list[dict]:
        """Identities of the encoders this map was indexed for."""
        root = self.path / "features"
        out = []
        for ident in sorted(root.glob("*/identity.yaml")) if root.is_dir() else []:
            out.append(yaml.safe_load(ident.read_text()))
        return out

    def load_features(self, identity: dict) -> np.ndarray:
        """Memory-mapped features of the encoder ``identity``.

        Raises a clear :class:`MapError` when the map was not indexed for it.
        """
        path = self.path / "features" / feature_key(identity) / "features.npy"
        if not path.is_file():
            have = [f"{d.get('name')} ({feature_key(d)})" for d in self.feature_sets()] or ["none"]
            raise MapError(
                f"map {self.path} was not indexed for encoder {identity.get('name')} "
                f"({feature_key(identity)}); it has features for: {', '.join(have)}. "
                f"Index it for this model with `jzi index-map`"
            )
        array = np.load(path, mmap_mode="r")
        if array.shape[0] != self.grid.num_views:
            raise MapError(f"{path} holds {array.shape[0]} views, the map has {self.grid.num_views}: re-index it")
        return array

    # -- calibrations of models ---------------------------------------------

    def load_calibration(self, model_digest: str) -> dict | None:
        """The calibration record fit on this map for the model of ``model_digest`` (``jzi calibrate``), or None."""
        path = self.path / "calibrations" / f"{model_digest}.yaml"
        return yaml.safe_load(path.read_text()) if path.is_file() else None

    def save_calibration(self, model_digest: str, record: dict) -> Path:
        """Store a calibration record (JSON types) for the model of ``model_digest``, atomically."""
        folder = self.path / "calibrations"
        folder.mkdir(exist_ok=True)
        path = folder / f"{model_digest}.yaml"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(yaml.safe_dump(record, sort_keys=False))
        os.replace(tmp, path)
        return path

    def save_features(self, identity: dict, features: np.ndarray) -> Path:
        """Store features of every view for ``identity``, replacing earlier ones atomically."""
        if features.shape[0] != self.grid.num_views:
            raise MapError(f"features for {features.shape[0]} views, the map has {self.grid.num_views}")
        final = self.path / "features" / feature_key(identity)
        tmp = final.with_name(final.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        np.save(tmp / "features.npy", features)
        (tmp / "identity.yaml").write_text(yaml.safe_dump(identity, sort_keys=True))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        return final
