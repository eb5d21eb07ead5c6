"""`jzi build-map`: render the views of a zoom grid and its orthophoto pyramid from GeoTIFFs into a map directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.scene import SceneFiles
from ..errors import JziError
from ..geo import build_map
from ..geo.build import human_bytes
from ..geo.grid import BoundsM
from ..geo.mapdir import MapDir
from ..geo.pyramid import source_bytes_in
from ..geo.tiles import read_layout, stitch_tiles
from ..progress import bar
from .common import add_dsm_argument, number_pair

parse_center = number_pair(",", "LAT,LON in degrees", "47.38,8.54")
"""``--center LAT,LON`` [deg] as a (lat, lon) pair."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this command."""
    p.add_argument(
        "--geotiff",
        nargs="+",
        default=[],
        type=Path,
        metavar="TIF",
        help="one or more georeferenced rasters (GeoTIFF or any GDAL raster)",
    )
    p.add_argument(
        "--tiles",
        nargs="+",
        default=[],
        type=Path,
        metavar="DIR",
        help="tiled web-map folders ({z}/{x}/{y}.png|jpg, optional layout.yaml), stitched into GeoTIFFs "
        "next to the map (OUT.sources/)",
    )
    p.add_argument("--out", required=True, type=Path, help="map directory to write, e.g. maps/NAME")
    p.add_argument(
        "--center",
        type=parse_center,
        default=None,
        metavar="LAT,LON",
        help="region centre in degrees (default: centre of the largest covered square)",
    )
    p.add_argument(
        "--size-m",
        type=float,
        default=None,
        help="region side in metres (default: the largest square the rasters cover)",
    )
    p.add_argument("--grid", type=int, default=4, help="children per side at each level (default 4)")
    p.add_argument(
        "--levels",
        type=int,
        default=4,
        help="zoom levels L (default 4; the shipped general models zoom through 2 at most: --levels 2 to use them "
        "without jzi train)",
    )
    p.add_argument("--view-px", type=int, default=224, help="side of each rendered view in pixels (default 224)")
    p.add_argument(
        "--margin",
        type=float,
        default=0.0,
        help="context around each cell, as a share of its side per edge (default 0)",
    )
    p.add_argument(
        "--pyramid-gsd-m",
        type=float,
        default=None,
        metavar="M",
        help="ground resolution of the orthophoto pyramid in m/px (default: the finest raster's; build-map "
        "refuses a pyramid that would not fit on disk and asks for a coarser one)",
    )
    add_dsm_argument(
        p,
        "the map's surface model, onto which tilted frames are laid before registration (default: NAME_dsm.tif "
        "beside a generated scene's raster)",
    )
    p.add_argument("--flat", action="store_true", help="no surface model, even beside a generated scene's raster")
    p.add_argument("--overwrite", action="store_true", help="replace an existing map at --out")
    p.add_argument("--preset", help="defaults from config/presets/NAME.yaml (its map section) or a YAML path")
    p.set_defaults(preset_section="map")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Build the map, then say what it holds and where it is."""
    rasters = list(args.geotiff)
    if not rasters and not args.tiles:
        raise JziError("give --geotiff and/or --tiles")
    for folder in args.tiles:
        layout = read_layout(folder)
        tif = args.out.with_name(args.out.name + ".sources") / f"{folder.name}_z{layout['zoom']}.tif"
        print(f"stitching tiles of {folder} (zoom {layout['zoom']}) into {tif} ...")
        rasters.append(stitch_tiles(folder, tif))
    beside = SceneFiles.beside(rasters[0]).dsm if len(rasters) == 1 else None  # a generated scene's own
    dsm = None if args.flat else args.dsm or (beside if beside is not None and beside.is_file() else None)
    if dsm is not None and args.dsm is None:
        print(f"surface model: {dsm} (beside the raster; --flat leaves it out)")
    mapdir = build_map(
        rasters,
        args.out,
        center=args.center,
        size_m=args.size_m,
        grid=args.grid,
        levels=args.levels,
        view_px=args.view_px,
        margin=args.margin,
        overwrite=args.overwrite,
        pyramid_gsd_m=args.pyramid_gsd_m,
        progress=bar("rendering views", args.quiet),
        pyramid_progress=bar("rendering orthophoto", args.quiet, unit="block"),
        dsm=dsm,
    )
    build = mapdir.meta["build"]
    size = sum(f.stat().st_size for f in mapdir.path.iterdir() if f.is_file())
    print(f"built {mapdir.grid.describe()}")
    print(f"  from {len(mapdir.sources)} raster(s), region coverage {100 * build['region_coverage']:.1f} %")
    print(
        f"  {mapdir.grid.num_views} views of {mapdir.view_px} px in {build['seconds']:.1f} s, "
        f"{human_bytes(size)} on disk"
    )
    print(f"  {describe_pyramid(mapdir)}")
    if mapdir.has_surface:
        sf = mapdir.meta["surface"]
        print(f"  surface model: {sf['file']} at {sf['gsd_m']:g} m/px, {sf['min_m']:g}..{sf['max_m']:g} m")
    print(f"wrote {mapdir.path}  (check it with: jzi show-map {mapdir.path})")
    return 0


def describe_pyramid(mapdir: MapDir) -> str:
    """One line on a map's orthophoto pyramid: file, size, resolution, and its size against its sources'."""
    p = mapdir.meta["pyramid"]
    line = (
        f"orthophoto pyramid: {p['file']} {human_bytes(p['bytes'])} ({p['width_px']}x{p['height_px']} px at "
        f"{p['gsd_m']:.3g} m/px, {len(p['overviews'])} overviews)"
    )
    # rendered from other rasters than the map's (build-pyramid --geotiff): no comparison
    sources = [] if "sources" in p else [s for s in mapdir.sources if s.get("size_bytes") and s.get("bounds_latlon")]
    source_bytes = source_bytes_in(sources, mapdir.grid.frame, BoundsM(*p["bounds_m"]))
    if source_bytes > 0:
        line += f", {p['bytes'] / source_bytes:.2f}x the bytes of the source pixels it covers"
    return line
