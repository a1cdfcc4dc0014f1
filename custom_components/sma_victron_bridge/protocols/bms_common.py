"""What JBD, Daly and ANT battery management systems have in common.

Each serial BMS speaks its own framing and units, but the rest of the integration only wants one
shape: :class:`BmsReading`. Every BMS codec offers a ``to_reading(...)`` converter into it, and
names its protection states with the strings defined here, so charge-limit logic and entities can
treat every BMS alike. The CRC-16/Modbus routine lives here because two of the protocols (ANT's
``7E A1`` frames and JBD's UP series) use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

# Protection / alarm names shared by all BMS codecs. The first thirteen are the JBD protection
# bits in order (bit 0 … bit 12); the others name states only Daly or ANT report.
CELL_OVERVOLTAGE = "cell_overvoltage"
CELL_UNDERVOLTAGE = "cell_undervoltage"
PACK_OVERVOLTAGE = "pack_overvoltage"
PACK_UNDERVOLTAGE = "pack_undervoltage"
CHARGE_OVERTEMPERATURE = "charge_overtemperature"
CHARGE_UNDERTEMPERATURE = "charge_undertemperature"
DISCHARGE_OVERTEMPERATURE = "discharge_overtemperature"
DISCHARGE_UNDERTEMPERATURE = "discharge_undertemperature"
CHARGE_OVERCURRENT = "charge_overcurrent"
DISCHARGE_OVERCURRENT = "discharge_overcurrent"
SHORT_CIRCUIT = "short_circuit"
FRONTEND_ERROR = "frontend_error"
MOSFET_LOCK = "mosfet_lock"
MOSFET_OVERTEMPERATURE = "mosfet_overtemperature"
CELL_IMBALANCE = "cell_imbalance"
SOC_LOW = "soc_low"

PROTECTION_NAMES: tuple[str, ...] = (
    CELL_OVERVOLTAGE,
    CELL_UNDERVOLTAGE,
    PACK_OVERVOLTAGE,
    PACK_UNDERVOLTAGE,
    CHARGE_OVERTEMPERATURE,
    CHARGE_UNDERTEMPERATURE,
    DISCHARGE_OVERTEMPERATURE,
    DISCHARGE_UNDERTEMPERATURE,
    CHARGE_OVERCURRENT,
    DISCHARGE_OVERCURRENT,
    SHORT_CIRCUIT,
    FRONTEND_ERROR,
    MOSFET_LOCK,
)
"""Names of JBD protection bits 0-12, which double as the vocabulary for every BMS."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BmsReading:
    """One poll of a serial BMS in SI units; ``None`` where the BMS does not report a value.

    ``current`` and ``power`` are positive while the battery is charging, whatever the wire
    convention of the BMS. ``balancing`` holds one flag per cell (index 0 = cell 1).
    """

    soc: float | None = None
    voltage: float | None = None
    current: float | None = None
    power: float | None = None
    remaining_capacity: float | None = None
    nominal_capacity: float | None = None
    cycles: int | None = None
    cell_voltages: tuple[float, ...] = ()
    temperatures: tuple[float, ...] = ()
    mosfet_temperature: float | None = None
    balancing: tuple[bool, ...] = ()
    charge_fet: bool | None = None
    discharge_fet: bool | None = None
    protections: frozenset[str] = field(default_factory=frozenset)
    model: str | None = None
    serial: str | None = None

    @property
    def min_cell_voltage(self) -> float | None:
        """Lowest cell voltage in V, or None without cell data."""
        return min(self.cell_voltages) if self.cell_voltages else None

    @property
    def max_cell_voltage(self) -> float | None:
        """Highest cell voltage in V, or None without cell data."""
        return max(self.cell_voltages) if self.cell_voltages else None


def bit_names(value: int, names: Sequence[str | None]) -> list[str]:
    """Names of the set bits of ``value`` (bit 0 = ``names[0]``); unnamed bits are skipped."""
    return [name for bit, name in enumerate(names) if name is not None and value >> bit & 1]


def bit_flags(value: int, count: int) -> tuple[bool, ...]:
    """``count`` booleans, one per bit of ``value`` starting at bit 0."""
    return tuple(bool(value >> bit & 1) for bit in range(count))


def power_of(voltage: float | None, current: float | None) -> float | None:
    """Power in W from voltage and current, None when either is unknown."""
    if voltage is None or current is None:
        return None
    return round(voltage * current, 3)


def _crc16_modbus_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC16_MODBUS_TABLE = _crc16_modbus_table()


def crc16_modbus(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/Modbus (poly 0xA001 reflected, init 0xFFFF) of ``data``, table driven."""
    crc = 0xFFFF
    table = _CRC16_MODBUS_TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


# Status codes of a frame check: a positive value is the end index of a valid frame.
INCOMPLETE: Final = 0
BAD_SHAPE: Final = -1
BAD_CHECKSUM: Final = -2


class StreamAssembler:
    """Cut a serial byte stream into checked frames that begin with a fixed start marker.

    Subclasses give the marker (``_start``) and ``_frame_end``, which returns the end index of a
    valid frame at a position, or :data:`INCOMPLETE`, :data:`BAD_SHAPE` or :data:`BAD_CHECKSUM`.

    Bytes before a start marker are dropped; a candidate with a wrong shape or checksum is
    abandoned one byte later; a candidate still waiting for bytes is given up as soon as a
    complete valid frame starts behind it. Between calls the buffer holds at most one
    incomplete frame.
    """

    _start: bytes = b""

    def __init__(self) -> None:
        """Start with an empty buffer and zeroed counters."""
        self._buffer = bytearray()
        self.discarded_bytes = 0
        self.checksum_errors = 0

    def reset(self) -> None:
        """Forget buffered bytes (before a request, after a reopen)."""
        self._buffer.clear()

    def _frame_end(self, buffer: bytearray, position: int, size: int) -> int:
        """End index of a valid frame at ``position``, or a status code (0 or negative)."""
        raise NotImplementedError

    def _next_complete(self, position: int, size: int) -> int:
        buffer = self._buffer
        start = buffer.find(self._start, position)
        while start >= 0:
            if self._frame_end(buffer, start, size) > 0:
                return start
            start = buffer.find(self._start, start + 1)
        return -1

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return every complete, checksum-valid frame in order."""
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        position = 0
        size = len(buffer)
        keep = len(self._start) - 1  # a start marker may be split across reads
        while True:
            start = buffer.find(self._start, position)
            if start < 0:
                drop = max(position, size - keep)
                self.discarded_bytes += drop - position
                position = drop
                break
            self.discarded_bytes += start - position
            position = start
            end = self._frame_end(buffer, position, size)
            if end > 0:
                frames.append(bytes(buffer[position:end]))
                position = end
                continue
            if end == INCOMPLETE:
                later = self._next_complete(position + 1, size)
                if later < 0:
                    break
                self.discarded_bytes += later - position
                position = later
                continue
            if end == BAD_CHECKSUM:
                self.checksum_errors += 1
            self.discarded_bytes += 1
            position += 1
        del buffer[:position]
        return frames


__all__ = [
    "BAD_CHECKSUM",
    "BAD_SHAPE",
    "CELL_IMBALANCE",
    "CELL_OVERVOLTAGE",
    "CELL_UNDERVOLTAGE",
    "CHARGE_OVERCURRENT",
    "CHARGE_OVERTEMPERATURE",
    "CHARGE_UNDERTEMPERATURE",
    "DISCHARGE_OVERCURRENT",
    "DISCHARGE_OVERTEMPERATURE",
    "DISCHARGE_UNDERTEMPERATURE",
    "FRONTEND_ERROR",
    "INCOMPLETE",
    "MOSFET_LOCK",
    "MOSFET_OVERTEMPERATURE",
    "PACK_OVERVOLTAGE",
    "PACK_UNDERVOLTAGE",
    "PROTECTION_NAMES",
    "SHORT_CIRCUIT",
    "SOC_LOW",
    "BmsReading",
    "StreamAssembler",
    "bit_flags",
    "bit_names",
    "crc16_modbus",
    "power_of",
]
