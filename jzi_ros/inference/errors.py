"""Errors of the inference layer."""

from __future__ import annotations

from ..errors import JziError


class BackendError(JziError):
    """A backend cannot run here or as asked (missing library, device, engine)."""
