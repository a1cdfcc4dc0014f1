"""A VE.Direct device on a pseudo-terminal: a SmartSolar MPPT or a BMV-712 Smart.

Home Assistant tests, ``scripts/develop`` and the integration's "simulated device" option all
need a VE.Direct device that behaves like the real one on the wire, so the integration runs its
real serial client and codec against it. The simulator therefore speaks both protocols over a
kernel tty (:class:`~.pty.PtySerialPort`):

* the text protocol: checksummed blocks every ``interval`` seconds, with the labels, their order
  and the block split of the real firmware (compare ``testdata/vedirect``);
* the HEX protocol: ping, application version, product id, get/set on a register store, framing
  error replies, and - on the MPPT, like firmware 1.17 and later - ``:A`` async messages for
  changed registers while a host sends HEX traffic;
* remote battery sense on the MPPT (registers 0x2002/0x2003), with the 60 s timeout and the
  0xFFFF/0x7FFF release values, shown in network status register 0x200F.

The values follow simple physical models so that a newcomer sees plausible, moving numbers: the
MPPT follows a sun curve and charges bulk → absorption → float, the BMV integrates a battery's
current into SOC, consumed Ah, energy counters and time-to-go. ``time_scale`` speeds simulated
time up (a whole day in minutes), the protocol's own timeouts included; ``sun_time_scale`` speeds
up only the day (sun, charging, battery) and leaves the wire's timing real, for a demo whose
clients run at real time; ``start_time_of_day`` sets where the day starts. ``seed`` makes every
value reproducible, because each block advances the models by a fixed simulated step, independent
of scheduling jitter.

Faults are available on demand: garbage on the line, a silent device, corrupt checksums and an
unplugged cable. Nothing here blocks the event loop and no threads are started.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
import contextlib
from dataclasses import dataclass
import math
import random
from typing import Final, Literal

from ..protocols import ProtocolError
from ..protocols.vedirect import (
    FRAMING_ERROR_VALUE,
    HexCommand,
    HexFlags,
    HexResponse,
    decode_hex,
    encode_hex,
)
from .pty import PtySerialPort

__all__ = [
    "BMV_PRODUCT_ID",
    "FRAMING_ERROR_REPLY",
    "MPPT_PRODUCT_ID",
    "VeDirectSimulator",
    "encode_text_block",
]

MPPT_PRODUCT_ID: Final = 0xA053
"""SmartSolar MPPT 75|15: 12/24 V, 15 A, with load output and VE.Smart networking."""
BMV_PRODUCT_ID: Final = 0xA381
"""BMV-712 Smart."""

FRAMING_ERROR_REPLY: Final = encode_hex(HexResponse.ERROR, value=FRAMING_ERROR_VALUE)
"""``:4AAAAFD``: what a device answers to a HEX line it cannot parse (bad check, odd length)."""

_MPPT_FIRMWARE: Final = 0x161  # 1.61: has OR (>= 1.44), async messages and remote sense
_BMV_FIRMWARE: Final = 0x416  # 4.16
_APP_FIRMWARE_TYPE: Final = 0x4000  # top bits 01 of the ping reply: application firmware

_REG_PRODUCT_ID: Final = 0x0100
_REG_SERIAL: Final = 0x010A
_REG_MODEL_NAME: Final = 0x010B
_REG_CAPABILITIES: Final = 0x0140
_REG_DEVICE_MODE: Final = 0x0200
_REG_DEVICE_STATE: Final = 0x0201
_REG_OFF_REASON: Final = 0x0207
_REG_BATTERY_TEMPERATURE: Final = 0xEDEC
_REG_MAX_CURRENT: Final = 0xEDF0
_REG_FLOAT_VOLTAGE: Final = 0xEDF6
_REG_ABSORPTION_VOLTAGE: Final = 0xEDF7
_REG_LOAD_CONTROL: Final = 0xEDAB
_REG_LOAD_LOW: Final = 0xED9C
_REG_LOAD_HIGH: Final = 0xED9D
_REG_VOLTAGE_SENSE: Final = 0x2002
_REG_TEMPERATURE_SENSE: Final = 0x2003
_REG_NETWORK_STATUS: Final = 0x200F
_REG_CURRENT_LIMIT: Final = 0x2015
_REG_CAPACITY: Final = 0x1000

_VOLTAGE_SENSE_RELEASE: Final = 0xFFFF
_TEMPERATURE_SENSE_RELEASE: Final = 0x7FFF
_SENSE_TIMEOUT: Final = 60.0  # s: "Both have a timeout of 60s" [VEHEX, remote sensor data]
_SENSE_WINDOW: Final = 5.0  # V: sensed voltage must be within ±5 V of the terminals
_ASYNC_QUIET: Final = 120.0  # s: async messages stop 2 min after the last incoming HEX
_NETWORK_STANDALONE: Final = 0x04
_NETWORK_TSENSE: Final = 0x40
_NETWORK_VSENSE: Final = 0x80

_MAX_RX_LINE: Final = 512  # bytes of an unterminated incoming line kept before giving up
_GARBAGE_LENGTH: Final = 48
_DAY: Final = 86400.0
_HOUR: Final = 3600.0
_SUBSTEP: Final = 60.0  # s of simulated time per integration step: stable for any time_scale
_START_OF_DAY: Final = 10 * _HOUR  # the simulation starts mid-morning, so the sun already shines
_KELVIN: Final = 273.15


def encode_text_block(fields: Iterable[tuple[str, str]], *, corrupt: bool = False) -> bytes:
    """Frame text fields as one block: ``\\r\\n<label>\\t<value>`` … ``\\r\\nChecksum\\t<byte>``.

    The checksum byte makes all bytes of the block sum to 0 mod 256; ``corrupt`` offsets it by
    one so a receiver must reject the block. Labels and values are sent as Latin-1.
    """
    body = b"".join(
        b"\r\n" + label.encode("latin-1") + b"\t" + value.encode("latin-1")
        for label, value in fields
    )
    body += b"\r\nChecksum\t"
    check = -sum(body) & 0xFF
    if corrupt:
        check = (check + 1) & 0xFF
    return body + bytes((check,))


@dataclass(frozen=True, slots=True)
class _Register:
    """Shape of one HEX register: width in bytes (0: free-length string), sign, writability."""

    size: int
    signed: bool = False
    writable: bool = False
    low: int | None = None
    high: int | None = None
    report_async: bool = False

    def pack(self, value: int) -> bytes:
        """Encode little-endian, clamped to what the register can hold."""
        bits = 8 * self.size
        if self.signed:
            value = max(-(1 << (bits - 1)), min((1 << (bits - 1)) - 1, value))
        else:
            value = max(0, min((1 << bits) - 1, value))
        return value.to_bytes(self.size, "little", signed=self.signed)

    def unpack(self, data: bytes) -> int:
        """Decode the little-endian value."""
        return int.from_bytes(data, "little", signed=self.signed)

    def accepts(self, data: bytes) -> bool:
        """Whether a set with this value is well-formed and in range."""
        if self.size == 0 or len(data) != self.size:
            return False
        value = self.unpack(data)
        if self.low is not None and value < self.low:
            return False
        return self.high is None or value <= self.high


_U8 = _Register(1)
_U16 = _Register(2)
_S16 = _Register(2, signed=True)
_U32 = _Register(4)
_S32 = _Register(4, signed=True)
_TEXT = _Register(0)
_U8_ASYNC = _Register(1, report_async=True)
_U16_ASYNC = _Register(2, report_async=True)
_S16_ASYNC = _Register(2, signed=True, report_async=True)
_U32_ASYNC = _Register(4, report_async=True)

_MPPT_REGISTERS: Final[dict[int, _Register]] = {
    _REG_PRODUCT_ID: _U32,
    _REG_SERIAL: _TEXT,
    _REG_MODEL_NAME: _TEXT,
    _REG_CAPABILITIES: _U32,
    _REG_DEVICE_MODE: _Register(1, writable=True, high=4, report_async=True),
    _REG_DEVICE_STATE: _U8_ASYNC,
    _REG_OFF_REASON: _U32_ASYNC,
    0xEDFB: _Register(2, writable=True, high=2400),  # absorption time limit, 0.01 h
    _REG_ABSORPTION_VOLTAGE: _Register(2, writable=True, low=800, high=1740),
    _REG_FLOAT_VOLTAGE: _Register(2, writable=True, low=800, high=1740),
    0xEDF2: _Register(2, signed=True, writable=True, low=-2100, high=2100),  # temp comp
    0xEDF1: _Register(1, writable=True),  # battery type
    _REG_MAX_CURRENT: _Register(2, writable=True, high=150, report_async=True),
    0xEDEF: _U8,  # battery system voltage, V
    _REG_BATTERY_TEMPERATURE: _U16_ASYNC,
    0xEDDD: _U32,  # system yield, 0.01 kWh
    0xEDDC: _U32,  # user yield, 0.01 kWh
    0xEDDB: _S16_ASYNC,  # internal temperature, 0.01 °C
    0xEDDA: _U8_ASYNC,  # error code
    0xEDD7: _U16_ASYNC,  # charger current, 0.1 A
    0xEDD5: _U16_ASYNC,  # charger voltage, 0.01 V
    0xEDD4: _U8,  # additional charger state
    0xEDD3: _U16_ASYNC,  # yield today, 0.01 kWh
    0xEDD2: _U16_ASYNC,  # max power today, W
    0xEDD1: _U16,  # yield yesterday, 0.01 kWh
    0xEDD0: _U16,  # max power yesterday, W
    0xEDBC: _U32_ASYNC,  # panel power, 0.01 W
    0xEDBB: _U16_ASYNC,  # panel voltage, 0.01 V
    0xEDBD: _U16_ASYNC,  # panel current, 0.1 A
    0xEDB3: _U8_ASYNC,  # tracker mode
    0xEDAD: _U16_ASYNC,  # load current, 0.1 A
    _REG_LOAD_CONTROL: _Register(1, writable=True, report_async=True),
    0xEDA9: _U16,  # load output voltage, 0.01 V
    0xEDA8: _U8_ASYNC,  # load output state
    0xED91: _U8_ASYNC,  # load output off reason
    _REG_LOAD_HIGH: _Register(2, writable=True, low=800, high=1740),  # switch-on level
    _REG_LOAD_LOW: _Register(2, writable=True, low=800, high=1740),  # switch-off level
    0x2001: _U16_ASYNC,  # charge voltage set-point, 0.01 V
    _REG_VOLTAGE_SENSE: _Register(2, writable=True, report_async=True),
    _REG_TEMPERATURE_SENSE: _Register(2, signed=True, writable=True, report_async=True),
    _REG_NETWORK_STATUS: _U8_ASYNC,
    _REG_CURRENT_LIMIT: _Register(2, writable=True, report_async=True),
    0x2027: _Register(4, writable=True),  # total DC input power, 0.01 W
    0x2030: _U8_ASYNC,  # solar activity
    0x2031: _U16,  # time of day, minutes
}

_BMV_REGISTERS: Final[dict[int, _Register]] = {
    _REG_PRODUCT_ID: _U32,
    _REG_SERIAL: _TEXT,
    _REG_MODEL_NAME: _TEXT,
    0xED8D: _S16,  # battery voltage, 0.01 V
    0xED8F: _S16,  # battery current, 0.1 A
    0xED8C: _S32,  # battery current, mA
    0xED8E: _S16,  # power, W
    0xEEFF: _S32,  # consumed, 0.1 Ah
    0x0FFF: _U16,  # state of charge, 0.01 %
    0x0FFE: _U16,  # time to go, min (0xFFFF: infinite)
    0xED7D: _U16,  # aux (starter) voltage, 0.01 V
    _REG_BATTERY_TEMPERATURE: _U16,  # 0.01 K
    _REG_CAPACITY: _Register(2, writable=True, low=1, high=9999),  # battery capacity, Ah
}

_MPPT_CAPABILITIES: Final = sum(1 << bit for bit in (0, 2, 4, 8, 9, 11, 12, 14, 15, 16, 18))


def _sun(time_of_day: float) -> float:
    """Clear-sky irradiance 0..1: a sine between 06:00 and 18:00, zero at night."""
    elevation = math.sin(math.pi * (time_of_day - 6 * _HOUR) / (12 * _HOUR))
    return math.pow(max(0.0, elevation), 1.3)


class _Model:
    """Common part of the device models: simulated clock, noise and the register store."""

    def __init__(
        self,
        rng: random.Random,
        registers: dict[int, bytes],
        layout: dict[int, _Register],
        start: float,
    ) -> None:
        self.rng = rng
        self.registers = registers
        self.layout = layout
        self.clock = start
        self.cloud = 0.9
        self.reading_voltage = 0.0
        self.reading_current = 0.0

    def get(self, register: int) -> int:
        return self.layout[register].unpack(self.registers[register])

    def put(self, register: int, value: int) -> None:
        self.registers[register] = self.layout[register].pack(value)

    def noise(self, scale: float) -> float:
        return self.rng.gauss(0.0, scale)

    def advance_weather(self, dt: float) -> None:
        """A bounded random walk of cloud cover, in steps that grow with simulated time."""
        step = 0.04 * math.sqrt(min(dt, 600.0) / 60.0)
        self.cloud = min(1.0, max(0.45, self.cloud + self.rng.gauss(0.0, step)))

    def step(self, dt: float) -> None:
        """Advance simulated time in short integration steps, then take the block's readings."""
        remaining = dt
        while True:
            piece = min(remaining, _SUBSTEP)
            self.advance_weather(piece)
            self.substep(piece)
            remaining -= piece
            if remaining <= 0:
                break
        self.measure()

    def substep(self, dt: float) -> None:
        raise NotImplementedError

    def measure(self) -> None:
        raise NotImplementedError

    def blocks(self) -> list[list[tuple[str, str]]]:
        raise NotImplementedError

    def settings_changed(self) -> None:
        """React at once to a HEX set (without consuming randomness)."""


class _MpptModel(_Model):
    """SmartSolar MPPT 75|15 on a 12 V 100 Ah lead battery with a small DC load."""

    PANEL_PEAK_W: Final = 230.0
    EFFICIENCY: Final = 0.97
    CAPACITY_AH: Final = 100.0
    RESISTANCE: Final = 0.025  # Ω, battery plus cables
    TAIL_CURRENT: Final = 2.0  # A: absorption ends below this (2 % of capacity)

    def __init__(
        self,
        rng: random.Random,
        registers: dict[int, bytes],
        serial_number: str,
        start: float = _START_OF_DAY,
    ) -> None:
        super().__init__(rng, registers, _MPPT_REGISTERS, start)
        self.soc = 0.55
        self.state = 3
        self.absorption_time = 0.0
        self.voltage = 12.4
        self.battery_current = 0.0
        self.charger_current = 0.0
        self.load_current = 0.0
        self.panel_voltage = 0.0
        self.panel_power = 0.0
        self.tracker = 0
        self.off_reason = 0
        self.load_on = True
        self.load_low = False
        self.internal_temperature = 24.0
        self.yield_total_wh = 123_456.0 + rng.uniform(0, 50_000)
        self.yield_today_wh = 0.0
        self.max_power_today = 0
        self.yield_yesterday_wh = 480.0 + rng.uniform(0, 400)
        self.max_power_yesterday = 150 + rng.randrange(60)
        self.day_sequence = rng.randrange(365)
        self.voltage_sense: float | None = None
        self.temperature_sense: float | None = None
        registers[_REG_PRODUCT_ID] = b"\x00" + MPPT_PRODUCT_ID.to_bytes(2, "little") + b"\xff"
        registers[_REG_SERIAL] = serial_number.encode("ascii")
        registers[_REG_MODEL_NAME] = b"SmartSolar Charger MPPT 75/15"
        self.put(_REG_CAPABILITIES, _MPPT_CAPABILITIES)
        self.put(_REG_DEVICE_MODE, 1)
        self.put(0xEDFB, 600)
        self.put(_REG_ABSORPTION_VOLTAGE, 1440)
        self.put(_REG_FLOAT_VOLTAGE, 1380)
        self.put(0xEDF2, -1620)
        self.put(0xEDF1, 1)
        self.put(_REG_MAX_CURRENT, 150)
        self.put(0xEDEF, 12)
        self.put(_REG_LOAD_CONTROL, 1)
        self.put(_REG_LOAD_LOW, 1150)
        self.put(_REG_LOAD_HIGH, 1260)
        self.put(_REG_VOLTAGE_SENSE, _VOLTAGE_SENSE_RELEASE)
        self.put(_REG_TEMPERATURE_SENSE, _TEMPERATURE_SENSE_RELEASE)
        self.put(_REG_CURRENT_LIMIT, 0xFFFF)
        self.put(0x2027, 0xFFFFFFFF)  # "not available": no network master sums PV power here
        self.put(0xEDD4, 0)
        self.put(0xEDDA, 0)
        self.step(0.0)

    # -- physics ---------------------------------------------------------------------------

    @staticmethod
    def open_circuit(soc: float) -> float:
        return 11.9 + 0.9 * soc

    @staticmethod
    def charge_resistance(soc: float) -> float:
        """Apparent resistance while charging: acceptance falls steeply as the battery fills.

        This makes bulk end at the absorption voltage around 85 % and the absorption current
        taper to the tail current near 97 %, as a lead battery does.
        """
        return 0.02 + 2.5 * max(0.0, soc - 0.8) ** 2 / 0.04

    def charge_limit(self) -> float:
        limit = self.get(_REG_MAX_CURRENT)
        remote = self.get(_REG_CURRENT_LIMIT)
        if remote != 0xFFFF:
            limit = min(limit, remote)
        return limit / 10.0

    def set_points(self) -> tuple[float, float]:
        absorption = self.get(_REG_ABSORPTION_VOLTAGE) / 100.0
        floating = self.get(_REG_FLOAT_VOLTAGE) / 100.0
        if self.temperature_sense is not None:
            # Temperature compensation around 25 °C (0xEDF2 in 0.01 mV/K).
            shift = self.get(0xEDF2) / 100_000.0 * (self.temperature_sense - 25.0)
            absorption += shift
            floating += shift
        return absorption, floating

    def voltage_sense_used(self) -> bool:
        """Remote voltage is used only within ±5 V of the charger's own terminal voltage."""
        sense = self.voltage_sense
        return sense is not None and abs(sense - self.voltage) <= _SENSE_WINDOW

    def measure(self) -> None:
        self.update_load()
        self.take_readings()

    def substep(self, dt: float) -> None:
        day_before = int(self.clock // _DAY)
        self.clock += dt
        if int(self.clock // _DAY) != day_before:
            self.new_day()
        time_of_day = self.clock % _DAY
        available = self.PANEL_PEAK_W * _sun(time_of_day) * self.cloud * self.EFFICIENCY
        switched_on = self.get(_REG_DEVICE_MODE) == 1
        load = self.load_current if self.load_on else 0.0
        ocv = self.open_circuit(self.soc)
        if not switched_on or available < 1.0:
            self.state = 0
            self.off_reason = 0x4 if not switched_on else 0x1
            self.tracker = 0
            self.charger_current = 0.0
            self.battery_current = -load
            self.voltage = ocv - load * self.RESISTANCE
            self.panel_power = 0.0
        else:
            self.off_reason = 0
            self.charge(available, load, ocv, dt)
        charged = self.battery_current * dt / _HOUR / self.CAPACITY_AH
        self.soc = min(1.0, max(0.02, self.soc + charged))
        produced = self.charger_current * self.voltage
        self.yield_today_wh += produced * dt / _HOUR
        self.yield_total_wh += produced * dt / _HOUR
        target = 24.0 + produced * 0.06
        self.internal_temperature += (target - self.internal_temperature) * min(1.0, dt / 300.0)

    def charge(self, available: float, load: float, ocv: float, dt: float) -> None:
        """One step of the bulk → absorption → float algorithm with the power the sun gives."""
        absorption, floating = self.set_points()
        resistance = self.charge_resistance(self.soc)
        limit = self.charge_limit()
        affordable = available / max(self.voltage, ocv) - load
        if self.state not in (3, 4, 5):
            self.state = 3  # morning (or switched on): a new charge cycle starts in bulk
        if self.state == 3:
            sense = self.voltage_sense if self.voltage_sense_used() else None
            reached = ocv + min(limit, affordable) * resistance >= absorption
            if reached or (sense is not None and sense >= absorption):
                self.state = 4
                self.absorption_time = 0.0
        if self.state == 3:
            wanted = limit
        else:
            set_point = absorption if self.state == 4 else floating
            wanted = max(0.0, (set_point - ocv) / resistance)
        current = min(wanted, limit, affordable)
        self.battery_current = current
        self.voltage = ocv + current * (resistance if current > 0 else self.RESISTANCE)
        self.charger_current = max(0.0, current + load)
        self.panel_power = self.charger_current * self.voltage / self.EFFICIENCY
        power_limited = affordable < min(wanted, limit)
        self.tracker = 2 if power_limited else 1
        if self.state == 4:
            self.absorption_time += dt
            limit_hours = self.get(0xEDFB) / 100.0
            if wanted < self.TAIL_CURRENT or self.absorption_time >= limit_hours * _HOUR:
                self.state = 5

    def new_day(self) -> None:
        self.yield_yesterday_wh = self.yield_today_wh
        self.max_power_yesterday = self.max_power_today
        self.yield_today_wh = 0.0
        self.max_power_today = 0
        self.day_sequence = (self.day_sequence + 1) % 365

    def load_thresholds(self, mode: int) -> tuple[float, float]:
        """Switch-off and switch-on voltages of a load output control mode (0xEDAB)."""
        if mode in (5, 6):  # user defined: load switch low/high level registers
            return self.get(_REG_LOAD_LOW) / 100.0, self.get(_REG_LOAD_HIGH) / 100.0
        if mode == 2:
            return 11.1, 13.1  # ALT1
        if mode == 3:
            return 11.8, 14.0  # ALT2
        return 11.5, 12.6  # AUTO: a fixed stand-in for BatteryLife

    def update_load(self) -> None:
        """Switch the load output as its control setting and the battery voltage demand."""
        mode = self.get(_REG_LOAD_CONTROL) & 0x0F  # the upper nibble is reserved
        voltage = self.voltage
        if mode == 0:
            self.load_on, self.load_low = False, False
        elif mode in (4, 7):  # on; AES is modelled as plain on
            self.load_on, self.load_low = True, False
        else:
            off_below, on_above = self.load_thresholds(mode)
            if self.load_on and voltage < off_below:
                self.load_on, self.load_low = False, True
            elif not self.load_on and (voltage > on_above or not self.load_low):
                self.load_on, self.load_low = True, False

    def settings_changed(self) -> None:
        self.update_load()
        self.publish()

    def take_readings(self) -> None:
        """Take this block's readings (with a little noise) and publish them to the registers."""
        # A fridge on the load output: its compressor runs 12 of every 30 minutes.
        compressor = 1.8 if self.clock % 1800.0 < 720.0 else 0.0
        self.load_current = 0.3 + compressor + abs(self.noise(0.05))
        sun = _sun(self.clock % _DAY)
        if self.panel_power > 0:
            mpp = 30.5 + 3.0 * sun
            headroom = 1.0 if self.tracker == 2 else 0.35
            self.panel_voltage = mpp + (39.5 - mpp) * (1.0 - headroom) + self.noise(0.08)
        elif sun > 0:
            self.panel_voltage = 20.0 + 19.0 * min(1.0, sun * 20) + self.noise(0.1)
        else:
            self.panel_voltage = 0.01 + abs(self.noise(0.01))
        self.max_power_today = max(self.max_power_today, round(self.panel_power))
        self.reading_voltage = self.voltage + self.noise(0.004)
        self.reading_current = self.battery_current + self.noise(0.01)
        self.publish()

    def publish(self) -> None:
        absorption, floating = self.set_points()
        put = self.put
        put(_REG_DEVICE_STATE, self.state)
        put(_REG_OFF_REASON, self.off_reason)
        put(0xEDD5, round(self.reading_voltage * 100))
        put(0xEDD7, round(self.charger_current * 10))
        put(0xEDBB, round(self.panel_voltage * 100))
        put(0xEDBC, round(self.panel_power * 100))
        panel_current = self.panel_power / self.panel_voltage if self.panel_voltage > 1 else 0.0
        put(0xEDBD, round(panel_current * 10))
        put(0xEDB3, self.tracker)
        put(0xEDDB, round(self.internal_temperature * 100))
        put(0xEDD3, round(self.yield_today_wh / 10))
        put(0xEDD2, self.max_power_today)
        put(0xEDD1, round(self.yield_yesterday_wh / 10))
        put(0xEDD0, self.max_power_yesterday)
        put(0xEDDD, round(self.yield_total_wh / 10))
        put(0xEDDC, round(self.yield_total_wh / 10))
        put(0xEDAD, round(self.load_current * 10) if self.load_on else 0)
        put(0xEDA9, round(self.voltage * 100) if self.load_on else 0)
        put(0xEDA8, 1 if self.load_on else 0)
        put(0xED91, 0x01 if self.load_low else 0)
        put(0x2001, round((absorption if self.state == 4 else floating) * 100))
        status = _NETWORK_STANDALONE
        if self.voltage_sense_used():
            status |= _NETWORK_VSENSE
        if self.temperature_sense is not None:
            status |= _NETWORK_TSENSE
            put(_REG_BATTERY_TEMPERATURE, round((self.temperature_sense + _KELVIN) * 100))
        else:
            put(_REG_BATTERY_TEMPERATURE, 0xFFFF)
        put(_REG_NETWORK_STATUS, status)
        put(0x2030, 1 if _sun(self.clock % _DAY) > 0 else 0)
        put(0x2031, int(self.clock % _DAY // 60))

    def blocks(self) -> list[list[tuple[str, str]]]:
        serial = self.registers[_REG_SERIAL].decode("ascii")
        load_current = self.get(0xEDAD) * 100
        return [
            [
                ("PID", f"0x{MPPT_PRODUCT_ID:X}"),
                ("FW", f"{_MPPT_FIRMWARE:X}"),
                ("SER#", serial),
                ("V", str(round(self.reading_voltage * 1000))),
                ("I", str(round(self.reading_current * 1000))),
                ("VPV", str(round(self.panel_voltage * 1000))),
                ("PPV", str(round(self.panel_power))),
                ("CS", str(self.state)),
                ("MPPT", str(self.tracker)),
                ("OR", f"0x{self.off_reason:08X}"),
                ("ERR", "0"),
                ("LOAD", "ON" if self.load_on else "OFF"),
                ("IL", str(load_current)),
                ("H19", str(round(self.yield_total_wh / 10))),
                ("H20", str(round(self.yield_today_wh / 10))),
                ("H21", str(self.max_power_today)),
                ("H22", str(round(self.yield_yesterday_wh / 10))),
                ("H23", str(self.max_power_yesterday)),
                ("HSDS", str(self.day_sequence)),
            ]
        ]


class _BmvModel(_Model):
    """BMV-712 Smart on a 12 V 200 Ah house battery charged by solar, drained by a load."""

    RESISTANCE: Final = 0.01
    DISCHARGE_FLOOR: Final = 0.5  # BMV default: time-to-go counts down to 50 % SOC

    def __init__(
        self,
        rng: random.Random,
        registers: dict[int, bytes],
        serial_number: str,
        start: float = _START_OF_DAY,
    ) -> None:
        super().__init__(rng, registers, _BMV_REGISTERS, start)
        self.soc = 0.8
        self.current = 0.0
        self.voltage = 12.6
        self.aux_voltage = 12.7
        self.temperature = 21.0
        self.alarm_low_soc = False
        self.cycle_low = 1.0
        self.deepest = -120_000.0 - rng.uniform(0, 40_000)
        self.last_discharge = -40_000.0
        self.average_discharge = -60_000.0
        self.cycles = 40 + rng.randrange(20)
        self.full_discharges = 0
        self.drawn_mah = -5_500_000.0 - rng.uniform(0, 500_000)
        self.min_voltage = 11.7
        self.max_voltage = 14.6
        self.since_full = 3_600.0
        self.full = False
        self.synchronisations = 25 + rng.randrange(10)
        self.min_aux = 12.2
        self.max_aux = 13.1
        self.discharged_wh = -self.drawn_mah / 1000 * 12.5
        self.charged_wh = self.discharged_wh * 1.2
        registers[_REG_PRODUCT_ID] = b"\x00" + BMV_PRODUCT_ID.to_bytes(2, "little") + b"\xff"
        registers[_REG_SERIAL] = serial_number.encode("ascii")
        registers[_REG_MODEL_NAME] = b"BMV-712 Smart"
        self.put(_REG_CAPACITY, 200)
        self.step(0.0)

    def substep(self, dt: float) -> None:
        self.clock += dt
        capacity = self.get(_REG_CAPACITY)
        hour = self.clock % _DAY / _HOUR
        solar = 28.0 * _sun(self.clock % _DAY) * self.cloud
        load = 3.0 + (7.0 if 18.0 <= hour < 23.0 else 0.0) + abs(self.noise(0.3))
        current = solar - load
        if self.soc >= 1.0 and current > 0:
            current = 0.2  # full: the charger holds float, only a trickle flows
        self.current = current
        self.soc = min(1.0, max(0.0, self.soc + current * dt / _HOUR / capacity))
        ocv = 11.8 + 1.0 * self.soc
        gassing = 1.6 * max(0.0, self.soc - 0.75) / 0.25 if current > 0 else 0.0
        self.voltage = ocv + gassing * min(1.0, current / 5.0) + current * self.RESISTANCE
        self.aux_voltage = 12.62 + (0.4 if current > 0 else 0.0)
        self.temperature = 18.0 + 6.0 * _sun(self.clock % _DAY)
        energy = self.voltage * current * dt / _HOUR
        if current < 0:
            self.drawn_mah += current * dt / _HOUR * 1000
            self.discharged_wh -= energy
        else:
            self.charged_wh += energy
        self.since_full += dt
        consumed = -(1.0 - self.soc) * capacity * 1000
        self.last_discharge = min(self.last_discharge, consumed)
        self.deepest = min(self.deepest, consumed)
        self.cycle_low = min(self.cycle_low, self.soc)
        if self.soc >= 1.0 and not self.full:
            self.synchronised()
        elif self.soc < 0.99:
            self.full = False
        self.min_voltage = min(self.min_voltage, self.voltage)
        self.max_voltage = max(self.max_voltage, self.voltage)
        self.min_aux = min(self.min_aux, self.aux_voltage)
        self.max_aux = max(self.max_aux, self.aux_voltage)
        if self.soc < 0.10:
            self.alarm_low_soc = True
        elif self.soc > 0.15:
            self.alarm_low_soc = False

    def synchronised(self) -> None:
        """Battery full: the BMV resets consumed Ah and closes the discharge cycle."""
        self.full = True
        self.since_full = 0.0
        self.synchronisations += 1
        self.average_discharge = (self.average_discharge * 3 + self.last_discharge) / 4
        self.last_discharge = 0.0
        if self.cycle_low < 0.65:
            self.cycles += 1
        if self.cycle_low <= 0.0:
            self.full_discharges += 1
        self.cycle_low = 1.0

    def time_to_go(self) -> int:
        """Minutes until the discharge floor at the present current; -1 while not discharging."""
        if self.current >= -0.05:
            return -1
        capacity = self.get(_REG_CAPACITY)
        left = max(0.0, self.soc - self.DISCHARGE_FLOOR) * capacity
        return min(14_400, round(left / -self.current * 60))

    def measure(self) -> None:
        self.reading_voltage = self.voltage + self.noise(0.003)
        self.reading_current = self.current + self.noise(0.02)
        self.publish()

    def publish(self) -> None:
        put = self.put
        capacity = self.get(_REG_CAPACITY)
        put(0xED8D, round(self.reading_voltage * 100))
        put(0xED8F, round(self.reading_current * 10))
        put(0xED8C, round(self.reading_current * 1000))
        put(0xED8E, round(self.reading_voltage * self.reading_current))
        put(0xEEFF, round(-(1.0 - self.soc) * capacity * 10))
        put(0x0FFF, round(self.soc * 10_000))
        ttg = self.time_to_go()
        put(0x0FFE, 0xFFFF if ttg < 0 else ttg)
        put(0xED7D, round(self.aux_voltage * 100))
        put(_REG_BATTERY_TEMPERATURE, round((self.temperature + _KELVIN) * 100))

    def settings_changed(self) -> None:
        self.publish()

    def blocks(self) -> list[list[tuple[str, str]]]:
        capacity = self.get(_REG_CAPACITY)
        volts = round(self.reading_voltage * 1000)
        amps = round(self.reading_current * 1000)
        return [
            [
                ("PID", f"0x{BMV_PRODUCT_ID:X}"),
                ("V", str(volts)),
                ("VS", str(round(self.aux_voltage * 1000))),
                ("I", str(amps)),
                ("P", str(round(volts * amps / 1_000_000))),
                ("CE", str(round(-(1.0 - self.soc) * capacity * 1000))),
                ("SOC", str(round(self.soc * 1000))),
                ("TTG", str(self.time_to_go())),
                ("Alarm", "ON" if self.alarm_low_soc else "OFF"),
                ("Relay", "OFF"),
                ("AR", "4" if self.alarm_low_soc else "0"),
                ("BMV", "712 Smart"),
                ("FW", f"{_BMV_FIRMWARE:04X}"),
                ("MON", "0"),
            ],
            [
                ("H1", str(round(self.deepest))),
                ("H2", str(round(self.last_discharge))),
                ("H3", str(round(self.average_discharge))),
                ("H4", str(self.cycles)),
                ("H5", str(self.full_discharges)),
                ("H6", str(round(self.drawn_mah))),
                ("H7", str(round(self.min_voltage * 1000))),
                ("H8", str(round(self.max_voltage * 1000))),
                ("H9", str(round(self.since_full))),
                ("H10", str(self.synchronisations)),
                ("H11", "0"),
                ("H12", "0"),
                ("H15", str(round(self.min_aux * 1000))),
                ("H16", str(round(self.max_aux * 1000))),
                ("H17", str(round(self.discharged_wh / 10))),
                ("H18", str(round(self.charged_wh / 10))),
            ],
        ]


class VeDirectSimulator:
    """A VE.Direct MPPT or BMV on a pseudo-terminal, with faults on demand.

    ``registers`` is the live HEX register store (little-endian bytes); tests may read and
    even poke it. ``writes`` records every HEX set received as (loop time, register, value).

    ``time_scale`` speeds up everything simulated, the 60 s remote sense timeout and the async
    message window included (tests); ``sun_time_scale`` speeds up only the models (a short demo
    day whose client still writes remote sense at real time). The models advance by
    ``interval * time_scale * sun_time_scale`` per block. ``start_time_of_day`` (seconds after
    midnight) is where the models' day starts; None: mid-morning.
    """

    def __init__(
        self,
        model: Literal["mppt", "bmv"] = "mppt",
        *,
        serial_number: str | None = None,
        link_path: str | None = None,
        interval: float = 1.0,
        time_scale: float = 1.0,
        seed: int | None = None,
        sun_time_scale: float = 1.0,
        start_time_of_day: float | None = None,
    ) -> None:
        """Build the device; nothing runs and no pty exists until :meth:`start`."""
        if model not in ("mppt", "bmv"):
            raise ValueError(f"unknown VE.Direct model {model!r}")
        if not interval > 0:
            raise ValueError("interval must be positive")
        if not time_scale > 0:
            raise ValueError("time_scale must be positive")
        if not sun_time_scale > 0:
            raise ValueError("sun_time_scale must be positive")
        start = _START_OF_DAY if start_time_of_day is None else start_time_of_day % _DAY
        if not math.isfinite(start):
            raise ValueError("start_time_of_day must be finite")
        self._rng = random.Random(seed)
        self._fault_rng = random.Random(self._rng.getrandbits(64))
        self._kind: Literal["mppt", "bmv"] = model
        generated = self._make_serial_number()  # drawn always: values do not depend on it
        self._serial = serial_number or generated
        self._interval = interval
        self._time_scale = time_scale
        self._model_step = interval * time_scale * sun_time_scale
        self.registers: dict[int, bytes] = {}
        self.writes: list[tuple[float, int, bytes]] = []
        self._device: _MpptModel | _BmvModel
        if model == "mppt":
            self._layout = _MPPT_REGISTERS
            self._device = _MpptModel(self._rng, self.registers, self._serial, start)
            self._product_id = MPPT_PRODUCT_ID
            self._version = _APP_FIRMWARE_TYPE | _MPPT_FIRMWARE
        else:
            self._layout = _BMV_REGISTERS
            self._device = _BmvModel(self._rng, self.registers, self._serial, start)
            self._product_id = BMV_PRODUCT_ID
            self._version = _APP_FIRMWARE_TYPE | _BMV_FIRMWARE
        self._port = PtySerialPort(link_path)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._rx = bytearray()
        self._silent = False
        self._corrupt = False
        self._overrides: dict[str, str] = {}
        self._sense_expiry: dict[int, float] = {}
        self._last_hex_at: float | None = None
        self._reported: dict[int, bytes] = {}
        # Called with each text block as it is written: benchmarks timestamp the wire with it.
        self.on_block_written: Callable[[list[tuple[str, str]]], None] | None = None

    # -- identity --------------------------------------------------------------------------

    @property
    def port(self) -> str:
        """The serial port path a client opens (a symlink to the current pty)."""
        return self._port.path

    @property
    def model(self) -> Literal["mppt", "bmv"]:
        """Which device this is."""
        return self._kind

    @property
    def serial_number(self) -> str:
        """The SER# of the device (also register 0x010A)."""
        return self._serial

    @property
    def product_id(self) -> int:
        """The VE.Direct product id (PID field, ``:4`` reply)."""
        return self._product_id

    @property
    def plugged(self) -> bool:
        """Whether the simulated cable is plugged in."""
        return self._port.plugged

    @property
    def time_of_day(self) -> float:
        """The models' simulated time of day, seconds after midnight."""
        return self._device.clock % _DAY

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the pty and start sending text blocks (the first one at once)."""
        if self._stopped:
            raise RuntimeError("simulator was stopped")
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        await self._port.open(self._received)
        self._task = self._loop.create_task(self._run(), name=f"vedirect-sim-{self._serial}")

    async def stop(self) -> None:
        """Stop sending and remove the pty; safe to call more than once."""
        self._stopped = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._port.close()

    # -- faults ----------------------------------------------------------------------------

    def inject_garbage(self, data: bytes | None = None) -> None:
        """Put non-protocol bytes on the line once (random ones unless ``data`` is given)."""
        if data is None:
            data = self._fault_rng.randbytes(_GARBAGE_LENGTH)
        self._port.write(data)

    def set_silent(self, silent: bool) -> None:
        """Stop (or resume) sending text blocks and answering HEX, like a hung device."""
        self._silent = silent

    def set_corrupt_checksums(self, enabled: bool) -> None:
        """Send text blocks with a wrong checksum byte while enabled."""
        self._corrupt = enabled

    async def unplug(self) -> None:
        """Pull the cable: clients see end-of-file/EIO and the port path disappears."""
        await self._port.unplug()
        self._rx.clear()

    async def replug(self) -> None:
        """Plug the cable back in: a new pty appears at the same path."""
        await self._port.replug()

    def set_value(self, label: str, raw: str) -> None:
        """Send ``raw`` for text field ``label`` from now on (labels a block lacks are added)."""
        encode_text_block([(label, raw)])  # reject what cannot go on the wire, now
        self._overrides[label] = raw

    # -- text protocol ---------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        advance = False
        while True:
            self._tick(loop.time(), advance=advance)
            advance = True
            due += self._interval
            delay = due - loop.time()
            if delay < 0:
                due = loop.time()  # fell behind (blocked loop): do not send a burst
                delay = 0.0
            await asyncio.sleep(delay)

    def _tick(self, now: float, *, advance: bool) -> None:
        self._expire_sense(now)
        if advance:
            # A fixed simulated step per block keeps seeded runs identical whatever the jitter.
            self._device.step(self._model_step)
        if self._silent:
            return
        for block in self._with_overrides(self._device.blocks()):
            self._port.write(encode_text_block(block, corrupt=self._corrupt))
            if self.on_block_written is not None:
                self.on_block_written(block)
        self._send_async(now)

    def _with_overrides(self, blocks: list[list[tuple[str, str]]]) -> list[list[tuple[str, str]]]:
        overrides = self._overrides
        if not overrides:
            return blocks
        seen: set[str] = set()
        result: list[list[tuple[str, str]]] = []
        for block in blocks:
            fields: list[tuple[str, str]] = []
            for label, value in block:
                if label in overrides:
                    seen.add(label)
                fields.append((label, overrides.get(label, value)))
            result.append(fields)
        result[0].extend((label, raw) for label, raw in overrides.items() if label not in seen)
        return result

    # -- HEX protocol ----------------------------------------------------------------------

    def _received(self, data: bytes) -> None:
        rx = self._rx
        rx += data
        while True:
            newline = rx.find(b"\n")
            if newline < 0:
                if len(rx) > _MAX_RX_LINE:
                    del rx[:-_MAX_RX_LINE]
                return
            line = bytes(rx[:newline])
            del rx[: newline + 1]
            start = line.rfind(b":")
            if start >= 0:
                self._handle_line(line[start:])

    def _handle_line(self, line: bytes) -> None:
        if self._silent:
            return
        assert self._loop is not None
        now = self._loop.time()
        try:
            message = decode_hex(line)
        except ProtocolError:
            self._port.write(FRAMING_ERROR_REPLY)
            return
        if self._kind == "mppt" and not self._async_active(now):
            # Async reports start now: changes from here on are sent.
            self._reported = {
                register: self.registers[register]
                for register, shape in self._layout.items()
                if shape.report_async
            }
        self._last_hex_at = now
        reply = self._answer(message.command, message.register, message.value, now)
        if reply:
            self._port.write(reply)

    def _answer(self, command: int, register: int | None, value: bytes, now: float) -> bytes:
        version = self._version.to_bytes(2, "little")
        if command == HexCommand.PING:
            return encode_hex(HexResponse.PING, value=version)
        if command == HexCommand.APP_VERSION:
            return encode_hex(HexResponse.DONE, value=version)
        if command == HexCommand.PRODUCT_ID:
            return encode_hex(HexResponse.DONE, value=self._product_id.to_bytes(2, "little"))
        if command in (HexCommand.RESTART, HexCommand.ASYNC):
            return b""  # restart: no reply; async from a host: not to be answered
        if command == HexCommand.ENTER_BOOT:
            return encode_hex(HexResponse.ERROR, value=b"\x00\x00")  # "unable to enter bootloader"
        if command == HexCommand.GET:
            assert register is not None
            self._expire_sense(now)
            current = self.registers.get(register)
            if current is None:
                return encode_hex(HexResponse.GET, register, HexFlags.UNKNOWN_ID)
            return encode_hex(HexResponse.GET, register, 0, current)
        if command == HexCommand.SET:
            assert register is not None
            return self._set(register, value, now)
        return encode_hex(HexResponse.UNKNOWN, value=command.to_bytes(2, "little"))

    def _set(self, register: int, value: bytes, now: float) -> bytes:
        self.writes.append((now, register, value))
        shape = self._layout.get(register)
        if shape is None:
            return encode_hex(HexResponse.SET, register, HexFlags.UNKNOWN_ID)
        current = self.registers[register]
        if not shape.writable:
            return encode_hex(HexResponse.SET, register, HexFlags.NOT_SUPPORTED, current)
        if not shape.accepts(value) or (
            register == _REG_DEVICE_MODE and shape.unpack(value) not in (0, 1, 4)
        ):
            return encode_hex(HexResponse.SET, register, HexFlags.PARAMETER_ERROR, current)
        if register == _REG_DEVICE_MODE and shape.unpack(value) == 0:
            value = b"\x04"  # firmware >= 1.17 reports "charger off" as 4
        self.registers[register] = value
        if register in (_REG_VOLTAGE_SENSE, _REG_TEMPERATURE_SENSE):
            self._sense_written(register, shape.unpack(value), now)
        self._device.settings_changed()
        return encode_hex(HexResponse.SET, register, 0, self.registers[register])

    # -- remote battery sense (MPPT) -------------------------------------------------------

    def _sense_written(self, register: int, value: int, now: float) -> None:
        device = self._device
        assert isinstance(device, _MpptModel)
        if register == _REG_VOLTAGE_SENSE:
            released = value == _VOLTAGE_SENSE_RELEASE
            device.voltage_sense = None if released else value / 100.0
        else:
            released = value == _TEMPERATURE_SENSE_RELEASE
            device.temperature_sense = None if released else value / 100.0
        if released:
            self._sense_expiry.pop(register, None)
        else:
            self._sense_expiry[register] = now + _SENSE_TIMEOUT / self._time_scale

    def _expire_sense(self, now: float) -> None:
        expired = [reg for reg, deadline in self._sense_expiry.items() if now >= deadline]
        for register in expired:
            release = (
                _VOLTAGE_SENSE_RELEASE
                if register == _REG_VOLTAGE_SENSE
                else _TEMPERATURE_SENSE_RELEASE
            )
            self.registers[register] = self._layout[register].pack(release)
            self._sense_written(register, release, now)
        if expired:
            self._device.settings_changed()

    # -- async messages (MPPT firmware >= 1.17) --------------------------------------------

    def _async_active(self, now: float) -> bool:
        last = self._last_hex_at
        return (
            self._kind == "mppt"
            and last is not None
            and now - last <= _ASYNC_QUIET / self._time_scale
        )

    def _send_async(self, now: float) -> None:
        if not self._async_active(now):
            return
        reported = self._reported
        for register, value in self.registers.items():
            if register in reported and reported[register] != value:
                reported[register] = value
                self._port.write(encode_hex(HexResponse.ASYNC, register, 0, value))

    # -- helpers ---------------------------------------------------------------------------

    def _make_serial_number(self) -> str:
        rng = self._rng
        year, week = rng.randrange(18, 25), rng.randrange(1, 53)
        tail = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(5))
        return f"HQ{year:02d}{week:02d}{tail}"
