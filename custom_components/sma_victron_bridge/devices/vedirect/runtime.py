"""VE.Direct device kind: Victron MPPTs, BMVs/SmartShunts, Phoenix inverters and chargers.

The device pushes a text block every second; the client validates and hands over blocks, and this
runtime merges them into one view of the device (a BMV splits its fields over two blocks). The
HEX side reads and writes settings (each write read back), and an MPPT can receive battery voltage
and temperature from a battery monitor through battery-sense forwarding.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
import contextlib
from dataclasses import dataclass, field
from datetime import timedelta
import logging
import re
import time
from typing import Any

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryNotReady, HomeAssistantError, ServiceValidationError
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.event import async_track_time_interval

from ...const import (
    CONF_FORWARD_SOURCE,
    CONF_FORWARD_TEMPERATURE_ENTITY,
    CONF_FORWARD_VOLTAGE_ENTITY,
    CONF_PORT,
    CONF_SERIAL_NUMBER,
    CONF_SIMULATED,
    CONF_STALE_AFTER,
    CONNECT_TIMEOUT,
    DEFAULT_STALE_AFTER,
    DOMAIN,
    FORWARD_ENTITIES,
    FORWARD_NONE,
    MANUFACTURER_VICTRON,
)
from ...control.forwarding import SenseWrite
from ...control.snapshot import BatterySnapshot
from ...protocols import ProtocolError
from ...protocols.vedirect import HexMessage
from ...protocols.vedirect_client import VeDirectClient
from ...protocols.vedirect_fields import (
    SENSE_TEMPERATURE_RELEASE,
    SENSE_VOLTAGE_RELEASE,
    DeviceFamily,
    decode_register,
    device_family,
    encode_register,
    encode_register_raw,
    parse_value,
    product_name,
)
from ...runtime import BridgeConfigEntry
from ...simulators.day_clock import demo_start_time_of_day
from ...simulators.vedirect import VeDirectSimulator
from ..base import DeviceRuntime, ProbeError, PushCoordinator, async_shutdown_on_stop
from ..battery_source import (
    BatterySource,
    EntitiesBatterySource,
    EntityIds,
    EntryBatterySource,
)
from ..simulation import sun_time_scale
from .entities import BINARY_SENSORS, NUMBERS, SELECTS, SENSORS
from .forward import BatterySenseForwarder, ForwardStatus
from .registers import (
    LOAD_OUTPUT_OPTIONS,
    MPPT_SETTINGS,
    REG_ABSORPTION_VOLTAGE,
    REG_BATTERY_VOLTAGE_SETTING,
    REG_FLOAT_VOLTAGE,
    REG_LOAD_OUTPUT_CONTROL,
    REG_SENSE_TEMPERATURE,
    REG_SENSE_VOLTAGE,
    REG_SERIAL_NUMBER,
)

_LOGGER = logging.getLogger(__name__)

SETTINGS_REFRESH = timedelta(seconds=60)
# A device that sends nothing valid for this long counts as gone (it normally speaks every 1 s).
SILENCE_TIMEOUT = 10.0
DEFAULT_RATED_CURRENT = 100.0
_RATED_CURRENT = re.compile(r"\b\d{2,3}\s*[/|]\s*(\d{1,3})\b")


@dataclass(slots=True)
class VeDirectData:
    """Everything known about one VE.Direct device, updated in place as blocks arrive."""

    values: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)
    settings: dict[int, float | int | None] = field(default_factory=dict)
    product_id: int | None = None
    family: DeviceFamily = DeviceFamily.UNKNOWN
    forward: ForwardStatus | None = None
    blocks: int = 0

    @property
    def product(self) -> str | None:
        """The product name for the device's PID, when Victron documents it."""
        return None if self.product_id is None else product_name(self.product_id)

    @property
    def nominal_voltage(self) -> float:
        """System voltage (12/24/36/48 V): the charger's setting, else guessed from the battery."""
        setting = self.settings.get(REG_BATTERY_VOLTAGE_SETTING)
        if setting:
            return float(setting)
        voltage = self.values.get("V")
        if isinstance(voltage, float | int) and voltage > 0:
            return 12.0 * max(1, round(voltage / 13.0))
        return 12.0

    @property
    def rated_current(self) -> float:
        """The charger's rated output current, from its model name ("MPPT 75/15" → 15 A)."""
        match = _RATED_CURRENT.search(self.product or "")
        return float(match.group(1)) if match else DEFAULT_RATED_CURRENT


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What a connection test learned about the device on a port."""

    product_id: int | None
    product: str | None
    serial_number: str | None
    firmware: str | None
    family: DeviceFamily

    @property
    def title(self) -> str:
        """Entry title: product name and serial number where the device tells them."""
        name = self.product or "VE.Direct device"
        return f"{name} {self.serial_number}" if self.serial_number else name


async def async_read_serial_number(client: VeDirectClient) -> str | None:
    """The serial number over HEX, for devices that do not send SER# (e.g. BMV-70x)."""
    try:
        raw = await client.get(REG_SERIAL_NUMBER)
    except ProtocolError:
        return None
    text = raw.split(b"\x00", 1)[0].decode("ascii", "replace").strip()
    return text or None


async def async_probe(port: str, wait: float | None = None) -> ProbeResult:
    """Connect to ``port`` and wait for a valid block with a product id; raise ProbeError."""
    wait = CONNECT_TIMEOUT if wait is None else wait
    blocks: list[dict[str, str]] = []
    got_pid = asyncio.Event()

    def on_block(block: dict[str, str]) -> None:
        blocks.append(block)
        if "PID" in block:
            got_pid.set()

    client = VeDirectClient(port, on_block=on_block, min_backoff=0.2, max_backoff=1.0)
    task = asyncio.create_task(client.run(), name=f"vedirect probe {port}")
    try:
        try:
            async with asyncio.timeout(wait):
                await got_pid.wait()
        except TimeoutError:
            if client.checksum_errors or blocks:
                raise ProbeError("not_vedirect") from None
            raise ProbeError("no_answer") from None
        merged: dict[str, str] = {}
        for block in blocks:
            merged.update(block)
        serial = merged.get("SER#") or await async_read_serial_number(client)
    finally:
        await client.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    pid = parse_value("PID", merged["PID"])
    product_id = pid if isinstance(pid, int) else None
    firmware = parse_value("FW", merged["FW"]) if "FW" in merged else None
    return ProbeResult(
        product_id=product_id,
        product=None if product_id is None else product_name(product_id),
        serial_number=serial,
        firmware=None if firmware is None else str(firmware),
        family=device_family(product_id, merged.keys()),
    )


class VeDirectRuntime(DeviceRuntime):
    """One VE.Direct device: its serial client, coordinator, settings and forwarding."""

    platforms = (Platform.SENSOR, Platform.BINARY_SENSOR, Platform.NUMBER, Platform.SELECT)

    def __init__(self, hass: HomeAssistant, entry: BridgeConfigEntry) -> None:
        """Prepare the runtime; nothing is opened until :meth:`async_start`."""
        super().__init__()
        self.hass = hass
        self.entry = entry
        self.data = VeDirectData()
        self._coordinator = PushCoordinator(hass, name=entry.title, initial=self.data)
        self._simulator: VeDirectSimulator | None = None
        self._client: VeDirectClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._forwarder: BatterySenseForwarder | None = None
        self._snapshot: BatterySnapshot | None = None
        self._settings_task: asyncio.Task[None] | None = None
        self._unsub_refresh: Any = None
        self._stopping = False

    # --- DeviceRuntime ---

    @property
    def coordinator(self) -> PushCoordinator[VeDirectData]:
        """The coordinator the entities listen to."""
        return self._coordinator

    @property
    def client(self) -> VeDirectClient:
        """The serial client (only valid after :meth:`async_start`)."""
        assert self._client is not None
        return self._client

    @property
    def simulator(self) -> VeDirectSimulator | None:
        """The built-in simulator, for a simulated device."""
        return self._simulator

    @property
    def device_info(self) -> DeviceInfo:
        """One device per entry, named by product and serial number."""
        firmware = self.data.values.get("FW")
        return DeviceInfo(
            identifiers={(DOMAIN, self.entry.unique_id or self.entry.entry_id)},
            manufacturer=MANUFACTURER_VICTRON,
            model=self.data.product or "VE.Direct device",
            model_id=None if self.data.product_id is None else f"0x{self.data.product_id:04X}",
            name=self.entry.title,
            serial_number=self.data.raw.get("SER#") or self.entry.data.get(CONF_SERIAL_NUMBER),
            sw_version=None if firmware is None else str(firmware),
        )

    def descriptions(self, platform: Platform) -> Sequence[EntityDescription]:
        """VE.Direct entity descriptions for ``platform``."""
        return {
            Platform.SENSOR: SENSORS,
            Platform.BINARY_SENSOR: BINARY_SENSORS,
            Platform.NUMBER: NUMBERS,
            Platform.SELECT: SELECTS,
        }.get(platform, ())

    @property
    def snapshot(self) -> BatterySnapshot | None:
        """Battery monitors publish their readings for forwarding and the Sunny Island BMS."""
        return self._snapshot

    async def async_start(self) -> None:
        """Open the port (starting the simulator for a simulated device) and wait for data."""
        port: str = self.entry.data.get(CONF_PORT, "")
        model = self.entry.data.get(CONF_SIMULATED)
        if model:
            scale = sun_time_scale()
            self._simulator = VeDirectSimulator(
                model,
                serial_number=self.entry.data.get(CONF_SERIAL_NUMBER),
                sun_time_scale=scale,
                start_time_of_day=demo_start_time_of_day(scale),
            )
            await self._simulator.start()
            port = self._simulator.port
        self._client = VeDirectClient(
            port,
            on_block=self._on_block,
            on_hex=self._on_hex,
            on_connection=self._on_connection,
            silence_timeout=SILENCE_TIMEOUT,
        )
        self._task = self.entry.async_create_background_task(
            self.hass, self._client.run(), f"{DOMAIN} vedirect {port}"
        )
        try:
            await self._client.wait_connected(CONNECT_TIMEOUT)
        except TimeoutError as err:
            await self.async_shutdown()
            raise ConfigEntryNotReady(
                translation_domain=DOMAIN,
                translation_key="no_answer",
                translation_placeholders={"port": port},
            ) from err
        if self.data.family is DeviceFamily.MPPT:
            await self._async_read_settings()
            self._unsub_refresh = async_track_time_interval(
                self.hass, self._async_refresh_settings, SETTINGS_REFRESH, name="vedirect settings"
            )
        self._async_start_forwarding()
        # Home Assistant does not unload entries when it stops: release the charger's remote
        # sense values and close the port while the event loop still runs.
        async_shutdown_on_stop(self.hass, self.entry, self.async_shutdown)

    async def async_shutdown(self) -> None:
        """Release battery sense, stop the client and the simulator (safe to call twice)."""
        if self._unsub_refresh is not None:
            self._unsub_refresh()
            self._unsub_refresh = None
        if self._forwarder is not None:
            await self._forwarder.async_stop(release=self._client is not None)
            self._forwarder = None
        self._stopping = True
        if self._client is not None:
            await self._client.close()
        for task in (self._settings_task, self._task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._simulator is not None:
            await self._simulator.stop()

    def diagnostics(self) -> Mapping[str, Any]:
        """Raw fields, settings, link statistics and forwarding state."""
        return {
            "family": self.data.family.value,
            "product_id": self.data.product_id,
            "product": self.data.product,
            "fields": dict(self.data.raw),
            "settings": {f"0x{reg:04X}": value for reg, value in self.data.settings.items()},
            "blocks": self.data.blocks,
            "link_up": self._coordinator.link_up,
            "checksum_errors": self._client.checksum_errors if self._client else None,
            "simulated": self._simulator is not None,
            "forwarding": None
            if self.data.forward is None
            else {
                "state": self.data.forward.state.value,
                "source": self.data.forward.source_name,
                "voltage": self.data.forward.voltage,
                "temperature": self.data.forward.temperature,
                "age": self.data.forward.age,
            },
        }

    # --- client callbacks (run in the event loop) ---

    @callback
    def _on_block(self, block: dict[str, str]) -> None:
        data = self.data
        for label, raw in block.items():
            if label == "Checksum":
                continue
            data.raw[label] = raw
            data.values[label] = parse_value(label, raw)
        data.blocks += 1
        pid = data.values.get("PID")
        if isinstance(pid, int):
            data.product_id = pid
        if data.family is DeviceFamily.UNKNOWN or "PID" in block:
            data.family = device_family(data.product_id, data.values.keys())
        if data.family is DeviceFamily.BATTERY_MONITOR and "V" in block:
            self._publish_snapshot()
        self._coordinator.async_set_updated_data(data)

    def _publish_snapshot(self) -> None:
        values = self.data.values
        snapshot = BatterySnapshot(
            timestamp=time.monotonic(),
            soc=_float(values.get("SOC")),
            voltage=_float(values.get("V")),
            current=_float(values.get("I")),
            temperature=_float(values.get("T")),
            alarms=frozenset({"alarm"}) if values.get("Alarm") else frozenset(),
        )
        self._snapshot = snapshot
        self._async_publish_snapshot(snapshot)

    @callback
    def _on_hex(self, message: HexMessage) -> None:
        """Async register updates (firmware ≥ 1.17 pushes changed settings)."""
        if message.register in MPPT_SETTINGS and not message.flags:
            try:
                self.data.settings[message.register] = decode_register(
                    message.register, message.value
                )
            except ProtocolError:
                return
            self._coordinator.async_set_updated_data(self.data)

    @callback
    def _on_connection(self, up: bool) -> None:
        if self._stopping:  # closing the port on unload is not a lost device
            return
        self._coordinator.async_set_link(up, None if up else "no valid data")
        if up and self.data.family is DeviceFamily.MPPT and self._unsub_refresh is not None:
            self._settings_task = self.entry.async_create_background_task(
                self.hass, self._async_read_settings(), "vedirect settings after reconnect"
            )

    # --- settings ---

    async def _async_refresh_settings(self, _now: object = None) -> None:
        if self._coordinator.link_up:
            await self._async_read_settings()

    async def _async_read_settings(self) -> None:
        changed = False
        for register in MPPT_SETTINGS:
            try:
                value = decode_register(register, await self.client.get(register))
            except ProtocolError as err:
                _LOGGER.debug(
                    "%s: register 0x%04X not readable: %s", self.entry.title, register, err
                )
                continue
            if self.data.settings.get(register) != value:
                self.data.settings[register] = value
                changed = True
        if changed:
            self._coordinator.async_set_updated_data(self.data)

    async def async_write_setting(self, register: int, value: float) -> None:
        """Write a setting, read it back, and refuse values that are unsafe for the device."""
        if register == REG_FLOAT_VOLTAGE:
            absorption = self.data.settings.get(REG_ABSORPTION_VOLTAGE)
            if absorption is not None and value > absorption:
                raise ServiceValidationError(
                    translation_domain=DOMAIN,
                    translation_key="float_above_absorption",
                    translation_placeholders={"value": f"{value}", "absorption": f"{absorption}"},
                )
        await self._async_write_register(register, value)

    async def async_select_load_output(self, option: str) -> None:
        """Set the load output mode by its option name."""
        codes = {name: code for code, name in LOAD_OUTPUT_OPTIONS.items()}
        if option not in codes:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="invalid_option",
                translation_placeholders={"option": option},
            )
        await self._async_write_register(REG_LOAD_OUTPUT_CONTROL, codes[option])

    async def _async_write_register(self, register: int, value: float) -> None:
        try:
            await self.client.set(register, encode_register(register, value))
            readback = decode_register(register, await self.client.get(register))
        except ProtocolError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="write_failed",
                translation_placeholders={"register": f"0x{register:04X}", "error": str(err)},
            ) from err
        self.data.settings[register] = readback
        self._coordinator.async_set_updated_data(self.data)
        if readback is None or abs(float(readback) - value) > 0.011:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="write_not_accepted",
                translation_placeholders={
                    "register": f"0x{register:04X}",
                    "value": f"{value}",
                    "readback": f"{readback}",
                },
            )

    # --- battery-sense forwarding ---

    def _forward_source(self) -> BatterySource | None:
        options = self.entry.options
        source = options.get(CONF_FORWARD_SOURCE, FORWARD_NONE)
        if source == FORWARD_NONE:
            return None
        if source == FORWARD_ENTITIES:
            return EntitiesBatterySource(
                self.hass,
                EntityIds(
                    voltage=options.get(CONF_FORWARD_VOLTAGE_ENTITY),
                    temperature=options.get(CONF_FORWARD_TEMPERATURE_ENTITY),
                ),
                required="voltage" if options.get(CONF_FORWARD_VOLTAGE_ENTITY) else "temperature",
            )
        return EntryBatterySource(self.hass, str(source))

    @callback
    def _async_start_forwarding(self) -> None:
        if self.data.family is not DeviceFamily.MPPT:
            return
        source = self._forward_source()
        if source is None:
            return
        self._forwarder = BatterySenseForwarder(
            self.hass,
            entry_id=self.entry.entry_id,
            charger_name=self.entry.title,
            source=source,
            stale_after=float(self.entry.options.get(CONF_STALE_AFTER, DEFAULT_STALE_AFTER)),
            write=self._async_write_sense,
            on_change=self._coordinator.async_show_own_change,
        )
        self.data.forward = self._forwarder.status
        self._forwarder.async_start()

    async def _async_write_sense(self, write: SenseWrite) -> None:
        if write.quantity == "voltage":
            register, release = REG_SENSE_VOLTAGE, SENSE_VOLTAGE_RELEASE
        else:
            register, release = REG_SENSE_TEMPERATURE, SENSE_TEMPERATURE_RELEASE
        payload = (
            encode_register_raw(register, release)
            if write.value is None
            else encode_register(register, write.value)
        )
        await self.client.set(register, payload)


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
