"""The charge state machine, walked through whole charge cycles with a simulated battery."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings as hyp_settings, strategies as st
import pytest

from custom_components.sma_victron_bridge.control.charge import (
    ChargeController,
    ChargeDecision,
    ChargeEvent,
    ChargeMode,
    ChargeState,
    cell_spread,
)
from custom_components.sma_victron_bridge.control.chemistry import ChargeSettings
from custom_components.sma_victron_bridge.control.limits import (
    STEP_CURRENT,
    STEP_HOLD,
    AlarmItem,
    Reason,
)
from custom_components.sma_victron_bridge.control.snapshot import BatterySnapshot

HYPOTHESIS = hyp_settings(max_examples=100, deadline=None, derandomize=True, database=None)
DEFAULTS = ChargeSettings()
# 16s LiFePO4 defaults: absorption 55.2 V (starts at 55.04 V), float 54.0 V, rebulk 52.8 V,
# DVL 46.4 V, tail 5 A for 60 s, max absorption 7200 s, rebulk delay 60 s, rebulk SOC 80 %.
ABSORPTION, FLOAT, DVL = 55.2, 54.0, 46.4
E = ChargeEvent


def reading(
    t: float, voltage: float, current: float, soc: float | None, **kw: Any
) -> BatterySnapshot:
    """A balanced 16-cell pack at ``voltage``; keywords override fields."""
    values: dict[str, Any] = {
        "soc": soc,
        "voltage": voltage,
        "current": current,
        "temperature": 25.0,
        "cell_voltages": (voltage / 16,) * 16,
    }
    values.update(kw)
    return BatterySnapshot(timestamp=t, **values)


class Bench:
    """A controller fed one fresh reading per step, with the time kept here."""

    def __init__(self, settings: ChargeSettings = DEFAULTS, **kw: Any) -> None:
        self.controller = ChargeController(settings, **kw)
        self.t = 0.0
        self.voltage, self.current = 52.0, 40.0
        self.soc: float | None = 60.0
        self.extra: dict[str, Any] = {}

    def step(self, seconds: float = 1.0, **change: Any) -> ChargeDecision:
        """Advance ``seconds``, apply ``change`` (voltage/current/soc/…) and update once."""
        self.t += seconds
        self.voltage = change.pop("voltage", self.voltage)
        self.current = change.pop("current", self.current)
        self.soc = change.pop("soc", self.soc)
        self.extra.update(change)
        snapshot = reading(self.t, self.voltage, self.current, self.soc, **self.extra)
        return self.controller.update(snapshot, self.t)

    def hold(self, seconds: float, **change: Any) -> tuple[ChargeDecision, list[ChargeEvent]]:
        """Step once a second for ``seconds``; the last decision and every event on the way."""
        decision = self.step(1.0, **change)
        events = list(decision.events)
        for _ in range(int(seconds) - 1):
            decision = self.step(1.0)
            events.extend(decision.events)
        return decision, events

    def charge_to_float(self, source_soc: float | None = 92.0) -> ChargeDecision:
        """Bulk → absorption → tail current → float."""
        self.hold(20, voltage=53.5, current=40.0, soc=80.0)
        self.step(voltage=55.1, current=30.0)
        self.hold(100, voltage=55.2, current=20.0, soc=90.0)
        # The first reading at or below the tail current starts the 60 s.
        decision, _ = self.hold(61, current=4.0, soc=source_soc)
        assert decision.state is ChargeState.FLOAT
        return decision


def test_full_cycle_bulk_absorption_float_rebulk() -> None:
    bench = Bench()
    first = bench.step(0.0)
    assert first.state is ChargeState.BULK
    assert first.charge_voltage == pytest.approx(ABSORPTION)
    assert first.discharge_voltage == DVL
    assert first.soc == 60.0
    assert first.mode is ChargeMode.AUTO

    bulk, events = bench.hold(20, voltage=53.5, current=40.0, soc=80.0)
    assert bulk.state is ChargeState.BULK
    assert (bulk.charge_current_limit, bulk.limited_by_charge) == (50.0, Reason.BULK_LIMIT)
    assert events == []

    started = bench.step(voltage=55.1, current=30.0)  # ≥ 55.04 V
    assert started.state is ChargeState.ABSORPTION
    assert started.events == (E.ABSORPTION_STARTED,)
    assert started.charge_voltage == pytest.approx(ABSORPTION)

    absorbing, _ = bench.hold(100, voltage=55.2, current=20.0, soc=90.0)
    assert absorbing.state is ChargeState.ABSORPTION
    assert absorbing.absorption_elapsed == 100.0

    # Tail current: 4 A ≤ 5 A must hold for 60 s.
    tailing, events = bench.hold(60, current=4.0, soc=92.0)  # 0…59 s below the tail
    assert tailing.state is ChargeState.ABSORPTION
    assert events == []
    floated = bench.step()
    assert floated.state is ChargeState.FLOAT
    assert floated.events == (E.ABSORPTION_COMPLETE, E.FLOAT_STARTED, E.SOC_RESET)
    assert floated.soc == 100.0
    # The CVL starts its ramp down to float (5 mV/s), it does not jump.
    assert floated.charge_voltage == pytest.approx(ABSORPTION - 0.005)
    assert bench.controller.last_full_charge == bench.t

    # The source still says 92 %: reported 100 %, and changes follow scaled by 100/92.
    assert bench.step(voltage=53.6, current=0.0).soc == 100.0
    assert bench.step(soc=87.4, current=-20.0).soc == pytest.approx(95.0)

    # Below 52.8 V for 60 s → rebulk.
    dipping, events = bench.hold(60, voltage=52.7)  # 0…59 s below
    assert dipping.state is ChargeState.FLOAT
    rebulk = bench.step()
    assert rebulk.events == (E.REBULK, E.BULK_STARTED)
    assert rebulk.state is ChargeState.BULK
    assert rebulk.charge_voltage == pytest.approx(ABSORPTION)


def test_a_short_dip_below_rebulk_voltage_does_not_rebulk() -> None:
    bench = Bench()
    bench.charge_to_float()
    bench.hold(30, voltage=52.5)
    decision, events = bench.hold(100, voltage=53.0)
    assert decision.state is ChargeState.FLOAT
    assert events == []


def test_rebulk_on_low_soc() -> None:
    bench = Bench()
    bench.charge_to_float(source_soc=92.0)
    assert bench.step(soc=74.0, voltage=53.2).soc == pytest.approx(80.43, abs=0.01)
    low = bench.step(soc=73.0)  # 73 * 100/92 = 79.3 % < 80 %
    assert low.events == (E.REBULK, E.BULK_STARTED)


def test_soc_scaling_ends_when_the_source_is_corrected() -> None:
    bench = Bench()
    bench.charge_to_float(source_soc=92.0)
    assert bench.step(soc=100.0).soc == 100.0  # e.g. the BMS accepted a SOC write
    assert bench.step(soc=90.0).soc == 90.0
    assert bench.step(soc=0.0).soc == 0.0


def test_soc_reset_without_a_source_soc() -> None:
    bench = Bench()
    bench.soc = None  # a voltage-only source
    decision = bench.charge_to_float(source_soc=None)
    assert decision.soc == 100.0
    assert bench.step().soc == 100.0


def test_absorption_ends_after_max_time_at_voltage() -> None:
    bench = Bench(DEFAULTS.replace(max_absorption_time=600.0))
    bench.step(voltage=55.1, current=30.0)
    # Time below absorption voltage (a cloud) does not count.
    cloudy, _ = bench.hold(1000, voltage=54.5, current=10.0)
    assert cloudy.state is ChargeState.ABSORPTION
    assert cloudy.absorption_elapsed == 0.0
    at_voltage, _ = bench.hold(599, voltage=55.2, current=30.0)
    assert at_voltage.state is ChargeState.ABSORPTION
    done = bench.step()
    assert done.events == (E.ABSORPTION_TIMEOUT, E.FLOAT_STARTED, E.SOC_RESET)
    assert done.state is ChargeState.FLOAT
    assert done.soc == 100.0


def test_a_cell_hovering_just_below_the_trigger_stays_at_absorption_voltage() -> None:
    """A BMS curve that stops charging at the trigger leaves the cell relaxing just below it.

    Absorption keeps counting down to the trigger minus ``absorption_margin`` (10 mV), so the
    tail hold is not restarted by every sub-mV dip; entering absorption still needs the trigger.
    """
    settings = DEFAULTS.replace(cell_absorption_voltage=3.55)  # pack start 56.64 V: never reached
    below = (3.40,) * 15 + (3.4499,)
    bench = Bench(settings)
    assert bench.step(voltage=54.45, current=0.4, cell_voltages=below).events == ()
    at = (3.40,) * 15 + (3.45,)
    assert bench.step(cell_voltages=at).events == (E.ABSORPTION_STARTED,)
    hovering, events = bench.hold(60, current=0.0, cell_voltages=(3.40,) * 15 + (3.441,))
    assert (hovering.state, events) == (ChargeState.ABSORPTION, [])
    assert hovering.absorption_elapsed == 60.0
    assert bench.step().events == (E.ABSORPTION_COMPLETE, E.FLOAT_STARTED, E.SOC_RESET)
    # 10 mV or more below the trigger is off voltage: neither clock runs.
    bench = Bench(settings)
    bench.step(voltage=54.45, current=0.4, cell_voltages=at)
    off, events = bench.hold(300, current=0.0, cell_voltages=(3.40,) * 15 + (3.439,))
    assert (off.state, off.absorption_elapsed, events) == (ChargeState.ABSORPTION, 0.0, [])


def test_tail_current_only_counts_at_absorption_voltage() -> None:
    bench = Bench()
    bench.step(voltage=55.1, current=30.0)
    decision, _ = bench.hold(300, voltage=54.5, current=0.0)  # no charger at all
    assert decision.state is ChargeState.ABSORPTION


def test_absorption_falls_back_to_bulk_when_the_voltage_collapses() -> None:
    bench = Bench()
    bench.step(voltage=55.1, current=30.0)
    bench.hold(50, voltage=55.2)
    decision, events = bench.hold(61, voltage=52.0, current=-30.0)
    assert events == [E.REBULK, E.BULK_STARTED]
    assert decision.absorption_elapsed == 0.0


def test_highest_cell_starts_absorption() -> None:
    bench = Bench()
    cells = (3.30,) * 15 + (3.45,)
    decision = bench.step(voltage=52.95, cell_voltages=cells)
    assert decision.events == (E.ABSORPTION_STARTED,)


def test_forced_float_and_forced_bulk_hold_their_state() -> None:
    bench = Bench()
    bench.step()
    bench.controller.set_mode(ChargeMode.FORCE_FLOAT)
    forced = bench.step()
    assert (forced.state, forced.mode) == (ChargeState.FLOAT, ChargeMode.FORCE_FLOAT)
    assert bench.controller.mode is ChargeMode.FORCE_FLOAT
    assert forced.events == (E.FLOAT_STARTED,)
    assert FLOAT < forced.charge_voltage < ABSORPTION  # ramping down
    bench.controller.set_mode(ChargeMode.FORCE_BULK)
    assert bench.step().events == (E.BULK_STARTED,)
    # At absorption voltage with no current for ages: still bulk, no absorption, no float.
    held, events = bench.hold(8000, voltage=55.2, current=0.0)
    assert held.state is ChargeState.BULK
    assert events == []
    bench.controller.set_mode(ChargeMode.AUTO)
    assert bench.step().events == (E.ABSORPTION_STARTED,)


def test_charge_off_and_back() -> None:
    bench = Bench()
    on, _ = bench.hold(30)
    assert on.charge_current_limit == 50.0
    bench.controller.set_mode(ChargeMode.CHARGE_OFF)
    off = bench.step()
    assert (off.state, off.events) == (ChargeState.OFF, (E.CHARGE_OFF,))
    assert (off.charge_current_limit, off.limited_by_charge) == (STEP_CURRENT, Reason.FORCED_OFF)
    assert FLOAT < off.charge_voltage < ABSORPTION  # ramping down to float
    assert off.discharge_current_limit == 100.0
    # The 1 A step is held for STEP_HOLD so at least one frame carries it, then 0 A.
    assert bench.step(STEP_HOLD - 0.1).charge_current_limit == STEP_CURRENT
    assert bench.step(0.1).charge_current_limit == 0.0
    bench.controller.set_mode(ChargeMode.AUTO)
    back = bench.step()
    assert (back.state, back.events) == (ChargeState.BULK, (E.BULK_STARTED,))
    assert (back.charge_current_limit, back.limited_by_charge) == (0.0, Reason.RECOVERY_HOLD)
    resumed, _ = bench.hold(31)
    assert resumed.limited_by_charge is Reason.RECOVERY_RAMP


def test_restored_off_state_resumes_in_bulk() -> None:
    bench = Bench(state=ChargeState.OFF)
    assert bench.step().events == (E.BULK_STARTED,)


def test_requested_full_charge() -> None:
    bench = Bench()
    bench.charge_to_float()
    bench.step(voltage=53.6, current=0.0)
    bench.controller.request_full_charge()
    decision = bench.step()
    assert decision.events == (E.FULL_CHARGE_REQUESTED, E.BULK_STARTED)
    # Ignored in a forced mode, and not remembered for later.
    bench.controller.set_mode(ChargeMode.FORCE_FLOAT)
    bench.step()
    bench.controller.request_full_charge()
    assert bench.step().events == ()
    bench.controller.set_mode(ChargeMode.AUTO)
    assert bench.step().events == ()


def test_periodic_full_charge() -> None:
    bench = Bench(DEFAULTS.replace(full_charge_interval_days=1.0))
    bench.charge_to_float()
    done = bench.controller.last_full_charge
    assert done is not None
    bench.step(86399.0 - (bench.t - done), voltage=53.6, current=0.0)
    assert bench.controller.state is ChargeState.FLOAT
    due = bench.step(1.0)
    assert due.events == (E.PERIODIC_FULL_CHARGE, E.BULK_STARTED)


def test_periodic_full_charge_counts_from_start_without_a_completed_absorption() -> None:
    settings = DEFAULTS.replace(full_charge_interval_days=2.0)
    bench = Bench(settings, state=ChargeState.FLOAT)
    first = bench.step(0.0, voltage=53.6, current=0.0, soc=95.0)
    assert first.charge_voltage == pytest.approx(FLOAT)
    assert bench.step(2 * 86400.0 - 1).state is ChargeState.FLOAT
    assert bench.step(1.0).events == (E.PERIODIC_FULL_CHARGE, E.BULK_STARTED)
    restored = Bench(settings, state=ChargeState.FLOAT, last_full_charge=-2 * 86400.0)
    assert restored.step(0.0, voltage=53.6, soc=95.0).state is ChargeState.BULK


def test_stale_source_freezes_the_machine_and_holds_soc() -> None:
    controller = ChargeController(DEFAULTS)
    t = 0.0
    for t in range(101):
        controller.update(reading(t, 53.0, 20.0, 70.0), t)
    # The last reading says absorption voltage, but it never gets fresh enough to act on.
    old = reading(100.5, 55.2, 0.0, 99.0, cell_voltages=())
    at_limit = controller.update(old, 130.0)
    assert not at_limit.stale
    assert at_limit.state is ChargeState.ABSORPTION  # fresh at 29.5 s old
    first = controller.update(old, 131.0)
    assert first.events == (E.SOURCE_STALE,)
    assert first.stale
    assert (first.charge_current_limit, first.limited_by_charge) == (STEP_CURRENT, "stale_source")
    assert first.soc == 99.0
    assert AlarmItem.BMS_INTERNAL in first.warnings
    frozen = controller.update(None, 5000.0)
    assert frozen.state is ChargeState.ABSORPTION
    assert frozen.charge_current_limit == 0.0
    assert frozen.soc == 99.0
    assert frozen.absorption_elapsed == 0.0
    back = controller.update(reading(5001.0, 53.0, 10.0, 98.0), 5001.0)
    assert back.events == (E.SOURCE_FRESH,)
    assert back.soc == 98.0
    assert back.limited_by_charge is Reason.RECOVERY_HOLD


def test_no_data_yet() -> None:
    controller = ChargeController(DEFAULTS)
    decision = controller.update(None, 0.0)
    assert decision.soc is None
    assert (decision.charge_current_limit, decision.discharge_current_limit) == (0.0, 0.0)
    assert decision.limited_by_charge is Reason.NO_DATA
    assert decision.state is ChargeState.BULK
    assert decision.events == ()


def test_first_reading_already_stale_still_reports_its_soc() -> None:
    controller = ChargeController(DEFAULTS)
    decision = controller.update(reading(0.0, 53.0, 0.0, 97.0), 100.0)
    assert decision.stale
    assert decision.soc == 97.0
    no_soc = ChargeController(DEFAULTS).update(reading(0.0, 53.0, 0.0, None), 100.0)
    assert no_soc.soc is None


def test_missing_soc_in_a_fresh_reading_keeps_the_last() -> None:
    bench = Bench()
    bench.step(soc=64.0)
    assert bench.step(soc=None).soc == 64.0


def test_new_settings_apply_at_the_next_update() -> None:
    bench = Bench()
    bench.step()
    bench.controller.settings = DEFAULTS.replace(cell_absorption_voltage=3.50, bulk_current=30.0)
    assert bench.controller.settings.bulk_current == 30.0
    assert bench.controller.policy.settings.bulk_current == 30.0
    assert bench.step().charge_voltage == pytest.approx(56.0)


# --- cell balance: absorption ends when balanced, float rebulks on spread -----------------


def cells_spread(low: float, high: float) -> tuple[float, ...]:
    """Sixteen cells: the first at ``low``, the last at ``high``, the rest half-way."""
    return (low, *((low + high) / 2,) * 14, high)


BALANCED = cells_spread(3.446, 3.454)  # 8 mV ≤ 10 mV, sum 55.2 V
UNBALANCED = cells_spread(3.440, 3.460)  # 20 mV


def absorbing(settings: ChargeSettings = DEFAULTS, cells: tuple[float, ...] = BALANCED) -> Bench:
    """A bench that has just entered absorption at 55.2 V with ``cells``."""
    bench = Bench(settings)
    started = bench.step(voltage=55.2, current=30.0, cell_voltages=cells)
    assert started.events == (E.ABSORPTION_STARTED,)
    return bench


def test_cell_spread_needs_every_cell() -> None:
    def spread(cells: tuple[float, ...], count: int = 16) -> float | None:
        return cell_spread(BatterySnapshot(timestamp=0.0, cell_voltages=cells), count)

    assert spread(BALANCED) == pytest.approx(0.008)
    assert spread(cells_spread(3.30, 3.38)) == pytest.approx(0.08)
    assert spread(BALANCED[:15]) is None  # a cell missing
    assert spread(BALANCED, 15) is None  # more cells than the pack has
    assert spread(()) is None
    assert spread((*BALANCED[:15], 0.0)) is None  # a cell the BMS could not read
    assert spread((*BALANCED[:15], math.nan)) is None
    assert spread((*BALANCED[:15], math.inf)) is None
    assert spread((3.3,), 1) == 0.0


def test_absorption_ends_when_the_cells_stay_balanced() -> None:
    # 30 A never reaches the 5 A tail: only the balance rule can end absorption before 7200 s.
    bench = absorbing()
    waiting, events = bench.hold(900)  # balanced since the first absorption update: 0…899 s
    assert waiting.state is ChargeState.ABSORPTION
    assert events == []
    done = bench.step()
    assert done.events == (E.ABSORPTION_BALANCED, E.FLOAT_STARTED, E.SOC_RESET)
    assert done.state is ChargeState.FLOAT
    assert done.soc == 100.0
    assert FLOAT < done.charge_voltage < ABSORPTION  # ramping down to float
    assert bench.controller.last_full_charge == bench.t
    assert ChargeEvent.ABSORPTION_BALANCED.value == "absorption_balanced"


def test_a_spread_above_the_limit_never_ends_absorption_by_balance() -> None:
    bench = absorbing(DEFAULTS.replace(max_absorption_time=1200.0), UNBALANCED)
    waiting, events = bench.hold(1199)
    assert (waiting.state, events) == (ChargeState.ABSORPTION, [])
    assert bench.step().events == (E.ABSORPTION_TIMEOUT, E.FLOAT_STARTED, E.SOC_RESET)


def test_the_balance_hold_restarts_after_a_spread_or_voltage_excursion() -> None:
    bench = absorbing(DEFAULTS.replace(spread_hold=300.0))
    bench.hold(250)
    bench.step(cell_voltages=UNBALANCED)  # one reading out of balance
    bench.step(cell_voltages=BALANCED)
    waiting, _ = bench.hold(250)
    # Below absorption voltage (a cloud), balanced cells do not count either.
    bench.step(voltage=54.4, cell_voltages=cells_spread(3.396, 3.404))
    bench.step(voltage=55.2, cell_voltages=BALANCED)
    waiting, events = bench.hold(299)
    assert (waiting.state, events) == (ChargeState.ABSORPTION, [])
    assert bench.step().events[0] is E.ABSORPTION_BALANCED


def test_balance_is_not_judged_without_every_cell() -> None:
    settings = DEFAULTS.replace(max_absorption_time=1200.0, spread_hold=60.0)
    bench = absorbing(settings, BALANCED[:15])
    _, events = bench.hold(1199)
    assert events == []
    assert bench.step().events[0] is E.ABSORPTION_TIMEOUT
    no_cells = absorbing(settings, ())
    _, events = no_cells.hold(1200)
    assert events == [E.ABSORPTION_TIMEOUT, E.FLOAT_STARTED, E.SOC_RESET]


def test_zero_spread_hold_ends_at_the_first_balanced_reading_at_voltage() -> None:
    bench = absorbing(DEFAULTS.replace(spread_hold=0.0))
    assert bench.step().events == (E.ABSORPTION_BALANCED, E.FLOAT_STARTED, E.SOC_RESET)


def test_tail_current_still_wins_over_balance() -> None:
    bench = absorbing(DEFAULTS.replace(spread_hold=60.0))
    _, events = bench.hold(61, current=2.0)
    assert events[0] is E.ABSORPTION_COMPLETE  # same update: the existing exit is reported


def test_a_stale_gap_restarts_the_balance_hold() -> None:
    bench = absorbing(DEFAULTS.replace(spread_hold=300.0))
    bench.hold(200)
    controller, t = bench.controller, bench.t
    for gap in range(1, 41):  # 40 s without data: stale after 30 s
        controller.update(None, t + gap)
    bench.t = t + 40
    # The hold restarts at the first fresh reading (t + 41): 300 s later, not before.
    back, _ = bench.hold(300)
    assert back.state is ChargeState.ABSORPTION
    assert bench.step().events[0] is E.ABSORPTION_BALANCED


def floating(settings: ChargeSettings = DEFAULTS) -> Bench:
    """A bench in float after a normal charge, resting at 53.6 V with balanced cells."""
    bench = Bench(settings)
    bench.charge_to_float()
    rest = bench.step(voltage=53.6, current=0.0, cell_voltages=(3.35,) * 16)
    assert rest.state is ChargeState.FLOAT
    return bench


def test_float_rebulks_when_the_spread_stays_wide() -> None:
    bench = floating()
    # 3.38 - 3.30 is 0.0799… in binary floating point: still counts as 80 mV.
    wide = cells_spread(3.30, 3.38)
    waiting, events = bench.hold(60, cell_voltages=wide)  # 0…59 s at the limit
    assert (waiting.state, events) == (ChargeState.FLOAT, [])
    rebulk = bench.step()
    assert rebulk.events == (E.REBULK, E.BULK_STARTED)
    assert rebulk.charge_voltage == pytest.approx(ABSORPTION)


def test_a_short_spread_spike_does_not_rebulk() -> None:
    bench = floating()
    bench.hold(59, cell_voltages=cells_spread(3.28, 3.42))
    decision, events = bench.hold(300, cell_voltages=cells_spread(3.32, 3.38))  # 60 mV
    assert (decision.state, events) == (ChargeState.FLOAT, [])


def test_zero_rebulk_spread_switches_the_rule_off() -> None:
    bench = floating(DEFAULTS.replace(rebulk_spread=0.0))
    decision, events = bench.hold(3600, cell_voltages=cells_spread(3.10, 3.55))
    assert (decision.state, events) == (ChargeState.FLOAT, [])


def test_absorption_after_a_spread_rebulk_waits_for_balance() -> None:
    bench = floating(DEFAULTS.replace(spread_hold=300.0))
    bench.hold(61, cell_voltages=cells_spread(3.30, 3.40))
    assert bench.controller.state is ChargeState.BULK
    started = bench.step(voltage=55.2, current=3.0, cell_voltages=UNBALANCED)
    assert started.events == (E.ABSORPTION_STARTED,)
    # 3 A is below the 5 A tail, but the pack is not balanced yet: keep absorbing.
    balancing, events = bench.hold(600)
    assert (balancing.state, events) == (ChargeState.ABSORPTION, [])
    balancing, events = bench.hold(300, cell_voltages=BALANCED)
    assert (balancing.state, events) == (ChargeState.ABSORPTION, [])
    done = bench.step()
    assert done.events == (E.ABSORPTION_BALANCED, E.FLOAT_STARTED, E.SOC_RESET)
    # The next ordinary charge ends by tail current again.
    bench.hold(61, voltage=52.5, current=-10.0)
    assert bench.controller.state is ChargeState.BULK
    bench.step(voltage=55.2, current=3.0, cell_voltages=UNBALANCED)
    _, events = bench.hold(61)
    assert events[0] is E.ABSORPTION_COMPLETE


def test_absorption_after_a_spread_rebulk_still_ends_by_time() -> None:
    bench = floating(DEFAULTS.replace(max_absorption_time=900.0))
    bench.hold(61, cell_voltages=cells_spread(3.30, 3.40))
    bench.step(voltage=55.2, current=1.0, cell_voltages=UNBALANCED)
    _, events = bench.hold(900)
    assert events == [E.ABSORPTION_TIMEOUT, E.FLOAT_STARTED, E.SOC_RESET]


def test_a_forced_mode_restarts_the_spread_hold() -> None:
    bench = floating()
    wide = cells_spread(3.30, 3.40)
    bench.hold(50, cell_voltages=wide)
    bench.controller.set_mode(ChargeMode.FORCE_FLOAT)
    bench.hold(100)
    bench.controller.set_mode(ChargeMode.AUTO)
    waiting, events = bench.hold(60)
    assert (waiting.state, events) == (ChargeState.FLOAT, [])
    assert bench.step().events == (E.REBULK, E.BULK_STARTED)


# --- properties (DESIGN.md invariants 2, 3 and 5) -----------------------------------------


@st.composite
def lifepo4_16s(draw: st.DrawFn) -> ChargeSettings:
    """Any valid LiFePO4 16-cell configuration, drawn inside its bounds."""
    cutoff = draw(st.floats(3.45, 3.65))
    absorption = draw(st.floats(3.40, min(3.60, cutoff)))
    float_v = draw(st.floats(3.35, min(3.45, absorption)))
    rebulk = draw(st.floats(3.20, min(3.40, float_v)))
    return ChargeSettings(
        cell_charge_cutoff=cutoff,
        cell_absorption_voltage=absorption,
        cell_float_voltage=float_v,
        cell_rebulk_voltage=rebulk,
        cell_discharge_cutoff=draw(st.floats(2.60, min(3.00, rebulk))),
        cell_absorption_trigger=draw(st.floats(3.40, cutoff)),
        tail_hold=draw(st.floats(0, 120)),
        max_absorption_time=draw(st.floats(60, 600)),
        rebulk_delay=draw(st.floats(0, 120)),
        bulk_current=draw(st.floats(0, 100)),
    )


steps = st.lists(
    st.tuples(
        st.floats(0.0, 90.0),  # seconds since the previous update
        st.one_of(st.none(), st.floats(40.0, 60.0)),  # None: no new reading
        st.floats(-100.0, 100.0),
        st.floats(0.0, 100.0),
        st.sampled_from([None, *ChargeMode]),  # a mode change before the update
    ),
    min_size=1,
    max_size=60,
)


@HYPOTHESIS
@given(settings=lifepo4_16s(), sequence=steps)
def test_decision_invariants(
    settings: ChargeSettings,
    sequence: list[tuple[float, float | None, float, float, ChargeMode | None]],
) -> None:
    controller = ChargeController(settings)
    t = 0.0
    previous: ChargeDecision | None = None
    stale_since: float | None = None
    for dt, voltage, current, soc, mode in sequence:
        t += dt
        if mode is not None:
            controller.set_mode(mode)
        snapshot = None if voltage is None else reading(t, voltage, current, soc)
        decision = controller.update(snapshot, t)
        assert 41.0 <= decision.charge_voltage <= 63.0
        assert decision.charge_voltage <= settings.max_voltage
        assert 41.0 <= decision.discharge_voltage <= 48.0 + 1e-9
        assert 0.0 <= decision.charge_current_limit <= settings.bulk_current
        assert 0.0 <= decision.discharge_current_limit <= settings.max_discharge_current
        assert decision.soc is None or 0.0 <= decision.soc <= 100.0
        if decision.state is ChargeState.OFF:
            assert decision.charge_current_limit <= STEP_CURRENT
        if decision.stale and previous is not None:
            assert decision.soc == previous.soc
            assert decision.charge_current_limit <= STEP_CURRENT
            if stale_since is None:
                stale_since = t
            elif t - stale_since >= STEP_HOLD:
                assert decision.charge_current_limit == 0.0
        if not decision.stale:
            stale_since = None
        previous = decision
