"""The LiFePO4 pack behind every simulated battery management system, wired or Bluetooth.

The serial BMS simulators (:mod:`.bms`, :mod:`.jk`) and the Bluetooth BMS peers
(:mod:`.ble_bms`) differ in how they talk, not in the battery they measure: one model,
:class:`SimulatedPack`, gives them all the same physics.

* A solar day, given ``start_time_of_day``: a PV array (clear sky, :func:`.day_clock.clear_sky`)
  charges the pack by day up to the charger's constant voltage, a house load drains it, most in
  the evening; ``time_scale`` runs that day faster than the wall clock. Without a start time the
  current stays what was set.
* The SOC integrates the current that can flow through the FETs; the cell voltages follow the
  SOC on the LiFePO4 open-circuit curve, plus the IR drop, a steep rise of a full cell still being
  charged and a spread between cells that grows at both ends of the charge.
* A balancer bleeds the highest cell near the top of the charge once the spread grows.
* Cell over/under-voltage protection trips and releases by itself (hysteresis) and, like a real
  BMS's, holds the FET it concerns off; switching that FET on has no effect until it clears.
* :meth:`SimulatedPack.follow_current`: in a simulated plant the inverter decides what flows
  through the battery, so a simulated Sunny Island hands over its own battery current and the
  BMS reports the same battery instead of a day of its own.

``frozen`` stops the pack moving by itself (a test's values stay exactly as set);
:meth:`SimulatedPack.step` still advances it on demand.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from typing import Final

from ..protocols.bms_common import (
    CELL_OVERVOLTAGE,
    CELL_UNDERVOLTAGE,
    CHARGE_OVERCURRENT,
    CHARGE_OVERTEMPERATURE,
    CHARGE_UNDERTEMPERATURE,
    DISCHARGE_OVERCURRENT,
    DISCHARGE_OVERTEMPERATURE,
    DISCHARGE_UNDERTEMPERATURE,
    FRONTEND_ERROR,
    MOSFET_LOCK,
    MOSFET_OVERTEMPERATURE,
    PACK_OVERVOLTAGE,
    PACK_UNDERVOLTAGE,
    SHORT_CIRCUIT,
)
from .day_clock import DAY, HOUR, clear_sky

__all__ = ["BLOCKS_CHARGE", "BLOCKS_DISCHARGE", "FOLLOW_VALID", "SimulatedPack"]

BLOCKS_CHARGE: Final = frozenset(
    {
        CELL_OVERVOLTAGE,
        PACK_OVERVOLTAGE,
        CHARGE_OVERTEMPERATURE,
        CHARGE_UNDERTEMPERATURE,
        CHARGE_OVERCURRENT,
        SHORT_CIRCUIT,
        FRONTEND_ERROR,
        MOSFET_LOCK,
        MOSFET_OVERTEMPERATURE,
    }
)
"""Protections that hold the charge FET off while they are active."""
BLOCKS_DISCHARGE: Final = frozenset(
    {
        CELL_UNDERVOLTAGE,
        PACK_UNDERVOLTAGE,
        DISCHARGE_OVERTEMPERATURE,
        DISCHARGE_UNDERTEMPERATURE,
        DISCHARGE_OVERCURRENT,
        SHORT_CIRCUIT,
        FRONTEND_ERROR,
        MOSFET_LOCK,
        MOSFET_OVERTEMPERATURE,
    }
)
"""Protections that hold the discharge FET off while they are active."""

FOLLOW_VALID: Final = 5.0  # s a current handed over by follow_current() stays in force
_SUBSTEP: Final = 60.0  # s of simulated time per integration step

# LiFePO4 open-circuit voltage per cell against SOC (%), piecewise linear.
_OCV_CURVE: Final[tuple[tuple[float, float], ...]] = (
    (0.0, 2.80),
    (5.0, 3.05),
    (10.0, 3.20),
    (20.0, 3.25),
    (40.0, 3.28),
    (60.0, 3.30),
    (80.0, 3.32),
    (90.0, 3.34),
    (97.0, 3.40),
    (100.0, 3.50),
)
_CELL_RESISTANCE: Final = 0.0005  # ohm per cell (280 Ah prismatic cell plus busbar)
_TOP_RISE: Final = 0.15  # V a charged cell rises above its OCV at 100 % while charging
_TOP_RISE_FROM: Final = 97.0  # % SOC where that rise begins
_CELL_SPREAD: Final = 0.004  # V: largest offset of a cell from the pack's mean at mid SOC
_BALANCE_START: Final = 3.40  # V: balancing only near the top of the charge
_BALANCE_SPREAD: Final = 0.015  # V: spread that starts balancing
_BALANCE_RATE: Final = 0.0002  # V per simulated minute the balanced cell's offset drops
_CELL_OV_TRIP: Final = 3.65
_CELL_OV_RELEASE: Final = 3.40
_CELL_UV_TRIP: Final = 2.80
_CELL_UV_RELEASE: Final = 3.10

# The solar day of a pack given a start time: PV and house load in C (fractions of the
# capacity per hour), sized so that a clear day fills a half-empty pack by early afternoon and
# the evening and night take it down far enough for the next day to start with a bulk charge.
_PV_PEAK_C: Final = 0.2
_LOAD_DAY_C: Final = 0.03  # 06-18 h
_LOAD_EVENING_C: Final = 0.06  # 18-23 h
_LOAD_NIGHT_C: Final = 0.02
_CHARGE_CELL_VOLTAGE: Final = 3.45  # V: the charger's constant voltage, per cell


def ocv(soc: float) -> float:
    """Open-circuit cell voltage at ``soc`` % from the LiFePO4 curve."""
    points = _OCV_CURVE
    if soc <= points[0][0]:
        return points[0][1]
    for (soc_a, volt_a), (soc_b, volt_b) in itertools.pairwise(points):
        if soc <= soc_b:
            return volt_a + (volt_b - volt_a) * (soc - soc_a) / (soc_b - soc_a)
    return points[-1][1]


def _top_rise(soc: float) -> float:
    """How far a full cell still being charged runs above its OCV (what trips over-voltage)."""
    return _TOP_RISE * max(0.0, soc - _TOP_RISE_FROM) / (100.0 - _TOP_RISE_FROM)


class SimulatedPack:
    """A LiFePO4 pack with its BMS's measurements, protections and FETs: plain attributes.

    Scriptable state: ``cell_voltages`` (V), ``current`` (A, + = charging), ``temperatures``
    (°C, the pack's sensors), ``mosfet_temperature`` (°C), ``soc`` (%), ``cycles``,
    ``protections`` (names from :mod:`~..protocols.bms_common`), ``balancing`` (0-based cell
    indexes), ``frozen`` and ``time_scale``. ``charge_fet``/``discharge_fet`` read the actual FET
    state - switched on and not held off by a protection - and set the switch. ``voltage`` is the
    cell sum unless a separately measured value is set.

    The pack moves by :meth:`step` (simulated seconds) or :meth:`advance` (real time passed, times
    ``time_scale``, unless ``frozen``); who calls which is up to the device around it.
    """

    def __init__(
        self,
        *,
        cells: int = 16,
        capacity_ah: float = 280.0,
        soc: float = 50.0,
        rng: random.Random | None = None,
        start_time_of_day: float | None = None,
        time_scale: float = 1.0,
        frozen: bool = False,
        temperatures: tuple[float, ...] = (25.0, 24.0),
        mosfet_temperature: float = 27.0,
        cycles: int = 12,
    ) -> None:
        """Build a pack at ``soc`` with cells a few mV apart (drawn from ``rng``)."""
        if not 1 <= cells <= 32:
            raise ValueError("a simulated pack has 1 to 32 cells")
        if not capacity_ah > 0:
            raise ValueError("capacity_ah must be positive")
        if not time_scale > 0:
            raise ValueError("time_scale must be positive")
        self._clock: float | None = None
        if start_time_of_day is not None:
            self._clock = start_time_of_day % DAY
            if not math.isfinite(self._clock):
                raise ValueError("start_time_of_day must be finite")
        rng = rng if rng is not None else random.Random()
        self.capacity_ah = capacity_ah
        self.time_scale = time_scale
        self.frozen = frozen
        self.soc = soc
        self.current = 0.0
        self.temperatures: list[float] = list(temperatures)
        self.mosfet_temperature = mosfet_temperature
        self.cycles = cycles
        self.protections: set[str] = set()
        self.balancing: set[int] = set()
        self._charge_switch = True
        self._discharge_switch = True
        self._offsets = [rng.uniform(-_CELL_SPREAD, _CELL_SPREAD) for _ in range(cells)]
        self._auto_protections: set[str] = set()
        self._held_voltage: float | None = None  # cell V a charger in constant voltage holds
        self._followed: tuple[float, float] | None = None  # (current A, valid until monotonic s)
        self._own_current = 0.0  # the current before following began (a pack without a day)
        self._last_advance: float | None = None
        self._pack_voltage: float | None = None
        self.cell_voltages: list[float] = []
        self._follow_soc(0.0)

    # -- readings --------------------------------------------------------------------------

    @property
    def cell_count(self) -> int:
        """Number of cells (the length of ``cell_voltages``)."""
        return len(self.cell_voltages)

    @property
    def voltage(self) -> float:
        """Pack voltage in V: the sum of the cells unless a value was set (None restores that).

        A real BMS measures the pack separately, so its reading can differ from the cell sum.
        """
        if self._pack_voltage is not None:
            return self._pack_voltage
        return sum(self.cell_voltages)

    @voltage.setter
    def voltage(self, value: float | None) -> None:
        self._pack_voltage = value

    @property
    def remaining_capacity(self) -> float:
        """Remaining capacity in Ah from SOC and capacity."""
        return self.capacity_ah * self.soc / 100

    @property
    def charge_fet(self) -> bool:
        """The charge FET conducts: switched on and not held off by a protection."""
        return self._charge_switch and not self.protections & BLOCKS_CHARGE

    @charge_fet.setter
    def charge_fet(self, on: bool) -> None:
        self._charge_switch = on

    @property
    def discharge_fet(self) -> bool:
        """The discharge FET conducts: switched on and not held off by a protection."""
        return self._discharge_switch and not self.protections & BLOCKS_DISCHARGE

    @discharge_fet.setter
    def discharge_fet(self, on: bool) -> None:
        self._discharge_switch = on

    @property
    def time_of_day(self) -> float | None:
        """Simulated seconds after midnight of a pack living a solar day (else None)."""
        return self._clock

    # -- following an inverter ---------------------------------------------------------------

    def follow_current(self, current: float, valid_for: float = FOLLOW_VALID) -> None:
        """Carry ``current`` (A, + = charging) measured elsewhere, for ``valid_for`` seconds.

        In a simulated plant the inverter decides what flows through the battery: a simulated
        Sunny Island fed by this BMS hands over its own battery current every tick, so the BMS
        and the inverter report one battery (the same sign, as real ones on one battery do)
        instead of two unrelated days. Without a fresh value the pack lives its own day again;
        one without a day goes back to the current it had before.
        """
        if not math.isfinite(current):
            raise ValueError("a followed current must be finite")
        if self._followed is None:
            self._own_current = self.current
        self._followed = (current, time.monotonic() + valid_for)

    @property
    def followed_current(self) -> float | None:
        """The current handed over by :meth:`follow_current` while still valid, else None."""
        if self._followed is None:
            return None
        current, until = self._followed
        if time.monotonic() > until:
            self._followed = None
            if self._clock is None:
                self.current = self._own_current
            return None
        return current

    # -- physics ---------------------------------------------------------------------------

    def advance(self, now: float | None = None) -> None:
        """Bring the pack up to ``now`` (monotonic seconds; default: now), unless frozen.

        The first call only sets the starting point; each later one steps the pack by the real
        time passed since the previous call, times ``time_scale``.
        """
        moment = time.monotonic() if now is None else now
        last, self._last_advance = self._last_advance, moment
        if last is None or self.frozen:
            return
        self.step(max(0.0, moment - last) * self.time_scale)

    def step(self, seconds: float) -> None:
        """Advance the pack by ``seconds`` of simulated time (also while frozen)."""
        remaining = seconds
        while remaining > 0:
            dt_step = min(remaining, _SUBSTEP)
            remaining -= dt_step
            if self._clock is not None:
                self._clock = (self._clock + dt_step) % DAY
                self.current = self._solar_current(self._clock)
            followed = self.followed_current
            if followed is not None:
                self.current = followed
                self._held_voltage = None  # the inverter's charger holds the voltage, not ours
            flowing = self._flowing_current()
            self.soc = min(100.0, max(0.0, self.soc + flowing * dt_step / 36 / self.capacity_ah))
            self._follow_soc(flowing)
            self._balance(flowing, dt_step)
            self._protect()

    def _flowing_current(self) -> float:
        """The current that can flow through the FETs (a blocked direction carries none)."""
        if self.current > 0 and not self.charge_fet:
            return 0.0
        if self.current < 0 and not self.discharge_fet:
            return 0.0
        return self.current

    def _solar_current(self, time_of_day: float) -> float:
        """PV minus house load; charging stops short of the charger's constant voltage."""
        hour = time_of_day / HOUR
        if 18.0 <= hour < 23.0:
            load = _LOAD_EVENING_C
        elif 6.0 <= hour < 18.0:
            load = _LOAD_DAY_C
        else:
            load = _LOAD_NIGHT_C
        surplus = (_PV_PEAK_C * clear_sky(time_of_day) - load) * self.capacity_ah
        self._held_voltage = None
        if surplus <= 0:
            return surplus
        # Constant voltage: only the current that keeps the mean cell at the charge voltage;
        # once that is less than the sun gives, the charger holds the cells at that voltage.
        resting = ocv(self.soc) + _top_rise(self.soc)
        headroom = (_CHARGE_CELL_VOLTAGE - resting) / _CELL_RESISTANCE
        if headroom < surplus:
            self._held_voltage = _CHARGE_CELL_VOLTAGE
        return max(0.0, min(surplus, headroom))

    def _follow_soc(self, flowing: float) -> None:
        """Cell voltages from the OCV curve, the IR drop and a spread that grows at the ends."""
        soc = self.soc
        spread = 1.0 + max(0.0, soc - 90.0) / 2.5 + max(0.0, 10.0 - soc) / 2.5
        base = ocv(soc) + flowing * _CELL_RESISTANCE
        if flowing > 0:
            base += _top_rise(soc)
        if self._held_voltage is not None and self.charge_fet:
            base = max(base, self._held_voltage)
        self.cell_voltages = [round(base + offset * spread, 3) for offset in self._offsets]

    def _balance(self, flowing: float, seconds: float) -> None:
        """Bleed the highest cell while charging near the top with a grown spread."""
        cells = self.cell_voltages
        highest = max(range(len(cells)), key=cells.__getitem__)
        if (
            flowing > 0
            and cells[highest] >= _BALANCE_START
            and cells[highest] - min(cells) >= _BALANCE_SPREAD
        ):
            self.balancing = {highest}
            self._offsets[highest] -= _BALANCE_RATE * seconds / 60
        else:
            self.balancing = set()

    def _protect(self) -> None:
        """Trip and release cell over/under-voltage protection from the cell voltages."""
        highest = max(self.cell_voltages)
        lowest = min(self.cell_voltages)
        for name, trip, release in (
            (CELL_OVERVOLTAGE, highest >= _CELL_OV_TRIP, highest <= _CELL_OV_RELEASE),
            (CELL_UNDERVOLTAGE, lowest <= _CELL_UV_TRIP, lowest >= _CELL_UV_RELEASE),
        ):
            if trip and name not in self.protections:
                self.protections.add(name)
                self._auto_protections.add(name)
            elif release and name in self._auto_protections:
                self.protections.discard(name)
                self._auto_protections.discard(name)
