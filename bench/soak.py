"""Soak run: the whole simulated system in a real Home Assistant for minutes, watched from outside.

Home Assistant is started as ``scripts/develop`` starts it (its own functions, imported from the
script as the browser tests do): a temporary configuration on a free port, onboarding, the
demo devices added through the real config flows - a BMV forwarding to an MPPT over VE.Direct, a
JBD serial BMS feeding a simulated Sunny Island over a virtual CAN bus, a SmartSolar over
simulated Bluetooth and a Sunny Boy over Speedwire. ``SMA_VICTRON_BRIDGE_DAY_MINUTES`` makes the
simulated sun run a whole day within the soak, so sunrise, charging and night all happen.

While it runs, every ``--sample-seconds``:

* memory: Home Assistant's RSS from ``/proc/<pid>/status`` (start, end, max, and growth and
  slope after a warm-up, when caches and the recorder have settled), its threads and open files;
* event-loop lag seen from outside: the round trip of a websocket ``ping`` command. A ping has to
  wait for Home Assistant's event loop twice (read, then write the pong), but it also contains
  the loopback network and this process's own scheduling. Beside it, in the same tick, a TCP
  connect to the same port is timed: the kernel completes that handshake alone (Home Assistant
  accepts later), so it holds everything of the ping except Home Assistant's loop. The median
  of the ping minus the median of the connect is the loop's share;
* every ``state_changed`` event (one websocket subscription) goes to an availability tracker.

At the end:

* entities of ``sma_victron_bridge`` (found through the entity registry, never by entity id):
  unavailable for longer than ``--unavailable-bound`` at a stretch, or unavailable at the end,
  is a failure;
* BMS frame timing, as the simulated Sunny Island received them, from each Sunny Island entry's
  diagnostics (``GET /api/diagnostics/config_entry/<id>``, also fetched every 30 s): DESIGN.md's
  invariant 1 says 0x351 and 0x355 go out every 1 s ± 0.1 s, so any gap outside 0.9-1.1 s is a
  failure; any id faster than the 200 ms inhibit time (invariant 2) too; and frames that stopped
  before the end (the last one older than 1.1 s);
* Home Assistant's log, after it stopped: every ERROR (or CRITICAL), and every WARNING from the
  integration's loggers or naming it, is a failure - except the few harmless lines named in
  ``IGNORED``;
* every config entry of the integration still loaded.

The last line is ``RATIO bms_frame_max_gap_over_period x``: the longest gap between two 0x351 or
0x355 frames ÷ their nominal period (1 s). It is the safety figure of the run - a Sunny Island
left without 0x355 shuts the battery system down - and it is put against the period rather than
against the SI's 60 s timeout because the period is what DESIGN.md promises (≤ 1.1 passes);
against the timeout, a loop stalled for several seconds would still read as a small number.

Run: ``.venv/bin/python -m bench.soak [--minutes N] [--day-minutes M]`` from the repository
(default 5 minutes). Hard-bounded: start-up, the soak and the final checks each have a limit,
Home Assistant is always stopped (SIGTERM, then SIGKILL), also on Ctrl+C, on failure and - via
the kernel's parent-death signal - when this process itself is killed. Exit code 0 when nothing
failed, 1 on a failure, 2 when the run itself could not be completed, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
import contextlib
import ctypes
from dataclasses import dataclass, field
import functools
import importlib.util
import math
import os
from pathlib import Path
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from types import ModuleType
from typing import IO, Any, Final

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from custom_components.sma_victron_bridge.devices.simulation import (  # noqa: E402
    SHORTEST_DAY_MINUTES,
)
from custom_components.sma_victron_bridge.protocols.sma_can import (  # noqa: E402
    ID_CHARGE_LIMITS,
    ID_SOC,
    MIN_PERIOD,
    SEND_PERIOD,
    SOC_TIMEOUT,
)

DOMAIN: Final = "sma_victron_bridge"
LOGGER_PREFIX: Final = f"custom_components.{DOMAIN}"
DEFAULT_MINUTES: Final = 5.0
SAMPLE_SECONDS: Final = 2.0
UNAVAILABLE_BOUND: Final = 30.0
"""s an entity may stay unavailable at a stretch (a device reconnecting takes a few seconds)."""
PERIOD_TOLERANCE: Final = 0.1
"""DESIGN.md invariant 1: 0x351 and 0x355 every 1 s ± 0.1 s."""
SAFETY_IDS: Final = (ID_CHARGE_LIMITS, ID_SOC)
WARMUP_SECONDS: Final = 60.0
"""Memory growth is measured after this (or a third of a shorter soak)."""
START_TIMEOUT: Final = 240.0
"""s for Home Assistant to answer and the demo devices to be loaded (two busy cores)."""
FINAL_TIMEOUT: Final = 90.0
STOP_TIMEOUT: Final = 60.0
PING_TIMEOUT: Final = 10.0
CONNECT_TIMEOUT: Final = 5.0
HTTP_TIMEOUT: Final = 30.0
DIAGNOSTICS_EVERY: Final = 30.0
PROGRESS_EVERY: Final = 30.0
UNAVAILABLE: Final = "unavailable"
PR_SET_PDEATHSIG: Final = 1
MIB: Final = 1024.0


# --- Home Assistant's log ----------------------------------------------------------------------

LOG_LINE: Final = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (?P<level>[A-Z]+) "
    r"\((?P<thread>.*?)\) \[(?P<logger>[^\]]+)\] (?P<message>.*)$"
)
"""One record's first line in the format of Home Assistant's log file."""

IGNORED: Final[tuple[tuple[str, str, str], ...]] = (
    # Home Assistant's camera helper tries to load the libturbojpeg C library while
    # starting; without it, it logs this (with a traceback) and falls back to Pillow.
    (
        "ERROR",
        "homeassistant.components.camera.img_util",
        "Error loading libturbojpeg; Camera snapshot performance will be sub-optimal",
    ),
    # The ffmpeg component (loaded by default_config) probes for the ffmpeg binary at start; the
    # development environment does not install it (Home Assistant OS and the container do).
    ("ERROR", "haffmpeg.core", "FFmpeg fails [Errno 2] No such file or directory: 'ffmpeg'"),
    # Printed for every custom integration at start; it names ours but says nothing about it.
    (
        "WARNING",
        "homeassistant.loader",
        f"We found a custom integration {DOMAIN} which has not been tested by Home Assistant",
    ),
)
"""(level, logger, message start) of the harmless log records."""


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One record of Home Assistant's log: its first line and any continuation (traceback)."""

    time: str
    level: str
    logger: str
    message: str
    detail: tuple[str, ...] = ()

    def line(self) -> str:
        """The record's first line, as in the file."""
        return f"{self.time} {self.level} [{self.logger}] {self.message}"


def parse_log(lines: Iterable[str]) -> list[LogRecord]:
    """Records of a Home Assistant log; lines that start none belong to the one before."""
    records: list[LogRecord] = []
    current: dict[str, str] | None = None
    detail: list[str] = []

    def close() -> None:
        if current is not None:
            records.append(
                LogRecord(
                    current["time"],
                    current["level"],
                    current["logger"],
                    current["message"],
                    tuple(detail),
                )
            )

    for raw in lines:
        text = raw.rstrip("\n")
        match = LOG_LINE.match(text)
        if match is None:
            if current is not None:
                detail.append(text)
            continue
        close()
        current = match.groupdict()
        detail = []
    close()
    return records


def is_ignored(record: LogRecord) -> bool:
    """One of the known harmless records."""
    return any(
        record.level == level and record.logger == logger and record.message.startswith(start)
        for level, logger, start in IGNORED
    )


def is_problem(record: LogRecord) -> bool:
    """An error of anything, or a warning by or about this integration, not known as harmless."""
    if is_ignored(record):
        return False
    if record.level in ("ERROR", "CRITICAL"):
        return True
    if record.level != "WARNING":
        return False
    ours = record.logger == LOGGER_PREFIX or record.logger.startswith(f"{LOGGER_PREFIX}.")
    # Home Assistant's own checks (blocking calls in the loop, slow set-ups, ...) log under its
    # loggers and name the integration in the message.
    return ours or DOMAIN in record.message


@dataclass(frozen=True, slots=True)
class LogScan:
    """What a scan of Home Assistant's log found."""

    records: int
    ignored: tuple[LogRecord, ...]
    problems: tuple[LogRecord, ...]


def scan_log(lines: Iterable[str]) -> LogScan:
    """Count the records of a log, the known harmless ones, and those that fail the soak."""
    records = parse_log(lines)
    return LogScan(
        records=len(records),
        ignored=tuple(record for record in records if is_ignored(record)),
        problems=tuple(record for record in records if is_problem(record)),
    )


# --- availability --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Availability:
    state: str | None
    since: float | None
    """When the current unavailable stretch began (None while available)."""
    longest: float = 0.0
    stretches: int = 0


@dataclass(frozen=True, slots=True)
class Unavailability:
    """How one entity fared: its longest unavailable stretch and whether it ended unavailable."""

    entity_id: str
    longest: float
    stretches: int
    at_end: bool

    def fails(self, bound: float) -> bool:
        """Too long at a stretch, or still unavailable at the end."""
        return self.at_end or self.longest > bound


class AvailabilityTracker:
    """Unavailable stretches per entity, from state changes with their (monotonic) times.

    Entities unavailable when watching begins count from that moment: their start-up is not the
    soak's business.
    """

    def __init__(self) -> None:
        """Nothing seen yet."""
        self._entities: dict[str, _Availability] = {}

    def seed(self, entity_id: str, state: str | None, at: float) -> None:
        """The state found when watching began, unless a change arrived already."""
        if entity_id not in self._entities:
            self.observe(entity_id, state, at)

    def observe(self, entity_id: str, state: str | None, at: float) -> None:
        """A new state (None: the entity was removed)."""
        entry = self._entities.get(entity_id)
        if entry is None:
            entry = self._entities[entity_id] = _Availability(state=None, since=None)
        entry.state = state
        if state == UNAVAILABLE:
            if entry.since is None:
                entry.since = at
                entry.stretches += 1
        elif entry.since is not None:
            entry.longest = max(entry.longest, at - entry.since)
            entry.since = None

    def state(self, entity_id: str) -> str | None:
        """The last state seen (None: never seen or removed)."""
        entry = self._entities.get(entity_id)
        return None if entry is None else entry.state

    def report(self, entity_ids: Iterable[str], at: float) -> list[Unavailability]:
        """Every one of ``entity_ids`` that was ever unavailable, as of ``at``, sorted."""
        out: list[Unavailability] = []
        for entity_id in sorted(set(entity_ids)):
            entry = self._entities.get(entity_id)
            if entry is None or entry.stretches == 0:
                continue
            open_stretch = 0.0 if entry.since is None else at - entry.since
            out.append(
                Unavailability(
                    entity_id=entity_id,
                    longest=max(entry.longest, open_stretch),
                    stretches=entry.stretches,
                    at_end=entry.since is not None,
                )
            )
        return out


# --- BMS frames as the simulated Sunny Island received them ----------------------------------


@dataclass(frozen=True, slots=True)
class FrameStats:
    """Arrivals of one BMS id at one simulated Sunny Island (from the entry's diagnostics)."""

    entry: str
    frame_id: str
    count: int
    max_gap: float | None
    min_gap: float | None
    since_last: float | None
    restarted: bool = False
    """The count went down between two fetches: the simulator (its record) started anew."""


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def frame_stats(entry: str, received: Mapping[str, Any]) -> list[FrameStats]:
    """The diagnostics' ``simulator_received`` section of one entry as FrameStats."""
    return [
        FrameStats(
            entry=entry,
            frame_id=frame_id,
            count=int(stats.get("count", 0)),
            max_gap=_number(stats.get("max_gap")),
            min_gap=_number(stats.get("min_gap")),
            since_last=_number(stats.get("since_last")),
        )
        for frame_id, stats in sorted(received.items())
    ]


def _worst(a: float | None, b: float | None, pick: Callable[[float, float], float]) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return pick(a, b)


def merge_frame_stats(old: FrameStats | None, new: FrameStats) -> FrameStats:
    """The worst of two fetches of the same id: longest gap, shortest gap, oldest last frame.

    The newest fetch's count stands; the longest silence seen at any fetch counts as a gap (a
    stall in progress shows only there until the frames come back).
    """
    if old is None:
        return new
    return FrameStats(
        entry=new.entry,
        frame_id=new.frame_id,
        count=new.count,
        max_gap=_worst(old.max_gap, new.max_gap, max),
        min_gap=_worst(old.min_gap, new.min_gap, min),
        since_last=new.since_last,
        restarted=old.restarted or new.count < old.count,
    )


def frame_id_value(frame_id: str) -> int | None:
    """``"0x351"`` -> 0x351 (None for anything else)."""
    try:
        return int(frame_id, 16)
    except ValueError:
        return None


def frame_problems(stats: Iterable[FrameStats]) -> list[str]:
    """Late, early, too fast or stopped frames, one line each."""
    problems: list[str] = []
    late = SEND_PERIOD + PERIOD_TOLERANCE
    early = SEND_PERIOD - PERIOD_TOLERANCE
    for item in stats:
        name = f"{item.entry} {item.frame_id}"
        safety = frame_id_value(item.frame_id) in SAFETY_IDS
        if item.count < 2:
            problems.append(f"{name}: only {item.count} frame(s) received")
            continue
        if safety and item.max_gap is not None and item.max_gap > late:
            problems.append(f"{name}: a gap of {item.max_gap:.3f} s (late: > {late:.1f} s)")
        if safety and item.min_gap is not None and item.min_gap < early:
            problems.append(f"{name}: a gap of {item.min_gap:.3f} s (early: < {early:.1f} s)")
        if item.min_gap is not None and item.min_gap < MIN_PERIOD:
            problems.append(
                f"{name}: a gap of {item.min_gap:.3f} s (inhibit time {MIN_PERIOD:.1f} s)"
            )
        if safety and item.since_last is not None and item.since_last > late:
            problems.append(f"{name}: last frame {item.since_last:.1f} s old at the end")
        if item.restarted:
            problems.append(f"{name}: the simulator's record started anew (entry reloaded?)")
    return problems


def bms_ratio(stats: Iterable[FrameStats]) -> float:
    """Longest 0x351/0x355 gap ÷ the nominal period (nan when nothing was measured)."""
    gaps = [
        item.max_gap
        for item in stats
        if frame_id_value(item.frame_id) in SAFETY_IDS and item.max_gap is not None
    ]
    return max(gaps) / SEND_PERIOD if gaps else math.nan


# --- samples -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One look at Home Assistant from outside."""

    at: float
    """s since the soak began."""
    rss_kib: int
    cpu_seconds: float
    threads: int
    open_files: int
    connect: float | None
    """TCP connect to Home Assistant's port, s (None: failed)."""
    ping: float | None
    """Websocket ping round trip, s (None: no pong within PING_TIMEOUT)."""


@dataclass(frozen=True, slots=True)
class MemoryFigures:
    """RSS over the soak, MiB; growth and slope after the warm-up."""

    start: float
    end: float
    peak: float
    after_warmup: float
    growth: float
    slope_per_hour: float | None


def memory_figures(samples: Sequence[Sample], warmup: float) -> MemoryFigures | None:
    """RSS figures (None without samples)."""
    if not samples:
        return None
    rss = [s.rss_kib / MIB for s in samples]
    settled = [s for s in samples if s.at >= warmup] or [samples[-1]]
    slope: float | None = None
    if len(settled) >= 3 and settled[-1].at > settled[0].at:
        fit = statistics.linear_regression([s.at for s in settled], [s.rss_kib for s in settled])
        slope = fit.slope * 3600 / MIB
    return MemoryFigures(
        start=rss[0],
        end=rss[-1],
        peak=max(rss),
        after_warmup=settled[0].rss_kib / MIB,
        growth=(samples[-1].rss_kib - settled[0].rss_kib) / MIB,
        slope_per_hour=slope,
    )


@dataclass(frozen=True, slots=True)
class Spread:
    """Median, 95th percentile and maximum of some durations, ms."""

    median: float
    p95: float
    peak: float
    count: int


def spread(values: Iterable[float | None]) -> Spread | None:
    """The spread of the measured values in ms (None when there are none)."""
    ms = sorted(v * 1000 for v in values if v is not None)
    if not ms:
        return None
    p95 = ms[min(len(ms) - 1, math.ceil(0.95 * len(ms)) - 1)]
    return Spread(statistics.median(ms), p95, ms[-1], len(ms))


def cpu_share(samples: Sequence[Sample]) -> float | None:
    """Home Assistant's CPU time over wall time between the first and last sample (1.0 = a core)."""
    if len(samples) < 2 or samples[-1].at <= samples[0].at:
        return None
    return (samples[-1].cpu_seconds - samples[0].cpu_seconds) / (samples[-1].at - samples[0].at)


# --- the run's outcome and its summary ---------------------------------------------------------


@dataclass(slots=True)
class SoakResult:
    """Everything the soak measured; filled as it goes, so an interrupted run still reports."""

    minutes: float
    day_minutes: float
    unavailable_bound: float = UNAVAILABLE_BOUND
    warmup: float = WARMUP_SECONDS
    samples: list[Sample] = field(default_factory=list)
    watched: int = 0
    """Entities of the integration watched."""
    events: int = 0
    """state_changed events of those entities."""
    unavailable: list[Unavailability] = field(default_factory=list)
    frames: dict[tuple[str, str], FrameStats] = field(default_factory=dict)
    si_entries: int = 0
    entries_not_loaded: list[str] = field(default_factory=list)
    log: LogScan | None = None
    errors: list[str] = field(default_factory=list)
    """The run's own trouble: Home Assistant died, a stream broke, it was interrupted."""
    soaked: float = 0.0
    """s the soak actually ran."""

    def add_frames(self, stats: Iterable[FrameStats]) -> None:
        """Merge one diagnostics fetch."""
        for item in stats:
            key = (item.entry, item.frame_id)
            self.frames[key] = merge_frame_stats(self.frames.get(key), item)


def failures(result: SoakResult) -> list[str]:
    """Every reason the soak failed, one line each (empty: it passed)."""
    out = list(result.errors)
    timeouts = [s.at for s in result.samples if s.ping is None]
    if timeouts:
        out.append(
            f"{len(timeouts)} ping(s) without pong within {PING_TIMEOUT:.0f} s, first at "
            f"{timeouts[0]:.0f} s: the event loop stalled"
        )
    if result.watched == 0:
        out.append(f"no entities of {DOMAIN} were watched")
    out.extend(
        f"entity {u.entity_id}: unavailable "
        + ("at the end" if u.at_end else f"{u.longest:.0f} s at a stretch")
        + f" (longest {u.longest:.1f} s, {u.stretches} stretch(es))"
        for u in result.unavailable
        if u.fails(result.unavailable_bound)
    )
    if result.si_entries == 0:
        out.append("no simulated Sunny Island reported its BMS frames")
    out.extend(frame_problems(result.frames.values()))
    out.extend(f"config entry not loaded at the end: {name}" for name in result.entries_not_loaded)
    if result.log is None:
        out.append("Home Assistant's log was not scanned")
    else:
        out.extend(f"log: {record.line()}" for record in result.log.problems)
    return out


def _ms(value: Spread | None) -> str:
    if value is None:
        return "no data"
    return (
        f"median {value.median:.1f} ms, p95 {value.p95:.1f} ms, max {value.peak:.1f} ms "
        f"({value.count} samples)"
    )


def _gap(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def summary_lines(result: SoakResult) -> list[str]:
    """The summary table: figures, BMS frames, entities, log, verdict."""
    lines = [
        f"soak: {result.soaked / 60:.1f} of {result.minutes:g} min, one simulated day in "
        f"{result.day_minutes:g} min, {len(result.samples)} samples",
        "",
        f"{'figure':<38} value",
        f"{'-' * 38} {'-' * 60}",
    ]

    def row(name: str, value: str) -> None:
        lines.append(f"{name:<38} {value}")

    memory = memory_figures(result.samples, result.warmup)
    if memory is None:
        row("HA RSS", "no data")
    else:
        slope = "-" if memory.slope_per_hour is None else f"{memory.slope_per_hour:+.1f} MiB/h"
        row(
            "HA RSS (MiB)",
            f"start {memory.start:.1f}, end {memory.end:.1f}, max {memory.peak:.1f}",
        )
        row(
            f"HA RSS after {result.warmup:.0f} s warm-up",
            f"{memory.after_warmup:.1f} -> {memory.end:.1f} MiB: {memory.growth:+.1f} MiB, "
            f"slope {slope}",
        )
    if result.samples:
        first, last = result.samples[0], result.samples[-1]
        row(
            "HA threads / open files",
            f"{first.threads} -> {last.threads} / {first.open_files} -> {last.open_files}",
        )
    share = cpu_share(result.samples)
    row("HA CPU", "no data" if share is None else f"{share:.0%} of one core")
    pings = spread(s.ping for s in result.samples)
    connects = spread(s.connect for s in result.samples)
    row("websocket ping round trip", _ms(pings))
    row("TCP connect, same port (no loop)", _ms(connects))
    if pings is not None and connects is not None:
        row(
            "HA's loop in the ping (ping - connect)",
            f"{pings.median - connects.median:.1f} ms (difference of the medians)",
        )
    timeouts = sum(1 for s in result.samples if s.ping is None)
    row("pings without pong", f"{timeouts} (limit {PING_TIMEOUT:.0f} s each)")
    row(f"{DOMAIN} entities watched", f"{result.watched}, {result.events} state changes")
    row(
        f"unavailable > {result.unavailable_bound:.0f} s or at the end",
        str(sum(1 for u in result.unavailable if u.fails(result.unavailable_bound))),
    )
    if result.log is None:
        row("HA log", "not scanned")
    else:
        row(
            "HA log",
            f"{result.log.records} records, {len(result.log.ignored)} known harmless, "
            f"{len(result.log.problems)} errors/warnings",
        )
    lines.append("")
    lines.append(
        f"BMS frames received by the simulated Sunny Island (period {SEND_PERIOD:g} s "
        f"± {PERIOD_TOLERANCE:g} for 0x351/0x355, inhibit {MIN_PERIOD:g} s, "
        f"SI timeout {SOC_TIMEOUT:.0f} s):"
    )
    lines.append(
        f"  {'entry':<24} {'id':<6} {'count':>6} {'max gap s':>10} {'min gap s':>10} "
        f"{'last age s':>10}"
    )
    for item in sorted(result.frames.values(), key=lambda f: (f.entry, f.frame_id)):
        lines.append(
            f"  {item.entry[:24]:<24} {item.frame_id:<6} {item.count:>6} "
            f"{_gap(item.max_gap):>10} {_gap(item.min_gap):>10} {_gap(item.since_last):>10}"
        )
    if not result.frames:
        lines.append("  (none)")
    if result.unavailable:
        lines.append("")
        lines.append("entities that were unavailable:")
        lines.extend(
            f"  {u.entity_id}: {u.stretches} stretch(es), longest {u.longest:.1f} s"
            + (", unavailable at the end" if u.at_end else "")
            for u in result.unavailable
        )
    problems = failures(result)
    lines.append("")
    if problems:
        lines.append(f"FAILED ({len(problems)}):")
        lines.extend(f"  {problem}" for problem in problems)
    else:
        lines.append("PASSED: no errors in the log, no entity stuck unavailable, no late frame")
    return lines


# --- Home Assistant as a subprocess ------------------------------------------------------------


@functools.cache
def develop() -> ModuleType:
    """``scripts/develop.py`` as a module (``scripts/`` is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "sma_victron_bridge_develop", ROOT / "scripts" / "develop.py"
    )
    if spec is None or spec.loader is None:
        raise RuntimeError("scripts/develop.py not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when this process dies (even by SIGKILL)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))


class HomeAssistantProcess:
    """One Home Assistant subprocess in ``workdir``; :meth:`stop` is bounded and idempotent."""

    def __init__(self, workdir: Path, day_minutes: float) -> None:
        """Prepare the configuration (develop's ``prepare_config``) on a free port and start."""
        self.config = workdir / "config"
        self.console_path = workdir / "console.log"
        self.port = int(develop().free_port())
        self.base = f"http://127.0.0.1:{self.port}"
        develop().prepare_config(self.config, self.port)
        env = dict(os.environ)
        env[str(develop().DAY_MINUTES_ENV)] = f"{day_minutes:g}"
        self._console: IO[bytes] = self.console_path.open("wb")
        # Its own session: Ctrl+C reaches only this process, which then stops Home Assistant in
        # order. Started before any thread exists here, so preexec_fn is safe.
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "homeassistant", "--config", str(self.config), "--skip-pip"],
                stdout=self._console,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509
            )
        except BaseException:
            self._console.close()
            raise

    @property
    def pid(self) -> int:
        """Home Assistant's process id."""
        return self.process.pid

    @property
    def log_path(self) -> Path:
        """Home Assistant's own log file."""
        return self.config / "home-assistant.log"

    def exited(self) -> int | None:
        """The exit code once Home Assistant has exited."""
        return self.process.poll()

    def stop(self) -> int | None:
        """SIGTERM, wait STOP_TIMEOUT, then SIGKILL; the exit code (None if it would not die)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=10)
        self._console.close()
        return self.process.poll()

    def console_tail(self, lines: int = 30) -> str:
        """The end of Home Assistant's console output, for failure messages."""
        with contextlib.suppress(OSError):
            text = self.console_path.read_text(errors="replace").splitlines()
            return "\n".join(text[-lines:])
        return "(no console output)"


def read_proc(pid: int) -> tuple[int, float, int, int]:
    """RSS (KiB), CPU seconds (user + system), threads and open files of ``pid``."""
    proc = Path(f"/proc/{pid}")
    status = dict(
        line.split(":", 1)
        for line in proc.joinpath("status").read_text().splitlines()
        if ":" in line
    )
    rss = int(status["VmRSS"].split()[0])
    threads = int(status["Threads"])
    # Fields after the command name (which may hold spaces): utime and stime are the 12th, 13th.
    fields = proc.joinpath("stat").read_text().rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    files = len(os.listdir(proc / "fd"))
    return rss, cpu, threads, files


# --- talking to Home Assistant -----------------------------------------------------------------


async def open_socket(
    session: aiohttp.ClientSession, base: str, token: str
) -> aiohttp.ClientWebSocketResponse:
    """An authenticated websocket connection."""
    connection = await session.ws_connect(f"{base}/api/websocket", max_msg_size=0)
    hello = await connection.receive_json()
    if hello.get("type") != "auth_required":
        raise RuntimeError(f"unexpected websocket greeting: {hello}")
    await connection.send_json({"type": "auth", "access_token": token})
    auth = await connection.receive_json()
    if auth.get("type") != "auth_ok":
        raise RuntimeError(f"websocket login failed: {auth}")
    return connection


class Commands:
    """Websocket commands and pings, one at a time, on a connection with no subscriptions."""

    def __init__(self, connection: aiohttp.ClientWebSocketResponse) -> None:
        """Use ``connection``."""
        self._connection = connection
        self._next_id = 0

    async def close(self) -> None:
        """Close the connection."""
        await self._connection.close()

    async def _exchange(self, message: dict[str, Any], reply_type: str) -> dict[str, Any]:
        self._next_id += 1
        await self._connection.send_json({"id": self._next_id, **message})
        while True:
            reply: dict[str, Any] = await self._connection.receive_json()
            if reply.get("id") == self._next_id and reply.get("type") == reply_type:
                return reply

    async def call(self, message: dict[str, Any]) -> Any:
        """One command's result."""
        async with asyncio.timeout(HTTP_TIMEOUT):
            reply = await self._exchange(message, "result")
        if not reply.get("success"):
            raise RuntimeError(f"{message['type']} failed: {reply.get('error')}")
        return reply["result"]

    async def ping(self) -> float | None:
        """Round trip of one ``ping`` command, s (None: no pong within PING_TIMEOUT).

        A pong that comes after its timeout is skipped by the next exchange (ids differ).
        """
        started = time.perf_counter()
        try:
            async with asyncio.timeout(PING_TIMEOUT):
                await self._exchange({"type": "ping"}, "pong")
        except TimeoutError:
            return None
        return time.perf_counter() - started


async def connect_time(port: int) -> float | None:
    """How long a TCP connect to Home Assistant's port takes, s (None: failed)."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError, TimeoutError:
        return None
    elapsed = time.perf_counter() - started
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return elapsed


async def watch_states(
    connection: aiohttp.ClientWebSocketResponse,
    tracker: AvailabilityTracker,
    watched: set[str],
    result: SoakResult,
    subscribed: asyncio.Future[None],
) -> None:
    """Subscribe to state_changed and feed every event to ``tracker`` until the stream ends."""
    await connection.send_json({"id": 1, "type": "subscribe_events", "event_type": "state_changed"})
    async for message in connection:
        if message.type is not aiohttp.WSMsgType.TEXT:
            break
        data: dict[str, Any] = message.json()
        if data.get("type") == "result" and data.get("id") == 1:
            if subscribed.done():
                continue
            if not data.get("success"):
                subscribed.set_exception(RuntimeError(f"subscribe_events: {data.get('error')}"))
                return
            subscribed.set_result(None)
            continue
        if data.get("type") != "event":
            continue
        event = data["event"]["data"]
        entity_id = str(event["entity_id"])
        new_state = event.get("new_state")
        state = None if new_state is None else str(new_state["state"])
        tracker.observe(entity_id, state, time.monotonic())
        if entity_id in watched:
            result.events += 1


def integration_entities(registry: Iterable[Mapping[str, Any]]) -> set[str]:
    """Enabled entities of this integration in an entity registry listing."""
    return {
        str(entity["entity_id"])
        for entity in registry
        if entity.get("platform") == DOMAIN and entity.get("disabled_by") is None
    }


async def fetch_frames(api: Any, result: SoakResult) -> None:
    """Every Sunny Island entry's BMS frame record, merged into ``result``."""
    entries: list[dict[str, Any]] = await api.entries()
    count = 0
    for entry in entries:
        if entry.get("state") != "loaded":
            continue
        reply = await api.request("GET", f"/api/diagnostics/config_entry/{entry['entry_id']}")
        device = (reply or {}).get("data", {}).get("device", {})
        received = device.get("simulator_received")
        if isinstance(received, dict):
            count += 1
            result.add_frames(frame_stats(str(entry.get("title", entry["entry_id"])), received))
    result.si_entries = max(result.si_entries, count)


async def provision(ha: HomeAssistantProcess) -> None:
    """develop.py's provisioning, bounded, cut short when Home Assistant exits."""
    task = asyncio.ensure_future(develop().provision(ha.base, START_TIMEOUT))
    try:
        async with asyncio.timeout(START_TIMEOUT):
            while not task.done():
                if ha.exited() is not None:
                    raise RuntimeError(
                        f"Home Assistant exited during start-up (exit code {ha.exited()})"
                    )
                await asyncio.wait({task}, timeout=0.5)
        task.result()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def soak(ha: HomeAssistantProcess, result: SoakResult, sample_seconds: float) -> None:
    """Provision, then watch Home Assistant for ``result.minutes`` and do the final checks."""
    print(f"starting Home Assistant (pid {ha.pid}) at {ha.base}, config {ha.config}", flush=True)
    await provision(ha)
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        token = str(await develop().login(session, ha.base))
        commands = Commands(await open_socket(session, ha.base, token))
        # A login's access token expires after 30 minutes; the REST calls of a long soak use a
        # long-lived token (the websocket connections stay authenticated once opened).
        token = str(
            await commands.call(
                {
                    "type": "auth/long_lived_access_token",
                    "client_name": f"soak {time.time():.0f}",
                    "lifespan": 2,
                }
            )
        )
        api = develop().Api(session, ha.base, token)
        events = await open_socket(session, ha.base, token)
        tracker = AvailabilityTracker()
        watched = integration_entities(await commands.call({"type": "config/entity_registry/list"}))
        result.watched = len(watched)
        subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        reader = asyncio.create_task(watch_states(events, tracker, watched, result, subscribed))
        try:
            async with asyncio.timeout(HTTP_TIMEOUT):
                await asyncio.shield(subscribed)
            now = time.monotonic()
            for state in await commands.call({"type": "get_states"}):
                tracker.seed(str(state["entity_id"]), str(state["state"]), now)
            print(
                f"provisioned; watching {len(watched)} {DOMAIN} entities for "
                f"{result.minutes:g} min",
                flush=True,
            )
            await sample_loop(
                ha,
                result=result,
                commands=commands,
                api=api,
                reader=reader,
                sample_seconds=sample_seconds,
            )
            async with asyncio.timeout(FINAL_TIMEOUT):
                await final_checks(result, commands, api, tracker, watched)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            await events.close()
            await commands.close()


async def sample_loop(
    ha: HomeAssistantProcess,
    *,
    result: SoakResult,
    commands: Commands,
    api: Any,
    reader: asyncio.Task[None],
    sample_seconds: float,
) -> None:
    """Sample until the soak's time is up; diagnostics every DIAGNOSTICS_EVERY s."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    end = started + result.minutes * 60
    next_tick = started
    next_diagnostics = started + DIAGNOSTICS_EVERY
    next_progress = started + PROGRESS_EVERY
    while (now := loop.time()) < end:
        if ha.exited() is not None:
            raise RuntimeError(f"Home Assistant exited (code {ha.exited()}) during the soak")
        if reader.done():
            raise RuntimeError("the state_changed stream ended during the soak")
        rss, cpu, threads, files = read_proc(ha.pid)
        connect = await connect_time(ha.port)
        ping = await commands.ping()
        result.samples.append(Sample(now - started, rss, cpu, threads, files, connect, ping))
        result.soaked = loop.time() - started
        if loop.time() >= next_diagnostics:
            next_diagnostics += DIAGNOSTICS_EVERY
            await fetch_frames(api, result)
        if loop.time() >= next_progress:
            next_progress += PROGRESS_EVERY
            print(
                f"  {result.soaked:5.0f} s: RSS {rss / MIB:.1f} MiB, ping "
                f"{'-' if ping is None else f'{ping * 1000:.1f} ms'}, "
                f"{result.events} state changes, BMS max gap ratio "
                f"{bms_ratio(result.frames.values()):.3f}",
                flush=True,
            )
        next_tick += sample_seconds
        await asyncio.sleep(max(0.0, min(next_tick, end) - loop.time()))
    result.soaked = loop.time() - started


async def final_checks(
    result: SoakResult,
    commands: Commands,
    api: Any,
    tracker: AvailabilityTracker,
    watched: set[str],
) -> None:
    """BMS frames, entities (also any added meanwhile), entry states - before the stop."""
    await fetch_frames(api, result)
    now = time.monotonic()
    # Entities may have been added (or renamed) during the soak: the registry as it is now.
    watched |= integration_entities(await commands.call({"type": "config/entity_registry/list"}))
    result.watched = len(watched)
    # The states as they are now, in case the stream missed a change.
    for state in await commands.call({"type": "get_states"}):
        entity_id = str(state["entity_id"])
        if entity_id in watched and tracker.state(entity_id) != state["state"]:
            tracker.observe(entity_id, str(state["state"]), now)
    result.unavailable = tracker.report(watched, now)
    entries: list[dict[str, Any]] = await api.entries()
    result.entries_not_loaded = [
        f"{entry.get('title')} ({entry.get('state')})"
        for entry in entries
        if entry.get("state") != "loaded"
    ]


# --- command line ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Minutes, day minutes, sampling, bounds."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=DEFAULT_MINUTES)
    parser.add_argument(
        "--day-minutes",
        type=float,
        default=None,
        help="one simulated day in this many minutes (default: the soak's minutes, at least "
        f"{SHORTEST_DAY_MINUTES:g})",
    )
    parser.add_argument("--sample-seconds", type=float, default=SAMPLE_SECONDS)
    parser.add_argument("--unavailable-bound", type=float, default=UNAVAILABLE_BOUND)
    parser.add_argument(
        "--keep", action="store_true", help="keep the configuration and logs also when passing"
    )
    args = parser.parse_args(argv)
    if not args.minutes > 0 or not args.sample_seconds > 0:
        parser.error("--minutes and --sample-seconds must be positive")
    if args.day_minutes is None:
        args.day_minutes = max(args.minutes, SHORTEST_DAY_MINUTES)
    return args


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak; the exit code says whether it passed."""
    args = parse_args(argv)
    result = SoakResult(
        minutes=args.minutes,
        day_minutes=args.day_minutes,
        unavailable_bound=args.unavailable_bound,
        warmup=min(WARMUP_SECONDS, args.minutes * 60 / 3),
    )
    # Ctrl+C and a terminated soak still stop Home Assistant (SIGINT may arrive ignored when
    # started in the background).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="sma-victron-soak-"))
    interrupted = incomplete = False
    ha: HomeAssistantProcess | None = None
    try:
        ha = HomeAssistantProcess(workdir, args.day_minutes)
        bound = START_TIMEOUT + args.minutes * 60 + FINAL_TIMEOUT + 30

        async def bounded() -> None:
            assert ha is not None
            async with asyncio.timeout(bound):
                await soak(ha, result, args.sample_seconds)

        asyncio.run(bounded())
    except KeyboardInterrupt:
        interrupted = True
        result.errors.append("interrupted")
    except Exception as err:  # the run's own failure: reported, Home Assistant still stopped
        incomplete = True
        result.errors.append(f"the soak could not complete: {err!r}")
    finally:
        if ha is not None:
            code = ha.stop()
            if code is None:
                result.errors.append("Home Assistant did not stop, even when killed")
    if ha is not None and ha.log_path.exists():
        with ha.log_path.open(errors="replace") as log:
            result.log = scan_log(log)
    if incomplete and ha is not None:
        print("--- Home Assistant console (end) ---\n" + ha.console_tail(), flush=True)
    print("\n".join(["", *summary_lines(result)]))
    problems = failures(result)
    if problems or args.keep:
        print(f"configuration and logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"RATIO bms_frame_max_gap_over_period {bms_ratio(result.frames.values()):.3f}")
    if interrupted:
        return 130
    if incomplete:
        return 2
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
