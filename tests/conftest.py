"""Shared fixtures: the engines on this machine and throwaway engine servers.

* ``engines`` (session): every Engine found; tests using it are skipped when there is none.
* ``get_engine`` (session): ``get_engine("redis-6.2")`` → Engine, or skips the test when absent.
* ``each_engine``: parametrized over redis-6.2, redis-7.0, valkey-8.1 and any other target found
  (one test per target; missing ones are skipped).
* ``engine_server``: factory ``engine_server(engine_or_spec=None, **EngineServer kwargs)`` that
  starts an EngineServer (skipping when the spec is not found) and stops them all at teardown.
"""

from __future__ import annotations

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
