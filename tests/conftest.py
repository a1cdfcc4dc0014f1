"""Shared fixtures.

Importing our package here, before any ``hass`` fixture runs, makes Home Assistant's loader find
this repository's ``custom_components`` rather than the test harness's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import custom_components.sma_victron_bridge  # noqa: F401


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: Any) -> None:
    """Let every Home Assistant test load this custom integration."""


@pytest.fixture
def expected_lingering_timers() -> bool:
    """HA 2026.6's Bluetooth scanner leaves its device-expiry timer behind when it stops.

    Home Assistant's own timer (``BaseHaScanner._async_expire_devices_schedule_next``), fixed in
    later releases: tolerated only on the oldest supported release, where the second test leg runs.
    """
    from homeassistant.const import MAJOR_VERSION, MINOR_VERSION

    return (MAJOR_VERSION, MINOR_VERSION) < (2026, 7)


DEPRECATION_MARKERS = (
    "Detected that custom integration 'sma_victron_bridge'",
    "was called from sma_victron_bridge",
    "integration 'sma_victron_bridge' which is deprecated",
)


@pytest.fixture(autouse=True)
def no_deprecation_reports(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail any test during which Home Assistant reports this integration using a deprecated API.

    HA logs these (``report_usage``) rather than raising until the release that breaks the call,
    so only the log shows that the integration would stop working on a newer release.
    """
    yield
    reports = [
        record.getMessage()
        for phase in ("setup", "call", "teardown")
        for record in caplog.get_records(phase)
        if any(marker in record.getMessage() for marker in DEPRECATION_MARKERS)
    ]
    assert not reports, f"Home Assistant reported deprecated use: {reports}"
