"""Entity descriptions for a Sunny Island: the system it reports and the BMS this entry runs.

Two groups: what the Sunny Island broadcasts (AC power per line, grid/generator state, voltages,
its own battery measurement, energy integrated from its 100 W-resolution powers) and what this
integration decides as its BMS (charge state, the limits sent, why they are what they are, how
old the battery data is, which protections the source cannot give, whether the frames are in
their safe mode), plus every charge setting as a bounded number entity.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from homeassistant.components.binary_sensor import BinarySensorDeviceClass
from homeassistant.components.number import NumberDeviceClass, NumberMode
from homeassistant.components.sensor import SensorDeviceClass, SensorStateClass
from homeassistant.const import (
    PERCENTAGE,
    EntityCategory,
    UnitOfElectricCurrent,
    UnitOfElectricPotential,
    UnitOfEnergy,
    UnitOfFrequency,
    UnitOfPower,
    UnitOfTemperature,
    UnitOfTime,
)

from ...binary_sensor import BridgeBinarySensorEntityDescription
from ...button import BridgeButtonEntityDescription
from ...control.charge import ChargeMode, ChargeState
from ...control.limits import Reason
from ...number import BridgeNumberEntityDescription
from ...select import BridgeSelectEntityDescription
from ...sensor import BridgeSensorEntityDescription

if TYPE_CHECKING:
    from .runtime import SunnyIslandData, SunnyIslandRuntime

DIAG = EntityCategory.DIAGNOSTIC
OPERATING_STATES = {0: "standby", 1: "operating", 3: "warning", 4: "failure"}


def _si(key: str) -> Callable[[Any], Any]:
    def value(data: SunnyIslandData) -> Any:
        return data.si.get(key)

    return value


def _has_si(key: str) -> Callable[[Any], bool]:
    def exists(data: SunnyIslandData) -> bool:
        return key in data.si

    return exists


def _power(key: str, translation_key: str, **kw: Any) -> BridgeSensorEntityDescription:
    return BridgeSensorEntityDescription(
        key=key,
        translation_key=translation_key,
        device_class=SensorDeviceClass.POWER,
        native_unit_of_measurement=UnitOfPower.WATT,
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=kw.pop("value_fn", _si(key)),
        exists_fn=kw.pop("exists_fn", _has_si(key)),
        **kw,
    )


def _phase(prefix: str, translation_key: str) -> tuple[BridgeSensorEntityDescription, ...]:
    return tuple(
        _power(
            f"{prefix}_l{line}",
            translation_key,
            translation_placeholders={"line": f"L{line}"},
            entity_registry_enabled_default=line == 1,
        )
        for line in (1, 2, 3)
    )


def _output_power(line: int) -> BridgeSensorEntityDescription:
    def value(data: SunnyIslandData) -> float | None:
        external = data.si.get(f"external_power_l{line}")
        inverter = data.si.get(f"inverter_power_l{line}")
        if external is None or inverter is None:
            return None
        return float(external) + float(inverter)

    return _power(
        f"output_power_l{line}",
        "output_power",
        translation_placeholders={"line": f"L{line}"},
        entity_registry_enabled_default=line == 1,
        value_fn=value,
        exists_fn=_has_si(f"inverter_power_l{line}"),
    )


def _voltage(key: str, translation_key: str, **kw: Any) -> BridgeSensorEntityDescription:
    return BridgeSensorEntityDescription(
        key=key,
        translation_key=translation_key,
        device_class=SensorDeviceClass.VOLTAGE,
        native_unit_of_measurement=UnitOfElectricPotential.VOLT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=_si(key),
        exists_fn=_has_si(key),
        **kw,
    )


def _frequency(key: str) -> BridgeSensorEntityDescription:
    return BridgeSensorEntityDescription(
        key=key,
        translation_key=key,
        device_class=SensorDeviceClass.FREQUENCY,
        native_unit_of_measurement=UnitOfFrequency.HERTZ,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=2,
        value_fn=_si(key),
        exists_fn=_has_si(key),
    )


def _energy(key: str, counter: str, direction: str) -> BridgeSensorEntityDescription:
    def value(data: SunnyIslandData) -> float:
        integrator = data.energy[counter]
        total = integrator.charged_kwh if direction == "in" else integrator.discharged_kwh
        return round(total, 3)

    def restore(runtime: Any, total: float) -> None:
        island: SunnyIslandRuntime = runtime
        integrator = island.data.energy[counter]
        if direction == "in":
            integrator.restore(total, None)
        else:
            integrator.restore(None, total)

    return BridgeSensorEntityDescription(
        key=key,
        translation_key=key,
        device_class=SensorDeviceClass.ENERGY,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        state_class=SensorStateClass.TOTAL_INCREASING,
        suggested_display_precision=2,
        value_fn=value,
        restore_fn=restore,
    )


def _decision(attribute: str) -> Callable[[Any], Any]:
    def value(data: SunnyIslandData) -> Any:
        decision = data.decision
        if decision is None:
            return None
        result = getattr(decision, attribute)
        return result.value if hasattr(result, "value") else result

    return value


def _has_decision(data: SunnyIslandData) -> bool:
    return data.decision is not None


def _sent(
    key: str, attribute: str, device_class: SensorDeviceClass, unit: str
) -> BridgeSensorEntityDescription:
    return BridgeSensorEntityDescription(
        key=key,
        translation_key=key,
        device_class=device_class,
        native_unit_of_measurement=unit,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=_decision(attribute),
        exists_fn=_has_decision,
    )


def _missing(data: SunnyIslandData) -> list[str] | None:
    decision = data.decision
    if decision is None or decision.soc is None:
        return None  # before the first reading everything is missing: nothing to tell yet
    return sorted(decision.missing)


def _missing_state(data: SunnyIslandData) -> str | None:
    """What protection the source cannot give, as one line ("none" when complete).

    A set does not fit an enum; the list is also an attribute for automations.
    """
    missing = _missing(data)
    if missing is None:
        return None
    return ", ".join(missing) if missing else "none"


def _missing_attributes(data: SunnyIslandData) -> dict[str, Any] | None:
    missing = _missing(data)
    return None if missing is None else {"missing": missing}


SI_SENSORS: tuple[BridgeSensorEntityDescription, ...] = (
    *_phase("external_power", "external_power"),
    *_phase("inverter_power", "inverter_power"),
    *(_output_power(line) for line in (1, 2, 3)),
    _power("load_power", "load_power"),
    *(
        _voltage(
            f"output_voltage_l{line}",
            "output_voltage",
            translation_placeholders={"line": f"L{line}"},
            entity_registry_enabled_default=line == 1,
        )
        for line in (1, 2, 3)
    ),
    _frequency("output_frequency"),
    *(
        _voltage(
            f"external_voltage_l{line}",
            "external_voltage",
            translation_placeholders={"line": f"L{line}"},
            entity_registry_enabled_default=line == 1,
        )
        for line in (1, 2, 3)
    ),
    _frequency("external_frequency"),
    _voltage("battery_voltage", "si_battery_voltage"),
    BridgeSensorEntityDescription(
        key="battery_current",
        translation_key="si_battery_current",
        device_class=SensorDeviceClass.CURRENT,
        native_unit_of_measurement=UnitOfElectricCurrent.AMPERE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=_si("battery_current"),
        exists_fn=_has_si("battery_current"),
    ),
    BridgeSensorEntityDescription(
        key="battery_temperature",
        translation_key="si_battery_temperature",
        device_class=SensorDeviceClass.TEMPERATURE,
        native_unit_of_measurement=UnitOfTemperature.CELSIUS,
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=_si("battery_temperature"),
        exists_fn=_has_si("battery_temperature"),
    ),
    BridgeSensorEntityDescription(
        key="battery_soc",
        translation_key="si_battery_soc",
        device_class=SensorDeviceClass.BATTERY,
        native_unit_of_measurement=PERCENTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=_si("battery_soc"),
        exists_fn=_has_si("battery_soc"),
    ),
    BridgeSensorEntityDescription(
        key="operating_state",
        translation_key="operating_state",
        device_class=SensorDeviceClass.ENUM,
        options=[*OPERATING_STATES.values(), "unknown"],
        value_fn=lambda data: (
            None
            if data.si.get("operating_state") is None
            else OPERATING_STATES.get(int(data.si["operating_state"]), "unknown")
        ),
        exists_fn=_has_si("operating_state"),
    ),
    BridgeSensorEntityDescription(
        key="error_number",
        translation_key="error_number",
        entity_category=DIAG,
        value_fn=_si("error_number"),
        exists_fn=_has_si("error_number"),
    ),
    _energy("grid_import_energy", "grid", "in"),
    _energy("grid_export_energy", "grid", "out"),
    _energy("battery_charge_energy", "battery", "in"),
    _energy("battery_discharge_energy", "battery", "out"),
    _energy("load_energy", "load", "in"),
)

BMS_SENSORS: tuple[BridgeSensorEntityDescription, ...] = (
    BridgeSensorEntityDescription(
        key="bms_charge_state",
        translation_key="bms_charge_state",
        device_class=SensorDeviceClass.ENUM,
        options=[state.value for state in ChargeState],
        value_fn=_decision("state"),
        exists_fn=_has_decision,
    ),
    _sent(
        "charge_voltage_limit",
        "charge_voltage",
        SensorDeviceClass.VOLTAGE,
        UnitOfElectricPotential.VOLT,
    ),
    _sent(
        "charge_current_limit",
        "charge_current_limit",
        SensorDeviceClass.CURRENT,
        UnitOfElectricCurrent.AMPERE,
    ),
    _sent(
        "discharge_current_limit",
        "discharge_current_limit",
        SensorDeviceClass.CURRENT,
        UnitOfElectricCurrent.AMPERE,
    ),
    _sent(
        "discharge_voltage_limit",
        "discharge_voltage",
        SensorDeviceClass.VOLTAGE,
        UnitOfElectricPotential.VOLT,
    ),
    _sent("reported_soc", "soc", SensorDeviceClass.BATTERY, PERCENTAGE),
    BridgeSensorEntityDescription(
        key="charge_limited_by",
        translation_key="charge_limited_by",
        device_class=SensorDeviceClass.ENUM,
        options=[reason.value for reason in Reason],
        value_fn=_decision("limited_by_charge"),
        exists_fn=_has_decision,
    ),
    BridgeSensorEntityDescription(
        key="discharge_limited_by",
        translation_key="discharge_limited_by",
        device_class=SensorDeviceClass.ENUM,
        options=[reason.value for reason in Reason],
        value_fn=_decision("limited_by_discharge"),
        exists_fn=_has_decision,
    ),
    BridgeSensorEntityDescription(
        key="source_age",
        translation_key="source_age",
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.SECONDS,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        entity_category=DIAG,
        value_fn=lambda data: None if data.source_age is None else round(data.source_age),
        exists_fn=lambda data: True,
    ),
    BridgeSensorEntityDescription(
        key="missing_battery_data",
        translation_key="missing_battery_data",
        entity_category=DIAG,
        value_fn=_missing_state,
        attributes_fn=_missing_attributes,
        exists_fn=lambda data: True,
    ),
    BridgeSensorEntityDescription(
        key="first_frame_delay",
        translation_key="first_frame_delay",
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.SECONDS,
        suggested_display_precision=2,
        entity_category=DIAG,
        entity_registry_enabled_default=False,
        value_fn=lambda data: data.first_frame_delay,
        exists_fn=lambda data: data.first_frame_delay is not None,
    ),
)

SENSORS = SI_SENSORS + BMS_SENSORS


def _si_flag(key: str) -> Callable[[Any], bool | None]:
    def is_on(data: SunnyIslandData) -> bool | None:
        value = data.si.get(key)
        return None if value is None else bool(value)

    return is_on


BINARY_SENSORS: tuple[BridgeBinarySensorEntityDescription, ...] = (
    BridgeBinarySensorEntityDescription(
        key="grid_connected",
        translation_key="grid_connected",
        device_class=BinarySensorDeviceClass.POWER,
        is_on_fn=lambda data: data.grid_connected,
        exists_fn=_has_si("grid_connected"),
    ),
    BridgeBinarySensorEntityDescription(
        key="grid_voltage_ok",
        translation_key="grid_voltage_ok",
        is_on_fn=_si_flag("grid_voltage_ok"),
        exists_fn=_has_si("grid_voltage_ok"),
    ),
    BridgeBinarySensorEntityDescription(
        key="generator_request",
        translation_key="generator_request",
        is_on_fn=_si_flag("generator_request"),
        exists_fn=_has_si("generator_request"),
    ),
    BridgeBinarySensorEntityDescription(
        key="running",
        translation_key="running",
        device_class=BinarySensorDeviceClass.RUNNING,
        is_on_fn=_si_flag("running"),
        exists_fn=_has_si("running"),
    ),
    BridgeBinarySensorEntityDescription(
        key="bms_link",
        translation_key="bms_link",
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        entity_category=DIAG,
        is_on_fn=lambda data: data.bms_sending,
        available_fn=lambda data: True,
    ),
    BridgeBinarySensorEntityDescription(
        key="bms_safe_mode",
        translation_key="bms_safe_mode",
        device_class=BinarySensorDeviceClass.PROBLEM,
        # On while the frames are the safe ones: the update failed or its guard tripped.
        is_on_fn=lambda data: data.update_failing or data.guard_tripped,
        available_fn=lambda data: True,
    ),
    BridgeBinarySensorEntityDescription(
        key="current_sign_mismatch",
        translation_key="current_sign_mismatch",
        device_class=BinarySensorDeviceClass.PROBLEM,
        is_on_fn=lambda data: (
            None if data.decision is None else data.decision.current_sign_mismatch
        ),
        available_fn=lambda data: True,
    ),
    BridgeBinarySensorEntityDescription(
        key="source_stale",
        translation_key="source_stale",
        device_class=BinarySensorDeviceClass.PROBLEM,
        is_on_fn=lambda data: None if data.decision is None else data.decision.stale,
        available_fn=lambda data: True,
    ),
)


def _mode(data: SunnyIslandData) -> str:
    return data.mode.value


async def _select_mode(runtime: Any, option: str) -> None:
    island: SunnyIslandRuntime = runtime
    await island.async_set_mode(ChargeMode(option))


SELECTS: tuple[BridgeSelectEntityDescription, ...] = (
    BridgeSelectEntityDescription(
        key="charge_mode",
        translation_key="charge_mode",
        options=[mode.value for mode in ChargeMode],
        value_fn=_mode,
        select_fn=_select_mode,
    ),
)

# (unit, device class, step, enabled by default) per editable charge setting.
_V = (UnitOfElectricPotential.VOLT, NumberDeviceClass.VOLTAGE)
_A = (UnitOfElectricCurrent.AMPERE, NumberDeviceClass.CURRENT)
_S = (UnitOfTime.SECONDS, NumberDeviceClass.DURATION)
SETTING_ENTITIES: dict[str, tuple[tuple[str | None, NumberDeviceClass | None], float, bool]] = {
    "cell_charge_cutoff": (_V, 0.005, True),
    "cell_absorption_voltage": (_V, 0.005, True),
    "cell_absorption_trigger": (_V, 0.005, False),
    "cell_float_voltage": (_V, 0.005, True),
    "cell_rebulk_voltage": (_V, 0.005, True),
    "cell_discharge_cutoff": (_V, 0.005, True),
    "absorption_margin": (_V, 0.005, False),
    "bulk_current": (_A, 1.0, True),
    "max_discharge_current": (_A, 1.0, True),
    "tail_current": (_A, 0.5, True),
    "tail_hold": (_S, 1.0, False),
    "max_absorption_time": (_S, 60.0, True),
    "rebulk_delay": (_S, 1.0, False),
    "rebulk_soc": ((PERCENTAGE, None), 1.0, True),
    "full_charge_interval_days": ((UnitOfTime.DAYS, None), 1.0, True),
    "recovery_hold": (_S, 1.0, False),
    "ramp_rate": (("A/s", None), 0.5, False),
    "stale_after": (_S, 1.0, True),
    "stale_alarm_after": (_S, 1.0, False),
    "alarm_delay": (_S, 1.0, False),
    "cell_imbalance_warning": (_V, 0.005, False),
    "absorption_spread": (_V, 0.001, False),
    "spread_hold": (_S, 60.0, False),
    "rebulk_spread": (_V, 0.005, False),
    "cell_absorption_voltage_without_cells": (_V, 0.005, True),
    "undervoltage_hysteresis": (_V, 0.01, False),
    "cvl_ramp_rate": (("mV/s", None), 0.5, False),
}


def _setting_value(name: str) -> Callable[[Any], float | None]:
    def value(data: SunnyIslandData) -> float | None:
        return float(getattr(data.settings, name))

    return value


def _setting_bounds(name: str) -> Callable[[Any], tuple[float, float]]:
    def bounds(data: SunnyIslandData) -> tuple[float, float]:
        return data.settings.bounds(name)

    return bounds


def _setting_writer(name: str) -> Callable[[Any, float], Any]:
    async def write(runtime: Any, value: float) -> None:
        island: SunnyIslandRuntime = runtime
        await island.async_set_setting(name, value)

    return write


NUMBERS: tuple[BridgeNumberEntityDescription, ...] = tuple(
    BridgeNumberEntityDescription(
        key=name,
        translation_key=name,
        native_unit_of_measurement=unit,
        device_class=device_class,
        native_step=step,
        mode=NumberMode.BOX,
        entity_category=EntityCategory.CONFIG,
        entity_registry_enabled_default=enabled,
        available_fn=lambda data: True,
        value_fn=_setting_value(name),
        bounds_fn=_setting_bounds(name),
        set_fn=_setting_writer(name),
    )
    for name, ((unit, device_class), step, enabled) in SETTING_ENTITIES.items()
)


async def _full_charge(runtime: Any) -> None:
    island: SunnyIslandRuntime = runtime
    island.request_full_charge()


BUTTONS: tuple[BridgeButtonEntityDescription, ...] = (
    BridgeButtonEntityDescription(
        key="full_charge",
        translation_key="full_charge",
        available_fn=lambda data: True,
        press_fn=_full_charge,
    ),
)
