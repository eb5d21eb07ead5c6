"""What a robot's sensors said over time, looked up at a frame's stamp: attitude, range, odometry.

NumPy alone, so the node reads its sensors with it; :mod:`.sensors` reads
these tracks from a bag. Each track answers "what did the sensor say at this
stamp", interpolated between the messages around it, and says nothing (None)
when its newest word is too old.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def _neighbours(stamps_ns: np.ndarray, stamp_ns: int, max_age_ns: int) -> list[int]:
    """Indices of the messages on either side of ``stamp_ns`` within ``max_age_ns`` of it, nearest first."""
    i = int(np.searchsorted(stamps_ns, stamp_ns))
    near = [j for j in (i - 1, i) if 0 <= j < len(stamps_ns) and abs(int(stamps_ns[j]) - stamp_ns) <= max_age_ns]
    return sorted(near, key=lambda j: abs(int(stamps_ns[j]) - stamp_ns))


def _weight(stamps_ns: np.ndarray, a: int, b: int, stamp_ns: int) -> float:
    """Where ``stamp_ns`` lies between messages ``a`` and ``b`` (0 at ``a``, 1 at ``b``; 0 when they share a stamp)."""
    t0, t1 = int(stamps_ns[a]), int(stamps_ns[b])
    return (stamp_ns - t0) / (t1 - t0) if t1 > t0 else 0.0


def slerp(q0: np.ndarray, q1: np.ndarray, w: float) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions (x, y, z, w): ``q0`` at ``w`` = 0, ``q1`` at 1.

    The shorter arc is taken; the result has w >= 0.
    """
    q0, q1 = np.asarray(q0, np.float64), np.asarray(q1, np.float64)
    dot = float(q0 @ q1)
    if dot < 0:  # q and -q are the same rotation
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly the same: linear is exact enough and stable
        q = q0 + w * (q1 - q0)
    else:
        theta = math.acos(min(dot, 1.0))
        q = (math.sin((1 - w) * theta) * q0 + math.sin(w * theta) * q1) / math.sin(theta)
    q = q / np.linalg.norm(q)
    return -q if q[3] < 0 else q


@dataclass(frozen=True)
class AttitudeTrack:
    """Orientations sorted by stamp: ``stamps_ns`` (N,) [ns] and unit ``quaternions`` (N, 4).

    Each quaternion is (x, y, z, w), world-from-body in ENU (REP-103), as the
    IMU reported it.
    """

    stamps_ns: np.ndarray
    quaternions: np.ndarray

    @classmethod
    def from_rows(cls, rows) -> AttitudeTrack:
        """The track of (stamp [ns], unit quaternion (x, y, z, w)) pairs in any order (at least one)."""
        rows = sorted(rows, key=lambda r: r[0])
        return cls(np.array([r[0] for r in rows], np.int64), np.stack([np.asarray(r[1], np.float64) for r in rows]))

    def __len__(self) -> int:
        return len(self.stamps_ns)

    def at(self, stamp_ns: int, max_age_ns: int = 200_000_000) -> np.ndarray | None:
        """The attitude (x, y, z, w) at ``stamp_ns`` [ns]; None when no message is within ``max_age_ns`` [ns].

        Slerped between the messages before and after ``stamp_ns`` when both
        are within ``max_age_ns``; otherwise the nearer one.
        """
        stamp_ns = int(stamp_ns)
        near = _neighbours(self.stamps_ns, stamp_ns, max_age_ns)
        if not near:
            return None
        if len(near) == 2:
            a, b = sorted(near)
            return slerp(self.quaternions[a], self.quaternions[b], _weight(self.stamps_ns, a, b, stamp_ns))
        return self.quaternions[near[0]].copy()


@dataclass(frozen=True)
class HeightTrack:
    """Rangefinder readings sorted by stamp: ``stamps_ns`` (N,) [ns], ``ranges_m`` (N,) [m].

    ``min_m`` and ``max_m`` (N,) [m] are each message's valid interval; a
    reading outside it (REP-117: -inf too close, +inf nothing in reach)
    measured nothing.
    """

    stamps_ns: np.ndarray
    ranges_m: np.ndarray
    min_m: np.ndarray
    max_m: np.ndarray

    def __len__(self) -> int:
        return len(self.stamps_ns)

    def valid(self, i: int) -> bool:
        """Whether message ``i`` measured a distance (finite, within its min and max)."""
        r = float(self.ranges_m[i])
        return math.isfinite(r) and float(self.min_m[i]) <= r <= float(self.max_m[i])

    def at(self, stamp_ns: int, max_age_ns: int = 500_000_000) -> float | None:
        """The range [m] at ``stamp_ns`` [ns]; None when no message is within ``max_age_ns`` [ns] or it is invalid.

        The nearest message answers; when the one on the other side of
        ``stamp_ns`` is also near and valid, the two are interpolated linearly.
        """
        stamp_ns = int(stamp_ns)
        near = _neighbours(self.stamps_ns, stamp_ns, max_age_ns)
        if not near or not self.valid(near[0]):
            return None
        if len(near) == 2 and self.valid(near[1]):
            a, b = sorted(near)
            w = _weight(self.stamps_ns, a, b, stamp_ns)
            return float(self.ranges_m[a] + w * (self.ranges_m[b] - self.ranges_m[a]))
        return float(self.ranges_m[near[0]])


@dataclass(frozen=True)
class OdometryTrack:
    """Planar odometry poses sorted by stamp: ``stamps_ns`` (N,) [ns], ``xy_m`` (N, 2) [m], ``yaw_deg`` (N,).

    ``yaw_deg`` is unwrapped (no jump at ±180°), counter-clockwise from the odometry frame's x axis.
    """

    stamps_ns: np.ndarray
    xy_m: np.ndarray
    yaw_deg: np.ndarray

    @classmethod
    def from_rows(cls, rows) -> OdometryTrack:
        """The track of (stamp [ns], x [m], y [m], yaw [deg]) rows in any order (at least one); yaw unwrapped."""
        rows = sorted(rows, key=lambda r: r[0])
        t_ns, x_m, y_m, yaw_deg = (np.array(c, np.float64) for c in zip(*rows, strict=True))
        return cls(t_ns.astype(np.int64), np.c_[x_m, y_m], np.degrees(np.unwrap(np.radians(yaw_deg))))

    def __len__(self) -> int:
        return len(self.stamps_ns)

    def at(self, stamp_ns: int, max_age_ns: int = 200_000_000) -> tuple[float, float, float] | None:
        """(x [m], y [m], yaw [deg]) at ``stamp_ns``, interpolated between the messages around it; None when stale."""
        stamp_ns = int(stamp_ns)
        near = _neighbours(self.stamps_ns, stamp_ns, max_age_ns)
        if not near:
            return None
        a, b = sorted(near) if len(near) == 2 else (near[0], near[0])
        w = _weight(self.stamps_ns, a, b, stamp_ns)
        xy = self.xy_m[a] + w * (self.xy_m[b] - self.xy_m[a])
        yaw = self.yaw_deg[a] + w * (self.yaw_deg[b] - self.yaw_deg[a])
        return float(xy[0]), float(xy[1]), float(yaw)
