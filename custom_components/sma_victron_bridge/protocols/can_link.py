"""The CAN link of the Sunny Island BMS emulation: a bus that reopens itself, and the BMS frames.

Why threads and not the event loop: the SI shuts the plant down when 0x355 stays away for 60 s,
and it expects the frames at a steady 1 s. So the BMS frames go out through python-can's
``send_periodic``: on socketcan the kernel's broadcast manager (BCM) sends them, elsewhere one
python-can thread per frame id does. Neither depends on the event loop, so a stalled loop, a slow
battery source or a reloading entry never delays a frame. Receiving runs in one reader thread
that hands every Sunny Island frame to the loop with ``call_soon_threadsafe``; the same thread
notices a dead adapter, reports it, reopens the bus with back-off and restarts the BMS frames.

Why a reader thread and not ``can.Notifier(loop=...)``: on a bus with a file descriptor (slcan)
the notifier watches that descriptor in the loop, and after an unplug the descriptor stays
readable while every ``recv`` raises - the loop would spin.

How the frames are kept honest ([SMA-TI] 5.1, DESIGN invariants 1, 2 and 6):

* One task per id, started ``STAGGER`` apart so the six frames do not hit the bus in the same
  millisecond. The 200 ms inhibit time holds across restarts and across senders: a process-wide
  record keeps, per (interface, channel, id), when a frame last went out (or, for a backend whose
  sends cannot be observed, when it may have), and the first frame of a new run waits until
  ``MIN_PERIOD`` plus a margin has passed since then. A reloading entry builds a new link on the
  same bus right after the old one sent its final frames; without the record its first frames
  came 160 ms after the old ones.
* New data replaces the old in place (``modify_data``): no extra frame, the 1 s timer keeps
  running. On socketcan python-can's ``modify_data`` sends ``TX_SETUP`` with no timer flags (only
  ``CAN_FD_FRAME`` for FD frames). The kernel (``net/can/bcm.c``, ``bcm_tx_setup`` on an existing
  operation) then copies the new frame data and replaces the operation's flags; only ``SETTIMER``
  would load new intervals, only ``STARTTIMER`` would cancel and restart the timer (and, with it,
  force an immediate ``TX_ANNOUNCE`` send), only ``TX_ANNOUNCE`` would send at once. With none of
  them the running hrtimer is untouched and the new data goes out at the next tick: exactly the
  behaviour wanted here, so ``modify_data`` is used as it is. The thread-based task of the other
  interfaces just swaps its message tuple, which its thread reads at the next send.
* python-can's thread-based task catches up after a late send by sending the missed frames back
  to back, which would break the 200 ms inhibit time, and it sleeps with ``time.sleep``, so a
  stop has to wait up to a period. Each such task therefore gets a pacer that takes over its
  timing (:class:`_Pacer`): it waits on an event for the task's own 1 s slot and at least
  ``MIN_PERIOD`` after the end of the previous send of the id, skips missed slots instead of
  bursting, and wakes at once on a stop. The pacer also stands in for the bus inside the task
  (``task.bus``), so it learns when each send really finished - which is how
  :meth:`BmsSender.wait_sent` knows that the final frames are out before they are stopped.

The frames must never outlive the controller that decides them (DESIGN invariant 7). A dead-man
guard in every sender counts each update (:meth:`CanLink.send_bms`) as the controller's
confirmation; when none came for ``guard_time`` seconds, the guard's own thread replaces the
payloads in place with :func:`~.sma_can.safe_bms_frames` of the last ones (CCL 0 A, SOC held, a
warning in 0x35A): on socketcan too, where the kernel keeps sending whatever data it was given
last, and whatever happens to the event loop. Fresh frames end the safe state. A stop
(:meth:`CanLink.send_final_and_stop`) leaves the SI in the same safe state: CCL through 1 A to
0 A, each step confirmed on the wire before the next.

python-can 4.6.1 facts this module relies on: a thread-based task reads ``bus``, ``period_ns``,
``modifier_callback`` and ``on_error`` in its thread (set here before it starts); stopping a task
does not join its thread (done here); a task whose send raises dies unless it has ``on_error``
(set here, so it keeps trying); slcan ``recv`` raises ``IndexError``/``ValueError`` on a malformed
line and keeps undecodable bytes in its buffer until ``flush()``; slcan ``shutdown`` raises after
an unplug and leaves the serial port open. Should a later python-can rename those task
attributes, the frames still go out at the right rate; only a stop becomes slower and the final
frames are waited for by time-out.

Pure module: python-can, asyncio and threads; no Home Assistant.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
import contextlib
from dataclasses import dataclass
import functools
import logging
import math
import threading
import time
from typing import Any, Final, Literal, cast

import can
from can.broadcastmanager import (
    CyclicSendTaskABC,
    ModifiableCyclicTaskABC,
    RestartableCyclicTaskABC,
    ThreadBasedCyclicSendTask,
)
from can.typechecking import CanFilter

from . import ProtocolError
from .sma_can import (
    MIN_PERIOD,
    SEND_PERIOD,
    SI_FRAME_IDS,
    SOC_TIMEOUT,
    STEP_CURRENT,
    charge_current_limit_of,
    safe_bms_frames,
)

_LOGGER = logging.getLogger(__name__)

# candleLight/CANable adapters with the candleLight firmware are driven by the kernel's own gs_usb
# driver and appear as a socketcan interface (can0); python-can's userspace gs_usb interface
# would need pyusb, libusb and raw USB access inside Home Assistant's container, for the same
# adapter, so it is not offered.
type CanInterface = Literal["socketcan", "slcan", "virtual"]

INTERFACES: Final[tuple[CanInterface, ...]] = ("socketcan", "slcan", "virtual")
DEFAULT_BITRATE: Final = 500_000
SLCAN_TTY_BAUDRATE: Final = 115_200
SLCAN_SLEEP_AFTER_OPEN: Final = 0.1
"""python-can waits 2 s after opening the tty (for boards that reset on open); a CANable does
not reset, so a short settle time is enough and a reconnect is not delayed needlessly."""

STAGGER: Final = 0.02
"""Start offset between the periodic tasks of consecutive ids, s."""
REANCHOR_AFTER: Final = 0.02
"""A frame that went out this much later than its slot (the thread stalled: a slow send, a
garbage-collection pause of the whole process) starts a new grid one period after it, so a late
frame is never followed by an early one. Smaller lateness stays on the grid, s."""
RECV_TIMEOUT: Final = 0.2
"""Reader poll: how quickly the reader notices a close request, s."""
SEND_ERRORS_BEFORE_REOPEN: Final = 3
"""Failed sends on one connection after which the bus is reopened."""
MAX_NOISE_IN_A_ROW: Final = 20
# Frames already waiting after a receive are drained and handed to the event loop together: one
# hand-over per burst instead of per frame (a busy 500 kbit/s bus carries ~4,000 frames/s).
MAX_BATCH: Final = 256
"""Malformed lines in a row (no good frame, no idle poll between) that count as a dead link."""
KERNEL_TIMER_MARGIN: Final = 0.05
"""Extra wait past one period for a backend whose sends cannot be observed (socketcan BCM), s."""
FINAL_WAIT_MARGIN: Final = 0.5
"""How much longer than one period :meth:`CanLink.send_final_and_stop` waits for the final
frames, s."""
JOIN_MARGIN: Final = 1.0
THREAD_JOIN_TIMEOUT: Final = 10.0
INHIBIT_MARGIN: Final = 0.03
"""Kept on top of ``MIN_PERIOD`` between the last frame of an id and the first of a new run: the
send times are taken after the send returned, a serial adapter may still hold the frame, s."""
DEFAULT_GUARD_TIME: Final = 10.0
"""Seconds without a confirmation (an update) after which the sender switches to safe frames."""

_STANDARD_ID_MASK: Final = 0x7FF
_MAX_DATA: Final = 8
_SI_IDS: Final = frozenset(SI_FRAME_IDS)

SI_FILTERS: Final[tuple[CanFilter, ...]] = tuple(
    {"can_id": frame_id, "can_mask": _STANDARD_ID_MASK, "extended": False}
    for frame_id in SI_FRAME_IDS
)
"""Kernel receive filters (socketcan) for the Sunny Island's broadcast ids."""


class CanLinkError(ProtocolError):
    """The CAN bus cannot be opened or used."""


class _LinkDownError(Exception):
    """The bus failed; the reader closes it and reopens it (internal)."""


# --- configuration -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CanConfig:
    """Which CAN adapter to open: python-can interface name, channel and bitrate.

    ``channel``: socketcan the network interface (``can0``, set up at 500 kbit/s by the OS),
    slcan the adapter's serial port, virtual any channel name (tests and the simulated device).
    """

    interface: CanInterface
    channel: str
    bitrate: int = DEFAULT_BITRATE

    def __post_init__(self) -> None:
        """Refuse settings no adapter could use, before anything is opened."""
        if self.interface not in INTERFACES:
            raise ValueError(f"unknown CAN interface {self.interface!r}")
        if not self.channel.strip():
            raise ValueError("CAN channel must not be empty")
        if self.bitrate <= 0:
            raise ValueError("bitrate must be positive")

    def bus_kwargs(self) -> dict[str, Any]:
        """Arguments for ``can.Bus``.

        Only socketcan filters in the kernel; on the other interfaces python-can would filter in
        Python anyway, and its software filter would also drop error frames, so the reader
        filters there itself.
        """
        kwargs: dict[str, Any] = {"interface": self.interface, "channel": self.channel}
        if self.interface == "socketcan":
            # The bitrate of a socketcan interface is set by the OS (ip link), not by python-can.
            kwargs["can_filters"] = list(SI_FILTERS)
        elif self.interface == "slcan":
            kwargs["bitrate"] = self.bitrate
            kwargs["tty_baudrate"] = SLCAN_TTY_BAUDRATE
            kwargs["sleep_after_open"] = SLCAN_SLEEP_AFTER_OPEN
        else:
            kwargs["receive_own_messages"] = False
        return kwargs

    def open(self) -> can.BusABC:
        """Open the bus (blocking: slcan settles); raise :class:`CanLinkError`."""
        try:
            return can.Bus(**self.bus_kwargs())
        except Exception as err:
            raise CanLinkError(
                f"cannot open {self.interface} channel {self.channel!r}: {err}"
            ) from err


# --- periodic BMS frames -----------------------------------------------------------------------

type ChannelKey = tuple[str, str]
"""(interface, channel): one physical bus, as far as this process can tell."""


class _LastSends:
    """When each id last went out on each bus, process-wide (``time.perf_counter()``).

    Module level on purpose: it outlives every sender and every link, so a sender created by a
    reloaded entry knows what the previous one sent. Thread-safe: pacer threads record, starter
    threads ask.
    """

    __slots__ = ("_lock", "_times")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._times: dict[tuple[ChannelKey, int], float] = {}

    def record(self, key: ChannelKey, arbitration_id: int, at: float) -> None:
        """Note a send (or the latest moment one may have happened) at ``at``."""
        with self._lock:
            previous = self._times.get((key, arbitration_id))
            if previous is None or at > previous:
                self._times[(key, arbitration_id)] = at

    def free_at(self, key: ChannelKey, arbitration_id: int) -> float:
        """The earliest ``time.perf_counter()`` at which the id may be sent again on ``key``."""
        with self._lock:
            last = self._times.get((key, arbitration_id))
        return -math.inf if last is None else last + MIN_PERIOD + INHIBIT_MARGIN


_LAST_SENDS: Final = _LastSends()


def last_send_free_at(key: ChannelKey, arbitration_id: int) -> float:
    """When ``arbitration_id`` may next go out on ``key`` (``time.perf_counter()``; -inf: now)."""
    return _LAST_SENDS.free_at(key, arbitration_id)


def _bus_key(bus: can.BusABC) -> ChannelKey:
    """A key for a bus handed to a sender without one: python-can's description of its channel
    (``"Virtual bus channel x"``), the same for every bus object on that channel."""
    return ("", str(bus.channel_info))


def _bms_message(arbitration_id: int, data: bytes) -> can.Message:
    return can.Message(arbitration_id=arbitration_id, data=data, is_extended_id=False)


class _Pacer:
    """Times one python-can thread-based task and records when each of its sends finished.

    python-can's task thread sleeps between sends with ``time.sleep`` (so a stop waits up to a
    period) and catches up after a late send by bursting. Here the task's own schedule is
    switched off (``period_ns = 0``: its thread never sleeps) and :meth:`before_send`, the task's
    ``modifier_callback``, does all the waiting instead: on an event, so a stop wakes it at once,
    and outside the bus's send lock, so one id waiting never holds up another. The pacer also
    stands in for the bus inside the task (``task.bus``): :meth:`send` forwards each frame, notes
    when it went out, and drops it once the sender is stopping.
    """

    __slots__ = (
        "_bus",
        "_changed",
        "_due",
        "_halt",
        "_key",
        "_period",
        "_slot",
        "sent",
        "sent_at",
    )

    def __init__(
        self,
        bus: can.BusABC,
        period: float,
        changed: threading.Condition,
        halt: threading.Event,
        key: ChannelKey,
    ) -> None:
        self._bus = bus
        self._period = period
        self._changed = changed
        self._halt = halt
        self._key = key
        self._due: float | None = None
        self._slot: float | None = None
        """When the frame being sent was due."""
        self.sent: can.Message | None = None
        """The message object of the last send that succeeded."""
        self.sent_at: float | None = None
        """``time.perf_counter()`` when that send returned."""

    def before_send(self, _message: can.Message) -> None:
        """Wait for this id's slot and its inhibit time; plan the next slot."""
        now = time.perf_counter()
        due = now if self._due is None else self._due
        earliest = due
        if self.sent_at is not None:
            earliest = max(earliest, self.sent_at + MIN_PERIOD)
        if now < earliest:
            if self._halt.wait(earliest - now):
                return  # stopping: send() drops the frame
            now = time.perf_counter()
        # Next slot: the first point of the grid at least MIN_PERIOD after this send. After a
        # stall this skips the missed slots instead of sending them back to back.
        steps = max(1, math.ceil((now + MIN_PERIOD - due) / self._period))
        self._due = due + steps * self._period
        self._slot = due

    def send(self, message: can.Message, timeout: float | None = None) -> None:
        """Send on the real bus (called by the task under the bus's send lock), then record it."""
        if self._halt.is_set():
            return
        self._bus.send(message, timeout)
        sent_at = time.perf_counter()
        _LAST_SENDS.record(self._key, message.arbitration_id, sent_at)
        if (
            self._slot is not None
            and self._due is not None
            and sent_at - self._slot > REANCHOR_AFTER
        ):
            self._due = max(self._due, sent_at + max(self._period, MIN_PERIOD))
        with self._changed:
            self.sent = message
            self.sent_at = sent_at
            self._changed.notify_all()


@dataclass(slots=True)
class _Slot:
    """One frame id: its periodic task, the message it carries and how to tell it went out."""

    task: CyclicSendTaskABC
    message: can.Message
    pacer: _Pacer | None
    """None: the backend owns the timer (socketcan BCM) and sends cannot be observed."""
    changed_at: float | None = None
    """When the message last changed (kernel-timer backends only); None: already sent."""
    started: bool = False


class BmsSender:
    """Owns one ``send_periodic`` task per BMS frame id; data modified in place; a dead-man guard.

    Thread-safe: :meth:`start`, :meth:`update` and :meth:`confirm` never block (call them from
    the event loop); :meth:`stop` (briefly: it joins threads) and :meth:`wait_sent` block (run
    them in an executor). A stopped sender can be started again, on the same or another bus.

    The guard (DESIGN invariant 7): every :meth:`update` confirms the frames. When no
    confirmation came for ``guard_time`` seconds, a thread of the sender (not the event loop)
    replaces the payloads in place with :func:`~.sma_can.safe_bms_frames` of the last ones and
    calls ``on_guard_trip`` (in that thread). The next :meth:`update` brings the frames back.
    """

    def __init__(
        self,
        period: float = SEND_PERIOD,
        *,
        stagger: float = STAGGER,
        on_send_error: Callable[[Exception], None] | None = None,
        guard_time: float = DEFAULT_GUARD_TIME,
        on_guard_trip: Callable[[], None] | None = None,
        channel_key: ChannelKey | None = None,
    ) -> None:
        """``on_send_error`` is called in a sender thread for every failed send.

        ``channel_key`` names the bus for the inhibit time kept across senders (see
        :func:`last_send_free_at`); without one it is taken from the bus at :meth:`start`.
        """
        if not period >= MIN_PERIOD:
            raise ValueError(f"period must be at least {MIN_PERIOD} s")
        if not 0.0 <= stagger < MIN_PERIOD:
            raise ValueError(f"stagger must be below {MIN_PERIOD} s")
        self._period = period
        self._stagger = stagger
        self._on_send_error = on_send_error
        self._guard_time = _checked_guard_time(guard_time)
        self._on_guard_trip = on_guard_trip
        self._channel_key = channel_key
        self._changed = threading.Condition()
        self._slots: dict[int, _Slot] = {}
        self._halt = threading.Event()
        self._starter: threading.Thread | None = None
        self._guard: threading.Thread | None = None
        self._key: ChannelKey = ("", "")
        self._send_errors = 0
        # The dead-man guard. _wanted: the payloads last given (what goes out unless safe).
        self._wanted: dict[int, bytes] = {}
        self._confirmed_at = -math.inf
        self._safe = False
        self._tripped_for: float | None = None
        """The confirmation whose expiry was counted (a restart does not count it again)."""
        self._trip_notice = False
        self._guard_trips = 0

    @property
    def period(self) -> float:
        """Seconds between two frames of one id."""
        return self._period

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return bool(self._slots)

    @property
    def send_errors(self) -> int:
        """Failed sends since this sender was created."""
        return self._send_errors

    @property
    def frames(self) -> dict[int, bytes]:
        """The payload each task carries now (safe ones while tripped), by id; empty if stopped."""
        with self._changed:
            return {key: bytes(slot.message.data) for key, slot in self._slots.items()}

    @property
    def guard_time(self) -> float:
        """Seconds without a confirmation before the guard switches to safe frames."""
        return self._guard_time

    @guard_time.setter
    def guard_time(self, seconds: float) -> None:
        """Takes effect at once: a shorter time may trip the guard right away."""
        checked = _checked_guard_time(seconds)
        with self._changed:
            self._guard_time = checked
            self._changed.notify_all()

    @property
    def guard_tripped(self) -> bool:
        """The frames are the safe ones because the controller stopped confirming them."""
        return self._safe

    @property
    def guard_trips(self) -> int:
        """How often the guard switched to safe frames since this sender was created."""
        return self._guard_trips

    def start(
        self, bus: can.BusABC, frames: Mapping[int, bytes], *, confirmed_at: float | None = None
    ) -> None:
        """Create one task per id and start them ``stagger`` apart in a short-lived thread.

        Does not block. The first frame of an id goes out no sooner than ``MIN_PERIOD`` (plus
        ``INHIBIT_MARGIN``) after the last one any sender of this process sent on the same bus.
        ``confirmed_at`` (``time.perf_counter()``) says when the controller last confirmed
        ``frames``, None meaning now: frames remembered across a reconnect start as safe frames
        when their confirmation is older than ``guard_time``.
        """
        _check_payloads(frames)
        if not frames:
            raise ValueError("no BMS frames to send")
        with self._changed:
            if self._slots:
                raise RuntimeError("BMS frames are already being sent")
            now = time.perf_counter()
            key = self._channel_key if self._channel_key is not None else _bus_key(bus)
            halt = threading.Event()
            self._wanted = {arbitration_id: bytes(data) for arbitration_id, data in frames.items()}
            self._confirmed_at = now if confirmed_at is None else min(confirmed_at, now)
            self._safe = False
            if now - self._confirmed_at >= self._guard_time:
                self._trip_locked()
            slots: dict[int, _Slot] = {}
            for arbitration_id, data in self._payloads_locked().items():
                message = _bms_message(arbitration_id, data)
                task = bus.send_periodic(message, self._period, autostart=False)
                pacer: _Pacer | None = None
                if isinstance(task, ThreadBasedCyclicSendTask):
                    pacer = _Pacer(bus, self._period, self._changed, halt, key)
                    task.modifier_callback = pacer.before_send
                    task.on_error = functools.partial(self._on_task_error, halt)
                    # The task only calls bus.send(); the pacer forwards it and notes the end.
                    task.bus = cast("can.BusABC", pacer)
                    # Its thread then never sleeps by itself: the pacer keeps the schedule.
                    task.period_ns = 0
                slots[arbitration_id] = _Slot(task, message, pacer)
            self._slots = slots
            self._halt = halt
            self._key = key
            starter = threading.Thread(
                target=self._start_tasks,
                args=(list(slots.values()), now, halt, key),
                name="bms-sender-start",
                daemon=True,
            )
            guard = threading.Thread(
                target=self._guard_loop, args=(halt,), name="bms-sender-guard", daemon=True
            )
            self._starter = starter
            self._guard = guard
            starter.start()
            guard.start()

    def _start_tasks(
        self, slots: list[_Slot], not_before: float, halt: threading.Event, key: ChannelKey
    ) -> None:
        for index, slot in enumerate(slots):
            arbitration_id = slot.message.arbitration_id
            start_at = max(
                not_before + index * self._stagger, _LAST_SENDS.free_at(key, arbitration_id)
            )
            halt.wait(max(start_at - time.perf_counter(), 0.0))
            failure: Exception | None = None
            with self._changed:
                if halt.is_set():
                    return
                task = slot.task
                assert isinstance(task, RestartableCyclicTaskABC)
                try:
                    task.start()
                except Exception as err:  # e.g. a BCM TX_SETUP refused by a vanished interface
                    failure = err
                else:
                    slot.started = True
                    slot.changed_at = None  # a start sends the present payload at once
                    if slot.pacer is None:  # the kernel sent it; nobody tells when exactly
                        _LAST_SENDS.record(key, arbitration_id, time.perf_counter())
            if failure is not None:
                # Outside the lock: the error hook may take its owner's lock.
                self._record_error(failure)

    def update(self, frames: Mapping[int, bytes]) -> None:
        """Give the running tasks new payloads (any subset of the started ids); confirms them.

        Unchanged payloads are skipped. Changed ones replace the old data in place: no frame is
        sent early and the timers keep their phase (see the module docstring for socketcan). An
        update after the guard tripped brings back the last payloads given for every id.
        """
        _check_payloads(frames)
        with self._changed:
            if not self._slots:
                raise RuntimeError("BMS frames are not being sent")
            unknown = frames.keys() - self._slots.keys()
            if unknown:
                raise ValueError(f"ids {sorted(unknown)} were not started")
            for arbitration_id, data in frames.items():
                self._wanted[arbitration_id] = bytes(data)
            self._confirmed_at = time.perf_counter()
            self._safe = False
            self._changed.notify_all()  # the guard starts counting again
            self._apply_locked(self._wanted)

    def confirm(self) -> bool:
        """The controller vouches for the present frames: the guard starts counting again.

        False (and nothing changes) while stopped or once the guard has tripped: only fresh
        frames (:meth:`update`) end the safe state, never a bare confirmation of old ones.
        """
        with self._changed:
            if not self._slots or self._safe:
                return False
            self._confirmed_at = time.perf_counter()
            self._changed.notify_all()
            return True

    def _payloads_locked(self) -> dict[int, bytes]:
        return safe_bms_frames(self._wanted) if self._safe else dict(self._wanted)

    def _apply_locked(self, frames: Mapping[int, bytes]) -> None:
        """Put ``frames`` into the tasks in place; raises what the backend raises."""
        for arbitration_id, data in frames.items():
            slot = self._slots[arbitration_id]
            if slot.message.data == data:
                continue
            message = _bms_message(arbitration_id, data)
            task = slot.task
            assert isinstance(task, ModifiableCyclicTaskABC)
            if slot.started:
                task.modify_data(message)
            else:
                # Not handed to the backend yet: the starter thread will start it with this.
                task.messages = (message,)
            slot.message = message
            slot.changed_at = time.perf_counter()

    def _trip_locked(self) -> None:
        """Enter the safe state; count it once per confirmation that ran out."""
        self._safe = True
        if self._tripped_for != self._confirmed_at:
            self._tripped_for = self._confirmed_at
            self._guard_trips += 1
            self._trip_notice = True

    def _guard_loop(self, halt: threading.Event) -> None:
        """The dead-man guard of one run: waits for the deadline, then goes safe by itself."""
        while True:
            failure: Exception | None = None
            with self._changed:
                while not halt.is_set() and not self._trip_notice:
                    if self._safe:
                        self._changed.wait()  # until fresh frames or a stop
                        continue
                    remaining = self._confirmed_at + self._guard_time - time.perf_counter()
                    if remaining > 0:
                        self._changed.wait(remaining)
                        continue
                    self._trip_locked()
                    try:
                        self._apply_locked(self._payloads_locked())
                    except Exception as err:  # a BCM TX_SETUP refused: the link reopens
                        failure = err
                    break
                if halt.is_set():
                    return
                notice, self._trip_notice = self._trip_notice, False
            # Outside the lock: both hooks may take their owner's lock.
            if failure is not None:
                self._record_error(failure)
            if notice:
                _LOGGER.warning(
                    "BMS frames not confirmed for %.1f s: sending safe frames (CCL 0 A)",
                    self._guard_time,
                )
                if self._on_guard_trip is not None:
                    try:
                        self._on_guard_trip()
                    except Exception:  # the guard must outlive a broken hook
                        _LOGGER.exception("guard trip hook failed")

    def wait_sent(self, timeout: float) -> bool:
        """Block until every task has sent its present payload at least once; False on timeout.

        For a backend whose sends cannot be observed (socketcan BCM) a change counts as sent once
        one period (plus a small margin) has passed. False as well when the sender is stopped.
        """
        deadline = time.perf_counter() + timeout
        with self._changed:
            while True:
                if not self._slots:
                    return False
                now = time.perf_counter()
                if all(self._slot_sent(slot, now) for slot in self._slots.values()):
                    return True
                if now >= deadline:
                    return False
                self._changed.wait(min(deadline - now, 0.05))

    def _slot_sent(self, slot: _Slot, now: float) -> bool:
        if not slot.started:
            return False
        if slot.pacer is not None:
            return slot.pacer.sent is slot.message
        # The kernel sends at once on start (TX_ANNOUNCE) and then every period.
        return slot.changed_at is None or now - slot.changed_at >= (
            self._period + KERNEL_TIMER_MARGIN
        )

    def stop(self) -> None:
        """Stop every task and join every thread (blocking, but quick). Idempotent.

        A frame whose send is under way when the stop begins still completes; none starts after.
        The guard state (the last confirmation) is kept for the next :meth:`start`.
        """
        with self._changed:
            slots = list(self._slots.values())
            if not slots:
                return
            # Under the lock, so the starter thread cannot start a task in between. The tasks
            # are marked stopped before their pacers are woken, so no thread loops once more.
            self._slots = {}
            starter, guard = self._starter, self._guard
            for slot in slots:
                try:
                    slot.task.stop()
                except Exception as err:  # a task never started, or a BCM socket already gone
                    _LOGGER.debug(
                        "stopping the periodic task %#x: %s", slot.message.arbitration_id, err
                    )
            stopped = time.perf_counter()
            for slot in slots:
                if slot.started and slot.pacer is None:
                    # The kernel may have sent it up to the moment it was deleted.
                    _LAST_SENDS.record(self._key, slot.message.arbitration_id, stopped)
            self._halt.set()
            self._changed.notify_all()
        assert starter is not None  # set together with the slots
        assert guard is not None
        starter.join()
        guard.join()
        for slot in slots:
            # python-can's thread-based task does not join its thread on stop(). Its pacer
            # wakes on the halt event, so the thread leaves at once unless a send hangs.
            thread = getattr(slot.task, "thread", None)
            if isinstance(thread, threading.Thread):
                thread.join(self._period + JOIN_MARGIN)
                if thread.is_alive():  # pragma: no cover - a send blocked in the driver
                    _LOGGER.warning("BMS frame thread %s did not stop", thread.name)

    def _on_task_error(self, halt: threading.Event, error: Exception) -> bool:
        """``on_error`` of a thread-based task: keep sending unless the sender is stopping."""
        self._record_error(error)
        return not halt.is_set()

    def _record_error(self, error: Exception) -> None:
        with self._changed:
            self._send_errors += 1
        if self._on_send_error is not None:
            self._on_send_error(error)


def _checked_guard_time(seconds: float) -> float:
    """The guard must trip before the SI's own 60 s supervision gives up on the BMS."""
    if not 0.0 < seconds < SOC_TIMEOUT:
        raise ValueError(f"guard_time must be above 0 and below {SOC_TIMEOUT:g} s")
    return float(seconds)


def _check_payloads(frames: Mapping[int, bytes]) -> None:
    for arbitration_id, data in frames.items():
        if not 0 <= arbitration_id <= _STANDARD_ID_MASK:
            raise ValueError(f"{arbitration_id:#x} is not an 11-bit CAN id")
        if len(data) > _MAX_DATA:
            raise ValueError(f"frame {arbitration_id:#05x}: {len(data)} bytes, at most 8")


# --- the link ----------------------------------------------------------------------------------


def _shutdown_bus(bus: can.BusABC) -> None:
    """Shut a bus down whatever state it is in; always close an slcan serial port."""
    try:
        bus.shutdown()
    except Exception as err:  # slcan after an unplug: its "C" write fails before the close
        _LOGGER.debug("shutting down %s: %s", bus, err)
    port = getattr(bus, "serialPortOrig", None)
    if port is not None:
        with contextlib.suppress(Exception):
            port.close()


def _is_line_noise(error: Exception) -> bool:
    """A malformed line from a serial adapter, not a dead one.

    python-can's slcan parser raises IndexError/ValueError on a truncated or non-hex line (the
    line is consumed), and CanOperationError caused by UnicodeDecodeError on bytes that are not
    text (they stay in its buffer).
    """
    if isinstance(error, IndexError | ValueError):
        return True
    return isinstance(error, can.CanOperationError) and isinstance(
        error.__cause__, UnicodeDecodeError
    )


def _describe(error: BaseException) -> str:
    cause = error.__cause__
    text = str(error) or type(error).__name__
    if cause is not None and str(cause):
        text = f"{text}: {cause}"
    return text


def _ignore_frame(_arbitration_id: int, _data: bytes, _timestamp: float) -> None:
    """Frame callback after close."""


def _ignore_state(_connected: bool, _reason: str | None) -> None:
    """State callback after close."""


def _ignore_guard(_tripped: bool) -> None:
    """Guard callback when none was given, and after close."""


class CanLink:
    """A CAN bus that reopens itself: receive thread -> asyncio, BMS sender, health.

    ``on_frame(arbitration_id, data, timestamp)`` gets every Sunny Island broadcast frame (ids in
    ``SI_FRAME_IDS``, 11-bit data frames) on the event loop; ``timestamp`` is the bus's receive
    time (epoch seconds). ``on_state(False, reason)`` is called once when the bus fails and
    ``on_state(True, None)`` once when frames flow again after the reopen. After :meth:`start`
    the link counts as connected.

    Every :meth:`send_bms` confirms the frames to the dead-man guard: after ``guard_time``
    seconds without one the frames turn safe by themselves (see :class:`BmsSender`), and
    ``on_guard(True)`` is called on the event loop; ``on_guard(False)`` once fresh frames have
    replaced them. :attr:`guard_tripped` and :attr:`guard_trips` tell the same.
    """

    def __init__(
        self,
        config: CanConfig,
        *,
        loop: asyncio.AbstractEventLoop,
        on_frame: Callable[[int, bytes, float], None],
        on_state: Callable[[bool, str | None], None],
        period: float = SEND_PERIOD,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        open_bus: Callable[[CanConfig], can.BusABC] | None = None,
        guard_time: float = DEFAULT_GUARD_TIME,
        on_guard: Callable[[bool], None] | None = None,
    ) -> None:
        """Prepare the link; nothing is opened before :meth:`start`."""
        if not 0 < min_backoff <= max_backoff:
            raise ValueError("backoff must satisfy 0 < min_backoff <= max_backoff")
        self._config = config
        self._loop = loop
        self._on_frame = on_frame
        self._on_state = on_state
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._open_bus: Callable[[CanConfig], can.BusABC] = (
            open_bus if open_bus is not None else CanConfig.open
        )
        self._sender = BmsSender(
            period,
            on_send_error=self._on_send_error,
            guard_time=guard_time,
            on_guard_trip=self._on_guard_trip,
            channel_key=(config.interface, config.channel),
        )
        self._on_guard = on_guard if on_guard is not None else _ignore_guard
        self._guard_reported = False
        self._lock = threading.Lock()
        self._bus: can.BusABC | None = None
        self._frames: dict[int, bytes] = {}
        self._confirmed_at: float | None = None
        self._sender_active = False
        self._fault: str | None = None
        self._connection_send_errors = 0
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._close_lock = asyncio.Lock()
        self._closing = False
        self._closed = False
        self._connected = False
        self._awaiting_rx = False
        self._rx_frames = 0
        self._error_frames = 0
        self._line_errors = 0
        self._reconnects = 0
        self._last_rx: float | None = None

    # --- state seen from outside --------------------------------------------------------------

    @property
    def config(self) -> CanConfig:
        """The adapter this link opens."""
        return self._config

    @property
    def connected(self) -> bool:
        """The bus is open and working (False from a failure until frames flow again)."""
        return self._connected

    @property
    def rx_frames(self) -> int:
        """Data frames received (any id)."""
        return self._rx_frames

    @property
    def error_frames(self) -> int:
        """CAN error frames received (socketcan, virtual; slcan adapters do not pass them)."""
        return self._error_frames

    @property
    def line_errors(self) -> int:
        """Malformed lines from a serial adapter that were skipped."""
        return self._line_errors

    @property
    def send_errors(self) -> int:
        """BMS frames whose send failed."""
        return self._sender.send_errors

    @property
    def reconnects(self) -> int:
        """How often the bus was reopened after a failure."""
        return self._reconnects

    @property
    def last_rx(self) -> float | None:
        """``time.monotonic()`` of the last received data frame, None before the first."""
        return self._last_rx

    @property
    def bms_running(self) -> bool:
        """The periodic BMS tasks exist (False while the bus is down and after stop)."""
        return self._sender.running

    @property
    def bms_frames(self) -> dict[int, bytes]:
        """The payloads the periodic tasks carry now (safe ones while the guard has tripped)."""
        return self._sender.frames

    @property
    def guard_time(self) -> float:
        """Seconds without :meth:`send_bms` after which the frames turn safe by themselves."""
        return self._sender.guard_time

    @guard_time.setter
    def guard_time(self, seconds: float) -> None:
        """Change it live (0 < seconds < 60); raises ValueError outside that range."""
        self._sender.guard_time = seconds

    @property
    def guard_tripped(self) -> bool:
        """The frames are the safe ones because :meth:`send_bms` stopped coming."""
        return self._sender.guard_tripped

    @property
    def guard_trips(self) -> int:
        """How often the guard switched to safe frames since this link was created."""
        return self._sender.guard_trips

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the bus in an executor and start the reader; raise :class:`CanLinkError`."""
        if self._thread is not None or self._closing:
            raise RuntimeError("CAN link already started")
        try:
            bus = await self._loop.run_in_executor(None, self._open_bus, self._config)
        except CanLinkError:
            raise
        except Exception as err:
            raise CanLinkError(
                f"cannot open {self._config.interface} channel {self._config.channel!r}: {err}"
            ) from err
        with self._lock:
            self._bus = bus
            self._connected = True
            if self._frames:
                self._start_sender_locked(bus)
        thread = threading.Thread(
            target=self._run,
            name=f"can-link {self._config.interface}:{self._config.channel}",
            daemon=True,
        )
        self._thread = thread
        thread.start()

    def send_bms(self, frames: Mapping[int, bytes]) -> None:
        """Send these BMS payloads every period from now on (non-blocking); confirms them.

        The first call starts the periodic tasks, later calls update them in place (the set of
        ids is fixed by the first call; later calls may pass any subset). The latest payloads are
        remembered and sent again after a reconnect (as safe frames, should the reconnect come
        later than ``guard_time`` after this call). Every call is a confirmation for the
        dead-man guard and ends its safe state. Ignored once closing has begun.
        """
        _check_payloads(frames)
        with self._lock:
            if self._closing:
                return
            unknown = frames.keys() - self._frames.keys()
            if self._frames and unknown:
                raise ValueError(f"ids {sorted(unknown)} were not sent before")
            self._frames.update(frames)
            self._confirmed_at = time.perf_counter()
            if self._sender_active:
                try:
                    self._sender.update(frames)
                except (can.CanError, OSError) as err:
                    self._fault = f"cannot update the BMS frames: {_describe(err)}"
            elif self._bus is not None:
                self._start_sender_locked(self._bus)
        if self._guard_reported:
            self._call(self._sync_guard)

    def confirm(self) -> bool:
        """Confirm the frames already being sent without new payloads (see :meth:`send_bms`).

        False while the frames are not running or the guard has tripped: only :meth:`send_bms`
        with fresh frames ends the safe state.
        """
        with self._lock:
            if self._closing or not self._sender.confirm():
                return False
            self._confirmed_at = time.perf_counter()
            return True

    async def send_final_and_stop(
        self, frames: Mapping[int, bytes] | None = None, *, safe: bool = True
    ) -> None:
        """End with safe frames on the wire, then stop the frames, the reader and the bus.

        ``frames`` (optional) update the last state first. With ``safe`` (the default, DESIGN
        invariant 6) the last state is then made safe with :func:`~.sma_can.safe_bms_frames`:
        CCL to 1 A (only when it is above that on the wire), confirmed on the wire, then 0 A
        with SOC held and the safe warning, confirmed on the wire too; so the SI, which keeps
        the last accepted values, is left not charging. Without ``safe``, ``frames`` go out
        unchanged as the last state. Each step waits at most one period plus
        ``FINAL_WAIT_MARGIN``, so a stop takes a few seconds at most, even with a failing
        adapter. Then the tasks stop, every thread is joined and the bus shut down. All blocking
        work runs in executors. Idempotent; concurrent calls wait for the first.
        """
        if frames is not None:
            _check_payloads(frames)
        async with self._close_lock:
            if self._closed:
                return
            with self._lock:
                self._closing = True
                if frames is not None:
                    self._frames.update(frames)
                last = dict(self._frames)
                steps = self._final_steps(last, frames, safe) if self._sender_active else []
            for step in steps:
                await self._send_final_step(step)
            with self._lock:
                stop_sender, self._sender_active = self._sender_active, False
            if stop_sender:
                await self._loop.run_in_executor(None, self._sender.stop)
            self._halt.set()
            thread, self._thread = self._thread, None
            if thread is not None:
                await self._loop.run_in_executor(None, thread.join, THREAD_JOIN_TIMEOUT)
            with self._lock:
                bus, self._bus = self._bus, None
            if bus is not None:
                await self._loop.run_in_executor(None, _shutdown_bus, bus)
            self._connected = False
            self._on_frame = _ignore_frame
            self._on_state = _ignore_state
            self._on_guard = _ignore_guard
            self._closed = True

    async def close(self) -> None:
        """Stop at once, without a final state: for probes and links that never sent frames.

        The SI keeps the last frames' values until its own 60 s supervision; an entry that
        unloads uses :meth:`send_final_and_stop`, which leaves safe values behind.
        """
        await self.send_final_and_stop(None, safe=False)

    def _final_steps(
        self, last: dict[int, bytes], frames: Mapping[int, bytes] | None, safe: bool
    ) -> list[dict[int, bytes]]:
        """The payloads a stop sends, in order (under self._lock)."""
        if not safe:
            return [] if frames is None else [dict(frames)]
        if not last:
            return []
        steps: list[dict[int, bytes]] = []
        # The 1 A step must never raise the limit: not above the last state, nor above what is
        # on the wire (0 A already when the guard has tripped).
        present = [
            ccl
            for ccl in (charge_current_limit_of(last), charge_current_limit_of(self._sender.frames))
            if ccl is not None
        ]
        if present and min(present) > STEP_CURRENT:
            steps.append(safe_bms_frames(last, charge_current_limit=STEP_CURRENT))
        steps.append(safe_bms_frames(last))
        return steps

    async def _send_final_step(self, frames: dict[int, bytes]) -> None:
        """Put one step of the stop on the wire and wait until every task has sent it."""
        with self._lock:
            if not self._sender_active:
                return
            try:
                self._sender.update(frames)
            except (can.CanError, OSError, ValueError) as err:
                _LOGGER.warning("final BMS frames not accepted: %s", err)
                return
        sender = self._sender
        timeout = sender.period + FINAL_WAIT_MARGIN
        if not await self._loop.run_in_executor(None, sender.wait_sent, timeout):
            _LOGGER.warning("final BMS frames may not have been sent")

    # --- BMS sender (under self._lock) --------------------------------------------------------

    def _start_sender_locked(self, bus: can.BusABC) -> None:
        try:
            self._sender.start(bus, self._frames, confirmed_at=self._confirmed_at)
        except (can.CanError, OSError) as err:
            self._fault = f"cannot start the BMS frames: {_describe(err)}"
            return
        self._sender_active = True

    def _on_guard_trip(self) -> None:
        """Runs in the guard thread: tell the owner on the event loop."""
        self._call(self._sync_guard)

    def _on_send_error(self, error: Exception) -> None:
        """Runs in a sender thread: too many failed sends make the reader reopen the bus."""
        with self._lock:
            self._connection_send_errors += 1
            if self._connection_send_errors >= SEND_ERRORS_BEFORE_REOPEN and self._fault is None:
                self._fault = f"sending failed: {_describe(error)}"

    # --- reader thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._halt.is_set():
            with self._lock:
                bus = self._bus
            if bus is None:
                bus = self._reopen()
                if bus is None or not self._attach(bus):
                    return
            try:
                self._read(bus)
            except _LinkDownError as down:
                self._drop(bus, str(down))

    def _read(self, bus: can.BusABC) -> None:
        """Receive until asked to stop; raise :class:`_LinkDownError` when the bus fails."""
        noise = 0
        while not self._halt.is_set():
            fault = self._fault
            if fault is not None:
                raise _LinkDownError(fault)
            try:
                message = bus.recv(RECV_TIMEOUT)
            except Exception as err:
                if not _is_line_noise(err):
                    raise _LinkDownError(_describe(err)) from err
                noise = self._noise(noise, err)
                if isinstance(err.__cause__, UnicodeDecodeError):
                    # slcan keeps undecodable bytes in its buffer until it is flushed. Should
                    # the port be gone, the next recv() reports it.
                    with contextlib.suppress(Exception):
                        cast("Any", bus).flush()
                continue
            noise = 0
            if message is None:
                continue
            batch: list[tuple[int, bytes, float]] = []
            self._handle(message, batch)
            try:
                while len(batch) < MAX_BATCH:
                    more = bus.recv(0)
                    if more is None:
                        break
                    self._handle(more, batch)
            except Exception as err:
                if batch:
                    self._call(self._deliver_batch, batch)
                    batch = []
                if not _is_line_noise(err):
                    raise _LinkDownError(_describe(err)) from err
                noise = self._noise(noise, err)
            if batch:
                self._call(self._deliver_batch, batch)

    def _noise(self, count: int, error: Exception) -> int:
        self._line_errors += 1
        count += 1
        if count > MAX_NOISE_IN_A_ROW:
            raise _LinkDownError(f"line noise: {_describe(error)}")
        _LOGGER.debug("skipped a malformed line: %s", error)
        return count

    def _handle(self, message: can.Message, batch: list[tuple[int, bytes, float]]) -> None:
        if message.is_error_frame:
            self._error_frames += 1
            return
        self._rx_frames += 1
        self._last_rx = time.monotonic()
        if self._awaiting_rx:
            self._awaiting_rx = False
            self._set_state(True, None)
        arbitration_id = message.arbitration_id
        if message.is_extended_id or message.is_remote_frame or arbitration_id not in _SI_IDS:
            return
        batch.append((arbitration_id, bytes(message.data), message.timestamp))

    def _drop(self, bus: can.BusABC, reason: str) -> None:
        """The bus failed: report it, stop the frames and close the bus (reader thread)."""
        with self._lock:
            self._bus = None
            stop_sender, self._sender_active = self._sender_active, False
        self._awaiting_rx = False
        _LOGGER.warning(
            "CAN link %s:%s lost: %s", self._config.interface, self._config.channel, reason
        )
        self._set_state(False, reason)
        if stop_sender:
            self._sender.stop()
        _shutdown_bus(bus)

    def _reopen(self) -> can.BusABC | None:
        """Open the bus again with exponential back-off; None when asked to stop."""
        delay = self._min_backoff
        while not self._halt.wait(delay):
            try:
                return self._open_bus(self._config)
            except Exception as err:
                _LOGGER.debug("reopening %s failed: %s", self._config.channel, err)
            delay = min(delay * 2, self._max_backoff)
        return None

    def _attach(self, bus: can.BusABC) -> bool:
        """Use a reopened bus and restart the BMS frames on it; False when closing."""
        with self._lock:
            if not self._halt.is_set():
                self._bus = bus
                self._fault = None
                self._connection_send_errors = 0
                self._awaiting_rx = True
                self._reconnects += 1
                if self._frames and not self._closing:
                    self._start_sender_locked(bus)
                    self._call(self._sync_guard)
                return True
        _shutdown_bus(bus)
        return False

    def _set_state(self, connected: bool, reason: str | None) -> None:
        if self._connected == connected:
            return
        self._connected = connected
        self._call(self._notify_state, connected, reason)

    # --- hand-over to the event loop ----------------------------------------------------------

    def _call(self, callback: Callable[..., None], *args: object) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # pragma: no cover - the loop was closed without closing the link
            self._halt.set()

    # These run on the loop and look the callback up only then: after close() the callbacks are
    # no-ops, so nothing queued before the close reaches the owner afterwards.

    def _deliver_batch(self, batch: list[tuple[int, bytes, float]]) -> None:
        for arbitration_id, data, timestamp in batch:
            self._on_frame(arbitration_id, data, timestamp)

    def _notify_state(self, connected: bool, reason: str | None) -> None:
        self._on_state(connected, reason)

    def _sync_guard(self) -> None:
        """Report a change of the guard's state; reads it only now, on the loop."""
        tripped = self._sender.guard_tripped
        if tripped != self._guard_reported:
            self._guard_reported = tripped
            self._on_guard(tripped)


__all__ = [
    "DEFAULT_GUARD_TIME",
    "INHIBIT_MARGIN",
    "INTERFACES",
    "SI_FILTERS",
    "BmsSender",
    "CanConfig",
    "CanInterface",
    "CanLink",
    "CanLinkError",
    "ChannelKey",
    "last_send_free_at",
]
