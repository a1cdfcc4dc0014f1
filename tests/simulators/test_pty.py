"""The PTY "USB serial adapter": bytes both ways, raw mode, unplug/replug, back-pressure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
import contextlib
import errno
import os
from pathlib import Path

import pytest

from custom_components.sma_victron_bridge.simulators.pty import PtySerialPort


class Client:
    """What a serial client does: open the stable path, read with ``add_reader``."""

    def __init__(self, path: str) -> None:
        self.loop = asyncio.get_running_loop()
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.data = bytearray()
        self.eof = False
        self.error: OSError | None = None
        self._arrived = asyncio.Event()
        self._reading = False
        self.resume()

    def resume(self) -> None:
        if not self._reading:
            self.loop.add_reader(self.fd, self._ready)
            self._reading = True

    def pause(self) -> None:
        if self._reading:
            self.loop.remove_reader(self.fd)
            self._reading = False

    def _ready(self) -> None:
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError as err:
            self.error = err
            chunk = b""
        if not chunk:
            self.eof = True
            self.pause()
        self.data += chunk
        self._arrived.set()

    async def wait_for(self, done: Callable[[], bool], timeout: float = 2.0) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                self._arrived.clear()
                await self._arrived.wait()

    def close(self) -> None:
        self.pause()
        with contextlib.suppress(OSError):
            os.close(self.fd)


@pytest.fixture
async def port() -> AsyncIterator[tuple[PtySerialPort, list[bytes]]]:
    """An opened port and the list its client-to-device bytes are collected in."""
    received: list[bytes] = []
    serial = PtySerialPort()
    await serial.open(received.append)
    yield serial, received
    await serial.close()


async def test_path_is_a_stable_symlink_to_a_pty(
    port: tuple[PtySerialPort, list[bytes]],
) -> None:
    serial, _ = port
    assert serial.plugged
    assert os.path.islink(serial.path)
    assert os.readlink(serial.path) == serial.slave_name
    assert serial.slave_name is not None
    assert serial.slave_name.startswith("/dev/pts/")


async def test_bytes_flow_both_ways_untranslated(
    port: tuple[PtySerialPort, list[bytes]],
) -> None:
    """Raw mode: CR/LF, ^C, ^D, XON/XOFF and 8-bit bytes pass unchanged, nothing is echoed."""
    serial, received = port
    client = Client(serial.path)
    try:
        payload = b"\r\nV\t12800\r\n\x03\x04\x11\x13\x7f\xff\x00:154\n"
        serial.write(payload)
        await client.wait_for(lambda: len(client.data) >= len(payload))
        assert bytes(client.data) == payload

        os.write(client.fd, payload)
        async with asyncio.timeout(2):
            while len(b"".join(received)) < len(payload):
                await asyncio.sleep(0.01)
        assert b"".join(received) == payload
        await asyncio.sleep(0.05)
        assert bytes(client.data) == payload  # no echo came back to the client
    finally:
        client.close()


async def test_unplug_looks_like_a_pulled_cable(
    port: tuple[PtySerialPort, list[bytes]],
) -> None:
    serial, _ = port
    client = Client(serial.path)
    try:
        await serial.unplug()
        assert not serial.plugged
        assert serial.slave_name is None
        assert not os.path.lexists(serial.path)
        await client.wait_for(lambda: client.eof)
        assert client.error is None or client.error.errno == errno.EIO
        with pytest.raises(OSError, match="Input/output error") as caught:
            os.write(client.fd, b":154\n")
        assert caught.value.errno == errno.EIO
        serial.write(b"dropped while unplugged")  # must not raise
        await serial.unplug()  # idempotent
    finally:
        client.close()


async def test_replug_brings_a_new_pty_at_the_same_path(
    port: tuple[PtySerialPort, list[bytes]],
) -> None:
    serial, received = port
    path = serial.path
    await serial.unplug()
    await serial.replug()
    assert serial.plugged
    assert serial.path == path
    assert os.readlink(path) == serial.slave_name
    await serial.replug()  # no-op while plugged
    client = Client(path)
    try:
        serial.write(b"after replug")
        await client.wait_for(lambda: client.data == b"after replug")
        os.write(client.fd, b"hello")
        async with asyncio.timeout(2):
            while b"".join(received) != b"hello":
                await asyncio.sleep(0.01)
    finally:
        client.close()


async def test_close_is_idempotent_and_removes_the_temp_dir() -> None:
    serial = PtySerialPort()
    directory = os.path.dirname(serial.path)
    assert os.path.isdir(directory)
    await serial.open(lambda _: None)
    await serial.close()
    await serial.close()
    assert not os.path.exists(directory)
    with pytest.raises(RuntimeError):
        await serial.open(lambda _: None)
    with pytest.raises(RuntimeError):
        await serial.replug()


async def test_replug_before_open_is_an_error() -> None:
    serial = PtySerialPort()
    try:
        with pytest.raises(RuntimeError):
            await serial.replug()
    finally:
        await serial.close()


async def test_given_link_path_is_created_and_a_stale_link_replaced(tmp_path: Path) -> None:
    link = tmp_path / "serial" / "by-id" / "usb-VictronEnergy_BV_VE_Direct_cable_HQ1-if00-port0"
    link.parent.mkdir(parents=True)
    link.symlink_to("/nonexistent/old-device")
    serial = PtySerialPort(str(link))
    await serial.open(lambda _: None)
    try:
        assert serial.path == str(link)
        assert os.readlink(link) == serial.slave_name
        await serial.open(lambda _: None)  # a second open keeps the same pty
        assert os.readlink(link) == serial.slave_name
    finally:
        await serial.close()
    assert not os.path.lexists(link)
    assert link.parent.is_dir()  # a caller's directory is left alone


async def test_failed_plug_leaves_nothing_open(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    serial = PtySerialPort(str(blocker / "ttyUSB0"))
    fds_before = set(os.listdir("/proc/self/fd"))
    with pytest.raises((FileExistsError, NotADirectoryError)):
        await serial.open(lambda _: None)
    assert not serial.plugged
    assert set(os.listdir("/proc/self/fd")) <= fds_before
    await serial.close()


async def test_large_writes_are_buffered_and_arrive_in_order(
    port: tuple[PtySerialPort, list[bytes]],
) -> None:
    """More than the kernel holds: the rest waits in user space and follows in order."""
    serial, _ = port
    client = Client(serial.path)
    try:
        payload = bytes(range(256)) * 160  # 40 kB, about twice what the kernel buffers
        serial.write(payload[:30000])
        serial.write(payload[30000:])  # queued behind the first, never interleaved
        await client.wait_for(lambda: len(client.data) >= len(payload), timeout=5)
        assert bytes(client.data) == payload
    finally:
        client.close()


async def test_a_port_nobody_reads_drops_old_bytes(
    port: tuple[PtySerialPort, list[bytes]],
) -> None:
    """Like a real line: what nobody reads is lost, so a late reader gets fresh data."""
    serial, _ = port
    client = Client(serial.path)
    client.pause()
    try:
        for number in range(50):
            serial.write(b"%04d" % number + b"." * 396)  # 20 kB in 400-byte frames over 1 s
            await asyncio.sleep(0.02)
        serial.write(b"LATEST")
        client.resume()
        await client.wait_for(lambda: client.data.endswith(b"LATEST"))
        # The queue stayed full for more than 0.5 s, so the backlog was discarded once.
        assert len(client.data) < 12_000
        assert not client.data.startswith(b"0000.")  # the oldest frame is gone
    finally:
        client.close()


async def test_a_flood_beyond_the_user_space_limit_keeps_the_newest(
    port: tuple[PtySerialPort, list[bytes]],
) -> None:
    serial, _ = port
    client = Client(serial.path)
    client.pause()
    try:
        serial.write(b"\x00" * 200_000 + b"END")
        client.resume()
        await client.wait_for(lambda: client.data.endswith(b"END"), timeout=5)
        assert len(client.data) < 100_000
    finally:
        client.close()


async def test_unplug_discards_bytes_still_queued(
    port: tuple[PtySerialPort, list[bytes]],
) -> None:
    serial, _ = port
    client = Client(serial.path)
    client.pause()
    try:
        serial.write(b"\x55" * 50_000)  # more than the kernel takes: the rest is queued
        serial.write(b"\xaa" * 100)  # the kernel is full now: this one waits as well
        await serial.unplug()
        await serial.replug()
    finally:
        client.close()
    fresh = Client(serial.path)
    try:
        serial.write(b"fresh")
        await fresh.wait_for(lambda: bytes(fresh.data) == b"fresh")
    finally:
        fresh.close()
