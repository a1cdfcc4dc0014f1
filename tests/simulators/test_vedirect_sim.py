"""The VE.Direct simulator, observed as a client sees it: through the PTY and the real codec.

Expected HEX frames are the examples of the VE.Direct HEX protocol document (rev 10, §1.3) and
of PROTOCOLS.md §3; the text block layout is the one of the captures in testdata/vedirect.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
import contextlib
import errno
import itertools
import os
import re
import time

from hypothesis import given, strategies as st
import pytest
import serial_asyncio_fast

from custom_components.sma_victron_bridge.protocols.vedirect import (
    TextParser,
    decode_hex,
)
from custom_components.sma_victron_bridge.protocols.vedirect_fields import decode_register
from custom_components.sma_victron_bridge.simulators.vedirect import (
    BMV_PRODUCT_ID,
    MPPT_PRODUCT_ID,
    VeDirectSimulator,
    encode_text_block,
)

FAST = 0.05  # s between blocks in these tests
STATUS = b":70F20001F\n"  # get 0x200F, network status

MPPT_LABELS = [
    "PID", "FW", "SER#", "V", "I", "VPV", "PPV", "CS", "MPPT", "OR", "ERR", "LOAD", "IL",
    "H19", "H20", "H21", "H22", "H23", "HSDS",
]  # fmt: skip
BMV_LABELS_1 = [
    "PID", "V", "VS", "I", "P", "CE", "SOC", "TTG", "Alarm", "Relay", "AR", "BMV", "FW", "MON",
]  # fmt: skip
BMV_LABELS_2 = [
    "H1", "H2", "H3", "H4", "H5", "H6", "H7", "H8", "H9", "H10", "H11", "H12", "H15", "H16",
    "H17", "H18",
]  # fmt: skip


class VeClient:
    """A VE.Direct client: opens the port path, feeds everything into the real TextParser."""

    def __init__(self, path: str) -> None:
        self.loop = asyncio.get_running_loop()
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.parser = TextParser()
        self.raw = bytearray()
        self.blocks: list[tuple[float, dict[str, str]]] = []
        self.hex: list[bytes] = []
        self.eof = False
        self.error: OSError | None = None
        self._arrived = asyncio.Event()
        self.loop.add_reader(self.fd, self._ready)

    def _ready(self) -> None:
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError as err:
            self.error = err
            chunk = b""
        if not chunk:
            self.eof = True
            self.loop.remove_reader(self.fd)
        self.raw += chunk
        now = self.loop.time()
        self.blocks.extend((now, block) for block in self.parser.feed(chunk))
        self.hex.extend(self.parser.take_hex())
        self._arrived.set()

    async def wait_for(self, done: Callable[[], bool], timeout: float = 2.0) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                self._arrived.clear()
                await self._arrived.wait()

    async def next_blocks(self, count: int, timeout: float = 2.0) -> list[dict[str, str]]:
        start = len(self.blocks)
        await self.wait_for(lambda: len(self.blocks) >= start + count, timeout)
        return [block for _, block in self.blocks[start : start + count]]

    async def ask(self, line: bytes, timeout: float = 1.0) -> bytes:
        """Send one HEX line and return the first reply to it (async ``:A`` lines skipped)."""
        start = len(self.hex)
        os.write(self.fd, line)

        def replies() -> list[bytes]:
            return [reply for reply in self.hex[start:] if not reply.startswith(b":A")]

        await self.wait_for(lambda: bool(replies()), timeout)
        return replies()[0]

    def close(self) -> None:
        if not self.eof:
            self.loop.remove_reader(self.fd)
        with contextlib.suppress(OSError):
            os.close(self.fd)


@contextlib.asynccontextmanager
async def running(
    model: str = "mppt", **kwargs: float | str | None
) -> AsyncIterator[tuple[VeDirectSimulator, VeClient]]:
    kwargs.setdefault("interval", FAST)
    kwargs.setdefault("seed", 1)
    sim = VeDirectSimulator(model, **kwargs)  # type: ignore[arg-type]
    await sim.start()
    client = VeClient(sim.port)
    try:
        yield sim, client
    finally:
        client.close()
        await sim.stop()


async def test_mppt_sends_checksummed_blocks_in_the_real_field_order() -> None:
    async with running("mppt", serial_number="HQ2211ABCDE") as (sim, client):
        blocks = await client.next_blocks(8)
        assert client.parser.checksum_errors == 0
        for block in blocks:
            assert list(block) == MPPT_LABELS
            assert block["PID"] == "0xA053"  # SmartSolar MPPT 75|15
            assert block["FW"] == "161"
            assert block["SER#"] == "HQ2211ABCDE"
            assert block["ERR"] == "0"
            assert 11_000 < int(block["V"]) < 15_000  # mV, 12 V battery
            assert block["CS"] in {"0", "3", "4", "5"}
            assert block["MPPT"] in {"0", "1", "2"}
            assert re.fullmatch(r"0x[0-9A-F]{8}", block["OR"])
            assert block["LOAD"] in {"ON", "OFF"}
        # Mid-morning with sun: charging in bulk, tracking the maximum power point.
        assert blocks[0]["CS"] == "3"
        assert int(blocks[0]["PPV"]) > 50
        assert int(blocks[0]["VPV"]) > 25_000
        assert len({block["V"] for block in blocks}) > 1  # values move
        assert sim.product_id == MPPT_PRODUCT_ID
        assert sim.model == "mppt"
        assert sim.serial_number == "HQ2211ABCDE"

        # One block per interval (the first blocks may have queued before the client opened).
        times = [at for at, _ in client.blocks[-6:]]
        gaps = sorted(b - a for a, b in itertools.pairwise(times))
        assert 0.6 * FAST < gaps[len(gaps) // 2] < 1.6 * FAST


async def test_each_block_sums_to_zero_on_the_wire() -> None:
    async with running("mppt") as (_, client):
        await client.next_blocks(3)
        raw = bytes(client.raw)
        ends = [m.end() + 1 for m in re.finditer(rb"\r\nChecksum\t", raw)]
        blocks = [raw[a:b] for a, b in itertools.pairwise(ends)]
        assert blocks
        for block in blocks:
            assert block.startswith(b"\r\nPID\t0xA053\r\n")
            assert sum(block) % 256 == 0


async def test_bmv_sends_two_alternating_blocks() -> None:
    async with running("bmv", serial_number="HQ2103XYZ12") as (sim, client):
        blocks = await client.next_blocks(6)
        assert client.parser.checksum_errors == 0
        first = 0 if list(blocks[0]) == BMV_LABELS_1 else 1
        for index, block in enumerate(blocks):
            expected = BMV_LABELS_1 if (index - first) % 2 == 0 else BMV_LABELS_2
            assert list(block) == expected
        main = next(block for block in blocks if "PID" in block)
        assert main["PID"] == "0xA381"  # BMV-712 Smart
        assert main["BMV"] == "712 Smart"
        assert main["FW"] == "0416"
        assert main["Alarm"] == "OFF"
        assert 0 <= int(main["SOC"]) <= 1000
        assert int(main["CE"]) <= 0
        assert 11_000 < int(main["V"]) < 15_000
        assert sim.product_id == BMV_PRODUCT_ID
        assert sim.serial_number == "HQ2103XYZ12"


async def test_identity_commands_answer_as_documented() -> None:
    async with running("mppt") as (_, client):
        # Ping: ":5" + version 0x4161 = application firmware 1.61 (cf. ":51641F9" for 1.16).
        assert await client.ask(b":154\n") == b":56141AE"
        # Application version: the same version word in a "done" reply (cf. ":11641FD").
        assert await client.ask(b":352\n") == b":16141B2"
        # Product id: ":1" + PID little-endian (cf. ":1000351" for 0x0300).
        assert await client.ask(b":451\n") == b":153A061"
        # Unknown command 2: ":3" + the command (document example).
        assert await client.ask(b":253\n") == b":3020050"
        # Wrong check byte: framing error (document example).
        assert await client.ask(b":452\n") == b":4AAAAFD"
        # Enter-boot is refused: "unable to enter bootloader" (payload 0).
        assert await client.ask(b":055\n") == b":4000051"
        # Restart has no reply: the next reply is the ping's.
        start = len(client.hex)
        os.write(client.fd, b":64F\n")
        assert await client.ask(b":154\n") == b":56141AE"
        assert [line for line in client.hex[start:] if not line.startswith(b":A")] == [b":56141AE"]
        # An async frame from the host is not answered either.
        assert await client.ask(b":A0102000543\n:154\n") == b":56141AE"


async def test_bmv_identity() -> None:
    async with running("bmv") as (_, client):
        assert await client.ask(b":451\n") == b":181A330"  # 0xA381
        assert decode_hex(await client.ask(b":154\n")).value == b"\x16\x44"  # 4.16


async def test_get_and_set_follow_the_register_store() -> None:
    async with running("mppt") as (sim, client):
        # Battery maximum current 15.0 A: the document's get example, byte for byte.
        assert await client.ask(b":7F0ED0071\n") == b":7F0ED009600DB"
        # Set it to 10.0 A: echoed with the new value.
        assert await client.ask(b":8F0ED0064000C\n") == b":8F0ED0064000C"
        assert sim.registers[0xEDF0] == b"\x64\x00"
        assert sim.writes[-1][1:] == (0xEDF0, b"\x64\x00")
        assert await client.ask(b":7F0ED0071\n") == b":7F0ED0064000D"
        # Out of range (20.0 A on a 15 A charger): parameter error, value unchanged.
        assert await client.ask(b":8F0ED00C800A8\n") == b":8F0ED04640008"
        # Wrong width (one byte for a u16): parameter error.
        reply = decode_hex(await client.ask(req(":8F0ED0064")))
        assert (reply.command, reply.flags) == (8, 0x04)
        # Float voltage 7.00 V: below the 8 V the charger accepts for a 12 V system.
        reply = decode_hex(await client.ask(req(":8F6ED00BC02")))
        assert (reply.register, reply.flags, reply.value) == (0xEDF6, 0x04, b"\x64\x05")
        # Unknown id, and the byte-swapped id of 0xEDF0: flag 0x01.
        assert await client.ask(b":734120107\n") == b":734120107"
        assert await client.ask(b":7EDF00071\n") == b":7EDF00170"
        reply = decode_hex(await client.ask(req(":83412000000")))
        assert (reply.register, reply.flags) == (0x1234, 0x01)
        # Read-only (charger voltage): flag 0x02 and the current value.
        reply = decode_hex(await client.ask(req(":8D5ED000005")))
        assert (reply.register, reply.flags) == (0xEDD5, 0x02)
        assert reply.value == sim.registers[0xEDD5]
        assert len(sim.writes) == 6  # every set is recorded, accepted or not


async def test_total_dc_input_power_is_not_available_until_a_master_writes_it() -> None:
    async with running("mppt") as (_sim, client):
        reply = decode_hex(await client.ask(req(":7272000")))
        assert (reply.register, reply.flags, reply.value) == (0x2027, 0, b"\xff\xff\xff\xff")
        assert decode_register(0x2027, reply.value) is None
        # 12.34 W summed by a master: the charger then reports it.
        await client.ask(req(":8272000D2040000"))
        reply = decode_hex(await client.ask(req(":7272000")))
        assert decode_register(0x2027, reply.value) == 12.34


async def test_load_output_control_switches_the_load() -> None:
    async with running("mppt") as (sim, client):
        off = req(":8ABED0000")
        assert decode_hex(await client.ask(off)).flags == 0
        assert sim.registers[0xEDA8] == b"\x00"  # load output state follows at once
        block = (await client.next_blocks(2))[-1]
        assert (block["LOAD"], block["IL"]) == ("OFF", "0")
        on = req(":8ABED0004")
        assert decode_hex(await client.ask(on)).flags == 0
        block = (await client.next_blocks(2))[-1]
        assert block["LOAD"] == "ON"
        assert int(block["IL"]) > 0
        # User defined levels (mode 5): switch off below 13.50 V, on above 14.50 V. The
        # battery sits near 12.7 V, so the output drops with "battery low" as off reason.
        assert decode_hex(await client.ask(req(":89CED004605"))).flags == 0
        assert decode_hex(await client.ask(req(":89DED00AA05"))).flags == 0
        assert decode_hex(await client.ask(req(":8ABED0005"))).flags == 0
        assert (sim.registers[0xEDA8], sim.registers[0xED91]) == (b"\x00", b"\x01")
        assert (await client.next_blocks(2))[-1]["LOAD"] == "OFF"
        # Off below 11.00 V, on above 12.00 V: the battery is above both, the load returns.
        assert decode_hex(await client.ask(req(":89CED004C04"))).flags == 0
        assert decode_hex(await client.ask(req(":89DED00B004"))).flags == 0
        assert (sim.registers[0xEDA8], sim.registers[0xED91]) == (b"\x01", b"\x00")
        # ALT1 (off < 11.1 V) and ALT2 (off < 11.8 V) keep a 12.7 V battery's load on.
        for mode in (":8ABED0002", ":8ABED0003"):
            assert decode_hex(await client.ask(req(mode))).flags == 0
            assert sim.registers[0xEDA8] == b"\x01"


async def test_charge_current_limit_caps_the_battery_current() -> None:
    async with running("mppt") as (sim, client):
        blocks = await client.next_blocks(2)
        assert int(blocks[-1]["I"]) > 6_000  # bulk, about 11 A from the sun
        limit = req(":8152000" + "3200")  # 0x2015 = 5.0 A
        assert decode_hex(await client.ask(limit)).flags == 0
        blocks = await client.next_blocks(3)
        assert all(int(block["I"]) <= 5_100 for block in blocks[1:])
        assert sim.registers[0x2015] == b"\x32\x00"


async def test_a_stalled_event_loop_does_not_cause_a_burst() -> None:
    async with running("mppt") as (_, client):
        await client.next_blocks(2)
        end = time.monotonic() + FAST * 6
        while time.monotonic() < end:  # the loop is blocked: nothing can be sent
            pass
        stalled = len(client.blocks)
        await asyncio.sleep(FAST * 2.5)
        assert len(client.blocks) - stalled <= 4  # not the six missed blocks at once


async def test_device_mode_off_stops_charging() -> None:
    async with running("mppt") as (sim, client):
        # Writing 0 ("charger off") reads back as 4, like firmware 1.17 and later.
        off = req(":800020000")
        reply = decode_hex(await client.ask(off))
        assert (reply.flags, reply.value) == (0, b"\x04")
        block = (await client.next_blocks(2))[-1]
        assert (block["CS"], block["OR"], block["PPV"]) == ("0", "0x00000004", "0")
        assert sim.registers[0x0201] == b"\x00"
        bad = req(":800020002")
        assert decode_hex(await client.ask(bad)).flags == 0x04
        on = req(":800020001")
        assert decode_hex(await client.ask(on)).value == b"\x01"
        block = (await client.next_blocks(2))[-1]
        assert block["CS"] != "0"


async def test_battery_sense_is_used_released_and_expires() -> None:
    # time_scale 240: the 60 s sense timeout is 0.25 s, the 2 min async window 0.5 s.
    async with running("mppt", time_scale=240) as (sim, client):
        assert await client.ask(STATUS) == b":70F2000041B"  # stand-alone
        # 13.18 V and 23.50 °C, the examples of PROTOCOLS.md: echoed, recorded, used.
        assert await client.ask(b":8022000260500\n") == b":8022000260500"
        assert await client.ask(b":80320002E09F3\n") == b":80320002E09F3"
        assert [(reg, value) for _, reg, value in sim.writes] == [
            (0x2002, b"\x26\x05"),
            (0x2003, b"\x2e\x09"),
        ]
        assert sim.writes[0][0] <= sim.writes[1][0]
        assert await client.ask(STATUS) == b":70F2000C45B"  # VSENSE + TSENSE
        # The charger now shows the remote battery temperature: 296.65 K.
        assert await client.ask(req(":7ECED00")) == b":7ECED00E17321"

        # Releasing: 0xFFFF / 0x7FFF end the use at once.
        assert await client.ask(b":8022000FFFF2D\n") == b":8022000FFFF2D"
        assert await client.ask(STATUS) == b":70F200044DB"  # TSENSE only
        assert await client.ask(b":8032000FF7FAC\n") == b":8032000FF7FAC"
        assert await client.ask(STATUS) == b":70F2000041B"
        assert await client.ask(req(":7ECED00")) == b":7ECED00FFFF77"  # not available

        # Written once and then left alone: the charger drops it after the (scaled) 60 s.
        assert await client.ask(b":8022000260500\n") == b":8022000260500"
        assert await client.ask(STATUS) == b":70F2000849B"
        await asyncio.sleep(0.35)
        assert await client.ask(STATUS) == b":70F2000041B"
        assert await client.ask(req(":7022000")) == b":7022000FFFF2E"
        # ... and, like firmware 1.26+, announced the timeout with an async 0xFFFF.
        assert b":A022000FFFF2B" in client.hex


async def test_sensed_voltage_drives_the_charge_algorithm() -> None:
    async with running("mppt", time_scale=240) as (sim, client):
        block = (await client.next_blocks(1))[0]
        assert block["CS"] == "3"
        # A sensed voltage 20 V away from the terminals is ignored (±5 V window) ...
        far = req(":8022000D007")  # 20.00 V
        assert decode_hex(await client.ask(far)).flags == 0
        assert sim.registers[0x200F] == b"\x04"
        # ... one at the absorption voltage ends bulk: the charger believes the battery.
        at_absorption = req(":8022000A405")  # 14.44 V
        assert decode_hex(await client.ask(at_absorption)).flags == 0
        assert sim.registers[0x200F] == b"\x84"
        block = (await client.next_blocks(2))[-1]
        assert block["CS"] == "4"
        assert sim.registers[0x0201] == b"\x04"


async def test_async_messages_flow_while_hex_traffic_lasts() -> None:
    async with running("mppt", time_scale=480) as (_, client):
        await client.next_blocks(3)
        assert not [line for line in client.hex if line.startswith(b":A")]  # no HEX yet
        await client.ask(b":154\n")
        await client.next_blocks(3)
        async_lines = [line for line in client.hex if line.startswith(b":A")]
        assert async_lines
        registers = {decode_hex(line).register for line in async_lines}
        assert 0xEDD5 in registers  # charger voltage changes with every block
        # 2 minutes (0.25 s scaled) after the last incoming HEX they stop.
        await asyncio.sleep(0.35)
        quiet = len(client.hex)
        await client.next_blocks(4)
        assert len(client.hex) == quiet


async def test_bmv_sends_no_async_messages() -> None:
    async with running("bmv") as (_, client):
        await client.ask(b":154\n")
        await client.next_blocks(4)
        assert all(not line.startswith(b":A") for line in client.hex)


async def test_bmv_registers() -> None:
    async with running("bmv") as (sim, client):
        soc = decode_hex(await client.ask(b":7FF0F0040\n"))
        assert (soc.register, soc.flags) == (0x0FFF, 0)
        assert 0 <= int.from_bytes(soc.value, "little") <= 10_000  # 0.01 %
        temperature = decode_hex(await client.ask(req(":7ECED00")))
        kelvin = int.from_bytes(temperature.value, "little") / 100
        assert 273.15 < kelvin < 323.15
        volts = decode_hex(await client.ask(req(":78DED00")))
        assert 11.0 < int.from_bytes(volts.value, "little", signed=True) / 100 < 15.0
        # Battery capacity is a setting: 200 Ah → 100 Ah.
        set_capacity = req(":80010006400")
        assert decode_hex(await client.ask(set_capacity)).flags == 0
        assert sim.registers[0x1000] == b"\x64\x00"
        # Battery sense registers exist on the MPPT only.
        assert decode_hex(await client.ask(b":8022000260500\n")).flags == 0x01


async def test_replies_never_land_inside_a_text_block() -> None:
    async with running("mppt", interval=0.02) as (_, client):
        for _ in range(30):
            await client.ask(b":154\n")
        await client.next_blocks(2)
        raw = bytes(client.raw)
        starts = [m.start() for m in re.finditer(rb":[0-9A-F]+\n", raw)]
        assert len(starts) >= 30
        for start in starts:
            after_hex_line = raw[start - 1 : start] == b"\n" and raw[start - 2 : start - 1] != b"\r"
            after_checksum = raw[start - 12 : start - 1] == b"\r\nChecksum\t"
            assert start == 0 or after_hex_line or after_checksum, raw[start - 30 : start + 5]
        assert client.parser.checksum_errors == 0


async def test_garbage_on_the_line_costs_at_most_one_block() -> None:
    async with running("mppt") as (sim, client):
        await client.next_blocks(1)
        sim.inject_garbage(b"\x00\xffNOISE\r\n\t\x80")
        sim.inject_garbage()  # 48 random bytes
        blocks = await client.next_blocks(3)
        assert b"\x00\xffNOISE\r\n\t\x80" in client.raw
        assert all(list(block) == MPPT_LABELS for block in blocks)
        assert client.parser.checksum_errors <= 1


async def test_malformed_input_never_breaks_the_device() -> None:
    async with running("mppt") as (sim, client):
        noise = bytes(range(256)) * 4  # every byte value, including ':' and '\n'
        os.write(client.fd, noise)
        os.write(client.fd, b"no frame start here\n")
        os.write(client.fd, b":" + b"7" * 2000)  # an endless line: dropped, not buffered
        await asyncio.sleep(0.05)
        os.write(client.fd, b"\n:7F0ED\n:XYZ\n:7F0ED00\n")  # odd length, non-hex, no check
        await asyncio.sleep(0.1)
        assert await client.ask(b":154\n") == b":56141AE"
        assert await client.ask(b":7F0ED0071\r\n") == b":7F0ED009600DB"  # CR tolerated
        assert await client.ask(b"junk:154\n") == b":56141AE"  # frame starts at the colon
        blocks = await client.next_blocks(2)
        assert all(list(block) == MPPT_LABELS for block in blocks)
        assert client.hex.count(b":4AAAAFD") >= 3
        assert not sim.writes


async def test_silent_device_sends_and_answers_nothing() -> None:
    async with running("mppt") as (sim, client):
        await client.next_blocks(1)
        sim.set_silent(True)
        await asyncio.sleep(FAST * 2)
        seen = len(client.blocks)
        os.write(client.fd, b":154\n")
        await asyncio.sleep(FAST * 4)
        assert len(client.blocks) == seen
        assert b":56141AE" not in client.hex
        sim.set_silent(False)
        await client.next_blocks(2)
        assert await client.ask(b":154\n") == b":56141AE"


async def test_corrupt_checksums_are_rejected_by_a_receiver() -> None:
    async with running("mppt") as (sim, client):
        await client.next_blocks(1)
        sim.set_corrupt_checksums(True)
        await client.wait_for(lambda: client.parser.checksum_errors >= 3)
        valid = len(client.blocks)
        await asyncio.sleep(FAST * 2)
        assert len(client.blocks) <= valid + 1  # at most one in flight when switched
        sim.set_corrupt_checksums(False)
        await client.next_blocks(2)


async def test_unplug_and_replug() -> None:
    async with running("mppt") as (sim, client):
        path = sim.port
        await client.next_blocks(1)
        await sim.unplug()
        assert not sim.plugged
        await client.wait_for(lambda: client.eof)
        assert client.error is None or client.error.errno == errno.EIO
        assert not os.path.lexists(path)
        sim.inject_garbage()  # nowhere to go: dropped
        await asyncio.sleep(FAST * 2)
        await sim.replug()
        assert sim.port == path
        assert os.readlink(path).startswith("/dev/pts/")
        again = VeClient(path)
        try:
            blocks = await again.next_blocks(2)
            assert all(list(block) == MPPT_LABELS for block in blocks)
            assert await again.ask(b":451\n") == b":153A061"
        finally:
            again.close()


async def test_serial_asyncio_fast_client_reads_the_simulator() -> None:
    """Home Assistant's serial library on the simulated port, as the integration uses it."""
    sim = VeDirectSimulator("mppt", interval=FAST, seed=4)
    await sim.start()
    reader, writer = await serial_asyncio_fast.open_serial_connection(url=sim.port, baudrate=19200)
    try:
        parser = TextParser()
        blocks: list[dict[str, str]] = []
        async with asyncio.timeout(2):
            while len(blocks) < 2:
                blocks += parser.feed(await reader.read(1024))
        assert list(blocks[-1]) == MPPT_LABELS
        parser.take_hex()
        writer.write(b":451\n")
        replies: list[bytes] = []
        async with asyncio.timeout(2):
            while b":153A061" not in replies:
                parser.feed(await reader.read(1024))
                replies += parser.take_hex()
    finally:
        writer.close()
        await sim.stop()


async def test_a_seed_makes_values_reproducible() -> None:
    runs = []
    for seed in (11, 11, 12):
        async with running("mppt", seed=seed) as (_, client):
            runs.append(await client.next_blocks(4))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert runs[0][0]["SER#"] != runs[2][0]["SER#"]  # the serial number comes from the seed
    assert re.fullmatch(r"HQ\d{4}[A-Z0-9]{5}", runs[0][0]["SER#"])

    bmv_runs = []
    for _ in range(2):
        async with running("bmv", seed=5) as (_, client):
            bmv_runs.append(await client.next_blocks(4))
    assert bmv_runs[0] == bmv_runs[1]


async def test_set_value_overrides_and_adds_fields() -> None:
    async with running("mppt") as (sim, client):
        sim.set_value("V", "12345")
        sim.set_value("Relay", "OFF")  # not sent by this model: appended to the block
        block = (await client.next_blocks(2))[-1]
        assert block["V"] == "12345"
        assert list(block) == [*MPPT_LABELS, "Relay"]
        with pytest.raises(UnicodeEncodeError):
            sim.set_value("V", "\u20ac")
    async with running("bmv") as (sim, client):
        sim.set_value("H17", "7000")
        blocks = await client.next_blocks(4)
        assert [block["H17"] for block in blocks if "H17" in block] == ["7000", "7000"]


async def test_a_simulated_day() -> None:
    """A day in a second: sun curve, bulk → absorption → float, night, yields, counters."""
    async with (
        running("mppt", interval=0.005, time_scale=86_400, seed=3) as (_, mppt),
        running("bmv", interval=0.005, time_scale=86_400, seed=3) as (_, bmv),
    ):
        # A small battery (20 Ah) on the BMV, so one evening drains it completely.
        assert decode_hex(await bmv.ask(req(":80010001400"))).flags == 0
        # 432 simulated seconds per block: 10:00 → next day 10:30 takes 205 blocks.
        await mppt.wait_for(lambda: len(mppt.blocks) >= 205, timeout=8)
        await bmv.wait_for(lambda: len(bmv.blocks) >= 2 * 205, timeout=8)
        days = [block for _, block in mppt.blocks]
        states = [block["CS"] for block in days]
        compact = [state for i, state in enumerate(states) if i == 0 or states[i - 1] != state]
        assert compact[:5] == ["3", "4", "5", "0", "3"]
        night = [block for block in days if block["CS"] == "0"]
        assert all(block["PPV"] == "0" for block in night)
        assert all(block["OR"] == "0x00000001" for block in night)  # no input power
        dark = [block for block in night if int(block["VPV"]) < 1000]
        assert len(dark) > len(night) / 2  # dusk and dawn still show some panel voltage
        assert all(int(block["I"]) < 0 for block in night)  # the load runs from the battery
        rollover = next(i for i in range(1, len(days)) if days[i]["HSDS"] != days[i - 1]["HSDS"])
        before, after = days[rollover - 1], days[rollover]
        assert int(after["HSDS"]) == (int(before["HSDS"]) + 1) % 365
        assert after["H22"] == before["H20"]  # yesterday's yield
        assert after["H23"] == before["H21"]  # yesterday's maximum power
        assert int(before["H20"]) > 30  # > 0.3 kWh harvested
        assert int(after["H20"]) == 0
        totals = [int(block["H19"]) for block in days]
        assert totals == sorted(totals)
        assert int(days[-1]["H20"]) > 0  # the next morning harvests again

        mains = [block for _, block in bmv.blocks if "SOC" in block]
        history = [block for _, block in bmv.blocks if "H1" in block]
        socs = [int(block["SOC"]) for block in mains]
        assert max(socs) == 1000
        assert min(socs) == 0
        charging = [block for block in mains if int(block["I"]) > 100]
        discharging = [block for block in mains if int(block["I"]) < -100]
        assert charging
        assert discharging
        assert all(block["TTG"] == "-1" for block in charging)
        assert all(int(block["TTG"]) >= 0 for block in discharging)
        assert any(int(block["TTG"]) > 0 for block in discharging)
        assert {(block["Alarm"], block["AR"]) for block in mains} == {("OFF", "0"), ("ON", "4")}
        assert int(history[-1]["H17"]) > int(history[0]["H17"])  # discharged energy
        assert int(history[-1]["H18"]) > int(history[0]["H18"])  # charged energy
        assert int(history[-1]["H10"]) > int(history[0]["H10"])  # synchronised when full
        assert int(history[-1]["H6"]) < int(history[0]["H6"])  # cumulative Ah drawn
        assert int(history[-1]["H4"]) == int(history[0]["H4"]) + 1  # one charge cycle
        assert int(history[-1]["H5"]) == int(history[0]["H5"]) + 1  # one full discharge
        assert int(history[-1]["H9"]) < 86_400  # seconds since full: reset this morning


async def test_lifecycle_and_arguments() -> None:
    with pytest.raises(ValueError, match="model"):
        VeDirectSimulator("inverter")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="interval"):
        VeDirectSimulator(interval=0)
    with pytest.raises(ValueError, match="time_scale"):
        VeDirectSimulator(time_scale=-1)
    never_started = VeDirectSimulator()
    assert never_started.plugged is False
    await never_started.stop()
    sim = VeDirectSimulator(interval=FAST)
    await sim.start()
    await sim.start()  # already running: no second sender
    assert sim.plugged
    await sim.stop()
    await sim.stop()
    assert not os.path.lexists(sim.port)
    with pytest.raises(RuntimeError):
        await sim.start()


@given(
    st.lists(
        st.tuples(
            st.text(st.characters(codec="latin-1", exclude_characters="\t\r\n:"), min_size=1),
            st.text(st.characters(codec="latin-1", exclude_characters="\r\n:"), max_size=33),
        ),
        min_size=1,
        max_size=22,
        unique_by=lambda field: field[0],
    ).filter(lambda fields: all(label != "Checksum" for label, _ in fields))
)
def test_encoded_blocks_parse_back(fields: list[tuple[str, str]]) -> None:
    """Whatever the fields, a block sums to zero and the real parser returns it unchanged."""
    parser = TextParser()
    block = encode_text_block(fields)
    assert sum(block) % 256 == 0
    # A leading block brings the parser in sync, as on a live line.
    assert parser.feed(encode_text_block([("PID", "0xA053")]) + block) == [
        {"PID": "0xA053"},
        dict(fields),
    ]
    parser.feed(encode_text_block(fields, corrupt=True))
    assert parser.checksum_errors == 1


def req(frame: str) -> bytes:
    """A hand-written request: the frame's hex digits plus its check byte and newline."""
    command, data = int(frame[1], 16), bytes.fromhex(frame[2:])
    return frame.encode() + b"%02X\n" % ((0x55 - command - sum(data)) & 0xFF)


async def test_block_written_hook_sees_every_block() -> None:
    """Benchmarks timestamp the wire with this hook: it must fire once per written block."""
    sim = VeDirectSimulator("bmv", interval=0.05, seed=4)
    seen: list[list[tuple[str, str]]] = []
    sim.on_block_written = seen.append
    await sim.start()
    try:
        sim.set_value("SOC", "512")
        await asyncio.sleep(0.3)
    finally:
        await sim.stop()
    assert len(seen) >= 4
    first_blocks = [dict(block) for block in seen if "SOC" in dict(block)]
    assert first_blocks
    assert first_blocks[-1]["SOC"] == "512"
    # The BMV sends its two blocks per interval: history counters travel in the second one.
    assert any("H18" in dict(block) for block in seen)
