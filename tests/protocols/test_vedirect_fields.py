"""VE.Direct field knowledge: units, enums, products, families and HEX registers."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
import struct

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.sma_victron_bridge.protocols import ProtocolError
from custom_components.sma_victron_bridge.protocols.vedirect import (
    TextParser,
    decode_hex,
    encode_hex,
)
from custom_components.sma_victron_bridge.protocols.vedirect_fields import (
    ALARM_REASONS,
    CHARGE_STATES,
    DEVICE_MODES,
    ERRORS,
    MPPT_STATES,
    OFF_REASONS,
    PRODUCTS,
    REGISTERS,
    SENSE_TEMPERATURE_RELEASE,
    SENSE_VOLTAGE_RELEASE,
    DeviceFamily,
    bit_names,
    decode_register,
    device_family,
    encode_register,
    encode_register_raw,
    enum_option,
    enum_options,
    parse_firmware,
    parse_value,
    primary_reason,
    product_name,
)

CAPTURES = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "vedirect"


def first_blocks(name: str) -> list[dict[str, str]]:
    return TextParser().feed((CAPTURES / name).read_bytes())


def convert(block: dict[str, str]) -> dict[str, object]:
    return {label: parse_value(label, raw) for label, raw in block.items()}


# --- text values from the captures -------------------------------------------------------------


def test_bluesolar_values() -> None:
    values = convert(first_blocks("bluesolar_1.23.dump")[0])
    assert values == {
        "PID": 0xA042,
        "FW": "1.23",
        "SER#": "HQ1411MYIKN",
        "V": 12.53,
        "I": 0.62,
        "VPV": 33.58,
        "PPV": 8,
        "CS": 3,
        "ERR": 0,
        "LOAD": True,
        "IL": 0.0,
        "H19": 82.72,
        "H20": 0.0,
        "H21": 11,
        "H22": 0.25,
        "H23": 119,
        "HSDS": 274,
    }
    assert product_name(0xA042) == "BlueSolar MPPT 75|15"
    assert device_family(0xA042, values) is DeviceFamily.MPPT
    assert enum_option(CHARGE_STATES, 3) == "bulk"
    assert enum_option(ERRORS, 0) == "no_error"


def test_bmv702_values() -> None:
    main, history = first_blocks("bmv702.dump")[:2]
    assert convert(main) == {
        "PID": 0x203,
        "V": 12.065,
        "I": -7.625,
        "P": -92,
        "CE": -65.473,
        "SOC": 83.9,
        "TTG": 942,
        "Alarm": False,
        "Relay": False,
        "AR": 0,
        "BMV": "700",
        "FW": "3.08",
    }
    assert convert(history) == {
        "H1": -149.322,
        "H2": -82.854,
        "H3": 0.0,
        "H4": 0,
        "H5": 0,
        "H6": -5526.294,
        "H7": 11.733,
        "H8": 16.161,
        "H9": 368003,
        "H10": 26,
        "H11": 0,
        "H12": 0,
        "H17": 68.43,
        "H18": 85.27,
    }
    assert product_name(0x203) == "BMV-700"
    assert device_family(0x203, main) is DeviceFamily.BATTERY_MONITOR
    assert primary_reason(ALARM_REASONS, 0) == "none"


def test_smartsolar_values() -> None:
    values = convert(first_blocks("smartsolar_1.39.dump")[0])
    assert values["PID"] == 0xA05F
    assert values["FW"] == "1.39"
    assert (values["V"], values["I"], values["VPV"]) == (12.81, -0.01, 0.01)
    assert values["MPPT"] == 0
    assert enum_option(MPPT_STATES, 0) == "off"
    assert product_name(0xA05F) == "SmartSolar MPPT 100|20"
    assert device_family(0xA05F, values) is DeviceFamily.MPPT


@pytest.mark.parametrize(
    ("label", "raw", "expected"),
    [
        ("V2", "13200", 13.2),
        ("V3", "-5", -0.005),
        ("VS", "12650", 12.65),
        ("VM", "6020", 6.02),
        ("I2", "1500", 1.5),
        ("I3", "-1", -0.001),
        ("DM", "-12", -1.2),
        ("SOC", "1000", 100.0),
        ("SOC", "---", None),
        ("CE", "---", None),
        ("TTG", "-1", None),
        ("TTG", "---", None),
        ("TTG", "0", 0),
        ("T", "25", 25),
        ("T", "-4", -4),
        ("T", "---", None),
        ("H15", "10500", 10.5),
        ("H16", "14800", 14.8),
        ("H13", "2", 2),
        ("AC_OUT_V", "23002", 230.02),
        ("AC_OUT_I", "12", 1.2),
        ("AC_OUT_S", "280", 280),
        ("LOAD", "OFF", False),
        ("Relay", "On", True),
        ("Alarm", "Off", False),
        ("Alarm", "maybe", None),
        ("MODE", "2", 2),
        ("WARN", "64", 64),
        ("MON", "-9", -9),
        ("OR", "0x00000001", 1),
        ("OR", "0x00000100", 0x100),
        ("OR", "zz", None),
        ("CAP_BLE", "0x00000003", 3),
        ("PID", "0xA389", 0xA389),
        ("PID", "A053", 0xA053),
        ("FW", "C208", "2.08-rc"),
        ("FW", "208", "2.08"),
        ("FW", "1", "0.01"),
        ("FW", "", None),
        ("FW", "x.y", None),
        ("FWE", "0208FF", "2.08"),
        ("FWE", "208FF", "2.08"),
        ("FWE", "020801", "2.08-beta-01"),
        ("FWE", "0208xx", None),
        ("V", "12.5", None),
        ("V", "", None),
        ("PPV", "abc", None),
        ("SER#", "HQ1328Y6TF6", "HQ1328Y6TF6"),
        ("NEWLABEL", " raw ", " raw "),
    ],
)
def test_parse_value(label: str, raw: str, expected: object) -> None:
    assert parse_value(label, raw) == expected


def test_parse_value_huge_number_is_none() -> None:
    assert parse_value("V", "9" * 400) is None


ALL_LABELS = [
    *("V", "V2", "V3", "VS", "VM", "VPV", "I", "I2", "I3", "IL", "DM", "SOC", "CE", "TTG"),
    *("T", "P", "PPV", "LOAD", "Alarm", "Relay", "AC_OUT_V", "AC_OUT_I", "AC_OUT_S"),
    *(f"H{i}" for i in range(1, 24)),
    *("CS", "ERR", "MPPT", "MODE", "OR", "AR", "WARN", "PID", "FW", "FWE", "SER#", "HSDS"),
    *("MON", "BMV", "CAP_BLE"),
]


@settings(max_examples=400, deadline=None)
@given(label=st.sampled_from(ALL_LABELS), raw=st.text(max_size=40))
def test_parse_value_never_raises(label: str, raw: str) -> None:
    value = parse_value(label, raw)
    assert value is None or isinstance(value, float | int | str | bool)


@settings(max_examples=200, deadline=None)
@given(raw=st.text(max_size=12))
def test_parse_firmware_never_raises(raw: str) -> None:
    assert parse_firmware(raw) is None or isinstance(parse_firmware(raw), str)


# --- enums -------------------------------------------------------------------------------------


def test_enum_tables_follow_the_protocol_document() -> None:
    assert CHARGE_STATES[252] == "external_control"
    assert CHARGE_STATES[245] == "starting_up"
    assert len(CHARGE_STATES) == 15
    assert len(ERRORS) == 20
    assert ERRORS[67] == "bms_connection_lost"
    assert DEVICE_MODES == {1: "charger", 2: "inverter", 4: "off", 5: "eco", 253: "hibernate"}
    assert sorted(OFF_REASONS) == [1 << bit for bit in range(9)]
    assert sorted(ALARM_REASONS) == [1 << bit for bit in range(14)]
    for table in (CHARGE_STATES, ERRORS, MPPT_STATES, DEVICE_MODES, OFF_REASONS, ALARM_REASONS):
        names = list(table.values())
        assert len(set(names)) == len(names)
        assert all(name.isidentifier() and name == name.lower() for name in names)
        assert "unknown" not in names
        assert "none" not in names


def test_enum_helpers() -> None:
    assert enum_option(CHARGE_STATES, 5) == "float"
    assert enum_option(CHARGE_STATES, 8) == "unknown"
    assert enum_option(CHARGE_STATES, None) == "unknown"
    assert enum_options(MPPT_STATES) == [
        "off",
        "voltage_current_limited",
        "mpp_tracker_active",
        "unknown",
    ]
    # "E.g. a value of 5 would indicate the presence of a low SOC alarm and a low Voltage."
    assert bit_names(ALARM_REASONS, 5) == ["low_voltage", "low_soc"]
    assert bit_names(ALARM_REASONS, None) == []
    assert bit_names(OFF_REASONS, 0x1 | 0x400) == ["no_input_power"]
    assert primary_reason(OFF_REASONS, 0x10 | 0x40) == "protection_active"
    assert primary_reason(OFF_REASONS, 0) == "none"
    assert primary_reason(OFF_REASONS, 0x8000) == "unknown"
    assert primary_reason(OFF_REASONS, None) == "unknown"
    assert primary_reason(ALARM_REASONS, 8192) == "bms_lockout"


# --- products and families ---------------------------------------------------------------------


def test_products() -> None:
    assert len(PRODUCTS) == 133  # 128 rows of the 3.28 table, 0xA048, 4 newer monitors
    assert PRODUCTS[0x0300] == "BlueSolar MPPT 70|15"
    assert PRODUCTS[0xA048] == "BlueSolar MPPT 75|50 rev2"
    assert PRODUCTS[0xA071] == "BlueSolar MPPT 150|70 rev2"
    assert PRODUCTS[0xA116] == "SmartSolar MPPT VE.Can 250/85 rev2"
    assert PRODUCTS[0xA2A4] == "Phoenix Inverter 48V 3000VA 230V"
    assert PRODUCTS[0xA347] == "Phoenix Smart IP43 Charger 24|16 (3)"
    assert PRODUCTS[0xA389] == "SmartShunt 500A/50mV"
    assert product_name(None) is None
    assert product_name(0x1234) is None


@pytest.mark.parametrize(
    ("pid", "labels", "family"),
    [
        (0x203, (), DeviceFamily.BATTERY_MONITOR),
        (0x205, (), DeviceFamily.BATTERY_MONITOR),
        (0x0300, (), DeviceFamily.MPPT),
        (0xA040, (), DeviceFamily.MPPT),
        (0xA071, (), DeviceFamily.MPPT),
        (0xA102, (), DeviceFamily.MPPT),
        (0xA116, (), DeviceFamily.MPPT),
        (0xA231, (), DeviceFamily.INVERTER),
        (0xA2A4, (), DeviceFamily.INVERTER),
        (0xA340, (), DeviceFamily.CHARGER),
        (0xA381, (), DeviceFamily.BATTERY_MONITOR),
        (0xA38B, (), DeviceFamily.BATTERY_MONITOR),
        (None, ("V", "PPV"), DeviceFamily.MPPT),
        (None, ["V", "SOC"], DeviceFamily.BATTERY_MONITOR),
        (0xFFFF, {"V": "1", "CE": "2"}, DeviceFamily.BATTERY_MONITOR),
        (None, ("AC_OUT_V",), DeviceFamily.INVERTER),
        (None, ("V", "I"), DeviceFamily.UNKNOWN),
        (None, (), DeviceFamily.UNKNOWN),
    ],
)
def test_device_family(pid: int | None, labels: object, family: DeviceFamily) -> None:
    assert device_family(pid, labels) is family  # type: ignore[arg-type]


def test_every_product_has_a_family() -> None:
    for pid in PRODUCTS:
        assert device_family(pid, ()) is not DeviceFamily.UNKNOWN


# --- HEX registers -----------------------------------------------------------------------------


def test_document_register_examples() -> None:
    # [VEHEX] §1.3: ":7F0ED009600DB" → 15.0 A, ":8F0ED0064000C" → 10.0 A.
    get_reply = decode_hex(b":7F0ED009600DB")
    assert decode_register(get_reply.register or 0, get_reply.value) == 15.0
    assert encode_hex(8, 0xEDF0, value=encode_register(0xEDF0, 10.0)) == b":8F0ED0064000C\n"
    # Async ":A0102000543": register 0x0201 (device state) = 5, float.
    state = decode_hex(b":A0102000543")
    assert enum_option(CHARGE_STATES, decode_register(0x0201, state.value)) == "float"  # type: ignore[arg-type]
    # Battery-sense forwarding examples (PROTOCOLS.md §3).
    assert encode_hex(8, 0x2002, value=encode_register(0x2002, 13.18)) == b":8022000260500\n"
    assert encode_hex(8, 0x2003, value=encode_register(0x2003, 23.50)) == b":80320002E09F3\n"
    release_v = encode_register_raw(0x2002, SENSE_VOLTAGE_RELEASE)
    release_t = encode_register_raw(0x2003, SENSE_TEMPERATURE_RELEASE)
    assert encode_hex(8, 0x2002, value=release_v) == b":8022000FFFF2D\n"
    assert encode_hex(8, 0x2003, value=release_t) == b":8032000FF7FAC\n"
    assert decode_register(0x2002, release_v) is None
    assert decode_register(0x2003, release_t) is None
    assert decode_register(0x2002, b"\x26\x05") == 13.18
    assert decode_register(0x2003, b"\x2e\x09") == 23.5


@pytest.mark.parametrize(
    ("register", "value", "expected"),
    [
        (0x0100, b"\x00\x5f\xa0\xff", 0xA05F),  # instance, product id, reserved
        (0x0100, b"\x53\xa0", 0xA053),  # firmware < 1.30
        (0x0200, b"\x04", 4),
        (0x0201, b"\xff", None),
        (0x0207, b"\x01\x00\x00\x00", 1),
        (0xEDBB, b"\x1e\x0d", 33.58),
        (0xEDBC, b"\x20\x03\x00\x00", 8.0),
        (0xEDBD, b"\x05\x00", 0.5),
        (0xEDD5, b"\xf2\x04", 12.66),
        (0xEDD7, b"\x06\x00", 0.6),
        (0xEDDA, b"\x11", 17),
        (0xEDDB, b"\x0c\xfe", -5.0),
        (0xEDEC, struct.pack("<H", 29315), 20.0),  # 293.15 K
        (0xEDEC, struct.pack("<H", 27315 - 550), -5.5),
        (0xEDEC, b"\xff\xff", None),
        (0xEDF6, struct.pack("<H", 1380), 13.8),
        (0xEDF7, struct.pack("<H", 1440), 14.4),
        (0xEDAB, b"\x04", 4),
        (0xEDA8, b"\x01", 1),
        (0x2001, struct.pack("<H", 1410), 14.1),
        (0x200A, struct.pack("<i", -12345), -12.345),
        (0x200F, b"\xc4", 0xC4),
        (0x2015, struct.pack("<H", 350), 35.0),
        (0x2027, struct.pack("<I", 123456), 1234.56),
        (0x2027, b"\xff\xff\xff\xff", None),  # no network master wrote it
        (0xED8D, struct.pack("<h", 1253), 12.53),
        (0xED8F, struct.pack("<h", -76), -7.6),
        (0xED8E, struct.pack("<h", -92), -92),
        (0x0FFF, struct.pack("<H", 8390), 83.9),
        (0x0FFE, struct.pack("<H", 942), 942),
        (0x0FFE, b"\xff\xff", None),
    ],
)
def test_decode_register(register: int, value: bytes, expected: float | None) -> None:
    assert decode_register(register, value) == expected


@pytest.mark.parametrize(
    ("register", "value"),
    [(0xEDF0, b"\x96"), (0xEDF0, b"\x96\x00\x00"), (0x0201, b""), (0x0100, b"\x01\x02\x03")],
)
def test_decode_register_wrong_length(register: int, value: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_register(register, value)


def test_unknown_register() -> None:
    with pytest.raises(ProtocolError):
        decode_register(0x1234, b"\x00")
    with pytest.raises(ProtocolError):
        encode_register(0x1234, 1.0)


@pytest.mark.parametrize(
    ("register", "value"),
    [
        (0xEDBB, 12.0),  # read-only
        (0xEDF0, -1.0),  # u16 cannot be negative
        (0xEDF0, 7000.0),  # > 6553.5 A
        (0xEDF6, math.nan),
        (0xEDF7, math.inf),
        (0x2002, 655.35),  # would be the release marker
        (0x2003, 327.67),  # would be the release marker
        (0xEDAB, 256),
    ],
)
def test_encode_register_rejects(register: int, value: float) -> None:
    with pytest.raises(ProtocolError):
        encode_register(register, value)


def test_encode_register_raw_rejects_overflow() -> None:
    with pytest.raises(ProtocolError):
        encode_register_raw(0x2003, 0x8000)


# Every sentinel [VEHEX] documents for a register in the table (plus 0x2027's all ones, the
# un32 "absent" value of the same document) must read as None, never as a huge number.
DOCUMENTED_NOT_AVAILABLE = {
    0x0201: b"\xff",
    0xEDEC: b"\xff\xff",
    0x2002: b"\xff\xff",
    0x2003: b"\xff\x7f",
    0x2027: b"\xff\xff\xff\xff",
    0x0FFE: b"\xff\xff",
}


@pytest.mark.parametrize(("register", "value"), sorted(DOCUMENTED_NOT_AVAILABLE.items()))
def test_documented_not_available(register: int, value: bytes) -> None:
    assert REGISTERS[register].not_available == int.from_bytes(value, "little")
    assert decode_register(register, value) is None


def test_register_table() -> None:
    writable = {reg.id for reg in REGISTERS.values() if reg.writable}
    assert {0xEDF0, 0xEDF6, 0xEDF7, 0xEDAB, 0x2002, 0x2003} <= writable
    assert REGISTERS[0xEDF0].size == 2
    assert REGISTERS[0x2027].size == 4
    assert REGISTERS[0xEDEC].unit == "°C"
    assert REGISTERS[0x2003].fmt == "<h"


WRITABLE_RANGES = {
    0xEDF0: (0.0, 6553.5),
    0xEDF6: (0.0, 655.34),
    0xEDF7: (0.0, 655.34),
    0x2002: (0.0, 655.34),
    0x2003: (-327.68, 327.66),
}


@settings(max_examples=300, deadline=None)
@given(
    register=st.sampled_from(sorted(WRITABLE_RANGES)),
    fraction=st.floats(min_value=0.0, max_value=1.0),
)
def test_encode_decode_round_trip(register: int, fraction: float) -> None:
    low, high = WRITABLE_RANGES[register]
    value = low + (high - low) * fraction
    decoded = decode_register(register, encode_register(register, value))
    assert decoded is not None
    assert abs(decoded - value) <= REGISTERS[register].scale / 2 + 1e-9


@settings(max_examples=300, deadline=None)
@given(register=st.sampled_from(sorted(REGISTERS)), value=st.binary(max_size=6))
def test_decode_register_random_bytes(register: int, value: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_register(register, value)
