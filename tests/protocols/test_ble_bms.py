"""The Bluetooth BMS adapter: captures through aiobmsble, sample conversion, the link's contract.

Every capture of testdata/jk/jk_ble.json, ble_bms/jbd_ble.json and ble_bms/daly_ble.json goes
through :func:`decode_ble_capture`, i.e. a simulated peer answering aiobmsble's requests with the
captured frame, the library's own class for the family and our adapter: exactly a live entry's
path. Where aiobmsble and the values the captures state disagree, the tests say which one the
integration follows:

* current sign: none. aiobmsble's convention (positive = charging) is the captures' convention.
* JK 32S byte 254: aiobmsble types it a second MOSFET sensor, syssi calls it temperature 5. We
  follow aiobmsble; in these captures it equals the MOSFET sensor at 144 (or is 0 and below it),
  so ``mosfet_temperature`` (the hottest MOSFET sensor) is the stated MOSFET temperature and no
  MOSFET reading shows up among the battery temperatures.
* JK delta: aiobmsble reads the BMS's delta field, syssi computes max - min. A reading has no
  delta of its own: the spread is computed from ``cell_voltages`` (max - min, syssi's value).
* JK nominal capacity: aiobmsble gives whole Ah (``x // 1000``); 251.235 Ah reads as 251.
* JK 32S error word: aiobmsble keeps its low 16 bits (the u32 at 166), so the bit 19 of the
  11.50 capture (524288) is not reported.
* JK serial number: aiobmsble reads the first 8 characters of the 11-character field.
* Daly version block: aiobmsble reads the hardware text at data offset 16; one module (capture
  ``daly_d2_version_a9_1``) has it at 32, where syssi reads it. We show nothing there.
* JK04 (float32 cells), the classic Daly A5 frames and settings/logbook/command frames are not
  read by aiobmsble: they raise :class:`ProtocolError` instead of a made-up reading.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
import json
import math
from pathlib import Path
from typing import Any

import aiobmsble  # type: ignore[import-untyped]
from hypothesis import HealthCheck, given, settings, strategies as st
import pytest

from custom_components.sma_victron_bridge.protocols import ProtocolError, jbd
from custom_components.sma_victron_bridge.protocols.ble_bms import (
    BMS_PROBLEM,
    CAPTURE_PROTOCOLS,
    BleBmsError,
    BleBmsLink,
    BleBmsReading,
    BleBmsTimeout,
    BleBmsUnsupported,
    BleBmsWriteRejected,
    _jbd_ack,
    bms_class_for,
    decode_ble_capture,
    follow_bleak_client,
    jk_switch_command,
    library_bleak_client,
    matchers,
    reading_from_sample,
    supported_families,
)
from custom_components.sma_victron_bridge.protocols.bms_common import crc16_modbus
from custom_components.sma_victron_bridge.simulators import ble_bms as sim

TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "testdata"
JK = json.loads((TESTDATA / "jk" / "jk_ble.json").read_text())
JBD = json.loads((TESTDATA / "ble_bms" / "jbd_ble.json").read_text())
DALY = json.loads((TESTDATA / "ble_bms" / "daly_ble.json").read_text())
ALL = [("jk_ble", e) for e in JK] + [("jbd_ble", e) for e in JBD] + [("daly_ble", e) for e in DALY]
BY_NAME = {e["name"]: e for _, e in ALL}

JK_CELLS = [e for e in JK if e["frame"] in ("jk02_24s_cell_info", "jk02_32s_cell_info")]
JK_VALID_CELLS = [e for e in JK_CELLS if e["checksum"]["ok"]]
JK_DEVICE_INFOS = [e for e in JK if e["frame"] in ("jk02_device_info", "jk04_device_info")]
JK_STREAMS = [
    e
    for e in JK
    if e["name"]
    in ("jk_ble_notification_stream_pb2a16s15p_v14", "jk02_32s_junk_after_device_info_issue377")
]
JK_REJECTED = [e for e in JK if e not in JK_VALID_CELLS + JK_DEVICE_INFOS + JK_STREAMS]
# Firmware 14 and later carries the two extra sensors at 256/258 (syssi's temperature 4 and 3).
JK_SENSORS_FROM_14 = {
    "jk02_32s_v11_cell_info",
    "jk02_32s_v14_cell_info",
    "jk02_32s_v15_cell_info",
    "jk02_32s_v19_27_cell_info_balancing",
}
# Cell frames with the device info frame of the same BMS.
JK_PAIRS = {
    "jk02_24s_v10_cell_info": "jk02_24s_v10_device_info",
    "jk02_24s_v10_08_cell_info": "jk02_24s_v10_08_device_info",
    "jk02_32s_v11_cell_info": "jk02_32s_v11_device_info",
    "jk02_32s_v14_cell_info": "jk02_32s_v14_device_info",
    "jk02_32s_v19_27_cell_info_balancing": "jk02_32s_v19_27_device_info",
    "jk02_32s_v11_17_cell_info": "jk02_32s_v11_17_device_info",
}
JBD_VALUES = [e for e in JBD if e["frame"] in ("jbd_response_03", "jbd_response_04")]
JBD_REJECTED = [e for e in JBD if e not in JBD_VALUES]
DALY_STATUS = [e for e in DALY if e["frame"] in ("daly_d2_status_62reg", "daly_d2_status_80reg")]
DALY_VERSIONS = [e for e in DALY if e["frame"] in ("daly_d2_version", "daly_p81_version")]
DALY_REJECTED = [
    e for e in DALY if e not in DALY_STATUS + DALY_VERSIONS and e["name"] != "daly_p81_cells_rt1"
]


def _ids(entries: list[dict[str, Any]]) -> list[str]:
    return [e["name"] for e in entries]


def _frame(entry: dict[str, Any]) -> bytes:
    return bytes.fromhex(entry["hex"])


def _close(actual: float | None, expected: float, tolerance: float = 1e-6) -> bool:
    return actual is not None and math.isclose(actual, expected, abs_tol=tolerance)


# --- JK --------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", JK_VALID_CELLS, ids=_ids(JK_VALID_CELLS))
async def test_jk_cell_info_decodes_to_the_stated_values(entry: dict[str, Any]) -> None:
    expected = entry["expected"]
    reading = await decode_ble_capture("jk_ble", _frame(entry))
    assert reading.cell_voltages == pytest.approx(expected["cell_voltages"])
    assert _close(reading.voltage, expected["total_voltage"])
    assert _close(reading.current, expected["current"])  # + = charging in both
    assert reading.soc == expected["soc"]
    assert _close(reading.remaining_capacity, expected["capacity_remaining"])
    assert reading.nominal_capacity == math.floor(expected["nominal_capacity"])  # whole Ah
    assert reading.cycles == expected["cycles"]
    assert reading.soh == expected["soh"]
    assert reading.charge_fet is expected["charging_mosfet"]
    assert reading.discharge_fet is expected["discharging_mosfet"]
    assert reading.heater is expected["heating"]
    assert _close(reading.balance_current, expected["balance_current"])
    assert _close(reading.mosfet_temperature, expected["mosfet_temperature"])
    battery = [expected["temperature_1"], expected["temperature_2"]]
    if entry["name"] in JK_SENSORS_FROM_14:
        battery += [expected["temperature_4"], expected["temperature_3"]]  # bytes 256, 258
    assert reading.temperatures == pytest.approx(battery)
    assert reading.min_cell_voltage == pytest.approx(expected["min_cell_voltage"])
    assert reading.max_cell_voltage is not None
    assert reading.min_cell_voltage is not None
    spread = reading.max_cell_voltage - reading.min_cell_voltage
    assert spread == pytest.approx(expected["delta_cell_voltage"])  # syssi's max - min
    assert reading.problem_code == expected["errors_bitmask"] & 0xFFFF
    assert reading.protections == frozenset()
    if reading.voltage and reading.current is not None:
        assert reading.power == pytest.approx(reading.voltage * reading.current, abs=1e-3)


@pytest.mark.parametrize("cell_name", sorted(JK_PAIRS))
async def test_jk_layout_from_device_info_agrees_with_the_frame_alone(cell_name: str) -> None:
    """A live link picks the layout from the firmware; a lone frame is recognised alike."""
    frame = _frame(BY_NAME[cell_name])
    info = _frame(BY_NAME[JK_PAIRS[cell_name]])
    assert await decode_ble_capture("jk_ble", frame, device_info=info) == (
        await decode_ble_capture("jk_ble", frame)
    )


@pytest.mark.parametrize("entry", JK_DEVICE_INFOS, ids=_ids(JK_DEVICE_INFOS))
async def test_jk_device_info_decodes_to_the_stated_identity(entry: dict[str, Any]) -> None:
    expected = entry["expected"]
    reading = await decode_ble_capture("jk_ble", _frame(entry))
    assert reading.model == expected["vendor_id"]
    assert reading.firmware == expected["software_version"]
    assert reading.hardware == expected["hardware_version"]
    assert reading.serial == (expected["serial_number"][:8] or None)  # aiobmsble reads 8 chars
    assert reading.cell_voltages == ()
    assert reading.voltage is None


async def test_jk04_cells_are_not_read() -> None:
    """aiobmsble reads JK04's device info (same frame) but not its float32 cell frame."""
    with pytest.raises(BleBmsUnsupported, match="JK04"):
        await decode_ble_capture("jk_ble", _frame(BY_NAME["jk04_cell_info"]))


async def test_jk_notification_stream_decodes_its_cell_frame_with_its_device_info() -> None:
    entry = BY_NAME["jk_ble_notification_stream_pb2a16s15p_v14"]
    frames = [bytes.fromhex(f) for f in entry["expected"]["frames"]]
    assert [f[4] for f in frames] == entry["expected"]["frame_types"]
    reading = await decode_ble_capture("jk_ble", _frame(entry))
    assert reading == await decode_ble_capture("jk_ble", frames[3], device_info=frames[0])
    assert reading.voltage == pytest.approx(53.501)
    assert len(reading.cell_voltages) == 16


async def test_jk_stream_with_junk_after_the_device_info() -> None:
    entry = BY_NAME["jk02_32s_junk_after_device_info_issue377"]
    reading = await decode_ble_capture("jk_ble", _frame(entry))
    assert (reading.model, reading.firmware) == ("JK_B2A8S30P", "19.04")


async def test_jk_ready_frame_is_the_captured_one() -> None:
    assert sim.jk_ready_frame() == _frame(BY_NAME["jk_ble_ready_ack_c8"])


@pytest.mark.parametrize("entry", JK_REJECTED, ids=_ids(JK_REJECTED))
async def test_jk_frames_aiobmsble_does_not_read_raise_protocol_error(
    entry: dict[str, Any],
) -> None:
    with pytest.raises(ProtocolError):
        await decode_ble_capture("jk_ble", _frame(entry))


async def test_jk_device_info_argument_must_be_a_device_info_frame() -> None:
    cell = _frame(BY_NAME["jk02_32s_v11_cell_info"])
    with pytest.raises(ProtocolError, match="device_info"):
        await decode_ble_capture("jk_ble", cell, device_info=b"\x55\xaa\xeb\x90" + bytes(10))


# --- JBD -------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", JBD_VALUES, ids=_ids(JBD_VALUES))
async def test_jbd_frames_decode_to_the_stated_values(entry: dict[str, Any]) -> None:
    expected = entry["expected"]
    reading = await decode_ble_capture("jbd_ble", _frame(entry))
    if expected["register"] == jbd.REG_CELL_VOLTAGES:
        assert reading == BleBmsReading(cell_voltages=tuple(expected["cell_voltages"]))
        return
    assert _close(reading.voltage, expected["total_voltage"])
    assert _close(reading.current, expected["current"])  # s16 10 mA, + = charging
    assert _close(reading.remaining_capacity, expected["capacity_remaining"])
    assert reading.nominal_capacity == expected["nominal_capacity"]
    assert reading.cycles == expected["cycles"]
    assert reading.soc == expected["soc"]
    assert reading.charge_fet is expected["charging_mosfet"]
    assert reading.discharge_fet is expected["discharging_mosfet"]
    assert reading.temperatures == pytest.approx(expected["temperatures"])
    assert reading.balancing == (False,) * expected["cell_count"]
    assert reading.problem_code == expected["protection_bitmask"]
    assert reading.protections == frozenset(jbd.protection_flags(expected["protection_bitmask"]))
    assert reading.cell_voltages == ()


async def test_jbd_software_mosfet_lock_is_named_like_the_serial_codec() -> None:
    reading = await decode_ble_capture(
        "jbd_ble", _frame(BY_NAME["jbd_ble_basic_info_charge_fet_off"])
    )
    assert reading.protections == {"mosfet_lock"}  # protection bit 12 of the JBD document


@pytest.mark.parametrize("entry", JBD_REJECTED, ids=_ids(JBD_REJECTED))
async def test_jbd_frames_aiobmsble_does_not_read_raise_protocol_error(
    entry: dict[str, Any],
) -> None:
    with pytest.raises(ProtocolError):
        await decode_ble_capture("jbd_ble", _frame(entry))


# --- Daly ------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", DALY_STATUS, ids=_ids(DALY_STATUS))
async def test_daly_status_decodes_to_the_stated_values(entry: dict[str, Any]) -> None:
    expected = entry["expected"]
    reading = await decode_ble_capture("daly_ble", _frame(entry))
    assert reading.cell_voltages == pytest.approx(expected["cell_voltages"])
    assert reading.temperatures == pytest.approx(expected["temperatures"])
    assert _close(reading.voltage, expected["total_voltage"])
    assert _close(reading.current, expected["current"])  # (raw - 30000) / 10, + = charging
    assert _close(reading.soc, expected["soc"])
    assert _close(reading.remaining_capacity, expected["capacity_remaining"])
    assert reading.cycles == expected["cycles"]
    assert reading.charge_fet is expected["charging_mosfet"]
    assert reading.discharge_fet is expected["discharging_mosfet"]
    assert reading.balancer_active is expected["balancing"]
    assert reading.problem_code == expected["errors_bitmask"]
    assert reading.protections == frozenset()
    if "mosfet_temperature" in expected:  # register 0x42, inside the 80-register block only
        assert reading.mosfet_temperature == expected["mosfet_temperature"]
    else:
        assert reading.mosfet_temperature is None


async def test_daly_empty_pack_is_a_library_problem_but_no_protection() -> None:
    """aiobmsble flags 0 Ah remaining; stopping the charge of an empty pack would be wrong."""
    reading = await decode_ble_capture(
        "daly_ble", _frame(BY_NAME["daly_d2_status_62reg_16s_btsnoop_1"])
    )
    assert reading.remaining_capacity == 0.0
    assert reading.library_problem is True
    assert reading.protections == frozenset()


@pytest.mark.parametrize("entry", DALY_VERSIONS, ids=_ids(DALY_VERSIONS))
async def test_daly_version_frames_give_the_identity(entry: dict[str, Any]) -> None:
    expected = entry["expected"]
    reading = await decode_ble_capture("daly_ble", _frame(entry))
    assert reading.firmware == expected["software_version"]
    if entry["name"] == "daly_d2_version_a9_1":
        # This module puts "BMS" at data offset 32 (where syssi reads it); aiobmsble reads the
        # hardware text at offset 16, which is empty here. We follow aiobmsble: nothing shown.
        assert reading.hardware is None
    else:
        assert reading.hardware == expected["hardware_version"]


async def test_daly_p81_cells_decode_only_what_the_frame_carries() -> None:
    entry = BY_NAME["daly_p81_cells_rt1"]
    expected = entry["expected"]
    reading = await decode_ble_capture("daly_ble", _frame(entry))
    assert reading.cell_voltages == pytest.approx(expected["cell_voltages"])
    assert reading.temperatures == pytest.approx(expected["temperatures"])
    assert _close(reading.voltage, expected["total_voltage"])
    assert _close(reading.current, expected["current"])
    assert _close(reading.soc, expected["soc"])
    assert reading.remaining_capacity is None  # in the second block, not in this frame
    assert reading.charge_fet is None


@pytest.mark.parametrize("entry", DALY_REJECTED, ids=_ids(DALY_REJECTED))
async def test_daly_frames_aiobmsble_does_not_read_raise_protocol_error(
    entry: dict[str, Any],
) -> None:
    with pytest.raises(ProtocolError):
        await decode_ble_capture("daly_ble", _frame(entry))


async def test_unknown_capture_protocol() -> None:
    with pytest.raises(BleBmsUnsupported, match="jk_ble"):
        await decode_ble_capture("jk_serial", b"\x4e\x57")
    assert set(CAPTURE_PROTOCOLS) == {"jk_ble", "jbd_ble", "daly_ble"}


def test_every_capture_is_covered_by_a_test() -> None:
    covered = (
        JK_VALID_CELLS
        + JK_DEVICE_INFOS
        + JK_REJECTED
        + JK_STREAMS
        + JBD_VALUES
        + JBD_REJECTED
        + DALY_STATUS
        + DALY_VERSIONS
        + DALY_REJECTED
        + [BY_NAME["daly_p81_cells_rt1"]]
    )
    assert sorted(_ids(covered)) == sorted(e["name"] for _, e in ALL)


# --- the adapter on its own ------------------------------------------------------------------


def _sensor(value: float, kind: str) -> Any:
    return aiobmsble.TempSensor(value, aiobmsble.TempSensor.T[kind])


def test_sample_fields_map_onto_a_reading() -> None:
    sample = {
        "battery_level": 55,
        "voltage": 53.2,
        "current": -4.5,
        "cycle_charge": 140.0,
        "design_capacity": 280,
        "cycles": 12,
        "cell_voltages": [3.32, 3.33, 3.34],
        "temp_values": [
            _sensor(21.0, "GENERIC"),
            _sensor(22.0, "CELL"),
            _sensor(30.0, "MOSFET"),
            _sensor(35.5, "MOSFET"),
            _sensor(40.0, "PCB"),
            _sensor(18.0, "AMBIENT"),
        ],
        "balancer": 0b101,
        "chrg_mosfet": True,
        "dischrg_mosfet": False,
        "problem_code": 0,
        "problem": False,
        "battery_health": 97,
        "balance_current": 0.2,
        "heater": True,
        "runtime": 3600,
    }
    reading = reading_from_sample(sample)
    assert reading.power == pytest.approx(-239.4)
    assert reading == BleBmsReading(
        soc=55.0,
        voltage=53.2,
        current=-4.5,
        power=reading.power,
        remaining_capacity=140.0,
        nominal_capacity=280.0,
        cycles=12,
        cell_voltages=(3.32, 3.33, 3.34),
        temperatures=(21.0, 22.0),
        mosfet_temperature=35.5,  # the hottest MOSFET sensor
        balancing=(True, False, True),
        charge_fet=True,
        discharge_fet=False,
        soh=97.0,
        balancer_active=True,
        balance_current=0.2,
        problem_code=0,
        library_problem=False,
        heater=True,
        other_temperatures=(40.0, 18.0),
        runtime=3600,
    )


def test_library_power_wins_and_a_bool_balancer_has_no_cells() -> None:
    reading = reading_from_sample(
        {"voltage": 50.0, "current": 2.0, "power": 99.0, "balancer": True, "temperature": 25.0}
    )
    assert reading.power == 99.0
    assert reading.balancing == ()
    assert reading.balancer_active is True
    assert reading.temperatures == (25.0,)  # a family with one temperature and no sensor list
    assert reading.nominal_capacity is None


def test_balancing_without_cell_voltages_uses_the_cell_count() -> None:
    reading = reading_from_sample({"balancer": 0b10, "cell_count": 4})
    assert reading.balancing == (False, True, False, False)
    huge = reading_from_sample({"balancer": -1, "cell_count": 10**12})
    assert len(huge.balancing) == 64


@pytest.mark.parametrize(
    ("family", "sample", "bms_problem", "expected"),
    [
        ("jbd", {"problem_code": 0b1_0000_0000_0001}, False, {"cell_overvoltage", "mosfet_lock"}),
        ("jbd", {"problem_code": 1 << 14}, False, {BMS_PROBLEM}),  # beyond the named bits
        ("jbd", {"problem_code": 0}, False, set()),
        ("jikong", {"problem_code": 0x0400}, False, {BMS_PROBLEM}),
        ("daly", {"problem_code": 1 << 40}, False, {BMS_PROBLEM}),
        (None, {"problem_code": 3}, False, {BMS_PROBLEM}),
        ("vatrer", {"problem": True}, True, {BMS_PROBLEM}),  # the BMS's own flag
        ("daly", {"problem": True, "cycle_charge": 0.0}, False, set()),  # aiobmsble's verdict
    ],
)
def test_only_what_the_bms_reports_becomes_a_protection(
    family: str | None, sample: dict[str, Any], bms_problem: bool, expected: set[str]
) -> None:
    reading = reading_from_sample(sample, family=family, bms_problem=bms_problem)
    assert reading.protections == expected


_SAMPLE_KEYS = (
    "battery_level", "voltage", "current", "power", "cycle_charge", "design_capacity", "cycles",
    "cell_voltages", "temp_values", "temperature", "balancer", "cell_count", "chrg_mosfet",
    "dischrg_mosfet", "problem", "problem_code", "battery_health", "balance_current", "heater",
    "runtime", "unknown_key",
)  # fmt: skip
_ANY_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=4)
    | st.builds(aiobmsble.TempSensor, st.floats(), st.sampled_from(list(aiobmsble.TempSensor.T))),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(
    sample=st.dictionaries(st.sampled_from(_SAMPLE_KEYS), _ANY_VALUE),
    family=st.sampled_from([None, "jbd", "jikong", "daly"]),
    bms_problem=st.booleans(),
)
def test_any_sample_gives_a_reading(
    sample: dict[str, Any], family: str | None, bms_problem: bool
) -> None:
    """Whatever a library release puts in a sample, the adapter never raises."""
    reading = reading_from_sample(sample, family=family, bms_problem=bms_problem)
    assert all(isinstance(v, float) for v in reading.cell_voltages)
    assert all(isinstance(v, float) for v in reading.temperatures)
    assert len(reading.balancing) <= 64


# --- random and damaged frames ---------------------------------------------------------------


def _decode_outcome(protocol: str, frame: bytes) -> BleBmsReading | None:
    async def run() -> BleBmsReading | None:
        try:
            return await decode_ble_capture(protocol, frame, timeout=2.0)
        except ProtocolError:
            return None

    return asyncio.run(run())


@settings(max_examples=150, deadline=None)
@given(protocol=st.sampled_from(sorted(CAPTURE_PROTOCOLS)), data=st.binary(max_size=400))
def test_random_bytes_raise_only_protocol_error(protocol: str, data: bytes) -> None:
    _decode_outcome(protocol, data)


_DAMAGEABLE = (
    [("jk_ble", e) for e in JK_VALID_CELLS + JK_DEVICE_INFOS if e["name"] != "jk04_device_info"]
    + [("jbd_ble", e) for e in JBD_VALUES]
    + [("daly_ble", e) for e in DALY_STATUS]
)


def _with_valid_check(protocol: str, frame: bytearray) -> bytes:
    """The damaged frame with its checksum made right again, so it reaches the library."""
    if protocol == "jk_ble":
        frame[299] = sum(frame[:299]) & 0xFF
    elif protocol == "jbd_ble":
        frame[-3:-1] = jbd.checksum(frame[2:-3]).to_bytes(2, "big")
    else:
        frame[-2:] = crc16_modbus(frame[:-2]).to_bytes(2, "little")
    return bytes(frame)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    capture=st.sampled_from(_DAMAGEABLE),
    flips=st.lists(st.integers(min_value=0, max_value=8 * 400), min_size=1, max_size=8),
    cut=st.none() | st.integers(min_value=0, max_value=400),
)
def test_damaged_captures_raise_only_protocol_error(
    capture: tuple[str, dict[str, Any]], flips: list[int], cut: int | None
) -> None:
    """Bit flips in the data (checksum repaired: they reach aiobmsble) and truncation."""
    protocol, entry = capture
    frame = bytearray(_frame(entry))
    first, end = {"jk_ble": (6, 299), "jbd_ble": (4, len(frame) - 3)}.get(
        protocol, (3, len(frame) - 2)
    )
    for flip in flips:
        position = first + (flip // 8) % (end - first)
        frame[position] ^= 1 << flip % 8
    damaged = _with_valid_check(protocol, frame)
    _decode_outcome(protocol, damaged if cut is None else damaged[:cut])


# --- families --------------------------------------------------------------------------------


def test_families_and_classes() -> None:
    families = supported_families()
    assert {"jikong", "jbd", "daly"} <= set(families)
    assert "dummy" not in families
    assert families == tuple(sorted(families))
    assert bms_class_for("jikong") is bms_class_for("jikong_bms")
    assert bms_class_for("jbd").__module__ == "aiobmsble.bms.jbd_bms"
    with pytest.raises(BleBmsUnsupported, match="no_such"):
        bms_class_for("no_such")


def test_matchers_are_the_library_definitions() -> None:
    every = matchers()
    assert set(every) == set(supported_families())
    jk = every["jikong"]
    assert {m.get("manufacturer_id") for m in jk} == {0x0B65, 0x4B4A}
    assert all(m["service_uuid"] == "0000ffe0-0000-1000-8000-00805f9b34fb" for m in jk)
    known = {
        "local_name", "service_uuid", "service_data_uuid", "manufacturer_id",
        "manufacturer_data_start", "oui", "connectable",
    }  # fmt: skip
    for family, patterns in every.items():
        assert patterns, family
        for pattern in patterns:
            assert set(pattern) <= known, (family, pattern)


def test_follow_bleak_client_points_the_library_at_bleak_s_current_client() -> None:
    from aiobmsble import basebms
    import bleak

    before = basebms.BleakClient
    try:
        basebms.BleakClient = sim.SimulatedBleakClient
        assert follow_bleak_client() is True
        assert library_bleak_client() is bleak.BleakClient
        assert follow_bleak_client() is False
    finally:
        basebms.BleakClient = before


async def test_jbd_basic_info_claiming_too_many_cells() -> None:
    """A damaged 0x03 claiming 200 cells: aiobmsble reads 32 at most, the reading follows."""
    frame = bytearray(_frame(BY_NAME["jbd_ble_basic_info_4s_280ah"]))
    frame[4 + 21] = 200
    frame[-3:-1] = jbd.checksum(frame[2:-3]).to_bytes(2, "big")
    reading = await decode_ble_capture("jbd_ble", bytes(frame))
    assert reading.voltage == pytest.approx(13.7)
    assert len(reading.balancing) == 32


# --- FET control -----------------------------------------------------------------------------

FET_ADDRESS = "C8:47:80:00:0F:E7"
# (family, peer factory, secret): JK 32S and 24S layouts, JBD with and without the login.
FET_PEERS: dict[str, tuple[str, Callable[[], sim.BlePeer], str]] = {
    "jk_32s": ("jikong", lambda: sim.JkBlePeer(firmware="19.27"), ""),
    "jk_24s": ("jikong", lambda: sim.JkBlePeer(firmware="10.07"), ""),
    "jbd": ("jbd", sim.JbdBlePeer, ""),
    "jbd_login": ("jbd", lambda: sim.JbdBlePeer(password="123456"), "123456"),
}


@pytest.fixture
def fet_peers() -> Iterator[list[Callable[[], None]]]:
    """aiobmsble connects to simulated peers; every peer registered is removed afterwards."""
    undo: list[Callable[[], None]] = []
    with sim.aiobmsble_on_simulated_peers():
        yield undo
    for unregister in undo:
        unregister()


def _fet_link(
    undo: list[Callable[[], None]],
    peer: sim.BlePeer,
    family: str,
    *,
    secret: str = "",
    timeout: float = 5.0,
    keep: bool = True,
) -> BleBmsLink:
    from bleak.backends.device import BLEDevice

    undo.append(sim.register_peer(FET_ADDRESS, peer))
    device = BLEDevice(FET_ADDRESS, "fet-bms", {})
    return BleBmsLink(
        bms_class_for(family), device, keep_connection=keep, timeout=timeout, secret=secret
    )


@pytest.mark.parametrize("kind", sorted(FET_PEERS))
async def test_set_fets_switches_and_reads_back(
    kind: str, fet_peers: list[Callable[[], None]]
) -> None:
    family, make, secret = FET_PEERS[kind]
    peer = make()
    link = _fet_link(fet_peers, peer, family, secret=secret)
    assert link.can_switch_fets
    before = await link.update()
    assert (before.charge_fet, before.discharge_fet) == (True, True)

    reading = await link.set_fets(charge=False)
    assert (reading.charge_fet, reading.discharge_fet) == (False, True)
    assert (peer.battery.charge_fet, peer.battery.discharge_fet) == (False, True)
    reading = await link.set_fets(discharge=False)  # the charge switch stays as written
    assert (reading.charge_fet, reading.discharge_fet) == (False, False)
    reading = await link.set_fets(charge=True, discharge=True)
    assert (reading.charge_fet, reading.discharge_fet) == (True, True)
    reading = await link.set_fets()  # nothing to switch: a plain read
    assert reading.charge_fet is True
    # All of it through the library's one connection, and the link is still good for updates.
    assert peer.connect_count == 1
    assert (await link.update()).cell_voltages
    assert link.updates == 6
    await link.close()
    assert peer.connections == 0


async def test_jk_switch_commands_are_the_documented_frames(
    fet_peers: list[Callable[[], None]],
) -> None:
    peer = sim.JkBlePeer()
    link = _fet_link(fet_peers, peer, "jikong")
    await link.update()
    sent = len(peer.writes)
    await link.set_fets(charge=False, discharge=False)
    commands = [data for _uuid, data in peer.writes[sent:] if data[4] in (0x1D, 0x1E)]
    assert commands == [
        bytes.fromhex("aa5590eb1d04000000000000000000000000009b"),
        bytes.fromhex("aa5590eb1e04000000000000000000000000009c"),
    ]
    assert jk_switch_command(0x1D, True).hex() == "aa5590eb1d04010000000000000000000000009c"
    await link.close()


async def test_jbd_switch_goes_through_factory_mode(fet_peers: list[Callable[[], None]]) -> None:
    peer = sim.JbdBlePeer()
    link = _fet_link(fet_peers, peer, "jbd")
    await link.update()
    sent = len(peer.writes)
    await link.set_fets(charge=False)
    writes = [data for _uuid, data in peer.writes[sent:]]
    # The switch left alone is unknown to a fresh link: the BMS is read first (0x03).
    assert writes[0] == jbd.encode_read(jbd.REG_BASIC_INFO)
    assert [data for data in writes if data[1] == 0x5A] == [
        jbd.encode_factory_mode_enter(),
        jbd.encode_mosfet_control(False, True),
        jbd.encode_factory_mode_exit(),
    ]
    assert all(uuid.startswith("0000ff02") for uuid, _data in peer.writes[sent:])
    await link.close()


@pytest.mark.parametrize("kind", ["jk_32s", "jbd"])
async def test_switch_on_held_by_a_protection_is_rejected(
    kind: str, fet_peers: list[Callable[[], None]]
) -> None:
    family, make, secret = FET_PEERS[kind]
    peer = make()
    link = _fet_link(fet_peers, peer, family, secret=secret)
    await link.set_fets(charge=False, discharge=False)
    peer.battery.protections.update({"cell_overvoltage", "cell_undervoltage"})
    with pytest.raises(BleBmsWriteRejected) as caught:
        await link.set_fets(charge=True)
    assert isinstance(caught.value, ProtocolError)
    assert caught.value.reading is not None
    assert caught.value.reading.charge_fet is False
    assert peer.battery.charge_fet is False
    with pytest.raises(BleBmsWriteRejected, match="discharge=True"):
        await link.set_fets(discharge=True)
    # Switching off is never refused, and the link stays usable.
    assert (await link.set_fets(charge=False)).charge_fet is False
    peer.battery.protections.clear()
    reading = await link.set_fets(charge=True, discharge=True)
    assert (reading.charge_fet, reading.discharge_fet) == (True, True)
    assert peer.connect_count == 1
    await link.close()


async def test_jbd_refused_writes_are_rejected(fet_peers: list[Callable[[], None]]) -> None:
    peer = sim.JbdBlePeer()
    link = _fet_link(fet_peers, peer, "jbd")
    await link.update()
    refused = jbd.encode_mosfet_control(False, True)
    peer.script[refused] = (sim.jbd_reply(jbd.REG_MOSFET_CONTROL, status=jbd.STATUS_ERROR),)
    with pytest.raises(BleBmsWriteRejected, match="MOSFET control"):
        await link.set_fets(charge=False)
    assert peer.battery.charge_fet is True
    assert not link.is_connected
    peer.script[jbd.encode_factory_mode_enter()] = (
        sim.jbd_reply(jbd.REG_FACTORY_ENTER, status=jbd.STATUS_ERROR),
    )
    with pytest.raises(BleBmsWriteRejected, match="factory mode"):
        await link.set_fets(charge=False)
    del peer.script[jbd.encode_factory_mode_enter()]
    del peer.script[refused]
    assert (await link.set_fets(charge=False)).charge_fet is False
    assert link.failures == 2
    await link.close()


async def test_jbd_write_without_acknowledgement_times_out(
    fet_peers: list[Callable[[], None]],
) -> None:
    peer = sim.JbdBlePeer()
    link = _fet_link(fet_peers, peer, "jbd", timeout=8.0)
    await link.update()
    peer.script[jbd.encode_factory_mode_enter()] = ()  # swallowed
    with pytest.raises(BleBmsTimeout):
        await link.set_fets(charge=False)
    assert peer.connections == 0
    assert peer.battery.charge_fet is True
    await link.close()


async def test_other_families_have_no_fet_control(fet_peers: list[Callable[[], None]]) -> None:
    peer = sim.DalyBlePeer()
    link = _fet_link(fet_peers, peer, "daly")
    assert not link.can_switch_fets
    with pytest.raises(BleBmsUnsupported):
        await link.set_fets(charge=False)
    assert peer.connect_count == 0
    await link.close()
    with pytest.raises(BleBmsError):
        await link.set_fets(charge=False)


@pytest.mark.parametrize("kind", ["jk_32s", "jbd"])
async def test_link_dropped_mid_write(kind: str, fet_peers: list[Callable[[], None]]) -> None:
    """The answer to the (first) write never arrives: the link drops, the BMS is gone."""
    family, make, secret = FET_PEERS[kind]
    peer = make()
    link = _fet_link(fet_peers, peer, family, secret=secret, timeout=3.0)
    await link.set_fets(discharge=True)  # connected, and the JBD switches are known
    peer.drop_after_notifications = 0
    peer.refuse_connections = True
    with pytest.raises(ProtocolError) as caught:
        await link.set_fets(charge=False)
    assert isinstance(caught.value, BleBmsError)
    assert not link.is_connected
    assert peer.connections == 0
    assert peer.queued_notifications == 0
    peer.refuse_connections = False
    assert (await link.set_fets(charge=False)).charge_fet is False
    await link.close()
    assert peer.connections == 0


async def test_set_fets_releases_the_connection_when_asked(
    fet_peers: list[Callable[[], None]],
) -> None:
    peer = sim.JbdBlePeer()
    link = _fet_link(fet_peers, peer, "jbd", keep=False)
    assert (await link.set_fets(charge=False)).charge_fet is False
    assert peer.connections == 0
    assert peer.connect_count == 1
    await link.close()


@pytest.mark.parametrize("family", ["jikong", "jbd"])
def test_the_library_message_path_fet_control_relies_on(
    family: str, fet_peers: list[Callable[[], None]]
) -> None:
    """aiobmsble has no write API: set_fets uses these non-public names, pinned here."""
    import inspect

    from aiobmsble import basebms

    bms_class = bms_class_for(family)
    assert issubclass(bms_class, basebms.BaseBMS)
    assert inspect.iscoroutinefunction(bms_class._connect)
    parameters = list(inspect.signature(bms_class._send_msg).parameters)
    assert parameters[:6] == ["self", "data", "max_size", "char", "attempt", "inv_wr_mode"]
    assert isinstance(bms_class.uuid_tx(), str)
    from bleak.backends.device import BLEDevice

    bms = bms_class(BLEDevice(FET_ADDRESS, "pin", {}), aiobmsble.BMSConfig(keep_alive=True))
    assert isinstance(bms._op_lock, asyncio.Lock)
    assert isinstance(bms._msg_event, asyncio.Event)
    assert bms._inv_wr_mode is None
    bms._frame.extend(b"\xdd\x00")
    assert bytes(bms._frame) == b"\xdd\x00"
    bms._frame.clear()
    if family == "jikong":
        assert bms._char_write_handle == -1  # found by its connection set-up


def test_jbd_acknowledgement_is_found_in_the_buffer() -> None:
    ack = sim.jbd_reply(jbd.REG_MOSFET_CONTROL)
    assert _jbd_ack(b"\xdd\xe1" + ack, jbd.REG_MOSFET_CONTROL) == 0  # a false start first
    assert _jbd_ack(ack[:-1], jbd.REG_MOSFET_CONTROL) is None  # not complete yet
    assert _jbd_ack(ack, jbd.REG_FACTORY_ENTER) is None  # answers another register
    error = sim.jbd_reply(jbd.REG_MOSFET_CONTROL, status=jbd.STATUS_ERROR)
    assert _jbd_ack(b"\x00" + error, jbd.REG_MOSFET_CONTROL) == jbd.STATUS_ERROR
