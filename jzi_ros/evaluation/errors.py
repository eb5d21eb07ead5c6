"""Errors of the evaluation layer."""

from __future__ import annotations

from ..errors import JziError


class EvaluationError(JziError):
    """An evaluation is asked for with options that cannot work together."""
