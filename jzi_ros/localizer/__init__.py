"""Pure per-frame logic: image (+ optional prior) -> Estimate (no ROS here)."""

from .errors import InputError, PriorError
from .estimate import CHI2_95_2DOF, VERTICAL_VARIANCE_M2, Candidate, Estimate, covariance, ellipse_95, inside_ellipse_95
from .index import check_region, index_map
from .localizer import Localizer, LocalizerConfig, Prior, to_rgb

__all__ = [
    "CHI2_95_2DOF",
    "VERTICAL_VARIANCE_M2",
    "Candidate",
    "Estimate",
    "InputError",
    "Localizer",
    "LocalizerConfig",
    "Prior",
    "PriorError",
    "check_region",
    "covariance",
    "ellipse_95",
    "index_map",
    "inside_ellipse_95",
    "to_rgb",
]
