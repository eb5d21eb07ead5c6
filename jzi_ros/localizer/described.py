"""The map described once: a dense matcher's descriptors of the map's orthophoto, kept by tile and resolution.

A registration correlates a frame's descriptors with the map's around a
candidate. Describing the map's crop is most of a registration's time with a
learned matcher (a small network over some 200 x 200 pixels), and the same
ground is described again for every frame that passes over it.
:class:`DescribedMap` describes the map in tiles of :data:`TILE_PX` pixels on
a lattice anchored at the region's north-west corner (so that a small map's tiles hold
little beyond it), at resolutions of a ladder
:data:`STEPS_PER_OCTAVE` steps to the octave, each half a step off the map's
own resolution and its multiples by powers of two
(:meth:`DescribedMap.gsd` snaps a registration's resolution to it), keeps the
tiles it described (the least recently used dropped beyond a memory budget)
and assembles a crop's descriptors from them.

Each tile is described with a margin of the matcher's reach
(:attr:`~jzi_ros.localizer.matchers.DenseMatcher.reach_px`: how far a pixel's
descriptor depends on the image), so that no descriptor sees a tile's edge
and a crop assembled from tiles holds the descriptors a description of the
whole map would: only a matcher whose descriptors depend on nearby ground
alone has a reach (a learned matcher normalized over a window,
``train-matcher --window``); one normalized by its whole image's statistics
(CFOG, a learned matcher without a window) describes each crop anew. The
one change from describing the crop: its resolution is the ladder's nearest
to the frame's, and the crop's pixels lie on the tiles' lattice.

Why half a step off: a crop read on a lattice tied to the map's pixels at
the map's own resolution copies them without interpolation, every time the
same way, and a matcher trained on crops read anywhere (interpolated) then
verifies fewer frames: on NAIP's cross-year flight 79.5 % against 88.6 %
with the crops on the map's own lattice at ladder resolutions 2^(k/8) of
the map's, 88.2 and 90.9 % with the lattice or the ladder alone, 85.5 %
with the ladder half a step off (``docs/results.md``). Near the map's gaps
a tile's are filled with its own mean grey, so there a descriptor depends
on the tile that holds it.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ..geo import BoundsM

if TYPE_CHECKING:
    from .refine import OrthoReader

TILE_PX = 256
"""Side of a described tile [px]."""

STEPS_PER_OCTAVE = 8
"""Resolutions of the ladder per octave: a registration's is within 2^(1/16) (4.4 %) of the one it asks for
(the map's own, 2^(1/16) finer than the finest)."""


class DescribedMap:
    """A map's descriptors by tile, described on first use and kept within ``max_mb``.

    ``ortho``: the map's orthophoto (:class:`~jzi_ros.localizer.refine.OrthoReader`);
    ``describe``: the dense matcher's grey (H, W) -> (H, W, C) descriptors; ``margin_px``: how far
    a descriptor depends on the image (pixels described around each tile and dropped); ``grey``: an RGB
    crop and its coverage -> the grey image that is described (gaps filled); ``origin_m``: the
    lattice's north-west corner (west, north) [m].
    """

    def __init__(
        self,
        ortho: OrthoReader,
        describe: Callable[[np.ndarray], np.ndarray],
        grey: Callable[[np.ndarray, np.ndarray], np.ndarray],
        max_mb: float,
        margin_px: int,
        origin_m: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        self.ortho, self.describe, self.grey, self.margin_px = ortho, describe, grey, margin_px
        self.west_m, self.north_m = origin_m
        self.max_bytes = max_mb * 2**20
        self._tiles: OrderedDict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._bytes = 0
        self.described = 0  # tiles described so far (kept or dropped)

    def gsd(self, wanted_m: float) -> float:
        """The resolution of the ladder [m/px] nearest ``wanted_m`` (never finer than the map's)."""
        return self._resolution(self._step(wanted_m))

    def _step(self, gsd_m: float) -> int:
        return max(0, math.floor(STEPS_PER_OCTAVE * math.log2(gsd_m / self.ortho.gsd_m)))

    def _resolution(self, step: int) -> float:
        return self.ortho.gsd_m * 2 ** ((step + 0.5) / STEPS_PER_OCTAVE)

    def crop(self, bounds: BoundsM, gsd_m: float) -> tuple[BoundsM, np.ndarray, np.ndarray]:
        """The crop of ``bounds`` [m] at ``gsd_m`` (one of :meth:`gsd`'s): where it lies, its descriptors and coverage.

        The crop's north-west corner is ``bounds``' moved by under half a pixel onto the lattice,
        its size the pyramid's read's (``round(side / gsd)`` pixels): (H, W, C) descriptors and
        (H, W) bool, pixel (r, c) centred at ``(west + (c + 0.5) gsd, north - (r + 0.5) gsd)`` of
        the returned bounds.
        """
        step = self._step(gsd_m)
        gsd = self._resolution(step)
        c0, r0 = round((bounds.west_m - self.west_m) / gsd), round((self.north_m - bounds.north_m) / gsd)
        w, h = (
            max(1, round((bounds.east_m - bounds.west_m) / gsd)),
            max(1, round((bounds.north_m - bounds.south_m) / gsd)),
        )
        out: np.ndarray | None = None
        valid = np.zeros((h, w), bool)
        for ti in range(r0 // TILE_PX, (r0 + h - 1) // TILE_PX + 1):
            for tj in range(c0 // TILE_PX, (c0 + w - 1) // TILE_PX + 1):
                desc, seen = self._tile(step, ti, tj)
                if out is None:
                    out = np.zeros((h, w, desc.shape[-1]), desc.dtype)
                # the tile's part inside the crop, in the crop's and the tile's pixels
                a0, a1 = max(r0, ti * TILE_PX), min(r0 + h, (ti + 1) * TILE_PX)
                b0, b1 = max(c0, tj * TILE_PX), min(c0 + w, (tj + 1) * TILE_PX)
                rows, cols = slice(a0 - r0, a1 - r0), slice(b0 - c0, b1 - c0)
                tile_rows, tile_cols = (
                    slice(a0 - ti * TILE_PX, a1 - ti * TILE_PX),
                    slice(b0 - tj * TILE_PX, b1 - tj * TILE_PX),
                )
                out[rows, cols] = desc[tile_rows, tile_cols]
                valid[rows, cols] = seen[tile_rows, tile_cols]
        assert out is not None
        west, north = self.west_m + c0 * gsd, self.north_m - r0 * gsd
        snapped = BoundsM(west, north - h * gsd, west + w * gsd, north)
        return snapped, out, valid

    def _tile(self, step: int, ti: int, tj: int) -> tuple[np.ndarray, np.ndarray]:
        """Tile (``ti``, ``tj``) of the ladder's ``step``: described with its margin on first use."""
        key = (step, ti, tj)
        if key in self._tiles:
            self._tiles.move_to_end(key)
            return self._tiles[key]
        gsd, m = self._resolution(step), self.margin_px
        side = TILE_PX + 2 * m
        west, north = self.west_m + (tj * TILE_PX - m) * gsd, self.north_m - (ti * TILE_PX - m) * gsd
        rgb, seen = self.ortho.read(BoundsM(west, north - side * gsd, west + side * gsd, north), gsd)
        inner = (slice(m, m + TILE_PX), slice(m, m + TILE_PX))
        desc = np.ascontiguousarray(self.describe(self.grey(rgb, seen))[inner])
        tile = (desc, np.ascontiguousarray(seen[inner]))
        self.described += 1
        self._tiles[key] = tile
        self._bytes += desc.nbytes + tile[1].nbytes
        while self._bytes > self.max_bytes and len(self._tiles) > 1:
            _, (d, v) = self._tiles.popitem(last=False)
            self._bytes -= d.nbytes + v.nbytes
        return tile
