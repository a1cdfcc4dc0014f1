"""The serial link both request/response BMS clients stand on, over real pseudo-terminals.

Hang-up detection on a real tty, and what an unplugged adapter does to the JK PB bus client:
the request fails before anything is written, and after the replug the port reopens and the
packs' identities are read again (the packs on the bus may have changed meanwhile).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from custom_components.sma_victron_bridge.protocols import jk_pb
from custom_components.sma_victron_bridge.protocols.bms_client import (
    BmsNotConnected,
    SerialBmsClient,
)
from custom_components.sma_victron_bridge.protocols.jk_pb import JkPbBus
from custom_components.sma_victron_bridge.protocols.serial_link import (
    SerialLink,
    hung_up,
    open_serial,
)
from custom_components.sma_victron_bridge.simulators.jk import JkPbBusSimulator
from custom_components.sma_victron_bridge.simulators.pty import PtySerialPort


def is_open(link: SerialLink[Any]) -> bool:
    """``link.connected`` read afresh (a plain attribute read would be narrowed by mypy)."""
    return link.connected


def test_both_clients_stand_on_the_link() -> None:
    assert issubclass(SerialBmsClient, SerialLink)
    assert issubclass(JkPbBus, SerialLink)


async def test_hung_up_follows_the_tty() -> None:
    port = PtySerialPort()
    await port.open(lambda _data: None)
    try:
        _reader, writer = await open_serial(port.path, 115200)
        serial = writer.transport.get_extra_info("serial")
        assert not hung_up(serial)
        await port.unplug()
        assert hung_up(serial)
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 2)
        # A closed port has no file descriptor left to ask: that counts as hung up too.
        assert hung_up(serial)
    finally:
        await port.close()
    # Nothing to poll (a transport without a tty behind it): not hung up.
    assert not hung_up(None)
    assert not hung_up(object())


async def test_bus_refuses_to_write_after_an_unplug_and_reopens_after_the_replug() -> None:
    sim = JkPbBusSimulator(addresses=(1,), frozen=True, seed=3)
    await sim.start()
    bus = JkPbBus(sim.port, timeout=0.5, retries=0)
    try:
        first = await bus.read(1)
        assert is_open(bus)
        sent = bus.bytes_sent
        await sim.unplug()
        # The reader has not run yet: the write itself sees the hang-up and sends nothing.
        with pytest.raises(BmsNotConnected, match="was disconnected"):
            await bus.read(1)
        assert bus.bytes_sent == sent
        await asyncio.sleep(0.05)
        assert not is_open(bus)
        with pytest.raises(BmsNotConnected, match="cannot open"):
            await bus.read(1)
        await sim.replug()
        sim.requests.clear()
        again = await bus.read(1)
        assert is_open(bus)
        # Reopened: identity first, then the values, exactly one trigger each.
        registers = [jk_pb.parse_trigger(request).register for request in sim.requests]
        assert registers == [jk_pb.REG_DEVICE_INFO, jk_pb.REG_CELL_INFO]
        assert bus.bytes_sent - sent == 2 * jk_pb.TRIGGER_LENGTH
        assert again.serial == first.serial
        assert again.reading.cell_voltages == first.reading.cell_voltages
    finally:
        await bus.close()
        await sim.stop()
    assert not is_open(bus)
