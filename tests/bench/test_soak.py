"""The pure parts of the soak run: log scanning, availability tracking, frame checks, summary.

No Home Assistant starts here; the log lines are in the format of Home Assistant's log
file (``%(asctime)s.%(msecs)03d %(levelname)s (%(threadName)s) [%(name)s] %(message)s``).
"""

from __future__ import annotations

import math
import os

import pytest

from bench import soak
from bench.soak import (
    AvailabilityTracker,
    FrameStats,
    LogRecord,
    Sample,
    SoakResult,
    Unavailability,
    bms_ratio,
    cpu_share,
    failures,
    frame_problems,
    frame_stats,
    integration_entities,
    memory_figures,
    merge_frame_stats,
    parse_args,
    parse_log,
    read_proc,
    scan_log,
    spread,
    summary_lines,
)

TURBOJPEG = [
    "2025-05-01 10:00:01.123 ERROR (MainThread) [homeassistant.components.camera.img_util] "
    "Error loading libturbojpeg; Camera snapshot performance will be sub-optimal",
    "Traceback (most recent call last):",
    '  File "turbojpeg.py", line 1, in <module>',
    "RuntimeError: Unable to locate turbojpeg library automatically.",
]
NOTICE = (
    "2025-05-01 10:00:02.000 WARNING (SyncWorker_0) [homeassistant.loader] We found a custom "
    "integration sma_victron_bridge which has not been tested by Home Assistant. This component "
    "might cause stability problems"
)
OUR_INFO = (
    "2025-05-01 10:00:03.000 INFO (MainThread) [custom_components.sma_victron_bridge.devices."
    "sunny_island] Simulated Sunny Island: first BMS frames sent 0.31 s after setup"
)
OUR_WARNING = (
    "2025-05-01 10:00:04.000 WARNING (MainThread) [custom_components.sma_victron_bridge.devices."
    "sunny_island] Simulated Sunny Island: battery source JBD is stale; charging is stopped"
)
BLOCKING = (
    "2025-05-01 10:00:05.000 WARNING (MainThread) [homeassistant.util.loop] Detected blocking "
    "call to open with args ('/dev/pts/3',) inside the event loop by custom integration "
    "'sma_victron_bridge' at custom_components/sma_victron_bridge/devices/vedirect.py, line 9"
)
OTHER_WARNING = (
    "2025-05-01 10:00:06.000 WARNING (MainThread) [homeassistant.components.http] "
    "Login attempt or request with invalid authentication"
)
OTHER_ERROR = (
    "2025-05-01 10:00:07.000 ERROR (MainThread) [homeassistant.core] Error doing job: Task "
    "exception was never retrieved"
)
CRITICAL = "2025-05-01 10:00:08.000 CRITICAL (MainThread) [homeassistant.bootstrap] Out of luck"


def test_records_carry_their_traceback_lines() -> None:
    records = parse_log(["junk before any record", *TURBOJPEG, OUR_INFO])
    assert [r.level for r in records] == ["ERROR", "INFO"]
    first = records[0]
    assert first.time == "2025-05-01 10:00:01.123"
    assert first.logger == "homeassistant.components.camera.img_util"
    assert first.message.startswith("Error loading libturbojpeg")
    assert first.detail == tuple(TURBOJPEG[1:])
    assert records[1].detail == ()
    assert first.line() == (
        "2025-05-01 10:00:01.123 ERROR [homeassistant.components.camera.img_util] "
        "Error loading libturbojpeg; Camera snapshot performance will be sub-optimal"
    )


def test_scan_keeps_errors_and_our_warnings_and_skips_the_known_harmless() -> None:
    lines = [
        *TURBOJPEG,
        NOTICE,
        OUR_INFO,
        OUR_WARNING,
        BLOCKING,
        OTHER_WARNING,
        OTHER_ERROR,
        CRITICAL,
    ]
    scan = scan_log(line + "\n" for line in lines)
    assert scan.records == 8
    assert [r.logger for r in scan.ignored] == [
        "homeassistant.components.camera.img_util",
        "homeassistant.loader",
    ]
    assert [r.time[-12:] for r in scan.problems] == [
        "10:00:04.000",  # our own warning
        "10:00:05.000",  # Home Assistant's warning naming the integration
        "10:00:07.000",  # any error
        "10:00:08.000",  # critical
    ]


def test_a_different_camera_error_is_not_ignored() -> None:
    line = (
        "2025-05-01 10:00:01.123 ERROR (MainThread) [homeassistant.components.camera.img_util] "
        "Error loading something else"
    )
    assert len(scan_log([line]).problems) == 1
    # The notice is harmless only from the loader.
    moved = NOTICE.replace("[homeassistant.loader]", "[homeassistant.setup]")
    assert len(scan_log([moved]).problems) == 1


def test_tracker_measures_stretches_from_state_changes() -> None:
    tracker = AvailabilityTracker()
    tracker.observe("sensor.a", "12.5", 0.0)
    tracker.observe("sensor.a", "unavailable", 10.0)
    tracker.observe("sensor.a", "unavailable", 15.0)  # still the same stretch
    tracker.observe("sensor.a", "13.0", 22.0)
    tracker.observe("sensor.a", "unavailable", 50.0)
    tracker.observe("sensor.a", "14.0", 53.0)
    tracker.observe("sensor.b", "unavailable", 60.0)
    tracker.observe("sensor.c", "on", 0.0)
    report = tracker.report(["sensor.c", "sensor.b", "sensor.a", "sensor.never_seen"], 100.0)
    assert report == [
        Unavailability("sensor.a", longest=12.0, stretches=2, at_end=False),
        Unavailability("sensor.b", longest=40.0, stretches=1, at_end=True),
    ]
    assert not report[0].fails(30.0)
    assert report[1].fails(30.0)  # at the end, and longer than the bound
    assert tracker.state("sensor.a") == "14.0"
    assert tracker.state("sensor.never_seen") is None


def test_tracker_seed_counts_from_when_watching_began_and_yields_to_events() -> None:
    tracker = AvailabilityTracker()
    tracker.observe("sensor.early", "5", 1.0)
    tracker.seed("sensor.early", "unavailable", 2.0)  # an event came first: the seed is stale
    tracker.seed("sensor.late", "unavailable", 2.0)
    tracker.observe("sensor.late", "7", 40.0)
    tracker.observe("sensor.gone", "unavailable", 3.0)
    tracker.observe("sensor.gone", None, 4.0)  # removed: its stretch ends
    report = tracker.report(["sensor.early", "sensor.late", "sensor.gone"], 50.0)
    assert report == [
        Unavailability("sensor.gone", longest=1.0, stretches=1, at_end=False),
        Unavailability("sensor.late", longest=38.0, stretches=1, at_end=False),
    ]
    assert report[1].fails(30.0)
    assert not report[1].fails(40.0)


def test_an_entity_unavailable_briefly_at_the_end_fails() -> None:
    brief = Unavailability("sensor.x", longest=2.0, stretches=1, at_end=True)
    assert brief.fails(30.0)


DIAGNOSTICS = {
    "0x355": {"count": 180, "max_gap": 1.004, "min_gap": 0.996, "since_last": 0.4},
    "0x351": {"count": 180, "max_gap": 1.02, "min_gap": 0.98, "since_last": 0.4},
    "0x35E": {"count": 1, "max_gap": None, "min_gap": None, "since_last": 0.3},
}


def test_frame_stats_from_diagnostics() -> None:
    stats = frame_stats("SI", DIAGNOSTICS)
    assert [s.frame_id for s in stats] == ["0x351", "0x355", "0x35E"]
    assert stats[0] == FrameStats("SI", "0x351", 180, 1.02, 0.98, 0.4)
    assert stats[2].max_gap is None
    assert bms_ratio(stats) == pytest.approx(1.02)
    assert frame_problems(stats[:2]) == []
    assert frame_problems(stats[2:]) == ["SI 0x35E: only 1 frame(s) received"]


def test_frame_problems_name_late_early_fast_and_stopped_frames() -> None:
    stats = [
        FrameStats("SI", "0x351", 100, max_gap=1.25, min_gap=0.95, since_last=0.2),
        FrameStats("SI", "0x355", 100, max_gap=1.05, min_gap=0.75, since_last=3.5),
        FrameStats("SI", "0x356", 100, max_gap=2.5, min_gap=0.15, since_last=5.0),
        FrameStats("SI", "0x35A", 100, max_gap=1.0, min_gap=1.0, since_last=0.1, restarted=True),
    ]
    assert frame_problems(stats) == [
        "SI 0x351: a gap of 1.250 s (late: > 1.1 s)",
        "SI 0x355: a gap of 0.750 s (early: < 0.9 s)",
        "SI 0x355: last frame 3.5 s old at the end",
        # Other ids are held to the inhibit time only.
        "SI 0x356: a gap of 0.150 s (inhibit time 0.2 s)",
        "SI 0x35A: the simulator's record started anew (entry reloaded?)",
    ]
    # The ratio looks at 0x351/0x355 only.
    assert bms_ratio(stats) == pytest.approx(1.25)
    assert math.isnan(bms_ratio([]))


def test_merge_keeps_the_worst_of_two_fetches() -> None:
    first = FrameStats("SI", "0x351", 30, max_gap=1.08, min_gap=0.97, since_last=0.5)
    second = FrameStats("SI", "0x351", 60, max_gap=1.02, min_gap=0.92, since_last=0.1)
    merged = merge_frame_stats(first, second)
    assert merged == FrameStats("SI", "0x351", 60, 1.08, 0.92, 0.1)
    assert merge_frame_stats(None, second) is second
    restarted = merge_frame_stats(merged, FrameStats("SI", "0x351", 3, None, None, None))
    assert restarted.restarted
    assert restarted.max_gap == 1.08
    assert restarted.min_gap == 0.92
    # A first fetch with a single frame has no gaps yet: the later fetch's stand.
    single = FrameStats("SI", "0x351", 1, None, None, 0.2)
    assert merge_frame_stats(single, second) == FrameStats("SI", "0x351", 60, 1.02, 0.92, 0.1)


def test_only_hex_frame_ids_count_for_the_ratio() -> None:
    assert soak.frame_id_value("0x355") == 0x355
    assert soak.frame_id_value("total") is None
    odd = FrameStats("SI", "total", 10, max_gap=9.0, min_gap=1.0, since_last=0.1)
    assert math.isnan(bms_ratio([odd]))


def samples(rss_kib: list[int], step: float = 10.0) -> list[Sample]:
    return [
        Sample(
            at=n * step,
            rss_kib=rss,
            cpu_seconds=n * step * 0.25,
            threads=20,
            open_files=40,
            connect=0.0005,
            ping=0.001 + n * 0.001,
        )
        for n, rss in enumerate(rss_kib)
    ]


def test_memory_figures_after_the_warm_up() -> None:
    # 200 MiB rising to 204 MiB during the warm-up, then 1 MiB per 10 s.
    run = samples([204_800, 206_848, 208_896, 209_920, 210_944, 211_968])
    figures = memory_figures(run, warmup=30.0)
    assert figures is not None
    assert figures.start == pytest.approx(200.0)
    assert figures.end == pytest.approx(207.0)
    assert figures.peak == pytest.approx(207.0)
    assert figures.after_warmup == pytest.approx(205.0)
    assert figures.growth == pytest.approx(2.0)
    assert figures.slope_per_hour == pytest.approx(360.0)
    assert memory_figures([], warmup=30.0) is None
    short = memory_figures(run[:2], warmup=60.0)
    assert short is not None
    assert short.slope_per_hour is None
    assert short.growth == 0.0


def test_spread_and_cpu_share() -> None:
    run = samples([1] * 20)
    pings = spread(s.ping for s in run)
    assert pings is not None
    assert pings.count == 20
    assert pings.median == pytest.approx(10.5)
    assert pings.p95 == pytest.approx(19.0)
    assert pings.peak == pytest.approx(20.0)
    assert spread([None, None]) is None
    assert cpu_share(run) == pytest.approx(0.25)
    assert cpu_share(run[:1]) is None


def passing_result() -> SoakResult:
    result = SoakResult(minutes=3.0, day_minutes=3.0, warmup=60.0)
    result.samples = samples([204_800 + 100 * n for n in range(18)])
    result.soaked = 180.0
    result.watched = 165
    result.events = 5000
    result.si_entries = 1
    result.add_frames(frame_stats("Simulated Sunny Island", DIAGNOSTICS))
    result.frames.pop(("Simulated Sunny Island", "0x35E"))
    result.unavailable = [Unavailability("sensor.mppt_pv_power", 4.0, 1, at_end=False)]
    result.log = scan_log(TURBOJPEG)
    return result


def test_summary_of_a_passing_run() -> None:
    result = passing_result()
    assert failures(result) == []
    lines = summary_lines(result)
    text = "\n".join(lines)
    assert lines[0] == "soak: 3.0 of 3 min, one simulated day in 3 min, 18 samples"
    assert "HA RSS (MiB)                           start 200.0, end 201.7, max 201.7" in text
    assert "165, 5000 state changes" in text
    assert "  Simulated Sunny Island   0x351     180      1.020      0.980      0.400" in text
    assert "  sensor.mppt_pv_power: 1 stretch(es), longest 4.0 s" in text
    assert "1 records, 1 known harmless, 0 errors/warnings" in text
    assert lines[-1].startswith("PASSED")


def test_summary_of_a_failing_run_lists_every_reason() -> None:
    result = passing_result()
    result.samples.append(
        Sample(
            at=190.0, rss_kib=1, cpu_seconds=50.0, threads=1, open_files=1, connect=None, ping=None
        )
    )
    result.unavailable.append(Unavailability("sensor.si_soc", 45.0, 1, at_end=False))
    result.add_frames([FrameStats("Simulated Sunny Island", "0x355", 190, 1.3, 0.7, 0.2)])
    result.entries_not_loaded = ["Simulated MPPT (setup_retry)"]
    result.log = scan_log([OTHER_ERROR])
    result.errors.append("interrupted")
    problems = failures(result)
    assert problems == [
        "interrupted",
        "1 ping(s) without pong within 10 s, first at 190 s: the event loop stalled",
        "entity sensor.si_soc: unavailable 45 s at a stretch (longest 45.0 s, 1 stretch(es))",
        "Simulated Sunny Island 0x355: a gap of 1.300 s (late: > 1.1 s)",
        "Simulated Sunny Island 0x355: a gap of 0.700 s (early: < 0.9 s)",
        "config entry not loaded at the end: Simulated MPPT (setup_retry)",
        "log: 2025-05-01 10:00:07.000 ERROR [homeassistant.core] Error doing job: Task "
        "exception was never retrieved",
    ]
    lines = summary_lines(result)
    assert lines[-len(problems) - 1] == f"FAILED ({len(problems)}):"
    assert lines[-1] == f"  {problems[-1]}"


def test_an_empty_run_fails_for_want_of_data() -> None:
    result = SoakResult(minutes=1.0, day_minutes=2.0)
    assert failures(result) == [
        "no entities of sma_victron_bridge were watched",
        "no simulated Sunny Island reported its BMS frames",
        "Home Assistant's log was not scanned",
    ]
    text = "\n".join(summary_lines(result))
    assert "HA RSS                                 no data" in text
    assert "  (none)" in text
    assert "HA log                                 not scanned" in text


def test_integration_entities_come_from_the_registry_listing() -> None:
    registry: list[dict[str, str | None]] = [
        {"entity_id": "sensor.a", "platform": "sma_victron_bridge", "disabled_by": None},
        {"entity_id": "sensor.b", "platform": "sma_victron_bridge", "disabled_by": "integration"},
        {"entity_id": "sun.sun", "platform": "sun", "disabled_by": None},
    ]
    assert integration_entities(registry) == {"sensor.a"}


def test_arguments_default_the_day_to_the_soak() -> None:
    args = parse_args([])
    assert args.minutes == 5.0
    assert args.day_minutes == 5.0
    # A day shorter than the integration accepts would only log a warning (and fail the soak).
    assert parse_args(["--minutes", "1"]).day_minutes == 2.0
    assert parse_args(["--minutes", "3", "--day-minutes", "10"]).day_minutes == 10.0
    with pytest.raises(SystemExit):
        parse_args(["--minutes", "0"])


def test_proc_figures_of_this_process() -> None:
    rss, cpu, threads, files = read_proc(os.getpid())
    assert rss > 10_000  # KiB: a Python process with Home Assistant's test harness loaded
    assert cpu > 0.0
    assert threads >= 1
    assert files >= 3


def test_log_record_line_is_the_first_line_only() -> None:
    record = LogRecord("t", "ERROR", "x", "boom", ("Traceback",))
    assert record.line() == "t ERROR [x] boom"
    assert soak.is_problem(record)
