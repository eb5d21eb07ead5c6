"""Errors of the model layer."""

from __future__ import annotations

from ..errors import JziError


class ModelError(JziError):
    """A model cannot be built, loaded or used as asked."""


class WeightsError(ModelError):
    """A weights file is missing, unreadable, or does not fit the architecture."""


class CheckpointError(ModelError):
    """A checkpoint is missing, unreadable, or of another format."""
