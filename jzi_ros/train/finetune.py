"""End-to-end training: the encoder's last N blocks together with the decoder.

Frames and the map views along their true paths are encoded at every step,
so the encoder learns what tells places apart. Data loader workers stream the
training items (rendered aerial frames or geotagged photos, augmented) with
the views they need; mixed precision on CUDA; DistributedDataParallel under
torchrun. A GPU job: on a CPU it runs, slowly.

Seeded, not clocked: item ``i`` of epoch ``e`` is drawn from a generator
seeded with ``(seed, e, i)``, each epoch's order from one seeded with
``(seed, e)``, so a run with ``max_steps`` gives the same weights on any
machine and with any number of workers; K processes split each batch of one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - torch's convention
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from ..data import AerialConfig, heldout_cells, render_frame, render_samples, sample_poses, source_ortho
from ..data.aerial import north_up_as_known
from ..data.augment import street
from ..data.geotagged import load_geotagged, read_image
from ..geo import MapDir
from ..geo.ortho import LocalOrtho
from ..localizer.index import index_map
from ..model import ModelConfig, ZoomModel, beam_search, save_checkpoint
from ..model.encoder import pool_queries, prepare_images, prepare_queries
from ..model.search import as_features
from .config import TrainConfig, checkpoint_entries
from .distributed import Dist
from .errors import TrainError
from .samples import aerial_config

log = logging.getLogger(__name__)

Key = tuple[int, int]
"""A training item's key: (epoch, item index)."""


def trainable_blocks(model: ZoomModel, n: int) -> list[nn.Parameter]:
    """Unfreeze the backbone's last ``n`` blocks (and the layers after them).

    Returns:
        The parameters that now train.

    Raises:
        TrainError: ``n`` is not positive, or the backbone has no ``blocks``.
    """
    if n < 1:
        raise TrainError(f"fine_tune_blocks must be positive to fine-tune, not {n}")
    bb = model.encoder.backbone
    bb.requires_grad_(False)
    blocks = list(bb.blocks) if hasattr(bb, "blocks") else []
    if not blocks:
        raise TrainError(f"encoder {model.cfg.encoder.name} has no blocks to fine-tune; train with fine_tune_blocks 0")
    tail = [*blocks[-n:], *(getattr(bb, name) for name in ("norm", "conv_head", "bn2") if hasattr(bb, name))]
    for module in tail:
        module.requires_grad_(True)
    return [p for m in tail for p in m.parameters()]


class TrainItems(Dataset):
    """Training items keyed by (epoch, i), streamed to the data loader workers.

    Item: query input (n, 3, S, S), views along the path (L, 3, S, S), path (L,).

    Items ``0 .. aerial_count - 1`` are aerial frames rendered on the fly from
    one of ``orthos`` (the map's own and the query rasters', shared with the
    workers) at a new pose every epoch, with the domain changes; the
    following ones are the geotagged images of ``csv``, read from disk and
    augmented anew every epoch.
    """

    def __init__(
        self,
        map_path: Path,
        model_cfg: ModelConfig,
        seed: int,
        aerial: AerialConfig | None = None,
        aerial_count: int = 0,
        orthos: list[LocalOrtho] | None = None,
        heldout: np.ndarray | None = None,
        csv: Path | None = None,
    ) -> None:
        self.map_path, self.cfg, self.seed = map_path, model_cfg, seed
        self.aerial, self.aerial_count, self.orthos, self.heldout = aerial, aerial_count, orthos, heldout
        self._map: MapDir | None = None
        self.grid = MapDir(map_path).grid
        self.images: list[Path] = []
        self.paths = np.zeros((0, self.grid.levels), np.int64)
        if csv is not None:
            data = load_geotagged(csv, self.grid)
            self.images, self.paths = list(data.images), data.paths

    def __len__(self) -> int:
        return self.aerial_count + len(self.images)

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        epoch, i = key
        if self._map is None:
            self._map = MapDir(self.map_path)  # opened per worker: memory-mapped views
        rng = np.random.default_rng([self.seed, epoch, i])
        if i < self.aerial_count:
            assert self.aerial is not None and self.orthos and self.heldout is not None  # aerial items exist
            pose = sample_poses(self.grid, 1, rng, self.aerial, "train", self.heldout)[0]
            source = rng.integers(len(self.orthos), size=1)
            frame = render_samples(self.orthos, [pose], self.aerial, rng, source)[0][0]
            path = self.grid.paths_at_m(pose.east_m, pose.north_m)[0][0]
        else:
            frame = street(read_image(self.images[i - self.aerial_count]), rng)
            path = self.paths[i - self.aerial_count]
        x, _ = prepare_queries([frame], self.cfg.encoder)
        path = np.asarray(path, np.int64)
        idx = np.stack([self.grid.view_indices(path[:k]) for k in range(self.grid.levels)])  # (L,)
        views = prepare_images(list(np.asarray(self._map.views[idx])), self.cfg.encoder.image_px)
        return x, views, torch.as_tensor(path, dtype=torch.long)


class EpochSampler(Sampler):
    """This rank's keys (epoch, i) of each epoch.

    Each epoch is a permutation of the items, seeded with (seed, epoch), cut
    into whole batches of ``batch``; each of the ``world`` ranks takes its own
    slice of every batch, so K ranks train on the batches of one.
    """

    def __init__(self, count: int, batch: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.count, self.batch, self.seed, self.rank, self.world = count, batch, seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the keys of ``epoch`` from now on."""
        self.epoch = epoch

    def __len__(self) -> int:
        return (self.count // self.batch) * (self.batch // self.world)

    def __iter__(self) -> Iterator[Key]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.count)
        per_rank = self.batch // self.world
        for start in range(0, self.count - self.batch + 1, self.batch):
            for i in order[start + self.rank * per_rank : start + (self.rank + 1) * per_rank]:
                yield self.epoch, int(i)


class EndToEnd(nn.Module):
    """Frames, views and paths -> the zoom loss (what DDP wraps)."""

    def __init__(self, model: ZoomModel, label_smoothing: float) -> None:
        super().__init__()
        self.model, self.label_smoothing = model, label_smoothing

    def forward(self, x: torch.Tensor, views: torch.Tensor, paths: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the true child at every level.

        Args:
            x: query inputs (B, n, 3, S, S), n crops per frame.
            views: the views along the true paths (B, L, 3, S, S).
            paths: the true terminal paths (B, L).

        Returns:
            The mean loss, a scalar.
        """
        model, cfg = self.model, self.model.cfg.decoder
        b, n = x.shape[:2]
        query = pool_queries(model.encoder(x.flatten(0, 1))[0], n)  # (B, F)
        pooled, children = model.encoder(views.flatten(0, 1))  # (B*L, F), (B*L, A, F)
        tokens = torch.cat([pooled[:, None], children], 1)  # (B*L, 1+A, F)
        tokens = tokens.view(b, cfg.levels, 1 + cfg.actions, -1)[:, :, : cfg.view_tokens]  # (B, L, V, F)
        logits = model.decoder(query, tokens, paths[:, : cfg.levels - 1])  # (B, L, A)
        return F.cross_entropy(
            logits.reshape(-1, cfg.actions).float(), paths.reshape(-1), label_smoothing=self.label_smoothing
        )


@torch.no_grad()
def validate(model: ZoomModel, mapdir: MapDir, frames: list[np.ndarray], east_north: np.ndarray) -> dict:
    """Greedy zoom of validation frames over freshly encoded map views.

    Args:
        model: the model being trained.
        mapdir: the map.
        frames: RGB validation frames.
        east_north: their true positions (N, 2) [m, local frame].

    Returns:
        ``median_m``: median error [m]; ``within_cell``: share of errors
        within one terminal cell side.
    """
    model.eval()
    feats = index_map(mapdir, model, force=True, save=False)
    dev = next(model.parameters()).device
    query = model.encode_queries(frames)
    pred = beam_search(model.decoder, query.to(dev), as_features(feats, dev), 1, 1)
    centres = mapdir.grid.centers_m(pred.paths[:, 0].cpu().numpy())
    err = np.hypot(*(centres - east_north).T)
    return {"median_m": float(np.median(err)), "within_cell": float((err <= mapdir.grid.terminal_size_m).mean())}


def validation_frames(
    mapdir: MapDir, aerial: AerialConfig, ortho: LocalOrtho, heldout: np.ndarray, count: int, seed: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """Aerial validation frames, seeded.

    With ``aerial.heading_known`` they are turned north up
    (:func:`~jzi_ros.data.aerial.north_up_as_known`), as the training frames are.

    Returns:
        ``count`` frames in the held-out cells (anywhere when none is held
        out) and their positions (N, 2) [m, local frame].
    """
    rng = np.random.default_rng([seed, 7])
    split = "heldout" if heldout.any() else "all"
    poses = sample_poses(mapdir.grid, count, rng, aerial, split, heldout)
    camera = aerial.camera
    frames = [render_frame(ortho, camera, p)[0] for p in poses]
    if aerial.heading_known:
        frames = [
            north_up_as_known(f, camera, p, rng, aerial.heading_error_deg) for f, p in zip(frames, poses, strict=True)
        ]
    return frames, np.array([[p.east_m, p.north_m] for p in poses]).reshape(-1, 2)


def train_end_to_end(
    model: ZoomModel, mapdir: MapDir, config: TrainConfig, dist: Dist, deadline_s: float
) -> tuple[int, list[dict]]:
    """Train the encoder's last ``config.fine_tune_blocks`` blocks with the decoder.

    Rank 0 validates on up to 200 aerial frames and writes the checkpoint to
    ``config.out`` every ``config.eval_every_s`` and at the end, then stores
    the map's features for the fine-tuned encoder.

    Args:
        model: the model to train, on the training device.
        mapdir: the map it zooms in.
        config: the run; ``max_steps`` (when given) fixes the number of steps.
        dist: this process's place in the job.
        deadline_s: ``time.monotonic()`` [s] at which a run without
            ``max_steps`` ends.

    Returns:
        The number of steps done and the validation history (step, loss,
        median_m, within_cell).

    Raises:
        TrainError: the encoder cannot be fine-tuned, or there are fewer
            training items than one batch.
    """
    dev = next(model.parameters()).device
    params = [*model.decoder.parameters(), *trainable_blocks(model, config.fine_tune_blocks)]
    model.decoder.requires_grad_(True)
    aerial = aerial_config(config)
    heldout = heldout_cells(mapdir.grid, config.holdout, config.seed, config.holdout_by_area)
    pad_m = aerial.max_footprint_m(mapdir.grid)
    orthos = [source_ortho(mapdir, pad_m, r) for r in (None, *config.query_rasters)] if config.aerial else []
    items = TrainItems(
        mapdir.path,
        model.cfg,
        config.seed,
        aerial,
        config.samples if config.aerial else 0,
        orthos,
        heldout,
        config.data,
    )
    if len(items) < config.batch:
        raise TrainError(f"{len(items)} training items are fewer than one batch ({config.batch}); lower batch")
    sampler = EpochSampler(len(items), config.batch, config.seed, dist.rank, dist.world)
    loader = DataLoader(
        items,
        batch_size=config.batch // dist.world,
        sampler=sampler,
        num_workers=config.workers,
        drop_last=True,
        persistent_workers=config.workers > 0,
        generator=torch.Generator().manual_seed(config.seed),  # the workers' seeds (unused: items seed themselves)
    )
    net: nn.Module = EndToEnd(model, config.label_smoothing)
    if dist.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(net, find_unused_parameters=True)
    opt = torch.optim.AdamW([p for p in params if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)
    )
    val_frames: list[np.ndarray] = []
    val_en = np.zeros((0, 2))
    if config.aerial and dist.main:
        val_frames, val_en = validation_frames(
            mapdir, aerial, orthos[0], heldout, min(config.val_samples, 200), config.seed
        )
    log.info("fine-tuning items: %d training, %d validation frames", len(items), len(val_frames))
    total = config.max_steps or 10**9
    step, history, last_eval_s = 0, [], time.monotonic()
    pbar = tqdm(total=config.max_steps, desc="fine-tuning", unit="step", disable=config.quiet or not dist.main)
    epoch, stop = 0, False
    while not stop:
        sampler.set_epoch(epoch)
        for x, views, paths in loader:
            model.train()
            model.encoder.backbone.eval()  # batch-norm statistics stay as pretrained
            with autocast:
                loss = net(x.to(dev), views.to(dev), paths.to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            pbar.update(1)
            pbar.set_postfix(loss=f"{loss.item():.3f}")
            late = not config.max_steps and dist.agree(int(time.monotonic() > deadline_s))  # rank 0's clock
            stop = step >= total or bool(late)
            if dist.main and (stop or time.monotonic() - last_eval_s > config.eval_every_s):
                model.forget_identity()
                metrics = validate(model, mapdir, val_frames, val_en) if val_frames else {}
                history.append({"step": step, "loss": loss.item(), **metrics})
                save_checkpoint(config.out, model, {"history": history, **checkpoint_entries(config)})
                last_eval_s = time.monotonic()
            if stop:
                break
        epoch += 1
    pbar.close()
    model.forget_identity()
    if dist.main:
        index_map(mapdir, model, force=True)  # the map's features for the fine-tuned encoder
    return step, history
