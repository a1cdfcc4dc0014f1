"""The charge state machine: bulk → absorption → float → (rebulk) bulk, plus off.

The Sunny Island (like most chargers driven by a BMS) does constant-voltage charging itself at
the charge voltage limit (CVL), so the machine only has to choose *which* voltage to ask for and
*when* the battery is full:

* BULK — CVL = absorption voltage, CCL = bulk limit. Absorption begins when the pack reaches the
  absorption voltage minus a small margin, or the highest cell reaches the absorption trigger.
* ABSORPTION — same limits; the battery is full once the charge current has stayed at or below
  the tail current for ``tail_hold`` seconds *while at absorption voltage*, or after it has been
  at absorption voltage for ``max_absorption_time`` in total. Only time spent at voltage counts,
  so a cloud cannot end absorption early and declare a half-charged battery full. Once in
  absorption the highest cell counts as at voltage down to the trigger minus
  ``absorption_margin`` (the margin the pack voltage gets too): a BMS whose own current curve
  stops charging right at the trigger leaves that cell hovering just below it, and a clock that
  only ran while it flickered above would keep absorption going for hours. It also ends
  by cell balance (dbus-serialbattery's rule): the spread between the highest and the lowest
  cell at or below ``absorption_spread`` for ``spread_hold`` while at voltage. Balance is only
  judged when the source reports every cell: a partial set could hide the cell that runs away.
* FLOAT — CVL = float voltage. Entering float reports SOC 100 % (event ``soc_reset``, so the
  caller can correct the source). Back to BULK when the pack stays below the rebulk voltage for
  ``rebulk_delay``, the SOC falls below ``rebulk_soc``, the cell spread stays at or above
  ``rebulk_spread`` for ``rebulk_delay``, or ``full_charge_interval_days`` passed since the last
  completed absorption (a periodic full charge). A rebulk by spread asks for top balancing, and a
  low charge current says nothing about balance: the absorption that follows ignores the tail
  current and ends by balance or ``max_absorption_time`` only (else an unbalanced pack would
  cycle float → bulk → absorption → float every couple of minutes).
* OFF — charging switched off by the user: CCL 0, CVL = float voltage.

Manual modes hold a state (FORCE_BULK, FORCE_FLOAT, CHARGE_OFF) or let the machine run (AUTO).
While the source is stale the machine freezes (no data, no transitions) and the reported SOC is
held; the limit policy takes the charge limit to 0.

After a ``soc_reset`` the reported SOC follows the source scaled so that the source's reading at
that moment maps to 100 %, and converges back to the source as it falls towards 0 % (so an empty
battery is never masked) or when the source itself is corrected upwards.

Everything is deterministic: time comes in as monotonic seconds, nothing reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
import math
from typing import Final

from .chemistry import ChargeSettings
from .limits import LimitPolicy, LimitResult, Readings, Reason
from .snapshot import BatterySnapshot

DAY: Final = 86400.0
FULL_SOC: Final = 100.0
_SPREAD_TOLERANCE: Final = 1e-6
"""Spreads are differences of float sums (3.38 - 3.30 = 0.0799…): compare with 1 µV slack."""


class ChargeState(StrEnum):
    """Where the charge cycle is."""

    OFF = "off"
    BULK = "bulk"
    ABSORPTION = "absorption"
    FLOAT = "float"


class ChargeMode(StrEnum):
    """What the user asked for: let the machine run, or hold one state."""

    AUTO = "auto"
    FORCE_BULK = "force_bulk"
    FORCE_FLOAT = "force_float"
    CHARGE_OFF = "charge_off"


class ChargeEvent(StrEnum):
    """Something that happened in one update; the caller logs or acts on it."""

    BULK_STARTED = "bulk_started"
    ABSORPTION_STARTED = "absorption_started"
    ABSORPTION_COMPLETE = "absorption_complete"
    ABSORPTION_TIMEOUT = "absorption_timeout"
    ABSORPTION_BALANCED = "absorption_balanced"
    FLOAT_STARTED = "float_started"
    CHARGE_OFF = "charge_off"
    SOC_RESET = "soc_reset"
    REBULK = "rebulk"
    PERIODIC_FULL_CHARGE = "periodic_full_charge"
    FULL_CHARGE_REQUESTED = "full_charge_requested"
    SOURCE_STALE = "source_stale"
    SOURCE_FRESH = "source_fresh"


_ENTRY_EVENTS: Final = {
    ChargeState.OFF: ChargeEvent.CHARGE_OFF,
    ChargeState.BULK: ChargeEvent.BULK_STARTED,
    ChargeState.ABSORPTION: ChargeEvent.ABSORPTION_STARTED,
    ChargeState.FLOAT: ChargeEvent.FLOAT_STARTED,
}
_FORCED_STATES: Final = {
    ChargeMode.FORCE_BULK: ChargeState.BULK,
    ChargeMode.FORCE_FLOAT: ChargeState.FLOAT,
    ChargeMode.CHARGE_OFF: ChargeState.OFF,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargeDecision:
    """Everything a BMS reports for one update.

    Voltages in V, currents in A, SOC in % (None until a source ever gave one). ``alarms`` and
    ``warnings`` hold :class:`~.limits.AlarmItem` names; ``events`` what happened in this update,
    in order. ``absorption_elapsed`` is the time spent at absorption voltage in this cycle.
    """

    state: ChargeState
    mode: ChargeMode
    charge_voltage: float
    charge_current_limit: float
    discharge_current_limit: float
    discharge_voltage: float
    soc: float | None
    limited_by_charge: Reason
    limited_by_discharge: Reason
    alarms: frozenset[str]
    warnings: frozenset[str]
    events: tuple[ChargeEvent, ...]
    stale: bool
    absorption_elapsed: float


class ChargeController:
    """Runs the charge cycle for one battery; call :meth:`update` about once a second.

    ``state`` and ``last_full_charge`` (monotonic time of the last completed absorption, in the
    same time base as ``now``) let a caller restore what it persisted across restarts.
    """

    def __init__(
        self,
        settings: ChargeSettings,
        *,
        mode: ChargeMode = ChargeMode.AUTO,
        state: ChargeState = ChargeState.BULK,
        last_full_charge: float | None = None,
    ) -> None:
        """Start in ``state`` (bulk by default: a full battery then finishes absorption soon)."""
        self._settings = settings
        self._policy = LimitPolicy(settings)
        self._mode = mode
        self._state = state
        self._last_full_charge = last_full_charge
        self._full_charge_requested = False
        self._last_now: float | None = None
        self._stale = False
        self._absorption_elapsed = 0.0
        self._tail_since: float | None = None
        self._below_rebulk_since: float | None = None
        self._balanced_since: float | None = None
        self._spread_high_since: float | None = None
        self._balancing = False
        self._soc: float | None = None
        self._soc_scale = 1.0

    # --- configuration ----------------------------------------------------------------------

    @property
    def settings(self) -> ChargeSettings:
        """The settings in force; assign new (already validated) settings at any time."""
        return self._settings

    @settings.setter
    def settings(self, settings: ChargeSettings) -> None:
        self._settings = settings
        self._policy.settings = settings

    @property
    def policy(self) -> LimitPolicy:
        """The limit policy this controller feeds (its last snapshot, for diagnostics)."""
        return self._policy

    @property
    def mode(self) -> ChargeMode:
        """The mode the user chose."""
        return self._mode

    def set_mode(self, mode: ChargeMode) -> None:
        """Switch mode; it takes effect at the next update. AUTO resumes from the held state."""
        self._mode = mode

    def request_full_charge(self) -> None:
        """Start a full charge (bulk) at the next update in AUTO; ignored in the forced modes."""
        self._full_charge_requested = True

    @property
    def state(self) -> ChargeState:
        """The current charge state."""
        return self._state

    @property
    def last_full_charge(self) -> float | None:
        """Monotonic time of the last completed absorption (None if none yet)."""
        return self._last_full_charge

    # --- the update -------------------------------------------------------------------------

    def update(self, snapshot: BatterySnapshot | None, now: float) -> ChargeDecision:
        """Advance to ``now`` (monotonic seconds) with the source's latest ``snapshot``."""
        s = self._settings
        events: list[ChargeEvent] = []
        block = Reason.FORCED_OFF if self._mode is ChargeMode.CHARGE_OFF else None
        limits = self._policy.update(snapshot, now, charge_block=block)
        if limits.stale != self._stale:
            self._stale = limits.stale
            events.append(ChargeEvent.SOURCE_STALE if limits.stale else ChargeEvent.SOURCE_FRESH)
        dt = 0.0 if self._last_now is None else min(max(0.0, now - self._last_now), s.stale_after)
        self._last_now = now
        if self._last_full_charge is None:
            # The reference for periodic full charges until a first absorption completes.
            self._last_full_charge = now

        current = self._policy.last_snapshot if limits.fresh else None
        readings = Readings.of(current, s.cells) if current is not None else None
        source_soc = self._track_soc(readings)
        self._advance(current, readings, source_soc=source_soc, now=now, dt=dt, events=events)
        return self._decision(limits, events)

    def _track_soc(self, readings: Readings | None) -> float | None:
        """The source's SOC if fresh; updates the reported SOC (held while stale or missing)."""
        fresh_soc = readings.soc if readings is not None else None
        if fresh_soc is None:
            last = self._policy.last_snapshot
            if self._soc is None and last is not None:
                held = Readings.of(last, self._settings.cells).soc
                self._soc = None if held is None else _clamp_soc(held)
            return None
        source = _clamp_soc(fresh_soc)
        if source > 0.0:
            self._soc_scale = max(1.0, min(self._soc_scale, FULL_SOC / source))
        self._soc = _clamp_soc(source * self._soc_scale)
        return source

    def _reset_soc(self, source_soc: float | None, events: list[ChargeEvent]) -> None:
        if source_soc is not None:
            self._soc_scale = FULL_SOC / max(source_soc, 1.0)
        self._soc = FULL_SOC
        events.append(ChargeEvent.SOC_RESET)

    def _enter(self, state: ChargeState, events: list[ChargeEvent]) -> None:
        if state is self._state:
            return
        self._state = state
        self._absorption_elapsed = 0.0
        self._tail_since = None
        self._below_rebulk_since = None
        self._balanced_since = None
        self._spread_high_since = None
        if state in (ChargeState.FLOAT, ChargeState.OFF):
            self._balancing = False
        events.append(_ENTRY_EVENTS[state])

    def _advance(
        self,
        current: BatterySnapshot | None,
        readings: Readings | None,
        *,
        source_soc: float | None,
        now: float,
        dt: float,
        events: list[ChargeEvent],
    ) -> None:
        forced = _FORCED_STATES.get(self._mode)
        if forced is not None:
            self._full_charge_requested = False
            self._enter(forced, events)
            self._forget_spread()
            return
        if self._state is ChargeState.OFF:
            self._enter(ChargeState.BULK, events)
        if self._full_charge_requested:
            self._full_charge_requested = False
            events.append(ChargeEvent.FULL_CHARGE_REQUESTED)
            self._enter(ChargeState.BULK, events)
        if current is None or readings is None:
            # Stale or no data: hold the state, nothing to decide on. Spread holds must be
            # continuous, and nobody saw the cells during the gap.
            self._forget_spread()
            return
        s = self._settings
        spread = cell_spread(current, s.cells)
        # In absorption the highest cell keeps counting down to the trigger minus the margin the
        # pack voltage gets anyway: a BMS curve that stops charging right at the trigger leaves
        # the cell relaxing a fraction of a mV below it, which must not stall the clock.
        trigger = s.cell_absorption_trigger
        if self._state is ChargeState.ABSORPTION:
            trigger -= s.absorption_margin
        at_absorption = (
            readings.pack is not None and readings.pack >= s.absorption_start_voltage
        ) or (readings.high_cell is not None and readings.high_cell >= trigger)
        if readings.pack is not None and readings.pack < s.rebulk_voltage:
            if self._below_rebulk_since is None:
                self._below_rebulk_since = now
        else:
            self._below_rebulk_since = None
        rebulk_due = (
            self._below_rebulk_since is not None
            and now - self._below_rebulk_since >= s.rebulk_delay
        )
        if (
            s.rebulk_spread > 0
            and spread is not None
            and spread >= s.rebulk_spread - _SPREAD_TOLERANCE
        ):
            if self._spread_high_since is None:
                self._spread_high_since = now
        else:
            self._spread_high_since = None
        balanced = (
            at_absorption
            and spread is not None
            and spread <= s.absorption_spread + _SPREAD_TOLERANCE
        )
        if not balanced:
            self._balanced_since = None
        elif self._balanced_since is None:
            self._balanced_since = now

        if self._state is ChargeState.BULK:
            if at_absorption:
                self._enter(ChargeState.ABSORPTION, events)
        elif self._state is ChargeState.ABSORPTION:
            self._absorb(
                readings,
                at_absorption=at_absorption,
                rebulk_due=rebulk_due,
                source_soc=source_soc,
                now=now,
                dt=dt,
                events=events,
            )
        else:
            self._float(rebulk_due, now, events)

    def _forget_spread(self) -> None:
        self._balanced_since = None
        self._spread_high_since = None

    def _absorb(
        self,
        readings: Readings,
        *,
        at_absorption: bool,
        rebulk_due: bool,
        source_soc: float | None,
        now: float,
        dt: float,
        events: list[ChargeEvent],
    ) -> None:
        s = self._settings
        tailing = (
            at_absorption and readings.current is not None and readings.current <= s.tail_current
        )
        if at_absorption:
            self._absorption_elapsed += dt
        if not tailing:
            self._tail_since = None
        elif self._tail_since is None:
            self._tail_since = now
        if (
            not self._balancing
            and self._tail_since is not None
            and now - self._tail_since >= s.tail_hold
        ):
            self._complete(ChargeEvent.ABSORPTION_COMPLETE, source_soc, now, events)
        elif self._balanced_since is not None and now - self._balanced_since >= s.spread_hold:
            self._complete(ChargeEvent.ABSORPTION_BALANCED, source_soc, now, events)
        elif self._absorption_elapsed >= s.max_absorption_time:
            self._complete(ChargeEvent.ABSORPTION_TIMEOUT, source_soc, now, events)
        elif rebulk_due:
            events.append(ChargeEvent.REBULK)
            self._enter(ChargeState.BULK, events)

    def _complete(
        self,
        how: ChargeEvent,
        source_soc: float | None,
        now: float,
        events: list[ChargeEvent],
    ) -> None:
        events.append(how)
        self._enter(ChargeState.FLOAT, events)
        self._last_full_charge = now
        self._reset_soc(source_soc, events)

    def _float(self, rebulk_due: bool, now: float, events: list[ChargeEvent]) -> None:
        s = self._settings
        last = self._last_full_charge
        periodic_due = (
            s.full_charge_interval_days > 0
            and last is not None
            and now - last >= s.full_charge_interval_days * DAY
        )
        low_soc = s.rebulk_soc > 0 and self._soc is not None and self._soc < s.rebulk_soc
        spread_due = (
            self._spread_high_since is not None and now - self._spread_high_since >= s.rebulk_delay
        )
        if periodic_due:
            events.append(ChargeEvent.PERIODIC_FULL_CHARGE)
            self._enter(ChargeState.BULK, events)
        elif rebulk_due or low_soc:
            events.append(ChargeEvent.REBULK)
            self._enter(ChargeState.BULK, events)
        elif spread_due:
            events.append(ChargeEvent.REBULK)
            self._enter(ChargeState.BULK, events)
            self._balancing = True

    def _decision(self, limits: LimitResult, events: list[ChargeEvent]) -> ChargeDecision:
        s = self._settings
        charging = self._state in (ChargeState.BULK, ChargeState.ABSORPTION)
        cvl = s.absorption_voltage if charging else s.float_voltage
        return ChargeDecision(
            state=self._state,
            mode=self._mode,
            # Settings validation already keeps this below the maximum; the min() makes the
            # invariant independent of it.
            charge_voltage=min(cvl, s.max_voltage),
            charge_current_limit=limits.charge_current,
            discharge_current_limit=limits.discharge_current,
            discharge_voltage=s.discharge_cutoff_voltage,
            soc=self._soc,
            limited_by_charge=limits.charge_reason,
            limited_by_discharge=limits.discharge_reason,
            alarms=limits.alarms,
            warnings=limits.warnings,
            events=tuple(events),
            stale=limits.stale,
            absorption_elapsed=self._absorption_elapsed,
        )


def cell_spread(snapshot: BatterySnapshot, cells: int) -> float | None:
    """Highest minus lowest cell voltage, V; None unless all ``cells`` cells read valid.

    A missing or invalid cell (0 V, NaN) could be the very one that runs away, so a partial set
    says nothing about balance.
    """
    voltages = snapshot.cell_voltages
    if len(voltages) != cells or not all(0.0 < v < math.inf for v in voltages):
        return None
    return max(voltages) - min(voltages)


def _clamp_soc(value: float) -> float:
    return min(FULL_SOC, max(0.0, value))
