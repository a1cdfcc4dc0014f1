"""JK02 300-byte frames (24S and 32S) against every JK02 capture in testdata/jk, and fuzzed.

The frames come from jk_ble.json (Bluetooth) and jk_pb.json (the RS485 bus of the PB series,
where each frame is followed by a Modbus acknowledgement that is cut off here).
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.sma_victron_bridge.protocols import ProtocolError, jk02
from custom_components.sma_victron_bridge.protocols.bms_common import (
    CELL_OVERVOLTAGE,
    CHARGE_OVERCURRENT,
    FRONTEND_ERROR,
    SHORT_CIRCUIT,
)

TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "jk"
ENTRIES: list[dict[str, Any]] = json.loads((TESTDATA / "jk_ble.json").read_text()) + json.loads(
    (TESTDATA / "jk_pb.json").read_text()
)


def frame_of(entry: dict[str, Any]) -> bytes:
    raw = bytes.fromhex(entry["hex"])
    # PB bus captures carry the 8-byte acknowledgement behind the frame.
    return raw[: jk02.FRAME_LENGTH] if entry["name"].startswith("jk_pb_") else raw


CELL_INFO = [
    entry
    for entry in ENTRIES
    if entry["frame"] in ("jk02_24s_cell_info", "jk02_32s_cell_info", "jk_pb_response_cell_info")
    and entry["expected"].get("checksum_valid", True)
]
DEVICE_INFO = [
    entry
    for entry in ENTRIES
    if entry["frame"] in ("jk02_device_info", "jk_pb_response_device_info")
]
SETTINGS = [
    entry for entry in ENTRIES if entry["frame"] in ("jk02_settings", "jk_pb_response_settings")
]
REAL_FRAMES = [frame_of(entry) for entry in CELL_INFO + DEVICE_INFO + SETTINGS]


def layout_of(entry: dict[str, Any]) -> str:
    return jk02.LAYOUT_24S if entry["frame"] == "jk02_24s_cell_info" else jk02.LAYOUT_32S


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, abs_tol=1e-6)


def test_the_captures_are_all_here() -> None:
    assert len(CELL_INFO) == 13
    assert len(DEVICE_INFO) == 12
    assert len(SETTINGS) == 5
    assert {len(frame) for frame in REAL_FRAMES} == {300, 320}


@pytest.mark.parametrize("entry", CELL_INFO, ids=[entry["name"] for entry in CELL_INFO])
def test_every_cell_info_decodes_to_its_stated_values(entry: dict[str, Any]) -> None:
    expected = entry["expected"]
    frame = frame_of(entry)
    info = jk02.decode_cell_info(frame, layout_of(entry))
    reading = jk02.parse_cell_info(frame, layout_of(entry))
    assert len(reading.cell_voltages) == expected["cell_count"]
    assert all(map(close, reading.cell_voltages, expected["cell_voltages"], strict=True))
    assert close(reading.min_cell_voltage or 0.0, expected["min_cell_voltage"])
    assert close(reading.max_cell_voltage or 0.0, expected["max_cell_voltage"])
    assert close(reading.voltage or 0.0, expected["total_voltage"])
    assert close(reading.current or 0.0, expected["current"])
    battery = [expected["temperature_1"], expected["temperature_2"]]
    if layout_of(entry) == jk02.LAYOUT_32S:
        battery += [expected["temperature_3"], expected["temperature_4"]]
        # Byte 254 ("temperature 5" for syssi) is the MOSFET's second sensor, or 0 where the
        # firmware (11.17) does not fill it.
        assert expected["temperature_5"] in (expected["mosfet_temperature"], 0.0)
    assert reading.temperatures == tuple(battery)
    assert close(reading.mosfet_temperature or 0.0, expected["mosfet_temperature"])
    assert info.errors == expected["errors_bitmask"]
    assert reading.protections == frozenset()
    assert close(info.balance_current, expected["balance_current"])
    assert reading.soc == expected["soc"]
    assert close(reading.remaining_capacity or 0.0, expected["capacity_remaining"])
    assert close(reading.nominal_capacity or 0.0, expected["nominal_capacity"])
    assert reading.cycles == expected["cycles"]
    assert close(info.cycle_capacity, expected["total_cycle_capacity"])
    assert info.soh == expected["soh"]
    assert info.runtime_s == expected["total_runtime_s"]
    assert reading.charge_fet is expected["charging_mosfet"]
    assert reading.discharge_fet is expected["discharging_mosfet"]
    assert reading.balancing == ()
    assert jk02.parse_cell_info(frame, layout_of(entry), invert_current=True).current == (
        -(reading.current or 0.0) + 0.0
    )


def test_the_corrupt_capture_is_rejected() -> None:
    (entry,) = [
        entry for entry in ENTRIES if entry["name"] == "jk02_32s_corrupt_cell_info_issue377"
    ]
    assert entry["expected"]["checksum_valid"] is False
    with pytest.raises(ProtocolError, match="checksum"):
        jk02.parse_cell_info(bytes.fromhex(entry["hex"]), jk02.LAYOUT_32S)


@pytest.mark.parametrize("entry", DEVICE_INFO, ids=[entry["name"] for entry in DEVICE_INFO])
def test_every_device_info_decodes_to_its_stated_values(entry: dict[str, Any]) -> None:
    expected = entry["expected"]
    info = jk02.parse_device_info(frame_of(entry))
    assert info.model == expected["vendor_id"]
    assert info.hardware_version == expected["hardware_version"]
    assert info.software_version == expected["software_version"]
    assert info.uptime_s == expected["uptime_s"]
    assert info.power_on_count == expected["power_on_count"]
    assert info.device_name == expected["device_name"]
    assert info.device_passcode == expected["device_passcode"]
    assert info.manufacturing_date == expected["manufacturing_date"]
    assert info.serial == expected["serial_number"]
    assert info.user_data == expected["user_data"]
    assert info.setup_passcode == expected["setup_passcode"]
    # The cell-info layout each capture's device would be read with.
    major = int(info.hardware_version.split(".")[0].rstrip("AHX"))
    assert jk02.layout_for(info) == ("32S" if major >= 11 else "24S")


def test_layout_for_falls_back_to_the_software_version() -> None:
    base = jk02.parse_device_info(frame_of(DEVICE_INFO[0]))
    assert jk02.layout_for(base) == jk02.LAYOUT_24S  # HW 10.XG
    odd = jk02.Jk02DeviceInfo(
        model="JK", hardware_version="V-A", software_version="11.26", uptime_s=0, power_on_count=0
    )
    assert jk02.layout_for(odd) == jk02.LAYOUT_32S
    unknown = jk02.Jk02DeviceInfo(
        model="JK", hardware_version="", software_version="", uptime_s=0, power_on_count=0
    )
    assert jk02.layout_for(unknown) == jk02.LAYOUT_24S


@pytest.mark.parametrize("entry", SETTINGS, ids=[entry["name"] for entry in SETTINGS])
def test_every_settings_frame_decodes_to_its_stated_values(entry: dict[str, Any]) -> None:
    expected = entry["expected"]
    values = jk02.parse_settings(frame_of(entry))
    names = {
        "charging_switch": "charge_switch",
        "discharging_switch": "discharge_switch",
    }
    for key, value in expected.items():
        if key in ("ack_hex", "slave_address"):
            continue
        got = getattr(values, names.get(key, key))
        assert got == value or close(got, value), key


def test_encoders_round_trip() -> None:
    for entry in CELL_INFO:
        info = jk02.decode_cell_info(frame_of(entry), layout_of(entry))
        again = jk02.decode_cell_info(
            jk02.encode_cell_info(info, layout_of(entry)), layout_of(entry)
        )
        assert again == info, entry["name"]
    for entry in DEVICE_INFO:
        device = jk02.parse_device_info(frame_of(entry))
        assert jk02.parse_device_info(jk02.encode_device_info(device)) == device
    for entry in SETTINGS:
        values = jk02.parse_settings(frame_of(entry))
        assert jk02.parse_settings(jk02.encode_settings(values)) == values


def test_error_bits_name_protections() -> None:
    info = jk02.Jk02CellInfo(
        cell_voltages=(3.3,) * 4,
        voltage=13.2,
        current=0.0,
        temperatures=(20.0, 21.0),
        mosfet_temperature=25.0,
        errors=1 << 4 | 1 << 6 | 1 << 7 | 1 << 10 | 1 << 20,
    )
    for layout in (jk02.LAYOUT_24S, jk02.LAYOUT_32S):
        reading = jk02.parse_cell_info(jk02.encode_cell_info(info, layout), layout)
        assert reading.protections == {
            CELL_OVERVOLTAGE,
            CHARGE_OVERCURRENT,
            SHORT_CIRCUIT,
            FRONTEND_ERROR,
        }
    # 24S has a 16-bit error word: bit 20 does not fit, 32S keeps it.
    assert jk02.decode_cell_info(jk02.encode_cell_info(info, "32S"), "32S").errors >> 20 & 1
    assert not jk02.decode_cell_info(jk02.encode_cell_info(info, "24S"), "24S").errors >> 16


def test_bad_frames() -> None:
    frame = frame_of(CELL_INFO[0])
    with pytest.raises(ProtocolError, match="300"):
        jk02.check_frame(frame[:299])
    with pytest.raises(ProtocolError, match="start with"):
        jk02.check_frame(b"\x00" + frame[1:])
    with pytest.raises(ProtocolError, match="type"):
        jk02.parse_device_info(frame)
    with pytest.raises(ProtocolError, match="layout"):
        jk02.parse_cell_info(frame, "16S")


# --- assembler --------------------------------------------------------------------------------


def test_assembler_split_at_every_byte_and_junk_between() -> None:
    first, second = REAL_FRAMES[0], REAL_FRAMES[-1]
    stream = b"AT\r\n" + first + b"\x55\xaa\xeb\x90junk" + second[:300]
    for cut in range(0, len(stream) + 1, 7):
        assembler = jk02.FrameAssembler()
        assert assembler.feed(stream[:cut]) + assembler.feed(stream[cut:]) == [
            first[:300],
            second[:300],
        ]


# --- fuzzing ----------------------------------------------------------------------------------


def _decode_all(data: bytes) -> None:
    for layout in (jk02.LAYOUT_24S, jk02.LAYOUT_32S):
        with contextlib.suppress(ProtocolError):
            jk02.parse_cell_info(data, layout)
    with contextlib.suppress(ProtocolError):
        jk02.layout_for(jk02.parse_device_info(data))
    with contextlib.suppress(ProtocolError):
        jk02.parse_settings(data)


@settings(max_examples=300)
@given(st.integers(0, 4), st.binary(min_size=296, max_size=316))
def test_random_frames_raise_only_protocol_error(frame_type: int, body: bytes) -> None:
    """Random bodies behind a real header, with the checksum made right half of the time."""
    frame = bytearray(jk02.HEADER + bytes((frame_type,)) + body)
    if body[0] & 1 and len(frame) >= jk02.FRAME_LENGTH:
        frame[299] = jk02.checksum(frame)
    _decode_all(bytes(frame))


@settings(max_examples=300)
@given(st.sampled_from(REAL_FRAMES), st.data())
def test_truncation_and_bit_flips_raise_only_protocol_error(
    frame: bytes, data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(frame)))
    mutated = bytearray(frame[:cut])
    for bit in data.draw(st.lists(st.integers(0, len(frame) * 8 - 1), max_size=4)):
        if bit // 8 < len(mutated):
            mutated[bit // 8] ^= 1 << bit % 8
    if data.draw(st.booleans()) and len(mutated) >= jk02.FRAME_LENGTH:
        mutated[299] = jk02.checksum(mutated)  # a flip the checksum does not catch
    _decode_all(bytes(mutated))
