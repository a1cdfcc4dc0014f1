"""Sunny Boy device kind: an SMA PV inverter over Bluetooth (RFCOMM) or Speedwire (UDP).

A Sunny Boy only answers when asked, so the runtime polls it on a background task. The
inverter switches itself off after sunset, Bluetooth included: silence is the normal state for
half of every day. So a silent inverter never fails setup once it has been added, it is not a
repair issue, and the log says once that it went quiet and once that it is back (the
coordinator does that). Reconnects back off up to a few minutes, which is plenty for a
sunrise.

After the first connection, after every reconnect and at least daily, the inverter's 5-minute
yield archive is imported into long-term statistics (see :mod:`.statistics`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
import contextlib
from dataclasses import dataclass
from datetime import tzinfo
import logging
import socket
import time
from typing import Any, Final

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import (
    ConfigEntryAuthFailed,
    ConfigEntryError,
    ConfigEntryNotReady,
)
from homeassistant.helpers import device_registry as dr, issue_registry as ir
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import EntityDescription
from homeassistant.util import dt as dt_util

from ...const import (
    CONF_POLL_INTERVAL,
    CONF_SERIAL_NUMBER,
    CONF_SIMULATED,
    DOMAIN,
    MANUFACTURER_SMA,
)
from ...protocols.sma_bt import Endpoint
from ...protocols.sma_client import (
    DeviceInfo as InverterInfo,
    FirmwareTooOld,
    InverterBusy,
    SpotValues,
    SunnyBoyClient,
    WrongPassword,
)
from ...protocols.sma_transport import BluetoothUnavailable
from ...runtime import BridgeConfigEntry
from ...simulators.day_clock import shared_day_clock
from ...simulators.sunny_boy import SunnyBoySimulator
from ..base import DeviceRuntime, PushCoordinator, async_shutdown_on_stop
from ..registry import async_entry_device
from ..simulation import sun_time_scale
from . import link as link_settings, statistics as stats
from .entities import SENSORS
from .link import (
    CONF_HISTORY_DAYS,
    CONF_MODEL,
    CONF_PASSWORD,
    CONF_SW_VERSION,
    DEFAULT_HISTORY_DAYS,
    DEFAULT_PASSWORD,
    DEFAULT_POLL_INTERVAL,
    TRANSPORT_BLUETOOTH,
    TRANSPORT_SPEEDWIRE,
    UNREACHABLE,
    LinkConfig,
)
from .plant import (
    InverterView,
    PlantMember,
    async_add_member_entities,
    async_update_member_device,
)

_LOGGER = logging.getLogger(__name__)

MIN_POLL_INTERVAL = 10.0
DAY: Final = 86_400
RECONNECT_BACKOFF: tuple[float, ...] = (10.0, 30.0, 60.0, 120.0, 300.0)
HISTORY_INTERVAL = float(DAY)
"""Re-import the archive at least this often while connected (a fallback to the hourly rule)."""
HISTORY_SETTLE = 300.0
"""After each full hour, wait this long for the inverter to archive the row of hh:00."""
DAILY_HISTORY_DAYS = 400
"""Days of the daily archive imported at most (a Sunny Boy keeps more than a year)."""
HISTORY_AFTER_RECONNECT = 3600.0
"""A reconnect re-imports the archive only if the last import is older than this."""

BUSY_HINT: Final = (
    "another application (Sunny Explorer, a data logger) is connected to the inverter; "
    "close it - the integration keeps trying"
)
NIGHT_HINT: Final = (
    "a Sunny Boy switches off after sunset, so no answer at night is normal; "
    "the entities come back when it answers again"
)


@dataclass(slots=True)
class SunnyBoyData:
    """The latest reading of an inverter and what the runtime derived from it."""

    bluetooth: bool
    spot: SpotValues | None = None
    info: InverterInfo | None = None
    energy_total: int | None = None
    """Lifetime yield in Wh, never lower than before (a glitch must not run it backwards)."""
    polls: int = 0
    failures: int = 0
    busy: int = 0
    """Reconnects refused because another application held the inverter (in a row)."""
    connects: int = 0
    history_imports: int = 0
    history_hours: int = 0
    history_days_imported: int = 0
    """Daily-archive rows (days older than the 5-minute data) in the last import."""
    last_history_import: float | None = None
    """time.monotonic() of the last import."""
    last_history_import_wall: float = 0.0
    """time.time() of the last import: the hourly re-import follows the clock's hours."""
    last_error: str | None = None


def hourly_import_due(last: float, now: float) -> bool:
    """Whether a new hour has been archived since the import at ``last`` (unix s).

    Re-importing once an hour keeps the imported statistic as current as Home Assistant's own
    hourly statistics, so the energy dashboard can use it for today as well as for the past.
    """
    return (now - HISTORY_SETTLE) // stats.HOUR > (last - HISTORY_SETTLE) // stats.HOUR


def simulator_for(data: Mapping[str, Any], tz: tzinfo = dt_util.UTC) -> SunnyBoySimulator:
    """The built-in inverter of a simulated entry, its values seeded by the serial number.

    It stands in Home Assistant's time zone (its "today" starts at local midnight) and lives
    its day at the demo speed ``sun_time_scale()`` asks for.
    """
    serial = int(data[CONF_SERIAL_NUMBER])
    scale = sun_time_scale()
    # On the demo's shared clock, so its day agrees with the other simulated devices'.
    clock: Callable[[], float] | None = None if scale == 1.0 else shared_day_clock(scale).now
    return SunnyBoySimulator(
        serial=serial,
        seed=serial,
        password=data.get(CONF_PASSWORD, DEFAULT_PASSWORD),
        time_scale=scale,
        clock=clock,
        tz=tz,
    )


def local_time_zone(hass: HomeAssistant) -> tzinfo:
    """Home Assistant's configured time zone: where the inverter's days begin."""
    return dt_util.get_time_zone(hass.config.time_zone) or dt_util.UTC


class SunnyBoyRuntime(DeviceRuntime):
    """One inverter (or a plant of several): polling, reconnecting, importing yield history.

    The entry's device is the inverter it was set up with; further inverters of a NetID > 1
    plant get devices of their own (see :mod:`.plant`).
    """

    platforms = (Platform.SENSOR,)

    def __init__(self, hass: HomeAssistant, entry: BridgeConfigEntry) -> None:
        """Prepare the runtime; the link is opened by :meth:`async_start`."""
        super().__init__()
        self.hass = hass
        self.entry = entry
        self.link = LinkConfig.from_data(entry.data)
        self.data = SunnyBoyData(bluetooth=self.link.transport == TRANSPORT_BLUETOOTH)
        self._coordinator = PushCoordinator(hass, name=entry.title, initial=self.data)
        self.serial = str(entry.data.get(CONF_SERIAL_NUMBER) or entry.unique_id)
        self.poll_interval = max(
            MIN_POLL_INTERVAL,
            float(entry.options.get(CONF_POLL_INTERVAL, DEFAULT_POLL_INTERVAL)),
        )
        self.history_days = int(entry.options.get(CONF_HISTORY_DAYS, DEFAULT_HISTORY_DAYS))
        self._simulator: SunnyBoySimulator | None = None
        self._serve_tasks: set[asyncio.Task[None]] = set()
        self._client: SunnyBoyClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._failures_in_row = 0
        self._primary: Endpoint | None = None
        self.members: dict[Endpoint, PlantMember] = {}
        """The plant's further inverters (NetID > 1), each a device of its own."""

    @property
    def coordinator(self) -> PushCoordinator[SunnyBoyData]:
        """The coordinator the entities listen to."""
        return self._coordinator

    @property
    def client(self) -> SunnyBoyClient:
        """The inverter client (valid after :meth:`async_start`)."""
        assert self._client is not None
        return self._client

    @property
    def simulator(self) -> SunnyBoySimulator | None:
        """The built-in inverter of a simulated entry."""
        return self._simulator

    @property
    def device_info(self) -> DeviceInfo:
        """The inverter as a device: type label, serial number and firmware."""
        info = self.data.info
        model = (info.type_label if info else None) or self.entry.data.get(CONF_MODEL)
        # Once the inverter has answered, its word counts: NaN (unknown) shows no firmware.
        sw_version = info.software_version if info else self.entry.data.get(CONF_SW_VERSION)
        return DeviceInfo(
            identifiers={(DOMAIN, self.entry.unique_id or self.entry.entry_id)},
            manufacturer=MANUFACTURER_SMA,
            model=model or "Sunny Boy",
            name=self.entry.title,
            serial_number=self.serial,
            sw_version=sw_version,
        )

    def descriptions(self, platform: Platform) -> Sequence[EntityDescription]:
        """Sunny Boy entity descriptions for ``platform``."""
        return SENSORS if platform is Platform.SENSOR else ()

    # ----------------------------------------------------------------------------------------
    # Start and stop
    # ----------------------------------------------------------------------------------------

    async def async_start(self) -> None:
        """Connect once; a wrong password or missing Bluetooth fails setup, silence does not."""
        socket_factory = None
        if self.entry.data.get(CONF_SIMULATED):
            self._simulator = simulator_for(self.entry.data, local_time_zone(self.hass))
            if self.link.transport == TRANSPORT_BLUETOOTH:
                socket_factory = self._simulated_rfcomm_socket
                self.link = LinkConfig(
                    TRANSPORT_BLUETOOTH, self.link.password, bt_address=self._simulator.bt_address
                )
            else:
                port = await self._simulator.serve_speedwire("127.0.0.1", 0)
                self.link = LinkConfig(
                    TRANSPORT_SPEEDWIRE, self.link.password, host="127.0.0.1", port=port
                )
        self._client = self.link.create_client(socket_factory)
        try:
            await self._async_connect()
        except WrongPassword as err:
            await self.async_shutdown()
            raise ConfigEntryAuthFailed(
                translation_domain=DOMAIN, translation_key="sunny_boy_wrong_password"
            ) from err
        except InverterBusy as err:
            # Not the password: Home Assistant retries the setup with its own backoff.
            await self.async_shutdown()
            raise ConfigEntryNotReady(
                translation_domain=DOMAIN,
                translation_key="sunny_boy_busy",
                translation_placeholders={"name": self.entry.title},
            ) from err
        except BluetoothUnavailable as err:
            await self.async_shutdown()
            self._raise_bluetooth_issue()
            raise ConfigEntryError(
                translation_domain=DOMAIN, translation_key="bluetooth_unavailable"
            ) from err
        except FirmwareTooOld as err:
            await self.async_shutdown()
            raise ConfigEntryError(
                translation_domain=DOMAIN, translation_key="sunny_boy_firmware_too_old"
            ) from err
        except UNREACHABLE as err:
            self._note_unreachable(err)
            _LOGGER.info("%s does not answer now (%s); %s", self.entry.title, err, NIGHT_HINT)
        else:
            self._remember_identity()
            ir.async_delete_issue(self.hass, DOMAIN, self._issue_id)
        self.entry.async_on_unload(
            self.entry.async_on_state_change(self._async_entry_state_changed)
        )
        self._task = self.entry.async_create_background_task(
            self.hass, self._async_poll_loop(), f"{DOMAIN} sunny boy {self.serial}"
        )
        async_shutdown_on_stop(self.hass, self.entry, self.async_shutdown)

    @property
    def _issue_id(self) -> str:
        return f"bluetooth_unavailable_{self.entry.entry_id}"

    def _raise_bluetooth_issue(self) -> None:
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            self._issue_id,
            is_fixable=False,
            severity=ir.IssueSeverity.ERROR,
            translation_key="bluetooth_unavailable",
            translation_placeholders={"name": self.entry.title},
        )

    def _simulated_rfcomm_socket(self) -> socket.socket:
        """A socket pair whose far end the simulated inverter serves (stands in for RFCOMM)."""
        assert self._simulator is not None
        ours, theirs = socket.socketpair()
        task = self.entry.async_create_background_task(
            self.hass,
            self._simulator.serve_bluetooth(theirs),
            f"{DOMAIN} simulated sunny boy {self.serial}",
        )
        self._serve_tasks.add(task)
        task.add_done_callback(self._serve_tasks.discard)
        return ours

    async def async_shutdown(self) -> None:
        """Stop polling, log off and close the link (safe to call twice)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            with contextlib.suppress(*UNREACHABLE):
                await self._client.close()
        if self._simulator is not None:
            await self._simulator.close()
        for task in list(self._serve_tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ----------------------------------------------------------------------------------------
    # Polling
    # ----------------------------------------------------------------------------------------

    async def _async_connect(self) -> None:
        """Connect, log on, read the identities of the plant and take the first reading."""
        async with asyncio.timeout(link_settings.CONNECT_TIMEOUT):
            await self.client.connect()
            self.data.connects += 1
            inverters = self.client.inverters
            # The entry's inverter, found by its serial: on Speedwire another member of the
            # plant may answer first.
            self._primary = next(
                (ep for ep in inverters if str(ep.serial) == self.serial), self.client.inverter
            )
            self.data.info = await self.client.read_device_info(self._primary)
            for endpoint in inverters:
                if endpoint != self._primary:
                    member = self.members.get(endpoint) or self._add_member(endpoint)
                    member.view.data.info = await self.client.read_device_info(endpoint)
            await self._async_poll_once()
        self._failures_in_row = 0
        self.data.busy = 0

    def provides_device(self, identifiers: set[tuple[str, str]]) -> bool:
        """The entry's inverter and every inverter of the plant still answering."""
        if super().provides_device(identifiers):
            return True
        return any((DOMAIN, member.view.serial) in identifiers for member in self.members.values())

    @property
    def _device_id(self) -> str:
        return self.entry.unique_id or self.entry.entry_id

    def _add_member(self, endpoint: Endpoint) -> PlantMember:
        """Another inverter of the plant answered: give it a device and entities."""
        data = SunnyBoyData(bluetooth=self.data.bluetooth)
        model = self.entry.data.get(CONF_MODEL)
        name = f"{model or 'Sunny Boy'} {endpoint.serial}"
        coordinator = PushCoordinator(self.hass, name=name, initial=data)
        view = InverterView(coordinator, str(endpoint.serial), self._device_id, model)
        member = PlantMember(endpoint, view)
        self.members[endpoint] = member
        _LOGGER.info("%s: inverter %s of the plant found", self.entry.title, name)
        if self.entry.state is ConfigEntryState.LOADED:
            async_add_member_entities(self.hass, self.entry, member)
        return member

    @callback
    def _async_entry_state_changed(self) -> None:
        """Once the entry is loaded its sensor platform exists: add the plant's entities."""
        if self.entry.state is ConfigEntryState.LOADED:
            for member in self.members.values():
                if member.unsubscribe is None:
                    async_add_member_entities(self.hass, self.entry, member)

    def _remember_identity(self) -> None:
        """Keep type label and firmware in the entry, so the device shows them at night too.

        Only called while setting up: an entry update later would reload the entry.
        """
        info = self.data.info
        assert info is not None  # read by every successful connect
        updates = {CONF_MODEL: info.type_label, CONF_SW_VERSION: info.software_version}
        if any(self.entry.data.get(key) != value for key, value in updates.items()):
            self.hass.config_entries.async_update_entry(
                self.entry, data={**self.entry.data, **updates}
            )

    def _update_device_registry(self) -> None:
        """A firmware update shows after a reconnect, without reloading the entry."""
        info = self.data.info
        registry = dr.async_get(self.hass)
        device = async_entry_device(self.hass, self.entry.entry_id, self._device_id)
        if info is None or device is None:
            return
        model = info.type_label or device.model
        if (device.sw_version, device.model) != (info.software_version, model):
            registry.async_update_device(device.id, sw_version=info.software_version, model=model)

    async def _async_poll_once(self) -> None:
        """Read every inverter of the plant once: the entry's own first."""
        spot = await self.client.read_spot_values(self._primary)
        self._publish(self.data, self._coordinator, spot)
        present = self.client.inverters
        for member in self.members.values():
            if member.endpoint in present:
                spot = await self.client.read_spot_values(member.endpoint)
                self._publish(member.view.data, member.view.coordinator, spot)

    @staticmethod
    def _publish(
        data: SunnyBoyData, coordinator: PushCoordinator[SunnyBoyData], spot: SpotValues
    ) -> None:
        data.spot = spot
        data.polls += 1
        data.last_error = None
        if spot.energy_total is not None and (
            data.energy_total is None or spot.energy_total >= data.energy_total
        ):
            data.energy_total = spot.energy_total
        coordinator.async_set_updated_data(data)

    def _note_unreachable(self, err: BaseException) -> None:
        self.data.failures += 1
        self._failures_in_row += 1
        self.data.last_error = str(err) or type(err).__name__
        if isinstance(err, InverterBusy):
            self.data.busy += 1
            if self.data.busy == 1:
                _LOGGER.warning("%s is busy: %s", self.entry.title, BUSY_HINT)
            reason = f"busy ({BUSY_HINT})"
        else:
            reason = f"{self.data.last_error} ({NIGHT_HINT})"
        for coordinator in (
            self._coordinator,
            *(member.view.coordinator for member in self.members.values()),
        ):
            coordinator.async_set_link(False, reason)

    def _backoff(self) -> float:
        index = min(self._failures_in_row, len(RECONNECT_BACKOFF)) - 1
        return RECONNECT_BACKOFF[max(index, 0)]

    async def _async_poll_loop(self) -> None:
        """Poll while connected; reconnect with growing pauses while the inverter is away."""
        fresh = self.client.connected  # async_start has just read the inverter
        reconnected = fresh
        while True:
            started = time.monotonic()
            if not fresh:
                if self.client.connected:
                    ok = await self._async_poll_or_drop()
                else:
                    try:
                        ok = await self._async_reconnect()
                    except WrongPassword:
                        self._coordinator.async_set_link(False, "the password was refused")
                        self.entry.async_start_reauth(self.hass)
                        return
                    reconnected = ok
                if not ok:
                    continue
            fresh = False
            if self._history_due(after_reconnect=reconnected):
                try:
                    await self.async_import_history()
                except Exception:
                    # A recorder problem must not stop the live values; tomorrow tries again.
                    _LOGGER.exception("%s: importing the yield history failed", self.entry.title)
            reconnected = False
            await asyncio.sleep(max(0.0, self.poll_interval - (time.monotonic() - started)))

    async def _async_poll_or_drop(self) -> bool:
        """One reading; on silence close the link so the next round reconnects."""
        try:
            async with asyncio.timeout(link_settings.CONNECT_TIMEOUT):
                await self._async_poll_once()
        except UNREACHABLE as err:
            self._note_unreachable(err)
            with contextlib.suppress(*UNREACHABLE):
                await self.client.close()
            return False
        return True

    async def _async_reconnect(self) -> bool:
        """Wait the backoff, then connect; WrongPassword propagates."""
        await asyncio.sleep(self._backoff())
        try:
            await self._async_connect()
        except WrongPassword:
            raise
        except UNREACHABLE as err:
            self._note_unreachable(err)
            return False
        self._update_device_registry()
        for member in self.members.values():
            async_update_member_device(self.hass, self.entry.entry_id, member)
        return True

    # ----------------------------------------------------------------------------------------
    # History
    # ----------------------------------------------------------------------------------------

    def _history_due(self, *, after_reconnect: bool) -> bool:
        last = self.data.last_history_import
        if last is None:
            return True
        gap = HISTORY_AFTER_RECONNECT if after_reconnect else HISTORY_INTERVAL
        if time.monotonic() - last >= gap:
            return True
        return hourly_import_due(self.data.last_history_import_wall, time.time())

    async def async_import_history(self) -> int:
        """Import the yield archives into long-term statistics; returns the hours written.

        The 5-minute archive covers the last ``history_days`` days (or since a day before the
        newest imported hour); the daily archive fills the days before that - up to
        ``DAILY_HISTORY_DAYS`` on the first import, or the gap since the newest imported hour
        after a long absence. Both use one baseline, so sums stay continuous.

        Time is the inverter's own clock (the energy counters carry it): the archive is
        written by that clock, and a window by ours would miss rows when they disagree.
        """
        self.data.last_history_import = time.monotonic()
        self.data.last_history_import_wall = time.time()
        if not stats.recorder_loaded(self.hass):
            _LOGGER.debug("Recorder not loaded: %s history not imported", self.entry.title)
            return 0
        hours = await self._async_import_inverter(
            self.serial, self.entry.title, self._primary, self.data
        )
        for member in list(self.members.values()):
            view = member.view
            hours += await self._async_import_inverter(
                view.serial, view.title, member.endpoint, view.data
            )
        return hours

    async def _async_import_inverter(
        self, serial: str, title: str, inverter: Endpoint | None, data: SunnyBoyData
    ) -> int:
        """Import one inverter's archives into its own statistic; returns the hours written."""
        spot = data.spot
        now = (spot.inverter_time if spot else None) or int(time.time())
        start = now - self.history_days * DAY
        tz = local_time_zone(self.hass)
        try:
            previous = await stats.async_last_baseline(self.hass, serial)
            baseline = after = None
            daily_from = now - DAILY_HISTORY_DAYS * DAY
            if previous is not None:
                start = max(start, previous[0] - DAY)
                baseline = previous[1]
                after = previous[0] + stats.HOUR
                daily_from = max(daily_from, previous[0])
            start -= start % stats.HOUR
            daily_windows = max(0, start - daily_from) // (30 * DAY) + 1
            async with asyncio.timeout(
                link_settings.CONNECT_TIMEOUT
                + (self.history_days + daily_windows) * link_settings.REQUEST_TIMEOUT
            ):
                rows = await self.client.read_history(start, now, tz, inverter=inverter)
                daily: list[tuple[int, int]] = []
                if daily_from < start:
                    daily = await self.client.read_daily_history(
                        daily_from, start, inverter=inverter
                    )
        except UNREACHABLE as err:
            _LOGGER.debug("%s: history not read: %s", title, err)
            return 0
        older = stats.daily_rows_before(daily, rows, before=start, after=after)
        hours = stats.hourly_yield(older + rows, end=now, baseline_wh=baseline)
        if hours:
            stats.async_write_hours(self.hass, serial, f"{title} yield", hours)
        data.history_imports += 1
        data.history_hours = len(hours)
        data.history_days_imported = len(older)
        return len(hours)

    # ----------------------------------------------------------------------------------------
    # Diagnostics
    # ----------------------------------------------------------------------------------------

    def diagnostics(self) -> Mapping[str, Any]:
        """Link state, counters and the last reading (no serial numbers or addresses)."""
        data = self.data
        info = data.info
        return {
            "transport": self.link.transport,
            "simulated": self._simulator is not None,
            "link_up": self._coordinator.link_up,
            "poll_interval": self.poll_interval,
            "polls": data.polls,
            "failures": data.failures,
            "busy": data.busy,
            "connects": data.connects,
            "last_error": data.last_error,
            "history": {
                "days": self.history_days,
                "imports": data.history_imports,
                "hours_last_import": data.history_hours,
                "daily_rows_last_import": data.history_days_imported,
            },
            "inverter": None
            if info is None
            else {
                "type_label": info.type_label,
                "device_class": info.device_class,
                "software_version": info.software_version,
            },
            "spot": None if data.spot is None else repr(data.spot),
            "plant": [member.view.diagnostics() for member in self.members.values()],
        }
