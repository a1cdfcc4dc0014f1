"""The Sunny Boy simulator at the wire level, driven with the sma_bt codec only.

Bluetooth runs over ``socket.socketpair()``, Speedwire over UDP on 127.0.0.1. Expected bytes
come from PROTOCOLS.md §5 (hello payload ``00 04 70 00 <NetID> 00 00 00 00 01 00 00 00``,
topology entries of 6-byte address + type 0x0101, signal strength in byte 4 of the 0x04 reply,
error 0x0100 for a wrong password, 12-byte archive rows) and from the simulator's model with
``seed=7`` at 2024-06-21 11:17:13 UTC.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC
import socket
import time
from zoneinfo import ZoneInfo

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.sma_victron_bridge.protocols import ProtocolError
from custom_components.sma_victron_bridge.protocols.sma_bt import (
    ANY_ENDPOINT,
    CMD_HISTORY_5MIN,
    ERROR_LRI_NOT_AVAILABLE,
    ERROR_WRONG_PASSWORD,
    L1_CONNECTED,
    L1_GET_VARIABLE,
    L1_HELLO,
    L1_NETWORK_READY,
    L1_PPP_LAST,
    L1_PPP_MORE,
    L1_TOPOLOGY,
    L1_VARIABLE_REPLY,
    NO_ADDRESS,
    Endpoint,
    L1Packet,
    L1StreamParser,
    L2Packet,
    L2Reassembler,
    Query,
    build_history,
    build_identify,
    build_l2_body,
    build_logoff,
    build_logon,
    build_query,
    decode_hello,
    decode_l2,
    decode_records,
    decode_signal_strength,
    decode_speedwire,
    decode_topology,
    encode_bt_packet,
    encode_get_variable,
    encode_hello_echo,
    encode_l1,
    encode_speedwire,
    encode_ver_request,
    five_minute_window,
)
from custom_components.sma_victron_bridge.simulators.sunny_boy import (
    CLIENT_ADDRESS,
    HISTORY_DAYS,
    HISTORY_ROWS_PER_PACKET,
    MAX_HISTORY_ROWS,
    MAX_RECEIVED,
    PvModel,
    SunnyBoySimulator,
    local_midnight,
    local_midnights,
    utc_offset,
)

MOMENT = 1_718_968_633  # 2024-06-21 11:17:13 UTC
TODAY = MOMENT - MOMENT % 86_400
YESTERDAY = TODAY - 86_400
ADDRESS = "00:80:25:12:34:56"
APP = Endpoint(125, 912_345_678)
ME = "00:1A:7D:DA:71:13"
HELLO_NETID_1 = bytes.fromhex("00047000010000000001000000")


def _simulator(**kwargs: object) -> SunnyBoySimulator:
    return SunnyBoySimulator(seed=7, clock=lambda: float(MOMENT), **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# PV model
# --------------------------------------------------------------------------------------------


def test_state_at_noon_and_at_night() -> None:
    """Concrete values of the model; at night no feed-in, relay open, DC zero."""
    simulator = _simulator()
    state = simulator.state()
    assert state.time == MOMENT
    assert (state.ac_power, state.ac_voltage_l1, state.ac_current_l1) == (2622, 229.46, 11.427)
    assert (state.grid_frequency, state.temperature) == (50.01, 43.23)
    assert (state.energy_today, state.energy_total) == (7184, 17_333_146)
    assert (state.device_status, state.grid_relay) == ("ok", "closed")
    assert state.ac_power_l2 is None
    night = simulator.state(TODAY - 3600)
    assert night.ac_power == 0
    assert night.dc_power == (0, 0)
    assert night.dc_voltage == (0.0, 0.0)
    assert night.grid_relay == "open"
    assert night.temperature == 24.0
    assert night.energy_today == 22_956  # yesterday's whole yield, before midnight


def test_counters_are_monotonic_and_consistent_across_midnight() -> None:
    """Totals never fall; today's counter restarts at midnight; days join exactly."""
    model = PvModel(seed=3, peak_power=3000.0, origin=MOMENT)
    previous = -1
    for moment in range(YESTERDAY - 86_400, TODAY + 86_400, 97):
        total = model.energy_total_mwh(moment)
        assert total >= previous
        previous = total
    assert model.energy_today_mwh(TODAY) == 0
    assert model.energy_today_mwh(TODAY - 1) > 0
    # Whole-day yields are plausible for 3 kW, also far before and after the origin.
    for day in (TODAY // 86_400 - 200, TODAY // 86_400 + 3):
        start = day * 86_400
        day_yield = model.energy_total_mwh(start + 86_400) - model.energy_total_mwh(start)
        assert 0 < day_yield < 3000 * 15 * 1000
    assert model.operating_time(TODAY + 86_400) - model.operating_time(TODAY) == 54_000
    assert model.feed_in_time(TODAY + 86_400) - model.feed_in_time(TODAY) == 52_200


def test_day_yield_matches_todays_counter_at_midnight() -> None:
    """energy_today just before midnight is the day's total difference (to 1 mWh/slot)."""
    model = PvModel(seed=11, peak_power=5000.0, origin=MOMENT)
    start = YESTERDAY - 5 * 86_400
    difference = model.energy_total_mwh(start + 86_400) - model.energy_total_mwh(start)
    assert abs(model.energy_today_mwh(start + 86_399.999) - difference) <= 1


BERLIN = ZoneInfo("Europe/Berlin")
BERLIN_MIDNIGHT = 1_718_920_800  # 2024-06-21 00:00 CEST = 2024-06-20 22:00 UTC


def test_local_time_zone_moves_sun_today_and_daily_rows() -> None:
    """An inverter in Berlin: its sun peaks two hours earlier by UTC, its day starts at
    Berlin's midnight, and its daily archive rows sit on Berlin's midnights."""
    utc = _simulator()
    berlin = _simulator(tz=BERLIN)
    assert berlin.tz is BERLIN
    # Feed-in runs 05:45-20:15 local: at 19:00 UTC (21:00 in Berlin) only the UTC one feeds in,
    # at 04:30 UTC (06:30 in Berlin) only the Berlin one.
    assert (
        utc.state(TODAY + 19 * 3600).ac_power > 0,
        berlin.state(TODAY + 19 * 3600).ac_power,
    ) == (
        True,
        0,
    )
    assert (utc.state(TODAY + 16_200).ac_power, berlin.state(TODAY + 16_200).ac_power > 0) == (
        0,
        True,
    )
    assert berlin.state(BERLIN_MIDNIGHT - 1).energy_today > 20_000
    assert berlin.state(BERLIN_MIDNIGHT).energy_today == 0
    assert berlin.state(BERLIN_MIDNIGHT + 1800).energy_today == 0  # 22:30 UTC: still night
    rows = berlin.history_rows(BERLIN_MIDNIGHT - 2 * 86_400, MOMENT, daily=True)
    assert [time for time, _ in rows] == [BERLIN_MIDNIGHT - day * 86_400 for day in (2, 1, 0)]
    assert all(value == berlin.energy_total_at(time) for time, value in rows)
    # The 5-minute rows stay on the UTC grid and agree with the daily rows.
    five = dict(berlin.history_rows(BERLIN_MIDNIGHT - 300, BERLIN_MIDNIGHT, daily=False))
    assert five[BERLIN_MIDNIGHT] == rows[-1][1]


def test_local_midnights_around_daylight_saving() -> None:
    oct_27 = 1_729_980_000  # 2024-10-27 00:00 CEST, a 25-hour day
    assert local_midnights(oct_27 - 1, oct_27 + 90_000, BERLIN) == [oct_27, oct_27 + 90_000]
    assert local_midnight(oct_27 + 89_999, BERLIN) == oct_27
    assert local_midnight(MOMENT, UTC) == TODAY
    assert utc_offset(oct_27, BERLIN) == 7200
    assert utc_offset(oct_27 + 90_000, BERLIN) == 3600


def test_many_days_keep_the_cache_bounded() -> None:
    """Walking far back and forth works (and the per-day cache is trimmed)."""
    model = PvModel(seed=5, peak_power=3000.0, origin=MOMENT)
    far_back = model.energy_total_mwh(TODAY - 100 * 86_400)
    ahead = model.energy_total_mwh(TODAY + 100 * 86_400)
    assert 0 < far_back < model.base_total_mwh < ahead


def test_nan_slots_are_two_distinct_rows() -> None:
    """Every day has exactly two NaN archive rows."""
    model = PvModel(seed=7, peak_power=3000.0, origin=MOMENT)
    for day in range(TODAY // 86_400 - 50, TODAY // 86_400):
        first, second = model.nan_slots(day)
        assert first != second
        assert 0 <= first < 288
        assert 0 <= second < 288
    assert model.nan_slots(YESTERDAY // 86_400) == (54, 222)


def test_history_rows_limits() -> None:
    """No rows before the archive starts or after now; at most MAX_HISTORY_ROWS."""
    simulator = _simulator()
    first_day = (TODAY // 86_400 - HISTORY_DAYS) * 86_400
    rows = simulator.history_rows(first_day - 86_400, first_day + 600, daily=False)
    assert [time for time, _ in rows] == [first_day, first_day + 300, first_day + 600]
    assert simulator.history_rows(MOMENT + 1, MOMENT + 86_400, daily=False) == []
    assert len(simulator.history_rows(0, MOMENT, daily=False)) == MAX_HISTORY_ROWS
    logons: set[tuple[int, int]] = set()
    for packet_id in range(MAX_RECEIVED + 1):
        simulator.handle_l2(decode_speedwire(encode_speedwire(build_identify(APP, 1))), logons)
        assert packet_id < MAX_RECEIVED or len(simulator.received) == MAX_RECEIVED // 2 + 1
    daily = simulator.history_rows(TODAY - 2 * 86_400 + 1, MOMENT, daily=True)
    assert daily == [
        (YESTERDAY, simulator.energy_total_at(YESTERDAY)),
        (TODAY, simulator.energy_total_at(TODAY)),
    ]


def test_constructor_checks() -> None:
    """Bad arguments fail at once."""
    with pytest.raises(ValueError, match="time_scale"):
        SunnyBoySimulator(time_scale=0)
    with pytest.raises(ValueError, match="net_id"):
        SunnyBoySimulator(net_id=0)
    with pytest.raises(ValueError, match="Bluetooth address"):
        SunnyBoySimulator(bt_address="00:80:25:12:34:ZZ")
    with pytest.raises(ValueError, match="Bluetooth address"):
        SunnyBoySimulator(bt_address="00:80:25:12:34")
    with pytest.raises(ProtocolError):
        SunnyBoySimulator(password="much too long password")
    simulator = SunnyBoySimulator()
    with pytest.raises(ProtocolError):
        simulator.set_password("ünicode")


def test_default_clock_runs_time_scale_times_faster() -> None:
    """Without a clock the simulated time starts at the wall clock and runs faster."""
    before = time.time()
    simulator = SunnyBoySimulator(time_scale=3600.0)
    first = simulator.now()
    time.sleep(0.01)
    assert simulator.now() - first >= 30.0
    assert first >= before
    assert isinstance(simulator.seed, int)


# --------------------------------------------------------------------------------------------
# Bluetooth
# --------------------------------------------------------------------------------------------


class App:
    """The client end of a socketpair, speaking through the codec."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setblocking(False)
        self.parser = L1StreamParser()
        self.reassembler = L2Reassembler()
        self.pending: list[L1Packet] = []
        self.frames: list[L1Packet] = []

    async def send(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def next(self, timeout: float = 1.0) -> L1Packet:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while not self.pending:
                data = await loop.sock_recv(self.sock, 4096)
                if not data:
                    raise EOFError
                self.pending += self.parser.feed(data)
        packet = self.pending.pop(0)
        self.frames.append(packet)
        return packet

    async def expect(self, command: int, timeout: float = 1.0) -> L1Packet:
        while True:
            packet = await self.next(timeout)
            if packet.command == command:
                return packet

    async def silence(self, timeout: float = 0.1) -> None:
        with pytest.raises(TimeoutError):
            await self.next(timeout)

    async def l2(self, timeout: float = 1.0) -> L2Packet:
        while True:
            packet = await self.next(timeout)
            if packet.command in (L1_PPP_MORE, L1_PPP_LAST):
                wire = self.reassembler.feed(packet)
                if wire is not None:
                    return decode_l2(wire)

    async def request(self, body: bytes) -> L2Packet:
        await self.send(encode_bt_packet(body, source=ME, destination=ADDRESS))
        return await self.l2()

    async def join(self, net_id: int = 1) -> None:
        hello = await self.expect(L1_HELLO)
        assert decode_hello(hello).net_id == net_id
        await self.send(encode_hello_echo(ME, ADDRESS, net_id))
        await self.expect(L1_TOPOLOGY)


@pytest.fixture
async def served() -> AsyncIterator[tuple[SunnyBoySimulator, App, list[asyncio.Task[None]]]]:
    """A simulator serving one end of a socketpair; the test holds the other as App."""
    simulator = _simulator()
    tasks: list[asyncio.Task[None]] = []
    ours, theirs = socket.socketpair()
    tasks.append(asyncio.create_task(simulator.serve_bluetooth(theirs)))
    app = App(ours)
    yield simulator, app, tasks
    ours.close()
    await simulator.close()
    await asyncio.gather(*tasks)


async def _serve(simulator: SunnyBoySimulator, tasks: list[asyncio.Task[None]]) -> App:
    ours, theirs = socket.socketpair()
    tasks.append(asyncio.create_task(simulator.serve_bluetooth(theirs)))
    return App(ours)


async def test_hello_topology_and_connected(
    served: tuple[SunnyBoySimulator, App, list[asyncio.Task[None]]],
) -> None:
    """The greeting, then 0x0A with both addresses and the topology after the echo."""
    simulator, app, _ = served
    hello = await app.expect(L1_HELLO)
    assert hello.source == ADDRESS
    assert hello.payload == HELLO_NETID_1
    await app.send(encode_hello_echo(ME, ADDRESS, 1))
    connected = await app.expect(L1_CONNECTED)
    assert connected.destination == ME
    assert connected.payload == bytes.fromhex("563412258000") + b"\x01" + bytes.fromhex(
        "1371DA7D1A00"
    )
    topology = await app.expect(L1_TOPOLOGY)
    assert decode_topology(topology) == [(ADDRESS, 0x0101), (ME, 0)]
    assert simulator.bluetooth_clients == 1


async def test_echo_without_address_and_wrong_netid(
    served: tuple[SunnyBoySimulator, App, list[asyncio.Task[None]]],
) -> None:
    """An echo for another NetID is ignored; 00:00:… gets a made-up adapter address."""
    _, app, _ = served
    await app.expect(L1_HELLO)
    await app.send(encode_l1(ME, ADDRESS, L1_GET_VARIABLE, b"\x05\x00"))  # not joined yet
    await app.send(encode_hello_echo(ME, ADDRESS, 2))
    await app.send(encode_l1(ME, ADDRESS, L1_HELLO, b"\x00"))  # too short: ignored
    await app.silence()
    await app.send(encode_hello_echo(NO_ADDRESS, ADDRESS, 1))
    connected = await app.expect(L1_CONNECTED)
    assert connected.destination == CLIENT_ADDRESS


async def test_version_request_repeats_the_hello(
    served: tuple[SunnyBoySimulator, App, list[asyncio.Task[None]]],
) -> None:
    """'ver' is answered with another hello."""
    _, app, _ = served
    await app.expect(L1_HELLO)
    await app.send(encode_ver_request())
    assert (await app.expect(L1_HELLO)).payload == HELLO_NETID_1


async def test_signal_strength(
    served: tuple[SunnyBoySimulator, App, list[asyncio.Task[None]]],
) -> None:
    """Get-variable 0x05: byte 4 of the reply is the strength (0xB4 = 70.6 %)."""
    simulator, app, _ = served
    await app.join()
    simulator.signal_raw = 0xCC
    await app.send(encode_get_variable(ME, ADDRESS, 0x0005))
    reply = await app.expect(L1_VARIABLE_REPLY)
    assert decode_signal_strength(reply) == 80.0


async def test_replies_are_split_into_level1_pieces(
    served: tuple[SunnyBoySimulator, App, list[asyncio.Task[None]]],
) -> None:
    """Identify, log-on, a spot query: level-2 replies arrive as 0x08 … 0x01 pieces."""
    simulator, app, _ = served
    await app.join()
    identify = await app.request(build_identify(APP, 1))
    assert identify.command == 0x00000201
    assert (identify.source_susy_id, identify.source_serial) == (0x0083, 2130012345)
    assert identify.records[14:20] == bytes.fromhex("8300") + (2130012345).to_bytes(4, "little")
    logon = await app.request(build_logon(APP, 2, "0000", 1_700_000_000))
    assert logon.error == 0
    assert logon.records[:4] == (1_700_000_000).to_bytes(4, "little")
    app.frames.clear()
    reply = await app.request(build_query(Query.AC_VOLTAGE_CURRENT, APP, 3))
    assert [frame.command for frame in app.frames] == [L1_PPP_MORE, L1_PPP_MORE, L1_PPP_LAST]
    records = decode_records(reply)
    assert [record.value for record in records] == [229.46, None, None, 11.427, None, None]
    assert simulator.received_commands == [0x00000200, 0xFFFD040C, 0x51000200]


async def test_split_request_and_expired_logon(
    served: tuple[SunnyBoySimulator, App, list[asyncio.Task[None]]],
) -> None:
    """A request in two level-1 pieces is reassembled; an expired log-on gives 0x0100."""
    simulator, app, _ = served
    await app.join()
    await app.request(build_logon(APP, 1, "0000", 0))
    frame = encode_bt_packet(build_query(Query.TEMPERATURE, APP, 2))
    wire = frame[18:]
    await app.send(encode_l1(ME, ADDRESS, L1_PPP_MORE, wire[:20]))
    await app.send(encode_l1(ME, ADDRESS, L1_PPP_LAST, wire[20:]))
    reply = await app.l2()
    assert [record.value for record in decode_records(reply)] == [43.23]
    simulator.expire_logons()
    expired = await app.request(build_query(Query.TEMPERATURE, APP, 3))
    assert expired.error == ERROR_WRONG_PASSWORD


async def test_history_comes_in_fragments(
    served: tuple[SunnyBoySimulator, App, list[asyncio.Task[None]]],
) -> None:
    """A day of 5-minute rows: 289 rows in 4 level-2 packets, fragments left 3, 2, 1, 0."""
    simulator, app, _ = served
    await app.join()
    await app.request(build_logon(APP, 1, "0000", 0))
    first, last = five_minute_window(YESTERDAY)
    await app.send(encode_bt_packet(build_history(APP, 2, first, last)))
    packets = [await app.l2() for _ in range(4)]
    assert [packet.fragments for packet in packets] == [3, 2, 1, 0]
    assert {packet.packet_id for packet in packets} == {2}
    rows = [record for packet in packets for record in decode_records(packet)]
    assert len(rows) == 289
    assert packets[0].records[:12] == (YESTERDAY - 300).to_bytes(4, "little") + (
        simulator.energy_total_at(YESTERDAY - 300)
    ).to_bytes(8, "little")
    assert sum(record.value is None for record in rows) == 2
    assert len(packets[0].records) == 12 * HISTORY_ROWS_PER_PACKET


async def test_netid_2_needs_the_network_exchange() -> None:
    """NetID 2: level 2 is ignored until the three get-variable steps built the network."""
    simulator = _simulator(net_id=2)
    tasks: list[asyncio.Task[None]] = []
    app = await _serve(simulator, tasks)
    try:
        hello = await app.expect(L1_HELLO)
        assert hello.payload == bytes.fromhex("00047000020000000001000000")
        await app.send(encode_hello_echo(ME, ADDRESS, 2))
        topology = await app.expect(L1_TOPOLOGY)
        assert decode_topology(topology) == [(ADDRESS, 0x0101), (ME, 0)]
        await app.send(encode_bt_packet(build_identify(APP, 1)))
        await app.silence()
        for step in (b"\x0a\x00\xac", b"\x02\x00", b"\x01\x00\x01"):
            await app.send(encode_l1(ME, ADDRESS, L1_GET_VARIABLE, step))
            assert (await app.expect(L1_VARIABLE_REPLY)).payload[:2] == step[:2]
        full = await app.expect(L1_TOPOLOGY)
        assert decode_topology(full) == [
            (ADDRESS, 0x0101),
            ("00:80:25:12:34:57", 0x0101),
            (ME, 0),
        ]
        await app.expect(L1_NETWORK_READY)
        assert (await app.request(build_identify(APP, 2))).packet_id == 2
    finally:
        app.sock.close()
        await simulator.close()
        await asyncio.gather(*tasks)


async def test_damaged_level2_is_ignored(
    served: tuple[SunnyBoySimulator, App, list[asyncio.Task[None]]],
) -> None:
    """A piece not starting with 7E, or a bad FCS, gets no answer; the next request does."""
    _, app, _ = served
    await app.join()
    await app.send(encode_l1(ME, ADDRESS, L1_PPP_LAST, b"\x00\x01"))
    damaged = bytearray(encode_bt_packet(build_identify(APP, 1)))
    damaged[-3] ^= 0x01
    await app.send(bytes(damaged))
    await app.silence()
    assert (await app.request(build_identify(APP, 2))).packet_id == 2


async def test_silent_and_dropped_requests(
    served: tuple[SunnyBoySimulator, App, list[asyncio.Task[None]]],
) -> None:
    """Silent: nothing at all; drop_requests(1): the first request is lost."""
    simulator, app, _ = served
    await app.join()
    simulator.set_silent(True)
    await app.send(encode_bt_packet(build_identify(APP, 1)))
    await app.send(encode_ver_request())
    await app.silence()
    simulator.set_silent(False)
    simulator.drop_requests(1)
    await app.send(encode_bt_packet(build_identify(APP, 2)))
    await app.silence()
    assert (await app.request(build_identify(APP, 3))).packet_id == 3
    assert simulator.received_commands == [0x00000200, 0x00000200]


async def test_silent_from_the_start_sends_no_hello() -> None:
    """A silent simulator does not greet a new link; drop_connection ends it."""
    simulator = _simulator()
    simulator.set_silent(True)
    tasks: list[asyncio.Task[None]] = []
    app = await _serve(simulator, tasks)
    await app.silence()
    simulator.drop_connection()
    with pytest.raises(EOFError):
        await app.next()
    await asyncio.gather(*tasks)
    assert simulator.bluetooth_clients == 0
    app.sock.close()


async def test_peer_gone_while_answering() -> None:
    """The client closes right after a request: the simulator's link just ends."""
    simulator = _simulator()
    tasks: list[asyncio.Task[None]] = []
    app = await _serve(simulator, tasks)
    await app.join()
    await app.send(encode_bt_packet(build_identify(APP, 1)))
    app.sock.close()
    await asyncio.gather(*tasks)
    assert simulator.bluetooth_clients == 0


# --------------------------------------------------------------------------------------------
# Speedwire and level 2
# --------------------------------------------------------------------------------------------


class _Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)


@pytest.fixture
async def speedwire(
    socket_enabled: None,
) -> AsyncIterator[tuple[SunnyBoySimulator, asyncio.DatagramTransport, _Collector]]:
    """A Speedwire simulator and a UDP client endpoint connected to it."""
    simulator = _simulator()
    port = await simulator.serve_speedwire()
    loop = asyncio.get_running_loop()
    transport, collector = await loop.create_datagram_endpoint(
        _Collector, remote_addr=("127.0.0.1", port)
    )
    yield simulator, transport, collector
    transport.close()
    await simulator.close()


async def _ask(
    transport: asyncio.DatagramTransport, collector: _Collector, body: bytes
) -> L2Packet:
    transport.sendto(encode_speedwire(body))
    async with asyncio.timeout(1):
        return decode_speedwire(await collector.queue.get())


async def test_speedwire_log_on_and_off(
    speedwire: tuple[SunnyBoySimulator, asyncio.DatagramTransport, _Collector],
) -> None:
    """Query before log-on: 0x0100; wrong password: 0x0100; log-on, query, log-off."""
    simulator, transport, collector = speedwire
    assert (await _ask(transport, collector, build_query(Query.TEMPERATURE, APP, 1))).error == (
        ERROR_WRONG_PASSWORD
    )
    refused = await _ask(transport, collector, build_logon(APP, 2, "9999", 5))
    assert refused.error == ERROR_WRONG_PASSWORD
    assert (await _ask(transport, collector, build_logon(APP, 3, "0000", 5))).error == 0
    temperature = await _ask(transport, collector, build_query(Query.TEMPERATURE, APP, 4))
    assert [record.value for record in decode_records(temperature)] == [43.23]
    transport.sendto(encode_speedwire(build_logoff(APP, 5)))
    again = await _ask(transport, collector, build_query(Query.TEMPERATURE, APP, 6))
    assert again.error == ERROR_WRONG_PASSWORD
    assert simulator.received_commands[-2] == 0xFFFD010E


async def test_speedwire_errors_and_addressing(
    speedwire: tuple[SunnyBoySimulator, asyncio.DatagramTransport, _Collector],
) -> None:
    """Unknown commands and empty LRI ranges: error 21; other serials: no answer."""
    simulator, transport, collector = speedwire
    transport.sendto(b"SMA\x00garbage")
    await _ask(transport, collector, build_logon(APP, 1, "0000", 5))
    unknown = await _ask(transport, collector, build_l2_body(0x64020200, source=APP, packet_id=2))
    assert unknown.error == ERROR_LRI_NOT_AVAILABLE
    empty = build_l2_body(0x51000200, source=APP, packet_id=3, args=(0x00990000, 0x009900FF))
    assert (await _ask(transport, collector, empty)).error == ERROR_LRI_NOT_AVAILABLE
    other = Endpoint(0x0083, 2130012346)
    transport.sendto(encode_speedwire(build_query(Query.TEMPERATURE, APP, 4, other)))
    mine = Endpoint(0x0083, 2130012345)
    reply = await _ask(transport, collector, build_query(Query.TEMPERATURE, APP, 5, mine))
    assert reply.packet_id == 5
    future = build_history(APP, 6, MOMENT + 600, MOMENT + 86_400, daily=True)
    nothing = await _ask(transport, collector, future)
    assert (nothing.records, nothing.fragments) == (b"", 0)
    installer_group = build_l2_body(
        0xFFFD040C, source=APP, packet_id=7, ctrl2=0x0100, args=(0x0B, 900, 0, 0)
    )
    assert (await _ask(transport, collector, installer_group)).error == ERROR_WRONG_PASSWORD
    assert simulator.received[-1].first == 0x0B


async def test_speedwire_chatter_and_unsupported(
    speedwire: tuple[SunnyBoySimulator, asyncio.DatagramTransport, _Collector],
) -> None:
    """Chatter: a damaged datagram and a stale reply come before the real one."""
    simulator, transport, collector = speedwire
    simulator.set_chatter(True)
    simulator.set_unsupported(0x52000200)
    transport.sendto(encode_speedwire(build_logon(APP, 9, "0000", 5)))
    async with asyncio.timeout(1):
        damaged = await collector.queue.get()
        stale = decode_speedwire(await collector.queue.get())
        real = decode_speedwire(await collector.queue.get())
    with pytest.raises(ProtocolError):
        decode_speedwire(damaged)
    assert (stale.packet_id, real.packet_id) == (8, 9)
    simulator.set_chatter(False)
    reply = await _ask(transport, collector, build_query(Query.TEMPERATURE, APP, 10))
    assert (reply.packet_id, reply.error) == (10, ERROR_LRI_NOT_AVAILABLE)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_datagrams_never_raise(data: bytes) -> None:
    """Whatever arrives, the simulator answers with a list of datagrams."""
    simulator = _simulator()
    assert isinstance(simulator.handle_speedwire(b"SMA\x00" + data, ("127.0.0.1", 1)), list)
    assert isinstance(simulator.handle_speedwire(data, ("127.0.0.1", 1)), list)


@settings(max_examples=300, deadline=None)
@given(
    command=st.sampled_from(
        [0x00000200, 0xFFFD040C, 0xFFFD010E, CMD_HISTORY_5MIN, 0x70200200, 0x51000200, 0x1234]
    ),
    args=st.lists(st.integers(0, 0xFFFFFFFF), max_size=8),
)
def test_random_requests_never_raise(command: int, args: list[int]) -> None:
    """Any well-framed request with any arguments is answered or ignored, never a crash."""
    simulator = _simulator()
    logons = {(APP.susy_id, APP.serial)}
    body = build_l2_body(command, source=APP, packet_id=1, destination=ANY_ENDPOINT, args=args)
    for reply in simulator.handle_l2(decode_speedwire(encode_speedwire(body)), logons):
        assert decode_speedwire(encode_speedwire(reply)).packet_id == 1
