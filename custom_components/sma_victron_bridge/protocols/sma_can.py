"""SMA Sunny Island CAN codec: the frames an external BMS sends and the SI's own broadcast.

Source: SMA "Connecting Batteries with external BMS to SUNNY ISLAND 6.0H-11"
(FSS-ConnectingBat-TI-en-10, called [SMA-TI] below) for 0x351-0x35F and 0x305/0x306; the other
broadcast frames follow public decoders that were cross-checked against each other (see
PROTOCOLS.md section 1).

All fields are little-endian. The SI rejects out-of-range BMS values silently and keeps the last
accepted one, so a value outside the accepted range must never reach the wire. The encoder moves a
limit into the range only in the safe direction: less charge voltage, less current, an earlier
discharge stop. A value that would have to move the other way (a charge voltage below the SI's
minimum, a discharge stop above its maximum) means the pack does not fit this inverter; that
raises :class:`UnsafeFrameValue`, so the caller sends safe frames (:func:`safe_bms_frames`)
instead. A non-finite limit means the caller has no value at all; guessing one would be unsafe,
so it raises :class:`ProtocolError` too.

Pure module: no Home Assistant, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
import math
import struct
from typing import Final

from . import ProtocolError

type ByteData = bytes | bytearray | memoryview
type SiValue = float | int | bool
type BmsValue = float | int | str | None

# --- identifiers -------------------------------------------------------------------------------

# Frames the BMS sends to the SI [SMA-TI 5.3].
ID_CHARGE_LIMITS: Final = 0x351
ID_SOC: Final = 0x355
ID_BATTERY_MEASUREMENTS: Final = 0x356
ID_ALARMS: Final = 0x35A
ID_MANUFACTURER: Final = 0x35E
ID_BATTERY_INFO: Final = 0x35F
ID_QUICK_STOP: Final = 0x00F
"""Remote quick stop (no data): the SI goes to standby at once. Optional; never encoded here."""

BMS_FRAME_IDS: Final[tuple[int, ...]] = (
    ID_CHARGE_LIMITS,
    ID_SOC,
    ID_BATTERY_MEASUREMENTS,
    ID_ALARMS,
    ID_MANUFACTURER,
    ID_BATTERY_INFO,
)

# Frames the SI broadcasts about once a second.
ID_EXTERNAL_POWER: Final = 0x300
ID_INVERTER_POWER: Final = 0x301
ID_EXTERNAL_REACTIVE_POWER: Final = 0x302
ID_INVERTER_REACTIVE_POWER: Final = 0x303
ID_OUTPUT_AC: Final = 0x304
ID_BATTERY: Final = 0x305
ID_STATUS: Final = 0x306
ID_RELAYS: Final = 0x307
ID_LOAD: Final = 0x308
ID_EXTERNAL_AC: Final = 0x309
ID_ENERGY: Final = 0x30A
ID_FREQUENCY: Final = 0x010

SI_FRAME_IDS: Final[tuple[int, ...]] = (
    ID_FREQUENCY,
    ID_EXTERNAL_POWER,
    ID_INVERTER_POWER,
    ID_EXTERNAL_REACTIVE_POWER,
    ID_INVERTER_REACTIVE_POWER,
    ID_OUTPUT_AC,
    ID_BATTERY,
    ID_STATUS,
    ID_RELAYS,
    ID_LOAD,
    ID_EXTERNAL_AC,
    ID_ENERGY,
)

# --- timing [SMA-TI 5.1] -----------------------------------------------------------------------

SEND_PERIOD: Final = 1.0
"""Usual period of every BMS frame, seconds."""
MIN_PERIOD: Final = 0.2
"""Inhibit time: the same id must never be sent faster than this, seconds."""
SOC_TIMEOUT: Final = 60.0
"""No 0x355 for this long: fault F952 ExtBMSTimeout, standby, defaults, SOC 0 % -> shutdown."""
LIMITS_TIMEOUT: Final = 60.0
"""No 0x351 for this long: warning W952 WrnExtBMSTmOut."""
FAULT_SOC_TIMEOUT: Final = "F952"
WARNING_LIMITS_TIMEOUT: Final = "W952"
CHARGING_PROCEDURE_EXTERNAL_BMS: Final = 10
"""0x306 byte 2 when the SI runs on an external BMS."""

# --- accepted ranges and defaults [SMA-TI 5.3 table, 4.2] -------------------------------------

CHARGE_VOLTAGE_RANGE: Final = (41.0, 63.0)
DISCHARGE_VOLTAGE_RANGE: Final = (41.0, 48.0)
CURRENT_LIMIT_RANGE: Final = (0.0, 1200.0)
SOC_RANGE: Final = (0.0, 100.0)
SOH_RANGE: Final = (0.0, 100.0)

SI_DEFAULTS: Final[Mapping[str, float]] = {
    "charge_voltage": 54.0,
    "charge_current_limit": 0.0,
    "discharge_current_limit": 0.0,
    # The 5.3 table gives 41 V; 4.2 lists parameter 226.02 BatDiChgVtg with 42 V. The table is
    # the CAN contract, so 41 V is used here.
    "discharge_voltage": 41.0,
    "soc": 0.0,
    "soh": 100.0,
    "voltage": 0.0,
    "current": 0.0,
    "temperature": 25.0,
}
"""What the SI uses until a BMS overwrites it, after an "invalid" marker and after F952."""

INVALID_S16: Final = 0x8000
"""Signed 16-bit "invalid": the SI returns that field to its default."""
INVALID_U16: Final = 0xFFFF
"""Unsigned 16-bit "invalid": the SI returns that field to its default."""
_INVALID_S16_RAW: Final = -0x8000

MAX_DLC: Final = 8

# --- BMS frames --------------------------------------------------------------------------------


class UnsafeFrameValue(ProtocolError):  # noqa: N818 - reads as a sentence, like UnsafeSetting
    """A limit the SI cannot take and the encoder must not move into its range.

    Raised for a charge voltage below the SI's minimum and a discharge voltage above its maximum:
    the nearest accepted value would charge the pack above its own charge voltage, or let it
    discharge below its own cut-off. The caller sends safe frames instead.
    """

    def __init__(self, field: str, value: float, reason: str) -> None:
        """Name the field and the value that was refused."""
        super().__init__(f"{field} {value:g}: {reason}")
        self.field = field
        self.value = value


@dataclass(frozen=True, slots=True)
class BmsFrameState:
    """Everything the BMS frames carry, in SI units; the input of :func:`encode_bms_frames`.

    ``voltage``, ``current`` (+ = charging) and ``temperature`` are logged by the SI only; None
    sends the documented "invalid" marker. ``alarms``/``warnings`` are the 4 bytes each of 0x35A as
    little-endian integers (see :func:`encode_alarm_bits`). ``battery_type`` and ``bms_version``
    fill 0x35F's display fields; their default is the "invalid" marker.
    """

    charge_voltage: float
    charge_current_limit: float
    discharge_current_limit: float
    discharge_voltage: float
    soc: float
    soh: float
    voltage: float | None
    current: float | None
    temperature: float | None
    alarms: int
    warnings: int
    manufacturer: str
    capacity_ah: int
    battery_type: int = INVALID_U16
    bms_version: int = INVALID_U16


_U16X4: Final = struct.Struct("<HhhH")
_U16X3: Final = struct.Struct("<HHH")
_S16X3: Final = struct.Struct("<hhh")
_U32X2: Final = struct.Struct("<II")
_U16X4_PLAIN: Final = struct.Struct("<HHHH")
_U16X2: Final = struct.Struct("<HH")
_U16: Final = struct.Struct("<H")
_S16_MAX: Final = 0x7FFF
_U16_MAX_VALID: Final = 0xFFFE
_U32_MAX: Final = 0xFFFFFFFF
_MANUFACTURER_LEN: Final = 8


_RAW_EPSILON: Final = 1e-6
"""Slack when a voltage is rounded toward safety: 55.2 computed as 55.199999999999996 is still
sent as 552, not 551 (0.1 V steps; the slack is far below one step)."""


def _finite(name: str, value: float) -> float:
    if math.isnan(value):
        raise ProtocolError(f"{name} is NaN")
    return value


def _finite_limit(name: str, value: float) -> float:
    """A limit must be a real number: an infinite one is as unknown as a NaN."""
    value = _finite(name, value)
    if math.isinf(value):
        raise ProtocolError(f"{name} is infinite")
    return value


def _clamped_raw(name: str, value: float, low: float, high: float, factor: int) -> int:
    """Clamp into [low, high] (the SI's accepted range), then scale to the raw integer."""
    value = _finite(name, value)
    return round(min(max(value, low), high) * factor)


def _current_limit_raw(name: str, value: float) -> int:
    """0.1 A steps in 0-1200 A: clamping a current limit only ever lowers it (or stops it at 0)."""
    return _clamped_raw(name, _finite_limit(name, value), *CURRENT_LIMIT_RANGE, 10)


def _charge_voltage_raw(value: float) -> int:
    """CVL in 0.1 V steps, rounded down and clamped down only.

    Above the SI's maximum the maximum goes out: the pack is charged less, which is safe. Below
    the minimum there is no safe nearest value, so :class:`UnsafeFrameValue` is raised: 41.0 V
    instead of an 11-cell LiFePO4 pack's 40.2 V would overcharge it.
    """
    value = _finite_limit("charge_voltage", value)
    low, high = CHARGE_VOLTAGE_RANGE
    raw = math.floor(min(value, high) * 10 + _RAW_EPSILON) if value >= low - 1 else 0
    if raw < round(low * 10):
        raise UnsafeFrameValue(
            "charge_voltage",
            value,
            f"below the Sunny Island's minimum of {low:g} V; sending {low:g} V would charge the "
            "pack above its own charge voltage",
        )
    return raw


def _discharge_voltage_raw(value: float) -> int:
    """DVL in 0.1 V steps, rounded up and clamped up only.

    The SI stops discharging below DVL. Below its minimum the minimum goes out: the SI stops
    earlier than the pack would, which is safe. Above its maximum (DESIGN invariant 2: the
    configuration only allows packs whose voltages fit) there is no safe nearest value: 48 V
    would let the SI discharge the pack below its own cut-off, so :class:`UnsafeFrameValue` is
    raised instead.
    """
    value = _finite_limit("discharge_voltage", value)
    low, high = DISCHARGE_VOLTAGE_RANGE
    raw = math.ceil(max(value, low) * 10 - _RAW_EPSILON) if value <= high + 1 else _U32_MAX
    if raw > round(high * 10):
        raise UnsafeFrameValue(
            "discharge_voltage",
            value,
            f"above the Sunny Island's maximum of {high:g} V; sending {high:g} V would let it "
            "discharge the pack below its own cut-off",
        )
    return raw


def _s16_or_invalid(name: str, value: float | None, factor: int) -> int:
    """Scale a logged measurement; None -> the signed "invalid" marker, overflow saturates."""
    if value is None:
        return _INVALID_S16_RAW
    return round(min(max(_finite(name, value) * factor, -_S16_MAX), _S16_MAX))


def _u16_field(name: str, value: int) -> int:
    if not 0 <= value <= INVALID_U16:
        raise ProtocolError(f"{name} {value} does not fit 16 bits")
    return value


def _u32_field(name: str, value: int) -> int:
    if not 0 <= value <= _U32_MAX:
        raise ProtocolError(f"{name} {value:#x} does not fit 32 bits")
    return value


def encode_manufacturer(name: str) -> bytes:
    """0x35E payload: ASCII (non-ASCII characters become '?'), cut or space-padded to 8 bytes."""
    return name.encode("ascii", "replace")[:_MANUFACTURER_LEN].ljust(_MANUFACTURER_LEN, b" ")


def encode_bms_frames(state: BmsFrameState) -> dict[int, bytes]:
    """Build every BMS frame payload, keyed by CAN id, every value inside the SI's ranges.

    0x351 CVL U16 0.1 V | CCL S16 0.1 A | DCL S16 0.1 A | DVL U16 0.1 V (8 bytes).
    0x355 SOC U16 1 % | SOH U16 1 % | HiResSOC U16 0.01 % (6 bytes: the documented fields only).
    0x356 voltage S16 0.01 V | current S16 0.1 A | temperature S16 0.1 degC (6 bytes).
    0x35A alarms U32 | warnings U32. 0x35E manufacturer, 8 ASCII bytes.
    0x35F battery type U16 | BMS version U16 | capacity U16 Ah | manufacturer id U16 (invalid).

    The 0x351 limits move only toward safety (DESIGN invariant 2): CVL is rounded and clamped
    down, never up; DVL rounded and clamped up, never down; CCL/DCL clamped into 0-1200 A. A CVL
    below 41 V or a DVL above 48 V raises :class:`UnsafeFrameValue`; a NaN anywhere or an
    infinite limit raises :class:`ProtocolError`. Either way the caller falls back to
    :func:`safe_bms_frames` of the last frames it sent.
    """
    cvl = _charge_voltage_raw(state.charge_voltage)
    ccl = _current_limit_raw("charge_current_limit", state.charge_current_limit)
    dcl = _current_limit_raw("discharge_current_limit", state.discharge_current_limit)
    dvl = _discharge_voltage_raw(state.discharge_voltage)
    soc = min(max(_finite("soc", state.soc), SOC_RANGE[0]), SOC_RANGE[1])
    capacity = min(max(round(_finite("capacity_ah", state.capacity_ah)), 0), _U16_MAX_VALID)
    return {
        ID_CHARGE_LIMITS: _U16X4.pack(cvl, ccl, dcl, dvl),
        ID_SOC: _U16X3.pack(
            round(soc),
            _clamped_raw("soh", state.soh, *SOH_RANGE, 1),
            round(soc * 100),
        ),
        ID_BATTERY_MEASUREMENTS: _S16X3.pack(
            _s16_or_invalid("voltage", state.voltage, 100),
            _s16_or_invalid("current", state.current, 10),
            _s16_or_invalid("temperature", state.temperature, 10),
        ),
        ID_ALARMS: _U32X2.pack(
            _u32_field("alarms", state.alarms), _u32_field("warnings", state.warnings)
        ),
        ID_MANUFACTURER: encode_manufacturer(state.manufacturer),
        ID_BATTERY_INFO: _U16X4_PLAIN.pack(
            _u16_field("battery_type", state.battery_type),
            _u16_field("bms_version", state.bms_version),
            capacity,
            INVALID_U16,
        ),
    }


def _check_length(arbitration_id: int, data: ByteData, minimum: int) -> None:
    if not minimum <= len(data) <= MAX_DLC:
        raise ProtocolError(
            f"frame {arbitration_id:#05x}: {len(data)} bytes, expected {minimum}..{MAX_DLC}"
        )


def _u16_value(raw: int, divisor: int) -> float | None:
    return None if raw == INVALID_U16 else raw / divisor


def _s16_value(raw: int, divisor: int) -> float | None:
    return None if raw == _INVALID_S16_RAW else raw / divisor


def _decode_charge_limits(data: ByteData) -> dict[str, BmsValue]:
    _check_length(ID_CHARGE_LIMITS, data, 8)
    cvl, ccl, dcl, dvl = _U16X4.unpack_from(data)
    return {
        "charge_voltage": _u16_value(cvl, 10),
        "charge_current_limit": _s16_value(ccl, 10),
        "discharge_current_limit": _s16_value(dcl, 10),
        "discharge_voltage": _u16_value(dvl, 10),
    }


def _decode_soc(data: ByteData) -> dict[str, BmsValue]:
    _check_length(ID_SOC, data, 4)
    soc_raw, soh_raw = _U16X2.unpack_from(data)
    soc = _u16_value(soc_raw, 1)
    if len(data) >= 6:
        # The SI uses HiResSOC instead of SOC whenever a valid one is present [SMA-TI 5.3].
        (hires,) = _U16.unpack_from(data, 4)
        if hires != INVALID_U16:
            soc = hires / 100
    return {"soc": soc, "soh": _u16_value(soh_raw, 1)}


def _decode_measurements(data: ByteData) -> dict[str, BmsValue]:
    _check_length(ID_BATTERY_MEASUREMENTS, data, 6)
    voltage, current, temperature = _S16X3.unpack_from(data)
    return {
        "voltage": _s16_value(voltage, 100),
        "current": _s16_value(current, 10),
        "temperature": _s16_value(temperature, 10),
    }


def _decode_alarms(data: ByteData) -> dict[str, BmsValue]:
    _check_length(ID_ALARMS, data, 8)
    alarms, warnings = _U32X2.unpack_from(data)
    return {"alarms": alarms, "warnings": warnings}


def _decode_manufacturer(data: ByteData) -> dict[str, BmsValue]:
    _check_length(ID_MANUFACTURER, data, 0)
    raw = bytes(data)
    if not raw.isascii():
        raise ProtocolError("frame 0x35e: manufacturer name is not ASCII")
    return {"manufacturer": raw.decode("ascii").rstrip("\x00 ")}


def _decode_battery_info(data: ByteData) -> dict[str, BmsValue]:
    _check_length(ID_BATTERY_INFO, data, 6)
    battery_type, bms_version, capacity = _U16X3.unpack_from(data)
    return {
        "battery_type": battery_type,
        "bms_version": bms_version,
        "capacity_ah": None if capacity == INVALID_U16 else capacity,
    }


_BMS_DECODERS: Final[dict[int, Callable[[ByteData], dict[str, BmsValue]]]] = {
    ID_CHARGE_LIMITS: _decode_charge_limits,
    ID_SOC: _decode_soc,
    ID_BATTERY_MEASUREMENTS: _decode_measurements,
    ID_ALARMS: _decode_alarms,
    ID_MANUFACTURER: _decode_manufacturer,
    ID_BATTERY_INFO: _decode_battery_info,
}


def decode_bms_frame(arbitration_id: int, data: ByteData) -> dict[str, BmsValue]:
    """Read a BMS frame back into :class:`BmsFrameState` field names (what the SI sees).

    "Invalid" markers decode to None. Values are returned as sent, without range checks: whether
    the SI accepts them is the receiver's business. Ids that carry no state return {}.
    """
    decoder = _BMS_DECODERS.get(arbitration_id)
    return {} if decoder is None else decoder(data)


# --- 0x35A alarm / warning bits [SMA-TI 5.3, 7] -----------------------------------------------


class AlarmItem(IntEnum):
    """0x35A items in wire order; item n uses bits 2n (arrives) and 2n+1 (leaves) of a 32-bit word.

    Alarms map to SI faults F920 + n, warnings to W936 + n. RESERVED_14/15 and GENERATOR are marked
    "not to be used by the external BMS".
    """

    GENERAL = 0
    HIGH_VOLTAGE = 1
    LOW_VOLTAGE = 2
    HIGH_TEMP = 3
    LOW_TEMP = 4
    HIGH_TEMP_CHARGE = 5
    LOW_TEMP_CHARGE = 6
    HIGH_CURRENT = 7
    HIGH_CHARGE_CURRENT = 8
    CONTACTOR = 9
    SHORT_CIRCUIT = 10
    BMS_INTERNAL = 11
    CELL_IMBALANCE = 12
    RESERVED_14 = 13
    RESERVED_15 = 14
    GENERATOR = 15


ALARM_FAULT_BASE: Final = 920
WARNING_BASE: Final = 936
_ARRIVE_MASK: Final = 0x55555555
_ITEMS: Final = tuple(AlarmItem)

BMS_ITEMS: Final[frozenset[AlarmItem]] = frozenset(AlarmItem) - {
    AlarmItem.RESERVED_14,
    AlarmItem.RESERVED_15,
    AlarmItem.GENERATOR,
}
"""The 13 items an external BMS may use; [SMA-TI 5.3] marks the other three "not to be used by
the external BMS". The default set :func:`encode_alarm_bits` reports on in every frame."""


def encode_alarm_bits(
    active: Iterable[AlarmItem],
    previously_active: Iterable[AlarmItem] = (),
    *,
    evaluated: Iterable[AlarmItem] = BMS_ITEMS,
) -> int:
    """32-bit word for one half of 0x35A: every evaluated item as "arrives" or "leaves", never 00.

    [SMA-TI 7.1] gives each item two bits: "Bit 0 describes the raise of the alarm or warning
    whereas the other bit (bit 1) describes the message leaving"; 00 and 11 mean no change. With
    bit 0 the low bit of the pair, an active item n sets ``1 << 2n`` ("arrives"; General alarm =
    0x00000001) and an inactive one ``1 << (2n + 1)`` ("leaves"; 0x00000002).

    Why continuously (DESIGN invariant 8): the SI latches an alarm until it sees "leaves". A
    "leaves" sent once and 00 afterwards is lost when the frame never makes it (a restart of the
    BMS between two frames, a frame replaced in place before its slot) and the SI stays in fault
    for good. So every item in ``evaluated`` that is not active is sent as "leaves" in every
    frame. ``previously_active`` is kept for older callers: those items are sent as "leaves"
    too when no longer active (they are already, when they are in ``evaluated``). Items in
    ``active`` always count as active, evaluated or not.
    """
    active_set = frozenset(active)
    value = 0
    for item in active_set:
        value |= 1 << (2 * item)
    for item in (frozenset(evaluated) | frozenset(previously_active)) - active_set:
        value |= 2 << (2 * item)
    return value


def decode_alarm_bits(value: int) -> tuple[frozenset[AlarmItem], frozenset[AlarmItem]]:
    """Split a 32-bit 0x35A word into (arrived, left) items; pairs 00 and 11 are ignored."""
    _u32_field("alarm word", value)
    arrive = value & _ARRIVE_MASK
    leave = (value >> 1) & _ARRIVE_MASK
    arrived_bits = arrive & ~leave
    left_bits = leave & ~arrive
    arrived = frozenset(item for item in _ITEMS if arrived_bits >> (2 * item) & 1)
    left = frozenset(item for item in _ITEMS if left_bits >> (2 * item) & 1)
    return arrived, left


# --- safe frames (DESIGN invariants 3, 6 and 7) ------------------------------------------------

SAFE_WARNING: Final = AlarmItem.BMS_INTERNAL
"""The 0x35A warning safe frames raise. [SMA-TI 7.2] W947 "BMS internal": every internal BMS
problem not covered by a more specific item; a BMS whose controller no longer decides is one.
It is the item the charge controller raises for a stale source, so the SI shows one code for
"charging stopped because the BMS cannot judge the battery". A warning, not an alarm: an alarm
would stop the SI, and with it the loads, although CCL 0 already protects the pack."""
STEP_CURRENT: Final = 1.0
"""CCL of the first step when the charge current is taken away on purpose (a stop), A: the SI
ramps its charger down instead of cutting it, as solardirector does."""

_CHARGE_LIMITS_INVALID: Final = _U16X4.pack(
    INVALID_U16, _INVALID_S16_RAW, _INVALID_S16_RAW, INVALID_U16
)


def safe_bms_frames(
    frames: Mapping[int, ByteData], *, charge_current_limit: float = 0.0
) -> dict[int, bytes]:
    """The safe version of the last BMS frames: no charging, SOC held, a warning raised.

    * 0x351: CCL becomes ``charge_current_limit`` (default 0 A) or stays lower if it already
      was; CVL, DCL and DVL stay as they were (the SI must not start discharging because a
      voltage changed). A 0x351 shorter than 8 bytes is completed with the "invalid" markers.
    * 0x35A: the :data:`SAFE_WARNING` warning arrives; alarms and the other warnings stay.
    * every other id, 0x355 included (SOC held at the last value sent), is returned unchanged.

    Works on bytes, not on a :class:`BmsFrameState`, so it also works when the state can no
    longer be encoded (the reason for falling back to safe frames), and it never adds an id:
    the result can replace the payloads of periodic tasks in place. Pure; raises ValueError for
    a ``charge_current_limit`` outside 0-1200 A.
    """
    if not CURRENT_LIMIT_RANGE[0] <= charge_current_limit <= CURRENT_LIMIT_RANGE[1]:
        raise ValueError(f"charge_current_limit {charge_current_limit} is outside 0-1200 A")
    result = {key: bytes(data) for key, data in frames.items()}
    limits = result.get(ID_CHARGE_LIMITS)
    if limits is not None:
        raw = bytearray(limits[:MAX_DLC] + _CHARGE_LIMITS_INVALID[len(limits) :])
        (present,) = struct.unpack_from("<h", raw, 2)
        # Negative (including the "invalid" marker, whose SI default is 0 A): counts as 0 A.
        ccl = min(max(present, 0), math.floor(charge_current_limit * 10 + _RAW_EPSILON))
        struct.pack_into("<h", raw, 2, ccl)
        result[ID_CHARGE_LIMITS] = bytes(raw)
    alarms = result.get(ID_ALARMS)
    if alarms is not None:
        raw = bytearray(alarms[:MAX_DLC].ljust(MAX_DLC, b"\x00"))
        (warnings,) = struct.unpack_from("<I", raw, 4)
        shift = 2 * SAFE_WARNING
        warnings = (warnings & ~(3 << shift)) | (1 << shift)
        struct.pack_into("<I", raw, 4, warnings)
        result[ID_ALARMS] = bytes(raw)
    return result


def charge_current_limit_of(frames: Mapping[int, ByteData]) -> float | None:
    """CCL carried by a 0x351 payload in ``frames``, A; None without one (or when invalid)."""
    limits = frames.get(ID_CHARGE_LIMITS)
    if limits is None or len(limits) < 4:
        return None
    (raw,) = struct.unpack_from("<h", limits, 2)
    return None if raw == _INVALID_S16_RAW else raw / 10


# --- SI broadcast frames -----------------------------------------------------------------------

# A plain field: (key, struct format char, multiplier, divisor); value = raw * multiplier / divisor.
# divisor 0 marks an enumeration or counter returned as a plain int.
type _Field = tuple[str, str, int, int]


def _power_fields(prefix: str) -> tuple[_Field, ...]:
    # S16 in units of 100 W (or 100 var: the reactive frames count 0.1 kvar).
    return tuple((f"{prefix}_l{line}", "h", 100, 1) for line in (1, 2, 3))


_PLAIN_LAYOUTS: Final[dict[int, tuple[_Field, ...]]] = {
    ID_EXTERNAL_POWER: _power_fields("external_power"),
    ID_INVERTER_POWER: _power_fields("inverter_power"),
    ID_EXTERNAL_REACTIVE_POWER: _power_fields("external_reactive_power"),
    ID_INVERTER_REACTIVE_POWER: _power_fields("inverter_reactive_power"),
    ID_OUTPUT_AC: (
        ("output_voltage_l1", "h", 1, 10),
        ("output_voltage_l2", "h", 1, 10),
        ("output_voltage_l3", "h", 1, 10),
        ("output_frequency", "H", 1, 100),
    ),
    ID_BATTERY: (
        ("battery_voltage", "H", 1, 10),
        # The SI counts charging current negative [SMA-TI 6]; this project counts it positive.
        ("battery_current", "h", -1, 10),
        ("battery_temperature", "h", 1, 10),
        ("battery_soc", "h", 1, 10),
    ),
    ID_STATUS: (
        ("soh", "H", 0, 0),
        ("charging_procedure", "B", 0, 0),
        ("operating_state", "B", 0, 0),
        ("error_number", "H", 0, 0),
        ("charge_voltage_setpoint", "H", 1, 10),
    ),
    ID_LOAD: (("load_power", "h", 100, 1),),
    ID_EXTERNAL_AC: (
        ("external_voltage_l1", "h", 1, 10),
        ("external_voltage_l2", "h", 1, 10),
        ("external_voltage_l3", "h", 1, 10),
        ("external_frequency", "H", 1, 100),
    ),
    # 0x30A is not in [SMA-TI]; solardirector divides by 10 without naming the unit, which is
    # most likely kW. It is read here as 100 W steps like every other power frame: treat the
    # absolute scale of these three values as unconfirmed.
    ID_ENERGY: (
        ("pv_power", "h", 100, 1),
        ("grid_consumption_power", "h", 100, 1),
        ("grid_feed_power", "h", 100, 1),
    ),
}

_PLAIN_STRUCTS: Final[dict[int, struct.Struct]] = {
    frame_id: struct.Struct("<" + "".join(field[1] for field in layout))
    for frame_id, layout in _PLAIN_LAYOUTS.items()
}

# 0x307 bit names. Relay word (bytes 0-1), function words 1 (bytes 2-3) and 2 (bytes 4-5).
RELAY_BITS: Final[Mapping[str, int]] = {
    "relay1": 0x0001,
    "relay2": 0x0002,
    "generator_request": 0x0100,  # GnRn of the master
}
FUNCTION_BITS_1: Final[Mapping[str, int]] = {
    "auto_generator": 0x0001,  # AutoGn
    "auto_load_external": 0x0002,  # AutoLodExt
    "auto_load_soc": 0x0004,  # AutoLodSoc
    "timer1": 0x0008,  # Tm1
    "timer2": 0x0010,  # Tm2
    "external_power_derating": 0x0020,  # ExtPwrDer
    "grid_voltage_ok": 0x0040,  # ExtVfOk: valid voltage on AC2
    "grid_connected": 0x0080,  # GdOn: AC2 relay closed
    "error": 0x0100,
    "running": 0x0200,  # Run
    "battery_fan": 0x0400,  # BatFan
    "acid_circulation": 0x0800,  # AcdCir
    "mcc_battery_fan": 0x1000,  # MccBatFan
    "mcc_auto_load": 0x2000,  # MccAutoLod
    "chp": 0x4000,  # Chp
    "chp_additional": 0x8000,  # ChpAdd
}
FUNCTION_BITS_2: Final[Mapping[str, int]] = {
    "sicom_remote": 0x0001,  # SiComRemote
    "overload": 0x0002,  # OverLoad
    "external_source_connected": 0x0100,  # ExtSrcConn
    "silent_mode": 0x0200,  # Silent
    "feed_self_consumption": 0x0800,  # FeedSelfC
    "energy_saving": 0x1000,  # Esave
}
_RELAY_WORDS: Final = (
    ("relay_state", RELAY_BITS),
    ("function_bits_1", FUNCTION_BITS_1),
    ("function_bits_2", FUNCTION_BITS_2),
)
_RELAY_STRUCT: Final = struct.Struct("<HHH")

_MIN_LENGTHS: Final[dict[int, int]] = {
    **{frame_id: s.size for frame_id, s in _PLAIN_STRUCTS.items()},
    ID_RELAYS: _RELAY_STRUCT.size,
    ID_FREQUENCY: 4,
}


def _decode_plain(arbitration_id: int, data: ByteData) -> dict[str, SiValue]:
    raws = _PLAIN_STRUCTS[arbitration_id].unpack_from(data)
    result: dict[str, SiValue] = {}
    for (key, _fmt, multiplier, divisor), raw in zip(
        _PLAIN_LAYOUTS[arbitration_id], raws, strict=True
    ):
        result[key] = raw if divisor == 0 else raw * multiplier / divisor
    return result


def _decode_relays(data: ByteData) -> dict[str, SiValue]:
    words = _RELAY_STRUCT.unpack_from(data)
    result: dict[str, SiValue] = {}
    for (word_key, bits), word in zip(_RELAY_WORDS, words, strict=True):
        result[word_key] = word
        for key, mask in bits.items():
            result[key] = bool(word & mask)
    if len(data) > _RELAY_STRUCT.size:
        result["sync_bits"] = data[_RELAY_STRUCT.size]
    return result


def _decode_frequency(data: ByteData) -> dict[str, SiValue]:
    # Byte 3 integer Hz, byte 2 the fraction in 1/256 Hz; bytes 0-1 have no known meaning.
    return {"frequency": data[3] + data[2] / 256}


def decode_si_frame(arbitration_id: int, data: ByteData) -> dict[str, float | int | bool]:
    """Decode one frame the SI broadcasts; powers in W, voltages V, frequencies Hz, temps degC.

    Unknown ids return {}. A frame shorter than its fields or longer than 8 bytes raises
    :class:`ProtocolError`. ``battery_current`` is positive while charging.
    """
    minimum = _MIN_LENGTHS.get(arbitration_id)
    if minimum is None:
        return {}
    _check_length(arbitration_id, data, minimum)
    if arbitration_id == ID_RELAYS:
        return _decode_relays(data)
    if arbitration_id == ID_FREQUENCY:
        return _decode_frequency(data)
    return _decode_plain(arbitration_id, data)


def _encode_relays(values: Mapping[str, SiValue]) -> bytes:
    words: list[int] = []
    for word_key, bits in _RELAY_WORDS:
        word = int(values.get(word_key, 0))
        for key, mask in bits.items():
            if key in values:
                word = word | mask if values[key] else word & ~mask
        words.append(word)
    return _RELAY_STRUCT.pack(*words) + bytes((int(values.get("sync_bits", 0)), 0))


def _encode_frequency(values: Mapping[str, SiValue]) -> bytes:
    steps = round(float(values.get("frequency", 0.0)) * 256)
    return bytes((0, 0, steps & 0xFF, steps >> 8, 0, 0, 0, 0))


def _encode_plain(arbitration_id: int, values: Mapping[str, SiValue]) -> bytes:
    raws: list[int] = []
    for key, _fmt, multiplier, divisor in _PLAIN_LAYOUTS[arbitration_id]:
        value = values.get(key, 0)
        raws.append(int(value) if divisor == 0 else round(value * divisor / multiplier))
    return _PLAIN_STRUCTS[arbitration_id].pack(*raws).ljust(MAX_DLC, b"\x00")


def encode_si_frame(arbitration_id: int, values: Mapping[str, SiValue]) -> bytes:
    """Build the payload the SI would broadcast: the inverse of :func:`decode_si_frame`.

    Missing keys count as 0 / False. In 0x307 a named flag overrides the matching bit of the raw
    word (``relay_state``, ``function_bits_1``/``_2``). Values that do not fit their field, NaN and
    unknown ids raise :class:`ProtocolError`. Frames are padded with zeros to 8 bytes.
    """
    try:
        if arbitration_id == ID_RELAYS:
            return _encode_relays(values)
        if arbitration_id == ID_FREQUENCY:
            return _encode_frequency(values)
        if arbitration_id in _PLAIN_LAYOUTS:
            return _encode_plain(arbitration_id, values)
    except (struct.error, ValueError, OverflowError) as err:
        raise ProtocolError(f"frame {arbitration_id:#05x}: {err}") from err
    raise ProtocolError(f"frame {arbitration_id:#05x} is not an SI broadcast frame")


__all__ = [
    "BMS_FRAME_IDS",
    "BMS_ITEMS",
    "CHARGE_VOLTAGE_RANGE",
    "CURRENT_LIMIT_RANGE",
    "DISCHARGE_VOLTAGE_RANGE",
    "FAULT_SOC_TIMEOUT",
    "LIMITS_TIMEOUT",
    "MIN_PERIOD",
    "SAFE_WARNING",
    "SEND_PERIOD",
    "SI_DEFAULTS",
    "SI_FRAME_IDS",
    "SOC_RANGE",
    "SOC_TIMEOUT",
    "STEP_CURRENT",
    "WARNING_LIMITS_TIMEOUT",
    "AlarmItem",
    "BmsFrameState",
    "UnsafeFrameValue",
    "charge_current_limit_of",
    "decode_alarm_bits",
    "decode_bms_frame",
    "decode_si_frame",
    "encode_alarm_bits",
    "encode_bms_frames",
    "encode_si_frame",
    "safe_bms_frames",
]
