"""VE.Direct client over a real PTY: the test plays the device on the master side."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
import contextlib
import os
from pathlib import Path
import tty

import pytest

from custom_components.sma_victron_bridge.protocols import ProtocolError
from custom_components.sma_victron_bridge.protocols.vedirect import (
    HexCommand,
    HexMessage,
    TextParser,
    decode_hex,
    encode_hex,
)
from custom_components.sma_victron_bridge.protocols.vedirect_client import (
    VeDirectClient,
    VeDirectHexError,
    VeDirectNotConnected,
    VeDirectTimeout,
    VeDirectUnknownCommandError,
    open_serial,
)

CAPTURES = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "vedirect"
WAIT = 5.0

Answer = Callable[[HexMessage], bytes | None]
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def make_block(*fields: tuple[str, str]) -> bytes:
    body = b"".join(b"\r\n%s\t%s" % (k.encode(), v.encode()) for k, v in fields)
    body += b"\r\nChecksum\t"
    return body + bytes([-sum(body) & 0xFF])


BLOCK = make_block(("PID", "0xA053"), ("V", "12800"), ("I", "-10"), ("CS", "3"))
BLOCK_FIELDS = {"PID": "0xA053", "V": "12800", "I": "-10", "CS": "3"}


class PtyDevice:
    """A VE.Direct device on the master side of a PTY whose slave is reached via ``link``.

    It streams a text block periodically (like a real device) and answers each HEX request
    through ``answer`` (None = stay silent).
    """

    def __init__(self, link: Path, answer: Answer | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        link.unlink(missing_ok=True)
        link.symlink_to(os.ttyname(self.slave))
        self.answer = answer
        self.requests: list[bytes] = []
        self._rx = b""
        self._stream: asyncio.Task[None] | None = None
        self.loop.add_reader(self.master, self._readable)
        self.closed = False

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except OSError:  # EIO while no one has the slave open (between reconnects)
            return
        self._rx += data
        while b"\n" in self._rx:
            line, self._rx = self._rx.split(b"\n", 1)
            self.requests.append(line + b"\n")
            if self.answer is not None:
                reply = self.answer(decode_hex(line))
                if reply is not None:
                    self.write(reply)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    async def send(self, data: bytes, chunk: int = 512) -> None:
        """Write a lot of data the way a 19200 baud line delivers it: in pieces."""
        for start in range(0, len(data), chunk):
            piece = data[start : start + chunk]
            while piece:
                try:
                    written = os.write(self.master, piece)
                except BlockingIOError:
                    await asyncio.sleep(0.005)
                    continue
                piece = piece[written:]
            await asyncio.sleep(0)

    def stream(self, block: bytes = BLOCK, interval: float = 0.05) -> None:
        """Send ``block`` every ``interval`` seconds until :meth:`stop_stream`."""
        self.stop_stream()

        async def run() -> None:
            while True:
                self.write(block)
                await asyncio.sleep(interval)

        self._stream = asyncio.create_task(run())

    def stop_stream(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None

    async def close(self) -> None:
        """Unplug: the client's reads fail."""
        if self.closed:
            return
        self.closed = True
        task = self._stream
        self.stop_stream()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.loop.remove_reader(self.master)
        os.close(self.master)
        os.close(self.slave)


class Recorder:
    """Collects what the client reports."""

    def __init__(self) -> None:
        self.blocks: list[dict[str, str]] = []
        self.hex: list[HexMessage] = []
        self.connection: list[bool] = []
        self.changed = asyncio.Event()

    def on_block(self, block: dict[str, str]) -> None:
        self.blocks.append(block)
        self.changed.set()

    def on_hex(self, message: HexMessage) -> None:
        self.hex.append(message)
        self.changed.set()

    def on_connection(self, connected: bool) -> None:
        self.connection.append(connected)
        self.changed.set()

    async def until(self, condition: Callable[[], bool], timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
def link(tmp_path: Path) -> Path:
    """The stable port path (like /dev/serial/by-id/...) that survives a replug."""
    return tmp_path / "ttyVE"


@contextlib.asynccontextmanager
async def running(client: VeDirectClient) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(client.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.close()


def make_client(link: Path, recorder: Recorder, **kwargs: float) -> VeDirectClient:
    options: dict[str, float] = {
        "min_backoff": 0.05,
        "max_backoff": 0.2,
        "request_timeout": 0.25,
    }
    options.update(kwargs)
    return VeDirectClient(
        str(link),
        on_block=recorder.on_block,
        on_hex=recorder.on_hex,
        on_connection=recorder.on_connection,
        **options,  # type: ignore[arg-type]
    )


def get_reply(register: int, value: bytes, flags: int = 0) -> Answer:
    """Answer get/set for ``register`` like the device would."""

    def answer(request: HexMessage) -> bytes | None:
        if request.register != register:
            return None
        if request.command == HexCommand.GET:
            return encode_hex(HexCommand.GET, register, flags, value)
        return encode_hex(HexCommand.SET, register, flags, request.value)

    return answer


# --- tests -------------------------------------------------------------------------------------


async def test_blocks_and_async_hex_from_capture(link: Path) -> None:
    """The SmartSolar capture through a real serial port: 493 blocks, 2 async frames."""
    device = PtyDevice(link)
    recorder = Recorder()
    client = make_client(link, recorder)
    assert client.port == str(link)
    device.stream()
    try:
        async with running(client):
            await client.wait_connected(WAIT)
            assert client.connected is True
            assert recorder.connection == [True]
            device.stop_stream()
            await asyncio.sleep(0.1)
            recorder.blocks.clear()
            data = (CAPTURES / "smartsolar_1.39.dump").read_bytes()
            await device.send(data)
            await recorder.until(lambda: len(recorder.blocks) >= 493 and len(recorder.hex) >= 2)
            expected = TextParser().feed(data)
            assert recorder.blocks == expected
            assert recorder.blocks[0]["V"] == "12810"
            assert [(m.command, m.register) for m in recorder.hex] == [
                (0xA, 0x1050),
                (0xA, 0x104F),
            ]
            # The capture starts inside a block; the synchronised client counts that one.
            assert client.checksum_errors == 1
            assert client.hex_errors == 0
        assert recorder.connection == [True, False]
        assert not client.connected
    finally:
        await device.close()


async def test_get_and_set_retry_after_dropped_request(link: Path) -> None:
    answered: list[int] = []

    def answer(request: HexMessage) -> bytes | None:
        answered.append(request.command)
        if len(answered) in (1, 3):
            return None  # the first get and the first set are lost on the line
        # Noise a real device produces meanwhile: an async frame for the same register and
        # a reply about another register. Neither may satisfy the pending request.
        noise = encode_hex(HexCommand.ASYNC, 0xEDF0, 0, b"\x01\x00") + encode_hex(
            HexCommand.GET, 0xEDD5, 0, b"\xf2\x04"
        )
        return noise + get_reply(0xEDF0, b"\x96\x00")(request)  # type: ignore[operator]

    device = PtyDevice(link, answer)
    device.stream()
    recorder = Recorder()
    client = make_client(link, recorder)
    try:
        async with running(client):
            await client.wait_connected(WAIT)
            assert await client.get(0xEDF0) == b"\x96\x00"  # 15.0 A
            assert device.requests == [b":7F0ED0071\n"] * 2
            assert await client.set(0xEDF0, b"\x64\x00") == b"\x64\x00"  # 10.0 A
            assert device.requests[2:] == [b":8F0ED0064000C\n"] * 2
            await recorder.until(lambda: len(recorder.hex) >= 4)
            assert [(m.command, m.register) for m in recorder.hex] == [
                (0xA, 0xEDF0),
                (0x7, 0xEDD5),
            ] * 2
            assert len(recorder.blocks) > 0  # text keeps flowing during HEX traffic
    finally:
        await device.close()


async def test_flags_error_timeout_and_unknown_command(link: Path) -> None:
    def answer(request: HexMessage) -> bytes | None:
        if request.register == 0x1234:
            return encode_hex(request.command, 0x1234, 0x01)  # unknown id
        if request.register == 0xEDBB and request.command == HexCommand.SET:
            return encode_hex(HexCommand.SET, 0xEDBB, 0x02, request.value)  # read-only
        if request.register == 0x2222:
            return encode_hex(3, value=b"\x07\x00")  # "unknown command 7"
        return None

    device = PtyDevice(link, answer)
    device.stream()
    recorder = Recorder()
    client = make_client(link, recorder, request_timeout=0.15, request_attempts=3)
    try:
        async with running(client):
            await client.wait_connected(WAIT)
            with pytest.raises(VeDirectHexError) as unknown:
                await client.get(0x1234)
            assert unknown.value.flags == 0x01
            with pytest.raises(VeDirectHexError) as read_only:
                await client.set(0xEDBB, b"\x00\x00")
            assert read_only.value.flags == 0x02
            before = len(device.requests)
            with pytest.raises(VeDirectTimeout):
                await client.get(0xEDF0)
            assert device.requests[before:] == [b":7F0ED0071\n"] * 3
            with pytest.raises(VeDirectUnknownCommandError):
                await client.get(0x2222)
            assert isinstance(read_only.value, ProtocolError)
    finally:
        await device.close()


async def test_ping_product_id_and_framing_error_resend(link: Path) -> None:
    replies = {
        b":154\n": [b":4AAAAFD\n", b":51641F9\n"],  # first a framing error, then the reply
        b":451\n": [
            b":1000351\n",  # [VEHEX] example: 0x0300
            encode_hex(1, value=b"\x53\xa0\xff"),  # product id, reserved byte
            encode_hex(1, value=b"\x00\x5f\xa0\xff"),  # instance, product id, reserved
            encode_hex(1, value=b"\x05"),  # too short
        ],
    }

    def answer(request: HexMessage) -> bytes | None:
        return replies[encode_hex(request.command, value=request.value)].pop(0)

    device = PtyDevice(link, answer)
    device.stream()
    recorder = Recorder()
    client = make_client(link, recorder)
    try:
        async with running(client):
            await client.wait_connected(WAIT)
            pong = await client.ping()
            assert (pong.command, pong.value) == (5, b"\x16\x41")  # version 0x4116
            assert device.requests == [b":154\n"] * 2
            assert await client.get_product_id() == 0x0300
            assert await client.get_product_id() == 0xA053
            assert await client.get_product_id() == 0xA05F
            with pytest.raises(ProtocolError):
                await client.get_product_id()  # a single byte is no product id
    finally:
        await device.close()


async def test_unplug_and_replug(link: Path) -> None:
    device = PtyDevice(link)  # never answers HEX
    device.stream()
    recorder = Recorder()
    client = make_client(link, recorder, request_timeout=WAIT)
    try:
        async with running(client):
            await client.wait_connected(WAIT)
            pending = asyncio.create_task(client.get(0xEDF0))
            await asyncio.sleep(0.1)
            await device.close()  # unplug
            await recorder.until(lambda: recorder.connection == [True, False])
            with pytest.raises(VeDirectNotConnected):
                await pending
            with pytest.raises(VeDirectNotConnected):
                await client.get(0xEDF0)
            assert not client.connected
            await asyncio.sleep(0.3)  # a few failed reopen attempts (dangling link)
            device = PtyDevice(link)  # replug: the same path points at a new port
            device.stream()
            await recorder.until(lambda: recorder.connection == [True, False, True])
            await client.wait_connected(WAIT)
            count = len(recorder.blocks)
            await recorder.until(lambda: len(recorder.blocks) > count)
            assert recorder.blocks[-1] == BLOCK_FIELDS
    finally:
        await device.close()


async def test_garbage_is_counted_and_link_recovers(link: Path) -> None:
    device = PtyDevice(link)
    device.stream()
    recorder = Recorder()
    client = make_client(link, recorder)
    try:
        async with running(client):
            await client.wait_connected(WAIT)
            device.stop_stream()
            await asyncio.sleep(0.1)
            corrupted = bytearray(BLOCK)
            corrupted[corrupted.index(b"12800")] = ord("9")
            await device.send(bytes(corrupted) + b":7F0ED0072\n" + bytes(range(58)) * 200)
            device.stream()
            count = len(recorder.blocks)
            await recorder.until(lambda: len(recorder.blocks) >= count + 3)
            assert client.checksum_errors == 1
            assert client.hex_errors == 1  # the HEX line with a bad check byte
            assert recorder.blocks[-1] == BLOCK_FIELDS
            assert recorder.connection == [True]
    finally:
        await device.close()


async def test_silence_reconnects(link: Path) -> None:
    device = PtyDevice(link)
    device.stream()
    recorder = Recorder()
    client = make_client(link, recorder, silence_timeout=0.3)
    try:
        async with running(client):
            await client.wait_connected(WAIT)
            device.stop_stream()
            await recorder.until(lambda: recorder.connection == [True, False])
            with pytest.raises(TimeoutError):
                await client.wait_connected(0.05)
            await asyncio.sleep(0.8)  # reopened sessions that stay silent end as well
            assert recorder.connection == [True, False]
            device.stream()
            await recorder.until(lambda: recorder.connection == [True, False, True])
    finally:
        await device.close()


async def test_port_missing_at_start(link: Path) -> None:
    recorder = Recorder()
    client = make_client(link, recorder)
    device: PtyDevice | None = None
    try:
        async with running(client):
            await asyncio.sleep(0.3)  # the port does not exist yet: retries with backoff
            assert recorder.connection == []
            with pytest.raises(VeDirectNotConnected):
                await client.ping()
            device = PtyDevice(link)
            device.stream()
            await client.wait_connected(WAIT)
            assert recorder.connection == [True]
    finally:
        if device is not None:
            await device.close()


async def test_failing_callbacks_do_not_stop_the_reader(
    link: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[dict[str, str]] = []

    def on_block(block: dict[str, str]) -> None:
        seen.append(block)
        raise RuntimeError("block consumer bug")

    def on_hex(message: HexMessage) -> None:
        raise RuntimeError("hex consumer bug")

    def on_connection(connected: bool) -> None:
        raise RuntimeError("connection consumer bug")

    device = PtyDevice(link)
    device.stream(BLOCK + b":A0102000543\n")
    client = VeDirectClient(
        str(link),
        on_block=on_block,
        on_hex=on_hex,
        on_connection=on_connection,
        min_backoff=0.05,
    )
    try:
        async with running(client):
            await client.wait_connected(WAIT)
            async with asyncio.timeout(WAIT):
                while len(seen) < 3:
                    await asyncio.sleep(0.02)
            assert client.connected
    finally:
        await device.close()
    assert "block consumer bug" in caplog.text
    assert "hex consumer bug" in caplog.text
    assert "connection consumer bug" in caplog.text


async def test_close_stops_run_and_later_runs(link: Path) -> None:
    device = PtyDevice(link)
    device.stream()
    recorder = Recorder()
    calls: list[str] = []

    async def opener(port: str, baudrate: int) -> Streams:
        calls.append(f"{port}@{baudrate}")
        return await open_serial(port, baudrate)

    client = VeDirectClient(
        str(link),
        on_block=recorder.on_block,
        on_connection=recorder.on_connection,
        open_connection=opener,
    )
    try:
        task = asyncio.create_task(client.run())
        await client.wait_connected(WAIT)
        await client.close()  # ends run() without cancelling it
        async with asyncio.timeout(WAIT):
            await task
        assert recorder.connection == [True, False]
        assert calls == [f"{link}@19200"]
        await client.run()  # a closed client does not reopen
        assert calls == [f"{link}@19200"]
        await client.close()
    finally:
        await device.close()


async def test_close_during_backoff(link: Path) -> None:
    client = VeDirectClient(str(link), on_block=lambda block: None, min_backoff=30.0)
    task = asyncio.create_task(client.run())
    await asyncio.sleep(0.2)  # open failed (no such port), now sleeping 30 s
    await client.close()
    async with asyncio.timeout(WAIT):
        await task
    assert task.done()
    assert not client.connected


async def test_client_without_optional_callbacks(link: Path) -> None:
    device = PtyDevice(link)
    device.stream(BLOCK + b":A0102000543\n")
    blocks: list[dict[str, str]] = []
    client = VeDirectClient(str(link), on_block=blocks.append)
    try:
        async with running(client):
            await client.wait_connected(WAIT)
            await client.wait_connected(WAIT)  # returns at once when connected
            async with asyncio.timeout(WAIT):
                while len(blocks) < 2:
                    await asyncio.sleep(0.02)
            assert blocks[-1] == BLOCK_FIELDS
    finally:
        await device.close()


async def test_close_while_the_port_is_opening(link: Path) -> None:
    device = PtyDevice(link)
    device.stream()
    gate = asyncio.Event()

    async def slow_open(
        port: str, baudrate: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        await gate.wait()
        return await open_serial(port, baudrate)

    recorder = Recorder()
    client = VeDirectClient(
        str(link),
        on_block=recorder.on_block,
        on_connection=recorder.on_connection,
        open_connection=slow_open,
    )
    try:
        task = asyncio.create_task(client.run())
        await asyncio.sleep(0.05)
        closing = asyncio.create_task(client.close())
        await asyncio.sleep(0.05)
        gate.set()  # the port opens after close() was called: it must be closed at once
        async with asyncio.timeout(WAIT):
            await closing
            await task
        assert recorder.connection == []
        assert recorder.blocks == []
    finally:
        await device.close()
