"""A Sunny Boy PV inverter that speaks SMA's Bluetooth and Speedwire packets.

The integration's Sunny Boy client, its tests and the "simulated device" option need an
inverter that answers exactly like the real one on the wire, so the real codec and client run
against it. :class:`SunnyBoySimulator` therefore serves

* **Bluetooth** on one end of a stream socket (``socket.socketpair()`` stands in for RFCOMM):
  it greets with a hello carrying its NetID, answers the hello echo with "connected" (0x0A)
  and the topology (0x05), runs the extra get-variable exchange of NetID > 1 plants before it
  accepts level-2 requests, answers the signal-strength variable, and splits every level-2
  reply into level-1 pieces (0x08 … 0x01) so the client's reassembly is always exercised;
* **Speedwire** on a UDP socket: the same level-2 bodies in the ``SMA\\0`` tag container.

On the SMA-data level it answers identify, log-on (error 0x0100 for a wrong password, 0x0001
"busy" while another application is logged on over Bluetooth or while
:meth:`~SunnyBoySimulator.set_busy` is set), log-off, every
:class:`~..protocols.sma_bt.Query`, and the 5-minute and daily yield archives.

Values come from a small deterministic PV model: a sun curve between 05:30 and 20:30 UTC, a
per-day cloud factor and a per-5-minute jitter, all drawn from ``seed`` with a hash so that any
moment can be evaluated on its own. Energy is the integral of the 5-minute powers in integer
mWh, so live counters, yesterday's archive rows and today's rows agree to the watt-hour and
never run backwards. ``clock`` (unix seconds) makes the moment explicit in tests; otherwise the
simulated time starts at the wall clock and runs ``time_scale`` times faster.

Faults on demand: :meth:`~SunnyBoySimulator.set_silent`, :meth:`~SunnyBoySimulator.drop_requests`
(ignore the next n requests: exercises retries), :meth:`~SunnyBoySimulator.drop_connection`
(Bluetooth: the link ends), :meth:`~SunnyBoySimulator.set_password`,
:meth:`~SunnyBoySimulator.expire_logons` (the inverter's log-on timeout ran out) and
:meth:`~SunnyBoySimulator.set_chatter` (a busy plant: before every reply come a stale reply, a
damaged packet and, on Bluetooth, a network packet and another inverter's answer). Two archive
rows per day are NaN, as inverters report for gaps, so clients must filter them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, time as day_time, timedelta, tzinfo
import math
import random
import socket
import struct
import time
from typing import Final

from ..protocols import ProtocolError
from ..protocols.sma_bt import (
    ANY_SERIAL,
    ANY_SUSY_ID,
    CMD_HISTORY_5MIN,
    CMD_HISTORY_DAILY,
    CMD_IDENTIFY,
    CMD_LOGOFF,
    CMD_LOGON,
    DT_SLONG,
    ERROR_BUSY,
    ERROR_LRI_NOT_AVAILABLE,
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
    L1_VERSION,
    LRI_TABLE,
    NAN_S32,
    NAN_U32,
    NAN_U64,
    NO_ADDRESS,
    STATUS_TAGS,
    TOPOLOGY_INVERTER,
    USER_GROUP_INSTALLER,
    USER_GROUP_USER,
    Endpoint,
    L1Packet,
    L1StreamParser,
    L2Packet,
    L2Reassembler,
    build_l2_body,
    decode_hello,
    decode_l2,
    decode_speedwire,
    encode_l1,
    encode_logon_password,
    encode_speedwire,
    frame_l2,
)

__all__ = [
    "CLIENT_ADDRESS",
    "DEFAULT_SUSY_ID",
    "HISTORY_DAYS",
    "HISTORY_ROWS_PER_PACKET",
    "PvModel",
    "SunnyBoySimulator",
    "SunnyBoyState",
]

DEFAULT_SUSY_ID: Final = 0x0083
CLIENT_ADDRESS: Final = "00:15:83:4D:6C:FC"
"""Adapter address reported to a client that introduces itself as 00:00:00:00:00:00."""

DAY: Final = 86_400
SLOT: Final = 300
SLOTS_PER_DAY: Final = DAY // SLOT
SUNRISE: Final = 5.5 * 3600
SUNSET: Final = 20.5 * 3600
FEED_IN_START: Final = SUNRISE + 900
FEED_IN_END: Final = SUNSET - 900
HISTORY_DAYS: Final = 365
"""Days before the simulation's start for which archive rows exist."""

L1_PIECE: Final = 96
"""Level-2 bytes per level-1 piece; small so that most replies take several pieces."""
HISTORY_ROWS_PER_PACKET: Final = 80
MAX_RECEIVED: Final = 1_000
"""Requests kept in ``received``: a simulator running for days must not grow without end."""
MAX_HISTORY_ROWS: Final = 1_000
SOFTWARE_VERSION: Final = 0x02550304
"""Packed 02.55.03.R."""
DEVICE_TYPE_TAG: Final = 9074
"""SB 3000TL-21."""
DEVICE_CLASS_TAG: Final = 8001
"""Solar inverter."""
STATUS_OK: Final = 307
RELAY_CLOSED: Final = 51
RELAY_OPEN: Final = 311

_MASK: Final = (1 << 64) - 1
_SALT_BASE: Final = 1
_SALT_CLOUD: Final = 2
_SALT_JITTER: Final = 3
_SALT_NAN: Final = 4
_TAG_END: Final = 0x00FFFFFE
_SELECTED: Final = 1 << 24

_COUNTER: Final = struct.Struct("<IIQ")
_SPOT: Final = struct.Struct("<IIIIIII")
_ATTRIBUTE: Final = struct.Struct("<II8I")
_TEXT: Final = struct.Struct("<II32s")
_HISTORY_ROW: Final = struct.Struct("<IQ")
_HELLO: Final = struct.Struct("<IBII")

# Record codes (data type << 24 | LRI | class) the simulated SB 3000TL-21 reports.
ENERGY_TOTAL: Final = 0x00260100
ENERGY_TODAY: Final = 0x00262200
OPERATING_TIME: Final = 0x00462E00
FEED_IN_TIME: Final = 0x00462F00
DC_POWER: Final = (0x40251E01, 0x40251E02)
DC_VOLTAGE: Final = (0x40451F01, 0x40451F02)
DC_CURRENT: Final = (0x40452101, 0x40452102)
AC_POWER_TOTAL: Final = 0x40263F00
AC_POWER: Final = (0x40464000, 0x40464100, 0x40464200)
AC_VOLTAGE: Final = (0x00464800, 0x00464900, 0x00464A00)
AC_CURRENT: Final = (0x40465300, 0x40465400, 0x40465500)
GRID_FREQUENCY: Final = 0x00465700
TEMPERATURE: Final = 0x40237701
DEVICE_STATUS: Final = 0x08214800
GRID_RELAY: Final = 0x08416401
DEVICE_NAME: Final = 0x10821E00
DEVICE_CLASS: Final = 0x08821F00
DEVICE_TYPE: Final = 0x08822000
SOFTWARE: Final = 0x00823400

_COUNTER_COMMAND: Final = 0x54000200
_AC_COMMAND: Final = 0x51000200
_DC_COMMAND: Final = 0x53800200
_TEMPERATURE_COMMAND: Final = 0x52000200
_STATUS_COMMAND: Final = 0x51800200
_LABEL_COMMAND: Final = 0x58000200


def _mix(value: int) -> int:
    """SplitMix64 finaliser: a fast, well-spread hash of an integer."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


def _sun(time_of_day: float) -> float:
    """Relative irradiance 0…1 over the UTC day (0 between sunset and sunrise)."""
    height = math.sin(math.pi * (time_of_day - SUNRISE) / (SUNSET - SUNRISE))
    return float(max(height, 0.0) ** 1.5)


def utc_offset(moment: float, tz: tzinfo) -> int:
    """Seconds ``tz`` is ahead of UTC at ``moment`` (daylight saving time included)."""
    if tz is UTC:
        return 0
    offset = datetime.fromtimestamp(moment, tz).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def local_midnight(moment: float, tz: tzinfo) -> int:
    """Unix time of the last midnight in ``tz`` at or before ``moment``."""
    if tz is UTC:
        return int(moment // DAY * DAY)
    today = datetime.fromtimestamp(moment, tz).date()
    return int(datetime.combine(today, day_time(0), tz).timestamp())


def local_midnights(first: float, last: float, tz: tzinfo) -> list[int]:
    """Every midnight in ``tz`` with ``first <= midnight <= last`` (DST days are 23 or 25 h)."""
    out: list[int] = []
    day = datetime.fromtimestamp(first, tz).date()
    while True:
        midnight = int(datetime.combine(day, day_time(0), tz).timestamp())
        if midnight > last:
            return out
        if midnight >= first:
            out.append(midnight)
        day += timedelta(days=1)


def _address_bytes(address: str) -> bytes:
    return bytes.fromhex(address.replace(":", ""))[::-1]


class PvModel:
    """Deterministic PV output and energy counters of one inverter, by unix time."""

    def __init__(self, seed: int, peak_power: float, origin: float, tz: tzinfo = UTC) -> None:
        """``origin``: start of the simulation; archives reach ``HISTORY_DAYS`` before it.

        ``tz``: where the inverter stands. The sun follows its local clock, and "today"
        (the day's yield) starts at its local midnight.
        """
        self.tz = tz
        self._seed = seed & _MASK
        self.peak_power = peak_power
        self.origin_day = int(origin // DAY)
        self.first_day = self.origin_day - HISTORY_DAYS
        self.base_total_mwh = (15_000_000 + int(5_000_000 * self._unit(0, _SALT_BASE))) * 1000
        self.base_operating = 9_000_000 + int(1_000_000 * self._unit(1, _SALT_BASE))
        self.base_feed_in = self.base_operating - 400_000
        self._cumulative: dict[int, int] = {self.origin_day: 0}
        self._prefix: dict[int, list[int]] = {}

    def _unit(self, key: int, salt: int) -> float:
        return _mix(self._seed ^ _mix((key * 8 + salt) & _MASK)) / 2.0**64

    def cloud(self, day: int) -> float:
        """Fraction of clear-sky output on ``day`` (0.45…1)."""
        return 0.45 + 0.55 * self._unit(day, _SALT_CLOUD)

    def power(self, moment: float) -> float:
        """AC power in W (0 outside the feed-in window)."""
        day, time_of_day = divmod(self.local(moment), DAY)
        if not FEED_IN_START <= time_of_day < FEED_IN_END:
            return 0.0
        jitter = 0.9 + 0.2 * self._unit(int(moment // SLOT), _SALT_JITTER)
        return self.peak_power * self.cloud(int(day)) * _sun(time_of_day) * jitter

    def _slot_energy(self, slot: int) -> int:
        """mWh fed in during one 5-minute slot (power at the slot's middle)."""
        return round(self.power(slot * SLOT + SLOT / 2) * SLOT / 3.6)

    def _day_prefix(self, day: int) -> list[int]:
        prefix = self._prefix.get(day)
        if prefix is None:
            if len(self._prefix) > 64:
                self._prefix.clear()
            prefix = [0]
            first = day * SLOTS_PER_DAY
            for slot in range(first, first + SLOTS_PER_DAY):
                prefix.append(prefix[-1] + self._slot_energy(slot))
            self._prefix[day] = prefix
        return prefix

    def _day_start_mwh(self, day: int) -> int:
        """Energy fed in between the origin day's midnight and ``day``'s (negative before)."""
        cache = self._cumulative
        if day in cache:
            return cache[day]
        step = 1 if day > self.origin_day else -1
        path = []
        cursor = day
        while cursor not in cache:
            path.append(cursor)
            cursor -= step
        for current in reversed(path):
            if step == 1:
                cache[current] = cache[current - 1] + self._day_prefix(current - 1)[-1]
            else:
                cache[current] = cache[current + 1] - self._day_prefix(current)[-1]
        return cache[day]

    def local(self, moment: float) -> float:
        """``moment`` on the inverter's local clock, as seconds since 1970-01-01 local."""
        return moment + utc_offset(moment, self.tz)

    def yield_today_mwh(self, moment: float) -> int:
        """mWh since the inverter's last local midnight: its "today" counter."""
        return self.energy_total_mwh(moment) - self.energy_total_mwh(
            local_midnight(moment, self.tz)
        )

    def energy_today_mwh(self, moment: float) -> int:
        """mWh since the last UTC midnight (the bookkeeping unit of the integration)."""
        day = int(moment // DAY)
        slot, elapsed = divmod(moment - day * DAY, SLOT)
        prefix = self._day_prefix(day)
        index = int(slot)
        return prefix[index] + int((prefix[index + 1] - prefix[index]) * elapsed / SLOT)

    def energy_total_mwh(self, moment: float) -> int:
        """Lifetime mWh at ``moment``."""
        day = int(moment // DAY)
        return self.base_total_mwh + self._day_start_mwh(day) + self.energy_today_mwh(moment)

    def operating_time(self, moment: float) -> int:
        """Seconds the inverter has been awake (sunrise to sunset every day)."""
        day, time_of_day = divmod(self.local(moment), DAY)
        awake = SUNSET - SUNRISE
        today = min(max(time_of_day - SUNRISE, 0.0), awake)
        return int(self.base_operating + (day - self.origin_day) * awake + today)

    def feed_in_time(self, moment: float) -> int:
        """Seconds the inverter has fed the grid."""
        day, time_of_day = divmod(self.local(moment), DAY)
        window = FEED_IN_END - FEED_IN_START
        today = min(max(time_of_day - FEED_IN_START, 0.0), window)
        return int(self.base_feed_in + (day - self.origin_day) * window + today)

    def nan_slots(self, day: int) -> tuple[int, int]:
        """The two 5-minute rows of ``day`` the archive reports as NaN."""
        first = int(self._unit(day, _SALT_NAN) * SLOTS_PER_DAY)
        second = (first + 1 + int(self._unit(day + 1, _SALT_NAN) * (SLOTS_PER_DAY - 2))) % (
            SLOTS_PER_DAY
        )
        return first, second


@dataclass(frozen=True, slots=True)
class SunnyBoyState:
    """What the simulated inverter reports at ``time``, scaled as a client decodes it.

    Field names match the client's ``SpotValues``; None where the inverter sends NaN (phases
    L2/L3 of this single-phase model).
    """

    time: int
    ac_power: int
    ac_power_l1: int
    ac_power_l2: None
    ac_power_l3: None
    ac_voltage_l1: float
    ac_voltage_l2: None
    ac_voltage_l3: None
    ac_current_l1: float
    ac_current_l2: None
    ac_current_l3: None
    grid_frequency: float
    dc_strings: tuple[int, ...]
    dc_power: tuple[int, ...]
    dc_voltage: tuple[float, ...]
    dc_current: tuple[float, ...]
    energy_today: int
    energy_total: int
    operating_time: int
    feed_in_time: int
    temperature: float
    device_status: str
    grid_relay: str
    signal_strength: float


@dataclass(frozen=True, slots=True)
class _Raw:
    """Wire values (before scaling) of one moment."""

    time: int
    ac_power: int
    ac_voltage: int
    ac_current: int
    frequency: int
    dc_power: tuple[int, int]
    dc_voltage: tuple[int, int]
    dc_current: tuple[int, int]
    energy_today: int
    energy_total: int
    operating_time: int
    feed_in_time: int
    temperature: int
    relay: int


@dataclass(slots=True, eq=False)
class _BluetoothLink:
    """One RFCOMM peer: its stream state and where it is in the handshake."""

    sock: socket.socket
    parser: L1StreamParser = field(default_factory=L1StreamParser)
    reassembler: L2Reassembler = field(default_factory=L2Reassembler)
    peer: str = CLIENT_ADDRESS
    joined: bool = False
    network_ready: bool = False
    logons: set[tuple[int, int]] = field(default_factory=set)


class _SpeedwireServer(asyncio.DatagramProtocol):
    def __init__(self, simulator: SunnyBoySimulator) -> None:
        self._simulator = simulator
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self._transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        assert self._transport is not None
        for reply in self._simulator.handle_speedwire(data, addr):
            self._transport.sendto(reply, addr)


class SunnyBoySimulator:
    """A simulated SB 3000TL-21 on Bluetooth (socket peer) and/or Speedwire (UDP)."""

    signal_raw: int = 0xB4
    """Level-1 signal strength byte (0…255) reported over Bluetooth."""

    def __init__(
        self,
        *,
        password: str = "0000",  # noqa: S107 - the factory default of every Sunny Boy
        installer_password: str = "1111",  # noqa: S107
        serial: int = 2130012345,
        susy_id: int = DEFAULT_SUSY_ID,
        net_id: int = 1,
        bt_address: str = "00:80:25:12:34:56",
        time_scale: float = 1.0,
        seed: int | None = None,
        peak_power: float = 3000.0,
        firmware_too_old: bool = False,
        software_version: int | None = SOFTWARE_VERSION,
        tz: tzinfo = UTC,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``clock`` gives the simulated unix time; default: wall time sped up by ``time_scale``.

        ``tz`` is the inverter's local time zone: its sun, its "today" and its daily archive
        follow that clock (a real inverter keeps local time).
        """
        if not time_scale > 0:
            raise ValueError("time_scale must be positive")
        if not 1 <= net_id <= 0xFF:
            raise ValueError("net_id must be 1…255")
        try:
            valid = len(_address_bytes(bt_address)) == 6
        except ValueError:
            valid = False
        if not valid:
            raise ValueError(f"not a Bluetooth address: {bt_address!r}")
        self._members: list[SunnyBoySimulator] = []
        self._passwords = (password, installer_password)
        self.set_password(password, installer_password)
        self.endpoint = Endpoint(susy_id, serial)
        self.net_id = net_id
        self.bt_address = bt_address
        self.firmware_too_old = firmware_too_old
        self.software_version = software_version
        """Packed firmware version; None sends the NaN marker (an inverter that does not know)."""
        if clock is None:
            wall, monotonic = time.time(), time.monotonic()

            def clock() -> float:
                return wall + (time.monotonic() - monotonic) * time_scale

        self._clock = clock
        self.seed = seed if seed is not None else random.SystemRandom().getrandbits(63)
        self.tz = tz
        self.model = PvModel(self.seed, peak_power, clock(), tz)
        self.received: list[L2Packet] = []
        """Level-2 requests that reached the simulator, in order (the latest few hundred)."""
        self._silent = False
        self._busy = False
        self._chatter = False
        self._unsupported: frozenset[int] = frozenset()
        self._drop_requests = 0
        self._links: set[_BluetoothLink] = set()
        self._udp: list[asyncio.DatagramTransport] = []
        self._udp_logons: dict[tuple[str | int, ...], set[tuple[int, int]]] = {}
        self._peak_power = peak_power

    # ----------------------------------------------------------------------------------------
    # Faults and inspection
    # ----------------------------------------------------------------------------------------

    def add_inverter(
        self,
        serial: int,
        *,
        seed: int | None = None,
        peak_power: float | None = None,
        bt_address: str | None = None,
    ) -> SunnyBoySimulator:
        """Add another inverter to this one's plant (NetID > 1), reached through this link.

        The new inverter has its own serial, Bluetooth address, values and archives (its PV
        model is seeded separately) but shares the clock, the time zone and the passwords.
        Returns it, so tests can read its expected values.
        """
        if self.net_id == 1:
            raise ValueError("a plant of several inverters needs a NetID above 1")
        number = len(self._members) + 1
        if bt_address is None:
            raw = bytearray(_address_bytes(self.bt_address))
            raw[0] = (raw[0] + 0x10 * number) & 0xFF
            bt_address = bytes(raw[::-1]).hex(":").upper()
        member = SunnyBoySimulator(
            password=self._passwords[0],
            installer_password=self._passwords[1],
            serial=serial,
            susy_id=self.endpoint.susy_id,
            net_id=self.net_id,
            bt_address=bt_address,
            seed=seed if seed is not None else self.seed + number,
            peak_power=peak_power if peak_power is not None else self._peak_power,
            tz=self.tz,
            clock=self._clock,
        )
        self._members.append(member)
        return member

    @property
    def plant(self) -> list[SunnyBoySimulator]:
        """Every inverter behind this link: this one first, then the added ones."""
        return [self, *self._members]

    def set_silent(self, silent: bool) -> None:
        """Answer nothing at all (as an inverter asleep or out of range)."""
        self._silent = silent

    def set_busy(self, busy: bool) -> None:
        """Refuse every log-on as busy, as while Sunny Explorer is connected to the inverter.

        Without the flag a Bluetooth log-on is also busy while another application (another
        SUSyID/serial) is logged on over another RFCOMM link, until that one logs off.
        """
        self._busy = busy

    def set_chatter(self, chatter: bool) -> None:
        """Send unrelated and damaged packets before every reply (a busy plant network)."""
        self._chatter = chatter

    def set_unsupported(self, *commands: int) -> None:
        """Answer these data commands with error 21 (LRI not available), as older models do."""
        self._unsupported = frozenset(commands)

    def expire_logons(self) -> None:
        """Forget every log-on, as the inverter does when its log-on timeout runs out."""
        for link in self._links:
            link.logons.clear()
        self._udp_logons.clear()

    def drop_requests(self, count: int) -> None:
        """Ignore the next ``count`` level-2 requests (a lossy link)."""
        self._drop_requests = max(0, count)

    def drop_connection(self) -> None:
        """End every Bluetooth link now (the peer reads end of stream)."""
        for link in list(self._links):
            with contextlib.suppress(OSError):
                link.sock.shutdown(socket.SHUT_RDWR)

    def set_password(self, password: str, installer_password: str | None = None) -> None:
        """Change the user (and optionally installer) password of the whole plant.

        Raises ProtocolError if invalid.
        """
        self._user_key = encode_logon_password(password)
        if installer_password is not None:
            self._installer_key = encode_logon_password(installer_password, installer=True)
        self._passwords = (password, installer_password or self._passwords[1])
        for member in self._members:
            member.set_password(password, installer_password)

    @property
    def received_commands(self) -> list[int]:
        """Commands of :attr:`received`."""
        return [packet.command for packet in self.received]

    @property
    def bluetooth_clients(self) -> int:
        """Number of open Bluetooth links."""
        return len(self._links)

    def now(self) -> float:
        """Simulated unix time."""
        return self._clock()

    def state(self, moment: float | None = None) -> SunnyBoyState:
        """The values the inverter reports at ``moment`` (default: now)."""
        raw = self._measure(self.now() if moment is None else moment)
        return SunnyBoyState(
            time=raw.time,
            ac_power=raw.ac_power,
            ac_power_l1=raw.ac_power,
            ac_power_l2=None,
            ac_power_l3=None,
            ac_voltage_l1=raw.ac_voltage / 100,
            ac_voltage_l2=None,
            ac_voltage_l3=None,
            ac_current_l1=raw.ac_current / 1000,
            ac_current_l2=None,
            ac_current_l3=None,
            grid_frequency=raw.frequency / 100,
            dc_strings=(1, 2),
            dc_power=raw.dc_power,
            dc_voltage=tuple(value / 100 for value in raw.dc_voltage),
            dc_current=tuple(value / 1000 for value in raw.dc_current),
            energy_today=raw.energy_today,
            energy_total=raw.energy_total,
            operating_time=raw.operating_time,
            feed_in_time=raw.feed_in_time,
            temperature=raw.temperature / 100,
            device_status=STATUS_TAGS[STATUS_OK],
            grid_relay=STATUS_TAGS[raw.relay],
            signal_strength=self.signal_raw * 100.0 / 255.0,
        )

    def energy_total_at(self, moment: float) -> int:
        """Lifetime yield in Wh at ``moment`` (what an archive row at that time carries)."""
        return self.model.energy_total_mwh(moment) // 1000

    def _measure(self, moment: float) -> _Raw:
        model = self.model
        power = model.power(moment)
        ac_voltage = round((230.0 + 3.5 * math.sin(2 * math.pi * moment / 5400)) * 100)
        frequency = round((50.0 + 0.03 * math.sin(2 * math.pi * moment / 420)) * 100)
        if power > 0:
            sun = _sun(model.local(moment) % DAY)
            dc_total = power / 0.965
            dc_power = (round(dc_total * 0.56), round(dc_total * 0.44))
            dc_voltage = (round((300 + 60 * sun) * 100), round((285 + 50 * sun) * 100))
            dc_current = (
                round(dc_power[0] / dc_voltage[0] * 100_000),
                round(dc_power[1] / dc_voltage[1] * 100_000),
            )
        else:
            dc_power, dc_voltage, dc_current = (0, 0), (0, 0), (0, 0)
        ac_power = round(power)
        return _Raw(
            time=int(moment),
            ac_power=ac_power,
            ac_voltage=ac_voltage,
            ac_current=round(ac_power / ac_voltage * 100_000),
            frequency=frequency,
            dc_power=dc_power,
            dc_voltage=dc_voltage,
            dc_current=dc_current,
            energy_today=model.yield_today_mwh(moment) // 1000,
            energy_total=model.energy_total_mwh(moment) // 1000,
            operating_time=model.operating_time(moment),
            feed_in_time=model.feed_in_time(moment),
            temperature=round((24.0 + 22.0 * power / model.peak_power) * 100),
            relay=RELAY_CLOSED if power > 0 else RELAY_OPEN,
        )

    # ----------------------------------------------------------------------------------------
    # Records
    # ----------------------------------------------------------------------------------------

    def _records(self, command: int) -> list[tuple[int, bytes]]:
        """(code, record bytes) of every value the command can return."""
        raw = self._measure(self.now())
        stamp = raw.time

        def spot(code: int, value: int | None) -> tuple[int, bytes]:
            if value is None:
                # The marker of the value's definition (s32 or u32), as the codec reads it.
                info = LRI_TABLE.get(code & 0x00FFFF00)
                signed = info.signed if info is not None else code >> 24 == DT_SLONG
                word = NAN_S32 if signed else NAN_U32
            else:
                word = value & 0xFFFFFFFF
            return code, _SPOT.pack(code, stamp, word, word, word, word, 1)

        def counter(code: int, value: int) -> tuple[int, bytes]:
            return code, _COUNTER.pack(code, stamp, value)

        def attribute(code: int, options: tuple[int, ...], selected: int) -> tuple[int, bytes]:
            words = [tag | (_SELECTED if tag == selected else 0) for tag in options]
            words += [_TAG_END] * (8 - len(words))
            return code, _ATTRIBUTE.pack(code, stamp, *words)

        if command == _COUNTER_COMMAND:
            return [
                counter(ENERGY_TOTAL, raw.energy_total),
                counter(ENERGY_TODAY, raw.energy_today),
                counter(OPERATING_TIME, raw.operating_time),
                counter(FEED_IN_TIME, raw.feed_in_time),
            ]
        if command == _DC_COMMAND:
            return [
                *(spot(code, value) for code, value in zip(DC_POWER, raw.dc_power, strict=True)),
                *(spot(c, v) for c, v in zip(DC_VOLTAGE, raw.dc_voltage, strict=True)),
                *(spot(c, v) for c, v in zip(DC_CURRENT, raw.dc_current, strict=True)),
            ]
        if command == _AC_COMMAND:
            return [
                spot(AC_POWER_TOTAL, raw.ac_power),
                spot(AC_POWER[0], raw.ac_power),
                spot(AC_POWER[1], None),
                spot(AC_POWER[2], None),
                spot(AC_VOLTAGE[0], raw.ac_voltage),
                spot(AC_VOLTAGE[1], None),
                spot(AC_VOLTAGE[2], None),
                spot(AC_CURRENT[0], raw.ac_current),
                spot(AC_CURRENT[1], None),
                spot(AC_CURRENT[2], None),
                spot(GRID_FREQUENCY, raw.frequency),
            ]
        if command == _TEMPERATURE_COMMAND:
            return [spot(TEMPERATURE, raw.temperature)]
        if command == _STATUS_COMMAND:
            return [
                attribute(DEVICE_STATUS, (35, 303, STATUS_OK, 455), STATUS_OK),
                attribute(GRID_RELAY, (RELAY_CLOSED, RELAY_OPEN), raw.relay),
            ]
        if command == _LABEL_COMMAND:
            name = f"SN: {self.endpoint.serial}".encode()
            packed = NAN_U32 if self.software_version is None else self.software_version
            version = [packed] * 5 + [_TAG_END, 0, 0]
            return [
                (DEVICE_NAME, _TEXT.pack(DEVICE_NAME, stamp, name)),
                attribute(DEVICE_CLASS, (DEVICE_CLASS_TAG,), DEVICE_CLASS_TAG),
                attribute(DEVICE_TYPE, (DEVICE_TYPE_TAG,), DEVICE_TYPE_TAG),
                (SOFTWARE, _ATTRIBUTE.pack(SOFTWARE, stamp, *version)),
            ]
        return []

    def history_rows(self, first: int, last: int, *, daily: bool) -> list[tuple[int, int | None]]:
        """Archive rows (time, total Wh or None for NaN) between ``first`` and ``last``.

        5-minute rows lie on the UTC 5-minute grid, daily rows at the inverter's local
        midnights; both carry the lifetime counter at their moment, so they always agree.
        """
        model = self.model
        end = min(last, int(self.now()))
        start = max(first, model.first_day * DAY)
        if daily:
            moments = local_midnights(start, end, self.tz)[:MAX_HISTORY_ROWS]
            return [(moment, model.energy_total_mwh(moment) // 1000) for moment in moments]
        moment = -(-start // SLOT) * SLOT
        rows: list[tuple[int, int | None]] = []
        while moment <= end and len(rows) < MAX_HISTORY_ROWS:
            value: int | None = model.energy_total_mwh(moment) // 1000
            day, offset = divmod(moment, DAY)
            if offset // SLOT in model.nan_slots(day):
                value = None
            rows.append((moment, value))
            moment += SLOT
        return rows

    # ----------------------------------------------------------------------------------------
    # Level 2 (shared by Bluetooth and Speedwire)
    # ----------------------------------------------------------------------------------------

    def _reply(
        self,
        request: L2Packet,
        *,
        args: tuple[int, ...] = (),
        extra: bytes = b"",
        error: int = 0,
        fragments: int = 0,
    ) -> bytes:
        return build_l2_body(
            request.command | 1,
            source=self.endpoint,
            packet_id=request.packet_id,
            destination=Endpoint(request.source_susy_id, request.source_serial),
            ctrl=request.ctrl,
            ctrl2=request.ctrl2,
            args=args,
            extra=extra,
            error=error,
            fragments=fragments,
        )

    def handle_l2(self, request: L2Packet, logons: set[tuple[int, int]]) -> list[bytes]:
        """Answer one level-2 request; returns reply bodies (none for log-off or faults).

        ``logons`` holds the (SUSyID, serial) of requesters logged on over this link. In a
        plant every inverter the request is addressed to answers (a broadcast: all of them).
        """
        return [body for _, body in self._handle(request, logons)]

    def _handle(
        self, request: L2Packet, logons: set[tuple[int, int]]
    ) -> list[tuple[SunnyBoySimulator, bytes]]:
        """Replies with the plant member that sends each (Bluetooth needs its address)."""
        if self._silent:
            return []
        self.received.append(request)
        if len(self.received) > MAX_RECEIVED:
            del self.received[: MAX_RECEIVED // 2]
        if self._drop_requests:
            self._drop_requests -= 1
            return []
        return [
            (inverter, body)
            for inverter in (self, *self._members)
            if not inverter._silent
            for body in inverter._answer(request, logons, self)
        ]

    def _answer(
        self, request: L2Packet, logons: set[tuple[int, int]], gateway: SunnyBoySimulator
    ) -> list[bytes]:
        """This inverter's own answer; ``gateway`` holds the links and their sessions."""
        if request.destination_susy_id not in (ANY_SUSY_ID, self.endpoint.susy_id) or (
            request.destination_serial not in (ANY_SERIAL, self.endpoint.serial)
        ):
            return []
        requester = (request.source_susy_id, request.source_serial)
        command = request.command
        if command == CMD_IDENTIFY:
            identity = struct.pack("<14xHI", self.endpoint.susy_id, self.endpoint.serial)
            return [self._reply(request, args=(0, 0), extra=identity)]
        if command == CMD_LOGOFF:
            # A log-off ends the requester's sessions on every link, also stale ones of an
            # earlier connection: that is why clients log off before they log on.
            for held in gateway._logon_sets():
                held.discard(requester)
            return []
        if command == CMD_LOGON:
            return [self._logon(request, logons, gateway._busy_for(requester))]
        if requester not in logons:
            return [self._reply(request, error=ERROR_WRONG_PASSWORD)]
        if command in (CMD_HISTORY_5MIN, CMD_HISTORY_DAILY):
            return self._history(request)
        if command in self._unsupported:
            return [self._reply(request, error=ERROR_LRI_NOT_AVAILABLE)]
        low, high = request.first, request.last
        records = [data for code, data in self._records(command) if low <= code & 0xFFFFFF <= high]
        if not records:
            return [self._reply(request, error=ERROR_LRI_NOT_AVAILABLE)]
        return [self._reply(request, args=(0, len(records) - 1), extra=b"".join(records))]

    def _logon_sets(self) -> list[set[tuple[int, int]]]:
        return [*(link.logons for link in self._links), *self._udp_logons.values()]

    def _busy_for(self, requester: tuple[int, int]) -> bool:
        """Whether another application holds the session (or :meth:`set_busy` says so).

        A Bluetooth inverter serves one master at a time: another application logged on over
        another RFCOMM link makes it busy. Speedwire serves several clients at once.
        """
        if self._busy:
            return True
        return any(other != requester for link in self._links for other in link.logons)

    def _logon(self, request: L2Packet, logons: set[tuple[int, int]], busy: bool) -> bytes:
        """A session covers the whole plant: log-on to one inverter (or all) admits to all."""
        requester = (request.source_susy_id, request.source_serial)
        keys = {USER_GROUP_USER: self._user_key, USER_GROUP_INSTALLER: self._installer_key}
        key = keys.get(request.first)
        if busy:
            error = ERROR_BUSY
        elif key is not None and request.records[8:20] == key:
            error = 0
            logons.add(requester)
        else:
            error = ERROR_WRONG_PASSWORD
        return self._reply(
            request,
            args=(request.first, request.last),
            extra=request.records[:8].ljust(8, b"\x00"),
            error=error,
        )

    def _history(self, request: L2Packet) -> list[bytes]:
        daily = request.command == CMD_HISTORY_DAILY
        rows = self.history_rows(request.first, request.last, daily=daily)
        if not rows:
            return [self._reply(request, args=(0, 0))]
        chunks = [
            rows[index : index + HISTORY_ROWS_PER_PACKET]
            for index in range(0, len(rows), HISTORY_ROWS_PER_PACKET)
        ]
        replies = []
        for number, chunk in enumerate(chunks):
            first_index = number * HISTORY_ROWS_PER_PACKET
            data = b"".join(
                _HISTORY_ROW.pack(moment, NAN_U64 if value is None else value)
                for moment, value in chunk
            )
            replies.append(
                self._reply(
                    request,
                    args=(first_index, first_index + len(chunk) - 1),
                    extra=data,
                    fragments=len(chunks) - 1 - number,
                )
            )
        return replies

    # ----------------------------------------------------------------------------------------
    # Speedwire
    # ----------------------------------------------------------------------------------------

    async def serve_speedwire(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen for Speedwire datagrams; returns the bound UDP port."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _SpeedwireServer(self), local_addr=(host, port)
        )
        self._udp.append(transport)
        bound: tuple[str, int] = transport.get_extra_info("sockname")
        return bound[1]

    def handle_speedwire(self, datagram: bytes, peer: tuple[str | int, ...]) -> list[bytes]:
        """Answer one Speedwire datagram from ``peer``; returns reply datagrams."""
        try:
            request = decode_speedwire(datagram)
        except ProtocolError:
            return []
        logons = self._udp_logons.setdefault(peer, set())
        replies = [encode_speedwire(body) for body in self.handle_l2(request, logons)]
        if replies and self._chatter:
            stale = encode_speedwire(self._stale_reply(request))
            replies[:0] = [b"SMA\x00\x00\x04\x02\xa0damaged", stale]
        return replies

    # ----------------------------------------------------------------------------------------
    # Bluetooth
    # ----------------------------------------------------------------------------------------

    async def serve_bluetooth(self, sock: socket.socket) -> None:
        """Be the inverter on a connected stream socket until either side ends the link."""
        loop = asyncio.get_running_loop()
        sock.setblocking(False)
        link = _BluetoothLink(sock)
        self._links.add(link)
        try:
            if not self._silent:
                await self._send_hello(link)
            while True:
                data = await loop.sock_recv(sock, 4096)
                if not data:
                    break
                for packet in link.parser.feed(data):
                    await self._on_l1(link, packet)
        except OSError:
            pass  # the peer went away while we were talking
        finally:
            self._links.discard(link)
            sock.close()

    async def _send_l1(
        self, link: _BluetoothLink, command: int, payload: bytes, source: str | None = None
    ) -> None:
        frame = encode_l1(source or self.bt_address, link.peer, command, payload)
        await asyncio.get_running_loop().sock_sendall(link.sock, frame)

    async def _send_hello(self, link: _BluetoothLink) -> None:
        protocol = 0x00700300 if self.firmware_too_old else 0x00700400
        await self._send_l1(link, L1_HELLO, _HELLO.pack(protocol, self.net_id, 0, 1))

    def _topology(self, link: _BluetoothLink, *, complete: bool) -> bytes:
        entries = [(self.bt_address, TOPOLOGY_INVERTER)]
        if complete and self.net_id > 1:
            neighbours = [member.bt_address for member in self._members]
            for address in neighbours or [self._neighbour_address()]:
                entries.append((address, TOPOLOGY_INVERTER))
        entries.append((link.peer, 0))
        return b"".join(
            _address_bytes(address) + kind.to_bytes(2, "little") for address, kind in entries
        )

    async def _on_l1(self, link: _BluetoothLink, packet: L1Packet) -> None:
        if self._silent:
            return
        command = packet.command
        if command == L1_VERSION:
            await self._send_hello(link)
        elif command == L1_HELLO:
            await self._on_hello_echo(link, packet)
        elif command == L1_GET_VARIABLE and link.joined:
            await self._on_get_variable(link, packet)
        elif command in (L1_PPP_MORE, L1_PPP_LAST) and link.network_ready:
            try:
                wire = link.reassembler.feed(packet)
                request = decode_l2(wire) if wire is not None else None
            except ProtocolError:
                return
            if request is not None:
                replies = self._handle(request, link.logons)
                if replies and self._chatter:
                    await self._send_chatter(link, request)
                for inverter, body in replies:
                    await self._send_l2(link, body, source=inverter.bt_address)

    async def _on_hello_echo(self, link: _BluetoothLink, packet: L1Packet) -> None:
        try:
            hello = decode_hello(packet)
        except ProtocolError:
            return
        if hello.net_id != self.net_id:
            return
        if packet.source != NO_ADDRESS:
            link.peer = packet.source
        link.joined = True
        link.network_ready = self.net_id == 1
        connected = _address_bytes(self.bt_address) + b"\x01" + _address_bytes(link.peer)
        await self._send_l1(link, L1_CONNECTED, connected)
        await self._send_l1(link, L1_TOPOLOGY, self._topology(link, complete=False))

    async def _on_get_variable(self, link: _BluetoothLink, packet: L1Packet) -> None:
        variable = int.from_bytes(packet.payload[:2], "little")
        if variable == L1_VAR_SIGNAL_STRENGTH:
            inverter = next((m for m in self._members if m.bt_address == packet.destination), self)
            payload = bytes([L1_VAR_SIGNAL_STRENGTH, 0, 0, 0, inverter.signal_raw, 0])
            await self._send_l1(link, L1_VARIABLE_REPLY, payload, inverter.bt_address)
            return
        await self._send_l1(link, L1_VARIABLE_REPLY, packet.payload[:2] + bytes(4))
        if variable == 0x0001 and self.net_id > 1 and not link.network_ready:
            # The last step of the NetID > 1 exchange: the plant network is built.
            await self._send_l1(link, L1_TOPOLOGY, self._topology(link, complete=True))
            await self._send_l1(link, L1_NETWORK_READY, b"")
            link.network_ready = True

    def _stale_reply(self, request: L2Packet) -> bytes:
        """A reply to an earlier packet id: what a late answer to a retried request looks like."""
        return build_l2_body(
            request.command | 1,
            source=self.endpoint,
            packet_id=(request.packet_id - 1) & 0x7FFF,
            destination=Endpoint(request.source_susy_id, request.source_serial),
        )

    async def _send_chatter(self, link: _BluetoothLink, request: L2Packet) -> None:
        """Network chatter, a stale reply, a damaged packet and another inverter's reply."""
        await self._send_l1(link, L1_VARIABLE_REPLY, bytes(6))
        await self._send_l2(link, self._stale_reply(request))
        damaged = bytearray(frame_l2(self._stale_reply(request)))
        damaged[-2] ^= 0x01
        await self._send_l1(link, L1_PPP_LAST, bytes(damaged))
        if request.destination_serial == ANY_SERIAL:
            return  # another inverter's broadcast answer would make it a plant member
        neighbour = Endpoint(self.endpoint.susy_id, self.endpoint.serial + 1)
        other = build_l2_body(
            request.command | 1,
            source=neighbour,
            packet_id=request.packet_id,
            destination=Endpoint(request.source_susy_id, request.source_serial),
        )
        await self._send_l2(link, other, source=self._neighbour_address())

    def _neighbour_address(self) -> str:
        """Bluetooth address of the other inverter of a NetID > 1 plant."""
        raw = bytearray(_address_bytes(self.bt_address))
        raw[0] = (raw[0] + 1) & 0xFF
        return bytes(raw[::-1]).hex(":").upper()

    async def _send_l2(
        self, link: _BluetoothLink, body: bytes, *, source: str | None = None
    ) -> None:
        sender = source or self.bt_address
        wire = frame_l2(body)
        frames = []
        for offset in range(0, len(wire), L1_PIECE):
            last = offset + L1_PIECE >= len(wire)
            command = L1_PPP_LAST if last else L1_PPP_MORE
            frames.append(encode_l1(sender, link.peer, command, wire[offset : offset + L1_PIECE]))
        await asyncio.get_running_loop().sock_sendall(link.sock, b"".join(frames))

    async def close(self) -> None:
        """End every Bluetooth link and close the Speedwire sockets."""
        self.drop_connection()
        for transport in self._udp:
            transport.close()
        self._udp.clear()
        await asyncio.sleep(0)
