"""What the serial benches share: a simulator in a child process on a pty, and the timed reads.

A bench that measures a client's CPU time must not count the simulator's: the simulator runs in
its own process. Its script gets the pty path as ``sys.argv[1]``, prints ``READY`` once it serves
and stops when its stdin closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
import sys
import time

from custom_components.sma_victron_bridge.protocols.bms_client import SerialBmsClient
from custom_components.sma_victron_bridge.protocols.bms_common import BmsReading

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 30.0
"""Seconds the simulator gets to start serving (imports included, on a slow machine)."""


@contextlib.asynccontextmanager
async def simulator_on_pty(script: str, path: str) -> AsyncIterator[None]:
    """Run ``script`` serving ``path`` while the block runs; stop it and wait for it after."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        path,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=str(ROOT),
    )
    assert process.stdout is not None
    assert process.stdin is not None
    try:
        ready = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
        if ready.strip() != b"READY":
            raise RuntimeError(f"simulator did not start: {ready!r}")
        yield
    finally:
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), START_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()


@dataclass(slots=True)
class TimedReads:
    """Per read of a client: wall seconds, this process's CPU seconds and bytes on the wire."""

    reading: BmsReading
    cycles: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    wire_bytes: list[int] = field(default_factory=list)


async def time_reads(client: SerialBmsClient, count: int, deadline: float) -> TimedReads:
    """Read ``count`` times (stopping at ``deadline``, a ``perf_counter`` time) after a first
    read that opens the port; time each read and count the bytes it sent and received."""
    timed = TimedReads(await client.read())
    while len(timed.cycles) < count and time.perf_counter() < deadline:
        sent, received = client.bytes_sent, client.bytes_received
        cpu_start = time.process_time()
        wall_start = time.perf_counter()
        timed.reading = await client.read()
        timed.cycles.append(time.perf_counter() - wall_start)
        timed.cpu.append(time.process_time() - cpu_start)
        timed.wire_bytes.append(client.bytes_sent - sent + client.bytes_received - received)
    return timed
