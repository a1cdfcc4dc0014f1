"""JK-B/BD ``4E 57`` codec against the captures in testdata/jk/jk_serial.json, and fuzzed."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.sma_victron_bridge.protocols import ProtocolError, jk_serial
from custom_components.sma_victron_bridge.protocols.bms_common import (
    CELL_IMBALANCE,
    CELL_OVERVOLTAGE,
    CHARGE_OVERTEMPERATURE,
    CHARGE_UNDERTEMPERATURE,
    DISCHARGE_OVERTEMPERATURE,
    DISCHARGE_UNDERTEMPERATURE,
    SOC_LOW,
)

TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "jk"
CAPTURES: list[dict[str, Any]] = json.loads((TESTDATA / "jk_serial.json").read_text())
REPLIES = [entry for entry in CAPTURES if entry["frame"] == "jk_serial_read_all_response"]
REAL_FRAMES = [bytes.fromhex(entry["hex"]) for entry in CAPTURES]


def close(a: float | None, b: float) -> bool:
    return a is not None and math.isclose(a, b, abs_tol=1e-9)


def test_the_captures_are_all_here() -> None:
    assert len(CAPTURES) == 4
    assert len(REPLIES) == 3


def test_read_all_request_is_the_captured_one() -> None:
    (request,) = [entry for entry in CAPTURES if entry["frame"] == "jk_serial_read_all_request"]
    raw = bytes.fromhex(request["hex"])
    assert jk_serial.encode_read_all_request() == raw
    frame = jk_serial.parse_frame(raw)
    expected = request["expected"]
    assert frame.command == expected["function"] == jk_serial.CMD_READ_ALL
    assert frame.source == expected["frame_source"]
    assert frame.record_number == expected["record_number"]
    assert raw[-5] == expected["end_flag"]
    assert frame.is_request
    assert frame.records == {}
    assert frame.data == b"\x00"


@pytest.mark.parametrize("entry", REPLIES, ids=[entry["name"] for entry in REPLIES])
def test_every_reply_decodes_to_its_stated_values(entry: dict[str, Any]) -> None:
    expected = entry["expected"]
    frame = jk_serial.parse_frame(bytes.fromhex(entry["hex"]))
    status = jk_serial.decode_status(frame)
    reading = jk_serial.to_reading(frame)
    assert len(reading.cell_voltages) == expected["cell_count"] == status.cell_count
    assert all(map(close, reading.cell_voltages, expected["cell_voltages"], strict=True))
    assert close(reading.mosfet_temperature, expected["mosfet_temperature"])
    assert reading.temperatures == (expected["temperature_1"], expected["temperature_2"])
    assert len(reading.temperatures) == expected["temperature_sensor_count"]
    assert close(reading.voltage, expected["total_voltage"])
    assert close(reading.current, expected["current"])
    assert int.from_bytes(frame.records[jk_serial.REG_CURRENT], "big") == expected["current_raw"]
    assert reading.soc == expected["soc"]
    assert reading.cycles == expected["cycles"]
    assert status.cycle_capacity == expected["total_cycle_capacity_ah"]
    assert status.alarms == expected["errors_bitmask"]
    assert reading.protections == frozenset()
    assert status.status == expected["operation_mode_bitmask"]
    assert reading.charge_fet is expected["charging_switch"]
    assert reading.discharge_fet is expected["discharging_switch"]
    assert reading.nominal_capacity == expected["nominal_capacity_ah"]
    assert status.software_version == expected["software_version"]
    assert status.protocol_version == expected["protocol_version"]
    # Nothing better than SOC x nominal capacity in the reply.
    assert close(
        reading.remaining_capacity, expected["nominal_capacity_ah"] * expected["soc"] / 100
    )
    assert close(reading.power, round(expected["total_voltage"] * expected["current"], 3))
    assert frame.frame_type == jk_serial.TYPE_REPLY
    assert frame.source == jk_serial.SOURCE_BMS


def test_identity_records() -> None:
    frame = jk_serial.parse_frame(REAL_FRAMES[2])  # BD6A17S6P 7.1.0H
    status = jk_serial.decode_status(frame)
    assert status.device_id == "Input Us"
    assert status.manufacturer == "BT3072020120000200521001"
    assert status.manufacture_date == dt.date(2021, 6, 1)
    assert status.charge_switch is True
    assert status.discharge_switch is True
    assert status.balancer_enabled is False
    reading = jk_serial.to_reading(frame, invert_current=True)
    assert reading.current == 0.69
    # A production code is no model, the app's placeholder no serial number: a second board
    # with the same placeholder must not look like this one.
    assert (reading.model, reading.serial) == (None, None)
    first = jk_serial.decode_status(jk_serial.parse_frame(REAL_FRAMES[1]))  # B2A24S20P 10.07
    assert first.manufacturer == "Input UserdaJK-B2A24S15P"
    assert (first.model, first.serial) == ("JK-B2A24S15P", None)


def test_an_owner_set_device_id_is_the_serial() -> None:
    frame = jk_serial.parse_frame(REAL_FRAMES[2])
    status = dataclasses.replace(jk_serial.decode_status(frame), device_id="PACK0007")
    assert status.serial == "PACK0007"
    assert dataclasses.replace(status, device_id="Input").serial is None


def test_manufacture_date_that_is_no_date() -> None:
    for text in (b"2213", b"22AB", b"\0\0\0\0"):
        records = jk_serial.encode_records([(jk_serial.REG_MANUFACTURE_DATE, text)])
        frame = jk_serial.parse_frame(
            jk_serial.encode_frame(jk_serial.CMD_READ_ALL, records, frame_type=1)
        )
        assert jk_serial.decode_status(frame).manufacture_date is None


def test_temperatures_below_zero_follow_the_document() -> None:
    # JK's document: above 100 is below zero, 101 = -1 °C (syssi's code would say -2).
    assert jk_serial.decode_temperature(101) == -1.0
    assert jk_serial.decode_temperature(140) == -40.0
    assert jk_serial.decode_temperature(100) == 100.0
    assert jk_serial.decode_temperature(0) == 0.0
    for celsius in (-40, -1, 0, 25, 100):
        raw = int.from_bytes(jk_serial.encode_temperature(celsius), "big")
        assert jk_serial.decode_temperature(raw) == celsius


def test_current_encodings() -> None:
    # Protocol version 1: sign-magnitude, bit 15 = charging (the document's 20 A examples).
    assert jk_serial.decode_current(0x87D0, 1) == 20.0
    assert jk_serial.decode_current(0x07D0, 1) == -20.0
    # Version 0 (or no 0xC0): (10000 - raw) x 10 mA, + = charging (the document's examples).
    assert jk_serial.decode_current(11000, 0) == -10.0
    assert jk_serial.decode_current(9500, None) == 5.0
    for amps in (-327.67, -0.01, 0.0, 12.34, 99.99):
        for version in (0, 1):
            raw = int.from_bytes(jk_serial.encode_current(amps, protocol_version=version), "big")
            assert jk_serial.decode_current(raw, version) == amps


def test_alarm_bits_name_protections() -> None:
    records = jk_serial.encode_records(
        [(jk_serial.REG_ALARMS, (1 << 0 | 1 << 7 | 1 << 9 | 1 << 10 | 1 << 12).to_bytes(2, "big"))]
    )
    frame = jk_serial.parse_frame(
        jk_serial.encode_frame(
            jk_serial.CMD_READ_ALL, records, frame_type=jk_serial.TYPE_REPLY, source=0
        )
    )
    reading = jk_serial.to_reading(frame)
    assert reading.protections == {
        SOC_LOW,
        CELL_IMBALANCE,
        CHARGE_UNDERTEMPERATURE,
        DISCHARGE_UNDERTEMPERATURE,
        CELL_OVERVOLTAGE,
    }
    # A reply without the usual records has no values rather than invented ones.
    assert reading.voltage is None
    assert reading.soc is None
    assert reading.remaining_capacity is None
    assert reading.charge_fet is None
    assert reading.cell_voltages == ()
    over = jk_serial.to_reading(
        jk_serial.parse_frame(
            jk_serial.encode_frame(
                jk_serial.CMD_READ_ALL,
                jk_serial.encode_records([(jk_serial.REG_ALARMS, (1 << 8).to_bytes(2, "big"))]),
                frame_type=jk_serial.TYPE_UPLOAD,
            )
        )
    )
    assert over.protections == {CHARGE_OVERTEMPERATURE, DISCHARGE_OVERTEMPERATURE}


def test_write_requests() -> None:
    password, charge_off, discharge_on = jk_serial.encode_switch_requests(
        charge=False, discharge=True
    )
    assert jk_serial.parse_frame(password).command == jk_serial.CMD_PASSWORD
    parsed = jk_serial.parse_frame(charge_off)
    assert (parsed.command, parsed.data) == (jk_serial.CMD_WRITE, b"\xab\x00")
    assert len(charge_off) == 22  # as syssi's jk_modbus sends it
    assert jk_serial.parse_frame(discharge_on).data == b"\xac\x01"
    assert jk_serial.encode_switch_requests(charge=None, discharge=None) == []
    with pytest.raises(ProtocolError, match="does not take"):
        jk_serial.encode_write_request(jk_serial.REG_CHARGE_SWITCH, b"\x00\x01")
    with pytest.raises(ProtocolError, match="does not take"):
        jk_serial.encode_records([(jk_serial.REG_SOC, b"\x00\x01")])
    with pytest.raises(ProtocolError, match="triples"):
        jk_serial.encode_records([(jk_serial.REG_CELLS, b"\x01\x02")])
    with pytest.raises(ProtocolError, match="too long"):
        jk_serial.encode_frame(jk_serial.CMD_WRITE, bytes(2000))
    with pytest.raises(ProtocolError, match="no status"):
        jk_serial.decode_status(jk_serial.parse_frame(password))


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"NW\x00", "too short"),
        (b"XX" + REAL_FRAMES[0][2:], "start with"),
        (REAL_FRAMES[0][:-1] + b"\x00", "checksum"),
        (REAL_FRAMES[0][:2] + b"\x00\x14" + REAL_FRAMES[0][4:], "length field"),
        (REAL_FRAMES[0][:-5] + b"\x00" + REAL_FRAMES[0][-4:], "end flag"),
        (jk_serial.encode_frame(6, b"\x79", frame_type=1), "without its length"),
        (jk_serial.encode_frame(6, b"\x79\x04\x01\x00\x00\x00", frame_type=1), "multiple of 3"),
        (jk_serial.encode_frame(6, b"\x88\x00", frame_type=1), "unknown"),
        (jk_serial.encode_frame(6, b"\x83\x00", frame_type=1), "cut off"),
    ],
)
def test_bad_frames_raise_protocol_error(frame: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        jk_serial.parse_frame(frame)


# --- assembler ------------------------------------------------------------------------------------


@pytest.mark.parametrize("frame", REAL_FRAMES)
def test_assembler_survives_a_split_at_every_byte(frame: bytes) -> None:
    for cut in range(len(frame) + 1):
        assembler = jk_serial.FrameAssembler()
        assert assembler.feed(frame[:cut]) + assembler.feed(frame[cut:]) == [frame]


def test_assembler_byte_by_byte_with_garbage_and_false_starts() -> None:
    assembler = jk_serial.FrameAssembler()
    stream = b"\x00NW\xff\xffNW\x00\x20junk" + REAL_FRAMES[1] + b"NW" + REAL_FRAMES[3]
    frames = [frame for byte in stream for frame in assembler.feed(bytes((byte,)))]
    assert frames == [REAL_FRAMES[1], REAL_FRAMES[3]]
    assert assembler.discarded_bytes > 0
    broken = bytearray(REAL_FRAMES[2])
    broken[40] ^= 0x01
    assert assembler.feed(bytes(broken)) == []
    assert assembler.checksum_errors == 1


@settings(max_examples=200)
@given(st.lists(st.sampled_from(REAL_FRAMES) | st.binary(max_size=40), max_size=10), st.data())
def test_assembler_yields_the_valid_frames_at_any_split(
    parts: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(parts)
    assembler = jk_serial.FrameAssembler()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    frames: list[bytes] = []
    previous = 0
    for cut in [*cuts, len(stream)]:
        frames += assembler.feed(stream[previous:cut])
        previous = cut
    real = [part for part in parts if part in REAL_FRAMES]
    # Every real frame comes out, in order (random bytes may only add frames before them).
    iterator = iter(frames)
    assert all(any(frame == wanted for frame in iterator) for wanted in real)
    for frame in frames:
        jk_serial.parse_frame(frame)


# --- fuzzing --------------------------------------------------------------------------------------


def _decode(data: bytes) -> None:
    frame = jk_serial.parse_frame(data)
    if not frame.is_request:
        jk_serial.to_reading(frame)


@settings(max_examples=500)
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        _decode(b"NW" + data)


@settings(max_examples=500)
@given(st.sampled_from(REAL_FRAMES), st.data())
def test_truncation_and_bit_flips_raise_only_protocol_error(
    frame: bytes, data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(frame)))
    flips = data.draw(st.lists(st.integers(0, len(frame) * 8 - 1), max_size=4))
    mutated = bytearray(frame[:cut])
    for bit in flips:
        if bit // 8 < len(mutated):
            mutated[bit // 8] ^= 1 << bit % 8
    with contextlib.suppress(ProtocolError):
        _decode(bytes(mutated))


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(st.sampled_from(sorted(jk_serial.RECORD_SIZES)), st.binary(max_size=30)),
        max_size=30,
    )
)
def test_any_well_formed_reply_decodes(records: list[tuple[int, bytes]]) -> None:
    """Records of the right size in any order and with any value decode without error."""
    sizes = jk_serial.RECORD_SIZES
    pairs = [
        (register, value.ljust(sizes[register], b"\0")[: sizes[register]])
        for register, value in records
    ]
    records_data = jk_serial.encode_records(pairs)
    frame = jk_serial.encode_frame(jk_serial.CMD_READ_ALL, records_data, frame_type=1)
    jk_serial.to_reading(jk_serial.parse_frame(frame))
