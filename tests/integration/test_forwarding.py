"""Battery-sense forwarding: a BMV's voltage and temperature reach a simulated MPPT over HEX."""

from __future__ import annotations

import asyncio

from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
import pytest

from custom_components.sma_victron_bridge.const import (
    CONF_FORWARD_SOURCE,
    CONF_FORWARD_TEMPERATURE_ENTITY,
    CONF_FORWARD_VOLTAGE_ENTITY,
    CONF_STALE_AFTER,
    DOMAIN,
)
from custom_components.sma_victron_bridge.control.forwarding import ForwardState
from custom_components.sma_victron_bridge.devices.vedirect.forward import stale_issue_id
from custom_components.sma_victron_bridge.simulators.vedirect import VeDirectSimulator

from .conftest import vedirect_entry
from .test_vedirect import MPPT, setup_entry, state_value, wait_for

SENSE_V = 0x2002
SENSE_T = 0x2003


def writes_of(sim: VeDirectSimulator, register: int) -> list[tuple[float, bytes]]:
    return [(at, value) for at, reg, value in sim.writes if reg == register]


async def test_bmv_forwarded_to_mppt_and_released_on_unload(
    hass: HomeAssistant, mppt_sim: VeDirectSimulator, bmv_sim: VeDirectSimulator
) -> None:
    bmv = vedirect_entry(bmv_sim, "battery_monitor")
    await setup_entry(hass, bmv)
    bmv_sim.set_value("V", "13180")
    bmv_sim.set_value("T", "23")
    await wait_for(hass, lambda: bmv.runtime_data.snapshot is not None)
    mppt = vedirect_entry(
        mppt_sim, "mppt", {CONF_FORWARD_SOURCE: bmv.entry_id, CONF_STALE_AFTER: 30.0}
    )
    await setup_entry(hass, mppt)

    # 13.18 V is written as 1318 (0.01 V), 23 °C as 2300 (0.01 °C): PROTOCOLS.md's examples.
    await wait_for(hass, lambda: len(writes_of(mppt_sim, SENSE_V)) >= 2, timeout=8)
    assert writes_of(mppt_sim, SENSE_V)[-1][1] == (1318).to_bytes(2, "little")
    assert writes_of(mppt_sim, SENSE_T)[0][1] == (2300).to_bytes(2, "little", signed=True)
    # Voltage every 3 s, temperature every 9 s.
    first, second = writes_of(mppt_sim, SENSE_V)[:2]
    assert 2.5 <= second[0] - first[0] <= 4.0
    assert len(writes_of(mppt_sim, SENSE_T)) == 1
    # The charger reports it uses the remote voltage (network status bit 7).
    assert int.from_bytes(mppt_sim.registers[0x200F], "little") & 0x80
    assert state_value(hass, f"{MPPT}_battery_sense") == "forwarding"
    assert state_value(hass, f"{MPPT}_battery_sense_voltage") == "13.18"
    assert state_value(hass, f"{MPPT}_battery_sense_temperature") == "23.0"

    assert await hass.config_entries.async_unload(mppt.entry_id)
    assert writes_of(mppt_sim, SENSE_V)[-1][1] == b"\xff\xff"
    assert writes_of(mppt_sim, SENSE_T)[-1][1] == b"\xff\x7f"
    assert not int.from_bytes(mppt_sim.registers[0x200F], "little") & 0xC0
    assert await hass.config_entries.async_unload(bmv.entry_id)


async def test_stale_source_stops_writes_and_raises_repair(
    hass: HomeAssistant, mppt_sim: VeDirectSimulator, bmv_sim: VeDirectSimulator
) -> None:
    bmv = vedirect_entry(bmv_sim, "battery_monitor")
    await setup_entry(hass, bmv)
    await wait_for(hass, lambda: bmv.runtime_data.snapshot is not None)
    mppt = vedirect_entry(
        mppt_sim, "mppt", {CONF_FORWARD_SOURCE: bmv.entry_id, CONF_STALE_AFTER: 3.0}
    )
    await setup_entry(hass, mppt)
    await wait_for(hass, lambda: len(writes_of(mppt_sim, SENSE_V)) >= 1, timeout=5)
    issues = ir.async_get(hass)

    await bmv_sim.unplug()
    await wait_for(
        hass,
        lambda: issues.async_get_issue(DOMAIN, stale_issue_id(mppt.entry_id)) is not None,
        timeout=10,
    )
    assert state_value(hass, f"{MPPT}_battery_sense") == "stale"
    assert state_value(hass, f"{MPPT}_battery_sense_voltage") == "unknown"
    count = len(writes_of(mppt_sim, SENSE_V))
    await asyncio.sleep(3.5)
    assert len(writes_of(mppt_sim, SENSE_V)) == count

    await bmv_sim.replug()
    await wait_for(
        hass,
        lambda: issues.async_get_issue(DOMAIN, stale_issue_id(mppt.entry_id)) is None,
        timeout=15,
    )
    await wait_for(hass, lambda: len(writes_of(mppt_sim, SENSE_V)) > count, timeout=5)
    # The simulator records a write before the charger's answer reaches the client.
    await wait_for(hass, lambda: state_value(hass, f"{MPPT}_battery_sense") == "forwarding")
    assert await hass.config_entries.async_unload(mppt.entry_id)
    assert await hass.config_entries.async_unload(bmv.entry_id)


async def test_forward_from_home_assistant_sensors(
    hass: HomeAssistant, mppt_sim: VeDirectSimulator
) -> None:
    hass.states.async_set("sensor.house_battery_voltage", "13.61", {"unit_of_measurement": "V"})
    hass.states.async_set("sensor.house_battery_temperature", "77.0", {"unit_of_measurement": "°F"})
    mppt = vedirect_entry(
        mppt_sim,
        "mppt",
        {
            CONF_FORWARD_SOURCE: "entities",
            CONF_STALE_AFTER: 30.0,
            CONF_FORWARD_VOLTAGE_ENTITY: "sensor.house_battery_voltage",
            CONF_FORWARD_TEMPERATURE_ENTITY: "sensor.house_battery_temperature",
        },
    )
    await setup_entry(hass, mppt)
    await wait_for(hass, lambda: len(writes_of(mppt_sim, SENSE_T)) >= 1, timeout=5)
    assert writes_of(mppt_sim, SENSE_V)[0][1] == (1361).to_bytes(2, "little")
    # 77 °F is 25 °C: the charger always gets Celsius.
    assert writes_of(mppt_sim, SENSE_T)[0][1] == (2500).to_bytes(2, "little", signed=True)
    assert await hass.config_entries.async_unload(mppt.entry_id)


async def test_forwarding_pauses_while_charger_unplugged(
    hass: HomeAssistant, mppt_sim: VeDirectSimulator, bmv_sim: VeDirectSimulator
) -> None:
    bmv = vedirect_entry(bmv_sim, "battery_monitor")
    await setup_entry(hass, bmv)
    await wait_for(hass, lambda: bmv.runtime_data.snapshot is not None)
    mppt = vedirect_entry(mppt_sim, "mppt", {CONF_FORWARD_SOURCE: bmv.entry_id})
    await setup_entry(hass, mppt)
    await wait_for(hass, lambda: len(writes_of(mppt_sim, SENSE_V)) >= 1, timeout=5)
    await mppt_sim.unplug()
    await wait_for(hass, lambda: state_value(hass, f"{MPPT}_battery_voltage") == STATE_UNAVAILABLE)
    before = len(writes_of(mppt_sim, SENSE_V))
    await mppt_sim.replug()
    await wait_for(hass, lambda: len(writes_of(mppt_sim, SENSE_V)) > before, timeout=10)
    assert await hass.config_entries.async_unload(mppt.entry_id)
    assert await hass.config_entries.async_unload(bmv.entry_id)


async def test_a_forwarding_status_change_does_not_revive_an_unplugged_charger(
    hass: HomeAssistant, mppt_sim: VeDirectSimulator, bmv_sim: VeDirectSimulator
) -> None:
    """The forwarding status is the integration's own: it changes while the MPPT is unplugged
    (its source goes stale too here), and that must not make the MPPT's entities available."""
    bmv = vedirect_entry(bmv_sim, "battery_monitor")
    await setup_entry(hass, bmv)
    await wait_for(hass, lambda: bmv.runtime_data.snapshot is not None)
    mppt = vedirect_entry(
        mppt_sim, "mppt", {CONF_FORWARD_SOURCE: bmv.entry_id, CONF_STALE_AFTER: 3.0}
    )
    await setup_entry(hass, mppt)
    await wait_for(hass, lambda: len(writes_of(mppt_sim, SENSE_V)) >= 1, timeout=5)
    await mppt_sim.unplug()
    await wait_for(hass, lambda: state_value(hass, f"{MPPT}_battery_voltage") == STATE_UNAVAILABLE)
    await bmv_sim.unplug()
    forward = mppt.runtime_data.data.forward
    await wait_for(hass, lambda: forward.state is ForwardState.STALE, timeout=10)
    await asyncio.sleep(0.2)
    await hass.async_block_till_done()
    assert state_value(hass, f"{MPPT}_battery_voltage") == STATE_UNAVAILABLE
    assert state_value(hass, f"{MPPT}_battery_sense") == STATE_UNAVAILABLE
    await mppt_sim.replug()
    await wait_for(hass, lambda: state_value(hass, f"{MPPT}_battery_sense") == "stale", timeout=10)
    assert await hass.config_entries.async_unload(mppt.entry_id)
    assert await hass.config_entries.async_unload(bmv.entry_id)


@pytest.mark.parametrize("source", ["none"])
async def test_no_forwarding_without_option(
    hass: HomeAssistant, mppt_sim: VeDirectSimulator, source: str
) -> None:
    mppt = vedirect_entry(mppt_sim, "mppt", {CONF_FORWARD_SOURCE: source})
    await setup_entry(hass, mppt)
    await asyncio.sleep(1.5)
    assert writes_of(mppt_sim, SENSE_V) == []
    assert hass.states.get(f"{MPPT}_battery_sense") is None
    assert await hass.config_entries.async_unload(mppt.entry_id)


async def test_home_assistant_stop_releases_forwarding(
    hass: HomeAssistant, mppt_sim: VeDirectSimulator, bmv_sim: VeDirectSimulator
) -> None:
    bmv = vedirect_entry(bmv_sim, "battery_monitor")
    await setup_entry(hass, bmv)
    await wait_for(hass, lambda: bmv.runtime_data.snapshot is not None)
    mppt = vedirect_entry(mppt_sim, "mppt", {CONF_FORWARD_SOURCE: bmv.entry_id})
    await setup_entry(hass, mppt)
    await wait_for(hass, lambda: len(writes_of(mppt_sim, SENSE_V)) >= 1, timeout=5)
    # Home Assistant does not unload entries when it stops: its shutdown jobs run first, while
    # the serial readers still run (they are cancelled in the next stage), and release.
    await hass.async_stop()
    assert writes_of(mppt_sim, SENSE_V)[-1][1] == b"\xff\xff"
    assert writes_of(mppt_sim, SENSE_T)[-1][1] == b"\xff\x7f"


async def test_options_change_starts_forwarding(
    hass: HomeAssistant, mppt_sim: VeDirectSimulator, bmv_sim: VeDirectSimulator
) -> None:
    bmv = vedirect_entry(bmv_sim, "battery_monitor")
    await setup_entry(hass, bmv)
    mppt = vedirect_entry(mppt_sim, "mppt")
    await setup_entry(hass, mppt)
    assert hass.states.get(f"{MPPT}_battery_sense") is None
    result = await hass.config_entries.options.async_init(mppt.entry_id)
    await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_FORWARD_SOURCE: bmv.entry_id, CONF_STALE_AFTER: 30}
    )
    await hass.async_block_till_done()
    await wait_for(hass, lambda: len(writes_of(mppt_sim, SENSE_V)) >= 1, timeout=5)
    await wait_for(hass, lambda: state_value(hass, f"{MPPT}_battery_sense") == "forwarding")
    assert await hass.config_entries.async_unload(mppt.entry_id)
    assert await hass.config_entries.async_unload(bmv.entry_id)


async def test_entity_source_edge_cases(hass: HomeAssistant, mppt_sim: VeDirectSimulator) -> None:
    """Unavailable or non-numeric sensors are not forwarded; Kelvin is converted."""
    hass.states.async_set("sensor.pack_temperature", "unavailable")
    mppt = vedirect_entry(
        mppt_sim,
        "mppt",
        {
            CONF_FORWARD_SOURCE: "entities",
            CONF_FORWARD_TEMPERATURE_ENTITY: "sensor.pack_temperature",
        },
    )
    await setup_entry(hass, mppt)
    await asyncio.sleep(1.5)
    assert writes_of(mppt_sim, SENSE_T) == []
    assert state_value(hass, f"{MPPT}_battery_sense") == "waiting"
    hass.states.async_set("sensor.pack_temperature", "warm")
    await asyncio.sleep(1.2)
    assert writes_of(mppt_sim, SENSE_T) == []
    hass.states.async_set("sensor.pack_temperature", "293.15", {"unit_of_measurement": "K"})
    await wait_for(hass, lambda: len(writes_of(mppt_sim, SENSE_T)) >= 1, timeout=5)
    assert writes_of(mppt_sim, SENSE_T)[0][1] == (2000).to_bytes(2, "little", signed=True)
    assert writes_of(mppt_sim, SENSE_V) == []
    assert await hass.config_entries.async_unload(mppt.entry_id)


async def test_failed_writes_are_retried_and_release_failure_is_tolerated(
    hass: HomeAssistant,
    mppt_sim: VeDirectSimulator,
    bmv_sim: VeDirectSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bmv = vedirect_entry(bmv_sim, "battery_monitor")
    await setup_entry(hass, bmv)
    await wait_for(hass, lambda: bmv.runtime_data.snapshot is not None)
    mppt = vedirect_entry(mppt_sim, "mppt", {CONF_FORWARD_SOURCE: bmv.entry_id})
    await setup_entry(hass, mppt)
    await wait_for(hass, lambda: len(writes_of(mppt_sim, SENSE_V)) >= 1, timeout=5)
    # A charger that stops answering HEX: writes time out and are retried every tick.
    mppt_sim.set_silent(True)
    count = len(writes_of(mppt_sim, SENSE_V))
    await asyncio.sleep(7.5)  # three 1 s attempts per write: at least one write fails
    mppt_sim.set_silent(False)
    await wait_for(hass, lambda: len(writes_of(mppt_sim, SENSE_V)) > count, timeout=8)
    # Unplugged at unload: the release cannot be written, which is logged, not raised.
    await mppt_sim.unplug()
    await wait_for(hass, lambda: state_value(hass, f"{MPPT}_battery_voltage") == "unavailable")
    assert await hass.config_entries.async_unload(mppt.entry_id)
    assert "Could not release battery-sense voltage" in caplog.text
    assert await hass.config_entries.async_unload(bmv.entry_id)
