"""One time of day for every simulated device of a sped-up demo.

A demo with a short day (one day in a few minutes) shows the sun rising on the MPPT, the
SmartSolar, the BMS and the Sunny Island at the same moment only if they all read the same
simulated clock. The devices are created one after the other, seconds apart, and each keeps its
own model clock; so the first device anchors a process-wide clock at the wall clock (UTC time of
day, as the Sunny Boy simulator counts it) and every device created later starts its model where
that clock stands: simulated time = wall time at the anchor + elapsed real time * scale.

At scale 1 nothing is anchored: the simulators keep their own default start (mid-morning), so a
demo without a short day behaves as it always did.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
import time
from typing import Final, Protocol, runtime_checkable

__all__ = [
    "DAY",
    "HOUR",
    "CurrentFollower",
    "DayClock",
    "clear_sky",
    "demo_start_time_of_day",
    "shared_day_clock",
]


@runtime_checkable
class CurrentFollower(Protocol):
    """A simulated battery that can carry the current another simulated device drives.

    A simulated inverter fed by a simulated BMS hands it its battery current every tick, so the
    demo has one battery, not two that live unrelated days.
    """

    def follow_current(self, current: float, valid_for: float = ...) -> None:
        """Carry ``current`` (A, + = charging) for ``valid_for`` seconds."""


HOUR: Final = 3600.0
DAY: Final = 24 * HOUR
"""Seconds in a day."""


@dataclass(frozen=True, slots=True)
class DayClock:
    """Simulated UTC time that agreed with the wall clock at the anchor and runs ``scale`` x."""

    scale: float
    wall: float
    """Unix time of the anchor."""
    monotonic: float
    """``time.monotonic()`` at the anchor: elapsed time is measured on it, immune to clock steps."""

    def now(self, monotonic_now: float | None = None) -> float:
        """Simulated unix time at ``monotonic_now`` (default: now)."""
        now = time.monotonic() if monotonic_now is None else monotonic_now
        return self.wall + (now - self.monotonic) * self.scale

    def time_of_day(self, monotonic_now: float | None = None) -> float:
        """Simulated seconds since UTC midnight at ``monotonic_now`` (default: now)."""
        return self.now(monotonic_now) % DAY


_clocks: dict[float, DayClock] = {}


def shared_day_clock(scale: float) -> DayClock:
    """The process's clock for ``scale``: the first call anchors it at the wall clock."""
    if not scale > 0:
        raise ValueError("scale must be positive")
    clock = _clocks.get(scale)
    if clock is None:
        clock = _clocks[scale] = DayClock(scale, time.time(), time.monotonic())
    return clock


def demo_start_time_of_day(scale: float) -> float | None:
    """Where a simulated device created now starts its day (None: its own default, at scale 1)."""
    if scale == 1.0:
        return None
    return shared_day_clock(scale).time_of_day()


def clear_sky(time_of_day: float) -> float:
    """Clear-sky irradiance 0..1: a sine between 06:00 and 18:00, zero at night."""
    elevation = math.sin(math.pi * (time_of_day - 6 * HOUR) / (12 * HOUR))
    return math.pow(max(0.0, elevation), 1.3)
