"""Tests for the SMA Bluetooth / Speedwire codec against captured frames and SBFspot's layouts."""

from __future__ import annotations

from collections.abc import Callable
import contextlib
import itertools
import random
import struct

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.sma_victron_bridge.protocols import ProtocolError
from custom_components.sma_victron_bridge.protocols.sma_bt import (
    ANY_ENDPOINT,
    APP_SUSY_ID,
    BROADCAST_ADDRESS,
    CMD_HISTORY_5MIN,
    CMD_HISTORY_DAILY,
    CMD_IDENTIFY,
    CMD_LOGOFF,
    CMD_LOGON,
    CTRL_ARCHIVE,
    CTRL_NORMAL,
    DEVICE_CLASS_TAGS,
    L1_GET_VARIABLE,
    L1_HELLO,
    L1_PPP_LAST,
    L1_PPP_MORE,
    L1_TOPOLOGY,
    L1_VARIABLE_REPLY,
    L1_VERSION,
    LRI_TABLE,
    NO_ADDRESS,
    STATUS_TAGS,
    Endpoint,
    L1Packet,
    L1StreamParser,
    L2Packet,
    L2Reassembler,
    Query,
    Record,
    RecordValue,
    build_history,
    build_identify,
    build_l2_body,
    build_logoff,
    build_logon,
    build_query,
    decode_hello,
    decode_history,
    decode_l1,
    decode_l2,
    decode_l2_body,
    decode_records,
    decode_signal_strength,
    decode_speedwire,
    decode_topology,
    encode_bt_packet,
    encode_get_variable,
    encode_hello_echo,
    encode_l1,
    encode_l2,
    encode_logon_password,
    encode_speedwire,
    encode_ver_request,
    escape,
    fcs16,
    five_minute_window,
    frame_l2,
    new_app_endpoint,
    unescape,
)

# Captures quoted in PROTOCOLS.md §5 (level 1, hex).
HELLO_ECHO = bytes.fromhex("7E1F0061FC6C4D831500B63725258000020000047000020000000001000000")
VER_REQUEST = bytes.fromhex("7E17006900000000000001000000000001027665720D0A")
LOGOFF = bytes.fromhex(
    "7E3A0044000000000000FFFFFFFFFFFF01007EFF03606508A0FFFFFFFFFFFF0003534D4153424600030000"
    "000002800E01FDFFFFFFFFFFF5DF7E"
)
CAPTURES = (HELLO_ECHO, VER_REQUEST, LOGOFF)
# The client identity inside the captured log-off: SUSyID 0x4D53, serial 0x46425341.
LOGOFF_SOURCE = Endpoint(susy_id=19795, serial=1178751809)

APP = Endpoint(APP_SUSY_ID, 912345678)
INVERTER = Endpoint(0x0083, 2130012345)


def only_protocol_error(function: Callable[[bytes], object], data: bytes) -> None:
    """Run a decoder; anything but ProtocolError escapes and fails the test."""
    with contextlib.suppress(ProtocolError):
        function(data)


# --------------------------------------------------------------------------------------------
# Captured frames
# --------------------------------------------------------------------------------------------


def test_hello_echo_capture_decodes() -> None:
    packet = decode_l1(HELLO_ECHO)
    assert packet.source == "00:15:83:4D:6C:FC"
    assert packet.destination == "00:80:25:25:37:B6"  # 00:80:25 is SMA's OUI
    assert packet.command == L1_HELLO
    assert packet.payload == bytes.fromhex("00047000020000000001000000")
    hello = decode_hello(packet)
    assert hello.net_id == 2
    assert hello.protocol == 4


def test_ver_capture_decodes() -> None:
    packet = decode_l1(VER_REQUEST)
    assert packet.source == "00:00:00:00:00:00"
    assert packet.destination == "00:00:00:00:00:01"
    assert packet.command == L1_VERSION == 0x0201
    assert packet.payload == b"ver\r\n"


def test_logoff_capture_decodes_both_levels() -> None:
    packet = decode_l1(LOGOFF)
    assert packet.source == NO_ADDRESS
    assert packet.destination == BROADCAST_ADDRESS
    assert packet.command == L1_PPP_LAST
    assert len(packet.payload) == 40
    l2 = decode_l2(packet.payload)
    assert l2.command == CMD_LOGOFF == 0xFFFD010E
    assert l2.packet_id == 2  # 0x8002 on the wire
    assert l2.source_susy_id == 0x4D53 == 19795
    assert l2.source_serial == 0x46425341 == 1178751809
    assert l2.destination_susy_id == 0xFFFF
    assert l2.destination_serial == 0xFFFFFFFF
    assert l2.ctrl == CTRL_NORMAL
    assert l2.ctrl2 == 0x0300
    assert l2.error == 0
    assert l2.fragments == 0
    assert l2.first == 0xFFFFFFFF  # the log-off argument
    assert l2.last == 0
    assert l2.records == b""
    # The FCS is the last two bytes before the closing 7E: F5 DF, little-endian.
    assert fcs16(packet.payload[1:-3]) == 0xDFF5


def test_encoders_reproduce_captures() -> None:
    assert encode_hello_echo("00:15:83:4D:6C:FC", "00:80:25:25:37:B6", 2) == HELLO_ECHO
    assert encode_ver_request() == VER_REQUEST
    body = build_logoff(LOGOFF_SOURCE, 2)
    assert encode_bt_packet(body, destination=BROADCAST_ADDRESS) == LOGOFF
    assert frame_l2(body) == decode_l1(LOGOFF).payload
    assert (
        encode_l2(CMD_LOGOFF, source=LOGOFF_SOURCE, packet_id=2, ctrl2=0x0300, args=(0xFFFFFFFF,))
        == decode_l1(LOGOFF).payload
    )


# --------------------------------------------------------------------------------------------
# Level 1
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (HELLO_ECHO[:17], "too short"),
        (b"\x7f" + HELLO_ECHO[1:], "starts with"),
        (HELLO_ECHO[:3] + b"\x00" + HELLO_ECHO[4:], "check byte"),
        (HELLO_ECHO + b"\x00", "length field"),
    ],
)
def test_decode_l1_rejects(frame: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_l1(frame)


@pytest.mark.parametrize(
    "address",
    [
        "00:11:22:33:44",
        "00:11:22:33:44:5G",
        "0:11:22:33:44:55:",
        "00:11:22:33:44: 5",
        "00:11:22:33: 4:4 ",
    ],
)
def test_encode_l1_rejects_bad_addresses(address: str) -> None:
    with pytest.raises(ProtocolError):
        encode_l1(address, NO_ADDRESS, 1, b"")


def test_encode_l1_rejects_bad_command_and_size() -> None:
    with pytest.raises(ProtocolError):
        encode_l1(NO_ADDRESS, NO_ADDRESS, 0x10000, b"")
    with pytest.raises(ProtocolError):
        encode_l1(NO_ADDRESS, NO_ADDRESS, 1, bytes(0xFFFF))


def test_get_variable_and_signal_strength() -> None:
    frame = encode_get_variable("00:15:83:4D:6C:FC", "00:80:25:25:37:B6", 5)
    packet = decode_l1(frame)
    assert packet.command == L1_GET_VARIABLE
    assert packet.payload == b"\x05\x00"
    with pytest.raises(ProtocolError):
        encode_get_variable(NO_ADDRESS, NO_ADDRESS, 0x10000)
    # The reply carries the strength at level-1 byte 22 (payload byte 4) as a fraction of 255.
    reply = decode_l1(
        encode_l1(
            "00:80:25:25:37:B6", "00:15:83:4D:6C:FC", L1_VARIABLE_REPLY, b"\x05\x00\x00\x00\xcc\x00"
        )
    )
    assert decode_signal_strength(reply) == pytest.approx(80.0)
    with pytest.raises(ProtocolError):
        decode_signal_strength(decode_l1(VER_REQUEST))


def test_hello_rejects_other_packets_and_bad_net_id() -> None:
    with pytest.raises(ProtocolError):
        decode_hello(decode_l1(VER_REQUEST))
    with pytest.raises(ProtocolError):
        encode_hello_echo(NO_ADDRESS, NO_ADDRESS, 256)


def test_topology_lists_devices() -> None:
    inverter = bytes.fromhex("B63725258000") + b"\x01\x01"
    local = bytes.fromhex("FC6C4D831500") + b"\x02\x01"
    packet = decode_l1(
        encode_l1("00:80:25:25:37:B6", NO_ADDRESS, L1_TOPOLOGY, inverter + local + b"\x00")
    )
    assert decode_topology(packet) == [("00:80:25:25:37:B6", 0x0101), ("00:15:83:4D:6C:FC", 0x0102)]
    with pytest.raises(ProtocolError):
        decode_topology(decode_l1(VER_REQUEST))


def test_stream_parser_resynchronises() -> None:
    stream = b"\x00\x13" + HELLO_ECHO + b"\x7e\x01\x02\x03" + VER_REQUEST + LOGOFF + b"\x7e\x05"
    parser = L1StreamParser()
    packets: list[L1Packet] = []
    rng = random.Random(7)
    position = 0
    while position < len(stream):
        step = rng.randint(1, 7)
        packets += parser.feed(stream[position : position + step])
        position += step
    assert [packet.command for packet in packets] == [L1_HELLO, L1_VERSION, L1_PPP_LAST]
    assert packets[2] == decode_l1(LOGOFF)
    assert parser.errors >= 2
    # An oversize length field is treated as noise.
    small = L1StreamParser(max_frame=20)
    assert small.feed(HELLO_ECHO) == []
    assert small.errors >= 1


# --------------------------------------------------------------------------------------------
# Escaping, FCS, level 2
# --------------------------------------------------------------------------------------------


def test_fcs_check_value() -> None:
    # CRC-16/X-25 check value of "123456789".
    assert fcs16(b"123456789") == 0x906E


def test_escape_all_special_bytes() -> None:
    special = bytes([0x7D, 0x7E, 0x11, 0x12, 0x13, 0x20, 0x5D])
    escaped = escape(special)
    assert escaped == bytes.fromhex("7D5D 7D5E 7D31 7D32 7D33 20 5D")
    assert unescape(escaped) == special
    assert unescape(b"plain") == b"plain"
    with pytest.raises(ProtocolError):
        unescape(b"\x01\x7d")


@given(st.binary(max_size=300))
def test_escape_round_trip(data: bytes) -> None:
    escaped = escape(data)
    assert 0x7E not in escaped
    assert unescape(escaped) == data


def test_l2_with_special_bytes_round_trips() -> None:
    source = Endpoint(0x7E7D, 0x1311127E)
    wire = encode_l2(
        0x7E11127D,
        source=source,
        packet_id=0x1113,
        destination=Endpoint(0x1213, 0x7D7E1112),
        args=(0x13131313, 0x7E7E7E7E),
        extra=b"\x7d\x7e\x11\x12",
    )
    assert wire.count(0x7E) == 2
    packet = decode_l2(wire)
    assert packet.command == 0x7E11127D
    assert packet.packet_id == 0x1113
    assert packet.source_susy_id == 0x7E7D
    assert packet.source_serial == 0x1311127E
    assert packet.destination_susy_id == 0x1213
    assert packet.destination_serial == 0x7D7E1112
    assert packet.first == 0x13131313
    assert packet.last == 0x7E7E7E7E
    assert packet.records == b"\x7d\x7e\x11\x12"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda wire: wire[1:], "delimited"),
        (lambda wire: wire[:-1], "delimited"),
        (lambda wire: wire[:10] + b"\x7e" + wire[10:], "inside"),
        (lambda wire: b"\x7e" + wire[2:], "signature"),
        (lambda wire: wire[:-3] + bytes([wire[-3] ^ 1]) + wire[-2:], "FCS"),
        (lambda wire: wire[:5] + wire[-3:], "too short"),
    ],
)
def test_decode_l2_rejects(mutate: Callable[[bytes], bytes], message: str) -> None:
    wire = decode_l1(LOGOFF).payload
    with pytest.raises(ProtocolError, match=message):
        decode_l2(mutate(wire))


def test_decode_l2_rejects_wrong_word_count() -> None:
    body = bytearray(build_logoff(APP, 3))
    body[0] = 9
    with pytest.raises(ProtocolError, match="words"):
        decode_l2(frame_l2(bytes(body)))
    with pytest.raises(ProtocolError, match="too short"):
        decode_l2_body(bytes(24))


def test_build_l2_body_rejects_bad_fields() -> None:
    with pytest.raises(ProtocolError):
        build_l2_body(1, source=APP, packet_id=0x8000)
    with pytest.raises(ProtocolError):
        build_l2_body(1, source=APP, packet_id=1, extra=b"\x00")
    with pytest.raises(ProtocolError):
        build_l2_body(1, source=APP, packet_id=1, args=(1 << 32,))
    with pytest.raises(ProtocolError):
        build_l2_body(1, source=Endpoint(0x10000, 1), packet_id=1)
    with pytest.raises(ProtocolError):
        build_l2_body(1, source=APP, packet_id=1, extra=bytes(4 * 250))


def test_reply_fields_round_trip() -> None:
    body = build_l2_body(
        0x54000201,
        source=INVERTER,
        destination=APP,
        packet_id=77,
        error=21,
        fragments=3,
        args=(0, 1),
        id_flag=False,
    )
    packet = decode_l2_body(body)
    assert (packet.error, packet.fragments, packet.packet_id) == (21, 3, 77)
    assert (packet.source_susy_id, packet.source_serial) == (0x0083, 2130012345)
    assert (packet.destination_susy_id, packet.destination_serial) == (125, 912345678)
    assert struct.unpack_from("<H", body, 22)[0] == 77  # no 0x8000 flag


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------


def test_password_encoding_user_and_installer() -> None:
    assert encode_logon_password("0000") == bytes([0xB8] * 4 + [0x88] * 8)
    assert encode_logon_password("1111", installer=True) == bytes([0xEC] * 4 + [0xBB] * 8)
    assert encode_logon_password("") == bytes([0x88] * 12)
    assert len(encode_logon_password("abcdefghijkl")) == 12
    # 'w' (0x77) + 0x88 = 0xFF and 'x' (0x78) + 0x88 = 0x100 -> 0x00 (mod 256);
    # a '% 0xff' implementation would give 0x00 and 0x01.
    assert encode_logon_password("wx")[:2] == b"\xff\x00"
    # 'z' (0x7A) + 0xBB = 0x135 -> 0x35
    assert encode_logon_password("z", installer=True)[0] == 0x35


@pytest.mark.parametrize("password", ["thirteen-char", "pässword"])
def test_password_rejects(password: str) -> None:
    with pytest.raises(ProtocolError):
        encode_logon_password(password)


def test_logon_request_layout() -> None:
    body = build_logon(APP, 5, "0000", 1_700_000_000)
    assert len(body) == 0x0E * 4
    assert body[0] == 0x0E
    packet = decode_l2_body(body)
    assert packet.command == CMD_LOGON
    assert packet.ctrl == CTRL_NORMAL
    assert packet.ctrl2 == 0x0100
    assert packet.first == 0x07  # user group
    assert packet.last == 0x384  # timeout
    assert packet.records == struct.pack("<II", 1_700_000_000, 0) + encode_logon_password("0000")
    installer = decode_l2_body(build_logon(APP, 6, "1111", 5, installer=True, destination=INVERTER))
    assert installer.first == 0x0A
    assert installer.destination_serial == 2130012345
    assert installer.records[8:] == encode_logon_password("1111", installer=True)


def test_identify_request_layout() -> None:
    body = build_identify(APP, 1)
    assert body[0] == 9
    packet = decode_l2_body(body)
    assert (packet.command, packet.first, packet.last) == (CMD_IDENTIFY, 0, 0)
    assert (packet.destination_susy_id, packet.destination_serial) == (0xFFFF, 0xFFFFFFFF)
    assert (packet.source_susy_id, packet.source_serial) == (125, 912345678)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (Query.ENERGY_PRODUCTION, (0x54000200, 0x00260100, 0x002622FF)),
        (Query.OPERATION_TIME, (0x54000200, 0x00462E00, 0x00462FFF)),
        (Query.DC_POWER, (0x53800200, 0x00251E00, 0x00251EFF)),
        (Query.DC_VOLTAGE_CURRENT, (0x53800200, 0x00451F00, 0x004521FF)),
        (Query.AC_POWER, (0x51000200, 0x00464000, 0x004642FF)),
        (Query.AC_VOLTAGE_CURRENT, (0x51000200, 0x00464800, 0x004655FF)),
        (Query.GRID_FREQUENCY, (0x51000200, 0x00465700, 0x004657FF)),
        (Query.AC_TOTAL_POWER, (0x51000200, 0x00263F00, 0x00263FFF)),
        (Query.DEVICE_STATUS, (0x51800200, 0x00214800, 0x002148FF)),
        (Query.GRID_RELAY, (0x51800200, 0x00416400, 0x004164FF)),
        (Query.TYPE_LABEL, (0x58000200, 0x00821E00, 0x008220FF)),
        (Query.SOFTWARE_VERSION, (0x58000200, 0x00823400, 0x008234FF)),
        (Query.TEMPERATURE, (0x52000200, 0x00237700, 0x002377FF)),
    ],
)
def test_query_requests(query: Query, expected: tuple[int, int, int]) -> None:
    assert (query.command, query.first, query.last) == expected
    packet = decode_l2(frame_l2(build_query(query, APP, 9, INVERTER)))
    assert (packet.command, packet.first, packet.last) == expected
    assert packet.ctrl == CTRL_NORMAL
    assert packet.destination_serial == INVERTER.serial


def test_history_requests() -> None:
    first, last = five_minute_window(1_700_006_400)
    assert (first, last) == (1_700_006_100, 1_700_092_500)
    five = decode_l2_body(build_history(APP, 10, first, last))
    assert (five.command, five.ctrl, five.first, five.last) == (
        CMD_HISTORY_5MIN,
        CTRL_ARCHIVE,
        first,
        last,
    )
    daily = decode_l2_body(build_history(APP, 11, 1, 2, daily=True, destination=INVERTER))
    assert (daily.command, daily.ctrl, daily.destination_susy_id) == (CMD_HISTORY_DAILY, 0xE0, 0x83)


def test_new_app_endpoint() -> None:
    endpoint = new_app_endpoint(random.Random(1))
    assert endpoint.susy_id == 125
    assert 900_000_000 <= endpoint.serial <= 999_999_999
    assert 900_000_000 <= new_app_endpoint().serial <= 999_999_999


# --------------------------------------------------------------------------------------------
# Reassembly
# --------------------------------------------------------------------------------------------


def _pieces(wire: bytes, source: str, cuts: tuple[int, ...]) -> list[L1Packet]:
    bounds = (0, *cuts, len(wire))
    chunks = [wire[a:b] for a, b in itertools.pairwise(bounds)]
    return [
        L1Packet(source, NO_ADDRESS, L1_PPP_LAST if i == len(chunks) - 1 else L1_PPP_MORE, chunk)
        for i, chunk in enumerate(chunks)
    ]


def test_reassembler_joins_pieces_per_sender() -> None:
    records = _spot_records(0x51000200, [(0x40464001, 1000, 1234)] * 6)
    wire_a = encode_l2(0x51000201, source=INVERTER, packet_id=4, args=(0, 5), extra=records)
    wire_b = encode_l2(0x51000201, source=APP, packet_id=5, args=(0, 5), extra=records)
    a = _pieces(wire_a, "00:80:25:00:00:01", (40, 100))
    b = _pieces(wire_b, "00:80:25:00:00:02", (60,))
    joiner = L2Reassembler()
    results = [joiner.feed(piece) for piece in (a[0], b[0], a[1], b[1], a[2])]
    assert results[:3] == [None, None, None]
    assert results[3] == wire_b
    assert results[4] == wire_a
    assert decode_l2(wire_a).source_serial == INVERTER.serial


def test_reassembler_rejects() -> None:
    joiner = L2Reassembler(max_size=50)
    with pytest.raises(ProtocolError, match="carries no level 2"):
        joiner.feed(L1Packet(NO_ADDRESS, NO_ADDRESS, L1_HELLO, b"\x7e"))
    with pytest.raises(ProtocolError, match="start"):
        joiner.feed(L1Packet(NO_ADDRESS, NO_ADDRESS, L1_PPP_LAST, b"\xff"))
    joiner.feed(L1Packet(NO_ADDRESS, NO_ADDRESS, L1_PPP_MORE, b"\x7e" + bytes(30)))
    with pytest.raises(ProtocolError, match="longer"):
        joiner.feed(L1Packet(NO_ADDRESS, NO_ADDRESS, L1_PPP_MORE, bytes(30)))
    # The oversize packet was dropped; a fresh one is accepted.
    assert joiner.feed(L1Packet(NO_ADDRESS, NO_ADDRESS, L1_PPP_LAST, b"\x7e\x7e")) == b"\x7e\x7e"
    joiner.feed(L1Packet(NO_ADDRESS, NO_ADDRESS, L1_PPP_MORE, b"\x7e"))
    joiner.reset()
    with pytest.raises(ProtocolError, match="start"):
        joiner.feed(L1Packet(NO_ADDRESS, NO_ADDRESS, L1_PPP_LAST, b"\x00\x7e"))


# --------------------------------------------------------------------------------------------
# Speedwire
# --------------------------------------------------------------------------------------------


def test_speedwire_layout_and_round_trip() -> None:
    body = build_logoff(LOGOFF_SOURCE, 2)
    datagram = encode_speedwire(body)
    assert datagram[:18] == bytes.fromhex("534D4100 0004 02A0 00000001 0022 0010 6065")
    assert datagram[18:-4] == body
    assert datagram[-4:] == b"\x00\x00\x00\x00"
    assert decode_speedwire(datagram) == decode_l2(decode_l1(LOGOFF).payload)


@pytest.mark.parametrize(
    ("datagram", "message"),
    [
        (b"SMB\x00" + bytes(20), "SMA"),
        (bytes.fromhex("534D4100 0004 02A0 00000001 00000000"), "no SMA-data"),
        (bytes.fromhex("534D4100 0004 02A0 00000001"), "no SMA-data"),
        (bytes.fromhex("534D4100 0004 02A0 000000"), "past"),
        (bytes.fromhex("534D4100 0004 02A0 00000001 0001 0010 60"), "protocol id"),
        (bytes.fromhex("534D4100 0004 02A0 00000001 0006 0010 6069 00000000"), "0x6069"),
    ],
)
def test_speedwire_rejects(datagram: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_speedwire(datagram)


def test_speedwire_rejects_oversize_body() -> None:
    with pytest.raises(ProtocolError):
        encode_speedwire(bytes(0xFFFE))


# --------------------------------------------------------------------------------------------
# Records (packed here the way SBFspot reads them)
# --------------------------------------------------------------------------------------------


def _counter_record(code: int, timestamp: int, value: int) -> bytes:
    return struct.pack("<IIQ", code, timestamp, value)


def _spot_record(code: int, timestamp: int, value: int) -> bytes:
    # +8/+12 hold further copies of the value (min/max on some firmware), +16 the value.
    return struct.pack("<IIIIIII", code, timestamp, value, value, value, value, 1)


def _spot_records(command: int, rows: list[tuple[int, int, int]]) -> bytes:
    del command
    return b"".join(_spot_record(*row) for row in rows)


def _attribute_record(code: int, timestamp: int, items: list[tuple[int, bool]]) -> bytes:
    words = [tag | (0x01000000 if selected else 0) for tag, selected in items]
    words.append(0x00FFFFFE)
    words += [0] * (8 - len(words))
    return struct.pack("<II8I", code, timestamp, *words)


def _text_record(code: int, timestamp: int, text: bytes) -> bytes:
    return struct.pack("<II", code, timestamp) + text.ljust(32, b"\x00")


def _version_record(code: int, timestamp: int, packed: bytes) -> bytes:
    return struct.pack("<II", code, timestamp) + bytes(16) + packed + bytes(4)


def _history_record(timestamp: int, value: int) -> bytes:
    return struct.pack("<IQ", timestamp, value)


def _reply(command: int, records: bytes, count: int) -> L2Packet:
    """A reply as the inverter sends it: response bit set, first/last = record indices."""
    wire = encode_l2(
        command | 1,
        source=INVERTER,
        destination=APP,
        packet_id=12,
        args=(0, count - 1),
        extra=records,
    )
    return decode_l2(wire)


TS = 1_700_000_000


def number(value: RecordValue) -> float:
    """A record value that must be numeric."""
    assert isinstance(value, int | float)
    return value


def test_energy_production_records() -> None:
    records = _counter_record(0x00260101, TS, 12_345_678) + _counter_record(0x00262201, TS, 4321)
    decoded = decode_records(_reply(0x54000200, records, 2))
    assert decoded == [
        Record(0x00260101, 0x00260100, 1, 0, TS, 12_345_678),
        Record(0x00262201, 0x00262200, 1, 0, TS, 4321),
    ]
    assert (decoded[0].name, decoded[0].unit) == ("energy_total", "Wh")
    assert (decoded[1].name, decoded[1].unit) == ("energy_today", "Wh")


def test_operation_time_records() -> None:
    records = _counter_record(0x00462E01, TS, 36_000_000) + _counter_record(
        0x00462F01, TS, 35_000_000
    )
    decoded = decode_records(_reply(0x54000200, records, 2))
    assert [(r.name, r.value, r.unit) for r in decoded] == [
        ("operation_time", 36_000_000, "s"),
        ("feed_in_time", 35_000_000, "s"),
    ]


def test_dc_records() -> None:
    records = (
        _spot_record(0x40251E01, TS, 1500)
        + _spot_record(0x40251E02, TS, 1400)
        + _spot_record(0x40451F01, TS, 35_012)
        + _spot_record(0x40452101, TS, 4280)
    )
    decoded = decode_records(_reply(0x53800200, records, 4))
    assert [(r.name, r.cls) for r in decoded] == [
        ("dc_power", 1),
        ("dc_power", 2),
        ("dc_voltage", 1),
        ("dc_current", 1),
    ]
    assert [number(r.value) for r in decoded] == pytest.approx([1500, 1400, 350.12, 4.28])
    assert decoded[0].value == 1500
    assert isinstance(decoded[0].value, int)
    assert decoded[0].data_type == 0x40
    assert decoded[2].unit == "V"
    assert decoded[3].unit == "A"


def test_ac_records() -> None:
    power = b"".join(
        _spot_record(code, TS, watts)
        for code, watts in ((0x40464001, 1010), (0x40464101, 1020), (0x40464201, 1030))
    )
    assert [r.value for r in decode_records(_reply(0x51000200, power, 3))] == [1010, 1020, 1030]
    voltage_current = (
        _spot_record(0x00464801, TS, 23_015)
        + _spot_record(0x00465001, TS, 4_350)
        + _spot_record(0x00465301, TS, 4_351)
    )
    decoded = decode_records(_reply(0x51000200, voltage_current, 3))
    assert [r.name for r in decoded] == ["ac_voltage_l1", "ac_current_l1", "ac_current_l1"]
    assert [number(r.value) for r in decoded] == pytest.approx([230.15, 4.35, 4.351])
    frequency = decode_records(_reply(0x51000200, _spot_record(0x00465701, TS, 5002), 1))
    assert (frequency[0].name, frequency[0].unit) == ("grid_frequency", "Hz")
    assert number(frequency[0].value) == pytest.approx(50.02)
    total = decode_records(_reply(0x51000200, _spot_record(0x40263F01, TS, 3060), 1))
    assert (total[0].name, total[0].value, total[0].unit) == ("ac_power", 3060, "W")


def test_temperature_record_is_signed() -> None:
    raw = (-512) & 0xFFFFFFFF
    decoded = decode_records(_reply(0x52000200, _spot_record(0x40237701, TS, raw), 1))
    assert (decoded[0].name, decoded[0].unit) == ("temperature", "°C")
    assert number(decoded[0].value) == pytest.approx(-5.12)
    # The temperature is signed by definition: a record whose data-type byte is 0x00 carries
    # the same -5.12 °C, not 42 949 621.84 °C.
    plain = decode_records(_reply(0x52000200, _spot_record(0x00237701, TS, raw), 1))
    assert number(plain[0].value) == pytest.approx(-5.12)


SIGNED_SPOTS = [
    (0x51000200, 0x00263F00),  # AC power
    (0x51000200, 0x00464000),  # AC power L1
    (0x51000200, 0x00465300),  # AC current L1
    (0x53800200, 0x00251E00),  # DC power
    (0x53800200, 0x00452100),  # DC current
    (0x52000200, 0x00237700),  # temperature
]
UNSIGNED_SPOTS = [
    (0x51000200, 0x00464800),  # AC voltage L1
    (0x51000200, 0x00465700),  # grid frequency
]


@pytest.mark.parametrize(("command", "lri"), SIGNED_SPOTS)
@pytest.mark.parametrize("data_type", [0x00, 0x40])
def test_signed_spot_values_follow_their_definition(command: int, lri: int, data_type: int) -> None:
    """Negative power, current and temperature, whatever the data-type byte says ([SBF] NaN)."""
    code = data_type << 24 | lri | 1
    scale = LRI_TABLE[lri].scale
    assert LRI_TABLE[lri].signed
    values = [
        r.value
        for r in decode_records(
            _reply(
                command,
                _spot_record(code, TS, (-250) & 0xFFFFFFFF)
                + _spot_record(code, TS, 0xFFFFFFFF)  # -1, a real reading
                + _spot_record(code, TS, 0x80000000),  # signed "not available"
                3,
            )
        )
    ]
    assert values == [-250 / scale if scale > 1 else -250, -1 / scale if scale > 1 else -1, None]


@pytest.mark.parametrize(("command", "lri"), UNSIGNED_SPOTS)
@pytest.mark.parametrize("data_type", [0x00, 0x40])
def test_unsigned_spot_values_follow_their_definition(
    command: int, lri: int, data_type: int
) -> None:
    code = data_type << 24 | lri | 1
    assert not LRI_TABLE[lri].signed
    values = [
        r.value
        for r in decode_records(
            _reply(
                command,
                _spot_record(code, TS, 0xFFFFFFFF)  # unsigned "not available"
                + _spot_record(code, TS, 0x80000000)  # the signed marker, mixed in by firmware
                + _spot_record(code, TS, 0x8000_0001),  # high bit set: still positive
                3,
            )
        )
    ]
    assert values == [None, None, 0x8000_0001 / LRI_TABLE[lri].scale]


def test_unknown_lri_takes_its_sign_from_the_data_type_byte() -> None:
    raw = (-7) & 0xFFFFFFFF
    signed = decode_records(_reply(0x51000200, _spot_record(0x40999901, TS, raw), 1))
    unsigned = decode_records(_reply(0x51000200, _spot_record(0x00999901, TS, raw), 1))
    assert (signed[0].value, unsigned[0].value) == (-7, raw)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(SIGNED_SPOTS + UNSIGNED_SPOTS),
    st.integers(0, 0xFF),
    st.integers(0, 0xFFFFFFFF),
)
def test_spot_value_sign_is_the_definitions(
    spot: tuple[int, int], data_type: int, raw: int
) -> None:
    command, lri = spot
    info = LRI_TABLE[lri]
    (record,) = decode_records(_reply(command, _spot_record(data_type << 24 | lri, TS, raw), 1))
    if record.value is None:
        assert raw == 0x80000000 or (not info.signed and raw == 0xFFFFFFFF)
        return
    expected = raw - (1 << 32) if info.signed and raw >= 1 << 31 else raw
    assert number(record.value) == pytest.approx(expected / info.scale)


def test_status_and_grid_relay_records() -> None:
    items = [(35, False), (303, False), (307, True), (455, False)]
    status = _attribute_record(0x08214801, TS, items)
    decoded = decode_records(_reply(0x51800200, status, 1))
    assert decoded[0].value == (307,)
    assert decoded[0].name == "device_status"
    assert STATUS_TAGS[307] == "ok"
    relay = _attribute_record(0x08416401, TS, [(311, False), (51, True), (16777213, False)])
    decoded = decode_records(_reply(0x51800200, relay, 1))
    assert decoded[0].value == (51,)
    assert STATUS_TAGS[51] == "closed"
    assert decoded[0].unit is None


def test_attribute_list_without_end_marker() -> None:
    words = [0x01000000 | tag for tag in range(301, 309)]  # eight selected, no 0xFFFFFE
    record = struct.pack("<II8I", 0x08214801, TS, *words)
    decoded = decode_records(_reply(0x51800200, record, 1))
    assert decoded[0].value == (301, 302, 303, 304, 305, 306, 307, 308)


def test_type_label_records() -> None:
    records = (
        _text_record(0x10821E01, TS, b"SN: 2130012345")
        + _attribute_record(0x08821F01, TS, [(8001, True)])
        + _attribute_record(0x08822001, TS, [(9015, False), (9074, True)])
    )
    decoded = decode_records(_reply(0x58000200, records, 3))
    assert [(r.name, r.value) for r in decoded] == [
        ("device_name", "SN: 2130012345"),
        ("device_class", (8001,)),
        ("device_type", (9074,)),
    ]
    assert DEVICE_CLASS_TAGS[8001] == "solar_inverter"


def test_software_version_record() -> None:
    # Packed u32 at +24: release type, build, minor (BCD), major (BCD) -> "02.30.05.R".
    record = _version_record(0x08823401, TS, b"\x04\x05\x30\x02")
    decoded = decode_records(_reply(0x58000200, record, 1))
    assert (decoded[0].name, decoded[0].value) == ("software_version", "02.30.05.R")
    record = _version_record(0x08823401, TS, b"\x09\x11\x12\x01")
    odd = decode_records(_reply(0x58000200, record, 1))
    assert odd[0].value == "01.12.17.9"


def test_software_version_nan_is_unknown() -> None:
    # An inverter that does not know its version fills the packed word with FF FF FF FF (u32
    # NaN), some firmware with the signed NaN 00 00 00 80: unknown, not "ff.ff.255.255".
    for packed in (b"\xff\xff\xff\xff", b"\x00\x00\x00\x80"):
        record = _version_record(0x08823401, TS, packed)
        decoded = decode_records(_reply(0x58000200, record, 1))
        assert (decoded[0].name, decoded[0].value) == ("software_version", None)
    # The whole record as such an inverter sends it: every word after the header all ones.
    record = struct.pack("<II", 0x00823400, TS) + b"\xff" * 32
    assert decode_records(_reply(0x58000200, record, 1))[0].value is None


def test_nan_markers_become_none() -> None:
    spot = (
        _spot_record(0x40464001, TS, 0x80000000)
        + _spot_record(0x00464801, TS, 0xFFFFFFFF)
        + _spot_record(0x40464101, TS, 0)
        + _spot_record(0x40464201, TS, 0xFFFFFFFF)  # signed power: -1 W, not unknown
    )
    assert [r.value for r in decode_records(_reply(0x51000200, spot, 4))] == [None, None, 0, -1]
    counters = _counter_record(0x00260101, TS, 0xFFFFFFFFFFFFFFFF) + _counter_record(
        0x00262201, TS, 0x8000000000000000
    )
    assert [r.value for r in decode_records(_reply(0x54000200, counters, 2))] == [None, None]


def test_unknown_lri_keeps_raw_value() -> None:
    decoded = decode_records(_reply(0x51000200, _spot_record(0x00999901, TS, 77), 1))
    assert (decoded[0].value, decoded[0].name, decoded[0].unit) == (77, None, None)
    assert 0x00999900 not in LRI_TABLE


def test_record_size_follows_reply_indices() -> None:
    # Firmware that sends 20-byte spot records: first/last say two records in 40 bytes.
    short = struct.pack("<IIIII", 0x40464001, TS, 0, 0, 111) + struct.pack(
        "<IIIII", 0x40464101, TS, 0, 0, 222
    )
    assert [r.value for r in decode_records(_reply(0x51000200, short, 2))] == [111, 222]
    # Indices that do not divide the records fall back to the command's size (28).
    packet = _reply(0x51000200, _spot_record(0x40464001, TS, 5) * 2, 3)
    assert [r.value for r in decode_records(packet)] == [5, 5]


def test_records_reject_bad_shapes() -> None:
    with pytest.raises(ProtocolError, match="multiple"):
        decode_records(_reply(0x51000200, bytes(32), 3))
    with pytest.raises(ProtocolError, match="no record layout"):
        decode_records(_reply(CMD_IDENTIFY, bytes(8), 1))
    assert decode_records(_reply(0x51000200, b"", 1)) == []
    short_version = struct.pack("<II", 0x08823401, TS) + bytes(8)
    with pytest.raises(ProtocolError, match="software version"):
        decode_records(_reply(0x58000200, short_version, 1))


def test_history_records_and_filtering() -> None:
    day = 1_699_920_000  # a multiple of 300
    rows = [
        (day, 1000),
        (day + 300, 1010),
        (day + 450, 1012),  # off the 5-minute grid
        (day + 600, 0xFFFFFFFFFFFFFFFF),  # NaN
        (day + 900, 1005),  # counter goes backwards
        (day + 900, 1030),
        (day + 900, 1040),  # repeated time
        (day + 600, 1050),  # time goes backwards
        (day + 1200, 1060),
    ]
    records = b"".join(_history_record(*row) for row in rows)
    packet = decode_l2(
        encode_l2(
            CMD_HISTORY_5MIN | 1,
            source=INVERTER,
            packet_id=3,
            ctrl=CTRL_ARCHIVE,
            args=(day - 300, day + 86100),
            extra=records,
        )
    )
    decoded = decode_records(packet)
    assert len(decoded) == 9
    assert decoded[0] == Record(0, 0, 0, 0, day, 1000)
    assert decoded[3].value is None
    assert decode_history(decoded) == [
        (day, 1000),
        (day + 300, 1010),
        (day + 900, 1030),
        (day + 1200, 1060),
    ]
    # Daily rows keep off-grid timestamps.
    assert decode_history(decoded, interval=None)[:3] == [
        (day, 1000),
        (day + 300, 1010),
        (day + 450, 1012),
    ]
    daily = _reply(CMD_HISTORY_DAILY, _history_record(day, 5) + _history_record(day + 86400, 9), 7)
    assert [(r.timestamp, r.value) for r in decode_records(daily)] == [(day, 5), (day + 86400, 9)]


def test_history_ignores_non_integer_values() -> None:
    records = [
        Record(0, 0, 0, 0, 300, 1.5),
        Record(0, 0, 0, 0, 600, True),
        Record(0, 0, 0, 0, 900, 7),
    ]
    assert decode_history(records) == [(900, 7)]


# --------------------------------------------------------------------------------------------
# Round trips and robustness
# --------------------------------------------------------------------------------------------

addresses = st.binary(min_size=6, max_size=6).map(lambda raw: raw.hex(":").upper())


@given(addresses, addresses, st.integers(0, 0xFFFF), st.binary(max_size=200))
def test_l1_round_trip(source: str, destination: str, command: int, payload: bytes) -> None:
    assert decode_l1(encode_l1(source, destination, command, payload)) == L1Packet(
        source, destination, command, payload
    )


u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


@given(
    u32,
    u16,
    u32,
    u16,
    u32,
    st.integers(0, 0x7FFF),
    st.integers(0, 0xFF),
    u16,
    u16,
    u16,
    st.lists(u32, min_size=2, max_size=6),
    st.binary(max_size=40).map(lambda raw: raw[: len(raw) // 4 * 4]),
)
def test_l2_round_trip(
    command: int,
    src_susy: int,
    src_serial: int,
    dst_susy: int,
    dst_serial: int,
    packet_id: int,
    ctrl: int,
    ctrl2: int,
    error: int,
    fragments: int,
    args: list[int],
    extra: bytes,
) -> None:
    wire = encode_l2(
        command,
        source=Endpoint(src_susy, src_serial),
        destination=Endpoint(dst_susy, dst_serial),
        packet_id=packet_id,
        ctrl=ctrl,
        ctrl2=ctrl2,
        args=args,
        extra=extra,
        error=error,
        fragments=fragments,
    )
    packet = decode_l2(wire)
    tail = struct.pack(f"<{len(args) - 2}I", *args[2:]) + extra
    assert packet == L2Packet(
        command=command,
        error=error,
        fragments=fragments,
        packet_id=packet_id,
        source_susy_id=src_susy,
        source_serial=src_serial,
        first=args[0],
        last=args[1],
        records=tail,
        ctrl=ctrl,
        ctrl2=ctrl2,
        destination_susy_id=dst_susy,
        destination_serial=dst_serial,
    )
    assert (
        decode_speedwire(
            encode_speedwire(
                build_l2_body(
                    command,
                    source=Endpoint(src_susy, src_serial),
                    destination=Endpoint(dst_susy, dst_serial),
                    packet_id=packet_id,
                    ctrl=ctrl,
                    ctrl2=ctrl2,
                    args=args,
                    extra=extra,
                    error=error,
                    fragments=fragments,
                )
            )
        )
        == packet
    )


def _decode_all_levels(data: bytes) -> None:
    packet = decode_l1(data)
    l2 = decode_l2(packet.payload)
    decode_records(l2)


@settings(max_examples=300)
@given(st.binary(max_size=120))
def test_random_bytes_raise_only_protocol_error(data: bytes) -> None:
    for decoder in (
        decode_l1,
        decode_l2,
        decode_l2_body,
        decode_speedwire,
        unescape,
        _decode_all_levels,
        lambda raw: decode_speedwire(b"SMA\x00" + raw),
        lambda raw: decode_l2(b"\x7e" + raw.replace(b"\x7e", b"") + b"\x7e"),
        lambda raw: L1StreamParser().feed(raw),
    ):
        only_protocol_error(decoder, data)


@settings(max_examples=300)
@given(st.sampled_from(CAPTURES), st.data())
def test_bit_flips_of_captures_raise_only_protocol_error(frame: bytes, data: st.DataObject) -> None:
    flips = data.draw(st.lists(st.integers(0, len(frame) * 8 - 1), min_size=1, max_size=4))
    mutated = bytearray(frame)
    for bit in flips:
        mutated[bit // 8] ^= 1 << (bit % 8)
    only_protocol_error(_decode_all_levels, bytes(mutated))
    only_protocol_error(decode_l2, bytes(mutated[18:]))
    only_protocol_error(
        lambda raw: [decode_hello(p) for p in L1StreamParser().feed(raw)], bytes(mutated)
    )


@settings(max_examples=300)
@given(
    st.sampled_from(
        [
            0x54000200,
            0x51000200,
            0x53800200,
            0x52000200,
            0x51800200,
            0x58000200,
            CMD_HISTORY_5MIN,
            CMD_HISTORY_DAILY,
            0x12345600,
        ]
    ),
    u32,
    u32,
    st.binary(max_size=200),
)
def test_random_records_raise_only_protocol_error(
    command: int, first: int, last: int, records: bytes
) -> None:
    packet = L2Packet(command | 1, 0, 0, 1, 0x83, 1, first, last, records)
    try:
        decoded = decode_records(packet)
    except ProtocolError:
        return
    decode_history(decoded)


@given(st.binary(max_size=80), st.lists(st.integers(1, 79), max_size=4, unique=True))
def test_reassembler_random_pieces_raise_only_protocol_error(data: bytes, cuts: list[int]) -> None:
    joiner = L2Reassembler(max_size=64)
    for piece in _pieces(data, NO_ADDRESS, tuple(sorted(c for c in cuts if c < len(data)))):
        with contextlib.suppress(ProtocolError):
            joiner.feed(piece)


def test_any_endpoint_is_the_wildcard() -> None:
    assert Endpoint(0xFFFF, 0xFFFFFFFF) == ANY_ENDPOINT
