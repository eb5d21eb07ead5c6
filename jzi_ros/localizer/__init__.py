"""Pure per-frame logic: image (+ optional prior) -> Estimate (no ROS here).

The estimate types and the image conversion import with NumPy alone; the
localizer and map indexing (torch) load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..geo.camera import Mount, Pinhole, height_above_ground
from ..images import to_rgb
from ..lazy import lazy_attributes
from .calibration import WITHIN_CELLS, Calibration, fit_calibration
from .errors import InputError, PriorError
from .estimate import CHI2_95_2DOF, VERTICAL_VARIANCE_M2, Candidate, Estimate, ellipse_95, inside_ellipse_95
from .tracking import MODES, Odometry, Tracker, TrackingConfig

if TYPE_CHECKING:
    from .index import check_region, index_map
    from .localizer import DEFAULT_MIN_CONFIDENCE, Localizer, LocalizerConfig, Prior

_LAZY = {
    "DEFAULT_MIN_CONFIDENCE": "localizer",
    "Localizer": "localizer",
    "LocalizerConfig": "localizer",
    "Prior": "localizer",
    "check_region": "index",
    "index_map": "index",
}

__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "CHI2_95_2DOF",
    "DEFAULT_MIN_CONFIDENCE",
    "VERTICAL_VARIANCE_M2",
    "WITHIN_CELLS",
    "Calibration",
    "Candidate",
    "Estimate",
    "InputError",
    "Mount",
    "Pinhole",
    "Localizer",
    "LocalizerConfig",
    "MODES",
    "Odometry",
    "Prior",
    "PriorError",
    "check_region",
    "fit_calibration",
    "height_above_ground",
    "ellipse_95",
    "index_map",
    "inside_ellipse_95",
    "to_rgb",
    "Tracker",
    "TrackingConfig",
]
