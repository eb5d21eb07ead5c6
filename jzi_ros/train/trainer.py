"""One training run, start to end: :func:`train` (what ``jzi train`` calls).

A run builds a model for the map (or continues the one saved at ``out``),
then either trains the decoder on features the frozen encoder computed once
(:mod:`.decoder_loop`, the CPU default) or trains the encoder's last blocks
with it (:mod:`.finetune`, a GPU job). Under torchrun every process calls
:func:`train`; rank 0 encodes, validates and writes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..errors import JziError
from ..geo import MapDir
from ..localizer import Calibration
from ..localizer.index import index_map, zoomable
from ..model import ZoomModel, load_checkpoint, save_checkpoint
from ..model.search import as_features
from ..model.zoom import read_checkpoint
from ..progress import bar
from .calibrate import calibrate, calibrate_registration
from .config import TrainConfig
from .decoder_loop import build_model, train_decoder
from .distributed import Dist
from .errors import TrainError
from .finetune import train_end_to_end
from .matcher import MatcherTrainConfig, train_matcher
from .samples import aerial_config, encoded_samples

log = logging.getLogger(__name__)

SAMPLES_SHARE = 0.45
MATCHER_SHARE = 0.3
"""The budget's share kept for the learned matcher (``learned_matcher``): its pairs, training and calibration."""
"""Share of the time budget that encoding aerial frames may take (runs without ``max_steps``)."""


@dataclass(frozen=True)
class TrainResult:
    """What a training run did.

    Attributes:
        model: the trained model, on the training device.
        history: one dict per validation (step, loss and the metrics), oldest
            first; empty on ranks other than 0.
        steps: optimiser steps done in all (a resumed run counts on from its start).
        out: the checkpoint written.
        elapsed_s: wall time of the run [s].
        fine_tuned: whether the encoder's last blocks trained (and the map was
            re-indexed for them).
        rank: this process's rank in a torchrun job (0 alone).
        validation: the last validation's metrics (``path_acc``, ``level_acc``
            and ``median_m`` [m] for the decoder; ``median_m`` and
            ``within_cell`` when fine-tuning); empty when none ran.
        calibration: the calibration fit on the validation frames and stored
            in the checkpoint, or None (too few frames, fine-tuning, rank > 0).
        frames: encoded training and validation samples (frozen encoder).
        encode_s: wall time spent rendering and encoding them [s] (0 when cached).
        heading_known: the frames were turned north up (``TrainConfig.heading_known``).
    """

    model: ZoomModel
    history: list[dict]
    steps: int
    out: Path
    elapsed_s: float
    fine_tuned: bool = False
    rank: int = 0
    validation: dict = field(default_factory=dict)
    calibration: Calibration | None = None
    frames: int = 0
    encode_s: float = 0.0
    heading_known: bool = False


def _device(name: str) -> torch.device:
    """The torch device named ``name``, checked to exist."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TrainError(f"device {name!r} is not a torch device (cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainError(f"device {name} was asked for but torch sees no CUDA device")
    return device


def train(config: TrainConfig) -> TrainResult:
    """Train a zoom model for ``config.map`` and write it to ``config.out``.

    Sets torch's CPU threads, joins the torchrun job if there is one, seeds
    torch and NumPy with ``config.seed``, builds the model (or loads the one
    to resume), then trains the decoder on cached features or, with
    ``fine_tune_blocks``, the encoder's last blocks with it. The checkpoint
    holds the model, ``train_config`` (``config.to_dict()``, whose
    ``heading_known`` tells the localizer to turn frames north up) and the history
    (``train_state`` with the optimizer, for resuming, when the encoder is frozen).

    Args:
        config: the run.

    Returns:
        The model, its validation history and where it was written.

    Raises:
        TrainError: the device is missing, there is nothing to resume, or the
            run cannot be set up as asked (other ``JziError`` subclasses come
            from the map, the data and the weights).
    """
    started_s = time.monotonic()
    if config.threads:
        torch.set_num_threads(config.threads)
    dist = Dist.start(_device(config.device))
    try:
        if config.batch < dist.world:
            raise TrainError(f"batch {config.batch} must be at least the number of processes ({dist.world})")
        return _train(config, dist, started_s)
    finally:
        dist.stop()


def initial_model(config: TrainConfig, init: Path, mapdir: MapDir) -> ZoomModel:
    """``init``'s model, made the map's own: fine-tuning starts from its decoder (and its encoder's config).

    Raises:
        TrainError: it was trained for frames of another kind (north up or not), or cannot zoom through the map.
    """
    model, extra = load_checkpoint(init)
    was = bool((extra.get("train_config") or {}).get("heading_known", False))
    if was != config.heading_known:
        raise TrainError(f"init {init} was trained {'with' if was else 'without'} heading_known; so must this run be")
    try:
        model = zoomable(mapdir, model)  # a general model: onto a map of at most its levels
    except JziError as exc:
        raise TrainError(f"init {init}: {exc}") from None
    mine = (config.image_px, config.tokens, config.dim, config.depth, config.encoder)
    dec = model.cfg.decoder
    theirs = (model.cfg.encoder.image_px, dec.tokens, dec.dim, dec.depth, model.cfg.encoder.name)
    if mine != theirs:
        log.info("init %s: its encoder and decoder sizes (%s) are kept over the run's (%s)", init, theirs, mine)
    model.cfg = replace(model.cfg, region=mapdir.grid.to_dict(), general=False)
    return model


def _train(config: TrainConfig, dist: Dist, started_s: float) -> TrainResult:
    """:func:`train` once the process knows its place in the job."""
    # the learned matcher trains after the zoom, in the same budget
    deadline_s = started_s + config.budget_s * (1.0 - MATCHER_SHARE * config.learned_matcher)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    mapdir = MapDir(config.map)
    state = None
    if config.resume:
        model, extra = load_checkpoint(config.out)
        state = extra.get("train_state")
        if state is None:
            raise TrainError(f"{config.out} holds no training state to resume")
        was = bool(extra.get("train_config", {}).get("heading_known", False))
        if was != config.heading_known:
            raise TrainError(
                f"{config.out} was trained {'with' if was else 'without'} heading_known: resume it "
                f"{'with' if was else 'without'} --heading-known (its frames are {'' if was else 'not '}north up)"
            )
        if dist.main:
            log.info("resuming %s at step %d of %d", config.out, state["step"], state["total"])
    elif config.init is not None:
        model = initial_model(config, config.init, mapdir)
    else:
        model = build_model(config, mapdir)
    model.to(dist.device)
    model.encoder.eval().requires_grad_(False)
    if dist.main:
        log.info("map: %s", mapdir.grid.describe())
        if config.heading_known:
            log.info("heading known: frames turned north up (heading error %g deg)", config.heading_error_deg)
    fine_tuned = config.fine_tune_blocks > 0
    calibration, frames, encode_s = None, 0, 0.0
    if fine_tuned:
        if dist.main:
            log.info(
                "fine-tuning the last %d blocks of %s with the decoder", config.fine_tune_blocks, model.cfg.encoder.name
            )
        steps, history = train_end_to_end(model, mapdir, config, dist, deadline_s)
    else:
        if dist.main:
            dec = model.cfg.decoder
            log.info(
                "model: %s encoder (%d-d, frozen), decoder %dx%dx%d, %s tokens, %s parameters",
                model.cfg.encoder.name,
                model.encoder.dim,
                dec.depth,
                dec.heads,
                dec.dim,
                dec.tokens,
                f"{sum(p.numel() for p in model.decoder.parameters()):,}",
            )
            index_map(mapdir, model, progress=bar("indexing map views", config.quiet, unit="batch"))
        dist.barrier()
        feats = as_features(index_map(mapdir, model), dist.device)
        samples_deadline_s = started_s + SAMPLES_SHARE * config.budget_s if config.max_steps is None else None
        encode_started_s = time.monotonic()
        samples = encoded_samples(config, mapdir, model, dist, samples_deadline_s)
        frames, encode_s = len(samples.x), time.monotonic() - encode_started_s
        if dist.main:
            where = "held-out cells" if config.holdout > 0 else "new positions"
            log.info(
                "samples: %d training, %d validation (%s), %d for the calibration",
                samples.count("train"),
                samples.count("val"),
                where,
                samples.count("calib"),
            )
        steps, history = train_decoder(model, feats, samples, config, dist, deadline_s, state)
        if dist.main:
            calib = samples.part("calib") if samples.count("calib") else samples.part("val")
            calibration = calibrate(model, feats, calib, mapdir.grid)
            if calibration is not None and config.aerial and not config.learned_matcher:  # the matcher's fit below
                fitted = calibrate_registration(mapdir, aerial_config(config), config.query_rasters, seed=config.seed)
                if fitted is not None:
                    calibration = fitted.applied_to(calibration, cfog=True)
            if calibration is not None:
                extra = read_checkpoint(config.out).get("extra", {})
                save_checkpoint(config.out, model, {**extra, "calibration": calibration.to_dict()})
            if config.learned_matcher:
                left_min = (started_s + config.budget_s - time.monotonic()) / 60
                minutes = MATCHER_SHARE * config.minutes if config.max_steps is not None else left_min
                matcher = train_matcher(
                    MatcherTrainConfig(
                        config.out, minutes=max(0.5, 0.6 * minutes), seed=config.seed, quiet=config.quiet
                    )  # about 40 % of its share goes to making pairs and the registration's fit
                )
                checks = matcher.checks or {}
                log.info(
                    "learned matcher: %d steps; the node's matcher auto uses %s",
                    matcher.report.get("steps", 0),
                    "it" if checks.get("better_than_cfog", True) else "CFOG (it verified more right places)",
                )
    last = history[-1] if history else {}
    return TrainResult(
        model=model,
        history=history,
        steps=steps,
        out=config.out,
        elapsed_s=time.monotonic() - started_s,
        fine_tuned=fine_tuned,
        rank=dist.rank,
        validation={k: v for k, v in last.items() if k not in ("step", "loss")},
        calibration=calibration,
        frames=frames,
        encode_s=encode_s,
        heading_known=config.heading_known,
    )
