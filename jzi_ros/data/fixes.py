"""Positions over time: a track of fixes, interpolated to any stamp."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FixTrack:
    """Fixes sorted by stamp: ``t_ns`` [ns], ``lat``, ``lon`` [deg]."""

    t_ns: np.ndarray
    lat: np.ndarray
    lon: np.ndarray

    def at(self, stamp_ns: int, max_gap_s: float) -> tuple[float, float] | None:
        """Position (lat, lon) [deg] at ``stamp_ns``; None when there is no ground truth that close.

        Linear interpolation between the fixes around ``stamp_ns`` when they
        are at most ``max_gap_s`` apart (or the nearer fix, when one is within
        half of it).
        """
        i = int(np.searchsorted(self.t_ns, stamp_ns))
        gap = max_gap_s * 1e9
        if 0 < i < len(self.t_ns) and self.t_ns[i] - self.t_ns[i - 1] <= gap:
            w = (stamp_ns - self.t_ns[i - 1]) / max(self.t_ns[i] - self.t_ns[i - 1], 1)
            return (
                float(self.lat[i - 1] + w * (self.lat[i] - self.lat[i - 1])),
                float(self.lon[i - 1] + w * (self.lon[i] - self.lon[i - 1])),
            )
        near = [j for j in (i - 1, i) if 0 <= j < len(self.t_ns) and abs(self.t_ns[j] - stamp_ns) <= gap / 2]
        if near:
            j = min(near, key=lambda j: abs(self.t_ns[j] - stamp_ns))
            return float(self.lat[j]), float(self.lon[j])
        return None
