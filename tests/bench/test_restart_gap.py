"""The restart-gap bench's pure parts: the silence measured across a restart and its report."""

from __future__ import annotations

import math

import pytest

from bench.restart_gap import (
    Figures,
    Silence,
    first_after,
    longest_silence,
    report_lines,
    steady,
)


def test_longest_silence_counts_from_the_last_frame_before_the_request() -> None:
    # Frames every second, the restart asked for at 10.5, the new process's first frame at 22.
    stamps = [float(t) for t in range(11)] + [22.0, 23.0, 24.0]
    assert longest_silence(stamps, 10.5, 30.0) == Silence(12.0, 10.0, 22.0)
    # Order does not matter; a longer silence before the window does not count.
    assert longest_silence([*reversed(stamps), -40.0], 10.5, 30.0) == Silence(12.0, 10.0, 22.0)


def test_longest_silence_includes_a_gap_after_the_first_new_frame() -> None:
    """A reload shortly after the start silences the Sunny Island too."""
    stamps = [0.0, 1.0, 5.0, 6.0, 14.0, 15.0]
    assert longest_silence(stamps, 0.5, 20.0) == Silence(8.0, 6.0, 14.0)


def test_longest_silence_needs_two_frames() -> None:
    assert longest_silence([], 0.0, 1.0) is None
    assert longest_silence([3.0], 0.0, 10.0) is None
    assert longest_silence([0.0, 1.0], 5.0, 10.0) is None


def test_first_after_and_steady() -> None:
    assert first_after([3.0, 1.0, 7.0], 2.0) == 3.0
    assert first_after([1.0], 2.0) is None
    assert steady([0.0, 1.0, 2.05, 3.0], 4, 1.0, 0.1)
    assert not steady([0.0, 1.0, 2.5, 3.0], 4, 1.0, 0.1)
    assert not steady([0.0, 1.0], 4, 1.0, 0.1)
    # Only the newest frames count: a start-up hiccup long ago does not.
    assert steady([0.0, 5.0, 6.0, 7.0, 8.0], 4, 1.0, 0.1)


def test_report_ends_with_the_ratio_to_the_sunny_island_timeout() -> None:
    figures = Figures(
        stop_seconds=1.5,
        exit_code=100,
        start_to_first_frame=9.0,
        silence=Silence(12.0, 10.0, 22.0),
        request_to_last_frame=0.4,
        soc_timeout_faults=0,
    )
    assert figures.ratio == pytest.approx(0.2)
    lines = report_lines(figures)
    assert lines[-1] == "RATIO restart_gap_over_si_timeout 0.200"
    assert any("12.00 s" in line for line in lines)
    assert any("exit code 100" in line for line in lines)
    nan = Figures(
        stop_seconds=1.0,
        exit_code=None,
        start_to_first_frame=2.0,
        silence=Silence(3.0, 0.0, 3.0),
        request_to_last_frame=math.nan,
        soc_timeout_faults=1,
    )
    assert report_lines(nan)[-1] == "RATIO restart_gap_over_si_timeout 0.050"
