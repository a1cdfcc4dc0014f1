"""A VE.Direct entry in Home Assistant, fed by the simulator over a real PTY."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from homeassistant.components.sensor import ATTR_STATE_CLASS, SensorStateClass
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import (
    ATTR_DEVICE_CLASS,
    ATTR_UNIT_OF_MEASUREMENT,
    STATE_UNAVAILABLE,
)
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.sma_victron_bridge.control.snapshot import BatterySnapshot
from custom_components.sma_victron_bridge.devices.vedirect import runtime as vedirect_device
from custom_components.sma_victron_bridge.simulators.vedirect import VeDirectSimulator
from tests.integration.devices import find_device

from .conftest import BMV_SERIAL, MPPT_SERIAL, vedirect_entry

MPPT = "sensor.mppt_hq2101test1"
BMV = "sensor.battery_monitor_hq2102test2"


async def wait_for(
    hass: HomeAssistant, predicate: Callable[[], bool], timeout: float = 5.0
) -> None:
    """Let the event loop run until ``predicate`` holds (data arrives over a real PTY)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)
            await hass.async_block_till_done()


def state_value(hass: HomeAssistant, entity_id: str) -> str | None:
    state = hass.states.get(entity_id)
    return None if state is None else state.state


def entry_state(entry: MockConfigEntry) -> ConfigEntryState:
    """The entry's state, read fresh (a plain attribute access would be narrowed by mypy)."""
    state: ConfigEntryState = entry.state
    return state


async def setup_entry(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED


async def test_mppt_states_follow_the_wire(
    hass: HomeAssistant, mppt_sim: VeDirectSimulator
) -> None:
    entry = vedirect_entry(mppt_sim, "mppt")
    await setup_entry(hass, entry)
    mppt_sim.set_value("V", "13280")
    mppt_sim.set_value("VPV", "36500")
    mppt_sim.set_value("PPV", "187")
    mppt_sim.set_value("CS", "4")
    mppt_sim.set_value("H19", "12345")
    mppt_sim.set_value("H20", "87")
    await wait_for(hass, lambda: state_value(hass, f"{MPPT}_pv_power") == "187")
    assert state_value(hass, f"{MPPT}_battery_voltage") == "13.28"
    assert state_value(hass, f"{MPPT}_pv_voltage") == "36.5"
    assert state_value(hass, f"{MPPT}_charge_state") == "absorption"
    yield_total = hass.states.get(f"{MPPT}_yield_total")
    assert yield_total is not None
    assert yield_total.state == "123.45"
    assert yield_total.attributes[ATTR_DEVICE_CLASS] == "energy"
    assert yield_total.attributes[ATTR_STATE_CLASS] == SensorStateClass.TOTAL_INCREASING
    assert yield_total.attributes[ATTR_UNIT_OF_MEASUREMENT] == "kWh"
    assert state_value(hass, f"{MPPT}_yield_today") == "0.87"
    # Battery monitor labels never appear on a charger.
    assert hass.states.get(f"{MPPT}_state_of_charge") is None

    device = find_device(hass, MPPT_SERIAL)
    assert device is not None
    assert device.manufacturer == "Victron Energy"
    assert device.model == "SmartSolar MPPT 75|15"
    assert device.serial_number == MPPT_SERIAL
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_bmv_states_and_energy(hass: HomeAssistant, bmv_sim: VeDirectSimulator) -> None:
    entry = vedirect_entry(bmv_sim, "battery_monitor")
    await setup_entry(hass, entry)
    published: list[BatterySnapshot] = []
    unsubscribe = entry.runtime_data.async_subscribe_snapshot(published.append)
    bmv_sim.set_value("SOC", "876")
    bmv_sim.set_value("H18", "4521")
    await wait_for(hass, lambda: state_value(hass, f"{BMV}_state_of_charge") == "87.6")
    soc = hass.states.get(f"{BMV}_state_of_charge")
    assert soc is not None
    assert soc.attributes[ATTR_DEVICE_CLASS] == "battery"
    await wait_for(hass, lambda: state_value(hass, f"{BMV}_charged_energy") == "45.21")
    charged = hass.states.get(f"{BMV}_charged_energy")
    assert charged is not None
    assert charged.attributes[ATTR_STATE_CLASS] == SensorStateClass.TOTAL_INCREASING
    assert hass.states.get(f"{BMV}_pv_power") is None
    assert entry.runtime_data.snapshot is not None
    assert entry.runtime_data.snapshot.soc == pytest.approx(87.6)
    assert published
    assert published[-1] is entry.runtime_data.snapshot
    unsubscribe()
    unsubscribe()  # a second call is harmless
    count = len(published)
    await asyncio.sleep(0.5)
    assert len(published) == count
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_unplug_makes_unavailable_and_replug_recovers(
    hass: HomeAssistant, mppt_sim: VeDirectSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    entry = vedirect_entry(mppt_sim, "mppt")
    await setup_entry(hass, entry)
    voltage = f"{MPPT}_battery_voltage"
    await wait_for(hass, lambda: state_value(hass, voltage) not in (None, STATE_UNAVAILABLE))
    await mppt_sim.unplug()
    await wait_for(hass, lambda: state_value(hass, voltage) == STATE_UNAVAILABLE)
    assert caplog.text.count("stopped answering") == 1
    mppt_sim.set_value("V", "12950")
    await mppt_sim.replug()
    await wait_for(hass, lambda: state_value(hass, voltage) == "12.95", timeout=10)
    assert caplog.text.count("is back") == 1
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_silence_makes_unavailable(
    hass: HomeAssistant, mppt_sim: VeDirectSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vedirect_device, "SILENCE_TIMEOUT", 1.0)
    entry = vedirect_entry(mppt_sim, "mppt")
    await setup_entry(hass, entry)
    voltage = f"{MPPT}_battery_voltage"
    mppt_sim.set_silent(True)
    await wait_for(hass, lambda: state_value(hass, voltage) == STATE_UNAVAILABLE, timeout=15)
    mppt_sim.set_silent(False)
    await wait_for(hass, lambda: state_value(hass, voltage) != STATE_UNAVAILABLE, timeout=15)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_garbage_is_counted_not_applied(
    hass: HomeAssistant, mppt_sim: VeDirectSimulator
) -> None:
    entry = vedirect_entry(mppt_sim, "mppt")
    await setup_entry(hass, entry)
    mppt_sim.set_value("V", "13000")
    await wait_for(hass, lambda: state_value(hass, f"{MPPT}_battery_voltage") == "13.0")
    mppt_sim.set_corrupt_checksums(True)
    mppt_sim.set_value("V", "9999")
    await wait_for(hass, lambda: entry.runtime_data.diagnostics()["checksum_errors"] >= 3)
    assert state_value(hass, f"{MPPT}_battery_voltage") == "13.0"
    mppt_sim.set_corrupt_checksums(False)
    await wait_for(hass, lambda: state_value(hass, f"{MPPT}_battery_voltage") == "9.999")
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_silent_device_at_setup_retries(
    hass: HomeAssistant, mppt_sim: VeDirectSimulator
) -> None:
    mppt_sim.set_silent(True)
    entry = vedirect_entry(mppt_sim, "mppt")
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert entry.reason is not None
    assert mppt_sim.port in entry.reason


async def test_reload_keeps_entities(hass: HomeAssistant, mppt_sim: VeDirectSimulator) -> None:
    entry = vedirect_entry(mppt_sim, "mppt")
    await setup_entry(hass, entry)
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    await wait_for(
        hass,
        lambda: state_value(hass, f"{MPPT}_battery_voltage") not in (None, STATE_UNAVAILABLE),
    )
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert entry_state(entry) is ConfigEntryState.NOT_LOADED
    assert state_value(hass, f"{MPPT}_battery_voltage") == STATE_UNAVAILABLE


async def test_settings_written_and_read_back(
    hass: HomeAssistant, mppt_sim: VeDirectSimulator
) -> None:
    entry = vedirect_entry(mppt_sim, "mppt")
    await setup_entry(hass, entry)
    number = "number.mppt_hq2101test1_absorption_voltage"
    await wait_for(hass, lambda: state_value(hass, number) not in (None, STATE_UNAVAILABLE))
    absorption = hass.states.get(number)
    assert absorption is not None
    # The charger is set to a 12 V system (register 0xEDEF): 12.0-15.6 V are allowed.
    assert (absorption.attributes["min"], absorption.attributes["max"]) == (12.0, 15.6)
    await hass.services.async_call(
        "number", "set_value", {"entity_id": number, "value": 14.2}, blocking=True
    )
    assert mppt_sim.registers[0xEDF7] == (1420).to_bytes(2, "little")
    assert state_value(hass, number) == "14.2"

    with pytest.raises(ServiceValidationError):
        await hass.services.async_call(
            "number", "set_value", {"entity_id": number, "value": 25.0}, blocking=True
        )
    assert mppt_sim.registers[0xEDF7] == (1420).to_bytes(2, "little")

    with pytest.raises(ServiceValidationError):
        await hass.services.async_call(
            "number",
            "set_value",
            {"entity_id": "number.mppt_hq2101test1_float_voltage", "value": 14.3},
            blocking=True,
        )

    current = "number.mppt_hq2101test1_battery_maximum_current"
    state = hass.states.get(current)
    assert state is not None
    assert state.attributes["max"] == 15.0
    await hass.services.async_call(
        "number", "set_value", {"entity_id": current, "value": 10.5}, blocking=True
    )
    assert mppt_sim.registers[0xEDF0] == (105).to_bytes(2, "little")

    select = "select.mppt_hq2101test1_load_output_mode"
    await hass.services.async_call(
        "select", "select_option", {"entity_id": select, "option": "off"}, blocking=True
    )
    assert mppt_sim.registers[0xEDAB] == b"\x00"
    assert state_value(hass, select) == "off"
    await wait_for(
        hass, lambda: state_value(hass, "binary_sensor.mppt_hq2101test1_load_output") == "off"
    )

    mppt_sim.set_silent(True)
    with pytest.raises(HomeAssistantError):
        await hass.services.async_call(
            "select", "select_option", {"entity_id": select, "option": "on"}, blocking=True
        )
    mppt_sim.set_silent(False)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_diagnostics_redacts_identity(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, bmv_sim: VeDirectSimulator
) -> None:
    entry = vedirect_entry(bmv_sim, "battery_monitor")
    await setup_entry(hass, entry)
    await wait_for(hass, lambda: "H18" in entry.runtime_data.diagnostics()["fields"])
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    text = repr(diagnostics)
    assert BMV_SERIAL not in text
    assert bmv_sim.port not in text
    assert diagnostics["entry"]["data"]["port"] == "**REDACTED**"
    assert diagnostics["device"]["family"] == "battery_monitor"
    assert diagnostics["device"]["fields"]["PID"] == "0xA381"
    assert diagnostics["device"]["link_up"] is True
    assert await hass.config_entries.async_unload(entry.entry_id)
