"""Victron GATT: the VREG codec, the stream parser, the register table and both sessions.

Request bytes come from the public SmartSolar traces quoted in PROTOCOLS.md §4 (the
"SmartSolar Connector" seed): ``0600821893421027`` (keep-alive), ``0500811890`` (a one-byte
VREG), ``05008219ec6619ec65`` (two VREGs in one get), ``06038219203142dc03`` (a set) and a
request split across two writes. Register encodings and expected values are the VE.Direct HEX
protocol's (0.01 V, 0.1 A, 0.01 K, ...). Sessions run against the in-process peers of
``simulators.victron_ble``, which parse the requests and stream real notifications back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.sma_victron_bridge.protocols import ProtocolError
from custom_components.sma_victron_bridge.protocols.victron_gatt import (
    DEFAULT_VREGS,
    END_OF_STREAM,
    KEEP_ALIVE,
    SMARTSHUNT_CHARACTERISTICS,
    SMARTSHUNT_KEEP_ALIVE_UUID,
    SMARTSOLAR_BULK_UUID,
    SMARTSOLAR_CONTROL_UUID,
    SMARTSOLAR_SINGLE_UUID,
    VREG_FORMATS,
    GattDisconnected,
    GattError,
    GattNotPaired,
    GattTimeout,
    GattUnsupported,
    SmartShuntSession,
    SmartSolarSession,
    StreamGarbage,
    VregCommand,
    VregFormat,
    VregStreamParser,
    decode_smartshunt,
    decode_vreg,
    decode_vreg_commands,
    encode_smartshunt_keep_alive,
    encode_vreg,
    encode_vreg_item,
    encode_vreg_request,
    encode_vreg_write,
    smartshunt_uuid,
)
from custom_components.sma_victron_bridge.simulators.victron_ble import (
    FakeSmartShuntPeer,
    FakeVictronGattPeer,
)

# --- requests ------------------------------------------------------------------------------------


def test_request_encoding_matches_the_traces() -> None:
    assert encode_vreg_request(0xEDBB, 0x03) == bytes.fromhex("05038119edbb")
    assert encode_vreg_request(0x010D, 0x00) == bytes.fromhex("05008119010d")
    assert encode_vreg_request(0x90, 0x00) == bytes.fromhex("0500811890")  # one-byte VREG
    # the keep-alive is a set of 0x0093 (connection keep-alive) to 10000 ms
    assert encode_vreg_write(0x0093, (10_000).to_bytes(2, "little"), 0) == KEEP_ALIVE
    assert encode_vreg_write(0x2031, bytes.fromhex("dc03"), 3) == bytes.fromhex(
        "06038219203142dc03"
    )


@pytest.mark.parametrize(("vreg", "seq"), [(-1, 0), (0x10000, 0), (0xEDBB, -1), (0xEDBB, 0x100)])
def test_request_out_of_range(vreg: int, seq: int) -> None:
    with pytest.raises(ProtocolError):
        encode_vreg_request(vreg, seq)
    with pytest.raises(ProtocolError):
        encode_vreg_write(vreg, b"\x01", seq)


def test_write_value_longer_than_an_att_value() -> None:
    assert len(encode_vreg_write(0xEDBB, bytes(512), 3)) == 3 + 3 + 3 + 512
    with pytest.raises(ProtocolError):
        encode_vreg_write(0xEDBB, bytes(513), 3)


def test_device_side_reads_the_traced_requests() -> None:
    trace = bytes.fromhex("05008119010d05008119ec7d050081189005008119ec3f05008119ec12")
    commands, used = decode_vreg_commands(trace)
    assert used == len(trace)
    assert [c.vregs for c in commands] == [(0x010D,), (0xEC7D,), (0x90,), (0xEC3F,), (0xEC12,)]
    assert {(c.command, c.seq, c.value) for c in commands} == {(0x05, 0x00, None)}

    assert decode_vreg_commands(bytes.fromhex("05008219ec6619ec65")) == (
        [VregCommand(0x05, 0x00, (0xEC66, 0xEC65))],
        9,
    )
    assert decode_vreg_commands(bytes.fromhex("06038219ec6344e65e0100"))[0] == [
        VregCommand(0x06, 0x03, (0xEC63,), bytes.fromhex("e65e0100"))
    ]
    assert decode_vreg_commands(KEEP_ALIVE)[0] == [
        VregCommand(0x06, 0x00, (0x0093,), bytes.fromhex("1027"))
    ]


def test_device_side_keeps_a_request_split_across_writes() -> None:
    first = bytes.fromhex("05038119eda905")  # the trace's write ends inside the next request
    commands, used = decode_vreg_commands(first)
    assert [c.vregs for c in commands] == [(0xEDA9,)]
    assert used == 6
    rest = first[used:] + bytes.fromhex("038119edac")
    assert decode_vreg_commands(rest) == ([VregCommand(0x05, 0x03, (0xEDAC,))], 6)
    assert decode_vreg_commands(b"\x05") == ([], 0)
    assert decode_vreg_commands(bytes.fromhex("0503")) == ([], 0)


@pytest.mark.parametrize(
    "data",
    [
        "01",  # the traces' other command bytes are not get/set
        "0300ff",
        "050380",  # empty array
        "050301",  # not an array
        "05038141ed",  # a byte string where a register number belongs
        "0503811a00010000",  # register number above 16 bits
        "050382190100f5",  # true is not a register number
        "06038119edab",  # set without a value
        "0603821901000a",  # set with an int value
        "05031c",  # reserved CBOR head
    ],
)
def test_device_side_rejects(data: str) -> None:
    with pytest.raises(ProtocolError):
        decode_vreg_commands(bytes.fromhex(data))


def test_item_encoding() -> None:
    assert encode_vreg_item(0xEDBB, bytes.fromhex("1b10")) == bytes.fromhex("080319edbb421b10")
    assert encode_vreg_item(0x90, b"\x01", seq=0, key=0x09) == bytes.fromhex("090018904101")
    assert encode_vreg_item(0x010E, b"\x00") == END_OF_STREAM == bytes.fromhex("080319010e4100")
    with pytest.raises(ProtocolError):
        encode_vreg_item(0xEDBB, b"", key=0x07)
    with pytest.raises(ProtocolError):
        encode_vreg_item(0xEDBB, b"", seq=0x02)


# --- the notification stream ---------------------------------------------------------------------

# Five items as a SmartSolar streams them, then the end marker:
#   EDBB PV voltage   h'1b10'      = 4123  -> 41.23 V
#   EDBC PV power     h'30750000'  = 30000 -> 300.00 W
#   ED8D battery V    h'2d05'      = 1325  -> 13.25 V
#   ED8F battery I    h'f4ff'      = -12   -> -1.2 A
#   EDEC battery temp h'7774'      = 29815 -> 25.00 °C
#   0090 (one-byte VREG, key 09 00 18) h'01'
STREAM = bytes.fromhex(
    "080319edbb421b10"
    "080319edbc4430750000"
    "080319ed8d422d05"
    "080319ed8f42f4ff"
    "090119edec427774"
    "090018904101"
    "080319010e4100"
)
ITEMS = [
    (0xEDBB, bytes.fromhex("1b10")),
    (0xEDBC, bytes.fromhex("30750000")),
    (0xED8D, bytes.fromhex("2d05")),
    (0xED8F, bytes.fromhex("f4ff")),
    (0xEDEC, bytes.fromhex("7774")),
    (0x0090, b"\x01"),
    (0x010E, b"\x00"),
]


def test_stream_in_one_notification() -> None:
    parser = VregStreamParser()
    assert parser.feed(STREAM) == ITEMS
    assert parser.end_markers == 1
    assert parser.pending == 0
    decoded = {vreg: decode_vreg(vreg, raw) for vreg, raw in ITEMS[:5]}
    assert decoded == {0xEDBB: 41.23, 0xEDBC: 300.0, 0xED8D: 13.25, 0xED8F: -1.2, 0xEDEC: 25.0}


def test_stream_split_at_every_point() -> None:
    for split in range(1, len(STREAM)):
        parser = VregStreamParser()
        items = parser.feed(STREAM[:split]) + parser.feed(STREAM[split:])
        assert items == ITEMS, split
        assert parser.pending == 0


def test_stream_split_at_every_pair_of_points() -> None:
    for first in range(1, len(STREAM) - 1):
        for second in range(first + 1, len(STREAM)):
            parser = VregStreamParser()
            items = parser.feed(STREAM[:first])
            items += parser.feed(STREAM[first:second])
            items += parser.feed(STREAM[second:])
            assert items == ITEMS, (first, second)


def test_stream_byte_by_byte_and_in_att_chunks() -> None:
    parser = VregStreamParser()
    items = [item for byte in STREAM for item in parser.feed(bytes((byte,)))]
    assert items == ITEMS
    parser = VregStreamParser()
    items = [item for i in range(0, len(STREAM), 20) for item in parser.feed(STREAM[i : i + 20])]
    assert items == ITEMS


def test_an_unfinished_item_waits_and_reset_forgets_it() -> None:
    parser = VregStreamParser()
    assert parser.feed(STREAM[:6]) == []
    assert parser.pending == 6
    parser.reset()
    assert parser.pending == 0
    assert parser.feed(STREAM[8:18]) == [ITEMS[1]]


def test_garbage_before_between_and_after_items() -> None:
    parser = VregStreamParser()
    with pytest.raises(StreamGarbage) as caught:
        parser.feed(b"\xde\xad\xbe\xef" + STREAM[:8] + b"\x42\x42" + STREAM[8:18] + b"\x00")
    assert caught.value.items == ITEMS[:2]
    assert caught.value.skipped == 7
    assert parser.skipped == 7
    assert parser.feed(STREAM[18:]) == ITEMS[2:]


def test_garbage_keeps_a_key_prefix_at_the_end() -> None:
    parser = VregStreamParser()
    with pytest.raises(StreamGarbage):
        parser.feed(b"\x55\x08\x03")  # 08 03 may start the next item
    assert parser.pending == 2
    assert parser.feed(STREAM[2:8]) == [ITEMS[0]]
    with pytest.raises(StreamGarbage):
        parser.feed(b"\x08\x02")  # 08 02 is no key, 02 is no key start
    assert parser.pending == 0


@pytest.mark.parametrize(
    ("item", "why"),
    [
        ("1c", "reserved head"),
        ("ff", "a break where an item belongs"),
        ("f810", "two-byte simple value below 32"),
        ("5a00010000", "a string of 65536 bytes cannot be an ATT value"),
        ("990201", "an array of 513 items cannot be an ATT value"),
        ("bf01ff", "an indefinite map ending after a key"),
        ("5f6161ff", "a text chunk in a byte string"),
        ("5f5f4100ffff", "an indefinite chunk in an indefinite string"),
        ("81" * 9 + "00", "nested nine deep"),
        ("c1" * 9 + "00", "tags nested nine deep"),
        ("9f" * 9 + "00", "indefinite arrays nested nine deep"),
        ("62c328", "text that is not UTF-8"),
        ("9f" + "01" * 513 + "ff", "an indefinite array of 513 items"),
    ],
)
def test_malformed_item_is_skipped(item: str, why: str) -> None:
    parser = VregStreamParser()
    data = bytes.fromhex("080319edbb" + item) + STREAM
    with pytest.raises(StreamGarbage) as caught:
        parser.feed(data)
    assert caught.value.items == ITEMS, why
    assert parser.pending == 0


def test_an_item_that_never_ends_is_given_up() -> None:
    parser = VregStreamParser()
    head = bytes.fromhex("080319edbb9f")  # an indefinite array without its break
    assert parser.feed(head + b"\x18\x00" * 250) == []  # 250 two-byte zeros so far
    assert parser.pending == 506
    with pytest.raises(StreamGarbage) as caught:  # longer than any ATT value: given up
        parser.feed(b"\x18\x00" * 50)
    assert caught.value.items == []
    assert caught.value.skipped == 606
    assert parser.pending == 0
    assert parser.feed(STREAM) == ITEMS


@pytest.mark.parametrize(
    ("item", "value"),
    [
        ("421b10", "1b10"),  # byte string
        ("19101b", "1b10"),  # unsigned int 4123: shortest two's complement, little-endian
        ("18c8", "c800"),  # 200 needs a second byte to stay positive
        ("2b", "f4"),  # -12
        ("390ffe", "01f0"),  # -4095
        ("1bffffffffffffffff", "ffffffffffffffff00"),  # 2**64 - 1
        ("64312e3635", "312e3635"),  # text "1.65" as UTF-8
        ("f4", "00"),  # false
        ("f5", "01"),  # true
        ("f6", ""),  # null
        ("f7", ""),  # undefined
        ("5f411b4110ff", "1b10"),  # indefinite byte string
        ("7f61316132ff", "3132"),  # indefinite text "12"
        ("f93c00", "f93c00"),  # half float 1.0: its CBOR encoding
        ("fb3ff0000000000000", "fb3ff0000000000000"),  # double 1.0
        ("820102", "820102"),  # array [1, 2]
        ("a10102", "a10102"),  # map {1: 2}
        ("c11a5f000000", "c11a5f000000"),  # tag 1 (epoch time)
        ("f820", "f820"),  # simple value 32
    ],
)
def test_item_kinds(item: str, value: str) -> None:
    parser = VregStreamParser()
    data = bytes.fromhex("080319edbb" + item) + END_OF_STREAM
    assert parser.feed(data) == [(0xEDBB, bytes.fromhex(value)), (0x010E, b"\x00")]


def test_integer_items_decode_like_byte_strings() -> None:
    parser = VregStreamParser()
    stream = bytes.fromhex("080319edbb19101b080319ed8f2b080319edec197477")
    values = {vreg: decode_vreg(vreg, raw) for vreg, raw in parser.feed(stream)}
    assert values == {0xEDBB: 41.23, 0xED8F: -1.2, 0xEDEC: 25.0}


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=30))
def test_random_notifications_raise_only_protocol_error(chunks: list[bytes]) -> None:
    parser = VregStreamParser()
    for chunk in chunks:
        try:
            items = parser.feed(chunk)
        except StreamGarbage as err:
            items = err.items
        for vreg, raw in items:
            assert 0 <= vreg <= 0xFFFF
            assert isinstance(raw, bytes)
            with contextlib.suppress(ProtocolError):
                decode_vreg(vreg, raw)
        assert parser.pending <= 600


_KEYISH = st.sampled_from([b"\x08\x03\x19", b"\x09\x00\x18", b"\x08\x01\x19\xed", b"\xff", b""])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_KEYISH, st.binary(max_size=12)), max_size=40))
def test_key_like_noise_raises_only_protocol_error(parts: list[bytes]) -> None:
    parser = VregStreamParser()
    for part in parts:
        with contextlib.suppress(ProtocolError):
            parser.feed(part)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=40), st.sampled_from([0, 1, 3])),
        min_size=1,
        max_size=12,
    ),
    st.lists(st.integers(1, 400), max_size=8),
)
def test_any_items_reassemble_from_any_split(
    items: list[tuple[int, bytes, int]], cuts: list[int]
) -> None:
    stream = b"".join(encode_vreg_item(vreg, value, seq=seq) for vreg, value, seq in items)
    points = sorted({0, len(stream), *(cut % (len(stream) + 1) for cut in cuts)})
    parser = VregStreamParser()
    got: list[tuple[int, bytes]] = []
    for start, end in itertools.pairwise(points):
        got += parser.feed(stream[start:end])
    assert got == [(vreg, value) for vreg, value, _seq in items]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60))
def test_random_requests_raise_only_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_vreg_commands(data)


# --- register values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vreg", "raw", "value"),
    [
        (0x0102, "00ff6501", "1.65"),  # identifier, then 0x0165FF: release 1.65
        (0x0102, "ff6501", "1.65"),  # without the identifier byte
        (0x0102, "00026501", "1.65-beta-02"),
        (0x0102, "00610100", "1.61"),  # HH = 0: the 16-bit form MM.LL
        (0x0102, "00ffffff", None),  # no firmware
        (0x0200, "01", 1),  # device mode: charger on
        (0x0200, "04", 4),  # charger off (firmware 1.17 and later)
        (0x0201, "05", 5),  # float
        (0x0201, "ff", None),  # "unavailable"
        (0xEC5A, "8b600100", 90251),  # uptime in s
        (0xED8D, "2d05", 13.25),
        (0xED8D, "ff7f", None),
        (0xED8F, "f4ff", -1.2),
        (0xED8F, "d800", 21.6),
        (0xEDA8, "01", 1),
        (0xEDA9, "1705", 13.03),
        (0xEDAB, "04", 4),
        (0xEDAC, "0a00", 0.1),
        (0xEDAD, "0600", 0.6),
        (0xEDBB, "1b10", 41.23),
        (0xEDBC, "30750000", 300.0),
        (0xEDBC, "ffffffff", None),
        (0xEDEC, "7774", 25.0),  # 298.15 K
        (0xEDEC, "b36a", 0.0),  # 273.15 K
        (0xEDEC, "ffff", None),  # no sensor
        (0x2211, "2003", 8.0),
        (0x2212, "cc06", 17.4),
        (0xEDDA, "11", 17),  # charger temperature too high
        (0x0140, "01000000", 1),
        (0x1234, "0102", 0x0201),  # unknown register: unsigned little-endian
        (0x1234, "000102030405060708", "000102030405060708"),
        (0xEDBB, "", None),  # null / undefined items
        (0xEDBB, "1b", 27 / 100),  # a short CBOR integer form, zero-extended
        (0xED8F, "f4", -1.2),  # a short negative integer form
        (0xEDBB, "409c00", 400.0),  # 40000 as a 3-byte integer form
    ],
)
def test_decode_vreg(vreg: int, raw: str, value: float | str | None) -> None:
    assert decode_vreg(vreg, bytes.fromhex(raw)) == value


@pytest.mark.parametrize(
    ("vreg", "raw"),
    [
        (0x0102, "6501"),  # firmware needs 3 or 4 bytes
        (0xEDBB, "ffff01"),  # 0x1FFFF does not fit u16
        (0xEDBB, "ff"),  # -1 for an unsigned register
        (0xED8F, "008000"),  # 32768 does not fit s16
        (0xEDBB, "000000000000000000"),  # longer than any integer form
    ],
)
def test_decode_vreg_rejects(vreg: int, raw: str) -> None:
    with pytest.raises(ProtocolError):
        decode_vreg(vreg, bytes.fromhex(raw))


def _raw_values() -> st.SearchStrategy[tuple[int, int]]:
    numeric = sorted(v for v, f in VREG_FORMATS.items() if f.size)

    def raws(vreg: int) -> st.SearchStrategy[tuple[int, int]]:
        fmt = VREG_FORMATS[vreg]
        bits = 8 * fmt.size
        low = -(1 << (bits - 1)) if fmt.signed else 0
        high = (1 << (bits - 1 if fmt.signed else bits)) - 1
        return st.tuples(st.just(vreg), st.integers(low, high))

    return st.sampled_from(numeric).flatmap(raws)


@settings(max_examples=500, deadline=None)
@given(_raw_values())
def test_register_values_round_trip(case: tuple[int, int]) -> None:
    vreg, raw_value = case
    fmt = VREG_FORMATS[vreg]
    raw = raw_value.to_bytes(fmt.size, "little", signed=fmt.signed)
    value = decode_vreg(vreg, raw)
    assert not isinstance(value, str)
    assert encode_vreg(vreg, value) == raw
    if value is not None:  # the integer item form decodes to the same value
        as_int = raw_value.to_bytes(raw_value.bit_length() // 8 + 1, "little", signed=True)
        assert decode_vreg(vreg, as_int) == value


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([*sorted(VREG_FORMATS), 4660]), st.binary(max_size=12))
def test_random_register_bytes_raise_only_protocol_error(vreg: int, raw: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_vreg(vreg, raw)


def test_encode_vreg() -> None:
    assert encode_vreg(0xEDBB, 41.23) == bytes.fromhex("1b10")
    assert encode_vreg(0xEDEC, 25.0) == bytes.fromhex("7774")
    assert encode_vreg(0xEDEC, None) == bytes.fromhex("ffff")
    assert encode_vreg(0xED8F, -1.2) == bytes.fromhex("f4ff")
    assert encode_vreg(0x0102, "1.65") == bytes.fromhex("00ff6501")
    assert encode_vreg(0x0102, None) == bytes.fromhex("00ffffff")
    bad: list[tuple[int, float | str | None]] = [
        (0x1234, 1),  # no known format
        (0xEDBB, "41.23"),  # text for a number
        (0xEDBB, 700.0),  # does not fit u16 in 0.01 V
        (0x0102, "v1"),  # not a version
    ]
    for vreg, value in bad:
        with pytest.raises(ProtocolError):
            encode_vreg(vreg, value)


def test_vreg_format_not_available() -> None:
    assert VregFormat(2).not_available == 0xFFFF
    assert VregFormat(2, signed=True).not_available == 0x7FFF
    assert VregFormat(4, signed=True).not_available == 0x7FFFFFFF


# --- SmartShunt characteristics ------------------------------------------------------------------


def test_smartshunt_uuids() -> None:
    assert smartshunt_uuid(0x0FFF) == "65970fff-4bda-4c1e-af4b-551c4cf74769"
    assert SMARTSHUNT_KEEP_ALIVE_UUID == "6597ffff-4bda-4c1e-af4b-551c4cf74769"
    assert {name: smartshunt_uuid(v)[:8] for name, v in SMARTSHUNT_CHARACTERISTICS.items()} == {
        "soc": "65970fff",
        "voltage": "6597ed8d",
        "power": "6597ed8e",
        "current": "6597ed8c",
        "consumed_ah": "6597eeff",
        "time_to_go": "65970ffe",
    }


@pytest.mark.parametrize(
    ("short", "raw", "value"),
    [
        ("0fff", "3d22", 87.65),  # SOC 0.01 %
        ("0fff", "ffff", None),
        ("ed8d", "2d05", 13.25),  # V 0.01
        ("ed8d", "ff7f", None),
        ("ed8e", "d9ff", -39),  # W, negative while discharging
        ("ed8c", "78f4ffff", -2.952),  # mA
        ("ed8c", "ffffff7f", None),
        ("eeff", "08fdffff", -76.0),  # 0.1 Ah
        ("0ffe", "d809", 2520),  # min
        ("0ffe", "ffff", None),  # infinite / not available
    ],
)
def test_decode_smartshunt(short: str, raw: str, value: float | None) -> None:
    uuid = f"6597{short}-4bda-4c1e-af4b-551c4cf74769"
    assert decode_smartshunt(uuid, bytes.fromhex(raw)) == value
    assert decode_smartshunt(uuid.upper(), bytes.fromhex(raw)) == value


@pytest.mark.parametrize(
    ("uuid", "raw"),
    [
        ("65970fff-4bda-4c1e-af4b-551c4cf74769", "3d"),  # short
        ("6597ed8c-4bda-4c1e-af4b-551c4cf74769", "78f4ff"),  # short s32
        ("6597ffff-4bda-4c1e-af4b-551c4cf74769", "60ea"),  # the keep-alive is no value
        ("6597edbb-4bda-4c1e-af4b-551c4cf74769", "1b10"),  # not a shunt value
        ("6597zzzz-4bda-4c1e-af4b-551c4cf74769", "1b10"),
        ("306b0003-b081-4037-83dc-e59fcc3cdfd0", "1b10"),
        ("65970fff", "3d22"),
    ],
)
def test_decode_smartshunt_rejects(uuid: str, raw: str) -> None:
    with pytest.raises(ProtocolError):
        decode_smartshunt(uuid, bytes.fromhex(raw))


def test_smartshunt_keep_alive_value() -> None:
    assert encode_smartshunt_keep_alive() == bytes.fromhex("60ea")  # 60000 ms
    assert encode_smartshunt_keep_alive(20_000) == bytes.fromhex("204e")
    for bad in (0, 0x10000):
        with pytest.raises(ProtocolError):
            encode_smartshunt_keep_alive(bad)


def _up(peer: FakeVictronGattPeer | FakeSmartShuntPeer) -> bool:
    """The peer's link state, read afresh (a helper keeps type narrowing out of the way)."""
    return peer.is_connected


# --- SmartSolar session --------------------------------------------------------------------------


async def _session(peer: FakeVictronGattPeer, **kwargs: object) -> SmartSolarSession:
    session = SmartSolarSession(peer, **kwargs)  # type: ignore[arg-type]
    peer.disconnected_callback = session.connection_lost
    await session.start()
    return session


async def test_start_opens_the_session() -> None:
    peer = FakeVictronGattPeer(seed=1)
    session = await _session(peer)
    assert peer.writes == [
        (SMARTSOLAR_CONTROL_UUID, bytes.fromhex("fa80ff")),
        (SMARTSOLAR_CONTROL_UUID, bytes.fromhex("f980")),
        (SMARTSOLAR_SINGLE_UUID, KEEP_ALIVE),
        (SMARTSOLAR_CONTROL_UUID, bytes.fromhex("f941")),
    ]
    peer.send_raw(b"\xf9\x02", SMARTSOLAR_CONTROL_UUID)  # not an acknowledgement
    await asyncio.sleep(0)
    assert session.acks == 3  # f9 01 for each control write
    assert peer.keep_alive_ms == 10_000
    await session.close()
    assert not _up(peer)
    await session.close()  # closing twice is harmless


async def test_poll_returns_the_peer_values() -> None:
    peer = FakeVictronGattPeer(seed=2)
    peer.set_value(0xEDBB, 41.23)
    peer.set_value(0xEDBC, 300.0)
    peer.set_value(0xED8D, 13.25)
    peer.set_value(0xED8F, -1.2)
    peer.set_value(0xEDEC, 25.0)
    session = await _session(peer)
    values = await session.poll()
    assert values == peer.values
    assert set(values) == {
        "firmware", "device_mode", "charge_state", "uptime", "battery_voltage",
        "battery_current", "load_state", "load_voltage", "load_offset_voltage", "load_current",
        "pv_voltage", "pv_power", "battery_temperature", "adjustable_voltage_min",
        "adjustable_voltage_max", "charger_error",
    }  # fmt: skip
    assert values["pv_voltage"] == 41.23
    assert values["pv_power"] == 300.0
    assert values["battery_voltage"] == 13.25
    assert values["battery_current"] == -1.2
    assert values["battery_temperature"] == 25.0
    assert values["firmware"] == "1.65"
    # the answers (16 items, ~130 bytes) came as 20-byte notifications
    assert peer.notifications_sent >= 7
    assert session.parser.end_markers == 1
    assert session.garbage == 0
    await session.close()


async def test_poll_with_latency_and_small_notifications() -> None:
    peer = FakeVictronGattPeer(seed=3, chunk_size=7, latency=0.002)
    session = await _session(peer)
    assert await session.poll() == peer.values
    await session.close()


async def test_unanswered_register_is_none_and_the_end_marker_ends_the_wait() -> None:
    peer = FakeVictronGattPeer(seed=4)
    del peer.registers[0xEDEC]
    session = await _session(peer, timeout=5.0)
    started = time.monotonic()
    values = await session.poll()
    assert time.monotonic() - started < 1.0  # did not wait for the 5 s timeout
    assert values["battery_temperature"] is None
    assert values["pv_power"] == peer.values["pv_power"]
    await session.close()


async def test_without_end_marker_a_missing_register_waits_for_the_timeout() -> None:
    peer = FakeVictronGattPeer(seed=5, end_marker=False)
    del peer.registers[0xEDEC]
    session = await _session(peer)
    peer.send_raw(END_OF_STREAM)  # a stale marker from before the poll must not end it
    started = time.monotonic()
    values = await session.poll(timeout=0.3)
    assert time.monotonic() - started >= 0.29
    assert values["battery_temperature"] is None
    assert values["pv_voltage"] == peer.values["pv_voltage"]
    await session.close()


async def test_silent_device_times_out() -> None:
    peer = FakeVictronGattPeer({})
    session = await _session(peer)
    with pytest.raises(GattTimeout):
        await session.poll(timeout=0.1)
    await session.close()


@pytest.mark.parametrize("wired", [True, False])
async def test_disconnect_mid_stream(wired: bool) -> None:
    peer = FakeVictronGattPeer(seed=6)
    session = SmartSolarSession(peer)
    if wired:
        peer.disconnected_callback = session.connection_lost
    await session.start()
    await asyncio.sleep(0)
    peer.drop_after(3)
    started = time.monotonic()
    with pytest.raises(GattDisconnected):
        await session.poll()
    assert time.monotonic() - started < 1.0  # noticed at once or within the link check
    assert peer.notifications_sent == 3 + 3  # three acks, then three stream notifications
    with pytest.raises(GattDisconnected):
        await session.poll()
    with pytest.raises(GattDisconnected):
        await session.keep_alive()
    assert not session.connected


async def test_garbage_on_the_stream_is_counted_and_survived() -> None:
    peer = FakeVictronGattPeer(seed=7)
    session = await _session(peer)
    peer.send_raw(b"\xde\xad\xbe\xef", SMARTSOLAR_SINGLE_UUID)
    assert await session.poll() == peer.values
    assert session.garbage == 1
    assert session.parser.skipped == 4
    await session.close()


async def test_malformed_register_value_is_none() -> None:
    peer = FakeVictronGattPeer(seed=8)
    peer.registers[0xED8D] = b"\x01\x02\x03\x04\x05"
    session = await _session(peer)
    values = await session.poll()
    assert values["battery_voltage"] is None
    assert session.decode_errors == 1
    assert session.registers[0xED8D] == b"\x01\x02\x03\x04\x05"
    await session.close()


async def test_custom_register_list() -> None:
    peer = FakeVictronGattPeer(seed=9)
    peer.registers[0x1234] = b"\x2a"
    session = await _session(peer, vregs=(0xEDBB, 0x1234))
    values = await session.poll()
    assert values == {"pv_voltage": peer.values["pv_voltage"], "vreg_1234": 42}
    assert await session.read_vregs([0x1234]) == {0x1234: b"\x2a"}
    await session.close()


def test_register_list_checks() -> None:
    peer = FakeVictronGattPeer(seed=9)
    with pytest.raises(ProtocolError):
        SmartSolarSession(peer, vregs=(0x10000,))
    with pytest.raises(ValueError, match="do not fit"):
        SmartSolarSession(peer, vregs=range(0xED00, 0xEE00))


async def test_concurrent_polls_take_turns() -> None:
    peer = FakeVictronGattPeer(seed=10, latency=0.001)
    session = await _session(peer)
    first, second = await asyncio.gather(session.poll(), session.poll())
    assert first == second == peer.values
    await session.close()


async def test_keep_alive() -> None:
    peer = FakeVictronGattPeer(seed=11)
    session = await _session(peer)
    before = peer.keep_alives
    await session.keep_alive()
    assert peer.writes[-1] == (SMARTSOLAR_SINGLE_UUID, KEEP_ALIVE)
    assert peer.keep_alives == before + 1
    await session.keep_alive(300)
    assert peer.writes[-1] == (SMARTSOLAR_SINGLE_UUID, bytes.fromhex("0600821893422c01"))
    assert peer.keep_alive_ms == 300
    for _ in range(4):  # kept alive while the host keeps sending
        await asyncio.sleep(0.05)
        await session.keep_alive(300)
    assert _up(peer)
    await asyncio.sleep(0.4)  # the device drops a silent host
    assert not _up(peer)
    assert not session.connected
    for bad in (0, 0x10000):
        with pytest.raises(ProtocolError):
            await session.keep_alive(bad)


async def test_set_load_output() -> None:
    peer = FakeVictronGattPeer(seed=12)
    session = await _session(peer)
    await session.set_load_output(4)
    assert peer.registers[0xEDAB] == b"\x04"
    assert peer.registers[0xEDA8] == b"\x01"
    await session.set_load_output(0)
    assert peer.registers[0xEDAB] == b"\x00"
    assert peer.registers[0xEDA8] == b"\x00"
    sets = [data for uuid, data in peer.writes if data.startswith(b"\x06\x03")]
    assert sets[-1] == bytes.fromhex("06038219edab410005038119edab")
    with pytest.raises(ProtocolError):
        await session.set_load_output(8)
    await session.close()


async def test_set_load_output_without_a_load_output() -> None:
    peer = FakeVictronGattPeer(seed=13, has_load_output=False)
    session = await _session(peer)
    with pytest.raises(GattUnsupported):
        await session.set_load_output(4)
    with pytest.raises(GattUnsupported):  # the capabilities are asked once
        await session.set_load_output(1)
    assert sum(data.endswith(bytes.fromhex("81190140")) for _, data in peer.writes) == 1
    await session.close()


async def test_set_load_output_that_does_not_take() -> None:
    peer = FakeVictronGattPeer(seed=14, has_load_output=False)
    peer.set_value(0x0140, 1)  # claims a load output, ignores the setting
    session = await _session(peer)
    with pytest.raises(ProtocolError, match="not 04"):
        await session.set_load_output(4)
    await session.close()


async def test_not_paired() -> None:
    peer = FakeVictronGattPeer(seed=15, paired=False)
    session = SmartSolarSession(peer)
    with pytest.raises(GattNotPaired):
        await session.start()


class _FailingPeer(FakeVictronGattPeer):
    """A peer whose Bluetooth stack fails writes with its own error type."""

    async def write(self, uuid: str, data: bytes, response: bool) -> None:
        raise OSError("org.bluez.Error.Failed")

    async def disconnect(self) -> None:
        await super().disconnect()
        raise OSError("already gone")


async def test_link_errors_are_mapped() -> None:
    peer = _FailingPeer(seed=16)
    session = SmartSolarSession(peer)
    with pytest.raises(GattError) as caught:
        await session.start()
    assert type(caught.value) is GattError
    assert isinstance(caught.value.__cause__, OSError)
    peer.drop()
    with pytest.raises(GattDisconnected):
        await session._call(peer.write(SMARTSOLAR_BULK_UUID, b"", True))
    await session.close()  # the link's error while disconnecting is swallowed


# --- SmartShunt session --------------------------------------------------------------------------

SHUNT_VALUES = {
    "soc": 87.65,
    "voltage": 13.25,
    "power": -39,
    "current": -2.952,
    "consumed_ah": -76.0,
    "time_to_go": 2520,
}


async def test_smartshunt_session() -> None:
    peer = FakeSmartShuntPeer(SHUNT_VALUES)
    session = SmartShuntSession(peer)
    await session.start()
    assert peer.writes[0] == (SMARTSHUNT_KEEP_ALIVE_UUID, bytes.fromhex("60ea"))
    assert peer.keep_alive_ms == 60_000
    assert await session.poll() == SHUNT_VALUES
    peer.update(soc=55.5, time_to_go=None)
    await asyncio.sleep(0)
    assert session.latest == {**SHUNT_VALUES, "soc": 55.5, "time_to_go": None}
    await session.keep_alive()
    assert peer.keep_alives == 2
    await session.close()
    assert not _up(peer)


async def test_smartshunt_default_values_follow_the_peer() -> None:
    peer = FakeSmartShuntPeer(seed=3)
    session = SmartShuntSession(peer)
    await session.start()
    values = await session.poll()
    assert values == peer.values
    assert values["current"] is not None
    assert values["current"] < 0
    await session.close()


async def test_smartshunt_bad_notification_is_counted() -> None:
    peer = FakeSmartShuntPeer(SHUNT_VALUES)
    session = SmartShuntSession(peer)
    await session.start()
    peer.send_raw(b"\x01", smartshunt_uuid(0x0FFF))
    await asyncio.sleep(0)
    assert session.decode_errors == 1
    assert "soc" not in session.latest
    await session.close()


async def test_smartshunt_drops_without_keep_alive() -> None:
    peer = FakeSmartShuntPeer(SHUNT_VALUES, initial_timeout=0.05)
    session = SmartShuntSession(peer, keep_alive_ms=250)
    peer.disconnected_callback = session.connection_lost
    await session.start()  # sends a 250 ms keep-alive
    assert peer.keep_alive_ms == 250
    await asyncio.sleep(0.1)
    await session.keep_alive()
    await asyncio.sleep(0.1)
    assert _up(peer)
    await asyncio.sleep(0.3)
    assert not _up(peer)
    with pytest.raises(GattDisconnected):
        await session.poll()


async def test_smartshunt_checks() -> None:
    with pytest.raises(ProtocolError):
        SmartShuntSession(FakeSmartShuntPeer(SHUNT_VALUES), keep_alive_ms=70_000)
    peer = FakeSmartShuntPeer(SHUNT_VALUES, paired=False)
    with pytest.raises(GattNotPaired):
        await SmartShuntSession(peer).start()


def test_default_vregs_have_formats_and_names() -> None:
    assert all(vreg in VREG_FORMATS for vreg in DEFAULT_VREGS)
    assert len(set(DEFAULT_VREGS)) == len(DEFAULT_VREGS)
    assert SMARTSOLAR_BULK_UUID.startswith("306b0004")
