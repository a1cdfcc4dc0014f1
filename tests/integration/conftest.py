"""Fixtures: simulated VE.Direct devices on real PTYs, and entries pointing at them."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.sma_victron_bridge.const import (
    CONF_DEVICE,
    CONF_PORT,
    CONF_SERIAL_NUMBER,
    DOMAIN,
)
from custom_components.sma_victron_bridge.devices.vedirect import runtime as vedirect_device
from custom_components.sma_victron_bridge.simulators.vedirect import VeDirectSimulator

MPPT_SERIAL = "HQ2101TEST1"
BMV_SERIAL = "HQ2102TEST2"


@pytest.fixture(autouse=True)
def short_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Silent-device cases wait this long; keep it short so the suite stays quick."""
    monkeypatch.setattr(vedirect_device, "CONNECT_TIMEOUT", 2.0)


@pytest.fixture
async def mppt_sim() -> AsyncGenerator[VeDirectSimulator]:
    """A SmartSolar MPPT sending a block every 0.2 s on a PTY."""
    sim = VeDirectSimulator("mppt", serial_number=MPPT_SERIAL, interval=0.2, seed=1)
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def bmv_sim() -> AsyncGenerator[VeDirectSimulator]:
    """A BMV-712 sending its two blocks every 0.2 s on a PTY."""
    sim = VeDirectSimulator("bmv", serial_number=BMV_SERIAL, interval=0.2, seed=2)
    await sim.start()
    yield sim
    await sim.stop()


def vedirect_entry(
    sim: VeDirectSimulator, family: str, options: dict[str, Any] | None = None
) -> MockConfigEntry:
    """A config entry for a simulator's port, as the config flow would create it."""
    return MockConfigEntry(
        domain=DOMAIN,
        title=f"{family} {sim.serial_number}",
        unique_id=sim.serial_number,
        data={
            CONF_DEVICE: "vedirect",
            CONF_PORT: sim.port,
            CONF_SERIAL_NUMBER: sim.serial_number,
            "family": family,
        },
        options=options or {},
    )
