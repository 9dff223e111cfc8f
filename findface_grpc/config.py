"""Configuration loading shared by every service.

Each service declares one frozen dataclass. Values come from, in rising priority: the dataclass defaults, a TOML
file's `[<section>]` table, and environment variables `FINDFACE_<SECTION>_<FIELD>` (upper case). Unknown keys and
values of the wrong type are refused at start-up with a message naming them, so that a typo never silently falls
back to a default.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

from findface_grpc.errors import ConfigError

T = TypeVar("T")


def _convert(name: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if value is None or value == "":
            return None
        return _convert(name, value, non_none[0])
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config {name}: expected a list, got {value!r}")
        item = args[0] if args else str
        return tuple(_convert(name, v, item) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"config {name}: expected true/false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"config {name}: expected a number, got {value!r}")
        try:
            return hint(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config {name}: expected {hint.__name__}, got {value!r}") from None
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"config {name}: expected a string, got {value!r}")
        return value
    if hint is Path:
        return Path(value)
    if isinstance(hint, type) and isinstance(value, hint):
        return value
    raise ConfigError(f"config {name}: unsupported value {value!r}")


def is_address(value: str, any_port: bool = False) -> bool:
    """host:port with a port in 1..65535 (0 too with `any_port`: for listening, where 0 lets the system pick)."""
    host, sep, port = value.rpartition(":")
    return bool(sep and host and port.isdigit() and (0 if any_port else 1) <= int(port) < 65536)


def read_toml(path: str | Path | None) -> dict[str, Any]:
    if path is None:
        path = os.environ.get("FINDFACE_CONFIG")
    if not path:
        return {}
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None


def load(
    cls: type[T],
    section: str,
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> T:
    """Build `cls` from defaults, the file's `[section]`, the environment and explicit overrides."""
    environ = os.environ if environ is None else environ
    table = dict(read_toml(path).get(section, {}))
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(table) - fields
    if unknown:
        raise ConfigError(f"config [{section}]: unknown keys {sorted(unknown)}")
    prefix = f"FINDFACE_{section.upper()}_"
    for key, value in environ.items():
        if key.startswith(prefix):
            name = key[len(prefix):].lower()
            if name not in fields:
                raise ConfigError(f"environment {key}: [{section}] has no setting {name!r}")
            table[name] = value
    table.update(overrides or {})
    values = {name: _convert(f"[{section}].{name}", v, hints[name]) for name, v in table.items()}
    try:
        config = cls(**values)
    except TypeError as exc:
        raise ConfigError(f"config [{section}]: {exc}") from None
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config
