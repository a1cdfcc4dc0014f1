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
from typing import TYPE_CHECKING, Any

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML ships no types; HA depends on it

from .conftest import ROOT, DemoSite, missing_requirement

if (_missing := missing_requirement()) is not None:
    pytest.skip(f"browser tests need Chromium and Playwright: {_missing}", allow_module_level=True)

from playwright.sync_api import expect

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Locator, Page

pytestmark = [pytest.mark.timeout(150)]

VALUE_TIMEOUT_MS = 20_000  # live values: the simulators send every second
SETTLE_MS = 1_500  # entity icons, the activity card and charts render after the values
SIMULATED_MENU_ENTRY = "Simulated device (try without hardware)"
BANK_MENU_ENTRY = "Battery bank (several packs, each with its own BMS, as one battery)"
SIMULATED_MPPT_OPTION = "Victron SmartSolar MPPT 75|15 solar charger (VE.Direct)"
# The Sunny Boy's imported history, named after its entry ("Simulated SB 3000TL-21 <serial>").
SUNNY_BOY_HISTORY = r"(Simulated )?SB 3000TL-21 \d+ yield"
SHIPPED_DASHBOARD = ROOT / "dashboards" / "off_grid_system.yaml"
# A number (the frontend groups thousands with commas) followed by its unit.
NUMBER = r"-?\d[\d,]*(\.\d+)?"


def log_in(page: Page, site: DemoSite) -> None:
    """Open Home Assistant, which sends a new browser to its login page, and log in."""
    page.goto(site.base_url)
    page.wait_for_url(re.compile(r"/auth/authorize\?"))
    page.get_by_role("textbox", name="Username").fill(site.username)
    page.get_by_role("textbox", name="Password").fill(site.password)
    page.get_by_role("button", name="Log in").click()
    # The default dashboard: HA 2026's generated overview, or a Lovelace dashboard.
    page.wait_for_url(re.compile(r"/(home|lovelace)/"))


def open_sidebar_panel(page: Page, name: str) -> None:
    """Click the sidebar's link to the panel called ``name``.

    A link's name also holds its badge (Settings shows the count of repairs and updates), so
    ``name`` has to be a word of its own in it.
    """
    sidebar = page.locator("ha-sidebar")
    sidebar.get_by_role("link", name=re.compile(rf"(^|\s){re.escape(name)}(\s|$)")).click()


def open_devices_and_services(page: Page) -> None:
    """Sidebar → Settings → Devices & services."""
    open_sidebar_panel(page, "Settings")
    page.wait_for_url(re.compile(r"/config/dashboard$"))
    # Each entry of the settings page is a link named by its title and its description.
    page.get_by_role("link", name=re.compile(r"^Devices & services\b")).click()
    page.wait_for_url(re.compile(r"/config/integrations/dashboard$"))


def start_adding_the_integration(page: Page) -> None:
    """Devices & services → Add integration → SMA Victron Bridge: its flow's first step opens."""
    open_devices_and_services(page)
    page.get_by_role("button", name="Add integration").click()
    page.get_by_placeholder("Search for a brand name").fill("SMA Victron Bridge")
    page.get_by_role("button", name="SMA Victron Bridge", exact=True).click()


def open_device(page: Page, entry_title: str) -> None:
    """Devices & services → SMA Victron Bridge → the device of the entry titled ``entry_title``."""
    open_devices_and_services(page)
    page.get_by_role("link", name="SMA Victron Bridge").click()
    page.wait_for_url(re.compile(r"/config/integrations/integration/sma_victron_bridge"))
    # Each entry is a card headed by its title that lists the entry's devices; a simulated
    # entry has exactly one.
    entry = page.locator("ha-config-entry-row").filter(has_text=entry_title)
    devices = entry.locator("ha-config-entry-device-row")
    expect(devices).to_have_count(1)
    devices.get_by_role("listitem").click()
    page.wait_for_url(re.compile(r"/config/devices/device/"))


def shipped_dashboard() -> dict[str, Any]:
    """dashboards/off_grid_system.yaml, as the tests' Home Assistant was given it."""
    config: dict[str, Any] = yaml.safe_load(SHIPPED_DASHBOARD.read_text())
    return config


def config_nodes(node: object) -> Iterator[dict[str, Any]]:
    """Every mapping in a dashboard configuration: views, cards, nested cards, entity rows."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from config_nodes(value)
    elif isinstance(node, list):
        for item in node:
            yield from config_nodes(item)


def entity_references(config: dict[str, Any]) -> Iterator[str]:
    """The entity (or statistic) ids that the dashboard's cards and rows name."""
    for node in config_nodes(config):
        if isinstance(entity := node.get("entity"), str):
            yield entity
        for item in node.get("entities") or ():
            if isinstance(item, str):
                yield item


def statistics_series(config: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Card title and series name of each statistic (an id with a colon, no entity) graphed."""
    for node in config_nodes(config):
        if node.get("type") == "statistics-graph":
            for item in node["entities"]:
                if ":" in item["entity"]:
                    yield node["title"], item["name"]


def take_screenshot(page: Page, path: Path) -> None:
    """Save what the page shows once what loads after the values (icons, charts) has arrived."""
    page.wait_for_timeout(SETTLE_MS)
    page.screenshot(path=path, animations="disabled")


def flow_title(page: Page) -> Locator:
    """The title of the config flow dialog's current step (text in its header, not a heading)."""
    return page.locator("dialog-data-entry-flow [slot=headerTitle]")


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
    start_adding_the_integration(page)

    flow = page.locator("dialog-data-entry-flow")
    page.get_by_text(SIMULATED_MENU_ENTRY, exact=True).click()
    expect(flow_title(page)).to_have_text(SIMULATED_MENU_ENTRY)
    device = page.get_by_label("Simulated device")
    device.click()
    page.get_by_role("menuitem", name=SIMULATED_MPPT_OPTION, exact=True).click()
    expect(device).to_contain_text(SIMULATED_MPPT_OPTION)
    page.get_by_role("button", name="Submit").click()

    # Success: HA offers to name the new device and give it an area.
    expect(flow_title(page)).to_have_text("Name and assign")
    expect(flow.get_by_text("SmartSolar MPPT 75|15", exact=True)).to_be_visible()
    expect(flow.get_by_text("Victron Energy", exact=True)).to_be_visible()
    expect(page.get_by_role("textbox", name="Device name")).to_have_value(
        re.compile(r"^Simulated SmartSolar MPPT 75\|15 HQ\w+$")
    )
    take_screenshot(page, screenshots / "setup-dialog.png")
    page.get_by_role("button", name="Skip and finish").click()
    expect(flow_title(page)).to_be_hidden()


def test_device_page_shows_live_values(page: Page, demo_site: DemoSite, screenshots: Path) -> None:
    """The simulated BMV's page lists its sensors with values and units."""
    log_in(page, demo_site)
    open_device(page, "Simulated BMV-712")
    expect(page.get_by_text("Victron Energy")).to_be_visible()
    expect_value(entity_row(page, "Battery voltage"), rf"{NUMBER}\s?V")
    expect_value(entity_row(page, "State of charge"), rf"{NUMBER}\s?%")
    take_screenshot(page, screenshots / "device-page.png")


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
    take_screenshot(page, screenshots / "sunny-island.png")


def test_energy_dashboard_shows_the_sources(
    page: Page, demo_site: DemoSite, screenshots: Path
) -> None:
    """Sidebar → Energy: the shipped settings (dashboards/energy.json) name the demo's devices.

    The dashboard's totals list a source only once it has statistics: the Sunny Boy's imported
    history at once, the live sensors after Home Assistant's first five-minute statistics run.
    Its energy configuration (the dashboard's edit button) names every configured source.
    """
    log_in(page, demo_site)
    open_sidebar_panel(page, "Energy")
    page.wait_for_url(re.compile(r"/energy/electricity"))
    # The card titles are plain text in HA 2026.10 (only "Totals" is a heading).
    expect(page.get_by_text("Solar production", exact=True)).to_be_visible()
    sources = page.get_by_role("table", name="Energy sources")
    for name in (
        SUNNY_BOY_HISTORY,
        "Solar total",
        "Battery total",
        "Grid total",
    ):
        expect(sources.get_by_role("row", name=re.compile(name))).to_be_visible()
    take_screenshot(page, screenshots / "energy-dashboard.png")

    page.get_by_role("button", name="Edit dashboard").click()
    page.wait_for_url(re.compile(r"/config/energy/electricity"))
    for section, names in (
        ("Grid connections", ["Sunny Island Grid import", "Sunny Island Grid export"]),
        (
            "Solar panels",
            [SUNNY_BOY_HISTORY, "Solar Charger Yield total", "SmartSolar Yield total"],
        ),
        ("Home battery storage", ["Battery BMS Discharged energy", "Battery BMS Charged energy"]),
    ):
        expect(page.get_by_role("heading", name=section, exact=True)).to_be_visible()
        for name in names:
            expect(page.get_by_text(re.compile(rf"^{name}$"))).to_be_visible()


def test_shipped_dashboard_shows_the_system(
    page: Page, demo_site: DemoSite, screenshots: Path
) -> None:
    """Sidebar → Off-grid system: dashboards/off_grid_system.yaml, every card finds its entity."""
    log_in(page, demo_site)
    open_sidebar_panel(page, "Off-grid system")
    page.wait_for_url(re.compile(r"/off-grid/system"))
    expect(page.get_by_text("Power now")).to_be_visible()
    expect(page.get_by_text("Charge control")).to_be_visible()
    charge_state = page.locator("hui-sensor-entity-row").filter(
        has=page.get_by_text("Charge state", exact=True)
    )
    expect_value(charge_state, "Bulk|Absorption|Float|Off")
    gauge = page.locator("hui-gauge-card")
    expect(gauge).to_have_text(re.compile(rf"{NUMBER}\s?%"), timeout=VALUE_TIMEOUT_MS)
    # A card or row whose entity does not exist renders a warning ("Entity not found") instead
    # of its value, a glance item a warning element, and a card whose type or options the
    # frontend rejects an error card. Allow the time the values need to arrive, as above.
    problems = page.locator("hui-warning, hui-warning-element, hui-error-card")
    try:
        expect(problems).to_have_count(0, timeout=VALUE_TIMEOUT_MS)
    except AssertionError:
        # A warning element keeps its message in a property, the others in their text.
        texts = problems.evaluate_all(
            "els => els.map(e => e.label || e.textContent.trim() || e.localName)"
        )
        raise AssertionError(f"cards without their entity or with errors: {texts}") from None
    # Graph cards leave out what they find no history or statistics for (a live sensor has
    # statistics only after Home Assistant's first five-minute run), and a timeline's rows are
    # drawn on a canvas: every entity the dashboard names must be one the frontend knows, and
    # each statistic that is no entity's (the Sunny Boy's imported history) must be graphed.
    shipped = shipped_dashboard()
    entity_ids = sorted({ref for ref in entity_references(shipped) if ":" not in ref})
    unknown = page.evaluate(
        "ids => ids.filter(id => !(id in document.querySelector('home-assistant').hass.states))",
        entity_ids,
    )
    assert unknown == [], f"entities of the shipped dashboard that do not exist: {unknown}"
    for title, name in statistics_series(shipped):
        card = page.locator("hui-statistics-graph-card").filter(
            has=page.get_by_role("heading", name=title)
        )
        # The legend names the series, followed by its statistic type while it is the only one.
        series = re.compile(rf"^{re.escape(name)}( \(\w+\))?$")
        expect(card.get_by_role("button", name=series)).to_be_visible(timeout=VALUE_TIMEOUT_MS)
    take_screenshot(page, screenshots / "dashboard.png")


def test_add_a_battery_bank_through_the_ui(
    page: Page, demo_site: DemoSite, screenshots: Path
) -> None:
    """Add device → Battery bank: the demo's JBD and JK packs become one battery with a page."""
    log_in(page, demo_site)
    start_adding_the_integration(page)

    flow = page.locator("dialog-data-entry-flow")
    flow.get_by_text(BANK_MENU_ENTRY, exact=True).click()
    expect(flow_title(page)).to_have_text("Battery bank")
    # The packs are a list of checkboxes, one per battery entry (entry titles).
    packs = flow.locator("ha-checkbox")
    jbd = packs.filter(has_text=re.compile(r"^\s*Simulated JBD"))
    jk = packs.filter(has_text=re.compile(r"^\s*Simulated JK"))
    jbd.click()
    page.get_by_role("button", name="Submit").click()
    expect(flow.get_by_text("Pick at least two packs.")).to_be_visible()
    jk.click()
    take_screenshot(page, screenshots / "battery-bank-setup.png")
    page.get_by_role("button", name="Submit").click()

    expect(flow_title(page)).to_have_text("Name and assign")
    expect(flow.get_by_text("Battery bank, 16S LiFePO4", exact=True)).to_be_visible()
    page.get_by_role("button", name="Skip and finish").click()
    expect(flow_title(page)).to_be_hidden()

    open_device(page, "Battery bank")
    expect_value(entity_row(page, "Packs online"), "2")
    expect_value(entity_row(page, "State of charge"), rf"{NUMBER}\s?%")
    expect_value(entity_row(page, "Lowest cell voltage"), rf"{NUMBER}\s?V")
    expect_value(entity_row(page, "Charge current limit"), rf"{NUMBER}\s?A")
    take_screenshot(page, screenshots / "battery-bank.png")
