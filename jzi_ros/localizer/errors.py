"""Errors of the localizer layer."""

from __future__ import annotations

from ..errors import InputError, JziError

__all__ = ["InputError", "LocalizerError", "PriorError"]


class PriorError(InputError):
    """A prior cannot be used: its position or covariance is not finite or not valid."""


class LocalizerError(JziError):
    """The localizer cannot run as configured: an invalid setting, or a map or model that lacks what it needs."""
