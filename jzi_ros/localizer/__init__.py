"""Pure per-frame logic: image (+ optional prior) -> Estimate (no ROS here).

The estimate types and the image conversion import with NumPy alone; the
localizer and map indexing (torch) load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..images import to_rgb
from .errors import InputError, PriorError
from .estimate import CHI2_95_2DOF, VERTICAL_VARIANCE_M2, Candidate, Estimate, covariance, ellipse_95, inside_ellipse_95

if TYPE_CHECKING:
    from .index import check_region, index_map
    from .localizer import Localizer, LocalizerConfig, Prior

_LAZY = {
    "Localizer": "localizer",
    "LocalizerConfig": "localizer",
    "Prior": "localizer",
    "check_region": "index",
    "index_map": "index",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
