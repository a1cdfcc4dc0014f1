"""Daly smart BMS UART/RS485 protocol, 9600 8N1.

Every frame, in both directions, is 13 bytes: ``A5 addr cmd 08 data[8] sum`` where ``sum`` is the
low byte of the sum of the first twelve bytes. The host uses address 0x40 on RS485 and 0x80 on
the UART/Bluetooth port; the BMS answers from 0x01. Requests carry zero padding. Cell voltages
(0x95) and temperatures (0x96) arrive as several frames, each numbered from 1.

Current is sent as ``raw - 30000`` in 0.1 A, but firmware disagrees about the sign. The default
here follows dbus-serialbattery and python-daly-bms (raw above 30000 = discharging); pass
``invert_current=True`` for firmware that counts the other way. All decoders raise only
:class:`ProtocolError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
import datetime as dt
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
    FRONTEND_ERROR,
    MOSFET_OVERTEMPERATURE,
    PACK_OVERVOLTAGE,
    PACK_UNDERVOLTAGE,
    SOC_LOW,
    BmsReading,
    bit_flags,
    bit_names,
    power_of,
)

START: Final = 0xA5
DATA_LENGTH: Final = 8
FRAME_LENGTH: Final = 13

HOST_ADDRESS_RS485: Final = 0x40
HOST_ADDRESS_UART: Final = 0x80
BMS_ADDRESS: Final = 0x01

CMD_SET_SOC: Final = 0x21
CMD_RATED: Final = 0x50
CMD_SOC: Final = 0x90
CMD_CELL_VOLTAGE_RANGE: Final = 0x91
CMD_TEMPERATURE_RANGE: Final = 0x92
CMD_MOSFET: Final = 0x93
CMD_STATUS: Final = 0x94
CMD_CELL_VOLTAGES: Final = 0x95
CMD_TEMPERATURES: Final = 0x96
CMD_BALANCE: Final = 0x97
CMD_FAULTS: Final = 0x98
CMD_DISCHARGE_FET: Final = 0xD9
CMD_CHARGE_FET: Final = 0xDA

CELLS_PER_FRAME: Final = 3
TEMPERATURES_PER_FRAME: Final = 7
MAX_BALANCE_CELLS: Final = 48

_CURRENT_OFFSET = 30_000
_TEMPERATURE_OFFSET = 40

FAULT_NAMES: Final[tuple[str | None, ...]] = (
    # byte 0: voltages (1 = warning level, 2 = alarm level)
    "cell_overvoltage_1",
    "cell_overvoltage_2",
    "cell_undervoltage_1",
    "cell_undervoltage_2",
    "pack_overvoltage_1",
    "pack_overvoltage_2",
    "pack_undervoltage_1",
    "pack_undervoltage_2",
    # byte 1: temperatures
    "charge_overtemperature_1",
    "charge_overtemperature_2",
    "charge_undertemperature_1",
    "charge_undertemperature_2",
    "discharge_overtemperature_1",
    "discharge_overtemperature_2",
    "discharge_undertemperature_1",
    "discharge_undertemperature_2",
    # byte 2: current and SOC
    "charge_overcurrent_1",
    "charge_overcurrent_2",
    "discharge_overcurrent_1",
    "discharge_overcurrent_2",
    "soc_high_1",
    "soc_high_2",
    "soc_low_1",
    "soc_low_2",
    # byte 3: differences
    "cell_voltage_difference_1",
    "cell_voltage_difference_2",
    "temperature_difference_1",
    "temperature_difference_2",
    None,
    None,
    None,
    None,
    # byte 4: MOSFETs
    "charge_mosfet_overtemperature",
    "discharge_mosfet_overtemperature",
    "charge_mosfet_sensor_fault",
    "discharge_mosfet_sensor_fault",
    "charge_mosfet_adhesion_fault",
    "discharge_mosfet_adhesion_fault",
    "charge_mosfet_breaker_fault",
    "discharge_mosfet_breaker_fault",
    # byte 5: electronics
    "afe_fault",
    "cell_sampling_fault",
    "temperature_sensor_fault",
    "eeprom_fault",
    "rtc_fault",
    "precharge_fault",
    "vehicle_communication_fault",
    "internal_communication_fault",
    # byte 6
    "current_module_fault",
    "voltage_module_fault",
    "short_circuit_protection_fault",
    "low_voltage_no_charging",
    None,
    None,
    None,
    None,
)
"""Names of the 0x98 fault bits, byte 0 bit 0 first; byte 7 is a fault code, not bits."""

_PROTECTION_OF_FAULT: Final[dict[str, str]] = {
    "cell_overvoltage_2": CELL_OVERVOLTAGE,
    "cell_undervoltage_2": CELL_UNDERVOLTAGE,
    "pack_overvoltage_2": PACK_OVERVOLTAGE,
    "pack_undervoltage_2": PACK_UNDERVOLTAGE,
    "charge_overtemperature_2": CHARGE_OVERTEMPERATURE,
    "charge_undertemperature_2": CHARGE_UNDERTEMPERATURE,
    "discharge_overtemperature_2": DISCHARGE_OVERTEMPERATURE,
    "discharge_undertemperature_2": DISCHARGE_UNDERTEMPERATURE,
    "charge_overcurrent_2": CHARGE_OVERCURRENT,
    "discharge_overcurrent_2": DISCHARGE_OVERCURRENT,
    "soc_low_2": SOC_LOW,
    "cell_voltage_difference_2": CELL_IMBALANCE,
    "charge_mosfet_overtemperature": MOSFET_OVERTEMPERATURE,
    "discharge_mosfet_overtemperature": MOSFET_OVERTEMPERATURE,
    "afe_fault": FRONTEND_ERROR,
}
"""Alarm-level (level 2) faults expressed in the shared protection vocabulary."""

CHARGE_STATES: Final[tuple[str, ...]] = ("stationary", "charging", "discharging")


def checksum(body: bytes | bytearray | memoryview) -> int:
    """Low byte of the sum of ``body`` (the first twelve bytes of a frame)."""
    return sum(body) & 0xFF


@dataclass(frozen=True, slots=True)
class DalyFrame:
    """A checked 13-byte frame."""

    address: int
    command: int
    data: bytes


def encode_request(command: int, address: int = HOST_ADDRESS_RS485, data: bytes = b"") -> bytes:
    """Build a request; ``data`` (at most 8 bytes) is zero-padded.

    ``encode_request(0x90)`` → ``A5 40 90 08 00 00 00 00 00 00 00 00 7D``.
    """
    if not (0 <= command <= 0xFF and 0 <= address <= 0xFF):
        raise ProtocolError("Daly command and address must be single bytes")
    if len(data) > DATA_LENGTH:
        raise ProtocolError(f"Daly frames carry at most 8 data bytes, not {len(data)}")
    body = bytes((START, address, command, DATA_LENGTH)) + bytes(data).ljust(DATA_LENGTH, b"\0")
    return body + bytes((checksum(body),))


def parse_frame(frame: bytes) -> DalyFrame:
    """Check start byte, length and checksum of a frame and split it up."""
    if len(frame) != FRAME_LENGTH:
        raise ProtocolError(f"Daly frames are 13 bytes, not {len(frame)}")
    if frame[0] != START:
        raise ProtocolError(f"Daly frame must start with 0xA5, not 0x{frame[0]:02X}")
    if frame[3] != DATA_LENGTH:
        raise ProtocolError(f"Daly length byte must be 8, not {frame[3]}")
    expected = checksum(frame[:12])
    if frame[12] != expected:
        raise ProtocolError(f"Daly checksum 0x{frame[12]:02X} != computed 0x{expected:02X}")
    return DalyFrame(address=frame[1], command=frame[2], data=bytes(frame[4:12]))


def split_frames(stream: bytes) -> list[DalyFrame]:
    """Parse a concatenation of 13-byte frames (a multi-frame answer read in one go)."""
    if len(stream) % FRAME_LENGTH:
        raise ProtocolError(f"{len(stream)} bytes are not a whole number of Daly frames")
    return [
        parse_frame(stream[offset : offset + FRAME_LENGTH])
        for offset in range(0, len(stream), FRAME_LENGTH)
    ]


def _data(data: bytes) -> bytes:
    if len(data) != DATA_LENGTH:
        raise ProtocolError(f"Daly data must be 8 bytes, not {len(data)}")
    return data


def _u16(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 2], "big")


@dataclass(frozen=True, slots=True)
class DalySoc:
    """0x90: pack voltage (V), current (A, + = charging) and SOC (%)."""

    voltage: float
    current: float
    soc: float


def decode_soc(data: bytes, invert_current: bool = False) -> DalySoc:
    """Decode 0x90; ``invert_current`` flips the sign for firmware that counts the other way."""
    data = _data(data)
    current = (_CURRENT_OFFSET - _u16(data, 4)) / 10
    if invert_current:
        current = -current
    return DalySoc(voltage=_u16(data, 0) / 10, current=current + 0.0, soc=_u16(data, 6) / 10)


@dataclass(frozen=True, slots=True)
class DalyCellVoltageRange:
    """0x91: highest and lowest cell voltage (V) with their 1-based cell numbers."""

    max_voltage: float
    max_cell: int
    min_voltage: float
    min_cell: int


def decode_cell_voltage_range(data: bytes) -> DalyCellVoltageRange:
    """Decode 0x91."""
    data = _data(data)
    return DalyCellVoltageRange(
        max_voltage=_u16(data, 0) / 1000,
        max_cell=data[2],
        min_voltage=_u16(data, 3) / 1000,
        min_cell=data[5],
    )


@dataclass(frozen=True, slots=True)
class DalyTemperatureRange:
    """0x92: highest and lowest temperature (°C) with their 1-based sensor numbers."""

    max_temperature: int
    max_sensor: int
    min_temperature: int
    min_sensor: int


def decode_temperature_range(data: bytes) -> DalyTemperatureRange:
    """Decode 0x92 (temperatures are sent as °C + 40)."""
    data = _data(data)
    return DalyTemperatureRange(
        max_temperature=data[0] - _TEMPERATURE_OFFSET,
        max_sensor=data[1],
        min_temperature=data[2] - _TEMPERATURE_OFFSET,
        min_sensor=data[3],
    )


@dataclass(frozen=True, slots=True)
class DalyMosfetStatus:
    """0x93: charge state, FET states, BMS life counter and remaining capacity (Ah)."""

    state: int
    charge_fet: bool
    discharge_fet: bool
    bms_cycles: int
    remaining_capacity: float

    @property
    def state_name(self) -> str:
        """``stationary``, ``charging``, ``discharging`` or ``unknown``."""
        return CHARGE_STATES[self.state] if self.state < len(CHARGE_STATES) else "unknown"


def decode_mosfet_status(data: bytes) -> DalyMosfetStatus:
    """Decode 0x93 (remaining capacity is a u32 in mAh)."""
    data = _data(data)
    return DalyMosfetStatus(
        state=data[0],
        charge_fet=bool(data[1]),
        discharge_fet=bool(data[2]),
        bms_cycles=data[3],
        remaining_capacity=int.from_bytes(data[4:8], "big") / 1000,
    )


@dataclass(frozen=True, slots=True)
class DalyStatus:
    """0x94: cell and sensor counts, charger/load presence, DI/DO bits, cycles."""

    cell_count: int
    temperature_sensor_count: int
    charger_connected: bool
    load_connected: bool
    dio: int
    cycles: int


def decode_status(data: bytes) -> DalyStatus:
    """Decode 0x94."""
    data = _data(data)
    return DalyStatus(
        cell_count=data[0],
        temperature_sensor_count=data[1],
        charger_connected=bool(data[2]),
        load_connected=bool(data[3]),
        dio=data[4],
        cycles=_u16(data, 5),
    )


def _collect(
    frames: Iterable[DalyFrame], command: int, count: int, per_frame: int, width: int
) -> list[int]:
    """Gather ``count`` numbered values spread over frames of ``command``."""
    values: list[int | None] = [None] * count
    for frame in frames:
        if frame.command != command:
            raise ProtocolError(f"Daly frame 0x{frame.command:02X} where 0x{command:02X} expected")
        data = _data(frame.data)
        number = data[0]
        if number == 0:
            raise ProtocolError("Daly multi-frame numbers start at 1")
        first = (number - 1) * per_frame
        for slot in range(per_frame):
            index = first + slot
            if index < count:
                offset = 1 + slot * width
                values[index] = int.from_bytes(data[offset : offset + width], "big")
    missing = [index + 1 for index, value in enumerate(values) if value is None]
    if missing:
        raise ProtocolError(f"Daly answer lacks values {missing}")
    return [value for value in values if value is not None]


def decode_cell_voltage_frames(frames: Iterable[DalyFrame], cell_count: int) -> list[float]:
    """Decode the frames of a 0x95 answer (frame n holds cells 3n-2 … 3n) into volts."""
    millivolts = _collect(frames, CMD_CELL_VOLTAGES, cell_count, CELLS_PER_FRAME, 2)
    return [value / 1000 for value in millivolts]


def decode_temperature_frames(frames: Iterable[DalyFrame], sensor_count: int) -> list[int]:
    """Decode the frames of a 0x96 answer (seven sensors per frame) into °C."""
    raw = _collect(frames, CMD_TEMPERATURES, sensor_count, TEMPERATURES_PER_FRAME, 1)
    return [value - _TEMPERATURE_OFFSET for value in raw]


def decode_balance(data: bytes, cell_count: int = MAX_BALANCE_CELLS) -> tuple[bool, ...]:
    """Decode 0x97: one flag per cell, byte 0 bit 0 = cell 1 (up to 48 cells)."""
    data = _data(data)
    if not 0 <= cell_count <= MAX_BALANCE_CELLS:
        raise ProtocolError(f"Daly balance bitmap covers 48 cells, not {cell_count}")
    return bit_flags(int.from_bytes(data[:6], "little"), cell_count)


@dataclass(frozen=True, slots=True)
class DalyFaults:
    """0x98: the fault bit field (bit n = byte n // 8, bit n % 8) and the fault code byte."""

    bits: int
    fault_code: int

    @property
    def names(self) -> list[str]:
        """Names of the set fault bits (see FAULT_NAMES)."""
        return bit_names(self.bits, FAULT_NAMES)

    @property
    def protections(self) -> frozenset[str]:
        """Alarm-level faults in the shared protection vocabulary."""
        return frozenset(
            _PROTECTION_OF_FAULT[name] for name in self.names if name in _PROTECTION_OF_FAULT
        )


def decode_faults(data: bytes) -> DalyFaults:
    """Decode 0x98."""
    data = _data(data)
    return DalyFaults(bits=int.from_bytes(data[:7], "little"), fault_code=data[7])


@dataclass(frozen=True, slots=True)
class DalyRated:
    """0x50: rated capacity (Ah) and nominal cell voltage (V)."""

    capacity: float
    cell_voltage: float


def decode_rated(data: bytes) -> DalyRated:
    """Decode 0x50 (two big-endian u32: capacity in mAh, cell voltage in mV)."""
    data = _data(data)
    return DalyRated(
        capacity=int.from_bytes(data[0:4], "big") / 1000,
        cell_voltage=int.from_bytes(data[4:8], "big") / 1000,
    )


def encode_charge_fet(on: bool, address: int = HOST_ADDRESS_RS485) -> bytes:
    """Switch the charge FET (0xDA); the BMS echoes the state in data byte 0."""
    return encode_request(CMD_CHARGE_FET, address, bytes((1 if on else 0,)))


def encode_discharge_fet(on: bool, address: int = HOST_ADDRESS_RS485) -> bytes:
    """Switch the discharge FET (0xD9); the BMS echoes the state in data byte 0."""
    return encode_request(CMD_DISCHARGE_FET, address, bytes((1 if on else 0,)))


def encode_set_soc(soc: float, when: dt.datetime, address: int = HOST_ADDRESS_RS485) -> bytes:
    """Set the SOC (0x21); the frame also carries the date and time to set the BMS clock.

    Data: year - 2000, month, day, hour, minute, second, SOC in 0.1 % (u16 big-endian).
    The BMS answers with data byte 0 = 1 on success.
    """
    if not 0.0 <= soc <= 100.0:
        raise ProtocolError(f"SOC must be within 0-100 %, not {soc}")
    if not 2000 <= when.year <= 2255:
        raise ProtocolError(f"Daly clock cannot hold year {when.year}")
    data = bytes(
        (when.year - 2000, when.month, when.day, when.hour, when.minute, when.second)
    ) + round(soc * 10).to_bytes(2, "big")
    return encode_request(CMD_SET_SOC, address, data)


def to_reading(
    *,
    soc: DalySoc | None = None,
    mosfet: DalyMosfetStatus | None = None,
    status: DalyStatus | None = None,
    cell_voltages: list[float] | None = None,
    temperatures: list[int] | None = None,
    balance: tuple[bool, ...] | None = None,
    faults: DalyFaults | None = None,
    rated: DalyRated | None = None,
) -> BmsReading:
    """Combine whichever Daly answers a poll produced into a :class:`BmsReading`."""
    voltage = soc.voltage if soc else None
    current = soc.current if soc else None
    return BmsReading(
        soc=soc.soc if soc else None,
        voltage=voltage,
        current=current,
        power=power_of(voltage, current),
        remaining_capacity=mosfet.remaining_capacity if mosfet else None,
        nominal_capacity=rated.capacity if rated else None,
        cycles=status.cycles if status else None,
        cell_voltages=tuple(cell_voltages or ()),
        temperatures=tuple(float(value) for value in temperatures or ()),
        balancing=balance or (),
        charge_fet=mosfet.charge_fet if mosfet else None,
        discharge_fet=mosfet.discharge_fet if mosfet else None,
        protections=faults.protections if faults else frozenset(),
    )


__all__ = [
    "FAULT_NAMES",
    "DalyCellVoltageRange",
    "DalyFaults",
    "DalyFrame",
    "DalyMosfetStatus",
    "DalyRated",
    "DalySoc",
    "DalyStatus",
    "DalyTemperatureRange",
    "checksum",
    "decode_balance",
    "decode_cell_voltage_frames",
    "decode_cell_voltage_range",
    "decode_faults",
    "decode_mosfet_status",
    "decode_rated",
    "decode_soc",
    "decode_status",
    "decode_temperature_frames",
    "decode_temperature_range",
    "encode_charge_fet",
    "encode_discharge_fet",
    "encode_request",
    "encode_set_soc",
    "parse_frame",
    "split_frames",
    "to_reading",
]
