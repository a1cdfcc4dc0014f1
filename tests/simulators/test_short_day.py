"""A short demo day: the simulators' sun runs faster while their wire timing stays real.

The sun of the VE.Direct, Bluetooth, BMS and Sunny Island simulators shines from 06:00 to 18:00
(a sine to the power 1.3); a demo day starts where the shared clock stands. The tests run a day
at a high scale and check what a user sees: PV power rising from 0 after sunrise and back to 0
after sunset, yield today reset at midnight, a battery that is charged by day (bulk, absorption,
float) and drained at night. Scale 1 without a start time leaves every simulator as it was.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
import math
import uuid

import can
import pytest

from custom_components.sma_victron_bridge.control.charge import ChargeController, ChargeState
from custom_components.sma_victron_bridge.control.chemistry import ChargeSettings
from custom_components.sma_victron_bridge.control.snapshot import BatterySnapshot
from custom_components.sma_victron_bridge.protocols.victron_ble import (
    RECORD_SOLAR_CHARGER,
    decode_advertisement,
)
from custom_components.sma_victron_bridge.simulators import day_clock
from custom_components.sma_victron_bridge.simulators.bms import JbdSimulator
from custom_components.sma_victron_bridge.simulators.day_clock import (
    DayClock,
    clear_sky,
    demo_start_time_of_day,
    shared_day_clock,
)
from custom_components.sma_victron_bridge.simulators.sunny_island import SunnyIslandSimulator
from custom_components.sma_victron_bridge.simulators.vedirect import VeDirectSimulator
from custom_components.sma_victron_bridge.simulators.victron_ble import VictronAdvertiser

from .test_vedirect_sim import STATUS, running

HOUR = 3600.0
KEY = bytes.fromhex("adeccb947395801a4dd45a2eaa44bf17")
SMARTSOLAR = 0xA053


# --- the shared clock ----------------------------------------------------------------------------


def test_day_clock_runs_scale_times_faster_from_its_anchor() -> None:
    # Anchored at 1970-01-02 05:00 UTC: 30 real seconds at scale 72 are 36 simulated minutes.
    clock = DayClock(scale=72.0, wall=86_400 + 5 * HOUR, monotonic=1000.0)
    assert clock.time_of_day(1000.0) == 5 * HOUR
    assert clock.time_of_day(1030.0) == 5 * HOUR + 36 * 60
    assert clock.time_of_day(1000.0 + 1200.0) == 5 * HOUR  # 20 minutes: a whole day
    assert 0.0 <= clock.time_of_day() < 86_400.0


def test_devices_created_later_start_where_the_first_one_anchored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(day_clock, "_clocks", {})
    first = shared_day_clock(72.0)
    assert shared_day_clock(72.0) is first
    assert shared_day_clock(36.0) is not first
    start = demo_start_time_of_day(72.0)
    assert start is not None
    assert start == pytest.approx(first.time_of_day(), abs=1.0)
    assert demo_start_time_of_day(1.0) is None  # a real day: the simulators' own start
    with pytest.raises(ValueError, match="scale"):
        shared_day_clock(0.0)


def test_clear_sky_is_zero_at_night_and_one_at_noon() -> None:
    assert clear_sky(3 * HOUR) == 0.0
    assert clear_sky(6 * HOUR) == 0.0
    assert clear_sky(12 * HOUR) == pytest.approx(1.0)
    assert clear_sky(9 * HOUR) == pytest.approx(math.sin(math.pi / 4) ** 1.3)
    assert clear_sky(20 * HOUR) == 0.0


# --- VE.Direct -----------------------------------------------------------------------------------


async def test_mppt_pv_follows_a_short_day_and_yield_today_resets() -> None:
    """From 04:00, 432 simulated seconds per 5 ms block: a day and a half in about 1.5 s."""
    async with running(
        "mppt", interval=0.005, sun_time_scale=86_400, start_time_of_day=4 * HOUR, seed=3
    ) as (sim, client):
        await client.wait_for(lambda: len(client.blocks) >= 300, timeout=8)
        blocks = [block for _, block in client.blocks[:300]]
        assert sim.time_of_day != 4 * HOUR  # the model's clock moved on with every block
    power = [int(block["PPV"]) for block in blocks]
    # 04:00 + n * 432 s: blocks 0-16 are before 06:00, sunset (18:00) is block 116.
    assert power[:17] == [0] * 17
    sunrise = next(i for i, watts in enumerate(power) if watts > 0)
    assert 17 <= sunrise <= 20
    peak = power.index(max(power))
    assert max(power) > 100  # a 230 W panel, in bulk before noon (then the battery is full)
    sunset = next(i for i in range(peak, len(power)) if power[i] == 0)
    assert 114 <= sunset <= 117
    states = [block["CS"] for block in blocks[: sunset + 1]]
    compact = [state for i, state in enumerate(states) if i == 0 or states[i - 1] != state]
    assert compact == ["0", "3", "4", "5", "0"]  # night, bulk, absorption, float, night
    assert power[sunset:216] == [0] * (216 - sunset)  # dark until the next dawn (block 217)
    assert any(watts > 0 for watts in power[217:])
    # Yield today grows through the day and starts from 0 after midnight (block 167).
    yields = [int(block["H20"]) for block in blocks]
    rollover = next(i for i in range(1, 300) if blocks[i]["HSDS"] != blocks[i - 1]["HSDS"])
    assert 165 <= rollover <= 169
    assert yields[rollover - 1] > 30  # more than 0.3 kWh that day
    assert yields[rollover] == 0
    assert blocks[rollover]["H22"] == blocks[rollover - 1]["H20"]


async def test_sun_time_scale_leaves_the_sense_timeout_at_real_time() -> None:
    """At sun scale 86 400 a minute of the day passes in 0.7 ms, yet sense lasts its 60 s."""
    async with running("mppt", sun_time_scale=86_400) as (_, client):
        assert await client.ask(b":8022000260500\n") == b":8022000260500"  # 13.18 V
        await asyncio.sleep(0.35)  # scaled like time_scale, the 60 s would be long over
        assert await client.ask(STATUS) == b":70F2000849B"  # still VSENSE
        assert await client.ask(b":154\n")  # HEX traffic keeps async messages on
        await client.next_blocks(3)
        assert [line for line in client.hex if line.startswith(b":A")]


async def test_scale_one_and_no_start_time_is_the_old_simulator() -> None:
    async with (
        running("mppt", seed=5) as (old, old_client),
        running("mppt", seed=5, sun_time_scale=1.0, start_time_of_day=None) as (new, new_client),
    ):
        assert old.time_of_day == new.time_of_day == 10 * HOUR
        await old_client.next_blocks(4)
        await new_client.next_blocks(4)
    assert [block for _, block in old_client.blocks[:4]] == [
        block for _, block in new_client.blocks[:4]
    ]


def test_vedirect_start_time_wraps_and_rejects_bad_values() -> None:
    assert VeDirectSimulator("bmv", start_time_of_day=25 * HOUR).time_of_day == 1 * HOUR
    with pytest.raises(ValueError, match="sun_time_scale"):
        VeDirectSimulator(sun_time_scale=0)
    with pytest.raises(ValueError, match="start_time_of_day"):
        VeDirectSimulator(start_time_of_day=math.nan)


# --- Bluetooth SmartSolar ------------------------------------------------------------------------


def _solar_day(
    advertiser: VictronAdvertiser, real_seconds: float, step: float
) -> list[dict[str, float | int | None]]:
    """Adverts every ``step`` real seconds, decoded by the integration's own decoder."""
    records = []
    for n in range(round(real_seconds / step) + 1):
        data = advertiser.next_advertisement(n * step)
        records.append(decode_advertisement(data, KEY))
    return records


def test_ble_solar_pv_follows_a_short_day_and_yield_today_resets() -> None:
    """Scale 72 (a day in 20 minutes) from 05:00, an advert every 10 s for 25 minutes."""
    advertiser = VictronAdvertiser(
        RECORD_SOLAR_CHARGER,
        key=KEY,
        model_id=SMARTSOLAR,
        seed=4,
        time_scale=72,
        start_time_of_day=5 * HOUR,
    )
    assert advertiser.time_of_day == 5 * HOUR
    records = _solar_day(advertiser, 25 * 60, 10)
    power = [float(record["pv_power"] or 0) for record in records]
    # Every advert is 12 simulated minutes: 06:00 is advert 5, 18:00 advert 65, 24:00 advert 95.
    assert power[:6] == [0] * 6
    sunrise = next(i for i, watts in enumerate(power) if watts)
    assert sunrise == 6
    first_day = power[:95]
    assert max(first_day) > 250  # 400 W of panels near noon, under a few clouds
    assert 30 <= first_day.index(max(first_day)) <= 42  # 12:00 is advert 35
    sunset = next(i for i in range(sunrise, len(power)) if not power[i])
    assert sunset == 65
    assert power[sunset:126] == [0] * (126 - sunset)  # 06:00 the next day is advert 125
    assert power[126]
    yields = [float(record["yield_today"] or 0) for record in records]
    assert yields[94] > 1000  # Wh: more than 1 kWh that day
    assert yields[95] == 0  # midnight
    assert yields == sorted(yields[:95]) + sorted(yields[95:])
    assert advertiser.time_of_day == pytest.approx((5 * HOUR + 25 * 60 * 72) % 86_400)


def test_ble_scale_one_and_no_start_time_is_the_old_advertiser() -> None:
    old = VictronAdvertiser(RECORD_SOLAR_CHARGER, key=KEY, model_id=SMARTSOLAR, seed=9)
    new = VictronAdvertiser(
        RECORD_SOLAR_CHARGER,
        key=KEY,
        model_id=SMARTSOLAR,
        seed=9,
        time_scale=1.0,
        start_time_of_day=None,
    )
    assert old.time_of_day == new.time_of_day == 10 * HOUR
    assert [old.next_advertisement(t) for t in (0, 60, 600)] == [
        new.next_advertisement(t) for t in (0, 60, 600)
    ]
    with pytest.raises(ValueError, match="time_scale"):
        VictronAdvertiser(RECORD_SOLAR_CHARGER, key=KEY, model_id=SMARTSOLAR, time_scale=0)
    with pytest.raises(ValueError, match="start_time_of_day"):
        VictronAdvertiser(
            RECORD_SOLAR_CHARGER, key=KEY, model_id=SMARTSOLAR, start_time_of_day=math.inf
        )


# --- BMS -----------------------------------------------------------------------------------------


def test_bms_battery_lives_the_day_the_charge_machine_cycles() -> None:
    """A 16s 280 Ah pack from midnight at scale 72, one step per real second, for 40 hours.

    The Sunny Island's own charge state machine judges it every (real) second as in the
    integration: bulk in the morning, absorption when the cells reach 3.45 V, float once the
    current has stayed below the tail current (14 A) for 60 s, and back to bulk in the evening
    when the SOC falls below 80 %.
    """
    sim = JbdSimulator(start_time_of_day=0.0, time_scale=72.0, seed=1)
    settings = ChargeSettings.for_chemistry("lifepo4", cells=16, capacity_ah=280)
    controller = ChargeController(settings)
    states: list[tuple[float, ChargeState]] = []
    currents: dict[int, float] = {}
    for second in range(1, 2000 + 1):
        sim.step(72.0)
        time_of_day = sim.time_of_day
        assert time_of_day is not None
        currents.setdefault(int(time_of_day // HOUR), sim.current)
        snapshot = BatterySnapshot(
            timestamp=second,
            soc=sim.soc,
            voltage=sim.voltage,
            current=sim.current,
            temperature=25.0,
            cell_voltages=tuple(sim.cell_voltages),
        )
        state = controller.update(snapshot, second).state
        if not states or states[-1][1] is not state:
            states.append((time_of_day / HOUR, state))
        if state is ChargeState.FLOAT and 13 <= time_of_day / HOUR < 15:
            # The charger holds the cells at 3.45 V; nothing flows into a full pack.
            assert sum(sim.cell_voltages) / 16 == pytest.approx(3.45, abs=0.005)
            assert abs(sim.current) < 0.01
    assert [state for _, state in states] == [
        ChargeState.BULK,
        ChargeState.ABSORPTION,
        ChargeState.FLOAT,
        ChargeState.BULK,
        ChargeState.ABSORPTION,
        ChargeState.FLOAT,
    ]
    absorption, floating, rebulk = states[1][0], states[2][0], states[3][0]
    assert 11.5 < absorption < 13.0  # a half-empty pack is full soon after noon
    assert floating - absorption == pytest.approx(72 * 60 / HOUR, abs=0.1)  # 60 s tail hold
    assert 19.0 < rebulk < 22.0  # the evening load takes the SOC below 80 %
    assert currents[3] == pytest.approx(-0.02 * 280)  # night load
    assert currents[10] > 30  # sun
    assert currents[20] == pytest.approx(-0.06 * 280)  # evening load


def test_bms_without_a_start_time_keeps_its_scripted_current() -> None:
    sim = JbdSimulator(time_scale=72.0, seed=1)
    sim.current = 10.0
    sim.step(3600.0)
    assert sim.time_of_day is None
    assert sim.current == 10.0
    assert sim.soc == pytest.approx(50.0 + 10.0 * 3600 / 36 / 280)
    with pytest.raises(ValueError, match="start_time_of_day"):
        JbdSimulator(start_time_of_day=math.nan)


def test_bms_charge_fet_off_stops_the_sun() -> None:
    sim = JbdSimulator(start_time_of_day=11 * HOUR, time_scale=72.0, seed=1)
    sim.charge_fet = False
    soc = sim.soc
    sim.step(3600.0)
    assert sim.current > 0  # the sun would charge ...
    assert sim.soc == soc  # ... but nothing flows through an open FET
    assert max(sim.cell_voltages) < 3.40  # and no charger holds the cells up


# --- Sunny Island --------------------------------------------------------------------------------


@pytest.fixture
def si_bus() -> Iterator[can.BusABC]:
    bus = can.Bus(interface="virtual", channel=f"short-day-{uuid.uuid4().hex}")
    yield bus
    bus.shutdown()


def test_sunny_island_pv_follows_the_sun(si_bus: can.BusABC) -> None:
    sim = SunnyIslandSimulator(si_bus, pv_peak=5000.0, start_time_of_day=4 * HOUR, seed=2)
    sim.set_load(300.0)
    # What a BMS would have sent: charge up to 55.2 V with at most 100 A.
    sim.accepted.update(soc=50.0, charge_voltage=55.2, charge_current_limit=100.0)
    pv: list[float] = []
    for _ in range(24):
        flow = sim.step(HOUR)
        pv.append(flow.pv + flow.curtailed)  # off-grid, what the battery cannot take is curtailed
    # Step n ends at 05:00 + n hours.
    assert pv[:2] == [0.0, 0.0]  # 05:00, 06:00
    assert pv[6] > 4000.0  # 11:00, near the peak (10 % jitter)
    assert pv[13] == 0.0  # 18:00
    assert sim.clock == 4 * HOUR
    assert sim.battery.soc > 60.0  # the day's surplus went into the battery, the night took some


def test_sunny_island_without_pv_peak_is_the_old_plant(si_bus: can.BusABC) -> None:
    old = SunnyIslandSimulator(si_bus, seed=2)
    new = SunnyIslandSimulator(si_bus, seed=2, sun_time_scale=1.0, pv_peak=0.0)
    assert old.clock == new.clock == 10 * HOUR
    assert [old.step(60.0) for _ in range(5)] == [new.step(60.0) for _ in range(5)]
    with pytest.raises(ValueError, match="sun_time_scale"):
        SunnyIslandSimulator(si_bus, sun_time_scale=0.0)
    with pytest.raises(ValueError, match="start_time_of_day"):
        SunnyIslandSimulator(si_bus, start_time_of_day=math.nan)
    with pytest.raises(ValueError, match="pv_peak"):
        SunnyIslandSimulator(si_bus, pv_peak=-1.0)


async def test_sunny_island_sun_scale_speeds_the_plant_not_the_bms_timeout(
    si_bus: can.BusABC,
) -> None:
    """Sun scale 3600: an hour of the day per real second, while F952 still waits 60 s."""
    sim = SunnyIslandSimulator(si_bus, interval=0.05, sun_time_scale=3600.0, pv_peak=5000.0)
    start = sim.clock
    await sim.start()
    try:
        await asyncio.sleep(0.5)
        assert sim.fault is None  # 0.5 s without 0x355: scaled, F952 would be raised
        assert sim.events == []
    finally:
        await sim.stop()
    advanced = (sim.clock - start) % 86_400
    assert 0.4 * HOUR < advanced < 0.8 * HOUR
