"""Serial BMS device kind: JBD/LLT/Overkill (incl. JBD UP rack packs), Daly, ANT and JK BMSes.

A JK PB bus (several inverter-BMS packs on one RS485 line) is a Serial BMS entry too; its
runtime is in :mod:`.bus`, and :func:`create_runtime` picks the one an entry needs.

A BMS only answers when asked, so the runtime polls it on a background task (one full refresh
per interval), publishes every reading as a :class:`BatterySnapshot` for other entries (the
Sunny Island BMS, battery-sense forwarding), integrates charged/discharged energy and computes the
charge limits the pack allows right now. FET switching is written, then confirmed by reading back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
import contextlib
from dataclasses import dataclass
import logging
import time
from typing import Any

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryNotReady, HomeAssistantError
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import EntityDescription

from ...const import (
    CONF_ADDRESS,
    CONF_INVERT_CURRENT,
    CONF_POLL_INTERVAL,
    CONF_PORT,
    CONF_PROTOCOL,
    CONF_SERIAL_NUMBER,
    CONF_SIMULATED,
    CONNECT_TIMEOUT,
    DEFAULT_POLL_INTERVAL,
    DOMAIN,
)
from ...control.charge import ChargeController
from ...control.snapshot import BatterySnapshot
from ...protocols import ProtocolError, jbd_up
from ...protocols.bms_client import (
    FET_CONTROL,
    BmsChecksumError,
    BmsInfo,
    BmsNotDetected,
    BmsProtocol,
    BmsTimeout,
    JkPbBusDetected,
    SerialBmsClient,
    detect_protocol,
)
from ...protocols.bms_common import BmsReading
from ...runtime import BridgeConfigEntry
from ...simulators.bms import AntSimulator, DalySimulator, JbdSimulator, JbdUpSimulator
from ...simulators.day_clock import demo_start_time_of_day
from ...simulators.jk import JkSimulator
from ..base import DeviceRuntime, PushCoordinator, async_shutdown_on_stop
from ..charge_settings import settings_from_entry
from ..simulation import sun_time_scale
from .bus import JkPbBusRuntime
from .bus_entry import is_bus_entry
from .data import SerialBmsData, anonymous_repr, record_gap, record_reading
from .entities import BINARY_SENSORS, SENSORS, SWITCHES

_LOGGER = logging.getLogger(__name__)

BUS_DETECTED = "jk_pb_bus"
"""Probe outcome: no single BMS answered, but JK PB packs did (the flow scans the bus)."""

PROTOCOL_NAMES = {
    BmsProtocol.JBD: "JBD",
    BmsProtocol.JBD_UP: "JBD",
    BmsProtocol.DALY: "Daly",
    BmsProtocol.ANT: "ANT",
    BmsProtocol.ANT_NEW: "ANT",
    BmsProtocol.JK: "JK",
}


type BmsSimulator = JbdSimulator | JbdUpSimulator | DalySimulator | AntSimulator | JkSimulator


def create_simulator(protocol: BmsProtocol, serial_number: str | None) -> BmsSimulator:
    """The built-in simulator for a protocol (advanced mode 'simulated BMS').

    With a short demo day asked for, the battery lives the day of the other simulated devices
    (PV by day, the house load at night) at their speed; otherwise its current stays at rest.
    """
    scale = sun_time_scale()
    start = demo_start_time_of_day(scale)
    if protocol is BmsProtocol.JBD:
        return JbdSimulator(serial_number=serial_number, time_scale=scale, start_time_of_day=start)
    if protocol is BmsProtocol.JBD_UP:
        return JbdUpSimulator(
            serial_number=serial_number, time_scale=scale, start_time_of_day=start
        )
    if protocol is BmsProtocol.DALY:
        return DalySimulator(serial_number=serial_number, time_scale=scale, start_time_of_day=start)
    if protocol is BmsProtocol.JK:
        return JkSimulator(serial_number=serial_number, time_scale=scale, start_time_of_day=start)
    return AntSimulator(
        protocol="new" if protocol is BmsProtocol.ANT_NEW else "legacy",
        serial_number=serial_number,
        time_scale=scale,
        start_time_of_day=start,
    )


class SerialBmsRuntime(DeviceRuntime):
    """One BMS on one serial port: polling, energy, limits and FET control."""

    platforms = (Platform.SENSOR, Platform.BINARY_SENSOR, Platform.SWITCH)

    def __init__(self, hass: HomeAssistant, entry: BridgeConfigEntry) -> None:
        """Prepare the runtime; the port is opened by :meth:`async_start`."""
        super().__init__()
        self.hass = hass
        self.entry = entry
        self.protocol = BmsProtocol(entry.data[CONF_PROTOCOL])
        self.data = SerialBmsData(fet_control=self.protocol in FET_CONTROL)
        self._coordinator = PushCoordinator(hass, name=entry.title, initial=self.data)
        self._simulator: BmsSimulator | None = None
        self._client: SerialBmsClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._snapshot: BatterySnapshot | None = None
        self._interval = float(entry.options.get(CONF_POLL_INTERVAL, DEFAULT_POLL_INTERVAL))
        self._lock = asyncio.Lock()
        self._stopping = False
        # The limits this pack allows now, computed like a BMS driver would send them.
        self.controller = ChargeController(settings_from_entry(entry))

    @property
    def coordinator(self) -> PushCoordinator[SerialBmsData]:
        """The coordinator the entities listen to."""
        return self._coordinator

    @property
    def client(self) -> SerialBmsClient:
        """The serial client (valid after :meth:`async_start`)."""
        assert self._client is not None
        return self._client

    @property
    def simulator(self) -> BmsSimulator | None:
        """The built-in simulator of a simulated BMS."""
        return self._simulator

    @property
    def device_info(self) -> DeviceInfo:
        """The BMS as a device: model and serial number where the BMS tells them."""
        info = self.data.info
        return DeviceInfo(
            identifiers={(DOMAIN, self.entry.unique_id or self.entry.entry_id)},
            manufacturer=PROTOCOL_NAMES[self.protocol],
            model=(info.model if info and info.model else f"{PROTOCOL_NAMES[self.protocol]} BMS"),
            name=self.entry.title,
            serial_number=(info.serial if info and info.serial else None)
            or self.entry.data.get(CONF_SERIAL_NUMBER),
            sw_version=info.firmware_version if info else None,
            hw_version=info.hardware_version if info else None,
        )

    def descriptions(self, platform: Platform) -> Sequence[EntityDescription]:
        """Serial-BMS entity descriptions for ``platform``."""
        return {
            Platform.SENSOR: SENSORS,
            Platform.BINARY_SENSOR: BINARY_SENSORS,
            Platform.SWITCH: SWITCHES,
        }.get(platform, ())

    @property
    def snapshot(self) -> BatterySnapshot | None:
        """The latest reading as a battery snapshot for other entries."""
        return self._snapshot

    async def async_start(self) -> None:
        """Open the port, read the BMS once (or fail setup), then poll in the background."""
        port: str = self.entry.data.get(CONF_PORT, "")
        if self.entry.data.get(CONF_SIMULATED):
            self._simulator = create_simulator(
                self.protocol, self.entry.data.get(CONF_SERIAL_NUMBER)
            )
            await self._simulator.start()
            port = self._simulator.port
        self._client = SerialBmsClient(
            port,
            self.protocol,
            address=self.entry.data.get(CONF_ADDRESS),
            invert_current=bool(self.entry.data.get(CONF_INVERT_CURRENT, False)),
        )
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                self.data.info = await self._client.read_info()
                await self._async_poll_once()
        except (ProtocolError, OSError, TimeoutError) as err:
            await self.async_shutdown()
            raise ConfigEntryNotReady(
                translation_domain=DOMAIN,
                translation_key="no_answer",
                translation_placeholders={"port": port},
            ) from err
        self._task = self.entry.async_create_background_task(
            self.hass, self._async_poll_loop(), f"{DOMAIN} serial bms {port}"
        )
        async_shutdown_on_stop(self.hass, self.entry, self.async_shutdown)

    async def _async_poll_loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self._async_poll_once()
            except (ProtocolError, OSError) as err:
                record_gap(self.data)
                if not self._stopping:
                    self._coordinator.async_set_link(False, str(err))
            await asyncio.sleep(max(0.0, self._interval - (time.monotonic() - started)))

    async def _async_poll_once(self) -> None:
        async with self._lock:
            reading = await self.client.read()
        self._apply(reading)

    def _apply(self, reading: BmsReading) -> None:
        self.data.error_counters = self.client.error_counters
        self._snapshot = record_reading(self.data, reading, self.controller)
        self._async_publish_snapshot(self._snapshot)
        self._coordinator.async_set_updated_data(self.data)

    async def async_set_fet(self, which: str, on: bool) -> None:
        """Switch the charge or discharge FET; refused while the BMS reports a protection."""
        reading = self.data.reading
        if on and reading is not None and reading.protections:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="fet_refused_fault",
                translation_placeholders={"faults": ", ".join(sorted(reading.protections))},
            )
        try:
            async with self._lock:
                if which == "charge":
                    confirmed = await self.client.set_fets(charge=on)
                else:
                    confirmed = await self.client.set_fets(discharge=on)
        except ProtocolError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="fet_write_failed",
                translation_placeholders={"error": str(err)},
            ) from err
        self._apply(confirmed)

    async def async_shutdown(self) -> None:
        """Stop polling and close the port (safe to call twice)."""
        self._stopping = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.close()
        if self._simulator is not None:
            await self._simulator.stop()

    def diagnostics(self) -> Mapping[str, Any]:
        """The last reading, link statistics and protocol."""
        reading = self.data.reading
        return {
            "protocol": self.protocol.value,
            "simulated": self._simulator is not None,
            "link_up": self._coordinator.link_up,
            "polls": self.data.polls,
            "failures": self.data.failures,
            "info": anonymous_repr(self.data.info),
            "reading": anonymous_repr(reading),
            "error_counters": self.data.error_counters,
            "energy": {
                "charged_kwh": self.data.energy.charged_kwh,
                "discharged_kwh": self.data.energy.discharged_kwh,
            },
        }


@dataclass(frozen=True, slots=True)
class BmsProbe:
    """What the connection test learned: the protocol that answered and who the BMS is."""

    protocol: BmsProtocol
    info: BmsInfo
    reading: BmsReading
    address: int | None = None

    @property
    def title(self) -> str:
        """Entry title: the BMS's model (or protocol) and serial number where known."""
        name = self.info.model or f"{PROTOCOL_NAMES[self.protocol]} BMS"
        return f"{name} {self.info.serial}" if self.info.serial else name


async def async_probe_bms(
    port: str,
    protocol: BmsProtocol | None,
    *,
    address: int | None = None,
    pack_address: int | None = None,
    invert_current: bool = False,
) -> BmsProbe:
    """Talk to the BMS on ``port`` (detecting the protocol if None); raise ProbeError.

    ``address`` is the address of the protocol asked for (the Daly host address, or the stored
    JBD UP pack address when an entry is checked again); ``pack_address`` is the JBD UP pack
    address a form asked for, which detection tries and which a chosen JBD UP protocol uses.
    """
    from ..base import ProbeError

    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            if protocol is None:
                protocol, detected = await detect_protocol(
                    port, timeout=1.0, jbd_up_address=pack_address or jbd_up.DEFAULT_ADDRESS
                )
                address = detected.address if detected.address is not None else address
            elif protocol is BmsProtocol.JBD_UP and pack_address is not None:
                address = pack_address
            client = SerialBmsClient(port, protocol, address=address, invert_current=invert_current)
            try:
                info = await client.read_info()
                reading = await client.read()
            finally:
                await client.close()
    except JkPbBusDetected as err:
        raise ProbeError(BUS_DETECTED) from err
    except (BmsNotDetected, BmsTimeout, BmsChecksumError, TimeoutError) as err:
        raise ProbeError("no_answer") from err
    except (ProtocolError, OSError) as err:
        raise ProbeError("cannot_connect") from err
    return BmsProbe(protocol=protocol, info=info, reading=reading, address=address)


def create_runtime(hass: HomeAssistant, entry: BridgeConfigEntry) -> DeviceRuntime:
    """The runtime of a Serial BMS entry: one BMS on its port, or the packs of a JK PB bus."""
    if is_bus_entry(entry):
        return JkPbBusRuntime(hass, entry)
    return SerialBmsRuntime(hass, entry)
