"""The JK serial bench: it runs end to end and its figures mean what they say."""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys

from bench.jk_serial import USED_RECORDS, used_bytes, wire_seconds
from custom_components.sma_victron_bridge.protocols import jk_serial

ROOT = Path(__file__).resolve().parents[2]
TESTDATA = ROOT.parent / "shared" / "testdata" / "jk"


def test_used_bytes_of_a_captured_reply() -> None:
    entry = next(
        entry
        for entry in json.loads((TESTDATA / "jk_serial.json").read_text())
        if entry["name"] == "jk_serial_14s_charging"
    )
    reply = bytes.fromhex(entry["hex"])
    # Envelope 20 + cells (2 + 14 * 3) + three temperatures, voltage, current, cycles, alarms,
    # status (3 bytes each) + SOC 2 + capacity 5 + protocol version 2.
    assert used_bytes(reply) == 20 + 44 + 8 * 3 + 2 + 5 + 2
    assert len(USED_RECORDS) == 12
    assert len(reply) == 285
    assert wire_seconds(11520) == 1.0


def test_the_bench_runs_and_a_refresh_costs_exactly_the_minimum() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "jk_serial.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "JK_BENCH_CYCLES": "20"},
        cwd=str(ROOT),
    )
    lines = done.stdout.strip().splitlines()
    assert "20 cycles" in lines[0]
    name, value = lines[-1].removeprefix("RATIO ").split()
    assert name == "jk_serial_bytes_over_minimum"
    assert float(value) == 1.0
    assert "request 21" in done.stdout
    assert jk_serial.encode_read_all_request() == bytes.fromhex(
        "4e5700130000000006030000000000006800000129"
    )
