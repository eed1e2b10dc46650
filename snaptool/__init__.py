"""snaptool: back up, restore, reshard and migrate Redis and Valkey data through RDB snapshots.

Everything the command line does is a function here::

    import snaptool
    snaptool.convert("dump.rdb", "old.rdb", snaptool.parse_target("redis-6.2"), allow_lossy=True)
    snaptool.split(["dump.rdb"], "shards/", snaptool.SlotLayout.even(3))
"""

from .errors import (ChecksumError, EngineError, LossyConversionError, RdbError, SnaptoolError,
                     UnsupportedError, ValidationError)
from .jobs.convert import convert
from .jobs.digest import digest_file
from .jobs.export import export_file
from .jobs.inspect import inspect_file
from .jobs.merge import merge
from .jobs.split import split
from .rdb.builder import RdbBuilder
from .rdb.reader import RdbReader
from .rdb.slots import SlotLayout
from .rdb.targets import parse_target

__all__ = [
    "ChecksumError", "EngineError", "LossyConversionError", "RdbBuilder", "RdbError", "RdbReader",
    "SlotLayout", "SnaptoolError", "UnsupportedError", "ValidationError", "convert", "digest_file",
    "export_file", "inspect_file", "merge", "parse_target", "split",
]
