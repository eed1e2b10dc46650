"""Shared fixtures: the engines on this machine and throwaway engine servers.

* ``engines`` (session): every Engine found; tests using it are skipped when there is none.
* ``get_engine`` (session): ``get_engine("redis-6.2")`` → Engine, or skips the test when absent.
* ``each_engine``: parametrized over redis-6.2, redis-7.0, valkey-8.1 and any other target found
  (one test per target; missing ones are skipped).
* ``full_disk``: a directory on a 1 MiB tmpfs (a real ENOSPC), or the test is skipped where
  mounting is not allowed.
* ``engine_server``: factory ``engine_server(engine_or_spec=None, **EngineServer kwargs)`` that
  starts an EngineServer (skipping when the spec is not found) and stops them all at teardown.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest

from snaptool.engines.discovery import Engine, find_engine, find_engines
from snaptool.engines.server import EngineServer
from snaptool.errors import EngineError

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"

#: Targets every test run tries; more are added when found (e.g. via SNAPTOOL_ENGINE_*).
STANDARD_TARGETS = ("redis-6.2", "redis-7.0", "valkey-8.1")
try:
    _FOUND_AT_COLLECTION = find_engines()
except Exception:  # noqa: BLE001 - discovery problems show up in the discovery tests instead
    _FOUND_AT_COLLECTION = []
ALL_TARGETS = sorted(set(STANDARD_TARGETS) | {e.target_name for e in _FOUND_AT_COLLECTION},
                     key=lambda t: (t.split("-")[0], tuple(int(x) for x in t.split("-")[1].split("."))))


def _resolve(spec: str | None, engines: list[Engine]) -> Engine:
    try:
        return find_engine(spec, engines=engines)
    except EngineError:
        found = ", ".join(e.name for e in engines) or "none"
        pytest.skip(f"engine {spec or '(any)'} not found (found: {found})")


@pytest.fixture(scope="session")
def engines() -> list[Engine]:
    found = find_engines()
    if not found:
        pytest.skip("no Redis/Valkey engine found")
    return found


@pytest.fixture(scope="session")
def get_engine() -> Callable[[str | None], Engine]:
    found = find_engines()

    def get(spec: str | None = None) -> Engine:
        return _resolve(spec, found)

    return get


@pytest.fixture(params=ALL_TARGETS)
def each_engine(request: pytest.FixtureRequest, get_engine: Callable[[str | None], Engine]) -> Engine:
    return get_engine(request.param)


@pytest.fixture
def engine_server() -> Iterator[Callable[..., EngineServer]]:
    started: list[EngineServer] = []
    found: list[Engine] | None = None

    def start(engine: Engine | str | None = None, **kwargs) -> EngineServer:
        nonlocal found
        if not isinstance(engine, Engine):
            if found is None:
                found = find_engines()
            engine = _resolve(engine, found)
        server = EngineServer(engine, **kwargs)
        started.append(server)
        server.start()
        return server

    yield start
    for server in reversed(started):
        server.stop()


# --------------------------------------------------------------------------- S3 (moto server)

@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 endpoint over HTTP: moto's server mode in its own process, on a free port."""
    from s3_support import moto_server

    with moto_server() as url:
        yield url


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """The standard AWS environment pointed at the moto endpoint (what a user would set)."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "aws-config"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))  # nothing from the machine's own AWS setup
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    return s3_endpoint


@pytest.fixture
def s3_bucket(s3_env: str, request: pytest.FixtureRequest) -> str:
    """A fresh bucket (unique per test, so tests on one server do not meet)."""
    import re
    import uuid

    import boto3

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + "-" + uuid.uuid4().hex[:8]
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a real ENOSPC. Needs the right to mount (root); skipped elsewhere."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)
