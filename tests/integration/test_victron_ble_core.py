"""One Victron device, two integrations: ours and Home Assistant's own ``victron_ble``.

The core integration is installed here as in every user's Home Assistant (its parser library is
in the test requirements), and both integrations' manifests match the same advertisements.
"""

from __future__ import annotations

from homeassistant.components import bluetooth
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.sma_victron_bridge.const import DOMAIN
from custom_components.sma_victron_bridge.devices.victron_ble.core import (
    CORE_DOMAIN,
    core_key,
)
from tests.integration.test_victron_ble import (
    KEY,
    SOLAR_ADDRESS,
    SOLAR_VECTOR,
    entry_for,
    inject,
    setup,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("enable_bluetooth")


def core_flows(hass: HomeAssistant) -> list[str]:
    return [
        str(flow["context"].get("unique_id"))
        for flow in hass.config_entries.flow.async_progress_by_handler(CORE_DOMAIN)
    ]


async def test_both_integrations_discover_an_unconfigured_device(hass: HomeAssistant) -> None:
    # Nobody has the device yet: each integration offers it (the user picks one).
    inject(hass, SOLAR_ADDRESS, bytes.fromhex(SOLAR_VECTOR["data"]))
    await wait_for(hass, lambda: SOLAR_ADDRESS in core_flows(hass))
    await wait_for(hass, lambda: bool(hass.config_entries.flow.async_progress_by_handler(DOMAIN)))


async def test_a_device_of_ours_is_never_offered_by_the_core_integration(
    hass: HomeAssistant,
) -> None:
    # The core discovery that started before our entry loaded is withdrawn at setup ...
    inject(hass, SOLAR_ADDRESS, bytes.fromhex(SOLAR_VECTOR["data"]))
    await wait_for(hass, lambda: SOLAR_ADDRESS in core_flows(hass))
    for flow in hass.config_entries.flow.async_progress_by_handler(DOMAIN):
        hass.config_entries.flow.async_abort(flow["flow_id"])
    entry = entry_for(SOLAR_ADDRESS, KEY, 1, 0xA04C, "Solar")
    await setup(hass, entry)
    assert SOLAR_ADDRESS not in core_flows(hass)
    # ... and one that starts later (a new discovery, as after a restart) never shows.
    result = await hass.config_entries.flow.async_init(
        CORE_DOMAIN,
        context={"source": "bluetooth"},
        data=hass_bluetooth_info(hass),
    )
    assert result["type"] == "abort" or SOLAR_ADDRESS not in core_flows(hass)
    await hass.async_block_till_done()
    assert SOLAR_ADDRESS not in core_flows(hass)
    # Once our entry is gone, the core integration may offer the device again.
    assert await hass.config_entries.async_unload(entry.entry_id)
    result = await hass.config_entries.flow.async_init(
        CORE_DOMAIN, context={"source": "bluetooth"}, data=hass_bluetooth_info(hass)
    )
    assert SOLAR_ADDRESS in core_flows(hass)


async def test_a_device_of_the_core_integration_is_not_offered_by_ours(
    hass: HomeAssistant,
) -> None:
    core = MockConfigEntry(
        domain=CORE_DOMAIN,
        unique_id=SOLAR_ADDRESS,
        title="SmartSolar",
        data={"address": SOLAR_ADDRESS, "access_token": KEY.hex()},
    )
    core.add_to_hass(hass)
    assert core_key(hass, SOLAR_ADDRESS) == KEY.hex()
    assert core_key(hass, "AA:BB:CC:00:00:99") is None
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": "bluetooth"}, data=hass_bluetooth_info(hass)
    )
    assert result["type"] == "abort"
    assert result["reason"] == "configured_in_core"


def hass_bluetooth_info(hass: HomeAssistant) -> bluetooth.BluetoothServiceInfoBleak:
    """The last advertisement HA heard from the solar charger, as discovery passes it on."""
    inject(hass, SOLAR_ADDRESS, bytes.fromhex(SOLAR_VECTOR["data"]))
    info = bluetooth.async_last_service_info(hass, SOLAR_ADDRESS, connectable=False)
    assert info is not None
    return info
