"""Async VE.Direct client: keeps one serial port open, parses it, and talks HEX on it.

A VE.Direct device pushes text blocks on its own and answers HEX requests on the same
line, so one reader task does everything: it feeds :class:`TextParser`, hands finished
blocks to ``on_block``, matches HEX replies to the request waiting for them and passes
every other HEX frame (async ``:A`` messages, stray replies) to ``on_hex``.

USB cables come and go, so :meth:`VeDirectClient.run` never gives up: it reopens the port
with exponential backoff after an error, an end of file, or when nothing valid arrived for
``silence_timeout`` seconds. The serial port is opened as every serial client here opens
it (:func:`.serial_link.open_serial`: the blocking open in an executor, reads without threads).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import contextlib
from dataclasses import dataclass
import logging
from typing import Final

from . import ProtocolError
from .serial_link import OpenConnection, open_serial
from .vedirect import HexCommand, HexMessage, HexResponse, TextParser, decode_hex, encode_hex

__all__ = [
    "OpenConnection",
    "VeDirectClient",
    "VeDirectHexError",
    "VeDirectNotConnected",
    "VeDirectTimeout",
    "VeDirectUnknownCommandError",
    "open_serial",
]

_LOGGER = logging.getLogger(__name__)

READ_SIZE: Final = 4096
_REQUEST_FAILURES: Final = frozenset({HexResponse.ERROR, HexResponse.UNKNOWN})
CLOSE_TIMEOUT: Final = 2.0


class VeDirectNotConnected(ProtocolError):  # noqa: N818 - public name
    """A HEX request was made while the serial port is not open, or it closed meanwhile."""


class VeDirectTimeout(ProtocolError):  # noqa: N818 - public name
    """The device did not answer a HEX request, not even after the retries."""


class VeDirectHexError(ProtocolError):
    """The device answered a get/set with non-zero flags (unknown id, read-only, bad value)."""

    def __init__(self, message: str, flags: int) -> None:
        """``flags`` is the reply's flags byte (see :class:`HexFlags`)."""
        super().__init__(message)
        self.flags = flags


class VeDirectUnknownCommandError(ProtocolError):
    """The device answered "unknown command" (response 3)."""


@dataclass(slots=True)
class _Pending:
    """The one HEX request waiting for its reply."""

    matches: Callable[[HexMessage], bool]
    future: asyncio.Future[HexMessage]


class VeDirectClient:
    """Reconnecting reader of one VE.Direct port with serialised HEX requests."""

    def __init__(
        self,
        port: str,
        *,
        on_block: Callable[[dict[str, str]], None],
        on_hex: Callable[[HexMessage], None] | None = None,
        on_connection: Callable[[bool], None] | None = None,
        baudrate: int = 19200,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        silence_timeout: float = 10.0,
        request_timeout: float = 1.0,
        request_attempts: int = 3,
        open_connection: OpenConnection | None = None,
    ) -> None:
        """Set up; nothing is opened before :meth:`run`.

        ``on_connection(True)`` is called when the first valid block or HEX frame arrives
        after a (re)connect, ``on_connection(False)`` once when that link is lost.
        """
        self._port = port
        self._on_block = on_block
        self._on_hex = on_hex
        self._on_connection = on_connection
        self._baudrate = baudrate
        self._min_backoff = min_backoff
        self._max_backoff = max(max_backoff, min_backoff)
        self._silence_timeout = silence_timeout
        self._request_timeout = request_timeout
        self._request_attempts = max(1, request_attempts)
        self._open = open_connection or open_serial
        self._parser = TextParser()
        self._hex_errors = 0
        self._writer: asyncio.StreamWriter | None = None
        self._pending: _Pending | None = None
        self._lock = asyncio.Lock()
        self._connected = False
        self._connected_event = asyncio.Event()
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._stopped.set()
        self._closed = False
        self._outage_logged = False  # warn once per outage, not on every retry

    @property
    def port(self) -> str:
        """The serial port path given at construction."""
        return self._port

    @property
    def connected(self) -> bool:
        """True while the port is open and valid data has arrived since it was opened."""
        return self._connected

    @property
    def checksum_errors(self) -> int:
        """Text blocks dropped for a bad checksum, over the client's lifetime."""
        return self._parser.checksum_errors

    @property
    def hex_errors(self) -> int:
        """HEX lines that did not decode (bad checksum, shape or length)."""
        return self._hex_errors + self._parser.hex_errors

    # --- connection ------------------------------------------------------------------------

    async def run(self) -> None:
        """Read the port until cancelled or closed, reopening it after any failure.

        Never raises except :class:`asyncio.CancelledError`.
        """
        if self._closed:
            return
        self._stopped.clear()
        backoff = self._min_backoff
        try:
            while not self._closed:
                try:
                    reader, writer = await self._open(self._port, self._baudrate)
                except Exception as err:  # any open failure means "retry later"
                    log = _LOGGER.debug if self._outage_logged else _LOGGER.warning
                    self._outage_logged = True
                    log("Cannot open VE.Direct port %s: %s; retrying", self._port, err)
                else:
                    if await self._session(reader, writer):
                        backoff = self._min_backoff
                if self._stopping():
                    break
                await self._sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
        finally:
            self._stopped.set()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one open port until it fails or falls silent; True if valid data arrived."""
        loop = asyncio.get_running_loop()
        self._parser.reset()
        self._writer = writer
        got_data = False
        reason = "closed"
        try:
            deadline = loop.time() + self._silence_timeout
            # close() also closes the port, so a pending read ends with end of file.
            while not self._stopping():
                try:
                    async with asyncio.timeout_at(deadline):
                        data = await reader.read(READ_SIZE)
                except TimeoutError:
                    reason = f"no valid data for {self._silence_timeout:g} s"
                    break
                if not data:
                    reason = "end of file"
                    break
                if self._handle(data):
                    got_data = True
                    deadline = loop.time() + self._silence_timeout
        except asyncio.CancelledError:
            reason = ""  # stopped on purpose: not worth a warning
            raise
        except Exception as err:  # a serial error ends this session only
            reason = str(err) or type(err).__name__
        finally:
            self._writer = None
            self._fail_pending(VeDirectNotConnected(f"VE.Direct port {self._port} closed"))
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await writer.wait_closed()
            if self._connected:
                if reason and not self._closed:
                    self._outage_logged = True
                    _LOGGER.warning("VE.Direct port %s lost: %s", self._port, reason)
                else:
                    _LOGGER.debug("VE.Direct port %s stopped", self._port)
            self._set_connected(False)
        return got_data

    def _stopping(self) -> bool:
        """Whether :meth:`close` was called (re-read after every await)."""
        return self._closed

    async def _sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds, or less when :meth:`close` is called."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()

    async def wait_connected(self, timeout: float) -> None:
        """Return once valid data flows; raise :class:`TimeoutError` after ``timeout`` s."""
        if self._connected:
            return
        async with asyncio.timeout(timeout):
            await self._connected_event.wait()

    async def close(self) -> None:
        """Stop :meth:`run` (if it is running) and close the port; the client is done."""
        self._closed = True
        self._wake.set()
        writer = self._writer
        if writer is not None:
            writer.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT * 2):
                await self._stopped.wait()

    def _set_connected(self, connected: bool) -> None:
        if connected == self._connected:
            return
        self._connected = connected
        if connected:
            self._connected_event.set()
            self._outage_logged = False
            _LOGGER.info("VE.Direct port %s receiving data", self._port)
        else:
            self._connected_event.clear()
        if self._on_connection is not None:
            try:
                self._on_connection(connected)
            except Exception:
                _LOGGER.exception("VE.Direct connection callback failed")

    # --- incoming data -----------------------------------------------------------------------

    def _handle(self, data: bytes) -> bool:
        """Parse received bytes and dispatch them; True if anything valid was in them."""
        parser = self._parser
        blocks = parser.feed(data)
        lines = parser.take_hex()
        valid = False
        for line in lines:
            try:
                message = decode_hex(line)
            except ProtocolError as err:
                self._hex_errors += 1
                _LOGGER.debug("Bad HEX frame on %s: %s", self._port, err)
                continue
            valid = True
            self._set_connected(True)
            self._dispatch_hex(message)
        for block in blocks:
            valid = True
            self._set_connected(True)
            try:
                self._on_block(block)
            except Exception:
                _LOGGER.exception("VE.Direct block callback failed")
        return valid

    def _dispatch_hex(self, message: HexMessage) -> None:
        pending = self._pending
        if (
            pending is not None
            and not pending.future.done()
            and (pending.matches(message) or message.command in _REQUEST_FAILURES)
        ):
            pending.future.set_result(message)
            return
        if self._on_hex is not None:
            try:
                self._on_hex(message)
            except Exception:
                _LOGGER.exception("VE.Direct HEX callback failed")

    def _fail_pending(self, error: ProtocolError) -> None:
        pending = self._pending
        if pending is not None and not pending.future.done():
            pending.future.set_exception(error)

    # --- HEX requests ------------------------------------------------------------------------

    async def _request(self, frame: bytes, matches: Callable[[HexMessage], bool]) -> HexMessage:
        """Send ``frame`` and wait for the reply ``matches`` accepts, with retries.

        A framing-error reply (``:4AAAAFD``) or silence triggers a resend.
        """
        loop = asyncio.get_running_loop()
        async with self._lock:
            for _attempt in range(self._request_attempts):
                writer = self._writer
                if writer is None:
                    raise VeDirectNotConnected(f"VE.Direct port {self._port} is not open")
                future: asyncio.Future[HexMessage] = loop.create_future()
                self._pending = _Pending(matches, future)
                try:
                    writer.write(frame)
                    async with asyncio.timeout(self._request_timeout):
                        reply = await future
                except TimeoutError:
                    _LOGGER.debug("No answer to %r on %s", frame, self._port)
                    continue
                finally:
                    self._pending = None
                if reply.command == HexResponse.UNKNOWN:
                    raise VeDirectUnknownCommandError(
                        f"device does not know the command in {frame!r}"
                    )
                if reply.command == HexResponse.ERROR:
                    _LOGGER.debug("Framing error reply to %r on %s", frame, self._port)
                    continue
                return reply
        raise VeDirectTimeout(
            f"no answer to {frame!r} on {self._port} after {self._request_attempts} tries"
        )

    async def ping(self) -> HexMessage:
        """Ping; the reply's value is the firmware version (e.g. ``0x4116`` → 1.16)."""
        return await self._request(
            encode_hex(HexCommand.PING), lambda msg: msg.command == HexResponse.PING
        )

    async def get_product_id(self) -> int:
        """Product id via the ``:4`` command, which every firmware answers."""
        reply = await self._request(
            encode_hex(HexCommand.PRODUCT_ID), lambda msg: msg.command == HexResponse.DONE
        )
        value = reply.value
        if len(value) == 4:
            # Instance byte, product id, reserved byte: the register 0x0100 layout.
            return value[1] | value[2] << 8
        if len(value) < 2:
            raise ProtocolError(f"product id reply too short: {value.hex()}")
        return value[0] | value[1] << 8

    async def get(self, register: int) -> bytes:
        """Read a register; returns its raw little-endian value bytes."""
        return await self._register_request(HexCommand.GET, register, b"")

    async def set(self, register: int, value: bytes) -> bytes:
        """Write a register; returns the value the device echoes (what it actually took)."""
        return await self._register_request(HexCommand.SET, register, value)

    async def _register_request(self, command: HexCommand, register: int, value: bytes) -> bytes:
        frame = encode_hex(command, register, 0, value)
        reply = await self._request(
            frame, lambda msg: msg.command == command and msg.register == register
        )
        if reply.flags:
            raise VeDirectHexError(
                f"register 0x{register:04X}: device answered flags 0x{reply.flags:02X}",
                reply.flags,
            )
        return reply.value
