"""The one pack model behind the serial and the Bluetooth BMS simulators.

Both kinds of simulated BMS measure a :class:`SimulatedPack`; these tests hold the physics they
share to what a LiFePO4 pack and its BMS do, and prove a Bluetooth pack behaves like a wired one
where the transport does not matter.
"""

from __future__ import annotations

import math
import time

import pytest

from custom_components.sma_victron_bridge.protocols.bms_common import (
    CELL_OVERVOLTAGE,
    CELL_UNDERVOLTAGE,
)
from custom_components.sma_victron_bridge.simulators import battery as battery_module
from custom_components.sma_victron_bridge.simulators.battery import SimulatedPack
from custom_components.sma_victron_bridge.simulators.ble_bms import BleBatteryState
from custom_components.sma_victron_bridge.simulators.bms import JbdSimulator


def test_ocv_curve_ends() -> None:
    assert battery_module.ocv(-5.0) == 2.80
    assert battery_module.ocv(100.0) == 3.50
    assert battery_module.ocv(150.0) == 3.50
    assert battery_module.ocv(50.0) == pytest.approx(3.29)


def test_same_seed_same_cells_on_either_transport() -> None:
    """A wired and a Bluetooth pack at the same SOC read the same OCV-based cells."""
    wired = JbdSimulator(cells=8, seed=5, frozen=True)
    ble = BleBatteryState(cells=8, soc=50.0, seed=5, frozen=True)
    assert len(wired.cell_voltages) == len(ble.cell_voltages) == 8
    mean_wired = sum(wired.cell_voltages) / 8
    mean_ble = sum(ble.cell_voltages) / 8
    assert mean_wired == pytest.approx(battery_module.ocv(50.0), abs=0.005)
    assert mean_ble == pytest.approx(mean_wired, abs=0.005)
    # Identity draws come first on a wired BMS; the Bluetooth pack's cells come straight from
    # its seed, as before, so a seeded test pack keeps its cells.
    assert ble.cell_voltages == BleBatteryState(cells=8, soc=50.0, seed=5).cell_voltages


def test_bluetooth_pack_at_the_top_is_held_at_the_charge_voltage() -> None:
    """Near full at noon the charger tapers to constant voltage: cells at 3.45 V, no trip."""
    pack = BleBatteryState(soc=95.0, start_time_of_day=11 * 3600, seed=2)
    pack.step(2 * 3600)
    assert pack.soc > 97.0
    assert pack.charge_fet
    assert CELL_OVERVOLTAGE not in pack.protections
    assert pack.current < 1.0  # only the trickle that holds 3.45 V
    assert sum(pack.cell_voltages) / len(pack.cell_voltages) == pytest.approx(3.45, abs=0.005)


def test_a_protection_holds_the_fet_whatever_the_switch() -> None:
    """Switching a FET on while a protection holds it does nothing until the fault clears."""
    pack = SimulatedPack(cells=4, soc=99.9)
    pack.current = 500.0
    pack.step(60)
    assert CELL_OVERVOLTAGE in pack.protections
    pack.charge_fet = True  # a host asks for charging again
    assert not pack.charge_fet
    pack.charge_fet = False  # the host switches it off itself: stays off after the release
    pack.soc = 80.0
    pack.step(60)
    assert CELL_OVERVOLTAGE not in pack.protections
    assert not pack.charge_fet
    pack.charge_fet = True
    assert pack.charge_fet
    pack.soc = 0.5
    pack.current = -50.0
    pack.step(60)
    assert CELL_UNDERVOLTAGE in pack.protections
    assert not pack.discharge_fet
    assert pack.charge_fet  # under-voltage still lets the pack be charged


def test_bluetooth_pack_without_a_day_gets_its_own_current_back() -> None:
    pack = BleBatteryState(frozen=True, seed=1)
    pack.current = 3.0
    pack.follow_current(-10.0, valid_for=0.1)
    pack.step(60)
    pack.follow_current(-20.0, valid_for=0.1)  # a fresh value: its own current stays 3 A
    pack.step(60)
    assert (pack.current, pack.followed_current) == (-20.0, -20.0)
    time.sleep(0.15)
    pack.step(60)
    assert pack.followed_current is None
    assert pack.current == 3.0


def test_advance_moves_by_real_time_unless_frozen() -> None:
    pack = SimulatedPack(soc=50.0, time_scale=3600.0)
    pack.current = 28.0
    pack.advance(now=100.0)  # the starting point only
    assert pack.soc == 50.0
    pack.advance(now=101.0)  # one simulated hour at 28 A out of 280 Ah: +10 %
    assert pack.soc == pytest.approx(60.0)
    pack.frozen = True
    pack.advance(now=200.0)
    assert pack.soc == pytest.approx(60.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cells": 33}, "cells"),
        ({"capacity_ah": -1.0}, "capacity_ah"),
        ({"time_scale": 0.0}, "time_scale"),
        ({"start_time_of_day": math.inf}, "finite"),
    ],
)
def test_impossible_packs_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimulatedPack(**kwargs)  # type: ignore[arg-type]
