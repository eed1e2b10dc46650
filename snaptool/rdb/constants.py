"""Type bytes, opcodes and the version facts the reader and writer both rely on.

Byte values come from the RDB format (redis `src/rdb.h`, valkey `src/rdb.h`); the same byte can mean
different things in Redis and Valkey files, so anything flavour-dependent is looked up through
:func:`type_name` with the file's magic.
"""

from __future__ import annotations

import functools

# Object types (the byte before a key).
T_STRING = 0
T_LIST = 1
T_SET = 2
T_ZSET = 3
T_HASH = 4
T_ZSET_2 = 5
T_MODULE_PRE_GA = 6
T_MODULE_2 = 7
T_HASH_ZIPMAP = 9
T_LIST_ZIPLIST = 10
T_SET_INTSET = 11
T_ZSET_ZIPLIST = 12
T_HASH_ZIPLIST = 13
T_LIST_QUICKLIST = 14
T_STREAM_LISTPACKS = 15
T_HASH_LISTPACK = 16
T_ZSET_LISTPACK = 17
T_LIST_QUICKLIST_2 = 18
T_STREAM_LISTPACKS_2 = 19
T_SET_LISTPACK = 20
T_STREAM_LISTPACKS_3 = 21
# Redis RDB 12 (hash field expiration); 22/23 were the 7.4 release-candidate forms.
T_HASH_METADATA_PRE_GA = 22
T_HASH_LISTPACK_EX_PRE_GA = 23
T_HASH_METADATA = 24
T_HASH_LISTPACK_EX = 25
# Valkey 9 (VALKEY080): byte 22 means HASH_2, not Redis's pre-GA type.
T_VALKEY_HASH_2 = 22

# Opcodes.
OP_SLOT_IMPORT = 243  # Valkey 9 (VALKEY080); Redis 13 uses 243 for KEY_META
OP_SLOT_INFO = 244
OP_FUNCTION2 = 245
OP_FUNCTION_PRE_GA = 246
OP_MODULE_AUX = 247
OP_IDLE = 248
OP_FREQ = 249
OP_AUX = 250
OP_RESIZEDB = 251
OP_EXPIRETIME_MS = 252
OP_EXPIRETIME = 253
OP_SELECTDB = 254
OP_EOF = 255

# Module opcodes (inside MODULE_2 values and MODULE_AUX).
MOD_EOF, MOD_SINT, MOD_UINT, MOD_FLOAT, MOD_DOUBLE, MOD_STRING = 0, 1, 2, 3, 4, 5

#: Logical kind of every object type, per flavour ("redis" for REDIS magic, "valkey" for VALKEY magic).
_KINDS_COMMON = {
    T_STRING: "string", T_LIST: "list", T_SET: "set", T_ZSET: "zset", T_HASH: "hash", T_ZSET_2: "zset",
    T_MODULE_PRE_GA: "module", T_MODULE_2: "module", T_HASH_ZIPMAP: "hash", T_LIST_ZIPLIST: "list",
    T_SET_INTSET: "set", T_ZSET_ZIPLIST: "zset", T_HASH_ZIPLIST: "hash", T_LIST_QUICKLIST: "list",
    T_STREAM_LISTPACKS: "stream", T_HASH_LISTPACK: "hash", T_ZSET_LISTPACK: "zset",
    T_LIST_QUICKLIST_2: "list", T_STREAM_LISTPACKS_2: "stream", T_SET_LISTPACK: "set",
    T_STREAM_LISTPACKS_3: "stream",
}
_KINDS_REDIS = {**_KINDS_COMMON, 22: "hash", 23: "hash", 24: "hash", 25: "hash"}
_KINDS_VALKEY = {**_KINDS_COMMON, T_VALKEY_HASH_2: "hash"}

_ENCODING_NAMES = {
    T_STRING: "string", T_LIST: "linkedlist", T_SET: "hashtable", T_ZSET: "skiplist-v1", T_HASH: "hashtable",
    T_ZSET_2: "skiplist", T_MODULE_PRE_GA: "module-pre-ga", T_MODULE_2: "module", T_HASH_ZIPMAP: "zipmap",
    T_LIST_ZIPLIST: "ziplist", T_SET_INTSET: "intset", T_ZSET_ZIPLIST: "ziplist", T_HASH_ZIPLIST: "ziplist",
    T_LIST_QUICKLIST: "quicklist", T_STREAM_LISTPACKS: "stream-v1", T_HASH_LISTPACK: "listpack",
    T_ZSET_LISTPACK: "listpack", T_LIST_QUICKLIST_2: "quicklist-2", T_STREAM_LISTPACKS_2: "stream-v2",
    T_SET_LISTPACK: "listpack", T_STREAM_LISTPACKS_3: "stream-v3",
}
_ENCODING_REDIS = {**_ENCODING_NAMES, 22: "hash-metadata-pre-ga", 23: "listpack-ex-pre-ga",
                   24: "hash-metadata", 25: "listpack-ex"}
_ENCODING_VALKEY = {**_ENCODING_NAMES, T_VALKEY_HASH_2: "hash-2"}

#: Type bytes each RDB version may carry (what a loader of that version accepts).
_TYPES_BY_VERSION: list[tuple[int, frozenset[int]]] = [
    (1, frozenset(range(0, 5))),
    (2, frozenset([*range(0, 5), 9, 10, 11, 12])),
    (4, frozenset([*range(0, 5), *range(9, 14)])),
    (7, frozenset([*range(0, 5), *range(9, 15)])),
    (8, frozenset([*range(0, 8), *range(9, 15)])),
    (9, frozenset([*range(0, 8), *range(9, 16)])),
    (10, frozenset([*range(0, 8), *range(9, 20)])),
    (11, frozenset([0, 1, 2, 3, 4, 5, 7, *range(9, 22)])),
    (12, frozenset([0, 1, 2, 3, 4, 5, 7, *range(9, 26)])),
]
_TYPES_VALKEY_80 = frozenset([0, 1, 2, 3, 4, 5, 7, *range(9, 23)])


def kind_of(type_byte: int, flavour: str) -> str | None:
    """Logical kind ('string', 'hash', ...) of a type byte in a file of the given flavour, or None."""
    return (_KINDS_VALKEY if flavour == "valkey" else _KINDS_REDIS).get(type_byte)


def encoding_name(type_byte: int, flavour: str) -> str:
    """A readable name for the on-disk encoding of a type byte."""
    table = _ENCODING_VALKEY if flavour == "valkey" else _ENCODING_REDIS
    return table.get(type_byte, f"type-{type_byte}")


@functools.lru_cache(maxsize=None)
def types_for_version(version: int, flavour: str = "redis") -> frozenset[int]:
    """Type bytes a loader of this RDB version accepts (the set a writer may emit)."""
    if version >= 80:
        return _TYPES_VALKEY_80
    allowed = frozenset()
    for since, types in _TYPES_BY_VERSION:
        if version >= since:
            allowed = types
    return allowed


def magic_for(version: int) -> bytes:
    """The 9-byte header a writer emits for an RDB version (VALKEY magic from 80 on)."""
    if version >= 80:
        return b"VALKEY%03d" % version
    return b"REDIS%04d" % version
