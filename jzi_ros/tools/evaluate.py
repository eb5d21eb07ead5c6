"""`jzi evaluate`: how well a model localizes frames it never saw.

Queries are aerial frames rendered in the held-out cells of training (other
positions, headings, altitudes and colours than any training frame) and/or
geotagged images from a CSV. Each is zoomed greedily and with a beam; the
metrics go to ``metrics.json`` and a table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data import AerialConfig, heldout_cells, pose_paths, render_samples, sample_poses
from ..data.geotagged import load_geotagged, read_images
from ..errors import JziError
from ..geo import MapDir
from ..geo.ortho import LocalOrtho
from ..localizer import covariance
from ..localizer.index import index_map
from ..model import beam_search, load_checkpoint
from ..model.search import as_features
from .common import bar
from .metrics import CHI2_95_2DOF, format_table, zoom_metrics


def aerial_queries(mapdir: MapDir, cfg: AerialConfig, count: int, seed: int, split: str, holdout_seed: int):
    """Frames (N, S, S, 3), truth (N, 2) lat/lon, truth paths (N, L)."""
    grid = mapdir.grid
    ortho = LocalOrtho.for_map(mapdir, pad_m=cfg.max_footprint_m(grid))
    heldout = heldout_cells(grid, cfg.holdout_share, holdout_seed, cfg.holdout_by_area)
    if split == "heldout" and not heldout.any():
        split = "all"  # the model was trained without held-out cells
    rng = np.random.default_rng([seed, 4242])  # never the training stream
    frames, poses = [], []
    while len(poses) < count:
        batch = sample_poses(grid, min(64, count - len(poses)), rng, cfg, split, heldout)
        imgs, covered = render_samples(ortho, batch, cfg, rng)
        keep = covered >= cfg.min_coverage
        frames.append(imgs[keep])
        poses += [p for p, k in zip(batch, keep, strict=True) if k]
    east = np.array([p.east_m for p in poses])
    north = np.array([p.north_m for p in poses])
    lat, lon = grid.frame.to_latlon(east, north)
    return np.concatenate(frames), np.stack([lat, lon], 1), pose_paths(grid, poses)


def ellipse_coverage(grid, paths: np.ndarray, probs: np.ndarray, latlon: np.ndarray) -> float:
    """Share of queries whose true position lies inside the 95 % ellipse of
    the covariance the localizer would report (its formula, on the top-K)."""
    east, north = grid.frame.to_local(latlon[:, 0], latlon[:, 1])
    inside = []
    for q in range(len(paths)):
        centres = np.array([grid.center_m(tuple(int(a) for a in p)) for p in paths[q]])
        cov = covariance(centres[0], centres, probs[q], grid.terminal_size_m)
        d = np.array([east[q], north[q]]) - centres[0]
        inside.append(d @ np.linalg.solve(cov, d) <= CHI2_95_2DOF)
    return float(np.mean(inside))


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this command."""
    p.add_argument("--map", required=True, type=Path, help="map directory the model was trained for")
    p.add_argument("--model", required=True, type=Path, help="checkpoint from jzi train")
    p.add_argument("--out", required=True, type=Path, help="folder for metrics.json")
    p.add_argument("--aerial", action="store_true", help="render aerial query frames from the map's orthophoto")
    p.add_argument("--data", type=Path, help="CSV of geotagged query images: image, latitude, longitude")
    p.add_argument("--samples", type=int, default=500, help="aerial query frames (default 500)")
    p.add_argument(
        "--split",
        choices=["heldout", "all"],
        default="heldout",
        help="aerial queries in the held-out cells (default) or anywhere",
    )
    p.add_argument("--beam", type=int, default=4, help="beam width compared with greedy (default 4)")
    p.add_argument("--top-k", type=int, default=5, help="candidates kept per query (default 5)")
    p.add_argument("--seed", type=int, default=1, help="seed of the query frames (default 1)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not args.aerial and args.data is None:
        raise JziError("choose queries: --aerial, --data CSV, or both")
    started = time.monotonic()
    model, extra = load_checkpoint(args.model, args.device)
    mapdir = MapDir(args.map)
    feats = as_features(index_map(mapdir, model, progress=bar("indexing map", args.quiet, "batch")))
    feats = feats.float().to(args.device)
    trained = extra.get("args", {})
    images, latlon, paths = [], [], []
    if args.aerial:
        cfg = AerialConfig(
            image_px=model.cfg.encoder.image_px,
            footprint_cells=tuple(trained.get("footprint_cells", AerialConfig.footprint_cells)),
            holdout_share=trained.get("holdout", AerialConfig.holdout_share),
            holdout_by_area=trained.get("holdout_by_area", False),
        )
        f, ll, p = aerial_queries(mapdir, cfg, args.samples, args.seed, args.split, trained.get("seed", 0))
        images += list(f)
        latlon.append(ll)
        paths.append(p)
    if args.data:
        data = load_geotagged(args.data, mapdir.grid)
        images += read_images(data.images)
        latlon.append(data.latlon)
        paths.append(data.paths)
    latlon, paths = np.concatenate(latlon), np.concatenate(paths)
    query = []
    for i in tqdm(range(0, len(images), 32), desc="encoding queries", unit="batch", disable=args.quiet):
        query.append(model.encode_queries(images[i : i + 32]))
    query = torch.cat(query)
    rows = {}
    for name, beam in (("greedy", 1), (f"beam {args.beam}", args.beam)):
        res = beam_search(model.decoder, query, feats, beam=beam, top_k=args.top_k)
        top_paths, probs = res.paths.cpu().numpy(), res.probs.cpu().numpy()
        rows[name] = zoom_metrics(mapdir.grid, top_paths, probs, latlon, paths)
        rows[name]["ellipse95_coverage"] = ellipse_coverage(mapdir.grid, top_paths, probs, latlon)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "map": str(mapdir.path),
        "model": str(args.model),
        "grid": mapdir.grid.to_dict(),
        "terminal_size_m": mapdir.grid.terminal_size_m,
        "queries": {
            "aerial": args.samples if args.aerial else 0,
            "split": args.split,
            "geotagged": str(args.data) if args.data else None,
        },
        "results": {n: {k: v for k, v in r.items() if k != "errors_m"} for n, r in rows.items()},
        "seconds": round(time.monotonic() - started, 1),
    }
    (args.out / "metrics.json").write_text(json.dumps(report, indent=2))
    print(format_table(rows, mapdir.grid.terminal_size_m))
    print(f"wrote {args.out / 'metrics.json'}")
    return 0
