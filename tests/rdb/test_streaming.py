"""Streams, not files: non-seekable input, records spilled to disk, memory flat for a huge key."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from snaptool.jobs.convert import convert_stream
from snaptool.rdb.encoder import encode_value
from snaptool.rdb.items import Record
from snaptool.rdb.reader import RdbReader
from snaptool.rdb.source import Spill
from snaptool.rdb.targets import parse_target
from snaptool.rdb.writer import RdbWriter

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


class Trickle(io.RawIOBase):
    """A non-seekable stream that hands out at most a few bytes per read, like a slow socket."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._step = step

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self._step if n < 0 else min(n, self._step)
        chunk = bytes(self._data[self._pos:self._pos + n])
        self._pos += len(chunk)
        return chunk


def _keys_and_values(fileobj, **kwargs) -> list:
    return [(r.db, r.key, r.expire_ms, r.value()) for r in RdbReader(fileobj, **kwargs).records()]


@pytest.mark.parametrize("step", [1, 7, 4096])
def test_trickled_input_reads_the_same(step: int) -> None:
    data = (FIXTURES / "valkey-8.1.rdb").read_bytes()
    assert _keys_and_values(Trickle(data, step)) == _keys_and_values(io.BytesIO(data))


def test_pipe_input() -> None:
    data = (FIXTURES / "redis-7.0.rdb").read_bytes()
    r, w = os.pipe()

    def feed() -> None:
        with os.fdopen(w, "wb") as f:
            f.write(data)

    thread = threading.Thread(target=feed)
    thread.start()
    with os.fdopen(r, "rb", buffering=0) as f:
        got = _keys_and_values(f)
    thread.join()
    assert got == _keys_and_values(io.BytesIO(data))


def test_spilled_records_convert_identically() -> None:
    """Records bigger than the spill threshold go through a temporary file; the output is the same.

    Spilling starts when a record outgrows the read buffer, so the input trickles in 4 KB reads.
    """
    data = (FIXTURES / "redis-7.0.rdb").read_bytes()
    spilled = []
    reader = RdbReader(Trickle(data, 4096), spill_threshold=512)
    for record in reader.records():
        if isinstance(record.raw, Spill):
            spilled.append(record.key)
            assert record.value() is not None
    assert spilled, "the fixture should hold records over 512 bytes"
    normal, small = io.BytesIO(), io.BytesIO()
    convert_stream(io.BytesIO(data), normal)
    convert_stream(Trickle(data, 4096), small, spill_threshold=512)
    assert small.getvalue() == normal.getvalue()


def _write_big_list(path: Path, megabytes: int) -> int:
    """An RDB 10 file holding one list of ``megabytes`` MB of 1 KB elements, written by the encoder."""
    rng = random.Random(7)  # incompressible elements, so LZF cannot shrink the file
    count = megabytes * 1000
    target = parse_target("redis-7.0")
    with open(path, "wb") as f:
        writer = RdbWriter(f, target)
        writer.header([(b"redis-ver", b"7.0.0")])
        writer.select_db(0, 1, 0)
        writer.value(b"biglist", encode_value("list", (rng.randbytes(1000) for _ in range(count)), target))
        writer.finish()
    return count


@pytest.mark.slow
def test_huge_key_converts_with_flat_memory(tmp_path: Path) -> None:
    """A 400 MB list passes through convert (passthrough and downgrade) in a small, flat RSS."""
    src = tmp_path / "big.rdb"
    count = _write_big_list(src, 400)
    assert src.stat().st_size > 400_000_000
    for target in ([], ["--target", "redis-6.2"]):
        out = tmp_path / "out.rdb"
        # VmHWM is this process's own peak RSS; ru_maxrss would include the forking parent's.
        code = subprocess.call([sys.executable, "-c",
                                "import re,sys; from snaptool.cli.main import main; rc = main(sys.argv[1:]); "
                                "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1],"
                                " file=sys.stderr); sys.exit(rc)",
                                "convert", str(src), "-o", str(out), *target],
                               stderr=open(tmp_path / "err", "w"))
        assert code == 0, (tmp_path / "err").read_text()
        peak_kb = int((tmp_path / "err").read_text().strip().splitlines()[-1])
        assert peak_kb < 150 * 1024, f"peak RSS {peak_kb // 1024} MB for convert {target}"
        with RdbReader.open(out) as reader:
            (record,) = list(reader.records())
            assert isinstance(record, Record)
            assert sum(1 for _ in record.iter_value()) == count
            record.release()
