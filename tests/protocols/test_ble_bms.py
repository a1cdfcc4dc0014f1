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

import json
import math
from pathlib import Path
from typing import Any

import pytest

from custom_components.sma_victron_bridge.protocols import ProtocolError, jbd
from custom_components.sma_victron_bridge.protocols.ble_bms import (
    CAPTURE_PROTOCOLS,
    BleBmsReading,
    BleBmsUnsupported,
    decode_ble_capture,
)
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
