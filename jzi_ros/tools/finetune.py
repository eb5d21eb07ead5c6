"""End-to-end training: the encoder's last N blocks together with the decoder.

Frames and the map views along their true paths are encoded at every step,
so the encoder learns what tells places apart. Data loader workers stream the
training items (rendered aerial frames or geotagged photos, augmented) with
the views they need; mixed precision on CUDA; DistributedDataParallel under
torchrun. A GPU job: on a CPU it runs, slowly.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..data import AerialConfig, heldout_cells, render_frame, sample_poses
from ..data.augment import photometric, street
from ..data.geotagged import load_geotagged, read_image
from ..geo import MapDir
from ..geo.ortho import LocalOrtho
from ..localizer.index import index_map
from ..model import ZoomModel, beam_search, save_checkpoint
from ..model.encoder import pool_queries, prepare_images, prepare_queries
from ..model.search import as_features, level_offsets


def trainable_blocks(model: ZoomModel, n: int) -> list[nn.Parameter]:
    """Unfreeze the backbone's last ``n`` blocks (and what follows them)."""
    bb = model.encoder.backbone
    bb.requires_grad_(False)
    blocks = list(bb.blocks) if hasattr(bb, "blocks") else []
    if not blocks:
        raise ValueError(f"{model.cfg.encoder.name} has no .blocks to fine-tune")
    tail = [*blocks[-n:], *(getattr(bb, name) for name in ("norm", "conv_head", "bn2") if hasattr(bb, name))]
    for module in tail:
        module.requires_grad_(True)
    return [p for m in tail for p in m.parameters()]


def view_indices(path: np.ndarray, actions: int, levels: int) -> np.ndarray:
    offsets = level_offsets(actions, levels)
    number, out = 0, []
    for k in range(levels):
        out.append(offsets[k] + number)
        number = number * actions + int(path[k])
    return np.array(out)


class TrainItems(Dataset):
    """Item i: (query input (n, 3, S, S), views along the path (L, 3, S, S), path (L,)).

    Aerial items are rendered on the fly from ``ortho`` (shared with the
    workers); geotagged items are read from disk and augmented."""

    def __init__(
        self,
        map_path: str,
        model_cfg,
        kind: str,
        count: int,
        seed: int,
        aerial: AerialConfig | None = None,
        ortho: LocalOrtho | None = None,
        heldout: np.ndarray | None = None,
        csv=None,
    ) -> None:
        self.map_path, self.cfg, self.kind, self.count, self.seed = map_path, model_cfg, kind, count, seed
        self.aerial, self.ortho, self.heldout = aerial, ortho, heldout
        self._map: MapDir | None = None
        grid = MapDir(map_path).grid
        self.grid = grid
        if kind == "geotagged":
            data = load_geotagged(csv, grid)
            self.images, self.paths = data.images, data.paths
            self.count = len(self.images)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int):
        if self._map is None:
            self._map = MapDir(self.map_path)  # opened per worker: memory-mapped views
        rng = np.random.default_rng([self.seed, i, int(time.monotonic_ns() % 1_000_000)])
        if self.kind == "aerial":
            pose = sample_poses(self.grid, 1, rng, self.aerial, "train", self.heldout)[0]
            frame = photometric(render_frame(self.ortho, self.aerial.camera, pose)[0], rng, self.aerial.photometric)
            path = self.grid.paths_at_m(pose.east_m, pose.north_m)[0][0]
        else:
            frame = street(read_image(self.images[i]), rng)
            path = self.paths[i]
        x, _ = prepare_queries([frame], self.cfg.encoder)
        idx = view_indices(path, self.cfg.decoder.actions, self.cfg.decoder.levels)
        views = prepare_images(list(np.asarray(self._map.views[idx])), self.cfg.encoder.image_px)
        return x, views, torch.as_tensor(np.asarray(path), dtype=torch.long)


class EndToEnd(nn.Module):
    """Frames, views and paths -> the zoom loss (what DDP wraps)."""

    def __init__(self, model: ZoomModel, label_smoothing: float) -> None:
        super().__init__()
        self.model, self.label_smoothing = model, label_smoothing

    def forward(self, x: torch.Tensor, views: torch.Tensor, paths: torch.Tensor) -> torch.Tensor:
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
    """Greedy zoom of validation frames over freshly encoded map views."""
    model.eval()
    feats = index_map(mapdir, model, force=True, save=False)
    dev = next(model.parameters()).device
    query = model.encode_queries(frames)
    pred = beam_search(model.decoder, query.to(dev), as_features(feats, dev), 1, 1)
    centres = np.array([mapdir.grid.center_m(tuple(p)) for p in pred.paths[:, 0].cpu().numpy()])
    err = np.hypot(*(centres - east_north).T)
    return {"median_m": float(np.median(err)), "within_cell": float((err <= mapdir.grid.terminal_size_m).mean())}


def train_end_to_end(model: ZoomModel, mapdir: MapDir, args: argparse.Namespace, dist, deadline: float) -> dict:
    dev = next(model.parameters()).device
    params = [*model.decoder.parameters(), *trainable_blocks(model, args.fine_tune_blocks)]
    model.decoder.requires_grad_(True)
    aerial = AerialConfig(
        image_px=args.image_px,
        footprint_cells=tuple(args.footprint_cells),
        holdout_share=args.holdout,
        holdout_by_area=args.holdout_by_area,
    )
    heldout = heldout_cells(mapdir.grid, args.holdout, args.seed, args.holdout_by_area)
    sets = []
    ortho = None
    if args.aerial:
        ortho = LocalOrtho.for_map(mapdir, pad_m=aerial.max_footprint_m(mapdir.grid))
        sets.append(
            TrainItems(
                str(mapdir.path), model.cfg, "aerial", args.samples, args.seed + dist.rank, aerial, ortho, heldout
            )
        )
    if args.data:
        sets.append(TrainItems(str(mapdir.path), model.cfg, "geotagged", 0, args.seed + dist.rank, csv=args.data))
    data = torch.utils.data.ConcatDataset(sets)
    sampler = (
        torch.utils.data.DistributedSampler(data, dist.world, dist.rank, seed=args.seed) if dist.world > 1 else None
    )
    loader = DataLoader(
        data,
        batch_size=args.batch // dist.world,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=args.workers,
        drop_last=True,
        persistent_workers=args.workers > 0,
    )
    net = EndToEnd(model, args.label_smoothing)
    if dist.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(net, find_unused_parameters=True)
    opt = torch.optim.AdamW([p for p in params if p.requires_grad], lr=args.lr, weight_decay=args.weight_decay)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)
    )
    val_frames, val_en = [], np.zeros((0, 2))
    if ortho is not None and dist.main:
        rng = np.random.default_rng([args.seed, 7])
        poses = sample_poses(
            mapdir.grid, min(args.val_samples, 200), rng, aerial, "heldout" if heldout.any() else "all", heldout
        )
        val_frames = [render_frame(ortho, aerial.camera, p)[0] for p in poses]
        val_en = np.array([[p.east_m, p.north_m] for p in poses])
    total = args.max_steps or 10**9
    step, history, last_eval = 0, [], time.monotonic()
    pbar = tqdm(total=args.max_steps, desc="fine-tuning", unit="step", disable=args.quiet or not dist.main)
    epoch = 0
    while step < total and (args.max_steps or time.monotonic() < deadline):
        if sampler is not None:
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
            done = step >= total or (not args.max_steps and time.monotonic() > deadline)
            if dist.main and (done or time.monotonic() - last_eval > args.eval_every_s):
                model.forget_identity()
                metrics = validate(model, mapdir, val_frames, val_en) if val_frames else {}
                history.append({"step": step, "loss": loss.item(), **metrics})
                save_checkpoint(
                    args.out,
                    model,
                    {"history": history, "args": {k: str(v) for k, v in vars(args).items() if k != "run"}},
                )
                last_eval = time.monotonic()
            if done:
                break
        epoch += 1
    pbar.close()
    model.forget_identity()
    if dist.main:
        index_map(mapdir, model, force=True)  # the map's features for the fine-tuned encoder
    return {"steps": step, "history": history}
