"""JK PB inverter BMS (PB2A16S15P, PB2A16S20P …) on RS485: several packs on one Modbus RTU bus.

Sources: jblance/mpp-solar ``mppsolar/protocols/jkpb.py`` (issue #510) and issue #460
(bus captures), mr-manuel/venus-os_dbus-serialbattery ``bms-docs/JKBMS-PB.md`` and
``bms/jkbms_pb.py``, txubelaxu/esphome-jk-bms bus captures; ``testdata/jk/jk_pb.json``.

115200 8N1. The host writes one register with Modbus function 0x10 to trigger a frame::

    addr 10 | 16 1C | 00 01 | 02 | 00 00 | crc (CRC-16/Modbus, low byte first)

0x161C asks for the device info (JK02 type 0x03), 0x161E for the settings (0x01), 0x1620 for
the cell info (0x02). The pack answers with the 300-byte JK02 frame (32S layout, see
:mod:`.jk02`) and then the 8-byte Modbus acknowledgement of the write,
``addr 10 16 xx 00 01 crc``. Only that acknowledgement carries the pack's address, so a reply is
accepted only as frame + acknowledgement together (dbus-serialbattery mentions a 0x00 byte
before the acknowledgement on some units; one is tolerated). A pack set to address 0 is the bus
master and sends its own frames unasked; they carry address 0 and are ignored here.

Switching the charge/discharge FETs of a PB pack is not offered: none of the sources shows a
captured write to the PB's switch registers with the pack's answer, so this integration cannot
verify that a write lands where it should on an inverter battery. :meth:`JkPbBus.set_fets`
raises :class:`~.bms_client.BmsUnsupported`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, replace
import logging
from typing import ClassVar, Final

from . import ProtocolError, jk02
from .bms_client import BmsChecksumError, BmsNotConnected, BmsTimeout, BmsUnsupported
from .bms_common import (
    BAD_CHECKSUM,
    BAD_SHAPE,
    INCOMPLETE,
    BmsReading,
    StreamAssembler,
    crc16_modbus,
)
from .serial_link import OpenConnection, SerialLink

_LOGGER = logging.getLogger(__name__)

BAUDRATE: Final = 115200
FUNCTION_WRITE_MULTIPLE: Final = 0x10
REG_DEVICE_INFO: Final = 0x161C
REG_SETTINGS: Final = 0x161E
REG_CELL_INFO: Final = 0x1620
TRIGGER_LENGTH: Final = 11
ACK_LENGTH: Final = 8
REPLY_LENGTH: Final = jk02.FRAME_LENGTH + ACK_LENGTH
MIN_ADDRESS: Final = 1
MAX_ADDRESS: Final = 15  # the PB's DIP switches; 0 is the bus master

FRAME_TYPE_FOR_REGISTER: Final[dict[int, int]] = {
    REG_DEVICE_INFO: jk02.TYPE_DEVICE_INFO,
    REG_SETTINGS: jk02.TYPE_SETTINGS,
    REG_CELL_INFO: jk02.TYPE_CELL_INFO,
}
"""Which JK02 frame each trigger register asks for."""


def _with_crc(body: bytes) -> bytes:
    return body + crc16_modbus(body).to_bytes(2, "little")


def encode_trigger(address: int, register: int) -> bytes:
    """The FC 0x10 write of 0 to ``register`` at pack ``address`` that triggers a frame."""
    if not 0 <= address <= 0xFF:
        raise ProtocolError(f"Modbus address {address} is not one byte")
    if register not in FRAME_TYPE_FOR_REGISTER:
        raise ProtocolError(f"0x{register:04X} is not a JK PB trigger register")
    body = bytes((address, FUNCTION_WRITE_MULTIPLE)) + register.to_bytes(2, "big")
    return _with_crc(body + b"\x00\x01\x02\x00\x00")


def encode_ack(address: int, register: int) -> bytes:
    """The pack's acknowledgement of a trigger (what follows its frame)."""
    body = bytes((address & 0xFF, FUNCTION_WRITE_MULTIPLE)) + register.to_bytes(2, "big")
    return _with_crc(body + b"\x00\x01")


@dataclass(frozen=True, slots=True)
class PbTrigger:
    """A checked trigger request (what a pack sees on the bus)."""

    address: int
    register: int


def parse_trigger(frame: bytes) -> PbTrigger:
    """Check an 11-byte trigger request."""
    if len(frame) != TRIGGER_LENGTH:
        raise ProtocolError(f"JK PB trigger has {len(frame)} bytes, not {TRIGGER_LENGTH}")
    if frame[1] != FUNCTION_WRITE_MULTIPLE or frame[4:7] != b"\x00\x01\x02":
        raise ProtocolError("not a one-register FC 0x10 write")
    if crc16_modbus(frame[:-2]) != int.from_bytes(frame[-2:], "little"):
        raise ProtocolError("JK PB trigger CRC mismatch")
    register = int.from_bytes(frame[2:4], "big")
    if register not in FRAME_TYPE_FOR_REGISTER:
        raise ProtocolError(f"0x{register:04X} is not a JK PB trigger register")
    return PbTrigger(frame[0], register)


@dataclass(frozen=True, slots=True)
class PbReply:
    """A pack's reply: the JK02 frame and the address and register its acknowledgement names."""

    address: int
    register: int
    frame: bytes


def _ack_at(buffer: bytes | bytearray, start: int) -> tuple[int, int] | None:
    """(address, register) of a valid acknowledgement at ``start``, else None."""
    ack = buffer[start : start + ACK_LENGTH]
    if len(ack) < ACK_LENGTH or ack[1] != FUNCTION_WRITE_MULTIPLE or ack[4:6] != b"\x00\x01":
        return None
    if crc16_modbus(ack[:-2]) != int.from_bytes(ack[-2:], "little"):
        return None
    register = int.from_bytes(ack[2:4], "big")
    if register not in FRAME_TYPE_FOR_REGISTER:
        return None
    return ack[0], register


def _reply_end(buffer: bytes | bytearray, position: int, size: int) -> int:
    frame_end = position + jk02.FRAME_LENGTH
    if frame_end + ACK_LENGTH > size:
        return INCOMPLETE
    if sum(buffer[position : frame_end - 1]) & 0xFF != buffer[frame_end - 1]:
        return BAD_CHECKSUM
    for gap in (0, 1):
        ack_start = frame_end + gap
        if gap and buffer[frame_end] != 0:
            break
        if ack_start + ACK_LENGTH > size:
            return INCOMPLETE
        found = _ack_at(buffer, ack_start)
        if found is not None:
            if FRAME_TYPE_FOR_REGISTER[found[1]] != buffer[position + 4]:
                return BAD_SHAPE
            return ack_start + ACK_LENGTH
    return BAD_SHAPE


def split_reply(data: bytes) -> PbReply:
    """Check a whole reply (frame + optional 0x00 + acknowledgement) and split it."""
    if not REPLY_LENGTH <= len(data) <= REPLY_LENGTH + 1:
        raise ProtocolError(f"JK PB reply has {len(data)} bytes, not {REPLY_LENGTH}")
    frame = bytes(data[: jk02.FRAME_LENGTH])
    jk02.check_frame(frame)
    found = _ack_at(data, len(data) - ACK_LENGTH)
    if found is None or (len(data) > REPLY_LENGTH and data[jk02.FRAME_LENGTH] != 0):
        raise ProtocolError("JK PB reply without a valid acknowledgement")
    address, register = found
    if FRAME_TYPE_FOR_REGISTER[register] != frame[4]:
        raise ProtocolError(f"JK PB frame type 0x{frame[4]:02X} acknowledged as 0x{register:04X}")
    return PbReply(address, register, frame)


class ReplyAssembler(StreamAssembler):
    """Cut the bus stream into replies (300-byte JK02 frame + acknowledgement).

    Requests of other hosts, echoes and noise are dropped; a frame whose acknowledgement is
    missing or broken is abandoned, because without it nobody can tell which pack sent it.
    """

    _start = jk02.HEADER

    def _frame_end(self, buffer: bytearray, position: int, size: int) -> int:
        return _reply_end(buffer, position, size)


# --- the bus client --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JkPbPack:
    """One pack's refresh: its reading and identity."""

    address: int
    reading: BmsReading
    model: str | None
    serial: str | None
    firmware_version: str | None
    hardware_version: str | None


@dataclass(slots=True)
class _Identity:
    info: jk02.Jk02DeviceInfo
    layout: jk02.Layout


class JkPbBus(SerialLink[ReplyAssembler]):
    """All JK PB packs on one RS485 port: scan, per-pack refresh, identity.

    Requests are serialised by a lock (one master on the bus). A pack that does not answer
    raises :class:`BmsTimeout` for that request only; the port stays open for the others.
    ``port``, ``connected``, :meth:`close`, ``bytes_sent`` and ``bytes_received`` come from
    :class:`~.serial_link.SerialLink`, which :class:`~.bms_client.SerialBmsClient` shares.
    """

    _link_name: ClassVar[str] = "JK PB bus"
    _task_name: ClassVar[str] = "jk-pb-reader"

    def __init__(
        self,
        port: str,
        *,
        timeout: float = 1.0,
        invert_current: bool = False,
        retries: int = 1,
        open_connection: OpenConnection | None = None,
    ) -> None:
        """Set up; the port opens on the first request."""
        super().__init__(port, BAUDRATE, open_connection, ReplyAssembler())
        self._timeout = timeout
        self._invert = invert_current
        self._retries = max(0, retries)
        self._lock = asyncio.Lock()
        self._identities: dict[int, _Identity] = {}

    @property
    def checksum_errors(self) -> int:
        """Frames dropped for a bad sum8 since the bus was created."""
        return self._assembler.checksum_errors

    @property
    def discarded_bytes(self) -> int:
        """Bytes that were no part of a reply (echoes, other masters, noise)."""
        return self._assembler.discarded_bytes

    @property
    def error_counters(self) -> dict[str, int]:
        """``checksum_errors`` and ``discarded_bytes`` together."""
        return {"checksum_errors": self.checksum_errors, "discarded_bytes": self.discarded_bytes}

    def _opened(self) -> None:
        # After a reconnect the packs may have been swapped or readdressed: ask them again.
        self._identities.clear()

    async def _request(self, address: int, register: int, attempts: int) -> bytes:
        """Trigger one frame from one pack; return the 300-byte frame."""
        request = encode_trigger(address, register)
        wanted = (address, register)

        def collect(raw: bytes) -> bytes | None:
            reply = split_reply(raw)
            return reply.frame if (reply.address, reply.register) == wanted else None

        corrupt = False
        for _attempt in range(attempts):
            await self._ensure_open()
            self._assembler.reset()
            try:
                frame = await self._exchange_once(request, collect, self._timeout)
            except TimeoutError:
                continue
            if frame is None:
                corrupt = True
                continue
            return frame
        if corrupt:
            raise BmsChecksumError(f"only corrupt replies from JK PB pack {address}")
        raise BmsTimeout(f"JK PB pack {address} on {self._port} did not answer 0x{register:04X}")

    async def _identity(self, address: int, attempts: int) -> _Identity:
        identity = self._identities.get(address)
        if identity is None:
            info = jk02.parse_device_info(await self._request(address, REG_DEVICE_INFO, attempts))
            identity = self._identities[address] = _Identity(info, jk02.layout_for(info))
        return identity

    async def _read(self, address: int, attempts: int) -> JkPbPack:
        await self._ensure_open()  # first: a reconnect forgets the identities
        identity = await self._identity(address, attempts)
        frame = await self._request(address, REG_CELL_INFO, attempts)
        info = identity.info
        reading = jk02.parse_cell_info(frame, identity.layout, invert_current=self._invert)
        model = info.model or None
        serial = info.serial or None
        reading = replace(reading, model=model, serial=serial)
        return JkPbPack(
            address=address,
            reading=reading,
            model=model,
            serial=serial,
            firmware_version=info.software_version or None,
            hardware_version=info.hardware_version or None,
        )

    async def read(self, address: int) -> JkPbPack:
        """One full refresh of one pack (its identity is read on the first call after the port
        opened, then kept)."""
        _check_address(address)
        async with self._lock:
            return await self._read(address, self._retries + 1)

    async def read_settings(self, address: int) -> jk02.Jk02Settings:
        """The settings frame of one pack (cell count, switches, user capacity, limits)."""
        _check_address(address)
        async with self._lock:
            frame = await self._request(address, REG_SETTINGS, self._retries + 1)
        return jk02.parse_settings(frame)

    async def scan(self, addresses: Iterable[int] = range(1, 16)) -> dict[int, JkPbPack]:
        """Packs that answer, by address; one try each, so a silent address costs ``timeout``."""
        found: dict[int, JkPbPack] = {}
        for address in addresses:
            _check_address(address)
            async with self._lock:
                try:
                    found[address] = await self._read(address, 1)
                except BmsNotConnected:
                    raise
                except ProtocolError as err:
                    _LOGGER.debug("No JK PB pack at %s on %s: %s", address, self._port, err)
        return found

    async def set_fets(
        self, address: int, *, charge: bool | None = None, discharge: bool | None = None
    ) -> JkPbPack:
        """Not offered for the PB series (see the module docstring): always BmsUnsupported."""
        raise BmsUnsupported("FET control over the JK PB RS485 protocol")


def _check_address(address: int) -> None:
    if not MIN_ADDRESS <= address <= MAX_ADDRESS:
        raise ValueError(f"a JK PB pack address is {MIN_ADDRESS} to {MAX_ADDRESS}, not {address}")


__all__ = [
    "BAUDRATE",
    "REG_CELL_INFO",
    "REG_DEVICE_INFO",
    "REG_SETTINGS",
    "JkPbBus",
    "JkPbPack",
    "PbReply",
    "PbTrigger",
    "ReplyAssembler",
    "encode_ack",
    "encode_trigger",
    "parse_trigger",
    "split_reply",
]
