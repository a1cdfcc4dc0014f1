"""A bank of 8 packs combined into one battery, against the 8 packs' own controller updates.

Every second a bank entry does two things on top of what its packs' entries already do: it
combines the packs' states (:func:`combine`) and, as the Sunny Island's battery source, caps the
Sunny Island controller's decision by the bank's limits. Each pack's entry meanwhile runs one
:class:`ChargeController` update for its own computed limits. The peer measured here, in the
same run and on the same readings, is that per-pack work: 8 single-pack controller updates.

Readings: 8 LiFePO4 packs of 16 cells (100-280 Ah), four temperature sensors each, values
moving every round (cells, current, SOC, temperatures; one pack's high cell drifting into the
cell-voltage curve). ``ROUNDS`` rounds are prepared first, so only the work itself is timed; the
best of ``REPEATS`` passes counts for each side (the machine is shared).

Run: ``.venv/bin/python bench/bank.py`` (a few seconds); the last line is
``RATIO bank_combine_over_single x`` (one combine() of 8 packs ÷ 8 single-pack controller
updates). Below 1 means combining the packs costs less than the packs' own limit computation,
which is itself a small part of an entry's refresh (entity state writes dominate there): this is
the pure share of the issue's ``bank_update_over_single`` (target ≤ 1.2 through Home Assistant).
About 40 % of combine() is sanitising the 8 snapshots (``BatterySnapshot.sanitized``), which no
consumer of an untrusted reading may skip.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
import sys
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)

from custom_components.sma_victron_bridge.control.bank import (  # noqa: E402
    BankLimiter,
    BankSettings,
    BankState,
    PackState,
    combine,
)
from custom_components.sma_victron_bridge.control.charge import (  # noqa: E402
    ChargeController,
    ChargeDecision,
)
from custom_components.sma_victron_bridge.control.chemistry import ChargeSettings  # noqa: E402
from custom_components.sma_victron_bridge.control.snapshot import BatterySnapshot  # noqa: E402

PACKS = 8
CELLS = 16
ROUNDS = 400
REPEATS = 5
CAPACITIES = (100.0, 120.0, 150.0, 200.0, 200.0, 230.0, 280.0, 280.0)


def reading(pack: int, second: int) -> BatterySnapshot:
    """Pack ``pack``'s reading at ``second``: values move a little every round."""
    wobble = (second * 7 + pack * 13) % 11 / 1000.0
    cells = [3.30 + wobble + (cell % 5) / 1000.0 for cell in range(CELLS)]
    if pack == 3:
        cells[5] = 3.38 + (second % 40) / 1000.0  # one cell drifting into the curve
    temperatures = (20.0 + pack * 0.5, 21.0 + wobble * 100, 22.0, 19.5 + (second % 7) * 0.1)
    return BatterySnapshot(
        timestamp=float(second),
        soc=60.0 + (second % 10) * 0.1 + pack,
        voltage=sum(cells),
        current=10.0 + (second + pack) % 9,
        temperature=max(temperatures),
        temperatures=temperatures,
        cell_voltages=tuple(cells),
        capacity_ah=CAPACITIES[pack],
    )


def prepare() -> tuple[list[list[BatterySnapshot]], list[list[PackState]]]:
    """Every round's readings, and the pack states the controllers made of them."""
    controllers = [
        ChargeController(ChargeSettings.for_chemistry("lifepo4", cells=CELLS, capacity_ah=c))
        for c in CAPACITIES
    ]
    readings: list[list[BatterySnapshot]] = []
    states: list[list[PackState]] = []
    for second in range(ROUNDS):
        row = [reading(pack, second) for pack in range(PACKS)]
        decisions = [
            c.update(snap, float(second)) for c, snap in zip(controllers, row, strict=True)
        ]
        readings.append(row)
        states.append(
            [
                PackState(
                    pack_id=f"pack{pack}",
                    name=f"Pack {pack + 1}",
                    snapshot=snap,
                    decision=decision,
                    nominal_capacity=CAPACITIES[pack],
                    remaining_capacity=CAPACITIES[pack] * (snap.soc or 0.0) / 100.0,
                    charge_fet=True,
                    discharge_fet=pack != 5,
                )
                for pack, (snap, decision) in enumerate(zip(row, decisions, strict=True))
            ]
        )
    return readings, states


def best(work: Callable[[], None]) -> float:
    """The shortest of ``REPEATS`` timed passes, in seconds."""
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    readings, states = prepare()
    settings = BankSettings()

    def singles() -> None:
        controllers = [
            ChargeController(ChargeSettings.for_chemistry("lifepo4", cells=CELLS, capacity_ah=c))
            for c in CAPACITIES
        ]
        for second, row in enumerate(readings):
            for controller, snap in zip(controllers, row, strict=True):
                controller.update(snap, float(second))

    banks: list[BankState] = []

    def combined() -> None:
        banks.clear()
        for second, row in enumerate(states):
            banks.append(combine(row, settings, float(second) + 0.5))

    sent: list[ChargeDecision] = []

    def sunny_island() -> None:
        si = ChargeController(
            ChargeSettings.for_chemistry("lifepo4", cells=CELLS, capacity_ah=sum(CAPACITIES))
        )
        limiter = BankLimiter()
        sent.clear()
        for second, bank in enumerate(banks):
            now = float(second) + 0.5
            sent.append(limiter.apply(si.update(bank.snapshot, now), bank, now, si.settings))

    single_time = best(singles)
    combine_time = best(combined)
    si_time = best(sunny_island)

    last = banks[-1]
    assert last.packs_online == PACKS
    assert last.cells_complete
    assert last.charge.value > 0.0
    assert sent[-1].charge_current_limit <= last.charge.value
    per_round = 1e6 / ROUNDS
    print(f"{PACKS} LiFePO4 packs of {CELLS} cells, {ROUNDS} rounds, best of {REPEATS} passes")
    print(f"8 single-pack ChargeController updates: {single_time * per_round:.1f} us per round")
    print(f"combine() of the 8 packs:               {combine_time * per_round:.1f} us per round")
    print(
        "Sunny Island update on the bank snapshot + BankLimiter.apply: "
        f"{si_time * per_round:.1f} us per round"
    )
    print(
        f"last round: charge {last.charge.value:.1f} A ({last.charge.limited_by}), "
        f"discharge {last.discharge.value:.1f} A ({last.discharge.limited_by}), "
        f"spread {1000 * (last.cell_spread or 0.0):.0f} mV"
    )
    whole = (combine_time + si_time) / single_time
    print(f"bank work per tick (combine + SI + cap) over 8 single updates: {whole:.3f}")
    print(f"RATIO bank_combine_over_single {combine_time / single_time:.3f}")


if __name__ == "__main__":
    main()
