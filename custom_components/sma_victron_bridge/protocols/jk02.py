"""JK (Jikong) "JK02" 300-byte frames: cell info, device info and settings, 24S and 32S layouts.

The same frames travel over Bluetooth (JK-B*/JK-BD* with the newer BLE firmware) and, on the
JK PB inverter series, over RS485 (see :mod:`.jk_pb`). Sources: syssi/esphome-jk-bms
``components/jk_bms_ble/jk_bms_ble.cpp`` (decode_jk02_cell_info_, decode_device_info_,
decode_jk02_settings_), patman15/aiobmsble ``plugins/jikong_bms.py``; captures in
``testdata/jk/jk_ble.json`` and ``jk_pb.json``.

Frame: ``55 AA EB 90``, byte 4 the type (0x01 settings, 0x02 cell info, 0x03 device info),
byte 5 a counter, byte 299 the 8-bit sum of bytes 0 … 298. Some firmware (10.02, 7.1.0H) sends
320 bytes; the checksum is still at 299 and the tail is ignored. All numbers little-endian.

Cell info exists in two layouts that look alike: "24S" (24 cell slots, 24 resistance slots)
and "32S" (32 of each). Every field behind the cells moves by 32 bytes in 32S, except the
MOSFET temperature (134 in 24S, 144 in 32S) and the error word (u16 at 136 in 24S, u32 at 166
in 32S). The frame does not say which layout it uses; :func:`layout_for` decides from the
device info. Byte 254 in 32S is a fifth temperature for syssi and a second MOSFET sensor for
aiobmsble; it reads the same as the MOSFET temperature (or 0) in every capture, so it is
treated as the MOSFET's and not offered as a battery temperature. Bytes 256/258 (syssi:
temperatures 4 and 3) are battery sensors; an unplugged one reads -200.0 °C (raw -2000, which
aiobmsble skips), so an extra sensor outside -40 ... 120 °C is taken as absent.

The error word is read as little-endian with bit 0 = the first entry of the JK app's alarm
list ("wire resistance", "MOS OTP", ...), as txubelaxu/esphome-jk-bms decodes the PB bus
frames (u32 at 166, bits 16-23 in byte 168). syssi reads the 32S word as u16 big-endian at 166
and aiobmsble keeps only its upper half; no capture has an error bit set to settle it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import struct
from typing import Final, Literal

from . import ProtocolError
from .bms_common import (
    BAD_CHECKSUM,
    CELL_OVERVOLTAGE,
    CELL_UNDERVOLTAGE,
    CHARGE_OVERCURRENT,
    CHARGE_OVERTEMPERATURE,
    CHARGE_UNDERTEMPERATURE,
    DISCHARGE_OVERCURRENT,
    DISCHARGE_OVERTEMPERATURE,
    FRONTEND_ERROR,
    INCOMPLETE,
    MOSFET_OVERTEMPERATURE,
    PACK_OVERVOLTAGE,
    PACK_UNDERVOLTAGE,
    SHORT_CIRCUIT,
    BmsReading,
    StreamAssembler,
    bit_names,
    power_of,
)

Layout = Literal["24S", "32S"]

HEADER: Final = b"\x55\xaa\xeb\x90"
FRAME_LENGTH: Final = 300
LONG_FRAME_LENGTH: Final = 320
CHECKSUM_INDEX: Final = 299

TYPE_SETTINGS: Final = 0x01
TYPE_CELL_INFO: Final = 0x02
TYPE_DEVICE_INFO: Final = 0x03

LAYOUT_24S: Final[Layout] = "24S"
LAYOUT_32S: Final[Layout] = "32S"
_SLOTS: Final[dict[str, int]] = {LAYOUT_24S: 24, LAYOUT_32S: 32}
FIRST_32S_MAJOR: Final = 11

ERROR_BITS: Final[tuple[str | None, ...]] = (
    None,  # 0 wire resistance
    MOSFET_OVERTEMPERATURE,  # 1
    None,  # 2 cell count differs from the setting
    FRONTEND_ERROR,  # 3 current sensor
    CELL_OVERVOLTAGE,  # 4
    PACK_OVERVOLTAGE,  # 5
    CHARGE_OVERCURRENT,  # 6
    SHORT_CIRCUIT,  # 7 charge short circuit
    CHARGE_OVERTEMPERATURE,  # 8
    CHARGE_UNDERTEMPERATURE,  # 9
    FRONTEND_ERROR,  # 10 CPU / auxiliary communication
    CELL_UNDERVOLTAGE,  # 11
    PACK_UNDERVOLTAGE,  # 12
    DISCHARGE_OVERCURRENT,  # 13
    SHORT_CIRCUIT,  # 14 discharge short circuit
    DISCHARGE_OVERTEMPERATURE,  # 15
)
"""Protection names of the error word, bit by bit, in the order of the JK app's alarm list as
syssi and aiobmsble give it; later bits (MOSFET faults, GPS, sensors …) are kept only raw."""

_TEMPERATURE_RANGE: Final = (-40.0, 120.0)  # °C; an extra sensor outside it is taken as absent
_ABSENT_SENSOR: Final = -200.0  # °C: what a 32S frame carries for an unplugged extra sensor


def checksum(data: bytes | bytearray | memoryview) -> int:
    """8-bit sum of bytes 0 … 298."""
    return sum(data[:CHECKSUM_INDEX]) & 0xFF


def check_frame(frame: bytes, frame_type: int | None = None) -> None:
    """Raise :class:`ProtocolError` unless ``frame`` is a whole JK02 frame (of ``frame_type``)."""
    size = len(frame)
    if not FRAME_LENGTH <= size <= LONG_FRAME_LENGTH:
        raise ProtocolError(f"JK02 frame has {size} bytes, not 300 (or up to 320)")
    if frame[:4] != HEADER:
        raise ProtocolError(f"JK02 frame must start with 55 AA EB 90, not {frame[:4].hex(' ')}")
    if checksum(frame) != frame[CHECKSUM_INDEX]:
        raise ProtocolError(
            f"JK02 checksum 0x{frame[CHECKSUM_INDEX]:02X} != computed 0x{checksum(frame):02X}"
        )
    if frame_type is not None and frame[4] != frame_type:
        raise ProtocolError(f"JK02 frame type 0x{frame[4]:02X}, expected 0x{frame_type:02X}")


def _text(frame: bytes, offset: int, length: int) -> str:
    raw = frame[offset : offset + length].split(b"\0", 1)[0]
    return raw.decode("ascii", errors="replace").strip()


# --- device info ---------------------------------------------------------------------------

_DEVICE_FIELDS: Final = (
    # name, offset, length (ASCII, NUL padded)
    ("model", 6, 16),
    ("hardware_version", 22, 8),
    ("software_version", 30, 8),
    ("device_name", 46, 16),
    ("device_passcode", 62, 16),
    ("manufacturing_date", 78, 8),
    ("serial", 86, 11),
    ("passcode", 97, 5),
    ("user_data", 102, 16),
    ("setup_passcode", 118, 16),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Jk02DeviceInfo:
    """The device-info frame (type 0x03): identity and counters."""

    model: str
    hardware_version: str
    software_version: str
    uptime_s: int
    power_on_count: int
    device_name: str = ""
    device_passcode: str = ""
    manufacturing_date: str = ""
    serial: str = ""
    passcode: str = ""
    user_data: str = ""
    setup_passcode: str = ""


def parse_device_info(frame: bytes) -> Jk02DeviceInfo:
    """Decode a device-info frame."""
    check_frame(frame, TYPE_DEVICE_INFO)
    texts = {name: _text(frame, offset, length) for name, offset, length in _DEVICE_FIELDS}
    uptime, power_on = struct.unpack_from("<II", frame, 38)
    return Jk02DeviceInfo(uptime_s=uptime, power_on_count=power_on, **texts)


def _major(version: str) -> int | None:
    digits = ""
    for char in version.strip():
        if not char.isdigit():
            break
        digits += char
    return int(digits) if digits else None


def layout_for(device_info: Jk02DeviceInfo) -> Layout:
    """The cell-info layout of a BMS, from its device info.

    JK moved to 32 cell slots with hardware 11 (the "JK02_32S" protocol syssi selects for
    hardware ≥ 11; aiobmsble checks the software major ≥ 11 instead). In every capture both
    agree (10.x/7.x → 24S; 11.x, 14.x, 15.x, 19.x → 32S). The hardware version decides because
    the frame layout is a property of the board; where it does not start with a number the
    software version is used, and with neither the older 24S layout.
    """
    major = _major(device_info.hardware_version)
    if major is None:
        major = _major(device_info.software_version)
    return LAYOUT_32S if major is not None and major >= FIRST_32S_MAJOR else LAYOUT_24S


def encode_device_info(info: Jk02DeviceInfo, *, counter: int = 0) -> bytes:
    """A device-info frame carrying ``info`` (for simulators)."""
    frame = bytearray(FRAME_LENGTH)
    frame[:4] = HEADER
    frame[4] = TYPE_DEVICE_INFO
    frame[5] = counter & 0xFF
    for name, offset, length in _DEVICE_FIELDS:
        value = str(getattr(info, name)).encode("ascii", "replace")[:length]
        frame[offset : offset + len(value)] = value
    struct.pack_into("<II", frame, 38, info.uptime_s & 0xFFFFFFFF, info.power_on_count & 0xFFFFFFFF)
    frame[CHECKSUM_INDEX] = checksum(frame)
    return bytes(frame)


# --- settings ------------------------------------------------------------------------------

_SETTINGS_MILLI: Final = (
    # name, offset (u32 LE in thousandths of V or A)
    ("smart_sleep_voltage", 6),
    ("cell_uvp", 10),
    ("cell_uvpr", 14),
    ("cell_ovp", 18),
    ("cell_ovpr", 22),
    ("balance_trigger_voltage", 26),
    ("power_off_voltage", 46),
    ("max_charge_current", 50),
    ("max_discharge_current", 62),
    ("max_balance_current", 78),
    ("nominal_capacity", 130),
    ("balancing_start_voltage", 138),
)
_SETTINGS_DECI_SIGNED: Final = (("charge_otp", 82), ("charge_utp", 98))
_SETTINGS_FLAGS: Final = (
    ("charge_switch", 118),
    ("discharge_switch", 122),
    ("balancer_switch", 126),
)
_SETTINGS_CELL_COUNT: Final = 114


@dataclass(frozen=True, slots=True, kw_only=True)
class Jk02Settings:
    """The settings frame (type 0x01), the fields this integration uses (V, A, °C, Ah)."""

    smart_sleep_voltage: float
    cell_uvp: float
    cell_uvpr: float
    cell_ovp: float
    cell_ovpr: float
    balance_trigger_voltage: float
    power_off_voltage: float
    max_charge_current: float
    max_discharge_current: float
    max_balance_current: float
    charge_otp: float
    charge_utp: float
    cell_count: int
    charge_switch: bool
    discharge_switch: bool
    balancer_switch: bool
    nominal_capacity: float
    balancing_start_voltage: float


def parse_settings(frame: bytes) -> Jk02Settings:
    """Decode a settings frame."""
    check_frame(frame, TYPE_SETTINGS)
    values: dict[str, float | int | bool] = {}
    for name, offset in _SETTINGS_MILLI:
        values[name] = struct.unpack_from("<I", frame, offset)[0] / 1000
    for name, offset in _SETTINGS_DECI_SIGNED:
        values[name] = struct.unpack_from("<i", frame, offset)[0] / 10
    for name, offset in _SETTINGS_FLAGS:
        values[name] = bool(struct.unpack_from("<I", frame, offset)[0])
    values["cell_count"] = struct.unpack_from("<I", frame, _SETTINGS_CELL_COUNT)[0]
    return Jk02Settings(**values)  # type: ignore[arg-type]


def encode_settings(settings: Jk02Settings, *, counter: int = 0) -> bytes:
    """A settings frame carrying ``settings`` (for simulators)."""
    frame = bytearray(FRAME_LENGTH)
    frame[:4] = HEADER
    frame[4] = TYPE_SETTINGS
    frame[5] = counter & 0xFF
    for name, offset in _SETTINGS_MILLI:
        struct.pack_into("<I", frame, offset, max(0, round(getattr(settings, name) * 1000)))
    for name, offset in _SETTINGS_DECI_SIGNED:
        struct.pack_into("<i", frame, offset, round(getattr(settings, name) * 10))
    for name, offset in _SETTINGS_FLAGS:
        struct.pack_into("<I", frame, offset, int(getattr(settings, name)))
    struct.pack_into("<I", frame, _SETTINGS_CELL_COUNT, settings.cell_count)
    frame[CHECKSUM_INDEX] = checksum(frame)
    return bytes(frame)


# --- cell info -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Jk02CellInfo:
    """The cell-info frame (type 0x02), decoded (V, A, °C, Ah, s).

    ``temperatures`` are the battery sensors (T1, T2, and in 32S T3/T4 where present);
    ``balancing_action`` is 0 off, 1 charging balancer, 2 discharging balancer.
    """

    cell_voltages: tuple[float, ...]
    voltage: float
    current: float
    temperatures: tuple[float, ...]
    mosfet_temperature: float
    errors: int = 0
    balance_current: float = 0.0
    balancing_action: int = 0
    balancing_cells: tuple[bool, ...] = field(default=())
    soc: int = 0
    remaining_capacity: float = 0.0
    nominal_capacity: float = 0.0
    cycles: int = 0
    cycle_capacity: float = 0.0
    soh: int = 100
    runtime_s: int = 0
    charge_fet: bool = False
    discharge_fet: bool = False

    @property
    def protections(self) -> frozenset[str]:
        """Protection names of the error bits that are set."""
        return frozenset(bit_names(self.errors, ERROR_BITS))


@dataclass(frozen=True, slots=True)
class _Offsets:
    slots: int
    base: int  # first byte behind the resistances (24S 112, 32S 144)
    mosfet: int
    errors: int
    errors_size: int


def _offsets(layout: str) -> _Offsets:
    slots = _SLOTS.get(layout)
    if slots is None:
        raise ProtocolError(f"unknown JK02 layout {layout!r}")
    base = 6 + 4 * slots + 10
    if slots == 24:
        return _Offsets(slots, base, base + 22, base + 24, 2)
    return _Offsets(slots, base, base, base + 22, 4)


def _temperature(frame: bytes, offset: int) -> float:
    raw: int = struct.unpack_from("<h", frame, offset)[0]
    return raw / 10


def decode_cell_info(frame: bytes, layout: Layout | str) -> Jk02CellInfo:
    """Decode a cell-info frame laid out as ``layout`` ("24S" or "32S")."""
    check_frame(frame, TYPE_CELL_INFO)
    o = _offsets(layout)
    slots = o.slots
    cells_end = 6 + 2 * slots
    enabled = struct.unpack_from("<I", frame, cells_end)[0]
    millivolts = struct.unpack_from(f"<{slots}H", frame, 6)
    cells = tuple(mv / 1000 for index, mv in enumerate(millivolts) if enabled >> index & 1)
    base = o.base
    voltage, _power, current = struct.unpack_from("<IIi", frame, base + 6)
    temperatures = [_temperature(frame, base + 18), _temperature(frame, base + 20)]
    if slots == 32:
        low, high = _TEMPERATURE_RANGE
        # T3 at 258, T4 at 256 (syssi's numbering); a sensor outside -40…120 °C is absent.
        extra = [_temperature(frame, 258), _temperature(frame, 256)]
        temperatures += [value for value in extra if low <= value <= high]
    errors = int.from_bytes(frame[o.errors : o.errors + o.errors_size], "little")
    balance_current = struct.unpack_from("<h", frame, base + 26)[0] / 1000
    action, soc = frame[base + 28], frame[base + 29]
    remaining, nominal, cycles, cycle_capacity = struct.unpack_from("<IIII", frame, base + 30)
    soh = frame[base + 46]
    runtime = struct.unpack_from("<I", frame, base + 50)[0]
    return Jk02CellInfo(
        cell_voltages=cells,
        voltage=voltage / 1000,
        current=current / 1000,
        temperatures=tuple(temperatures),
        mosfet_temperature=_temperature(frame, o.mosfet),
        errors=errors,
        balance_current=balance_current,
        balancing_action=action,
        soc=soc,
        remaining_capacity=remaining / 1000,
        nominal_capacity=nominal / 1000,
        cycles=cycles,
        cycle_capacity=cycle_capacity / 1000,
        soh=soh,
        runtime_s=runtime,
        charge_fet=bool(frame[base + 54]),
        discharge_fet=bool(frame[base + 55]),
    )


def to_reading(info: Jk02CellInfo, *, invert_current: bool = False) -> BmsReading:
    """A decoded cell-info frame as a :class:`BmsReading` (current + = charging)."""
    current = -info.current + 0.0 if invert_current else info.current
    return BmsReading(
        soc=float(info.soc),
        voltage=info.voltage,
        current=current,
        power=power_of(info.voltage, current),
        remaining_capacity=info.remaining_capacity,
        nominal_capacity=info.nominal_capacity,
        cycles=info.cycles,
        cell_voltages=info.cell_voltages,
        temperatures=info.temperatures,
        mosfet_temperature=info.mosfet_temperature,
        balancing=info.balancing_cells,
        charge_fet=info.charge_fet,
        discharge_fet=info.discharge_fet,
        protections=info.protections,
    )


def parse_cell_info(
    frame: bytes, layout: Layout | str, *, invert_current: bool = False
) -> BmsReading:
    """Decode a cell-info frame straight into a :class:`BmsReading`.

    JK02 reports only whether the balancer works (``balancing_action``), not which cell, so
    ``balancing`` stays empty.
    """
    return to_reading(decode_cell_info(frame, layout), invert_current=invert_current)


def encode_cell_info(info: Jk02CellInfo, layout: Layout | str, *, counter: int = 0) -> bytes:
    """A cell-info frame carrying ``info`` in ``layout`` (for simulators).

    The MOSFET temperature is also written to byte 254 in 32S, as the PB firmware does.
    """
    o = _offsets(layout)
    slots = o.slots
    cells = [max(0, min(0xFFFF, round(volts * 1000))) for volts in info.cell_voltages[:slots]]
    frame = bytearray(FRAME_LENGTH)
    frame[:4] = HEADER
    frame[4] = TYPE_CELL_INFO
    frame[5] = counter & 0xFF
    struct.pack_into(f"<{len(cells)}H", frame, 6, *cells)
    cells_end = 6 + 2 * slots
    struct.pack_into("<I", frame, cells_end, (1 << len(cells)) - 1)
    if cells:
        average = round(sum(cells) / len(cells))
        high = max(range(len(cells)), key=cells.__getitem__)
        low = min(range(len(cells)), key=cells.__getitem__)
        struct.pack_into(
            "<HHBB", frame, cells_end + 4, average, cells[high] - cells[low], high, low
        )
    base = o.base

    def deci(value: float) -> int:
        return max(-0x8000, min(0x7FFF, round(value * 10)))

    voltage = max(0, min(0xFFFFFFFF, round(info.voltage * 1000)))
    current = max(-0x80000000, min(0x7FFFFFFF, round(info.current * 1000)))
    power = max(0, min(0xFFFFFFFF, round(abs(info.voltage * info.current) * 1000)))
    struct.pack_into("<IIi", frame, base + 6, voltage, power, current)
    sensors = list(info.temperatures)
    for index, offset in enumerate((base + 18, base + 20)):
        if index < len(sensors):
            struct.pack_into("<h", frame, offset, deci(sensors[index]))
    struct.pack_into("<h", frame, o.mosfet, deci(info.mosfet_temperature))
    if slots == 32:
        struct.pack_into("<h", frame, 254, deci(info.mosfet_temperature))
        for index, offset in ((2, 258), (3, 256)):
            value = sensors[index] if index < len(sensors) else _ABSENT_SENSOR
            struct.pack_into("<h", frame, offset, deci(value))
    frame[o.errors : o.errors + o.errors_size] = (
        info.errors & ((1 << 8 * o.errors_size) - 1)
    ).to_bytes(o.errors_size, "little")
    struct.pack_into(
        "<hBB",
        frame,
        base + 26,
        max(-0x8000, min(0x7FFF, round(info.balance_current * 1000))),
        info.balancing_action & 0xFF,
        max(0, min(100, info.soc)),
    )
    struct.pack_into(
        "<IIII",
        frame,
        base + 30,
        max(0, round(info.remaining_capacity * 1000)),
        max(0, round(info.nominal_capacity * 1000)),
        max(0, info.cycles),
        max(0, round(info.cycle_capacity * 1000)),
    )
    frame[base + 46] = max(0, min(100, info.soh))
    struct.pack_into("<I", frame, base + 50, info.runtime_s & 0xFFFFFFFF)
    frame[base + 54] = int(info.charge_fet)
    frame[base + 55] = int(info.discharge_fet)
    frame[CHECKSUM_INDEX] = checksum(frame)
    return bytes(frame)


def _frame_end(buffer: bytes | bytearray, position: int, size: int) -> int:
    """End of a 300-byte frame at ``position`` (the 320-byte tail is not part of it)."""
    end = position + FRAME_LENGTH
    if end > size:
        return INCOMPLETE
    if (
        sum(buffer[position : position + CHECKSUM_INDEX]) & 0xFF
        != buffer[position + CHECKSUM_INDEX]
    ):
        return BAD_CHECKSUM
    return end


class FrameAssembler(StreamAssembler):
    """Cut a byte stream into checked 300-byte JK02 frames (anything between is dropped)."""

    _start = HEADER

    def _frame_end(self, buffer: bytearray, position: int, size: int) -> int:
        return _frame_end(buffer, position, size)


__all__ = [
    "ERROR_BITS",
    "FRAME_LENGTH",
    "HEADER",
    "LAYOUT_24S",
    "LAYOUT_32S",
    "TYPE_CELL_INFO",
    "TYPE_DEVICE_INFO",
    "TYPE_SETTINGS",
    "FrameAssembler",
    "Jk02CellInfo",
    "Jk02DeviceInfo",
    "Jk02Settings",
    "Layout",
    "check_frame",
    "checksum",
    "decode_cell_info",
    "encode_cell_info",
    "encode_device_info",
    "encode_settings",
    "layout_for",
    "parse_cell_info",
    "parse_device_info",
    "parse_settings",
    "to_reading",
]
