"""How well a model zooms in on queries it never saw: :func:`evaluate_zoom`.

The model's encoder indexes the map (features reused when the map has them),
the queries (:mod:`.queries`) are encoded once and searched twice, greedily
and with a beam, each keeping ``top_k`` candidates. Per search the metrics of
:func:`.metrics.zoom_metrics` are computed, and the share of queries whose
true position lies inside the 95 % ellipse of the covariance the localizer
would report for them (its formula, :func:`jzi_ros.localizer.covariance`, on
the same candidates). The report goes to ``metrics.json`` in ``out``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..geo import MapDir, ZoomGrid
from ..localizer import covariance, index_map, inside_ellipse_95
from ..model import ZoomModel, beam_search, load_checkpoint
from ..model.search import as_features
from ..progress import bar
from .errors import EvaluationError
from .metrics import zoom_metrics
from .queries import Queries, aerial_queries, geotagged_queries, training_aerial_config

log = logging.getLogger(__name__)

SPLITS = ("heldout", "all")
ENCODE_BATCH = 32
"""Queries encoded per progress step."""


@dataclass(frozen=True)
class EvalConfig:
    """What `jzi evaluate` measures.

    ``map`` and ``model``: the map directory and the checkpoint trained for
    it; ``out``: folder for ``metrics.json``. Queries: ``aerial`` renders
    ``samples`` frames from the map's orthophoto (``seed``; ``split`` "heldout"
    keeps them in the cells training held out, "all" anywhere), ``data`` a CSV
    of geotagged images; one or both. ``beam``: the beam width compared with
    greedy search; ``top_k``: candidates kept per query; ``device``: torch
    device; ``quiet``: no progress bars.
    """

    map: Path
    model: Path
    out: Path
    aerial: bool = False
    data: Path | None = None
    samples: int = 500
    split: str = "heldout"
    beam: int = 4
    top_k: int = 5
    seed: int = 1
    device: str = "cpu"
    quiet: bool = False

    def __post_init__(self) -> None:
        if not self.aerial and self.data is None:
            raise EvaluationError("aerial or data must be given (or both): the queries")
        if self.split not in SPLITS:
            raise EvaluationError(f"split must be one of {', '.join(SPLITS)}, not {self.split!r}")
        if self.samples < 1 or self.beam < 1 or self.top_k < 1:
            raise EvaluationError(
                f"samples, beam and top_k must be 1 or more (got {self.samples}, {self.beam}, {self.top_k})"
            )


@dataclass(frozen=True)
class ZoomReport:
    """What :func:`evaluate_zoom` measured and wrote.

    ``results``: per search ("greedy", "beam B") its :func:`.metrics.zoom_metrics`
    with ``ellipse95_coverage`` added (``errors_m`` (N,) [m] included, which
    ``metrics.json`` leaves out); ``terminal_size_m``: the map's terminal cell
    side [m]; ``metrics_path``: the ``metrics.json`` written; ``seconds``: the
    evaluation's wall time [s].
    """

    results: dict[str, dict]
    terminal_size_m: float
    metrics_path: Path
    seconds: float


def ellipse_coverage(grid: ZoomGrid, paths: np.ndarray, probs: np.ndarray, true_latlon: np.ndarray) -> float:
    """Share of queries whose true position is inside their 95 % ellipse.

    Args:
        grid: The zoom grid searched.
        paths: Terminal paths (N, K, L) of the K candidates, best first.
        probs: Their probabilities (N, K).
        true_latlon: Truth (N, 2) lat/lon [deg].

    Returns:
        The share in 0..1, with the covariance the localizer would report
        about the best cell's centre.
    """
    east, north = grid.frame.to_local(true_latlon[:, 0], true_latlon[:, 1])
    centres = np.array([[grid.center_m(tuple(int(a) for a in p)) for p in q] for q in paths])  # (N, K, 2)
    cov = np.stack(
        [covariance(c[0], c, p, grid.terminal_size_m) for c, p in zip(centres, probs, strict=True)]
    )  # (N, 2, 2)
    offsets = np.stack([east, north], 1) - centres[:, 0]  # (N, 2)
    return float(inside_ellipse_95(offsets, cov).mean())


def load_queries(config: EvalConfig, mapdir: MapDir, image_px: int, train_args: dict) -> Queries:
    """The queries ``config`` asks for, aerial first.

    Args:
        config: The evaluation.
        mapdir: The map.
        image_px: The model's input side [px], the side of aerial frames.
        train_args: The training options stored in the checkpoint (held-out cells, footprints).

    Returns:
        The aerial and geotagged queries together.
    """
    parts = []
    if config.aerial:
        cfg = training_aerial_config(image_px, train_args)
        holdout_seed = train_args.get("seed", 0)
        parts.append(aerial_queries(mapdir, cfg, config.samples, config.seed, config.split, holdout_seed))
    if config.data is not None:
        parts.append(geotagged_queries(config.data, mapdir.grid))
    return Queries.concat(parts)


def encode_queries(model: ZoomModel, images: list[np.ndarray], quiet: bool = False) -> torch.Tensor:
    """Query features (N, F) of ``images``, with a progress bar unless ``quiet``."""
    query = []
    steps = range(0, len(images), ENCODE_BATCH)
    with torch.inference_mode():
        for i in tqdm(steps, desc="encoding queries", unit="batch", disable=quiet, dynamic_ncols=True):
            query.append(model.encode_queries(images[i : i + ENCODE_BATCH]))
    return torch.cat(query)


def evaluate_zoom(config: EvalConfig) -> ZoomReport:
    """Zoom every query greedily and with a beam; write ``metrics.json``.

    Args:
        config: What to evaluate and where to write.

    Returns:
        The metrics per search and where they were written.
    """
    started = time.monotonic()
    model, extra = load_checkpoint(config.model, config.device)
    mapdir = MapDir(config.map)
    feats = as_features(index_map(mapdir, model, progress=bar("indexing map", config.quiet, unit="batch")))
    feats = feats.float().to(config.device)
    train_args = extra.get("train_config") or extra.get("args", {})  # "args": checkpoints of before train_config
    queries = load_queries(config, mapdir, model.cfg.encoder.image_px, train_args)
    log.info("%d queries on %s", len(queries.images), mapdir.grid.describe())
    query = encode_queries(model, queries.images, config.quiet)
    results = {}
    for name, beam in (("greedy", 1), (f"beam {config.beam}", config.beam)):
        with torch.inference_mode():
            res = beam_search(model.decoder, query, feats, beam=beam, top_k=config.top_k)
        paths, probs = res.paths.cpu().numpy(), res.probs.cpu().numpy()
        results[name] = zoom_metrics(mapdir.grid, paths, probs, queries.latlon, queries.paths)
        results[name]["ellipse95_coverage"] = ellipse_coverage(mapdir.grid, paths, probs, queries.latlon)
    seconds = round(time.monotonic() - started, 1)
    report = {
        "map": str(mapdir.path),
        "model": str(config.model),
        "grid": mapdir.grid.to_dict(),
        "terminal_size_m": mapdir.grid.terminal_size_m,
        "queries": {
            "aerial": config.samples if config.aerial else 0,
            "split": config.split,
            "geotagged": str(config.data) if config.data else None,
        },
        "results": {n: {k: v for k, v in r.items() if k != "errors_m"} for n, r in results.items()},
        "seconds": seconds,
    }
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    return ZoomReport(results, mapdir.grid.terminal_size_m, out / "metrics.json", seconds)
