"""Entity descriptions for serial BMSes (JBD, JBD UP, Daly, ANT): every value a BMS reports.

Per-cell entities exist up to the cell count the BMS reports; only the first few cell voltages
are enabled by default (min/max/average/delta are always there). Each protection flag is its own
problem binary sensor so automations can react to exactly the fault that matters. FET switches
exist only where the client can switch the FETs: over a protocol without FET control (JBD UP,
ANT 2021) a switch could only ever fail, so none is offered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from homeassistant.components.binary_sensor import BinarySensorDeviceClass
from homeassistant.components.sensor import SensorDeviceClass, SensorStateClass
from homeassistant.const import (
    PERCENTAGE,
    EntityCategory,
    UnitOfElectricCurrent,
    UnitOfElectricPotential,
    UnitOfEnergy,
    UnitOfPower,
    UnitOfTemperature,
)

from ...binary_sensor import BridgeBinarySensorEntityDescription
from ...control.limits import Reason
from ...protocols.bms_common import PROTECTION_NAMES, BmsReading
from ...sensor import BridgeSensorEntityDescription
from ...switch import BridgeSwitchEntityDescription

if TYPE_CHECKING:
    from .data import SerialBmsData
    from .runtime import SerialBmsRuntime

MAX_CELLS = 32
MAX_TEMPERATURES = 8
ENABLED_CELLS = 4
DIAG = EntityCategory.DIAGNOSTIC


def _reading(data: SerialBmsData) -> BmsReading | None:
    return data.reading


def _has_reading(data: SerialBmsData) -> bool:
    return data.reading is not None


def _field(name: str) -> Callable[[Any], Any]:
    def value(data: SerialBmsData) -> Any:
        return None if data.reading is None else getattr(data.reading, name)

    return value


def _has_field(name: str) -> Callable[[Any], bool]:
    def exists(data: SerialBmsData) -> bool:
        return data.reading is not None and getattr(data.reading, name) is not None

    return exists


def _cells(data: SerialBmsData) -> tuple[float, ...]:
    return () if data.reading is None else data.reading.cell_voltages


def _cell_stat(
    fn: Callable[[tuple[float, ...]], float | int],
) -> Callable[[Any], float | int | None]:
    def value(data: SerialBmsData) -> float | int | None:
        cells = _cells(data)
        return fn(cells) if cells else None

    return value


def _has_cells(data: SerialBmsData) -> bool:
    return bool(_cells(data))


def _voltage(
    key: str, value_fn: Callable[[Any], Any], exists_fn: Callable[[Any], bool], **kw: Any
) -> BridgeSensorEntityDescription:
    return BridgeSensorEntityDescription(
        key=key,
        translation_key=kw.pop("translation_key", key),
        device_class=SensorDeviceClass.VOLTAGE,
        native_unit_of_measurement=UnitOfElectricPotential.VOLT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=3,
        value_fn=value_fn,
        exists_fn=exists_fn,
        **kw,
    )


def _cell_voltage(index: int) -> BridgeSensorEntityDescription:
    def value(data: SerialBmsData) -> float | None:
        cells = _cells(data)
        return cells[index] if index < len(cells) else None

    def exists(data: SerialBmsData) -> bool:
        return index < len(_cells(data))

    return _voltage(
        f"cell_voltage_{index + 1}",
        value,
        exists,
        translation_key="cell_voltage",
        translation_placeholders={"cell": str(index + 1)},
        entity_registry_enabled_default=index < ENABLED_CELLS,
    )


def _temperature(index: int) -> BridgeSensorEntityDescription:
    def value(data: SerialBmsData) -> float | None:
        temps = () if data.reading is None else data.reading.temperatures
        return temps[index] if index < len(temps) else None

    def exists(data: SerialBmsData) -> bool:
        return data.reading is not None and index < len(data.reading.temperatures)

    return BridgeSensorEntityDescription(
        key=f"temperature_{index + 1}",
        translation_key="temperature_n",
        translation_placeholders={"sensor": str(index + 1)},
        device_class=SensorDeviceClass.TEMPERATURE,
        native_unit_of_measurement=UnitOfTemperature.CELSIUS,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=value,
        exists_fn=exists,
    )


def _restore_energy(attribute: str) -> Callable[[Any, float], None]:
    def restore(runtime: Any, value: float) -> None:
        bms: SerialBmsRuntime = runtime
        if attribute == "charged":
            bms.data.energy.restore(value, None)
        else:
            bms.data.energy.restore(None, value)

    return restore


def _limit(
    key: str, attribute: str, device_class: SensorDeviceClass, unit: str
) -> BridgeSensorEntityDescription:
    def value(data: SerialBmsData) -> float | None:
        return None if data.limits is None else round(float(getattr(data.limits, attribute)), 2)

    return BridgeSensorEntityDescription(
        key=key,
        translation_key=key,
        device_class=device_class,
        native_unit_of_measurement=unit,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=value,
        exists_fn=lambda data: data.limits is not None,
    )


def _limited_by(key: str, attribute: str) -> BridgeSensorEntityDescription:
    return BridgeSensorEntityDescription(
        key=key,
        translation_key=key,
        device_class=SensorDeviceClass.ENUM,
        options=[reason.value for reason in Reason],
        value_fn=lambda data: (
            None if data.limits is None else getattr(data.limits, attribute).value
        ),
        exists_fn=lambda data: data.limits is not None,
    )


SENSORS: tuple[BridgeSensorEntityDescription, ...] = (
    BridgeSensorEntityDescription(
        key="state_of_charge",
        translation_key="state_of_charge",
        device_class=SensorDeviceClass.BATTERY,
        native_unit_of_measurement=PERCENTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=_field("soc"),
        exists_fn=_has_field("soc"),
    ),
    _voltage("battery_voltage", _field("voltage"), _has_field("voltage")),
    BridgeSensorEntityDescription(
        key="battery_current",
        translation_key="battery_current",
        device_class=SensorDeviceClass.CURRENT,
        native_unit_of_measurement=UnitOfElectricCurrent.AMPERE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=2,
        value_fn=_field("current"),
        exists_fn=_has_field("current"),
    ),
    BridgeSensorEntityDescription(
        key="battery_power",
        translation_key="battery_power",
        device_class=SensorDeviceClass.POWER,
        native_unit_of_measurement=UnitOfPower.WATT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        value_fn=_field("power"),
        exists_fn=_has_field("power"),
    ),
    BridgeSensorEntityDescription(
        key="remaining_capacity",
        translation_key="remaining_capacity",
        native_unit_of_measurement="Ah",
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=_field("remaining_capacity"),
        exists_fn=_has_field("remaining_capacity"),
    ),
    BridgeSensorEntityDescription(
        key="nominal_capacity",
        translation_key="nominal_capacity",
        native_unit_of_measurement="Ah",
        suggested_display_precision=0,
        entity_category=DIAG,
        value_fn=_field("nominal_capacity"),
        exists_fn=_has_field("nominal_capacity"),
    ),
    BridgeSensorEntityDescription(
        key="charge_cycles",
        translation_key="charge_cycles",
        state_class=SensorStateClass.TOTAL_INCREASING,
        entity_category=DIAG,
        value_fn=_field("cycles"),
        exists_fn=_has_field("cycles"),
    ),
    _voltage("cell_voltage_min", _cell_stat(min), _has_cells),
    _voltage("cell_voltage_max", _cell_stat(max), _has_cells),
    _voltage(
        "cell_voltage_average",
        _cell_stat(lambda cells: round(sum(cells) / len(cells), 4)),
        _has_cells,
    ),
    _voltage(
        "cell_voltage_delta",
        _cell_stat(lambda cells: round(max(cells) - min(cells), 4)),
        _has_cells,
    ),
    BridgeSensorEntityDescription(
        key="cell_min_index",
        translation_key="cell_min_index",
        value_fn=_cell_stat(lambda cells: cells.index(min(cells)) + 1),
        exists_fn=_has_cells,
    ),
    BridgeSensorEntityDescription(
        key="cell_max_index",
        translation_key="cell_max_index",
        value_fn=_cell_stat(lambda cells: cells.index(max(cells)) + 1),
        exists_fn=_has_cells,
    ),
    *(_cell_voltage(i) for i in range(MAX_CELLS)),
    *(_temperature(i) for i in range(MAX_TEMPERATURES)),
    BridgeSensorEntityDescription(
        key="mosfet_temperature",
        translation_key="mosfet_temperature",
        device_class=SensorDeviceClass.TEMPERATURE,
        native_unit_of_measurement=UnitOfTemperature.CELSIUS,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=_field("mosfet_temperature"),
        exists_fn=_has_field("mosfet_temperature"),
    ),
    BridgeSensorEntityDescription(
        key="charged_energy",
        translation_key="charged_energy",
        device_class=SensorDeviceClass.ENERGY,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        state_class=SensorStateClass.TOTAL_INCREASING,
        suggested_display_precision=3,
        value_fn=lambda data: round(data.energy.charged_kwh, 4),
        exists_fn=_has_field("power"),
        restore_fn=_restore_energy("charged"),
    ),
    BridgeSensorEntityDescription(
        key="discharged_energy",
        translation_key="discharged_energy",
        device_class=SensorDeviceClass.ENERGY,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        state_class=SensorStateClass.TOTAL_INCREASING,
        suggested_display_precision=3,
        value_fn=lambda data: round(data.energy.discharged_kwh, 4),
        exists_fn=_has_field("power"),
        restore_fn=_restore_energy("discharged"),
    ),
    _limit(
        "charge_voltage_limit",
        "charge_voltage",
        SensorDeviceClass.VOLTAGE,
        UnitOfElectricPotential.VOLT,
    ),
    _limit(
        "charge_current_limit",
        "charge_current_limit",
        SensorDeviceClass.CURRENT,
        UnitOfElectricCurrent.AMPERE,
    ),
    _limit(
        "discharge_current_limit",
        "discharge_current_limit",
        SensorDeviceClass.CURRENT,
        UnitOfElectricCurrent.AMPERE,
    ),
    _limited_by("charge_limited_by", "limited_by_charge"),
    _limited_by("discharge_limited_by", "limited_by_discharge"),
    BridgeSensorEntityDescription(
        key="error_counters",
        translation_key="error_counters",
        entity_category=DIAG,
        entity_registry_enabled_default=False,
        value_fn=lambda data: None if data.error_counters is None else sum(data.error_counters),
        attributes_fn=lambda data: {"counters": data.error_counters},
        exists_fn=lambda data: data.error_counters is not None,
    ),
)


def _protection(name: str) -> BridgeBinarySensorEntityDescription:
    return BridgeBinarySensorEntityDescription(
        key=f"protection_{name}",
        translation_key=name,
        device_class=BinarySensorDeviceClass.PROBLEM,
        is_on_fn=lambda data: None if data.reading is None else name in data.reading.protections,
        exists_fn=_has_reading,
    )


def _balancing_cell(index: int) -> BridgeBinarySensorEntityDescription:
    def is_on(data: SerialBmsData) -> bool | None:
        balancing = () if data.reading is None else data.reading.balancing
        return balancing[index] if index < len(balancing) else None

    def exists(data: SerialBmsData) -> bool:
        return data.reading is not None and index < len(data.reading.balancing)

    return BridgeBinarySensorEntityDescription(
        key=f"balancing_cell_{index + 1}",
        translation_key="balancing_cell",
        translation_placeholders={"cell": str(index + 1)},
        entity_category=DIAG,
        entity_registry_enabled_default=False,
        is_on_fn=is_on,
        exists_fn=exists,
    )


BINARY_SENSORS: tuple[BridgeBinarySensorEntityDescription, ...] = (
    BridgeBinarySensorEntityDescription(
        key="balancing",
        translation_key="balancing",
        is_on_fn=lambda data: None if data.reading is None else any(data.reading.balancing),
        exists_fn=lambda data: data.reading is not None and bool(data.reading.balancing),
    ),
    *(_protection(name) for name in PROTECTION_NAMES),
    *(_balancing_cell(i) for i in range(MAX_CELLS)),
)


def _has_fet_switch(name: str) -> Callable[[Any], bool]:
    reported = _has_field(name)

    def exists(data: SerialBmsData) -> bool:
        return reported(data) and data.fet_control

    return exists


def _fet_writer(which: str) -> Callable[[Any, bool], Any]:
    async def write(runtime: Any, on: bool) -> None:
        bms: SerialBmsRuntime = runtime
        await bms.async_set_fet(which, on)

    return write


SWITCHES: tuple[BridgeSwitchEntityDescription, ...] = (
    BridgeSwitchEntityDescription(
        key="charge_fet",
        translation_key="charge_fet",
        is_on_fn=_field("charge_fet"),
        exists_fn=_has_fet_switch("charge_fet"),
        set_fn=_fet_writer("charge"),
    ),
    BridgeSwitchEntityDescription(
        key="discharge_fet",
        translation_key="discharge_fet",
        is_on_fn=_field("discharge_fet"),
        exists_fn=_has_fet_switch("discharge_fet"),
        set_fn=_fet_writer("discharge"),
    ),
)
