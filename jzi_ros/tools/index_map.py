"""`jzi index-map`: compute a model's encoder features for every view of a map."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..geo import MapDir, feature_key
from ..localizer import index_map
from ..model import load_checkpoint
from ..progress import bar
from ..share import resolve_model
from .common import add_model_argument, calibrated_for


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this command."""
    p.add_argument("--map", required=True, type=Path, help="map directory")
    add_model_argument(p)
    p.add_argument("--batch", type=int, default=16, help="views per encoder pass (default 16)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--force", action="store_true", help="recompute even if the map has these features")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Index the map for the model and say where the features are."""
    started = time.monotonic()
    loaded = load_checkpoint(resolve_model(args.model), args.device)
    model = loaded[0]
    mapdir = MapDir(args.map)
    feats = index_map(
        mapdir, model, batch=args.batch, force=args.force, progress=bar("encoding views", args.quiet, unit="batch")
    )
    key = feature_key(model.feature_identity())
    print(f"{mapdir.grid.num_views} views -> features {tuple(feats.shape)} in {time.monotonic() - started:.1f} s")
    print(f"wrote {mapdir.path / 'features' / key}")
    calibrated_for(args.map, loaded, args.quiet)
    return 0
