"""JBD UP-series (rack battery) RS485 protocol: a Modbus-like register block transfer.

Newer JBD packs (e.g. UP16S020) do not speak the ``DD … 77`` protocol of :mod:`.jbd` on their
RS485 port. Every frame, request or response, is
``addr fc start(2) end(2) len(2) data[len] crc(2)`` with big-endian fields and a CRC-16/Modbus
over everything before it, stored low byte first. A read (``fc`` 0x78) names a register window
``start … end`` and carries no data; the response repeats the header and carries ``len`` bytes.

Field layouts come from a real two-pack capture (syssi/esphome-jbd-bms, a UP16S020 pair at
addresses 1 and 2 on one bus, in ``testdata/jbd``), cross-checked: pack voltage equals the sum of
the cell voltages, the min/max cell and temperature indices point at the listed values, and the
clock block follows the capture's timestamps. The maker's V4 document covers only the ``DD … 77``
protocol. In that capture the second pack answers only the status read (0x1000 … 0x10A0), so
everything the integration needs - identity included - is taken from that one block.
"""

from __future__ import annotations

from dataclasses import dataclass
import datetime as dt
import struct
from typing import Final

from . import ProtocolError
from .bms_common import (
    BAD_CHECKSUM,
    BAD_SHAPE,
    CELL_IMBALANCE,
    CELL_OVERVOLTAGE,
    CELL_UNDERVOLTAGE,
    CHARGE_OVERCURRENT,
    CHARGE_OVERTEMPERATURE,
    CHARGE_UNDERTEMPERATURE,
    DISCHARGE_OVERCURRENT,
    DISCHARGE_OVERTEMPERATURE,
    DISCHARGE_UNDERTEMPERATURE,
    FRONTEND_ERROR,
    INCOMPLETE,
    MOSFET_OVERTEMPERATURE,
    PACK_OVERVOLTAGE,
    PACK_UNDERVOLTAGE,
    SHORT_CIRCUIT,
    SOC_LOW,
    BmsReading,
    StreamAssembler,
    bit_names,
    crc16_modbus,
    power_of,
)

FUNCTION_READ: Final = 0x78
FUNCTION_WRITE: Final = 0x79

REG_PACK_STATUS: Final = 0x1000
REG_PACK_STATUS_END: Final = 0x10A0
REG_CLOCK: Final = 0x2800
REG_CLOCK_END: Final = 0x280F

HEADER_LENGTH: Final = 8
MIN_FRAME_LENGTH: Final = HEADER_LENGTH + 2
MAX_DATA_LENGTH: Final = 0x200
"""Longest data part the assembler accepts: the largest block in the capture is 208 bytes, so a
longer length field is line noise, and a frame assembler never waits for 64 KiB because of it."""

DEFAULT_ADDRESS: Final = 1
"""Pack address (set on the rack pack) a lone pack answers to; the capture's packs are 1 and 2."""

_CURRENT_OFFSET = 300_000
_TEMPERATURE_OFFSET = 500
_CELLS_OFFSET = 68
_MODEL_GAP = 6
_MODEL_LENGTH = 30

OPERATION_STATUS: Final[tuple[str, ...]] = ("idle", "charging", "discharging")

PROTECTION_BIT_NAMES: Final[tuple[str, ...]] = (
    CELL_OVERVOLTAGE,
    CELL_UNDERVOLTAGE,
    PACK_OVERVOLTAGE,
    PACK_UNDERVOLTAGE,
    CHARGE_OVERCURRENT,  # level 1
    CHARGE_OVERCURRENT,  # level 2
    DISCHARGE_OVERCURRENT,  # level 1
    DISCHARGE_OVERCURRENT,  # level 2
    CHARGE_OVERTEMPERATURE,
    CHARGE_UNDERTEMPERATURE,
    DISCHARGE_OVERTEMPERATURE,
    DISCHARGE_UNDERTEMPERATURE,
    MOSFET_OVERTEMPERATURE,
    "ambient_overtemperature",
    "ambient_undertemperature",
    CELL_IMBALANCE,
    "temperature_difference",
    SOC_LOW,
    SHORT_CIRCUIT,
    "cell_disconnected",
    "temperature_sensor_lost",
    "charge_mosfet_fault",
    "discharge_mosfet_fault",
    "current_limit_fault",
    "aerosol_fault",
    "full_charge_protection",
    FRONTEND_ERROR,
)
"""Names of the 32-bit protection word, bit 0 first."""


@dataclass(frozen=True, slots=True)
class UpFrame:
    """A CRC-checked UP-series frame (request or response)."""

    address: int
    function: int
    start: int
    end: int
    data: bytes


def encode_frame(address: int, function: int, start: int, end: int, data: bytes = b"") -> bytes:
    """Build a frame; a read request is ``encode_frame(addr, 0x78, start, end)``."""
    if not (0 <= address <= 0xFF and 0 <= function <= 0xFF):
        raise ProtocolError("JBD UP address and function must be single bytes")
    if not (0 <= start <= 0xFFFF and 0 <= end <= 0xFFFF) or len(data) > 0xFFFF:
        raise ProtocolError("JBD UP register window or data out of range")
    body = (
        bytes((address, function))
        + start.to_bytes(2, "big")
        + end.to_bytes(2, "big")
        + len(data).to_bytes(2, "big")
        + data
    )
    return body + crc16_modbus(body).to_bytes(2, "little")


def encode_read(address: int, start: int, end: int) -> bytes:
    """Read request for registers ``start … end`` of the pack at ``address``."""
    return encode_frame(address, FUNCTION_READ, start, end)


def encode_pack_status_request(address: int) -> bytes:
    """Pack status read, e.g. address 1 → ``01 78 10 00 10 A0 00 00 7F B2``."""
    return encode_read(address, REG_PACK_STATUS, REG_PACK_STATUS_END)


def parse_frame(frame: bytes) -> UpFrame:
    """Check length and CRC of a frame and split it up."""
    size = len(frame)
    if size < MIN_FRAME_LENGTH:
        raise ProtocolError(f"JBD UP frame too short ({size} bytes)")
    length = int.from_bytes(frame[6:8], "big")
    if size != MIN_FRAME_LENGTH + length:
        raise ProtocolError(f"JBD UP frame announces {length} data bytes but is {size} long")
    expected = crc16_modbus(frame[:-2])
    received = int.from_bytes(frame[-2:], "little")
    if expected != received:
        raise ProtocolError(f"JBD UP CRC 0x{received:04X} != computed 0x{expected:04X}")
    return UpFrame(
        address=frame[0],
        function=frame[1],
        start=int.from_bytes(frame[2:4], "big"),
        end=int.from_bytes(frame[4:6], "big"),
        data=bytes(frame[HEADER_LENGTH:-2]),
    )


def is_status_reply(frame: bytes, address: int) -> bool:
    """Whether an assembled frame is the pack status answer of ``address``.

    A half-duplex RS485 adapter hands back the request itself, which is a valid frame too; the
    answer differs from it by carrying data.
    """
    return (
        len(frame) > MIN_FRAME_LENGTH
        and frame[0] == address
        and frame[1] == FUNCTION_READ
        and int.from_bytes(frame[2:4], "big") == REG_PACK_STATUS
    )


def _frame_end(buffer: bytearray, position: int, size: int) -> int:
    if size - position < HEADER_LENGTH:
        return INCOMPLETE
    length = int.from_bytes(buffer[position + 6 : position + 8], "big")
    if length > MAX_DATA_LENGTH:
        return BAD_SHAPE
    end = position + MIN_FRAME_LENGTH + length
    if end > size:
        return INCOMPLETE
    if crc16_modbus(buffer[position : end - 2]) != int.from_bytes(buffer[end - 2 : end], "little"):
        return BAD_CHECKSUM
    return end


class FrameAssembler(StreamAssembler):
    """Cut the byte stream of one pack's RS485 line into CRC-checked read frames.

    The frames carry no start byte, so the pack's address and the read function code
    (``addr 78``) serve as the marker: replies of other packs on the same bus, and anything
    else, are skipped. Between calls the buffer holds at most one incomplete frame
    (:data:`MAX_DATA_LENGTH` + 10 bytes).
    """

    def __init__(self, address: int = DEFAULT_ADDRESS) -> None:
        """Look for frames of the pack at ``address``."""
        if not 0 <= address <= 0xFF:
            raise ProtocolError(f"JBD UP address {address} is not a byte")
        super().__init__()
        self._start = bytes((address, FUNCTION_READ))

    def _frame_end(self, buffer: bytearray, position: int, size: int) -> int:
        return _frame_end(buffer, position, size)


def _u16(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 2], "big")


def _temperature(raw: int) -> float:
    return (raw - _TEMPERATURE_OFFSET) / 10


@dataclass(frozen=True, slots=True, kw_only=True)
class UpPackStatus:
    """Decoded pack status block (registers 0x1000 …); current is positive while charging."""

    voltage: float
    current: float
    soc: float
    remaining_capacity: float
    full_capacity: float
    rated_capacity: float
    mosfet_temperature: float
    ambient_temperature: float
    operation_status: int
    state_of_health: int
    protection: int
    errors: int
    charge_fet: bool
    discharge_fet: bool
    cycles: int
    charge_voltage_limit: float
    charge_current_limit: float
    discharge_voltage_limit: float
    discharge_current_limit: float
    cell_voltages: list[float]
    temperatures: list[float]
    model: str | None

    @property
    def protection_flags(self) -> list[str]:
        """Names of the active protections (duplicates of two-level bits merged)."""
        return sorted(set(bit_names(self.protection, PROTECTION_BIT_NAMES)))

    @property
    def operation(self) -> str:
        """``idle``, ``charging``, ``discharging`` or ``unknown``."""
        if self.operation_status < len(OPERATION_STATUS):
            return OPERATION_STATUS[self.operation_status]
        return "unknown"


def decode_pack_status(data: bytes) -> UpPackStatus:
    """Decode the data of a pack status response (read of 0x1000 … 0x10A0)."""
    size = len(data)
    if size < _CELLS_OFFSET + 2:
        raise ProtocolError(f"JBD UP pack status too short ({size} bytes)")
    cell_count = _u16(data, 66)
    temperatures_offset = _CELLS_OFFSET + 2 * cell_count
    if size < temperatures_offset + 2:
        raise ProtocolError(f"JBD UP pack status announces {cell_count} cells in {size} bytes")
    temperature_count = _u16(data, temperatures_offset)
    model_offset = temperatures_offset + 2 + 2 * temperature_count
    if size < model_offset:
        raise ProtocolError(f"JBD UP pack status announces {temperature_count} sensors")
    model_offset += _MODEL_GAP
    model: str | None = None
    if size >= model_offset + _MODEL_LENGTH:
        raw_model = data[model_offset : model_offset + _MODEL_LENGTH].split(b"\x00", 1)[0]
        model = raw_model.decode("ascii", errors="replace").strip()
    mosfets = _u16(data, 32)
    return UpPackStatus(
        voltage=_u16(data, 0) / 100,
        current=(int.from_bytes(data[4:8], "big") - _CURRENT_OFFSET) / 100,
        soc=_u16(data, 8) / 100,
        remaining_capacity=_u16(data, 10) / 100,
        full_capacity=_u16(data, 12) / 100,
        rated_capacity=_u16(data, 14) / 100,
        mosfet_temperature=_temperature(_u16(data, 16)),
        ambient_temperature=_temperature(_u16(data, 18)),
        operation_status=_u16(data, 20),
        state_of_health=_u16(data, 22),
        protection=int.from_bytes(data[24:28], "big"),
        errors=int.from_bytes(data[28:32], "big"),
        discharge_fet=bool(mosfets & 0x01),
        charge_fet=bool(mosfets & 0x02),
        cycles=_u16(data, 36),
        charge_voltage_limit=_u16(data, 58) / 10,
        charge_current_limit=_u16(data, 60) / 10,
        discharge_voltage_limit=_u16(data, 62) / 10,
        discharge_current_limit=_u16(data, 64) / 10,
        cell_voltages=[
            raw / 1000 for raw in struct.unpack_from(f">{cell_count}H", data, _CELLS_OFFSET)
        ],
        temperatures=[
            _temperature(raw)
            for raw in struct.unpack_from(f">{temperature_count}H", data, temperatures_offset + 2)
        ],
        model=model,
    )


def decode_clock(data: bytes) -> dt.datetime:
    """Decode the real-time clock block (0x2800 …): six big-endian u16 Y M D h m s."""
    if len(data) < 12:
        raise ProtocolError(f"JBD UP clock block too short ({len(data)} bytes)")
    year, month, day, hour, minute, second = (_u16(data, offset) for offset in range(0, 12, 2))
    try:
        # The BMS clock carries no time zone: it is whatever the installer set.
        return dt.datetime(year, month, day, hour, minute, second)
    except ValueError as err:
        raise ProtocolError(f"JBD UP clock holds an invalid time: {data[:12].hex()}") from err


def to_reading(status: UpPackStatus) -> BmsReading:
    """Turn a pack status block into a :class:`BmsReading`."""
    return BmsReading(
        soc=status.soc,
        voltage=status.voltage,
        current=status.current,
        power=power_of(status.voltage, status.current),
        remaining_capacity=status.remaining_capacity,
        nominal_capacity=status.full_capacity,
        cycles=status.cycles,
        cell_voltages=tuple(status.cell_voltages),
        temperatures=tuple(status.temperatures),
        mosfet_temperature=status.mosfet_temperature,
        charge_fet=status.charge_fet,
        discharge_fet=status.discharge_fet,
        protections=frozenset(status.protection_flags),
        model=status.model,
    )


__all__ = [
    "DEFAULT_ADDRESS",
    "PROTECTION_BIT_NAMES",
    "FrameAssembler",
    "UpFrame",
    "UpPackStatus",
    "decode_clock",
    "decode_pack_status",
    "encode_frame",
    "encode_pack_status_request",
    "encode_read",
    "is_status_reply",
    "parse_frame",
    "to_reading",
]
