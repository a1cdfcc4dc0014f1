"""Fixtures of the browser tests: a real Home Assistant in a subprocess and a headless Chromium.

Home Assistant is started and provisioned exactly as ``scripts/develop`` does it (the same
functions, imported from that script), in a temporary configuration on a free port, once per
module. Each test then gets a fresh Chromium profile and has to log in through the real login
page, so no test leans on another one's browser state.

Two things of the Home Assistant test harness shape this file: it blocks TCP sockets unless a test
asks for ``socket_enabled``, and it fails tests that leave an asyncio loop, task or thread behind.
So the provisioning runs on a private event loop that is closed before Playwright starts, and
Playwright's sync API (which marks its own loop as running between calls) lives only inside one
test's fixture.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator, Iterator
import contextlib
from dataclasses import dataclass
import functools
import importlib.util
import os
from pathlib import Path
import subprocess
import sys
from types import ModuleType
from typing import IO, TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from _pytest.terminal import TerminalReporter
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = "sma_victron_bridge"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT_WIDTH, VIEWPORT_HEIGHT = 1280, 900  # the README's screenshots are this size
# Screenshots go to the ignored .e2e/ folder; E2E_SCREENSHOTS=docs/screenshots refreshes the
# README's committed images.
SCREENSHOTS = ROOT / os.environ.get("E2E_SCREENSHOTS", ".e2e/screenshots")
FAILURES = ROOT / ".e2e" / "failures"  # the page as it was when a test failed
CALL_REPORT = pytest.StashKey["pytest.TestReport"]()
START_TIMEOUT = 90.0  # seconds until Home Assistant answers and the demo devices are loaded
STOP_TIMEOUT = 30.0  # seconds Home Assistant gets to shut down before it is killed
UI_TIMEOUT_MS = 20_000  # every Playwright action and navigation


def missing_requirement() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} not found (scripts/e2e_deps installs Debian's chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (scripts/e2e_deps installs it)"
    return None


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    """Say plainly, also without ``-rs``, that the browser tests were skipped and why."""
    reason = missing_requirement()
    skipped = terminalreporter.stats.get("skipped", [])
    if reason and any("tests/e2e" in str(getattr(report, "nodeid", "")) for report in skipped):
        terminalreporter.write_line(f"browser tests skipped: {reason}", yellow=True)


@functools.cache
def develop() -> ModuleType:
    """``scripts/develop.py`` as a module (``scripts/`` is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "sma_victron_bridge_develop", ROOT / "scripts" / "develop.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True, slots=True)
class DemoSite:
    """Where the provisioned Home Assistant answers and who may log in."""

    base_url: str
    username: str
    password: str


class HomeAssistantServer:
    """One Home Assistant subprocess, started on first use and stopped at the end of the module."""

    def __init__(self, workdir: Path) -> None:
        """Keep configuration and log in ``workdir``; nothing starts yet."""
        self.config = workdir / "config"
        self.log_path = workdir / "home-assistant.log"
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._site: DemoSite | None = None
        self._failure: str | None = None

    def site(self) -> DemoSite:
        """Start and provision Home Assistant unless that happened (or failed) already."""
        if self._failure is not None:
            pytest.fail(self._failure)
        if self._site is None:
            try:
                self._site = self._start()
            except Exception as err:
                self._failure = f"Home Assistant did not come up: {err!r}\n{self.log_tail()}"
                pytest.fail(self._failure)
        return self._site

    def _start(self) -> DemoSite:
        dev = develop()
        port: int = dev.free_port()
        base = f"http://127.0.0.1:{port}"
        dev.prepare_config(self.config, port)
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "homeassistant", "--config", str(self.config), "--skip-pip"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        run_private_loop(self._provision(base))
        return DemoSite(base, dev.DEMO_USER, dev.DEMO_PASSWORD)

    async def _provision(self, base: str) -> None:
        """develop.py's provisioning, bounded, and cut short when Home Assistant exits."""
        assert self._process is not None
        async with asyncio.timeout(START_TIMEOUT):
            provision = asyncio.ensure_future(self._provision_steps(base))
            exited = asyncio.ensure_future(self._exited())
            try:
                done, _ = await asyncio.wait(
                    {provision, exited}, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for task in (provision, exited):
                    task.cancel()
                await asyncio.gather(provision, exited, return_exceptions=True)
        if provision not in done:
            raise RuntimeError(
                f"Home Assistant exited during start-up (exit code {self._process.returncode})"
            )
        provision.result()

    async def _provision_steps(self, base: str) -> None:
        # Devices, device names and the shipped dashboards, as scripts/develop.
        await develop().provision(base, START_TIMEOUT)

    async def _exited(self) -> None:
        assert self._process is not None
        while self._process.poll() is None:
            await asyncio.sleep(0.5)

    def log_tail(self, lines: int = 40) -> str:
        """The end of Home Assistant's log, for failure messages."""
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace").splitlines()
            return "\n".join(["--- Home Assistant log (end) ---", *text[-lines:]])
        return "(no Home Assistant log)"

    def stop(self) -> None:
        """Terminate Home Assistant and wait for it (bounded), killing it if it hangs."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        if self._log is not None:
            self._log.close()


def run_private_loop[T](coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on a loop of its own that never becomes the thread's current loop."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


@pytest.fixture(scope="module")
def home_assistant_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[HomeAssistantServer]:
    """The module's Home Assistant; stopped after the module's last test."""
    server = HomeAssistantServer(tmp_path_factory.mktemp("home-assistant"))
    yield server
    server.stop()


@pytest.fixture
def demo_site(home_assistant_server: HomeAssistantServer, socket_enabled: None) -> DemoSite:
    """The running, provisioned Home Assistant (sockets are needed to provision it)."""
    return home_assistant_server.site()


@pytest.fixture
def page(demo_site: DemoSite, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page in a fresh headless Chromium profile that may only talk to Home Assistant.

    When the test fails, what the page showed at that moment is saved to
    ``.e2e/failures/<test>.png``.
    """
    from playwright.sync_api import sync_playwright

    base = demo_site.base_url

    def elsewhere(url: str) -> bool:
        return not url.startswith(base)

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": VIEWPORT_WIDTH, "height": VIEWPORT_HEIGHT},
            locale="en-US",
        )
        try:
            context.set_default_timeout(UI_TIMEOUT_MS)
            context.set_default_navigation_timeout(UI_TIMEOUT_MS)
            # Brand icons and the like come from the internet: refuse them at once, so that
            # a machine without network access renders the same pages just as fast.
            context.route(elsewhere, lambda route: route.abort())
            page = context.pages[0] if context.pages else context.new_page()
            yield page
            report = request.node.stash.get(CALL_REPORT, None)
            if report is not None and report.failed:
                FAILURES.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(Exception):
                    page.screenshot(path=FAILURES / f"{request.node.name}.png")
        finally:
            context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep the outcome of each test's call on the test, for the page fixture's teardown."""
    report: pytest.TestReport = yield
    if report.when == "call":
        item.stash[CALL_REPORT] = report
    return report


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """The folder of the README's screenshots."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
