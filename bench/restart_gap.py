"""Restart gap: how long a Sunny Island hears no 0x355 while Home Assistant restarts.

A Sunny Island whose BMS stays silent for 60 s (``SOC_TIMEOUT``) shuts the battery system down
(F952). A restart of Home Assistant - after an update, a new integration, a changed YAML file -
is the one moment the BMS frames must stop, because the process that sends them ends. This bench
measures that silence on a real Home Assistant, from the inverter's side of the CAN bus.

Set-up, as a user would have it:

* The Sunny Island simulator runs in *this* process, outside Home Assistant, behind a simulated
  slcan USB-CAN adapter on a pseudo-terminal (``simulators/slcan.py``). Home Assistant opens that
  terminal with python-can's real ``slcan`` driver, as it would open a CANable, so the link and
  its timing are those of hardware. (python-can's ``udp_multicast`` bus would also cross the
  process boundary, but the Sunny Island flow offers socketcan and slcan only, and that
  bus needs msgpack, which Home Assistant does not install.)
* Home Assistant is started as ``scripts/develop`` starts it (its functions: a temporary
  configuration on a free port, onboarding through its API) and provisioned through the real
  config-flow REST API: a simulated JBD serial BMS (the "Simulated device" menu) as the battery
  source, then a *real* Sunny Island entry on interface slcan, channel = the adapter's terminal.
* Once 0x355 arrives steadily, Home Assistant is asked to restart through its own API
  (``POST /api/services/homeassistant/restart``). A Home Assistant that no supervisor runs
  restarts by exiting with code 100 and leaving the new start to whoever started it (Home
  Assistant OS's supervisor, a container's restart policy, systemd): here that is this bench, which
  starts the same command on the same configuration again at once.

Printed: Home Assistant's stop time (restart request to process exit), the time from the new
process's start to its first 0x355, the longest 0x355 silence across the whole restart, and
last ``RATIO restart_gap_over_si_timeout <gap / 60 s>``. The target is at most 0.25 (15 s): far
enough from the timeout that a slow machine or a slow integration elsewhere still never trips
the inverter.

Run: ``.venv/bin/python -m bench.restart_gap`` from the repository. Bounded in time; Home
Assistant is always stopped (SIGTERM, then SIGKILL), also on failure and on Ctrl+C. Exit code 0
when the gap is within the target, 1 when it is not, 2 when the run could not complete.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
import contextlib
from dataclasses import dataclass
import itertools
import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import IO, Any, Final

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.soak import develop  # noqa: E402
from custom_components.sma_victron_bridge.protocols.sma_can import (  # noqa: E402
    FAULT_SOC_TIMEOUT,
    ID_SOC,
    SOC_TIMEOUT,
)

DOMAIN: Final = "sma_victron_bridge"
CAN_CHANNEL: Final = "sma-victron-restart-gap"
"""The python-can virtual channel between the simulated adapter and the simulated Sunny Island."""
TARGET_RATIO: Final = 0.25
START_TIMEOUT: Final = 240.0
"""s for Home Assistant to answer and the entries to load (two busy cores)."""
STOP_TIMEOUT: Final = 60.0
STEADY_FRAMES: Final = 10
"""0x355 frames in a row, about 1 s apart, before the restart is asked for."""
STEADY_TOLERANCE: Final = 0.2
SETTLE_AFTER: Final = 20.0
"""s watched after the first frame of the new process: a reload soon after start is a gap too."""
RESTART_EXIT_CODE: Final = 100
"""What Home Assistant exits with when asked to restart (homeassistant.const)."""


# --- pure helpers ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Silence:
    """The longest time between two consecutive frames: its length and its two frames."""

    seconds: float
    last_before: float
    first_after: float


def longest_silence(stamps: Sequence[float], start: float, end: float) -> Silence | None:
    """The longest silence between consecutive ``stamps`` that overlaps ``start``…``end``.

    A silence counts when it ends at or after ``start`` and begins at or before ``end``, so the
    frame before the window and the first one after it close the silences at its edges: a
    restart requested in the middle of a 1 s period still counts from the last frame sent.
    None with fewer than two frames around the window (nothing was measured).
    """
    ordered = sorted(stamps)
    best: Silence | None = None
    for before, after in itertools.pairwise(ordered):
        if after < start or before > end:
            continue
        if best is None or after - before > best.seconds:
            best = Silence(after - before, before, after)
    return best


def first_after(stamps: Sequence[float], moment: float) -> float | None:
    """The first stamp at or after ``moment``, or None."""
    later = [stamp for stamp in stamps if stamp >= moment]
    return min(later) if later else None


def steady(stamps: Sequence[float], count: int, period: float, tolerance: float) -> bool:
    """Whether the newest ``count`` stamps came every ``period`` ± ``tolerance`` seconds."""
    if len(stamps) < count:
        return False
    newest = sorted(stamps)[-count:]
    return all(abs(b - a - period) <= tolerance for a, b in itertools.pairwise(newest))


@dataclass(frozen=True, slots=True)
class Figures:
    """What one restart measured, s (wall clock)."""

    stop_seconds: float
    """Restart request to Home Assistant's exit."""
    exit_code: int | None
    start_to_first_frame: float
    """New process started to its first 0x355 at the Sunny Island."""
    silence: Silence
    """The longest 0x355 silence across the restart."""
    request_to_last_frame: float
    """Restart request to the last 0x355 of the old process (how long it kept sending)."""
    soc_timeout_faults: int
    """F952 raised at the simulated Sunny Island during the run (must be 0)."""

    @property
    def ratio(self) -> float:
        """The gap as a share of the Sunny Island's BMS timeout."""
        return self.silence.seconds / SOC_TIMEOUT


def report_lines(figures: Figures) -> list[str]:
    """The human-readable result, one figure a line; the RATIO line comes last."""
    return [
        f"Home Assistant stop time (restart request to exit): {figures.stop_seconds:.2f} s"
        f" (exit code {figures.exit_code})",
        f"last 0x355 of the old process after the request: {figures.request_to_last_frame:.2f} s",
        f"process start to first 0x355: {figures.start_to_first_frame:.2f} s",
        f"longest 0x355 silence across the restart: {figures.silence.seconds:.2f} s"
        f" (Sunny Island timeout {SOC_TIMEOUT:g} s, target <= {TARGET_RATIO * SOC_TIMEOUT:g} s)",
        f"F952 (BMS timeout) faults at the Sunny Island: {figures.soc_timeout_faults}",
        f"RATIO restart_gap_over_si_timeout {figures.ratio:.3f}",
    ]


# --- Home Assistant as a subprocess ------------------------------------------------------------


class HomeAssistant:
    """Home Assistant processes on one configuration: started, restarted, always stopped.

    No ``preexec_fn`` (the simulators' receive threads run already when Home Assistant is started
    again, and forking a threaded process into Python code is unsafe): the process gets its own
    session, and this bench stops it in every exit path.
    """

    def __init__(self, workdir: Path) -> None:
        """Prepare the configuration as scripts/develop does, on a free port."""
        self.config = workdir / "config"
        self.port = int(develop().free_port())
        self.base = f"http://127.0.0.1:{self.port}"
        develop().prepare_config(self.config, self.port)
        self._console_path = workdir / "console.log"
        self._console: IO[bytes] = self._console_path.open("ab")
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> None:
        """Start Home Assistant (again) on the same configuration; remember when."""
        self.started_at = time.time()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "homeassistant", "--config", str(self.config), "--skip-pip"],
            stdout=self._console,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=dict(os.environ),
            start_new_session=True,
        )

    def exited(self) -> int | None:
        """The exit code once the current process has exited."""
        return None if self.process is None else self.process.poll()

    async def wait_exit(self, timeout: float) -> int | None:
        """Wait for the current process to exit by itself; its exit code (None: still runs)."""
        if self.process is None:
            return None
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(self.process.wait, timeout)
        return self.exited()

    def stop(self) -> int | None:
        """SIGTERM, wait, then SIGKILL; idempotent. The exit code (None if it would not die)."""
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=10)
        return None if process is None else process.poll()

    def close(self) -> None:
        """Stop it and close the console log."""
        self.stop()
        self._console.close()

    def console_tail(self, lines: int = 30) -> str:
        """The end of Home Assistant's console output, for failure messages."""
        with contextlib.suppress(OSError):
            return "\n".join(self._console_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no console output)"


async def _wait_for(condition: Any, timeout: float, what: str, ha: HomeAssistant) -> None:
    """Poll ``condition()`` every 50 ms; fail when Home Assistant exits or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if ha.exited() is not None:
            raise RuntimeError(f"Home Assistant exited ({ha.exited()}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout:g} s")
        await asyncio.sleep(0.05)


async def provision(ha: HomeAssistant, channel: str) -> Any:
    """Onboard, then add the battery (simulated JBD) and the Sunny Island on slcan ``channel``.

    Returns develop's REST client, logged in.
    """
    dev = develop()
    session = aiohttp.ClientSession()
    try:
        await dev.wait_for_http(session, ha.base, START_TIMEOUT)
        api = dev.Api(session, ha.base, await dev.login(session, ha.base))
        bms = await api.add_simulated("serial_bms_jbd")
        await api.flow(
            [
                {"next_step_id": "sunny_island"},
                {"can_interface": "slcan"},
                {"can_channel": channel},
                {
                    "chemistry": "lifepo4",
                    "cells": 16,
                    "capacity_ah": 280,
                    "source": bms["result"]["entry_id"],
                },
            ]
        )
        await dev.wait_until_loaded(api, START_TIMEOUT)
    except BaseException:
        await session.close()
        raise
    return api


async def request_restart(api: Any) -> None:
    """Ask Home Assistant to restart; the answer may never come (the server is going away)."""
    with contextlib.suppress(aiohttp.ClientError, RuntimeError, TimeoutError):
        async with asyncio.timeout(10):
            await api.request("POST", "/api/services/homeassistant/restart", {})


async def measure(ha: HomeAssistant) -> Figures:
    """Start the simulators and Home Assistant, restart it once, and measure the silence."""
    import can

    from custom_components.sma_victron_bridge.simulators.slcan import SlcanAdapter
    from custom_components.sma_victron_bridge.simulators.sunny_island import (
        SunnyIslandSimulator,
    )

    adapter = SlcanAdapter(CAN_CHANNEL)
    await adapter.start()
    bus = can.Bus(interface="virtual", channel=CAN_CHANNEL)
    island = SunnyIslandSimulator(bus)
    api: Any = None
    try:
        await island.start()
        ha.start()
        print(f"Home Assistant (pid {ha.process and ha.process.pid}) at {ha.base}", flush=True)
        print(f"Sunny Island simulator behind slcan adapter {adapter.port}", flush=True)
        api = await provision(ha, adapter.port)

        def soc_stamps() -> list[float]:
            return list(island.received.get(ID_SOC, ()))

        await _wait_for(
            lambda: steady(soc_stamps(), STEADY_FRAMES, 1.0, STEADY_TOLERANCE),
            START_TIMEOUT,
            "steady 0x355",
            ha,
        )
        requested = time.time()
        await request_restart(api)
        await api.session.close()
        code = await ha.wait_exit(STOP_TIMEOUT)
        stopped = time.time()
        ha.start()
        await _wait_for(
            lambda: first_after(soc_stamps(), ha.started_at) is not None,
            START_TIMEOUT,
            "0x355 from the restarted Home Assistant",
            ha,
        )
        first = first_after(soc_stamps(), ha.started_at)
        assert first is not None
        await asyncio.sleep(SETTLE_AFTER)
        stamps = soc_stamps()
        silence = longest_silence(stamps, requested, time.time())
        if silence is None:
            raise RuntimeError("no 0x355 around the restart")
        before = [stamp for stamp in stamps if stamp < ha.started_at]
        faults = sum(
            1 for _at, message in island.events if message == f"{FAULT_SOC_TIMEOUT} raised"
        )
        return Figures(
            stop_seconds=stopped - requested,
            exit_code=code,
            start_to_first_frame=first - ha.started_at,
            silence=silence,
            request_to_last_frame=(max(before) - requested) if before else float("nan"),
            soc_timeout_faults=faults,
        )
    finally:
        if api is not None and not api.session.closed:
            await api.session.close()
        ha.stop()
        await island.stop()
        bus.shutdown()
        await adapter.stop()


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run one restart; 0 within the target, 1 beyond it, 2 when the run failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--keep", action="store_true", help="keep the configuration and logs")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="sma-victron-restart-gap-"))
    ha = HomeAssistant(workdir)
    figures: Figures | None = None
    try:

        async def bounded() -> Figures:
            async with asyncio.timeout(3 * START_TIMEOUT + STOP_TIMEOUT + SETTLE_AFTER):
                return await measure(ha)

        figures = asyncio.run(bounded())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    except Exception as err:  # the run's own failure: reported, Home Assistant still stopped
        print(f"the run could not complete: {err!r}", file=sys.stderr)
        print("--- Home Assistant console (end) ---\n" + ha.console_tail(), file=sys.stderr)
    finally:
        ha.close()
    if figures is None or args.keep:
        print(f"configuration and logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    if figures is None:
        return 2
    print("\n".join(report_lines(figures)))
    return 0 if figures.ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
