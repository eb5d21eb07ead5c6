"""`jzi show-map`: draw a map's region with the grid of its first two levels."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..evaluation import draw_overview
from ..geo import MapDir


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this command."""
    p.add_argument("map", type=Path, help="map directory made by `jzi build-map`")
    p.add_argument("--out", type=Path, default=None, help="PNG to write (default: MAP/overview.png)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Draw the overview and say where it went."""
    mapdir = MapDir(args.map)
    out = draw_overview(mapdir, args.out or mapdir.path / "overview.png")
    print(f"{mapdir.grid.describe()}")
    print(f"wrote {out}")
    return 0
