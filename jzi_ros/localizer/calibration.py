"""Honest uncertainty: a calibration fit on held-out frames and applied to every estimate.

The search returns K candidate terminal cells, centres ``c_k`` (the best,
``mu = c_1``, is the reported position) with probabilities ``p_k``. The
covariance (east/north, m²) of a cell of side ``w``::

    Sigma = s [ (w² / 12) I + sum_k pi_k (c_k - mu)(c_k - mu)^T ],   pi_k = p_k^(1/T) / sum_j p_j^(1/T)

``w² / 12`` per axis is the variance of a position uniform over one cell; a
confident frame reports about that, an ambiguous one, whose candidates lie
far apart, a large ellipse.

Across a gap between camera and map (another sensor, year or season) the
zoom's probabilities are over-confident: the raw 95 % ellipse misses the
truth far more often than in 5 % of frames. Three fitted quantities fix that:

- ``temperature`` T flattens (T > 1) the candidates' probabilities before
  they spread the covariance: ``pi_k ∝ p_k^(1/T)``;
- ``covariance_scale`` s multiplies the covariance of
  :func:`~jzi_ros.localizer.estimate.covariance` so that the truth lies inside
  the 95 % ellipse of 95 % of the held-out frames published as FIX;
- ``confidence`` is the probability that the fix lies within
  :data:`WITHIN_CELLS` terminal cells of the truth: a logistic curve
  (``confidence_weight``, ``confidence_bias``) of the logit of the search's own
  probability mass within that distance of the best cell.

The identity (T = 1, s = 1, weight 1, bias 0) reports the search's own
numbers; it stands in for checkpoints trained without a calibration.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from .estimate import CHI2_95_2DOF, inside_ellipse_95

if TYPE_CHECKING:
    from ..geo import MapDir

log = logging.getLogger(__name__)

WITHIN_CELLS = 2.0
"""A fix is right when it lies within this many terminal cell sides of the truth."""
TEMPERATURES = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0)
"""Temperatures tried by :func:`fit_calibration`."""
MIN_FIX_FRAMES = 20
"""Fewer held-out frames above the confidence threshold than this: the covariance is fit on all frames."""
PRIOR_WEIGHT = 1.0
"""Strength of the pull of the confidence curve towards the identity (a few frames cannot bend it far)."""
_EPS = 1e-4


@dataclass(frozen=True)
class Calibration:
    """How raw search output becomes a covariance and a confidence (see the module docstring).

    Attributes:
        temperature: T of the candidates' probabilities in the covariance.
        covariance_scale: s, the factor of the covariance.
        confidence_weight: slope of the confidence's logistic curve.
        confidence_bias: its offset.
        frames: held-out frames it was fit on (0: the identity, not fit).
        fix_frames: of those, the frames above ``min_confidence`` the covariance was fit on.
        min_confidence: the confidence threshold it was fit for.
        registration_scale: the factor of a verified fix's covariance (the
            registration's own, :mod:`jzi_ros.localizer.refine`), fit so that
            the truth lies inside the 95 % ellipse of 95 % of the verified
            held-out frames (:func:`fit_registration_scale`).
        registration_frames: the verified frames it was fit on (0: not fit).
        fallback_registration_scale: the same factor for fixes that the
            registration's fallback matcher verified (CFOG where the model's
            learned matcher verified nothing: ``RefineConfig.fallback_matcher``).
        fallback_registration_frames: the verified frames that one was fit on (0: not fit).
        heading_scale: the factor of a verified fix's heading variance, fit on
            the same frames so that 95 % of the headings' errors lie within
            1.96 of its standard deviations (:func:`fit_heading_scale`).
    """

    temperature: float = 1.0
    covariance_scale: float = 1.0
    confidence_weight: float = 1.0
    confidence_bias: float = 0.0
    frames: int = 0
    fix_frames: int = 0
    min_confidence: float = 0.0
    registration_scale: float = 1.0
    registration_frames: int = 0
    heading_scale: float = 1.0
    fallback_registration_scale: float = 1.0
    fallback_registration_frames: int = 0

    @property
    def fitted(self) -> bool:
        """Whether it was fit on held-out frames (not the identity)."""
        return self.frames > 0

    def weights(self, probs: np.ndarray) -> np.ndarray:
        """(N, K) candidate weights ``pi_k ∝ p_k^(1/T)``, summing to 1 per frame."""
        logp = np.log(np.clip(np.asarray(probs, float), 1e-30, None)) / self.temperature
        w = np.exp(logp - logp.max(-1, keepdims=True))  # all zero probabilities: equal weights
        return w / w.sum(-1, keepdims=True)

    def covariances(self, centres_m: np.ndarray, probs: np.ndarray, cell_m: float) -> np.ndarray:
        """(N, 2, 2) covariance [m²] about each frame's best centre.

        Args:
            centres_m: (N, K, 2) candidate centres [m], best first.
            probs: (N, K) their probabilities.
            cell_m: terminal cell side [m].
        """
        centres_m = np.asarray(centres_m, float)
        pi = self.weights(probs)
        d = centres_m - centres_m[:, :1]  # (N, K, 2)
        spread = (pi[..., None, None] * d[..., :, None] * d[..., None, :]).sum(1)
        return self.covariance_scale * (np.eye(2) * cell_m**2 / 12 + spread)

    def confidences(self, centres_m: np.ndarray, probs: np.ndarray, cell_m: float) -> np.ndarray:
        """(N,) probability that each frame's fix is within :data:`WITHIN_CELLS` cells of the truth."""
        z = _logit(raw_confidence(centres_m, probs, cell_m))
        return _sigmoid(self.confidence_weight * z + self.confidence_bias)

    def to_dict(self) -> dict:
        """The calibration as JSON types (for a checkpoint's extra and ``metrics.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> Calibration:
        """The inverse of :meth:`to_dict`; None or an empty dict: the identity."""
        return cls(**d) if d else cls()


MIN_REGISTRATION_FRAMES = 30
"""Fewer verified held-out frames than this fit no registration scale."""
REGISTRATION_SCALE_RANGE = (0.5, 100.0)
"""A fitted registration scale is kept within these bounds."""


def ellipse_factor(mahalanobis2: np.ndarray) -> float:
    """The factor of the covariances that puts 95 % of the truths inside their 95 % ellipses.

    ``mahalanobis2``: each truth's squared Mahalanobis distance under its covariance.
    """
    return float(np.quantile(np.asarray(mahalanobis2, float), 0.95)) / CHI2_95_2DOF


def fit_registration_scale(offsets_m: np.ndarray, covariances_m2: np.ndarray) -> float | None:
    """The factor s that puts 95 % of the truths inside the 95 % ellipses of ``s`` x the covariances.

    Args:
        offsets_m: (N, 2) truth minus verified fix [m].
        covariances_m2: (N, 2, 2) the registration's covariances.

    Returns:
        ``q95(d² ) / chi2_95(2)`` of the Mahalanobis distances d, within
        :data:`REGISTRATION_SCALE_RANGE`; None for fewer than
        :data:`MIN_REGISTRATION_FRAMES` frames.
    """
    offsets_m = np.asarray(offsets_m, float)
    if len(offsets_m) < MIN_REGISTRATION_FRAMES:
        return None
    solved = np.linalg.solve(np.asarray(covariances_m2, float), offsets_m[..., None])[..., 0]
    d2 = (offsets_m * solved).sum(-1)
    return float(np.clip(ellipse_factor(d2), *REGISTRATION_SCALE_RANGE))


CHI2_95_1DOF = 3.841458820694124
"""The 95 % quantile of the chi-square distribution with 1 degree of freedom (1.96²)."""


def fit_heading_scale(errors_deg: np.ndarray, variances_deg2: np.ndarray) -> float | None:
    """The factor s that puts 95 % of the heading errors within 1.96 standard deviations of ``s`` x the variances.

    Args:
        errors_deg: (N,) verified heading minus truth [deg], wrapped to ±180.
        variances_deg2: (N,) the registration's heading variances [deg²].

    Returns:
        ``q95(e² / v) / chi2_95(1)``, at least 1 and at most the top of
        :data:`REGISTRATION_SCALE_RANGE`; None for fewer than
        :data:`MIN_REGISTRATION_FRAMES` frames with a finite variance. Never
        below 1: the frames it is fit on are rendered from the map's own
        rasters, whose headings come out better than a flight's over another
        season or sensor (on the demo's autumn flight, a scale of 0.5 fit on
        them held 86 % of the headings within two sigma; the fit's own variance 96 %).
    """
    e, v = np.asarray(errors_deg, float), np.asarray(variances_deg2, float)
    ok = np.isfinite(e) & np.isfinite(v) & (v > 0)
    if ok.sum() < MIN_REGISTRATION_FRAMES:
        return None
    return float(np.clip(np.quantile(e[ok] ** 2 / v[ok], 0.95) / CHI2_95_1DOF, 1.0, REGISTRATION_SCALE_RANGE[1]))


def raw_confidence(centres_m: np.ndarray, probs: np.ndarray, cell_m: float) -> np.ndarray:
    """(N,) the search's own probability mass within :data:`WITHIN_CELLS` cells of each best centre."""
    centres_m = np.asarray(centres_m, float)
    near = np.hypot(*np.moveaxis(centres_m - centres_m[:, :1], -1, 0)) <= WITHIN_CELLS * cell_m
    return np.clip((np.asarray(probs, float) * near).sum(-1), 0.0, 1.0)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * z))


def _fit_logistic(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(weight, bias) of ``P(y) = sigmoid(weight z + bias)``, pulled towards (1, 0) by :data:`PRIOR_WEIGHT`.

    Newton's method with step halving on the penalized negative log-likelihood (strictly convex).
    """
    prior = np.array([1.0, 0.0])
    x = np.stack([z, np.ones_like(z)], 1)

    def loss(theta: np.ndarray) -> float:
        t = x @ theta
        return float(np.logaddexp(0, t).sum() - (y * t).sum() + PRIOR_WEIGHT / 2 * ((theta - prior) ** 2).sum())

    theta = prior.copy()
    for _ in range(100):
        p = _sigmoid(x @ theta)
        grad = x.T @ (p - y) + PRIOR_WEIGHT * (theta - prior)
        hess = (x * (p * (1 - p))[:, None]).T @ x + PRIOR_WEIGHT * np.eye(2)
        step = np.linalg.solve(hess, grad)
        scale, before = 1.0, loss(theta)
        while loss(theta - scale * step) > before and scale > 1e-6:
            scale /= 2
        theta = theta - scale * step
        if np.abs(scale * step).max() < 1e-9:
            break
    return float(theta[0]), float(theta[1])


def fit_calibration(
    centres_m: np.ndarray, probs: np.ndarray, truth_m: np.ndarray, cell_m: float, min_confidence: float
) -> Calibration:
    """Fit a calibration on held-out frames.

    First the confidence curve (logistic regression of "within
    :data:`WITHIN_CELLS` cells" on the logit of :func:`raw_confidence`), then,
    on the frames whose calibrated confidence reaches ``min_confidence`` (all
    frames when fewer than :data:`MIN_FIX_FRAMES`), for each temperature of
    :data:`TEMPERATURES` the scale that puts the truth inside 95 % of their
    ellipses; the temperature with the smallest median ellipse wins.

    Args:
        centres_m: (N, K, 2) candidate centres [m], best first.
        probs: (N, K) their probabilities.
        truth_m: (N, 2) true positions [m, same frame].
        cell_m: terminal cell side [m].
        min_confidence: the threshold between FIX and NO_FIX it is fit for.

    Returns:
        The fitted calibration.

    Raises:
        ValueError: there are no frames or the shapes disagree.
    """
    centres_m, probs, truth_m = (np.asarray(a, float) for a in (centres_m, probs, truth_m))
    n = len(centres_m)
    if n == 0 or centres_m.shape[:2] != probs.shape or truth_m.shape != (n, 2):
        raise ValueError(
            f"calibration needs N > 0 frames: centres (N, K, 2), probs (N, K), truth (N, 2), got "
            f"{centres_m.shape}, {probs.shape}, {truth_m.shape}"
        )
    offsets = truth_m - centres_m[:, 0]
    right = np.hypot(offsets[:, 0], offsets[:, 1]) <= WITHIN_CELLS * cell_m
    weight, bias = _fit_logistic(_logit(raw_confidence(centres_m, probs, cell_m)), right.astype(float))
    conf = Calibration(confidence_weight=weight, confidence_bias=bias).confidences(centres_m, probs, cell_m)
    fix = conf >= min_confidence
    if fix.sum() < MIN_FIX_FRAMES:
        fix = np.ones(n, bool)
    best: tuple[float, float, float] | None = None  # (median area, T, s)
    for temperature in TEMPERATURES:
        cov = Calibration(temperature=temperature).covariances(centres_m[fix], probs[fix], cell_m)
        d2 = (offsets[fix] * np.linalg.solve(cov, offsets[fix][..., None])[..., 0]).sum(-1)
        scale = max(float(np.quantile(d2, 0.95)) / CHI2_95_2DOF, 1e-3)
        area = float(np.median(np.sqrt(np.linalg.det(cov)))) * scale
        if best is None or area < best[0] - 1e-12:
            best = (area, temperature, scale)
    assert best is not None
    return Calibration(best[1], best[2], weight, bias, n, int(fix.sum()), float(min_confidence))


def ellipse_hits(
    cal: Calibration, centres_m: np.ndarray, probs: np.ndarray, truth_m: np.ndarray, cell_m: float
) -> np.ndarray:
    """(N,) bool: whether each truth [m] lies inside the 95 % ellipse ``cal`` reports about the best centre."""
    centres_m = np.asarray(centres_m, float)
    offsets = np.asarray(truth_m, float) - centres_m[:, 0]
    return inside_ellipse_95(offsets, cal.covariances(centres_m, probs, cell_m))


def map_calibration(mapdir: MapDir, extra: dict, digest: str | None, general: bool) -> Calibration:
    """The map's own calibration for a model (``jzi calibrate``) if it has one, else the model's (``extra``).

    ``digest``: the model's (:meth:`~jzi_ros.model.ZoomModel.digest`), which
    names the map's record. A ``general`` model has none of its own: on a map
    not calibrated for it, the search's own numbers (the identity), with a warning.
    """
    record = mapdir.load_calibration(digest) if digest else None
    if record is not None:
        return Calibration.from_dict(record.get("calibration"))
    if general:
        log.warning(
            "map %s is not calibrated for this general model: covariances and confidences are the search's own; "
            "run `jzi calibrate --map %s` once (under a minute)",
            mapdir.path,
            mapdir.path,
        )
    return Calibration.from_dict(extra.get("calibration"))
