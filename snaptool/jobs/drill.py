"""`snaptool drill`: prove a snapshot restores, the way CI should check backups every day.

Fetch the files, check size and SHA-256 against the manifest, re-read each to check its CRC-64
and its key counts per database, start throwaway engine node(s) of the chosen engine (a local
cluster for a sharded snapshot), load the files and compare every key and the DEBUG DIGEST with
the snapshot, then tear everything down. Each step is a check in the report and a test case in
the JUnit XML, so CI systems show which step failed and why. An encrypted snapshot is decrypted
in the fetch step (``keys``; KMS needs none): a missing or wrong key, or an object that fails
authentication, fails that step.
"""

from __future__ import annotations

import os
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..engines.discovery import Engine, engine_for_rdb, find_engine
from ..errors import SnaptoolError
from ..rdb.targets import Target, parse_target
from ..storage.catalog import Catalog
from ..storage.manifest import Manifest
from ..storage.repository import Repository
from .convert import convert
from .fetch import Fetched, fetch, records_of
from .ingest import count_file
from .validate import validate_cluster, validate_node

if TYPE_CHECKING:  # cryptography is imported only for encrypted snapshots
    from ..crypto.schemes import DecryptionKeys


@dataclass
class DrillCheck:
    name: str
    ok: bool
    seconds: float
    message: str = ""


@dataclass
class DrillReport:
    snapshot: str
    repository: str
    engine: str = ""
    keys: int = 0
    checks: list[DrillCheck] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def to_junit(self) -> bytes:
        """JUnit XML: one test case per check (what CI systems display)."""
        failures = sum(not c.ok for c in self.checks)
        suites = ET.Element("testsuites", name="snaptool drill", tests=str(len(self.checks)),
                            failures=str(failures), time=f"{self.seconds:.3f}")
        suite = ET.SubElement(suites, "testsuite", name=f"drill {self.snapshot}", tests=str(len(self.checks)),
                              failures=str(failures), errors="0", time=f"{self.seconds:.3f}")
        props = ET.SubElement(suite, "properties")
        for key, value in (("repository", self.repository), ("engine", self.engine), ("keys", str(self.keys))):
            ET.SubElement(props, "property", name=key, value=value)
        for check in self.checks:
            case = ET.SubElement(suite, "testcase", classname="snaptool.drill", name=check.name,
                                 time=f"{check.seconds:.3f}")
            if not check.ok:
                ET.SubElement(case, "failure", message=check.message.splitlines()[0] if check.message else "failed",
                              type="DrillFailure").text = check.message
            elif check.message:
                ET.SubElement(case, "system-out").text = check.message
        return ET.tostring(suites, encoding="utf-8", xml_declaration=True)


class _Steps:
    """Runs named steps, recording each as a check; a failed step ends the drill."""

    def __init__(self, report: DrillReport, echo: Callable[[DrillCheck], None] | None) -> None:
        self.report = report
        self.echo = echo

    def run(self, name: str, step: Callable[[], str | None]) -> bool:
        started = time.monotonic()
        try:
            message, ok = step() or "", True
        except SnaptoolError as exc:
            message, ok = str(exc), False
        check = DrillCheck(name, ok, round(time.monotonic() - started, 3), message)
        self.report.checks.append(check)
        if self.echo is not None:
            self.echo(check)
        return ok


def drill(spec: str, repo: Repository, *, engine: str | None = None, target: Target | None = None,
          echo: Callable[[DrillCheck], None] | None = None, keys: DecryptionKeys | None = None) -> DrillReport:
    """Run the drill on snapshot ``spec`` (id, prefix or ``latest``); ``echo`` sees each check
    as it finishes; ``keys`` open an encrypted snapshot. The report says pass or fail; only a
    missing snapshot raises."""
    started = time.monotonic()
    manifest = Catalog(repo).resolve(spec)
    report = DrillReport(manifest.id, repo.url, keys=manifest.keys)
    steps = _Steps(report, echo)
    with tempfile.TemporaryDirectory(prefix="snaptool-drill-") as work:
        fetched: list[Fetched] = []

        def get() -> str:
            fetched.extend(fetch(repo, manifest, work, keys=keys))
            opened = f"; decrypted ({manifest.encryption.get('scheme')}) with {fetched[0].decrypted_with}" \
                if manifest.encryption and fetched else ""
            return f"{len(fetched)} file(s), {manifest.size:,} bytes, sizes and sha256 match the manifest{opened}"

        ok = steps.run("fetch and sha256", get)
        for item in fetched if ok else []:
            ok = steps.run(f"crc64 and counts {item.entry.name}", lambda item=item: _check_counts(item)) and ok
        chosen: list[Engine] = []
        if ok:
            ok = steps.run("engine", lambda: _choose(manifest, engine, target, chosen))
        if ok:
            files = [f.path for f in fetched]
            if target is not None:
                ok = steps.run(f"convert to {target.name}", lambda: _convert(files, target, work))
            if ok:
                steps.run("load and compare", lambda: _load_and_compare(manifest, fetched, files, chosen[0]))
    report.engine = chosen[0].name if chosen else (engine or "")
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _check_counts(item: Fetched) -> str:
    databases, end = count_file(item.path)
    entry = item.entry
    if end is None:
        raise SnaptoolError(f"{entry.name}: no end marker")
    stored = f"{end.stored:016x}" if end.stored else None
    if stored != entry.crc64:
        raise SnaptoolError(f"{entry.name}: CRC-64 {stored} differs from the manifest's {entry.crc64}")
    got = {db: (s.keys, s.expires) for db, s in databases.items()}
    want = {db: (s.keys, s.expires) for db, s in entry.databases.items()}
    if got != want:
        raise SnaptoolError(f"{entry.name}: keys/expires per db {got} differ from the manifest's {want}")
    return f"CRC-64 {stored or 'absent'} ok, {sum(k for k, _ in got.values()):,} keys in {len(got)} db(s)"


def _choose(manifest: Manifest, spec: str | None, target: Target | None, chosen: list[Engine]) -> str:
    version = target.rdb_version if target else max(f.rdb_version for f in manifest.files)
    flavour = target.flavour if target else ("valkey" if any(f.magic.startswith("VALKEY") for f in manifest.files)
                                             else "redis")
    engine = find_engine(spec) if spec else engine_for_rdb(version, flavour)
    if not engine.can_load(version, flavour):
        raise SnaptoolError(f"{engine.name} cannot load RDB {version} ({flavour}); add --target "
                            f"{engine.target_name} to drill a conversion for it, or choose another --engine")
    chosen.append(engine)
    return engine.describe()


def _convert(files: list[str], target: Target, work: str) -> str:
    for i, path in enumerate(files):
        out = os.path.join(work, f"converted-{i}.rdb")
        convert(path, out, target, allow_lossy=False)
        files[i] = out
    return f"{len(files)} file(s) re-encoded for {target.name}"


def _same_digest_rules(recorded_for: str | None, engine: Engine) -> bool:
    """A recorded digest is comparable only when both engines digest scores and field TTLs alike."""
    try:
        a, b = parse_target(recorded_for or ""), parse_target(engine.target_name)
    except SnaptoolError:
        return False
    return (a.score_format, a.hexpire_marker) == (b.score_format, b.hexpire_marker)


def _load_and_compare(manifest: Manifest, fetched: list[Fetched], files: list[str], engine: Engine) -> str:
    layout = manifest.layout()
    sources = [f.path for f in fetched]
    if layout is not None:
        result = validate_cluster(engine, layout, files, records_of(sources))
    else:
        databases = max((db for f in fetched for db in f.entry.databases), default=0) + 1
        result = validate_node(engine, files[0], records_of(sources), databases=databases)
        entry = manifest.files[0]
        if entry.digest and not entry.expires and _same_digest_rules(entry.digest_engine, engine) \
                and result.digest_live != entry.digest:
            raise SnaptoolError(f"DEBUG DIGEST {result.digest_live} differs from the manifest's {entry.digest}")
    if not result.ok:
        raise SnaptoolError(result.summary() + "\n" + result.table())
    return f"{result.summary()} in {result.seconds:.1f}s"
