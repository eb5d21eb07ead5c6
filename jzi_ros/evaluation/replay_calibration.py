"""The registration's covariance fitted on replayed flights with ground truth (``jzi calibrate --from-replay``).

``jzi calibrate`` fits a verified fix's covariance factor on frames it renders
from the map's own raster (and ``--query-rasters``). What those frames cannot
show is an error every frame of a real flight shares: the map's shadows cast
by another sun, its buildings' lean, a georeferencing offset of a few metres.
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
same replays again gives the same record. Replays made before this record
changed stay valid inputs.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..geo import MapDir, ZoomGrid
from ..localizer.calibration import (
    MIN_REGISTRATION_FRAMES,
    Calibration,
    fit_heading_scale,
    fit_registration_scale,
)
from ..localizer.estimate import CHI2_95_2DOF
from .errors import EvaluationError

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
    with the new factor.
    """

    calibration: Calibration
    path: Path
    frames: int
    headings: int
    before: float
    after: float


def read_replay(folder: Path, grid: ZoomGrid, digest: str | None) -> ReplayErrors:
    """The verified fixes of one ``jzi eval-bag`` output folder, their covariances without its registration factor.

    Raises:
        EvaluationError: Not an ``eval-bag`` folder (``metrics.json`` with the calibration it ran
            with, ``frames.csv`` with :data:`COLUMNS`), a replay of another model or map.
    """
    folder = Path(folder)
    metrics_path, frames_path = folder / "metrics.json", folder / "frames.csv"
    if not metrics_path.is_file() or not frames_path.is_file():
        raise EvaluationError(f"{folder} holds no replay: jzi eval-bag --out writes metrics.json and frames.csv there")
    metrics = json.loads(metrics_path.read_text())
    if "calibration" not in metrics or "verified_share" not in metrics:
        raise EvaluationError(
            f"{folder} is not a replay by jzi eval-bag (its metrics name no calibration or verified share); "
            "a recording scored by jzi score does not say which factors the node ran with"
        )
    ran = metrics.get("model_digest")
    if digest is not None and ran is not None and ran != digest:
        raise EvaluationError(f"{folder} replayed another model (digest {ran}, this one {digest})")
    cell = metrics.get("terminal_size_m")
    if cell is not None and not math.isclose(float(cell), grid.terminal_size_m, rel_tol=1e-6):
        raise EvaluationError(
            f"{folder} replayed a map of {float(cell):g} m cells, this one has {grid.terminal_size_m:g} m cells"
        )
    ran_with = Calibration.from_dict(metrics["calibration"])
    with frames_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in COLUMNS if rows and c not in rows[0]]
    if missing:
        raise EvaluationError(f"{frames_path} lacks the columns {', '.join(missing)}")
    rows = [r for r in rows if r["verified"] == "True"]
    truth = np.array([grid.frame.to_local(float(r["true_lat"]), float(r["true_lon"])) for r in rows]).reshape(-1, 2)
    fixes = np.array([grid.frame.to_local(float(r["est_lat"]), float(r["est_lon"])) for r in rows]).reshape(-1, 2)
    cov = np.array([[[r["cov_ee_m2"], r["cov_en_m2"]], [r["cov_en_m2"], r["cov_nn_m2"]]] for r in rows], float)
    yaw = np.array([[r.get("yaw_error_deg", "nan"), r.get("yaw_sigma_deg", "nan")] for r in rows], float)
    yaw = yaw.reshape(-1, 2)[np.isfinite(yaw.reshape(-1, 2)).all(1)]
    return ReplayErrors(
        truth - fixes,
        cov.reshape(-1, 2, 2) / ran_with.registration_scale,
        np.full(len(rows), ran_with.registration_scale),
        yaw[:, 0],
        yaw[:, 1] ** 2 / ran_with.heading_scale,
    )


def fit_replays(
    folders: list[Path], grid: ZoomGrid, base: Calibration, digest: str | None
) -> tuple[Calibration, ReplayErrors]:
    """``base`` with the registration's factors fitted on the verified fixes of ``folders``, and those fixes.

    The heading's factor is kept where fewer than :data:`MIN_REGISTRATION_FRAMES` fixes have a true heading,
    and is never below 1 (:func:`~jzi_ros.localizer.calibration.fit_heading_scale`).

    Raises:
        EvaluationError: No folder given, one unreadable (:func:`read_replay`), or fewer than
            :data:`MIN_REGISTRATION_FRAMES` verified fixes in all.
    """
    if not folders:
        raise EvaluationError("name at least one replay folder (jzi eval-bag --out)")
    parts = [read_replay(f, grid, digest) for f in folders]
    errors = ReplayErrors(*(np.concatenate([getattr(p, k) for p in parts]) for k in ReplayErrors._fields))
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
    return fitted, errors


def _inside(errors: ReplayErrors, scales: np.ndarray | float) -> float:
    """The share of the fixes whose truth lies inside the 95 % ellipse of their covariances times ``scales``."""
    cov = errors.covariances_m2 * np.reshape(scales, (-1, 1, 1))
    solved = np.linalg.solve(cov, errors.offsets_m[..., None])[..., 0]
    return float(((errors.offsets_m * solved).sum(-1) <= CHI2_95_2DOF).mean())


def calibrate_from_replays(
    mapdir: MapDir, folders: list[Path], base: Calibration, digest: str, model_name: str
) -> ReplayFit:
    """Fit the registration's factors on replays (:func:`fit_replays`) and store them in the map's record for the model.

    ``base``: the calibration the model has on this map now (:func:`~jzi_ros.localizer.calibration.map_calibration`),
    whose zoom calibration is kept; ``model_name`` goes into a new record. The record names the
    replays it was fitted on; ``jzi calibrate`` without them fits afresh.
    """
    fitted, errors = fit_replays(folders, mapdir.grid, base, digest)
    record = mapdir.load_calibration(digest) or {"model": model_name, "frames": base.frames, "query_rasters": []}
    record["calibration"] = fitted.to_dict()
    record["replays"] = [str(f) for f in folders]
    path = mapdir.save_calibration(digest, record)
    return ReplayFit(
        fitted,
        path,
        len(errors.offsets_m),
        len(errors.yaw_errors_deg),
        _inside(errors, errors.scales),
        _inside(errors, fitted.registration_scale),
    )
