"""Victron Bluetooth LE devices without a radio: Instant Readout adverts and GATT peers.

Tests, the demo and the integration's simulated devices need Victron products that behave like
the real ones at the byte level, so the integration's real decoders and sessions run against
them:

* :class:`VictronAdvertiser` makes the manufacturer data an Instant Readout device broadcasts:
  values from a small model of a power system (a sun curve, a battery that charges and
  discharges, an engine that runs twice a day), quantised to the record's field steps, encrypted
  with the device key and an incrementing nonce. ``values`` is the plaintext record exactly as
  ``decode_advertisement`` must return it.
* :class:`FakeVictronGattPeer` is a paired SmartSolar on the other end of a :class:`GattLink`:
  it reads the host's CBOR requests, answers from its register store as a VREG stream cut into
  20-byte ATT notifications with the end marker after each batch, acknowledges control writes,
  honours the keep-alive (no keep-alive within the time last asked for: the link drops), and can
  drop the link at any moment, mid-stream included.
* :class:`FakeSmartShuntPeer` is a SmartShunt's GATT service: one readable and notifying
  characteristic per value and the 60 s keep-alive.

Notifications go out through the running event loop (``call_soon``/``call_later``), never from
inside the host's write, as a Bluetooth stack delivers them; dropping or disconnecting cancels
everything still queued, so a test leaves no timers behind. Nothing here starts a thread.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
import math
import random
from typing import Final

from ..protocols import ProtocolError
from ..protocols.victron_ble import (
    MANUFACTURER_ID,
    RECORD_BATTERY_MONITOR,
    RECORD_DCDC_CONVERTER,
    RECORD_INVERTER,
    RECORD_SOLAR_CHARGER,
    RECORD_VE_BUS,
    UnsupportedRecord,
    encode_advertisement,
)
from ..protocols.victron_gatt import (
    CAPABILITY_LOAD_OUTPUT,
    COMMAND_GET,
    CONTROL_ACK,
    CONTROL_INIT,
    DEFAULT_VREGS,
    END_OF_STREAM,
    SMARTSHUNT_CHARACTERISTICS,
    SMARTSHUNT_KEEP_ALIVE_UUID,
    SMARTSOLAR_BULK_UUID,
    SMARTSOLAR_CONTROL_UUID,
    SMARTSOLAR_SINGLE_UUID,
    VREG_ADJUSTABLE_VOLTAGE_MAX,
    VREG_ADJUSTABLE_VOLTAGE_MIN,
    VREG_BATTERY_CURRENT,
    VREG_BATTERY_TEMPERATURE,
    VREG_BATTERY_VOLTAGE,
    VREG_CAPABILITIES,
    VREG_CHARGER_ERROR,
    VREG_DEVICE_MODE,
    VREG_DEVICE_STATE,
    VREG_FIRMWARE,
    VREG_KEEP_ALIVE,
    VREG_LOAD_CONTROL,
    VREG_LOAD_CURRENT,
    VREG_LOAD_OFFSET_VOLTAGE,
    VREG_LOAD_STATE,
    VREG_LOAD_VOLTAGE,
    VREG_NAMES,
    VREG_PV_POWER,
    VREG_PV_VOLTAGE,
    VREG_UPTIME,
    GattDisconnected,
    GattError,
    GattNotPaired,
    decode_smartshunt,
    decode_vreg,
    decode_vreg_commands,
    encode_vreg,
    encode_vreg_item,
    smartshunt_uuid,
)

__all__ = [
    "ATT_PAYLOAD",
    "SUPPORTED_RECORDS",
    "FakeSmartShuntPeer",
    "FakeVictronGattPeer",
    "VictronAdvertiser",
]

ATT_PAYLOAD: Final = 20
"""Bytes in one notification at the default ATT MTU of 23 (3 bytes of ATT header)."""

_HOUR: Final = 3600.0
_DAY: Final = 86400.0
_SUBSTEP: Final = 60.0  # s of simulated time per integration step
_START_OF_DAY: Final = 10 * _HOUR  # mid-morning: the sun already shines when a demo starts


# --- a small power system ----------------------------------------------------------------------


def _sun(time_of_day: float) -> float:
    """Clear-sky irradiance 0..1: a sine between 06:00 and 18:00, zero at night."""
    elevation = math.sin(math.pi * (time_of_day - 6 * _HOUR) / (12 * _HOUR))
    return math.pow(max(0.0, elevation), 1.3)


@dataclass(slots=True)
class _PowerSystem:
    """A PV charger, a house load and a LiFePO4 battery, integrated in one-minute steps.

    ``scale`` is the system voltage over 12 V: powers scale with it, currents stay alike.
    ``grid`` adds an inverter/charger on a night tariff, ``alternator`` a DC/DC charger fed
    while the engine runs.
    """

    rng: random.Random
    scale: int
    grid: bool = False
    alternator: bool = False
    clock: float = _START_OF_DAY
    cloud: float = 0.9
    soc: float = 0.62
    pv_power: float = 0.0
    charge_power: float = 0.0
    load_power: float = 0.0
    load_output_current: float = 0.6
    yield_today: float = 0.0  # Wh
    temperature: float = 18.0
    capacity_ah: float = 200.0

    @property
    def time_of_day(self) -> float:
        return self.clock % _DAY

    @property
    def engine_running(self) -> bool:
        """The vehicle's engine, which feeds a DC/DC charger: 07-08 h and 17-18 h."""
        hour = self.time_of_day / _HOUR
        return 7.0 <= hour < 8.0 or 17.0 <= hour < 18.0

    @property
    def grid_connected(self) -> bool:
        """The inverter/charger's AC input: night tariff 00-06 h."""
        return self.grid and self.time_of_day < 6 * _HOUR

    @property
    def voltage(self) -> float:
        """Terminal voltage: a flat LiFePO4 curve, sagging under load, rising while charging."""
        cell = 3.2 + 0.12 * self.soc + 0.15 * max(0.0, self.soc - 0.95) / 0.05
        resting = 4 * cell * self.scale
        return resting + self.current * 0.004 * self.scale

    @property
    def current(self) -> float:
        """Battery current, positive while charging."""
        return (self.charge_power - self.load_power) / (13.0 * self.scale)

    @property
    def charge_state(self) -> int:
        """VE.Direct ``CS`` of a charger fed by this system: off, bulk, absorption, float."""
        if self.charge_power < 1.0:
            return 0
        if self.soc < 0.9:
            return 3
        return 4 if self.soc < 0.99 else 5

    def advance(self, seconds: float) -> None:
        """Move simulated time on (at most a day per call: longer gaps just skip ahead)."""
        seconds = min(max(0.0, seconds), _DAY)
        while seconds > 0:
            step = min(seconds, _SUBSTEP)
            seconds -= step
            self._step(step)

    def _step(self, dt: float) -> None:
        day_before = self.clock // _DAY
        self.clock += dt
        if self.clock // _DAY != day_before:
            self.yield_today = 0.0
        drift = self.rng.gauss(0.0, 0.03 * math.sqrt(dt / 60.0))
        self.cloud = min(1.0, max(0.3, self.cloud + drift))
        self.pv_power = 400.0 * self.scale * _sun(self.time_of_day) * self.cloud
        taper = 1.0 if self.soc < 0.9 else max(0.02, (1.0 - self.soc) * 10)
        grid = 1200.0 * self.scale / 4 if self.grid_connected else 0.0
        alternator = 300.0 if self.alternator and self.engine_running else 0.0
        self.charge_power = min(self.pv_power * 0.97 + grid + alternator, 1500.0 * self.scale)
        self.charge_power *= taper
        base = 90.0 if 6 * _HOUR < self.time_of_day < 23 * _HOUR else 35.0
        self.load_power = max(5.0, base * self.scale / 2 + self.rng.gauss(0.0, 10.0))
        self.load_output_current = max(0.0, 0.6 + self.rng.gauss(0.0, 0.05))
        self.yield_today += self.pv_power * 0.97 * dt / _HOUR
        capacity_wh = self.capacity_ah * 12.8 * self.scale
        delta = (self.charge_power - self.load_power) * dt / _HOUR / capacity_wh
        self.soc = min(1.0, max(0.05, self.soc + delta))
        target = 15.0 + 8.0 * _sun(self.time_of_day)
        self.temperature += (target - self.temperature) * min(1.0, dt / 1800.0)


def _q(value: float, step: int) -> float:
    """Round to the field's step (``step`` units per 1), as the decoder will return it."""
    return round(value * step) / step


# --- advertisements ----------------------------------------------------------------------------

SUPPORTED_RECORDS: Final = frozenset(
    {
        RECORD_SOLAR_CHARGER,
        RECORD_BATTERY_MONITOR,
        RECORD_INVERTER,
        RECORD_DCDC_CONVERTER,
        RECORD_VE_BUS,
    }
)
"""Record types :class:`VictronAdvertiser` can send."""


class VictronAdvertiser:
    """An Instant Readout device: call :meth:`next_advertisement` as often as it would send.

    ``seed`` makes the values reproducible; ``time_scale`` speeds simulated time up (a day in
    minutes for a demo); ``start_time_of_day`` (seconds after midnight) is where the simulated day
    starts, mid-morning unless given. Only the model runs faster: adverts still go out as often
    as :meth:`next_advertisement` is called. The nonce starts at a random value and increments
    with every advert.
    """

    def __init__(
        self,
        record_type: int,
        *,
        key: bytes,
        model_id: int,
        seed: int | None = None,
        time_scale: float = 1.0,
        start_time_of_day: float | None = None,
    ) -> None:
        if record_type not in SUPPORTED_RECORDS:
            raise UnsupportedRecord(f"no simulation for record type 0x{record_type:02X}")
        if len(key) != 16:
            raise ProtocolError(f"advertisement key must be 16 bytes, not {len(key)}")
        self.record_type = record_type
        self.key = bytes(key)
        self.model_id = model_id
        if not time_scale > 0:
            raise ValueError("time_scale must be positive")
        start = _START_OF_DAY if start_time_of_day is None else start_time_of_day % _DAY
        if not math.isfinite(start):
            raise ValueError("start_time_of_day must be finite")
        self.time_scale = time_scale
        rng = random.Random(seed)
        self._system = _PowerSystem(
            rng,
            scale=4 if record_type == RECORD_VE_BUS else 1,
            grid=record_type == RECORD_VE_BUS,
            alternator=record_type == RECORD_DCDC_CONVERTER,
            clock=start,
        )
        self._rng = rng
        self.nonce = rng.randrange(0x10000)
        self._last: float | None = None
        self.values: dict[str, float | int | None] = self._record()
        """The plaintext of the last advertisement, as ``decode_advertisement`` returns it."""

    @property
    def time_of_day(self) -> float:
        """The model's simulated time of day, seconds after midnight."""
        return self._system.time_of_day

    def next_advertisement(self, now: float) -> bytes:
        """Advance the model to ``now`` (seconds, any monotonic clock) and encode an advert."""
        if self._last is not None:
            self._system.advance((now - self._last) * self.time_scale)
        self._last = now
        self.values = self._record()
        self.nonce = (self.nonce + 1) & 0xFFFF
        return encode_advertisement(
            self.record_type, self.values, self.key, model_id=self.model_id, nonce=self.nonce
        )

    def next_manufacturer_data(self, now: float) -> dict[int, bytes]:
        """The advert as a Bluetooth stack reports it: ``{0x02E1: data}``."""
        return {MANUFACTURER_ID: self.next_advertisement(now)}

    def _record(self) -> dict[str, float | int | None]:
        builders: dict[int, Callable[[], dict[str, float | int | None]]] = {
            RECORD_SOLAR_CHARGER: self._solar,
            RECORD_BATTERY_MONITOR: self._battery_monitor,
            RECORD_INVERTER: self._inverter,
            RECORD_DCDC_CONVERTER: self._dcdc,
            RECORD_VE_BUS: self._ve_bus,
        }
        return {
            "record_type": self.record_type,
            "model_id": self.model_id,
            **builders[self.record_type](),
        }

    def _solar(self) -> dict[str, float | int | None]:
        s = self._system
        pv = round(s.pv_power)
        voltage = s.voltage
        output = s.pv_power * 0.97 / voltage if pv else 0.0
        return {
            "charge_state": s.charge_state,
            "charger_error": 0,
            "battery_voltage": _q(voltage, 100),
            "battery_current": _q(output - s.load_output_current, 10),
            "yield_today": round(s.yield_today / 10) * 10,
            "pv_power": pv,
            "load_current": _q(s.load_output_current, 10),
        }

    def _battery_monitor(self) -> dict[str, float | int | None]:
        s = self._system
        current = s.current
        remaining_ah = s.soc * s.capacity_ah
        time_to_go = min(0xFFFE, round(remaining_ah / -current * 60)) if current < -0.1 else None
        return {
            "time_to_go": time_to_go,
            "voltage": _q(s.voltage, 100),
            "alarm": 0,
            "aux_mode": 2,
            "current": _q(current, 1000),
            "consumed_ah": -round((1.0 - s.soc) * s.capacity_ah * 10) / 10,
            "soc": _q(s.soc * 100, 10),
            "starter_voltage": None,
            "midpoint_voltage": None,
            "temperature": _q(s.temperature, 100),
        }

    def _dcdc(self) -> dict[str, float | int | None]:
        s = self._system
        running = s.engine_running
        return {
            "charge_state": (3 if s.soc < 0.9 else 5) if running else 0,
            "charger_error": 0,
            "input_voltage": _q(14.1 + self._rng.gauss(0.0, 0.05) if running else 12.6, 100),
            "output_voltage": _q(max(s.voltage, 14.2) if running else s.voltage, 100),
            "off_reason": 0 if running else 0x80,  # engine shutdown
        }

    def _inverter(self) -> dict[str, float | int | None]:
        s = self._system
        apparent = round(s.load_power * 1.1)
        ac_voltage = _q(230.0 + self._rng.gauss(0.0, 0.5), 100)
        return {
            "device_state": 9,  # inverting
            "alarm": 0,
            "battery_voltage": _q(s.voltage, 100),
            "ac_apparent_power": apparent,
            "ac_voltage": ac_voltage,
            "ac_current": _q(apparent / ac_voltage, 10),
        }

    def _ve_bus(self) -> dict[str, float | int | None]:
        s = self._system
        out = round(s.load_power)
        grid = s.grid_connected
        charging = round(s.charge_power - s.pv_power * 0.97) if grid else 0
        return {
            "device_state": s.charge_state if grid else 9,
            "error": 0,
            "battery_current": _q(s.current, 10),
            "battery_voltage": _q(s.voltage, 100),
            "ac_in_state": 0 if grid else 2,
            "ac_in_power": out + charging if grid else 0,
            "ac_out_power": out,
            "alarm": 0,
            "battery_temperature": round(s.temperature),
            "soc": round(s.soc * 100),
        }


# --- GATT peers --------------------------------------------------------------------------------


class _FakePeer:
    """What both GATT peers share: pairing, subscriptions, queued notifications, dropping.

    Implements :class:`~..protocols.victron_gatt.GattLink`. ``disconnected_callback`` is called
    once when the link goes down for any reason, as bleak's is.
    """

    def __init__(self, *, paired: bool, latency: float) -> None:
        self.paired = paired
        self.latency = latency
        self.disconnected_callback: Callable[[], None] | None = None
        self.writes: list[tuple[str, bytes]] = []
        """Every write the host made, in order."""
        self.notifications_sent = 0
        self._connected = True
        self._subscriptions: dict[str, Callable[[bytes], None]] = {}
        self._queued: deque[asyncio.Handle] = deque()  # in delivery order
        self._next_delivery = 0.0
        self._drop_after: int | None = None
        self._keep_alive_timer: asyncio.TimerHandle | None = None

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def characteristics(self) -> frozenset[str]:  # pragma: no cover - overridden
        raise NotImplementedError

    def _check(self, uuid: str) -> None:
        if not self._connected:
            raise GattDisconnected("not connected")
        if not self.paired:
            raise GattNotPaired("insufficient authentication: pair with the passkey first")
        if uuid not in self.characteristics:
            raise GattError(f"no characteristic {uuid}")

    async def start_notify(self, uuid: str, callback: Callable[[bytes], None]) -> None:
        self._check(uuid)
        self._subscriptions[uuid] = callback

    async def disconnect(self) -> None:
        self._go_down()

    def send_raw(self, data: bytes, uuid: str) -> None:
        """Notify arbitrary bytes on a characteristic (garbage, hand-made values)."""
        self._notify(uuid, bytes(data))

    def drop(self) -> None:
        """The device goes away: out of range, switched off, or it dropped the link itself."""
        self._go_down()

    def drop_after(self, notifications: int) -> None:
        """Drop the link once ``notifications`` more notifications went out (0: at the next)."""
        self._drop_after = notifications

    def _go_down(self) -> None:
        if not self._connected:
            return
        self._connected = False
        for handle in self._queued:
            handle.cancel()
        self._queued.clear()
        if self._keep_alive_timer is not None:
            self._keep_alive_timer.cancel()
            self._keep_alive_timer = None
        if self.disconnected_callback is not None:
            self.disconnected_callback()

    def _arm_keep_alive(self, seconds: float) -> None:
        """(Re)start the timer after which the device drops a link it hears nothing from."""
        if self._keep_alive_timer is not None:
            self._keep_alive_timer.cancel()
        loop = asyncio.get_running_loop()
        self._keep_alive_timer = loop.call_later(seconds, self._go_down)

    def _notify(self, uuid: str, data: bytes) -> None:
        """Queue one notification behind those already queued (order is kept)."""
        loop = asyncio.get_running_loop()
        if self.latency <= 0:
            self._queued.append(loop.call_soon(self._deliver, uuid, data))
            return
        self._next_delivery = max(loop.time(), self._next_delivery) + self.latency
        delay = self._next_delivery - loop.time()
        self._queued.append(loop.call_later(delay, self._deliver, uuid, data))

    def _deliver(self, uuid: str, data: bytes) -> None:
        self._queued.popleft()  # a link that went down cancelled everything still queued
        if self._drop_after is not None:
            if self._drop_after <= 0:
                self._drop_after = None
                self._go_down()
                return
            self._drop_after -= 1
        callback = self._subscriptions.get(uuid)
        if callback is not None:
            self.notifications_sent += 1
            callback(data)


_SOLAR_UUIDS: Final = frozenset(
    (SMARTSOLAR_CONTROL_UUID, SMARTSOLAR_SINGLE_UUID, SMARTSOLAR_BULK_UUID)
)


def _solar_registers(seed: int | None, has_load_output: bool) -> dict[int, bytes]:
    """A SmartSolar MPPT 75|15 at mid-morning, its registers as the device stores them."""
    system = _PowerSystem(random.Random(seed), scale=1)
    system.advance(_SUBSTEP)
    pv_power = system.pv_power
    values: dict[int, float | str | None] = {
        VREG_FIRMWARE: "1.65",
        VREG_CAPABILITIES: CAPABILITY_LOAD_OUTPUT if has_load_output else 0,
        VREG_DEVICE_MODE: 1,
        VREG_DEVICE_STATE: system.charge_state,
        VREG_UPTIME: 86_400 + 3_723,
        VREG_BATTERY_VOLTAGE: system.voltage,
        VREG_BATTERY_CURRENT: pv_power * 0.97 / system.voltage - system.load_output_current,
        VREG_LOAD_STATE: 1,
        VREG_LOAD_VOLTAGE: system.voltage - 0.02,
        VREG_LOAD_CONTROL: 1,
        VREG_LOAD_OFFSET_VOLTAGE: 0.0,
        VREG_LOAD_CURRENT: system.load_output_current,
        VREG_PV_VOLTAGE: 17.0 + 3.0 * system.cloud,
        VREG_PV_POWER: pv_power,
        VREG_BATTERY_TEMPERATURE: None,  # no sensor on the network
        VREG_ADJUSTABLE_VOLTAGE_MIN: 8.0,
        VREG_ADJUSTABLE_VOLTAGE_MAX: 17.4,
        VREG_CHARGER_ERROR: 0,
    }
    return {vreg: encode_vreg(vreg, value) for vreg, value in values.items()}


class FakeVictronGattPeer(_FakePeer):
    """A paired SmartSolar's VREG service, in-process.

    ``registers`` maps VREG → little-endian bytes (a mid-morning MPPT 75|15 by default);
    registers it does not hold are not answered. ``chunk_size`` is the notification size,
    ``latency`` the time between notifications (0: next loop iteration). With
    ``has_load_output=False`` the capabilities register says so and load settings are ignored.
    """

    def __init__(
        self,
        registers: Mapping[int, bytes] | None = None,
        *,
        paired: bool = True,
        chunk_size: int = ATT_PAYLOAD,
        latency: float = 0.0,
        end_marker: bool = True,
        has_load_output: bool = True,
        seed: int | None = None,
    ) -> None:
        super().__init__(paired=paired, latency=latency)
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least one byte")
        self.registers: dict[int, bytes] = (
            dict(registers) if registers is not None else _solar_registers(seed, has_load_output)
        )
        self.chunk_size = chunk_size
        self.end_marker = end_marker
        self.has_load_output = has_load_output
        self.keep_alive_ms: int | None = None
        """The keep-alive the host last asked for (None: none yet, so no timeout runs)."""
        self.keep_alives = 0
        self.bad_requests = 0
        self._requests = b""

    @property
    def characteristics(self) -> frozenset[str]:
        return _SOLAR_UUIDS

    @property
    def values(self) -> dict[str, float | int | str | None]:
        """The default poll's registers decoded, named as a poll names them."""
        return {
            VREG_NAMES[vreg]: decode_vreg(vreg, self.registers[vreg])
            for vreg in DEFAULT_VREGS
            if vreg in self.registers
        }

    def set_value(self, vreg: int, value: float | str | None) -> None:
        """Store a register from its value in SI units."""
        self.registers[vreg] = encode_vreg(vreg, value)

    def send_raw(self, data: bytes, uuid: str = SMARTSOLAR_BULK_UUID) -> None:
        """Notify arbitrary bytes (garbage, hand-made items) on a stream characteristic."""
        super().send_raw(data, uuid)

    async def read(self, uuid: str) -> bytes:
        self._check(uuid)
        return b""

    async def write(self, uuid: str, data: bytes, response: bool) -> None:
        self._check(uuid)
        data = bytes(data)
        self.writes.append((uuid, data))
        if uuid == SMARTSOLAR_CONTROL_UUID:
            if data in CONTROL_INIT:
                self._notify(SMARTSOLAR_CONTROL_UUID, CONTROL_ACK)
            return
        self._requests += data
        try:
            commands, used = decode_vreg_commands(self._requests)
        except ProtocolError:
            self.bad_requests += 1
            self._requests = b""
            return
        self._requests = self._requests[used:]
        answer = b""
        for command in commands:
            if command.command == COMMAND_GET:
                for vreg in command.vregs:
                    if vreg in self.registers:
                        answer += encode_vreg_item(vreg, self.registers[vreg], seq=command.seq)
            else:  # a set always carries its value
                answer += self._set(command.vregs[0], command.value or b"", command.seq)
        if answer:
            if self.end_marker:
                answer += END_OF_STREAM
            self._stream(answer)

    def _set(self, vreg: int, value: bytes, seq: int) -> bytes:
        """Apply a set; the device echoes the register's new value (nothing for keep-alive)."""
        if vreg == VREG_KEEP_ALIVE:
            if len(value) == 2:
                self.keep_alives += 1
                self.keep_alive_ms = int.from_bytes(value, "little")
                self._arm_keep_alive(self.keep_alive_ms / 1000)
            return b""
        if vreg != VREG_LOAD_CONTROL or not self.has_load_output:
            return b""
        if len(value) == 1 and value[0] <= 7:
            self.registers[VREG_LOAD_CONTROL] = value
            self.registers[VREG_LOAD_STATE] = b"\x00" if value[0] == 0 else b"\x01"
        return encode_vreg_item(vreg, self.registers[VREG_LOAD_CONTROL], seq=seq)

    def _stream(self, data: bytes) -> None:
        """Cut a stream into notifications: one on 0003 if it fits, else all on 0004."""
        uuid = SMARTSOLAR_SINGLE_UUID if len(data) <= self.chunk_size else SMARTSOLAR_BULK_UUID
        for start in range(0, len(data), self.chunk_size):
            self._notify(uuid, data[start : start + self.chunk_size])


class FakeSmartShuntPeer(_FakePeer):
    """A paired SmartShunt's GATT service, in-process.

    Values are kept in SI units under the names of ``SMARTSHUNT_CHARACTERISTICS``. The device
    drops the link 60 s after connecting unless the host writes the keep-alive, and then when
    the interval it wrote passes without another one.
    """

    def __init__(
        self,
        values: Mapping[str, float | int | None] | None = None,
        *,
        paired: bool = True,
        latency: float = 0.0,
        seed: int | None = None,
        initial_timeout: float = 60.0,
    ) -> None:
        super().__init__(paired=paired, latency=latency)
        self._values: dict[str, float | int | None] = (
            dict(values) if values is not None else _shunt_values(seed)
        )
        self.initial_timeout = initial_timeout
        self.keep_alive_ms: int | None = None
        self.keep_alives = 0
        self._armed = False
        self._uuids = {
            smartshunt_uuid(vreg): name for name, vreg in SMARTSHUNT_CHARACTERISTICS.items()
        }

    @property
    def characteristics(self) -> frozenset[str]:
        return frozenset((*self._uuids, SMARTSHUNT_KEEP_ALIVE_UUID))

    @property
    def values(self) -> dict[str, float | int | None]:
        """The values as a reader decodes them (quantised to each characteristic's step)."""
        return {
            name: decode_smartshunt(uuid, self._raw(name)) for uuid, name in self._uuids.items()
        }

    def update(self, **values: float | None) -> None:
        """Change values; subscribers are notified of each changed characteristic."""
        for name, value in values.items():
            if name not in SMARTSHUNT_CHARACTERISTICS:
                raise KeyError(name)
            before = self._raw(name)
            self._values[name] = value
            after = self._raw(name)
            if after != before and self._connected:
                self._notify(smartshunt_uuid(SMARTSHUNT_CHARACTERISTICS[name]), after)

    def _raw(self, name: str) -> bytes:
        return encode_vreg(SMARTSHUNT_CHARACTERISTICS[name], self._values.get(name))

    def _check(self, uuid: str) -> None:
        super()._check(uuid)
        if not self._armed:
            self._armed = True
            self._arm_keep_alive(self.initial_timeout)

    async def read(self, uuid: str) -> bytes:
        self._check(uuid)
        if uuid == SMARTSHUNT_KEEP_ALIVE_UUID:
            return (self.keep_alive_ms or 0).to_bytes(2, "little")
        return self._raw(self._uuids[uuid])

    async def write(self, uuid: str, data: bytes, response: bool) -> None:
        self._check(uuid)
        data = bytes(data)
        self.writes.append((uuid, data))
        if uuid != SMARTSHUNT_KEEP_ALIVE_UUID:
            raise GattError(f"{uuid} is read-only")
        if len(data) != 2:
            raise GattError("the keep-alive is a u16 in milliseconds")
        self.keep_alives += 1
        self.keep_alive_ms = int.from_bytes(data, "little")
        self._arm_keep_alive(self.keep_alive_ms / 1000)


def _shunt_values(seed: int | None) -> dict[str, float | int | None]:
    """A SmartShunt on a 12 V LiFePO4 house battery in the evening, discharging."""
    system = _PowerSystem(random.Random(seed), scale=1, clock=20 * _HOUR)
    system.advance(_SUBSTEP)
    current = system.current
    return {
        "soc": _q(system.soc * 100, 100),
        "voltage": _q(system.voltage, 100),
        "power": round(system.voltage * current),
        "current": _q(current, 1000),
        "consumed_ah": -_q((1.0 - system.soc) * system.capacity_ah, 10),
        "time_to_go": round(system.soc * system.capacity_ah / -current * 60)
        if current < 0
        else None,
    }
