"""How much current a battery may take and give right now: the CCL/DCL policy.

Two layers, both pure:

* :func:`assess` looks at one snapshot and returns *targets*: the minimum over every rule
  (configured maximum, cell-voltage curve, temperature curve, MOSFET temperature, SOC curve, the
  hard cut-offs and the BMS's own protection flags), each with the name of the rule that set it,
  plus the alarms and warnings the snapshot justifies.
* :class:`LimitPolicy` turns targets into the limits actually reported, over time: it treats a
  source that stopped reporting as stale (charge limit to 0, warning, optional alarm), delays
  alarms so one bad sample cannot fault an inverter, and shapes every change.

Shaping rules (why each exists):

* Down is immediate — a limit that is too high is the dangerous direction.
* A *soft* fall to 0 A (curves reaching 0, stale source, charging switched off) passes through
  one update at ≤ 1 A, as solardirector does when it drives a Sunny Island.
* *Hard* cut-offs — any cell or the pack at or above the charge cut-off, temperature outside the
  allowed range, MOSFET temperature at the end of its curve, a protection the BMS reports — take
  the charge limit to 0 A through a single update at 1 A (DESIGN.md invariant 4: at a 1 s period
  that is one frame), and the discharge limit to 0 A at once at or below the discharge cut-off.
  :func:`assess` itself reports 0 A for them immediately, so the computed-limit sensors of a BMS
  show the cut-off in the same reading.
* After a limit has been 0 it stays 0 until its cause has been gone for ``recovery_hold``
  seconds, so a cell hovering at a threshold cannot toggle charging every second.
* Every increase (also at start-up) is limited to ``ramp_rate`` times the elapsed time.
* Nothing ever exceeds the configured maxima.

A rule whose input the source does not measure (``None``) is skipped; the Sunny Island still does
constant-voltage charging at the charge voltage limit, so a SOC-only source stays safe. Two
inputs are different, because nothing else stands in for them:

* No battery temperature at all: the charge limit is 0 (reason ``no_temperature``) unless the
  settings allow charging without one — nothing else would stop charging a frozen pack.
* Temperature rules look at the coldest *and* the hottest valid sensor: a pack with one sensor
  at -6 °C and one at +3 °C must not be charged because the hotter one is fine.

Under-voltage off-grid: the Sunny Island ignores the discharge current limit off-grid ("Please
note that discharging current limitation is not valid in 2 cases: Inverter runs in Off-Grid
Mode…", FSS-ConnectingBat-TI-en-10 p. 18; parameter 271.01 "only observed when operating in
grid-tide mode", p. 15). A DCL of 0 at the discharge cut-off therefore stops nothing off-grid. The
stops the document offers are the discharge voltage limit and the alarm. The discharge voltage
limit stops the inverter only when the *pack* falls below it, and it may be at most 48 V (p. 21),
so it can never stand in for one low cell in a 50 V pack; raising it above the pack voltage would
also block every restart ("If the actual battery voltage is below this limit no re-start of the
system is possible", p. 19). An alarm makes the inverter "immediately stop inverting and change
to error condition (standby) until alarm is cleared", then restart (p. 19). So when the grid is
not known to be connected, reaching the configured discharge cut-off (lowest cell or pack) raises
the under-voltage alarm; it leaves once the lowest cell and the pack have recovered by
``undervoltage_hysteresis`` per cell for ``recovery_hold`` seconds, or the grid is back.

Freshness is judged per field (``BatterySnapshot.field_times``): a pack voltage, cell voltages or
a temperature that stopped changing while the rest of the snapshot keeps coming counts as a
stale source (charge limit 0, warning); a stale SOC or current is only dropped.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
import math
from types import MappingProxyType
from typing import Final

from .chemistry import ChargeSettings, Curve
from .snapshot import (
    FIELD_NAMES,
    MOSFET_TEMPERATURE_RANGE,
    SAFETY_FIELDS,
    SOC_RANGE,
    BatterySnapshot,
    plausible_cell_voltages,
    plausible_temperature,
)

STEP_CURRENT: Final = 1.0
# The 1 A step is held this long, not for one update: the limits are re-decided every second and
# sent every second by a separate timer, so a value held for just one update can be replaced
# before it ever reaches the wire. Longer than one send period guarantees one frame at 1 A.
STEP_HOLD: Final = 1.2
"""A soft fall to 0 A shows this value (or less) for one update first."""

_VOLTAGE_SLACK: Final = 1e-6
OVERCURRENT_FACTOR: Final = 1.2
"""Measured current above this multiple of the configured maximum raises a warning."""


class Reason(StrEnum):
    """The rule that set a limit; shown to users and carried in decisions."""

    NO_DATA = "no_data"
    NO_TEMPERATURE = "no_temperature"
    STALE_SOURCE = "stale_source"
    FORCED_OFF = "forced_off"
    OVERVOLTAGE = "overvoltage"
    UNDERVOLTAGE = "undervoltage"
    TEMPERATURE = "temperature"
    MOSFET_TEMPERATURE = "mosfet_temperature"
    BMS_PROTECTION = "bms_protection"
    BULK_LIMIT = "bulk_limit"
    DISCHARGE_LIMIT = "discharge_limit"
    CELL_VOLTAGE = "cell_voltage"
    SOC = "soc"
    RECOVERY_HOLD = "recovery_hold"
    RECOVERY_RAMP = "recovery_ramp"


class AlarmItem(StrEnum):
    """Alarm/warning names; each maps to one item of the Sunny Island's 0x35A frame."""

    GENERAL = "general"
    HIGH_VOLTAGE = "high_voltage"
    LOW_VOLTAGE = "low_voltage"
    HIGH_TEMP = "high_temp"
    LOW_TEMP = "low_temp"
    HIGH_TEMP_CHARGE = "high_temp_charge"
    LOW_TEMP_CHARGE = "low_temp_charge"
    HIGH_CURRENT = "high_current"
    HIGH_CHARGE_CURRENT = "high_charge_current"
    BMS_INTERNAL = "bms_internal"
    CELL_IMBALANCE = "cell_imbalance"


@dataclass(frozen=True, slots=True)
class _Protection:
    """What a protection flag reported by a BMS means here."""

    item: AlarmItem
    blocks_charge: bool
    blocks_discharge: bool
    reason: Reason


# Names used by the serial-BMS codecs (protocols/bms_common.py). Every flag is a warning: the BMS
# has already acted on it. Unknown names (e.g. a BMV's "alarm") become a general warning.
_PROTECTIONS: Final[Mapping[str, _Protection]] = MappingProxyType(
    {
        "cell_overvoltage": _Protection(AlarmItem.HIGH_VOLTAGE, True, False, Reason.OVERVOLTAGE),
        "pack_overvoltage": _Protection(AlarmItem.HIGH_VOLTAGE, True, False, Reason.OVERVOLTAGE),
        "cell_undervoltage": _Protection(AlarmItem.LOW_VOLTAGE, False, True, Reason.UNDERVOLTAGE),
        "pack_undervoltage": _Protection(AlarmItem.LOW_VOLTAGE, False, True, Reason.UNDERVOLTAGE),
        "charge_overtemperature": _Protection(
            AlarmItem.HIGH_TEMP_CHARGE, True, False, Reason.TEMPERATURE
        ),
        "charge_undertemperature": _Protection(
            AlarmItem.LOW_TEMP_CHARGE, True, False, Reason.TEMPERATURE
        ),
        "discharge_overtemperature": _Protection(
            AlarmItem.HIGH_TEMP, False, True, Reason.TEMPERATURE
        ),
        "discharge_undertemperature": _Protection(
            AlarmItem.LOW_TEMP, False, True, Reason.TEMPERATURE
        ),
        "charge_overcurrent": _Protection(
            AlarmItem.HIGH_CHARGE_CURRENT, True, False, Reason.BMS_PROTECTION
        ),
        "discharge_overcurrent": _Protection(
            AlarmItem.HIGH_CURRENT, False, True, Reason.BMS_PROTECTION
        ),
        "short_circuit": _Protection(AlarmItem.HIGH_CURRENT, True, True, Reason.BMS_PROTECTION),
        "frontend_error": _Protection(AlarmItem.BMS_INTERNAL, True, True, Reason.BMS_PROTECTION),
        "mosfet_lock": _Protection(AlarmItem.BMS_INTERNAL, True, True, Reason.BMS_PROTECTION),
        # A BMS that reports a problem in a word whose bits are not documented alike across
        # firmware (protocols/ble_bms.py): no cause is invented, charging stops until it clears.
        # Discharging goes on: the cell rules still guard the low side, and off-grid it feeds
        # the house.
        "bms_problem": _Protection(AlarmItem.BMS_INTERNAL, True, False, Reason.BMS_PROTECTION),
        "mosfet_overtemperature": _Protection(
            AlarmItem.HIGH_TEMP, True, True, Reason.MOSFET_TEMPERATURE
        ),
        "cell_imbalance": _Protection(
            AlarmItem.CELL_IMBALANCE, False, False, Reason.BMS_PROTECTION
        ),
        "soc_low": _Protection(AlarmItem.LOW_VOLTAGE, False, False, Reason.BMS_PROTECTION),
    }
)


@dataclass(frozen=True, slots=True)
class Target:
    """A limit a rule asks for: ``value`` A, set by ``reason``.

    ``hard`` marks safety cut-offs: a hard 0 skips the 1 A step on the discharge limit; the
    charge limit always passes through 1 A (DESIGN.md invariant 4).
    """

    value: float
    reason: Reason
    hard: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Assessment:
    """What one snapshot alone says: target limits and the conditions it shows.

    ``undervoltage`` is true at or below the configured discharge cut-off (lowest cell or pack);
    ``undervoltage_recovered`` once every known one of them is ``undervoltage_hysteresis`` per
    cell above it (false when neither is known).
    """

    charge: Target
    discharge: Target
    alarms: frozenset[str]
    warnings: frozenset[str]
    undervoltage: bool = False
    undervoltage_recovered: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitResult:
    """The limits to report now, the rule behind each, and the conditions to raise.

    ``charge_target``/``discharge_target`` are the policy's wish before recovery hold and
    ramping; ``stale`` is true while the source counts as stale (silent, or a safety field
    frozen: ``stale_fields`` names those); ``fresh`` when the snapshot used is recent enough to
    act on, and then ``view`` is that snapshot with stale fields removed (``readings`` its
    cleaned values); ``source_age`` is its
    age in seconds (None before any data). ``undervoltage_alarm`` is the off-grid under-voltage
    latch (before ``alarm_delay``).
    """

    charge_current: float
    discharge_current: float
    charge_reason: Reason
    discharge_reason: Reason
    charge_target: float
    discharge_target: float
    alarms: frozenset[str]
    warnings: frozenset[str]
    stale: bool
    fresh: bool
    source_age: float | None
    stale_fields: frozenset[str] = frozenset()
    view: BatterySnapshot | None = None
    readings: Readings | None = None
    undervoltage_alarm: bool = False


def curve_fraction(curve: Curve, x: float, *, linear: bool = True) -> float:
    """The curve's fraction at ``x``: interpolated, or in step mode the lower neighbour.

    Outside the curve the end values hold. Step mode never allows more than linear mode: between
    two points it takes the smaller of their fractions.
    """
    xs = [point[0] for point in curve]
    index = bisect_right(xs, x)
    if index == 0:
        return curve[0][1]
    if index == len(curve):
        return curve[-1][1]
    (x0, f0), (x1, f1) = curve[index - 1], curve[index]
    if x == x0:
        return f0
    if not linear:
        return min(f0, f1)
    return f0 + (f1 - f0) * (x - x0) / (x1 - x0)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _positive(value: float | None) -> float | None:
    """A voltage reading; zero or negative means the source has none (a glitch, not 0 V)."""
    value = _finite(value)
    return value if value is not None and value > 0 else None


def _in_range(value: float | None, span: tuple[float, float]) -> float | None:
    value = _finite(value)
    return value if value is not None and span[0] <= value <= span[1] else None


@dataclass(frozen=True, slots=True)
class Readings:
    """The measured quantities the rules use, cleaned of non-finite and impossible values.

    ``pack`` falls back to the sum of the cells when the source reports no pack voltage, but
    only when every one of the ``cells`` expected cells gave a valid reading; that is also when
    ``cells_complete`` is true. ``coldest``/``hottest`` are over every valid battery sensor.
    """

    pack: float | None
    high_cell: float | None
    low_cell: float | None
    coldest: float | None
    hottest: float | None
    mosfet: float | None
    soc: float | None
    current: float | None
    cells_complete: bool = False

    @property
    def temperature(self) -> float | None:
        """The hottest valid battery temperature (what a single-sensor rule would use)."""
        return self.hottest

    @classmethod
    def of(cls, snapshot: BatterySnapshot, cells: int) -> Readings:
        """Clean readings of ``snapshot`` from a pack of ``cells`` cells in series."""
        valid = plausible_cell_voltages(snapshot.cell_voltages)
        complete = len(valid) == cells == len(snapshot.cell_voltages)
        pack = _positive(snapshot.voltage)
        if pack is None and complete:
            pack = math.fsum(valid)
        temperatures = [
            t
            for t in (plausible_temperature(v) for v in snapshot.all_temperatures)
            if t is not None
        ]
        return cls(
            pack=pack,
            high_cell=max(valid) if valid else None,
            low_cell=min(valid) if valid else None,
            coldest=min(temperatures) if temperatures else None,
            hottest=max(temperatures) if temperatures else None,
            mosfet=_in_range(snapshot.mosfet_temperature, MOSFET_TEMPERATURE_RANGE),
            soc=_in_range(snapshot.soc, SOC_RANGE),
            current=_finite(snapshot.current),
            cells_complete=complete,
        )


def assess(
    snapshot: BatterySnapshot, settings: ChargeSettings, readings: Readings | None = None
) -> Assessment:
    """Target limits, alarms and warnings from one snapshot (no history, no staleness).

    ``readings`` may pass ``Readings.of(snapshot, settings.cells)`` when the caller has it.
    """
    r = Readings.of(snapshot, settings.cells) if readings is None else readings
    alarms: set[str] = set()
    warnings: set[str] = set()
    charge = [Target(settings.bulk_current, Reason.BULK_LIMIT)]
    discharge = [Target(settings.max_discharge_current, Reason.DISCHARGE_LIMIT)]
    _voltage_rules(r, settings, charge, discharge, alarms=alarms, warnings=warnings)
    _temperature_rules(r, settings, charge, discharge, alarms=alarms, warnings=warnings)
    _soc_rules(r, settings, charge, discharge)
    _protection_rules(snapshot.alarms, settings, charge, discharge, warnings)
    _condition_warnings(r, settings, warnings)
    undervoltage, recovered = _undervoltage(r, settings)
    return Assessment(
        charge=_tightest(charge),
        discharge=_tightest(discharge),
        alarms=frozenset(alarms),
        warnings=frozenset(warnings),
        undervoltage=undervoltage,
        undervoltage_recovered=recovered,
    )


def _undervoltage(r: Readings, s: ChargeSettings) -> tuple[bool, bool]:
    """(at or below the discharge cut-off, recovered above it by the hysteresis)."""
    low_cell, pack = r.low_cell, r.pack
    reached = (low_cell is not None and low_cell <= s.cell_discharge_cutoff) or (
        pack is not None and pack <= s.discharge_cutoff_voltage
    )
    # Settings are sums of decimal steps (2.90 + 0.10 = 3.0000000000000004): 1 µV of slack.
    release = s.cell_discharge_cutoff + s.undervoltage_hysteresis - _VOLTAGE_SLACK
    recovered = (
        (low_cell is not None or pack is not None)
        and (low_cell is None or low_cell >= release)
        and (pack is None or pack >= s.cells * release)
    )
    return reached, recovered


def _voltage_rules(
    r: Readings,
    s: ChargeSettings,
    charge: list[Target],
    discharge: list[Target],
    *,
    alarms: set[str],
    warnings: set[str],
) -> None:
    preset = s.preset
    if (r.high_cell is not None and r.high_cell >= preset.cell_max) or (
        r.pack is not None and r.pack >= s.max_voltage
    ):
        charge.append(Target(0.0, Reason.OVERVOLTAGE, hard=True))
        alarms.add(AlarmItem.HIGH_VOLTAGE)
    elif (r.high_cell is not None and r.high_cell >= s.cell_charge_cutoff) or (
        r.pack is not None and r.pack >= s.charge_cutoff_voltage
    ):
        charge.append(Target(0.0, Reason.OVERVOLTAGE, hard=True))
        warnings.add(AlarmItem.HIGH_VOLTAGE)
    if (r.low_cell is not None and r.low_cell <= preset.cell_min) or (
        r.pack is not None and r.pack <= s.min_voltage
    ):
        discharge.append(Target(0.0, Reason.UNDERVOLTAGE, hard=True))
        alarms.add(AlarmItem.LOW_VOLTAGE)
    elif (r.low_cell is not None and r.low_cell <= s.cell_discharge_cutoff) or (
        r.pack is not None and r.pack <= s.discharge_cutoff_voltage
    ):
        discharge.append(Target(0.0, Reason.UNDERVOLTAGE, hard=True))
        warnings.add(AlarmItem.LOW_VOLTAGE)
    if r.high_cell is not None:
        fraction = curve_fraction(s.charge_cell_voltage_table, r.high_cell, linear=s.linear)
        charge.append(Target(fraction * s.bulk_current, Reason.CELL_VOLTAGE))
    if r.low_cell is not None:
        fraction = curve_fraction(s.discharge_cell_voltage_table, r.low_cell, linear=s.linear)
        discharge.append(Target(fraction * s.max_discharge_current, Reason.CELL_VOLTAGE))


def _temperature_rules(
    r: Readings,
    s: ChargeSettings,
    charge: list[Target],
    discharge: list[Target],
    *,
    alarms: set[str],
    warnings: set[str],
) -> None:
    coldest, hottest = r.coldest, r.hottest
    if coldest is None or hottest is None:
        if not s.allow_charge_without_temperature:
            charge.append(Target(0.0, Reason.NO_TEMPERATURE, hard=True))
    else:
        _range_rule(
            (coldest, hottest),
            s.charge_temperature_table,
            s,
            maximum=s.bulk_current,
            targets=charge,
            items=(AlarmItem.LOW_TEMP_CHARGE, AlarmItem.HIGH_TEMP_CHARGE),
            warnings=warnings,
        )
        _range_rule(
            (coldest, hottest),
            s.discharge_temperature_table,
            s,
            maximum=s.max_discharge_current,
            targets=discharge,
            items=(AlarmItem.LOW_TEMP, AlarmItem.HIGH_TEMP),
            warnings=warnings,
        )
        low, high = s.preset.discharge_temperature
        if coldest <= low:
            alarms.add(AlarmItem.LOW_TEMP)
        if hottest >= high:
            alarms.add(AlarmItem.HIGH_TEMP)
    if r.mosfet is not None:
        fraction = curve_fraction(s.mosfet_temperature_table, r.mosfet, linear=s.linear)
        hard = fraction <= 0.0
        if hard:
            warnings.add(AlarmItem.HIGH_TEMP)
        charge.append(Target(fraction * s.bulk_current, Reason.MOSFET_TEMPERATURE, hard))
        discharge.append(
            Target(fraction * s.max_discharge_current, Reason.MOSFET_TEMPERATURE, hard)
        )


def _range_rule(
    span: tuple[float, float],
    curve: Curve,
    s: ChargeSettings,
    *,
    maximum: float,
    targets: list[Target],
    items: tuple[AlarmItem, AlarmItem],
    warnings: set[str],
) -> None:
    """Temperature curve whose end points bound the range in which current is allowed at all.

    ``span`` is (coldest, hottest): the coldest sensor decides the cold end and the hottest the
    hot end, and between them the smaller fraction of the two wins.
    """
    coldest, hottest = span
    cut = False
    if coldest <= curve[0][0]:
        cut = True
        warnings.add(items[0])
    if hottest >= curve[-1][0]:
        cut = True
        warnings.add(items[1])
    if cut:
        targets.append(Target(0.0, Reason.TEMPERATURE, hard=True))
        return
    fraction = min(
        curve_fraction(curve, coldest, linear=s.linear),
        curve_fraction(curve, hottest, linear=s.linear),
    )
    targets.append(Target(fraction * maximum, Reason.TEMPERATURE))


def _soc_rules(
    r: Readings, s: ChargeSettings, charge: list[Target], discharge: list[Target]
) -> None:
    if not s.use_soc_limits or r.soc is None:
        return
    charge_fraction = curve_fraction(s.charge_soc_table, r.soc, linear=s.linear)
    discharge_fraction = curve_fraction(s.discharge_soc_table, r.soc, linear=s.linear)
    charge.append(Target(charge_fraction * s.bulk_current, Reason.SOC))
    discharge.append(Target(discharge_fraction * s.max_discharge_current, Reason.SOC))


def _protection_rules(
    flags: Iterable[str],
    s: ChargeSettings,
    charge: list[Target],
    discharge: list[Target],
    warnings: set[str],
) -> None:
    for flag in flags:
        protection = _PROTECTIONS.get(flag)
        if protection is None:
            warnings.add(AlarmItem.GENERAL)
            continue
        warnings.add(protection.item)
        if protection.blocks_charge:
            charge.append(Target(0.0, protection.reason, hard=True))
        if protection.blocks_discharge:
            discharge.append(Target(0.0, protection.reason, hard=True))


def _condition_warnings(r: Readings, s: ChargeSettings, warnings: set[str]) -> None:
    if r.current is not None:
        if r.current > OVERCURRENT_FACTOR * s.bulk_current and r.current > STEP_CURRENT:
            warnings.add(AlarmItem.HIGH_CHARGE_CURRENT)
        if -r.current > OVERCURRENT_FACTOR * s.max_discharge_current and -r.current > STEP_CURRENT:
            warnings.add(AlarmItem.HIGH_CURRENT)
    if (
        r.high_cell is not None
        and r.low_cell is not None
        and r.high_cell - r.low_cell >= s.cell_imbalance_warning
    ):
        warnings.add(AlarmItem.CELL_IMBALANCE)


def _tightest(targets: list[Target]) -> Target:
    """The smallest target; ties go to the rule listed first. Hard if any zero rule is hard."""
    best = min(targets, key=lambda target: target.value)
    value = max(0.0, best.value)
    hard = value <= 0.0 and any(t.hard for t in targets if t.value <= 0.0)
    return Target(value, best.reason, hard)


class _Channel:
    """Shapes one limit over time: immediate down, 1 A step, recovery hold, ramp up.

    ``always_step`` makes even hard cut-offs pass one update at 1 A on the way to 0, as the
    charge limit must (DESIGN.md invariant 4, following [SD]: the inverter sees the limit fall
    through 1 A before it is removed). The discharge limit drops to 0 at once on under-voltage.
    """

    __slots__ = (
        "always_step",
        "last_time",
        "output",
        "positive_since",
        "recovering",
        "stepping_since",
    )

    def __init__(self, *, always_step: bool) -> None:
        self.always_step = always_step
        self.stepping_since: float | None = None
        self.output = 0.0
        self.recovering = False
        self.positive_since: float | None = None
        self.last_time: float | None = None

    def shape(self, target: Target, now: float, settings: ChargeSettings) -> tuple[float, Reason]:
        dt = 0.0 if self.last_time is None else max(0.0, now - self.last_time)
        self.last_time = now
        if target.value <= 0.0:
            self.recovering = True
            self.positive_since = None
            if self.stepping_since is not None and now - self.stepping_since < STEP_HOLD:
                return self.output, target.reason
            if self.output > STEP_CURRENT and (self.always_step or not target.hard):
                self.output = STEP_CURRENT
                self.stepping_since = now
            else:
                self.output = 0.0
                self.stepping_since = None
            return self.output, target.reason
        self.stepping_since = None
        if self.recovering:
            if self.positive_since is None:
                self.positive_since = now
            if now - self.positive_since < settings.recovery_hold:
                self.output = 0.0
                return 0.0, Reason.RECOVERY_HOLD
            self.recovering = False
            self.positive_since = None
        if target.value <= self.output:
            self.output = target.value
            return self.output, target.reason
        raised = self.output + settings.ramp_rate * dt
        if raised >= target.value:
            self.output = target.value
            return self.output, target.reason
        self.output = raised
        return raised, Reason.RECOVERY_RAMP


class LimitPolicy:
    """Current limits over time for one battery; feed it every snapshot, get limits back.

    ``charge_block`` lets the caller force the charge limit to 0 (e.g. charging switched off)
    with its own reason; that fall is soft. ``grid_connected`` says whether the inverter is
    grid-tied (None: unknown, treated as off-grid, where only an alarm stops discharging).

    Every snapshot is sanitised here, so no caller can hand a rule a NaN or an open sensor. A
    snapshot older than the newest one seen is ignored; one dated in the future (or with no
    valid time) is garbage and ignored too — kept, it would look fresh for ever and shadow every
    real reading after it.
    """

    def __init__(self, settings: ChargeSettings) -> None:
        """Start with both limits at 0 A (they ramp up once data arrives)."""
        self.settings = settings
        self._charge = _Channel(always_step=True)
        self._discharge = _Channel(always_step=False)
        self._snapshot: BatterySnapshot | None = None
        self._first_update: float | None = None
        self._last_now: float | None = None
        self._assessment: Assessment | None = None
        self._alarm_since: dict[str, float] = {}
        self._undervoltage = False
        self._recovered_since: float | None = None

    @property
    def last_snapshot(self) -> BatterySnapshot | None:
        """The newest (sanitised) snapshot seen so far (kept when the source returns None)."""
        return self._snapshot

    def update(
        self,
        snapshot: BatterySnapshot | None,
        now: float,
        *,
        charge_block: Reason | None = None,
        grid_connected: bool | None = None,
    ) -> LimitResult:
        """The limits at ``now`` (monotonic seconds) given the source's latest ``snapshot``."""
        s = self.settings
        now = self._clock(now)
        if self._first_update is None:
            self._first_update = now
        self._accept(snapshot, now)
        current = self._snapshot
        age = current.age(now) if current is not None else None
        source_fresh = current is not None and current.is_fresh(now, s.stale_after)
        view: BatterySnapshot | None = None
        readings: Readings | None = None
        frozen: frozenset[str] = frozenset()
        silent_for = age if age is not None else max(0.0, now - self._first_update)
        if current is not None and source_fresh:
            view, frozen, frozen_for = _fresh_view(current, now, s.stale_after)
            silent_for = max(silent_for, frozen_for)
        fresh = source_fresh and not frozen
        stale = bool(frozen) or (not source_fresh and silent_for > s.stale_after)

        if current is None:
            charge = discharge = Target(0.0, Reason.NO_DATA, hard=True)
        elif fresh and view is not None:
            readings = Readings.of(view, s.cells)
            self._assessment = assess(view, s, readings)
            charge, discharge = self._assessment.charge, self._assessment.discharge
        else:
            charge = Target(0.0, Reason.STALE_SOURCE)
            held = min(self._discharge.output, s.max_discharge_current)
            discharge = Target(held, Reason.STALE_SOURCE)
        self._latch_undervoltage(
            self._assessment if fresh else None, now, grid_connected=grid_connected
        )
        # A caller's block never hides a safety cut-off, missing data or a stale source.
        if (
            charge_block is not None
            and not charge.hard
            and charge.reason is not Reason.STALE_SOURCE
        ):
            charge = Target(0.0, charge_block)

        ccl, ccl_reason = self._charge.shape(charge, now, s)
        dcl, dcl_reason = self._discharge.shape(discharge, now, s)
        alarms, warnings = self._conditions(now, stale, silent_for)
        return LimitResult(
            charge_current=ccl,
            discharge_current=dcl,
            charge_reason=ccl_reason,
            discharge_reason=dcl_reason,
            charge_target=charge.value,
            discharge_target=discharge.value,
            alarms=alarms,
            warnings=warnings,
            stale=stale,
            fresh=fresh,
            source_age=age,
            stale_fields=frozen,
            view=view if fresh else None,
            readings=readings,
            undervoltage_alarm=self._undervoltage,
        )

    def _clock(self, now: float) -> float:
        """``now``, or the last good time when the caller's clock gave no finite number."""
        if isinstance(now, int | float) and math.isfinite(now):
            self._last_now = float(now)
            return float(now)
        return self._last_now if self._last_now is not None else 0.0

    def _accept(self, snapshot: BatterySnapshot | None, now: float) -> None:
        """Keep ``snapshot`` (sanitised) if it is the newest valid reading so far."""
        kept = self._snapshot
        if kept is not None and kept.timestamp > now:
            # Only a clock that ran backwards gets here; the kept reading cannot be trusted.
            self._snapshot = kept = None
        if snapshot is None:
            return
        clean = snapshot.sanitized(cells=self.settings.cells)
        stamp = clean.timestamp
        if not math.isfinite(stamp) or stamp > now:
            return
        if kept is None or stamp >= kept.timestamp:
            self._snapshot = clean

    def _latch_undervoltage(
        self, assessment: Assessment | None, now: float, *, grid_connected: bool | None
    ) -> None:
        """The off-grid under-voltage alarm: raised at the cut-off, released with hysteresis.

        Grid-tied the discharge limit is obeyed, so no alarm is needed (the release is
        immediate). Without a fresh assessment the latch holds: a battery does not recover by
        going silent.
        """
        if grid_connected is True:
            self._undervoltage = False
            self._recovered_since = None
            return
        if assessment is None:
            return
        if assessment.undervoltage:
            self._undervoltage = True
            self._recovered_since = None
        elif self._undervoltage and assessment.undervoltage_recovered:
            if self._recovered_since is None:
                self._recovered_since = now
            if now - self._recovered_since >= self.settings.recovery_hold:
                self._undervoltage = False
                self._recovered_since = None
        else:
            self._recovered_since = None

    def _conditions(
        self, now: float, stale: bool, silent_for: float
    ) -> tuple[frozenset[str], frozenset[str]]:
        """Alarms only after they persisted ``alarm_delay``; until then they count as warnings.

        While the source is stale the last fresh assessment's conditions are kept (the battery
        did not get better just because it stopped reporting).
        """
        s = self.settings
        assessment = self._assessment
        raw_alarms = set(assessment.alarms) if assessment is not None else set()
        if self._undervoltage:
            raw_alarms.add(AlarmItem.LOW_VOLTAGE)
        warnings = set(assessment.warnings) if assessment is not None else set()
        for name in list(self._alarm_since):
            if name not in raw_alarms:
                del self._alarm_since[name]
        alarms: set[str] = set()
        for name in raw_alarms:
            since = self._alarm_since.setdefault(name, now)
            (alarms if now - since >= s.alarm_delay else warnings).add(name)
        if stale:
            warnings.add(AlarmItem.BMS_INTERNAL)
            if s.stale_alarm and silent_for > s.stale_alarm_after:
                alarms.add(AlarmItem.BMS_INTERNAL)
        return frozenset(alarms), frozenset(warnings)


def _present(snapshot: BatterySnapshot, name: str) -> bool:
    if name == "temperature":
        return bool(snapshot.all_temperatures)
    if name == "cell_voltages":
        return bool(snapshot.cell_voltages)
    return getattr(snapshot, name) is not None


_CLEARED: Final[Mapping[str, Mapping[str, object]]] = MappingProxyType(
    {
        "temperature": MappingProxyType({"temperature": None, "temperatures": ()}),
        "cell_voltages": MappingProxyType({"cell_voltages": ()}),
    }
)


def _fresh_view(
    snapshot: BatterySnapshot, now: float, stale_after: float
) -> tuple[BatterySnapshot, frozenset[str], float]:
    """``snapshot`` without the fields measured longer than ``stale_after`` ago.

    Returns the view, the safety fields among the dropped ones (a frozen reading of those is
    treated as a stale source), and the age of the oldest of them.
    """
    if not snapshot.field_times:
        return snapshot, frozenset(), 0.0
    changes: dict[str, object] = {}
    frozen: set[str] = set()
    oldest = 0.0
    for name in FIELD_NAMES:
        if name not in snapshot.field_times or not _present(snapshot, name):
            continue
        field_age = now - snapshot.field_time(name)
        if field_age <= stale_after:
            continue
        changes.update(_CLEARED.get(name, {name: None}))
        if name in SAFETY_FIELDS:
            frozen.add(name)
            oldest = max(oldest, field_age)
    if not changes:
        return snapshot, frozenset(), 0.0
    return replace(snapshot, **changes), frozenset(frozen), oldest  # type: ignore[arg-type]
