"""Decode captured BMS frames through the integration's own code and print them as JSON.

``scripts/decode PROTOCOL HEX…`` prints one JSON object per HEX argument (one complete response
frame each, as on the wire: header to checksum). PROTOCOL is one of ``jk_serial``, ``jk_pb``,
``jk_ble``, ``jbd_ble``, ``daly_ble``, ``jbd``, ``daly``, ``ant``.

The wired protocols go through the codecs a live entry uses (``protocols/jk_serial.py``,
``jk_pb.py`` + ``jk02.py``, ``jbd.py``, ``daly.py``, ``ant.py``); the Bluetooth ones through
``protocols/ble_bms.decode_ble_capture``, which feeds the frame to the same aiobmsble class a
live entry uses via a simulated peer.

Keys are SI units (V, A, °C, Ah, %, W) and present only when the frame carries the value:
``voltage``, ``current`` (+ = charging), ``soc``, ``cycles``, ``cell_voltages``,
``temperatures`` (battery sensors), ``mosfet_temperature``, ``remaining_capacity``,
``nominal_capacity``, ``charge_fet``, ``discharge_fet``, and where known ``power``,
``balancing`` (1-based cell numbers), ``protections``, ``model``, ``serial``, firmware and more.
A frame that cannot be decoded prints ``{"error": "..."}``; the command then exits with 1 after
printing every object (2 for a usage error).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
import dataclasses
import json
from pathlib import Path
import struct
import sys
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from custom_components.sma_victron_bridge.protocols import (  # noqa: E402
    ProtocolError,
    ant,
    daly,
    jbd,
    jk02,
    jk_pb,
    jk_serial,
)
from custom_components.sma_victron_bridge.protocols.bms_common import BmsReading  # noqa: E402

PROTOCOLS = ("jk_serial", "jk_pb", "jk_ble", "jbd_ble", "daly_ble", "jbd", "daly", "ant")
BLE_PROTOCOLS = frozenset({"jk_ble", "jbd_ble", "daly_ble"})

_READING_KEYS = (
    "voltage",
    "current",
    "power",
    "soc",
    "cycles",
    "cell_voltages",
    "temperatures",
    "mosfet_temperature",
    "remaining_capacity",
    "nominal_capacity",
    "charge_fet",
    "discharge_fet",
    "model",
    "serial",
)

Json = dict[str, Any]


def _value(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_value(item) for item in value]
    if isinstance(value, frozenset | set):
        return sorted(value)
    return value


def reading_to_json(reading: BmsReading) -> Json:
    """The keys of a reading that it carries (None and empty values left out)."""
    out: Json = {}
    for key in _READING_KEYS:
        value = getattr(reading, key)
        if value is not None and value != ():
            out[key] = _value(value)
    if any(reading.balancing):
        out["balancing"] = [index + 1 for index, on in enumerate(reading.balancing) if on]
    if reading.protections:
        out["protections"] = sorted(reading.protections)
    # What a subclass adds (the Bluetooth reading's SOH, runtime, firmware …).
    base = {item.name for item in dataclasses.fields(BmsReading)}
    for item in dataclasses.fields(reading):
        if item.name in base:
            continue
        value = getattr(reading, item.name)
        if value is not None and value != ():
            out[item.name] = _value(value)
    return out


# --- wired protocols ----------------------------------------------------------------------


def decode_jk_serial(frame: bytes) -> Json:
    parsed = jk_serial.parse_frame(frame)
    if parsed.is_request:
        raise ProtocolError("a JK request, not a response")
    status = jk_serial.decode_status(parsed)
    out = reading_to_json(jk_serial.to_reading(parsed))
    extra = {
        "cell_count": status.cell_count,
        "firmware_version": status.software_version,
        "protocol_version": status.protocol_version,
        "charge_switch": status.charge_switch,
        "discharge_switch": status.discharge_switch,
    }
    out.update({key: value for key, value in extra.items() if value is not None})
    return out


def _jk02_frame(frame: bytes, layout: str) -> Json:
    kind = frame[4] if len(frame) > 4 else -1
    if kind == jk02.TYPE_CELL_INFO:
        info = jk02.decode_cell_info(frame, layout)
        out = reading_to_json(jk02.to_reading(info))
        out.update(
            soh=info.soh,
            runtime=info.runtime_s,
            balance_current=info.balance_current,
            cycle_capacity=info.cycle_capacity,
        )
        return out
    if kind == jk02.TYPE_DEVICE_INFO:
        device = jk02.parse_device_info(frame)
        return {
            key: value
            for key, value in {
                "model": device.model,
                "serial": device.serial,
                "firmware_version": device.software_version,
                "hardware_version": device.hardware_version,
                "uptime": device.uptime_s,
                "layout": jk02.layout_for(device),
            }.items()
            if value not in ("", None)
        }
    if kind == jk02.TYPE_SETTINGS:
        values = jk02.parse_settings(frame)
        return {
            "nominal_capacity": values.nominal_capacity,
            "cell_count": values.cell_count,
            "charge_switch": values.charge_switch,
            "discharge_switch": values.discharge_switch,
            "balancer_switch": values.balancer_switch,
            "cell_ovp": values.cell_ovp,
            "cell_uvp": values.cell_uvp,
            "max_charge_current": values.max_charge_current,
            "max_discharge_current": values.max_discharge_current,
        }
    jk02.check_frame(frame)
    raise ProtocolError(f"JK02 frame type 0x{kind:02X} is not decoded")


def decode_jk_pb(frame: bytes) -> Json:
    """A PB reply (frame + acknowledgement); a bare 300-byte frame is taken too."""
    if len(frame) == jk_pb.TRIGGER_LENGTH and frame[1] == jk_pb.FUNCTION_WRITE_MULTIPLE:
        jk_pb.parse_trigger(frame)
        raise ProtocolError("a JK PB trigger request, not a response")
    if jk_pb.REPLY_LENGTH <= len(frame) <= jk_pb.REPLY_LENGTH + 1:
        reply = jk_pb.split_reply(frame)
        return {**_jk02_frame(reply.frame, jk02.LAYOUT_32S), "address": reply.address}
    return _jk02_frame(frame, jk02.LAYOUT_32S)


def decode_jbd(frame: bytes) -> Json:
    reply = jbd.parse_frame(frame)
    if frame[1] in (jbd.READ, jbd.WRITE):
        raise ProtocolError("a JBD request, not a response")
    if not reply.ok:
        raise ProtocolError(
            f"JBD error status 0x{reply.status:02X} for register 0x{reply.register:02X}"
        )
    if reply.register == jbd.REG_BASIC_INFO:
        info = jbd.decode_basic_info(reply.payload)
        out = reading_to_json(jbd.to_reading(info))
        out["cell_count"] = info.cell_count
        if info.software_version is not None:
            out["firmware_version"] = info.software_version
        return out
    if reply.register == jbd.REG_CELL_VOLTAGES:
        return {"cell_voltages": jbd.decode_cell_voltages(reply.payload)}
    if reply.register == jbd.REG_MODEL:
        return {"model": jbd.decode_model(reply.payload)}
    if reply.register == jbd.REG_ERROR_COUNTERS:
        return {"error_counters": jbd.decode_error_counters(reply.payload)}
    raise ProtocolError(f"JBD register 0x{reply.register:02X} is not decoded")


def decode_daly(frame: bytes) -> Json:
    parsed = daly.parse_frame(frame)
    command, data = parsed.command, parsed.data
    if frame[1] in (daly.HOST_ADDRESS_RS485, daly.HOST_ADDRESS_UART):
        raise ProtocolError("a Daly request, not a response")
    if command == daly.CMD_SOC:
        return reading_to_json(daly.to_reading(soc=daly.decode_soc(data)))
    if command == daly.CMD_MOSFET:
        mosfet = daly.decode_mosfet_status(data)
        return {**reading_to_json(daly.to_reading(mosfet=mosfet)), "state": mosfet.state_name}
    if command == daly.CMD_STATUS:
        status = daly.decode_status(data)
        return {
            **reading_to_json(daly.to_reading(status=status)),
            "cell_count": status.cell_count,
            "temperature_sensor_count": status.temperature_sensor_count,
        }
    if command == daly.CMD_CELL_VOLTAGE_RANGE:
        cells = daly.decode_cell_voltage_range(data)
        return {key: _value(value) for key, value in dataclasses.asdict(cells).items()}
    if command == daly.CMD_TEMPERATURE_RANGE:
        sensors = daly.decode_temperature_range(data)
        return {key: _value(value) for key, value in dataclasses.asdict(sensors).items()}
    if command == daly.CMD_CELL_VOLTAGES:
        number = data[0]
        count = number * daly.CELLS_PER_FRAME
        volts = daly.decode_cell_voltage_frames([parsed], count)[-daly.CELLS_PER_FRAME :]
        return {"frame_number": number, "cell_voltages": volts}
    if command == daly.CMD_TEMPERATURES:
        number = data[0]
        count = number * daly.TEMPERATURES_PER_FRAME
        values = daly.decode_temperature_frames([parsed], count)[-daly.TEMPERATURES_PER_FRAME :]
        return {"frame_number": number, "temperatures": [float(value) for value in values]}
    if command == daly.CMD_BALANCE:
        flags = daly.decode_balance(data)
        return {"balancing": [index + 1 for index, on in enumerate(flags) if on]}
    if command == daly.CMD_FAULTS:
        faults = daly.decode_faults(data)
        return {"protections": sorted(faults.protections), "faults": faults.names}
    if command == daly.CMD_RATED:
        rated = daly.decode_rated(data)
        return {"nominal_capacity": rated.capacity, "nominal_cell_voltage": rated.cell_voltage}
    raise ProtocolError(f"Daly command 0x{command:02X} is not decoded")


def decode_ant(frame: bytes) -> Json:
    if frame.startswith(ant.LEGACY_HEADER):
        status = ant.decode_legacy_status(frame)
    else:
        parsed = ant.parse_frame(frame)
        if parsed.function != ant.FUNCTION_STATUS:
            raise ProtocolError(f"ANT function 0x{parsed.function:02X} is not decoded")
        status = ant.decode_status(parsed.payload)
    return {**reading_to_json(ant.to_reading(status)), "cell_count": status.cell_count}


WIRED: dict[str, Callable[[bytes], Json]] = {
    "jk_serial": decode_jk_serial,
    "jk_pb": decode_jk_pb,
    "jbd": decode_jbd,
    "daly": decode_daly,
    "ant": decode_ant,
}


# --- Bluetooth ----------------------------------------------------------------------------


def decode_ble(protocol: str, frame: bytes) -> Json:
    try:
        from custom_components.sma_victron_bridge.protocols import ble_bms
    except ImportError as err:  # the Bluetooth decoder is optional for this script
        raise ProtocolError(f"Bluetooth decoding is not available: {err}") from err
    reading = asyncio.run(ble_bms.decode_ble_capture(protocol, frame))
    return reading_to_json(reading)


def decode(protocol: str, text: str) -> Json:
    """One HEX argument as a JSON object (``{"error": ...}`` when it cannot be decoded)."""
    cleaned = "".join(text.split()).replace(":", "").removeprefix("0x")
    try:
        frame = bytes.fromhex(cleaned)
    except ValueError:
        return {"error": f"not hexadecimal: {text[:40]!r}"}
    if not frame:
        return {"error": "empty frame"}
    try:
        if protocol in BLE_PROTOCOLS:
            return decode_ble(protocol, frame)
        return WIRED[protocol](frame)
    except ProtocolError as err:
        return {"error": str(err) or type(err).__name__}
    except (IndexError, ValueError, KeyError, struct.error) as err:  # a codec's gap
        return {"error": f"{type(err).__name__}: {err}"}


def main(argv: Sequence[str]) -> int:
    """Decode every HEX argument; 1 if any failed, 2 for a usage error."""
    if len(argv) < 2 or argv[0] not in PROTOCOLS:
        print(f"usage: scripts/decode {{{','.join(PROTOCOLS)}}} HEX...", file=sys.stderr)
        return 2
    protocol, *frames = argv
    failed = False
    for text in frames:
        result = decode(protocol, text)
        failed = failed or "error" in result
        print(json.dumps(result, ensure_ascii=False), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
