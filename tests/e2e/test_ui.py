"""Try the integration as a user would: in Home Assistant's own web UI, in headless Chromium.

Home Assistant runs as ``scripts/develop`` runs it (the whole simulated system, the shipped system
dashboard and energy settings installed). Each test logs in through the real login page, clicks
where a user clicks and checks what a user would look at.
The screenshots go to ``.e2e/screenshots/``; ``E2E_SCREENSHOTS=docs/screenshots`` refreshes the
README's images.
"""

from __future__ import annotations

from pathlib import Path
import re
from typing import TYPE_CHECKING

import pytest

from .conftest import DemoSite, missing_requirement

if (_missing := missing_requirement()) is not None:
    pytest.skip(f"browser tests need Chromium and Playwright: {_missing}", allow_module_level=True)

from playwright.sync_api import expect

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = [pytest.mark.timeout(150)]

VALUE_TIMEOUT_MS = 20_000  # live values: the simulators send every second
SIMULATED_MENU_ENTRY = "Simulated device (try without hardware)"
SIMULATED_MPPT_OPTION = "Victron SmartSolar MPPT 75|15 solar charger (VE.Direct)"
# A number (the frontend groups thousands with commas) followed by its unit.
NUMBER = r"-?\d[\d,]*(\.\d+)?"


def log_in(page: Page, site: DemoSite) -> None:
    """Open Home Assistant, which sends a new browser to its login page, and log in."""
    page.goto(site.base_url)
    page.wait_for_url(re.compile(r"/auth/authorize\?"))
    page.get_by_role("textbox", name="Username").fill(site.username)
    page.get_by_role("textbox", name="Password").fill(site.password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/lovelace/"))


def open_devices_and_services(page: Page) -> None:
    """Sidebar → Settings → Devices & services."""
    page.get_by_role("option", name="Settings", exact=True).first.click()
    page.wait_for_url(re.compile(r"/config/dashboard$"))
    page.get_by_role("menuitem", name="Devices & services").click()
    page.wait_for_url(re.compile(r"/config/integrations/dashboard$"))


def open_device(page: Page, entry_title: str) -> None:
    """Devices & services → SMA Victron Bridge → the device of the entry titled ``entry_title``."""
    open_devices_and_services(page)
    page.get_by_role("link", name="SMA Victron Bridge").click()
    page.wait_for_url(re.compile(r"/config/integrations/integration/sma_victron_bridge"))
    # The entry's row element is the host; its list-item role sits in the host's shadow root,
    # apart from the slotted title and links, so the row is found by its tag.
    entry = page.locator("ha-md-list-item").filter(has_text=entry_title)
    entry.get_by_role("link", name="1 device").click()
    page.wait_for_url(re.compile(r"/config/devices/device/"))


def entity_row(page: Page, name: str) -> Locator:
    """The row of the entity called ``name`` on a device page."""
    return page.locator("hui-generic-entity-row").filter(has=page.get_by_text(name, exact=True))


def expect_value(row: Locator, value: str) -> None:
    """Wait until ``row`` shows the regular expression ``value`` as a word of its own.

    The row's text is its name and its state; the names checked here hold neither digits nor the
    state words, so a match is the state.
    """
    expect(row).to_have_text(re.compile(rf"(^|\s)({value})(\s|$)"), timeout=VALUE_TIMEOUT_MS)


def test_add_simulated_mppt_through_the_ui(
    page: Page, demo_site: DemoSite, screenshots: Path
) -> None:
    """Add integration → SMA Victron Bridge → Simulated device → MPPT ends in success."""
    log_in(page, demo_site)
    open_devices_and_services(page)
    page.get_by_role("button", name="Add integration").click()
    page.get_by_role("textbox", name="Search for a brand name").fill("SMA Victron Bridge")
    page.locator("ha-integration-list-item").filter(has_text="SMA Victron Bridge").click()

    page.get_by_text(SIMULATED_MENU_ENTRY, exact=True).click()
    expect(page.get_by_role("heading", name=SIMULATED_MENU_ENTRY)).to_be_visible()
    device = page.get_by_role("combobox", name="Simulated device")
    device.click()
    page.get_by_role("option", name=SIMULATED_MPPT_OPTION, exact=True).click()
    expect(device).to_have_value(SIMULATED_MPPT_OPTION)
    page.get_by_role("button", name="Submit").click()

    expect(page.get_by_role("heading", name="Success!")).to_be_visible()
    expect(
        page.get_by_text(re.compile(r"Created configuration for Simulated SmartSolar MPPT"))
    ).to_be_visible()
    page.screenshot(path=screenshots / "setup-dialog.png", animations="disabled")
    page.get_by_role("button", name="Finish").click()
    expect(page.get_by_role("heading", name="Success!")).to_be_hidden()


def test_device_page_shows_live_values(page: Page, demo_site: DemoSite, screenshots: Path) -> None:
    """The simulated BMV's page lists its sensors with values and units."""
    log_in(page, demo_site)
    open_device(page, "Simulated BMV-712")
    expect(page.get_by_text("Victron Energy")).to_be_visible()
    expect_value(entity_row(page, "Battery voltage"), rf"{NUMBER}\s?V")
    expect_value(entity_row(page, "State of charge"), rf"{NUMBER}\s?%")
    page.screenshot(path=screenshots / "device-page.png", animations="disabled")


def test_sunny_island_page_shows_charge_state(
    page: Page, demo_site: DemoSite, screenshots: Path
) -> None:
    """The simulated Sunny Island's page shows the charge cycle's state, by name."""
    log_in(page, demo_site)
    open_device(page, "Simulated Sunny Island")
    charge_state = entity_row(page, "Charge state")
    expect_value(charge_state, "Bulk|Absorption|Float|Off")
    expect_value(entity_row(page, "Charge voltage limit"), rf"{NUMBER}\s?V")
    charge_state.scroll_into_view_if_needed()
    page.screenshot(path=screenshots / "sunny-island.png", animations="disabled")


def test_energy_dashboard_shows_the_sources(
    page: Page, demo_site: DemoSite, screenshots: Path
) -> None:
    """Sidebar → Energy: the shipped settings (dashboards/energy.json) name the demo's devices."""
    log_in(page, demo_site)
    page.get_by_role("option", name="Energy", exact=True).first.click()
    page.wait_for_url(re.compile(r"/energy"))
    expect(page.get_by_role("heading", name="Solar production")).to_be_visible()
    sources = page.get_by_role("table", name="Energy sources")
    for name in (
        r"SB 3000TL-21 \d+ yield",  # the Sunny Boy's imported history, named after its entry
        "Solar Charger Yield total",
        "SmartSolar Yield total",
        "Battery BMS Discharged energy",
        "Battery BMS Charged energy",
        "Sunny Island Grid import",
        "Battery total",
    ):
        expect(sources.get_by_role("row", name=re.compile(name))).to_be_visible()
    page.screenshot(path=screenshots / "energy-dashboard.png", animations="disabled")


def test_shipped_dashboard_shows_the_system(
    page: Page, demo_site: DemoSite, screenshots: Path
) -> None:
    """Sidebar → Off-grid system: dashboards/off_grid_system.yaml, every card finds its entity."""
    log_in(page, demo_site)
    page.get_by_role("option", name="Off-grid system", exact=True).first.click()
    page.wait_for_url(re.compile(r"/off-grid/system"))
    expect(page.get_by_text("Power now")).to_be_visible()
    expect(page.get_by_text("Charge control")).to_be_visible()
    charge_state = page.locator("hui-sensor-entity-row").filter(
        has=page.get_by_text("Charge state", exact=True)
    )
    expect_value(charge_state, "Bulk|Absorption|Float|Off")
    gauge = page.locator("hui-gauge-card")
    expect(gauge).to_have_text(re.compile(rf"{NUMBER}\s?%"), timeout=VALUE_TIMEOUT_MS)
    # A card whose entity (or statistic) does not exist renders a warning element instead of
    # its value. Allow the time the values need to arrive, as above.
    warnings = page.locator("hui-warning")
    try:
        expect(warnings).to_have_count(0, timeout=VALUE_TIMEOUT_MS)
    except AssertionError:
        raise AssertionError(f"cards without their entity: {warnings.all_inner_texts()}") from None
    page.screenshot(path=screenshots / "dashboard.png", animations="disabled")
