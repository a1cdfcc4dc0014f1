"""The bank variants of the shipped dashboard and blueprints, on a real bank of simulated packs.

The dashboard's every entity must exist on a bank named "Battery bank" with its packs (the
dashboard's header tells users to replace the pack prefixes with their own, as done here). The
blueprints run in Home Assistant's automation engine on the bank's own sensors.
"""

from __future__ import annotations

from pathlib import Path
import shutil
from typing import Any

from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.setup import async_setup_component
import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML ships no types; HA depends on it

from .test_battery_bank import BANK, Pack, make_bank, packs  # noqa: F401 - the fixture
from .test_vedirect import state_value, wait_for

ROOT = Path(__file__).parents[2]
DASHBOARD = ROOT / "dashboards" / "battery_bank.yaml"
BLUEPRINTS = ROOT / "blueprints" / "automation" / "sma_victron_bridge"


def entity_ids(node: Any) -> set[str]:
    """Every ``entity:`` of a dashboard, however deep its cards nest."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "entity" and isinstance(value, str):
                found.add(value)
            else:
                found |= entity_ids(value)
    elif isinstance(node, list):
        for item in node:
            found |= entity_ids(item)
    return found


async def test_every_dashboard_card_finds_its_entity(
    hass: HomeAssistant,
    packs: list[Pack],  # noqa: F811 - the fixture
) -> None:
    await make_bank(hass, packs)
    await wait_for(hass, lambda: state_value(hass, f"{BANK}_packs_online") == "3", timeout=10)
    text = DASHBOARD.read_text()
    for number, pack in enumerate(packs, start=1):
        text = text.replace(f"pack_{number}_", f"{pack.slug}_")
    wanted = entity_ids(yaml.safe_load(text))
    assert len(wanted) > 30
    missing = {entity_id for entity_id in wanted if hass.states.get(entity_id) is None}
    assert missing == set()
    lowest = hass.states.get(f"{BANK}_lowest_cell_voltage")
    assert lowest is not None
    assert lowest.attributes["pack"] in {p.name for p in packs}


@pytest.fixture
async def blueprint_dir(hass: HomeAssistant, tmp_path: Path) -> None:
    """A config directory holding the shipped blueprints, as users copy them."""
    shutil.copytree(BLUEPRINTS, tmp_path / "blueprints" / "automation" / "sma_victron_bridge")
    hass.config.config_dir = str(tmp_path)
    assert await async_setup_component(hass, "homeassistant", {})


async def automation(hass: HomeAssistant, blueprint: str, inputs: dict[str, Any]) -> None:
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


@pytest.mark.usefixtures("blueprint_dir")
async def test_generator_starts_on_a_low_cell_and_stops_on_the_bank_soc(
    hass: HomeAssistant,
    packs: list[Pack],  # noqa: F811 - the fixture
) -> None:
    assert await async_setup_component(hass, "input_boolean", {"input_boolean": {"generator": {}}})
    await make_bank(hass, packs)
    await wait_for(hass, lambda: state_value(hass, f"{BANK}_packs_online") == "3", timeout=10)
    await automation(
        hass,
        "generator_on_bank_soc",
        {
            "soc_sensor": f"{BANK}_state_of_charge",
            "lowest_cell_sensor": f"{BANK}_lowest_cell_voltage",
            "generator": "input_boolean.generator",
            "start_below": 20,
            "start_below_cell": 3.05,
            "stop_above": 75,
        },
    )
    # The bank's SOC (about 66 %) is fine, but one cell of pack A falls to 3.0 V.
    cells = [3.3] * 16
    cells[2] = 3.0
    packs[0].sim.cell_voltages = cells
    await wait_for(hass, lambda: state_value(hass, "input_boolean.generator") == "on", timeout=10)
    # Charged: every pack above 75 %.
    packs[0].sim.cell_voltages = [3.3] * 16
    for pack in packs:
        pack.sim.soc = 90.0
    await wait_for(hass, lambda: state_value(hass, "input_boolean.generator") == "off", timeout=10)


@pytest.mark.usefixtures("blueprint_dir")
async def test_problem_notification_names_the_pack(
    hass: HomeAssistant,
    packs: list[Pack],  # noqa: F811 - the fixture
) -> None:
    sent: list[dict[str, Any]] = []

    async def record(call: ServiceCall) -> None:
        sent.append(dict(call.data))

    hass.services.async_register("notify", "phone", record)
    await make_bank(hass, packs)
    await wait_for(hass, lambda: state_value(hass, f"{BANK}_packs_online") == "3", timeout=10)
    binary = "binary_sensor.battery_bank"
    await automation(
        hass,
        "notify_bank_problems",
        {
            "problems": [f"{binary}_pack_stale", f"{binary}_pack_charge_fet_off"],
            "pack_lists": [f"{BANK}_stale_packs", f"{BANK}_packs_not_charging"],
            "notify_action": "notify.phone",
        },
    )
    packs[1].sim.charge_fet = False
    await wait_for(hass, lambda: len(sent) == 1, timeout=10)
    assert sent[0]["title"] == "Battery bank: problem"
    assert "Pack charge FET off is active (Pack B)" in sent[0]["message"]
    packs[1].sim.charge_fet = True
    await wait_for(hass, lambda: len(sent) == 2, timeout=10)
    assert sent[1]["title"] == "Battery bank: cleared"
    assert "has cleared" in sent[1]["message"]
