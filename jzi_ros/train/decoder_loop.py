"""Training the decoder on cached features: the frozen-encoder loop.

Every frame and every map view is encoded once; each step then teaches the
decoder (teacher forcing) to pick the true child at every level of a batch of
terminal paths. The learning rate warms up linearly and decays by a cosine to
5 % of its peak. With ``max_steps`` the run is exactly that many steps; without,
the steps are budgeted from the speed of the first 30, then of the next 300,
and the time left.
Under torchrun the batch is split over the ranks and DistributedDataParallel
averages the gradients, so K processes take the same steps as one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - torch's convention
from tqdm import tqdm

from ..geo import MapDir, ZoomGrid
from ..model import (
    PACKAGED_WEIGHTS,
    RANDOM_WEIGHTS,
    DecoderConfig,
    Encoder,
    EncoderConfig,
    ModelConfig,
    ZoomModel,
    load_backbone_weights,
    save_checkpoint,
    search_features,
    teacher_inputs,
)
from .config import TrainConfig, checkpoint_entries
from .distributed import Dist
from .errors import TrainError
from .samples import Samples

BUDGET_AT = (30, 300)
"""Without ``max_steps``, the steps that fit the time left are estimated after these many steps, each count
since the last estimate."""


def build_model(config: TrainConfig, mapdir: MapDir) -> ZoomModel:
    """A new model for ``mapdir``'s grid.

    The configured encoder with its backbone weights loaded, and a freshly
    initialised decoder.

    Raises:
        TrainError: ``config.weights`` is None.
    """
    grid = mapdir.grid
    enc = EncoderConfig(name=config.encoder, image_px=config.image_px, pooling=config.pooling, query=config.query)
    dec = DecoderConfig(
        feat_dim=Encoder(enc, grid.grid).dim,
        grid=grid.grid,
        levels=grid.levels,
        tokens=config.tokens,
        dim=config.dim,
        depth=config.depth,
        heads=config.heads,
        dropout=config.dropout,
    )
    model = ZoomModel(ModelConfig(enc, dec, grid.to_dict()))
    if config.weights is None:
        raise TrainError(
            f"give weights: a DINOv2 .pth, timm/HF .safetensors, {PACKAGED_WEIGHTS} "
            f"(for efficientnet_lite0) or {RANDOM_WEIGHTS}"
        )
    if config.weights != RANDOM_WEIGHTS:
        load_backbone_weights(model.encoder, config.weights)
    return model


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Learning rate of ``step`` (0-based) of ``total``.

    Linear warm-up over ``warmup`` steps to ``base``, then cosine decay to
    5 % of ``base`` at ``total``.
    """
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


@torch.no_grad()
def evaluate_features(
    model: ZoomModel, feats: torch.Tensor, samples: Samples, beam: int = 1, grid: ZoomGrid | None = None
) -> dict:
    """Greedy (or beam) zoom on encoded samples.

    Args:
        model: its decoder zooms.
        feats: the map's view features (N, 1 + g*g, F) on the decoder's device.
        samples: encoded frames and their true paths.
        beam: beam width (1: greedy).
        grid: the map's zoom grid (default: the model's region).

    Returns:
        ``path_acc`` (share of exact terminal cells), ``level_acc`` (per level,
        share of right prefixes), ``median_m`` and ``errors_m`` (N,) [m]:
        distance of the chosen cell's centre to the true position.
    """
    model.decoder.eval()
    pred = search_features(model.decoder, samples.x, feats, beam, top_k=1)[0][:, 0]
    grid = grid or ZoomGrid.from_dict(model.cfg.region)
    err = np.hypot(*(grid.centers_m(pred) - samples.east_north).T)
    level_acc = [(pred[:, : k + 1] == samples.paths[:, : k + 1]).all(1).mean() for k in range(grid.levels)]
    return {
        "path_acc": float(level_acc[-1]),
        "level_acc": [float(a) for a in level_acc],
        "median_m": float(np.median(err)),
        "errors_m": err,
    }


def train_decoder(
    model: ZoomModel,
    feats: torch.Tensor,
    samples: Samples,
    config: TrainConfig,
    dist: Dist,
    deadline_s: float,
    state: dict | None = None,
    validate: Callable[[], dict] | None = None,
) -> tuple[int, list[dict]]:
    """Teacher-forced training of the decoder on cached features.

    Rank 0 validates on ``samples``' validation part and writes the checkpoint
    to ``config.out`` after the first step, every ``config.eval_every_s`` and
    at the end.

    Args:
        model: the model whose decoder trains (its encoder is not used).
        feats: the map's view features (N, 1 + g*g, F) on the training device.
        samples: encoded training and validation samples.
        config: the run (batch, learning rate, steps, seed, ...).
        dist: this process's place in the job.
        deadline_s: ``time.monotonic()`` [s] at which a run without
            ``max_steps`` ends.
        state: the ``train_state`` of a checkpoint to continue (optimizer,
            step, total, history), or None.
        validate: the validation's metrics (default: :func:`evaluate_features`
            on ``samples``' validation part; several maps' features need their own).

    Returns:
        The number of steps done and the validation history (one dict per
        validation: step, loss, path_acc, level_acc, median_m).
    """
    dev = feats.device
    decoder = model.decoder
    train = samples.part("train")
    x_all = torch.from_numpy(train.x).float()
    p_all = torch.from_numpy(train.paths).long()
    o_all = torch.from_numpy(train.offsets())
    val = samples.part("val")
    if validate is None:

        def validate() -> dict:
            return evaluate_features(model, feats, val) if len(val.x) else {}

    net: torch.nn.Module = decoder
    if dist.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(decoder)
    opt = torch.optim.AdamW(decoder.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.95))
    step, total = 0, config.max_steps or 10**9
    history: list[dict] = []
    if state:
        opt.load_state_dict(state["optimizer"])
        step, total, history = state["step"], config.max_steps or state["total"], state.get("history", [])
    gen = torch.Generator().manual_seed(config.seed + 1000 * step)
    per_rank = config.batch // dist.world
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)
    )
    calibrated = fixed_total = bool(config.max_steps) or state is not None
    budgets = 0
    t0_s, s0 = time.monotonic(), step
    pbar = tqdm(
        total=None if not calibrated else total,
        initial=step,
        desc="training",
        unit="step",
        disable=config.quiet or not dist.main,
        dynamic_ncols=True,
    )
    perm, pos = torch.randperm(len(x_all), generator=gen), 0
    last_eval_s = time.monotonic()
    while step < total:
        if not fixed_total and step - s0 == BUDGET_AT[budgets]:  # budget the steps from the measured speed
            per_step_s = (time.monotonic() - t0_s) / (step - s0)
            total = max(step + 1, step + int((deadline_s - time.monotonic() - 10) / (per_step_s * 1.05)))
            total = dist.agree(total)  # every rank runs the same number of steps
            pbar.total = total
            pbar.refresh()
            calibrated, budgets = True, budgets + 1
            fixed_total = budgets == len(BUDGET_AT)
            t0_s, s0 = time.monotonic(), step  # the next estimate leaves the first steps' overhead out
        if pos + config.batch > len(perm):
            perm, pos = torch.randperm(len(x_all), generator=gen), 0
        idx = perm[pos + dist.rank * per_rank : pos + (dist.rank + 1) * per_rank]
        pos += config.batch
        x, paths = x_all[idx].to(dev), p_all[idx].to(dev)
        views, acts = teacher_inputs(feats, paths, decoder.cfg, o_all[idx].to(dev))
        warmup = max(1, min(500, total // 20)) if calibrated else 500
        for group in opt.param_groups:
            group["lr"] = lr_at(step, total, config.lr, warmup)
        decoder.train()
        with autocast:
            logits = net(x, views, acts)
            loss = F.cross_entropy(
                logits.reshape(-1, decoder.cfg.actions).float(),
                paths.reshape(-1),
                label_smoothing=config.label_smoothing,
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder.parameters(), 1.0)
        opt.step()
        loss = dist.mean(loss.detach())  # the whole batch's loss, for the log
        step += 1
        pbar.update(1)
        done = step >= total
        if dist.main and (done or step == 1 or time.monotonic() - last_eval_s > config.eval_every_s):
            last_eval_s = time.monotonic()
            metrics = validate()
            history.append({"step": step, "loss": loss.item(), **{k: v for k, v in metrics.items() if k != "errors_m"}})
            pbar.set_postfix(
                loss=f"{loss.item():.3f}",
                val_acc=f"{metrics.get('path_acc', float('nan')):.3f}",
                val_med_m=f"{metrics.get('median_m', float('nan')):.1f}",
            )
            save_checkpoint(
                config.out,
                model,
                {
                    "train_state": {"optimizer": opt.state_dict(), "step": step, "total": total, "history": history},
                    **checkpoint_entries(config),
                },
            )
        elif step % 50 == 0:
            pbar.set_postfix(loss=f"{loss.item():.3f}")
        if time.monotonic() > deadline_s and not config.max_steps and dist.world == 1:
            break
    pbar.close()
    return step, history
