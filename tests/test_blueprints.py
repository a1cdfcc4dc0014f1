"""The shipped automation blueprints load in Home Assistant and do what they promise."""

from __future__ import annotations

from pathlib import Path
import shutil
from typing import Any

from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.setup import async_setup_component
import pytest

BLUEPRINTS = Path(__file__).parent.parent / "blueprints" / "automation" / "sma_victron_bridge"


@pytest.fixture
async def blueprint_dir(hass: HomeAssistant, tmp_path: Path) -> None:
    """A config directory holding this repository's blueprints, as users would copy them.

    The ``homeassistant`` integration (turn_on/turn_off for any domain) is always loaded in a
    real Home Assistant; the test instance starts without it.
    """
    target = tmp_path / "blueprints" / "automation" / "sma_victron_bridge"
    shutil.copytree(BLUEPRINTS, target)
    hass.config.config_dir = str(tmp_path)
    assert await async_setup_component(hass, "homeassistant", {})


async def _automation(hass: HomeAssistant, blueprint: str, inputs: dict[str, Any]) -> None:
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": [
                {
                    "alias": blueprint,
                    "use_blueprint": {
                        "path": f"sma_victron_bridge/{blueprint}.yaml",
                        "input": inputs,
                    },
                }
            ]
        },
    )
    await hass.async_block_till_done()
    assert hass.states.get(f"automation.{blueprint}") is not None


def _soc(hass: HomeAssistant, value: float) -> None:
    hass.states.async_set(
        "sensor.battery_soc", str(value), {"device_class": "battery", "unit_of_measurement": "%"}
    )


@pytest.mark.usefixtures("blueprint_dir")
async def test_generator_starts_low_and_stops_high(hass: HomeAssistant) -> None:
    assert await async_setup_component(
        hass, "input_boolean", {"input_boolean": {"generator": None}}
    )
    _soc(hass, 55)
    await _automation(
        hass,
        "generator_on_soc",
        {
            "soc_sensor": "sensor.battery_soc",
            "generator": "input_boolean.generator",
            "start_below": 30,
            "stop_above": 80,
        },
    )
    _soc(hass, 29)
    await hass.async_block_till_done()
    assert hass.states.get("input_boolean.generator").state == "on"  # type: ignore[union-attr]
    _soc(hass, 60)  # between the thresholds: keeps running
    await hass.async_block_till_done()
    assert hass.states.get("input_boolean.generator").state == "on"  # type: ignore[union-attr]
    _soc(hass, 81)
    await hass.async_block_till_done()
    assert hass.states.get("input_boolean.generator").state == "off"  # type: ignore[union-attr]


@pytest.mark.usefixtures("blueprint_dir")
async def test_shed_loads_and_restore(hass: HomeAssistant) -> None:
    assert await async_setup_component(
        hass,
        "input_boolean",
        {"input_boolean": {"heater": {"initial": True}, "pump": {"initial": True}}},
    )
    _soc(hass, 50)
    await _automation(
        hass,
        "shed_loads_on_soc",
        {
            "soc_sensor": "sensor.battery_soc",
            "loads": ["input_boolean.heater", "input_boolean.pump"],
            "shed_below": 20,
            "restore_above": 40,
        },
    )
    _soc(hass, 19)
    await hass.async_block_till_done()
    assert hass.states.get("input_boolean.heater").state == "off"  # type: ignore[union-attr]
    assert hass.states.get("input_boolean.pump").state == "off"  # type: ignore[union-attr]
    _soc(hass, 41)
    await hass.async_block_till_done()
    assert hass.states.get("input_boolean.pump").state == "on"  # type: ignore[union-attr]


@pytest.mark.usefixtures("blueprint_dir")
async def test_problem_notifications(hass: HomeAssistant) -> None:
    sent: list[dict[str, Any]] = []

    async def record(call: ServiceCall) -> None:
        sent.append(dict(call.data))

    hass.services.async_register("notify", "phone", record)
    hass.states.async_set(
        "binary_sensor.sunny_island_battery_data_stale",
        "off",
        {"device_class": "problem", "friendly_name": "Sunny Island Battery data stale"},
    )
    await _automation(
        hass,
        "notify_battery_problems",
        {
            "problems": ["binary_sensor.sunny_island_battery_data_stale"],
            "notify_action": "notify.phone",
        },
    )
    hass.states.async_set(
        "binary_sensor.sunny_island_battery_data_stale",
        "on",
        {"device_class": "problem", "friendly_name": "Sunny Island Battery data stale"},
    )
    await hass.async_block_till_done()
    hass.states.async_set(
        "binary_sensor.sunny_island_battery_data_stale",
        "off",
        {"device_class": "problem", "friendly_name": "Sunny Island Battery data stale"},
    )
    await hass.async_block_till_done()
    assert [message["title"] for message in sent] == ["Battery: problem", "Battery: cleared"]
    assert sent[0]["message"] == "Sunny Island Battery data stale is active."
