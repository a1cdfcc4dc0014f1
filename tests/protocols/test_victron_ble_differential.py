"""Differential test: our decoder against ``victron-ble`` (PyPI) on the same random adverts.

Both decode adverts built from random field values. Wherever the two disagree on purpose the
case is listed below in ``DIFFERENCES`` with the reason; every other value must be identical.
Their decoder works on its own key (a hex string), its own enums and getters; the mapping from
their getters to our keys is ``FIELDS``.

Intended differences (ours follows the maker's document, theirs has these behaviours):

1. Battery-monitor / DC-energy-meter current: theirs compares "not available" (0x3FFFFF) after
   sign conversion, so it never fires and gives -0.001 A; a Smart Battery Sense's 0x1FFFFF
   ("no shunt") gives 2097.151 A. Ours: ``None`` for both.
2. Lynx Smart BMS SOC: theirs compares the 10-bit field to 0x3FFF, so "not available" (0x3FF)
   shows as 102.3 %. Ours: ``None``.
3. Lynx Smart BMS consumed Ah: theirs positive; the document (and ours, like the battery monitor)
   says "Consumed Ah = -Record value".
4. Multi RS state and error: theirs unpacks them as *signed* bytes, so every value from 0x80 up
   (0xFF "not available", 245-252 states) becomes negative and fails its enum (ValueError).
5. Multi RS battery voltage: theirs has no "not available" check (0x3FFF shows 163.83 V).
6. Multi RS yield today: theirs kWh, ours Wh (as every other record, and the DESIGN's units).
7. Battery-monitor auxiliary input: theirs has no "not available" check for the starter voltage
   (0x7FFF → 327.67 V), midpoint (0xFFFF → 655.35 V) or temperature (0xFFFF → 382.2 °C), and
   treats a temperature of exactly 0 K as missing. DC energy meter: the same for the starter
   voltage and 0 K (its temperature "not available" is checked).
8. SmartLithium cells: theirs -inf / +inf for "below 2.61 V" / "above 3.85 V"; ours the
   saturated bounds 2.60 / 3.86 V (Home Assistant sensors cannot show infinities).
9. Alarm reasons: theirs ``None`` for "no alarm" on inverters and DC energy meters; ours 0.
10. Values outside its enums (combined off-reason or alarm bits, states such as VE.Bus
    "passthru", new error codes, meter types, output states, balancer states): theirs raises
    ValueError while parsing; ours returns the raw integer.
11. Smart Battery Sense: theirs only offers voltage and temperature, and raises KeyError for the
    temperature when the aux input is not in temperature mode.
12. Truncated adverts: theirs pads the ciphertext and decodes the padding as values (or raises
    ValueError from its enums, as with short Orion XS adverts); ours raises ProtocolError.
13. Names: see ``FIELDS`` (e.g. their ``solar_power`` is our ``pv_power``, their DC/DC
    ``device_state`` our ``charge_state``, their Lynx ``alarm_flags`` our ``warnings_alarms``).
"""

from __future__ import annotations

from collections.abc import Callable
import contextlib
from dataclasses import dataclass
from enum import Enum
import math
from typing import Any

from hypothesis import HealthCheck, given, settings, strategies as st
import pytest
from victron_ble.devices import detect_device_type
from victron_ble.devices.base import (
    AlarmNotification,
    AlarmReason,
    ChargerError,
    OffReason,
    OperationMode,
)
from victron_ble.devices.battery_monitor import AuxMode
from victron_ble.devices.dc_energy_meter import MeterType
from victron_ble.devices.multirs import MultiRSOperationMode
from victron_ble.devices.smart_battery_protect import OutputState
from victron_ble.devices.smart_lithium import BalancerStatus

from custom_components.sma_victron_bridge.protocols import ProtocolError
from custom_components.sma_victron_bridge.protocols.victron_ble import (
    RECORD_LENGTHS,
    decode_advertisement,
)

from .test_victron_ble import LAYOUTS, advert, pack

Raws = dict[str, int]


def values_of(enum: type[Enum]) -> list[int]:
    return [member.value for member in enum]


# --- their getters → our keys --------------------------------------------------------------------

# (our key, their getter); a getter of the form "cell_voltages[i]" reads one list element
FIELDS: dict[int, list[tuple[str, str]]] = {
    0x01: [
        ("charge_state", "get_charge_state"),
        ("charger_error", "get_charger_error"),
        ("battery_voltage", "get_battery_voltage"),
        ("battery_current", "get_battery_charging_current"),
        ("yield_today", "get_yield_today"),
        ("pv_power", "get_solar_power"),
        ("load_current", "get_external_device_load"),
    ],
    0x02: [
        ("time_to_go", "get_remaining_mins"),
        ("voltage", "get_voltage"),
        ("alarm", "get_alarm"),
        ("aux_mode", "get_aux_mode"),
        ("current", "get_current"),
        ("consumed_ah", "get_consumed_ah"),
        ("soc", "get_soc"),
        ("starter_voltage", "get_starter_voltage"),
        ("midpoint_voltage", "get_midpoint_voltage"),
        ("temperature", "get_temperature"),
    ],
    0x03: [
        ("device_state", "get_device_state"),
        ("alarm", "get_alarm"),
        ("battery_voltage", "get_battery_voltage"),
        ("ac_apparent_power", "get_ac_apparent_power"),
        ("ac_voltage", "get_ac_voltage"),
        ("ac_current", "get_ac_current"),
    ],
    0x04: [
        ("charge_state", "get_charge_state"),
        ("charger_error", "get_charger_error"),
        ("input_voltage", "get_input_voltage"),
        ("output_voltage", "get_output_voltage"),
        ("off_reason", "get_off_reason"),
    ],
    0x05: [
        ("bms_flags", "get_bms_flags"),
        ("error_flags", "get_error_flags"),
        *((f"cell_voltage{i + 1}", f"cell_voltages[{i}]") for i in range(8)),
        ("battery_voltage", "get_battery_voltage"),
        ("balancer_status", "get_balancer_status"),
        ("battery_temperature", "get_battery_temperature"),
    ],
    0x08: [
        ("charge_state", "get_charge_state"),
        ("charger_error", "get_charger_error"),
        *((f"output_voltage{i}", f"get_output_voltage{i}") for i in (1, 2, 3)),
        *((f"output_current{i}", f"get_output_current{i}") for i in (1, 2, 3)),
        ("temperature", "get_temperature"),
        ("ac_current", "get_ac_current"),
    ],
    0x09: [
        ("device_state", "get_device_state"),
        ("output_state", "get_output_state"),
        ("error_code", "get_error_code"),
        ("alarm", "get_alarm_reason"),
        ("warning", "get_warning_reason"),
        ("input_voltage", "get_input_voltage"),
        ("output_voltage", "get_output_voltage"),
        ("off_reason", "get_off_reason"),
    ],
    0x0A: [
        ("error", "get_error_flags"),
        ("time_to_go", "get_remaining_mins"),
        ("voltage", "get_voltage"),
        ("current", "get_current"),
        ("io_status", "get_io_status"),
        ("warnings_alarms", "get_alarm_flags"),
        ("soc", "get_soc"),
        ("consumed_ah", "get_consumed_ah"),
        ("temperature", "get_battery_temperature"),
    ],
    0x0B: [
        ("device_state", "get_device_state"),
        ("charger_error", "get_charger_error"),
        ("battery_current", "get_battery_current"),
        ("battery_voltage", "get_battery_voltage"),
        ("ac_in_state", "get_active_ac_in"),
        ("ac_in_power", "get_active_ac_in_power"),
        ("ac_out_power", "get_active_ac_out_power"),
        ("pv_power", "get_pv_power"),
        ("yield_today", "get_yield_today"),
    ],
    0x0C: [
        ("device_state", "get_device_state"),
        ("error", "get_error"),
        ("battery_current", "get_battery_current"),
        ("battery_voltage", "get_battery_voltage"),
        ("ac_in_state", "get_ac_in_state"),
        ("ac_in_power", "get_ac_in_power"),
        ("ac_out_power", "get_ac_out_power"),
        ("alarm", "get_alarm"),
        ("battery_temperature", "get_battery_temperature"),
        ("soc", "get_soc"),
    ],
    0x0D: [
        ("meter_type", "get_meter_type"),
        ("voltage", "get_voltage"),
        ("alarm", "get_alarm"),
        ("aux_mode", "get_aux_mode"),
        ("current", "get_current"),
        ("starter_voltage", "get_starter_voltage"),
        ("temperature", "get_temperature"),
    ],
    0x0F: [
        ("charge_state", "get_charge_state"),
        ("charger_error", "get_charger_error"),
        ("output_voltage", "get_output_voltage"),
        ("output_current", "get_output_current"),
        ("input_voltage", "get_input_voltage"),
        ("input_current", "get_input_current"),
        ("off_reason", "get_off_reason"),
    ],
}
SHARED_RECORD_TYPES = sorted(FIELDS)  # all of ours except 0x06 Inverter RS, which theirs lacks


# --- field values theirs can parse (its enums) ---------------------------------------------------

STATES = values_of(OperationMode)
ERRORS = values_of(ChargerError)
SINGLE_ALARMS = values_of(AlarmReason)
SINGLE_OFF_REASONS = values_of(OffReason)

ENUM_FIELDS: dict[int, dict[str, list[int]]] = {
    0x01: {"charge_state": STATES, "charger_error": ERRORS},
    0x02: {"alarm": SINGLE_ALARMS, "aux_mode": values_of(AuxMode)},
    0x03: {"device_state": STATES, "alarm": SINGLE_ALARMS},
    0x04: {"charge_state": STATES, "charger_error": ERRORS, "off_reason": SINGLE_OFF_REASONS},
    0x05: {"balancer_status": [*values_of(BalancerStatus), 0xF]},
    0x08: {"charge_state": STATES, "charger_error": ERRORS},
    0x09: {
        "device_state": STATES,
        "output_state": [*values_of(OutputState), 0xFF],
        "error_code": ERRORS,
        "alarm": SINGLE_ALARMS,
        "warning": SINGLE_ALARMS,
        "off_reason": SINGLE_OFF_REASONS,
    },
    0x0B: {  # difference 4: only what a signed byte keeps positive
        "device_state": [v for v in values_of(MultiRSOperationMode) if v < 0x80],
        "charger_error": [v for v in ERRORS if v < 0x80],
    },
    0x0C: {"device_state": STATES, "alarm": [*values_of(AlarmNotification), 3]},
    0x0D: {
        "meter_type": [v & 0xFFFF for v in values_of(MeterType)],
        "alarm": SINGLE_ALARMS,
        "aux_mode": [0, 2, 3],
    },
    0x0F: {"charge_state": STATES, "charger_error": ERRORS, "off_reason": SINGLE_OFF_REASONS},
}


def parsable_raws(record_type: int) -> st.SearchStrategy[Raws]:
    """Random raw fields, enum fields restricted to members of their enums."""
    strategies: dict[str, st.SearchStrategy[int]] = {}
    enums = ENUM_FIELDS.get(record_type, {})
    for name, width, _signed, na, _conv in LAYOUTS[record_type]:
        if name in enums:
            strategies[name] = st.sampled_from(enums[name])
            continue
        any_value = st.integers(0, (1 << width) - 1)
        edges = (na, *EDGE_VALUES.get(name, ()))
        special = [v for v in edges if v is not None and v < 1 << width]
        strategies[name] = st.one_of(st.sampled_from(special), any_value) if special else any_value
    return st.fixed_dictionaries(strategies)


# raw values that exercise the documented differences
EDGE_VALUES: dict[str, tuple[int, ...]] = {
    "current": (0x3FFFFF, 0x1FFFFF),
    "aux": (0x7FFF, 0xFFFF, 0),
    "cell_voltage1": (0x00, 0x7E),
    "cell_voltage2": (0x00, 0x7E),
    "soc": (0x3FF, 0x7F),
}


# --- comparing -----------------------------------------------------------------------------------


def theirs_value(data: Any, getter: str) -> Any:
    if getter.startswith("cell_voltages["):
        value = data.get_cell_voltages()[int(getter[14:-1])]
    else:
        value = getattr(data, getter)()
    return value.value if isinstance(value, Enum) else value


def signed(raw: int, width: int) -> int:
    return raw - (1 << width) if raw >> (width - 1) else raw


@dataclass(frozen=True)
class Difference:
    """A documented case where the two decoders disagree on purpose."""

    reason: str
    applies: Callable[[Raws], bool]
    theirs: Callable[[Raws], Any]  # what theirs gives in that case
    ours: Callable[[Raws], Any]  # what ours gives in that case


def field_is(name: str, raw: int) -> Callable[[Raws], bool]:
    return lambda r: r[name] == raw


def aux_mode_is(mode: int, aux: int) -> Callable[[Raws], bool]:
    return lambda r: r["aux_mode"] == mode and r["aux"] == aux


DIFFERENCES: dict[tuple[int, str], list[Difference]] = {
    (0x02, "current"): [
        Difference("1: NA after sign conversion", lambda r: r["current"] == 0x3FFFFF,
                   lambda r: -0.001, lambda r: None),
        Difference("1: Smart Battery Sense 'no shunt'", lambda r: r["current"] == 0x1FFFFF,
                   lambda r: 2097.151, lambda r: None),
    ],
    (0x0D, "current"): [
        Difference("1: NA after sign conversion", lambda r: r["current"] == 0x3FFFFF,
                   lambda r: -0.001, lambda r: None),
        Difference("1: max positive", lambda r: r["current"] == 0x1FFFFF,
                   lambda r: 2097.151, lambda r: None),
    ],
    (0x0A, "soc"): [
        Difference("2: compared to 0x3FFF", lambda r: r["soc"] == 0x3FF,
                   lambda r: 102.3, lambda r: None),
    ],
    (0x0A, "consumed_ah"): [
        Difference("3: sign", lambda r: r["consumed_ah"] not in (0, 0xFFFFF),
                   lambda r: r["consumed_ah"] / 10, lambda r: -r["consumed_ah"] / 10),
    ],
    (0x0B, "battery_voltage"): [
        Difference("5: no NA check", lambda r: r["battery_voltage"] == 0x3FFF,
                   lambda r: 163.83, lambda r: None),
    ],
    (0x0B, "yield_today"): [
        Difference("6: kWh vs Wh", lambda r: r["yield_today"] != 0xFFFF,
                   lambda r: r["yield_today"] / 100, lambda r: r["yield_today"] * 10),
    ],
    (0x02, "starter_voltage"): [
        Difference("7: no NA check", aux_mode_is(0, 0x7FFF), lambda r: 327.67, lambda r: None),
    ],
    (0x0D, "starter_voltage"): [
        Difference("7: no NA check", aux_mode_is(0, 0x7FFF), lambda r: 327.67, lambda r: None),
    ],
    (0x0D, "temperature"): [
        Difference("7: 0 K is 'missing'", aux_mode_is(2, 0), lambda r: None, lambda r: -273.15),
    ],
    (0x02, "midpoint_voltage"): [
        Difference("7: no NA check", aux_mode_is(1, 0xFFFF), lambda r: 655.35, lambda r: None),
    ],
    (0x02, "temperature"): [
        Difference("7: no NA check", aux_mode_is(2, 0xFFFF), lambda r: 382.2, lambda r: None),
        Difference("7: 0 K is 'missing'", aux_mode_is(2, 0), lambda r: None, lambda r: -273.15),
    ],
    (0x03, "alarm"): [
        Difference("9: no alarm", lambda r: r["alarm"] == 0, lambda r: None, lambda r: 0),
    ],
    (0x0D, "alarm"): [
        Difference("9: no alarm", lambda r: r["alarm"] == 0, lambda r: None, lambda r: 0),
    ],
    **{
        (0x05, f"cell_voltage{i}"): [
            Difference("8: below 2.61 V", field_is(f"cell_voltage{i}", 0x00),
                       lambda r: -math.inf, lambda r: 2.60),
            Difference("8: above 3.85 V", field_is(f"cell_voltage{i}", 0x7E),
                       lambda r: math.inf, lambda r: 3.86),
        ]
        for i in range(1, 9)
    },
}  # fmt: skip


def their_parse(data: bytes, key: bytes) -> Any:
    parser = detect_device_type(data)
    assert parser is not None
    return parser(key.hex()).parse(data)


def compare(record_type: int, raws: Raws, key: bytes, nonce: int, model_id: int) -> set[str]:
    """Decode with both and check every value; returns the differences that applied."""
    data = advert(record_type, pack(record_type, raws), key, nonce, model_id)
    ours = decode_advertisement(data, key)
    theirs = their_parse(data, key)
    applied: set[str] = set()
    for our_key, getter in FIELDS[record_type]:
        their_value = theirs_value(theirs, getter)
        for difference in DIFFERENCES.get((record_type, our_key), []):
            if difference.applies(raws):
                assert their_value == pytest.approx(difference.theirs(raws)), difference.reason
                assert ours[our_key] == pytest.approx(difference.ours(raws)), difference.reason
                applied.add(difference.reason)
                break
        else:
            assert ours[our_key] == their_value, (our_key, raws)
    return applied


@pytest.mark.parametrize("record_type", SHARED_RECORD_TYPES)
@given(data=st.data(), key=st.binary(min_size=16, max_size=16), nonce=st.integers(0, 0xFFFF))
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_agrees_with_victron_ble(
    record_type: int, data: st.DataObject, key: bytes, nonce: int
) -> None:
    raws = data.draw(parsable_raws(record_type))
    compare(record_type, raws, key, nonce, model_id=0xA060)


@pytest.mark.parametrize(
    ("record_type", "raws", "reason"),
    [
        (0x02, {"current": 0x3FFFFF}, "1: NA after sign conversion"),
        (0x02, {"current": 0x1FFFFF}, "1: Smart Battery Sense 'no shunt'"),
        (0x0D, {"current": 0x3FFFFF}, "1: NA after sign conversion"),
        (0x0A, {"soc": 0x3FF}, "2: compared to 0x3FFF"),
        (0x0A, {"consumed_ah": 500}, "3: sign"),
        (0x0B, {"battery_voltage": 0x3FFF}, "5: no NA check"),
        (0x0B, {"yield_today": 1234}, "6: kWh vs Wh"),
        (0x02, {"aux_mode": 0, "aux": 0x7FFF}, "7: no NA check"),
        (0x02, {"aux_mode": 1, "aux": 0xFFFF}, "7: no NA check"),
        (0x02, {"aux_mode": 2, "aux": 0xFFFF}, "7: no NA check"),
        (0x02, {"aux_mode": 2, "aux": 0}, "7: 0 K is 'missing'"),
        (0x0D, {"aux_mode": 2, "aux": 0}, "7: 0 K is 'missing'"),
        (0x0D, {"aux_mode": 0, "aux": 0x7FFF}, "7: no NA check"),
        (0x05, {"cell_voltage3": 0x00}, "8: below 2.61 V"),
        (0x05, {"cell_voltage3": 0x7E}, "8: above 3.85 V"),
        (0x03, {"alarm": 0}, "9: no alarm"),
    ],
)
def test_each_documented_difference_is_real(record_type: int, raws: Raws, reason: str) -> None:
    """Every listed difference shows up on a concrete advert (so none is listed needlessly)."""
    base = {name: 1 for name, *_ in LAYOUTS[record_type]}  # a member of every enum of theirs
    applied = compare(record_type, {**base, **raws}, bytes(range(16)), 0x0102, 0xA060)
    assert reason in applied


@pytest.mark.parametrize(
    ("record_type", "raws"),
    [
        (0x04, {"off_reason": 0x0C}),  # switched off in the app and by the remote input
        (0x0F, {"off_reason": 0x81}),  # no input power + engine shutdown
        (0x0C, {"device_state": 8}),  # VE.Bus passthru
        (0x0B, {"device_state": 245}),  # Multi RS "starting up" read as a signed byte: -11
        (0x02, {"alarm": 0x05}),  # low voltage and low SOC at once
        (0x09, {"output_state": 2}),
        (0x0D, {"meter_type": 0}),
        (0x05, {"balancer_status": 5}),
        (0x01, {"charger_error": 125}),
    ],
)
def test_victron_ble_rejects_values_outside_its_enums(record_type: int, raws: Raws) -> None:
    """Difference 10: theirs raises ValueError, ours keeps the raw integer."""
    base = {name: (0 if na is None else na) for name, _, _, na, _ in LAYOUTS[record_type]}
    base |= {"aux_mode": 3} if "aux_mode" in base else {}
    key = bytes(range(16))
    data = advert(record_type, pack(record_type, {**base, **raws}), key, 7, 0xA060)
    with pytest.raises(ValueError, match="is not a valid"):
        their_parse(data, key)
    ours = decode_advertisement(data, key)
    for name, raw in raws.items():
        assert ours[name] == (signed(raw, 16) if name == "meter_type" else raw)


def test_smart_battery_sense() -> None:
    """Difference 11: theirs offers voltage and temperature only, the latter in mode 2 only."""
    key = bytes(range(16))
    raws = {
        "time_to_go": 0xFFFF, "voltage": 1222, "alarm": 0, "aux": 29565, "aux_mode": 2,
        "current": 0x1FFFFF, "consumed_ah": 0xFFFFF, "soc": 0x3FF,
    }  # fmt: skip
    data = advert(0x02, pack(0x02, raws), key, 0x155F, model_id=0xA3A4)
    theirs = their_parse(data, key)
    ours = decode_advertisement(data, key)
    assert (ours["voltage"], ours["temperature"]) == (12.22, 22.5)
    assert (theirs.get_voltage(), theirs.get_temperature()) == (12.22, 22.5)
    assert ours["current"] is None  # difference 1: theirs reads 2097.151 A under the hood
    starter_mode = advert(0x02, pack(0x02, {**raws, "aux_mode": 0}), key, 0x1560, 0xA3A4)
    with pytest.raises(KeyError):
        their_parse(starter_mode, key).get_temperature()
    assert decode_advertisement(starter_mode, key)["temperature"] is None


@pytest.mark.parametrize("record_type", SHARED_RECORD_TYPES)
@given(data=st.data(), key=st.binary(min_size=16, max_size=16), nonce=st.integers(0, 0xFFFF))
@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
def test_truncated_adverts(record_type: int, data: st.DataObject, key: bytes, nonce: int) -> None:
    """Difference 12: ours refuses a record shorter than its layout; theirs decodes padding."""
    raws = data.draw(parsable_raws(record_type))
    full = advert(record_type, pack(record_type, raws), key, nonce, 0xA060)
    cut = data.draw(st.integers(1, RECORD_LENGTHS[record_type]))
    short = full[:-cut]
    with pytest.raises(ProtocolError):
        decode_advertisement(short, key)
    with contextlib.suppress(ValueError, IndexError):  # its enums on padding; no ciphertext
        their_parse(short, key)  # otherwise: values read from its own padding


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ("100242a0016207adceb37b605d7e0ee21b24df5c", "adeccb947395801a4dd45a2eaa44bf17"),
        ("100289a302b040af925d09a4d89aa0128bdef48c6298a9", "aff4d0995b7d1e176c0c33ecb9e70dcd"),
    ],
    ids=["BlueSolar MPPT 75/15", "SmartShunt 500A/50mV"],
)
def test_captured_adverts_agree(data: str, key: str) -> None:
    """The real captures: every value both offer is identical (no difference applies here)."""
    advert_bytes, key_bytes = bytes.fromhex(data), bytes.fromhex(key)
    ours = decode_advertisement(advert_bytes, key_bytes)
    theirs = their_parse(advert_bytes, key_bytes)
    for our_key, getter in FIELDS[int(ours["record_type"] or 0)]:
        assert ours[our_key] == theirs_value(theirs, getter), our_key
