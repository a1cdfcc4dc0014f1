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
``RATIO ble_bms_update_over_library x`` (median ours / median library; target at most 1.2).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

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


RADIO_LATENCY = 0.030
"""A typical BLE connection interval: the time a real BMS's answer takes to arrive at best."""


def main(updates: int = 200) -> float:
    """Run both sides; print the figures and the RATIO line; return the ratio.

    The RATIO is taken with a peer that answers at once (no radio at all), so it shows only the
    processing this integration adds to the library's; a second line shows the same update with
    one typical connection interval of radio latency per answer, as a real BMS has it.
    """
    library = asyncio.run(measure_library(updates))
    library_radio = asyncio.run(measure_library(updates // 4, RADIO_LATENCY))
    ours, ours_radio = asyncio.run(measure_ours(updates, (0.0, RADIO_LATENCY)))
    print(summarize("aiobmsble alone, no radio latency", library))
    print(summarize("integration (adapter + HA entities), no radio latency", ours))
    print(summarize(f"aiobmsble alone, {RADIO_LATENCY * 1000:g} ms radio latency", library_radio))
    print(
        summarize(
            f"integration, {RADIO_LATENCY * 1000:g} ms radio latency", ours_radio[: updates // 4]
        )
    )
    radio = statistics.median(ours_radio) / statistics.median(library_radio)
    print(f"with radio latency: ours / library = {radio:.3f}")
    ratio = statistics.median(ours) / statistics.median(library)
    print(f"RATIO ble_bms_update_over_library {ratio:.3f}")
    return ratio


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
