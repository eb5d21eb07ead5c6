"""Tracking: search near the last verified fix instead of over the whole map.

After a verified fix (:mod:`.refine`) the robot can only have moved
``max_speed_mps`` times the time since. The next frame is searched inside the
deepest cell that holds that disc (the prior mechanism of
:meth:`~jzi_ros.localizer.Localizer.localize`), and the registration tries the
last fix's position before the zoom's candidates, with the disc as its gate
(:mod:`.refine`: a registration inside it needs less agreement). After ``reacquire_after``
frames in a row that do not verify, or when time runs backwards by more
than :data:`BACKWARDS_S` (a bag replayed from its start), the search is
global again. An external prior wins
over tracking. The mode of each frame is one of :data:`MODES`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import LocalizerError

BACKWARDS_S = 1.0
"""A stamp this much [s] before the last one starts a new sequence; smaller steps back are frames out of order."""
GLOBAL, TRACKING, PRIOR = "global", "tracking", "prior"
MODES = (GLOBAL, TRACKING, PRIOR)
"""How a frame was searched: over the whole map, near the last verified fix, or inside an external prior."""


@dataclass(frozen=True)
class TrackingConfig:
    """How tracking runs.

    ``enabled``: search near the last verified fix; ``max_speed_mps``: the
    robot's top ground speed [m/s]; ``reacquire_after``: frames in a row
    without a verified fix after which the search is global again.
    """

    enabled: bool = True
    max_speed_mps: float = 20.0
    reacquire_after: int = 5

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_speed_mps) and self.max_speed_mps > 0):
            raise LocalizerError(f"max_speed_mps must be finite and above 0, not {self.max_speed_mps}")
        if not (isinstance(self.reacquire_after, int) and self.reacquire_after >= 1):
            raise LocalizerError(f"reacquire_after must be an integer of at least 1, not {self.reacquire_after}")


@dataclass(frozen=True)
class Lock:
    """The last verified fix: local position (east, north) [m], its standard deviation [m] and stamp [s]."""

    position_m: np.ndarray
    sigma_m: float
    stamp_s: float


class Tracker:
    """The tracking state of one camera stream (see the module docstring)."""

    def __init__(self, config: TrackingConfig = TrackingConfig()) -> None:
        self.config = config
        self.lock: Lock | None = None
        self.misses = 0
        self._last_stamp_s = -math.inf

    def region(self, stamp_s: float | None) -> tuple[np.ndarray, float] | None:
        """Where the robot can be at ``stamp_s``: (centre (2,) [m], radius [m]); None when the search is global."""
        if not self.config.enabled or self.lock is None or stamp_s is None:
            return None
        if stamp_s < self._last_stamp_s - BACKWARDS_S:  # time ran backwards: a new sequence
            self.reset()
            return None
        elapsed = max(0.0, stamp_s - self.lock.stamp_s)
        return self.lock.position_m, self.config.max_speed_mps * elapsed + 3.0 * self.lock.sigma_m

    def update(self, stamp_s: float | None, verified: bool, position_m: np.ndarray, covariance_m2: np.ndarray) -> None:
        """Take a frame's outcome: a verified fix locks on it; ``reacquire_after`` misses in a row drop the lock."""
        if stamp_s is None:
            return
        self._last_stamp_s = max(self._last_stamp_s, stamp_s)  # a frame out of order does not turn time back
        if verified:
            sigma = math.sqrt(max(float(np.linalg.eigvalsh(covariance_m2)[-1]), 0.0))
            self.lock, self.misses = Lock(np.asarray(position_m, float).copy(), sigma, stamp_s), 0
            return
        self.misses += 1
        if self.misses >= self.config.reacquire_after:
            self.lock = None

    def reset(self) -> None:
        """Forget the lock (a new sequence)."""
        self.lock, self.misses, self._last_stamp_s = None, 0, -math.inf
