"""Errors of the localizer layer."""

from __future__ import annotations

from ..errors import InputError

__all__ = ["InputError", "PriorError"]


class PriorError(InputError):
    """A prior cannot be used: its position or covariance is not finite or not valid."""
