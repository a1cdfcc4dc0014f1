"""Sunny Boy entries in Home Assistant, against the Sunny Boy simulator over real links.

Speedwire runs over real UDP on 127.0.0.1 (hence ``socket_enabled``), Bluetooth over a socket
pair standing in for RFCOMM (the simulated-Bluetooth option). The simulator runs with
``seed=7`` and its clock frozen at 2024-06-21 11:17:13 UTC, so every value is fixed: the
numbers below are the simulator's model at that moment (SB 3000TL-21, serial 2130012345,
firmware 02.55.03.R, 2622 W on L1 at 229.46 V, …).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import UTC, datetime
import logging
import socket
import time
from typing import Any
from zoneinfo import ZoneInfo

from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE, EntityCategory, Platform
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import (
    device_registry as dr,
    entity_registry as er,
    issue_registry as ir,
)
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.sma_victron_bridge import async_remove_config_entry_device
from custom_components.sma_victron_bridge.const import DOMAIN
from custom_components.sma_victron_bridge.devices.base import PushCoordinator
from custom_components.sma_victron_bridge.devices.sunny_boy import (
    flow as config_flow_sunny_boy,
    link as sunny_boy_link,
    runtime as sunny_boy_device,
    statistics as sunny_boy_statistics,
)
from custom_components.sma_victron_bridge.devices.sunny_boy.link import (
    LinkConfig,
    SunnyBoyProbeError,
    async_probe_sunny_boy,
)
from custom_components.sma_victron_bridge.devices.sunny_boy.plant import (
    InverterView,
    PlantMember,
    async_add_member_entities,
    async_update_member_device,
    sensor_platform,
)
from custom_components.sma_victron_bridge.devices.sunny_boy.statistics import (
    HourlyYield,
    daily_rows_before,
    hourly_yield,
    statistic_id,
    statistic_metadata,
)
from custom_components.sma_victron_bridge.protocols.sma_bt import (
    CMD_HISTORY_5MIN,
    CMD_HISTORY_DAILY,
    Endpoint,
)
from custom_components.sma_victron_bridge.protocols.sma_transport import bluetooth_available
from custom_components.sma_victron_bridge.simulators.day_clock import shared_day_clock
from custom_components.sma_victron_bridge.simulators.sunny_boy import SunnyBoySimulator
from tests.integration.devices import find_device

from .test_config_flow import start_simulated
from .test_vedirect import entry_state, state_value, wait_for

MOMENT = 1_718_968_633  # 2024-06-21 11:17:13 UTC
SERIAL = "2130012345"
TITLE = f"SB 3000TL-21 {SERIAL}"
SB = "sensor.sb_3000tl_21_2130012345"
STAT_ID = f"{DOMAIN}:sunny_boy_{SERIAL}_energy"

no_bluetooth = pytest.mark.skipif(
    bluetooth_available(), reason="this Python has Bluetooth sockets: a real adapter would be used"
)


@dataclass
class Inverter:
    """A simulated inverter and the UDP port it serves Speedwire on."""

    sim: SunnyBoySimulator
    port: int


@pytest.fixture(autouse=True)
def fast_link(monkeypatch: pytest.MonkeyPatch) -> None:
    """A silent inverter is noticed in 0.6 s and retried every 0.1 s instead of minutes."""
    monkeypatch.setattr(sunny_boy_link, "REQUEST_TIMEOUT", 0.3)
    monkeypatch.setattr(sunny_boy_link, "RETRIES", 1)
    monkeypatch.setattr(sunny_boy_link, "CONNECT_TIMEOUT", 5.0)
    monkeypatch.setattr(sunny_boy_device, "RECONNECT_BACKOFF", (0.1,))
    monkeypatch.setattr(sunny_boy_device, "MIN_POLL_INTERVAL", 0.1)


@pytest.fixture
def mock_recorder_before_hass(request: pytest.FixtureRequest) -> None:
    """Tests with ``recorder_mock`` need its database prepared before ``hass`` starts.

    Every test here gets ``hass`` early through the autouse custom-integrations fixture, so
    the recorder's database fixture is pulled in from the hook ``hass`` runs first.
    """
    if "recorder_mock" in request.fixturenames:
        request.getfixturevalue("recorder_db_url")


@pytest.fixture
async def inverter(socket_enabled: None) -> AsyncGenerator[Inverter]:
    """The SB 3000TL-21 at the frozen moment, on Speedwire at 127.0.0.1."""
    sim = SunnyBoySimulator(seed=7, clock=lambda: MOMENT)
    port = await sim.serve_speedwire("127.0.0.1", 0)
    yield Inverter(sim, port)
    await sim.close()


def sb_entry(
    port: int, *, password: str = "0000", options: dict[str, Any] | None = None, **data: Any
) -> MockConfigEntry:
    """An entry as the config flow creates it, polling fast for the tests."""
    return MockConfigEntry(
        domain=DOMAIN,
        title=TITLE,
        unique_id=SERIAL,
        data={
            "device": "sunny_boy",
            "transport": "speedwire",
            "host": "127.0.0.1",
            "port": port,
            "password": password,
            "user_group": "user",
            "serial_number": SERIAL,
            "model": "SB 3000TL-21",
            "sw_version": "02.55.03.R",
            **data,
        },
        options={"poll_interval": 0.2, **(options or {})},
    )


async def setup(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED


def free_udp_port() -> int:
    """A port nobody listens on (an inverter that is off)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def _start_flow(hass: HomeAssistant) -> str:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert "sunny_boy" in result["menu_options"]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "sunny_boy"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "sunny_boy"
    return str(result["flow_id"])


async def _configure(hass: HomeAssistant, flow_id: str, data: dict[str, Any]) -> dict[str, Any]:
    return dict(await hass.config_entries.flow.async_configure(flow_id, data))


def _speedwire(port: int, password: str = "0000") -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": port, "password": password, "user_group": "user"}


# --------------------------------------------------------------------------------------------
# Config flow
# --------------------------------------------------------------------------------------------


async def test_flow_speedwire_errors_then_entry(hass: HomeAssistant, inverter: Inverter) -> None:
    flow_id = await _start_flow(hass)
    result = await _configure(hass, flow_id, {"transport": "speedwire"})
    assert result["step_id"] == "sunny_boy_speedwire"
    # Nobody at that port: the log-on times out.
    result = await _configure(hass, flow_id, _speedwire(free_udp_port()))
    assert result["errors"] == {"base": "cannot_connect"}
    # 13 characters cannot be a Sunny Boy password.
    result = await _configure(hass, flow_id, _speedwire(inverter.port, "0123456789abc"))
    assert result["errors"] == {"base": "invalid_password"}
    result = await _configure(hass, flow_id, _speedwire(inverter.port, "9999"))
    assert result["errors"] == {"base": "wrong_password"}
    # Sunny Explorer is connected: busy, its own error, even with the right password.
    inverter.sim.set_busy(True)
    result = await _configure(hass, flow_id, _speedwire(inverter.port))
    assert result["errors"] == {"base": "inverter_busy"}
    inverter.sim.set_busy(False)
    result = await _configure(hass, flow_id, _speedwire(inverter.port))
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == TITLE
    assert result["result"].unique_id == SERIAL
    assert result["data"] == {
        "device": "sunny_boy",
        "transport": "speedwire",
        "host": "127.0.0.1",
        "port": inverter.port,
        "password": "0000",
        "user_group": "user",
        "serial_number": SERIAL,
        "model": "SB 3000TL-21",
        "sw_version": "02.55.03.R",
    }
    entry = result["result"]
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)


@no_bluetooth
async def test_flow_bluetooth_unavailable_on_this_python(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow_id = await _start_flow(hass)
    result = await _configure(hass, flow_id, {"transport": "bluetooth"})
    assert result["step_id"] == "sunny_boy"
    assert result["errors"] == {"base": "bluetooth_unavailable"}
    # Even past the first check (a container whose Python lost Bluetooth later) the
    # connection test reports it instead of failing obscurely.
    monkeypatch.setattr(config_flow_sunny_boy, "bluetooth_available", lambda: True)
    result = await _configure(hass, flow_id, {"transport": "bluetooth"})
    assert result["step_id"] == "sunny_boy_bluetooth"
    login = {"password": "0000", "user_group": "user"}
    result = await _configure(hass, flow_id, {"bt_address": "00:80:25:12:34", **login})
    assert result["errors"] == {"bt_address": "invalid_address"}
    result = await _configure(hass, flow_id, {"bt_address": "00-80-25-12-34-56", **login})
    assert result["errors"] == {"base": "bluetooth_unavailable"}


async def test_flow_aborts_for_a_configured_inverter(
    hass: HomeAssistant, inverter: Inverter
) -> None:
    sb_entry(inverter.port).add_to_hass(hass)
    flow_id = await _start_flow(hass)
    await _configure(hass, flow_id, {"transport": "speedwire"})
    result = await _configure(hass, flow_id, _speedwire(inverter.port))
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_flow_simulated_inverters(hass: HomeAssistant, socket_enabled: None) -> None:
    # The transport picker of real inverters never offers them.
    start = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await _configure(hass, start["flow_id"], {"next_step_id": "sunny_boy"})
    schema = result["data_schema"]
    assert schema.schema["transport"].config["options"] == ["bluetooth", "speedwire"]
    for transport in ("speedwire", "bluetooth"):
        result = await start_simulated(hass, f"sunny_boy_{transport}")
        assert result["type"] is FlowResultType.CREATE_ENTRY
        assert result["title"].startswith("Simulated SB 3000TL-21 2130")
        assert result["data"]["simulated"] is True
        entry = result["result"]
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED
        runtime: Any = entry.runtime_data
        assert runtime.data.spot is not None  # read while setting up
        assert result["data"]["transport"] == transport
        if transport == "bluetooth":
            # 0xB4 / 255 from the simulated inverter's Bluetooth variable.
            signal = hass.states.async_all("sensor")
            assert any(s.state == "70.6" for s in signal if "signal_strength" in s.entity_id)
        assert await hass.config_entries.async_unload(entry.entry_id)


async def test_simulated_bluetooth_link_drops_and_comes_back(
    hass: HomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Simulated inverter",
        unique_id="2130000042",
        data={
            "device": "sunny_boy",
            "transport": "bluetooth",
            "simulated": True,
            "bt_address": "00:80:25:12:34:56",
            "password": "0000",
            "user_group": "user",
            "serial_number": "2130000042",
        },
        options={"poll_interval": 0.2},
    )
    await setup(hass, entry)
    signal = "sensor.simulated_inverter_bluetooth_signal_strength"
    assert state_value(hass, signal) == "70.6"
    runtime: Any = entry.runtime_data
    assert runtime.client.bt_address == "00:80:25:12:34:56"
    runtime.simulator.drop_connection()
    await wait_for(hass, lambda: runtime.data.connects >= 2)
    await wait_for(hass, lambda: state_value(hass, signal) == "70.6")
    assert caplog.text.count("Simulated inverter stopped answering") == 1
    assert caplog.text.count("Simulated inverter is back") == 1
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert runtime.simulator.bluetooth_clients == 0


async def test_probe_reports_old_bluetooth_firmware() -> None:
    sim = SunnyBoySimulator(seed=7, clock=lambda: MOMENT, firmware_too_old=True)
    tasks: list[Any] = []

    def link() -> socket.socket:
        import asyncio

        ours, theirs = socket.socketpair()
        tasks.append(asyncio.create_task(sim.serve_bluetooth(theirs)))
        return ours

    config = LinkConfig("bluetooth", "0000", bt_address=sim.bt_address)
    with pytest.raises(SunnyBoyProbeError) as caught:
        await async_probe_sunny_boy(config, socket_factory=link)
    assert caught.value.reason == "firmware_too_old"
    await sim.close()
    for task in tasks:
        await task


# --------------------------------------------------------------------------------------------
# Runtime
# --------------------------------------------------------------------------------------------


async def test_states_equal_the_inverter(hass: HomeAssistant, inverter: Inverter) -> None:
    entry = sb_entry(inverter.port, sw_version="01.00.00.R")
    await setup(hass, entry)
    expected = inverter.sim.state()
    assert expected.ac_power == 2622
    assert state_value(hass, f"{SB}_ac_power") == "2622"
    assert state_value(hass, f"{SB}_ac_power_l1") == "2622"
    assert state_value(hass, f"{SB}_ac_voltage_l1") == "229.46"
    assert state_value(hass, f"{SB}_ac_current_l1") == "11.427"
    assert state_value(hass, f"{SB}_grid_frequency") == "50.01"
    assert state_value(hass, f"{SB}_dc_power_string_1") == "1521"
    assert state_value(hass, f"{SB}_dc_power_string_2") == "1195"
    assert state_value(hass, f"{SB}_dc_voltage_string_1") == "354.36"
    assert state_value(hass, f"{SB}_dc_voltage_string_2") == "330.3"
    assert state_value(hass, f"{SB}_dc_current_string_1") == "4.292"
    assert state_value(hass, f"{SB}_dc_current_string_2") == "3.618"
    assert state_value(hass, f"{SB}_yield_today") == "7.184"
    assert state_value(hass, f"{SB}_yield_total") == "17333.146"
    assert state_value(hass, f"{SB}_operating_time") == "2651.36"  # 9544902 s
    assert state_value(hass, f"{SB}_feed_in_time") == "2540.0"  # 9144002 s
    assert state_value(hass, f"{SB}_inverter_temperature") == "43.23"
    assert state_value(hass, f"{SB}_status") == "ok"
    assert state_value(hass, f"{SB}_grid_relay") == "closed"
    # The same numbers the simulator's model gives for this moment.
    assert expected.energy_total == 17_333_146
    assert expected.dc_voltage == (354.36, 330.3)
    # A single-phase inverter with two strings: no L2/L3, no string 3, no Bluetooth signal.
    for missing in ("ac_power_l2", "ac_voltage_l3", "dc_power_string_3", "signal_strength"):
        assert hass.states.get(f"{SB}_{missing}") is None
    state = hass.states.get(f"{SB}_yield_total")
    assert state is not None
    assert state.attributes["state_class"] == "total_increasing"
    assert state.attributes["unit_of_measurement"] == "kWh"
    assert state.attributes["device_class"] == "energy"
    device = find_device(hass, SERIAL)
    assert device is not None
    assert (device.manufacturer, device.model, device.serial_number, device.sw_version) == (
        "SMA",
        "SB 3000TL-21",
        SERIAL,
        "02.55.03.R",
    )
    # The firmware read at setup replaced the stale one in the entry.
    assert entry.data["sw_version"] == "02.55.03.R"
    operating = er.async_get(hass).async_get(f"{SB}_operating_time")
    assert operating is not None
    assert operating.entity_category is EntityCategory.DIAGNOSTIC
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_unknown_firmware_shows_none(hass: HomeAssistant, socket_enabled: None) -> None:
    # The inverter reports its software version as NaN: the device shows no firmware, not the
    # stale one of the entry and not "ff.ff.255.255".
    sim = SunnyBoySimulator(seed=7, clock=lambda: MOMENT, software_version=None)
    port = await sim.serve_speedwire("127.0.0.1", 0)
    try:
        entry = sb_entry(port, sw_version="01.00.00.R")
        await setup(hass, entry)
        device = find_device(hass, SERIAL)
        assert device is not None
        assert (device.model, device.sw_version) == ("SB 3000TL-21", None)
        assert entry.data["sw_version"] is None
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await sim.close()


async def test_yield_total_never_runs_backwards(hass: HomeAssistant, inverter: Inverter) -> None:
    entry = sb_entry(inverter.port)
    await setup(hass, entry)
    runtime: Any = entry.runtime_data
    polls = runtime.data.polls
    # The inverter's clock jumps back a day: its counter reads lower, the entity does not.
    inverter.sim._clock = lambda: MOMENT - 86_400
    await wait_for(hass, lambda: runtime.data.polls >= polls + 2)
    assert runtime.data.spot.energy_total < 17_333_146
    assert state_value(hass, f"{SB}_yield_total") == "17333.146"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_inverter_asleep_then_awake(
    hass: HomeAssistant, inverter: Inverter, caplog: pytest.LogCaptureFixture
) -> None:
    entry = sb_entry(inverter.port)
    await setup(hass, entry)
    power = f"{SB}_ac_power"
    assert state_value(hass, power) == "2622"
    registry = dr.async_get(hass)
    device = find_device(hass, SERIAL)
    assert device is not None
    registry.async_update_device(device.id, sw_version="01.00.00.R")

    inverter.sim.set_silent(True)
    await wait_for(hass, lambda: state_value(hass, power) == STATE_UNAVAILABLE, timeout=10)
    runtime: Any = entry.runtime_data
    await wait_for(hass, lambda: runtime.data.failures >= 3, timeout=10)
    # Night is normal: said once in the log, no repair issue.
    assert caplog.text.count(f"{TITLE} stopped answering") == 1
    assert "no answer at night is normal" in caplog.text
    assert [i for i in ir.async_get(hass).issues.values() if i.domain == DOMAIN] == []
    assert entry.state is ConfigEntryState.LOADED

    inverter.sim.set_silent(False)
    await wait_for(hass, lambda: state_value(hass, power) == "2622", timeout=10)
    assert caplog.text.count(f"{TITLE} is back") == 1
    # The reconnect refreshed the firmware shown for the device.
    device = find_device(hass, SERIAL)
    assert device is not None
    assert device.sw_version == "02.55.03.R"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_setup_at_night_waits_for_the_morning(
    hass: HomeAssistant, inverter: Inverter, caplog: pytest.LogCaptureFixture
) -> None:
    inverter.sim.set_silent(True)
    entry = sb_entry(inverter.port)
    with caplog.at_level(logging.INFO):
        await setup(hass, entry)
    assert "does not answer now" in caplog.text
    assert hass.states.get(f"{SB}_ac_power") is None
    inverter.sim.set_silent(False)
    await wait_for(hass, lambda: state_value(hass, f"{SB}_ac_power") == "2622", timeout=10)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_busy_at_setup_is_retried_not_reauthenticated(
    hass: HomeAssistant, inverter: Inverter
) -> None:
    inverter.sim.set_busy(True)
    entry = sb_entry(inverter.port)
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    # Home Assistant retries the setup with its backoff; no password form.
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert entry.reason is not None
    assert "busy" in entry.reason
    assert "Sunny Explorer" in entry.reason
    assert hass.config_entries.flow.async_progress_by_handler(DOMAIN) == []
    inverter.sim.set_busy(False)
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry_state(entry) is ConfigEntryState.LOADED
    assert state_value(hass, f"{SB}_ac_power") == "2622"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_busy_while_running_backs_off_and_recovers(
    hass: HomeAssistant, inverter: Inverter, caplog: pytest.LogCaptureFixture
) -> None:
    entry = sb_entry(inverter.port)
    await setup(hass, entry)
    runtime: Any = entry.runtime_data
    # Another application takes the inverter: our session ends, log-on says busy.
    inverter.sim.set_busy(True)
    inverter.sim.expire_logons()
    await wait_for(hass, lambda: runtime.data.busy >= 3, timeout=10)
    assert state_value(hass, f"{SB}_ac_power") == STATE_UNAVAILABLE
    assert caplog.text.count(f"{TITLE} is busy: another application") == 1
    assert hass.config_entries.flow.async_progress_by_handler(DOMAIN) == []
    assert entry.state is ConfigEntryState.LOADED
    assert runtime.diagnostics()["busy"] >= 3
    inverter.sim.set_busy(False)
    await wait_for(hass, lambda: state_value(hass, f"{SB}_ac_power") == "2622", timeout=10)
    assert runtime.data.busy == 0
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_wrong_password_at_setup_asks_for_the_new_one(
    hass: HomeAssistant, inverter: Inverter
) -> None:
    entry = sb_entry(inverter.port, password="9999")
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_ERROR
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [flow["context"]["source"] for flow in flows] == ["reauth"]
    flow_id = flows[0]["flow_id"]
    result = await _configure(hass, flow_id, {"password": "1234", "user_group": "user"})
    assert result["errors"] == {"base": "wrong_password"}
    result = await _configure(hass, flow_id, {"password": "0000", "user_group": "user"})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    assert entry.data["password"] == "0000"
    assert entry_state(entry) is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_password_changed_while_polling_starts_reauth(
    hass: HomeAssistant, inverter: Inverter
) -> None:
    entry = sb_entry(inverter.port)
    await setup(hass, entry)
    inverter.sim.set_password("4321")
    inverter.sim.expire_logons()
    await wait_for(hass, lambda: bool(hass.config_entries.flow.async_progress_by_handler(DOMAIN)))
    flow = hass.config_entries.flow.async_progress_by_handler(DOMAIN)[0]
    assert flow["context"]["source"] == "reauth"
    assert state_value(hass, f"{SB}_ac_power") == STATE_UNAVAILABLE
    result = await _configure(hass, flow["flow_id"], {"password": "4321", "user_group": "user"})
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    await wait_for(hass, lambda: state_value(hass, f"{SB}_ac_power") == "2622")
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_reauth_of_another_kind_is_not_ours(hass: HomeAssistant) -> None:
    entry = MockConfigEntry(domain=DOMAIN, data={"device": "vedirect", "port": "/dev/null"})
    entry.add_to_hass(hass)
    result = await entry.start_reauth_flow(hass)
    # Handed on to the other kinds' steps, which have no password form for a VE.Direct cable.
    assert result["type"] is FlowResultType.ABORT


async def test_reconfigure_requires_the_same_inverter(
    hass: HomeAssistant, inverter: Inverter
) -> None:
    entry = sb_entry(inverter.port)
    await setup(hass, entry)
    other = SunnyBoySimulator(serial=2130099999, seed=8, clock=lambda: MOMENT)
    other_port = await other.serve_speedwire("127.0.0.1", 0)
    try:
        result = dict(await entry.start_reconfigure_flow(hass))
        assert result["step_id"] == "sunny_boy_reconfigure"
        result = await _configure(hass, result["flow_id"], _speedwire(other_port))
        assert result["reason"] == "wrong_inverter"
    finally:
        await other.close()
    # The same inverter (same serial number) moved to another address, with a new password.
    moved = SunnyBoySimulator(seed=7, clock=lambda: MOMENT, password="4321")
    new_port = await moved.serve_speedwire("127.0.0.1", 0)
    try:
        result = dict(await entry.start_reconfigure_flow(hass))
        result = await _configure(hass, result["flow_id"], _speedwire(new_port, "9999"))
        assert result["errors"] == {"base": "wrong_password"}
        result = await _configure(hass, result["flow_id"], _speedwire(new_port, "4321"))
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "sunny_boy_reconfigured"
        assert entry.data["port"] == new_port
        assert entry.data["password"] == "4321"
        # The old address goes silent: values only keep coming if the entry reloaded onto
        # the new address and logged on with the new password.
        await inverter.sim.close()
        await hass.async_block_till_done()
        await wait_for(hass, lambda: entry_state(entry) is ConfigEntryState.LOADED)
        await wait_for(hass, lambda: state_value(hass, f"{SB}_ac_power") == "2622")
        assert not hass.config_entries.flow.async_progress_by_handler(DOMAIN)  # no reauth
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await moved.close()


async def test_reconfigure_bluetooth_and_simulated_entries(hass: HomeAssistant) -> None:
    bluetooth = MockConfigEntry(
        domain=DOMAIN,
        unique_id="2130000001",
        data={
            "device": "sunny_boy",
            "transport": "bluetooth",
            "bt_address": "00:80:25:12:34:56",
            "password": "0000",
            "user_group": "user",
        },
    )
    bluetooth.add_to_hass(hass)
    result = dict(await bluetooth.start_reconfigure_flow(hass))
    assert result["step_id"] == "sunny_boy_reconfigure"
    login = {"password": "0000", "user_group": "user"}
    result = await _configure(hass, result["flow_id"], {"bt_address": "nonsense", **login})
    assert result["errors"] == {"bt_address": "invalid_address"}
    simulated = MockConfigEntry(
        domain=DOMAIN,
        unique_id="2130000002",
        data={"device": "sunny_boy", "transport": "speedwire", "simulated": True},
    )
    simulated.add_to_hass(hass)
    result = dict(await simulated.start_reconfigure_flow(hass))
    assert result["reason"] == "simulated_fixed"


async def test_options_set_interval_and_history_days(
    hass: HomeAssistant, inverter: Inverter
) -> None:
    entry = sb_entry(inverter.port, options={"poll_interval": 30.0})
    await setup(hass, entry)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["step_id"] == "sunny_boy_options"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"poll_interval": 15, "history_days": 3}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert dict(entry.options) == {"poll_interval": 15.0, "history_days": 3}
    runtime: Any = entry.runtime_data
    assert (runtime.poll_interval, runtime.history_days) == (15.0, 3)
    assert await hass.config_entries.async_unload(entry.entry_id)


@no_bluetooth
async def test_bluetooth_entry_without_bluetooth_raises_a_repair_issue(
    hass: HomeAssistant,
) -> None:
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Garage inverter",
        unique_id="2130000003",
        data={
            "device": "sunny_boy",
            "transport": "bluetooth",
            "bt_address": "00:80:25:12:34:56",
            "password": "0000",
        },
    )
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_ERROR
    issue = ir.async_get(hass).async_get_issue(DOMAIN, f"bluetooth_unavailable_{entry.entry_id}")
    assert issue is not None
    assert issue.translation_placeholders == {"name": "Garage inverter"}


async def test_old_bluetooth_firmware_fails_setup(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        sunny_boy_device,
        "simulator_for",
        lambda data: SunnyBoySimulator(serial=2130000004, firmware_too_old=True),
    )
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id="2130000004",
        data={
            "device": "sunny_boy",
            "transport": "bluetooth",
            "simulated": True,
            "serial_number": "2130000004",
        },
    )
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_ERROR


async def test_diagnostics_redact_password_and_serial(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, inverter: Inverter
) -> None:
    inverter.sim.set_password("s3cr3t")
    entry = sb_entry(inverter.port, password="s3cr3t")
    await setup(hass, entry)
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    text = repr(diagnostics)
    assert "s3cr3t" not in text
    assert SERIAL not in text
    assert diagnostics["entry"]["data"]["password"] == "**REDACTED**"
    assert diagnostics["entry"]["data"]["serial_number"] == "**REDACTED**"
    assert diagnostics["entry"]["data"]["host"] == "**REDACTED**"
    assert "127.0.0.1" not in text
    assert diagnostics["device"]["link_up"] is True
    assert diagnostics["device"]["inverter"]["type_label"] == "SB 3000TL-21"
    assert diagnostics["device"]["transport"] == "speedwire"
    assert await hass.config_entries.async_unload(entry.entry_id)


# --------------------------------------------------------------------------------------------
# History in long-term statistics
# --------------------------------------------------------------------------------------------


def _hour(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


async def _read_statistics(
    hass: HomeAssistant, days: int = 10, after: int = 1, stat_id: str = STAT_ID
) -> list[tuple[float, float, float]]:
    from homeassistant.components.recorder.statistics import statistics_during_period
    from homeassistant.helpers.recorder import get_instance

    await async_wait_recording_done(hass)
    result = await get_instance(hass).async_add_executor_job(
        statistics_during_period,
        hass,
        _hour(MOMENT - days * 86_400),
        _hour(MOMENT + after * 86_400),
        {stat_id},
        "hour",
        None,
        {"state", "sum"},
    )
    return [(row["start"], row["state"] or 0.0, row["sum"] or 0.0) for row in result[stat_id]]


async def test_history_imported_into_statistics(
    recorder_mock: Any, hass: HomeAssistant, inverter: Inverter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sunny_boy_device, "DAILY_HISTORY_DAYS", 10)
    entry = sb_entry(inverter.port, options={"history_days": 2})
    await setup(hass, entry)
    runtime: Any = entry.runtime_data
    await wait_for(hass, lambda: runtime.data.history_imports >= 1)
    rows = await _read_statistics(hass)
    # 5-minute data: 2 days back from 2024-06-21 11:17:13, the hours ending 2024-06-19 11:00
    # … 2024-06-21 11:00 (the hour 11:00-12:00 is not complete yet), 49 hours. Daily data:
    # the inverter's midnights 2024-06-12 … 2024-06-19 (10 days back); the first one is the
    # baseline, the other 7 each close the hour before their midnight.
    five_minute_start = 1_718_794_800 - 3600  # hour ending 2024-06-19 11:00
    daily = [row for row in rows if row[0] < five_minute_start]
    hourly = [row for row in rows if row[0] >= five_minute_start]
    first_midnight = 1_718_150_400  # 2024-06-12 00:00 UTC
    baseline = inverter.sim.energy_total_at(first_midnight)
    assert [start for start, _, _ in daily] == [
        first_midnight + day * 86_400 - 3600 for day in range(1, 8)
    ]
    assert len(hourly) == 49
    assert [start for start, _, _ in hourly] == [
        five_minute_start + hour * 3600 for hour in range(49)
    ]
    assert runtime.data.history_days_imported == 8
    for start, state, total in daily:
        counter = inverter.sim.energy_total_at(start + 3600)
        assert state == pytest.approx(counter / 1000)
        assert total == pytest.approx((counter - baseline) / 1000)
    # Every 5-minute hour: state = lifetime counter at the hour's end (the last row of the hour
    # in the inverter's archive), sum = counter - the same baseline: continuous at the seam.
    archive = {
        ts: wh
        for ts, wh in inverter.sim.history_rows(five_minute_start, MOMENT, daily=False)
        if wh is not None
    }
    for start, state, total in hourly:
        hour_end = max(ts for ts in archive if start < ts <= start + 3600)
        assert state == pytest.approx(archive[hour_end] / 1000)
        assert total == pytest.approx((archive[hour_end] - baseline) / 1000)
    sums = [total for _, _, total in rows]
    assert sums == sorted(sums)
    # The seam: the last daily row (2024-06-19 00:00) and the first 5-minute hour differ by
    # exactly the yield in between, no gap and no spike.
    seam = inverter.sim.energy_total_at(1_718_794_800) - inverter.sim.energy_total_at(1_718_755_200)
    assert hourly[0][2] - daily[-1][2] == pytest.approx(seam / 1000)
    # The daily re-import writes exactly the same hours again: no duplicates, no jumps.
    monkeypatch.setattr(sunny_boy_device, "HISTORY_INTERVAL", 0.0)
    await wait_for(hass, lambda: runtime.data.history_imports >= 3)
    assert await _read_statistics(hass) == rows
    # Re-imports start a day before the newest hour: 24 h back, that hour, and the hour whose
    # end row opens the window; the daily archive has nothing older left to add.
    assert runtime.data.history_hours == 26
    assert runtime.data.history_days_imported == 0
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_history_refreshed_after_each_full_hour(
    recorder_mock: Any, hass: HomeAssistant, inverter: Inverter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While connected, a new archived hour is imported within one poll, not a day later."""
    monkeypatch.setattr(sunny_boy_device, "DAILY_HISTORY_DAYS", 2)
    entry = sb_entry(inverter.port, options={"history_days": 1})
    await setup(hass, entry)
    runtime: Any = entry.runtime_data
    await wait_for(hass, lambda: runtime.data.history_imports >= 1)
    # Polls go on without importing again within the same hour...
    polls = runtime.data.polls
    await wait_for(hass, lambda: runtime.data.polls >= polls + 2)
    if sunny_boy_device.hourly_import_due(runtime.data.last_history_import_wall, time.time()):
        pytest.skip("the wall clock crossed an hour's settle time during the test")
    assert runtime.data.history_imports == 1
    # ...and once the clock has passed an hour's settle time since the import, the next poll
    # imports the new hour.
    runtime.data.last_history_import_wall -= 3600
    await wait_for(hass, lambda: runtime.data.history_imports >= 2)
    assert await hass.config_entries.async_unload(entry.entry_id)


def test_hourly_import_rule() -> None:
    settle = sunny_boy_device.HISTORY_SETTLE
    hour = 1_718_794_800  # 2024-06-19 11:00 UTC
    due = sunny_boy_device.hourly_import_due
    assert not due(hour + settle, hour + 3599)  # same hour
    assert not due(hour + settle, hour + 3600 + settle - 1)  # hh:00 row not yet archived
    assert due(hour + settle, hour + 3600 + settle)
    assert due(hour - 1, hour + settle)  # imported just before the hour
    assert not due(hour - 1, hour + settle - 1)
    assert due(0.0, hour)  # never imported by the wall clock


async def test_daily_archive_imported_once_across_reconnects(
    recorder_mock: Any,
    hass: HomeAssistant,
    socket_enabled: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sunny_boy_device, "DAILY_HISTORY_DAYS", 30)
    monkeypatch.setattr(sunny_boy_device, "HISTORY_AFTER_RECONNECT", 0.0)
    now = [float(MOMENT)]
    sim = SunnyBoySimulator(seed=7, clock=lambda: now[0])
    port = await sim.serve_speedwire("127.0.0.1", 0)
    try:
        entry = sb_entry(port, options={"history_days": 1})
        await setup(hass, entry)
        runtime: Any = entry.runtime_data
        await wait_for(hass, lambda: runtime.data.history_imports >= 1)
        first = await _read_statistics(hass, days=40)
        assert runtime.data.history_days_imported == 29  # midnights 2024-05-23 … 06-20
        daily_requests = sim.received_commands.count(CMD_HISTORY_DAILY)
        assert daily_requests == 1  # 29 days fit one 30-day window
        # Two reconnects (the inverter drops the session twice): each re-imports, the rows
        # stay exactly the same and no daily row is written again.
        for round_ in (2, 3):
            sim.expire_logons()

            def imported(count: int = round_) -> bool:
                return bool(runtime.data.history_imports >= count)

            await wait_for(hass, imported)
            assert runtime.data.connects == round_
            assert runtime.data.history_days_imported == 0
        assert await _read_statistics(hass, days=40) == first
        # Home Assistant was away for 20 days: after the reconnect the daily archive fills the
        # days between the newest imported hour and the 5-minute window, one row per day.
        now[0] = MOMENT + 20 * 86_400
        sim.expire_logons()
        await wait_for(hass, lambda: runtime.data.history_imports >= 4)
        assert runtime.data.history_days_imported == 19
        rows = await _read_statistics(hass, days=40, after=20)
        assert rows[: len(first)] == first
        baseline = round((first[0][1] - first[0][2]) * 1000)
        starts = [start for start, _, _ in rows]
        assert starts == sorted(set(starts))
        for start, state, total in rows:
            assert state == pytest.approx(sim.energy_total_at(start + 3600) / 1000, abs=0.0015)
            assert total == pytest.approx(state - baseline / 1000)
        gap = [start for start in starts if first[-1][0] < start < now[0] - 86_400 - 7200]
        assert len(gap) == 19
        assert all((start + 3600) % 86_400 == 0 for start in gap)
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await sim.close()


async def test_history_import_survives_an_unreachable_archive(
    recorder_mock: Any, hass: HomeAssistant, inverter: Inverter
) -> None:
    entry = sb_entry(inverter.port, options={"history_days": 1})
    await setup(hass, entry)
    runtime: Any = entry.runtime_data
    await wait_for(hass, lambda: runtime.data.history_imports >= 1)
    inverter.sim.set_silent(True)
    assert await runtime.async_import_history() == 0
    inverter.sim.set_silent(False)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_broken_recorder_does_not_stop_polling(
    hass: HomeAssistant,
    inverter: Inverter,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Claims a recorder that is not there: reading the last statistics raises.
    monkeypatch.setattr(sunny_boy_statistics, "recorder_loaded", lambda hass: True)
    entry = sb_entry(inverter.port)
    await setup(hass, entry)
    runtime: Any = entry.runtime_data
    await wait_for(hass, lambda: "importing the yield history failed" in caplog.text)
    polls = runtime.data.polls
    await wait_for(hass, lambda: runtime.data.polls >= polls + 2)
    assert state_value(hass, f"{SB}_ac_power") == "2622"
    assert await hass.config_entries.async_unload(entry.entry_id)


# --------------------------------------------------------------------------------------------
# Plants of several inverters (NetID > 1)
# --------------------------------------------------------------------------------------------

SECOND = "2130012399"
SB2 = f"sensor.sb_3000tl_21_{SECOND}"


async def test_plant_of_two_inverters(
    recorder_mock: Any,
    hass: HomeAssistant,
    socket_enabled: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sunny_boy_device, "DAILY_HISTORY_DAYS", 10)
    sim = SunnyBoySimulator(seed=7, clock=lambda: MOMENT, net_id=2)
    second = sim.add_inverter(int(SECOND), peak_power=2000.0)
    port = await sim.serve_speedwire("127.0.0.1", 0)
    try:
        entry = sb_entry(port, options={"history_days": 1})
        await setup(hass, entry)
        runtime: Any = entry.runtime_data
        await wait_for(hass, lambda: state_value(hass, f"{SB2}_ac_power") is not None)
        # The entry's own inverter keeps its device and entity ids.
        assert state_value(hass, f"{SB}_ac_power") == "2622"
        expected = second.state()
        assert state_value(hass, f"{SB2}_ac_power") == str(expected.ac_power)
        assert expected.ac_power != 2622
        assert state_value(hass, f"{SB2}_yield_total") == str(expected.energy_total / 1000)
        assert state_value(hass, f"{SB2}_yield_total") != state_value(hass, f"{SB}_yield_total")
        devices = dr.async_get(hass)
        first_device = find_device(hass, SERIAL)
        second_device = find_device(hass, SECOND)
        assert first_device is not None
        assert second_device is not None
        assert second_device.id != first_device.id
        assert (second_device.name, second_device.serial_number, second_device.model) == (
            f"SB 3000TL-21 {SECOND}",
            SECOND,
            "SB 3000TL-21",
        )
        assert second_device.sw_version == "02.55.03.R"
        assert second_device.via_device_id == first_device.id
        entities = er.async_get(hass)
        first_entity = entities.async_get(f"{SB}_ac_power")
        second_entity = entities.async_get(f"{SB2}_ac_power")
        assert first_entity is not None
        assert second_entity is not None
        assert first_entity.unique_id == f"{SERIAL}_ac_power"
        assert second_entity.unique_id == f"{SECOND}_ac_power"
        assert second_entity.device_id == second_device.id
        assert first_entity.device_id == first_device.id
        # Both inverters' yields are in long-term statistics, each from its own archive.
        members = list(runtime.members.values())
        assert len(members) == 1
        await wait_for(hass, lambda: members[0].view.data.history_imports >= 1, timeout=10)
        first_rows = await _read_statistics(hass, days=2)
        second_rows = await _read_statistics(
            hass, days=2, stat_id=f"{DOMAIN}:sunny_boy_{SECOND}_energy"
        )
        assert len(first_rows) == len(second_rows) > 24
        hour_end = int(second_rows[-1][0]) + 3600
        assert second_rows[-1][1] == pytest.approx(second.energy_total_at(hour_end) / 1000)
        assert first_rows[-1][1] == pytest.approx(sim.energy_total_at(hour_end) / 1000)
        diagnostics = runtime.diagnostics()
        assert diagnostics["plant"][0]["type_label"] == "SB 3000TL-21"
        assert SECOND not in str(diagnostics)
        # The plant goes to sleep and wakes up: both devices go and come back.
        sim.set_silent(True)
        await wait_for(
            hass, lambda: state_value(hass, f"{SB2}_ac_power") == STATE_UNAVAILABLE, timeout=10
        )
        registry_device = devices.async_get(second_device.id)
        assert registry_device is not None
        devices.async_update_device(second_device.id, sw_version="01.00.00.R")
        sim.set_silent(False)
        await wait_for(
            hass, lambda: state_value(hass, f"{SB2}_ac_power") != STATE_UNAVAILABLE, timeout=10
        )
        updated = find_device(hass, SECOND)
        assert updated is not None
        assert updated.sw_version == "02.55.03.R"
        # The user may delete an inverter that left the plant, not one that still answers.
        assert not await async_remove_config_entry_device(hass, entry, first_device)
        assert not await async_remove_config_entry_device(hass, entry, updated)
        departed = devices.async_get_or_create(
            config_entry_id=entry.entry_id, identifiers={(DOMAIN, "2130000077")}
        )
        assert await async_remove_config_entry_device(hass, entry, departed)
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await sim.close()


async def test_plant_member_before_the_platform_exists(hass: HomeAssistant) -> None:
    # A member found before the entry's sensor platform exists waits for it; its view falls
    # back to a neutral model name until the inverter has told its type.
    entry = sb_entry(1)
    entry.add_to_hass(hass)
    data = sunny_boy_device.SunnyBoyData(bluetooth=False)
    view = InverterView(PushCoordinator(hass, name="x", initial=data), "2130000009", SERIAL, None)
    member = PlantMember(Endpoint(0x0083, 2130000009), view)
    assert (view.model, view.title) == ("Sunny Boy", "Sunny Boy 2130000009")
    assert view.device_info.get("sw_version") is None
    # The link to the entry's own inverter is made in the registry once both devices exist
    # (the device info's via_device is deprecated).
    assert "via_device" not in view.device_info
    assert view.via == SERIAL
    assert view.descriptions(Platform.BINARY_SENSOR) == ()
    await view.async_start()
    await view.async_shutdown()
    assert view.diagnostics()["type_label"] is None
    assert sensor_platform(hass, entry) is None
    assert not async_add_member_entities(hass, entry, member)
    async_update_member_device(
        hass, entry.entry_id, member
    )  # nothing known, no device: nothing to do
    assert find_device(hass, "2130000009") is None


async def test_plant_found_after_a_night_setup(hass: HomeAssistant, socket_enabled: None) -> None:
    # Set up at night: nobody answers. In the morning the plant answers with two inverters;
    # the second one gets its device and entities while the entry is already loaded.
    sim = SunnyBoySimulator(seed=7, clock=lambda: MOMENT, net_id=2)
    second = sim.add_inverter(int(SECOND))
    sim.set_silent(True)
    port = await sim.serve_speedwire("127.0.0.1", 0)
    try:
        entry = sb_entry(port)
        await setup(hass, entry)
        sim.set_silent(False)
        await wait_for(hass, lambda: state_value(hass, f"{SB2}_ac_power") is not None, timeout=10)
        assert state_value(hass, f"{SB2}_ac_power") == str(second.state().ac_power)
        assert find_device(hass, SECOND) is not None
        # One inverter of the plant stays asleep: the other one is still read.
        runtime: Any = entry.runtime_data
        second.set_silent(True)
        sim.expire_logons()
        polls = runtime.data.polls
        await wait_for(hass, lambda: runtime.data.polls >= polls + 2, timeout=10)
        assert state_value(hass, f"{SB}_ac_power") == "2622"
        assert [member.endpoint.serial for member in runtime.members.values()] == [int(SECOND)]
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await sim.close()


# --------------------------------------------------------------------------------------------
# Local time
# --------------------------------------------------------------------------------------------

BERLIN_MIDNIGHT = 1_718_920_800  # 2024-06-21 00:00 CEST = 2024-06-20 22:00 UTC


async def test_yield_today_resets_at_local_midnight(
    recorder_mock: Any,
    hass: HomeAssistant,
    socket_enabled: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await hass.config.async_set_time_zone("Europe/Berlin")
    berlin = ZoneInfo("Europe/Berlin")
    now = [float(BERLIN_MIDNIGHT - 300)]  # 23:55 in Berlin, 21:55 UTC
    sim = SunnyBoySimulator(seed=7, clock=lambda: now[0], tz=berlin)
    port = await sim.serve_speedwire("127.0.0.1", 0)
    try:
        entry = sb_entry(port, options={"history_days": 1})
        await setup(hass, entry)
        runtime: Any = entry.runtime_data
        await wait_for(hass, lambda: runtime.data.history_imports >= 1)
        # Late evening in Berlin: the whole day's yield (the sun set at 20:30 local).
        day_yield = sim.energy_total_at(BERLIN_MIDNIGHT) - sim.energy_total_at(
            BERLIN_MIDNIGHT - 86_400
        )
        assert day_yield > 10_000
        assert state_value(hass, f"{SB}_yield_today") == str(day_yield / 1000)
        # 00:05 in Berlin but still 22:05 UTC: the inverter's "today" has started again.
        now[0] = BERLIN_MIDNIGHT + 300
        await wait_for(hass, lambda: state_value(hass, f"{SB}_yield_today") == "0.0")
        monkeypatch.setattr(sunny_boy_device, "HISTORY_INTERVAL", 0.0)
        await wait_for(hass, lambda: runtime.data.history_imports >= 2)

        # The 5-minute row at Berlin's midnight closes the hour 23:00-24:00 of June 20 (local)
        # and carries the counter at that midnight: the day's last hour, on the right day.
        rows = await _read_statistics(hass)
        last_start, last_state, _ = rows[-1]
        local_start = datetime.fromtimestamp(last_start, berlin)
        assert (local_start.date().isoformat(), local_start.hour) == ("2024-06-20", 23)
        assert last_state == pytest.approx(sim.energy_total_at(BERLIN_MIDNIGHT) / 1000)
        # The daily archive row at Berlin's midnight of June 19 (22:00 UTC on June 18) is the
        # last hour of June 18 in Berlin, with the counter at that midnight.
        daily_start = BERLIN_MIDNIGHT - 2 * 86_400 - 3600
        daily_row = next(row for row in rows if row[0] == daily_start)
        local_daily = datetime.fromtimestamp(daily_start, berlin)
        assert (local_daily.date().isoformat(), local_daily.hour) == ("2024-06-18", 23)
        assert daily_row[1] == pytest.approx(
            sim.energy_total_at(BERLIN_MIDNIGHT - 2 * 86_400) / 1000
        )
        assert (daily_start + 3600) % 86_400 == 79_200  # 22:00 UTC, not a UTC midnight
        # The archive was asked for by Berlin's days (midnight minus 5 minutes).
        windows = {p.first for p in sim.received if p.command == CMD_HISTORY_5MIN}
        assert BERLIN_MIDNIGHT - 86_400 - 300 in windows
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await sim.close()


async def test_simulated_inverter_lives_in_the_local_time_zone(
    hass: HomeAssistant, socket_enabled: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    await hass.config.async_set_time_zone("Asia/Tokyo")
    monkeypatch.setenv("SMA_VICTRON_BRIDGE_DAY_MINUTES", "60")
    entry = sb_entry(0, simulated=True, transport="speedwire")
    await setup(hass, entry)
    runtime: Any = entry.runtime_data
    assert runtime.simulator.tz == ZoneInfo("Asia/Tokyo")
    # A day in 60 minutes: 24 simulated seconds per second.
    before = runtime.simulator.now()
    await asyncio.sleep(0.2)
    assert runtime.simulator.now() - before == pytest.approx(0.2 * 24, rel=0.5)
    # On the demo's shared clock: the same moment as the other simulated devices.
    assert runtime.simulator.now() == pytest.approx(shared_day_clock(24.0).now(), abs=2.0)
    assert await hass.config_entries.async_unload(entry.entry_id)


def test_hourly_yield_rules() -> None:
    rows = [(3300, 990), (3600, 1000), (4200, 1010), (7200, 1020), (7500, 1021), (11100, 1030)]
    # The first row on an hour boundary (01:00) is the baseline; 03:00-04:00 is incomplete.
    assert hourly_yield(rows, end=12_000) == [
        HourlyYield(start=3600, total_wh=1020, sum_wh=20),
        HourlyYield(start=7200, total_wh=1021, sum_wh=21),
    ]
    assert hourly_yield([(3900, 5)], end=9000) == []
    # With the baseline of an earlier import the hours continue its sum; older ones are skipped.
    assert hourly_yield(rows, end=12_000, baseline_wh=1005) == [
        HourlyYield(start=3600, total_wh=1020, sum_wh=15),
        HourlyYield(start=7200, total_wh=1021, sum_wh=16),
    ]


def test_string_sensor_of_a_missing_string_is_unknown() -> None:
    from custom_components.sma_victron_bridge.devices.sunny_boy.entities import SENSORS
    from custom_components.sma_victron_bridge.protocols.sma_client import SpotValues

    third = next(d for d in SENSORS if d.key == "dc_power_3")
    data = sunny_boy_device.SunnyBoyData(
        bluetooth=False, spot=SpotValues(dc_strings=(1,), dc_power=(500.0,))
    )
    assert third.value_fn(data) is None
    assert not third.exists_fn(data)
    first = next(d for d in SENSORS if d.key == "dc_power_1")
    assert first.value_fn(data) == 500.0


def test_daily_rows_before_the_five_minute_data() -> None:
    daily = [(0, 100), (86_400, 200), (172_800, 300), (259_200, 400)]
    five = [(180_000, 310), (180_300, 311)]
    # Only days before the first 5-minute row.
    assert daily_rows_before(daily, five, before=0) == [(0, 100), (86_400, 200), (172_800, 300)]
    # Not the hours an earlier import already holds (hour ending at or before ``after``).
    assert daily_rows_before(daily, five, before=0, after=86_400) == [(172_800, 300)]
    # No 5-minute rows: up to ``before``.
    assert daily_rows_before(daily, [], before=172_800) == [(0, 100), (86_400, 200)]
    # A daily counter above the first 5-minute counter would run the sum backwards.
    assert daily_rows_before(daily, [(260_000, 250)], before=0) == [(0, 100), (86_400, 200)]


def test_statistic_metadata_matches_the_installed_recorder() -> None:
    metadata: dict[str, Any] = dict(statistic_metadata(SERIAL, "Roof yield"))
    assert metadata["statistic_id"] == statistic_id(SERIAL) == STAT_ID
    assert metadata["source"] == DOMAIN
    assert metadata["has_sum"] is True
    assert metadata["unit_of_measurement"] == "kWh"
    assert metadata.get("mean_type", 0) == 0
    assert metadata.get("has_mean", False) is False
