"""The simulated slcan USB-CAN adapter, driven by python-can's real ``slcan`` driver.

The client side is exactly what the integration runs against a CANable: ``can.Bus(interface=
"slcan", channel=<tty path>, bitrate=500000)`` on a kernel pty. The other side is a python-can
``virtual`` channel with a plain peer bus or the Sunny Island simulator on it. Protocol details
(replies, refusals, time stamps, state lines) are checked with a raw tty client.

Expected wire text: python-can opens with ``C\\r S6\\r \\r O\\r`` and then ``O\\r`` again;
frames are ``tIIILDD..\\r`` (upper-case hex); the adapter answers ``\\r`` (accepted) or ``\\a``
(refused), as the CANable firmware does; ``V`` -> ``V1011``, ``N`` -> ``NSV01``; a bus-off
controller reports ``F`` flags 0xA4 (error warning 0x04 | error passive 0x20 | bus error 0x80).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
import functools
import itertools
import os
from pathlib import Path
import termios
import time
import tty
from typing import Any
import uuid

import can
from hypothesis import given, settings, strategies as st
import pytest
import serial

from custom_components.sma_victron_bridge.protocols.sma_can import (
    ID_BATTERY,
    ID_CHARGE_LIMITS,
    ID_SOC,
    BmsFrameState,
    decode_si_frame,
    encode_bms_frames,
)
from custom_components.sma_victron_bridge.simulators.slcan import (
    DEFAULT_GARBAGE,
    POWER_ON_BITRATE,
    STATE_ACTIVE_LINE,
    STATE_BUS_OFF_LINE,
    SlcanAdapter,
)
from custom_components.sma_victron_bridge.simulators.sunny_island import SunnyIslandSimulator

FAST_OPEN = 0.05
"""python-can sleeps 2 s after opening the tty by default; the pty needs no settling time."""

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


# --- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture
def channel() -> str:
    return f"slcan-test-{uuid.uuid4().hex}"


@pytest.fixture
async def adapter(channel: str) -> AsyncIterator[SlcanAdapter]:
    device = SlcanAdapter(channel)
    await device.start()
    yield device
    await device.stop()


@pytest.fixture
def peer(channel: str) -> Iterator[can.BusABC]:
    """The device side: a plain bus on the adapter's virtual channel."""
    bus = can.Bus(interface="virtual", channel=channel, receive_own_messages=False)
    yield bus
    bus.shutdown()


class SlcanClients:
    """python-can slcan buses opened in an executor (the constructor sleeps), always shut down."""

    def __init__(self) -> None:
        self.buses: list[Any] = []
        self.tasks: list[Any] = []

    async def open(self, adapter: SlcanAdapter, **kwargs: Any) -> Any:
        """Open python-can's slcan bus on the adapter's tty, as the integration would."""
        kwargs.setdefault("bitrate", 500_000)
        kwargs.setdefault("sleep_after_open", FAST_OPEN)
        factory = functools.partial(can.Bus, interface="slcan", channel=adapter.port, **kwargs)
        bus = await asyncio.get_running_loop().run_in_executor(None, factory)
        self.buses.append(bus)
        # The constructor returns once its commands are written, not answered (it never reads
        # the replies): wait until the adapter has executed them.
        assert await wait_until(lambda: adapter.is_open)
        return bus

    def periodic(self, bus: Any, frame_id: int, data: bytes, period: float) -> Any:
        message = can.Message(arbitration_id=frame_id, data=data, is_extended_id=False)
        task = bus.send_periodic(message, period)
        self.tasks.append(task)
        return task

    def stop_periodic(self) -> None:
        for task in self.tasks:
            task.stop()
        for task in self.tasks:
            # python-can's thread-based task does not join its thread on stop().
            thread = getattr(task, "thread", None)
            if thread is not None:
                thread.join(2.0)
        self.tasks.clear()

    def close(self) -> None:
        self.stop_periodic()
        for bus in self.buses:
            try:
                bus.shutdown()
            except can.CanOperationError:
                # After an unplug, shutdown() fails on its "C" write before it closes the tty.
                bus.serialPortOrig.close()
        self.buses.clear()


@pytest.fixture
def clients() -> Iterator[SlcanClients]:
    opened = SlcanClients()
    yield opened
    opened.close()


async def in_thread(function: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking python-can call off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)


async def recv_all(bus: Any, count: int, timeout: float = 2.0) -> list[can.Message]:
    """Receive ``count`` frames from a blocking bus without blocking the loop."""
    deadline = time.monotonic() + timeout
    received: list[can.Message] = []
    while len(received) < count and (left := deadline - time.monotonic()) > 0:
        message = await in_thread(bus.recv, min(left, 0.2))
        if message is not None:
            received.append(message)
    return received


async def wait_until(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.01)
    return True


class RawClient:
    """A terminal program on the adapter's tty: writes commands, collects every byte back."""

    def __init__(self, path: str) -> None:
        self.loop = asyncio.get_running_loop()
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd, termios.TCSANOW)
        self.data = bytearray()
        self.loop.add_reader(self.fd, self._ready)

    def _ready(self) -> None:
        try:
            self.data += os.read(self.fd, 4096)
        except OSError:
            self.loop.remove_reader(self.fd)

    async def command(self, text: bytes, timeout: float = 1.0) -> bytes:
        """Send one command; return its answer (through the first CR or BEL)."""
        self.data.clear()
        os.write(self.fd, text)
        assert await wait_until(lambda: b"\r" in self.data or b"\a" in self.data, timeout)
        end = min(i for i in (self.data.find(b"\r"), self.data.find(b"\a")) if i >= 0)
        answer = bytes(self.data[: end + 1])
        del self.data[: end + 1]
        return answer

    async def lines(self, count: int, timeout: float = 1.0) -> list[bytes]:
        """Wait for ``count`` CR-terminated lines sent by the adapter on its own."""
        assert await wait_until(lambda: self.data.count(b"\r") >= count, timeout), self.data
        *lines, rest = bytes(self.data).split(b"\r")
        self.data[:] = rest
        return lines

    def close(self) -> None:
        self.loop.remove_reader(self.fd)
        os.close(self.fd)


@pytest.fixture
async def raw(adapter: SlcanAdapter) -> AsyncIterator[RawClient]:
    client = RawClient(adapter.port)
    yield client
    client.close()


def now(value: bool) -> bool:
    """Read a state flag through a call, so a type checker does not carry an earlier assert."""
    return value


def frame(frame_id: int, data: bytes = b"", **kwargs: Any) -> can.Message:
    kwargs.setdefault("is_extended_id", False)
    return can.Message(arbitration_id=frame_id, data=data, **kwargs)


# --- python-can's slcan driver through the adapter ----------------------------------------------


async def test_python_can_slcan_exchanges_frames_both_ways(
    adapter: SlcanAdapter, peer: can.BusABC, clients: SlcanClients
) -> None:
    assert adapter.bitrate == POWER_ON_BITRATE == 125_000
    # Default construction, 2 s settling sleep included: exactly what the integration does.
    bus = await clients.open(adapter, sleep_after_open=2.0)
    assert adapter.is_open
    assert adapter.bitrate == 500_000
    assert adapter.carrying
    # python-can's "C" on a closed and "O" on an open channel are both accepted, as by a CANable.
    assert adapter.errors == 0
    assert await in_thread(bus.get_version, 1.0) == (10, 11)
    assert await in_thread(bus.get_serial_number, 1.0) == "SV01"

    sent = [
        frame(0x351, bytes.fromhex("2802F401E803B801")),
        frame(0x35E, b"TEST\x00\x00\x00\x00"),
        frame(0x00F),
        frame(0x1ABCDEF0, b"\x01\x02\x03", is_extended_id=True),
        frame(0x123, is_remote_frame=True, dlc=4),
    ]
    for message in sent:
        await in_thread(bus.send, message)
    received = [await in_thread(peer.recv, 1.0) for _ in sent]
    assert [
        (m.arbitration_id, m.is_extended_id, m.is_remote_frame, m.dlc, bytes(m.data))
        for m in received
        if m is not None
    ] == [
        (0x351, False, False, 8, bytes.fromhex("2802F401E803B801")),
        (0x35E, False, False, 8, b"TEST\x00\x00\x00\x00"),
        (0x00F, False, False, 0, b""),
        (0x1ABCDEF0, True, False, 3, b"\x01\x02\x03"),
        (0x123, False, True, 4, b""),
    ]
    assert adapter.frames_to_bus == 5

    back = [
        frame(0x305, bytes.fromhex("1402F6FFDC007602")),
        frame(0x18FF50E5, b"\xaa", is_extended_id=True),
        frame(0x7FF, is_remote_frame=True, dlc=2),
        frame(0x1FFFFFFF, is_remote_frame=True, dlc=8, is_extended_id=True),
    ]
    for message in back:
        peer.send(message)
    got = await recv_all(bus, len(back))
    assert [
        (m.arbitration_id, m.is_extended_id, m.is_remote_frame, m.dlc, bytes(m.data)) for m in got
    ] == [
        (0x305, False, False, 8, bytes.fromhex("1402F6FFDC007602")),
        (0x18FF50E5, True, False, 1, b"\xaa"),
        (0x7FF, False, True, 2, b""),
        (0x1FFFFFFF, True, True, 8, b""),
    ]
    # 0x305 as the SI sends it: 53.2 V, -1.0 A (charging), 22.0 degC, 63.0 %.
    assert decode_si_frame(0x305, bytes(got[0].data)) == {
        "battery_voltage": 53.2,
        "battery_current": 1.0,
        "battery_temperature": 22.0,
        "battery_soc": 63.0,
    }
    assert adapter.frames_from_bus == 4
    assert adapter.dropped == 0


async def test_send_periodic_over_slcan_keeps_its_period(
    adapter: SlcanAdapter, peer: can.BusABC, clients: SlcanClients
) -> None:
    bus = await clients.open(adapter)
    clients.periodic(bus, 0x355, bytes.fromhex("3C006300701700"), 0.2)
    await asyncio.sleep(2.5)
    clients.stop_periodic()
    stamps = []
    while (message := await in_thread(peer.recv, 0.3)) is not None:
        assert message.arbitration_id == 0x355
        assert bytes(message.data) == bytes.fromhex("3C006300701700")
        stamps.append(message.timestamp)
    assert len(stamps) >= 11
    gaps = [later - earlier for earlier, later in itertools.pairwise(stamps)]
    mean = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    assert 0.18 <= mean <= 0.22, gaps
    # Scheduling jitter of a loaded machine, never a burst.
    assert all(0.1 < gap < 0.3 for gap in gaps), gaps


async def test_sunny_island_simulator_behind_the_adapter(
    adapter: SlcanAdapter, channel: str, clients: SlcanClients
) -> None:
    si_bus = can.Bus(interface="virtual", channel=channel, receive_own_messages=False)
    sim = SunnyIslandSimulator(si_bus, interval=0.1, seed=3)
    try:
        await sim.start()
        bus = await clients.open(adapter)
        for frame_id, data in encode_bms_frames(STATE).items():
            clients.periodic(bus, frame_id, data, 0.3)
        assert await sim.wait_until(lambda: len(sim.received.get(ID_SOC, [])) >= 3, 3.0)
        assert sim.accepted["charge_voltage"] == 55.2
        assert sim.accepted["charge_current_limit"] == 50.0
        assert sim.accepted["discharge_current_limit"] == 100.0
        assert sim.accepted["discharge_voltage"] == 44.0
        assert sim.accepted["soc"] == 60.0
        assert sim.last_values[0x35E] == {"manufacturer": "TEST"}
        assert sim.min_interval_violations == 0
        assert sim.decode_errors == 0
        assert all(0.2 <= p <= 0.45 for p in sim.periods(ID_CHARGE_LIMITS))
        # The SI's broadcast comes back through slcan; its 0x305 reports the accepted SOC.
        await asyncio.sleep(0.25)
        deadline = time.monotonic() + 2.0
        decoded: dict[str, float | int | bool] = {}
        while time.monotonic() < deadline:
            message = await in_thread(bus.recv, 0.2)
            if message is not None and message.arbitration_id == ID_BATTERY:
                decoded = decode_si_frame(ID_BATTERY, bytes(message.data))
                if decoded["battery_soc"] == 60.0:
                    break
        assert decoded["battery_soc"] == 60.0
        assert 50.0 < float(decoded["battery_voltage"]) < 57.0
        assert sim.fault is None
    finally:
        clients.stop_periodic()
        await sim.stop()
        si_bus.shutdown()


async def test_wrong_bitrate_carries_nothing(
    adapter: SlcanAdapter, peer: can.BusABC, clients: SlcanClients
) -> None:
    bus = await clients.open(adapter, bitrate=250_000)
    assert adapter.is_open
    assert adapter.bitrate == 250_000
    assert not adapter.carrying
    await in_thread(bus.send, frame(0x351, b"\x01\x02"))
    peer.send(frame(0x305, b"\x03\x04"))
    assert await in_thread(peer.recv, 0.3) is None
    assert await in_thread(bus.recv, 0.3) is None
    assert adapter.frames_to_bus == adapter.frames_from_bus == 0
    assert adapter.dropped == 2
    assert adapter.errors == 0  # the adapter accepts the frame; the bus just never takes it


async def test_btr_registers_set_the_bitrate(
    adapter: SlcanAdapter, peer: can.BusABC, clients: SlcanClients
) -> None:
    # BTR0 0x00, BTR1 0x1C at 8 MHz: 16 time quanta of 125 ns = 500 kbit/s ("s001C").
    timing = can.BitTiming(f_clock=8_000_000, brp=1, tseg1=13, tseg2=2, sjw=1)
    bus = await clients.open(adapter, bitrate=None, timing=timing)
    assert adapter.bitrate == 500_000
    await in_thread(bus.send, frame(0x356, bytes.fromhex("AA14640000DC00")))
    received = await in_thread(peer.recv, 1.0)
    assert received is not None
    assert bytes(received.data) == bytes.fromhex("AA14640000DC00")


async def test_unplug_fails_the_slcan_bus_and_replug_works(
    adapter: SlcanAdapter, peer: can.BusABC, clients: SlcanClients
) -> None:
    bus = await clients.open(adapter)
    await adapter.unplug()
    assert not adapter.pty.plugged
    assert not adapter.is_open  # the firmware lost power
    assert adapter.bitrate == POWER_ON_BITRATE
    peer.send(frame(0x305, b"\x01"))
    assert await wait_until(lambda: adapter.dropped == 1)

    # python-can wraps every tty failure in CanOperationError, the cause tells what happened.
    with pytest.raises(can.CanOperationError, match="Could not write") as sending:
        await in_thread(bus.send, frame(0x351, b"\x01"))
    assert isinstance(sending.value.__cause__, serial.SerialException)
    with pytest.raises(can.CanOperationError, match="Could not read") as receiving:
        await in_thread(bus.recv, 0.2)
    assert isinstance(receiving.value.__cause__, OSError)
    # shutdown() writes "C" first, fails, and leaves the tty open.
    with pytest.raises(can.CanOperationError):
        await in_thread(bus.shutdown)
    assert bus.serialPortOrig.is_open
    bus.serialPortOrig.close()

    await adapter.replug()
    assert now(adapter.pty.plugged)
    second = await clients.open(adapter)
    assert now(adapter.carrying)
    await in_thread(second.send, frame(0x351, b"\x05"))
    received = await in_thread(peer.recv, 1.0)
    assert received is not None
    assert bytes(received.data) == b"\x05"
    peer.send(frame(0x306, b"\x06"))
    got = await recv_all(second, 1)
    assert bytes(got[0].data) == b"\x06"


async def test_bus_off_stops_both_directions_then_recovers(
    adapter: SlcanAdapter, peer: can.BusABC, clients: SlcanClients
) -> None:
    bus = await clients.open(adapter)
    adapter.bus_off(0.4)
    adapter.bus_off(0.4)  # extends, reports once
    assert adapter.is_bus_off
    assert not adapter.carrying
    await in_thread(bus.send, frame(0x351, b"\x01"))
    peer.send(frame(0x305, b"\x02"))
    assert await in_thread(peer.recv, 0.2) is None
    # The state line "sb000256" is ignored by python-can: recv sees nothing at all.
    assert await in_thread(bus.recv, 0.1) is None
    assert adapter.errors == 1  # the transmit was refused with BEL
    assert adapter.dropped == 1
    assert await wait_until(lambda: not adapter.is_bus_off, 1.0)
    await in_thread(bus.send, frame(0x351, b"\x03"))
    received = await in_thread(peer.recv, 1.0)
    assert received is not None
    assert bytes(received.data) == b"\x03"


async def test_garbage_reaches_the_slcan_reader(
    adapter: SlcanAdapter, peer: can.BusABC, clients: SlcanClients
) -> None:
    bus = await clients.open(adapter)
    adapter.inject_garbage()
    peer.send(frame(0x305, b"\x07"))
    got = await recv_all(bus, 1)
    assert bytes(got[0].data) == b"\x07"  # printable noise is skipped
    # Bytes that are not UTF-8 stay in python-can's line buffer: every later line is glued to
    # them and fails to decode as well, until flush().
    adapter.inject_garbage(b"\xff\xfe\r")
    with pytest.raises(can.CanOperationError, match="Could not read"):
        await in_thread(bus.recv, 0.3)
    peer.send(frame(0x305, b"\x09"))
    with pytest.raises(can.CanOperationError, match="Could not read"):
        await in_thread(bus.recv, 0.5)
    await in_thread(bus.flush)
    # A truncated frame line makes python-can's parser raise IndexError, not a CanError.
    adapter.inject_garbage(b"t12\r")
    with pytest.raises(IndexError):
        await in_thread(bus.recv, 0.3)
    peer.send(frame(0x305, b"\x08"))
    got = await recv_all(bus, 1)
    assert bytes(got[0].data) == b"\x08"


# --- the slcan protocol, byte by byte -----------------------------------------------------------


async def test_commands_and_replies(adapter: SlcanAdapter, raw: RawClient) -> None:
    assert await raw.command(b"V\r") == b"V1011\r"
    assert await raw.command(b"N\r") == b"NSV01\r"
    assert await raw.command(b"\r") == b"\r"
    assert await raw.command(b"F\r") == b"\a"  # status only while open
    assert await raw.command(b"t1230\r") == b"\a"  # closed channel refuses frames
    assert await raw.command(b"S9\r") == b"\r"
    assert adapter.bitrate == 83_300
    assert await raw.command(b"SA\r") == b"\a"
    assert await raw.command(b"S\r") == b"\a"
    assert await raw.command(b"sC01C\r") == b"\a"  # SJW 4 > TSEG2 2: invalid timing
    assert await raw.command(b"s01C\r") == b"\a"
    assert await raw.command(b"s0014\r") == b"\r"
    assert adapter.bitrate == 1_000_000
    assert await raw.command(b"S6\r") == b"\r"
    assert await raw.command(b"Z2\r") == b"\a"
    assert await raw.command(b"O1\r") == b"\a"
    assert await raw.command(b"O\r") == b"\r"
    assert await raw.command(b"O\r") == b"\r"  # idempotent, as on a CANable
    assert await raw.command(b"S4\r") == b"\a"  # configuration needs a closed channel
    assert await raw.command(b"s001C\r") == b"\a"
    assert await raw.command(b"Z1\r") == b"\a"
    assert await raw.command(b"F\r") == b"F00\r"
    for refused in (
        b"t12\r",  # too short
        b"t8000\r",  # 11-bit id out of range
        b"T200000000\r",  # 29-bit id out of range
        b"t1239001122334455667788\r",  # DLC 9
        b"t1232AB\r",  # data shorter than the DLC
        b"t1231GG\r",  # not hex
        b"tXYZ0\r",
        b"r1232AA\r",  # remote frames carry no data
        b"d1231AA\r",  # CAN FD: not on a classic adapter
        b"Y2\r",
        b"M00000000\r",
        b"Q\r",
        b"C1\r",
        b"\xff\r",
    ):
        assert await raw.command(refused) == b"\a", refused
    assert adapter.frames_to_bus == 0
    assert await raw.command(b"t1230\r") == b"\r"
    assert await raw.command(b"r7FF8\r") == b"\r"
    assert await raw.command(b"T1FFFFFFF2ABCD\r") == b"\r"
    assert adapter.frames_to_bus == 3
    assert await raw.command(b"C\r") == b"\r"
    assert await raw.command(b"C\r") == b"\r"
    assert not adapter.is_open
    assert adapter.errors == 25


async def test_lines_split_across_writes_and_noise(adapter: SlcanAdapter, raw: RawClient) -> None:
    # CR LF from a terminal, and one command arriving in pieces.
    assert await raw.command(b"S6\r\n") == b"\r"
    assert await raw.command(b"O\r\n") == b"\r"
    os.write(raw.fd, b"t12")
    await asyncio.sleep(0.05)
    assert await raw.command(b"30\r") == b"\r"
    assert adapter.frames_to_bus == 1
    # A runaway line without CR is dropped with one BEL, then the adapter works again.
    assert await raw.command(b"x" * 80) == b"\a"
    assert await raw.command(b"x" * 70 + b"\r") == b"\a"
    assert await raw.command(b"F\r") == b"F00\r"
    assert adapter.errors == 2


async def test_listen_only_receives_but_refuses_transmits(
    adapter: SlcanAdapter, raw: RawClient, peer: can.BusABC
) -> None:
    assert await raw.command(b"S6\r") == b"\r"
    assert await raw.command(b"L\r") == b"\r"
    assert adapter.listen_only
    assert await raw.command(b"t1230\r") == b"\a"
    peer.send(frame(0x305, b"\x12\x34"))
    assert await raw.lines(1) == [b"t30521234"]
    assert await raw.command(b"C\r") == b"\r"
    assert not adapter.listen_only


async def test_time_stamps_on_received_frames(
    adapter: SlcanAdapter, raw: RawClient, peer: can.BusABC
) -> None:
    assert await raw.command(b"S6\r") == b"\r"
    assert await raw.command(b"Z1\r") == b"\r"
    assert await raw.command(b"O\r") == b"\r"
    before = int(time.time() * 1000) % 60_000
    peer.send(frame(0x308, b"\x05\x00"))
    [line] = await raw.lines(1)
    assert line[:9] == b"t30820500"
    stamp = int(line[9:], 16)
    assert len(line) == 13
    assert 0 <= stamp < 60_000
    assert (stamp - before) % 60_000 < 1000  # milliseconds, wrapping each minute


async def test_frames_the_adapter_cannot_carry(
    adapter: SlcanAdapter, raw: RawClient, peer: can.BusABC
) -> None:
    peer.send(frame(0x305, b"\x01"))  # channel still closed
    assert await wait_until(lambda: adapter.dropped == 1)
    assert await raw.command(b"S6\r") == b"\r"
    assert await raw.command(b"O\r") == b"\r"
    peer.send(can.Message(is_error_frame=True, is_extended_id=False))
    peer.send(frame(0x305, bytes(12), is_fd=True))
    peer.send(frame(0x306, b"\x02"))
    assert await raw.lines(1) == [b"t306102"]
    assert adapter.dropped == 3
    assert adapter.frames_from_bus == 1


async def test_bus_off_state_lines_and_status_flags(adapter: SlcanAdapter, raw: RawClient) -> None:
    adapter.bus_off(0.05)  # channel closed: no state line
    assert await wait_until(lambda: not adapter.is_bus_off)
    assert raw.data == b""
    assert await raw.command(b"S6\r") == b"\r"
    assert await raw.command(b"O\r") == b"\r"
    adapter.bus_off(0.3)
    assert await raw.lines(1) == [STATE_BUS_OFF_LINE.rstrip(b"\r")] == [b"sb000256"]
    assert await raw.command(b"F\r") == b"FA4\r"
    assert await raw.command(b"t1230\r") == b"\a"
    assert await raw.lines(1) == [STATE_ACTIVE_LINE.rstrip(b"\r")] == [b"sa000000"]
    assert await raw.command(b"F\r") == b"F00\r"


async def test_unplug_during_bus_off_and_garbage_while_unplugged(
    adapter: SlcanAdapter,
) -> None:
    adapter.bus_off(10.0)
    await adapter.unplug()
    assert not adapter.is_bus_off  # a power cycle ends it
    adapter.inject_garbage()  # nowhere to go: dropped like the pty drops writes
    await adapter.replug()
    client = RawClient(adapter.port)
    try:
        adapter.inject_garbage()
        assert await client.lines(1) == [DEFAULT_GARBAGE.rstrip(b"\r")]
    finally:
        client.close()


async def test_life_cycle(channel: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        SlcanAdapter(channel, bitrate_required=0)
    link = str(tmp_path / "ttyACM0")
    device = SlcanAdapter(channel, link_path=link)
    assert device.port == link
    with pytest.raises(RuntimeError, match="not running"):
        device.bus_off(1.0)
    await device.start()
    await device.start()  # no-op
    assert device.running
    assert os.path.realpath(link).startswith("/dev/pts/")
    with pytest.raises(ValueError, match="negative"):
        device.bus_off(-1.0)
    device.bus_off(10.0)
    await device.stop()  # cancels the bus-off timer, joins the receive thread
    await device.stop()
    assert not now(device.running)
    assert not os.path.exists(link)
    with pytest.raises(RuntimeError, match="stopped"):
        await device.start()
    never_started = SlcanAdapter(channel)
    await never_started.stop()
    assert not os.path.exists(never_started.port)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=8))
def test_random_bytes_never_break_the_command_parser(chunks: list[bytes]) -> None:
    # Not started: replies go nowhere, frames are dropped, but every line is parsed and judged.
    # A link path outside any temp dir: nothing is created on disk before start().
    device = SlcanAdapter("slcan-fuzz", link_path="/nonexistent/ttyACM9")
    for chunk in chunks:
        device._on_serial_data(chunk)
    commands = sum(chunk.count(b"\r") for chunk in chunks)
    assert device.errors <= commands + sum(len(c) for c in chunks) // 64 + 1
    assert device.frames_to_bus == 0
    # Whatever came before, a CR ends it and the adapter takes commands again.
    errors = device.errors
    device._on_serial_data(b"\rC\rS6\rO\rF\r")
    assert device.is_open
    assert device.bitrate == 500_000
    assert device.errors <= errors + 1
