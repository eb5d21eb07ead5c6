"""Fitting the localizer's calibration at the end of a run: :func:`calibrate`.

The validation frames (held-out cells, and the domain gap training had: other
rasters and domain changes) are searched as the localizer searches them, and
:func:`jzi_ros.localizer.fit_calibration` makes the 95 % ellipse and the
confidence of the fixes they would give honest. The result goes into the
checkpoint as ``calibration``.
"""

from __future__ import annotations

import logging

import torch

from ..geo import ZoomGrid
from ..localizer import DEFAULT_MIN_CONFIDENCE, Calibration, LocalizerConfig, fit_calibration
from ..model import ZoomModel, search_features
from .samples import Samples

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
