"""Config flow: every step, every error and its recovery, duplicates, USB discovery, reconfigure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import can
from homeassistant.config_entries import (
    SOURCE_RECONFIGURE,
    SOURCE_USB,
    SOURCE_USER,
    ConfigEntryState,
)
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType, InvalidData
from homeassistant.helpers.service_info.usb import UsbServiceInfo
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.sma_victron_bridge.const import (
    CONF_FORWARD_SOURCE,
    CONF_FORWARD_TEMPERATURE_ENTITY,
    CONF_FORWARD_VOLTAGE_ENTITY,
    CONF_PORT,
    CONF_SERIAL_NUMBER,
    CONF_SIMULATED,
    CONF_STALE_AFTER,
    DOMAIN,
)
from custom_components.sma_victron_bridge.devices.sunny_island.flow import (
    CONF_GUARD_TIME,
    CONF_SOURCE_INVERT_CURRENT,
    DEFAULT_GUARD_TIME,
    cell_counts_text,
)
from custom_components.sma_victron_bridge.simulators.slcan import SlcanAdapter
from custom_components.sma_victron_bridge.simulators.sunny_island import SunnyIslandSimulator
from custom_components.sma_victron_bridge.simulators.vedirect import VeDirectSimulator

from .conftest import BMV_SERIAL, MPPT_SERIAL, vedirect_entry
from .test_vedirect import wait_for

EN = json.loads(
    (
        Path(__file__).parents[2]
        / "custom_components"
        / "sma_victron_bridge"
        / "translations"
        / "en.json"
    ).read_text()
)


def select_values(result: Any, key: str) -> list[str]:
    """The option values a select field of a form offers."""
    schema = result["data_schema"]
    assert schema is not None
    options = schema.schema[key].config["options"]
    return [option if isinstance(option, str) else option["value"] for option in options]


async def _start_manual(hass: HomeAssistant) -> str:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.MENU
    assert result["menu_options"] == [
        "vedirect",
        "serial_bms",
        "sunny_island",
        "sunny_boy",
        "victron_ble",
        "ble_bms",
        "battery_bank",
        "simulated",
    ]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "vedirect"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "vedirect"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PORT: "manual"}
    )
    assert result["step_id"] == "vedirect_manual"
    return result["flow_id"]


async def test_manual_port_creates_entry_named_by_device(
    hass: HomeAssistant, mppt_sim: VeDirectSimulator
) -> None:
    flow_id = await _start_manual(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, {CONF_PORT: mppt_sim.port})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == f"SmartSolar MPPT 75|15 {MPPT_SERIAL}"
    assert result["data"][CONF_PORT] == mppt_sim.port
    assert result["data"][CONF_SERIAL_NUMBER] == MPPT_SERIAL
    assert result["data"]["family"] == "mppt"
    assert result["result"].unique_id == MPPT_SERIAL
    await hass.async_block_till_done()
    assert result["result"].state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(result["result"].entry_id)


async def test_missing_port_then_recovery(hass: HomeAssistant, mppt_sim: VeDirectSimulator) -> None:
    flow_id = await _start_manual(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_PORT: "/dev/does-not-exist"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "port_not_found"}
    result = await hass.config_entries.flow.async_configure(flow_id, {CONF_PORT: mppt_sim.port})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(result["result"].entry_id)


async def test_silent_device_then_recovery(
    hass: HomeAssistant, mppt_sim: VeDirectSimulator
) -> None:
    mppt_sim.set_silent(True)
    flow_id = await _start_manual(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, {CONF_PORT: mppt_sim.port})
    assert result["errors"] == {"base": "no_answer"}
    mppt_sim.set_silent(False)
    result = await hass.config_entries.flow.async_configure(flow_id, {CONF_PORT: mppt_sim.port})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(result["result"].entry_id)


async def test_garbage_is_not_vedirect(hass: HomeAssistant, mppt_sim: VeDirectSimulator) -> None:
    mppt_sim.set_corrupt_checksums(True)
    flow_id = await _start_manual(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, {CONF_PORT: mppt_sim.port})
    assert result["errors"] == {"base": "not_vedirect"}


async def test_duplicate_device_aborts(hass: HomeAssistant, mppt_sim: VeDirectSimulator) -> None:
    existing = vedirect_entry(mppt_sim, "mppt")
    existing.add_to_hass(hass)
    flow_id = await _start_manual(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, {CONF_PORT: mppt_sim.port})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_device_without_serial_text_uses_hex_serial(
    hass: HomeAssistant, bmv_sim: VeDirectSimulator
) -> None:
    flow_id = await _start_manual(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, {CONF_PORT: bmv_sim.port})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == f"BMV-712 Smart {BMV_SERIAL}"
    assert result["data"]["family"] == "battery_monitor"
    assert result["result"].unique_id == BMV_SERIAL
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(result["result"].entry_id)


async def start_simulated(hass: HomeAssistant, device: str) -> dict[str, Any]:
    """Menu → "Simulated device" → ``device``: the flow's result after that choice."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert "simulated" in result["menu_options"]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "simulated"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "simulated"
    return dict(
        await hass.config_entries.flow.async_configure(
            result["flow_id"], {"simulated_device": device}
        )
    )


async def test_simulated_step_offers_every_simulator(hass: HomeAssistant) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "simulated"}
    )
    assert select_values(result, "simulated_device") == [
        "vedirect_mppt",
        "vedirect_bmv",
        "serial_bms_jbd",
        "serial_bms_daly",
        "serial_bms_ant",
        "serial_bms_jbd_up",
        "serial_bms_jk",
        "serial_bms_jk_pb",
        "sunny_island",
        "sunny_boy_speedwire",
        "sunny_boy_bluetooth",
        "victron_ble_solar",
        "victron_ble_battery_monitor",
        "victron_ble_dcdc",
        "victron_ble_inverter",
        "victron_ble_ve_bus",
        "ble_bms_jk",
        "ble_bms_jbd",
        "ble_bms_daly",
    ]
    options = EN["selector"]["simulated_device"]["options"]
    assert set(options) == set(select_values(result, "simulated_device"))
    assert EN["config"]["step"]["user"]["menu_options"]["simulated"] == (
        "Simulated device (try without hardware)"
    )


async def test_real_pickers_never_list_simulators(hass: HomeAssistant) -> None:
    """The harness's default context, where deprecated advanced mode would count as on."""

    async def form(step: str, *inputs: dict[str, Any]) -> Any:
        result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"next_step_id": step}
        )
        for user_input in inputs:
            result = await hass.config_entries.flow.async_configure(result["flow_id"], user_input)
        return result

    def real(values: list[str]) -> None:
        assert values
        assert not [value for value in values if "simulat" in value], values

    real(select_values(await form("vedirect"), CONF_PORT))
    real(select_values(await form("serial_bms"), CONF_PORT))
    assert select_values(await form("sunny_island"), "can_interface") == ["socketcan", "slcan"]
    real(select_values(await form("sunny_island", {"can_interface": "slcan"}), "can_channel"))
    assert select_values(await form("sunny_boy"), "transport") == ["bluetooth", "speedwire"]
    for selector in ("can_interface", "sunny_boy_transport"):
        real(list(EN["selector"][selector]["options"]))


@pytest.mark.parametrize(("device", "family"), [("vedirect_mppt", "mppt"), ("vedirect_bmv", "bmv")])
async def test_simulated_vedirect_devices(hass: HomeAssistant, device: str, family: str) -> None:
    result = await start_simulated(hass, device)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_SIMULATED] == family
    entry = result["result"]
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    if family == "mppt":
        assert result["title"].startswith("Simulated SmartSolar MPPT 75|15 HQSIM")
        state = hass.states.get(
            "sensor.simulated_smartsolar_mppt_75_15_"
            + entry.data[CONF_SERIAL_NUMBER].lower()
            + "_battery_voltage"
        )
        assert state is not None
        assert 10.0 < float(state.state) < 16.0
    else:
        assert result["title"].startswith("Simulated BMV-712")
        assert result["data"]["family"] == "battery_monitor"
    assert await hass.config_entries.async_unload(entry.entry_id)


def _usb_info(port: str) -> UsbServiceInfo:
    return UsbServiceInfo(
        device=port,
        vid="0403",
        pid="6015",
        serial_number="HQ1234ABCD",
        manufacturer="VictronEnergy BV",
        description="VE Direct cable",
    )


async def test_usb_discovery_confirm_creates_entry(
    hass: HomeAssistant, mppt_sim: VeDirectSimulator
) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USB}, data=_usb_info(mppt_sim.port)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "usb_confirm"
    assert result["description_placeholders"] is not None
    assert result["description_placeholders"]["name"] == f"SmartSolar MPPT 75|15 {MPPT_SERIAL}"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["result"].unique_id == MPPT_SERIAL
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(result["result"].entry_id)


async def test_usb_discovery_of_configured_port_aborts(
    hass: HomeAssistant, mppt_sim: VeDirectSimulator
) -> None:
    vedirect_entry(mppt_sim, "mppt").add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USB}, data=_usb_info(mppt_sim.port)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_usb_discovery_updates_moved_device(
    hass: HomeAssistant, mppt_sim: VeDirectSimulator
) -> None:
    moved = MockConfigEntry(
        domain=DOMAIN,
        unique_id=MPPT_SERIAL,
        data={"device": "vedirect", CONF_PORT: "/dev/old-port", "family": "mppt"},
    )
    moved.add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USB}, data=_usb_info(mppt_sim.port)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert moved.data[CONF_PORT] == mppt_sim.port


async def test_usb_discovery_of_silent_device_aborts(
    hass: HomeAssistant, mppt_sim: VeDirectSimulator
) -> None:
    mppt_sim.set_silent(True)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USB}, data=_usb_info(mppt_sim.port)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "no_answer"


async def setup_waiting_for_port(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Set up an entry whose port is gone: it waits to retry, as after the cable moved."""
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY


async def test_reconfigure_to_new_port(hass: HomeAssistant, mppt_sim: VeDirectSimulator) -> None:
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=MPPT_SERIAL,
        data={"device": "vedirect", CONF_PORT: "/dev/old-port", "family": "mppt"},
    )
    await setup_waiting_for_port(hass, entry)
    result = await entry.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PORT: "manual"}
    )
    assert result["step_id"] == "reconfigure_manual"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PORT: "/dev/nothing-here"}
    )
    assert result["errors"] == {"base": "port_not_found"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PORT: mppt_sim.port}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_PORT] == mppt_sim.port
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_reconfigure_to_other_device_aborts(
    hass: HomeAssistant, bmv_sim: VeDirectSimulator
) -> None:
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=MPPT_SERIAL,
        data={"device": "vedirect", CONF_PORT: "/dev/old-port", "family": "mppt"},
    )
    entry.add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PORT: "manual"}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PORT: bmv_sim.port}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_device"
    assert entry.data[CONF_PORT] == "/dev/old-port"


async def test_reconfigure_simulated_aborts(hass: HomeAssistant) -> None:
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id="simulated_HQSIM000001",
        data={"device": "vedirect", CONF_PORT: "", CONF_SIMULATED: "mppt", "family": "mppt"},
    )
    entry.add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "simulated_fixed"


async def test_options_flow_only_for_chargers(
    hass: HomeAssistant, mppt_sim: VeDirectSimulator, bmv_sim: VeDirectSimulator
) -> None:
    mppt = vedirect_entry(mppt_sim, "mppt")
    bmv = vedirect_entry(bmv_sim, "battery_monitor")
    mppt.add_to_hass(hass)
    bmv.add_to_hass(hass)
    assert mppt.supports_options
    assert not bmv.supports_options

    result = await hass.config_entries.options.async_init(mppt.entry_id)
    assert result["step_id"] == "init"
    sources = select_values(result, CONF_FORWARD_SOURCE)
    assert sources == ["none", bmv.entry_id, "entities"]
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_FORWARD_SOURCE: bmv.entry_id, CONF_STALE_AFTER: 20}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert mppt.options == {CONF_FORWARD_SOURCE: bmv.entry_id, CONF_STALE_AFTER: 20.0}


async def test_options_flow_entities_requires_one(
    hass: HomeAssistant, mppt_sim: VeDirectSimulator
) -> None:
    mppt = vedirect_entry(mppt_sim, "mppt")
    mppt.add_to_hass(hass)
    result = await hass.config_entries.options.async_init(mppt.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_FORWARD_SOURCE: "entities", CONF_STALE_AFTER: 30}
    )
    assert result["step_id"] == "entities"
    result = await hass.config_entries.options.async_configure(result["flow_id"], {})
    assert result["errors"] == {"base": "no_entity"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            CONF_FORWARD_VOLTAGE_ENTITY: "sensor.battery_voltage",
            CONF_FORWARD_TEMPERATURE_ENTITY: "sensor.battery_temperature",
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert mppt.options[CONF_FORWARD_VOLTAGE_ENTITY] == "sensor.battery_voltage"
    assert mppt.options[CONF_FORWARD_SOURCE] == "entities"


async def test_port_typed_into_the_picker(hass: HomeAssistant, mppt_sim: VeDirectSimulator) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "vedirect"}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PORT: "/dev/serial/by-id/not-plugged-in"}
    )
    assert result["errors"] == {"base": "port_not_found"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PORT: mppt_sim.port}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(result["result"].entry_id)


async def test_reconfigure_from_the_picker(
    hass: HomeAssistant, mppt_sim: VeDirectSimulator
) -> None:
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=MPPT_SERIAL,
        data={"device": "vedirect", CONF_PORT: "/dev/old-port", "family": "mppt"},
    )
    await setup_waiting_for_port(hass, entry)
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PORT: "/dev/gone"}
    )
    assert result["step_id"] == "reconfigure"
    assert result["errors"] == {"base": "port_not_found"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PORT: mppt_sim.port}
    )
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_reconfigure_sunny_island_to_another_can_adapter(hass: HomeAssistant) -> None:
    """Two slcan adapters, each with a Sunny Island behind: the entry moves to the second."""
    hass.states.async_set("sensor.house_battery_soc", "55", {"unit_of_measurement": "%"})
    adapters = [SlcanAdapter(f"sma-victron-reconfigure-{n}") for n in (1, 2)]
    buses = [can.Bus(interface="virtual", channel=f"sma-victron-reconfigure-{n}") for n in (1, 2)]
    islands = [SunnyIslandSimulator(bus) for bus in buses]
    for adapter, island in zip(adapters, islands, strict=True):
        await adapter.start()
        await island.start()
    first, second = islands
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Sunny Island",
        unique_id=f"sunny_island:slcan:{adapters[0].port}",
        data={
            "device": "sunny_island",
            "can_interface": "slcan",
            "can_channel": adapters[0].port,
            "bitrate": 500000,
            "chemistry": "lifepo4",
            "cells": 16,
            "capacity_ah": 280.0,
            "source": "entities",
            "source_soc_entity": "sensor.house_battery_soc",
        },
    )
    try:
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        await wait_for(hass, lambda: first.accepted["soc"] == 55.0, timeout=10)
        assert not second.received.get(0x355)  # nothing on the second bus yet

        result = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_RECONFIGURE, "entry_id": entry.entry_id}
        )
        assert result["step_id"] == "sunny_island_reconfigure"
        assert select_values(result, "can_interface") == ["socketcan", "slcan"]
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"can_interface": "slcan"}
        )
        assert result["step_id"] == "sunny_island_channel"
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"can_channel": "/dev/no-such-adapter"}
        )
        assert result["errors"] == {"base": "cannot_open"}
        assert entry.data["can_channel"] == adapters[0].port
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"can_channel": adapters[1].port}
        )
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "sunny_island_reconfigured"
        assert entry.data["can_channel"] == adapters[1].port
        # The entry reloads and is the BMS of the Sunny Island behind the second adapter.
        await wait_for(hass, lambda: second.accepted["soc"] == 55.0, timeout=10)
        assert entry.state is ConfigEntryState.LOADED
        assert entry.unique_id == f"sunny_island:slcan:{adapters[0].port}"
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        for adapter, island, bus in zip(adapters, islands, buses, strict=True):
            await island.stop()
            bus.shutdown()
            await adapter.stop()


async def test_reconfigure_simulated_sunny_island_and_bms_abort(hass: HomeAssistant) -> None:
    for data in (
        {"device": "sunny_island", "simulated": True, "can_interface": "virtual"},
        {"device": "serial_bms", "simulated": True, "port": "", "protocol": "jbd"},
    ):
        entry = MockConfigEntry(domain=DOMAIN, data=data)
        entry.add_to_hass(hass)
        result = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_RECONFIGURE, "entry_id": entry.entry_id}
        )
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "simulated_fixed"


def schema_field(result: Any, key: str) -> tuple[Any, Any]:
    """The voluptuous marker and the selector of ``key`` in a form."""
    schema = result["data_schema"]
    assert schema is not None
    for marker, field in schema.schema.items():
        if str(marker) == key:
            return marker, field
    raise AssertionError(f"{key} not in the form")


async def test_sunny_island_battery_accepts_only_packs_that_fit(hass: HomeAssistant) -> None:
    """Cell counts outside the Sunny Island's voltage ranges are refused, with the reason."""
    hass.states.async_set("sensor.house_battery_soc", "55", {"unit_of_measurement": "%"})
    result = await start_simulated(hass, "sunny_island")
    assert result["step_id"] == "sunny_island_battery"
    # The form offers 13-16 cells (NMC 13-14, LiFePO4 15-16) and says which fit which chemistry.
    _marker, cells = schema_field(result, "cells")
    assert (cells.config["min"], cells.config["max"]) == (13, 16)
    assert result["description_placeholders"] == {"cell_counts": cell_counts_text()}
    assert cell_counts_text() == "LiFePO4 15 or 16 cells; Li-ion NMC 13 or 14 cells"
    flow_id = result["flow_id"]
    battery = {"chemistry": "lifepo4", "capacity_ah": 280, "source": "entities"}
    # An 11s LiFePO4 pack (charge voltage 38 V) never gets past the form's own range.
    with pytest.raises(InvalidData) as refused:
        await hass.config_entries.flow.async_configure(flow_id, {**battery, "cells": 11})
    assert "cells" in refused.value.schema_errors
    # 16 NMC cells are inside the form's range but charge to 65.6 V: refused next to the field.
    result = dict(
        await hass.config_entries.flow.async_configure(
            flow_id, {**battery, "chemistry": "nmc", "cells": 16}
        )
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"cells": "cells_not_allowed"}
    assert "{cell_counts}" in EN["config"]["error"]["cells_not_allowed"]
    result = dict(await hass.config_entries.flow.async_configure(flow_id, {**battery, "cells": 16}))
    assert result["step_id"] == "sunny_island_entities"
    _marker, invert = schema_field(result, CONF_SOURCE_INVERT_CURRENT)
    assert type(invert).__name__ == "BooleanSelector"
    result = dict(
        await hass.config_entries.flow.async_configure(
            flow_id, {"source_soc_entity": "sensor.house_battery_soc"}
        )
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"]["cells"] == 16
    assert result["data"]["chemistry"] == "lifepo4"
    # Not ticked: the sensor's sign is taken as it is.
    assert result["data"][CONF_SOURCE_INVERT_CURRENT] is False
    entry = result["result"]
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_sunny_island_entities_step_stores_inverted_current(hass: HomeAssistant) -> None:
    """A current sensor that counts discharging as positive is flagged for the runtime."""
    from custom_components.sma_victron_bridge.devices.sunny_island import runtime as sunny_island

    assert sunny_island.CONF_SOURCE_INVERT_CURRENT == CONF_SOURCE_INVERT_CURRENT
    hass.states.async_set("sensor.house_battery_soc", "55", {"unit_of_measurement": "%"})
    hass.states.async_set(
        "sensor.house_battery_current",
        "-12.5",
        {"unit_of_measurement": "A", "device_class": "current"},
    )
    result = await start_simulated(hass, "sunny_island")
    result = dict(
        await hass.config_entries.flow.async_configure(
            result["flow_id"],
            {"chemistry": "nmc", "cells": 14, "capacity_ah": 100, "source": "entities"},
        )
    )
    result = dict(
        await hass.config_entries.flow.async_configure(
            result["flow_id"],
            {
                "source_soc_entity": "sensor.house_battery_soc",
                "source_current_entity": "sensor.house_battery_current",
                CONF_SOURCE_INVERT_CURRENT: True,
            },
        )
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_SOURCE_INVERT_CURRENT] is True
    assert result["data"]["source_current_entity"] == "sensor.house_battery_current"
    entry = result["result"]
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)


def _simulated_si_entry() -> MockConfigEntry:
    return MockConfigEntry(
        domain=DOMAIN,
        title="Sunny Island",
        unique_id="sunny_island:simulated:options",
        data={
            "device": "sunny_island",
            "simulated": True,
            "can_interface": "virtual",
            "chemistry": "lifepo4",
            "cells": 16,
            "capacity_ah": 280.0,
            "source": "entities",
            "source_soc_entity": "sensor.house_battery_soc",
        },
    )


async def test_sunny_island_options_new_settings_guard_time_and_temperature(
    hass: HomeAssistant,
) -> None:
    """The options offer every tuned setting, the no-temperature consent and the guard time."""
    from custom_components.sma_victron_bridge.devices.sunny_island import runtime as sunny_island

    assert sunny_island.CONF_GUARD_TIME == CONF_GUARD_TIME
    hass.states.async_set("sensor.house_battery_soc", "55", {"unit_of_measurement": "%"})
    entry = _simulated_si_entry()
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["step_id"] == "charge_settings"
    labels = EN["options"]["step"]["charge_settings"]["data"]
    schema = result["data_schema"]
    assert schema is not None
    assert {str(marker) for marker in schema.schema} == set(labels)
    for name, bounds, default in (
        ("cell_absorption_voltage_without_cells", (3.35, 3.60), 3.40),
        ("cvl_ramp_rate", (0.5, 1000.0), 5.0),
        ("undervoltage_hysteresis", (0.01, 0.30), 0.10),
        (CONF_GUARD_TIME, (2, 50), DEFAULT_GUARD_TIME),
    ):
        marker, field = schema_field(result, name)
        assert (field.config["min"], field.config["max"]) == pytest.approx(bounds), name
        assert marker.default() == pytest.approx(default), name
    marker, consent = schema_field(result, "allow_charge_without_temperature")
    assert type(consent).__name__ == "BooleanSelector"
    assert marker.default() is False
    description = EN["options"]["step"]["charge_settings"]["data_description"]
    assert "0 °C" in description["allow_charge_without_temperature"]
    assert "0 A" in description[CONF_GUARD_TIME]
    flow_id = result["flow_id"]
    # Outside the bounds: refused by the form before anything is stored.
    for name, value in (
        (CONF_GUARD_TIME, 1),
        (CONF_GUARD_TIME, 51),
        ("cvl_ramp_rate", 0.2),
        ("undervoltage_hysteresis", 0.5),
    ):
        with pytest.raises(InvalidData):
            await hass.config_entries.options.async_configure(flow_id, {name: value})
    result = await hass.config_entries.options.async_configure(
        flow_id,
        {
            "allow_charge_without_temperature": True,
            "cvl_ramp_rate": 12.5,
            "undervoltage_hysteresis": 0.15,
            "cell_absorption_voltage_without_cells": 3.42,
            CONF_GUARD_TIME: 20,
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert entry.options[CONF_GUARD_TIME] == 20
    assert sunny_island.guard_time_from_entry(entry) == 20.0
    # Applied live, without a reload.
    assert entry.state is ConfigEntryState.LOADED
    settings = entry.runtime_data.data.settings
    assert settings.allow_charge_without_temperature is True
    assert settings.cvl_ramp_rate == 12.5
    assert settings.undervoltage_hysteresis == 0.15
    assert settings.cell_absorption_voltage_without_cells == 3.42
    assert settings.sunny_island_ranges is True
    # Reopened, the form shows what is stored.
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert schema_field(result, CONF_GUARD_TIME)[0].default() == 20
    assert schema_field(result, "allow_charge_without_temperature")[0].default() is True
    await hass.config_entries.options.async_configure(
        result["flow_id"], {"allow_charge_without_temperature": False}
    )
    await hass.async_block_till_done()
    assert entry.runtime_data.data.settings.allow_charge_without_temperature is False
    assert await hass.config_entries.async_unload(entry.entry_id)
