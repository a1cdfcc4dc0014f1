"""Async serial client for JBD (incl. UP rack packs), Daly, ANT and JK battery management systems.

All these BMS families answer requests on a serial line (RS232, RS485 or TTL), one at a time,
so the client is a plain request/response loop: one open port, one reader task that cuts the
byte stream into checked frames, and requests serialised by a lock. Before each request stale
bytes are flushed (kernel buffer and frame assembler), replies are matched by register or
command (a half-duplex RS485 adapter echoes the request, which must not count as the answer),
and garbage is skipped by the frame assemblers. A request that gets no answer, or only a
corrupt one, is sent again up to ``retries`` times; a timeout leaves the port open, while an
I/O error or end of file closes it so the next call reopens it. The blocking open runs in an
executor (``serial_asyncio_fast``); nothing else ever blocks the event loop. The port itself
(opening, reader task, hang-up detection, reopening after an unplug) is
:class:`~.serial_link.SerialLink`, which :class:`~.jk_pb.JkPbBus` shares.

Which requests make one refresh depends on the protocol (:class:`BmsProtocol`):

* JBD: 0x03 and 0x04 (and, once, 0x05 model and 0xAA error counters); FET switching through
  0xE1 inside factory mode.
* Daly: 0x94, 0x90, 0x93, 0x95 (multi-frame), 0x96 (multi-frame), 0x97, 0x98 (and, once, 0x50),
  20 ms apart as the firmware needs; FET switching through 0xDA/0xD9, which the BMS echoes.
* JBD UP (rack packs such as the UP16S020): the status block 0x1000 … 0x10A0 of the pack at
  its bus address, which carries identity too; FET switching is not part of what is known of
  that protocol, so it is refused as unsupported.
* ANT: the legacy 140-byte status frame (FET switching by write + apply, which the BMS does not
  answer), or the 2021 ``7E A1`` status frame (FET control not implemented for it).
* JK (JK-B*/JK-BD*, the ``4E 57`` protocol at 115200 baud): one read-all request per refresh,
  whose reply carries identity too; FET switching by a password frame and writes of the switch
  registers 0xAB/0xAC, which the BMS does not answer, so the read-back decides.

JK's PB series (inverter batteries, several packs on one RS485 bus) is not a protocol of this
client but a bus of its own, :class:`~.jk_pb.JkPbBus`. :func:`detect_protocol` recognises such
a bus and says so with :class:`JkPbBusDetected`.

Every write is verified by reading the state back: :class:`BmsWriteRejected` tells the caller
that the BMS did not take it (e.g. a charge FET held off by an over-voltage protection).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
import contextlib
from dataclasses import dataclass, replace
import datetime as dt
from enum import StrEnum
import logging
import math
from typing import Any, ClassVar, Final

from . import ProtocolError, ant, daly, jbd, jbd_up, jk_serial
from .bms_common import (
    BAD_CHECKSUM,
    BAD_SHAPE,
    INCOMPLETE,
    BmsReading,
    StreamAssembler,
    crc16_modbus,
)
from .serial_link import BmsNotConnected, FrameSource, OpenConnection, SerialLink, open_serial

__all__ = [
    "BAUDRATES",
    "FET_CONTROL",
    "AntFrameAssembler",
    "AntLegacyFrameAssembler",
    "BmsChecksumError",
    "BmsInfo",
    "BmsNotConnected",
    "BmsNotDetected",
    "BmsProtocol",
    "BmsResponseError",
    "BmsTimeout",
    "BmsUnsupported",
    "BmsWriteRejected",
    "DalyFrameAssembler",
    "JkPbBusDetected",
    "OpenConnection",
    "SerialBmsClient",
    "detect_protocol",
    "open_serial",
]

_LOGGER = logging.getLogger(__name__)


class BmsProtocol(StrEnum):
    """The serial protocol a BMS speaks."""

    JBD = "jbd"
    JBD_UP = "jbd_up"
    DALY = "daly"
    ANT = "ant"
    ANT_NEW = "ant_new"
    JK = "jk"


BAUDRATES: Final[dict[BmsProtocol, int]] = {
    BmsProtocol.JBD: 9600,
    BmsProtocol.JBD_UP: 9600,  # the UP series' RS485 default, as in public setups of it
    BmsProtocol.DALY: 9600,
    BmsProtocol.ANT: 19200,
    BmsProtocol.ANT_NEW: 19200,
    BmsProtocol.JK: jk_serial.BAUDRATE,  # 115200, the GPS/RS485 port of the JK-B boards
}
"""Line speed of each protocol (8N1)."""

FET_CONTROL: Final[frozenset[BmsProtocol]] = frozenset(
    {BmsProtocol.JBD, BmsProtocol.DALY, BmsProtocol.ANT, BmsProtocol.JK}
)
"""Protocols whose FETs :meth:`SerialBmsClient.set_fets` can switch; the others raise
:class:`BmsUnsupported`, so no switch is offered for them."""

DALY_REQUEST_GAP: Final = 0.02  # s: Daly firmware drops requests that follow a reply too soon
ANT_APPLY_TIME: Final = 0.1  # s: the legacy ANT board answers nothing to write/apply
JK_PASSWORD_PAUSE: Final = 0.15  # s between JK's password frame and a write (syssi jk_modbus)
JK_APPLY_TIME: Final = 0.1  # s: a JK write is not answered; give it time before the read-back
_SETTLE: Final = 0.05  # s of quiet line before a request is repeated after a corrupt reply

_JBD_REG_BARCODE: Final = 0xA2
_DALY_CMD_BATTERY_CODE: Final = 0x57
_DALY_CODE_FRAMES: Final = 5
_ANT_DEVICE_INFO_COMMAND: Final = 0x02
_ANT_DEVICE_INFO_ADDRESS: Final = 0x026C
_ANT_DEVICE_INFO_LENGTH: Final = 0x20
_ANT_DEVICE_INFO_FIELD: Final = 16

# --- errors ------------------------------------------------------------------------------------
# (BmsNotConnected, shared with the JK PB bus, comes from serial_link)


class BmsTimeout(ProtocolError):  # noqa: N818 - public name
    """The BMS did not answer a request, not even after the retries."""


class BmsChecksumError(ProtocolError):
    """The BMS answered, but every reply failed its checksum."""


class BmsResponseError(ProtocolError):
    """The BMS answered a request with an error status (JBD status 0x80)."""


class BmsWriteRejected(ProtocolError):  # noqa: N818 - public name
    """The BMS did not take a FET switch request; ``reading`` is the state read back (if any)."""

    def __init__(self, message: str, reading: BmsReading | None = None) -> None:
        """Keep the state read after the write so the caller can show it."""
        super().__init__(message)
        self.reading = reading


class BmsUnsupported(ProtocolError):  # noqa: N818 - public name
    """The protocol has no such function (or it is not implemented for it)."""


class BmsNotDetected(ProtocolError):  # noqa: N818 - public name
    """No supported BMS answered on the port."""


class JkPbBusDetected(BmsNotDetected):
    """No single BMS answered, but a JK PB pack did: the port is a JK PB bus.

    ``packs`` maps the address that answered to the pack's first refresh
    (:class:`~.jk_pb.JkPbPack`); read the bus with :class:`~.jk_pb.JkPbBus`. It is a
    :class:`BmsNotDetected`, so callers that know nothing of PB buses still see "not detected".
    """

    def __init__(self, message: str, packs: dict[int, Any]) -> None:
        """Keep what the probe found."""
        super().__init__(message)
        self.packs = packs


@dataclass(frozen=True, slots=True, kw_only=True)
class BmsInfo:
    """Identity of a BMS as far as its protocol tells; None where it does not.

    ``address`` is the Daly host address that worked (0x40 RS485, 0x80 UART) or the JBD UP pack
    address that answered, None otherwise.
    """

    protocol: BmsProtocol
    model: str | None = None
    serial: str | None = None
    firmware_version: str | None = None
    hardware_version: str | None = None
    manufacture_date: dt.date | None = None
    cell_count: int | None = None
    nominal_capacity: float | None = None
    address: int | None = None


# --- frame assemblers for the protocols whose codec has none ------------------------------------
# (the cutting itself is bms_common.StreamAssembler, which JBD's codec uses too)

_INCOMPLETE: Final = INCOMPLETE
_BAD_SHAPE: Final = BAD_SHAPE
_BAD_CHECKSUM: Final = BAD_CHECKSUM


class DalyFrameAssembler(StreamAssembler):
    """Daly frames: 13 bytes ``A5 addr cmd 08 data[8] sum``."""

    _start = bytes((daly.START,))

    def _frame_end(self, buffer: bytearray, position: int, size: int) -> int:
        end = position + daly.FRAME_LENGTH
        if end > size:
            return _INCOMPLETE
        if buffer[position + 3] != daly.DATA_LENGTH:
            return _BAD_SHAPE
        if daly.checksum(buffer[position : end - 1]) != buffer[end - 1]:
            return _BAD_CHECKSUM
        return end


class AntLegacyFrameAssembler(StreamAssembler):
    """ANT legacy status frames: 140 bytes from ``AA 55 AA FF``, u16 sum at 138-139."""

    _start = ant.LEGACY_HEADER

    def _frame_end(self, buffer: bytearray, position: int, size: int) -> int:
        end = position + ant.LEGACY_FRAME_LENGTH
        if end > size:
            return _INCOMPLETE
        received = int.from_bytes(buffer[end - 2 : end], "big")
        if sum(buffer[position + 4 : end - 2]) & 0xFFFF != received:
            return _BAD_CHECKSUM
        return end


class AntFrameAssembler(StreamAssembler):
    """ANT 2021 frames: ``7E A1 func addr(2) len data… crc(2, LE) AA 55``."""

    _start = ant.START

    def _frame_end(self, buffer: bytearray, position: int, size: int) -> int:
        if size - position < 6:
            return _INCOMPLETE
        end = position + ant.MIN_FRAME_LENGTH + buffer[position + 5]
        if end > size:
            return _INCOMPLETE
        if buffer[end - 2 : end] != ant.TRAILER:
            return _BAD_SHAPE
        received = int.from_bytes(buffer[end - 4 : end - 2], "little")
        if crc16_modbus(buffer[position + 1 : end - 4]) != received:
            return _BAD_CHECKSUM
        return end


def _assembler_for(protocol: BmsProtocol, address: int) -> FrameSource:
    if protocol is BmsProtocol.JBD:
        return jbd.FrameAssembler()
    if protocol is BmsProtocol.JBD_UP:
        return jbd_up.FrameAssembler(address)
    if protocol is BmsProtocol.DALY:
        return DalyFrameAssembler()
    if protocol is BmsProtocol.ANT:
        return AntLegacyFrameAssembler()
    if protocol is BmsProtocol.JK:
        return jk_serial.FrameAssembler()
    return AntFrameAssembler()


def _collector(match: Callable[[bytes], bool], count: int) -> Callable[[bytes], list[bytes] | None]:
    """Collects the ``count`` frames ``match`` accepts; returns them once all have come."""
    frames: list[bytes] = []

    def collect(frame: bytes) -> list[bytes] | None:
        if not match(frame):
            return None
        frames.append(frame)
        return frames if len(frames) >= count else None

    return collect


def _text(data: bytes) -> str | None:
    """ASCII text without padding, None if nothing is left."""
    value = data.decode("ascii", errors="replace").strip("\x00 ")
    return value or None


class SerialBmsClient(SerialLink[FrameSource]):
    """One BMS on one serial port: refreshes, FET switching and identity.

    ``port``, ``connected``, :meth:`close`, ``bytes_sent`` and ``bytes_received`` come from
    :class:`~.serial_link.SerialLink`.
    """

    _link_name: ClassVar[str] = "BMS port"
    _task_name: ClassVar[str] = "bms-reader"

    def __init__(
        self,
        port: str,
        protocol: BmsProtocol | str,
        *,
        address: int | None = None,
        invert_current: bool = False,
        baudrate: int | None = None,
        request_timeout: float = 1.0,
        retries: int = 2,
        open_connection: OpenConnection | None = None,
    ) -> None:
        """Set up; the port is opened by :meth:`connect` or the first request.

        ``protocol`` may be given as its string value (as stored in a config entry).

        ``address`` is the Daly host address (0x40 on RS485, the default, or 0x80 on the UART
        port) or the JBD UP pack address (1 by default); other protocols ignore it.
        ``invert_current`` flips the sign of current and power for a BMS wired or configured
        the other way round.
        """
        self._protocol = BmsProtocol(protocol)
        if address is None:
            address = (
                jbd_up.DEFAULT_ADDRESS
                if self._protocol is BmsProtocol.JBD_UP
                else daly.HOST_ADDRESS_RS485
            )
        self._address = address
        super().__init__(
            port,
            baudrate or BAUDRATES[self._protocol],
            open_connection,
            _assembler_for(self._protocol, address),
        )
        self._invert = invert_current
        self._request_timeout = request_timeout
        self._retries = max(0, retries)
        self._gap = DALY_REQUEST_GAP if self._protocol is BmsProtocol.DALY else 0.0
        self._lock = asyncio.Lock()
        self._last_exchange = 0.0
        self._extras_done = False
        self._model: str | None = None
        self._info: BmsInfo | None = None
        self._rated: daly.DalyRated | None = None
        self._error_counters: list[int] | None = None
        self._jbd_switches: tuple[bool, bool] | None = None

    # --- properties ------------------------------------------------------------------------

    @property
    def protocol(self) -> BmsProtocol:
        """The protocol this client speaks."""
        return self._protocol

    @property
    def address(self) -> int | None:
        """The Daly host or JBD UP pack address in use, None for the other protocols."""
        if self._protocol in (BmsProtocol.DALY, BmsProtocol.JBD_UP):
            return self._address
        return None

    @property
    def error_counters(self) -> list[int] | None:
        """JBD event counters (register 0xAA, see ``jbd.ERROR_COUNTER_NAMES``) last read."""
        return self._error_counters

    # --- connection ------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the port now (requests open it on demand too)."""
        async with self._lock:
            await self._ensure_open()

    async def _prepare(self) -> None:
        """Open if needed, keep the protocol's pause between requests, drop stale bytes."""
        await self._ensure_open()
        loop = asyncio.get_running_loop()
        pause = self._gap - (loop.time() - self._last_exchange)
        if pause > 0:
            await asyncio.sleep(pause)
        await self._flush_input()

    async def _exchange(
        self,
        request: bytes,
        match: Callable[[bytes], bool],
        count: int = 1,
        *,
        attempts: int | None = None,
    ) -> list[bytes]:
        """Send ``request`` and return the ``count`` reply frames ``match`` accepts."""
        loop = asyncio.get_running_loop()
        tries = self._retries + 1 if attempts is None else attempts
        corrupt = False
        for attempt in range(tries):
            if attempt:
                await self._settle(_SETTLE, self._request_timeout)
            await self._prepare()
            try:
                frames = await self._exchange_once(
                    request, _collector(match, count), self._request_timeout
                )
            except TimeoutError:
                _LOGGER.debug("No answer to %s on %s", request.hex(" "), self._port)
                continue
            finally:
                self._last_exchange = loop.time()
            if frames is None:
                corrupt = True
                _LOGGER.debug("Corrupt answer to %s on %s", request.hex(" "), self._port)
                continue
            return frames
        if corrupt:
            raise BmsChecksumError(f"only corrupt replies to {request.hex(' ')} on {self._port}")
        raise BmsTimeout(f"no answer to {request.hex(' ')} on {self._port} after {tries} tries")

    async def _send_only(self, request: bytes) -> None:
        """Send a request the BMS does not answer."""
        await self._prepare()
        self._write(request)
        self._last_exchange = asyncio.get_running_loop().time()

    @staticmethod
    async def _optional[T](request: Awaitable[T]) -> T | None:
        """Run a request whose failure (other than a lost port) only means "not available"."""
        try:
            return await request
        except BmsNotConnected:
            raise
        except ProtocolError as err:
            _LOGGER.debug("Optional BMS request failed: %s", err)
            return None

    # --- public API ------------------------------------------------------------------------

    async def read(self) -> BmsReading:
        """One full refresh of the BMS's values."""
        async with self._lock:
            return await self._read()

    async def set_fets(
        self, *, charge: bool | None = None, discharge: bool | None = None
    ) -> BmsReading:
        """Switch the charge and/or discharge FET (None = leave it), then read back and verify.

        Raises :class:`BmsWriteRejected` when the state read back differs from the request.
        """
        async with self._lock:
            echo_ok = True
            if charge is not None or discharge is not None:
                if self._protocol is BmsProtocol.JBD:
                    await self._jbd_set_fets(charge, discharge)
                elif self._protocol is BmsProtocol.DALY:
                    echo_ok = await self._daly_set_fets(charge, discharge)
                elif self._protocol is BmsProtocol.ANT:
                    await self._ant_set_fets(charge, discharge)
                elif self._protocol is BmsProtocol.JK:
                    await self._jk_set_fets(charge, discharge)
                elif self._protocol is BmsProtocol.JBD_UP:
                    raise BmsUnsupported("FET control over the JBD UP protocol")
                else:
                    raise BmsUnsupported("FET control over the 2021 ANT protocol")
            reading = await self._read()
        if (
            not echo_ok
            or (charge is not None and reading.charge_fet is not charge)
            or (discharge is not None and reading.discharge_fet is not discharge)
        ):
            raise BmsWriteRejected(
                f"BMS on {self._port} did not switch the FETs to charge={charge}, "
                f"discharge={discharge}: it reports charge={reading.charge_fet}, "
                f"discharge={reading.discharge_fet}",
                reading,
            )
        return reading

    async def read_info(self) -> BmsInfo:
        """Identity of the BMS: model, serial, versions, cell count, capacity where known."""
        async with self._lock:
            if self._protocol is BmsProtocol.JBD:
                info = await self._jbd_info()
            elif self._protocol is BmsProtocol.JBD_UP:
                pack = jbd_up.decode_pack_status(await self._jbd_up_status())
                info = BmsInfo(
                    protocol=self._protocol,
                    model=pack.model or None,
                    cell_count=len(pack.cell_voltages),
                    nominal_capacity=pack.rated_capacity,
                    address=self._address,
                )
            elif self._protocol is BmsProtocol.DALY:
                info = await self._daly_info()
            elif self._protocol is BmsProtocol.ANT:
                status = ant.decode_legacy_status(await self._ant_legacy_status())
                info = BmsInfo(
                    protocol=self._protocol,
                    cell_count=status.cell_count,
                    nominal_capacity=status.nominal_capacity,
                )
            elif self._protocol is BmsProtocol.JK:
                info = self._jk_info(jk_serial.decode_status(await self._jk_read_all()))
            else:
                info = await self._ant_new_info()
            self._info = info
            return info

    async def read_error_counters(self) -> list[int]:
        """Read the JBD event counters (register 0xAA) now."""
        if self._protocol is not BmsProtocol.JBD:
            raise BmsUnsupported(f"{self._protocol} has no error counters")
        async with self._lock:
            counters = jbd.decode_error_counters(await self._jbd(jbd.REG_ERROR_COUNTERS))
            self._error_counters = counters
            return counters

    # --- refresh ---------------------------------------------------------------------------

    async def _read(self) -> BmsReading:
        if self._protocol is BmsProtocol.JBD:
            reading = await self._jbd_read()
        elif self._protocol is BmsProtocol.JBD_UP:
            reading = jbd_up.to_reading(jbd_up.decode_pack_status(await self._jbd_up_status()))
        elif self._protocol is BmsProtocol.DALY:
            reading = await self._daly_read()
        elif self._protocol is BmsProtocol.ANT:
            reading = ant.to_reading(ant.decode_legacy_status(await self._ant_legacy_status()))
        elif self._protocol is BmsProtocol.JK:
            reading = jk_serial.to_reading(await self._jk_read_all())
        else:
            reading = ant.to_reading(ant.decode_status(await self._ant_new_status()))
        self._extras_done = True
        if self._invert and self._protocol is not BmsProtocol.DALY:
            reading = replace(
                reading,
                current=None if reading.current is None else -reading.current + 0.0,
                power=None if reading.power is None else -reading.power + 0.0,
            )
        info = self._info
        if info is not None:
            reading = replace(
                reading, model=reading.model or info.model, serial=reading.serial or info.serial
            )
        return reading

    # --- JBD -------------------------------------------------------------------------------

    async def _jbd(
        self, register: int, write: bytes | None = None, *, attempts: int | None = None
    ) -> bytes:
        """Read (or write) one register; returns the reply data."""
        request = jbd.encode_read(register) if write is None else jbd.encode_write(register, write)
        (frame,) = await self._exchange(request, lambda f: f[1] == register, attempts=attempts)
        reply = jbd.parse_frame(frame)
        if not reply.ok:
            raise BmsResponseError(
                f"JBD register 0x{register:02X}: BMS answered status 0x{reply.status:02X}"
            )
        return reply.payload

    async def _jbd_extras(self) -> None:
        """Model name (0x05) and error counters (0xAA): one try each, both optional."""
        model = await self._optional(self._jbd(jbd.REG_MODEL, attempts=1))
        if model is not None:
            self._model = _text(model)
        counters = await self._optional(self._jbd(jbd.REG_ERROR_COUNTERS, attempts=1))
        if counters is not None:
            with contextlib.suppress(ProtocolError):
                self._error_counters = jbd.decode_error_counters(counters)

    async def _jbd_read(self) -> BmsReading:
        info = jbd.decode_basic_info(await self._jbd(jbd.REG_BASIC_INFO))
        cells = jbd.decode_cell_voltages(await self._jbd(jbd.REG_CELL_VOLTAGES))
        if not self._extras_done:
            await self._jbd_extras()
        return jbd.to_reading(info, cells, self._model)

    async def _jbd_set_fets(self, charge: bool | None, discharge: bool | None) -> None:
        if charge is None or discharge is None:
            # 0xE1 sets both switches at once, so the one left alone must be rewritten as it
            # is. The BMS cannot be asked for its switches: use what this client last wrote,
            # else infer from the FET state - a FET that is off while a protection is active is
            # taken as held by the protection (switch on), so it comes back when the fault ends.
            known = self._jbd_switches
            if known is None:
                info = jbd.decode_basic_info(await self._jbd(jbd.REG_BASIC_INFO))
                held = bool(info.protection)
                known = (info.charge_fet or held, info.discharge_fet or held)
            charge = known[0] if charge is None else charge
            discharge = known[1] if discharge is None else discharge
        code = (0 if charge else 1) | (0 if discharge else 2)
        await self._jbd(jbd.REG_FACTORY_ENTER, jbd.FACTORY_ENTER_KEY)
        try:
            await self._jbd(jbd.REG_MOSFET_CONTROL, bytes((0x00, code)))
        except BmsResponseError as err:
            raise BmsWriteRejected(f"JBD refused MOSFET control: {err}") from err
        finally:
            with contextlib.suppress(ProtocolError):
                await self._jbd(jbd.REG_FACTORY_EXIT, jbd.FACTORY_EXIT_NO_SAVE, attempts=1)
        self._jbd_switches = (charge, discharge)

    async def _jbd_info(self) -> BmsInfo:
        info = jbd.decode_basic_info(await self._jbd(jbd.REG_BASIC_INFO))
        await self._jbd_extras()
        serial = None
        entered = await self._optional(
            self._jbd(jbd.REG_FACTORY_ENTER, jbd.FACTORY_ENTER_KEY, attempts=1)
        )
        if entered is not None:
            try:
                barcode = await self._optional(self._jbd(_JBD_REG_BARCODE, attempts=1))
            finally:
                with contextlib.suppress(ProtocolError):
                    await self._jbd(jbd.REG_FACTORY_EXIT, jbd.FACTORY_EXIT_NO_SAVE, attempts=1)
            if barcode:
                serial = _text(barcode[1 : 1 + barcode[0]])
        return BmsInfo(
            protocol=self._protocol,
            model=self._model,
            serial=serial,
            firmware_version=info.software_version,
            manufacture_date=info.manufacture_date,
            cell_count=info.cell_count,
            nominal_capacity=info.nominal_capacity,
        )

    # --- JBD UP ----------------------------------------------------------------------------

    async def _jbd_up_status(self) -> bytes:
        """The data of the pack status block (0x1000 … 0x10A0) of this client's pack."""
        address = self._address
        (frame,) = await self._exchange(
            jbd_up.encode_pack_status_request(address),
            lambda f: jbd_up.is_status_reply(f, address),
        )
        return jbd_up.parse_frame(frame).data

    # --- Daly ------------------------------------------------------------------------------

    async def _daly(
        self, command: int, count: int = 1, *, data: bytes = b"", attempts: int | None = None
    ) -> list[daly.DalyFrame]:
        """Send one command; returns the ``count`` reply frames."""
        host = self._address
        frames = await self._exchange(
            daly.encode_request(command, host, data),
            # Skip the echo a half-duplex adapter returns: it carries the host address.
            lambda f: f[2] == command and f[1] != host,
            count,
            attempts=attempts,
        )
        return [daly.parse_frame(frame) for frame in frames]

    async def _daly_read(self) -> BmsReading:
        if not self._extras_done and self._rated is None:
            rated = await self._optional(self._daly(daly.CMD_RATED, attempts=1))
            if rated is not None:
                self._rated = daly.decode_rated(rated[0].data)
        status = daly.decode_status((await self._daly(daly.CMD_STATUS))[0].data)
        soc = daly.decode_soc((await self._daly(daly.CMD_SOC))[0].data, invert_current=self._invert)
        mosfet = daly.decode_mosfet_status((await self._daly(daly.CMD_MOSFET))[0].data)
        cells = status.cell_count
        sensors = status.temperature_sensor_count
        voltages: list[float] = []
        if cells:
            frames = await self._daly(
                daly.CMD_CELL_VOLTAGES, math.ceil(cells / daly.CELLS_PER_FRAME)
            )
            voltages = daly.decode_cell_voltage_frames(frames, cells)
        temperatures: list[int] = []
        if sensors:
            frames = await self._daly(
                daly.CMD_TEMPERATURES, math.ceil(sensors / daly.TEMPERATURES_PER_FRAME)
            )
            temperatures = daly.decode_temperature_frames(frames, sensors)
        balance = daly.decode_balance((await self._daly(daly.CMD_BALANCE))[0].data, cells)
        faults = daly.decode_faults((await self._daly(daly.CMD_FAULTS))[0].data)
        return daly.to_reading(
            soc=soc,
            mosfet=mosfet,
            status=status,
            cell_voltages=voltages,
            temperatures=temperatures,
            balance=balance,
            faults=faults,
            rated=self._rated,
        )

    async def _daly_set_fets(self, charge: bool | None, discharge: bool | None) -> bool:
        """Send the FET commands; False if the BMS echoed another state than requested."""
        echo_ok = True
        for command, on in ((daly.CMD_CHARGE_FET, charge), (daly.CMD_DISCHARGE_FET, discharge)):
            if on is None:
                continue
            (reply,) = await self._daly(command, data=bytes((int(on),)))
            if bool(reply.data[0]) is not on:
                echo_ok = False
        return echo_ok

    async def _daly_info(self) -> BmsInfo:
        status = daly.decode_status((await self._daly(daly.CMD_STATUS))[0].data)
        rated = await self._optional(self._daly(daly.CMD_RATED, attempts=1))
        if rated is not None:
            self._rated = daly.decode_rated(rated[0].data)
        code = await self._optional(
            self._daly(_DALY_CMD_BATTERY_CODE, _DALY_CODE_FRAMES, attempts=1)
        )
        serial = None
        if code is not None:
            # Each frame: its number (1-5), then seven characters.
            ordered = sorted(code, key=lambda frame: frame.data[0])
            serial = _text(b"".join(frame.data[1:] for frame in ordered))
        return BmsInfo(
            protocol=self._protocol,
            serial=serial,
            cell_count=status.cell_count,
            nominal_capacity=self._rated.capacity if self._rated else None,
            address=self._address,
        )

    # --- ANT -------------------------------------------------------------------------------

    async def _ant_legacy_status(self) -> bytes:
        (frame,) = await self._exchange(ant.LEGACY_STATUS_REQUEST, lambda _f: True)
        return frame

    async def _ant_new_status(self) -> bytes:
        (frame,) = await self._exchange(
            ant.encode_status_request(), lambda f: f[2] == ant.FUNCTION_STATUS
        )
        return ant.parse_frame(frame).payload

    async def _ant_set_fets(self, charge: bool | None, discharge: bool | None) -> None:
        for is_charge, on in ((True, charge), (False, discharge)):
            if on is not None:
                write, _apply = ant.encode_legacy_mosfet(is_charge, on)
                await self._send_only(write)
        await self._send_only(ant.encode_legacy_apply())
        await asyncio.sleep(ANT_APPLY_TIME)

    async def _ant_new_info(self) -> BmsInfo:
        status = ant.decode_status(await self._ant_new_status())
        frames = await self._optional(
            self._exchange(
                ant.encode_request(
                    _ANT_DEVICE_INFO_COMMAND, _ANT_DEVICE_INFO_ADDRESS, _ANT_DEVICE_INFO_LENGTH
                ),
                lambda f: f[2] == ant.FUNCTION_DEVICE_INFO,
                attempts=1,
            )
        )
        model = firmware = None
        if frames is not None:
            payload = ant.parse_frame(frames[0]).payload
            field_size = _ANT_DEVICE_INFO_FIELD
            model = _text(payload[:field_size].split(b"\0", 1)[0])
            firmware = _text(payload[field_size : 2 * field_size].split(b"\0", 1)[0])
        return BmsInfo(
            protocol=self._protocol,
            model=model,
            firmware_version=firmware,
            cell_count=status.cell_count,
            nominal_capacity=status.nominal_capacity,
        )

    # --- JK ---------------------------------------------------------------------------------

    async def _jk_read_all(self) -> jk_serial.JkSerialFrame:
        """The read-all reply (a reply to 0x06, not the echo of the request)."""
        (frame,) = await self._exchange(
            jk_serial.encode_read_all_request(),
            lambda f: f[8] == jk_serial.CMD_READ_ALL and f[10] != jk_serial.TYPE_REQUEST,
        )
        return jk_serial.parse_frame(frame)

    async def _jk_set_fets(self, charge: bool | None, discharge: bool | None) -> None:
        password, *writes = jk_serial.encode_switch_requests(charge=charge, discharge=discharge)
        await self._send_only(password)
        await asyncio.sleep(JK_PASSWORD_PAUSE)
        for write in writes:
            await self._send_only(write)
        await asyncio.sleep(JK_APPLY_TIME)

    def _jk_info(self, status: jk_serial.JkStatus) -> BmsInfo:
        return BmsInfo(
            protocol=self._protocol,
            model=status.model,
            serial=status.serial,
            firmware_version=status.software_version,
            manufacture_date=status.manufacture_date,
            cell_count=status.cell_count or len(status.cell_voltages) or None,
            nominal_capacity=(
                None if status.nominal_capacity is None else float(status.nominal_capacity)
            ),
        )


_DETECTION_ORDER: Final[tuple[tuple[BmsProtocol, int | None], ...]] = (
    (BmsProtocol.JBD, None),
    (BmsProtocol.JBD_UP, None),
    (BmsProtocol.JK, None),
    (BmsProtocol.DALY, daly.HOST_ADDRESS_RS485),
    (BmsProtocol.DALY, daly.HOST_ADDRESS_UART),
    (BmsProtocol.ANT, None),
    (BmsProtocol.ANT_NEW, None),
)


async def detect_protocol(
    port: str,
    *,
    timeout: float = 1.5,
    open_connection: OpenConnection | None = None,
    jbd_up_address: int = jbd_up.DEFAULT_ADDRESS,
    jk_pb_addresses: Iterable[int] = (1,),
) -> tuple[BmsProtocol, BmsInfo]:
    """Find out which BMS answers on ``port`` (this port only: probing others is unsafe).

    Tries JBD, JBD UP (the pack at ``jbd_up_address``), JK, Daly on the RS485 then the UART
    address, ANT legacy, then ANT 2021, each with one request and ``timeout`` seconds to
    answer; JBD UP comes right after JBD, the same maker's older protocol at the same speed.
    JK comes next: it is the most common of them, and at 115200 baud its request is noise to
    the others (and theirs to it), so the order changes no other detection.

    When none of them answers, the port is probed for a JK PB bus (the packs at
    ``jk_pb_addresses``); if one answers, :class:`JkPbBusDetected` (a :class:`BmsNotDetected`)
    is raised with the packs found. Raises :class:`BmsNotConnected` when the port cannot be
    opened and :class:`BmsNotDetected` when nothing answered.
    """
    for protocol, address in _DETECTION_ORDER:
        client = SerialBmsClient(
            port,
            protocol,
            address=jbd_up_address if protocol is BmsProtocol.JBD_UP else address,
            request_timeout=timeout,
            retries=0,
            open_connection=open_connection,
        )
        try:
            info = await client.read_info()
        except BmsNotConnected:
            raise
        except ProtocolError as err:
            _LOGGER.debug("No %s BMS on %s: %s", protocol, port, err)
            continue
        finally:
            await client.close()
        return protocol, info
    from . import jk_pb  # jk_pb builds on this module, so it is imported late

    bus = jk_pb.JkPbBus(port, timeout=timeout, retries=0, open_connection=open_connection)
    try:
        packs = await bus.scan(jk_pb_addresses)
    finally:
        await bus.close()
    if packs:
        raise JkPbBusDetected(
            f"a JK PB bus answers on {port} (packs {', '.join(map(str, packs))})", dict(packs)
        )
    raise BmsNotDetected(f"no JBD, JBD UP, Daly or ANT BMS and no JK BMS answered on {port}")
