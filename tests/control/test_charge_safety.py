"""The charge controller's safety review items: garbage never raises, missing protections are
shown and handled conservatively, the CVL guard and ramp, the current sign check, and the state
that survives restarts."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings as hyp_settings, strategies as st
import pytest

from custom_components.sma_victron_bridge.control.charge import (
    SIGN_CHECK_HOLD,
    ChargeController,
    ChargeDecision,
    ChargeEvent,
    ChargeMode,
    ChargeState,
    MissingData,
)
from custom_components.sma_victron_bridge.control.chemistry import (
    ChargeSettings,
    allowed_cell_counts,
)
from custom_components.sma_victron_bridge.control.limits import (
    STEP_CURRENT,
    STEP_HOLD,
    AlarmItem,
    Reason,
)
from custom_components.sma_victron_bridge.control.snapshot import BatterySnapshot

HYPOTHESIS = hyp_settings(max_examples=200, deadline=None, derandomize=True, database=None)
DEFAULTS = ChargeSettings()
# 16s LiFePO4: absorption 55.2 V, without cells 54.4 V, float 54.0 V, trigger 3.45 V/cell.
ABSORPTION, NO_CELLS, FLOAT = 55.2, 54.4, 54.0
E = ChargeEvent
M = MissingData
EVERYTHING_BUT_CELLS = {"soc", "voltage", "current", "temperature"}


class Bench:
    """A controller fed one reading per step; keyword changes stick until changed again."""

    def __init__(self, settings: ChargeSettings = DEFAULTS, **kw: Any) -> None:
        self.controller = ChargeController(settings, **kw)
        self.t = 0.0
        self.values: dict[str, Any] = {
            "soc": 60.0,
            "voltage": 52.0,
            "current": 40.0,
            "temperature": 25.0,
            "cell_voltages": (3.25,) * 16,
        }

    def step(
        self, seconds: float = 1.0, *, update: dict[str, Any] | None = None, **change: Any
    ) -> ChargeDecision:
        self.t += seconds
        self.values.update(change)
        snapshot = BatterySnapshot(timestamp=self.t, **self.values)
        return self.controller.update(snapshot, self.t, **(update or {}))

    def hold(
        self, seconds: int, *, update: dict[str, Any] | None = None, **change: Any
    ) -> tuple[ChargeDecision, list[ChargeEvent]]:
        decision = self.step(update=update, **change)
        events = list(decision.events)
        for _ in range(seconds - 1):
            decision = self.step(update=update)
            events.extend(decision.events)
        return decision, events


def bmv(**kw: Any) -> Bench:
    """A battery monitor: SOC, voltage, current and temperature, but no cells."""
    bench = Bench(**kw)
    bench.values["cell_voltages"] = ()
    return bench


# --- garbage in: never an exception --------------------------------------------------------


def test_update_never_raises_on_garbage_of_any_type() -> None:
    controller = ChargeController(DEFAULTS)
    fields: dict[str, Any] = {
        "timestamp": 1.0,
        "soc": "50",
        "voltage": math.inf,
        "current": [2.0],
        "temperature": -273.15,
        "cell_voltages": (math.nan, 0.0, "3.3"),
        "alarms": None,
        "field_times": {"voltage": "now"},
    }
    odd: dict[str, Any] = {"si_current": math.nan, "grid_connected": "yes"}
    decision = controller.update(BatterySnapshot(**fields), 1.0, **odd)
    assert decision.charge_current_limit == 0.0
    assert decision.grid_connected is None
    assert controller.update(None, math.nan).charge_current_limit == 0.0


# --- missing protections -------------------------------------------------------------------


def test_a_source_without_cells_is_shown_and_charges_lower() -> None:
    bench = bmv()
    first = bench.step()
    assert first.missing == {M.CELL_VOLTAGES}
    assert first.charge_voltage == pytest.approx(NO_CELLS)  # 3.40 V/cell, not 3.45
    # Absorption starts at that lower voltage minus the margin, then the tail ends it as usual.
    started = bench.step(voltage=54.3, current=20.0)
    assert started.events == (E.ABSORPTION_STARTED,)
    done, events = bench.hold(61, voltage=54.4, current=3.0, soc=95.0)
    assert E.ABSORPTION_COMPLETE in events
    assert done.state is ChargeState.FLOAT


def test_cells_arriving_raise_the_cvl_and_leaving_ramps_it_down() -> None:
    bench = Bench()
    assert bench.step().charge_voltage == pytest.approx(ABSORPTION)
    lost = bench.step(cell_voltages=(3.25,) * 15)  # one cell missing: not complete
    assert M.CELL_VOLTAGES in lost.missing
    assert lost.charge_voltage == pytest.approx(ABSORPTION - 0.005)  # ramping down
    assert bench.step(cell_voltages=(3.25,) * 16).charge_voltage == pytest.approx(ABSORPTION)


def test_each_missing_measurement_is_named() -> None:
    bench = Bench()
    decision = bench.step(temperature=None, current=None, voltage=None, cell_voltages=())
    assert decision.missing == {M.CELL_VOLTAGES, M.TEMPERATURE, M.CURRENT, M.VOLTAGE}
    assert decision.limited_by_charge is Reason.NO_TEMPERATURE
    nothing_yet = ChargeController(DEFAULTS).update(None, 0.0)
    assert nothing_yet.missing == set(MissingData)


def test_a_fresh_snapshot_without_soc_marks_soc_missing_after_the_stale_time() -> None:
    bench = Bench()
    bench.hold(5)
    # The SOC disappears from otherwise fresh snapshots: held while it may still be current...
    held, _ = bench.hold(30, soc=None)
    assert (held.soc, held.missing, held.stale) == (60.0, frozenset(), False)
    # ... then still sent (the frames need one) but shown as missing, with a warning.
    missing = bench.step()
    assert missing.soc == 60.0
    assert missing.missing == {M.SOC}
    assert AlarmItem.BMS_INTERNAL in missing.warnings
    assert not missing.stale
    back = bench.step(soc=61.0)
    assert (back.soc, back.missing) == (61.0, frozenset())
    assert AlarmItem.BMS_INTERNAL not in back.warnings


def test_a_held_soc_does_not_rebulk() -> None:
    bench = Bench(state=ChargeState.FLOAT)
    bench.hold(5, voltage=53.5, current=0.0, soc=85.0)
    bench.hold(40, soc=None)  # SOC frozen at 85 %, voltage fine
    # A frozen SOC from the field times, below the rebulk SOC: not acted on.
    decision, events = bench.hold(10, soc=70.0, field_times={"soc": bench.t - 100.0})
    assert decision.state is ChargeState.FLOAT
    assert E.REBULK not in events
    assert M.SOC in decision.missing


def test_a_frozen_voltage_stops_charging_like_a_silent_source() -> None:
    bench = Bench()
    bench.hold(60)
    frozen_at = bench.t
    decision, events = bench.hold(31, field_times={"voltage": frozen_at})
    assert decision.stale
    assert decision.stale_fields == {"voltage"}
    assert E.SOURCE_STALE in events
    assert decision.charge_current_limit <= STEP_CURRENT
    assert bench.step(STEP_HOLD).charge_current_limit == 0.0


# --- the CVL: cell-voltage guard and ramp --------------------------------------------------


def test_a_cell_above_the_trigger_brings_the_cvl_down() -> None:
    bench = Bench()
    cells = (3.42,) * 15 + (3.47,)  # pack 54.77 V, the high cell 20 mV over the trigger
    guarded = bench.step(voltage=sum(cells), cell_voltages=cells, current=10.0)
    assert guarded.cell_voltage_guard
    # pack - 16 * (3.47 - 3.45): the fixed point holds the high cell on the trigger.
    assert guarded.charge_voltage == pytest.approx(sum(cells) - 16 * 0.02)
    # Never below float, however far the cell runs.
    runaway = (3.40,) * 15 + (3.60,)
    floor = bench.step(voltage=sum(runaway), cell_voltages=runaway)
    assert floor.charge_voltage == pytest.approx(FLOAT)


def test_the_guard_holds_until_the_cell_is_a_margin_below_the_trigger() -> None:
    bench = Bench()
    over = (3.42,) * 15 + (3.47,)
    bench.step(voltage=sum(over), cell_voltages=over)
    near = (3.42,) * 15 + (3.445,)
    holding = bench.step(voltage=sum(near), cell_voltages=near)
    assert holding.cell_voltage_guard
    assert holding.charge_voltage == pytest.approx(sum(near) + 16 * 0.005)
    below = (3.42,) * 15 + (3.435,)
    released = bench.step(voltage=sum(below), cell_voltages=below)
    assert not released.cell_voltage_guard
    assert released.charge_voltage == pytest.approx(ABSORPTION)


def test_absorption_to_float_ramps_at_the_configured_rate() -> None:
    bench = Bench(state=ChargeState.ABSORPTION)
    bench.step(voltage=55.2, current=20.0, cell_voltages=(3.449,) * 16)
    first, _ = bench.hold(61, current=2.0, soc=99.0)
    assert first.state is ChargeState.FLOAT
    previous = first.charge_voltage
    assert previous == pytest.approx(ABSORPTION - 0.005)
    for _ in range(300):
        decision = bench.step(voltage=54.2, current=0.0, cell_voltages=(3.39,) * 16)
        assert previous - 0.005 - 1e-9 <= decision.charge_voltage <= previous
        previous = decision.charge_voltage
    assert previous == pytest.approx(FLOAT)
    # A faster setting, and rises stay immediate: a rebulk goes straight back to absorption.
    bench.controller.set_mode(ChargeMode.FORCE_BULK)
    assert bench.step().charge_voltage == pytest.approx(ABSORPTION)
    bench.controller.settings = DEFAULTS.replace(cvl_ramp_rate=100.0)
    bench.controller.set_mode(ChargeMode.FORCE_FLOAT)
    assert bench.step().charge_voltage == pytest.approx(ABSORPTION - 0.1)


def test_lower_settings_take_effect_at_once() -> None:
    bench = Bench()
    assert bench.step().charge_voltage == pytest.approx(ABSORPTION)
    bench.controller.settings = DEFAULTS.replace(cell_absorption_voltage=3.42)
    assert bench.step().charge_voltage == pytest.approx(16 * 3.42)


# --- current sign check ---------------------------------------------------------------------


def test_an_inverted_source_current_is_flagged_after_the_hold() -> None:
    bench = Bench()
    si = {"si_current": 20.0}
    decision, _ = bench.hold(int(SIGN_CHECK_HOLD), current=-20.0, update=si)
    assert not decision.current_sign_mismatch  # 0…29 s
    flagged = bench.step(update=si)
    assert flagged.current_sign_mismatch
    assert AlarmItem.GENERAL in flagged.warnings
    # Small currents say nothing about the sign: the flag holds.
    assert bench.step(current=-1.0, update=si).current_sign_mismatch
    # Agreement for the hold clears it.
    agreed, _ = bench.hold(int(SIGN_CHECK_HOLD) + 1, current=20.0, update=si)
    assert not agreed.current_sign_mismatch


def test_an_inverted_source_current_does_not_end_absorption_by_the_tail() -> None:
    # Charging at 20 A, the shunt wired backwards says -20 A: far below the 5 A tail current.
    bench = Bench(state=ChargeState.ABSORPTION)
    decision, events = bench.hold(
        600,
        voltage=55.2,
        current=-20.0,
        cell_voltages=(3.45,) * 15 + (3.40,),
        update={"si_current": 20.0},
    )
    assert decision.state is ChargeState.ABSORPTION
    assert E.ABSORPTION_COMPLETE not in events
    # Without the inverter's current there is nothing to compare: the tail counts as before.
    plain = Bench(state=ChargeState.ABSORPTION)
    _, events = plain.hold(61, voltage=55.2, current=-20.0, cell_voltages=(3.45,) * 15 + (3.40,))
    assert E.ABSORPTION_COMPLETE in events


# --- off-grid under-voltage through the controller ------------------------------------------


def test_the_controller_alarms_at_the_cut_off_unless_grid_tied() -> None:
    low = (3.30,) * 15 + (2.51,)
    off_grid = Bench()
    off_grid.hold(40)
    decision, _ = off_grid.hold(10, voltage=sum(low), cell_voltages=low, current=-30.0)
    assert AlarmItem.LOW_VOLTAGE in decision.alarms
    assert decision.discharge_current_limit == 0.0
    grid = Bench()
    grid.hold(40, update={"grid_connected": True})
    decision, _ = grid.hold(
        10, voltage=sum(low), cell_voltages=low, update={"grid_connected": True}
    )
    assert decision.grid_connected is True
    assert AlarmItem.LOW_VOLTAGE not in decision.alarms
    assert AlarmItem.LOW_VOLTAGE in decision.warnings


# --- persistence -------------------------------------------------------------------------------


def test_a_restart_in_float_stays_in_float() -> None:
    bench = Bench(state=ChargeState.FLOAT)
    bench.hold(10, voltage=53.6, current=0.0, soc=97.0)
    saved = json.loads(json.dumps(bench.controller.export_state(bench.t, 1_700_000_000.0)))
    restarted = ChargeController(DEFAULTS)
    assert restarted.restore_state(saved, 5.0, 1_700_000_060.0)
    decision = restarted.update(
        BatterySnapshot(
            timestamp=5.0,
            soc=97.0,
            voltage=53.6,
            current=0.0,
            temperature=20.0,
            cell_voltages=(3.35,) * 16,
        ),
        5.0,
    )
    assert decision.state is ChargeState.FLOAT
    assert decision.events == ()
    assert decision.charge_voltage == pytest.approx(FLOAT)


def test_absorption_progress_continues_after_a_restart() -> None:
    settings = DEFAULTS.replace(max_absorption_time=3600.0)
    bench = Bench(settings, state=ChargeState.ABSORPTION)
    bench.hold(2000, voltage=55.2, current=20.0, cell_voltages=(3.45,) * 15 + (3.40,))
    saved = bench.controller.export_state(bench.t, 1_700_000_000.0)
    assert saved["absorption_elapsed"] == pytest.approx(1999.0)
    again = Bench(settings)
    assert again.controller.restore_state(saved, 0.0, 1_700_000_030.0)
    # 1999 s done, 1601 to go: the first update after the restart adds no time.
    decision, _ = again.hold(1601, voltage=55.2, current=20.0, cell_voltages=(3.45,) * 15 + (3.40,))
    assert decision.state is ChargeState.ABSORPTION
    assert decision.absorption_elapsed == pytest.approx(3599.0)
    assert again.step().events == (E.ABSORPTION_TIMEOUT, E.FLOAT_STARTED, E.SOC_RESET)


def test_the_periodic_full_charge_fires_despite_frequent_restarts() -> None:
    # A full charge every day, Home Assistant restarting every 6 hours (monotonic time starts
    # again at 0 each time): the old controller reset its reference at every start.
    settings = DEFAULTS.replace(full_charge_interval_days=1.0, rebulk_soc=0.0)
    wall = 1_700_000_000.0
    saved: dict[str, Any] | None = None
    events: list[ChargeEvent] = []
    for _restart in range(5):
        controller = ChargeController(settings, state=ChargeState.FLOAT)
        if saved is not None:
            assert controller.restore_state(saved, 0.0, wall)
        for t in range(0, 6 * 3600, 60):
            snapshot = BatterySnapshot(
                timestamp=float(t),
                soc=90.0,
                voltage=53.6,
                current=0.0,
                temperature=20.0,
                cell_voltages=(3.35,) * 16,
            )
            events.extend(controller.update(snapshot, float(t)).events)
        saved = controller.export_state(float(t), wall + t)
        wall += 6 * 3600
    assert E.PERIODIC_FULL_CHARGE in events


def test_the_soc_scale_survives_a_restart() -> None:
    bench = Bench(state=ChargeState.ABSORPTION)
    bench.step(voltage=55.2, current=20.0, cell_voltages=(3.449,) * 16, soc=90.0)
    floated, _ = bench.hold(61, current=2.0)
    assert floated.soc == 100.0
    saved = bench.controller.export_state(bench.t, 1_700_000_000.0)
    restarted = Bench(state=ChargeState.FLOAT)
    restarted.controller.restore_state(saved, 0.0, 1_700_000_010.0)
    assert restarted.step(soc=90.0, voltage=54.0, current=0.0).soc == 100.0


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        "float",
        {},
        {"version": 2, "state": "float"},
        {"version": 1, "state": "bogus"},
        {"version": 1, "state": ["float"]},
        {"version": 1, "state": "float", "absorption_elapsed": math.nan},
        {"version": 1, "state": "float", "absorption_elapsed": -1.0},
        {"version": "1", "state": "float"},
        {
            "version": 1,
            "state": "float",
            "absorption_elapsed": 0.0,
            "balancing": "no",
            "last_full_charge": None,
            "soc_scale": 1.0,
        },
        {
            "version": 1,
            "state": "float",
            "absorption_elapsed": 0.0,
            "balancing": False,
            "last_full_charge": "yesterday",
            "soc_scale": 1.0,
        },
        {
            "version": 1,
            "state": "float",
            "absorption_elapsed": 0.0,
            "balancing": False,
            "last_full_charge": None,
            "soc_scale": 0.5,
        },
    ],
)
def test_garbage_restores_the_defaults(data: Any) -> None:
    controller = ChargeController(DEFAULTS)
    assert not controller.restore_state(data, 0.0, 1_700_000_000.0)
    assert controller.state is ChargeState.BULK
    assert controller.last_full_charge is None


def test_a_last_full_charge_in_the_future_counts_as_now() -> None:
    controller = ChargeController(DEFAULTS, state=ChargeState.FLOAT)
    saved = controller.export_state(100.0, 2_000_000_000.0) | {"last_full_charge": 2_000_000_000.0}
    restored = ChargeController(DEFAULTS)
    assert restored.restore_state(saved, 7.0, 1_000_000_000.0)  # the wall clock was set back
    assert restored.last_full_charge == 7.0
    assert not restored.restore_state(saved, 7.0, math.nan)


# --- everything at once: random garbage, random settings and modes ---------------------------

# Value pools rather than float strategies: drawing from them is fast, so many whole update
# sequences fit in a few seconds, and they hit every edge (garbage, limits, plausible values).
GARBAGE = (None, math.nan, math.inf, -math.inf, -273.15, -1.0, 0.0, 1e300, -1e300, 20000.0)
SOCS = (*GARBAGE, 0.0, 15.0, 60.0, 99.9, 100.0, 100.5)
VOLTAGES = (*GARBAGE, 41.0, 46.0, 52.0, 54.0, 55.2, 57.0, 60.0)
CURRENTS = (*GARBAGE, -200.0, -20.0, -1.5, 1.5, 4.0, 20.0, 200.0)
TEMPERATURES = (*GARBAGE, -20.0, -6.0, 0.0, 0.5, 3.0, 25.0, 44.9, 45.0, 55.0, 60.0, 119.0)
CELLS = (2.4, 2.55, 2.9, 3.0, 3.3, 3.45, 3.5, 3.6, 4.0, 4.1, 4.2, 4.25)
BAD_CELLS = (math.nan, math.inf, 0.0, -3.3, 7.0, 0.4)


@st.composite
def settings_strategy(draw: st.DrawFn) -> ChargeSettings:
    chemistry = draw(st.sampled_from(["lifepo4", "nmc"]))
    cells = draw(st.sampled_from(list(allowed_cell_counts(chemistry))))
    return ChargeSettings.for_chemistry(
        chemistry,
        cells=cells,
        capacity_ah=draw(st.sampled_from([100.0, 280.0])),
        allow_charge_without_temperature=draw(st.booleans()),
        recovery_hold=draw(st.sampled_from([0.0, 0.0, 30.0])),
        ramp_rate=draw(st.sampled_from([5.0, 100.0])),
        alarm_delay=draw(st.sampled_from([0.0, 5.0])),
        stale_after=draw(st.sampled_from([5.0, 30.0])),
        cvl_ramp_rate=draw(st.sampled_from([0.5, 5.0, 1000.0])),
    )


REAL_TEMPERATURES = (-6.0, -0.5, 0.0, 0.5, 3.0, 25.0, 44.9, 50.0, 54.9, 55.0)


@st.composite
def healthy_strategy(draw: st.DrawFn, now: float, cells: int) -> BatterySnapshot:
    """A plausible fresh reading, so limits get the chance to rise before the next fault."""
    cell = draw(st.sampled_from([3.3, 3.7]))
    return BatterySnapshot(
        timestamp=now,
        soc=60.0,
        voltage=cells * cell,
        current=draw(st.sampled_from([-20.0, 0.0, 10.0])),
        temperature=draw(st.sampled_from((None, *REAL_TEMPERATURES))),
        temperatures=tuple(draw(st.lists(st.sampled_from(REAL_TEMPERATURES), max_size=3))),
        cell_voltages=(cell,) * cells,
    )


@st.composite
def snapshot_strategy(draw: st.DrawFn, now: float, cells: int) -> BatterySnapshot | None:
    """None, or a snapshot that is fresh, old, from the future or undated, full of anything."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return None
    if kind <= 4:
        return draw(healthy_strategy(now, cells))
    stamp = {7: now - draw(st.sampled_from([1.0, 29.0, 31.0, 1000.0])), 8: now + 1e6}.get(
        kind, math.nan if kind == 9 else now
    )
    count = draw(st.sampled_from([0, cells - 1, cells, cells, cells + 1]))
    voltages = [draw(st.sampled_from(CELLS))] * count
    for _ in range(draw(st.integers(0, 2)) if count else 0):
        voltages[draw(st.integers(0, count - 1))] = draw(st.sampled_from((*CELLS, *BAD_CELLS)))
    times: dict[str, float] = {}
    for name in draw(st.sets(st.sampled_from(["voltage", "temperature", "soc", "cell_voltages"]))):
        times[name] = stamp - draw(st.sampled_from([0.0, 10.0, 100.0, math.nan, -5.0]))
    return BatterySnapshot(
        timestamp=stamp,
        soc=draw(st.sampled_from(SOCS)),
        voltage=draw(st.sampled_from(VOLTAGES)),
        current=draw(st.sampled_from(CURRENTS)),
        temperature=draw(st.sampled_from(TEMPERATURES)),
        temperatures=tuple(
            t for t in draw(st.lists(st.sampled_from(TEMPERATURES), max_size=3)) if t is not None
        ),
        cell_voltages=tuple(voltages),
        mosfet_temperature=draw(st.sampled_from((*GARBAGE, 40.0, 85.0, 95.0))),
        alarms=frozenset(draw(st.sets(st.sampled_from(["cell_overvoltage", "short_circuit"])))),
        field_times=times,
    )


def _frozen(snapshot: BatterySnapshot, now: float, settings: ChargeSettings) -> bool:
    """Whether a voltage or temperature reading carries a time older than the stale limit."""
    voltage = snapshot.voltage
    present = {  # only plausible readings count: garbage is dropped before anything is frozen
        "voltage": voltage is not None and 0 < voltage <= 5 * settings.cells,
        "temperature": bool(_valid_temperatures(snapshot)),
        "cell_voltages": any(0.5 <= v <= 5.0 for v in snapshot.cell_voltages),
    }
    for name, stamp in snapshot.field_times.items():
        if present.get(name) and not now - min(stamp, snapshot.timestamp) <= settings.stale_after:
            return True
    return False


def _valid_temperatures(snapshot: BatterySnapshot) -> list[float]:
    values = [*snapshot.temperatures, snapshot.temperature]
    return [v for v in values if v is not None and math.isfinite(v) and -60 <= v <= 120]


@HYPOTHESIS
@given(data=st.data(), settings=settings_strategy())
def test_random_garbage_never_raises_and_keeps_the_invariants(
    data: st.DataObject, settings: ChargeSettings
) -> None:
    controller = ChargeController(settings)
    now = 0.0
    accepted: float | None = None
    blocked_since: float | None = None
    for _ in range(data.draw(st.integers(1, 25))):
        now += data.draw(st.sampled_from([0.0, 0.5, 1.0, 1.0, 3.0, 40.0]))
        if data.draw(st.integers(0, 9)) == 0:
            controller.set_mode(data.draw(st.sampled_from(list(ChargeMode))))
        if data.draw(st.integers(0, 19)) == 0:
            controller.request_full_charge()
        snapshot = data.draw(snapshot_strategy(now, settings.cells))
        decision = controller.update(
            snapshot,
            now,
            grid_connected=data.draw(st.sampled_from([None, True, False])),
            si_current=data.draw(st.sampled_from(CURRENTS)),
        )
        numbers = (
            decision.charge_voltage,
            decision.charge_current_limit,
            decision.discharge_current_limit,
            decision.discharge_voltage,
            decision.absorption_elapsed,
        )
        assert all(math.isfinite(v) for v in numbers)
        assert 0.0 <= decision.charge_current_limit <= settings.bulk_current
        assert 0.0 <= decision.discharge_current_limit <= settings.max_discharge_current
        assert (
            settings.float_voltage - 1e-9
            <= decision.charge_voltage
            <= settings.absorption_voltage + 1e-9
        )
        assert decision.charge_voltage <= settings.max_voltage
        assert decision.soc is None or 0.0 <= decision.soc <= 100.0

        # Which reading is in force: the newest valid one that is not from the future.
        if (
            snapshot is not None
            and math.isfinite(snapshot.timestamp)
            and snapshot.timestamp <= now
            and (accepted is None or snapshot.timestamp >= accepted)
        ):
            accepted = snapshot.timestamp
        in_force = snapshot is not None and snapshot.timestamp == now and not snapshot.field_times
        blocked = decision.stale
        if snapshot is not None and snapshot.timestamp == now and _frozen(snapshot, now, settings):
            assert decision.stale, "a frozen voltage or temperature is a stale source"
        if in_force:
            assert snapshot is not None
            temperatures = _valid_temperatures(snapshot)
            if not temperatures:
                blocked |= not settings.allow_charge_without_temperature
            else:
                blocked |= min(temperatures) <= settings.charge_temperature_table[0][0]
                blocked |= max(temperatures) >= settings.charge_temperature_table[-1][0]
        if accepted is None or now - accepted > settings.stale_after:
            assert decision.stale or decision.limited_by_charge is Reason.NO_DATA
            blocked = True
        if blocked:
            assert decision.charge_current_limit <= STEP_CURRENT
            if blocked_since is None:
                blocked_since = now
            elif now - blocked_since >= STEP_HOLD and in_force:
                assert decision.charge_current_limit == 0.0
        else:
            blocked_since = None
