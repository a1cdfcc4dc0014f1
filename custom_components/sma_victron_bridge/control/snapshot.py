"""The battery state one entry publishes for others to consume.

A VE.Direct BMV, a serial BMS or a Victron BLE battery monitor each turn their own readings into a
:class:`BatterySnapshot`; consumers (battery-sense forwarding to an MPPT, the Sunny Island BMS) only
ever see this shape, so any source can feed any consumer. Values are SI units; ``None`` means the
source does not measure that quantity. ``timestamp`` is a monotonic time so staleness checks do
not jump with the wall clock.

Sources are not trusted: a decoding slip, a scaling error or an open sensor must never reach a
safety rule as a number, and must never raise either (DESIGN.md invariant 7). So every consumer
that acts on a snapshot first calls :meth:`BatterySnapshot.sanitized` (the charge controller does
it itself), which turns anything non-finite or physically implausible into "unknown".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
import math
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from .chemistry import ChargeSettings

FIELD_NAMES: Final = (
    "soc",
    "voltage",
    "current",
    "temperature",
    "cell_voltages",
    "mosfet_temperature",
)
"""Keys of :attr:`BatterySnapshot.field_times`; ``temperature`` also dates ``temperatures``."""

SAFETY_FIELDS: Final = frozenset({"voltage", "cell_voltages", "temperature", "mosfet_temperature"})
"""Fields the charge limit depends on: a frozen one stops charging like a silent source."""

SOC_RANGE: Final = (0.0, 100.0)
SOC_OVERSHOOT: Final = 1.0
"""A SOC up to this far above 100 % reads as full: BMSes that compute remaining ÷ nominal Ah
report 100.4 % after a charge that counted more than the (aged) nominal capacity. Farther out it is
a decoding slip and unknown."""
CELL_VOLTAGE_RANGE: Final = (0.5, 5.0)
"""No lithium cell reads outside this; 0 V or 65 V is a broken sense wire or a decoding slip."""
MAX_PACK_VOLTAGE_PER_CELL: Final = 5.0
TEMPERATURE_RANGE: Final = (-60.0, 120.0)
"""A battery sensor outside this is open or shorted (a JBD reports an open NTC as -273 °C)."""
MOSFET_TEMPERATURE_RANGE: Final = (-60.0, 150.0)
"""A power MOSFET may run hotter than the cells, but not beyond its junction limit."""
MAX_CURRENT_READING: Final = 10000.0
"""|A| beyond which a current reading is a scaling error (no pack behind a 48 V inverter)."""


def _number(value: object) -> float | None:
    """``value`` as a finite float, else None (also for bools, strings and other garbage)."""
    if type(value) is float:  # the common case first: this runs for every reading
        return value if math.isfinite(value) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _within(value: object, low: float, high: float) -> float | None:
    if type(value) is float:  # NaN and ±inf fail the comparison by themselves
        return value if low <= value <= high else None
    number = _number(value)
    return number if number is not None and low <= number <= high else None


def _soc(value: object) -> float | None:
    soc = _within(value, SOC_RANGE[0], SOC_RANGE[1] + SOC_OVERSHOOT)
    return None if soc is None else min(soc, SOC_RANGE[1])


def plausible_cell_voltage(value: object) -> float | None:
    """A cell voltage, or None when it cannot be a real cell's reading."""
    return _within(value, *CELL_VOLTAGE_RANGE)


def plausible_cell_voltages(values: Iterable[object]) -> tuple[float, ...]:
    """The plausible ones of ``values``, in order (runs for every cell of every reading)."""
    low, high = CELL_VOLTAGE_RANGE
    valid: list[float] = []
    for value in values:
        if type(value) is float:
            if low <= value <= high:
                valid.append(value)
        else:
            number = plausible_cell_voltage(value)
            if number is not None:
                valid.append(number)
    return tuple(valid)


def plausible_temperature(value: object) -> float | None:
    """A battery temperature, or None for an open/shorted sensor or garbage."""
    return _within(value, *TEMPERATURE_RANGE)


def _values(items: object) -> tuple[object, ...]:
    """The elements of a tuple/list (a string or a scalar is not a list of readings)."""
    if isinstance(items, tuple | list):
        return tuple(items)
    return ()


_NO_TIMES: Final[Mapping[str, float]] = MappingProxyType({})
_NO_FLAGS: Final[frozenset[str]] = frozenset()
_SMALLEST_CAPACITY: Final = 1e-9
"""A capacity must be positive; zero means the BMS does not know it."""


def _empty_times() -> Mapping[str, float]:
    return _NO_TIMES


@dataclass(frozen=True, slots=True, kw_only=True)
class BatterySnapshot:
    """One consistent reading of a battery, taken at ``timestamp`` (monotonic seconds).

    ``temperature`` is one representative battery temperature (a serial BMS publishes its
    hottest sensor); ``temperatures`` holds every battery sensor, so the rules can look at the
    coldest *and* the hottest. Either may be empty: :attr:`all_temperatures` combines them.

    ``field_times`` lets a source say when each quantity was last really measured (keys from
    :data:`FIELD_NAMES`), so a reading frozen inside an otherwise updating snapshot still goes
    stale. A field without an entry dates from ``timestamp``.
    """

    timestamp: float
    soc: float | None = None
    voltage: float | None = None
    current: float | None = None
    temperature: float | None = None
    cell_voltages: tuple[float, ...] = field(default=())
    alarms: frozenset[str] = field(default_factory=frozenset)
    # Optional extras a BMS may know; consumers that ignore them keep working unchanged.
    mosfet_temperature: float | None = None
    soh: float | None = None
    capacity_ah: float | None = None
    temperatures: tuple[float, ...] = field(default=())
    field_times: Mapping[str, float] = field(default_factory=_empty_times, hash=False)

    def age(self, now: float) -> float:
        """Seconds since the reading was taken (never negative)."""
        return max(0.0, now - self.timestamp)

    def is_fresh(self, now: float, max_age: float) -> bool:
        """Whether the reading is recent enough to act on."""
        return self.age(now) <= max_age

    def field_time(self, name: str) -> float:
        """When ``name`` was measured: its own time, never later than the snapshot's.

        A time that is not a finite number counts as infinitely old: nobody knows when that
        value was measured, so it must not be trusted.
        """
        times = self.field_times
        if not isinstance(times, Mapping) or name not in times:
            return self.timestamp
        number = _number(times[name])
        if number is None:
            return -math.inf
        return min(number, self.timestamp)

    @property
    def all_temperatures(self) -> tuple[float, ...]:
        """Every battery temperature the snapshot carries (``temperatures`` and ``temperature``)."""
        if self.temperature is None:
            return tuple(self.temperatures)
        return (*self.temperatures, self.temperature)

    @property
    def power(self) -> float | None:
        """Battery power in W (+ = charging), when both voltage and current are known."""
        if self.voltage is None or self.current is None:
            return None
        return self.voltage * self.current

    def sanitized(self, *, cells: int) -> BatterySnapshot:
        """This snapshot with every non-finite or implausible reading turned into unknown.

        ``cells`` is the pack's cell count: no pack voltage above ``cells`` * 5 V can be real.
        Implausible cell voltages and temperatures are dropped from their tuples (so a partial
        cell set stays visibly partial); scalars become None. A ``timestamp`` that is not a
        number becomes NaN, which every consumer treats as "no reading". A snapshot that is
        already clean comes back as itself (no copy: this runs for every reading). Never raises.
        """
        known = _KNOWN_CLEAN.get(id(self))
        if known is not None and known[0] is self and known[1] == cells:
            return self
        pack_limit = max(1, cells if isinstance(cells, int) else 1) * MAX_PACK_VOLTAGE_PER_CELL
        voltage = _number(self.voltage)
        if voltage is not None and not 0.0 < voltage <= pack_limit:
            voltage = None
        stamp = _number(self.timestamp)
        timestamp = math.nan if stamp is None else stamp
        soc = _soc(self.soc)
        current = _within(self.current, -MAX_CURRENT_READING, MAX_CURRENT_READING)
        temperature = plausible_temperature(self.temperature)
        cell_voltages = _same(
            self.cell_voltages, plausible_cell_voltages(_values(self.cell_voltages))
        )
        alarms = _flags(self.alarms)
        mosfet = _within(self.mosfet_temperature, *MOSFET_TEMPERATURE_RANGE)
        soh = _within(self.soh, *SOC_RANGE)
        capacity = _within(self.capacity_ah, _SMALLEST_CAPACITY, math.inf)
        temperatures = _same(self.temperatures, _plausible_temperatures(self.temperatures))
        field_times = _times(self.field_times)
        if (
            timestamp is self.timestamp
            and soc is self.soc
            and voltage is self.voltage
            and current is self.current
            and temperature is self.temperature
            and cell_voltages is self.cell_voltages
            and alarms is self.alarms
            and mosfet is self.mosfet_temperature
            and soh is self.soh
            and capacity is self.capacity_ah
            and temperatures is self.temperatures
            and field_times is self.field_times
        ):
            _remember_clean(self, cells)
            return self
        return BatterySnapshot(
            timestamp=timestamp,
            soc=soc,
            voltage=voltage,
            current=current,
            temperature=temperature,
            cell_voltages=cell_voltages,
            alarms=alarms,
            mosfet_temperature=mosfet,
            soh=soh,
            capacity_ah=capacity,
            temperatures=temperatures,
            field_times=field_times,
        )


_KNOWN_CLEAN: dict[int, tuple[BatterySnapshot, object]] = {}
"""Snapshots found clean lately, by identity, with the cell count they were checked for.

A pack's reading is checked by its own charge controller, then again by each consumer (a bank,
a Sunny Island) within the same second; a snapshot cannot change, so the first answer holds.
Each entry keeps its snapshot alive, so an ``id`` is never reused while it is remembered.
"""
_KNOWN_CLEAN_SIZE: Final = 64


def _remember_clean(snapshot: BatterySnapshot, cells: object) -> None:
    """Remember that ``snapshot`` is clean for ``cells``, if nothing in it can change later.

    Its other fields are immutable once clean (floats, tuples, a frozenset); field times are
    only trusted when there are none: a mapping of them could still be changed by its owner.
    """
    if snapshot.field_times is not _NO_TIMES:
        return
    if len(_KNOWN_CLEAN) >= _KNOWN_CLEAN_SIZE:  # forget the oldest; never raises
        _KNOWN_CLEAN.pop(next(iter(_KNOWN_CLEAN), 0), None)
    _KNOWN_CLEAN[id(snapshot)] = (snapshot, cells)


def _same(original: object, clean: tuple[float, ...]) -> tuple[float, ...]:
    """``original`` itself when cleaning kept every element (it only ever drops some)."""
    if type(original) is tuple and len(original) == len(clean):
        return original
    return clean


def _plausible_temperatures(values: object) -> tuple[float, ...]:
    if values == ():
        return ()
    return tuple(t for t in (plausible_temperature(v) for v in _values(values)) if t is not None)


def _flags(alarms: object) -> frozenset[str]:
    if not isinstance(alarms, Iterable) or isinstance(alarms, str | bytes):
        return _NO_FLAGS
    if type(alarms) is frozenset and all(type(flag) is str for flag in alarms):
        return alarms
    return frozenset(flag for flag in alarms if isinstance(flag, str))


def _times(times: object) -> Mapping[str, float]:
    """Known field names with a float time; an unusable time becomes -inf (infinitely old)."""
    if not isinstance(times, Mapping):
        return _NO_TIMES
    if all(name in FIELD_NAMES and type(t) is float and t < math.inf for name, t in times.items()):
        return times  # already clean: known names, float times, none NaN or +inf
    result: dict[str, float] = {}
    for name in FIELD_NAMES:
        if name in times:
            stamp = _number(times[name])
            result[name] = -math.inf if stamp is None else stamp
    return MappingProxyType(result)


def sanitize_snapshot(snapshot: BatterySnapshot, settings: ChargeSettings) -> BatterySnapshot:
    """``snapshot`` with everything implausible for the pack ``settings`` describe removed."""
    return snapshot.sanitized(cells=settings.cells)
