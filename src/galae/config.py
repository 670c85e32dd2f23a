"""Config files: YAML -> frozen dataclass, with ``key=value`` overrides and clear errors.

A config dataclass declares every key and its default in one visible place; a YAML file may set
any subset, and command-line ``key=value`` pairs override both (values are parsed as YAML, so
``lr=3e-4``, ``widths=[16,32]`` and ``data=null`` work).  Unknown keys are errors that list the
known ones.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = ["load_config", "config_to_dict", "parse_overrides"]

C = TypeVar("C")


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``["a=1", "b=[1,2]"]`` -> ``{"a": 1, "b": [1, 2]}``."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"override {pair!r} is not of the form key=value")
        k, v = pair.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def _coerce(value: Any, typ: Any, key: str) -> Any:
    origin = typing.get_origin(typ)
    if value is None:
        return None
    if origin in (typing.Union, types.UnionType):  # X | None: check against X
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if len(args) == 1:
            return _coerce(value, args[0], key)
    if typ is float and isinstance(value, str):
        # YAML 1.1 reads "3e-4" (no decimal point) as a string
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"config key {key!r} must be float, got {value!r}") from None
    if origin is tuple or typ is tuple:
        return tuple(value)
    if typ is float and isinstance(value, int | float):
        return float(value)
    if typ is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if typ in (int, float, str, bool) and not isinstance(value, typ):
        raise ValueError(f"config key {key!r} must be {typ.__name__}, got {value!r}")
    return value


def load_config(
    cls: type[C], path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> C:
    """Build ``cls`` from defaults, then the YAML file, then ``overrides``."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file not found: {p}")
        loaded = yaml.safe_load(p.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"config file {p} must hold a mapping of keys to values")
        data.update(loaded)
    data.update(overrides or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown config key(s) {unknown} for {cls.__name__}; known keys: {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints.get(k), k) for k, v in data.items()}
    return cls(**kwargs)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A YAML-safe dict of a config dataclass (tuples -> lists)."""
    d = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
