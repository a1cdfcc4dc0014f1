"""Nearby classic Bluetooth devices as BlueZ knows them, for the Sunny Boy address form.

Home Assistant's Bluetooth integration only tracks Bluetooth Low Energy; a Sunny Boy speaks
classic Bluetooth (RFCOMM). BlueZ, the Linux Bluetooth stack, keeps every device it has seen
or paired - classic ones included - as ``org.bluez.Device1`` objects; one D-Bus call
(``GetManagedObjects`` on its object manager) lists them. Classic (BR/EDR) devices carry a
``Class`` property (the class of device), LE-only ones do not.

Many hosts have no system D-Bus or no BlueZ (containers, other systems): then the list is
simply empty and the form asks for the address by hand. Nothing here may fail the flow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
import logging
from typing import Any, Final

_LOGGER = logging.getLogger(__name__)

BLUEZ_SERVICE: Final = "org.bluez"
OBJECT_MANAGER: Final = "org.freedesktop.DBus.ObjectManager"
DEVICE_INTERFACE: Final = "org.bluez.Device1"
DBUS_TIMEOUT: Final = 5.0
SMA_PREFIX: Final = "SMA"
"""Sunny Boys announce themselves as "SMA001d SN: …" (the Bluetooth piggy-back's name)."""

type ManagedObjects = Mapping[str, Mapping[str, Mapping[str, Any]]]


@dataclass(frozen=True, slots=True)
class ClassicDevice:
    """A classic Bluetooth device BlueZ knows: address, name and last signal (if any)."""

    address: str
    name: str | None
    rssi: int | None = None

    @property
    def label(self) -> str:
        """What the form shows: the name and the address."""
        return f"{self.name} ({self.address})" if self.name else self.address

    @property
    def looks_like_sma(self) -> bool:
        """SMA's Bluetooth piggy-backs name themselves "SMA…"."""
        return bool(self.name and self.name.upper().startswith(SMA_PREFIX))


def _plain(value: Any) -> Any:
    """A property's value: dbus-fast wraps them in ``Variant`` objects."""
    return getattr(value, "value", value)


def classic_devices(objects: ManagedObjects) -> list[ClassicDevice]:
    """Classic Bluetooth devices of a ``GetManagedObjects`` reply: SMA ones first.

    Entries that are not devices, LE-only devices (no ``Class``) and malformed entries are
    left out; each address appears once (a host with two adapters lists it twice).
    """
    found: dict[str, ClassicDevice] = {}
    for interfaces in objects.values():
        properties = interfaces.get(DEVICE_INTERFACE) if isinstance(interfaces, Mapping) else None
        if not isinstance(properties, Mapping) or "Class" not in properties:
            continue
        address = _plain(properties.get("Address"))
        if not isinstance(address, str) or len(address) != 17:
            continue
        name = _plain(properties.get("Name", properties.get("Alias")))
        rssi = _plain(properties.get("RSSI"))
        device = ClassicDevice(
            address=address.upper(),
            name=name if isinstance(name, str) and name else None,
            rssi=rssi if isinstance(rssi, int) and not isinstance(rssi, bool) else None,
        )
        found.setdefault(device.address, device)
    return sorted(
        found.values(),
        key=lambda d: (not d.looks_like_sma, d.name is None, (d.name or "").lower(), d.address),
    )


async def async_get_managed_objects() -> ManagedObjects | None:
    """BlueZ's objects over the system D-Bus; None when there is no D-Bus or no BlueZ."""
    try:
        from dbus_fast import BusType, Message, MessageType
        from dbus_fast.aio import MessageBus

        async with asyncio.timeout(DBUS_TIMEOUT):
            bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
            try:
                reply = await bus.call(
                    Message(
                        destination=BLUEZ_SERVICE,
                        path="/",
                        interface=OBJECT_MANAGER,
                        member="GetManagedObjects",
                    )
                )
            finally:
                bus.disconnect()
    except Exception as err:  # any D-Bus trouble means "ask by hand"
        _LOGGER.debug("No classic Bluetooth device list from BlueZ: %r", err)
        return None
    if reply is None or reply.message_type != MessageType.METHOD_RETURN or not reply.body:
        _LOGGER.debug("BlueZ gave no device list: %s", getattr(reply, "body", None))
        return None
    objects = reply.body[0]
    return objects if isinstance(objects, Mapping) else None


async def async_discover_classic_devices() -> list[ClassicDevice]:
    """Classic Bluetooth devices near this host, SMA first; empty where the host cannot tell."""
    objects = await async_get_managed_objects()
    if not objects:
        return []
    try:
        return classic_devices(objects)
    except Exception as err:  # a strange reply must not break the flow
        _LOGGER.debug("Unreadable BlueZ device list: %r", err)
        return []
