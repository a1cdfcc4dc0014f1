"""Sunny Island CAN traffic through Home Assistant, against python-can's bare receive loop.

The same 96,000 Sunny Island broadcast frames (8,000 rounds of 0x300-0x30A and 0x010, values
moving from round to round, built with ``encode_si_frame``) go to two receivers on python-can
``virtual`` channels, each fed by a sender thread on a second bus of its channel:

* bare: one thread calling ``bus.recv()`` and counting, nothing else - the peer;
* ours: a real Home Assistant (``bootstrap.async_setup_hass`` in a scratch config directory with
  this integration linked in, then started) running a Sunny Island entry on that channel (not
  simulated, so no simulator adds frames; battery source: the HA entity ``sensor.bench_soc``).
  Every frame goes reader thread -> ``call_soon_threadsafe`` -> decode -> merge -> energy
  integration -> one coordinator refresh per burst -> entity state writes. The last frame
  carries a battery voltage no other frame has; the run ends when the battery voltage sensor
  shows it, so it includes the last refresh delay (``ENTITY_REFRESH_DELAY``, 50 ms).

Both run while the same Home Assistant is up, alternating, and the best run of each counts. The
CPU time each thread spends per frame is printed too: python-can's virtual bus and this
integration are Python code sharing one interpreter lock, so the rate is about one over the sum
of those times, and they show where the time goes.

Then, with Home Assistant still running:

* event-loop share at 4,000 frames/s (an 8-byte standard frame takes about 250 us on a
  500 kbit/s bus, so this is a full bus): CPU time of the loop's thread and of the CAN reader
  thread over wall time, against an idle window of the same HA; plus the lag of a 10 ms
  heartbeat task;
* BMS frame period with a loaded loop: the loop burns the CPU for 200 ms every 300 ms while the
  4,000 frames/s keep coming, and a listener bus records the bus timestamps of 0x351 and 0x355.

Rates and CPU shares depend on the machine (two shared cores here); the ratio is taken from
measurements made in the same run. Run: ``.venv/bin/python bench/sma_can.py`` (about 25 s); the
last line is ``RATIO si_decode_over_bare x`` (ours ÷ bare, frames per second; target ≥ 0.5).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
import itertools
import logging
from pathlib import Path
import shutil
import statistics
import sys
import tempfile
import threading
import time
from types import MappingProxyType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)

import can  # noqa: E402
from can.interfaces.virtual import VirtualBus  # noqa: E402
from homeassistant import bootstrap, runner  # noqa: E402
from homeassistant.config_entries import ConfigEntry, ConfigEntryState  # noqa: E402
from homeassistant.const import EVENT_STATE_CHANGED  # noqa: E402
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback  # noqa: E402
from homeassistant.helpers import entity_registry as er  # noqa: E402

from custom_components.sma_victron_bridge.protocols.sma_can import (  # noqa: E402
    ID_BATTERY,
    ID_CHARGE_LIMITS,
    ID_ENERGY,
    ID_EXTERNAL_AC,
    ID_EXTERNAL_POWER,
    ID_EXTERNAL_REACTIVE_POWER,
    ID_FREQUENCY,
    ID_INVERTER_POWER,
    ID_INVERTER_REACTIVE_POWER,
    ID_LOAD,
    ID_OUTPUT_AC,
    ID_RELAYS,
    ID_SOC,
    ID_STATUS,
    SiValue,
    encode_si_frame,
)

DOMAIN = "sma_victron_bridge"
ROUNDS = 8_000
SI_IDS = (
    ID_EXTERNAL_POWER,
    ID_INVERTER_POWER,
    ID_EXTERNAL_REACTIVE_POWER,
    ID_INVERTER_REACTIVE_POWER,
    ID_OUTPUT_AC,
    ID_BATTERY,
    ID_STATUS,
    ID_RELAYS,
    ID_LOAD,
    ID_EXTERNAL_AC,
    ID_ENERGY,
    ID_FREQUENCY,
)
BARE_RUNS = 3
OUR_RUNS = 3
RUN_TIMEOUT = 30.0
FULL_BUS_RATE = 4_000  # frames/s on a 500 kbit/s bus
SHARE_SECONDS = 5.0
IDLE_SECONDS = 3.0
HEARTBEAT = 0.01
JITTER_SECONDS = 7.0
BURN_SECONDS = 0.2
BURN_EVERY = 0.3
BMS_IDS = (ID_CHARGE_LIMITS, ID_SOC)
SOC_ENTITY = "sensor.bench_soc"
UNIQUE_ID = "sunny_island:bench"
CHANNEL = "sma-victron-bench-si"
# Battery voltages of the moving frames stay within 52.0-53.9 V; each timed run ends on its own
# voltage above that range.
SENTINEL_VOLTS = (58.1, 58.2, 58.3, 58.4)


# --- the frames --------------------------------------------------------------------------------


def round_values(k: int) -> dict[int, dict[str, SiValue]]:
    """One round of SI broadcasts, values moving with ``k`` the way a working system's do."""
    external = 300.0 * (k % 17)
    inverter = -100.0 * (k % 23)
    volts = 229.0 + (k % 20) / 10
    return {
        ID_EXTERNAL_POWER: {f"external_power_l{n}": external for n in (1, 2, 3)},
        ID_INVERTER_POWER: {f"inverter_power_l{n}": inverter for n in (1, 2, 3)},
        ID_EXTERNAL_REACTIVE_POWER: {f"external_reactive_power_l{n}": 100.0 for n in (1, 2, 3)},
        ID_INVERTER_REACTIVE_POWER: {f"inverter_reactive_power_l{n}": 0.0 for n in (1, 2, 3)},
        ID_OUTPUT_AC: {
            **{f"output_voltage_l{n}": volts for n in (1, 2, 3)},
            "output_frequency": 50.0 + (k % 7) / 100,
        },
        ID_BATTERY: {
            "battery_voltage": 52.0 + (k % 20) / 10,
            "battery_current": -12.5 + (k % 50) / 2,
            "battery_temperature": 21.0 + (k % 9) / 10,
            "battery_soc": 60.0,
        },
        ID_STATUS: {
            "soh": 100,
            "charging_procedure": 10,
            "operating_state": 1,
            "error_number": 0,
            "charge_voltage_setpoint": 55.2,
        },
        ID_RELAYS: {
            "relay1": True,
            "grid_voltage_ok": True,
            "grid_connected": k % 97 != 0,
            "running": True,
            "external_source_connected": True,
        },
        ID_LOAD: {"load_power": 400.0 + 100.0 * (k % 31)},
        ID_EXTERNAL_AC: {
            **{f"external_voltage_l{n}": volts + 0.4 for n in (1, 2, 3)},
            "external_frequency": 50.0 + (k % 5) / 100,
        },
        ID_ENERGY: {
            "pv_power": 100.0 * (k % 41),
            "grid_consumption_power": external,
            "grid_feed_power": 0.0,
        },
        ID_FREQUENCY: {"frequency": 50.0 + (k % 11) / 256},
    }


def build_frames(rounds: int) -> list[can.Message]:
    """``rounds`` rounds of the twelve SI ids, as ready-to-send messages."""
    messages: list[can.Message] = []
    for k in range(rounds):
        values = round_values(k)
        messages.extend(
            can.Message(
                arbitration_id=frame_id,
                data=encode_si_frame(frame_id, values[frame_id]),
                is_extended_id=False,
            )
            for frame_id in SI_IDS
        )
    return messages


def with_sentinel(messages: list[can.Message], volts: float) -> list[can.Message]:
    """The frames with the last one replaced by a 0x305 carrying ``volts``."""
    values = round_values(0)[ID_BATTERY] | {"battery_voltage": volts}
    last = can.Message(
        arbitration_id=ID_BATTERY,
        data=encode_si_frame(ID_BATTERY, values),
        is_extended_id=False,
    )
    return [*messages[:-1], last]


# --- senders and the bare peer ---------------------------------------------------------------


class Sender(threading.Thread):
    """Sends ``messages`` on ``bus``: all at once, or paced at ``rate`` frames/s for a while."""

    def __init__(
        self,
        bus: can.BusABC,
        messages: Sequence[can.Message],
        rate: float | None = None,
        duration: float = 0.0,
    ) -> None:
        super().__init__(name="bench-sender", daemon=True)
        self.bus = bus
        self.messages = messages
        self.rate = rate
        self.duration = duration
        self.started_at = 0.0
        self.sent = 0
        self.cpu = 0.0
        self.halt = threading.Event()

    def run(self) -> None:
        try:
            self._send()
        finally:
            self.cpu = time.thread_time()

    def _send(self) -> None:
        send = self.bus.send
        self.started_at = time.perf_counter()
        if self.rate is None:
            for message in self.messages:
                send(message)
            self.sent = len(self.messages)
            return
        frames = itertools.cycle(self.messages)
        while not self.halt.is_set():
            elapsed = time.perf_counter() - self.started_at
            if elapsed >= self.duration:
                break
            due = int(elapsed * self.rate)
            while self.sent < due:
                send(next(frames))
                self.sent += 1
            time.sleep(0.001)


@contextmanager
def virtual_bus(channel: str) -> Iterator[can.BusABC]:
    """A bus on a virtual channel; built directly, as ``can.Bus`` would read config files."""
    bus = VirtualBus(channel=channel)
    try:
        yield bus
    finally:
        bus.shutdown()


@dataclass(frozen=True, slots=True)
class BareRun:
    rate: float
    sender_us: float
    """CPU time per frame, microseconds."""
    receiver_us: float


def bare_rate(messages: list[can.Message]) -> BareRun:
    """Frames/s of python-can's bare ``recv()`` loop, fed by a sender thread."""
    count = len(messages)
    finished = [0.0]
    received = [0]
    cpu = [0.0]

    def receive(bus: can.BusABC) -> None:
        n = 0
        recv = bus.recv
        while n < count:
            if recv(RUN_TIMEOUT) is None:
                break
            n += 1
        finished[0] = time.perf_counter()
        received[0] = n
        cpu[0] = time.thread_time()

    with virtual_bus("sma-victron-bench-bare") as rx, virtual_bus("sma-victron-bench-bare") as tx:
        receiver = threading.Thread(target=receive, args=(rx,), name="bench-bare-recv")
        sender = Sender(tx, messages)
        receiver.start()
        sender.start()
        sender.join()
        receiver.join()
    if received[0] != count:
        raise RuntimeError(f"bare loop received {received[0]} of {count} frames")
    return BareRun(
        rate=count / (finished[0] - sender.started_at),
        sender_us=sender.cpu / count * 1e6,
        receiver_us=cpu[0] / count * 1e6,
    )


# --- Home Assistant ----------------------------------------------------------------------------


async def start_hass(config_dir: Path) -> HomeAssistant:
    """A real Home Assistant with this integration in ``custom_components``."""
    (config_dir / "configuration.yaml").write_text("homeassistant:\n  name: bench\n")
    (config_dir / "custom_components").mkdir()
    (config_dir / "custom_components" / DOMAIN).symlink_to(ROOT / "custom_components" / DOMAIN)
    hass = await bootstrap.async_setup_hass(
        runner.RuntimeConfig(config_dir=str(config_dir), skip_pip=True)
    )
    if hass is None:
        raise RuntimeError("Home Assistant did not start")
    # Started as the runner starts it: only a started instance stops (and joins its executors).
    await hass.async_start()
    return hass


async def stop_hass(hass: HomeAssistant) -> None:
    """Stop Home Assistant, then its log queue thread (otherwise closed at interpreter exit)."""
    await hass.async_stop()
    for handler in logging.root.handlers[:]:
        if getattr(handler, "listener", None) is not None:
            logging.root.removeHandler(handler)
            handler.close()


async def add_sunny_island(hass: HomeAssistant) -> ConfigEntry[Any]:
    """The Sunny Island entry on CHANNEL, its SOC from ``sensor.bench_soc``."""
    entry: ConfigEntry[Any] = ConfigEntry(
        version=1,
        minor_version=1,
        domain=DOMAIN,
        title="Bench Sunny Island",
        data={
            "device": "sunny_island",
            "simulated": False,
            "can_interface": "virtual",
            "can_channel": CHANNEL,
            "chemistry": "lifepo4",
            "cells": 16,
            "capacity_ah": 280.0,
            "source": "entities",
            "source_soc_entity": SOC_ENTITY,
        },
        options={},
        source="user",
        unique_id=UNIQUE_ID,
        discovery_keys=MappingProxyType({}),
        subentries_data=None,
    )
    await hass.config_entries.async_add(entry)
    await hass.async_block_till_done()
    if entry.state is not ConfigEntryState.LOADED:
        raise RuntimeError(f"entry not loaded: {entry.state} {entry.reason}")
    return entry


async def keep_soc_fresh(hass: HomeAssistant) -> None:
    """Report the source SOC every few seconds, as a live battery would (no stale source)."""
    while True:
        hass.states.async_set(SOC_ENTITY, "60", {"unit_of_measurement": "%"})
        await asyncio.sleep(5)


class Counters:
    """Coordinator refreshes and state writes of the entry's entities, plus the end marker."""

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry[Any]) -> None:
        registry = er.async_get(hass)
        self.entity_ids = {
            e.entity_id for e in er.async_entries_for_config_entry(registry, entry.entry_id)
        }
        voltage = registry.async_get_entity_id("sensor", DOMAIN, f"{UNIQUE_ID}_battery_voltage")
        if voltage is None:
            raise RuntimeError("no battery voltage sensor")
        self.voltage_entity = voltage
        self.refreshes = 0
        self.writes = 0
        self.marker: float | None = None
        self.marker_seen = asyncio.Event()
        self.marker_at = 0.0
        self.marker_cpu = 0.0
        self._unsubs = [
            hass.bus.async_listen(EVENT_STATE_CHANGED, self._on_state),
            entry.runtime_data.coordinator.async_add_listener(self._on_refresh),
        ]

    @callback
    def _on_refresh(self) -> None:
        self.refreshes += 1

    @callback
    def _on_state(self, event: Event[EventStateChangedData]) -> None:
        entity_id = event.data["entity_id"]
        if entity_id not in self.entity_ids:
            return
        self.writes += 1
        new = event.data["new_state"]
        if self.marker is None or entity_id != self.voltage_entity or new is None:
            return
        try:
            shown = float(new.state)
        except ValueError:
            return
        if abs(shown - self.marker) < 1e-6:
            self.marker_at = time.perf_counter()
            self.marker_cpu = time.thread_time()
            self.marker_seen.set()

    def expect(self, volts: float) -> None:
        self.marker = volts
        self.marker_seen.clear()
        self.refreshes = 0
        self.writes = 0

    def close(self) -> None:
        for unsub in self._unsubs:
            unsub()


@dataclass(frozen=True, slots=True)
class OurRun:
    rate: float
    sender_us: float
    """CPU time per frame, microseconds."""
    reader_us: float
    loop_us: float
    refreshes: int
    writes: int
    rx_frames: int
    rx_errors: int


async def our_rate(
    hass: HomeAssistant,
    entry: ConfigEntry[Any],
    counters: Counters,
    tx: can.BusABC,
    messages: list[can.Message],
    *,
    volts: float,
) -> OurRun:
    """Frames/s from the first send until the last frame's value is on its sensor."""
    runtime = entry.runtime_data
    rx_before = runtime.link.rx_frames
    errors_before = runtime.data.rx_errors
    counters.expect(volts)
    reader = reader_thread()
    reader_cpu = thread_cpu(reader)
    sender = Sender(tx, with_sentinel(messages, volts))
    loop_cpu = time.thread_time()
    sender.start()
    async with asyncio.timeout(RUN_TIMEOUT):
        await counters.marker_seen.wait()
    reader_cpu = thread_cpu(reader) - reader_cpu
    await hass.async_add_executor_job(sender.join)
    count = len(messages)
    return OurRun(
        rate=count / (counters.marker_at - sender.started_at),
        sender_us=sender.cpu / count * 1e6,
        reader_us=reader_cpu / count * 1e6,
        loop_us=(counters.marker_cpu - loop_cpu) / count * 1e6,
        refreshes=counters.refreshes,
        writes=counters.writes,
        rx_frames=runtime.link.rx_frames - rx_before,
        rx_errors=runtime.data.rx_errors - errors_before,
    )


# --- event-loop share --------------------------------------------------------------------------


def thread_cpu(thread: threading.Thread) -> float:
    """CPU seconds ``thread`` has used so far."""
    assert thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def reader_thread() -> threading.Thread:
    for thread in threading.enumerate():
        if thread.name == f"can-link virtual:{CHANNEL}":
            return thread
    raise RuntimeError("CAN reader thread not found")


@dataclass(frozen=True, slots=True)
class LoopShare:
    loop_cpu: float
    reader_cpu: float
    lag_mean: float
    lag_max: float
    frames: int
    refreshes: int
    writes: int


async def heartbeat(lags: list[float]) -> None:
    """Sleeps HEARTBEAT at a time and records how late each wake-up is."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + HEARTBEAT
        await asyncio.sleep(HEARTBEAT)
        lags.append(loop.time() - due)


async def loop_share(
    counters: Counters,
    tx: can.BusABC,
    messages: list[can.Message],
    rate: float | None,
    seconds: float,
) -> LoopShare:
    """Share of one core the loop thread and the reader use while ``rate`` frames/s arrive."""
    reader = reader_thread()
    counters.expect(-1.0)
    lags: list[float] = []
    beat = asyncio.create_task(heartbeat(lags))
    sender = Sender(tx, messages, rate=rate, duration=seconds) if rate else None
    wall = time.perf_counter()
    loop_cpu = time.thread_time()
    reader_cpu = thread_cpu(reader)
    if sender is not None:
        sender.start()
    await asyncio.sleep(seconds)
    wall = time.perf_counter() - wall
    loop_cpu = time.thread_time() - loop_cpu
    reader_cpu = thread_cpu(reader) - reader_cpu
    beat.cancel()
    if sender is not None:
        sender.halt.set()
        await asyncio.get_running_loop().run_in_executor(None, sender.join)
    return LoopShare(
        loop_cpu=loop_cpu / wall,
        reader_cpu=reader_cpu / wall,
        lag_mean=statistics.fmean(lags),
        lag_max=max(lags),
        frames=sender.sent if sender is not None else 0,
        refreshes=counters.refreshes,
        writes=counters.writes,
    )


# --- BMS period under load ---------------------------------------------------------------------


class LoopLoad:
    """Keeps the event loop busy: BURN_SECONDS of pure CPU every BURN_EVERY seconds."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._handle: asyncio.Handle | None = None
        self.burned = 0.0

    def start(self) -> None:
        self._handle = self._loop.call_soon(self._burn)

    def _burn(self) -> None:
        start = time.perf_counter()
        end = start + BURN_SECONDS
        while time.perf_counter() < end:
            pass
        self.burned += time.perf_counter() - start
        self._handle = self._loop.call_later(BURN_EVERY - BURN_SECONDS, self._burn)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


def listen_bms(bus: can.BusABC, halt: threading.Event, stamps: dict[int, list[float]]) -> None:
    """Records the bus timestamp of every BMS frame until ``halt``."""
    while not halt.is_set():
        message = bus.recv(0.1)
        if message is not None and message.arbitration_id in stamps:
            stamps[message.arbitration_id].append(message.timestamp)


async def bms_periods(
    tx: can.BusABC, messages: list[can.Message]
) -> tuple[dict[int, list[float]], float, int]:
    """Intervals of 0x351/0x355 while the loop burns and 4,000 frames/s come in."""
    loop = asyncio.get_running_loop()
    stamps: dict[int, list[float]] = {frame_id: [] for frame_id in BMS_IDS}
    halt = threading.Event()
    load = LoopLoad(loop)
    with virtual_bus(CHANNEL) as listener_bus:
        listener = threading.Thread(
            target=listen_bms, args=(listener_bus, halt, stamps), name="bench-bms-listener"
        )
        sender = Sender(tx, messages, rate=FULL_BUS_RATE, duration=JITTER_SECONDS)
        listener.start()
        sender.start()
        load.start()
        started = time.perf_counter()
        await asyncio.sleep(JITTER_SECONDS)
        elapsed = time.perf_counter() - started
        load.stop()
        halt.set()
        sender.halt.set()
        await loop.run_in_executor(None, sender.join)
        await loop.run_in_executor(None, listener.join)
    periods = {k: [b - a for a, b in itertools.pairwise(v)] for k, v in stamps.items()}
    return periods, load.burned / elapsed, sender.sent


# --- the run -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Results:
    bare: list[BareRun]
    ours: list[OurRun]
    idle: LoopShare | None = None
    full: LoopShare | None = None
    periods: dict[int, list[float]] | None = None
    burned: float = 0.0
    jitter_frames: int = 0


async def run_hass(config_dir: Path, base: list[can.Message]) -> Results:
    """Everything that needs Home Assistant; the bare runs alternate with ours meanwhile."""
    hass = await start_hass(config_dir)
    results = Results(bare=[], ours=[])
    keeper: asyncio.Task[None] | None = None
    try:
        hass.states.async_set(SOC_ENTITY, "60", {"unit_of_measurement": "%"})
        keeper = asyncio.create_task(keep_soc_fresh(hass))
        with virtual_bus(CHANNEL) as tx:
            entry = await add_sunny_island(hass)
            # Warm-up: one round makes every entity appear; they are counted from then on.
            warm = Sender(tx, base[: len(SI_IDS)])
            warm.start()
            await hass.async_add_executor_job(warm.join)
            await asyncio.sleep(0.5)
            await hass.async_block_till_done()
            counters = Counters(hass, entry)
            try:
                for n in range(max(BARE_RUNS, OUR_RUNS)):
                    if n < BARE_RUNS:
                        bare = with_sentinel(base, SENTINEL_VOLTS[-1])
                        results.bare.append(await hass.async_add_executor_job(bare_rate, bare))
                    if n < OUR_RUNS:
                        run = await our_rate(
                            hass, entry, counters, tx, base, volts=SENTINEL_VOLTS[n]
                        )
                        results.ours.append(run)
                    await asyncio.sleep(0.3)
                results.idle = await loop_share(counters, tx, base, None, IDLE_SECONDS)
                results.full = await loop_share(counters, tx, base, FULL_BUS_RATE, SHARE_SECONDS)
            finally:
                counters.close()
            results.periods, results.burned, results.jitter_frames = await bms_periods(tx, base)
            await hass.config_entries.async_unload(entry.entry_id)
    finally:
        if keeper is not None:
            keeper.cancel()
        await stop_hass(hass)
    return results


def describe(values: list[float]) -> str:
    if len(values) < 2:
        return f"only {len(values)} interval(s)"
    ms = [v * 1000 for v in values]
    return (
        f"mean {statistics.fmean(ms):7.1f} ms, stddev {statistics.stdev(ms):5.1f} ms, "
        f"min {min(ms):7.1f} ms, max {max(ms):7.1f} ms ({len(ms)} intervals)"
    )


def report_threads() -> None:
    """Threads still alive: none of this bench's or the integration's may be left."""
    left = [t for t in threading.enumerate() if t is not threading.main_thread()]
    ours = [t.name for t in left if t.name.startswith(("bench-", "can-link")) or not t.daemon]
    if ours:
        raise RuntimeError(f"threads left running: {ours}")
    others = ", ".join(t.name for t in left)
    # pycares keeps one daemon thread per process for closing DNS channels; it has no stop.
    print(f"threads left: {others or 'none'}")


def main() -> None:
    started = time.perf_counter()
    base = build_frames(ROUNDS)
    count = len(base)
    print(
        f"{count} SI frames ({ROUNDS} rounds of 0x300-0x30A + 0x010, moving values), "
        "python-can virtual channel, one sender thread"
    )
    # Wiped before Home Assistant starts: once it runs it reports a tree removal in its thread.
    config_dir = Path(tempfile.gettempdir()) / "sma-victron-bridge-bench-can"
    shutil.rmtree(config_dir, ignore_errors=True)
    config_dir.mkdir()
    results = asyncio.run(run_hass(config_dir, base))

    bare = max(run.rate for run in results.bare)
    ours = max(run.rate for run in results.ours)
    print(f"bare python-can recv() loop:           {bare:9,.0f} frames/s (best of {BARE_RUNS})")
    for b in results.bare:
        print(
            f"  run: {b.rate:9,.0f} frames/s; CPU per frame: sender {b.sender_us:.1f} us, "
            f"recv loop {b.receiver_us:.1f} us"
        )
    print(f"ours, reader -> loop -> entity states: {ours:9,.0f} frames/s (best of {OUR_RUNS})")
    for run in results.ours:
        print(
            f"  run: {run.rate:9,.0f} frames/s; CPU per frame: sender {run.sender_us:.1f} us, "
            f"reader thread {run.reader_us:.1f} us, event loop {run.loop_us:.1f} us; "
            f"{run.rx_frames} frames read, {run.rx_errors} undecodable, "
            f"{run.refreshes} coordinator refreshes, {run.writes} entity state writes"
        )
    assert results.idle is not None
    assert results.full is not None
    idle, full = results.idle, results.full
    for label, share in (("idle (no frames)", idle), (f"{FULL_BUS_RATE} frames/s", full)):
        print(
            f"event loop, {label:16}: loop thread {share.loop_cpu:5.1%} of a core, "
            f"CAN reader {share.reader_cpu:5.1%}; 10 ms heartbeat late by "
            f"{share.lag_mean * 1000:.2f} ms mean, {share.lag_max * 1000:.1f} ms max; "
            f"{share.frames} frames, {share.refreshes} refreshes, {share.writes} state writes"
        )
    extra = full.loop_cpu - idle.loop_cpu
    print(
        f"event-loop share at {FULL_BUS_RATE} frames/s (full 500 kbit/s bus): {full.loop_cpu:.1%}, "
        f"{extra:.1%} above idle = {extra / FULL_BUS_RATE * 1e6:.1f} us of loop time per frame "
        f"(+ {full.reader_cpu - idle.reader_cpu:.1%} of a core in the reader thread)"
    )
    assert results.periods is not None
    print(
        f"BMS frame periods, loop burning {results.burned:.0%} of the time "
        f"({BURN_SECONDS * 1000:.0f} ms every {BURN_EVERY * 1000:.0f} ms) "
        f"+ {results.jitter_frames} SI frames at {FULL_BUS_RATE}/s, bus timestamps:"
    )
    for frame_id, periods in results.periods.items():
        print(f"  0x{frame_id:03X}: {describe(periods)}")
    report_threads()
    print(f"total {time.perf_counter() - started:.1f} s")
    print(f"RATIO si_decode_over_bare {ours / bare:.2f}")


if __name__ == "__main__":
    main()
