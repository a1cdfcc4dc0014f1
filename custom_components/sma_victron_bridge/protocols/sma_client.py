"""Async client for SMA Sunny Boy inverters over Bluetooth (RFCOMM) or Speedwire (UDP).

A Sunny Boy answers requests; it pushes nothing a poller needs. So the client has no reader
task: each request takes a lock, sends one packet and reads the link until the matching reply
(same packet id, command with the response bit 0x1) is complete. Everything else arriving
meanwhile - replies to an earlier, timed-out attempt, answers from other inverters of the
plant, network chatter of the Bluetooth piconet, damaged frames - is skipped. A request that
sees no reply within ``request_timeout`` is sent again with a new packet id, ``retries`` times.

Long replies arrive as several level-2 packets whose "fragments left" counter runs down to 0;
on Bluetooth each level-2 packet may itself be split over several level-1 frames. Both are
reassembled here before the records are decoded with :mod:`.sma_bt`.

Connecting follows what SMA's own tools do (see PROTOCOLS.md §5): on Bluetooth wait for the
inverter's hello (asking with ``ver`` if it stays quiet), echo it, read the topology, build the
network for NetID > 1 plants, then - on both links - identify, log everybody off and log on.
A lost link raises :class:`SunnyBoyConnectionLost`; :meth:`SunnyBoyClient.connect` may then be
called again on the same client.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Sequence
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, time as day_time, timedelta, tzinfo
import logging
import time
from typing import Any, Final

from . import ProtocolError
from .sma_bt import (
    ANY_ENDPOINT,
    BROADCAST_ADDRESS,
    CMD_HISTORY_5MIN,
    CMD_HISTORY_DAILY,
    CMD_IDENTIFY,
    CMD_LOGON,
    DEVICE_CLASS_TAGS,
    ERROR_BUSY,
    ERROR_WRONG_PASSWORD,
    L1_CONNECTED,
    L1_GET_VARIABLE,
    L1_HELLO,
    L1_NETWORK_READY,
    L1_PPP_LAST,
    L1_PPP_MORE,
    L1_TOPOLOGY,
    L1_VAR_SIGNAL_STRENGTH,
    L1_VARIABLE_REPLY,
    NO_ADDRESS,
    STATUS_TAGS,
    TOPOLOGY_INVERTER,
    Endpoint,
    L1Packet,
    L1StreamParser,
    L2Packet,
    L2Reassembler,
    Query,
    Record,
    build_history,
    build_identify,
    build_logoff,
    build_logon,
    build_query,
    decode_hello,
    decode_history,
    decode_l2,
    decode_records,
    decode_signal_strength,
    decode_speedwire,
    decode_topology,
    encode_bt_packet,
    encode_get_variable,
    encode_hello_echo,
    encode_l1,
    encode_logon_password,
    encode_speedwire,
    encode_ver_request,
    five_minute_window,
    new_app_endpoint,
)
from .sma_transport import PacketTransport, TransportClosed

__all__ = [
    "DEVICE_TYPE_TAGS",
    "DeviceInfo",
    "FirmwareTooOld",
    "InverterBusy",
    "SpotValues",
    "SunnyBoyClient",
    "SunnyBoyConnectionLost",
    "SunnyBoyError",
    "SunnyBoyTimeout",
    "WrongPassword",
]

_LOGGER = logging.getLogger(__name__)

MIN_PROTOCOL: Final = 4
"""Hello protocol byte of firmware 1.71 and later; older Bluetooth firmware is not supported."""

DAY: Final = 86_400
DAILY_WINDOW_DAYS: Final = 30
IDENTIFY_GATHER: Final = 0.25
"""Seconds to wait for more identify answers on Speedwire, where the plant size is unknown."""
"""Days of daily yield asked per request: keeps each reply to a few fragments."""

NETWORK_STEPS: Final = (b"\x0a\x00\xac", b"\x02\x00", b"\x01\x00\x01")
"""Level-1 get-variable payloads that make a NetID > 1 inverter join its plant network."""

SPOT_QUERIES: Final = (
    Query.ENERGY_PRODUCTION,
    Query.OPERATION_TIME,
    Query.DC_POWER,
    Query.DC_VOLTAGE_CURRENT,
    Query.AC_POWER,
    Query.AC_VOLTAGE_CURRENT,
    Query.GRID_FREQUENCY,
    Query.AC_TOTAL_POWER,
    Query.DEVICE_STATUS,
    Query.GRID_RELAY,
    Query.TEMPERATURE,
)
"""Data blocks read by :meth:`SunnyBoyClient.read_spot_values`, one request each."""

DEVICE_TYPE_TAGS: Final[dict[int, str]] = {
    9071: "SB 2000HF-30",
    9072: "SB 2500HF-30",
    9073: "SB 3000HF-30",
    9074: "SB 3000TL-21",
    9075: "SB 4000TL-21",
    9076: "SB 5000TL-21",
    9165: "SB 3600TL-21",
}
"""Device type attribute tags (LRI 0x00822000) of common Bluetooth Sunny Boys."""


class SunnyBoyError(ProtocolError):
    """Base of the Sunny Boy client's errors."""


class WrongPassword(SunnyBoyError):  # noqa: N818 - public name
    """The inverter refused the log-on (error 0x0100)."""


class InverterBusy(SunnyBoyError):  # noqa: N818 - public name
    """Another application (Sunny Explorer, a data logger) holds the inverter's session.

    Not the user's fault and not a password problem: try again later, do not ask for a new
    password.
    """


class FirmwareTooOld(SunnyBoyError):  # noqa: N818 - public name
    """The inverter's Bluetooth firmware predates 1.71 (hello protocol byte < 4)."""


class SunnyBoyTimeout(SunnyBoyError):  # noqa: N818 - public name
    """The inverter did not answer, not even after the retries."""


class SunnyBoyConnectionLost(SunnyBoyError):  # noqa: N818 - public name
    """The link is down (could not be opened, was closed, or the inverter logged us off)."""


@dataclass(frozen=True, slots=True)
class SpotValues:
    """Live values of one inverter; None where the device reports NaN or lacks the value.

    Units: W, V, A, Hz, Wh, s, °C, % (signal strength, Bluetooth only). The DC tuples are
    aligned with ``dc_strings`` (the inverter's MPP tracker / string numbers, usually 1, 2).
    ``inverter_time`` is the inverter's clock (unix time) from the energy counters.
    """

    ac_power: float | None = None
    ac_power_l1: float | None = None
    ac_power_l2: float | None = None
    ac_power_l3: float | None = None
    ac_voltage_l1: float | None = None
    ac_voltage_l2: float | None = None
    ac_voltage_l3: float | None = None
    ac_current_l1: float | None = None
    ac_current_l2: float | None = None
    ac_current_l3: float | None = None
    grid_frequency: float | None = None
    dc_strings: tuple[int, ...] = ()
    dc_power: tuple[float | None, ...] = ()
    dc_voltage: tuple[float | None, ...] = ()
    dc_current: tuple[float | None, ...] = ()
    energy_today: int | None = None
    energy_total: int | None = None
    operating_time: int | None = None
    feed_in_time: int | None = None
    temperature: float | None = None
    device_status: str | None = None
    grid_relay: str | None = None
    signal_strength: float | None = None
    inverter_time: int | None = None


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """Identity of the inverter: what a device registry entry needs."""

    susy_id: int
    serial: int
    name: str | None
    device_class: str | None
    type_label: str | None
    software_version: str | None
    bt_address: str | None


_SCALAR_FIELDS: Final = frozenset(
    {
        "ac_power",
        "ac_power_l1",
        "ac_power_l2",
        "ac_power_l3",
        "ac_voltage_l1",
        "ac_voltage_l2",
        "ac_voltage_l3",
        "ac_current_l1",
        "ac_current_l2",
        "ac_current_l3",
        "grid_frequency",
        "temperature",
    }
)
_COUNTER_FIELDS: Final = {
    "energy_today": "energy_today",
    "energy_total": "energy_total",
    "operation_time": "operating_time",
    "feed_in_time": "feed_in_time",
}
_DC_FIELDS: Final = frozenset({"dc_power", "dc_voltage", "dc_current"})
_TAG_FIELDS: Final = frozenset({"device_status", "grid_relay"})


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return None


def _first_tag(value: object) -> int | None:
    if isinstance(value, tuple) and value:
        tag = value[0]
        return tag if isinstance(tag, int) else None
    return None


def _tag_name(value: object, names: dict[int, str]) -> str | None:
    tag = _first_tag(value)
    if tag is None:
        return None
    return names.get(tag, f"tag {tag}")


def spot_values_from_records(
    records: Iterable[Record], signal_strength: float | None = None
) -> SpotValues:
    """Fold decoded records of the spot queries into one :class:`SpotValues`.

    The first non-NaN value of a field wins (0x00465000 and 0x00465300 both carry the phase
    currents, depending on the firmware).
    """
    scalars: dict[str, float | None] = {}
    counters: dict[str, int | None] = {}
    tags: dict[str, str | None] = {}
    dc: dict[str, dict[int, float | None]] = {name: {} for name in _DC_FIELDS}
    inverter_time: int | None = None
    for record in records:
        name = record.name
        if name is None:
            continue
        value = record.value
        if name in _SCALAR_FIELDS:
            if scalars.get(name) is None:
                scalars[name] = _number(value)
        elif name in _COUNTER_FIELDS:
            field = _COUNTER_FIELDS[name]
            if counters.get(field) is None:
                counters[field] = value if isinstance(value, int) else None
            if name == "energy_today" and record.timestamp:
                inverter_time = record.timestamp
        elif name in _DC_FIELDS:
            if dc[name].get(record.cls) is None:
                dc[name][record.cls] = _number(value)
        elif name in _TAG_FIELDS and tags.get(name) is None:
            tags[name] = _tag_name(value, STATUS_TAGS)
    strings = tuple(sorted({cls for per_string in dc.values() for cls in per_string}))
    fields: dict[str, Any] = {**scalars, **counters, **tags}
    return SpotValues(
        **fields,
        dc_strings=strings,
        dc_power=tuple(dc["dc_power"].get(cls) for cls in strings),
        dc_voltage=tuple(dc["dc_voltage"].get(cls) for cls in strings),
        dc_current=tuple(dc["dc_current"].get(cls) for cls in strings),
        signal_strength=signal_strength,
        inverter_time=inverter_time,
    )


def _format_address(raw: bytes) -> str:
    return raw[::-1].hex(":").upper()


def day_starts(start: int, end: int, tz: tzinfo = UTC) -> list[int]:
    """Midnights in ``tz`` of every local day that overlaps ``start … end``.

    The inverter keeps its archive by its local clock, and SMA's tools ask for one local day
    per request; a day by UTC would straddle two of the inverter's days. Days around a
    daylight-saving change are 23 or 25 hours long, so midnights are computed, not added.
    """
    day = datetime.fromtimestamp(start, tz).date()
    out: list[int] = []
    while True:
        midnight = int(datetime.combine(day, day_time(0), tz).timestamp())
        if midnight > end:
            return out
        out.append(midnight)
        day += timedelta(days=1)


class SunnyBoyClient:
    """One logged-on connection to one Sunny Boy over a :class:`PacketTransport`."""

    def __init__(
        self,
        transport: PacketTransport,
        password: str,
        *,
        installer: bool = False,
        request_timeout: float = 5.0,
        retries: int = 2,
        local_endpoint: Endpoint | None = None,
    ) -> None:
        """Check the password's shape now (ProtocolError), so a typo fails before any I/O."""
        encode_logon_password(password, installer)
        self._transport = transport
        self._bluetooth = transport.kind == "bluetooth"
        self._password = password
        self._installer = installer
        self._timeout = request_timeout
        self._retries = max(0, retries)
        self._app = local_endpoint if local_endpoint is not None else new_app_endpoint()
        self._lock = asyncio.Lock()
        self._packet_id = 0
        self._connected = False
        self._inverter: Endpoint | None = None
        self._inverters: tuple[Endpoint, ...] = ()
        self._addresses: dict[Endpoint, str] = {}
        self._inverter_address: str | None = None
        self._local_address = NO_ADDRESS
        self._net_id: int | None = None
        self._topology: tuple[tuple[str, int], ...] = ()
        self._parser = L1StreamParser()
        self._reassembler = L2Reassembler()
        self._l1_queue: deque[L1Packet] = deque()

    # ----------------------------------------------------------------------------------------
    # Public state
    # ----------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the link is open and logged on."""
        return self._connected

    @property
    def transport(self) -> PacketTransport:
        """The link this client talks over."""
        return self._transport

    @property
    def local_endpoint(self) -> Endpoint:
        """This application's SUSyID/serial on the SMA data layer."""
        return self._app

    @property
    def inverter(self) -> Endpoint | None:
        """SUSyID/serial of the inverter, known after :meth:`connect`.

        In a plant of several inverters (NetID > 1) this is the one the link goes to; the
        reading methods address it unless they are given another of :attr:`inverters`.
        """
        return self._inverter

    @property
    def inverters(self) -> tuple[Endpoint, ...]:
        """Every inverter that answered the identification: the plant, this link's first."""
        return self._inverters

    @property
    def bt_address(self) -> str | None:
        """Bluetooth address of the inverter (from its hello); None on Speedwire."""
        return self._inverter_address

    @property
    def local_address(self) -> str:
        """Our adapter's Bluetooth address as the inverter reported it (or 00:00:…)."""
        return self._local_address

    @property
    def net_id(self) -> int | None:
        """The plant's Bluetooth NetID from the hello; None on Speedwire."""
        return self._net_id

    @property
    def topology(self) -> tuple[tuple[str, int], ...]:
        """(address, device type) pairs of the Bluetooth network; 0x0101 = inverter."""
        return self._topology

    # ----------------------------------------------------------------------------------------
    # Connection
    # ----------------------------------------------------------------------------------------

    async def connect(self) -> None:
        """(Re)open the link, run the handshake and log on.

        Raises WrongPassword, InverterBusy, FirmwareTooOld, SunnyBoyTimeout,
        SunnyBoyConnectionLost, or
        BluetoothUnavailable (from the transport) - the link is closed again after any error.
        """
        async with self._lock:
            await self._shutdown()
            self._reset()
            try:
                await self._transport.open()
            except TransportClosed as err:
                raise SunnyBoyConnectionLost(str(err)) from err
            try:
                if self._bluetooth:
                    await self._bluetooth_handshake()
                await self._identify()
                await self._send_body(build_logoff(self._app, self._next_packet_id()))
                await self._logon()
            except BaseException:
                await self._shutdown()
                raise
            self._connected = True

    async def close(self) -> None:
        """Log off (best effort) and close the link."""
        async with self._lock:
            if self._connected:
                with contextlib.suppress(SunnyBoyError):
                    await self._send_body(build_logoff(self._app, self._next_packet_id()))
            await self._shutdown()

    def _reset(self) -> None:
        self._inverter = None
        self._inverters = ()
        self._addresses = {}
        self._inverter_address = None
        self._local_address = NO_ADDRESS
        self._net_id = None
        self._topology = ()
        self._parser = L1StreamParser()
        self._reassembler.reset()
        self._l1_queue.clear()

    async def _shutdown(self) -> None:
        self._connected = False
        with contextlib.suppress(OSError, ProtocolError):
            await self._transport.close()

    async def _link_lost(self, err: Exception) -> SunnyBoyConnectionLost:
        await self._shutdown()
        return SunnyBoyConnectionLost(f"{self._transport.name}: {err}")

    def _require_connected(self) -> None:
        if not self._connected:
            raise SunnyBoyConnectionLost(f"{self._transport.name}: not connected")

    # ----------------------------------------------------------------------------------------
    # Reading
    # ----------------------------------------------------------------------------------------

    async def read_spot_values(self, inverter: Endpoint | None = None) -> SpotValues:
        """Read every live value (11 requests, plus the signal strength on Bluetooth)."""
        async with self._lock:
            target = self._target(inverter)
            records: list[Record] = []
            for query in SPOT_QUERIES:
                records.extend(await self._query(query, target))
            signal = await self._read_signal_strength(target) if self._bluetooth else None
        return spot_values_from_records(records, signal)

    async def read_device_info(self, inverter: Endpoint | None = None) -> DeviceInfo:
        """Read the type label and software version."""
        async with self._lock:
            target = self._target(inverter)
            records = await self._query(Query.TYPE_LABEL, target)
            records += await self._query(Query.SOFTWARE_VERSION, target)
        found: dict[str, object] = {}
        for record in records:
            if record.name is not None and record.value is not None:
                found.setdefault(record.name, record.value)
        name = found.get("device_name")
        version = found.get("software_version")
        return DeviceInfo(
            susy_id=target.susy_id,
            serial=target.serial,
            name=name if isinstance(name, str) else None,
            device_class=_tag_name(found.get("device_class"), DEVICE_CLASS_TAGS),
            type_label=_tag_name(found.get("device_type"), DEVICE_TYPE_TAGS),
            software_version=version if isinstance(version, str) else None,
            bt_address=self._addresses.get(target, self._inverter_address)
            if self._bluetooth
            else None,
        )

    async def read_history(
        self, start: int, end: int, tz: tzinfo = UTC, *, inverter: Endpoint | None = None
    ) -> list[tuple[int, int]]:
        """5-minute yield counters (unix time, total Wh) with ``start <= time <= end``.

        One archive request per local day of ``tz`` (``five_minute_window`` from its
        midnight); rows that are NaN, off the 5-minute grid or not increasing are dropped
        (``decode_history``).
        """
        async with self._lock:
            target = self._target(inverter)
            records: list[Record] = []
            days = day_starts(start, end, tz)
            for day, following in zip(days, [*days[1:], None], strict=True):
                first, last = five_minute_window(day)
                if following is not None:  # a 25-hour day reaches past day + 86100
                    last = max(last, following - 300)
                records += await self._archive(first, last, target, daily=False)
        return [row for row in decode_history(records, 300) if start <= row[0] <= end]

    async def read_daily_history(
        self, start: int, end: int, *, inverter: Endpoint | None = None
    ) -> list[tuple[int, int]]:
        """Daily yield counters (unix time of the inverter's midnight, total Wh)."""
        async with self._lock:
            target = self._target(inverter)
            records: list[Record] = []
            window = start
            while window <= end:
                window_end = min(end, window + DAILY_WINDOW_DAYS * DAY)
                records += await self._archive(window - DAY, window_end + DAY, target, daily=True)
                window = window_end + 1
        return [row for row in decode_history(records, None) if start <= row[0] <= end]

    # ----------------------------------------------------------------------------------------
    # Requests
    # ----------------------------------------------------------------------------------------

    def _target(self, inverter: Endpoint | None) -> Endpoint:
        """The inverter a reading addresses: the given member of the plant, or the first."""
        self._require_connected()
        if inverter is None:
            assert self._inverter is not None  # set by connect()
            return self._inverter
        if inverter not in self._inverters:
            raise SunnyBoyError(f"{self._transport.name}: no inverter {inverter.serial} here")
        return inverter

    def _next_packet_id(self) -> int:
        self._packet_id = self._packet_id % 0x7FFF + 1
        return self._packet_id

    async def _query(self, query: Query, inverter: Endpoint) -> list[Record]:
        app = self._app

        def build(packet_id: int) -> bytes:
            return build_query(query, app, packet_id, inverter)

        return await self._records(await self._exchange(query.command, build, inverter))

    async def _archive(
        self, first: int, last: int, inverter: Endpoint, *, daily: bool
    ) -> list[Record]:
        app = self._app

        def build(packet_id: int) -> bytes:
            return build_history(app, packet_id, first, last, daily=daily, destination=inverter)

        command = CMD_HISTORY_DAILY if daily else CMD_HISTORY_5MIN
        return await self._records(await self._exchange(command, build, inverter))

    async def _records(self, packets: Sequence[L2Packet]) -> list[Record]:
        """Decode reply fragments; an error code means the block is not available."""
        records: list[Record] = []
        for packet in packets:
            if packet.error == ERROR_WRONG_PASSWORD:
                raise await self._link_lost(ProtocolError("the inverter logged us off"))
            if packet.error:
                _LOGGER.debug("command 0x%08X: error %d", packet.command, packet.error)
                continue
            try:
                records += decode_records(packet)
            except ProtocolError as err:
                _LOGGER.debug("skipping malformed reply: %s", err)
        return records

    async def _identify(self) -> None:
        """Broadcast identification; every inverter of the plant answers.

        On Bluetooth the topology says how many inverters to wait for; on Speedwire answers
        are gathered for a short while after the first one. The inverter the link goes to
        (Bluetooth: the hello's sender; Speedwire: the first to answer) comes first.
        """
        app = self._app
        expected = 0
        if self._bluetooth:
            expected = max(1, sum(1 for _, kind in self._topology if kind == TOPOLOGY_INVERTER))
        answers = await self._exchange_from(
            CMD_IDENTIFY, lambda packet_id: build_identify(app, packet_id), gather=expected
        )
        found: dict[Endpoint, str | None] = {}
        for reply, source in answers:
            found.setdefault(Endpoint(reply.source_susy_id, reply.source_serial), source)
        first = next(
            (ep for ep, source in found.items() if source == self._inverter_address),
            next(iter(found)),
        )
        others = sorted((ep for ep in found if ep != first), key=lambda ep: ep.serial)
        self._inverters = (first, *others)
        self._inverter = first
        self._addresses = {ep: source for ep, source in found.items() if source is not None}

    async def _logon(self) -> None:
        """Log on to the inverter, or to the whole plant (broadcast) when there are several."""
        plant = len(self._inverters) > 1
        inverter = ANY_ENDPOINT if plant else (self._inverter or ANY_ENDPOINT)
        app, now = self._app, int(time.time())
        password, installer = self._password, self._installer

        def build(packet_id: int) -> bytes:
            return build_logon(
                app, packet_id, password, now, installer=installer, destination=inverter
            )

        reply = (await self._exchange(CMD_LOGON, build, None if plant else self._inverter))[0]
        if reply.error == ERROR_WRONG_PASSWORD:
            group = "installer" if installer else "user"
            raise WrongPassword(f"{self._transport.name}: the {group} password was refused")
        if reply.error == ERROR_BUSY:
            raise InverterBusy(
                f"{self._transport.name}: the inverter is busy with another application "
                "(close Sunny Explorer or other tools connected to it)"
            )
        if reply.error:
            raise SunnyBoyError(f"{self._transport.name}: log-on failed with error {reply.error}")

    async def _exchange(
        self, command: int, build: Callable[[int], bytes], target: Endpoint | None = None
    ) -> list[L2Packet]:
        """Send a request and collect every fragment of its reply, retrying on silence.

        ``target``: the inverter whose reply counts; None accepts any inverter of the plant.
        """
        return [reply for reply, _ in await self._exchange_from(command, build, target)]

    async def _exchange_from(
        self,
        command: int,
        build: Callable[[int], bytes],
        target: Endpoint | None = None,
        *,
        gather: int | None = None,
    ) -> list[tuple[L2Packet, str | None]]:
        """:meth:`_exchange` with each packet's level-1 sender (None on Speedwire).

        ``gather``: collect the single-packet answers of several inverters to one broadcast:
        until this many have answered, or (0: the number is unknown) until answers stop
        for :data:`IDENTIFY_GATHER` seconds.
        """
        expected = command | 1
        loop = asyncio.get_running_loop()
        for attempt in range(self._retries + 1):
            packet_id = self._next_packet_id()
            await self._send_body(build(packet_id))
            deadline = loop.time() + self._timeout
            fragments: list[tuple[L2Packet, str | None]] = []
            try:
                while True:
                    reply, l1_source = await self._next_l2(deadline)
                    if reply.packet_id != packet_id or reply.command != expected:
                        continue
                    if not self._from_inverter(reply, l1_source, target):
                        continue
                    fragments.append((reply, l1_source))
                    if gather is not None:
                        if gather and len(fragments) >= gather:
                            return fragments
                        if not gather:
                            quiet = min(IDENTIFY_GATHER, self._timeout)
                            deadline = min(deadline, loop.time() + quiet)
                        continue
                    if reply.fragments == 0 or reply.error:
                        return fragments
                    deadline = loop.time() + self._timeout
            except TimeoutError:
                if fragments and gather is not None:
                    return fragments  # gathering: everybody who was going to answer did
                _LOGGER.debug(
                    "%s: no reply to 0x%08X (attempt %d)", self._transport.name, command, attempt
                )
        raise SunnyBoyTimeout(
            f"{self._transport.name}: no reply to command 0x{command:08X} "
            f"after {self._retries + 1} attempts"
        )

    def _from_inverter(
        self, reply: L2Packet, l1_source: str | None, target: Endpoint | None
    ) -> bool:
        sender = Endpoint(reply.source_susy_id, reply.source_serial)
        if target is not None:
            return sender == target
        if self._inverters:
            return sender in self._inverters
        if l1_source is None or l1_source == self._inverter_address:
            return True
        return (l1_source, TOPOLOGY_INVERTER) in self._topology

    # ----------------------------------------------------------------------------------------
    # Link I/O
    # ----------------------------------------------------------------------------------------

    async def _send(self, data: bytes) -> None:
        try:
            await self._transport.send(data)
        except TransportClosed as err:
            raise await self._link_lost(err) from err

    async def _send_body(self, body: bytes) -> None:
        if self._bluetooth:
            data = encode_bt_packet(body, source=self._local_address, destination=BROADCAST_ADDRESS)
        else:
            data = encode_speedwire(body)
        await self._send(data)

    async def _receive(self, deadline: float) -> bytes:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise TimeoutError
        try:
            return await self._transport.receive(remaining)
        except TransportClosed as err:
            raise await self._link_lost(err) from err

    async def _next_l1(self, deadline: float) -> L1Packet:
        while not self._l1_queue:
            self._l1_queue.extend(self._parser.feed(await self._receive(deadline)))
        return self._l1_queue.popleft()

    async def _next_l2(self, deadline: float) -> tuple[L2Packet, str | None]:
        """Next decodable level-2 packet (and, on Bluetooth, its level-1 sender)."""
        while True:
            if not self._bluetooth:
                try:
                    return decode_speedwire(await self._receive(deadline)), None
                except ProtocolError as err:
                    _LOGGER.debug("skipping datagram: %s", err)
                    continue
            packet = await self._next_l1(deadline)
            if packet.command not in (L1_PPP_MORE, L1_PPP_LAST):
                continue
            try:
                wire = self._reassembler.feed(packet)
                if wire is not None:
                    return decode_l2(wire), packet.source
            except ProtocolError as err:
                _LOGGER.debug("skipping level-2 data: %s", err)

    async def _wait_l1(self, commands: frozenset[int], timeout: float) -> L1Packet:
        """Next level-1 packet with one of ``commands``; notes 0x0A on the way."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            packet = await self._next_l1(deadline)
            if packet.command == L1_CONNECTED and len(packet.payload) >= 13:
                self._local_address = _format_address(packet.payload[7:13])
            if packet.command in commands:
                return packet

    # ----------------------------------------------------------------------------------------
    # Bluetooth handshake
    # ----------------------------------------------------------------------------------------

    async def _bluetooth_handshake(self) -> None:
        hello_packet = await self._await_hello()
        hello = decode_hello(hello_packet)
        if hello.protocol < MIN_PROTOCOL:
            raise FirmwareTooOld(
                f"{self._transport.name}: Bluetooth protocol {hello.protocol}; "
                "update the inverter's Bluetooth firmware to 1.71 or later"
            )
        address = hello_packet.source
        self._inverter_address = address
        self._net_id = hello.net_id
        await self._send(encode_hello_echo(self._local_address, address, hello.net_id))
        try:
            topology = await self._wait_l1(frozenset({L1_TOPOLOGY}), self._timeout)
        except TimeoutError as err:
            raise SunnyBoyTimeout(f"{self._transport.name}: no network topology") from err
        self._topology = tuple(decode_topology(topology))
        inverters = [entry for entry in self._topology if entry[1] == TOPOLOGY_INVERTER]
        if hello.net_id > 1 and len(inverters) <= 1:
            await self._build_network(address)

    async def _await_hello(self) -> L1Packet:
        """The inverter greets a new RFCOMM link; ``ver`` asks a quiet one to do so again."""
        for _ in range(self._retries + 1):
            try:
                return await self._wait_l1(frozenset({L1_HELLO}), self._timeout)
            except TimeoutError:
                await self._send(encode_ver_request())
        raise SunnyBoyTimeout(f"{self._transport.name}: the inverter sent no hello")

    async def _build_network(self, address: str) -> None:
        """NetID > 1: three get-variable exchanges, then the full topology and 'ready'."""
        try:
            for payload in NETWORK_STEPS:
                await self._send(encode_l1(self._local_address, address, L1_GET_VARIABLE, payload))
                await self._wait_l1(frozenset({L1_VARIABLE_REPLY}), self._timeout)
            packet = await self._wait_l1(
                frozenset({L1_TOPOLOGY, L1_NETWORK_READY}), self._timeout * (self._retries + 1)
            )
        except TimeoutError as err:
            raise SunnyBoyTimeout(
                f"{self._transport.name}: the plant network did not form"
            ) from err
        if packet.command == L1_TOPOLOGY:
            self._topology = tuple(decode_topology(packet))
            with contextlib.suppress(TimeoutError):
                await self._wait_l1(frozenset({L1_NETWORK_READY}), self._timeout)

    async def _read_signal_strength(self, inverter: Endpoint) -> float | None:
        address = self._addresses.get(inverter) or self._inverter_address or BROADCAST_ADDRESS
        await self._send(encode_get_variable(self._local_address, address, L1_VAR_SIGNAL_STRENGTH))
        try:
            reply = await self._wait_l1(frozenset({L1_VARIABLE_REPLY}), self._timeout)
            return decode_signal_strength(reply)
        except TimeoutError, ProtocolError:
            return None
