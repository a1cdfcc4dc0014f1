"""Bluetooth BMS device kind: every BMS family ``aiobmsble`` reads, through HA's Bluetooth.

The runtime polls the BMS on a background task through the pure adapter
:class:`..protocols.ble_bms.BleBmsLink`, which drives the library's class for the BMS family and
turns its sample into a :class:`BmsReading` — the same shape a wired BMS gives — so the entities,
the energy counters, the computed charge limits and the :class:`BatterySnapshot` for a Sunny
Island are those of the Serial BMS kind.

Connection: before every update the runtime asks Home Assistant for the device's current
``BLEDevice`` (``async_ble_device_from_address``), which names the adapter or ESPHome proxy that
hears it best right now, and hands it to the link when it changed. By default the connection is
kept between updates (a reconnect costs seconds and the BMS's own keep-alive). The option
"release the Bluetooth connection between updates" disconnects after each update instead: a
proxy has only a few connection slots (three on an ESP32), and a held connection takes one for
good. The price is a connection set-up on every update: more radio time, a slower update, and
some BMSes count every connection.

Availability: the entities go unavailable when Home Assistant's Bluetooth says the device went
out of range (``async_track_unavailable``) or an update fails, and come back with the next
successful update; a new advertisement wakes the poller at once.

Switches: for JK and JBD the charge and discharge FETs are switches (the Serial BMS kind's),
written and read back through the link (:meth:`BleBmsLink.set_fets`); switching on is refused
while the BMS reports a protection. The other families show none.

Simulated BMS: :class:`SimulatedBmsScanner` is registered like an ESPHome proxy's scanner, with
a ``HaBluetoothConnector`` whose client backend is the simulator's
:class:`..simulators.ble_bms.SimulatedBleakBackend`. The library's ``BleakClient`` is Home
Assistant's wrapper (see :func:`use_home_assistant_bleak_client`), which picks that scanner's
backend for the simulated address, so the library talks to the fake peer through the same path
as to a BMS behind a proxy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
import contextlib
from dataclasses import dataclass, field
from datetime import timedelta
import logging
import time
from typing import TYPE_CHECKING, Any, Final

from bleak.exc import BleakError
from homeassistant.components import bluetooth
from homeassistant.const import Platform
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryNotReady, HomeAssistantError
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.event import async_track_time_interval

from ...const import CONF_ADDRESS, CONF_POLL_INTERVAL, CONF_SIMULATED, DOMAIN
from ...control.charge import ChargeController
from ...control.snapshot import BatterySnapshot
from ...protocols import ProtocolError
from ...protocols.bms_common import BmsReading
from ...runtime import BridgeConfigEntry
from ...simulators.day_clock import demo_start_time_of_day
from ..base import DeviceRuntime, PushCoordinator, async_shutdown_on_stop
from ..charge_settings import settings_from_entry
from ..registry import async_entry_device
from ..serial_bms.data import SerialBmsData, record_gap, record_reading
from ..simulation import sun_time_scale
from .entities import BINARY_SENSORS, SENSORS, SWITCHES

if TYPE_CHECKING:
    from bleak.backends.device import BLEDevice

    from ...protocols.ble_bms import BleBmsLink

_LOGGER = logging.getLogger(__name__)

CONF_FAMILY: Final = "family"
"""The ``aiobmsble`` module of the BMS family, e.g. ``jikong_bms``."""
CONF_RELEASE_CONNECTION: Final = "release_connection"
DEFAULT_BLE_POLL_INTERVAL: Final = 10.0
POLL_INTERVAL_RANGE: Final = (2.0, 300.0)
UPDATE_TIMEOUT: Final = 30.0
"""One update, connection set-up included (a proxy may need several attempts)."""
SIMULATED_ADVERT_INTERVAL: Final = timedelta(seconds=5)
SIMULATED_RSSI: Final = -58


@dataclass(frozen=True, slots=True)
class SimulatedBms:
    """A BMS the built-in peers can play, and how it advertises (as the real one does)."""

    family: str
    name: str
    service_uuids: tuple[str, ...]
    manufacturer_data: Mapping[int, bytes]


def _uuid16(short: int) -> str:
    return f"0000{short:04x}-0000-1000-8000-00805f9b34fb"


SIMULATED_BMSES: Final[dict[str, SimulatedBms]] = {
    # JK-B2A8S20P (JK02_32S layout): service FFE0, company id 0x0B65 as JK modules send it
    # (aiobmsble bms/jikong_bms.py matchers).
    "jk": SimulatedBms(
        "jikong_bms", "JK_B2A8S20P", (_uuid16(0xFFE0),), {0x0B65: bytes.fromhex("c8478cc3e8b3")}
    ),
    # JBD SP04S034: name "JBD-…", service FF00 (aiobmsble bms/jbd_bms.py matchers).
    "jbd": SimulatedBms("jbd_bms", "JBD-SP04S034", (_uuid16(0xFF00),), {}),
    # Daly: name "DL-…", service FFF0 (aiobmsble bms/daly_bms.py matchers).
    "daly": SimulatedBms("daly_bms", "DL-40D63C3204D2", (_uuid16(0xFFF0),), {}),
}
"""Simulated Bluetooth BMSes by menu choice (``ble_bms_<choice>``)."""


def use_home_assistant_bleak_client() -> bool:
    """Make the library connect through Home Assistant's ``BleakClient`` wrapper.

    ``aiobmsble.basebms`` binds ``BleakClient`` when it is imported. Home Assistant's Bluetooth
    integration replaces ``bleak.BleakClient`` with its wrapper (which picks the adapter or
    proxy with a free slot that hears the device best) only when it is set up — so a library
    imported before that, e.g. by a config flow, a test or another integration, would hold on
    to plain bleak and bypass proxies. This integration depends on ``bluetooth``, so when an
    entry starts the wrapper is in place; the library's name is pointed at it, exactly as
    Home Assistant itself does for ``bleak_retry_connector``. True when it had to be moved.
    (Imported here, not at the top: the flow imports this module on the event loop.)
    """
    from ...protocols.ble_bms import follow_bleak_client

    return follow_bleak_client()


@dataclass(slots=True)
class BleBmsData(SerialBmsData):
    """A Serial BMS's data shape (entities shared), plus what only the Bluetooth link knows."""

    device: dict[str, str] = field(default_factory=dict)
    rssi: int | None = None
    out_of_range: bool = False


def simulated_scanner_source(address: str) -> str:
    """The scanner ("proxy") a simulated BMS with ``address`` is heard and reached through."""
    return f"{DOMAIN}_simulated_bms_{address.replace(':', '').lower()}"


class SimulatedBmsScanner(bluetooth.BaseHaRemoteScanner):
    """A pretend connectable Bluetooth proxy that hears one simulated BMS and connects to it.

    Registered with Home Assistant's Bluetooth manager as an ESPHome proxy's scanner is. Its
    connector's client backend is the simulator's bleak backend, so a connection Home
    Assistant's ``BleakClient`` makes through this scanner reaches the fake peer.
    """

    def __init__(self, address: str, bms: SimulatedBms) -> None:
        """A connectable scanner named after the simulated BMS's address."""
        from ...simulators.ble_bms import SimulatedBleakBackend

        source = simulated_scanner_source(address)
        connector = bluetooth.HaBluetoothConnector(
            client=SimulatedBleakBackend, source=source, can_connect=lambda: True
        )
        super().__init__(source, f"Simulated BMS radio {address}", connector, True)
        self.device_address = address
        self.bms = bms

    @callback
    def async_advertise(self, _now: object = None) -> None:
        """Hear the BMS's advertisement."""
        self._async_on_advertisement(
            self.device_address,
            SIMULATED_RSSI,
            self.bms.name,
            list(self.bms.service_uuids),
            {},
            dict(self.bms.manufacturer_data),
            None,
            {},
            bluetooth.MONOTONIC_TIME(),
        )


def create_peer(bms: SimulatedBms) -> Any:
    """The simulator's fake BMS for a simulated family, living the demo's day.

    With a short demo day asked for, the pack lives the day of the other simulated devices (PV
    by day, the house load at night) at their speed, as the simulated serial BMSes do.
    """
    from ...simulators import ble_bms as sim

    scale = sun_time_scale()
    battery = sim.BleBatteryState(start_time_of_day=demo_start_time_of_day(scale), time_scale=scale)
    peers: dict[str, Callable[..., Any]] = {
        "jikong_bms": sim.JkBlePeer,
        "jbd_bms": sim.JbdBlePeer,
        "daly_bms": sim.DalyBlePeer,
    }
    return peers[bms.family](battery=battery)


def simulated_bms_for(entry_data: Mapping[str, Any]) -> SimulatedBms:
    """The simulated BMS an entry plays (by its family)."""
    family = entry_data[CONF_FAMILY]
    return next(bms for bms in SIMULATED_BMSES.values() if bms.family == family)


@callback
def async_forget_simulated_scanner(hass: HomeAssistant, entry: BridgeConfigEntry) -> None:
    """Drop the advertisement history Home Assistant keeps for a removed simulated BMS."""
    if entry.data.get(CONF_SIMULATED):
        bluetooth.async_remove_scanner(hass, simulated_scanner_source(entry.data[CONF_ADDRESS]))


async def async_remove_entry(hass: HomeAssistant, entry: BridgeConfigEntry) -> None:
    """A removed simulated BMS leaves no radio behind."""
    async_forget_simulated_scanner(hass, entry)


class BleBmsRuntime(DeviceRuntime):
    """One Bluetooth BMS: polling through the library, energy, limits, snapshot, simulation."""

    platforms = (Platform.SENSOR, Platform.BINARY_SENSOR, Platform.SWITCH)

    def __init__(self, hass: HomeAssistant, entry: BridgeConfigEntry) -> None:
        """Prepare the runtime; nothing connects until :meth:`async_start`."""
        super().__init__()
        self.hass = hass
        self.entry = entry
        self.address: str = entry.data[CONF_ADDRESS]
        self.family: str = entry.data[CONF_FAMILY]
        self.data = BleBmsData()
        self._coordinator = PushCoordinator(hass, name=entry.title, initial=self.data)
        self.controller = ChargeController(settings_from_entry(entry))
        self.link: BleBmsLink | None = None
        self.scanner: SimulatedBmsScanner | None = None
        self._unregister_peer: Callable[[], None] | None = None
        self.peer: Any = None
        self._device: BLEDevice | None = None
        self._snapshot: BatterySnapshot | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._unsubscribe: list[CALLBACK_TYPE] = []
        self._stopping = False
        self._started_keep = self.keep_connection

    # --- DeviceRuntime ---

    @property
    def coordinator(self) -> PushCoordinator[BleBmsData]:
        """The coordinator the entities listen to."""
        return self._coordinator

    @property
    def device_info(self) -> DeviceInfo:
        """The BMS, keyed and connected by its Bluetooth address; identity as it tells it."""
        device = self.data.device
        return DeviceInfo(
            identifiers={(DOMAIN, self.address)},
            connections={(dr.CONNECTION_BLUETOOTH, self.address)},
            manufacturer=device.get("manufacturer"),
            model=device.get("model"),
            model_id=device.get("model_id"),
            name=self.entry.title,
            serial_number=device.get("serial_number"),
            sw_version=device.get("sw_version") or device.get("fw_version"),
            hw_version=device.get("hw_version"),
        )

    def descriptions(self, platform: Platform) -> Sequence[EntityDescription]:
        """The Serial BMS kind's descriptions, plus the Bluetooth ones."""
        return {
            Platform.SENSOR: SENSORS,
            Platform.BINARY_SENSOR: BINARY_SENSORS,
            Platform.SWITCH: SWITCHES,
        }.get(platform, ())

    @property
    def snapshot(self) -> BatterySnapshot | None:
        """The latest reading as a battery snapshot (a Sunny Island battery source)."""
        return self._snapshot

    @property
    def simulated(self) -> bool:
        """Whether the BMS is the built-in simulation."""
        return bool(self.entry.data.get(CONF_SIMULATED))

    @property
    def poll_interval(self) -> float:
        """Seconds between updates (read live, so a changed option applies at once)."""
        return float(self.entry.options.get(CONF_POLL_INTERVAL, DEFAULT_BLE_POLL_INTERVAL))

    @property
    def keep_connection(self) -> bool:
        """Whether the connection is held between updates (the default)."""
        return not self.entry.options.get(CONF_RELEASE_CONNECTION, False)

    async def async_start(self) -> None:
        """Find the BMS, read it once (or retry set-up later), then poll in the background."""
        from ...protocols.ble_bms import BleBmsLink, bms_class_for

        if self.simulated:
            self._async_start_simulation()
        if use_home_assistant_bleak_client():
            _LOGGER.debug("aiobmsble now connects through Home Assistant's BleakClient")
        device = bluetooth.async_ble_device_from_address(self.hass, self.address, connectable=True)
        if device is None:
            await self.async_shutdown()
            raise ConfigEntryNotReady(
                translation_domain=DOMAIN,
                translation_key="ble_not_in_range",
                translation_placeholders={"address": self.address},
            )
        self._device = device
        # The family's module is imported the first time: in the import executor.
        bms_class = await self.hass.async_add_import_executor_job(bms_class_for, self.family)
        self.link = BleBmsLink(
            bms_class, device, keep_connection=self.keep_connection, timeout=UPDATE_TIMEOUT
        )
        self.data.fet_control = self.link.can_switch_fets
        try:
            async with asyncio.timeout(UPDATE_TIMEOUT):
                self.data.device = dict(await self.link.device_info())
                await self._async_update_once()
        except (ProtocolError, BleakError, OSError, TimeoutError) as err:
            await self.async_shutdown()
            raise ConfigEntryNotReady(
                translation_domain=DOMAIN,
                translation_key="ble_no_answer",
                translation_placeholders={"address": self.address, "error": str(err)},
            ) from err
        self._update_device_registry()
        self._unsubscribe.append(
            bluetooth.async_track_unavailable(
                self.hass, self._on_unavailable, self.address, connectable=True
            )
        )
        self._unsubscribe.append(
            bluetooth.async_register_callback(
                self.hass,
                self._on_advertisement,
                bluetooth.BluetoothCallbackMatcher(address=self.address, connectable=True),
                bluetooth.BluetoothScanningMode.ACTIVE,
            )
        )
        self._task = self.entry.async_create_background_task(
            self.hass, self._async_poll_loop(), f"{DOMAIN} bluetooth bms {self.address}"
        )
        async_shutdown_on_stop(self.hass, self.entry, self.async_shutdown)

    async def async_shutdown(self) -> None:
        """Stop polling, disconnect, stop the simulation (safe to call twice)."""
        self._stopping = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._unsubscribe:
            self._unsubscribe.pop()()
        if self.link is not None:
            with contextlib.suppress(ProtocolError, BleakError, OSError, TimeoutError):
                await self.link.close()
        if self._unregister_peer is not None:
            self._unregister_peer()
            self._unregister_peer = None

    async def async_set_fet(self, which: str, on: bool) -> None:
        """Switch the charge or discharge FET (JK, JBD); refused while the BMS reports a protection.

        The link writes through the library's connection and reads the BMS back; the reading
        read back is shown at once.
        """
        reading = self.data.reading
        if on and reading is not None and reading.protections:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="fet_refused_fault",
                translation_placeholders={"faults": ", ".join(sorted(reading.protections))},
            )
        assert self.link is not None  # switches exist only once the link has read the BMS
        try:
            if which == "charge":
                confirmed = await self.link.set_fets(charge=on)
            else:
                confirmed = await self.link.set_fets(discharge=on)
        except ProtocolError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="fet_write_failed",
                translation_placeholders={"error": str(err)},
            ) from err
        self._apply(confirmed)

    async def async_apply_options(self) -> bool:
        """New charge settings and poll interval apply live; holding the link needs a reload."""
        if self.keep_connection != self._started_keep:
            return False
        self.controller = ChargeController(settings_from_entry(self.entry))
        self._wake.set()
        return True

    def diagnostics(self) -> Mapping[str, Any]:
        """Family, device identity, last reading and counters; the caller redacts the address."""
        reading = self.data.reading
        link = self.link
        return {
            "family": self.family,
            "address": self.address,
            "simulated": self.simulated,
            "keep_connection": self.keep_connection,
            "poll_interval": self.poll_interval,
            "link_up": self._coordinator.link_up,
            "out_of_range": self.data.out_of_range,
            "rssi": self.data.rssi,
            "device": {k: v for k, v in self.data.device.items() if k != "serial_number"},
            "polls": self.data.polls,
            "failures": self.data.failures,
            "link_counters": None if link is None else _counters(link),
            "reading": None if reading is None else repr(reading),
            "energy": {
                "charged_kwh": self.data.energy.charged_kwh,
                "discharged_kwh": self.data.energy.discharged_kwh,
            },
        }

    # --- polling ---

    async def _async_poll_loop(self) -> None:
        while True:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()
            started = time.monotonic()
            try:
                await self._async_update_once()
            except (ProtocolError, BleakError, OSError, TimeoutError) as err:
                record_gap(self.data)
                if not self._stopping:
                    self._coordinator.async_set_link(False, str(err) or type(err).__name__)
            _LOGGER.debug("%s: update took %.3f s", self.entry.title, time.monotonic() - started)

    async def _async_update_once(self) -> None:
        """One update through the device Home Assistant reaches best right now."""
        assert self.link is not None
        device = bluetooth.async_ble_device_from_address(self.hass, self.address, connectable=True)
        if device is None:
            raise _OutOfRangeError("not heard by any connectable adapter or proxy")
        if device is not self._device:
            self._device = device
            self.link.replace_device(device)
        async with asyncio.timeout(UPDATE_TIMEOUT):
            reading = await self.link.update()
        self._apply(reading)

    def _apply(self, reading: BmsReading) -> None:
        self.data.out_of_range = False
        self._snapshot = record_reading(self.data, reading, self.controller)
        self._async_publish_snapshot(self._snapshot)
        self._coordinator.async_set_updated_data(self.data)

    def _update_device_registry(self) -> None:
        """The first update tells model and firmware: the device entry shows them."""
        registry = dr.async_get(self.hass)
        device = async_entry_device(self.hass, self.entry.entry_id, self.address)
        if device is None:
            return
        info = self.device_info
        registry.async_update_device(
            device.id,
            manufacturer=info.get("manufacturer"),
            model=info.get("model"),
            sw_version=info.get("sw_version"),
            hw_version=info.get("hw_version"),
            serial_number=info.get("serial_number"),
        )

    # --- Bluetooth callbacks ---

    @callback
    def _on_advertisement(
        self, info: bluetooth.BluetoothServiceInfoBleak, _change: bluetooth.BluetoothChange
    ) -> None:
        self.data.rssi = info.rssi
        if self.data.out_of_range or not self._coordinator.link_up:
            self.data.out_of_range = False
            self._wake.set()  # back in range: read it now rather than at the next tick

    @callback
    def _on_unavailable(self, _info: bluetooth.BluetoothServiceInfoBleak) -> None:
        """Home Assistant no longer hears the BMS through any connectable adapter or proxy."""
        self.data.out_of_range = True
        self.data.energy.add(time.monotonic(), None)
        self._coordinator.async_set_link(False, "out of Bluetooth range")

    # --- simulation ---

    def _async_start_simulation(self) -> None:
        """Register the fake peer and a proxy-like scanner that hears and reaches it."""
        from ...simulators.ble_bms import register_peer

        bms = simulated_bms_for(self.entry.data)
        self.peer = create_peer(bms)
        self._unregister_peer = register_peer(self.address, self.peer)
        scanner = SimulatedBmsScanner(self.address, bms)
        self.scanner = scanner
        self._unsubscribe.append(
            bluetooth.async_register_scanner(self.hass, scanner, connection_slots=3)
        )
        self._unsubscribe.append(scanner.async_setup())
        self._unsubscribe.append(
            async_track_time_interval(
                self.hass,
                scanner.async_advertise,
                SIMULATED_ADVERT_INTERVAL,
                name=f"{DOMAIN} simulated bms advertisements",
            )
        )
        scanner.async_advertise()


class _OutOfRangeError(ProtocolError):
    """No connectable adapter or proxy hears the BMS right now."""


def _counters(link: BleBmsLink) -> dict[str, Any]:
    return {
        "updates": link.updates,
        "failures": link.failures,
        "connects": link.connects,
        "reconnects": link.reconnects,
        "last_error": link.last_error,
    }
