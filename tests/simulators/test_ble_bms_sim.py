"""Simulated Bluetooth BMS peers behind bleak's client seam, and aiobmsble running against them.

The peers' frames are built by our own encoders; they are checked against the captured frames
(the bytes we write are the bytes the real BMSs sent for the same values) and against aiobmsble,
which must read back exactly the state the peer was given.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
import json
import math
from pathlib import Path
import struct
from typing import Any

from bleak import BleakClient
from bleak.backends.device import BLEDevice
from bleak.exc import BleakDeviceNotFoundError, BleakError
from hypothesis import HealthCheck, given, settings, strategies as st
import pytest

from custom_components.sma_victron_bridge.protocols import ProtocolError, jbd
from custom_components.sma_victron_bridge.protocols.ble_bms import (
    BleBmsAuthError,
    BleBmsBadData,
    BleBmsLink,
    BleBmsReading,
    BleBmsTimeout,
    BleBmsUnreachable,
    bms_class_for,
    decode_ble_capture,
    library_bleak_client,
)
from custom_components.sma_victron_bridge.protocols.bms_common import crc16_modbus
from custom_components.sma_victron_bridge.simulators import ble_bms as sim

TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "testdata"
JK = {e["name"]: e for e in json.loads((TESTDATA / "jk" / "jk_ble.json").read_text())}
JBD = {e["name"]: e for e in json.loads((TESTDATA / "ble_bms" / "jbd_ble.json").read_text())}
DALY = {e["name"]: e for e in json.loads((TESTDATA / "ble_bms" / "daly_ble.json").read_text())}
ADDRESS = "C8:47:80:00:00:01"


def _device(address: str = ADDRESS) -> BLEDevice:
    return BLEDevice(address, "sim-bms", {})


@pytest.fixture
def on_peers() -> Iterator[None]:
    with sim.aiobmsble_on_simulated_peers():
        yield


@pytest.fixture
async def registry() -> AsyncIterator[list[Any]]:
    """Unregister every peer a test registered (so no test sees another's)."""
    undo: list[Any] = []
    yield undo
    for unregister in undo:
        unregister()


def _register(registry: list[Any], peer: sim.BlePeer, address: str = ADDRESS) -> sim.BlePeer:
    registry.append(sim.register_peer(address, peer))
    return peer


def _is_up(client: BleakClient | sim.SimulatedBleakBackend) -> bool:
    """Connection state, read afresh (keeps mypy from carrying an earlier assert forward)."""
    return bool(client.is_connected)


def _is_up_link(link: BleBmsLink) -> bool:
    return link.is_connected


def _link(family: str, *, keep: bool = True, timeout: float = 5.0, secret: str = "") -> BleBmsLink:
    return BleBmsLink(
        bms_class_for(family), _device(), keep_connection=keep, timeout=timeout, secret=secret
    )


# --- the backend on its own ------------------------------------------------------------------


async def test_bleak_client_reaches_a_peer_through_the_backend(registry: list[Any]) -> None:
    peer = _register(registry, sim.JbdBlePeer())
    client = BleakClient(_device(), backend=sim.SimulatedBleakBackend)
    received: list[bytes] = []
    await client.connect()
    assert client.is_connected
    assert peer.connections == 1
    services = client.services
    assert services.get_characteristic("ff02") is not None
    await client.start_notify("ff01", lambda _char, data: received.append(bytes(data)))
    await client.write_gatt_char("ff02", b"\xdd\xa5\x03\x00\xff\xfd\x77", response=True)
    await asyncio.sleep(0.01)
    assert b"".join(received).startswith(b"\xdd\x03\x00")
    assert len(received[0]) == 20  # ATT-sized notifications
    await client.disconnect()
    assert not _is_up(client)
    assert peer.connections == 0


async def test_backend_contract_as_habluetooth_builds_it(registry: list[Any]) -> None:
    """As habluetooth builds it: (device, disconnected_callback=, services=, timeout=, bluez=)."""
    peer = _register(registry, sim.JkBlePeer())
    lost: list[bool] = []
    backend = sim.SimulatedBleakBackend(
        _device(),
        disconnected_callback=lambda: lost.append(True),
        services={"0000ffe0-0000-1000-8000-00805f9b34fb"},
        timeout=10.0,
        bluez={},
    )
    await backend.connect(False, timeout=20.0, dangerous_use_bleak_cache=True)
    assert backend.is_connected
    assert backend.peer is peer
    assert backend.services is not None
    char = backend.services.get_characteristic("ffe1")
    assert char is not None
    assert "notify" in char.properties
    assert backend.mtu_size == 23
    assert backend.name == ADDRESS
    peer.drop_link()
    assert lost == [True]
    assert not _is_up(backend)
    with pytest.raises(BleakError):
        await backend.write_gatt_char(char, b"\x00", True)
    await backend.disconnect()  # idempotent after a drop


async def test_backend_without_peer_or_refused_is_not_found(registry: list[Any]) -> None:
    backend = sim.SimulatedBleakBackend(_device())
    with pytest.raises(BleakDeviceNotFoundError):
        await backend.connect(False)
    _register(registry, sim.DalyBlePeer(refuse_connections=True))
    with pytest.raises(BleakDeviceNotFoundError):
        await backend.connect(False)


async def test_one_connection_slot(registry: list[Any]) -> None:
    _register(registry, sim.DalyBlePeer())
    first = sim.SimulatedBleakBackend(_device())
    await first.connect(False)
    with pytest.raises(BleakError, match="slot"):
        await sim.SimulatedBleakBackend(_device()).connect(False)
    await first.disconnect()


def test_register_rejects_a_second_peer_at_one_address() -> None:
    unregister = sim.register_peer(ADDRESS, sim.JbdBlePeer())
    try:
        with pytest.raises(ValueError, match="already"):
            sim.register_peer(ADDRESS.lower(), sim.JbdBlePeer())
        assert sim.registered_peer(ADDRESS.lower()) is not None
    finally:
        unregister()
    assert sim.registered_peer(ADDRESS) is None


def test_context_manager_points_aiobmsble_at_the_simulated_client() -> None:
    original = library_bleak_client()
    with sim.aiobmsble_on_simulated_peers():
        assert library_bleak_client() is sim.SimulatedBleakClient
        with sim.aiobmsble_on_simulated_peers():
            assert library_bleak_client() is sim.SimulatedBleakClient
        assert library_bleak_client() is sim.SimulatedBleakClient
    assert library_bleak_client() is original


# --- encoders against captures ---------------------------------------------------------------


def _battery_like_jk(frame: bytes, *, layout_32s: bool) -> sim.BleBatteryState:
    """A frozen pack holding the values a captured JK cell info frame carries."""
    slots = 32 if layout_32s else 24
    base = 150 if layout_32s else 118
    mask = int.from_bytes(frame[6 + 2 * slots : 10 + 2 * slots], "little")
    cells = [
        int.from_bytes(frame[6 + 2 * i : 8 + 2 * i], "little") / 1000
        for i in range(mask.bit_count())
    ]
    battery = sim.BleBatteryState(cells=len(cells), frozen=True)
    battery.cell_voltages = cells
    battery.voltage = int.from_bytes(frame[base : base + 4], "little") / 1000
    (battery.current,) = struct.unpack_from("<i", frame, base + 8)
    battery.current /= 1000
    battery.soc = frame[base + 23]
    battery.capacity_ah = int.from_bytes(frame[base + 28 : base + 32], "little") / 1000
    battery.charge_fet = bool(frame[base + 48])
    battery.discharge_fet = bool(frame[base + 49])
    return battery


@pytest.mark.parametrize(
    ("name", "layout_32s"),
    [
        ("jk02_24s_v10_cell_info", False),
        ("jk02_24s_v10_08_cell_info", False),
        ("jk02_32s_v11_cell_info", True),
        ("jk02_32s_v15_cell_info", True),
        ("jk02_32s_v19_27_cell_info_balancing", True),
    ],
)
def test_jk_cell_info_encoder_writes_the_captured_bytes(name: str, layout_32s: bool) -> None:
    captured = bytes.fromhex(JK[name]["hex"])
    battery = _battery_like_jk(captured, layout_32s=layout_32s)
    ours = sim.jk_cell_info_frame(battery, layout_32s=layout_32s, firmware_major=19)
    slots = 32 if layout_32s else 24
    base = 150 if layout_32s else 118
    count = len(battery.cell_voltages)
    same = [
        (0, 5),  # header and type
        (6, 6 + 2 * count),  # cell voltages
        (6 + 2 * slots, 10 + 2 * slots),  # enabled-cell mask
        (base, base + 4),  # pack voltage
        (base + 8, base + 12),  # current
        (base + 23, base + 24),  # SOC
        (base + 28, base + 32),  # nominal capacity
        (base + 48, base + 50),  # FETs
    ]
    for start, end in same:
        assert ours[start:end] == captured[start:end], (start, end)
    assert sum(ours[:299]) & 0xFF == ours[299]


def test_jk_device_info_encoder_writes_the_captured_fields() -> None:
    captured = bytes.fromhex(JK["jk02_32s_v19_27_device_info"]["hex"])
    expected = JK["jk02_32s_v19_27_device_info"]["expected"]
    ours = sim.jk_device_info_frame(
        model=expected["vendor_id"],
        hardware=expected["hardware_version"],
        firmware=expected["software_version"],
        serial_number=expected["serial_number"],
        name=expected["device_name"],
        uptime_s=expected["uptime_s"],
        power_on_count=expected["power_on_count"],
    )
    for start, key in ((6, "vendor_id"), (22, "hardware_version"), (30, "software_version")):
        end = start + len(expected[key]) + 1  # the text and its terminating zero
        assert ours[start:end] == captured[start:end], key
    for start, key in ((46, "device_name"), (86, "serial_number")):
        end = start + len(expected[key])
        assert ours[start:end] == captured[start:end], key
    assert ours[:5] == captured[:5]
    assert ours[38:46] == captured[38:46]  # uptime and power-on count


def test_jk_settings_encoder_writes_the_captured_fields() -> None:
    captured = bytes.fromhex(JK["jk02_32s_v11_17_settings"]["hex"])
    ours = sim.jk_settings_frame(
        cells=8, capacity_ah=100.0, charge_switch=True, discharge_switch=True
    )
    for start in (114, 118, 122, 126, 130):  # cells, three switches, capacity
        assert ours[start : start + 4] == captured[start : start + 4], start


def test_jbd_encoders_write_the_captured_frames() -> None:
    captured = bytes.fromhex(JBD["jbd_ble_basic_info_4s_280ah"]["hex"])
    battery = sim.BleBatteryState(cells=4, capacity_ah=280.0, frozen=True)
    battery.cell_voltages = [3.43, 3.425, 3.432, 3.417]
    battery.voltage = 13.70  # measured by the BMS, not the cell sum
    battery.soc = 279.98 / 280 * 100
    battery.cycles = 0
    battery.temperatures = [19.5, 19.5, 19.1]
    data = sim.jbd_basic_info(battery, software_version=0x80)
    ours = sim.jbd_reply(0x03, data)
    assert len(ours) == len(captured)
    for start, end in ((0, 10), (12, 14), (16, 22), (23, 33)):  # all but date, SOC, checksum
        assert ours[start:end] == captured[start:end], (start, end)
    assert jbd.parse_frame(ours).payload == data
    cells = bytes.fromhex(JBD["jbd_ble_cell_voltages_4s"]["hex"])
    assert sim.jbd_reply(0x04, cells[4:12]) == cells
    login = JBD["jbd_ble_v13_auth_password_ack"]
    assert sim.jbd_login_reply(True) == bytes.fromhex(login["hex"])


def test_daly_encoder_writes_the_captured_status_block() -> None:
    entry = DALY["daly_d2_status_62reg_8s_idle"]
    captured = bytes.fromhex(entry["hex"])
    expected = entry["expected"]
    battery = sim.BleBatteryState(cells=8, capacity_ah=25.0, soc=100.0, frozen=True)
    battery.cell_voltages = expected["cell_voltages"]
    battery.temperatures = expected["temperatures"]
    battery.voltage = expected["total_voltage"]
    battery.cycles = 0
    peer = sim.DalyBlePeer(battery=battery)
    registers = peer._live_registers()
    ours = sim.daly_read_reply(0xD2, [registers.get(i, 0) for i in range(62)])
    for register in (*range(8), 0x20, 0x28, 0x29, 0x2A, 0x2F, 0x30, 0x31, 0x32, 0x33, 0x35):
        start = 3 + 2 * register
        assert ours[start : start + 2] == captured[start : start + 2], hex(register)


# --- aiobmsble against live peers -------------------------------------------------------------


@pytest.mark.parametrize("firmware", ["10.07", "11.17", "15.38", "19.27"])
async def test_jk_live_peer_reads_back_its_state(
    firmware: str, registry: list[Any], on_peers: None
) -> None:
    battery = sim.BleBatteryState(cells=16, capacity_ah=200.0, soc=42.0, frozen=True)
    battery.current = -12.5
    battery.temperatures = [18.5, 19.0, 20.0, 21.5]
    battery.mosfet_temperature = 33.3
    battery.charge_fet = False
    peer = _register(registry, sim.JkBlePeer(firmware=firmware, battery=battery, at_noise=True))
    link = _link("jikong")
    reading = await link.update()
    assert reading.cell_voltages == pytest.approx(battery.cell_voltages)
    assert reading.voltage == pytest.approx(battery.voltage, abs=1e-3)
    assert reading.current == pytest.approx(-12.5)
    assert reading.soc == 42
    assert reading.remaining_capacity == pytest.approx(84.0)
    assert reading.nominal_capacity == 200
    assert reading.charge_fet is False
    assert reading.discharge_fet is True
    assert reading.mosfet_temperature == pytest.approx(33.3)
    sensors = 4 if firmware >= "14" else 2
    assert reading.temperatures == pytest.approx([18.5, 19.0, 21.5, 20.0][:sensors])
    info = await link.device_info()
    assert info["sw_version"] == firmware
    assert info["manufacturer"] == "Jikong"
    await link.close()
    assert peer.connections == 0


async def test_jbd_live_peer_with_login(registry: list[Any], on_peers: None) -> None:
    battery = sim.BleBatteryState(cells=4, frozen=True)
    battery.balancing = {2}
    battery.problem_code = 1 << 4  # charge over-temperature
    _register(registry, sim.JbdBlePeer(password="123456", battery=battery))
    link = _link("jbd", secret="123456")
    reading = await link.update()
    assert reading.balancing == (False, False, True, False)
    assert reading.protections == {"charge_overtemperature"}
    assert reading.cell_voltages == pytest.approx(battery.cell_voltages)
    await link.close()


async def test_daly_live_peer(registry: list[Any], on_peers: None) -> None:
    battery = sim.BleBatteryState(cells=16, frozen=True)
    battery.current = 7.5
    battery.problem_code = 0x0100
    _register(registry, sim.DalyBlePeer(battery=battery))
    link = _link("daly")
    reading = await link.update()
    assert reading.current == pytest.approx(7.5)
    assert reading.mosfet_temperature == pytest.approx(26.0)
    assert reading.protections == {"bms_problem"}
    assert reading.problem_code == 0x0100
    await link.close()


async def test_keep_connection_false_frees_the_slot_after_each_update(
    registry: list[Any], on_peers: None
) -> None:
    peer = _register(registry, sim.JkBlePeer())
    link = _link("jikong", keep=False)
    for _ in range(3):
        assert isinstance(await link.update(), BleBmsReading)
        assert peer.connections == 0
    assert (link.updates, link.connects, link.reconnects) == (3, 3, 2)
    held = _link("jikong", keep=True)
    await held.update()
    await held.update()
    assert peer.connections == 1
    assert held.connects == 1
    await held.close()
    await held.close()  # idempotent
    assert peer.connections == 0
    with pytest.raises(ProtocolError):
        await held.update()


# --- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "peer_factory", "cuts"),
    [
        ("jikong", lambda: sim.JkBlePeer(firmware="11.17"), (20, 21, 22, 23, 150, 299)),
        ("jikong", lambda: sim.JkBlePeer(firmware="10.07"), tuple(range(20, 320, 7))),
        # 19.x appends the ready frame to the device info frame's last notification
        ("jikong", lambda: sim.JkBlePeer(firmware="19.27"), (20, 150, 299)),
        ("jbd", sim.JbdBlePeer, (20, 21, 30)),
    ],
)
async def test_notifications_split_at_any_byte_after_the_first_20(
    family: str,
    peer_factory: Any,
    cuts: tuple[int, ...],
    registry: list[Any],
    on_peers: None,
) -> None:
    """aiobmsble reassembles any later split; the first notification holds the frame header.

    With the smallest ATT MTU a notification carries 20 bytes, so a reply's first notification
    always holds its header. Splits inside the header are the fuzz test's business below: there
    aiobmsble loses the frame (a timeout, a ProtocolError), which is all that may happen.
    """
    peer = _register(registry, peer_factory())
    peer.split_at = cuts
    link = _link(family)
    reading = await link.update()
    assert reading.cell_voltages == pytest.approx(peer.battery.cell_voltages)
    await link.close()


async def test_slow_answers_time_out_then_recover(registry: list[Any], on_peers: None) -> None:
    peer = _register(registry, sim.JkBlePeer(latency=0.4))
    link = _link("jikong", timeout=0.3)
    with pytest.raises(ProtocolError) as caught:
        await link.update()
    assert caught.type in (BleBmsTimeout, BleBmsUnreachable)
    assert peer.connections == 0  # a failed update leaves no link behind
    peer.latency = 0.02
    assert (await link.update()).soc is not None
    assert (link.updates, link.failures) == (1, 1)
    assert link.last_error is not None
    await link.close()


async def test_link_dropped_mid_reply(registry: list[Any], on_peers: None) -> None:
    peer = _register(registry, sim.JkBlePeer(chunk_size=20))
    link = _link("jikong", timeout=1.0)
    await link.update()
    peer.drop_after_notifications = 5  # the next cell info frame breaks off after 100 bytes
    with pytest.raises(BleBmsUnreachable):
        await link.update()
    assert peer.connections == 0
    assert peer.queued_notifications == 0
    assert (await link.update()).cell_voltages
    assert link.reconnects == 1
    await link.close()


async def test_out_of_range_then_back(registry: list[Any], on_peers: None) -> None:
    peer = _register(registry, sim.DalyBlePeer(refuse_connections=True))
    link = _link("daly", timeout=1.0)
    with pytest.raises(BleBmsUnreachable):
        await link.update()
    peer.refuse_connections = False
    assert (await link.update()).voltage is not None
    await link.close()


async def test_peer_going_away_drops_a_held_link(registry: list[Any], on_peers: None) -> None:
    peer = sim.JbdBlePeer()
    unregister = sim.register_peer(ADDRESS, peer)
    link = _link("jbd", timeout=1.0)
    await link.update()
    assert link.is_connected
    unregister()
    assert not _is_up_link(link)
    assert peer.connections == 0
    with pytest.raises(BleBmsUnreachable):
        await link.update()
    await link.close()


async def test_wrong_password_is_an_auth_error(registry: list[Any], on_peers: None) -> None:
    _register(registry, sim.JbdBlePeer(password="123456"))
    link = _link("jbd", secret="654321", timeout=2.0)
    with pytest.raises(BleBmsAuthError):
        await link.update()
    await link.close()


async def test_replace_device_moves_to_the_new_route(registry: list[Any], on_peers: None) -> None:
    first = _register(registry, sim.JkBlePeer())
    second_battery = sim.BleBatteryState(soc=91.0, frozen=True)
    second = _register(registry, sim.JkBlePeer(battery=second_battery), "C8:47:80:00:00:02")
    link = _link("jikong")
    assert (await link.update()).soc == 60
    link.replace_device(link_device := _device("C8:47:80:00:00:02"))
    link.replace_device(link_device)  # the same device again changes nothing
    assert link.address == "C8:47:80:00:00:02"
    assert (await link.update()).soc == 91
    assert first.connections == 0
    assert second.connections == 1
    await link.close()


async def test_noise_and_raw_notifications_are_ignored(registry: list[Any], on_peers: None) -> None:
    peer = _register(registry, sim.JkBlePeer(at_noise=True))
    peer.noise = (b"\x00\xff", b"AT\r\n")
    link = _link("jikong")
    await link.update()
    peer.inject(b"\x55\xaa\xeb\x90\x02garbage")  # a broken frame: aiobmsble asks again
    await asyncio.sleep(0.01)
    assert (await link.update()).cell_voltages
    await link.close()


async def test_jk_switch_commands_reach_the_battery(registry: list[Any]) -> None:
    peer = _register(registry, sim.JkBlePeer())
    client = BleakClient(_device(), backend=sim.SimulatedBleakBackend)
    await client.connect()
    frames: list[bytes] = []
    await client.start_notify("ffe1", lambda _c, data: frames.append(bytes(data)))
    command = bytearray(sim.JK_COMMAND_HEADER + bytes((0x1D, 4, 0, 0, 0, 0)) + bytes(9) + b"\0")
    command[19] = sum(command[:19]) & 0xFF
    await client.write_gatt_char("ffe1", bytes(command), response=False)
    bad = bytes(command[:19]) + bytes(((command[19] + 1) & 0xFF,))
    await client.write_gatt_char("ffe1", bad, response=False)  # wrong sum: ignored
    await asyncio.sleep(0.01)
    assert peer.battery.charge_fet is False
    assert b"".join(frames)[4] == 0x01  # the settings frame reports the switch
    await client.disconnect()


async def test_daly_writes_are_echoed_and_unknown_requests_ignored(registry: list[Any]) -> None:
    peer = sim.DalyBlePeer()
    _register(registry, peer)
    client = BleakClient(_device(), backend=sim.SimulatedBleakBackend)
    await client.connect()
    frames: list[bytes] = []
    await client.start_notify("fff1", lambda _c, data: frames.append(bytes(data)))
    write = bytes.fromhex(DALY["daly_d2_balancer_on_write"]["request_hex"])
    await client.write_gatt_char("fff2", write, response=True)
    await client.write_gatt_char("fff2", b"\xd2\x03\x00\x00", response=True)  # too short
    await client.write_gatt_char("fff2", write[:-1] + b"\x00", response=True)  # bad CRC
    await asyncio.sleep(0.01)
    assert frames == [write]
    assert peer.register_writes == [(0xCF, 1)]
    await client.disconnect()


# --- the simulated day -----------------------------------------------------------------------


def _fet(battery: sim.BleBatteryState, which: str) -> bool:
    return bool(battery.charge_fet if which == "charge" else battery.discharge_fet)


def test_battery_lives_a_solar_day() -> None:
    battery = sim.BleBatteryState(soc=40.0, start_time_of_day=12 * 3600, time_scale=600)
    battery.advance(now=1000.0)
    battery.advance(now=1003.0)  # 30 simulated minutes around noon
    assert battery.current > 0
    assert battery.soc > 40.0
    assert battery.time_of_day == pytest.approx(12.5 * 3600)
    night = sim.BleBatteryState(soc=40.0, start_time_of_day=2 * 3600)
    night.step(1800)
    assert night.current < 0
    assert night.soc < 40.0


def test_battery_protection_switches_the_fets() -> None:
    battery = sim.BleBatteryState(soc=99.9)
    battery.current = 500.0  # pushes the full cells past 3.65 V
    battery.step(60)
    assert not _fet(battery, "charge")  # cell over-voltage: the BMS opens the charge FET
    battery.soc = 80.0
    battery.step(60)  # no charge current flows: the cells settle below the release voltage
    assert _fet(battery, "charge")
    battery.soc = 0.5
    battery.current = -50.0
    battery.step(60)
    assert battery.discharge_fet is False


def test_battery_follows_an_inverter_and_can_be_frozen() -> None:
    battery = sim.BleBatteryState(start_time_of_day=0.0)
    battery.follow_current(42.0)
    battery.step(60)
    assert battery.current == 42.0
    with pytest.raises(ValueError, match="finite"):
        battery.follow_current(math.nan)
    frozen = sim.BleBatteryState(frozen=True, soc=33.0)
    frozen.advance(now=0.0)
    frozen.advance(now=10_000.0)
    assert frozen.soc == 33.0


@pytest.mark.parametrize("kwargs", [{"cells": 0}, {"capacity_ah": 0.0}, {"time_scale": 0.0}])
def test_battery_rejects_impossible_packs(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"must|cells"):
        sim.BleBatteryState(**kwargs)


# --- any notification stream ---------------------------------------------------------------


_PEERS: dict[str, Callable[[], sim.BlePeer]] = {
    "jikong": lambda: sim.JkBlePeer(firmware="19.27"),
    "jikong-24s": lambda: sim.JkBlePeer(firmware="10.07", at_noise=True),
    "jbd": sim.JbdBlePeer,
    "daly": sim.DalyBlePeer,
}


async def _survive(
    kind: str,
    cuts: list[int],
    noise: list[bytes],
    drop_after: int | None,
    garbage: list[bytes] | None,
    keep: bool,
) -> None:
    before = asyncio.all_tasks()
    address = "C8:47:80:00:00:7F"
    peer: sim.BlePeer = _PEERS[kind]()
    peer.split_at = tuple(cuts) or None
    peer.noise = tuple(noise)
    peer.drop_after_notifications = drop_after
    if garbage is not None and isinstance(peer, sim.JkBlePeer):
        peer.replay = {0x03: garbage[0], 0x02: garbage[-1], 0xC8: sim.jk_ready_frame()}
    elif garbage is not None and isinstance(peer, sim.JbdBlePeer):
        peer.replay = {0x03: garbage[0], 0x04: garbage[-1]}
    unregister = sim.register_peer(address, peer)
    try:
        family = kind.split("-", maxsplit=1)[0]
        link = BleBmsLink(
            bms_class_for(family), _device(address), keep_connection=keep, timeout=0.25
        )
        for _ in range(2):
            try:
                reading = await link.update()
            except ProtocolError:
                continue
            assert isinstance(reading, BleBmsReading)
        await link.close()
        assert peer.connections == 0
        assert peer.queued_notifications == 0
        await asyncio.sleep(0)
        assert asyncio.all_tasks() == before
    finally:
        unregister()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(sorted(_PEERS)),
    cuts=st.lists(st.integers(min_value=1, max_value=330), max_size=10),
    noise=st.lists(st.binary(min_size=1, max_size=40), max_size=3),
    drop_after=st.none() | st.integers(min_value=0, max_value=20),
    garbage=st.none() | st.lists(st.binary(min_size=1, max_size=330), min_size=1, max_size=2),
    keep=st.booleans(),
)
def test_link_survives_any_notification_stream(
    kind: str,
    cuts: list[int],
    noise: list[bytes],
    drop_after: int | None,
    garbage: list[bytes] | None,
    keep: bool,
) -> None:
    """Random splits, noise, drops and garbage frames: only ProtocolError, nothing left behind."""
    with sim.aiobmsble_on_simulated_peers():
        asyncio.run(_survive(kind, cuts, noise, drop_after, garbage, keep))


# --- what a broken module does to the link ---------------------------------------------------


class _JkModuleWithoutNotify(sim.JkBlePeer):
    """A JK module whose FFE1 lost its notify property (aiobmsble finds no notify handle)."""

    gatt_services = (
        sim.GattServiceSpec("ffe0", (sim.GattCharacteristicSpec("ffe1", ("write",)),)),
    )


class _JbdModuleWithoutNotify(sim.JbdBlePeer):
    """A JBD module whose FF01 does not notify (subscribing fails in bleak)."""

    gatt_services = (
        sim.GattServiceSpec(
            "ff00",
            (
                sim.GattCharacteristicSpec("ff01", ("read",)),
                sim.GattCharacteristicSpec("ff02", ("write",)),
            ),
        ),
    )


@pytest.mark.parametrize(
    ("family", "peer_class"), [("jikong", _JkModuleWithoutNotify), ("jbd", _JbdModuleWithoutNotify)]
)
async def test_a_module_without_notifications_is_unreachable(
    family: str, peer_class: type[sim.BlePeer], registry: list[Any], on_peers: None
) -> None:
    peer = _register(registry, peer_class())
    link = _link(family, timeout=2.0)
    with pytest.raises(BleBmsUnreachable, match="Error"):
        await link.update()
    assert peer.connections == 0
    assert link.family == family
    assert link.keep_connection is True
    await link.close()


async def test_data_the_library_rejects_is_bad_data(registry: list[Any], on_peers: None) -> None:
    """A JBD 0x03 answer too short to carry the software version: aiobmsble raises ValueError."""
    short = sim.jbd_reply(0x03, bytes(5))
    _register(registry, sim.JbdBlePeer(replay={0x03: short}))
    link = _link("jbd", timeout=2.0)
    with pytest.raises(BleBmsBadData, match="ValueError"):
        await link.device_info()
    await link.close()


def test_link_needs_a_positive_timeout() -> None:
    with pytest.raises(ValueError, match="timeout"):
        _link("jbd", timeout=0.0)


async def test_backend_edges(registry: list[Any]) -> None:
    peer = _register(registry, sim.JbdBlePeer(latency=0.01))
    client = BleakClient(_device(), backend=sim.SimulatedBleakBackend)
    await client.connect()
    services = client.services
    write_char = services.get_characteristic("ff02")
    assert write_char is not None
    with pytest.raises(BleakError, match="readable"):
        await client.read_gatt_char("ff01")
    backend = sim.SimulatedBleakBackend(_device())
    with pytest.raises(BleakError, match="descriptors"):
        await backend.read_gatt_descriptor(None)  # type: ignore[arg-type]
    with pytest.raises(BleakError, match="descriptors"):
        await backend.write_gatt_descriptor(None, b"")  # type: ignore[arg-type]
    with pytest.raises(BleakError, match="notify"):
        await client.start_notify("ff02", lambda _c, _d: None)
    await client.pair()
    received: list[bytes] = []
    await client.start_notify("ff01", lambda _c, data: received.append(bytes(data)))
    await client.stop_notify("ff01")
    await client.write_gatt_char("ff02", jbd.encode_read(0x03), response=True)
    await asyncio.sleep(0.05)
    assert received == []  # nobody subscribed: the notifications went nowhere
    await client.connect()  # already connected: nothing happens
    await client.disconnect()
    await client.unpair()
    assert peer.connect_count == 1


@pytest.mark.parametrize("kwargs", [{"latency": -1.0}, {"chunk_size": -5}])
def test_peer_rejects_impossible_link_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must"):
        sim.JbdBlePeer(**kwargs)


async def _answers(peer: sim.BlePeer, uuid: str, notify: str, *writes: bytes) -> list[bytes]:
    client = BleakClient(_device(), backend=sim.SimulatedBleakBackend)
    await client.connect()
    frames: list[bytes] = []
    await client.start_notify(notify, lambda _c, data: frames.append(bytes(data)))
    for data in writes:
        await client.write_gatt_char(uuid, data, response=False)
        await asyncio.sleep(0.01)
    await client.disconnect()
    return frames


def _jbd_frames(chunks: list[bytes]) -> list[bytes]:
    return jbd.FrameAssembler().feed(b"".join(chunks))


async def test_jbd_peer_registers_and_login(registry: list[Any]) -> None:
    peer = sim.JbdBlePeer(password="123456")
    _register(registry, peer)
    login = b"\xff\xaa\x15\x06123456"
    login += bytes((sum(login[2:]) & 0xFF,))
    frames = await _answers(
        peer,
        "ff02",
        "ff01",
        jbd.encode_read(0x03),  # before the login: ignored
        b"\xff\xaa\x15\x06123",  # cut short: ignored
        login[:-1] + b"\x00",  # wrong sum: ignored
        login,
        jbd.encode_read(0x05),
        jbd.encode_mosfet_control(False, True),  # outside factory mode: refused
        jbd.encode_factory_mode_exit(),  # not in factory mode: refused
        jbd.encode_factory_mode_enter(),
        jbd.encode_mosfet_control(False, True),
        jbd.encode_factory_mode_exit(),
        jbd.encode_write(0x10, b"\x00\x01"),
        jbd.encode_read(0x24),
        b"\xdd\xa5\x03\x00\x00\x00\x77",  # bad checksum: dropped by the assembler
    )
    assert frames[0] == sim.jbd_login_reply(True)
    replies = _jbd_frames(frames[1:])
    assert jbd.parse_frame(replies[0]).payload.decode() == peer.hardware
    statuses = [jbd.parse_frame(frame).status for frame in replies[1:]]
    assert statuses == [0x80, 0x80, 0, 0, 0, 0x80, 0x80]
    assert [jbd.parse_frame(frame).register for frame in replies[3:6]] == [0x00, 0xE1, 0x01]
    assert peer.battery.charge_fet is False
    assert peer.battery.discharge_fet is True


async def test_daly_replay_writes_and_other_functions(registry: list[Any]) -> None:
    peer = sim.DalyBlePeer(registers={0x10: 7})
    _register(registry, peer)
    request = bytes.fromhex("d20600100009")
    request += crc16_modbus(request).to_bytes(2, "little")
    other = bytes.fromhex("d20400000001")
    other += crc16_modbus(other).to_bytes(2, "little")
    frames = await _answers(peer, "fff2", "fff1", request, other)
    assert frames == [request]
    assert peer.registers == {0x10: 9}


async def test_jk_discharge_switch(registry: list[Any]) -> None:
    peer = sim.JkBlePeer()
    _register(registry, peer)
    command = bytearray(sim.JK_COMMAND_HEADER + bytes((0x1E, 4)) + bytes(14))
    command[19] = sum(command[:19]) & 0xFF
    await _answers(peer, "ffe1", "ffe1", bytes(command))
    assert peer.battery.discharge_fet is False


def _jk_command(command: int) -> bytes:
    """A JK request as aiobmsble sends it (zero padding)."""
    frame = sim.JK_COMMAND_HEADER + bytes((command, 0)) + bytes(13)
    return frame + bytes((sum(frame) & 0xFF,))


async def test_captured_notification_stream_replayed_as_received(
    registry: list[Any], on_peers: None
) -> None:
    """PB2A16S15P 14.20 as btsnoop recorded it: 128/22-byte pieces, C8 + AT, AT before a frame."""
    entry = JK["jk_ble_notification_stream_pb2a16s15p_v14"]
    notifications = [bytes.fromhex(n) for n in entry["notifications"]]
    peer = _register(registry, sim.JkBlePeer())
    peer.script = {
        _jk_command(0x97): tuple(notifications[:6]),  # device info, C8 ready, AT
        _jk_command(0x96): tuple(notifications[6:10] + notifications[16:]),  # settings, cells
    }
    link = _link("jikong")
    info = await link.device_info()
    assert (info["model"], info["sw_version"]) == ("JK_PB2A16S15P", "14.20")
    reading = await link.update()
    cell_frame = bytes.fromhex(entry["expected"]["frames"][3])
    expected = await decode_ble_capture(
        "jk_ble", cell_frame, device_info=bytes.fromhex(entry["expected"]["frames"][0])
    )
    assert reading == expected
    await link.close()


async def test_jk_ready_frame_follows_the_first_answered_request(registry: list[Any]) -> None:
    peer = sim.JkBlePeer(firmware="11.17", chunk_size=300)
    _register(registry, peer)
    unknown = bytearray(sim.JK_COMMAND_HEADER + bytes((0x42, 0)) + bytes(14))
    unknown[19] = sum(unknown[:19]) & 0xFF
    frames = await _answers(
        peer, "ffe1", "ffe1", bytes(unknown), _jk_command(0x96), _jk_command(0x96)
    )
    assert [frame[4] for frame in frames] == [0x01, 0x02, 0xC8, 0x02]
    assert frames[2] == sim.jk_ready_frame()


async def test_an_update_cancelled_mid_handshake_is_not_trusted_later(
    registry: list[Any], on_peers: None
) -> None:
    """Cancelled while aiobmsble waits for the device info (its firmware picks the layout).

    Reused, that connection would read a 24S BMS in the 32S layout (7 "cells", 0.007 V).
    """
    peer = _register(registry, sim.JkBlePeer(firmware="10.07", latency=0.05))
    link = _link("jikong")
    task = asyncio.create_task(link.update())
    await asyncio.sleep(0.08)  # connected, the device info request is on its way
    assert peer.connections == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    reading = await link.update()
    assert reading.cell_voltages == pytest.approx(peer.battery.cell_voltages)
    assert reading.voltage == pytest.approx(peer.battery.voltage, abs=1e-3)
    assert peer.connect_count == 2  # the half-set-up connection was dropped, not reused
    await link.close()
    assert peer.connections == 0


@pytest.mark.parametrize(("firmware", "layout"), [("10.07", "24S"), ("11.17", "32S")])
def test_jk_frames_read_alike_by_the_wired_jk02_decoder(firmware: str, layout: str) -> None:
    """The peer's cell info frame, read by protocols/jk02.py (the wired PB path's own decoder)."""
    from custom_components.sma_victron_bridge.protocols import jk02

    battery = sim.BleBatteryState(cells=16, capacity_ah=230.0, soc=71.0, frozen=True)
    battery.current = -23.456
    battery.temperatures = [12.5, 13.5]
    battery.mosfet_temperature = 31.2
    battery.cycles = 42
    battery.discharge_fet = False
    frame = sim.jk_cell_info_frame(
        battery, layout_32s=layout == "32S", firmware_major=int(firmware.split(".", maxsplit=1)[0])
    )
    decoded = jk02.decode_cell_info(frame, layout)
    assert decoded.cell_voltages == pytest.approx(battery.cell_voltages)
    assert decoded.voltage == pytest.approx(battery.voltage, abs=1e-3)
    assert decoded.current == pytest.approx(-23.456)
    assert decoded.temperatures[:2] == pytest.approx([12.5, 13.5])
    assert decoded.mosfet_temperature == pytest.approx(31.2)
    assert decoded.soc == 71
    assert decoded.remaining_capacity == pytest.approx(230.0 * 0.71)
    assert decoded.nominal_capacity == pytest.approx(230.0)
    assert decoded.cycles == 42
    assert decoded.charge_fet is True
    assert decoded.discharge_fet is False
