"""How to reach a Sunny Boy: entry keys, the link settings and the connection test.

Shared by the config flow (which tests the link before an entry exists) and the runtime (which
keeps it up). The timeouts are module attributes read at call time so that tests can shorten
them: a real inverter answers within milliseconds when it answers at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
import logging
import re
import socket
from typing import Any, Final

from ...const import CONF_PORT
from ...protocols import ProtocolError
from ...protocols.sma_client import (
    DeviceInfo as InverterInfo,
    FirmwareTooOld,
    InverterBusy,
    SunnyBoyClient,
    WrongPassword,
)
from ...protocols.sma_transport import (
    BluetoothUnavailable,
    PacketTransport,
    RfcommTransport,
    SpeedwireTransport,
)

_LOGGER = logging.getLogger(__name__)

CONF_TRANSPORT: Final = "transport"
CONF_HOST: Final = "host"
CONF_BT_ADDRESS: Final = "bt_address"
CONF_PASSWORD: Final = "password"  # noqa: S105 - the name of the field, not a secret
CONF_USER_GROUP: Final = "user_group"
CONF_MODEL: Final = "model"
CONF_SW_VERSION: Final = "sw_version"
CONF_HISTORY_DAYS: Final = "history_days"

TRANSPORT_BLUETOOTH: Final = "bluetooth"
TRANSPORT_SPEEDWIRE: Final = "speedwire"
USER_GROUP_USER: Final = "user"
USER_GROUP_INSTALLER: Final = "installer"
DEFAULT_PASSWORD: Final = "0000"  # noqa: S105 - every Sunny Boy's factory default
SPEEDWIRE_PORT: Final = 9522

DEFAULT_POLL_INTERVAL: Final = 30.0
DEFAULT_HISTORY_DAYS: Final = 7

REQUEST_TIMEOUT = 5.0
RETRIES = 2
CONNECT_TIMEOUT = 45.0
"""Whole connection (RFCOMM connect up to 15 s, handshake, log-on, first reading)."""

BT_ADDRESS_PATTERN: Final = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")

# Errors meaning "the inverter is not there now": reconnect later, never fail the entry.
UNREACHABLE: Final = (ProtocolError, OSError, TimeoutError)


def normalize_bt_address(address: str) -> str | None:
    """``aa-bb-cc-dd-ee-ff`` / ``AA:BB:…`` → ``AA:BB:CC:DD:EE:FF``; None if not an address."""
    cleaned = address.strip().upper().replace("-", ":")
    return cleaned if BT_ADDRESS_PATTERN.match(cleaned) else None


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """How to reach and log on to one inverter (from the flow's input or the entry)."""

    transport: str
    password: str
    installer: bool = False
    host: str | None = None
    port: int = SPEEDWIRE_PORT
    bt_address: str | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> LinkConfig:
        """The link described by an entry's data (or a flow's collected input)."""
        return cls(
            transport=data.get(CONF_TRANSPORT, TRANSPORT_SPEEDWIRE),
            password=data.get(CONF_PASSWORD, DEFAULT_PASSWORD),
            installer=data.get(CONF_USER_GROUP) == USER_GROUP_INSTALLER,
            host=data.get(CONF_HOST),
            port=int(data.get(CONF_PORT) or SPEEDWIRE_PORT),
            bt_address=data.get(CONF_BT_ADDRESS),
        )

    def create_transport(
        self, socket_factory: Callable[[], socket.socket] | None = None
    ) -> PacketTransport:
        """The RFCOMM or Speedwire transport of this link."""
        if self.transport == TRANSPORT_BLUETOOTH:
            return RfcommTransport(self.bt_address or "", socket_factory=socket_factory)
        return SpeedwireTransport(self.host or "", self.port)

    def create_client(
        self, socket_factory: Callable[[], socket.socket] | None = None
    ) -> SunnyBoyClient:
        """A client for this link; raises ProtocolError for a password it cannot encode."""
        return SunnyBoyClient(
            self.create_transport(socket_factory),
            self.password,
            installer=self.installer,
            request_timeout=REQUEST_TIMEOUT,
            retries=RETRIES,
        )


class SunnyBoyProbeError(Exception):
    """The connection test failed; ``reason`` is the flow's error key."""

    def __init__(self, reason: str) -> None:
        """Remember the error key."""
        super().__init__(reason)
        self.reason = reason


def title_for(info: InverterInfo) -> str:
    """Entry title: the type label and the serial number."""
    return f"{info.type_label or 'Sunny Boy'} {info.serial}"


async def async_probe_sunny_boy(
    link: LinkConfig, socket_factory: Callable[[], socket.socket] | None = None
) -> InverterInfo:
    """Connect, log on and read the inverter's identity; raise SunnyBoyProbeError.

    ``socket_factory`` hands over an already connected RFCOMM stream (as the runtime does
    for the simulated inverter).
    """
    try:
        client = link.create_client(socket_factory)
    except ProtocolError as err:
        raise SunnyBoyProbeError("invalid_password") from err
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await client.connect()
            return await client.read_device_info()
    except WrongPassword as err:
        raise SunnyBoyProbeError("wrong_password") from err
    except InverterBusy as err:
        raise SunnyBoyProbeError("inverter_busy") from err
    except FirmwareTooOld as err:
        raise SunnyBoyProbeError("firmware_too_old") from err
    except BluetoothUnavailable as err:
        raise SunnyBoyProbeError("bluetooth_unavailable") from err
    except UNREACHABLE as err:
        _LOGGER.debug("Sunny Boy connection test failed: %s", err)
        raise SunnyBoyProbeError("cannot_connect") from err
    finally:
        await client.close()
