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

The charge voltage limit (CVL) sent is shaped, not switched:

* Without a complete set of cell voltages the bulk/absorption CVL is the lower
  ``absorption_voltage_without_cells`` (nothing would see one cell running away), and absorption
  starts at that voltage minus the margin. ``missing`` in the decision says which protections
  the source cannot give (cell voltages, temperature, SOC, current, pack voltage), so Home
  Assistant can show them.
* Cell-voltage guard: once any cell rises above the absorption trigger, CVL = pack voltage -
  cells * (highest cell - trigger), never below the float voltage and never above the
  absorption CVL. With the cell count as gain the fixed point puts the highest cell exactly on
  the trigger whatever the current (the IR drop of the pack cancels), so the guard pulls back
  the cell that runs away instead of leaving it to the charge-current cut-off. It acts at once
  and holds until that cell is ``absorption_margin`` below the trigger, so it does not toggle
  every update.
* Every other fall of the CVL (absorption → float, charging switched off, cell voltages lost)
  ramps at ``cvl_ramp_rate`` (mV/s): a CVL far below the battery voltage makes a Sunny Island
  discharge the battery regardless of the discharge limit (FSS-ConnectingBat-TI-en-10 p. 18).
  Rises are immediate; the CVL never exceeds the absorption voltage in force.

Current sign check: with the Sunny Island's own battery current (0x305) passed in, a source
whose current has the opposite sign while both exceed 2 A for 30 s raises
``current_sign_mismatch`` (and a general warning). An inverted shunt would make every charge look
like a tail current, so absorption does not judge the tail while the two disagree; it does not
use the Sunny Island's current instead, because with DC-coupled chargers the inverter's current
is not the battery's. Absorption then ends by balance or ``max_absorption_time``.

Persistence: :meth:`ChargeController.export_state` gives a JSON-friendly dict (charge state,
absorption progress, the last full charge as wall-clock epoch seconds — monotonic times mean
nothing after a restart) and :meth:`ChargeController.restore_state` takes it back, so a restart in
float stays in float and the periodic full charge is due on time however often Home Assistant
restarts. Anything unreadable restores the defaults.

Everything is deterministic: time comes in as monotonic seconds, nothing reads a clock; garbage
(a NaN ``now``, implausible readings, a snapshot from the future) never raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
import math
from typing import Any, Final

from .chemistry import ChargeSettings
from .limits import AlarmItem, LimitPolicy, LimitResult, Readings, Reason
from .snapshot import MAX_CURRENT_READING, BatterySnapshot

DAY: Final = 86400.0
FULL_SOC: Final = 100.0
SIGN_CHECK_CURRENT: Final = 2.0
"""Both currents must exceed this (A) before their signs are compared: noise is not a sign."""
SIGN_CHECK_HOLD: Final = 30.0
"""Seconds a (dis)agreement must last before the mismatch flag changes."""
STATE_VERSION: Final = 1
"""Version of :meth:`ChargeController.export_state`'s dict; others restore the defaults."""
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


class MissingData(StrEnum):
    """A protection the source cannot give right now (shown to users, raised as an issue)."""

    CELL_VOLTAGES = "cell_voltages"
    TEMPERATURE = "temperature"
    SOC = "soc"
    CURRENT = "current"
    VOLTAGE = "voltage"


ALL_MISSING: Final = frozenset(MissingData)


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

    Voltages in V, currents in A, SOC in % (None until a source ever gave one; held at the last
    value while the source or its SOC is stale). ``alarms`` and ``warnings`` hold
    :class:`~.limits.AlarmItem` names; ``events`` what happened in this update, in order.
    ``absorption_elapsed`` is the time spent at absorption voltage in this cycle.

    ``missing`` holds :class:`MissingData` names: protections the source does not give (kept
    from the last fresh reading while the source is stale; everything before the first one).
    ``stale_fields`` names readings frozen inside an otherwise fresh snapshot (they make
    ``stale`` true). ``grid_connected`` echoes the input (None = unknown, treated as off-grid).
    ``current_sign_mismatch`` is the current sign check; ``cell_voltage_guard`` is true while a
    high cell holds the charge voltage below the absorption voltage.
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
    missing: frozenset[str] = frozenset()
    stale_fields: frozenset[str] = frozenset()
    grid_connected: bool | None = None
    current_sign_mismatch: bool = False
    cell_voltage_guard: bool = False


class ChargeController:
    """Runs the charge cycle for one battery; call :meth:`update` about once a second.

    ``state`` and ``last_full_charge`` (monotonic time of the last completed absorption, in the
    same time base as ``now``) set the starting point; across restarts use
    :meth:`export_state`/:meth:`restore_state`, which work in wall-clock time.
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
        self._initial_state = state
        self._state = state
        self._last_full_charge = last_full_charge
        self._initial_full_charge = last_full_charge
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
        self._soc_time: float | None = None
        self._cells_known = False
        self._missing: frozenset[str] = ALL_MISSING
        self._cvl: float | None = None
        self._guard_cvl: float | None = None
        self._disagree_since: float | None = None
        self._agree_since: float | None = None
        self._disagreeing = False
        self._sign_mismatch = False

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

    def update(
        self,
        snapshot: BatterySnapshot | None,
        now: float,
        *,
        grid_connected: bool | None = None,
        si_current: float | None = None,
    ) -> ChargeDecision:
        """Advance to ``now`` (monotonic seconds) with the source's latest ``snapshot``.

        ``grid_connected`` is whether the Sunny Island is grid-tied (None: unknown, handled as
        off-grid — the side on which only an alarm stops discharging). ``si_current`` is the
        Sunny Island's own measured battery current (0x305, A, + = charging) for the sign check.
        The snapshot is sanitised (by the limit policy) before anything looks at it; no content
        of it can make this raise.
        """
        s = self._settings
        events: list[ChargeEvent] = []
        if grid_connected is not True and grid_connected is not False:
            grid_connected = None
        block = Reason.FORCED_OFF if self._mode is ChargeMode.CHARGE_OFF else None
        limits = self._policy.update(
            snapshot, now, charge_block=block, grid_connected=grid_connected
        )
        now = self._policy_now(now)
        if limits.stale != self._stale:
            self._stale = limits.stale
            events.append(ChargeEvent.SOURCE_STALE if limits.stale else ChargeEvent.SOURCE_FRESH)
        dt = 0.0 if self._last_now is None else min(max(0.0, now - self._last_now), s.stale_after)
        self._last_now = now
        if self._last_full_charge is None:
            # The reference for periodic full charges until a first absorption completes.
            self._last_full_charge = now

        view, readings = limits.view, limits.readings
        if readings is not None:
            self._cells_known = readings.cells_complete
        source_soc = self._track_soc(view, readings)
        soc_missing = self._soc_time is None or now - self._soc_time > s.stale_after
        self._check_current_sign(readings, _current(si_current), now)
        self._advance(
            view,
            readings,
            source_soc=source_soc,
            soc_missing=soc_missing,
            now=now,
            dt=dt,
            events=events,
        )
        missing = self._missing_now(readings, soc_missing=soc_missing)
        cvl = self._charge_voltage(readings, dt)
        return self._decision(
            limits,
            events,
            cvl=cvl,
            missing=missing,
            soc_missing=soc_missing,
            grid_connected=grid_connected,
        )

    def _policy_now(self, now: float) -> float:
        """``now`` as the policy used it (a non-finite clock reading repeats the last one)."""
        if isinstance(now, int | float) and math.isfinite(now):
            return float(now)
        return self._last_now if self._last_now is not None else 0.0

    def _track_soc(self, view: BatterySnapshot | None, readings: Readings | None) -> float | None:
        """The source's SOC if fresh; updates the reported SOC (held while stale or missing)."""
        fresh_soc = readings.soc if readings is not None else None
        if view is None or fresh_soc is None:
            last = self._policy.last_snapshot
            if self._soc is None and last is not None:
                held = Readings.of(last, self._settings.cells).soc
                self._soc = None if held is None else _clamp_soc(held)
            return None
        self._soc_time = view.field_time("soc")
        source = _clamp_soc(fresh_soc)
        if source > 0.0:
            self._soc_scale = max(1.0, min(self._soc_scale, FULL_SOC / source))
        self._soc = _clamp_soc(source * self._soc_scale)
        return source

    def _check_current_sign(
        self, readings: Readings | None, si_current: float | None, now: float
    ) -> None:
        """Compare the source's current with the Sunny Island's; flip the flag after a hold."""
        source = readings.current if readings is not None else None
        if (
            source is None
            or si_current is None
            or abs(source) <= SIGN_CHECK_CURRENT
            or abs(si_current) <= SIGN_CHECK_CURRENT
        ):
            self._disagreeing = False
            self._disagree_since = self._agree_since = None
            return
        self._disagreeing = (source > 0) != (si_current > 0)
        if self._disagreeing:
            self._agree_since = None
            if self._disagree_since is None:
                self._disagree_since = now
            if now - self._disagree_since >= SIGN_CHECK_HOLD:
                self._sign_mismatch = True
        else:
            self._disagree_since = None
            if self._agree_since is None:
                self._agree_since = now
            if now - self._agree_since >= SIGN_CHECK_HOLD:
                self._sign_mismatch = False

    def _missing_now(self, readings: Readings | None, *, soc_missing: bool) -> frozenset[str]:
        if readings is not None:
            missing: set[str] = set()
            if not readings.cells_complete:
                missing.add(MissingData.CELL_VOLTAGES)
            if readings.coldest is None:
                missing.add(MissingData.TEMPERATURE)
            if readings.current is None:
                missing.add(MissingData.CURRENT)
            if readings.pack is None:
                missing.add(MissingData.VOLTAGE)
            self._missing = frozenset(missing)
        if soc_missing:
            return self._missing | {MissingData.SOC}
        return self._missing - {MissingData.SOC}

    def _absorption_cvl(self) -> float:
        """The bulk/absorption CVL: lower while the cells cannot be watched."""
        s = self._settings
        return s.absorption_voltage if self._cells_known else s.absorption_voltage_without_cells

    def _charge_voltage(self, readings: Readings | None, dt: float) -> float:
        """The CVL to send: state voltage, cell-voltage guard, ramped falls (module docstring)."""
        s = self._settings
        charging = self._state in (ChargeState.BULK, ChargeState.ABSORPTION)
        base = self._absorption_cvl() if charging else s.float_voltage
        guard = self._guard(readings, charging=charging)
        target = base if guard is None else min(base, guard)
        previous = self._cvl
        if previous is None or target >= previous or target < base:
            cvl = target
        else:
            cvl = max(target, previous - s.cvl_ramp_rate / 1000.0 * dt)
        # Never above the absorption voltage in force nor the chemistry's maximum, even while a
        # ramp started under older settings is still coming down.
        cvl = min(cvl, s.absorption_voltage, s.max_voltage)
        self._cvl = cvl
        return cvl

    def _guard(self, readings: Readings | None, *, charging: bool) -> float | None:
        """The cell-voltage guard's CVL while it is active (held while there is no data)."""
        s = self._settings
        if not charging:
            self._guard_cvl = None
            return None
        if readings is None:
            return self._guard_cvl
        high, pack = readings.high_cell, readings.pack
        if high is None or pack is None:
            self._guard_cvl = None
            return None
        limit = s.cell_absorption_trigger
        active = high > limit or (
            self._guard_cvl is not None and high > limit - s.absorption_margin
        )
        if not active:
            self._guard_cvl = None
            return None
        self._guard_cvl = max(s.float_voltage, pack - s.cells * (high - limit))
        return self._guard_cvl

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
        soc_missing: bool,
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
        # Without the cells the CVL is lower, so absorption must start below that, not below the
        # full absorption voltage the pack would then never reach.
        start = self._absorption_cvl() - s.cells * s.absorption_margin
        at_absorption = (readings.pack is not None and readings.pack >= start) or (
            readings.high_cell is not None and readings.high_cell >= trigger
        )
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
            self._float(rebulk_due, now, events, soc_missing=soc_missing)

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
        # A source current of the wrong sign would read every charge as a tail current.
        current = None if self._disagreeing or self._sign_mismatch else readings.current
        tailing = at_absorption and current is not None and current <= s.tail_current
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

    def _float(
        self, rebulk_due: bool, now: float, events: list[ChargeEvent], *, soc_missing: bool
    ) -> None:
        s = self._settings
        last = self._last_full_charge
        periodic_due = (
            s.full_charge_interval_days > 0
            and last is not None
            and now - last >= s.full_charge_interval_days * DAY
        )
        # A held (stale) SOC says nothing about the battery now.
        low_soc = (
            s.rebulk_soc > 0
            and not soc_missing
            and self._soc is not None
            and self._soc < s.rebulk_soc
        )
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

    def _decision(
        self,
        limits: LimitResult,
        events: list[ChargeEvent],
        *,
        cvl: float,
        missing: frozenset[str],
        soc_missing: bool,
        grid_connected: bool | None,
    ) -> ChargeDecision:
        s = self._settings
        warnings = set(limits.warnings)
        if self._sign_mismatch:
            warnings.add(AlarmItem.GENERAL)
        if soc_missing and self._soc is not None:
            # The SOC sent is a held value: the inverter's SOC-based protection is blind.
            warnings.add(AlarmItem.BMS_INTERNAL)
        return ChargeDecision(
            state=self._state,
            mode=self._mode,
            charge_voltage=cvl,
            charge_current_limit=limits.charge_current,
            discharge_current_limit=limits.discharge_current,
            discharge_voltage=s.discharge_cutoff_voltage,
            soc=self._soc,
            limited_by_charge=limits.charge_reason,
            limited_by_discharge=limits.discharge_reason,
            alarms=limits.alarms,
            warnings=frozenset(warnings),
            events=tuple(events),
            stale=limits.stale,
            absorption_elapsed=self._absorption_elapsed,
            missing=missing,
            stale_fields=limits.stale_fields,
            grid_connected=grid_connected,
            current_sign_mismatch=self._sign_mismatch,
            cell_voltage_guard=self._guard_cvl is not None and cvl < self._absorption_cvl(),
        )

    # --- persistence ------------------------------------------------------------------------

    def export_state(self, now: float, wall_now: float) -> dict[str, Any]:
        """What must survive a restart, as JSON-friendly values.

        ``now`` is the monotonic time of the controller, ``wall_now`` the wall clock (epoch
        seconds) at the same moment: the last full charge is stored in wall-clock time.
        """
        last = self._last_full_charge
        last_wall = None if last is None else wall_now - max(0.0, now - last)
        return {
            "version": STATE_VERSION,
            "state": self._state.value,
            "absorption_elapsed": self._absorption_elapsed,
            "balancing": self._balancing,
            "last_full_charge": last_wall,
            "soc_scale": self._soc_scale,
            "saved_at": wall_now,
        }

    def restore_state(self, data: object, now: float, wall_now: float) -> bool:
        """Take back what :meth:`export_state` gave; False (and the defaults) if unusable.

        ``now``/``wall_now`` are the monotonic and wall-clock times of this process. A last full
        charge in the future (the wall clock was set back) counts as now. Never raises: a store
        from another version, or damaged, restores the state the controller was created with.
        """
        restored = _parse_state(data, now, wall_now)
        if restored is None:
            self._apply_restored(self._initial_state, 0.0, False, self._initial_full_charge, 1.0)
            return False
        self._apply_restored(*restored)
        return True

    def _apply_restored(
        self,
        state: ChargeState,
        elapsed: float,
        balancing: bool,
        last_full_charge: float | None,
        soc_scale: float,
    ) -> None:
        self._state = state
        self._absorption_elapsed = elapsed
        self._balancing = balancing
        self._last_full_charge = last_full_charge
        self._soc_scale = soc_scale
        self._tail_since = None
        self._below_rebulk_since = None
        self._forget_spread()
        self._cvl = None
        self._guard_cvl = None


def _parse_state(
    data: object, now: float, wall_now: float
) -> tuple[ChargeState, float, bool, float | None, float] | None:
    """The values of an exported state, or None if anything in it is unusable."""
    if not isinstance(data, Mapping) or data.get("version") != STATE_VERSION:
        return None
    now_value, wall = _finite_number(now), _finite_number(wall_now)
    if now_value is None or wall is None:
        return None
    raw_state = data.get("state")
    if raw_state not in tuple(ChargeState):
        return None
    state = ChargeState(raw_state)
    elapsed = _finite_number(data.get("absorption_elapsed"))
    balancing = data.get("balancing")
    scale = _finite_number(data.get("soc_scale"))
    raw_last = data.get("last_full_charge")
    last_wall = _finite_number(raw_last)
    if (
        elapsed is None
        or elapsed < 0.0
        or not isinstance(balancing, bool)
        or scale is None
        or not 1.0 <= scale <= FULL_SOC
        or (raw_last is not None and last_wall is None)
    ):
        return None
    last = None if last_wall is None else now_value - max(0.0, wall - last_wall)
    return state, min(elapsed, DAY), balancing, last, scale


def _finite_number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _current(value: object) -> float | None:
    """A current reading (A), or None when it is not a plausible number."""
    number = _finite_number(value)
    return number if number is not None and abs(number) <= MAX_CURRENT_READING else None


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
