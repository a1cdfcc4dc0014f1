"""Pure protocol codecs and async clients for SMA and Victron devices.

Nothing in this package imports Home Assistant: the codecs are a library that can be tested,
benchmarked and fuzzed on its own. Every decoder raises :class:`ProtocolError` (or a subclass)
for bad checksums, lengths or shapes, and nothing else.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Bytes from a device (or a request to one) do not follow the protocol."""


__all__ = ["ProtocolError"]
