"""What VE.Direct fields and registers mean: units, enums, product ids, device families.

The text protocol sends every value as an ASCII integer in a device unit (mV, mA, ‰, 0.01 kWh
...); HEX registers carry little-endian integers with their own scales. This module turns
both into SI / Home Assistant units and names, and nothing else: no I/O, no state. Values a
device marks as "not available" (``---``, TTG -1, all-ones register sentinels) become ``None``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
import math
import struct
from typing import Final

from . import ProtocolError

__all__ = [
    "ALARM_REASONS",
    "CHARGE_STATES",
    "DEVICE_MODES",
    "ERRORS",
    "MPPT_STATES",
    "OFF_REASONS",
    "PRODUCTS",
    "REGISTERS",
    "SENSE_TEMPERATURE_RELEASE",
    "SENSE_VOLTAGE_RELEASE",
    "DeviceFamily",
    "Register",
    "bit_names",
    "decode_register",
    "device_family",
    "encode_register",
    "encode_register_raw",
    "enum_option",
    "enum_options",
    "parse_firmware",
    "parse_value",
    "primary_reason",
    "product_name",
]

# --- text protocol values ---------------------------------------------------------------

_SCALED: Final[dict[str, float]] = {
    # mV → V
    **dict.fromkeys(("V", "V2", "V3", "VS", "VM", "VPV", "H7", "H8", "H15", "H16"), 0.001),
    # mA → A, mAh → Ah
    **dict.fromkeys(("I", "I2", "I3", "IL", "CE", "H1", "H2", "H3", "H6"), 0.001),
    # ‰ → %
    "DM": 0.1,
    "SOC": 0.1,
    # 0.01 kWh → kWh, 0.01 V → V
    **dict.fromkeys(("H17", "H18", "H19", "H20", "H22", "AC_OUT_V"), 0.01),
    # 0.1 A → A
    "AC_OUT_I": 0.1,
}
_DECIMALS: Final = {0.001: 3, 0.01: 2, 0.1: 1}

_INTEGERS: Final = frozenset(
    {
        "P",
        "PPV",
        "T",
        "H4",
        "H5",
        "H9",
        "H10",
        "H11",
        "H12",
        "H13",
        "H14",
        "H21",
        "H23",
        "AC_OUT_S",
        "HSDS",
        "CS",
        "ERR",
        "MPPT",
        "MODE",
        "AR",
        "WARN",
        "MON",
    }
)
_HEX_INTEGERS: Final = frozenset({"PID", "OR", "CAP_BLE"})
_BOOLEANS: Final = frozenset({"LOAD", "Alarm", "Relay"})
_NOT_AVAILABLE: Final = "---"


def _int(raw: str) -> int | None:
    try:
        return int(raw)
    except ValueError:
        return None


def _hex_int(raw: str) -> int | None:
    text = raw[2:] if raw[:2] in ("0x", "0X") else raw
    try:
        return int(text, 16)
    except ValueError:
        return None


def parse_firmware(raw: str) -> str | None:
    """``FW`` → version text: ``"159"`` → ``"1.59"``, ``"0308"`` → ``"3.08"``,
    ``"C208"`` (release candidate C of 2.08) → ``"2.08-rc"``; ``FWE`` style ``"0208FF"``
    → ``"2.08"`` and ``"020801"`` → ``"2.08-beta-01"``.
    """
    raw = raw.strip()
    suffix = ""
    if len(raw) >= 5:
        # FWE: up to six digits, the last two are FF for a release or the beta number.
        build = raw[-2:]
        raw = raw[:-2]
        if build.upper() != "FF":
            if not build.isdigit():
                return None
            suffix = f"-beta-{build}"
    elif raw[:1].isalpha():
        raw = raw[1:]
        suffix = "-rc"
    if not raw.isdigit() or not raw.isascii():
        return None
    number = int(raw)
    return f"{number // 100}.{number % 100:02d}{suffix}"


def parse_value(label: str, raw: str) -> float | int | str | bool | None:
    """Convert one text-protocol value to SI units (V, A, Ah, %, kWh, °C, min).

    Unparseable numbers and "not available" markers give ``None``; this never raises.
    Labels this module does not know are returned unchanged as text.
    """
    scale = _SCALED.get(label)
    if scale is not None:
        number = _int(raw)
        if number is None:
            return None
        try:
            return round(number * scale, _DECIMALS[scale])
        except OverflowError:
            return None
    if label in _INTEGERS:
        return _int(raw)
    if label == "TTG":
        minutes = _int(raw)
        return None if minutes is None or minutes < 0 else minutes
    if label in _BOOLEANS:
        state = raw.strip().upper()
        return True if state == "ON" else False if state == "OFF" else None
    if label in _HEX_INTEGERS:
        return _hex_int(raw)
    if label in ("FW", "FWE"):
        return parse_firmware(raw)
    return raw


# --- enums -------------------------------------------------------------------------------

UNKNOWN: Final = "unknown"
NONE: Final = "none"

CHARGE_STATES: Final[dict[int, str]] = {
    0: "off",
    1: "low_power",
    2: "fault",
    3: "bulk",
    4: "absorption",
    5: "float",
    6: "storage",
    7: "equalize_manual",
    9: "inverting",
    11: "power_supply",
    245: "starting_up",
    246: "repeated_absorption",
    247: "auto_equalize",
    248: "battery_safe",
    252: "external_control",
}
"""CS field and register 0x0201 (device state)."""

ERRORS: Final[dict[int, str]] = {
    0: "no_error",
    2: "battery_voltage_too_high",
    17: "charger_temperature_too_high",
    18: "charger_over_current",
    19: "charger_current_reversed",
    20: "bulk_time_limit_exceeded",
    21: "current_sensor_issue",
    26: "terminals_overheated",
    28: "converter_issue",
    33: "input_voltage_too_high",
    34: "input_current_too_high",
    38: "input_shutdown_battery_voltage",
    39: "input_shutdown_current_flow",
    65: "lost_communication",
    66: "synchronised_charging_config",
    67: "bms_connection_lost",
    68: "network_misconfigured",
    116: "calibration_data_lost",
    117: "incompatible_firmware",
    119: "settings_invalid",
}
"""ERR field and register 0xEDDA."""

MPPT_STATES: Final[dict[int, str]] = {
    0: "off",
    1: "voltage_current_limited",
    2: "mpp_tracker_active",
}

DEVICE_MODES: Final[dict[int, str]] = {
    1: "charger",
    2: "inverter",
    4: "off",
    5: "eco",
    253: "hibernate",
}

OFF_REASONS: Final[dict[int, str]] = {
    0x001: "no_input_power",
    0x002: "power_switch",
    0x004: "device_mode",
    0x008: "remote_input",
    0x010: "protection_active",
    0x020: "paygo",
    0x040: "bms",
    0x080: "engine_shutdown",
    0x100: "analysing_input_voltage",
}
"""OR field (and register 0x0207): bit → name."""

ALARM_REASONS: Final[dict[int, str]] = {
    0x0001: "low_voltage",
    0x0002: "high_voltage",
    0x0004: "low_soc",
    0x0008: "low_starter_voltage",
    0x0010: "high_starter_voltage",
    0x0020: "low_temperature",
    0x0040: "high_temperature",
    0x0080: "mid_voltage",
    0x0100: "overload",
    0x0200: "dc_ripple",
    0x0400: "low_ac_out_voltage",
    0x0800: "high_ac_out_voltage",
    0x1000: "short_circuit",
    0x2000: "bms_lockout",
}
"""AR and WARN fields: bit → name."""


def enum_option(table: Mapping[int, str], value: int | None) -> str:
    """Name of ``value`` in an enum table; ``"unknown"`` when missing or not in the table."""
    if value is None:
        return UNKNOWN
    return table.get(value, UNKNOWN)


def enum_options(table: Mapping[int, str]) -> list[str]:
    """Every option of an enum table plus ``"unknown"``: the ``options`` of an ENUM sensor."""
    return [*dict.fromkeys(table.values()), UNKNOWN]


def bit_names(table: Mapping[int, str], value: int | None) -> list[str]:
    """Names of the bits set in ``value``, lowest bit first; unnamed bits are left out."""
    if not value:
        return []
    return [name for bit, name in sorted(table.items()) if value & bit]


def primary_reason(table: Mapping[int, str], value: int | None) -> str:
    """One state for a bit field: the lowest set bit's name, ``"none"`` when no bit is set.

    ``"unknown"`` when the value is missing or only unnamed bits are set.
    """
    if value is None:
        return UNKNOWN
    if value == 0:
        return NONE
    names = bit_names(table, value)
    return names[0] if names else UNKNOWN


# --- products and device families --------------------------------------------------------

PRODUCTS: Final[dict[int, str]] = {
    0x0203: "BMV-700",
    0x0204: "BMV-702",
    0x0205: "BMV-700H",
    0x0300: "BlueSolar MPPT 70|15",
    0xA040: "BlueSolar MPPT 75|50",
    0xA041: "BlueSolar MPPT 150|35",
    0xA042: "BlueSolar MPPT 75|15",
    0xA043: "BlueSolar MPPT 100|15",
    0xA044: "BlueSolar MPPT 100|30",
    0xA045: "BlueSolar MPPT 100|50",
    0xA046: "BlueSolar MPPT 150|70",
    0xA047: "BlueSolar MPPT 150|100",
    0xA048: "BlueSolar MPPT 75|50 rev2",
    0xA049: "BlueSolar MPPT 100|50 rev2",
    0xA04A: "BlueSolar MPPT 100|30 rev2",
    0xA04B: "BlueSolar MPPT 150|35 rev2",
    0xA04C: "BlueSolar MPPT 75|10",
    0xA04D: "BlueSolar MPPT 150|45",
    0xA04E: "BlueSolar MPPT 150|60",
    0xA04F: "BlueSolar MPPT 150|85",
    0xA050: "SmartSolar MPPT 250|100",
    0xA051: "SmartSolar MPPT 150|100",
    0xA052: "SmartSolar MPPT 150|85",
    0xA053: "SmartSolar MPPT 75|15",
    0xA054: "SmartSolar MPPT 75|10",
    0xA055: "SmartSolar MPPT 100|15",
    0xA056: "SmartSolar MPPT 100|30",
    0xA057: "SmartSolar MPPT 100|50",
    0xA058: "SmartSolar MPPT 150|35",
    0xA059: "SmartSolar MPPT 150|100 rev2",
    0xA05A: "SmartSolar MPPT 150|85 rev2",
    0xA05B: "SmartSolar MPPT 250|70",
    0xA05C: "SmartSolar MPPT 250|85",
    0xA05D: "SmartSolar MPPT 250|60",
    0xA05E: "SmartSolar MPPT 250|45",
    0xA05F: "SmartSolar MPPT 100|20",
    0xA060: "SmartSolar MPPT 100|20 48V",
    0xA061: "SmartSolar MPPT 150|45",
    0xA062: "SmartSolar MPPT 150|60",
    0xA063: "SmartSolar MPPT 150|70",
    0xA064: "SmartSolar MPPT 250|85 rev2",
    0xA065: "SmartSolar MPPT 250|100 rev2",
    0xA066: "BlueSolar MPPT 100|20",
    0xA067: "BlueSolar MPPT 100|20 48V",
    0xA068: "SmartSolar MPPT 250|60 rev2",
    0xA069: "SmartSolar MPPT 250|70 rev2",
    0xA06A: "SmartSolar MPPT 150|45 rev2",
    0xA06B: "SmartSolar MPPT 150|60 rev2",
    0xA06C: "SmartSolar MPPT 150|70 rev2",
    0xA06D: "SmartSolar MPPT 150|85 rev3",
    0xA06E: "SmartSolar MPPT 150|100 rev3",
    0xA06F: "BlueSolar MPPT 150|45 rev2",
    0xA070: "BlueSolar MPPT 150|60 rev2",
    0xA071: "BlueSolar MPPT 150|70 rev2",
    0xA102: "SmartSolar MPPT VE.Can 150/70",
    0xA103: "SmartSolar MPPT VE.Can 150/45",
    0xA104: "SmartSolar MPPT VE.Can 150/60",
    0xA105: "SmartSolar MPPT VE.Can 150/85",
    0xA106: "SmartSolar MPPT VE.Can 150/100",
    0xA107: "SmartSolar MPPT VE.Can 250/45",
    0xA108: "SmartSolar MPPT VE.Can 250/60",
    0xA109: "SmartSolar MPPT VE.Can 250/70",
    0xA10A: "SmartSolar MPPT VE.Can 250/85",
    0xA10B: "SmartSolar MPPT VE.Can 250/100",
    0xA10C: "SmartSolar MPPT VE.Can 150/70 rev2",
    0xA10D: "SmartSolar MPPT VE.Can 150/85 rev2",
    0xA10E: "SmartSolar MPPT VE.Can 150/100 rev2",
    0xA10F: "BlueSolar MPPT VE.Can 150/100",
    0xA112: "BlueSolar MPPT VE.Can 250/70",
    0xA113: "BlueSolar MPPT VE.Can 250/100",
    0xA114: "SmartSolar MPPT VE.Can 250/70 rev2",
    0xA115: "SmartSolar MPPT VE.Can 250/100 rev2",
    0xA116: "SmartSolar MPPT VE.Can 250/85 rev2",
    0xA201: "Phoenix Inverter 12V 250VA 230V",
    0xA202: "Phoenix Inverter 24V 250VA 230V",
    0xA204: "Phoenix Inverter 48V 250VA 230V",
    0xA211: "Phoenix Inverter 12V 375VA 230V",
    0xA212: "Phoenix Inverter 24V 375VA 230V",
    0xA214: "Phoenix Inverter 48V 375VA 230V",
    0xA221: "Phoenix Inverter 12V 500VA 230V",
    0xA222: "Phoenix Inverter 24V 500VA 230V",
    0xA224: "Phoenix Inverter 48V 500VA 230V",
    0xA231: "Phoenix Inverter 12V 250VA 230V",
    0xA232: "Phoenix Inverter 24V 250VA 230V",
    0xA234: "Phoenix Inverter 48V 250VA 230V",
    0xA239: "Phoenix Inverter 12V 250VA 120V",
    0xA23A: "Phoenix Inverter 24V 250VA 120V",
    0xA23C: "Phoenix Inverter 48V 250VA 120V",
    0xA241: "Phoenix Inverter 12V 375VA 230V",
    0xA242: "Phoenix Inverter 24V 375VA 230V",
    0xA244: "Phoenix Inverter 48V 375VA 230V",
    0xA249: "Phoenix Inverter 12V 375VA 120V",
    0xA24A: "Phoenix Inverter 24V 375VA 120V",
    0xA24C: "Phoenix Inverter 48V 375VA 120V",
    0xA251: "Phoenix Inverter 12V 500VA 230V",
    0xA252: "Phoenix Inverter 24V 500VA 230V",
    0xA254: "Phoenix Inverter 48V 500VA 230V",
    0xA259: "Phoenix Inverter 12V 500VA 120V",
    0xA25A: "Phoenix Inverter 24V 500VA 120V",
    0xA25C: "Phoenix Inverter 48V 500VA 120V",
    0xA261: "Phoenix Inverter 12V 800VA 230V",
    0xA262: "Phoenix Inverter 24V 800VA 230V",
    0xA264: "Phoenix Inverter 48V 800VA 230V",
    0xA269: "Phoenix Inverter 12V 800VA 120V",
    0xA26A: "Phoenix Inverter 24V 800VA 120V",
    0xA26C: "Phoenix Inverter 48V 800VA 120V",
    0xA271: "Phoenix Inverter 12V 1200VA 230V",
    0xA272: "Phoenix Inverter 24V 1200VA 230V",
    0xA274: "Phoenix Inverter 48V 1200VA 230V",
    0xA279: "Phoenix Inverter 12V 1200VA 120V",
    0xA27A: "Phoenix Inverter 24V 1200VA 120V",
    0xA27C: "Phoenix Inverter 48V 1200VA 120V",
    0xA281: "Phoenix Inverter 12V 1600VA 230V",
    0xA282: "Phoenix Inverter 24V 1600VA 230V",
    0xA284: "Phoenix Inverter 48V 1600VA 230V",
    0xA291: "Phoenix Inverter 12V 2000VA 230V",
    0xA292: "Phoenix Inverter 24V 2000VA 230V",
    0xA294: "Phoenix Inverter 48V 2000VA 230V",
    0xA2A1: "Phoenix Inverter 12V 3000VA 230V",
    0xA2A2: "Phoenix Inverter 24V 3000VA 230V",
    0xA2A4: "Phoenix Inverter 48V 3000VA 230V",
    0xA340: "Phoenix Smart IP43 Charger 12|50 (1+1)",
    0xA341: "Phoenix Smart IP43 Charger 12|50 (3)",
    0xA342: "Phoenix Smart IP43 Charger 24|25 (1+1)",
    0xA343: "Phoenix Smart IP43 Charger 24|25 (3)",
    0xA344: "Phoenix Smart IP43 Charger 12|30 (1+1)",
    0xA345: "Phoenix Smart IP43 Charger 12|30 (3)",
    0xA346: "Phoenix Smart IP43 Charger 24|16 (1+1)",
    0xA347: "Phoenix Smart IP43 Charger 24|16 (3)",
    # Battery monitors newer than the 3.28 table (PROTOCOLS.md §3).
    0xA381: "BMV-712 Smart",
    0xA389: "SmartShunt 500A/50mV",
    0xA38A: "SmartShunt 1000A/50mV",
    0xA38B: "SmartShunt 2000A/50mV",
}
"""Product id → name: the VE.Direct Protocol 3.28 table (0xA048 from the MPPT HEX document)."""


def product_name(pid: int | None) -> str | None:
    """Human name of a product id, ``None`` when unknown."""
    return None if pid is None else PRODUCTS.get(pid)


class DeviceFamily(StrEnum):
    """What kind of Victron device sits on the port; decides which entities make sense."""

    MPPT = "mppt"
    BATTERY_MONITOR = "battery_monitor"
    INVERTER = "inverter"
    CHARGER = "charger"
    UNKNOWN = "unknown"


_FAMILY_RANGES: Final[tuple[tuple[int, int, DeviceFamily], ...]] = (
    (0x0203, 0x0205, DeviceFamily.BATTERY_MONITOR),
    (0x0300, 0x0300, DeviceFamily.MPPT),
    (0xA040, 0xA07F, DeviceFamily.MPPT),
    (0xA100, 0xA11F, DeviceFamily.MPPT),
    (0xA200, 0xA2FF, DeviceFamily.INVERTER),
    (0xA380, 0xA38F, DeviceFamily.BATTERY_MONITOR),
    (0xA300, 0xA3FF, DeviceFamily.CHARGER),
)


def device_family(pid: int | None, labels: Iterable[str] = ()) -> DeviceFamily:
    """Family by product id range, else by which text labels the device sends."""
    if pid is not None:
        for low, high, family in _FAMILY_RANGES:
            if low <= pid <= high:
                return family
    seen = set(labels)
    if seen & {"PPV", "VPV", "MPPT"}:
        return DeviceFamily.MPPT
    if seen & {"SOC", "CE", "TTG"}:
        return DeviceFamily.BATTERY_MONITOR
    if seen & {"AC_OUT_V", "AC_OUT_I", "AC_OUT_S"}:
        return DeviceFamily.INVERTER
    return DeviceFamily.UNKNOWN


# --- HEX registers -----------------------------------------------------------------------

SENSE_VOLTAGE_RELEASE: Final = 0xFFFF
"""Raw value for 0x2002 that makes a charger stop using the remote battery voltage at once."""

SENSE_TEMPERATURE_RELEASE: Final = 0x7FFF
"""Raw value for 0x2003 that makes a charger stop using the remote battery temperature."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Register:
    """One HEX register: how its little-endian value maps to a number in ``unit``.

    ``value = raw * scale + offset`` rounded to the scale's decimals; ``not_available`` is
    the raw sentinel that means "no data" and decodes to ``None``.
    """

    id: int
    name: str
    fmt: str
    scale: float = 1.0
    unit: str | None = None
    offset: float = 0.0
    writable: bool = False
    not_available: int | None = None

    @property
    def size(self) -> int:
        """Length of the value on the wire in bytes."""
        return struct.calcsize(self.fmt)


_U8, _U16, _S16, _U32, _S32 = "<B", "<H", "<h", "<I", "<i"

REGISTERS: Final[dict[int, Register]] = {
    reg.id: reg
    for reg in (
        Register(id=0x0100, name="product_id", fmt=_U32),
        Register(id=0x0200, name="device_mode", fmt=_U8, writable=True),
        Register(id=0x0201, name="device_state", fmt=_U8, not_available=0xFF),
        Register(id=0x0207, name="device_off_reason", fmt=_U32),
        Register(id=0xEDBB, name="panel_voltage", fmt=_U16, scale=0.01, unit="V"),
        Register(id=0xEDBC, name="panel_power", fmt=_U32, scale=0.01, unit="W"),
        Register(id=0xEDBD, name="panel_current", fmt=_U16, scale=0.1, unit="A"),
        Register(id=0xEDD5, name="charger_voltage", fmt=_U16, scale=0.01, unit="V"),
        Register(id=0xEDD7, name="charger_current", fmt=_U16, scale=0.1, unit="A"),
        Register(id=0xEDDA, name="charger_error", fmt=_U8),
        Register(id=0xEDDB, name="charger_internal_temperature", fmt=_S16, scale=0.01, unit="°C"),
        # Nominal system voltage the charger is set to (12/24/36/48; 0 = auto-detect pending).
        Register(id=0xEDEF, name="battery_voltage_setting", fmt=_U8, unit="V"),
        Register(
            id=0xEDEC,
            name="battery_temperature",
            fmt=_U16,
            scale=0.01,
            offset=-273.15,
            unit="°C",
            not_available=0xFFFF,
        ),
        Register(
            id=0xEDF0,
            name="battery_maximum_current",
            fmt=_U16,
            scale=0.1,
            unit="A",
            writable=True,
        ),
        Register(
            id=0xEDF6, name="battery_float_voltage", fmt=_U16, scale=0.01, unit="V", writable=True
        ),
        Register(
            id=0xEDF7,
            name="battery_absorption_voltage",
            fmt=_U16,
            scale=0.01,
            unit="V",
            writable=True,
        ),
        Register(id=0xEDAB, name="load_output_control", fmt=_U8, writable=True),
        Register(id=0xEDA8, name="load_output_state", fmt=_U8),
        Register(id=0x2001, name="charge_voltage_setpoint", fmt=_U16, scale=0.01, unit="V"),
        Register(
            id=0x2002,
            name="battery_voltage_sense",
            fmt=_U16,
            scale=0.01,
            unit="V",
            writable=True,
            not_available=SENSE_VOLTAGE_RELEASE,
        ),
        Register(
            id=0x2003,
            name="battery_temperature_sense",
            fmt=_S16,
            scale=0.01,
            unit="°C",
            writable=True,
            not_available=SENSE_TEMPERATURE_RELEASE,
        ),
        Register(id=0x200A, name="battery_charge_current", fmt=_S32, scale=0.001, unit="A"),
        Register(id=0x200F, name="network_status", fmt=_U8),
        Register(id=0x2015, name="charge_current_limit", fmt=_U16, scale=0.1, unit="A"),
        # Written by a network master ([VEHEX] "Total DC input power"); a charger nobody
        # wrote it to answers all ones, which is "not available", not 42.9 MW.
        Register(
            id=0x2027,
            name="total_dc_input_power",
            fmt=_U32,
            scale=0.01,
            unit="W",
            not_available=0xFFFFFFFF,
        ),
        # Battery monitors (BMV / SmartShunt).
        Register(id=0xED8D, name="main_voltage", fmt=_S16, scale=0.01, unit="V"),
        Register(id=0xED8F, name="current", fmt=_S16, scale=0.1, unit="A"),
        Register(id=0xED8E, name="power", fmt=_S16, unit="W"),
        Register(id=0x0FFF, name="state_of_charge", fmt=_U16, scale=0.01, unit="%"),
        Register(id=0x0FFE, name="time_to_go", fmt=_U16, unit="min", not_available=0xFFFF),
    )
}
"""The HEX registers this integration reads or writes (PROTOCOLS.md §3, [VEHEX] §1.1).

"Not available" sentinels, so that a missing reading never shows as a number: [VEHEX] names
0x0201 = 255 (UNAVAILABLE), 0xEDEC = 0xFFFF (N/A), 0x2002 = 0xFFFF and 0x2003 = 0x7FFF (remote
sense released or timed out); 0x2027 answers 0xFFFFFFFF until a network master writes it, as
the un32 history values do when absent; a BMV's 0x0FFE time-to-go is 0xFFFF while the battery
is not discharging. The other registers here have no documented sentinel.
"""

_PRODUCT_ID_REGISTER: Final = 0x0100


def _register(register: int) -> Register:
    try:
        return REGISTERS[register]
    except KeyError:
        raise ProtocolError(f"unknown VE.Direct register 0x{register:04X}") from None


def _decimals(scale: float) -> int:
    return max(0, -math.floor(math.log10(scale) + 1e-9))


def decode_register(register: int, value: bytes) -> float | int | None:
    """Decode a register value (``HexMessage.value``) to its unit; ``None`` = not available.

    Raises :class:`ProtocolError` for an unknown register or a value of the wrong length.
    """
    reg = _register(register)
    if register == _PRODUCT_ID_REGISTER and len(value) == 2:
        # Firmware before 1.30 answers with two bytes (instance and reserved byte absent).
        return int.from_bytes(value, "little")
    if len(value) != reg.size:
        raise ProtocolError(f"register 0x{register:04X} needs {reg.size} bytes, got {len(value)}")
    (raw,) = struct.unpack(reg.fmt, value)
    if register == _PRODUCT_ID_REGISTER:
        # Byte 0 instance, bytes 1-2 product id, byte 3 reserved.
        return int(raw >> 8 & 0xFFFF)
    if raw == reg.not_available:
        return None
    if reg.scale == 1.0 and reg.offset == 0.0:
        return int(raw)
    return round(float(raw) * reg.scale + reg.offset, _decimals(reg.scale))


def encode_register_raw(register: int, raw: int) -> bytes:
    """Pack a raw integer for a known register (e.g. :data:`SENSE_VOLTAGE_RELEASE`)."""
    reg = _register(register)
    try:
        return struct.pack(reg.fmt, raw)
    except struct.error as err:
        raise ProtocolError(f"raw value {raw!r} does not fit register 0x{register:04X}") from err


def encode_register(register: int, value: float) -> bytes:
    """Encode a value in the register's unit for a set command; writable registers only.

    Values that do not fit, that are not finite or that would hit the register's
    "not available" sentinel raise :class:`ProtocolError`; to release a sensed value use
    :func:`encode_register_raw` with the release constant.
    """
    reg = _register(register)
    if not reg.writable:
        raise ProtocolError(f"register 0x{register:04X} ({reg.name}) is read-only")
    if not math.isfinite(value):
        raise ProtocolError(f"value {value!r} for register 0x{register:04X} is not finite")
    raw = round((value - reg.offset) / reg.scale)
    if raw == reg.not_available:
        raise ProtocolError(f"value {value!r} is the 'not available' marker of 0x{register:04X}")
    return encode_register_raw(register, raw)
