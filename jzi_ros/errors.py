"""The root of every error jzi_ros raises on purpose.

Each layer has its own subclasses (``GeoError``, ``ModelError``, ...); the
command-line tools print their message as one line and exit non-zero.
"""

from __future__ import annotations


class JziError(Exception):
    """An error with a message that says what went wrong and what to do."""


class InputError(JziError):
    """A frame or prior cannot be used: empty, corrupt, wrong type, not finite."""
