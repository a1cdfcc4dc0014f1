"""RFCOMM and Speedwire transports over real sockets.

This workplace's CPython was built without Bluetooth headers, so ``socket.AF_BLUETOOTH`` is
missing: the RFCOMM transport must say so clearly. Its stream code is exercised through the
``socket_factory`` seam with ``socket.socketpair()``, and its own connect path with TCP on
127.0.0.1 standing in for the RFCOMM address family (the code only needs a stream socket that
``loop.sock_connect`` can connect). Speedwire runs over real UDP on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
import socket
import struct

import pytest

from custom_components.sma_victron_bridge.protocols import ProtocolError
from custom_components.sma_victron_bridge.protocols.sma_transport import (
    BLUETOOTH_UNAVAILABLE_MESSAGE,
    BluetoothUnavailable,
    RfcommTransport,
    SpeedwireTransport,
    TransportClosed,
    bluetooth_available,
)

ADDRESS = "00:80:25:12:34:56"


# --------------------------------------------------------------------------------------------
# RFCOMM: missing Bluetooth support
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(hasattr(socket, "AF_BLUETOOTH"), reason="this Python has Bluetooth sockets")
async def test_this_python_has_no_bluetooth_sockets() -> None:
    """On this build open() raises BluetoothUnavailable with an explanation."""
    assert not bluetooth_available()
    transport = RfcommTransport(ADDRESS)
    with pytest.raises(BluetoothUnavailable) as raised:
        await transport.open()
    assert str(raised.value) == BLUETOOTH_UNAVAILABLE_MESSAGE
    assert "This Python build lacks Bluetooth socket support" in str(raised.value)
    assert "AF_BLUETOOTH" in str(raised.value)
    assert isinstance(raised.value, ProtocolError)
    assert not transport.is_open


async def test_missing_rfcomm_constant(monkeypatch: pytest.MonkeyPatch) -> None:
    """Either constant missing is enough to refuse (any Python build)."""
    monkeypatch.setattr(socket, "AF_BLUETOOTH", 31, raising=False)
    monkeypatch.delattr(socket, "BTPROTO_RFCOMM", raising=False)
    assert not bluetooth_available()
    with pytest.raises(BluetoothUnavailable, match="Speedwire"):
        await RfcommTransport(ADDRESS).open()


# --------------------------------------------------------------------------------------------
# RFCOMM: stream over a socketpair
# --------------------------------------------------------------------------------------------


@pytest.fixture
async def paired() -> AsyncIterator[tuple[RfcommTransport, socket.socket]]:
    """An opened RFCOMM transport and the peer end of its socketpair."""
    ours, peer = socket.socketpair()
    peer.setblocking(False)
    transport = RfcommTransport(ADDRESS, 1, socket_factory=lambda: ours)
    await transport.open()
    yield transport, peer
    await transport.close()
    peer.close()


async def test_rfcomm_round_trip(paired: tuple[RfcommTransport, socket.socket]) -> None:
    """Bytes go both ways unchanged; the name says where the link goes."""
    transport, peer = paired
    loop = asyncio.get_running_loop()
    assert transport.kind == "bluetooth"
    assert transport.name == "RFCOMM 00:80:25:12:34:56 channel 1"
    assert transport.is_open
    await transport.send(b"\x7e\x14\x00\x6a hello")
    assert await loop.sock_recv(peer, 100) == b"\x7e\x14\x00\x6a hello"
    await loop.sock_sendall(peer, b"reply")
    assert await transport.receive(1.0) == b"reply"


async def test_rfcomm_receive_timeout(paired: tuple[RfcommTransport, socket.socket]) -> None:
    """Nothing within the timeout: TimeoutError, and the link stays usable."""
    transport, peer = paired
    with pytest.raises(TimeoutError):
        await transport.receive(0.02)
    assert transport.is_open
    await asyncio.get_running_loop().sock_sendall(peer, b"late")
    assert await transport.receive(1.0) == b"late"


async def test_rfcomm_peer_closes(paired: tuple[RfcommTransport, socket.socket]) -> None:
    """End of stream: TransportClosed, then the transport is closed."""
    transport, peer = paired
    peer.close()
    with pytest.raises(TransportClosed, match="closed by the peer"):
        await transport.receive(1.0)
    assert not transport.is_open
    with pytest.raises(TransportClosed, match="not open"):
        await transport.receive(1.0)
    with pytest.raises(TransportClosed, match="not open"):
        await transport.send(b"x")


async def test_rfcomm_send_to_a_closed_peer(paired: tuple[RfcommTransport, socket.socket]) -> None:
    """Writing after the peer went away: TransportClosed (EPIPE)."""
    transport, peer = paired
    peer.close()
    with pytest.raises(TransportClosed, match="send failed"):
        await transport.send(b"x" * 100)
    assert not transport.is_open


async def test_rfcomm_reopen_takes_a_new_socket() -> None:
    """open() after close() asks the factory again; close() twice is harmless."""
    pairs: list[tuple[socket.socket, socket.socket]] = []

    def factory() -> socket.socket:
        pairs.append(socket.socketpair())
        return pairs[-1][0]

    transport = RfcommTransport(ADDRESS, socket_factory=factory)
    await transport.open()
    await transport.open()  # reopening closes the first socket
    assert len(pairs) == 2
    assert pairs[0][0].fileno() == -1
    await transport.close()
    await transport.close()
    assert pairs[1][0].fileno() == -1
    for _, peer in pairs:
        peer.close()


async def test_rfcomm_factory_error() -> None:
    """The factory's OSError becomes TransportClosed."""

    def factory() -> socket.socket:
        raise OSError(112, "Host is down")

    with pytest.raises(TransportClosed, match="Host is down"):
        await RfcommTransport(ADDRESS, socket_factory=factory).open()


# --------------------------------------------------------------------------------------------
# RFCOMM: connect path (TCP on 127.0.0.1 standing in for the Bluetooth family)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def tcp_as_rfcomm(monkeypatch: pytest.MonkeyPatch, socket_enabled: None) -> None:
    """Let ``socket.socket(AF_BLUETOOTH, SOCK_STREAM, BTPROTO_RFCOMM)`` make a TCP socket."""
    monkeypatch.setattr(socket, "AF_BLUETOOTH", socket.AF_INET, raising=False)
    monkeypatch.setattr(socket, "BTPROTO_RFCOMM", socket.IPPROTO_TCP, raising=False)


async def test_rfcomm_connects_and_reads(tcp_as_rfcomm: None) -> None:
    """open() connects non-blocking to (address, channel); a reset is TransportClosed."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.setblocking(False)
    port = server.getsockname()[1]
    loop = asyncio.get_running_loop()
    transport = RfcommTransport("127.0.0.1", port)
    await transport.open()
    peer, _ = await loop.sock_accept(server)
    try:
        await transport.send(b"ver\r\n")
        assert await loop.sock_recv(peer, 16) == b"ver\r\n"
        # Abort the TCP connection (RST): the next receive fails with ECONNRESET.
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()
        with pytest.raises(TransportClosed, match="receive failed"):
            await transport.receive(1.0)
    finally:
        await transport.close()
        server.close()


async def test_rfcomm_connect_refused(tcp_as_rfcomm: None) -> None:
    """Nobody listening: TransportClosed naming the link."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(TransportClosed, match=f"cannot connect to RFCOMM 127.0.0.1 channel {port}"):
        await RfcommTransport("127.0.0.1", port).open()


async def test_rfcomm_connect_timeout(tcp_as_rfcomm: None) -> None:
    """A connect that does not finish within connect_timeout: TransportClosed."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    try:
        # Fill the accept backlog so further handshakes stall.
        for _ in range(8):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        transport = RfcommTransport("127.0.0.1", port, connect_timeout=0.05)
        with pytest.raises(TransportClosed, match="cannot connect"):
            await transport.open()
    finally:
        for filler in fillers:
            filler.close()
        server.close()


async def test_rfcomm_socket_cannot_be_created(
    monkeypatch: pytest.MonkeyPatch, socket_enabled: None
) -> None:
    """The kernel refuses the socket (no Bluetooth stack loaded): TransportClosed."""
    monkeypatch.setattr(socket, "AF_BLUETOOTH", socket.AF_INET, raising=False)
    monkeypatch.setattr(socket, "BTPROTO_RFCOMM", socket.IPPROTO_UDP, raising=False)
    with pytest.raises(TransportClosed, match="cannot create an RFCOMM socket"):
        await RfcommTransport(ADDRESS).open()


# --------------------------------------------------------------------------------------------
# Speedwire
# --------------------------------------------------------------------------------------------


class _Echo(asyncio.DatagramProtocol):
    """A UDP peer that answers every datagram with ``b"re:" + datagram``."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.peers: list[tuple[str, int]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.peers.append(addr)
        if data == b"flood":
            for number in range(300):
                self.transport.sendto(b"%d" % number, addr)
        else:
            self.transport.sendto(b"re:" + data, addr)


@pytest.fixture
async def echo(socket_enabled: None) -> AsyncIterator[tuple[_Echo, int]]:
    """An echoing UDP peer on 127.0.0.1 and its port."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
    yield protocol, transport.get_extra_info("sockname")[1]
    transport.close()


async def test_speedwire_round_trip(echo: tuple[_Echo, int]) -> None:
    """One datagram out, one datagram in; the local port option binds the source port."""
    protocol, port = echo
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    local_port = probe.getsockname()[1]
    probe.close()
    transport = SpeedwireTransport("127.0.0.1", port, local_port=local_port)
    assert transport.kind == "speedwire"
    assert transport.name == f"Speedwire 127.0.0.1:{port}"
    await transport.open()
    try:
        await transport.send(b"SMA\x00")
        assert await transport.receive(1.0) == b"re:SMA\x00"
        assert protocol.peers[0][1] == local_port
    finally:
        await transport.close()


async def test_speedwire_timeout_and_closed(echo: tuple[_Echo, int]) -> None:
    """Silence is TimeoutError; a closed transport raises TransportClosed."""
    _, port = echo
    transport = SpeedwireTransport("127.0.0.1", port)
    with pytest.raises(TransportClosed, match="not open"):
        await transport.send(b"x")
    with pytest.raises(TransportClosed, match="not open"):
        await transport.receive(0.01)
    await transport.open()
    opened = transport.is_open
    assert opened
    with pytest.raises(TimeoutError):
        await transport.receive(0.02)
    await transport.close()
    await transport.close()
    assert not transport.is_open
    with pytest.raises(TransportClosed):
        await transport.send(b"x")


async def test_speedwire_closed_while_waiting(echo: tuple[_Echo, int]) -> None:
    """close() wakes a pending receive with TransportClosed."""
    _, port = echo
    transport = SpeedwireTransport("127.0.0.1", port)
    await transport.open()
    waiting = asyncio.create_task(transport.receive(2.0))
    await asyncio.sleep(0.01)
    await transport.close()
    with pytest.raises(TransportClosed, match="was closed"):
        await waiting


async def test_speedwire_flood_is_bounded(echo: tuple[_Echo, int]) -> None:
    """More datagrams than the queue holds: the excess is dropped, the rest read in order."""
    _, port = echo
    transport = SpeedwireTransport("127.0.0.1", port)
    await transport.open()
    try:
        await transport.send(b"flood")
        received = []
        with contextlib.suppress(TimeoutError):
            while True:
                received.append(await transport.receive(0.2))
        assert received[:3] == [b"0", b"1", b"2"]
        assert len(received) == 256
    finally:
        await transport.close()


async def test_speedwire_unreachable_port_looks_silent(socket_enabled: None) -> None:
    """ICMP port unreachable is logged, not fatal: the read simply times out."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    transport = SpeedwireTransport("127.0.0.1", port)
    await transport.open()
    try:
        await transport.send(b"SMA\x00")
        with pytest.raises(TimeoutError):
            await transport.receive(0.1)
        assert transport.is_open
    finally:
        await transport.close()


async def test_speedwire_port_in_use(echo: tuple[_Echo, int]) -> None:
    """Binding a local port that is taken: TransportClosed."""
    _, port = echo
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("0.0.0.0", 0))
    try:
        transport = SpeedwireTransport("127.0.0.1", port, local_port=blocker.getsockname()[1])
        with pytest.raises(TransportClosed, match="cannot open"):
            await transport.open()
    finally:
        blocker.close()
