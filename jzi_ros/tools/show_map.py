"""`jzi show-map`: draw a map's region with the grid of its first two levels."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..geo import MapDir


def draw_overview(mapdir: MapDir, out: str | Path, levels: int = 2) -> Path:
    """Save a PNG of the region (finest mosaic up to level 1) with the cell
    borders of levels 1..``levels`` and the actions of level 1 written in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = mapdir.grid
    image = mapdir.mosaic(min(1, grid.levels - 1))
    half = grid.size_m / 2
    fig, ax = plt.subplots(figsize=(9, 9), dpi=110)
    ax.imshow(image, extent=(-half, half, -half, half), interpolation="lanczos")
    uncovered = (
        np.where(mapdir.coverage_fraction[grid.level_offset(1) : grid.level_offset(2)] < 0.999)[0]
        if grid.levels > 1
        else []
    )
    styles = [("yellow", 1.6), ("white", 0.5)]
    for level in range(1, min(levels, grid.levels, len(styles)) + 1):
        colour, width = styles[level - 1]
        n = grid.grid**level
        for k in range(n + 1):
            t = -half + k * grid.size_m / n
            ax.plot([t, t], [-half, half], color=colour, lw=width, alpha=0.9)
            ax.plot([-half, half], [t, t], color=colour, lw=width, alpha=0.9)
    if grid.levels > 1:
        for action in range(grid.actions):
            east, north = grid.center_m((action,))
            low = action in uncovered
            ax.text(
                east,
                north,
                str(action),
                color="red" if low else "yellow",
                ha="center",
                va="center",
                fontsize=13,
                weight="bold",
                alpha=0.85,
            )
    nw = grid.corners_latlon(())[0]
    se = grid.corners_latlon(())[2]
    ax.set_title(
        f"{mapdir.name}: {grid.describe()}\nNW ({nw[0]:.6f}, {nw[1]:.6f})  SE ({se[0]:.6f}, {se[1]:.6f})", fontsize=9
    )
    ax.set_xlabel("east [m] (local transverse Mercator)")
    ax.set_ylabel("north [m]")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this command."""
    p.add_argument("map", type=Path, help="map directory made by `jzi build-map`")
    p.add_argument("--out", type=Path, default=None, help="PNG to write (default: MAP/overview.png)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    mapdir = MapDir(args.map)
    out = draw_overview(mapdir, args.out or mapdir.path / "overview.png")
    print(f"{mapdir.grid.describe()}")
    print(f"wrote {out}")
    return 0
