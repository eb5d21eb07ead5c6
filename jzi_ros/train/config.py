"""Every option of a training run, in one frozen, validated dataclass.

The names are those of ``jzi train``'s options (``--max-steps`` is
``max_steps``); the defaults are the command's. Sizes in pixels say ``_px``,
times their unit (``minutes``, ``eval_every_s``); ``footprint_cells`` and
``holdout`` count terminal cells of the map's grid.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from ..data.aerial import query_raster_problem
from ..data.augment import DOMAIN_OPS
from ..model import PACKAGED_WEIGHTS, TOKENS
from ..share import resolve_model
from .errors import TrainError

DEFAULT_ENCODER = "tf_efficientnet_lite0"
DEFAULT_WEIGHTS = PACKAGED_WEIGHTS
DEFAULT_DOMAIN_OPS = tuple(op for op in DOMAIN_OPS if op != "lens")
"""Domain changes of aerial training frames by default (see the ablation in docs/results.md); ``lens`` is
asked for: on the demo it cost validation accuracy (0.24 to 0.19 of paths, one run each) and the
localizer rectifies every frame with its ``CameraInfo`` before the model sees it."""

_CHOICES = {"pooling": ("cls", "mean"), "query": ("single", "halves"), "tokens": TOKENS}
MAX_HEADING_ERROR_DEG = 90.0
"""Largest heading error [deg] a heading-known run may be trained with: beyond it the heading is not known."""
_POSITIVE = ("samples", "val_samples", "image_px", "dim", "depth", "heads", "batch")


@dataclass(frozen=True)
class TrainConfig:
    """A training run: data, model, optimisation and where to write.

    Attributes:
        map: map directory (``jzi build-map``).
        out: checkpoint to write (and to resume from).
        aerial: train on frames rendered from the map's orthophoto.
        street: train on street-level frames rendered from the 3D world of
            the map's place (:mod:`jzi_ros.data.street`): from each of
            ``query_rasters`` (best another season's than the map's) or, without
            them, the map's own raster, over its surface model (``dsm``, or the
            raster's own ``NAME_dsm.tif``), on its roads (``roads``, or
            ``NAME_roads.geojson``); as many as aerial frames (``samples``, ``val_samples``).
        street_panorama: street frames are 360° panoramas (2:1) instead of pinhole frames (4:3, 90°).
        dsm: the surface model under the rasters for street frames (any CRS).
        roads: the road network (GeoJSON) street frames stand on.
        data: CSV of geotagged images (image, latitude, longitude), or None.
        query_rasters: other rasters of the map's region (other dates or
            sensors) that aerial frames are also rendered from.
        domain_ops: domain changes of aerial frames (:data:`jzi_ros.data.augment.DOMAIN_OPS`).
        heading_known: a model for robots that know their camera's heading
            and tilt (an IMU): every aerial frame is turned north up and nadir
            (:func:`jzi_ros.geo.camera.north_up`) with a noisy attitude, as the
            localizer turns every frame it is given for such a model. Aerial
            frames only (no ``data``).
        heading_error_deg: standard deviation of the heading error [deg] the
            frames of a ``heading_known`` run are turned with, in [0, 90]
            (pitch and roll: :data:`jzi_ros.data.aerial.TILT_ERROR_DEG`).
        minutes: wall-time budget of the whole run [min]; it ends the run only
            when ``max_steps`` is None.
        max_steps: optimiser steps to run; None: as many as the budget allows.
        samples: aerial training frames.
        val_samples: aerial validation frames (in held-out cells when there are some).
        footprint_cells: (min, max) ground width an aerial frame sees [terminal cells].
        augment: augmented copies of each geotagged training image.
        holdout: share of terminal cells held out of training, in [0, 1).
        holdout_by_area: hold out whole cells of the level above the terminal one.
        encoder: timm backbone name.
        weights: backbone weights (a file, ``PACKAGED_WEIGHTS`` or ``RANDOM_WEIGHTS``).
        image_px: encoder input side [px].
        pooling: global feature of a view: "cls" or "mean".
        query: frame encoding: "single" (centre square) or "halves" (two halves of S x 2S).
        tokens: decoder tokens per view: "children" (one per child, pooled from the view's patches),
            "cls" (one), "views" (one per child, from the child's own view) or "match" (one, and each
            child's pooled token matched with its final token).
        fine_tune_blocks: also train the encoder's last N blocks (0: frozen encoder).
        learned_matcher: also train the registration's learned matcher
            (:mod:`jzi_ros.train.matcher`) within ``minutes``, aerial runs only.
        workers: data loader processes when fine-tuning.
        dim: decoder width.
        depth: decoder layers.
        heads: decoder attention heads.
        dropout: decoder dropout probability.
        batch: samples per optimiser step, over all processes.
        lr: peak learning rate.
        weight_decay: AdamW weight decay.
        label_smoothing: cross-entropy label smoothing.
        eval_every_s: validate and save at most this often [s].
        seed: seed of every random choice.
        device: torch device ("cpu", "cuda", "cuda:N").
        threads: torch CPU threads; None: torch's choice.
        resume: continue the run saved at ``out``.
        init: a checkpoint whose model (a general one, of the map's grid) the
            run starts from instead of a new decoder: fine-tuning for ``map``.
        quiet: no progress bars.
    """

    map: Path
    out: Path
    aerial: bool = False
    street: bool = False
    street_panorama: bool = False
    dsm: Path | None = None
    roads: Path | None = None
    data: Path | None = None
    query_rasters: tuple[Path, ...] = ()
    domain_ops: tuple[str, ...] = DEFAULT_DOMAIN_OPS
    heading_known: bool = False
    heading_error_deg: float = 10.0
    minutes: float = 10.0
    max_steps: int | None = None
    samples: int = 12000
    val_samples: int = 500
    footprint_cells: tuple[float, float] = (4.0, 8.0)
    augment: int = 2
    holdout: float = 0.1
    holdout_by_area: bool = False
    encoder: str = DEFAULT_ENCODER
    weights: str | None = DEFAULT_WEIGHTS
    image_px: int = 224
    pooling: str = "cls"
    query: str = "single"
    tokens: str = "children"
    fine_tune_blocks: int = 0
    workers: int = 2
    dim: int = 128
    depth: int = 3
    heads: int = 4
    dropout: float = 0.1
    batch: int = 64
    lr: float = 3e-4
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    eval_every_s: float = 60.0
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    learned_matcher: bool = False
    resume: bool = False
    init: Path | None = None
    quiet: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalize the types once, here
        set_(self, "map", Path(self.map))
        set_(self, "out", Path(self.out))
        for name in ("data", "dsm", "roads", "init"):
            if getattr(self, name) is not None:
                set_(self, name, Path(getattr(self, name)))
        if self.init is not None:
            set_(self, "init", resolve_model(self.init))  # a shipped model's name, or a path
        if self.weights is not None:
            set_(self, "weights", str(self.weights))
        set_(self, "query_rasters", tuple(Path(p) for p in self.query_rasters))
        set_(self, "domain_ops", tuple(str(op) for op in self.domain_ops))
        try:
            set_(self, "footprint_cells", tuple(float(v) for v in self.footprint_cells))
        except (TypeError, ValueError):
            raise TrainError(f"footprint_cells must be two numbers (min, max), not {self.footprint_cells!r}") from None
        if not (self.aerial or self.street) and self.data is None:
            raise TrainError("aerial or street or data must be given (or several): the training data")
        if self.street and self.heading_known:
            raise TrainError("heading_known turns downward frames north up; street frames look ahead")
        if self.street and self.fine_tune_blocks:
            raise TrainError("street trains the decoder on cached features; fine_tune_blocks needs aerial or data")
        if self.street_panorama and not self.street:
            raise TrainError("street_panorama needs street")
        for name in ("dsm", "roads", "init"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise TrainError(f"{name}: no such file {path}")
        if self.init is not None and (self.resume or self.fine_tune_blocks):
            raise TrainError("init starts a new run from a model's decoder: not with resume or fine_tune_blocks")
        if self.learned_matcher and not self.aerial:
            raise TrainError("learned_matcher needs aerial: the matcher registers downward frames")
        problem = query_raster_problem(self.query_rasters, self.aerial or self.street)
        if problem:
            raise TrainError(problem)
        unknown = [op for op in self.domain_ops if op not in DOMAIN_OPS]
        if unknown:
            raise TrainError(f"domain_ops: unknown {', '.join(unknown)} (known: {', '.join(DOMAIN_OPS)})")
        if not (
            isinstance(self.heading_error_deg, int | float) and 0.0 <= self.heading_error_deg <= MAX_HEADING_ERROR_DEG
        ):
            raise TrainError(
                f"heading_error_deg must be a number of degrees in [0, {MAX_HEADING_ERROR_DEG:g}] (the IMU heading's "
                f"standard deviation), not {self.heading_error_deg!r}"
            )
        if self.heading_known and self.data is not None:
            raise TrainError(
                "heading_known trains on aerial frames only: geotagged images (data) have no attitude to turn "
                "them north up, and a north-up turn only suits a downward-looking camera; drop one of the two"
            )
        if not (math.isfinite(self.minutes) and self.minutes > 0):
            raise TrainError(f"minutes must be positive, not {self.minutes}")
        if self.max_steps is not None and self.max_steps < 1:
            raise TrainError(f"max_steps must be positive (or None for the time budget), not {self.max_steps}")
        for name in _POSITIVE:
            if getattr(self, name) < 1:
                raise TrainError(f"{name} must be positive, not {getattr(self, name)}")
        fp = self.footprint_cells
        if len(fp) != 2 or not 0 < fp[0] <= fp[1]:
            raise TrainError(f"footprint_cells must be (min, max) with 0 < min <= max, not {self.footprint_cells}")
        for name in ("augment", "fine_tune_blocks", "workers"):
            if getattr(self, name) < 0:
                raise TrainError(f"{name} must be 0 or more, not {getattr(self, name)}")
        for name in ("holdout", "dropout", "label_smoothing"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise TrainError(f"{name} must lie in [0, 1), not {getattr(self, name)}")
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise TrainError(f"{name} must be one of {', '.join(choices)}, not {getattr(self, name)!r}")
        if self.dim % self.heads:
            raise TrainError(f"dim {self.dim} must be divisible by heads {self.heads}")
        if not self.lr > 0:
            raise TrainError(f"lr must be positive, not {self.lr}")
        if self.weight_decay < 0:
            raise TrainError(f"weight_decay must be 0 or more, not {self.weight_decay}")
        if not self.eval_every_s > 0:
            raise TrainError(f"eval_every_s must be positive, not {self.eval_every_s}")
        if self.threads is not None and self.threads < 1:
            raise TrainError(f"threads must be positive (or None for torch's choice), not {self.threads}")

    @property
    def budget_s(self) -> float:
        """The wall-time budget [s]."""
        return self.minutes * 60.0

    def to_dict(self) -> dict:
        """The options as JSON types (paths as strings, ``footprint_cells`` as a list)."""
        d = dataclasses.asdict(self)
        d.update(map=str(self.map), out=str(self.out), footprint_cells=list(self.footprint_cells))
        for name in ("data", "dsm", "roads", "init"):
            d[name] = None if getattr(self, name) is None else str(getattr(self, name))
        d.update(query_rasters=[str(p) for p in self.query_rasters], domain_ops=list(self.domain_ops))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """The inverse of :meth:`to_dict`.

        Raises:
            TrainError: ``d`` names an option this config lacks, or lacks ``map`` or ``out``.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise TrainError(f"unknown training option(s) {', '.join(unknown)}")
        missing = [n for n in ("map", "out") if n not in d]
        if missing:
            raise TrainError(f"a training config needs {' and '.join(missing)}")
        return cls(**d)


def checkpoint_entries(config: TrainConfig) -> dict:
    """The run's record in a checkpoint's extra: ``train_config`` (:meth:`TrainConfig.to_dict`)."""
    return {"train_config": config.to_dict()}
