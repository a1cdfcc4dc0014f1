"""Run a real Home Assistant with this integration and simulated devices already set up.

Prepares ``config/`` (minimal configuration, this repository's integration linked in), starts
Home Assistant with its frontend on 127.0.0.1:8123, onboards it with the demo login through its
own API, and adds the simulated devices through the integration's real config and options flows
(its "Simulated device" menu entry) — so what a newcomer sees is exactly what a user gets after
clicking through the UI.

Run again on the same ``config/`` it starts as fast as the first time: onboarding and devices
that exist are left alone, and the demo user logs in. Ctrl+C (or SIGTERM) stops Home Assistant
and the script at any moment, also while Home Assistant is still starting.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
import contextlib
import json
import os
from pathlib import Path
import re
import signal
import socket
import sys
from typing import Any

import aiohttp
import yaml  # type: ignore[import-untyped]  # PyYAML ships no types; HA depends on it

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "dashboards"
DASHBOARD_PATH = "off-grid"
SERIAL_PLACEHOLDER = "SERIAL"
DOMAIN = "sma_victron_bridge"
DEMO_USER = "demo"
DEMO_PASSWORD = "demo-password"
CLIENT_ID = "http://127.0.0.1:8123/"
DAY_MINUTES_ENV = "SMA_VICTRON_BRIDGE_DAY_MINUTES"

CONFIGURATION = """\
# Written by scripts/develop: a minimal Home Assistant for trying sma_victron_bridge.
homeassistant:
  name: Off-grid demo
  latitude: 48.2
  longitude: 16.37
  elevation: 180
  unit_system: metric
  time_zone: Europe/Vienna
  currency: EUR
  country: AT
{http}frontend:
config:
history:
logbook:
energy:
diagnostics:
system_health:
search:
logger:
  default: warning
  logs:
    custom_components.{domain}: info
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for test and soak runs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


HTTP_YAML = """\
http:
  server_host: 127.0.0.1
  server_port: {port}
"""


def http_storage(port: int) -> dict[str, Any] | None:
    """Home Assistant's stored HTTP settings for 127.0.0.1:``port``; None where it reads YAML.

    Newer Home Assistant imports ``http:`` from YAML only once, as a trial it reverts (with a
    restart) five minutes later, and ignores YAML on every later start. So a second start on
    another port would listen where the first did, and a long session would move to
    0.0.0.0:8123. Written as the confirmed ("stable") settings on every start, the port asked
    for is the one Home Assistant listens on.
    """
    try:
        from homeassistant.components.http import config as http_config
    except ImportError:
        return None
    if not hasattr(http_config, "KEY_YAML_MIGRATION_DONE"):
        return None
    stable = dict(
        http_config.HTTP_STORAGE_SCHEMA({"server_host": ["127.0.0.1"], "server_port": port})
    )
    stable.update({"created_at": "2026-01-01T00:00:00+00:00", "error": None, "error_message": None})
    return {
        "version": http_config.STORAGE_VERSION,
        "minor_version": http_config.STORAGE_MINOR_VERSION,
        "key": http_config.STORAGE_KEY,
        "data": {"stable": stable, "pending": None, "yaml_migration_done": True},
    }


def prepare_config(config: Path, port: int) -> None:
    """Create the config directory, link the integration in and mark onboarding steps done."""
    config.mkdir(parents=True, exist_ok=True)
    stored_http = http_storage(port)
    http_yaml = "" if stored_http is not None else HTTP_YAML.format(port=port)
    (config / "configuration.yaml").write_text(CONFIGURATION.format(http=http_yaml, domain=DOMAIN))
    custom = config / "custom_components"
    custom.mkdir(exist_ok=True)
    link = custom / DOMAIN
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(ROOT / "custom_components" / DOMAIN, target_is_directory=True)
    storage = config / ".storage"
    storage.mkdir(exist_ok=True)
    if stored_http is not None:
        (storage / "http").write_text(json.dumps(stored_http, indent=2))
    onboarding = storage / "onboarding"
    if not onboarding.exists():
        onboarding.write_text(
            json.dumps(
                {
                    "version": 4,
                    "minor_version": 1,
                    "key": "onboarding",
                    "data": {"done": ["core_config", "analytics", "integration"]},
                }
            )
        )


# What /api/onboarding answers once Home Assistant serves HTTP: its steps while onboarding runs,
# and 404 once onboarding is complete (the view is then no longer registered).
ONBOARDING_ANSWERS = (200, 401, 404)


async def wait_for_http(session: aiohttp.ClientSession, base: str, timeout: float) -> None:
    """Wait until Home Assistant's HTTP server answers (onboarded or not)."""
    async with asyncio.timeout(timeout):
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{base}/api/onboarding") as response:
                    if response.status in ONBOARDING_ANSWERS:
                        return
            await asyncio.sleep(0.5)


async def login(session: aiohttp.ClientSession, base: str) -> str:
    """Create the demo user if onboarding still needs one; return an access token.

    A Home Assistant that finished onboarding (a second start on the same config) no longer
    serves the onboarding API: then the demo user exists and logs in.
    """
    async with session.get(f"{base}/api/onboarding") as response:
        steps = await response.json() if response.status == 200 else None
    user_done = steps is None or any(step["step"] == "user" and step["done"] for step in steps)
    if not user_done:
        async with session.post(
            f"{base}/api/onboarding/users",
            json={
                "client_id": CLIENT_ID,
                "name": "Demo",
                "username": DEMO_USER,
                "password": DEMO_PASSWORD,
                "language": "en",
            },
        ) as response:
            response.raise_for_status()
            code = (await response.json())["auth_code"]
    else:
        code = await _login_flow(session, base)
    async with session.post(
        f"{base}/auth/token",
        data={"grant_type": "authorization_code", "code": code, "client_id": CLIENT_ID},
    ) as response:
        response.raise_for_status()
        return str((await response.json())["access_token"])


async def _login_flow(session: aiohttp.ClientSession, base: str) -> str:
    async with session.post(
        f"{base}/auth/login_flow",
        json={
            "client_id": CLIENT_ID,
            "handler": ["homeassistant", None],
            "redirect_uri": CLIENT_ID,
        },
    ) as response:
        flow = await response.json()
    async with session.post(
        f"{base}/auth/login_flow/{flow['flow_id']}",
        json={"client_id": CLIENT_ID, "username": DEMO_USER, "password": DEMO_PASSWORD},
    ) as response:
        result = await response.json()
    return str(result["result"])


class Api:
    """The few REST calls used to drive config flows as the UI does."""

    def __init__(self, session: aiohttp.ClientSession, base: str, token: str) -> None:
        """Authenticated calls against ``base``."""
        self.session = session
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}"}

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        """One JSON request; raises on HTTP errors."""
        async with self.session.request(
            method, f"{self.base}{path}", json=body, headers=self.headers
        ) as response:
            text = await response.text()
            if response.status >= 400:
                raise RuntimeError(f"{method} {path}: {response.status} {text}")
            return json.loads(text) if text else None

    async def entries(self) -> list[dict[str, Any]]:
        """Config entries of this integration."""
        result: list[dict[str, Any]] = await self.request(
            "GET", f"/api/config/config_entries/entry?domain={DOMAIN}"
        )
        return result

    async def add_simulated(self, device: str, *steps: dict[str, Any]) -> dict[str, Any]:
        """Add a simulated device as a user does: menu → "Simulated device" → ``device``.

        ``steps`` answer the forms that follow (the Sunny Island asks for its battery).
        """
        return await self.flow(
            [{"next_step_id": "simulated"}, {"simulated_device": device}, *steps]
        )

    async def flow(self, steps: list[dict[str, Any]]) -> dict[str, Any]:
        """Walk a config flow through ``steps``; the entry it created."""
        flow = await self.request("POST", "/api/config/config_entries/flow", {"handler": DOMAIN})
        result: dict[str, Any] = flow
        for step in steps:
            result = await self.request(
                "POST", f"/api/config/config_entries/flow/{flow['flow_id']}", step
            )
        if result.get("type") != "create_entry":
            raise RuntimeError(f"flow did not create an entry: {result}")
        return result

    async def set_options(self, entry_id: str, values: dict[str, Any]) -> None:
        """Run an entry's options flow with ``values``."""
        flow = await self.request(
            "POST", "/api/config/config_entries/options/flow", {"handler": entry_id}
        )
        await self.request(
            "POST", f"/api/config/config_entries/options/flow/{flow['flow_id']}", values
        )


DEVICE_NAMES = {
    "bmv": "Battery Monitor",
    "mppt": "Solar Charger",
    "bms": "Battery BMS",
    "island": "Sunny Island",
    "smartsolar": "SmartSolar",
    "sunny_boy": "Sunny Boy",
    "jk_ble": "JK BMS",
}
"""The demo's device names: the entity ids they lead to are the ones ``dashboards/`` uses."""


async def add_demo_devices(api: Api) -> dict[str, str]:
    """The whole simulated system, added through the real config and options flows.

    A BMV forwarding to an MPPT over VE.Direct, a Sunny Island run by a JBD serial BMS, a
    SmartSolar heard over Bluetooth (through a simulated proxy), a Sunny Boy on Speedwire and a
    JK BMS read over Bluetooth through a simulated connectable proxy.
    Returns the name each new entry's device gets; nothing when the devices exist already.
    """
    if await api.entries():
        return {}
    bmv = await api.add_simulated("vedirect_bmv")
    mppt = await api.add_simulated("vedirect_mppt")
    await api.set_options(
        mppt["result"]["entry_id"],
        {"forward_source": bmv["result"]["entry_id"], "stale_after": 30},
    )
    bms = await api.add_simulated("serial_bms_jbd")
    island = await api.add_simulated(
        "sunny_island",
        {
            "chemistry": "lifepo4",
            "cells": 16,
            "capacity_ah": 280,
            "source": bms["result"]["entry_id"],
        },
    )
    smartsolar = await api.add_simulated("victron_ble_solar")
    sunny_boy = await api.add_simulated("sunny_boy_speedwire")
    jk_ble = await api.add_simulated("ble_bms_jk")
    created = {
        "bmv": bmv,
        "mppt": mppt,
        "bms": bms,
        "island": island,
        "smartsolar": smartsolar,
        "sunny_boy": sunny_boy,
        "jk_ble": jk_ble,
    }
    return {result["result"]["entry_id"]: DEVICE_NAMES[key] for key, result in created.items()}


def slug(name: str) -> str:
    """The part of an entity id Home Assistant derives from a (plain ASCII) name."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def renamed_entity_id(entity_id: str, old_name: str, new_name: str) -> str | None:
    """``entity_id`` after its device is renamed, as the device dialog offers; None if unchanged."""
    domain, object_id = entity_id.split(".", 1)
    old = slug(old_name)
    if not object_id.startswith(f"{old}_"):
        return None
    return f"{domain}.{slug(new_name)}{object_id[len(old) :]}"


def shipped_energy_prefs(serial: str) -> dict[str, Any]:
    """The energy dashboard settings users copy (``dashboards/energy.json``), for ``serial``.

    ``SERIAL`` in the file stands for the Sunny Boy's serial number, as users are told to
    replace it.
    """
    text = (DASHBOARDS / "energy.json").read_text().replace(SERIAL_PLACEHOLDER, serial)
    prefs: dict[str, Any] = json.loads(text)
    return prefs


def shipped_dashboard(serial: str) -> dict[str, Any]:
    """The system dashboard users copy (``dashboards/off_grid_system.yaml``), for ``serial``."""
    text = (DASHBOARDS / "off_grid_system.yaml").read_text().replace(SERIAL_PLACEHOLDER, serial)
    config: dict[str, Any] = yaml.safe_load(text)
    return config


class Websocket:
    """The few websocket API commands the frontend itself uses for these settings."""

    def __init__(self, connection: aiohttp.ClientWebSocketResponse) -> None:
        """Wrap an authenticated websocket connection."""
        self._connection = connection
        self._next_id = 0

    async def call(self, message: dict[str, Any]) -> Any:
        """Send one command; its result, or an error that names the command."""
        self._next_id += 1
        await self._connection.send_json({"id": self._next_id, **message})
        while True:
            reply = await self._connection.receive_json()
            if reply.get("id") == self._next_id and reply.get("type") == "result":
                break
        if not reply["success"]:
            raise RuntimeError(f"{message['type']} failed: {reply.get('error')}")
        return reply["result"]


async def rename_devices(ws: Websocket, names: dict[str, str]) -> None:
    """Give each new entry's device its demo name and its entity ids the matching prefix.

    This is what a user does on the device page (✏️ → name → "rename entity ids" too).
    """
    devices = await ws.call({"type": "config/device_registry/list"})
    entities = await ws.call({"type": "config/entity_registry/list"})
    for device in devices:
        entry_id = next((entry for entry in device["config_entries"] if entry in names), None)
        if entry_id is None:
            continue
        new_name = names[entry_id]
        await ws.call(
            {
                "type": "config/device_registry/update",
                "device_id": device["id"],
                "name_by_user": new_name,
            }
        )
        for entity in entities:
            if entity["device_id"] != device["id"]:
                continue
            new_id = renamed_entity_id(entity["entity_id"], device["name"], new_name)
            if new_id is not None:
                await ws.call(
                    {
                        "type": "config/entity_registry/update",
                        "entity_id": entity["entity_id"],
                        "new_entity_id": new_id,
                    }
                )


async def install_dashboards(ws: Websocket) -> None:
    """The shipped system dashboard in the sidebar, and the shipped energy settings."""
    devices = await ws.call({"type": "config/device_registry/list"})
    # Left as the placeholder if the demo's Sunny Boy was renamed or removed meanwhile.
    serial = next(
        (
            device["serial_number"]
            for device in devices
            if device["name_by_user"] == DEVICE_NAMES["sunny_boy"] and device["serial_number"]
        ),
        SERIAL_PLACEHOLDER,
    )
    dashboards = await ws.call({"type": "lovelace/dashboards/list"})
    if not any(board["url_path"] == DASHBOARD_PATH for board in dashboards):
        await ws.call(
            {
                "type": "lovelace/dashboards/create",
                "url_path": DASHBOARD_PATH,
                "title": "Off-grid system",
                "icon": "mdi:home-lightning-bolt-outline",
                "mode": "storage",
                "show_in_sidebar": True,
                "require_admin": False,
            }
        )
    await ws.call(
        {
            "type": "lovelace/config/save",
            "url_path": DASHBOARD_PATH,
            "config": shipped_dashboard(serial),
        }
    )
    await ws.call({"type": "energy/save_prefs", **shipped_energy_prefs(serial)})


async def configure_demo_user(base: str, names: dict[str, str]) -> None:
    """Device names of newly added devices, and the shipped dashboards, as the demo user."""
    async with aiohttp.ClientSession() as session:
        token = await login(session, base)
        async with session.ws_connect(f"{base}/api/websocket") as connection:
            hello = await connection.receive_json()
            assert hello["type"] == "auth_required"
            await connection.send_json({"type": "auth", "access_token": token})
            auth = await connection.receive_json()
            if auth["type"] != "auth_ok":
                raise RuntimeError(f"websocket login failed: {auth}")
            ws = Websocket(connection)
            await rename_devices(ws, names)
            await install_dashboards(ws)


async def wait_until_loaded(api: Api, timeout: float) -> None:
    """Wait until every entry of the integration is loaded (options changes reload them)."""
    async with asyncio.timeout(timeout):
        while True:
            entries = await api.entries()
            if entries and all(entry["state"] == "loaded" for entry in entries):
                return
            await asyncio.sleep(0.5)


async def provision(base: str, timeout: float) -> None:
    """Wait for Home Assistant, onboard it and add the demo devices."""
    async with aiohttp.ClientSession() as session:
        await wait_for_http(session, base, timeout)
        token = await login(session, base)
        api = Api(session, base, token)
        names = await add_demo_devices(api)
        await wait_until_loaded(api, timeout)
    await configure_demo_user(base, names)


async def _stop(process: asyncio.subprocess.Process) -> int:
    """Terminate Home Assistant (if it still runs) and wait for it; its exit code."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
    return await process.wait()


async def _provision_until_stopped(
    process: asyncio.subprocess.Process, stopping: asyncio.Event, base: str, timeout: float
) -> bool:
    """Provision, unless Home Assistant exits or a signal comes first; whether it completed.

    Provisioning waits for HTTP for up to ``timeout``: without this, a Ctrl+C during that wait
    would stop Home Assistant but leave the script waiting for a server that is gone.
    """
    provisioning = asyncio.ensure_future(provision(base, timeout))
    exited = asyncio.ensure_future(process.wait())
    stopped = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({provisioning, exited, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (provisioning, exited, stopped):
            task.cancel()
        outcome = await asyncio.gather(provisioning, exited, stopped, return_exceptions=True)
    if stopping.is_set() or process.returncode is not None:
        return False
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return True


async def run(args: argparse.Namespace) -> int:
    """Start Home Assistant, provision it and keep it running until interrupted."""
    config = Path(args.config).resolve()
    prepare_config(config, args.port)
    base = f"http://127.0.0.1:{args.port}"
    env = dict(os.environ)
    if args.day_minutes is not None:
        env[DAY_MINUTES_ENV] = f"{args.day_minutes:g}"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "homeassistant", "--config", str(config), "--skip-pip", env=env
    )
    stopping = asyncio.Event()

    def on_signal() -> None:
        stopping.set()
        with contextlib.suppress(ProcessLookupError):
            process.terminate()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        provisioned = await _provision_until_stopped(process, stopping, base, args.timeout)
    except BaseException:
        await _stop(process)
        raise
    if not provisioned:
        code = await _stop(process)
        if stopping.is_set():
            return 0
        print(f"Home Assistant exited during start-up (exit code {code})", file=sys.stderr)
        return code or 1
    print(
        f"\nHome Assistant is running at {base}\n"
        f"  login: {DEMO_USER} / {DEMO_PASSWORD}\n"
        "  simulated devices: Settings → Devices & services → SMA Victron Bridge\n"
        "  stop with Ctrl+C\n",
        flush=True,
    )
    if args.provision_only:
        return await _stop(process)
    return await process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point of scripts/develop."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=os.environ.get("HA_CONFIG", str(ROOT / "config")))
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument(
        "--day-minutes",
        type=float,
        default=None,
        help="let the simulated sun rise and set within this many minutes (default: a real day)",
    )
    parser.add_argument(
        "--provision-only",
        action="store_true",
        help="stop Home Assistant again once the demo devices are set up (for checks)",
    )
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
