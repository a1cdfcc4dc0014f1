"""Snapshot sanitising: garbage becomes unknown, never a number a rule acts on, never a crash."""

from __future__ import annotations

import math
from typing import Any

import pytest

from custom_components.sma_victron_bridge.control.chemistry import ChargeSettings
from custom_components.sma_victron_bridge.control.snapshot import (
    BatterySnapshot,
    sanitize_snapshot,
)

DEFAULTS = ChargeSettings()  # 16 cells: no pack voltage above 80 V is real


def clean(**kw: Any) -> BatterySnapshot:
    return BatterySnapshot(timestamp=kw.pop("timestamp", 1.0), **kw).sanitized(cells=16)


@pytest.mark.parametrize("soc", [math.nan, math.inf, -math.inf, -0.1, 101.01, 150.0, 1e300])
def test_implausible_soc_is_unknown(soc: float) -> None:
    assert clean(soc=soc).soc is None


@pytest.mark.parametrize("soc", [100.01, 100.5, 101.0])
def test_a_soc_just_above_full_reads_as_full(soc: float) -> None:
    """remaining ÷ aged nominal Ah overshoots a little after a full charge: still full, known."""
    assert clean(soc=soc).soc == 100.0


@pytest.mark.parametrize("soc", [0.0, 0.5, 55.0, 100.0])
def test_plausible_soc_is_kept(soc: float) -> None:
    assert clean(soc=soc).soc == soc


@pytest.mark.parametrize("voltage", [math.nan, math.inf, -1.0, 0.0, 80.1, 655.35])
def test_a_pack_voltage_this_pack_cannot_have_is_unknown(voltage: float) -> None:
    assert clean(voltage=voltage).voltage is None


def test_the_pack_limit_follows_the_cell_count() -> None:
    snapshot = BatterySnapshot(timestamp=0.0, voltage=60.0)
    assert snapshot.sanitized(cells=16).voltage == 60.0
    assert snapshot.sanitized(cells=4).voltage is None  # 4 cells never reach 20 V
    assert sanitize_snapshot(snapshot, DEFAULTS).voltage == 60.0


def test_implausible_cells_are_dropped_so_the_set_stays_visibly_partial() -> None:
    cells = (3.30, 0.0, math.nan, 3.31, 6.5, -3.3, math.inf, 0.4, 3.32)
    assert clean(cell_voltages=cells).cell_voltages == (3.30, 3.31, 3.32)


def test_an_open_temperature_sensor_is_dropped() -> None:
    # A JBD reports an open NTC as about -273 °C; a shorted one reads absurdly hot.
    s = clean(temperature=-273.1, temperatures=(-273.1, 21.0, math.nan, 250.0, 119.0, -59.0))
    assert s.temperature is None
    assert s.temperatures == (21.0, 119.0, -59.0)
    assert s.all_temperatures == (21.0, 119.0, -59.0)


@pytest.mark.parametrize("current", [math.nan, -math.inf, 10000.1, -20000.0])
def test_absurd_currents_are_unknown(current: float) -> None:
    assert clean(current=current).current is None
    assert clean(current=-250.0).current == -250.0


def test_extras_are_checked_too() -> None:
    s = clean(mosfet_temperature=-300.0, soh=101.0, capacity_ah=-5.0)
    assert (s.mosfet_temperature, s.soh, s.capacity_ah) == (None, None, None)
    s = clean(mosfet_temperature=95.0, soh=98.0, capacity_ah=280.0)
    assert (s.mosfet_temperature, s.soh, s.capacity_ah) == (95.0, 98.0, 280.0)


def test_wrong_types_become_unknown_without_raising() -> None:
    fields: dict[str, Any] = {
        "timestamp": "yesterday",
        "soc": "50",
        "voltage": True,
        "current": [1.0],
        "temperature": None,
        "cell_voltages": "3.3",
        "alarms": 5,
        "temperatures": None,
        "field_times": [("voltage", 1.0)],
    }
    garbage = BatterySnapshot(**fields)
    s = garbage.sanitized(cells=16)
    assert math.isnan(s.timestamp)
    assert (s.soc, s.voltage, s.current) == (None, None, None)
    assert (s.cell_voltages, s.temperatures, s.alarms) == ((), (), frozenset())
    assert dict(s.field_times) == {}
    # Integers are numbers; non-string flags are dropped.
    s = clean(soc=50, voltage=52, cell_voltages=[3, 3.3], alarms={"cell_overvoltage", 7})
    assert (s.soc, s.voltage, s.cell_voltages) == (50.0, 52.0, (3.0, 3.3))
    assert s.alarms == {"cell_overvoltage"}


def test_field_times_keep_known_names_and_make_bad_times_infinitely_old() -> None:
    s = clean(
        timestamp=100.0,
        field_times={"voltage": 90.0, "temperature": math.nan, "bogus": 1.0, "soc": "now"},
    )
    assert dict(s.field_times) == {"voltage": 90.0, "temperature": -math.inf, "soc": -math.inf}
    assert s.field_time("voltage") == 90.0
    assert s.field_time("temperature") == -math.inf
    assert s.field_time("current") == 100.0  # no entry: the snapshot's own time


@pytest.mark.parametrize("stamp", [math.nan, math.inf, "now", None])
def test_a_time_that_is_not_a_finite_number_is_infinitely_old(stamp: Any) -> None:
    s = BatterySnapshot(timestamp=100.0, voltage=52.0, field_times={"voltage": stamp})
    assert s.sanitized(cells=16).field_time("voltage") == -math.inf


def test_a_field_time_never_lies_ahead_of_its_snapshot() -> None:
    s = BatterySnapshot(timestamp=100.0, field_times={"voltage": 500.0})
    assert s.field_time("voltage") == 100.0


def test_a_clean_snapshot_survives_unchanged() -> None:
    original = BatterySnapshot(
        timestamp=5.0,
        soc=60.0,
        voltage=52.8,
        current=-12.5,
        temperature=24.0,
        cell_voltages=(3.3,) * 16,
        alarms=frozenset({"cell_imbalance"}),
        mosfet_temperature=40.0,
        soh=99.0,
        capacity_ah=280.0,
        temperatures=(22.0, 24.0),
        field_times={"voltage": 4.0},
    )
    assert original.sanitized(cells=16) is original  # no copy for the common case


def test_all_temperatures_combine_both_fields() -> None:
    s = BatterySnapshot(timestamp=0.0, temperature=3.0, temperatures=(-6.0,))
    assert sorted(s.all_temperatures) == [-6.0, 3.0]
    assert BatterySnapshot(timestamp=0.0).all_temperatures == ()


def test_a_snapshot_checked_twice_gets_the_same_answer_for_its_cell_count() -> None:
    # A pack's reading is checked by its controller, then by a bank and a Sunny Island: the
    # answer is remembered per cell count, never carried over to another one.
    snapshot = BatterySnapshot(timestamp=1.0, voltage=60.0, cell_voltages=(3.75,) * 16)
    for _ in range(3):
        assert snapshot.sanitized(cells=16) is snapshot
        assert snapshot.sanitized(cells=4).voltage is None
    assert snapshot.sanitized(cells=16) is snapshot


def test_times_in_a_plain_dict_are_checked_every_time() -> None:
    # A plain dict can change after the snapshot was made: a bad time put in later must still
    # be caught, so such a snapshot is never taken as known clean.
    times: dict[str, float] = {"voltage": 0.5}
    snapshot = BatterySnapshot(timestamp=1.0, voltage=52.0, field_times=times)
    assert snapshot.sanitized(cells=16) is snapshot
    times["voltage"] = math.nan
    assert snapshot.sanitized(cells=16).field_times["voltage"] == -math.inf


def test_many_snapshots_keep_the_memory_bounded() -> None:
    from custom_components.sma_victron_bridge.control import snapshot as module

    snapshots = [BatterySnapshot(timestamp=float(n), voltage=52.0) for n in range(500)]
    for item in snapshots:
        assert item.sanitized(cells=16) is item
    assert len(module._KNOWN_CLEAN) <= module._KNOWN_CLEAN_SIZE
    assert snapshots[-1].sanitized(cells=16) is snapshots[-1]
