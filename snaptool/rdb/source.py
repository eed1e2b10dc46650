"""A buffered byte source over any binary stream: offsets, CRC-64, raw capture and spill to disk.

The reader and the value decoders read primitives (lengths, strings, doubles) through this class, so
one implementation serves files, pipes, sockets and decrypting streams alike. It never needs to seek.

Raw capture is what makes passthrough cheap: while a record is parsed its bytes stay in the buffer
and come out as one slice. A record larger than ``spill_threshold`` is moved to a temporary file as
it is read, so memory stays bounded by the buffer however big a key is.
"""

from __future__ import annotations

import struct
import tempfile
from typing import BinaryIO

import lzf

from ..errors import RdbError
from .checksum import crc64

_UNPACK_D = struct.Struct("<d").unpack_from
_UNPACK_I = struct.Struct("<i").unpack_from
_UNPACK_Q = struct.Struct("<q").unpack_from

#: LZF turns at most 3 input bytes into 264 output bytes, so a larger claimed size is a lie.
LZF_MAX_RATIO = 88

CHUNK = 1 << 20
SPILL_THRESHOLD = 16 << 20


class Spill:
    """Raw bytes of one large record, kept in a temporary file instead of memory."""

    def __init__(self) -> None:
        self.file: BinaryIO = tempfile.TemporaryFile()
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self.file.write(data)
        self.size += len(data)

    def open(self) -> BinaryIO:
        """The bytes from the start. It is the same handle each time, so only one reader at a time."""
        self.file.seek(0)
        return self.file

    def getvalue(self) -> bytes:
        self.file.seek(0)
        return self.file.read()

    def close(self) -> None:
        self.file.close()

    def __len__(self) -> int:
        return self.size


Raw = bytes | Spill


class Source:
    """Reads RDB primitives from a binary stream, tracking the absolute offset and the CRC-64."""

    __slots__ = ("_f", "_buf", "_pos", "_base", "_crc", "_crc_pos", "_cap", "_spill", "path",
                 "chunk", "spill_threshold", "_eof", "track_crc")

    def __init__(self, fileobj: BinaryIO | None, *, path: str | None = None, data: bytes = b"",
                 base: int = 0, chunk: int = CHUNK, spill_threshold: int = SPILL_THRESHOLD,
                 track_crc: bool = True) -> None:
        self._f = fileobj
        self._buf = data
        self._pos = 0
        self._base = base
        self._crc = 0
        self._crc_pos = 0
        self._cap: int | None = None
        self._spill: Spill | None = None
        self._eof = fileobj is None
        self.path = path
        self.chunk = chunk
        self.spill_threshold = spill_threshold
        self.track_crc = track_crc

    @classmethod
    def from_bytes(cls, data: bytes, *, base: int = 0, path: str | None = None) -> "Source":
        """A source over bytes already in memory (a captured record, a DUMP payload)."""
        return cls(None, data=data, base=base, path=path, track_crc=False)

    # -- position and errors -------------------------------------------------------------------

    @property
    def offset(self) -> int:
        """Absolute offset of the next byte to be read."""
        return self._base + self._pos

    def error(self, message: str, offset: int | None = None) -> RdbError:
        return RdbError(message, offset=self.offset if offset is None else offset, path=self.path)

    def at_end(self) -> bool:
        """True when no byte is left (reads ahead if needed)."""
        if self._pos < len(self._buf):
            return False
        self._fill(1)
        return self._pos >= len(self._buf)

    # -- buffer management ---------------------------------------------------------------------

    def _fill(self, n: int) -> None:
        """Try to have n bytes after pos; stops short only at end of input."""
        buf, pos = self._buf, self._pos
        if self.track_crc and pos > self._crc_pos:
            self._crc = crc64(memoryview(buf)[self._crc_pos:pos], self._crc)
            self._crc_pos = pos
        keep = pos
        cap = self._cap
        if cap is not None:
            if self._spill is None and pos - cap > self.spill_threshold:
                self._spill = Spill()
            if self._spill is not None:
                self._spill.write(memoryview(buf)[cap:pos])
                self._cap = cap = pos
            keep = cap
        if self._eof:
            if keep:
                self._buf = buf[keep:]
                self._shift(keep)
            return
        parts = [buf[keep:]] if keep < len(buf) else []
        have = len(buf) - pos
        # Each refill copies what is kept; reading more as a capture grows (up to a quarter of the
        # spill threshold) keeps that copying from turning quadratic without inflating the buffer.
        floor = max(self.chunk, min(pos - keep, self.spill_threshold // 4))
        while have < n:
            want = max(floor, min(n - have, self.chunk * 4))
            data = self._f.read(want)
            if not data:
                self._eof = True
                break
            parts.append(data)
            have += len(data)
        self._buf = b"".join(parts)
        self._shift(keep)

    def _shift(self, keep: int) -> None:
        self._base += keep
        self._pos -= keep
        self._crc_pos -= keep
        if self._cap is not None:
            self._cap -= keep

    def _need(self, n: int) -> None:
        if len(self._buf) - self._pos < n:
            self._fill(n)
            if len(self._buf) - self._pos < n:
                left = len(self._buf) - self._pos
                raise self.error(f"unexpected end of data: needed {n} bytes, {left} left")

    # -- raw bytes -----------------------------------------------------------------------------

    def read(self, n: int) -> bytes:
        """Exactly n bytes (the caller has bounded n by what the data can justify)."""
        pos = self._pos
        end = pos + n
        if end > len(self._buf):
            if n > self.chunk and self._cap is None:
                return self._read_large(n)
            self._need(n)
            pos = self._pos
            end = pos + n
        self._pos = end
        return self._buf[pos:end]

    def _read_large(self, n: int) -> bytes:
        parts = []
        while n:
            step = min(n, self.chunk)
            parts.append(self.read(step))
            n -= step
        return b"".join(parts)

    def skip(self, n: int) -> None:
        """Move past n bytes without keeping them (unless a capture is running, which spills)."""
        while n:
            avail = len(self._buf) - self._pos
            if avail >= n:
                self._pos += n
                return
            self._pos += avail
            n -= avail
            self._fill(min(n, self.chunk))
            if len(self._buf) - self._pos == 0:
                raise self.error(f"unexpected end of data: {n} more bytes needed")

    def u8(self) -> int:
        pos = self._pos
        if pos >= len(self._buf):
            self._need(1)
            pos = self._pos
        self._pos = pos + 1
        return self._buf[pos]

    def _fixed(self, unpack, size: int):
        self._need(size)
        pos = self._pos
        self._pos = pos + size
        return unpack(self._buf, pos)[0]

    def ms_time(self) -> int:
        """8-byte little-endian signed milliseconds."""
        return self._fixed(_UNPACK_Q, 8)

    def int32(self) -> int:
        """4-byte little-endian signed seconds (the pre-RDB-3 EXPIRETIME)."""
        return self._fixed(_UNPACK_I, 4)

    def double(self) -> float:
        """8-byte little-endian IEEE double (ZSET_2 scores)."""
        return self._fixed(_UNPACK_D, 8)

    def legacy_double(self) -> float:
        """Pre-RDB-8 zset score: length byte (253 NaN, 254 +inf, 255 -inf) and ASCII text."""
        n = self.u8()
        if n == 253:
            return float("nan")
        if n == 254:
            return float("inf")
        if n == 255:
            return float("-inf")
        start = self.offset
        text = self.read(n)
        try:
            return float(text)
        except ValueError:
            raise self.error(f"score {text[:40]!r} is not a number", start) from None

    def skip_legacy_double(self) -> None:
        n = self.u8()
        if n < 253:
            self.skip(n)

    # -- lengths and strings -------------------------------------------------------------------

    def length(self) -> int:
        """An RDB length (§4.1); a string special encoding here is corrupt."""
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            self._need(1)
            buf, pos = self._buf, self._pos
        b = buf[pos]
        if b < 0x40:
            self._pos = pos + 1
            return b
        if b < 0x80:
            if pos + 2 > len(buf):
                self._need(2)
                buf, pos = self._buf, self._pos
            self._pos = pos + 2
            return ((b & 0x3F) << 8) | buf[pos + 1]
        if b == 0x80:
            if pos + 5 > len(buf):
                self._need(5)
                buf, pos = self._buf, self._pos
            self._pos = pos + 5
            return int.from_bytes(buf[pos + 1:pos + 5], "big")
        if b == 0x81:
            if pos + 9 > len(buf):
                self._need(9)
                buf, pos = self._buf, self._pos
            self._pos = pos + 9
            return int.from_bytes(buf[pos + 1:pos + 9], "big")
        if b >= 0xC0:
            raise self.error(f"expected a length, found string encoding 0x{b:02x}")
        raise self.error(f"unknown length encoding 0x{b:02x}")

    def _lzf_sizes(self) -> tuple[int, int]:
        start = self.offset
        clen = self.length()
        ulen = self.length()
        if clen == 0 or ulen > clen * LZF_MAX_RATIO + 64:  # fastscan applies the same bound
            raise self.error(f"LZF string claims {ulen} bytes from {clen} compressed bytes", start)
        return clen, ulen

    def string(self) -> bytes:
        """An RDB String decoded to bytes (ints as decimal text, LZF decompressed)."""
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            self._need(1)
            buf, pos = self._buf, self._pos
        b = buf[pos]
        if b < 0x40:  # short raw string, the common case
            end = pos + 1 + b
            if end <= len(buf):
                self._pos = end
                return buf[pos + 1:end]
            self._pos = pos + 1
            return self.read(b)
        if b < 0xC0:
            return self.read(self.length())
        enc = b & 0x3F
        if enc <= 2:  # INT8/16/32, little-endian, returned as decimal text
            width = (1, 2, 4)[enc]
            self._need(1 + width)
            pos = self._pos
            self._pos = pos + 1 + width
            return b"%d" % int.from_bytes(self._buf[pos + 1:pos + 1 + width], "little", signed=True)
        if enc == 3:
            start = self.offset
            self._pos += 1
            clen, ulen = self._lzf_sizes()
            data = self.read(clen)
            try:
                out = lzf.decompress(data, ulen) if ulen else b""
            except ValueError:
                out = None
            if out is None or len(out) != ulen:
                raise self.error(f"LZF data does not decompress to the stated {ulen} bytes", start)
            return out
        raise self.error(f"unknown string encoding 0x{b:02x}")

    def skip_string(self) -> None:
        """Move past an RDB String without decoding it."""
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            self._need(1)
            buf, pos = self._buf, self._pos
        b = buf[pos]
        if b < 0x40:
            end = pos + 1 + b
            if end <= len(buf):
                self._pos = end
                return
            self._pos = pos + 1
            self.skip(b)
            return
        if b < 0xC0:
            self.skip(self.length())
            return
        enc = b & 0x3F
        if enc <= 2:
            self.skip(1 + (1, 2, 4)[enc])
            return
        if enc == 3:
            self._pos += 1
            clen, _ = self._lzf_sizes()
            self.skip(clen)
            return
        raise self.error(f"unknown string encoding 0x{b:02x}")

    # -- capture -------------------------------------------------------------------------------

    def begin_capture(self, back: int = 0) -> None:
        """Keep every byte from ``back`` bytes before the current position until :meth:`end_capture`."""
        self._cap = self._pos - back
        self._spill = None

    def end_capture(self) -> Raw:
        """The bytes read since :meth:`begin_capture`: a slice, or a Spill for large records."""
        cap, self._cap = self._cap, None
        if self._spill is None:
            return self._buf[cap:self._pos]
        spill, self._spill = self._spill, None
        spill.write(memoryview(self._buf)[cap:self._pos])
        return spill

    def abort_capture(self) -> None:
        if self._spill is not None:
            self._spill.close()
        self._cap = None
        self._spill = None

    # -- checksum ------------------------------------------------------------------------------

    def crc(self) -> int:
        """CRC-64 of every byte consumed so far (what the RDB trailer must equal at EOF)."""
        if self._pos > self._crc_pos:
            self._crc = crc64(memoryview(self._buf)[self._crc_pos:self._pos], self._crc)
            self._crc_pos = self._pos
        return self._crc
