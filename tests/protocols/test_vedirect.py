"""VE.Direct wire codec: text blocks from real captures, HEX frames from Victron's examples."""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path
import struct

from hypothesis import HealthCheck, given, settings, strategies as st
import pytest

from custom_components.sma_victron_bridge.protocols import ProtocolError
from custom_components.sma_victron_bridge.protocols.vedirect import (
    MAX_BLOCK_BYTES,
    MAX_HEX_LINE,
    MAX_PENDING_HEX,
    HexCommand,
    HexFlags,
    HexMessage,
    HexResponse,
    TextParser,
    decode_hex,
    encode_hex,
)

CAPTURES = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "vedirect"
BLUESOLAR = "bluesolar_1.23.dump"
BMV = "bmv702.dump"
SMARTSOLAR = "smartsolar_1.39.dump"


def capture(name: str) -> bytes:
    """Raw bytes of one capture."""
    return (CAPTURES / name).read_bytes()


def parse_all(data: bytes) -> tuple[TextParser, list[dict[str, str]], list[bytes]]:
    """Feed ``data`` in one go."""
    parser = TextParser()
    blocks = parser.feed(data)
    return parser, blocks, parser.take_hex()


def make_block(*fields: tuple[str, str]) -> bytes:
    """A text block with a correct checksum, as a device sends it."""
    body = b"".join(b"\r\n%s\t%s" % (k.encode(), v.encode()) for k, v in fields)
    body += b"\r\nChecksum\t"
    return body + bytes([-sum(body) & 0xFF])


# --- captures ------------------------------------------------------------------------------


def test_bluesolar_capture() -> None:
    """BlueSolar 75|15 fw 1.23: 248 blocks (every 'Checksum' in the file; the first block's
    leading byte is the previous block's checksum), 7 async history frames (0x1050)."""
    data = capture(BLUESOLAR)
    parser, blocks, hex_lines = parse_all(data)
    assert data.count(b"\r\nChecksum\t") == 248
    assert len(blocks) == 248
    assert parser.checksum_errors == 0
    assert parser.framing_errors == 0
    assert blocks[0] == {
        "PID": "0xA042",
        "FW": "123",
        "SER#": "HQ1411MYIKN",
        "V": "12530",
        "I": "620",
        "VPV": "33580",
        "PPV": "8",
        "CS": "3",
        "ERR": "0",
        "LOAD": "ON",
        "IL": "0",
        "H19": "8272",
        "H20": "0",
        "H21": "11",
        "H22": "25",
        "H23": "119",
        "HSDS": "274",
    }
    assert blocks[1]["I"] == "640"
    assert blocks[1]["VPV"] == "31390"
    assert (blocks[-1]["V"], blocks[-1]["I"], blocks[-1]["VPV"]) == ("12540", "500", "29990")
    assert sum(int(b["PPV"]) for b in blocks) == 1726
    assert {b["V"] for b in blocks} == {
        "12450",
        "12480",
        "12490",
        "12500",
        "12510",
        "12520",
        "12530",
        "12540",
    }

    assert len(hex_lines) == 7
    messages = [decode_hex(line) for line in hex_lines]
    assert {(m.command, m.register, m.flags) for m in messages} == {(0xA, 0x1050, 0)}
    # Day record ([VEHEX] history day record): compare with the text fields of the capture.
    day = messages[0].value
    assert len(day) == 34
    assert struct.unpack_from("<HH", day, 9) == (1261, 1222)  # battery V max/min, 0.01 V
    assert struct.unpack_from("<H", day, 18) == (194,)  # minutes in bulk
    assert struct.unpack_from("<I", day, 24) == (11,)  # max power today = H21
    assert struct.unpack_from("<H", day, 30) == (3528,)  # panel V max, 0.01 V
    assert struct.unpack_from("<H", day, 32) == (274,)  # day sequence number = HSDS
    assert [struct.unpack_from("<H", m.value, 18)[0] for m in messages] == [
        194,
        194,
        194,
        194,
        195,
        196,
        197,
    ]


def test_bmv702_capture() -> None:
    """BMV-702: 906 blocks alternating main / history; 7 of them have ':' as checksum byte,
    which must not be taken for a HEX frame."""
    data = capture(BMV)
    parser, blocks, hex_lines = parse_all(data)
    assert data.count(b"\r\nChecksum\t") == 906
    assert data.count(b"Checksum\t:") == 7
    assert len(blocks) == 906
    assert hex_lines == []
    assert parser.checksum_errors == 0
    assert parser.hex_errors == 0
    assert sum("PID" in b for b in blocks) == 453
    assert sum("H1" in b for b in blocks) == 453
    assert blocks[0] == {
        "PID": "0x203",
        "V": "12065",
        "I": "-7625",
        "P": "-92",
        "CE": "-65473",
        "SOC": "839",
        "TTG": "942",
        "Alarm": "OFF",
        "Relay": "OFF",
        "AR": "0",
        "BMV": "700",
        "FW": "0308",
    }
    assert blocks[1]["H1"] == "-149322"
    assert blocks[1]["H6"] == "-5526294"
    assert blocks[1]["H9"] == "368003"
    assert blocks[2]["I"] == "-7626"
    assert blocks[-1]["H6"] == "-5526854"
    assert blocks[-1]["H9"] == "368456"
    voltages = [int(b["V"]) for b in blocks if "V" in b]
    assert (min(voltages), max(voltages)) == (12061, 12169)


def test_smartsolar_capture() -> None:
    """SmartSolar 100|20 fw 1.39: the file starts inside a block (494 checksums, 493 complete
    blocks); two async frames (0x1050 day, 0x104F total) follow one checksum byte directly."""
    data = capture(SMARTSOLAR)
    parser, blocks, hex_lines = parse_all(data)
    assert data.count(b"\r\nChecksum\t") == 494
    assert len(blocks) == 493
    assert parser.checksum_errors == 0  # the cut first block is not an error
    assert blocks[0]["PID"] == "0xA05F"
    assert blocks[0]["SER#"] == "HQ18486U2B4"
    assert blocks[0]["V"] == "12810"
    assert blocks[0]["MPPT"] == "0"
    assert blocks[-1]["V"] == "12730"
    assert all(b["CS"] == "0" and b["PPV"] == "0" for b in blocks)

    assert hex_lines == [
        b":A5010000000000000000000000D05F904000000000000000000000000000000000001000000DB",
        b":A4F1000010000000000000000000000000001000D0500F904FFFFFFFFFFFFFFFFFFFFFFFFFFE8",
    ]
    day, total = (decode_hex(line) for line in hex_lines)
    assert (day.command, day.register, day.flags) == (HexCommand.ASYNC, 0x1050, 0)
    assert struct.unpack_from("<HH", day.value, 9) == (1293, 1273)
    assert (total.register, total.value[0]) == (0x104F, 1)  # fw >= 1.17 total record
    # Battery voltage maximum (offset 16) and minimum (offset 19) agree with the day record.
    assert struct.unpack_from("<H", total.value, 16) == (1293,)
    assert struct.unpack_from("<H", total.value, 19) == (1273,)


@pytest.mark.parametrize("name", [BLUESOLAR, BMV, SMARTSOLAR])
def test_byte_by_byte_equals_one_feed(name: str) -> None:
    """Chunk boundaries never matter, not even one byte at a time."""
    data = capture(name)
    _, blocks, hex_lines = parse_all(data)
    parser = TextParser()
    single: list[dict[str, str]] = []
    for i in range(len(data)):
        single += parser.feed(data[i : i + 1])
    assert single == blocks
    assert parser.take_hex() == hex_lines


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from([BLUESOLAR, BMV, SMARTSOLAR]),
    cuts=st.lists(st.integers(min_value=0, max_value=120_000), max_size=400),
)
def test_random_chunking_gives_same_blocks(name: str, cuts: list[int]) -> None:
    data = capture(name)
    _, blocks, hex_lines = parse_all(data)
    parser = TextParser()
    got: list[dict[str, str]] = []
    previous = 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        got += parser.feed(data[previous:cut])
        previous = cut
    assert got == blocks
    assert parser.take_hex() == hex_lines
    assert parser.checksum_errors == 0


# --- text parser edge cases ------------------------------------------------------------------


def block_with_checksum(wanted: int) -> bytes:
    """A valid block whose checksum byte is ``wanted`` (found by varying a value)."""
    printable = [chr(c) for c in range(0x21, 0x7F) if chr(c) != ":"]
    for serial in itertools.product(printable, repeat=3):
        block = make_block(("PID", "0xA053"), ("SER#", "".join(serial)))
        if block[-1] == wanted:
            return block
    raise AssertionError("no such block")  # pragma: no cover


def test_colon_checksum_followed_by_hex_frame() -> None:
    block = block_with_checksum(ord(":"))
    assert block.endswith(b"Checksum\t:")
    frame = b":A0102000543\n"
    parser = TextParser()
    blocks = parser.feed(block + frame + block + b"\r\n")
    assert len(blocks) == 2
    assert blocks[0]["PID"] == "0xA053"
    assert parser.take_hex() == [b":A0102000543"]
    assert parser.take_hex() == []
    assert parser.checksum_errors == 0


def test_hex_frame_inside_a_block_is_excluded_from_checksum() -> None:
    block = make_block(("PID", "0xA053"), ("V", "12800"), ("I", "-10"))
    cut = block.index(b"\r\nV")
    parser = TextParser()
    assert parser.feed(block) != []  # synchronise on a first block
    interrupted = block[:cut] + b":A0102000543\r\n" + block[cut:]
    assert parser.feed(interrupted) == [{"PID": "0xA053", "V": "12800", "I": "-10"}]
    assert parser.take_hex() == [b":A0102000543"]


def test_corrupted_block_is_dropped_and_counted() -> None:
    good = make_block(("V", "12800"), ("I", "100"))
    bad = bytearray(good)
    bad[bad.index(b"128")] = ord("9")
    parser = TextParser()
    assert parser.feed(good + bytes(bad) + good) == [{"V": "12800", "I": "100"}] * 2
    assert parser.checksum_errors == 1


def test_first_partial_block_is_dropped_silently() -> None:
    good = make_block(("V", "12800"), ("I", "100"))
    parser = TextParser()
    assert parser.feed(good[7:] + good) == [{"V": "12800", "I": "100"}]
    assert parser.checksum_errors == 0
    # After reset() the parser resynchronises the same way.
    parser.feed(good[:9])
    parser.reset()
    assert parser.feed(good[3:] + good) == [{"V": "12800", "I": "100"}]
    assert parser.checksum_errors == 0


def test_valid_block_with_malformed_field_is_dropped() -> None:
    parser = TextParser()
    parser.feed(make_block(("V", "1")))
    body = b"\r\nV\t1\r\nBROKEN\r\nChecksum\t"
    assert parser.feed(body + bytes([-sum(body) & 0xFF])) == []
    assert parser.framing_errors == 1


def test_empty_block_yields_nothing() -> None:
    parser = TextParser()
    parser.feed(make_block(("V", "1")))
    assert parser.feed(make_block()) == []
    assert parser.checksum_errors == 0


def test_oversize_garbage_is_bounded_and_resyncs() -> None:
    parser = TextParser()
    good = make_block(("V", "12800"))
    parser.feed(good)
    garbage = bytes(range(58)) * 1000  # no ':' (0x3A = 58), no checksum field
    for _ in range(20):
        assert parser.feed(garbage) == []
        assert len(parser._text) <= MAX_BLOCK_BYTES
    assert parser.framing_errors == 1
    # The garbage holds no field boundary, so even the first block after it is recovered.
    assert parser.feed(good + good) == [{"V": "12800"}] * 2
    assert parser.checksum_errors == 0


def test_oversize_block_in_one_feed_equals_chunked() -> None:
    good = make_block(("V", "12800"))
    garbage = bytes(range(58)) * 60  # 3480 bytes without ':' or a checksum field
    data = good + garbage + good + good
    one = TextParser()
    assert one.feed(data) == [{"V": "12800"}] * 3
    assert (one.framing_errors, one.checksum_errors) == (1, 0)
    chunked = TextParser()
    assert [b for i in range(0, len(data), 100) for b in chunked.feed(data[i : i + 100])] == [
        {"V": "12800"}
    ] * 3
    assert (chunked.framing_errors, chunked.checksum_errors) == (1, 0)


def test_overlong_hex_line_is_dropped() -> None:
    parser = TextParser()
    good = make_block(("V", "12800"))
    parser.feed(good)
    parser.feed(b":" + b"A" * (MAX_HEX_LINE + 10))
    assert parser._hex is not None
    assert len(parser._hex) <= MAX_HEX_LINE
    assert parser.feed(b"B" * 100 + b"\n" + good) == [{"V": "12800"}]
    assert parser.hex_errors == 1
    assert parser.take_hex() == []


def test_pending_hex_lines_are_capped() -> None:
    parser = TextParser()
    parser.feed(b":154\n" * (MAX_PENDING_HEX + 5))
    lines = parser.take_hex()
    assert len(lines) == MAX_PENDING_HEX
    assert parser.hex_dropped == 5


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.binary(max_size=3000), max_size=8))
def test_random_bytes_never_raise(chunks: list[bytes]) -> None:
    parser = TextParser()
    for chunk in chunks:
        for block in parser.feed(chunk):
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in block.items())
        assert len(parser._text) <= MAX_BLOCK_BYTES
    for line in parser.take_hex():
        assert line.startswith(b":")
        with contextlib.suppress(ProtocolError):
            decode_hex(line)


_TEXTISH = st.lists(
    st.sampled_from(
        [b"\r\n", b"\t", b":", b"Checksum\t", b"\r\nChecksum\t", b"V", b"1", b"\n", b"\xff", b"A"]
    ),
    max_size=300,
).map(b"".join)


@settings(max_examples=200, deadline=None)
@given(data=_TEXTISH, cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=20))
def test_protocol_like_noise_is_chunking_independent(data: bytes, cuts: list[int]) -> None:
    reference = TextParser()
    expected = reference.feed(data)
    parser = TextParser()
    got: list[dict[str, str]] = []
    previous = 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        got += parser.feed(data[previous:cut])
        previous = cut
    assert got == expected
    assert parser.take_hex() == reference.take_hex()
    assert (parser.checksum_errors, parser.framing_errors, parser.hex_errors) == (
        reference.checksum_errors,
        reference.framing_errors,
        reference.hex_errors,
    )


# --- HEX codec -------------------------------------------------------------------------------

DOCUMENT_FRAMES = [
    # [VEHEX] §1.3 and PROTOCOLS.md §3: frame, command, register, flags, value
    (b":154", 0x1, None, None, b""),
    (b":51641F9", 0x5, None, None, b"\x16\x41"),  # ping reply: version 0x4116 = 1.16
    (b":352", 0x3, None, None, b""),
    (b":11641FD", 0x1, None, None, b"\x16\x41"),  # app version 1.16
    (b":451", 0x4, None, None, b""),
    (b":1000351", 0x1, None, None, b"\x00\x03"),  # product id 0x0300
    (b":64F", 0x6, None, None, b""),
    (b":253", 0x2, None, None, b""),
    (b":3020050", 0x3, None, None, b"\x02\x00"),  # unknown command 2
    (b":4AAAAFD", 0x4, None, None, b"\xaa\xaa"),  # framing error
    (b":7F0ED0071", 0x7, 0xEDF0, 0, b""),
    (b":7F0ED009600DB", 0x7, 0xEDF0, 0, b"\x96\x00"),  # 15.0 A
    (b":8F0ED0064000C", 0x8, 0xEDF0, 0, b"\x64\x00"),  # 10.0 A
    (b":A0102000543", 0xA, 0x0201, 0, b"\x05"),  # device state float
    (b":8022000260500", 0x8, 0x2002, 0, b"\x26\x05"),  # 13.18 V
    (b":80320002E09F3", 0x8, 0x2003, 0, b"\x2e\x09"),  # 23.50 °C
    (b":8022000FFFF2D", 0x8, 0x2002, 0, b"\xff\xff"),  # release voltage
    (b":8032000FF7FAC", 0x8, 0x2003, 0, b"\xff\x7f"),  # release temperature
]


@pytest.mark.parametrize(("frame", "command", "register", "flags", "value"), DOCUMENT_FRAMES)
def test_document_frames(
    frame: bytes, command: int, register: int | None, flags: int | None, value: bytes
) -> None:
    expected = HexMessage(command=command, register=register, flags=flags, value=value)
    assert decode_hex(frame) == expected
    assert decode_hex(frame + b"\n") == expected
    assert decode_hex(frame + b"\r\n") == expected
    assert decode_hex(frame.lower()) == expected
    if register is None:
        assert encode_hex(command, value=value) == frame + b"\n"
    else:
        assert encode_hex(command, register, flags or 0, value) == frame + b"\n"


def test_encode_named_commands() -> None:
    assert encode_hex(HexCommand.PING) == b":154\n"
    assert encode_hex(HexCommand.PRODUCT_ID) == b":451\n"
    assert encode_hex(HexCommand.GET, 0xEDF0) == b":7F0ED0071\n"
    assert encode_hex(HexCommand.SET, 0xEDF0, value=b"\x64\x00") == b":8F0ED0064000C\n"
    assert int(HexResponse.PING) == 5
    assert HexFlags.UNKNOWN_ID | HexFlags.PARAMETER_ERROR == 5


def test_get_reply_with_flags() -> None:
    message = decode_hex(encode_hex(HexResponse.GET, 0x1234, HexFlags.UNKNOWN_ID))
    assert (message.register, message.flags, message.value) == (0x1234, 1, b"")


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"\n",
        b"154",  # no colon
        b":",
        b":1",
        b":15",  # even number of digits
        b":452",  # wrong check byte [VEHEX] example
        b":7F0ED0072",  # wrong check byte
        b":1 54",
        b":1G4",
        b":1\xff4",
        encode_hex(0xA, value=b"\x01\x02").strip(),  # async frame without flags
        encode_hex(0x7, value=b"\x01").strip(),  # get reply with only one data byte
    ],
)
def test_bad_frames_raise_protocol_error(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_hex(line)


@pytest.mark.parametrize(
    ("command", "register", "flags"),
    [(16, None, 0), (-1, None, 0), (7, 0x10000, 0), (7, -1, 0), (7, 0xEDF0, 256)],
)
def test_encode_rejects_out_of_range(command: int, register: int | None, flags: int) -> None:
    with pytest.raises(ProtocolError):
        encode_hex(command, register, flags)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_decode_random_bytes_only_protocol_error(line: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_hex(line)


@settings(max_examples=300, deadline=None)
@given(st.from_regex(rb"\A:[0-9A-Fa-f]{0,80}\r?\n?\Z"))
def test_decode_hexlike_lines_only_protocol_error(line: bytes) -> None:
    try:
        message = decode_hex(line)
    except ProtocolError:
        return
    assert 0 <= message.command <= 0xF


@settings(max_examples=300, deadline=None)
@given(
    command=st.integers(min_value=0, max_value=15),
    register=st.integers(min_value=0, max_value=0xFFFF),
    flags=st.integers(min_value=0, max_value=0xFF),
    value=st.binary(max_size=40),
)
def test_encode_decode_round_trip(command: int, register: int, flags: int, value: bytes) -> None:
    if command in (HexCommand.GET, HexCommand.SET, HexCommand.ASYNC):
        frame = encode_hex(command, register, flags, value)
        expected = HexMessage(command=command, register=register, flags=flags, value=value)
    else:
        frame = encode_hex(command, value=value)
        expected = HexMessage(command=command, register=None, flags=None, value=value)
    assert frame.endswith(b"\n")
    assert frame == frame.upper()
    assert decode_hex(frame) == expected
