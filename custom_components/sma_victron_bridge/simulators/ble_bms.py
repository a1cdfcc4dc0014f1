"""Bluetooth battery management systems without a radio: JK, JBD and Daly behind bleak's seam.

The Bluetooth BMS kind runs ``aiobmsble`` (the library behind the BMS_BLE integration) unchanged;
tests, the ``jk_ble``/``jbd_ble``/``daly_ble`` capture decoder and the demo need a BMS on the other
end of its bleak connection that answers the way the hardware does, byte for byte. This module
provides that peer and the bleak client backend that reaches it:

* :class:`SimulatedBleakBackend` is a bleak client *backend* (``BaseBleakClient``). It finds its
  peer by Bluetooth address in a process-wide registry (:func:`register_peer`), offers the peer's
  GATT table, and passes writes, reads and notifications through. It works wherever bleak takes
  a backend: ``BleakClient(device, backend=SimulatedBleakBackend)`` and, unchanged, as the
  ``client`` of Home Assistant's ``HaBluetoothConnector`` for a connectable remote scanner, where
  habluetooth builds it as ``client(device, disconnected_callback=..., services=..., timeout=...,
  bluez={})`` and connects it with ``connect(pair, timeout=..., dangerous_use_bleak_cache=...)``.
* :func:`aiobmsble_on_simulated_peers` points ``aiobmsble.basebms`` at :class:`SimulatedBleakClient`
  (bleak's ``BleakClient`` on this backend) for code outside Home Assistant: aiobmsble builds its
  ``BleakClient`` and calls bleak-retry-connector's ``establish_connection`` with the name it
  imported from bleak when ``aiobmsble.basebms`` was first imported, so only that module global
  decides which client it uses. Never use it inside Home Assistant: there the bluetooth
  integration's own wrapper must stay in place so proxies and adapters are chosen by HA.
* The peers - :class:`JkBlePeer` (JK02, 24S or 32S layout by firmware), :class:`JbdBlePeer` and
  :class:`DalyBlePeer` (Modbus ``D2``, and ``0x81``/``51`` replays) - answer from a
  :class:`BleBatteryState` that lives a simulated solar day (shared clock of
  :mod:`.day_clock`), or in ``replay`` mode with captured frames.

Fault knobs on every peer (plain attributes, changeable at any time): ``latency`` (seconds before
a connection completes and before each reply's first notification), ``split_at`` (byte positions
at which every reply is cut into notifications; default: the module's own notification size,
``chunk_size``), ``noise`` (notifications of any bytes sent ahead of every reply), ``script``
(a write, byte for byte, mapped to the notifications sent for it exactly as given: a captured
notification stream replayed as it was received),
``drop_after_notifications`` (the link drops once that many more notifications
went out, mid-reply included), ``refuse_connections`` (out of range: connecting raises bleak's
``BleakDeviceNotFoundError``), :meth:`BlePeer.drop_link` and :meth:`BlePeer.inject` (any bytes as
a notification). ``connections`` counts the links currently up, so a test can prove a client
left none behind.

Notifications go out through the running loop (one timer per peer, in order), never from inside
the host's write, as a Bluetooth stack delivers them. Nothing here starts a task or a thread, and
a dropped or closed link cancels everything still queued for it.

Byte layouts (sources; facts only):
  JK02: syssi/esphome-jk-bms components/jk_bms_ble/jk_bms_ble.cpp (decode_jk02_cell_info_,
  decode_device_info_, decode_jk02_settings_) and docs/protocol-design-ble.md; the 24S/32S offsets
  as summarised in testdata/README.md and aiobmsble bms/jikong_bms.py (temperature sensor mask at
  214, sensor positions 144/162/164/254/256/258 on 32S).
  JBD: the JBD RS485/UART document (same frames over BLE), the FF AA login of newer BLE modules
  from syssi/esphome-jbd-bms btsnoop logs.
  Daly: Modbus register map of the D2 protocol, syssi/esphome-daly-bms
  docs/protocol-register-map.md, as read by aiobmsble bms/daly_bms.py (status at 0x00, MOSFET
  temperature at 0x42, version at 0xA9).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
import contextlib
from dataclasses import dataclass
import itertools
import random
import struct
import time
from typing import TYPE_CHECKING, Any, ClassVar, Final

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.device import BLEDevice
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError
from bleak.uuids import normalize_uuid_str

from ..protocols import ProtocolError, jbd
from ..protocols.bms_common import crc16_modbus
from .battery import BLOCKS_CHARGE, BLOCKS_DISCHARGE, SimulatedPack

if TYPE_CHECKING:
    from bleak.args import SizedBuffer
    from bleak.backends.descriptor import BleakGATTDescriptor

__all__ = [
    "BleBatteryState",
    "BlePeer",
    "DalyBlePeer",
    "GattCharacteristicSpec",
    "GattServiceSpec",
    "JbdBlePeer",
    "JkBlePeer",
    "SimulatedBleakBackend",
    "SimulatedBleakClient",
    "aiobmsble_on_simulated_peers",
    "jk_cell_info_frame",
    "jk_device_info_frame",
    "jk_ready_frame",
    "jk_settings_frame",
    "register_peer",
    "registered_peer",
]

_MTU: Final = 23
_ATT_PAYLOAD: Final = _MTU - 3  # bytes one notification carries at the default MTU

# --- registry ------------------------------------------------------------------------------

_PEERS: dict[str, BlePeer] = {}


def _key(address: str) -> str:
    return address.upper()


def register_peer(address: str, peer: BlePeer) -> Callable[[], None]:
    """Put ``peer`` in range at ``address``; returns the function that takes it away again.

    Taking it away drops its links (the device went out of range). One peer per address.
    """
    key = _key(address)
    present = _PEERS.get(key)
    if present is not None and present is not peer:
        raise ValueError(f"a simulated peer is already registered at {address}")
    _PEERS[key] = peer

    def unregister() -> None:
        if _PEERS.get(key) is peer:
            del _PEERS[key]
            peer.drop_link()

    return unregister


def registered_peer(address: str) -> BlePeer | None:
    """The peer registered at ``address``, if any."""
    return _PEERS.get(_key(address))


# --- GATT table ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GattCharacteristicSpec:
    """One characteristic of a peer: 16-bit or 128-bit UUID and bleak property names."""

    uuid: str
    properties: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GattServiceSpec:
    """One primary service of a peer."""

    uuid: str
    characteristics: tuple[GattCharacteristicSpec, ...]


def _max_write_without_response() -> int:
    return _ATT_PAYLOAD


def _service_collection(specs: Sequence[GattServiceSpec]) -> BleakGATTServiceCollection:
    """The bleak view of a GATT table (handles numbered as a server would: service, then values)."""
    collection = BleakGATTServiceCollection()
    handle = 0
    for spec in specs:
        handle += 1
        service = BleakGATTService(None, handle, normalize_uuid_str(spec.uuid))
        collection.add_service(service)
        for char_spec in spec.characteristics:
            handle += 2  # the declaration, then the value handle bleak addresses
            properties: list[Any] = list(char_spec.properties)
            collection.add_characteristic(
                BleakGATTCharacteristic(
                    None,
                    handle,
                    normalize_uuid_str(char_spec.uuid),
                    properties,
                    _max_write_without_response,
                    service,
                )
            )
    return collection


# --- the bleak backend ---------------------------------------------------------------------


class SimulatedBleakBackend(BaseBleakClient):
    """A bleak client backend whose remote device is the peer registered at its address.

    Constructor contract (bleak's and habluetooth's): ``(address_or_ble_device, **kwargs)`` with
    ``timeout`` and ``disconnected_callback`` (a zero-argument callable, called only when the
    *peer* ends the link), everything else accepted and ignored (``services``, ``bluez``,
    ``winrt``, ``pair``, bleak-retry-connector's markers). ``connect`` raises
    ``BleakDeviceNotFoundError`` when no peer is registered or the peer refuses (out of range)
    and ``BleakError`` when the peer has no free connection slot; I/O on a link that is down
    raises ``BleakError`` as bleak's backends do.
    """

    def __init__(self, address_or_ble_device: BLEDevice | str, **kwargs: Any) -> None:
        """Remember the address; nothing connects before :meth:`connect`."""
        kwargs.setdefault("timeout", 10.0)
        super().__init__(address_or_ble_device, **kwargs)
        self._peer: BlePeer | None = None
        self._callbacks: dict[str, NotifyCallback] = {}

    @property
    def name(self) -> str:
        """The device name as bleak reports it without a name: the address."""
        return self.address

    @property
    def mtu_size(self) -> int:
        """The default ATT MTU (the peers send 20-byte notifications unless told otherwise)."""
        return _MTU

    @property
    def peer(self) -> BlePeer | None:
        """The peer of the current connection (None while disconnected)."""
        return self._peer

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        """Connect to the registered peer (``pair`` is ignored: these BMSs do not bond)."""
        if self._peer is not None:
            return
        peer = _PEERS.get(_key(self.address))
        if peer is None:
            raise BleakDeviceNotFoundError(
                self.address, f"Device with address {self.address} was not found."
            )
        await peer.accept(self)
        self.services = _service_collection(peer.gatt_services)
        self._peer = peer

    async def disconnect(self) -> None:
        """Close the link (idempotent; the disconnected callback is not called for this)."""
        peer, self._peer = self._peer, None
        self._callbacks.clear()
        if peer is not None:
            peer.release(self)

    def link_lost(self) -> None:
        """The peer ended the link: forget it and tell bleak's client, as a radio would."""
        if self._peer is None:
            return
        self._peer = None
        self._callbacks.clear()
        if self._disconnected_callback is not None:
            self._disconnected_callback()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to do: the simulated BMSs need no bonding."""

    async def unpair(self) -> None:
        """Nothing to do: the simulated BMSs need no bonding."""

    @property
    def is_connected(self) -> bool:
        """Whether the link to the peer is up."""
        return self._peer is not None

    def _linked_peer(self) -> BlePeer:
        if self._peer is None:
            raise BleakError("Not connected")
        return self._peer

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        """Read a characteristic's value from the peer."""
        return bytearray(self._linked_peer().read(characteristic.uuid))

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        """The simulated tables have no descriptors."""
        raise BleakError("the simulated peer has no readable descriptors")

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        """Hand a write to the peer (with response: after one round trip of ``latency``)."""
        await self._linked_peer().receive(self, characteristic.uuid, bytes(data), response)

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        """The simulated tables have no descriptors."""
        raise BleakError("the simulated peer has no writable descriptors")

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        """Subscribe ``callback`` to the characteristic's notifications."""
        self._linked_peer()
        if not {"notify", "indicate"} & set(characteristic.properties):
            raise BleakError(f"characteristic {characteristic.uuid} does not notify")
        self._callbacks[characteristic.uuid] = callback

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        """Unsubscribe from the characteristic."""
        self._callbacks.pop(characteristic.uuid, None)

    def deliver(self, uuid: str, data: bytes) -> None:
        """One notification from the peer (dropped when nobody subscribed, as on air)."""
        callback = self._callbacks.get(uuid)
        if callback is not None:
            callback(bytearray(data))


class SimulatedBleakClient(BleakClient):
    """bleak's own ``BleakClient``, always on :class:`SimulatedBleakBackend` (outside HA only)."""

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        disconnected_callback: Callable[[BleakClient], None] | None = None,
        services: Iterable[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Build the client; a ``backend`` argument is replaced by the simulated one."""
        kwargs["backend"] = SimulatedBleakBackend
        super().__init__(address_or_ble_device, disconnected_callback, services, **kwargs)


_patch_depth = 0
_patched_from: object = None


@contextlib.contextmanager
def aiobmsble_on_simulated_peers() -> Iterator[None]:
    """Let ``aiobmsble`` reach the registered peers instead of a radio, for the ``with`` block.

    For plain-Python use only (tests of the pure packages, the capture decoder): it replaces the
    ``BleakClient`` name inside ``aiobmsble.basebms`` - both what a BMS instance builds in its
    constructor and the ``client_class`` it hands to ``establish_connection`` - and restores the
    previous one on exit. Nested and overlapping blocks restore only when the last one ends. Inside
    Home Assistant leave aiobmsble alone: register a remote scanner whose connector's client is
    :class:`SimulatedBleakBackend` instead, so HA's own client wrapper picks the route.
    """
    global _patch_depth, _patched_from  # noqa: PLW0603 - one process-wide switch by design
    from aiobmsble import basebms  # type: ignore[import-untyped]

    if _patch_depth == 0:
        _patched_from = basebms.BleakClient
        basebms.BleakClient = SimulatedBleakClient
    _patch_depth += 1
    try:
        yield
    finally:
        _patch_depth -= 1
        if _patch_depth == 0:
            basebms.BleakClient = _patched_from
            _patched_from = None


# --- the battery ---------------------------------------------------------------------------


class BleBatteryState(SimulatedPack):
    """The pack behind a simulated Bluetooth BMS: a :class:`~.battery.SimulatedPack`.

    Plain, scriptable attributes as on every simulated pack (``cell_voltages``, ``current``,
    ``temperatures``, ``mosfet_temperature``, ``soc``, ``cycles``, ``charge_fet``/
    ``discharge_fet``, ``protections``, ``balancing``, ``frozen``), plus ``problem_code``: the
    BMS's raw error/alarm word (0 = none) as the Bluetooth frames carry it. A Bluetooth BMS runs
    no task: the peers call :meth:`~.battery.SimulatedPack.advance` before they answer, so the
    pack moves by the real time passed (times ``time_scale``) between requests.
    """

    def __init__(
        self,
        *,
        cells: int = 16,
        capacity_ah: float = 280.0,
        soc: float = 60.0,
        seed: int | None = None,
        start_time_of_day: float | None = None,
        time_scale: float = 1.0,
        frozen: bool = False,
    ) -> None:
        """Build a pack at ``soc`` with cells spread a few mV apart."""
        super().__init__(
            cells=cells,
            capacity_ah=capacity_ah,
            soc=soc,
            rng=random.Random(seed),
            start_time_of_day=start_time_of_day,
            time_scale=time_scale,
            frozen=frozen,
            temperatures=(24.0, 23.5),
            mosfet_temperature=26.0,
            cycles=7,
        )
        self.problem_code = 0


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


# --- the peer base -------------------------------------------------------------------------


class BlePeer:
    """A Bluetooth device on the far side of :class:`SimulatedBleakBackend` links.

    Subclasses give the GATT table (``gatt_services``), the characteristic they notify on
    (``notify_uuid``), the module's notification size (``chunk_size``) and :meth:`_answer`, which
    turns one write into the reply frames. The base class owns links, the ordered notification
    queue and the fault knobs described in the module docstring. ``writes`` records every
    ``(characteristic uuid, bytes)`` received, ``connect_count`` every link accepted.
    """

    gatt_services: ClassVar[tuple[GattServiceSpec, ...]] = ()
    notify_uuid: ClassVar[str] = ""
    default_chunk_size: ClassVar[int] = _ATT_PAYLOAD

    def __init__(
        self,
        *,
        latency: float = 0.0,
        chunk_size: int | None = None,
        split_at: Sequence[int] | None = None,
        refuse_connections: bool = False,
        max_connections: int = 1,
        battery: BleBatteryState | None = None,
    ) -> None:
        """Set the link behaviour; the peer is reachable once registered."""
        if latency < 0:
            raise ValueError("latency must not be negative")
        self.latency = latency
        self.chunk_size = chunk_size or self.default_chunk_size
        if self.chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        self.split_at: tuple[int, ...] | None = None if split_at is None else tuple(split_at)
        self.refuse_connections = refuse_connections
        self.max_connections = max_connections
        self.drop_after_notifications: int | None = None
        self.noise: tuple[bytes, ...] = ()
        self.script: dict[bytes, tuple[bytes, ...]] = {}
        self.battery = battery if battery is not None else BleBatteryState()
        self.writes: list[tuple[str, bytes]] = []
        self.connect_count = 0
        self.notifications_sent = 0
        self._links: list[SimulatedBleakBackend] = []
        self._notify_char = normalize_uuid_str(self.notify_uuid) if self.notify_uuid else ""
        self._queue: deque[tuple[float, SimulatedBleakBackend, bytes]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._last_due = 0.0

    # -- links ------------------------------------------------------------------------------

    @property
    def connections(self) -> int:
        """Links currently up."""
        return len(self._links)

    @property
    def queued_notifications(self) -> int:
        """Notifications waiting to go out."""
        return len(self._queue)

    async def accept(self, link: SimulatedBleakBackend) -> None:
        """A central connects (called by the backend)."""
        if self.refuse_connections:
            raise BleakDeviceNotFoundError(
                link.address, f"Device with address {link.address} was not found."
            )
        if len(self._links) >= self.max_connections:
            raise BleakError("No backend with an available connection slot")
        if self.latency > 0:
            await asyncio.sleep(self.latency)
            if self.refuse_connections:
                raise BleakDeviceNotFoundError(link.address, "device went out of range")
        self._links.append(link)
        self.connect_count += 1
        self._on_connect(link)

    def release(self, link: SimulatedBleakBackend) -> None:
        """A central disconnects (called by the backend): forget what was queued for it."""
        if link not in self._links:
            return
        self._links.remove(link)
        if any(item[1] is link for item in self._queue):
            self._queue = deque(item for item in self._queue if item[1] is not link)
        if not self._queue and self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._on_disconnect(link)

    def drop_link(self) -> None:
        """The device goes away now (out of range, reset): every link drops, mid-reply too."""
        for link in list(self._links):
            self.release(link)
            link.link_lost()

    def _on_connect(self, link: SimulatedBleakBackend) -> None:
        """Per-link state of a subclass starts here."""

    def _on_disconnect(self, link: SimulatedBleakBackend) -> None:
        """Per-link state of a subclass ends here."""

    # -- traffic ----------------------------------------------------------------------------

    def read(self, uuid: str) -> bytes:
        """The value of a readable characteristic (none by default)."""
        raise BleakError(f"characteristic {uuid} is not readable")

    async def receive(
        self, link: SimulatedBleakBackend, uuid: str, data: bytes, response: bool
    ) -> None:
        """A write from a central: record it, answer it."""
        if response and self.latency > 0:
            await asyncio.sleep(self.latency)  # the write response travels back first
        if link not in self._links:
            raise BleakError("Not connected")
        self.writes.append((uuid, data))
        scripted = self.script.get(data)
        if scripted is not None:
            for index, notification in enumerate(scripted):
                delay = self.latency if index == 0 else 0.0
                self._queue_notification(link, notification, delay=delay)
            return
        self.battery.advance()
        for reply in self._answer(link, uuid, data):
            self._send(link, reply)

    def _answer(self, link: SimulatedBleakBackend, uuid: str, data: bytes) -> list[bytes]:
        """Reply frames for one write (none by default)."""
        return []

    def inject(self, data: bytes) -> None:
        """Notify arbitrary bytes on every link (noise, garbage, a hand-made frame)."""
        for link in self._links:
            self._queue_notification(link, bytes(data), delay=self.latency)

    def _chunks(self, data: bytes) -> list[bytes]:
        if self.split_at is not None:
            cuts = sorted({cut for cut in self.split_at if 0 < cut < len(data)})
            edges = [0, *cuts, len(data)]
            return [data[a:b] for a, b in itertools.pairwise(edges)]
        size = self.chunk_size
        return [data[i : i + size] for i in range(0, len(data), size)] or [b""]

    def _send(self, link: SimulatedBleakBackend, frame: bytes) -> None:
        """Queue one reply behind ``noise``, cut into notifications; the first waits ``latency``."""
        chunks = [*self.noise, *self._chunks(frame)]
        for index, chunk in enumerate(chunks):
            self._queue_notification(link, chunk, delay=self.latency if index == 0 else 0.0)

    def _queue_notification(self, link: SimulatedBleakBackend, data: bytes, delay: float) -> None:
        loop = asyncio.get_running_loop()
        due = max(loop.time() + delay, self._last_due)
        self._last_due = due
        self._queue.append((due, link, data))
        self._arm(loop)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is None and self._queue:
            self._timer = loop.call_at(self._queue[0][0], self._deliver_next)

    def _deliver_next(self) -> None:
        self._timer = None
        _due, link, data = self._queue.popleft()
        if link in self._links:
            if self.drop_after_notifications is not None:
                if self.drop_after_notifications <= 0:
                    self.drop_after_notifications = None
                    self.release(link)
                    link.link_lost()
                    self._arm(asyncio.get_running_loop())
                    return
                self.drop_after_notifications -= 1
            self.notifications_sent += 1
            link.deliver(self._notify_char, data)
        self._arm(asyncio.get_running_loop())


# --- JK ------------------------------------------------------------------------------------

JK_FRAME_LENGTH: Final = 300
JK_HEADER: Final = b"\x55\xaa\xeb\x90"
JK_COMMAND_HEADER: Final = b"\xaa\x55\x90\xeb"
JK_AT: Final = b"AT\r\n"
JK_TYPE_SETTINGS: Final = 0x01
JK_TYPE_CELL_INFO: Final = 0x02
JK_TYPE_DEVICE_INFO: Final = 0x03
JK_TYPE_READY: Final = 0xC8
JK_CMD_CELL_INFO: Final = 0x96
JK_CMD_DEVICE_INFO: Final = 0x97
JK_CMD_CHARGE_SWITCH: Final = 0x1D
JK_CMD_DISCHARGE_SWITCH: Final = 0x1E
_JK_BASE_24S: Final = 118  # pack voltage: the start of the block that moves by 32 on 32S
_JK_BASE_32S: Final = 150


def _switch(
    battery: BleBatteryState, *, charge: bool | None = None, discharge: bool | None = None
) -> bool:
    """Apply a host's FET request as the BMS does; False if any part was refused.

    Switching off always works; switching on is refused (the switch stays as it was) while a
    protection holds that FET off, as on the simulated wired BMSes (``simulators/bms.py``).
    """
    accepted = True
    if charge is not None:
        if charge and battery.protections & BLOCKS_CHARGE:
            accepted = False
        else:
            battery.charge_fet = charge
    if discharge is not None:
        if discharge and battery.protections & BLOCKS_DISCHARGE:
            accepted = False
        else:
            battery.discharge_fet = discharge
    return accepted


def _sum8(data: bytes | bytearray) -> int:
    return sum(data) & 0xFF


def _jk_finish(frame: bytearray) -> bytes:
    frame[JK_FRAME_LENGTH - 1] = _sum8(frame[: JK_FRAME_LENGTH - 1])
    return bytes(frame)


def _jk_frame(frame_type: int, counter: int) -> bytearray:
    frame = bytearray(JK_FRAME_LENGTH)
    frame[0:4] = JK_HEADER
    frame[4] = frame_type
    frame[5] = counter & 0xFF
    return frame


def _text(value: str, size: int) -> bytes:
    return value.encode("ascii", "replace")[:size].ljust(size, b"\x00")


def jk_ready_frame() -> bytes:
    """The 20-byte "BMS ready" frame a JK BLE module sends after the first request."""
    frame = bytearray(JK_COMMAND_HEADER + bytes((JK_TYPE_READY, 0x01, 0x01)) + bytes(13))
    frame[19] = _sum8(frame[:19])
    return bytes(frame)


def jk_device_info_frame(
    *,
    model: str,
    hardware: str,
    firmware: str,
    serial_number: str,
    name: str,
    uptime_s: int = 0,
    power_on_count: int = 1,
    counter: int = 0,
) -> bytes:
    """A JK02 device info frame (type 0x03): null-padded ASCII fields at fixed offsets."""
    frame = _jk_frame(JK_TYPE_DEVICE_INFO, counter)
    frame[6:22] = _text(model, 16)
    frame[22:30] = _text(hardware, 8)
    frame[30:38] = _text(firmware, 8)
    struct.pack_into("<II", frame, 38, uptime_s & 0xFFFFFFFF, power_on_count & 0xFFFFFFFF)
    frame[46:62] = _text(name, 16)
    frame[62:78] = _text("1234", 16)  # the device passcode
    frame[78:86] = _text("240101", 8)  # manufacturing date
    frame[86:97] = _text(serial_number, 11)
    frame[97:102] = _text("0000", 5)
    frame[102:118] = _text("Input Userdata", 16)
    frame[118:134] = _text("123456", 16)  # the setup passcode
    return _jk_finish(frame)


def jk_settings_frame(
    *,
    cells: int,
    capacity_ah: float,
    charge_switch: bool,
    discharge_switch: bool,
    balancer_switch: bool = True,
    counter: int = 0,
) -> bytes:
    """A JK02 settings frame (type 0x01): u32 little-endian fields from byte 6 (mV, mA, 0.1 °C)."""
    frame = _jk_frame(JK_TYPE_SETTINGS, counter)
    values = {
        6: 3000,  # smart sleep voltage, mV
        10: 2600,  # cell under-voltage protection
        14: 2800,  # ... recovery
        18: 3650,  # cell over-voltage protection
        22: 3400,  # ... recovery
        26: 10,  # balance trigger voltage difference
        46: 2500,  # power off voltage
        50: 150_000,  # max charge current, mA
        62: 150_000,  # max discharge current, mA
        78: 2000,  # max balance current
        82: 700,  # charge over-temperature protection, 0.1 °C
        114: cells,
        118: int(charge_switch),
        122: int(discharge_switch),
        126: int(balancer_switch),
        130: round(capacity_ah * 1000),  # nominal capacity, mAh
        134: 3350,  # balance starting voltage
    }
    for position, value in values.items():
        struct.pack_into("<I", frame, position, value & 0xFFFFFFFF)
    return _jk_finish(frame)


def _jk_temperature(celsius: float) -> int:
    return _clamp(round(celsius * 10), -0x8000, 0x7FFF)


def jk_cell_info_frame(
    battery: BleBatteryState,
    *,
    layout_32s: bool,
    firmware_major: int,
    runtime_s: int = 0,
    counter: int = 0,
) -> bytes:
    """A JK02 cell info frame (type 0x02) in the 24S or 32S layout.

    32S (hardware/firmware >= 11) has 32 cell and 32 resistance slots, so the block from the pack
    voltage on starts 32 bytes later (150 instead of 118) and the cell statistics 16 later. The
    MOSFET temperature is at 134 on 24S but 144 on 32S; the error word is u16 at 136 on 24S and
    u32 at 166 on 32S. Temperature sensors present are flagged in the mask byte at base + 64.
    """
    slots = 32 if layout_32s else 24
    base = _JK_BASE_32S if layout_32s else _JK_BASE_24S
    frame = _jk_frame(JK_TYPE_CELL_INFO, counter)
    millivolts = [_clamp(round(v * 1000), 0, 0xFFFF) for v in battery.cell_voltages][:slots]
    for index, mv in enumerate(millivolts):
        struct.pack_into("<H", frame, 6 + 2 * index, mv)
    stats = 6 + 2 * slots  # enabled-cell mask, then average, delta, max and min cell
    struct.pack_into("<I", frame, stats, (1 << len(millivolts)) - 1)
    if millivolts:
        highest = max(range(len(millivolts)), key=millivolts.__getitem__)
        lowest = min(range(len(millivolts)), key=millivolts.__getitem__)
        average = round(sum(millivolts) / len(millivolts))
        struct.pack_into(
            "<HHBB", frame, stats + 4, average, millivolts[highest] - millivolts[lowest],
            highest, lowest,
        )  # fmt: skip
    for index in range(len(millivolts)):  # wire resistances, mOhm
        struct.pack_into("<H", frame, stats + 10 + 2 * index, 60 + index % 7)
    voltage_mv = _clamp(round(battery.voltage * 1000), 0, 0xFFFFFFFF)
    current_ma = _clamp(round(battery.current * 1000), -0x80000000, 0x7FFFFFFF)
    power_mw = abs(round(voltage_mv * current_ma / 1000))
    temperatures = battery.temperatures
    mask = 0
    struct.pack_into("<IIi", frame, base, voltage_mv, power_mw & 0xFFFFFFFF, current_ma)
    sensor_slots: list[tuple[int, int, float | None]]  # (mask bit, position, value)
    first = temperatures[0] if temperatures else None
    second = temperatures[1] if len(temperatures) > 1 else None
    if layout_32s:
        sensor_slots = [(0, 144, battery.mosfet_temperature), (1, base + 12, first)]
        sensor_slots += [(2, base + 14, second), (3, 254, battery.mosfet_temperature)]
        if firmware_major >= 14:
            third = temperatures[2] if len(temperatures) > 2 else None
            fourth = temperatures[3] if len(temperatures) > 3 else None
            sensor_slots += [(4, 256, fourth), (5, 258, third)]
        struct.pack_into("<I", frame, 166, battery.problem_code & 0xFFFFFFFF)
    else:
        sensor_slots = [(0, base + 12, first), (1, base + 14, second)]
        sensor_slots += [(2, 134, battery.mosfet_temperature)]
        struct.pack_into("<H", frame, 136, battery.problem_code & 0xFFFF)
    for bit, position, value in sensor_slots:
        if value is not None:
            struct.pack_into("<h", frame, position, _jk_temperature(value))
            mask |= 1 << bit
    balancing = bool(battery.balancing)
    struct.pack_into(
        "<hBBIIIIBBHIBB",
        frame,
        base + 20,
        _clamp(round(0.8 * 1000), 0, 0x7FFF) if balancing else 0,  # balance current, mA
        1 if balancing else 0,  # balancer action: 1 = charging the low cell
        _clamp(round(battery.soc), 0, 100),
        round(battery.remaining_capacity * 1000),
        round(battery.capacity_ah * 1000),
        max(0, battery.cycles),
        round(battery.cycles * battery.capacity_ah * 1000),  # total cycle capacity, mAh
        100,  # state of health, %
        0,  # precharge
        0,  # user alarm
        runtime_s & 0xFFFFFFFF,
        int(battery.charge_fet),
        int(battery.discharge_fet),
    )
    frame[base + 64] = mask
    return _jk_finish(frame)


def _firmware_major(firmware: str) -> int:
    digits = ""
    for char in firmware:
        if not char.isdigit():
            break
        digits += char
    return int(digits) if digits else 0


class JkBlePeer(BlePeer):
    """A JK (Jikong) BMS with its BLE module: service FFE0, characteristic FFE1.

    Commands are 20-byte ``AA 55 90 EB cmd len value… sum8`` writes (the sum covers the padding,
    so it is checked as sent). ``0x97`` is answered with the device info frame (0x03) - and, on
    the first request of a connection, the ``C8`` "ready" frame behind it, appended to the
    frame's last notification on firmware 19 and later (as captured), on its own before - and
    ``0x96`` with the settings frame (0x01, first request of a connection only) followed by the
    cell info frame (0x02) in the 24S layout for firmware below 11 and the 32S layout from 11 on.
    ``0x1D``/``0x1E`` with a u32 value switch the charge/discharge FET (answered with the settings
    frame; the next cell info frame reports the FET; a switch-on is ignored while a protection
    holds that FET). With ``at_noise`` the
    module's ``AT\\r\\n`` goes out as its own notification before each reply and at the tail of
    its last notification. ``replay`` maps frame types (0x03, 0x01, 0x02, 0xC8) to captured frames
    that are sent instead of the live ones; a type without a capture is not sent.
    """

    gatt_services = (
        GattServiceSpec(
            "ffe0",
            (
                GattCharacteristicSpec(
                    "ffe1", ("read", "write-without-response", "write", "notify")
                ),
            ),
        ),
    )
    notify_uuid = "ffe1"
    default_chunk_size = 128  # JK modules negotiate a large MTU: 128 + rest (captures)

    def __init__(
        self,
        *,
        firmware: str = "19.27",
        hardware: str = "19A",
        model: str = "JK_PB2A16S20P",
        serial_number: str = "5061234567A",
        name: str = "JK-BMS",
        at_noise: bool = False,
        replay: Mapping[int, bytes] | None = None,
        latency: float = 0.0,
        chunk_size: int | None = None,
        split_at: Sequence[int] | None = None,
        refuse_connections: bool = False,
        battery: BleBatteryState | None = None,
    ) -> None:
        """A JK BMS answering with ``firmware``'s layout (see the class docstring)."""
        super().__init__(
            latency=latency,
            chunk_size=chunk_size,
            split_at=split_at,
            refuse_connections=refuse_connections,
            battery=battery,
        )
        self.firmware = firmware
        self.hardware = hardware
        self.model = model
        self.serial_number = serial_number
        self.name = name
        self.at_noise = at_noise
        self.replay: dict[int, bytes] | None = None if replay is None else dict(replay)
        self._counter = 0
        self._started = time.monotonic()
        self._fresh_links: set[int] = set()  # links that have not had their first reply yet
        self._settings_sent: set[int] = set()

    @property
    def layout_32s(self) -> bool:
        """Whether the cell info frame uses the 32S layout (firmware 11 and later)."""
        return _firmware_major(self.firmware) >= 11

    def _on_connect(self, link: SimulatedBleakBackend) -> None:
        self._fresh_links.add(id(link))

    def _on_disconnect(self, link: SimulatedBleakBackend) -> None:
        self._fresh_links.discard(id(link))
        self._settings_sent.discard(id(link))

    def _next_counter(self) -> int:
        self._counter = (self._counter + 1) & 0xFF
        return self._counter

    def _frame(self, frame_type: int) -> bytes | None:
        if self.replay is not None:
            return self.replay.get(frame_type)
        uptime = int(time.monotonic() - self._started)
        if frame_type == JK_TYPE_DEVICE_INFO:
            return jk_device_info_frame(
                model=self.model,
                hardware=self.hardware,
                firmware=self.firmware,
                serial_number=self.serial_number,
                name=self.name,
                uptime_s=uptime,
                counter=self._next_counter(),
            )
        if frame_type == JK_TYPE_SETTINGS:
            return jk_settings_frame(
                cells=len(self.battery.cell_voltages),
                capacity_ah=self.battery.capacity_ah,
                charge_switch=self.battery.charge_fet,
                discharge_switch=self.battery.discharge_fet,
                counter=self._next_counter(),
            )
        if frame_type == JK_TYPE_READY:
            return jk_ready_frame()
        return jk_cell_info_frame(
            self.battery,
            layout_32s=self.layout_32s,
            firmware_major=_firmware_major(self.firmware),
            runtime_s=uptime,
            counter=self._next_counter(),
        )

    def _answer(self, link: SimulatedBleakBackend, uuid: str, data: bytes) -> list[bytes]:
        if (
            len(data) != 20
            or not data.startswith(JK_COMMAND_HEADER)
            or _sum8(data[:19]) != data[19]
        ):
            return []
        command = data[4]
        value = int.from_bytes(data[6:10], "little")
        replies: list[bytes | None] = []
        first = id(link) in self._fresh_links
        self._fresh_links.discard(id(link))
        ready = self._frame(JK_TYPE_READY) if first else None
        if command == JK_CMD_DEVICE_INFO:
            info = self._frame(JK_TYPE_DEVICE_INFO)
            if ready is not None and info is not None and _firmware_major(self.firmware) >= 19:
                info, ready = info + ready, None
            replies.append(info)
        elif command == JK_CMD_CELL_INFO:
            if id(link) not in self._settings_sent:
                self._settings_sent.add(id(link))
                replies.append(self._frame(JK_TYPE_SETTINGS))
            replies.append(self._frame(JK_TYPE_CELL_INFO))
        elif command in (JK_CMD_CHARGE_SWITCH, JK_CMD_DISCHARGE_SWITCH) and self.replay is None:
            if command == JK_CMD_CHARGE_SWITCH:
                _switch(self.battery, charge=bool(value))
            else:
                _switch(self.battery, discharge=bool(value))
            replies.append(self._frame(JK_TYPE_SETTINGS))
        if replies:
            replies.append(ready)  # after the first reply of a connection, whichever it was
        elif first:
            self._fresh_links.add(id(link))  # an unanswered command is not the first request
        frames = [reply for reply in replies if reply is not None]
        if self.at_noise and frames:
            frames = [JK_AT, *frames[:-1], frames[-1] + JK_AT]
        return frames


# --- JBD -----------------------------------------------------------------------------------

JBD_LOGIN_HEADER: Final = b"\xff\xaa"
JBD_LOGIN_COMMAND: Final = 0x15
_JBD_KELVIN_DECI: Final = 2731


def jbd_reply(register: int, data: bytes = b"", status: int = jbd.STATUS_OK) -> bytes:
    """A JBD response frame ``DD reg status len data checksum 77``."""
    body = bytes((status, len(data))) + data
    return bytes((jbd.START, register)) + body + jbd.checksum(body).to_bytes(2, "big") + b"\x77"


def jbd_login_reply(accepted: bool) -> bytes:
    """The ``FF AA 15 01 code sum8`` answer of a BLE module to a password (code 0 = accepted)."""
    body = bytes((JBD_LOGIN_COMMAND, 0x01, 0x00 if accepted else 0x01))
    return JBD_LOGIN_HEADER + body + bytes((_sum8(body),))


def jbd_basic_info(
    battery: BleBatteryState, *, software_version: int = 0x80, protection: int | None = None
) -> bytes:
    """Register 0x03 data: the 23 fixed bytes and one u16 per temperature sensor (0.1 K)."""
    balance = sum(1 << cell for cell in battery.balancing if 0 <= cell < 32)
    temperatures = [
        _clamp(round(value * 10) + _JBD_KELVIN_DECI, 0, 0xFFFF) for value in battery.temperatures
    ]
    head = struct.pack(
        ">HhHHHHHHHBBBBB",
        _clamp(round(battery.voltage * 100), 0, 0xFFFF),
        _clamp(round(battery.current * 100), -0x8000, 0x7FFF),
        _clamp(round(battery.remaining_capacity * 100), 0, 0xFFFF),
        _clamp(round(battery.capacity_ah * 100), 0, 0xFFFF),
        _clamp(battery.cycles, 0, 0xFFFF),
        (2024 - 2000) << 9 | 5 << 5 | 17,  # production date
        balance & 0xFFFF,
        balance >> 16,
        (battery.problem_code if protection is None else protection) & 0xFFFF,
        software_version & 0xFF,
        _clamp(round(battery.soc), 0, 100),
        int(battery.charge_fet) | int(battery.discharge_fet) << 1,
        len(battery.cell_voltages),
        len(temperatures),
    )
    return head + struct.pack(f">{len(temperatures)}H", *temperatures)


class JbdBlePeer(BlePeer):
    """A JBD BMS with its BLE module: service FF00, notify FF01, write FF02.

    Requests are the serial ``DD A5 reg 00 checksum 77`` frames (reassembled across writes);
    answers come in 20-byte notifications. Registers 0x03 (basic info), 0x04 (cells) and 0x05
    (hardware name) are read; 0xE1 (MOSFET control) is written inside factory mode (0x00 with
    ``56 78`` enters it, 0x01 leaves it), each write acknowledged ``DD reg 00 00 00 00 77``; a
    switch-on is refused while a protection holds that FET (acknowledged all the same, the FET
    stays off, as on the real board); anything else gets status 0x80.
    With ``password`` set (the V1.3 modules) nothing is answered before the ``FF AA 15 len
    password sum8`` login, which is acknowledged ``FF AA 15 01 00`` (``01`` for a wrong one).
    ``replay`` maps registers to captured response frames sent instead of the live ones.
    """

    gatt_services = (
        GattServiceSpec(
            "ff00",
            (
                GattCharacteristicSpec("ff01", ("read", "notify")),
                GattCharacteristicSpec("ff02", ("write-without-response", "write")),
            ),
        ),
    )
    notify_uuid = "ff01"

    def __init__(
        self,
        *,
        hardware: str = "JBD-SP04S034-L4S-200A-B-U",
        software_version: int = 0x80,
        password: str | None = None,
        replay: Mapping[int, bytes] | None = None,
        latency: float = 0.0,
        chunk_size: int | None = None,
        split_at: Sequence[int] | None = None,
        refuse_connections: bool = False,
        battery: BleBatteryState | None = None,
    ) -> None:
        """A JBD BMS (see the class docstring)."""
        super().__init__(
            latency=latency,
            chunk_size=chunk_size,
            split_at=split_at,
            refuse_connections=refuse_connections,
            battery=battery if battery is not None else BleBatteryState(cells=4),
        )
        self.hardware = hardware
        self.software_version = software_version
        self.password = password
        self.replay: dict[int, bytes] | None = None if replay is None else dict(replay)
        self._assemblers: dict[int, jbd.FrameAssembler] = {}
        self._logged_in: set[int] = set()
        self._factory: set[int] = set()  # links in factory mode

    def _on_connect(self, link: SimulatedBleakBackend) -> None:
        self._assemblers[id(link)] = jbd.FrameAssembler()

    def _on_disconnect(self, link: SimulatedBleakBackend) -> None:
        self._assemblers.pop(id(link), None)
        self._logged_in.discard(id(link))
        self._factory.discard(id(link))

    def _answer(self, link: SimulatedBleakBackend, uuid: str, data: bytes) -> list[bytes]:
        if data.startswith(JBD_LOGIN_HEADER):
            return self._login(link, data)
        if self.password is not None and id(link) not in self._logged_in:
            return []
        replies: list[bytes] = []
        for frame in self._assemblers[id(link)].feed(data):
            try:
                request = jbd.parse_request(frame)
            except ProtocolError:
                continue
            replies.append(self._register(link, request))
        return replies

    def _login(self, link: SimulatedBleakBackend, data: bytes) -> list[bytes]:
        if len(data) < 5 or data[2] != JBD_LOGIN_COMMAND or len(data) != 5 + data[3]:
            return []
        if _sum8(data[2:-1]) != data[-1]:
            return []
        accepted = self.password is None or data[4:-1] == self.password.encode("ascii")
        if accepted:
            self._logged_in.add(id(link))
        return [jbd_login_reply(accepted)]

    def _register(self, link: SimulatedBleakBackend, request: jbd.JbdRequest) -> bytes:
        register = request.register
        if self.replay is not None:
            return self.replay.get(register) or jbd_reply(register, status=jbd.STATUS_ERROR)
        if request.write:
            return self._write(link, register, request.data)
        if register == jbd.REG_BASIC_INFO:
            return jbd_reply(
                register, jbd_basic_info(self.battery, software_version=self.software_version)
            )
        if register == jbd.REG_CELL_VOLTAGES:
            millivolts = [_clamp(round(v * 1000), 0, 0xFFFF) for v in self.battery.cell_voltages]
            return jbd_reply(register, struct.pack(f">{len(millivolts)}H", *millivolts))
        if register == jbd.REG_MODEL:
            return jbd_reply(register, self.hardware.encode("ascii", "replace")[:31])
        return jbd_reply(register, status=jbd.STATUS_ERROR)

    def _write(self, link: SimulatedBleakBackend, register: int, data: bytes) -> bytes:
        """Factory mode (0x00 with its key, 0x01 to leave) and, inside it, MOSFET control.

        A refused "on" (a protection holds the FET) is acknowledged all the same and leaves the
        FET off, which the next 0x03 answer shows - as on the real board.
        """
        if register == jbd.REG_FACTORY_ENTER and data == jbd.FACTORY_ENTER_KEY:
            self._factory.add(id(link))
            return jbd_reply(register)
        if register == jbd.REG_FACTORY_EXIT and id(link) in self._factory:
            self._factory.discard(id(link))
            return jbd_reply(register)
        if register == jbd.REG_MOSFET_CONTROL and id(link) in self._factory and len(data) == 2:
            code = data[1]
            _switch(self.battery, charge=not code & 0x01, discharge=not code & 0x02)
            return jbd_reply(register)
        return jbd_reply(register, status=jbd.STATUS_ERROR)


# --- Daly ----------------------------------------------------------------------------------

DALY_D2_ADDRESS: Final = 0xD2
DALY_X81_ADDRESS: Final = 0x81
DALY_X81_REPLY: Final = 0x51
DALY_READ: Final = 0x03
DALY_WRITE: Final = 0x06
DALY_REG_STATUS: Final = 0x00
DALY_REG_MOSFET_TEMPERATURE: Final = 0x42
DALY_REG_VERSION: Final = 0xA9
_DALY_MAX_CELLS: Final = 32
_DALY_TEMPERATURE_OFFSET: Final = 40
_DALY_CURRENT_OFFSET: Final = 30000


def daly_read_reply(address: int, registers: Sequence[int]) -> bytes:
    """A Modbus FC 03 reply ``addr 03 n data crc`` (CRC-16/Modbus, low byte first)."""
    data = b"".join((value & 0xFFFF).to_bytes(2, "big") for value in registers)
    frame = bytes((address, DALY_READ, len(data))) + data
    return frame + crc16_modbus(frame).to_bytes(2, "little")


def _ascii_registers(text: str, count: int) -> list[int]:
    raw = text.encode("ascii", "replace")[: 2 * count].ljust(2 * count, b"\x00")
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


class DalyBlePeer(BlePeer):
    """A Daly BMS with its BLE module: service FFF0, notify FFF1, write FFF2.

    Requests are Modbus RTU reads (FC 03) and writes (FC 06, echoed) to the device address
    (0xD2; 0x81 for the newer protocol, whose replies start 0x51). Reads are answered from a
    register image: live, from the battery (status block at 0x00: cells, temperatures + 40,
    0.1 V, current 0.1 A + 30000, SOC 0.1 %, status, remaining 0.1 Ah, counts, cycles, balancer,
    FETs, delta mV, 64-bit alarms; MOSFET temperature at 0x42; version text at 0xA9), or in
    replay mode from ``registers`` (values of captured replies; anything not captured reads 0).
    """

    gatt_services = (
        GattServiceSpec(
            "fff0",
            (
                GattCharacteristicSpec("fff1", ("notify",)),
                GattCharacteristicSpec("fff2", ("write-without-response", "write")),
            ),
        ),
    )
    notify_uuid = "fff1"
    default_chunk_size = 244  # a whole reply per notification: aiobmsble does not reassemble

    def __init__(
        self,
        *,
        address: int = DALY_D2_ADDRESS,
        software_version: str = "B002_111132_03",
        hardware_version: str = "E303-032DG-SMB",
        registers: Mapping[int, int] | None = None,
        latency: float = 0.0,
        chunk_size: int | None = None,
        split_at: Sequence[int] | None = None,
        refuse_connections: bool = False,
        battery: BleBatteryState | None = None,
    ) -> None:
        """A Daly BMS (see the class docstring)."""
        super().__init__(
            latency=latency,
            chunk_size=chunk_size,
            split_at=split_at,
            refuse_connections=refuse_connections,
            battery=battery,
        )
        self.address = address
        self.software_version = software_version
        self.hardware_version = hardware_version
        self.registers: dict[int, int] | None = None if registers is None else dict(registers)
        self.register_writes: list[tuple[int, int]] = []

    @property
    def reply_address(self) -> int:
        """The first byte of a reply (0x51 for requests to 0x81)."""
        return DALY_X81_REPLY if self.address == DALY_X81_ADDRESS else self.address

    def _answer(self, link: SimulatedBleakBackend, uuid: str, data: bytes) -> list[bytes]:
        if len(data) != 8 or data[0] != self.address:
            return []
        if crc16_modbus(data[:6]) != int.from_bytes(data[6:8], "little"):
            return []
        register, value = struct.unpack(">HH", data[2:6])
        if data[1] == DALY_WRITE:
            self.register_writes.append((register, value))
            if self.registers is not None:
                self.registers[register] = value
            return [data]
        if data[1] != DALY_READ or not 0 < value <= 0x7D:
            return []
        image = self.registers if self.registers is not None else self._live_registers()
        values = [image.get(register + offset, 0) for offset in range(value)]
        return [daly_read_reply(self.reply_address, values)]

    def _live_registers(self) -> dict[int, int]:
        battery = self.battery
        registers: dict[int, int] = {}
        cells = [_clamp(round(v * 1000), 0, 0xFFFF) for v in battery.cell_voltages]
        for index, mv in enumerate(cells[:_DALY_MAX_CELLS]):
            registers[index] = mv
        temperatures = [
            _clamp(round(t) + _DALY_TEMPERATURE_OFFSET, 0, 0xFFFF) for t in battery.temperatures
        ]
        for index, raw in enumerate(temperatures[:8]):
            registers[0x20 + index] = raw
        current = battery.current
        status = 1 if current > 0.05 else 2 if current < -0.05 else 0
        registers.update(
            {
                0x28: _clamp(round(battery.voltage * 10), 0, 0xFFFF),
                0x29: _clamp(round(current * 10) + _DALY_CURRENT_OFFSET, 0, 0xFFFF),
                0x2A: _clamp(round(battery.soc * 10), 0, 1000),
                0x2F: status,
                0x30: _clamp(round(battery.remaining_capacity * 10), 0, 0xFFFF),
                0x31: len(cells),
                0x32: len(temperatures),
                0x33: _clamp(battery.cycles, 0, 0xFFFF),
                0x34: int(bool(battery.balancing)),
                0x35: int(battery.charge_fet),
                0x36: int(battery.discharge_fet),
                0x38: (max(cells) - min(cells)) if cells else 0,
                DALY_REG_MOSFET_TEMPERATURE: _clamp(
                    round(battery.mosfet_temperature) + _DALY_TEMPERATURE_OFFSET, 0, 0xFFFF
                ),
            }
        )
        alarms = battery.problem_code & 0xFFFFFFFFFFFFFFFF
        for index in range(4):  # 64-bit alarm word, big-endian over four registers
            registers[0x3A + index] = (alarms >> (48 - 16 * index)) & 0xFFFF
        version = _ascii_registers(self.software_version, 8)
        version += _ascii_registers(self.hardware_version, 8)
        for index, word in enumerate(version):
            registers[DALY_REG_VERSION + index] = word
        return registers
