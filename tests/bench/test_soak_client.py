"""The soak run's client side against Home Assistant's real HTTP and websocket API, in-process.

The soak itself talks to a Home Assistant subprocess; here the same functions talk to the test
harness's instance over a loopback test server (no subprocess, a few seconds): authentication,
pings, the registry listing, the state_changed stream, diagnostics and the final checks. A
simulated Sunny Island entry (battery source: a plain sensor) supplies the BMS frame record.
"""

from __future__ import annotations

import asyncio
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from bench.soak import (
    PING_TIMEOUT,
    AvailabilityTracker,
    Commands,
    SoakResult,
    connect_time,
    develop,
    failures,
    final_checks,
    integration_entities,
    open_socket,
    watch_states,
)
from tests.integration.test_sunny_island import si_entry, start_si

SOC_ENTITY = "sensor.house_battery_soc"
PROBE = "sensor.soak_probe"


async def test_client_side_against_an_in_process_home_assistant(
    hass: HomeAssistant,
    aiohttp_client: ClientSessionGenerator,
    hass_access_token: str,
    socket_enabled: None,
) -> None:
    for component in ("websocket_api", "config", "diagnostics"):
        assert await async_setup_component(hass, component, {})
    hass.states.async_set(SOC_ENTITY, "55", {"unit_of_measurement": "%"})
    entry = si_entry("entities", source_soc_entity=SOC_ENTITY)
    await start_si(hass, entry)
    client: Any = await aiohttp_client(hass.http.app)
    base = str(client.make_url("")).rstrip("/")
    session = client.session

    commands = Commands(await open_socket(session, base, hass_access_token))
    ping = await commands.ping()
    assert ping is not None
    assert 0.0 < ping < PING_TIMEOUT
    connect = await connect_time(client.server.port)
    assert connect is not None
    assert connect < 1.0
    assert await connect_time(develop().free_port()) is None  # nothing listens there
    with pytest.raises(RuntimeError, match="no_such_command failed"):
        await commands.call({"type": "no_such_command"})

    watched = integration_entities(await commands.call({"type": "config/entity_registry/list"}))
    assert "sensor.sunny_island_charge_voltage_limit" in watched
    # An entity that shows up unavailable during the soak and stays so.
    watched.add(PROBE)
    result = SoakResult(minutes=1.0, day_minutes=2.0)
    tracker = AvailabilityTracker()
    events = await open_socket(session, base, hass_access_token)
    subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    reader = asyncio.create_task(watch_states(events, tracker, watched, result, subscribed))
    try:
        async with asyncio.timeout(5):
            await subscribed
        hass.states.async_set(PROBE, "unavailable")
        await asyncio.sleep(2.2)  # two BMS ticks: entity updates and frames
        api = develop().Api(session, base, hass_access_token)
        await final_checks(result, commands, api, tracker, watched)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await events.close()
        await commands.close()

    assert result.events >= 1
    assert tracker.state(PROBE) == "unavailable"
    assert result.watched == len(watched)
    assert [u.entity_id for u in result.unavailable] == [PROBE]
    assert result.unavailable[0].at_end
    assert result.si_entries == 1
    limits = result.frames[("Sunny Island", "0x351")]
    assert limits.count >= 2
    assert limits.max_gap is not None
    assert 0.9 <= limits.max_gap <= 1.1
    assert result.entries_not_loaded == []
    reasons = failures(result)
    assert any(reason.startswith(f"entity {PROBE}: unavailable at the end") for reason in reasons)
    assert not any("0x351" in reason or "0x355" in reason for reason in reasons)
    assert await hass.config_entries.async_unload(entry.entry_id)
