"""SMA Sunny Boy packet codec: Bluetooth level 1, SMA-data level 2, and Speedwire framing.

Sunny Boy inverters with the Bluetooth piggy-back talk over RFCOMM channel 1 in two layers:

* **Level 1** frames (18-byte header: ``7E``, length, header XOR, byte-reversed source and
  destination addresses, command) carry either network management (hello, topology, signal
  strength) or a piece of a level-2 packet (command 0x08 "more follows", 0x01 "last piece").
* **Level 2** packets are PPP-like: ``7E`` + escaped{``FF 03 60 65`` + body + FCS-16} + ``7E``.
  The body addresses a device by SUSyID/serial and carries a command, an argument range and
  records of measured values.

Newer inverters carry the same level-2 body over UDP port 9522 ("Speedwire"), without escaping
or FCS, inside an ``SMA\\0`` tag container. Keeping every layer a pure function of bytes lets the
Bluetooth client, the Speedwire client and the simulator share one tested implementation.

Every decoder raises :class:`ProtocolError` (and nothing else) on bad input; encoders raise it
for arguments the wire cannot carry.
"""

from __future__ import annotations

from binascii import crc_hqx
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
import random
import struct
from typing import Final

from . import ProtocolError

# --------------------------------------------------------------------------------------------
# Level 1 (Bluetooth)
# --------------------------------------------------------------------------------------------

L1_START: Final = 0x7E
L1_HEADER_SIZE: Final = 18

L1_PPP_LAST: Final = 0x0001
"""Level-1 command: the (last) piece of a level-2 packet."""
L1_HELLO: Final = 0x0002
L1_GET_VARIABLE: Final = 0x0003
L1_VARIABLE_REPLY: Final = 0x0004
L1_TOPOLOGY: Final = 0x0005
L1_NETWORK_READY: Final = 0x0006
L1_ERROR: Final = 0x0007
L1_PPP_MORE: Final = 0x0008
"""Level-1 command: a piece of a level-2 packet, more pieces follow."""
L1_CONNECTED: Final = 0x000A
L1_VERSION: Final = 0x0201

L1_VAR_SIGNAL_STRENGTH: Final = 0x0005
TOPOLOGY_INVERTER: Final = 0x0101
"""Device type of an inverter in a topology (0x05) entry."""

NO_ADDRESS: Final = "00:00:00:00:00:00"
BROADCAST_ADDRESS: Final = "FF:FF:FF:FF:FF:FF"
VERSION_ADDRESS: Final = "00:00:00:00:00:01"

_L1_PREFIX: Final = struct.Struct("<BHB")
_L1_HEADER: Final = struct.Struct("<BHB6s6sH")
_HELLO: Final = struct.Struct("<IBII")


@dataclass(frozen=True, slots=True)
class L1Packet:
    """One level-1 frame; addresses in the usual ``AA:BB:CC:DD:EE:FF`` order."""

    source: str
    destination: str
    command: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Hello:
    """Payload of the inverter's hello (0x02): protocol version and plant NetID."""

    protocol: int
    net_id: int


def _format_address(raw: bytes) -> str:
    return raw[::-1].hex(":").upper()


def _parse_address(text: str) -> bytes:
    """Turn ``AA:BB:CC:DD:EE:FF`` into the byte-reversed form the wire carries."""
    parts = text.split(":")
    if len(parts) != 6 or any(len(part) != 2 for part in parts):
        raise ProtocolError(f"not a Bluetooth address: {text!r}")
    try:
        raw = bytes.fromhex("".join(parts))
    except ValueError as err:
        raise ProtocolError(f"not a Bluetooth address: {text!r}") from err
    if len(raw) != 6:  # fromhex skips spaces: " 1:2 " passes the length checks above
        raise ProtocolError(f"not a Bluetooth address: {text!r}")
    return raw[::-1]


def _header_check(length: int) -> int:
    return L1_START ^ (length & 0xFF) ^ (length >> 8)


def decode_l1(frame: bytes) -> L1Packet:
    """Decode one complete level-1 frame, checking start byte, length field and header XOR."""
    size = len(frame)
    if size < L1_HEADER_SIZE:
        raise ProtocolError(f"level-1 frame too short: {size} bytes")
    start, length, check = _L1_PREFIX.unpack_from(frame)
    if start != L1_START:
        raise ProtocolError(f"level-1 frame starts with 0x{start:02X}, not 0x7E")
    if check != _header_check(length):
        raise ProtocolError("level-1 header check byte mismatch")
    if length != size:
        raise ProtocolError(f"level-1 length field {length} but frame has {size} bytes")
    return L1Packet(
        source=_format_address(frame[4:10]),
        destination=_format_address(frame[10:16]),
        command=frame[16] | frame[17] << 8,
        payload=bytes(frame[18:]),
    )


def encode_l1(source: str, destination: str, command: int, payload: bytes) -> bytes:
    """Build one level-1 frame (length and header XOR filled in)."""
    length = L1_HEADER_SIZE + len(payload)
    if length > 0xFFFF:
        raise ProtocolError(f"level-1 payload too long: {len(payload)} bytes")
    if not 0 <= command <= 0xFFFF:
        raise ProtocolError(f"level-1 command out of range: {command}")
    header = _L1_HEADER.pack(
        L1_START,
        length,
        _header_check(length),
        _parse_address(source),
        _parse_address(destination),
        command,
    )
    return header + bytes(payload)


class L1StreamParser:
    """Split an RFCOMM byte stream into level-1 frames.

    RFCOMM delivers a stream, not messages; the header's length field delimits frames. Bytes
    that cannot start a frame (wrong start byte or header XOR) are skipped one at a time so the
    parser resynchronises after line noise; ``errors`` counts the skipped starts.
    """

    __slots__ = ("_buffer", "errors", "max_frame")

    def __init__(self, max_frame: int = 0xFFFF) -> None:
        self._buffer = bytearray()
        self.errors = 0
        self.max_frame = max_frame

    def feed(self, data: bytes) -> list[L1Packet]:
        """Add received bytes; return every frame completed by them."""
        buffer = self._buffer
        buffer += data
        packets: list[L1Packet] = []
        while True:
            start = buffer.find(L1_START)
            if start < 0:
                buffer.clear()
                break
            if start:
                self.errors += 1
                del buffer[:start]
            if len(buffer) < 4:
                break
            _, length, check = _L1_PREFIX.unpack_from(buffer)
            if check != _header_check(length) or length < L1_HEADER_SIZE or length > self.max_frame:
                self.errors += 1
                del buffer[0]
                continue
            if len(buffer) < length:
                break
            packets.append(decode_l1(bytes(buffer[:length])))
            del buffer[:length]
        return packets


def decode_hello(packet: L1Packet) -> Hello:
    """Read protocol version and NetID from a hello (0x02); protocol < 4 means old firmware."""
    if packet.command != L1_HELLO or len(packet.payload) < 5:
        raise ProtocolError("not a hello packet")
    return Hello(protocol=packet.payload[1], net_id=packet.payload[4])


def decode_topology(packet: L1Packet) -> list[tuple[str, int]]:
    """List (address, device type) pairs of a topology packet (0x05); 0x0101 = inverter."""
    if packet.command != L1_TOPOLOGY:
        raise ProtocolError("not a topology packet")
    payload = packet.payload
    return [
        (
            _format_address(payload[offset : offset + 6]),
            payload[offset + 6] | payload[offset + 7] << 8,
        )
        for offset in range(0, len(payload) - 7, 8)
    ]


def decode_signal_strength(packet: L1Packet) -> float:
    """Signal strength in percent from the reply (0x04) to a get-variable 0x05 request."""
    if packet.command != L1_VARIABLE_REPLY or len(packet.payload) < 5:
        raise ProtocolError("not a signal strength reply")
    return packet.payload[4] * 100.0 / 255.0


def encode_hello_echo(source: str, destination: str, net_id: int) -> bytes:
    """Answer the inverter's hello, which starts the connection on the inverter's side."""
    if not 0 <= net_id <= 0xFF:
        raise ProtocolError(f"NetID out of range: {net_id}")
    return encode_l1(source, destination, L1_HELLO, _HELLO.pack(0x00700400, net_id, 0, 1))


def encode_ver_request(source: str = NO_ADDRESS, destination: str = VERSION_ADDRESS) -> bytes:
    """The optional ``ver\\r\\n`` request some clients send before waiting for the hello."""
    return encode_l1(source, destination, L1_VERSION, b"ver\r\n")


def encode_get_variable(source: str, destination: str, variable: int) -> bytes:
    """Ask for a level-1 variable (0x05 = signal strength); the reply is command 0x04."""
    if not 0 <= variable <= 0xFFFF:
        raise ProtocolError(f"variable out of range: {variable}")
    return encode_l1(source, destination, L1_GET_VARIABLE, variable.to_bytes(2, "little"))


class L2Reassembler:
    """Join the level-1 pieces (0x08 more … 0x01 last) of one level-2 packet per sender.

    Long replies (history, multi-record data) do not fit one level-1 frame; the inverter sends
    pieces with command 0x08 and finishes with 0x01. A piece stream that does not start with
    the 0x7E delimiter, or grows beyond ``max_size``, is dropped with a ProtocolError.
    """

    __slots__ = ("_pending", "max_size")

    def __init__(self, max_size: int = 0x10000) -> None:
        self._pending: dict[str, bytearray] = {}
        self.max_size = max_size

    def feed(self, packet: L1Packet) -> bytes | None:
        """Add a piece; return the complete level-2 wire bytes after the last piece."""
        if packet.command not in (L1_PPP_MORE, L1_PPP_LAST):
            raise ProtocolError(f"level-1 command 0x{packet.command:04X} carries no level 2")
        buffer = self._pending.get(packet.source)
        if buffer is None:
            if not packet.payload.startswith(b"\x7e"):
                raise ProtocolError("level-2 packet does not start with 0x7E")
            buffer = bytearray()
        buffer += packet.payload
        if len(buffer) > self.max_size:
            self._pending.pop(packet.source, None)
            raise ProtocolError(f"level-2 packet longer than {self.max_size} bytes")
        if packet.command == L1_PPP_MORE:
            self._pending[packet.source] = buffer
            return None
        self._pending.pop(packet.source, None)
        return bytes(buffer)

    def reset(self) -> None:
        """Forget unfinished packets (after a reconnect)."""
        self._pending.clear()


# --------------------------------------------------------------------------------------------
# Level 2 (SMA data)
# --------------------------------------------------------------------------------------------

L2_SIGNATURE: Final = b"\xff\x03\x60\x65"
L2_HEADER_SIZE: Final = 36
"""Body bytes before the records: header (24), command, first, last."""

APP_SUSY_ID: Final = 125
ANY_SUSY_ID: Final = 0xFFFF
ANY_SERIAL: Final = 0xFFFFFFFF
APP_SERIAL_MIN: Final = 900_000_000
APP_SERIAL_MAX: Final = 999_999_999

CTRL_NORMAL: Final = 0xA0
CTRL_ARCHIVE: Final = 0xE0

CMD_IDENTIFY: Final = 0x00000200
CMD_LOGOFF: Final = 0xFFFD010E
CMD_LOGON: Final = 0xFFFD040C
CMD_HISTORY_5MIN: Final = 0x70000200
CMD_HISTORY_DAILY: Final = 0x70200200
CMD_EVENTS_USER: Final = 0x70100200

USER_GROUP_USER: Final = 0x07
USER_GROUP_INSTALLER: Final = 0x0A
LOGON_TIMEOUT: Final = 0x384

ERROR_WRONG_PASSWORD: Final = 0x0100
ERROR_LRI_NOT_AVAILABLE: Final = 21
ERROR_BUSY: Final = 0x0001
"""Log-on refused because another application holds the inverter's session.

The public sources name only 0x0100 (wrong password) for the log-on reply; users report that
Sunny Explorer connected at the same time makes log-on fail. This value is the one this
project's simulator sends for that case; any other non-zero status stays a generic failure.
"""

PACKET_ID_FLAG: Final = 0x8000

_BODY_HEADER: Final = struct.Struct("<BBHIHHIHHHHI")
_U32: Final = struct.Struct("<I")

_ESCAPE: Final = 0x7D
_REVERSED_BITS: Final = bytes(int(f"{value:08b}"[::-1], 2) for value in range(256))


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A device or application on the SMA data layer: SUSyID and serial number."""

    susy_id: int
    serial: int


ANY_ENDPOINT: Final = Endpoint(ANY_SUSY_ID, ANY_SERIAL)


def new_app_endpoint(rng: random.Random | None = None) -> Endpoint:
    """This application's identity: SUSyID 125 with a random serial, as SMA's tools use."""
    chooser = rng if rng is not None else random.SystemRandom()
    return Endpoint(APP_SUSY_ID, chooser.randint(APP_SERIAL_MIN, APP_SERIAL_MAX))


@dataclass(frozen=True, slots=True)
class L2Packet:
    """One decoded level-2 packet (FCS checked, unescaped).

    ``first``/``last`` are the two u32 arguments after the command (0 when the body ends
    earlier); in data replies they are record indices, in requests LRI or time ranges.
    """

    command: int
    error: int
    fragments: int
    packet_id: int
    source_susy_id: int
    source_serial: int
    first: int
    last: int
    records: bytes
    ctrl: int = CTRL_NORMAL
    ctrl2: int = 0
    destination_susy_id: int = ANY_SUSY_ID
    destination_serial: int = ANY_SERIAL


def fcs16(data: bytes) -> int:
    """PPP FCS-16 (CRC-16/X-25: reflected 0x1021, init 0xFFFF, final XOR 0xFFFF).

    ``binascii.crc_hqx`` computes the same polynomial unreflected in C; feeding it bit-reversed
    bytes and reversing the result avoids a per-byte Python loop.
    """
    crc = crc_hqx(data.translate(_REVERSED_BITS), 0xFFFF)
    return ((_REVERSED_BITS[crc & 0xFF] << 8) | _REVERSED_BITS[crc >> 8]) ^ 0xFFFF


def escape(data: bytes) -> bytes:
    """Escape 7D, 7E, 11, 12, 13 as ``7D, b ^ 0x20`` (7D first so its output stays intact)."""
    return (
        data.replace(b"\x7d", b"\x7d\x5d")
        .replace(b"\x7e", b"\x7d\x5e")
        .replace(b"\x11", b"\x7d\x31")
        .replace(b"\x12", b"\x7d\x32")
        .replace(b"\x13", b"\x7d\x33")
    )


def unescape(data: bytes) -> bytes:
    """Undo :func:`escape`; any byte after 7D is XORed with 0x20."""
    if _ESCAPE not in data:
        return bytes(data)
    parts = data.split(b"\x7d")
    out = bytearray(parts[0])
    for part in parts[1:]:
        if not part:
            raise ProtocolError("escape byte 0x7D without a following byte")
        out.append(part[0] ^ 0x20)
        out += part[1:]
    return bytes(out)


def decode_l2_body(body: bytes) -> L2Packet:
    """Decode an unescaped level-2 body (starting at the length-in-words byte)."""
    size = len(body)
    if size < 28:
        raise ProtocolError(f"level-2 body too short: {size} bytes")
    (
        words,
        ctrl,
        dest_susy_id,
        dest_serial,
        ctrl2,
        src_susy_id,
        src_serial,
        _ctrl2_again,
        error,
        fragments,
        packet_id,
        command,
    ) = _BODY_HEADER.unpack_from(body)
    if words * 4 != size:
        raise ProtocolError(f"level-2 length {words} words but body has {size} bytes")
    first = _U32.unpack_from(body, 28)[0] if size >= 32 else 0
    last = _U32.unpack_from(body, 32)[0] if size >= 36 else 0
    return L2Packet(
        command=command,
        error=error,
        fragments=fragments,
        packet_id=packet_id & 0x7FFF,
        source_susy_id=src_susy_id,
        source_serial=src_serial,
        first=first,
        last=last,
        records=bytes(body[L2_HEADER_SIZE:]),
        ctrl=ctrl,
        ctrl2=ctrl2,
        destination_susy_id=dest_susy_id,
        destination_serial=dest_serial,
    )


def decode_l2(data: bytes) -> L2Packet:
    """Decode one level-2 packet as on the wire: 7E-delimited, escaped, FCS-16 protected."""
    if len(data) < 2 or data[0] != 0x7E or data[-1] != 0x7E:
        raise ProtocolError("level-2 packet is not delimited by 0x7E")
    inner = bytes(data[1:-1])
    if 0x7E in inner:
        raise ProtocolError("0x7E inside a level-2 packet")
    raw = unescape(inner)
    if len(raw) < len(L2_SIGNATURE) + 28 + 2:
        raise ProtocolError(f"level-2 packet too short: {len(raw)} bytes")
    if not raw.startswith(L2_SIGNATURE):
        raise ProtocolError("level-2 signature FF 03 60 65 missing")
    received = raw[-2] | raw[-1] << 8
    computed = fcs16(raw[:-2])
    if received != computed:
        raise ProtocolError(f"level-2 FCS 0x{received:04X}, computed 0x{computed:04X}")
    return decode_l2_body(raw[len(L2_SIGNATURE) : -2])


def build_l2_body(
    command: int,
    *,
    source: Endpoint,
    packet_id: int,
    destination: Endpoint = ANY_ENDPOINT,
    ctrl: int = CTRL_NORMAL,
    ctrl2: int = 0,
    args: Sequence[int] = (),
    extra: bytes = b"",
    error: int = 0,
    fragments: int = 0,
    id_flag: bool = True,
) -> bytes:
    """Build an unescaped level-2 body (the part Bluetooth and Speedwire share).

    ``args`` are u32 values after the command (first, last, …); ``extra`` raw bytes after them
    (the logon password). ``id_flag`` sets bit 15 of the packet id as requests carry it.
    """
    if not 0 <= packet_id <= 0x7FFF:
        raise ProtocolError(f"packet id out of range: {packet_id}")
    if len(extra) % 4:
        raise ProtocolError("level-2 extra bytes must fill whole 32-bit words")
    size = 28 + 4 * len(args) + len(extra)
    if size > 0xFF * 4:
        raise ProtocolError(f"level-2 body too long: {size} bytes")
    try:
        header = _BODY_HEADER.pack(
            size // 4,
            ctrl,
            destination.susy_id,
            destination.serial,
            ctrl2,
            source.susy_id,
            source.serial,
            ctrl2,
            error,
            fragments,
            packet_id | (PACKET_ID_FLAG if id_flag else 0),
            command,
        )
        arguments = struct.pack(f"<{len(args)}I", *args)
    except struct.error as err:
        raise ProtocolError(f"level-2 field out of range: {err}") from err
    return header + arguments + bytes(extra)


def frame_l2(body: bytes) -> bytes:
    """Wrap a level-2 body for Bluetooth: signature, FCS-16, escaping, 0x7E delimiters."""
    raw = L2_SIGNATURE + body
    return b"\x7e" + escape(raw + fcs16(raw).to_bytes(2, "little")) + b"\x7e"


def encode_l2(
    command: int,
    *,
    source: Endpoint,
    packet_id: int,
    destination: Endpoint = ANY_ENDPOINT,
    ctrl: int = CTRL_NORMAL,
    ctrl2: int = 0,
    args: Sequence[int] = (),
    extra: bytes = b"",
    error: int = 0,
    fragments: int = 0,
    id_flag: bool = True,
) -> bytes:
    """Build a level-2 packet as it goes on the Bluetooth wire (escaped, 7E-framed)."""
    return frame_l2(
        build_l2_body(
            command,
            source=source,
            packet_id=packet_id,
            destination=destination,
            ctrl=ctrl,
            ctrl2=ctrl2,
            args=args,
            extra=extra,
            error=error,
            fragments=fragments,
            id_flag=id_flag,
        )
    )


def encode_bt_packet(
    body: bytes, *, source: str = NO_ADDRESS, destination: str = NO_ADDRESS
) -> bytes:
    """Put a level-2 body into one level-1 frame (command 0x01) for RFCOMM."""
    return encode_l1(source, destination, L1_PPP_LAST, frame_l2(body))


# --------------------------------------------------------------------------------------------
# Requests a client sends (level-2 bodies; wrap with encode_bt_packet or encode_speedwire)
# --------------------------------------------------------------------------------------------

_USER_OFFSET: Final = 0x88
_INSTALLER_OFFSET: Final = 0xBB
_USER_TABLE: Final = bytes((value + _USER_OFFSET) & 0xFF for value in range(256))
_INSTALLER_TABLE: Final = bytes((value + _INSTALLER_OFFSET) & 0xFF for value in range(256))
PASSWORD_LENGTH: Final = 12


def encode_logon_password(password: str, installer: bool = False) -> bytes:
    """Encode a logon password: each char + 0x88 (user) / + 0xBB (installer), mod 256.

    Padded to 12 bytes with the offset itself (an encoded NUL). python-smadata2 computes
    ``(c + 0x88) % 0xff``, which differs from the inverter's mod-256 sum for chars >= 0x77.
    """
    if len(password) > PASSWORD_LENGTH:
        raise ProtocolError(f"password longer than {PASSWORD_LENGTH} characters")
    if not password.isascii():
        raise ProtocolError("password must be ASCII")
    table = _INSTALLER_TABLE if installer else _USER_TABLE
    padded = password.encode("ascii").ljust(PASSWORD_LENGTH, b"\x00")
    return padded.translate(table)


def build_identify(source: Endpoint, packet_id: int) -> bytes:
    """Broadcast identification: every inverter answers with its SUSyID and serial."""
    return build_l2_body(CMD_IDENTIFY, source=source, packet_id=packet_id, args=(0, 0))


def build_logoff(source: Endpoint, packet_id: int) -> bytes:
    """Log off every device (broadcast, ctrl2 0x0300, argument 0xFFFFFFFF); not answered."""
    return build_l2_body(
        CMD_LOGOFF, source=source, packet_id=packet_id, ctrl2=0x0300, args=(0xFFFFFFFF,)
    )


def build_logon(
    source: Endpoint,
    packet_id: int,
    password: str,
    now: int,
    *,
    installer: bool = False,
    destination: Endpoint = ANY_ENDPOINT,
) -> bytes:
    """Log on as user or installer; the reply echoes ``now`` and error 0x0100 = bad password."""
    group = USER_GROUP_INSTALLER if installer else USER_GROUP_USER
    return build_l2_body(
        CMD_LOGON,
        source=source,
        packet_id=packet_id,
        destination=destination,
        ctrl2=0x0100,
        args=(group, LOGON_TIMEOUT, now, 0),
        extra=encode_logon_password(password, installer),
    )


class Query(Enum):
    """Data requests SMA's tools use: (command, first LRI, last LRI)."""

    ENERGY_PRODUCTION = (0x54000200, 0x00260100, 0x002622FF)
    OPERATION_TIME = (0x54000200, 0x00462E00, 0x00462FFF)
    DC_POWER = (0x53800200, 0x00251E00, 0x00251EFF)
    DC_VOLTAGE_CURRENT = (0x53800200, 0x00451F00, 0x004521FF)
    AC_POWER = (0x51000200, 0x00464000, 0x004642FF)
    AC_VOLTAGE_CURRENT = (0x51000200, 0x00464800, 0x004655FF)
    GRID_FREQUENCY = (0x51000200, 0x00465700, 0x004657FF)
    AC_TOTAL_POWER = (0x51000200, 0x00263F00, 0x00263FFF)
    DEVICE_STATUS = (0x51800200, 0x00214800, 0x002148FF)
    GRID_RELAY = (0x51800200, 0x00416400, 0x004164FF)
    TYPE_LABEL = (0x58000200, 0x00821E00, 0x008220FF)
    SOFTWARE_VERSION = (0x58000200, 0x00823400, 0x008234FF)
    TEMPERATURE = (0x52000200, 0x00237700, 0x002377FF)

    @property
    def command(self) -> int:
        """Level-2 command of the request."""
        return self.value[0]

    @property
    def first(self) -> int:
        """First LRI of the requested range."""
        return self.value[1]

    @property
    def last(self) -> int:
        """Last LRI of the requested range."""
        return self.value[2]


def build_query(
    query: Query, source: Endpoint, packet_id: int, destination: Endpoint = ANY_ENDPOINT
) -> bytes:
    """Request one block of live values (see :class:`Query`)."""
    return build_l2_body(
        query.command,
        source=source,
        packet_id=packet_id,
        destination=destination,
        args=(query.first, query.last),
    )


def five_minute_window(day_start: int) -> tuple[int, int]:
    """Time range SBFspot asks for one day of 5-minute data (day_start = local midnight)."""
    return day_start - 300, day_start + 86100


def build_history(
    source: Endpoint,
    packet_id: int,
    first_time: int,
    last_time: int,
    *,
    daily: bool = False,
    destination: Endpoint = ANY_ENDPOINT,
) -> bytes:
    """Request archived yield counters: 5-minute (0x70000200) or daily (0x70200200) rows."""
    return build_l2_body(
        CMD_HISTORY_DAILY if daily else CMD_HISTORY_5MIN,
        source=source,
        packet_id=packet_id,
        destination=destination,
        ctrl=CTRL_ARCHIVE,
        args=(first_time, last_time),
    )


# --------------------------------------------------------------------------------------------
# Speedwire (UDP 9522)
# --------------------------------------------------------------------------------------------

SPEEDWIRE_PORT: Final = 9522
SPEEDWIRE_SIGNATURE: Final = b"SMA\x00"
SPEEDWIRE_TAG_GROUP: Final = 0x02A0
SPEEDWIRE_TAG_DATA: Final = 0x0010
SPEEDWIRE_PROTOCOL_SMA_DATA: Final = 0x6065

_SW_HEADER: Final = struct.Struct(">4sHHIHHH")
_SW_TAG: Final = struct.Struct(">HH")


def encode_speedwire(l2_body: bytes, group: int = 1) -> bytes:
    """Wrap a level-2 body into a Speedwire datagram.

    Layout (big-endian tag container, as SBFspot writes it): ``SMA\\0``; tag 0x02A0 (length 4,
    group 1); tag 0x0010 whose length counts the protocol id 0x6065 and the body; end tag
    (four zero bytes). The body is neither escaped nor FCS-protected.
    """
    size = len(l2_body) + 2
    if size > 0xFFFF:
        raise ProtocolError(f"Speedwire body too long: {len(l2_body)} bytes")
    header = _SW_HEADER.pack(
        SPEEDWIRE_SIGNATURE,
        4,
        SPEEDWIRE_TAG_GROUP,
        group,
        size,
        SPEEDWIRE_TAG_DATA,
        SPEEDWIRE_PROTOCOL_SMA_DATA,
    )
    return header + bytes(l2_body) + b"\x00\x00\x00\x00"


def decode_speedwire(datagram: bytes) -> L2Packet:
    """Find the SMA-data tag (0x0010, protocol 0x6065) in a Speedwire datagram and decode it."""
    size = len(datagram)
    if not datagram.startswith(SPEEDWIRE_SIGNATURE):
        raise ProtocolError("Speedwire datagram does not start with SMA\\0")
    offset = len(SPEEDWIRE_SIGNATURE)
    while offset + 4 <= size:
        length, tag = _SW_TAG.unpack_from(datagram, offset)
        offset += 4
        if length == 0 and tag == 0:
            break
        end = offset + length
        if end > size:
            raise ProtocolError("Speedwire tag runs past the datagram")
        if tag == SPEEDWIRE_TAG_DATA:
            if length < 2:
                raise ProtocolError("Speedwire data tag without protocol id")
            protocol = datagram[offset] << 8 | datagram[offset + 1]
            if protocol != SPEEDWIRE_PROTOCOL_SMA_DATA:
                raise ProtocolError(f"Speedwire protocol 0x{protocol:04X} is not SMA data")
            return decode_l2_body(bytes(datagram[offset + 2 : end]))
        offset = end
    raise ProtocolError("Speedwire datagram has no SMA-data tag")


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------

DT_ULONG: Final = 0x00
DT_STATUS: Final = 0x08
DT_STRING: Final = 0x10
DT_FLOAT: Final = 0x20
DT_SLONG: Final = 0x40

NAN_S32: Final = 0x80000000
NAN_U32: Final = 0xFFFFFFFF
NAN_S64: Final = 0x8000000000000000
NAN_U64: Final = 0xFFFFFFFFFFFFFFFF
ATTRIBUTE_END: Final = 0xFFFFFE

LRI_DEVICE_NAME: Final = 0x00821E00
LRI_SOFTWARE_VERSION: Final = 0x00823400

type RecordValue = int | float | str | tuple[int, ...] | None


@dataclass(frozen=True, slots=True)
class LriInfo:
    """What an LRI measures: a stable key, its unit, the raw-value divisor and its sign.

    ``signed`` is the value's definition (s32 or u32), which decides both how the 32 bits of a
    spot record read and which "not available" marker applies. It does not come from the
    record's data-type byte: that byte is not a reliable sign flag across firmware, and a
    negative power or temperature read as unsigned becomes a number in the billions.
    """

    name: str
    unit: str | None
    scale: int = 1
    signed: bool = False


LRI_TABLE: Final[dict[int, LriInfo]] = {
    0x00260100: LriInfo("energy_total", "Wh"),
    0x00262200: LriInfo("energy_today", "Wh"),
    0x00462E00: LriInfo("operation_time", "s"),
    0x00462F00: LriInfo("feed_in_time", "s"),
    0x00251E00: LriInfo("dc_power", "W", signed=True),
    0x00451F00: LriInfo("dc_voltage", "V", 100, signed=True),
    0x00452100: LriInfo("dc_current", "A", 1000, signed=True),
    0x00263F00: LriInfo("ac_power", "W", signed=True),
    0x00464000: LriInfo("ac_power_l1", "W", signed=True),
    0x00464100: LriInfo("ac_power_l2", "W", signed=True),
    0x00464200: LriInfo("ac_power_l3", "W", signed=True),
    0x00464800: LriInfo("ac_voltage_l1", "V", 100),
    0x00464900: LriInfo("ac_voltage_l2", "V", 100),
    0x00464A00: LriInfo("ac_voltage_l3", "V", 100),
    0x00464B00: LriInfo("ac_voltage_l1_l2", "V", 100),
    0x00464C00: LriInfo("ac_voltage_l2_l3", "V", 100),
    0x00464D00: LriInfo("ac_voltage_l3_l1", "V", 100),
    0x00465000: LriInfo("ac_current_l1", "A", 1000, signed=True),
    0x00465100: LriInfo("ac_current_l2", "A", 1000, signed=True),
    0x00465200: LriInfo("ac_current_l3", "A", 1000, signed=True),
    0x00465300: LriInfo("ac_current_l1", "A", 1000, signed=True),
    0x00465400: LriInfo("ac_current_l2", "A", 1000, signed=True),
    0x00465500: LriInfo("ac_current_l3", "A", 1000, signed=True),
    0x00465700: LriInfo("grid_frequency", "Hz", 100),
    0x00237700: LriInfo("temperature", "°C", 100, signed=True),
    0x00214800: LriInfo("device_status", None),
    0x00416400: LriInfo("grid_relay", None),
    0x00821E00: LriInfo("device_name", None),
    0x00821F00: LriInfo("device_class", None),
    0x00822000: LriInfo("device_type", None),
    0x00823400: LriInfo("software_version", None),
}
"""LRI (``code & 0x00FFFF00``) → meaning. The DC LRIs repeat per string in ``cls`` (1, 2).

Signed are the values that can go below zero: every power and current (a battery or grid
inverter feeds both ways, a string draws a little at dusk) and the temperature; DC voltage is
s32 as well, as SMA defines the same objects in its Modbus profile. AC voltages and the grid
frequency are u32; energy and time counters are u64 records.
"""

STATUS_TAGS: Final[dict[int, str]] = {
    35: "fault",
    303: "off",
    307: "ok",
    455: "warning",
    51: "closed",
    311: "open",
    16777213: "not_available",
}
"""Attribute tags of device status and grid relay records."""

DEVICE_CLASS_TAGS: Final[dict[int, str]] = {
    8000: "all_devices",
    8001: "solar_inverter",
    8002: "wind_turbine_inverter",
    8007: "battery_inverter",
    8033: "consumer",
    8064: "sensor_system",
    8065: "electricity_meter",
    8128: "communication_product",
}

_RELEASE_TYPES: Final = "NEABRS"


@dataclass(frozen=True, slots=True)
class Record:
    """One value record of a data or history reply.

    ``value``: scaled number (None for the device's NaN markers); for attribute records the
    selected tags; a string for the device name and the software version. History rows have
    ``code`` 0 and carry the yield counter in Wh.
    """

    code: int
    lri: int
    cls: int
    data_type: int
    timestamp: int
    value: RecordValue

    @property
    def name(self) -> str | None:
        """Stable key of the LRI, None when unknown."""
        info = LRI_TABLE.get(self.lri)
        return info.name if info else None

    @property
    def unit(self) -> str | None:
        """Unit of ``value`` (None for unknown LRIs, tags and text)."""
        info = LRI_TABLE.get(self.lri)
        return info.unit if info else None


class _Kind(IntEnum):
    """Record layouts, valued by their usual size in bytes."""

    COUNTER64 = 16
    SPOT32 = 28
    ATTRIBUTE = 40
    HISTORY = 12


_COMMAND_KIND: Final[dict[int, _Kind]] = {
    0x54000200: _Kind.COUNTER64,
    0x51000200: _Kind.SPOT32,
    0x53800200: _Kind.SPOT32,
    0x52000200: _Kind.SPOT32,
    0x51800200: _Kind.ATTRIBUTE,
    0x58000200: _Kind.ATTRIBUTE,
    CMD_HISTORY_5MIN: _Kind.HISTORY,
    CMD_HISTORY_DAILY: _Kind.HISTORY,
}
_MIN_SIZE: Final[dict[_Kind, int]] = {
    _Kind.COUNTER64: 16,
    _Kind.SPOT32: 20,
    _Kind.ATTRIBUTE: 12,
    _Kind.HISTORY: 12,
}


def _record_size(kind: _Kind, packet: L2Packet) -> int:
    """Record size: the command's usual size, or the one the reply's index range implies.

    Replies give first/last record indices; SBFspot derives the size from them, which copes
    with firmware that sends shorter records. The derived size wins when it divides evenly.
    """
    if kind is _Kind.HISTORY:
        return int(kind)
    count = packet.last - packet.first + 1
    total = len(packet.records)
    if count > 0 and total % count == 0:
        derived = total // count
        if derived >= _MIN_SIZE[kind] and derived % 4 == 0:
            return derived
    return int(kind)


def _scale(lri: int, raw: int) -> int | float:
    info = LRI_TABLE.get(lri)
    if info is None or info.scale == 1:
        return raw
    return raw / info.scale


def _software_version(packed: int) -> str | None:
    """Packed u32 (LE bytes: release type, build, minor BCD, major BCD) → ``MM.mm.BB.R``.

    An inverter that does not know its version sends a NaN marker (all bits set, or the
    signed NaN 0x80000000); that is "unknown", not version ``ff.ff.255.255``.
    """
    if packed in (NAN_U32, NAN_S32):
        return None
    release = packed & 0xFF
    build = (packed >> 8) & 0xFF
    minor = (packed >> 16) & 0xFF
    major = packed >> 24
    kind = _RELEASE_TYPES[release] if release < len(_RELEASE_TYPES) else str(release)
    return f"{major >> 4:x}{major & 0xF:x}.{minor >> 4:x}{minor & 0xF:x}.{build:02d}.{kind}"


def _decode_counter64(records: bytes, size: int) -> list[Record]:
    layout = struct.Struct(f"<IIQ{size - 16}x")
    out: list[Record] = []
    for code, timestamp, raw in layout.iter_unpack(records):
        lri = code & 0x00FFFF00
        value = None if raw in (NAN_S64, NAN_U64) else _scale(lri, raw)
        out.append(Record(code, lri, code & 0xFF, code >> 24, timestamp, value))
    return out


def _spot_number(raw: int, signed: bool) -> int | None:
    """The 32 value bits as the value's definition reads them; None for "not available".

    A signed value's marker is 0x80000000, and 0xFFFFFFFF is -1 (a real reading, e.g. -1 W).
    An unsigned value's marker is 0xFFFFFFFF; 0x80000000 is taken as unknown too, because
    firmware mixes the two markers (see :func:`_software_version`) and no unsigned spot value
    (21 MV, 21 kHz) comes anywhere near it.
    """
    if signed:
        return None if raw == NAN_S32 else raw - 0x100000000 if raw & NAN_S32 else raw
    return None if raw in (NAN_U32, NAN_S32) else raw


def _decode_spot32(records: bytes, size: int) -> list[Record]:
    layout = struct.Struct(f"<II8xI{size - 20}x")
    out: list[Record] = []
    for code, timestamp, raw in layout.iter_unpack(records):
        lri = code & 0x00FFFF00
        data_type = code >> 24
        info = LRI_TABLE.get(lri)
        # An LRI without a definition here falls back on the record's data-type byte.
        signed = info.signed if info is not None else data_type == DT_SLONG
        number = _spot_number(raw, signed)
        value: RecordValue = None if number is None else _scale(lri, number)
        out.append(Record(code, lri, code & 0xFF, data_type, timestamp, value))
    return out


def _decode_attribute(records: bytes, size: int) -> list[Record]:
    words = (size - 8) // 4
    layout = struct.Struct(f"<II{words}I")
    out: list[Record] = []
    for offset, fields in zip(
        range(0, len(records), size), layout.iter_unpack(records), strict=True
    ):
        code, timestamp = fields[0], fields[1]
        lri = code & 0x00FFFF00
        data_type = code >> 24
        value: RecordValue
        if lri == LRI_SOFTWARE_VERSION:
            if words < 5:
                raise ProtocolError("software version record too short")
            value = _software_version(fields[6])
        elif lri == LRI_DEVICE_NAME or data_type == DT_STRING:
            text = records[offset + 8 : offset + size].split(b"\x00", 1)[0]
            value = text.decode("utf-8", "replace")
        else:
            tags: list[int] = []
            for item in fields[2:]:
                tag = item & 0xFFFFFF
                if tag == ATTRIBUTE_END:
                    break
                if item >> 24 == 1:
                    tags.append(tag)
            value = tuple(tags)
        out.append(Record(code, lri, code & 0xFF, data_type, timestamp, value))
    return out


_HISTORY: Final = struct.Struct("<IQ")


def _decode_history_rows(records: bytes) -> list[Record]:
    return [
        Record(0, 0, 0, 0, timestamp, None if raw in (NAN_S64, NAN_U64) else raw)
        for timestamp, raw in _HISTORY.iter_unpack(records)
    ]


def decode_records(packet: L2Packet) -> list[Record]:
    """Split a data or history reply into records, by its command's record layout.

    Spot values are 28-byte records (value at +16, s32 or u32 as :data:`LRI_TABLE` defines
    the LRI), counters 16-byte (u64 at +8),
    status/type label 40-byte attribute lists, history rows 12 bytes (time, u64 Wh). The
    reply's command may carry the response bit (bit 0).
    """
    kind = _COMMAND_KIND.get(packet.command & ~1)
    if kind is None:
        raise ProtocolError(f"no record layout for command 0x{packet.command:08X}")
    records = packet.records
    if not records:
        return []
    size = _record_size(kind, packet)
    if len(records) % size:
        raise ProtocolError(f"{len(records)} record bytes are not a multiple of {size}")
    if kind is _Kind.HISTORY:
        return _decode_history_rows(records)
    if kind is _Kind.COUNTER64:
        return _decode_counter64(records, size)
    if kind is _Kind.SPOT32:
        return _decode_spot32(records, size)
    return _decode_attribute(records, size)


def decode_history(records: Iterable[Record], interval: int | None = 300) -> list[tuple[int, int]]:
    """Clean archived yield rows into (unix time, total Wh) pairs for long-term statistics.

    Drops NaN rows, rows whose time or counter goes backwards (or repeats a time), and — for
    5-minute data (``interval`` 300) — rows off the interval grid. Pass ``interval=None`` for
    daily data, whose timestamps follow the inverter's local midnight.
    """
    out: list[tuple[int, int]] = []
    last_time = -1
    last_wh = -1
    for record in records:
        value = record.value
        if not isinstance(value, int) or isinstance(value, bool):
            continue
        timestamp = record.timestamp
        if interval and timestamp % interval:
            continue
        if timestamp <= last_time or value < last_wh:
            continue
        out.append((timestamp, value))
        last_time = timestamp
        last_wh = value
    return out


__all__ = [
    "ANY_ENDPOINT",
    "APP_SUSY_ID",
    "BROADCAST_ADDRESS",
    "CMD_HISTORY_5MIN",
    "CMD_HISTORY_DAILY",
    "CMD_IDENTIFY",
    "CMD_LOGOFF",
    "CMD_LOGON",
    "CTRL_ARCHIVE",
    "CTRL_NORMAL",
    "DEVICE_CLASS_TAGS",
    "ERROR_BUSY",
    "ERROR_LRI_NOT_AVAILABLE",
    "ERROR_WRONG_PASSWORD",
    "L1_CONNECTED",
    "L1_ERROR",
    "L1_GET_VARIABLE",
    "L1_HELLO",
    "L1_NETWORK_READY",
    "L1_PPP_LAST",
    "L1_PPP_MORE",
    "L1_TOPOLOGY",
    "L1_VARIABLE_REPLY",
    "L1_VAR_SIGNAL_STRENGTH",
    "L1_VERSION",
    "LRI_TABLE",
    "NO_ADDRESS",
    "SPEEDWIRE_PORT",
    "STATUS_TAGS",
    "TOPOLOGY_INVERTER",
    "VERSION_ADDRESS",
    "Endpoint",
    "Hello",
    "L1Packet",
    "L1StreamParser",
    "L2Packet",
    "L2Reassembler",
    "LriInfo",
    "Query",
    "Record",
    "RecordValue",
    "build_history",
    "build_identify",
    "build_l2_body",
    "build_logoff",
    "build_logon",
    "build_query",
    "decode_hello",
    "decode_history",
    "decode_l1",
    "decode_l2",
    "decode_l2_body",
    "decode_records",
    "decode_signal_strength",
    "decode_speedwire",
    "decode_topology",
    "encode_bt_packet",
    "encode_get_variable",
    "encode_hello_echo",
    "encode_l1",
    "encode_l2",
    "encode_logon_password",
    "encode_speedwire",
    "encode_ver_request",
    "escape",
    "fcs16",
    "five_minute_window",
    "frame_l2",
    "new_app_endpoint",
    "unescape",
]
