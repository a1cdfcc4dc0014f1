"""The BMS simulators, observed as a host sees them: raw bytes through the PTY and the codecs.

Expected bytes are real captures (testdata/jbd: an SP04S034 4S board and a UP16S020 rack pack;
PROTOCOLS.md §2: the Daly
vector of dbus-serialbattery issue #53) reproduced by scripting the simulator to the captured
battery state, so the simulators are checked against hardware, not against themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
import datetime as dt
import math
import os
from pathlib import Path
import time
import tty

import pytest

from custom_components.sma_victron_bridge.protocols import ProtocolError, ant, daly, jbd, jbd_up
from custom_components.sma_victron_bridge.protocols.bms_common import (
    CELL_IMBALANCE,
    CELL_OVERVOLTAGE,
    CELL_UNDERVOLTAGE,
    CHARGE_OVERTEMPERATURE,
    DISCHARGE_OVERCURRENT,
    FRONTEND_ERROR,
    MOSFET_OVERTEMPERATURE,
    SHORT_CIRCUIT,
    SOC_LOW,
)
from custom_components.sma_victron_bridge.simulators import bms as bms_module
from custom_components.sma_victron_bridge.simulators.bms import (
    AntSimulator,
    BmsSimulator,
    DalySimulator,
    JbdSimulator,
    JbdUpSimulator,
)

WAIT = 2.0
QUIET = 0.15  # s a silent simulator is listened to


def hexbytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", " "))


class Host:
    """The host side of the line: opens the port path and collects everything it receives."""

    def __init__(self, path: str) -> None:
        self.loop = asyncio.get_running_loop()
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)
        self.rx = bytearray()
        self.eof = False
        self.changed = asyncio.Event()
        self.loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.eof = True
            self.loop.remove_reader(self.fd)
        self.rx += chunk
        self.changed.set()

    async def until(self, size: int, timeout: float = WAIT) -> bytes:
        """Wait for ``size`` received bytes; return and consume them."""
        async with asyncio.timeout(timeout):
            while len(self.rx) < size and not self.eof:
                self.changed.clear()
                await self.changed.wait()
        data = bytes(self.rx[:size])
        del self.rx[:size]
        return data

    async def ask(self, request: bytes, size: int) -> bytes:
        self.rx.clear()
        os.write(self.fd, request)
        return await self.until(size)

    async def quiet(self, request: bytes) -> bytes:
        """Send and listen for a while; return whatever arrived."""
        self.rx.clear()
        os.write(self.fd, request)
        await asyncio.sleep(QUIET)
        return bytes(self.rx)

    def close(self) -> None:
        if not self.eof:
            self.loop.remove_reader(self.fd)
        os.close(self.fd)


@contextlib.asynccontextmanager
async def running(sim: BmsSimulator) -> AsyncIterator[Host]:
    await sim.start()
    host = Host(sim.port)
    try:
        yield host
    finally:
        host.close()
        await sim.stop()


def link(tmp_path: Path) -> str:
    return str(tmp_path / "ttyBMS")


def jbd_reply(frame: bytes) -> jbd.JbdFrame:
    return jbd.parse_frame(frame)


def fets(sim: BmsSimulator) -> tuple[bool, bool]:
    """The FET states now (a call, so that type narrowing does not freeze them)."""
    return sim.charge_fet, sim.discharge_fet


def in_factory(sim: JbdSimulator) -> bool:
    return sim.factory_mode


# --- JBD ------------------------------------------------------------------------------------


def capture_board(tmp_path: Path) -> JbdSimulator:
    """The JBD-SP04S034 4S board of testdata/jbd, scripted to the state it was captured in."""
    sim = JbdSimulator(
        cells=4,
        capacity_ah=5.0,
        link_path=link(tmp_path),
        frozen=True,
        model="JBD-SP04S034-L4S-200A-B-U",
        reply_delay=0.0,
    )
    sim.cell_voltages = [3.909, 3.901, 3.895, 3.901]
    sim.voltage = 15.60  # measured separately from the cell sum (15.606 V) by the board
    sim.current = 0.0
    sim.soc = 99.6  # remaining 4.98 Ah of 5.00 Ah, RSOC rounds to 100 %
    sim.cycles = 0
    sim.manufacture_date = dt.date(2022, 3, 28)
    sim.software_version = 0x80
    sim.temperatures = [22.4, 22.3, 21.7]
    sim.error_counters = [0, 0, 0, 122, 2, 0, 0, 0, 0, 0, 0, 1]
    return sim


async def test_jbd_reproduces_captured_replies(tmp_path: Path) -> None:
    sim = capture_board(tmp_path)
    async with running(sim) as host:
        basic = hexbytes(
            "DD:03:00:1D:06:18:00:00:01:F2:01:F4:00:00:2C:7C:00:00:00:00:00:00:80:64:03:04:03:"
            "0B:8B:0B:8A:0B:84:FA:8D:77"
        )
        assert await host.ask(hexbytes("DD:A5:03:00:FF:FD:77"), len(basic)) == basic
        cells = hexbytes("DD:04:00:08:0F:45:0F:3D:0F:37:0F:3D:FE:C6:77")
        assert await host.ask(hexbytes("DD:A5:04:00:FF:FC:77"), len(cells)) == cells
        model = hexbytes(
            "DD:05:00:19:4A:42:44:2D:53:50:30:34:53:30:33:34:2D:4C:34:53:2D:32:30:30:41:2D:42:"
            "2D:55:FA:08:77"
        )
        assert await host.ask(hexbytes("DD:A5:05:00:FF:FB:77"), len(model)) == model
        counters = hexbytes(
            "DD:AA:00:18:00:00:00:00:00:00:00:7A:00:02:00:00:00:00:00:00:00:00:00:00:00:00:00:01:"
            "FF:6B:77"
        )
        assert await host.ask(hexbytes("DD:A5:AA:00:FF:56:77"), len(counters)) == counters
    info = jbd.decode_basic_info(jbd_reply(basic).payload)
    assert info.voltage == 15.6
    assert info.manufacture_date == dt.date(2022, 3, 28)
    assert sim.requests == [
        hexbytes("DD:A5:03:00:FF:FD:77"),
        hexbytes("DD:A5:04:00:FF:FC:77"),
        hexbytes("DD:A5:05:00:FF:FB:77"),
        hexbytes("DD:A5:AA:00:FF:56:77"),
    ]


async def test_jbd_mosfet_control_as_captured(tmp_path: Path) -> None:
    """The write sequence of testdata/jbd/..._MOS.txt, answered byte for byte."""
    sim = JbdSimulator(link_path=link(tmp_path), frozen=True)
    ack_e1 = hexbytes("DD:E1:00:00:00:00:77")
    ack_exit = hexbytes("DD:01:00:00:00:00:77")
    async with running(sim) as host:
        # Outside factory mode the write is refused with status 0x80 and changes nothing.
        refused = await host.ask(hexbytes("DD:5A:E1:02:00:01:FF:1C:77"), 7)
        assert jbd_reply(refused).status == jbd.STATUS_ERROR
        assert fets(sim)[0] is True
        assert sim.fet_writes == []
        enter = jbd.encode_factory_mode_enter()
        assert await host.ask(enter, 7) == hexbytes("DD:00:00:00:00:00:77")
        assert in_factory(sim) is True
        assert await host.ask(hexbytes("DD:5A:E1:02:00:01:FF:1C:77"), 7) == ack_e1
        assert fets(sim) == (False, True)
        assert await host.ask(hexbytes("DD:5A:E1:02:00:02:FF:1B:77"), 7) == ack_e1
        assert fets(sim) == (True, False)
        assert await host.ask(hexbytes("DD:5A:E1:02:00:00:FF:1D:77"), 7) == ack_e1
        assert fets(sim) == (True, True)
        assert await host.ask(hexbytes("DD:5A:01:02:00:00:FF:FD:77"), 7) == ack_exit
        assert in_factory(sim) is False
    assert sim.fet_writes == [(False, True), (True, False), (True, True)]


async def test_jbd_refuses_fet_on_during_protection(tmp_path: Path) -> None:
    sim = JbdSimulator(link_path=link(tmp_path), frozen=True)
    sim.protections.add(CELL_OVERVOLTAGE)
    async with running(sim) as host:
        basic = jbd.decode_basic_info(jbd_reply(await host.ask(jbd.encode_read(3), 34)).payload)
        assert (basic.charge_fet, basic.discharge_fet) == (False, True)
        assert basic.protection_flags == [CELL_OVERVOLTAGE]
        await host.ask(jbd.encode_factory_mode_enter(), 7)
        # Switch charge off: taken. Then on again: acknowledged, but the FET stays off.
        await host.ask(jbd.encode_mosfet_control(charge_on=False, discharge_on=True), 7)
        await host.ask(jbd.encode_mosfet_control(charge_on=True, discharge_on=True), 7)
        assert fets(sim)[0] is False
        sim.protections.clear()
        # The refused "on" did not change the switch: still off after the fault cleared.
        assert fets(sim)[0] is False
        await host.ask(jbd.encode_mosfet_control(charge_on=True, discharge_on=True), 7)
        assert fets(sim)[0] is True
    assert sim.fet_writes == [(False, True), (True, True), (True, True)]


async def test_jbd_barcode_and_unknown_registers(tmp_path: Path) -> None:
    sim = JbdSimulator(link_path=link(tmp_path), serial_number="JBD123456789", frozen=True)
    async with running(sim) as host:
        # Barcode (0xA2) only in factory mode.
        assert jbd_reply(await host.ask(jbd.encode_read(0xA2), 7)).status == jbd.STATUS_ERROR
        await host.ask(jbd.encode_factory_mode_enter(), 7)
        reply = jbd_reply(await host.ask(jbd.encode_read(0xA2), 7 + 13))
        assert reply.payload == b"\x0cJBD123456789"
        # Unknown reads and writes: status 0x80, as is a factory exit outside factory mode.
        assert jbd_reply(await host.ask(jbd.encode_read(0x77), 7)).status == jbd.STATUS_ERROR
        await host.ask(jbd.encode_factory_mode_exit(), 7)
        again = await host.ask(jbd.encode_factory_mode_exit(), 7)
        assert jbd_reply(again).status == jbd.STATUS_ERROR
        write = await host.ask(jbd.encode_write(0x10, b"\x00\x01"), 7)
        assert jbd_reply(write).status == jbd.STATUS_ERROR
        # A response-shaped frame (not a request) is not answered.
        assert await host.quiet(hexbytes("DD:E1:00:00:00:00:77")) == b""
    assert sim.model == "JBD-SP16S020-L16S-200A-B-U"
    assert sim.serial_number == "JBD123456789"


async def test_jbd_scripted_state_on_the_wire(tmp_path: Path) -> None:
    sim = JbdSimulator(cells=20, link_path=link(tmp_path), frozen=True, capacity_ah=100.0)
    sim.cell_voltages = [(3300 + index) / 1000 for index in range(20)]
    sim.current = -12.34
    sim.soc = 73.0
    sim.temperatures = [18.5, -3.0]
    sim.balancing = {0, 17, 25}  # index 25 does not exist on a 20-cell pack: not sent
    sim.protections = {SHORT_CIRCUIT, MOSFET_OVERTEMPERATURE}  # the latter has no JBD bit
    async with running(sim) as host:
        reply = await host.ask(jbd.encode_read(3), 7 + 23 + 4)
        info = jbd.decode_basic_info(jbd_reply(reply).payload)
        cells = jbd.decode_cell_voltages(
            jbd_reply(await host.ask(jbd.encode_read(4), 7 + 40)).payload
        )
    assert info.voltage == 66.19  # sum of 3.300 … 3.319
    assert info.current == -12.34
    assert info.soc == 73
    assert info.remaining_capacity == 73.0
    assert info.temperatures == [18.5, -3.0]
    assert info.balancing_cells == [1, 18]
    assert info.protection_flags == [SHORT_CIRCUIT]
    assert (info.charge_fet, info.discharge_fet) == (False, False)
    assert info.software_version == "2.1"
    assert cells == sim.cell_voltages


# --- JBD UP ---------------------------------------------------------------------------------

UP_CAPTURE = (
    Path(__file__).resolve().parents[3] / "shared/testdata/jbd/JBD-UP16S020-two-devices.txt"
)


def up_capture() -> list[tuple[str, bytes]]:
    """(direction, frame) of every line of the two-pack capture."""
    frames = []
    for line in UP_CAPTURE.read_text().splitlines():
        for marker in (">>>", "<<<"):
            if marker in line:
                frames.append((marker, hexbytes(line.split(marker, 1)[1].strip())))
    return frames


async def test_jbd_up_reproduces_the_captured_status_reply(tmp_path: Path) -> None:
    """Pack 1 of the capture, scripted to the state of its first status reply."""
    frames = up_capture()
    request = jbd_up.encode_pack_status_request(1)
    reply = frames[[raw for _, raw in frames].index(request) + 1][1]
    sim = JbdUpSimulator(
        cells=16,
        capacity_ah=100.0,
        link_path=link(tmp_path),
        frozen=True,
        model="JBD48100000",
        reply_delay=0.0,
    )
    sim.cell_voltages = [3.326, 3.318, 3.331, 3.318, 3.32, 3.323, 3.328, 3.317,
                         3.324, 3.323, 3.326, 3.323, 3.324, 3.325, 3.325, 3.322]  # fmt: skip
    sim.voltage = 53.17
    sim.soc = 60.95
    sim.mosfet_temperature = 21.0
    sim.ambient_temperature = 22.6
    sim.temperatures = [20.9, 20.4, 21.0, 21.2]
    sim.charge_current_limit = sim.discharge_current_limit = 200.0
    async with running(sim) as host:
        assert await host.ask(request, len(reply)) == reply
        # Other register windows and the other pack's requests stay unanswered, as in the
        # capture; a corrupt request too.
        others = {raw for marker, raw in frames if marker == ">>>" and raw != request}
        assert len(others) == 15  # seven more requests to pack 1, eight to pack 2
        for raw in sorted(others):
            assert await host.quiet(raw) == b""
        assert await host.quiet(request[:-1] + b"\x00") == b""
        sim.corrupt_next_reply()
        with pytest.raises(ProtocolError, match="CRC"):
            jbd_up.parse_frame(await host.ask(request, len(reply)))
    assert sim.requests.count(request) == 2
    status = jbd_up.decode_pack_status(jbd_up.parse_frame(reply).data)
    assert (status.voltage, status.soc, status.cycles, status.model) == (
        53.17,
        60.95,
        12,
        "JBD48100000",
    )


async def test_jbd_up_scripted_state_on_the_wire(tmp_path: Path) -> None:
    sim = JbdUpSimulator(
        cells=8, capacity_ah=50.0, link_path=link(tmp_path), frozen=True, address=7
    )
    sim.current = -20.5
    sim.temperatures = []
    sim.protections = {DISCHARGE_OVERCURRENT, SHORT_CIRCUIT}
    request = jbd_up.encode_pack_status_request(7)
    async with running(sim) as host:
        header = await host.ask(request, jbd_up.HEADER_LENGTH)
        rest = await host.until(int.from_bytes(header[6:8], "big") + 2)
    status = jbd_up.decode_pack_status(jbd_up.parse_frame(header + rest).data)
    assert (status.current, status.operation, len(status.cell_voltages)) == (
        -20.5,
        "discharging",
        8,
    )
    assert (status.temperatures, status.model) == ([], "JBD-UP08S050")
    assert status.protection_flags == [DISCHARGE_OVERCURRENT, SHORT_CIRCUIT]
    assert (status.charge_fet, status.discharge_fet) == (False, False)
    assert (status.charge_voltage_limit, status.discharge_voltage_limit) == (29.2, 22.4)
    with pytest.raises(ValueError, match="one byte"):
        JbdUpSimulator(address=256)


# --- Daly -----------------------------------------------------------------------------------


def daly_frames(stream: bytes) -> list[daly.DalyFrame]:
    return daly.split_frames(stream)


async def test_daly_reproduces_published_vector(tmp_path: Path) -> None:
    sim = DalySimulator(cells=4, link_path=link(tmp_path), frozen=True, reply_delay=0.0)
    sim.voltage = 11.4
    sim.current = 0.0
    sim.soc = 49.5
    async with running(sim) as host:
        reply = await host.ask(hexbytes("A5 40 90 08 00 00 00 00 00 00 00 00 7D"), 13)
    assert reply == hexbytes("A5 01 90 08 00 72 00 00 75 30 01 EF 45")


async def test_daly_answers_every_command(tmp_path: Path) -> None:
    sim = DalySimulator(
        cells=16, link_path=link(tmp_path), frozen=True, serial_number="BATTERY-CODE-0042"
    )
    sim.cell_voltages = [(3300 + index) / 1000 for index in range(16)]
    sim.current = -25.5
    sim.soc = 64.2
    sim.temperatures = [21.0, 23.0, 19.0]
    sim.balancing = {2, 15}
    sim.protections = {CELL_OVERVOLTAGE, FRONTEND_ERROR}

    def request(command: int, data: bytes = b"") -> bytes:
        return daly.encode_request(command, daly.HOST_ADDRESS_RS485, data)

    async with running(sim) as host:
        soc = daly.decode_soc(daly_frames(await host.ask(request(0x90), 13))[0].data)
        cell_range = daly.decode_cell_voltage_range(
            daly_frames(await host.ask(request(0x91), 13))[0].data
        )
        temp_range = daly.decode_temperature_range(
            daly_frames(await host.ask(request(0x92), 13))[0].data
        )
        mosfet = daly.decode_mosfet_status(daly_frames(await host.ask(request(0x93), 13))[0].data)
        status = daly.decode_status(daly_frames(await host.ask(request(0x94), 13))[0].data)
        cell_frames = daly_frames(await host.ask(request(0x95), 6 * 13))
        temp_frames = daly_frames(await host.ask(request(0x96), 13))
        balance = daly.decode_balance(daly_frames(await host.ask(request(0x97), 13))[0].data, 16)
        faults = daly.decode_faults(daly_frames(await host.ask(request(0x98), 13))[0].data)
        rated = daly.decode_rated(daly_frames(await host.ask(request(0x50), 13))[0].data)
        code = daly_frames(await host.ask(request(0x57), 5 * 13))
    assert soc == daly.DalySoc(voltage=52.9, current=-25.5, soc=64.2)  # 52.92 V on 0.1 V
    assert cell_range == daly.DalyCellVoltageRange(3.315, 16, 3.3, 1)
    assert temp_range == daly.DalyTemperatureRange(23, 2, 19, 3)
    assert mosfet == daly.DalyMosfetStatus(2, False, False, 12, 179.76)  # AFE fault: both off
    assert status == daly.DalyStatus(16, 3, False, True, 0, 12)
    assert [frame.data[0] for frame in cell_frames] == [1, 2, 3, 4, 5, 6]
    assert all(frame.address == 0x01 for frame in cell_frames)
    assert daly.decode_cell_voltage_frames(cell_frames, 16) == sim.cell_voltages
    assert daly.decode_temperature_frames(temp_frames, 3) == [21, 23, 19]
    assert balance == tuple(index in (2, 15) for index in range(16))
    assert faults.protections == {CELL_OVERVOLTAGE, FRONTEND_ERROR}
    assert "cell_overvoltage_1" in faults.names
    assert faults.fault_code == 1
    assert rated == daly.DalyRated(capacity=280.0, cell_voltage=3.2)
    assert b"".join(frame.data[1:] for frame in code) == b"BATTERY-CODE-0042".ljust(35)


async def test_daly_fet_writes_are_echoed_and_refused_during_fault(tmp_path: Path) -> None:
    sim = DalySimulator(link_path=link(tmp_path), frozen=True)
    async with running(sim) as host:
        off = await host.ask(daly.encode_charge_fet(False), 13)
        assert daly.parse_frame(off).data[0] == 0
        assert fets(sim)[0] is False
        sim.protections.add(CHARGE_OVERTEMPERATURE)
        refused = await host.ask(daly.encode_charge_fet(True), 13)
        assert daly.parse_frame(refused).data[0] == 0  # echoes the state it kept
        off = await host.ask(daly.encode_discharge_fet(False), 13)
        assert daly.parse_frame(off).data == bytes(8)
        on = await host.ask(daly.encode_discharge_fet(True), 13)
        assert daly.parse_frame(on).data[0] == 1  # discharge is not held by this fault
        sim.protections = {CELL_UNDERVOLTAGE}
        await host.ask(daly.encode_discharge_fet(False), 13)
        refused = await host.ask(daly.encode_discharge_fet(True), 13)
        assert daly.parse_frame(refused).data[0] == 0
        assert fets(sim)[0] is False  # still switched off from the first write
    assert sim.fet_writes == [
        (False, None),
        (True, None),
        (None, False),
        (None, True),
        (None, False),
        (None, True),
    ]


async def test_daly_answers_only_its_host_address(tmp_path: Path) -> None:
    sim = DalySimulator(link_path=link(tmp_path), frozen=True, host_address=0x80, address=0x02)
    async with running(sim) as host:
        assert await host.quiet(daly.encode_request(0x90, 0x40)) == b""
        reply = await host.ask(daly.encode_request(0x90, 0x80), 13)
        # Unknown commands go unanswered.
        assert await host.quiet(daly.encode_request(0x42, 0x80)) == b""
    assert daly.parse_frame(reply).address == 0x02
    assert len(sim.requests) == 3


async def test_daly_set_soc_and_inverted_current(tmp_path: Path) -> None:
    sim = DalySimulator(link_path=link(tmp_path), frozen=True, invert_current=True)
    sim.current = 10.0
    when = dt.datetime(2024, 6, 1, 12, 0, 0)
    async with running(sim) as host:
        ok = await host.ask(daly.encode_set_soc(88.8, when), 13)
        soc = daly.decode_soc(daly.parse_frame(await host.ask(daly.encode_request(0x90), 13)).data)
        # An SOC above 100 % (which the codec will not even encode) is refused.
        bad = bytearray(daly.encode_set_soc(50.0, when))
        bad[10:12] = (1001).to_bytes(2, "big")
        bad[12] = sum(bad[:12]) & 0xFF
        refused = await host.ask(bytes(bad), 13)
    assert daly.parse_frame(ok).data[0] == 1
    assert daly.parse_frame(refused).data[0] == 0
    assert sim.soc == 88.8
    # Firmware counting the other way: the default decoding shows the wrong sign …
    assert soc.current == -10.0
    assert soc.soc == 88.8


# --- ANT ------------------------------------------------------------------------------------


async def test_ant_legacy_status_frame(tmp_path: Path) -> None:
    sim = AntSimulator(cells=16, link_path=link(tmp_path), frozen=True)
    sim.cell_voltages = [(3400 + index) / 1000 for index in range(16)]
    sim.current = 12.3
    sim.soc = 81.0
    sim.temperatures = [20.0, 21.0, 22.0, 23.0, 99.0]  # a fifth sensor does not fit the frame
    sim.mosfet_temperature = 31.0
    sim.balancer_temperature = 29.0
    sim.balancing = {4}
    async with running(sim) as host:
        frame = await host.ask(ant.LEGACY_STATUS_REQUEST, 140)
        again = await host.ask(ant.LEGACY_STATUS_REQUEST_SERIAL, 140)
    status = ant.decode_legacy_status(frame)
    assert ant.decode_legacy_status(again).soc == 81
    assert frame[:4] == ant.LEGACY_HEADER
    assert status.voltage == 54.5
    assert status.current == 12.3  # charging: the wire says -123 (discharge positive)
    assert int.from_bytes(frame[70:74], "big", signed=True) == -123
    assert status.power == 671.0  # 54.52 V * 12.3 A, from the exact pack voltage
    assert status.cell_voltages == sim.cell_voltages
    assert status.temperatures == [20.0, 21.0, 22.0, 23.0]
    assert (status.mosfet_temperature, status.balancer_temperature) == (31.0, 29.0)
    assert status.nominal_capacity == 280.0
    assert status.remaining_capacity == 226.8
    assert (status.charge_mosfet_status, status.discharge_mosfet_status) == (1, 1)
    assert status.balancer_status == 4
    assert status.balance == 1 << 4
    assert frame[115] == 16  # highest cell number
    assert frame[118] == 1  # lowest cell number
    assert status.cell_count == 16


async def test_ant_legacy_missing_sensors_and_protection_codes(tmp_path: Path) -> None:
    sim = AntSimulator(cells=8, link_path=link(tmp_path), frozen=True)
    sim.temperatures = [25.0]
    sim.protections = {CELL_OVERVOLTAGE, DISCHARGE_OVERCURRENT}
    async with running(sim) as host:
        status = ant.decode_legacy_status(await host.ask(ant.LEGACY_STATUS_REQUEST, 140))
        sim.protections = {SHORT_CIRCUIT}
        short = ant.decode_legacy_status(await host.ask(ant.LEGACY_STATUS_REQUEST, 140))
        sim.protections = {FRONTEND_ERROR}
        frontend = ant.decode_legacy_status(await host.ask(ant.LEGACY_STATUS_REQUEST, 140))
    assert status.temperatures == [25.0, -40.0, -40.0, -40.0]
    assert ant.to_reading(status).temperatures == (25.0,)
    assert (status.charge_mosfet_status, status.discharge_mosfet_status) == (2, 3)
    assert status.protections == {CELL_OVERVOLTAGE, DISCHARGE_OVERCURRENT}
    # Short circuit holds both FETs; the charge side has no code for it: plain "off".
    assert (short.charge_mosfet_status, short.discharge_mosfet_status) == (0, 12)
    assert (frontend.charge_mosfet_status, frontend.discharge_mosfet_status) == (0, 0)


async def test_ant_legacy_write_then_apply(tmp_path: Path) -> None:
    sim = AntSimulator(link_path=link(tmp_path), frozen=True)
    write, apply = ant.encode_legacy_mosfet(charge=True, on=False)
    async with running(sim) as host:
        assert await host.quiet(write) == b""  # no reply, and no effect before the apply
        assert fets(sim)[0] is True
        assert await host.quiet(apply) == b""
        assert fets(sim)[0] is False
        discharge_off, _ = ant.encode_legacy_mosfet(charge=False, on=False)
        await host.quiet(discharge_off)
        # An apply with nothing pending and writes to other addresses change nothing.
        await host.quiet(ant.encode_legacy_write(100, 7))
        assert await host.quiet(ant.encode_legacy_command(ant.LEGACY_READ, 0x10, 0)) == b""
        await host.quiet(apply)
        await host.quiet(apply)
        status = ant.decode_legacy_status(await host.ask(ant.LEGACY_STATUS_REQUEST, 140))
    assert (status.charge_mosfet_status, status.discharge_mosfet_status) == (15, 15)
    assert sim.fet_writes == [(False, None), (None, False)]


async def test_ant_new_status_and_device_info(tmp_path: Path) -> None:
    sim = AntSimulator("new", cells=14, link_path=link(tmp_path), frozen=True, model="16ZMB")
    sim.cell_voltages = [4.113] * 14
    sim.current = -5.5
    sim.soc = 96.0
    sim.temperatures = [28.0, 28.0, -40.0, 28.0, 30.0]  # at most four sensors
    sim.mosfet_temperature = 28.0
    sim.balancer_temperature = 28.0
    async with running(sim) as host:
        header = await host.ask(ant.encode_status_request(), 6)
        rest = await host.until(header[5] + 4)
        info_request = ant.encode_request(0x02, 0x026C, 0x20)
        assert info_request == hexbytes("7E A1 02 6C 02 20 58 C4 AA 55")  # ESPHome's request
        info = ant.parse_frame(await host.ask(info_request, 10 + 32))
        # Other functions (and the legacy request) go unanswered.
        assert await host.quiet(ant.encode_request(0x51, 0x0006, 1)) == b""
        assert await host.quiet(ant.LEGACY_STATUS_REQUEST) == b""
    frame = ant.parse_frame(header + rest)
    assert frame.function == 0x11
    status = ant.decode_status(frame.payload)
    assert len(frame.payload) == 28 + 2 * 14 + 2 * 4 + 78  # as the 14-cell capture: 0x8E
    assert status.cell_voltages == [4.113] * 14
    assert status.temperatures == [28.0, 28.0, -40.0, 28.0]
    assert status.voltage == 57.58
    assert status.current == -5.5
    assert status.power == -317.0
    assert status.soc == 96
    assert status.battery_status == 3  # discharging
    assert (status.mosfet_temperature, status.balancer_temperature) == (28.0, 28.0)
    assert status.total_charged_capacity == 3360.0
    assert info.function == 0x12
    assert info.address == 0x026C
    assert info.payload[:16] == b"16ZMB".ljust(16, b"\0")
    assert info.payload[16:].rstrip(b"\0") == b"ZMB_V2.1.4"


def test_ant_rejects_unknown_protocol() -> None:
    with pytest.raises(ValueError, match="protocol"):
        AntSimulator("v3")  # type: ignore[arg-type]


# --- battery model --------------------------------------------------------------------------


def test_soc_integrates_current_and_cells_follow(tmp_path: Path) -> None:
    sim = JbdSimulator(seed=7, capacity_ah=280.0, link_path=link(tmp_path))
    assert sim.soc == 50.0
    start = list(sim.cell_voltages)
    assert 3.28 < min(start) <= max(start) < 3.31  # LiFePO4 plateau, a few mV of spread
    sim.current = 28.0
    sim.step(3600)  # 28 Ah into 280 Ah: +10 %
    assert sim.soc == pytest.approx(60.0)
    assert sim.remaining_capacity == pytest.approx(168.0)
    assert min(sim.cell_voltages) > min(start)
    sim.current = -56.0
    sim.step(1800)
    assert sim.soc == pytest.approx(50.0)
    sim.step(10 * 3600)
    # Near empty the lowest cell trips under-voltage, the discharge FET opens, SOC stays put.
    assert 0.0 < sim.soc < 2.0
    assert CELL_UNDERVOLTAGE in sim.protections
    assert fets(sim)[1] is False


def test_blocked_fet_stops_the_current(tmp_path: Path) -> None:
    sim = DalySimulator(seed=1, link_path=link(tmp_path))
    sim.current = 50.0
    sim.charge_fet = False
    sim.step(3600)
    assert sim.soc == 50.0
    sim.current = -50.0
    sim.step(360)
    assert sim.soc == pytest.approx(50.0 - 50 * 0.1 / 280 * 100)
    sim.discharge_fet = False
    sim.step(3600)
    assert sim.soc == pytest.approx(50.0 - 50 * 0.1 / 280 * 100)


def test_balancing_and_automatic_protection_at_the_top(tmp_path: Path) -> None:
    sim = AntSimulator(seed=3, link_path=link(tmp_path))
    sim.soc = 99.0
    sim.current = 40.0
    sim.step(60)
    assert sim.balancing  # spread grows near full: the highest cell is balanced
    (balanced,) = sim.balancing
    assert sim.cell_voltages[balanced] == max(sim.cell_voltages)
    sim.step(3600)
    assert 99.5 < sim.soc < 100.0
    assert CELL_OVERVOLTAGE in sim.protections  # the steep rise of a full cell tripped it
    assert max(sim.cell_voltages) < 3.65  # no current: back to open-circuit voltage
    assert fets(sim)[0] is False
    assert not sim.balancing  # no current flows any more
    sim.current = -100.0
    sim.step(3600)
    assert CELL_OVERVOLTAGE not in sim.protections  # released below 3.40 V
    assert fets(sim)[0] is True


def test_automatic_undervoltage_and_manual_protections_kept(tmp_path: Path) -> None:
    sim = JbdSimulator(seed=5, link_path=link(tmp_path))
    sim.protections.add(CELL_IMBALANCE)  # scripted: never cleared by the model
    sim.soc = 1.0
    sim.current = -100.0
    sim.step(600)
    assert CELL_UNDERVOLTAGE in sim.protections
    assert fets(sim)[1] is False
    assert fets(sim)[0] is True
    sim.current = 50.0
    sim.step(4 * 3600)
    assert CELL_UNDERVOLTAGE not in sim.protections
    assert sim.protections == {CELL_IMBALANCE}
    sim.protections.add(CELL_UNDERVOLTAGE)  # set by hand while cells are fine: kept
    sim.step(60)
    assert CELL_UNDERVOLTAGE in sim.protections
    assert SOC_LOW not in sim.protections


async def test_physics_runs_unless_frozen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bms_module, "_STEP_INTERVAL", 0.02)
    sim = JbdSimulator(link_path=link(tmp_path), time_scale=3600.0, seed=1)
    sim.current = 28.0
    frozen = JbdSimulator(link_path=str(tmp_path / "ttyFROZEN"), frozen=True, time_scale=3600.0)
    frozen.current = 28.0
    await sim.start()
    await frozen.start()
    try:
        await asyncio.sleep(0.2)
    finally:
        await sim.stop()
        await frozen.stop()
    assert sim.soc > 50.5  # several 72 s steps at 28 A, 0.2 % each
    assert frozen.soc == 50.0


# --- lifecycle, faults ----------------------------------------------------------------------


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="cells"):
        JbdSimulator(cells=0)
    with pytest.raises(ValueError, match="capacity"):
        DalySimulator(capacity_ah=0)
    with pytest.raises(ValueError, match="time_scale"):
        AntSimulator(time_scale=0)
    with pytest.raises(ValueError, match="reply_delay"):
        JbdSimulator(reply_delay=-1)


def test_seeded_identity_is_reproducible(tmp_path: Path) -> None:
    first = DalySimulator(seed=42, link_path=link(tmp_path))
    second = DalySimulator(seed=42, link_path=link(tmp_path))
    assert first.serial_number == second.serial_number
    assert first.cell_voltages == second.cell_voltages
    assert first.model == "Daly Smart BMS 16S"
    assert AntSimulator(cells=8, link_path=link(tmp_path)).model == "8ZMB"
    assert JbdSimulator(model="X", serial_number="Y", link_path=link(tmp_path)).model == "X"


async def test_lifecycle(tmp_path: Path) -> None:
    sim = JbdSimulator(link_path=link(tmp_path), frozen=True)
    await sim.start()
    await sim.start()  # no-op
    assert sim.plugged
    assert os.path.islink(sim.port)
    await sim.stop()
    await sim.stop()  # idempotent
    assert not os.path.exists(sim.port)
    with pytest.raises(RuntimeError, match="stopped"):
        await sim.start()


async def test_silent_and_resume(tmp_path: Path) -> None:
    sim = JbdSimulator(link_path=link(tmp_path), frozen=True)
    async with running(sim) as host:
        sim.set_silent(True)
        assert await host.quiet(jbd.encode_read(3)) == b""
        sim.set_silent(False)
        assert jbd_reply(await host.ask(jbd.encode_read(5), 7 + 26)).ok
    assert sim.requests == [jbd.encode_read(3), jbd.encode_read(5)]


async def test_stop_mid_frame_once(tmp_path: Path) -> None:
    sim = DalySimulator(link_path=link(tmp_path), frozen=True)
    async with running(sim) as host:
        sim.stop_mid_frame_once()
        half = await host.quiet(daly.encode_request(0x95))
        assert len(half) == 6 * 13 // 2
        whole = await host.ask(daly.encode_request(0x95), 6 * 13)
    assert whole.startswith(half)
    assert len(daly.split_frames(whole)) == 6


async def test_request_log_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bms_module, "_REQUEST_LOG_LIMIT", 4)
    sim = AntSimulator(link_path=link(tmp_path), frozen=True)
    async with running(sim) as host:
        for value in range(5):
            await host.quiet(ant.encode_legacy_write(100, value))
    assert sim.requests == [ant.encode_legacy_write(100, value) for value in (2, 3, 4)]


async def test_corrupt_next_reply(tmp_path: Path) -> None:
    jbd_sim = JbdSimulator(link_path=link(tmp_path), frozen=True)
    async with running(jbd_sim) as host:
        jbd_sim.corrupt_next_reply()
        bad = await host.ask(jbd.encode_read(3), 7 + 23 + 4)
        good = await host.ask(jbd.encode_read(3), 7 + 23 + 4)
    with pytest.raises(ProtocolError, match="checksum"):
        jbd.parse_frame(bad)
    assert jbd.parse_frame(good).ok
    for sim, request, size, parse in (
        (DalySimulator(link_path=link(tmp_path)), daly.encode_request(0x90), 13, daly.parse_frame),
        (
            AntSimulator(link_path=link(tmp_path)),
            ant.LEGACY_STATUS_REQUEST,
            140,
            ant.decode_legacy_status,
        ),
        (
            AntSimulator("new", link_path=link(tmp_path)),
            ant.encode_status_request(),
            10 + 142,
            ant.parse_frame,
        ),
    ):
        async with running(sim) as host:
            sim.corrupt_next_reply()
            reply = await host.ask(request, size)
        with pytest.raises(ProtocolError, match=r"(?i)checksum|crc"):
            parse(reply)


async def test_garbage_now_and_before_the_next_reply(tmp_path: Path) -> None:
    sim = JbdSimulator(link_path=link(tmp_path), frozen=True, seed=9)
    async with running(sim) as host:
        sim.inject_garbage(b"\x01\x02\x03")
        assert await host.until(3) == b"\x01\x02\x03"
        sim.inject_garbage()
        assert len(await host.until(32)) == 32
        sim.inject_garbage(b"\xdd\x03\x99", before_next_reply=True)
        reply = await host.ask(jbd.encode_read(5), 3 + 7 + 26)
    assert reply[:3] == b"\xdd\x03\x99"
    assembler = jbd.FrameAssembler()
    (frame,) = assembler.feed(reply)
    assert jbd.parse_frame(frame).payload.startswith(b"JBD-SP16S")


async def test_requests_are_cut_from_noise(tmp_path: Path) -> None:
    """Noise, split requests and foreign protocols never break a simulator."""
    for sim, good in (
        (JbdSimulator(link_path=link(tmp_path), frozen=True), jbd.encode_read(5)),
        (DalySimulator(link_path=link(tmp_path), frozen=True), daly.encode_request(0x94)),
        (AntSimulator(link_path=link(tmp_path), frozen=True), ant.LEGACY_STATUS_REQUEST),
        (AntSimulator("new", link_path=link(tmp_path), frozen=True), ant.encode_status_request()),
    ):
        async with running(sim) as host:
            noise = bytes(range(256)) + b"\xdb\xdb\x00\x00\x00\x01" + b"\xa5" * 20
            for foreign in (
                noise,
                jbd.encode_read(3),
                daly.encode_request(0x90),
                ant.LEGACY_STATUS_REQUEST,
                ant.encode_status_request(),
            ):
                if foreign != good:
                    os.write(host.fd, foreign)
            await asyncio.sleep(bms_module._RX_GAP + 0.05)  # the BMS forgets half requests
            host.rx.clear()
            # A good request split in two writes is still answered.
            os.write(host.fd, good[:3])
            await asyncio.sleep(0.01)
            reply = await host.ask(good[3:], 7)
        assert len(reply) == 7
        assert sim.requests[-1] == good


async def test_unplug_and_replug(tmp_path: Path) -> None:
    sim = DalySimulator(link_path=link(tmp_path), frozen=True)
    await sim.start()
    host = Host(sim.port)
    try:
        await sim.unplug()
        assert not sim.plugged
        async with asyncio.timeout(WAIT):
            while not host.eof:
                host.changed.clear()
                await host.changed.wait()
        assert not os.path.exists(sim.port)
        host.close()
        await sim.replug()
        host = Host(sim.port)
        reply = await host.ask(daly.encode_request(0x90), 13)
        assert daly.parse_frame(reply).command == 0x90
    finally:
        host.close()
        await sim.stop()


async def test_unplug_cancels_a_pending_reply(tmp_path: Path) -> None:
    sim = JbdSimulator(link_path=link(tmp_path), frozen=True, reply_delay=0.2)
    await sim.start()
    host = Host(sim.port)
    try:
        os.write(host.fd, jbd.encode_read(3))
        await asyncio.sleep(0.05)
        assert sim.requests == [jbd.encode_read(3)]
        await sim.unplug()
        await asyncio.sleep(0.25)  # the reply was due now: nothing is written
    finally:
        host.close()
        await sim.stop()
    assert host.rx == b""


def test_follow_current_drives_the_battery_until_it_expires() -> None:
    """A current handed over by an inverter replaces the battery's own until it goes stale."""
    sim = JbdSimulator(cells=16, capacity_ah=100.0, frozen=True, seed=3)
    sim.current = 4.0
    soc = sim.soc
    sim.follow_current(-25.0, valid_for=0.2)
    sim.step(36.0)  # 36 s at -25 A out of 100 Ah: -0.25 % SOC
    assert sim.current == -25.0
    assert sim.soc == pytest.approx(soc - 0.25)
    time.sleep(0.25)
    assert sim.followed_current is None
    sim.step(1.0)
    assert sim.current == 4.0  # a battery without a day gets its own current back
    with pytest.raises(ValueError, match="finite"):
        sim.follow_current(math.nan)


def test_follow_current_overrides_the_solar_day() -> None:
    """Living a day, the followed current wins over PV and load; after it, the day returns."""
    sim = JbdSimulator(cells=16, capacity_ah=100.0, frozen=True, seed=3, start_time_of_day=2 * 3600)
    sim.step(1.0)
    night = sim.current
    assert night < 0  # 02:00: only the house load
    sim.follow_current(30.0, valid_for=0.2)
    sim.step(1.0)
    assert sim.current == 30.0
    time.sleep(0.25)
    sim.step(1.0)
    assert sim.current == pytest.approx(night, rel=0.05)
