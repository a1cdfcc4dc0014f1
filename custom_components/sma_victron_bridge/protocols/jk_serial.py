"""JK (Jikong) JK-B* / JK-BD* BMS on the RS485/TTL ("GPS") port: the ``4E 57`` protocol, 115200 8N1.

Sources of the facts below: JK's "JK BMS RS485/TTL communication protocol" as transcribed in
syssi/esphome-jk-bms ``docs/protocol-design-uart-ttl-gps-port.md`` (register table, alarm and
status bits), syssi's ``components/jk_modbus`` and ``components/jk_bms`` (request layout,
password-then-write sequence, frame source byte) and jblance/mpp-solar ``jkserial.py``; captures
in ``testdata/jk/jk_serial.json``.

Frame (all big-endian)::

    4E 57 | length u16 | terminal id u32 | command | source | type | data … |
    record number u32 | 68 | 00 00 | sum u16

``length`` counts every byte after the start marker (frame length - 2). The checksum is the
16-bit sum of every byte before the last four, sent as ``00 00`` plus the sum. ``command`` is
0x01 activate, 0x02 write, 0x03 read one, 0x05 password, 0x06 read all; ``source`` 0 BMS,
1 Bluetooth, 2 GPS, 3 PC; ``type`` 0 request, 1 reply, 2 unsolicited upload.

A read-all request carries one data byte (register 0 = everything); the reply's data is a list
of records ``register value…`` whose value size is fixed per register, except the cell block
``79 n (index mV_hi mV_lo)…``. A write carries ``register value``. Writes follow a password
frame (command 0x05), as syssi's ``jk_modbus`` does; the BMS's answer to a write is not
documented, so the caller verifies a write by reading everything back.

Where the sources disagree this module follows JK's own document:

* Temperatures (0x80-0x82) above 100 are below zero: ``100 - raw`` ("101 is negative 1 degree,
  100 benchmark"), as dbus-serialbattery does. syssi's code computes ``99 - raw`` although its
  comment quotes the same rule; the document is the primary source.
* Current (0x84): with protocol version (0xC0) 1 it is sign-magnitude, bit 15 set = charging,
  the low 15 bits in 10 mA. Without 0xC0 (or with 0) the document defines ``(10000 - raw) x
  0.01 A``, positive = charging; syssi reports 0 A there, which would hide a real current.

Everything here is pure and raises only :class:`ProtocolError` on malformed input.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
import datetime as dt
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
    INCOMPLETE,
    MOSFET_OVERTEMPERATURE,
    PACK_OVERVOLTAGE,
    PACK_UNDERVOLTAGE,
    SOC_LOW,
    BmsReading,
    StreamAssembler,
    power_of,
)

BAUDRATE: Final = 115200
START: Final = b"\x4e\x57"
END_FLAG: Final = 0x68

CMD_ACTIVATE: Final = 0x01
CMD_WRITE: Final = 0x02
CMD_READ: Final = 0x03
CMD_PASSWORD: Final = 0x05
CMD_READ_ALL: Final = 0x06

SOURCE_BMS: Final = 0x00
SOURCE_BLUETOOTH: Final = 0x01
SOURCE_GPS: Final = 0x02
SOURCE_PC: Final = 0x03

TYPE_REQUEST: Final = 0x00
TYPE_REPLY: Final = 0x01
TYPE_UPLOAD: Final = 0x02

REG_ALL: Final = 0x00
REG_CELLS: Final = 0x79
REG_MOSFET_TEMPERATURE: Final = 0x80
REG_BOX_TEMPERATURE: Final = 0x81
REG_BATTERY_TEMPERATURE: Final = 0x82
REG_VOLTAGE: Final = 0x83
REG_CURRENT: Final = 0x84
REG_SOC: Final = 0x85
REG_SENSOR_COUNT: Final = 0x86
REG_CYCLES: Final = 0x87
REG_CYCLE_CAPACITY: Final = 0x89
REG_CELL_COUNT: Final = 0x8A
REG_ALARMS: Final = 0x8B
REG_STATUS: Final = 0x8C
REG_CAPACITY: Final = 0xAA
REG_CHARGE_SWITCH: Final = 0xAB
REG_DISCHARGE_SWITCH: Final = 0xAC
REG_DEVICE_ID: Final = 0xB4
REG_MANUFACTURE_DATE: Final = 0xB5
REG_WORKING_MINUTES: Final = 0xB6
REG_SOFTWARE_VERSION: Final = 0xB7
REG_ACTUAL_CAPACITY: Final = 0xB9
REG_MANUFACTURER: Final = 0xBA
REG_PROTOCOL_VERSION: Final = 0xC0

HEADER_LENGTH: Final = 11  # start, length, terminal, command, source, type
TRAILER_LENGTH: Final = 9  # record number, end flag, checksum
MIN_FRAME_LENGTH: Final = HEADER_LENGTH + TRAILER_LENGTH
MAX_FRAME_LENGTH: Final = 1024  # a 32-cell read-all reply is about 330 bytes

_TEMPERATURE_ZERO: Final = 100  # raw values above this are (raw - 100) degrees below zero
_CURRENT_OFFSET: Final = 10000  # protocol version 0: (10000 - raw) * 10 mA, + = charging
_SIGN_BIT: Final = 0x8000

# Value size of every register in a read-all reply (JK's register table); 0x79 is variable.
RECORD_SIZES: Final[dict[int, int]] = {
    **dict.fromkeys((0x80, 0x81, 0x82, 0x83, 0x84, 0x87, 0x8A, 0x8B, 0x8C), 2),
    0x85: 1,
    0x86: 1,
    0x89: 4,
    **dict.fromkeys(range(0x8E, 0x9D), 2),
    0x9D: 1,
    **dict.fromkeys(range(0x9E, 0xA9), 2),
    0xA9: 1,
    0xAA: 4,
    0xAB: 1,
    0xAC: 1,
    0xAD: 2,
    0xAE: 1,
    0xAF: 1,
    0xB0: 2,
    0xB1: 1,
    0xB2: 10,
    0xB3: 1,
    0xB4: 8,
    0xB5: 4,
    0xB6: 4,
    0xB7: 15,
    0xB8: 1,
    0xB9: 4,
    0xBA: 24,
    0xBB: 1,
    0xBC: 1,
    0xBD: 1,
    0xBE: 2,
    0xBF: 2,
    0xC0: 1,
}
"""Bytes after the register byte, per register; the cell block 0x79 carries its own length."""

ALARM_BITS: Final[tuple[tuple[str, ...], ...]] = (
    (SOC_LOW,),  # 0 low capacity (a warning)
    (MOSFET_OVERTEMPERATURE,),  # 1 power tube over temperature
    (PACK_OVERVOLTAGE,),  # 2 charging over voltage
    (PACK_UNDERVOLTAGE,),  # 3 discharging under voltage
    (CHARGE_OVERTEMPERATURE, DISCHARGE_OVERTEMPERATURE),  # 4 battery over temperature
    (CHARGE_OVERCURRENT,),  # 5
    (DISCHARGE_OVERCURRENT,),  # 6
    (CELL_IMBALANCE,),  # 7 cell voltage difference
    (CHARGE_OVERTEMPERATURE, DISCHARGE_OVERTEMPERATURE),  # 8 battery box over temperature
    (CHARGE_UNDERTEMPERATURE, DISCHARGE_UNDERTEMPERATURE),  # 9 battery low temperature
    (CELL_OVERVOLTAGE,),  # 10
    (CELL_UNDERVOLTAGE,),  # 11
)
"""Protection names of the alarm word 0x8B, bit by bit; bits 12/13 ("309_A/B protection") have
no documented meaning and are kept only in :attr:`JkStatus.alarms`."""

STATUS_CHARGE_FET: Final = 0x0001
STATUS_DISCHARGE_FET: Final = 0x0002
STATUS_BALANCER: Final = 0x0004


def checksum(data: bytes | bytearray | memoryview) -> int:
    """The 16-bit sum JK puts in the last two bytes (over every byte before the last four)."""
    return sum(data) & 0xFFFF


@dataclass(frozen=True, slots=True)
class JkSerialFrame:
    """A checked frame: envelope fields, raw data and (for replies) the records by register.

    ``records`` keeps each register's value bytes (for 0x79 the triples, without the count);
    requests have no records, their ``data`` is ``register [value…]``.
    """

    command: int
    source: int
    frame_type: int
    data: bytes
    terminal: int = 0
    record_number: int = 0
    records: Mapping[int, bytes] = field(default_factory=dict)

    @property
    def is_request(self) -> bool:
        """Whether a host sent this frame (type 0)."""
        return self.frame_type == TYPE_REQUEST


def _frame_end(buffer: bytes | bytearray, position: int, size: int) -> int:
    """End index of a valid frame at ``position``, or INCOMPLETE / BAD_SHAPE / BAD_CHECKSUM."""
    if size - position < 4:
        return INCOMPLETE
    length = int.from_bytes(buffer[position + 2 : position + 4], "big")
    total = length + 2
    if not MIN_FRAME_LENGTH <= total <= MAX_FRAME_LENGTH:
        return BAD_SHAPE
    end = position + total
    if end > size:
        return INCOMPLETE
    if buffer[end - 5] != END_FLAG:
        return BAD_SHAPE
    received = int.from_bytes(buffer[end - 4 : end], "big")
    if checksum(buffer[position : end - 4]) != received:
        return BAD_CHECKSUM
    return end


def _walk_records(data: bytes) -> dict[int, bytes]:
    records: dict[int, bytes] = {}
    index = 0
    size = len(data)
    while index < size:
        register = data[index]
        index += 1
        if register == REG_CELLS:
            if index >= size:
                raise ProtocolError("JK cell block without its length byte")
            length = data[index]
            index += 1
            if length % 3:
                raise ProtocolError(f"JK cell block length {length} is not a multiple of 3")
        else:
            known = RECORD_SIZES.get(register)
            if known is None:
                raise ProtocolError(f"JK record 0x{register:02X} is unknown, cannot go on")
            length = known
        if index + length > size:
            raise ProtocolError(f"JK record 0x{register:02X} cut off")
        records[register] = data[index : index + length]
        index += length
    return records


def parse_frame(frame: bytes) -> JkSerialFrame:
    """Check a whole frame and split it; a reply's data is walked into records."""
    size = len(frame)
    if size < MIN_FRAME_LENGTH:
        raise ProtocolError(f"JK frame too short ({size} bytes)")
    if frame[:2] != START:
        raise ProtocolError(f"JK frame must start with 4E 57, not {frame[:2].hex(' ')}")
    length = int.from_bytes(frame[2:4], "big")
    if length + 2 != size:
        raise ProtocolError(f"JK length field says {length + 2} bytes, frame has {size}")
    if frame[-5] != END_FLAG:
        raise ProtocolError(f"JK end flag must be 0x68, not 0x{frame[-5]:02X}")
    expected = checksum(frame[:-4])
    received = int.from_bytes(frame[-4:], "big")
    if expected != received:
        raise ProtocolError(f"JK checksum 0x{received:04X} != computed 0x{expected:04X}")
    frame_type = frame[10]
    data = bytes(frame[HEADER_LENGTH:-TRAILER_LENGTH])
    records = _walk_records(data) if frame_type != TYPE_REQUEST else {}
    return JkSerialFrame(
        command=frame[8],
        source=frame[9],
        frame_type=frame_type,
        data=data,
        terminal=int.from_bytes(frame[4:8], "big"),
        record_number=int.from_bytes(frame[-9:-5], "big"),
        records=records,
    )


# --- encoders --------------------------------------------------------------------------------


def encode_frame(
    command: int,
    data: bytes,
    *,
    source: int = SOURCE_PC,
    frame_type: int = TYPE_REQUEST,
    terminal: int = 0,
    record_number: int = 0,
) -> bytes:
    """A whole frame around ``data`` with length and checksum."""
    total = MIN_FRAME_LENGTH + len(data)
    if total > MAX_FRAME_LENGTH:
        raise ProtocolError(f"JK frame of {total} bytes is too long")
    body = (
        START
        + (total - 2).to_bytes(2, "big")
        + terminal.to_bytes(4, "big")
        + bytes((command, source, frame_type))
        + data
        + record_number.to_bytes(4, "big")
        + bytes((END_FLAG,))
    )
    return body + checksum(body).to_bytes(4, "big")


def encode_read_all_request() -> bytes:
    """The read-all request (identical to the one in the captures, source PC)."""
    return encode_frame(CMD_READ_ALL, bytes((REG_ALL,)))


def encode_password_request() -> bytes:
    """The password frame a host sends before a write (an empty password, as syssi does)."""
    return encode_frame(CMD_PASSWORD, bytes((REG_ALL, 0x00)))


def encode_write_request(register: int, value: bytes) -> bytes:
    """A write of ``value`` to ``register``; the value size must be the register's."""
    if RECORD_SIZES.get(register) != len(value):
        raise ProtocolError(f"JK register 0x{register:02X} does not take {len(value)} bytes")
    return encode_frame(CMD_WRITE, bytes((register,)) + value)


def encode_switch_requests(*, charge: bool | None, discharge: bool | None) -> list[bytes]:
    """Frames that set the charge (0xAB) and/or discharge (0xAC) switch: password, then writes."""
    writes = [
        encode_write_request(register, bytes((int(on),)))
        for register, on in ((REG_CHARGE_SWITCH, charge), (REG_DISCHARGE_SWITCH, discharge))
        if on is not None
    ]
    return [encode_password_request(), *writes] if writes else []


def encode_records(records: Iterable[tuple[int, bytes]]) -> bytes:
    """Reply data from ``(register, value)`` pairs; the cell block gets its length byte."""
    out = bytearray()
    for register, value in records:
        if register == REG_CELLS:
            if len(value) % 3 or len(value) > 0xFF:
                raise ProtocolError("JK cell block must be up to 85 triples")
            out += bytes((register, len(value))) + value
            continue
        if RECORD_SIZES.get(register) != len(value):
            raise ProtocolError(f"JK register 0x{register:02X} does not take {len(value)} bytes")
        out += bytes((register,)) + value
    return bytes(out)


def encode_cells(millivolts: Iterable[int]) -> bytes:
    """The 0x79 value: one ``index mV`` triple per cell, numbered from 1."""
    return b"".join(
        bytes((index,)) + value.to_bytes(2, "big") for index, value in enumerate(millivolts, 1)
    )


def encode_temperature(celsius: float) -> bytes:
    """A 0x80-0x82 value: whole degrees, below zero as 100 + |t| (JK's document)."""
    value = round(celsius)
    raw = value if value >= 0 else _TEMPERATURE_ZERO - value
    return max(0, min(0xFFFF, raw)).to_bytes(2, "big")


def encode_current(amps: float, *, protocol_version: int = 1) -> bytes:
    """A 0x84 value (+ = charging) in the encoding ``protocol_version`` selects."""
    centi = round(amps * 100)
    if protocol_version == 1:
        magnitude = min(abs(centi), 0x7FFF)
        return (magnitude | (_SIGN_BIT if centi > 0 else 0)).to_bytes(2, "big")
    return max(0, min(0xFFFF, _CURRENT_OFFSET - centi)).to_bytes(2, "big")


# --- decoding --------------------------------------------------------------------------------


def decode_temperature(raw: int) -> float:
    """Degrees Celsius from a 0x80-0x82 value (see the module docstring for the sign rule)."""
    if raw > _TEMPERATURE_ZERO:
        return float(_TEMPERATURE_ZERO - raw)
    return float(raw)


def decode_current(raw: int, protocol_version: int | None) -> float:
    """Amps (+ = charging) from a 0x84 value and the protocol version (0xC0, None if absent)."""
    if protocol_version == 1:
        magnitude = (raw & 0x7FFF) / 100
        return magnitude if raw & _SIGN_BIT else -magnitude + 0.0
    return round((_CURRENT_OFFSET - raw) / 100, 2)


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    text = value.split(b"\0", 1)[0].decode("ascii", errors="replace").strip()
    return text or None


def _uint(records: Mapping[int, bytes], register: int) -> int | None:
    value = records.get(register)
    return None if value is None else int.from_bytes(value, "big")


@dataclass(frozen=True, slots=True, kw_only=True)
class JkStatus:
    """What a read-all reply says, decoded; None where the reply lacks the record."""

    cell_voltages: tuple[float, ...]
    mosfet_temperature: float | None
    temperatures: tuple[float, ...]
    voltage: float | None
    current: float | None
    soc: int | None
    cycles: int | None
    cycle_capacity: int | None
    cell_count: int | None
    alarms: int
    status: int | None
    nominal_capacity: int | None
    charge_switch: bool | None
    discharge_switch: bool | None
    device_id: str | None
    manufacture_date: dt.date | None
    software_version: str | None
    manufacturer: str | None
    protocol_version: int | None

    @property
    def model(self) -> str | None:
        """The board's model from the manufacturer naming (0xBA), None when it names none.

        The 24 characters are free text: a B2A24S20P answers ``Input UserdaJK-B2A24S15P`` (the
        app's "Input Userdata" placeholder, then the model), a BD6A17S6P
        ``BT3072020120000200521001`` (a production code shared by other boards). Only the part
        from ``JK`` on is a model.
        """
        text = self.manufacturer
        if text is None or (start := text.find("JK")) < 0:
            return None
        return text[start:]

    @property
    def serial(self) -> str | None:
        """The device id code (0xB4) when the owner set one, else None.

        It is user-settable and boards leave the factory with the app's placeholder (the first
        8 characters of "Input Userdata"): every such board would share one "serial number".
        """
        text = self.device_id
        if text is None or "Input Userdata".startswith(text):
            return None
        return text

    @property
    def charge_fet(self) -> bool | None:
        """Charge MOSFET conducting (status word 0x8C bit 0)."""
        return None if self.status is None else bool(self.status & STATUS_CHARGE_FET)

    @property
    def discharge_fet(self) -> bool | None:
        """Discharge MOSFET conducting (status word 0x8C bit 1)."""
        return None if self.status is None else bool(self.status & STATUS_DISCHARGE_FET)

    @property
    def balancer_enabled(self) -> bool | None:
        """Balancer switch on (status word 0x8C bit 2)."""
        return None if self.status is None else bool(self.status & STATUS_BALANCER)

    @property
    def protections(self) -> frozenset[str]:
        """Protection names of the alarm bits that are set."""
        return frozenset(
            name for bit, names in enumerate(ALARM_BITS) if self.alarms >> bit & 1 for name in names
        )


def _date(text: str | None) -> dt.date | None:
    """0xB5 is ``YYMM`` as text (e.g. "2204" = April 2022); the day is not sent."""
    if text is None or len(text) != 4 or not text.isdigit():
        return None
    month = int(text[2:])
    if not 1 <= month <= 12:
        return None
    return dt.date(2000 + int(text[:2]), month, 1)


def decode_status(frame: JkSerialFrame) -> JkStatus:
    """Decode the records of a read-all reply."""
    if frame.is_request:
        raise ProtocolError("a JK request carries no status")
    records = frame.records
    cells = records.get(REG_CELLS, b"")
    triples = sorted(
        (cells[i], int.from_bytes(cells[i + 1 : i + 3], "big")) for i in range(0, len(cells), 3)
    )
    temperatures = tuple(
        decode_temperature(raw)
        for register in (REG_BOX_TEMPERATURE, REG_BATTERY_TEMPERATURE)
        if (raw := _uint(records, register)) is not None
    )
    mosfet = _uint(records, REG_MOSFET_TEMPERATURE)
    voltage = _uint(records, REG_VOLTAGE)
    current = _uint(records, REG_CURRENT)
    version = _uint(records, REG_PROTOCOL_VERSION)
    charge_switch = _uint(records, REG_CHARGE_SWITCH)
    discharge_switch = _uint(records, REG_DISCHARGE_SWITCH)
    return JkStatus(
        cell_voltages=tuple(millivolts / 1000 for _index, millivolts in triples),
        mosfet_temperature=None if mosfet is None else decode_temperature(mosfet),
        temperatures=temperatures,
        voltage=None if voltage is None else voltage / 100,
        current=None if current is None else decode_current(current, version),
        soc=_uint(records, REG_SOC),
        cycles=_uint(records, REG_CYCLES),
        cycle_capacity=_uint(records, REG_CYCLE_CAPACITY),
        cell_count=_uint(records, REG_CELL_COUNT),
        alarms=_uint(records, REG_ALARMS) or 0,
        status=_uint(records, REG_STATUS),
        nominal_capacity=_uint(records, REG_CAPACITY),
        charge_switch=None if charge_switch is None else bool(charge_switch),
        discharge_switch=None if discharge_switch is None else bool(discharge_switch),
        device_id=_text(records.get(REG_DEVICE_ID)),
        manufacture_date=_date(_text(records.get(REG_MANUFACTURE_DATE))),
        software_version=_text(records.get(REG_SOFTWARE_VERSION)),
        manufacturer=_text(records.get(REG_MANUFACTURER)),
        protocol_version=version,
    )


def to_reading(frame: JkSerialFrame, *, invert_current: bool = False) -> BmsReading:
    """A read-all reply as a :class:`BmsReading` (SI units, current + = charging).

    ``model`` and ``serial`` are :attr:`JkStatus.model` and :attr:`JkStatus.serial`; the
    software version (0xB7) is in :func:`decode_status`. The protocol reports no per-cell
    balancing, so ``balancing`` stays empty. The remaining capacity is SOC x nominal capacity
    (0xAA): the reply has no remaining-capacity record.
    """
    status = decode_status(frame)
    current = status.current
    if invert_current and current is not None:
        current = -current + 0.0
    soc = status.soc
    nominal = None if status.nominal_capacity is None else float(status.nominal_capacity)
    remaining = None
    if soc is not None and nominal is not None:
        remaining = round(nominal * soc / 100, 3)
    return BmsReading(
        soc=None if soc is None else float(soc),
        voltage=status.voltage,
        current=current,
        power=power_of(status.voltage, current),
        remaining_capacity=remaining,
        nominal_capacity=nominal,
        cycles=status.cycles,
        cell_voltages=status.cell_voltages,
        temperatures=status.temperatures,
        mosfet_temperature=status.mosfet_temperature,
        charge_fet=status.charge_fet,
        discharge_fet=status.discharge_fet,
        protections=status.protections,
        model=status.model,
        serial=status.serial,
    )


class FrameAssembler(StreamAssembler):
    """Cut a serial byte stream into checked ``4E 57`` frames (requests and replies alike).

    A length field outside 20 … 1024 bytes or a missing end flag abandons the candidate one
    byte later, so garbage containing ``4E 57`` never holds up a real frame for long.
    """

    _start = START

    def _frame_end(self, buffer: bytearray, position: int, size: int) -> int:
        return _frame_end(buffer, position, size)


__all__ = [
    "ALARM_BITS",
    "BAUDRATE",
    "RECORD_SIZES",
    "FrameAssembler",
    "JkSerialFrame",
    "JkStatus",
    "checksum",
    "decode_current",
    "decode_status",
    "decode_temperature",
    "encode_cells",
    "encode_current",
    "encode_frame",
    "encode_password_request",
    "encode_read_all_request",
    "encode_records",
    "encode_switch_requests",
    "encode_temperature",
    "encode_write_request",
    "parse_frame",
    "to_reading",
]
