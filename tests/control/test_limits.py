"""The CCL/DCL policy: rules, hard cut-offs, staleness, recovery hold, ramps and alarms."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings as hyp_settings, strategies as st
import pytest

from custom_components.sma_victron_bridge.control.chemistry import ChargeSettings
from custom_components.sma_victron_bridge.control.limits import (
    STEP_CURRENT,
    STEP_HOLD,
    AlarmItem,
    LimitPolicy,
    LimitResult,
    Reason,
    Target,
    assess,
    curve_fraction,
)
from custom_components.sma_victron_bridge.control.snapshot import BatterySnapshot

HYPOTHESIS = hyp_settings(max_examples=120, deadline=None, derandomize=True, database=None)
DEFAULTS = ChargeSettings()  # LiFePO4 16s 100 Ah: bulk 50 A, discharge 100 A
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


def cells_with(high: float | None = None, low: float | None = None) -> tuple[float, ...]:
    """Sixteen cells at 3.30 V with the first set to ``high`` and the last to ``low``."""
    cells = [CELL] * 16
    if high is not None:
        cells[0] = high
    if low is not None:
        cells[-1] = low
    return tuple(cells)


def run(policy: LimitPolicy, start: float, end: float, step: float = 1.0, **kw: Any) -> LimitResult:
    """Feed fresh snapshots from ``start`` to ``end`` (inclusive); the last result."""
    t = start
    result = policy.update(snap(t, **kw), t)
    while t + step <= end + 1e-9:
        t += step
        result = policy.update(snap(t, **kw), t)
    return result


def settled(settings: ChargeSettings = DEFAULTS) -> LimitPolicy:
    """A policy that has ramped up to its full limits on a healthy battery (t = 0…100)."""
    policy = LimitPolicy(settings)
    result = run(policy, 0.0, 100.0)
    assert result.charge_current == settings.bulk_current
    assert result.discharge_current == settings.max_discharge_current
    return policy


# --- curves -------------------------------------------------------------------------------


def test_curve_linear_interpolation() -> None:
    table = DEFAULTS.charge_cell_voltage_table
    assert curve_fraction(table, 3.4125) == pytest.approx(0.15)  # between 0.25 and 0.05
    assert curve_fraction(table, 3.40) == 0.25
    assert curve_fraction(table, 3.30) == 1.0  # below the table: first value
    assert curve_fraction(table, 3.60) == 0.0  # above the table: last value
    assert curve_fraction(DEFAULTS.charge_temperature_table, 3.5) == pytest.approx(0.375)


def test_curve_step_mode_takes_the_smaller_neighbour() -> None:
    table = DEFAULTS.charge_cell_voltage_table
    assert curve_fraction(table, 3.4125, linear=False) == 0.05
    assert curve_fraction(table, 3.40, linear=False) == 0.25
    temperatures = DEFAULTS.charge_temperature_table
    assert curve_fraction(temperatures, 7.0, linear=False) == 0.5
    assert curve_fraction(temperatures, 42.0, linear=False) == 0.5


@HYPOTHESIS
@given(x=st.floats(-50, 150))
def test_step_mode_never_allows_more_than_linear(x: float) -> None:
    for table in (DEFAULTS.charge_temperature_table, DEFAULTS.mosfet_temperature_table):
        assert curve_fraction(table, x, linear=False) <= curve_fraction(table, x) + 1e-12


# --- one snapshot -------------------------------------------------------------------------


def test_healthy_battery_gets_the_configured_maxima() -> None:
    a = assess(snap(), DEFAULTS)
    assert a.charge == Target(50.0, Reason.BULK_LIMIT)
    assert a.discharge == Target(100.0, Reason.DISCHARGE_LIMIT)
    assert a.alarms == frozenset()
    assert a.warnings == frozenset()


def test_cell_voltage_tapers_charge_current() -> None:
    a = assess(snap(cells=cells_with(high=3.40)), DEFAULTS)
    assert a.charge == Target(12.5, Reason.CELL_VOLTAGE)  # 0.25 * 50 A
    stepped = assess(snap(cells=cells_with(high=3.4125)), DEFAULTS.replace(linear=False))
    assert stepped.charge.value == pytest.approx(2.5)  # 0.05 * 50 A
    a = assess(snap(cells=cells_with(low=3.05)), DEFAULTS)
    assert a.discharge.value == pytest.approx(15.0)  # 0.15 * 100 A
    assert a.discharge.reason is Reason.CELL_VOLTAGE


def test_taper_reaching_zero_is_soft() -> None:
    a = assess(snap(cells=cells_with(high=3.50)), DEFAULTS)
    assert a.charge == Target(0.0, Reason.CELL_VOLTAGE, hard=False)


def test_cell_at_charge_cutoff_stops_charging_at_once() -> None:
    a = assess(snap(cells=cells_with(high=3.55)), DEFAULTS)
    assert a.charge == Target(0.0, Reason.OVERVOLTAGE, hard=True)
    assert a.warnings == {AlarmItem.HIGH_VOLTAGE, AlarmItem.CELL_IMBALANCE}
    assert a.alarms == frozenset()


def test_cell_at_chemistry_maximum_is_an_alarm() -> None:
    a = assess(snap(cells=cells_with(high=3.65)), DEFAULTS)
    assert a.charge.value == 0.0
    assert a.alarms == {AlarmItem.HIGH_VOLTAGE}


def test_pack_voltage_alone_cuts_off() -> None:
    # No cell data: the pack voltage still counts (16 * 3.55 = 56.8 V).
    a = assess(snap(cells=(), voltage=56.8), DEFAULTS)
    assert a.charge == Target(0.0, Reason.OVERVOLTAGE, hard=True)
    a = assess(snap(cells=(), voltage=58.5), DEFAULTS)
    assert AlarmItem.HIGH_VOLTAGE in a.alarms
    a = assess(snap(cells=(), voltage=46.4), DEFAULTS)
    assert a.discharge == Target(0.0, Reason.UNDERVOLTAGE, hard=True)
    a = assess(snap(cells=(), voltage=39.0), DEFAULTS)
    assert AlarmItem.LOW_VOLTAGE in a.alarms


def test_pack_voltage_falls_back_to_the_sum_of_cells() -> None:
    a = assess(snap(cells=(3.54,) * 16, voltage=None), DEFAULTS)
    assert a.charge.value == 0.0  # the taper says 0 at 3.5 V; pack 56.64 V < 56.8 V
    assert a.charge.reason is Reason.CELL_VOLTAGE
    a = assess(snap(cells=(3.549,) * 15 + (3.56,), voltage=None), DEFAULTS)
    assert a.charge.reason is Reason.OVERVOLTAGE


def test_cell_at_discharge_cutoff_stops_discharging() -> None:
    a = assess(snap(cells=cells_with(low=2.90)), DEFAULTS)
    assert a.discharge == Target(0.0, Reason.UNDERVOLTAGE, hard=True)
    assert a.warnings == {AlarmItem.LOW_VOLTAGE, AlarmItem.CELL_IMBALANCE}
    a = assess(snap(cells=cells_with(low=2.45)), DEFAULTS)
    assert AlarmItem.LOW_VOLTAGE in a.alarms


@pytest.mark.parametrize(
    ("temperature", "charge", "discharge", "warnings", "alarms"),
    [
        (0.0, 0.0, 25.0, {AlarmItem.LOW_TEMP_CHARGE}, set()),
        (3.5, 18.75, 42.5, set(), set()),  # 0.375 * 50 A; discharge 0.425 * 100 A
        (25.0, 50.0, 100.0, set(), set()),
        (47.5, 18.75, 37.5, set(), set()),
        (55.0, 0.0, 0.0, {AlarmItem.HIGH_TEMP_CHARGE, AlarmItem.HIGH_TEMP}, set()),
        (-10.0, 0.0, 0.0, {AlarmItem.LOW_TEMP_CHARGE, AlarmItem.LOW_TEMP}, set()),
        (-20.0, 0.0, 0.0, {AlarmItem.LOW_TEMP_CHARGE, AlarmItem.LOW_TEMP}, {AlarmItem.LOW_TEMP}),
        (60.0, 0.0, 0.0, {AlarmItem.HIGH_TEMP_CHARGE, AlarmItem.HIGH_TEMP}, {AlarmItem.HIGH_TEMP}),
    ],
)
def test_temperature_rules(
    temperature: float,
    charge: float,
    discharge: float,
    warnings: set[str],
    alarms: set[str],
) -> None:
    a = assess(snap(temperature=temperature), DEFAULTS)
    assert a.charge.value == pytest.approx(charge)
    assert a.discharge.value == pytest.approx(discharge)
    assert a.warnings == warnings
    assert a.alarms == alarms
    if charge == 0.0:
        assert a.charge == Target(0.0, Reason.TEMPERATURE, hard=True)


def test_mosfet_temperature() -> None:
    a = assess(snap(mosfet_temperature=75.0), DEFAULTS)
    assert a.charge == Target(31.25, Reason.MOSFET_TEMPERATURE)  # 0.625 * 50 A
    assert a.discharge == Target(62.5, Reason.MOSFET_TEMPERATURE)
    a = assess(snap(mosfet_temperature=90.0), DEFAULTS)
    assert a.charge == Target(0.0, Reason.MOSFET_TEMPERATURE, hard=True)
    assert a.discharge == Target(0.0, Reason.MOSFET_TEMPERATURE, hard=True)
    assert a.warnings == {AlarmItem.HIGH_TEMP}


def test_soc_limits_only_when_enabled() -> None:
    assert assess(snap(soc=96.5), DEFAULTS).charge.reason is Reason.BULK_LIMIT
    with_soc = DEFAULTS.replace(use_soc_limits=True)
    a = assess(snap(soc=96.5), with_soc)
    assert a.charge.value == pytest.approx(7.5)  # 0.15 * 50 A
    assert a.charge.reason is Reason.SOC
    a = assess(snap(soc=7.5), with_soc)
    assert a.discharge.value == pytest.approx(15.0)  # 0.15 * 100 A
    assert a.discharge.reason is Reason.SOC


@pytest.mark.parametrize(
    ("flag", "item", "charge", "discharge"),
    [
        ("cell_overvoltage", AlarmItem.HIGH_VOLTAGE, Reason.OVERVOLTAGE, Reason.DISCHARGE_LIMIT),
        ("pack_undervoltage", AlarmItem.LOW_VOLTAGE, Reason.BULK_LIMIT, Reason.UNDERVOLTAGE),
        ("charge_undertemperature", AlarmItem.LOW_TEMP_CHARGE, Reason.TEMPERATURE, None),
        ("discharge_overtemperature", AlarmItem.HIGH_TEMP, None, Reason.TEMPERATURE),
        ("charge_overcurrent", AlarmItem.HIGH_CHARGE_CURRENT, Reason.BMS_PROTECTION, None),
        ("short_circuit", AlarmItem.HIGH_CURRENT, Reason.BMS_PROTECTION, Reason.BMS_PROTECTION),
        ("mosfet_lock", AlarmItem.BMS_INTERNAL, Reason.BMS_PROTECTION, Reason.BMS_PROTECTION),
        ("bms_problem", AlarmItem.BMS_INTERNAL, Reason.BMS_PROTECTION, None),  # Bluetooth BMSes
        ("cell_imbalance", AlarmItem.CELL_IMBALANCE, None, None),
        ("alarm", AlarmItem.GENERAL, None, None),  # a BMV's alarm flag
    ],
)
def test_bms_protection_flags(
    flag: str, item: AlarmItem, charge: Reason | None, discharge: Reason | None
) -> None:
    a = assess(snap(alarms=frozenset({flag})), DEFAULTS)
    assert a.warnings == {item}
    assert a.alarms == frozenset()
    if charge is None:
        assert a.charge.value == 50.0
    elif charge is not Reason.BULK_LIMIT:
        assert a.charge == Target(0.0, charge, hard=True)
    if discharge is None:
        assert a.discharge.value == 100.0
    elif discharge is not Reason.DISCHARGE_LIMIT:
        assert a.discharge == Target(0.0, discharge, hard=True)


def test_current_and_imbalance_warnings() -> None:
    assert assess(snap(current=61.0), DEFAULTS).warnings == {AlarmItem.HIGH_CHARGE_CURRENT}
    assert assess(snap(current=59.0), DEFAULTS).warnings == frozenset()
    assert assess(snap(current=-121.0), DEFAULTS).warnings == {AlarmItem.HIGH_CURRENT}
    imbalanced = snap(cells=cells_with(high=3.40))  # 0.10 V spread
    assert assess(imbalanced, DEFAULTS).warnings == {AlarmItem.CELL_IMBALANCE}


def test_impossible_readings_are_ignored() -> None:
    a = assess(
        snap(
            cells=(math.nan, 0.0) + (CELL,) * 14,
            voltage=0.0,
            temperature=math.inf,
            current=math.nan,
            mosfet_temperature=math.nan,
        ),
        DEFAULTS,
    )
    # A 0 V pack is a glitch, not an empty battery: no under-voltage alarm, no cut-off; and
    # the 14 valid cells are not summed into a (far too low) pack voltage.
    assert a.discharge == Target(100.0, Reason.DISCHARGE_LIMIT)
    assert a.alarms == frozenset()


def test_pack_is_not_summed_from_a_different_cell_count() -> None:
    a = assess(snap(cells=(3.0,) * 15, voltage=None), DEFAULTS)  # 45 V, but 15 of 16 cells
    assert a.discharge.reason is Reason.CELL_VOLTAGE


def test_a_source_without_measurements_gets_the_maxima_once_allowed_without_temperature() -> None:
    allowed = DEFAULTS.replace(allow_charge_without_temperature=True)
    a = assess(BatterySnapshot(timestamp=0.0, soc=50.0), allowed)
    assert a.charge == Target(50.0, Reason.BULK_LIMIT)
    assert a.discharge == Target(100.0, Reason.DISCHARGE_LIMIT)


# --- over time ----------------------------------------------------------------------------


def test_start_up_ramps_from_zero() -> None:
    policy = LimitPolicy(DEFAULTS)
    first = policy.update(snap(0.0), 0.0)
    assert (first.charge_current, first.charge_reason) == (0.0, Reason.RECOVERY_RAMP)
    assert first.charge_target == 50.0
    second = policy.update(snap(1.0), 1.0)
    assert (second.charge_current, second.discharge_current) == (5.0, 5.0)
    later = run(policy, 2.0, 10.0)
    assert (later.charge_current, later.charge_reason) == (50.0, Reason.BULK_LIMIT)
    assert later.discharge_current == 50.0


def test_no_data_means_no_current() -> None:
    policy = LimitPolicy(DEFAULTS)
    result = policy.update(None, 100.0)
    assert (result.charge_current, result.discharge_current) == (0.0, 0.0)
    assert result.charge_reason is Reason.NO_DATA
    assert (result.stale, result.fresh, result.source_age) == (False, False, None)
    assert result.warnings == frozenset()
    result = policy.update(None, 131.0)  # silent for longer than stale_after since start
    assert result.stale
    assert result.warnings == {AlarmItem.BMS_INTERNAL}


def test_overvoltage_steps_through_one_amp_then_holds_and_ramps() -> None:
    """DESIGN.md invariant 4: a charge cut-off reaches 0 A through 1 A, held for STEP_HOLD."""
    policy = settled()
    over = policy.update(snap(101.0, cells=cells_with(high=3.56)), 101.0)
    assert (over.charge_current, over.charge_reason) == (STEP_CURRENT, Reason.OVERVOLTAGE)
    # Held longer than one send period, so a frame at 1 A is on the wire before 0 A.
    held_step = policy.update(snap(101.0 + STEP_HOLD - 0.01, cells=cells_with(high=3.56)), 102.19)
    assert held_step.charge_current == STEP_CURRENT
    still = policy.update(snap(102.3, cells=cells_with(high=3.56)), 102.3)
    assert (still.charge_current, still.charge_reason) == (0.0, Reason.OVERVOLTAGE)
    # Cause gone at t=102.5: held at 0 for 30 s, then 5 A/s.
    held = run(policy, 102.5, 131.5)
    assert (held.charge_current, held.charge_reason) == (0.0, Reason.RECOVERY_HOLD)
    reopened = policy.update(snap(132.5), 132.5)
    assert reopened.charge_current == 5.0
    assert reopened.charge_reason is Reason.RECOVERY_RAMP
    assert run(policy, 133.5, 141.5).charge_current == 50.0
    # Discharging was never affected.
    assert reopened.discharge_current == 100.0


def test_soft_fall_passes_one_update_at_one_amp() -> None:
    policy = settled()
    first = policy.update(snap(101.0, cells=cells_with(high=3.50)), 101.0)
    assert (first.charge_current, first.charge_reason) == (STEP_CURRENT, Reason.CELL_VOLTAGE)
    second = policy.update(snap(102.0, cells=cells_with(high=3.50)), 102.0)
    assert second.charge_current == STEP_CURRENT  # one send period has not surely passed
    third = policy.update(snap(103.0, cells=cells_with(high=3.50)), 103.0)
    assert third.charge_current == 0.0


def test_fall_from_below_one_amp_goes_straight_to_zero() -> None:
    policy = settled()
    low = policy.update(snap(101.0, cells=cells_with(high=3.47)), 101.0)
    assert low.charge_current == pytest.approx(0.15)  # 0.003 * 50 A (3.47 V: 0.6 of 0.005)
    zero = policy.update(snap(102.0, cells=cells_with(high=3.50)), 102.0)
    assert zero.charge_current == 0.0


def test_decrease_is_immediate_and_increase_ramps() -> None:
    policy = settled()
    down = policy.update(snap(101.0, cells=cells_with(high=3.40)), 101.0)
    assert (down.charge_current, down.charge_reason) == (12.5, Reason.CELL_VOLTAGE)
    up = policy.update(snap(103.0), 103.0)
    assert (up.charge_current, up.charge_reason) == (22.5, Reason.RECOVERY_RAMP)  # 12.5 + 2 s * 5


def test_same_time_twice_does_not_ramp() -> None:
    policy = LimitPolicy(DEFAULTS)
    policy.update(snap(0.0), 0.0)
    assert policy.update(snap(0.0), 0.0).charge_current == 0.0


def test_stale_source_stops_charging_and_holds_discharge() -> None:
    policy = settled()
    last = snap(100.0)
    at_limit = policy.update(last, 130.0)  # age 30 s: still fresh
    assert at_limit.fresh
    assert at_limit.charge_current == 50.0
    first = policy.update(last, 131.0)
    assert (first.stale, first.fresh) == (True, False)
    assert (first.charge_current, first.charge_reason) == (STEP_CURRENT, Reason.STALE_SOURCE)
    assert (first.discharge_current, first.discharge_reason) == (100.0, Reason.STALE_SOURCE)
    assert first.warnings == {AlarmItem.BMS_INTERNAL}
    assert first.alarms == frozenset()
    assert first.source_age == 31.0
    second = policy.update(None, 132.5)  # the source lost its snapshot: the last one counts
    assert second.charge_current == 0.0
    assert policy.last_snapshot is last  # a clean snapshot is kept as it is
    long_after = policy.update(None, 1000.0)
    assert long_after.alarms == frozenset()  # stale alarm not chosen


def test_stale_alarm_when_chosen() -> None:
    chosen = DEFAULTS.replace(stale_alarm=True, stale_alarm_after=120.0)
    policy = settled(chosen)
    assert policy.update(None, 220.0).alarms == frozenset()  # 120 s old
    assert policy.update(None, 221.0).alarms == {AlarmItem.BMS_INTERNAL}
    # Fresh data clears it, and charging recovers after the hold.
    back = policy.update(snap(222.0), 222.0)
    assert (back.alarms, back.warnings, back.stale) == (frozenset(), frozenset(), False)
    assert back.charge_reason is Reason.RECOVERY_HOLD


def test_stale_source_keeps_the_last_conditions() -> None:
    policy = settled()
    policy.update(snap(101.0, cells=cells_with(high=3.56)), 101.0)
    stale = policy.update(None, 140.0)
    assert stale.warnings == {
        AlarmItem.HIGH_VOLTAGE,
        AlarmItem.CELL_IMBALANCE,
        AlarmItem.BMS_INTERNAL,
    }


def test_older_snapshot_does_not_replace_a_newer_one() -> None:
    policy = LimitPolicy(DEFAULTS)
    newer = snap(10.0)
    policy.update(newer, 10.0)
    policy.update(snap(5.0), 11.0)
    assert policy.last_snapshot is newer


def test_alarms_wait_for_the_alarm_delay() -> None:
    policy = settled()
    too_hot: dict[str, Any] = {"temperature": 60.0}
    first = policy.update(snap(101.0, **too_hot), 101.0)
    assert first.alarms == frozenset()
    assert AlarmItem.HIGH_TEMP in first.warnings  # shown as a warning meanwhile
    assert policy.update(snap(105.0, **too_hot), 105.0).alarms == frozenset()
    assert policy.update(snap(106.0, **too_hot), 106.0).alarms == {AlarmItem.HIGH_TEMP}
    # One good reading clears it and restarts the delay.
    policy.update(snap(107.0), 107.0)
    assert policy.update(snap(108.0, **too_hot), 108.0).alarms == frozenset()


def test_charge_block_is_soft_and_never_hides_a_cutoff() -> None:
    policy = settled()
    blocked = policy.update(snap(101.0), 101.0, charge_block=Reason.FORCED_OFF)
    assert (blocked.charge_current, blocked.charge_reason) == (STEP_CURRENT, Reason.FORCED_OFF)
    assert blocked.discharge_current == 100.0
    assert policy.update(snap(102.5), 102.5, charge_block=Reason.FORCED_OFF).charge_current == 0.0
    over = policy.update(
        snap(103.0, cells=cells_with(high=3.56)), 103.0, charge_block=Reason.FORCED_OFF
    )
    assert over.charge_reason is Reason.OVERVOLTAGE
    none = LimitPolicy(DEFAULTS).update(None, 0.0, charge_block=Reason.FORCED_OFF)
    assert none.charge_reason is Reason.NO_DATA


def test_lower_maximum_applies_at_once() -> None:
    policy = settled()
    policy.settings = DEFAULTS.replace(bulk_current=20.0, max_discharge_current=30.0)
    result = policy.update(snap(101.0), 101.0)
    assert (result.charge_current, result.discharge_current) == (20.0, 30.0)


# --- properties (DESIGN.md invariants 2-4) ------------------------------------------------

# Sixteen cells around one level (2.5-3.7 V) with a little spread, so healthy, tapered and
# cut-off packs all occur.
pack_cells = st.builds(
    lambda level, spread: tuple(level + d for d in spread),
    st.floats(2.5, 3.7),
    st.lists(st.floats(-0.05, 0.05), min_size=16, max_size=16),
)
readings = st.fixed_dictionaries(
    {
        "cells": pack_cells,
        "temperature": st.one_of(st.none(), st.floats(-30, 70)),
        "mosfet_temperature": st.one_of(st.none(), st.floats(20, 100)),
        "current": st.floats(-150, 150),
        "soc": st.floats(0, 100),
        "fresh": st.booleans(),
        "dt": st.floats(0.0, 40.0),
    }
)
policy_settings = st.builds(
    lambda bulk, discharge, ramp, hold, linear, soc: DEFAULTS.replace(
        bulk_current=bulk,
        max_discharge_current=discharge,
        ramp_rate=ramp,
        recovery_hold=hold,
        linear=linear,
        use_soc_limits=soc,
    ),
    st.floats(0, 100),
    st.floats(0, 200),
    st.floats(0.1, 50),
    st.floats(0, 60),
    st.booleans(),
    st.booleans(),
)


@HYPOTHESIS
@given(settings=policy_settings, steps=st.lists(readings, min_size=1, max_size=40))
def test_limit_invariants(settings: ChargeSettings, steps: list[dict[str, Any]]) -> None:
    policy = LimitPolicy(settings)
    now = 0.0
    latest: BatterySnapshot | None = None
    previous: LimitResult | None = None
    previous_time = 0.0
    cut_since: float | None = None
    stale_since: float | None = None
    for step in steps:
        now += step["dt"]
        if step["fresh"] or latest is None:
            latest = snap(
                now,
                cells=step["cells"],
                temperature=step["temperature"],
                mosfet_temperature=step["mosfet_temperature"],
                current=step["current"],
                soc=step["soc"],
            )
            fed: BatterySnapshot | None = latest
        else:
            fed = None
        result = policy.update(fed, now)
        ccl, dcl = result.charge_current, result.discharge_current
        # Never above the configured maxima, never negative.
        assert 0.0 <= ccl <= settings.bulk_current
        assert 0.0 <= dcl <= settings.max_discharge_current
        # Increases are ramped.
        if previous is not None:
            allowed = settings.ramp_rate * (now - previous_time) + 1e-9
            assert ccl - previous.charge_current <= allowed
            assert dcl - previous.discharge_current <= allowed
        charge_cut = False
        if result.fresh:
            assert latest is not None
            pack = sum(latest.cell_voltages)
            if max(latest.cell_voltages) >= settings.cell_charge_cutoff or (
                pack >= settings.charge_cutoff_voltage
            ):
                charge_cut = True
            if min(latest.cell_voltages) <= settings.cell_discharge_cutoff or (
                pack <= settings.discharge_cutoff_voltage
            ):
                assert dcl == 0.0
            t = latest.temperature
            table = settings.charge_temperature_table
            if t is not None and not table[0][0] < t < table[-1][0]:
                charge_cut = True
        if charge_cut:
            # At most 1 A, for at most STEP_HOLD after the cut was first seen (invariant 4).
            assert ccl <= STEP_CURRENT
            if cut_since is None:
                cut_since = now
            elif now - cut_since >= STEP_HOLD:
                assert ccl == 0.0
        else:
            cut_since = None
        if result.stale:
            # Through 1 A, held at most STEP_HOLD after staleness was first seen, then 0.
            assert ccl <= STEP_CURRENT
            if stale_since is None:
                stale_since = now
            elif now - stale_since >= STEP_HOLD:
                assert ccl == 0.0
            assert AlarmItem.BMS_INTERNAL in result.warnings
        else:
            stale_since = None
        previous, previous_time = result, now
