"""JK (Jikong) battery management systems on a pseudo-terminal: a JK-B board and a JK PB bus.

* :class:`JkSimulator`: a JK-B*/JK-BD* board on its RS485/TTL port (the ``4E 57`` protocol,
  115200 baud on hardware). It answers the read-all request with a reply laid out like the
  captures in ``testdata/jk/jk_serial.json`` (cells, temperatures, voltage, current, SOC,
  cycles, alarms, status, the settings records, capacity, switches, identity, protocol version
  1). A password frame and writes of the charge (0xAB) / discharge (0xAC) switch get no
  answer, as the sources expect; the read-back shows whether a write took.
* :class:`JkPbBusSimulator`: several JK PB packs on ONE pty (one RS485 bus, 115200 baud), each
  with its own address, cells and capacity. A pack answers only the FC 0x10 triggers for its
  own address, with the 300-byte JK02 frame (32S layout) and its Modbus acknowledgement.

The battery model, the solar day and the faults are those of
:class:`~.bms.BmsSimulator`: scriptable ``cell_voltages``, ``current`` (+ = charging),
``temperatures``, ``mosfet_temperature``, ``soc``, ``protections``, the FETs, ``set_silent``,
``corrupt_next_reply``, ``stop_mid_frame_once``, ``inject_garbage`` and ``unplug``/``replug``.
On the bus each pack keeps these for itself (``bus.packs[address]``); the port-level ones
(garbage, unplug) belong to the bus.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
import contextlib
import random
from typing import Final

from ..protocols import ProtocolError, jk02, jk_pb, jk_serial
from .bms import _DEFAULT_REPLY_DELAY, BmsSimulator
from .pty import PtySerialPort

__all__ = ["JkPbBusSimulator", "JkPbPackSimulator", "JkSimulator"]

_STEP_INTERVAL: Final = 1.0  # s of real time between physics steps (as the other BMSes)
_GARBAGE_LENGTH: Final = 32
_REQUEST_LOG_LIMIT: Final = 4096
_RX_GAP: Final = 0.1  # s of silence after which a half-received request is forgotten
_SOFTWARE_VERSION: Final = "11.XW_S11.26___"
_MANUFACTURE_YYMM: Final = "2305"
_BALANCE_CURRENT: Final = 0.5  # A a balancing JK02 pack reports

# Settings records of a 16S LiFePO4 JK-B board as the captures' layout has them: protection
# limits in the units of JK's register table (10 mV, mV, s, A, °C).
_SETTINGS_RECORDS: Final[tuple[tuple[int, int], ...]] = (
    (0x8E, 5840),  # pack over-voltage 58.40 V
    (0x8F, 4480),  # pack under-voltage 44.80 V
    (0x90, 3650),  # cell over-voltage mV
    (0x91, 3400),  # recovery
    (0x92, 5),  # delay s
    (0x93, 2800),  # cell under-voltage mV
    (0x94, 3100),  # recovery
    (0x95, 5),
    (0x96, 300),  # cell difference protection mV
    (0x97, 200),  # discharge over-current A
    (0x98, 30),
    (0x99, 100),  # charge over-current A
    (0x9A, 30),
    (0x9B, 3400),  # balance start mV
    (0x9C, 10),  # balance difference mV
    (0x9E, 90),  # power tube over-temperature °C
    (0x9F, 70),
    (0xA0, 70),
    (0xA1, 60),
    (0xA2, 20),
    (0xA3, 55),
    (0xA4, 60),
)


def _protection_bits(protections: Iterable[str], table: Sequence[Iterable[str | None]]) -> int:
    """The alarm word for ``protections``: every bit whose names include an active one."""
    active = set(protections)
    return sum(1 << bit for bit, names in enumerate(table) if active & set(names))


class JkSimulator(BmsSimulator):
    """A JK-B*/JK-BD* board speaking ``4E 57`` on its RS485/TTL port.

    ``model`` is sent as the manufacturer naming (0xBA, 24 characters) and ``serial_number``
    as the device id code (0xB4, 8 characters); ``software_version`` (0xB7), ``balancer``
    (status bit 2) and ``protocol_version`` (0xC0: 1 = sign-magnitude current, 0 = the older
    offset encoding) are scriptable. ``passwords`` counts the password frames received.
    """

    protocol_name = "jk"
    _checksum_offset = -1

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
        protocol_version: int = 1,
    ) -> None:
        """Build the BMS; see :class:`~.bms.BmsSimulator` for the state it carries."""
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
        self.software_version = _SOFTWARE_VERSION
        self.protocol_version = protocol_version
        self.balancer = True
        self.passwords = 0
        self._assembler = jk_serial.FrameAssembler()

    def _default_model(self, cells: int) -> str:
        return f"JK-B2A{max(cells, 8)}S20P"

    def _default_serial(self) -> str:
        return f"{self._rng.randrange(10**8):08d}"

    def _forget_partial(self) -> None:
        super()._forget_partial()
        self._assembler.reset()

    def _split(self, rx: bytearray) -> list[bytes]:
        frames = self._assembler.feed(bytes(rx))
        rx.clear()
        # Replies (another BMS on the line, an echo of our own) are not requests.
        return [frame for frame in frames if frame[10] == jk_serial.TYPE_REQUEST]

    def _answer(self, request: bytes) -> bytes | None:
        frame = jk_serial.parse_frame(request)
        if frame.command == jk_serial.CMD_READ_ALL:
            return jk_serial.encode_frame(
                jk_serial.CMD_READ_ALL,
                self._read_all(),
                source=jk_serial.SOURCE_BMS,
                frame_type=jk_serial.TYPE_REPLY,
            )
        if frame.command == jk_serial.CMD_PASSWORD:
            self.passwords += 1
        elif frame.command == jk_serial.CMD_WRITE and len(frame.data) == 2:
            register, value = frame.data
            if register == jk_serial.REG_CHARGE_SWITCH:
                self._switch_fets(bool(value), None)
            elif register == jk_serial.REG_DISCHARGE_SWITCH:
                self._switch_fets(None, bool(value))
        return None

    @staticmethod
    def _text(value: str, length: int) -> bytes:
        return value.encode("ascii", "replace")[:length].ljust(length, b"\0")

    def _read_all(self) -> bytes:
        def u(value: float, size: int) -> bytes:
            return max(0, min((1 << 8 * size) - 1, round(value))).to_bytes(size, "big")

        sensors = self.temperatures[:2]
        status = int(self.charge_fet) | int(self.discharge_fet) << 1 | int(self.balancer) << 2
        records: list[tuple[int, bytes]] = [
            (jk_serial.REG_CELLS, jk_serial.encode_cells(self._cell_millivolts())),
            (
                jk_serial.REG_MOSFET_TEMPERATURE,
                jk_serial.encode_temperature(self.mosfet_temperature),
            ),
        ]
        for register, value in zip(
            (jk_serial.REG_BOX_TEMPERATURE, jk_serial.REG_BATTERY_TEMPERATURE),
            sensors,
            strict=False,
        ):
            records.append((register, jk_serial.encode_temperature(value)))
        records += [
            (jk_serial.REG_VOLTAGE, u(self.voltage * 100, 2)),
            (
                jk_serial.REG_CURRENT,
                jk_serial.encode_current(self.current, protocol_version=self.protocol_version),
            ),
            (jk_serial.REG_SOC, u(self.soc, 1)),
            (jk_serial.REG_SENSOR_COUNT, u(len(sensors), 1)),
            (jk_serial.REG_CYCLES, u(self.cycles, 2)),
            (jk_serial.REG_CYCLE_CAPACITY, u(self.cycles * self.capacity_ah, 4)),
            (jk_serial.REG_CELL_COUNT, u(self.cell_count, 2)),
            (
                jk_serial.REG_ALARMS,
                u(_protection_bits(self.protections, jk_serial.ALARM_BITS), 2),
            ),
            (jk_serial.REG_STATUS, u(status, 2)),
        ]
        records += [(register, u(value, 2)) for register, value in _SETTINGS_RECORDS]
        records += [
            (0xA9, u(self.cell_count, 1)),
            (jk_serial.REG_CAPACITY, u(self.capacity_ah, 4)),
            (jk_serial.REG_CHARGE_SWITCH, u(self._charge_switch, 1)),
            (jk_serial.REG_DISCHARGE_SWITCH, u(self._discharge_switch, 1)),
            (0xAF, u(0, 1)),  # LiFePO4
            (jk_serial.REG_DEVICE_ID, self._text(self._serial, 8)),
            (jk_serial.REG_MANUFACTURE_DATE, self._text(_MANUFACTURE_YYMM, 4)),
            (jk_serial.REG_WORKING_MINUTES, u(self._uptime() // 60, 4)),
            (jk_serial.REG_SOFTWARE_VERSION, self._text(self.software_version, 15)),
            (jk_serial.REG_ACTUAL_CAPACITY, u(self.capacity_ah, 4)),
            (jk_serial.REG_MANUFACTURER, self._text(self._model, 24)),
            (jk_serial.REG_PROTOCOL_VERSION, u(self.protocol_version, 1)),
        ]
        return jk_serial.encode_records(records)


# --- JK PB ---------------------------------------------------------------------------------

_PB_HARDWARE: Final = "15A"
_PB_SOFTWARE: Final = "15.32"
_PB_MAX_SENSORS: Final = 4


class JkPbPackSimulator(BmsSimulator):
    """One JK PB pack on a :class:`JkPbBusSimulator` (the bus owns the port and the clock).

    ``address`` is its DIP-switch address; ``hardware_version`` and ``software_version`` go
    into the device-info frame, with ``model`` and ``serial_number``. ``requests`` records the
    triggers addressed to this pack.
    """

    protocol_name = "jk_pb"
    _checksum_offset = -(jk_pb.ACK_LENGTH + 1)  # byte 299 of the frame, before the ACK

    def __init__(
        self,
        address: int,
        port: PtySerialPort,
        *,
        cells: int = 16,
        capacity_ah: float = 280.0,
        seed: int | None = None,
        model: str | None = None,
        serial_number: str | None = None,
        time_scale: float = 1.0,
        frozen: bool = False,
        reply_delay: float = _DEFAULT_REPLY_DELAY,
        start_time_of_day: float | None = None,
    ) -> None:
        """Build the pack; it answers on ``port`` (the bus's) once the bus starts."""
        if not jk_pb.MIN_ADDRESS <= address <= jk_pb.MAX_ADDRESS:
            raise ValueError("a JK PB pack address is 1 to 15")
        super().__init__(
            cells=cells,
            capacity_ah=capacity_ah,
            link_path=port.path,
            seed=seed,
            model=model,
            serial_number=serial_number,
            time_scale=time_scale,
            frozen=frozen,
            reply_delay=reply_delay,
            start_time_of_day=start_time_of_day,
        )
        self._port = port  # the bus's pty: replies go where the other packs' go
        self.address = address
        self.temperatures = [25.0, 24.0, 24.5, 25.5]
        self.hardware_version = _PB_HARDWARE
        self.software_version = _PB_SOFTWARE
        self.power_on_count = 3
        self.state_of_health = 100
        self._counter = 0

    def _default_model(self, cells: int) -> str:
        return "JK_PB2A16S20P"

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run on ``loop`` from now (the bus calls this when it starts)."""
        self._loop = loop
        self._started_at = loop.time()

    def detach(self) -> None:
        """Drop replies not sent yet (the bus stops or its cable is pulled)."""
        self._cancel_replies()

    def handle(self, request: bytes) -> None:
        """A trigger for this pack arrived on the bus: record it and answer unless silent."""
        self.requests.append(request)
        if len(self.requests) > _REQUEST_LOG_LIMIT:
            del self.requests[: _REQUEST_LOG_LIMIT // 2]
        if self._silent:
            return
        reply = self._answer(request)
        if reply:
            self._send(reply)

    def _default_serial(self) -> str:
        return f"{self._rng.randrange(10**11):011d}"

    def _split(self, rx: bytearray) -> list[bytes]:  # pragma: no cover - the bus cuts requests
        raise NotImplementedError

    def _answer(self, request: bytes) -> bytes | None:
        trigger = jk_pb.parse_trigger(request)
        if trigger.address != self.address:
            return None
        self._counter = (self._counter + 1) & 0xFF
        if trigger.register == jk_pb.REG_DEVICE_INFO:
            frame = jk02.encode_device_info(self.device_info(), counter=self._counter)
        elif trigger.register == jk_pb.REG_SETTINGS:
            frame = jk02.encode_settings(self.settings(), counter=self._counter)
        else:
            frame = jk02.encode_cell_info(self.cell_info(), jk02.LAYOUT_32S, counter=self._counter)
        return frame + jk_pb.encode_ack(self.address, trigger.register)

    def device_info(self) -> jk02.Jk02DeviceInfo:
        """What this pack sends as its device info."""
        return jk02.Jk02DeviceInfo(
            model=self._model,
            hardware_version=self.hardware_version,
            software_version=self.software_version,
            uptime_s=self._uptime() if self._loop is not None else 0,
            power_on_count=self.power_on_count,
            device_name=self._model,
            manufacturing_date="240628",
            serial=self._serial,
        )

    def settings(self) -> jk02.Jk02Settings:
        """What this pack sends as its settings (LiFePO4 limits, 1 C)."""
        return jk02.Jk02Settings(
            smart_sleep_voltage=3.5,
            cell_uvp=2.8,
            cell_uvpr=3.1,
            cell_ovp=3.65,
            cell_ovpr=3.4,
            balance_trigger_voltage=0.01,
            power_off_voltage=2.5,
            max_charge_current=self.capacity_ah,
            max_discharge_current=self.capacity_ah,
            max_balance_current=2.0,
            charge_otp=55.0,
            charge_utp=0.0,
            cell_count=self.cell_count,
            charge_switch=self._charge_switch,
            discharge_switch=self._discharge_switch,
            balancer_switch=True,
            nominal_capacity=self.capacity_ah,
            balancing_start_voltage=3.4,
        )

    def cell_info(self) -> jk02.Jk02CellInfo:
        """What this pack sends as its cell info."""
        balancing = bool(self.balancing)
        errors = 0
        for name in self.protections:
            if name in jk02.ERROR_BITS:
                errors |= 1 << jk02.ERROR_BITS.index(name)  # a name's first bit
        return jk02.Jk02CellInfo(
            cell_voltages=tuple(self.cell_voltages),
            voltage=self.voltage,
            current=self.current,
            temperatures=tuple(self.temperatures[:_PB_MAX_SENSORS]),
            mosfet_temperature=self.mosfet_temperature,
            errors=errors,
            balance_current=_BALANCE_CURRENT if balancing else 0.0,
            balancing_action=1 if balancing else 0,
            soc=round(self.soc),
            remaining_capacity=self.remaining_capacity,
            nominal_capacity=self.capacity_ah,
            cycles=self.cycles,
            cycle_capacity=self.cycles * self.capacity_ah,
            soh=self.state_of_health,
            runtime_s=self._uptime() if self._loop is not None else 0,
            charge_fet=self.charge_fet,
            discharge_fet=self.discharge_fet,
        )


def _per_pack[T](value: T | Sequence[T], count: int, what: str) -> list[T]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != count:
            raise ValueError(f"{what}: one value per pack")
        return list(value)
    return [value] * count


class JkPbBusSimulator:
    """Several JK PB packs on one pty, each answering only its own address.

    ``cells``, ``capacity_ah`` and ``serial_numbers`` take one value for all packs or one per
    address. ``packs`` maps address to :class:`JkPbPackSimulator` (its state and faults);
    :meth:`set_silent` silences one pack, :meth:`inject_garbage`, :meth:`unplug` and
    :meth:`replug` act on the shared line. ``requests`` records every well-formed trigger on
    the bus, for any address.
    """

    def __init__(
        self,
        addresses: Iterable[int] = (1, 2, 3),
        *,
        cells: int | Sequence[int] = 16,
        capacity_ah: float | Sequence[float] = 280.0,
        link_path: str | None = None,
        seed: int | None = None,
        serial_numbers: Sequence[str] | None = None,
        time_scale: float = 1.0,
        frozen: bool = False,
        reply_delay: float = _DEFAULT_REPLY_DELAY,
        start_time_of_day: float | None = None,
    ) -> None:
        """Build the packs; nothing runs and no pty exists until :meth:`start`."""
        addresses = list(addresses)
        if not addresses or len(set(addresses)) != len(addresses):
            raise ValueError("a JK PB bus needs distinct pack addresses")
        count = len(addresses)
        cell_counts = _per_pack(cells, count, "cells")
        capacities = _per_pack(capacity_ah, count, "capacity_ah")
        serials: list[str | None] = list(serial_numbers) if serial_numbers else [None] * count
        if len(serials) != count:
            raise ValueError("serial_numbers: one value per pack")
        self._port = PtySerialPort(link_path)
        self.time_scale = time_scale
        self.packs: dict[int, JkPbPackSimulator] = {
            address: JkPbPackSimulator(
                address,
                self._port,
                cells=cell_counts[index],
                capacity_ah=capacities[index],
                seed=None if seed is None else seed + address,
                serial_number=serials[index],
                time_scale=time_scale,
                frozen=frozen,
                reply_delay=reply_delay,
                start_time_of_day=start_time_of_day,
            )
            for index, address in enumerate(addresses)
        }
        self.requests: list[bytes] = []
        self._rx = bytearray()
        self._last_rx = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._rng_garbage = random.Random(seed)

    @property
    def port(self) -> str:
        """The serial port path a client opens (the whole bus)."""
        return self._port.path

    @property
    def plugged(self) -> bool:
        """Whether the simulated cable is plugged in."""
        return self._port.plugged

    @property
    def addresses(self) -> list[int]:
        """The pack addresses on this bus."""
        return list(self.packs)

    async def start(self) -> None:
        """Create the pty and start answering (and the packs' physics)."""
        if self._stopped:
            raise RuntimeError("simulator was stopped")
        if self._task is not None:
            return
        loop = self._loop = asyncio.get_running_loop()
        for pack in self.packs.values():
            pack.attach(loop)
        await self._port.open(self._received)
        self._task = loop.create_task(self._run(), name="jk-pb-bus-sim")

    async def stop(self) -> None:
        """Stop answering and remove the pty; safe to call more than once."""
        self._stopped = True
        for pack in self.packs.values():
            pack.detach()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._port.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(_STEP_INTERVAL)
            for pack in self.packs.values():
                if not pack.frozen:
                    pack.step(_STEP_INTERVAL * pack.time_scale)

    def set_silent(self, address: int, silent: bool) -> None:
        """Make one pack stop (or resume) answering, as a pack switched off or unplugged."""
        self.packs[address].set_silent(silent)

    def inject_garbage(self, data: bytes | None = None) -> None:
        """Put non-protocol bytes on the bus now (random ones unless ``data`` is given)."""
        if data is None:
            data = self._rng_garbage.randbytes(_GARBAGE_LENGTH)
        self._port.write(data)

    async def unplug(self) -> None:
        """Pull the bus cable: clients see end-of-file/EIO and the port path disappears."""
        for pack in self.packs.values():
            pack.detach()
        await self._port.unplug()
        self._rx.clear()

    async def replug(self) -> None:
        """Plug the bus cable back in: a new pty appears at the same path."""
        await self._port.replug()

    def _received(self, data: bytes) -> None:
        assert self._loop is not None
        now = self._loop.time()
        if now - self._last_rx > _RX_GAP:
            self._rx.clear()
        self._last_rx = now
        self._rx += data
        for request in _cut_triggers(self._rx):
            self.requests.append(request)
            if len(self.requests) > _REQUEST_LOG_LIMIT:
                del self.requests[: _REQUEST_LOG_LIMIT // 2]
            pack = self.packs.get(request[0])
            if pack is not None:
                pack.handle(request)


def _cut_triggers(rx: bytearray) -> list[bytes]:
    """Cut well-formed 11-byte triggers out of ``rx`` (consumed in place)."""
    found: list[bytes] = []
    position = 0
    size = len(rx)
    while size - position >= jk_pb.TRIGGER_LENGTH:
        candidate = bytes(rx[position : position + jk_pb.TRIGGER_LENGTH])
        try:
            jk_pb.parse_trigger(candidate)
        except ProtocolError:
            position += 1
            continue
        found.append(candidate)
        position += jk_pb.TRIGGER_LENGTH
    del rx[:position]
    return found
