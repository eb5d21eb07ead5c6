"""Per-frame localization: one image (and an optional prior) -> an :class:`Estimate`."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..errors import JziError
from ..geo import BoundsM, MapDir, Pinhole, ZoomGrid
from ..geo.camera import CameraPose, north_up
from ..geo.lens import Lens
from ..images import to_rgb
from ..inference.runtime import PRECISIONS, to_numpy
from ..progress import logged
from .calibration import WITHIN_CELLS, Calibration, map_calibration
from .errors import InputError, LocalizerError, PriorError
from .estimate import VERIFIED_CONFIDENCE, Candidate, Estimate
from .ground import GroundConfig, GroundRegistrar
from .index import check_region, index_map, zoomable
from .matchers import Matcher, learned_matcher, stored_window
from .refine import Attitude, Gate, RefineConfig, Refiner, Registration
from .tracking import GLOBAL, PRIOR, TRACKING, Odometry, Region, Tracker, TrackingConfig

if TYPE_CHECKING:
    from ..inference import Backend
    from ..model import ZoomModel

log = logging.getLogger(__name__)

GROUND_MATCHER = "street view on the ground plane"
"""The registration a street model runs (:meth:`Localizer.refine_summary`): the ground ahead against the map."""

DEFAULT_MIN_CONFIDENCE = 0.9
"""Default threshold of FIX: the estimate is within two terminal cells of the truth with 90 % probability."""


STREET_HEIGHT_M = 1.8
"""A street-level camera's height above the ground [m] when none is given (the middle of street training's)."""


@dataclass(frozen=True)
class LocalizerConfig:
    """Search and filter settings of a :class:`Localizer`.

    ``beam``: beam width (1 = greedy); ``top_k``: candidates kept;
    ``min_confidence``: below this probability of lying within two terminal
    cells of the truth an estimate is flagged untrusted (NO_FIX);
    ``smoothing_noise_m2_s``: process noise [m²/s] of the optional temporal
    filter (0 = off, the default); ``prior_sigmas``: half-width of a prior's
    box, in standard deviations; ``hfov_deg``: the camera's horizontal field
    of view when no intrinsics are given; ``refine``: the registration
    against the map (on by default where the map has its orthophoto pyramid);
    ``ground``: the registration of street-level frames (a model trained
    with ``--street`` only, :mod:`.ground`); ``tracking``: search near the
    last verified fix (:mod:`.tracking`);
    ``trust_unverified``: where the map registers frames, a zoom fix that
    could not be verified is published as FIX when its confidence reaches
    ``min_confidence`` (False, the default: only verified fixes are FIX
    there; the zoom's confidence is fitted on flat frames, and on real
    relief one such FIX in ten was more than two cells off);
    ``map_precision``: how the map's view tokens are held (None: as the
    decoder computes, float32 on the CPU; "float16" halves them, "int8"
    quarters them for city-scale maps, see :class:`~jzi_ros.model.search.ViewTokens`);
    ``greedy_above``: greedy until unsure: at a level where the best path holds
    at least this share of the probability only it goes on (1, the default: always the beam).
    """

    beam: int = 4
    top_k: int = 5
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    smoothing_noise_m2_s: float = 0.0
    prior_sigmas: float = 3.0
    hfov_deg: float = 60.0
    refine: RefineConfig = RefineConfig()
    ground: GroundConfig = GroundConfig()
    tracking: TrackingConfig = TrackingConfig()
    map_precision: str | None = None
    trust_unverified: bool = False
    greedy_above: float = 1.0

    def __post_init__(self) -> None:
        problems = [
            f"{name} {value}"
            for name, value, ok in (
                ("beam", self.beam, isinstance(self.beam, int) and self.beam >= 1),
                ("top_k", self.top_k, isinstance(self.top_k, int) and self.top_k >= 1),
                ("min_confidence", self.min_confidence, 0.0 <= self.min_confidence <= 1.0),
                ("smoothing_noise_m2_s", self.smoothing_noise_m2_s, self.smoothing_noise_m2_s >= 0.0),
                ("prior_sigmas", self.prior_sigmas, self.prior_sigmas > 0.0),
                ("hfov_deg", self.hfov_deg, 0.0 < self.hfov_deg < 180.0),
                ("map_precision", self.map_precision, self.map_precision in (None, *PRECISIONS)),
                ("greedy_above", self.greedy_above, 0.0 < self.greedy_above <= 1.0),
            )
            if not ok
        ]
        if problems:
            raise LocalizerError(
                f"invalid localizer settings: {', '.join(problems)} (beam and top_k at least 1, min_confidence "
                f"within 0..1, smoothing noise 0 or more, prior_sigmas above 0, hfov_deg within 0..180, "
                f"map_precision one of {', '.join(PRECISIONS)}, greedy_above within 0..1)"
            )


@dataclass(frozen=True)
class Prior:
    """A position known beforehand (a previous fix, an odometry guess) with its covariance [m²].

    ``covariance_m2`` is 2x2 (east, north) or 3x3 (ENU, as a ``NavSatFix``
    carries it; its horizontal block is used).
    """

    lat: float
    lon: float
    covariance_m2: np.ndarray


MIN_FRAME_STD = 2.0
"""Grey-level standard deviation below which a frame holds no image (a lens cap, night, a blank frame)."""
MIN_FRAME_MEAN = 6.0
"""Mean grey level below which a frame is taken as black."""


def _check_information(rgb: np.ndarray) -> None:
    """InputError for a frame with nothing to localize by: uniform, or nearly black."""
    sample = rgb[::4, ::4].astype(np.float32)
    if float(sample.std()) < MIN_FRAME_STD or float(sample.mean()) < MIN_FRAME_MEAN:
        raise InputError(
            f"the frame holds no image (mean grey {sample.mean():.1f}, spread {sample.std():.1f}): "
            f"uniform or nearly black"
        )


HEADING_NEEDED = (
    "the model was trained for north-up frames (jzi train --heading-known) and needs the camera's heading "
    "for every frame"
)


def _check_knowledge(attitude: Attitude | None, height_m: float | None) -> None:
    """InputError unless the attitude's angles are finite and the height finite and positive."""
    if height_m is not None and not (math.isfinite(height_m) and height_m > 0):
        raise InputError(f"the height above ground must be finite and positive, not {height_m}")
    if attitude is not None:
        angles = (attitude.yaw_deg, attitude.pitch_deg, attitude.roll_deg)
        if not all(a is None or math.isfinite(a) for a in angles):
            raise InputError(f"the attitude's angles must be finite, not {angles}")


def _outside(reg: Registration, gate: Gate | None, bound, slack_m: float) -> str:
    """Why a verified registration lies where the robot cannot be ("" when it can, or it is not verified).

    ``gate``: tracking's disc (the last verified fix and how far the robot can
    have moved since); ``bound``: a prior's box (centre, half-widths [m]);
    ``slack_m``: how far beyond either a fix may still lie (two terminal
    cells: a fix farther off is a false one).
    """
    if not reg.verified:
        return ""
    at = np.array([reg.east_m, reg.north_m])
    if gate is not None:
        off = float(np.hypot(*(at - np.asarray(gate[0], float))))
        if off > gate[1] + slack_m:
            return f"verified {off:.0f} m from the last fix, farther than the robot can have moved ({gate[1]:.0f} m)"
    if bound is not None and (np.abs(at - bound[0]) > bound[1] + slack_m).any():
        return "verified outside the prior's box"
    return ""


@dataclass(frozen=True)
class EngineSettings:
    """TensorRT engines of an export (backend ``tensorrt``): ``fp16`` precision; ``force_update`` rebuilds them."""

    fp16: bool = True
    force_update: bool = False


class Localizer:
    """Loads a map and a model once; :meth:`localize` turns frames into estimates.

    ``model``: a checkpoint (``jzi train``), a model object, or an export
    folder (``jzi export --format onnx --map MAP``), which runs on
    ``onnxruntime`` without importing torch. The map's views stay
    memory-mapped; from a checkpoint only its encoder features are read, after
    checking that they were computed for this model's encoder. The covariance
    and confidence follow the checkpoint's (or export's) calibration (``jzi
    train`` fits one); ``calibration`` overrides it (a model given as an
    object has none of its own: the identity). ``threads``: the backend's CPU
    threads (0: its default); ``engines``: how an export's TensorRT engines are built.
    """

    def __init__(
        self,
        mapdir: MapDir | str | Path,
        model: ZoomModel | str | Path,
        backend: str = "torch",
        config: LocalizerConfig = LocalizerConfig(),
        device: str = "cpu",
        calibration: Calibration | None = None,
        threads: int = 0,
        engines: EngineSettings | None = None,
    ) -> None:
        self.map = mapdir if isinstance(mapdir, MapDir) else MapDir(mapdir)
        self.grid: ZoomGrid = self.map.grid
        self.config = config
        self.model: ZoomModel | None = None
        extra: dict = {}
        if isinstance(model, (str, Path)) and Path(model).is_dir():  # an export: no torch
            self.backend: Backend = self._exported(Path(model), backend, device, threads, engines or EngineSettings())
            meta = self.backend.exported.meta
            extra = {k: meta.get(k) for k in ("calibration", "train_config", "matcher")}
            digest, general = meta.get("digest"), bool(meta.get("general"))
        else:
            from ..inference import make_backend
            from ..model import load_checkpoint

            self.model, extra = (model, {}) if not isinstance(model, (str, Path)) else load_checkpoint(model)
            self.model = zoomable(self.map, self.model)  # a general model on a map of fewer levels: cut to them
            digest, general = self.model.digest(), self.model.cfg.general
            if general:  # any map: indexed for it on first use
                feats = index_map(self.map, self.model, progress=logged("indexing map views", log))
            else:
                feats = self.map.load_features(self.model.feature_identity())
            self.backend = make_backend(
                backend, self.model, feats, device, beam=config.beam, precision=config.map_precision, threads=threads
            )
        export = Path(model) if self.model is None and isinstance(model, (str, Path)) else None
        checks = (extra.get("matcher") or {}).get("checks") or {}
        wanted = config.refine.matcher == "learned" or (
            config.refine.matcher == "auto" and checks.get("better_than_cfog", True)
        )  # auto: unless its fit found CFOG verifying more on this map
        learned = self._learned_matcher(export, extra) if wanted else None
        if learned is None and config.refine.matcher == "learned":
            raise LocalizerError("matcher learned: the model has no learned matcher (jzi train-matcher gives it one)")
        self.model_digest: str | None = digest
        """The model's digest, which names its calibration record in a map (``jzi calibrate``)."""
        self.calibration = calibration or map_calibration(self.map, extra, digest, general)
        self._filter: tuple[np.ndarray, np.ndarray, float] | None = None
        self.refiner: Refiner | None = None
        self.ground: GroundRegistrar | None = None
        self.refine_off = "refinement is off"
        train_config = extra.get("train_config") or {}
        self.street = bool(train_config.get("street", False)) and not train_config.get("aerial", False)
        """The model localizes street-level frames only (``jzi train --street``): the ground ahead is registered."""
        if config.refine.enabled:
            if not self.map.has_pyramid:
                self.refine_off = "the map has no orthophoto pyramid"
            elif self.street:  # the ground in front of the camera, projected onto the ground plane
                self.ground = GroundRegistrar(self.map.pyramid(), config.ground)
            else:
                surface = self.map.surface() if self.map.has_surface else None
                self.refiner = Refiner(self.grid, self.map.pyramid(), config.refine, surface, learned)
        self.tracker = Tracker(config.tracking)
        self.heading_known = bool(train_config.get("heading_known", False))
        """The model sees frames turned north up (``jzi train --heading-known``): every frame needs a heading."""
        footprint = train_config.get("footprint_cells", (4.0, 8.0))
        self.footprint_cells = math.sqrt(float(footprint[0]) * float(footprint[1]))
        """Ground width [terminal cells] of a typical training frame: the height assumed when none is given."""

    @staticmethod
    def _learned_matcher(export: Path | None, extra: dict) -> Matcher | None:
        """The model's learned matcher on ONNX Runtime (an ``export``'s graph, or a checkpoint's), or None."""
        if not extra.get("matcher"):
            return None
        if export is not None:  # no torch
            from ..inference.runtime import onnx_matcher_runner

            stored = extra["matcher"]
            return learned_matcher(onnx_matcher_runner(export), stored.get("checks"), window=stored_window(stored))
        from ..model.descriptor import checkpoint_matcher

        return checkpoint_matcher(extra["matcher"])

    def _exported(self, folder: Path, backend: str, device: str, threads: int, engines: EngineSettings):
        """The backend of an export folder, checked against the map: its region and the map it was made for."""
        from ..inference.runtime import ExportedModel, OnnxBackend

        if backend not in ("onnxruntime", "tensorrt"):
            raise LocalizerError(f"{folder} is an export: it runs on backend onnxruntime or tensorrt, not {backend}")
        exported = ExportedModel.load(folder)
        check_region(self.map, exported.meta["region"], bool(exported.meta.get("general")))
        made_for = exported.meta.get("map")
        if made_for is not None and ZoomGrid.from_dict(made_for) != self.grid:
            raise LocalizerError(f"{folder} holds the view tokens of another map: jzi export --map {self.map.path}")
        precision = self.config.map_precision or ""
        if backend == "tensorrt":  # engines built from the export's graphs, cached per GPU: no torch either
            from ..inference.tensorrt_runtime import TensorRTBackend

            gpu = device if device.startswith("cuda") else "cuda"
            return TensorRTBackend(
                exported, exported.view_tokens(), gpu, engines.fp16, engines.force_update, precision=precision
            )
        return OnnxBackend(exported, exported.view_tokens(), device, threads, precision)

    def refine_summary(self) -> dict:
        """How the registration against the map runs: ``on``, and the matcher or why it is off."""
        if self.ground is not None:
            return {"on": True, "matcher": GROUND_MATCHER, "range_m": self.config.ground.range_m}
        if self.refiner is None:
            return {"on": False, "why": self.refine_off}
        r = self.config.refine
        return {
            "on": True,
            "matcher": self.refiner.matcher.name,
            "fallback_matcher": self.refiner.fallback.matcher.name if self.refiner.fallback is not None else "",
            "candidates": r.candidates,
            "global_candidates": r.registered(True, False),
            "sweep_places": r.sweep_places,
        }

    def camera(self, image: np.ndarray, camera: Pinhole | None = None) -> Pinhole:
        """The frame's camera: the field of view of ``camera`` (else ``hfov_deg``) at the image's size.

        Intrinsics scale with the image, so a camera info of the full-size
        image serves a resized or compressed stream too.
        """
        hfov_deg = camera.hfov_deg if camera is not None else self.config.hfov_deg
        return Pinhole(image.shape[1], image.shape[0], hfov_deg)

    def prior_prefix(self, prior: Prior) -> tuple[int, ...]:
        """Deepest cell (shorter than terminal) that holds the prior's box of ``prior_sigmas`` standard deviations."""
        if not (math.isfinite(prior.lat) and math.isfinite(prior.lon)):
            raise PriorError("prior position is not finite")
        if not (-90 <= prior.lat <= 90 and -180 <= prior.lon <= 180):
            raise PriorError(f"prior position ({prior.lat}, {prior.lon}) is not a latitude and longitude")
        cov = np.asarray(prior.covariance_m2, float)
        if cov.shape not in ((2, 2), (3, 3)):
            raise PriorError(f"prior covariance must be 2x2 (east, north) or 3x3 (ENU), not {cov.shape}")
        cov = cov[:2, :2]
        if not np.isfinite(cov).all() or (np.diag(cov) < 0).any() or np.linalg.eigvalsh((cov + cov.T) / 2)[0] < -1e-9:
            raise PriorError("prior covariance is not finite and positive semi-definite")
        east, north = (float(v) for v in self.grid.frame.to_local(prior.lat, prior.lon))
        return self.box_prefix(east, north, *(self.config.prior_sigmas * np.sqrt(np.diag(cov))))

    def box_prefix(self, east_m: float, north_m: float, half_east_m: float, half_north_m: float) -> tuple[int, ...]:
        """Deepest cell (shorter than terminal) that holds a box [m] of these half-widths around (east, north)."""
        corners_e = east_m + np.array([-half_east_m, half_east_m, -half_east_m, half_east_m])
        corners_n = north_m + np.array([-half_north_m, -half_north_m, half_north_m, half_north_m])
        prefix: tuple[int, ...] = ()
        for level in range(1, self.grid.levels):
            paths, inside = self.grid.paths_at_m(corners_e, corners_n, level)
            if not inside.all() or not (paths == paths[0]).all():
                break
            prefix = tuple(int(a) for a in paths[0])
        return prefix

    def localize(
        self,
        image: np.ndarray,
        encoding: str = "rgb",
        prior: Prior | None = None,
        stamp_s: float | None = None,
        *,
        camera: Pinhole | Lens | None = None,
        attitude: Attitude | None = None,
        height_m: float | None = None,
        odometry: Odometry | None = None,
    ) -> Estimate:
        """Localize one frame. ``stamp_s`` [s] (finite) feeds the optional temporal filter.

        What the robot knows improves the registration against the map:
        ``camera`` (intrinsics: a :class:`~jzi_ros.geo.lens.Lens` is undone
        first, the frame rectified to its ideal pinhole; default a pinhole of ``hfov_deg``), ``attitude``
        (heading and tilt of the camera) and ``height_m`` (above ground [m];
        without it three heights around the one at which the model was trained
        to see the ground are tried). A model trained with ``--heading-known``
        sees the frame turned north up with the attitude, which must then hold
        a heading.

        With tracking on (:mod:`.tracking`) and no ``prior``, a frame after a
        verified one is searched near it; that needs ``stamp_s``. ``odometry``
        (the robot's pose in its odometry frame at the frame's stamp) moves
        that search with the robot; a frame that does not verify is then
        placed where the odometry says (not a FIX), with the region's covariance.

        Raises:
            InputError: the image cannot be used, or the attitude or height is
                not finite (or the height not positive), or a heading-known
                model gets no heading.
            PriorError: the prior cannot be used.
        """
        t0 = time.perf_counter()
        _check_knowledge(attitude, height_m)
        if stamp_s is not None and not math.isfinite(stamp_s):
            raise InputError(f"the frame's stamp {stamp_s} is not finite")
        if self.heading_known and (attitude is None or attitude.yaw_deg is None):
            raise InputError(f"{HEADING_NEEDED}: give an attitude with a yaw")
        rgb = to_rgb(image, encoding)
        _check_information(rgb)
        if isinstance(camera, Lens):  # a real lens: the frame as the ideal pinhole of its fx sees it
            lens = camera.scaled(rgb.shape[1], rgb.shape[0])
            rgb, camera = lens.rectify(rgb), lens.ideal
        cam = self.camera(rgb, camera)
        seen = rgb
        if self.heading_known and attitude is not None and attitude.yaw_deg is not None:
            seen = north_up(rgb, cam, attitude.yaw_deg, attitude.pitch_deg or 0.0, attitude.roll_deg or 0.0)
        t1 = time.perf_counter()
        query = self.backend.encode([seen])
        t2 = time.perf_counter()
        mode, gate = GLOBAL, None
        prefix: tuple[int, ...] = ()
        region = self.tracker.region(stamp_s, odometry)
        bound: tuple[np.ndarray, np.ndarray] | None = None  # where the robot can be: centre and half-widths [m]
        prior_cov: np.ndarray | None = None
        if prior is not None:
            mode, prefix = PRIOR, self.prior_prefix(prior)
            centre = np.array([float(v) for v in self.grid.frame.to_local(prior.lat, prior.lon)])
            prior_cov = np.asarray(prior.covariance_m2, float)[:2, :2]
            bound = centre, self.config.prior_sigmas * np.sqrt(np.diag(prior_cov))
        elif region is not None:
            gate = region
            (east, north), radius = region.centre, region.radius
            mode, prefix = TRACKING, self.box_prefix(float(east), float(north), radius, radius)
        top_k = self.config.top_k
        if self.refiner is not None and gate is None and attitude is not None and attitude.yaw_deg is not None:
            top_k = max(top_k, self.config.refine.registered(True, False))  # registered, not all published
        res = self.backend.search(query, self.config.beam, top_k, prefix, self.config.greedy_above)
        t3 = time.perf_counter()
        paths, probs = to_numpy(res.paths[0]), to_numpy(res.probs[0])
        centres = self.grid.centers_m(paths)
        lat, lon = self.grid.frame.to_latlon(centres[:, 0], centres[:, 1])
        cands = [
            Candidate(tuple(int(a) for a in p), float(la), float(lo), float(c[0]), float(c[1]), float(pr))
            for p, la, lo, c, pr in zip(paths, lat, lon, centres, probs, strict=True)
        ]
        cell_m, kept = self.grid.terminal_size_m, slice(0, self.config.top_k)  # the calibration's and the publication's
        cov = self.calibration.covariances(centres[None, kept], probs[None, kept], cell_m)[0]
        confidence = float(self.calibration.confidences(centres[None, kept], probs[None, kept], cell_m)[0])
        position, path = centres[0], cands[0].path
        verified, verdict, inliers, gated, altitude = False, self.refine_off, 0, False, math.nan
        heading = math.nan  # where the robot faces, from a verified registration
        camera_pose: CameraPose | None = None
        yaw_var, matcher = math.nan, ""
        t4 = time.perf_counter()
        if self.refiner is not None or self.ground is not None:
            assumed_m = cam.altitude_for_footprint(self.footprint_cells * cell_m)
            try:  # tracking: the gate's centre (the last verified fix) first, then the zoom's candidates
                if self.ground is not None:
                    prior_at = None if bound is None or prior_cov is None else (bound[0], prior_cov)
                    reg = self._register_ground(rgb, cam, centres, attitude or Attitude(), height_m, gate, prior_at)
                else:
                    assert self.refiner is not None
                    reg = self.refiner.refine(
                        rgb, cam, centres, attitude or Attitude(), height_m, assumed_m, gate, self._box(bound)
                    )
            except (JziError, cv2.error, ValueError, np.linalg.LinAlgError) as exc:
                # the zoom's estimate stands; the reason goes with it
                reg = Registration(False, f"registration failed: {exc}")
            outside = _outside(reg, gate, bound, WITHIN_CELLS * self.grid.terminal_size_m)
            if outside:
                reg = replace(reg, verified=False, verdict=outside)
            verified, verdict, inliers, gated = reg.verified, reg.verdict, reg.inliers, bool(reg.forgiven)
            if reg.verified:
                altitude, matcher = reg.altitude_m, reg.matcher
                camera_pose = self._camera_pose(reg, attitude)
                heading = camera_pose.facing_deg() if math.isfinite(reg.yaw_deg) else math.nan
                yaw_var = reg.yaw_variance_deg2 * self.calibration.heading_scale
                position = np.array([reg.east_m, reg.north_m])
                cov, confidence = reg.covariance_m2 * self._registration_scale(reg), VERIFIED_CONFIDENCE
                half = self.grid.size_m / 2 - 1e-6
                if reg.candidate >= 0 and np.abs(position).max() > half:  # in the pyramid's margin
                    path = cands[reg.candidate].path  # the registered candidate's cell names it
                else:  # the cell holding the fix (the nearest one when a fix from the last position is in the margin)
                    paths_in, _ = self.grid.paths_at_m(*np.clip(position, -half, half)[:, None])
                    path = tuple(int(a) for a in paths_in[0])
                found = (
                    reg.candidate
                    if reg.candidate >= 0
                    else next((i for i, c in enumerate(cands) if c.path == path), -1)
                )
                if found >= 0:
                    cands.insert(0, cands.pop(found))
                else:  # started from the last fix in a cell the zoom did not list: it comes first all the same
                    e, n = (float(v) for v in self.grid.centers_m(np.array([path]))[0])
                    la, lo = (float(v) for v in self.grid.frame.to_latlon(e, n))
                    cands.insert(0, Candidate(path, la, lo, e, n, 0.0))
        if not verified and gate is not None and gate.odometry:  # tracking's region: where the odometry says
            position, cov = np.asarray(gate.centre, float), np.eye(2) * (gate.radius / 3.0) ** 2
        self.tracker.update(stamp_s, verified, position, cov, odometry, heading)
        mu, cov = self._smooth(position, cov, stamp_s)
        lat0, lon0 = (float(v) for v in self.grid.frame.to_latlon(mu[0], mu[1]))
        t5 = time.perf_counter()
        timings = {
            "decode": (t1 - t0) * 1e3,
            "encode": (t2 - t1) * 1e3,
            "search": (t3 - t2) * 1e3,
            "refine": (t5 - t4) * 1e3,
            "total": (t5 - t0) * 1e3,
        }
        return Estimate(
            lat0,
            lon0,
            float(mu[0]),
            float(mu[1]),
            cov,
            confidence,
            verified
            or (
                confidence >= self.config.min_confidence
                and (self.refiner is None and self.ground is None or self.config.trust_unverified)
            ),
            path,
            cands[: self.config.top_k],
            self.grid.terminal_size_m,
            timings,
            verified,
            verdict,
            inliers,
            mode,
            gated,
            altitude,
            camera_pose,
            yaw_var,
            matcher,
        )

    def initial_pose(
        self,
        lat: float,
        lon: float,
        covariance_m2: np.ndarray,
        stamp_s: float,
        heading_deg: float | None = None,
        odometry: Odometry | None = None,
    ) -> None:
        """Start tracking from a pose known by other means (a robot at its dock, a last GPS fix; Nav2's initial pose).

        The next frames are searched near it as after a verified fix; with
        ``heading_deg`` (where the robot faces, clockwise from north) and the
        ``odometry`` at ``stamp_s`` the search moves with the robot (:mod:`.tracking`).

        Raises:
            PriorError: the position or covariance cannot be used.
        """
        self.prior_prefix(Prior(lat, lon, covariance_m2))  # the checks of a prior
        east, north = (float(v) for v in self.grid.frame.to_local(lat, lon))
        cov = np.asarray(covariance_m2, float)[:2, :2]
        self.tracker.update(stamp_s, True, np.array([east, north]), cov, odometry, heading_deg)

    def _register_ground(
        self,
        rgb: np.ndarray,
        cam: Pinhole,
        centres: np.ndarray,
        attitude: Attitude,
        height_m: float | None,
        gate: Region | None,
        prior_at: tuple[np.ndarray, np.ndarray] | None,
    ) -> Registration:
        """A street frame registered on the ground plane: near tracking's region, in a prior, or at the zoom's cells.

        Where the odometry carried the region (or a prior bounds the place)
        the registration is combined with it; elsewhere it must fix both
        directions by itself (:mod:`.ground`).
        """
        assert self.ground is not None
        height = height_m or STREET_HEIGHT_M
        if gate is not None:
            return self.ground.register(
                rgb,
                cam,
                gate.centre,
                gate.radius,
                attitude,
                height,
                gate.covariance_m2,
                gate.heading_deg,
                gate.odometry,
            )
        if prior_at is not None:
            centre, cov = prior_at
            reach = self.config.prior_sigmas * math.sqrt(float(np.linalg.eigvalsh(cov)[-1]))
            return self.ground.register(rgb, cam, centre, reach, attitude, height, cov)
        best: Registration | None = None
        reach = self.grid.terminal_size_m / 2
        for i, centre in enumerate(np.asarray(centres, float)[: self.config.refine.candidates]):
            reg = replace(self.ground.register(rgb, cam, centre, reach, attitude, height), candidate=i)
            if reg.verified:
                return reg
            best = best or reg
        return best or Registration(False, "no candidate to register around")

    def _box(self, bound: tuple[np.ndarray, np.ndarray] | None) -> BoundsM:
        """Where the robot can be: a prior's box (centre, half-widths [m]) inside the map, else the map."""
        half = self.grid.size_m / 2
        if bound is None:
            return BoundsM(-half, -half, half, half)
        (w, s), (e, n) = (np.clip(bound[0] + sign * bound[1], -half, half) for sign in (-1, 1))
        return BoundsM(float(w), float(s), float(max(e, w + 1e-3)), float(max(n, s + 1e-3)))

    def _registration_scale(self, reg: Registration) -> float:
        """The calibration's factor of a verified registration's covariance: its fallback matcher's or its own."""
        fallback = self.refiner.fallback if self.refiner is not None else None
        if fallback is not None and reg.matcher == fallback.matcher.name:
            return self.calibration.fallback_registration_scale
        return self.calibration.registration_scale

    def _camera_pose(self, reg: Registration, attitude: Attitude | None) -> CameraPose:
        """The camera of a verified registration: its place, height and heading with the known tilt (else level)."""
        level = 90.0 if self.ground is not None else 0.0  # a street camera looks at the horizon
        tilt = (attitude.pitch_deg, attitude.roll_deg) if attitude is not None else (None, None)
        pitch, roll = (level, 0.0) if tilt[0] is None or tilt[1] is None else (tilt[0], tilt[1])
        return CameraPose(reg.east_m, reg.north_m, reg.height_m, reg.yaw_deg, pitch, roll)

    def _smooth(self, z: np.ndarray, r: np.ndarray, stamp_s: float | None) -> tuple[np.ndarray, np.ndarray]:
        """A constant-position Kalman filter over frames (off unless configured)."""
        q = self.config.smoothing_noise_m2_s
        if q <= 0 or stamp_s is None:
            return z, r
        if self._filter is None or stamp_s < self._filter[2]:
            self._filter = (z, r, stamp_s)
            return z, r
        x, p, t = self._filter
        p = p + np.eye(2) * q * (stamp_s - t)
        gain = p @ np.linalg.inv(p + r)
        x = x + gain @ (z - x)
        p = (np.eye(2) - gain) @ p
        self._filter = (x, p, stamp_s)
        return x, p

    def reset(self) -> None:
        """Forget the temporal filter's and the tracking's state (a new sequence)."""
        self._filter = None
        self.tracker.reset()
