"""A short demo day asked for through the environment, seen in Home Assistant.

``SMA_VICTRON_BRIDGE_DAY_MINUTES`` is read when a simulated device starts. With 2 minutes a day
(scale 720) each one-second VE.Direct block is 12 simulated minutes, so a simulated MPPT's PV
power entity goes from 0 to a few watts within seconds of sunrise and back to 0 at sunset. The
shared clock is anchored just before each event, so the test need not wait for the real sun.
"""

from __future__ import annotations

import logging
import time

from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.sma_victron_bridge.const import (
    CONF_DEVICE,
    CONF_PORT,
    CONF_SERIAL_NUMBER,
    CONF_SIMULATED,
    DOMAIN,
    DeviceKind,
)
from custom_components.sma_victron_bridge.devices.simulation import (
    DAY_MINUTES_ENV,
    sun_time_scale,
)
from custom_components.sma_victron_bridge.simulators import day_clock
from custom_components.sma_victron_bridge.simulators.day_clock import DayClock

from .test_vedirect import setup_entry, state_value, wait_for

HOUR = 3600.0
SERIAL = "HQ2203DAYS1"
PV_POWER = "sensor.mppt_hq2203days1_pv_power"


# --- the setting ---------------------------------------------------------------------------------


def test_unset_means_a_real_day(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DAY_MINUTES_ENV, raising=False)
    assert sun_time_scale() == 1.0
    monkeypatch.setenv(DAY_MINUTES_ENV, "  ")
    assert sun_time_scale() == 1.0


@pytest.mark.parametrize(
    ("minutes", "scale"),
    [("20", 72.0), ("2", 720.0), ("1440", 1.0), (" 60 ", 24.0), ("2.5", 576.0)],
)
def test_minutes_per_day_give_the_scale(
    monkeypatch: pytest.MonkeyPatch, minutes: str, scale: float
) -> None:
    monkeypatch.setenv(DAY_MINUTES_ENV, minutes)
    assert sun_time_scale() == pytest.approx(scale)


@pytest.mark.parametrize("minutes", ["fast", "1.9", "0", "-20", "1441", "nan", "inf"])
def test_bad_values_are_ignored_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, minutes: str
) -> None:
    monkeypatch.setenv(DAY_MINUTES_ENV, minutes)
    with caplog.at_level(logging.WARNING):
        assert sun_time_scale() == 1.0
    assert f"Ignoring {DAY_MINUTES_ENV}={minutes!r}" in caplog.text


# --- a simulated MPPT at that speed --------------------------------------------------------------


def simulated_mppt() -> MockConfigEntry:
    """A simulated MPPT entry as the config flow creates it (advanced mode)."""
    return MockConfigEntry(
        domain=DOMAIN,
        title=f"MPPT {SERIAL}",
        unique_id=SERIAL,
        data={
            CONF_DEVICE: DeviceKind.VEDIRECT.value,
            CONF_PORT: "",
            CONF_SIMULATED: "mppt",
            CONF_SERIAL_NUMBER: SERIAL,
            "family": "mppt",
        },
    )


def anchor_clock(monkeypatch: pytest.MonkeyPatch, scale: float, time_of_day: float) -> None:
    """Let the shared demo clock stand at ``time_of_day`` now (UTC midnight at unix time 0)."""
    clock = DayClock(scale=scale, wall=time_of_day, monotonic=time.monotonic())
    monkeypatch.setattr(day_clock, "_clocks", {scale: clock})


def pv_watts(hass: HomeAssistant) -> float | None:
    value = state_value(hass, PV_POWER)
    return None if value in (None, "unknown", "unavailable") else float(value)


async def test_a_simulated_mppt_lives_a_two_minute_day(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DAY_MINUTES_ENV, "2")

    # Sunrise: from 05:36, 12 simulated minutes per block; the sun is up after 06:00.
    anchor_clock(monkeypatch, 720.0, 5.6 * HOUR)
    entry = simulated_mppt()
    await setup_entry(hass, entry)
    simulator = entry.runtime_data.simulator
    assert simulator is not None
    assert 5.6 * HOUR <= simulator.time_of_day < 5.6 * HOUR + 900  # setup, perhaps a block
    await wait_for(hass, lambda: pv_watts(hass) == 0.0)
    before = simulator.time_of_day
    assert before < 6 * HOUR
    await wait_for(hass, lambda: (pv_watts(hass) or 0.0) > 0.0, timeout=6.0)
    assert simulator.time_of_day > 6 * HOUR
    # One block per real second, 720 simulated seconds each: the sun moved hours, not seconds.
    assert simulator.time_of_day - before >= 720
    assert state_value(hass, "sensor.mppt_hq2203days1_charge_state") == "bulk"
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()

    # Sunset: from 17:36 the panel still gives power, after 18:00 none.
    anchor_clock(monkeypatch, 720.0, 17.6 * HOUR)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    await wait_for(hass, lambda: (pv_watts(hass) or 0.0) > 0.0, timeout=3.0)
    await wait_for(hass, lambda: pv_watts(hass) == 0.0, timeout=6.0)
    simulator = entry.runtime_data.simulator
    assert simulator is not None
    assert simulator.time_of_day > 18 * HOUR
    assert state_value(hass, "sensor.mppt_hq2203days1_charge_state") == "off"
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()


async def test_without_the_setting_the_mppt_starts_mid_morning(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DAY_MINUTES_ENV, raising=False)
    entry = simulated_mppt()
    await setup_entry(hass, entry)
    simulator = entry.runtime_data.simulator
    assert simulator is not None
    await wait_for(hass, lambda: (pv_watts(hass) or 0.0) > 0.0)
    # A real day: 1 s blocks move the simulated 10:00 on by about a second each.
    assert 10 * HOUR <= simulator.time_of_day < 10 * HOUR + 30
    assert await hass.config_entries.async_unload(entry.entry_id)
