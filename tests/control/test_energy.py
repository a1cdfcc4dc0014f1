"""Energy integration: exact on known profiles, monotonic, and never bridging link gaps."""

from __future__ import annotations

from hypothesis import given, strategies as st
import pytest

from custom_components.sma_victron_bridge.control.energy import EnergyIntegrator


def test_constant_charge_for_an_hour_is_one_kwh() -> None:
    energy = EnergyIntegrator()
    for second in range(0, 3601, 2):
        energy.add(float(second), 1000.0)
    assert energy.charged_kwh == pytest.approx(1.0)
    assert energy.discharged_kwh == 0.0


def test_zero_crossing_is_split_between_charge_and_discharge() -> None:
    energy = EnergyIntegrator()
    energy.add(0.0, 3600.0)
    energy.add(2.0, -3600.0)  # crosses zero at t = 1 s: 1800 J in, 1800 J out
    assert energy.charged_kwh == pytest.approx(0.0005)
    assert energy.discharged_kwh == pytest.approx(0.0005)


def test_gaps_and_missing_power_are_not_integrated() -> None:
    energy = EnergyIntegrator(max_gap=60)
    energy.add(0.0, 5000.0)
    energy.add(600.0, 5000.0)  # ten minutes without data: nothing invented
    assert energy.charged_kwh == 0.0
    energy.add(601.0, None)
    energy.add(602.0, 5000.0)
    assert energy.charged_kwh == 0.0
    energy.add(603.0, 5000.0)
    assert energy.charged_kwh == pytest.approx(5000 / 3_600_000)


def test_restore_never_goes_backwards() -> None:
    energy = EnergyIntegrator()
    energy.restore(12.5, 7.25)
    assert (energy.charged_kwh, energy.discharged_kwh) == (12.5, 7.25)
    energy.restore(3.0, None)
    assert energy.charged_kwh == 12.5


@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0.1, max_value=120),
            st.one_of(st.none(), st.floats(min_value=-20000, max_value=20000)),
        ),
        max_size=80,
    )
)
def test_totals_only_increase(samples: list[tuple[float, float | None]]) -> None:
    energy = EnergyIntegrator()
    now = 0.0
    before = (0.0, 0.0)
    for dt, power in samples:
        now += dt
        energy.add(now, power)
        assert energy.charged_kwh >= before[0]
        assert energy.discharged_kwh >= before[1]
        before = (energy.charged_kwh, energy.discharged_kwh)
