"""The serial port under the request/response BMS clients (:mod:`.bms_client`, :mod:`.jk_pb`).

:class:`SerialLink` is what every such client does with its port, kept in one place so that
a fix to reconnecting or to unplug handling reaches all of them: the port is opened on demand
through ``serial_asyncio_fast`` (whose blocking open runs in an executor, so nothing blocks
the event loop); one reader task feeds every received byte to the client's frame assembler
and completes the request waiting for its reply; a write first checks the tty for a hang-up
(an unplugged USB adapter); an I/O error or end of file closes the port, fails the waiting
request with :class:`BmsNotConnected` and lets the next request open the port again.

What a request is, which frame answers it and how often it is repeated stays with the client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import contextlib
from dataclasses import dataclass
import logging
import select
from typing import Any, ClassVar, Final, Protocol

import serial_asyncio_fast

from . import ProtocolError

__all__ = [
    "BmsNotConnected",
    "FrameSource",
    "OpenConnection",
    "SerialLink",
    "hung_up",
    "open_serial",
]

_LOGGER = logging.getLogger(__name__)

READ_SIZE: Final = 4096
CLOSE_TIMEOUT: Final = 2.0

OpenConnection = Callable[[str, int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
"""Opens ``port`` at ``baudrate`` and returns a stream pair (the test and simulator seam)."""


async def open_serial(
    port: str, baudrate: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open ``port`` 8N1 without flow control; the blocking open runs in an executor.

    ``exclusive`` keeps a second program (another entry, a console) from stealing replies.
    """
    reader, writer = await serial_asyncio_fast.open_serial_connection(
        url=port, baudrate=baudrate, bytesize=8, parity="N", stopbits=1, exclusive=True
    )
    return reader, writer


class BmsNotConnected(ProtocolError):  # noqa: N818 - public name
    """The serial port cannot be opened, or it closed (cable pulled) during a request."""


class FrameSource(Protocol):
    """What the link needs from a frame assembler (``bms_common.StreamAssembler`` and kin)."""

    checksum_errors: int

    def feed(self, data: bytes) -> list[bytes]: ...

    def reset(self) -> None: ...


def hung_up(serial: Any) -> bool:
    """Whether the tty behind a pyserial object reports a hang-up (adapter unplugged).

    A zero-timeout poll is one non-blocking system call; without ``poll`` (or without a file
    descriptor, e.g. a test transport) the answer is "no".
    """
    fileno = getattr(serial, "fileno", None)
    poll = getattr(select, "poll", None)
    if fileno is None or poll is None:
        return False
    try:
        poller = poll()
        poller.register(fileno(), select.POLLOUT)
        events = poller.poll(0)
    except OSError, ValueError:
        return True
    return any(event & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, event in events)


@dataclass(slots=True)
class _Waiter[R]:
    """The request waiting for its reply: ``collect`` sees each frame and returns the reply
    once it is complete; None as the result means "only corrupt frames came"."""

    collect: Callable[[bytes], R | None]
    future: asyncio.Future[R | None]
    checksum_errors: int


class SerialLink[A: FrameSource]:
    """One serial port, its reader task and the one request waiting for a reply.

    The client subclasses it, gives the assembler that cuts its protocol's frames, and
    serialises its requests itself (one request at a time may wait). ``bytes_sent`` and
    ``bytes_received`` count the traffic since the client was created.
    """

    _link_name: ClassVar[str] = "serial port"
    """How the debug log names the port's owner."""

    _task_name: ClassVar[str] = "serial-reader"
    """Prefix of the reader task's name."""

    def __init__(
        self, port: str, baudrate: int, open_connection: OpenConnection | None, assembler: A
    ) -> None:
        """Set up; nothing is opened yet."""
        self._port = port
        self._baudrate = baudrate
        self._open = open_connection or open_serial
        self._assembler = assembler
        self._writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None
        self._waiter: _Waiter[Any] | None = None
        self._rx_event = asyncio.Event()
        self.bytes_sent = 0
        self.bytes_received = 0

    @property
    def port(self) -> str:
        """The serial port path."""
        return self._port

    @property
    def connected(self) -> bool:
        """Whether the port is open (not whether anything answers on it)."""
        writer = self._writer
        return (
            self._pump is not None
            and not self._pump.done()
            and writer is not None
            and not writer.transport.is_closing()
        )

    async def close(self) -> None:
        """Close the port; a later request opens it again."""
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        self._writer = None

    def _opened(self) -> None:
        """Called when the port has been (re)opened, before the reader starts."""

    async def _ensure_open(self) -> None:
        """Open the port unless it is open; raises :class:`BmsNotConnected` if it cannot."""
        if self.connected:
            return
        await self.close()  # collect a reader that ended (port closed on error or EOF)
        try:
            reader, writer = await self._open(self._port, self._baudrate)
        except Exception as err:  # any failure to open means "not connected"
            raise BmsNotConnected(f"cannot open {self._port}: {err}") from err
        self._assembler.reset()
        self._opened()
        self._writer = writer
        self._pump = asyncio.get_running_loop().create_task(
            self._read_port(reader, writer), name=f"{self._task_name}-{self._port}"
        )

    async def _read_port(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Feed every received byte to the assembler until the port fails or is closed."""
        reason = "end of file"
        try:
            while data := await reader.read(READ_SIZE):
                self._received(data)
        except asyncio.CancelledError:
            reason = "closed"
            raise
        except Exception as err:  # a serial error ends this connection only
            reason = str(err) or type(err).__name__
        finally:
            if self._writer is writer:
                self._writer = None
            waiter = self._waiter
            if waiter is not None and not waiter.future.done():
                waiter.future.set_exception(BmsNotConnected(f"serial port {self._port} {reason}"))
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await writer.wait_closed()
            _LOGGER.debug("%s %s: %s", self._link_name, self._port, reason)

    def _received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        self._rx_event.set()
        frames = self._assembler.feed(data)
        waiter = self._waiter
        if waiter is None or waiter.future.done():
            return
        for frame in frames:
            reply = waiter.collect(frame)
            if reply is not None:
                waiter.future.set_result(reply)
                return
        if self._assembler.checksum_errors != waiter.checksum_errors:
            waiter.future.set_result(None)

    def _write(self, frame: bytes) -> None:
        """Send ``frame``; raises :class:`BmsNotConnected` if the port is closed or gone."""
        writer = self._writer
        if writer is None or writer.transport.is_closing():
            raise BmsNotConnected(f"serial port {self._port} is not open")
        if hung_up(writer.transport.get_extra_info("serial")):
            # The cable is gone but the reader has not seen it yet: writing now would only
            # produce a fatal-error report from the transport.
            writer.close()
            raise BmsNotConnected(f"serial port {self._port} was disconnected")
        writer.write(frame)
        self.bytes_sent += len(frame)

    async def _exchange_once[R](
        self, request: bytes, collect: Callable[[bytes], R | None], timeout: float
    ) -> R | None:
        """Send ``request`` once and wait for the reply ``collect`` completes.

        Returns None when only corrupt frames came (a checksum error was counted), raises
        :class:`TimeoutError` when nothing answered in ``timeout`` seconds and
        :class:`BmsNotConnected` when the port is closed or fails meanwhile.
        """
        loop = asyncio.get_running_loop()
        waiter = _Waiter(collect, loop.create_future(), self._assembler.checksum_errors)
        self._waiter = waiter
        try:
            self._write(request)
            async with asyncio.timeout(timeout):
                return await waiter.future
        finally:
            self._waiter = None

    async def _flush_input(self) -> None:
        """Drop stale bytes: the kernel's input buffer, then what the assembler holds."""
        writer = self._writer
        serial = writer.transport.get_extra_info("serial") if writer is not None else None
        if serial is not None:
            with contextlib.suppress(Exception):
                serial.reset_input_buffer()
        await asyncio.sleep(0)  # let the reader take what it was already handed
        self._assembler.reset()

    async def _settle(self, quiet: float, limit: float) -> None:
        """Wait until the line has been quiet for ``quiet`` seconds, at most ``limit`` seconds
        (the rest of a bad reply)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                while True:
                    self._rx_event.clear()
                    try:
                        async with asyncio.timeout(quiet):
                            await self._rx_event.wait()
                    except TimeoutError:
                        return
