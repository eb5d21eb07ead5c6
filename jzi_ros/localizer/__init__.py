"""Pure per-frame logic: image (+ optional prior) -> Estimate (no ROS here)."""

from .errors import InputError
from .index import check_region, index_map
from .localizer import Candidate, Estimate, Localizer, LocalizerConfig, Prior, covariance, to_rgb

__all__ = [
    "Candidate",
    "Estimate",
    "InputError",
    "Localizer",
    "LocalizerConfig",
    "Prior",
    "check_region",
    "covariance",
    "index_map",
    "to_rgb",
]
