"""Fitting the localizer's calibration at the end of a run: :func:`calibrate`.

The validation frames (held-out cells, and the domain gap training had: other
rasters and domain changes) are searched as the localizer searches them, and
:func:`jzi_ros.localizer.fit_calibration` makes the 95 % ellipse and the
confidence of the fixes they would give honest. The result goes into the
checkpoint as ``calibration``. A heading-known model's validation frames are
north up, as the localizer turns the frames it encodes for such a model; the
registration's fit (:func:`calibrate_registration`) registers the frames as
the camera took them, as the localizer's refinement does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

from ..data import AerialConfig, covered_frames, heldout_cells, source_ortho
from ..data.aerial import query_raster_problem
from ..data.augment import domain, photometric
from ..data.errors import CoverageError, DataError
from ..data.street import StreetConfig
from ..geo import CameraPose, MapDir, ZoomGrid
from ..geo.mapdir import SURFACE_FILE
from ..geo.ortho import LocalOrtho
from ..geo.surface import Surface
from ..localizer import DEFAULT_MIN_CONFIDENCE, Calibration, LocalizerConfig, fit_calibration
from ..localizer.calibration import fit_heading_scale, fit_registration_scale
from ..localizer.matchers import Matcher
from ..localizer.refine import Attitude, RefineConfig, Refiner
from ..model import ZoomModel, search_features
from .errors import TrainError
from .samples import Samples

if TYPE_CHECKING:
    from ..data.render3d import World3D

log = logging.getLogger(__name__)

MIN_FRAMES = 50
"""Fewer validation frames than this fit no calibration."""


@torch.no_grad()
def calibrate(
    model: ZoomModel,
    feats: torch.Tensor,
    val: Samples,
    grid: ZoomGrid,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    search: LocalizerConfig = LocalizerConfig(),
) -> Calibration | None:
    """Fit a calibration on encoded validation frames.

    Args:
        model: the trained model (its decoder searches).
        feats: the map's view features (N, 1 + g*g, F) on the decoder's device.
        val: the validation samples (features, true positions).
        grid: the map's zoom grid.
        min_confidence: the FIX threshold the covariance is fit for.
        search: the beam width and candidates the localizer uses.

    Returns:
        The calibration, or None when there are fewer than :data:`MIN_FRAMES` frames.
    """
    if len(val.x) < MIN_FRAMES:
        log.warning("%d validation frames: too few to calibrate (%d needed); none stored", len(val.x), MIN_FRAMES)
        return None
    model.decoder.eval()
    paths, probs = search_features(model.decoder, val.x, feats, search.beam, search.top_k)
    return fit_calibration(grid.centers_m(paths), probs, val.east_north, grid.terminal_size_m, min_confidence)


REGISTRATION_FRAMES = 200
"""Frames registered to fit the registration's covariance scale."""


def _world(ortho: LocalOrtho, surface: Surface) -> World3D:
    """The 3D world of a calibration orthophoto over the map's surface model."""
    from ..data.render3d import World3D

    return World3D.over(ortho, surface)


class RegistrationFit(NamedTuple):
    """What :func:`calibrate_registration` fit: the covariance's factor, on how many frames, the heading's factor."""

    scale: float
    frames: int
    heading_scale: float

    def applied_to(self, calibration: Calibration, cfog: bool = False) -> Calibration:
        """``calibration`` with this fit's registration scales; ``cfog``: a fit of CFOG, the fallback's too."""
        fitted = replace(
            calibration,
            registration_scale=self.scale,
            registration_frames=self.frames,
            heading_scale=self.heading_scale,
        )
        return self.as_fallback_of(fitted) if cfog else fitted

    def as_fallback_of(self, calibration: Calibration) -> Calibration:
        """``calibration`` with this fit (CFOG's) as the fallback matcher's factor, its own matcher's left as it is."""
        return replace(calibration, fallback_registration_scale=self.scale, fallback_registration_frames=self.frames)


def registration_frames(
    mapdir: MapDir, cfg: AerialConfig, query_rasters: tuple[Path, ...], frames: int, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, CameraPose, float, int]]:
    """Frames as a flight gives them to the registration: (RGB frame, camera pose, height above ground [m], source).

    ``source``: 0 for the map's raster, i + 1 for ``query_rasters[i]``.

    Rendered at new poses anywhere on the map from the map's raster and each
    of ``query_rasters``, with ``cfg``'s domain changes, never turned north up
    (the registration takes the camera's own frame and its attitude, for every
    model). With a surface model in the map they are rendered in 3D over it
    (the world of :mod:`jzi_ros.data.render3d`: relief, roofs, occlusion) and
    ranged to the surface under the camera, as a real flight over that place is.
    """
    grid = mapdir.grid
    surface = mapdir.surface() if mapdir.has_surface else None
    orthos = [source_ortho(mapdir, cfg.max_footprint_m(grid), r) for r in (None, *query_rasters)]
    worlds = None if surface is None else [_world(ortho, surface) for ortho in orthos]
    camera = cfg.camera
    raw = replace(cfg, holdout_share=0.0, heading_known=False)  # the refiner turns the frame itself
    for images, poses, sources in covered_frames(orthos, grid, frames, rng, raw, "all", heldout_cells(grid, 0.0)):
        for image, pose, source in zip(images, poses, sources, strict=True):
            height = pose.altitude_m
            if worlds is not None:  # the same pose in the 3D world, seen and ranged as a real camera would
                world = worlds[int(source)]
                image = world.render(camera.K, (camera.width_px, camera.height_px), pose)
                image = photometric(image, rng, raw.photometric)
                image = domain(image, rng, raw.domain_ops, raw.domain_p) if raw.domain_ops else image
                centre = world.camera_centre(pose)
                height = float(centre[2] - world.surface_at(pose.east_m, pose.north_m))
            yield image, pose, height, int(source)


def calibrate_registration(
    mapdir: MapDir,
    cfg: AerialConfig,
    query_rasters: tuple[Path, ...] = (),
    frames: int = REGISTRATION_FRAMES,
    seed: int = 0,
    learned: Matcher | None = None,
) -> RegistrationFit | None:
    """Fit the factors of verified fixes' covariances and heading variances on frames with the training's domain gap.

    The frames of :func:`registration_frames` are registered against the
    map's pyramid (with ``learned``, the model's learned matcher, else CFOG)
    around a candidate up to half a footprint from the truth, with an IMU's
    attitude and the true height (a rangefinder's);
    :func:`~jzi_ros.localizer.calibration.fit_registration_scale` on the verified ones.

    Returns:
        The position's scale, the verified frames and the heading's scale
        (:func:`~jzi_ros.localizer.calibration.fit_heading_scale`; 1 when too
        few had a heading variance), or None without a pyramid or with too few verified frames.
    """
    if not mapdir.has_pyramid:
        log.info("the map has no orthophoto pyramid: no registration to calibrate")
        return None
    surface = mapdir.surface() if mapdir.has_surface else None
    # the learned matcher's factor from its own fixes: CFOG's, the fallback's, is fitted without one
    refiner = Refiner(mapdir.grid, mapdir.pyramid(), RefineConfig(fallback_matcher=""), surface, learned)
    rng = np.random.default_rng([seed, 77])
    camera = cfg.camera
    offsets, covariances, yaw_errors, yaw_variances = [], [], [], []
    for image, pose, height, _ in registration_frames(mapdir, cfg, query_rasters, frames, rng):
        footprint = camera.footprint_at(pose.altitude_m)
        angle, dist = rng.uniform(0, 2 * np.pi), footprint * np.sqrt(rng.uniform()) / 2
        candidate = np.array([[pose.east_m + dist * np.cos(angle), pose.north_m + dist * np.sin(angle)]])
        reg = refiner.refine(image, camera, candidate, Attitude.imu_like(pose, rng), height_m=height)
        if reg.verified:
            offsets.append((pose.east_m - reg.east_m, pose.north_m - reg.north_m))
            covariances.append(reg.covariance_m2)
            yaw_errors.append((reg.yaw_deg - pose.yaw_deg + 180.0) % 360.0 - 180.0)
            yaw_variances.append(reg.yaw_variance_deg2)
    scale = fit_registration_scale(np.array(offsets).reshape(-1, 2), np.array(covariances).reshape(-1, 2, 2))
    if scale is None:
        log.warning("%d of %d frames verified: too few to calibrate the registration", len(offsets), frames)
        return None
    heading = fit_heading_scale(np.array(yaw_errors), np.array(yaw_variances))
    return RegistrationFit(scale, len(offsets), 1.0 if heading is None else heading)


MAP_FRAMES = 300
"""Frames a map's own calibration (:func:`calibrate_map`) is fit on."""


class MapCalibration(NamedTuple):
    """What :func:`calibrate_map` fit and stored: the calibration, where, and how long it took [s]."""

    calibration: Calibration
    path: Path
    seconds: float


def map_aerial_config(model: ZoomModel, train_config: dict) -> AerialConfig:
    """How a model's training rendered its frames (size, footprint, domain changes, heading), anywhere on a map."""
    from .config import DEFAULT_DOMAIN_OPS

    return AerialConfig(
        image_px=model.cfg.encoder.image_px,
        footprint_cells=tuple(float(v) for v in train_config.get("footprint_cells", (4.0, 8.0))),  # type: ignore[arg-type]
        domain_ops=tuple(train_config.get("domain_ops", DEFAULT_DOMAIN_OPS)),
        holdout_share=0.0,
        heading_known=bool(train_config.get("heading_known", False)),
        heading_error_deg=float(train_config.get("heading_error_deg", 10.0)),
    )


def calibrate_map(
    mapdir: MapDir,
    model: ZoomModel,
    train_config: dict,
    frames: int = MAP_FRAMES,
    seed: int = 0,
    quiet: bool = False,
    query_rasters: Sequence[Path] = (),
) -> MapCalibration:
    """Fit the model's calibration for this map from the map's own rendered frames, and store it in the map.

    A general model (or any model on a map it was not calibrated for) reports
    probabilities whose spread fits the places it learned on, not this map:
    ``frames`` aerial frames of the map's orthophoto (at new poses anywhere,
    with the training's domain changes standing in for another year or sensor)
    are encoded and searched as the localizer would, and :func:`calibrate`
    fits temperature, covariance scale and confidence; the registration's
    scales follow (:func:`calibrate_registration`, without the model). With
    ``query_rasters`` (the same place at another date or from another sensor)
    the frames are drawn from them as well as from the map's raster, so the
    fit sees that gap, as ``jzi train --query-rasters`` does. The
    record goes to ``calibrations/<model digest>.yaml`` of the map, where the
    localizer finds it. Indexes the map for the model first when it has not been.

    Raises:
        TrainError: too few frames asked or rendered to fit (fewer than :data:`MIN_FRAMES`), a street model's map
            has no heights or roads to draw street frames from, or a query raster does not exist.
        CoverageError: a query raster covers too little of the map's region (:func:`~jzi_ros.data.source_ortho`).
    """
    import time

    from ..localizer.index import index_map, zoomable
    from ..model.search import as_features
    from ..progress import bar
    from .samples import aerial_samples, street_samples

    problem = query_raster_problem(query_rasters, rendered=True)
    if problem:
        raise TrainError(f"{mapdir.path}: {problem}")
    if frames < MIN_FRAMES:
        raise TrainError(f"calibrating takes at least {MIN_FRAMES} frames, not {frames}")
    started = time.monotonic()
    model = zoomable(mapdir, model)
    street = bool(train_config.get("street")) and not train_config.get("aerial")
    device = next(model.decoder.parameters()).device
    feats = as_features(index_map(mapdir, model, progress=bar("indexing map views", quiet, unit="batch")), device)
    if street:  # street frames of the map's own 3D world: its raster over its surface, on its roads
        street_cfg = replace(StreetConfig.trained(model.cfg.encoder.image_px, train_config), holdout_share=0.0)
        dsm = mapdir.path / SURFACE_FILE if mapdir.has_surface else None
        try:
            sources = [None, *query_rasters]  # None: the map's own raster
            val = street_samples(
                mapdir, model, street_cfg, 0, frames, seed, sources, dsm, None, quiet, roles=("calib",)
            )
        except CoverageError:  # a query raster of another place: the map's own heights and roads are not at fault
            raise
        except DataError as exc:
            raise TrainError(
                f"{mapdir.path}: no street frames to calibrate a street model on ({exc}; a map built with --dsm and "
                f"the roads as NAME_roads.geojson beside its raster NAME.tif give them)"
            ) from None
    else:
        cfg = map_aerial_config(model, train_config)
        val = aerial_samples(
            mapdir, model, cfg, 0, frames, seed, quiet=quiet, query_rasters=query_rasters, roles=("calib",)
        )
    poses = val.east_north
    calibration = calibrate(model, feats, val, mapdir.grid)
    if calibration is None:
        raise TrainError(f"{len(poses)} frames of {mapdir.path}: too few to calibrate ({MIN_FRAMES} needed)")
    if not street:  # street frames are registered on the ground plane, whose sigma is its own (localizer.ground)
        fitted = calibrate_registration(mapdir, cfg, tuple(query_rasters), seed=seed)
        if fitted is not None:
            calibration = fitted.applied_to(calibration, cfog=True)
    seconds = time.monotonic() - started
    record = {
        "model": str(model.source) if model.source else None,
        "frames": len(poses),
        "query_rasters": [str(r) for r in query_rasters],
        "seconds": round(seconds, 1),
        "calibration": calibration.to_dict(),
    }
    path = mapdir.save_calibration(model.digest(), record)
    return MapCalibration(calibration, path, seconds)


def ensure_calibrated(
    mapdir: MapDir,
    model: str | Path | tuple[ZoomModel, dict],
    quiet: bool = False,
) -> MapCalibration | None:
    """A general model's calibration for ``mapdir``, fit now when the map has none (None: nothing to do).

    ``model``: a checkpoint, or one already loaded (``load_checkpoint``'s pair), which is then not read again.
    Map-specific checkpoints carry their own, and export folders the one
    they were exported with; neither is touched (nor rebuilt: only the checkpoint's config is read).
    A street model on a map that gives no street frames (no heights or roads) stays uncalibrated, with a
    warning: its frames are registered on the ground plane all the same.
    """
    from ..localizer.index import zoomable
    from ..model import load_checkpoint
    from ..model.zoom import read_checkpoint

    if isinstance(model, tuple):
        loaded, extra = model
    elif Path(model).is_dir() or not (read_checkpoint(model).get("config") or {}).get("general"):
        return None
    else:
        loaded, extra = load_checkpoint(model)
    if loaded.cfg.general:
        loaded = zoomable(mapdir, loaded)  # its digest is the cut model's on a map of fewer levels
    if not loaded.cfg.general or mapdir.load_calibration(loaded.digest()) is not None:
        return None
    train_config = extra.get("train_config") or {}
    try:
        return calibrate_map(mapdir, loaded, train_config, quiet=quiet)
    except TrainError as exc:
        if not train_config.get("street"):
            raise
        log.warning("%s; the street model runs uncalibrated on it", exc)  # its frames are registered all the same
        return None
