"""How fast the built-in simulated devices live their day.

By default a simulated device's day runs at wall-clock speed: the sun rises and sets when it
does outside. A demo that should show a whole day of charging, absorption and night in one
sitting sets ``SMA_VICTRON_BRIDGE_DAY_MINUTES`` (``scripts/develop --day-minutes``) before Home
Assistant starts: every simulated device's sun then runs one day in that many minutes. Real
devices are never affected.
"""

from __future__ import annotations

import logging
import os

_LOGGER = logging.getLogger(__name__)

DAY_MINUTES_ENV = "SMA_VICTRON_BRIDGE_DAY_MINUTES"
"""Environment variable: minutes one simulated day lasts (unset: a real day)."""

MINUTES_PER_DAY = 24 * 60
SHORTEST_DAY_MINUTES = 2.0
"""Faster than this the devices' own update rates could no longer draw the day's curve."""


def sun_time_scale() -> float:
    """Simulated seconds per wall-clock second (1.0 unless a short day is asked for)."""
    raw = os.environ.get(DAY_MINUTES_ENV, "").strip()
    if not raw:
        return 1.0
    try:
        minutes = float(raw)
    except ValueError:
        _LOGGER.warning("Ignoring %s=%r: not a number of minutes", DAY_MINUTES_ENV, raw)
        return 1.0
    if not SHORTEST_DAY_MINUTES <= minutes <= MINUTES_PER_DAY:
        _LOGGER.warning(
            "Ignoring %s=%r: a simulated day lasts between %g and %d minutes",
            DAY_MINUTES_ENV,
            raw,
            SHORTEST_DAY_MINUTES,
            MINUTES_PER_DAY,
        )
        return 1.0
    return MINUTES_PER_DAY / minutes
