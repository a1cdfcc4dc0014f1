"""Tests for the Sunny Island simulator over python-can's virtual bus.

Each test gets its own virtual channel: one bus for the simulated SI, one for the BMS side. The
BMS side sends through ``bus.send_periodic`` like the integration does. Expected values come from
[SMA-TI] (ranges 41-63 V / 0-1200 A / 41-48 V, F952 after 60 s without 0x355, 200 ms inhibit
time) and from the simulator's documented model.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
import itertools
import math
import time
import uuid

import can
import pytest

from custom_components.sma_victron_bridge.protocols.sma_can import (
    ID_ALARMS,
    ID_BATTERY,
    ID_CHARGE_LIMITS,
    ID_EXTERNAL_AC,
    ID_EXTERNAL_POWER,
    ID_FREQUENCY,
    ID_INVERTER_POWER,
    ID_LOAD,
    ID_OUTPUT_AC,
    ID_QUICK_STOP,
    ID_RELAYS,
    ID_SOC,
    ID_STATUS,
    SI_FRAME_IDS,
    AlarmItem,
    BmsFrameState,
    decode_si_frame,
    encode_alarm_bits,
    encode_bms_frames,
)
from custom_components.sma_victron_bridge.simulators.sunny_island import (
    ARRIVALS_KEPT,
    Rejection,
    SimulatedBattery,
    SunnyIslandSimulator,
)

STATE = BmsFrameState(
    charge_voltage=55.2,
    charge_current_limit=50.0,
    discharge_current_limit=100.0,
    discharge_voltage=44.0,
    soc=60.0,
    soh=99.0,
    voltage=52.9,
    current=10.0,
    temperature=22.0,
    alarms=0,
    warnings=0,
    manufacturer="TEST",
    capacity_ah=200,
)


class Wire:
    """Both ends of one virtual CAN channel, cleaned up completely after the test."""

    def __init__(self) -> None:
        channel = f"si-test-{uuid.uuid4().hex}"
        self.channel = channel
        self.si_bus = can.Bus(interface="virtual", channel=channel, receive_own_messages=False)
        self.bms_bus = can.Bus(interface="virtual", channel=channel, receive_own_messages=False)
        self.tasks: list[can.broadcastmanager.CyclicSendTaskABC] = []

    def periodic(self, frames: dict[int, bytes], period: float) -> None:
        """Send each frame every ``period`` s from the BMS side, one thread per id."""
        for frame_id, data in frames.items():
            message = can.Message(arbitration_id=frame_id, data=data, is_extended_id=False)
            self.tasks.append(self.bms_bus.send_periodic(message, period))

    def stop_periodic(self) -> None:
        for task in self.tasks:
            task.stop()
        for task in self.tasks:
            # python-can's thread-based task does not join its thread on stop().
            thread = getattr(task, "thread", None)
            if thread is not None:
                thread.join(2.0)
        self.tasks.clear()

    def send(self, frame_id: int, data: bytes = b"", **kwargs: bool) -> None:
        self.bms_bus.send(
            can.Message(arbitration_id=frame_id, data=data, is_extended_id=False, **kwargs)
        )

    def drain(self) -> list[can.Message]:
        """Everything the SI broadcast so far."""
        messages = []
        while (message := self.bms_bus.recv(0)) is not None:
            messages.append(message)
        return messages

    def close(self) -> None:
        self.stop_periodic()
        self.si_bus.shutdown()
        self.bms_bus.shutdown()


@pytest.fixture
def wire() -> Iterator[Wire]:
    pair = Wire()
    yield pair
    pair.close()


@pytest.fixture
async def make_sim(wire: Wire) -> AsyncIterator[Callable[..., SunnyIslandSimulator]]:
    created: list[SunnyIslandSimulator] = []

    def factory(**kwargs: object) -> SunnyIslandSimulator:
        kwargs.setdefault("seed", 7)
        sim = SunnyIslandSimulator(wire.si_bus, **kwargs)  # type: ignore[arg-type]
        created.append(sim)
        return sim

    yield factory
    for sim in created:
        await sim.stop()


def fresh(value: bool) -> bool:
    """Read a flag through a call, so a type checker does not carry an earlier assert across."""
    return value


def _latest(messages: list[can.Message], frame_id: int) -> dict[str, float | int | bool]:
    data = [m for m in messages if m.arbitration_id == frame_id][-1].data
    return decode_si_frame(frame_id, data)


# --- broadcasting ---------------------------------------------------------------------------


async def test_broadcasts_every_frame_at_the_interval(
    wire: Wire, make_sim: Callable[..., SunnyIslandSimulator]
) -> None:
    sim = make_sim(interval=0.1)
    await sim.start()
    await sim.start()  # a second start is a no-op
    assert fresh(sim.started)
    await sim.wait_until(lambda: sim.frames_sent >= 5 * 12, 3.0)
    await sim.stop()
    assert not fresh(sim.started)
    messages = wire.drain()
    ids = [m.arbitration_id for m in messages]
    # One round = 0x300..0x30A then 0x010, every round complete.
    assert ids[:12] == [*range(0x300, 0x30B), 0x010]
    assert set(ids) == set(SI_FRAME_IDS)
    stamps = [m.timestamp for m in messages if m.arbitration_id == ID_BATTERY]
    assert len(stamps) >= 5
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(0.05 < gap < 0.3 for gap in gaps), gaps
    # Before any BMS frame the SI runs on its defaults: SOC 0 %, CVL 54.0 V, SOH 100 %.
    assert _latest(messages, ID_BATTERY)["battery_soc"] == 0.0
    status = _latest(messages, ID_STATUS)
    assert status["charge_voltage_setpoint"] == 54.0
    assert status["soh"] == 100
    assert status["charging_procedure"] == 10
    assert status["operating_state"] == 1


async def test_records_bms_frames_from_send_periodic(
    wire: Wire, make_sim: Callable[..., SunnyIslandSimulator]
) -> None:
    sim = make_sim(interval=0.1)
    await sim.start()
    wire.periodic(encode_bms_frames(STATE), 0.3)
    assert await sim.wait_until(lambda: len(sim.received.get(ID_SOC, [])) >= 5, 3.0)
    wire.stop_periodic()
    await asyncio.sleep(0.15)  # let the last frames arrive
    assert sim.min_interval_violations == 0
    assert sim.decode_errors == 0
    for frame_id in (0x351, 0x355, 0x356, 0x35A, 0x35E, 0x35F):
        assert len(sim.received[frame_id]) >= 4
    periods = sim.periods(ID_CHARGE_LIMITS)
    assert all(0.2 <= p <= 0.45 for p in periods), periods
    assert sim.accepted["charge_voltage"] == 55.2
    assert sim.accepted["charge_current_limit"] == 50.0
    assert sim.accepted["discharge_current_limit"] == 100.0
    assert sim.accepted["discharge_voltage"] == 44.0
    assert sim.accepted["soc"] == 60.0
    assert sim.accepted["soh"] == 99.0
    assert sim.accepted["temperature"] == 22.0
    assert sim.last_values[0x35E] == {"manufacturer": "TEST"}
    assert sim.last_values[0x35F]["capacity_ah"] == 200
    assert sim.fault is None
    assert sim.warnings == frozenset()
    # The SI reports back what it accepted: 0x305 SOC and 0x306 CV set-point.
    await asyncio.sleep(0.25)
    messages = wire.drain()
    assert _latest(messages, ID_BATTERY)["battery_soc"] == 60.0
    assert _latest(messages, ID_STATUS)["charge_voltage_setpoint"] == 55.2
    assert _latest(messages, ID_STATUS)["soh"] == 99


async def test_soc_timeout_raises_f952_and_recovers(
    wire: Wire, make_sim: Callable[..., SunnyIslandSimulator]
) -> None:
    """time_scale 60: the 60 s supervision of 0x355 fires after 1 s of wall time."""
    sim = make_sim(interval=0.1, time_scale=60.0)
    await sim.start()
    wire.periodic({ID_SOC: encode_bms_frames(STATE)[ID_SOC]}, 0.25)
    await asyncio.sleep(0.6)
    assert sim.fault is None
    assert sim.accepted["soc"] == 60.0
    wire.stop_periodic()
    assert await sim.wait_until(lambda: sim.fault == "F952", 2.0)
    # Virtual-bus timestamps are time.time() at sending.
    assert 0.9 < time.time() - sim.received[ID_SOC][-1] < 1.6
    # No 0x351 at all since the start: W952 too.
    assert sim.warnings == frozenset({"W952"})
    # F952 restores every default: SOC 0 %, CVL 54 V, CCL 0 A.
    assert sim.accepted["soc"] == 0.0
    assert sim.accepted["charge_voltage"] == 54.0
    assert sim.accepted["charge_current_limit"] == 0.0
    assert not fresh(sim.running)
    await asyncio.sleep(0.25)
    status = _latest(wire.drain(), ID_STATUS)
    assert status["operating_state"] == 4
    assert status["error_number"] == 952
    # 0x355 and 0x351 back: the simulator leaves F952 and W952.
    wire.send(ID_SOC, encode_bms_frames(STATE)[ID_SOC])
    wire.send(ID_CHARGE_LIMITS, encode_bms_frames(STATE)[ID_CHARGE_LIMITS])
    assert await sim.wait_until(lambda: sim.fault is None and not sim.warnings, 1.0)
    assert [message for _, message in sim.events] == [
        "W952 raised",
        "F952 raised",
        "F952 cleared",
        "W952 cleared",
    ]


async def test_counts_frames_faster_than_200_ms(
    wire: Wire, make_sim: Callable[..., SunnyIslandSimulator]
) -> None:
    sim = make_sim()
    await sim.start()
    wire.periodic({ID_CHARGE_LIMITS: encode_bms_frames(STATE)[ID_CHARGE_LIMITS]}, 0.05)
    assert await sim.wait_until(lambda: len(sim.received.get(ID_CHARGE_LIMITS, [])) >= 6, 2.0)
    wire.stop_periodic()
    count = len(sim.received[ID_CHARGE_LIMITS])
    assert sim.min_interval_violations == count - 1
    # Different ids back to back are fine: the rule is per id.
    wire.send(ID_SOC, encode_bms_frames(STATE)[ID_SOC])
    wire.send(ID_ALARMS, bytes(8))
    assert await sim.wait_until(lambda: ID_ALARMS in sim.received, 1.0)
    assert sim.min_interval_violations == count - 1


async def test_out_of_range_values_keep_the_last_accepted(
    wire: Wire, make_sim: Callable[..., SunnyIslandSimulator]
) -> None:
    sim = make_sim()
    await sim.start()
    # CVL 56.2 V, CCL 100 A, DCL 200 A, DVL 44 V.
    wire.send(ID_CHARGE_LIMITS, bytes.fromhex("3202e803d007b801"))
    assert await sim.wait_until(lambda: sim.accepted["charge_voltage"] == 56.2, 1.0)
    await asyncio.sleep(0.21)  # respect the 200 ms inhibit time
    # CVL 70.0 V (0x02BC) and DVL 50.0 V (0x01F4) are outside 41-63 / 41-48: ignored;
    # CCL 20.0 A (0x00C8) is fine.
    wire.send(ID_CHARGE_LIMITS, bytes.fromhex("bc02c800d007f401"))
    assert await sim.wait_until(lambda: sim.accepted["charge_current_limit"] == 20.0, 1.0)
    assert sim.accepted["charge_voltage"] == 56.2
    assert sim.accepted["discharge_voltage"] == 44.0
    assert sim.rejected == {"charge_voltage": 1, "discharge_voltage": 1}
    assert [(r.arbitration_id, r.field, r.value) for r in sim.rejections] == [
        (ID_CHARGE_LIMITS, "charge_voltage", 70.0),
        (ID_CHARGE_LIMITS, "discharge_voltage", 50.0),
    ]
    assert all(isinstance(r, Rejection) for r in sim.rejections)
    assert sim.rejections[0].timestamp == sim.received[ID_CHARGE_LIMITS][-1]
    assert sim.last_values[ID_CHARGE_LIMITS]["charge_voltage"] == 70.0
    # What the SI works with, readable directly.
    assert (sim.accepted_cvl, sim.accepted_ccl, sim.accepted_dcl, sim.accepted_dvl) == (
        56.2,
        20.0,
        200.0,
        44.0,
    )
    assert [value for _, value in sim.sent_values(ID_CHARGE_LIMITS, "charge_voltage")] == [
        56.2,
        70.0,
    ]
    await asyncio.sleep(0.21)  # respect the 200 ms inhibit time
    # "Invalid" (0xFFFF / 0x8000) returns a field to its default: CVL 54 V, CCL 0 A.
    wire.send(ID_CHARGE_LIMITS, bytes.fromhex("ffff0080d007b801"))
    assert await sim.wait_until(lambda: sim.accepted["charge_voltage"] == 54.0, 1.0)
    assert sim.accepted["charge_current_limit"] == 0.0
    # SOC 101 % is rejected too.
    wire.send(ID_SOC, bytes.fromhex("65006400ffff"))
    assert await sim.wait_until(lambda: "soc" in sim.rejected, 1.0)
    assert sim.accepted["soc"] == 0.0
    assert sim.min_interval_violations == 0


async def test_alarm_and_warning_arrivals(
    wire: Wire, make_sim: Callable[..., SunnyIslandSimulator]
) -> None:
    sim = make_sim()
    await sim.start()
    alarms = encode_alarm_bits([AlarmItem.HIGH_TEMP])
    warnings = encode_alarm_bits([AlarmItem.HIGH_VOLTAGE, AlarmItem.CELL_IMBALANCE])
    frame = alarms.to_bytes(4, "little") + warnings.to_bytes(4, "little")
    wire.send(ID_ALARMS, frame)
    assert await sim.wait_until(lambda: sim.fault is not None, 1.0)
    # Battery High Temperature is alarm 4 -> F923; warnings 2 and 13 -> W937, W948.
    assert sim.fault == "F923"
    assert sim.warnings == frozenset({"W937", "W948"})
    assert sim.alarm_arrivals == 1
    assert sim.warning_arrivals == 2
    assert not fresh(sim.running)
    await asyncio.sleep(0.21)  # respect the 200 ms inhibit time
    wire.send(ID_ALARMS, frame)  # repeated "arrives": no new arrival
    await sim.wait_until(lambda: len(sim.received[ID_ALARMS]) == 2, 1.0)
    assert sim.alarm_arrivals == 1
    await asyncio.sleep(0.21)  # respect the 200 ms inhibit time
    left = encode_alarm_bits([], [AlarmItem.HIGH_TEMP])
    wire.send(ID_ALARMS, left.to_bytes(4, "little") + warnings.to_bytes(4, "little"))
    assert await sim.wait_until(lambda: sim.fault is None, 1.0)
    assert fresh(sim.running)
    assert "F923 cleared" in [message for _, message in sim.events]


def _alarm_frame(alarms: int, warnings: int = 0) -> bytes:
    return alarms.to_bytes(4, "little") + warnings.to_bytes(4, "little")


async def test_alarms_latch_until_they_leave_also_across_a_new_sender(
    wire: Wire, make_sim: Callable[..., SunnyIslandSimulator]
) -> None:
    """[SMA-TI 7.1]: 00 and 11 change nothing; an alarm stays until "leaves" arrives.

    A BMS that restarts and sends 00 for an item it no longer evaluates leaves the SI in fault;
    one that sends "leaves" in every frame clears it.
    """
    sim = make_sim()
    await sim.start()
    wire.send(ID_ALARMS, _alarm_frame(encode_alarm_bits([AlarmItem.HIGH_TEMP], evaluated=())))
    assert await sim.wait_until(lambda: sim.in_fault, 1.0)
    assert sim.faults == {"F923"}
    assert not fresh(sim.running)
    assert not fresh(sim.can_charge)
    assert not fresh(sim.can_discharge)

    # A new sender on a new bus object of the same channel: nothing but 00, then 11.
    other = can.Bus(interface="virtual", channel=wire.channel, receive_own_messages=False)

    async def send_alarms(payload: bytes) -> None:
        await asyncio.sleep(0.21)  # respect the 200 ms inhibit time
        count = len(sim.received[ID_ALARMS])
        other.send(can.Message(arbitration_id=ID_ALARMS, data=payload, is_extended_id=False))
        assert await sim.wait_until(lambda: len(sim.received[ID_ALARMS]) > count, 1.0)

    try:
        for word in (0, 0xFFFFFFFF):
            await send_alarms(_alarm_frame(word, word))
            assert sim.faults == {"F923"}, hex(word)
        # A second alarm adds to the first; then everything this BMS evaluates leaves.
        await send_alarms(_alarm_frame(encode_alarm_bits([AlarmItem.CONTACTOR], evaluated=())))
        assert sim.faults == {"F923", "F929"}
        assert sim.fault == "F923"
        await send_alarms(_alarm_frame(encode_alarm_bits([]), encode_alarm_bits([])))
        assert not fresh(sim.in_fault)
    finally:
        other.shutdown()
    assert sim.faults == frozenset()
    assert fresh(sim.running)
    assert fresh(sim.can_discharge)  # off-grid: DCL 0 A (the default) does not stop it
    assert not fresh(sim.can_charge)  # CCL 0 A, the default
    events = [message for _, message in sim.events]
    assert events == ["F923 raised", "F929 raised", "F923 cleared", "F929 cleared"]
    assert sim.min_interval_violations == 0


async def test_faults_list_every_cause(
    wire: Wire, make_sim: Callable[..., SunnyIslandSimulator]
) -> None:
    sim = make_sim(time_scale=600.0)  # F952 after 0.1 s without 0x355
    await sim.start()
    wire.send(ID_ALARMS, _alarm_frame(encode_alarm_bits([AlarmItem.SHORT_CIRCUIT])))
    assert await sim.wait_until(lambda: sim.faults == {"F930", "F952"}, 1.0)
    assert sim.fault == "F952"  # the timeout is reported first, as in 0x306
    assert sim.accepted_soc == 0.0


async def test_quick_stop_and_restart(
    wire: Wire, make_sim: Callable[..., SunnyIslandSimulator]
) -> None:
    sim = make_sim()
    await sim.start()
    assert fresh(sim.running)
    wire.send(ID_QUICK_STOP)
    assert await sim.wait_until(lambda: sim.quick_stops == 1, 1.0)
    assert not fresh(sim.running)
    assert sim.fault is None
    assert ID_QUICK_STOP in sim.received
    assert not await sim.wait_until(lambda: fresh(sim.running), 0.05)
    sim.restart()
    assert fresh(sim.running)


async def test_ignores_foreign_bad_and_error_frames(
    wire: Wire, make_sim: Callable[..., SunnyIslandSimulator]
) -> None:
    sim = make_sim()
    await sim.start()
    wire.send(ID_CHARGE_LIMITS, bytes(3))  # too short
    wire.send(0x123, bytes(8))  # not a BMS id
    wire.bms_bus.send(can.Message(arbitration_id=ID_SOC, data=bytes(6), is_extended_id=True))
    wire.send(0, is_error_frame=True)
    assert await sim.wait_until(lambda: sim.error_frames == 1, 1.0)
    assert sim.decode_errors == 1
    assert list(sim.received) == [ID_CHARGE_LIMITS]
    assert ID_CHARGE_LIMITS not in sim.last_values
    # The simulator puts an error frame on the bus for the BMS side's fault handling.
    assert sim.send_error_frame()
    await asyncio.sleep(0.05)
    assert any(m.is_error_frame for m in wire.drain())


async def test_drop_grid_voltage_once(
    wire: Wire, make_sim: Callable[..., SunnyIslandSimulator]
) -> None:
    sim = make_sim(interval=0.05)
    sim.set_grid(True)
    await sim.start()
    await sim.wait_until(lambda: sim.frames_sent >= 24, 2.0)
    sim.drop_grid_voltage_once()
    sent = sim.frames_sent
    await sim.wait_until(lambda: sim.frames_sent >= sent + 36, 2.0)
    await sim.stop()
    relays = [
        decode_si_frame(ID_RELAYS, m.data) for m in wire.drain() if m.arbitration_id == ID_RELAYS
    ]
    ok = [frame["grid_voltage_ok"] for frame in relays]
    assert ok.count(False) == 1
    assert ok[0] is True
    assert ok[-1] is True
    # The relay stays closed through the single dropout.
    assert all(frame["grid_connected"] for frame in relays)
    assert all(frame["external_source_connected"] for frame in relays)


async def test_keeps_its_rhythm_after_a_blocked_loop(
    wire: Wire, make_sim: Callable[..., SunnyIslandSimulator]
) -> None:
    sim = make_sim(interval=0.05)
    await sim.start()
    await sim.wait_until(lambda: sim.frames_sent >= 12, 1.0)
    time.sleep(0.2)  # noqa: ASYNC251 - the event loop stalls for four periods, on purpose
    sent = sim.frames_sent
    await asyncio.sleep(0.02)
    # It resumes with one round, not a burst of the four it missed.
    assert sim.frames_sent - sent == 12


# --- the model, stepped directly ------------------------------------------------------------


def _decoded(sim: SunnyIslandSimulator) -> dict[int, dict[str, float | int | bool]]:
    return {
        frame_id: decode_si_frame(frame_id, data) for frame_id, data in sim.build_frames().items()
    }


def test_off_grid_discharge_supplies_the_load(wire: Wire) -> None:
    sim = SunnyIslandSimulator(wire.si_bus, seed=1)
    sim.set_load(2000.0)
    sim.step(1.0)
    frames = _decoded(sim)
    load = frames[ID_LOAD]["load_power"]
    assert 1700.0 <= load <= 2300.0
    # All from the battery: inverter delivers the load, nothing from AC2.
    assert frames[ID_INVERTER_POWER]["inverter_power_l1"] == load
    assert frames[ID_EXTERNAL_POWER]["external_power_l1"] == 0.0
    # ~2000 W / 52.8 V = ~38 A discharge, reported + = charging -> negative.
    current = frames[ID_BATTERY]["battery_current"]
    assert isinstance(current, float)
    assert -44.0 < current < -32.0
    assert frames[ID_RELAYS]["running"] is True
    assert frames[ID_RELAYS]["grid_connected"] is False
    assert frames[ID_EXTERNAL_AC]["external_voltage_l1"] == 0.0
    assert frames[ID_OUTPUT_AC]["output_frequency"] == 50.0
    assert 228.0 <= frames[ID_OUTPUT_AC]["output_voltage_l1"] <= 232.0


def test_off_grid_pv_surplus_is_limited_by_ccl(wire: Wire) -> None:
    sim = SunnyIslandSimulator(wire.si_bus, seed=1)
    sim.set_load(500.0)
    sim.set_pv(5000.0)
    sim.step(1.0)
    # CCL is 0 A by default: nothing charges, the surplus is curtailed by frequency shift.
    assert sim.battery.current == 0.0
    assert sim.flow.curtailed > 3000.0
    assert _decoded(sim)[ID_FREQUENCY]["frequency"] == pytest.approx(51.0, abs=0.01)
    sim.accepted["charge_current_limit"] = 20.0
    soc = sim.battery.soc
    sim.step(360.0)
    assert sim.battery.current == pytest.approx(20.0)
    # 20 A for 360 s into 200 Ah = 2 Ah = 1 %.
    assert sim.battery.soc == pytest.approx(soc + 1.0)


def test_charging_stops_at_cvl(wire: Wire) -> None:
    battery = SimulatedBattery(soc=99.0)
    sim = SunnyIslandSimulator(wire.si_bus, seed=1, battery=battery)
    sim.set_pv(8000.0)
    sim.set_load(0.0)
    sim.accepted["charge_current_limit"] = 100.0
    sim.accepted["charge_voltage"] = 55.0  # below the OCV at 99 % (~56.3 V)
    sim.step(1.0)
    assert battery.current == 0.0
    sim.accepted["charge_voltage"] = 56.5
    sim.step(1.0)
    # Constant voltage: the current keeps the terminal voltage at CVL.
    assert 0.0 < battery.current < 100.0
    assert battery.voltage == pytest.approx(56.5, abs=0.01)


def test_off_grid_only_an_alarm_or_dvl_stops_discharging(wire: Wire) -> None:
    """[SMA-TI 1.2]: off-grid the loads come first, the DCL does not apply; an alarm stops the
    SI, and below DVL it stands by. Grid-tied the same DCL 0 A keeps the battery untouched."""
    sim = SunnyIslandSimulator(wire.si_bus, seed=1)
    sim.set_load(2000.0)
    sim.accepted["discharge_current_limit"] = 0.0
    assert sim.accepted_dcl == 0.0
    assert fresh(sim.can_discharge)
    sim.step(1.0)
    assert sim.battery.current < -30.0  # DCL 0 A, discharging anyway

    sim.active_alarms.add(AlarmItem.LOW_VOLTAGE)
    assert sim.faults == {"F922"}
    assert not fresh(sim.can_discharge)
    sim.step(1.0)
    assert sim.battery.current == 0.0
    sim.active_alarms.clear()

    sim.accepted["discharge_voltage"] = 48.0
    sim.battery.soc = 0.5  # OCV ~45 V, below DVL
    assert not fresh(sim.can_discharge)
    sim.step(1.0)
    assert sim.battery.current == 0.0

    sim.battery.soc = 50.0
    sim.set_grid(True)
    assert not fresh(sim.can_discharge)  # grid-tied: DCL 0 A holds
    sim.step(1.0)
    assert sim.battery.current == 0.0
    sim.accepted["discharge_current_limit"] = 10.0
    assert fresh(sim.can_discharge)
    sim.accepted["charge_current_limit"] = 5.0
    assert fresh(sim.can_charge)


def test_grid_tied_self_consumption_respects_dcl(wire: Wire) -> None:
    sim = SunnyIslandSimulator(wire.si_bus, seed=1)
    assert not fresh(sim.grid_available)
    sim.set_grid(True)
    assert fresh(sim.grid_available)
    sim.set_load(3000.0)
    sim.step(1.0)
    # DCL 0 A (default): the grid carries the load.
    assert sim.battery.current == 0.0
    assert sim.flow.external == pytest.approx(sim.flow.load)
    sim.accepted["discharge_current_limit"] = 10.0
    sim.step(1.0)
    assert sim.battery.current == pytest.approx(-10.0)
    frames = _decoded(sim)
    assert frames[ID_RELAYS]["grid_connected"] is True
    assert frames[ID_RELAYS]["grid_voltage_ok"] is True
    assert frames[ID_EXTERNAL_AC]["external_frequency"] == 50.0
    assert frames[0x30A]["grid_consumption_power"] > 2000.0
    # PV surplus with CCL 30 A: charge 30 A, feed the rest.
    sim.accepted["charge_current_limit"] = 30.0
    sim.set_pv(6000.0)
    sim.step(1.0)
    assert sim.battery.current == pytest.approx(30.0)
    assert sim.flow.external < 0.0
    assert _decoded(sim)[0x30A]["grid_feed_power"] > 0.0


def test_cvl_below_battery_voltage_discharges_despite_dcl(wire: Wire) -> None:
    """[SMA-TI] 4.2: with CVL (default 54 V) below the battery voltage the SI discharges
    to CVL without regard to DCL (0 A by default)."""
    sim = SunnyIslandSimulator(wire.si_bus, seed=1, battery=SimulatedBattery(soc=99.0))
    sim.set_grid(True)
    sim.set_load(0.0)
    sim.step(1.0)
    assert sim.accepted["discharge_current_limit"] == 0.0
    # OCV at 99 % is 56.32 V: (56.32 - 54.0) V / 0.01 ohm = 232 A, capped at 6000 W.
    assert sim.battery.current == pytest.approx(-6000.0 / 56.32, rel=0.001)
    assert sim.flow.external == pytest.approx(-6000.0)


def test_grid_tied_backup_charges_from_the_grid(wire: Wire) -> None:
    sim = SunnyIslandSimulator(wire.si_bus, seed=1, self_consumption=False)
    sim.set_grid(True)
    sim.set_load(1000.0)
    sim.accepted["charge_current_limit"] = 40.0
    sim.step(1.0)
    assert sim.battery.current == pytest.approx(40.0)
    # Import = load + charging power.
    assert sim.flow.external == pytest.approx(sim.flow.load + 40.0 * 52.8, rel=0.01)


def test_off_grid_overload_and_three_phases(wire: Wire) -> None:
    sim = SunnyIslandSimulator(wire.si_bus, seed=1, phases=3, max_power_per_phase=1000.0)
    sim.set_load(5000.0)
    sim.step(1.0)
    assert sim.flow.overload
    assert sim.flow.load == pytest.approx(3000.0)
    frames = _decoded(sim)
    assert frames[ID_RELAYS]["overload"] is True
    assert [frames[ID_INVERTER_POWER][f"inverter_power_l{n}"] for n in (1, 2, 3)] == [1000.0] * 3
    assert all(frames[ID_OUTPUT_AC][f"output_voltage_l{n}"] > 200.0 for n in (1, 2, 3))


def test_standby_below_dvl(wire: Wire) -> None:
    sim = SunnyIslandSimulator(wire.si_bus, seed=1, battery=SimulatedBattery(soc=1.0))
    sim.accepted["discharge_voltage"] = 48.0  # OCV at 1 % is ~45.8 V
    sim.set_load(1000.0)
    sim.step(1.0)
    assert not fresh(sim.running)
    assert sim.flow.load == 0.0
    frames = _decoded(sim)
    assert frames[ID_STATUS]["operating_state"] == 0
    assert frames[ID_RELAYS]["running"] is False
    assert frames[ID_OUTPUT_AC]["output_voltage_l1"] == 0.0
    assert frames[ID_FREQUENCY]["frequency"] == 0.0


def test_generator_request_hysteresis(wire: Wire) -> None:
    sim = SunnyIslandSimulator(wire.si_bus, seed=1)
    sim.accepted["soc"] = 50.0
    sim.step(1.0)
    assert not fresh(sim.generator_request)
    sim.accepted["soc"] = 25.0
    sim.step(1.0)
    assert fresh(sim.generator_request)
    assert _decoded(sim)[ID_RELAYS]["generator_request"] is True
    sim.accepted["soc"] = 50.0
    sim.step(1.0)
    assert fresh(sim.generator_request)  # still below the stop level
    sim.accepted["soc"] = 80.0
    sim.step(1.0)
    assert not fresh(sim.generator_request)
    sim.accepted["soc"] = 10.0
    sim.set_grid(True)
    sim.step(1.0)
    assert not fresh(sim.generator_request)


def test_operating_state_warning(wire: Wire) -> None:
    sim = SunnyIslandSimulator(wire.si_bus, seed=1)
    sim.active_warnings.add(AlarmItem.GENERAL)
    assert sim.warnings == frozenset({"W936"})
    assert _decoded(sim)[ID_STATUS]["operating_state"] == 3


def test_battery_model() -> None:
    battery = SimulatedBattery(capacity_ah=100.0, soc=50.0)
    assert battery.open_circuit_voltage() == pytest.approx(52.8)
    battery.step(100.0, 36.0)  # 1 Ah into 100 Ah
    assert battery.soc == pytest.approx(51.0)
    assert battery.voltage == pytest.approx(battery.open_circuit_voltage() + 1.0)
    assert battery.temperature > 20.0
    battery.soc = 100.0
    assert battery.open_circuit_voltage() == pytest.approx(56.8)
    battery.step(100.0, 3600.0)
    assert battery.soc == 100.0


def test_skip_probability_and_send_errors(wire: Wire) -> None:
    sim = SunnyIslandSimulator(wire.si_bus, seed=3, skip_probability=0.5)
    for _ in range(10):
        sim.broadcast()
    assert 20 < sim.frames_sent < 100
    assert len(wire.drain()) == sim.frames_sent
    wire.si_bus.shutdown()
    sim.broadcast()
    assert sim.send_errors > 0
    assert not sim.send_error_frame()


def test_argument_checks(wire: Wire) -> None:
    for kwargs in (
        {"interval": 0.0},
        {"time_scale": -1.0},
        {"phases": 4},
        {"skip_probability": 1.0},
    ):
        with pytest.raises(ValueError, match="must"):
            SunnyIslandSimulator(wire.si_bus, **kwargs)
    sim = SunnyIslandSimulator(wire.si_bus)
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="non-negative"):
            sim.set_load(bad)
        with pytest.raises(ValueError, match="non-negative"):
            sim.set_pv(bad)


def test_arrival_history_is_bounded() -> None:
    """A simulator left running keeps the newest arrivals only, and their gaps stay right."""
    bus = can.Bus(interface="virtual", channel="arrivals-bounded")
    try:
        sim = SunnyIslandSimulator(bus)
        for second in range(ARRIVALS_KEPT + 10):
            sim._record_arrival(ID_SOC, float(second))
        assert len(sim.received[ID_SOC]) == ARRIVALS_KEPT
        assert sim.received[ID_SOC][0] == 10.0
        assert sim.periods(ID_SOC) == [1.0] * (ARRIVALS_KEPT - 1)
        assert sim.min_interval_violations == 0
    finally:
        bus.shutdown()
