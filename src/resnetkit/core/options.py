"""Settings defined once: each dataclass field carries its help text and allowed values.

`option(default, help, ...)` is a `dataclasses.field` whose metadata says what the setting
accepts; `check_fields(instance)` turns YAML or command-line values into the field's type and
refuses anything outside its bounds, with one line naming the field, the value and what is
allowed. The command line (`resnetkit.cli`) builds its flags from the same definitions, so the
two cannot drift. This module imports nothing from the package: the data layer uses it too.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_INT",
    "ConfigError",
    "FieldType",
    "Option",
    "OptionField",
    "check_fields",
    "option",
    "option_fields",
]

MAX_INT = 2**31 - 1  # epochs, steps, sizes: anything larger is a typo (and overflows torch)


class ConfigError(ValueError):
    """An invalid setting; the message names the field, the value and what is allowed."""


@dataclass(frozen=True)
class Option:
    """What a setting accepts and how it is explained; the type comes from the annotation."""

    help: str
    choices: tuple[str, ...] = ()
    low: float | None = None  # inclusive bounds
    high: float | None = None
    above: float | None = None  # exclusive lower bound (a learning rate > 0)
    metavar: str | None = None
    default_text: str | None = None  # how a None default reads in --help ("all cores")
    resume: bool = False  # may change when a run is resumed: it alters nothing already trained


def option(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] = (),
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
    metavar: str | None = None,
    default_text: str | None = None,
    resume: bool = False,
) -> Any:
    """A dataclass field with its `Option`: the one place a setting is defined."""
    meta = Option(help, tuple(choices), low, high, above, metavar, default_text, resume)
    return dataclasses.field(default=default, metadata={"option": meta})


@dataclass(frozen=True)
class FieldType:
    """A field's annotation, read once: `int | None` is FieldType(int, optional=True)."""

    base: type  # bool, int, float, str, tuple (of floats) or dict
    optional: bool = False

    def describe(self) -> str:
        """The type as a user reads it: 'an integer or empty'."""
        words = {
            bool: "true or false",
            int: "an integer",
            float: "a number",
            str: "text",
            tuple: "a list of numbers",
            dict: "a mapping",
        }
        return words[self.base] + (" or empty" if self.optional else "")


@dataclass(frozen=True)
class OptionField:
    """One option of a settings dataclass: its name, type, default and `Option`."""

    name: str
    type: FieldType
    default: Any
    option: Option

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def default_text(self) -> str:
        if self.option.default_text is not None:
            return self.option.default_text
        if self.default is None or self.default == ():
            return "none"
        if isinstance(self.default, bool):
            return str(self.default).lower()
        return str(self.default)


def _field_type(hint: Any) -> FieldType:
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        if len(args) != 1:
            raise TypeError(f"an option is one type, optionally with None; got {hint}")
        hint = args[0]
    base = typing.get_origin(hint) or hint
    if base not in (bool, int, float, str, tuple, dict):
        raise TypeError(f"options are bool, int, float, str, tuple or dict; got {hint}")
    return FieldType(base, optional)


@functools.cache
def option_fields(cls: type) -> tuple[OptionField, ...]:
    """The fields of dataclass `cls` that are options, in definition order."""
    hints = typing.get_type_hints(cls)
    found = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("option")
        if meta is not None:
            found.append(OptionField(f.name, _field_type(hints[f.name]), f.default, meta))
    return tuple(found)


def check_fields(instance: Any) -> None:
    """Coerce every option of a (frozen) dataclass instance to its type and check its bounds;
    ConfigError with one line naming the first bad field."""
    for spec in option_fields(type(instance)):
        value = coerce(spec, getattr(instance, spec.name))
        check(spec, value)
        object.__setattr__(instance, spec.name, value)


def coerce(spec: OptionField, value: Any) -> Any:
    """A YAML or flag value as the field's type (e.g. "true" -> True, 3.0 -> 3)."""
    kind = spec.type
    if value is None:
        if kind.optional:
            return None
        raise _error(spec.name, f"must not be empty; expected {kind.describe()}")
    try:
        return _convert(kind.base, value)
    except (TypeError, ValueError, OverflowError):
        raise _error(spec.name, f"got {value!r}; expected {kind.describe()}") from None


def _convert(base: type, value: Any) -> Any:
    if base is tuple:
        if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
            value = [value]
        return tuple(_convert(float, v) for v in value)
    if base is dict:
        if not isinstance(value, Mapping):
            raise TypeError
        return dict(value)
    if base is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower() if isinstance(value, (str, int)) else ""
        if text in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return text in ("true", "yes", "1", "on")
        raise TypeError
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise TypeError  # True is not a number, a list is not text
    if base is int:
        if isinstance(value, float) and not value.is_integer():
            raise TypeError
        return int(value)
    if base is float:
        return float(value)
    return str(value)


def check(spec: OptionField, value: Any) -> None:
    """Bounds, choices and finiteness of an already-typed value."""
    meta, name = spec.option, spec.name
    if value is None:
        return
    numbers = value if spec.type.base is tuple else (value,)
    for v in numbers:
        if isinstance(v, float) and not math.isfinite(v):
            raise _error(name, f"got {v!r}; expected a finite number")
    if meta.choices and value not in meta.choices:
        raise _error(name, f"got {value!r}; allowed values: {', '.join(meta.choices)}")
    if spec.type.base is int:
        high = meta.high if meta.high is not None else MAX_INT
        if meta.low is not None and value < meta.low:
            raise _error(name, f"got {value!r}; expected an integer >= {meta.low:g}")
        if value > high:
            raise _error(name, f"got {value}; expected at most {high}")
    elif spec.type.base is float:
        if meta.above is not None and not value > meta.above:
            raise _error(name, f"got {value!r}; expected a number > {meta.above:g}")
        low = meta.low if meta.low is not None else -math.inf
        high = meta.high if meta.high is not None else math.inf
        if not low <= value <= high:
            raise _error(name, f"got {value!r}; expected {_range(meta.low, meta.high)}")


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{float(low)} to {float(high)}"
    return f"a number >= {float(low)}" if low is not None else f"a number <= {float(high)}"


def _error(name: str, message: str) -> ConfigError:
    return ConfigError(f"invalid config field '{name}': {message}")
