"""The Victron BLE simulators, observed through the real decoders.

Adverts are decrypted by our ``decode_advertisement`` and, independently, by ``victron-ble``
(PyPI), so the encryption and field packing are checked against a decoder that shares no code
with ours. The GATT peers are driven byte by byte with raw subscriptions: what they notify must
be the documented VREG stream (20-byte ATT notifications, end marker ``080319010e4100``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from victron_ble.devices import detect_device_type

from custom_components.sma_victron_bridge.protocols import ProtocolError
from custom_components.sma_victron_bridge.protocols.victron_ble import (
    MANUFACTURER_ID,
    RECORD_BATTERY_MONITOR,
    RECORD_DCDC_CONVERTER,
    RECORD_INVERTER,
    RECORD_KEYS,
    RECORD_SOLAR_CHARGER,
    RECORD_VE_BUS,
    KeyMismatch,
    UnsupportedRecord,
    decode_advertisement,
    key_decodes,
    parse_header,
    plausible,
)
from custom_components.sma_victron_bridge.protocols.victron_gatt import (
    END_OF_STREAM,
    KEEP_ALIVE,
    SMARTSHUNT_KEEP_ALIVE_UUID,
    SMARTSOLAR_BULK_UUID,
    SMARTSOLAR_CONTROL_UUID,
    SMARTSOLAR_SINGLE_UUID,
    GattDisconnected,
    GattError,
    GattNotPaired,
    VregStreamParser,
    decode_vreg,
    encode_vreg_item,
    encode_vreg_request,
    encode_vreg_write,
    smartshunt_uuid,
)
from custom_components.sma_victron_bridge.simulators.victron_ble import (
    SUPPORTED_RECORDS,
    FakeSmartShuntPeer,
    FakeVictronGattPeer,
    VictronAdvertiser,
)

KEY = bytes.fromhex("adeccb947395801a4dd45a2eaa44bf17")
OTHER_KEY = bytes.fromhex("11223344556677889900aabbccddeeff")  # another first byte
SAME_FIRST_BYTE = bytes.fromhex("ad00112233445566778899aabbccddee")  # passes the key check

MODELS = {
    RECORD_SOLAR_CHARGER: 0xA060,  # SmartSolar MPPT 100/20 48V
    RECORD_BATTERY_MONITOR: 0xA389,  # SmartShunt 500A/50mV
    RECORD_INVERTER: 0xA2B2,  # Phoenix Inverter Smart
    RECORD_DCDC_CONVERTER: 0xA3C2,  # Orion Smart
    RECORD_VE_BUS: 0xA3A0,  # VE.Bus Smart dongle
}
HOUR = 3600.0


def _day(record_type: int, seed: int = 1) -> tuple[VictronAdvertiser, list[bytes]]:
    """A simulated day in 15-minute steps (time_scale: one second is one hour)."""
    advertiser = VictronAdvertiser(
        record_type, key=KEY, model_id=MODELS[record_type], seed=seed, time_scale=3600
    )
    adverts = []
    for quarter in range(97):
        adverts.append(advertiser.next_advertisement(quarter / 4))
    return advertiser, adverts


@pytest.mark.parametrize("record_type", sorted(SUPPORTED_RECORDS))
def test_adverts_decode_to_the_values(record_type: int) -> None:
    advertiser = VictronAdvertiser(
        record_type, key=KEY, model_id=MODELS[record_type], seed=7, time_scale=600
    )
    for step in range(300):  # 300 adverts, 10 simulated minutes apart: two days
        advert = advertiser.next_advertisement(1000.0 + step)
        decoded = decode_advertisement(advert, KEY)
        assert decoded == advertiser.values
        assert set(decoded) == set(RECORD_KEYS[record_type])
        assert plausible(decoded), decoded
        header = parse_header(advert)
        assert (header.record_type, header.model_id, header.key_check) == (
            record_type,
            MODELS[record_type],
            KEY[0],
        )
        assert header.nonce == advertiser.nonce


def test_nonce_increments_and_wraps() -> None:
    advertiser = VictronAdvertiser(RECORD_SOLAR_CHARGER, key=KEY, model_id=0xA060, seed=2)
    advertiser.nonce = 0xFFFE
    nonces = [parse_header(advertiser.next_advertisement(float(t))).nonce for t in range(3)]
    assert nonces == [0xFFFF, 0x0000, 0x0001]


@pytest.mark.parametrize("record_type", sorted(SUPPORTED_RECORDS))
def test_wrong_key(record_type: int) -> None:
    _advertiser, adverts = _day(record_type, seed=3)
    for advert in adverts[:5]:
        with pytest.raises(KeyMismatch):
            decode_advertisement(advert, OTHER_KEY)
    # a key with the right first byte "decrypts" into random bits, which are not plausible
    passing = sum(key_decodes(advert, SAME_FIRST_BYTE) for advert in adverts)
    assert passing <= 1, f"{passing} of {len(adverts)} adverts passed with a wrong key"
    assert all(key_decodes(advert, KEY) for advert in adverts)


def test_independent_decoder_reads_the_same_values() -> None:
    solar, solar_adverts = _day(RECORD_SOLAR_CHARGER)
    theirs = detect_device_type(solar_adverts[-1])
    assert theirs is not None
    parsed: Any = theirs(KEY.hex()).parse(solar_adverts[-1])
    assert parsed.get_battery_voltage() == solar.values["battery_voltage"]
    assert parsed.get_battery_charging_current() == solar.values["battery_current"]
    assert parsed.get_solar_power() == solar.values["pv_power"]
    assert parsed.get_yield_today() == solar.values["yield_today"]
    assert parsed.get_external_device_load() == solar.values["load_current"]

    shunt, shunt_adverts = _day(RECORD_BATTERY_MONITOR)
    theirs = detect_device_type(shunt_adverts[-1])
    assert theirs is not None
    parsed = theirs(KEY.hex()).parse(shunt_adverts[-1])
    assert parsed.get_voltage() == shunt.values["voltage"]
    assert parsed.get_current() == shunt.values["current"]
    assert parsed.get_soc() == shunt.values["soc"]
    assert parsed.get_consumed_ah() == shunt.values["consumed_ah"]
    assert parsed.get_temperature() == shunt.values["temperature"]


def _series(record_type: int, key: str, seed: int = 1) -> list[float | int | None]:
    advertiser = VictronAdvertiser(
        record_type, key=KEY, model_id=MODELS[record_type], seed=seed, time_scale=3600
    )
    series = []
    for quarter in range(97):  # from 10:00 one day to 10:00 the next
        advertiser.next_advertisement(quarter / 4)
        series.append(advertiser.values[key])
    return series


def _numbers(series: list[float | int | None]) -> list[float]:
    assert all(isinstance(v, (int, float)) for v in series)
    return [float(v or 0) for v in series]


def test_solar_follows_the_sun() -> None:
    power = _series(RECORD_SOLAR_CHARGER, "pv_power")
    noon, evening, midnight = power[8], power[36], power[56]  # 12:00, 19:00, 00:00
    assert isinstance(noon, int)
    assert noon > 150
    assert evening == midnight == 0
    states = _series(RECORD_SOLAR_CHARGER, "charge_state")
    assert states[56] == 0  # off at night
    assert states[8] in (3, 4, 5)
    yields = _numbers(_series(RECORD_SOLAR_CHARGER, "yield_today"))
    assert yields[55] > 500  # just before midnight: the day's yield
    assert yields[57] == 0  # reset after midnight


def test_battery_charges_by_day_and_discharges_at_night() -> None:
    soc = _numbers(_series(RECORD_BATTERY_MONITOR, "soc"))
    current = _series(RECORD_BATTERY_MONITOR, "current")
    time_to_go = _series(RECORD_BATTERY_MONITOR, "time_to_go")
    assert soc[8] > soc[0]  # charged during the morning
    assert soc[80] < soc[56]  # discharged during the night (00:00 → 06:00)
    assert current[70] is not None
    assert current[70] < 0
    assert time_to_go[70] is not None
    assert time_to_go[70] > 60
    assert len(set(soc)) > 20  # values move


def test_dcdc_runs_with_the_engine() -> None:
    states = _series(RECORD_DCDC_CONVERTER, "charge_state")
    reasons = _series(RECORD_DCDC_CONVERTER, "off_reason")
    assert states[30] in (3, 5)  # 17:30: engine running
    assert reasons[30] == 0
    assert states[20] == 0  # 15:00: engine off
    assert reasons[20] == 0x80  # engine shutdown


def test_ve_bus_uses_the_grid_at_night() -> None:
    ac_in = _series(RECORD_VE_BUS, "ac_in_state")
    states = _series(RECORD_VE_BUS, "device_state")
    assert ac_in[64] == 0  # 02:00: AC input 1
    assert ac_in[20] == 2  # 15:00: not connected
    assert states[20] == 9  # inverting
    voltage = _numbers(_series(RECORD_VE_BUS, "battery_voltage"))
    assert all(48 < v < 58 for v in voltage)  # a 48 V system


def test_inverter_reports_its_ac_output() -> None:
    advertiser, _adverts = _day(RECORD_INVERTER)
    values = advertiser.values
    assert values["device_state"] == 9
    ac_voltage = values["ac_voltage"]
    assert isinstance(ac_voltage, float)
    assert 228 < ac_voltage < 232
    assert values["ac_apparent_power"] is not None


def test_seed_makes_adverts_reproducible() -> None:
    first = _day(RECORD_BATTERY_MONITOR, seed=11)[1]
    second = _day(RECORD_BATTERY_MONITOR, seed=11)[1]
    other = _day(RECORD_BATTERY_MONITOR, seed=12)[1]
    assert first == second
    assert first != other


def test_manufacturer_data_and_checks() -> None:
    advertiser = VictronAdvertiser(RECORD_INVERTER, key=KEY, model_id=0xA2B2, seed=1)
    data = advertiser.next_manufacturer_data(0.0)
    assert list(data) == [MANUFACTURER_ID]
    assert decode_advertisement(data[MANUFACTURER_ID], KEY) == advertiser.values
    with pytest.raises(UnsupportedRecord):
        VictronAdvertiser(0x0A, key=KEY, model_id=0xA3E5)
    with pytest.raises(ProtocolError):
        VictronAdvertiser(RECORD_INVERTER, key=KEY[:8], model_id=0xA2B2)


def test_long_gaps_skip_ahead() -> None:
    advertiser = VictronAdvertiser(RECORD_SOLAR_CHARGER, key=KEY, model_id=0xA060, seed=1)
    advertiser.next_advertisement(0.0)
    started = time.monotonic()
    advertiser.next_advertisement(10 * 86400.0)  # ten days later: at most a day is simulated
    assert time.monotonic() - started < 1.0
    assert plausible(advertiser.values)


# --- FakeVictronGattPeer -----------------------------------------------------------------------


class _Recorder:
    """Raw notifications per characteristic, as a Bluetooth stack would hand them over."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []

    def callback(self, uuid: str):  # type: ignore[no-untyped-def]
        return lambda data: self.received.append((uuid, data))

    def stream(self) -> bytes:
        return b"".join(data for uuid, data in self.received if uuid != SMARTSOLAR_CONTROL_UUID)


async def _subscribed(peer: FakeVictronGattPeer) -> _Recorder:
    recorder = _Recorder()
    for uuid in (SMARTSOLAR_CONTROL_UUID, SMARTSOLAR_SINGLE_UUID, SMARTSOLAR_BULK_UUID):
        await peer.start_notify(uuid, recorder.callback(uuid))
    return recorder


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


REGISTERS = {0xEDBB: bytes.fromhex("1b10"), 0xEDBC: bytes.fromhex("30750000")}


async def test_peer_answers_in_att_sized_notifications() -> None:
    peer = FakeVictronGattPeer(dict(REGISTERS))
    recorder = await _subscribed(peer)
    request = encode_vreg_request(0xEDBB, 3) + encode_vreg_request(0xEDBC, 3)
    await peer.write(SMARTSOLAR_SINGLE_UUID, request, True)
    assert recorder.received == []  # notifications come later, not inside the write
    await _settle()
    expected = bytes.fromhex("080319edbb421b10080319edbc4430750000080319010e4100")
    assert recorder.stream() == expected
    assert [len(data) for _uuid, data in recorder.received] == [20, 5]
    assert {uuid for uuid, _ in recorder.received} == {SMARTSOLAR_BULK_UUID}
    await peer.disconnect()


async def test_peer_answers_a_short_stream_on_the_single_characteristic() -> None:
    peer = FakeVictronGattPeer(dict(REGISTERS), end_marker=False)
    recorder = await _subscribed(peer)
    await peer.write(SMARTSOLAR_BULK_UUID, encode_vreg_request(0xEDBB, 1), True)
    await _settle()
    assert recorder.received == [(SMARTSOLAR_SINGLE_UUID, bytes.fromhex("080119edbb421b10"))]
    await peer.disconnect()


async def test_peer_reads_requests_split_across_writes() -> None:
    peer = FakeVictronGattPeer(dict(REGISTERS))
    recorder = await _subscribed(peer)
    request = encode_vreg_request(0xEDBB, 3) + encode_vreg_request(0xEDBC, 3)
    await peer.write(SMARTSOLAR_SINGLE_UUID, request[:8], True)
    await peer.write(SMARTSOLAR_BULK_UUID, request[8:], True)
    await _settle()
    parser = VregStreamParser()
    assert parser.feed(recorder.stream()) == [
        (0xEDBB, bytes.fromhex("1b10")),
        (0x010E, b"\x00"),
        (0xEDBC, bytes.fromhex("30750000")),
        (0x010E, b"\x00"),
    ]
    await peer.disconnect()


async def test_peer_acknowledges_control_writes_and_ignores_bad_requests() -> None:
    peer = FakeVictronGattPeer(dict(REGISTERS))
    recorder = await _subscribed(peer)
    for data in (b"\xfa\x80\xff", b"\xf9\x80", b"\x12\x34", b"\xf9\x41"):
        await peer.write(SMARTSOLAR_CONTROL_UUID, data, True)
    await peer.write(SMARTSOLAR_SINGLE_UUID, bytes.fromhex("0300"), True)  # not get/set
    await peer.write(SMARTSOLAR_SINGLE_UUID, encode_vreg_request(0x1234, 3), True)  # unknown
    await peer.write(SMARTSOLAR_SINGLE_UUID, encode_vreg_write(0xEDBB, b"\x00\x00", 3), True)
    await peer.write(SMARTSOLAR_SINGLE_UUID, encode_vreg_write(0x0093, b"\x10", 0), True)
    await _settle()
    assert recorder.received == [(SMARTSOLAR_CONTROL_UUID, bytes.fromhex("f901"))] * 3
    assert peer.bad_requests == 1
    assert peer.keep_alives == 0  # a one-byte keep-alive is not one
    assert peer.registers == REGISTERS  # only the load output and keep-alive can be set
    assert await peer.read(SMARTSOLAR_SINGLE_UUID) == b""
    await peer.disconnect()


async def test_peer_load_output_setting() -> None:
    peer = FakeVictronGattPeer(seed=1)
    recorder = await _subscribed(peer)
    await peer.write(SMARTSOLAR_SINGLE_UUID, encode_vreg_write(0xEDAB, b"\x04", 3), True)
    await peer.write(SMARTSOLAR_SINGLE_UUID, encode_vreg_write(0xEDAB, b"\x09", 3), True)
    await _settle()
    assert (
        recorder.stream()
        == (encode_vreg_item(0xEDAB, b"\x04") + END_OF_STREAM + encode_vreg_item(0xEDAB, b"\x04"))
        + END_OF_STREAM
    )  # 9 is no mode: the setting stays
    assert decode_vreg(0xEDA8, peer.registers[0xEDA8]) == 1
    await peer.disconnect()


async def test_peer_needs_pairing() -> None:
    peer = FakeVictronGattPeer(dict(REGISTERS), paired=False)
    with pytest.raises(GattNotPaired):
        await peer.start_notify(SMARTSOLAR_BULK_UUID, lambda data: None)
    with pytest.raises(GattNotPaired):
        await peer.write(SMARTSOLAR_SINGLE_UUID, KEEP_ALIVE, True)
    with pytest.raises(GattNotPaired):
        await peer.read(SMARTSOLAR_SINGLE_UUID)
    peer.paired = True
    with pytest.raises(GattError):
        await peer.start_notify("00002a00-0000-1000-8000-00805f9b34fb", lambda data: None)
    with pytest.raises(ValueError, match="chunk_size"):
        FakeVictronGattPeer(chunk_size=0)


async def test_peer_drop_mid_stream() -> None:
    peer = FakeVictronGattPeer(seed=2)
    drops: list[bool] = []
    peer.disconnected_callback = lambda: drops.append(True)
    recorder = await _subscribed(peer)
    peer.drop_after(2)
    requests = b"".join(encode_vreg_request(vreg, 3) for vreg in (0x0102, 0xEC5A, 0xED8D, 0xEDBC))
    await peer.write(SMARTSOLAR_SINGLE_UUID, requests, True)
    await _settle()
    assert len(recorder.received) == 2  # the rest of the stream never came
    assert peer.notifications_sent == 2
    assert not peer.is_connected
    assert drops == [True]
    peer.drop()  # already down: nothing more happens
    assert drops == [True]
    with pytest.raises(GattDisconnected):
        await peer.write(SMARTSOLAR_SINGLE_UUID, requests, True)


async def test_peer_drop_cancels_queued_notifications() -> None:
    peer = FakeVictronGattPeer(seed=3, latency=0.01)
    received: list[bytes] = []

    def first_then_drop(data: bytes) -> None:
        received.append(data)
        peer.drop()  # five more notifications of this answer are still queued as timers

    await peer.start_notify(SMARTSOLAR_BULK_UUID, first_then_drop)
    await peer.write(SMARTSOLAR_SINGLE_UUID, encode_vreg_request(0xEDBC, 3) * 10, True)
    await asyncio.sleep(0.1)
    assert len(received) == 1


async def test_peer_latency_keeps_order() -> None:
    peer = FakeVictronGattPeer(seed=4, latency=0.005, chunk_size=5)
    recorder = await _subscribed(peer)
    request = b"".join(encode_vreg_request(vreg, 3) for vreg in (0xEDBB, 0xEDBC, 0xED8D))
    started = time.monotonic()
    await peer.write(SMARTSOLAR_SINGLE_UUID, request, True)
    while len(recorder.stream()) < 26 + 7:
        await asyncio.sleep(0.005)
    assert time.monotonic() - started >= 0.005 * 6
    assert all(len(data) <= 5 for _uuid, data in recorder.received)
    items = VregStreamParser().feed(recorder.stream())
    assert [vreg for vreg, _ in items] == [0xEDBB, 0xEDBC, 0xED8D, 0x010E]
    await peer.disconnect()


async def test_peer_honours_the_keep_alive() -> None:
    peer = FakeVictronGattPeer(seed=5)
    await _subscribed(peer)
    await asyncio.sleep(0.05)
    assert peer.is_connected  # no keep-alive asked for yet: no timeout runs
    short = encode_vreg_write(0x0093, (200).to_bytes(2, "little"), 0)
    for _ in range(4):  # 200 ms asked for, renewed every 50 ms
        await peer.write(SMARTSOLAR_SINGLE_UUID, short, True)
        await asyncio.sleep(0.05)
    assert peer.is_connected
    assert peer.keep_alives == 4
    assert peer.keep_alive_ms == 200
    await asyncio.sleep(0.25)
    assert not peer.is_connected


async def test_peer_values_are_a_plausible_smartsolar() -> None:
    values = FakeVictronGattPeer(seed=6).values
    assert values["firmware"] == "1.65"
    assert values["battery_temperature"] is None
    assert values["adjustable_voltage_min"] == 8.0
    pv_power = values["pv_power"]
    battery_voltage = values["battery_voltage"]
    assert isinstance(pv_power, float)
    assert isinstance(battery_voltage, float)
    assert 50 < pv_power < 400  # mid-morning sun on a 400 W array
    assert 12.0 < battery_voltage < 14.6
    capabilities = FakeVictronGattPeer(seed=6, has_load_output=False).registers[0x0140]
    assert capabilities == bytes(4)


# --- FakeSmartShuntPeer ------------------------------------------------------------------------


async def test_shunt_peer_reads_and_notifies() -> None:
    peer = FakeSmartShuntPeer({"soc": 87.65, "voltage": 13.25, "current": -2.952})
    soc = smartshunt_uuid(0x0FFF)
    assert await peer.read(soc) == bytes.fromhex("3d22")
    assert await peer.read(smartshunt_uuid(0xED8C)) == bytes.fromhex("78f4ffff")
    assert await peer.read(smartshunt_uuid(0x0FFE)) == bytes.fromhex("ffff")  # not given
    received: list[bytes] = []
    await peer.start_notify(soc, received.append)
    peer.update(soc=87.651, voltage=13.3)  # the same at 0.01 %: no notification for SOC
    peer.update(soc=50.0)
    await _settle()
    assert received == [bytes.fromhex("8813")]
    assert peer.values["soc"] == 50.0
    assert peer.values["voltage"] == 13.3
    with pytest.raises(KeyError):
        peer.update(temperature=20.0)
    await peer.disconnect()
    peer.update(soc=10.0)  # no subscriber gets anything once the link is down
    await _settle()
    assert received == [bytes.fromhex("8813")]


async def test_shunt_peer_keep_alive() -> None:
    peer = FakeSmartShuntPeer(seed=1, initial_timeout=0.03)
    assert await peer.read(SMARTSHUNT_KEEP_ALIVE_UUID) == bytes(2)
    await asyncio.sleep(0.05)
    assert not peer.is_connected  # nothing written within the first timeout

    peer = FakeSmartShuntPeer(seed=1, initial_timeout=0.03)
    await peer.write(SMARTSHUNT_KEEP_ALIVE_UUID, (300).to_bytes(2, "little"), True)
    assert await peer.read(SMARTSHUNT_KEEP_ALIVE_UUID) == bytes.fromhex("2c01")
    await asyncio.sleep(0.1)
    assert peer.is_connected  # the 300 ms asked for replaced the first 30 ms
    await asyncio.sleep(0.3)
    assert not peer.is_connected


async def test_shunt_peer_refuses() -> None:
    peer = FakeSmartShuntPeer(seed=2)
    with pytest.raises(GattError):
        await peer.write(smartshunt_uuid(0x0FFF), b"\x00\x00", True)
    with pytest.raises(GattError):
        await peer.write(SMARTSHUNT_KEEP_ALIVE_UUID, b"\x00", True)
    with pytest.raises(GattError):
        await peer.read(smartshunt_uuid(0xEDBB))
    await peer.disconnect()
    with pytest.raises(GattDisconnected):
        await peer.read(smartshunt_uuid(0x0FFF))
    unpaired = FakeSmartShuntPeer(seed=2, paired=False)
    with pytest.raises(GattNotPaired):
        await unpaired.read(smartshunt_uuid(0x0FFF))


def test_shunt_peer_default_values() -> None:
    values = FakeSmartShuntPeer(seed=4).values
    assert set(values) == {"soc", "voltage", "power", "current", "consumed_ah", "time_to_go"}
    soc, current, consumed = values["soc"], values["current"], values["consumed_ah"]
    assert isinstance(soc, float)
    assert 0 < soc < 100
    assert isinstance(current, float)
    assert current < 0  # evening: the house load discharges the battery
    assert isinstance(consumed, float)
    assert consumed < 0
    assert values["time_to_go"] is not None
