"""A ground robot's fine stage, two designs on the same frames: the geometric one and a learned cross-view head.

After the zoom a ground robot knows its terminal cell (tens of metres); the
fine stage places it inside. Both designs get the same street frames (of a
raster other than the map's: another season), the true terminal cell (as the
zoom returns it when right) and an IMU's attitude (heading ±3°, tilt ±0.5°),
and no odometry or prior, as the localizer's first fix of a drive has:

- **geometric** (the node's, :mod:`jzi_ros.localizer.ground`): the ground
  ahead projected to a bird's-eye view with the camera's height and the IMU's
  roll and pitch, correlated with the map's pyramid; a fix only when its
  checks pass.
- **learned**: a head over the zoom model's frozen features, as fine-grained
  cross-view methods do: the frame's global feature (and the IMU's heading)
  is compared with each of the cell view's g x g child tokens (one per
  sub-cell), a classification over the sub-cells, plus a regression of the
  offset inside the chosen one. Trained here on street frames of the map's own
  raster (outside the test frames' positions' stream) in seconds.

Per design: the error of its position [m] on every frame, and for the
geometric one the share its checks verify and their error. The cell's
centre (the zoom alone) is the reference.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from tqdm import tqdm

from ..data.aerial import heldout_cells
from ..data.street import StreetConfig, street_frames, street_roads, street_world
from ..geo import CameraPose, MapDir, terminal_number, terminal_paths
from ..localizer.ground import GroundRegistrar
from ..localizer.index import encode_terminal_views
from ..localizer.refine import Attitude
from ..model import ZoomModel, load_checkpoint
from ..progress import bar
from .errors import EvaluationError

log = logging.getLogger(__name__)

HEAD_DIM = 128
"""Width of the learned head's shared space."""
FALSE_M = 10.0
"""A verified fine fix farther than this from the truth [m] is a false one (beyond a road's width and a lane)."""


@dataclass(frozen=True)
class FineStudyConfig:
    """What the fine-stage study measures.

    ``map``, ``model`` (a street-level checkpoint for the map: its frozen
    encoder feeds the learned head), ``raster`` (the test frames' world, by
    default the map's own), ``train_frames`` of the map's raster train the
    learned head, ``test_frames`` are measured, ``image_px`` the frames'
    width (a 90° pinhole, 3:4), ``seed``.
    """

    map: Path
    model: Path
    raster: Path | None = None
    train_frames: int = 2000
    test_frames: int = 200
    image_px: int = 640
    seed: int = 1
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.train_frames < 16 or self.test_frames < 1 or self.image_px < 64:
            raise EvaluationError(
                "the fine-stage study needs at least 16 training frames, 1 test frame and 64 px frames "
                f"(got {self.train_frames}, {self.test_frames}, {self.image_px})"
            )


class CrossViewHead(nn.Module):
    """Frame feature (F) + heading vs a cell's g x g child tokens (g*g, F) -> sub-cell logits and offsets.

    The offset (east, north) inside each sub-cell is in sub-cell sides, within ±0.5.
    """

    def __init__(self, feat_dim: int, cells: int) -> None:
        super().__init__()
        self.frame = nn.Sequential(nn.Linear(feat_dim + 2, HEAD_DIM), nn.GELU(), nn.Linear(HEAD_DIM, HEAD_DIM))
        self.child = nn.Linear(feat_dim, HEAD_DIM)
        self.place = nn.Parameter(torch.zeros(cells, HEAD_DIM))
        self.offset = nn.Sequential(nn.Linear(2 * HEAD_DIM, HEAD_DIM), nn.GELU(), nn.Linear(HEAD_DIM, 2))

    def forward(self, frame: torch.Tensor, heading_deg: torch.Tensor, children: torch.Tensor):
        """(B, F), (B,), (B, g*g, F) -> logits (B, g*g), offsets (B, g*g, 2)."""
        h = torch.deg2rad(heading_deg)[:, None]
        q = self.frame(torch.cat([frame, torch.sin(h), torch.cos(h)], 1))  # (B, D)
        c = self.child(children) + self.place  # (B, g*g, D)
        logits = torch.einsum("bd,bcd->bc", q, c) / math.sqrt(HEAD_DIM)
        both = torch.cat([q[:, None].expand_as(c), c], 2)
        return logits, 0.5 * torch.tanh(self.offset(both))


@dataclass
class StreetSet:
    """Rendered street frames: their frozen features, poses (N, 4: east, north, heading, height) and cells."""

    frames: list[np.ndarray]
    feats: torch.Tensor
    poses: np.ndarray
    cells: np.ndarray  # terminal numbers (N,)


def _render(
    mapdir: MapDir, model: ZoomModel, raster: Path | None, count: int, seed: int, px: int, quiet: bool, keep: bool
) -> StreetSet:
    cfg = StreetConfig(image_px=px, holdout_share=0.0)
    world, roads = street_world(mapdir, raster), street_roads(mapdir, raster)
    rng = np.random.default_rng([seed, 6161])
    held = heldout_cells(mapdir.grid, 0.0, 0)
    frames, feats, poses = [], [], []
    with tqdm(total=count, desc="street frames", unit="frame", disable=quiet, dynamic_ncols=True) as pbar:
        for imgs, part in street_frames([world], roads, mapdir.grid, count, rng, cfg, "all", held, 16):
            feats.append(model.encode_queries(list(imgs)))
            poses.append(part)
            if keep:
                frames += list(imgs)
            pbar.update(len(part))
    poses_a = np.concatenate(poses)
    paths, _ = mapdir.grid.paths_at_m(poses_a[:, 0], poses_a[:, 1])
    return StreetSet(frames, torch.cat(feats), poses_a, terminal_number(paths, mapdir.grid.actions))


def _sub_cells(mapdir: MapDir, poses: np.ndarray, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each pose's sub-cell (row-major from the north-west), its offset in sub-cell sides, and its cell's centre."""
    grid = mapdir.grid
    centres = grid.centers_m(terminal_paths(cells, grid.actions, grid.levels))
    side = grid.terminal_size_m / grid.grid
    rel = (poses[:, :2] - centres) / side + grid.grid / 2  # (east, north) in sub-cell sides from the south-west
    col = np.clip(np.floor(rel[:, 0]), 0, grid.grid - 1).astype(int)
    row = np.clip(grid.grid - 1 - np.floor(rel[:, 1]), 0, grid.grid - 1).astype(int)
    offset = np.stack([rel[:, 0] - col - 0.5, rel[:, 1] - (grid.grid - 1 - row) - 0.5], 1)
    return row * grid.grid + col, offset, centres


def _sub_centres(mapdir: MapDir, centres: np.ndarray, sub: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Positions [m] of sub-cells ``sub`` with ``offset`` (sub-cell sides) in cells centred at ``centres``."""
    g = mapdir.grid.grid
    side = mapdir.grid.terminal_size_m / g
    east = centres[:, 0] + (sub % g - g / 2 + 0.5 + offset[:, 0]) * side
    north = centres[:, 1] + (g / 2 - 0.5 - sub // g + offset[:, 1]) * side
    return np.stack([east, north], 1)


def _summary(errors: np.ndarray) -> dict:
    errors = np.asarray(errors, float)
    if errors.size == 0:
        return {"count": 0}
    return {
        "count": int(errors.size),
        "median_m": float(np.median(errors)),
        "p90_m": float(np.percentile(errors, 90)),
        "within_5m": float((errors <= 5).mean()),
        "within_10m": float((errors <= 10).mean()),
    }


def fine_study(config: FineStudyConfig) -> dict:
    """Both fine-stage designs on the same street frames; the report (JSON types).

    Returns:
        ``cell_centre``, ``learned`` and ``geometric`` (all frames), ``geometric_verified`` (its fixes, with
        ``share``), each a summary of errors [m] (median, p90, within 5 and 10 m); timings per frame.
    """
    mapdir = MapDir(config.map)
    model, _ = load_checkpoint(config.model)
    if not mapdir.has_pyramid:
        raise EvaluationError(f"{mapdir.path} has no orthophoto pyramid: the geometric fine stage registers on it")
    grid = mapdir.grid
    torch.manual_seed(config.seed)
    with torch.no_grad():
        children = encode_terminal_views(mapdir, model, bar("terminal views", config.quiet))[1]
        train = _render(mapdir, model, None, config.train_frames, config.seed + 1, config.image_px, config.quiet, False)
        test = _render(
            mapdir, model, config.raster, config.test_frames, config.seed, config.image_px, config.quiet, True
        )
    rng = np.random.default_rng(config.seed)
    head = _train_head(mapdir, train, children, rng, config.seed)
    # the IMU's heading for both designs: the truth with its noise
    attitudes = [Attitude.imu_like(CameraPose(p[0], p[1], p[3], float(p[2]), 90.0), rng) for p in test.poses]
    sub_true, _, centres = _sub_cells(mapdir, test.poses, test.cells)
    truth = test.poses[:, :2]
    t0 = time.perf_counter()
    with torch.no_grad():
        heading = torch.tensor([a.yaw_deg for a in attitudes], dtype=torch.float32)
        logits, offsets = head(test.feats, heading, children[test.cells])
        sub = logits.argmax(1)
        off = offsets[torch.arange(len(sub)), sub].numpy()
    learned_ms = (time.perf_counter() - t0) * 1e3 / len(sub)
    learned = _sub_centres(mapdir, centres, sub.numpy(), off)
    registrar = GroundRegistrar(mapdir.pyramid())
    camera = StreetConfig(image_px=config.image_px).camera
    sigma = grid.terminal_size_m / grid.grid  # the learned head's place: a sub-cell side, one sigma
    runs = {
        "geometric": (centres, None, grid.terminal_size_m / 2),
        "learned_then_geometric": (learned, np.eye(2) * sigma**2, 3 * sigma),
    }
    out = {}
    for name, (around, prior, reach) in runs.items():
        placed, verified, times = around.copy(), np.zeros(len(truth), bool), []
        for i in tqdm(range(len(truth)), desc=name.replace("_", " "), disable=config.quiet, dynamic_ncols=True):
            t = time.perf_counter()
            height = float(test.poses[i, 3])
            reg = registrar.register(test.frames[i], camera, around[i], reach, attitudes[i], height, prior)
            times.append((time.perf_counter() - t) * 1e3)
            if math.isfinite(reg.east_m):
                placed[i] = (reg.east_m, reg.north_m)
            verified[i] = reg.verified
        errors = np.linalg.norm(placed - truth, axis=1)
        out[name] = _summary(errors) | {"ms_per_frame": float(np.median(times))}
        out[f"{name}_verified"] = _summary(errors[verified]) | {
            "share": float(verified.mean()),
            "false_share": float((errors[verified] > FALSE_M).mean()) if verified.any() else 0.0,
        }
    return out | {
        "frames": {"train": config.train_frames, "test": config.test_frames, "image_px": config.image_px},
        "raster": str(config.raster) if config.raster else "map",
        "terminal_m": grid.terminal_size_m,
        "cell_centre": _summary(np.linalg.norm(centres - truth, axis=1)),
        "learned": _summary(np.linalg.norm(learned - truth, axis=1))
        | {"sub_cell_accuracy": float((sub.numpy() == sub_true).mean()), "ms_per_frame": learned_ms},
    }


def _train_head(
    mapdir: MapDir, train: StreetSet, children: torch.Tensor, rng: np.random.Generator, seed: int, epochs: int = 40
) -> CrossViewHead:
    """Fit the learned head on the training frames (sub-cell cross-entropy + offset L1)."""
    torch.manual_seed(seed)
    sub, offset, _ = _sub_cells(mapdir, train.poses, train.cells)
    heading = torch.tensor(train.poses[:, 2] + rng.normal(0, 3.0, len(sub)), dtype=torch.float32)
    head = CrossViewHead(train.feats.shape[1], mapdir.grid.actions)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=0.05)
    y, off = torch.from_numpy(sub), torch.from_numpy(offset.astype(np.float32))
    cells = torch.from_numpy(train.cells)
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(len(y))
            for i in range(0, len(y), 128):
                idx = order[i : i + 128]
                logits, offsets = head(train.feats[idx], heading[idx], children[cells[idx]])
                picked = offsets[torch.arange(len(idx)), y[idx]]
                loss = F.cross_entropy(logits, y[idx]) + 2.0 * F.l1_loss(picked, off[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    return head.eval()


def fine_table(report: dict) -> str:
    """The study's report (:func:`fine_study`) as readable lines."""
    f = report["frames"]
    lines = [
        f"\nfine stage on {f['test']} street frames of {report['raster']} ({f['image_px']} px), the true "
        f"{report['terminal_m']:.0f} m cell given; learned head trained on {f['train']} frames of the map's raster:",
        f"{'design':<26}{'placed':>8}{'median':>10}{'p90':>10}{'<= 5 m':>9}{'<= 10 m':>9}{'false':>8}{'ms':>9}",
    ]
    for name in ("cell_centre", "learned", "geometric", "learned_then_geometric"):
        r = report[name]
        v = report.get(f"{name}_verified")
        placed = f"{100 * v['share']:.0f} %" if v else "all"
        false = f"{100 * v['false_share']:.0f} %" if v and v["count"] else "-"
        ms = f"{r['ms_per_frame']:.1f}" if "ms_per_frame" in r else "-"
        lines.append(
            f"{name.replace('_', ' '):<26}{placed:>8}{r['median_m']:>8.1f} m{r['p90_m']:>8.1f} m"
            f"{100 * r['within_5m']:>7.0f} %{100 * r['within_10m']:>7.0f} %{false:>8}{ms:>9}"
        )
    lines.append(
        "placed: the share its checks verify (all: it always answers); false: verified fixes more than "
        f"{FALSE_M:g} m off; median, p90 and shares over every frame"
    )
    return "\n".join(lines)
