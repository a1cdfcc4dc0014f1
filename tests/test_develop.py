"""scripts/develop against a real Home Assistant: restartable on the same config, stoppable early.

A second start on a config that is onboarded and provisioned used to wait five minutes for an
onboarding API that Home Assistant no longer serves, and a Ctrl+C during that wait stopped Home
Assistant but not the script. These tests start the script as a user does, in a temporary config
on a free port; they are skipped where Home Assistant cannot run.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
import signal
import socket
import subprocess
import sys
import time

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEVELOP = ROOT / "scripts" / "develop.py"
DOMAIN = "sma_victron_bridge"
RUN_TIMEOUT = 300.0  # seconds one start may take on a slow, shared machine
STOP_TIMEOUT = 60.0  # seconds the script gets to stop Home Assistant and exit after a signal

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        importlib.util.find_spec("homeassistant") is None, reason="Home Assistant not installed"
    ),
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def command(config: Path, port: int, *extra: str) -> list[str]:
    """scripts/develop as the shell wrapper runs it, on ``config`` and ``port``."""
    return [sys.executable, str(DEVELOP), "--config", str(config), "--port", str(port), *extra]


def provision_once(config: Path, port: int) -> float:
    """Start, provision and stop Home Assistant once; the seconds it took."""
    started = time.monotonic()
    completed = subprocess.run(
        command(config, port, "--provision-only", "--timeout", str(RUN_TIMEOUT)),
        cwd=ROOT,
        capture_output=True,
        timeout=RUN_TIMEOUT + STOP_TIMEOUT,
        check=False,
    )
    elapsed = time.monotonic() - started
    output = (completed.stdout + completed.stderr).decode(errors="replace")
    assert completed.returncode == 0, output[-4000:]
    assert "Home Assistant is running at" in output
    return elapsed


def entry_titles(config: Path) -> list[str]:
    """Titles of this integration's config entries, as Home Assistant stored them."""
    stored = json.loads((config / ".storage" / "core.config_entries").read_text())
    return sorted(
        entry["title"] for entry in stored["data"]["entries"] if entry["domain"] == DOMAIN
    )


def processes_using(config: Path) -> list[int]:
    """Ids of running processes whose command line names ``config`` (Home Assistant's)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"homeassistant" in cmdline and str(config).encode() in cmdline:
            found.append(int(proc.name))
    return found


def test_second_start_is_as_fast_as_the_first(tmp_path: Path, socket_enabled: None) -> None:
    config = tmp_path / "config"
    first = provision_once(config, free_port())
    titles = entry_titles(config)
    assert len(titles) == 7, titles
    second = provision_once(config, free_port())
    # The same devices, not a second set, and no five-minute wait for onboarding.
    assert entry_titles(config) == titles
    assert second <= 1.5 * first, (first, second)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_home_assistant_starts_stops_everything(
    tmp_path: Path, socket_enabled: None, sig: signal.Signals
) -> None:
    config = tmp_path / "config"
    process = subprocess.Popen(
        command(config, free_port(), "--timeout", str(RUN_TIMEOUT)),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Home Assistant is up as a process but does not answer HTTP yet.
        deadline = time.monotonic() + 30
        while not processes_using(config) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert processes_using(config)
        time.sleep(1.0)
        process.send_signal(sig)
        assert process.wait(timeout=STOP_TIMEOUT) == 0
        assert processes_using(config) == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
