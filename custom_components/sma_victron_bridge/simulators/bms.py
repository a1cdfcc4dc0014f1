"""JBD (incl. the UP rack series), Daly and ANT battery management systems on a pseudo-terminal.

The ``serial_bms`` device kind, its tests, the benchmark and the integration's "simulated device"
option all need a BMS that behaves like the real one on the wire, so the integration runs its
real serial client and the real codecs against it. Each simulator owns a
:class:`~.pty.PtySerialPort` and answers requests the way the hardware does:

* :class:`JbdSimulator`: registers 0x03 (basic info), 0x04 (cells), 0x05 (model), 0xAA (error
  counters); factory mode (0x00/0x01) and, only inside it, the MOSFET control write 0xE1 and the
  barcode 0xA2. Anything else is answered with status 0x80.
* :class:`JbdUpSimulator`: a JBD UP-series rack pack at its bus address, answering the pack
  status read (0x1000 … 0x10A0) only, laid out like the UP16S020 capture in ``testdata/jbd``;
  other windows and other addresses get no answer, as the capture's second pack does.
* :class:`DalySimulator`: commands 0x90-0x98 (0x95/0x96 as several numbered frames), 0x50
  (rated values), 0x57 (battery code, five frames), 0x21 (set SOC), 0xD9/0xDA (FET switches,
  echoed). It answers only the host address of the port it stands for (0x40 RS485, 0x80 UART).
* :class:`AntSimulator`: either the legacy protocol (``DB DB …``/``5A 5A …`` status requests
  answered with the 140-byte frame; ``A5 A5`` writes to addresses 249/250 that take effect on
  the apply command, address 255, without a reply) or the 2021 ``7E A1`` protocol (status and
  device information).

The battery is scriptable through plain attributes (``cell_voltages``, ``current`` - positive
while charging - ``temperatures``, ``soc``, ``protections``, ...). Unless ``frozen`` is set, a
slow physics step integrates the current into the SOC, lets the cell voltages follow the SOC
with a small spread, balances the highest cell when the spread grows and trips cell over/under
voltage protection; ``frozen=True`` keeps exactly the values a test sets. Given a
``start_time_of_day``, the battery lives a solar day from there (``time_scale`` times faster than
the wall clock): a PV array charges it by day up to a constant charge voltage, a house load drains
it, most in the evening. Like a real BMS, a
protection fault switches the FETs it concerns off and a request to switch such a FET on is
refused.

Faults are available on demand: silence, a reply cut off mid-frame, a corrupt checksum, garbage
on the line and a pulled cable. Everything runs on the event loop; no threads are started.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
import contextlib
import datetime as dt
import random
import struct
from typing import ClassVar, Final, Literal

from ..protocols import ProtocolError, ant, daly, jbd, jbd_up
from ..protocols.bms_common import (
    CELL_IMBALANCE,
    CELL_OVERVOLTAGE,
    CELL_UNDERVOLTAGE,
    CHARGE_OVERCURRENT,
    CHARGE_OVERTEMPERATURE,
    CHARGE_UNDERTEMPERATURE,
    DISCHARGE_OVERCURRENT,
    DISCHARGE_OVERTEMPERATURE,
    DISCHARGE_UNDERTEMPERATURE,
    FRONTEND_ERROR,
    MOSFET_OVERTEMPERATURE,
    PACK_OVERVOLTAGE,
    PACK_UNDERVOLTAGE,
    PROTECTION_NAMES,
    SHORT_CIRCUIT,
    SOC_LOW,
    crc16_modbus,
)
from .battery import BLOCKS_CHARGE, BLOCKS_DISCHARGE, SimulatedPack
from .pty import PtySerialPort

__all__ = [
    "BLOCKS_CHARGE",
    "BLOCKS_DISCHARGE",
    "AntSimulator",
    "BmsSimulator",
    "DalySimulator",
    "JbdSimulator",
    "JbdUpSimulator",
]

_DEFAULT_REPLY_DELAY: Final = 0.003  # s: a BMS answers a few ms after the request's last byte
_RX_GAP: Final = 0.1  # s of silence after which a half-received request is forgotten
_STEP_INTERVAL: Final = 1.0  # s of real time between physics steps
_GARBAGE_LENGTH: Final = 32
_REQUEST_LOG_LIMIT: Final = 4096


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _cut_fixed(
    rx: bytearray, start: bytes, length: int, valid: Callable[[bytes], bool]
) -> list[bytes]:
    """Cut fixed-length requests beginning with ``start`` out of ``rx`` (consumed in place)."""
    frames: list[bytes] = []
    position = 0
    while True:
        found = rx.find(start, position)
        if found < 0:
            # Keep only what could still be the beginning of a start marker.
            position = max(position, len(rx) - len(start) + 1)
            break
        if len(rx) - found < length:
            position = found
            break
        candidate = bytes(rx[found : found + length])
        if valid(candidate):
            frames.append(candidate)
            position = found + length
        else:
            position = found + 1
    del rx[:position]
    return frames


def _is_valid(parse: Callable[[bytes], object]) -> Callable[[bytes], bool]:
    """Turn a codec parser into a yes/no check."""

    def valid(frame: bytes) -> bool:
        try:
            parse(frame)
        except ProtocolError:
            return False
        return True

    return valid


class BmsSimulator(SimulatedPack):
    """What every simulated BMS shares: the battery model, the port, the fault switches.

    The battery is a :class:`~.battery.SimulatedPack`, the same one the Bluetooth BMS peers
    measure. Scriptable state (plain attributes): ``cell_voltages`` (V), ``current`` (A,
    + = charging), ``temperatures`` (°C, the external sensors), ``mosfet_temperature`` (°C),
    ``soc`` (%), ``cycles``, ``protections`` (names from :mod:`~..protocols.bms_common`),
    ``balancing`` (0-based cell indexes) and ``frozen``. ``charge_fet``/``discharge_fet`` read
    the actual FET state: a FET is on when it is switched on and no protection holds it off.
    ``requests`` records every well-formed request received (also while silent; the newest few
    thousand), ``fet_writes`` every FET switch request as ``(charge, discharge)`` with None for
    "not addressed". Unless ``frozen``, a task steps the pack once a second while the BMS runs.
    """

    protocol_name: ClassVar[str] = "bms"
    _checksum_offset: int = -1  # position of a checksum byte in a reply, from its end

    def __init__(
        self,
        *,
        cells: int = 16,
        capacity_ah: float = 280.0,
        link_path: str | None = None,
        seed: int | None = None,
        model: str | None = None,
        serial_number: str | None = None,
        time_scale: float = 1.0,
        frozen: bool = False,
        reply_delay: float = _DEFAULT_REPLY_DELAY,
        start_time_of_day: float | None = None,
    ) -> None:
        """Build the battery; nothing runs and no pty exists until :meth:`start`."""
        if not 1 <= cells <= 32:
            raise ValueError("a simulated BMS has 1 to 32 cells")
        if reply_delay < 0:
            raise ValueError("reply_delay must not be negative")
        self._rng = random.Random(seed)
        self._fault_rng = random.Random(self._rng.getrandbits(64))
        self.capacity_ah = capacity_ah
        self.reply_delay = reply_delay
        self._model = model or self._default_model(cells)
        self._serial = serial_number or self._default_serial()
        super().__init__(
            cells=cells,
            capacity_ah=capacity_ah,
            soc=50.0,
            rng=self._rng,
            start_time_of_day=start_time_of_day,
            time_scale=time_scale,
            frozen=frozen,
            temperatures=(25.0, 24.0),
            mosfet_temperature=27.0,
            cycles=12,
        )
        self.requests: list[bytes] = []
        self.fet_writes: list[tuple[bool | None, bool | None]] = []
        self._port = PtySerialPort(link_path)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._replies: dict[object, asyncio.TimerHandle] = {}
        self._rx = bytearray()
        self._last_rx = 0.0
        self._started_at = 0.0
        self._stopped = False
        self._silent = False
        self._cut_next = False
        self._corrupt_next = False
        self._garbage_next: bytes | None = None

    # -- identity --------------------------------------------------------------------------

    @property
    def port(self) -> str:
        """The serial port path a client opens (a symlink to the current pty)."""
        return self._port.path

    @property
    def plugged(self) -> bool:
        """Whether the simulated cable is plugged in."""
        return self._port.plugged

    @property
    def model(self) -> str:
        """The model / hardware name, where the protocol carries one."""
        return self._model

    @property
    def serial_number(self) -> str:
        """The serial number / battery code, where the protocol carries one."""
        return self._serial

    def _default_model(self, cells: int) -> str:
        raise NotImplementedError

    def _default_serial(self) -> str:
        return f"{self._rng.randrange(10**10):010d}"

    # -- FET switches ----------------------------------------------------------------------

    def _switch_fets(self, charge: bool | None, discharge: bool | None) -> bool:
        """Apply a host's FET request like a BMS does; False if any part was refused.

        Switching off always works; switching on is refused while a protection holds that FET.
        """
        self.fet_writes.append((charge, discharge))
        accepted = True
        if charge is not None:
            if charge and self.protections & BLOCKS_CHARGE:
                accepted = False
            else:
                self._charge_switch = charge
        if discharge is not None:
            if discharge and self.protections & BLOCKS_DISCHARGE:
                accepted = False
            else:
                self._discharge_switch = discharge
        return accepted

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the pty and start answering (and, unless frozen, the physics)."""
        if self._stopped:
            raise RuntimeError("simulator was stopped")
        if self._task is not None:
            return
        loop = self._loop = asyncio.get_running_loop()
        self._started_at = loop.time()
        await self._port.open(self._received)
        self._task = loop.create_task(self._run(), name=f"{self.protocol_name}-sim")

    async def stop(self) -> None:
        """Stop answering and remove the pty; safe to call more than once."""
        self._stopped = True
        self._cancel_replies()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._port.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(_STEP_INTERVAL)
            if not self.frozen:
                self.step(_STEP_INTERVAL * self.time_scale)

    # -- faults ----------------------------------------------------------------------------

    def set_silent(self, silent: bool) -> None:
        """Stop (or resume) answering, like a hung BMS; requests are still recorded."""
        self._silent = silent

    def stop_mid_frame_once(self) -> None:
        """Send only the first half of the next reply, then nothing more for that request."""
        self._cut_next = True

    def corrupt_next_reply(self) -> None:
        """Send the next reply with a wrong checksum."""
        self._corrupt_next = True

    def inject_garbage(self, data: bytes | None = None, *, before_next_reply: bool = False) -> None:
        """Put non-protocol bytes on the line (random ones unless ``data`` is given).

        With ``before_next_reply`` they go out directly in front of the next reply, as line
        noise during a transfer would; otherwise at once.
        """
        if data is None:
            data = self._fault_rng.randbytes(_GARBAGE_LENGTH)
        if before_next_reply:
            self._garbage_next = data
        else:
            self._port.write(data)

    async def unplug(self) -> None:
        """Pull the cable: clients see end-of-file/EIO and the port path disappears."""
        self._cancel_replies()
        await self._port.unplug()
        self._rx.clear()

    async def replug(self) -> None:
        """Plug the cable back in: a new pty appears at the same path."""
        await self._port.replug()

    # -- wire ------------------------------------------------------------------------------

    def _received(self, data: bytes) -> None:
        assert self._loop is not None
        now = self._loop.time()
        if now - self._last_rx > _RX_GAP:
            self._forget_partial()
        self._last_rx = now
        self._rx += data
        for request in self._split(self._rx):
            self.requests.append(request)
            if len(self.requests) > _REQUEST_LOG_LIMIT:
                # A simulated device may run for weeks: keep the newest requests only.
                del self.requests[: _REQUEST_LOG_LIMIT // 2]
            if self._silent:
                continue
            reply = self._answer(request)
            if reply:
                self._send(reply)

    def _forget_partial(self) -> None:
        """Drop a request that stopped arriving half-way (the BMS's receive timeout)."""
        self._rx.clear()

    def _send(self, reply: bytes) -> None:
        if self._corrupt_next:
            self._corrupt_next = False
            buffer = bytearray(reply)
            buffer[self._checksum_offset] ^= 0x5A
            reply = bytes(buffer)
        if self._cut_next:
            self._cut_next = False
            reply = reply[: len(reply) // 2]
        if self._garbage_next is not None:
            reply = self._garbage_next + reply
            self._garbage_next = None
        assert self._loop is not None
        token = object()

        def write() -> None:
            del self._replies[token]
            self._port.write(reply)

        self._replies[token] = self._loop.call_later(self.reply_delay, write)

    def _cancel_replies(self) -> None:
        for handle in self._replies.values():
            handle.cancel()
        self._replies.clear()

    def _split(self, rx: bytearray) -> list[bytes]:
        """Cut complete, well-formed requests out of ``rx`` (consumed in place)."""
        raise NotImplementedError

    def _answer(self, request: bytes) -> bytes | None:
        """The reply to one request, or None when the BMS stays quiet."""
        raise NotImplementedError

    # -- helpers for the protocol classes ---------------------------------------------------

    def _cell_millivolts(self) -> list[int]:
        return [_clamp(round(volts * 1000), 0, 0xFFFF) for volts in self.cell_voltages]

    def _balance_bits(self) -> int:
        return sum(1 << index for index in self.balancing if 0 <= index < self.cell_count)

    def _uptime(self) -> int:
        assert self._loop is not None
        return int(self._loop.time() - self._started_at)


# --- JBD -----------------------------------------------------------------------------------


def _jbd_reply(register: int, data: bytes = b"", status: int = jbd.STATUS_OK) -> bytes:
    """A response frame ``DD reg status len data chk 77``."""
    body = bytes((status, len(data))) + data
    return bytes((jbd.START, register)) + body + jbd.checksum(body).to_bytes(2, "big") + b"\x77"


_REG_BARCODE: Final = 0xA2
_JBD_SOFTWARE_VERSION: Final = 0x21  # "2.1"
_JBD_KELVIN_DECI: Final = 2731


class JbdSimulator(BmsSimulator):
    """A JBD / LLT / Overkill BMS (9600 8N1 on real hardware).

    ``model`` is answered to register 0x05; ``serial_number`` is the barcode (register 0xA2,
    readable in factory mode only). ``error_counters`` (register 0xAA), ``manufacture_date`` and
    ``software_version`` (the raw byte, 0x21 = "2.1") are scriptable too; ``factory_mode`` tells
    whether a host left the BMS in factory mode.
    """

    protocol_name = "jbd"
    _checksum_offset = -2

    def __init__(
        self,
        *,
        cells: int = 16,
        capacity_ah: float = 280.0,
        link_path: str | None = None,
        seed: int | None = None,
        model: str | None = None,
        serial_number: str | None = None,
        time_scale: float = 1.0,
        frozen: bool = False,
        reply_delay: float = _DEFAULT_REPLY_DELAY,
        start_time_of_day: float | None = None,
    ) -> None:
        """Build the BMS; see :class:`BmsSimulator` for the state it carries."""
        super().__init__(
            cells=cells,
            capacity_ah=capacity_ah,
            link_path=link_path,
            seed=seed,
            model=model,
            serial_number=serial_number,
            time_scale=time_scale,
            frozen=frozen,
            reply_delay=reply_delay,
            start_time_of_day=start_time_of_day,
        )
        self.error_counters: list[int] = [0] * len(jbd.ERROR_COUNTER_NAMES)
        self.manufacture_date = dt.date(2023, 5, 17)
        self.software_version = _JBD_SOFTWARE_VERSION
        self.factory_mode = False
        self._assembler = jbd.FrameAssembler()

    def _default_model(self, cells: int) -> str:
        return f"JBD-SP{cells:02d}S020-L{cells}S-200A-B-U"

    def _default_serial(self) -> str:
        return f"JBD{self._rng.randrange(10**9):09d}"

    def _forget_partial(self) -> None:
        super()._forget_partial()
        self._assembler.reset()

    def _split(self, rx: bytearray) -> list[bytes]:
        frames = self._assembler.feed(bytes(rx))
        rx.clear()
        return [frame for frame in frames if frame[1] in (jbd.READ, jbd.WRITE)]

    def _answer(self, request: bytes) -> bytes | None:
        parsed = jbd.parse_request(request)
        register = parsed.register
        if parsed.write:
            return self._write(register, parsed.data)
        if register == jbd.REG_BASIC_INFO:
            return _jbd_reply(register, self._basic_info())
        if register == jbd.REG_CELL_VOLTAGES:
            millivolts = self._cell_millivolts()
            return _jbd_reply(register, struct.pack(f">{len(millivolts)}H", *millivolts))
        if register == jbd.REG_MODEL:
            return _jbd_reply(register, self._model.encode("ascii", "replace")[:31])
        if register == jbd.REG_ERROR_COUNTERS:
            counters = [_clamp(value, 0, 0xFFFF) for value in self.error_counters]
            return _jbd_reply(register, struct.pack(f">{len(counters)}H", *counters))
        if register == _REG_BARCODE and self.factory_mode:
            text = self._serial.encode("ascii", "replace")[:31]
            return _jbd_reply(register, bytes((len(text),)) + text)
        return _jbd_reply(register, status=jbd.STATUS_ERROR)

    def _write(self, register: int, data: bytes) -> bytes:
        if register == jbd.REG_FACTORY_ENTER and data == jbd.FACTORY_ENTER_KEY:
            self.factory_mode = True
            return _jbd_reply(register)
        if register == jbd.REG_FACTORY_EXIT and self.factory_mode:
            self.factory_mode = False
            return _jbd_reply(register)
        if register == jbd.REG_MOSFET_CONTROL and self.factory_mode and len(data) == 2:
            code = data[1]
            # The request is acknowledged; a refused "on" just leaves the FET off (the host
            # sees it in the next 0x03 reply), as on the real board.
            self._switch_fets(not code & 0x01, not code & 0x02)
            return _jbd_reply(register)
        return _jbd_reply(register, status=jbd.STATUS_ERROR)

    def _basic_info(self) -> bytes:
        date = self.manufacture_date
        balance = self._balance_bits()
        protection = sum(
            1 << bit for bit, name in enumerate(PROTECTION_NAMES) if name in self.protections
        )
        temperatures = [
            _clamp(round(value * 10) + _JBD_KELVIN_DECI, 0, 0xFFFF) for value in self.temperatures
        ]
        head = struct.pack(
            ">HhHHHHHHHBBBBB",
            _clamp(round(self.voltage * 100), 0, 0xFFFF),
            _clamp(round(self.current * 100), -0x8000, 0x7FFF),
            _clamp(round(self.remaining_capacity * 100), 0, 0xFFFF),
            _clamp(round(self.capacity_ah * 100), 0, 0xFFFF),
            _clamp(self.cycles, 0, 0xFFFF),
            (date.year - 2000) << 9 | date.month << 5 | date.day,
            balance & 0xFFFF,
            balance >> 16,
            protection,
            self.software_version & 0xFF,
            _clamp(round(self.soc), 0, 100),
            int(self.charge_fet) | int(self.discharge_fet) << 1,
            self.cell_count,
            len(temperatures),
        )
        return head + struct.pack(f">{len(temperatures)}H", *temperatures)


# --- JBD UP --------------------------------------------------------------------------------

_UP_REQUEST_LENGTH: Final = jbd_up.MIN_FRAME_LENGTH  # a read carries no data
_UP_TEMPERATURE_OFFSET: Final = 500  # 0.1 °C above -50 °C
_UP_CURRENT_OFFSET: Final = 300_000  # 0.01 A, above -3000 A
# Bytes whose meaning the capture does not show, copied from its pack at address 1 so that a
# reply follows that pack byte for byte: the word at 34, the six bytes in front of the model
# and the twelve behind it (the pack at address 2 sends only four there).
_UP_WORD_34: Final = bytes.fromhex("0004")
_UP_BEFORE_MODEL: Final = bytes.fromhex("000000000c04")
_UP_AFTER_MODEL: Final = bytes.fromhex("000200035aa6000000000000")
_UP_MODEL_LENGTH: Final = 30
_UP_BIT: Final = {name: bit for bit, name in reversed(list(enumerate(jbd_up.PROTECTION_BIT_NAMES)))}


class JbdUpSimulator(BmsSimulator):
    """A JBD UP-series rack pack (e.g. UP16S020) on RS485, 9600 8N1 on real hardware.

    ``address`` is its bus address (1 by default). The status block follows the capture
    field by field: pack voltage, the second voltage word (0 on the capture's pack 1, so
    ``line_voltage`` defaults to None = 0), current, SOC and capacities in 0.01 units, MOSFET
    and ambient temperature, operation state from the current's sign, ``state_of_health``,
    the protection word, FET bits, cycles, the highest/lowest cell and sensor with their index
    and the (truncated) means, the charge/discharge limits ``charge_voltage_limit``,
    ``charge_current_limit``, ``discharge_voltage_limit``, ``discharge_current_limit``, the
    cells, the sensors and the model. The serial number does not travel in that block. FET
    writes are not answered: nothing is known of them for this protocol.
    """

    protocol_name = "jbd_up"
    _checksum_offset = -1

    def __init__(
        self,
        *,
        cells: int = 16,
        capacity_ah: float = 280.0,
        link_path: str | None = None,
        address: int = jbd_up.DEFAULT_ADDRESS,
        seed: int | None = None,
        model: str | None = None,
        serial_number: str | None = None,
        time_scale: float = 1.0,
        frozen: bool = False,
        reply_delay: float = _DEFAULT_REPLY_DELAY,
        start_time_of_day: float | None = None,
    ) -> None:
        """Build the pack; see :class:`BmsSimulator` for the state it carries."""
        if not 0 <= address <= 0xFF:
            raise ValueError("a JBD UP address is one byte")
        super().__init__(
            cells=cells,
            capacity_ah=capacity_ah,
            link_path=link_path,
            seed=seed,
            model=model,
            serial_number=serial_number,
            time_scale=time_scale,
            frozen=frozen,
            reply_delay=reply_delay,
            start_time_of_day=start_time_of_day,
        )
        self.address = address
        self.temperatures = [25.0, 24.0, 24.5, 25.5]  # the UP16S020 has four cell sensors
        self.ambient_temperature = 23.0
        self.state_of_health = 100
        self.line_voltage: float | None = None
        # LiFePO4 limits as the capture's packs report them: 3.65 V and 2.8 V per cell, 1 C.
        self.charge_voltage_limit = round(3.65 * cells, 1)
        self.discharge_voltage_limit = round(2.8 * cells, 1)
        self.charge_current_limit = capacity_ah
        self.discharge_current_limit = capacity_ah

    def _default_model(self, cells: int) -> str:
        return f"JBD-UP{cells:02d}S{round(self.capacity_ah):03d}"

    def _split(self, rx: bytearray) -> list[bytes]:
        def valid(frame: bytes) -> bool:
            try:
                return jbd_up.parse_frame(frame).data == b""
            except ProtocolError:
                return False

        marker = bytes((self.address, jbd_up.FUNCTION_READ))
        return _cut_fixed(rx, marker, _UP_REQUEST_LENGTH, valid)

    def _answer(self, request: bytes) -> bytes | None:
        frame = jbd_up.parse_frame(request)
        if (frame.start, frame.end) != (jbd_up.REG_PACK_STATUS, jbd_up.REG_PACK_STATUS_END):
            return None
        return jbd_up.encode_frame(
            self.address, jbd_up.FUNCTION_READ, frame.start, frame.end, self._pack_status()
        )

    @staticmethod
    def _temperature_raw(celsius: float) -> int:
        return _clamp(round(celsius * 10) + _UP_TEMPERATURE_OFFSET, 0, 0xFFFF)

    def _pack_status(self) -> bytes:
        """The status block, laid out as the capture's (see :mod:`~..protocols.jbd_up`)."""
        millivolts = self._cell_millivolts()
        sensors = [self._temperature_raw(value) for value in self.temperatures]
        high = max(range(len(millivolts)), key=millivolts.__getitem__)
        low = min(range(len(millivolts)), key=millivolts.__getitem__)
        if sensors:
            hot = max(range(len(sensors)), key=sensors.__getitem__)
            cold = min(range(len(sensors)), key=sensors.__getitem__)
            sensor_summary = (
                hot + 1,
                sensors[hot],
                cold + 1,
                sensors[cold],
                sum(sensors) // len(sensors),
            )
        else:
            sensor_summary = (0, 0, 0, 0, 0)
        protection = sum(1 << _UP_BIT[name] for name in self.protections if name in _UP_BIT)
        operation = 1 if self.current > 0 else 2 if self.current < 0 else 0
        centi = 100
        head = struct.pack(
            ">HHIHHHHHHHHII",
            _clamp(round(self.voltage * centi), 0, 0xFFFF),
            _clamp(round((self.line_voltage or 0.0) * centi), 0, 0xFFFF),
            _clamp(round(self.current * centi) + _UP_CURRENT_OFFSET, 0, 0xFFFFFFFF),
            _clamp(round(self.soc * centi), 0, 10_000),
            _clamp(round(self.remaining_capacity * centi), 0, 0xFFFF),
            _clamp(round(self.capacity_ah * centi), 0, 0xFFFF),
            _clamp(round(self.capacity_ah * centi), 0, 0xFFFF),
            self._temperature_raw(self.mosfet_temperature),
            self._temperature_raw(self.ambient_temperature),
            operation,
            _clamp(self.state_of_health, 0, 100),
            protection,
            0,  # error word
        )
        fets = struct.pack(">H", int(self.discharge_fet) | int(self.charge_fet) << 1)
        summary = struct.pack(
            ">HHHHHHHHHHH",
            _clamp(self.cycles, 0, 0xFFFF),
            high + 1,
            millivolts[high],
            low + 1,
            millivolts[low],
            sum(millivolts) // len(millivolts),
            *sensor_summary,
        )
        limits = struct.pack(
            ">HHHHH",
            _clamp(round(self.charge_voltage_limit * 10), 0, 0xFFFF),
            _clamp(round(self.charge_current_limit * 10), 0, 0xFFFF),
            _clamp(round(self.discharge_voltage_limit * 10), 0, 0xFFFF),
            _clamp(round(self.discharge_current_limit * 10), 0, 0xFFFF),
            len(millivolts),
        )
        cells = struct.pack(f">{len(millivolts)}H", *millivolts)
        temperatures = struct.pack(f">H{len(sensors)}H", len(sensors), *sensors)
        model = self._model.encode("ascii", "replace")[:_UP_MODEL_LENGTH]
        return (
            head
            + fets
            + _UP_WORD_34
            + summary
            + limits
            + cells
            + temperatures
            + _UP_BEFORE_MODEL
            + model.ljust(_UP_MODEL_LENGTH, b"\0")
            + _UP_AFTER_MODEL
        )


# --- Daly ----------------------------------------------------------------------------------

_DALY_CMD_BATTERY_CODE: Final = 0x57
_DALY_CODE_FRAMES: Final = 5
_DALY_CODE_CHARS: Final = 7
_DALY_NOMINAL_CELL_MV: Final = 3200
_DALY_TEMPERATURE_OFFSET: Final = 40
_DALY_CURRENT_OFFSET: Final = 30_000

# Shared protection name -> the 0x98 fault bits a Daly sets for it (warning and alarm level).
_DALY_FAULTS: Final[dict[str, tuple[str, ...]]] = {
    CELL_OVERVOLTAGE: ("cell_overvoltage_1", "cell_overvoltage_2"),
    CELL_UNDERVOLTAGE: ("cell_undervoltage_1", "cell_undervoltage_2"),
    PACK_OVERVOLTAGE: ("pack_overvoltage_1", "pack_overvoltage_2"),
    PACK_UNDERVOLTAGE: ("pack_undervoltage_1", "pack_undervoltage_2"),
    CHARGE_OVERTEMPERATURE: ("charge_overtemperature_1", "charge_overtemperature_2"),
    CHARGE_UNDERTEMPERATURE: ("charge_undertemperature_1", "charge_undertemperature_2"),
    DISCHARGE_OVERTEMPERATURE: ("discharge_overtemperature_1", "discharge_overtemperature_2"),
    DISCHARGE_UNDERTEMPERATURE: ("discharge_undertemperature_1", "discharge_undertemperature_2"),
    CHARGE_OVERCURRENT: ("charge_overcurrent_1", "charge_overcurrent_2"),
    DISCHARGE_OVERCURRENT: ("discharge_overcurrent_1", "discharge_overcurrent_2"),
    SOC_LOW: ("soc_low_1", "soc_low_2"),
    CELL_IMBALANCE: ("cell_voltage_difference_1", "cell_voltage_difference_2"),
    MOSFET_OVERTEMPERATURE: ("charge_mosfet_overtemperature", "discharge_mosfet_overtemperature"),
    FRONTEND_ERROR: ("afe_fault",),
    SHORT_CIRCUIT: ("short_circuit_protection_fault",),
}
_DALY_FAULT_BIT: Final = {name: bit for bit, name in enumerate(daly.FAULT_NAMES) if name}


class DalySimulator(BmsSimulator):
    """A Daly smart BMS (9600 8N1 on real hardware).

    ``host_address`` selects which port it stands for: 0x40 (RS485) or 0x80 (UART); requests to
    the other address go unanswered, as on the real board. ``address`` is the BMS's own address
    in its replies. ``invert_current`` models firmware that sends the current with the other
    sign (raw above 30000 = charging). ``serial_number`` is the battery code (command 0x57);
    the model name does not travel over this protocol.
    """

    protocol_name = "daly"

    def __init__(
        self,
        *,
        cells: int = 16,
        capacity_ah: float = 280.0,
        link_path: str | None = None,
        address: int = daly.BMS_ADDRESS,
        host_address: int = daly.HOST_ADDRESS_RS485,
        invert_current: bool = False,
        seed: int | None = None,
        model: str | None = None,
        serial_number: str | None = None,
        time_scale: float = 1.0,
        frozen: bool = False,
        reply_delay: float = _DEFAULT_REPLY_DELAY,
        start_time_of_day: float | None = None,
    ) -> None:
        """Build the BMS; see :class:`BmsSimulator` for the state it carries."""
        super().__init__(
            cells=cells,
            capacity_ah=capacity_ah,
            link_path=link_path,
            seed=seed,
            model=model,
            serial_number=serial_number,
            time_scale=time_scale,
            frozen=frozen,
            reply_delay=reply_delay,
            start_time_of_day=start_time_of_day,
        )
        self.address = address
        self.host_address = host_address
        self.invert_current = invert_current
        self._handlers: dict[int, Callable[[bytes], list[bytes]]] = {
            daly.CMD_SOC: self._soc,
            daly.CMD_CELL_VOLTAGE_RANGE: self._cell_range,
            daly.CMD_TEMPERATURE_RANGE: self._temperature_range,
            daly.CMD_MOSFET: self._mosfet,
            daly.CMD_STATUS: self._status,
            daly.CMD_CELL_VOLTAGES: self._cells,
            daly.CMD_TEMPERATURES: self._temperature_frames,
            daly.CMD_BALANCE: self._balance_map,
            daly.CMD_FAULTS: self._faults,
            daly.CMD_RATED: self._rated,
            _DALY_CMD_BATTERY_CODE: self._battery_code,
            daly.CMD_SET_SOC: self._set_soc,
            daly.CMD_CHARGE_FET: self._charge_write,
            daly.CMD_DISCHARGE_FET: self._discharge_write,
        }

    def _default_model(self, cells: int) -> str:
        return f"Daly Smart BMS {cells}S"

    def _default_serial(self) -> str:
        return f"DL{self._rng.randrange(10**12):012d}"

    def _split(self, rx: bytearray) -> list[bytes]:
        return _cut_fixed(rx, bytes((daly.START,)), daly.FRAME_LENGTH, _is_valid(daly.parse_frame))

    def _answer(self, request: bytes) -> bytes | None:
        frame = daly.parse_frame(request)
        handler = self._handlers.get(frame.command)
        if frame.address != self.host_address or handler is None:
            return None
        return b"".join(
            daly.encode_request(frame.command, self.address, data) for data in handler(frame.data)
        )

    def _temperature_bytes(self) -> list[int]:
        return [
            _clamp(round(value) + _DALY_TEMPERATURE_OFFSET, 0, 0xFF) for value in self.temperatures
        ]

    def _soc(self, _data: bytes) -> list[bytes]:
        decivolts = _clamp(round(self.voltage * 10), 0, 0xFFFF)
        deciamps = round(self.current * 10)
        raw = _DALY_CURRENT_OFFSET + (deciamps if self.invert_current else -deciamps)
        return [
            struct.pack(
                ">HHHH",
                decivolts,
                0,  # "acquisition" voltage: 0 on the boards seen
                _clamp(raw, 0, 0xFFFF),
                _clamp(round(self.soc * 10), 0, 1000),
            )
        ]

    def _cell_range(self, _data: bytes) -> list[bytes]:
        millivolts = self._cell_millivolts()
        high = max(range(len(millivolts)), key=millivolts.__getitem__)
        low = min(range(len(millivolts)), key=millivolts.__getitem__)
        return [struct.pack(">HBHBxx", millivolts[high], high + 1, millivolts[low], low + 1)]

    def _temperature_range(self, _data: bytes) -> list[bytes]:
        raw = self._temperature_bytes() or [_DALY_TEMPERATURE_OFFSET]
        high = max(range(len(raw)), key=raw.__getitem__)
        low = min(range(len(raw)), key=raw.__getitem__)
        return [bytes((raw[high], high + 1, raw[low], low + 1)).ljust(8, b"\0")]

    def _mosfet(self, _data: bytes) -> list[bytes]:
        state = 1 if self.current > 0 else 2 if self.current < 0 else 0
        return [
            struct.pack(
                ">BBBBI",
                state,
                int(self.charge_fet),
                int(self.discharge_fet),
                self.cycles & 0xFF,
                _clamp(round(self.remaining_capacity * 1000), 0, 0xFFFFFFFF),
            )
        ]

    def _status(self, _data: bytes) -> list[bytes]:
        return [
            struct.pack(
                ">BBBBBHx",
                self.cell_count,
                len(self.temperatures),
                int(self.current > 0),
                int(self.current < 0),
                0,
                _clamp(self.cycles, 0, 0xFFFF),
            )
        ]

    def _cells(self, _data: bytes) -> list[bytes]:
        millivolts = self._cell_millivolts()
        per = daly.CELLS_PER_FRAME
        frames = []
        for number, first in enumerate(range(0, len(millivolts), per), start=1):
            chunk = millivolts[first : first + per]
            chunk += [0] * (per - len(chunk))
            frames.append(struct.pack(">BHHHx", number, *chunk))
        return frames

    def _temperature_frames(self, _data: bytes) -> list[bytes]:
        raw = self._temperature_bytes()
        per = daly.TEMPERATURES_PER_FRAME
        return [
            bytes((number,)) + bytes(raw[first : first + per]).ljust(per, b"\0")
            for number, first in enumerate(range(0, len(raw), per), start=1)
        ]

    def _balance_map(self, _data: bytes) -> list[bytes]:
        return [self._balance_bits().to_bytes(6, "little") + b"\0\0"]

    def _faults(self, _data: bytes) -> list[bytes]:
        bits = 0
        for name in self.protections:
            for fault in _DALY_FAULTS.get(name, ()):
                bits |= 1 << _DALY_FAULT_BIT[fault]
        return [bits.to_bytes(7, "little") + bytes((1 if bits else 0,))]

    def _rated(self, _data: bytes) -> list[bytes]:
        capacity = _clamp(round(self.capacity_ah * 1000), 0, 0xFFFFFFFF)
        return [struct.pack(">II", capacity, _DALY_NOMINAL_CELL_MV)]

    def _battery_code(self, _data: bytes) -> list[bytes]:
        text = self._serial.encode("ascii", "replace")
        text = text[: _DALY_CODE_FRAMES * _DALY_CODE_CHARS]
        text = text.ljust(_DALY_CODE_FRAMES * _DALY_CODE_CHARS, b" ")
        return [
            bytes((number + 1,)) + text[number * _DALY_CODE_CHARS : (number + 1) * _DALY_CODE_CHARS]
            for number in range(_DALY_CODE_FRAMES)
        ]

    def _set_soc(self, data: bytes) -> list[bytes]:
        soc = int.from_bytes(data[6:8], "big") / 10
        if soc > 100:
            return [bytes(8)]
        self.soc = soc
        return [b"\x01".ljust(8, b"\0")]

    def _charge_write(self, data: bytes) -> list[bytes]:
        self._switch_fets(bool(data[0]), None)
        return [bytes((int(self.charge_fet),)).ljust(8, b"\0")]

    def _discharge_write(self, data: bytes) -> list[bytes]:
        self._switch_fets(None, bool(data[0]))
        return [bytes((int(self.discharge_fet),)).ljust(8, b"\0")]


# --- ANT -----------------------------------------------------------------------------------

_ANT_CHARGE_CODES: Final[dict[str, int]] = {
    CELL_OVERVOLTAGE: 2,
    CHARGE_OVERCURRENT: 3,
    PACK_OVERVOLTAGE: 5,
    CHARGE_OVERTEMPERATURE: 6,
    MOSFET_OVERTEMPERATURE: 7,
    CHARGE_UNDERTEMPERATURE: 17,
}
_ANT_DISCHARGE_CODES: Final[dict[str, int]] = {
    CELL_UNDERVOLTAGE: 2,
    DISCHARGE_OVERCURRENT: 3,
    PACK_UNDERVOLTAGE: 5,
    DISCHARGE_OVERTEMPERATURE: 6,
    MOSFET_OVERTEMPERATURE: 7,
    SHORT_CIRCUIT: 12,
    DISCHARGE_UNDERTEMPERATURE: 17,
}
_ANT_ON: Final = 1
_ANT_OFF: Final = 0
_ANT_MANUALLY_OFF: Final = 15
_ANT_BALANCER_AUTOMATIC: Final = 4
_ANT_LEGACY_SENSORS: Final = 4
_ANT_ABSENT_SENSOR: Final = -40  # what a legacy board reports for an unplugged NTC
_ANT_NEW_MAX_SENSORS: Final = 4
_ANT_DEVICE_INFO_COMMAND: Final = 0x02
_ANT_DEVICE_INFO_ADDRESS: Final = 0x026C
_ANT_DEVICE_INFO_FIELD: Final = 16
_ANT_LFP: Final = 0xFAF2
_ANT_SOFTWARE: Final = "ZMB_V2.1.4"


def _ant_code(
    switched_on: bool, protections: Iterable[str], codes: dict[str, int], blocks: frozenset[str]
) -> int:
    """MOSFET status code: the protection holding it, manually off, or on."""
    active = set(protections)
    for name, code in codes.items():
        if name in active:
            return code
    if active & blocks:
        return _ANT_OFF
    return _ANT_ON if switched_on else _ANT_MANUALLY_OFF


def _ant_reply(function: int, address: int, payload: bytes) -> bytes:
    """A ``7E A1`` response frame with CRC-16/Modbus (little-endian) and trailer."""
    body = bytes((ant.START[1], function)) + address.to_bytes(2, "little")
    body += bytes((len(payload),)) + payload
    return ant.START[:1] + body + crc16_modbus(body).to_bytes(2, "little") + ant.TRAILER


class AntSimulator(BmsSimulator):
    """An ANT BMS (19200 8N1 on real hardware), speaking the legacy or the 2021 protocol.

    ``protocol="legacy"`` answers ``DB DB 00 00 00 00`` and ``5A 5A 00 00 01 01`` with the
    140-byte status frame and takes FET writes (``A5 A5``, addresses 249/250) on the apply
    command. ``protocol="new"`` answers only ``7E A1`` status and device-info requests (a real
    2021 board answers both protocols; keeping them apart lets detection be tested).
    ``balancer_temperature`` is scriptable besides the common state. The legacy frame reports
    the MOSFET and balancer temperatures and four sensors (-40 °C for a missing one) as six
    temperatures; the 2021 frame keeps them apart. ``model`` is the hardware name of the 2021
    device information; ``address`` and ``serial_number`` do not travel over either protocol.
    """

    protocol_name = "ant"

    def __init__(
        self,
        protocol: Literal["legacy", "new"] = "legacy",
        *,
        cells: int = 16,
        capacity_ah: float = 280.0,
        link_path: str | None = None,
        address: int = 0x01,
        seed: int | None = None,
        model: str | None = None,
        serial_number: str | None = None,
        time_scale: float = 1.0,
        frozen: bool = False,
        reply_delay: float = _DEFAULT_REPLY_DELAY,
        start_time_of_day: float | None = None,
    ) -> None:
        """Build the BMS; see :class:`BmsSimulator` for the state it carries."""
        if protocol not in ("legacy", "new"):
            raise ValueError(f"unknown ANT protocol {protocol!r}")
        super().__init__(
            cells=cells,
            capacity_ah=capacity_ah,
            link_path=link_path,
            seed=seed,
            model=model,
            serial_number=serial_number,
            time_scale=time_scale,
            frozen=frozen,
            reply_delay=reply_delay,
            start_time_of_day=start_time_of_day,
        )
        self.protocol: Literal["legacy", "new"] = protocol
        self.address = address
        self.balancer_temperature = 26.0
        self.software_version = _ANT_SOFTWARE
        self._pending_fets: tuple[bool | None, bool | None] = (None, None)
        self._checksum_offset = -1 if protocol == "legacy" else -3

    def _default_model(self, cells: int) -> str:
        return f"{cells}ZMB"

    def _split(self, rx: bytearray) -> list[bytes]:
        if self.protocol == "new":
            return _cut_fixed(rx, ant.START, ant.REQUEST_LENGTH, _is_valid(ant.parse_request))
        return self._split_legacy(rx)

    @staticmethod
    def _split_legacy(rx: bytearray) -> list[bytes]:
        """Cut 6-byte legacy commands: function byte twice (DB, 5A or A5), then addr/value/sum."""
        frames: list[bytes] = []
        valid = _is_valid(ant.parse_legacy_command)
        position = 0
        while True:
            starts = [
                found
                for marker in (b"\xdb\xdb", b"\x5a\x5a", b"\xa5\xa5")
                if (found := rx.find(marker, position)) >= 0
            ]
            if not starts:
                position = max(position, len(rx) - 1)
                break
            found = min(starts)
            if len(rx) - found < ant.LEGACY_COMMAND_LENGTH:
                position = found
                break
            candidate = bytes(rx[found : found + ant.LEGACY_COMMAND_LENGTH])
            if valid(candidate):
                frames.append(candidate)
                position = found + ant.LEGACY_COMMAND_LENGTH
            else:
                position = found + 1
        del rx[:position]
        return frames

    def _answer(self, request: bytes) -> bytes | None:
        if self.protocol == "new":
            return self._answer_new(ant.parse_request(request))
        command = ant.parse_legacy_command(request)
        if request in (ant.LEGACY_STATUS_REQUEST, ant.LEGACY_STATUS_REQUEST_SERIAL):
            return self._legacy_status()
        if command.function == ant.LEGACY_WRITE:
            self._legacy_write(command.address, command.value)
        return None

    def _legacy_write(self, address: int, value: int) -> None:
        charge, discharge = self._pending_fets
        if address == ant.LEGACY_REG_CHARGE_MOSFET:
            self._pending_fets = (bool(value), discharge)
        elif address == ant.LEGACY_REG_DISCHARGE_MOSFET:
            self._pending_fets = (charge, bool(value))
        elif address == ant.LEGACY_REG_APPLY and self._pending_fets != (None, None):
            self._switch_fets(charge, discharge)
            self._pending_fets = (None, None)

    def _codes(self) -> tuple[int, int, int]:
        charge = _ant_code(self._charge_switch, self.protections, _ANT_CHARGE_CODES, BLOCKS_CHARGE)
        discharge = _ant_code(
            self._discharge_switch, self.protections, _ANT_DISCHARGE_CODES, BLOCKS_DISCHARGE
        )
        balancer = _ANT_BALANCER_AUTOMATIC if self.balancing else _ANT_OFF
        return charge, discharge, balancer

    def _cell_summary(self) -> tuple[int, int, int, int, int]:
        """Highest cell (1-based) and mV, lowest cell and mV, average mV."""
        millivolts = self._cell_millivolts()
        high = max(range(len(millivolts)), key=millivolts.__getitem__)
        low = min(range(len(millivolts)), key=millivolts.__getitem__)
        average = round(sum(millivolts) / len(millivolts))
        return high + 1, millivolts[high], low + 1, millivolts[low], average

    def _power(self) -> int:
        return round(self.voltage * self.current)

    def _legacy_status(self) -> bytes:
        frame = bytearray(ant.LEGACY_FRAME_LENGTH)
        frame[0:4] = ant.LEGACY_HEADER
        millivolts = self._cell_millivolts()
        sensors = [round(value) for value in self.temperatures[:_ANT_LEGACY_SENSORS]]
        sensors += [_ANT_ABSENT_SENSOR] * (_ANT_LEGACY_SENSORS - len(sensors))
        temperatures = [round(self.mosfet_temperature), round(self.balancer_temperature), *sensors]
        high_cell, high_mv, low_cell, low_mv, average = self._cell_summary()
        charge, discharge, balancer = self._codes()
        struct.pack_into(">H", frame, 4, _clamp(round(self.voltage * 10), 0, 0xFFFF))
        struct.pack_into(f">{len(millivolts)}H", frame, 6, *millivolts)
        struct.pack_into(
            ">iBIIIIhhhhhhBBB",
            frame,
            70,
            -round(self.current * 10),  # the legacy frame counts discharge as positive
            _clamp(round(self.soc), 0, 100),
            _clamp(round(self.capacity_ah * 1_000_000), 0, 0xFFFFFFFF),
            _clamp(round(self.remaining_capacity * 1_000_000), 0, 0xFFFFFFFF),
            _clamp(round(self.cycles * self.capacity_ah * 1000), 0, 0xFFFFFFFF),
            self._uptime(),
            *temperatures,
            charge,
            discharge,
            balancer,
        )
        struct.pack_into(
            ">iBHBHHB",
            frame,
            111,
            -self._power(),
            high_cell,
            high_mv,
            low_cell,
            low_mv,
            average,
            self.cell_count,
        )
        struct.pack_into(">I", frame, 132, self._balance_bits())
        struct.pack_into(">H", frame, 138, ant.legacy_checksum(bytes(frame)))
        return bytes(frame)

    def _answer_new(self, request: ant.AntRequest) -> bytes | None:
        if request.function == ant.COMMAND_STATUS:
            return _ant_reply(ant.FUNCTION_STATUS, request.address, self._new_status())
        if (
            request.function == _ANT_DEVICE_INFO_COMMAND
            and request.address == _ANT_DEVICE_INFO_ADDRESS
        ):
            field = _ANT_DEVICE_INFO_FIELD
            payload = self._model.encode("ascii", "replace")[:field].ljust(field, b"\0")
            payload += self.software_version.encode("ascii", "replace")[:field].ljust(field, b"\0")
            return _ant_reply(ant.FUNCTION_DEVICE_INFO, request.address, payload)
        return None

    def _new_status(self) -> bytes:
        millivolts = self._cell_millivolts()
        sensors = [round(value) for value in self.temperatures[:_ANT_NEW_MAX_SENSORS]]
        high_cell, high_mv, low_cell, low_mv, average = self._cell_summary()
        charge, discharge, balancer = self._codes()
        status = 2 if self.current > 0 else 3 if self.current < 0 else 1
        head = bytes((5, status, len(sensors), len(millivolts))) + bytes(24)
        cells = struct.pack(f"<{len(millivolts)}H", *millivolts)
        temperatures = struct.pack(f"<{len(sensors)}h", *sensors)
        soh = 100
        core = struct.pack(
            "<hhHhHHBBBxIIIiII",
            round(self.mosfet_temperature),
            round(self.balancer_temperature),
            _clamp(round(self.voltage * 100), 0, 0xFFFF),
            _clamp(round(self.current * 10), -0x8000, 0x7FFF),
            _clamp(round(self.soc), 0, 100),
            soh,
            charge,
            discharge,
            balancer,
            _clamp(round(self.capacity_ah * 1_000_000), 0, 0xFFFFFFFF),
            _clamp(round(self.remaining_capacity * 1_000_000), 0, 0xFFFFFFFF),
            _clamp(round(self.cycles * self.capacity_ah * 1000), 0, 0xFFFFFFFF),
            self._power(),
            self._uptime(),
            self._balance_bits(),
        )
        throughput = _clamp(round(self.cycles * self.capacity_ah * 1000), 0, 0xFFFFFFFF)
        summary = struct.pack(
            "<HHHHHHHHHHHIIII",
            high_mv,
            high_cell,
            low_mv,
            low_cell,
            high_mv - low_mv,
            average,
            0,  # discharge MOSFET drain-source voltage
            0,  # discharge MOSFET drive voltage
            0,  # charge MOSFET drive voltage
            0,
            _ANT_LFP,
            throughput,  # total discharged, mAh
            throughput,  # total charged, mAh
            0,  # total discharging time, s
            0,  # total charging time, s
        )
        return head + cells + temperatures + core + summary
