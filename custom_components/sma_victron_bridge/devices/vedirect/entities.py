"""Entity descriptions for VE.Direct devices, one per text-protocol label or HEX setting.

Which entities a device gets follows from its family (MPPT, battery monitor, inverter, charger)
and from the labels it actually sends: a description only becomes an entity once its label has
appeared. Energy counters carry the state classes the energy dashboard needs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from homeassistant.components.binary_sensor import BinarySensorDeviceClass
from homeassistant.components.number import NumberDeviceClass, NumberMode
from homeassistant.components.sensor import SensorDeviceClass, SensorStateClass
from homeassistant.const import (
    PERCENTAGE,
    EntityCategory,
    UnitOfApparentPower,
    UnitOfElectricCurrent,
    UnitOfElectricPotential,
    UnitOfEnergy,
    UnitOfPower,
    UnitOfTemperature,
    UnitOfTime,
)

from ...binary_sensor import BridgeBinarySensorEntityDescription
from ...control.forwarding import ForwardState
from ...number import BridgeNumberEntityDescription
from ...protocols.vedirect_fields import (
    ALARM_REASONS,
    CHARGE_STATES,
    DEVICE_MODES,
    ERRORS,
    MPPT_STATES,
    OFF_REASONS,
    DeviceFamily,
    bit_names,
    enum_option,
)
from ...select import BridgeSelectEntityDescription
from ...sensor import BridgeSensorEntityDescription
from .registers import (
    LOAD_OUTPUT_OPTIONS,
    REG_ABSORPTION_VOLTAGE,
    REG_BATTERY_MAX_CURRENT,
    REG_FLOAT_VOLTAGE,
    REG_LOAD_OUTPUT_CONTROL,
)

if TYPE_CHECKING:
    from .runtime import VeDirectData

MPPT = frozenset({DeviceFamily.MPPT})
MONITOR = frozenset({DeviceFamily.BATTERY_MONITOR})
INVERTER = frozenset({DeviceFamily.INVERTER})
CHARGER = frozenset({DeviceFamily.CHARGER})
ANY_FAMILY = frozenset(DeviceFamily)

NONE_OPTION = "none"


def _has(label: str, families: frozenset[DeviceFamily]) -> Callable[[Any], bool]:
    def exists(data: VeDirectData) -> bool:
        return data.family in families and label in data.values

    return exists


def _value(label: str) -> Callable[[Any], Any]:
    def value(data: VeDirectData) -> Any:
        return data.values.get(label)

    return value


def _enum(label: str, table: Mapping[int, str]) -> Callable[[Any], str | None]:
    def value(data: VeDirectData) -> str | None:
        raw = data.values.get(label)
        return None if raw is None else enum_option(table, int(raw))

    return value


def _bits(label: str, table: Mapping[int, str]) -> Callable[[Any], str | None]:
    """The first active bit's name, or ``none`` — the full list goes into attributes."""

    def value(data: VeDirectData) -> str | None:
        raw = data.values.get(label)
        if raw is None:
            return None
        names = bit_names(table, int(raw))
        return names[0] if names else NONE_OPTION

    return value


def _bits_attributes(label: str, table: Mapping[int, str]) -> Callable[[Any], dict[str, Any]]:
    def attributes(data: VeDirectData) -> dict[str, Any]:
        raw = data.values.get(label)
        return {"active": [] if raw is None else bit_names(table, int(raw))}

    return attributes


def _options(table: Mapping[int, str], *extra: str) -> list[str]:
    return sorted({*table.values(), "unknown", *extra})


def _sensor(
    label: str,
    key: str,
    families: frozenset[DeviceFamily] = ANY_FAMILY,
    **kwargs: Any,
) -> BridgeSensorEntityDescription:
    return BridgeSensorEntityDescription(
        key=key,
        translation_key=key,
        exists_fn=_has(label, families),
        value_fn=kwargs.pop("value_fn", _value(label)),
        **kwargs,
    )


def _voltage(
    label: str, key: str, families: frozenset[DeviceFamily] = ANY_FAMILY, **kw: Any
) -> BridgeSensorEntityDescription:
    return _sensor(
        label,
        key,
        families,
        device_class=SensorDeviceClass.VOLTAGE,
        native_unit_of_measurement=UnitOfElectricPotential.VOLT,
        suggested_display_precision=2,
        **{"state_class": SensorStateClass.MEASUREMENT, **kw},
    )


def _current(
    label: str, key: str, families: frozenset[DeviceFamily] = ANY_FAMILY, **kw: Any
) -> BridgeSensorEntityDescription:
    return _sensor(
        label,
        key,
        families,
        device_class=SensorDeviceClass.CURRENT,
        native_unit_of_measurement=UnitOfElectricCurrent.AMPERE,
        suggested_display_precision=2,
        **{"state_class": SensorStateClass.MEASUREMENT, **kw},
    )


def _power(
    label: str, key: str, families: frozenset[DeviceFamily] = ANY_FAMILY, **kw: Any
) -> BridgeSensorEntityDescription:
    return _sensor(
        label,
        key,
        families,
        device_class=SensorDeviceClass.POWER,
        native_unit_of_measurement=UnitOfPower.WATT,
        **{"state_class": SensorStateClass.MEASUREMENT, **kw},
    )


def _energy(
    label: str, key: str, families: frozenset[DeviceFamily], **kw: Any
) -> BridgeSensorEntityDescription:
    kw.setdefault("state_class", SensorStateClass.TOTAL_INCREASING)
    return _sensor(
        label,
        key,
        families,
        device_class=SensorDeviceClass.ENERGY,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        suggested_display_precision=2,
        **kw,
    )


def _ah(label: str, key: str, **kw: Any) -> BridgeSensorEntityDescription:
    return _sensor(
        label,
        key,
        MONITOR,
        native_unit_of_measurement="Ah",
        suggested_display_precision=1,
        **kw,
    )


def _count(label: str, key: str, **kw: Any) -> BridgeSensorEntityDescription:
    return _sensor(
        label,
        key,
        MONITOR,
        state_class=SensorStateClass.TOTAL_INCREASING,
        entity_category=EntityCategory.DIAGNOSTIC,
        **kw,
    )


def _enum_sensor(
    label: str, key: str, table: Mapping[int, str], families: frozenset[DeviceFamily], **kw: Any
) -> BridgeSensorEntityDescription:
    return _sensor(
        label,
        key,
        families,
        device_class=SensorDeviceClass.ENUM,
        options=_options(table),
        value_fn=_enum(label, table),
        **kw,
    )


def _bits_sensor(
    label: str, key: str, table: Mapping[int, str], families: frozenset[DeviceFamily], **kw: Any
) -> BridgeSensorEntityDescription:
    return _sensor(
        label,
        key,
        families,
        device_class=SensorDeviceClass.ENUM,
        options=_options(table, NONE_OPTION),
        value_fn=_bits(label, table),
        attributes_fn=_bits_attributes(label, table),
        **kw,
    )


DIAG = EntityCategory.DIAGNOSTIC

TEXT_SENSORS: tuple[BridgeSensorEntityDescription, ...] = (
    # Battery side, every family.
    _voltage("V", "battery_voltage"),
    _voltage("V2", "battery_voltage_2", CHARGER),
    _voltage("V3", "battery_voltage_3", CHARGER),
    _current("I", "battery_current"),
    _current("I2", "battery_current_2", CHARGER),
    _current("I3", "battery_current_3", CHARGER),
    _power("P", "battery_power", MONITOR),
    _voltage("VS", "auxiliary_voltage", MONITOR),
    _voltage("VM", "midpoint_voltage", MONITOR),
    _sensor(
        "DM",
        "midpoint_deviation",
        MONITOR,
        native_unit_of_measurement=PERCENTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
    ),
    _sensor(
        "SOC",
        "state_of_charge",
        MONITOR,
        device_class=SensorDeviceClass.BATTERY,
        native_unit_of_measurement=PERCENTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
    ),
    _ah("CE", "consumed_amp_hours", state_class=SensorStateClass.MEASUREMENT),
    _sensor(
        "TTG",
        "time_to_go",
        MONITOR,
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.MINUTES,
        state_class=SensorStateClass.MEASUREMENT,
    ),
    _sensor(
        "T",
        "battery_temperature",
        ANY_FAMILY,
        device_class=SensorDeviceClass.TEMPERATURE,
        native_unit_of_measurement=UnitOfTemperature.CELSIUS,
        state_class=SensorStateClass.MEASUREMENT,
    ),
    _bits_sensor("AR", "alarm_reason", ALARM_REASONS, ANY_FAMILY),
    _bits_sensor("WARN", "warning_reason", ALARM_REASONS, ANY_FAMILY),
    # Solar charger.
    _voltage("VPV", "pv_voltage", MPPT),
    _power("PPV", "pv_power", MPPT),
    _current("IL", "load_current", MPPT),
    _enum_sensor("CS", "charge_state", CHARGE_STATES, ANY_FAMILY),
    _enum_sensor("MPPT", "tracker_mode", MPPT_STATES, MPPT),
    _enum_sensor("ERR", "charger_error", ERRORS, ANY_FAMILY),
    _bits_sensor("OR", "off_reason", OFF_REASONS, ANY_FAMILY),
    _energy("H19", "yield_total", MPPT),
    _energy("H20", "yield_today", MPPT),
    _power("H21", "max_power_today", MPPT, state_class=None),
    _energy("H22", "yield_yesterday", MPPT, state_class=None),
    _power("H23", "max_power_yesterday", MPPT, state_class=None),
    _sensor("HSDS", "day_sequence_number", MPPT, entity_category=DIAG),
    # Battery monitor history.
    _ah("H1", "deepest_discharge", entity_category=DIAG),
    _ah("H2", "last_discharge", entity_category=DIAG),
    _ah("H3", "average_discharge", entity_category=DIAG),
    _count("H4", "charge_cycles"),
    _count("H5", "full_discharges"),
    _ah("H6", "cumulative_amp_hours", entity_category=DIAG),
    _voltage("H7", "minimum_voltage", MONITOR, entity_category=DIAG, state_class=None),
    _voltage("H8", "maximum_voltage", MONITOR, entity_category=DIAG, state_class=None),
    _sensor(
        "H9",
        "time_since_full_charge",
        MONITOR,
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.SECONDS,
        entity_category=DIAG,
    ),
    _count("H10", "automatic_syncs"),
    _count("H11", "low_voltage_alarms"),
    _count("H12", "high_voltage_alarms"),
    _count("H13", "low_auxiliary_voltage_alarms"),
    _count("H14", "high_auxiliary_voltage_alarms"),
    _voltage("H15", "minimum_auxiliary_voltage", MONITOR, entity_category=DIAG, state_class=None),
    _voltage("H16", "maximum_auxiliary_voltage", MONITOR, entity_category=DIAG, state_class=None),
    _energy("H17", "discharged_energy", MONITOR),
    _energy("H18", "charged_energy", MONITOR),
    # Inverter.
    _sensor(
        "AC_OUT_V",
        "ac_output_voltage",
        INVERTER,
        device_class=SensorDeviceClass.VOLTAGE,
        native_unit_of_measurement=UnitOfElectricPotential.VOLT,
        state_class=SensorStateClass.MEASUREMENT,
    ),
    _current("AC_OUT_I", "ac_output_current", INVERTER),
    _sensor(
        "AC_OUT_S",
        "ac_output_apparent_power",
        INVERTER,
        device_class=SensorDeviceClass.APPARENT_POWER,
        native_unit_of_measurement=UnitOfApparentPower.VOLT_AMPERE,
        state_class=SensorStateClass.MEASUREMENT,
    ),
    _enum_sensor("MODE", "device_mode", DEVICE_MODES, INVERTER | CHARGER),
)


def _forward_exists(data: VeDirectData) -> bool:
    return data.forward is not None


FORWARD_SENSORS: tuple[BridgeSensorEntityDescription, ...] = (
    BridgeSensorEntityDescription(
        key="battery_sense_state",
        translation_key="battery_sense_state",
        device_class=SensorDeviceClass.ENUM,
        options=[state.value for state in ForwardState],
        exists_fn=_forward_exists,
        value_fn=lambda data: data.forward.state.value if data.forward else None,
        attributes_fn=lambda data: (
            {"source": data.forward.source_name, "age": data.forward.age} if data.forward else None
        ),
    ),
    BridgeSensorEntityDescription(
        key="battery_sense_voltage",
        translation_key="battery_sense_voltage",
        device_class=SensorDeviceClass.VOLTAGE,
        native_unit_of_measurement=UnitOfElectricPotential.VOLT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=2,
        exists_fn=_forward_exists,
        value_fn=lambda data: data.forward.voltage if data.forward else None,
    ),
    BridgeSensorEntityDescription(
        key="battery_sense_temperature",
        translation_key="battery_sense_temperature",
        device_class=SensorDeviceClass.TEMPERATURE,
        native_unit_of_measurement=UnitOfTemperature.CELSIUS,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        exists_fn=_forward_exists,
        value_fn=lambda data: data.forward.temperature if data.forward else None,
    ),
)

SENSORS = TEXT_SENSORS + FORWARD_SENSORS


def _on(label: str) -> Callable[[Any], bool | None]:
    def is_on(data: VeDirectData) -> bool | None:
        value = data.values.get(label)
        return None if value is None else bool(value)

    return is_on


BINARY_SENSORS: tuple[BridgeBinarySensorEntityDescription, ...] = (
    BridgeBinarySensorEntityDescription(
        key="alarm",
        translation_key="alarm",
        device_class=BinarySensorDeviceClass.PROBLEM,
        exists_fn=_has("Alarm", ANY_FAMILY),
        is_on_fn=_on("Alarm"),
    ),
    BridgeBinarySensorEntityDescription(
        key="relay",
        translation_key="relay",
        exists_fn=_has("Relay", ANY_FAMILY),
        is_on_fn=_on("Relay"),
    ),
    BridgeBinarySensorEntityDescription(
        key="load_output",
        translation_key="load_output",
        device_class=BinarySensorDeviceClass.POWER,
        exists_fn=_has("LOAD", ANY_FAMILY),
        is_on_fn=_on("LOAD"),
    ),
)


def _setting(register: int) -> Callable[[Any], float | None]:
    def value(data: VeDirectData) -> float | None:
        raw = data.settings.get(register)
        return None if raw is None else float(raw)

    return value


def _has_setting(register: int) -> Callable[[Any], bool]:
    def exists(data: VeDirectData) -> bool:
        return data.family is DeviceFamily.MPPT and data.settings.get(register) is not None

    return exists


def _voltage_bounds(data: VeDirectData) -> tuple[float, float]:
    nominal = data.nominal_voltage
    return (nominal, round(nominal * 1.3, 2))


def _current_bounds(data: VeDirectData) -> tuple[float, float]:
    return (0.0, data.rated_current)


if TYPE_CHECKING:
    from .runtime import VeDirectRuntime


async def _write(runtime: Any, register: int, value: float) -> None:
    vedirect: VeDirectRuntime = runtime
    await vedirect.async_write_setting(register, value)


def _writer(register: int) -> Callable[[Any, float], Any]:
    async def write(runtime: Any, value: float) -> None:
        await _write(runtime, register, value)

    return write


NUMBERS: tuple[BridgeNumberEntityDescription, ...] = (
    BridgeNumberEntityDescription(
        key="battery_max_current",
        translation_key="battery_max_current",
        device_class=NumberDeviceClass.CURRENT,
        native_unit_of_measurement=UnitOfElectricCurrent.AMPERE,
        native_step=0.1,
        mode=NumberMode.BOX,
        entity_category=EntityCategory.CONFIG,
        exists_fn=_has_setting(REG_BATTERY_MAX_CURRENT),
        value_fn=_setting(REG_BATTERY_MAX_CURRENT),
        bounds_fn=_current_bounds,
        set_fn=_writer(REG_BATTERY_MAX_CURRENT),
    ),
    BridgeNumberEntityDescription(
        key="absorption_voltage",
        translation_key="absorption_voltage",
        device_class=NumberDeviceClass.VOLTAGE,
        native_unit_of_measurement=UnitOfElectricPotential.VOLT,
        native_step=0.01,
        mode=NumberMode.BOX,
        entity_category=EntityCategory.CONFIG,
        exists_fn=_has_setting(REG_ABSORPTION_VOLTAGE),
        value_fn=_setting(REG_ABSORPTION_VOLTAGE),
        bounds_fn=_voltage_bounds,
        set_fn=_writer(REG_ABSORPTION_VOLTAGE),
    ),
    BridgeNumberEntityDescription(
        key="float_voltage",
        translation_key="float_voltage",
        device_class=NumberDeviceClass.VOLTAGE,
        native_unit_of_measurement=UnitOfElectricPotential.VOLT,
        native_step=0.01,
        mode=NumberMode.BOX,
        entity_category=EntityCategory.CONFIG,
        exists_fn=_has_setting(REG_FLOAT_VOLTAGE),
        value_fn=_setting(REG_FLOAT_VOLTAGE),
        bounds_fn=_voltage_bounds,
        set_fn=_writer(REG_FLOAT_VOLTAGE),
    ),
)


def _load_option(data: VeDirectData) -> str | None:
    raw = data.settings.get(REG_LOAD_OUTPUT_CONTROL)
    return None if raw is None else LOAD_OUTPUT_OPTIONS.get(int(raw), "unknown")


async def _select_load(runtime: Any, option: str) -> None:
    vedirect: VeDirectRuntime = runtime
    await vedirect.async_select_load_output(option)


SELECTS: tuple[BridgeSelectEntityDescription, ...] = (
    BridgeSelectEntityDescription(
        key="load_output_control",
        translation_key="load_output_control",
        options=[*LOAD_OUTPUT_OPTIONS.values()],
        entity_category=EntityCategory.CONFIG,
        exists_fn=_has_setting(REG_LOAD_OUTPUT_CONTROL),
        value_fn=_load_option,
        select_fn=_select_load,
    ),
)
