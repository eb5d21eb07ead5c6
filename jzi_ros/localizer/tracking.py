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

**With odometry** (a ground robot's wheels, a visual odometry: any pose in
an ``odom`` frame, REP-105) the region moves with the robot instead of
growing at top speed: its centre is the last fix plus the odometry's
displacement since, turned from the odometry's frame into the map's (by
how both moved between this fix and one at least 30 m before it, else by
the heading the robot had at the fix); its covariance is the fix's plus the
odometry's drift, ``odom_error_share`` of the distance driven since and
``odom_turn_error_m`` per radian turned (one standard deviation each, and a
third of a metre for the stamps' mismatch), and
its radius three standard deviations. Misses in a row then do not drop the lock; the region
does, once its radius passes ``odom_max_radius_m``: a robot that drives
through a stretch where no frame verifies (under trees, across an open
square) is still searched where it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

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
    without a verified fix after which the search is global again (without
    odometry); ``odom_error_share``: the odometry's drift, one standard
    deviation, as a share of the distance driven; ``odom_turn_error_m``: its
    drift [m] per radian turned (wheels slip in turns); ``odom_max_radius_m``: the
    largest region [m] odometry carries the lock through.
    """

    enabled: bool = True
    max_speed_mps: float = 20.0
    reacquire_after: int = 5
    odom_error_share: float = 0.05
    odom_turn_error_m: float = 1.0
    odom_max_radius_m: float = 100.0

    def __post_init__(self) -> None:
        for name in ("odom_error_share", "odom_turn_error_m"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise LocalizerError(f"{name} must be finite and 0 or more, not {getattr(self, name)}")
        if not (math.isfinite(self.odom_max_radius_m) and self.odom_max_radius_m > 0):
            raise LocalizerError(f"odom_max_radius_m must be finite and above 0, not {self.odom_max_radius_m}")
        if not (math.isfinite(self.max_speed_mps) and self.max_speed_mps > 0):
            raise LocalizerError(f"max_speed_mps must be finite and above 0, not {self.max_speed_mps}")
        if not (isinstance(self.reacquire_after, int) and self.reacquire_after >= 1):
            raise LocalizerError(f"reacquire_after must be an integer of at least 1, not {self.reacquire_after}")


TURN_BASELINE_M = 30.0
"""Fixes at least this far apart [m] (straight line, in the map and by the odometry) give the odometry's turn."""
TURN_ANCHORS = 64
"""Verified fixes kept to find one :data:`TURN_BASELINE_M` back."""
ODOM_FLOOR_M = 1.0
"""Added to an odometry-carried region's radius [m]: the odometry's stamp is not the frame's."""


@dataclass(frozen=True)
class Odometry:
    """The robot's pose in its odometry frame at a frame's stamp (REP-105's ``odom``; REP-103 angles).

    ``x_m``, ``y_m`` [m]; ``yaw_deg``: the body's heading, counter-clockwise
    from the frame's x axis. Only differences between two poses are used.
    """

    x_m: float
    y_m: float
    yaw_deg: float

    def __post_init__(self) -> None:
        if not all(math.isfinite(v) for v in (self.x_m, self.y_m, self.yaw_deg)):
            raise LocalizerError(f"odometry must be finite, not ({self.x_m}, {self.y_m}, {self.yaw_deg})")


class Region(NamedTuple):
    """Where tracking says the robot is: ``centre`` (east, north) [m] and ``radius`` [m].

    ``covariance_m2`` (2x2): the position's when the odometry carried it
    (None for the disc of top speed, a bound rather than a distribution);
    ``heading_deg``: where the robot then faces (clockwise from north), the
    fix's heading turned by the odometry's (None without odometry).
    """

    centre: np.ndarray
    radius: float
    covariance_m2: np.ndarray | None = None
    heading_deg: float | None = None

    @property
    def odometry(self) -> bool:
        """Whether the odometry moved the region."""
        return self.covariance_m2 is not None


@dataclass(frozen=True)
class Lock:
    """The last verified fix: local position (east, north) [m], its covariance [m²] and stamp [s].

    ``odometry``: the odometry's pose at the fix; ``turn_deg``: the angle
    [deg, counter-clockwise] that turns the odometry's frame into the map's
    (east, north), from the robot's heading at the fix; None when either is unknown.
    """

    position_m: np.ndarray
    covariance_m2: np.ndarray
    stamp_s: float
    odometry: Odometry | None = None
    turn_deg: float | None = None

    @property
    def sigma_m(self) -> float:
        """The position's standard deviation along its least certain direction [m]."""
        return math.sqrt(max(float(np.linalg.eigvalsh(self.covariance_m2)[-1]), 0.0))


class Tracker:
    """The tracking state of one camera stream (see the module docstring)."""

    def __init__(self, config: TrackingConfig = TrackingConfig()) -> None:
        self.config = config
        self.lock: Lock | None = None
        self.misses = 0
        self.driven_m = 0.0
        """Distance [m] the odometry drove since the lock (summed over frames)."""
        self.turned_deg = 0.0
        """How much [deg] the odometry turned since the lock (summed over frames, either way)."""
        self._last_odometry: Odometry | None = None
        self._anchors: list[tuple[np.ndarray, Odometry]] = []  # the last verified fixes with their odometry
        self._last_stamp_s = -math.inf

    def _carried(self, odometry: Odometry | None) -> bool:
        """Whether the odometry can move the lock's region: both poses and the turn between the frames known."""
        return self.lock is not None and odometry is not None and self.lock.turn_deg is not None

    def _step(self, odometry: Odometry | None) -> tuple[float, float]:
        """Distance [m] and turn [deg] from the last frame's odometry to ``odometry``."""
        last = self._last_odometry
        if odometry is None or last is None:
            return 0.0, 0.0
        turn = abs((odometry.yaw_deg - last.yaw_deg + 180.0) % 360.0 - 180.0)
        return math.hypot(odometry.x_m - last.x_m, odometry.y_m - last.y_m), turn

    def region(self, stamp_s: float | None, odometry: Odometry | None = None) -> Region | None:
        """Where the robot can be at ``stamp_s`` (and ``odometry``, its pose then); None when the search is global."""
        if not self.config.enabled or self.lock is None or stamp_s is None:
            return None
        if stamp_s < self._last_stamp_s - BACKWARDS_S:  # time ran backwards: a new sequence
            self.reset()
            return None
        lock = self.lock
        if self._carried(odometry):
            assert odometry is not None and lock.odometry is not None and lock.turn_deg is not None
            a = math.radians(lock.turn_deg)
            dx, dy = odometry.x_m - lock.odometry.x_m, odometry.y_m - lock.odometry.y_m
            moved = np.array([math.cos(a) * dx - math.sin(a) * dy, math.sin(a) * dx + math.cos(a) * dy])
            step_m, turn_deg = self._step(odometry)
            driven, turned = self.driven_m + step_m, math.radians(self.turned_deg + turn_deg)
            c = self.config
            drift = (c.odom_error_share * driven) ** 2 + (c.odom_turn_error_m * turned) ** 2 + (ODOM_FLOOR_M / 3.0) ** 2
            cov = lock.covariance_m2 + np.eye(2) * drift
            radius = 3.0 * math.sqrt(float(np.linalg.eigvalsh(cov)[-1]))
            if radius > self.config.odom_max_radius_m:  # drifted too far to say where the robot is
                self.lock = None
                return None
            heading = (90.0 - lock.turn_deg - odometry.yaw_deg) % 360.0
            return Region(lock.position_m + moved, radius, cov, heading)
        elapsed = max(0.0, stamp_s - lock.stamp_s)
        return Region(lock.position_m, self.config.max_speed_mps * elapsed + 3.0 * lock.sigma_m)

    def update(
        self,
        stamp_s: float | None,
        verified: bool,
        position_m: np.ndarray,
        covariance_m2: np.ndarray,
        odometry: Odometry | None = None,
        heading_deg: float | None = None,
    ) -> None:
        """Take a frame's outcome: a verified fix locks on it; ``reacquire_after`` misses in a row drop the lock.

        ``odometry``: the robot's odometry pose at the frame; ``heading_deg``:
        its heading in the map (clockwise from north) when known. With both at
        a fix, later frames' regions move with the odometry (module docstring).
        """
        if stamp_s is None:
            return
        self._last_stamp_s = max(self._last_stamp_s, stamp_s)  # a frame out of order does not turn time back
        if verified:
            position = np.asarray(position_m, float).copy()
            turn = self._turn(position, odometry, heading_deg)
            cov = np.asarray(covariance_m2, float)[:2, :2].copy()
            self.lock = Lock(position, cov, stamp_s, odometry, turn)
            self.misses, self.driven_m, self.turned_deg, self._last_odometry = 0, 0.0, 0.0, odometry
            if odometry is not None:
                self._anchors = [*self._anchors, (position, odometry)][-TURN_ANCHORS:]
            return
        self.misses += 1
        carried = self._carried(odometry)
        step_m, turn_deg = self._step(odometry)
        self.driven_m, self.turned_deg = self.driven_m + step_m, self.turned_deg + turn_deg
        self._last_odometry = odometry if odometry is not None else self._last_odometry
        if self.misses >= self.config.reacquire_after and not carried:
            self.lock = None

    def _turn(self, position: np.ndarray, odometry: Odometry | None, heading_deg: float | None) -> float | None:
        """The angle [deg] from the odometry's frame to the map's at a fix (None: unknown).

        From the way both moved since an earlier fix at least
        :data:`TURN_BASELINE_M` back (the direction of a long displacement is
        known far better than a heading), else from the robot's heading.
        """
        if odometry is None:
            return None
        for at, then in reversed(self._anchors):
            odo = np.array([odometry.x_m - then.x_m, odometry.y_m - then.y_m])
            moved = position - at
            if min(float(np.hypot(*odo)), float(np.hypot(*moved))) >= TURN_BASELINE_M:
                return math.degrees(math.atan2(moved[1], moved[0]) - math.atan2(odo[1], odo[0]))
        if heading_deg is not None and math.isfinite(heading_deg):
            return (90.0 - heading_deg) - odometry.yaw_deg  # the map's yaw (from east) minus the odometry's
        return None

    def reset(self) -> None:
        """Forget the lock (a new sequence)."""
        self.lock, self.misses, self._last_stamp_s = None, 0, -math.inf
        self.driven_m, self.turned_deg, self._last_odometry = 0.0, 0.0, None
        self._anchors = []
