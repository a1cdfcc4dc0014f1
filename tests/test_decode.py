"""``scripts/decode`` run as users run it, on the captures in the shared testdata."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
import subprocess
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "decode"
TESTDATA = ROOT.parent / "shared" / "testdata"


def captures(name: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads((TESTDATA / name).read_text())
    return entries


def decode(protocol: str, *frames: str) -> tuple[int, list[dict[str, Any]]]:
    """Run the script; its exit status and one parsed object per output line."""
    done = subprocess.run(
        [str(SCRIPT), protocol, *frames],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    objects = [json.loads(line) for line in done.stdout.splitlines()]
    return done.returncode, objects


def close(a: Any, b: float) -> bool:
    return isinstance(a, int | float) and math.isclose(a, b, abs_tol=1e-6)


def test_jk_serial_captures() -> None:
    entries = captures("jk/jk_serial.json")
    code, objects = decode("jk_serial", *(entry["hex"] for entry in entries))
    assert code == 1  # the first capture is the request: an error object, after which all print
    assert len(objects) == len(entries)
    for entry, obj in zip(entries, objects, strict=True):
        if entry["frame"] == "jk_serial_read_all_request":
            assert set(obj) == {"error"}
            continue
        expected = entry["expected"]
        assert obj["cell_voltages"] == expected["cell_voltages"]
        assert close(obj["voltage"], expected["total_voltage"])
        assert close(obj["current"], expected["current"])
        assert obj["soc"] == expected["soc"]
        assert obj["cycles"] == expected["cycles"]
        assert obj["temperatures"] == [expected["temperature_1"], expected["temperature_2"]]
        assert obj["mosfet_temperature"] == expected["mosfet_temperature"]
        assert obj["nominal_capacity"] == expected["nominal_capacity_ah"]
        assert close(
            obj["remaining_capacity"], expected["nominal_capacity_ah"] * expected["soc"] / 100
        )
        assert obj["charge_fet"] is expected["charging_switch"]
        assert obj["discharge_fet"] is expected["discharging_switch"]
        assert obj["firmware_version"] == expected["software_version"]


def test_jk_pb_replies() -> None:
    entries = [e for e in captures("jk/jk_pb.json") if e["frame"] != "jk_pb_modbus_fc10_trigger"]
    code, objects = decode("jk_pb", *(entry["hex"] for entry in entries))
    assert code == 0
    for entry, obj in zip(entries, objects, strict=True):
        expected = entry["expected"]
        assert obj["address"] == expected.get("slave_address", 1)
        if entry["frame"] == "jk_pb_response_cell_info":
            assert obj["cell_voltages"] == expected["cell_voltages"]
            assert close(obj["voltage"], expected["total_voltage"])
            assert close(obj["current"], expected["current"])
            assert obj["soc"] == expected["soc"]
            assert obj["temperatures"] == [expected[f"temperature_{n}"] for n in (1, 2, 3, 4)]
            assert obj["mosfet_temperature"] == expected["mosfet_temperature"]
            assert close(obj["remaining_capacity"], expected["capacity_remaining"])
            assert close(obj["nominal_capacity"], expected["nominal_capacity"])
            assert obj["cycles"] == expected["cycles"]
            assert obj["charge_fet"] is expected["charging_mosfet"]
            assert obj["discharge_fet"] is expected["discharging_mosfet"]
        elif entry["frame"] == "jk_pb_response_device_info":
            assert obj["model"] == expected["vendor_id"]
            assert obj["serial"] == expected["serial_number"]
            assert obj["firmware_version"] == expected["software_version"]
        else:
            assert obj["nominal_capacity"] == expected["nominal_capacity"]
            assert obj["cell_count"] == expected["cell_count"]


def test_wired_codecs_of_the_other_families() -> None:
    basic, cells = _jbd_pair()
    code, (basic_obj, cells_obj) = decode("jbd", basic, cells)
    assert code == 0
    assert (basic_obj["voltage"], basic_obj["soc"], basic_obj["nominal_capacity"]) == (
        15.6,
        100.0,
        5.0,
    )
    assert cells_obj == {"cell_voltages": [3.909, 3.901, 3.895, 3.901]}
    # The Daly vector of PROTOCOLS.md (dbus-serialbattery #53): 11.4 V, 0 A, 49.5 %.
    code, (daly_obj,) = decode("daly", "A5 01 90 08 00 72 00 00 75 30 01 EF 45".replace(" ", ""))
    assert code == 0
    assert daly_obj == {"voltage": 11.4, "current": 0.0, "power": 0.0, "soc": 49.5}
    ant_2021 = (TESTDATA / "ant" / "model2021-req-7ea1010000be1855aa55.txt").read_text()
    code, (ant_obj,) = decode("ant", ant_2021.splitlines()[0])
    assert code == 0
    assert (ant_obj["voltage"], ant_obj["soc"], len(ant_obj["cell_voltages"])) == (57.58, 96.0, 14)


def _jbd_pair() -> tuple[str, str]:
    """The first 0x03 and 0x04 replies of the SP04S034 capture."""
    replies = [
        line.split("<<<")[1].strip().replace(":", "")
        for line in (TESTDATA / "jbd" / "JBD-SP04S034-L4S-200A-B-U.txt").read_text().splitlines()
        if "<<<" in line
    ]
    basic = next(reply for reply in replies if reply[2:4] == "03")
    cells = next(reply for reply in replies if reply[2:4] == "04")
    return basic, cells


def test_errors_and_usage() -> None:
    good = captures("jk/jk_serial.json")[1]["hex"]
    code, objects = decode("jk_serial", "zz", good[:-2], good)
    assert code == 1
    assert [set(obj) for obj in objects[:2]] == [{"error"}, {"error"}]
    assert "not hexadecimal" in objects[0]["error"]
    assert "checksum" in objects[1]["error"] or "length" in objects[1]["error"]
    assert objects[2]["soc"] == 94.0
    for protocol in ("jk_pb", "jbd", "daly", "ant"):
        code, (obj,) = decode(protocol, "00" * 12)
        assert (code, set(obj)) == (1, {"error"}), protocol
    done = subprocess.run(
        [str(SCRIPT), "nonsense", "00"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "usage" in done.stderr


@pytest.mark.skipif(
    importlib.util.find_spec("custom_components.sma_victron_bridge.protocols.ble_bms") is None,
    reason="the Bluetooth decoder is not part of this checkout",
)
def test_jk_ble_through_the_bluetooth_path() -> None:
    entries = {entry["name"]: entry for entry in captures("jk/jk_ble.json")}
    entry = entries["jk02_32s_v11_cell_info"]
    code, (obj,) = decode("jk_ble", entry["hex"])
    assert code == 0, obj
    expected = entry["expected"]
    assert obj["cell_voltages"] == expected["cell_voltages"]
    assert close(obj["voltage"], expected["total_voltage"])
    assert obj["soc"] == expected["soc"]
