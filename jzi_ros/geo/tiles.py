"""Tiled web-map folders (XYZ or TMS) as rasters: stitched into a GeoTIFF in EPSG:3857.

Layout: ``ROOT/{z}/{x}/{y}.{png|jpg|jpeg}``, and optionally ``ROOT/layout.yaml``::

    zoom: 18          # the zoom level to use (default: the deepest folder)
    scheme: xyz       # xyz (y from the north, OSM/Google) or tms (y from the south)
    tile_size: 256    # pixels (default: read from the first tile)
    format: jpg       # file suffix (default: any of png, jpg, jpeg)

Missing tiles are left uncovered (alpha 0).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import rasterio
import yaml
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.transform import from_origin
from rasterio.windows import Window

from .errors import RasterError

EARTH_RADIUS_M = 6378137.0
SUFFIXES = (".png", ".jpg", ".jpeg")


def read_layout(root: Path) -> dict:
    """The folder's layout (layout.yaml, with defaults filled in from the files)."""
    if not root.is_dir():
        raise RasterError(f"no such tile folder: {root}")
    layout: dict = {}
    if (root / "layout.yaml").is_file():
        try:
            layout = yaml.safe_load((root / "layout.yaml").read_text()) or {}
        except yaml.YAMLError as exc:
            raise RasterError(f"{root / 'layout.yaml'} is not valid YAML: {exc}") from None
    zooms = sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())
    if not zooms:
        raise RasterError(f"{root} has no zoom folders ({{z}}/{{x}}/{{y}}.png)")
    zoom = int(layout.get("zoom", zooms[-1]))
    if zoom not in zooms:
        raise RasterError(f"{root} has no tiles for zoom {zoom} (it has {zooms})")
    scheme = str(layout.get("scheme", "xyz")).lower()
    if scheme not in ("xyz", "tms"):
        raise RasterError(f"tile scheme must be xyz or tms, not {scheme!r}")
    suffixes = (f".{str(layout['format']).lstrip('.')}",) if "format" in layout else SUFFIXES
    return {"zoom": zoom, "scheme": scheme, "tile_size": layout.get("tile_size"), "suffixes": suffixes}


def stitch_tiles(root: str | Path, out: str | Path) -> Path:
    """Write the tiles of one zoom level as an RGBA GeoTIFF in EPSG:3857."""
    root, out = Path(root), Path(out)
    layout = read_layout(root)
    z = layout["zoom"]
    tiles: dict[tuple[int, int], Path] = {}
    for xdir in (root / str(z)).iterdir():
        if not (xdir.is_dir() and xdir.name.isdigit()):
            continue
        for f in xdir.iterdir():
            if f.suffix.lower() in layout["suffixes"] and f.stem.isdigit():
                y = int(f.stem)
                y = (2**z - 1 - y) if layout["scheme"] == "tms" else y
                tiles[(int(xdir.name), y)] = f
    if not tiles:
        raise RasterError(f"{root / str(z)} holds no tiles")
    xs, ys = [k[0] for k in tiles], [k[1] for k in tiles]
    first = _read_tile(next(iter(tiles.values())))
    ts = int(layout["tile_size"] or (first.shape[0] if first is not None else 256))
    size_m = 2 * math.pi * EARTH_RADIUS_M / 2**z
    west = -math.pi * EARTH_RADIUS_M + min(xs) * size_m
    north = math.pi * EARTH_RADIUS_M - min(ys) * size_m
    width, height = (max(xs) - min(xs) + 1) * ts, (max(ys) - min(ys) + 1) * ts
    out.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=4,
        dtype="uint8",
        crs="EPSG:3857",
        transform=from_origin(west, north, size_m / ts, size_m / ts),
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        photometric="RGB",
        alpha="YES",
        BIGTIFF="IF_SAFER",
    )
    bad = 0
    with rasterio.open(out, "w", **profile) as dst:
        for (x, y), f in sorted(tiles.items()):
            img = _read_tile(f)
            if img is None or img.shape[:2] != (ts, ts):
                bad += 1
                continue
            rgba = np.concatenate([img, np.full((ts, ts, 1), 255, np.uint8)], axis=2)
            dst.write(np.moveaxis(rgba, -1, 0), window=Window((x - min(xs)) * ts, (y - min(ys)) * ts, ts, ts))
        dst.update_tags(SOURCE=f"tiles {root} zoom {z} ({layout['scheme']}), {len(tiles) - bad} tiles")
    if bad == len(tiles):
        raise RasterError(f"no tile of {root / str(z)} could be read")
    return out


def _read_tile(path: Path) -> np.ndarray | None:
    """A PNG/JPEG tile as RGB (H, W, 3) uint8 (grey replicated), None if unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                data = ds.read()
    except RasterioIOError:
        return None
    if data.dtype != np.uint8 or data.shape[0] not in (1, 3, 4):
        return None
    rgb = np.repeat(data, 3, axis=0) if data.shape[0] == 1 else data[:3]
    return np.moveaxis(rgb, 0, -1)
