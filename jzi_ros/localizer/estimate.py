"""Where the camera is, with its uncertainty: :class:`Estimate`.

A *verified* estimate is the camera's position registered against the map
(:mod:`jzi_ros.localizer.refine`, which documents its covariance), with the
confidence :data:`VERIFIED_CONFIDENCE`. Otherwise the reported position is the
centre of the best terminal cell; its covariance (east/north, m²) and its
confidence come from the search's candidate cells through the model's
:class:`~jzi_ros.localizer.calibration.Calibration`, which documents the
formulas. An estimate below ``min_confidence`` is still returned, with
``trusted`` False.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..geo.camera import CameraPose

CHI2_95_2DOF = 5.991464547107979
"""The 95 % quantile of the chi-square distribution with 2 degrees of freedom:
a 2-D Gaussian puts 95 % of its mass inside ``d^T Sigma^-1 d <= CHI2_95_2DOF``."""

VERIFIED_CONFIDENCE = 0.99
"""Confidence of a verified fix: on the cross-source flights of the README's
Results ("Verified against the map") at most 1 % of verified fixes with the
IMU's heading lie more than two terminal cells off."""

VERTICAL_VARIANCE_M2 = 1.0e4
"""Default variance [m²] of a fix's altitude, which the localizer does not measure."""


@dataclass(frozen=True)
class Candidate:
    """One of the K terminal cells the search returns, with its probability ``p_k`` (``prob``).

    ``path`` names the cell; its centre is WGS84 (``lat``, ``lon``) [deg] and
    local (``east_m``, ``north_m``) [m].
    """

    path: tuple[int, ...]
    lat: float
    lon: float
    east_m: float
    north_m: float
    prob: float


@dataclass(frozen=True)
class Estimate:
    """Where the camera is: WGS84 (lat, lon) [deg] and local (east, north) [m].

    Also its covariance (2x2, m², east/north), confidence (the probability
    that it lies within two terminal cells of the truth), whether it is trusted, the best path, the candidates
    (the registered one first), the terminal cell side [m] and timings [ms] of each stage.
    ``verified``: the frame was registered against the map around a candidate
    and passed every check; ``verdict``: "ok", or why it was not verified
    (also why no registration ran: "refinement is off", "the map has no
    orthophoto pyramid"); ``inliers``: the registration's agreeing
    correspondences; ``mode``: how the frame was searched, one of
    :data:`~jzi_ros.localizer.tracking.MODES` (global, tracking, prior);
    ``gated``: verified only because it landed inside tracking's gate
    (:mod:`~jzi_ros.localizer.refine`); ``altitude_m``: the camera's
    elevation [m] in the map's surface model's vertical datum, from a
    verified registration on it (NaN otherwise); ``camera``: the verified
    registration's camera pose (its heading ``yaw_deg`` solved, its tilt the
    attitude's or a level camera's; None unless verified) and
    ``yaw_variance_deg2`` that heading's variance [deg²] (NaN unless verified);
    ``matcher``: the name of the matcher that verified it ("" unless verified).
    """

    lat: float
    lon: float
    east_m: float
    north_m: float
    covariance_m2: np.ndarray
    confidence: float
    trusted: bool
    path: tuple[int, ...]
    candidates: list[Candidate]
    cell_size_m: float
    timings_ms: dict = field(default_factory=dict)
    verified: bool = False
    verdict: str = ""
    inliers: int = 0
    mode: str = "global"
    gated: bool = False
    altitude_m: float = float("nan")
    camera: CameraPose | None = None
    yaw_variance_deg2: float = float("nan")
    matcher: str = ""

    def fix_covariance_m2(self, vertical_variance_m2: float = VERTICAL_VARIANCE_M2) -> np.ndarray:
        """(3, 3) ENU covariance [m²] of a ``NavSatFix``.

        The horizontal block (symmetrized) and the given altitude variance.
        """
        cov = np.zeros((3, 3))
        cov[:2, :2] = (self.covariance_m2 + self.covariance_m2.T) / 2
        cov[2, 2] = vertical_variance_m2
        return cov

    def contains(self, east_m: float, north_m: float) -> bool:
        """Whether a position [m, local frame] lies inside the 95 % ellipse."""
        return self.mahalanobis2(east_m, north_m) <= CHI2_95_2DOF

    def mahalanobis2(self, east_m: float, north_m: float) -> float:
        """The squared Mahalanobis distance of a position [m, local frame] under the covariance.

        At most :data:`CHI2_95_2DOF` inside the 95 % ellipse: how far past it (or how deep inside) a
        truth lies (``frames.csv``'s ``mahalanobis2``; :func:`~jzi_ros.localizer.calibration.ellipse_factor`).
        """
        offset = np.array([east_m - self.east_m, north_m - self.north_m])
        return float(offset @ np.linalg.solve(self.covariance_m2, offset))


def inside_ellipse_95(offsets_m: np.ndarray, covariances_m2: np.ndarray) -> np.ndarray:
    """(N,) bool: whether each offset (N, 2) [m] from an estimate lies inside its 95 % ellipse.

    Each offset's ellipse is that of its covariance (N, 2, 2) [m²].
    """
    offsets_m = np.asarray(offsets_m, float)
    solved = np.linalg.solve(covariances_m2, offsets_m[..., None])[..., 0]  # (N, 2)
    return (offsets_m * solved).sum(-1) <= CHI2_95_2DOF


def ellipse_95(covariance_m2: np.ndarray) -> tuple[float, float, float]:
    """The 95 % ellipse of a (2, 2) covariance [m²]: (width, height, angle).

    Full width and height [m] and the angle [deg, from east, counter-clockwise]
    of the width's axis.
    """
    vals, vecs = np.linalg.eigh(covariance_m2)  # ascending
    width, height = 2 * np.sqrt(CHI2_95_2DOF * np.maximum(vals[::-1], 0))
    angle_deg = float(np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1])))
    return float(width), float(height), angle_deg
