"""snaptool: back up, restore, reshard and migrate Redis and Valkey data through RDB snapshots.

Everything the command line does is a function here::

    import snaptool
    snaptool.convert("dump.rdb", "old.rdb", snaptool.parse_target("redis-6.2"), allow_lossy=True)
    snaptool.split(["dump.rdb"], "shards/", snaptool.SlotLayout.even(3))
    repo = snaptool.Repository.open("s3://bucket/redis")
    snaptool.backup("redis://10.0.0.5:6379", repo)
    snaptool.restore("latest", repo, snaptool.RestoreOptions(to="redis://127.0.0.1:6379"))
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module that defines it, imported on first use: a cron job running one
#: command should not pay for importing every job (boto3, cryptography, the validators).
_EXPORTS = {
    ".errors": ("ChecksumError", "EngineError", "LossyConversionError", "RdbError", "SnaptoolError",
                "UnsupportedError", "ValidationError"),
    ".crypto.schemes": ("DecryptionKeys", "EncryptionOptions"),
    ".jobs.backup": ("BackupOptions", "backup"),
    ".jobs.copy": ("CopyOptions", "copy_snapshot"),
    ".jobs.convert": ("convert",),
    ".jobs.digest": ("digest_file",),
    ".jobs.drill": ("drill",),
    ".jobs.export": ("export_file",),
    ".jobs.inspect": ("inspect_file",),
    ".jobs.gc": ("gc",),
    ".jobs.merge": ("merge",),
    ".jobs.prune": ("Policy", "prune"),
    ".jobs.restore": ("RestoreOptions", "restore"),
    ".jobs.seed": ("SeedOptions", "seed"),
    ".jobs.split": ("split",),
    ".rdb.builder": ("RdbBuilder",),
    ".rdb.reader": ("RdbReader",),
    ".rdb.slots": ("SlotLayout",),
    ".rdb.targets": ("parse_target",),
    ".storage.catalog": ("Catalog",),
    ".storage.repository": ("Repository", "S3Settings"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'snaptool' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
