"""The whole BMS path under random abuse, judged at the simulated Sunny Island.

Hypothesis drives Home Assistant sensors (garbage, stale and out-of-order readings included),
settings and mode changes, entry reloads and short event-loop stalls, while a Sunny Island
simulator of its own on a named virtual bus records every frame. After each step the invariants
are checked on what the SI received and accepted, never on our own sensors:

* no frame of one id within 200 ms of the previous one, across reloads;
* CCL 0 once the battery has been at or below 0 °C (or above the 55 °C charge limit) for a
  tick plus a frame period; never above the configured bulk current;
* never above what the runtime decided, for longer than the dead-man guard time;
* an alarm the runtime cleared is cleared at the SI within 5 s.

The machine runs in an executor thread and hands every action to the event loop, because
Hypothesis drives its rules synchronously while Home Assistant lives on the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
import contextlib
import time
from typing import Any

import can
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from hypothesis import HealthCheck, Phase, settings, strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.sma_victron_bridge.const import DOMAIN
from custom_components.sma_victron_bridge.control.charge import ChargeController
from custom_components.sma_victron_bridge.protocols.sma_can import MIN_PERIOD
from custom_components.sma_victron_bridge.simulators.sunny_island import SunnyIslandSimulator

from .test_sunny_island import LIMITS, SOC
from .test_sunny_island_safety import (
    CURRENT_ENTITY,
    ENTITY_SOURCE,
    SOC_ENTITY,
    TEMPERATURE_ENTITY,
    UNITS,
    VOLTAGE_ENTITY,
    bus_entry,
)

CHANNEL = "sma-victron-property"
GUARD_TIME = 3.0
# A decision reaches the wire within a tick and a frame period; stalls add to that.
LAG = 1.0 + 1.0 + 1.6
CHARGE_TEMPERATURE = (0.0, 55.0)
ALARM_CLEAR_LIMIT = 5.0
TOTAL_BUDGET = 80.0
"""Seconds of wall time the whole property run may take (examples stop being drawn after it)."""

GARBAGE = st.sampled_from(["nan", "inf", "-inf", "unknown", "unavailable", "", "12abc"])
READINGS: dict[str, st.SearchStrategy[float]] = {
    SOC_ENTITY: st.floats(-50, 150),
    VOLTAGE_ENTITY: st.floats(-10, 80),
    TEMPERATURE_ENTITY: st.floats(-300, 200),
    CURRENT_ENTITY: st.floats(-20000, 20000),
}
HEALTHY: dict[str, float] = {
    SOC_ENTITY: 60.0,
    VOLTAGE_ENTITY: 53.0,
    TEMPERATURE_ENTITY: 20.0,
    CURRENT_ENTITY: 5.0,
}


def _cold(value: float | str | None) -> bool:
    """A plausible battery temperature outside the charge range (what must stop charging)."""
    if not isinstance(value, float):
        return False
    return -60.0 <= value <= 120.0 and not CHARGE_TEMPERATURE[0] < value < CHARGE_TEMPERATURE[1]


class BmsAbuse(RuleBasedStateMachine):
    """One Sunny Island entry on HA sensors, one outside SI; rules change what the BMS sees."""

    hass: HomeAssistant
    sim: SunnyIslandSimulator
    source: str
    started: float
    examples = 0

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, float | str | None] = dict(HEALTHY)
        self.temperature_log: list[tuple[float, float | str | None]] = [
            (time.time(), HEALTHY[TEMPERATURE_ENTITY])
        ]
        self.decisions: list[tuple[float, float]] = []
        # Every decision, recorded where it is made: a listener on the runtime's coordinator
        # attaches only after a (re)load, when the new runtime's first frames are already out.
        self._update = ChargeController.update
        update, decisions = self._update, self.decisions

        def recorded(controller: ChargeController, *args: Any, **kwargs: Any) -> Any:
            decision = update(controller, *args, **kwargs)
            decisions.append((time.time(), decision.charge_current_limit))
            return decision

        ChargeController.update = recorded  # type: ignore[method-assign,assignment]
        self.alarms_clear_since: float | None = None
        self.bulk_current = 140.0
        BmsAbuse.examples += 1
        unique = f"property-{BmsAbuse.examples}"
        on_bus = bus_entry("entities", CHANNEL, unique, {"guard_time": GUARD_TIME})
        self.entry = MockConfigEntry(
            domain=DOMAIN,
            title=on_bus.title,
            unique_id=on_bus.unique_id,
            data={**on_bus.data, **ENTITY_SOURCE},
            options=dict(on_bus.options),
        )
        self.machine_started = time.time()
        self._run(self._async_setup)

    # --- plumbing ---------------------------------------------------------------------------

    def _run(self, factory: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """Run one coroutine on Home Assistant's loop and wait for it (from this thread)."""
        return asyncio.run_coroutine_threadsafe(factory(), self.hass.loop).result(timeout=60)

    async def _async_setup(self) -> None:
        self._write()
        self.entry.add_to_hass(self.hass)
        assert await self.hass.config_entries.async_setup(self.entry.entry_id)
        await self.hass.async_block_till_done()
        self._listen()
        self._feeding = self.hass.loop.create_task(self._feed())

    def _listen(self) -> None:
        """Follow the alarms of the decisions the runtime publishes."""
        runtime: Any = self.entry.runtime_data

        def record() -> None:
            decision = runtime.data.decision
            clear = decision is not None and not decision.alarms
            if not clear:
                self.alarms_clear_since = None
            elif self.alarms_clear_since is None:
                self.alarms_clear_since = time.time()

        self.entry.async_on_unload(runtime.coordinator.async_add_listener(record))

    def _write(self, entity_id: str | None = None, *, timestamp: float | None = None) -> None:
        for name, value in self.values.items():
            if value is None or (entity_id is not None and name != entity_id):
                continue
            self.hass.states.async_set(
                name,
                value if isinstance(value, str) else repr(value),
                {"unit_of_measurement": UNITS[name]},
                timestamp=timestamp,
            )

    async def _feed(self) -> None:
        while True:
            self._write()
            await asyncio.sleep(0.5)

    async def _pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    # --- rules ------------------------------------------------------------------------------

    @rule(
        entity_id=st.sampled_from(list(READINGS)),
        value=st.one_of(st.none(), GARBAGE),
    )
    def garbage_or_frozen(self, entity_id: str, value: str | None) -> None:
        self._set(entity_id, value)

    @rule(data=st.data(), entity_id=st.sampled_from(list(READINGS)))
    def reading(self, data: st.DataObject, entity_id: str) -> None:
        self._set(entity_id, data.draw(READINGS[entity_id]))

    @rule(entity_id=st.sampled_from(list(READINGS)))
    def healthy(self, entity_id: str) -> None:
        self._set(entity_id, HEALTHY[entity_id])

    @rule(entity_id=st.sampled_from(list(READINGS)), age=st.floats(1, 120))
    def out_of_order(self, entity_id: str, age: float) -> None:
        """A report dated in the past (a replayed or late reading)."""

        async def write() -> None:
            self._write(entity_id, timestamp=time.time() - age)

        self._run(write)

    @rule(current=st.floats(0, 280), ramp=st.floats(0.1, 1200))
    def change_settings(self, current: float, ramp: float) -> None:
        runtime: Any = self.entry.runtime_data

        async def change() -> None:
            with contextlib.suppress(ServiceValidationError):
                await runtime.async_set_setting("ramp_rate", ramp)
            await runtime.async_set_setting("bulk_current", current)

        # Frames sent before the change may carry the old limit: the bound is the higher one.
        self.bulk_current = max(self.bulk_current, current)
        with contextlib.suppress(ServiceValidationError):
            self._run(change)

    @rule(mode=st.sampled_from(["auto", "force_bulk", "force_float", "charge_off"]))
    def mode(self, mode: str) -> None:
        async def select() -> None:
            await self.hass.services.async_call(
                "select",
                "select_option",
                {"entity_id": "select.sunny_island_charge_mode", "option": mode},
                blocking=True,
            )

        self._run(select)

    @rule()
    def reload(self) -> None:
        async def again() -> None:
            assert await self.hass.config_entries.async_reload(self.entry.entry_id)
            await self.hass.async_block_till_done()
            self._listen()

        self._run(again)

    @rule(seconds=st.floats(0.1, 1.5))
    def stall(self, seconds: float) -> None:
        """Block the event loop for a moment (shorter than the guard time)."""
        self.hass.loop.call_soon_threadsafe(time.sleep, seconds)
        time.sleep(seconds + 0.05)

    @precondition(lambda self: time.time() - self.machine_started < TOTAL_BUDGET)
    @rule(seconds=st.floats(0.3, 2.0))
    def wait(self, seconds: float) -> None:
        self._run(lambda: self._pause(seconds))

    def _set(self, entity_id: str, value: float | str | None) -> None:
        self.values[entity_id] = value
        if entity_id == TEMPERATURE_ENTITY:
            self.temperature_log.append((time.time(), value))

        async def write() -> None:
            self._write(entity_id)

        self._run(write)

    # --- invariants, at the SI ----------------------------------------------------------------

    @invariant()
    def judged_at_the_si(self) -> None:
        # Let the simulator judge what is queued on the loop before looking.
        self._run(lambda: self._pause(0.05))
        sim = self.sim
        assert sim.min_interval_violations == 0
        for frame_id in (LIMITS, SOC):
            assert all(gap >= MIN_PERIOD for gap in sim.periods(frame_id))
        frames = [
            (stamp, float(value))
            for stamp, value in sim.sent_values(LIMITS, "charge_current_limit")
            if isinstance(value, int | float) and stamp >= self.machine_started
        ]
        for stamp, ccl in frames:
            assert ccl <= self.bulk_current + 0.1, (stamp, ccl)
            if self._cold_throughout(stamp - LAG, stamp):
                assert ccl == 0.0, (stamp, ccl, self.temperature_log[-3:])
            allowed = self._decided_max(stamp - GUARD_TIME - LAG, stamp)
            if allowed is not None:
                assert ccl <= allowed + 0.1, (stamp, ccl, allowed)
        since = self.alarms_clear_since
        if since is not None and time.time() - since > ALARM_CLEAR_LIMIT:
            assert not sim.active_alarms, sim.active_alarms

    def _cold_throughout(self, start: float, end: float) -> bool:
        """The written temperature was cold (and plausible) over the whole window."""
        log = self.temperature_log
        before = [value for at, value in log if at <= start]
        if not before or not _cold(before[-1]):
            return False
        return all(_cold(value) for at, value in log if start < at <= end)

    def _decided_max(self, start: float, end: float) -> float | None:
        """The highest CCL the runtime decided in the window (None without a decision then)."""
        inside = [ccl for at, ccl in self.decisions if start <= at <= end]
        before = [ccl for at, ccl in self.decisions if at < start]
        if before:
            inside.append(before[-1])
        if not inside:
            return None
        return max(inside)

    def teardown(self) -> None:
        async def stop() -> None:
            self._feeding.cancel()
            if self.entry.state is ConfigEntryState.LOADED:
                assert await self.hass.config_entries.async_unload(self.entry.entry_id)

        try:
            self._run(stop)
        finally:
            ChargeController.update = self._update  # type: ignore[method-assign]


async def test_random_abuse_never_breaks_the_invariants_at_the_si(hass: HomeAssistant) -> None:
    bus = can.Bus(interface="virtual", channel=CHANNEL)
    sim = SunnyIslandSimulator(bus)
    await sim.start()

    class Machine(BmsAbuse):
        pass

    Machine.hass = hass
    Machine.sim = sim
    try:
        await hass.async_add_executor_job(
            lambda: run_state_machine_as_test(
                Machine,
                settings=settings(
                    max_examples=4,
                    stateful_step_count=20,
                    deadline=None,
                    derandomize=True,
                    # Generation only: shrinking would replay minutes of real time.
                    phases=[Phase.explicit, Phase.reuse, Phase.generate],
                    database=None,
                    suppress_health_check=list(HealthCheck),
                ),
            )
        )
        # The examples really put frames on the bus for the invariants to judge.
        assert len(sim.received[LIMITS]) >= 30
        assert sim.min_interval_violations == 0
    finally:
        await sim.stop()
        bus.shutdown()
