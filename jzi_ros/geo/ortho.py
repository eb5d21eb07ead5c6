"""An orthophoto of a region in its local frame, held in memory, with a pyramid.

Rendering camera frames (training samples, simulated flights) samples it
thousands of times; one warp of the source rasters up front makes each
frame a cheap in-memory perspective warp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .errors import MapError
from .frame import LocalFrame
from .grid import BoundsM
from .mapdir import MapDir
from .raster import RasterMosaic

MAX_ORTHO_PIXELS = 30_000**2
"""Largest in-memory orthophoto (about 2.7 GB of RGB)."""


@dataclass
class LocalOrtho:
    """An in-memory orthophoto of ``bounds`` [m] in ``frame``, ``gsd_m`` metres per pixel, north up.

    RGB ``image`` (H, W, 3) uint8 and coverage ``valid`` (H, W).
    """

    image: np.ndarray
    valid: np.ndarray
    bounds: BoundsM
    gsd_m: float
    frame: LocalFrame
    _pyramid: list[np.ndarray] = field(default_factory=list, repr=False)

    @classmethod
    def render(cls, rasters: list[str | Path], frame: LocalFrame, bounds: BoundsM, gsd_m: float) -> LocalOrtho:
        """Warp ``rasters`` onto ``bounds`` [m] in ``frame`` at ``gsd_m`` [m/px].

        The bounds grow east and south to whole pixels; a MapError when the
        image would exceed ``MAX_ORTHO_PIXELS``.
        """
        width = int(math.ceil((bounds.east_m - bounds.west_m) / gsd_m))
        height = int(math.ceil((bounds.north_m - bounds.south_m) / gsd_m))
        if width * height > MAX_ORTHO_PIXELS:
            raise MapError(
                f"an orthophoto of {width} x {height} px at {gsd_m:.2f} m/px does not fit in memory; "
                f"use a coarser ground resolution"
            )
        bounds = BoundsM(bounds.west_m, bounds.north_m - height * gsd_m, bounds.west_m + width * gsd_m, bounds.north_m)
        with RasterMosaic(list(rasters)) as mosaic:
            image, valid = mosaic.render(frame, bounds, width, height)
        return cls(image, valid, bounds, gsd_m, frame)

    @classmethod
    def for_map(
        cls, mapdir: MapDir, gsd_m: float | None = None, pad_m: float = 0.0, rasters: list[str | Path] | None = None
    ) -> LocalOrtho:
        """The region of a map (grown by ``pad_m`` on every side) as an orthophoto.

        Rendered from the rasters the map was built from or, given ``rasters``,
        from those (another date or sensor of the same place), at ``gsd_m``
        (default: the finest of the rasters rendered).
        """
        if rasters is None:
            paths = [s["path"] for s in mapdir.sources]
            missing = [p for p in paths if not Path(p).is_file()]
            if missing:
                raise MapError(f"the map's source raster {missing[0]} is gone; it is needed to render camera views")
        else:
            paths = [str(p) for p in rasters]
        if gsd_m is None:
            if rasters is None:
                gsd_m = min(s["resolution_m"] for s in mapdir.sources)
            else:
                with RasterMosaic(paths) as mosaic:
                    gsd_m = mosaic.infos[0].resolution_m
        half = mapdir.grid.size_m / 2 + pad_m
        return cls.render(paths, mapdir.grid.frame, BoundsM(-half, -half, half, half), gsd_m)

    def level(self, gsd_m: float) -> tuple[np.ndarray, float]:
        """The pyramid level whose pixels are the largest not coarser than ``gsd_m``.

        Returns (image, its gsd [m/px]).
        """
        if not self._pyramid:
            self._pyramid.append(self.image)
        k = max(0, int(math.floor(math.log2(max(gsd_m / self.gsd_m, 1.0)))))
        while len(self._pyramid) <= k and min(self._pyramid[-1].shape[:2]) > 16:
            self._pyramid.append(_half(self._pyramid[-1]))
        k = min(k, len(self._pyramid) - 1)
        return self._pyramid[k], self.gsd_m * 2**k

    def read(self, bounds: BoundsM, gsd_m: float) -> tuple[np.ndarray, np.ndarray]:
        """RGB (H, W, 3) uint8 and valid (H, W) bool of ``bounds`` [m] at ``gsd_m`` [m/px].

        The pixel grid of the map's pyramid (:class:`~jzi_ros.geo.pyramid.Pyramid`):
        W and H are the bounds' width and height over ``gsd_m``, rounded; pixel
        (r, c) has its centre at (west + (c + 0.5) gsd, north - (r + 0.5) gsd);
        outside the orthophoto 0 and False. Unlike the pyramid, it samples the
        nearest pyramid level bilinearly and marks a pixel valid by its centre.
        """
        width = max(1, round((bounds.east_m - bounds.west_m) / gsd_m))
        height = max(1, round((bounds.north_m - bounds.south_m) / gsd_m))
        out_px = np.array(
            [[gsd_m, 0.0, bounds.west_m + gsd_m / 2], [0.0, -gsd_m, bounds.north_m - gsd_m / 2], [0.0, 0.0, 1.0]]
        )
        image, level_gsd = self.level(gsd_m)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        m = (self.pixel_matrix(level_gsd) @ out_px)[:2]
        rgb = cv2.warpAffine(image, m, (width, height), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        m = (self.pixel_matrix(self.gsd_m) @ out_px)[:2]
        valid = cv2.warpAffine(
            self.valid.astype(np.uint8), m, (width, height), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
        )
        return rgb, valid > 0

    def pixel_matrix(self, gsd_m: float) -> np.ndarray:
        """3x3 matrix: local (east, north, 1) [m] -> pixel (col, row, 1) of the level with ``gsd_m``.

        Pixel centres are at integer coordinates.
        """
        b = self.bounds
        return np.array(
            [
                [1 / gsd_m, 0.0, -b.west_m / gsd_m - 0.5],
                [0.0, -1 / gsd_m, b.north_m / gsd_m - 0.5],
                [0.0, 0.0, 1.0],
            ]
        )


def _half(image: np.ndarray) -> np.ndarray:
    """Half the resolution: the mean of each 2 x 2 block (edge rows/cols repeated)."""
    h, w = image.shape[:2]
    padded = np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge").astype(np.uint16)
    out = (padded[0::2, 0::2] + padded[1::2, 0::2] + padded[0::2, 1::2] + padded[1::2, 1::2] + 2) // 4
    return out.astype(np.uint8)
