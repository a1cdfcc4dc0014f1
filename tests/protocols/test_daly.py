"""Daly codec: the published request/response vector, every decoder, the write requests."""

from __future__ import annotations

import contextlib
import datetime as dt

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.sma_victron_bridge.protocols import ProtocolError, daly

# Louisvdw/dbus-serialbattery issue #53: a real request and the BMS's answer.
VECTOR_REQUEST = bytes.fromhex("A5 40 90 08 00 00 00 00 00 00 00 00 7D")
VECTOR_RESPONSE = bytes.fromhex("A5 01 90 08 00 72 00 00 75 30 01 EF 45")


def bms_frame(command: int, data: str) -> daly.DalyFrame:
    """A frame as the BMS (address 0x01) sends it, checksummed independently of the codec."""
    body = bytes((0xA5, 0x01, command, 0x08)) + bytes.fromhex(data)
    return daly.parse_frame(body + bytes((sum(body) % 256,)))


def test_vector_request_and_response() -> None:
    assert daly.encode_request(0x90) == VECTOR_REQUEST
    assert daly.encode_request(daly.CMD_SOC, daly.HOST_ADDRESS_RS485) == VECTOR_REQUEST
    frame = daly.parse_frame(VECTOR_RESPONSE)
    assert frame == daly.DalyFrame(address=0x01, command=0x90, data=VECTOR_RESPONSE[4:12])
    soc = daly.decode_soc(frame.data)
    assert soc == daly.DalySoc(voltage=11.4, current=0.0, soc=49.5)
    assert daly.decode_soc(frame.data, invert_current=True).current == 0.0


def test_uart_address_request() -> None:
    request = daly.encode_request(0x94, daly.HOST_ADDRESS_UART)
    assert request == bytes.fromhex("A5 80 94 08 00 00 00 00 00 00 00 00 C1")


def test_current_sign_and_invert_option() -> None:
    discharging = bms_frame(0x90, "02 0E 00 00 75 94 03 84")  # raw 30100
    assert daly.decode_soc(discharging.data) == daly.DalySoc(voltage=52.6, current=-10.0, soc=90.0)
    assert daly.decode_soc(discharging.data, invert_current=True).current == 10.0
    charging = bms_frame(0x90, "02 0E 00 00 74 CC 03 84")  # raw 29900
    assert daly.decode_soc(charging.data).current == 10.0


def test_cell_voltage_and_temperature_ranges() -> None:
    cells = daly.decode_cell_voltage_range(bms_frame(0x91, "0D 05 03 0C F5 0E 00 00").data)
    assert cells == daly.DalyCellVoltageRange(
        max_voltage=3.333, max_cell=3, min_voltage=3.317, min_cell=14
    )
    temperatures = daly.decode_temperature_range(bms_frame(0x92, "41 02 26 01 00 00 00 00").data)
    assert temperatures == daly.DalyTemperatureRange(
        max_temperature=25, max_sensor=2, min_temperature=-2, min_sensor=1
    )


def test_mosfet_status_and_status() -> None:
    mosfet = daly.decode_mosfet_status(bms_frame(0x93, "02 01 00 8A 00 01 86 A0").data)
    assert mosfet == daly.DalyMosfetStatus(
        state=2, charge_fet=True, discharge_fet=False, bms_cycles=138, remaining_capacity=100.0
    )
    assert mosfet.state_name == "discharging"
    assert daly.decode_mosfet_status(bytes.fromhex("07 00 01 00 00 00 00 00")).state_name == (
        "unknown"
    )
    status = daly.decode_status(bms_frame(0x94, "10 02 00 01 05 00 2A 00").data)
    assert status == daly.DalyStatus(
        cell_count=16,
        temperature_sensor_count=2,
        charger_connected=False,
        load_connected=True,
        dio=5,
        cycles=42,
    )


CELL_FRAMES = [
    bms_frame(0x95, "01 0C E4 0C E5 0C E6 00"),
    bms_frame(0x95, "02 0C E7 0C E8 0C E9 00"),
    bms_frame(0x95, "03 0C EA 0C EB 0C EC 00"),
    bms_frame(0x95, "04 0C ED 0C EE 0C EF 00"),
    bms_frame(0x95, "05 0C F0 0C F1 0C F2 00"),
    bms_frame(0x95, "06 0C F3 FF FF FF FF 00"),
]
CELLS = [round(3.300 + index / 1000, 3) for index in range(16)]


def test_cell_voltage_frames() -> None:
    assert daly.decode_cell_voltage_frames(CELL_FRAMES, 16) == CELLS
    assert daly.decode_cell_voltage_frames(reversed(CELL_FRAMES), 16) == CELLS
    assert daly.decode_cell_voltage_frames(CELL_FRAMES[:2], 4) == CELLS[:4]
    assert daly.decode_cell_voltage_frames([], 0) == []


def test_cell_voltage_frames_errors() -> None:
    with pytest.raises(ProtocolError, match=r"lacks values \[16\]"):
        daly.decode_cell_voltage_frames(CELL_FRAMES[:5], 16)
    with pytest.raises(ProtocolError):
        daly.decode_cell_voltage_frames([bms_frame(0x95, "00 0C E4 0C E5 0C E6 00")], 3)
    with pytest.raises(ProtocolError):
        daly.decode_cell_voltage_frames([bms_frame(0x96, "01 41 42 00 00 00 00 00")], 3)
    with pytest.raises(ProtocolError):
        daly.decode_cell_voltage_frames([daly.DalyFrame(0x01, 0x95, b"\x01")], 3)


def test_temperature_frames() -> None:
    frames = [bms_frame(0x96, "01 41 42 28 00 00 00 00")]
    assert daly.decode_temperature_frames(frames, 3) == [25, 26, 0]
    two = [*frames, bms_frame(0x96, "02 3C 00 00 00 00 00 00")]
    assert daly.decode_temperature_frames(two, 8) == [25, 26, 0, -40, -40, -40, -40, 20]


def test_balance_bitmap() -> None:
    flags = daly.decode_balance(bms_frame(0x97, "05 00 00 00 00 80 00 00").data)
    assert len(flags) == 48
    assert [index + 1 for index, flag in enumerate(flags) if flag] == [1, 3, 48]
    assert daly.decode_balance(bytes.fromhex("05 00 00 00 00 80 00 00"), 4) == (
        True,
        False,
        True,
        False,
    )
    with pytest.raises(ProtocolError):
        daly.decode_balance(bytes(8), 49)


def test_faults() -> None:
    faults = daly.decode_faults(bms_frame(0x98, "02 00 08 00 00 01 00 03").data)
    assert faults.fault_code == 3
    assert faults.names == ["cell_overvoltage_2", "discharge_overcurrent_2", "afe_fault"]
    assert faults.protections == {"cell_overvoltage", "discharge_overcurrent", "frontend_error"}
    warnings_only = daly.decode_faults(bytes.fromhex("01 00 00 00 00 00 00 00"))
    assert warnings_only.names == ["cell_overvoltage_1"]
    assert warnings_only.protections == frozenset()
    everything = daly.decode_faults(bytes.fromhex("FF FF FF FF FF FF FF 00"))
    assert len(everything.names) == 48
    assert everything.names[-1] == "low_voltage_no_charging"
    assert len(daly.FAULT_NAMES) == 56


def test_rated_capacity() -> None:
    rated = daly.decode_rated(bms_frame(0x50, "00 01 86 A0 00 00 0C E4").data)
    assert rated == daly.DalyRated(capacity=100.0, cell_voltage=3.3)


def test_write_requests() -> None:
    assert daly.encode_charge_fet(True) == bytes.fromhex("A5 40 DA 08 01 00 00 00 00 00 00 00 C8")
    assert daly.encode_charge_fet(False) == bytes.fromhex("A5 40 DA 08 00 00 00 00 00 00 00 00 C7")
    assert daly.encode_discharge_fet(False, daly.HOST_ADDRESS_UART) == bytes.fromhex(
        "A5 80 D9 08 00 00 00 00 00 00 00 00 06"
    )
    assert daly.encode_discharge_fet(True) == bytes.fromhex(
        "A5 40 D9 08 01 00 00 00 00 00 00 00 C7"
    )
    when = dt.datetime(2024, 5, 17, 12, 30, 45)
    request = daly.encode_set_soc(55.5, when)
    assert request[:12] == bytes.fromhex("A5 40 21 08 18 05 11 0C 1E 2D 02 2B")
    assert request[12] == sum(request[:12]) % 256
    assert daly.parse_frame(request).data[6:] == (555).to_bytes(2, "big")


def test_encoder_errors() -> None:
    when = dt.datetime(2024, 5, 17)
    with pytest.raises(ProtocolError):
        daly.encode_set_soc(100.1, when)
    with pytest.raises(ProtocolError):
        daly.encode_set_soc(-0.1, when)
    with pytest.raises(ProtocolError):
        daly.encode_set_soc(50, dt.datetime(1999, 1, 1))
    with pytest.raises(ProtocolError):
        daly.encode_request(0x90, data=bytes(9))
    with pytest.raises(ProtocolError):
        daly.encode_request(0x100)
    with pytest.raises(ProtocolError):
        daly.encode_request(0x90, address=-1)


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        VECTOR_RESPONSE[:-1],
        VECTOR_RESPONSE + b"\x00",
        b"\x5a" + VECTOR_RESPONSE[1:],
        VECTOR_RESPONSE[:3] + b"\x07" + VECTOR_RESPONSE[4:],
        VECTOR_RESPONSE[:-1] + b"\x46",
    ],
)
def test_bad_frames(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        daly.parse_frame(frame)


def test_split_frames() -> None:
    stream = b"".join(daly.encode_request(0x95, 0x01, frame.data) for frame in CELL_FRAMES)
    assert daly.decode_cell_voltage_frames(daly.split_frames(stream), 16) == CELLS
    with pytest.raises(ProtocolError):
        daly.split_frames(stream[:-1])


@pytest.mark.parametrize(
    "decoder",
    [
        daly.decode_soc,
        daly.decode_cell_voltage_range,
        daly.decode_temperature_range,
        daly.decode_mosfet_status,
        daly.decode_status,
        daly.decode_balance,
        daly.decode_faults,
        daly.decode_rated,
    ],
)
def test_decoders_need_eight_bytes(decoder: object) -> None:
    assert callable(decoder)
    with pytest.raises(ProtocolError):
        decoder(bytes(7))


def test_to_reading() -> None:
    reading = daly.to_reading(
        soc=daly.decode_soc(bms_frame(0x90, "02 0E 00 00 75 94 03 84").data),
        mosfet=daly.decode_mosfet_status(bytes.fromhex("02 01 00 8A 00 01 86 A0")),
        status=daly.decode_status(bytes.fromhex("10 02 00 01 05 00 2A 00")),
        cell_voltages=CELLS,
        temperatures=[25, 26],
        balance=daly.decode_balance(bytes.fromhex("05 00 00 00 00 80 00 00"), 16),
        faults=daly.decode_faults(bytes.fromhex("02 00 00 00 00 00 00 00")),
        rated=daly.decode_rated(bytes.fromhex("00 01 86 A0 00 00 0C E4")),
    )
    assert reading.soc == 90.0
    assert reading.voltage == 52.6
    assert reading.current == -10.0
    assert reading.power == -526.0
    assert reading.remaining_capacity == 100.0
    assert reading.nominal_capacity == 100.0
    assert reading.cycles == 42
    assert reading.cell_voltages == tuple(CELLS)
    assert reading.temperatures == (25.0, 26.0)
    assert reading.balancing[:4] == (True, False, True, False)
    assert (reading.charge_fet, reading.discharge_fet) == (True, False)
    assert reading.protections == {"cell_overvoltage"}
    empty = daly.to_reading()
    assert (empty.soc, empty.power, empty.charge_fet, empty.protections) == (
        None,
        None,
        None,
        frozenset(),
    )


@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=8))
def test_request_round_trip(command: int, address: int, data: bytes) -> None:
    frame = daly.parse_frame(daly.encode_request(command, address, data))
    assert frame == daly.DalyFrame(address, command, data.ljust(8, b"\x00"))


@given(st.floats(0, 100), st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2255, 12, 31)))
def test_set_soc_round_trip(soc: float, when: dt.datetime) -> None:
    data = daly.parse_frame(daly.encode_set_soc(soc, when)).data
    assert dt.datetime(2000 + data[0], *data[1:6]) == when.replace(microsecond=0)
    assert int.from_bytes(data[6:8], "big") == round(soc * 10)


DECODERS = (
    daly.decode_soc,
    daly.decode_cell_voltage_range,
    daly.decode_temperature_range,
    daly.decode_mosfet_status,
    daly.decode_status,
    daly.decode_balance,
    daly.decode_faults,
    daly.decode_rated,
)


def _only_protocol_errors(data: bytes) -> None:
    try:
        frame = daly.parse_frame(data)
    except ProtocolError:
        frame = daly.DalyFrame(0, 0, data[:8])
    for decoder in DECODERS:
        with contextlib.suppress(ProtocolError):
            decoder(frame.data)
    for count in (0, 3, 16):
        with contextlib.suppress(ProtocolError):
            daly.decode_cell_voltage_frames([frame], count)
        with contextlib.suppress(ProtocolError):
            daly.decode_temperature_frames([frame], count)
    with contextlib.suppress(ProtocolError):
        daly.split_frames(data)


@settings(max_examples=500)
@given(st.binary(max_size=30))
def test_random_bytes_raise_only_protocol_error(data: bytes) -> None:
    _only_protocol_errors(data)


@settings(max_examples=300)
@given(
    st.sampled_from(
        [VECTOR_RESPONSE, *(daly.encode_request(0x95, 1, f.data) for f in CELL_FRAMES)]
    ),
    st.data(),
)
def test_damaged_real_frames(frame: bytes, data: st.DataObject) -> None:
    damaged = bytearray(frame[: data.draw(st.integers(0, len(frame)))])
    if damaged:
        damaged[data.draw(st.integers(0, len(damaged) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    _only_protocol_errors(bytes(damaged))
