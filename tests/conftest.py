"""Shared fixtures.

Importing our package here, before any ``hass`` fixture runs, makes Home Assistant's loader find
this repository's ``custom_components`` rather than the test harness's own.
"""

from __future__ import annotations

from typing import Any

import pytest

import custom_components.sma_victron_bridge  # noqa: F401


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: Any) -> None:
    """Let every Home Assistant test load this custom integration."""
