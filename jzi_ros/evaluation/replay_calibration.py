"""The registration's covariance fitted on replayed flights with ground truth (``jzi calibrate --from-replay``).

``jzi calibrate`` fits a verified fix's covariance factor on frames it renders
from the map's own raster (and ``--query-rasters``). What those frames cannot
show is an error every frame of a real flight shares: the map's shadows cast
by another sun, a georeferencing offset of a few metres.
Such an error is the same in metres at any altitude, so it matters most where
the registration is sharpest (low flights, fine maps), and the fitted ellipses
are then too small: on the demo's autumn flight the truth lay inside the 95 %
ellipse of 46 % of the verified fixes.

A flight the robot made with a GPS (or an RTK track) and replayed by ``jzi
eval-bag`` holds those errors: each verified fix's offset from the truth and
the covariance it was published with. This module refits the registration's
factors on them, as :func:`~jzi_ros.localizer.calibration.fit_registration_scale`
and :func:`~jzi_ros.localizer.calibration.fit_heading_scale` do on rendered
frames, and stores the result in the map's calibration record for the model,
where the node and every command find it. The factors are fitted on the
covariances the replay used divided by the factors it ran with, so fitting the
same replays again gives the same record, and a replay made before the record
changed remains a valid input. The record names the matcher the replays
registered with: the factor belongs to that matcher's covariances, so replay
with the matcher the node runs. A plain ``jzi calibrate`` afterwards fits the
record afresh from rendered frames.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ..geo import MapDir, ZoomGrid
from ..localizer.calibration import (
    MIN_REGISTRATION_FRAMES,
    Calibration,
    fit_heading_scale,
    fit_registration_scale,
    map_calibration,
)
from ..localizer.estimate import inside_ellipse_95
from ..localizer.index import zoomable
from ..localizer.localizer import GROUND_MATCHER
from .errors import EvaluationError

if TYPE_CHECKING:
    from ..model import ZoomModel

STREET_FIX = (
    "a ground robot's fix is its registration fused with the odometry's region, not a registration's covariance "
    "times the factor fitted here"
)
"""Why a street model's replays are refused (``localizer.ground``)."""

COLUMNS = ("verified", "true_lat", "true_lon", "est_lat", "est_lon", "cov_ee_m2", "cov_en_m2", "cov_nn_m2")
"""The columns of ``frames.csv`` a replay needs (``yaw_error_deg`` and ``yaw_sigma_deg`` also fit the heading's)."""


class ReplayErrors(NamedTuple):
    """Verified fixes of replays, as errors against the truth and covariances without the replays' factors.

    Truth minus fix (N, 2) [m], covariances (N, 2, 2) [m²] before the registration factor each replay
    ran with, that factor (N,), and heading errors (M,) [deg] with variances (M,) [deg²] before theirs.
    """

    offsets_m: np.ndarray
    covariances_m2: np.ndarray
    scales: np.ndarray
    yaw_errors_deg: np.ndarray
    yaw_variances_deg2: np.ndarray


class ReplayFit(NamedTuple):
    """What :func:`calibrate_from_replays` fit and stored.

    ``frames``: the verified fixes fitted on, ``headings`` those with a true heading; ``before`` and
    ``after``: the share of those fixes whose truth lies inside the 95 % ellipse as replayed and
    with the new factor (in-sample: about 95 % by construction); ``replay_scales``: the registration
    factors the replays ran with; ``heading_fitted``: False where too few fixes had a true heading
    (the heading's factor was kept); ``matcher``: the one the replays registered with.
    """

    calibration: Calibration
    path: Path
    frames: int
    headings: int
    before: float
    after: float
    replay_scales: tuple[float, ...]
    heading_fitted: bool
    matcher: str


def _truthy(text: str) -> bool:
    return text.strip().lower() in ("true", "1")


def read_replay(folder: Path, grid: ZoomGrid, digest: str | None) -> tuple[ReplayErrors, str]:
    """The verified fixes of one ``jzi eval-bag`` output folder, their covariances without its factors; its matcher.

    A replay written before ``eval-bag`` recorded the model's digest and the map's region is
    checked by the map's cell size alone.

    Raises:
        EvaluationError: Not an ``eval-bag`` folder (``metrics.json`` with the calibration it ran
            with, ``frames.csv`` with :data:`COLUMNS`), a replay of another model or map, of a
            street model (its fixes are fused with the odometry's region: ``localizer.ground``),
            or a verified fix without a finite, positive definite covariance.
    """
    folder = Path(folder)
    metrics_path, frames_path = folder / "metrics.json", folder / "frames.csv"
    if not metrics_path.is_file() or not frames_path.is_file():
        raise EvaluationError(f"{folder} holds no replay: jzi eval-bag --out writes metrics.json and frames.csv there")
    try:
        metrics = json.loads(metrics_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvaluationError(f"{metrics_path} is not the JSON eval-bag writes: {exc}") from None
    if not isinstance(metrics, dict) or "calibration" not in metrics or "verified_share" not in metrics:
        raise EvaluationError(
            f"{folder} is not a replay by jzi eval-bag (its metrics name no calibration or verified share); "
            "a recording scored by jzi score does not say which factors the node ran with"
        )
    matcher = str((metrics.get("registration") or {}).get("matcher", ""))
    if matcher == GROUND_MATCHER:
        raise EvaluationError(f"{folder} replayed a street model: {STREET_FIX}")
    ran = metrics.get("model_digest")
    if digest is not None and ran is not None and ran != digest:
        raise EvaluationError(f"{folder} replayed another model (digest {ran}, this one {digest})")
    region, cell = metrics.get("region"), metrics.get("terminal_size_m")
    if region is not None and not all(
        math.isclose(float(region[k]), float(getattr(grid, k)), rel_tol=1e-9, abs_tol=1e-9) for k in region
    ):
        raise EvaluationError(f"{folder} replayed another map ({ZoomGrid.from_dict(region).describe()})")
    elif cell is not None and not math.isclose(float(cell), grid.terminal_size_m, rel_tol=1e-6):
        raise EvaluationError(
            f"{folder} replayed a map of {float(cell):g} m cells, this one has {grid.terminal_size_m:g} m cells"
        )
    ran_with = Calibration.from_dict(metrics["calibration"])
    with frames_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in COLUMNS if rows and c not in rows[0]]
    if missing:
        raise EvaluationError(f"{frames_path} lacks the columns {', '.join(missing)}")
    # fixes its fallback matcher verified carry that one's factor (RefineConfig.fallback_matcher): not fitted here
    rows = [r for r in rows if _truthy(r["verified"]) and r.get("matcher", "") in ("", matcher)]
    try:
        at = np.array([[float(r[c]) for c in COLUMNS[1:]] for r in rows], float).reshape(-1, len(COLUMNS) - 1)
        yaw = np.array([[float(r.get("yaw_error_deg") or "nan"), float(r.get("yaw_sigma_deg") or "nan")] for r in rows])
    except ValueError as exc:
        raise EvaluationError(f"{frames_path}: a verified fix has a value that is no number ({exc})") from None
    cov = at[:, 4:].reshape(-1, 3)[:, [0, 1, 1, 2]].reshape(-1, 2, 2)
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(at).all(1) & (cov[:, 0, 0] > 0) & (np.linalg.det(cov) > 0))
    if bad.any():
        raise EvaluationError(
            f"{frames_path}: {int(bad.sum())} verified fixes without a finite, positive definite covariance "
            f"(the first at t = {rows[int(np.argmax(bad))].get('t_s', '?')} s)"
        )
    truth = np.array(grid.frame.to_local(at[:, 0], at[:, 1]), float).reshape(2, -1).T
    fixes = np.array(grid.frame.to_local(at[:, 2], at[:, 3]), float).reshape(2, -1).T
    yaw = yaw.reshape(-1, 2)[np.isfinite(yaw.reshape(-1, 2)).all(1)]
    errors = ReplayErrors(
        truth - fixes,
        cov / ran_with.registration_scale,
        np.full(len(rows), ran_with.registration_scale),
        yaw[:, 0],
        yaw[:, 1] ** 2 / ran_with.heading_scale,
    )
    return errors, matcher


class Fitted(NamedTuple):
    """What :func:`fit_replays` fit: ``base`` with the new factors, the fixes, their matcher, the heading fitted."""

    calibration: Calibration
    errors: ReplayErrors
    matcher: str
    heading_fitted: bool


def fit_replays(folders: list[Path], grid: ZoomGrid, base: Calibration, digest: str | None) -> Fitted:
    """``base`` with the registration's factors fitted on the verified fixes of ``folders`` (:class:`Fitted`).

    The heading's factor is kept where fewer than :data:`MIN_REGISTRATION_FRAMES` fixes have a true heading,
    and is never below 1 (:func:`~jzi_ros.localizer.calibration.fit_heading_scale`).

    Raises:
        EvaluationError: No folder given, one unreadable (:func:`read_replay`), or fewer than
            :data:`MIN_REGISTRATION_FRAMES` verified fixes in all.
    """
    if not folders:
        raise EvaluationError("name at least one replay folder (jzi eval-bag --out)")
    read = [read_replay(f, grid, digest) for f in folders]
    matchers = sorted({m for _, m in read})
    if len(matchers) > 1:
        raise EvaluationError(f"the replays registered with different matchers ({', '.join(matchers)}): fit on one")
    errors = ReplayErrors(*(np.concatenate([getattr(p, k) for p, _ in read]) for k in ReplayErrors._fields))
    scale = fit_registration_scale(errors.offsets_m, errors.covariances_m2)
    if scale is None:
        raise EvaluationError(
            f"{len(errors.offsets_m)} verified fixes in {', '.join(str(f) for f in folders)}: "
            f"{MIN_REGISTRATION_FRAMES} or more are needed to fit a covariance"
        )
    # never narrower than the registration's own: the demo's calibration flight, whose headings came out better
    # than its sigmas (0.62), took another flight's headings within two sigma from 93.9 to 87.2 %
    heading = fit_heading_scale(errors.yaw_errors_deg, errors.yaw_variances_deg2)
    fitted = replace(
        base,
        registration_scale=scale,
        registration_frames=len(errors.offsets_m),
        heading_scale=base.heading_scale if heading is None else heading,
    )
    return Fitted(fitted, errors, matchers[0], heading is not None)


def _inside(errors: ReplayErrors, scales: np.ndarray | float) -> float:
    """The share of the fixes whose truth lies inside the 95 % ellipse of their covariances times ``scales``."""
    return float(inside_ellipse_95(errors.offsets_m, errors.covariances_m2 * np.reshape(scales, (-1, 1, 1))).mean())


def calibrate_from_replays(
    mapdir: MapDir, folders: list[Path], base: Calibration, digest: str, model_name: str
) -> ReplayFit:
    """Fit the registration's factors on replays (:func:`fit_replays`) and store them in the map's record for the model.

    ``base``: the calibration the model has on this map now (:func:`~jzi_ros.localizer.calibration.map_calibration`),
    whose zoom calibration is kept; ``model_name`` goes into a new record. The record names the
    replays it was fitted on; ``jzi calibrate`` without them fits afresh.
    """
    fitted, errors, matcher, heading_fitted = fit_replays(folders, mapdir.grid, base, digest)
    record = mapdir.load_calibration(digest) or {"model": model_name, "frames": base.frames, "query_rasters": []}
    record["calibration"] = fitted.to_dict()
    record["replays"] = [str(f) for f in folders]
    record["replay_matcher"] = matcher
    path = mapdir.save_calibration(digest, record)
    return ReplayFit(
        fitted,
        path,
        len(errors.offsets_m),
        len(errors.yaw_errors_deg),
        _inside(errors, errors.scales),
        _inside(errors, fitted.registration_scale),
        tuple(sorted({float(v) for v in errors.scales})),
        heading_fitted,
        matcher,
    )


def check_drone_model(extra: dict, name: str) -> None:
    """Refuse a street model (its checkpoint's ``extra``; ``name`` its file).

    Raises:
        EvaluationError: A ground robot's fix is its registration fused with the odometry's region,
            whose covariance a factor would compound through the drive.
    """
    train_config = extra.get("train_config") or {}
    if train_config.get("street") and not train_config.get("aerial"):
        raise EvaluationError(f"{name} is a street model: {STREET_FIX}")


def calibrate_model_from_replays(
    mapdir: MapDir, folders: list[Path], model: ZoomModel, extra: dict, name: str
) -> ReplayFit:
    """:func:`calibrate_from_replays` for a loaded checkpoint (``model``, ``extra``; ``name`` its file).

    The record is the one of a general model cut to the map's levels, as the localizer reads it;
    a general model's zoom calibration must be fitted first (``jzi calibrate``), or it is the identity.
    A street model's replays are refused by their matcher (:func:`read_replay`;
    :func:`check_drone_model` says so before anything is fitted).

    Raises:
        EvaluationError: Replays that cannot be fitted on (:func:`fit_replays`).
    """
    model = zoomable(mapdir, model)
    base = map_calibration(mapdir, extra, model.digest(), model.cfg.general)
    return calibrate_from_replays(mapdir, folders, base, model.digest(), name)
