"""`jzi demo`: the pipeline on an embedded default, with no data from outside.

It draws a generated orthophoto (a GeoTIFF in UTM, see :mod:`.scene`), builds
a map of it and draws the map's overview.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..geo import MapDir, build_map
from .progress import bar
from .scene import SceneSpec, write_scene
from .show_map import draw_overview


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the pipeline on a generated scene",
        description="Generate an overhead scene, build its map and draw it.",
    )
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="folder for everything it makes")
    p.add_argument("--levels", type=int, default=3, help="zoom levels of the demo map (default 3)")
    p.add_argument("--view-px", type=int, default=224, help="view size in pixels (default 224)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    spec = SceneSpec()
    tif = args.out / f"scene_seed{spec.seed}.tif"
    if tif.exists():
        print(f"[1/3] scene: reusing {tif}")
    else:
        print(f"[1/3] scene: drawing a {spec.size_px * spec.gsd_m:.0f} m generated orthophoto ...")
        write_scene(tif, spec)
        print(f"      wrote {tif}")
    map_dir = args.out / "map"
    print(f"[2/3] map: rendering the views of a {args.levels}-level zoom grid ...")
    mapdir: MapDir = build_map(
        [tif],
        map_dir,
        levels=args.levels,
        view_px=args.view_px,
        overwrite=True,
        progress=bar("rendering views", args.quiet),
    )
    print(f"      {mapdir.grid.describe()}")
    print(f"      wrote {map_dir}")
    print("[3/3] overview: drawing the region with its grid ...")
    png = draw_overview(mapdir, args.out / "overview.png")
    print(f"      wrote {png}")
    print(f"demo finished in {time.perf_counter() - started:.1f} s")
    return 0
