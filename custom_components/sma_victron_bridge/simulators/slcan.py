"""A USB-CAN adapter in slcan firmware mode (CANable and alike), simulated on a pseudo-terminal.

It lets the real CAN driver path run without a kernel module or hardware: the code under test
opens :attr:`SlcanAdapter.port` with python-can's ``slcan`` interface exactly as it would open
``/dev/serial/by-id/usb-...CANable...``, and every frame it sends appears on a python-can
``virtual`` channel where a simulated device (e.g. the Sunny Island simulator) listens; what that
device sends comes back to the client as slcan text lines.

Wire behaviour follows the Lawicel ASCII protocol as the CANable firmware implements it: each
command ends with ``\\r``; the adapter answers ``\\r`` when it accepted a command and ``\\a`` (BEL)
when it refused one. ``O``/``L`` open the channel (normal / listen-only), ``C`` closes it; both
are idempotent like on a CANable, which matters because python-can sends ``C`` to a closed and
``O`` to an open channel while it starts up. ``Sn`` and ``sxxyy`` (SJA1000 BTR registers at the
8 MHz clock python-can assumes) set the bitrate and only work while the channel is closed.
``tIIIL...``, ``TIIIIIIIIL...``, ``rIIIL`` and ``RIIIIIIIIL`` transmit; ``V``/``N`` report
version and serial number, ``F`` the status flags, ``Z0``/``Z1`` switch the 4-digit millisecond
time stamp on received frames. CAN FD commands are refused: the simulated adapter is a classic
CAN device.

A bus with the wrong bitrate carries nothing, so the adapter delivers frames in neither direction
unless the channel's bitrate equals ``bitrate_required``. Bus-off is reported with the state line
the Linux slcan driver understands (``sb000256``: state bus-off, receive/transmit error counters),
and ``sa000000`` once the controller is error active again; python-can ignores those lines.

Threads: python-can's virtual bus has no file descriptor, so frames from it are received by a
:class:`can.Notifier` thread that hands them to the event loop; :meth:`SlcanAdapter.stop` joins it.
Pure module: python-can and asyncio only.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

import can

from .pty import PtySerialPort

OK: Final = b"\r"
"""Reply to an accepted command."""
ERROR: Final = b"\a"
"""Reply (BEL) to a refused or malformed command."""

BITRATE_CODES: Final[dict[int, int]] = {
    0: 10_000,
    1: 20_000,
    2: 50_000,
    3: 100_000,
    4: 125_000,
    5: 250_000,
    6: 500_000,
    7: 750_000,
    8: 1_000_000,
    9: 83_300,
}
"""``Sn`` digit -> bit/s, as the CANable firmware and python-can's ``slcan`` map them."""

POWER_ON_BITRATE: Final = 125_000
"""What the controller runs at before any ``S`` command (CANable 2.0 firmware default, ``S4``)."""

BTR_CLOCK: Final = 8_000_000
"""Clock the ``sxxyy`` BTR registers refer to (SJA1000 convention; python-can requires it)."""

HARDWARE_VERSION: Final = 10
SOFTWARE_VERSION: Final = 11
SERIAL_NUMBER: Final = "SV01"

STATUS_ERROR_WARNING: Final = 0x04
STATUS_ERROR_PASSIVE: Final = 0x20
STATUS_BUS_ERROR: Final = 0x80
"""``F`` status flag bits (Lawicel) that a bus-off controller reports."""

STATE_ACTIVE_LINE: Final = b"sa000000\r"
STATE_BUS_OFF_LINE: Final = b"sb000256\r"
"""Linux slcan state lines: ``s``, state letter, receive and transmit error counter (3 digits)."""

_MAX_LINE: Final = 64
"""Longer than any classic slcan command: a line growing past it is noise, not a command."""
_NOTIFIER_POLL: Final = 0.05
_STANDARD_ID_DIGITS: Final = 3
_EXTENDED_ID_DIGITS: Final = 8
_MAX_STANDARD_ID: Final = 0x7FF
_MAX_EXTENDED_ID: Final = 0x1FFF_FFFF
_MAX_DLC: Final = 8
_TIMESTAMP_WRAP_MS: Final = 60_000
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")

DEFAULT_GARBAGE: Final = b"#~?!*GARBAGE%$\r"
"""Printable noise ending in CR: starts with no frame letter, so a reader must just skip it."""


class _RefusedError(Exception):
    """A command the adapter answers with BEL."""


class SlcanAdapter:
    """Simulated slcan USB-CAN adapter: a pty on one side, a python-can virtual channel behind.

    Use it inside a running event loop: ``await start()``, hand :attr:`port` to the client,
    ``await stop()`` at the end (idempotent; joins the receive thread). The adapter cannot be
    started again after :meth:`stop`.
    """

    def __init__(
        self,
        virtual_channel: str,
        *,
        link_path: str | None = None,
        bitrate_required: int = 500_000,
    ) -> None:
        """Prepare the adapter; nothing is opened before :meth:`start`."""
        if bitrate_required <= 0:
            raise ValueError("bitrate_required must be positive")
        self._channel = virtual_channel
        self._bitrate_required = bitrate_required
        self._pty = PtySerialPort(link_path)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bus: can.BusABC | None = None
        self._notifier: can.Notifier | None = None
        self._running = False
        self._stopped = False
        self._line = bytearray()
        self._bus_off_timer: asyncio.TimerHandle | None = None
        self._bus_off = False

        # Firmware state, lost when the adapter loses power (unplug).
        self._open = False
        self._listen_only = False
        self._bitrate = POWER_ON_BITRATE
        self._timestamps = False

        self.frames_to_bus = 0
        """Frames the client sent that reached the virtual bus."""
        self.frames_from_bus = 0
        """Frames from the virtual bus written to the client as slcan lines."""
        self.errors = 0
        """Commands answered with BEL: malformed, unknown or refused in the present state."""
        self.dropped = 0
        """Frames lost on the way in either direction: channel closed, wrong bitrate, bus-off,
        unplugged, or a frame this classic adapter cannot carry (error frames, CAN FD)."""

    # --- life cycle ---------------------------------------------------------------------------

    @property
    def port(self) -> str:
        """Path the client opens (a stable symlink to the current pty slave)."""
        return self._pty.path

    @property
    def pty(self) -> PtySerialPort:
        """The pseudo-terminal behind :attr:`port`."""
        return self._pty

    async def start(self) -> None:
        """Create the pty and join the virtual channel; a second call does nothing."""
        if self._running:
            return
        if self._stopped:
            raise RuntimeError("adapter was stopped")
        loop = asyncio.get_running_loop()
        self._loop = loop
        # Frames that arrive before the bus exists find the adapter not carrying: they are dropped.
        await self._pty.open(self._on_serial_data)
        bus = can.Bus(interface="virtual", channel=self._channel, receive_own_messages=False)
        self._bus = bus
        self._notifier = can.Notifier(
            bus, [self._on_bus_message], timeout=_NOTIFIER_POLL, loop=loop
        )
        self._running = True

    async def stop(self) -> None:
        """Unplug for good, leave the virtual channel and join the receive thread."""
        if self._stopped:
            return
        self._stopped = True
        self._running = False
        self._cancel_bus_off_timer()
        notifier, self._notifier = self._notifier, None
        if notifier is not None:
            # The join waits up to one poll period: keep it off the event loop.
            assert self._loop is not None
            await self._loop.run_in_executor(None, notifier.stop, 1.0)
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.shutdown()
        await self._pty.close()

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._running

    # --- state seen from outside --------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """The client opened the CAN channel (``O`` or ``L``)."""
        return self._open

    @property
    def listen_only(self) -> bool:
        """The channel was opened with ``L``: receive only."""
        return self._listen_only

    @property
    def bitrate(self) -> int:
        """The bitrate the client configured (power-on default until ``S``/``s``)."""
        return self._bitrate

    @property
    def is_bus_off(self) -> bool:
        """A :meth:`bus_off` fault is in progress."""
        return self._bus_off

    @property
    def carrying(self) -> bool:
        """Frames flow: plugged, channel open, right bitrate, not bus-off."""
        return (
            self._running
            and self._pty.plugged
            and self._open
            and self._bitrate == self._bitrate_required
            and not self._bus_off
        )

    # --- faults on demand ---------------------------------------------------------------------

    async def unplug(self) -> None:
        """Pull the USB cable: the client's reads and writes fail, the firmware loses its state."""
        await self._pty.unplug()
        self._cancel_bus_off_timer()
        self._bus_off = False
        self._power_on_reset()

    async def replug(self) -> None:
        """Plug the adapter back in: a fresh pty behind the same path, firmware at power-on."""
        self._power_on_reset()
        await self._pty.replug()

    def bus_off(self, duration: float) -> None:
        """Go bus-off for ``duration`` s: nothing is delivered either way, transmits are refused.

        The state change is reported to the client with a Linux slcan state line while the
        channel is open; so is the return to error active.
        """
        if not self._running:
            raise RuntimeError("adapter is not running")
        if duration < 0:
            raise ValueError("duration must not be negative")
        assert self._loop is not None
        self._cancel_bus_off_timer()
        if not self._bus_off:
            self._bus_off = True
            self._report_state(STATE_BUS_OFF_LINE)
        self._bus_off_timer = self._loop.call_later(duration, self._recover_from_bus_off)

    def inject_garbage(self, data: bytes = DEFAULT_GARBAGE) -> None:
        """Write ``data`` to the client as if the adapter had emitted noise."""
        self._pty.write(data)

    # --- client -> bus ------------------------------------------------------------------------

    def _on_serial_data(self, data: bytes) -> None:
        """Split what the client wrote into CR-terminated commands (runs on the event loop)."""
        line = self._line
        line += data
        if b"\r" not in data:
            if len(line) > _MAX_LINE:
                line.clear()
                self._reply(ERROR)
            return
        *commands, rest = line.split(b"\r")
        self._line = bytearray(rest)
        for command in commands:
            self._reply(self._execute(bytes(command.strip(b"\n"))))

    def _reply(self, answer: bytes) -> None:
        if answer.endswith(ERROR):
            self.errors += 1
        self._pty.write(answer)

    def _execute(self, raw: bytes) -> bytes:
        """Run one command; the answer ends in CR when accepted, in BEL when refused."""
        if len(raw) > _MAX_LINE:
            return ERROR
        try:
            command = raw.decode("ascii")
        except UnicodeDecodeError:
            return ERROR
        if not command:
            # python-can writes an empty line as "no CAN FD data bitrate"; the firmware accepts it.
            return OK
        try:
            return self._dispatch(command[0], command[1:])
        except _RefusedError:
            return ERROR

    def _dispatch(self, code: str, args: str) -> bytes:
        if code in "tTrR":
            self._transmit(code, args)
            return OK
        if code in "OL":
            _expect(not args)
            self._open = True
            self._listen_only = code == "L"
            return OK
        if code == "C":
            _expect(not args)
            self._open = False
            self._listen_only = False
            return OK
        if code == "S":
            _expect(not self._open and len(args) == 1 and args.isdigit())
            self._bitrate = BITRATE_CODES[int(args)]
            return OK
        if code == "s":
            _expect(not self._open)
            self._bitrate = _btr_bitrate(args)
            return OK
        if code == "Z":
            _expect(not self._open and args in ("0", "1"))
            self._timestamps = args == "1"
            return OK
        if code == "V" and not args:
            return f"V{HARDWARE_VERSION:02d}{SOFTWARE_VERSION:02d}\r".encode()
        if code == "N" and not args:
            return f"N{SERIAL_NUMBER}\r".encode()
        if code == "F" and not args:
            _expect(self._open)
            flags = STATUS_ERROR_WARNING | STATUS_ERROR_PASSIVE | STATUS_BUS_ERROR
            return f"F{flags if self._bus_off else 0:02X}\r".encode()
        # CAN FD frames and data bitrates (d D b B Y), filters and everything else: unknown here.
        raise _RefusedError

    def _transmit(self, code: str, args: str) -> None:
        """Parse a transmit command and put the frame on the virtual bus if the bus carries it."""
        _expect(self._open and not self._listen_only and not self._bus_off)
        extended = code in "TR"
        remote = code in "rR"
        digits = _EXTENDED_ID_DIGITS if extended else _STANDARD_ID_DIGITS
        _expect(len(args) > digits and _is_hex(args[: digits + 1]))
        arbitration_id = int(args[:digits], 16)
        dlc = int(args[digits], 16)
        payload = args[digits + 1 :]
        _expect(arbitration_id <= (_MAX_EXTENDED_ID if extended else _MAX_STANDARD_ID))
        _expect(dlc <= _MAX_DLC)
        _expect(not payload if remote else len(payload) == 2 * dlc and _is_hex(payload))
        if not self.carrying:  # wrong bitrate: the frame never makes it onto the wire
            self.dropped += 1
            return
        assert self._bus is not None
        self._bus.send(
            can.Message(
                timestamp=time.time(),
                arbitration_id=arbitration_id,
                is_extended_id=extended,
                is_remote_frame=remote,
                dlc=dlc,
                data=None if remote else bytes.fromhex(payload),
            )
        )
        self.frames_to_bus += 1

    # --- bus -> client ------------------------------------------------------------------------

    def _on_bus_message(self, msg: can.Message) -> None:
        """Write one frame from the virtual bus to the client (runs on the event loop)."""
        # Not carrying includes "stopped": the notifier thread may have queued a frame just before.
        if not self.carrying or msg.is_error_frame or msg.is_fd:
            self.dropped += 1
            return
        self._pty.write(self._encode(msg))
        self.frames_from_bus += 1

    def _encode(self, msg: can.Message) -> bytes:
        code = "r" if msg.is_remote_frame else "t"
        if msg.is_extended_id:
            line = f"{code.upper()}{msg.arbitration_id:08X}{msg.dlc:d}"
        else:
            line = f"{code}{msg.arbitration_id:03X}{msg.dlc:d}"
        if not msg.is_remote_frame:
            line += msg.data.hex().upper()
        if self._timestamps:
            line += f"{int(time.time() * 1000) % _TIMESTAMP_WRAP_MS:04X}"
        return f"{line}\r".encode()

    # --- internals ----------------------------------------------------------------------------

    def _power_on_reset(self) -> None:
        self._open = False
        self._listen_only = False
        self._bitrate = POWER_ON_BITRATE
        self._timestamps = False
        self._line.clear()

    def _report_state(self, line: bytes) -> None:
        if self._open:
            self._pty.write(line)

    def _recover_from_bus_off(self) -> None:
        self._bus_off_timer = None
        self._bus_off = False
        self._report_state(STATE_ACTIVE_LINE)

    def _cancel_bus_off_timer(self) -> None:
        timer, self._bus_off_timer = self._bus_off_timer, None
        if timer is not None:
            timer.cancel()


def _expect(condition: bool) -> None:
    if not condition:
        raise _RefusedError


def _is_hex(text: str) -> bool:
    return all(char in _HEX_DIGITS for char in text)


def _btr_bitrate(args: str) -> int:
    """Bitrate of an ``sxxyy`` command: BTR0 = xx, BTR1 = yy for an 8 MHz SJA1000 clock."""
    _expect(len(args) == 4 and _is_hex(args))
    try:
        timing = can.BitTiming.from_registers(
            f_clock=BTR_CLOCK, btr0=int(args[:2], 16), btr1=int(args[2:], 16)
        )
    except ValueError:
        raise _RefusedError from None
    return int(timing.bitrate)


__all__ = ["SlcanAdapter"]
