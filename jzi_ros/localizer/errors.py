"""Errors of the localizer layer."""

from __future__ import annotations

from ..errors import JziError


class InputError(JziError):
    """A frame or prior cannot be used: empty, corrupt, wrong type, not finite."""
