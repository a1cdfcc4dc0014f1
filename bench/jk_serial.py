"""One JK serial refresh (the ``4E 57`` read-all) through the client, against what the wire needs.

The JK simulator runs in a child process on a pseudo-terminal, so this process's CPU time is
the client's alone (serial transport, frame assembler, TLV walk, conversion, event loop). The
client reads a 16-cell board ``CYCLES`` times and counts the bytes it sent and received in each
refresh.

The protocol's minimum for a full refresh is one read-all request (21 bytes) and the one reply
the board sends to it: every value a reading holds (cells, temperatures, voltage, current, SOC,
cycles, alarms, FET state, capacity) comes in that single reply, and reading registers one by
one (command 0x03) would take more frames, not fewer. So the ratio of the bytes on the wire to
that minimum shows whether the client ever asks twice, sends extra requests or reads garbage
into a refresh; 1.000 is the target. The reply's size is the board's choice: the figures also
show how much of it the reading uses.

Run: ``.venv/bin/python bench/jk_serial.py``; the last line is
``RATIO jk_serial_bytes_over_minimum x``. ``JK_BENCH_CYCLES`` lowers the cycle count (tests).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
import statistics
import sys
import tempfile
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)

from bench.pty_simulator import simulator_on_pty, time_reads  # noqa: E402
from custom_components.sma_victron_bridge.protocols import jk_serial  # noqa: E402
from custom_components.sma_victron_bridge.protocols.bms_client import (  # noqa: E402
    BmsProtocol,
    SerialBmsClient,
    open_serial,
)

CYCLES = int(os.environ.get("JK_BENCH_CYCLES", "300"))
TIME_LIMIT = 50.0  # s: stop early on a very slow machine (the bench must end within 60 s)
BAUD = jk_serial.BAUDRATE
BITS_PER_BYTE = 10
REQUEST_TIMEOUT = 2.0

# Records :func:`jk_serial.to_reading` uses (the rest of the reply is settings and identity).
USED_RECORDS = (
    jk_serial.REG_CELLS,
    jk_serial.REG_MOSFET_TEMPERATURE,
    jk_serial.REG_BOX_TEMPERATURE,
    jk_serial.REG_BATTERY_TEMPERATURE,
    jk_serial.REG_VOLTAGE,
    jk_serial.REG_CURRENT,
    jk_serial.REG_SOC,
    jk_serial.REG_CYCLES,
    jk_serial.REG_ALARMS,
    jk_serial.REG_STATUS,
    jk_serial.REG_CAPACITY,
    jk_serial.REG_PROTOCOL_VERSION,
)

# The simulator process: serves a frozen 16S board until its stdin closes.
SIMULATOR = """
import asyncio, sys
from custom_components.sma_victron_bridge.simulators.jk import JkSimulator

async def main(path):
    sim = JkSimulator(cells=16, link_path=path, frozen=True, seed=1)
    sim.temperatures = [21.0, 22.0]
    sim.current = -35.2
    await sim.start()
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await sim.stop()

asyncio.run(main(sys.argv[1]))
"""


def wire_seconds(byte_count: int) -> float:
    """Time ``byte_count`` bytes take on a 115200 baud 8N1 line."""
    return byte_count * BITS_PER_BYTE / BAUD


def used_bytes(reply: bytes) -> int:
    """Bytes of ``reply`` a reading is made of: envelope plus the records it decodes."""
    frame = jk_serial.parse_frame(reply)
    envelope = jk_serial.MIN_FRAME_LENGTH
    records = sum(
        1 + len(value) + (1 if register == jk_serial.REG_CELLS else 0)
        for register, value in frame.records.items()
        if register in USED_RECORDS
    )
    return envelope + records


async def run() -> None:
    started = time.perf_counter()
    request = jk_serial.encode_read_all_request()
    with tempfile.TemporaryDirectory(prefix="bench-jk-") as folder:
        path = str(Path(folder) / "ttyJK")
        async with simulator_on_pty(SIMULATOR, path):
            client = SerialBmsClient(path, BmsProtocol.JK, request_timeout=REQUEST_TIMEOUT)
            try:
                timed = await time_reads(client, CYCLES, started + TIME_LIMIT)
            finally:
                await client.close()
            # One more exchange outside the client, only to measure the reply's size.
            reply_frames = await _one_reply(path, request)

    reading, cycles, cpu, wire = timed.reading, timed.cycles, timed.cpu, timed.wire_bytes
    assert len(reading.cell_voltages) == 16
    assert reading.current == -35.2
    (reply,) = reply_frames
    minimum = len(request) + len(reply)
    mean_wire = statistics.fmean(wire)
    mean_cycle = statistics.fmean(cycles)
    cycles_ms = sorted(value * 1000 for value in cycles)
    print(f"JK serial refresh (read-all 0x06, 16 cells, 2 NTC), {len(cycles)} cycles over a pty")
    print(
        f"wire bytes per refresh: {mean_wire:.1f} (max {max(wire)}); protocol minimum "
        f"{minimum} = request {len(request)} + reply {len(reply)}"
        f" -> {wire_seconds(minimum) * 1000:.1f} ms at {BAUD} baud, 8N1"
    )
    print(
        f"of the reply, {used_bytes(reply)} bytes make the reading (envelope + used records); "
        "the rest are settings and identity the board always sends"
    )
    print(
        f"cycle time: mean {mean_cycle * 1000:.2f} ms, median {statistics.median(cycles_ms):.2f}"
        f" ms, p95 {cycles_ms[int(0.95 * (len(cycles_ms) - 1))]:.2f} ms"
        " (includes the simulator's ~3 ms reply latency)"
    )
    print(
        f"client CPU per refresh (this process, time.process_time): "
        f"mean {statistics.fmean(cpu) * 1000:.3f} ms, max {max(cpu) * 1000:.3f} ms"
    )
    print(f"elapsed {time.perf_counter() - started:.1f} s")
    print(f"RATIO jk_serial_bytes_over_minimum {mean_wire / minimum:.3f}")


async def _one_reply(path: str, request: bytes) -> list[bytes]:
    """Send one read-all request on the port directly and return the reply frame."""
    assembler = jk_serial.FrameAssembler()
    reader, writer = await open_serial(path, BAUD)
    try:
        writer.write(request)
        async with asyncio.timeout(REQUEST_TIMEOUT):
            while True:
                frames = [
                    frame
                    for frame in assembler.feed(await reader.read(4096))
                    if frame[10] != jk_serial.TYPE_REQUEST
                ]
                if frames:
                    return frames
    finally:
        writer.close()


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
