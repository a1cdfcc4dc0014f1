"""Wire-to-state latency: from a VE.Direct block written to the PTY to the new state in HA.

Boots a real Home Assistant (``bootstrap.async_setup_hass``) in a temporary config directory with
this integration linked in, adds an entry for a simulated MPPT on a PTY, and for each sample sets
a unique PV power in the simulator; the simulator reports when the block carrying it is written,
and a state listener records when the sensor shows it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
import shutil
import statistics
import tempfile
import time
from types import MappingProxyType

from homeassistant import bootstrap, runner
from homeassistant.config_entries import ConfigEntry, ConfigEntryState
from homeassistant.core import Event, EventStateChangedData, callback

from custom_components.sma_victron_bridge.simulators.vedirect import VeDirectSimulator

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = "sma_victron_bridge"


def measure_wire_to_state(samples: int = 30, interval: float = 0.1) -> list[float]:
    """Latencies in seconds for ``samples`` blocks, one new PV power per block."""
    # A fixed directory wiped before Home Assistant starts: once HA runs, it (rightly) reports
    # removing a directory tree as blocking I/O.
    config_dir = Path(tempfile.gettempdir()) / "sma-victron-bridge-bench-ha"
    shutil.rmtree(config_dir, ignore_errors=True)
    config_dir.mkdir()
    return asyncio.run(_measure(str(config_dir), samples, interval))


async def _measure(config_dir: str, samples: int, interval: float) -> list[float]:
    config = Path(config_dir)
    (config / "configuration.yaml").write_text("homeassistant:\n  name: bench\n")
    (config / "custom_components").mkdir()
    (config / "custom_components" / DOMAIN).symlink_to(ROOT / "custom_components" / DOMAIN)
    hass = await bootstrap.async_setup_hass(
        runner.RuntimeConfig(config_dir=config_dir, skip_pip=True)
    )
    assert hass is not None
    await hass.async_start()  # so that async_stop() below really stops it
    sim = VeDirectSimulator("mppt", serial_number="HQBENCH0001", interval=interval, seed=7)
    await sim.start()
    written: dict[str, float] = {}
    shown: dict[str, float] = {}
    arrived = asyncio.Event()

    def on_block(block: list[tuple[str, str]]) -> None:
        value = dict(block).get("PPV")
        if value is not None and value not in written:
            written[value] = time.perf_counter()

    sim.on_block_written = on_block
    try:
        entry = ConfigEntry(
            version=1,
            minor_version=1,
            domain=DOMAIN,
            title="Bench MPPT",
            data={"device": "vedirect", "port": sim.port, "family": "mppt"},
            options={},
            source="user",
            unique_id="HQBENCH0001",
            discovery_keys=MappingProxyType({}),
            subentries_data=None,
        )
        await hass.config_entries.async_add(entry)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED, entry.reason
        entity_id = "sensor.bench_mppt_pv_power"

        @callback
        def on_state(event: Event[EventStateChangedData]) -> None:
            if event.data["entity_id"] != entity_id or event.data["new_state"] is None:
                return
            value = event.data["new_state"].state
            if value not in shown:
                shown[value] = time.perf_counter()
                arrived.set()

        unsubscribe = hass.bus.async_listen("state_changed", on_state)
        for n in range(samples):
            value = str(1000 + n)
            sim.set_value("PPV", value)
            async with asyncio.timeout(5):
                while value not in shown:
                    arrived.clear()
                    await arrived.wait()
        unsubscribe()
        await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await sim.stop()
        await hass.async_stop()
    return [shown[v] - written[v] for v in shown if v in written and v.startswith("1")]


def summarize(latencies: list[float]) -> str:
    """Median and worst latency in milliseconds."""
    ms = sorted(x * 1000 for x in latencies)
    return f"median {statistics.median(ms):.2f} ms, max {ms[-1]:.2f} ms over {len(ms)} blocks"
