"""Chemistry presets and charge settings: defaults, bounds, and refusal of unsafe values."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings as hyp_settings, strategies as st
import pytest

from custom_components.sma_victron_bridge.control.chemistry import (
    CHARGE_TEMPERATURE_TABLE,
    CHEMISTRIES,
    LIFEPO4,
    MAX_CURRENT,
    NMC,
    NUMBER_FIELDS,
    ChargeSettings,
    UnsafeSetting,
    allowed_cell_counts,
)

# Settings bounded by each other: a broken relation may name the other field of the pair.
RELATED = {
    "capacity_ah": ("bulk_current", "max_discharge_current", "tail_current"),
    "cell_charge_cutoff": ("cell_absorption_voltage", "cell_absorption_trigger"),
    "cell_absorption_voltage": ("cell_float_voltage",),
    "cell_float_voltage": ("cell_rebulk_voltage",),
    "cell_rebulk_voltage": ("cell_discharge_cutoff",),
    "stale_alarm_after": ("stale_after",),
}

HYPOTHESIS = hyp_settings(max_examples=150, deadline=None, derandomize=True, database=None)

# The Sunny Island's accepted ranges for a 48 V system (PROTOCOLS.md §1, 0x351).
SI_CVL = (41.0, 63.0)
SI_DVL = (41.0, 48.0)


def test_lifepo4_defaults_give_the_usual_16s_pack_voltages() -> None:
    s = ChargeSettings()
    assert s.preset is LIFEPO4
    assert s.absorption_voltage == pytest.approx(55.2)  # 16 * 3.45
    assert s.float_voltage == pytest.approx(54.0)  # 16 * 3.375
    assert s.rebulk_voltage == pytest.approx(52.8)  # 16 * 3.30
    assert s.absorption_start_voltage == pytest.approx(55.04)  # 16 * (3.45 - 0.01)
    assert s.charge_cutoff_voltage == pytest.approx(56.8)  # 16 * 3.55
    assert s.discharge_cutoff_voltage == pytest.approx(46.4)  # 16 * 2.90
    assert s.max_voltage == pytest.approx(58.4)  # 16 * 3.65
    assert s.min_voltage == pytest.approx(40.0)  # 16 * 2.5


def test_default_tables_are_dbus_serialbattery_defaults() -> None:
    s = ChargeSettings()
    assert s.charge_cell_voltage_table == (
        (3.375, 1.0),
        (3.400, 0.25),
        (3.425, 0.05),
        (3.450, 0.005),
        (3.500, 0.0),
    )
    assert s.discharge_cell_voltage_table == (
        (2.8, 0.0),
        (2.9, 0.005),
        (3.0, 0.05),
        (3.1, 0.25),
        (3.19, 1.0),
    )
    assert [t for t, _ in s.charge_temperature_table] == [0, 2, 5, 10, 40, 45, 50, 55]
    assert [f for _, f in s.charge_temperature_table] == [0, 0.25, 0.5, 1, 1, 0.5, 0.25, 0]
    assert [t for t, _ in s.discharge_temperature_table] == [-10, 0, 5, 10, 40, 45, 50, 55]
    assert s.mosfet_temperature_table == ((70.0, 1.0), (80.0, 0.25), (90.0, 0.0))
    assert s.recovery_hold == 30.0
    assert s.ramp_rate == 5.0
    assert s.stale_after == 30.0


def test_presets_are_lifepo4_and_nmc_only() -> None:
    assert set(CHEMISTRIES) == {"lifepo4", "nmc"}
    assert (LIFEPO4.cell_min, LIFEPO4.cell_max) == (2.5, 3.65)
    assert (NMC.cell_min, NMC.cell_max) == (2.5, 4.2)


def test_dataclass_defaults_are_the_lifepo4_preset() -> None:
    assert ChargeSettings() == ChargeSettings.for_chemistry("lifepo4", cells=16, capacity_ah=100)


def test_for_chemistry_scales_currents_with_capacity() -> None:
    s = ChargeSettings.for_chemistry("lifepo4", cells=16, capacity_ah=280)
    assert (s.bulk_current, s.max_discharge_current, s.tail_current) == (140.0, 280.0, 14.0)
    big = ChargeSettings.for_chemistry("lifepo4", cells=16, capacity_ah=5000)
    assert big.bulk_current == MAX_CURRENT
    assert big.max_discharge_current == MAX_CURRENT


def test_nmc_preset_for_a_14s_pack() -> None:
    s = ChargeSettings.for_chemistry("nmc", cells=14, capacity_ah=200, rebulk_soc=0.0)
    assert s.absorption_voltage == pytest.approx(57.4)  # 14 * 4.10
    assert s.float_voltage == pytest.approx(56.0)
    assert s.max_voltage == pytest.approx(58.8)  # 14 * 4.20
    assert s.charge_temperature_table[-1] == (45.0, 0.0)
    assert s.rebulk_soc == 0.0


def test_unknown_chemistry_is_refused() -> None:
    with pytest.raises(UnsafeSetting) as err:
        ChargeSettings.for_chemistry("lto", cells=20, capacity_ah=40)
    assert err.value.field == "chemistry"
    with pytest.raises(UnsafeSetting) as err:
        ChargeSettings(chemistry="lead")
    assert err.value.field == "chemistry"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cell_absorption_voltage", 3.70),  # above the LiFePO4 absolute maximum
        ("cell_absorption_voltage", 3.30),  # below float
        ("cell_float_voltage", 3.50),  # above absorption
        ("cell_rebulk_voltage", 3.40),  # above float
        ("cell_charge_cutoff", 3.70),  # above the cell maximum
        ("cell_charge_cutoff", 3.44),  # below absorption
        ("cell_discharge_cutoff", 2.40),  # below the cell minimum
        ("cell_absorption_trigger", 3.60),  # above the charge cut-off
        ("bulk_current", 150.0),  # 1.5 C on 100 Ah
        ("bulk_current", -1.0),
        ("max_discharge_current", 250.0),  # 2.5 C
        ("tail_current", 25.0),
        ("max_absorption_time", 10.0),
        ("stale_after", 1.0),
        ("stale_after", 400.0),  # longer than the stale alarm time
        ("ramp_rate", 0.0),
        ("rebulk_soc", 100.0),
        ("cells", 0),
        ("cells", 33),
        ("capacity_ah", 0.5),
        ("cell_imbalance_warning", 0.0),
    ],
)
def test_unsafe_values_are_refused_with_their_field(field: str, value: float) -> None:
    changes: dict[str, Any] = {field: value}
    with pytest.raises(UnsafeSetting) as err:
        ChargeSettings(**changes)
    assert err.value.field == field
    assert isinstance(err.value, ValueError)
    assert field in str(err.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cell_float_voltage", math.nan),
        ("bulk_current", math.inf),
        ("bulk_current", True),
        ("bulk_current", "50"),
        ("cells", 16.0),
        ("cells", True),
        ("linear", 1),
        ("stale_alarm", "yes"),
    ],
)
def test_wrong_types_are_refused(field: str, value: Any) -> None:
    with pytest.raises(UnsafeSetting) as err:
        ChargeSettings(**{field: value})
    assert err.value.field == field


@pytest.mark.parametrize(
    ("field", "table"),
    [
        ("charge_cell_voltage_table", ()),
        ("charge_cell_voltage_table", ((3.4, 1.0), (3.3, 0.5))),  # descending
        ("charge_cell_voltage_table", ((3.4, 1.0), (3.4, 0.5))),  # repeated x
        ("charge_cell_voltage_table", ((3.4, 1.5),)),  # fraction above 1
        ("charge_cell_voltage_table", ((3.4, -0.1),)),
        ("charge_cell_voltage_table", ((3.8, 0.0),)),  # beyond the LiFePO4 maximum
        ("discharge_cell_voltage_table", ((2.0, 0.0),)),  # below the LiFePO4 minimum
        ("charge_temperature_table", ((-5.0, 0.0), (10.0, 1.0), (40.0, 0.0))),  # below 0 °C
        ("charge_temperature_table", ((0.0, 0.0), (10.0, 1.0), (60.0, 0.0))),  # above 55 °C
        ("charge_temperature_table", ((10.0, 1.0),)),  # a range needs two ends
        ("discharge_temperature_table", ((-30.0, 0.0), (10.0, 1.0))),
        ("mosfet_temperature_table", ((200.0, 0.0),)),
        ("charge_soc_table", ((101.0, 0.0),)),
        ("discharge_soc_table", ((50.0, math.nan),)),
        ("discharge_soc_table", ((50.0, 0.5, 1.0),)),
        ("discharge_soc_table", ((50.0, "half"),)),
        ("discharge_soc_table", [(50.0, 0.5)]),
    ],
)
def test_bad_curves_are_refused(field: str, table: Any) -> None:
    with pytest.raises(UnsafeSetting) as err:
        ChargeSettings(**{field: table})
    assert err.value.field == field


def test_a_broken_relation_names_the_later_field() -> None:
    # 50 A bulk on 40 Ah would be 1.25 C: the current is checked after the capacity.
    with pytest.raises(UnsafeSetting) as err:
        ChargeSettings(capacity_ah=40.0)
    assert err.value.field == "bulk_current"
    assert "outside 0…40" in str(err.value)
    # Lowering the cut-off below the absorption voltage blames absorption.
    with pytest.raises(UnsafeSetting) as err:
        ChargeSettings(cell_charge_cutoff=3.46, cell_absorption_voltage=3.50)
    assert err.value.field == "cell_absorption_voltage"


def test_preset_bounds_never_reach_beyond_the_cell_limits() -> None:
    for preset in CHEMISTRIES.values():
        for name, (low, high) in preset.voltage_bounds.items():
            assert low <= preset.voltage_defaults[name] <= high
            if name != "absorption_margin":
                assert preset.cell_min <= low <= high <= preset.cell_max
        for cells in allowed_cell_counts(preset.key):
            ChargeSettings.for_chemistry(preset.key, cells=cells, capacity_ah=100)


def test_bounds_follow_the_other_settings() -> None:
    s = ChargeSettings()
    assert s.bounds("cell_float_voltage") == (3.35, 3.45)
    lower_absorption = s.replace(cell_absorption_voltage=3.42)
    assert lower_absorption.bounds("cell_float_voltage") == (3.35, 3.42)
    assert s.bounds("cell_charge_cutoff") == (3.45, 3.65)
    assert s.bounds("cell_absorption_voltage") == (3.40, 3.55)
    assert s.bounds("cell_discharge_cutoff") == (2.6, 3.0)
    assert s.bounds("cell_rebulk_voltage") == (3.2, 3.375)
    assert s.bounds("bulk_current") == (0.0, 100.0)
    assert s.replace(capacity_ah=2000).bounds("bulk_current") == (0.0, MAX_CURRENT)
    assert s.bounds("capacity_ah") == (50.0, 10000.0)
    assert s.bounds("stale_after") == (5.0, 300.0)
    assert s.bounds("stale_alarm_after") == (30.0, 86400.0)
    assert s.bounds("cells") == (15.0, 16.0)  # the LiFePO4 packs a Sunny Island takes
    assert s.replace(sunny_island_ranges=False).bounds("cells") == (1.0, 32.0)
    assert s.bounds("tail_hold") == (0.0, 3600.0)
    with pytest.raises(KeyError):
        s.bounds("linear")


def test_replace_validates() -> None:
    s = ChargeSettings()
    assert s.replace(bulk_current=80.0).bulk_current == 80.0
    with pytest.raises(UnsafeSetting):
        s.replace(cell_absorption_voltage=3.65)


def test_stored_options_round_trip_through_json() -> None:
    s = ChargeSettings.for_chemistry("lifepo4", cells=16, capacity_ah=280, use_soc_limits=True)
    stored = json.loads(json.dumps(s.to_dict()))
    assert stored["charge_temperature_table"][1] == [2.0, 0.25]
    assert ChargeSettings.from_mapping(stored) == s


def test_from_mapping_fills_missing_values_with_the_presets() -> None:
    s = ChargeSettings.from_mapping(
        {"chemistry": "nmc", "cells": 13, "capacity_ah": 100, "bulk_current": 40, "other": 1}
    )
    assert s.chemistry == "nmc"
    assert s.cell_absorption_voltage == 4.10
    assert s.bulk_current == 40.0
    assert s.charge_temperature_table == NMC.table_defaults["charge_temperature_table"]
    assert ChargeSettings.from_mapping({}) == ChargeSettings()
    assert ChargeSettings.from_mapping({"linear": False}).linear is False


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"cells": "many"}, "cells"),
        ({"capacity_ah": None}, "capacity_ah"),
        ({"bulk_current": "fifty"}, "bulk_current"),
        ({"bulk_current": False}, "bulk_current"),
        ({"linear": "no"}, "linear"),
        ({"charge_soc_table": 5}, "charge_soc_table"),
        ({"charge_soc_table": [[1, 2, 3]]}, "charge_soc_table"),
        ({"charge_soc_table": [["a", 0.5]]}, "charge_soc_table"),
        ({"cell_absorption_voltage": 3.9}, "cell_absorption_voltage"),
    ],
)
def test_from_mapping_refuses_bad_stored_values(data: dict[str, Any], field: str) -> None:
    with pytest.raises(UnsafeSetting) as err:
        ChargeSettings.from_mapping(data)
    assert err.value.field == field


@HYPOTHESIS
@given(data=st.data(), field=st.sampled_from(NUMBER_FIELDS))
def test_every_value_inside_bounds_is_accepted(data: st.DataObject, field: str) -> None:
    """Number entities may offer exactly ``bounds(field)``: every value in it must validate."""
    s = ChargeSettings()
    low, high = s.bounds(field)
    value: float
    if field == "cells":
        value = data.draw(st.integers(int(low), int(high)))
    else:
        value = data.draw(st.floats(low, high))
    assert getattr(s.replace(**{field: value}), field) == value


@HYPOTHESIS
@given(data=st.data(), field=st.sampled_from(NUMBER_FIELDS))
def test_every_value_outside_bounds_is_refused(data: st.DataObject, field: str) -> None:
    s = ChargeSettings()
    low, high = s.bounds(field)
    above = data.draw(st.booleans())
    value: float
    if field == "cells":
        value = int(high) + data.draw(st.integers(1, 100)) if above else int(low) - 1
    else:
        delta = data.draw(st.floats(1e-6, 1e6))
        value = high + delta if above else low - delta
    with pytest.raises(UnsafeSetting) as err:
        s.replace(**{field: value})
    # A broken relation names the later field of the pair (see validate()).
    assert err.value.field in {field, *RELATED.get(field, ())}


@st.composite
def lifepo4_16s(draw: st.DrawFn) -> ChargeSettings:
    """Any valid LiFePO4 16-cell voltage configuration, drawn inside its bounds."""
    cutoff = draw(st.floats(3.45, 3.65))
    absorption = draw(st.floats(3.40, min(3.60, cutoff)))
    float_v = draw(st.floats(3.35, min(3.45, absorption)))
    rebulk = draw(st.floats(3.20, min(3.40, float_v)))
    discharge = draw(st.floats(2.60, min(3.00, rebulk)))
    trigger = draw(st.floats(3.40, cutoff))
    return ChargeSettings(
        cells=16,
        cell_charge_cutoff=cutoff,
        cell_absorption_voltage=absorption,
        cell_float_voltage=float_v,
        cell_rebulk_voltage=rebulk,
        cell_discharge_cutoff=discharge,
        cell_absorption_trigger=trigger,
    )


@HYPOTHESIS
@given(s=lifepo4_16s())
def test_valid_16s_lifepo4_voltages_fit_the_sunny_island(s: ChargeSettings) -> None:
    """Invariants 2 and 5: every valid setting gives CVL/DVL the inverter accepts."""
    for cvl in (s.absorption_voltage, s.float_voltage):
        assert SI_CVL[0] <= cvl <= SI_CVL[1]
        assert cvl <= s.max_voltage
    assert SI_DVL[0] <= s.discharge_cutoff_voltage <= SI_DVL[1] + 1e-9


def test_charge_temperature_table_constant_is_the_default() -> None:
    assert ChargeSettings().charge_temperature_table is CHARGE_TEMPERATURE_TABLE


# --- cell balance settings (dbus-serialbattery's CVCM rule) --------------------------------

BALANCE_FIELDS = ("absorption_spread", "spread_hold", "rebulk_spread")


def test_balance_settings_defaults_are_dbus_serialbattery_defaults() -> None:
    s = ChargeSettings()
    # Absorption → float once the cells are within 10 mV for 900 s; back to bulk at 80 mV.
    assert (s.absorption_spread, s.spread_hold, s.rebulk_spread) == (0.010, 900.0, 0.080)
    nmc = ChargeSettings.for_chemistry("nmc", cells=14, capacity_ah=100)
    assert (nmc.absorption_spread, nmc.spread_hold, nmc.rebulk_spread) == (0.010, 900.0, 0.080)


def test_balance_settings_are_editable_numbers_listed_last() -> None:
    # Appended: the existing order (and so which field a broken relation names) is unchanged.
    assert NUMBER_FIELDS[-6:-3] == BALANCE_FIELDS
    assert NUMBER_FIELDS[-3:] == (
        "cell_absorption_voltage_without_cells",
        "cvl_ramp_rate",
        "undervoltage_hysteresis",
    )
    assert NUMBER_FIELDS[:3] == ("cells", "capacity_ah", "cell_charge_cutoff")
    assert len(NUMBER_FIELDS) == 29


def test_balance_settings_bounds() -> None:
    s = ChargeSettings()
    assert s.bounds("absorption_spread") == (0.002, 0.100)
    assert s.bounds("spread_hold") == (0.0, 86400.0)
    assert s.bounds("rebulk_spread") == (0.0, 0.5)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("absorption_spread", 0.0),  # absorption could never end by balance
        ("absorption_spread", 0.001),
        ("absorption_spread", 0.101),
        ("absorption_spread", -0.01),
        ("spread_hold", -1.0),
        ("spread_hold", 86401.0),
        ("rebulk_spread", -0.001),
        ("rebulk_spread", 0.51),
        ("rebulk_spread", math.nan),
        ("spread_hold", math.inf),
        ("absorption_spread", True),
    ],
)
def test_unsafe_balance_settings_are_refused(field: str, value: float) -> None:
    changes: dict[str, Any] = {field: value}
    with pytest.raises(UnsafeSetting) as err:
        ChargeSettings(**changes)
    assert err.value.field == field


def test_balance_settings_edges_are_accepted() -> None:
    s = ChargeSettings(absorption_spread=0.002, spread_hold=0.0, rebulk_spread=0.0)
    assert (s.absorption_spread, s.spread_hold, s.rebulk_spread) == (0.002, 0.0, 0.0)
    top = ChargeSettings(absorption_spread=0.1, spread_hold=86400.0, rebulk_spread=0.5)
    assert (top.absorption_spread, top.spread_hold, top.rebulk_spread) == (0.1, 86400.0, 0.5)


def test_balance_settings_are_stored_and_restored() -> None:
    s = ChargeSettings(absorption_spread=0.015, spread_hold=600.0, rebulk_spread=0.0)
    stored = json.loads(json.dumps(s.to_dict()))
    assert (stored["absorption_spread"], stored["spread_hold"], stored["rebulk_spread"]) == (
        0.015,
        600.0,
        0.0,
    )
    assert ChargeSettings.from_mapping(stored) == s
    # JSON integers (a number entity may store 900) come back as floats.
    assert ChargeSettings.from_mapping({"spread_hold": 900}).spread_hold == 900.0


def test_entries_stored_before_the_balance_settings_keep_working() -> None:
    old = ChargeSettings.for_chemistry("lifepo4", cells=16, capacity_ah=280).to_dict()
    for name in BALANCE_FIELDS:
        del old[name]
    restored = ChargeSettings.from_mapping(old)
    assert (restored.absorption_spread, restored.spread_hold, restored.rebulk_spread) == (
        0.010,
        900.0,
        0.080,
    )
    assert restored.bulk_current == 140.0


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"absorption_spread": "tight"}, "absorption_spread"),
        ({"spread_hold": None}, "spread_hold"),
        ({"rebulk_spread": False}, "rebulk_spread"),
        ({"absorption_spread": 0}, "absorption_spread"),
    ],
)
def test_bad_stored_balance_settings_are_refused(data: dict[str, Any], field: str) -> None:
    with pytest.raises(UnsafeSetting) as err:
        ChargeSettings.from_mapping(data)
    assert err.value.field == field


# --- pack sizes the Sunny Island takes --------------------------------------------------------


def test_allowed_cell_counts_are_the_packs_whose_preset_voltages_fit() -> None:
    # LiFePO4: 15s and 16s (14s would stop discharging at 40.6 V, 17s at 49.3 V); NMC: 13s, 14s.
    assert allowed_cell_counts("lifepo4") == range(15, 17)
    assert allowed_cell_counts("nmc") == range(13, 15)
    with pytest.raises(UnsafeSetting):
        allowed_cell_counts("lto")


@pytest.mark.parametrize(
    ("chemistry", "cells", "fits"),
    [
        ("lifepo4", 11, False),  # absorption 38 V: below the 41 V the inverter accepts
        ("lifepo4", 14, False),
        ("lifepo4", 15, True),
        ("lifepo4", 16, True),
        ("lifepo4", 17, False),
        ("nmc", 12, False),
        ("nmc", 13, True),
        ("nmc", 14, True),
        ("nmc", 15, False),
    ],
)
def test_cell_counts_outside_the_sunny_island_ranges_are_refused(
    chemistry: str, cells: int, fits: bool
) -> None:
    if fits:
        s = ChargeSettings.for_chemistry(chemistry, cells=cells, capacity_ah=100)
        for cvl in (s.absorption_voltage, s.float_voltage, s.absorption_voltage_without_cells):
            assert SI_CVL[0] <= cvl <= SI_CVL[1]
        assert SI_DVL[0] <= s.discharge_cutoff_voltage <= SI_DVL[1]
        return
    with pytest.raises(UnsafeSetting) as err:
        ChargeSettings.for_chemistry(chemistry, cells=cells, capacity_ah=100)
    assert err.value.field == "cells"


def test_a_bms_on_its_own_takes_any_pack() -> None:
    s = ChargeSettings.for_chemistry("lifepo4", cells=4, capacity_ah=100, sunny_island_ranges=False)
    assert s.absorption_voltage == pytest.approx(13.8)
    assert ChargeSettings.from_mapping(s.to_dict()) == s


def test_voltage_bounds_narrow_to_the_inverter_ranges_at_the_cell_count() -> None:
    s15 = ChargeSettings.for_chemistry("lifepo4", cells=15, capacity_ah=100)
    low, high = s15.bounds("cell_discharge_cutoff")
    assert low == pytest.approx(41 / 15)  # 41.0 V at least
    assert high == 3.0
    with pytest.raises(UnsafeSetting) as err:
        s15.replace(cell_discharge_cutoff=2.70)  # 40.5 V: the inverter refuses the DVL
    assert err.value.field == "cell_discharge_cutoff"
    assert s15.replace(cell_discharge_cutoff=2.74).discharge_cutoff_voltage == pytest.approx(41.1)
    nmc14 = ChargeSettings.for_chemistry("nmc", cells=14, capacity_ah=100)
    assert nmc14.bounds("cell_discharge_cutoff")[1] == pytest.approx(48 / 14)


@HYPOTHESIS
@given(
    data=st.data(),
    chemistry=st.sampled_from(["lifepo4", "nmc"]),
    field=st.sampled_from(
        ["cell_absorption_voltage", "cell_float_voltage", "cell_discharge_cutoff"]
    ),
)
def test_every_allowed_pack_value_goes_on_the_wire_in_range(
    data: st.DataObject, chemistry: str, field: str
) -> None:
    cells = data.draw(st.sampled_from(list(allowed_cell_counts(chemistry))))
    s = ChargeSettings.for_chemistry(chemistry, cells=cells, capacity_ah=100)
    low, high = s.bounds(field)
    changed = s.replace(**{field: data.draw(st.floats(low, high))})
    for cvl in (changed.absorption_voltage, changed.float_voltage):
        assert SI_CVL[0] - 1e-9 <= cvl <= SI_CVL[1] + 1e-9
    assert SI_DVL[0] - 1e-9 <= changed.discharge_cutoff_voltage <= SI_DVL[1] + 1e-9


# --- conservative settings ----------------------------------------------------------------------


def test_new_settings_have_safe_defaults_and_bounds() -> None:
    s = ChargeSettings()
    assert s.allow_charge_without_temperature is False
    assert s.sunny_island_ranges is True
    assert s.cell_absorption_voltage_without_cells == 3.40
    assert s.absorption_voltage_without_cells == pytest.approx(54.4)
    assert s.cvl_ramp_rate == 5.0
    assert s.bounds("cvl_ramp_rate") == (0.5, 1000.0)
    assert s.undervoltage_hysteresis == 0.10
    assert s.bounds("undervoltage_hysteresis") == (0.01, 0.30)
    nmc = ChargeSettings.for_chemistry("nmc", cells=14, capacity_ah=100)
    assert nmc.cell_absorption_voltage_without_cells == 4.05


def test_the_absorption_without_cells_stays_between_float_and_absorption() -> None:
    # Stored values never become invalid when float or absorption move: the pack value clamps.
    high = ChargeSettings(cell_absorption_voltage_without_cells=3.60)
    assert high.absorption_voltage_without_cells == pytest.approx(high.absorption_voltage)
    low = ChargeSettings(cell_absorption_voltage_without_cells=3.35, cell_float_voltage=3.40)
    assert low.absorption_voltage_without_cells == pytest.approx(low.float_voltage)


def test_new_settings_are_stored_and_restored() -> None:
    s = ChargeSettings(
        allow_charge_without_temperature=True,
        cvl_ramp_rate=20.0,
        undervoltage_hysteresis=0.05,
        cell_absorption_voltage_without_cells=3.42,
    )
    assert ChargeSettings.from_mapping(json.loads(json.dumps(s.to_dict()))) == s
    with pytest.raises(UnsafeSetting) as err:
        ChargeSettings.from_mapping({"allow_charge_without_temperature": 1})
    assert err.value.field == "allow_charge_without_temperature"
