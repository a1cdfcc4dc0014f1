"""The Sunny Boy's yield archive as hourly long-term statistics for the energy dashboard.

A Sunny Boy keeps its lifetime yield counter every 5 minutes for weeks, and once a day (at its
local midnight) for much longer. Imported as an external statistic, the energy dashboard shows
those weeks even for days Home Assistant never saw: hours from the 5-minute archive, and for
older days one row per day (the hour ending at that midnight) from the daily archive.

Each hour gets ``state`` = the lifetime counter at the hour's end (kWh) and ``sum`` = the
counter minus a fixed *baseline*: the counter at the start of the first hour ever imported.
The baseline is never stored separately: every imported row carries it as ``state - sum``, so
a later import reads it back from the newest row and computes exactly the same values for
hours it imports again. That keeps re-imports idempotent and free of gaps or spikes.

The recorder is imported lazily: entries of other kinds must not pull it in, and the import
only runs when the recorder is loaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
import logging
from typing import TYPE_CHECKING, Any, Final, cast

from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util

from ...const import DOMAIN

if TYPE_CHECKING:
    from homeassistant.components.recorder.models import StatisticData, StatisticMetaData

_LOGGER = logging.getLogger(__name__)

HOUR: Final = 3600
RECORDER: Final = "recorder"
ENERGY_UNIT: Final = "kWh"


def statistic_id(serial: int | str) -> str:
    """The external statistic holding one inverter's yield."""
    return f"{DOMAIN}:sunny_boy_{serial}_energy"


@dataclass(frozen=True, slots=True)
class HourlyYield:
    """One hour of yield: its start (unix s), the counter at its end and the running sum (Wh)."""

    start: int
    total_wh: int
    sum_wh: int


def hourly_yield(
    rows: Iterable[tuple[int, int]], *, end: int, baseline_wh: int | None = None
) -> list[HourlyYield]:
    """Fold 5-minute counter rows into complete hours ending no later than ``end``.

    A row at exactly HH:00 closes the previous hour. Without a ``baseline_wh`` the first row on
    an hour boundary becomes the baseline and earlier rows are dropped, so the first hour's
    yield is measured from its real start. Hours without any row are left out (the next hour
    with data carries their yield); hours that would sum below zero predate the baseline and
    are skipped.
    """
    ordered = sorted(rows)
    if baseline_wh is None:
        boundary = next(((ts, wh) for ts, wh in ordered if ts % HOUR == 0), None)
        if boundary is None:
            return []
        first_hour, baseline_wh = boundary
    else:
        first_hour = None
    totals: dict[int, int] = {}
    for ts, wh in ordered:
        hour = (ts - 1) // HOUR * HOUR
        if hour + HOUR > end or (first_hour is not None and hour < first_hour):
            continue
        totals[hour] = wh
    return [
        HourlyYield(start=hour, total_wh=wh, sum_wh=wh - baseline_wh)
        for hour, wh in sorted(totals.items())
        if wh >= baseline_wh
    ]


def daily_rows_before(
    daily: Iterable[tuple[int, int]],
    five_minute: list[tuple[int, int]],
    *,
    before: int,
    after: int | None = None,
) -> list[tuple[int, int]]:
    """The daily counter rows for days the 5-minute rows do not cover, nor an earlier import.

    ``five_minute`` is sorted; daily rows at or after its first row (or after ``before`` when
    it is empty) are left to the finer data, rows whose hour ends at or before ``after`` (the
    end of the newest hour already imported) are left as they are. A daily row above the
    first 5-minute counter would make the sum run backwards at the seam, so it is dropped.
    Each kept row becomes the hour ending at its midnight, with the same ``counter - baseline``
    sum rule as the 5-minute hours: the two meet without a gap or a spike.
    """
    limit, ceiling = before, None
    if five_minute:
        limit, ceiling = five_minute[0]
    return [
        (ts, wh)
        for ts, wh in daily
        if ts < limit and (after is None or ts > after) and (ceiling is None or wh <= ceiling)
    ]


def statistic_metadata(serial: int | str, name: str) -> StatisticMetaData:
    """Metadata accepted by the installed recorder: newer ones want ``mean_type``/``unit_class``.

    ``has_mean`` was replaced by ``mean_type`` (and is removed in 2026.4); ``unit_class``
    arrived later still. Only the keys the installed version declares are set.
    """
    from homeassistant.components.recorder import models

    declared = models.StatisticMetaData.__annotations__
    metadata: dict[str, Any] = {
        "has_sum": True,
        "name": name,
        "source": DOMAIN,
        "statistic_id": statistic_id(serial),
        "unit_of_measurement": ENERGY_UNIT,
    }
    mean_type = getattr(models, "StatisticMeanType", None)
    if "mean_type" in declared and mean_type is not None:
        metadata["mean_type"] = mean_type.NONE
    else:
        metadata["has_mean"] = False
    if "unit_class" in declared:
        metadata["unit_class"] = "energy"
    return cast("StatisticMetaData", metadata)


def recorder_loaded(hass: HomeAssistant) -> bool:
    """Whether long-term statistics can be written at all."""
    return RECORDER in hass.config.components


async def async_last_baseline(hass: HomeAssistant, serial: int | str) -> tuple[int, int] | None:
    """(start of the newest imported hour, baseline Wh) or None when nothing was imported."""
    from homeassistant.components.recorder.statistics import get_last_statistics
    from homeassistant.helpers.recorder import get_instance

    stat_id = statistic_id(serial)
    result = await get_instance(hass).async_add_executor_job(
        get_last_statistics, hass, 1, stat_id, False, {"state", "sum"}
    )
    rows = result.get(stat_id)
    if not rows:
        return None
    row = rows[0]
    state, total = row.get("state"), row.get("sum")
    if state is None or total is None:
        return None
    return int(row["start"]), round((state - total) * 1000)


def async_write_hours(
    hass: HomeAssistant, serial: int | str, name: str, hours: list[HourlyYield]
) -> None:
    """Queue the hours for the recorder (it replaces rows that already exist)."""
    from homeassistant.components.recorder.statistics import async_add_external_statistics

    statistics: list[StatisticData] = [
        {
            "start": dt_util.utc_from_timestamp(hour.start),
            "state": hour.total_wh / 1000,
            "sum": hour.sum_wh / 1000,
        }
        for hour in hours
    ]
    async_add_external_statistics(hass, statistic_metadata(serial, name), statistics)
    _LOGGER.debug("Queued %d hours of yield for %s", len(hours), statistic_id(serial))
