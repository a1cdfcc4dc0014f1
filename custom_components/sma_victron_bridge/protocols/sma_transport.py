"""Links that carry SMA packets: Bluetooth RFCOMM (a byte stream) and Speedwire (UDP datagrams).

The Sunny Boy client speaks the same level-2 packets over both links, but it must not care how
bytes travel: :class:`PacketTransport` is the seam between the two. The client tells the links
apart by :attr:`PacketTransport.kind` because Bluetooth wraps packets in level-1 frames and a
handshake, while Speedwire sends bare level-2 bodies in a tag container.

RFCOMM needs ``socket.AF_BLUETOOTH``, which CPython only has when it was built against the
BlueZ headers. Home Assistant's official images are; many distribution and self-built Pythons
are not. :class:`RfcommTransport` therefore reports a missing Bluetooth socket family as
:class:`BluetoothUnavailable` with a message a user can act on, instead of an AttributeError.
Its ``socket_factory`` lets tests and simulators hand in an already connected stream socket
(one end of ``socket.socketpair()``), so the code above the socket runs unchanged without a
Bluetooth adapter.

Both transports are non-blocking: RFCOMM uses the event loop's ``sock_*`` calls, Speedwire a
datagram endpoint. Nothing here starts threads or background tasks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import asyncio
from collections.abc import Callable
import contextlib
import logging
import socket
from typing import ClassVar, Final, Literal

from . import ProtocolError

__all__ = [
    "BLUETOOTH_UNAVAILABLE_MESSAGE",
    "BluetoothUnavailable",
    "PacketTransport",
    "RfcommTransport",
    "SpeedwireTransport",
    "TransportClosed",
    "bluetooth_available",
]

_LOGGER = logging.getLogger(__name__)

READ_SIZE: Final = 4096
SPEEDWIRE_QUEUE_SIZE: Final = 256
"""Datagrams kept while nobody reads; a flood beyond this is dropped, not buffered forever."""

BLUETOOTH_UNAVAILABLE_MESSAGE: Final = (
    "This Python build lacks Bluetooth socket support: socket.AF_BLUETOOTH / "
    "socket.BTPROTO_RFCOMM do not exist because CPython was compiled without the BlueZ "
    "development headers. Run a Python built with Bluetooth support (Home Assistant OS and "
    "the official container images have it) or connect to the inverter over Speedwire."
)

type TransportKind = Literal["bluetooth", "speedwire"]


class TransportClosed(ProtocolError):  # noqa: N818 - public name
    """The link is not open, could not be opened, or the peer closed it."""


class BluetoothUnavailable(ProtocolError):  # noqa: N818 - public name
    """This Python has no RFCOMM sockets (built without Bluetooth support)."""


def bluetooth_available() -> bool:
    """Whether this Python can open RFCOMM sockets at all."""
    return hasattr(socket, "AF_BLUETOOTH") and hasattr(socket, "BTPROTO_RFCOMM")


class PacketTransport(ABC):
    """One link to an inverter: open it, send bytes, receive bytes, close it.

    ``receive`` returns what arrived: a chunk of the RFCOMM byte stream (frames may be split
    or joined) or exactly one Speedwire datagram. It raises :class:`TimeoutError` when nothing
    arrived within ``timeout`` seconds and :class:`TransportClosed` when the link is down.
    ``open`` may be called again after ``close`` or after a lost link.
    """

    kind: ClassVar[TransportKind]

    @property
    @abstractmethod
    def name(self) -> str:
        """Human-readable description of the link for logs and errors."""

    @abstractmethod
    async def open(self) -> None:
        """Open (or reopen) the link; raises TransportClosed or BluetoothUnavailable."""

    @abstractmethod
    async def send(self, data: bytes) -> None:
        """Send bytes; raises TransportClosed when the link is down."""

    @abstractmethod
    async def receive(self, timeout: float) -> bytes:
        """Wait up to ``timeout`` s for data; TimeoutError if none, TransportClosed if down."""

    @abstractmethod
    async def close(self) -> None:
        """Close the link; safe to call more than once."""


class RfcommTransport(PacketTransport):
    """A Bluetooth RFCOMM stream to a Sunny Boy (channel 1), non-blocking on the event loop."""

    kind: ClassVar[TransportKind] = "bluetooth"

    def __init__(
        self,
        address: str,
        channel: int = 1,
        *,
        socket_factory: Callable[[], socket.socket] | None = None,
        connect_timeout: float = 15.0,
    ) -> None:
        """``socket_factory`` returns an already connected stream socket (tests, simulators)."""
        self.address = address
        self.channel = channel
        self._socket_factory = socket_factory
        self._connect_timeout = connect_timeout
        self._sock: socket.socket | None = None

    @property
    def name(self) -> str:
        """E.g. ``RFCOMM 00:80:25:12:34:56 channel 1``."""
        return f"RFCOMM {self.address} channel {self.channel}"

    @property
    def is_open(self) -> bool:
        """Whether a socket is currently held."""
        return self._sock is not None

    async def open(self) -> None:
        """Connect a new RFCOMM socket (or take one from the factory)."""
        await self.close()
        if self._socket_factory is not None:
            try:
                sock = self._socket_factory()
            except OSError as err:
                raise TransportClosed(f"cannot open {self.name}: {err}") from err
            sock.setblocking(False)
        else:
            sock = await self._connect()
        self._sock = sock

    async def _connect(self) -> socket.socket:
        family = getattr(socket, "AF_BLUETOOTH", None)
        protocol = getattr(socket, "BTPROTO_RFCOMM", None)
        if family is None or protocol is None:
            raise BluetoothUnavailable(BLUETOOTH_UNAVAILABLE_MESSAGE)
        try:
            sock = socket.socket(family, socket.SOCK_STREAM, protocol)
        except OSError as err:
            raise TransportClosed(f"cannot create an RFCOMM socket: {err}") from err
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                await loop.sock_connect(sock, (self.address, self.channel))
        except OSError as err:  # TimeoutError is an OSError too
            sock.close()
            reason = str(err) or type(err).__name__
            raise TransportClosed(f"cannot connect to {self.name}: {reason}") from err
        return sock

    def _require(self) -> socket.socket:
        if self._sock is None:
            raise TransportClosed(f"{self.name} is not open")
        return self._sock

    async def send(self, data: bytes) -> None:
        """Write all bytes to the stream."""
        sock = self._require()
        try:
            await asyncio.get_running_loop().sock_sendall(sock, data)
        except OSError as err:
            await self.close()
            raise TransportClosed(f"{self.name}: send failed: {err}") from err

    async def receive(self, timeout: float) -> bytes:
        """Return the next chunk of the stream (at least one byte)."""
        sock = self._require()
        try:
            async with asyncio.timeout(timeout):
                data = await asyncio.get_running_loop().sock_recv(sock, READ_SIZE)
        except TimeoutError:
            raise
        except OSError as err:
            await self.close()
            raise TransportClosed(f"{self.name}: receive failed: {err}") from err
        if not data:
            await self.close()
            raise TransportClosed(f"{self.name}: closed by the peer")
        return data

    async def close(self) -> None:
        """Shut the socket down so the peer sees the end at once, then close it."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


class _DatagramQueue(asyncio.DatagramProtocol):
    """Queues received datagrams; ``None`` marks the end of the endpoint."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(SPEEDWIRE_QUEUE_SIZE)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP "port unreachable" and the like: an inverter that is off looks silent on UDP,
        # so this is left to the caller's timeout rather than treated as a lost link.
        _LOGGER.debug("Speedwire socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)


class SpeedwireTransport(PacketTransport):
    """UDP to one inverter (port 9522); each ``receive`` returns one datagram from it."""

    kind: ClassVar[TransportKind] = "speedwire"

    def __init__(self, host: str, port: int = 9522, *, local_port: int = 0) -> None:
        """``local_port`` 0 lets the system pick the source port."""
        self.host = host
        self.port = port
        self._local_port = local_port
        self._transport: asyncio.DatagramTransport | None = None
        self._protocol: _DatagramQueue | None = None

    @property
    def name(self) -> str:
        """E.g. ``Speedwire 192.168.1.20:9522``."""
        return f"Speedwire {self.host}:{self.port}"

    @property
    def is_open(self) -> bool:
        """Whether a datagram endpoint is currently held."""
        return self._transport is not None

    async def open(self) -> None:
        """Create a UDP endpoint connected to the inverter (replies from others are dropped)."""
        await self.close()
        loop = asyncio.get_running_loop()
        local_addr = ("0.0.0.0", self._local_port) if self._local_port else None  # noqa: S104
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                _DatagramQueue, remote_addr=(self.host, self.port), local_addr=local_addr
            )
        except OSError as err:
            raise TransportClosed(f"cannot open {self.name}: {err}") from err
        self._transport, self._protocol = transport, protocol

    async def send(self, data: bytes) -> None:
        """Send one datagram."""
        if self._transport is None or self._transport.is_closing():
            raise TransportClosed(f"{self.name} is not open")
        self._transport.sendto(data)

    async def receive(self, timeout: float) -> bytes:
        """Return the next datagram from the inverter."""
        if self._protocol is None:
            raise TransportClosed(f"{self.name} is not open")
        queue = self._protocol.queue
        async with asyncio.timeout(timeout):
            data = await queue.get()
        if data is None:
            await self.close()
            raise TransportClosed(f"{self.name} was closed")
        return data

    async def close(self) -> None:
        """Close the UDP endpoint."""
        transport, self._transport, self._protocol = self._transport, None, None
        if transport is not None:
            transport.close()
