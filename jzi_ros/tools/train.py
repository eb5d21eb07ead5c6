"""`jzi train`: teach the decoder (and optionally the encoder's last blocks) to zoom.

Two kinds of training data, alone or together:

* ``--aerial``: frames of a downward camera rendered from the map's own
  orthophoto (aerial self-supervision), labelled by the cell under the camera;
* ``--data CSV``: geotagged images (columns image, latitude, longitude).

With a frozen encoder (the default; ``--fine-tune-blocks 0``) every frame and
every view is encoded once and the decoder trains on cached features: fast,
and the CPU default. ``--fine-tune-blocks N`` trains the encoder's last N
blocks too, encoding frames and views at every step (a GPU job).
Multi-GPU: ``torchrun --nproc_per_node K -m jzi_ros.tools.cli train ...``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data import AerialConfig, heldout_cells, in_heldout, pose_paths, render_samples, sample_poses
from ..data.augment import street
from ..data.geotagged import load_geotagged, read_images
from ..errors import JziError
from ..geo import MapDir, ZoomGrid
from ..geo.ortho import LocalOrtho
from ..localizer.index import index_map
from ..model import (
    PACKAGED_WEIGHTS,
    RANDOM_WEIGHTS,
    DecoderConfig,
    Encoder,
    EncoderConfig,
    ModelConfig,
    ZoomModel,
    beam_search,
    load_backbone_weights,
    load_checkpoint,
    save_checkpoint,
    teacher_inputs,
)
from ..model.search import as_features
from .common import bar

log = logging.getLogger(__name__)

DEFAULT_ENCODER = "tf_efficientnet_lite0"
DEFAULT_WEIGHTS = PACKAGED_WEIGHTS


# -- distributed -----------------------------------------------------------------


@dataclass
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @classmethod
    def start(cls, device: torch.device) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun, the standard launcher
        if world == 1:
            return cls()
        import torch.distributed as dist

        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        rank = dist.get_rank()
        if device.type == "cuda":
            device = torch.device("cuda", rank % torch.cuda.device_count())
        return cls(rank, world, device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def agree(self, value: int) -> int:
        """Rank 0's value, on every rank."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.long, device=self.device)
        dist.broadcast(t, 0)
        return int(t)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a scalar over the ranks."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        t = value.detach().float().to(self.device).clone()
        dist.all_reduce(t)
        return t / self.world


# -- data ------------------------------------------------------------------------


@dataclass
class Samples:
    """Encoded training data: query features (N, F), terminal paths (N, L),
    positions (N, 2) [m, local frame] and a validation flag (N,)."""

    x: np.ndarray
    paths: np.ndarray
    east_north: np.ndarray
    val: np.ndarray

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, x=self.x, paths=self.paths, east_north=self.east_north, val=self.val)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Samples:
        with np.load(path) as z:
            return cls(z["x"], z["paths"], z["east_north"], z["val"])

    @classmethod
    def concat(cls, parts: list[Samples]) -> Samples:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("x", "paths", "east_north", "val")))


def _cache_path(out: Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return out.parent / ".jzi_cache" / f"samples-{digest}.npz"


def aerial_samples(
    mapdir: MapDir,
    model: ZoomModel,
    cfg: AerialConfig,
    n_train: int,
    n_val: int,
    seed: int,
    deadline: float,
    quiet: bool,
) -> Samples:
    """Render and encode aerial frames: ``n_train`` outside the held-out cells,
    ``n_val`` inside them (other positions, headings and altitudes)."""
    grid = mapdir.grid
    ortho = LocalOrtho.for_map(mapdir, pad_m=cfg.max_footprint_m(grid))
    heldout = heldout_cells(grid, cfg.holdout_share, seed, cfg.holdout_by_area)
    rng = np.random.default_rng(seed)
    parts = []
    val_split = "heldout" if cfg.holdout_share > 0 else "all"
    for split, count in ((val_split, n_val), ("train", n_train)):
        xs, poses_done = [], []
        chunk = 32
        with tqdm(
            total=count, desc=f"aerial frames ({split})", unit="frame", disable=quiet, dynamic_ncols=True
        ) as pbar:
            while len(poses_done) < count:
                poses = sample_poses(grid, min(chunk, count - len(poses_done)), rng, cfg, split, heldout)
                frames, covered = render_samples(ortho, poses, cfg, rng)
                keep = covered >= cfg.min_coverage
                poses = [p for p, k in zip(poses, keep, strict=True) if k]
                if poses:
                    xs.append(model.encode_queries(list(frames[keep])).cpu().numpy().astype(np.float16))
                    poses_done += poses
                    pbar.update(len(poses))
                if split == "train" and time.monotonic() > deadline and len(poses_done) >= 256:
                    log.warning("time budget: stopping aerial frames at %d of %d", len(poses_done), count)
                    break
        east_north = np.array([[p.east_m, p.north_m] for p in poses_done])
        parts.append(
            Samples(
                np.concatenate(xs), pose_paths(grid, poses_done), east_north, np.full(len(poses_done), split != "train")
            )
        )
    return Samples.concat(parts)


def geotagged_samples(
    mapdir: MapDir,
    model: ZoomModel,
    csv: Path,
    seed: int,
    holdout_share: float,
    by_area: bool,
    copies: int,
    quiet: bool,
) -> Samples:
    """Encode geotagged images; those in held-out cells validate. Each
    training image is also encoded ``copies`` times augmented (crop, colour, blur)."""
    grid = mapdir.grid
    data = load_geotagged(csv, grid)
    heldout = heldout_cells(grid, holdout_share, seed, by_area)
    val = in_heldout(grid, heldout, data.east_north[:, 0], data.east_north[:, 1])
    rng = np.random.default_rng(seed)
    xs, keep = [], []
    batch = 16
    for i in tqdm(range(0, len(data.images), batch), desc="geotagged images", unit="batch", disable=quiet):
        images = read_images(data.images[i : i + batch])
        xs.append(model.encode_queries(images).cpu().numpy().astype(np.float16))
        keep += list(range(i, i + len(images)))
        for _ in range(copies):
            train_idx = [j for j in range(len(images)) if not val[i + j]]
            if train_idx:
                aug = [street(images[j], rng) for j in train_idx]
                xs.append(model.encode_queries(aug).cpu().numpy().astype(np.float16))
                keep += [i + j for j in train_idx]
    keep = np.array(keep)
    return Samples(np.concatenate(xs), data.paths[keep], data.east_north[keep], val[keep])


# -- model -----------------------------------------------------------------------


def build_model(args: argparse.Namespace, mapdir: MapDir) -> ZoomModel:
    grid = mapdir.grid
    enc = EncoderConfig(name=args.encoder, image_px=args.image_px, pooling=args.pooling, query=args.query)
    dec = DecoderConfig(
        feat_dim=Encoder(enc, grid.grid).dim,
        grid=grid.grid,
        levels=grid.levels,
        tokens=args.tokens,
        dim=args.dim,
        depth=args.depth,
        heads=args.heads,
        dropout=args.dropout,
    )
    model = ZoomModel(ModelConfig(enc, dec, grid.to_dict()))
    if args.weights is None:
        raise JziError(
            f"give --weights: a DINOv2 .pth, timm/HF .safetensors, {PACKAGED_WEIGHTS} "
            f"(for efficientnet_lite0) or {RANDOM_WEIGHTS}"
        )
    if args.weights != RANDOM_WEIGHTS:
        load_backbone_weights(model.encoder, args.weights)
    return model


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 5 % of ``base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


@torch.no_grad()
def evaluate_features(model: ZoomModel, feats: torch.Tensor, samples: Samples, beam: int = 1) -> dict:
    """Greedy/beam zoom on encoded samples: path accuracy, per-level accuracy, errors [m]."""
    model.decoder.eval()
    dev = feats.device
    paths = []
    for i in range(0, len(samples.x), 512):
        x = torch.from_numpy(samples.x[i : i + 512]).float().to(dev)
        paths.append(beam_search(model.decoder, x, feats, beam=beam, top_k=1).paths[:, 0].cpu().numpy())
    pred = np.concatenate(paths)
    grid = ZoomGrid.from_dict(model.cfg.region)
    centres = np.array([grid.center_m(tuple(p)) for p in pred])
    err = np.hypot(*(centres - samples.east_north).T)
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
    args: argparse.Namespace,
    dist: Dist,
    deadline: float,
    state: dict | None,
) -> dict:
    """Teacher-forced training of the decoder on cached features."""
    dev = feats.device
    decoder = model.decoder
    train = ~samples.val
    x_all = torch.from_numpy(samples.x[train]).float()
    p_all = torch.from_numpy(samples.paths[train]).long()
    val = Samples(
        samples.x[samples.val], samples.paths[samples.val], samples.east_north[samples.val], samples.val[samples.val]
    )
    net = decoder
    if dist.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(decoder)
    opt = torch.optim.AdamW(decoder.parameters(), lr=args.lr, weight_decay=args.weight_decay, betas=(0.9, 0.95))
    step, total = 0, args.max_steps or 10**9
    history: list[dict] = []
    if state:
        opt.load_state_dict(state["optimizer"])
        step, total, history = state["step"], args.max_steps or state["total"], state.get("history", [])
    gen = torch.Generator().manual_seed(args.seed + 1000 * step)
    per_rank = args.batch // dist.world
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)
    )
    calibrated = bool(args.max_steps) or state is not None
    t0, s0 = time.monotonic(), step
    pbar = tqdm(
        total=None if not calibrated else total,
        initial=step,
        desc="training",
        unit="step",
        disable=args.quiet or not dist.main,
        dynamic_ncols=True,
    )
    perm, pos = torch.randperm(len(x_all), generator=gen), 0
    last_eval = time.monotonic()
    while step < total:
        if not calibrated and step - s0 == 30:  # budget the steps from the measured speed
            per_step = (time.monotonic() - t0) / 30
            total = max(step + 1, step + int((deadline - time.monotonic() - 10) / (per_step * 1.1)))
            total = dist.agree(total)  # every rank runs the same number of steps
            pbar.total = total
            pbar.refresh()
            calibrated = True
        if pos + args.batch > len(perm):
            perm, pos = torch.randperm(len(x_all), generator=gen), 0
        idx = perm[pos + dist.rank * per_rank : pos + (dist.rank + 1) * per_rank]
        pos += args.batch
        x, paths = x_all[idx].to(dev), p_all[idx].to(dev)
        views, acts = teacher_inputs(feats, paths, decoder.cfg)
        warmup = max(1, min(500, total // 20)) if calibrated else 500
        for group in opt.param_groups:
            group["lr"] = lr_at(step, total, args.lr, warmup)
        decoder.train()
        with autocast:
            logits = net(x, views, acts)
            loss = F.cross_entropy(
                logits.reshape(-1, decoder.cfg.actions).float(), paths.reshape(-1), label_smoothing=args.label_smoothing
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder.parameters(), 1.0)
        opt.step()
        loss = dist.mean(loss.detach())  # the whole batch's loss, for the log
        step += 1
        pbar.update(1)
        done = step >= total
        if dist.main and (done or step == 1 or time.monotonic() - last_eval > args.eval_every_s):
            last_eval = time.monotonic()
            metrics = evaluate_features(model, feats, val) if len(val.x) else {}
            history.append({"step": step, "loss": loss.item(), **{k: v for k, v in metrics.items() if k != "errors_m"}})
            pbar.set_postfix(
                loss=f"{loss.item():.3f}",
                val_acc=f"{metrics.get('path_acc', float('nan')):.3f}",
                val_med_m=f"{metrics.get('median_m', float('nan')):.1f}",
            )
            save_checkpoint(
                args.out,
                model,
                {
                    "train_state": {"optimizer": opt.state_dict(), "step": step, "total": total, "history": history},
                    "args": _jsonable(vars(args)),
                },
            )
        elif step % 50 == 0:
            pbar.set_postfix(loss=f"{loss.item():.3f}")
        if time.monotonic() > deadline and not args.max_steps and dist.world == 1:
            break
    pbar.close()
    return {"steps": step, "history": history}


def _jsonable(d: dict) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items() if k != "run"}


# -- command ---------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this command."""
    p.add_argument("--map", required=True, type=Path, help="map directory (jzi build-map)")
    p.add_argument("--out", required=True, type=Path, help="checkpoint to write, e.g. model.pt")
    p.add_argument("--aerial", action="store_true", help="train on frames rendered from the map's orthophoto")
    p.add_argument("--data", type=Path, help="CSV of geotagged images: image, latitude, longitude")
    p.add_argument("--minutes", type=float, default=10.0, help="wall-time budget of the whole run (default 10)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps instead of the budget")
    p.add_argument("--samples", type=int, default=12000, help="aerial training frames (default 12000)")
    p.add_argument("--val-samples", type=int, default=500, help="aerial validation frames in held-out cells")
    p.add_argument(
        "--footprint-cells",
        type=float,
        nargs=2,
        default=(4.0, 8.0),
        metavar=("MIN", "MAX"),
        help="ground width an aerial frame sees, in terminal cells (default 4 8)",
    )
    p.add_argument(
        "--augment",
        type=int,
        default=2,
        help="augmented copies (crop, colour, blur) of each geotagged training image (default 2)",
    )
    p.add_argument("--holdout", type=float, default=0.1, help="share of terminal cells held out (default 0.1)")
    p.add_argument(
        "--holdout-by-area",
        action="store_true",
        help="hold out whole cells of the level above the terminal one (areas), not single cells",
    )
    p.add_argument("--preset", help="defaults from config/presets/NAME.yaml (e.g. jzi_paper, robot) or a YAML path")
    p.set_defaults(preset_section="train")
    p.add_argument("--encoder", default=DEFAULT_ENCODER, help=f"timm backbone (default {DEFAULT_ENCODER})")
    p.add_argument(
        "--weights",
        default=DEFAULT_WEIGHTS,
        help=f"backbone weights: .pth/.safetensors, {PACKAGED_WEIGHTS} or {RANDOM_WEIGHTS}",
    )
    p.add_argument("--image-px", type=int, default=224, help="encoder input size (default 224)")
    p.add_argument("--pooling", choices=["cls", "mean"], default="cls", help="global feature (ViT CLS or mean)")
    p.add_argument(
        "--query",
        choices=["single", "halves"],
        default="single",
        help="frame encoding: centre square (default) or the paper's two halves of an S x 2S resize",
    )
    p.add_argument(
        "--tokens",
        choices=["children", "cls"],
        default="children",
        help="decoder tokens per view: one per child (default) or the paper's one CLS token",
    )
    p.add_argument(
        "--fine-tune-blocks",
        type=int,
        default=0,
        help="also train the encoder's last N blocks, encoding at every step (a GPU job; default 0)",
    )
    p.add_argument("--workers", type=int, default=2, help="data loader workers when fine-tuning (default 2)")
    p.add_argument("--dim", type=int, default=128, help="decoder width (default 128; the paper: 768)")
    p.add_argument("--depth", type=int, default=3, help="decoder layers (default 3; the paper: 6)")
    p.add_argument("--heads", type=int, default=4, help="decoder heads (default 4; the paper: 8)")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--eval-every-s", type=float, default=60.0, help="validate and save this often [s]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--resume", action="store_true", help="continue the run saved at --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    deadline = started + args.minutes * 60
    if not args.aerial and args.data is None:
        raise JziError("choose training data: --aerial, --data CSV, or both")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise JziError("--device cuda was asked for but torch sees no CUDA device")
    dist = Dist.start(device)
    device = dist.device if dist.world > 1 else device
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    mapdir = MapDir(args.map)
    state = None
    if args.resume:
        model, extra = load_checkpoint(args.out)
        state = extra.get("train_state")
        if state is None:
            raise JziError(f"{args.out} holds no training state to resume")
        print(f"resuming {args.out} at step {state['step']} of {state['total']}")
    else:
        model = build_model(args, mapdir)
    model.to(device)
    model.encoder.eval().requires_grad_(False)
    if args.fine_tune_blocks > 0:
        from .finetune import train_end_to_end

        if dist.main:
            print(f"map: {mapdir.grid.describe()}")
            print(f"fine-tuning the last {args.fine_tune_blocks} blocks of {model.cfg.encoder.name} with the decoder")
        result = train_end_to_end(model, mapdir, args, dist, deadline)
        if dist.main:
            print(
                f"trained {result['steps']} steps in {(time.monotonic() - started) / 60:.1f} min; "
                f"map re-indexed for the fine-tuned encoder"
            )
            print(f"wrote {args.out}")
        return 0
    if dist.main:
        print(f"map: {mapdir.grid.describe()}")
        print(
            f"model: {model.cfg.encoder.name} encoder ({model.encoder.dim}-d, frozen), decoder "
            f"{model.cfg.decoder.depth}x{model.cfg.decoder.heads}x{model.cfg.decoder.dim}, "
            f"{model.cfg.decoder.tokens} tokens, {sum(p.numel() for p in model.decoder.parameters()):,} parameters"
        )
        index_map(mapdir, model, progress=bar("indexing map views", args.quiet, unit="batch"))
    dist.barrier()
    feats = as_features(index_map(mapdir, model), device)

    aerial_cfg = AerialConfig(
        image_px=args.image_px,
        footprint_cells=tuple(args.footprint_cells),
        holdout_share=args.holdout,
        holdout_by_area=args.holdout_by_area,
    )
    key = {
        "map": str(mapdir.path.resolve()),
        "grid": mapdir.grid.to_dict(),
        "identity": model.identity(),
        "aerial": aerial_cfg.to_dict() if args.aerial else None,
        "samples": args.samples,
        "val": args.val_samples,
        "seed": args.seed,
        "data": str(args.data) if args.data else None,
        "augment": args.augment if args.data else None,
        "holdout": [args.holdout, args.holdout_by_area],
        "query": args.query,
    }
    cache = _cache_path(args.out, key)
    if dist.main and not cache.exists():
        parts = []
        prep_deadline = started + 0.45 * args.minutes * 60
        if args.aerial:
            parts.append(
                aerial_samples(
                    mapdir, model, aerial_cfg, args.samples, args.val_samples, args.seed, prep_deadline, args.quiet
                )
            )
        if args.data:
            parts.append(
                geotagged_samples(
                    mapdir, model, args.data, args.seed, args.holdout, args.holdout_by_area, args.augment, args.quiet
                )
            )
        Samples.concat(parts).save(cache)
    elif dist.main:
        print(f"reusing encoded samples {cache}")
    dist.barrier()
    samples = Samples.load(cache)
    if dist.main:
        where = "held-out cells" if args.holdout > 0 else "new positions"
        print(f"samples: {int((~samples.val).sum())} training, {int(samples.val.sum())} validation ({where})")
    result = train_decoder(model, feats, samples, args, dist, deadline, state)
    if dist.main:
        history = result["history"]
        final = history[-1] if history else {}
        print(
            f"trained {result['steps']} steps in {(time.monotonic() - started) / 60:.1f} min; "
            f"validation: path accuracy {final.get('path_acc', float('nan')):.3f}, "
            f"median error {final.get('median_m', float('nan')):.1f} m"
        )
        print(f"wrote {args.out}")
    if dist.world > 1:
        import torch.distributed as tdist

        tdist.destroy_process_group()
    return 0
