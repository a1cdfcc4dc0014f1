"""Victron Bluetooth devices in Home Assistant, fed through HA's own bluetooth stack.

Advertisements are the real captured vectors (testdata/victron_ble.json) or made by the
simulator's ``VictronAdvertiser``, injected into Home Assistant's bluetooth manager the way a
scanner or proxy reports them, so discovery, callbacks, availability tracking and decryption
all run for real. The GATT link runs the real sessions against the simulator's fake peers,
reached through the integration's own bleak adapter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from datetime import timedelta
import json
import logging
from pathlib import Path
from typing import Any
from unittest.mock import patch

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError
from habluetooth.const import UNAVAILABLE_TRACK_SECONDS
from homeassistant.components import bluetooth
from homeassistant.components.bluetooth.api import _get_manager
from homeassistant.components.bluetooth.storage import BluetoothStorage
from homeassistant.components.select import ATTR_OPTIONS
from homeassistant.components.sensor import ATTR_STATE_CLASS, SensorStateClass
from homeassistant.config_entries import (
    SOURCE_BLUETOOTH,
    SOURCE_REAUTH,
    SOURCE_RECONFIGURE,
    SOURCE_USER,
    ConfigEntryState,
    ConfigFlow,
    ConfigFlowResult,
)
from homeassistant.const import (
    ATTR_DEVICE_CLASS,
    ATTR_UNIT_OF_MEASUREMENT,
    STATE_OFF,
    STATE_UNAVAILABLE,
    STATE_UNKNOWN,
    EntityCategory,
)
from homeassistant.core import HomeAssistant, State
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import (
    device_registry as dr,
    entity_registry as er,
    issue_registry as ir,
)
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    mock_restore_cache_with_extra_data,
)
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.sma_victron_bridge.config_flow import BridgeConfigFlow
from custom_components.sma_victron_bridge.const import DOMAIN
from custom_components.sma_victron_bridge.control.snapshot import BatterySnapshot
from custom_components.sma_victron_bridge.devices.sunny_island.flow import battery_sources
from custom_components.sma_victron_bridge.devices.victron_ble import (
    flow as config_flow_ble,
    runtime as ble_device,
)
from custom_components.sma_victron_bridge.devices.victron_ble.runtime import (
    GattState,
    VictronBleRuntime,
)
from custom_components.sma_victron_bridge.protocols.victron_ble import (
    MANUFACTURER_ID,
    RECORD_AC_CHARGER,
    RECORD_BATTERY_MONITOR,
    RECORD_DC_ENERGY_METER,
    RECORD_INVERTER,
    RECORD_LYNX_SMART_BMS,
    RECORD_MULTI_RS,
    RECORD_ORION_XS,
    RECORD_SMART_BATTERY_PROTECT,
    RECORD_SMART_LITHIUM,
    RECORD_SOLAR_CHARGER,
    RECORD_VE_BUS,
    encode_advertisement,
    key_decodes,
)
from custom_components.sma_victron_bridge.protocols.victron_gatt import (
    VREG_CAPABILITIES,
    VREG_LOAD_CONTROL,
    VREG_LOAD_STATE,
    GattError,
    GattNotPaired,
    encode_vreg_write,
)
from custom_components.sma_victron_bridge.simulators.victron_ble import (
    FakeSmartShuntPeer,
    FakeVictronGattPeer,
    VictronAdvertiser,
)
from tests.integration.devices import find_device
from tests.integration.test_config_flow import start_simulated

VECTORS = json.loads(
    (Path(__file__).parents[3] / "shared" / "testdata" / "victron_ble.json").read_text()
)["vectors"]
SOLAR_VECTOR, SHUNT_VECTOR, SENSE_VECTOR = VECTORS

SOLAR_ADDRESS = "AA:BB:CC:00:00:01"
SHUNT_ADDRESS = "AA:BB:CC:00:00:02"
OTHER_ADDRESS = "AA:BB:CC:00:00:03"
KEY = bytes.fromhex("0123456789abcdef0123456789abcdef")


# Home Assistant's bluetooth integration with a (mocked) local adapter, in every test.
pytestmark = pytest.mark.usefixtures("enable_bluetooth")


@pytest.fixture(autouse=True)
def quick_key_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key check that gives up after half a second instead of ten."""
    monkeypatch.setattr(config_flow_ble, "KEY_CHECK_TIMEOUT", 0.5)


def service_info(
    address: str,
    manufacturer_data: dict[int, bytes],
    *,
    connectable: bool = False,
    rssi: int = -70,
    source: str = "local",
) -> bluetooth.BluetoothServiceInfoBleak:
    """An advertisement as a scanner reports it to Home Assistant."""
    advertisement = AdvertisementData(
        local_name=None,
        manufacturer_data=manufacturer_data,
        service_data={},
        service_uuids=[],
        tx_power=None,
        rssi=rssi,
        platform_data=(),
    )
    return bluetooth.BluetoothServiceInfoBleak(
        name=address,
        address=address,
        rssi=rssi,
        manufacturer_data=manufacturer_data,
        service_data={},
        service_uuids=[],
        source=source,
        device=BLEDevice(address, None, {}),
        advertisement=advertisement,
        connectable=connectable,
        time=bluetooth.MONOTONIC_TIME(),
        tx_power=None,
    )


def inject(
    hass: HomeAssistant,
    address: str,
    data: bytes,
    *,
    connectable: bool = False,
    rssi: int = -70,
    source: str = "local",
) -> None:
    """Report one advertisement to HA's bluetooth manager, as a scanner does."""
    bluetooth.async_get_advertisement_callback(hass)(
        service_info(
            address, {MANUFACTURER_ID: data}, connectable=connectable, rssi=rssi, source=source
        )
    )


def entry_for(
    address: str,
    key: bytes | str,
    record_type: int,
    model_id: int,
    title: str,
    options: dict[str, Any] | None = None,
    simulated: bool = False,
) -> MockConfigEntry:
    """An entry as the config flow creates it."""
    return MockConfigEntry(
        domain=DOMAIN,
        title=title,
        unique_id=address,
        data={
            "device": "victron_ble",
            "address": address,
            "key": key if isinstance(key, str) else key.hex(),
            "record_type": record_type,
            "model_id": model_id,
            "simulated": simulated,
        },
        options=options or {},
    )


async def setup(hass: HomeAssistant, entry: MockConfigEntry) -> VictronBleRuntime:
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    runtime = entry.runtime_data
    assert isinstance(runtime, VictronBleRuntime)
    return runtime


def select_options(result: Any, key: str) -> list[dict[str, str]]:
    schema = result["data_schema"]
    assert schema is not None
    options: list[dict[str, str]] = schema.schema[key].config["options"]
    return options


def loaded_state(entry: MockConfigEntry) -> ConfigEntryState:
    """The entry's state, read fresh (a plain attribute access would be narrowed by mypy)."""
    current: ConfigEntryState = entry.state
    return current


def snapshot_of(runtime: VictronBleRuntime) -> BatterySnapshot | None:
    return runtime.snapshot


def gatt_state(runtime: VictronBleRuntime) -> GattState | None:
    return runtime.data.gatt_state


def state(hass: HomeAssistant, entity_id: str) -> str | None:
    current = hass.states.get(entity_id)
    return None if current is None else current.state


async def wait_for(
    hass: HomeAssistant, predicate: Callable[[], bool], timeout: float = 5.0
) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)
            await hass.async_block_till_done()


def advertiser(
    record_type: int, model_id: int, key: bytes = KEY, seed: int = 7
) -> VictronAdvertiser:
    return VictronAdvertiser(record_type, key=key, model_id=model_id, seed=seed)


def keep_advertising(
    hass: HomeAssistant, address: str, source: VictronAdvertiser
) -> Coroutine[Any, Any, None]:
    """Advertise every 20 ms, as a device would every second, while a flow waits."""

    async def run() -> None:
        now = 0.0
        while True:
            now += 1.0
            inject(hass, address, source.next_advertisement(now))
            await asyncio.sleep(0.02)

    return run()


async def flow_with_adverts(
    hass: HomeAssistant,
    address: str,
    source: VictronAdvertiser,
    submit: Coroutine[Any, Any, Any],
) -> Any:
    """Submit a flow step while the device keeps advertising."""
    task = asyncio.create_task(keep_advertising(hass, address, source))
    try:
        return await submit
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# --- discovery and key entry ---------------------------------------------------------------


async def test_discovery_key_checks_and_real_vector_entities(hass: HomeAssistant) -> None:
    data = bytes.fromhex(SOLAR_VECTOR["data"])
    inject(hass, SOLAR_ADDRESS, data)
    # The manifest's matcher (company 0x02E1) starts a discovery flow by itself.
    await wait_for(hass, lambda: bool(hass.config_entries.flow.async_progress_by_handler(DOMAIN)))
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert len(flows) == 1
    assert flows[0]["context"]["source"] == SOURCE_BLUETOOTH
    assert flows[0]["context"]["title_placeholders"] == {"name": "BlueSolar MPPT 75/15"}
    assert flows[0]["step_id"] == "bluetooth_confirm"
    flow_id = flows[0]["flow_id"]

    result = await hass.config_entries.flow.async_configure(flow_id, {"key": "not a key"})
    assert result["errors"] == {"base": "invalid_key_format"}
    # Another first byte: the advert's key-check byte refuses it at once.
    result = await hass.config_entries.flow.async_configure(flow_id, {"key": "00" * 16})
    assert result["errors"] == {"base": "wrong_key"}
    # The right first byte but a wrong rest decrypts into nonsense: also refused.
    almost = "ad" + "11" * 15
    assert not key_decodes(data, bytes.fromhex(almost))
    result = await hass.config_entries.flow.async_configure(flow_id, {"key": almost})
    assert result["errors"] == {"base": "wrong_key"}

    # The right key (typed with spaces): one advert decodes, none follows within the check.
    typed = " ".join(SOLAR_VECTOR["key"][i : i + 4] for i in range(0, 32, 4)).upper()
    result = await hass.config_entries.flow.async_configure(flow_id, {"key": typed})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "BlueSolar MPPT 75/15"
    assert result["data"] == {
        "device": "victron_ble",
        "address": SOLAR_ADDRESS,
        "key": SOLAR_VECTOR["key"],
        "record_type": 1,
        "model_id": 0xA042,
        "simulated": False,
    }
    entry = result["result"]
    assert entry.unique_id == SOLAR_ADDRESS
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED

    # Values VictronConnect showed for this advertisement.
    sensor = "sensor.bluesolar_mppt_75_15"
    assert state(hass, f"{sensor}_charge_state") == "absorption"
    assert state(hass, f"{sensor}_error") == "no_error"
    assert state(hass, f"{sensor}_battery_voltage") == "13.88"
    assert state(hass, f"{sensor}_battery_current") == "1.4"
    assert state(hass, f"{sensor}_yield_today") == "0.03"
    assert state(hass, f"{sensor}_pv_power") == "19"
    assert state(hass, f"{sensor}_load_current") == "0.0"
    assert state(hass, f"{sensor}_yield_total") == "0.0"
    voltage = hass.states.get(f"{sensor}_battery_voltage")
    assert voltage is not None
    assert voltage.attributes[ATTR_DEVICE_CLASS] == "voltage"
    assert voltage.attributes[ATTR_UNIT_OF_MEASUREMENT] == "V"
    yield_today = hass.states.get(f"{sensor}_yield_today")
    assert yield_today is not None
    assert yield_today.attributes[ATTR_DEVICE_CLASS] == "energy"
    assert yield_today.attributes[ATTR_STATE_CLASS] == SensorStateClass.TOTAL_INCREASING
    # Battery-monitor values never appear on a charger.
    assert hass.states.get(f"{sensor}_state_of_charge") is None

    device = find_device(hass, SOLAR_ADDRESS)
    assert device is not None
    assert device.manufacturer == "Victron Energy"
    assert device.model == "BlueSolar MPPT 75/15"
    assert device.model_id == "0xA042"
    assert (dr.CONNECTION_BLUETOOTH, SOLAR_ADDRESS) in device.connections

    # The same device discovered again is already set up.
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_BLUETOOTH},
        data=bluetooth.async_last_service_info(hass, SOLAR_ADDRESS, connectable=False),
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_discovery_of_a_foreign_advert_aborts(hass: HomeAssistant) -> None:
    for data in (
        # Victron's company id, but not a product advertisement (first byte 0x10).
        "1100a4a3025f150d8dcbff517f30eb65e76b22a0",
        # A product advertisement with a record type nothing decodes (0x07, GX device).
        "100053a0075f150d8dcbff517f30eb65",
    ):
        info = service_info(OTHER_ADDRESS, {MANUFACTURER_ID: bytes.fromhex(data)})
        result = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_BLUETOOTH}, data=info
        )
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "not_supported"


async def test_manual_pick_needs_three_adverts_then_exact_values(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = advertiser(RECORD_SOLAR_CHARGER, 0xA053)
    inject(hass, SOLAR_ADDRESS, source.next_advertisement(0.0))
    inject(hass, SHUNT_ADDRESS, bytes.fromhex(SHUNT_VECTOR["data"]))
    # Devices of other makers, and a Victron product that is not a product advertisement.
    bluetooth.async_get_advertisement_callback(hass)(
        service_info("11:22:33:44:55:66", {0x0059: b"\x01\x02"})
    )
    inject(hass, "11:22:33:44:55:67", bytes.fromhex("1100"))
    configured = entry_for(OTHER_ADDRESS, KEY, RECORD_SOLAR_CHARGER, 0xA053, "Configured")
    configured.add_to_hass(hass)
    inject(hass, OTHER_ADDRESS, source.next_advertisement(1.0))
    await hass.async_block_till_done()

    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert "victron_ble" in result["menu_options"]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "victron_ble"}
    )
    assert result["step_id"] == "victron_ble"
    options = select_options(result, "address")
    assert options == [
        {"value": SOLAR_ADDRESS, "label": f"SmartSolar MPPT 75/15 ({SOLAR_ADDRESS})"},
        {"value": SHUNT_ADDRESS, "label": f"SmartShunt 500A/50mV ({SHUNT_ADDRESS})"},
    ]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"address": SOLAR_ADDRESS}
    )
    assert result["step_id"] == "bluetooth_confirm"
    flow_id = result["flow_id"]

    # With a 10 s budget the key must decode three adverts with different nonces: the one
    # heard before, and at least two more.
    monkeypatch.setattr(config_flow_ble, "KEY_CHECK_TIMEOUT", 10.0)
    start = source.nonce
    result = await flow_with_adverts(
        hass,
        SOLAR_ADDRESS,
        source,
        hass.config_entries.flow.async_configure(flow_id, {"key": KEY.hex()}),
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "SmartSolar MPPT 75/15"
    assert (source.nonce - start) & 0xFFFF >= 2
    entry = result["result"]
    await hass.async_block_till_done()
    runtime = entry.runtime_data
    assert isinstance(runtime, VictronBleRuntime)

    inject(hass, SOLAR_ADDRESS, source.next_advertisement(600.0))
    await hass.async_block_till_done()
    values = source.values
    assert runtime.data.values == values
    sensor = "sensor.smartsolar_mppt_75_15"
    assert state(hass, f"{sensor}_battery_voltage") == str(values["battery_voltage"])
    assert state(hass, f"{sensor}_battery_current") == str(values["battery_current"])
    assert state(hass, f"{sensor}_pv_power") == str(values["pv_power"])
    assert state(hass, f"{sensor}_load_current") == str(values["load_current"])
    assert float(state(hass, f"{sensor}_yield_today") or "nan") == pytest.approx(
        float(values["yield_today"] or 0) / 1000
    )
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_manual_step_without_devices_aborts_and_lost_device(hass: HomeAssistant) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "victron_ble"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "no_devices_found"

    inject(hass, SOLAR_ADDRESS, bytes.fromhex(SOLAR_VECTOR["data"]))
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "victron_ble"}
    )
    # Between listing and picking, the address started sending something else.
    inject(hass, SOLAR_ADDRESS, bytes.fromhex("1100"))
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"address": SOLAR_ADDRESS}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "no_devices_found"


async def test_key_check_reports_silence(hass: HomeAssistant) -> None:
    assert await config_flow_ble.async_check_key(hass, OTHER_ADDRESS, KEY) == "no_advert"
    # The address sends someone else's manufacturer data only.
    bluetooth.async_get_advertisement_callback(hass)(
        service_info(OTHER_ADDRESS, {0x0059: b"\x01\x02\x03"})
    )
    assert await config_flow_ble.async_check_key(hass, OTHER_ADDRESS, KEY) == "no_advert"
    # A short advertisement is no verdict on the key: still nothing usable heard.
    inject(hass, OTHER_ADDRESS, bytes.fromhex("100253a0010100" + KEY[:1].hex() + "00"))
    assert await config_flow_ble.async_check_key(hass, OTHER_ADDRESS, KEY) == "no_advert"


# --- entities per record type --------------------------------------------------------------


async def test_battery_monitor_vector_snapshot_and_source(hass: HomeAssistant) -> None:
    entry = entry_for(SHUNT_ADDRESS, SHUNT_VECTOR["key"], RECORD_BATTERY_MONITOR, 0xA389, "Shunt")
    runtime = await setup(hass, entry)
    published: list[BatterySnapshot] = []
    unsubscribe = runtime.async_subscribe_snapshot(published.append)
    assert snapshot_of(runtime) is None  # nothing heard yet
    inject(hass, SHUNT_ADDRESS, bytes.fromhex(SHUNT_VECTOR["data"]))
    await hass.async_block_till_done()
    assert state(hass, "sensor.shunt_battery_voltage") == "12.53"
    assert state(hass, "sensor.shunt_battery_current") == "0.0"
    assert state(hass, "sensor.shunt_battery_power") == "0.0"
    assert state(hass, "sensor.shunt_state_of_charge") == "50.0"
    assert state(hass, "sensor.shunt_consumed_amp_hours") == "-50.0"
    assert state(hass, "sensor.shunt_time_to_go") == STATE_UNKNOWN  # "not available"
    assert state(hass, "sensor.shunt_alarm_reason") == "none"
    assert state(hass, "binary_sensor.shunt_alarm") == STATE_OFF
    soc = hass.states.get("sensor.shunt_state_of_charge")
    assert soc is not None
    assert soc.attributes[ATTR_DEVICE_CLASS] == "battery"
    # Aux input "none": no temperature, starter or midpoint entities.
    assert hass.states.get("sensor.shunt_battery_temperature") is None
    assert hass.states.get("sensor.shunt_auxiliary_voltage") is None
    assert published[-1] is runtime.snapshot
    assert runtime.snapshot is not None
    assert runtime.snapshot.soc == 50.0
    assert runtime.snapshot.voltage == 12.53
    assert runtime.snapshot.alarms == frozenset()
    unsubscribe()

    # Offered as a battery source for the Sunny Island.
    flow = BridgeConfigFlow()
    flow.hass = hass
    assert {"value": entry.entry_id, "label": "Shunt"} in battery_sources(flow)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_battery_monitor_aux_inputs_and_alarm(hass: HomeAssistant) -> None:
    entry = entry_for(SHUNT_ADDRESS, KEY, RECORD_BATTERY_MONITOR, 0xA381, "BMV")
    await setup(hass, entry)
    values: dict[str, float | int | None] = {
        "time_to_go": 754,
        "voltage": 25.61,
        "alarm": 0x0041,  # low voltage + high temperature
        "aux_mode": 2,
        "temperature": 31.25,
        "current": -12.345,
        "consumed_ah": -40.2,
        "soc": 81.3,
    }
    inject(
        hass,
        SHUNT_ADDRESS,
        encode_advertisement(RECORD_BATTERY_MONITOR, values, KEY, model_id=0xA381, nonce=1),
    )
    await hass.async_block_till_done()
    assert state(hass, "sensor.bmv_time_to_go") == "754"
    assert state(hass, "sensor.bmv_battery_temperature") == "31.25"
    assert state(hass, "sensor.bmv_battery_current") == "-12.345"
    assert state(hass, "sensor.bmv_battery_power") == "-316.2"
    assert state(hass, "sensor.bmv_alarm_reason") == "low_voltage"
    alarm = hass.states.get("sensor.bmv_alarm_reason")
    assert alarm is not None
    assert alarm.attributes["active"] == ["low_voltage", "high_temperature"]
    assert state(hass, "binary_sensor.bmv_alarm") == "on"
    snapshot = entry.runtime_data.snapshot
    assert snapshot is not None
    assert snapshot.alarms == frozenset({"low_voltage", "high_temperature"})
    assert snapshot.temperature == 31.25
    # The aux input switched to the starter battery: its entity appears with the value.
    values |= {"aux_mode": 0, "starter_voltage": 12.71, "temperature": None}
    inject(
        hass,
        SHUNT_ADDRESS,
        encode_advertisement(RECORD_BATTERY_MONITOR, values, KEY, model_id=0xA381, nonce=2),
    )
    await hass.async_block_till_done()
    assert state(hass, "sensor.bmv_auxiliary_voltage") == "12.71"
    values |= {"aux_mode": 1, "midpoint_voltage": 12.8, "starter_voltage": None}
    inject(
        hass,
        SHUNT_ADDRESS,
        encode_advertisement(RECORD_BATTERY_MONITOR, values, KEY, model_id=0xA381, nonce=3),
    )
    await hass.async_block_till_done()
    assert state(hass, "sensor.bmv_mid_point_voltage") == "12.8"
    values |= {"voltage": None}
    inject(
        hass,
        SHUNT_ADDRESS,
        encode_advertisement(RECORD_BATTERY_MONITOR, values, KEY, model_id=0xA381, nonce=4),
    )
    await hass.async_block_till_done()
    assert state(hass, "sensor.bmv_battery_voltage") == STATE_UNKNOWN
    assert state(hass, "sensor.bmv_battery_power") == STATE_UNKNOWN
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_smart_battery_sense_shows_only_what_it_measures(hass: HomeAssistant) -> None:
    entry = entry_for(OTHER_ADDRESS, SENSE_VECTOR["key"], RECORD_BATTERY_MONITOR, 0xA3A4, "Sense")
    await setup(hass, entry)
    inject(hass, OTHER_ADDRESS, bytes.fromhex(SENSE_VECTOR["data"]))
    await hass.async_block_till_done()
    assert state(hass, "sensor.sense_battery_voltage") == "12.22"
    assert state(hass, "sensor.sense_battery_temperature") == "22.5"
    for missing in ("state_of_charge", "battery_current", "battery_power", "time_to_go"):
        assert hass.states.get(f"sensor.sense_{missing}") is None, missing
    assert await hass.config_entries.async_unload(entry.entry_id)


RECORDS: list[tuple[int, int, dict[str, float | int | None], dict[str, str]]] = [
    (
        RECORD_INVERTER,
        0xA261,
        {
            "device_state": 9,
            "alarm": 0x100,
            "battery_voltage": 12.64,
            "ac_apparent_power": 412,
            "ac_voltage": 230.15,
            "ac_current": 1.8,
        },
        {
            "device_state": "inverting",
            "alarm_reason": "overload",
            "battery_voltage": "12.64",
            "ac_output_apparent_power": "412",
            "ac_output_voltage": "230.15",
            "ac_output_current": "1.8",
        },
    ),
    (
        0x04,  # DC/DC
        0xA3C8,
        {
            "charge_state": 3,
            "charger_error": 0,
            "input_voltage": 14.12,
            "output_voltage": 13.95,
            "off_reason": 0x81,
        },
        {
            "charge_state": "bulk",
            "error": "no_error",
            "input_voltage": "14.12",
            "output_voltage": "13.95",
            "off_reason": "no_input_power",
        },
    ),
    (
        RECORD_VE_BUS,
        0xA3A0,
        {
            "device_state": 8,
            "error": 0,
            "battery_current": -3.2,
            "battery_voltage": 52.7,
            "ac_in_state": 0,
            "ac_in_power": 1250,
            "ac_out_power": 980,
            "alarm": 1,
            "battery_temperature": 24,
            "soc": 87,
        },
        {
            "device_state": "passthru",
            "ve_bus_error": "0",
            "battery_current": "-3.2",
            "battery_voltage": "52.7",
            "active_ac_input": "ac_in_1",
            "ac_input_power": "1250",
            "ac_output_power": "980",
            "alarm": "warning",
            "battery_temperature": "24",
            "state_of_charge": "87",
        },
    ),
    (
        RECORD_AC_CHARGER,
        0xA339,
        {
            "charge_state": 5,
            "charger_error": 0,
            "output_voltage1": 13.8,
            "output_current1": 4.5,
            "output_voltage2": None,
            "output_current2": None,
            "output_voltage3": None,
            "output_current3": None,
            "temperature": 31,
            "ac_current": 0.7,
        },
        {
            "charge_state": "float",
            "output_1_voltage": "13.8",
            "output_1_current": "4.5",
            "output_2_voltage": STATE_UNKNOWN,
            "charger_temperature": "31",
            "ac_input_current": "0.7",
        },
    ),
    (
        RECORD_SMART_BATTERY_PROTECT,
        0xA3B1,
        {
            "device_state": 9,
            "output_state": 1,
            "error_code": 0,
            "alarm": 0,
            "warning": 0x0001,
            "input_voltage": 12.9,
            "output_voltage": 12.88,
            "off_reason": 0,
        },
        {
            "device_state": "inverting",
            "output_state": "1",
            "error": "no_error",
            "warning_reason": "low_voltage",
            "input_voltage": "12.9",
            "output_voltage": "12.88",
            "off_reason": "none",
        },
    ),
    (
        RECORD_LYNX_SMART_BMS,
        0xA3E6,
        {
            "error": 0,
            "time_to_go": 600,
            "voltage": 26.4,
            "current": -21.5,
            "io_status": 4,
            "warnings_alarms": 0,
            "soc": 64.5,
            "consumed_ah": -125.0,
            "temperature": 19,
        },
        {
            "bms_error": "0",
            "time_to_go": "600",
            "battery_voltage": "26.4",
            "battery_current": "-21.5",
            "battery_power": "-567.6",
            "state_of_charge": "64.5",
            "consumed_amp_hours": "-125.0",
            "battery_temperature": "19",
        },
    ),
    (
        RECORD_SMART_LITHIUM,
        0xA0E5,
        {
            "bms_flags": 0,
            "error_flags": 0,
            "cell_voltage1": 3.32,
            "cell_voltage2": 3.33,
            "cell_voltage3": 3.31,
            "cell_voltage4": 3.32,
            "cell_voltage5": None,
            "cell_voltage6": None,
            "cell_voltage7": None,
            "cell_voltage8": None,
            "battery_voltage": 13.28,
            "balancer_status": 1,
            "battery_temperature": 21,
        },
        {
            "cell_1_voltage": "3.32",
            "cell_4_voltage": "3.32",
            "cell_5_voltage": STATE_UNKNOWN,
            "battery_voltage": "13.28",
            "balancer": "balanced",
            "battery_temperature": "21",
        },
    ),
    (
        RECORD_MULTI_RS,
        0xA442,
        {
            "device_state": 10,
            "charger_error": 0,
            "battery_current": 12.5,
            "battery_voltage": 53.2,
            "ac_in_state": 2,
            "ac_in_power": 0,
            "ac_out_power": 1500,
            "pv_power": 2100,
            "yield_today": 8500,
        },
        {
            "device_state": "assisting",
            "active_ac_input": "not_connected",
            "ac_output_power": "1500",
            "pv_power": "2100",
            "yield_today": "8.5",
        },
    ),
    (
        RECORD_DC_ENERGY_METER,
        0xA3B0,
        {
            "meter_type": -6,
            "voltage": 14.05,
            "alarm": 0,
            "aux_mode": 2,
            "temperature": 45.5,
            "current": 20.0,
        },
        {
            "meter_type": "alternator",
            "voltage": "14.05",
            "current": "20.0",
            "power": "281.0",
            "temperature": "45.5",
        },
    ),
    (
        RECORD_ORION_XS,
        0xA3F0,
        {
            "charge_state": 4,
            "charger_error": 0,
            "output_voltage": 14.4,
            "output_current": 20.1,
            "input_voltage": 13.2,
            "input_current": 23.4,
            "off_reason": 0,
        },
        {
            "charge_state": "absorption",
            "output_voltage": "14.4",
            "output_current": "20.1",
            "input_voltage": "13.2",
            "input_current": "23.4",
        },
    ),
]


@pytest.mark.parametrize(("record_type", "model_id", "values", "expected"), RECORDS)
async def test_record_types_show_their_values(
    hass: HomeAssistant,
    record_type: int,
    model_id: int,
    values: dict[str, float | int | None],
    expected: dict[str, str],
) -> None:
    entry = entry_for(OTHER_ADDRESS, KEY, record_type, model_id, "Dev")
    await setup(hass, entry)
    data = encode_advertisement(record_type, values, KEY, model_id=model_id, nonce=0x1234)
    inject(hass, OTHER_ADDRESS, data)
    await hass.async_block_till_done()
    for name, value in expected.items():
        assert state(hass, f"sensor.dev_{name}") == value, name
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_unknown_codes_show_unknown_option(hass: HomeAssistant) -> None:
    entry = entry_for(SOLAR_ADDRESS, KEY, RECORD_SOLAR_CHARGER, 0xA053, "Solar")
    await setup(hass, entry)
    values: dict[str, float | int | None] = {
        "charge_state": 200,  # not in the table
        "charger_error": None,  # "not available"
        "battery_voltage": 13.1,
        "battery_current": 0.0,
        "yield_today": 0,
        "pv_power": 0,
        "load_current": None,
    }
    inject(
        hass,
        SOLAR_ADDRESS,
        encode_advertisement(RECORD_SOLAR_CHARGER, values, KEY, model_id=0xA053, nonce=5),
    )
    await hass.async_block_till_done()
    assert state(hass, "sensor.solar_charge_state") == "unknown"
    assert state(hass, "sensor.solar_error") == STATE_UNKNOWN
    assert state(hass, "sensor.solar_load_current") == STATE_UNKNOWN
    assert await hass.config_entries.async_unload(entry.entry_id)


# --- derived yield total ---------------------------------------------------------------------


def solar_advert(yield_today: int | None, nonce: int, key: bytes = KEY) -> bytes:
    values: dict[str, float | int | None] = {
        "charge_state": 3,
        "charger_error": 0,
        "battery_voltage": 13.4,
        "battery_current": 5.0,
        "yield_today": yield_today,
        "pv_power": 70,
        "load_current": 0.5,
    }
    return encode_advertisement(RECORD_SOLAR_CHARGER, values, key, model_id=0xA053, nonce=nonce)


async def test_yield_total_sums_days_and_restores(hass: HomeAssistant) -> None:
    total = "sensor.solar_yield_total"
    mock_restore_cache_with_extra_data(
        hass,
        ((State(total, "12.5"), {"native_value": 12.5, "native_unit_of_measurement": "kWh"}),),
    )
    entry = entry_for(SOLAR_ADDRESS, KEY, RECORD_SOLAR_CHARGER, 0xA053, "Solar")
    await setup(hass, entry)
    sequence = [(1000, "12.5"), (1500, "13.0"), (None, "13.0"), (3000, "14.5"), (200, "14.7")]
    for nonce, (yield_today, expected) in enumerate(sequence, start=1):
        inject(hass, SOLAR_ADDRESS, solar_advert(yield_today, nonce))
        await hass.async_block_till_done()
        assert state(hass, total) == expected, (yield_today, expected)
    attributes = hass.states.get(total)
    assert attributes is not None
    assert attributes.attributes[ATTR_STATE_CLASS] == SensorStateClass.TOTAL_INCREASING
    assert entry.runtime_data.diagnostics()["yield_total_wh"] == pytest.approx(14700.0)
    assert await hass.config_entries.async_unload(entry.entry_id)


# --- availability, odd adverts, key changes -----------------------------------------------


async def test_silence_makes_unavailable_and_next_advert_recovers(
    hass: HomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    entry = entry_for(SOLAR_ADDRESS, KEY, RECORD_SOLAR_CHARGER, 0xA053, "Solar")
    await setup(hass, entry)
    inject(hass, SOLAR_ADDRESS, solar_advert(100, 1))
    await hass.async_block_till_done()
    assert state(hass, "sensor.solar_pv_power") == "70"
    later = bluetooth.MONOTONIC_TIME() + 1000  # longer than the fallback of 15 min
    with (
        patch("habluetooth.base_scanner.monotonic_time_coarse", return_value=later),
        patch("habluetooth.manager.monotonic_time_coarse", return_value=later),
        patch("habluetooth.scanner.monotonic_time_coarse", return_value=later),
    ):
        async_fire_time_changed(
            hass, dt_util.utcnow() + timedelta(seconds=UNAVAILABLE_TRACK_SECONDS + 1)
        )
        await hass.async_block_till_done()
    assert state(hass, "sensor.solar_pv_power") == STATE_UNAVAILABLE
    assert "stopped answering: no advertisements" in caplog.text
    inject(hass, SOLAR_ADDRESS, solar_advert(110, 2))
    await hass.async_block_till_done()
    assert state(hass, "sensor.solar_pv_power") == "70"
    assert "is back" in caplog.text
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_odd_adverts_are_logged_once_and_ignored(
    hass: HomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    entry = entry_for(SOLAR_ADDRESS, KEY, RECORD_SOLAR_CHARGER, 0xA053, "Solar")
    runtime = await setup(hass, entry)
    inject(hass, SOLAR_ADDRESS, solar_advert(100, 1))
    await hass.async_block_till_done()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        # Too short for the solar record (two different nonces), then not an Instant Readout.
        for advert in (
            bytes.fromhex("100253a00102" + "00" + KEY[:1].hex() + "0000"),
            bytes.fromhex("100253a00103" + "00" + KEY[:1].hex() + "0000"),
            bytes.fromhex("1100"),
            bytes.fromhex("1200"),
        ):
            inject(hass, SOLAR_ADDRESS, advert)
            await hass.async_block_till_done()
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and r.name == ble_device.__name__
    ]
    assert len(warnings) == 2, [r.getMessage() for r in warnings]
    assert runtime.data.adverts == 1
    assert state(hass, "sensor.solar_pv_power") == "70"
    # The same advertisement relayed twice (two proxies) is handled once.
    relayed = service_info(SOLAR_ADDRESS, {MANUFACTURER_ID: solar_advert(120, 9)})
    runtime._on_advertisement(relayed, bluetooth.BluetoothChange.ADVERTISEMENT)
    runtime._on_advertisement(relayed, bluetooth.BluetoothChange.ADVERTISEMENT)
    assert runtime.data.adverts == 2
    foreign = service_info(SOLAR_ADDRESS, {0x004C: b"\x02\x15"})  # someone else's data only
    runtime._on_advertisement(foreign, bluetooth.BluetoothChange.ADVERTISEMENT)
    assert runtime.data.adverts == 2
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_changed_key_starts_reauth_and_new_key_recovers(
    hass: HomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    entry = entry_for(SOLAR_ADDRESS, KEY, RECORD_SOLAR_CHARGER, 0xA053, "Solar")
    await setup(hass, entry)
    inject(hass, SOLAR_ADDRESS, solar_advert(100, 1))
    await hass.async_block_till_done()
    assert state(hass, "sensor.solar_pv_power") == "70"
    new_key = bytes.fromhex("fedcba9876543210fedcba9876543210")
    for nonce in range(10, 14):  # four adverts with the new key: not yet
        inject(hass, SOLAR_ADDRESS, solar_advert(100, nonce, new_key))
    await hass.async_block_till_done()
    assert not hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    inject(hass, SOLAR_ADDRESS, solar_advert(100, 14, new_key))
    await hass.async_block_till_done()
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert len(flows) == 1
    assert flows[0]["context"]["source"] == SOURCE_REAUTH
    assert flows[0]["step_id"] == "victron_ble_reauth"
    assert state(hass, "sensor.solar_pv_power") == STATE_UNAVAILABLE
    assert "no longer decode with the stored key" in caplog.text
    inject(hass, SOLAR_ADDRESS, solar_advert(100, 15, new_key))  # no second reauth
    await hass.async_block_till_done()
    assert len(hass.config_entries.flow.async_progress_by_handler(DOMAIN)) == 1

    flow_id = flows[0]["flow_id"]
    result = await hass.config_entries.flow.async_configure(flow_id, {"key": KEY.hex()})
    assert result["errors"] == {"base": "wrong_key"}  # the old key no longer works
    source = advertiser(RECORD_SOLAR_CHARGER, 0xA053, key=new_key)
    result = await flow_with_adverts(
        hass,
        SOLAR_ADDRESS,
        source,
        hass.config_entries.flow.async_configure(flow_id, {"key": new_key.hex()}),
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "key_updated"
    assert entry.data["key"] == new_key.hex()
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    inject(hass, SOLAR_ADDRESS, solar_advert(100, 30, new_key))
    await hass.async_block_till_done()
    assert state(hass, "sensor.solar_pv_power") == "70"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_reauth_steps_of_other_kinds_still_run(hass: HomeAssistant) -> None:
    """The mixin hands other kinds' reauth on, whichever mixin comes first."""

    class OtherKind(ConfigFlow):
        async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
            return ConfigFlowResult(
                type=FlowResultType.ABORT, flow_id="other", handler=DOMAIN, reason="theirs"
            )

    class Combined(config_flow_ble.VictronBleFlow, OtherKind):
        pass

    flow = Combined()
    flow.hass = hass
    result = await flow.async_step_reauth({"device": "sunny_boy"})
    assert result["reason"] == "theirs"


async def test_reauth_of_another_kind_is_not_ours(hass: HomeAssistant) -> None:
    other = MockConfigEntry(domain=DOMAIN, title="MPPT", data={"device": "vedirect"})
    other.add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_REAUTH, "entry_id": other.entry_id},
        data=dict(other.data),
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_not_supported"


async def test_reconfigure_enters_a_new_key(hass: HomeAssistant) -> None:
    data = bytes.fromhex(SOLAR_VECTOR["data"])
    entry = entry_for(SOLAR_ADDRESS, "00" * 16, RECORD_SOLAR_CHARGER, 0xA042, "Solar")
    await setup(hass, entry)
    inject(hass, SOLAR_ADDRESS, data)
    await hass.async_block_till_done()
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_RECONFIGURE, "entry_id": entry.entry_id}
    )
    assert result["step_id"] == "victron_ble_reconfigure"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {"key": "ab" * 15})
    assert result["errors"] == {"base": "invalid_key_format"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"key": SOLAR_VECTOR["key"]}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "key_updated"
    await hass.async_block_till_done()
    assert state(hass, "sensor.solar_battery_voltage") == "13.88"
    assert await hass.config_entries.async_unload(entry.entry_id)


# --- simulated device ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "title"),
    [
        ("victron_ble_battery_monitor", "SmartShunt 500A/50mV"),
        ("victron_ble_dcdc", "Orion Smart 12/12-30A DC-DC Converter"),
        ("victron_ble_inverter", "Phoenix Inverter 12V 800VA 230V"),
        ("victron_ble_ve_bus", "VE.Bus Smart dongle"),
    ],
)
async def test_every_simulated_victron_ble_device(
    hass: HomeAssistant, device: str, title: str
) -> None:
    """Each simulated Bluetooth product of the "Simulated device" step sets up and reports."""
    result = await start_simulated(hass, device)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == f"Simulated {title}"
    assert result["data"]["simulated"] is True
    entry = result["result"]
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    runtime = entry.runtime_data
    assert isinstance(runtime, VictronBleRuntime)
    assert runtime.scanner is not None
    assert runtime.data.values == runtime.scanner.advertiser.values
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_simulated_smartsolar_through_the_bluetooth_stack(hass: HomeAssistant) -> None:
    result = await start_simulated(hass, "victron_ble_solar")
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Simulated SmartSolar MPPT 75/15"
    assert result["data"]["simulated"] is True
    assert len(result["data"]["key"]) == 32
    entry = result["result"]
    await hass.async_block_till_done()
    runtime = entry.runtime_data
    assert isinstance(runtime, VictronBleRuntime)
    assert runtime.scanner is not None
    address = entry.data["address"]
    # The advert went through HA's manager: it is HA's last advertisement of the address.
    info = bluetooth.async_last_service_info(hass, address, connectable=False)
    assert info is not None
    assert info.source == runtime.scanner.source
    assert bluetooth.async_scanner_by_source(hass, runtime.scanner.source) is runtime.scanner
    values = runtime.scanner.advertiser.values
    assert runtime.data.values == values
    sensor = "sensor.simulated_smartsolar_mppt_75_15"
    assert state(hass, f"{sensor}_battery_voltage") == str(values["battery_voltage"])
    assert state(hass, f"{sensor}_pv_power") == str(values["pv_power"])
    # Another advert a second later.
    before = runtime.data.adverts
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=1))
    await hass.async_block_till_done()
    assert runtime.data.adverts == before + 1
    # A simulated device has no key to change.
    reconfigure = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_RECONFIGURE, "entry_id": entry.entry_id}
    )
    assert reconfigure["reason"] == "simulated_key_fixed"
    # A second simulated device runs beside it, with its own scanner.
    other = entry_for("C0:DE:00:00:00:02", KEY, RECORD_VE_BUS, 0xA3A0, "Second", simulated=True)
    second = await setup(hass, other)
    assert second.scanner is not None
    assert state(hass, "sensor.second_ac_output_power") == str(
        second.scanner.advertiser.values["ac_out_power"]
    )
    sources = [runtime.scanner.source, second.scanner.source]
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert await hass.config_entries.async_unload(other.entry_id)
    for source in sources:
        assert bluetooth.async_scanner_by_source(hass, source) is None
    # Home Assistant keeps an unloaded proxy's adverts; removing the entry forgets its radio.
    storage = bluetooth_storage(hass)
    assert set(sources) <= set(storage.scanners())
    await hass.config_entries.async_remove(entry.entry_id)
    assert sources[0] not in storage.scanners()
    assert sources[1] in storage.scanners()
    await hass.config_entries.async_remove(other.entry_id)
    assert sources[1] not in storage.scanners()


def bluetooth_storage(hass: HomeAssistant) -> BluetoothStorage:
    """Where Home Assistant's bluetooth manager keeps remote scanners' advertisement history."""
    storage: BluetoothStorage = _get_manager(hass).storage
    return storage


# --- GATT link -----------------------------------------------------------------------------


class FakeBleakClient:
    """Stands in for bleak's client: relays to a fake peer, failing the way bleak fails."""

    def __init__(
        self,
        peer: Any,
        disconnected_callback: Callable[[Any], None] | None,
        broken_notify: bool = False,
    ) -> None:
        self.peer = peer
        self.broken_notify = broken_notify
        if disconnected_callback is not None:
            peer.disconnected_callback = lambda: disconnected_callback(self)

    @property
    def is_connected(self) -> bool:
        return bool(self.peer.is_connected)

    async def start_notify(self, uuid: str, callback: Callable[[Any, bytearray], None]) -> None:
        if self.broken_notify:
            raise BleakError(f"Characteristic {uuid} was not found")
        await self._relay(
            self.peer.start_notify(uuid, lambda data: callback(None, bytearray(data)))
        )

    async def write_gatt_char(self, uuid: str, data: bytes, response: bool = False) -> None:
        await self._relay(self.peer.write(uuid, bytes(data), response))

    async def read_gatt_char(self, uuid: str) -> bytearray:
        return bytearray(await self._relay(self.peer.read(uuid)))

    async def disconnect(self) -> None:
        await self.peer.disconnect()

    @staticmethod
    async def _relay(operation: Coroutine[Any, Any, Any]) -> Any:
        try:
            return await operation
        except GattNotPaired as err:
            raise BleakError("[org.bluez.Error.NotPermitted] Insufficient authentication") from err
        except GattError as err:
            raise BleakError(str(err)) from err


class FakeConnector:
    """Replaces bleak-retry-connector's ``establish_connection``; hands out fake peers."""

    def __init__(self, *peers: Any) -> None:
        self.peers = list(peers)
        self.devices: list[BLEDevice] = []
        self.clients: list[FakeBleakClient] = []
        self.broken_notify = 0  # how many of the next clients fail to subscribe

    async def __call__(
        self,
        client_class: type,
        device: BLEDevice,
        name: str,
        disconnected_callback: Callable[[Any], None] | None = None,
        **kwargs: Any,
    ) -> FakeBleakClient:
        self.devices.append(device)
        if not self.peers:
            raise BleakError("device not found")
        peer = self.peers.pop(0)
        if isinstance(peer, Exception):
            raise peer
        client = FakeBleakClient(peer, disconnected_callback, self.broken_notify > 0)
        self.broken_notify -= 1
        self.clients.append(client)
        return client


@pytest.fixture
def fast_gatt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ble_device, "GATT_MIN_BACKOFF", 0.05)
    monkeypatch.setattr(ble_device, "SMARTSOLAR_KEEP_ALIVE_EVERY", 0.05)


def issue(hass: HomeAssistant, key: str, entry: MockConfigEntry) -> ir.IssueEntry | None:
    return ir.async_get(hass).async_get_issue(DOMAIN, f"{key}_{entry.entry_id}")


@pytest.mark.usefixtures("fast_gatt")
async def test_gatt_polls_through_the_bleak_adapter(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = FakeVictronGattPeer(seed=3)
    second = FakeVictronGattPeer(seed=3)
    second.set_value(0xEDBB, 19.5)  # PV voltage after the reconnect
    connector = FakeConnector(BleakError("out of range"), first, second)
    monkeypatch.setattr(ble_device, "establish_connection", connector)
    entry = entry_for(
        SOLAR_ADDRESS,
        KEY,
        RECORD_SOLAR_CHARGER,
        0xA053,
        "Solar",
        options={"gatt": True, "gatt_interval": 0.2},
    )
    inject(hass, SOLAR_ADDRESS, solar_advert(100, 1), connectable=True)
    runtime = await setup(hass, entry)
    await wait_for(hass, lambda: runtime.data.gatt_state is GattState.CONNECTED)
    assert connector.devices[0].address == SOLAR_ADDRESS
    await hass.async_block_till_done()
    assert state(hass, "sensor.solar_gatt_link") == "connected"
    assert state(hass, "sensor.solar_pv_voltage") == str(first.values["pv_voltage"])
    assert state(hass, "sensor.solar_load_voltage") == str(first.values["load_voltage"])
    assert state(hass, "sensor.solar_battery_temperature") == STATE_UNKNOWN  # no sensor
    assert state(hass, "binary_sensor.solar_load_output") == "on"
    # Polled values replace the advert's where both have them.
    assert state(hass, "sensor.solar_battery_voltage") == str(first.values["battery_voltage"])
    device = find_device(hass, SOLAR_ADDRESS)
    assert device is not None
    assert device.sw_version == "1.65"
    # Keep-alives go out between polls.
    await wait_for(hass, lambda: first.keep_alives >= 4)

    first.drop()  # out of range: the link drops, then comes back
    await wait_for(hass, lambda: first not in [c.peer for c in connector.clients[-1:]])
    await wait_for(hass, lambda: state(hass, "sensor.solar_pv_voltage") == "19.5")
    assert gatt_state(runtime) is GattState.CONNECTED

    # Turned off in the options (offered to every user): the link closes and stays closed.
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["step_id"] == "victron_ble_options"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"gatt": False, "gatt_interval": 10}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert not second.is_connected
    assert gatt_state(runtime) is None
    assert loaded_state(entry) is ConfigEntryState.LOADED  # applied without a reload
    # And on again.
    third = FakeVictronGattPeer(seed=3)
    connector.peers.append(third)
    hass.config_entries.async_update_entry(entry, options={"gatt": True, "gatt_interval": 0.2})
    await wait_for(hass, lambda: runtime.data.gatt_state is GattState.CONNECTED)
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert not third.is_connected


@pytest.mark.usefixtures("fast_gatt")
async def test_gatt_needs_a_connectable_adapter(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    connector = FakeConnector(FakeVictronGattPeer(seed=1))
    monkeypatch.setattr(ble_device, "establish_connection", connector)
    entry = entry_for(
        SOLAR_ADDRESS, KEY, RECORD_SOLAR_CHARGER, 0xA053, "Solar", options={"gatt": True}
    )
    inject(hass, SOLAR_ADDRESS, solar_advert(100, 1))  # heard by a passive scanner only
    runtime = await setup(hass, entry)
    await wait_for(hass, lambda: runtime.data.gatt_state is GattState.NO_ADAPTER)
    found = issue(hass, "gatt_no_connectable_adapter", entry)
    assert found is not None
    assert found.translation_placeholders == {"name": "Solar", "address": SOLAR_ADDRESS}
    assert not connector.devices
    # A local adapter hears it now: the link comes up and the issue goes away.
    inject(hass, SOLAR_ADDRESS, solar_advert(100, 2), connectable=True, source="hci0")
    await wait_for(hass, lambda: runtime.data.gatt_state is GattState.CONNECTED)
    assert issue(hass, "gatt_no_connectable_adapter", entry) is None
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.usefixtures("fast_gatt")
async def test_gatt_not_paired_raises_an_issue(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    connector = FakeConnector(
        FakeVictronGattPeer(paired=False), GattNotPaired("refused"), FakeVictronGattPeer()
    )
    monkeypatch.setattr(ble_device, "establish_connection", connector)
    entry = entry_for(
        SOLAR_ADDRESS, KEY, RECORD_SOLAR_CHARGER, 0xA053, "Solar", options={"gatt": True}
    )
    inject(hass, SOLAR_ADDRESS, solar_advert(100, 1), connectable=True)
    runtime = await setup(hass, entry)
    await wait_for(hass, lambda: runtime.data.gatt_state is GattState.NOT_PAIRED)
    assert issue(hass, "gatt_not_paired", entry) is not None
    await wait_for(hass, lambda: runtime.data.gatt_state is GattState.CONNECTED)
    assert issue(hass, "gatt_not_paired", entry) is None
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.usefixtures("fast_gatt")
async def test_connected_device_stops_advertising_then_link_drops(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    peer = FakeVictronGattPeer(seed=5)
    connector = FakeConnector(peer)
    monkeypatch.setattr(ble_device, "establish_connection", connector)
    entry = entry_for(
        SOLAR_ADDRESS,
        KEY,
        RECORD_SOLAR_CHARGER,
        0xA053,
        "Solar",
        options={"gatt": True, "gatt_interval": 0.1},
    )
    inject(hass, SOLAR_ADDRESS, solar_advert(100, 1), connectable=True)
    runtime = await setup(hass, entry)
    await wait_for(hass, lambda: runtime.data.gatt_state is GattState.CONNECTED)
    # Home Assistant's periodic check, 15 min after the last advert. (Firing the timers by
    # moving time on would also expire the peer's own keep-alive timer.)
    later = bluetooth.MONOTONIC_TIME() + 1000
    manager = _get_manager(hass)
    pending = manager._cancel_unavailable_tracking
    assert pending is not None
    pending.cancel()  # the check schedules the next one itself
    with patch("habluetooth.manager.monotonic_time_coarse", return_value=later):
        manager._async_check_unavailable()
    await hass.async_block_till_done()
    # No adverts, but the GATT link keeps the values coming.
    assert not bluetooth.async_address_present(hass, SOLAR_ADDRESS, connectable=False)
    assert state(hass, "sensor.solar_pv_voltage") not in (None, STATE_UNAVAILABLE)
    peer.drop()
    await wait_for(hass, lambda: state(hass, "sensor.solar_pv_voltage") == STATE_UNAVAILABLE)
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.usefixtures("fast_gatt")
async def test_smartshunt_over_the_bleak_adapter(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = FakeSmartShuntPeer(seed=2)
    peer = FakeSmartShuntPeer(seed=2)
    connector = FakeConnector(broken, peer)
    connector.broken_notify = 1  # the first client's subscription fails (not for pairing)
    monkeypatch.setattr(ble_device, "establish_connection", connector)
    entry = entry_for(
        SHUNT_ADDRESS,
        SHUNT_VECTOR["key"],
        RECORD_BATTERY_MONITOR,
        0xA389,
        "Shunt",
        options={"gatt": True, "gatt_interval": 0.1},
    )
    inject(hass, SHUNT_ADDRESS, bytes.fromhex(SHUNT_VECTOR["data"]), connectable=True)
    runtime = await setup(hass, entry)
    await wait_for(hass, lambda: runtime.data.gatt_state is GattState.CONNECTED)
    assert len(connector.clients) == 2
    assert peer.keep_alives >= 1
    values = peer.values
    await hass.async_block_till_done()
    assert state(hass, "sensor.shunt_state_of_charge") == str(values["soc"])
    assert state(hass, "sensor.shunt_battery_voltage") == str(values["voltage"])
    assert state(hass, "sensor.shunt_battery_power") == f"{values['power']:.1f}"
    snapshot = runtime.snapshot
    assert snapshot is not None
    assert snapshot.soc == values["soc"]
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert not peer.is_connected


async def test_gatt_option_is_offered_to_everyone_and_off_by_default(hass: HomeAssistant) -> None:
    """No advanced mode any more: the option shows for everyone, and stays off unless chosen."""
    entry = entry_for(SOLAR_ADDRESS, KEY, RECORD_SOLAR_CHARGER, 0xA053, "Solar")
    entry.add_to_hass(hass)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "victron_ble_options"
    schema = result["data_schema"]
    assert schema is not None
    defaults = {str(key): key.default() for key in schema.schema}
    assert defaults["gatt"] is False


async def test_simulated_smartshunt_gatt_and_options(hass: HomeAssistant) -> None:
    entry = entry_for(
        "C0:DE:00:00:00:01",
        KEY,
        RECORD_BATTERY_MONITOR,
        0xA389,
        "Sim shunt",
        options={"gatt": True, "gatt_interval": 0.1},
        simulated=True,
    )
    runtime = await setup(hass, entry)
    await wait_for(hass, lambda: runtime.data.gatt_state is GattState.CONNECTED)
    power = runtime.data.gatt["power"]
    assert isinstance(power, int)
    await wait_for(hass, lambda: state(hass, "sensor.sim_shunt_battery_power") == f"{power:.1f}")
    assert runtime.snapshot is not None
    assert BridgeConfigFlow.async_supports_options_flow(entry)
    inverter = entry_for(OTHER_ADDRESS, KEY, RECORD_INVERTER, 0xA261, "Inverter")
    assert not BridgeConfigFlow.async_supports_options_flow(inverter)
    sense = entry_for(OTHER_ADDRESS, KEY, RECORD_BATTERY_MONITOR, 0xA3A4, "Sense")
    assert not BridgeConfigFlow.async_supports_options_flow(sense)
    assert await hass.config_entries.async_unload(entry.entry_id)


# --- load output control over GATT ---------------------------------------------------------

LOAD_SELECT = "select.solar_load_output_mode"


def solar_gatt_entry() -> MockConfigEntry:
    return entry_for(
        SOLAR_ADDRESS,
        KEY,
        RECORD_SOLAR_CHARGER,
        0xA053,
        "Solar",
        options={"gatt": True, "gatt_interval": 0.2},
    )


async def gatt_solar(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch, *peers: Any
) -> tuple[MockConfigEntry, VictronBleRuntime, FakeConnector]:
    """A SmartSolar heard by a local adapter, its GATT link up on the first peer."""
    connector = FakeConnector(*peers)
    monkeypatch.setattr(ble_device, "establish_connection", connector)
    entry = solar_gatt_entry()
    inject(hass, SOLAR_ADDRESS, solar_advert(100, 1), connectable=True)
    runtime = await setup(hass, entry)
    await wait_for(hass, lambda: runtime.data.gatt_state is GattState.CONNECTED)
    await hass.async_block_till_done()
    return entry, runtime, connector


async def select_load(hass: HomeAssistant, option: str) -> None:
    await hass.services.async_call(
        "select", "select_option", {"entity_id": LOAD_SELECT, "option": option}, blocking=True
    )


def load_writes(peer: FakeVictronGattPeer) -> list[bytes]:
    """The host's writes that set 0xEDAB (tag 3, as the session sends them)."""
    wanted = {encode_vreg_write(VREG_LOAD_CONTROL, bytes((mode,)), 3) for mode in range(8)}
    return [data[:8] for _uuid, data in peer.writes if data[:8] in wanted]


@pytest.mark.usefixtures("fast_gatt")
async def test_load_output_select_writes_over_gatt_and_reads_back(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    peer = FakeVictronGattPeer(seed=3)  # MPPT 75|15 with a load output, mode 1 (BatteryLife)
    assert peer.registers[VREG_LOAD_CONTROL] == b"\x01"
    entry, runtime, _connector = await gatt_solar(hass, monkeypatch, peer)
    await wait_for(hass, lambda: state(hass, LOAD_SELECT) == "auto")
    select = hass.states.get(LOAD_SELECT)
    assert select is not None
    # VE.Direct's option names, so both kinds share one translation.
    assert select.attributes[ATTR_OPTIONS] == [
        "off",
        "auto",
        "alternative_1",
        "alternative_2",
        "on",
        "user_1",
        "user_2",
        "automatic_energy_selector",
    ]
    registered = er.async_get(hass).async_get(LOAD_SELECT)
    assert registered is not None
    assert registered.entity_category is EntityCategory.CONFIG
    assert registered.translation_key == "load_output_control"
    assert registered.unique_id == f"{SOLAR_ADDRESS}_load_output_control"
    assert runtime.data.gatt["capabilities"] == 1  # bit 0: load output present
    assert state(hass, "binary_sensor.solar_load_output") == "on"

    # Off: 06 03 82 19 ED AB 41 00 goes out, the device switches the output off.
    await select_load(hass, "off")
    assert load_writes(peer) == [bytes.fromhex("06038219edab4100")]
    assert peer.registers[VREG_LOAD_CONTROL] == b"\x00"
    assert peer.registers[VREG_LOAD_STATE] == b"\x00"
    # Read back at once: the select and the load state show the device's new values.
    assert runtime.data.gatt["load_output_control"] == 0
    assert state(hass, LOAD_SELECT) == "off"
    assert state(hass, "binary_sensor.solar_load_output") == STATE_OFF

    await select_load(hass, "on")
    assert load_writes(peer)[-1] == bytes.fromhex("06038219edab4104")
    assert peer.registers[VREG_LOAD_CONTROL] == b"\x04"
    assert state(hass, LOAD_SELECT) == "on"
    assert state(hass, "binary_sensor.solar_load_output") == "on"

    await select_load(hass, "automatic_energy_selector")
    assert peer.registers[VREG_LOAD_CONTROL] == b"\x07"
    assert state(hass, LOAD_SELECT) == "automatic_energy_selector"

    # The mode set elsewhere (VictronConnect, the button) shows with the next poll.
    peer.registers[VREG_LOAD_CONTROL] = b"\x02"
    await wait_for(hass, lambda: state(hass, LOAD_SELECT) == "alternative_1")
    # A code outside the table shows as unknown.
    peer.registers[VREG_LOAD_CONTROL] = b"\x09"
    await wait_for(hass, lambda: state(hass, LOAD_SELECT) == STATE_UNKNOWN)

    # HA checks the option against the list; a direct call is refused here too.
    with pytest.raises(ServiceValidationError) as refused:
        await runtime.async_select_load_output("boost")
    assert refused.value.translation_key == "invalid_option"
    assert refused.value.translation_placeholders == {"option": "boost"}
    assert len(load_writes(peer)) == 3
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.usefixtures("fast_gatt")
async def test_load_output_select_unavailable_while_the_link_is_down(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    peer = FakeVictronGattPeer(seed=3)
    entry, runtime, connector = await gatt_solar(hass, monkeypatch, peer)
    await wait_for(hass, lambda: state(hass, LOAD_SELECT) == "auto")

    peer.drop()  # out of range; the next connection attempts find nothing
    await wait_for(hass, lambda: state(hass, LOAD_SELECT) == STATE_UNAVAILABLE)
    assert gatt_state(runtime) is not GattState.CONNECTED
    # Advertisements still feed the other entities.
    assert state(hass, "sensor.solar_yield_today") == "0.1"
    assert state(hass, "sensor.solar_pv_power") not in (None, STATE_UNAVAILABLE)
    # The service skips an unavailable entity; a direct call says why nothing can be written.
    await select_load(hass, "off")
    with pytest.raises(HomeAssistantError) as refused:
        await runtime.async_select_load_output("off")
    assert refused.value.translation_key == "gatt_not_connected"
    assert refused.value.translation_placeholders == {"name": "Solar"}
    assert load_writes(peer) == []

    # Back in range: the select returns with the device's mode, and writes again.
    again = FakeVictronGattPeer(seed=3)
    again.registers[VREG_LOAD_CONTROL] = b"\x04"
    connector.peers.append(again)
    await wait_for(hass, lambda: state(hass, LOAD_SELECT) == "on")
    await select_load(hass, "off")
    assert again.registers[VREG_LOAD_CONTROL] == b"\x00"

    # The link turned off in the options: unavailable, and nothing to write through.
    hass.config_entries.async_update_entry(entry, options={"gatt": False})
    await wait_for(hass, lambda: state(hass, LOAD_SELECT) == STATE_UNAVAILABLE)
    assert gatt_state(runtime) is None
    with pytest.raises(HomeAssistantError) as refused:
        await runtime.async_select_load_output("on")
    assert refused.value.translation_key == "gatt_not_connected"
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.usefixtures("fast_gatt")
async def test_no_load_output_no_select(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    peer = FakeVictronGattPeer(seed=3, has_load_output=False)  # capabilities 0x0140 = 0
    entry, runtime, _connector = await gatt_solar(hass, monkeypatch, peer)
    assert runtime.data.gatt["capabilities"] == 0
    await wait_for(hass, lambda: runtime.data.gatt.get("uptime") is not None)
    assert hass.states.get(LOAD_SELECT) is None
    # The load state register answers, but a charger without a load output shows none.
    assert runtime.data.gatt.get("load_state") is not None
    assert hass.states.get("binary_sensor.solar_load_output") is None
    # Asked anyway, the session reads the capabilities and writes nothing.
    with pytest.raises(HomeAssistantError) as refused:
        await runtime.async_select_load_output("on")
    assert refused.value.translation_key == "load_output_unsupported"
    assert refused.value.translation_placeholders == {"name": "Solar"}
    assert load_writes(peer) == []
    assert peer.registers[VREG_LOAD_CONTROL] == b"\x01"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_no_select_without_gatt_or_on_other_devices(hass: HomeAssistant) -> None:
    # Advertisements alone cannot carry a write: no select without the link.
    entry = entry_for(SOLAR_ADDRESS, KEY, RECORD_SOLAR_CHARGER, 0xA053, "Solar")
    runtime = await setup(hass, entry)
    inject(hass, SOLAR_ADDRESS, solar_advert(100, 1))
    await hass.async_block_till_done()
    assert state(hass, "sensor.solar_pv_power") == "70"
    assert hass.states.get(LOAD_SELECT) is None
    with pytest.raises(HomeAssistantError) as refused:
        await runtime.async_select_load_output("on")
    assert refused.value.translation_key == "gatt_not_connected"
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.usefixtures("fast_gatt")
async def test_load_output_from_the_load_state_when_capabilities_do_not_answer(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_state = FakeVictronGattPeer(seed=3)
    del with_state.registers[VREG_CAPABILITIES]
    entry, runtime, _connector = await gatt_solar(hass, monkeypatch, with_state)
    assert runtime.data.gatt["capabilities"] is None
    await wait_for(hass, lambda: state(hass, LOAD_SELECT) == "auto")
    await hass.config_entries.async_remove(entry.entry_id)  # its entities go too
    assert er.async_get(hass).async_get(LOAD_SELECT) is None

    # Neither register answers: no load output to control.
    neither = FakeVictronGattPeer(seed=3)
    del neither.registers[VREG_CAPABILITIES], neither.registers[VREG_LOAD_STATE]
    entry, runtime, _connector = await gatt_solar(hass, monkeypatch, neither)
    await hass.async_block_till_done()
    assert runtime.data.gatt["load_state"] is None
    assert hass.states.get("select.solar_load_output_mode") is None
    assert await hass.config_entries.async_unload(entry.entry_id)


class RevertingSolarPeer(FakeVictronGattPeer):
    """Answers a write with the new load output mode, then is back on the old one."""

    async def write(self, uuid: str, data: bytes, response: bool) -> None:
        before = self.registers[VREG_LOAD_CONTROL]
        await super().write(uuid, data, response)  # the answers are made here
        self.registers[VREG_LOAD_CONTROL] = before


@pytest.mark.usefixtures("fast_gatt")
async def test_load_output_write_refused_or_not_kept(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Claims a load output but ignores the write: the echo still says 1, so the write failed.
    stubborn = FakeVictronGattPeer(seed=3, has_load_output=False)
    stubborn.set_value(VREG_CAPABILITIES, 1)
    reverting = RevertingSolarPeer(seed=3)
    entry, runtime, connector = await gatt_solar(hass, monkeypatch, stubborn)
    await wait_for(hass, lambda: state(hass, LOAD_SELECT) == "auto")
    with pytest.raises(HomeAssistantError) as failed:
        await select_load(hass, "on")
    assert failed.value.translation_key == "write_failed"
    assert failed.value.translation_placeholders == {
        "register": "0xEDAB",
        "error": "load output control is 01, not 04",
    }
    assert load_writes(stubborn) == [bytes.fromhex("06038219edab4104")]
    assert state(hass, LOAD_SELECT) == "auto"

    # Echoes the new mode, but reads back the old one: not accepted, and the select shows so.
    connector.peers.append(reverting)
    stubborn.drop()
    await wait_for(hass, lambda: connector.clients[-1].peer is reverting)
    await wait_for(hass, lambda: state(hass, LOAD_SELECT) == "auto")
    with pytest.raises(HomeAssistantError) as refused:
        await select_load(hass, "off")
    assert refused.value.translation_key == "write_not_accepted"
    assert refused.value.translation_placeholders == {
        "register": "0xEDAB",
        "value": "off",
        "readback": "auto",
    }
    assert state(hass, LOAD_SELECT) == "auto"

    # The link drops in the middle of the write.
    reverting.drop_after(0)
    with pytest.raises(HomeAssistantError) as lost:
        await runtime.async_select_load_output("on")
    assert lost.value.translation_key == "write_failed"
    assert await hass.config_entries.async_unload(entry.entry_id)


# --- diagnostics ---------------------------------------------------------------------------


async def test_diagnostics_keep_the_key_out(
    hass: HomeAssistant, hass_client: ClientSessionGenerator
) -> None:
    entry = entry_for(SOLAR_ADDRESS, KEY, RECORD_SOLAR_CHARGER, 0xA053, "Solar")
    runtime = await setup(hass, entry)
    inject(hass, SOLAR_ADDRESS, solar_advert(100, 1), rssi=-55)
    await hass.async_block_till_done()
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    assert KEY.hex() not in repr(diagnostics)
    assert diagnostics["entry"]["data"]["key"] == "**REDACTED**"
    assert diagnostics["device"]["model"] == "SmartSolar MPPT 75/15"
    assert diagnostics["device"]["values"]["pv_power"] == 70
    assert diagnostics["device"]["rssi"] == -55
    assert runtime.diagnostics()["gatt_state"] is None
    assert await hass.config_entries.async_unload(entry.entry_id)
