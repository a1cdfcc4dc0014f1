"""The CAN link of the Sunny Island BMS emulation, over real python-can transports.

The far end is the Sunny Island simulator on a python-can ``virtual`` channel; the slcan tests go
through the simulated CANable (a kernel pty) with python-can's real ``slcan`` driver. The
simulator stamps every BMS frame with the bus's send time, so the 1 s cadence and the 200 ms
inhibit time ([SMA-TI] 5.1) are measured on the wire side, independently of the event loop.

Fault transports (subclasses of python-can's virtual bus) stand in for what no CI machine has: a
send that fails or stalls, and a backend whose periodic timer runs outside Python (what
socketcan's broadcast manager is: first frame at once, ``modify_data`` without a restart, stop
refused for a task that was never set up).

Values sent (``STATE``): CVL 55.2 V, CCL 50 A, DCL 100 A, DVL 44 V, SOC 60 %, SOH 99 %, every
0x35A item "leaves" (what the BMS sends when all is well).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
import contextlib
import dataclasses
import errno
import itertools
import math
import threading
import time
from typing import Any
import uuid

import can
from can.broadcastmanager import (
    ModifiableCyclicTaskABC,
    RestartableCyclicTaskABC,
    ThreadBasedCyclicSendTask,
)
from can.interfaces.virtual import VirtualBus
from hypothesis import HealthCheck, given, settings, strategies as st
import pytest

from custom_components.sma_victron_bridge.protocols import ProtocolError
from custom_components.sma_victron_bridge.protocols.can_link import (
    DEFAULT_GUARD_TIME,
    FINAL_WAIT_MARGIN,
    INHIBIT_MARGIN,
    MAX_NOISE_IN_A_ROW,
    SEND_ERRORS_BEFORE_REOPEN,
    SI_FILTERS,
    SLCAN_SLEEP_AFTER_OPEN,
    SLCAN_TTY_BAUDRATE,
    BmsSender,
    CanConfig,
    CanLink,
    CanLinkError,
    last_send_free_at,
)
from custom_components.sma_victron_bridge.protocols.sma_can import (
    BMS_FRAME_IDS,
    ID_ALARMS,
    ID_BATTERY,
    ID_BATTERY_INFO,
    ID_CHARGE_LIMITS,
    ID_MANUFACTURER,
    ID_SOC,
    MIN_PERIOD,
    SI_FRAME_IDS,
    AlarmItem,
    BmsFrameState,
    charge_current_limit_of,
    decode_bms_frame,
    decode_si_frame,
    encode_alarm_bits,
    encode_bms_frames,
    safe_bms_frames,
)
from custom_components.sma_victron_bridge.simulators.slcan import DEFAULT_GARBAGE, SlcanAdapter
from custom_components.sma_victron_bridge.simulators.sunny_island import SunnyIslandSimulator

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
    alarms=encode_alarm_bits([]),
    warnings=encode_alarm_bits([]),
    manufacturer="TEST",
    capacity_ah=200,
)
FRAMES = encode_bms_frames(STATE)
TOLERANCE = 0.1
"""DESIGN invariant 1: every 1 s +- 0.1 s."""


# --- transports -----------------------------------------------------------------------------------


class FaultyBus(VirtualBus):
    """A virtual bus whose sends can be made to fail or to stall (a stuck adapter)."""

    def __init__(self, channel: str) -> None:
        super().__init__(channel=channel, receive_own_messages=False)
        self.fail_sends = False
        self.stall_next_send = 0.0

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        if self.fail_sends:
            raise can.CanOperationError("adapter refused the frame")
        stall, self.stall_next_send = self.stall_next_send, 0.0
        if stall:
            time.sleep(stall)
        super().send(msg, timeout)


class KernelTimerTask(ModifiableCyclicTaskABC, RestartableCyclicTaskABC):
    """Behaves like a socketcan BCM task: the timer is not python-can's thread.

    ``start`` sends at once and then every period (TX_SETUP with STARTTIMER/TX_ANNOUNCE);
    ``modify_data`` swaps the data and leaves the timer alone (TX_SETUP without flags); ``stop``
    is synchronous (TX_DELETE) and refused for a task never set up (EINVAL).
    """

    def __init__(self, bus: KernelTimerBus, messages: Any, period: float) -> None:
        super().__init__(messages, period)
        self._bus = bus
        self._halt = threading.Event()
        self._worker: threading.Thread | None = None
        self.starts = 0
        self.modifications = 0

    def start(self) -> None:
        if self._bus.fail_start:
            raise OSError(errno.ENODEV, "No such device")
        self.starts += 1
        self._halt = threading.Event()
        self._worker = threading.Thread(target=self._run, args=(self._halt,), daemon=True)
        self._worker.start()

    def modify_data(self, messages: Any) -> None:
        if self._bus.fail_modify:
            raise OSError(errno.ENETDOWN, "Network is down")
        self.modifications += 1
        super().modify_data(messages)

    def _run(self, halt: threading.Event) -> None:
        due = time.perf_counter()
        while True:
            self._bus.send(self.messages[0])
            due += self.period
            if halt.wait(max(0.0, due - time.perf_counter())):
                return

    def stop(self) -> None:
        if self._worker is None:
            raise OSError(errno.EINVAL, "Invalid argument")
        self._halt.set()
        self._worker.join()
        self._worker = None


class KernelTimerBus(VirtualBus):
    """A virtual bus whose periodic tasks are :class:`KernelTimerTask`s (like socketcan's)."""

    def __init__(self, channel: str) -> None:
        super().__init__(channel=channel, receive_own_messages=False)
        self.fail_periodic = False
        self.fail_start = False
        self.fail_modify = False
        self.tasks: list[KernelTimerTask] = []

    def _send_periodic_internal(
        self,
        msgs: Any,
        period: float,
        duration: float | None = None,
        autostart: bool = True,
        modifier_callback: Any = None,
    ) -> KernelTimerTask:
        if self.fail_periodic:
            raise can.CanOperationError("BCM socket refused")
        task = KernelTimerTask(self, msgs, period)
        self.tasks.append(task)
        if autostart:
            task.start()
        return task


# --- fixtures and helpers -------------------------------------------------------------------------


class Recorder:
    """What the link reported: frames (with the thread they arrived in) and state changes."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, bytes, float]] = []
        self.threads: set[int] = set()
        self.states: list[tuple[bool, str | None]] = []

    def on_frame(self, arbitration_id: int, data: bytes, timestamp: float) -> None:
        self.frames.append((arbitration_id, data, timestamp))
        self.threads.add(threading.get_ident())

    def on_state(self, up: bool, reason: str | None) -> None:
        self.states.append((up, reason))

    def last(self, arbitration_id: int) -> bytes:
        return next(data for key, data, _ in reversed(self.frames) if key == arbitration_id)


class Rig:
    """Everything a test opens, closed again in reverse order (links, simulators, buses)."""

    def __init__(self, stack: contextlib.AsyncExitStack) -> None:
        self.stack = stack
        self.loop = asyncio.get_running_loop()
        self.channel = f"can-link-{uuid.uuid4().hex}"

    async def si(self, interval: float = 1.0) -> SunnyIslandSimulator:
        bus = can.Bus(interface="virtual", channel=self.channel, receive_own_messages=False)
        self.stack.callback(bus.shutdown)
        sim = SunnyIslandSimulator(bus, interval=interval, seed=7)
        await sim.start()
        self.stack.push_async_callback(sim.stop)
        return sim

    async def adapter(self) -> SlcanAdapter:
        device = SlcanAdapter(self.channel)
        await device.start()
        self.stack.push_async_callback(device.stop)
        return device

    def link(self, config: CanConfig | None = None, **kwargs: Any) -> tuple[CanLink, Recorder]:
        recorder = Recorder()
        link = CanLink(
            config or CanConfig("virtual", self.channel),
            loop=self.loop,
            on_frame=recorder.on_frame,
            on_state=recorder.on_state,
            **kwargs,
        )
        self.stack.push_async_callback(link.close)
        return link, recorder

    def sender(self, period: float = 1.0, **kwargs: Any) -> BmsSender:
        sender = BmsSender(period, **kwargs)
        self.stack.push_async_callback(self.in_thread, sender.stop)
        return sender

    def bus[BusT: can.BusABC](self, factory: Callable[[str], BusT]) -> BusT:
        bus = factory(self.channel)
        self.stack.callback(bus.shutdown)
        return bus

    async def in_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        return await self.loop.run_in_executor(None, function, *args)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with contextlib.AsyncExitStack() as stack:
        yield Rig(stack)


async def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def arrivals(sim: SunnyIslandSimulator, arbitration_id: int) -> int:
    return len(sim.received.get(arbitration_id, []))


def assert_cadence(
    sim: SunnyIslandSimulator, ids: Sequence[int], period: float = 1.0, minimum: int = 3
) -> None:
    """Every gap between two frames of each id is ``period`` +- 0.1 s."""
    for arbitration_id in ids:
        gaps = sim.periods(arbitration_id)
        assert len(gaps) >= minimum, (hex(arbitration_id), gaps)
        assert all(abs(gap - period) <= TOLERANCE for gap in gaps), (hex(arbitration_id), gaps)


def reaches(read: Callable[[], int], value: int) -> Callable[[], bool]:
    """A wait_until predicate: the counter ``read()`` has reached ``value``."""
    return lambda: read() >= value


def fresh(value: bool) -> bool:
    """Read a flag through a call, so a type checker does not carry an earlier assert across."""
    return value


def link_threads() -> list[str]:
    """Threads this module or python-can's periodic tasks may start."""
    names = ("can-link", "bms-sender", "Cyclic send task")
    return [t.name for t in threading.enumerate() if t.name.startswith(names)]


# --- configuration --------------------------------------------------------------------------------


def test_bus_arguments_per_interface() -> None:
    socketcan = CanConfig("socketcan", "can0").bus_kwargs()
    assert socketcan == {
        "interface": "socketcan",
        "channel": "can0",
        "can_filters": list(SI_FILTERS),
    }
    assert [f["can_id"] for f in SI_FILTERS] == list(SI_FRAME_IDS)
    assert {(f["can_mask"], f["extended"]) for f in SI_FILTERS} == {(0x7FF, False)}
    assert CanConfig("slcan", "/dev/ttyACM0").bus_kwargs() == {
        "interface": "slcan",
        "channel": "/dev/ttyACM0",
        "bitrate": 500_000,
        "tty_baudrate": SLCAN_TTY_BAUDRATE,
        "sleep_after_open": SLCAN_SLEEP_AFTER_OPEN,
    }
    assert SLCAN_TTY_BAUDRATE == 115_200
    assert CanConfig("virtual", "x").bus_kwargs() == {
        "interface": "virtual",
        "channel": "x",
        "receive_own_messages": False,
    }


@pytest.mark.parametrize(
    ("interface", "channel", "bitrate"),
    [
        ("pcan", "0", 500_000),
        ("socketcan", " ", 500_000),
        ("slcan", "/dev/x", 0),
        # candleLight adapters are socketcan interfaces through the kernel's driver.
        ("gs_usb", "0", 500_000),
    ],
)
def test_bad_config_is_refused(interface: Any, channel: str, bitrate: int) -> None:
    with pytest.raises(ValueError, match=r"interface|channel|bitrate"):
        CanConfig(interface, channel, bitrate)


async def test_open_errors_become_can_link_errors(rig: Rig) -> None:
    bus = await rig.in_thread(CanConfig("virtual", rig.channel).open)
    assert isinstance(bus, VirtualBus)
    bus.shutdown()
    missing = CanConfig("slcan", f"/tmp/{uuid.uuid4().hex}/ttyACM0")
    with pytest.raises(CanLinkError, match="cannot open slcan") as caught:
        await rig.in_thread(missing.open)
    assert isinstance(caught.value, ProtocolError)

    link, _ = rig.link(missing)
    with pytest.raises(CanLinkError):
        await link.start()

    def refuse(_config: CanConfig) -> can.BusABC:
        raise OSError(errno.ENODEV, "No such device")

    link, _ = rig.link(open_bus=refuse)
    with pytest.raises(CanLinkError, match="No such device"):
        await link.start()
    assert not link.connected
    assert not link_threads()


async def test_argument_checks(rig: Rig) -> None:
    with pytest.raises(ValueError, match="period"):
        BmsSender(period=MIN_PERIOD / 2)
    with pytest.raises(ValueError, match="stagger"):
        BmsSender(stagger=MIN_PERIOD)
    with pytest.raises(ValueError, match="backoff"):
        rig.link(min_backoff=2.0, max_backoff=1.0)
    sender = rig.sender()
    bus = rig.bus(FaultyBus)
    assert sender.period == 1.0
    assert not sender.running
    assert not await rig.in_thread(sender.wait_sent, 0.1)
    with pytest.raises(RuntimeError):
        sender.update(FRAMES)
    with pytest.raises(ValueError, match="no BMS frames"):
        sender.start(bus, {})
    with pytest.raises(ValueError, match="at most 8"):
        sender.start(bus, {ID_SOC: bytes(9)})
    with pytest.raises(ValueError, match="11-bit"):
        sender.start(bus, {0x800: b""})
    sender.stop()  # not running: nothing to do

    sender.start(bus, {ID_SOC: FRAMES[ID_SOC]})
    assert await wait_until(lambda: sender.running, 0.1)
    with pytest.raises(RuntimeError):
        sender.start(bus, FRAMES)
    with pytest.raises(ValueError, match="not started"):
        sender.update({ID_CHARGE_LIMITS: FRAMES[ID_CHARGE_LIMITS]})
    assert sender.frames == {ID_SOC: FRAMES[ID_SOC]}
    bus.fail_sends = True  # counted; the task keeps trying
    assert await wait_until(lambda: sender.send_errors >= 1, 2.0)
    await rig.in_thread(sender.stop)
    assert not sender.running

    sender.start(bus, FRAMES)  # stopped while the later ids still wait for their turn
    await rig.in_thread(sender.stop)
    assert link_threads() == []

    link, _ = rig.link()
    await link.start()
    with pytest.raises(RuntimeError):
        await link.start()
    link.send_bms({ID_SOC: FRAMES[ID_SOC]})
    with pytest.raises(ValueError, match="not sent before"):
        link.send_bms({ID_ALARMS: FRAMES[ID_ALARMS]})
    assert link.config == CanConfig("virtual", rig.channel)


# --- BMS frames on a virtual bus ------------------------------------------------------------------


async def test_frames_every_second_updated_in_place_and_si_frames_on_the_loop(rig: Rig) -> None:
    sim = await rig.si()
    link, seen = rig.link()
    await link.start()
    assert link.connected
    started = time.time()
    link.send_bms(FRAMES)
    assert link.bms_running

    # First frames at once, the six ids staggered (20 ms apart in encoder order when the machine
    # is idle): spread over the first period rather than sent as one burst. The thread timers
    # behind them can be late under load, so only the spread and the order are held tight.
    assert await wait_until(lambda: all(arrivals(sim, i) for i in BMS_FRAME_IDS), 1.0)
    first = [sim.received[i][0] for i in FRAMES]
    assert first[0] - started < 0.3
    assert all(0.0 <= later - earlier <= 0.2 for earlier, later in itertools.pairwise(first))
    assert first[-1] - first[0] >= 0.05
    assert sim.last_values[ID_CHARGE_LIMITS] == {
        "charge_voltage": 55.2,
        "charge_current_limit": 50.0,
        "discharge_current_limit": 100.0,
        "discharge_voltage": 44.0,
    }
    assert sim.accepted["soc"] == 60.0

    # New data in place: the SOC frame changes at its next slot. No extra frame goes out (the
    # cadence check at the end covers the whole run, the update included).
    assert await wait_until(lambda: arrivals(sim, ID_SOC) >= 3, 3.0)
    before = arrivals(sim, ID_SOC)
    link.send_bms(encode_bms_frames(dataclasses.replace(STATE, soc=61.0)))
    link.send_bms(encode_bms_frames(dataclasses.replace(STATE, soc=61.0)))  # unchanged: no-op
    assert await wait_until(lambda: arrivals(sim, ID_SOC) == before + 2, 2.3)
    assert sim.last_values[ID_SOC] == {"soc": 61.0, "soh": 99.0}

    # The SI's broadcasts reach on_frame on the loop thread, decoded as the SI sent them: the
    # SOC it reports is the one it accepted from us.
    sim.send_error_frame()
    assert await wait_until(lambda: link.error_frames == 1, 1.0)
    assert await wait_until(
        lambda: decode_si_frame(ID_BATTERY, seen.last(ID_BATTERY))["battery_soc"] == 61.0, 1.5
    )
    assert seen.threads == {threading.get_ident()}
    assert {key for key, _, _ in seen.frames} <= set(SI_FRAME_IDS)
    assert link.rx_frames >= len(seen.frames) > 0
    assert link.last_rx is not None
    assert time.monotonic() - link.last_rx < 1.5

    # Other traffic is counted, not handed over.
    peer = rig.bus(lambda channel: can.Bus(interface="virtual", channel=channel))
    received = link.rx_frames
    peer.send(can.Message(arbitration_id=0x123, data=b"\x01", is_extended_id=False))
    peer.send(can.Message(arbitration_id=ID_BATTERY, data=bytes(8), is_extended_id=True))
    peer.send(can.Message(arbitration_id=ID_BATTERY, is_remote_frame=True, is_extended_id=False))
    assert await wait_until(lambda: link.rx_frames >= received + 3, 1.0)
    await asyncio.sleep(0.05)  # anything handed to the loop has run by now
    assert {key for key, _, _ in seen.frames} <= set(SI_FRAME_IDS)
    # The SI's own 0x305 carries a live battery voltage: never all zeros, never empty.
    assert all(data not in (bytes(8), b"") for key, data, _ in seen.frames if key == ID_BATTERY)

    assert_cadence(sim, BMS_FRAME_IDS, minimum=3)
    assert sim.min_interval_violations == 0
    assert seen.states == []
    assert link.send_errors == 0


async def test_blocked_event_loop_does_not_delay_the_frames(rig: Rig) -> None:
    """DESIGN invariant 1: the loop is stuck for 2.5 s; 0x351/0x355 keep their 1 s cadence."""
    sim = await rig.si()
    link, _ = rig.link()
    await link.start()
    link.send_bms(FRAMES)
    assert await wait_until(lambda: arrivals(sim, ID_SOC) >= 2, 2.0)
    window: list[float] = []

    def block() -> None:
        window.append(time.time())
        time.sleep(2.5)  # a misbehaving callback somewhere in Home Assistant
        window.append(time.time())

    rig.loop.call_soon(block)
    await asyncio.sleep(0)
    await asyncio.sleep(0.6)  # let the simulator take in what queued up while blocked
    start, end = window
    for arbitration_id in (ID_CHARGE_LIMITS, ID_SOC):
        during = [t for t in sim.received[arbitration_id] if start <= t <= end]
        assert len(during) >= 2, (hex(arbitration_id), during)
    assert_cadence(sim, (ID_CHARGE_LIMITS, ID_SOC), minimum=4)
    assert sim.min_interval_violations == 0


async def test_stop_ends_with_safe_frames_through_one_amp(rig: Rig) -> None:
    """DESIGN invariant 6: the last frames on the wire are safe ones, confirmed before the stop.

    The caller only passes its last state (SOC 59 %, CCL still 50 A); the link steps CCL to
    1 A, waits until that frame is out, then 0 A with SOC held and W947 raised, waits again.
    """
    sim = await rig.si()
    link, seen = rig.link()
    await link.start()
    link.send_bms(FRAMES)
    assert await wait_until(lambda: arrivals(sim, ID_CHARGE_LIMITS) >= 2, 2.0)
    latest = encode_bms_frames(dataclasses.replace(STATE, soc=59.0))

    began = time.monotonic()
    await link.send_final_and_stop(latest)
    took = time.monotonic() - began
    assert took < 2 * (1.0 + FINAL_WAIT_MARGIN) + 0.3  # two confirmed steps at most
    assert not link.bms_running
    assert not link.connected
    assert link_threads() == []

    await asyncio.sleep(0.1)  # the simulator's notifier hands over the last frames
    charge = sim.sent_values(ID_CHARGE_LIMITS, "charge_current_limit")
    assert [ccl for _, ccl in charge[-3:]] == [50.0, 1.0, 0.0]
    (one_amp_at, _), (zero_at, _) = charge[-2:]
    assert zero_at - one_amp_at >= 1.0 - TOLERANCE  # the 1 A step held for a full period
    assert (sim.accepted_ccl, sim.accepted_soc) == (0.0, 59.0)
    assert (sim.accepted_cvl, sim.accepted_dcl, sim.accepted_dvl) == (55.2, 100.0, 44.0)
    assert sim.warnings == {"W947"}
    assert sim.last_values[ID_SOC] == decode_bms_frame(ID_SOC, latest[ID_SOC])
    assert sim.last_values[ID_MANUFACTURER] == {"manufacturer": "TEST"}
    counts = {i: arrivals(sim, i) for i in BMS_FRAME_IDS}

    frames_seen = len(seen.frames)
    link.send_bms(FRAMES)  # after the stop: ignored
    await link.send_final_and_stop(FRAMES)  # idempotent
    await link.close()
    await asyncio.sleep(1.3)
    assert {i: arrivals(sim, i) for i in BMS_FRAME_IDS} == counts
    assert len(seen.frames) == frames_seen
    assert sim.min_interval_violations == 0


async def test_stop_without_safe_frames_sends_the_given_ones(rig: Rig) -> None:
    """``safe=False`` keeps the old contract: the given frames are the last state."""
    sim = await rig.si()
    link, _ = rig.link(period=0.5)
    await link.start()
    link.send_bms(FRAMES)
    assert await wait_until(lambda: arrivals(sim, ID_CHARGE_LIMITS) >= 1, 1.0)
    final = encode_bms_frames(dataclasses.replace(STATE, charge_current_limit=7.0))
    await link.send_final_and_stop(final, safe=False)
    await asyncio.sleep(0.1)
    assert sim.accepted_ccl == 7.0
    assert sim.warnings == frozenset()


async def test_send_bms_before_start_and_close_without_frames(rig: Rig) -> None:
    sim = await rig.si()
    link, _ = rig.link()
    link.send_bms(FRAMES)  # remembered: the frames start with the bus
    assert not link.bms_running
    await link.start()
    assert await wait_until(lambda: link.bms_running, 0.1)
    assert await wait_until(lambda: arrivals(sim, ID_SOC) >= 1, 1.0)
    await link.close()
    assert not link.bms_running
    assert link_threads() == []


# --- slcan through the simulated CANable ----------------------------------------------------------


async def test_slcan_both_ways_unplug_and_replug(rig: Rig) -> None:
    adapter = await rig.adapter()
    sim = await rig.si()
    link, seen = rig.link(CanConfig("slcan", adapter.port), min_backoff=0.2, max_backoff=0.4)
    await link.start()
    link.send_bms(FRAMES)

    assert await wait_until(lambda: arrivals(sim, ID_SOC) >= 3, 3.0)
    assert await wait_until(lambda: any(key == ID_BATTERY for key, _, _ in seen.frames), 1.5)
    assert sim.accepted["charge_voltage"] == 55.2
    assert decode_si_frame(ID_BATTERY, seen.last(ID_BATTERY))["battery_soc"] == 60.0
    assert seen.threads == {threading.get_ident()}
    assert_cadence(sim, (ID_CHARGE_LIMITS, ID_SOC), minimum=2)

    await adapter.unplug()
    assert await wait_until(lambda: seen.states != [], 2.0)
    await asyncio.sleep(0.8)  # several failed reopen attempts: still reported once
    assert len(seen.states) == 1
    up, reason = seen.states[0]
    assert not up
    assert reason
    assert "serial" in reason
    assert not link.connected
    assert not link.bms_running

    await adapter.replug()
    replugged = time.time()
    assert await wait_until(lambda: len(seen.states) == 2, 3.0)
    assert seen.states[1] == (True, None)
    assert await wait_until(lambda: link.connected, 0.1)
    assert link.reconnects >= 1
    assert await wait_until(
        lambda: len([t for t in sim.received[ID_SOC] if t > replugged]) >= 2, 3.0
    )
    assert sim.fault is None
    assert sim.min_interval_violations == 0


async def test_slcan_noise_and_bus_off_do_not_drop_the_link(rig: Rig) -> None:
    adapter = await rig.adapter()
    sim = await rig.si(interval=0.25)
    link, seen = rig.link(CanConfig("slcan", adapter.port), min_backoff=0.1, max_backoff=0.2)
    await link.start()
    link.send_bms(FRAMES)
    assert await wait_until(lambda: arrivals(sim, ID_SOC) >= 1 and link.rx_frames > 0, 2.0)

    # Printable noise is skipped by the driver; these lines make it raise.
    adapter.inject_garbage(DEFAULT_GARBAGE)
    for count, noise in enumerate((b"t3\r", b"t3058ZZ\r", b"\xff\xfe\r"), 1):
        adapter.inject_garbage(noise)  # truncated, bad hex, not text
        assert await wait_until(reaches(lambda: link.line_errors, count), 1.0), noise
    received = link.rx_frames
    assert await wait_until(lambda: link.rx_frames >= received + 3, 1.5)

    # Bus-off: nothing either way for a while, then everything flows again.
    adapter.bus_off(1.0)
    await asyncio.sleep(1.1)
    bms = arrivals(sim, ID_SOC)
    assert await wait_until(lambda: arrivals(sim, ID_SOC) > bms, 1.5)
    assert seen.states == []
    assert link.connected

    # Endless noise is a dead line: reopen.
    adapter.inject_garbage(b"t3\r" * (MAX_NOISE_IN_A_ROW + 1))
    assert await wait_until(lambda: len(seen.states) == 2, 3.0)
    assert seen.states[0][0] is False
    assert "line noise" in str(seen.states[0][1])
    assert seen.states[1] == (True, None)
    assert sim.min_interval_violations == 0


# --- faults ---------------------------------------------------------------------------------------


async def test_failing_sends_reopen_the_bus(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    sim = await rig.si(interval=0.2)
    opened: list[FaultyBus] = []

    def open_bus(config: CanConfig) -> can.BusABC:
        bus = FaultyBus(config.channel)
        opened.append(bus)
        return bus

    link, seen = rig.link(period=0.3, min_backoff=0.1, max_backoff=0.2, open_bus=open_bus)
    await link.start()
    link.send_bms(FRAMES)
    assert await wait_until(lambda: arrivals(sim, ID_SOC) >= 2, 1.0)
    opened[0].fail_sends = True
    assert await wait_until(lambda: len(seen.states) == 2, 3.0)
    assert seen.states[0] == (False, "sending failed: adapter refused the frame")
    assert seen.states[1] == (True, None)
    assert link.send_errors >= SEND_ERRORS_BEFORE_REOPEN
    assert len(opened) == 2
    assert link.reconnects == 1
    resumed = arrivals(sim, ID_SOC)
    assert await wait_until(lambda: arrivals(sim, ID_SOC) >= resumed + 2, 1.5)
    assert sim.min_interval_violations == 0

    # The adapter fails again while stopping: the final frames cannot be confirmed.
    opened[1].fail_sends = True
    await link.send_final_and_stop(encode_bms_frames(dataclasses.replace(STATE, soc=5.0)))
    assert "final BMS frames may not have been sent" in caplog.text
    assert link_threads() == []


async def test_a_failure_is_reported_once_until_frames_flow(rig: Rig) -> None:
    """No Sunny Island on the bus: reopened buses fail again, still one on_state(False)."""
    opened: list[FaultyBus] = []
    refuse = threading.Event()

    def open_bus(config: CanConfig) -> can.BusABC:
        if refuse.is_set():
            raise can.CanInitializationError("adapter not there")
        bus = FaultyBus(config.channel)
        opened.append(bus)
        return bus

    link, seen = rig.link(min_backoff=0.05, max_backoff=0.05, open_bus=open_bus)
    await link.start()
    for count in (1, 2):
        opened[-1].shutdown()
        assert await wait_until(reaches(lambda: link.reconnects, count), 1.0)
    assert len(seen.states) == 1
    assert seen.states[0][0] is False
    assert not link.connected
    assert not link.bms_running  # nothing to send yet

    refuse.set()
    opened[-1].shutdown()
    await asyncio.sleep(0.2)  # reopen attempts fail
    await link.close()  # ends the back-off loop
    assert link_threads() == []
    assert len(seen.states) == 1


async def test_reopen_backs_off_until_the_bus_returns(rig: Rig) -> None:
    sim = await rig.si(interval=0.2)
    attempts: list[float] = []
    opened: list[can.BusABC] = []

    def open_bus(config: CanConfig) -> can.BusABC:
        attempts.append(time.monotonic())
        if 1 < len(attempts) < 4:
            raise can.CanInitializationError("adapter not there")
        bus = FaultyBus(config.channel)
        opened.append(bus)
        return bus

    link, seen = rig.link(period=0.3, min_backoff=0.1, max_backoff=0.25, open_bus=open_bus)
    await link.start()
    link.send_bms(FRAMES)
    assert await wait_until(lambda: arrivals(sim, ID_SOC) >= 1, 1.0)
    opened[0].shutdown()  # the adapter vanishes under the reader
    assert await wait_until(lambda: len(seen.states) == 2, 3.0)
    assert seen.states[0][0] is False
    assert "closed bus" in str(seen.states[0][1])
    assert seen.states[1] == (True, None)
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts[1:])]
    assert len(gaps) == 2
    assert gaps[0] >= 0.18  # 0.1 s, then 0.2 s, then capped at 0.25 s
    assert 0.22 <= gaps[1] <= 0.4
    assert link.bms_running
    resumed = arrivals(sim, ID_SOC)
    assert await wait_until(lambda: arrivals(sim, ID_SOC) >= resumed + 2, 1.5)


async def test_close_while_reopening(rig: Rig) -> None:
    entered = threading.Event()
    release = threading.Event()
    calls: list[can.BusABC] = []

    def open_bus(config: CanConfig) -> can.BusABC:
        if calls:
            entered.set()
            release.wait(5.0)  # a slow adapter that answers only after the close began
        bus = FaultyBus(config.channel)
        calls.append(bus)
        return bus

    link, seen = rig.link(period=0.3, min_backoff=0.05, max_backoff=0.05, open_bus=open_bus)
    link.send_bms(FRAMES)
    await link.start()
    calls[0].shutdown()
    assert await wait_until(entered.is_set, 2.0)
    assert seen.states[0][0] is False
    closing = asyncio.ensure_future(link.send_final_and_stop(FRAMES))
    await asyncio.sleep(0.1)
    release.set()
    await closing
    assert len(calls) == 2
    assert calls[1]._is_shutdown  # the late bus was shut down, not used
    assert not link.bms_running
    assert link_threads() == []


async def test_a_late_frame_is_not_followed_by_an_early_one(rig: Rig) -> None:
    """A send that stalls 150 ms (a slow adapter, a GC pause): the next frame comes a full
    period after it, not on the old grid, which would make that gap 150 ms short."""
    sim = await rig.si()
    bus = rig.bus(FaultyBus)
    sender = rig.sender(0.5)
    sender.start(bus, FRAMES)
    assert await wait_until(lambda: arrivals(sim, ID_SOC) >= 2, 1.5)
    bus.stall_next_send = 0.15
    await asyncio.sleep(2.0)
    await rig.in_thread(sender.stop)
    periods = {arbitration_id: sim.periods(arbitration_id) for arbitration_id in FRAMES}
    for arbitration_id, gaps in periods.items():  # ids that waited behind it were late too
        assert min(gaps) >= 0.5 - TOLERANCE / 2, (hex(arbitration_id), gaps)  # never early
    stalled = max(periods.values(), key=max)
    late = stalled.index(max(stalled))
    assert 0.5 + 0.1 < stalled[late] < 0.5 + 0.15 + TOLERANCE / 2, stalled
    assert stalled[late + 1] == pytest.approx(0.5, abs=TOLERANCE / 2), stalled


async def test_stalled_send_never_bursts(rig: Rig) -> None:
    """A send that hangs 1.3 s: python-can's own task then bursts, the paced one does not."""
    sim = await rig.si()
    bus = rig.bus(FaultyBus)
    sender = rig.sender(0.5)
    ours = {key: value for key, value in FRAMES.items() if key != ID_BATTERY_INFO}
    sender.start(bus, ours)
    message = can.Message(
        arbitration_id=ID_BATTERY_INFO, data=FRAMES[ID_BATTERY_INFO], is_extended_id=False
    )
    raw = bus.send_periodic(message, 0.5)
    assert isinstance(raw, ThreadBasedCyclicSendTask)
    try:
        assert await wait_until(lambda: arrivals(sim, ID_SOC) >= 2, 1.5)
        bus.stall_next_send = 1.3
        await asyncio.sleep(3.0)
    finally:
        raw.stop()
        assert raw.thread is not None
        await rig.in_thread(raw.thread.join, 2.0)
    assert min(sim.periods(ID_BATTERY_INFO)) < MIN_PERIOD  # the unpaced task caught up in a burst
    for arbitration_id in ours:
        gaps = sim.periods(arbitration_id)
        assert min(gaps) >= MIN_PERIOD, (hex(arbitration_id), gaps)
        assert all(abs(gap - 0.5) <= TOLERANCE for gap in gaps[-2:]), gaps  # back on the grid

    # A restart right after a stop still keeps 200 ms between two frames of an id.
    await rig.in_thread(sender.stop)
    stopped = time.time()
    sender.start(bus, ours)
    assert await wait_until(lambda: sim.received[ID_SOC][-1] > stopped, 1.0)
    for arbitration_id in ours:
        assert min(sim.periods(arbitration_id)) >= MIN_PERIOD


async def test_kernel_timer_backend(rig: Rig) -> None:
    """A backend that owns the timer (socketcan BCM): same cadence, wait_sent waits a period."""
    sim = await rig.si()
    bus = rig.bus(KernelTimerBus)
    errors: list[Exception] = []
    sender = rig.sender(on_send_error=errors.append)
    sender.start(bus, FRAMES)
    sender.update(FRAMES)  # unchanged: nothing to do
    changed = encode_bms_frames(dataclasses.replace(STATE, soc=42.0))
    sender.update({ID_SOC: changed[ID_SOC]})  # before or after its task started: both work
    assert await rig.in_thread(sender.wait_sent, 0.5)  # the kernel announces on start
    assert await wait_until(lambda: sim.last_values.get(ID_SOC, {}).get("soc") == 42.0, 0.5)
    assert await wait_until(lambda: arrivals(sim, ID_SOC) >= 3, 2.5)

    began = time.monotonic()
    sender.update({ID_SOC: FRAMES[ID_SOC], ID_MANUFACTURER: b"OTHER   "})
    assert not await rig.in_thread(sender.wait_sent, 0.3)
    assert await rig.in_thread(sender.wait_sent, 2.0)
    assert time.monotonic() - began >= 1.0
    await asyncio.sleep(0.05)
    assert sim.last_values[ID_MANUFACTURER] == {"manufacturer": "OTHER"}
    assert_cadence(sim, BMS_FRAME_IDS, minimum=2)
    assert sim.min_interval_violations == 0

    await rig.in_thread(sender.stop)
    bus.fail_start = True  # the interface went away: every TX_SETUP is refused
    sender.start(bus, FRAMES)
    assert await wait_until(lambda: len(errors) == len(FRAMES), 1.5)
    assert sender.send_errors == len(FRAMES)
    assert isinstance(errors[0], OSError)
    await rig.in_thread(sender.stop)  # TX_DELETE of tasks never set up is refused: ignored
    assert not sender.running


async def test_kernel_timer_backend_failures_reopen(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    sim = await rig.si(interval=0.2)
    opened: list[KernelTimerBus] = []

    def open_bus(config: CanConfig) -> can.BusABC:
        bus = KernelTimerBus(config.channel)
        bus.fail_periodic = not opened  # the first bus refuses to create periodic tasks
        opened.append(bus)
        return bus

    link, seen = rig.link(period=0.3, min_backoff=0.05, max_backoff=0.1, open_bus=open_bus)
    await link.start()
    link.send_bms(FRAMES)
    assert not link.bms_running
    assert await wait_until(lambda: len(seen.states) == 2, 2.0)
    assert seen.states[0] == (False, "cannot start the BMS frames: BCM socket refused")
    assert await wait_until(lambda: link.bms_running, 0.1)
    assert await wait_until(lambda: arrivals(sim, ID_SOC) >= 1, 1.0)

    opened[1].fail_modify = True
    link.send_bms(encode_bms_frames(dataclasses.replace(STATE, soc=10.0)))
    assert await wait_until(lambda: len(seen.states) == 4, 2.0)
    assert seen.states[2] == (False, "cannot update the BMS frames: [Errno 100] Network is down")
    assert await wait_until(lambda: len(opened) == 3 and link.bms_running, 1.0)
    resumed = arrivals(sim, ID_SOC)
    assert await wait_until(lambda: arrivals(sim, ID_SOC) > resumed, 1.0)  # its task runs

    opened[2].fail_modify = True
    await link.send_final_and_stop(encode_bms_frames(dataclasses.replace(STATE, soc=11.0)))
    assert "final BMS frames not accepted" in caplog.text
    assert link_threads() == []
    assert sim.min_interval_violations == 0


class BurstNoiseBus(VirtualBus):
    """After each frame, the next immediate read hits a malformed line (slcan-style noise)."""

    def __init__(self, channel: str) -> None:
        super().__init__(channel=channel, receive_own_messages=False)
        self.noise_after_frame = False
        self.noise_raised = 0

    def recv(self, timeout: float | None = None) -> can.Message | None:
        if timeout == 0 and self.noise_after_frame:
            self.noise_after_frame = False
            self.noise_raised += 1
            raise ValueError("truncated slcan line")
        message = super().recv(timeout)
        if message is not None:
            self.noise_after_frame = True
        return message


async def test_a_burst_is_handed_over_together_and_noise_inside_it_loses_nothing(
    rig: Rig,
) -> None:
    opened: list[BurstNoiseBus] = []

    def open_bus(config: CanConfig) -> can.BusABC:
        bus = BurstNoiseBus(config.channel)
        opened.append(bus)
        return bus

    link, seen = rig.link(open_bus=open_bus)
    await link.start()
    peer = rig.bus(lambda channel: VirtualBus(channel=channel, receive_own_messages=False))
    burst = [
        can.Message(
            arbitration_id=0x305,
            is_extended_id=False,
            data=bytes([n, 2, 0xF6, 0xFF, 0xDC, 0, 0x76, 2]),
        )
        for n in range(40)
    ]
    for message in burst:
        peer.send(message)
    arrived = await wait_until(lambda: len(seen.frames) == 40)
    assert arrived, (len(seen.frames), opened[0].noise_raised, link.line_errors)
    # Every frame arrived in order; the noise inside the burst was skipped, not fatal.
    assert [data[0] for _, data, _ in seen.frames] == list(range(40))
    assert opened[0].noise_raised >= 1
    assert link.line_errors == opened[0].noise_raised
    assert seen.states == []


# --- dead-man guard (DESIGN invariant 7) ----------------------------------------------------------

GUARD = 1.0
"""Guard time of the guard tests, s: long enough for a loaded machine, short enough for CI."""
SAFE_WITHIN = 1.5
"""After the guard time, the SI must have taken CCL 0 A within this much longer, s."""


def first_zero_ccl_after(sim: SunnyIslandSimulator, since: float) -> float | None:
    """Bus time of the first 0x351 with CCL 0 A sent after ``since`` (epoch s)."""
    return next(
        (
            stamp
            for stamp, ccl in sim.sent_values(ID_CHARGE_LIMITS, "charge_current_limit")
            if stamp > since and ccl == 0.0
        ),
        None,
    )


async def test_guard_makes_the_frames_safe_by_itself_while_the_loop_is_blocked(rig: Rig) -> None:
    """No confirmation for the guard time: CCL 0 A, SOC held, W947, from the sender's own thread
    while the event loop is stuck; fresh frames bring everything back."""
    sim = await rig.si()
    reported: list[tuple[bool, int]] = []
    link, _ = rig.link(
        guard_time=GUARD,
        on_guard=lambda tripped: reported.append((tripped, threading.get_ident())),
    )
    assert link.guard_time == GUARD
    await link.start()
    link.send_bms(FRAMES)
    assert await wait_until(lambda: arrivals(sim, ID_CHARGE_LIMITS) >= 1, 1.0)
    await asyncio.sleep(0.5)
    link.send_bms(FRAMES)  # the last confirmation
    confirmed = time.time()

    rig.loop.call_soon(time.sleep, GUARD + SAFE_WITHIN)  # Home Assistant hangs
    await asyncio.sleep(0)
    await asyncio.sleep(0.2)  # the simulator takes in what queued up meanwhile
    zero = first_zero_ccl_after(sim, confirmed)
    assert zero is not None, sim.sent_values(ID_CHARGE_LIMITS, "charge_current_limit")
    assert GUARD - TOLERANCE <= zero - confirmed <= GUARD + SAFE_WITHIN
    assert (sim.accepted_ccl, sim.accepted_soc) == (0.0, 60.0)  # SOC held
    assert (sim.accepted_cvl, sim.accepted_dcl, sim.accepted_dvl) == (55.2, 100.0, 44.0)
    assert sim.warnings == {"W947"}
    assert link.guard_tripped
    assert link.guard_trips == 1
    assert link.bms_frames == safe_bms_frames(FRAMES)
    assert await wait_until(lambda: reported != [], 0.5)
    assert reported == [(True, threading.get_ident())]  # on the loop

    link.send_bms(FRAMES)  # fresh frames end the safe state
    assert await sim.wait_until(lambda: sim.accepted_ccl == 50.0 and not sim.warnings, 1.5)
    assert not fresh(link.guard_tripped)
    assert await wait_until(lambda: len(reported) == 2, 0.5)
    assert reported[1][0] is False
    assert link.guard_trips == 1
    # Swapping the payloads in place never disturbed the cadence.
    assert_cadence(sim, (ID_CHARGE_LIMITS, ID_SOC), minimum=4)
    assert sim.min_interval_violations == 0

    # A stop after a trip goes straight to 0 A: the 1 A step never raises the limit again.
    link.guard_time = 0.3
    assert await sim.wait_until(lambda: sim.accepted_ccl == 0.0, 0.3 + SAFE_WITHIN)
    tripped_at = time.time()
    await link.send_final_and_stop()
    await asyncio.sleep(0.1)
    charge = sim.sent_values(ID_CHARGE_LIMITS, "charge_current_limit")
    assert {ccl for stamp, ccl in charge if stamp > tripped_at} <= {0.0}
    assert charge[-1][1] == 0.0
    assert link.guard_trips == 2


async def test_confirm_keeps_frames_alive_but_never_ends_the_safe_state(rig: Rig) -> None:
    sim = await rig.si()
    bus = rig.bus(FaultyBus)
    trips: list[int] = []
    sender = rig.sender(0.25, guard_time=0.5, on_guard_trip=lambda: trips.append(1))
    assert not sender.confirm()  # not running
    sender.start(bus, FRAMES)
    for _ in range(8):  # 0.8 s, longer than the guard time, confirmed all along
        await asyncio.sleep(0.1)
        assert sender.confirm()
    assert not sender.guard_tripped
    assert await wait_until(lambda: sender.guard_tripped, 0.5 + SAFE_WITHIN)
    assert await wait_until(lambda: trips == [1], 0.5)
    assert not sender.confirm()  # old frames are not vouched for by a bare confirmation
    assert charge_current_limit_of(sender.frames) == 0.0
    assert await sim.wait_until(lambda: sim.accepted_ccl == 0.0, 1.0)

    sender.update({ID_SOC: FRAMES[ID_SOC]})  # any fresh frames: every id comes back
    assert sender.frames == FRAMES
    assert not sender.guard_tripped
    assert await sim.wait_until(lambda: sim.accepted_ccl == 50.0, 1.0)

    # The guard time changes live; a shorter one trips at once when already exceeded.
    await asyncio.sleep(0.3)
    sender.guard_time = 0.2
    assert await wait_until(lambda: sender.guard_tripped, 0.2)
    assert sender.guard_trips == 2
    for bad in (0.0, -1.0, 60.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="guard_time"):
            sender.guard_time = bad
        with pytest.raises(ValueError, match="guard_time"):
            BmsSender(guard_time=bad)
    assert DEFAULT_GUARD_TIME == 10.0
    assert BmsSender().guard_time == DEFAULT_GUARD_TIME
    await rig.in_thread(sender.stop)
    assert link_threads() == []
    assert sim.min_interval_violations == 0


async def test_guard_and_safe_stop_on_a_kernel_timer_backend(rig: Rig) -> None:
    """socketcan's BCM keeps sending the data it was given last: the guard changes that data in
    place (modify_data, no restart, the kernel's timer keeps its phase); a stop does too."""
    sim = await rig.si()
    opened: list[KernelTimerBus] = []

    def open_bus(config: CanConfig) -> can.BusABC:
        bus = KernelTimerBus(config.channel)
        opened.append(bus)
        return bus

    link, _ = rig.link(period=0.5, guard_time=0.6, open_bus=open_bus)
    await link.start()
    link.send_bms(FRAMES)
    confirmed = time.time()
    assert await sim.wait_until(lambda: sim.accepted_ccl == 50.0, 1.0)
    assert await sim.wait_until(
        lambda: sim.accepted_ccl == 0.0 and sim.warnings == {"W947"}, 0.6 + SAFE_WITHIN
    )
    zero = first_zero_ccl_after(sim, confirmed)
    assert zero is not None
    assert zero - confirmed <= 0.6 + SAFE_WITHIN
    assert sim.accepted_soc == 60.0
    (bus,) = opened
    assert [task.starts for task in bus.tasks] == [1] * len(FRAMES)  # modified, not restarted
    assert sum(task.modifications for task in bus.tasks) == 2  # 0x351 and 0x35A

    link.send_bms(FRAMES)
    assert await sim.wait_until(lambda: sim.accepted_ccl == 50.0 and not sim.warnings, 1.0)
    stopping = time.time()
    await link.send_final_and_stop()
    await asyncio.sleep(0.1)
    tail = [c for t, c in sim.sent_values(ID_CHARGE_LIMITS, "charge_current_limit") if t > stopping]
    assert tail[-1] == 0.0
    assert 1.0 in tail
    assert tail.index(1.0) < tail.index(0.0)
    assert sim.accepted_ccl == 0.0
    assert_cadence(sim, (ID_CHARGE_LIMITS, ID_SOC), period=0.5, minimum=4)
    assert sim.min_interval_violations == 0
    assert link_threads() == []


async def test_frames_remembered_across_an_outage_come_back_safe(rig: Rig) -> None:
    """The adapter was gone for longer than the guard time and the controller said nothing
    since: the first frame after the reconnect is already a safe one."""
    sim = await rig.si(interval=0.2)
    opened: list[FaultyBus] = []
    refuse = threading.Event()
    reported: list[bool] = []

    def open_bus(config: CanConfig) -> can.BusABC:
        if refuse.is_set():
            raise can.CanInitializationError("adapter not there")
        bus = FaultyBus(config.channel)
        opened.append(bus)
        return bus

    link, seen = rig.link(
        period=0.3,
        guard_time=0.5,
        min_backoff=0.05,
        max_backoff=0.05,
        open_bus=open_bus,
        on_guard=reported.append,
    )
    await link.start()
    link.send_bms(FRAMES)
    assert await sim.wait_until(lambda: sim.accepted_ccl == 50.0, 1.0)
    refuse.set()
    opened[0].shutdown()  # unplugged
    assert await wait_until(lambda: seen.states != [], 1.0)
    await asyncio.sleep(0.8)  # longer than the guard time, nobody confirms
    replugged = time.time()
    refuse.clear()
    assert await wait_until(lambda: link.connected and link.bms_running, 1.0)
    assert await sim.wait_until(
        lambda: len([t for t in sim.received[ID_CHARGE_LIMITS] if t > replugged]) >= 2, 1.5
    )
    after = [
        c for t, c in sim.sent_values(ID_CHARGE_LIMITS, "charge_current_limit") if t > replugged
    ]
    assert set(after) == {0.0}, after
    assert link.guard_tripped
    assert await wait_until(lambda: reported == [True], 0.5)

    # Frames sent while the adapter is away are fresh when it returns: no safe state then.
    link.send_bms(FRAMES)
    assert await sim.wait_until(lambda: sim.accepted_ccl == 50.0, 1.0)
    assert await wait_until(lambda: reported == [True, False], 0.5)
    assert sim.min_interval_violations == 0


# --- 200 ms across senders (DESIGN invariant 2) ---------------------------------------------------


@pytest.mark.parametrize("factory", [FaultyBus, KernelTimerBus], ids=["paced", "kernel"])
async def test_a_new_sender_on_the_same_bus_keeps_the_inhibit_time(
    rig: Rig, factory: Callable[[str], can.BusABC]
) -> None:
    """A sender stopped right after its frames went out, a new one (another bus object on the
    same channel) started at once: its first frame of each id waits for the 200 ms."""
    sim = await rig.si()
    first, second = rig.sender(), rig.sender()
    first.start(rig.bus(factory), FRAMES)
    assert await wait_until(lambda: all(arrivals(sim, i) for i in FRAMES), 1.0)
    await rig.in_thread(first.stop)
    second.start(rig.bus(factory), FRAMES)
    assert await wait_until(lambda: all(arrivals(sim, i) >= 2 for i in FRAMES), 1.0)
    for arbitration_id in FRAMES:
        gap = sim.periods(arbitration_id)[0]
        assert gap >= MIN_PERIOD + INHIBIT_MARGIN - 0.01, (hex(arbitration_id), gap)
    assert sim.min_interval_violations == 0
    key = ("", f"Virtual bus channel {rig.channel}")
    assert last_send_free_at(key, ID_SOC) > time.perf_counter() - 1.0
    assert last_send_free_at(key, 0x123) == -math.inf


async def test_a_reloaded_link_keeps_the_inhibit_time(rig: Rig) -> None:
    """An entry reload: the old link ends with its safe frames and a new link on the same
    channel starts at once. The SI never sees two frames of one id closer than 200 ms."""
    sim = await rig.si()
    for _ in range(2):
        link, _ = rig.link(period=0.5)
        await link.start()
        link.send_bms(FRAMES)
        before = arrivals(sim, ID_CHARGE_LIMITS)
        assert await wait_until(lambda: arrivals(sim, ID_CHARGE_LIMITS) > before, 1.0)  # noqa: B023
        await link.send_final_and_stop()
    link, _ = rig.link(period=0.5)
    await link.start()
    link.send_bms(FRAMES)
    assert await sim.wait_until(lambda: sim.accepted_ccl == 50.0, 1.0)
    for arbitration_id in FRAMES:
        assert min(sim.periods(arbitration_id)) >= MIN_PERIOD, hex(arbitration_id)
    assert sim.min_interval_violations == 0


# --- 0x35A after a restart (DESIGN invariant 8) ---------------------------------------------------


async def test_an_alarm_clears_after_the_bms_restarts(rig: Rig) -> None:
    """The BMS raised an alarm and went away without a final state (a crash). The restarted BMS
    no longer sees the condition: its continuous "leaves" clears the SI's latched fault."""
    sim = await rig.si()
    link, _ = rig.link(period=0.5)
    await link.start()
    alarm = dataclasses.replace(STATE, alarms=encode_alarm_bits([AlarmItem.HIGH_TEMP]))
    link.send_bms(encode_bms_frames(alarm))
    assert await sim.wait_until(lambda: sim.faults == {"F923"}, 1.5)
    await link.close()

    link, _ = rig.link(period=0.5)
    await link.start()
    link.send_bms(FRAMES)
    assert await sim.wait_until(lambda: not sim.in_fault, 1.5)
    assert sim.running
    assert sim.min_interval_violations == 0


# --- any sequence (hypothesis) --------------------------------------------------------------------

H_PERIOD = 0.3
H_GUARD = 0.5

_OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.floats(0.0, 100.0), st.floats(0.0, 120.0)),
        st.tuples(st.just("silence"), st.floats(0.05, 1.5)),
        st.tuples(st.just("reload"), st.booleans()),
    ),
    min_size=1,
    max_size=5,
)


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(operations=_OPERATIONS)
async def test_any_sequence_keeps_the_inhibit_time_and_the_guard(
    operations: list[tuple[Any, ...]],
) -> None:
    """Random frames, confirmations, silences and reloads (with or without a final state):
    no two frames of one id closer than 200 ms at the SI, and once the guard time passed
    without a confirmation the SI works with CCL 0 A within ``SAFE_WITHIN`` more."""
    loop = asyncio.get_running_loop()
    channel = f"can-link-h-{uuid.uuid4().hex}"
    si_bus = can.Bus(interface="virtual", channel=channel, receive_own_messages=False)
    sim = SunnyIslandSimulator(si_bus, seed=1)
    await sim.start()
    links: list[CanLink] = []

    async def new_link() -> CanLink:
        link = CanLink(
            CanConfig("virtual", channel),
            loop=loop,
            on_frame=lambda *_: None,
            on_state=lambda *_: None,
            period=H_PERIOD,
            guard_time=H_GUARD,
        )
        links.append(link)
        await link.start()
        return link

    try:
        link = await new_link()
        confirmed: float | None = None
        for operation in operations:
            if operation[0] == "send":
                state = dataclasses.replace(
                    STATE, soc=operation[1], charge_current_limit=operation[2]
                )
                confirmed = time.time()
                link.send_bms(encode_bms_frames(state))
                await asyncio.sleep(0.05)
            elif operation[0] == "silence":
                await asyncio.sleep(operation[1])
            else:
                if operation[1]:
                    await link.send_final_and_stop()
                    if confirmed is not None:
                        await asyncio.sleep(0.1)
                        assert sim.accepted_ccl == 0.0
                else:
                    await link.close()
                link = await new_link()
                confirmed = None
            if confirmed is not None and time.time() - confirmed > H_GUARD + SAFE_WITHIN + 0.2:
                zero = first_zero_ccl_after(sim, confirmed)
                assert zero is not None
                assert zero - confirmed <= H_GUARD + SAFE_WITHIN
                assert sim.accepted_ccl == 0.0
        if confirmed is not None:  # no more confirmations from here on
            since = confirmed
            deadline = since + H_GUARD + SAFE_WITHIN
            assert await sim.wait_until(
                lambda: first_zero_ccl_after(sim, since) is not None,
                max(deadline - time.time(), 0.0) + 0.2,
            )
            zero = first_zero_ccl_after(sim, since)
            assert zero is not None
            assert zero <= deadline
            assert sim.accepted_ccl == 0.0
        await link.send_final_and_stop()
        await asyncio.sleep(0.1)
        assert sim.min_interval_violations == 0, {
            hex(i): min(sim.periods(i), default=None) for i in FRAMES
        }
    finally:
        for link in links:
            await link.close()
        await sim.stop()
        si_bus.shutdown()
