"""VE.Direct text parsing throughput: our ``TextParser`` against ``vedirect`` (PyPI), same bytes.

The three real captures in ``shared/testdata/vedirect`` (BlueSolar, BMV-702, SmartSolar, with
their async HEX frames) are concatenated and repeated to about 3 MB.

``vedirect`` 1.1.0 reads a serial port line by line, collects the lines from one ``PID`` line
to the next, checks the checksum byte by byte and splits the lines into its field dict. Its
own ``check_frame_checksum`` and ``parse_pdu`` run here unchanged; only the port is replaced
by an in-memory ``BytesIO.readline`` (faster than any real port, so the peer gets its best
case). Ours is fed 256-byte chunks, about what one read of a busy 19200 baud line returns;
other chunk sizes are printed for reference.

Run: ``.venv/bin/python bench/vedirect.py``; the last line is ``RATIO vedirect_parse x``
(ours ÷ theirs, bytes per second; above 1 means ours is faster).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
import io
from pathlib import Path
import sys
import time
from typing import Any

# this file's own name would hide the vedirect package: replace its folder by the repository
ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)

from vedirect import VEDirect  # noqa: E402

from custom_components.sma_victron_bridge.protocols.vedirect import TextParser  # noqa: E402

CAPTURES = ROOT.parent / "shared" / "testdata" / "vedirect"
NAMES = ("bluesolar_1.23.dump", "bmv702.dump", "smartsolar_1.39.dump")
TARGET_BYTES = 3_000_000
CHUNK = 256
TIME_BUDGET = 4.0  # seconds of timed runs per measurement, at most
MAX_ROUNDS = 5

Frame = dict[str, str]


def their_frames(data: bytes, keep: list[Frame] | None = None) -> tuple[int, int]:
    """``vedirect``'s frame loop over ``data``: (accepted, rejected) frames.

    The loop is ``VEDirect._get_data`` with ``BytesIO.readline`` for the port; the trailing
    frame that no further ``PID`` line closes is left out, as the package would wait for it.
    """
    stream = io.BytesIO(data)
    device = object.__new__(VEDirect)  # skips __init__, which opens a serial port
    accepted = rejected = 0
    line = stream.readline()
    while line and not line.startswith(b"PID"):
        line = stream.readline()
    while line:
        lines: list[bytes] = []
        line = b""
        while not line.startswith(b"PID"):
            line = stream.readline()
            if not line:
                break
            lines.append(line)
        if not line:
            break
        if not VEDirect.check_frame_checksum(lines):
            rejected += 1
            continue
        device._data = {}
        try:
            device.parse_pdu(lines)
        except ValueError, UnicodeDecodeError:
            rejected += 1
            continue
        accepted += 1
        if keep is not None:
            keep.append(dict(device._data))
    return accepted, rejected


def our_blocks(data: bytes, chunk: int = CHUNK) -> list[Frame]:
    parser = TextParser()
    blocks: list[Frame] = []
    for start in range(0, len(data), chunk):
        blocks += parser.feed(data[start : start + chunk])
    return blocks


def as_frames(blocks: list[Frame]) -> list[Frame]:
    """Merge our blocks the way ``vedirect`` groups lines: from one PID block to the next."""
    frames: list[Frame] = []
    for block in blocks:
        if "PID" in block or not frames:
            frames.append(dict(block))
        else:
            frames[-1].update(block)
    return frames


def is_subsequence(short: list[Frame], long: list[Frame]) -> bool:
    remaining = iter(long)
    return all(any(frame == candidate for candidate in remaining) for frame in short)


def best_rate(run: Callable[[], Any], size: int) -> float:
    """Bytes per second of the fastest of a few timed runs (bounded by TIME_BUDGET)."""
    best = float("inf")
    spent = 0.0
    for _ in range(MAX_ROUNDS):
        start = time.perf_counter()
        run()
        elapsed = time.perf_counter() - start
        best = min(best, elapsed)
        spent += elapsed
        if spent > TIME_BUDGET:
            break
    return size / best


def main() -> None:
    captures = {name: (CAPTURES / name).read_bytes() for name in NAMES}

    print("agreement per capture (frames = PID-led groups of blocks):")
    for name, data in captures.items():
        ours = our_blocks(data)
        ours_framed = as_frames(ours)
        theirs: list[Frame] = []
        accepted, rejected = their_frames(data, theirs)
        agree = is_subsequence(theirs, ours_framed)
        print(
            f"  {name:22} ours {len(ours):4} blocks = {len(ours_framed):4} frames | "
            f"vedirect {accepted:4} accepted, {rejected} rejected | "
            f"every vedirect frame equal to ours: {agree}"
        )
        assert agree, name

    data = b"".join(captures.values())
    data *= max(1, round(TARGET_BYTES / len(data)))
    size = len(data)
    ours = our_blocks(data)
    accepted, rejected = their_frames(data)
    print(
        f"\n{size / 1e6:.2f} MB: ours {len(ours)} blocks ({len(as_frames(ours))} frames), "
        f"vedirect {accepted} frames accepted, {rejected} rejected "
        "(frames carrying async HEX or spanning two captures fail its checksum)"
    )

    their_rate = best_rate(lambda: their_frames(data), size)
    print(f"vedirect 1.1.0 (readline + per-byte checksum): {their_rate / 1e6:7.2f} MB/s")
    rates: dict[int, float] = {}
    for chunk in (64, CHUNK, 4096, size):
        rates[chunk] = best_rate(partial(our_blocks, data, chunk), size)
        label = "whole buffer" if chunk == size else f"{chunk}-byte chunks"
        print(f"ours TextParser, {label:17}:          {rates[chunk] / 1e6:7.2f} MB/s")
    print(f"19200 baud line rate: {19200 / 10 / 1e6:.4f} MB/s")

    # Wire-to-state latency through a real Home Assistant with the simulated MPPT on a PTY.
    from bench.ha_latency import measure_wire_to_state, summarize

    latencies = measure_wire_to_state(samples=40)
    print(f"wire-to-state latency through Home Assistant: {summarize(latencies)}")
    print(f"RATIO vedirect_parse {rates[CHUNK] / their_rate:.2f}")


if __name__ == "__main__":
    main()
