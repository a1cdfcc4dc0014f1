"""Serial BMS client against the BMS simulators over real pseudo-terminals.

Every test scripts the simulator's battery state, lets the client read it through
``serial_asyncio_fast`` and the codecs, and states the values it must see.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
import datetime as dt
from pathlib import Path

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.sma_victron_bridge.protocols import ProtocolError, ant, daly, jbd, jbd_up
from custom_components.sma_victron_bridge.protocols.bms_client import (
    BAUDRATES,
    FET_CONTROL,
    AntFrameAssembler,
    AntLegacyFrameAssembler,
    BmsChecksumError,
    BmsInfo,
    BmsNotConnected,
    BmsNotDetected,
    BmsProtocol,
    BmsTimeout,
    BmsUnsupported,
    BmsWriteRejected,
    DalyFrameAssembler,
    SerialBmsClient,
    detect_protocol,
    open_serial,
)
from custom_components.sma_victron_bridge.protocols.bms_common import (
    CELL_OVERVOLTAGE,
    CELL_UNDERVOLTAGE,
    CHARGE_OVERTEMPERATURE,
    DISCHARGE_OVERCURRENT,
    BmsReading,
)
from custom_components.sma_victron_bridge.simulators.bms import (
    AntSimulator,
    BmsSimulator,
    DalySimulator,
    JbdSimulator,
    JbdUpSimulator,
)

SHORT = 0.3  # s request timeout where a timeout is expected
TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "testdata"
# A 2021 ANT board's status reply (14 cells), as captured by syssi/esphome-ant-bms.
ANT_CAPTURE = bytes.fromhex(
    (TESTDATA / "ant" / "model2021-req-7ea1010000be1855aa55.txt").read_text().splitlines()[0]
)


@contextlib.asynccontextmanager
async def started[S: BmsSimulator](sim: S) -> AsyncIterator[S]:
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@contextlib.asynccontextmanager
async def client_for(
    sim: BmsSimulator, protocol: BmsProtocol, **options: object
) -> AsyncIterator[SerialBmsClient]:
    client = SerialBmsClient(sim.port, protocol, **options)  # type: ignore[arg-type]
    try:
        yield client
    finally:
        await client.close()


def counters_of(client: SerialBmsClient) -> list[int] | None:
    """The client's error counters now (a call, so that type narrowing does not freeze them)."""
    return client.error_counters


def is_connected(client: SerialBmsClient) -> bool:
    return client.connected


def port(tmp_path: Path, name: str = "ttyBMS") -> str:
    return str(tmp_path / name)


def jbd_pack(tmp_path: Path, **options: object) -> JbdSimulator:
    """An 8S 100 Ah JBD pack in a fully scripted state."""
    sim = JbdSimulator(
        cells=8,
        capacity_ah=100.0,
        link_path=port(tmp_path),
        frozen=True,
        model="JBD-SP08S020-L8S-100A",
        serial_number="JBD0000815",
        **options,  # type: ignore[arg-type]
    )
    sim.cell_voltages = [3.310, 3.312, 3.305, 3.320, 3.308, 3.311, 3.309, 3.315]
    sim.current = 15.25
    sim.soc = 61.0
    sim.cycles = 34
    sim.temperatures = [21.5, 22.0, 20.8]
    sim.balancing = {3}
    sim.error_counters = [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2]
    return sim


JBD_READING = BmsReading(
    soc=61.0,
    voltage=26.49,  # 3.310 + 3.312 + … + 3.315
    current=15.25,
    power=403.972,  # 26.49 V * 15.25 A
    remaining_capacity=61.0,
    nominal_capacity=100.0,
    cycles=34,
    cell_voltages=(3.310, 3.312, 3.305, 3.320, 3.308, 3.311, 3.309, 3.315),
    temperatures=(21.5, 22.0, 20.8),
    balancing=(False, False, False, True, False, False, False, False),
    charge_fet=True,
    discharge_fet=True,
    protections=frozenset(),
    model="JBD-SP08S020-L8S-100A",
)


# --- readings -------------------------------------------------------------------------------


async def test_jbd_reading_equals_scripted_state(tmp_path: Path) -> None:
    async with (
        started(jbd_pack(tmp_path)) as sim,
        client_for(sim, BmsProtocol.JBD) as client,
    ):
        assert counters_of(client) is None
        reading = await client.read()
        assert reading == JBD_READING
        assert reading.min_cell_voltage == 3.305
        assert reading.max_cell_voltage == 3.320
        assert counters_of(client) == [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2]
        # The first refresh also asked for the model and the counters; later ones do not.
        assert sim.requests == [jbd.encode_read(reg) for reg in (0x03, 0x04, 0x05, 0xAA)]
        sim.requests.clear()
        sim.error_counters[0] = 5
        assert await client.read() == JBD_READING
        assert sim.requests == [jbd.encode_read(0x03), jbd.encode_read(0x04)]
        assert await client.read_error_counters() == [5, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2]
        # Wire bytes: 7-byte requests; 0x03 = 7 + 23 + 3 NTCs * 2, 0x04 = 7 + 8 cells * 2.
        assert client.connected
        assert client.protocol is BmsProtocol.JBD
        assert client.port == sim.port
        assert client.address is None


async def test_daly_reading_equals_scripted_state(tmp_path: Path) -> None:
    sim = DalySimulator(cells=5, capacity_ah=230.0, link_path=port(tmp_path), frozen=True)
    sim.cell_voltages = [3.281, 3.279, 3.290, 3.285, 3.282]
    sim.current = -42.7
    sim.soc = 37.4
    sim.cycles = 103
    sim.temperatures = [18.0, 19.0, 17.0, 18.0, 20.0, 21.0, 22.0, 16.0]  # two 0x96 frames
    sim.balancing = {1, 4}
    sim.protections = {DISCHARGE_OVERCURRENT}
    async with started(sim), client_for(sim, BmsProtocol.DALY) as client:
        reading = await client.read()
        assert client.address == 0x40
    assert reading == BmsReading(
        soc=37.4,
        voltage=16.4,  # 16.417 V on the 0.1 V wire
        current=-42.7,
        power=-700.28,
        remaining_capacity=86.02,
        nominal_capacity=230.0,
        cycles=103,
        cell_voltages=(3.281, 3.279, 3.290, 3.285, 3.282),
        temperatures=(18.0, 19.0, 17.0, 18.0, 20.0, 21.0, 22.0, 16.0),
        balancing=(False, True, False, False, True),
        charge_fet=True,
        discharge_fet=False,  # held off by the discharge over-current protection
        protections=frozenset({DISCHARGE_OVERCURRENT}),
    )
    commands = [request[2] for request in sim.requests]
    assert commands == [0x50, 0x94, 0x90, 0x93, 0x95, 0x96, 0x97, 0x98]
    assert all(request[1] == 0x40 for request in sim.requests)


async def test_ant_legacy_reading_equals_scripted_state(tmp_path: Path) -> None:
    sim = AntSimulator(cells=4, capacity_ah=100.0, link_path=port(tmp_path), frozen=True)
    sim.cell_voltages = [3.350, 3.351, 3.349, 3.352]
    sim.current = -8.4
    sim.soc = 55.0
    sim.temperatures = [19.0, 20.0]
    sim.mosfet_temperature = 33.0
    sim.balancer_temperature = 30.0
    async with started(sim), client_for(sim, BmsProtocol.ANT) as client:
        reading = await client.read()
    assert reading == BmsReading(
        soc=55.0,
        voltage=13.4,
        current=-8.4,
        power=-113.0,  # round(13.402 V * -8.4 A), sent as whole watts
        remaining_capacity=55.0,
        nominal_capacity=100.0,
        cell_voltages=(3.350, 3.351, 3.349, 3.352),
        # The board's MOSFET sensor is no battery temperature; unplugged T3/T4 (-40) are none.
        temperatures=(19.0, 20.0),
        mosfet_temperature=33.0,
        balancing=(False, False, False, False),
        charge_fet=True,
        discharge_fet=True,
    )
    assert sim.requests == [ant.LEGACY_STATUS_REQUEST]


async def test_ant_new_reading_equals_scripted_state(tmp_path: Path) -> None:
    sim = AntSimulator("new", cells=4, capacity_ah=100.0, link_path=port(tmp_path), frozen=True)
    sim.cell_voltages = [3.450, 3.455, 3.449, 3.452]
    sim.current = 21.3
    sim.soc = 88.0
    sim.temperatures = [24.0, 25.0]
    sim.mosfet_temperature = 35.0
    sim.protections = {CELL_OVERVOLTAGE}
    async with started(sim), client_for(sim, BmsProtocol.ANT_NEW) as client:
        reading = await client.read()
    assert reading == BmsReading(
        soc=88.0,
        voltage=13.81,
        current=21.3,
        power=294.0,
        remaining_capacity=88.0,
        nominal_capacity=100.0,
        cell_voltages=(3.450, 3.455, 3.449, 3.452),
        temperatures=(24.0, 25.0),
        mosfet_temperature=35.0,
        balancing=(False, False, False, False),
        charge_fet=False,
        discharge_fet=True,
        protections=frozenset({CELL_OVERVOLTAGE}),
    )
    assert sim.requests == [ant.encode_status_request()]


# --- FET switching --------------------------------------------------------------------------


async def test_jbd_fet_switching(tmp_path: Path) -> None:
    async with started(jbd_pack(tmp_path)) as sim, client_for(sim, BmsProtocol.JBD) as client:
        reading = await client.set_fets(charge=False)
        assert (reading.charge_fet, reading.discharge_fet) == (False, True)
        # The next write remembers the switch state it set (charge off) for the FET left alone.
        reading = await client.set_fets(discharge=False)
        assert (reading.charge_fet, reading.discharge_fet) == (False, False)
        reading = await client.set_fets(charge=True, discharge=True)
        assert (reading.charge_fet, reading.discharge_fet) == (True, True)
        unchanged = await client.set_fets()
        assert unchanged == reading
        assert sim.fet_writes == [(False, True), (False, False), (True, True)]
        assert sim.factory_mode is False
        # Each write: factory mode on, 0xE1, factory mode off.
        assert jbd.encode_factory_mode_enter() in sim.requests
        assert sim.requests.count(jbd.encode_factory_mode_exit()) == 3


async def test_daly_fet_switching(tmp_path: Path) -> None:
    sim = DalySimulator(link_path=port(tmp_path), frozen=True)
    async with started(sim), client_for(sim, BmsProtocol.DALY) as client:
        reading = await client.set_fets(charge=False)
        assert (reading.charge_fet, reading.discharge_fet) == (False, True)
        reading = await client.set_fets(charge=True, discharge=False)
        assert (reading.charge_fet, reading.discharge_fet) == (True, False)
    assert sim.fet_writes == [(False, None), (True, None), (None, False)]


async def test_ant_legacy_fet_switching(tmp_path: Path) -> None:
    sim = AntSimulator(link_path=port(tmp_path), frozen=True)
    async with started(sim), client_for(sim, BmsProtocol.ANT) as client:
        reading = await client.set_fets(charge=False, discharge=False)
        assert (reading.charge_fet, reading.discharge_fet) == (False, False)
        reading = await client.set_fets(discharge=True)
        assert (reading.charge_fet, reading.discharge_fet) == (False, True)
    assert sim.fet_writes == [(False, False), (None, True)]
    write, apply = ant.encode_legacy_mosfet(charge=False, on=True)
    assert sim.requests[-3:-1] == [write, apply]


@pytest.mark.parametrize(
    ("make", "protocol", "fault"),
    [
        (JbdSimulator, BmsProtocol.JBD, CELL_OVERVOLTAGE),
        (DalySimulator, BmsProtocol.DALY, CHARGE_OVERTEMPERATURE),
        (AntSimulator, BmsProtocol.ANT, CELL_OVERVOLTAGE),
    ],
)
async def test_fet_on_refused_during_protection(
    tmp_path: Path, make: type[BmsSimulator], protocol: BmsProtocol, fault: str
) -> None:
    sim = make(link_path=port(tmp_path), frozen=True)
    async with started(sim), client_for(sim, protocol) as client:
        await client.set_fets(charge=False)
        sim.protections.add(fault)
        with pytest.raises(BmsWriteRejected, match="charge=True") as caught:
            await client.set_fets(charge=True)
        assert caught.value.reading is not None
        assert caught.value.reading.charge_fet is False
        assert fault in caught.value.reading.protections
        # Switching off is always taken; after the fault the FET can be switched on again.
        sim.protections.clear()
        assert (await client.set_fets(charge=True)).charge_fet is True
    assert sim.fet_writes[0][0] is False
    assert sim.fet_writes[1][0] is True  # the BMS saw the refused request


async def test_jbd_write_keeps_the_other_switch(tmp_path: Path) -> None:
    """0xE1 sets both switches: a fresh client infers the one it does not change."""
    sim = JbdSimulator(link_path=port(tmp_path), frozen=True)
    sim.discharge_fet = False  # switched off by someone else, no protection active
    async with started(sim):
        async with client_for(sim, BmsProtocol.JBD) as client:
            reading = await client.set_fets(charge=False)
        assert (reading.charge_fet, reading.discharge_fet) == (False, False)
        sim.discharge_fet = True
        sim.protections.add(CELL_UNDERVOLTAGE)  # now the discharge FET is held by a fault
        async with client_for(sim, BmsProtocol.JBD) as client:
            await client.set_fets(charge=True)
        sim.protections.clear()
        assert sim.discharge_fet is True  # released, not latched off by the write
    assert sim.fet_writes == [(False, False), (True, True)]


class StubbornJbd(JbdSimulator):
    """A board that answers MOSFET control with status 0x80 even in factory mode."""

    def _write(self, register: int, data: bytes) -> bytes:
        if register == jbd.REG_MOSFET_CONTROL:
            body = bytes((jbd.STATUS_ERROR, 0))
            return b"\xdd\xe1" + body + jbd.checksum(body).to_bytes(2, "big") + b"\x77"
        return super()._write(register, data)


async def test_jbd_error_status_on_mosfet_write(tmp_path: Path) -> None:
    sim = StubbornJbd(link_path=port(tmp_path), frozen=True)
    async with started(sim), client_for(sim, BmsProtocol.JBD) as client:
        with pytest.raises(BmsWriteRejected, match="status 0x80"):
            await client.set_fets(charge=False, discharge=True)
        assert sim.factory_mode is False  # left again despite the error
        assert sim.charge_fet is True


async def test_unsupported_functions(tmp_path: Path) -> None:
    sim = AntSimulator("new", link_path=port(tmp_path), frozen=True)
    async with started(sim), client_for(sim, BmsProtocol.ANT_NEW) as client:
        with pytest.raises(BmsUnsupported):
            await client.set_fets(charge=False)
        with pytest.raises(BmsUnsupported):
            await client.read_error_counters()
    assert sim.charge_fet is True


# --- identity and detection -----------------------------------------------------------------


async def test_read_info_per_protocol(tmp_path: Path) -> None:
    async with started(jbd_pack(tmp_path)) as sim, client_for(sim, BmsProtocol.JBD) as client:
        assert await client.read_info() == BmsInfo(
            protocol=BmsProtocol.JBD,
            model="JBD-SP08S020-L8S-100A",
            serial="JBD0000815",
            firmware_version="2.1",
            manufacture_date=dt.date(2023, 5, 17),
            cell_count=8,
            nominal_capacity=100.0,
        )
        assert sim.factory_mode is False
        reading = await client.read()
        assert reading.serial == "JBD0000815"  # known from read_info from now on
    daly_sim = DalySimulator(
        cells=4, capacity_ah=120.0, link_path=port(tmp_path), serial_number="DALY 4S 120AH #7"
    )
    async with started(daly_sim), client_for(daly_sim, BmsProtocol.DALY) as client:
        assert await client.read_info() == BmsInfo(
            protocol=BmsProtocol.DALY,
            serial="DALY 4S 120AH #7",
            cell_count=4,
            nominal_capacity=120.0,
            address=0x40,
        )
    legacy = AntSimulator(cells=10, capacity_ah=50.0, link_path=port(tmp_path))
    async with started(legacy), client_for(legacy, BmsProtocol.ANT) as client:
        assert await client.read_info() == BmsInfo(
            protocol=BmsProtocol.ANT, cell_count=10, nominal_capacity=50.0
        )
    new = AntSimulator("new", cells=14, link_path=port(tmp_path), model="16ZMB")
    async with started(new), client_for(new, BmsProtocol.ANT_NEW) as client:
        assert await client.read_info() == BmsInfo(
            protocol=BmsProtocol.ANT_NEW,
            model="16ZMB",
            firmware_version="ZMB_V2.1.4",
            cell_count=14,
            nominal_capacity=280.0,
        )
        assert (await client.read()).model == "16ZMB"


class TerseJbd(JbdSimulator):
    """A JBD board without the optional registers (model, counters, factory mode)."""

    def _answer(self, request: bytes) -> bytes | None:
        if request[2] in (jbd.REG_MODEL, jbd.REG_FACTORY_ENTER):
            return None
        if request[2] == jbd.REG_ERROR_COUNTERS:
            body = b"\x00\x03\x01\x02\x03"  # an odd length: not decodable
            return b"\xdd\xaa" + body + jbd.checksum(body).to_bytes(2, "big") + b"\x77"
        return super()._answer(request)


class TerseDaly(DalySimulator):
    def _answer(self, request: bytes) -> bytes | None:
        return None if request[2] in (0x50, 0x57) else super()._answer(request)


class TerseAnt(AntSimulator):
    def _answer(self, request: bytes) -> bytes | None:
        return None if request[2] == 0x02 else super()._answer(request)


async def test_optional_requests_may_fail(tmp_path: Path) -> None:
    sim = TerseJbd(link_path=port(tmp_path), frozen=True)
    async with started(sim), client_for(sim, BmsProtocol.JBD, request_timeout=SHORT) as client:
        info = await client.read_info()
        reading = await client.read()
    assert (info.model, info.serial, info.cell_count) == (None, None, 16)
    assert reading.model is None
    assert client.error_counters is None
    daly_sim = TerseDaly(cells=3, link_path=port(tmp_path), frozen=True)
    async with (
        started(daly_sim),
        client_for(daly_sim, BmsProtocol.DALY, request_timeout=SHORT) as client,
    ):
        info = await client.read_info()
        assert (await client.read()).nominal_capacity is None
    assert (info.serial, info.nominal_capacity, info.cell_count) == (None, None, 3)
    ant_sim = TerseAnt("new", link_path=port(tmp_path), frozen=True)
    async with (
        started(ant_sim),
        client_for(ant_sim, BmsProtocol.ANT_NEW, request_timeout=SHORT) as client,
    ):
        info = await client.read_info()
    assert (info.model, info.firmware_version, info.cell_count) == (None, None, 16)


@pytest.mark.parametrize(
    ("sim_factory", "expected"),
    [
        (lambda path: JbdSimulator(link_path=path), (BmsProtocol.JBD, None)),
        (lambda path: JbdUpSimulator(link_path=path), (BmsProtocol.JBD_UP, 1)),
        (lambda path: DalySimulator(link_path=path), (BmsProtocol.DALY, 0x40)),
        (
            lambda path: DalySimulator(link_path=path, host_address=0x80),
            (BmsProtocol.DALY, 0x80),
        ),
        (lambda path: AntSimulator(link_path=path), (BmsProtocol.ANT, None)),
        (lambda path: AntSimulator("new", link_path=path), (BmsProtocol.ANT_NEW, None)),
    ],
)
async def test_detection_picks_the_protocol(
    tmp_path: Path, sim_factory: object, expected: tuple[BmsProtocol, int | None]
) -> None:
    sim: BmsSimulator = sim_factory(port(tmp_path))  # type: ignore[operator]
    async with started(sim):
        protocol, info = await detect_protocol(sim.port, timeout=SHORT)
    assert (protocol, info.address) == expected
    assert info.protocol is protocol
    assert info.cell_count == 16


async def test_detection_of_a_silent_port_and_a_missing_one(tmp_path: Path) -> None:
    sim = JbdSimulator(link_path=port(tmp_path))
    sim.set_silent(True)
    async with started(sim):
        with pytest.raises(BmsNotDetected, match="no JBD, JBD UP, Daly or ANT"):
            await detect_protocol(sim.port, timeout=0.1)
    # One request per candidate: JBD, JBD UP, Daly at 0x40 and 0x80, ANT legacy and ANT 2021.
    assert sim.requests == [jbd.encode_read(3)]  # the JBD simulator recognises only its own
    with pytest.raises(BmsNotConnected, match="cannot open"):
        await detect_protocol(str(tmp_path / "nothing"), timeout=0.1)


# --- Daly address and current sign ---------------------------------------------------------


async def test_daly_uart_address(tmp_path: Path) -> None:
    sim = DalySimulator(link_path=port(tmp_path), frozen=True, host_address=0x80)
    sim.current = 3.5
    async with started(sim):
        async with client_for(sim, BmsProtocol.DALY, address=0x80) as client:
            assert (await client.read()).current == 3.5
            assert client.address == 0x80
        assert {request[1] for request in sim.requests} == {0x80}
        async with client_for(sim, BmsProtocol.DALY, request_timeout=SHORT, retries=0) as client:
            with pytest.raises(BmsTimeout, match="no answer"):
                await client.read()


async def test_inverted_current(tmp_path: Path) -> None:
    sim = DalySimulator(cells=4, link_path=port(tmp_path), frozen=True, invert_current=True)
    sim.cell_voltages = [3.3, 3.3, 3.3, 3.3]
    sim.current = 20.0  # charging, sent as raw 30200 by this firmware
    async with started(sim):
        async with client_for(sim, BmsProtocol.DALY) as client:
            assert (await client.read()).current == -20.0  # default sign: wrong here
        async with client_for(sim, BmsProtocol.DALY, invert_current=True) as client:
            reading = await client.read()
    assert (reading.current, reading.power) == (20.0, 264.0)
    async with (
        started(jbd_pack(tmp_path)) as jbd_sim,
        client_for(jbd_sim, BmsProtocol.JBD, invert_current=True) as client,
    ):
        reading = await client.read()
    assert (reading.current, reading.power) == (-15.25, -403.972)


# --- faults ---------------------------------------------------------------------------------


async def test_unplug_then_replug(tmp_path: Path) -> None:
    async with started(jbd_pack(tmp_path)) as sim, client_for(sim, BmsProtocol.JBD) as client:
        assert await client.read() == JBD_READING
        await sim.unplug()
        with pytest.raises(BmsNotConnected):
            await client.read()
        assert not client.connected
        with pytest.raises(BmsNotConnected, match="cannot open"):
            await client.read()
        await sim.replug()
        assert await client.read() == JBD_READING
        assert client.connected


async def test_unplug_during_a_request(tmp_path: Path) -> None:
    sim = jbd_pack(tmp_path, reply_delay=0.5)
    async with started(sim), client_for(sim, BmsProtocol.JBD) as client:
        await client.connect()
        task = asyncio.create_task(client.read())
        await asyncio.sleep(0.1)
        await sim.unplug()
        with pytest.raises(BmsNotConnected, match="serial port"):
            await task
        await sim.replug()
        sim.reply_delay = 0.0
        assert (await client.read()).voltage == 26.49


async def test_stop_mid_frame_then_recover(tmp_path: Path) -> None:
    async with (
        started(jbd_pack(tmp_path)) as sim,
        client_for(sim, BmsProtocol.JBD, request_timeout=SHORT, retries=0) as client,
    ):
        await client.read()
        sim.stop_mid_frame_once()
        with pytest.raises(BmsTimeout, match="no answer to dd a5 03"):
            await client.read()
        # The half frame left behind does not poison the next request.
        assert await client.read() == JBD_READING
    daly_sim = DalySimulator(link_path=port(tmp_path), frozen=True)
    async with (
        started(daly_sim),
        client_for(daly_sim, BmsProtocol.DALY, request_timeout=SHORT) as client,
    ):
        await client.read()
        daly_sim.requests.clear()
        daly_sim.stop_mid_frame_once()  # with retries the refresh simply succeeds
        reading = await client.read()
    assert reading.cell_voltages == tuple(daly_sim.cell_voltages)
    assert [request[2] for request in daly_sim.requests].count(0x94) == 2


async def test_corrupt_reply(tmp_path: Path) -> None:
    async with (
        started(jbd_pack(tmp_path)) as sim,
        client_for(sim, BmsProtocol.JBD, retries=0) as client,
    ):
        await client.read()
        sim.corrupt_next_reply()
        with pytest.raises(BmsChecksumError, match="corrupt"):
            await client.read()
        assert await client.read() == JBD_READING
    sim = jbd_pack(tmp_path)
    async with started(sim), client_for(sim, BmsProtocol.JBD) as client:
        await client.read()
        sim.requests.clear()
        sim.corrupt_next_reply()
        # Line noise arrives while the client waits for the line to settle before resending.
        loop = asyncio.get_running_loop()
        loop.call_later(0.02, sim.inject_garbage, b"\x00\x11\x22")
        assert await client.read() == JBD_READING
        assert sim.requests == [jbd.encode_read(3), jbd.encode_read(3), jbd.encode_read(4)]


async def test_garbage_on_the_line(tmp_path: Path) -> None:
    sim = DalySimulator(link_path=port(tmp_path), frozen=True, seed=11)
    async with started(sim), client_for(sim, BmsProtocol.DALY, request_timeout=SHORT) as client:
        sim.inject_garbage(b"\xa5\x01\x90\x08" + bytes(20))  # stale, flushed before requests
        first = await client.read()
        sim.inject_garbage(b"\xa5\xa5\x01\x94\x08\xff", before_next_reply=True)
        assert await client.read() == first
        sim.set_silent(True)
        sim.inject_garbage()  # random bytes, and no reply at all
        with pytest.raises(BmsTimeout):
            await client.read()
        sim.set_silent(False)
        assert await client.read() == first


class EchoingJbd(JbdSimulator):
    """Behind a half-duplex RS485 adapter: every request comes back before the reply."""

    def _answer(self, request: bytes) -> bytes | None:
        return request + (super()._answer(request) or b"")


class EchoingDaly(DalySimulator):
    def _answer(self, request: bytes) -> bytes | None:
        return request + (super()._answer(request) or b"")


async def test_request_echo_is_not_taken_for_the_reply(tmp_path: Path) -> None:
    sim = EchoingDaly(link_path=port(tmp_path), frozen=True)
    sim.current = -3.0
    async with started(sim), client_for(sim, BmsProtocol.DALY) as client:
        assert (await client.read()).current == -3.0
        assert (await client.set_fets(discharge=False)).discharge_fet is False
    jbd_sim = EchoingJbd(link_path=port(tmp_path), frozen=True)
    async with started(jbd_sim), client_for(jbd_sim, BmsProtocol.JBD) as client:
        assert (await client.set_fets(charge=False)).charge_fet is False


async def test_requests_are_serialised(tmp_path: Path) -> None:
    async with started(jbd_pack(tmp_path)) as sim, client_for(sim, BmsProtocol.JBD) as client:
        results = await asyncio.gather(
            client.read(), client.set_fets(charge=False), client.read(), client.read_info()
        )
    assert results[0] == JBD_READING
    assert results[2].charge_fet is False
    assert isinstance(results[3], BmsInfo)
    # No request of one call ever got between another call's request and its reply.
    assert sim.requests[:4] == [jbd.encode_read(reg) for reg in (0x03, 0x04, 0x05, 0xAA)]


async def test_connection_management_and_open_seam(tmp_path: Path) -> None:
    opened: list[tuple[str, int]] = []

    async def recording_open(
        path: str, baudrate: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        opened.append((path, baudrate))
        return await open_serial(path, baudrate)

    sim = AntSimulator(link_path=port(tmp_path), frozen=True)
    async with started(sim):
        client = SerialBmsClient(sim.port, BmsProtocol.ANT, open_connection=recording_open)
        assert not is_connected(client)
        await client.connect()
        await client.connect()  # already open: no second open
        assert is_connected(client)
        await client.read()
        await client.close()
        await client.close()
        assert not is_connected(client)
        await client.read()  # reopens
        await client.close()
        custom = SerialBmsClient(sim.port, "ant", baudrate=115200, open_connection=recording_open)
        await custom.read()
        await custom.close()
    assert opened == [(sim.port, 19200), (sim.port, 19200), (sim.port, 115200)]
    assert BAUDRATES == {
        BmsProtocol.JBD: 9600,
        BmsProtocol.JBD_UP: 9600,
        BmsProtocol.DALY: 9600,
        BmsProtocol.ANT: 19200,
        BmsProtocol.ANT_NEW: 19200,
        BmsProtocol.JK: 115200,
    }


async def test_wire_byte_counters(tmp_path: Path) -> None:
    async with started(jbd_pack(tmp_path)) as sim, client_for(sim, BmsProtocol.JBD) as client:
        await client.read()
        sent, received = client.bytes_sent, client.bytes_received
        await client.read()
    # 0x03 + 0x04 requests are 7 bytes each; replies 7 + 23 + 3 * 2 and 7 + 8 * 2 bytes.
    assert client.bytes_sent - sent == 14
    assert client.bytes_received - received == 36 + 23


# --- frame assemblers -----------------------------------------------------------------------


def test_assemblers_find_frames_in_noise() -> None:
    daly_frame = bytes.fromhex("A5 01 90 08 00 72 00 00 75 30 01 EF 45")
    assembler = DalyFrameAssembler()
    stream = b"\xa5\x00\xa5\x01\x90\x07" + daly_frame[:5]
    assert assembler.feed(stream) == []
    assert assembler.feed(daly_frame[5:] + b"\xa5\x01") == [daly_frame]
    bad = bytearray(daly_frame)
    bad[-1] ^= 1
    assert assembler.feed(bytes(bad)) == []
    assert assembler.checksum_errors == 1
    assembler.reset()
    assert assembler.feed(daly_frame) == [daly_frame]

    status = ANT_CAPTURE
    corrupt = bytearray(status)
    corrupt[-4] ^= 0xFF
    new = AntFrameAssembler()
    assert new.feed(b"\x7e\xa1\x11") == []  # not even the length byte yet
    wrong_trailer = b"\x7e\xa1\x11\x00\x00\x00\x00\x00\xbb\xbb"
    assert new.feed(wrong_trailer + bytes(corrupt) + status[:100]) == []
    assert new.feed(status[100:]) == [status]
    assert new.checksum_errors == 1
    # A request echoed by the adapter looks like the start of a long frame: skipped.
    assert new.feed(ant.encode_status_request() + status) == [status]

    legacy = AntLegacyFrameAssembler()
    frame = bytearray(140)
    frame[:4] = ant.LEGACY_HEADER
    frame[138:140] = ant.legacy_checksum(bytes(frame)).to_bytes(2, "big")
    # A header whose frame never completes is given up for a complete frame behind it.
    assert legacy.feed(b"\xaa\x55\xaa\xff\x01" + bytes(frame)) == [bytes(frame)]
    assert legacy.feed(bytes(frame[:70])) == []
    assert legacy.feed(bytes(frame[70:])) == [bytes(frame)]


@settings(max_examples=300, deadline=None)
@given(noise=st.binary(max_size=400), cut=st.integers(min_value=0, max_value=400))
def test_assemblers_never_raise_on_random_bytes(noise: bytes, cut: int) -> None:
    daly_frame = bytes.fromhex("A5 01 90 08 00 72 00 00 75 30 01 EF 45")
    for assembler, frame in (
        (DalyFrameAssembler(), daly_frame),
        (AntFrameAssembler(), ANT_CAPTURE),
        (AntLegacyFrameAssembler(), None),
    ):
        frames = assembler.feed(noise[:cut]) + assembler.feed(noise[cut:])
        for found in frames:  # whatever was found passes the codec's own checks
            if isinstance(assembler, DalyFrameAssembler):
                daly.parse_frame(found)
            elif isinstance(assembler, AntFrameAssembler):
                ant.parse_frame(found)
            else:
                with contextlib.suppress(ProtocolError):  # more than 32 cells is refused
                    ant.decode_legacy_status(found)
        if frame is not None:
            assembler.reset()
            assert assembler.feed(noise[:cut].replace(frame[:1], b"") + frame) == [frame]


def test_protocol_error_hierarchy() -> None:
    for error in (
        BmsNotConnected,
        BmsTimeout,
        BmsChecksumError,
        BmsWriteRejected,
        BmsUnsupported,
        BmsNotDetected,
    ):
        assert issubclass(error, ProtocolError)
    assert BmsWriteRejected("x").reading is None
    assert BmsProtocol("ant_new") is BmsProtocol.ANT_NEW
    assert daly.HOST_ADDRESS_UART == 0x80


async def test_daly_without_temperature_sensors(tmp_path: Path) -> None:
    sim = DalySimulator(cells=3, link_path=port(tmp_path), frozen=True)
    sim.temperatures = []
    async with started(sim), client_for(sim, BmsProtocol.DALY) as client:
        reading = await client.read()
    assert reading.temperatures == ()
    assert len(reading.cell_voltages) == 3
    assert 0x96 not in [request[2] for request in sim.requests]


# --- JBD UP rack packs ----------------------------------------------------------------------

UP_CELLS = [3.326, 3.318, 3.331, 3.318, 3.32, 3.323, 3.328, 3.317,
            3.324, 3.323, 3.326, 3.323, 3.324, 3.325, 3.325, 3.322]  # fmt: skip


def up_pack(
    tmp_path: Path, sim_class: type[JbdUpSimulator] = JbdUpSimulator, **options: object
) -> JbdUpSimulator:
    """A 16S 100 Ah UP pack like the capture's pack 1, charging, one protection active."""
    sim = sim_class(
        cells=16,
        capacity_ah=100.0,
        link_path=port(tmp_path),
        frozen=True,
        model="JBD48100000",
        **options,  # type: ignore[arg-type]
    )
    sim.cell_voltages = list(UP_CELLS)
    sim.current = 12.34
    sim.soc = 60.95
    sim.cycles = 12
    sim.mosfet_temperature = 21.0
    sim.temperatures = [20.9, 20.4, 21.0, 21.2]
    sim.protections = {CHARGE_OVERTEMPERATURE}
    return sim


UP_READING = BmsReading(
    soc=60.95,
    voltage=53.17,  # 53.173 V of cells, sent in 10 mV
    current=12.34,
    power=656.118,  # 53.17 V * 12.34 A
    remaining_capacity=60.95,
    nominal_capacity=100.0,
    cycles=12,
    cell_voltages=tuple(UP_CELLS),
    temperatures=(20.9, 20.4, 21.0, 21.2),
    mosfet_temperature=21.0,
    charge_fet=False,  # held off by the charge over-temperature protection
    discharge_fet=True,
    protections=frozenset({CHARGE_OVERTEMPERATURE}),
    model="JBD48100000",
)


async def test_jbd_up_detect_read_and_identity(tmp_path: Path) -> None:
    sim = up_pack(tmp_path, address=2)
    async with started(sim):
        with pytest.raises(BmsNotDetected):  # pack 2 does not answer for address 1
            await detect_protocol(sim.port, timeout=SHORT)
        protocol, info = await detect_protocol(sim.port, timeout=SHORT, jbd_up_address=2)
        assert (protocol, info) == (
            BmsProtocol.JBD_UP,
            BmsInfo(
                protocol=BmsProtocol.JBD_UP,
                model="JBD48100000",
                cell_count=16,
                nominal_capacity=100.0,
                address=2,
            ),
        )
        async with client_for(sim, protocol, address=info.address) as client:
            assert client.address == 2
            assert await client.read() == UP_READING
            sim.requests.clear()
            assert await client.read_info() == info
            assert sim.requests == [jbd_up.encode_pack_status_request(2)]
            with pytest.raises(BmsUnsupported):
                await client.set_fets(charge=True)
            with pytest.raises(BmsUnsupported):
                await client.read_error_counters()
        async with client_for(sim, BmsProtocol.JBD_UP, address=2, invert_current=True) as client:
            reading = await client.read()
    assert (reading.current, reading.power) == (-12.34, -656.118)
    assert sim.fet_writes == []
    assert BmsProtocol.JBD_UP not in FET_CONTROL


class EchoingJbdUp(JbdUpSimulator):
    def _answer(self, request: bytes) -> bytes | None:
        return request + (super()._answer(request) or b"")


async def test_jbd_up_faults(tmp_path: Path) -> None:
    sim = up_pack(tmp_path, EchoingJbdUp)
    async with (
        started(sim),
        client_for(sim, BmsProtocol.JBD_UP, request_timeout=SHORT, retries=0) as client,
    ):
        assert await client.read() == UP_READING  # the echoed request is not the answer
        sim.stop_mid_frame_once()
        with pytest.raises(BmsTimeout, match="no answer to 01 78 10 00"):
            await client.read()
        sim.corrupt_next_reply()
        with pytest.raises(BmsChecksumError):
            await client.read()
        sim.inject_garbage(b"\x01\x78\x10\x00\x10\xa0\x00\x9e\x14", before_next_reply=True)
        assert await client.read() == UP_READING
        sim.set_silent(True)
        sim.inject_garbage()
        with pytest.raises(BmsTimeout):
            await client.read()
        sim.set_silent(False)
        await sim.unplug()
        with pytest.raises(BmsNotConnected):
            await client.read()
        await sim.replug()
        assert await client.read() == UP_READING
