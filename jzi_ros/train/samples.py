"""Training samples for the decoder: frames encoded once by the frozen encoder.

Three sources, alone or together: aerial frames (labelled by the cell under
the camera) rendered from the map's own orthophoto and from ``query_rasters``,
other rasters of the same place, with domain changes; street-level frames
rendered from the 3D world of those rasters (:mod:`jzi_ros.data.street`); and
geotagged images from a CSV. Frames are rendered on a second thread while the encoder works.
Encoded samples are cached beside the checkpoint (``.jzi_cache/``) under a
digest of everything they depend on, so a second run (or a resumed one)
skips the encoding.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data import AerialConfig, CameraPose, covered_frames, heldout_cells, in_heldout, pose_paths, source_ortho
from ..data.augment import street
from ..data.geotagged import load_geotagged, read_images
from ..data.street import StreetConfig, street_frames, street_roads, street_world
from ..geo import MapDir
from ..model import ZoomModel
from .config import TrainConfig
from .distributed import Dist

log = logging.getLogger(__name__)


ROLES = ("train", "val", "calib")
"""What a sample is for: training, validation (held-out cells), or the calibration fit (new poses anywhere)."""


@dataclass
class Samples:
    """Encoded training data.

    Attributes:
        x: query features (N, F), float16.
        paths: terminal paths (N, L) [actions].
        east_north: positions (N, 2) [m, the map's local frame].
        role: index into :data:`ROLES` of each sample (N,) int8.
        view_offset: (N,) where each sample's map's views start in features
            of several maps stacked (a general model's training); None: one map.
    """

    x: np.ndarray
    paths: np.ndarray
    east_north: np.ndarray
    role: np.ndarray
    view_offset: np.ndarray | None = None

    def save(self, path: Path) -> None:
        """Write the samples to an ``.npz`` file, atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, x=self.x, paths=self.paths, east_north=self.east_north, role=self.role)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Samples:
        """Read samples written by :meth:`save`."""
        with np.load(path) as z:
            return cls(z["x"], z["paths"], z["east_north"], z["role"])

    @classmethod
    def concat(cls, parts: list[Samples]) -> Samples:
        """The samples of ``parts``, one after the other."""
        out = cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("x", "paths", "east_north", "role")))
        if any(p.view_offset is not None for p in parts):
            out.view_offset = np.concatenate([p.offsets() for p in parts])
        return out

    def offsets(self) -> np.ndarray:
        """(N,) int64: :attr:`view_offset`, zeros for one map."""
        return np.zeros(len(self.x), np.int64) if self.view_offset is None else self.view_offset.astype(np.int64)

    def count(self, role: str) -> int:
        """How many samples have ``role`` (one of :data:`ROLES`)."""
        return int((self.role == ROLES.index(role)).sum())

    def part(self, role: str) -> Samples:
        """The samples with ``role`` (one of :data:`ROLES`)."""
        keep = self.role == ROLES.index(role)
        offset = None if self.view_offset is None else self.view_offset[keep]
        return Samples(self.x[keep], self.paths[keep], self.east_north[keep], self.role[keep], offset)


def cache_path(out: Path, key: dict) -> Path:
    """Where encoded samples described by ``key`` (JSON types) are cached for checkpoint ``out``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return out.parent / ".jzi_cache" / f"samples-{digest}.npz"


def aerial_config(config: TrainConfig) -> AerialConfig:
    """How aerial frames are rendered for a training run."""
    return AerialConfig(
        image_px=config.image_px,
        footprint_cells=config.footprint_cells,
        domain_ops=config.domain_ops,
        holdout_share=config.holdout,
        holdout_by_area=config.holdout_by_area,
        heading_known=config.heading_known,
        heading_error_deg=config.heading_error_deg,
    )


def prefetched(items: Iterator, depth: int = 2) -> Generator:
    """The items of ``items``, produced on a second thread up to ``depth`` ahead (its errors re-raised here).

    Rendering (OpenCV, which releases the GIL) then overlaps with encoding.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    end = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put(item)
            q.put(end)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(exc)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.01)


def _parts(val_split: str, n_val: int, n_train: int, roles: Sequence[str]) -> list[tuple[str, str, int]]:
    """(role, split, count) of each part a sampler makes, validation first, ``roles`` only."""
    parts = (("val", val_split, n_val), ("calib", "all", n_val), ("train", "train", n_train))
    return [part for part in parts if part[0] in roles]


def aerial_samples(
    mapdir: MapDir,
    model: ZoomModel,
    cfg: AerialConfig,
    n_train: int,
    n_val: int,
    seed: int,
    deadline_s: float | None = None,
    quiet: bool = False,
    query_rasters: Sequence[str | Path] = (),
    roles: Sequence[str] = ROLES,
) -> Samples:
    """Render and encode aerial frames.

    Each frame is rendered from the map's own orthophoto or from one of
    ``query_rasters`` (drawn at random), then changed photometrically and by
    ``cfg.domain_ops``, and turned north up when ``cfg.heading_known`` (the
    validation and calibration frames too: they are seen as the localizer
    will see frames); its label is the cell under the camera in the map's grid.

    Args:
        mapdir: the map whose region is rendered.
        model: its encoder encodes the frames.
        cfg: how frames are rendered and which cells are held out.
        n_train: training frames, outside the held-out cells.
        n_val: validation frames, inside the held-out cells (anywhere when none
            is held out), at other positions, headings and altitudes; as many
            calibration frames at new poses anywhere (where a robot flies).
        seed: seed of the held-out cells and of every pose.
        deadline_s: ``time.monotonic()`` [s] after which the training frames
            stop early (once there are 256); None: never.
        quiet: no progress bar.
        query_rasters: other rasters of the map's region (dates, sensors).
        roles: the parts to make (a map's calibration needs only "calib").

    Returns:
        The validation samples, the calibration ones, then the training ones (of ``roles``).
    """
    grid = mapdir.grid
    pad_m = cfg.max_footprint_m(grid)
    orthos = [source_ortho(mapdir, pad_m, r) for r in (None, *query_rasters)]
    heldout = heldout_cells(grid, cfg.holdout_share, seed, cfg.holdout_by_area)
    rng = np.random.default_rng(seed)
    parts = []
    val_split = "heldout" if cfg.holdout_share > 0 else "all"
    for role, split, count in _parts(val_split, n_val, n_train, roles):
        xs: list[np.ndarray] = []
        poses_done: list[CameraPose] = []
        batches = prefetched(covered_frames(orthos, grid, count, rng, cfg, split, heldout))
        with tqdm(total=count, desc=f"aerial frames ({role})", unit="frame", disable=quiet, dynamic_ncols=True) as pbar:
            for frames, poses, _ in batches:
                xs.append(model.encode_queries(list(frames)).cpu().numpy().astype(np.float16))
                poses_done += poses
                pbar.update(len(poses))
                late = deadline_s is not None and time.monotonic() > deadline_s
                if role == "train" and late and len(poses_done) >= 256:
                    log.warning("time budget: stopping aerial frames at %d of %d", len(poses_done), count)
                    break
        batches.close()
        east_north = np.array([[p.east_m, p.north_m] for p in poses_done])
        role_ids = np.full(len(poses_done), ROLES.index(role), np.int8)
        parts.append(Samples(np.concatenate(xs), pose_paths(grid, poses_done), east_north, role_ids))
    return Samples.concat(parts)


def street_samples(
    mapdir: MapDir,
    model: ZoomModel,
    cfg: StreetConfig,
    n_train: int,
    n_val: int,
    seed: int,
    rasters: Sequence[str | Path | None],
    dsm: Path | None = None,
    roads: Path | None = None,
    quiet: bool = False,
    roles: Sequence[str] = ROLES,
) -> Samples:
    """Render and encode street-level frames (:mod:`jzi_ros.data.street`).

    Each frame is rendered from the 3D world of one of ``rasters`` (None: the
    map's own) drawn at random; validation frames lie in the held-out cells
    (anywhere when none is), calibration frames anywhere, training frames
    outside the held-out cells; the label is the cell that holds the camera.
    ``roles``: the parts to make, as :func:`aerial_samples`'s.

    Returns:
        The validation samples, the calibration ones, then the training ones (of ``roles``).
    """
    grid = mapdir.grid
    worlds = [street_world(mapdir, r, dsm) for r in rasters]
    network = street_roads(mapdir, rasters[0], roads)
    heldout = heldout_cells(grid, cfg.holdout_share, seed, cfg.holdout_by_area)
    rng = np.random.default_rng([seed, 5])
    parts = []
    val_split = "heldout" if cfg.holdout_share > 0 else "all"
    for role, split, count in _parts(val_split, n_val, n_train, roles):
        xs: list[np.ndarray] = []
        poses: list[np.ndarray] = []
        batches = prefetched(street_frames(worlds, network, grid, count, rng, cfg, split, heldout))
        with tqdm(total=count, desc=f"street frames ({role})", unit="frame", disable=quiet, dynamic_ncols=True) as pbar:
            for frames, part in batches:
                xs.append(model.encode_queries(list(frames)).cpu().numpy().astype(np.float16))
                poses.append(part)
                pbar.update(len(part))
        batches.close()
        east_north = np.concatenate(poses)[:, :2]
        paths, _ = grid.paths_at_m(east_north[:, 0], east_north[:, 1])
        role_ids = np.full(len(east_north), ROLES.index(role), np.int8)
        parts.append(Samples(np.concatenate(xs), paths, east_north, role_ids))
    return Samples.concat(parts)


def street_config(config: TrainConfig) -> StreetConfig:
    """How street frames are rendered for a training run."""
    return StreetConfig.trained(config.image_px, config.to_dict())


def geotagged_samples(
    mapdir: MapDir,
    model: ZoomModel,
    csv: Path,
    seed: int,
    holdout_share: float,
    by_area: bool,
    copies: int,
    quiet: bool = False,
) -> Samples:
    """Encode geotagged images; those in held-out cells validate.

    Args:
        mapdir: the map the images lie in.
        model: its encoder encodes the images.
        csv: the images and their positions (image, latitude, longitude).
        seed: seed of the held-out cells and of the augmentation.
        holdout_share: share of terminal cells held out.
        by_area: hold out whole cells of the level above the terminal one.
        copies: each training image is also encoded this many times augmented
            (crop, colour, blur).
        quiet: no progress bar.

    Returns:
        The images' samples, augmented copies after each batch; those in
        held-out cells validate (and calibrate: there are no others).
    """
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
    rows = np.array(keep)
    roles = np.where(val[rows], ROLES.index("val"), ROLES.index("train")).astype(np.int8)
    return Samples(np.concatenate(xs), data.paths[rows], data.east_north[rows], roles)


def samples_key(config: TrainConfig, mapdir: MapDir, identity: dict) -> dict:
    """Everything a run's encoded samples depend on (JSON types): the key of their cache (:func:`cache_path`).

    Args:
        config: the run (its data, rendering, counts, seed and hold-out).
        mapdir: the map.
        identity: the encoder's (:meth:`~jzi_ros.model.ZoomModel.identity`).
    """
    aerial = None
    if config.aerial:
        aerial = aerial_config(config).to_dict()
        del aerial["heading_known"], aerial["heading_error_deg"]  # in "north_up" below
    key = {
        "format": 2,  # samples with roles (train, val, calib)
        "map": str(mapdir.path.resolve()),
        "grid": mapdir.grid.to_dict(),
        "identity": identity,
        "aerial": aerial,
        "query_rasters": [str(Path(p).resolve()) for p in config.query_rasters],
        "samples": config.samples,
        "val": config.val_samples,
        "seed": config.seed,
        "data": str(config.data) if config.data else None,
        "augment": config.augment if config.data else None,
        "holdout": [config.holdout, config.holdout_by_area],
        "query": config.query,
    }
    if config.street:  # street samples only in the keys of runs that have them; other runs keep theirs
        key["street"] = street_config(config).to_dict() | {
            "dsm": None if config.dsm is None else str(Path(config.dsm).resolve()),
            "roads": None if config.roads is None else str(Path(config.roads).resolve()),
        }
    if config.heading_known:  # north-up samples never mix with others; other runs keep the keys they had
        key["north_up"] = {"heading_error_deg": config.heading_error_deg}
    return key


def encoded_samples(
    config: TrainConfig, mapdir: MapDir, model: ZoomModel, dist: Dist, deadline_s: float | None
) -> Samples:
    """The run's samples: from the cache, or encoded by rank 0 and cached.

    Args:
        config: the run (its data, counts, seed and hold-out).
        mapdir: the map.
        model: the model whose frozen encoder encodes the samples.
        dist: this process's place in the job; the other ranks wait for rank 0.
        deadline_s: ``time.monotonic()`` [s] by which aerial frames should be
            done (see :func:`aerial_samples`); None: no deadline.

    Returns:
        The samples, on every rank.
    """
    aerial = aerial_config(config)
    cache = cache_path(config.out, samples_key(config, mapdir, model.identity()))
    if dist.main and not cache.exists():
        parts = []
        if config.aerial:
            n_train, n_val = config.samples, config.val_samples
            parts.append(
                aerial_samples(
                    mapdir, model, aerial, n_train, n_val, config.seed, deadline_s, config.quiet, config.query_rasters
                )
            )
        if config.street:
            rasters: list[str | Path | None] = list(config.query_rasters) or [None]
            n_train, n_val = config.samples, config.val_samples
            cfg = street_config(config)
            parts.append(
                street_samples(
                    mapdir, model, cfg, n_train, n_val, config.seed, rasters, config.dsm, config.roads, config.quiet
                )
            )
        if config.data:
            parts.append(
                geotagged_samples(
                    mapdir,
                    model,
                    config.data,
                    config.seed,
                    config.holdout,
                    config.holdout_by_area,
                    config.augment,
                    config.quiet,
                )
            )
        Samples.concat(parts).save(cache)
    elif dist.main:
        log.info("reusing encoded samples %s", cache)
    dist.barrier()
    return Samples.load(cache)
