"""The charge state machine, walked through whole charge cycles with a simulated battery."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings as hyp_settings, strategies as st
import pytest

from custom_components.sma_victron_bridge.control.charge import (
    ChargeController,
    ChargeDecision,
    ChargeEvent,
    ChargeMode,
    ChargeState,
)
from custom_components.sma_victron_bridge.control.chemistry import ChargeSettings
from custom_components.sma_victron_bridge.control.limits import STEP_CURRENT, AlarmItem, Reason
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
    assert floated.charge_voltage == pytest.approx(FLOAT)
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
    assert forced.charge_voltage == pytest.approx(FLOAT)
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
    assert off.charge_voltage == pytest.approx(FLOAT)
    assert off.discharge_current_limit == 100.0
    assert bench.step().charge_current_limit == 0.0
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
    decision = controller.update(reading(0.0, 53.0, 0.0, 150.0), 100.0)
    assert decision.stale
    assert decision.soc == 100.0  # clamped
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
            if previous.stale:
                assert decision.charge_current_limit == 0.0
        previous = decision
