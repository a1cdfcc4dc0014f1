"""The Sunny Boy address form: nearby classic Bluetooth devices from BlueZ, or manual entry.

This machine has no system D-Bus, so the one D-Bus call (``async_get_managed_objects``) is
replaced by a reply built the way BlueZ sends it: real ``dbus_fast`` Variants, marshalled into
a D-Bus method return and unmarshalled again. BlueZ lists a classic (BR/EDR) device with a
``Class`` property (0x1F00 "uncategorised" is what an SMA Bluetooth piggy-back reports), an
LE-only device without one; SMA's piggy-backs name themselves "SMA001d SN: <serial> …".
"""

from __future__ import annotations

import io
from typing import Any, ClassVar

from dbus_fast import Message, MessageType, Variant
from dbus_fast._private.unmarshaller import Unmarshaller
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import selector
import pytest

from custom_components.sma_victron_bridge.devices.sunny_boy import (
    bluez as sunny_boy_bluez,
    flow as config_flow_sunny_boy,
)
from custom_components.sma_victron_bridge.devices.sunny_boy.bluez import (
    ClassicDevice,
    async_discover_classic_devices,
    async_get_managed_objects,
    classic_devices,
)

from .test_sunny_boy import _configure, _start_flow

SMA = "00:80:25:12:34:56"
PHONE = "AC:37:43:0A:11:22"
SPEAKER = "11:75:58:AA:BB:CC"
BEACON = "E4:5F:01:00:00:01"


def _objects() -> dict[str, dict[str, dict[str, Variant]]]:
    """GetManagedObjects as BlueZ 5 answers on a host with one adapter."""
    base = "/org/bluez/hci0"
    return {
        "/": {"org.freedesktop.DBus.ObjectManager": {}},
        "/org/bluez": {"org.bluez.AgentManager1": {}, "org.bluez.ProfileManager1": {}},
        base: {
            "org.bluez.Adapter1": {
                "Address": Variant("s", "DC:A6:32:00:00:01"),
                "Class": Variant("u", 0x6C0000),
                "Powered": Variant("b", True),
            }
        },
        f"{base}/dev_AC_37_43_0A_11_22": {
            "org.bluez.Device1": {
                "Address": Variant("s", PHONE),
                "AddressType": Variant("s", "public"),
                "Name": Variant("s", "Pixel 7"),
                "Alias": Variant("s", "Pixel 7"),
                "Class": Variant("u", 0x5A020C),
                "RSSI": Variant("n", -71),
                "Paired": Variant("b", False),
            },
            "org.freedesktop.DBus.Properties": {},
        },
        f"{base}/dev_00_80_25_12_34_56": {
            "org.bluez.Device1": {
                "Address": Variant("s", SMA.lower()),
                "AddressType": Variant("s", "public"),
                "Name": Variant("s", "SMA001d SN: 2130012345 SN2130012345"),
                "Class": Variant("u", 0x1F00),
                "RSSI": Variant("n", -58),
            }
        },
        f"{base}/dev_11_75_58_AA_BB_CC": {
            "org.bluez.Device1": {
                "Address": Variant("s", SPEAKER),
                "Alias": Variant("s", "11-75-58-AA-BB-CC"),
                "Class": Variant("u", 0x240404),
            }
        },
        f"{base}/dev_E4_5F_01_00_00_01": {
            "org.bluez.Device1": {
                "Address": Variant("s", BEACON),
                "AddressType": Variant("s", "random"),
                "Name": Variant("s", "SmartSolar HQ2207"),
                "RSSI": Variant("n", -80),
            }
        },
        f"{base}/dev_00_00_00_00_00_09": {"org.bluez.Device1": {"Class": Variant("u", 0)}},
    }


def _as_received(objects: dict[str, Any]) -> Any:
    """The objects after a trip through the D-Bus wire format, as dbus-fast hands them over."""
    reply = Message(
        message_type=MessageType.METHOD_RETURN,
        reply_serial=1,
        sender=":1.4",
        signature="a{oa{sa{sv}}}",
        body=[objects],
    )
    stream: Any = io.BytesIO(reply._marshall(False))
    unmarshaller = Unmarshaller(stream)
    unmarshaller.unmarshall()
    received = unmarshaller.message
    assert received is not None
    return received.body[0]


def test_classic_devices_from_a_bluez_reply() -> None:
    devices = classic_devices(_as_received(_objects()))
    # The adapter, the LE-only Victron device and the entry without an address are left out;
    # the SMA inverter comes first, named devices before unnamed ones.
    assert devices == [
        ClassicDevice(SMA, "SMA001d SN: 2130012345 SN2130012345", -58),
        ClassicDevice(SPEAKER, "11-75-58-AA-BB-CC", None),
        ClassicDevice(PHONE, "Pixel 7", -71),
    ]
    assert devices[0].label == f"SMA001d SN: 2130012345 SN2130012345 ({SMA})"
    assert devices[0].looks_like_sma
    assert not devices[2].looks_like_sma
    assert ClassicDevice(PHONE, None).label == PHONE


def test_duplicates_and_strange_entries() -> None:
    objects: dict[str, Any] = {
        "/org/bluez/hci0/dev_00_80_25_12_34_56": {
            "org.bluez.Device1": {"Address": Variant("s", SMA), "Class": Variant("u", 0x1F00)}
        },
        "/org/bluez/hci1/dev_00_80_25_12_34_56": {
            "org.bluez.Device1": {
                "Address": Variant("s", SMA),
                "Class": Variant("u", 0x1F00),
                "Name": Variant("s", "SMA001d"),
            }
        },
        "/odd": "not a mapping",
        "/odder": {"org.bluez.Device1": ["not", "a", "mapping"]},
        "/short": {"org.bluez.Device1": {"Address": "00:80", "Class": 1}},
        "/plain": {"org.bluez.Device1": {"Address": PHONE, "Class": 1, "RSSI": True}},
    }
    assert classic_devices(objects) == [ClassicDevice(SMA, None), ClassicDevice(PHONE, None)]


async def test_no_system_bus_means_no_list() -> None:
    # The real call: this machine has no system D-Bus (and tests may not open sockets).
    assert await async_get_managed_objects() is None
    assert await async_discover_classic_devices() == []


class FakeSystemBus:
    """Stands in for the system bus connection only: BlueZ's answer is a real D-Bus message."""

    calls: ClassVar[list[Message]] = []
    reply: ClassVar[Message | None] = None

    def __init__(self, bus_type: Any) -> None:
        self.bus_type = bus_type

    async def connect(self) -> FakeSystemBus:
        return self

    async def call(self, message: Message) -> Message | None:
        FakeSystemBus.calls.append(message)
        return FakeSystemBus.reply

    def disconnect(self) -> None:
        pass


async def test_get_managed_objects_call(monkeypatch: pytest.MonkeyPatch) -> None:
    import dbus_fast.aio

    monkeypatch.setattr(dbus_fast.aio, "MessageBus", FakeSystemBus)
    FakeSystemBus.calls = []
    FakeSystemBus.reply = Message(
        message_type=MessageType.METHOD_RETURN,
        reply_serial=1,
        signature="a{oa{sa{sv}}}",
        body=[_as_received(_objects())],
    )
    objects = await async_get_managed_objects()
    assert objects is not None
    assert [d.address for d in classic_devices(objects)] == [SMA, SPEAKER, PHONE]
    call = FakeSystemBus.calls[0]
    assert (call.destination, call.path, call.interface, call.member) == (
        "org.bluez",
        "/",
        "org.freedesktop.DBus.ObjectManager",
        "GetManagedObjects",
    )
    # BlueZ not running: the bus answers with an error message.
    FakeSystemBus.reply = Message(
        message_type=MessageType.ERROR,
        reply_serial=1,
        error_name="org.freedesktop.DBus.Error.ServiceUnknown",
        signature="s",
        body=["The name org.bluez was not provided by any .service files"],
    )
    assert await async_get_managed_objects() is None
    FakeSystemBus.reply = Message(
        message_type=MessageType.METHOD_RETURN, reply_serial=1, signature="s", body=["odd"]
    )
    assert await async_get_managed_objects() is None


async def test_broken_reply_means_no_list(monkeypatch: pytest.MonkeyPatch) -> None:
    async def weird() -> Any:
        return {"/x": {"org.bluez.Device1": {"Address": SMA, "Class": 1, "Name": object()}}}

    monkeypatch.setattr(sunny_boy_bluez, "async_get_managed_objects", weird)
    assert await async_discover_classic_devices() == [ClassicDevice(SMA, None)]

    async def broken() -> Any:
        return {"/x": 5}

    monkeypatch.setattr(sunny_boy_bluez, "async_get_managed_objects", broken)
    assert await async_discover_classic_devices() == []

    class Exploding(dict[str, Any]):
        def values(self) -> Any:
            raise RuntimeError("bad reply")

    async def exploding() -> Any:
        return Exploding(x=1)

    monkeypatch.setattr(sunny_boy_bluez, "async_get_managed_objects", exploding)
    assert await async_discover_classic_devices() == []


async def _bluetooth_form(hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setattr(config_flow_sunny_boy, "bluetooth_available", lambda: True)
    flow_id = await _start_flow(hass)
    result = await _configure(hass, flow_id, {"transport": "bluetooth"})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "sunny_boy_bluetooth"
    return result


async def test_form_offers_the_nearby_devices(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0

    async def objects() -> Any:
        nonlocal calls
        calls += 1
        return _as_received(_objects())

    monkeypatch.setattr(sunny_boy_bluez, "async_get_managed_objects", objects)
    result = await _bluetooth_form(hass, monkeypatch)
    schema = result["data_schema"].schema
    key = next(k for k in schema if k == "bt_address")
    field = schema[key]
    assert isinstance(field, selector.SelectSelector)
    assert field.config["custom_value"] is True
    options: list[Any] = list(field.config["options"])
    assert [option["value"] for option in options] == [SMA, SPEAKER, PHONE]
    assert key.default() == SMA  # the inverter is preselected
    # A submitted form that fails shows the list again without asking BlueZ again.
    login = {"password": "0000", "user_group": "user"}
    result = await _configure(hass, result["flow_id"], {"bt_address": "00:80", **login})
    assert result["errors"] == {"bt_address": "invalid_address"}
    assert isinstance(result["data_schema"].schema[key], selector.SelectSelector)
    assert calls == 1


async def test_form_asks_by_hand_without_bluez(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def nothing() -> Any:
        return None

    monkeypatch.setattr(sunny_boy_bluez, "async_get_managed_objects", nothing)
    result = await _bluetooth_form(hass, monkeypatch)
    schema = result["data_schema"].schema
    key = next(k for k in schema if k == "bt_address")
    assert schema[key] is str


async def test_form_asks_by_hand_when_bluez_knows_no_classic_device(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def only_le() -> Any:
        objects = _objects()
        return {path: value for path, value in objects.items() if BEACON.replace(":", "_") in path}

    monkeypatch.setattr(sunny_boy_bluez, "async_get_managed_objects", only_le)
    result = await _bluetooth_form(hass, monkeypatch)
    schema = result["data_schema"].schema
    assert schema[next(k for k in schema if k == "bt_address")] is str
