"""Reading typed fields out of parsed TOML tables, with messages that say what was expected."""

from __future__ import annotations

import os
from typing import Any


class Problem(Exception):
    """One problem with one field; the caller adds which job and field."""


_TYPE_NAMES = {str: "a string", bool: "true or false", int: "a whole number", float: "a number"}


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def table(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Problem(f"must be a table, not {value!r}")
    return value


def unknown(values: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for key in values:
        if key not in allowed:
            raise Problem(f"unknown field {key!r} (fields: {', '.join(allowed)})")


def opt(values: dict[str, Any], key: str, kind: type, *, named: bool = False) -> Any:
    """``values[key]`` checked against ``kind`` (None when absent); ``named`` puts the key in messages,
    for fields of nested tables."""
    value = values.get(key)
    if value is None:
        return None
    lead = f"{key}: " if named else ""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
        raise Problem(f"{lead}must be {_TYPE_NAMES[kind]}, not {value!r}")
    if kind is str and not value.strip():
        raise Problem(f"{lead}must not be empty")
    return value


def need(values: dict[str, Any], key: str, kind: type) -> Any:
    if key not in values:
        raise Problem("missing")
    return opt(values, key, kind)


def strings(value: Any, *, allow_one: bool = False, key: str = "") -> list[str]:
    if allow_one and isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        lead = f"{key}: " if key else ""
        raise Problem(f"{lead}must be a list of non-empty strings, not {value!r}")
    return list(value)


def path(value: str, base: str) -> str:
    """``value`` relative to ``base`` (the config file's directory) unless absolute; ~ expanded."""
    return os.path.normpath(os.path.join(base, os.path.expanduser(value)))


def existing(value: str | None, base: str, *, key: str = "") -> str | None:
    if value is None:
        return None
    resolved = path(value, base)
    if not os.path.isfile(resolved):
        lead = f"{key}: " if key else ""
        raise Problem(f"{lead}{resolved}: no such file")
    return resolved
