"""JK serial and JK PB: the real clients against the JK simulators over pseudo-terminals.

The JK serial client (``SerialBmsClient`` with ``BmsProtocol.JK``) reads, detects and switches
a :class:`JkSimulator`; the :class:`JkPbBus` scans and reads three PB packs that share one pty,
each answering only its own address.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
import datetime as dt
from pathlib import Path

import pytest

from custom_components.sma_victron_bridge.protocols import jk02, jk_pb, jk_serial
from custom_components.sma_victron_bridge.protocols.bms_client import (
    FET_CONTROL,
    BmsChecksumError,
    BmsNotConnected,
    BmsNotDetected,
    BmsProtocol,
    BmsTimeout,
    BmsUnsupported,
    BmsWriteRejected,
    JkPbBusDetected,
    SerialBmsClient,
    detect_protocol,
)
from custom_components.sma_victron_bridge.protocols.bms_common import (
    CELL_IMBALANCE,
    CELL_OVERVOLTAGE,
    CELL_UNDERVOLTAGE,
    CHARGE_OVERTEMPERATURE,
    DISCHARGE_OVERTEMPERATURE,
    MOSFET_OVERTEMPERATURE,
    SHORT_CIRCUIT,
)
from custom_components.sma_victron_bridge.protocols.jk_pb import JkPbBus
from custom_components.sma_victron_bridge.simulators.jk import JkPbBusSimulator, JkSimulator

SHORT = 0.3  # s request timeout where a timeout is expected


def port(tmp_path: Path, name: str = "ttyJK") -> str:
    return str(tmp_path / name)


@contextlib.asynccontextmanager
async def running[S: JkSimulator | JkPbBusSimulator](sim: S) -> AsyncIterator[S]:
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@contextlib.asynccontextmanager
async def jk_client(sim: JkSimulator, **options: object) -> AsyncIterator[SerialBmsClient]:
    client = SerialBmsClient(sim.port, BmsProtocol.JK, **options)  # type: ignore[arg-type]
    try:
        yield client
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def bus_client(sim: JkPbBusSimulator, **options: object) -> AsyncIterator[JkPbBus]:
    bus = JkPbBus(sim.port, **options)  # type: ignore[arg-type]
    try:
        yield bus
    finally:
        await bus.close()


def is_connected(bus: JkPbBus) -> bool:
    """A call, so that type narrowing does not freeze the property."""
    return bus.connected


def jk_pack(tmp_path: Path, **options: object) -> JkSimulator:
    """A 4S 100 Ah JK board in a fully scripted state."""
    sim = JkSimulator(
        cells=4,
        capacity_ah=100.0,
        link_path=port(tmp_path),
        frozen=True,
        model="JK-B2A8S20P",
        serial_number="60300001",
        **options,  # type: ignore[arg-type]
    )
    sim.cell_voltages = [3.301, 3.305, 3.298, 3.310]
    sim.current = -12.5
    sim.soc = 63.0
    sim.cycles = 41
    sim.temperatures = [21.0, -5.0]
    sim.mosfet_temperature = 31.0
    return sim


# --- JK serial ---------------------------------------------------------------------------------


async def test_jk_read_and_identity(tmp_path: Path) -> None:
    sim = jk_pack(tmp_path)
    async with running(sim), jk_client(sim) as client:
        reading = await client.read()
        info = await client.read_info()
    assert reading.cell_voltages == (3.301, 3.305, 3.298, 3.310)
    assert reading.voltage == 13.21
    assert reading.current == -12.5
    assert reading.power == round(13.21 * -12.5, 3)
    assert reading.soc == 63.0
    assert reading.remaining_capacity == 63.0
    assert reading.nominal_capacity == 100.0
    assert reading.cycles == 41
    assert reading.temperatures == (21.0, -5.0)  # below zero crosses the wire as 105
    assert reading.mosfet_temperature == 31.0
    assert (reading.charge_fet, reading.discharge_fet) == (True, True)
    assert reading.protections == frozenset()
    assert (reading.model, reading.serial) == ("JK-B2A8S20P", "60300001")
    assert info.protocol is BmsProtocol.JK
    assert (info.model, info.serial, info.cell_count) == ("JK-B2A8S20P", "60300001", 4)
    assert info.firmware_version == sim.software_version
    assert info.nominal_capacity == 100.0
    assert info.manufacture_date == dt.date(2023, 5, 1)
    # One read-all request per refresh: the minimum the protocol allows.
    assert sim.requests == [jk_serial.encode_read_all_request()] * 2


async def test_jk_current_sign_both_encodings_and_inversion(tmp_path: Path) -> None:
    for version in (1, 0):
        sim = jk_pack(tmp_path, protocol_version=version)
        sim.current = 7.25
        async with running(sim):
            async with jk_client(sim) as client:
                assert (await client.read()).current == 7.25
            async with jk_client(sim, invert_current=True) as client:
                assert (await client.read()).current == -7.25


async def test_jk_protections(tmp_path: Path) -> None:
    sim = jk_pack(tmp_path)
    sim.protections = {CELL_OVERVOLTAGE, CELL_IMBALANCE, MOSFET_OVERTEMPERATURE, SHORT_CIRCUIT}
    async with running(sim), jk_client(sim) as client:
        reading = await client.read()
    # JK has no short-circuit alarm bit; the others travel.
    assert reading.protections == {CELL_OVERVOLTAGE, CELL_IMBALANCE, MOSFET_OVERTEMPERATURE}
    assert reading.charge_fet is False  # held off by the over-voltage protection


async def test_jk_fet_write_and_read_back(tmp_path: Path) -> None:
    assert BmsProtocol.JK in FET_CONTROL
    sim = jk_pack(tmp_path)
    async with running(sim), jk_client(sim) as client:
        reading = await client.set_fets(charge=False)
        assert (reading.charge_fet, reading.discharge_fet) == (False, True)
        assert sim.fet_writes == [(False, None)]
        assert sim.passwords == 1
        reading = await client.set_fets(discharge=False, charge=True)
        assert (reading.charge_fet, reading.discharge_fet) == (True, False)
        # A protection holds the discharge FET: the BMS does not take "on", the read-back says so.
        sim.protections = {CELL_UNDERVOLTAGE}
        with pytest.raises(BmsWriteRejected) as caught:
            await client.set_fets(discharge=True)
        assert caught.value.reading is not None
        assert caught.value.reading.discharge_fet is False
    expected = [
        jk_serial.encode_password_request(),
        jk_serial.encode_write_request(jk_serial.REG_CHARGE_SWITCH, b"\x00"),
        jk_serial.encode_read_all_request(),
    ]
    assert sim.requests[:3] == expected


async def test_jk_survives_garbage_and_corruption(tmp_path: Path) -> None:
    sim = jk_pack(tmp_path)
    async with running(sim), jk_client(sim, request_timeout=SHORT) as client:
        sim.inject_garbage(b"NW\x00\x30garbage" + bytes(40), before_next_reply=True)
        assert (await client.read()).soc == 63.0
        sim.corrupt_next_reply()
        assert (await client.read()).soc == 63.0  # retried
        sim.set_silent(True)
        with pytest.raises(BmsTimeout):
            await client.read()
        sim.set_silent(False)
        assert (await client.read()).soc == 63.0


async def test_jk_only_corrupt_replies(tmp_path: Path) -> None:
    sim = jk_pack(tmp_path)
    async with running(sim), jk_client(sim, request_timeout=SHORT, retries=0) as client:
        sim.corrupt_next_reply()
        with pytest.raises(BmsChecksumError):
            await client.read()


async def test_jk_detection(tmp_path: Path) -> None:
    sim = jk_pack(tmp_path)
    async with running(sim):
        protocol, info = await detect_protocol(sim.port, timeout=SHORT)
    assert protocol is BmsProtocol.JK
    assert info.cell_count == 4
    # JBD and JBD UP came first; the JK board saw only its own request.
    assert sim.requests == [jk_serial.encode_read_all_request()]


async def test_jk_lives_a_day(tmp_path: Path) -> None:
    """With a start time of day the battery follows the sun like the other simulated BMSes."""
    sim = JkSimulator(link_path=port(tmp_path), start_time_of_day=12 * 3600.0, time_scale=600.0)
    sim.soc = 40.0
    sim.step(3600.0)  # an hour around noon: PV charges
    assert sim.current > 0
    assert sim.soc > 40.0
    async with running(sim), jk_client(sim) as client:
        reading = await client.read()
    assert reading.current is not None
    assert reading.current > 0


# --- JK PB bus ---------------------------------------------------------------------------------


def pb_bus(tmp_path: Path, **options: object) -> JkPbBusSimulator:
    """Three packs of different size on one bus, in a scripted state."""
    sim = JkPbBusSimulator(
        (1, 2, 3),
        cells=(16, 8, 16),
        capacity_ah=(314.0, 100.0, 280.0),
        link_path=port(tmp_path, "ttyPB"),
        frozen=True,
        serial_numbers=("40110490267", "40110490268", "40110490269"),
        **options,  # type: ignore[arg-type]
    )
    for address, pack in sim.packs.items():
        pack.current = -5.0 * address
        pack.soc = 50.0 + address
        pack.mosfet_temperature = 30.0 + address
    return sim


async def test_pb_scan_finds_three_packs_each_with_its_own_values(tmp_path: Path) -> None:
    sim = pb_bus(tmp_path)
    async with running(sim), bus_client(sim, timeout=SHORT) as bus:
        packs = await bus.scan(range(1, 6))
        assert sorted(packs) == [1, 2, 3]
        for address, pack in packs.items():
            source = sim.packs[address]
            assert pack.address == address
            assert pack.reading.current == -5.0 * address
            assert pack.reading.soc == 50.0 + address
            assert pack.reading.mosfet_temperature == 30.0 + address
            assert pack.reading.cell_voltages == tuple(source.cell_voltages)
            assert pack.reading.nominal_capacity == source.capacity_ah
            assert pack.serial == source.serial_number
            assert pack.reading.serial == source.serial_number
            assert (pack.model, pack.hardware_version, pack.firmware_version) == (
                "JK_PB2A16S20P",
                "15A",
                "15.32",
            )
            assert pack.reading.temperatures == (25.0, 24.0, 24.5, 25.5)
        assert len(packs[2].reading.cell_voltages) == 8
        # Later refreshes ask for cell info only: the identity is kept.
        sim.packs[2].requests.clear()
        await bus.read(2)
        assert sim.packs[2].requests == [jk_pb.encode_trigger(2, jk_pb.REG_CELL_INFO)]
        settings = await bus.read_settings(2)
        assert (settings.cell_count, settings.nominal_capacity) == (8, 100.0)
    # Addresses 4 and 5 were asked and nobody answered.
    assert {request[0] for request in sim.requests} == {1, 2, 3, 4, 5}
    assert bus.error_counters == {"checksum_errors": 0, "discarded_bytes": 0}


async def test_pb_silent_pack_times_out_while_the_others_answer(tmp_path: Path) -> None:
    sim = pb_bus(tmp_path)
    async with running(sim), bus_client(sim, timeout=SHORT) as bus:
        sim.set_silent(2, True)
        with pytest.raises(BmsTimeout, match="pack 2"):
            await bus.read(2)
        assert (await bus.read(1)).reading.current == -5.0
        assert (await bus.read(3)).reading.current == -15.0
        assert sorted(await bus.scan()) == [1, 3]
        sim.set_silent(2, False)
        assert (await bus.read(2)).reading.current == -10.0


async def test_pb_concurrent_reads_are_serialised(tmp_path: Path) -> None:
    sim = pb_bus(tmp_path)
    async with running(sim), bus_client(sim, timeout=1.0) as bus:
        packs = await asyncio.gather(*(bus.read(address) for address in (1, 2, 3, 1)))
    assert [pack.address for pack in packs] == [1, 2, 3, 1]
    assert [pack.reading.soc for pack in packs] == [51.0, 52.0, 53.0, 51.0]


async def test_pb_garbage_corruption_and_unplug(tmp_path: Path) -> None:
    sim = pb_bus(tmp_path)
    async with running(sim), bus_client(sim, timeout=SHORT) as bus:
        await bus.read(1)
        sim.packs[1].inject_garbage(before_next_reply=True)
        assert (await bus.read(1)).reading.soc == 51.0
        sim.packs[3].corrupt_next_reply()
        assert (await bus.read(3)).reading.soc == 53.0  # retried once
        assert bus.checksum_errors == 1
        sim.inject_garbage()
        sim.packs[2].stop_mid_frame_once()
        assert (await bus.read(2)).reading.soc == 52.0
        assert bus.discarded_bytes > 0
        await sim.unplug()
        with pytest.raises(BmsNotConnected):
            await bus.read(1)
        await sim.replug()
        sim.packs[1].requests.clear()
        assert (await bus.read(1)).reading.soc == 51.0
        # A new connection reads the identity again (the pack may have been swapped).
        assert sim.packs[1].requests == [
            jk_pb.encode_trigger(1, jk_pb.REG_DEVICE_INFO),
            jk_pb.encode_trigger(1, jk_pb.REG_CELL_INFO),
        ]


async def test_pb_only_corrupt_replies_and_unsupported_fets(tmp_path: Path) -> None:
    sim = pb_bus(tmp_path)
    async with running(sim), bus_client(sim, timeout=SHORT, retries=0) as bus:
        await bus.read(1)
        sim.packs[1].corrupt_next_reply()
        with pytest.raises(BmsChecksumError):
            await bus.read(1)
        with pytest.raises(BmsUnsupported):
            await bus.set_fets(1, charge=False)
        with pytest.raises(ValueError, match="1 to 15"):
            await bus.read(0)


async def test_pb_protections_and_layout(tmp_path: Path) -> None:
    sim = pb_bus(tmp_path)
    pack = sim.packs[1]
    pack.protections = {CHARGE_OVERTEMPERATURE, DISCHARGE_OVERTEMPERATURE}
    pack.temperatures = [41.0, 42.0]  # two sensors only: T3/T4 report "absent"
    async with running(sim), bus_client(sim, timeout=SHORT) as bus:
        reading = (await bus.read(1)).reading
    assert reading.protections == {CHARGE_OVERTEMPERATURE, DISCHARGE_OVERTEMPERATURE}
    assert reading.temperatures == (41.0, 42.0)
    assert (reading.charge_fet, reading.discharge_fet) == (False, False)
    assert jk02.layout_for(pack.device_info()) == jk02.LAYOUT_32S


async def test_detection_recognises_a_pb_bus(tmp_path: Path) -> None:
    sim = pb_bus(tmp_path)
    async with running(sim):
        with pytest.raises(JkPbBusDetected) as caught:
            await detect_protocol(sim.port, timeout=SHORT)
        assert sorted(caught.value.packs) == [1]
        assert isinstance(caught.value, BmsNotDetected)
        with pytest.raises(JkPbBusDetected) as caught:
            await detect_protocol(sim.port, timeout=SHORT, jk_pb_addresses=(2, 3, 4))
        assert sorted(caught.value.packs) == [2, 3]


def test_pb_bus_simulator_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="distinct"):
        JkPbBusSimulator((1, 1), link_path=port(tmp_path))
    with pytest.raises(ValueError, match="one value per pack"):
        JkPbBusSimulator((1, 2), cells=(16,), link_path=port(tmp_path))
    with pytest.raises(ValueError, match="one value per pack"):
        JkPbBusSimulator((1, 2), serial_numbers=("a",), link_path=port(tmp_path))
    with pytest.raises(ValueError, match="1 to 15"):
        JkPbBusSimulator((16,), link_path=port(tmp_path))
    sim = JkPbBusSimulator((4, 7), link_path=port(tmp_path))
    assert sim.addresses == [4, 7]
    assert not sim.plugged


async def test_pb_bus_lives_a_day(tmp_path: Path) -> None:
    sim = JkPbBusSimulator(
        (1, 2), link_path=port(tmp_path), start_time_of_day=12 * 3600.0, time_scale=600.0
    )
    for pack in sim.packs.values():
        pack.soc = 40.0
        pack.step(3600.0)
        assert pack.current > 0
        assert pack.soc > 40.0
    async with running(sim):
        await sim.start()  # a second start is a no-op
        assert sim.plugged
    with pytest.raises(RuntimeError, match="stopped"):
        await sim.start()


async def test_pb_bus_port_errors(tmp_path: Path) -> None:
    missing = JkPbBus(port(tmp_path, "nothing"), timeout=SHORT)
    assert missing.port == port(tmp_path, "nothing")
    with pytest.raises(BmsNotConnected, match="cannot open"):
        await missing.read(1)
    await missing.close()
    sim = pb_bus(tmp_path)
    async with running(sim), bus_client(sim, timeout=SHORT) as bus:
        assert not is_connected(bus)
        await bus.read(1)
        assert is_connected(bus)
        await sim.unplug()
        with pytest.raises(BmsNotConnected):
            await bus.scan()


async def test_pb_packs_live_while_the_bus_runs(tmp_path: Path) -> None:
    sim = JkPbBusSimulator((1, 2), link_path=port(tmp_path), time_scale=60.0)
    sim.packs[1].current = 50.0
    sim.packs[2].frozen = True
    sim.packs[2].current = 50.0
    async with running(sim):
        await asyncio.sleep(1.3)  # one physics step of a minute
    assert sim.packs[1].soc > 50.0
    assert sim.packs[2].soc == 50.0
