"""Several packs in parallel, each with its own BMS, as one battery.

Off-grid banks are usually two to eight packs wired in parallel. Every pack has its own BMS (and,
in this integration, its own :class:`~.charge.ChargeController` computing the limits that pack
allows); the inverter sees one battery. :func:`combine` turns the packs' states into that one
battery: the values a user wants to see (SOC, voltage, current, capacity, the extreme cells and
temperatures and where they are), the limits the inverter must obey, and a
:class:`~.snapshot.BatterySnapshot` a Sunny Island charge controller consumes like any other
battery source. :class:`BankLimiter` then caps that controller's decision by the bank's limits.
``docs/battery_banks.md`` gives every rule with its reasoning; in short:

* **Current sharing.** Parallel packs share a current roughly by capacity (or, when every pack
  tells it, by conductance, 1 / internal resistance): pack *i* takes ``s_i * I`` of a bank
  current ``I``. It must stay within its own limit ``L_i``, so ``I <= L_i / s_i`` for every pack
  and the bank limit is the smallest of these. ``share_tolerance`` widens every share (sharing
  is only rough), a share never exceeds 1, and a pack whose share cannot be known (no capacity)
  is assumed to take the whole current itself.
* **FETs.** A pack whose BMS reports its charge (discharge) FET off takes no charge
  (discharge) current: it drops out of that direction and the shares are recomputed over the
  others. An unknown FET state counts as on.
* **Cell rules per pack; the bank's charge voltage is the lowest any pack's controller asks for.**
* **A stale pack** (silent, its controller's data frozen, unavailable, or limits that are not
  numbers): charging stops (its cells are unknown while it stays connected), unless
  ``allow_charging_with_stale_pack``; then, like discharging always, the bank's limit is computed
  over the remaining packs alone. The state names the pack.
* **Voltage disagreement** beyond ``voltage_disagreement`` (a pack its BMS disconnected, a bad
  contact) is a problem naming the packs away from the median.

The bank's snapshot carries the extreme cells of the packs that take current in each direction
as a representative pack of ``cells`` cells (lowest, highest, then cells in between), so the
Sunny Island's cell rules (cut-offs, curves, cell-voltage guard, balance, the off-grid
under-voltage alarm) see the bank's worst cell. A stale pack makes that cell set incomplete;
the controller keeps judging the packs it can see (the off-grid under-voltage alarm above all),
and :class:`BankLimiter` takes the charge current to 0 A through 1 A and adds the warning.

Everything is pure and never raises on garbage: values that are not finite numbers are unknown,
and unknown always falls to the safe side (less current, a lower charge voltage).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
import math
import statistics
from types import MappingProxyType
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
    PACK_OVERVOLTAGE,
    PACK_UNDERVOLTAGE,
    BmsReading,
)
from .charge import ChargeDecision
from .chemistry import MAX_CURRENT, ChargeSettings, UnsafeSetting
from .limits import STEP_CURRENT, STEP_HOLD, AlarmItem, Reason
from .snapshot import (
    MAX_CURRENT_READING,
    BatterySnapshot,
    plausible_cell_voltage,
)

MAX_CAPACITY: Final = 100000.0
"""Ah above which a pack capacity is a decoding slip, not a battery."""
MAX_RESISTANCE: Final = 10.0
"""Ω above which an internal resistance is not a pack's (a 48 V pack has milliohms)."""
_SMALLEST_CAPACITY: Final = 1e-9
_SMALLEST_VOLTAGE: Final = 1e-9

# Protections a BMS acts on by opening the FET of one direction. With that FET reported off the
# pack takes no current that way, so the flag is the pack's own business, not the bank's.
_CHARGE_ONLY_FLAGS: Final = frozenset(
    {
        CELL_OVERVOLTAGE,
        PACK_OVERVOLTAGE,
        CHARGE_OVERTEMPERATURE,
        CHARGE_UNDERTEMPERATURE,
        CHARGE_OVERCURRENT,
    }
)
_DISCHARGE_ONLY_FLAGS: Final = frozenset(
    {
        CELL_UNDERVOLTAGE,
        PACK_UNDERVOLTAGE,
        DISCHARGE_OVERTEMPERATURE,
        DISCHARGE_UNDERTEMPERATURE,
        DISCHARGE_OVERCURRENT,
    }
)


class PackStatus(StrEnum):
    """Whether a pack's data can be acted on; everything but ONLINE counts as a stale pack."""

    ONLINE = "online"
    STALE = "stale"
    """No reading for ``stale_after``, a reading from the future, or its controller says stale."""
    NO_DATA = "no_data"
    """Never read (yet)."""
    UNAVAILABLE = "unavailable"
    """Its entry says the pack cannot be reached (not loaded, link down)."""
    INVALID = "invalid"
    """No charge decision, or limits that are not numbers: nobody knows what the pack allows."""


class BankReason(StrEnum):
    """Why a bank limit is what it is when no single pack rule sets it."""

    STALE_PACK = "stale_pack"
    """A pack's state is unknown while it stays connected: charging stops."""
    NO_PACK = "no_pack"
    """No pack takes current in this direction (all stale, or all FETs that way off)."""


class Exclusion(StrEnum):
    """Why a pack takes no share of a direction's current."""

    CHARGE_FET_OFF = "charge_fet_off"
    DISCHARGE_FET_OFF = "discharge_fet_off"
    STALE = "stale"


class BankProblem(StrEnum):
    """Conditions a user should see (binary sensors, repair issues)."""

    STALE_PACK = "stale_pack"
    VOLTAGE_DISAGREEMENT = "voltage_disagreement"
    CELL_COUNT = "cell_count"
    """A pack reports a cell count other than the bank's: its cells cannot be judged."""
    SHUNT_STALE = "shunt_stale"


@dataclass(frozen=True, slots=True, kw_only=True)
class PackState:
    """One pack as the bank sees it: its reading, its own limits, its FETs and its capacity.

    ``pack_id`` is unique within a bank (the entry id of the pack's entry); ``name`` is what a
    user reads. ``snapshot`` is the pack's latest reading (its ``timestamp`` dates the pack),
    ``decision`` what the pack's own :class:`~.charge.ChargeController` made of it (CCL, DCL and
    CVL for this pack alone). Capacities are Ah; ``nominal_capacity`` falls back to
    ``snapshot.capacity_ah``. ``charge_fet``/``discharge_fet`` are None when the BMS does not
    say. ``internal_resistance`` (Ω) is optional; when every pack taking current has one, the
    current shares follow conductance instead of capacity. ``available`` is False while the
    pack's entry cannot reach it (then it is a stale pack whatever its last reading).
    """

    pack_id: str
    name: str
    snapshot: BatterySnapshot | None
    decision: ChargeDecision | None
    nominal_capacity: float | None = None
    remaining_capacity: float | None = None
    charge_fet: bool | None = None
    discharge_fet: bool | None = None
    internal_resistance: float | None = None
    available: bool = True

    @classmethod
    def from_reading(
        cls,
        pack_id: str,
        name: str,
        reading: BmsReading,
        *,
        timestamp: float,
        decision: ChargeDecision | None,
        internal_resistance: float | None = None,
        available: bool = True,
    ) -> PackState:
        """A pack from one serial-BMS poll taken at ``timestamp`` (monotonic seconds)."""
        return cls(
            pack_id=pack_id,
            name=name,
            snapshot=snapshot_of_reading(reading, timestamp),
            decision=decision,
            nominal_capacity=reading.nominal_capacity,
            remaining_capacity=reading.remaining_capacity,
            charge_fet=reading.charge_fet,
            discharge_fet=reading.discharge_fet,
            internal_resistance=internal_resistance,
            available=available,
        )


def snapshot_of_reading(reading: BmsReading, timestamp: float) -> BatterySnapshot:
    """A BMS reading as a battery snapshot, the way a serial-BMS entry publishes it.

    The hottest sensor is the representative temperature; every sensor goes along so the rules
    see the coldest one too.
    """
    return BatterySnapshot(
        timestamp=timestamp,
        soc=reading.soc,
        voltage=reading.voltage,
        current=reading.current,
        temperature=max(reading.temperatures) if reading.temperatures else None,
        temperatures=tuple(reading.temperatures),
        mosfet_temperature=reading.mosfet_temperature,
        cell_voltages=reading.cell_voltages,
        alarms=reading.protections,
        capacity_ah=reading.nominal_capacity,
    )


_SETTING_BOUNDS: Final[Mapping[str, tuple[float, float]]] = MappingProxyType(
    {
        "cells": (1.0, 32.0),
        "stale_after": (5.0, 600.0),
        "voltage_disagreement": (0.05, 10.0),
        "share_tolerance": (0.0, 1.0),
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class BankSettings:
    """How the bank judges its packs; validated on creation (:class:`UnsafeSetting`).

    ``cells`` is the series cell count of every pack (the Sunny Island's ``cells``: the bank's
    snapshot is one representative pack of that many cells). ``stale_after`` seconds without a
    reading make a pack stale. ``voltage_disagreement`` (V) is the pack voltage spread that
    counts as a problem. ``allow_charging_with_stale_pack`` lets an owner who accepts the risk
    charge on within the remaining packs' shares. ``share_tolerance`` widens every pack's
    current share (0.1: a pack may take 10 % more than its share). ``shunt`` says a shunt
    measures the whole bank's current (its reading is passed to :func:`combine`).
    """

    cells: int = 16
    stale_after: float = 30.0
    voltage_disagreement: float = 0.5
    allow_charging_with_stale_pack: bool = False
    share_tolerance: float = 0.1
    shunt: bool = False

    def __post_init__(self) -> None:
        """Refuse values outside their bounds (and of the wrong type)."""
        for name, (low, high) in _SETTING_BOUNDS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UnsafeSetting(name, "must be a number")
            if name == "cells" and not isinstance(value, int):
                raise UnsafeSetting(name, "must be a whole number")
            if not low <= value <= high:
                raise UnsafeSetting(name, f"must be between {low:g} and {high:g}")
        for name in ("allow_charging_with_stale_pack", "shunt"):
            if not isinstance(getattr(self, name), bool):
                raise UnsafeSetting(name, "must be true or false")

    @staticmethod
    def bounds(name: str) -> tuple[float, float]:
        """The allowed range of a numeric setting (for number entities and forms)."""
        return _SETTING_BOUNDS[name]


@dataclass(frozen=True, slots=True)
class CellLocation:
    """One cell of the bank: which pack, which cell (1 = first), its voltage."""

    pack_id: str
    pack_name: str
    cell: int
    voltage: float


@dataclass(frozen=True, slots=True)
class TemperatureLocation:
    """One battery temperature of the bank and the pack it belongs to."""

    pack_id: str
    pack_name: str
    temperature: float


@dataclass(frozen=True, slots=True, kw_only=True)
class BankLimit:
    """A bank current limit (A) and what set it.

    ``reason`` is a :class:`~.limits.Reason` value (the rule of the pack ``pack_id`` that binds)
    or a :class:`BankReason` value (then ``pack_id`` names the stale pack, or is None).
    ``shares`` holds the share of this direction's current used for each pack that takes it
    (tolerance included); ``excluded`` each pack that takes none, with the
    :class:`Exclusion` why.
    """

    value: float
    reason: str
    pack_id: str | None = None
    pack_name: str | None = None
    shares: Mapping[str, float] = field(default_factory=dict, hash=False)
    excluded: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def limited_by(self) -> str:
        """``pack: rule`` for a pack's rule, else the rule alone (a sensor's state)."""
        if self.pack_name is None:
            return self.reason
        return f"{self.pack_name}: {self.reason}"


@dataclass(frozen=True, slots=True, kw_only=True)
class PackView:
    """One pack inside the bank, for dashboards (packs side by side) and diagnostics."""

    pack_id: str
    name: str
    status: PackStatus
    soc: float | None
    voltage: float | None
    current: float | None
    charge_limit: float | None
    discharge_limit: float | None
    charge_voltage: float | None
    charge_share: float | None
    discharge_share: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class BankState:
    """The bank as one battery. Values in V, A, W, Ah, %, °C; None when unknown.

    Values are over the online packs (a stale pack's readings are unknown now): ``soc`` is their
    capacity-weighted SOC, ``voltage`` the median of their voltages, ``current`` the shunt's
    (``current_source`` "shunt") or the sum of theirs ("packs"). ``charge``/``discharge`` are
    the bank's current limits, ``charge_voltage`` the lowest charge voltage any pack's
    controller asks for (``charge_voltage_pack`` which; ``charge_voltage_guard`` when that pack's
    cell-voltage guard sets it). ``snapshot`` is the bank for a Sunny
    Island controller; ``cells_complete`` whether it carries a complete cell set.
    """

    soc: float | None
    voltage: float | None
    current: float | None
    power: float | None
    current_source: str | None
    remaining_capacity: float | None
    nominal_capacity: float | None
    lowest_cell: CellLocation | None
    highest_cell: CellLocation | None
    cell_spread: float | None
    coldest: TemperatureLocation | None
    hottest: TemperatureLocation | None
    packs_online: int
    packs_total: int
    charge: BankLimit
    discharge: BankLimit
    charge_voltage: float | None
    charge_voltage_pack: str | None
    charge_voltage_guard: bool
    stale_packs: tuple[str, ...]
    disagreeing_packs: tuple[str, ...]
    cell_count_mismatch: tuple[str, ...]
    problems: frozenset[str]
    cells_complete: bool
    snapshot: BatterySnapshot
    packs: tuple[PackView, ...]


# --- cleaning --------------------------------------------------------------------------------


def _number(value: object) -> float | None:
    if type(value) is float:  # the common case first
        return value if math.isfinite(value) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _in(value: object, low: float, high: float) -> float | None:
    number = _number(value)
    return number if number is not None and low <= number <= high else None


def _flag(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


@dataclass(slots=True)
class _Pack:
    """A pack's inputs, cleaned once: everything below works on these."""

    pack_id: str
    name: str
    status: PackStatus
    timestamp: float | None
    snapshot: BatterySnapshot | None
    voltage: float | None
    soc: float | None
    current: float | None
    nominal: float | None
    remaining: float | None
    ccl: float | None
    dcl: float | None
    cvl: float | None
    ccl_reason: str
    dcl_reason: str
    guard: bool
    charge_fet: bool | None
    discharge_fet: bool | None
    conductance: float | None
    cells: tuple[tuple[int, float], ...]
    lowest: tuple[int, float] | None
    """(number, volts) of the pack's lowest plausible cell (the first of equals)."""
    highest: tuple[int, float] | None
    cell_count: int
    cells_complete: bool
    temperatures: tuple[float, ...]

    @property
    def online(self) -> bool:
        return self.status is PackStatus.ONLINE

    def conducts(self, charge: bool) -> bool:
        """Whether the pack may take current this way (an unknown FET state counts as on)."""
        return (self.charge_fet if charge else self.discharge_fet) is not False


def _clean(pack: PackState, settings: BankSettings, now: float | None) -> _Pack:
    raw = pack.snapshot if isinstance(pack.snapshot, BatterySnapshot) else None
    snapshot = None if raw is None else raw.sanitized(cells=settings.cells)
    decision = pack.decision if isinstance(pack.decision, ChargeDecision) else None
    stamp = None if snapshot is None else _number(snapshot.timestamp)
    ccl = dcl = cvl = None
    ccl_reason = dcl_reason = BankReason.NO_PACK.value
    if decision is not None:
        ccl = _in(decision.charge_current_limit, 0.0, math.inf)
        dcl = _in(decision.discharge_current_limit, 0.0, math.inf)
        cvl = _in(decision.charge_voltage, _SMALLEST_VOLTAGE, math.inf)
        ccl_reason = str(decision.limited_by_charge)
        dcl_reason = str(decision.limited_by_discharge)
    status = _status(
        pack,
        snapshot=snapshot,
        decision=decision,
        stamp=stamp,
        limits=(ccl, dcl, cvl),
        settings=settings,
        now=now,
    )
    cells: tuple[tuple[int, float], ...] = ()
    temperatures: tuple[float, ...] = ()
    voltage = soc = current = None
    nominal = _in(pack.nominal_capacity, _SMALLEST_CAPACITY, MAX_CAPACITY)
    raw_cells = () if raw is None else _values(raw.cell_voltages)
    lowest = highest = None
    if raw is not None and snapshot is not None:
        if snapshot.cell_voltages is raw.cell_voltages:  # every cell plausible: no search
            values = raw.cell_voltages
            cells = tuple(enumerate(values, start=1))
            if values:  # first of equals, found at C speed
                low, high = min(values), max(values)
                lowest, highest = (values.index(low) + 1, low), (values.index(high) + 1, high)
        else:
            cells = tuple(
                (index, volts)
                for index, volts in enumerate(
                    (plausible_cell_voltage(v) for v in raw_cells), start=1
                )
                if volts is not None
            )
            if cells:
                lowest, highest = min(cells, key=_cell_volts), max(cells, key=_cell_volts)
        temperatures = snapshot.all_temperatures
        voltage = snapshot.voltage
        if voltage is None and len(cells) == settings.cells == len(raw_cells):
            voltage = math.fsum(v for _, v in cells)
        soc = snapshot.soc
        current = snapshot.current
        if nominal is None:
            nominal = _in(snapshot.capacity_ah, _SMALLEST_CAPACITY, MAX_CAPACITY)
    remaining = None
    if nominal is not None:
        remaining = _in(pack.remaining_capacity, 0.0, MAX_CAPACITY)
        if remaining is not None:
            remaining = min(remaining, nominal)
        if soc is None and remaining is not None:
            soc = 100.0 * remaining / nominal
    resistance = _in(pack.internal_resistance, 0.0, MAX_RESISTANCE)
    complete = raw is not None and len(cells) == settings.cells == len(raw_cells)
    return _Pack(
        pack_id=str(pack.pack_id),
        name=str(pack.name),
        status=status,
        timestamp=stamp,
        snapshot=snapshot,
        voltage=voltage,
        soc=soc,
        current=current,
        nominal=nominal,
        remaining=remaining,
        ccl=ccl,
        dcl=dcl,
        cvl=cvl,
        ccl_reason=ccl_reason,
        dcl_reason=dcl_reason,
        guard=decision is not None and decision.cell_voltage_guard is True,
        charge_fet=_flag(pack.charge_fet),
        discharge_fet=_flag(pack.discharge_fet),
        conductance=None if not resistance else 1.0 / resistance,
        cells=cells,
        lowest=lowest,
        highest=highest,
        cell_count=len(raw_cells),
        cells_complete=complete,
        temperatures=temperatures,
    )


def _values(items: object) -> tuple[object, ...]:
    return tuple(items) if isinstance(items, tuple | list) else ()


def _status(
    pack: PackState,
    *,
    snapshot: BatterySnapshot | None,
    decision: ChargeDecision | None,
    stamp: float | None,
    limits: tuple[float | None, float | None, float | None],
    settings: BankSettings,
    now: float | None,
) -> PackStatus:
    if pack.available is not True:
        return PackStatus.UNAVAILABLE
    if snapshot is None:
        return PackStatus.NO_DATA
    if (
        now is None
        or stamp is None
        or stamp > now
        or now - stamp > settings.stale_after
        or (decision is not None and decision.stale is not False)
    ):
        return PackStatus.STALE
    if decision is None or None in limits:
        return PackStatus.INVALID
    return PackStatus.ONLINE


# --- limits ----------------------------------------------------------------------------------


def _shares(packs: Sequence[_Pack], tolerance: float, *, by_conductance: bool) -> dict[str, float]:
    """Each pack's share of the current (tolerance included; 1 where it cannot be known).

    A pack with no known weight might be the largest of all: it is assumed to take everything
    itself, while the others' shares are computed without it (it might take nothing). Both
    assumptions are the worst case for the pack they concern.
    """
    weights = {p.pack_id: (p.conductance if by_conductance else p.nominal) for p in packs}
    total = math.fsum(w for w in weights.values() if w is not None)
    shares: dict[str, float] = {}
    for pack_id, weight in weights.items():
        if weight is None or total <= 0.0:
            shares[pack_id] = 1.0
        else:
            shares[pack_id] = min(1.0, weight / total * (1.0 + tolerance))
    return shares


def _direction(packs: Sequence[_Pack], settings: BankSettings, *, charge: bool) -> BankLimit:
    """The bank limit of one direction (module docstring; derivation in the docs)."""
    excluded: dict[str, str] = {}
    stale = [p for p in packs if not p.online]
    for p in stale:
        excluded[p.pack_id] = Exclusion.STALE
    if charge and stale and not settings.allow_charging_with_stale_pack:
        first = stale[0]
        return BankLimit(
            value=0.0,
            reason=BankReason.STALE_PACK,
            pack_id=first.pack_id,
            pack_name=first.name,
            excluded=MappingProxyType(excluded),
        )
    taking: list[_Pack] = []
    for p in packs:
        if not p.online:
            continue
        if p.conducts(charge):
            taking.append(p)
        else:
            excluded[p.pack_id] = (
                Exclusion.CHARGE_FET_OFF if charge else Exclusion.DISCHARGE_FET_OFF
            )
    if not taking:
        return BankLimit(value=0.0, reason=BankReason.NO_PACK, excluded=MappingProxyType(excluded))
    by_conductance = all(p.conductance is not None for p in taking)
    shares = _shares(taking, settings.share_tolerance, by_conductance=by_conductance)
    best: tuple[float, _Pack] | None = None
    for p in taking:
        limit = p.ccl if charge else p.dcl
        bound = 0.0 if limit is None else limit / shares[p.pack_id]
        if best is None or bound < best[0]:
            best = (bound, p)
    assert best is not None
    bound, binding = best
    return BankLimit(
        value=min(max(0.0, bound), MAX_CURRENT),
        reason=binding.ccl_reason if charge else binding.dcl_reason,
        pack_id=binding.pack_id,
        pack_name=binding.name,
        shares=MappingProxyType(shares),
        excluded=MappingProxyType(excluded),
    )


def _charge_voltage(packs: Sequence[_Pack]) -> tuple[float | None, str | None]:
    """The lowest CVL any pack's controller asks for (a stale pack's last one included)."""
    best: tuple[float, str] | None = None
    for p in packs:
        if p.cvl is not None and (best is None or p.cvl < best[0]):
            best = (p.cvl, p.pack_id)
    return (None, None) if best is None else best


# --- values ----------------------------------------------------------------------------------


def _weighted_soc(online: Sequence[_Pack]) -> float | None:
    """Capacity-weighted SOC; a pack without a capacity weighs the mean of the known ones."""
    with_soc = [p for p in online if p.soc is not None]
    if not with_soc:
        return None
    known = [p.nominal for p in with_soc if p.nominal is not None]
    fallback = statistics.fmean(known) if known else 1.0
    weights = [fallback if p.nominal is None else p.nominal for p in with_soc]
    socs = [p.soc for p in with_soc if p.soc is not None]
    soc = math.fsum(w * s for w, s in zip(weights, socs, strict=True)) / math.fsum(weights)
    return min(max(soc, min(socs)), max(socs))  # rounding never leaves the packs' range


def _capacities(online: Sequence[_Pack]) -> tuple[float | None, float | None]:
    """(remaining, nominal) Ah over the online packs; None when any of them cannot tell."""
    if not online or any(p.nominal is None for p in online):
        return None, None
    nominal = math.fsum(p.nominal for p in online if p.nominal is not None)
    remaining: list[float] = []
    for p in online:
        if p.remaining is not None:
            remaining.append(p.remaining)
        elif p.soc is not None and p.nominal is not None:
            remaining.append(p.soc / 100.0 * p.nominal)
        else:
            return None, nominal
    return math.fsum(remaining), nominal


def _disagreeing(online: Sequence[_Pack], threshold: float) -> tuple[str, ...]:
    """Packs whose voltage is more than half the threshold from the median, once the spread
    of the voltages exceeds the threshold (two packs: both; more: the odd ones out)."""
    voltages = [(p.pack_id, p.voltage) for p in online if p.voltage is not None]
    if len(voltages) < 2:
        return ()
    values = [v for _, v in voltages]
    if max(values) - min(values) <= threshold:
        return ()
    middle = statistics.median(values)
    return tuple(pack_id for pack_id, v in voltages if abs(v - middle) > threshold / 2)


def _extreme_cells(
    packs: Iterable[_Pack],
) -> tuple[CellLocation | None, CellLocation | None]:
    low: tuple[int, float, _Pack] | None = None
    high: tuple[int, float, _Pack] | None = None
    for p in packs:
        # The first of equal cells wins, within a pack and across packs.
        if p.lowest is not None and (low is None or p.lowest[1] < low[1]):
            low = (*p.lowest, p)
        if p.highest is not None and (high is None or p.highest[1] > high[1]):
            high = (*p.highest, p)
    return (
        None if low is None else CellLocation(low[2].pack_id, low[2].name, low[0], low[1]),
        None if high is None else CellLocation(high[2].pack_id, high[2].name, high[0], high[1]),
    )


def _cell_volts(cell: tuple[int, float]) -> float:
    return cell[1]


def _extreme_temperatures(
    packs: Iterable[_Pack],
) -> tuple[TemperatureLocation | None, TemperatureLocation | None]:
    cold: tuple[float, _Pack] | None = None
    hot: tuple[float, _Pack] | None = None
    for p in packs:
        if not p.temperatures:
            continue
        pack_cold = min(p.temperatures)
        pack_hot = max(p.temperatures)
        if cold is None or pack_cold < cold[0]:
            cold = (pack_cold, p)
        if hot is None or pack_hot > hot[0]:
            hot = (pack_hot, p)
    return (
        None if cold is None else TemperatureLocation(cold[1].pack_id, cold[1].name, cold[0]),
        None if hot is None else TemperatureLocation(hot[1].pack_id, hot[1].name, hot[0]),
    )


def _current(
    online: Sequence[_Pack], shunt: BatterySnapshot | None, settings: BankSettings, now: float
) -> tuple[float | None, float | None, str | None, bool]:
    """(current, power, source, shunt stale): the shunt's when fresh, else the packs' sum."""
    shunt_stale = settings.shunt
    if settings.shunt and isinstance(shunt, BatterySnapshot):
        stamp = _number(shunt.timestamp)
        current = _in(shunt.current, -MAX_CURRENT_READING, MAX_CURRENT_READING)
        if stamp is not None and 0.0 <= now - stamp <= settings.stale_after and current is not None:
            volts = _in(shunt.voltage, _SMALLEST_VOLTAGE, settings.cells * 5.0)
            if volts is None:
                volts = _median_voltage(online)
            return current, None if volts is None else volts * current, "shunt", False
    if not online or any(p.current is None for p in online):
        return None, None, None, shunt_stale
    currents = [p.current for p in online if p.current is not None]
    powers = [
        p.voltage * p.current for p in online if p.voltage is not None and p.current is not None
    ]
    power = math.fsum(powers) if len(powers) == len(online) else None
    return math.fsum(currents), power, "packs", shunt_stale


def _median_voltage(packs: Sequence[_Pack]) -> float | None:
    voltages = [p.voltage for p in packs if p.voltage is not None]
    return statistics.median(voltages) if voltages else None


# --- the bank's snapshot ---------------------------------------------------------------------


def _representative_cells(
    low: float | None, high: float | None, voltage: float | None, cells: int, complete: bool
) -> tuple[float, ...]:
    """A pack of ``cells`` cells whose lowest and highest are the bank's (when ``complete``).

    The cells between carry the mean cell voltage (kept between the two), so only the extremes
    and their spread mean anything; a partial set stays partial (two cells at most).
    """
    known = tuple(v for v in (low, high) if v is not None)
    if not complete or low is None or high is None or cells < 2:
        return known
    low, high = min(low, high), max(low, high)
    middle = (low + high) / 2.0 if voltage is None else voltage / cells
    fill = min(max(middle, low), high)
    return (low, high, *([fill] * (cells - 2)))


def _protections(taking: Iterable[_Pack]) -> frozenset[str]:
    """The packs' protection flags, less those a reported-off FET already acts on."""
    flags: set[str] = set()
    for p in taking:
        for flag in p.snapshot.alarms if p.snapshot is not None else ():
            if p.charge_fet is False and flag in _CHARGE_ONLY_FLAGS:
                continue
            if p.discharge_fet is False and flag in _DISCHARGE_ONLY_FLAGS:
                continue
            flags.add(flag)
    return frozenset(flags)


def _bank_snapshot(
    packs: Sequence[_Pack],
    online: Sequence[_Pack],
    settings: BankSettings,
    now: float,
    *,
    soc: float | None,
    voltage: float | None,
    current: float | None,
    nominal: float | None,
) -> tuple[BatterySnapshot, bool]:
    """The bank as one battery for a Sunny Island controller, and whether its cells are complete."""
    charging = [p for p in online if p.conducts(True)]
    discharging = [p for p in online if p.conducts(False)]
    taking = [p for p in online if p.conducts(True) or p.conducts(False)]
    low = min((p.lowest[1] for p in discharging if p.lowest is not None), default=None)
    high = max((p.highest[1] for p in charging if p.highest is not None), default=None)
    stale = [p for p in packs if not p.online]
    complete = (
        not stale
        and bool(taking)
        and all(p.cells_complete for p in taking)
        and low is not None
        and high is not None
    )
    cells = _representative_cells(low, high, voltage, settings.cells, complete)
    temperatures = tuple(t for p in taking for t in p.temperatures)
    mosfets = [
        p.snapshot.mosfet_temperature
        for p in taking
        if p.snapshot is not None and p.snapshot.mosfet_temperature is not None
    ]
    stamps = [p.timestamp for p in online if p.timestamp is not None]
    if stamps:
        timestamp = min(stamps)  # as old as the oldest reading it is made of
    else:
        # Nobody online: as old as the newest past reading, so the controller sees it stale.
        known = [p.timestamp for p in packs if p.timestamp is not None and not p.timestamp > now]
        timestamp = max(known) if known else math.nan
    snapshot = BatterySnapshot(
        timestamp=timestamp,
        soc=soc,
        voltage=voltage,
        current=current,
        temperature=max(temperatures) if temperatures else None,
        temperatures=temperatures,
        cell_voltages=cells,
        alarms=_protections(taking),
        mosfet_temperature=max(mosfets) if mosfets else None,
        capacity_ah=nominal,
    )
    return snapshot, complete


# --- combine ---------------------------------------------------------------------------------


def combine(
    packs: Sequence[PackState],
    settings: BankSettings,
    now: float,
    shunt: BatterySnapshot | None = None,
) -> BankState:
    """The bank of ``packs`` at ``now`` (monotonic seconds, the packs' time base).

    ``shunt`` is the latest reading of a shunt measuring the whole bank (used for the current
    when ``settings.shunt`` and it is fresh). A pack id given twice counts once (the first).
    Never raises on garbage in the packs; a ``now`` that is not a number makes every pack stale.
    """
    clock = _number(now)
    seen: set[str] = set()
    cleaned: list[_Pack] = []
    for pack in packs:
        if not isinstance(pack, PackState) or str(pack.pack_id) in seen:
            continue
        seen.add(str(pack.pack_id))
        cleaned.append(_clean(pack, settings, clock))
    online = [p for p in cleaned if p.online]
    stale = tuple(p.pack_id for p in cleaned if not p.online)

    soc = _weighted_soc(online)
    remaining, nominal = _capacities(online)
    conducting = [p for p in online if p.conducts(True) or p.conducts(False)]
    voltage = _median_voltage(conducting)
    if voltage is None:
        voltage = _median_voltage(online)
    current, power, source, shunt_stale = _current(
        online, shunt, settings, math.nan if clock is None else clock
    )
    if power is None and current is not None and voltage is not None and source == "packs":
        power = voltage * current
    lowest, highest = _extreme_cells(online)
    coldest, hottest = _extreme_temperatures(online)
    charge = _direction(cleaned, settings, charge=True)
    discharge = _direction(cleaned, settings, charge=False)
    cvl, cvl_pack = _charge_voltage(cleaned)
    disagreeing = _disagreeing(online, settings.voltage_disagreement)
    mismatch = tuple(p.pack_id for p in online if p.cell_count not in (0, settings.cells))
    snapshot, complete = _bank_snapshot(
        cleaned,
        online,
        settings,
        math.nan if clock is None else clock,
        soc=soc,
        voltage=voltage,
        current=current,
        nominal=nominal,
    )
    problems: set[str] = set()
    if stale:
        problems.add(BankProblem.STALE_PACK)
    if disagreeing:
        problems.add(BankProblem.VOLTAGE_DISAGREEMENT)
    if mismatch:
        problems.add(BankProblem.CELL_COUNT)
    if shunt_stale:
        problems.add(BankProblem.SHUNT_STALE)
    return BankState(
        soc=soc,
        voltage=voltage,
        current=current,
        power=power,
        current_source=source,
        remaining_capacity=remaining,
        nominal_capacity=nominal,
        lowest_cell=lowest,
        highest_cell=highest,
        cell_spread=None if lowest is None or highest is None else highest.voltage - lowest.voltage,
        coldest=coldest,
        hottest=hottest,
        packs_online=len(online),
        packs_total=len(cleaned),
        charge=charge,
        discharge=discharge,
        charge_voltage=cvl,
        charge_voltage_pack=cvl_pack,
        charge_voltage_guard=any(p.pack_id == cvl_pack and p.guard for p in cleaned),
        stale_packs=stale,
        disagreeing_packs=disagreeing,
        cell_count_mismatch=mismatch,
        problems=frozenset(problems),
        cells_complete=complete,
        snapshot=snapshot,
        packs=tuple(_view(p, charge, discharge) for p in cleaned),
    )


def _view(p: _Pack, charge: BankLimit, discharge: BankLimit) -> PackView:
    return PackView(
        pack_id=p.pack_id,
        name=p.name,
        status=p.status,
        soc=p.soc,
        voltage=p.voltage,
        current=p.current,
        charge_limit=p.ccl,
        discharge_limit=p.dcl,
        charge_voltage=p.cvl,
        charge_share=charge.shares.get(p.pack_id),
        discharge_share=discharge.shares.get(p.pack_id),
    )


# --- applying the bank to a Sunny Island decision --------------------------------------------

_BANK_REASONS: Final[Mapping[str, Reason]] = MappingProxyType(
    {
        BankReason.STALE_PACK: Reason.STALE_SOURCE,
        BankReason.NO_PACK: Reason.BMS_PROTECTION,
    }
)


def _capped(value: float, cap: float) -> float:
    """``value`` no higher than ``cap``; a value that is not a number becomes the cap."""
    number = _number(value)
    return cap if number is None else min(number, cap)


def _reason(limit: BankLimit) -> Reason:
    """The controller's vocabulary for a bank limit's reason (the pack is in the bank state)."""
    mapped = _BANK_REASONS.get(limit.reason)
    if mapped is not None:
        return mapped
    try:
        return Reason(limit.reason)
    except ValueError:
        return Reason.BMS_PROTECTION


class BankLimiter:
    """Caps a Sunny Island controller's decision by the bank's limits; one per Sunny Island.

    The decision's own limits already respect the bank's snapshot; the cap adds what only the
    packs know (their own limits, their shares, a stale pack). It shapes the cap the way the
    controller shapes its own limits:

    * a charge fall to 0 A from above 1 A passes 1 A for :data:`~.limits.STEP_HOLD` seconds
      (DESIGN.md invariant 4); every other current cap applies at once;
    * a stale pack adds the warning a stale source raises (``bms_internal``, 0x35A);
    * the charge voltage is never pulled below the Sunny Island's float voltage (a charge voltage
      far below the battery's makes a Sunny Island discharge it whatever the discharge limit,
      FSS-ConnectingBat-TI-en-10 p. 18, and the guard of a single pack stops at float too); a
      fall set by a pack's cell-voltage guard applies at once, any other fall (a pack going to
      float, a pack joining with a lower voltage) ramps at ``cvl_ramp_rate``.
    """

    def __init__(self) -> None:
        """Start with no history (the first cap of 0 A is applied at once: nothing was sent)."""
        self._last_charge: float | None = None
        self._stepping_since: float | None = None
        self._last_cvl: float | None = None
        self._last_now: float | None = None

    def apply(
        self, decision: ChargeDecision, bank: BankState, now: float, settings: ChargeSettings
    ) -> ChargeDecision:
        """``decision`` with CCL, DCL and CVL no higher than the bank allows.

        ``settings`` are the Sunny Island controller's (float voltage, CVL ramp rate).
        """
        clock = _number(now)
        dt = 0.0
        if clock is not None:
            if self._last_now is not None:
                dt = min(max(0.0, clock - self._last_now), settings.stale_after)
            self._last_now = clock
        changes: dict[str, object] = {}
        ccl = _capped(decision.charge_current_limit, self._charge_cap(bank.charge.value, clock))
        if ccl != decision.charge_current_limit:
            changes["charge_current_limit"] = ccl
            changes["limited_by_charge"] = _reason(bank.charge)
        self._last_charge = ccl
        dcl = _capped(decision.discharge_current_limit, bank.discharge.value)
        if dcl != decision.discharge_current_limit:
            changes["discharge_current_limit"] = dcl
            changes["limited_by_discharge"] = _reason(bank.discharge)
        cvl = self._charge_voltage(decision.charge_voltage, bank, settings, dt)
        if cvl != decision.charge_voltage:
            changes["charge_voltage"] = cvl
        if bank.stale_packs and AlarmItem.BMS_INTERNAL not in decision.warnings:
            # What the controller raises for a stale source: the inverter hears of it too.
            changes["warnings"] = decision.warnings | {AlarmItem.BMS_INTERNAL}
        if not changes:
            return decision
        return replace(decision, **changes)  # type: ignore[arg-type]

    def _charge_cap(self, cap: float, now: float | None) -> float:
        if cap > 0.0:
            self._stepping_since = None
            return cap
        stepping = self._stepping_since
        if stepping is not None:
            if now is not None and 0.0 <= now - stepping < STEP_HOLD:
                return STEP_CURRENT
            return cap
        previous = self._last_charge
        if now is not None and previous is not None and previous > STEP_CURRENT:
            self._stepping_since = now
            return STEP_CURRENT
        return cap

    def _charge_voltage(
        self, own: float, bank: BankState, settings: ChargeSettings, dt: float
    ) -> float:
        number = _number(own)
        sent = settings.float_voltage if number is None else number
        target = bank.charge_voltage
        if target is not None:
            target = max(target, settings.float_voltage)
            previous = self._last_cvl
            if not bank.charge_voltage_guard and previous is not None and target < previous:
                target = max(target, previous - settings.cvl_ramp_rate / 1000.0 * dt)
            sent = min(sent, target)
        self._last_cvl = sent
        return sent


__all__ = [
    "BankLimit",
    "BankLimiter",
    "BankProblem",
    "BankReason",
    "BankSettings",
    "BankState",
    "CellLocation",
    "Exclusion",
    "PackState",
    "PackStatus",
    "PackView",
    "TemperatureLocation",
    "combine",
    "snapshot_of_reading",
]
