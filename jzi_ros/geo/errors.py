"""Errors of the geo layer; each message says what to do about it."""

from __future__ import annotations

from ..errors import JziError


class GeoError(JziError):
    """Base class of every error raised by ``jzi_ros.geo``."""


class OutsideRegionError(GeoError):
    """A position lies outside the region of a zoom grid."""


class RasterError(GeoError):
    """A raster cannot be used: missing, unreadable, without a CRS, ..."""


class MapError(GeoError):
    """A map directory is missing, incomplete, or does not fit its user."""
