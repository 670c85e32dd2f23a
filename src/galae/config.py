"""Config files: YAML -> frozen dataclass, with ``key=value`` overrides and clear errors.

A config dataclass declares every key and its default in one visible place; a YAML file may set
any subset, and command-line ``key=value`` pairs override both (values are parsed as YAML, so
``lr=3e-4``, ``widths=[16,32]`` and ``data=null`` work).  Unknown keys are errors that list the
known ones.

Values are checked against the field's type annotation (:func:`_coerce`): a scalar where a list
is expected, a float where an integer is, null or an empty value for a key that is not
``X | None``, or YAML that does not parse are errors (:class:`ValueError`) that name the key
(or the config file) and the expected form.
"""

from __future__ import annotations

import dataclasses
import numbers
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = ["load_config", "config_to_dict", "parse_overrides"]

C = TypeVar("C")


def _yaml_problem(err: yaml.YAMLError, where: bool = True) -> str:
    """One line from a PyYAML error: its problem, and (with ``where``) line and column."""
    problem = getattr(err, "problem", None) or (str(err).splitlines() or ["unreadable"])[0]
    mark = getattr(err, "problem_mark", None)
    if where and mark is not None:
        problem += f" at line {mark.line + 1}, column {mark.column + 1}"
    return problem


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``["a=1", "b=[1,2]"]`` -> ``{"a": 1, "b": [1, 2]}``.

    Raises:
        ValueError: a pair without ``=`` or a key, or a value that is not valid YAML (the
            message names the pair).
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"override {pair!r} is not of the form key=value")
        k, v = pair.split("=", 1)
        k = k.strip()
        if not k:
            raise ValueError(f"override {pair!r} has no key before '='")
        try:
            out[k] = yaml.safe_load(v)
        except yaml.YAMLError as err:
            raise ValueError(
                f"override {pair!r}: the value of {k!r} is not valid YAML "
                f"({_yaml_problem(err, where=False)})"
            ) from None
    return out


def _describe(typ: Any, default: Any = dataclasses.MISSING) -> str:
    """The expected form of a value of type ``typ``, for messages ("a list of integers like
    [32, 64]")."""
    origin = typing.get_origin(typ)
    if origin is tuple or typ is tuple:
        args = typing.get_args(typ)
        if len(args) == 2 and args[1] is Ellipsis:
            text = f"a list of {_plural(args[0])}"
            if args[0] is str:
                text += " (or one string)"
        elif args:
            kinds = {_plural(a) for a in args}
            text = f"a list of {len(args)} {kinds.pop() if len(kinds) == 1 else 'values'}"
        else:
            text = "a list"
        if isinstance(default, tuple) and default:
            text += f" like {list(default)}"
        return text
    return {
        int: "an integer",
        float: "a number",
        str: "a non-empty string",
        bool: "true or false",
        dict: "a mapping of keys to values",
    }.get(typ, getattr(typ, "__name__", str(typ)))


def _plural(typ: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(
        typ, f"{getattr(typ, '__name__', typ)}s"
    )


def _coerce(value: Any, typ: Any, key: str, default: Any = dataclasses.MISSING) -> Any:
    """``value`` (from YAML or Python) as the annotated type ``typ`` of config key ``key``.

    * ``X | None``: null (or an empty ``key=``) is None; anything else is checked as ``X``.
      For a key that is not optional, null is an error naming the key.
    * ``float``: ints become floats; strings are parsed ("3e-4", which YAML 1.1 reads as text).
    * ``int``: integral floats (``16.0``) become ints; ``16.5``, strings and booleans are errors.
    * ``str``: must be a non-empty string.
    * ``tuple[T, ...]`` / ``tuple[T1, T2]``: a list (or tuple) whose elements are checked as
      above (and whose length must match a fixed-length tuple); a scalar is an error naming the
      key and the expected form.  For a list of strings (``trainable``, ``unet_targets``,
      ``bands``), one string is taken as a one-element list - ``trainable=encoder.out_z`` means
      ``trainable=[encoder.out_z]``, not a list of its characters.
    * ``dict``: must be a mapping.

    ``default`` (the field's default) only serves as the example in messages.
    """
    if typ is None or typ is Any:
        return value
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        all_args = typing.get_args(typ)
        args = [a for a in all_args if a is not type(None)]
        if value is None:
            if len(args) < len(all_args):
                return None
            raise ValueError(f"config key {key!r} must be set, got null (an empty value)")
        if len(args) != 1:  # a union of several types: not checked
            return value
        typ = args[0]
        origin = typing.get_origin(typ)
    if value is None:
        raise ValueError(
            f"config key {key!r} must be {_describe(typ, default)}, got null (an empty value)"
        )
    if origin is tuple or typ is tuple:
        return _coerce_tuple(value, typ, key, default)
    if typ is dict or origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"config key {key!r} must be {_describe(dict)}, got {value!r}")
        return value
    if typ is float:
        if isinstance(value, str):
            # YAML 1.1 reads "3e-4" (no decimal point) as a string
            try:
                return float(value)
            except ValueError:
                raise ValueError(f"config key {key!r} must be float, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"config key {key!r} must be float, got {value!r}")
        return float(value)
    if typ is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"config key {key!r} must be int, got {value!r}")
        return int(value)
    if typ is str:
        if not isinstance(value, str):
            raise ValueError(f"config key {key!r} must be str, got {value!r}")
        if not value.strip():
            raise ValueError(f"config key {key!r} must be a non-empty string, got {value!r}")
        return value
    if typ is bool and not isinstance(value, bool):
        raise ValueError(f"config key {key!r} must be bool (true or false), got {value!r}")
    return value


def _coerce_tuple(value: Any, typ: Any, key: str, default: Any) -> tuple:
    """A list value of a ``tuple[...]`` key, element by element (see :func:`_coerce`)."""
    args = typing.get_args(typ)
    variadic = len(args) == 2 and args[1] is Ellipsis
    if variadic and args[0] is str and isinstance(value, str):
        value = [value]  # one string: a one-element list (not its characters)
    expected = _describe(typ, default)
    if not isinstance(value, list | tuple):
        raise ValueError(f"config key {key!r} must be {expected}, got {value!r}")
    if args and not variadic and len(value) != len(args):
        raise ValueError(
            f"config key {key!r} must be {expected}, got {len(value)} value(s): {value!r}"
        )
    if not args:
        return tuple(value)
    out = []
    for i, v in enumerate(value):
        try:
            out.append(_coerce(v, args[0] if variadic else args[i], key))
        except ValueError:
            raise ValueError(f"config key {key!r} must be {expected}, got {value!r}") from None
    return tuple(out)


def _read_mapping(p: Path) -> dict[str, Any]:
    """The mapping in YAML file ``p`` ({} for an empty file); errors name the file."""
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"config file {p} is not UTF-8 text (invalid byte at offset {err.start})"
        ) from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"config file {p} is not valid YAML: {_yaml_problem(err)}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError(f"config file {p} must hold a mapping of keys to values")
    return loaded


def load_config(
    cls: type[C], path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> C:
    """Build ``cls`` from defaults, then the YAML file, then ``overrides``.

    Raises:
        FileNotFoundError: no config file at ``path``.
        ValueError: the file is not UTF-8 text, not valid YAML or not a mapping; an unknown key;
            a value of the wrong type or form (:func:`_coerce`); or ``cls``'s own checks.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file not found: {p}")
        data.update(_read_mapping(p))
    data.update(overrides or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        raise ValueError(
            f"unknown config key(s) {unknown} for {cls.__name__}; known keys: {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints.get(k), k, fields[k].default) for k, v in data.items()}
    return cls(**kwargs)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A YAML-safe dict of a config dataclass (tuples -> lists)."""
    d = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
