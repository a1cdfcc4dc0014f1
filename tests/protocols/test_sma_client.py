"""Sunny Boy client against the Sunny Boy simulator over real links.

Bluetooth runs over ``socket.socketpair()`` through ``RfcommTransport(socket_factory=...)`` -
every (re)connect makes a new pair whose other end the simulator serves - and Speedwire over
real UDP on 127.0.0.1. The simulator runs with ``seed=7`` and a frozen clock at
2024-06-21 11:17:13 UTC, so every value is fixed; the expected numbers below are the
simulator's model at that moment (see ``simulators/sunny_boy.py``), and the log-off packet is
compared with the one captured from SBFspot in PROTOCOLS.md §5.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, fields
import socket
import struct
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, strategies as st
import pytest

from custom_components.sma_victron_bridge.protocols import ProtocolError
from custom_components.sma_victron_bridge.protocols.sma_bt import (
    CMD_HISTORY_5MIN,
    CMD_IDENTIFY,
    CMD_LOGOFF,
    CMD_LOGON,
    L1_HELLO,
    L1_NETWORK_READY,
    L1_PPP_LAST,
    L1_TOPOLOGY,
    L1_VARIABLE_REPLY,
    TOPOLOGY_INVERTER,
    Endpoint,
    L1Packet,
    L1StreamParser,
    L2Packet,
    L2Reassembler,
    Query,
    Record,
    build_l2_body,
    decode_l1,
    decode_l2,
    decode_records,
    decode_speedwire,
    encode_bt_packet,
    encode_l1,
    encode_l2,
    encode_speedwire,
)
from custom_components.sma_victron_bridge.protocols.sma_client import (
    NETWORK_STEPS,
    SPOT_QUERIES,
    DeviceInfo,
    FirmwareTooOld,
    InverterBusy,
    SpotValues,
    SunnyBoyClient,
    SunnyBoyConnectionLost,
    SunnyBoyError,
    SunnyBoyTimeout,
    WrongPassword,
    day_starts,
    spot_values_from_records,
)
from custom_components.sma_victron_bridge.protocols.sma_transport import (
    BluetoothUnavailable,
    RfcommTransport,
    SpeedwireTransport,
)
from custom_components.sma_victron_bridge.simulators.sunny_boy import (
    CLIENT_ADDRESS,
    HISTORY_ROWS_PER_PACKET,
    SunnyBoySimulator,
)

MOMENT = 1_718_968_633  # 2024-06-21 11:17:13 UTC
TODAY = MOMENT - MOMENT % 86_400
YESTERDAY = TODAY - 86_400
INVERTER_ADDRESS = "00:80:25:12:34:56"
INVERTER = Endpoint(0x0083, 2130012345)

CAPTURED_LOGOFF = bytes.fromhex(
    "7E3A0044000000000000FFFFFFFFFFFF01007EFF03606508A0FFFFFFFFFFFF0003534D4153424600030000"
    "000002800E01FDFFFFFFFFFFF5DF7E"
)
"""SBFspot's log-off broadcast (PROTOCOLS.md §5); its app endpoint is SUSyID 0x4D53 "SM",
serial 0x46425341 "ASBF", and it is the second packet after connecting (packet id 2)."""
SBFSPOT_ENDPOINT = Endpoint(0x4D53, 0x46425341)

EXPECTED = SpotValues(
    ac_power=2622,
    ac_power_l1=2622,
    ac_voltage_l1=229.46,
    ac_current_l1=11.427,
    grid_frequency=50.01,
    dc_strings=(1, 2),
    dc_power=(1521, 1195),
    dc_voltage=(354.36, 330.3),
    dc_current=(4.292, 3.618),
    energy_today=7184,
    energy_total=17_333_146,
    operating_time=9_544_902,
    feed_in_time=9_144_002,
    temperature=43.23,
    device_status="ok",
    grid_relay="closed",
    signal_strength=0xB4 * 100.0 / 255.0,
    inverter_time=MOMENT,
)
"""The simulator's model (seed 7) at MOMENT; L2/L3 are NaN on this single-phase inverter."""


@dataclass
class BluetoothLink:
    """Socket factory for RfcommTransport: each call is a new link served by the simulator."""

    simulator: SunnyBoySimulator
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __call__(self) -> socket.socket:
        client_end, inverter_end = socket.socketpair()
        self.tasks.append(asyncio.create_task(self.simulator.serve_bluetooth(inverter_end)))
        return client_end


@dataclass
class Harness:
    """Creates simulators and clients and closes all of them after the test."""

    clients: list[SunnyBoyClient] = field(default_factory=list)
    simulators: list[SunnyBoySimulator] = field(default_factory=list)
    links: list[BluetoothLink] = field(default_factory=list)

    def simulator(self, **kwargs: Any) -> SunnyBoySimulator:
        kwargs.setdefault("seed", 7)
        kwargs.setdefault("clock", lambda: float(MOMENT))
        simulator = SunnyBoySimulator(**kwargs)
        self.simulators.append(simulator)
        return simulator

    def bluetooth(
        self, simulator: SunnyBoySimulator, password: str = "0000", **kwargs: Any
    ) -> SunnyBoyClient:
        link = BluetoothLink(simulator)
        self.links.append(link)
        kwargs.setdefault("request_timeout", 1.0)
        client = SunnyBoyClient(
            RfcommTransport(INVERTER_ADDRESS, socket_factory=link), password, **kwargs
        )
        self.clients.append(client)
        return client

    async def speedwire(
        self, simulator: SunnyBoySimulator, password: str = "0000", **kwargs: Any
    ) -> SunnyBoyClient:
        port = await simulator.serve_speedwire()
        kwargs.setdefault("request_timeout", 1.0)
        client = SunnyBoyClient(SpeedwireTransport("127.0.0.1", port), password, **kwargs)
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        for simulator in self.simulators:
            await simulator.close()
        for link in self.links:
            await asyncio.gather(*link.tasks)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    """Simulators and clients that are closed after the test."""
    created = Harness()
    yield created
    await created.close()


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(2):
        while not condition():
            await asyncio.sleep(0.005)


# --------------------------------------------------------------------------------------------
# Handshake
# --------------------------------------------------------------------------------------------


async def test_bluetooth_handshake_netid_1(harness: Harness) -> None:
    """Hello, echo, 0x0A (our address), topology, identify, log-off, log-on."""
    simulator = harness.simulator()
    client = harness.bluetooth(simulator, local_endpoint=SBFSPOT_ENDPOINT)
    await client.connect()

    assert client.connected
    assert client.inverter == INVERTER
    assert client.bt_address == INVERTER_ADDRESS
    assert client.net_id == 1
    assert client.local_address == CLIENT_ADDRESS
    assert client.local_endpoint == SBFSPOT_ENDPOINT
    assert client.topology == ((INVERTER_ADDRESS, TOPOLOGY_INVERTER), (CLIENT_ADDRESS, 0))
    assert simulator.received_commands == [CMD_IDENTIFY, CMD_LOGOFF, CMD_LOGON]
    # The log-off is the very packet SBFspot sends (same app endpoint, packet id 2).
    captured = decode_l2(decode_l1(CAPTURED_LOGOFF).payload)
    assert simulator.received[1] == captured
    assert captured.packet_id == 2
    assert captured.first == 0xFFFFFFFF


async def test_bluetooth_handshake_netid_2_builds_the_network(harness: Harness) -> None:
    """NetID 2: the simulator answers level 2 only after the 0x03/0x04 exchange."""
    simulator = harness.simulator(net_id=2)
    client = harness.bluetooth(simulator)
    await client.connect()

    assert client.net_id == 2
    assert client.inverter == INVERTER
    assert client.topology == (
        (INVERTER_ADDRESS, TOPOLOGY_INVERTER),
        ("00:80:25:12:34:57", TOPOLOGY_INVERTER),
        (CLIENT_ADDRESS, 0),
    )
    values = await client.read_spot_values()
    assert values.ac_power == 2622


async def test_bluetooth_plant_of_two_inverters(harness: Harness) -> None:
    """NetID 2 with a second inverter: both identified, each read with its own values."""
    simulator = harness.simulator(net_id=2)
    second = simulator.add_inverter(2130012399, peak_power=2000.0)
    assert second.bt_address == "00:80:25:12:34:66"
    client = harness.bluetooth(simulator)
    await client.connect()
    other = Endpoint(0x0083, 2130012399)
    assert client.inverters == (INVERTER, other)
    assert client.inverter == INVERTER
    assert (second.bt_address, TOPOLOGY_INVERTER) in client.topology
    # The plant was logged on with one broadcast log-on.
    logon = [p for p in simulator.received if p.command == CMD_LOGON][-1]
    assert (logon.destination_susy_id, logon.destination_serial) == (0xFFFF, 0xFFFFFFFF)
    first_values = await client.read_spot_values()
    second_values = await client.read_spot_values(other)
    assert first_values.ac_power == simulator.state().ac_power == 2622
    assert second_values.ac_power == second.state().ac_power
    assert second_values.energy_total == second.state().energy_total
    assert second_values.ac_power != first_values.ac_power
    assert second_values.energy_total != first_values.energy_total
    second.signal_raw = 0x40
    assert (await client.read_spot_values(other)).signal_strength == 0x40 * 100.0 / 255.0
    info = await client.read_device_info(other)
    assert (info.serial, info.name, info.bt_address) == (
        2130012399,
        "SN: 2130012399",
        "00:80:25:12:34:66",
    )
    assert (await client.read_device_info()).bt_address == INVERTER_ADDRESS
    rows = await client.read_history(YESTERDAY, YESTERDAY + 3600, inverter=other)
    assert rows[0] == (YESTERDAY, second.energy_total_at(YESTERDAY))
    daily = await client.read_daily_history(YESTERDAY, TODAY, inverter=other)
    assert daily == [(t, second.energy_total_at(t)) for t in (YESTERDAY, TODAY)]
    with pytest.raises(SunnyBoyError, match="no inverter 1"):
        await client.read_spot_values(Endpoint(0x0083, 1))


async def test_speedwire_plant_of_three_inverters(harness: Harness, socket_enabled: None) -> None:
    """Speedwire: the identify answers of the whole plant are gathered."""
    simulator = harness.simulator(net_id=3)
    members = [simulator.add_inverter(serial) for serial in (2130000003, 2130000002)]
    client = await harness.speedwire(simulator)
    await client.connect()
    assert [ep.serial for ep in client.inverters] == [2130012345, 2130000002, 2130000003]
    for member in members:
        values = await client.read_spot_values(member.endpoint)
        assert values.energy_total == member.state().energy_total
        assert (await client.read_device_info(member.endpoint)).bt_address is None
    assert [m.endpoint.serial for m in simulator.plant] == [2130012345, 2130000003, 2130000002]
    with pytest.raises(ValueError, match="NetID"):
        harness.simulator().add_inverter(1)


async def test_speedwire_handshake(harness: Harness, socket_enabled: None) -> None:
    """Speedwire: identify, log-off, log-on; no Bluetooth details."""
    simulator = harness.simulator()
    client = await harness.speedwire(simulator)
    await client.connect()
    assert client.inverter == INVERTER
    assert client.bt_address is None
    assert client.net_id is None
    assert client.transport.kind == "speedwire"
    assert simulator.received_commands == [CMD_IDENTIFY, CMD_LOGOFF, CMD_LOGON]


async def test_wrong_password_bluetooth(harness: Harness) -> None:
    """Error 0x0100 on log-on: WrongPassword, link closed."""
    simulator = harness.simulator()
    client = harness.bluetooth(simulator, "1234")
    with pytest.raises(WrongPassword, match="user password was refused"):
        await client.connect()
    assert not client.connected
    await _until(lambda: simulator.bluetooth_clients == 0)
    with pytest.raises(SunnyBoyConnectionLost, match="not connected"):
        await client.read_spot_values()


async def test_wrong_password_speedwire(harness: Harness, socket_enabled: None) -> None:
    """Speedwire refuses the same way; set_password makes the old password fail."""
    simulator = harness.simulator()
    simulator.set_password("4321")
    client = await harness.speedwire(simulator)
    with pytest.raises(WrongPassword):
        await client.connect()
    assert not client.connected


async def test_installer_logon(harness: Harness) -> None:
    """Installer log-on uses group 0x0A and the installer password."""
    simulator = harness.simulator(installer_password="inst")
    client = harness.bluetooth(simulator, "inst", installer=True)
    await client.connect()
    assert simulator.received[-1].first == 0x0A
    await client.close()  # one Bluetooth master at a time: the next one would be busy
    refused = harness.bluetooth(simulator, "0000", installer=True)
    with pytest.raises(WrongPassword, match="installer"):
        await refused.connect()


async def test_busy_bluetooth_while_another_application_is_logged_on(harness: Harness) -> None:
    """A second application on Bluetooth gets status 0x0001: InverterBusy, not WrongPassword."""
    simulator = harness.simulator()
    first = harness.bluetooth(simulator)
    await first.connect()
    second = harness.bluetooth(simulator)
    with pytest.raises(InverterBusy, match="busy"):
        await second.connect()
    assert not second.connected
    assert simulator.received[-1].command == CMD_LOGON
    # Once the first one logs off, the second one gets in.
    await first.close()
    await second.connect()
    assert second.connected


async def test_busy_flag_speedwire(harness: Harness, socket_enabled: None) -> None:
    """Sunny Explorer connected (the simulator's busy flag): busy even with the right password."""
    simulator = harness.simulator()
    client = await harness.speedwire(simulator)
    simulator.set_busy(True)
    with pytest.raises(InverterBusy) as caught:
        await client.connect()
    assert not isinstance(caught.value, WrongPassword)
    simulator.set_busy(False)
    await client.connect()
    assert client.connected


async def test_firmware_too_old(harness: Harness) -> None:
    """Hello protocol byte 3: FirmwareTooOld."""
    simulator = harness.simulator(firmware_too_old=True)
    client = harness.bluetooth(simulator)
    with pytest.raises(FirmwareTooOld, match=r"1\.71"):
        await client.connect()
    assert not client.connected


def test_password_shape_is_checked_at_construction() -> None:
    """More than 12 characters cannot be encoded: ProtocolError before any I/O."""
    transport = RfcommTransport(INVERTER_ADDRESS, socket_factory=lambda: socket.socketpair()[0])
    with pytest.raises(ProtocolError):
        SunnyBoyClient(transport, "x" * 13)


async def test_bluetooth_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a socket factory and without AF_BLUETOOTH, connect() explains the problem."""
    monkeypatch.delattr(socket, "AF_BLUETOOTH", raising=False)
    client = SunnyBoyClient(RfcommTransport(INVERTER_ADDRESS), "0000")
    with pytest.raises(BluetoothUnavailable, match="lacks Bluetooth socket support"):
        await client.connect()
    assert not client.connected


async def test_link_cannot_be_opened() -> None:
    """An error opening the link is a lost connection."""

    def refuse() -> socket.socket:
        raise ConnectionRefusedError("host is down")

    client = SunnyBoyClient(RfcommTransport(INVERTER_ADDRESS, socket_factory=refuse), "0000")
    with pytest.raises(SunnyBoyConnectionLost, match="host is down"):
        await client.connect()


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


async def test_spot_values_bluetooth(harness: Harness) -> None:
    """All 11 blocks plus signal strength equal the simulator's state."""
    simulator = harness.simulator()
    client = harness.bluetooth(simulator)
    await client.connect()
    values = await client.read_spot_values()

    assert values == EXPECTED
    state = simulator.state()
    for item in fields(state):
        if item.name != "time":
            assert getattr(values, item.name) == getattr(state, item.name), item.name
    assert values.inverter_time == state.time
    queried = simulator.received_commands[3:]
    assert queried == [query.command for query in SPOT_QUERIES]


async def test_spot_values_speedwire(harness: Harness, socket_enabled: None) -> None:
    """Speedwire gives the same values; there is no signal strength."""
    simulator = harness.simulator()
    client = await harness.speedwire(simulator)
    await client.connect()
    values = await client.read_spot_values()
    assert values == SpotValues(
        **{item.name: getattr(EXPECTED, item.name) for item in fields(EXPECTED)}
        | {"signal_strength": None}
    )


async def test_unsupported_block_reads_as_none(harness: Harness) -> None:
    """Error 21 (LRI not available) for one block: those values are None, the rest fine."""
    simulator = harness.simulator()
    simulator.set_unsupported(Query.TEMPERATURE.command)
    client = harness.bluetooth(simulator)
    await client.connect()
    values = await client.read_spot_values()
    assert values.temperature is None
    assert values.ac_power == 2622


async def test_device_info(harness: Harness) -> None:
    """Type label, class, type and software version of the simulated SB 3000TL-21."""
    simulator = harness.simulator()
    client = harness.bluetooth(simulator)
    await client.connect()
    assert await client.read_device_info() == DeviceInfo(
        susy_id=0x0083,
        serial=2130012345,
        name="SN: 2130012345",
        device_class="solar_inverter",
        type_label="SB 3000TL-21",
        software_version="02.55.03.R",
        bt_address=INVERTER_ADDRESS,
    )


async def test_device_info_unknown_firmware(harness: Harness) -> None:
    """An inverter reporting its version as NaN (FF FF FF FF) has no known firmware."""
    simulator = harness.simulator(software_version=None)
    client = harness.bluetooth(simulator)
    await client.connect()
    info = await client.read_device_info()
    assert info.software_version is None
    assert info.type_label == "SB 3000TL-21"


async def test_device_info_speedwire(harness: Harness, socket_enabled: None) -> None:
    """Speedwire has no Bluetooth address."""
    simulator = harness.simulator(serial=2130000001, susy_id=0x00B5)
    client = await harness.speedwire(simulator)
    await client.connect()
    info = await client.read_device_info()
    assert (info.susy_id, info.serial, info.bt_address) == (0x00B5, 2130000001, None)
    assert info.name == "SN: 2130000001"


# --------------------------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------------------------


async def test_five_minute_history_of_one_day(harness: Harness) -> None:
    """Yesterday: 288 rows, 2 of them NaN and dropped; 4 level-2 fragments reassembled."""
    simulator = harness.simulator()
    client = harness.bluetooth(simulator)
    await client.connect()
    rows = await client.read_history(YESTERDAY, YESTERDAY + 86_100)

    assert len(rows) == 286
    assert len(rows) > 3 * HISTORY_ROWS_PER_PACKET  # the reply needed 4 fragments
    assert rows[0] == (YESTERDAY, 17_303_005)
    assert rows[-1] == (YESTERDAY + 86_100, 17_325_962)
    missing = {YESTERDAY + 300 * slot for slot in range(288)} - {time for time, _ in rows}
    assert missing == {YESTERDAY + 300 * 54, YESTERDAY + 300 * 222}
    assert all(rows[i][1] <= rows[i + 1][1] for i in range(len(rows) - 1))
    assert all(value == simulator.energy_total_at(time) for time, value in rows)
    assert simulator.received_commands[-1] == CMD_HISTORY_5MIN


async def test_five_minute_history_until_now(harness: Harness, socket_enabled: None) -> None:
    """Two day windows; today's rows stop at the inverter's clock."""
    simulator = harness.simulator()
    client = await harness.speedwire(simulator)
    await client.connect()
    rows = await client.read_history(YESTERDAY + 43_200, MOMENT + 3_600)
    assert rows[0][0] == YESTERDAY + 43_200
    assert rows[-1] == (MOMENT - MOMENT % 300, simulator.energy_total_at(MOMENT - MOMENT % 300))
    # Yesterday 12:00-23:55 is 144 slots minus NaN slot 222; today 00:00-11:15 is 136 slots
    # minus NaN slot 82.
    assert len(rows) == 143 + 135
    assert await client.read_history(MOMENT, MOMENT - 1) == []


async def test_daily_history(harness: Harness) -> None:
    """Daily rows at UTC midnight, 40 days in two request windows."""
    simulator = harness.simulator()
    client = harness.bluetooth(simulator)
    await client.connect()
    rows = await client.read_daily_history(TODAY - 39 * 86_400, MOMENT)
    assert len(rows) == 40
    assert rows[0] == (1_715_558_400, 16_632_366)
    assert rows[-1] == (TODAY, 17_325_962)
    assert [time for time, _ in rows] == [TODAY - day * 86_400 for day in range(39, -1, -1)]


BERLIN = ZoneInfo("Europe/Berlin")
BERLIN_TODAY = 1_718_920_800  # 2024-06-21 00:00 CEST = 2024-06-20 22:00 UTC


async def test_history_windows_follow_local_days(harness: Harness) -> None:
    """An inverter in Berlin: one request per Berlin day, from its midnight (minus 5 min)."""
    simulator = harness.simulator(tz=BERLIN)
    client = harness.bluetooth(simulator)
    await client.connect()
    # 2024-06-20 23:50 … 2024-06-21 00:10 Berlin time: two local days.
    rows = await client.read_history(BERLIN_TODAY - 600, BERLIN_TODAY + 600, BERLIN)
    windows = [(p.first, p.last) for p in simulator.received if p.command == CMD_HISTORY_5MIN]
    yesterday = BERLIN_TODAY - 86_400
    today = (BERLIN_TODAY - 300, BERLIN_TODAY + 86_100)
    assert windows == [(yesterday - 300, yesterday + 86_100), today]
    # The rows around Berlin's midnight are all there, each the counter at its moment.
    assert [time for time, _ in rows] == [BERLIN_TODAY + step for step in range(-600, 601, 300)]
    assert all(value == simulator.energy_total_at(time) for time, value in rows)


def test_day_starts_around_daylight_saving() -> None:
    """2024-10-27 lasts 25 h in Berlin; the windows still meet without a gap."""
    oct_26 = 1_729_893_600  # 2024-10-26 00:00 CEST
    oct_27 = oct_26 + 86_400
    oct_28 = oct_27 + 90_000  # 00:00 CET after the extra hour
    assert day_starts(oct_26 + 3600, oct_28, BERLIN) == [oct_26, oct_27, oct_28]
    assert day_starts(oct_26, oct_26 - 1, BERLIN) == []
    assert day_starts(TODAY + 1, TODAY + 86_399) == [TODAY]


async def test_history_over_a_25_hour_day(harness: Harness) -> None:
    """The 25-hour day's window reaches to the next midnight: no row is lost."""
    oct_27 = 1_729_980_000  # 2024-10-27 00:00 CEST
    simulator = harness.simulator(tz=BERLIN, clock=lambda: float(oct_27 + 2 * 86_400))
    client = harness.bluetooth(simulator)
    await client.connect()
    rows = await client.read_history(oct_27, oct_27 + 90_000, BERLIN)
    windows = [(p.first, p.last) for p in simulator.received if p.command == CMD_HISTORY_5MIN]
    assert windows[0] == (oct_27 - 300, oct_27 + 90_000 - 300)
    archive = simulator.history_rows(oct_27, oct_27 + 90_000, daily=False)
    assert len(archive) == 25 * 12 + 1
    assert rows == [(time, wh) for time, wh in archive if wh is not None]
    assert rows[-1][0] == oct_27 + 90_000


async def test_daily_history_at_local_midnight(harness: Harness) -> None:
    """Daily rows of a Berlin inverter are at Berlin's midnights, equal to the 5-min counter."""
    simulator = harness.simulator(tz=BERLIN)
    client = harness.bluetooth(simulator)
    await client.connect()
    rows = await client.read_daily_history(BERLIN_TODAY - 2 * 86_400, MOMENT)
    assert [time for time, _ in rows] == [BERLIN_TODAY - day * 86_400 for day in (2, 1, 0)]
    assert all(value == simulator.energy_total_at(time) for time, value in rows)


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


async def test_lost_request_is_retried(harness: Harness) -> None:
    """One request dropped: the second attempt (new packet id) succeeds."""
    simulator = harness.simulator()
    client = harness.bluetooth(simulator, request_timeout=0.1)
    await client.connect()
    simulator.drop_requests(1)
    values = await client.read_spot_values()
    assert values.energy_total == 17_333_146
    attempts = [packet for packet in simulator.received if packet.command == 0x54000200]
    assert len(attempts) == 3  # ENERGY_PRODUCTION twice, OPERATION_TIME once
    assert attempts[1].packet_id == attempts[0].packet_id + 1


async def test_timeout_after_retries(harness: Harness, socket_enabled: None) -> None:
    """Every attempt dropped: SunnyBoyTimeout after 1 + retries attempts; still connected."""
    simulator = harness.simulator()
    client = await harness.speedwire(simulator, request_timeout=0.05, retries=2)
    await client.connect()
    before = len(simulator.received)
    simulator.drop_requests(3)
    with pytest.raises(SunnyBoyTimeout, match="after 3 attempts"):
        await client.read_device_info()
    assert len(simulator.received) - before == 3
    assert client.connected
    assert (await client.read_device_info()).type_label == "SB 3000TL-21"


async def test_silent_inverter_bluetooth(harness: Harness) -> None:
    """No hello at all, not even after 'ver': SunnyBoyTimeout."""
    simulator = harness.simulator()
    simulator.set_silent(True)
    client = harness.bluetooth(simulator, request_timeout=0.05, retries=1)
    with pytest.raises(SunnyBoyTimeout, match="no hello"):
        await client.connect()
    assert not client.connected


async def test_silent_inverter_speedwire(harness: Harness, socket_enabled: None) -> None:
    """A silent Speedwire inverter times out on identify."""
    simulator = harness.simulator()
    simulator.set_silent(True)
    client = await harness.speedwire(simulator, request_timeout=0.05, retries=0)
    with pytest.raises(SunnyBoyTimeout, match="0x00000200"):
        await client.connect()


async def test_ver_request_wakes_a_quiet_inverter(harness: Harness) -> None:
    """The hello was missed: the client asks with 'ver' and the inverter greets again."""
    simulator = harness.simulator()
    simulator.set_silent(True)
    client = harness.bluetooth(simulator, request_timeout=0.1, retries=5)

    async def wake_up() -> None:
        await asyncio.sleep(0.15)
        simulator.set_silent(False)

    waker = asyncio.create_task(wake_up())
    await client.connect()
    await waker
    assert client.connected


async def test_dropped_connection_and_reconnect(harness: Harness) -> None:
    """The link ends: SunnyBoyConnectionLost; connect() again opens a new link."""
    simulator = harness.simulator()
    client = harness.bluetooth(simulator)
    await client.connect()
    simulator.drop_connection()
    await _until(lambda: simulator.bluetooth_clients == 0)
    with pytest.raises(SunnyBoyConnectionLost):
        await client.read_spot_values()
    still_connected = client.connected
    assert not still_connected

    await client.connect()
    assert client.connected
    assert (await client.read_spot_values()).ac_power == 2622


async def test_link_ends_while_waiting_for_a_reply(harness: Harness) -> None:
    """The inverter goes away while the client waits: SunnyBoyConnectionLost, not a timeout."""
    simulator = harness.simulator()
    client = harness.bluetooth(simulator, request_timeout=5.0)
    await client.connect()
    simulator.set_silent(True)
    reading = asyncio.create_task(client.read_device_info())
    await _until(lambda: simulator.bluetooth_clients == 1 and len(simulator.received) == 3)
    await asyncio.sleep(0.05)
    simulator.drop_connection()
    with pytest.raises(SunnyBoyConnectionLost, match="closed by the peer"):
        await reading


async def test_expired_logon_is_a_lost_connection(harness: Harness, socket_enabled: None) -> None:
    """Error 0x0100 on a data request (log-on expired): lost; a reconnect logs on again."""
    simulator = harness.simulator()
    client = await harness.speedwire(simulator)
    await client.connect()
    simulator.expire_logons()
    with pytest.raises(SunnyBoyConnectionLost, match="logged us off"):
        await client.read_spot_values()
    assert not client.connected
    await client.connect()
    assert (await client.read_spot_values()).energy_today == 7184


async def test_chatter_is_ignored_bluetooth(harness: Harness) -> None:
    """Stale replies, damaged packets, network packets and another inverter's replies."""
    simulator = harness.simulator(net_id=2)
    simulator.set_chatter(True)
    client = harness.bluetooth(simulator)
    await client.connect()
    assert client.inverter == INVERTER
    assert await client.read_spot_values() == EXPECTED
    assert len(await client.read_history(YESTERDAY, YESTERDAY + 86_100)) == 286


async def test_chatter_is_ignored_speedwire(harness: Harness, socket_enabled: None) -> None:
    """Garbage datagrams and stale replies on Speedwire."""
    simulator = harness.simulator()
    simulator.set_chatter(True)
    client = await harness.speedwire(simulator)
    await client.connect()
    assert (await client.read_spot_values()).energy_total == 17_333_146


async def test_close_logs_off(harness: Harness) -> None:
    """close() sends the log-off broadcast; a second close() does nothing."""
    simulator = harness.simulator()
    client = harness.bluetooth(simulator)
    await client.connect()
    await client.close()
    assert not client.connected
    await _until(lambda: simulator.bluetooth_clients == 0)
    assert simulator.received_commands[-1] == CMD_LOGOFF
    count = len(simulator.received)
    await client.close()
    assert len(simulator.received) == count


# --------------------------------------------------------------------------------------------
# Handshake edge cases against a scripted peer
# --------------------------------------------------------------------------------------------


class ScriptedPeer:
    """The inverter end of a socketpair, driven step by step by the test."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.setblocking(False)
        self.parser = L1StreamParser()
        self.reassembler = L2Reassembler()
        self.pending: list[L1Packet] = []

    async def send(self, command: int, payload: bytes) -> None:
        frame = encode_l1(INVERTER_ADDRESS, CLIENT_ADDRESS, command, payload)
        await asyncio.get_running_loop().sock_sendall(self.sock, frame)

    async def expect(self, command: int) -> bytes:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(2):
            while True:
                while not self.pending:
                    self.pending += self.parser.feed(await loop.sock_recv(self.sock, 4096))
                packet = self.pending.pop(0)
                if packet.command == command:
                    return packet.payload

    async def expect_l2(self) -> L2Packet:
        while True:
            payload = await self.expect(L1_PPP_LAST)
            wire = self.reassembler.feed(L1Packet(CLIENT_ADDRESS, "", L1_PPP_LAST, payload))
            assert wire is not None
            return decode_l2(wire)

    async def reply(self, request: L2Packet, *, error: int = 0) -> None:
        body = _reply(request, error=error)
        frame = encode_bt_packet(body, source=INVERTER_ADDRESS, destination=CLIENT_ADDRESS)
        await asyncio.get_running_loop().sock_sendall(self.sock, frame)


def _reply(
    request: L2Packet, *, error: int = 0, extra: bytes = b"", args: tuple[int, ...] = ()
) -> bytes:
    return build_l2_body(
        request.command | 1,
        source=INVERTER,
        packet_id=request.packet_id,
        destination=Endpoint(request.source_susy_id, request.source_serial),
        error=error,
        args=args,
        extra=extra,
    )


def _scripted() -> tuple[SunnyBoyClient, ScriptedPeer]:
    client_end, inverter_end = socket.socketpair()
    peer = ScriptedPeer(inverter_end)
    transport = RfcommTransport(INVERTER_ADDRESS, socket_factory=lambda: client_end)
    return SunnyBoyClient(transport, "0000", request_timeout=0.1, retries=0), peer


def _hello(net_id: int) -> bytes:
    return bytes([0x00, 0x04, 0x70, 0x00, net_id, 0, 0, 0, 0, 1, 0, 0, 0])


async def test_no_topology_after_the_echo() -> None:
    """The inverter stops after the hello echo: SunnyBoyTimeout naming the topology."""
    client, peer = _scripted()
    connecting = asyncio.create_task(client.connect())
    await peer.send(0x0007, b"\x00")  # an unrelated level-1 error packet first
    await peer.send(L1_HELLO, _hello(1))
    assert await peer.expect(L1_HELLO) == _hello(1)
    with pytest.raises(SunnyBoyTimeout, match="topology"):
        await connecting
    peer.sock.close()


async def test_netid_2_network_never_forms() -> None:
    """NetID 2 with one inverter, no answer to the get-variable exchange: SunnyBoyTimeout."""
    client, peer = _scripted()
    connecting = asyncio.create_task(client.connect())
    await peer.send(L1_HELLO, _hello(2))
    await peer.expect(L1_HELLO)
    await peer.send(L1_TOPOLOGY, bytes.fromhex("563412258000") + b"\x01\x01")
    assert await peer.expect(0x0003) == b"\x0a\x00\xac"
    with pytest.raises(SunnyBoyTimeout, match="plant network"):
        await connecting
    peer.sock.close()


async def test_netid_2_ready_without_topology_and_nothing_supported() -> None:
    """0x06 straight after the exchange; every block refused; a malformed signal reply."""
    client, peer = _scripted()
    connecting = asyncio.create_task(client.connect())
    await peer.send(L1_HELLO, _hello(2))
    await peer.expect(L1_HELLO)
    await peer.send(L1_TOPOLOGY, bytes.fromhex("563412258000") + b"\x01\x01")
    for _ in NETWORK_STEPS:
        await peer.expect(0x0003)
        await peer.send(L1_VARIABLE_REPLY, bytes(6))
    await peer.send(L1_NETWORK_READY, b"")
    await peer.reply(await peer.expect_l2())  # identify
    assert (await peer.expect_l2()).command == CMD_LOGOFF
    await peer.reply(await peer.expect_l2())  # log-on
    await connecting
    assert client.topology == ((INVERTER_ADDRESS, TOPOLOGY_INVERTER),)

    reading = asyncio.create_task(client.read_spot_values())
    for query in SPOT_QUERIES:
        request = await peer.expect_l2()
        assert request.command == query.command
        await peer.reply(request, error=21)
    await peer.expect(0x0003)
    await peer.send(L1_VARIABLE_REPLY, b"\x05\x00")  # too short for a strength byte
    assert await reading == SpotValues()
    await client.close()
    peer.sock.close()


class ScriptedSpeedwire(asyncio.DatagramProtocol):
    """A UDP inverter whose answers the test writes per request."""

    def __init__(self, answer: Callable[[L2Packet], list[bytes]]) -> None:
        self.answer = answer
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        for body in self.answer(decode_speedwire(data)):
            self.transport.sendto(encode_speedwire(body), addr)


async def _scripted_speedwire(
    answer: Callable[[L2Packet], list[bytes]], **kwargs: Any
) -> tuple[SunnyBoyClient, asyncio.DatagramTransport]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: ScriptedSpeedwire(answer), local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    kwargs.setdefault("request_timeout", 0.5)
    return SunnyBoyClient(SpeedwireTransport("127.0.0.1", port), "0000", **kwargs), transport


async def test_logon_refused_for_another_reason(socket_enabled: None) -> None:
    """A log-on error other than 0x0100 is a SunnyBoyError, not WrongPassword."""

    def answer(request: L2Packet) -> list[bytes]:
        if request.command == CMD_LOGOFF:
            return []
        return [_reply(request, error=0x0017 if request.command == CMD_LOGON else 0)]

    client, server = await _scripted_speedwire(answer)
    try:
        with pytest.raises(SunnyBoyError, match="error 23") as raised:
            await client.connect()
        assert not isinstance(raised.value, WrongPassword)
    finally:
        await client.close()
        server.close()


async def test_malformed_and_unknown_records_are_skipped(socket_enabled: None) -> None:
    """Records that do not fit their layout, unknown LRIs and NaN are left out."""
    unknown = struct.pack("<II8I", 0x08999900, 0, *([0x01000001] + [0x00FFFFFE] * 7))
    nan_version = struct.pack("<II8I", 0x00823400, 0, *([0xFFFFFFFF] * 8))

    def answer(request: L2Packet) -> list[bytes]:
        if request.command == CMD_LOGOFF:
            return []
        if request.first == Query.TYPE_LABEL.first:
            return [_reply(request, args=(0, 0), extra=bytes(8))]
        if request.first == Query.SOFTWARE_VERSION.first:
            return [_reply(request, args=(0, 1), extra=unknown + nan_version)]
        return [_reply(request)]

    client, server = await _scripted_speedwire(answer)
    try:
        await client.connect()
        info = await client.read_device_info()
        assert info == DeviceInfo(
            susy_id=0x0083,
            serial=2130012345,
            name=None,
            device_class=None,
            type_label=None,
            software_version=None,  # all-0xFF is NaN: unknown, not "ff.ff.255.255"
            bt_address=None,
        )
    finally:
        await client.close()
        server.close()


async def test_zero_timeout_never_waits(socket_enabled: None) -> None:
    """request_timeout 0: each attempt gives up at once."""
    client, server = await _scripted_speedwire(lambda request: [], request_timeout=0, retries=1)
    try:
        with pytest.raises(SunnyBoyTimeout, match="after 2 attempts"):
            await client.connect()
    finally:
        server.close()


# --------------------------------------------------------------------------------------------
# Folding records
# --------------------------------------------------------------------------------------------


def test_first_value_wins_and_unknown_records_are_skipped() -> None:
    """Both current LRIs may appear; NaN does not hide a later value; unknown tags named."""
    records = [
        Record(0x40465000, 0x00465000, 0, 0x40, 1, None),
        Record(0x40465300, 0x00465300, 0, 0x40, 1, 4.5),
        Record(0x40465300, 0x00465300, 0, 0x40, 1, 9.9),
        Record(0x00999900, 0x00999900, 0, 0, 1, 7),
        Record(0x08214800, 0x00214800, 0, 8, 1, (9999,)),
        Record(0x08416401, 0x00416400, 1, 8, 1, ()),
        Record(0x00262200, 0x00262200, 0, 0, 0, 12),
        Record(0x40251E02, 0x00251E00, 2, 0x40, 1, 100),
        Record(0x40451F01, 0x00451F00, 1, 0x40, 1, 300.5),
    ]
    values = spot_values_from_records(records, 55.0)
    assert values.ac_current_l1 == 4.5
    assert values.device_status == "tag 9999"
    assert values.grid_relay is None
    assert values.energy_today == 12
    assert values.inverter_time is None  # timestamp 0: no clock
    assert values.dc_strings == (1, 2)
    assert values.dc_power[0] is None
    assert values.dc_power[1] == 100
    assert values.dc_voltage[0] == 300.5
    assert values.dc_voltage[1] is None
    assert values.signal_strength == 55.0


def test_negative_spot_values_reach_the_reading_whatever_the_data_type_byte() -> None:
    """A grid-tied inverter draws a little at night: -3 W and -0.012 A, 0xFFFFFFFF is -1 W."""

    def spot(code: int, raw: int) -> bytes:
        return struct.pack("<IIIIIII", code, 1_700_000_000, raw, raw, raw, raw, 1)

    records = (
        spot(0x00263F00, (-3) & 0xFFFFFFFF)
        + spot(0x00464000, 0xFFFFFFFF)
        + spot(0x00464100, 0x80000000)
        + spot(0x00464800, 0xFFFFFFFF)
        + spot(0x00465300, (-12) & 0xFFFFFFFF)
    )
    wire = encode_l2(
        0x51000201, source=Endpoint(0x7D, 1), destination=Endpoint(0x7D, 2),
        packet_id=1, args=(0, 4), extra=records,
    )  # fmt: skip
    values = spot_values_from_records(decode_records(decode_l2(wire)))
    assert values.ac_power == -3
    assert values.ac_power_l1 == -1
    assert values.ac_power_l2 is None  # signed "not available"
    assert values.ac_voltage_l1 is None  # unsigned "not available"
    assert values.ac_current_l1 == -0.012


@given(
    st.lists(
        st.builds(
            Record,
            code=st.integers(0, 0xFFFFFFFF),
            lri=st.sampled_from([0x00263F00, 0x00262200, 0x00251E00, 0x00214800, 0x123400]),
            cls=st.integers(0, 3),
            data_type=st.integers(0, 255),
            timestamp=st.integers(0, 0xFFFFFFFF),
            value=st.one_of(
                st.none(),
                st.integers(-(2**40), 2**40),
                st.floats(allow_nan=False),
                st.text(max_size=4),
                st.tuples(st.integers(0, 2**24)),
                st.tuples(),
            ),
        ),
        max_size=20,
    )
)
def test_folding_never_fails(records: list[Record]) -> None:
    """Whatever a reply decodes to, folding it gives a SpotValues."""
    values = spot_values_from_records(records)
    assert len(values.dc_power) == len(values.dc_strings)
