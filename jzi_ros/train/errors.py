"""Errors of the training layer."""

from __future__ import annotations

from ..errors import JziError


class TrainError(JziError):
    """A training run cannot be set up or continued as asked."""
