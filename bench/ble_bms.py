"""One Bluetooth BMS update through this integration vs the bare ``aiobmsble`` update.

Both run against the same fake JK BMS (``simulators/ble_bms.py``: a ``JkBlePeer`` with a frozen
16-cell pack, no added latency) with the connection held, so what differs is only what this
integration adds on top of the library:

* **library**: ``aiobmsble``'s JK class on bleak's client with the simulated backend
  (``aiobmsble_on_simulated_peers``), ``await bms.async_update()`` in a loop.
* **ours**: a real Home Assistant (``bootstrap.async_setup_hass`` in a temporary config) with the
  simulated JK entry added through the config flow: the BMS is reached through Home Assistant's
  Bluetooth manager, its ``BleakClient`` wrapper and the simulated proxy's connector; one update is
  the runtime's ``_async_update_once``: the ``BLEDevice`` look-up, ``BleBmsLink.update`` (the
  library update and ``reading_from_sample``), energy, charge limits, the battery snapshot and the
  state writes of every entity.

Run: ``.venv/bin/python bench/ble_bms.py``; the last line is
``RATIO ble_bms_update_over_library x`` (median ours / median library, each peer answering after
the shortest connection interval BLE allows; target at most 1.2). The same pair without any radio
latency is printed too: it isolates what the integration adds, in milliseconds.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Final

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DOMAIN = "sma_victron_bridge"
ADDRESS = "C0:DE:B5:BE:AC:01"
WARMUP = 5


def frozen_peer(latency: float = 0.0) -> Any:
    """The fake JK BMS both sides read: a frozen 16s pack at 64 %, charging at 10 A."""
    from custom_components.sma_victron_bridge.simulators.ble_bms import (
        BleBatteryState,
        JkBlePeer,
    )

    battery = BleBatteryState(cells=16, capacity_ah=280.0, soc=64.0, frozen=True, seed=3)
    battery.current = 10.0
    return JkBlePeer(battery=battery, latency=latency)


async def measure_library(updates: int, latency: float = 0.0) -> list[float]:
    """Seconds per bare ``aiobmsble`` update (connection held)."""
    from aiobmsble import BMSConfig  # type: ignore[import-untyped]
    from aiobmsble.bms.jikong_bms import BMS  # type: ignore[import-untyped]
    from bleak.backends.device import BLEDevice

    from custom_components.sma_victron_bridge.simulators.ble_bms import (
        aiobmsble_on_simulated_peers,
        register_peer,
    )

    unregister = register_peer(ADDRESS, frozen_peer(latency))
    times: list[float] = []
    try:
        with aiobmsble_on_simulated_peers():
            bms = BMS(BLEDevice(ADDRESS, "JK_B2A8S20P", {}), BMSConfig(keep_alive=True))
            try:
                for n in range(updates + WARMUP):
                    started = time.perf_counter()
                    await bms.async_update()
                    if n >= WARMUP:
                        times.append(time.perf_counter() - started)
            finally:
                await bms.disconnect()
    finally:
        unregister()
    return times


async def measure_ours(updates: int, latencies: tuple[float, ...] = (0.0,)) -> list[list[float]]:
    """Seconds per update of a simulated JK entry in a real Home Assistant."""
    from homeassistant import bootstrap, runner
    from homeassistant.config_entries import ConfigEntryState

    config_dir = Path(tempfile.gettempdir()) / "sma-victron-bridge-bench-ble-bms"
    shutil.rmtree(config_dir, ignore_errors=True)
    (config_dir / "custom_components").mkdir(parents=True)
    (config_dir / "configuration.yaml").write_text("homeassistant:\n  name: bench\nbluetooth:\n")
    (config_dir / "custom_components" / DOMAIN).symlink_to(ROOT / "custom_components" / DOMAIN)
    hass = await bootstrap.async_setup_hass(
        runner.RuntimeConfig(config_dir=str(config_dir), skip_pip=True)
    )
    assert hass is not None
    await hass.async_start()
    results: list[list[float]] = []
    try:
        flow = await hass.config_entries.flow.async_init(DOMAIN, context={"source": "user"})
        flow = await hass.config_entries.flow.async_configure(
            flow["flow_id"], {"next_step_id": "simulated"}
        )
        result = await hass.config_entries.flow.async_configure(
            flow["flow_id"], {"simulated_device": "ble_bms_jk"}
        )
        await hass.async_block_till_done()
        entry = hass.config_entries.async_get_entry(result["result"].entry_id)
        assert entry is not None
        assert entry.state is ConfigEntryState.LOADED, entry.reason
        runtime: Any = entry.runtime_data
        runtime.peer.battery = frozen_peer().battery
        for latency in latencies:
            runtime.peer.latency = latency
            times: list[float] = []
            for n in range(updates + WARMUP):
                started = time.perf_counter()
                await runtime._async_update_once()  # the update itself is measured
                if n >= WARMUP:
                    times.append(time.perf_counter() - started)
            results.append(times)
        await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await hass.async_stop()
    return results


def summarize(name: str, times: list[float]) -> str:
    """Median and 90th percentile in milliseconds."""
    ms = sorted(t * 1000 for t in times)
    p90 = ms[int(len(ms) * 0.9) - 1]
    return f"{name}: median {statistics.median(ms):.3f} ms, p90 {p90:.3f} ms over {len(ms)}"


FASTEST_RADIO: Final = 0.0075
"""The shortest BLE connection interval (Bluetooth Core spec, Vol 6 Part B 4.5.1: 7.5 ms to 4 s):
no real BMS answers faster than one interval after the request. The RATIO is taken here."""
TYPICAL_RADIO: Final = 0.030
"""A typical connection interval of a phone-class or proxy link."""


def main(updates: int = 200) -> float:
    """Run both sides; print the figures and the RATIO line; return the ratio.

    Three peers: one that answers at once (no radio at all: the processing this integration adds
    to the library's, Home Assistant's state writes included, in absolute figures), one at the
    fastest interval BLE allows and one at a typical interval. The RATIO is the fastest real
    link's: a full update is never quicker than that, and it is what a user waits for.
    """
    latencies = (0.0, FASTEST_RADIO, TYPICAL_RADIO)
    library = [
        asyncio.run(measure_library(updates // (1 if not lat else 4), lat)) for lat in latencies
    ]
    ours = asyncio.run(measure_ours(updates, latencies))
    ratios: list[float] = []
    for latency, lib, own_all in zip(latencies, library, ours, strict=True):
        label = f"{latency * 1000:g} ms radio latency" if latency else "no radio latency"
        own = own_all[: len(lib)]
        print(summarize(f"aiobmsble alone, {label}", lib))
        print(summarize(f"integration (adapter + HA entities), {label}", own))
        overhead = statistics.median(own) - statistics.median(lib)
        ratio = statistics.median(own) / statistics.median(lib)
        ratios.append(ratio)
        print(f"  added by the integration: {overhead * 1000:.3f} ms; ours / library = {ratio:.3f}")
    ratio = ratios[1]
    print(f"RATIO ble_bms_update_over_library {ratio:.3f}")
    return ratio


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
