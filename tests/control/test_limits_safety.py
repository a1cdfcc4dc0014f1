"""The limit policy's safety review items: sanitising, every temperature sensor, missing
temperature, off-grid under-voltage alarm, and freshness judged per field."""

from __future__ import annotations

import math
from typing import Any

import pytest

from custom_components.sma_victron_bridge.control.chemistry import ChargeSettings
from custom_components.sma_victron_bridge.control.limits import (
    STEP_CURRENT,
    AlarmItem,
    LimitPolicy,
    LimitResult,
    Reason,
    Target,
    assess,
)
from custom_components.sma_victron_bridge.control.snapshot import BatterySnapshot

DEFAULTS = ChargeSettings()  # LiFePO4 16s 100 Ah: charge 0…55 °C, discharge cut-off 2.90 V
CELL = 3.30


def snap(t: float = 0.0, *, cells: tuple[float, ...] | None = None, **kw: Any) -> BatterySnapshot:
    """A healthy 16s LiFePO4 reading at ``t``; keywords override single fields."""
    cells = (CELL,) * 16 if cells is None else cells
    values: dict[str, Any] = {
        "soc": 60.0,
        "voltage": sum(cells),
        "current": 0.0,
        "temperature": 25.0,
        "cell_voltages": cells,
    }
    values.update(kw)
    return BatterySnapshot(timestamp=t, **values)


def run(
    policy: LimitPolicy, start: float, end: float, *, grid: bool | None = None, **kw: Any
) -> LimitResult:
    """Feed the same fresh reading once a second from ``start`` to ``end``; the last result."""
    t = start
    result = policy.update(snap(t, **kw), t, grid_connected=grid)
    while t + 1.0 <= end + 1e-9:
        t += 1.0
        result = policy.update(snap(t, **kw), t, grid_connected=grid)
    return result


def settled(settings: ChargeSettings = DEFAULTS, *, grid: bool | None = None) -> LimitPolicy:
    policy = LimitPolicy(settings)
    result = run(policy, 0.0, 100.0, grid=grid)
    assert result.charge_current == settings.bulk_current
    return policy


# --- garbage in ------------------------------------------------------------------------------


def test_an_open_sensor_does_not_fault_the_battery() -> None:
    # One sensor open (-273 °C), the other fine: the battery charges as usual, nothing raised.
    policy = settled()
    result = run(policy, 101.0, 130.0, temperature=None, temperatures=(-273.15, 21.0))
    assert result.charge_current == 50.0
    assert result.alarms == result.warnings == frozenset()


def test_the_only_sensor_open_means_no_temperature_not_frost() -> None:
    a = assess(snap(temperature=-273.15), DEFAULTS)
    assert a.charge == Target(0.0, Reason.NO_TEMPERATURE, hard=True)
    assert a.alarms == frozenset()  # no low-temperature fault for a broken sensor
    assert a.discharge.value == 100.0


@pytest.mark.parametrize(
    "garbage",
    [
        {"soc": math.nan, "voltage": math.inf, "current": -math.inf},
        {"cell_voltages": (math.nan,) * 16, "voltage": None},
        {"voltage": 1e9, "temperature": 1e9, "mosfet_temperature": math.nan},
        {"soc": -50.0, "cell_voltages": (-3.3,) * 16, "current": 1e12},
    ],
)
def test_garbage_never_raises_and_never_counts(garbage: dict[str, Any]) -> None:
    policy = settled()
    result = policy.update(snap(101.0, **garbage), 101.0)
    assert all(math.isfinite(v) for v in (result.charge_current, result.discharge_current))
    assert result.alarms == frozenset()


def test_a_snapshot_from_the_future_is_ignored() -> None:
    # Kept, it would look fresh for ever and shadow every real reading after it.
    policy = settled()
    policy.update(snap(1e18), 101.0)
    assert policy.last_snapshot is not None
    assert policy.last_snapshot.timestamp == 100.0
    assert policy.update(snap(102.0), 102.0).fresh
    assert policy.update(snap(math.nan), 103.0).source_age == 1.0


def test_a_non_finite_clock_repeats_the_last_time() -> None:
    policy = settled()
    result = policy.update(None, math.nan)
    assert result.fresh
    assert result.source_age == 0.0


# --- temperatures: coldest and hottest -------------------------------------------------------


def test_charging_stops_when_the_coldest_sensor_is_at_or_below_zero() -> None:
    # The representative (hottest) sensor says +3 °C, another sensor -6 °C: no charging.
    a = assess(snap(temperature=3.0, temperatures=(-6.0, 3.0)), DEFAULTS)
    assert a.charge == Target(0.0, Reason.TEMPERATURE, hard=True)
    assert a.warnings == {AlarmItem.LOW_TEMP_CHARGE}
    policy = settled()
    policy.update(snap(101.0, temperatures=(-6.0, 3.0)), 101.0)
    assert policy.update(snap(102.3, temperatures=(-6.0, 3.0)), 102.3).charge_current == 0.0


def test_charging_stops_when_the_hottest_sensor_is_too_hot() -> None:
    a = assess(snap(temperature=None, temperatures=(20.0, 56.0)), DEFAULTS)
    assert a.charge == Target(0.0, Reason.TEMPERATURE, hard=True)
    assert a.warnings == {AlarmItem.HIGH_TEMP_CHARGE, AlarmItem.HIGH_TEMP}


def test_the_smaller_fraction_of_coldest_and_hottest_wins() -> None:
    # 3 °C → 1/3 (between 2 °C: 0.25 and 5 °C: 0.5); 42 °C → 0.8. The cold end decides.
    a = assess(snap(temperature=42.0, temperatures=(3.0,)), DEFAULTS)
    assert a.charge.reason is Reason.TEMPERATURE
    assert a.charge.value == pytest.approx(50.0 / 3)


def test_discharge_alarms_look_at_both_ends() -> None:
    cold = assess(snap(temperatures=(-20.0, 25.0)), DEFAULTS)
    assert AlarmItem.LOW_TEMP in cold.alarms
    both = assess(snap(temperatures=(-25.0, 61.0)), DEFAULTS)
    assert {AlarmItem.LOW_TEMP, AlarmItem.HIGH_TEMP} <= both.alarms


def test_mosfet_temperature_reaches_its_curve() -> None:
    a = assess(snap(mosfet_temperature=80.0), DEFAULTS)
    assert a.charge == Target(12.5, Reason.MOSFET_TEMPERATURE)  # 0.25 of 50 A
    hot = assess(snap(mosfet_temperature=95.0), DEFAULTS)
    assert hot.charge == Target(0.0, Reason.MOSFET_TEMPERATURE, hard=True)
    assert hot.discharge == Target(0.0, Reason.MOSFET_TEMPERATURE, hard=True)


# --- no temperature at all -------------------------------------------------------------------


def test_no_temperature_means_no_charging_by_default() -> None:
    policy = settled()
    first = policy.update(snap(101.0, temperature=None), 101.0)
    assert (first.charge_current, first.charge_reason) == (STEP_CURRENT, Reason.NO_TEMPERATURE)
    later = run(policy, 102.0, 110.0, temperature=None)
    assert (later.charge_current, later.charge_reason) == (0.0, Reason.NO_TEMPERATURE)
    assert later.discharge_current == 100.0  # discharging is not blocked by a missing sensor


def test_charging_without_temperature_when_allowed() -> None:
    allowed = DEFAULTS.replace(allow_charge_without_temperature=True)
    policy = settled(allowed)
    assert run(policy, 101.0, 110.0, temperature=None).charge_current == 50.0


# --- off-grid under-voltage ------------------------------------------------------------------


def low_cell(voltage: float) -> tuple[float, ...]:
    """Fifteen healthy cells and one at ``voltage``."""
    return (3.30,) * 15 + (voltage,)


def test_off_grid_the_discharge_cut_off_raises_an_alarm() -> None:
    # Invariant 4: off-grid the Sunny Island ignores DCL, so the cut-off must stop it by alarm.
    # A cell falling 2.90 → 2.51 V with the pack still at 52 V: the old policy gave DCL 0 and
    # only a warning until the absolute minimum of 2.5 V.
    policy = settled()
    first = policy.update(snap(101.0, cells=low_cell(2.80)), 101.0)
    assert first.discharge_current == 0.0
    assert first.undervoltage_alarm
    assert AlarmItem.LOW_VOLTAGE in first.warnings  # raised, waiting for the alarm delay
    assert first.alarms == frozenset()
    later = run(policy, 102.0, 106.0, cells=low_cell(2.51))
    assert AlarmItem.LOW_VOLTAGE in later.alarms


def test_grid_tied_the_cut_off_only_warns() -> None:
    policy = settled(grid=True)
    result = run(policy, 101.0, 130.0, grid=True, cells=low_cell(2.80))
    assert result.discharge_current == 0.0
    assert not result.undervoltage_alarm
    assert result.alarms == frozenset()
    assert AlarmItem.LOW_VOLTAGE in result.warnings


def test_the_pack_at_its_cut_off_raises_the_alarm_too() -> None:
    policy = settled()
    result = run(policy, 101.0, 110.0, cells=(), voltage=46.3)
    assert AlarmItem.LOW_VOLTAGE in result.alarms


def test_the_under_voltage_alarm_leaves_with_hysteresis() -> None:
    policy = settled()
    run(policy, 101.0, 110.0, cells=low_cell(2.85))
    # Back above the cut-off but within the 0.10 V hysteresis: the alarm stays.
    held = run(policy, 111.0, 200.0, cells=low_cell(2.99))
    assert AlarmItem.LOW_VOLTAGE in held.alarms
    # At 3.00 V it may leave, once that has held for recovery_hold (30 s).
    waiting = run(policy, 201.0, 230.0, cells=low_cell(3.00))
    assert AlarmItem.LOW_VOLTAGE in waiting.alarms
    left = policy.update(snap(231.0, cells=low_cell(3.00)), 231.0)
    assert AlarmItem.LOW_VOLTAGE not in left.alarms
    assert not left.undervoltage_alarm


def test_a_dip_back_restarts_the_release_hold() -> None:
    policy = settled()
    run(policy, 101.0, 110.0, cells=low_cell(2.85))
    run(policy, 111.0, 130.0, cells=low_cell(3.05))
    policy.update(snap(131.0, cells=low_cell(2.95)), 131.0)  # within the hysteresis again
    result = run(policy, 132.0, 160.0, cells=low_cell(3.05))
    assert result.undervoltage_alarm


def test_the_grid_coming_back_releases_the_alarm() -> None:
    policy = settled()
    run(policy, 101.0, 110.0, cells=low_cell(2.85))
    result = policy.update(snap(111.0, cells=low_cell(2.85)), 111.0, grid_connected=True)
    assert not result.undervoltage_alarm
    assert result.alarms == frozenset()


def test_the_alarm_holds_while_the_source_is_silent() -> None:
    policy = settled()
    run(policy, 101.0, 110.0, cells=low_cell(2.85))
    assert AlarmItem.LOW_VOLTAGE in policy.update(None, 500.0).alarms


# --- freshness per field ---------------------------------------------------------------------


def test_a_frozen_pack_voltage_is_a_stale_source() -> None:
    policy = settled()
    frozen = {"voltage": 95.0}  # the snapshot keeps coming, the voltage stopped at 95 s
    fresh = policy.update(snap(125.0, field_times=frozen), 125.0)
    assert (fresh.stale, fresh.charge_current) == (False, 50.0)
    first = policy.update(snap(126.0, field_times=frozen), 126.0)
    assert (first.stale, first.fresh) == (True, False)
    assert first.stale_fields == {"voltage"}
    assert (first.charge_current, first.charge_reason) == (STEP_CURRENT, Reason.STALE_SOURCE)
    assert AlarmItem.BMS_INTERNAL in first.warnings
    later = policy.update(snap(128.0, field_times=frozen), 128.0)
    assert later.charge_current == 0.0


def test_a_frozen_temperature_is_a_stale_source() -> None:
    policy = settled()
    result = policy.update(snap(140.0, field_times={"temperature": 100.0}), 140.0)
    assert result.stale
    assert result.stale_fields == {"temperature"}
    assert result.charge_current == STEP_CURRENT


def test_a_field_without_a_valid_time_is_stale() -> None:
    policy = settled()
    result = policy.update(snap(101.0, field_times={"cell_voltages": math.nan}), 101.0)
    assert result.stale_fields == {"cell_voltages"}


def test_a_frozen_soc_or_current_is_only_dropped() -> None:
    policy = settled()
    result = policy.update(snap(140.0, field_times={"soc": 100.0, "current": 1.0}), 140.0)
    assert (result.stale, result.fresh) == (False, True)
    assert result.view is not None
    assert (result.view.soc, result.view.current) == (None, None)
    assert result.charge_current == 50.0


def test_a_missing_field_with_an_old_time_is_not_frozen() -> None:
    # Nothing to freeze: the source does not measure it (handled as missing, not stale).
    policy = settled()
    result = policy.update(
        snap(140.0, mosfet_temperature=None, field_times={"mosfet_temperature": 1.0}), 140.0
    )
    assert not result.stale
