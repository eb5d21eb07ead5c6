"""Choosing the matcher by measurement: registration rate, error, false accepts and time.

Frames are rendered at random poses over a map's region from the map's own
raster and from each other raster of the place (another sensor or year), as
:mod:`jzi_ros.data.camera` renders a flight: a downward camera of 60° at the
height where it sees ``footprint_cells`` terminal cells, any heading, tilted
by a few degrees. Each frame is registered twice:

- around a candidate up to half a footprint from the truth (as a right zoom
  candidate is): it should verify, and its error counts;
- around a candidate one and a half to three footprints away (a wrong zoom
  candidate): it should be refused.

A *false accept* is a verified registration more than two terminal cells from
the truth, counted over all verified registrations. Dense matchers work on
the frame projected at 64 px across (the localizer's default), keypoint
matchers at the map's own resolution, which they need. The robot's attitude is
either known as an IMU gives it (heading ±3°, roll and pitch ±0.5°, as
standard deviations) or known without the heading (searched). The study
uses the map's in-memory orthophoto, not its pyramid file, so it runs on
maps of any age.

Besides the matchers of :mod:`jzi_ros.localizer.matchers`, two come from
``--model``: ``learned``, the checkpoint's learned matcher (``jzi
train-matcher``), and ``encoder``, the model's own encoder patch features as
the dense descriptor (the backbone's stride-8 feature map of the upsampled
images, in place of CFOG).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data.camera import render_frame
from ..geo import CameraPose, MapDir, Pinhole
from ..geo.ortho import LocalOrtho
from ..localizer.calibration import WITHIN_CELLS
from ..localizer.estimate import inside_ellipse_95
from ..localizer.matchers import MATCHERS, DenseMatcher, Matcher, MatcherConfig, make_matcher
from ..localizer.refine import Attitude, RefineConfig, Refiner
from .errors import EvaluationError

HEADINGS = ("imu", "none")
"""What the robot knows: ``imu`` (heading and tilt, with an IMU's noise) or ``none`` (tilt only)."""
KEYPOINT_WORK_PX = 1024
"""Side of the ground-projected frame for keypoint matchers: never coarser than the map (its resolution rules)."""


@dataclass(frozen=True)
class RegistrationStudyConfig:
    """What :func:`registration_study` measures.

    ``map``: the map; ``rasters``: the rasters to render frames from (empty:
    the map's own); ``matchers``: names of :data:`~jzi_ros.localizer.matchers.MATCHERS`
    or ``encoder`` (needs ``model``); ``headings``: of :data:`HEADINGS`;
    ``frames``: frames per raster; ``image_px``: frame side; ``footprint_cells``:
    ground width a frame sees [terminal cells] (at most 60 % of the region); ``tilt_deg``: standard
    deviation of the camera's pitch and roll.
    """

    map: Path
    rasters: tuple[Path, ...] = ()
    matchers: tuple[str, ...] = ("cfog", "sift", "akaze", "orb", "sift-grad")
    headings: tuple[str, ...] = HEADINGS
    frames: int = 40
    image_px: int = 224
    footprint_cells: float = 4.5
    tilt_deg: float = 3.0
    model: Path | None = None
    seed: int = 0
    quiet: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "rasters", tuple(Path(r) for r in self.rasters))
        unknown = [m for m in self.matchers if m not in MATCHERS + MODEL_STUDIED]
        if unknown:
            raise EvaluationError(f"unknown matcher {unknown[0]!r}; choose from {', '.join(MATCHERS + MODEL_STUDIED)}")
        needs_model = [m for m in self.matchers if m in MODEL_STUDIED]
        if needs_model and self.model is None:
            raise EvaluationError(f"the {needs_model[0]} matcher needs --model")
        bad = [h for h in self.headings if h not in HEADINGS]
        if bad:
            raise EvaluationError(f"unknown heading mode {bad[0]!r}; choose from {', '.join(HEADINGS)}")
        if self.frames < 1:
            raise EvaluationError(f"frames must be 1 or more, not {self.frames}")


MODEL_STUDIED = ("learned", "encoder")
"""Matchers the study takes from ``--model``: its learned matcher (``jzi train-matcher``), its encoder's features."""


def checkpoint_matcher(model_path: Path, config: MatcherConfig = MatcherConfig()) -> Matcher:
    """The learned matcher stored in a checkpoint, with the dense matcher's ``config`` (EvaluationError: none)."""
    from ..model import load_checkpoint
    from ..model.descriptor import checkpoint_matcher as stored_matcher

    _, extra = load_checkpoint(model_path)
    if not extra.get("matcher"):
        raise EvaluationError(f"{model_path} has no learned matcher (jzi train-matcher gives a map's own model one)")
    return stored_matcher(extra["matcher"], config)


def encoder_matcher(model_path: Path) -> Matcher:
    """A dense matcher on the model's encoder patch features (measurement only)."""
    import torch
    import torch.nn.functional as F  # noqa: N812 - the usual alias

    from ..model import load_checkpoint

    model, _ = load_checkpoint(model_path)
    backbone = model.encoder.backbone.eval()
    cfg = model.encoder.cfg
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(cfg.std).view(1, 3, 1, 1) * 255

    def describe(grey: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(grey, np.float32))[None, None].expand(1, 3, *grey.shape)
        x = F.interpolate((x - mean) / std, scale_factor=4, mode="bilinear", align_corners=False)
        with torch.inference_mode():
            feats = backbone.forward_intermediates(x, indices=[2], intermediates_only=True)[0]
            feats = F.interpolate(feats, size=grey.shape, mode="bilinear", align_corners=False)[0]
        f = feats.permute(1, 2, 0).numpy()
        return (f / (np.linalg.norm(f, axis=-1, keepdims=True) + 1e-6)).astype(np.float32)

    return DenseMatcher(describe=describe, name="encoder")


def registration_study(config: RegistrationStudyConfig) -> list[dict]:
    """One row per (source raster, matcher, heading mode); the module docstring says what is measured.

    Each row: ``source``, ``cross_source`` (the raster is not the map's),
    ``matcher``, ``heading``, ``frames``, ``verified_share`` (right
    candidates verified), ``median_m``, ``median_cells``, ``p90_m`` (verified
    right candidates), ``wrong_refused_share``, ``false_accept_rate``,
    ``false_accepts`` and ``refine_ms_p50``.
    """
    mapdir = MapDir(config.map)
    grid = mapdir.grid
    cell = grid.terminal_size_m
    cam = Pinhole(config.image_px, config.image_px, 60.0)
    footprint = min(config.footprint_cells * cell, 0.6 * grid.size_m)  # small maps: a frame sees 60 % of it
    height = cam.altitude_for_footprint(footprint)
    reference = LocalOrtho.for_map(mapdir, pad_m=2 * cell)
    own = [str(s["path"]) for s in mapdir.sources]
    sources: list[tuple[str, list[str | Path] | None]] = [("map's own", None)]
    sources += [(Path(r).name, [str(r)]) for r in config.rasters if str(r) not in own]
    half = grid.size_m / 2 - footprint / 2
    rows = []
    for name, rasters in sources:
        ortho = LocalOrtho.for_map(mapdir, gsd_m=footprint / config.image_px / 2, rasters=rasters)
        rng = np.random.default_rng(config.seed)
        cases = []
        for _ in range(config.frames):
            e, n = rng.uniform(-half, half, 2)
            tilt = rng.normal(0, config.tilt_deg, 2)
            pose = CameraPose(e, n, height * rng.uniform(0.98, 1.02), rng.uniform(0, 360), tilt[0], tilt[1])
            frame, _ = render_frame(ortho, cam, pose)
            angle, dist = rng.uniform(0, 2 * np.pi), footprint * np.sqrt(rng.uniform()) / 2
            right = np.array([e, n]) + dist * np.array([np.cos(angle), np.sin(angle)])
            wrong = None
            for _ in range(20):
                w = np.array([e, n]) + rng.uniform(1.5, 3.0) * footprint * np.array(
                    [math.cos(a := rng.uniform(0, 2 * np.pi)), math.sin(a)]
                )
                if (np.abs(w) <= grid.size_m / 2).all():
                    wrong = w
                    break
            cases.append((pose, frame, right, wrong, int(rng.integers(2**31))))
        for matcher_name in config.matchers:
            if matcher_name in MODEL_STUDIED:
                assert config.model is not None  # checked in the config
                matcher = (encoder_matcher if matcher_name == "encoder" else checkpoint_matcher)(config.model)
            else:
                matcher = make_matcher(matcher_name)
            # keypoints need detail: they work at the map's own resolution, the dense matchers at 64 px
            work_px = 64 if isinstance(matcher, DenseMatcher) else KEYPOINT_WORK_PX
            refiner = Refiner(grid, reference, RefineConfig(candidates=1, work_px=work_px))
            refiner.matcher = matcher
            for mode in config.headings:
                rows.append(_measure(refiner, cases, cam, mode, cell, name, rasters is not None, matcher_name, config))
    return rows


def _measure(
    refiner: Refiner,
    cases: list,
    cam: Pinhole,
    mode: str,
    cell: float,
    source: str,
    cross: bool,
    matcher: str,
    config: RegistrationStudyConfig,
) -> dict:
    errors: list[float] = []
    times: list[float] = []
    verified = wrong_verified = false_accepts = n_wrong = 0
    desc = f"{source}: {matcher}, heading {mode}"
    for pose, frame, right, wrong, seed in tqdm(cases, desc=desc, unit="frame", disable=config.quiet):
        rng = np.random.default_rng(seed)
        att = Attitude.imu_like(pose, rng, heading=mode == "imu")
        t0 = time.perf_counter()
        reg = refiner.refine(frame, cam, right[None], att, height_m=pose.altitude_m)
        times.append((time.perf_counter() - t0) * 1e3)
        if reg.verified:
            verified += 1
            err = math.hypot(reg.east_m - pose.east_m, reg.north_m - pose.north_m)
            errors.append(err)
            false_accepts += err > WITHIN_CELLS * cell
        if wrong is not None:
            n_wrong += 1
            reg = refiner.refine(frame, cam, wrong[None], att, height_m=pose.altitude_m)
            if reg.verified:
                wrong_verified += 1
                false_accepts += math.hypot(reg.east_m - pose.east_m, reg.north_m - pose.north_m) > WITHIN_CELLS * cell
    e = np.array(errors)
    accepted = verified + wrong_verified
    return {
        "source": source,
        "cross_source": cross,
        "matcher": matcher,
        "heading": mode,
        "frames": len(cases),
        "verified_share": verified / len(cases),
        "median_m": float(np.median(e)) if len(e) else math.nan,
        "median_cells": float(np.median(e)) / cell if len(e) else math.nan,
        "p90_m": float(np.percentile(e, 90)) if len(e) else math.nan,
        "wrong_refused_share": 1 - wrong_verified / n_wrong if n_wrong else math.nan,
        "false_accepts": int(false_accepts),
        "false_accept_rate": false_accepts / accepted if accepted else 0.0,
        "refine_ms_p50": float(np.median(times)),
    }


def refined_metrics(
    refiner: Refiner,
    camera: Pinhole,
    frames: list[np.ndarray],
    poses: list[CameraPose],
    candidates_m: np.ndarray,
    attitudes: list[Attitude] | None = None,
) -> dict:
    """The registration of rendered frames around their zoom candidates, as a robot with an IMU and a rangefinder.

    Args:
        refiner: Registers against the map.
        camera: The frames' camera.
        frames: RGB frames.
        poses: Their cameras' poses (the truth; the attitude is given with an
            IMU's noise, :data:`~jzi_ros.localizer.refine.IMU_SIGMAS_DEG`, and the height as a rangefinder's).
        candidates_m: (N, K, 2) centres [m] of each frame's candidate cells, best first.
        attitudes: The attitude each frame is registered with (the IMU's that
            turned it north up for a heading-known model); None: drawn here
            from the poses with an IMU's noise.

    Returns:
        ``verified_share`` and, when some frame verified, ``verified_median_m``,
        ``verified_p95_m``, ``false_accept_rate`` (verified more than two
        terminal cells off), ``verified_ellipse95_coverage``; ``refine_ms_p50``.
    """
    cell = refiner.grid.terminal_size_m
    rng = np.random.default_rng(7)
    errors, inside, times = [], [], []
    if attitudes is None:
        attitudes = [Attitude.imu_like(pose, rng) for pose in poses]
    for frame, pose, cands, attitude in zip(frames, poses, candidates_m, attitudes, strict=True):
        reg = refiner.refine(frame, camera, cands, attitude, height_m=pose.altitude_m)
        times.append(reg.timings_ms["refine"])
        if reg.verified:
            d = np.array([reg.east_m - pose.east_m, reg.north_m - pose.north_m])
            errors.append(float(np.hypot(*d)))
            inside.append(bool(inside_ellipse_95(d[None], reg.covariance_m2[None])[0]))
    out: dict = {"verified_share": len(errors) / len(frames), "refine_ms_p50": float(np.median(times))}
    if errors:
        e = np.array(errors)
        out |= {
            "verified_median_m": float(np.median(e)),
            "verified_p95_m": float(np.percentile(e, 95)),
            "false_accept_rate": float((e > WITHIN_CELLS * cell).mean()),
            "verified_ellipse95_coverage": float(np.mean(inside)),
        }
    return out


def markdown_table(rows: list[dict]) -> str:
    """The study's rows as a Markdown table."""
    lines = [
        "| frames from | matcher | heading | verified | median m (cells) | p90 m | wrong place refused | "
        "false accepts | ms p50 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        src = r["source"] + (" (cross-source)" if r["cross_source"] else "")
        lines.append(
            f"| {src} | {r['matcher']} | {r['heading']} | {100 * r['verified_share']:.0f} % | "
            f"{r['median_m']:.2f} ({r['median_cells']:.3f}) | {r['p90_m']:.2f} | "
            f"{100 * r['wrong_refused_share']:.0f} % | {r['false_accepts']} ({100 * r['false_accept_rate']:.1f} %) | "
            f"{r['refine_ms_p50']:.1f} |"
        )
    return "\n".join(lines)
