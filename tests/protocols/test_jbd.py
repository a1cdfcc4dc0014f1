"""JBD codecs against real captures (testdata/jbd) and the examples of the maker's V4 document."""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path
import re

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.sma_victron_bridge.protocols import ProtocolError, bms_common, jbd, jbd_up

TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "jbd"
_FRAME = re.compile(r"(>>>|<<<)\s+((?:[0-9A-Fa-f]{2}:)+[0-9A-Fa-f]{2})(?:\s*#\s*(.*))?")


def capture(name: str) -> list[tuple[str, bytes, str]]:
    """(direction marker, frame bytes, comment) for every hex frame in a capture file."""
    frames = []
    for line in (TESTDATA / name).read_text().splitlines():
        for match in _FRAME.finditer(line):
            raw = bytes.fromhex(match.group(2).replace(":", ""))
            frames.append((match.group(1), raw, (match.group(3) or "").strip()))
    return frames


def responses(name: str) -> list[jbd.JbdFrame]:
    return [jbd.parse_frame(raw) for marker, raw, _ in capture(name) if marker == "<<<"]


def all_real_frames() -> list[bytes]:
    frames = []
    for name in (
        "JBD-SP04S034-L4S-200A-B-U.txt",
        "JBD-SP04S034-L4S-200A-B-U_MOS.txt",
        "JBD-SP25S003-L16S-100A-100A-B.txt",
    ):
        frames += [raw for _, raw, _ in capture(name)]
    return frames


REAL_FRAMES = all_real_frames()

# --- SP04S034 (4S LiFePO4, 5 Ah) -----------------------------------------------------------------


def test_sp04s034_requests_are_what_encode_read_builds() -> None:
    requests = [
        raw for marker, raw, _ in capture("JBD-SP04S034-L4S-200A-B-U.txt") if marker == ">>>"
    ]
    assert requests == [
        jbd.encode_read(0x03),
        jbd.encode_read(0x03),
        jbd.encode_read(0x04),
        jbd.encode_read(0x04),
        jbd.encode_read(0x05),
        jbd.encode_read(0xAA),
    ]
    assert jbd.encode_read(0xAA) == bytes.fromhex("DD A5 AA 00 FF 56 77")


def test_sp04s034_basic_info() -> None:
    frames = responses("JBD-SP04S034-L4S-200A-B-U.txt")
    assert [(f.register, f.status, f.ok) for f in frames] == [
        (0x03, 0, True),
        (0x03, 0, True),
        (0x04, 0, True),
        (0x04, 0, True),
        (0x05, 0, True),
        (0xAA, 0, True),
    ]
    info = jbd.decode_basic_info(frames[0].payload)
    assert info.voltage == 15.6
    assert info.current == 0.0
    assert info.remaining_capacity == 4.98
    assert info.nominal_capacity == 5.0
    assert info.cycles == 0
    assert info.manufacture_date == dt.date(2022, 3, 28)
    assert info.balance == 0
    assert info.protection == 0
    assert info.protection_flags == []
    assert info.software_version == "8.0"
    assert info.software_version_raw == 0x80
    assert info.soc == 100
    assert info.charge_fet is True
    assert info.discharge_fet is True
    assert info.cell_count == 4
    assert info.temperatures == [22.4, 22.3, 21.7]
    assert jbd.decode_basic_info(frames[1].payload).temperatures == [22.4, 22.2, 21.7]


def test_sp04s034_cells_model_and_error_counters() -> None:
    frames = responses("JBD-SP04S034-L4S-200A-B-U.txt")
    assert jbd.decode_cell_voltages(frames[2].payload) == [3.909, 3.901, 3.895, 3.901]
    assert jbd.decode_cell_voltages(frames[3].payload) == [3.909, 3.902, 3.895, 3.901]
    assert jbd.decode_model(frames[4].payload) == "JBD-SP04S034-L4S-200A-B-U"
    counters = jbd.decode_error_counters(frames[5].payload)
    # The BMS sends twelve counters although the documents name eleven.
    assert counters == [0, 0, 0, 122, 2, 0, 0, 0, 0, 0, 0, 1]
    named = dict(zip(jbd.ERROR_COUNTER_NAMES, counters, strict=False))
    assert named["cell_overvoltage"] == 122
    assert named["cell_undervoltage"] == 2


def test_sp04s034_to_reading() -> None:
    frames = responses("JBD-SP04S034-L4S-200A-B-U.txt")
    info = jbd.decode_basic_info(frames[0].payload)
    cells = jbd.decode_cell_voltages(frames[2].payload)
    reading = jbd.to_reading(info, cells, jbd.decode_model(frames[4].payload))
    assert reading == bms_common.BmsReading(
        soc=100.0,
        voltage=15.6,
        current=0.0,
        power=0.0,
        remaining_capacity=4.98,
        nominal_capacity=5.0,
        cycles=0,
        cell_voltages=(3.909, 3.901, 3.895, 3.901),
        temperatures=(22.4, 22.3, 21.7),
        balancing=(False, False, False, False),
        charge_fet=True,
        discharge_fet=True,
        protections=frozenset(),
        model="JBD-SP04S034-L4S-200A-B-U",
    )
    assert reading.min_cell_voltage == 3.895
    assert reading.max_cell_voltage == 3.909
    assert jbd.to_reading(info).cell_voltages == ()


# --- SP04S034 MOSFET writes ---------------------------------------------------------------------

_MOS_REQUESTS = {
    "Charging off (+ discharging on)": jbd.encode_mosfet_control(
        charge_on=False, discharge_on=True
    ),
    "Charging on (+ discharging on)": jbd.encode_mosfet_control(charge_on=True, discharge_on=True),
    "Discharging off (+ charging on)": jbd.encode_mosfet_control(
        charge_on=True, discharge_on=False
    ),
    "Discharging on (+ charging on)": jbd.encode_mosfet_control(charge_on=True, discharge_on=True),
    "Exit factory without writing to NVM": jbd.encode_factory_mode_exit(),
}


def test_mosfet_capture_requests_and_acks_byte_exact() -> None:
    frames = capture("JBD-SP04S034-L4S-200A-B-U_MOS.txt")
    requests = [(raw, comment) for _, raw, comment in frames if comment]
    assert len(requests) == 8
    for raw, comment in requests:
        assert raw == _MOS_REQUESTS[comment], comment
    assert jbd.encode_mosfet_control(False, True) == bytes.fromhex("DD 5A E1 02 00 01 FF 1C 77")
    assert jbd.encode_mosfet_control(True, True) == bytes.fromhex("DD 5A E1 02 00 00 FF 1D 77")
    assert jbd.encode_mosfet_control(True, False) == bytes.fromhex("DD 5A E1 02 00 02 FF 1B 77")
    assert jbd.encode_mosfet_control(False, False) == bytes.fromhex("DD 5A E1 02 00 03 FF 1A 77")

    acks = [raw for _, raw, comment in frames if not comment]
    # One acknowledgement in the capture is labelled ">>>"; its bytes show it is a response.
    assert [marker for marker, _, comment in frames if not comment].count(">>>") == 1
    assert len(acks) == 8
    for raw in acks:
        frame = jbd.parse_frame(raw)
        assert frame.ok
        assert frame.payload == b""
        assert frame.register in (0xE1, 0x01)
        with pytest.raises(ProtocolError):
            jbd.parse_request(raw)
    assert jbd.parse_frame(acks[0]) == jbd.JbdFrame(register=0xE1, status=0, payload=b"")


# --- SP25S003 (16S) -------------------------------------------------------------------------------


def test_sp25s003_basic_info_matches_the_logged_values() -> None:
    frames = responses("JBD-SP25S003-L16S-100A-100A-B.txt")
    info = jbd.decode_basic_info(frames[0].payload)
    assert info.voltage == 0.0
    assert info.current == 0.0
    assert info.remaining_capacity == 0.0
    assert info.nominal_capacity == 100.0
    assert info.cycles == 0
    assert info.manufacture_date == dt.date(2022, 2, 16)
    assert info.balance == 0
    assert info.protection == 0
    assert info.software_version == "2.0"
    assert info.soc == 0
    assert info.charge_fet is True
    assert info.discharge_fet is False
    assert info.cell_count == 16
    assert info.temperatures == []
    cells = jbd.decode_cell_voltages(frames[1].payload)
    assert cells == [3.6] * 15 + [0.0]


# --- the maker's document -------------------------------------------------------------------------


def test_v4_document_examples() -> None:
    assert jbd.encode_read(0x03) == bytes.fromhex("DD A5 03 00 FF FD 77")
    assert jbd.encode_read(0x04) == bytes.fromhex("DD A5 04 00 FF FC 77")
    assert jbd.encode_read(0x05) == bytes.fromhex("DD A5 05 00 FF FB 77")

    short = jbd.parse_frame(
        bytes.fromhex(
            "DD 03 00 1B 17 00 00 00 02 D0 03 E8 00 00 20 78 00 00 00 00 00 00 10 48 03 0F 02"
            " 0B 76 0B 82 FB FF 77"
        )
    )
    info = jbd.decode_basic_info(short.payload)
    assert (info.voltage, info.remaining_capacity, info.nominal_capacity) == (58.88, 7.2, 10.0)
    assert info.manufacture_date == dt.date(2016, 3, 24)
    assert (info.software_version, info.soc, info.cell_count) == ("1.0", 72, 15)
    assert info.temperatures == [20.3, 21.5]

    detailed = jbd.parse_frame(
        bytes.fromhex(
            "DD 03 00 1F 19 DF F8 24 0D A5 0F A0 00 02 24 91 00 00 00 00 00 00 12 57 03 11 04"
            " 0B 98 0B A9 0B 96 0B 97 F8 9A 77"
        )
    )
    info = jbd.decode_basic_info(detailed.payload)
    assert info.voltage == 66.23
    assert info.current == -20.12
    assert info.remaining_capacity == 34.93
    assert info.nominal_capacity == 40.0
    assert info.cycles == 2
    assert info.manufacture_date == dt.date(2018, 4, 17)
    assert info.software_version == "1.2"
    assert info.soc == 87
    assert (info.charge_fet, info.discharge_fet) == (True, True)
    assert info.cell_count == 17
    # The document works 0x0B98 out as "2968 - 2731 = 247 -> 24.7 C"; 2968 - 2731 is 237.
    assert info.temperatures == [23.7, 25.4, 23.5, 23.6]

    cells = jbd.parse_frame(
        bytes.fromhex(
            "DD 04 00 1E 0F 66 0F 63 0F 63 0F 64 0F 3E 0F 63 0F 37 0F 5B 0F 65 0F 3B 0F 63 0F 63"
            " 0F 3C 0F 66 0F 3D F9 F9 77"
        )
    )
    assert jbd.decode_cell_voltages(cells.payload)[:3] == [3.942, 3.939, 3.939]
    assert len(jbd.decode_cell_voltages(cells.payload)) == 15

    model = jbd.parse_frame(bytes.fromhex("DD 05 00 0A 30 31 32 33 34 35 36 37 38 39 FD E9 77"))
    assert jbd.decode_model(model.payload) == "0123456789"


def test_factory_mode_frames() -> None:
    assert jbd.encode_factory_mode_enter() == bytes.fromhex("DD 5A 00 02 56 78 FF 30 77")
    assert jbd.encode_factory_mode_exit() == bytes.fromhex("DD 5A 01 02 00 00 FF FD 77")


# --- decoding details -------------------------------------------------------------------------


def _basic_info_payload(**overrides: int) -> bytearray:
    payload = bytearray(
        bytes.fromhex("0618 0000 01F2 01F4 0000 2C7C 0000 0000 0000 80 64 03 04 00")
    )
    for offset, value in overrides.items():
        payload[int(offset[1:])] = value
    return payload


def test_protection_flags_follow_the_document_bit_order() -> None:
    assert jbd.protection_flags(0x1FFF) == list(bms_common.PROTECTION_NAMES)
    assert jbd.protection_flags(0xE000) == []
    assert jbd.protection_flags(1 << 10 | 1) == ["cell_overvoltage", "short_circuit"]
    payload = _basic_info_payload(b16=0x10, b17=0x05)
    info = jbd.decode_basic_info(bytes(payload))
    assert info.protection == 0x1005
    assert info.protection_flags == ["cell_overvoltage", "pack_overvoltage", "mosfet_lock"]
    reading = jbd.to_reading(info)
    assert reading.protections == {"cell_overvoltage", "pack_overvoltage", "mosfet_lock"}


def test_balance_words_combine_low_cells_first() -> None:
    # bytes 12-13: cells 1-16, bytes 14-15: cells 17-32 (the document's order).
    payload = _basic_info_payload(b12=0x00, b13=0x05, b14=0x80, b15=0x00, b21=32)
    info = jbd.decode_basic_info(bytes(payload))
    assert info.balance == 0x8000_0005
    assert info.balancing_cells == [1, 3, 32]
    assert jbd.to_reading(info).balancing == (True, False, True) + (False,) * 28 + (True,)


def _with_balance(frame: bytes, low: int, high: int) -> bytes:
    """A real 0x03 response with its two balance words replaced and its checksum redone."""
    body = bytearray(frame[2:-3])  # status, length, data
    body[2 + 12 : 2 + 16] = low.to_bytes(2, "big") + high.to_bytes(2, "big")
    return frame[:2] + bytes(body) + jbd.checksum(body).to_bytes(2, "big") + frame[-1:]


def test_balance_bits_beyond_the_cell_count_are_no_cells() -> None:
    # The real 4S frame (its balance words are 0 in the capture) with bits set for cells 2
    # and 4 and for "cells" 5, 16 and 17 that a 4S pack does not have.
    real = next(
        raw
        for marker, raw, _ in capture("JBD-SP04S034-L4S-200A-B-U.txt")
        if marker == "<<<" and raw[1] == 0x03
    )
    info = jbd.decode_basic_info(jbd.parse_frame(_with_balance(real, 0x801A, 0x0001)).payload)
    assert info.cell_count == 4
    assert info.balance == 0x0001_801A
    assert info.balancing_cells == [2, 4]
    assert jbd.to_reading(info).balancing == (False, True, False, True)


@given(balance=st.integers(0, 0xFFFF_FFFF), cells=st.integers(0, 255))
def test_balancing_never_names_a_cell_the_pack_lacks(balance: int, cells: int) -> None:
    payload = _basic_info_payload(
        b12=balance >> 8 & 0xFF, b13=balance & 0xFF, b14=balance >> 24, b15=balance >> 16 & 0xFF
    )
    payload[21] = cells
    info = jbd.decode_basic_info(bytes(payload))
    assert all(1 <= cell <= min(cells, 32) for cell in info.balancing_cells)
    flags = jbd.to_reading(info).balancing
    assert len(flags) == min(cells, 32)
    assert [n + 1 for n, on in enumerate(flags) if on] == info.balancing_cells


def test_fet_bits_sign_and_invalid_date() -> None:
    payload = _basic_info_payload(b2=0xFF, b3=0x9C, b10=0, b11=0, b20=0x02)
    info = jbd.decode_basic_info(bytes(payload))
    assert info.current == -1.0
    assert info.manufacture_date is None
    assert (info.charge_fet, info.discharge_fet) == (False, True)
    assert jbd.to_reading(info).power == -15.6


def test_extra_trailing_basic_info_bytes_are_ignored() -> None:
    payload = bytes(_basic_info_payload(b22=1)) + b"\x0b\xa5" + b"\x00\x11\x22"
    assert jbd.decode_basic_info(payload).temperatures == [25.0]


def test_error_response_status_is_exposed() -> None:
    frame = jbd.parse_frame(bytes.fromhex("DD 03 80 00 FF 80 77"))
    assert frame.status == jbd.STATUS_ERROR
    assert not frame.ok


def test_model_with_odd_bytes_never_raises() -> None:
    assert jbd.decode_model(b"AB\xffC\x00\x00") == "AB\ufffdC"


# --- errors -----------------------------------------------------------------------------------

_GOOD = bytes.fromhex("DD 04 00 08 0F 45 0F 3D 0F 37 0F 3D FE C6 77")


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\xdd\x04\x00\x00\x00\x77",
        b"\xaa" + _GOOD[1:],
        _GOOD[:-1] + b"\x78",
        _GOOD[:-3] + b"\xfe\xc7\x77",
        _GOOD[:-1],
        _GOOD + b"\x77",
        _GOOD[:3] + b"\x09" + _GOOD[4:],
    ],
)
def test_bad_frames_raise_protocol_error(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        jbd.parse_frame(frame)
    with pytest.raises(ProtocolError):
        jbd.parse_request(frame)


@pytest.mark.parametrize(
    "payload",
    [b"", bytes(22), bytes(_basic_info_payload(b22=2)) + b"\x0b\xb5"],
)
def test_short_basic_info_raises(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        jbd.decode_basic_info(payload)


def test_odd_lengths_raise() -> None:
    with pytest.raises(ProtocolError):
        jbd.decode_cell_voltages(b"\x0f\x45\x0f")
    with pytest.raises(ProtocolError):
        jbd.decode_error_counters(b"\x00")


def test_encoder_rejects_out_of_range() -> None:
    with pytest.raises(ProtocolError):
        jbd.encode_read(0x100)
    with pytest.raises(ProtocolError):
        jbd.encode_read(-1)
    with pytest.raises(ProtocolError):
        jbd.encode_write(0x10, bytes(256))


# --- round trips ---------------------------------------------------------------------------------


@given(st.integers(0, 255))
def test_read_round_trip(register: int) -> None:
    request = jbd.parse_request(jbd.encode_read(register))
    assert request == jbd.JbdRequest(register=register, write=False, data=b"")


@given(st.integers(0, 255), st.binary(max_size=255))
def test_write_round_trip(register: int, data: bytes) -> None:
    request = jbd.parse_request(jbd.encode_write(register, data))
    assert request == jbd.JbdRequest(register=register, write=True, data=data)


@pytest.mark.parametrize(
    ("charge_on", "discharge_on", "code"),
    [(True, True, 0), (False, True, 1), (True, False, 2), (False, False, 3)],
)
def test_mosfet_control_round_trip(charge_on: bool, discharge_on: bool, code: int) -> None:
    request = jbd.parse_request(jbd.encode_mosfet_control(charge_on, discharge_on))
    assert (request.register, request.write, request.data) == (0xE1, True, bytes((0, code)))


# --- frame assembler ------------------------------------------------------------------------------


def _responses_stream() -> tuple[bytes, list[bytes]]:
    frames = [raw for marker, raw, _ in capture("JBD-SP04S034-L4S-200A-B-U.txt") if marker == "<<<"]
    return b"".join(frames), frames


def test_assembler_byte_by_byte() -> None:
    stream, frames = _responses_stream()
    assembler = jbd.FrameAssembler()
    out: list[bytes] = []
    for index in range(len(stream)):
        out += assembler.feed(stream[index : index + 1])
    assert out == frames
    assert assembler.discarded_bytes == 0
    assert assembler.checksum_errors == 0


def test_assembler_resyncs_on_garbage_and_broken_frames() -> None:
    _, frames = _responses_stream()
    broken = bytearray(frames[2])
    broken[5] ^= 0x01
    # garbage, a 0xDD that claims a long frame, a frame with a bad checksum, and a lost end byte
    noise = b"\x00\x13garbage\xdd\x03\x00\xfe\x01"
    stream = noise + frames[0] + bytes(broken) + frames[1] + frames[3][:-1] + b"\x00" + frames[4]
    assembler = jbd.FrameAssembler()
    out = assembler.feed(stream)
    assert out == [frames[0], frames[1], frames[4]]
    assert assembler.checksum_errors == 1
    assert assembler.discarded_bytes == len(noise) + len(broken) + len(frames[3])
    assert assembler.feed(frames[5]) == [frames[5]]


def test_assembler_waits_for_the_rest_and_resets() -> None:
    _, frames = _responses_stream()
    assembler = jbd.FrameAssembler()
    assert assembler.feed(frames[0][:10]) == []
    assert assembler.feed(frames[0][10:]) == [frames[0]]
    assert assembler.feed(frames[1][:3]) == []
    assembler.reset()
    assert assembler.feed(frames[2]) == [frames[2]]


def test_assembler_skips_false_starts_behind_a_waiting_candidate() -> None:
    _, frames = _responses_stream()
    # a start byte claiming 254 data bytes, a second false start, then a real frame
    stream = b"\xdd\x03\x00\xfe" + b"\xdd\x00" + frames[0]
    assembler = jbd.FrameAssembler()
    assert assembler.feed(stream) == [frames[0]]
    assert assembler.discarded_bytes == 6


def test_assembler_buffer_stays_bounded() -> None:
    assembler = jbd.FrameAssembler()
    for _ in range(50):
        assembler.feed(b"\xdd\x03\x00\xff" + bytes(range(200)))
    assert len(assembler._buffer) <= jbd.MAX_FRAME_LENGTH
    assembler.feed(bytes(300))
    assert len(assembler._buffer) == 0


@settings(max_examples=300)
@given(st.lists(st.sampled_from(REAL_FRAMES) | st.binary(max_size=40), max_size=12))
def test_assembler_yields_exactly_the_valid_frames(parts: list[bytes]) -> None:
    assembler = jbd.FrameAssembler()
    out = assembler.feed(b"".join(parts))
    for frame in out:
        jbd.parse_frame(frame)  # every emitted frame is valid
    # every real frame comes out, in order, whatever garbage surrounds it
    remaining = iter(out)
    assert all(
        any(emitted == part for emitted in remaining) for part in parts if part in REAL_FRAMES
    )


# --- robustness ---------------------------------------------------------------------------------


def _only_protocol_errors(data: bytes) -> None:
    for parse in (jbd.parse_frame, jbd.parse_request):
        with contextlib.suppress(ProtocolError):
            parse(data)
    for decode in (
        jbd.decode_basic_info,
        jbd.decode_cell_voltages,
        jbd.decode_model,
        jbd.decode_error_counters,
    ):
        with contextlib.suppress(ProtocolError):
            decode(data)


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_protocol_error(data: bytes) -> None:
    _only_protocol_errors(data)
    jbd.FrameAssembler().feed(data)


@settings(max_examples=500)
@given(st.sampled_from(REAL_FRAMES), st.data())
def test_truncated_and_flipped_real_frames(frame: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(frame)))
    _only_protocol_errors(frame[:cut])
    position = data.draw(st.integers(0, len(frame) - 1))
    bit = data.draw(st.integers(0, 7))
    flipped = bytearray(frame)
    flipped[position] ^= 1 << bit
    _only_protocol_errors(bytes(flipped))
    try:
        parsed = jbd.parse_frame(bytes(flipped))
    except ProtocolError:
        return
    _only_protocol_errors(parsed.payload)


# --- JBD UP series (two packs on one RS485 bus) -------------------------------------------------

UP_CAPTURE = "JBD-UP16S020-two-devices.txt"


def up_frames() -> list[tuple[str, bytes]]:
    return [(marker, raw) for marker, raw, _ in capture(UP_CAPTURE)]


def test_up_every_frame_checks_and_requests_reencode() -> None:
    frames = up_frames()
    assert len(frames) == 200
    for marker, raw in frames:
        frame = jbd_up.parse_frame(raw)
        if marker == ">>>":
            assert frame.data == b""
            assert jbd_up.encode_frame(frame.address, frame.function, frame.start, frame.end) == raw
    assert jbd_up.encode_pack_status_request(1) == bytes.fromhex("01 78 10 00 10 A0 00 00 7F B2")
    assert jbd_up.encode_pack_status_request(2) == bytes.fromhex("02 78 10 00 10 A0 00 00 3F A7")
    assert jbd_up.encode_read(1, 0x2800, 0x280F) == bytes.fromhex("01 78 28 00 28 0F 00 00 46 4B")


def _first_response(address: int, start: int) -> jbd_up.UpFrame:
    for marker, raw in up_frames():
        frame = jbd_up.parse_frame(raw)
        if marker == "<<<" and frame.address == address and frame.start == start:
            return frame
    raise AssertionError("response not in capture")


def test_up_pack_status_address_1() -> None:
    frame = _first_response(1, jbd_up.REG_PACK_STATUS)
    assert (frame.function, frame.end, len(frame.data)) == (0x78, 0x10A0, 158)
    status = jbd_up.decode_pack_status(frame.data)
    assert status.voltage == 53.17
    assert status.current == 0.0
    assert status.soc == 60.95
    assert status.remaining_capacity == 60.95
    assert status.full_capacity == 100.0
    assert status.rated_capacity == 100.0
    assert status.mosfet_temperature == 21.0
    assert status.ambient_temperature == 22.6
    assert (status.operation_status, status.operation) == (0, "idle")
    assert status.state_of_health == 100
    assert (status.protection, status.errors, status.protection_flags) == (0, 0, [])
    assert (status.charge_fet, status.discharge_fet) == (True, True)
    assert status.cycles == 12
    assert status.charge_voltage_limit == 58.4
    assert status.charge_current_limit == 200.0
    assert status.discharge_voltage_limit == 44.8
    assert status.discharge_current_limit == 200.0
    assert status.cell_voltages == [
        3.326, 3.318, 3.331, 3.318, 3.32, 3.323, 3.328, 3.317,
        3.324, 3.323, 3.326, 3.323, 3.324, 3.325, 3.325, 3.322,
    ]  # fmt: skip
    assert round(sum(status.cell_voltages), 2) == status.voltage
    assert status.temperatures == [20.9, 20.4, 21.0, 21.2]
    assert status.model == "JBD48100000"
    reading = jbd_up.to_reading(status)
    assert (reading.soc, reading.voltage, reading.mosfet_temperature) == (60.95, 53.17, 21.0)
    assert reading.nominal_capacity == 100.0
    assert reading.cell_voltages[2] == 3.331
    assert reading.protections == frozenset()


def test_up_pack_status_address_2() -> None:
    status = jbd_up.decode_pack_status(_first_response(2, jbd_up.REG_PACK_STATUS).data)
    assert (status.voltage, status.soc, status.remaining_capacity) == (53.21, 73.0, 73.27)
    assert (status.mosfet_temperature, status.ambient_temperature) == (21.4, 23.0)
    assert status.cycles == 2
    assert (status.charge_current_limit, status.discharge_current_limit) == (100.0, 100.0)
    assert status.cell_voltages == [
        3.322, 3.327, 3.323, 3.329, 3.327, 3.324, 3.324, 3.328,
        3.323, 3.326, 3.328, 3.324, 3.327, 3.326, 3.328, 3.325,
    ]  # fmt: skip
    assert status.temperatures == [21.4, 21.3, 22.0, 21.8]
    assert status.model == "JBD48100000"


def test_up_clock_follows_the_capture_timestamps() -> None:
    clocks = []
    for marker, raw in up_frames():
        frame = jbd_up.parse_frame(raw)
        if marker == "<<<" and frame.start == jbd_up.REG_CLOCK:
            clocks.append(jbd_up.decode_clock(frame.data))
    # logged at 17:06:54.853, 17:07:34.850, ... : the BMS clock runs about a second ahead
    assert clocks == [
        dt.datetime(2026, 6, 6, 17, minute, second)
        for minute, second in (
            (6, 56),
            (7, 36),
            (8, 16),
            (8, 56),
            (9, 36),
            (10, 16),
            (10, 56),
            (11, 36),
        )
    ]


def test_up_protection_and_operation_names() -> None:
    data = bytearray(_first_response(1, jbd_up.REG_PACK_STATUS).data)
    data[24:28] = (1 << 5 | 1 << 4 | 1 << 18 | 1 << 26).to_bytes(4, "big")
    data[20:22] = (7).to_bytes(2, "big")
    data[4:8] = (305_000).to_bytes(4, "big")
    status = jbd_up.decode_pack_status(bytes(data))
    assert status.protection_flags == ["charge_overcurrent", "frontend_error", "short_circuit"]
    assert status.operation == "unknown"
    assert status.current == 50.0
    assert jbd_up.to_reading(status).power == 2658.5


def test_up_short_model_and_errors() -> None:
    data = _first_response(1, jbd_up.REG_PACK_STATUS).data
    assert jbd_up.decode_pack_status(data[:120]).model is None
    for cut in (0, 69, 100, 108):
        with pytest.raises(ProtocolError):
            jbd_up.decode_pack_status(data[:cut])
    with pytest.raises(ProtocolError):
        jbd_up.decode_clock(bytes(11))
    with pytest.raises(ProtocolError):
        jbd_up.decode_clock(bytes(12))
    good = jbd_up.encode_pack_status_request(1)
    for bad in (good[:9], good + b"\x00", good[:-1] + b"\x00"):
        with pytest.raises(ProtocolError):
            jbd_up.parse_frame(bad)
    with pytest.raises(ProtocolError):
        jbd_up.encode_frame(0x100, 0x78, 0, 0)
    with pytest.raises(ProtocolError):
        jbd_up.encode_frame(1, 0x78, 0x10000, 0)


@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFF), st.binary(max_size=64))
def test_up_round_trip(address: int, function: int, start: int, data: bytes) -> None:
    frame = jbd_up.parse_frame(jbd_up.encode_frame(address, function, start, start, data))
    assert frame == jbd_up.UpFrame(address, function, start, start, data)


UP_RAW = [raw for _, raw in up_frames()]


@settings(max_examples=300)
@given(st.sampled_from(UP_RAW), st.data())
def test_up_damaged_frames_raise_only_protocol_error(frame: bytes, data: st.DataObject) -> None:
    damaged = bytearray(frame[: data.draw(st.integers(0, len(frame)))])
    if damaged:
        damaged[data.draw(st.integers(0, len(damaged) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    for candidate in (bytes(damaged), frame[8:-2][: len(damaged)]):
        for decode in (jbd_up.parse_frame, jbd_up.decode_pack_status, jbd_up.decode_clock):
            with contextlib.suppress(ProtocolError):
                decode(candidate)


def _up_stream() -> bytes:
    return b"".join(UP_RAW)


def test_up_assembler_cuts_the_capture_per_pack() -> None:
    """The whole two-pack bus, requests and replies as one stream, fed in odd pieces."""
    for address, replies in ((1, 8), (2, 8)):
        assembler = jbd_up.FrameAssembler(address)
        stream = _up_stream()
        frames: list[bytes] = []
        for start in range(0, len(stream), 37):
            frames += assembler.feed(stream[start : start + 37])
        assert all(frame[0] == address for frame in frames)
        status = [frame for frame in frames if jbd_up.is_status_reply(frame, address)]
        assert len(status) == replies
        assert assembler.checksum_errors == 0
        assert all(jbd_up.parse_frame(frame).start == jbd_up.REG_PACK_STATUS for frame in status)
    # The request, as an RS485 adapter echoes it, is a frame but not the answer.
    request = jbd_up.encode_pack_status_request(1)
    assert jbd_up.FrameAssembler(1).feed(request) == [request]
    assert not jbd_up.is_status_reply(request, 1)
    clock_reply = next(raw for raw in UP_RAW if raw[2:4] == b"\x28\x00" and len(raw) > 10)
    assert not jbd_up.is_status_reply(clock_reply, 1)


def test_up_assembler_skips_noise_and_impossible_lengths() -> None:
    reply = next(raw for raw in UP_RAW if jbd_up.is_status_reply(raw, 1))
    assembler = jbd_up.FrameAssembler(1)
    bogus_length = b"\x01\x78\x10\x00\x10\xa0\xff\xff"  # 64 KiB announced: noise
    corrupt = bytearray(reply)
    corrupt[-1] ^= 0x5A
    assert assembler.feed(bogus_length + bytes(corrupt) + reply[:50]) == []
    assert assembler.feed(reply[50:]) == [reply]
    assert assembler.checksum_errors == 1
    with pytest.raises(ProtocolError):
        jbd_up.FrameAssembler(256)


@settings(max_examples=300)
@given(noise=st.binary(max_size=400), cut=st.integers(0, 400), address=st.integers(0, 255))
def test_up_assembler_on_random_bytes(noise: bytes, cut: int, address: int) -> None:
    """Whatever the line carries, the assembler only hands out CRC-valid frames."""
    assembler = jbd_up.FrameAssembler(address)
    for frame in assembler.feed(noise[:cut]) + assembler.feed(noise[cut:]):
        parsed = jbd_up.parse_frame(frame)
        assert parsed.address == address
        with contextlib.suppress(ProtocolError):
            jbd_up.to_reading(jbd_up.decode_pack_status(parsed.data))


def test_up_capture_reading_and_identity_values() -> None:
    """What the integration shows for the capture's pack 2 (stated values from its bytes)."""
    status = jbd_up.decode_pack_status(_first_response(2, jbd_up.REG_PACK_STATUS).data)
    reading = jbd_up.to_reading(status)
    assert (reading.soc, reading.voltage, reading.current, reading.power) == (73.0, 53.21, 0, 0)
    assert (reading.remaining_capacity, reading.nominal_capacity) == (73.27, 100.0)
    assert (reading.cycles, reading.mosfet_temperature) == (2, 21.4)
    assert reading.temperatures == (21.4, 21.3, 22.0, 21.8)
    assert (reading.charge_fet, reading.discharge_fet) == (True, True)
    assert (reading.model, reading.serial, len(reading.cell_voltages)) == ("JBD48100000", None, 16)
    assert (reading.min_cell_voltage, reading.max_cell_voltage) == (3.322, 3.329)
    assert status.rated_capacity == 100.0


# --- shared helpers -------------------------------------------------------------------------------


def test_crc16_modbus_check_value() -> None:
    assert bms_common.crc16_modbus(b"123456789") == 0x4B37
    assert bms_common.crc16_modbus(b"") == 0xFFFF


def test_bit_helpers_and_power() -> None:
    assert bms_common.bit_names(0b1011, ["a", None, "c", "d"]) == ["a", "d"]
    assert bms_common.bit_flags(0b101, 4) == (True, False, True, False)
    assert bms_common.power_of(None, 1.0) is None
    assert bms_common.power_of(52.0, -10.5) == -546.0
    empty = bms_common.BmsReading()
    assert (empty.min_cell_voltage, empty.max_cell_voltage) == (None, None)
    assert empty.protections == frozenset()
