"""Tests for the Sunny Island CAN codec.

Expected bytes are worked out by hand from SMA's "Connecting Batteries with external BMS to
SUNNY ISLAND 6.0H-11" (FSS-ConnectingBat-TI-en-10, [SMA-TI]): every field little-endian, scales
from the table in section 5.3, 0x35A bit positions from the per-bit table ("Byte 1, Bit 4:
Battery Low Temp Charge arrives", ...). SI broadcast frames are built from PROTOCOLS.md section 1,
because no public capture of a Sunny Island exists.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.sma_victron_bridge.protocols import ProtocolError
from custom_components.sma_victron_bridge.protocols.sma_can import (
    BMS_FRAME_IDS,
    BMS_ITEMS,
    CHARGE_VOLTAGE_RANGE,
    CURRENT_LIMIT_RANGE,
    DISCHARGE_VOLTAGE_RANGE,
    FAULT_SOC_TIMEOUT,
    ID_ALARMS,
    ID_BATTERY,
    ID_BATTERY_INFO,
    ID_BATTERY_MEASUREMENTS,
    ID_CHARGE_LIMITS,
    ID_ENERGY,
    ID_EXTERNAL_AC,
    ID_EXTERNAL_POWER,
    ID_EXTERNAL_REACTIVE_POWER,
    ID_FREQUENCY,
    ID_INVERTER_POWER,
    ID_INVERTER_REACTIVE_POWER,
    ID_LOAD,
    ID_MANUFACTURER,
    ID_OUTPUT_AC,
    ID_QUICK_STOP,
    ID_RELAYS,
    ID_SOC,
    ID_STATUS,
    LIMITS_TIMEOUT,
    MIN_PERIOD,
    SAFE_WARNING,
    SEND_PERIOD,
    SI_FRAME_IDS,
    SOC_TIMEOUT,
    WARNING_LIMITS_TIMEOUT,
    AlarmItem,
    BmsFrameState,
    UnsafeFrameValue,
    charge_current_limit_of,
    decode_alarm_bits,
    decode_bms_frame,
    decode_si_frame,
    encode_alarm_bits,
    encode_bms_frames,
    encode_manufacturer,
    encode_si_frame,
    safe_bms_frames,
)

BASE = BmsFrameState(
    charge_voltage=56.2,
    charge_current_limit=100.0,
    discharge_current_limit=200.0,
    discharge_voltage=44.0,
    soc=87.65,
    soh=98.0,
    voltage=53.12,
    current=-12.3,
    temperature=21.5,
    alarms=0,
    warnings=0,
    manufacturer="SMA-VB",
    capacity_ah=280,
)


def _frames(**changes: object) -> dict[int, bytes]:
    return encode_bms_frames(dataclasses.replace(BASE, **changes))  # type: ignore[arg-type]


# --- constants -----------------------------------------------------------------------------


def test_timing_constants_follow_the_document() -> None:
    """[SMA-TI 5.1]: 200 ms inhibit time, 60 s supervision of 0x355 (F952) and 0x351 (W952)."""
    assert SEND_PERIOD == 1.0
    assert MIN_PERIOD == 0.2
    assert SOC_TIMEOUT == 60.0
    assert LIMITS_TIMEOUT == 60.0
    assert FAULT_SOC_TIMEOUT == "F952"
    assert WARNING_LIMITS_TIMEOUT == "W952"
    assert BMS_FRAME_IDS == (0x351, 0x355, 0x356, 0x35A, 0x35E, 0x35F)


# --- BMS frames: byte-exact -----------------------------------------------------------------


def test_encode_bms_frames_byte_exact() -> None:
    """Hand-encoded from the [SMA-TI] 5.3 table.

    0x351: CVL 56.2 V -> 562 = 0x0232; CCL 100.0 A -> 1000 = 0x03E8; DCL 200.0 A -> 2000 = 0x07D0;
    DVL 44.0 V -> 440 = 0x01B8.
    0x355: SOC 87.65 % -> 88 = 0x58; SOH 98 = 0x62; HiResSOC 8765 = 0x223D.
    0x356: 53.12 V -> 5312 = 0x14C0; -12.3 A -> -123 = 0xFF85; 21.5 degC -> 215 = 0x00D7.
    0x35E: "SMA-VB" padded with spaces; 0x35F capacity 280 Ah = 0x0118, the rest "invalid".
    """
    frames = encode_bms_frames(BASE)
    assert list(frames) == [0x351, 0x355, 0x356, 0x35A, 0x35E, 0x35F]
    assert frames[ID_CHARGE_LIMITS] == bytes.fromhex("3202e803d007b801")
    assert frames[ID_SOC] == bytes.fromhex("580062003d22")
    assert frames[ID_BATTERY_MEASUREMENTS] == bytes.fromhex("c01485ffd700")
    assert frames[ID_ALARMS] == bytes(8)
    assert frames[ID_MANUFACTURER] == b"SMA-VB  "
    assert frames[ID_BATTERY_INFO] == bytes.fromhex("ffffffff1801ffff")


def test_unknown_measurements_send_the_invalid_marker() -> None:
    """None -> 0x8000, the signed "invalid" value that returns the SI to its default."""
    frames = _frames(voltage=None, current=None, temperature=None)
    assert frames[ID_BATTERY_MEASUREMENTS] == bytes.fromhex("008000800080")
    assert decode_bms_frame(ID_BATTERY_MEASUREMENTS, frames[ID_BATTERY_MEASUREMENTS]) == {
        "voltage": None,
        "current": None,
        "temperature": None,
    }


def test_battery_info_fields() -> None:
    """0x35F: type 0x0001, version 0x0203, 100 Ah = 0x0064, manufacturer id always invalid."""
    frames = _frames(battery_type=1, bms_version=0x0203, capacity_ah=100)
    assert frames[ID_BATTERY_INFO] == bytes.fromhex("010003026400ffff")
    assert decode_bms_frame(ID_BATTERY_INFO, frames[ID_BATTERY_INFO]) == {
        "battery_type": 1,
        "bms_version": 0x0203,
        "capacity_ah": 100,
    }


@pytest.mark.parametrize(
    ("changes", "frame_id", "expected"),
    [
        # CVL 70 V -> 63.0 V = 630 = 0x0276 (clamped down: the pack is charged less).
        ({"charge_voltage": 70.0}, ID_CHARGE_LIMITS, "7602e803d007b801"),
        # CCL -5 A -> 0; 5000 A -> 1200.0 A = 12000 = 0x2EE0.
        ({"charge_current_limit": -5.0}, ID_CHARGE_LIMITS, "32020000d007b801"),
        ({"charge_current_limit": 5000.0}, ID_CHARGE_LIMITS, "3202e02ed007b801"),
        ({"discharge_current_limit": 1e9}, ID_CHARGE_LIMITS, "3202e803e02eb801"),
        ({"discharge_current_limit": -1e9}, ID_CHARGE_LIMITS, "3202e8030000b801"),
        # DVL 10 V -> 41.0 V = 0x019A (clamped up: the SI stops discharging earlier).
        ({"discharge_voltage": 10.0}, ID_CHARGE_LIMITS, "3202e803d0079a01"),
        # SOC 120 % -> 100 % (0x64, HiRes 10000 = 0x2710); -3 % -> 0.
        ({"soc": 120.0}, ID_SOC, "640062001027"),
        ({"soc": -3.0}, ID_SOC, "000062000000"),
        ({"soh": 150.0}, ID_SOC, "580064003d22"),
        # Measurements saturate at +-32767 instead of wrapping or hitting 0x8000.
        ({"voltage": 1000.0}, ID_BATTERY_MEASUREMENTS, "ff7f85ffd700"),
        ({"current": -1e6}, ID_BATTERY_MEASUREMENTS, "c0140180d700"),
        ({"capacity_ah": 70000}, ID_BATTERY_INFO, "fffffffffeffffff"),
        ({"capacity_ah": -1}, ID_BATTERY_INFO, "ffffffff0000ffff"),
    ],
)
def test_encoder_clamps_into_accepted_ranges(
    changes: dict[str, float], frame_id: int, expected: str
) -> None:
    """The SI would silently ignore these; the nearest value in the safe direction goes out."""
    assert _frames(**changes)[frame_id] == bytes.fromhex(expected)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        # An 11-cell LiFePO4 pack: 11 x 3.65 V = 40.15 V. The old encoder sent 41.0 V.
        ({"charge_voltage": 40.2}, "charge_voltage"),
        ({"charge_voltage": 30.0}, "charge_voltage"),
        ({"charge_voltage": 40.94}, "charge_voltage"),  # 40.9 V after rounding down
        # A cut-off of 50 V sent as 48 V would let the SI discharge 2 V deeper than the pack.
        ({"discharge_voltage": 50.0}, "discharge_voltage"),
        ({"discharge_voltage": 48.01}, "discharge_voltage"),  # 48.1 V after rounding up
    ],
)
def test_limits_are_never_moved_in_the_unsafe_direction(
    changes: dict[str, float], field: str
) -> None:
    """DESIGN invariant 2: the encoder never moves CVL up or DVL down to make a value fit."""
    with pytest.raises(UnsafeFrameValue, match="Sunny Island's") as caught:
        _frames(**changes)
    assert isinstance(caught.value, ProtocolError)
    assert caught.value.field == field
    assert caught.value.value == changes[field]


def test_voltages_round_toward_safety() -> None:
    """0.1 V steps: CVL rounds down, DVL up; float noise of an exact value is not a step."""
    limits = _frames(charge_voltage=55.29, discharge_voltage=44.01)[ID_CHARGE_LIMITS]
    assert decode_bms_frame(ID_CHARGE_LIMITS, limits)["charge_voltage"] == 55.2
    assert decode_bms_frame(ID_CHARGE_LIMITS, limits)["discharge_voltage"] == 44.1
    noisy = _frames(charge_voltage=14 * 3.55, discharge_voltage=14 * 2.95)[ID_CHARGE_LIMITS]
    assert 14 * 3.55 < 49.7  # 49.699999999999996
    assert 14 * 2.95 > 41.3  # 41.300000000000004
    assert decode_bms_frame(ID_CHARGE_LIMITS, noisy)["charge_voltage"] == 49.7
    assert decode_bms_frame(ID_CHARGE_LIMITS, noisy)["discharge_voltage"] == 41.3
    # The edges of the ranges themselves are fine.
    edges = _frames(charge_voltage=41.0, discharge_voltage=48.0)[ID_CHARGE_LIMITS]
    assert edges[:2] == (410).to_bytes(2, "little")
    assert edges[6:] == (480).to_bytes(2, "little")


@pytest.mark.parametrize(
    "field",
    ["charge_voltage", "charge_current_limit", "discharge_current_limit", "discharge_voltage"],
)
@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_infinite_limits_raise(field: str, value: float) -> None:
    """An infinite limit is no value at all, like a NaN: never clamped into a guess."""
    with pytest.raises(ProtocolError, match="infinite"):
        _frames(**{field: value})


@pytest.mark.parametrize(
    "field",
    [
        "charge_voltage",
        "charge_current_limit",
        "discharge_current_limit",
        "discharge_voltage",
        "soc",
        "soh",
        "voltage",
        "current",
        "temperature",
    ],
)
def test_nan_raises(field: str) -> None:
    with pytest.raises(ProtocolError, match="NaN"):
        _frames(**{field: math.nan})


@pytest.mark.parametrize(
    "changes",
    [
        {"alarms": -1},
        {"alarms": 1 << 32},
        {"warnings": 1 << 40},
        {"battery_type": 0x10000},
        {"bms_version": -2},
    ],
)
def test_fields_that_do_not_fit_raise(changes: dict[str, int]) -> None:
    with pytest.raises(ProtocolError, match="does not fit"):
        _frames(**changes)


def test_manufacturer_is_ascii_cut_to_eight_bytes() -> None:
    assert encode_manufacturer("ABCDEFGHIJ") == b"ABCDEFGH"
    assert encode_manufacturer("Müller") == b"M?ller  "
    assert encode_manufacturer("") == b" " * 8
    assert decode_bms_frame(ID_MANUFACTURER, b"REC\x00\x00\x00\x00\x00") == {"manufacturer": "REC"}
    with pytest.raises(ProtocolError, match="ASCII"):
        decode_bms_frame(ID_MANUFACTURER, b"M\xfcller")


# --- 0x35A ----------------------------------------------------------------------------------


def test_alarm_item_order_matches_the_document() -> None:
    """[SMA-TI 7.2/7.3]: alarm n is F920+n, warning n is W936+n, in this order."""
    assert [item.name for item in AlarmItem] == [
        "GENERAL",
        "HIGH_VOLTAGE",
        "LOW_VOLTAGE",
        "HIGH_TEMP",
        "LOW_TEMP",
        "HIGH_TEMP_CHARGE",
        "LOW_TEMP_CHARGE",
        "HIGH_CURRENT",
        "HIGH_CHARGE_CURRENT",
        "CONTACTOR",
        "SHORT_CIRCUIT",
        "BMS_INTERNAL",
        "CELL_IMBALANCE",
        "RESERVED_14",
        "RESERVED_15",
        "GENERATOR",
    ]
    assert [int(item) for item in AlarmItem] == list(range(16))


@pytest.mark.parametrize(
    ("active", "expected"),
    [
        # "Byte 0, Bit 0: General Alarm arrives".
        ([AlarmItem.GENERAL], 0x00000001),
        # "Byte 0, Bit 2: Battery High Voltage arrives".
        ([AlarmItem.HIGH_VOLTAGE], 0x00000004),
        # "Byte 1, Bit 4: Battery Low Temp Charge arrives" -> bit 12.
        ([AlarmItem.LOW_TEMP_CHARGE], 0x00001000),
        # "Byte 2, Bit 0: Battery High Current (charge) arrives" -> bit 16.
        ([AlarmItem.HIGH_CHARGE_CURRENT], 0x00010000),
        # "Byte 3, Bit 0: Cell Imbalance" arrives -> bit 24.
        ([AlarmItem.CELL_IMBALANCE], 0x01000000),
    ],
)
def test_alarm_bit_positions(active: list[AlarmItem], expected: int) -> None:
    """[SMA-TI 5.3/7.1]: the low bit of each pair is "arrives"; nothing else evaluated here."""
    assert encode_alarm_bits(active, evaluated=()) == expected


@pytest.mark.parametrize(
    ("active", "evaluated", "expected"),
    [
        # "Byte 0, Bit 1: General Alarm leaves".
        ([], [AlarmItem.GENERAL], 0x00000002),
        # "Byte 3, Bit 1: Cell Imbalance" leaves -> bit 25.
        ([], [AlarmItem.CELL_IMBALANCE], 0x02000000),
        # Active wins over evaluated.
        ([AlarmItem.HIGH_TEMP], [AlarmItem.HIGH_TEMP, AlarmItem.GENERAL], 0x00000042),
    ],
)
def test_evaluated_items_that_are_not_active_leave(
    active: list[AlarmItem], evaluated: list[AlarmItem], expected: int
) -> None:
    assert encode_alarm_bits(active, evaluated=evaluated) == expected


def test_every_bms_item_is_sent_as_arrives_or_leaves() -> None:
    """DESIGN invariant 8: never 00 for an item we evaluate, so the SI cannot stay latched.

    The default evaluates the 13 items a BMS may use: "leaves" (10) in every pair of bytes 0-2
    = 0xAA, byte 3 items 13 (Cell Imbalance) leaves = 0x02; the reserved items and Generator,
    "not to be used by the external BMS", stay 00.
    """
    assert len(BMS_ITEMS) == 13
    assert encode_alarm_bits([]) == 0x02AAAAAA
    # Before, nothing active encoded as 0: the SI kept whatever alarm it had latched.
    assert encode_alarm_bits([]) != 0
    assert encode_alarm_bits([AlarmItem.GENERAL]) == 0x02AAAAA9
    # A previous alarm no longer matters: "leaves" goes out in every frame, not once.
    assert encode_alarm_bits([], [AlarmItem.HIGH_TEMP]) == encode_alarm_bits([])
    assert encode_alarm_bits([], [AlarmItem.HIGH_TEMP]) == encode_alarm_bits([], [])
    # An unused item that was active leaves too (older callers passed what was active before).
    assert encode_alarm_bits([], [AlarmItem.GENERATOR]) == 0x82AAAAAA
    arrived, left = decode_alarm_bits(encode_alarm_bits([AlarmItem.SHORT_CIRCUIT]))
    assert arrived == {AlarmItem.SHORT_CIRCUIT}
    assert left == BMS_ITEMS - {AlarmItem.SHORT_CIRCUIT}


def test_alarm_words_in_the_frame() -> None:
    """Alarms in bytes 0-3, warnings in 4-7, little-endian.

    alarms: Low Temp Charge arrives (byte 1 bit 4), General leaves (byte 0 bit 1), nothing else
    evaluated = 0x00001002. warnings: Generator arrives, "Byte 7, Bit 6" = 0x40000000, with
    every BMS item leaving = 0x42AAAAAA.
    """
    alarms = encode_alarm_bits(
        [AlarmItem.LOW_TEMP_CHARGE], evaluated=[AlarmItem.GENERAL, AlarmItem.LOW_TEMP_CHARGE]
    )
    warnings = encode_alarm_bits([AlarmItem.GENERATOR])
    frame = _frames(alarms=alarms, warnings=warnings)[ID_ALARMS]
    assert frame == bytes.fromhex("02100000aaaaaa42")
    assert decode_bms_frame(ID_ALARMS, frame) == {"alarms": 0x1002, "warnings": 0x42AAAAAA}


def test_decode_alarm_bits_ignores_00_and_11() -> None:
    # Item 0: 01 arrives; item 1: 10 leaves; item 2: 11 ignored; item 3: 00 ignored.
    assert decode_alarm_bits(0b00_11_10_01) == (
        frozenset({AlarmItem.GENERAL}),
        frozenset({AlarmItem.HIGH_VOLTAGE}),
    )
    assert decode_alarm_bits(0xFFFFFFFF) == (frozenset(), frozenset())
    with pytest.raises(ProtocolError):
        decode_alarm_bits(-1)


@given(
    st.sets(st.sampled_from(AlarmItem)),
    st.sets(st.sampled_from(AlarmItem)),
    st.none() | st.sets(st.sampled_from(AlarmItem)),
)
def test_alarm_bits_round_trip(
    active: set[AlarmItem], previous: set[AlarmItem], evaluated: set[AlarmItem] | None
) -> None:
    if evaluated is None:
        word = encode_alarm_bits(active, previous)
        evaluated = set(BMS_ITEMS)
    else:
        word = encode_alarm_bits(active, previous, evaluated=evaluated)
    arrived, left = decode_alarm_bits(word)
    assert arrived == active
    assert left == (evaluated | previous) - active
    # Every evaluated item is in exactly one of the two sets: no 00 pair for it.
    assert evaluated <= arrived | left


# --- BMS frames: decoding -------------------------------------------------------------------


def test_decode_bms_invalid_markers_and_hires_fallback() -> None:
    # 0x351 all "invalid": U16 0xFFFF, S16 0x8000.
    assert decode_bms_frame(ID_CHARGE_LIMITS, bytes.fromhex("ffff00800080ffff")) == {
        "charge_voltage": None,
        "charge_current_limit": None,
        "discharge_current_limit": None,
        "discharge_voltage": None,
    }
    # SOC 57 %, SOH invalid, HiResSOC invalid -> the integer SOC counts.
    assert decode_bms_frame(ID_SOC, bytes.fromhex("3900ffffffff")) == {"soc": 57.0, "soh": None}
    # Only SOC and SOH (4 bytes) is accepted too.
    assert decode_bms_frame(ID_SOC, bytes.fromhex("39006400")) == {"soc": 57.0, "soh": 100.0}
    # HiResSOC 57.25 % (0x165D) wins over the integer.
    assert decode_bms_frame(ID_SOC, bytes.fromhex("390064005d16")) == {"soc": 57.25, "soh": 100.0}
    assert decode_bms_frame(ID_BATTERY_INFO, bytes.fromhex("01000100ffff0000")) == {
        "battery_type": 1,
        "bms_version": 1,
        "capacity_ah": None,
    }


def test_decode_bms_frame_lengths_and_unknown_ids() -> None:
    assert decode_bms_frame(ID_QUICK_STOP, b"") == {}
    assert decode_bms_frame(0x123, b"\x00") == {}
    for frame_id, data in (
        (ID_CHARGE_LIMITS, bytes(7)),
        (ID_SOC, bytes(3)),
        (ID_BATTERY_MEASUREMENTS, bytes(5)),
        (ID_ALARMS, bytes(4)),
        (ID_MANUFACTURER, bytes(9)),
        (ID_BATTERY_INFO, bytes(9)),
    ):
        with pytest.raises(ProtocolError, match="bytes"):
            decode_bms_frame(frame_id, data)


_ANY_FLOAT = st.floats(allow_nan=False, width=64)
_LIMITS = ("charge_voltage", "charge_current_limit", "discharge_current_limit", "discharge_voltage")


@given(
    cvl=st.floats(*CHARGE_VOLTAGE_RANGE),
    ccl=st.floats(*CURRENT_LIMIT_RANGE),
    dcl=st.floats(*CURRENT_LIMIT_RANGE),
    dvl=st.floats(*DISCHARGE_VOLTAGE_RANGE),
    soc=st.floats(0.0, 100.0),
    soh=st.floats(0.0, 100.0),
    voltage=st.none() | st.floats(-327.0, 327.0),
    current=st.none() | st.floats(-3276.0, 3276.0),
    temperature=st.none() | st.floats(-100.0, 200.0),
    alarms=st.integers(0, 0xFFFFFFFF),
    warnings=st.integers(0, 0xFFFFFFFF),
    manufacturer=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=8),
    capacity=st.integers(0, 0xFFFE),
)
def test_bms_round_trip_within_resolution(
    cvl: float,
    ccl: float,
    dcl: float,
    dvl: float,
    soc: float,
    soh: float,
    voltage: float | None,
    current: float | None,
    temperature: float | None,
    alarms: int,
    warnings: int,
    manufacturer: str,
    capacity: int,
) -> None:
    state = BmsFrameState(
        charge_voltage=cvl,
        charge_current_limit=ccl,
        discharge_current_limit=dcl,
        discharge_voltage=dvl,
        soc=soc,
        soh=soh,
        voltage=voltage,
        current=current,
        temperature=temperature,
        alarms=alarms,
        warnings=warnings,
        manufacturer=manufacturer,
        capacity_ah=capacity,
    )
    decoded: dict[str, object] = {}
    for frame_id, data in encode_bms_frames(state).items():
        assert len(data) in (6, 8)
        decoded |= decode_bms_frame(frame_id, data)
    # Voltages are rounded toward safety: CVL down, DVL up, by less than one 0.1 V step (float
    # noise below a microvolt does not count as a step).
    limits = decode_bms_frame(ID_CHARGE_LIMITS, encode_bms_frames(state)[ID_CHARGE_LIMITS])
    assert cvl - 0.1 < limits["charge_voltage"] <= cvl + 1e-6  # type: ignore[operator]
    assert dvl - 1e-6 <= limits["discharge_voltage"] < dvl + 0.1  # type: ignore[operator]
    resolution = {
        "charge_current_limit": 0.05,
        "discharge_current_limit": 0.05,
        "soc": 0.005,
        "soh": 0.5,
        "voltage": 0.005,
        "current": 0.05,
        "temperature": 0.05,
    }
    for key, tolerance in resolution.items():
        sent = getattr(state, key)
        if sent is None:
            assert decoded[key] is None
        else:
            assert decoded[key] == pytest.approx(sent, abs=tolerance + 1e-9)
    assert decoded["alarms"] == alarms
    assert decoded["warnings"] == warnings
    assert decoded["manufacturer"] == manufacturer
    assert decoded["capacity_ah"] == capacity


@given(
    values=st.fixed_dictionaries(
        {
            "charge_voltage": _ANY_FLOAT,
            "charge_current_limit": _ANY_FLOAT,
            "discharge_current_limit": _ANY_FLOAT,
            "discharge_voltage": _ANY_FLOAT,
            "soc": _ANY_FLOAT,
            "soh": _ANY_FLOAT,
            "voltage": st.none() | _ANY_FLOAT,
            "current": st.none() | _ANY_FLOAT,
            "temperature": st.none() | _ANY_FLOAT,
        }
    )
)
def test_any_input_lands_inside_the_si_ranges(values: dict[str, float | None]) -> None:
    """Safety invariant 2: whatever the control code asks for, the frames stay in range.

    Or nothing is encoded at all (ProtocolError, the caller sends safe frames): never a CVL above
    the one asked for, never a DVL below it, never a current limit above it.
    """
    state = dataclasses.replace(BASE, **values)  # type: ignore[arg-type]
    cvl, dvl = state.charge_voltage, state.discharge_voltage
    if not all(math.isfinite(getattr(state, key)) for key in _LIMITS):
        with pytest.raises(ProtocolError, match=r"infinite|Sunny Island's"):
            encode_bms_frames(state)
        return
    if cvl < CHARGE_VOLTAGE_RANGE[0] - 1e-6 or dvl > DISCHARGE_VOLTAGE_RANGE[1] + 1e-6:
        with pytest.raises(UnsafeFrameValue):
            encode_bms_frames(state)
        return
    try:
        frames = encode_bms_frames(state)
    except UnsafeFrameValue:
        # Only within float noise of the range's edge may either answer be right.
        assert min(abs(cvl - CHARGE_VOLTAGE_RANGE[0]), abs(dvl - DISCHARGE_VOLTAGE_RANGE[1])) < 1e-6
        return
    limits = decode_bms_frame(ID_CHARGE_LIMITS, frames[ID_CHARGE_LIMITS])
    assert limits["charge_voltage"] <= values["charge_voltage"] + 1e-6  # type: ignore[operator]
    assert limits["discharge_voltage"] >= values["discharge_voltage"] - 1e-6  # type: ignore[operator]
    for key in ("charge_current_limit", "discharge_current_limit"):
        assert limits[key] <= max(values[key], 0.0) + 0.05  # type: ignore[operator, type-var]
    soc = decode_bms_frame(ID_SOC, frames[ID_SOC])
    for key, (low, high) in (
        ("charge_voltage", CHARGE_VOLTAGE_RANGE),
        ("discharge_voltage", DISCHARGE_VOLTAGE_RANGE),
        ("charge_current_limit", CURRENT_LIMIT_RANGE),
        ("discharge_current_limit", CURRENT_LIMIT_RANGE),
    ):
        value = limits[key]
        assert isinstance(value, float)
        assert low <= value <= high
    for key in ("soc", "soh"):
        value = soc[key]
        assert isinstance(value, float)
        assert 0.0 <= value <= 100.0
    measurements = decode_bms_frame(ID_BATTERY_MEASUREMENTS, frames[ID_BATTERY_MEASUREMENTS])
    for key in ("voltage", "current", "temperature"):
        assert (measurements[key] is None) == (values[key] is None)


# --- safe frames ----------------------------------------------------------------------------


def test_safe_frames_stop_charging_hold_soc_and_raise_a_warning() -> None:
    """CCL 0 A, CVL/DCL/DVL kept; SOC held; W947 "BMS internal" arrives; the rest unchanged.

    0x351 "3202e803d007b801" (56.2 V, 100 A, 200 A, 44 V) -> CCL 0 = "32020000d007b801".
    0x35A warnings: every BMS item leaving (0x02AAAAAA), then item 11 (bits 22/23) set to
    arrives: 0x02AAAAAA & ~0x00C00000 | 0x00400000 = 0x026AAAAA.
    """
    last = _frames(alarms=encode_alarm_bits([]), warnings=encode_alarm_bits([]))
    safe = safe_bms_frames(last)
    assert safe[ID_CHARGE_LIMITS] == bytes.fromhex("32020000d007b801")
    assert SAFE_WARNING is AlarmItem.BMS_INTERNAL
    assert safe[ID_ALARMS] == encode_alarm_bits([]).to_bytes(4, "little") + bytes.fromhex(
        "aaaa6a02"
    )
    arrived, left = decode_alarm_bits(decode_bms_frame(ID_ALARMS, safe[ID_ALARMS])["warnings"])  # type: ignore[arg-type]
    assert arrived == {AlarmItem.BMS_INTERNAL}
    assert left == BMS_ITEMS - {AlarmItem.BMS_INTERNAL}
    for frame_id in (ID_SOC, ID_BATTERY_MEASUREMENTS, ID_MANUFACTURER, ID_BATTERY_INFO):
        assert safe[frame_id] == last[frame_id]
    assert list(safe) == list(last)  # same ids, same order: replaceable in place
    assert safe_bms_frames(safe) == safe  # idempotent
    assert charge_current_limit_of(safe) == 0.0
    assert charge_current_limit_of(last) == 100.0


def test_safe_frames_step_through_one_amp_but_never_raise_a_limit() -> None:
    last = _frames(charge_current_limit=35.0)
    step = safe_bms_frames(last, charge_current_limit=1.0)
    assert charge_current_limit_of(step) == 1.0
    assert decode_bms_frame(ID_CHARGE_LIMITS, step[ID_CHARGE_LIMITS]) == {
        "charge_voltage": 56.2,
        "charge_current_limit": 1.0,
        "discharge_current_limit": 200.0,
        "discharge_voltage": 44.0,
    }
    low = _frames(charge_current_limit=0.5)
    assert charge_current_limit_of(safe_bms_frames(low, charge_current_limit=1.0)) == 0.5
    with pytest.raises(ValueError, match="0-1200"):
        safe_bms_frames(last, charge_current_limit=math.nan)
    with pytest.raises(ValueError, match="0-1200"):
        safe_bms_frames(last, charge_current_limit=-1.0)


def test_safe_frames_from_odd_payloads() -> None:
    """Works on whatever was sent: a short 0x351 is completed with "invalid" markers, an invalid
    or negative CCL counts as 0 A, a short 0x35A is padded, missing ids are not invented."""
    assert safe_bms_frames({}) == {}
    assert safe_bms_frames({ID_SOC: b"\x01\x02"}) == {ID_SOC: b"\x01\x02"}
    short = safe_bms_frames({ID_CHARGE_LIMITS: bytes.fromhex("3202e803")})
    assert short[ID_CHARGE_LIMITS] == bytes.fromhex("320200000080ffff")
    invalid = safe_bms_frames({ID_CHARGE_LIMITS: bytes.fromhex("32020080d007b801")})
    assert invalid[ID_CHARGE_LIMITS] == bytes.fromhex("32020000d007b801")
    negative = safe_bms_frames(
        {ID_CHARGE_LIMITS: bytes.fromhex("3202ffffd007b801")}, charge_current_limit=1.0
    )
    assert negative[ID_CHARGE_LIMITS] == bytes.fromhex("32020000d007b801")
    alarms = safe_bms_frames({ID_ALARMS: b"\x01"})
    assert alarms[ID_ALARMS] == bytes.fromhex("0100000000004000")
    assert charge_current_limit_of({ID_CHARGE_LIMITS: bytes(3)}) is None
    assert charge_current_limit_of({ID_CHARGE_LIMITS: bytes.fromhex("32020080")}) is None
    assert charge_current_limit_of({}) is None


@given(
    frames=st.dictionaries(
        st.sampled_from(BMS_FRAME_IDS), st.binary(max_size=8), max_size=len(BMS_FRAME_IDS)
    ),
    step=st.floats(0.0, 1200.0),
)
def test_safe_frames_of_anything(frames: dict[int, bytes], step: float) -> None:
    """Any payloads in: same ids out, CCL at most ``step`` and never above what it was."""
    safe = safe_bms_frames(frames, charge_current_limit=step)
    assert safe.keys() == frames.keys()
    if ID_CHARGE_LIMITS in frames:
        ccl = charge_current_limit_of(safe)
        assert ccl is not None
        assert 0.0 <= ccl <= step
        before = charge_current_limit_of(frames)
        assert ccl <= max(before if before is not None else 0.0, 0.0)
        assert len(safe[ID_CHARGE_LIMITS]) == 8
    if ID_ALARMS in frames:
        warnings = decode_bms_frame(ID_ALARMS, safe[ID_ALARMS])["warnings"]
        assert isinstance(warnings, int)
        assert SAFE_WARNING in decode_alarm_bits(warnings)[0]
    for frame_id in frames.keys() - {ID_CHARGE_LIMITS, ID_ALARMS}:
        assert safe[frame_id] == frames[frame_id]


# --- SI broadcast frames --------------------------------------------------------------------


def test_decode_battery_frame_sign_of_current() -> None:
    """0x305 from [SMA-TI 6]: U16 V/10, S16 A/10 (negative while charging), S16 degC/10, S16 %/10.

    53.3 V = 533 = 0x0215; SI current -25.0 A (charging) = -250 = 0xFF06; 23.4 degC = 0x00EA;
    SOC 87.5 % = 875 = 0x036B. Decoded current is +25.0 A: + = charging in this project.
    """
    assert decode_si_frame(ID_BATTERY, bytes.fromhex("150206ffea006b03")) == {
        "battery_voltage": 53.3,
        "battery_current": 25.0,
        "battery_temperature": 23.4,
        "battery_soc": 87.5,
    }
    # SI +10.0 A (discharging) = 0x0064 -> -10.0 A; -5.5 degC = -55 = 0xFFC9.
    decoded = decode_si_frame(ID_BATTERY, bytes.fromhex("15026400c9ff6b03"))
    assert decoded["battery_current"] == -10.0
    assert decoded["battery_temperature"] == -5.5


def test_decode_status_frame() -> None:
    """0x306: SOH 97 %, charging procedure 10 (external BMS), operating 1, error 0, CV 55.2 V."""
    assert decode_si_frame(ID_STATUS, bytes.fromhex("61000a0100002802")) == {
        "soh": 97,
        "charging_procedure": 10,
        "operating_state": 1,
        "error_number": 0,
        "charge_voltage_setpoint": 55.2,
    }
    # Failure (4) with error 952 = 0x03B8.
    decoded = decode_si_frame(ID_STATUS, bytes.fromhex("64000a04b8032002"))
    assert decoded["operating_state"] == 4
    assert decoded["error_number"] == 952


def test_decode_power_frames() -> None:
    """S16 x 100 W per line: L1 +1200 W = 12 = 0x000C, L2 -300 W = -3 = 0xFFFD, L3 0."""
    data = bytes.fromhex("0c00fdff00000000")
    assert decode_si_frame(ID_EXTERNAL_POWER, data) == {
        "external_power_l1": 1200.0,
        "external_power_l2": -300.0,
        "external_power_l3": 0.0,
    }
    assert decode_si_frame(ID_INVERTER_POWER, data)["inverter_power_l2"] == -300.0
    # Reactive: S16 x 0.1 kvar -> 5 = 500 var.
    assert (
        decode_si_frame(ID_EXTERNAL_REACTIVE_POWER, bytes.fromhex("050000000000"))[
            "external_reactive_power_l1"
        ]
        == 500.0
    )
    assert (
        decode_si_frame(ID_INVERTER_REACTIVE_POWER, bytes.fromhex("0000fbff0000"))[
            "inverter_reactive_power_l2"
        ]
        == -500.0
    )
    # 0x308 load 2500 W = 25 = 0x0019.
    assert decode_si_frame(ID_LOAD, bytes.fromhex("1900000000000000")) == {"load_power": 2500.0}
    assert decode_si_frame(ID_LOAD, bytes.fromhex("1900")) == {"load_power": 2500.0}
    # 0x30A: PV 3000 W = 30 = 0x1E, consumption 0, feed 1500 W = 15 = 0x0F.
    assert decode_si_frame(ID_ENERGY, bytes.fromhex("1e0000000f000000")) == {
        "pv_power": 3000.0,
        "grid_consumption_power": 0.0,
        "grid_feed_power": 1500.0,
    }


def test_decode_voltage_frames() -> None:
    """0x304/0x309: S16 V/10 per line, U16 Hz/100.

    230.5 V = 2305 = 0x0901, 229.0 V = 0x08F2, 50.02 Hz = 5002 = 0x138A; 231.0 V = 0x0906,
    49.98 Hz = 4998 = 0x1386.
    """
    assert decode_si_frame(ID_OUTPUT_AC, bytes.fromhex("0109f20800008a13")) == {
        "output_voltage_l1": 230.5,
        "output_voltage_l2": 229.0,
        "output_voltage_l3": 0.0,
        "output_frequency": 50.02,
    }
    assert decode_si_frame(ID_EXTERNAL_AC, bytes.fromhex("0609000000008613")) == {
        "external_voltage_l1": 231.0,
        "external_voltage_l2": 0.0,
        "external_voltage_l3": 0.0,
        "external_frequency": 49.98,
    }


def test_decode_relay_frame() -> None:
    """0x307: relay word 0x0101 (relay 1 + GnRn), function bits 1 0x02C0 (ExtVfOk, GdOn, Run),
    function bits 2 0x0102 (OverLoad, ExtSrcConn), sync byte 0x05."""
    decoded = decode_si_frame(ID_RELAYS, bytes.fromhex("0101c00202010500"))
    assert decoded["relay_state"] == 0x0101
    assert decoded["function_bits_1"] == 0x02C0
    assert decoded["function_bits_2"] == 0x0102
    assert decoded["sync_bits"] == 5
    true_flags = {key for key, value in decoded.items() if value is True}
    assert true_flags == {
        "relay1",
        "generator_request",
        "grid_voltage_ok",
        "grid_connected",
        "running",
        "overload",
        "external_source_connected",
    }
    # Only ExtVfOk without GdOn: voltage present, relay open.
    decoded = decode_si_frame(ID_RELAYS, bytes.fromhex("000040000000"))
    assert decoded["grid_voltage_ok"] is True
    assert decoded["grid_connected"] is False
    assert decoded["running"] is False
    assert "sync_bits" not in decoded


def test_decode_frequency_frame() -> None:
    """0x010: byte 3 integer Hz (0x32 = 50), byte 2 fraction/256 (5/256)."""
    assert decode_si_frame(ID_FREQUENCY, bytes.fromhex("00000532")) == {"frequency": 50 + 5 / 256}


def test_decode_si_frame_unknown_and_wrong_lengths() -> None:
    assert decode_si_frame(0x351, bytes(8)) == {}
    assert decode_si_frame(0x7FF, b"") == {}
    for frame_id, length in (
        (ID_BATTERY, 7),
        (ID_BATTERY, 9),
        (ID_LOAD, 1),
        (ID_RELAYS, 5),
        (ID_FREQUENCY, 3),
        (ID_EXTERNAL_POWER, 5),
    ):
        with pytest.raises(ProtocolError, match="bytes"):
            decode_si_frame(frame_id, bytes(length))


def test_encode_si_frame_byte_exact() -> None:
    """The inverse builds the same bytes as the hand-made frames above (padded to 8 bytes)."""
    assert encode_si_frame(
        ID_BATTERY,
        {
            "battery_voltage": 53.3,
            "battery_current": 25.0,
            "battery_temperature": 23.4,
            "battery_soc": 87.5,
        },
    ) == bytes.fromhex("150206ffea006b03")
    assert encode_si_frame(
        ID_RELAYS,
        {
            "relay1": True,
            "generator_request": True,
            "grid_voltage_ok": True,
            "grid_connected": True,
            "running": True,
            "overload": True,
            "external_source_connected": True,
            "sync_bits": 5,
        },
    ) == bytes.fromhex("0101c00202010500")
    assert encode_si_frame(ID_LOAD, {"load_power": 2500.0}) == bytes.fromhex("1900000000000000")
    assert encode_si_frame(ID_FREQUENCY, {"frequency": 50 + 5 / 256}) == bytes.fromhex(
        "0000053200000000"
    )
    # A named flag overrides its bit in the raw word.
    assert encode_si_frame(ID_RELAYS, {"function_bits_1": 0xFFFF, "running": False})[2:4] == (
        bytes.fromhex("fffd")
    )


@pytest.mark.parametrize(
    ("frame_id", "values"),
    [
        (ID_LOAD, {"load_power": 4e6}),
        (ID_LOAD, {"load_power": math.nan}),
        (ID_BATTERY, {"battery_voltage": math.inf}),
        (ID_STATUS, {"operating_state": 300}),
        (ID_RELAYS, {"relay_state": 0x10000}),
        (ID_RELAYS, {"sync_bits": 256}),
        (ID_FREQUENCY, {"frequency": 300.0}),
        (ID_FREQUENCY, {"frequency": -1.0}),
        (0x351, {}),
    ],
)
def test_encode_si_frame_rejects(frame_id: int, values: dict[str, float]) -> None:
    with pytest.raises(ProtocolError):
        encode_si_frame(frame_id, values)


# --- property tests -------------------------------------------------------------------------

_ALL_IDS = st.sampled_from([*SI_FRAME_IDS, *BMS_FRAME_IDS, ID_QUICK_STOP]) | st.integers(0, 0x7FF)


@settings(max_examples=400)
@given(frame_id=_ALL_IDS, data=st.binary(max_size=12))
def test_random_bytes_raise_only_protocol_error(frame_id: int, data: bytes) -> None:
    for decoder in (decode_si_frame, decode_bms_frame):
        with contextlib.suppress(ProtocolError):
            decoder(frame_id, data)


@given(value=st.integers())
def test_random_alarm_words_raise_only_protocol_error(value: int) -> None:
    with contextlib.suppress(ProtocolError):
        decode_alarm_bits(value)


_SIX = {
    ID_EXTERNAL_POWER,
    ID_INVERTER_POWER,
    ID_EXTERNAL_REACTIVE_POWER,
    ID_INVERTER_REACTIVE_POWER,
    ID_ENERGY,
}

# Bytes each decoder reads; the rest is padding or of unknown meaning.
_MEANINGFUL = {
    ID_FREQUENCY: slice(2, 4),
    ID_RELAYS: slice(0, 7),
    ID_LOAD: slice(0, 2),
}


@settings(max_examples=300)
@given(frame_id=st.sampled_from(SI_FRAME_IDS), data=st.binary(min_size=8, max_size=8))
def test_si_frame_round_trip(frame_id: int, data: bytes) -> None:
    """decode -> encode gives back the same bytes; encode -> decode gives back the same values."""
    decoded = decode_si_frame(frame_id, data)
    encoded = encode_si_frame(frame_id, decoded)
    assert len(encoded) == 8
    assert decode_si_frame(frame_id, encoded) == decoded
    meaningful = _MEANINGFUL.get(frame_id, slice(0, 6 if frame_id in _SIX else 8))
    assert encoded[meaningful] == data[meaningful]


_FLAG_NAMES = st.sampled_from(
    [
        "relay1",
        "relay2",
        "generator_request",
        "grid_voltage_ok",
        "grid_connected",
        "running",
        "error",
        "overload",
        "energy_saving",
    ]
)


@given(flags=st.dictionaries(_FLAG_NAMES, st.booleans()))
def test_relay_flags_round_trip(flags: dict[str, bool]) -> None:
    decoded = decode_si_frame(ID_RELAYS, encode_si_frame(ID_RELAYS, flags))
    for key, value in flags.items():
        assert decoded[key] is value
