"""What jobs that write RDB files report, and the parts every output file shares.

The per-record rules (copy, re-encode, or lose) are in :mod:`snaptool.rdb.rewriter`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..rdb.rewriter import Libraries, Rewriter


@dataclass(kw_only=True)
class RewriteCounts:
    """What happened to the records a job wrote (shared by the convert, split and merge reports)."""

    passthrough: int = 0
    reencoded: int = 0
    #: empty collections left out (loaders skip them; old ones crash on them)
    empty_skipped: int = 0
    #: hash fields already expired, left out where a downgrade drops field TTLs
    expired_fields_dropped: int = 0
    functions: int = 0
    #: what the target could not hold: reason -> count (only non-empty with allow_lossy)
    dropped: dict[str, int] = field(default_factory=dict)
    reencoded_by_type: dict[str, int] = field(default_factory=dict)

    def take(self, rewriter: Rewriter, functions: int) -> None:
        """Copy a rewriter's counts into this report."""
        self.passthrough, self.reencoded = rewriter.passthrough, rewriter.reencoded
        self.empty_skipped, self.expired_fields_dropped = rewriter.empty_skipped, rewriter.expired_fields_dropped
        self.functions = functions
        self.dropped = dict(rewriter.losses.counts)
        self.reencoded_by_type = dict(rewriter.reencoded_by_type)


@dataclass
class CombineReport(RewriteCounts):
    """What split, reshard and merge report in common: several inputs into new files."""

    inputs: list[str]
    target: str
    rdb_version: int
    keys_in: int = 0
    keys_out: int = 0
    duplicates: int = 0
    duplicates_dropped: int = 0


def prepare_outputs(assemblers: list, rewriter: Rewriter, libraries: Libraries, module_aux: dict[bytes, int],
                    aux: list[tuple[bytes, bytes]], allow_lossy: bool) -> None:
    """Give every output file the shared parts (AUX, functions, module data) the target can hold;
    refuse first if anything would be lost and lossy output was not allowed."""
    target = rewriter.target
    if libraries.codes and target.rdb_version < 10:
        rewriter.losses.counts["functions"] += len(libraries.codes)
    if module_aux and target.rdb_version < 9:
        rewriter.losses.counts["module aux data"] += len(module_aux)
    rewriter.losses.check(target, allow_lossy)
    for assembler in assemblers:
        assembler.aux = aux
        if target.rdb_version >= 10:
            assembler.functions = list(libraries.codes)
        if target.rdb_version >= 9:
            assembler.module_aux = [(when, raw) for raw, when in module_aux.items()]
