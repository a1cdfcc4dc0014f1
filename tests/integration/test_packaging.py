"""What HACS and Home Assistant read from the package: brand images, versions, licence."""

from __future__ import annotations

import json
from pathlib import Path

from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

ROOT = Path(__file__).parents[2]
PACKAGE = ROOT / "custom_components" / "sma_victron_bridge"


async def test_home_assistant_serves_our_brand_icon(
    hass: HomeAssistant, hass_client: ClientSessionGenerator
) -> None:
    # From 2026.3 Home Assistant serves a custom integration's brand/ images itself; every
    # other image (logo, @2x, dark) falls back to icon.png.
    assert await async_setup_component(hass, "brands", {})
    client = await hass_client()
    shipped = (PACKAGE / "brand" / "icon.png").read_bytes()
    for image in ("icon.png", "logo.png", "icon@2x.png", "dark_icon.png"):
        response = await client.get(
            f"/api/brands/integration/sma_victron_bridge/{image}?placeholder=no"
        )
        assert response.status == 200, image
        assert await response.read() == shipped, image


def test_minimum_version_and_licence_agree() -> None:
    hacs = json.loads((ROOT / "hacs.json").read_text())
    assert hacs["homeassistant"] == "2026.6.0"
    pinned = (ROOT / "requirements_min.txt").read_text()
    assert f"homeassistant=={hacs['homeassistant']}\n" in pinned
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert 'license = { text = "MIT" }' in (ROOT / "pyproject.toml").read_text()
