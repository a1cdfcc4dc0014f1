"""Bluetooth battery management systems through ``aiobmsble``: the adapter and one link per BMS.

``aiobmsble`` (Apache-2.0, the library behind the BMS_BLE integration) speaks about fifty BMS
families over Bluetooth LE. This module does not decode any of their frames itself; it wraps the
library so a Bluetooth BMS looks like every other BMS of this integration:

* :func:`reading_from_sample` turns one ``aiobmsble.BMSSample`` into a
  :class:`~.bms_common.BmsReading` (SI units; current and power positive while charging, which is
  aiobmsble's own convention: "power [W] (positive: charging)", and what the JK, JBD and Daly
  captures state). It returns a :class:`BleBmsReading`, a ``BmsReading`` with the few extras the
  library knows (state of health, balancer state and current, the raw problem code, ...).
* :class:`BleBmsLink` owns one aiobmsble BMS instance for one device: bounded updates, errors
  as :class:`~.ProtocolError` subclasses, device information, counters, a clean close, and -
  for JK and JBD (:data:`FET_FAMILIES`) - charge/discharge FET switching with read-back
  (:meth:`BleBmsLink.set_fets`). The library has no write API: the switch commands are ours,
  sent through the library's own connection and its non-public message path (``_connect``,
  ``_op_lock``, ``_send_msg``), which tests/protocols/test_ble_bms.py pins.
* :func:`supported_families`, :func:`bms_class_for` and :func:`matchers` expose the library's
  families and its Bluetooth advertisement matchers (the Home Assistant side generates the
  manifest's ``bluetooth`` matchers from them).
* :func:`decode_ble_capture` runs one captured response frame through the same adapter and
  aiobmsble class a live entry uses, fed by a simulated peer (``simulators/ble_bms.py``) that
  answers with that frame.

Temperatures. aiobmsble tags each sensor (``TempSensor.T``). Battery sensors - generic, cell,
cell max/min - become ``temperatures``, which the charge rules scan for the coldest and hottest
cell; ``MOSFET`` sensors become ``mosfet_temperature`` (the hottest of them, since the MOSFET
limit acts on the hottest); PCB, heater, balancer and ambient sensors are no battery temperature
and go to ``other_temperatures``. Where aiobmsble and syssi/esphome-jk-bms disagree about JK 32S
byte 254 (aiobmsble: a second MOSFET sensor, syssi: "temperature 5"), we follow aiobmsble: it is
the library a live entry uses, and in every capture where that byte is set it equals the MOSFET
sensor at 144 - so it never enters the battery temperatures as a cell reading.

Problems. ``problem_code`` is a BMS-specific word (0 = no problem) and ``problem`` is aiobmsble's
verdict, which also turns true for readings it finds implausible - among them an empty pack
reporting 0 Ah remaining. A protection that stops charging must not fire for an empty pack that
needs charging, and implausible values are already made "unknown" by
``control.snapshot.BatterySnapshot.sanitized``. So only what the *BMS* reports becomes a
protection: a non-zero ``problem_code``, and the ``problem`` flag of the few families that set it
themselves (the link reads the sample raw to tell the two apart). For JBD the code is the
protection word of the JBD document and is named bit by bit with the shared names of
:mod:`.bms_common` (``cell_overvoltage``, ...). For every other family the reading carries
:data:`BMS_PROBLEM` - "the BMS reports a problem", without inventing a cause - and the raw code
for display: the bits are not documented alike (JK's error word, for one, changed meaning between
firmware releases; syssi's esphome-jk-bms keeps per-firmware overrides for its names, and
aiobmsble keeps only 16 of its 32 bits). The charge controller
(``control/limits.py``) must treat :data:`BMS_PROBLEM` as a charge-blocking BMS-internal
protection (charge current 0, warning "BMS internal"); see that module's protection table.

Connection. aiobmsble resolves ``bleak.BleakClient`` when ``aiobmsble.basebms`` is first imported
(``from bleak import BleakClient``), while Home Assistant's bluetooth integration replaces
``bleak.BleakClient`` with its routing wrapper when it sets up. Import aiobmsble's BMS modules
(:func:`bms_class_for`, :func:`matchers`) only after that, or connections bypass HA's choice of
adapter and proxy; :func:`library_bleak_client` tells which class the library will use. This
module itself imports only the top level of ``aiobmsble``, which does not import bleak.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
import contextlib
from dataclasses import dataclass, field
import functools
import importlib
import itertools
import logging
import math
import pkgutil
from typing import TYPE_CHECKING, Any, Final

import aiobmsble  # type: ignore[import-untyped]

from . import ProtocolError
from .bms_common import PROTECTION_NAMES, BmsReading, bit_flags, power_of

if TYPE_CHECKING:
    from bleak.backends.device import BLEDevice

_LOGGER = logging.getLogger(__name__)

__all__ = [
    "BMS_PROBLEM",
    "CAPTURE_PROTOCOLS",
    "DALY_FAMILY",
    "FET_FAMILIES",
    "JBD_FAMILY",
    "JK_FAMILY",
    "BleBmsAuthError",
    "BleBmsBadData",
    "BleBmsError",
    "BleBmsLink",
    "BleBmsReading",
    "BleBmsTimeout",
    "BleBmsUnreachable",
    "BleBmsUnsupported",
    "BleBmsWriteRejected",
    "bms_class_for",
    "decode_ble_capture",
    "follow_bleak_client",
    "jk_switch_command",
    "library_bleak_client",
    "matchers",
    "reading_from_sample",
    "supported_families",
]

BMS_PROBLEM: Final = "bms_problem"
"""Protection name for "the BMS reports a problem" when its code names no documented cause."""

JK_FAMILY: Final = "jikong"
JBD_FAMILY: Final = "jbd"
DALY_FAMILY: Final = "daly"
FET_FAMILIES: Final = frozenset({JK_FAMILY, JBD_FAMILY})
"""Families whose charge/discharge FETs :meth:`BleBmsLink.set_fets` can switch."""

CAPTURE_PROTOCOLS: Final[Mapping[str, str]] = {
    "jk_ble": JK_FAMILY,
    "jbd_ble": JBD_FAMILY,
    "daly_ble": DALY_FAMILY,
}
"""``scripts/decode`` protocol names and the aiobmsble family each one runs through."""

_MODULE_SUFFIX: Final = "_bms"
_NOT_A_FAMILY: Final = frozenset({"dummy"})  # aiobmsble's template module, no real device
_JBD_PROTECTION_BITS: Final = len(PROTECTION_NAMES)
_BATTERY_SENSORS: Final = frozenset({"GENERIC", "CELL", "CELL_MAX", "CELL_MIN"})
_MOSFET_SENSOR: Final = "MOSFET"
_MAX_CELLS: Final = 64  # more than any family carries (aiobmsble's largest is 48)
TempSensor: Final = aiobmsble.TempSensor


# --- errors ----------------------------------------------------------------------------------


class BleBmsError(ProtocolError):
    """A Bluetooth BMS could not be read."""


class BleBmsUnreachable(BleBmsError):  # noqa: N818 - reads as what happened
    """No connection: out of range, no free proxy slot, or the link dropped mid-exchange."""


class BleBmsTimeout(BleBmsError):  # noqa: N818 - reads as what happened
    """Connected, but no complete valid answer within the time allowed."""


class BleBmsAuthError(BleBmsError):
    """The BMS refused the password (JBD modules with a login)."""


class BleBmsBadData(BleBmsError):  # noqa: N818 - reads as what happened
    """The library could not turn what the BMS sent into a reading."""


class BleBmsUnsupported(BleBmsError):  # noqa: N818 - reads as what happened
    """No aiobmsble family of that name, a frame the library does not read, or no FET control."""


class BleBmsWriteRejected(BleBmsError):  # noqa: N818 - reads as what happened
    """The BMS did not take a FET switch request; ``reading`` is the state read back (if any)."""

    def __init__(self, message: str, reading: BleBmsReading | None = None) -> None:
        """Keep the state read after the write so the caller can show it."""
        super().__init__(message)
        self.reading = reading


# --- families --------------------------------------------------------------------------------


def _family_id(name: str) -> str:
    family = name.rsplit(".", 1)[-1]
    return family.removesuffix(_MODULE_SUFFIX)


@functools.cache
def supported_families() -> tuple[str, ...]:
    """aiobmsble's BMS family ids (``jikong``, ``jbd``, ``daly``, ...), sorted.

    Lists the library's ``bms`` package on disk the first time (call it from an executor inside
    Home Assistant); ids are the module names without ``_bms``.
    """
    import aiobmsble.bms  # type: ignore[import-untyped]

    names = (
        _family_id(module.name)
        for module in pkgutil.iter_modules(aiobmsble.bms.__path__)
        if module.name.endswith(_MODULE_SUFFIX)
    )
    return tuple(sorted(name for name in names if name not in _NOT_A_FAMILY))


@functools.cache
def bms_class_for(name: str) -> type[Any]:
    """aiobmsble's BMS class for a family id (``jikong`` or its module name ``jikong_bms``).

    Imports the module the first time (call it from an executor inside Home Assistant, after the
    bluetooth integration has set up: see the module docstring). Raises
    :class:`BleBmsUnsupported` for an unknown family.
    """
    family = _family_id(name)
    if family not in supported_families():
        raise BleBmsUnsupported(f"aiobmsble {aiobmsble.__version__} has no BMS family {name!r}")
    module = importlib.import_module(f"aiobmsble.bms.{family}{_MODULE_SUFFIX}")
    bms_class: type[Any] = module.BMS
    return bms_class


def matchers() -> dict[str, list[dict[str, Any]]]:
    """Each family's Bluetooth advertisement matchers, exactly as aiobmsble defines them.

    Keys of a matcher: ``local_name`` (shell-style pattern), ``service_uuid``,
    ``service_data_uuid``, ``manufacturer_id``, ``manufacturer_data_start`` (list of ints),
    ``oui`` (first three address bytes) and ``connectable``.
    """
    return {
        family: [dict(matcher) for matcher in bms_class_for(family).matcher_dict_list()]
        for family in supported_families()
    }


def library_bleak_client() -> type[Any]:
    """The ``BleakClient`` class aiobmsble builds and connects with (imports its base module)."""
    from aiobmsble import basebms

    client: type[Any] = basebms.BleakClient
    return client


def follow_bleak_client() -> bool:
    """Make aiobmsble use whatever ``bleak.BleakClient`` is now; True if that changed it.

    For Home Assistant, at entry setup (the bluetooth integration is set up by then and has put
    its routing wrapper in ``bleak.BleakClient``): if ``aiobmsble.basebms`` was imported earlier,
    it still holds the plain client, whose connections would bypass HA's adapters and proxies.
    Habluetooth does the same for bleak-retry-connector. Not for use inside
    ``simulators.ble_bms.aiobmsble_on_simulated_peers`` (it would undo that redirection).
    """
    from aiobmsble import basebms
    import bleak

    if basebms.BleakClient is bleak.BleakClient:
        return False
    _LOGGER.debug("aiobmsble now connects through %s", bleak.BleakClient)
    basebms.BleakClient = bleak.BleakClient
    return True


# --- the adapter -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BleBmsReading(BmsReading):
    """A :class:`BmsReading` with what aiobmsble adds; None where the BMS does not say.

    ``soh`` %, ``balancer_active`` (the BMS balances now, whichever cell), ``balance_current`` A,
    ``problem_code`` (the BMS's raw word), ``library_problem`` (aiobmsble's own verdict, which
    includes its plausibility checks: shown, never a protection), ``heater``,
    ``other_temperatures`` (PCB, heater, balancer, ambient sensors, °C), ``runtime`` s,
    ``firmware`` and ``hardware`` (from device information).
    """

    soh: float | None = None
    balancer_active: bool | None = None
    balance_current: float | None = None
    problem_code: int | None = None
    library_problem: bool | None = None
    heater: bool | None = None
    other_temperatures: tuple[float, ...] = field(default=())
    runtime: int | None = None
    firmware: str | None = None
    hardware: str | None = None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # an int too large for a float
        return None


def _integer(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return int(value)


def _flag(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _sensor_kind(sensor: object) -> str:
    kind = getattr(sensor, "type", None)
    return str(getattr(kind, "name", "GENERIC"))


def _cells(values: object) -> tuple[float, ...]:
    if not isinstance(values, list | tuple):
        return ()
    if all(type(value) is float for value in values):  # what the library gives: runs per update
        return tuple(values)
    return tuple(number for number in map(_number, values) if number is not None)


def _temperatures(
    sample: Mapping[str, Any],
) -> tuple[tuple[float, ...], float | None, tuple[float, ...]]:
    battery: list[float] = []
    mosfet: list[float] = []
    other: list[float] = []
    values = sample.get("temp_values")
    for sensor in values if isinstance(values, list | tuple) else ():
        if type(sensor) is TempSensor:
            value = float(sensor.value)
        elif isinstance(sensor, str | bytes | bool):
            continue
        else:
            try:
                value = float(sensor)
            except TypeError, ValueError, OverflowError:
                continue
        kind = _sensor_kind(sensor)
        if kind in _BATTERY_SENSORS:
            battery.append(value)
        elif kind == _MOSFET_SENSOR:
            mosfet.append(value)
        else:
            other.append(value)
    if not battery and not values and (single := _number(sample.get("temperature"))) is not None:
        battery.append(single)  # a family that reports one temperature and no sensor list
    return tuple(battery), (max(mosfet) if mosfet else None), tuple(other)


def _protections(family: str | None, code: int | None, bms_problem: bool) -> frozenset[str]:
    names: set[str] = set()
    if code:
        if family == JBD_FAMILY:
            # The JBD protection word (register 0x03), bit order of the JBD document.
            names.update(
                name for bit, name in enumerate(PROTECTION_NAMES) if code >> bit & 1 and name
            )
            if code >> _JBD_PROTECTION_BITS:
                names.add(BMS_PROBLEM)
        else:
            names.add(BMS_PROBLEM)
    if bms_problem and not names:
        names.add(BMS_PROBLEM)
    return frozenset(names)


def reading_from_sample(
    sample: Mapping[str, Any],
    *,
    family: str | None = None,
    bms_problem: bool = False,
) -> BleBmsReading:
    """One aiobmsble sample as a reading (see the module docstring for the choices made).

    ``family`` (an id from :func:`supported_families`) lets a documented ``problem_code`` layout
    be named bit by bit (JBD); ``bms_problem`` is the problem flag the BMS itself reported
    (aiobmsble's raw sample, before its plausibility checks). Balancing per cell comes from an
    integer ``balancer`` (aiobmsble's convention: an int is a bit mask, bit 0 = cell 1); a bool
    only says whether the BMS balances at all. Never raises for odd values: anything that is
    not a number of the expected kind is left unknown.
    """
    cells = _cells(sample.get("cell_voltages"))
    voltage = _number(sample.get("voltage"))
    current = _number(sample.get("current"))
    power = _number(sample.get("power"))
    if power is None:
        power = power_of(voltage, current)
    temperatures, mosfet, other = _temperatures(sample)
    balancer = sample.get("balancer")
    balancing: tuple[bool, ...] = ()
    balancer_active = _flag(balancer)
    if isinstance(balancer, int) and not isinstance(balancer, bool):
        count = len(cells) or (_integer(sample.get("cell_count")) or 0)
        balancing = bit_flags(balancer, max(0, min(count, _MAX_CELLS)))
        balancer_active = balancer != 0
    code = _integer(sample.get("problem_code"))
    cycles = _integer(sample.get("cycles"))
    design = _number(sample.get("design_capacity"))
    return BleBmsReading(
        soc=_number(sample.get("battery_level")),
        voltage=voltage,
        current=current,
        power=power,
        remaining_capacity=_number(sample.get("cycle_charge")),
        nominal_capacity=design if design else None,
        cycles=cycles,
        cell_voltages=cells,
        temperatures=temperatures,
        mosfet_temperature=mosfet,
        balancing=balancing,
        charge_fet=_flag(sample.get("chrg_mosfet")),
        discharge_fet=_flag(sample.get("dischrg_mosfet")),
        protections=_protections(family, code, bms_problem),
        soh=_number(sample.get("battery_health")),
        balancer_active=balancer_active,
        balance_current=_number(sample.get("balance_current")),
        problem_code=code,
        library_problem=_flag(sample.get("problem")),
        heater=_flag(sample.get("heater")),
        other_temperatures=other,
        runtime=_integer(sample.get("runtime")),
    )


# --- the link --------------------------------------------------------------------------------

_CLOSE_TIMEOUT: Final = 10.0
_LINK_ERRORS: Final = (ConnectionError, EOFError, OSError)


def _is_bleak_error(error: BaseException) -> bool:
    from bleak.exc import BleakError

    return isinstance(error, BleakError)


# FET control: the commands aiobmsble does not send.
_READBACK_ATTEMPTS: Final = 3
_READBACK_PAUSE: Final = 0.3
_ACK_TIMEOUT: Final = 3.0
_ACK_POLL: Final = 0.01
_JK_SWITCH_COMMANDS: Final = (0x1D, 0x1E)  # charge, discharge
_JK_COMMAND_GAP: Final = 0.1


def _fets_agree(reading: BmsReading, charge: bool | None, discharge: bool | None) -> bool:
    return (charge is None or reading.charge_fet is charge) and (
        discharge is None or reading.discharge_fet is discharge
    )


def jk_switch_command(command: int, on: bool) -> bytes:
    """A JK02 BLE write: ``AA 55 90 EB cmd 04 value (u32 LE), 9 zero bytes, sum8`` (20 bytes).

    Layout: syssi/esphome-jk-bms docs/protocol-design-ble.md ("Command Structure"); the switch
    registers are that project's components/jk_bms_ble/switch/__init__.py: charging 0x1D,
    discharging 0x1E on JK02_24S and JK02_32S (the families aiobmsble's ``jikong`` reads).
    """
    body = _JK_COMMAND_HEADER + bytes((command, 4)) + int(on).to_bytes(4, "little") + bytes(9)
    return body + bytes((sum(body) & 0xFF,))


def _write_mode(bms: Any) -> bool:
    return bool(bms._inv_wr_mode)


async def _jk_switch(bms: Any, charge: bool | None, discharge: bool | None) -> None:
    """Send the JK switch commands; the BMS's answer (its settings frame) is not awaited.

    The read-back decides, as for the wired JK (protocols/bms_client.py).
    """
    handle = getattr(bms, "_char_write_handle", -1)
    char: int | str = handle if isinstance(handle, int) and handle >= 0 else bms.uuid_tx()
    requests = [
        (command, on)
        for command, on in zip(_JK_SWITCH_COMMANDS, (charge, discharge), strict=True)
        if on is not None
    ]
    for index, (command, on) in enumerate(requests):
        if index:
            await asyncio.sleep(_JK_COMMAND_GAP)
        await bms._send_msg(jk_switch_command(command, on), 0, char, 0, _write_mode(bms))


def _jbd_ack(buffer: bytes, register: int) -> int | None:
    """The status of a complete ``DD reg status len … 77`` answer to ``register`` in ``buffer``."""
    from . import jbd

    start = buffer.find(bytes((jbd.START, register)))
    while start >= 0:
        if len(buffer) >= start + jbd.MIN_FRAME_LENGTH:
            end = start + jbd.MIN_FRAME_LENGTH + buffer[start + 3]
            try:
                return jbd.parse_frame(buffer[start:end]).status
            except ProtocolError:
                pass
        start = buffer.find(bytes((jbd.START, register)), start + 1)
    return None


async def _jbd_exchange(bms: Any, frame: bytes, register: int) -> int:
    """Write one JBD frame and wait for its acknowledgement; the status byte.

    aiobmsble's JBD handler passes every notification into its frame buffer but takes only
    read answers (an OK write answer carries checksum 0x0000, which it does not accept), so
    the answer is picked from that buffer here.
    """
    bms._frame.clear()
    await bms._send_msg(frame, 0, bms.uuid_tx(), 0, _write_mode(bms))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _ACK_TIMEOUT
    while (status := _jbd_ack(bytes(bms._frame), register)) is None:
        if not bms.is_connected:
            raise ConnectionError("the link dropped before the BMS acknowledged the write")
        if loop.time() >= deadline:
            raise TimeoutError(f"no acknowledgement of the write to JBD register 0x{register:02X}")
        await asyncio.sleep(_ACK_POLL)
    return status


async def _jbd_switch(bms: Any, code: int) -> None:
    """Factory mode, MOSFET control 0xE1, leave factory mode without saving.

    The sequence of the wired JBD (protocols/bms_client.py, registers in protocols/jbd.py):
    over Bluetooth the module passes the same ``DD 5A …`` frames to the BMS. Newer boards take
    0xE1 only in factory mode; older ones accept the factory commands as well.
    """
    from . import jbd

    try:
        status = await _jbd_exchange(bms, jbd.encode_factory_mode_enter(), jbd.REG_FACTORY_ENTER)
        if status != jbd.STATUS_OK:
            raise BleBmsWriteRejected(f"JBD refused factory mode (status 0x{status:02X})")
        try:
            frame = jbd.encode_write(jbd.REG_MOSFET_CONTROL, bytes((0x00, code)))
            status = await _jbd_exchange(bms, frame, jbd.REG_MOSFET_CONTROL)
            if status != jbd.STATUS_OK:
                raise BleBmsWriteRejected(f"JBD refused MOSFET control (status 0x{status:02X})")
        finally:
            if bms.is_connected:
                with contextlib.suppress(TimeoutError, ConnectionError):
                    await _jbd_exchange(bms, jbd.encode_factory_mode_exit(), jbd.REG_FACTORY_EXIT)
    finally:
        # An answer left in the buffer would be glued to the next read answer.
        bms._frame.clear()
        bms._msg_event.clear()


class BleBmsLink:
    """One BMS over Bluetooth: an aiobmsble instance, bounded updates, a clean close.

    ``bms_class`` is aiobmsble's class for the family (:func:`bms_class_for`), ``ble_device`` the
    device as the Bluetooth stack last saw it. ``timeout`` bounds every :meth:`update` and
    :meth:`device_info` as a whole (connect, login, requests). ``secret`` is the password of BMSs
    that need one (JBD modules with a login).

    ``keep_connection`` trades radio time against connection slots: True holds the link between
    updates (an update is one request/answer, typically well under a second; the BMS and the
    adapter keep a connection slot the whole time, and a dropped link is noticed at the next
    update), False disconnects after every update (each update pays for connecting, service
    discovery and the BMS's handshake, one to several seconds, but the slot is free in between -
    what an ESPHome Bluetooth proxy with its three slots needs when it serves several devices).

    Every failure raises a :class:`BleBmsError` (a :class:`~.ProtocolError`) and leaves the link
    disconnected, so the next update starts from a fresh connection. Counters: ``updates``
    (successful), ``failures``, ``connects`` (connection set-ups started) and ``reconnects``
    (set-ups after the first); ``last_error`` is the last failure's text.
    """

    def __init__(
        self,
        bms_class: type[Any],
        ble_device: BLEDevice,
        *,
        keep_connection: bool,
        timeout: float = 30.0,
        secret: str = "",
    ) -> None:
        """Build the aiobmsble instance; nothing connects before the first update."""
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        self._bms_class = bms_class
        self._family = _family_id(bms_class.__module__)
        self._keep_connection = keep_connection
        self._timeout = timeout
        self._secret = secret
        self._device = ble_device
        self._pending: BLEDevice | None = None
        self._bms: Any = self._new_bms(ble_device)
        self._lock = asyncio.Lock()
        self._closed = False
        self._interrupted = False
        self._jbd_switches: tuple[bool, bool] | None = None
        self.updates = 0
        self.failures = 0
        self.connects = 0
        self.last_error: str | None = None

    def _new_bms(self, ble_device: BLEDevice) -> Any:
        config = aiobmsble.BMSConfig(keep_alive=True, secret=self._secret)
        return self._bms_class(ble_device, config)

    @property
    def family(self) -> str:
        """The aiobmsble family id of this BMS."""
        return self._family

    @property
    def address(self) -> str:
        """The Bluetooth address of the device (of the newest BLEDevice handed over)."""
        return (self._pending or self._device).address

    @property
    def keep_connection(self) -> bool:
        """Whether the connection is held between updates."""
        return self._keep_connection

    @property
    def is_connected(self) -> bool:
        """Whether the link is up right now."""
        return bool(self._bms.is_connected)

    @property
    def reconnects(self) -> int:
        """Connection set-ups after the first one."""
        return max(0, self.connects - 1)

    def replace_device(self, ble_device: BLEDevice) -> None:
        """Use a newer BLEDevice (another adapter or proxy is now the best route).

        Takes effect at the next update: the current connection, if any, is closed first.
        """
        current = self._pending or self._device
        if ble_device is current:
            return
        self._pending = ble_device

    async def _apply_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        await self._disconnect()
        self._device = pending
        self._bms = self._new_bms(pending)

    async def update(self) -> BleBmsReading:
        """Read the BMS once; raises :class:`BleBmsError` (a ProtocolError) on any failure."""
        async with self._lock:
            self._check_open()
            await self._apply_pending()
            sample, bms_problem = await self._guarded(self._read_sample)
            self.updates += 1
            return reading_from_sample(sample, family=self._family, bms_problem=bms_problem)

    async def _read_sample(self) -> tuple[dict[str, Any], bool]:
        sample: dict[str, Any] = await self._bms.async_update(raw=True)
        bms_problem = bool(sample.get("problem", False))
        add_missing = getattr(self._bms_class, "_add_missing_values", None)
        raw_values = getattr(self._bms, "_raw_values", None)
        if add_missing is not None and raw_values is not None:
            add_missing(sample, raw_values())
        return sample, bms_problem

    async def device_info(self) -> dict[str, str]:
        """What the BMS says about itself: manufacturer, model, serial_number, sw/hw versions.

        The library's static defaults (manufacturer and model of the family) fill what the
        device does not send. Raises :class:`BleBmsError` like :meth:`update`.
        """
        async with self._lock:
            self._check_open()
            await self._apply_pending()
            info = await self._guarded(self._read_info)
        result: dict[str, str] = {}
        static = getattr(self._bms_class, "INFO", {})
        for key, target in (
            ("manufacturer", "manufacturer"),
            ("default_manufacturer", "manufacturer"),
            ("model", "model"),
            ("default_model", "model"),
        ):
            if isinstance(static.get(key), str):
                result.setdefault(target, static[key])
        result.update({k: v for k, v in info.items() if isinstance(v, str) and v})
        return result

    async def _read_info(self) -> dict[str, Any]:
        info: dict[str, Any] = dict(await self._bms.device_info())
        return info

    # --- FET control ---

    @property
    def can_switch_fets(self) -> bool:
        """Whether :meth:`set_fets` can switch this family's FETs (JK and JBD)."""
        return self._family in FET_FAMILIES

    async def set_fets(
        self, *, charge: bool | None = None, discharge: bool | None = None
    ) -> BleBmsReading:
        """Switch the charge and/or discharge FET (None = leave it), then read back and verify.

        aiobmsble reads only, so the switch commands are this module's, sent through the
        library's own connection (see "FET control" in :meth:`_switch_and_read`). Raises
        :class:`BleBmsUnsupported` for a family other than JK and JBD,
        :class:`BleBmsWriteRejected` when the state read back differs from the request (a
        protection holding the FET off, a refused write), and every other :class:`BleBmsError`
        like :meth:`update`, leaving the link disconnected.
        """
        async with self._lock:
            self._check_open()
            if not self.can_switch_fets:
                raise BleBmsUnsupported(
                    f"no FET control for the aiobmsble family {self._family!r} over Bluetooth"
                )
            await self._apply_pending()
            reading = await self._guarded(
                functools.partial(self._switch_and_read, charge, discharge)
            )
            self.updates += 1
        if not _fets_agree(reading, charge, discharge):
            raise BleBmsWriteRejected(
                f"BMS {self.address} did not switch the FETs to charge={charge}, "
                f"discharge={discharge}: it reports charge={reading.charge_fet}, "
                f"discharge={reading.discharge_fet}",
                reading,
            )
        return reading

    async def _reading(self) -> BleBmsReading:
        sample, bms_problem = await self._read_sample()
        return reading_from_sample(sample, family=self._family, bms_problem=bms_problem)

    async def _switch_and_read(self, charge: bool | None, discharge: bool | None) -> BleBmsReading:
        """Write the switch commands, then read the BMS until it agrees (or give up).

        FET control. aiobmsble (0.28 to 0.31 at least) has no write API, so the commands go
        through its non-public message path: ``_connect()`` (connects, logs in, starts
        notifications - or nothing when connected), the ``_op_lock`` its own updates hold, and
        ``_send_msg()`` to the family's write characteristic (JK: ``_char_write_handle``, the
        handle its connection set-up found; JBD: ``uuid_tx()``) in the write mode it settled on
        (``_inv_wr_mode``). So a write never opens a second connection and never interleaves
        with a library request. tests/protocols/test_ble_bms.py pins this: a library release
        that renames any of it fails those tests, not a user's switch.
        """
        if charge is None and discharge is None:
            return await self._reading()
        bms = self._bms
        if self._family == JBD_FAMILY:
            code = await self._jbd_code(charge, discharge)
            await bms._connect()
            async with bms._op_lock:
                await _jbd_switch(bms, code)
            self._jbd_switches = (not code & 0x01, not code & 0x02)
        else:
            await bms._connect()
            async with bms._op_lock:
                await _jk_switch(bms, charge, discharge)
        reading = await self._fresh_reading()
        for _ in range(_READBACK_ATTEMPTS - 1):
            if _fets_agree(reading, charge, discharge):
                break
            await asyncio.sleep(_READBACK_PAUSE)  # a FET may take a moment to follow
            reading = await self._fresh_reading()
        return reading

    async def _fresh_reading(self) -> BleBmsReading:
        # aiobmsble's JK class reuses a cell info frame the BMS streamed on its own; one from
        # before the switch must not count as the read-back.
        self._bms._msg_event.clear()
        return await self._reading()

    async def _jbd_code(self, charge: bool | None, discharge: bool | None) -> int:
        """The 0xE1 code (bit 0: charge off, bit 1: discharge off) for a request.

        0xE1 sets both switches at once, so the one left alone must be written as it is. The
        BMS cannot be asked for its switches: use what this link last wrote, else infer them
        from the FETs as protocols/bms_client.py does for the wired JBD - a FET that is off
        while a protection is active is taken as held by it (switch on).
        """
        if charge is None or discharge is None:
            known = self._jbd_switches
            if known is None:
                current = await self._reading()
                held = bool(current.protections)
                known = (bool(current.charge_fet) or held, bool(current.discharge_fet) or held)
            charge = known[0] if charge is None else charge
            discharge = known[1] if discharge is None else discharge
        return (0 if charge else 0x01) | (0 if discharge else 0x02)

    async def _guarded[T](self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run one library operation within the timeout, translating every failure.

        An operation cancelled from outside may leave the library connected half-way through
        its handshake (a JK link without its firmware known reads the wrong layout), so the
        next operation starts by dropping that connection.
        """
        if self._interrupted:
            self._interrupted = False
            await self._disconnect()
        if not self._bms.is_connected:
            self.connects += 1
        try:
            async with asyncio.timeout(self._timeout):
                result = await operation()
        except asyncio.CancelledError:
            self._interrupted = True
            raise
        except Exception as error:  # the library's whole error surface becomes ours
            translated = self._translate(error)
            self.failures += 1
            self.last_error = str(translated)
            await self._disconnect()
            if translated is error:
                raise
            raise translated from error
        if not self._keep_connection:
            await self._disconnect()
        return result

    def _translate(self, error: Exception) -> BleBmsError:
        name = type(error).__name__
        if isinstance(error, BleBmsError):
            return error
        if isinstance(error, PermissionError):
            return BleBmsAuthError(f"the BMS refused the password ({error})")
        if isinstance(error, TimeoutError):
            if not self._bms.is_connected:
                return BleBmsUnreachable(
                    f"no connection to {self.address} within {self._timeout:g} s"
                    " (out of range, no free slot, or the link dropped)"
                )
            return BleBmsTimeout(f"no valid answer from {self.address} within {self._timeout:g} s")
        if _is_bleak_error(error) or isinstance(error, _LINK_ERRORS):
            return BleBmsUnreachable(f"{self.address} unreachable: {name}: {error}")
        return BleBmsBadData(f"unusable data from {self.address}: {name}: {error}")

    async def _disconnect(self) -> None:
        """Close the connection, whatever state it is in; never raises (except cancellation)."""
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await self._bms.disconnect()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            _LOGGER.debug("%s: disconnect failed: %s", self.address, error)

    @contextlib.asynccontextmanager
    async def released(self) -> AsyncIterator[None]:
        """Keep the BMS free of this link's connection while something else talks to it.

        A BMS takes one Bluetooth connection at a time, so a second reader (a reconfigure flow
        testing the BMS again while its entry runs) fails against the entry's own connection.
        Inside, this link is disconnected and its updates wait; the next update connects again.
        """
        async with self._lock:
            if not self._closed:
                await self._disconnect()
            yield

    def _check_open(self) -> None:
        if self._closed:
            raise BleBmsUnreachable(f"the link to {self.address} is closed")

    async def close(self) -> None:
        """Release the connection; idempotent. The link cannot be used afterwards."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            self._pending = None
            await self._disconnect()


# --- captures --------------------------------------------------------------------------------

_CAPTURE_TIMEOUT: Final = 30.0
_addresses = itertools.count(1)


@dataclass(frozen=True, slots=True)
class _CapturePlan:
    """How one captured frame is put through the library: which peer, which call, which keys."""

    family: str
    peer: Any
    device_info: bool = False
    keep: frozenset[str] | None = None  # reading fields the frame carries (None: all of them)
    secret: str = ""


def _restricted(reading: BleBmsReading, keep: frozenset[str] | None) -> BleBmsReading:
    if keep is None:
        return reading
    values = {name: getattr(reading, name) for name in keep}
    return BleBmsReading(**values)


def _info_reading(info: Mapping[str, str]) -> BleBmsReading:
    return BleBmsReading(
        model=info.get("model"),
        serial=info.get("serial_number"),
        firmware=info.get("sw_version") or info.get("fw_version"),
        hardware=info.get("hw_version"),
    )


_JK_HEADER: Final = b"\x55\xaa\xeb\x90"
_JK_COMMAND_HEADER: Final = b"\xaa\x55\x90\xeb"
_JK_LENGTH: Final = 300
_JK_CELL_INFO: Final = 0x02
_JK_DEVICE_INFO: Final = 0x03
_JK_READY: Final = 0xC8
_JK_FIRMWARE_24S: Final = "10.07"  # any firmware below 11 selects the 24S layout in aiobmsble
_JK_FIRMWARE_32S: Final = "19.27"  # the newest: the frame's own sensor mask picks the sensors
_JK_FIRMWARE_32S_OLD: Final = "11.17"  # 32S before the two extra sensors of firmware 14
_JK_SENSORS_FROM_14: Final = (256, 258)
_CELL_MV: Final = (500, 5000)
_JBD_FIXED: Final = 23
_JBD_CELL_COUNT_AT: Final = 21
_JBD_MAX_CELLS: Final = 32  # aiobmsble reads no more than this many
_DALY_D2: Final = 0xD2
_DALY_X81_REPLY: Final = 0x51
_DALY_X81_REQUEST: Final = 0x81
_DALY_STATUS_REGISTERS: Final = frozenset({62, 80})
_DALY_X81_RT1_REGISTERS: Final = 64
_DALY_D2_VERSION: Final = (0xA9, 32)
_DALY_X81_VERSION: Final = (0x178, 74)
_DALY_X81_RT1_FIELDS: Final = frozenset(
    {"voltage", "current", "power", "soc", "cell_voltages", "temperatures"}
)


def _jk_frames(data: bytes) -> list[bytes]:
    """The 300-byte frames in ``data`` whose sum8 (byte 299) checks, in order.

    Some firmware sends 320 bytes per frame with the checksum still at 299; what follows a frame
    (padding, ``AT\\r\\n``, the C8 ready frame) is skipped up to the next header.
    """
    frames: list[bytes] = []
    position = data.find(_JK_HEADER)
    while 0 <= position <= len(data) - _JK_LENGTH:
        candidate = data[position : position + _JK_LENGTH]
        if sum(candidate[:-1]) & 0xFF == candidate[-1]:
            frames.append(candidate)
            position = data.find(_JK_HEADER, position + _JK_LENGTH)
        else:
            position = data.find(_JK_HEADER, position + 1)
    return frames


def _jk_layout_32s(frame: bytes) -> bool | None:
    """Which JK02 layout a cell info frame is in, from the frame alone (None: neither fits).

    The enabled-cell mask follows the cell slots (byte 54 on 24S, 70 on 32S): it must be a run of
    low bits whose cells read like lithium cells, and the pack voltage of that layout (u32 mV at
    118 or 150) must match their sum within 10 %.
    """
    for slots, voltage_at, layout_32s in ((32, 150, True), (24, 118, False)):
        mask = int.from_bytes(frame[6 + 2 * slots : 10 + 2 * slots], "little")
        count = mask.bit_count()
        if not 0 < count <= slots or mask != (1 << count) - 1:
            continue
        cells = [int.from_bytes(frame[6 + 2 * i : 8 + 2 * i], "little") for i in range(count)]
        if not all(_CELL_MV[0] <= mv <= _CELL_MV[1] for mv in cells):
            continue
        voltage = int.from_bytes(frame[voltage_at : voltage_at + 4], "little")
        if abs(voltage - sum(cells)) <= 0.1 * sum(cells):
            return layout_32s
    return None


def _jk_plan(frame: bytes, device_info: bytes | None, sim: Any) -> _CapturePlan:
    if frame.startswith(_JK_COMMAND_HEADER):
        raise BleBmsUnsupported("a JK command or ready frame carries no battery values")
    frames = _jk_frames(frame)
    if not frames:
        raise BleBmsBadData("no JK frame with a valid checksum (55 AA EB 90 …, sum8 at byte 299)")
    infos = [f for f in frames if f[4] == _JK_DEVICE_INFO]
    cells = [f for f in frames if f[4] == _JK_CELL_INFO]
    if device_info is not None:
        given = [f for f in _jk_frames(device_info) if f[4] == _JK_DEVICE_INFO]
        if not given:
            raise BleBmsBadData("device_info is no JK device info frame with a valid checksum")
        infos = given
    ready = sim.jk_ready_frame()
    if not cells:
        if not infos:
            raise BleBmsUnsupported(
                "aiobmsble reads JK cell info (0x02) and device info (0x03),"
                f" not 0x{frames[0][4]:02X}"
            )
        peer = sim.JkBlePeer(replay={_JK_DEVICE_INFO: infos[-1], _JK_READY: ready})
        return _CapturePlan(JK_FAMILY, peer, device_info=True)
    cell_frame = cells[-1]
    layout_32s = _jk_layout_32s(cell_frame)
    if layout_32s is None:
        raise BleBmsUnsupported(
            "not a JK02 cell info frame (no 24S/32S layout fits; JK04 frames carry float32"
            " cell voltages, which aiobmsble does not read)"
        )
    if infos:
        info = infos[-1]
    else:
        firmware = _JK_FIRMWARE_24S
        if layout_32s:
            # Firmware 14 added sensors at 256/258; older 32S firmware leaves them 0 while their
            # mask bits may be set, and aiobmsble reads them only from 14 on.
            newer = any(cell_frame[pos : pos + 2] != b"\0\0" for pos in _JK_SENSORS_FROM_14)
            firmware = _JK_FIRMWARE_32S if newer else _JK_FIRMWARE_32S_OLD
        info = sim.jk_device_info_frame(
            model="JK-BMS", hardware=firmware, firmware=firmware, serial_number="", name=""
        )
    peer = sim.JkBlePeer(
        replay={_JK_DEVICE_INFO: info, _JK_READY: ready, _JK_CELL_INFO: cell_frame}
    )
    return _CapturePlan(JK_FAMILY, peer)


def _jbd_plan(frame: bytes, sim: Any) -> _CapturePlan:
    from . import jbd

    if frame.startswith(b"\xff\xaa"):
        raise BleBmsUnsupported("a JBD login frame carries no battery values")
    parsed = jbd.parse_frame(frame)  # framing only: start, end, length, checksum
    if parsed.status & jbd.STATUS_ERROR:
        raise BleBmsUnsupported(
            f"JBD register 0x{parsed.register:02X} answered with error status 0x{parsed.status:02X}"
        )
    if parsed.register == jbd.REG_BASIC_INFO:
        # aiobmsble reads the cells next: they answer 0 mV, which it leaves out. (An empty 0x04
        # frame would not do: its checksum is 0x0000 and aiobmsble expects 0x10000 there.)
        count = parsed.payload[_JBD_CELL_COUNT_AT] if len(parsed.payload) >= _JBD_FIXED else 0
        count = max(1, min(count, _JBD_MAX_CELLS))
        cells = sim.jbd_reply(jbd.REG_CELL_VOLTAGES, bytes(2 * count))
        replay = {parsed.register: frame, jbd.REG_CELL_VOLTAGES: cells}
        return _CapturePlan(JBD_FAMILY, sim.JbdBlePeer(replay=replay))
    if parsed.register == jbd.REG_CELL_VOLTAGES:
        # aiobmsble takes the cell count from 0x03: a basic info frame with only that count.
        basic = bytearray(_JBD_FIXED)
        basic[_JBD_CELL_COUNT_AT] = len(parsed.payload) // 2
        replay = {jbd.REG_BASIC_INFO: sim.jbd_reply(0x03, bytes(basic)), parsed.register: frame}
        peer = sim.JbdBlePeer(replay=replay)
        return _CapturePlan(JBD_FAMILY, peer, keep=frozenset({"cell_voltages"}))
    raise BleBmsUnsupported(
        f"aiobmsble reads JBD registers 0x03 and 0x04 for values, not 0x{parsed.register:02X}"
    )


def _daly_plan(frame: bytes, sim: Any) -> _CapturePlan:
    from .bms_common import crc16_modbus

    if frame[:1] == b"\xa5":
        raise BleBmsUnsupported(
            "classic Daly A5 frames: aiobmsble speaks Modbus (D2, 0x81) only;"
            " the serial 'daly' protocol decodes them"
        )
    if len(frame) < 5 or frame[1] != 0x03 or frame[2] != len(frame) - 5:
        raise BleBmsUnsupported("not a Daly Modbus read reply (address, 03, byte count, data, CRC)")
    if crc16_modbus(frame[:-2]) != int.from_bytes(frame[-2:], "little"):
        raise BleBmsBadData("Daly reply fails its CRC-16/Modbus")
    count = frame[2] // 2
    words = [int.from_bytes(frame[3 + 2 * i : 5 + 2 * i], "big") for i in range(count)]
    address = frame[0]

    def image(start: int) -> dict[int, int]:
        return {start + index: word for index, word in enumerate(words)}

    if address == _DALY_D2 and count in _DALY_STATUS_REGISTERS:
        return _CapturePlan(DALY_FAMILY, sim.DalyBlePeer(address=_DALY_D2, registers=image(0)))
    if address == _DALY_D2 and count == _DALY_D2_VERSION[1]:
        peer = sim.DalyBlePeer(address=_DALY_D2, registers=image(_DALY_D2_VERSION[0]))
        return _CapturePlan(DALY_FAMILY, peer, device_info=True)
    if address == _DALY_X81_REPLY and count == _DALY_X81_RT1_REGISTERS:
        peer = sim.DalyBlePeer(address=_DALY_X81_REQUEST, registers=image(0))
        return _CapturePlan(DALY_FAMILY, peer, keep=_DALY_X81_RT1_FIELDS)
    if address == _DALY_X81_REPLY and count == _DALY_X81_VERSION[1]:
        peer = sim.DalyBlePeer(address=_DALY_X81_REQUEST, registers=image(_DALY_X81_VERSION[0]))
        return _CapturePlan(DALY_FAMILY, peer, device_info=True)
    raise BleBmsUnsupported(
        "aiobmsble reads Daly status and version blocks,"
        f" not {count} registers from 0x{address:02X}"
    )


def _capture_plan(family: str, frame: bytes, device_info: bytes | None) -> _CapturePlan:
    from ..simulators import ble_bms as sim

    if family == JK_FAMILY:
        return _jk_plan(frame, device_info, sim)
    if family == JBD_FAMILY:
        return _jbd_plan(frame, sim)
    return _daly_plan(frame, sim)


async def decode_ble_capture(
    protocol: str,
    frame: bytes,
    *,
    device_info: bytes | None = None,
    timeout: float = _CAPTURE_TIMEOUT,
) -> BleBmsReading:
    """Decode one captured response frame the way a live entry would, through aiobmsble.

    ``protocol`` is ``jk_ble``, ``jbd_ble`` or ``daly_ble``. A simulated peer answers the
    library's requests with ``frame`` (and with whatever handshake the library needs first; see
    :mod:`..simulators.ble_bms`); the reading holds only what ``frame`` carries. A device
    information frame gives a reading with ``model``, ``serial``, ``firmware`` and ``hardware``.
    For JK cell info, ``device_info`` (the BMS's own 0x03 frame) fixes the 24S/32S layout as on a
    live link; without it the layout is recognised from the frame. Raises
    :class:`~.ProtocolError` for a frame the library cannot decode (bad checksum, a request, a
    frame type it does not read, JK04). Daly ``0x81``/``51`` frames take about ten seconds:
    aiobmsble tries the ``D2`` protocol first and waits for its answer.

    For tools and tests outside Home Assistant: while it runs, aiobmsble connects to simulated
    peers only (``aiobmsble_on_simulated_peers``), which would cut off live links in the same
    process.
    """
    from ..simulators import ble_bms as sim

    family = CAPTURE_PROTOCOLS.get(protocol)
    if family is None:
        raise BleBmsUnsupported(
            f"unknown Bluetooth capture protocol {protocol!r}; one of {sorted(CAPTURE_PROTOCOLS)}"
        )
    plan = _capture_plan(family, bytes(frame), device_info)
    bms_class = await asyncio.get_running_loop().run_in_executor(None, bms_class_for, family)
    from bleak.backends.device import BLEDevice

    number = next(_addresses)
    address = f"CA:97:00:00:{number >> 8 & 0xFF:02X}:{number & 0xFF:02X}"
    device = BLEDevice(address, f"capture-{protocol}", {})
    unregister = sim.register_peer(address, plan.peer)
    try:
        with sim.aiobmsble_on_simulated_peers():
            link = BleBmsLink(
                bms_class, device, keep_connection=False, timeout=timeout, secret=plan.secret
            )
            try:
                if plan.device_info:
                    return _info_reading(await link.device_info())
                return _restricted(await link.update(), plan.keep)
            finally:
                await link.close()
    finally:
        unregister()
