"""ANT BMS serial protocols: the legacy 140-byte status frame and the 2021 ``7E A1`` protocol.

Legacy (every board, 2021 models included): the host sends a 6-byte command
``F F addr value_hi value_lo sum`` (F = 0xDB status via the main board, 0x5A read, 0xA5 write;
``sum`` = low byte of addr + value bytes); a status request is answered with 140 big-endian
bytes starting ``AA 55 AA FF``, protected by a u16 sum of bytes 4…137 at 138-139. On the wire
current and power are positive while *discharging*; this module flips them so + means charging.

New (2021 and later): frames are ``7E A1 function addr_lo addr_hi length data… crc_lo crc_hi
AA 55`` with little-endian fields and a CRC-16/Modbus over ``A1 … data``. The status request is
``7E A1 01 00 00 BE 18 55 AA 55``; the reply has function 0x11. The sign convention of the new
protocol's current is not established by the available captures (all show 0 A); it is passed
through as sent.

The ANT auto-detection of other drivers matched GPS dongles: never send these requests to a
port that was not chosen for an ANT BMS.
"""

from __future__ import annotations

from dataclasses import dataclass
import struct
from typing import Final

from . import ProtocolError
from .bms_common import (
    CELL_IMBALANCE,
    CELL_OVERVOLTAGE,
    CELL_UNDERVOLTAGE,
    CHARGE_OVERCURRENT,
    CHARGE_OVERTEMPERATURE,
    CHARGE_UNDERTEMPERATURE,
    DISCHARGE_OVERCURRENT,
    DISCHARGE_OVERTEMPERATURE,
    DISCHARGE_UNDERTEMPERATURE,
    MOSFET_OVERTEMPERATURE,
    PACK_OVERVOLTAGE,
    PACK_UNDERVOLTAGE,
    SHORT_CIRCUIT,
    BmsReading,
    bit_flags,
    crc16_modbus,
)

# --- legacy protocol ---------------------------------------------------------------------------

LEGACY_HEADER: Final = b"\xaa\x55\xaa\xff"
LEGACY_FRAME_LENGTH: Final = 140
LEGACY_COMMAND_LENGTH: Final = 6
LEGACY_MAX_CELLS: Final = 32

LEGACY_BOARD: Final = 0xDB
LEGACY_READ: Final = 0x5A
LEGACY_WRITE: Final = 0xA5

LEGACY_REG_DISCHARGE_MOSFET: Final = 249
LEGACY_REG_CHARGE_MOSFET: Final = 250
LEGACY_REG_APPLY: Final = 255

# --- new protocol ------------------------------------------------------------------------------

START: Final = b"\x7e\xa1"
TRAILER: Final = b"\xaa\x55"
REQUEST_LENGTH: Final = 10
MIN_FRAME_LENGTH: Final = 10

COMMAND_STATUS: Final = 0x01
STATUS_REQUEST_LENGTH: Final = 0xBE
FUNCTION_STATUS: Final = 0x11
FUNCTION_DEVICE_INFO: Final = 0x12

# --- shared status codes (ANT document, extended by the 2021 firmware) --------------------------

CHARGE_MOSFET_STATES: Final[tuple[str | None, ...]] = (
    "off",
    "on",
    "overcharge_protection",
    "overcurrent_protection",
    "battery_full",
    "pack_overvoltage",
    "battery_overtemperature",
    "mosfet_overtemperature",
    "abnormal_current",
    "balance_line_disconnected",
    "board_overtemperature",
    None,
    "open_failed",
    "discharge_mosfet_abnormal",
    "waiting",
    "manually_off",
    "second_level_overvoltage",
    "low_temperature_protection",
    "voltage_difference_exceeded",
    None,
    "self_test_error",
)
DISCHARGE_MOSFET_STATES: Final[tuple[str | None, ...]] = (
    "off",
    "on",
    "overdischarge_protection",
    "overcurrent_protection",
    "second_level_overcurrent",
    "pack_undervoltage",
    "battery_overtemperature",
    "mosfet_overtemperature",
    "abnormal_current",
    "balance_line_disconnected",
    "board_overtemperature",
    "charge_mosfet_on",
    "short_circuit_protection",
    "discharge_mosfet_abnormal",
    "start_exception",
    "manually_off",
    "second_level_undervoltage",
    "low_temperature_protection",
    "voltage_difference_exceeded",
    "self_test_error",
)
BALANCER_STATES: Final[tuple[str | None, ...]] = (
    "off",
    "limit_exceeded",
    "charge_difference",
    "balancer_overtemperature",
    "automatic",
    None,
    None,
    None,
    None,
    None,
    "board_overtemperature",
)

_CHARGE_PROTECTIONS: Final[dict[int, str]] = {
    2: CELL_OVERVOLTAGE,
    3: CHARGE_OVERCURRENT,
    5: PACK_OVERVOLTAGE,
    6: CHARGE_OVERTEMPERATURE,
    7: MOSFET_OVERTEMPERATURE,
    17: CHARGE_UNDERTEMPERATURE,
    18: CELL_IMBALANCE,
}
_DISCHARGE_PROTECTIONS: Final[dict[int, str]] = {
    2: CELL_UNDERVOLTAGE,
    3: DISCHARGE_OVERCURRENT,
    5: PACK_UNDERVOLTAGE,
    6: DISCHARGE_OVERTEMPERATURE,
    7: MOSFET_OVERTEMPERATURE,
    12: SHORT_CIRCUIT,
    17: DISCHARGE_UNDERTEMPERATURE,
    18: CELL_IMBALANCE,
}


def state_name(states: tuple[str | None, ...], code: int) -> str:
    """Name of a MOSFET/balancer status code, ``unknown`` for codes the documents omit."""
    name = states[code] if code < len(states) else None
    return name or "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class AntStatus:
    """One ANT status reply in SI units; ``current`` and ``power`` are + while charging.

    ``temperatures`` are the battery sensors only, as sent; the MOSFET and balancer sensors on
    the board have their own fields. Of the fields after ``balance`` only those two exist in
    legacy frames; the rest come from the 2021 protocol and are None for legacy frames.
    """

    voltage: float
    current: float
    power: float
    soc: int
    cell_count: int
    cell_voltages: list[float]
    nominal_capacity: float
    remaining_capacity: float
    cycle_capacity: float
    uptime: int
    temperatures: list[float]
    charge_mosfet_status: int
    discharge_mosfet_status: int
    balancer_status: int
    balance: int
    state_of_health: int | None = None
    battery_status: int | None = None
    protection: int | None = None
    warning: int | None = None
    mosfet_temperature: float | None = None
    balancer_temperature: float | None = None
    total_discharged_capacity: float | None = None
    total_charged_capacity: float | None = None

    @property
    def charge_fet(self) -> bool:
        """The charge MOSFET is on (status code 1)."""
        return self.charge_mosfet_status == 1

    @property
    def discharge_fet(self) -> bool:
        """The discharge MOSFET is on (status code 1)."""
        return self.discharge_mosfet_status == 1

    @property
    def protections(self) -> frozenset[str]:
        """Protections implied by the MOSFET status codes, in the shared vocabulary."""
        found = set()
        if self.charge_mosfet_status in _CHARGE_PROTECTIONS:
            found.add(_CHARGE_PROTECTIONS[self.charge_mosfet_status])
        if self.discharge_mosfet_status in _DISCHARGE_PROTECTIONS:
            found.add(_DISCHARGE_PROTECTIONS[self.discharge_mosfet_status])
        return frozenset(found)


# --- legacy encoders and decoder ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LegacyCommand:
    """A checked 6-byte legacy host command."""

    function: int
    address: int
    value: int


def encode_legacy_command(function: int, address: int, value: int) -> bytes:
    """Build ``F F addr value_hi value_lo sum`` (sum = low byte of addr + value bytes)."""
    if not (0 <= function <= 0xFF and 0 <= address <= 0xFF and 0 <= value <= 0xFFFF):
        raise ProtocolError("ANT command fields out of range")
    body = bytes((address,)) + value.to_bytes(2, "big")
    return bytes((function, function)) + body + bytes((sum(body) & 0xFF,))


LEGACY_STATUS_REQUEST: Final = encode_legacy_command(LEGACY_BOARD, 0x00, 0x0000)
"""``DB DB 00 00 00 00``: status request answered by every legacy board."""
LEGACY_STATUS_REQUEST_SERIAL: Final = encode_legacy_command(LEGACY_READ, 0x00, 0x0001)
"""``5A 5A 00 00 01 01``: status request as ESPHome sends it on the serial port."""


def encode_legacy_write(address: int, value: int) -> bytes:
    """Write a parameter / control address (follow with :func:`encode_legacy_apply`)."""
    return encode_legacy_command(LEGACY_WRITE, address, value)


def encode_legacy_apply() -> bytes:
    """Make preceding writes take effect (address 255)."""
    return encode_legacy_write(LEGACY_REG_APPLY, 0)


def encode_legacy_mosfet(charge: bool, on: bool) -> tuple[bytes, bytes]:
    """Switch the charge (``charge=True``) or discharge MOSFET: the write and the apply frame."""
    address = LEGACY_REG_CHARGE_MOSFET if charge else LEGACY_REG_DISCHARGE_MOSFET
    return encode_legacy_write(address, 1 if on else 0), encode_legacy_apply()


def parse_legacy_command(frame: bytes) -> LegacyCommand:
    """Check and split a 6-byte legacy host command."""
    if len(frame) != LEGACY_COMMAND_LENGTH:
        raise ProtocolError(f"ANT legacy commands are 6 bytes, not {len(frame)}")
    if frame[0] != frame[1]:
        raise ProtocolError("ANT legacy command must repeat its function byte")
    if sum(frame[2:5]) & 0xFF != frame[5]:
        raise ProtocolError("ANT legacy command checksum mismatch")
    return LegacyCommand(
        function=frame[0], address=frame[2], value=int.from_bytes(frame[3:5], "big")
    )


def legacy_checksum(frame: bytes) -> int:
    """u16 sum of bytes 4…137 of a legacy status frame."""
    return sum(frame[4:138]) & 0xFFFF


def _be(frame: bytes, offset: int, size: int, signed: bool = False) -> int:
    return int.from_bytes(frame[offset : offset + size], "big", signed=signed)


def decode_legacy_status(frame: bytes) -> AntStatus:
    """Check and decode a 140-byte legacy status frame (big-endian).

    The ANT document names bytes 91-102 only "real temperature", six s16 °C words. They are not
    six battery sensors: the first is the MOSFET (power tube) sensor and the second the balancer
    sensor, both on the board; the last four are the external battery sensors T1-T4. The
    captures bear this out: on the 2021 board the last two words stay at -40 in every frame
    (unplugged NTCs) while the first two are always present and run warmer than the pack
    (23 and 25 °C against 21 and 22 °C), and dbus-serialbattery takes its two battery
    temperatures from the third and fourth words. Only T1-T4 go into ``temperatures``, so a
    hot MOSFET cannot pass for a hot battery in the charge rules.
    """
    if len(frame) != LEGACY_FRAME_LENGTH:
        raise ProtocolError(f"ANT legacy status frames are 140 bytes, not {len(frame)}")
    if frame[:4] != LEGACY_HEADER:
        raise ProtocolError(f"ANT legacy header must be AA 55 AA FF, not {frame[:4].hex(' ')}")
    expected = legacy_checksum(frame)
    received = _be(frame, 138, 2)
    if expected != received:
        raise ProtocolError(f"ANT legacy checksum 0x{received:04X} != computed 0x{expected:04X}")
    cell_count = frame[123]
    if cell_count > LEGACY_MAX_CELLS:
        raise ProtocolError(f"ANT legacy frame claims {cell_count} cells (at most 32)")
    mosfet, balancer, *battery_words = struct.unpack_from(">6h", frame, 91)
    return AntStatus(
        voltage=_be(frame, 4, 2) / 10,
        cell_voltages=[raw / 1000 for raw in struct.unpack_from(f">{cell_count}H", frame, 6)],
        current=-_be(frame, 70, 4, signed=True) / 10 + 0.0,
        soc=frame[74],
        nominal_capacity=_be(frame, 75, 4) / 1_000_000,
        remaining_capacity=_be(frame, 79, 4) / 1_000_000,
        cycle_capacity=_be(frame, 83, 4) / 1000,
        uptime=_be(frame, 87, 4),
        temperatures=[float(raw) for raw in battery_words],
        mosfet_temperature=float(mosfet),
        balancer_temperature=float(balancer),
        charge_mosfet_status=frame[103],
        discharge_mosfet_status=frame[104],
        balancer_status=frame[105],
        power=-float(_be(frame, 111, 4, signed=True)) + 0.0,
        cell_count=cell_count,
        balance=_be(frame, 132, 4),
    )


# --- new protocol -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AntFrame:
    """A CRC-checked ``7E A1`` response frame."""

    function: int
    address: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class AntRequest:
    """A CRC-checked 10-byte ``7E A1`` request."""

    function: int
    address: int
    length: int


def _check_crc(frame: bytes) -> None:
    expected = crc16_modbus(frame[1:-4])
    received = int.from_bytes(frame[-4:-2], "little")
    if expected != received:
        raise ProtocolError(f"ANT CRC 0x{received:04X} != computed 0x{expected:04X}")


def _check_envelope(frame: bytes) -> None:
    if len(frame) < MIN_FRAME_LENGTH:
        raise ProtocolError(f"ANT frame too short ({len(frame)} bytes)")
    if frame[:2] != START:
        raise ProtocolError(f"ANT frame must start with 7E A1, not {frame[:2].hex(' ')}")
    if frame[-2:] != TRAILER:
        raise ProtocolError(f"ANT frame must end with AA 55, not {frame[-2:].hex(' ')}")


def encode_request(function: int, address: int = 0, length: int = 0) -> bytes:
    """Build a 10-byte request ``7E A1 function addr(LE) length crc(LE) AA 55``."""
    if not (0 <= function <= 0xFF and 0 <= address <= 0xFFFF and 0 <= length <= 0xFF):
        raise ProtocolError("ANT request fields out of range")
    body = bytes((START[1], function)) + address.to_bytes(2, "little") + bytes((length,))
    return START[:1] + body + crc16_modbus(body).to_bytes(2, "little") + TRAILER


def encode_status_request() -> bytes:
    """The status request ``7E A1 01 00 00 BE 18 55 AA 55``."""
    return encode_request(COMMAND_STATUS, 0x0000, STATUS_REQUEST_LENGTH)


def parse_request(frame: bytes) -> AntRequest:
    """Check and split a 10-byte request (used by simulators and tests)."""
    _check_envelope(frame)
    if len(frame) != REQUEST_LENGTH:
        raise ProtocolError(f"ANT requests are 10 bytes, not {len(frame)}")
    _check_crc(frame)
    return AntRequest(
        function=frame[2], address=int.from_bytes(frame[3:5], "little"), length=frame[5]
    )


def parse_frame(frame: bytes) -> AntFrame:
    """Check header, length, CRC and trailer of a response and split it up."""
    _check_envelope(frame)
    length = frame[5]
    if len(frame) != MIN_FRAME_LENGTH + length:
        raise ProtocolError(f"ANT frame announces {length} data bytes but is {len(frame)} long")
    _check_crc(frame)
    return AntFrame(
        function=frame[2],
        address=int.from_bytes(frame[3:5], "little"),
        payload=bytes(frame[6:-4]),
    )


def _le(data: bytes, offset: int, size: int, signed: bool = False) -> int:
    return int.from_bytes(data[offset : offset + size], "little", signed=signed)


_NEW_CELLS_OFFSET = 28
_NEW_CORE_LENGTH = 40
_NEW_TOTALS_LENGTH = 78


def decode_status(payload: bytes) -> AntStatus:
    """Decode the payload of a ``7E A1 11`` status frame (little-endian).

    Layout: permissions, battery status, sensor count, cell count, 8-byte protection, warning
    and balancing words, cells (mV), sensor temperatures, MOSFET and balancer temperature,
    pack voltage (10 mV), current (0.1 A), SOC, SOH, the three status codes, capacities (µAh),
    cycle capacity (mAh), power (W), runtime (s), balancing bitmask, then lifetime totals.
    """
    if len(payload) < _NEW_CELLS_OFFSET:
        raise ProtocolError(f"ANT status payload too short ({len(payload)} bytes)")
    sensor_count = payload[2]
    cell_count = payload[3]
    base = _NEW_CELLS_OFFSET + 2 * cell_count + 2 * sensor_count
    if len(payload) < base + _NEW_CORE_LENGTH:
        raise ProtocolError(
            f"ANT status payload of {len(payload)} bytes cannot hold {cell_count} cells "
            f"and {sensor_count} sensors"
        )
    temperatures_offset = _NEW_CELLS_OFFSET + 2 * cell_count
    has_totals = len(payload) >= base + _NEW_TOTALS_LENGTH
    return AntStatus(
        battery_status=payload[1],
        cell_count=cell_count,
        protection=_le(payload, 4, 8),
        warning=_le(payload, 12, 8),
        cell_voltages=[
            raw / 1000 for raw in struct.unpack_from(f"<{cell_count}H", payload, _NEW_CELLS_OFFSET)
        ],
        temperatures=[
            float(raw)
            for raw in struct.unpack_from(f"<{sensor_count}h", payload, temperatures_offset)
        ],
        mosfet_temperature=float(_le(payload, base, 2, signed=True)),
        balancer_temperature=float(_le(payload, base + 2, 2, signed=True)),
        voltage=_le(payload, base + 4, 2) / 100,
        current=_le(payload, base + 6, 2, signed=True) / 10,
        soc=_le(payload, base + 8, 2),
        state_of_health=_le(payload, base + 10, 2),
        charge_mosfet_status=payload[base + 12],
        discharge_mosfet_status=payload[base + 13],
        balancer_status=payload[base + 14],
        nominal_capacity=_le(payload, base + 16, 4) / 1_000_000,
        remaining_capacity=_le(payload, base + 20, 4) / 1_000_000,
        cycle_capacity=_le(payload, base + 24, 4) / 1000,
        power=float(_le(payload, base + 28, 4, signed=True)),
        uptime=_le(payload, base + 32, 4),
        balance=_le(payload, base + 36, 4),
        total_discharged_capacity=_le(payload, base + 62, 4) / 1000 if has_totals else None,
        total_charged_capacity=_le(payload, base + 66, 4) / 1000 if has_totals else None,
    )


ABSENT_SENSOR: Final = -40.0
"""What both protocols send for a battery sensor that is not plugged in (the bottom of the
NTC's range): the 2021 captures carry it in every frame for the same unused inputs."""


def to_reading(status: AntStatus) -> BmsReading:
    """Turn a decoded status (either protocol) into a :class:`BmsReading`.

    Battery sensors reading :data:`ABSENT_SENSOR` are left out: an unplugged NTC is no reading,
    and passing it on would make the charge rules see a pack at -40 °C and stop charging. The
    balancer temperature has no place in a :class:`BmsReading` and stays on :class:`AntStatus`.
    """
    return BmsReading(
        soc=float(status.soc),
        voltage=status.voltage,
        current=status.current,
        power=status.power,
        remaining_capacity=status.remaining_capacity,
        nominal_capacity=status.nominal_capacity,
        cell_voltages=tuple(status.cell_voltages),
        temperatures=tuple(t for t in status.temperatures if t != ABSENT_SENSOR),
        mosfet_temperature=status.mosfet_temperature,
        balancing=bit_flags(status.balance, status.cell_count),
        charge_fet=status.charge_fet,
        discharge_fet=status.discharge_fet,
        protections=status.protections,
    )


__all__ = [
    "ABSENT_SENSOR",
    "BALANCER_STATES",
    "CHARGE_MOSFET_STATES",
    "DISCHARGE_MOSFET_STATES",
    "LEGACY_STATUS_REQUEST",
    "LEGACY_STATUS_REQUEST_SERIAL",
    "AntFrame",
    "AntRequest",
    "AntStatus",
    "LegacyCommand",
    "decode_legacy_status",
    "decode_status",
    "encode_legacy_apply",
    "encode_legacy_command",
    "encode_legacy_mosfet",
    "encode_legacy_write",
    "encode_request",
    "encode_status_request",
    "legacy_checksum",
    "parse_frame",
    "parse_legacy_command",
    "parse_request",
    "state_name",
    "to_reading",
]
