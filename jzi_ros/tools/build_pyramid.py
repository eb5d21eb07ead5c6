"""`jzi build-pyramid`: add the orthophoto pyramid (ortho.tif) to a map built before maps had one.

Rendered from the map's recorded source rasters, or from --geotiff others
(the rasters moved, or a newer orthophoto of the same region). ``--dsm``
adds a surface model (surface.tif) too, or alone to a map that has its pyramid.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..geo import MapDir
from ..geo.pyramid import add_pyramid
from ..geo.surface import add_surface
from ..progress import bar
from .build_map import describe_pyramid
from .common import add_dsm_argument


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this command."""
    p.add_argument("--map", required=True, type=Path, help="map directory")
    p.add_argument(
        "--geotiff",
        nargs="+",
        default=[],
        type=Path,
        metavar="TIF",
        help="rasters to render it from (default: the rasters the map was built from)",
    )
    p.add_argument(
        "--pyramid-gsd-m",
        type=float,
        default=None,
        metavar="M",
        help="ground resolution in m/px (default: the finest raster's)",
    )
    add_dsm_argument(p, "added as the map's surface model (alone when the map has its pyramid already)")
    p.add_argument("--overwrite", action="store_true", help="replace the pyramid (and surface model) the map has")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Add the pyramid and say what it holds and where it is."""
    started = time.monotonic()
    mapdir = MapDir(args.map)
    if not (args.dsm is not None and mapdir.has_pyramid and not args.overwrite):
        add_pyramid(
            mapdir,
            rasters=list(args.geotiff) or None,
            gsd_m=args.pyramid_gsd_m,
            overwrite=args.overwrite,
            progress=bar("rendering orthophoto", args.quiet, unit="block"),
        )
        print(f"{describe_pyramid(mapdir)} in {time.monotonic() - started:.1f} s")
        print(f"wrote {mapdir.path / mapdir.meta['pyramid']['file']}")
    if args.dsm is not None:
        sf = add_surface(mapdir, args.dsm, overwrite=args.overwrite)
        print(f"surface model: {sf['gsd_m']:g} m/px, {sf['min_m']:g}..{sf['max_m']:g} m from {args.dsm}")
        print(f"wrote {mapdir.path / sf['file']}")
    return 0
