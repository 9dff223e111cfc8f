"""Structural checks of JSON replies against the shapes in tests/http/fixtures/.

A shape is: a type name ("int", "number", "string", "bool", "null", "any", "timestamp", or alternatives joined by
"|"); "$name" for the shape in fixtures/name.json; a list holding one shape (every item must match it); or an
object whose keys must all be present ("?key" may be absent, "*" matches every key not named). Extra keys in a
reply are allowed, as the clients ignore them; "int" rejects 1.0, which a Go int field cannot take.
"""
from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@lru_cache(maxsize=None)
def shape(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())["shape"]


def _leaf(kind: str, value: Any) -> bool:
    if kind == "any":
        return True
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    if kind == "timestamp":
        if not isinstance(value, str):
            return False
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return False
        return True
    raise ValueError(f"unknown type {kind!r} in a fixture")


def problems(value: Any, want: Any, where: str = "$") -> list[str]:
    if isinstance(want, str):
        if want.startswith("$"):
            return problems(value, shape(want[1:]), where)
        if any(_leaf(kind, value) for kind in want.split("|")):
            return []
        return [f"{where}: expected {want}, got {json.dumps(value)[:80]}"]
    if isinstance(want, list):
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {json.dumps(value)[:80]}"]
        return [p for i, item in enumerate(value) for p in problems(item, want[0], f"{where}[{i}]")]
    if not isinstance(value, dict):
        return [f"{where}: expected an object, got {json.dumps(value)[:80]}"]
    out = []
    named = set()
    for key, sub in want.items():
        if key == "*":
            continue
        optional = key.startswith("?")
        key = key.lstrip("?")
        named.add(key)
        if key not in value:
            if not optional:
                out.append(f"{where}: missing {key!r}")
            continue
        out += problems(value[key], sub, f"{where}.{key}")
    if "*" in want:
        for key, item in value.items():
            if key not in named:
                out += problems(item, want["*"], f"{where}[{key!r}]")
    return out


def check(value: Any, name: str) -> None:
    found = problems(value, f"${name}")
    assert not found, f"reply does not match fixtures/{name}.json:\n" + "\n".join(found)
