"""ANT codecs against the captures in testdata/ant (legacy 140-byte frames and 7E A1 frames)."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
import re

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.sma_victron_bridge.protocols import ProtocolError, ant, bms_common

TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "ant"


def capture(name: str) -> list[bytes]:
    """One frame per non-empty line, bytes written as space-separated hex."""
    lines = (TESTDATA / name).read_text().splitlines()
    return [bytes.fromhex(line) for line in lines if line.strip()]


LEGACY_2019 = capture("model2019-req-dbdb00000000.txt")
LEGACY_2021_SERIAL = capture("model2021-req-5a5a00000101.txt")
LEGACY_2021 = capture("model2021-req-dbdb00000000.txt")
NEW_2021 = capture("model2021-req-7ea1010000be1855aa55.txt")
ALL_FRAMES = LEGACY_2019 + LEGACY_2021_SERIAL + LEGACY_2021 + NEW_2021


def test_capture_sizes() -> None:
    assert (len(LEGACY_2019), len(LEGACY_2021_SERIAL), len(LEGACY_2021), len(NEW_2021)) == (
        9,
        5,
        5,
        4,
    )


def test_requests_named_by_the_capture_files_are_what_the_encoders_build() -> None:
    encoders = {
        "dbdb00000000": ant.LEGACY_STATUS_REQUEST,
        "5a5a00000101": ant.LEGACY_STATUS_REQUEST_SERIAL,
        "7ea1010000be1855aa55": ant.encode_status_request(),
    }
    names = sorted(path.name for path in TESTDATA.glob("*.txt"))
    assert len(names) == 4
    for name in names:
        match = re.search(r"req-([0-9a-f]+)\.txt$", name)
        assert match is not None
        assert encoders[match.group(1)] == bytes.fromhex(match.group(1)), name


def test_new_protocol_crc_rule_matches_the_status_request() -> None:
    request = bytes.fromhex("7E A1 01 00 00 BE 18 55 AA 55")
    # CRC-16/Modbus over A1 .. BE, stored low byte first
    assert bms_common.crc16_modbus(request[1:6]) == 0x5518
    assert ant.encode_request(0x01, 0x0000, 0xBE) == request
    assert ant.parse_request(request) == ant.AntRequest(function=0x01, address=0, length=0xBE)


# --- legacy frames ------------------------------------------------------------------------------


def test_legacy_checksum_rule_holds_for_every_frame() -> None:
    for frame in LEGACY_2019 + LEGACY_2021_SERIAL + LEGACY_2021:
        assert len(frame) == 140
        assert ant.legacy_checksum(frame) == int.from_bytes(frame[138:140], "big")


def test_legacy_2019_first_frame() -> None:
    status = ant.decode_legacy_status(LEGACY_2019[0])
    assert status.voltage == 48.8
    assert status.cell_count == 14
    assert status.cell_voltages == [
        3.498, 3.484, 3.492, 3.47, 3.484, 3.472, 3.508,
        3.479, 3.509, 3.509, 3.496, 3.473, 3.486, 3.468,
    ]  # fmt: skip
    # wire value +80 (ANT counts discharge as positive) -> 8.0 A discharging
    assert status.current == -8.0
    assert status.soc == 41
    assert status.nominal_capacity == 170.0
    assert status.remaining_capacity == 68.769939
    assert status.cycle_capacity == 11109.391
    assert status.uptime == 16386097
    # Words 91 and 93 are the board's MOSFET and balancer sensors, 95-101 the pack's T1-T4.
    assert status.temperatures == [21.0, 21.0, 21.0, 21.0]
    assert status.mosfet_temperature == 22.0
    assert status.balancer_temperature == 21.0
    assert (status.charge_mosfet_status, status.discharge_mosfet_status) == (1, 1)
    assert status.balancer_status == 0
    assert status.power == -390.0
    assert status.balance == 0
    assert (status.charge_fet, status.discharge_fet) == (True, True)
    assert status.protections == frozenset()
    assert status.state_of_health is None


def test_legacy_2019_current_and_power_agree_in_sign_and_size() -> None:
    statuses = [ant.decode_legacy_status(frame) for frame in LEGACY_2019]
    assert [s.current for s in statuses] == [-8.0, -7.9, -8.0, -8.0, -7.9, -8.0, -8.0, -8.0, -12.0]
    assert [s.power for s in statuses] == [
        -390.0, -385.0, -390.0, -390.0, -385.0, -390.0, -390.0, -390.0, -582.0,
    ]  # fmt: skip
    for status in statuses:
        assert status.power == pytest.approx(status.voltage * status.current, rel=0.01)
        assert sum(status.cell_voltages) == pytest.approx(status.voltage, abs=0.1)
    assert statuses[-1].voltage == 48.6


def test_legacy_2021_frames() -> None:
    serial = ant.decode_legacy_status(LEGACY_2021_SERIAL[0])
    assert serial.voltage == 63.7
    assert serial.cell_count == 16
    assert serial.cell_voltages == [
        3.983, 3.983, 3.982, 3.981, 3.981, 3.983, 3.984, 3.984,
        3.982, 3.984, 3.983, 3.98, 3.98, 3.982, 3.981, 3.983,
    ]  # fmt: skip
    assert (serial.current, serial.power, serial.soc) == (0.0, 0.0, 84)
    assert serial.nominal_capacity == 234.0
    assert serial.remaining_capacity == 195.358798
    assert serial.cycle_capacity == 275.682
    assert serial.uptime == 1554278
    # MOSFET 23 °C and balancer 25 °C run warmer than the pack's two sensors (21 and 22 °C);
    # T3 and T4 are unplugged and read -40 in every frame of both 2021 captures.
    assert (serial.mosfet_temperature, serial.balancer_temperature) == (23.0, 25.0)
    assert serial.temperatures == [21.0, 22.0, -40.0, -40.0]
    assert (serial.charge_mosfet_status, serial.discharge_mosfet_status) == (1, 1)

    board = [ant.decode_legacy_status(frame) for frame in LEGACY_2021]
    assert [s.uptime for s in board] == [1554640, 1554687, 1554707, 1554739, 1554762]
    assert board[0].remaining_capacity == 195.268856
    assert all(s.voltage == 63.7 and s.soc == 84 and s.cell_count == 16 for s in board)


def test_legacy_to_reading() -> None:
    reading = ant.to_reading(ant.decode_legacy_status(LEGACY_2019[0]))
    assert reading.soc == 41.0
    assert (reading.voltage, reading.current, reading.power) == (48.8, -8.0, -390.0)
    assert (reading.remaining_capacity, reading.nominal_capacity) == (68.769939, 170.0)
    assert reading.cycles is None
    assert len(reading.cell_voltages) == 14
    assert reading.min_cell_voltage == 3.468
    assert reading.temperatures == (21.0, 21.0, 21.0, 21.0)
    assert reading.mosfet_temperature == 22.0
    assert reading.balancing == (False,) * 14
    assert (reading.charge_fet, reading.discharge_fet) == (True, True)
    assert reading.protections == frozenset()


def test_legacy_board_temperatures_never_count_as_battery_temperatures() -> None:
    for frame in LEGACY_2021_SERIAL + LEGACY_2021:
        status = ant.decode_legacy_status(frame)
        assert (status.mosfet_temperature, status.balancer_temperature) == (23.0, 25.0)
        assert status.temperatures[0] == 21.0
        assert status.temperatures[1] in (21.0, 22.0)
        assert status.temperatures[2:] == [-40.0, -40.0]
        reading = ant.to_reading(status)
        assert reading.temperatures == tuple(status.temperatures[:2])
        assert reading.mosfet_temperature == 23.0


def _with_checksum(frame: bytearray) -> bytes:
    frame[138:140] = ant.legacy_checksum(bytes(frame)).to_bytes(2, "big")
    return bytes(frame)


def test_legacy_balance_and_protection_codes() -> None:
    frame = bytearray(LEGACY_2019[0])
    frame[132:136] = (0b101).to_bytes(4, "big")
    frame[103] = 2  # overcharge protection
    frame[104] = 12  # short circuit
    status = ant.decode_legacy_status(_with_checksum(frame))
    assert status.balance == 5
    assert status.protections == {"cell_overvoltage", "short_circuit"}
    assert (status.charge_fet, status.discharge_fet) == (False, False)
    assert ant.to_reading(status).balancing[:4] == (True, False, True, False)


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        LEGACY_2019[0][:-1],
        LEGACY_2019[0] + b"\x00",
        b"\xaa\x55\xaa\xfe" + LEGACY_2019[0][4:],
        LEGACY_2019[0][:-1] + b"\xf5",
    ],
)
def test_legacy_bad_frames(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        ant.decode_legacy_status(frame)


def test_legacy_too_many_cells() -> None:
    frame = bytearray(LEGACY_2019[0])
    frame[123] = 33
    with pytest.raises(ProtocolError, match="33 cells"):
        ant.decode_legacy_status(_with_checksum(frame))


def test_legacy_commands() -> None:
    assert bytes.fromhex("DB DB 00 00 00 00") == ant.LEGACY_STATUS_REQUEST
    assert bytes.fromhex("5A 5A 00 00 01 01") == ant.LEGACY_STATUS_REQUEST_SERIAL
    assert ant.encode_legacy_mosfet(charge=True, on=True) == (
        bytes.fromhex("A5 A5 FA 00 01 FB"),
        bytes.fromhex("A5 A5 FF 00 00 FF"),
    )
    assert ant.encode_legacy_mosfet(charge=False, on=False)[0] == bytes.fromhex("A5 A5 F9 00 00 F9")
    assert ant.parse_legacy_command(ant.LEGACY_STATUS_REQUEST_SERIAL) == ant.LegacyCommand(
        function=0x5A, address=0, value=1
    )
    for bad in (b"\xdb\xdb\x00\x00\x00", b"\xdb\x5a\x00\x00\x00\x00", b"\x5a\x5a\x00\x00\x01\x02"):
        with pytest.raises(ProtocolError):
            ant.parse_legacy_command(bad)
    with pytest.raises(ProtocolError):
        ant.encode_legacy_command(0x5A, 0, 0x10000)


@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFF))
def test_legacy_command_round_trip(function: int, address: int, value: int) -> None:
    command = ant.parse_legacy_command(ant.encode_legacy_command(function, address, value))
    assert command == ant.LegacyCommand(function, address, value)


# --- new protocol ---------------------------------------------------------------------------------


def test_new_frames_parse() -> None:
    for raw in NEW_2021:
        frame = ant.parse_frame(raw)
        assert frame.function == ant.FUNCTION_STATUS
        assert frame.address == 0
        assert len(frame.payload) == 0x8E


def test_new_status_values() -> None:
    status = ant.decode_status(ant.parse_frame(NEW_2021[0]).payload)
    assert status.battery_status == 1  # idle
    assert status.cell_count == 14
    assert status.cell_voltages == [4.113] * 14
    assert status.temperatures == [28.0, 28.0, -40.0, 28.0]
    assert status.mosfet_temperature == 28.0
    assert status.balancer_temperature == 28.0
    assert status.voltage == 57.58
    assert status.current == 0.0
    assert status.power == 0.0
    assert status.soc == 96
    assert status.state_of_health == 100
    assert status.charge_mosfet_status == 1
    assert status.discharge_mosfet_status == 2  # overdischarge protection
    assert status.balancer_status == 0
    assert status.protection == 0x02
    assert status.warning == 0x0100_0000
    assert status.nominal_capacity == 30.0
    assert status.remaining_capacity == 28.529999
    assert status.cycle_capacity == 21.256
    assert status.uptime == 1189995
    assert status.balance == 0
    assert status.total_discharged_capacity == 11.901
    assert status.total_charged_capacity == 30.612
    assert (status.charge_fet, status.discharge_fet) == (True, False)
    assert status.protections == {"cell_undervoltage"}
    assert ant.state_name(ant.DISCHARGE_MOSFET_STATES, status.discharge_mosfet_status) == (
        "overdischarge_protection"
    )
    assert round(sum(status.cell_voltages), 2) == status.voltage

    uptimes = [ant.decode_status(ant.parse_frame(raw).payload).uptime for raw in NEW_2021]
    assert uptimes == [1189995, 1189579, 1189581, 1189583]


def test_new_to_reading() -> None:
    reading = ant.to_reading(ant.decode_status(ant.parse_frame(NEW_2021[0]).payload))
    assert (reading.soc, reading.voltage, reading.current) == (96.0, 57.58, 0.0)
    assert reading.mosfet_temperature == 28.0
    assert reading.temperatures == (28.0, 28.0, 28.0)  # sensor 3 is unplugged (-40)
    assert reading.cell_voltages == (4.113,) * 14
    assert (reading.charge_fet, reading.discharge_fet) == (True, False)
    assert reading.protections == {"cell_undervoltage"}


def test_new_status_without_lifetime_totals() -> None:
    payload = ant.parse_frame(NEW_2021[0]).payload
    short = ant.decode_status(payload[: 28 + 28 + 8 + 40])
    assert short.total_charged_capacity is None
    assert short.total_discharged_capacity is None
    assert short.uptime == 1189995
    for cut in (0, 27, 28 + 28 + 8 + 39):
        with pytest.raises(ProtocolError):
            ant.decode_status(payload[:cut])


def test_status_names_and_protection_maps() -> None:
    assert ant.state_name(ant.CHARGE_MOSFET_STATES, 1) == "on"
    assert ant.state_name(ant.CHARGE_MOSFET_STATES, 11) == "unknown"
    assert ant.state_name(ant.CHARGE_MOSFET_STATES, 200) == "unknown"
    assert ant.state_name(ant.BALANCER_STATES, 4) == "automatic"
    base = ant.decode_status(ant.parse_frame(NEW_2021[0]).payload)
    charge = {
        code: dataclasses.replace(base, charge_mosfet_status=code, discharge_mosfet_status=1)
        for code in (2, 3, 5, 6, 7, 17, 18, 4)
    }
    assert {code: status.protections for code, status in charge.items()} == {
        2: {"cell_overvoltage"},
        3: {"charge_overcurrent"},
        5: {"pack_overvoltage"},
        6: {"charge_overtemperature"},
        7: {"mosfet_overtemperature"},
        17: {"charge_undertemperature"},
        18: {"cell_imbalance"},
        4: frozenset(),
    }
    discharge = dataclasses.replace(base, discharge_mosfet_status=5)
    assert discharge.protections == {"pack_undervoltage"}


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        NEW_2021[0][:9],
        NEW_2021[0][:-1],
        b"\x7e\xa2" + NEW_2021[0][2:],
        NEW_2021[0][:-2] + b"\xaa\x56",
        NEW_2021[0][:-4] + b"\x36\xe2\xaa\x55",
        NEW_2021[0][:5] + b"\x8d" + NEW_2021[0][6:],
    ],
)
def test_new_bad_frames(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        ant.parse_frame(frame)


def test_new_bad_requests() -> None:
    request = ant.encode_status_request()
    with pytest.raises(ProtocolError):
        ant.parse_request(NEW_2021[0])
    with pytest.raises(ProtocolError):
        ant.parse_request(request[:6] + b"\x19\x55" + request[8:])
    with pytest.raises(ProtocolError):
        ant.encode_request(0x100)
    with pytest.raises(ProtocolError):
        ant.encode_request(0x01, 0x10000)


@given(st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 255))
def test_new_request_round_trip(function: int, address: int, length: int) -> None:
    request = ant.parse_request(ant.encode_request(function, address, length))
    assert request == ant.AntRequest(function, address, length)


# --- robustness ---------------------------------------------------------------------------------


def _only_protocol_errors(data: bytes) -> None:
    for decode in (
        ant.decode_legacy_status,
        ant.parse_frame,
        ant.parse_request,
        ant.decode_status,
        ant.parse_legacy_command,
    ):
        with contextlib.suppress(ProtocolError):
            decode(data)


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_protocol_error(data: bytes) -> None:
    _only_protocol_errors(data)


@settings(max_examples=500)
@given(st.sampled_from(ALL_FRAMES), st.data())
def test_truncated_and_flipped_real_frames(frame: bytes, data: st.DataObject) -> None:
    _only_protocol_errors(frame[: data.draw(st.integers(0, len(frame)))])
    flipped = bytearray(frame)
    flipped[data.draw(st.integers(0, len(frame) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    _only_protocol_errors(bytes(flipped))
    payload = frame[6:-4]
    _only_protocol_errors(payload[: data.draw(st.integers(0, len(payload)))])
    damaged = bytearray(payload)
    if damaged:
        damaged[data.draw(st.integers(0, len(damaged) - 1))] = data.draw(st.integers(0, 255))
    _only_protocol_errors(bytes(damaged))
