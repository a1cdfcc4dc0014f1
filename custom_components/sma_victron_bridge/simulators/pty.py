"""A pseudo-terminal that stands in for a USB serial adapter.

Serial device simulators (VE.Direct, JBD/Daly/ANT BMS) talk to the code under test through a real
kernel tty instead of a mock, so the client side runs exactly the code it runs against hardware:
``serial_asyncio_fast`` (or plain ``os.open``) on a path such as ``/dev/serial/by-id/...``.

The client opens :attr:`PtySerialPort.path`, a symlink that always points at the current slave
side of the pty, just as udev keeps ``/dev/serial/by-id`` links stable across re-plugging.
:meth:`PtySerialPort.unplug` closes both ends, so a reader sees end-of-file and a writer ``EIO``
exactly as with a pulled USB cable; :meth:`PtySerialPort.replug` creates a new pty behind the
same path.

Everything runs on the asyncio event loop with non-blocking file descriptors (``add_reader`` /
``add_writer``); no threads are started.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import contextlib
import fcntl
import os
import struct
import tempfile
import termios
import tty

_READ_CHUNK = 4096
# A client that leaves the slave's input queue (4095 bytes, the line discipline's buffer) nearly
# full for this long is not listening. A real UART simply loses what no program reads; without
# this rule a client opening the port later would first receive a pile of stale data. A live
# reader drains the queue within milliseconds.
_STALE_LIMIT = 4000
_STALE_AFTER = 0.5
# Upper bound for bytes kept in user space while the kernel buffer is full.
_PENDING_LIMIT = 65536


class PtySerialPort:
    """A pseudo-terminal standing in for a USB serial adapter, at a stable symlink path.

    The device side (the simulator) owns the pty master; clients open the slave through
    :attr:`path`. The simulator also keeps the slave open itself: that keeps the raw terminal
    settings in place between clients and stops the master from reporting a hang-up while no
    client is connected.
    """

    def __init__(self, link_path: str | None = None) -> None:
        """Prepare the port; without ``link_path`` the symlink goes into a fresh temp directory."""
        self._temp_dir: str | None = None
        if link_path is None:
            self._temp_dir = tempfile.mkdtemp(prefix="sma-victron-pty-")
            link_path = os.path.join(self._temp_dir, "ttyUSB0")
        self._path = link_path
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_data: Callable[[bytes], None] | None = None
        self._master = -1
        self._slave = -1
        self._pending = bytearray()
        self._writer_armed = False
        self._backlog_since: float | None = None
        self._closed = False

    @property
    def path(self) -> str:
        """The stable symlink path clients open."""
        return self._path

    @property
    def plugged(self) -> bool:
        """Whether a pty currently backs :attr:`path`."""
        return self._master >= 0

    @property
    def slave_name(self) -> str | None:
        """The kernel name of the current slave (``/dev/pts/N``), or None while unplugged."""
        if self._slave < 0:
            return None
        return os.ttyname(self._slave)

    async def open(self, on_data: Callable[[bytes], None]) -> None:
        """Create the pty, point the symlink at it and deliver client bytes to ``on_data``."""
        if self._closed:
            raise RuntimeError("port is closed")
        self._loop = asyncio.get_running_loop()
        self._on_data = on_data
        if not self.plugged:
            self._plug()

    def write(self, data: bytes) -> None:
        """Send bytes to the client without blocking; dropped while unplugged.

        Each call's bytes stay contiguous and in order, so a caller that writes a whole frame at
        once never has another frame interleaved into it.
        """
        if not self.plugged or not data:
            return
        self._drop_unread_backlog()
        pending = self._pending
        pending += data
        if len(pending) > _PENDING_LIMIT:
            # A flood the client cannot take: the oldest bytes are lost, as on a real line.
            del pending[: len(pending) - _PENDING_LIMIT]
        self._send_pending()

    async def unplug(self) -> None:
        """Close both ends of the pty like a pulled cable and remove the symlink."""
        if not self.plugged:
            return
        assert self._loop is not None
        self._loop.remove_reader(self._master)
        if self._writer_armed:
            self._loop.remove_writer(self._master)
            self._writer_armed = False
        self._pending.clear()
        self._backlog_since = None
        os.close(self._master)
        os.close(self._slave)
        self._master = -1
        self._slave = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)

    async def replug(self) -> None:
        """Create a new pty behind the same :attr:`path` (a no-op while plugged)."""
        if self._closed:
            raise RuntimeError("port is closed")
        if self._loop is None:
            raise RuntimeError("port was never opened")
        if not self.plugged:
            self._plug()

    async def close(self) -> None:
        """Unplug for good and remove the temporary directory; safe to call more than once."""
        if self._closed:
            return
        await self.unplug()
        self._closed = True
        if self._temp_dir is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self._temp_dir)

    def _plug(self) -> None:
        assert self._loop is not None
        master, slave = os.openpty()
        try:
            # Raw mode: no echo, no CR/LF translation, no software flow control - a plain wire.
            tty.setraw(slave)
            os.set_blocking(master, False)
            self._point_link_at(os.ttyname(slave))
        except BaseException:
            os.close(master)
            os.close(slave)
            raise
        self._master = master
        self._slave = slave
        self._loop.add_reader(master, self._read_ready)

    def _point_link_at(self, target: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self._path)), exist_ok=True)
        staging = f"{self._path}.{os.getpid()}.new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
        os.symlink(target, staging)
        # Atomic re-point: a client never finds the path missing half-way through a replug.
        os.replace(staging, self._path)

    def _read_ready(self) -> None:
        assert self._on_data is not None
        while chunk := self._read_chunk():
            self._on_data(chunk)

    def _read_chunk(self) -> bytes:
        try:
            return os.read(self._master, _READ_CHUNK)
        except OSError:
            # EAGAIN: drained. (EIO would mean no slave is open; ours always is.)
            return b""

    def _send_pending(self) -> None:
        """Hand queued bytes to the kernel; wait for the fd to become writable for the rest."""
        assert self._loop is not None
        pending = self._pending
        try:
            written = os.write(self._master, pending)
        except BlockingIOError:
            written = 0
        del pending[:written]
        if pending and not self._writer_armed:
            self._loop.add_writer(self._master, self._send_pending)
            self._writer_armed = True
        elif not pending and self._writer_armed:
            self._loop.remove_writer(self._master)
            self._writer_armed = False

    def _drop_unread_backlog(self) -> None:
        """Discard what the client has left unread for a while, as an unopened port would."""
        assert self._loop is not None
        if self._unread_by_client() < _STALE_LIMIT:
            self._backlog_since = None
            return
        now = self._loop.time()
        if self._backlog_since is None:
            self._backlog_since = now
        elif now - self._backlog_since >= _STALE_AFTER:
            termios.tcflush(self._slave, termios.TCIFLUSH)  # kernel queue and flip buffers
            self._pending.clear()
            self._backlog_since = None

    def _unread_by_client(self) -> int:
        raw = fcntl.ioctl(self._slave, termios.FIONREAD, b"\0\0\0\0")
        count: int = struct.unpack("i", raw)[0]
        return count
