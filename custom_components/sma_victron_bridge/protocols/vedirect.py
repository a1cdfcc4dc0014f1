"""VE.Direct wire codec: the text protocol block parser and the HEX frame codec.

A VE.Direct port interleaves two protocols on one byte stream. The text protocol sends
blocks of ``\\r\\n<label>\\t<value>`` fields closed by ``\\r\\nChecksum\\t<byte>``; a block is
valid when all of its bytes sum to 0 mod 256. The HEX protocol sends ``:`` + hex digits +
``\\n`` lines, which a device may push at any moment, even in the middle of a text block or
straight after its checksum byte. HEX bytes are not part of the text checksum, so the parser
lifts HEX lines out of the stream before it assembles text blocks.

The parser works on whole chunks with ``bytes`` methods (``find``, ``split``, ``sum``)
instead of a per-byte state machine: a serial reader hands over a few hundred bytes at a
time and this is the hot path of every VE.Direct entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag
import re
from typing import Final

from . import ProtocolError

__all__ = [
    "MAX_BLOCK_BYTES",
    "MAX_HEX_LINE",
    "MAX_PENDING_HEX",
    "HexCommand",
    "HexFlags",
    "HexMessage",
    "HexResponse",
    "TextParser",
    "decode_hex",
    "encode_hex",
]

_CHECKSUM_FIELD: Final = b"\r\nChecksum\t"
# Offset from the start of ``_CHECKSUM_FIELD`` to the byte after the checksum value.
_CHECKSUM_END: Final = len(_CHECKSUM_FIELD) + 1

MAX_BLOCK_BYTES: Final = 2048
"""Text bytes kept without seeing a checksum before the parser gives up and resyncs.

The protocol allows 22 fields of at most 9 + 33 bytes (about 1 kB per block); anything much
longer is line noise and must not make the buffer grow.
"""

MAX_HEX_LINE: Final = 512
"""Longest HEX line accepted; the longest real frame (a 34 byte history record) is ~80 chars."""

MAX_PENDING_HEX: Final = 256
"""HEX lines kept for :meth:`TextParser.take_hex`; older ones are dropped (and counted)."""

_HEX_DIGITS: Final = re.compile(rb"[0-9A-Fa-f]+")
_HEX_CHECK: Final = 0x55


class HexCommand(IntEnum):
    """Command nibbles a host sends to a VE.Direct device."""

    ENTER_BOOT = 0x0
    PING = 0x1
    APP_VERSION = 0x3
    PRODUCT_ID = 0x4
    RESTART = 0x6
    GET = 0x7
    SET = 0x8
    ASYNC = 0xA


class HexResponse(IntEnum):
    """Response nibbles a VE.Direct device sends back."""

    DONE = 0x1
    UNKNOWN = 0x3
    ERROR = 0x4
    PING = 0x5
    GET = 0x7
    SET = 0x8
    ASYNC = 0xA


class HexFlags(IntFlag):
    """Flags byte of get/set replies; 0 means success."""

    OK = 0x00
    UNKNOWN_ID = 0x01
    NOT_SUPPORTED = 0x02
    PARAMETER_ERROR = 0x04


FRAMING_ERROR_VALUE: Final = b"\xaa\xaa"
"""Payload of the ``:4AAAAFD`` reply a device sends when it could not parse a frame."""

_REGISTER_COMMANDS: Final = frozenset({HexCommand.GET, HexCommand.SET, HexCommand.ASYNC})


@dataclass(frozen=True, slots=True)
class HexMessage:
    """One decoded HEX frame.

    For get, set and async frames (commands 7, 8, A) ``register`` and ``flags`` are filled in
    and ``value`` holds the bytes after them; for every other command both are ``None`` and
    ``value`` holds all data bytes. ``value`` is little-endian as on the wire; the check byte
    is not part of it.
    """

    command: int
    register: int | None
    flags: int | None
    value: bytes


def decode_hex(line: bytes) -> HexMessage:
    """Decode one HEX line (``:`` ... check, with or without the trailing newline)."""
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    if not line.startswith(b":"):
        raise ProtocolError(f"HEX frame does not start with ':': {line[:16]!r}")
    body = line[1:]
    if len(body) < 3 or len(body) % 2 == 0:
        raise ProtocolError(f"HEX frame has a bad length ({len(body)} digits)")
    if _HEX_DIGITS.fullmatch(body) is None:
        raise ProtocolError("HEX frame contains non-hex characters")
    command = int(body[:1], 16)
    data = bytes.fromhex(body[1:].decode("ascii"))
    if (command + sum(data)) & 0xFF != _HEX_CHECK:
        raise ProtocolError(f"HEX frame checksum mismatch: {line[:24]!r}")
    payload = data[:-1]
    if command in _REGISTER_COMMANDS:
        if len(payload) < 3:
            raise ProtocolError(f"HEX command {command:X} frame too short for id and flags")
        return HexMessage(
            command=command,
            register=payload[0] | payload[1] << 8,
            flags=payload[2],
            value=payload[3:],
        )
    return HexMessage(command=command, register=None, flags=None, value=payload)


def encode_hex(
    command: int, register: int | None = None, flags: int = 0, value: bytes = b""
) -> bytes:
    """Build one HEX frame, e.g. ``encode_hex(7, 0xEDF0) == b":7F0ED0071\\n"``.

    With ``register`` the data is the little-endian id, the flags byte and ``value``;
    without it the data is ``value`` alone (ping, product id, ...).
    """
    if not 0 <= command <= 0xF:
        raise ProtocolError(f"HEX command {command!r} is not a nibble")
    if register is None:
        data = bytes(value)
    else:
        if not 0 <= register <= 0xFFFF:
            raise ProtocolError(f"register id {register!r} out of range")
        if not 0 <= flags <= 0xFF:
            raise ProtocolError(f"flags {flags!r} out of range")
        data = bytes((register & 0xFF, register >> 8, flags)) + bytes(value)
    check = (_HEX_CHECK - command - sum(data)) & 0xFF
    return b":%X%s%02X\n" % (command, data.hex().upper().encode("ascii"), check)


class TextParser:
    """Incremental parser for a VE.Direct byte stream (text blocks plus HEX lines).

    ``feed`` returns the text blocks completed by the new bytes, each as label → raw value,
    only when its checksum is valid; a corrupted block is counted in ``checksum_errors`` and
    dropped as a whole. HEX lines found on the way are collected for :meth:`take_hex`.
    ``framing_errors`` counts text that never reached a checksum (oversize garbage) and valid
    blocks with malformed fields; ``hex_errors`` counts HEX lines that grew too long and
    ``hex_dropped`` lines discarded because nobody took them. Memory stays bounded by
    :data:`MAX_BLOCK_BYTES`, :data:`MAX_HEX_LINE` and :data:`MAX_PENDING_HEX` whatever arrives.

    The first block after start-up or a resync usually lacks its beginning; it is tried from
    its first field boundary and silently dropped (not counted) when it does not add up.
    """

    __slots__ = (
        "_hex",
        "_hex_overflow",
        "_pending_hex",
        "_scan",
        "_synced",
        "_text",
        "_text_overflow",
        "checksum_errors",
        "framing_errors",
        "hex_dropped",
        "hex_errors",
    )

    def __init__(self) -> None:
        """Start unsynchronised with empty buffers and zeroed counters."""
        self.checksum_errors = 0
        self.framing_errors = 0
        self.hex_errors = 0
        self.hex_dropped = 0
        self._text = bytearray()
        self._hex: bytearray | None = None
        self._hex_overflow = False
        self._text_overflow = False
        self._pending_hex: list[bytes] = []
        self._scan = 0
        self._synced = False

    def reset(self) -> None:
        """Forget partial data (after a reconnect); counters and collected HEX lines stay."""
        self._text.clear()
        self._hex = None
        self._hex_overflow = False
        self._text_overflow = False
        self._scan = 0
        self._synced = False

    def take_hex(self) -> list[bytes]:
        """Return the HEX lines (``:`` ... without newline) seen since the last call."""
        lines = self._pending_hex
        self._pending_hex = []
        return lines

    def feed(self, data: bytes) -> list[dict[str, str]]:
        """Add received bytes; return the checksum-valid text blocks they complete."""
        blocks: list[dict[str, str]] = []
        if self._hex is None and b":" not in data:
            self._text += data
        else:
            self._split_hex(data, blocks)
        self._extract_blocks(blocks)
        return blocks

    def _split_hex(self, data: bytes, blocks: list[dict[str, str]]) -> None:
        """Move HEX lines out of ``data`` and append the remaining text bytes.

        A ':' is a checksum byte when the unfinished block ends in a checksum label, so the
        blocks before it are cut off first: that decision then only depends on the byte
        sequence. A HEX line always runs to the next newline; one longer than
        :data:`MAX_HEX_LINE` is consumed but not stored. The outcome therefore does not
        depend on how the stream was chunked.
        """
        text = self._text
        pos = 0
        end = len(data)
        while pos < end:
            hex_line = self._hex
            if hex_line is not None:
                newline = data.find(b"\n", pos)
                stop = end if newline < 0 else newline
                if not self._hex_overflow:
                    if len(hex_line) + stop - pos > MAX_HEX_LINE:
                        self._hex_overflow = True
                        hex_line.clear()
                    else:
                        hex_line += data[pos:stop]
                if newline < 0:
                    return
                self._hex = None
                pos = newline + 1
                if self._hex_overflow:
                    self._hex_overflow = False
                    self.hex_errors += 1
                else:
                    self._push_hex(bytes(hex_line.rstrip(b"\r")))
                continue
            colon = data.find(b":", pos)
            if colon < 0:
                text += data[pos:]
                return
            text += data[pos:colon]
            pos = colon + 1
            self._extract_blocks(blocks)
            if text.endswith(_CHECKSUM_FIELD):
                # The checksum byte of a text block happens to be ':'.
                text.append(0x3A)
            else:
                self._hex = bytearray(b":")

    def _push_hex(self, line: bytes) -> None:
        pending = self._pending_hex
        if len(pending) >= MAX_PENDING_HEX:
            del pending[0]
            self.hex_dropped += 1
        pending.append(line)

    def _extract_blocks(self, blocks: list[dict[str, str]]) -> None:
        """Cut every complete block (up to and including its checksum byte) off the buffer."""
        text = self._text
        start = 0
        scan = self._scan
        size = len(text)
        while True:
            found = text.find(_CHECKSUM_FIELD, scan)
            if found < 0:
                scan = max(start, size - len(_CHECKSUM_FIELD) + 1)
                break
            stop = found + _CHECKSUM_END
            if stop > size:
                scan = found
                break
            self._finish_block(bytes(text[start:stop]), blocks)
            start = scan = stop
        if start:
            del text[:start]
            scan -= start
        excess = len(text) - MAX_BLOCK_BYTES
        if excess > 0:
            # No checksum in sight: only the newest MAX_BLOCK_BYTES can still matter.
            if not self._text_overflow:
                self._text_overflow = True
                self.framing_errors += 1
            del text[:excess]
            scan = max(0, scan - excess)
        self._scan = scan

    def _finish_block(self, block: bytes, blocks: list[dict[str, str]]) -> None:
        """Validate one candidate block and append its fields to ``blocks``."""
        if self._text_overflow or len(block) > MAX_BLOCK_BYTES:
            # Oversize: keep its newest part, exactly what a chunked feed would have kept.
            if not self._text_overflow:
                self.framing_errors += 1
            self._text_overflow = False
            self._synced = False
            block = block[-MAX_BLOCK_BYTES:]
        if not self._synced:
            # The start of this block was not seen: try it from its first field boundary.
            block = block[block.find(b"\r\n") :]
            self._synced = True
            if sum(block) & 0xFF:
                return
        elif sum(block) & 0xFF:
            self.checksum_errors += 1
            return
        fields: dict[str, str] = {}
        for line in block[:-_CHECKSUM_END].decode("latin-1").split("\r\n"):
            if line:
                label, tab, value = line.partition("\t")
                if not tab:
                    self.framing_errors += 1
                    return
                fields[label] = value
        if fields:
            blocks.append(fields)
