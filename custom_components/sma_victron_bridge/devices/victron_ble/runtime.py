"""Victron Bluetooth device kind: Instant Readout advertisements, and optionally a GATT link.

Victron products broadcast their live values encrypted in Bluetooth advertisements. Home
Assistant's bluetooth stack (local adapters and ESPHome proxies alike) hands every advertisement
of the entry's address to :meth:`VictronBleRuntime._on_advertisement`, which decrypts it with the
device key and pushes the values to the coordinator. Nothing is polled and nothing connects: the
entities go unavailable when Home Assistant's unavailable tracking says the device went quiet and
come back with the next advertisement.

Two extras:

* A SmartSolar or SmartShunt can also be read over a GATT connection (off by default, an option):
  a background task connects through ``bleak-retry-connector``, polls with the pure
  :mod:`..protocols.victron_gatt` sessions, keeps the link alive, and drops and retries with
  backoff. The link needs pairing, so only a local adapter can carry it. While it is up, a
  SmartSolar with a load output also takes a new load output mode through it.
* A simulated device (advanced mode) feeds advertisements from
  :class:`..simulators.victron_ble.VictronAdvertiser` into the bluetooth stack through a scanner
  registered like a Bluetooth proxy's, so the whole path — stack, callback, decryption — runs
  as with hardware.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
import contextlib
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
import logging
import time
from typing import TYPE_CHECKING, Any, Final

from bleak.exc import BleakError
from bleak_retry_connector import BleakClientWithServiceCache, establish_connection
from homeassistant.components import bluetooth
from homeassistant.const import Platform
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr, issue_registry as ir
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.event import async_track_time_interval

from ...const import CONF_ADDRESS, CONF_SIMULATED, DOMAIN, MANUFACTURER_VICTRON
from ...control.snapshot import BatterySnapshot
from ...protocols import ProtocolError
from ...protocols.victron_ble import (
    ALARM_REASONS,
    MANUFACTURER_ID,
    MODEL_LAYOUT_OVERRIDES,
    MODEL_NAMES,
    RECORD_BATTERY_MONITOR,
    RECORD_DCDC_CONVERTER,
    RECORD_INVERTER,
    RECORD_KEYS,
    RECORD_SOLAR_CHARGER,
    RECORD_VE_BUS,
    KeyMismatch,
    decode_advertisement,
    flag_names,
    parse_header,
)
from ...protocols.victron_gatt import (
    DEFAULT_VREGS,
    VREG_CAPABILITIES,
    VREG_LOAD_CONTROL,
    GattDisconnected,
    GattError,
    GattLink,
    GattNotPaired,
    GattUnsupported,
    SmartShuntSession,
    SmartSolarSession,
)
from ...runtime import BridgeConfigEntry
from ...simulators.day_clock import demo_start_time_of_day
from ...simulators.victron_ble import FakeSmartShuntPeer, FakeVictronGattPeer, VictronAdvertiser
from ..base import DeviceRuntime, PushCoordinator, async_shutdown_on_stop
from ..registry import async_entry_device
from ..simulation import sun_time_scale
from ..vedirect.registers import LOAD_OUTPUT_OPTIONS
from .core import async_withdraw_core_discovery
from .entities import BINARY_SENSORS, SELECTS, SENSORS

if TYPE_CHECKING:
    from bleak import BleakClient
    from bleak.backends.characteristic import BleakGATTCharacteristic

_LOGGER = logging.getLogger(__name__)

# Entry data and options.
CONF_KEY: Final = "key"
CONF_RECORD_TYPE: Final = "record_type"
CONF_MODEL_ID: Final = "model_id"
CONF_GATT: Final = "gatt"
CONF_GATT_INTERVAL: Final = "gatt_interval"
DEFAULT_GATT_INTERVAL: Final = 10.0

# A key that stops decoding (the owner reset it in VictronConnect) is only reported once this
# many different advertisements in a row were encrypted with another key.
KEY_MISMATCH_LIMIT: Final = 5

# GATT link: retry backoff, and how often each device needs to hear from us to keep the link.
GATT_MIN_BACKOFF: Final = 5.0
GATT_MAX_BACKOFF: Final = 300.0
GATT_CONNECT_ATTEMPTS: Final = 3
SMARTSOLAR_KEEP_ALIVE_EVERY: Final = 4.0  # the device drops the link after 10 s without one
SMARTSHUNT_KEEP_ALIVE_EVERY: Final = 20.0  # 60 s there

SIMULATED_ADVERT_INTERVAL: Final = timedelta(seconds=1)

# A SmartSolar poll: the session's default registers, plus what the load output select needs
# (whether the model has a load output at all, and its current mode).
SMARTSOLAR_VREGS: Final[tuple[int, ...]] = tuple(
    dict.fromkeys((*DEFAULT_VREGS, VREG_CAPABILITIES, VREG_LOAD_CONTROL))
)


@dataclass(frozen=True, slots=True)
class SimulatedModel:
    """A device the built-in advertiser can play: its record type and product id."""

    record_type: int
    model_id: int


SIMULATED_MODELS: Final[dict[str, SimulatedModel]] = {
    "solar": SimulatedModel(RECORD_SOLAR_CHARGER, 0xA053),  # SmartSolar MPPT 75/15
    "battery_monitor": SimulatedModel(RECORD_BATTERY_MONITOR, 0xA389),  # SmartShunt 500A
    "dcdc": SimulatedModel(RECORD_DCDC_CONVERTER, 0xA3C8),  # Orion Smart 12/12-30A
    "inverter": SimulatedModel(RECORD_INVERTER, 0xA261),  # Phoenix 12V 800VA
    "ve_bus": SimulatedModel(RECORD_VE_BUS, 0xA3A0),  # VE.Bus Smart dongle
}


def model_name(model_id: int) -> str:
    """The product name Victron gives a product id, or the id itself for unknown products."""
    return MODEL_NAMES.get(model_id) or f"Victron device 0x{model_id:04X}"


def gatt_capable(record_type: int, model_id: int) -> bool:
    """Whether the product has a GATT service this integration speaks (SmartSolar, shunt)."""
    if model_id in MODEL_LAYOUT_OVERRIDES:  # a Smart Battery Sense has neither
        return False
    return record_type in (RECORD_SOLAR_CHARGER, RECORD_BATTERY_MONITOR)


class GattState(StrEnum):
    """What the optional GATT link is doing (a diagnostic sensor shows it)."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    NOT_PAIRED = "not_paired"
    NO_ADAPTER = "no_adapter"


@dataclass(slots=True)
class VictronBleData:
    """Everything known about one device, updated in place as advertisements arrive."""

    record_type: int
    model_id: int
    values: dict[str, float | int | None] = field(default_factory=dict)
    gatt: dict[str, float | int | str | None] = field(default_factory=dict)
    gatt_state: GattState | None = None  # None while the GATT link is off
    yield_total: float | None = None  # Wh, summed from the daily yield
    adverts: int = 0
    rssi: int | None = None

    @property
    def layout(self) -> int:
        """The record layout the values follow (a Smart Battery Sense uses a monitor's)."""
        return MODEL_LAYOUT_OVERRIDES.get(self.model_id, self.record_type)

    @property
    def is_battery_sense(self) -> bool:
        """A Smart Battery Sense: battery-monitor layout, but only voltage and temperature."""
        return self.model_id in MODEL_LAYOUT_OVERRIDES


class NoConnectableAdapterError(Exception):
    """Only non-connectable scanners (e.g. passive proxies) hear the device."""


class BleakGattLink:
    """A connected ``BleakClient`` seen through the :class:`GattLink` protocol.

    The sessions only speak :class:`GattLink`; this adapter is the one place that knows bleak.
    A refusal for lack of pairing (BlueZ says "NotPermitted"/"Insufficient authentication")
    becomes :class:`GattNotPaired`, so the runtime can tell the user to pair.
    """

    def __init__(self, client: BleakClient) -> None:
        """Wrap an already connected client."""
        self._client = client

    @property
    def is_connected(self) -> bool:
        """Whether bleak still has the link."""
        return bool(self._client.is_connected)

    async def start_notify(self, uuid: str, callback: Callable[[bytes], None]) -> None:
        """Subscribe; bleak's (characteristic, bytearray) becomes plain bytes."""

        def relay(_characteristic: BleakGATTCharacteristic, data: bytearray) -> None:
            callback(bytes(data))

        await self._guard(self._client.start_notify(uuid, relay))

    async def write(self, uuid: str, data: bytes, response: bool) -> None:
        """Write a characteristic."""
        await self._guard(self._client.write_gatt_char(uuid, data, response=response))

    async def read(self, uuid: str) -> bytes:
        """Read a characteristic."""
        return bytes(await self._guard(self._client.read_gatt_char(uuid)))

    async def disconnect(self) -> None:
        """Close the link."""
        await self._client.disconnect()

    @staticmethod
    async def _guard[T](operation: Awaitable[T]) -> T:
        try:
            return await operation
        except BleakError as err:
            text = str(err).lower().replace(" ", "")
            if any(word in text for word in ("authentic", "notpermitted", "notauthorized")):
                raise GattNotPaired(f"the device refuses access: {err}") from err
            raise


type GattConnector = Callable[[Callable[[], None]], Awaitable[GattLink]]
"""Connect the GATT link; the argument is called when the link drops."""


async def async_connect_gatt(
    hass: HomeAssistant, address: str, name: str, on_disconnect: Callable[[], None]
) -> GattLink:
    """Connect to ``address`` through a connectable adapter (raises NoConnectableAdapterError)."""
    device = bluetooth.async_ble_device_from_address(hass, address, connectable=True)
    if device is None:
        raise NoConnectableAdapterError(address)
    client = await establish_connection(
        BleakClientWithServiceCache,
        device,
        name,
        disconnected_callback=lambda _client: on_disconnect(),
        max_attempts=GATT_CONNECT_ATTEMPTS,
    )
    return BleakGattLink(client)


def simulated_scanner_source(address: str) -> str:
    """The scanner ("proxy") source a simulated device with ``address`` is heard through."""
    return f"{DOMAIN}_simulated_{address.replace(':', '').lower()}"


@callback
def async_forget_simulated_scanner(hass: HomeAssistant, entry: BridgeConfigEntry) -> None:
    """Drop the advertisement history Home Assistant keeps for a removed simulated device."""
    if entry.data.get(CONF_SIMULATED):
        bluetooth.async_remove_scanner(hass, simulated_scanner_source(entry.data[CONF_ADDRESS]))


async def async_remove_entry(hass: HomeAssistant, entry: BridgeConfigEntry) -> None:
    """A removed simulated device leaves no radio behind."""
    async_forget_simulated_scanner(hass, entry)


class SimulatedScanner(bluetooth.BaseHaRemoteScanner):
    """A pretend Bluetooth proxy that hears one simulated Victron device.

    It is registered with Home Assistant's bluetooth manager exactly as an ESPHome proxy's
    scanner is, and reports advertisements the same way, so everything behind it is the code
    path real hardware takes.
    """

    def __init__(self, address: str, advertiser: VictronAdvertiser) -> None:
        """A non-connectable scanner named after the simulated device's address."""
        # The name doubles as the "adapter" the manager files the scanner under: one each.
        super().__init__(
            simulated_scanner_source(address), f"Simulated Victron radio {address}", None, False
        )
        self.device_address = address
        self.advertiser = advertiser

    @callback
    def async_advertise(self, _now: object = None) -> None:
        """Hear the device's next advertisement."""
        now = bluetooth.MONOTONIC_TIME()
        manufacturer_data = self.advertiser.next_manufacturer_data(now)
        self._async_on_advertisement(
            self.device_address, -62, None, [], {}, manufacturer_data, None, {}, now
        )


class VictronBleRuntime(DeviceRuntime):
    """One Victron Bluetooth device: advertisement decoding, optional GATT link, simulation."""

    platforms = (Platform.SENSOR, Platform.BINARY_SENSOR, Platform.SELECT)

    def __init__(self, hass: HomeAssistant, entry: BridgeConfigEntry) -> None:
        """Prepare the runtime; nothing is registered until :meth:`async_start`."""
        super().__init__()
        self.hass = hass
        self.entry = entry
        self.address: str = entry.data[CONF_ADDRESS]
        self._key = bytes.fromhex(entry.data[CONF_KEY])
        self.data = VictronBleData(
            record_type=int(entry.data[CONF_RECORD_TYPE]),
            model_id=int(entry.data[CONF_MODEL_ID]),
        )
        self._coordinator = PushCoordinator(hass, name=entry.title, initial=self.data)
        self._unsubscribe: list[CALLBACK_TYPE] = []
        self._last_nonce: int | None = None
        self._mismatched_nonces: set[int] = set()
        self._reauth_requested = False
        self._logged: set[str] = set()
        self._snapshot: BatterySnapshot | None = None
        self._last_yield_today: float | None = None
        self._yield_counted = 0.0  # Wh counted since start
        self._yield_restored: float | None = None  # Wh the entity saved before the restart
        self.scanner: SimulatedScanner | None = None
        self.gatt_connector: GattConnector = self._async_connect_gatt
        self._gatt_task: asyncio.Task[None] | None = None
        self._gatt_session: SmartSolarSession | SmartShuntSession | None = None
        self._firmware: str | None = None

    # --- DeviceRuntime ---

    @property
    def coordinator(self) -> PushCoordinator[VictronBleData]:
        """The coordinator the entities listen to."""
        return self._coordinator

    @property
    def device_info(self) -> DeviceInfo:
        """One device per entry, keyed and connected by its Bluetooth address."""
        return DeviceInfo(
            identifiers={(DOMAIN, self.address)},
            connections={(dr.CONNECTION_BLUETOOTH, self.address)},
            manufacturer=MANUFACTURER_VICTRON,
            model=model_name(self.data.model_id),
            model_id=f"0x{self.data.model_id:04X}",
            name=self.entry.title,
        )

    def descriptions(self, platform: Platform) -> Sequence[EntityDescription]:
        """Descriptions for every record type; each one exists only for its own layout."""
        return {
            Platform.SENSOR: SENSORS,
            Platform.BINARY_SENSOR: BINARY_SENSORS,
            Platform.SELECT: SELECTS,
        }.get(platform, ())

    @property
    def snapshot(self) -> BatterySnapshot | None:
        """Battery monitors publish their readings (e.g. for the Sunny Island BMS)."""
        return self._snapshot

    @property
    def simulated(self) -> bool:
        """Whether the device is the built-in simulation."""
        return bool(self.entry.data.get(CONF_SIMULATED))

    async def async_start(self) -> None:
        """Listen for the device's advertisements (and start the simulation or GATT link).

        A device out of range at startup is not an error: Bluetooth devices come and go, and the
        entities appear with its first advertisement.
        """
        if self.simulated:
            self._async_start_simulation()
        matcher = bluetooth.BluetoothCallbackMatcher(
            address=self.address, manufacturer_id=MANUFACTURER_ID, connectable=False
        )
        self._unsubscribe.append(
            bluetooth.async_register_callback(
                self.hass, self._on_advertisement, matcher, bluetooth.BluetoothScanningMode.PASSIVE
            )
        )
        self._unsubscribe.append(
            bluetooth.async_track_unavailable(
                self.hass, self._on_unavailable, self.address, connectable=False
            )
        )
        self._async_update_gatt()
        # Also for a simulated device: its advertisements reach HA's Bluetooth like real ones.
        self._unsubscribe.append(async_withdraw_core_discovery(self.hass, self.address))
        async_shutdown_on_stop(self.hass, self.entry, self.async_shutdown)

    async def async_shutdown(self) -> None:
        """Stop listening, close the GATT link, stop the simulation (safe to call twice)."""
        while self._unsubscribe:
            self._unsubscribe.pop()()
        await self._async_stop_gatt()
        self._clear_gatt_issues()

    async def async_apply_options(self) -> bool:
        """Turn the GATT link on or off without a reload (the interval is read live)."""
        if self.gatt_enabled:
            self._async_update_gatt()
        else:
            await self._async_stop_gatt()
        return True

    def diagnostics(self) -> Mapping[str, Any]:
        """Decoded values, link state and counters; the key stays out."""
        return {
            "record_type": self.data.record_type,
            "model_id": f"0x{self.data.model_id:04X}",
            "model": model_name(self.data.model_id),
            "values": dict(self.data.values),
            "adverts": self.data.adverts,
            "rssi": self.data.rssi,
            "link_up": self._coordinator.link_up,
            "key_mismatches": len(self._mismatched_nonces),
            "yield_total_wh": self.data.yield_total,
            "gatt_state": None if self.data.gatt_state is None else self.data.gatt_state.value,
            "gatt": dict(self.data.gatt),
            "simulated": self.simulated,
        }

    # --- advertisements (event loop callbacks) ---

    @callback
    def _on_advertisement(
        self, info: bluetooth.BluetoothServiceInfoBleak, _change: bluetooth.BluetoothChange
    ) -> None:
        raw = info.manufacturer_data.get(MANUFACTURER_ID)
        if raw is None:
            return
        try:
            header = parse_header(raw)
        except ProtocolError as err:
            self._log_once("header", "%s: ignoring advertisement: %s", err)
            return
        if header.nonce == self._last_nonce:
            return  # the same advertisement again, e.g. relayed by a second proxy
        try:
            values = decode_advertisement(raw, self._key)
        except KeyMismatch:
            self._on_key_mismatch(header.nonce)
            return
        except ProtocolError as err:  # short advertisement, record type without a layout
            self._log_once(type(err).__name__, "%s: ignoring advertisement: %s", err)
            return
        self._last_nonce = header.nonce
        self._mismatched_nonces.clear()
        self._reauth_requested = False
        data = self.data
        data.record_type = int(values["record_type"] or 0)
        data.model_id = int(values["model_id"] or 0)
        data.values.update(values)
        data.adverts += 1
        data.rssi = info.rssi
        if "yield_today" in values:
            self._count_yield(values["yield_today"])
        if data.layout == RECORD_BATTERY_MONITOR:
            self._publish_snapshot()
        self._coordinator.async_set_updated_data(data)

    def _log_once(self, kind: str, message: str, err: ProtocolError) -> None:
        """Odd advertisements repeat every second: say so once, then stay quiet."""
        if kind in self._logged:
            _LOGGER.debug(message, self.entry.title, err)
            return
        self._logged.add(kind)
        _LOGGER.warning(message, self.entry.title, err)

    @callback
    def _on_key_mismatch(self, nonce: int) -> None:
        """The device uses another key now: after a few adverts, ask the user for it."""
        self._mismatched_nonces.add(nonce)
        if len(self._mismatched_nonces) < KEY_MISMATCH_LIMIT or self._reauth_requested:
            return
        self._reauth_requested = True
        _LOGGER.warning("%s: advertisements no longer decode with the stored key", self.entry.title)
        self._coordinator.async_set_link(False, "the encryption key no longer matches")
        self.entry.async_start_reauth(self.hass)

    @callback
    def _on_unavailable(self, _info: bluetooth.BluetoothServiceInfoBleak) -> None:
        """Home Assistant has not heard the device for longer than it usually advertises."""
        if self.data.gatt_state is GattState.CONNECTED:
            return  # a connected device stops advertising; the GATT link keeps data coming
        self._last_nonce = None
        self._coordinator.async_set_link(False, "no advertisements")

    def _count_yield(self, today: float | int | None) -> None:
        """Sum the daily yield's increases; a drop means a new day started from zero.

        After a restart the first reading only sets the baseline: the yield between stopping
        and starting again on the same day is lost rather than counted twice.
        """
        if today is None:
            return
        last = self._last_yield_today
        self._last_yield_today = float(today)
        if last is not None:
            self._yield_counted += today - last if today >= last else today
        self.data.yield_total = (self._yield_restored or 0.0) + self._yield_counted

    @callback
    def restore_yield_total(self, kwh: float) -> None:
        """Continue the yield total the entity saved before the restart."""
        self._yield_restored = kwh * 1000.0
        self.data.yield_total = self._yield_restored + self._yield_counted

    def _publish_snapshot(self) -> None:
        values = self.data.values
        alarm = values.get("alarm")
        snapshot = BatterySnapshot(
            timestamp=time.monotonic(),
            soc=_number(values.get("soc")),
            voltage=_number(values.get("voltage")),
            current=_number(values.get("current")),
            temperature=_number(values.get("temperature")),
            alarms=frozenset(flag_names(int(alarm), ALARM_REASONS)) if alarm else frozenset(),
        )
        self._snapshot = snapshot
        self._async_publish_snapshot(snapshot)

    # --- simulation ---

    def _async_start_simulation(self) -> None:
        """Register a scanner that hears the simulated device, and make it advertise."""
        scale = sun_time_scale()
        advertiser = VictronAdvertiser(
            self.data.record_type,
            key=self._key,
            model_id=self.data.model_id,
            time_scale=scale,
            start_time_of_day=demo_start_time_of_day(scale),
        )
        scanner = SimulatedScanner(self.address, advertiser)
        self.scanner = scanner
        self._unsubscribe.append(bluetooth.async_register_scanner(self.hass, scanner))
        self._unsubscribe.append(scanner.async_setup())
        self._unsubscribe.append(
            async_track_time_interval(
                self.hass,
                scanner.async_advertise,
                SIMULATED_ADVERT_INTERVAL,
                name=f"{DOMAIN} simulated advertisements",
            )
        )
        scanner.async_advertise()

    # --- GATT link ---

    @property
    def gatt_enabled(self) -> bool:
        """Whether the user turned the GATT link on for a product that has one."""
        return bool(self.entry.options.get(CONF_GATT)) and gatt_capable(
            self.data.record_type, self.data.model_id
        )

    @property
    def gatt_interval(self) -> float:
        """Seconds between GATT polls."""
        return float(self.entry.options.get(CONF_GATT_INTERVAL, DEFAULT_GATT_INTERVAL))

    @callback
    def _async_update_gatt(self) -> None:
        if self.gatt_enabled and self._gatt_task is None:
            self._set_gatt_state(GattState.CONNECTING)
            self._gatt_task = self.entry.async_create_background_task(
                self.hass, self._async_gatt_loop(), f"{DOMAIN} victron gatt {self.address}"
            )

    async def _async_stop_gatt(self) -> None:
        """Cancel the link task; its session closes the connection on the way out."""
        task, self._gatt_task = self._gatt_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.data.gatt_state is not None:
            self.data.gatt_state = None
            self.data.gatt.clear()
            self._clear_gatt_issues()
            self._coordinator.async_update_listeners()

    async def _async_gatt_loop(self) -> None:
        backoff = GATT_MIN_BACKOFF
        while True:
            if await self._async_gatt_session():
                backoff = GATT_MIN_BACKOFF
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, GATT_MAX_BACKOFF)

    async def _async_connect_gatt(self, on_disconnect: Callable[[], None]) -> GattLink:
        if self.simulated:
            peer: FakeVictronGattPeer | FakeSmartShuntPeer = (
                FakeVictronGattPeer()
                if self.data.record_type == RECORD_SOLAR_CHARGER
                else FakeSmartShuntPeer()
            )
            peer.disconnected_callback = on_disconnect
            return peer
        return await async_connect_gatt(self.hass, self.address, self.entry.title, on_disconnect)

    async def _async_gatt_session(self) -> bool:
        """Connect, poll until the link fails; True when at least one poll succeeded."""
        self._set_gatt_state(GattState.CONNECTING)
        lost = asyncio.Event()
        session: SmartSolarSession | SmartShuntSession | None = None

        def on_disconnect() -> None:
            lost.set()
            if session is not None:
                session.connection_lost()

        try:
            link = await self.gatt_connector(on_disconnect)
        except NoConnectableAdapterError:
            self._set_gatt_state(GattState.NO_ADAPTER)
            self._raise_gatt_issue("gatt_no_connectable_adapter")
            return False
        except GattNotPaired:
            self._on_not_paired()
            return False
        except (BleakError, GattError, OSError, TimeoutError) as err:
            _LOGGER.debug("%s: GATT connection failed: %s", self.entry.title, err)
            self._set_gatt_state(GattState.DISCONNECTED)
            return False
        if self.data.record_type == RECORD_SOLAR_CHARGER:
            session = SmartSolarSession(link, SMARTSOLAR_VREGS)
        else:
            session = SmartShuntSession(link)
        self._gatt_session = session
        polled = False
        try:
            await session.start()
            while True:
                self._on_gatt_values(await session.poll())
                polled = True
                await self._async_gatt_idle(session, lost)
        except GattNotPaired:
            self._on_not_paired()
        except GattError as err:
            _LOGGER.info("%s: GATT link lost: %s", self.entry.title, err)
            self._set_gatt_state(GattState.DISCONNECTED)
        finally:
            self._gatt_session = None
            await session.close()
        return polled

    async def async_select_load_output(self, option: str) -> None:
        """Set a SmartSolar's load output mode over the GATT link, then read the device back.

        The session checks the capabilities register and that the device echoes the new mode;
        a poll right after refreshes the mode and the load state the entities show. Only an
        open link can carry the write: Instant Readout advertisements are one-way.
        """
        codes = {name: code for code, name in LOAD_OUTPUT_OPTIONS.items()}
        if option not in codes:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="invalid_option",
                translation_placeholders={"option": option},
            )
        session = self._gatt_session
        if (
            not isinstance(session, SmartSolarSession)
            or not session.connected
            or self.data.gatt_state is not GattState.CONNECTED
        ):
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="gatt_not_connected",
                translation_placeholders={"name": self.entry.title},
            )
        mode = codes[option]
        register = f"0x{VREG_LOAD_CONTROL:04X}"
        try:
            await session.set_load_output(mode)
            values = await session.poll()
        except GattUnsupported as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="load_output_unsupported",
                translation_placeholders={"name": self.entry.title},
            ) from err
        except ProtocolError as err:  # link lost, no answer, or the device kept its old mode
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="write_failed",
                translation_placeholders={"register": register, "error": str(err)},
            ) from err
        self._on_gatt_values(values)
        readback = values.get("load_output_control")
        if readback != mode:
            shown = LOAD_OUTPUT_OPTIONS.get(readback) if isinstance(readback, int) else None
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="write_not_accepted",
                translation_placeholders={
                    "register": register,
                    "value": option,
                    "readback": str(shown or readback),
                },
            )

    async def _async_gatt_idle(
        self, session: SmartSolarSession | SmartShuntSession, lost: asyncio.Event
    ) -> None:
        """Wait for the next poll, keeping the link alive; raise at once if it drops."""
        every = (
            SMARTSOLAR_KEEP_ALIVE_EVERY
            if isinstance(session, SmartSolarSession)
            else SMARTSHUNT_KEEP_ALIVE_EVERY
        )
        remaining = self.gatt_interval
        while remaining > 0:
            step = min(remaining, every)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(step):
                    await lost.wait()
            if lost.is_set():
                raise GattDisconnected("the device dropped the link")
            remaining -= step
            if remaining > 0:
                await session.keep_alive()

    def _on_gatt_values(self, values: Mapping[str, float | int | str | None]) -> None:
        """Merge polled values: shared names update the advertisement's values too."""
        data = self.data
        data.gatt.update(values)
        shared = RECORD_KEYS.get(data.layout, ())
        for name, value in values.items():
            if name in shared and isinstance(value, int | float):
                data.values[name] = value
        firmware = values.get("firmware")
        if isinstance(firmware, str) and firmware != self._firmware:
            self._firmware = firmware
            device = async_entry_device(self.hass, self.entry.entry_id, self.address)
            if device is not None:
                dr.async_get(self.hass).async_update_device(device.id, sw_version=firmware)
        if data.gatt_state is not GattState.CONNECTED:
            _LOGGER.info("%s: GATT link up", self.entry.title)
            self._clear_gatt_issues()
        data.gatt_state = GattState.CONNECTED
        if data.layout == RECORD_BATTERY_MONITOR:
            self._publish_snapshot()
        self._coordinator.async_set_updated_data(data)

    def _on_not_paired(self) -> None:
        self._set_gatt_state(GattState.NOT_PAIRED)
        self._raise_gatt_issue("gatt_not_paired")

    def _set_gatt_state(self, state: GattState) -> None:
        previous = self.data.gatt_state
        if previous is state:
            return
        self.data.gatt_state = state
        if previous is GattState.CONNECTED and not bluetooth.async_address_present(
            self.hass, self.address, connectable=False
        ):
            # The device stopped advertising while connected; with the link gone too,
            # nothing feeds the entities any more.
            self._coordinator.async_set_link(False, "GATT link lost and no advertisements")
        self._coordinator.async_update_listeners()

    def _raise_gatt_issue(self, translation_key: str) -> None:
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            f"{translation_key}_{self.entry.entry_id}",
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key=translation_key,
            translation_placeholders={"name": self.entry.title, "address": self.address},
        )

    def _clear_gatt_issues(self) -> None:
        for translation_key in ("gatt_no_connectable_adapter", "gatt_not_paired"):
            ir.async_delete_issue(self.hass, DOMAIN, f"{translation_key}_{self.entry.entry_id}")


def _number(value: float | int | None) -> float | None:
    return None if value is None else float(value)
