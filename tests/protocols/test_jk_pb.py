"""JK PB bus codec against testdata/jk/jk_pb.json: triggers, replies with their ACK, the stream.

The bus client itself runs against the multi-pack simulator in tests/simulators/test_jk_sim.py.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.sma_victron_bridge.protocols import ProtocolError, jk02, jk_pb
from custom_components.sma_victron_bridge.protocols.bms_common import crc16_modbus

TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "jk"
CAPTURES: list[dict[str, Any]] = json.loads((TESTDATA / "jk_pb.json").read_text())
TRIGGERS = [entry for entry in CAPTURES if entry["frame"] == "jk_pb_modbus_fc10_trigger"]
REPLIES = [entry for entry in CAPTURES if entry["frame"] != "jk_pb_modbus_fc10_trigger"]
REPLY_BYTES = [bytes.fromhex(entry["hex"]) for entry in REPLIES]


def test_the_captures_are_all_here() -> None:
    assert (len(TRIGGERS), len(REPLIES)) == (5, 7)


@pytest.mark.parametrize("entry", TRIGGERS, ids=[entry["name"] for entry in TRIGGERS])
def test_triggers_are_byte_exact(entry: dict[str, Any]) -> None:
    expected = entry["expected"]
    raw = bytes.fromhex(entry["hex"])
    assert jk_pb.encode_trigger(expected["address"], expected["register"]) == raw
    trigger = jk_pb.parse_trigger(raw)
    assert (trigger.address, trigger.register) == (expected["address"], expected["register"])
    assert raw[1] == expected["function"]
    assert int.from_bytes(raw[7:9], "big") == expected["value"]


@pytest.mark.parametrize("entry", REPLIES, ids=[entry["name"] for entry in REPLIES])
def test_replies_split_into_frame_and_acknowledgement(entry: dict[str, Any]) -> None:
    raw = bytes.fromhex(entry["hex"])
    expected = entry["expected"]
    reply = jk_pb.split_reply(raw)
    ack = bytes.fromhex(expected["ack_hex"])
    assert raw.endswith(ack)
    assert jk_pb.encode_ack(reply.address, reply.register) == ack
    assert reply.address == expected.get("slave_address", 1)
    assert jk_pb.FRAME_TYPE_FOR_REGISTER[reply.register] == reply.frame[4]
    assert reply.frame == raw[: jk02.FRAME_LENGTH]
    # Each reply is the frame its trigger asked for, decoded as in test_jk02.
    if reply.register == jk_pb.REG_CELL_INFO:
        reading = jk02.parse_cell_info(reply.frame, jk02.LAYOUT_32S)
        assert reading.soc == expected["soc"]
        assert reading.current == expected["current"]
        assert reading.temperatures == (
            expected["temperature_1"],
            expected["temperature_2"],
            expected["temperature_3"],
            expected["temperature_4"],
        )
    elif reply.register == jk_pb.REG_DEVICE_INFO:
        info = jk02.parse_device_info(reply.frame)
        assert (info.model, info.serial) == (expected["vendor_id"], expected["serial_number"])
        assert jk02.layout_for(info) == jk02.LAYOUT_32S
    else:
        settings_frame = jk02.parse_settings(reply.frame)
        assert settings_frame.cell_count == expected["cell_count"]
        assert settings_frame.nominal_capacity == expected["nominal_capacity"]


def test_a_zero_byte_before_the_acknowledgement_is_tolerated() -> None:
    raw = REPLY_BYTES[0]
    padded = raw[:300] + b"\x00" + raw[300:]
    assert jk_pb.split_reply(padded).address == 1
    assembler = jk_pb.ReplyAssembler()
    assert assembler.feed(padded + b"\x00") == [padded]


def test_a_reply_waits_for_an_acknowledgement_behind_a_zero_byte() -> None:
    raw = REPLY_BYTES[1]
    padded = raw[:300] + b"\x00" + raw[300:]
    assembler = jk_pb.ReplyAssembler()
    assert assembler.feed(padded[:308]) == []
    assert assembler.feed(padded[308:]) == [padded]
    # An acknowledgement of a register that triggers nothing is no acknowledgement.
    body = b"\x01\x10\x16\x22\x00\x01"
    odd = raw[:300] + body + crc16_modbus(body).to_bytes(2, "little")
    assert jk_pb.ReplyAssembler().feed(odd) == []


def test_bad_replies_and_triggers() -> None:
    raw = REPLY_BYTES[0]
    with pytest.raises(ProtocolError, match="bytes"):
        jk_pb.split_reply(raw[:-1])
    with pytest.raises(ProtocolError, match="acknowledgement"):
        jk_pb.split_reply(raw[:-1] + bytes((raw[-1] ^ 1,)))
    with pytest.raises(ProtocolError, match="acknowledgement"):
        jk_pb.split_reply(raw[:300] + b"\x07" + raw[300:])
    # A device-info frame acknowledged as a cell-info trigger.
    wrong = raw[:300] + jk_pb.encode_ack(1, jk_pb.REG_CELL_INFO)
    with pytest.raises(ProtocolError, match="acknowledged"):
        jk_pb.split_reply(wrong)
    assert jk_pb.ReplyAssembler().feed(wrong) == []
    trigger = jk_pb.encode_trigger(1, jk_pb.REG_CELL_INFO)
    with pytest.raises(ProtocolError, match="bytes"):
        jk_pb.parse_trigger(trigger[:-1])
    with pytest.raises(ProtocolError, match="CRC"):
        jk_pb.parse_trigger(trigger[:-1] + b"\x00")
    with pytest.raises(ProtocolError, match="FC 0x10"):
        jk_pb.parse_trigger(b"\x01\x03" + trigger[2:])
    odd = b"\x01\x10\x12\x00\x00\x01\x02\x00\x00"
    with pytest.raises(ProtocolError, match="trigger register"):
        jk_pb.parse_trigger(odd + crc16_modbus(odd).to_bytes(2, "little"))
    with pytest.raises(ProtocolError, match="trigger register"):
        jk_pb.encode_trigger(1, 0x1200)
    with pytest.raises(ProtocolError, match="one byte"):
        jk_pb.encode_trigger(256, jk_pb.REG_CELL_INFO)


# --- the stream -------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", REPLY_BYTES[:2])
def test_assembler_survives_a_split_at_every_byte(raw: bytes) -> None:
    trigger = jk_pb.encode_trigger(1, jk_pb.REG_DEVICE_INFO)
    stream = trigger + raw  # a half-duplex adapter echoes the request first
    for cut in range(len(stream) + 1):
        assembler = jk_pb.ReplyAssembler()
        assert assembler.feed(stream[:cut]) + assembler.feed(stream[cut:]) == [raw]


def test_assembler_skips_garbage_corrupt_frames_and_orphan_frames() -> None:
    assembler = jk_pb.ReplyAssembler()
    corrupt = bytearray(REPLY_BYTES[2])
    corrupt[100] ^= 0x10
    orphan = REPLY_BYTES[3][:300] + b"\xff" * 8  # frame without a valid acknowledgement
    stream = b"\x55\xaa\xeb" + bytes(corrupt) + orphan + REPLY_BYTES[4] + b"\x00\x55"
    replies = [reply for byte in stream for reply in assembler.feed(bytes((byte,)))]
    assert replies == [REPLY_BYTES[4]]
    assert assembler.checksum_errors == 1
    assert assembler.discarded_bytes > 600


@settings(max_examples=200)
@given(st.lists(st.sampled_from(REPLY_BYTES) | st.binary(max_size=40), max_size=8), st.data())
def test_assembler_yields_every_reply_at_any_split(parts: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    assembler = jk_pb.ReplyAssembler()
    out: list[bytes] = []
    previous = 0
    for cut in [*cuts, len(stream)]:
        out += assembler.feed(stream[previous:cut])
        previous = cut
    iterator = iter(out)
    assert all(
        any(reply == wanted for reply in iterator) for wanted in parts if wanted in REPLY_BYTES
    )
    for reply in out:
        jk_pb.split_reply(reply)


@settings(max_examples=300)
@given(st.sampled_from(REPLY_BYTES), st.data())
def test_truncation_and_bit_flips_raise_only_protocol_error(
    raw: bytes, data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(raw)))
    mutated = bytearray(raw[:cut])
    for bit in data.draw(st.lists(st.integers(0, len(raw) * 8 - 1), max_size=4)):
        if bit // 8 < len(mutated):
            mutated[bit // 8] ^= 1 << bit % 8
    with contextlib.suppress(ProtocolError):
        reply = jk_pb.split_reply(bytes(mutated))
        jk02.parse_cell_info(reply.frame, jk02.LAYOUT_32S)
    with contextlib.suppress(ProtocolError):
        jk_pb.parse_trigger(bytes(mutated[:11]))
    jk_pb.ReplyAssembler().feed(bytes(mutated))


@settings(max_examples=300)
@given(st.binary(max_size=330))
def test_random_bytes_raise_only_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        jk_pb.split_reply(data)
    with contextlib.suppress(ProtocolError):
        jk_pb.split_reply(jk02.HEADER + data)
    with contextlib.suppress(ProtocolError):
        jk_pb.parse_trigger(data[:11])
    assert jk_pb.ReplyAssembler().feed(data) == [] or data.count(jk02.HEADER)
