"""Errors of the localizer layer."""

from __future__ import annotations

from ..errors import JziError


class InputError(JziError):
    """A frame or prior cannot be used: empty, corrupt, wrong type, not finite."""


class PriorError(InputError):
    """A prior cannot be used: its position or covariance is not finite or not valid."""
