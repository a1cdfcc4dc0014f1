"""Battery banks: several packs, each run by its own charge controller, as one battery.

The example tests drive a bank of three LiFePO4 packs of 100, 200 and 280 Ah, each with a real
:class:`ChargeController` fed once a second, and hand the bank's snapshot to a Sunny Island
controller as its battery source. The property tests draw random pack states (limits, FETs,
capacities, ages, garbage) and check the rules that must hold for every one of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
import math
from typing import Any

from hypothesis import given, settings as hypothesis_settings, strategies as st
import pytest

from custom_components.sma_victron_bridge.control.bank import (
    BankLimiter,
    BankProblem,
    BankReason,
    BankSettings,
    BankState,
    CellLocation,
    Exclusion,
    PackState,
    PackStatus,
    TemperatureLocation,
    combine,
    snapshot_of_reading,
)
from custom_components.sma_victron_bridge.control.charge import (
    ChargeController,
    ChargeDecision,
    ChargeMode,
    ChargeState,
)
from custom_components.sma_victron_bridge.control.chemistry import (
    MAX_CURRENT,
    ChargeSettings,
    UnsafeSetting,
)
from custom_components.sma_victron_bridge.control.limits import (
    STEP_CURRENT,
    AlarmItem,
    Reason,
)
from custom_components.sma_victron_bridge.control.snapshot import BatterySnapshot
from custom_components.sma_victron_bridge.protocols.bms_common import (
    CELL_OVERVOLTAGE,
    CELL_UNDERVOLTAGE,
    BmsReading,
)

CAPACITIES = {"A": 100.0, "B": 200.0, "C": 280.0}
CELL = 3.30
DEFAULT = BankSettings()
TOLERANCE = 1 + DEFAULT.share_tolerance


def reading(t: float, *, cells: Sequence[float] | None = None, **kw: Any) -> BatterySnapshot:
    """A healthy 16s LiFePO4 pack reading at ``t``; keywords override fields."""
    cell_voltages = tuple((CELL,) * 16 if cells is None else cells)
    values: dict[str, Any] = {
        "soc": 60.0,
        "voltage": math.fsum(cell_voltages),
        "current": 0.0,
        "temperature": 25.0,
        "cell_voltages": cell_voltages,
    }
    values.update(kw)
    return BatterySnapshot(timestamp=t, **values)


class Pack:
    """One pack of the bank with its own charge controller, as a BMS entry runs it."""

    def __init__(self, name: str, capacity: float) -> None:
        self.name = name
        self.capacity = capacity
        self.settings = ChargeSettings.for_chemistry("lifepo4", cells=16, capacity_ah=capacity)
        self.controller = ChargeController(self.settings)
        self.snapshot: BatterySnapshot | None = None
        self.decision: ChargeDecision | None = None
        self.charge_fet: bool | None = True
        self.discharge_fet: bool | None = True
        self.overrides: dict[str, Any] = {}
        self.silent = False

    def tick(self, t: float) -> None:
        if not self.silent:
            self.snapshot = reading(t, **self.overrides)
        self.decision = self.controller.update(None if self.silent else self.snapshot, t)

    def state(self) -> PackState:
        soc = self.snapshot.soc if self.snapshot is not None else None
        return PackState(
            pack_id=self.name,
            name=f"Pack {self.name}",
            snapshot=self.snapshot,
            decision=self.decision,
            nominal_capacity=self.capacity,
            remaining_capacity=None if soc is None else soc / 100.0 * self.capacity,
            charge_fet=self.charge_fet,
            discharge_fet=self.discharge_fet,
        )


class Bank:
    """Three packs and a Sunny Island controller that takes the bank as its battery source."""

    def __init__(self, settings: BankSettings = DEFAULT) -> None:
        self.packs = {name: Pack(name, capacity) for name, capacity in CAPACITIES.items()}
        self.settings = settings
        self.si = ChargeController(
            ChargeSettings.for_chemistry("lifepo4", cells=16, capacity_ah=580.0, bulk_current=290.0)
        )
        self.limiter = BankLimiter()
        self.t = 0.0
        self.state: BankState | None = None
        self.si_decision: ChargeDecision | None = None
        self.sent: ChargeDecision | None = None

    def run(self, seconds: float, *, grid: bool | None = True) -> BankState:
        end = self.t + seconds
        while self.t < end:
            self.t += 1.0
            for pack in self.packs.values():
                pack.tick(self.t)
            self.state = combine([p.state() for p in self.packs.values()], self.settings, self.t)
            self.si_decision = self.si.update(self.state.snapshot, self.t, grid_connected=grid)
            self.sent = self.limiter.apply(self.si_decision, self.state, self.t, self.si.settings)
        assert self.state is not None
        return self.state


def share(capacity: float, total: float = sum(CAPACITIES.values())) -> float:
    return capacity / total * TOLERANCE


@pytest.fixture
def bank() -> Bank:
    bank = Bank()
    bank.run(60)
    return bank


# --- values ----------------------------------------------------------------------------------


def test_healthy_bank_values_and_limits(bank: Bank) -> None:
    state = bank.run(1)
    assert state.packs_online == state.packs_total == 3
    assert state.soc == pytest.approx(60.0)
    assert state.voltage == pytest.approx(16 * CELL)
    assert state.current == 0.0
    assert state.current_source == "packs"
    assert state.nominal_capacity == 580.0
    assert state.remaining_capacity == pytest.approx(348.0)
    assert state.problems == frozenset()
    # Every pack's controller allows 0.5 C / 1 C; shares are by capacity, widened by 10 %.
    assert state.charge.value == pytest.approx(0.5 * 580.0 / TOLERANCE)
    assert state.discharge.value == pytest.approx(1.0 * 580.0 / TOLERANCE)
    assert state.charge.shares["C"] == pytest.approx(share(280.0))
    assert state.charge_voltage == pytest.approx(55.2)
    # The Sunny Island's controller sees one healthy 16-cell pack and charges at the bank's cap.
    assert state.cells_complete
    assert state.snapshot.cell_voltages == (CELL,) * 16
    assert state.snapshot.capacity_ah == 580.0
    assert bank.sent is not None
    assert bank.sent.charge_current_limit == pytest.approx(state.charge.value)
    assert bank.sent.limited_by_charge is Reason.BULK_LIMIT


def test_soc_is_capacity_weighted_and_cells_are_located(bank: Bank) -> None:
    bank.packs["A"].overrides = {"soc": 90.0, "cells": (3.31,) * 15 + (3.36,)}
    bank.packs["C"].overrides = {"soc": 20.0, "cells": (3.29, 3.21, *(3.29,) * 14)}
    bank.packs["B"].overrides = {"temperatures": (4.0, 31.0), "temperature": None}
    state = bank.run(1)
    assert state.soc == pytest.approx((90 * 100 + 60 * 200 + 20 * 280) / 580)
    assert state.remaining_capacity == pytest.approx(90 + 120 + 56)
    assert state.lowest_cell == CellLocation("C", "Pack C", 2, 3.21)
    assert state.highest_cell == CellLocation("A", "Pack A", 16, 3.36)
    assert state.cell_spread == pytest.approx(0.15)
    assert state.coldest == TemperatureLocation("B", "Pack B", 4.0)
    assert state.hottest == TemperatureLocation("B", "Pack B", 31.0)
    # The bank's representative pack has the bank's extremes; its cells sum near the voltage.
    cells = state.snapshot.cell_voltages
    assert (min(cells), max(cells), len(cells)) == (3.21, 3.36, 16)
    temperatures = state.snapshot.temperatures
    assert (min(temperatures), max(temperatures)) == (4.0, 31.0)
    assert state.snapshot.temperature == 31.0


def test_soc_without_capacities_is_the_plain_mean() -> None:
    packs = [
        PackState(pack_id=str(i), name=str(i), snapshot=reading(10.0, soc=soc), decision=None)
        for i, soc in enumerate((40.0, 80.0))
    ]
    state = combine(packs, DEFAULT, 10.0)
    assert all(p.status is PackStatus.INVALID for p in state.packs)  # no decisions: no limits
    assert state.soc is None  # only online packs count
    fine = [replace(p, decision=decision()) for p in packs]
    assert combine(fine, DEFAULT, 10.0).soc == pytest.approx(60.0)
    one_known = [replace(fine[0], nominal_capacity=100.0), fine[1]]
    assert combine(one_known, DEFAULT, 10.0).soc == pytest.approx(60.0)


def test_shunt_current_when_fresh_else_the_sum(bank: Bank) -> None:
    bank.packs["A"].overrides = {"current": 10.0}
    bank.packs["B"].overrides = {"current": 20.0}
    bank.packs["C"].overrides = {"current": 28.0}
    state = bank.run(1)
    assert state.current == pytest.approx(58.0)
    assert state.power == pytest.approx(58.0 * 16 * CELL)
    packs = [p.state() for p in bank.packs.values()]
    with_shunt = BankSettings(shunt=True)
    shunt = BatterySnapshot(timestamp=bank.t, voltage=52.9, current=57.0)
    fresh = combine(packs, with_shunt, bank.t, shunt)
    assert (fresh.current, fresh.current_source) == (57.0, "shunt")
    assert fresh.power == pytest.approx(52.9 * 57.0)
    assert BankProblem.SHUNT_STALE not in fresh.problems
    no_voltage = combine(packs, with_shunt, bank.t, replace(shunt, voltage=None))
    assert no_voltage.power == pytest.approx(16 * CELL * 57.0)
    old = combine(packs, with_shunt, bank.t + 40, replace(shunt, timestamp=bank.t))
    assert BankProblem.SHUNT_STALE in old.problems
    late = combine(packs, with_shunt, bank.t + 5, replace(shunt, timestamp=bank.t))
    assert late.current_source == "shunt"
    missing = combine(packs, with_shunt, bank.t)
    assert missing.current_source == "packs"
    assert BankProblem.SHUNT_STALE in missing.problems
    # A shunt reading without the shunt option is ignored.
    assert combine(packs, DEFAULT, bank.t, shunt).current == pytest.approx(58.0)


# --- the three example cases -----------------------------------------------------------------


def test_one_high_cell_in_one_pack_tapers_the_bank(bank: Bank) -> None:
    # Pack B's highest cell at 3.42 V: its own curve allows 9 % of 100 A.
    bank.packs["B"].overrides = {"cells": (3.33,) * 15 + (3.42,), "voltage": 15 * 3.33 + 3.42}
    state = bank.run(1)
    pack_b = bank.packs["B"].decision
    assert pack_b is not None
    assert pack_b.charge_current_limit == pytest.approx(9.0)
    assert state.charge.value == pytest.approx(9.0 / share(200.0))
    assert (state.charge.pack_id, state.charge.reason) == ("B", Reason.CELL_VOLTAGE)
    assert state.charge.limited_by == "Pack B: cell_voltage"
    # Pack B's share of the bank current is within its own limit; so are the others'.
    for name, capacity in CAPACITIES.items():
        own = bank.packs[name].decision
        assert own is not None
        assert state.charge.value * capacity / 580.0 <= own.charge_current_limit + 1e-9
    assert bank.sent is not None
    assert bank.sent.charge_current_limit <= state.charge.value
    assert bank.sent.limited_by_charge is Reason.CELL_VOLTAGE
    assert state.highest_cell == CellLocation("B", "Pack B", 16, 3.42)


def test_a_cell_at_the_cut_off_takes_the_bank_to_zero_through_one_amp(bank: Bank) -> None:
    bank.packs["C"].overrides = {"cells": (3.33,) * 15 + (3.56,)}
    # Pack C's controller passes 1 A first: the bank shows pack C's share of that, then 0.
    state = bank.run(1)
    assert state.charge.value == pytest.approx(STEP_CURRENT / share(280.0))
    assert (state.charge.pack_id, state.charge.reason) == ("C", Reason.OVERVOLTAGE)
    # What is sent passes 1 A too (the Sunny Island's own rule sees the cell as well).
    assert bank.sent is not None
    assert 0.0 < bank.sent.charge_current_limit <= STEP_CURRENT
    state = bank.run(2)
    assert state.charge.value == 0.0
    bank.run(1)
    assert bank.sent.charge_current_limit == 0.0
    assert bank.sent.limited_by_charge is Reason.OVERVOLTAGE


def test_charge_fet_off_drops_the_pack_and_the_others_carry_on(bank: Bank) -> None:
    # Pack C's BMS opened its charge FET on a high cell: it takes no charge current.
    bank.packs["C"].charge_fet = False
    bank.packs["C"].overrides = {"cells": (3.33,) * 15 + (3.66,), "alarms": {CELL_OVERVOLTAGE}}
    state = bank.run(1)
    assert state.charge.excluded == {"C": Exclusion.CHARGE_FET_OFF}
    assert "C" not in state.charge.shares
    assert state.charge.value == pytest.approx(50.0 / share(100.0, 300.0))
    assert state.charge.value < 0.5 * 580 / TOLERANCE
    # Discharging still uses all three.
    assert set(state.discharge.shares) == {"A", "B", "C"}
    # The Sunny Island does not see pack C's high cell or its protection: no bank-wide alarm.
    assert max(state.snapshot.cell_voltages) == pytest.approx(CELL)
    assert CELL_OVERVOLTAGE not in state.snapshot.alarms
    assert bank.si_decision is not None
    assert AlarmItem.HIGH_VOLTAGE not in bank.si_decision.alarms
    # The display still shows where the highest cell is.
    assert state.highest_cell == CellLocation("C", "Pack C", 16, 3.66)
    # Pack C's own controller asks for a lower charge voltage: the bank's CVL follows it.
    assert state.charge_voltage_pack == "C"
    assert bank.sent is not None
    assert bank.sent.charge_voltage == state.charge_voltage


def test_charge_fet_unknown_counts_as_on(bank: Bank) -> None:
    bank.packs["C"].charge_fet = None
    bank.packs["C"].overrides = {"cells": (3.33,) * 15 + (3.56,), "alarms": {CELL_OVERVOLTAGE}}
    state = bank.run(3)
    assert state.charge.value == 0.0
    assert CELL_OVERVOLTAGE in state.snapshot.alarms


def test_discharge_fet_off(bank: Bank) -> None:
    bank.packs["A"].discharge_fet = False
    bank.packs["A"].overrides = {"cells": (2.70,) + (3.2,) * 15, "alarms": {CELL_UNDERVOLTAGE}}
    state = bank.run(1)
    assert state.discharge.excluded == {"A": Exclusion.DISCHARGE_FET_OFF}
    assert state.discharge.value == pytest.approx(200.0 / share(200.0, 480.0))
    assert min(state.snapshot.cell_voltages) == pytest.approx(CELL)
    assert CELL_UNDERVOLTAGE not in state.snapshot.alarms
    # Both FETs off: pack A takes no current at all and its temperatures drop out too.
    bank.packs["A"].charge_fet = False
    bank.packs["A"].overrides["temperature"] = 70.0
    state = bank.run(1)
    assert state.charge.excluded["A"] == Exclusion.CHARGE_FET_OFF
    assert max(state.snapshot.temperatures) == 25.0
    assert state.hottest == TemperatureLocation("A", "Pack A", 70.0)


def test_all_charge_fets_off_means_no_charge(bank: Bank) -> None:
    for pack in bank.packs.values():
        pack.charge_fet = False
    state = bank.run(1)
    assert (state.charge.value, state.charge.reason) == (0.0, BankReason.NO_PACK)
    assert state.discharge.value > 0.0
    assert bank.sent is not None
    assert bank.sent.limited_by_charge is Reason.BMS_PROTECTION


def test_a_stale_pack_stops_charging_and_names_the_pack(bank: Bank) -> None:
    bank.packs["B"].silent = True
    state = bank.run(DEFAULT.stale_after)
    assert state.packs_online == 3  # 30 s old is not stale yet
    state = bank.run(1)
    assert state.stale_packs == ("B",)
    assert BankProblem.STALE_PACK in state.problems
    assert (state.charge.value, state.charge.reason) == (0.0, BankReason.STALE_PACK)
    assert (state.charge.pack_id, state.charge.limited_by) == ("B", "Pack B: stale_pack")
    # Discharging continues within the remaining packs' shares.
    assert state.discharge.excluded == {"B": Exclusion.STALE}
    assert state.discharge.value == pytest.approx(100.0 / share(100.0, 380.0))
    assert state.packs[1].status is PackStatus.STALE
    # The Sunny Island's controller goes on judging the packs it sees (incomplete cells); the
    # cap takes its charge limit to 0 A through 1 A and adds the stale-source warning.
    assert bank.si_decision is not None
    assert not bank.si_decision.stale
    assert not state.cells_complete
    assert bank.sent is not None
    assert 0.0 < bank.sent.charge_current_limit <= STEP_CURRENT
    assert bank.sent.limited_by_charge is Reason.STALE_SOURCE
    assert AlarmItem.BMS_INTERNAL in bank.sent.warnings
    bank.run(2)
    assert bank.sent.charge_current_limit == 0.0
    # Back again: charging resumes (after the controllers' recovery hold and ramp).
    bank.packs["B"].silent = False
    state = bank.run(90)
    assert state.stale_packs == ()
    assert state.charge.value == pytest.approx(0.5 * 580 / TOLERANCE)
    assert bank.sent.charge_current_limit > 100.0


def test_off_grid_a_low_cell_alarms_while_another_pack_is_stale(bank: Bank) -> None:
    # Off-grid the Sunny Island ignores the discharge limit: the alarm is the only stop, and a
    # stale pack must not blind the controller to the packs it still sees.
    bank.packs["A"].silent = True
    bank.run(35, grid=None)
    bank.packs["C"].overrides = {"cells": (2.85,) + (3.2,) * 15}
    state = bank.run(10, grid=None)
    assert state.stale_packs == ("A",)
    assert state.discharge.value == 0.0
    assert bank.si_decision is not None
    assert AlarmItem.LOW_VOLTAGE in bank.si_decision.alarms
    assert bank.sent is not None
    assert AlarmItem.LOW_VOLTAGE in bank.sent.alarms


def test_a_stale_pack_with_charging_allowed() -> None:
    bank = Bank(BankSettings(allow_charging_with_stale_pack=True))
    bank.run(60)
    bank.packs["A"].silent = True
    state = bank.run(40)
    assert state.stale_packs == ("A",)
    assert state.charge.value == pytest.approx(100.0 / share(200.0, 480.0))
    assert state.charge.excluded == {"A": Exclusion.STALE}
    # Pack A's cells are unknown: the bank's cell set is incomplete, nothing is dated back.
    assert not state.cells_complete
    assert len(state.snapshot.cell_voltages) < 16
    assert not state.snapshot.field_times
    assert bank.si_decision is not None
    assert not bank.si_decision.stale
    # Without a complete cell set the controller ramps down to its no-cells absorption voltage.
    assert bank.si_decision.charge_voltage < 16 * 3.45
    bank.run(200)
    assert bank.si_decision.charge_voltage == pytest.approx(16 * 3.40)
    assert bank.sent is not None
    assert bank.sent.charge_current_limit == pytest.approx(100.0 / share(200.0, 480.0))


def test_packs_disagreeing_on_voltage(bank: Bank) -> None:
    bank.packs["C"].overrides = {"voltage": 51.9}
    state = bank.run(1)
    assert state.disagreeing_packs == ("C",)
    assert BankProblem.VOLTAGE_DISAGREEMENT in state.problems
    assert state.voltage == pytest.approx(16 * CELL)  # the median ignores the odd one
    two = [bank.packs["A"].state(), bank.packs["C"].state()]
    assert combine(two, DEFAULT, bank.t).disagreeing_packs == ("A", "C")
    bank.packs["C"].overrides = {"voltage": 16 * CELL - 0.4}
    assert bank.run(1).disagreeing_packs == ()


def test_cell_count_mismatch_is_a_problem_and_the_cells_incomplete(bank: Bank) -> None:
    bank.packs["A"].overrides = {"cells": (3.3,) * 15}
    state = bank.run(1)
    assert state.cell_count_mismatch == ("A",)
    assert BankProblem.CELL_COUNT in state.problems
    assert not state.cells_complete


def test_off_grid_low_cell_in_one_pack_alarms_the_sunny_island(bank: Bank) -> None:
    bank.packs["B"].overrides = {"cells": (2.85,) + (3.2,) * 15}
    state = bank.run(10, grid=None)
    assert state.discharge.value == 0.0
    assert state.discharge.pack_id == "B"
    assert bank.si_decision is not None
    assert AlarmItem.LOW_VOLTAGE in bank.si_decision.alarms


def test_the_lowest_charge_voltage_wins() -> None:
    bank = Bank()
    bank.run(5)
    bank.packs["A"].controller.set_mode(ChargeMode.FORCE_FLOAT)
    state = bank.run(600)
    assert bank.packs["A"].controller.state is ChargeState.FLOAT
    assert state.charge_voltage == pytest.approx(54.0)
    assert state.charge_voltage_pack == "A"
    assert bank.sent is not None
    assert bank.sent.charge_voltage == pytest.approx(54.0)


# --- the limiter -----------------------------------------------------------------------------


def decision(ccl: float = 50.0, dcl: float = 100.0, cvl: float = 55.2, **kw: Any) -> ChargeDecision:
    values: dict[str, Any] = {
        "state": ChargeState.BULK,
        "mode": ChargeMode.AUTO,
        "charge_voltage": cvl,
        "charge_current_limit": ccl,
        "discharge_current_limit": dcl,
        "discharge_voltage": 46.4,
        "soc": 50.0,
        "limited_by_charge": Reason.BULK_LIMIT,
        "limited_by_discharge": Reason.DISCHARGE_LIMIT,
        "alarms": frozenset(),
        "warnings": frozenset(),
        "events": (),
        "stale": False,
        "absorption_elapsed": 0.0,
    }
    values.update(kw)
    return ChargeDecision(**values)


def pack(name: str, t: float = 0.0, **kw: Any) -> PackState:
    values: dict[str, Any] = {
        "pack_id": name,
        "name": name,
        "snapshot": reading(t),
        "decision": decision(),
        "nominal_capacity": 100.0,
    }
    values.update(kw)
    return PackState(**values)


SI = ChargeSettings()  # 16s LiFePO4: float 54.0 V, CVL falls ramp at 5 mV/s


def test_limiter_passes_a_looser_bank_and_steps_a_fall_to_zero() -> None:
    limiter = BankLimiter()
    loose = combine([pack("a"), pack("b")], DEFAULT, 0.0)
    si = decision(ccl=40.0, dcl=60.0, cvl=54.0)
    assert limiter.apply(si, loose, 0.0, SI) is si
    stale = combine([pack("a"), pack("b", snapshot=None)], DEFAULT, 1.0)
    stepped = limiter.apply(si, stale, 1.0, SI)
    assert stepped.charge_current_limit == STEP_CURRENT
    assert stepped.limited_by_charge is Reason.STALE_SOURCE
    assert limiter.apply(si, stale, 2.0, SI).charge_current_limit == STEP_CURRENT
    assert limiter.apply(si, stale, 2.3, SI).charge_current_limit == 0.0
    assert limiter.apply(si, stale, 9.0, SI).charge_current_limit == 0.0
    # A fresh start at 0 A (nothing sent above 1 A) goes straight to 0.
    assert BankLimiter().apply(si, stale, 0.0, SI).charge_current_limit == 0.0
    # Recovery: the cap lifts at once; the controller's own ramp shapes the rise.
    assert limiter.apply(si, loose, 10.0, SI).charge_current_limit == 40.0


def test_limiter_caps_discharge_and_charge_voltage() -> None:
    low = pack("a", decision=decision(dcl=20.0, cvl=54.5, limited_by_discharge=Reason.SOC))
    state = combine([low, pack("b")], DEFAULT, 0.0)
    capped = BankLimiter().apply(decision(dcl=300.0), state, 0.0, SI)
    assert capped.discharge_current_limit == pytest.approx(20.0 / 0.55)
    assert capped.limited_by_discharge is Reason.SOC
    assert capped.charge_voltage == 54.5  # the first decision: nothing sent before, no ramp
    # A decision that is not a number is replaced by the bank's cap, never kept.
    garbage = BankLimiter().apply(decision(ccl=math.nan, dcl=math.inf), state, 0.0, SI)
    assert garbage.charge_current_limit == state.charge.value
    assert garbage.discharge_current_limit == state.discharge.value
    # A bank reason the controller does not know becomes a BMS protection.
    odd = replace(state, charge=replace(state.charge, value=0.0, reason="something"))
    assert BankLimiter().apply(decision(), odd, 0.0, SI).limited_by_charge is Reason.BMS_PROTECTION


def test_limiter_charge_voltage_ramps_floors_and_follows_a_guard_at_once() -> None:
    limiter = BankLimiter()
    high = combine([pack("a"), pack("b")], DEFAULT, 0.0)
    assert limiter.apply(decision(), high, 0.0, SI).charge_voltage == 55.2
    # Pack b goes to float (its own controller ramps; a joining pack could jump): the cap ramps.
    floating = combine([pack("a"), pack("b", decision=decision(cvl=54.0))], DEFAULT, 1.0)
    assert floating.charge_voltage_pack == "b"
    assert not floating.charge_voltage_guard
    ramped = [limiter.apply(decision(), floating, float(t), SI).charge_voltage for t in (1, 2, 3)]
    assert ramped == pytest.approx([55.195, 55.19, 55.185])
    # A long gap counts as at most the stale time (as in the controller): 30 s at 5 mV/s.
    assert limiter.apply(decision(), floating, 400.0, SI).charge_voltage == pytest.approx(55.035)
    for t in range(401, 650):
        sent = limiter.apply(decision(), floating, float(t), SI)
    assert sent.charge_voltage == 54.0
    # A pack's cell-voltage guard pulls the bank down at once, but never below float.
    limiter = BankLimiter()
    limiter.apply(decision(), high, 0.0, SI)
    guard = decision(cvl=54.6, cell_voltage_guard=True)
    guarded = combine([pack("a"), pack("b", decision=guard)], DEFAULT, 1.0)
    assert guarded.charge_voltage_guard
    assert limiter.apply(decision(), guarded, 1.0, SI).charge_voltage == 54.6
    wrong = decision(cvl=13.8, cell_voltage_guard=True)  # a 4-cell pack's voltage
    odd = combine([pack("a"), pack("b", decision=wrong)], DEFAULT, 2.0)
    assert limiter.apply(decision(), odd, 2.0, SI).charge_voltage == SI.float_voltage
    # A controller voltage that is not a number is sent as the float voltage.
    assert limiter.apply(decision(cvl=math.nan), high, 3.0, SI).charge_voltage == 54.0
    # A clock that is not a number: the ramp holds, the 1 A step does not start.
    assert limiter.apply(decision(), floating, math.nan, SI).charge_voltage == 54.0
    # No pack asks for anything: the controller's own voltage goes out.
    assert limiter.apply(decision(), combine([], DEFAULT, 4.0), 4.0, SI).charge_voltage == 55.2
    stale = combine([pack("a", snapshot=None)], DEFAULT, 4.0)
    assert limiter.apply(decision(), stale, math.nan, SI).charge_current_limit == 0.0


# --- construction, conversion, garbage -------------------------------------------------------


def test_pack_from_a_bms_reading() -> None:
    bms = BmsReading(
        soc=55.0,
        voltage=53.1,
        current=-12.5,
        remaining_capacity=154.0,
        nominal_capacity=280.0,
        cell_voltages=(3.31, 3.32),
        temperatures=(18.0, 21.0),
        mosfet_temperature=30.0,
        charge_fet=False,
        discharge_fet=True,
        protections=frozenset({CELL_OVERVOLTAGE}),
    )
    state = PackState.from_reading("jbd", "JBD", bms, timestamp=5.0, decision=decision())
    assert state.snapshot == snapshot_of_reading(bms, 5.0)
    assert state.snapshot is not None
    assert state.snapshot.temperature == 21.0
    assert state.snapshot.alarms == {CELL_OVERVOLTAGE}
    assert (state.nominal_capacity, state.remaining_capacity) == (280.0, 154.0)
    assert (state.charge_fet, state.discharge_fet) == (False, True)
    assert snapshot_of_reading(BmsReading(), 1.0).temperature is None


def test_settings_are_validated() -> None:
    assert BankSettings.bounds("stale_after") == (5.0, 600.0)
    for bad in (
        {"cells": 0},
        {"cells": 16.0},
        {"stale_after": math.nan},
        {"voltage_disagreement": True},
        {"share_tolerance": -0.1},
        {"allow_charging_with_stale_pack": 1},
        {"shunt": "yes"},
    ):
        with pytest.raises(UnsafeSetting):
            BankSettings(**bad)


def test_no_packs_and_unusable_packs() -> None:
    empty = combine([], DEFAULT, 0.0)
    assert (empty.charge.value, empty.charge.reason) == (0.0, BankReason.NO_PACK)
    assert empty.discharge.value == 0.0
    assert empty.soc is None
    assert empty.voltage is None
    assert empty.current is None
    assert empty.charge.limited_by == BankReason.NO_PACK
    assert math.isnan(empty.snapshot.timestamp)
    assert (empty.packs_online, empty.packs_total) == (0, 0)
    packs = [
        pack("off", available=False),
        pack("never", snapshot=None),
        pack("future", snapshot=reading(50.0)),
        pack("frozen", decision=decision(stale=True)),
        pack("nan", decision=decision(ccl=math.nan)),
        pack("none", decision=None),
        pack("off"),  # the same id again counts once
    ]
    state = combine(packs, BankSettings(allow_charging_with_stale_pack=True), 10.0)
    assert [p.status for p in state.packs] == [
        PackStatus.UNAVAILABLE,
        PackStatus.NO_DATA,
        PackStatus.STALE,
        PackStatus.STALE,
        PackStatus.INVALID,
        PackStatus.INVALID,
    ]
    assert state.charge.value == state.discharge.value == 0.0
    assert state.charge.reason == BankReason.NO_PACK
    # Nobody online: the bank's snapshot is as old as the newest reading (stale for the SI).
    assert state.snapshot.timestamp == 0.0  # the reading from the future does not count
    garbage_clock = combine([pack("a")], DEFAULT, math.nan)
    assert garbage_clock.stale_packs == ("a",)
    assert garbage_clock.charge.value == 0.0


def test_garbage_pack_fields_are_unknown() -> None:
    odd = pack(
        "odd",
        nominal_capacity=math.nan,
        remaining_capacity=-5.0,
        charge_fet="on",
        internal_resistance=-1.0,
        snapshot=reading(0.0, soc=math.inf, capacity_ah=math.nan),
    )
    state = combine([odd, pack("b")], DEFAULT, 0.0)
    assert state.packs[0].soc is None
    assert state.charge.shares["odd"] == 1.0  # unknown capacity: it may take it all
    assert state.charge.value == pytest.approx(50.0)
    assert state.nominal_capacity is None
    assert state.remaining_capacity is None
    # Capacity from the snapshot, SOC from remaining/nominal when the BMS gives no SOC.
    derived = pack(
        "d",
        nominal_capacity=None,
        remaining_capacity=25.0,
        snapshot=reading(0.0, soc=None, capacity_ah=50.0),
    )
    assert combine([derived], DEFAULT, 0.0).soc == pytest.approx(50.0)
    # A remaining capacity above the nominal one is held at the nominal one.
    full = pack("f", remaining_capacity=150.0)
    assert combine([full], DEFAULT, 0.0).remaining_capacity == 100.0
    # Neither a remaining capacity nor a SOC: the bank's remaining capacity is unknown.
    blind = pack("g", snapshot=reading(0.0, soc=None))
    unknown = combine([full, blind], DEFAULT, 0.0)
    assert unknown.remaining_capacity is None
    assert unknown.nominal_capacity == 200.0


def test_shares_follow_conductance_when_every_pack_has_one() -> None:
    a = pack("a", internal_resistance=0.010)
    b = pack("b", internal_resistance=0.030)
    state = combine([a, b], DEFAULT, 0.0)
    assert state.charge.shares["a"] == pytest.approx(0.75 * TOLERANCE)
    assert state.charge.value == pytest.approx(50.0 / (0.75 * TOLERANCE))
    mixed = combine([a, pack("b")], DEFAULT, 0.0)
    assert mixed.charge.shares["a"] == pytest.approx(0.5 * TOLERANCE)


def test_current_and_power_unknown_when_a_pack_has_no_current() -> None:
    state = combine([pack("a"), pack("b", snapshot=reading(0.0, current=None))], DEFAULT, 0.0)
    assert state.current is None
    assert state.power is None
    assert state.current_source is None
    no_voltage = pack("c", snapshot=reading(0.0, voltage=None, cells=(3.3,) * 15, current=5.0))
    mixed = combine([pack("a"), no_voltage], DEFAULT, 0.0)
    assert mixed.current == 5.0
    assert mixed.power == pytest.approx(5.0 * 16 * CELL)  # the bank voltage times the sum


# --- properties over random pack states ------------------------------------------------------

NOW = 100.0
limits = st.floats(min_value=0.0, max_value=400.0)
garbage = st.one_of(
    st.just(math.nan), st.just(math.inf), st.just(-math.inf), st.just(-1.0), st.none()
)


@st.composite
def pack_states(draw: st.DrawFn, index: int, *, dirty: bool = False) -> PackState:
    def maybe(strategy: st.SearchStrategy[Any]) -> Any:
        return draw(st.one_of(strategy, garbage)) if dirty else draw(strategy)

    cells = tuple(draw(st.lists(st.floats(2.6, 3.7), min_size=16, max_size=16)))
    snapshot = BatterySnapshot(
        timestamp=NOW - draw(st.floats(0.0, 45.0)),
        soc=maybe(st.one_of(st.none(), st.floats(0.0, 100.0))),
        voltage=maybe(st.floats(45.0, 58.0)),
        current=maybe(st.floats(-200.0, 200.0)),
        temperature=maybe(st.floats(-10.0, 60.0)),
        cell_voltages=cells,
    )
    return PackState(
        pack_id=f"p{index}",
        name=f"Pack {index}",
        snapshot=snapshot,
        decision=decision(
            ccl=maybe(limits),
            dcl=maybe(limits),
            cvl=maybe(st.floats(50.0, 56.0)),
            stale=draw(st.booleans()) and draw(st.booleans()),
        ),
        nominal_capacity=maybe(st.one_of(st.none(), st.floats(5.0, 1000.0))),
        remaining_capacity=maybe(st.floats(0.0, 1000.0)),
        charge_fet=draw(st.sampled_from((True, False, None))),
        discharge_fet=draw(st.sampled_from((True, False, None))),
        available=draw(st.booleans()) or draw(st.booleans()),
    )


@st.composite
def banks(draw: st.DrawFn, *, dirty: bool = False) -> list[PackState]:
    count = draw(st.integers(1, 8))
    return [draw(pack_states(i, dirty=dirty)) for i in range(count)]


bank_settings = st.builds(
    BankSettings,
    allow_charging_with_stale_pack=st.booleans(),
    share_tolerance=st.floats(0.0, 1.0),
)


def capacity_shares(state: BankState, packs: Sequence[PackState], *, charge: bool) -> None:
    """The bank limit times a pack's capacity share never exceeds that pack's own limit."""
    limit = state.charge if charge else state.discharge
    online = {p.pack_id for p in state.packs if p.status is PackStatus.ONLINE}
    taking = [
        p
        for p in packs
        if p.pack_id in online and (p.charge_fet if charge else p.discharge_fet) is not False
    ]
    known = [p.nominal_capacity for p in taking if p.nominal_capacity is not None]
    total = math.fsum(c for c in known if math.isfinite(c) and c > 0)
    for p in taking:
        assert p.decision is not None
        own = p.decision.charge_current_limit if charge else p.decision.discharge_current_limit
        capacity = p.nominal_capacity
        if capacity is None or not math.isfinite(capacity) or capacity <= 0:
            assert limit.value <= own + 1e-9  # unknown share: it may take it all
        else:
            assert limit.value * capacity / total <= own + 1e-9


@hypothesis_settings(max_examples=300, deadline=None)
@given(banks(), bank_settings)
def test_property_limits_within_every_packs_share(
    packs: list[PackState], settings: BankSettings
) -> None:
    state = combine(packs, settings, NOW)
    for charge in (True, False):
        capacity_shares(state, packs, charge=charge)
    assert 0.0 <= state.charge.value <= MAX_CURRENT
    assert 0.0 <= state.discharge.value <= MAX_CURRENT


@hypothesis_settings(max_examples=300, deadline=None)
@given(banks(), bank_settings)
def test_property_soc_within_the_packs_range(
    packs: list[PackState], settings: BankSettings
) -> None:
    state = combine(packs, settings, NOW)
    socs = [p.soc for p in state.packs if p.status is PackStatus.ONLINE and p.soc is not None]
    if not socs:
        assert state.soc is None
    else:
        assert state.soc is not None
        assert min(socs) <= state.soc <= max(socs)


@hypothesis_settings(max_examples=300, deadline=None)
@given(banks(), st.data())
def test_property_extreme_cells_name_the_first_pack_and_cell_that_hold_them(
    packs: list[PackState], data: st.DataObject
) -> None:
    # Some packs get a few unreadable cells (dropped, the others keep their numbers) and
    # repeated values (the first of equals is the one named).
    for index, p in enumerate(packs):
        assert p.snapshot is not None
        cells = list(p.snapshot.cell_voltages)
        for cell in data.draw(st.lists(st.integers(0, 15), max_size=3)):
            cells[cell] = data.draw(st.sampled_from((math.nan, 0.0, cells[0], cells[-1])))
        packs[index] = replace(p, snapshot=replace(p.snapshot, cell_voltages=tuple(cells)))
    state = combine(packs, DEFAULT, NOW)
    online = {v.pack_id for v in state.packs if v.status is PackStatus.ONLINE}
    located = [
        (volts, order, number, p.pack_id)
        for order, p in enumerate(packs)
        if p.pack_id in online and p.snapshot is not None
        for number, volts in enumerate(p.snapshot.cell_voltages, start=1)
        if 0.5 <= volts <= 5.0
    ]
    if not located:
        assert state.lowest_cell is None
        assert state.highest_cell is None
        return
    low = min(located, key=lambda c: (c[0], c[1], c[2]))
    high = min(located, key=lambda c: (-c[0], c[1], c[2]))
    assert state.lowest_cell is not None
    assert state.highest_cell is not None
    assert (state.lowest_cell.voltage, state.lowest_cell.cell) == (low[0], low[2])
    assert state.lowest_cell.pack_id == low[3]
    assert (state.highest_cell.voltage, state.highest_cell.cell) == (high[0], high[2])
    assert state.highest_cell.pack_id == high[3]


@hypothesis_settings(max_examples=300, deadline=None)
@given(banks(dirty=True))
def test_property_a_stale_pack_means_no_charge(packs: list[PackState]) -> None:
    state = combine(packs, DEFAULT, NOW)
    if any(p.status is not PackStatus.ONLINE for p in state.packs):
        assert state.charge.value == 0.0
        assert state.stale_packs
        assert state.charge.reason == BankReason.STALE_PACK
        assert state.charge.pack_id in state.stale_packs


@hypothesis_settings(max_examples=300, deadline=None)
@given(banks(), bank_settings, st.data())
def test_property_a_fet_off_pack_never_raises_what_the_others_allow(
    packs: list[PackState], settings: BankSettings, data: st.DataObject
) -> None:
    """With pack k's FET off, the others carry the current that k's share took."""
    k = data.draw(st.integers(0, len(packs) - 1))
    charge = data.draw(st.booleans())
    on_unbounded = list(packs)
    off = list(packs)
    unbounded = decision(ccl=1e9, dcl=1e9)
    if charge:
        on_unbounded[k] = replace(packs[k], decision=unbounded, charge_fet=True)
        off[k] = replace(packs[k], charge_fet=False)
    else:
        on_unbounded[k] = replace(packs[k], decision=unbounded, discharge_fet=True)
        off[k] = replace(packs[k], discharge_fet=False)
    before = combine(on_unbounded, settings, NOW)
    after = combine(off, settings, NOW)
    limit_before = before.charge if charge else before.discharge
    limit_after = after.charge if charge else after.discharge
    assert limit_after.value <= limit_before.value + 1e-9
    if after.packs[k].status is PackStatus.ONLINE:
        assert packs[k].pack_id not in limit_after.shares


@hypothesis_settings(max_examples=300, deadline=None)
@given(banks(dirty=True), bank_settings)
def test_property_bank_cvl_at_most_every_packs(
    packs: list[PackState], settings: BankSettings
) -> None:
    state = combine(packs, settings, NOW)
    cvls = [
        p.decision.charge_voltage
        for p in packs
        if p.decision is not None
        and isinstance(p.decision.charge_voltage, float)
        and math.isfinite(p.decision.charge_voltage)
        and p.decision.charge_voltage > 0
    ]
    if cvls:
        assert state.charge_voltage is not None
        assert all(state.charge_voltage <= cvl for cvl in cvls)


@hypothesis_settings(max_examples=300, deadline=None)
@given(banks(dirty=True), bank_settings)
def test_property_garbage_never_raises_or_loosens(
    packs: list[PackState], settings: BankSettings
) -> None:
    state = combine(packs, settings, NOW)
    for limit in (state.charge, state.discharge):
        assert math.isfinite(limit.value)
        assert 0.0 <= limit.value <= MAX_CURRENT
    # A pack whose own limit is not a number counts as stale, never as "no limit".
    for view, p in zip(state.packs, packs, strict=True):
        assert p.decision is not None
        if view.status is PackStatus.ONLINE:
            assert math.isfinite(p.decision.charge_current_limit)
            assert math.isfinite(p.decision.discharge_current_limit)
    for charge in (True, False):
        online = {v.pack_id for v in state.packs if v.status is PackStatus.ONLINE}
        clean = [p for p in packs if p.pack_id in online]
        capacity_shares(state, clean, charge=charge)
    # The bank's snapshot is something a controller can take as it is.
    assert state.snapshot.sanitized(cells=16) == state.snapshot or math.isnan(
        state.snapshot.timestamp
    )
    si = ChargeController(ChargeSettings())
    si.update(state.snapshot, NOW)


def test_an_implausible_cell_keeps_the_others_numbered() -> None:
    cells = (3.30, math.nan, 3.25, *(3.30,) * 12, 0.0)
    broken = pack("x", snapshot=reading(0.0, cells=cells, voltage=52.8))
    state = combine([broken, pack("y")], DEFAULT, 0.0)
    assert state.lowest_cell == CellLocation("x", "x", 3, 3.25)
    assert not state.cells_complete  # a cell nobody can read could be the one running away
    assert state.cell_count_mismatch == ()
    assert len(state.snapshot.cell_voltages) == 2


def test_whole_numbers_count_as_numbers_and_bools_do_not() -> None:
    ints = pack("i", nominal_capacity=100, decision=decision(ccl=50, dcl=100, cvl=55))
    state = combine([ints, pack("b", nominal_capacity=True)], DEFAULT, 0.0)
    assert state.charge_voltage == 55.0
    assert state.charge.shares["b"] == 1.0  # True is not a capacity
    assert state.charge.value == pytest.approx(50.0)
