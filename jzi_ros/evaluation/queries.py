"""Query sources of `jzi evaluate`: frames with known positions the model never saw.

Aerial queries are camera frames rendered from the map's own orthophoto, or
from another raster of the same place (another date or sensor: the gap a
real camera has), with a random stream of their own (never the training
one), by default in the terminal cells training held out; geotagged queries
are images listed in a CSV with their latitude and longitude. Both come as
:class:`Queries`. A heading-known model (``jzi train --heading-known``) is
given aerial queries turned north up with an IMU's attitude
(:func:`north_up_queries`), as the localizer turns a robot's frames.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..data import AerialConfig, CameraPose, covered_frames, heldout_cells, pose_paths, source_ortho
from ..data.geotagged import load_geotagged, read_images
from ..data.street import StreetConfig, street_frames, street_roads, street_world
from ..geo import MapDir, Pinhole, ZoomGrid
from ..geo.camera import north_up
from ..localizer.refine import Attitude
from .errors import EvaluationError

log = logging.getLogger(__name__)

RENDER_BATCH = 64
"""Poses rendered at a time."""


class Queries(NamedTuple):
    """Query images with where they were taken."""

    images: list[np.ndarray]  # N images, RGB uint8 (H, W, 3)
    latlon: np.ndarray  # (N, 2) true latitude, longitude [deg]
    paths: np.ndarray  # (N, L) true terminal paths
    poses: list[CameraPose] | None = None  # the cameras of rendered frames (None: geotagged images)

    @classmethod
    def concat(cls, parts: list[Queries]) -> Queries:
        """All queries of ``parts``, in order (poses only when every part has them)."""
        poses = [p for part in parts for p in part.poses or []] if all(part.poses for part in parts) else None
        return cls(
            [image for part in parts for image in part.images],
            np.concatenate([part.latlon for part in parts]),
            np.concatenate([part.paths for part in parts]),
            poses,
        )


def training_aerial_config(image_px: int, train_args: dict) -> AerialConfig:
    """The aerial rendering a model was trained with.

    Args:
        image_px: The model's input side [px].
        train_args: The training options stored in its checkpoint (``extra["train_config"]``).

    Returns:
        The footprints and held-out cells of training, the rest as default.
    """
    return AerialConfig(
        image_px=image_px,
        footprint_cells=tuple(train_args.get("footprint_cells", AerialConfig.footprint_cells)),
        holdout_share=train_args.get("holdout", AerialConfig.holdout_share),
        holdout_by_area=train_args.get("holdout_by_area", False),
    )


def aerial_queries(
    mapdir: MapDir,
    cfg: AerialConfig,
    count: int,
    seed: int,
    split: str,
    holdout_seed: int,
    raster: str | Path | None = None,
) -> Queries:
    """Frames rendered from the map's orthophoto, or from ``raster`` (the same place).

    Args:
        mapdir: The map.
        cfg: How frames are rendered (as in training: see :func:`training_aerial_config`).
        count: Frames to render.
        seed: Seed of the frames' positions, headings and colours.
        split: ``"heldout"`` (in the cells training held out) or ``"all"``.
        holdout_seed: The training's seed, which chose the held-out cells.
        raster: Render from this instead of the map's own rasters.

    Returns:
        ``count`` frames whose footprint lies (``cfg.min_coverage``) on the raster.
    """
    grid = mapdir.grid
    ortho = source_ortho(mapdir, cfg.max_footprint_m(grid), raster)
    heldout = heldout_cells(grid, cfg.holdout_share, holdout_seed, cfg.holdout_by_area)
    if split == "heldout" and not heldout.any():
        log.info("the model was trained without held-out cells: aerial queries anywhere on the map")
        split = "all"
    rng = np.random.default_rng([seed, 4242])  # never the training stream
    frames: list[np.ndarray] = []
    poses: list[CameraPose] = []
    for imgs, kept, _ in covered_frames([ortho], grid, count, rng, cfg, split, heldout, RENDER_BATCH):
        frames += list(imgs)
        poses += kept
    east = np.array([p.east_m for p in poses])
    north = np.array([p.north_m for p in poses])
    lat, lon = grid.frame.to_latlon(east, north)
    return Queries(frames, np.stack([lat, lon], 1), pose_paths(grid, poses), poses)


def street_queries(
    mapdir: MapDir,
    cfg: StreetConfig,
    count: int,
    seed: int,
    split: str,
    holdout_seed: int,
    raster: str | Path | None = None,
    dsm: str | Path | None = None,
    roads: str | Path | None = None,
) -> Queries:
    """Street-level frames of the 3D world of the map's raster, or of ``raster`` (the same place, another date).

    Args:
        mapdir: The map.
        cfg: How frames are rendered (as in training: :meth:`StreetConfig.trained`).
        count: Frames to render.
        seed: Seed of the frames' positions, headings and colours.
        split: ``"heldout"`` (in the cells training held out) or ``"all"``.
        holdout_seed: The training's seed, which chose the held-out cells.
        raster: Render from this instead of the map's own raster.
        dsm: The surface model under it (default: the raster's own).
        roads: The road network (default: the raster's own).

    Returns:
        ``count`` frames with their positions; no poses (they are not registered against the map).
    """
    grid = mapdir.grid
    heldout = heldout_cells(grid, cfg.holdout_share, holdout_seed, cfg.holdout_by_area)
    if split == "heldout" and not heldout.any():
        log.info("the model was trained without held-out cells: street queries anywhere on the map")
        split = "all"
    world = street_world(mapdir, raster, dsm)
    network = street_roads(mapdir, raster, roads)
    rng = np.random.default_rng([seed, 4343])  # never the training stream
    frames: list[np.ndarray] = []
    poses: list[np.ndarray] = []
    for imgs, part in street_frames([world], network, grid, count, rng, cfg, split, heldout, RENDER_BATCH):
        frames += list(imgs)
        poses.append(part)
    east_north = np.concatenate(poses)[:, :2]
    lat, lon = grid.frame.to_latlon(east_north[:, 0], east_north[:, 1])
    paths, _ = grid.paths_at_m(east_north[:, 0], east_north[:, 1])
    return Queries(frames, np.stack([lat, lon], 1), paths)


def north_up_queries(queries: Queries, camera: Pinhole, seed: int) -> tuple[list[np.ndarray], list[Attitude]]:
    """Rendered queries turned north up and nadir with an attitude as an IMU reports it.

    Args:
        queries: Rendered queries (with their poses).
        camera: Their camera.
        seed: Seed of the attitude noise.

    Returns:
        The turned frames (:func:`jzi_ros.geo.camera.north_up`) and the attitude
        each was turned with (:meth:`~jzi_ros.localizer.refine.Attitude.imu_like`:
        the truth with :data:`~jzi_ros.localizer.refine.IMU_SIGMAS_DEG` of noise),
        which the registration is given too.
    """
    if queries.poses is None:
        raise EvaluationError("only rendered queries (with their poses) can be turned north up")
    rng = np.random.default_rng([seed, 5150])  # a stream of its own
    frames, attitudes = [], []
    for image, pose in zip(queries.images, queries.poses, strict=True):
        a = Attitude.imu_like(pose, rng)
        assert a.yaw_deg is not None and a.pitch_deg is not None and a.roll_deg is not None  # imu_like sets all
        frames.append(north_up(image, camera, a.yaw_deg, a.pitch_deg, a.roll_deg))
        attitudes.append(a)
    return frames, attitudes


def geotagged_queries(csv_path: str | Path, grid: ZoomGrid) -> Queries:
    """Geotagged images of a CSV (image, latitude, longitude) inside the region.

    Args:
        csv_path: The CSV; image paths are relative to its folder.
        grid: The map's zoom grid; images outside its region are left out.

    Returns:
        The images read, with their positions and terminal paths.
    """
    data = load_geotagged(csv_path, grid)
    return Queries(read_images(data.images), data.latlon, data.paths)
