"""Battery chemistries and the charge settings that must stay inside their safe bounds.

A user can change every charge setting from Home Assistant, so the settings object itself is the
last line of defence: :class:`ChargeSettings` refuses (with :class:`UnsafeSetting`) any value
outside the bounds of its chemistry, and :meth:`ChargeSettings.bounds` hands the very same bounds
to number entities so the UI cannot offer an unsafe value in the first place. In particular the
charge voltage limit can never exceed the chemistry's absolute cell maximum times the cell count.

Voltages are per cell; the pack values (what goes on the wire) are properties that multiply by
``cells``. Per-cell values keep the bounds independent of the pack size.

Curves (``*_table`` fields) map a measured quantity to a fraction 0…1 of the configured maximum
current, as ascending ``(x, fraction)`` points. The LiFePO4 defaults are those of
dbus-serialbattery's ``config.default.ini``.

LTO is deliberately absent: makers disagree on its maximum cell voltage (2.7 V for some, 2.8-2.9 V
for others), so no single preset bound would be safe for every LTO cell.

Pack sizes: the Sunny Island accepts a charge voltage of 41-63 V and a discharge voltage of
41-48 V in 0x351 (SMA, "SUNNY ISLAND - Connecting external BMS", FSS-ConnectingBat-TI-en-10,
p. 21, table of the BMS parameters; its DC input range is 41-63 V, p. 35). The encoder never moves
a value into range (DESIGN.md invariant 2), so the settings refuse packs whose voltages would not
fit: :func:`allowed_cell_counts` gives the counts for which a chemistry's preset values fit, and
the bounds of every voltage setting that goes on the wire narrow to the range at that count.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
import math
from types import MappingProxyType
from typing import Any, Final, Self

type Curve = tuple[tuple[float, float], ...]
"""Ascending ``(x, fraction)`` points; fractions are 0…1 of the configured maximum current."""

MAX_CURRENT: Final = 1200.0
"""Largest current limit any consumer carries (the Sunny Island's 0x351 range ends here)."""

CHARGE_CELL_VOLTAGE_TABLE: Final[Curve] = (
    (3.375, 1.0),
    (3.400, 0.25),
    (3.425, 0.05),
    (3.450, 0.005),
    (3.500, 0.0),
)
DISCHARGE_CELL_VOLTAGE_TABLE: Final[Curve] = (
    (2.800, 0.0),
    (2.900, 0.005),
    (3.000, 0.05),
    (3.100, 0.25),
    (3.190, 1.0),
)
CHARGE_TEMPERATURE_TABLE: Final[Curve] = (
    (0.0, 0.0),
    (2.0, 0.25),
    (5.0, 0.5),
    (10.0, 1.0),
    (40.0, 1.0),
    (45.0, 0.5),
    (50.0, 0.25),
    (55.0, 0.0),
)
DISCHARGE_TEMPERATURE_TABLE: Final[Curve] = (
    (-10.0, 0.0),
    (0.0, 0.25),
    (5.0, 0.5),
    (10.0, 1.0),
    (40.0, 1.0),
    (45.0, 0.5),
    (50.0, 0.25),
    (55.0, 0.0),
)
MOSFET_TEMPERATURE_TABLE: Final[Curve] = ((70.0, 1.0), (80.0, 0.25), (90.0, 0.0))
CHARGE_SOC_TABLE: Final[Curve] = ((85.0, 1.0), (90.0, 0.5), (95.0, 0.2), (98.0, 0.1))
DISCHARGE_SOC_TABLE: Final[Curve] = ((5.0, 0.1), (10.0, 0.2), (15.0, 0.5), (20.0, 1.0))

# NMC: the LiFePO4 curve shapes moved onto NMC's voltage window (float → 1.0, absorption → 0.005).
NMC_CHARGE_CELL_VOLTAGE_TABLE: Final[Curve] = (
    (4.000, 1.0),
    (4.050, 0.25),
    (4.075, 0.05),
    (4.100, 0.005),
    (4.150, 0.0),
)
NMC_DISCHARGE_CELL_VOLTAGE_TABLE: Final[Curve] = (
    (3.100, 0.0),
    (3.300, 0.005),
    (3.400, 0.05),
    (3.500, 0.25),
    (3.600, 1.0),
)
NMC_CHARGE_TEMPERATURE_TABLE: Final[Curve] = (
    (0.0, 0.0),
    (2.0, 0.25),
    (5.0, 0.5),
    (10.0, 1.0),
    (35.0, 1.0),
    (40.0, 0.5),
    (45.0, 0.0),
)
NMC_DISCHARGE_TEMPERATURE_TABLE: Final[Curve] = (
    (-20.0, 0.0),
    (-10.0, 0.25),
    (0.0, 0.5),
    (10.0, 1.0),
    (45.0, 1.0),
    (50.0, 0.5),
    (55.0, 0.25),
    (60.0, 0.0),
)

SI_CHARGE_VOLTAGE_RANGE: Final = (41.0, 63.0)
"""Charge voltage limit the Sunny Island accepts in 0x351 (and its DC input range), V."""
SI_DISCHARGE_VOLTAGE_RANGE: Final = (41.0, 48.0)
"""Discharge voltage limit the Sunny Island accepts in 0x351, V."""

VOLTAGE_FIELDS: Final = (
    "cell_absorption_voltage",
    "cell_absorption_voltage_without_cells",
    "cell_float_voltage",
    "cell_rebulk_voltage",
    "cell_absorption_trigger",
    "absorption_margin",
    "cell_charge_cutoff",
    "cell_discharge_cutoff",
)
"""Per-cell voltage settings whose bounds and defaults come from the chemistry."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Chemistry:
    """What a cell chemistry tolerates, and the defaults a new installation starts from.

    ``cell_min``/``cell_max`` are the absolute limits of the cell (damage beyond them);
    ``charge_temperature``/``discharge_temperature`` the ranges the cell makers allow;
    ``max_charge_rate``/``max_discharge_rate`` the highest continuous currents in C.
    """

    key: str
    name: str
    cell_min: float
    cell_max: float
    cell_nominal: float
    charge_temperature: tuple[float, float]
    discharge_temperature: tuple[float, float]
    max_charge_rate: float
    max_discharge_rate: float
    voltage_defaults: Mapping[str, float] = field(hash=False)
    voltage_bounds: Mapping[str, tuple[float, float]] = field(hash=False)
    table_defaults: Mapping[str, Curve] = field(hash=False)


LIFEPO4: Final = Chemistry(
    key="lifepo4",
    name="LiFePO4",
    # Cell makers' absolute window (e.g. EVE/CATL prismatic datasheets: 2.5-3.65 V).
    cell_min=2.5,
    cell_max=3.65,
    cell_nominal=3.2,
    charge_temperature=(0.0, 55.0),
    discharge_temperature=(-20.0, 60.0),
    max_charge_rate=1.0,
    max_discharge_rate=2.0,
    voltage_defaults=MappingProxyType(
        {
            "cell_absorption_voltage": 3.45,
            # Where dbus-serialbattery's default charge cell-voltage curve has cut the current to
            # a quarter: the top of the flat part, so an unseen high cell is not yet far up the
            # knee when the pack average sits here.
            "cell_absorption_voltage_without_cells": 3.40,
            "cell_float_voltage": 3.375,
            "cell_rebulk_voltage": 3.30,
            "cell_absorption_trigger": 3.45,
            "absorption_margin": 0.01,
            "cell_charge_cutoff": 3.55,
            "cell_discharge_cutoff": 2.90,
        }
    ),
    voltage_bounds=MappingProxyType(
        {
            "cell_absorption_voltage": (3.40, 3.60),
            "cell_absorption_voltage_without_cells": (3.35, 3.60),
            # A float below the resting voltage of a full cell would make the charger discharge.
            "cell_float_voltage": (3.35, 3.45),
            "cell_rebulk_voltage": (3.20, 3.40),
            "cell_absorption_trigger": (3.40, 3.65),
            "absorption_margin": (0.0, 0.05),
            "cell_charge_cutoff": (3.45, 3.65),
            # 2.6-3.0 V/cell for 16 cells is 41.6-48.0 V: inside the Sunny Island's DVL range.
            "cell_discharge_cutoff": (2.60, 3.00),
        }
    ),
    table_defaults=MappingProxyType(
        {
            "charge_cell_voltage_table": CHARGE_CELL_VOLTAGE_TABLE,
            "discharge_cell_voltage_table": DISCHARGE_CELL_VOLTAGE_TABLE,
            "charge_temperature_table": CHARGE_TEMPERATURE_TABLE,
            "discharge_temperature_table": DISCHARGE_TEMPERATURE_TABLE,
        }
    ),
)

NMC: Final = Chemistry(
    key="nmc",
    name="Li-ion NMC",
    # Every NMC/NCA datasheet: charge to 4.20 V at most, discharge cut-off 2.5 V; charge 0-45 °C.
    # High-voltage (4.35 V) variants are excluded on purpose.
    cell_min=2.5,
    cell_max=4.20,
    cell_nominal=3.65,
    charge_temperature=(0.0, 45.0),
    discharge_temperature=(-20.0, 60.0),
    max_charge_rate=1.0,
    max_discharge_rate=2.0,
    voltage_defaults=MappingProxyType(
        {
            "cell_absorption_voltage": 4.10,
            # The same point on the NMC curve (4.05 V: a quarter of the current).
            "cell_absorption_voltage_without_cells": 4.05,
            "cell_float_voltage": 4.00,
            "cell_rebulk_voltage": 3.95,
            "cell_absorption_trigger": 4.10,
            "absorption_margin": 0.01,
            "cell_charge_cutoff": 4.15,
            "cell_discharge_cutoff": 3.30,
        }
    ),
    voltage_bounds=MappingProxyType(
        {
            "cell_absorption_voltage": (4.00, 4.15),
            "cell_absorption_voltage_without_cells": (3.90, 4.15),
            "cell_float_voltage": (3.90, 4.10),
            "cell_rebulk_voltage": (3.80, 4.05),
            "cell_absorption_trigger": (4.00, 4.20),
            "absorption_margin": (0.0, 0.05),
            "cell_charge_cutoff": (4.05, 4.20),
            "cell_discharge_cutoff": (3.00, 3.50),
        }
    ),
    table_defaults=MappingProxyType(
        {
            "charge_cell_voltage_table": NMC_CHARGE_CELL_VOLTAGE_TABLE,
            "discharge_cell_voltage_table": NMC_DISCHARGE_CELL_VOLTAGE_TABLE,
            "charge_temperature_table": NMC_CHARGE_TEMPERATURE_TABLE,
            "discharge_temperature_table": NMC_DISCHARGE_TEMPERATURE_TABLE,
        }
    ),
)

CHEMISTRIES: Final[Mapping[str, Chemistry]] = MappingProxyType({c.key: c for c in (LIFEPO4, NMC)})
"""Every preset by its key (the value stored in a config entry)."""


_PACK_RANGES: Final[Mapping[str, tuple[float, float]]] = MappingProxyType(
    {
        "cell_absorption_voltage": SI_CHARGE_VOLTAGE_RANGE,
        "cell_float_voltage": SI_CHARGE_VOLTAGE_RANGE,
        # Not sent, but the pack reaches it: it must stay inside the inverter's DC range.
        "cell_charge_cutoff": SI_CHARGE_VOLTAGE_RANGE,
        "cell_discharge_cutoff": SI_DISCHARGE_VOLTAGE_RANGE,
    }
)
"""Per-cell settings whose pack value must fit a Sunny Island range (the rest follow from these:
the CVL sent is always between the float and the absorption voltage)."""

_CELL_COUNT_RANGE: Final = (1, 32)


class UnsafeSetting(ValueError):  # noqa: N818 - the name says what it is; it is a ValueError
    """A charge setting outside its safe bounds (or of the wrong shape); ``field`` names it."""

    def __init__(self, field_name: str, message: str) -> None:
        """Name the offending field so a form can show the error next to it."""
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


def allowed_cell_counts(chemistry: str) -> range:
    """Cell counts for which ``chemistry``'s preset voltages fit the Sunny Island's ranges.

    LiFePO4 gives 15-16 (11 cells would charge to 38 V, 17 discharge-stop at 49.3 V); NMC gives
    13-14. Raises :class:`UnsafeSetting` for an unknown chemistry.
    """
    preset = _preset(chemistry)
    low, high = _CELL_COUNT_RANGE
    for name, (pack_low, pack_high) in _PACK_RANGES.items():
        per_cell = preset.voltage_defaults[name]
        low = max(low, math.ceil(pack_low / per_cell - _EPSILON))
        high = min(high, math.floor(pack_high / per_cell + _EPSILON))
    return range(low, max(low, high + 1))


# Bounds of each setting on its own (the voltage ones come from the chemistry).
_OWN_BOUNDS: Final[Mapping[str, tuple[float, float]]] = MappingProxyType(
    {
        "cells": (1.0, 32.0),
        "capacity_ah": (1.0, 10000.0),
        "bulk_current": (0.0, MAX_CURRENT),
        "max_discharge_current": (0.0, MAX_CURRENT),
        "tail_current": (0.0, MAX_CURRENT),
        "tail_hold": (0.0, 3600.0),
        "max_absorption_time": (60.0, 86400.0),
        "rebulk_delay": (0.0, 3600.0),
        "rebulk_soc": (0.0, 99.0),
        "full_charge_interval_days": (0.0, 365.0),
        "recovery_hold": (0.0, 600.0),
        "ramp_rate": (0.1, MAX_CURRENT),
        "stale_alarm_after": (5.0, 86400.0),
        "stale_after": (5.0, 600.0),
        "alarm_delay": (0.0, 300.0),
        "cell_imbalance_warning": (0.01, 1.0),
        # A balanced pack still shows a few mV between its cells, and most BMSes resolve 1-2 mV:
        # below 2 mV absorption could never end by balance. To switch the rule off, use a long
        # spread_hold instead (0 is not offered).
        "absorption_spread": (0.002, 0.100),
        "spread_hold": (0.0, 86400.0),
        "rebulk_spread": (0.0, 0.5),
        # mV/s on the pack. Below 0.5 mV/s the step to float would take most of an hour.
        "cvl_ramp_rate": (0.5, 1000.0),
        "undervoltage_hysteresis": (0.01, 0.30),
    }
)
BOOL_FIELDS: Final = (
    "stale_alarm",
    "linear",
    "use_soc_limits",
    "allow_charge_without_temperature",
    "sunny_island_ranges",
)
"""Settings that are true or false."""
_TAIL_CURRENT_RATE: Final = 0.2  # tail current at most 0.2 C: above that a battery is not full
_SOC_RANGE: Final = (0.0, 100.0)
_MOSFET_RANGE: Final = (-40.0, 150.0)
# Bounds are compared with a little slack so values computed as float sums (e.g. pack/cells) pass.
_EPSILON: Final = 1e-9


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargeSettings:
    """Everything the charge state machine and the limit policy may be told; validated on creation.

    Defaults are the LiFePO4 ones for a 16-cell 100 Ah pack; :meth:`for_chemistry` builds the
    defaults of any preset, cell count and capacity. Times are seconds, currents amperes,
    voltages volts per cell, SOC percent. Zero disables ``rebulk_soc``,
    ``full_charge_interval_days`` and ``rebulk_spread``.

    Cell balance (dbus-serialbattery's rule): absorption also ends once the spread between the
    highest and the lowest cell has stayed at or below ``absorption_spread`` for ``spread_hold``
    while at absorption voltage, and float returns to bulk once the spread has stayed at or above
    ``rebulk_spread`` for ``rebulk_delay``. Spreads are volts between two cells.

    Conservative choices where protection is missing or the inverter ignores a limit:

    * ``cell_absorption_voltage_without_cells`` is the per-cell absorption voltage while the
      source reports no complete set of cell voltages (a BMV, a SmartShunt, plain sensors): the
      pack voltage alone cannot show one cell running away, so charge less high. It never goes
      above ``cell_absorption_voltage`` nor below ``cell_float_voltage``.
    * ``allow_charge_without_temperature``: without any battery temperature nothing prevents
      charging a frozen LiFePO4 pack, so by default the charge limit is 0 until one is known.
    * ``undervoltage_hysteresis`` (V per cell): the off-grid under-voltage alarm raised at the
      discharge cut-off leaves once the lowest cell (and the pack) are this much above it.
    * ``cvl_ramp_rate`` (mV/s on the pack): how fast the charge voltage limit falls from the
      absorption to the float voltage. 5 mV/s takes 55.2 V to 54.0 V in four minutes, about as
      fast as a full LiFePO4 pack relaxes with no current, so the inverter follows the pack down
      instead of being told to pull it down (a charge voltage below the battery voltage makes a
      Sunny Island discharge the battery whatever the discharge limit, FSS-ConnectingBat-TI-en-10
      p. 18).
    * ``sunny_island_ranges``: the pack voltages must fit the Sunny Island's 0x351 ranges (only
      packs from :func:`allowed_cell_counts`). A BMS shown on its own, with no inverter, turns
      this off to allow any pack size.
    """

    chemistry: str = "lifepo4"
    cells: int = 16
    capacity_ah: float = 100.0
    cell_absorption_voltage: float = 3.45
    cell_absorption_voltage_without_cells: float = 3.40
    cell_float_voltage: float = 3.375
    cell_rebulk_voltage: float = 3.30
    cell_absorption_trigger: float = 3.45
    absorption_margin: float = 0.01
    cell_charge_cutoff: float = 3.55
    cell_discharge_cutoff: float = 2.90
    bulk_current: float = 50.0
    max_discharge_current: float = 100.0
    tail_current: float = 5.0
    tail_hold: float = 60.0
    max_absorption_time: float = 7200.0
    rebulk_delay: float = 60.0
    rebulk_soc: float = 80.0
    full_charge_interval_days: float = 0.0
    recovery_hold: float = 30.0
    ramp_rate: float = 5.0
    stale_after: float = 30.0
    stale_alarm: bool = False
    stale_alarm_after: float = 300.0
    alarm_delay: float = 5.0
    cell_imbalance_warning: float = 0.10
    absorption_spread: float = 0.010
    spread_hold: float = 900.0
    rebulk_spread: float = 0.080
    linear: bool = True
    use_soc_limits: bool = False
    charge_cell_voltage_table: Curve = CHARGE_CELL_VOLTAGE_TABLE
    discharge_cell_voltage_table: Curve = DISCHARGE_CELL_VOLTAGE_TABLE
    charge_temperature_table: Curve = CHARGE_TEMPERATURE_TABLE
    discharge_temperature_table: Curve = DISCHARGE_TEMPERATURE_TABLE
    mosfet_temperature_table: Curve = MOSFET_TEMPERATURE_TABLE
    charge_soc_table: Curve = CHARGE_SOC_TABLE
    discharge_soc_table: Curve = DISCHARGE_SOC_TABLE
    cvl_ramp_rate: float = 5.0
    undervoltage_hysteresis: float = 0.10
    allow_charge_without_temperature: bool = False
    sunny_island_ranges: bool = True

    def __post_init__(self) -> None:
        """Refuse to exist with unsafe values: no consumer ever sees an invalid object."""
        self.validate()

    # --- construction -----------------------------------------------------------------------

    @classmethod
    def for_chemistry(
        cls, chemistry: str, *, cells: int, capacity_ah: float, **overrides: Any
    ) -> Self:
        """Defaults of ``chemistry`` for ``cells`` in series of ``capacity_ah``, then ``overrides``.

        Currents scale with capacity: bulk 0.5 C, discharge 1 C, tail 0.05 C (the usual
        end-of-charge current in cell datasheets).
        """
        preset = _preset(chemistry)
        values: dict[str, Any] = {
            "chemistry": chemistry,
            "cells": cells,
            "capacity_ah": capacity_ah,
            **preset.voltage_defaults,
            **preset.table_defaults,
            "bulk_current": min(MAX_CURRENT, round(0.5 * capacity_ah, 1)),
            "max_discharge_current": min(MAX_CURRENT, round(1.0 * capacity_ah, 1)),
            "tail_current": round(0.05 * capacity_ah, 1),
        }
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Self:
        """Settings from stored options (JSON: lists for curves); unknown keys are ignored.

        Missing values take the defaults of the stored chemistry, cell count and capacity.
        """
        known = {f.name: f for f in fields(cls)}
        chemistry = str(data.get("chemistry", LIFEPO4.key))
        try:
            cells = int(data.get("cells", 16))
        except (TypeError, ValueError) as err:
            raise UnsafeSetting("cells", "must be a whole number") from err
        try:
            capacity = float(data.get("capacity_ah", 100.0))
        except (TypeError, ValueError) as err:
            raise UnsafeSetting("capacity_ah", "must be a number") from err
        overrides: dict[str, Any] = {}
        for name, raw in data.items():
            if name not in known or name in ("chemistry", "cells", "capacity_ah"):
                continue
            overrides[name] = _coerce(name, raw, cls._kind(name))
        return cls.for_chemistry(chemistry, cells=cells, capacity_ah=capacity, **overrides)

    @staticmethod
    def _kind(name: str) -> str:
        if name.endswith("_table"):
            return "curve"
        if name in BOOL_FIELDS:
            return "bool"
        return "number"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly values (curves as lists of ``[x, fraction]``) for storing."""
        result: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = [list(point) for point in value]
            result[f.name] = value
        return result

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied (validated like any new settings)."""
        return replace(self, **changes)

    # --- derived pack values ----------------------------------------------------------------

    @property
    def preset(self) -> Chemistry:
        """The chemistry preset these settings belong to."""
        return CHEMISTRIES[self.chemistry]

    @property
    def absorption_voltage(self) -> float:
        """Pack charge voltage limit during bulk and absorption, V."""
        return self.cells * self.cell_absorption_voltage

    @property
    def absorption_start_voltage(self) -> float:
        """Pack voltage at which absorption begins (absorption minus the margin), V."""
        return self.cells * (self.cell_absorption_voltage - self.absorption_margin)

    @property
    def absorption_voltage_without_cells(self) -> float:
        """Pack charge voltage limit in bulk/absorption while cell voltages are unknown, V.

        Clamped between the float and the absorption voltage, so changing either of those can
        never make a stored value invalid.
        """
        cell = max(self.cell_float_voltage, self.cell_absorption_voltage_without_cells)
        return self.cells * min(self.cell_absorption_voltage, cell)

    @property
    def float_voltage(self) -> float:
        """Pack charge voltage limit in float, V."""
        return self.cells * self.cell_float_voltage

    @property
    def rebulk_voltage(self) -> float:
        """Pack voltage below which float returns to bulk (after ``rebulk_delay``), V."""
        return self.cells * self.cell_rebulk_voltage

    @property
    def charge_cutoff_voltage(self) -> float:
        """Pack voltage at or above which charging stops (CCL 0), V."""
        return self.cells * self.cell_charge_cutoff

    @property
    def discharge_cutoff_voltage(self) -> float:
        """Pack voltage at or below which discharging stops (DCL 0); also the DVL sent, V."""
        return self.cells * self.cell_discharge_cutoff

    @property
    def max_voltage(self) -> float:
        """The chemistry's absolute pack maximum: no charge voltage limit may exceed it, V."""
        return self.cells * self.preset.cell_max

    @property
    def min_voltage(self) -> float:
        """The chemistry's absolute pack minimum, V."""
        return self.cells * self.preset.cell_min

    # --- bounds and validation --------------------------------------------------------------

    def bounds(self, name: str) -> tuple[float, float]:
        """Inclusive ``(min, max)`` for the numeric setting ``name``, given the other values.

        The bounds include the relations between settings (float ≤ absorption ≤ charge cut-off,
        currents within the C-rate of the capacity…), so a value inside them is always accepted
        as long as the other settings stay put: number entities can offer exactly this range.
        """
        return self._bounds(name, NUMBER_FIELDS)

    def _own_bounds(self, name: str) -> tuple[float, float]:
        fit = self.sunny_island_ranges is True
        if name == "cells" and fit:
            allowed = allowed_cell_counts(self.chemistry)
            return float(allowed.start), float(allowed.stop - 1)
        if name in VOLTAGE_FIELDS:
            low, high = _preset(self.chemistry).voltage_bounds[name]
            pack = _PACK_RANGES.get(name)
            if pack is not None and fit and isinstance(self.cells, int) and self.cells > 0:
                low = max(low, pack[0] / self.cells)
                high = min(high, pack[1] / self.cells)
            return low, high
        return _OWN_BOUNDS[name]

    def _relations(self) -> tuple[tuple[str, str, float], ...]:
        """``(low, high, factor)``: setting ``low`` is at most ``factor`` times ``high``."""
        preset = _preset(self.chemistry)
        return (
            ("cell_absorption_voltage", "cell_charge_cutoff", 1.0),
            ("cell_absorption_trigger", "cell_charge_cutoff", 1.0),
            ("cell_float_voltage", "cell_absorption_voltage", 1.0),
            ("cell_rebulk_voltage", "cell_float_voltage", 1.0),
            ("cell_discharge_cutoff", "cell_rebulk_voltage", 1.0),
            ("bulk_current", "capacity_ah", preset.max_charge_rate),
            ("max_discharge_current", "capacity_ah", preset.max_discharge_rate),
            # Above 0.2 C a battery is not full: a larger tail current would end charging early.
            ("tail_current", "capacity_ah", _TAIL_CURRENT_RATE),
            ("stale_after", "stale_alarm_after", 1.0),
        )

    def _bounds(self, name: str, others: tuple[str, ...]) -> tuple[float, float]:
        """Own bounds of ``name`` narrowed by its relations to the settings in ``others``."""
        low, high = self._own_bounds(name)
        for lower, upper, factor in self._relations():
            if name == lower and upper in others:
                high = min(high, factor * getattr(self, upper))
            elif name == upper and lower in others:
                low = max(low, getattr(self, lower) / factor)
        return low, high

    def validate(self) -> None:
        """Raise :class:`UnsafeSetting` naming the first field outside its safe bounds.

        Fields are checked in :data:`NUMBER_FIELDS` order, each against its own bounds and its
        relations to the fields before it; so every relation is checked once, and a broken
        relation names the later field of the pair.
        """
        if not isinstance(self.chemistry, str) or self.chemistry not in CHEMISTRIES:
            raise UnsafeSetting("chemistry", f"unknown chemistry {self.chemistry!r}")
        if isinstance(self.cells, bool) or not isinstance(self.cells, int):
            raise UnsafeSetting("cells", "must be a whole number")
        for name in BOOL_FIELDS:
            if not isinstance(getattr(self, name), bool):
                raise UnsafeSetting(name, "must be true or false")
        for index, name in enumerate(NUMBER_FIELDS):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UnsafeSetting(name, "must be a number")
            if not math.isfinite(value):
                raise UnsafeSetting(name, "must be finite")
            low, high = self._bounds(name, NUMBER_FIELDS[:index])
            if not low - _EPSILON <= value <= high + _EPSILON:
                raise UnsafeSetting(name, f"{value} outside {low:g}…{high:g}")
        self._validate_curves()

    def _validate_curves(self) -> None:
        preset = self.preset
        _check_curve(
            "charge_cell_voltage_table",
            self.charge_cell_voltage_table,
            (preset.cell_min, preset.cell_max),
        )
        _check_curve(
            "discharge_cell_voltage_table",
            self.discharge_cell_voltage_table,
            (preset.cell_min, preset.cell_max),
        )
        # The first and last points of a temperature curve are the edges of the range in which
        # (dis)charging is allowed at all, so they must lie within what the cell maker allows.
        _check_curve(
            "charge_temperature_table",
            self.charge_temperature_table,
            preset.charge_temperature,
            min_points=2,
        )
        _check_curve(
            "discharge_temperature_table",
            self.discharge_temperature_table,
            preset.discharge_temperature,
            min_points=2,
        )
        _check_curve("mosfet_temperature_table", self.mosfet_temperature_table, _MOSFET_RANGE)
        _check_curve("charge_soc_table", self.charge_soc_table, _SOC_RANGE)
        _check_curve("discharge_soc_table", self.discharge_soc_table, _SOC_RANGE)


NUMBER_FIELDS: Final = (
    "cells",
    "capacity_ah",
    "cell_charge_cutoff",
    "cell_absorption_voltage",
    "cell_absorption_trigger",
    "cell_float_voltage",
    "cell_rebulk_voltage",
    "cell_discharge_cutoff",
    "absorption_margin",
    "bulk_current",
    "max_discharge_current",
    "tail_current",
    "tail_hold",
    "max_absorption_time",
    "rebulk_delay",
    "rebulk_soc",
    "full_charge_interval_days",
    "recovery_hold",
    "ramp_rate",
    "stale_alarm_after",
    "stale_after",
    "alarm_delay",
    "cell_imbalance_warning",
    "absorption_spread",
    "spread_hold",
    "rebulk_spread",
    "cell_absorption_voltage_without_cells",
    "cvl_ramp_rate",
    "undervoltage_hysteresis",
)
"""Settings a number entity can edit; :meth:`ChargeSettings.bounds` knows each one's range."""


def _preset(chemistry: str) -> Chemistry:
    try:
        return CHEMISTRIES[chemistry]
    except KeyError:
        raise UnsafeSetting("chemistry", f"unknown chemistry {chemistry!r}") from None


def _check_curve(
    name: str, curve: object, span: tuple[float, float], *, min_points: int = 1
) -> None:
    """A curve is ascending ``(x, fraction)`` pairs, x within ``span``, fractions 0…1."""
    if not isinstance(curve, tuple) or len(curve) < min_points:
        raise UnsafeSetting(name, f"needs at least {min_points} points")
    previous = -math.inf
    for point in curve:
        if not isinstance(point, tuple) or len(point) != 2:
            raise UnsafeSetting(name, "points are (value, fraction) pairs")
        x, fraction = point
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in (x, fraction)):
            raise UnsafeSetting(name, "points must be finite numbers")
        if not span[0] - _EPSILON <= x <= span[1] + _EPSILON:
            raise UnsafeSetting(name, f"{x} outside {span[0]:g}…{span[1]:g}")
        if not 0.0 <= fraction <= 1.0:
            raise UnsafeSetting(name, f"fraction {fraction} outside 0…1")
        if x <= previous:
            raise UnsafeSetting(name, "points must be in strictly ascending order")
        previous = x


def _coerce(name: str, raw: Any, kind: str) -> Any:
    """Turn a stored JSON value back into the type the field wants."""
    if kind == "curve":
        if not isinstance(raw, list | tuple):
            raise UnsafeSetting(name, "must be a list of points")
        try:
            return tuple((float(x), float(f)) for x, f in raw)
        except (TypeError, ValueError) as err:
            raise UnsafeSetting(name, "points are (value, fraction) pairs") from err
    if kind == "bool":
        if not isinstance(raw, bool):
            raise UnsafeSetting(name, "must be true or false")
        return raw
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise UnsafeSetting(name, "must be a number")
    return float(raw)
