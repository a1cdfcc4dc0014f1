"""Entity descriptions of a battery bank: the bank as one battery, and what limits it.

Values are over the packs online (a stale pack's readings are unknown now, see
``docs/battery_banks.md``). The extreme cells and temperatures name their pack (and cell); each
current limit says which rule of which pack sets it. Problems (a stale pack, packs disagreeing on
voltage, a pack with another cell count, a stale shunt, a pack with a FET off) are binary sensors,
with sensors naming the packs concerned; they follow their own coordinator, which is only told
when a problem changes (``PROBLEM_*``), not at every refresh of the values (``SENSORS``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from homeassistant.components.binary_sensor import BinarySensorDeviceClass
from homeassistant.components.sensor import SensorDeviceClass, SensorStateClass
from homeassistant.const import (
    PERCENTAGE,
    UnitOfElectricCurrent,
    UnitOfElectricPotential,
    UnitOfEnergy,
    UnitOfPower,
    UnitOfTemperature,
)

from ...binary_sensor import BridgeBinarySensorEntityDescription
from ...control.bank import BankLimit, BankProblem, BankReason, Exclusion
from ...control.limits import Reason
from ...sensor import BridgeSensorEntityDescription

if TYPE_CHECKING:
    from .runtime import BankData, BatteryBankRuntime

LIMIT_REASONS: tuple[str, ...] = (*(r.value for r in Reason), *(r.value for r in BankReason))
"""Every rule a bank limit can be set by: a pack's rule, or the bank's own."""
NONE = "none"


def _has_state(data: BankData) -> bool:
    return data.state is not None


def _value(name: str, digits: int | None = None) -> Callable[[Any], Any]:
    """A value of the bank, to the resolution the packs measure (a state changes only then)."""

    def value(data: BankData) -> Any:
        state = data.state
        number = None if state is None else getattr(state, name)
        return number if number is None or digits is None else round(number, digits)

    return value


def _restore_energy(attribute: str) -> Callable[[Any, float], None]:
    def restore(runtime: Any, value: float) -> None:
        bank: BatteryBankRuntime = runtime
        if attribute == "charged":
            bank.data.energy.restore(value, None)
        else:
            bank.data.energy.restore(None, value)

    return restore


def _cell(which: str) -> BridgeSensorEntityDescription:
    def location(data: BankData) -> Any:
        state = data.state
        return None if state is None else getattr(state, f"{which}_cell")

    def value(data: BankData) -> float | None:
        cell = location(data)
        return None if cell is None else round(cell.voltage, 3)

    def attributes(data: BankData) -> dict[str, Any] | None:
        cell = location(data)
        if cell is None:
            return None
        return {"pack": cell.pack_name, "pack_id": cell.pack_id, "cell": cell.cell}

    return BridgeSensorEntityDescription(
        key=f"{which}_cell_voltage",
        translation_key=f"{which}_cell_voltage",
        device_class=SensorDeviceClass.VOLTAGE,
        native_unit_of_measurement=UnitOfElectricPotential.VOLT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=3,
        value_fn=value,
        attributes_fn=attributes,
        exists_fn=_has_state,
    )


def _temperature(which: str) -> BridgeSensorEntityDescription:
    def value(data: BankData) -> float | None:
        state = data.state
        spot = None if state is None else getattr(state, which)
        return None if spot is None else round(spot.temperature, 1)

    def attributes(data: BankData) -> dict[str, Any] | None:
        state = data.state
        spot = None if state is None else getattr(state, which)
        return None if spot is None else {"pack": spot.pack_name, "pack_id": spot.pack_id}

    return BridgeSensorEntityDescription(
        key=f"{which}_temperature",
        translation_key=f"{which}_temperature",
        device_class=SensorDeviceClass.TEMPERATURE,
        native_unit_of_measurement=UnitOfTemperature.CELSIUS,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=value,
        attributes_fn=attributes,
        exists_fn=_has_state,
    )


def _limit_of(direction: str) -> Callable[[BankData], BankLimit | None]:
    def limit(data: BankData) -> BankLimit | None:
        state = data.state
        return None if state is None else getattr(state, direction)

    return limit


def _names(data: BankData, pack_ids: Any) -> list[str]:
    names = data.names
    return [names.get(pack_id, pack_id) for pack_id in pack_ids]


def _current_limit(direction: str) -> BridgeSensorEntityDescription:
    limit = _limit_of(direction)

    def attributes(data: BankData) -> dict[str, Any] | None:
        value = limit(data)
        if value is None:
            return None
        return {
            "shares": {name: round(share, 4) for name, share in _shares(data, value).items()},
            "excluded": dict(
                zip(_names(data, value.excluded), value.excluded.values(), strict=True)
            ),
        }

    return BridgeSensorEntityDescription(
        key=f"{direction}_current_limit",
        translation_key=f"{direction}_current_limit",
        device_class=SensorDeviceClass.CURRENT,
        native_unit_of_measurement=UnitOfElectricCurrent.AMPERE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=lambda data: None if (v := limit(data)) is None else round(v.value, 1),
        attributes_fn=attributes,
        exists_fn=_has_state,
    )


def _shares(data: BankData, limit: BankLimit) -> dict[str, float]:
    return dict(zip(_names(data, limit.shares), limit.shares.values(), strict=True))


def _limited_by(direction: str) -> BridgeSensorEntityDescription:
    limit = _limit_of(direction)
    return BridgeSensorEntityDescription(
        key=f"{direction}_limited_by",
        translation_key=f"bank_{direction}_limited_by",
        device_class=SensorDeviceClass.ENUM,
        options=list(LIMIT_REASONS),
        value_fn=lambda data: None if (v := limit(data)) is None else v.reason,
        attributes_fn=lambda data: (
            None
            if (v := limit(data)) is None
            else {"pack": v.pack_name, "limited_by": v.limited_by}
        ),
        exists_fn=_has_state,
    )


def _limiting_pack(direction: str) -> BridgeSensorEntityDescription:
    limit = _limit_of(direction)
    return BridgeSensorEntityDescription(
        key=f"{direction}_limiting_pack",
        translation_key=f"{direction}_limiting_pack",
        value_fn=lambda data: None if (v := limit(data)) is None else v.pack_name,
        exists_fn=_has_state,
    )


def _packs_online_attributes(data: BankData) -> dict[str, Any] | None:
    """How many packs there are and each one's status (its values are on its own device)."""
    state = data.state
    if state is None:
        return None
    return {"packs_total": state.packs_total, "packs": data.statuses}


SENSORS: tuple[BridgeSensorEntityDescription, ...] = (
    BridgeSensorEntityDescription(
        key="state_of_charge",
        translation_key="state_of_charge",
        device_class=SensorDeviceClass.BATTERY,
        native_unit_of_measurement=PERCENTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=_value("soc", 1),
        exists_fn=_has_state,
    ),
    BridgeSensorEntityDescription(
        key="battery_voltage",
        translation_key="battery_voltage",
        device_class=SensorDeviceClass.VOLTAGE,
        native_unit_of_measurement=UnitOfElectricPotential.VOLT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=2,
        value_fn=_value("voltage", 2),
        exists_fn=_has_state,
    ),
    BridgeSensorEntityDescription(
        key="battery_current",
        translation_key="battery_current",
        device_class=SensorDeviceClass.CURRENT,
        native_unit_of_measurement=UnitOfElectricCurrent.AMPERE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=2,
        value_fn=_value("current", 2),
        attributes_fn=lambda data: (
            None if data.state is None else {"source": data.state.current_source}
        ),
        exists_fn=_has_state,
    ),
    BridgeSensorEntityDescription(
        key="battery_power",
        translation_key="battery_power",
        device_class=SensorDeviceClass.POWER,
        native_unit_of_measurement=UnitOfPower.WATT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        value_fn=_value("power", 0),
        exists_fn=_has_state,
    ),
    BridgeSensorEntityDescription(
        key="remaining_capacity",
        translation_key="remaining_capacity",
        native_unit_of_measurement="Ah",
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=_value("remaining_capacity", 1),
        exists_fn=_has_state,
    ),
    BridgeSensorEntityDescription(
        key="nominal_capacity",
        translation_key="nominal_capacity",
        native_unit_of_measurement="Ah",
        suggested_display_precision=0,
        value_fn=_value("nominal_capacity", 1),
        exists_fn=_has_state,
    ),
    _cell("lowest"),
    _cell("highest"),
    BridgeSensorEntityDescription(
        key="cell_spread",
        translation_key="cell_spread",
        device_class=SensorDeviceClass.VOLTAGE,
        native_unit_of_measurement=UnitOfElectricPotential.VOLT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=3,
        value_fn=_value("cell_spread", 3),
        exists_fn=_has_state,
    ),
    _temperature("coldest"),
    _temperature("hottest"),
    BridgeSensorEntityDescription(
        key="packs_online",
        translation_key="packs_online",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda data: None if data.state is None else data.state.packs_online,
        attributes_fn=_packs_online_attributes,
        exists_fn=_has_state,
    ),
    BridgeSensorEntityDescription(
        key="charged_energy",
        translation_key="charged_energy",
        device_class=SensorDeviceClass.ENERGY,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        state_class=SensorStateClass.TOTAL_INCREASING,
        suggested_display_precision=3,
        value_fn=lambda data: round(data.energy.charged_kwh, 4),
        exists_fn=_has_state,
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
        exists_fn=_has_state,
        restore_fn=_restore_energy("discharged"),
    ),
    BridgeSensorEntityDescription(
        key="charge_voltage_limit",
        translation_key="charge_voltage_limit",
        device_class=SensorDeviceClass.VOLTAGE,
        native_unit_of_measurement=UnitOfElectricPotential.VOLT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=2,
        value_fn=_value("charge_voltage", 2),
        attributes_fn=lambda data: (
            None
            if data.state is None
            else {
                "pack": _names(data, [data.state.charge_voltage_pack])[0]
                if data.state.charge_voltage_pack
                else None
            }
        ),
        exists_fn=_has_state,
    ),
    _current_limit("charge"),
    _current_limit("discharge"),
    _limited_by("charge"),
    _limited_by("discharge"),
    _limiting_pack("charge"),
    _limiting_pack("discharge"),
)


def _problem(key: str, problem: BankProblem) -> BridgeBinarySensorEntityDescription:
    return BridgeBinarySensorEntityDescription(
        key=key,
        translation_key=key,
        device_class=BinarySensorDeviceClass.PROBLEM,
        is_on_fn=lambda data: None if data.state is None else problem in data.state.problems,
        exists_fn=_has_state,
    )


def _fet_off_packs(direction: str, exclusion: Exclusion) -> Callable[[BankData], list[str]]:
    def packs(data: BankData) -> list[str]:
        state = data.state
        if state is None:
            return []
        limit: BankLimit = getattr(state, direction)
        return _names(data, [p for p, why in limit.excluded.items() if why == exclusion])

    return packs


def _fet_off(direction: str, exclusion: Exclusion) -> BridgeBinarySensorEntityDescription:
    packs = _fet_off_packs(direction, exclusion)
    return BridgeBinarySensorEntityDescription(
        key=f"pack_{direction}_fet_off",
        translation_key=f"pack_{direction}_fet_off",
        is_on_fn=lambda data: None if data.state is None else bool(packs(data)),
        exists_fn=_has_state,
    )


def _pack_list(key: str, packs: Callable[[BankData], list[str]]) -> BridgeSensorEntityDescription:
    """The packs concerned by a problem, by name ("none" when there are none)."""
    return BridgeSensorEntityDescription(
        key=key,
        translation_key=key,
        value_fn=lambda data: None if data.state is None else ", ".join(packs(data)) or NONE,
        exists_fn=_has_state,
    )


def _packs_named(attribute: str) -> Callable[[BankData], list[str]]:
    def packs(data: BankData) -> list[str]:
        state = data.state
        return [] if state is None else _names(data, getattr(state, attribute))

    return packs


PROBLEM_SENSORS: tuple[BridgeSensorEntityDescription, ...] = (
    _pack_list("stale_packs", _packs_named("stale_packs")),
    _pack_list("disagreeing_packs", _packs_named("disagreeing_packs")),
    _pack_list("charge_fet_off_packs", _fet_off_packs("charge", Exclusion.CHARGE_FET_OFF)),
    _pack_list("discharge_fet_off_packs", _fet_off_packs("discharge", Exclusion.DISCHARGE_FET_OFF)),
)


PROBLEM_BINARY_SENSORS: tuple[BridgeBinarySensorEntityDescription, ...] = (
    _problem("stale_pack", BankProblem.STALE_PACK),
    _problem("voltage_disagreement", BankProblem.VOLTAGE_DISAGREEMENT),
    _problem("cell_count_mismatch", BankProblem.CELL_COUNT),
    BridgeBinarySensorEntityDescription(
        key="shunt_stale",
        translation_key="shunt_stale",
        device_class=BinarySensorDeviceClass.PROBLEM,
        is_on_fn=lambda data: (
            None if data.state is None else BankProblem.SHUNT_STALE in data.state.problems
        ),
        exists_fn=lambda data: data.state is not None and data.shunt,
    ),
    _fet_off("charge", Exclusion.CHARGE_FET_OFF),
    _fet_off("discharge", Exclusion.DISCHARGE_FET_OFF),
)
