"""CRC-64 (Redis "jones" variant: RDB trailer, DUMP footer) and CRC-16/XMODEM (cluster hash slots).

Both come from anycrc's table-driven C implementations; the check values are in the RDB format
reference §4.5 and §7.1 and are asserted by the tests.
"""

from __future__ import annotations

import anycrc

_CRC64 = anycrc.Model("CRC64-REDIS")
_CRC16 = anycrc.Model("CRC16-XMODEM")


def crc64(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-64-jones of data, continuing from a previous value (0 to start)."""
    return _CRC64.calc(data, crc) if crc else _CRC64.calc(data)


def crc16(data: bytes) -> int:
    """CRC-16/XMODEM, the hash behind cluster slots."""
    return _CRC16.calc(data)


def key_slot(key: bytes) -> int:
    """The cluster hash slot of a key, honouring {hash tags} the way Redis and Valkey do."""
    start = key.find(b"{")
    if start != -1:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    return _CRC16.calc(key) & 0x3FFF
