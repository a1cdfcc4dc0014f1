"""JK PB inverter-BMS packs sharing one RS485 bus: one entry for the bus, one device per pack.

The packs answer Modbus RTU requests at their own addresses, one at a time, so one runtime owns
the port and reads the packs in turn. Each pack is a device of its own, with the entity set of
any serial BMS, its own coordinator (a pack that stops answering goes unavailable on its own
while the others carry on) and its own :class:`BatterySnapshot`, which a Sunny Island or
battery-sense forwarding follows as ``<entry_id>:<address>``.

The bus itself is no device: it has no identity of its own (the adapter is a USB serial cable)
and nothing to show that is not a pack's; the packs are what the user knows, links to, and
removes. A device for the bus would also need its registry id patched into every pack after
setup (``via_device`` is deprecated for a device that is not registered yet, and the oldest
supported release has no ``via_device_id`` in a device info) only to draw one line in the UI.
Link statistics of the bus are in the diagnostics and in each pack's error-counter sensor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
import contextlib
from dataclasses import dataclass
import logging
import time
from typing import Any

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryNotReady
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import EntityDescription

from ...const import (
    CONF_INVERT_CURRENT,
    CONF_POLL_INTERVAL,
    CONF_PORT,
    CONF_SERIAL_NUMBER,
    CONF_SIMULATED,
    CONNECT_TIMEOUT,
    DEFAULT_POLL_INTERVAL,
    DOMAIN,
)
from ...control.charge import ChargeController
from ...control.snapshot import BatterySnapshot
from ...protocols import ProtocolError
from ...protocols.jk_pb import JkPbBus, JkPbPack
from ...runtime import BridgeConfigEntry
from ...simulators.day_clock import demo_start_time_of_day
from ...simulators.jk import JkPbBusSimulator
from ..base import DeviceRuntime, ProbeError, PushCoordinator, async_shutdown_on_stop
from ..battery_source import member_title
from ..charge_settings import settings_from_entry
from ..simulation import sun_time_scale
from .bus_entry import PACK_MODEL, PACK_SERIAL, bus_addresses, known_packs
from .data import SerialBmsData, anonymous_repr, record_gap, record_reading
from .entities import BINARY_SENSORS, SENSORS

_LOGGER = logging.getLogger(__name__)

MANUFACTURER = "JK"
DEFAULT_MODEL = "JK PB inverter BMS"
SCAN_ADDRESSES = range(1, 16)
"""The addresses a scan asks: a PB pack's DIP switches set 1-15 (0 is the bus master)."""
PACK_TIMEOUT = 0.5
"""Seconds to wait for a pack's answer: a pack answers within tens of milliseconds (its reply
takes 26 ms at 115200 baud), and a silent pack, or an empty address in a scan, must not hold up
the others for long. A poll asks a silent pack twice, a scan once."""
SIMULATED_ADDRESSES = (1, 2, 3)


def simulator_for(serial_number: str | None) -> JkPbBusSimulator:
    """The built-in bus of a simulated entry: three packs at addresses 1-3.

    The packs' serial numbers are the entry's with the address appended, so a simulated bus is
    recognised by its packs like a real one. With a short demo day asked for, the packs live
    the day of the other simulated devices.
    """
    scale = sun_time_scale()
    return JkPbBusSimulator(
        addresses=SIMULATED_ADDRESSES,
        serial_numbers=(
            None if serial_number is None else [f"{serial_number}P{a}" for a in SIMULATED_ADDRESSES]
        ),
        time_scale=scale,
        start_time_of_day=demo_start_time_of_day(scale),
    )


class JkPbPackRuntime(DeviceRuntime):
    """One pack on the bus as Home Assistant sees a device: its data, identity and entities.

    Owns nothing that runs: the bus runtime reads the pack and hands each reading in.
    """

    platforms = ()

    def __init__(self, bus: JkPbBusRuntime, address: int, stored: Mapping[str, Any]) -> None:
        """A pack at ``address``; ``stored`` is what the last scan learned of it."""
        super().__init__()
        self.bus = bus
        self.address = address
        self.identity: JkPbPack | None = None
        self._stored = stored
        # No FET switches: the PB protocol's switch writes are not known well enough to be
        # verified (``JkPbBus.set_fets`` refuses them), and a switch could only ever fail.
        self.data = SerialBmsData(fet_control=False)
        self._coordinator = PushCoordinator(bus.hass, name=self.title, initial=self.data)
        self.controller = ChargeController(settings_from_entry(bus.entry))
        self._snapshot: BatterySnapshot | None = None

    @property
    def title(self) -> str:
        """The pack's device name: ``<bus title> pack <address>``."""
        return member_title(self.bus.entry.title, str(self.address))

    @property
    def device_id(self) -> str:
        """The pack's device identifier, unique within the integration."""
        return f"{self.bus.bus_id}_pack_{self.address}"

    @property
    def coordinator(self) -> PushCoordinator[SerialBmsData]:
        """The coordinator of this pack's entities."""
        return self._coordinator

    @property
    def device_info(self) -> DeviceInfo:
        """The pack as a device: model, serial number and versions as the pack tells them."""
        identity = self.identity
        return DeviceInfo(
            identifiers={(DOMAIN, self.device_id)},
            manufacturer=MANUFACTURER,
            model=(identity.model if identity else None)
            or self._stored.get(PACK_MODEL)
            or DEFAULT_MODEL,
            name=self.title,
            serial_number=(identity.serial if identity else None) or self._stored.get(PACK_SERIAL),
            sw_version=identity.firmware_version if identity else None,
            hw_version=identity.hardware_version if identity else None,
        )

    def descriptions(self, platform: Platform) -> Sequence[EntityDescription]:
        """The entity set of every serial BMS (its FET switches aside)."""
        return {Platform.SENSOR: SENSORS, Platform.BINARY_SENSOR: BINARY_SENSORS}.get(platform, ())

    @property
    def snapshot(self) -> BatterySnapshot | None:
        """The pack's latest reading as a battery snapshot."""
        return self._snapshot

    async def async_start(self) -> None:
        """Nothing to start: the bus runtime reads this pack."""

    async def async_shutdown(self) -> None:
        """Nothing to stop."""

    def apply(self, pack: JkPbPack, error_counters: list[int]) -> None:
        """Take a reading of this pack: entities, energy, limits and snapshot."""
        self.identity = pack
        self.data.error_counters = error_counters
        self._snapshot = record_reading(self.data, pack.reading, self.controller)
        self._async_publish_snapshot(self._snapshot)
        self._coordinator.async_set_updated_data(self.data)

    def missed(self, reason: str) -> None:
        """The pack did not answer this round: its entities go unavailable."""
        record_gap(self.data)
        self._coordinator.async_set_link(False, reason)

    def diagnostics(self) -> Mapping[str, Any]:
        """This pack's link counters, identity and last reading."""
        reading = self.data.reading
        identity = self.identity
        return {
            "link_up": self._coordinator.link_up,
            "polls": self.data.polls,
            "failures": self.data.failures,
            "model": identity.model if identity else self._stored.get(PACK_MODEL),
            "firmware_version": identity.firmware_version if identity else None,
            "hardware_version": identity.hardware_version if identity else None,
            "reading": anonymous_repr(reading),
            "energy": {
                "charged_kwh": self.data.energy.charged_kwh,
                "discharged_kwh": self.data.energy.discharged_kwh,
            },
        }


class JkPbBusRuntime(DeviceRuntime):
    """The packs on one RS485 bus, read in turn; a device and a battery source per pack."""

    # No switch platform: a PB pack's FETs are not switched (see JkPbPackRuntime).
    platforms = (Platform.SENSOR, Platform.BINARY_SENSOR)

    def __init__(self, hass: HomeAssistant, entry: BridgeConfigEntry) -> None:
        """Prepare a pack runtime per address to read; the port is opened by ``async_start``."""
        super().__init__()
        self.hass = hass
        self.entry = entry
        stored = known_packs(entry)
        self.packs: dict[int, JkPbPackRuntime] = {
            address: JkPbPackRuntime(self, address, stored.get(address, {}))
            for address in bus_addresses(entry)
        }
        # Up while at least one pack answers: the bus's own state, for diagnostics and logs.
        self._coordinator: PushCoordinator[None] = PushCoordinator(
            hass, name=entry.title, initial=None
        )
        self._simulator: JkPbBusSimulator | None = None
        self._bus: JkPbBus | None = None
        self._task: asyncio.Task[None] | None = None
        self._interval = float(entry.options.get(CONF_POLL_INTERVAL, DEFAULT_POLL_INTERVAL))
        self.rounds = 0

    @property
    def bus_id(self) -> str:
        """What the packs' device identifiers are made from."""
        return self.entry.unique_id or self.entry.entry_id

    @property
    def coordinator(self) -> PushCoordinator[None]:
        """The bus's link state (the entities follow their packs' coordinators)."""
        return self._coordinator

    @property
    def device_info(self) -> DeviceInfo:
        """The bus is no device of its own (see the module's docstring); the packs are."""
        return DeviceInfo()

    @property
    def bus(self) -> JkPbBus:
        """The bus client (valid after :meth:`async_start`)."""
        assert self._bus is not None
        return self._bus

    @property
    def simulator(self) -> JkPbBusSimulator | None:
        """The built-in bus of a simulated entry."""
        return self._simulator

    def descriptions(self, platform: Platform) -> Sequence[EntityDescription]:
        """No entities of the bus itself."""
        return ()

    def device_runtimes(self) -> Sequence[DeviceRuntime]:
        """One device per pack read."""
        return tuple(self.packs.values())

    def provides_device(self, identifiers: set[tuple[str, str]]) -> bool:
        """The packs still read; a pack no longer read (options, rescan) may be removed."""
        return any((DOMAIN, pack.device_id) in identifiers for pack in self.packs.values())

    def member_snapshot(self, member: str) -> BatterySnapshot | None:
        """The snapshot of the pack at address ``member``."""
        try:
            pack = self.packs.get(int(member))
        except ValueError:
            return None
        return None if pack is None else pack.snapshot

    async def async_start(self) -> None:
        """Open the port, read every pack once (at least one must answer), then poll."""
        port: str = self.entry.data.get(CONF_PORT, "")
        if self.entry.data.get(CONF_SIMULATED):
            self._simulator = simulator_for(self.entry.data.get(CONF_SERIAL_NUMBER))
            await self._simulator.start()
            port = self._simulator.port
        self._bus = JkPbBus(
            port,
            timeout=PACK_TIMEOUT,
            invert_current=bool(self.entry.data.get(CONF_INVERT_CURRENT, False)),
        )
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT + 2 * PACK_TIMEOUT * len(self.packs)):
                answered = await self._async_poll_once()
        except (ProtocolError, OSError, TimeoutError) as err:
            await self.async_shutdown()
            raise ConfigEntryNotReady(
                translation_domain=DOMAIN,
                translation_key="no_answer",
                translation_placeholders={"port": port},
            ) from err
        if not answered:
            await self.async_shutdown()
            raise ConfigEntryNotReady(
                translation_domain=DOMAIN,
                translation_key="no_answer",
                translation_placeholders={"port": port},
            )
        self._task = self.entry.async_create_background_task(
            self.hass, self._async_poll_loop(), f"{DOMAIN} jk pb bus {port}"
        )
        async_shutdown_on_stop(self.hass, self.entry, self.async_shutdown)

    async def _async_poll_loop(self) -> None:
        while True:
            started = time.monotonic()
            await self._async_poll_once()
            await asyncio.sleep(max(0.0, self._interval - (time.monotonic() - started)))

    async def _async_poll_once(self) -> int:
        """Read every pack once; return how many answered."""
        answered = 0
        for pack in self.packs.values():
            try:
                reading = await self.bus.read(pack.address)
            except (ProtocolError, OSError) as err:
                pack.missed(str(err) or type(err).__name__)
                continue
            answered += 1
            pack.apply(reading, self.error_counters)
        self.rounds += 1
        if answered:
            self._coordinator.async_set_updated_data(None)
        else:
            self._coordinator.async_set_link(False, "no pack answered")
        return answered

    @property
    def error_counters(self) -> list[int]:
        """The bus's error counters (bad checksums, stray bytes), as each pack's sensor shows them.

        The bus is shared: a corrupt frame cannot be told apart by the pack that sent it.
        """
        return [] if self._bus is None else list(self._bus.error_counters.values())

    async def async_scan(self, addresses: Iterable[int] = SCAN_ADDRESSES) -> dict[int, JkPbPack]:
        """Ask every address over the open port, between two polls (the options' rescan)."""
        return await self.bus.scan(addresses=addresses)

    async def async_shutdown(self) -> None:
        """Stop polling and close the port (safe to call twice)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._bus is not None:
            await self._bus.close()
        if self._simulator is not None:
            await self._simulator.stop()

    def diagnostics(self) -> Mapping[str, Any]:
        """The bus's link statistics and every pack's state (by address)."""
        return {
            "protocol": "jk_pb",
            "simulated": self._simulator is not None,
            "link_up": self._coordinator.link_up,
            "rounds": self.rounds,
            "error_counters": None if self._bus is None else self._bus.error_counters,
            "packs": {str(address): pack.diagnostics() for address, pack in self.packs.items()},
        }


@dataclass(frozen=True, slots=True)
class BusScan:
    """What a scan of a bus found: the packs that answered, by address."""

    packs: dict[int, JkPbPack]

    def stored(self) -> dict[str, dict[str, str | None]]:
        """The packs as a bus entry keeps them (see ``bus_entry.CONF_PACKS``)."""
        return {
            str(address): {PACK_SERIAL: pack.serial, PACK_MODEL: pack.model}
            for address, pack in sorted(self.packs.items())
        }

    def summary(self) -> str:
        """One line per pack, for the flow's text."""
        lines = []
        for address, pack in sorted(self.packs.items()):
            reading = pack.reading
            parts = [f"pack {address}: {pack.model or DEFAULT_MODEL}"]
            if pack.serial:
                parts.append(f"serial {pack.serial}")
            if reading.cell_voltages:
                parts.append(f"{len(reading.cell_voltages)} cells")
            if reading.voltage is not None:
                parts.append(f"{reading.voltage:.2f} V")
            if reading.soc is not None:
                parts.append(f"{reading.soc:.0f} %")
            lines.append(", ".join(parts))
        return "\n".join(f"- {line}" for line in lines)


async def async_scan_bus(
    port: str,
    addresses: Iterable[int] = SCAN_ADDRESSES,
    *,
    invert_current: bool = False,
) -> BusScan:
    """Ask every address on ``port`` once; raise ProbeError when the port fails or none answers."""
    wanted = tuple(addresses)
    bus = JkPbBus(port, timeout=PACK_TIMEOUT, invert_current=invert_current)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT + PACK_TIMEOUT * len(wanted)):
            found = await bus.scan(addresses=wanted)
    except TimeoutError as err:
        raise ProbeError("no_answer") from err
    except (ProtocolError, OSError) as err:
        raise ProbeError("cannot_connect") from err
    finally:
        await bus.close()
    if not found:
        raise ProbeError("no_packs")
    return BusScan(found)
