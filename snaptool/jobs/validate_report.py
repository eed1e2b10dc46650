"""The outcome of a validation against live engines: counts, the problems found, a table for
people and JSON for scripts. Restore, drill, split and merge share it, so every job reports a
validation the same way."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

_PROBLEMS_LISTED = 20


@dataclass
class ValidationReport:
    """What a validation compared and what it found; ``ok`` only when the target holds exactly the
    snapshot (every compared key equal, nothing extra or misplaced, every count the same)."""

    engine: str
    target: str = ""  # where (a redacted URL), empty for local throwaway engines
    mode: str = "digest"  # "digest" (DEBUG DIGEST-VALUE) or "reads" (type-aware reads)
    sample: int | None = None  # keys compared were a uniform sample of this size
    checked: int = 0
    equal: int = 0
    missing: int = 0
    different: int = 0
    extra: int = 0
    misplaced: int = 0  # keys a cluster node holds in slots it does not own
    not_compared: int = 0  # module values: present, but their content cannot be read back
    expired_skipped: int = 0
    live_keys: int = 0
    expected_per_db: dict[int, int] = field(default_factory=dict)
    live_per_db: dict[int, int] = field(default_factory=dict)
    slots_mismatched: int = 0
    slot_mismatches: list[tuple[int, int, int]] = field(default_factory=list)  # (slot, expected, live)
    digest_expected: str | None = None
    digest_live: str | None = None
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def counts_match(self) -> bool:
        dbs = set(self.expected_per_db) | set(self.live_per_db)
        return all(self.expected_per_db.get(db, 0) == self.live_per_db.get(db, 0) for db in dbs)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.different or self.extra or self.misplaced or self.slots_mismatched) \
            and self.counts_match and self.digest_expected == self.digest_live

    def note(self, problem: str) -> None:
        if len(self.problems) < _PROBLEMS_LISTED:
            self.problems.append(problem)

    def summary(self) -> str:
        verdict = "validated" if self.ok else "VALIDATION FAILED"
        sampled = f" (a sample of {self.sample:,})" if self.sample is not None else ""
        where = f" at {self.target}" if self.target else ""
        return (f"{verdict} on {self.engine}{where}: {self.checked:,} checked{sampled}, {self.equal:,} equal, "
                f"{self.missing:,} missing, {self.different:,} different, {self.extra:,} extra"
                + (f", {self.misplaced:,} misplaced" if self.misplaced else "")
                + (f", {self.not_compared:,} not compared" if self.not_compared else "")
                + ("" if self.counts_match else ", key counts differ"))

    def table(self) -> str:
        rows = [("checked", self.checked), ("equal", self.equal), ("missing", self.missing),
                ("different", self.different), ("extra", self.extra), ("misplaced", self.misplaced),
                ("not compared", self.not_compared), ("expired, skipped", self.expired_skipped)]
        lines = [f"  {name:<18}{value:>14,}" for name, value in rows]
        how = self.mode + (f", a sample of {self.sample:,} keys" if self.sample is not None else "")
        lines.append(f"  {'compared by':<18}{how:>14}")
        for db in sorted(set(self.expected_per_db) | set(self.live_per_db)):
            expected, live = self.expected_per_db.get(db, 0), self.live_per_db.get(db, 0)
            mark = "" if expected == live else "  !"
            lines.append(f"  db{db:<16}{expected:>14,} expected {live:>12,} live{mark}")
        if self.slots_mismatched:
            listed = ", ".join(f"{s} ({e} expected, {n} live)" for s, e, n in self.slot_mismatches)
            more = self.slots_mismatched - len(self.slot_mismatches)
            lines.append(f"  ! {self.slots_mismatched} slots hold other key counts: {listed}"
                         + (f" and {more} more" if more > 0 else ""))
        if self.digest_expected is not None:
            lines.append(f"  digest expected   {self.digest_expected}")
            lines.append(f"  digest live       {self.digest_live}")
        lines += [f"  ! {p}" for p in self.problems]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (``--json``), ``ok`` included."""
        data = asdict(self)
        data["expected_per_db"] = {str(db): n for db, n in self.expected_per_db.items()}
        data["live_per_db"] = {str(db): n for db, n in self.live_per_db.items()}
        data["slot_mismatches"] = [list(x) for x in self.slot_mismatches]
        return {**data, "ok": self.ok}
