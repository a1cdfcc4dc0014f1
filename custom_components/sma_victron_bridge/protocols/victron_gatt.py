"""Victron Bluetooth LE GATT: the SmartSolar VREG link and the SmartShunt characteristics.

Instant Readout advertisements (``victron_ble``) carry a fixed set of values and stop while a
phone is connected. A GATT connection reaches every VE.Direct register ("VREG") instead: the
same register numbers and encodings as the VE.Direct HEX protocol, carried in CBOR. It needs a
paired link (six-digit passkey), so it only works through a local BlueZ adapter.

SmartSolar service ``306b0001-…``, three characteristics, all with notifications:

* ``306b0002`` control: the host writes ``fa80ff``, ``f980`` and ``f941`` to open the session;
  the device acknowledges with ``f9 01``.
* ``306b0003`` and ``306b0004``: one byte stream in each direction, split across ATT packets
  (the public traces even split a single request between the two characteristics), so one
  parser reassembles the notifications of both in arrival order.

Host to device, each a command byte, a tag byte and a CBOR array::

    05 <tag> 81 19 <VREG big-endian>         get one register (0x18 <VREG> when VREG < 0x100)
    06 <tag> 82 19 <VREG> 4n <value LE>      set a register to a byte string of n bytes
    06 00 82 18 93 42 10 27                  set 0x0093 "connection keep-alive" = 10000 ms

Device to host, repeated: a three-byte key ``[08|09] [00|01|03] [18|19]`` whose last byte is the
CBOR head of the register number (0x18: one byte follows, 0x19: two), then one CBOR item, usually
a byte string holding the little-endian value. VREG 0x010E with ``h'00'`` ends a stream.

Victron's register list calls 0x0093 the connection keep-alive: once received, the device drops
the connection when the given time passes without another one. 0x010E is listed there as
"identify" (0 = off); the device sends it last, which is why it serves as the end marker.

SmartShunt service ``65970000-…``: one characteristic per value, named ``6597<VREG>-…`` after the
register it carries (SOC ``0FFF``, voltage ``ED8D``, ...), read or notified as plain
little-endian bytes; a u16 millisecond keep-alive written to ``6597ffff`` keeps the link up.

Sessions drive a connected client through :class:`GattLink`, a small protocol the Home Assistant
glue implements on top of bleak, so this module stays pure and testable with in-process peers.
Everything here raises only :class:`ProtocolError` or its subclasses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
import contextlib
from dataclasses import dataclass
import re
from typing import Final, Protocol

import cbor2

from . import ProtocolError

# --- UUIDs -------------------------------------------------------------------------------------

SMARTSOLAR_SERVICE_UUID: Final = "306b0001-b081-4037-83dc-e59fcc3cdfd0"
SMARTSOLAR_CONTROL_UUID: Final = "306b0002-b081-4037-83dc-e59fcc3cdfd0"
SMARTSOLAR_SINGLE_UUID: Final = "306b0003-b081-4037-83dc-e59fcc3cdfd0"
SMARTSOLAR_BULK_UUID: Final = "306b0004-b081-4037-83dc-e59fcc3cdfd0"
SMARTSOLAR_NOTIFY_UUIDS: Final = (
    SMARTSOLAR_CONTROL_UUID,
    SMARTSOLAR_SINGLE_UUID,
    SMARTSOLAR_BULK_UUID,
)

SMARTSHUNT_SERVICE_UUID: Final = "65970000-4bda-4c1e-af4b-551c4cf74769"
_SHUNT_UUID_SUFFIX: Final = "-4bda-4c1e-af4b-551c4cf74769"


def smartshunt_uuid(vreg: int) -> str:
    """The SmartShunt characteristic that carries register ``vreg`` (``6597<vreg>-…``)."""
    return f"6597{vreg & 0xFFFF:04x}{_SHUNT_UUID_SUFFIX}"


SMARTSHUNT_KEEP_ALIVE_UUID: Final = smartshunt_uuid(0xFFFF)

# --- registers ---------------------------------------------------------------------------------

VREG_KEEP_ALIVE: Final = 0x0093
VREG_FIRMWARE: Final = 0x0102
VREG_END_OF_STREAM: Final = 0x010E
VREG_CAPABILITIES: Final = 0x0140
VREG_DEVICE_MODE: Final = 0x0200
VREG_DEVICE_STATE: Final = 0x0201
VREG_ADJUSTABLE_VOLTAGE_MIN: Final = 0x2211
VREG_ADJUSTABLE_VOLTAGE_MAX: Final = 0x2212
VREG_UPTIME: Final = 0xEC5A
VREG_BATTERY_VOLTAGE: Final = 0xED8D
VREG_BATTERY_CURRENT: Final = 0xED8F
VREG_LOAD_STATE: Final = 0xEDA8
VREG_LOAD_VOLTAGE: Final = 0xEDA9
VREG_LOAD_CONTROL: Final = 0xEDAB
VREG_LOAD_OFFSET_VOLTAGE: Final = 0xEDAC
VREG_LOAD_CURRENT: Final = 0xEDAD
VREG_PV_VOLTAGE: Final = 0xEDBB
VREG_PV_POWER: Final = 0xEDBC
VREG_CHARGER_ERROR: Final = 0xEDDA
VREG_BATTERY_TEMPERATURE: Final = 0xEDEC
VREG_SHUNT_CURRENT: Final = 0xED8C
VREG_SHUNT_POWER: Final = 0xED8E
VREG_SHUNT_CONSUMED: Final = 0xEEFF
VREG_SHUNT_SOC: Final = 0x0FFF
VREG_SHUNT_TIME_TO_GO: Final = 0x0FFE

END_OF_STREAM_VALUE: Final = b"\x00"
CAPABILITY_LOAD_OUTPUT: Final = 0x01  # bit 0 of 0x0140: "load output present"

LOAD_OUTPUT_MODES: Final[dict[int, str]] = {
    0: "off",
    1: "auto",
    2: "alt1",
    3: "alt2",
    4: "on",
    5: "user1",
    6: "user2",
    7: "aes",
}
"""Values of 0xEDAB, load output control (VE.Direct HEX protocol for MPPTs)."""


@dataclass(frozen=True, slots=True)
class VregFormat:
    """How a register's bytes become a value: ``(raw + offset) / div``, an int when div is 1.

    ``size`` is the register width in bytes (0 for the firmware version, which has its own
    format). "Not available" is all ones for unsigned registers and the largest positive value
    for signed ones, as in the VE.Direct HEX protocol.
    """

    size: int
    signed: bool = False
    div: int = 1
    offset: int = 0

    @property
    def not_available(self) -> int:
        """The raw value meaning "no value"."""
        bits = 8 * self.size
        return (1 << (bits - 1)) - 1 if self.signed else (1 << bits) - 1


_U8: Final = VregFormat(1)
_U16: Final = VregFormat(2)
_U32: Final = VregFormat(4)
_CENTI_U16: Final = VregFormat(2, div=100)
_DECI_U16: Final = VregFormat(2, div=10)

VREG_FORMATS: Final[dict[int, VregFormat]] = {
    VREG_KEEP_ALIVE: _U16,  # ms
    VREG_FIRMWARE: VregFormat(0),
    VREG_END_OF_STREAM: _U8,
    VREG_CAPABILITIES: _U32,
    VREG_DEVICE_MODE: _U8,
    VREG_DEVICE_STATE: _U8,
    VREG_ADJUSTABLE_VOLTAGE_MIN: _CENTI_U16,
    VREG_ADJUSTABLE_VOLTAGE_MAX: _CENTI_U16,
    VREG_UPTIME: _U32,  # s
    VREG_BATTERY_VOLTAGE: VregFormat(2, signed=True, div=100),
    VREG_BATTERY_CURRENT: VregFormat(2, signed=True, div=10),
    VREG_LOAD_STATE: _U8,
    VREG_LOAD_VOLTAGE: _CENTI_U16,
    VREG_LOAD_CONTROL: _U8,
    VREG_LOAD_OFFSET_VOLTAGE: _CENTI_U16,
    VREG_LOAD_CURRENT: _DECI_U16,
    VREG_PV_VOLTAGE: _CENTI_U16,
    VREG_PV_POWER: VregFormat(4, div=100),
    VREG_CHARGER_ERROR: _U8,
    VREG_BATTERY_TEMPERATURE: VregFormat(2, div=100, offset=-27315),  # 0.01 K -> °C
    VREG_SHUNT_CURRENT: VregFormat(4, signed=True, div=1000),  # mA -> A
    VREG_SHUNT_POWER: VregFormat(2, signed=True),  # W
    VREG_SHUNT_CONSUMED: VregFormat(4, signed=True, div=10),  # 0.1 Ah
    VREG_SHUNT_SOC: _CENTI_U16,  # 0.01 %
    VREG_SHUNT_TIME_TO_GO: _U16,  # min
}
"""Register formats (VE.Direct HEX protocol for MPPTs and BMVs; Victron's register list)."""

VREG_NAMES: Final[dict[int, str]] = {
    VREG_FIRMWARE: "firmware",
    VREG_CAPABILITIES: "capabilities",
    VREG_DEVICE_MODE: "device_mode",
    VREG_DEVICE_STATE: "charge_state",
    VREG_ADJUSTABLE_VOLTAGE_MIN: "adjustable_voltage_min",
    VREG_ADJUSTABLE_VOLTAGE_MAX: "adjustable_voltage_max",
    VREG_UPTIME: "uptime",
    VREG_BATTERY_VOLTAGE: "battery_voltage",
    VREG_BATTERY_CURRENT: "battery_current",
    VREG_LOAD_STATE: "load_state",
    VREG_LOAD_VOLTAGE: "load_voltage",
    VREG_LOAD_CONTROL: "load_output_control",
    VREG_LOAD_OFFSET_VOLTAGE: "load_offset_voltage",
    VREG_LOAD_CURRENT: "load_current",
    VREG_PV_VOLTAGE: "pv_voltage",
    VREG_PV_POWER: "pv_power",
    VREG_CHARGER_ERROR: "charger_error",
    VREG_BATTERY_TEMPERATURE: "battery_temperature",
}
"""Names :meth:`SmartSolarSession.poll` reports, the advertisement's names where they overlap."""

DEFAULT_VREGS: Final[tuple[int, ...]] = (
    VREG_FIRMWARE,
    VREG_DEVICE_MODE,
    VREG_DEVICE_STATE,
    VREG_UPTIME,
    VREG_BATTERY_VOLTAGE,
    VREG_BATTERY_CURRENT,
    VREG_LOAD_STATE,
    VREG_LOAD_VOLTAGE,
    VREG_LOAD_OFFSET_VOLTAGE,
    VREG_LOAD_CURRENT,
    VREG_PV_VOLTAGE,
    VREG_PV_POWER,
    VREG_BATTERY_TEMPERATURE,
    VREG_ADJUSTABLE_VOLTAGE_MIN,
    VREG_ADJUSTABLE_VOLTAGE_MAX,
    VREG_CHARGER_ERROR,
)
"""What a SmartSolar poll asks for: the SmartSolar Connector's registers plus state and error."""

SMARTSHUNT_CHARACTERISTICS: Final[dict[str, int]] = {
    "soc": VREG_SHUNT_SOC,
    "voltage": VREG_BATTERY_VOLTAGE,
    "power": VREG_SHUNT_POWER,
    "current": VREG_SHUNT_CURRENT,
    "consumed_ah": VREG_SHUNT_CONSUMED,
    "time_to_go": VREG_SHUNT_TIME_TO_GO,
}
"""SmartShunt values (the advertisement's battery-monitor names) and the registers carrying them.

Signs are the device's own: current and power positive while charging; consumed Ah as the shunt
counts it (VE.Direct reports it negative once charge was taken out).
"""

# --- exceptions --------------------------------------------------------------------------------


class GattError(ProtocolError):
    """A GATT operation failed (the link's own error is chained as the cause)."""


class GattDisconnected(GattError):  # noqa: N818 - reads as what happened
    """The Bluetooth link is gone (dropped by the device, out of range, keep-alive missed)."""


class GattTimeout(GattError):  # noqa: N818 - reads as what happened
    """The device answered none of the registers asked for in time."""


class GattNotPaired(GattError):  # noqa: N818 - reads as what happened
    """The device refuses access: the link is not paired with the passkey."""


class GattUnsupported(GattError):  # noqa: N818 - reads as what happened
    """The device does not have the function asked for (a load output, say)."""


class StreamGarbage(ProtocolError):  # noqa: N818 - reads as what happened
    """Bytes that are not VREG items were skipped; the parser is in step again.

    ``items`` holds the complete items of the same :meth:`VregStreamParser.feed` call, so
    nothing decodable is lost by raising; ``skipped`` counts the bytes thrown away.
    """

    def __init__(self, message: str, items: list[tuple[int, bytes]], skipped: int) -> None:
        super().__init__(message)
        self.items = items
        self.skipped = skipped


# --- host requests -----------------------------------------------------------------------------

COMMAND_GET: Final = 0x05
COMMAND_SET: Final = 0x06
CONTROL_INIT: Final[tuple[bytes, ...]] = (
    bytes.fromhex("fa80ff"),
    bytes.fromhex("f980"),
    bytes.fromhex("f941"),
)
CONTROL_ACK: Final = bytes.fromhex("f901")
KEEP_ALIVE: Final = bytes.fromhex("0600821893421027")
"""Set 0x0093 (connection keep-alive) to 10000 ms: resend within 10 s to keep the link."""
KEEP_ALIVE_MS: Final = 10_000
SMARTSHUNT_KEEP_ALIVE_MS: Final = 60_000

_TAG: Final = 0x03  # the tag byte the public traces use for data registers


def _check_vreg(vreg: int) -> None:
    if not 0 <= vreg <= 0xFFFF:
        raise ProtocolError(f"register 0x{vreg:X} does not fit 16 bits")


def _check_tag(seq: int) -> None:
    if not 0 <= seq <= 0xFF:
        raise ProtocolError(f"tag {seq} does not fit a byte")


def _vreg_head(vreg: int) -> bytes:
    """The register number as a CBOR uint: 0x18 + one byte or 0x19 + two, as devices send."""
    _check_vreg(vreg)
    if vreg <= 0xFF:
        return bytes((0x18, vreg))
    return bytes((0x19, vreg >> 8, vreg & 0xFF))


def encode_vreg_request(vreg: int, seq: int) -> bytes:
    """``05 <seq> 81 19 <VREG big-endian>``: ask for one register (0x18 form below 0x100)."""
    _check_tag(seq)
    return bytes((COMMAND_GET, seq, 0x81)) + _vreg_head(vreg)


def encode_vreg_write(vreg: int, value: bytes, seq: int) -> bytes:
    """``06 <seq> 82 <VREG> <byte string>``: set a register to ``value`` (little-endian)."""
    _check_tag(seq)
    if len(value) > _MAX_ITEM_BYTES:
        raise ProtocolError(f"a register value of {len(value)} bytes does not fit an ATT write")
    return bytes((COMMAND_SET, seq, 0x82)) + _vreg_head(vreg) + cbor2.dumps(bytes(value))


def encode_vreg_item(vreg: int, value: bytes, *, seq: int = _TAG, key: int = 0x08) -> bytes:
    """One item as a device streams it: ``<key> <seq> 18|19 <VREG> <byte string>``.

    The device side of the link, for simulators and tests.
    """
    if key not in _KEY_FIRST or seq not in _KEY_SECOND:
        raise ProtocolError(f"item key {key:02x} {seq:02x} is not one devices send")
    return bytes((key, seq)) + _vreg_head(vreg) + cbor2.dumps(bytes(value))


END_OF_STREAM: Final = bytes.fromhex("080319010e4100")
"""The item that ends a stream: VREG 0x010E = h'00'."""


@dataclass(frozen=True, slots=True)
class VregCommand:
    """A host request as the device reads it: a get of ``vregs`` or a set of ``value``."""

    command: int
    seq: int
    vregs: tuple[int, ...]
    value: bytes | None = None


def decode_vreg_commands(data: bytes) -> tuple[list[VregCommand], int]:
    """Read host requests from the start of ``data`` (the device side, for simulators).

    Returns the complete commands and how many bytes they used; an incomplete last command is
    left for the caller to complete with the next write. Raises :class:`ProtocolError` for
    anything that is not a get or set command.
    """
    commands: list[VregCommand] = []
    view = memoryview(data)
    pos = 0
    while pos < len(data):
        command = data[pos]
        if command not in (COMMAND_GET, COMMAND_SET):
            raise ProtocolError(f"command byte 0x{command:02X} is neither get nor set")
        if pos + 1 == len(data):
            break
        seq = data[pos + 1]
        try:
            end = _item_end(data, pos + 2)
        except _Incomplete:
            break
        body = _cbor_loads(view[pos + 2 : end])
        commands.append(_command(command, seq, body))
        pos = end
    return commands, pos


def _command(command: int, seq: int, body: object) -> VregCommand:
    """Check the CBOR array of a command: [VREG, ...] for a get, [VREG, bytes] for a set."""
    if not isinstance(body, list) or not body:
        raise ProtocolError("a command carries a non-empty CBOR array")
    if not all(type(item) is int and 0 <= item <= 0xFFFF for item in body[:1]):
        raise ProtocolError("a command starts with a register number")
    if command == COMMAND_GET:
        if not all(type(item) is int and 0 <= item <= 0xFFFF for item in body):
            raise ProtocolError("a get lists register numbers")
        return VregCommand(command, seq, tuple(body))
    if len(body) != 2 or not isinstance(body[1], bytes):
        raise ProtocolError("a set carries a register number and a byte string")
    return VregCommand(command, seq, (body[0],), body[1])


# --- device stream -----------------------------------------------------------------------------

_KEY_FIRST: Final = frozenset((0x08, 0x09))
_KEY_SECOND: Final = frozenset((0x00, 0x01, 0x03))
_KEY: Final = re.compile(rb"[\x08\x09][\x00\x01\x03][\x18\x19]")
_MAX_ITEM_BYTES: Final = 512  # an ATT attribute value holds at most 512 bytes
_MAX_PENDING: Final = _MAX_ITEM_BYTES + 32  # an unfinished item longer than this is garbage
_MAX_DEPTH: Final = 8


class _Incomplete(Exception):  # noqa: N818 - an internal signal, not an error
    """More bytes are needed to finish the item."""


def _cbor_loads(view: memoryview) -> object:
    """``cbor2.loads`` for one complete, already delimited item; errors become ProtocolError."""
    try:
        return cbor2.loads(view)
    except cbor2.CBORError as err:
        raise ProtocolError(f"CBOR item does not decode: {err}") from err


def _item_end(data: bytes, pos: int, depth: int = 0) -> int:
    """Where the CBOR item starting at ``pos`` ends (RFC 8949 heads only, no decoding).

    Raises :class:`_Incomplete` when ``data`` stops inside the item and :class:`ProtocolError`
    for heads that are reserved, misplaced or longer than any ATT value.
    """
    if pos >= len(data):
        raise _Incomplete
    initial = data[pos]
    major = initial >> 5
    info = initial & 0x1F
    pos += 1
    if info < 24:
        argument = info
    elif info < 28:
        width = 1 << (info - 24)
        if pos + width > len(data):
            raise _Incomplete
        argument = int.from_bytes(data[pos : pos + width], "big")
        pos += width
    elif info == 31 and 2 <= major <= 5:
        return _indefinite_end(data, pos, major, depth)
    else:
        raise ProtocolError(f"CBOR head 0x{initial:02X} is reserved or misplaced")
    if major <= 1:
        return pos
    if major <= 3:
        if argument > _MAX_ITEM_BYTES:
            raise ProtocolError(f"CBOR string of {argument} bytes is longer than an ATT value")
        if pos + argument > len(data):
            raise _Incomplete
        return pos + argument
    if major == 7:
        if info == 24 and argument < 32:
            raise ProtocolError("CBOR simple value in two bytes must be 32 or more")
        return pos
    if depth >= _MAX_DEPTH:
        raise ProtocolError("CBOR item nests too deep")
    if major == 6:
        return _item_end(data, pos, depth + 1)
    count = argument * 2 if major == 5 else argument
    if count > _MAX_ITEM_BYTES:
        raise ProtocolError(f"CBOR container of {count} items is longer than an ATT value")
    for _ in range(count):
        pos = _item_end(data, pos, depth + 1)
    return pos


def _indefinite_end(data: bytes, pos: int, major: int, depth: int) -> int:
    """End of an indefinite-length string, array or map (items up to the 0xFF break)."""
    if depth >= _MAX_DEPTH:
        raise ProtocolError("CBOR item nests too deep")
    count = 0
    while True:
        if pos >= len(data):
            raise _Incomplete
        head = data[pos]
        if head == 0xFF:
            if major == 5 and count % 2:
                raise ProtocolError("CBOR map ends between a key and its value")
            return pos + 1
        if major <= 3 and (head >> 5 != major or head & 0x1F == 31):
            raise ProtocolError("CBOR string chunk of another type")
        pos = _item_end(data, pos, depth + 1)
        count += 1
        if count > _MAX_ITEM_BYTES:
            raise ProtocolError("CBOR container is longer than an ATT value")


def _item_bytes(view: memoryview, start: int, end: int) -> bytes:
    """The value of one item as bytes, the form :func:`decode_vreg` reads.

    Byte strings as they are; integers as the shortest little-endian two's complement; text as
    UTF-8; false/true as 0/1; null and undefined as empty. Floats, arrays, maps and tags, which
    no known register uses, come as their CBOR encoding so nothing is lost.
    """
    initial = view[start]
    if initial >> 5 > 3 and not 0xF4 <= initial <= 0xF7:
        return bytes(view[start:end])
    value = _cbor_loads(view[start:end])
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, int):  # bool included: True -> 01, False -> 00
        return value.to_bytes(value.bit_length() // 8 + 1, "little", signed=True)
    return b""


def _is_key_prefix(data: bytes) -> bool:
    """Whether ``data`` (one or two bytes) can be the start of an item key."""
    if data[0] not in _KEY_FIRST:
        return False
    return len(data) == 1 or data[1] in _KEY_SECOND


class VregStreamParser:
    """Reassembles VREG items from notifications that split them anywhere.

    ``feed`` returns the complete ``(vreg, value bytes)`` items in order and keeps an unfinished
    one for the next notification. Bytes that are not an item are skipped up to the next byte
    triple that looks like a key; the call then raises :class:`StreamGarbage`, which carries the
    items decoded in the same call. An unfinished item can never hold more than an ATT value, so
    the buffer stays small whatever arrives.
    """

    __slots__ = ("_buffer", "end_markers", "skipped")

    def __init__(self) -> None:
        self._buffer = b""
        self.end_markers = 0
        """End-of-stream items seen (VREG 0x010E = h'00'); they are also returned as items."""
        self.skipped = 0
        """Bytes thrown away as garbage since the parser was made."""

    @property
    def pending(self) -> int:
        """Bytes of an unfinished item waiting for the next notification."""
        return len(self._buffer)

    def reset(self) -> None:
        """Forget an unfinished item (after a reconnect)."""
        self._buffer = b""

    def feed(self, notification: bytes) -> list[tuple[int, bytes]]:
        """Add one notification; return the items it completes."""
        data = self._buffer + notification if self._buffer else bytes(notification)
        view = memoryview(data)
        items: list[tuple[int, bytes]] = []
        skipped = 0
        size = len(data)
        pos = 0
        while pos < size:
            if size - pos < 3 and _is_key_prefix(data[pos:]):
                break
            if (
                size - pos >= 3
                and data[pos] in _KEY_FIRST
                and data[pos + 1] in _KEY_SECOND
                and data[pos + 2] in (0x18, 0x19)
            ):
                head = pos + (4 if data[pos + 2] == 0x18 else 5)
                if head > size:
                    break
                vreg = int.from_bytes(data[pos + 3 : head], "big")
                try:
                    end = _item_end(data, head)
                    value = _item_bytes(view, head, end)
                except _Incomplete:
                    if size - pos <= _MAX_PENDING:
                        break
                except ProtocolError:
                    pass
                else:
                    items.append((vreg, value))
                    if vreg == VREG_END_OF_STREAM and value == END_OF_STREAM_VALUE:
                        self.end_markers += 1
                    pos = end
                    continue
            resync = self._resync(data, pos)
            skipped += resync - pos
            pos = resync
        self._buffer = data[pos:]
        if skipped:
            self.skipped += skipped
            raise StreamGarbage(f"skipped {skipped} bytes that are not VREG items", items, skipped)
        return items

    @staticmethod
    def _resync(data: bytes, pos: int) -> int:
        """The next position that may start an item (or keep a key prefix at the very end)."""
        found = _KEY.search(data, pos + 1)
        if found is not None:
            return found.start()
        for start in range(max(pos + 1, len(data) - 2), len(data)):
            if _is_key_prefix(data[start:]):
                return start
        return len(data)


# --- register values ---------------------------------------------------------------------------


def _firmware(raw: bytes) -> str | None:
    """0x0102: an identifier byte and a 24-bit version 0xHHMMLL (the identifier may be absent).

    HH = 0: version MM.LL; otherwise HH.MM, with LL = 0xFF for a release and a beta number
    otherwise. Digits are hexadecimal, as in VE.Direct's ``FW`` field (0x0161 is 1.61).
    """
    if len(raw) not in (3, 4):
        raise ProtocolError(f"firmware version of {len(raw)} bytes, expected 3 or 4")
    version = int.from_bytes(raw[-3:], "little")
    if version == 0xFFFFFF:
        return None
    high, middle, low = version >> 16, version >> 8 & 0xFF, version & 0xFF
    if not high:
        return f"{middle:x}.{low:02x}"
    beta = "" if low == 0xFF else f"-beta-{low:02x}"
    return f"{high:x}.{middle:02x}{beta}"


def decode_vreg(vreg: int, raw: bytes) -> float | int | str | None:
    """A register's value in SI units (°C for temperatures), ``None`` when not available.

    A value of the register's width is read as the register's type. Other lengths come from
    CBOR integers (the shortest two's complement) and must fit the register. Registers without
    a known format decode to an unsigned little-endian int (a hex string above 8 bytes).
    """
    if not raw:
        return None
    fmt = VREG_FORMATS.get(vreg)
    if fmt is None:
        return int.from_bytes(raw, "little") if len(raw) <= 8 else raw.hex()
    if not fmt.size:
        return _firmware(raw)
    return _number(vreg, fmt, raw)


def _number(vreg: int, fmt: VregFormat, raw: bytes) -> float | int | None:
    """A numeric register value; see :func:`decode_vreg`."""
    if len(raw) == fmt.size:
        value = int.from_bytes(raw, "little", signed=fmt.signed)
    else:
        value = int.from_bytes(raw, "little", signed=True)
        bits = 8 * fmt.size
        low = -(1 << (bits - 1)) if fmt.signed else 0
        high = (1 << (bits - 1 if fmt.signed else bits)) - 1
        if len(raw) > 8 or not low <= value <= high:
            raise ProtocolError(f"VREG 0x{vreg:04X}: {raw.hex()} does not fit {fmt.size} bytes")
    if value == fmt.not_available:
        return None
    if fmt.div == 1:
        return value + fmt.offset
    return (value + fmt.offset) / fmt.div


def encode_vreg(vreg: int, value: float | str | None) -> bytes:
    """The little-endian bytes of a register value (the inverse of :func:`decode_vreg`)."""
    fmt = VREG_FORMATS.get(vreg)
    if fmt is None:
        raise ProtocolError(f"VREG 0x{vreg:04X} has no known format")
    if not fmt.size:
        return _encode_firmware(value)
    if value is None:
        raw = fmt.not_available
    elif isinstance(value, str):
        raise ProtocolError(f"VREG 0x{vreg:04X} holds a number, not {value!r}")
    else:
        raw = round(value * fmt.div) - fmt.offset
    try:
        return raw.to_bytes(fmt.size, "little", signed=fmt.signed)
    except OverflowError as err:
        raise ProtocolError(f"VREG 0x{vreg:04X}: {value} does not fit the register") from err


def _encode_firmware(value: float | str | None) -> bytes:
    """``"1.65"`` → identifier 00 and version 0x0165FF (a release), ``None`` → no firmware."""
    if value is None:
        return b"\x00\xff\xff\xff"
    match = re.fullmatch(r"([0-9a-f]{1,2})\.([0-9a-f]{2})", str(value))
    if match is None:
        raise ProtocolError(f"firmware version {value!r} is not like 1.65")
    version = int(match[1], 16) << 16 | int(match[2], 16) << 8 | 0xFF
    return b"\x00" + version.to_bytes(3, "little")


def decode_smartshunt(uuid: str, raw: bytes) -> float | int | None:
    """Decode the value of a SmartShunt characteristic (``6597<VREG>-…``)."""
    uuid = uuid.lower()
    if len(uuid) != 36 or not uuid.startswith("6597") or not uuid.endswith(_SHUNT_UUID_SUFFIX):
        raise ProtocolError(f"{uuid} is not a SmartShunt characteristic")
    vreg = int(uuid[4:8], 16) if all(c in "0123456789abcdef" for c in uuid[4:8]) else -1
    if vreg not in SMARTSHUNT_CHARACTERISTICS.values():
        raise ProtocolError(f"{uuid} is not a SmartShunt value characteristic")
    fmt = VREG_FORMATS[vreg]
    if len(raw) != fmt.size:
        raise ProtocolError(f"{uuid}: {len(raw)} bytes, expected {fmt.size}")
    return _number(vreg, fmt, raw)


def encode_smartshunt_keep_alive(ms: int = SMARTSHUNT_KEEP_ALIVE_MS) -> bytes:
    """The u16 little-endian milliseconds written to ``6597ffff``."""
    if not 0 < ms <= 0xFFFF:
        raise ProtocolError(f"keep-alive of {ms} ms does not fit 16 bits")
    return ms.to_bytes(2, "little")


# --- sessions ----------------------------------------------------------------------------------


class GattLink(Protocol):
    """What a session needs from a connected GATT client (bleak's, wrapped, or a test peer).

    Methods may raise the client's own errors; the sessions turn them into
    :class:`GattDisconnected` when the link is down and :class:`GattError` otherwise.
    """

    @property
    def is_connected(self) -> bool:
        """Whether the link is up."""

    async def start_notify(self, uuid: str, callback: Callable[[bytes], None]) -> None:
        """Enable notifications of a characteristic; ``callback`` gets each value."""

    async def write(self, uuid: str, data: bytes, response: bool) -> None:
        """Write a characteristic, with or without a write response."""

    async def read(self, uuid: str) -> bytes:
        """Read a characteristic."""

    async def disconnect(self) -> None:
        """Close the link."""


_LINK_CHECK_INTERVAL: Final = 0.25  # s: how often a waiting poll looks at is_connected
_MAX_REQUEST_BYTES: Final = _MAX_ITEM_BYTES  # one (long) write carries a poll's requests


class _Session:
    """The parts both sessions share: calling the link and turning its errors into ours."""

    def __init__(self, link: GattLink) -> None:
        self._link = link
        self._lost = False

    @property
    def connected(self) -> bool:
        """Whether the link is up and was not reported lost."""
        return not self._lost and self._link.is_connected

    def connection_lost(self) -> None:
        """Tell the session the link dropped (bleak's disconnected callback); wakes a poll."""
        self._lost = True

    def _check_connected(self) -> None:
        if not self.connected:
            raise GattDisconnected("the Bluetooth link is down")

    async def _call[T](self, operation: Awaitable[T]) -> T:
        """Await a link operation, mapping the client's errors to :class:`GattError`s."""
        try:
            return await operation
        except ProtocolError:
            raise
        except Exception as err:  # the client's own type (BleakError, OSError, TimeoutError)
            if not self.connected:
                raise GattDisconnected(f"the Bluetooth link dropped: {err}") from err
            raise GattError(f"GATT operation failed: {err}") from err

    async def close(self) -> None:
        """Disconnect the link (errors while disconnecting are of no interest)."""
        self._lost = True
        with contextlib.suppress(Exception):  # the link is being dropped anyway
            await self._link.disconnect()


class SmartSolarSession(_Session):
    """A SmartSolar's VREG link: what the "SmartSolar Connector" did, without its threads.

    ``start`` opens the session, ``poll`` asks for ``vregs`` in one write and collects the
    answers from the stream until every register answered, the device ends the stream, or the
    timeout passes. ``keep_alive`` must run more often than every 10 s (``KEEP_ALIVE_MS``) or
    the device drops the link; ``poll`` sends one too. One session serves one connection: after
    :class:`GattDisconnected`, connect again and make a new session.
    """

    def __init__(
        self, link: GattLink, vregs: Iterable[int] = DEFAULT_VREGS, *, timeout: float = 5.0
    ) -> None:
        super().__init__(link)
        self.vregs = tuple(vregs)
        for vreg in self.vregs:
            _check_vreg(vreg)
        if len(KEEP_ALIVE) + 6 * len(self.vregs) > _MAX_REQUEST_BYTES:
            raise ValueError(f"{len(self.vregs)} registers do not fit one poll's write")
        self.timeout = timeout
        self.parser = VregStreamParser()
        self.registers: dict[int, bytes] = {}
        """The latest raw value of every register the device sent, asked for or not."""
        self.acks = 0
        self.garbage = 0
        self.decode_errors = 0
        self._wanted: frozenset[int] = frozenset()
        self._answers: dict[int, bytes] = {}
        self._done = asyncio.Event()  # wakes a waiting exchange: complete or link lost
        self._complete = False
        self._lock = asyncio.Lock()
        self._capabilities: int | None = None

    def connection_lost(self) -> None:
        """Tell the session the link dropped; a waiting poll raises at once."""
        super().connection_lost()
        self._done.set()

    async def start(self) -> None:
        """Enable notifications on the three characteristics and open the session."""
        self._check_connected()
        self.parser.reset()
        await self._call(self._link.start_notify(SMARTSOLAR_CONTROL_UUID, self._on_control))
        await self._call(self._link.start_notify(SMARTSOLAR_SINGLE_UUID, self._on_stream))
        await self._call(self._link.start_notify(SMARTSOLAR_BULK_UUID, self._on_stream))
        first, second, last = CONTROL_INIT
        await self._write(SMARTSOLAR_CONTROL_UUID, first)
        await self._write(SMARTSOLAR_CONTROL_UUID, second)
        await self._write(SMARTSOLAR_SINGLE_UUID, KEEP_ALIVE)
        await self._write(SMARTSOLAR_CONTROL_UUID, last)

    async def keep_alive(self, interval_ms: int = KEEP_ALIVE_MS) -> None:
        """Tell the device to keep the link for ``interval_ms`` more (0x0093)."""
        if not 0 < interval_ms <= 0xFFFF:
            raise ProtocolError(f"keep-alive of {interval_ms} ms does not fit 16 bits")
        self._check_connected()
        data = (
            KEEP_ALIVE
            if interval_ms == KEEP_ALIVE_MS
            else encode_vreg_write(VREG_KEEP_ALIVE, interval_ms.to_bytes(2, "little"), 0)
        )
        await self._write(SMARTSOLAR_SINGLE_UUID, data)

    async def read_vregs(
        self, vregs: Iterable[int], timeout: float | None = None
    ) -> dict[int, bytes]:
        """Raw values of ``vregs``; registers the device did not answer are left out."""
        wanted = tuple(vregs)
        stream = b"".join(encode_vreg_request(vreg, _TAG) for vreg in wanted)
        return await self._exchange(KEEP_ALIVE + stream, frozenset(wanted), timeout)

    async def poll(self, timeout: float | None = None) -> dict[str, float | int | str | None]:
        """Every polled register by name (``vreg_xxxx`` if unnamed); ``None`` if not answered.

        Raises :class:`GattTimeout` when no register answered, :class:`GattDisconnected` when
        the link drops before the answers are in.
        """
        answers = await self.read_vregs(self.vregs, timeout)
        values: dict[str, float | int | str | None] = {}
        for vreg in self.vregs:
            value: float | int | str | None = None
            if vreg in answers:
                try:
                    value = decode_vreg(vreg, answers[vreg])
                except ProtocolError:
                    self.decode_errors += 1
            values[VREG_NAMES.get(vreg, f"vreg_{vreg:04x}")] = value
        return values

    async def set_load_output(self, mode: int) -> None:
        """Set load output control (0xEDAB, :data:`LOAD_OUTPUT_MODES`) and check it took.

        Raises :class:`GattUnsupported` when the capabilities register says the model has no
        load output, :class:`ProtocolError` for an unknown mode or a device that keeps its
        old setting.
        """
        if mode not in LOAD_OUTPUT_MODES:
            raise ProtocolError(
                f"load output mode {mode} is not one of {sorted(LOAD_OUTPUT_MODES)}"
            )
        if self._capabilities is None:
            answer = await self.read_vregs((VREG_CAPABILITIES,))
            capabilities = decode_vreg(VREG_CAPABILITIES, answer[VREG_CAPABILITIES])
            self._capabilities = capabilities if isinstance(capabilities, int) else 0
        if not self._capabilities & CAPABILITY_LOAD_OUTPUT:
            raise GattUnsupported("this charger has no load output")
        stream = encode_vreg_write(VREG_LOAD_CONTROL, bytes((mode,)), _TAG)
        stream += encode_vreg_request(VREG_LOAD_CONTROL, _TAG)
        answer = await self._exchange(stream, frozenset((VREG_LOAD_CONTROL,)), None)
        if answer[VREG_LOAD_CONTROL] != bytes((mode,)):
            raise ProtocolError(
                f"load output control is {answer[VREG_LOAD_CONTROL].hex()}, not {mode:02x}"
            )

    async def _write(self, uuid: str, data: bytes) -> None:
        self._check_connected()
        await self._call(self._link.write(uuid, data, True))

    async def _exchange(
        self, stream: bytes, wanted: frozenset[int], timeout: float | None
    ) -> dict[int, bytes]:
        """Write requests, then collect the wanted registers from the notification stream."""
        async with self._lock:
            self._check_connected()
            self._wanted = wanted
            self._answers = {}
            self._done.clear()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + (self.timeout if timeout is None else timeout)
            self._complete = False
            try:
                await self._write(SMARTSOLAR_SINGLE_UUID, stream)
                while not self._complete:
                    self._check_connected()
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            self._done.wait(), min(remaining, _LINK_CHECK_INTERVAL)
                        )
                answers = self._answers
            finally:
                self._wanted = frozenset()
            if not answers:
                raise GattTimeout("the device answered none of the registers asked for")
            return answers

    def _on_control(self, data: bytes) -> None:
        """Control notifications: count the acknowledgements."""
        if bytes(data) == CONTROL_ACK:
            self.acks += 1

    def _on_stream(self, data: bytes) -> None:
        """Stream notifications: feed the parser and hand answers to a waiting poll."""
        try:
            items = self.parser.feed(bytes(data))
        except StreamGarbage as err:
            self.garbage += 1
            items = err.items
        for vreg, value in items:
            self.registers[vreg] = value
            if vreg in self._wanted:
                self._answers[vreg] = value
                if len(self._answers) == len(self._wanted):
                    self._complete = True
                    self._done.set()
            elif vreg == VREG_END_OF_STREAM and value == END_OF_STREAM_VALUE and self._answers:
                self._complete = True
                self._done.set()


class SmartShuntSession(_Session):
    """A SmartShunt's GATT service: one characteristic per value, plus the keep-alive.

    ``start`` writes the keep-alive and subscribes to every value, so ``latest`` follows the
    device between polls; ``poll`` reads them all. Without a keep-alive the shunt drops the
    link after about 60 s; ``keep_alive`` asks for ``keep_alive_ms`` more.
    """

    def __init__(self, link: GattLink, *, keep_alive_ms: int = SMARTSHUNT_KEEP_ALIVE_MS) -> None:
        super().__init__(link)
        self.keep_alive_ms = keep_alive_ms
        encode_smartshunt_keep_alive(keep_alive_ms)  # fail early on a value that cannot go out
        self.latest: dict[str, float | int | None] = {}
        """Values as the device last notified them."""
        self.decode_errors = 0

    async def start(self) -> None:
        """Send the first keep-alive and subscribe to every value characteristic."""
        await self.keep_alive()
        for name, vreg in SMARTSHUNT_CHARACTERISTICS.items():
            await self._call(self._link.start_notify(smartshunt_uuid(vreg), self._notified(name)))

    async def keep_alive(self) -> None:
        """Write the keep-alive interval to ``6597ffff``."""
        self._check_connected()
        data = encode_smartshunt_keep_alive(self.keep_alive_ms)
        await self._call(self._link.write(SMARTSHUNT_KEEP_ALIVE_UUID, data, True))

    async def poll(self) -> dict[str, float | int | None]:
        """Read every value characteristic."""
        values: dict[str, float | int | None] = {}
        for name, vreg in SMARTSHUNT_CHARACTERISTICS.items():
            self._check_connected()
            uuid = smartshunt_uuid(vreg)
            raw = await self._call(self._link.read(uuid))
            values[name] = decode_smartshunt(uuid, bytes(raw))
        self.latest.update(values)
        return values

    def _notified(self, name: str) -> Callable[[bytes], None]:
        uuid = smartshunt_uuid(SMARTSHUNT_CHARACTERISTICS[name])

        def on_value(data: bytes) -> None:
            try:
                self.latest[name] = decode_smartshunt(uuid, bytes(data))
            except ProtocolError:
                self.decode_errors += 1

        return on_value


__all__ = [
    "CAPABILITY_LOAD_OUTPUT",
    "COMMAND_GET",
    "COMMAND_SET",
    "CONTROL_ACK",
    "CONTROL_INIT",
    "DEFAULT_VREGS",
    "END_OF_STREAM",
    "END_OF_STREAM_VALUE",
    "KEEP_ALIVE",
    "KEEP_ALIVE_MS",
    "LOAD_OUTPUT_MODES",
    "SMARTSHUNT_CHARACTERISTICS",
    "SMARTSHUNT_KEEP_ALIVE_MS",
    "SMARTSHUNT_KEEP_ALIVE_UUID",
    "SMARTSHUNT_SERVICE_UUID",
    "SMARTSOLAR_BULK_UUID",
    "SMARTSOLAR_CONTROL_UUID",
    "SMARTSOLAR_NOTIFY_UUIDS",
    "SMARTSOLAR_SERVICE_UUID",
    "SMARTSOLAR_SINGLE_UUID",
    "VREG_ADJUSTABLE_VOLTAGE_MAX",
    "VREG_ADJUSTABLE_VOLTAGE_MIN",
    "VREG_BATTERY_CURRENT",
    "VREG_BATTERY_TEMPERATURE",
    "VREG_BATTERY_VOLTAGE",
    "VREG_CAPABILITIES",
    "VREG_CHARGER_ERROR",
    "VREG_DEVICE_MODE",
    "VREG_DEVICE_STATE",
    "VREG_END_OF_STREAM",
    "VREG_FIRMWARE",
    "VREG_FORMATS",
    "VREG_KEEP_ALIVE",
    "VREG_LOAD_CONTROL",
    "VREG_LOAD_CURRENT",
    "VREG_LOAD_OFFSET_VOLTAGE",
    "VREG_LOAD_STATE",
    "VREG_LOAD_VOLTAGE",
    "VREG_NAMES",
    "VREG_PV_POWER",
    "VREG_PV_VOLTAGE",
    "VREG_SHUNT_CONSUMED",
    "VREG_SHUNT_CURRENT",
    "VREG_SHUNT_POWER",
    "VREG_SHUNT_SOC",
    "VREG_SHUNT_TIME_TO_GO",
    "VREG_UPTIME",
    "GattDisconnected",
    "GattError",
    "GattLink",
    "GattNotPaired",
    "GattTimeout",
    "GattUnsupported",
    "SmartShuntSession",
    "SmartSolarSession",
    "StreamGarbage",
    "VregCommand",
    "VregFormat",
    "VregStreamParser",
    "decode_smartshunt",
    "decode_vreg",
    "decode_vreg_commands",
    "encode_smartshunt_keep_alive",
    "encode_vreg",
    "encode_vreg_item",
    "encode_vreg_request",
    "encode_vreg_write",
    "smartshunt_uuid",
]
