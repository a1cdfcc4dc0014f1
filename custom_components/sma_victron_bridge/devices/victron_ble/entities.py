"""Entity descriptions for Victron Bluetooth devices, per Instant Readout record type.

A description exists for a device when its record layout carries the value (and, for the
battery monitor's auxiliary input, when the input is set to measure it). A value the device
reports as "not available" shows as unknown. Names and enum options are shared with the
VE.Direct kind where the meaning is the same (charge state, alarm and off reasons, the load
output mode), so a SmartSolar reads alike whichever way it is connected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from homeassistant.components.binary_sensor import BinarySensorDeviceClass
from homeassistant.components.sensor import SensorDeviceClass, SensorStateClass
from homeassistant.const import (
    PERCENTAGE,
    SIGNAL_STRENGTH_DECIBELS_MILLIWATT,
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
from ...protocols import vedirect_fields
from ...protocols.victron_ble import (
    AC_IN_STATES,
    ALARM_NOTIFICATIONS,
    ALARM_REASONS,
    BALANCER_STATUSES,
    CHARGE_STATES,
    CHARGER_ERRORS,
    METER_TYPES,
    RECORD_AC_CHARGER,
    RECORD_BATTERY_MONITOR,
    RECORD_DC_ENERGY_METER,
    RECORD_DCDC_CONVERTER,
    RECORD_INVERTER,
    RECORD_INVERTER_RS,
    RECORD_LYNX_SMART_BMS,
    RECORD_MULTI_RS,
    RECORD_ORION_XS,
    RECORD_SMART_BATTERY_PROTECT,
    RECORD_SMART_LITHIUM,
    RECORD_SOLAR_CHARGER,
    RECORD_VE_BUS,
    VEBUS_STATES,
    flag_names,
)
from ...protocols.victron_gatt import CAPABILITY_LOAD_OUTPUT
from ...select import BridgeSelectEntityDescription
from ...sensor import BridgeSensorEntityDescription
from ..vedirect.registers import LOAD_OUTPUT_OPTIONS

if TYPE_CHECKING:
    from .runtime import VictronBleData, VictronBleRuntime

UNKNOWN = "unknown"
NONE_OPTION = "none"
DIAG = EntityCategory.DIAGNOSTIC

# Aux-input modes of the battery monitor and DC energy meter.
AUX_STARTER = 0
AUX_MIDPOINT = 1
AUX_TEMPERATURE = 2

type Layouts = frozenset[int]


def _layouts(*record_types: int) -> Layouts:
    return frozenset(record_types)


SOLAR = _layouts(RECORD_SOLAR_CHARGER)
MONITOR = _layouts(RECORD_BATTERY_MONITOR)
DC_METER = _layouts(RECORD_DC_ENERGY_METER)
SHUNTS = MONITOR | DC_METER
DCDC = _layouts(RECORD_DCDC_CONVERTER, RECORD_ORION_XS)
YIELDING = _layouts(RECORD_SOLAR_CHARGER, RECORD_INVERTER_RS, RECORD_MULTI_RS)
# Smart Battery Sense: battery-monitor layout, but only voltage and temperature are measured.
SENSE_MEASURES = frozenset({"voltage", "temperature"})


def _has(key: str, layouts: Layouts, aux_mode: int | None = None) -> Callable[[Any], bool]:
    def exists(data: VictronBleData) -> bool:
        if data.layout not in layouts or key not in data.values:
            return False
        if data.is_battery_sense and key not in SENSE_MEASURES:
            return False
        return aux_mode is None or data.values.get("aux_mode") == aux_mode

    return exists


def _value(key: str) -> Callable[[Any], Any]:
    def value(data: VictronBleData) -> Any:
        return data.values.get(key)

    return value


def _options(table: Mapping[int, str], *extra: str) -> list[str]:
    return sorted({*table.values(), UNKNOWN, *extra})


def _enum(key: str, table: Mapping[int, str]) -> Callable[[Any], str | None]:
    def value(data: VictronBleData) -> str | None:
        raw = data.values.get(key)
        return None if raw is None else table.get(int(raw), UNKNOWN)

    return value


def _bits(key: str, table: Mapping[int, str]) -> Callable[[Any], str | None]:
    """The lowest active bit's name, ``none`` when no bit is set; all of them in attributes."""

    def value(data: VictronBleData) -> str | None:
        raw = data.values.get(key)
        if raw is None:
            return None
        names = flag_names(int(raw), table)
        return names[0] if names else NONE_OPTION

    return value


def _bits_attributes(key: str, table: Mapping[int, str]) -> Callable[[Any], dict[str, Any]]:
    def attributes(data: VictronBleData) -> dict[str, Any]:
        raw = data.values.get(key)
        return {"active": [] if raw is None else list(flag_names(int(raw), table))}

    return attributes


def _sensor(
    key: str, translation_key: str, layouts: Layouts, **kw: Any
) -> BridgeSensorEntityDescription:
    value_key = kw.pop("value_key", key)
    return BridgeSensorEntityDescription(
        key=key,
        translation_key=translation_key,
        exists_fn=kw.pop("exists_fn", _has(value_key, layouts, kw.pop("aux_mode", None))),
        value_fn=kw.pop("value_fn", _value(value_key)),
        **kw,
    )


class Measure(NamedTuple):
    """How a measured value is shown: device class, unit and display precision."""

    device_class: SensorDeviceClass
    unit: str
    precision: int


VOLTS = Measure(SensorDeviceClass.VOLTAGE, UnitOfElectricPotential.VOLT, 2)
AMPS = Measure(SensorDeviceClass.CURRENT, UnitOfElectricCurrent.AMPERE, 1)
MILLIAMP_AMPS = Measure(SensorDeviceClass.CURRENT, UnitOfElectricCurrent.AMPERE, 2)
WATTS = Measure(SensorDeviceClass.POWER, UnitOfPower.WATT, 0)
VOLT_AMPS = Measure(SensorDeviceClass.APPARENT_POWER, UnitOfApparentPower.VOLT_AMPERE, 0)
CELSIUS = Measure(SensorDeviceClass.TEMPERATURE, UnitOfTemperature.CELSIUS, 1)
PERCENT = Measure(SensorDeviceClass.BATTERY, PERCENTAGE, 1)
KWH = Measure(SensorDeviceClass.ENERGY, UnitOfEnergy.KILO_WATT_HOUR, 2)
SECONDS = Measure(SensorDeviceClass.DURATION, UnitOfTime.SECONDS, 0)


def _measure(
    key: str, translation_key: str, layouts: Layouts, measure: Measure, **kw: Any
) -> BridgeSensorEntityDescription:
    kw.setdefault("state_class", SensorStateClass.MEASUREMENT)
    return _sensor(
        key,
        translation_key,
        layouts,
        device_class=measure.device_class,
        native_unit_of_measurement=measure.unit,
        suggested_display_precision=measure.precision,
        **kw,
    )


def _voltage(key: str, tkey: str, layouts: Layouts, **kw: Any) -> BridgeSensorEntityDescription:
    return _measure(key, tkey, layouts, VOLTS, **kw)


def _current(key: str, tkey: str, layouts: Layouts, **kw: Any) -> BridgeSensorEntityDescription:
    return _measure(key, tkey, layouts, AMPS, **kw)


def _power(key: str, tkey: str, layouts: Layouts, **kw: Any) -> BridgeSensorEntityDescription:
    return _measure(key, tkey, layouts, WATTS, **kw)


def _temperature(key: str, tkey: str, layouts: Layouts, **kw: Any) -> BridgeSensorEntityDescription:
    return _measure(key, tkey, layouts, CELSIUS, **kw)


def _soc(layouts: Layouts) -> BridgeSensorEntityDescription:
    return _measure("soc", "state_of_charge", layouts, PERCENT)


def _enum_sensor(
    key: str, tkey: str, table: Mapping[int, str], layouts: Layouts, **kw: Any
) -> BridgeSensorEntityDescription:
    return _sensor(
        key,
        tkey,
        layouts,
        device_class=SensorDeviceClass.ENUM,
        options=_options(table),
        value_fn=_enum(kw.get("value_key", key), table),
        **kw,
    )


def _bits_sensor(
    key: str, tkey: str, table: Mapping[int, str], layouts: Layouts, **kw: Any
) -> BridgeSensorEntityDescription:
    return _sensor(
        key,
        tkey,
        layouts,
        device_class=SensorDeviceClass.ENUM,
        options=_options(table, NONE_OPTION),
        value_fn=_bits(key, table),
        attributes_fn=_bits_attributes(key, table),
        **kw,
    )


def _raw(key: str, tkey: str, layouts: Layouts) -> BridgeSensorEntityDescription:
    """A code or bit field without a documented table: the number, as a diagnostic."""
    return _sensor(key, tkey, layouts, entity_category=DIAG)


# --- derived values ------------------------------------------------------------------------


def _battery_power(data: VictronBleData) -> float | None:
    """Voltage times current (+ = charging); the SmartShunt's own figure while GATT has one."""
    polled = data.gatt.get("power")
    if isinstance(polled, int | float):
        return float(polled)
    voltage = data.values.get("voltage")
    current = data.values.get("current")
    if voltage is None or current is None:
        return None
    return round(voltage * current, 1)


def _power_exists(layouts: Layouts) -> Callable[[Any], bool]:
    def exists(data: VictronBleData) -> bool:
        return (
            data.layout in layouts
            and not data.is_battery_sense
            and "voltage" in data.values
            and "current" in data.values
        )

    return exists


def _yield_total(data: VictronBleData) -> float | None:
    return None if data.yield_total is None else round(data.yield_total / 1000.0, 3)


def _restore_yield_total(runtime: Any, kwh: float) -> None:
    victron: VictronBleRuntime = runtime
    victron.restore_yield_total(kwh)


def _device_state(layouts: Layouts) -> BridgeSensorEntityDescription:
    return _enum_sensor("device_state", "device_state", VEBUS_STATES, layouts)


def _charge_state(layouts: Layouts) -> BridgeSensorEntityDescription:
    return _enum_sensor("charge_state", "charge_state", CHARGE_STATES, layouts)


def _device_error(layouts: Layouts, key: str = "charger_error") -> BridgeSensorEntityDescription:
    return _enum_sensor(key, "device_error", CHARGER_ERRORS, layouts)


def _alarm_reason(layouts: Layouts) -> BridgeSensorEntityDescription:
    return _bits_sensor("alarm", "alarm_reason", ALARM_REASONS, layouts)


def _off_reason(layouts: Layouts) -> BridgeSensorEntityDescription:
    # The same bits as VE.Direct's OR field: its names keep one translation for both kinds.
    return _bits_sensor("off_reason", "off_reason", vedirect_fields.OFF_REASONS, layouts)


# --- GATT-only values ----------------------------------------------------------------------


def _gatt_has(key: str) -> Callable[[Any], bool]:
    def exists(data: VictronBleData) -> bool:
        return data.gatt_state is not None and key in data.gatt

    return exists


def _gatt_value(key: str) -> Callable[[Any], Any]:
    def value(data: VictronBleData) -> Any:
        return data.gatt.get(key)

    return value


def _gatt_link_exists(data: VictronBleData) -> bool:
    return data.gatt_state is not None


def _gatt_link_state(data: VictronBleData) -> str | None:
    return None if data.gatt_state is None else data.gatt_state.value


GATT_LINK_STATES = ("connecting", "connected", "disconnected", "not_paired", "no_adapter")


def _gatt_sensor(key: str, tkey: str, measure: Measure, **kw: Any) -> BridgeSensorEntityDescription:
    kw.setdefault("state_class", SensorStateClass.MEASUREMENT)
    value_key = kw.pop("value_key", key)
    return BridgeSensorEntityDescription(
        key=key,
        translation_key=tkey,
        device_class=measure.device_class,
        native_unit_of_measurement=measure.unit,
        suggested_display_precision=measure.precision,
        exists_fn=_gatt_has(value_key),
        value_fn=_gatt_value(value_key),
        **kw,
    )


def _cells() -> Iterable[BridgeSensorEntityDescription]:
    for index in range(1, 9):
        yield _voltage(
            f"cell_voltage{index}",
            "cell_voltage",
            _layouts(RECORD_SMART_LITHIUM),
            translation_placeholders={"cell": str(index)},
        )


def _charger_outputs() -> Iterable[BridgeSensorEntityDescription]:
    for index in range(1, 4):
        placeholders = {"output": str(index)}
        yield _voltage(
            f"output_voltage{index}",
            "charger_output_voltage",
            _layouts(RECORD_AC_CHARGER),
            translation_placeholders=placeholders,
        )
        yield _current(
            f"output_current{index}",
            "charger_output_current",
            _layouts(RECORD_AC_CHARGER),
            translation_placeholders=placeholders,
        )


BATTERY_VOLTAGE_LAYOUTS = _layouts(
    RECORD_SOLAR_CHARGER,
    RECORD_INVERTER,
    RECORD_SMART_LITHIUM,
    RECORD_INVERTER_RS,
    RECORD_MULTI_RS,
    RECORD_VE_BUS,
)
BATTERY_CURRENT_LAYOUTS = _layouts(
    RECORD_SOLAR_CHARGER, RECORD_INVERTER_RS, RECORD_MULTI_RS, RECORD_VE_BUS
)
SHUNT_LIKE = _layouts(RECORD_BATTERY_MONITOR, RECORD_DC_ENERGY_METER, RECORD_LYNX_SMART_BMS)

SENSORS: tuple[BridgeSensorEntityDescription, ...] = (
    # States, errors and alarms.
    _charge_state(
        _layouts(RECORD_SOLAR_CHARGER, RECORD_DCDC_CONVERTER, RECORD_AC_CHARGER, RECORD_ORION_XS)
    ),
    _device_state(
        _layouts(
            RECORD_INVERTER,
            RECORD_INVERTER_RS,
            RECORD_SMART_BATTERY_PROTECT,
            RECORD_MULTI_RS,
            RECORD_VE_BUS,
        )
    ),
    _device_error(
        _layouts(
            RECORD_SOLAR_CHARGER,
            RECORD_DCDC_CONVERTER,
            RECORD_INVERTER_RS,
            RECORD_AC_CHARGER,
            RECORD_MULTI_RS,
            RECORD_ORION_XS,
        )
    ),
    _device_error(_layouts(RECORD_SMART_BATTERY_PROTECT), key="error_code"),
    _alarm_reason(
        _layouts(
            RECORD_BATTERY_MONITOR,
            RECORD_INVERTER,
            RECORD_SMART_BATTERY_PROTECT,
            RECORD_DC_ENERGY_METER,
        )
    ),
    _bits_sensor(
        "warning", "warning_reason", ALARM_REASONS, _layouts(RECORD_SMART_BATTERY_PROTECT)
    ),
    _off_reason(_layouts(RECORD_DCDC_CONVERTER, RECORD_SMART_BATTERY_PROTECT, RECORD_ORION_XS)),
    _enum_sensor(
        "alarm_level",
        "alarm_level",
        ALARM_NOTIFICATIONS,
        _layouts(RECORD_VE_BUS),
        value_key="alarm",
    ),
    _enum_sensor(
        "ac_in_state", "active_ac_input", AC_IN_STATES, _layouts(RECORD_VE_BUS, RECORD_MULTI_RS)
    ),
    _enum_sensor(
        "balancer_status", "balancer_status", BALANCER_STATUSES, _layouts(RECORD_SMART_LITHIUM)
    ),
    _enum_sensor("meter_type", "meter_type", METER_TYPES, DC_METER),
    _raw("error", "vebus_error", _layouts(RECORD_VE_BUS)),
    _raw("output_state", "output_state", _layouts(RECORD_SMART_BATTERY_PROTECT)),
    _sensor(
        "bms_error",
        "bms_error",
        _layouts(RECORD_LYNX_SMART_BMS),
        value_key="error",
        entity_category=DIAG,
    ),
    _raw("io_status", "io_status", _layouts(RECORD_LYNX_SMART_BMS)),
    _raw("warnings_alarms", "warnings_alarms", _layouts(RECORD_LYNX_SMART_BMS)),
    _raw("bms_flags", "bms_flags", _layouts(RECORD_SMART_LITHIUM)),
    _raw("error_flags", "error_flags", _layouts(RECORD_SMART_LITHIUM)),
    # Battery side.
    _voltage("battery_voltage", "battery_voltage", BATTERY_VOLTAGE_LAYOUTS),
    _current("battery_current", "battery_current", BATTERY_CURRENT_LAYOUTS),
    _voltage("voltage", "battery_voltage", MONITOR | _layouts(RECORD_LYNX_SMART_BMS)),
    _voltage("dc_voltage", "dc_voltage", DC_METER, value_key="voltage"),
    _measure(
        "current",
        "battery_current",
        MONITOR | _layouts(RECORD_LYNX_SMART_BMS),
        MILLIAMP_AMPS,
    ),
    _measure(
        "dc_current",
        "dc_current",
        DC_METER,
        MILLIAMP_AMPS,
        value_key="current",
    ),
    _power(
        "battery_power",
        "battery_power",
        MONITOR | _layouts(RECORD_LYNX_SMART_BMS),
        value_fn=_battery_power,
        exists_fn=_power_exists(MONITOR | _layouts(RECORD_LYNX_SMART_BMS)),
    ),
    _power(
        "dc_power", "dc_power", DC_METER, value_fn=_battery_power, exists_fn=_power_exists(DC_METER)
    ),
    _soc(MONITOR | _layouts(RECORD_LYNX_SMART_BMS, RECORD_VE_BUS)),
    _sensor(
        "consumed_ah",
        "consumed_amp_hours",
        MONITOR | _layouts(RECORD_LYNX_SMART_BMS),
        native_unit_of_measurement="Ah",
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
    ),
    _sensor(
        "time_to_go",
        "time_to_go",
        MONITOR | _layouts(RECORD_LYNX_SMART_BMS),
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.MINUTES,
        state_class=SensorStateClass.MEASUREMENT,
    ),
    _temperature("temperature", "battery_temperature", MONITOR, aux_mode=AUX_TEMPERATURE),
    _temperature(
        "dc_temperature",
        "temperature",
        DC_METER,
        aux_mode=AUX_TEMPERATURE,
        value_key="temperature",
    ),
    _voltage("starter_voltage", "auxiliary_voltage", SHUNTS, aux_mode=AUX_STARTER),
    _voltage("midpoint_voltage", "midpoint_voltage", MONITOR, aux_mode=AUX_MIDPOINT),
    _temperature(
        "battery_temperature",
        "battery_temperature",
        _layouts(RECORD_VE_BUS, RECORD_SMART_LITHIUM),
    ),
    _temperature(
        "lynx_temperature",
        "battery_temperature",
        _layouts(RECORD_LYNX_SMART_BMS),
        value_key="temperature",
    ),
    *_cells(),
    # Solar.
    _power("pv_power", "pv_power", YIELDING),
    _current("load_current", "load_current", SOLAR),
    _measure(
        "yield_today",
        "yield_today",
        YIELDING,
        KWH,
        state_class=SensorStateClass.TOTAL_INCREASING,
        value_fn=lambda data: (
            None if data.values.get("yield_today") is None else data.values["yield_today"] / 1000.0
        ),
    ),
    BridgeSensorEntityDescription(
        key="yield_total",
        translation_key="yield_total",
        device_class=SensorDeviceClass.ENERGY,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        state_class=SensorStateClass.TOTAL_INCREASING,
        suggested_display_precision=2,
        exists_fn=_has("yield_today", YIELDING),
        value_fn=_yield_total,
        restore_fn=_restore_yield_total,
    ),
    # DC/DC converters and the Smart BatteryProtect.
    _voltage(
        "input_voltage",
        "input_voltage",
        DCDC | _layouts(RECORD_SMART_BATTERY_PROTECT),
    ),
    _voltage(
        "output_voltage",
        "dc_output_voltage",
        DCDC | _layouts(RECORD_SMART_BATTERY_PROTECT),
    ),
    _current("input_current", "input_current", _layouts(RECORD_ORION_XS)),
    _current("output_current", "dc_output_current", _layouts(RECORD_ORION_XS)),
    # Inverters and inverter/chargers.
    _measure(
        "ac_apparent_power",
        "ac_output_apparent_power",
        _layouts(RECORD_INVERTER),
        VOLT_AMPS,
    ),
    _voltage("ac_voltage", "ac_output_voltage", _layouts(RECORD_INVERTER)),
    _current("ac_current", "ac_output_current", _layouts(RECORD_INVERTER)),
    _power("ac_in_power", "ac_input_power", _layouts(RECORD_VE_BUS, RECORD_MULTI_RS)),
    _power(
        "ac_out_power",
        "ac_output_power",
        _layouts(RECORD_VE_BUS, RECORD_MULTI_RS, RECORD_INVERTER_RS),
    ),
    # AC chargers.
    *_charger_outputs(),
    _temperature(
        "charger_temperature",
        "charger_temperature",
        _layouts(RECORD_AC_CHARGER),
        value_key="temperature",
    ),
    _current(
        "ac_input_current", "ac_input_current", _layouts(RECORD_AC_CHARGER), value_key="ac_current"
    ),
    # Radio.
    BridgeSensorEntityDescription(
        key="signal_strength",
        translation_key="signal_strength",
        device_class=SensorDeviceClass.SIGNAL_STRENGTH,
        native_unit_of_measurement=SIGNAL_STRENGTH_DECIBELS_MILLIWATT,
        state_class=SensorStateClass.MEASUREMENT,
        entity_category=DIAG,
        entity_registry_enabled_default=False,
        exists_fn=lambda data: data.rssi is not None,
        value_fn=lambda data: data.rssi,
    ),
    # GATT link (SmartSolar registers; the SmartShunt's values merge into the ones above).
    BridgeSensorEntityDescription(
        key="gatt_link",
        translation_key="gatt_link",
        device_class=SensorDeviceClass.ENUM,
        options=list(GATT_LINK_STATES),
        entity_category=DIAG,
        exists_fn=_gatt_link_exists,
        value_fn=_gatt_link_state,
    ),
    _gatt_sensor("pv_voltage", "pv_voltage", VOLTS),
    _gatt_sensor("load_voltage", "load_voltage", VOLTS),
    _gatt_sensor(
        "gatt_battery_temperature",
        "battery_temperature",
        CELSIUS,
        value_key="battery_temperature",
    ),
    _gatt_sensor(
        "uptime",
        "uptime",
        SECONDS,
        state_class=SensorStateClass.TOTAL_INCREASING,
        entity_category=DIAG,
    ),
)


def _alarm_on(data: VictronBleData) -> bool | None:
    raw = data.values.get("alarm")
    return None if raw is None else bool(raw)


def _load_on(data: VictronBleData) -> bool | None:
    raw = data.gatt.get("load_state")
    return None if raw is None else bool(raw)


BINARY_SENSORS: tuple[BridgeBinarySensorEntityDescription, ...] = (
    BridgeBinarySensorEntityDescription(
        key="alarm",
        translation_key="alarm",
        device_class=BinarySensorDeviceClass.PROBLEM,
        exists_fn=_has(
            "alarm",
            _layouts(
                RECORD_BATTERY_MONITOR,
                RECORD_INVERTER,
                RECORD_SMART_BATTERY_PROTECT,
                RECORD_DC_ENERGY_METER,
            ),
        ),
        is_on_fn=_alarm_on,
    ),
    BridgeBinarySensorEntityDescription(
        key="load_output",
        translation_key="load_output",
        device_class=BinarySensorDeviceClass.POWER,
        exists_fn=lambda data: _load_output_present(data) and _gatt_has("load_state")(data),
        is_on_fn=_load_on,
    ),
)


# --- load output control over the GATT link -----------------------------------------------


def _load_output_present(data: VictronBleData) -> bool:
    """The capabilities register's load output bit; without it, whether a load state answered."""
    capabilities = data.gatt.get("capabilities")
    if isinstance(capabilities, int):
        return bool(capabilities & CAPABILITY_LOAD_OUTPUT)
    return data.gatt.get("load_state") is not None


def _load_control_exists(data: VictronBleData) -> bool:
    return data.gatt_state is not None and _load_output_present(data)


def _load_control_available(data: VictronBleData) -> bool:
    # Only an open link carries a write; advertisements keep the other entities going.
    return data.gatt_state == "connected" and _load_output_present(data)


def _load_control_option(data: VictronBleData) -> str | None:
    raw = data.gatt.get("load_output_control")
    return LOAD_OUTPUT_OPTIONS.get(raw) if isinstance(raw, int) else None


async def _select_load_output(runtime: Any, option: str) -> None:
    victron: VictronBleRuntime = runtime
    await victron.async_select_load_output(option)


SELECTS: tuple[BridgeSelectEntityDescription, ...] = (
    # The same key, translation and options as VE.Direct's load output select.
    BridgeSelectEntityDescription(
        key="load_output_control",
        translation_key="load_output_control",
        options=[*LOAD_OUTPUT_OPTIONS.values()],
        entity_category=EntityCategory.CONFIG,
        exists_fn=_load_control_exists,
        available_fn=_load_control_available,
        value_fn=_load_control_option,
        select_fn=_select_load_output,
    ),
)

__all__ = ["BINARY_SENSORS", "GATT_LINK_STATES", "SELECTS", "SENSORS"]
