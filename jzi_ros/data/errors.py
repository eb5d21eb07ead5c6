"""Errors of the data layer."""

from __future__ import annotations

from ..errors import JziError


class DataError(JziError):
    """Training or query data cannot be made or read as asked."""


class BagError(DataError):
    """A rosbag2 is missing, unreadable, or lacks what was asked of it."""


class CoverageError(DataError):
    """A raster of the place shows too little of the map's region."""
