"""A Sunny Island on a python-can bus: broadcasts its monitoring frames and judges a BMS like an SI.

It exists so the BMS emulation can be tested end to end without an inverter. On the wire it
behaves as [SMA-TI] describes: it broadcasts 0x300-0x30A and 0x010 every ``interval``; it takes
BMS values only inside the documented ranges (an out-of-range value leaves the last accepted one
in place, an "invalid" marker restores the default); it raises F952 when 0x355 stays away for
``bms_timeout`` and W952 for 0x351; 0x35A alarms put it into fault F920+n. 0x35A items latch
as on an SI: "arrives" raises an item, only "leaves" clears it, 00 and 11 change nothing - so an
alarm stays active across a restart of the BMS (a new sender) until some frame says it left. It
also records what a test needs to prove the BMS behaves: arrival times and decoded values per id,
values it rejected as out of range, frames that came faster than the 200 ms inhibit time. What
it works with is readable directly: :attr:`accepted_ccl` and friends, :attr:`faults`,
:attr:`can_charge`, :attr:`can_discharge`.

The power flows come from a small battery model: charging is limited by the accepted CCL and by
the headroom to the accepted CVL (the SI does constant voltage itself), discharging by the DCL
while grid-tied (off-grid the SI ignores DCL, as [SMA-TI] says). The SI stops below the accepted
DVL and cannot restart there. Sign conventions: battery current + = charging, external power
+ = taken from the grid, inverter power + = delivered to the AC side.

Unlike a real SI, the simulator leaves F952 by itself once 0x355 comes back, so a test can go on.
Pure module: python-can and asyncio only.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
import contextlib
from dataclasses import dataclass
import itertools
import math
import random
import time
from typing import Final

import can

from custom_components.sma_victron_bridge.protocols import ProtocolError
from custom_components.sma_victron_bridge.protocols.sma_can import (
    ALARM_FAULT_BASE,
    BMS_FRAME_IDS,
    CHARGE_VOLTAGE_RANGE,
    CHARGING_PROCEDURE_EXTERNAL_BMS,
    CURRENT_LIMIT_RANGE,
    DISCHARGE_VOLTAGE_RANGE,
    FAULT_SOC_TIMEOUT,
    ID_ALARMS,
    ID_BATTERY,
    ID_CHARGE_LIMITS,
    ID_ENERGY,
    ID_EXTERNAL_AC,
    ID_EXTERNAL_POWER,
    ID_EXTERNAL_REACTIVE_POWER,
    ID_FREQUENCY,
    ID_INVERTER_POWER,
    ID_INVERTER_REACTIVE_POWER,
    ID_LOAD,
    ID_OUTPUT_AC,
    ID_QUICK_STOP,
    ID_RELAYS,
    ID_SOC,
    ID_STATUS,
    LIMITS_TIMEOUT,
    MIN_PERIOD,
    SI_DEFAULTS,
    SOC_RANGE,
    SOC_TIMEOUT,
    SOH_RANGE,
    WARNING_BASE,
    WARNING_LIMITS_TIMEOUT,
    AlarmItem,
    BmsValue,
    SiValue,
    decode_alarm_bits,
    decode_bms_frame,
    encode_si_frame,
)
from custom_components.sma_victron_bridge.simulators.day_clock import DAY, HOUR, clear_sky

_ACCEPTED_RANGES: Final[Mapping[str, tuple[float, float]]] = {
    "charge_voltage": CHARGE_VOLTAGE_RANGE,
    "charge_current_limit": CURRENT_LIMIT_RANGE,
    "discharge_current_limit": CURRENT_LIMIT_RANGE,
    "discharge_voltage": DISCHARGE_VOLTAGE_RANGE,
    "soc": SOC_RANGE,
    "soh": SOH_RANGE,
    "voltage": (-math.inf, math.inf),
    "current": (-math.inf, math.inf),
    "temperature": (-math.inf, math.inf),
}
"""Fields the SI keeps as settings, with the range it accepts ([SMA-TI] 5.3 table)."""

OPERATING_STATE_NONE: Final = 0
OPERATING_STATE_OPERATING: Final = 1
OPERATING_STATE_WARNING: Final = 3
OPERATING_STATE_FAILURE: Final = 4

_START_OF_DAY: Final = 10 * HOUR  # mid-morning, like the other simulators' default day

NOMINAL_AC_VOLTAGE: Final = 230.0
NOMINAL_FREQUENCY: Final = 50.0
_NOTIFIER_POLL: Final = 0.05
ARRIVALS_KEPT: Final = 3600
"""Arrival times kept per BMS id: an hour of a 1 s frame."""

# Open-circuit voltage of a 16-cell LiFePO4 pack against SOC: (SOC %, pack V).
_OCV_CURVE: Final = (
    (0.0, 44.8),
    (5.0, 49.6),
    (10.0, 51.2),
    (20.0, 52.0),
    (50.0, 52.8),
    (80.0, 53.3),
    (90.0, 53.6),
    (95.0, 54.4),
    (100.0, 56.8),
)


@dataclass(slots=True)
class SimulatedBattery:
    """The pack behind the simulated SI: SOC by coulomb counting, voltage = OCV + I * R."""

    capacity_ah: float = 200.0
    soc: float = 50.0
    temperature: float = 20.0
    ambient_temperature: float = 20.0
    resistance: float = 0.01
    heat_capacity: float = 100_000.0
    """J/K: about 100 kg of cells."""
    current: float = 0.0

    def open_circuit_voltage(self) -> float:
        """Pack voltage at rest, interpolated from a LiFePO4 curve."""
        soc = min(max(self.soc, 0.0), 100.0)
        for (soc_low, v_low), (soc_high, v_high) in itertools.pairwise(_OCV_CURVE):
            if soc <= soc_high:
                return v_low + (v_high - v_low) * (soc - soc_low) / (soc_high - soc_low)
        return _OCV_CURVE[-1][1]  # pragma: no cover - soc is clamped to 100

    @property
    def voltage(self) -> float:
        """Terminal voltage under the present current."""
        return self.open_circuit_voltage() + self.current * self.resistance

    def step(self, current: float, seconds: float) -> None:
        """Carry ``current`` (+ = charging) for ``seconds``; warm by I^2 R, cool to ambient."""
        self.current = current
        self.soc = min(max(self.soc + current * seconds / 36.0 / self.capacity_ah, 0.0), 100.0)
        heating = current * current * self.resistance / self.heat_capacity
        cooling = (self.temperature - self.ambient_temperature) / 3600.0
        self.temperature += (heating - cooling) * seconds


@dataclass(frozen=True, slots=True)
class Rejection:
    """A BMS value the SI ignored because it was outside the accepted range."""

    timestamp: float
    """The frame's bus timestamp, s."""
    arbitration_id: int
    field: str
    value: float


@dataclass(frozen=True, slots=True)
class PowerFlow:
    """One step of the simulated AC side, W (totals over all lines)."""

    load: float = 0.0
    pv: float = 0.0
    external: float = 0.0
    inverter: float = 0.0
    curtailed: float = 0.0
    overload: bool = False


class SunnyIslandSimulator:
    """Simulated SI master on ``bus``; call :meth:`start` inside the running event loop.

    ``interval`` is the broadcast period in real seconds. ``time_scale`` speeds up simulated
    time: the battery model and the BMS timeouts run that many times faster than the wall clock
    (``bms_timeout`` 60 s with ``time_scale`` 60 fires after one real second). The 200 ms inhibit
    check stays in wire time. ``sun_time_scale`` speeds up only the plant (sun, PV, battery) and
    never the BMS supervision: a short demo day whose BMS still has to send at real time.
    ``pv_peak`` adds AC-coupled PV that follows a clear sky over the simulated day, W at noon
    (on top of :meth:`set_pv`); the day starts at ``start_time_of_day`` (seconds after midnight,
    mid-morning unless given). ``phases`` (1-3) spreads AC values over that many lines.
    ``self_consumption`` selects grid-tied behaviour: True discharges into the loads (DCL-limited)
    and charges from PV surplus only; False (backup) charges from every source and draws loads
    from the grid.
    """

    def __init__(
        self,
        bus: can.BusABC,
        *,
        interval: float = 1.0,
        time_scale: float = 1.0,
        phases: int = 1,
        seed: int | None = None,
        bms_timeout: float = SOC_TIMEOUT,
        limits_timeout: float = LIMITS_TIMEOUT,
        battery: SimulatedBattery | None = None,
        max_power_per_phase: float = 6000.0,
        self_consumption: bool = True,
        skip_probability: float = 0.0,
        generator_start_soc: float = 30.0,
        generator_stop_soc: float = 80.0,
        sun_time_scale: float = 1.0,
        pv_peak: float = 0.0,
        start_time_of_day: float | None = None,
    ) -> None:
        """Set up the simulated SI; nothing touches the bus before :meth:`start`."""
        if not interval > 0 or not time_scale > 0 or not sun_time_scale > 0:
            raise ValueError("interval, time_scale and sun_time_scale must be positive")
        clock = _START_OF_DAY if start_time_of_day is None else start_time_of_day % DAY
        if not math.isfinite(clock):
            raise ValueError("start_time_of_day must be finite")
        if phases not in (1, 2, 3):
            raise ValueError("phases must be 1, 2 or 3")
        if not 0.0 <= skip_probability < 1.0:
            raise ValueError("skip_probability must be in [0, 1)")
        self._bus = bus
        self.interval = interval
        self.time_scale = time_scale
        self.sun_time_scale = sun_time_scale
        self.pv_peak = _non_negative("pv_peak", pv_peak)
        self.clock = clock
        """Simulated seconds since midnight of the plant's day (it advances in :meth:`step`)."""
        self.phases = phases
        self.bms_timeout = bms_timeout
        self.limits_timeout = limits_timeout
        self.max_power_per_phase = max_power_per_phase
        self.self_consumption = self_consumption
        self.skip_probability = skip_probability
        self.generator_start_soc = generator_start_soc
        self.generator_stop_soc = generator_stop_soc
        self.battery = battery if battery is not None else SimulatedBattery()
        self._rng = random.Random(seed)

        # What the BMS sent and how the SI judged it.
        self.received: dict[int, deque[float]] = {}
        """Arrival timestamps (the bus's message timestamps, s) of the BMS frames, per id: the
        newest ``ARRIVALS_KEPT``, so a simulator left running for days stays the same size."""
        self.last_values: dict[int, dict[str, BmsValue]] = {}
        """Last decoded content per BMS id, as sent (before range checks)."""
        self.received_values: dict[int, deque[tuple[float, dict[str, BmsValue]]]] = {}
        """(bus timestamp, decoded content) of every BMS frame per id, the newest
        ``ARRIVALS_KEPT``: what went out when, e.g. the steps of a stop."""
        self.accepted: dict[str, float] = dict(SI_DEFAULTS)
        """The settings the SI works with: defaults until a BMS value inside the range arrives."""
        self.rejected: dict[str, int] = {}
        """Values the SI ignored because they were out of range, per field."""
        self.rejections: deque[Rejection] = deque(maxlen=ARRIVALS_KEPT)
        """Every value ignored as out of range, oldest first (bounded like the arrivals)."""
        self.active_alarms: set[AlarmItem] = set()
        self.active_warnings: set[AlarmItem] = set()
        self.alarm_arrivals = 0
        self.warning_arrivals = 0
        self.min_interval_violations = 0
        self.decode_errors = 0
        self.error_frames = 0
        self.quick_stops = 0
        self.frames_sent = 0
        self.send_errors = 0
        self.events: list[tuple[float, str]] = []
        """(loop time, message) for every fault or warning raised or cleared."""

        # The simulated plant.
        self.flow = PowerFlow()
        self._grid_available = False
        self._load = 500.0
        self._pv = 0.0
        self._load_jitter = 0.0
        self._pv_jitter = 0.0
        self._drop_ext_vf_ok = False
        self._generator_request = False
        self._soc_timed_out = False
        self._limits_timed_out = False
        self._quick_stopped = False

        self._loop: asyncio.AbstractEventLoop | None = None
        self._notifier: can.Notifier | None = None
        self._task: asyncio.Task[None] | None = None
        self._soc_timer: asyncio.TimerHandle | None = None
        self._limits_timer: asyncio.TimerHandle | None = None
        self._last_step = 0.0

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Begin listening and broadcasting; the BMS timeouts start counting now, as at SI boot."""
        if self._task is not None:
            return
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._notifier = can.Notifier(
            self._bus, [self._on_message], timeout=_NOTIFIER_POLL, loop=loop
        )
        self._arm_soc_timer()
        self._arm_limits_timer()
        self._last_step = loop.time()
        self._task = loop.create_task(self._broadcast_loop(), name="sunny_island_simulator")

    async def stop(self) -> None:
        """Stop broadcasting and listening; leaves no task, timer or thread behind."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for timer in (self._soc_timer, self._limits_timer):
            if timer is not None:
                timer.cancel()
        self._soc_timer = self._limits_timer = None
        notifier, self._notifier = self._notifier, None
        if notifier is not None:
            # Joins the receive thread; it polls every _NOTIFIER_POLL seconds.
            notifier.stop(timeout=1.0)

    @property
    def started(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._task is not None

    # --- scenario controls --------------------------------------------------------------------

    def set_grid(self, connected: bool) -> None:
        """Grid (or generator) voltage present on AC2 or not."""
        self._grid_available = connected

    def set_load(self, watts: float) -> None:
        """Mean AC load, W; the simulated value wanders a few percent around it."""
        self._load = _non_negative("load", watts)

    def set_pv(self, watts: float) -> None:
        """Mean AC-coupled PV power on the SI's output, W."""
        self._pv = _non_negative("pv", watts)

    def drop_grid_voltage_once(self) -> None:
        """Send the next 0x307 without ExtVfOk, as during a relay transfer (debounce tests)."""
        self._drop_ext_vf_ok = True

    def restart(self) -> None:
        """Manual start after a remote quick stop (0x00F)."""
        self._quick_stopped = False

    def send_error_frame(self) -> bool:
        """Put a CAN error frame on the bus; False when the interface refuses to send one."""
        try:
            self._bus.send(can.Message(is_error_frame=True, is_extended_id=False))
        except can.CanError:
            return False
        return True

    # --- state seen from outside --------------------------------------------------------------

    @property
    def fault(self) -> str | None:
        """Active fault code ("F952", "F920".."F935") or None; the first of :attr:`faults`."""
        if self._soc_timed_out:
            return FAULT_SOC_TIMEOUT
        if self.active_alarms:
            return f"F{ALARM_FAULT_BASE + min(self.active_alarms)}"
        return None

    @property
    def faults(self) -> frozenset[str]:
        """Every active fault: F952 and one F920+n per latched BMS alarm."""
        codes = {f"F{ALARM_FAULT_BASE + item}" for item in self.active_alarms}
        if self._soc_timed_out:
            codes.add(FAULT_SOC_TIMEOUT)
        return frozenset(codes)

    @property
    def in_fault(self) -> bool:
        """The SI is in its fault state (standby) for a BMS alarm or the F952 timeout."""
        return self.fault is not None

    @property
    def accepted_cvl(self) -> float:
        """Charge voltage limit the SI works with, V."""
        return self.accepted["charge_voltage"]

    @property
    def accepted_ccl(self) -> float:
        """Charge current limit the SI works with, A (0 after F952 and until a BMS sends one)."""
        return self.accepted["charge_current_limit"]

    @property
    def accepted_dcl(self) -> float:
        """Discharge current limit the SI works with, A (honoured only while grid-tied)."""
        return self.accepted["discharge_current_limit"]

    @property
    def accepted_dvl(self) -> float:
        """Discharge voltage limit the SI works with, V: below it the SI stops."""
        return self.accepted["discharge_voltage"]

    @property
    def accepted_soc(self) -> float:
        """SOC the SI works with, %."""
        return self.accepted["soc"]

    @property
    def can_charge(self) -> bool:
        """Running with a charge current limit above 0 A."""
        return self.running and self.accepted_ccl > 0.0

    @property
    def can_discharge(self) -> bool:
        """Whether the SI would take energy out of the battery now (given a load).

        Off-grid the loads come first and DCL is ignored [SMA-TI 1.2, 5.3]: only an alarm (a
        fault), a quick stop or the battery below DVL stop discharging. Grid-tied the DCL
        counts, unless CVL is below the battery voltage: then the SI discharges down to it.
        """
        if not self.running:
            return False
        if not self.grid_connected:
            return True
        return self.accepted_dcl > 0.0 or self.battery.open_circuit_voltage() > self.accepted_cvl

    @property
    def warnings(self) -> frozenset[str]:
        """Active warning codes: "W952" and the BMS warnings W936..W951."""
        codes = {f"W{WARNING_BASE + item}" for item in self.active_warnings}
        if self._limits_timed_out:
            codes.add(WARNING_LIMITS_TIMEOUT)
        return frozenset(codes)

    @property
    def grid_available(self) -> bool:
        """Voltage present on AC2."""
        return self._grid_available

    @property
    def running(self) -> bool:
        """Inverting: no fault, no quick stop, battery at or above the accepted DVL."""
        return (
            self.fault is None
            and not self._quick_stopped
            and self.battery.voltage >= self.accepted["discharge_voltage"]
        )

    @property
    def grid_connected(self) -> bool:
        """AC2 relay closed (GdOn)."""
        return self._grid_available and self.running

    @property
    def generator_request(self) -> bool:
        """GnRn: off-grid and the BMS SOC fell below the start level, until the stop level."""
        return self._generator_request

    def periods(self, arbitration_id: int) -> list[float]:
        """Gaps between consecutive arrivals of one BMS id, s."""
        stamps = self.received.get(arbitration_id, ())
        return [later - earlier for earlier, later in itertools.pairwise(stamps)]

    def sent_values(self, arbitration_id: int, key: str) -> list[tuple[float, BmsValue]]:
        """(bus timestamp, value) of one field of every frame of one id, as sent, oldest first."""
        return [
            (stamp, values[key])
            for stamp, values in self.received_values.get(arbitration_id, ())
            if key in values
        ]

    async def wait_until(self, predicate: Callable[[], bool], limit: float) -> bool:
        """Poll ``predicate`` every 10 ms for up to ``limit`` s; True once it holds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while not predicate():
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    # --- receiving ----------------------------------------------------------------------------

    def _on_message(self, msg: can.Message) -> None:
        """Judge one frame from the bus (runs on the event loop via the notifier)."""
        if msg.is_error_frame:
            self.error_frames += 1
            return
        arbitration_id = msg.arbitration_id
        if msg.is_extended_id or msg.is_remote_frame:
            return
        if arbitration_id != ID_QUICK_STOP and arbitration_id not in BMS_FRAME_IDS:
            return
        stamp = msg.timestamp or time.time()
        self._record_arrival(arbitration_id, stamp)
        if arbitration_id == ID_QUICK_STOP:
            self.quick_stops += 1
            self._quick_stopped = True
            self._log("quick stop")
            return
        try:
            values = decode_bms_frame(arbitration_id, msg.data)
        except ProtocolError:
            self.decode_errors += 1
            return
        self.last_values[arbitration_id] = values
        self.received_values.setdefault(arbitration_id, deque(maxlen=ARRIVALS_KEPT)).append(
            (stamp, values)
        )
        if arbitration_id == ID_ALARMS:
            self._apply_alarm_words(values)
        else:
            self._accept(arbitration_id, values, stamp)
        if arbitration_id == ID_SOC:
            if self._soc_timed_out:
                self._soc_timed_out = False
                self._log(f"{FAULT_SOC_TIMEOUT} cleared")
            self._arm_soc_timer()
        elif arbitration_id == ID_CHARGE_LIMITS:
            if self._limits_timed_out:
                self._limits_timed_out = False
                self._log(f"{WARNING_LIMITS_TIMEOUT} cleared")
            self._arm_limits_timer()

    def _record_arrival(self, arbitration_id: int, stamp: float) -> None:
        stamps = self.received.setdefault(arbitration_id, deque(maxlen=ARRIVALS_KEPT))
        if stamps and stamp - stamps[-1] < MIN_PERIOD:
            self.min_interval_violations += 1
        stamps.append(stamp)

    def _accept(self, arbitration_id: int, values: Mapping[str, BmsValue], stamp: float) -> None:
        """Take each value inside its range; None restores the default; others are ignored."""
        for key, value in values.items():
            limits = _ACCEPTED_RANGES.get(key)
            if limits is None:
                continue
            if value is None:
                self.accepted[key] = SI_DEFAULTS[key]
            elif isinstance(value, int | float) and limits[0] <= value <= limits[1]:
                self.accepted[key] = float(value)
            else:
                self.rejected[key] = self.rejected.get(key, 0) + 1
                number = float(value) if isinstance(value, int | float) else math.nan
                self.rejections.append(Rejection(stamp, arbitration_id, key, number))

    def _apply_alarm_words(self, values: Mapping[str, BmsValue]) -> None:
        alarms, warnings = values["alarms"], values["warnings"]
        assert isinstance(alarms, int)
        assert isinstance(warnings, int)
        self.alarm_arrivals += self._apply_alarm_word(
            alarms, self.active_alarms, "F", ALARM_FAULT_BASE
        )
        self.warning_arrivals += self._apply_alarm_word(
            warnings, self.active_warnings, "W", WARNING_BASE
        )

    def _apply_alarm_word(self, word: int, active: set[AlarmItem], prefix: str, base: int) -> int:
        """Update ``active`` from one 32-bit word; return how many items newly arrived."""
        arrived, left = decode_alarm_bits(word)
        new = arrived - active
        for item in sorted(new):
            self._log(f"{prefix}{base + item} raised")
        for item in sorted(left & active):
            self._log(f"{prefix}{base + item} cleared")
        active |= new
        active -= left
        return len(new)

    # --- timeouts -----------------------------------------------------------------------------

    def _arm_soc_timer(self) -> None:
        if self._soc_timer is not None:
            self._soc_timer.cancel()
        assert self._loop is not None
        self._soc_timer = self._loop.call_later(
            self.bms_timeout / self.time_scale, self._on_soc_timeout
        )

    def _arm_limits_timer(self) -> None:
        if self._limits_timer is not None:
            self._limits_timer.cancel()
        assert self._loop is not None
        self._limits_timer = self._loop.call_later(
            self.limits_timeout / self.time_scale, self._on_limits_timeout
        )

    def _on_soc_timeout(self) -> None:
        """F952: standby and every BMS value back to its default (SOC 0 %)."""
        self._soc_timer = None
        self._soc_timed_out = True
        self.accepted = dict(SI_DEFAULTS)
        self._log(f"{FAULT_SOC_TIMEOUT} raised")

    def _on_limits_timeout(self) -> None:
        self._limits_timer = None
        self._limits_timed_out = True
        self._log(f"{WARNING_LIMITS_TIMEOUT} raised")

    def _log(self, message: str) -> None:
        now = self._loop.time() if self._loop is not None else time.monotonic()
        self.events.append((now, message))

    # --- the plant ----------------------------------------------------------------------------

    def step(self, seconds: float) -> PowerFlow:
        """Advance the battery and AC model by ``seconds`` of simulated time."""
        self.clock = (self.clock + seconds) % DAY
        self._load_jitter = _wander(self._rng, self._load_jitter)
        self._pv_jitter = _wander(self._rng, self._pv_jitter)
        load = self._load * (1.0 + self._load_jitter)
        pv = (self._pv + self.pv_peak * clear_sky(self.clock)) * (1.0 + self._pv_jitter)
        self._update_generator_request()
        if not self.running:
            # AC side dead: loads unsupplied, grid-tied PV disconnected.
            self.battery.step(0.0, seconds)
            self.flow = PowerFlow()
            return self.flow
        battery = self.battery
        voltage = battery.open_circuit_voltage()
        max_ac = self.max_power_per_phase * self.phases
        cv_headroom = max(0.0, (self.accepted["charge_voltage"] - voltage) / battery.resistance)
        max_charge = min(self.accepted["charge_current_limit"], cv_headroom) * voltage
        surplus = pv - load
        curtailed = 0.0
        overload = False
        if self.grid_connected:
            if voltage > self.accepted["charge_voltage"]:
                # CVL below the battery voltage: the SI discharges down to CVL and ignores DCL
                # ([SMA-TI] 4.2, 5.3) - what happens after F952 restores the 54 V default.
                excess = (voltage - self.accepted["charge_voltage"]) / battery.resistance
                battery_power = -min(excess * voltage, max_ac)
            elif surplus >= 0 or not self.self_consumption:
                available = max_ac if not self.self_consumption else surplus
                battery_power = min(available, max_charge, max_ac)
            else:
                discharge_limit = self.accepted["discharge_current_limit"] * voltage
                battery_power = -min(-surplus, discharge_limit, max_ac)
            external = battery_power - surplus
        else:
            external = 0.0
            if surplus >= 0:
                battery_power = min(surplus, max_charge, max_ac)
                curtailed = surplus - battery_power
                pv -= curtailed
            else:
                # Off-grid the loads come first: DCL does not apply [SMA-TI].
                battery_power = -min(-surplus, max_ac)
                overload = -surplus > max_ac
                load = pv - battery_power
        battery.step(battery_power / voltage, seconds)
        self.flow = PowerFlow(
            load=load,
            pv=pv,
            external=external,
            inverter=-battery_power,
            curtailed=curtailed,
            overload=overload,
        )
        return self.flow

    def _update_generator_request(self) -> None:
        soc = self.accepted["soc"]
        if self._grid_available or soc >= self.generator_stop_soc:
            self._generator_request = False
        elif soc < self.generator_start_soc:
            self._generator_request = True

    # --- broadcasting -------------------------------------------------------------------------

    def build_frames(self) -> dict[int, bytes]:
        """The SI's broadcast payloads for the present state, keyed by id (0x010 last)."""
        flow = self.flow
        running = self.running
        grid_ok = self._grid_available and not self._drop_ext_vf_ok
        fault = self.fault
        lines = self._per_line
        frequency = NOMINAL_FREQUENCY + min(flow.curtailed / 1000.0, 1.0) if running else 0.0
        ac_out = self._line_voltages("output_voltage", running)
        ac_out["output_frequency"] = frequency
        ac_ext = self._line_voltages("external_voltage", self._grid_available)
        ac_ext["external_frequency"] = NOMINAL_FREQUENCY if self._grid_available else 0.0
        if fault is not None:
            state = OPERATING_STATE_FAILURE
        elif running:
            state = OPERATING_STATE_WARNING if self.warnings else OPERATING_STATE_OPERATING
        else:
            state = OPERATING_STATE_NONE
        values: dict[int, Mapping[str, SiValue]] = {
            ID_EXTERNAL_POWER: lines("external_power", flow.external),
            ID_INVERTER_POWER: lines("inverter_power", flow.inverter),
            ID_EXTERNAL_REACTIVE_POWER: lines("external_reactive_power", 0.0),
            ID_INVERTER_REACTIVE_POWER: lines("inverter_reactive_power", 0.0),
            ID_OUTPUT_AC: ac_out,
            ID_BATTERY: {
                "battery_voltage": self.battery.voltage,
                "battery_current": self.battery.current,
                "battery_temperature": self.battery.temperature,
                "battery_soc": self.accepted["soc"],
            },
            ID_STATUS: {
                "soh": round(self.accepted["soh"]),
                "charging_procedure": CHARGING_PROCEDURE_EXTERNAL_BMS,
                "operating_state": state,
                "error_number": int(fault[1:]) if fault is not None else 0,
                "charge_voltage_setpoint": self.accepted["charge_voltage"],
            },
            ID_RELAYS: {
                "relay1": running,
                "generator_request": self._generator_request,
                "grid_voltage_ok": grid_ok,
                "grid_connected": self.grid_connected,
                "error": fault is not None,
                "running": running,
                "overload": flow.overload,
                "external_source_connected": self.grid_connected,
            },
            ID_LOAD: {"load_power": flow.load},
            ID_EXTERNAL_AC: ac_ext,
            ID_ENERGY: {
                "pv_power": flow.pv,
                "grid_consumption_power": max(flow.external, 0.0),
                "grid_feed_power": max(-flow.external, 0.0),
            },
            ID_FREQUENCY: {"frequency": frequency},
        }
        return {frame_id: encode_si_frame(frame_id, frame) for frame_id, frame in values.items()}

    def _per_line(self, prefix: str, total: float) -> dict[str, SiValue]:
        share = total / self.phases
        return {f"{prefix}_l{n}": share if n <= self.phases else 0.0 for n in (1, 2, 3)}

    def _line_voltages(self, prefix: str, live: bool) -> dict[str, SiValue]:
        def volts(line: int) -> float:
            if not live or line > self.phases:
                return 0.0
            return NOMINAL_AC_VOLTAGE + self._rng.uniform(-1.5, 1.5)

        return {f"{prefix}_l{line}": volts(line) for line in (1, 2, 3)}

    def broadcast(self) -> None:
        """Send one round of broadcast frames (some skipped at ``skip_probability``)."""
        frames = self.build_frames()
        self._drop_ext_vf_ok = False
        for frame_id, payload in frames.items():
            if self.skip_probability and self._rng.random() < self.skip_probability:
                continue
            message = can.Message(arbitration_id=frame_id, data=payload, is_extended_id=False)
            try:
                self._bus.send(message)
            except can.CanError:
                self.send_errors += 1
            else:
                self.frames_sent += 1

    async def _broadcast_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            now = loop.time()
            self.step((now - self._last_step) * self.time_scale * self.sun_time_scale)
            self._last_step = now
            self.broadcast()
            next_at += self.interval
            now = loop.time()
            if next_at <= now:  # fell behind (blocked loop): skip the missed rounds, no burst
                next_at = now + self.interval
            await asyncio.sleep(next_at - now)


def _non_negative(name: str, watts: float) -> float:
    if not watts >= 0 or math.isinf(watts):
        raise ValueError(f"{name} must be a finite, non-negative power")
    return float(watts)


def _wander(rng: random.Random, jitter: float) -> float:
    """A bounded random walk (+-10 %) so values move like a real plant's."""
    return min(max(jitter * 0.9 + rng.gauss(0.0, 0.02), -0.1), 0.1)


__all__ = ["PowerFlow", "Rejection", "SimulatedBattery", "SunnyIslandSimulator"]
