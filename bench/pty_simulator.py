"""A device simulator in a child process, serving a pseudo-terminal, for the serial benches.

A bench that measures a client's CPU time must not count the simulator's: the simulator runs in
its own process. Its script gets the pty path as ``sys.argv[1]``, prints ``READY`` once it serves
and stops when its stdin closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
from pathlib import Path
import sys

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
