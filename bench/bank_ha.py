"""A bank of 8 packs refreshed to entity states, against the same 8 packs as single entries.

Home Assistant runs for real (``bootstrap.async_setup_hass`` in a temporary configuration, this
integration linked in). Eight simulated serial BMS entries (JBD, 100-280 Ah, 16 cells) are set up
the way the config flow makes them; their own polling is slowed to once an hour, so the bench
hands each entry its readings itself, through the exact path a poll takes
(``SerialBmsRuntime._apply``: energy, the pack's own charge limits, its snapshot, its entities).

One *round* is a new reading for every pack. The peer, measured in the same run on the same
readings: the 8 single-pack entries taking their round into their entity states. The bank: the
same, plus the bank's one refresh for the round (a round's readings arrive within the bank's
``REFRESH_DELAY`` and make one refresh: combining the packs, the bank's energy, its repair
issue, its entities). Both sides run the same rounds alternately, ``REPEATS`` times; the best
pass of each counts (the machine is shared). Values move every round (cells, current, SOC,
temperatures), so entities really write new states on both sides.

Run: ``.venv/bin/python bench/bank_ha.py`` (about half a minute); the last line is
``RATIO bank_update_over_single x`` (a round with the bank ÷ a round of the single entries;
the issue's target is ≤ 1.2). The bank also refreshes once a second when no pack reported (a
silent pack must turn stale); that refresh is printed on its own, per second.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
import shutil
import sys
import tempfile
import time
from types import MappingProxyType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from custom_components.sma_victron_bridge.protocols.bms_common import BmsReading  # noqa: E402

DOMAIN = "sma_victron_bridge"
PACKS = 8
CELLS = 16
ROUNDS = 60
REPEATS = 10
CAPACITIES = (100.0, 120.0, 150.0, 200.0, 200.0, 230.0, 280.0, 280.0)
SLOW_POLL = 3600.0
SETTLED_OPTIONS: dict[str, Any] = {"poll_interval": SLOW_POLL, "ramp_rate": 1200.0}
"""Pack entry options: no polling of their own, and limits that do not ramp for seconds.

Rounds follow each other within milliseconds here, where a real pack's polls are seconds apart:
a limit still ramping up after the start would change with every round on both sides (and be
a larger share of the bank's few entities than of a pack's many), which no real round does.
"""


@dataclass(frozen=True, slots=True)
class Figures:
    """Best seconds per round: the single entries alone, with the bank, one idle bank refresh."""

    single: float
    bank: float
    idle_refresh: float

    @property
    def ratio(self) -> float:
        """A round with the bank over a round of the single entries."""
        return self.bank / self.single


def reading(pack: int, second: int) -> BmsReading:
    """Pack ``pack``'s reading at ``second``: values move a little every round."""
    wobble = (second * 7 + pack * 13) % 11 / 1000.0
    cells = [round(3.30 + wobble + (cell % 5) / 1000.0, 3) for cell in range(CELLS)]
    if pack == 3:
        cells[5] = 3.38 + (second % 40) / 1000.0  # one cell drifting into the curve
    current = 10.0 + (second + pack) % 9
    voltage = round(sum(cells), 3)
    soc = 60.0 + (second % 10) * 0.1 + pack
    return BmsReading(
        soc=soc,
        voltage=voltage,
        current=current,
        power=round(voltage * current, 1),
        remaining_capacity=round(CAPACITIES[pack] * soc / 100.0, 2),
        nominal_capacity=CAPACITIES[pack],
        cycles=12,
        cell_voltages=tuple(cells),
        temperatures=(20.0 + pack * 0.5, round(21.0 + wobble * 100, 1), 22.0),
        balancing=(False,) * CELLS,
        charge_fet=True,
        discharge_fet=True,
    )


def pack_entry_data(pack: int) -> dict[str, Any]:
    """A simulated JBD entry as the config flow creates it."""
    return {
        "device": "serial_bms",
        "port": "",
        "protocol": "jbd",
        "address": None,
        "invert_current": False,
        "serial_number": f"BENCHBANK{pack}",
        "simulated": True,
        "cells": CELLS,
        "capacity_ah": CAPACITIES[pack],
    }


async def measure(
    hass: Any, pack_runtimes: list[Any], bank: Any, *, rounds: int, repeats: int
) -> Figures:
    """Time ``rounds`` rounds into 8 loaded pack runtimes, without and with ``bank``'s refresh.

    ``bank`` is a loaded bank runtime over exactly these packs. Works in any running Home
    Assistant (the test suite's instance too).
    """
    prepared = [[reading(pack, second) for pack in range(PACKS)] for second in range(rounds)]
    single_times: list[float] = []
    bank_times: list[float] = []
    idle_times: list[float] = []

    def one_pass(with_bank: bool) -> float:
        spent = 0.0
        for row in prepared:
            started = time.perf_counter()
            for runtime, value in zip(pack_runtimes, row, strict=True):
                runtime._apply(value)  # the poll's own path, minus the wire
            if with_bank:
                bank.refresh()
            spent += time.perf_counter() - started
        return spent / len(prepared)

    one_pass(True)  # warm-up: caches filled, every limit past its ramp (see SETTLED_OPTIONS)
    await hass.async_block_till_done()
    for _ in range(repeats):
        single_times.append(one_pass(False))
        await hass.async_block_till_done()
        bank_times.append(one_pass(True))
        await hass.async_block_till_done()
        started = time.perf_counter()
        for _ in range(rounds):
            bank.refresh()
        idle_times.append((time.perf_counter() - started) / rounds)
        await hass.async_block_till_done()
    return Figures(min(single_times), min(bank_times), min(idle_times))


def report_lines(figures: Figures) -> list[str]:
    """What the bench prints; the RATIO line last."""
    return [
        f"8 single-pack entries, one round to entity states: {figures.single * 1000:.3f} ms",
        f"the same with the bank's refresh:                   {figures.bank * 1000:.3f} ms",
        f"bank refresh once a second, no new reading:         {figures.idle_refresh * 1000:.3f} ms",
        f"RATIO bank_update_over_single {figures.ratio:.3f}",
    ]


async def _run(config_dir: str) -> Figures:
    from homeassistant import bootstrap, runner
    from homeassistant.config_entries import ConfigEntry, ConfigEntryState

    from custom_components.sma_victron_bridge.devices.battery_bank import (
        runtime as bank_module,
    )

    config = Path(config_dir)
    (config / "configuration.yaml").write_text("homeassistant:\n  name: bench\n")
    (config / "custom_components").mkdir()
    (config / "custom_components" / DOMAIN).symlink_to(ROOT / "custom_components" / DOMAIN)
    hass = await bootstrap.async_setup_hass(
        runner.RuntimeConfig(config_dir=config_dir, skip_pip=True)
    )
    assert hass is not None
    await hass.async_start()
    # The bench hands each round's refresh in itself; the delayed one would only come later.
    bank_module.REFRESH_DELAY = SLOW_POLL  # type: ignore[misc]

    def entry(title: str, data: dict[str, Any], options: dict[str, Any]) -> ConfigEntry[Any]:
        return ConfigEntry(
            version=1,
            minor_version=1,
            domain=DOMAIN,
            title=title,
            data=data,
            options=options,
            source="user",
            unique_id=f"{title}:bench",
            discovery_keys=MappingProxyType({}),
            subentries_data=None,
        )

    try:
        packs = [
            entry(f"Pack {n + 1}", pack_entry_data(n), dict(SETTLED_OPTIONS)) for n in range(PACKS)
        ]
        for pack in packs:
            await hass.config_entries.async_add(pack)
        await hass.async_block_till_done()
        assert all(p.state is ConfigEntryState.LOADED for p in packs)
        bank = entry(
            "Bench bank",
            {"device": "battery_bank", "chemistry": "lifepo4", "cells": CELLS},
            {"packs": [p.entry_id for p in packs], "shunt": "none"},
        )
        await hass.config_entries.async_add(bank)
        await hass.async_block_till_done()
        assert bank.state is ConfigEntryState.LOADED
        figures = await measure(
            hass,
            [p.runtime_data for p in packs],
            bank.runtime_data,
            rounds=ROUNDS,
            repeats=REPEATS,
        )
        for item in (bank, *packs):
            await hass.config_entries.async_unload(item.entry_id)
    finally:
        await hass.async_stop()
    return figures


def main() -> None:
    """Boot Home Assistant, measure, print."""
    config_dir = Path(tempfile.gettempdir()) / "sma-victron-bridge-bench-bank"
    shutil.rmtree(config_dir, ignore_errors=True)
    config_dir.mkdir()
    figures = asyncio.run(_run(str(config_dir)))
    for line in report_lines(figures):
        print(line)


if __name__ == "__main__":
    main()
