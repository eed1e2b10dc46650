"""The migration's record of what it read, on local disk: written once, read to write the target and to check it.

Reading everything before writing anything is what lets a migration refuse (non-zero flags, keys
on two servers) with nothing half-written, and lets keys that changed during the run replace
their first copy instead of following it. The same record is what validation compares the target
with, so memory stays flat however many keys move: frames of one fetch batch each, column by
column, pickled (a private temporary file, read back only by the process that wrote it).
"""

from __future__ import annotations

import os
import pickle
import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterator

_HEADER = struct.Struct("<Q")
NO_EXPIRY = -1


@dataclass(slots=True)
class Frame:
    """Items of one server read together. ``deadlines`` are absolute wall-clock milliseconds
    (our clock, computed from memcached's *remaining* TTL), :data:`NO_EXPIRY` for none."""

    server: int
    keys: list[bytes]
    values: list[bytes]
    flags: list[int]
    cas: list[bytes]  # as memcached printed them
    deadlines: list[int]

    def __len__(self) -> int:
        return len(self.keys)


class Ledger:
    """Frames appended to a file, then read back in order as often as needed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.frames_written = 0
        self.items = 0
        self.bytes = 0
        self._out: BinaryIO | None = open(path, "wb")

    def append(self, frame: Frame) -> None:
        if not frame.keys:
            return
        assert self._out is not None, "the ledger is closed for writing"
        data = pickle.dumps((frame.server, frame.keys, frame.values, frame.flags, frame.cas, frame.deadlines),
                            protocol=pickle.HIGHEST_PROTOCOL)
        self._out.write(_HEADER.pack(len(data)))
        self._out.write(data)
        self.frames_written += 1
        self.items += len(frame.keys)
        self.bytes += len(data)

    def seal(self) -> None:
        """Done writing (reading flushes first anyway)."""
        if self._out is not None:
            self._out.close()
            self._out = None

    def frames(self) -> Iterator[Frame]:
        self.seal()
        with open(self.path, "rb", buffering=1 << 20) as fh:
            while True:
                head = fh.read(_HEADER.size)
                if not head:
                    return
                (size,) = _HEADER.unpack(head)
                server, keys, values, flags, cas, deadlines = pickle.loads(fh.read(size))
                yield Frame(server, keys, values, flags, cas, deadlines)

    def remove(self) -> None:
        self.seal()
        try:
            os.unlink(self.path)
        except OSError:
            pass


__all__ = ["Frame", "Ledger", "NO_EXPIRY"]
