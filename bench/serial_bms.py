"""One JBD refresh (registers 0x03 + 0x04) through the client, against its wire time at 9600 baud.

The JBD simulator runs in a child process on a pseudo-terminal, so this process's CPU time is
the client's alone (serial transport, frame assembler, codec, event loop). The client reads a
16-cell pack with four temperature sensors ``CYCLES`` times; the bytes it sent and received in
each refresh are counted, and their time on a real 9600 baud line (10 bits per byte: start,
8 data, stop) is the physical limit a refresh cannot beat on hardware.

A pseudo-terminal has no baud rate, so the measured cycle is far below the wire time here: the
ratio shows how little the software adds, not what a real line achieves (on hardware the cycle
is the wire time plus the BMS's own reply latency). Run: ``.venv/bin/python bench/serial_bms.py``;
the last line is ``RATIO jbd_cycle_over_wire x`` (mean cycle time ÷ wire time; ≤ 1.3 is the
target, below 1 is only possible because the pty does not pace the bytes).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
import statistics
import sys
import tempfile
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)

from bench.pty_simulator import simulator_on_pty, time_reads  # noqa: E402
from custom_components.sma_victron_bridge.protocols.bms_client import (  # noqa: E402
    BmsProtocol,
    SerialBmsClient,
)

CYCLES = 200
TIME_LIMIT = 50.0  # s: stop early on a very slow machine (the bench must end within 60 s)
BAUD = 9600
BITS_PER_BYTE = 10
REQUEST_TIMEOUT = 2.0

# The simulator process: serves a frozen 16S pack until its stdin closes.
SIMULATOR = """
import asyncio, sys
from custom_components.sma_victron_bridge.simulators.bms import JbdSimulator

async def main(path):
    sim = JbdSimulator(cells=16, link_path=path, frozen=True, seed=1)
    sim.temperatures = [21.0, 22.0, 21.5, 23.0]
    sim.current = -35.2
    await sim.start()
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await sim.stop()

asyncio.run(main(sys.argv[1]))
"""


def wire_seconds(byte_count: int) -> float:
    """Time ``byte_count`` bytes take on a 9600 baud 8N1 line."""
    return byte_count * BITS_PER_BYTE / BAUD


async def run() -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-bms-") as folder:
        path = str(Path(folder) / "ttyJBD")
        async with simulator_on_pty(SIMULATOR, path):
            client = SerialBmsClient(path, BmsProtocol.JBD, request_timeout=REQUEST_TIMEOUT)
            try:
                # The first read opens the port and also reads model and counters once.
                timed = await time_reads(client, CYCLES, started + TIME_LIMIT)
            finally:
                await client.close()

    reading, cycles, cpu = timed.reading, timed.cycles, timed.cpu
    wire = [wire_seconds(byte_count) for byte_count in timed.wire_bytes]
    assert len(reading.cell_voltages) == 16
    assert reading.current == -35.2
    mean_cycle = statistics.fmean(cycles)
    mean_wire = statistics.fmean(wire)
    cycles_ms = sorted(value * 1000 for value in cycles)
    print(f"JBD refresh (0x03 + 0x04, 16 cells, 4 NTC), {len(cycles)} cycles over a pty")
    print(
        f"wire bytes per refresh: {round(mean_wire * BAUD / BITS_PER_BYTE)} "
        f"-> {mean_wire * 1000:.1f} ms at {BAUD} baud, 8N1"
    )
    print(
        f"cycle time: mean {mean_cycle * 1000:.2f} ms, median {statistics.median(cycles_ms):.2f}"
        f" ms, p95 {cycles_ms[int(0.95 * (len(cycles_ms) - 1))]:.2f} ms"
        " (includes the simulator's ~3 ms reply latency per request)"
    )
    print(
        f"event-loop CPU per refresh (client process, time.process_time): "
        f"mean {statistics.fmean(cpu) * 1000:.3f} ms, max {max(cpu) * 1000:.3f} ms"
    )
    print(
        "note: a pty has no baud rate, so the ratio below is far under 1; on a real 9600 baud "
        "line the cycle is the wire time plus the BMS's latency, and the client's share is the "
        "CPU figure above"
    )
    print(f"elapsed {time.perf_counter() - started:.1f} s")
    print(f"RATIO jbd_cycle_over_wire {mean_cycle / mean_wire:.3f}")


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
