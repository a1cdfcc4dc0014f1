"""Instant Readout adverts decoded per second: ours against ``victron-ble`` (PyPI), same adverts.

A few thousand adverts of the twelve record types both decode, from 24 simulated devices (two per
record type, each with its own key), built with realistic values. ``victron-ble`` gets one parser
object per device, built before timing (its cheapest use); ours is the plain function call.
Run: ``.venv/bin/python bench/victron_ble.py``; the last line is ``RATIO victron_ble_decode x``
(ours ÷ theirs, adverts per second; above 1 means ours is faster).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
import random
import sys
import time
from typing import Any

# this file's own name would hide the victron_ble package: replace its folder by the repository
sys.path[0] = str(Path(__file__).resolve().parents[1])

from victron_ble.devices import detect_device_type  # noqa: E402

from custom_components.sma_victron_bridge.protocols.victron_ble import (  # noqa: E402
    decode_advertisement,
    encode_advertisement,
)

ADVERTS = 3000
ROUNDS = 5
Values = dict[str, float | int | None]


def volts(r: random.Random, low: float, high: float) -> float:
    return r.randint(round(low * 100), round(high * 100)) / 100


def amps(r: random.Random, low: float, high: float) -> float:
    return r.randint(round(low * 10), round(high * 10)) / 10


def solar(r: random.Random) -> Values:
    return {
        "charge_state": r.choice((0, 3, 4, 5)),
        "charger_error": 0,
        "battery_voltage": volts(r, 11.5, 14.6),
        "battery_current": amps(r, -5, 30),
        "yield_today": r.randint(0, 5000) * 10,
        "pv_power": r.randint(0, 1200),
        "load_current": amps(r, 0, 15),
    }


def battery_monitor(r: random.Random) -> Values:
    mode = r.choice((0, 1, 2, 3))
    return {
        "time_to_go": r.choice((None, r.randint(0, 20000))),
        "voltage": volts(r, 44, 56),
        "alarm": 0,
        "aux_mode": mode,
        "starter_voltage": volts(r, 11, 14) if mode == 0 else None,
        "midpoint_voltage": volts(r, 22, 28) if mode == 1 else None,
        "temperature": volts(r, -10, 40) if mode == 2 else None,
        "current": r.randint(-200000, 150000) / 1000,
        "consumed_ah": -amps(r, 0, 400),
        "soc": amps(r, 0, 100),
    }


def inverter(r: random.Random) -> Values:
    return {
        "device_state": r.choice((0, 9)),
        "alarm": 0,
        "battery_voltage": volts(r, 22, 28),
        "ac_apparent_power": r.randint(0, 3000),
        "ac_voltage": volts(r, 225, 235),
        "ac_current": amps(r, 0, 13),
    }


def dcdc(r: random.Random) -> Values:
    return {
        "charge_state": r.choice((0, 3, 4, 5)),
        "charger_error": 0,
        "input_voltage": volts(r, 12, 14.5),
        "output_voltage": volts(r, 12, 14.5),
        "off_reason": r.choice((0, 1, 8)),
    }


def smart_lithium(r: random.Random) -> Values:
    cells = [volts(r, 3.2, 3.4) for _ in range(4)]
    values: Values = {f"cell_voltage{i + 1}": v for i, v in enumerate(cells)}
    return values | {
        "bms_flags": r.getrandbits(20),
        "error_flags": 0,
        "battery_voltage": round(sum(cells), 2),
        "balancer_status": r.choice((0, 1, 2)),
        "battery_temperature": r.randint(0, 35),
    }


def ac_charger(r: random.Random) -> Values:
    return {
        "charge_state": r.choice((3, 4, 5, 6)),
        "charger_error": 0,
        "output_voltage1": volts(r, 12.5, 14.4),
        "output_current1": amps(r, 0, 15),
        "temperature": r.randint(10, 50),
        "ac_current": amps(r, 0, 2),
    }


def battery_protect(r: random.Random) -> Values:
    return {
        "device_state": r.choice((0, 9)),
        "output_state": r.choice((0, 1, 4)),
        "error_code": 0,
        "alarm": 0,
        "warning": 0,
        "input_voltage": volts(r, 12, 14),
        "output_voltage": volts(r, 12, 14),
        "off_reason": 0,
    }


def lynx(r: random.Random) -> Values:
    return {
        "error": 0,
        "time_to_go": r.randint(0, 20000),
        "voltage": volts(r, 48, 56),
        "current": amps(r, -200, 150),
        "io_status": r.getrandbits(16),
        "warnings_alarms": 0,
        "soc": amps(r, 0, 100),
        "consumed_ah": -amps(r, 0, 400),
        "temperature": r.randint(5, 35),
    }


def multi_rs(r: random.Random) -> Values:
    return {
        "device_state": r.choice((3, 4, 5, 9)),
        "charger_error": 0,
        "battery_current": amps(r, -100, 100),
        "battery_voltage": volts(r, 48, 56),
        "ac_in_state": r.choice((0, 2)),
        "ac_in_power": r.randint(-3000, 6000),
        "ac_out_power": r.randint(0, 6000),
        "pv_power": r.randint(0, 6000),
        "yield_today": r.randint(0, 4000) * 10,
    }


def ve_bus(r: random.Random) -> Values:
    return {
        "device_state": r.choice((3, 4, 5, 9)),
        "error": 0,
        "battery_current": amps(r, -100, 100),
        "battery_voltage": volts(r, 48, 56),
        "ac_in_state": r.choice((0, 1, 2)),
        "ac_in_power": r.randint(-5000, 8000),
        "ac_out_power": r.randint(0, 8000),
        "alarm": 0,
        "battery_temperature": r.randint(5, 35),
        "soc": r.randint(0, 100),
    }


def dc_meter(r: random.Random) -> Values:
    mode = r.choice((0, 2, 3))
    return {
        "meter_type": r.choice((-9, -6, -3, 1, 3, 7)),
        "voltage": volts(r, 12, 14.5),
        "alarm": 0,
        "aux_mode": mode,
        "starter_voltage": volts(r, 11, 14) if mode == 0 else None,
        "temperature": volts(r, -10, 40) if mode == 2 else None,
        "current": r.randint(-50000, 50000) / 1000,
    }


def orion_xs(r: random.Random) -> Values:
    return {
        "charge_state": r.choice((0, 3, 4, 5)),
        "charger_error": 0,
        "output_voltage": volts(r, 12, 14.5),
        "output_current": amps(r, 0, 50),
        "input_voltage": volts(r, 12, 14.5),
        "input_current": amps(r, 0, 55),
        "off_reason": r.choice((0, 1, 8, 0x80)),
    }


# record type, product id, value generator
DEVICES: list[tuple[int, int, Callable[[random.Random], Values]]] = [
    (0x01, 0xA060, solar),
    (0x02, 0xA389, battery_monitor),
    (0x03, 0xA2A4, inverter),
    (0x04, 0xA3C8, dcdc),
    (0x05, 0xA0E8, smart_lithium),
    (0x08, 0xA339, ac_charger),
    (0x09, 0xA3B1, battery_protect),
    (0x0A, 0xA3E6, lynx),
    (0x0B, 0xA442, multi_rs),
    (0x0C, 0xA3A0, ve_bus),
    (0x0D, 0xA38A, dc_meter),
    (0x0F, 0xA3F0, orion_xs),
]


def build(rng: random.Random) -> list[tuple[bytes, bytes, Any]]:
    """(advert, key, their parser) triples, two devices per record type, shuffled."""
    devices = [(rt, model, gen, rng.randbytes(16)) for rt, model, gen in DEVICES for _ in (1, 2)]
    parsers: dict[bytes, Any] = {}
    adverts: list[tuple[bytes, bytes, Any]] = []
    for index in range(ADVERTS):
        record_type, model, generate, key = devices[index % len(devices)]
        data = encode_advertisement(
            record_type, generate(rng), key, model_id=model, nonce=rng.getrandbits(16)
        )
        if key not in parsers:
            parser_class = detect_device_type(data)
            assert parser_class is not None
            parsers[key] = parser_class(key.hex())
        adverts.append((data, key, parsers[key]))
    rng.shuffle(adverts)
    return adverts


def per_second(run: Callable[[], None], count: int) -> float:
    """Best of a few rounds, in adverts per second."""
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return count / best


def main() -> None:
    started = time.perf_counter()
    adverts = build(random.Random(20221214))

    # both must read the same values before their speed means anything; where both use the
    # same name for a value (voltage, soc, states…) it must match (Lynx consumed Ah and Multi RS
    # yield differ on purpose: see tests/protocols/test_victron_ble_differential.py)
    compared = 0
    for data, key, parser in adverts:
        values = decode_advertisement(data, key)
        their_values = parser.parse(data)._data  # their getters differ per class
        for name in set(values) & set(their_values) - {"consumed_ah", "yield_today", "alarm"}:
            value = their_values[name]
            assert values[name] == getattr(value, "value", value), (name, data.hex())
            compared += 1
    assert compared > 5 * len(adverts)

    def ours() -> None:
        for data, key, _parser in adverts:
            decode_advertisement(data, key)

    def theirs() -> None:
        for data, _key, parser in adverts:
            parser.parse(data)

    ours_rate = per_second(ours, len(adverts))
    theirs_rate = per_second(theirs, len(adverts))
    print(f"adverts: {len(adverts)} of {len(DEVICES)} record types, best of {ROUNDS} rounds")
    print(f"ours        {ours_rate:12,.0f} adverts/s  {1e6 / ours_rate:7.2f} µs each")
    print(f"victron-ble {theirs_rate:12,.0f} adverts/s  {1e6 / theirs_rate:7.2f} µs each")
    print(f"elapsed {time.perf_counter() - started:.1f} s")
    print(f"RATIO victron_ble_decode {ours_rate / theirs_rate:.2f}")


if __name__ == "__main__":
    main()
