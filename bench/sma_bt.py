"""Sunny Boy spot-value poll: request/reply round trips per poll and time per poll.

One poll is one ``SunnyBoyClient.read_spot_values()`` against the Sunny Boy simulator, over

* Bluetooth: ``RfcommTransport(socket_factory=...)`` on one end of ``socket.socketpair()``, the
  simulator's ``serve_bluetooth`` on the other (level-1 frames, replies split into 96-byte
  pieces, the level-1 signal-strength variable on top);
* Speedwire: ``SpeedwireTransport`` to the simulator's UDP socket on 127.0.0.1.

Round trips are counted twice, and both counts must agree: the transport's ``send`` is wrapped
(every packet the client puts on the link), and the simulator's ``received`` list holds every
level-2 request that reached it. Each poll's decoded values are checked against the
simulator's model (seed 7, clock frozen at 2024-06-21 11:17:13 UTC), so a poll that skipped a
request could not pass as a fast one.

The minimum is derived from the request table of PROTOCOLS.md §5, not from the client:

1. every row of the table becomes (command, first LRI, last LRI) requests; the table must be
   the same set as ``sma_bt.Query`` (checked);
2. each field of ``SpotValues`` that comes from a level-2 record (all but ``signal_strength``,
   a level-1 variable, and the derived ``dc_strings``/``inverter_time``) needs at least one LRI
   of ``LRI_TABLE`` with its name (phase currents have two alternative LRIs: either will do);
3. the minimum is the size of the smallest set of table requests whose LRI ranges cover every
   such field, found by trying all subsets by increasing size (2^13 at most).

Run: ``.venv/bin/python bench/sma_bt.py`` (a few seconds); the last line is
``RATIO poll_round_trips_over_minimum x`` (our level-2 round trips per poll, the worse of the
two links, ÷ the minimum; target ≤ 1).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
import itertools
import math
from pathlib import Path
import re
import socket
import statistics
import sys
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)

from custom_components.sma_victron_bridge.protocols.sma_bt import (  # noqa: E402
    LRI_TABLE,
    Query,
)
from custom_components.sma_victron_bridge.protocols.sma_client import (  # noqa: E402
    SPOT_QUERIES,
    SpotValues,
    SunnyBoyClient,
)
from custom_components.sma_victron_bridge.protocols.sma_transport import (  # noqa: E402
    PacketTransport,
    RfcommTransport,
    SpeedwireTransport,
)
from custom_components.sma_victron_bridge.simulators.sunny_boy import (  # noqa: E402
    SunnyBoySimulator,
)

PROTOCOLS = ROOT.parent / "shared" / "PROTOCOLS.md"
MOMENT = 1_718_968_633  # 2024-06-21 11:17:13 UTC: the sun is up, every value is non-zero
SEED = 7
INVERTER_ADDRESS = "00:80:25:12:34:56"
POLLS = 50
WARMUP = 3
TIME_BUDGET = 12.0  # seconds of timed polls per link, at most (two links: < 30 s in all)
REQUEST_TIMEOUT = 2.0

Request = tuple[int, int, int]
"""(command, first LRI, last LRI) of one level-2 data request."""

NOT_FROM_LEVEL_2 = frozenset({"signal_strength", "dc_strings", "inverter_time"})
"""SpotValues fields no level-2 record carries: a level-1 variable and two derived fields."""
RECORD_NAME = {"operating_time": "operation_time"}
"""SpotValues field → LRI_TABLE name, where they differ."""


# --------------------------------------------------------------------------------------------
# The minimum, from the request table
# --------------------------------------------------------------------------------------------

_ROW = re.compile(
    r"^\|\s*(?P<data>[^|]+?)\s*\|\s*(?P<command>0x[0-9A-Fa-f]{8})\s*\|(?P<ranges>[^|]+)\|"
)
_RANGE = re.compile(r"0x([0-9A-Fa-f]{8})\s*[\u2013-]\s*(?:0x)?([0-9A-Fa-f]+)")
"""A range "start-end"; the table writes the dash as an en dash (U+2013)."""


def table_requests(text: str) -> dict[Request, str]:
    """Requests of the §5 table: (command, first, last) → the row's "data" label.

    A row may hold two ranges (type label: 0x00821E00 to 0x008220FF and 0x00823400 to "FF");
    a short end replaces the last digits of the start.
    """
    section = text.split("## 5.", 1)[1].split("\n## ", 1)[0]
    requests: dict[Request, str] = {}
    for line in section.splitlines():
        row = _ROW.match(line)
        if row is None:
            continue
        command = int(row["command"], 16)
        for start, end in _RANGE.findall(row["ranges"]):
            full_end = start[: len(start) - len(end)] + end
            requests[(command, int(start, 16), int(full_end, 16))] = row["data"]
    return requests


def needed_lris() -> dict[str, frozenset[int]]:
    """SpotValues field → the LRIs that can carry it (any one of them suffices)."""
    needs: dict[str, frozenset[int]] = {}
    for spot_field in fields(SpotValues):
        name = spot_field.name
        if name in NOT_FROM_LEVEL_2:
            continue
        record_name = RECORD_NAME.get(name, name)
        lris = frozenset(lri for lri, info in LRI_TABLE.items() if info.name == record_name)
        if not lris:
            raise SystemExit(f"no LRI in LRI_TABLE carries SpotValues.{name}")
        needs[name] = lris
    return needs


def minimum_cover(
    requests: Sequence[Request], needs: dict[str, frozenset[int]]
) -> tuple[Request, ...]:
    """The smallest set of requests whose LRI ranges give every needed field."""

    def covers(chosen: Sequence[Request]) -> bool:
        return all(
            any(first <= lri <= last for _, first, last in chosen for lri in lris)
            for lris in needs.values()
        )

    for size in range(len(requests) + 1):
        for chosen in itertools.combinations(requests, size):
            if covers(chosen):
                return chosen
    raise SystemExit("the request table cannot fetch every spot value")


# --------------------------------------------------------------------------------------------
# Counting links
# --------------------------------------------------------------------------------------------


@dataclass
class Counter:
    """What one client put on and took from its link."""

    sends: int = 0
    bytes_out: int = 0
    bytes_in: int = 0

    def reset(self) -> None:
        self.sends = self.bytes_out = self.bytes_in = 0


class CountingRfcomm(RfcommTransport):
    """RfcommTransport that counts what goes through ``send`` and ``receive``."""

    def __init__(self, counter: Counter, socket_factory: Callable[[], socket.socket]) -> None:
        super().__init__(INVERTER_ADDRESS, socket_factory=socket_factory)
        self.counter = counter

    async def send(self, data: bytes) -> None:
        self.counter.sends += 1
        self.counter.bytes_out += len(data)
        await super().send(data)

    async def receive(self, timeout: float) -> bytes:
        data = await super().receive(timeout)
        self.counter.bytes_in += len(data)
        return data


class CountingSpeedwire(SpeedwireTransport):
    """SpeedwireTransport that counts what goes through ``send`` and ``receive``."""

    def __init__(self, counter: Counter, port: int) -> None:
        super().__init__("127.0.0.1", port)
        self.counter = counter

    async def send(self, data: bytes) -> None:
        self.counter.sends += 1
        self.counter.bytes_out += len(data)
        await super().send(data)

    async def receive(self, timeout: float) -> bytes:
        data = await super().receive(timeout)
        self.counter.bytes_in += len(data)
        return data


@dataclass
class BluetoothPeer:
    """Socket factory: each call is a new socketpair whose far end the simulator serves."""

    simulator: SunnyBoySimulator
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __call__(self) -> socket.socket:
        client_end, inverter_end = socket.socketpair()
        self.tasks.append(asyncio.create_task(self.simulator.serve_bluetooth(inverter_end)))
        return client_end


# --------------------------------------------------------------------------------------------
# Polling
# --------------------------------------------------------------------------------------------


@dataclass
class PollResult:
    """Per-poll round trips and timings of one link."""

    link: str
    l2_requests: int
    sends: int
    requests: tuple[Request, ...]
    bytes_out: int
    bytes_in: int
    times_ms: list[float]


def check_values(values: SpotValues, simulator: SunnyBoySimulator) -> None:
    """Every polled value equals the simulator's model at the frozen moment."""
    state = simulator.state()
    for spot_field in fields(SpotValues):
        name = spot_field.name
        ours = getattr(values, name)
        if name == "inverter_time":
            expected: object = MOMENT
        elif name == "signal_strength" and values.signal_strength is None:
            continue  # Speedwire has no signal strength
        else:
            expected = getattr(state, name)
        if isinstance(ours, float) and isinstance(expected, int | float):
            same = math.isclose(ours, expected, rel_tol=1e-9)
        elif isinstance(ours, tuple) and isinstance(expected, tuple):
            same = len(ours) == len(expected) and all(
                math.isclose(a, b) if a is not None and b is not None else a is b
                for a, b in zip(ours, expected, strict=True)
            )
        else:
            same = ours == expected
        if not same:
            raise SystemExit(f"poll returned {name}={ours!r}, the simulator has {expected!r}")


async def measure(
    link: str,
    client: SunnyBoyClient,
    simulator: SunnyBoySimulator,
    counter: Counter,
) -> PollResult:
    """Connect, then count one poll's round trips and time up to POLLS polls."""
    await client.connect()
    for _ in range(WARMUP):
        await client.read_spot_values()

    simulator.received.clear()
    counter.reset()
    values = await client.read_spot_values()
    check_values(values, simulator)
    requests = tuple((packet.command, packet.first, packet.last) for packet in simulator.received)
    result = PollResult(
        link=link,
        l2_requests=len(simulator.received),
        sends=counter.sends,
        requests=requests,
        bytes_out=counter.bytes_out,
        bytes_in=counter.bytes_in,
        times_ms=[],
    )

    spent = 0.0
    for _ in range(POLLS):
        simulator.received.clear()
        counter.reset()
        start = time.perf_counter()
        values = await client.read_spot_values()
        elapsed = time.perf_counter() - start
        if len(simulator.received) != result.l2_requests or counter.sends != result.sends:
            raise SystemExit(f"{link}: round trips changed from poll to poll")
        result.times_ms.append(elapsed * 1000)
        spent += elapsed
        if spent > TIME_BUDGET:
            break
    check_values(values, simulator)
    return result


async def poll_bluetooth() -> PollResult:
    simulator = SunnyBoySimulator(seed=SEED, clock=lambda: float(MOMENT))
    peer = BluetoothPeer(simulator)
    counter = Counter()
    client = SunnyBoyClient(CountingRfcomm(counter, peer), "0000", request_timeout=REQUEST_TIMEOUT)
    try:
        return await measure("Bluetooth (socketpair)", client, simulator, counter)
    finally:
        await client.close()
        await simulator.close()
        await asyncio.gather(*peer.tasks)


async def poll_speedwire() -> PollResult:
    simulator = SunnyBoySimulator(seed=SEED, clock=lambda: float(MOMENT))
    counter = Counter()
    transport: PacketTransport = CountingSpeedwire(counter, await simulator.serve_speedwire())
    client = SunnyBoyClient(transport, "0000", request_timeout=REQUEST_TIMEOUT)
    try:
        return await measure("Speedwire (UDP 127.0.0.1)", client, simulator, counter)
    finally:
        await client.close()
        await simulator.close()


def describe(request: Request, labels: dict[Request, str]) -> str:
    command, first, last = request
    label = labels.get(request, "not in the table")
    return f"0x{command:08X} 0x{first:08X}-0x{last:08X} ({label})"


def report(result: PollResult, minimum: tuple[Request, ...], labels: dict[Request, str]) -> None:
    times = sorted(result.times_ms)
    p95 = times[min(len(times) - 1, math.ceil(0.95 * len(times)) - 1)]
    print(f"\n{result.link}:")
    print(
        f"  round trips per poll: {result.l2_requests} level-2 requests reached the simulator, "
        f"{result.sends} packets sent by the client"
    )
    if result.sends > result.l2_requests:
        print(
            f"  ({result.sends - result.l2_requests} level-1 exchange(s): the signal-strength "
            "variable 0x05, which has no level-2 request and is not in §5's table)"
        )
    print(f"  bytes per poll: {result.bytes_out} sent, {result.bytes_in} received")
    print(
        f"  time per poll over {len(times)} polls: mean {statistics.fmean(times):.2f} ms, "
        f"median {statistics.median(times):.2f} ms, min {times[0]:.2f} ms, p95 {p95:.2f} ms"
    )
    extra = [request for request in result.requests if request not in minimum]
    repeated = [request for request, count in _counts(result.requests).items() if count > 1]
    missing = [request for request in minimum if request not in result.requests]
    for request in extra:
        print(f"  above the minimum: {describe(request, labels)} is not needed for spot values")
    for request in repeated:
        print(f"  above the minimum: {describe(request, labels)} was sent more than once")
    for request in missing:
        print(f"  note: {describe(request, labels)} of the minimum set was not sent")


def _counts(requests: Sequence[Request]) -> dict[Request, int]:
    counts: dict[Request, int] = {}
    for request in requests:
        counts[request] = counts.get(request, 0) + 1
    return counts


async def run() -> tuple[PollResult, PollResult]:
    bluetooth = await poll_bluetooth()
    speedwire = await poll_speedwire()
    return bluetooth, speedwire


def main() -> None:
    started = time.perf_counter()
    labels = table_requests(PROTOCOLS.read_text(encoding="utf-8"))
    query_table = {query.value for query in Query}
    if set(labels) != query_table:
        raise SystemExit(
            f"PROTOCOLS.md §5 and sma_bt.Query differ: {sorted(set(labels) ^ query_table)}"
        )
    needs = needed_lris()
    requests = sorted(labels)
    minimum = minimum_cover(requests, needs)
    print(
        f"PROTOCOLS.md §5 table: {len(requests)} distinct (command, first, last) requests, "
        "the same set as sma_bt.Query"
    )
    print(
        f"spot values carried by level-2 records: {len(needs)} SpotValues fields "
        f"(all but {', '.join(sorted(NOT_FROM_LEVEL_2))})"
    )
    print(f"minimum requests covering all of them: {len(minimum)}")
    for request in requests:
        mark = "needed " if request in minimum else "unused "
        print(f"  {mark} {describe(request, labels)}")
    commands = {command for command, _, _ in minimum}
    print(
        f"  (one widened range per command would be {len(commands)} requests; no source in "
        "§5 shows an inverter answering ranges other than these, so they are not counted)"
    )
    spot_queries = {query.value for query in SPOT_QUERIES}
    print(f"SPOT_QUERIES equals the minimum set: {spot_queries == set(minimum)}")

    bluetooth, speedwire = asyncio.run(run())
    for result in (bluetooth, speedwire):
        report(result, minimum, labels)

    ours = max(bluetooth.l2_requests, speedwire.l2_requests)
    ratio = ours / len(minimum)
    print(
        f"\nlevel-2 round trips per poll (worse link): {ours}; minimum from the table: "
        f"{len(minimum)}; wall time {time.perf_counter() - started:.1f} s"
    )
    if ratio > 1:
        print(
            "above the minimum because of the requests marked 'above the minimum' in the "
            "per-link reports"
        )
    print(f"RATIO poll_round_trips_over_minimum {ratio:.2f}")


if __name__ == "__main__":
    main()
