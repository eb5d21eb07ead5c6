"""How well a model zooms in on queries it never saw: :func:`evaluate_zoom`.

The model's encoder indexes the map (features reused when the map has them),
the queries (:mod:`.queries`) are encoded once and searched twice, greedily
and with a beam, each keeping ``top_k`` candidates. Per search the metrics of
:func:`.metrics.zoom_metrics` are computed with the covariance, confidence
and FIX status the localizer would publish (the checkpoint's calibration).
Aerial queries come from the map's own raster ("map") and from every
``query_rasters`` raster (another date or sensor of the place), each
reported on its own; the report goes to ``metrics.json`` in ``out``.
With ``flat`` the same queries are also placed by flat retrieval
(:mod:`.retrieval`, the baseline at an equal encoder) and both searches are
timed; with ``fine_study`` a ground robot's two fine-stage designs are
measured (:mod:`.fine_stage`).

A heading-known model (``train_config`` ``heading_known``: ``jzi train
--heading-known``) encodes aerial queries turned north up with an IMU's
attitude (:func:`.queries.north_up_queries`), as the localizer would; their
registration gets the camera's frame and that same attitude. Geotagged
queries have no attitude and are refused for such a model.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data import query_raster_problem
from ..data.street import StreetConfig
from ..geo import MapDir, terminal_number, terminal_paths
from ..localizer import DEFAULT_MIN_CONFIDENCE, Calibration, index_map
from ..localizer.calibration import map_calibration
from ..localizer.index import encode_terminal_views, zoomable
from ..localizer.refine import Refiner
from ..model import ZoomModel, beam_search, load_checkpoint
from ..model.search import ViewTokens
from ..outputs import check_replaceable, check_writable, finish_partial, start_partial
from ..progress import bar
from .benchmark import median_ms, scaling
from .errors import EvaluationError
from .fine_stage import FineStudyConfig, fine_study
from .metrics import PER_QUERY, zoom_metrics
from .queries import (
    Queries,
    aerial_queries,
    geotagged_queries,
    north_up_queries,
    street_queries,
    training_aerial_config,
)
from .registration import refined_metrics
from .retrieval import EMBED_DIM, FlatRetrieval

log = logging.getLogger(__name__)

SPLITS = ("heldout", "all")
ENCODE_BATCH = 32
"""Queries encoded per progress step."""
FLAT = "flat retrieval"
"""The name of the flat retrieval baseline's results."""


@dataclass(frozen=True)
class EvalConfig:
    """What `jzi evaluate` measures.

    ``map`` and ``model``: the map directory and the checkpoint trained for
    it; ``out``: folder for ``metrics.json``. Queries: ``aerial`` renders
    ``samples`` frames from the map's orthophoto and as many from each of
    ``query_rasters`` (the same place from another date or sensor; ``seed``;
    ``split`` "heldout" keeps them in the cells training held out, "all"
    anywhere), ``street`` renders as many street-level frames (a ground
    robot's, as the model was trained with: :mod:`jzi_ros.data.street`) from
    the 3D world of the map's raster and of each of ``query_rasters`` (over
    ``dsm`` and on ``roads``, by default the raster's own), ``data`` a CSV of
    geotagged images; one or more. ``beam``: the
    beam width compared with greedy search; ``top_k``: candidates kept per
    query; ``min_confidence``: the localizer's FIX threshold; ``refine``:
    register the beam's candidates of aerial queries against the map's
    pyramid (:func:`.registration.refined_metrics`: heading and tilt as an IMU
    gives them, height as a rangefinder does); ``device``: torch device;
    ``quiet``: no progress bars. ``flat``: also place every aerial and street
    query by flat retrieval (:mod:`.retrieval`: the same encoder, nearest
    terminal view), its heads trained on ``flat_samples`` frames of the map's
    raster (default: as many as the model trained on), and compare the search's
    cost with the zoom's at ``flat_scale_km`` (a region of that side at the
    model's terminal cell). ``fine_study``: also measure a ground robot's two
    fine-stage designs (:mod:`.fine_stage`) on ``fine_frames`` street frames of
    the first query raster (the map's own without one), its learned head
    trained on ten times as many of the map's raster.
    """

    map: Path
    model: Path
    out: Path
    aerial: bool = False
    street: bool = False
    dsm: Path | None = None
    roads: Path | None = None
    data: Path | None = None
    query_rasters: tuple[Path, ...] = ()
    samples: int = 500
    split: str = "heldout"
    beam: int = 4
    top_k: int = 5
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    refine: bool = True
    seed: int = 1
    device: str = "cpu"
    quiet: bool = False
    flat: bool = False
    flat_samples: int | None = None
    flat_scale_km: float = 100.0
    fine_study: bool = False
    fine_frames: int = 200

    def __post_init__(self) -> None:
        object.__setattr__(self, "query_rasters", tuple(Path(p) for p in self.query_rasters))
        if not (self.aerial or self.street) and self.data is None:
            raise EvaluationError("aerial or street or data must be given (or several): the queries")
        problem = query_raster_problem(self.query_rasters, self.aerial or self.street)
        if problem:
            raise EvaluationError(problem)
        if self.split not in SPLITS:
            raise EvaluationError(f"split must be one of {', '.join(SPLITS)}, not {self.split!r}")
        if self.fine_study and not self.street:
            raise EvaluationError("the fine-stage study is of street frames: give --street with it")
        if self.flat and not (self.aerial or self.street):
            raise EvaluationError("flat retrieval is trained on rendered frames: give --aerial or --street with it")
        if (self.flat_samples is not None and self.flat_samples < 1) or not self.flat_scale_km > 0:
            raise EvaluationError(
                f"flat_samples must be 1 or more and flat_scale_km positive (got {self.flat_samples}, "
                f"{self.flat_scale_km})"
            )
        if self.samples < 1 or self.beam < 1 or self.top_k < 1:
            raise EvaluationError(
                f"samples, beam and top_k must be 1 or more (got {self.samples}, {self.beam}, {self.top_k})"
            )


@dataclass(frozen=True)
class ZoomReport:
    """What :func:`evaluate_zoom` measured and wrote.

    ``results``: per query source ("map" for frames of the map's own raster,
    a query raster's file name, "geotagged") and per search ("greedy", "beam
    B") its :func:`.metrics.zoom_metrics` (the per-query arrays included,
    which ``metrics.json`` leaves out); ``calibration``: the model's, applied;
    ``terminal_size_m``: the map's terminal cell side [m]; ``metrics_path``:
    the ``metrics.json`` written; ``seconds``: the evaluation's wall time [s];
    ``heading_known``: the model was trained heading-known (its queries were
    turned north up with an IMU's attitude).
    """

    results: dict[str, dict[str, dict]]
    calibration: Calibration
    terminal_size_m: float
    metrics_path: Path
    seconds: float
    heading_known: bool = False
    flat_scaling: dict | None = None
    fine_stage: dict | None = None


def load_queries(config: EvalConfig, mapdir: MapDir, image_px: int, train_args: dict) -> dict[str, Queries]:
    """The queries ``config`` asks for, per source: "map", each query raster's name, "street, ...", "geotagged".

    Args:
        config: The evaluation.
        mapdir: The map.
        image_px: The model's input side [px], the side of aerial frames.
        train_args: The training options stored in the checkpoint (held-out cells, footprints).

    Returns:
        Source name -> its queries, in that order.
    """
    sources: dict[str, Queries] = {}
    rasters = [(None, "map"), *((p, p.name) for p in config.query_rasters)]
    if config.aerial:
        for raster, name in rasters:
            sources[name] = render_queries(config, mapdir, "aerial", image_px, train_args, raster)
    if config.street:
        for raster, name in rasters:
            sources[f"street, {name}"] = render_queries(config, mapdir, "street", image_px, train_args, raster)
    if config.data is not None:
        sources["geotagged"] = geotagged_queries(config.data, mapdir.grid)
    return sources


def render_queries(
    config: EvalConfig,
    mapdir: MapDir,
    kind: str,
    image_px: int,
    train_args: dict,
    raster: Path | None = None,
    count: int | None = None,
    seed: int | None = None,
    split: str | None = None,
) -> Queries:
    """Frames of ``kind`` ("aerial" or "street") rendered as the model was trained to see them.

    ``count``, ``seed`` and ``split`` default to the evaluation's; ``raster`` to the map's own.
    """
    count, seed, split = count or config.samples, config.seed if seed is None else seed, split or config.split
    holdout_seed = train_args.get("seed", 0)
    if kind == "aerial":
        cfg = training_aerial_config(image_px, train_args)
        return aerial_queries(mapdir, cfg, count, seed, split, holdout_seed, raster)
    street = StreetConfig.trained(image_px, train_args)
    return street_queries(mapdir, street, count, seed, split, holdout_seed, raster, config.dsm, config.roads)


FLAT_SAMPLES_GENERAL = 6000
"""Frames of the map that train flat retrieval's heads beside a general model (which never trained on the map)."""


def flat_baselines(config: EvalConfig, mapdir: MapDir, model: ZoomModel, train_args: dict) -> dict[str, FlatRetrieval]:
    """Flat retrieval per kind of rendered query ("aerial", "street"), trained on the zoom's own training data.

    Its heads learn from the very frames the model was trained on (their encoded features, cached beside the
    checkpoint by ``jzi train``) when that cache is there and holds only this kind of frame and
    ``config.flat_samples`` is not given; otherwise from as many new frames of the map's raster (a general
    model's training holds none of this map: :data:`FLAT_SAMPLES_GENERAL`), outside the cells training held
    out, drawn with another seed than the queries.
    """
    terminal = encode_terminal_views(mapdir, model, bar("flat retrieval: terminal views", config.quiet))[0]
    kinds = [k for k, asked in (("aerial", config.aerial), ("street", config.street)) if asked]
    out = {}
    for kind in kinds:
        query, paths, origin = _flat_training_frames(config, mapdir, model, kind, train_args)
        labels = terminal_number(paths, mapdir.grid.actions)
        out[kind] = FlatRetrieval.fit(query, labels, terminal, seed=config.seed, trained_on=origin)
    return out


def _flat_training_frames(
    config: EvalConfig, mapdir: MapDir, model: ZoomModel, kind: str, train_args: dict
) -> tuple[torch.Tensor, np.ndarray, str]:
    """Features (N, F) and terminal paths (N, L) of the frames flat retrieval's heads are trained on, and whence."""
    from ..train.config import TrainConfig
    from ..train.errors import TrainError
    from ..train.samples import Samples, cache_path, samples_key

    only_kind = bool(train_args.get(kind)) and not any(
        train_args.get(k) for k in ("aerial", "street", "data") if k != kind
    )
    if config.flat_samples is None and only_kind:
        try:
            trained = TrainConfig.from_dict(train_args)
            cache = cache_path(Path(trained.out), samples_key(trained, mapdir, model.identity()))
        except TrainError as e:  # a checkpoint of another version: render instead
            log.info("flat retrieval: the model's training frames cannot be located (%s)", e)
            cache = None
        if cache is not None and cache.is_file():
            samples = Samples.load(cache).part("train")
            log.info("flat retrieval: trained on the model's own %d training frames (%s)", len(samples.x), cache)
            return torch.from_numpy(samples.x.astype(np.float32)), samples.paths, "the model's training frames"
    if config.flat_samples:
        count = config.flat_samples
    elif model.cfg.general:  # its training drew frames of many places, none of this map
        count = FLAT_SAMPLES_GENERAL
    else:
        count = int(train_args.get("samples", config.samples))
    log.info("flat retrieval: rendering %d %s frames of the map's raster to train its heads", count, kind)
    image_px = model.cfg.encoder.image_px
    frames = render_queries(
        config, mapdir, kind, image_px, train_args, count=count, seed=config.seed + 1000, split="train"
    )
    return encode_queries(model, frames.images, config.quiet), frames.paths, "frames rendered for it"


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
    check_replaceable(config.out, "metrics.json", "evaluation output", (config.map, config.model))  # before the work
    check_writable(config.out)
    model, extra = load_checkpoint(config.model, config.device)
    train_args = extra.get("train_config") or extra.get("args", {})  # "args": checkpoints of before train_config
    heading_known = bool(train_args.get("heading_known", False))
    if heading_known and config.data is not None:
        raise EvaluationError(
            f"{config.model} is heading-known (it sees frames turned north up with the camera's attitude): "
            "geotagged images have no attitude; evaluate it on aerial queries"
        )
    if heading_known and config.street:
        raise EvaluationError(f"{config.model} is heading-known (frames turned north up): street frames look ahead")
    mapdir = MapDir(config.map)
    model = zoomable(mapdir, model)
    feats = index_map(mapdir, model, progress=bar("indexing map", config.quiet, unit="batch"))
    views = ViewTokens.project(model.decoder, feats, device=config.device)
    calibration = map_calibration(mapdir, extra, model.digest(), model.cfg.general)  # the map's own, if any
    if not calibration.fitted and not model.cfg.general:  # a general one's is the map's: map_calibration warned
        log.warning("%s holds no calibration: covariance and confidence are the search's own", config.model)
    sources = load_queries(config, mapdir, model.cfg.encoder.image_px, train_args)
    flat = flat_baselines(config, mapdir, model, train_args) if config.flat else {}
    refiner = Refiner(mapdir.grid, mapdir.pyramid()) if config.refine and mapdir.has_pyramid else None
    if config.refine and refiner is None:
        log.warning("%s has no orthophoto pyramid: no registration (add one with jzi build-pyramid)", mapdir.path)
    camera = training_aerial_config(model.cfg.encoder.image_px, train_args).camera  # of the aerial queries
    results: dict[str, dict[str, dict]] = {}
    for source, queries in sources.items():
        log.info("%d queries (%s) on %s", len(queries.images), source, mapdir.grid.describe())
        images, attitudes = queries.images, None
        if heading_known:  # as the localizer turns a robot's frame with its IMU's attitude
            images, attitudes = north_up_queries(queries, camera, config.seed)
        query = encode_queries(model, images, config.quiet)
        results[source] = {}
        beam_name = f"beam {config.beam}"
        for name, beam in (("greedy", 1), (beam_name, config.beam)):
            search = partial(beam_search, model.decoder, beam=beam, top_k=config.top_k)
            with torch.inference_mode():
                res = search(query, views)
                search_ms = median_ms(partial(search, query[:1], views), 20)
            paths, probs = res.paths.cpu().numpy(), res.probs.float().cpu().numpy()
            results[source][name] = zoom_metrics(
                mapdir.grid, paths, probs, queries.latlon, queries.paths, calibration, config.min_confidence
            ) | {"search_ms": search_ms}
            if name == beam_name and refiner is not None and queries.poses:  # its candidates, registered
                centres = mapdir.grid.centers_m(paths.reshape(-1, paths.shape[-1])).reshape(*paths.shape[:2], 2)
                log.info("registering %d queries (%s) against the map", len(queries.images), source)
                results[source][name] |= refined_metrics(
                    refiner, camera, queries.images, queries.poses, centres, attitudes
                )
        kind = "street" if source.startswith("street, ") else "aerial"
        if kind in flat:  # uncalibrated: the covariance and confidence are its softmax's own
            embedded = flat[kind].embed(query)
            idx, probs = flat[kind].search(embedded, config.top_k)
            paths = terminal_paths(idx, mapdir.grid.actions, mapdir.grid.levels)
            results[source][FLAT] = zoom_metrics(
                mapdir.grid, paths, probs, queries.latlon, queries.paths, Calibration(), config.min_confidence
            ) | {"search_ms": median_ms(partial(flat[kind].search, embedded[:1], config.top_k), 20)}
    seconds = round(time.monotonic() - started, 1)
    report = {
        "map": str(mapdir.path),
        "model": str(config.model),
        "heading_known": heading_known,
        "grid": mapdir.grid.to_dict(),
        "terminal_size_m": mapdir.grid.terminal_size_m,
        "queries": {
            "aerial": config.samples if config.aerial else 0,
            "query_rasters": [str(p) for p in config.query_rasters],
            "split": config.split,
            "geotagged": str(config.data) if config.data else None,
        },
        "calibration": calibration.to_dict(),
        "min_confidence": config.min_confidence,
        "results": {
            source: {n: {k: v for k, v in r.items() if k not in PER_QUERY} for n, r in searches.items()}
            for source, searches in results.items()
        },
        "seconds": seconds,
    }
    scale: dict | None = None
    fine: dict | None = None
    if flat:
        report["flat_training"] = {k: {"frames": f.frames, "from": f.trained_on} for k, f in flat.items()}
        report["flat_scaling"] = scale = flat_scaling(config, mapdir, model)
    if config.fine_study:
        raster = config.query_rasters[0] if config.query_rasters else None
        study = FineStudyConfig(
            mapdir.path,
            Path(config.model),
            raster,
            train_frames=10 * config.fine_frames,
            test_frames=config.fine_frames,
            seed=config.seed,
            quiet=config.quiet,
        )
        report["fine_stage"] = fine = fine_study(study)
    out = Path(config.out)
    tmp = start_partial(out.with_name(out.name + ".partial"))
    (tmp / "metrics.json").write_text(json.dumps(report, indent=2))
    finish_partial(tmp, out, "metrics.json", "evaluation output", (config.map, config.model))
    return ZoomReport(
        results,
        calibration,
        mapdir.grid.terminal_size_m,
        out / "metrics.json",
        seconds,
        heading_known,
        scale,
        fine,
    )


def flat_scaling(config: EvalConfig, mapdir: MapDir, model: ZoomModel) -> dict:
    """The zoom's search (this model's decoder) against flat retrieval over a ``config.flat_scale_km`` region.

    :func:`.benchmark.scaling` at the map's terminal cell side: random values, since cost is what it measures.
    """
    side = config.flat_scale_km
    block_rows = min(2_000_000, max(1, int((side * 1000 / mapdir.grid.terminal_size_m) ** 2)))
    log.info("timing the zoom against flat retrieval over a %g km region", side)
    row = scaling([side], EMBED_DIM, 20, block_rows, model.cfg.decoder, cell_m=mapdir.grid.terminal_size_m)[0]
    return {
        k: row[k]
        for k in (
            "side_km",
            "terminal_m",
            "levels",
            "terminal_cells",
            "zoom_b1_ms",
            "zoom_b4_ms",
            "flat_cosine_ms",
            "flat_per_zoom_b1",
            "flat_per_zoom_b4",
            "feat_dim",
        )
    }
