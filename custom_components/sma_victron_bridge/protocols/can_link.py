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
  millisecond; a restart waits until ``MIN_PERIOD`` has passed since the previous run stopped.
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
from .sma_can import MIN_PERIOD, SEND_PERIOD, SI_FRAME_IDS

_LOGGER = logging.getLogger(__name__)

type CanInterface = Literal["socketcan", "slcan", "gs_usb", "virtual"]

INTERFACES: Final[tuple[CanInterface, ...]] = ("socketcan", "slcan", "gs_usb", "virtual")
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
    slcan the adapter's serial port, gs_usb the device index (``0``) or ``bus:address``,
    virtual any channel name (tests and the simulated device).
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
        if self.interface == "gs_usb":
            _gs_usb_address(self.channel)

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
        elif self.interface == "gs_usb":
            kwargs["bitrate"] = self.bitrate
            kwargs.update(_gs_usb_address(self.channel))
        else:
            kwargs["receive_own_messages"] = False
        return kwargs

    def open(self) -> can.BusABC:
        """Open the bus (blocking: slcan settles, gs_usb scans USB); raise :class:`CanLinkError`."""
        try:
            return can.Bus(**self.bus_kwargs())
        except Exception as err:
            raise CanLinkError(
                f"cannot open {self.interface} channel {self.channel!r}: {err}"
            ) from err


def _gs_usb_address(channel: str) -> dict[str, int]:
    """``"0"`` -> device index 0; ``"1:7"`` -> USB bus 1, address 7 (python-can wants ints)."""
    text = channel.strip()
    bus, sep, address = text.partition(":")
    if sep and bus.isdigit() and address.isdigit():
        return {"bus": int(bus), "address": int(address)}
    if not sep and text.isdigit():
        return {"index": int(text)}
    raise ValueError(f"gs_usb channel must be a device index or bus:address, not {channel!r}")


# --- periodic BMS frames -----------------------------------------------------------------------


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

    __slots__ = ("_bus", "_changed", "_due", "_halt", "_period", "_slot", "sent", "sent_at")

    def __init__(
        self,
        bus: can.BusABC,
        period: float,
        changed: threading.Condition,
        halt: threading.Event,
    ) -> None:
        self._bus = bus
        self._period = period
        self._changed = changed
        self._halt = halt
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
    """Owns one ``send_periodic`` task per BMS frame id; data modified in place.

    Thread-safe: :meth:`start` and :meth:`update` never block (call them from the event loop);
    :meth:`stop` (briefly: it joins threads) and :meth:`wait_sent` block (run them in an
    executor). A stopped sender can be
    started again, on the same or another bus.
    """

    def __init__(
        self,
        period: float = SEND_PERIOD,
        *,
        stagger: float = STAGGER,
        on_send_error: Callable[[Exception], None] | None = None,
    ) -> None:
        """``on_send_error`` is called in a sender thread for every failed send."""
        if not period >= MIN_PERIOD:
            raise ValueError(f"period must be at least {MIN_PERIOD} s")
        if not 0.0 <= stagger < MIN_PERIOD:
            raise ValueError(f"stagger must be below {MIN_PERIOD} s")
        self._period = period
        self._stagger = stagger
        self._on_send_error = on_send_error
        self._changed = threading.Condition()
        self._slots: dict[int, _Slot] = {}
        self._halt = threading.Event()
        self._starter: threading.Thread | None = None
        self._stopped_at: float | None = None
        self._send_errors = 0

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
        """The payload each task carries now, by id (empty while stopped)."""
        with self._changed:
            return {key: bytes(slot.message.data) for key, slot in self._slots.items()}

    def start(self, bus: can.BusABC, frames: Mapping[int, bytes]) -> None:
        """Create one task per id and start them ``stagger`` apart in a short-lived thread.

        Does not block. The first frame of an id goes out no sooner than ``MIN_PERIOD`` after the
        previous run was stopped.
        """
        _check_payloads(frames)
        if not frames:
            raise ValueError("no BMS frames to send")
        with self._changed:
            if self._slots:
                raise RuntimeError("BMS frames are already being sent")
            now = time.perf_counter()
            halt = threading.Event()
            slots: dict[int, _Slot] = {}
            for arbitration_id, data in frames.items():
                message = _bms_message(arbitration_id, data)
                task = bus.send_periodic(message, self._period, autostart=False)
                pacer: _Pacer | None = None
                if isinstance(task, ThreadBasedCyclicSendTask):
                    pacer = _Pacer(bus, self._period, self._changed, halt)
                    task.modifier_callback = pacer.before_send
                    task.on_error = functools.partial(self._on_task_error, halt)
                    # The task only calls bus.send(); the pacer forwards it and notes the end.
                    task.bus = cast("can.BusABC", pacer)
                    # Its thread then never sleeps by itself: the pacer keeps the schedule.
                    task.period_ns = 0
                slots[arbitration_id] = _Slot(task, message, pacer)
            not_before = now
            if self._stopped_at is not None:
                not_before = max(now, self._stopped_at + MIN_PERIOD)
            self._slots = slots
            self._halt = halt
            starter = threading.Thread(
                target=self._start_tasks,
                args=(list(slots.values()), not_before, halt),
                name="bms-sender-start",
                daemon=True,
            )
            self._starter = starter
            starter.start()

    def _start_tasks(self, slots: list[_Slot], not_before: float, halt: threading.Event) -> None:
        for index, slot in enumerate(slots):
            halt.wait(max(not_before + index * self._stagger - time.perf_counter(), 0.0))
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
            if failure is not None:
                # Outside the lock: the error hook may take its owner's lock.
                self._record_error(failure)

    def update(self, frames: Mapping[int, bytes]) -> None:
        """Give the running tasks new payloads (any subset of the started ids).

        Unchanged payloads are skipped. Changed ones replace the old data in place: no frame is
        sent early and the timers keep their phase (see the module docstring for socketcan).
        """
        _check_payloads(frames)
        with self._changed:
            if not self._slots:
                raise RuntimeError("BMS frames are not being sent")
            unknown = frames.keys() - self._slots.keys()
            if unknown:
                raise ValueError(f"ids {sorted(unknown)} were not started")
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
        """
        with self._changed:
            slots = list(self._slots.values())
            if not slots:
                return
            # Under the lock, so the starter thread cannot start a task in between. The tasks
            # are marked stopped before their pacers are woken, so no thread loops once more.
            self._slots = {}
            starter = self._starter
            for slot in slots:
                try:
                    slot.task.stop()
                except Exception as err:  # a task never started, or a BCM socket already gone
                    _LOGGER.debug(
                        "stopping the periodic task %#x: %s", slot.message.arbitration_id, err
                    )
            self._halt.set()
            self._changed.notify_all()
        assert starter is not None  # set together with the slots
        starter.join()
        for slot in slots:
            # python-can's thread-based task does not join its thread on stop(). Its pacer
            # wakes on the halt event, so the thread leaves at once unless a send hangs.
            thread = getattr(slot.task, "thread", None)
            if isinstance(thread, threading.Thread):
                thread.join(self._period + JOIN_MARGIN)
                if thread.is_alive():  # pragma: no cover - a send blocked in the driver
                    _LOGGER.warning("BMS frame thread %s did not stop", thread.name)
        self._stopped_at = time.perf_counter()

    def _on_task_error(self, halt: threading.Event, error: Exception) -> bool:
        """``on_error`` of a thread-based task: keep sending unless the sender is stopping."""
        self._record_error(error)
        return not halt.is_set()

    def _record_error(self, error: Exception) -> None:
        with self._changed:
            self._send_errors += 1
        if self._on_send_error is not None:
            self._on_send_error(error)


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


class CanLink:
    """A CAN bus that reopens itself: receive thread -> asyncio, BMS sender, health.

    ``on_frame(arbitration_id, data, timestamp)`` gets every Sunny Island broadcast frame (ids in
    ``SI_FRAME_IDS``, 11-bit data frames) on the event loop; ``timestamp`` is the bus's receive
    time (epoch seconds). ``on_state(False, reason)`` is called once when the bus fails and
    ``on_state(True, None)`` once when frames flow again after the reopen. After :meth:`start`
    the link counts as connected.
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
        self._sender = BmsSender(period, on_send_error=self._on_send_error)
        self._lock = threading.Lock()
        self._bus: can.BusABC | None = None
        self._frames: dict[int, bytes] = {}
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
        """Send these BMS payloads every period from now on (non-blocking).

        The first call starts the periodic tasks, later calls update them in place (the set of
        ids is fixed by the first call; later calls may pass any subset). The latest payloads are
        remembered and sent again after a reconnect. Ignored once closing has begun.
        """
        _check_payloads(frames)
        with self._lock:
            if self._closing:
                return
            unknown = frames.keys() - self._frames.keys()
            if self._frames and unknown:
                raise ValueError(f"ids {sorted(unknown)} were not sent before")
            self._frames.update(frames)
            if self._sender_active:
                try:
                    self._sender.update(frames)
                except (can.CanError, OSError) as err:
                    self._fault = f"cannot update the BMS frames: {_describe(err)}"
            elif self._bus is not None:
                self._start_sender_locked(self._bus)

    async def send_final_and_stop(self, frames: Mapping[int, bytes] | None = None) -> None:
        """Send ``frames`` as the last state, then stop the frames, the reader and the bus.

        Waits (about one period) until every task has sent its final payload, so the SI keeps
        the last state; then stops the tasks, joins every thread and shuts the bus down. All
        blocking work runs in executors. Idempotent; concurrent calls wait for the first.
        """
        if frames is not None:
            _check_payloads(frames)
        async with self._close_lock:
            if self._closed:
                return
            with self._lock:
                self._closing = True
                active = self._sender_active
                if frames is not None:
                    self._frames.update(frames)
                    if active:
                        try:
                            self._sender.update(frames)
                        except (can.CanError, OSError, ValueError) as err:
                            _LOGGER.warning("final BMS frames not accepted: %s", err)
                            active = False
            if active and frames is not None:
                sender = self._sender
                timeout = sender.period + FINAL_WAIT_MARGIN
                if not await self._loop.run_in_executor(None, sender.wait_sent, timeout):
                    _LOGGER.warning("final BMS frames may not have been sent")
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
            self._closed = True

    async def close(self) -> None:
        """Stop without waiting for a final state (same as :meth:`send_final_and_stop`)."""
        await self.send_final_and_stop(None)

    # --- BMS sender (under self._lock) --------------------------------------------------------

    def _start_sender_locked(self, bus: can.BusABC) -> None:
        try:
            self._sender.start(bus, self._frames)
        except (can.CanError, OSError) as err:
            self._fault = f"cannot start the BMS frames: {_describe(err)}"
            return
        self._sender_active = True

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


__all__ = [
    "INTERFACES",
    "SI_FILTERS",
    "BmsSender",
    "CanConfig",
    "CanInterface",
    "CanLink",
    "CanLinkError",
]
