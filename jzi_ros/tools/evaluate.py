"""`jzi evaluate`: how well a model localizes frames it never saw.

Queries are aerial frames rendered in the held-out cells of training (other
positions, headings, altitudes and colours than any training frame) and/or
geotagged images from a CSV. Each is zoomed greedily and with a beam; the
metrics go to ``metrics.json`` and a table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..evaluation import EvalConfig, evaluate_zoom, format_table
from .common import config_from


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this command."""
    p.add_argument("--map", required=True, type=Path, help="map directory the model was trained for")
    p.add_argument("--model", required=True, type=Path, help="checkpoint from jzi train")
    p.add_argument("--out", required=True, type=Path, help="folder for metrics.json")
    p.add_argument("--aerial", action="store_true", help="render aerial query frames from the map's orthophoto")
    p.add_argument("--data", type=Path, help="CSV of geotagged query images: image, latitude, longitude")
    p.add_argument("--samples", type=int, default=500, help="aerial query frames (default 500)")
    p.add_argument(
        "--split", choices=["heldout", "all"], default="heldout", help="aerial queries in held-out cells or anywhere"
    )
    p.add_argument("--beam", type=int, default=4, help="beam width compared with greedy (default 4)")
    p.add_argument("--top-k", type=int, default=5, help="candidates kept per query (default 5)")
    p.add_argument("--seed", type=int, default=1, help="seed of the query frames (default 1)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table and where the metrics went."""
    report = evaluate_zoom(config_from(EvalConfig, args))
    print(format_table(report.results, report.terminal_size_m))
    print(f"wrote {report.metrics_path}")
    return 0
