"""Training the learned matcher (``jzi train-matcher``): descriptors on which co-located crops of two sources agree.

Pairs are made as the registration meets them (:func:`registration_pairs`):
a frame of :func:`~jzi_ros.train.calibrate.registration_frames` (the map's
raster and every ``--query-rasters`` raster, with the training's domain
changes; in 3D over a surface model) is projected onto the ground with an
IMU's attitude (heading, roll and pitch off by an IMU's noise) at the
registration's resolution, as :meth:`~jzi_ros.localizer.refine.Refiner.refine`
projects it, and the map's pyramid is read around where the camera truly is,
shifted by up to half the search window. Training (:func:`train_descriptor`)
correlates each projected frame with its crop as the dense matcher does
(mean-free query under its mask, the crop's local energy with the same floor)
and minimizes the cross-entropy of the correlation over every offset with the
true one as the label: the true offset must win and every shifted one lose.
The fine stage's patches (a quarter of the view's side) are held to the same
within a few pixels of where each truly lies (:func:`patch_correlation`): the
registration's inliers are those patches, and across years too few of them
agreed on CFOG.
Both images of a pair are turned by the same multiple of 90° and mirrored
alike, so the descriptor does not learn the map's main directions, and pairs
whose frame came from another raster are drawn three times as often
(:data:`CROSS_WEIGHT`).

The held-out pairs measure it against CFOG with the same correlation: the
share whose peak lies within a pixel of the truth, the peak's margin over the
best offset outside its neighbourhood (the matcher's distinctiveness), and the
share of patches that find their place. :func:`train_matcher` fits its checks
(:func:`fit_checks`: the least peak ratios that keep wrong places out, and
whether it verifies more right places than CFOG), stores the network and them
in the checkpoint (``matcher``) and refits the registration's covariance and
heading scales with it. A matcher trained for another checkpoint (another
place, sensor or years) can be taken instead of training one
(:func:`taken_matcher`); its checks and those scales are then fitted on this map.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual alias
from tqdm import tqdm

from ..data import AerialConfig
from ..geo import BoundsM, CameraPose, MapDir
from ..localizer.calibration import WITHIN_CELLS, Calibration
from ..localizer.errors import LocalizerError
from ..localizer.matchers import cfog, learned_input
from ..localizer.refine import Attitude, RefineConfig, Refiner, grey, ground_view, map_grey
from ..model import load_checkpoint, save_checkpoint
from ..model.descriptor import DescriptorConfig, DescriptorNet, checkpoint_matcher, load_descriptor, matcher_state
from ..model.errors import CheckpointError
from ..model.zoom import read_checkpoint
from ..share import resolve_model
from .calibrate import RegistrationFit, calibrate_registration, registration_frames
from .config import TrainConfig
from .errors import TrainError
from .samples import aerial_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MatcherTrainConfig:
    """What ``jzi train-matcher`` does.

    ``model``: the checkpoint to give a learned matcher (its map and rasters
    are those it was trained with, unless ``map`` and ``query_rasters`` say
    otherwise); ``out``: where the checkpoint with the matcher goes (default:
    ``model`` itself); ``pairs``: training pairs (a tenth more are held out);
    ``minutes`` / ``max_steps``: the training's budget (the first reached
    ends it; pairs are made first); ``calibrate``: fit its checks
    (:func:`fit_checks`) and the registration's covariance scale;
    ``checks_only``: keep the checkpoint's network and only fit those;
    ``matcher_from``: another checkpoint whose learned matcher (trained on
    another place or gap) this one takes instead of training its own; its
    checks and the registration's scales are fitted on this map as with
    ``checks_only`` (without ``calibrate`` its checks are dropped: they were another map's);
    ``query_px``: side of the projected frame's crop; ``search_px``: the map
    crop's margin around it (the truth lies within half of it of the centre);
    ``temperature``: of the softmax over offsets.
    """

    model: Path
    out: Path | None = None
    map: Path | None = None
    query_rasters: tuple[Path, ...] | None = None
    pairs: int = 3000
    minutes: float = 6.0
    max_steps: int | None = None
    batch: int = 32
    lr: float = 2e-3
    query_px: int = 48
    search_px: int = 32
    temperature: float = 0.03
    descriptor: DescriptorConfig = DescriptorConfig()
    calibrate: bool = True
    checks_only: bool = False
    matcher_from: Path | None = None
    seed: int = 0
    quiet: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", resolve_model(self.model))  # a shipped model's name, or a path
        if self.matcher_from is not None:
            object.__setattr__(self, "matcher_from", resolve_model(self.matcher_from))
        if self.checks_only and self.matcher_from is not None:
            raise TrainError("checks_only keeps the checkpoint's own matcher; matcher_from takes another's: not both")
        if self.pairs < 20:
            raise TrainError(f"the learned matcher needs 20 pairs or more, not {self.pairs}")
        if not self.minutes > 0 or (self.max_steps is not None and self.max_steps < 1):
            raise TrainError("the matcher's budget must be positive minutes (and max_steps >= 1)")
        if self.query_px < 16 or self.search_px < 2:
            raise TrainError(f"query_px >= 16 and search_px >= 2, not {self.query_px} and {self.search_px}")


@dataclass
class Pairs:
    """Grey crops of registration pairs.

    ``query`` (N, Q, Q) projected frames, ``mask`` (N, Q, Q) what the camera saw, ``reference``
    (N, Q + 2S, Q + 2S) map crops, ``target`` (N, 2) the true offset (row, col) of the query's
    top-left in the reference, ``cross`` (N,) whether the frame came from another raster than the map's.
    """

    query: np.ndarray
    mask: np.ndarray
    reference: np.ndarray
    target: np.ndarray
    cross: np.ndarray

    def __len__(self) -> int:
        return len(self.query)

    def take(self, idx: np.ndarray) -> Pairs:
        """The pairs at ``idx``."""
        return Pairs(self.query[idx], self.mask[idx], self.reference[idx], self.target[idx], self.cross[idx])


MIN_PAIRS_SHARE = 0.8
"""The least share of the asked pairs that the matcher trains on (with a warning) when the map gives no more."""


def registration_pairs(
    mapdir: MapDir,
    train_config: TrainConfig,
    count: int,
    query_px: int,
    search_px: int,
    rng: np.random.Generator,
    quiet: bool = False,
) -> Pairs:
    """``count`` pairs as the module docstring describes, from the rasters of ``train_config``."""
    if not mapdir.has_pyramid:
        raise TrainError(f"{mapdir.path} has no orthophoto pyramid: the matcher trains against it (jzi build-pyramid)")
    cfg = aerial_config(train_config)
    camera, pyramid, work_px = cfg.camera, mapdir.pyramid(), RefineConfig().work_px
    q, s = query_px, search_px
    out: dict[str, list] = {"query": [], "mask": [], "reference": [], "target": [], "cross": []}
    rasters = tuple(train_config.query_rasters)
    frames = registration_frames(mapdir, cfg, rasters, 4 * count, rng)  # some frames give no pair: enough to spare
    bar = tqdm(total=count, desc="matcher pairs", unit="pair", disable=quiet)
    for image, pose, height, source in frames:
        if len(out["query"]) >= count:
            break
        att = Attitude.imu_like(pose, rng)
        footprint = camera.footprint_at(height)
        gsd = max(pyramid.gsd_m, footprint / work_px)
        try:
            at = CameraPose(0.0, 0.0, height, float(att.yaw_deg or 0.0), att.pitch_deg or 0.0, att.roll_deg or 0.0)
            view = ground_view(grey(image), camera, at, gsd)
        except LocalizerError:
            continue
        h, w = view.image.shape
        if h < q or w < q:
            continue
        r0, c0 = (h - q) // 2, (w - q) // 2
        valid = view.valid[r0 : r0 + q, c0 : c0 + q]
        if valid.mean() < 0.9:
            continue
        # the crop's top-left pixel on the ground, where the camera truly is
        west = pose.east_m + view.bounds.west_m + c0 * gsd
        north = pose.north_m + view.bounds.north_m - r0 * gsd
        shift = rng.integers(-s // 2, s // 2 + 1, size=2)  # (rows, cols) of the truth off the window's centre
        side = (q + 2 * s) * gsd
        ref_west = west - (s - shift[1]) * gsd
        ref_north = north + (s - shift[0]) * gsd
        rgb, ok = pyramid.read(BoundsM(ref_west, ref_north - side, ref_west + side, ref_north), gsd)
        if rgb.shape[:2] != (q + 2 * s, q + 2 * s) or ok.mean() < 0.98:
            continue
        ref = map_grey(rgb, ok)
        out["query"].append(view.image[r0 : r0 + q, c0 : c0 + q].astype(np.float32))
        out["mask"].append(valid)
        out["reference"].append(ref.astype(np.float32))
        out["target"].append((s - shift[0], s - shift[1]))
        out["cross"].append(source > 0)
        bar.update()
    bar.close()
    made = len(out["query"])
    if made < count:
        short = (
            f"only {made} of {count} matcher pairs could be made over {mapdir.path}: too few of its frames see "
            f"imagery all around (ground the rasters do not cover)"
        )
        if made < MIN_PAIRS_SHARE * count:
            raise TrainError(f"{short}; ask for fewer pairs, or build the map inside the imagery")
        log.warning("%s; training on those", short)
    return Pairs(
        np.stack(out["query"]),
        np.stack(out["mask"]),
        np.stack(out["reference"]),
        np.array(out["target"], np.int64),
        np.array(out["cross"], bool),
    )


def _turned(pairs: Pairs, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Query, mask and reference turned by one multiple of 90° and mirrored alike per pair, and the moved target."""
    qs, ms, rs, ts = [], [], [], []
    for i in range(len(pairs)):
        q, m, r = pairs.query[i], pairs.mask[i], pairs.reference[i]
        t = np.array(pairs.target[i])
        span = r.shape[0] - q.shape[0]  # the score map is (span + 1) square
        k = int(rng.integers(4))
        for _ in range(k):  # counter-clockwise: (row, col) -> (span - col, row)
            q, m, r = np.rot90(q), np.rot90(m), np.rot90(r)
            t = np.array([span - t[1], t[0]])
        if rng.random() < 0.5:
            q, m, r = q[:, ::-1], m[:, ::-1], r[:, ::-1]
            t = np.array([t[0], span - t[1]])
        qs.append(q)
        ms.append(m)
        rs.append(r)
        ts.append(t)
    return np.stack(qs), np.stack(ms), np.stack(rs), np.stack(ts)


def _inputs(images: np.ndarray, window: int) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([learned_input(np.ascontiguousarray(g), window) for g in images]))


def _cfog(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack([cfog(np.ascontiguousarray(g)).transpose(2, 0, 1) for g in images]))


def correlation(q: torch.Tensor, mask: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """(B, H_r - H_q + 1, W_r - W_q + 1) normalized correlation of descriptors, as the dense matcher computes it.

    ``q`` (B, C, H_q, W_q), ``mask`` (B, H_q, W_q), ``r`` (B, C, H_r, W_r). By FFT, as the matcher: a
    circular correlation over the reference's size has no wrapped terms at the valid offsets.
    """
    hq, wq = q.shape[-2:]
    hr, wr = r.shape[-2:]
    m = mask.float()[:, None]
    mean = (q * m).sum((2, 3), keepdim=True) / m.sum((2, 3), keepdim=True).clamp(min=1.0)
    qz = (q - mean) * m
    qn = qz.flatten(1).norm(dim=1) + 1e-6

    def correlate(ref: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        spec = torch.fft.rfft2(ref) * torch.conj(torch.fft.rfft2(kernel, s=(hr, wr)))
        return torch.fft.irfft2(spec.sum(1), s=(hr, wr))[:, : hr - hq + 1, : wr - wq + 1]

    corr = correlate(r, qz)
    energy = correlate((r * r).sum(1, keepdim=True), m)
    floor = (0.5 * energy.flatten(1).median(dim=1).values).clamp(min=1e-6)
    return corr / (qn[:, None, None] * torch.sqrt(torch.maximum(energy, floor[:, None, None])))


def patch_correlation(
    q: torch.Tensor, mask: torch.Tensor, r: torch.Tensor, target: np.ndarray, patch: int, search: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each ``patch``-px patch of the query correlated within ``search`` px of where it truly lies.

    As the matcher's fine stage looks for its correspondences. Returns (P, 2 search + 1, 2 search + 1)
    scores (the truth at the centre) and (P,) whether the camera saw the patch (90 % of it, as the matcher asks).
    """
    b, c, hq, wq = q.shape
    queries, windows, seen = [], [], []
    for i in range(b):
        ty, tx = int(target[i, 0]), int(target[i, 1])
        for r0 in range(0, hq - patch + 1, patch):
            for c0 in range(0, wq - patch + 1, patch):
                queries.append(q[i, :, r0 : r0 + patch, c0 : c0 + patch])
                y, x = ty + r0 - search, tx + c0 - search
                windows.append(r[i, :, y : y + patch + 2 * search, x : x + patch + 2 * search])
                seen.append(mask[i, r0 : r0 + patch, c0 : c0 + patch].float().mean() >= 0.9)
    pq, win = torch.stack(queries), torch.stack(windows)
    pq = pq - pq.mean((2, 3), keepdim=True)
    n, side = len(pq), win.shape[-1]
    corr = F.conv2d(win.reshape(1, n * c, side, side), pq, groups=n)[0]
    ones = torch.ones(n, 1, patch, patch)
    energy = F.conv2d((win * win).sum(1).reshape(1, n, side, side), ones, groups=n)[0]
    norm = pq.flatten(1).norm(dim=1)[:, None, None] + 1e-6
    return corr / (norm * torch.sqrt(energy.clamp(min=1e-6))), torch.stack(seen)


CROSS_WEIGHT = 3.0
"""How much more often a training batch draws a pair whose frame came from another raster than the map's."""
PATCH_PX, PATCH_SEARCH_PX = 16, 4
"""The fine stage's patches as the matcher makes them on a 64 px view (a quarter of its side) and their search."""


def _scores(score: torch.Tensor, target: torch.Tensor, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: the peak within a pixel of the target or not, its margin over the best outside ``radius``."""
    b, h, w = score.shape
    flat = score.flatten(1)
    peak = flat.argmax(1)
    rows, cols = peak // w, peak % w
    hit = ((rows - target[:, 0]).abs() <= 1) & ((cols - target[:, 1]).abs() <= 1)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    near = ((yy[None] - rows[:, None, None]).abs() <= radius) & ((xx[None] - cols[:, None, None]).abs() <= radius)
    best = flat.max(1).values
    second = score.masked_fill(near, -math.inf).flatten(1).max(1).values
    return hit.numpy(), (best / second.clamp(min=1e-6)).numpy()


def evaluate_descriptor(net: DescriptorNet | None, pairs: Pairs, batch: int = 64) -> dict:
    """How ``net`` (CFOG when None) matches ``pairs``.

    ``peak_within_1px``: the share whose global peak is within a pixel of the truth; ``distinctiveness``:
    the median of the peak over the best outside its neighbourhood; ``patches_within_1px``: the share of
    seen patches whose own peak is within a pixel of the truth.
    """
    hits, ratios, patch_hits = [], [], []
    radius = max(2, int(0.15 * pairs.query.shape[1]))
    centre = PATCH_SEARCH_PX
    with torch.inference_mode():
        for i in range(0, len(pairs), batch):
            part = pairs.take(np.arange(i, min(i + batch, len(pairs))))
            if net is None:
                q, r = _cfog(part.query), _cfog(part.reference)
            else:
                w = net.cfg.window
                q, r = net(_inputs(part.query, w)), net(_inputs(part.reference, w))
            mask = torch.from_numpy(part.mask)
            h, d = _scores(correlation(q, mask, r), torch.from_numpy(part.target), radius)
            hits.append(h)
            ratios.append(d)
            score, seen = patch_correlation(q, mask, r, part.target, PATCH_PX, PATCH_SEARCH_PX)
            peak = score.flatten(1).argmax(1)
            side = score.shape[-1]
            near = ((peak // side - centre).abs() <= 1) & ((peak % side - centre).abs() <= 1)
            patch_hits.append(near[seen].numpy())
    return {
        "peak_within_1px": float(np.concatenate(hits).mean()),
        "distinctiveness": float(np.median(np.concatenate(ratios))),
        "patches_within_1px": float(np.concatenate(patch_hits).mean()),
    }


def train_descriptor(config: MatcherTrainConfig, train: Pairs, val: Pairs) -> tuple[DescriptorNet, dict]:
    """Train the network on ``train`` (the module docstring says how); its report, with CFOG's on ``val`` beside it."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng([config.seed, 5])
    net = DescriptorNet(config.descriptor)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=1e-4)
    deadline = time.monotonic() + 60.0 * config.minutes
    steps, losses = 0, []
    started = time.monotonic()
    bar = tqdm(total=config.max_steps, desc="matcher", unit="step", disable=config.quiet)
    net.train()
    # pairs across sources teach what stays the same between years and sensors: drawn CROSS_WEIGHT times as often
    draw = np.where(train.cross, CROSS_WEIGHT, 1.0)
    draw /= draw.sum()
    while time.monotonic() < deadline and (config.max_steps is None or steps < config.max_steps):
        idx = rng.choice(len(train), size=min(config.batch, len(train)), replace=False, p=draw)
        q, m, r, t = _turned(train.take(idx), rng)
        w = net.cfg.window
        dq, dr, mask = net(_inputs(q, w)), net(_inputs(r, w)), torch.from_numpy(np.ascontiguousarray(m))
        score = correlation(dq, mask, dr)
        label = torch.from_numpy(t[:, 0] * score.shape[2] + t[:, 1])
        loss = F.cross_entropy(score.flatten(1) / config.temperature, label)
        # the fine stage: every patch must find its own place too
        patches, seen = patch_correlation(dq, mask, dr, t, PATCH_PX, PATCH_SEARCH_PX)
        if seen.any():
            side = patches.shape[-1]
            centre = torch.full((int(seen.sum()),), PATCH_SEARCH_PX * side + PATCH_SEARCH_PX)
            loss = loss + F.cross_entropy(patches[seen].flatten(1) / config.temperature, centre)
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
        losses.append(float(loss.detach()))
        bar.update()
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    bar.close()
    net.eval()
    report = {
        "steps": steps,
        "train_s": round(time.monotonic() - started, 1),
        "pairs": len(train),
        "loss": float(np.mean(losses[-50:])) if losses else math.nan,
        "held_out": {
            "pairs": len(val),
            "cross_share": float(val.cross.mean()),
            "learned": evaluate_descriptor(net, val),
            "cfog": evaluate_descriptor(None, val),
        },
    }
    return net, report


@dataclass(frozen=True)
class MatcherResult:
    """What :func:`train_matcher` did: the checkpoint, the training's report, the registration's fit, the checks.

    ``fallback``: the fallback matcher's (CFOG's) registration fit, for the fixes it verifies where the
    learned matcher verifies nothing (:attr:`~jzi_ros.localizer.refine.RefineConfig.fallback_matcher`).
    """

    out: Path
    report: dict
    registration_scale: float | None
    registration_frames: int
    checks: dict | None = None
    fallback: RegistrationFit | None = None


CHECK_FRAMES = 150
"""Frames registered around a wrong place (and the right one) to fit the learned matcher's checks."""
WRONG_PLACES = 3
"""Wrong places each of those frames is registered around: the tail of chance matches is what the fit must see."""
WRONG_ACCEPTED = 0.005
"""The share of wrong registrations the fitted checks may let through (their peak ratio's 99.5th percentile)."""
CHECK_MARGIN = 1.05
"""The fitted least peak ratio stands this much above the highest one a wrong place reached."""


def fit_checks(
    mapdir: MapDir, cfg: AerialConfig, rasters: tuple[Path, ...], entry: dict, seed: int = 0, quiet: bool = False,
    frames: int = CHECK_FRAMES,
) -> dict:  # fmt: skip
    """The learned matcher's least peak ratios, heading known and searched, at which no wrong place is accepted.

    Frames of :func:`~jzi_ros.train.calibrate.registration_frames` are registered with an IMU's attitude
    (with its heading, and without) around :data:`WRONG_PLACES` wrong places inside the map's region, 1.5 to
    3 footprints from the truth, with every check but the peak ratio (the second look at another
    resolution included). The least ratio is :data:`CHECK_MARGIN` times the highest a wrong place
    reached that way once the highest :data:`WRONG_ACCEPTED` of the wrong registrations are set aside,
    never under the settings' own (:class:`~jzi_ros.localizer.refine.RefineConfig`);
    the share of right places (up to half a footprint off) that keep it is reported beside it, and the
    share of right places it and CFOG verify (``better_than_cfog``: its share with the heading known is at
    least CFOG's; ``matcher: auto`` uses the learned matcher only then).
    """
    defaults = RefineConfig()
    relaxed = RefineConfig(candidates=1, min_distinctiveness=1.0, min_distinctiveness_searched=1.0, fallback_matcher="")
    surface = mapdir.surface() if mapdir.has_surface else None
    learned = checkpoint_matcher(entry | {"checks": {}})  # the settings' checks alone, relaxed as above
    refiner = Refiner(mapdir.grid, mapdir.pyramid(), relaxed, surface, learned=learned)
    hand_made = Refiner(mapdir.grid, mapdir.pyramid(), RefineConfig(candidates=1, matcher="cfog"), surface)
    camera, grid = cfg.camera, mapdir.grid
    cfog_right = {"known": 0, "searched": 0}
    rng = np.random.default_rng([seed, 11])
    wrong: dict[str, list[float]] = {"known": [], "searched": []}
    right: dict[str, list[float]] = {"known": [], "searched": []}
    tries, right_tries = {"known": 0, "searched": 0}, {"known": 0, "searched": 0}
    shown = registration_frames(mapdir, cfg, rasters, frames, rng)
    for image, pose, height, _ in tqdm(shown, total=frames, desc="matcher checks", unit="frame", disable=quiet):
        truth = np.array([pose.east_m, pose.north_m])
        footprint = camera.footprint_at(height)
        angle = rng.uniform(0, 2 * np.pi)
        near = truth + footprint * math.sqrt(rng.uniform()) / 2 * np.array([math.cos(angle), math.sin(angle)])
        places = [(near, right, True)]
        for _ in range(WRONG_PLACES):
            for _ in range(20):  # a wrong place inside the map's region, as a zoom's wrong candidate is
                a = rng.uniform(0, 2 * np.pi)
                far = truth + rng.uniform(1.5, 3.0) * footprint * np.array([math.cos(a), math.sin(a)])
                if (np.abs(far) <= grid.size_m / 2).all():
                    places.append((far, wrong, False))
                    break
        for mode in ("known", "searched"):
            att = Attitude.imu_like(pose, rng, heading=mode == "known")
            for centre, out, wanted in places:
                if not (np.abs(centre) <= grid.size_m / 2).all():
                    continue
                tries[mode] += not wanted
                right_tries[mode] += wanted
                for which in (refiner, hand_made) if wanted else (refiner,):
                    reg = which.refine(image, camera, centre[None], att, height_m=height)
                    off = math.hypot(reg.east_m - truth[0], reg.north_m - truth[1]) if reg.verified else math.inf
                    if not (reg.verified and (off <= WITHIN_CELLS * grid.terminal_size_m) == wanted):
                        continue
                    if which is refiner:
                        out[mode].append(float(reg.distinctiveness))
                    else:
                        cfog_right[mode] += 1

    def least(values: list[float], tries: int) -> float:
        """The ratio that lets at most WRONG_ACCEPTED of the ``tries`` wrong registrations through, with the margin."""
        allowed = int(WRONG_ACCEPTED * tries)
        ranked = sorted(values, reverse=True)
        return CHECK_MARGIN * ranked[allowed] if len(ranked) > allowed else 0.0

    known = max(defaults.min_distinctiveness, least(wrong["known"], tries["known"]))
    searched = max(defaults.min_distinctiveness_searched, least(wrong["searched"], tries["searched"]))

    def kept(values: list[float], least: float) -> float:
        return float(np.mean(np.array(values) >= least)) if values else math.nan

    def share(count: int, mode: str) -> float:
        return count / right_tries[mode] if right_tries[mode] else math.nan

    learned_right = {
        mode: share(sum(d >= t for d in right[mode]), mode) for mode, t in (("known", known), ("searched", searched))
    }
    cfog_share = {mode: share(n, mode) for mode, n in cfog_right.items()}
    return {
        "min_distinctiveness": known,
        "min_distinctiveness_searched": searched,
        "frames": frames,
        "wrong_tried": tries,
        "wrong_accepted_without": {k: len(v) for k, v in wrong.items()},
        "right_kept": {"known": kept(right["known"], known), "searched": kept(right["searched"], searched)},
        "right_verified": {"learned": learned_right, "cfog": cfog_share},
        # what the node's matcher auto goes by: with its checks, the learned matcher verifies at least as many
        # right places as CFOG with the heading known (its main use)
        "better_than_cfog": bool(learned_right["known"] >= cfog_share["known"]),
    }


def taken_matcher(path: Path) -> dict:
    """Checkpoint ``path``'s learned matcher for another checkpoint: its network, without its own map's checks.

    ``taken_from`` names the checkpoint that trained it (``path``, or where ``path`` took it from).

    Raises:
        TrainError: ``path`` is not a checkpoint, has no learned matcher, or one that does not rebuild.
    """
    try:
        stored = (read_checkpoint(path).get("extra") or {}).get("matcher")
        if not stored:
            raise TrainError(f"{path} has no learned matcher to take: jzi train-matcher --model {path}")
        load_descriptor(stored)
    except CheckpointError as exc:
        raise TrainError(f"{path}: {exc}") from None
    entry = {k: v for k, v in stored.items() if k != "checks"}
    entry["taken_from"] = stored.get("taken_from") or str(Path(path).resolve())
    return entry


def train_matcher(config: MatcherTrainConfig) -> MatcherResult:
    """Train the learned matcher for a checkpoint and store it there (see the module docstring).

    Raises:
        TrainError: The checkpoint says nothing of its map and none is given, the map has no pyramid,
            too few pairs could be made, ``checks_only`` finds no matcher in it, or ``matcher_from``
            is the checkpoint itself or has none to take (:func:`taken_matcher`).
    """
    if config.matcher_from is not None and Path(config.matcher_from).resolve() == Path(config.model).resolve():
        raise TrainError(f"{config.model} would take its own matcher: refit its checks with --checks-only")
    model, extra = load_checkpoint(config.model)
    if model.cfg.general:  # its registration factors live in each map's record, fitted there without a matcher
        raise TrainError(
            f"{config.model} is a general model: jzi calibrate fits its registration per map, with CFOG; give the "
            f"learned matcher to a map's own model (jzi train --init {config.model})"
        )
    stored = dict(extra.get("train_config") or {})
    if stored.get("street") and not stored.get("aerial"):
        raise TrainError(
            f"{config.model} is a street model: its frames are registered on the ground plane, not matched"
        )
    map_path = config.map or (Path(stored["map"]) if stored.get("map") else None)
    if map_path is None:
        raise TrainError(f"{config.model} does not name its map: give --map")
    rasters = config.query_rasters if config.query_rasters is not None else tuple(stored.get("query_rasters") or ())
    train_config = (
        TrainConfig.from_dict(stored | {"map": map_path, "out": config.out or config.model}) if stored else None
    )
    if train_config is None:
        train_config = TrainConfig(map=map_path, out=config.out or config.model, aerial=True)
    train_config = replace(train_config, query_rasters=tuple(Path(r) for r in rasters))
    mapdir = MapDir(map_path)
    report: dict = {}  # a kept or taken network's own report stays in its entry
    if config.checks_only:
        if not extra.get("matcher"):
            raise TrainError(f"{config.model} has no learned matcher to refit: train one (without --checks-only)")
        entry = dict(extra["matcher"])
    elif config.matcher_from is not None:
        entry = taken_matcher(config.matcher_from)
        report = {"taken_from": entry["taken_from"], "rasters": entry.get("report", {}).get("rasters", [])}
    else:
        rng = np.random.default_rng([config.seed, 3])
        n_val = max(10, config.pairs // 10)
        pairs = registration_pairs(
            mapdir, train_config, config.pairs + n_val, config.query_px, config.search_px, rng, config.quiet
        )
        order = rng.permutation(len(pairs))
        net, report = train_descriptor(config, pairs.take(order[n_val:]), pairs.take(order[:n_val]))
        report["rasters"] = [str(r) for r in rasters]
        entry = matcher_state(net, report)
    calibration = dict(extra.get("calibration") or {})
    fitted = fallback = None
    if config.calibrate:
        cfg = aerial_config(train_config)
        entry["checks"] = fit_checks(
            mapdir, cfg, train_config.query_rasters, entry, seed=config.seed, quiet=config.quiet
        )
        if calibration:
            learned = checkpoint_matcher(entry)
            fitted = calibrate_registration(mapdir, cfg, train_config.query_rasters, seed=config.seed, learned=learned)
            fallback = calibrate_registration(mapdir, cfg, train_config.query_rasters, seed=config.seed)
        if fitted is not None or fallback is not None:
            cal = Calibration.from_dict(calibration)
            cal = cal if fitted is None else fitted.applied_to(cal)
            calibration = (cal if fallback is None else fallback.as_fallback_of(cal)).to_dict()
    out = config.out or config.model
    save_checkpoint(out, model, {**extra, "matcher": entry} | ({"calibration": calibration} if calibration else {}))
    return MatcherResult(
        Path(out),
        report,
        None if fitted is None else fitted.scale,
        0 if fitted is None else fitted.frames,
        entry.get("checks"),
        fallback,
    )
