"""JBD / LLT Power / Overkill ("Xiaoxiang") BMS serial protocol, 9600 8N1.

Requests are ``DD A5|5A reg len data… chk_hi chk_lo 77`` (A5 read, 5A write); responses are
``DD reg status len data… chk_hi chk_lo 77`` with status 0x00 for success and 0x80 for an error.
The checksum is ``0x10000 - sum`` over the bytes after the first two and before the checksum
(register + length + data in a request, status + length + data in a response), big-endian.

The maker's "General Protocol V4" document is the authority for field layouts; where open-source
drivers read a field differently (balance word order) this module follows the document.
Everything here is pure and raises only :class:`ProtocolError` on malformed input.
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
    INCOMPLETE,
    PROTECTION_NAMES,
    BmsReading,
    StreamAssembler,
    bit_flags,
    bit_names,
    power_of,
)

START: Final = 0xDD
END: Final = 0x77
READ: Final = 0xA5
WRITE: Final = 0x5A

REG_FACTORY_ENTER: Final = 0x00
REG_FACTORY_EXIT: Final = 0x01
REG_BASIC_INFO: Final = 0x03
REG_CELL_VOLTAGES: Final = 0x04
REG_MODEL: Final = 0x05
REG_ERROR_COUNTERS: Final = 0xAA
REG_MOSFET_CONTROL: Final = 0xE1

STATUS_OK: Final = 0x00
STATUS_ERROR: Final = 0x80

FACTORY_ENTER_KEY: Final = b"\x56\x78"
FACTORY_EXIT_NO_SAVE: Final = b"\x00\x00"

MIN_FRAME_LENGTH: Final = 7
MAX_FRAME_LENGTH: Final = 7 + 0xFF

ERROR_COUNTER_NAMES: Final[tuple[str, ...]] = (
    "short_circuit",
    "charge_overcurrent",
    "discharge_overcurrent",
    "cell_overvoltage",
    "cell_undervoltage",
    "charge_overtemperature",
    "charge_undertemperature",
    "discharge_overtemperature",
    "discharge_undertemperature",
    "pack_overvoltage",
    "pack_undervoltage",
)
"""Meaning of the first eleven 0xAA counters; firmware may send more (seen: twelve)."""

_BASIC_INFO_FIXED = 23
_KELVIN_OFFSET_DECI = 2731
_BALANCE_BITS = 32  # two balance words: cells 1-16, then 17-32 (the document's maximum)


def checksum(body: bytes | bytearray | memoryview) -> int:
    """JBD checksum of ``body`` (the bytes between the first two and the checksum)."""
    return -sum(body) & 0xFFFF


@dataclass(frozen=True, slots=True)
class JbdFrame:
    """A checked response frame: the register it answers, its status byte and data."""

    register: int
    status: int
    payload: bytes

    @property
    def ok(self) -> bool:
        """Whether the BMS reported success (status 0x00)."""
        return self.status == STATUS_OK


@dataclass(frozen=True, slots=True)
class JbdRequest:
    """A checked request frame as a host sends it (used by simulators and tests)."""

    register: int
    write: bool
    data: bytes


def _unwrap(frame: bytes) -> tuple[int, int, bytes]:
    """Validate the envelope shared by requests and responses; return bytes 1, 2 and data."""
    size = len(frame)
    if size < MIN_FRAME_LENGTH:
        raise ProtocolError(f"JBD frame too short ({size} bytes)")
    if frame[0] != START:
        raise ProtocolError(f"JBD frame must start with 0xDD, not 0x{frame[0]:02X}")
    if frame[-1] != END:
        raise ProtocolError(f"JBD frame must end with 0x77, not 0x{frame[-1]:02X}")
    length = frame[3]
    if size != MIN_FRAME_LENGTH + length:
        raise ProtocolError(f"JBD frame length byte says {length} data bytes, frame has {size}")
    expected = checksum(frame[2:-3])
    received = int.from_bytes(frame[-3:-1], "big")
    if expected != received:
        raise ProtocolError(f"JBD checksum 0x{received:04X} != computed 0x{expected:04X}")
    return frame[1], frame[2], bytes(frame[4:-3])


def parse_frame(frame: bytes) -> JbdFrame:
    """Check start, end, length and checksum of a BMS response and split it up.

    A host request has the same envelope and passes too (with ``register`` 0xA5/0x5A); use
    :func:`parse_request` for those, e.g. for the echo on a half-duplex RS485 bus.
    """
    register, status, payload = _unwrap(frame)
    return JbdFrame(register=register, status=status, payload=payload)


def parse_request(frame: bytes) -> JbdRequest:
    """Check and split a host request (``DD A5|5A reg len data chk 77``)."""
    mode, register, data = _unwrap(frame)
    if mode not in (READ, WRITE):
        raise ProtocolError(f"JBD request mode must be 0xA5 or 0x5A, not 0x{mode:02X}")
    return JbdRequest(register=register, write=mode == WRITE, data=data)


def _encode(mode: int, register: int, data: bytes) -> bytes:
    if not 0 <= register <= 0xFF:
        raise ProtocolError(f"JBD register out of range: {register}")
    if len(data) > 0xFF:
        raise ProtocolError(f"JBD data too long: {len(data)} bytes")
    body = bytes((register, len(data))) + data
    return bytes((START, mode)) + body + checksum(body).to_bytes(2, "big") + bytes((END,))


def encode_read(register: int) -> bytes:
    """Read request, e.g. ``encode_read(0x03)`` → ``DD A5 03 00 FF FD 77``."""
    return _encode(READ, register, b"")


def encode_write(register: int, data: bytes) -> bytes:
    """Write request ``DD 5A reg len data chk 77``."""
    return _encode(WRITE, register, bytes(data))


def encode_mosfet_control(charge_on: bool, discharge_on: bool) -> bytes:
    """MOSFET control (register 0xE1): switch the charge/discharge FETs off in software.

    ``True`` releases the software switch-off (the BMS may still keep a FET off for protection).
    Charge on, discharge off gives ``DD 5A E1 02 00 02 FF 1B 77``.
    """
    code = (0 if charge_on else 1) | (0 if discharge_on else 2)
    return encode_write(REG_MOSFET_CONTROL, bytes((0x00, code)))


def encode_factory_mode_enter() -> bytes:
    """Enter factory (parameter) mode: ``DD 5A 00 02 56 78 FF 30 77``."""
    return encode_write(REG_FACTORY_ENTER, FACTORY_ENTER_KEY)


def encode_factory_mode_exit() -> bytes:
    """Leave factory mode without writing EEPROM: ``DD 5A 01 02 00 00 FF FD 77``."""
    return encode_write(REG_FACTORY_EXIT, FACTORY_EXIT_NO_SAVE)


def protection_flags(protection: int) -> list[str]:
    """Names of the set protection bits (bit order of the JBD document, 13 … 15 ignored)."""
    return bit_names(protection, PROTECTION_NAMES)


def _decode_date(raw: int) -> dt.date | None:
    try:
        return dt.date(2000 + (raw >> 9), (raw >> 5) & 0x0F, raw & 0x1F)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class BasicInfo:
    """Register 0x03 "basic information and status"; current is positive while charging."""

    voltage: float
    current: float
    remaining_capacity: float
    nominal_capacity: float
    cycles: int
    manufacture_date: dt.date | None
    balance: int
    protection: int
    software_version: str
    software_version_raw: int
    soc: int
    charge_fet: bool
    discharge_fet: bool
    cell_count: int
    temperatures: list[float]

    @property
    def protection_flags(self) -> list[str]:
        """Names of the protections that are active."""
        return protection_flags(self.protection)

    @property
    def balancing_cells(self) -> list[int]:
        """1-based numbers of the cells being balanced.

        Only the first ``cell_count`` bits are cells: the document gives one bit per cell in
        series, so a bit above the pack's cell count names no cell and is left out rather than
        reported as a balancing cell that does not exist.
        """
        cells = min(self.cell_count, _BALANCE_BITS)
        return [bit + 1 for bit in range(cells) if self.balance >> bit & 1]


def decode_basic_info(payload: bytes) -> BasicInfo:
    """Decode the data of a 0x03 response (big-endian; extra trailing bytes are ignored)."""
    size = len(payload)
    if size < _BASIC_INFO_FIXED:
        raise ProtocolError(f"JBD basic info needs {_BASIC_INFO_FIXED} bytes, got {size}")
    ntc_count = payload[22]
    if size < _BASIC_INFO_FIXED + 2 * ntc_count:
        raise ProtocolError(f"JBD basic info announces {ntc_count} NTCs but has {size} bytes")
    version = payload[18]
    fet = payload[20]
    temperatures = [
        (raw - _KELVIN_OFFSET_DECI) / 10
        for raw in struct.unpack_from(f">{ntc_count}H", payload, _BASIC_INFO_FIXED)
    ]
    return BasicInfo(
        voltage=int.from_bytes(payload[0:2], "big") / 100,
        current=int.from_bytes(payload[2:4], "big", signed=True) / 100,
        remaining_capacity=int.from_bytes(payload[4:6], "big") / 100,
        nominal_capacity=int.from_bytes(payload[6:8], "big") / 100,
        cycles=int.from_bytes(payload[8:10], "big"),
        manufacture_date=_decode_date(int.from_bytes(payload[10:12], "big")),
        balance=int.from_bytes(payload[12:14], "big") | int.from_bytes(payload[14:16], "big") << 16,
        protection=int.from_bytes(payload[16:18], "big"),
        software_version=f"{version >> 4}.{version & 0x0F}",
        software_version_raw=version,
        soc=payload[19],
        charge_fet=bool(fet & 0x01),
        discharge_fet=bool(fet & 0x02),
        cell_count=payload[21],
        temperatures=temperatures,
    )


def decode_cell_voltages(payload: bytes) -> list[float]:
    """Decode a 0x04 response: one big-endian u16 in mV per cell, returned in V."""
    if len(payload) % 2:
        raise ProtocolError(f"JBD cell voltage data has odd length {len(payload)}")
    return [raw / 1000 for raw in struct.unpack(f">{len(payload) // 2}H", payload)]


def decode_model(payload: bytes) -> str:
    """Decode a 0x05 response: the ASCII model name (up to 31 characters)."""
    return payload.decode("ascii", errors="replace").strip("\x00 ")


def decode_error_counters(payload: bytes) -> list[int]:
    """Decode a 0xAA response: big-endian u16 event counters (see ERROR_COUNTER_NAMES)."""
    if len(payload) % 2:
        raise ProtocolError(f"JBD error counter data has odd length {len(payload)}")
    return list(struct.unpack(f">{len(payload) // 2}H", payload))


def to_reading(
    info: BasicInfo,
    cell_voltages: list[float] | None = None,
    model: str | None = None,
) -> BmsReading:
    """Combine the answers to 0x03 (and optionally 0x04, 0x05) into a :class:`BmsReading`."""
    return BmsReading(
        soc=float(info.soc),
        voltage=info.voltage,
        current=info.current,
        power=power_of(info.voltage, info.current),
        remaining_capacity=info.remaining_capacity,
        nominal_capacity=info.nominal_capacity,
        cycles=info.cycles,
        cell_voltages=tuple(cell_voltages or ()),
        temperatures=tuple(info.temperatures),
        balancing=bit_flags(info.balance, min(info.cell_count, _BALANCE_BITS)),
        charge_fet=info.charge_fet,
        discharge_fet=info.discharge_fet,
        protections=frozenset(info.protection_flags),
        model=model,
    )


_INCOMPLETE: Final = INCOMPLETE
_BAD_END: Final = BAD_SHAPE
_BAD_CHECKSUM: Final = BAD_CHECKSUM


def _frame_end(buffer: bytearray, position: int, size: int) -> int:
    """End index of a valid frame starting at ``position``, or a negative/zero status code."""
    if size - position < 4:
        return _INCOMPLETE
    end = position + MIN_FRAME_LENGTH + buffer[position + 3]
    if end > size:
        return _INCOMPLETE
    if buffer[end - 1] != END:
        return _BAD_END
    if checksum(buffer[position + 2 : end - 3]) != int.from_bytes(buffer[end - 3 : end - 1], "big"):
        return _BAD_CHECKSUM
    return end


class FrameAssembler(StreamAssembler):
    """Cut a serial byte stream into checked JBD frames.

    Bytes before a 0xDD start byte are dropped. A candidate frame whose end byte or checksum is
    wrong is abandoned one byte later, and a candidate still waiting for bytes is given up as
    soon as a complete valid frame starts behind it, so garbage that happens to contain 0xDD
    neither hides nor delays a real frame. Between calls the buffer holds at most one incomplete
    frame (261 bytes), so it stays bounded whatever arrives.
    """

    _start = bytes((START,))

    def _frame_end(self, buffer: bytearray, position: int, size: int) -> int:
        return _frame_end(buffer, position, size)


__all__ = [
    "ERROR_COUNTER_NAMES",
    "BasicInfo",
    "FrameAssembler",
    "JbdFrame",
    "JbdRequest",
    "checksum",
    "decode_basic_info",
    "decode_cell_voltages",
    "decode_error_counters",
    "decode_model",
    "encode_factory_mode_enter",
    "encode_factory_mode_exit",
    "encode_mosfet_control",
    "encode_read",
    "encode_write",
    "parse_frame",
    "parse_request",
    "protection_flags",
    "to_reading",
]
