"""snaptool: back up, restore, reshard and migrate Redis and Valkey data through RDB snapshots.

Everything the command line does is a function here::

    import snaptool
    snaptool.convert("dump.rdb", "old.rdb", snaptool.parse_target("redis-6.2"), allow_lossy=True)
    snaptool.split(["dump.rdb"], "shards/", snaptool.SlotLayout.even(3))
    repo = snaptool.Repository.open("s3://bucket/redis")
    snaptool.backup("redis://10.0.0.5:6379", repo)
    snaptool.restore("latest", repo, snaptool.RestoreOptions(to="redis://127.0.0.1:6379"))
"""

from .errors import (ChecksumError, EngineError, LossyConversionError, RdbError, SnaptoolError,
                     UnsupportedError, ValidationError)
from .crypto.schemes import DecryptionKeys, EncryptionOptions
from .jobs.backup import BackupOptions, backup
from .jobs.copy import CopyOptions, copy_snapshot
from .jobs.convert import convert
from .jobs.digest import digest_file
from .jobs.drill import drill
from .jobs.export import export_file
from .jobs.inspect import inspect_file
from .jobs.gc import gc
from .jobs.merge import merge
from .jobs.prune import Policy, prune
from .jobs.restore import RestoreOptions, restore
from .jobs.seed import SeedOptions, seed
from .jobs.split import split
from .rdb.builder import RdbBuilder
from .rdb.reader import RdbReader
from .rdb.slots import SlotLayout
from .rdb.targets import parse_target
from .storage.catalog import Catalog
from .storage.repository import Repository, S3Settings

__all__ = [
    "CopyOptions", "DecryptionKeys", "EncryptionOptions", "Policy", "SeedOptions", "copy_snapshot", "prune", "seed",
    "BackupOptions", "Catalog", "ChecksumError", "EngineError", "LossyConversionError", "RdbBuilder", "RdbError",
    "RdbReader", "Repository", "RestoreOptions", "S3Settings", "SlotLayout", "SnaptoolError",
    "UnsupportedError", "ValidationError", "backup", "convert", "digest_file", "drill", "export_file", "gc",
    "inspect_file", "merge", "parse_target", "restore", "split",
]
