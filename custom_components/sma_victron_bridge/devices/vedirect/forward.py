"""Battery-sense forwarding: battery voltage and temperature from a monitor to an MPPT.

Replaces the script that copied a BMV's readings to a solar charger over VE.Direct. Every second
the forwarder asks the pure :class:`ForwardSchedule` which writes are due and performs them over
the MPPT's HEX link. A stale source stops the writes (the charger falls back to its own
measurement 60 s later) and raises a repair issue; unloading releases the registers at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
import logging
import time

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.event import async_track_time_interval

from ...const import DOMAIN
from ...control.forwarding import ForwardSchedule, ForwardState, SenseWrite
from ...protocols import ProtocolError
from ..battery_source import BatterySource

_LOGGER = logging.getLogger(__name__)
TICK = timedelta(seconds=1)

type SenseWriter = Callable[[SenseWrite], Awaitable[None]]


@dataclass(slots=True)
class ForwardStatus:
    """What the user sees about forwarding: state, source and the values in force."""

    state: ForwardState
    source_name: str
    voltage: float | None = None
    temperature: float | None = None
    age: float | None = None


def stale_issue_id(entry_id: str) -> str:
    """The repair issue raised for one MPPT entry whose battery-sense source went stale."""
    return f"battery_sense_stale_{entry_id}"


class BatterySenseForwarder:
    """Runs the forwarding schedule against one MPPT."""

    def __init__(
        self,
        hass: HomeAssistant,
        *,
        entry_id: str,
        charger_name: str,
        source: BatterySource,
        stale_after: float,
        write: SenseWriter,
        on_change: Callable[[], None],
    ) -> None:
        """Forward from ``source`` through ``write``; ``on_change`` refreshes the entities."""
        self._hass = hass
        self._entry_id = entry_id
        self._charger_name = charger_name
        self._source = source
        self._write = write
        self._on_change = on_change
        self._schedule = ForwardSchedule(stale_after=stale_after)
        self._busy = False
        self._issue_raised = False
        self._unsub: Callable[[], None] | None = None
        self.status = ForwardStatus(state=ForwardState.WAITING, source_name=source.name)

    @callback
    def async_start(self) -> None:
        """Start ticking; the first writes happen on the first tick."""
        self._unsub = async_track_time_interval(
            self._hass, self._async_tick, TICK, name="battery-sense forwarding"
        )

    async def _async_tick(self, _now: object = None) -> None:
        if self._busy:  # a slow HEX exchange is still running: never overlap writes
            return
        self._busy = True
        try:
            await self._async_forward()
        finally:
            self._busy = False

    async def _async_forward(self) -> None:
        now = time.monotonic()
        snapshot = self._source.snapshot()
        writes = self._schedule.due(now, snapshot)
        for write in writes:
            try:
                await self._write(write)
            except ProtocolError as err:
                _LOGGER.debug("Battery-sense %s write failed: %s", write.quantity, err)
                self._schedule.retry_soon(write, now)
            else:
                self._schedule.confirm(write)
        self._update_issue()
        previous = (self.status.state, self.status.voltage, self.status.temperature)
        self.status.state = self._schedule.state
        self.status.voltage = self._schedule.last_voltage
        self.status.temperature = self._schedule.last_temperature
        self.status.age = None if snapshot is None else round(snapshot.age(now), 1)
        if self._schedule.state is ForwardState.STALE:
            # The charger drops remote values 60 s after the last write; show what it uses.
            self.status.voltage = self.status.temperature = None
        if previous != (self.status.state, self.status.voltage, self.status.temperature):
            self._on_change()

    def _update_issue(self) -> None:
        stale = self._schedule.state is ForwardState.STALE
        if stale and not self._issue_raised:
            _LOGGER.warning(
                "Battery-sense source %s is stale: %s no longer gets remote voltage/temperature",
                self._source.name,
                self._charger_name,
            )
            ir.async_create_issue(
                self._hass,
                DOMAIN,
                stale_issue_id(self._entry_id),
                is_fixable=False,
                severity=ir.IssueSeverity.WARNING,
                translation_key="battery_sense_stale",
                translation_placeholders={
                    "charger": self._charger_name,
                    "source": self._source.name,
                    "seconds": f"{self._schedule.stale_after:g}",
                },
            )
            self._issue_raised = True
        elif not stale and self._issue_raised:
            _LOGGER.info("Battery-sense source %s is fresh again", self._source.name)
            ir.async_delete_issue(self._hass, DOMAIN, stale_issue_id(self._entry_id))
            self._issue_raised = False

    async def async_stop(self, *, release: bool) -> None:
        """Stop ticking; with ``release`` hand the charger back its own measurement at once."""
        if self._unsub is not None:
            self._unsub()
            self._unsub = None
        ir.async_delete_issue(self._hass, DOMAIN, stale_issue_id(self._entry_id))
        self._issue_raised = False
        if not release:
            return
        for write in self._schedule.release():
            try:
                await self._write(write)
            except ProtocolError as err:
                _LOGGER.warning(
                    "Could not release battery-sense %s on %s (it expires within 60 s): %s",
                    write.quantity,
                    self._charger_name,
                    err,
                )
        self.status.state = ForwardState.RELEASED
