"""The battery-sense schedule: right periods, nothing from stale sources, clean release."""

from __future__ import annotations

from hypothesis import given, strategies as st

from custom_components.sma_victron_bridge.control.forwarding import (
    ForwardSchedule,
    ForwardState,
    SenseWrite,
)
from custom_components.sma_victron_bridge.control.snapshot import BatterySnapshot


def snap(
    at: float, voltage: float | None = 13.2, temperature: float | None = 21.5
) -> BatterySnapshot:
    return BatterySnapshot(timestamp=at, voltage=voltage, temperature=temperature)


def test_voltage_every_3_s_temperature_every_9_s() -> None:
    schedule = ForwardSchedule(stale_after=30)
    sent: list[tuple[float, str]] = []
    for tick in range(19):  # one tick per second, the source always fresh
        now = float(tick)
        for write in schedule.due(now, snap(now)):
            schedule.confirm(write)
            sent.append((now, write.quantity))
    assert [t for t, q in sent if q == "voltage"] == [0, 3, 6, 9, 12, 15, 18]
    assert [t for t, q in sent if q == "temperature"] == [0, 9, 18]
    assert schedule.state is ForwardState.FORWARDING
    assert schedule.last_voltage == 13.2
    assert schedule.last_temperature == 21.5


def state_of(schedule: ForwardSchedule) -> ForwardState:
    """Read the state afresh (a direct attribute read would be narrowed by the type checker)."""
    return schedule.state


def test_waiting_without_snapshot_and_stale_when_old() -> None:
    schedule = ForwardSchedule(stale_after=10)
    assert schedule.due(0.0, None) == []
    assert state_of(schedule) is ForwardState.WAITING
    assert schedule.due(20.0, snap(5.0)) == []
    assert state_of(schedule) is ForwardState.STALE
    assert schedule.due(20.0, snap(12.0)) == [
        SenseWrite("voltage", 13.2),
        SenseWrite("temperature", 21.5),
    ]


def test_failed_write_is_retried_on_next_tick() -> None:
    schedule = ForwardSchedule(stale_after=30)
    [voltage, _temperature] = schedule.due(0.0, snap(0.0))
    schedule.retry_soon(voltage, 0.0)
    assert schedule.due(1.0, snap(1.0)) == [SenseWrite("voltage", 13.2)]


def test_implausible_values_are_never_forwarded() -> None:
    schedule = ForwardSchedule(stale_after=30)
    assert schedule.due(0.0, snap(0.0, voltage=-1.0, temperature=150.0)) == []
    assert schedule.due(1.0, snap(1.0, voltage=None, temperature=None)) == []


def test_release_hands_back_control() -> None:
    schedule = ForwardSchedule(stale_after=30)
    for write in schedule.due(0.0, snap(0.0)):
        schedule.confirm(write)
    assert schedule.release() == [SenseWrite("voltage", None), SenseWrite("temperature", None)]
    assert schedule.state is ForwardState.RELEASED
    assert schedule.last_voltage is None
    # After a release the next fresh reading is written at once again.
    assert len(schedule.due(1.0, snap(1.0))) == 2


def test_snapshot_age_and_power() -> None:
    reading = BatterySnapshot(timestamp=10.0, voltage=52.0, current=-20.0)
    assert reading.age(15.0) == 5.0
    assert reading.age(5.0) == 0.0
    assert reading.is_fresh(15.0, 5.0)
    assert not reading.is_fresh(15.1, 5.0)
    assert reading.power == -1040.0
    assert BatterySnapshot(timestamp=0.0, voltage=52.0).power is None


@given(
    stale_after=st.floats(min_value=1, max_value=120),
    steps=st.lists(
        st.tuples(st.floats(min_value=0.01, max_value=5), st.floats(min_value=0, max_value=200)),
        min_size=1,
        max_size=60,
    ),
)
def test_never_writes_stale_data_and_never_faster_than_period(
    stale_after: float, steps: list[tuple[float, float]]
) -> None:
    schedule = ForwardSchedule(stale_after=stale_after)
    now = 0.0
    last: dict[str, float] = {}
    for advance, age in steps:
        now += advance
        reading = snap(now - age)
        writes = schedule.due(now, reading)
        if age > stale_after:
            assert writes == []
            assert schedule.state is ForwardState.STALE
        for write in writes:
            period = 3.0 if write.quantity == "voltage" else 9.0
            if write.quantity in last:
                assert now - last[write.quantity] >= period - 1e-9
            last[write.quantity] = now
            schedule.confirm(write)
