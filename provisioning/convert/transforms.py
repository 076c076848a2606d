"""Value transforms of the attribute mapping: each one turns a cell value into another.

A transform is compiled once from its mapping spec into a plain function. ``None`` stands for
"empty"; transforms other than ``default`` pass it through untouched. A transform that cannot
handle a value raises :class:`ValueProblem` with a reason a person can act on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from ..errors import MappingError

Value = Any  # str | bool | int | None once transformed
Transform = Callable[[Value], Value]


class ValueProblem(Exception):
    """A single value cannot be used; the message says why without quoting the value."""


class SpecError(MappingError):
    """The mapping itself is wrong; raised while compiling, before any row is read."""


def _trim(value: Value) -> Value:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _lower(value: Value) -> Value:
    return value.lower() if isinstance(value, str) else value


def _upper(value: Value) -> Value:
    return value.upper() if isinstance(value, str) else value


SIMPLE: dict[str, Transform] = {"trim": _trim, "lower": _lower, "upper": _upper}


def value_map(
    table: dict[str, Value], *, case_sensitive: bool = False, **fallback: Value
) -> Transform:
    """Replace a value by its entry in ``table``; ``default`` (if given) for anything else."""
    if not table:
        raise SpecError("map: the table is empty")
    if not isinstance(case_sensitive, bool):
        raise SpecError("map: case_sensitive must be true or false")
    fold: Callable[[str], str] = (lambda s: s) if case_sensitive else str.casefold
    lookup = {fold(str(k)): v for k, v in table.items()}
    if len(lookup) != len(table):
        raise SpecError("map: two keys differ only by case; set case_sensitive: true")
    has_default = "default" in fallback
    default = fallback.get("default")
    allowed = ", ".join(str(k) for k in table)

    def apply(value: Value) -> Value:
        if value is None:
            return None
        try:
            return lookup[fold(str(value))]
        except KeyError:
            if has_default:
                return default
            raise ValueProblem(f"value is not one of the mapped values ({allowed})") from None

    return apply


_OUTPUTS = {"date", "datetime"}


def date_parse(formats: list[str], output: str = "date") -> Transform:
    """Parse a date with the given strptime formats (tried in order) and write ISO 8601."""
    if not formats:
        raise SpecError("date: give at least one input format, such as %Y-%m-%d")
    if output not in _OUTPUTS:
        raise SpecError(f"date: output must be one of {_names(_OUTPUTS)}, not '{output}'")
    for fmt in formats:
        if "%" not in fmt:
            raise SpecError(f"date: '{fmt}' is not a strptime format (no % directive)")
    iso_only = formats == ["%Y-%m-%d"]
    shown = ", ".join(formats)

    def parse(value: str) -> dt.datetime:
        if iso_only and len(value) == 10 and value[4] == value[7] == "-":
            # date.fromisoformat is ~40x faster than strptime for the most common HR format;
            # the shape test keeps out the other ISO forms it accepts, such as week dates.
            try:
                day = dt.date.fromisoformat(value)
                return dt.datetime(day.year, day.month, day.day)
            except ValueError:
                pass
        for fmt in formats:
            try:
                return dt.datetime.strptime(value, fmt)
            except ValueError:
                continue
        raise ValueProblem(f"not a date in the expected format ({shown})")

    def apply(value: Value) -> Value:
        if value is None:
            return None
        parsed = parse(str(value).strip())
        if output == "date":
            return parsed.date().isoformat()
        if parsed.tzinfo is None:
            return parsed.strftime("%Y-%m-%dT%H:%M:%SZ")
        return parsed.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    return apply


def default(fallback: Value) -> Transform:
    return lambda value: fallback if value is None or value == "" else value


def compile_transform(spec: Any) -> Transform:
    """Build one transform from its mapping spec: a name, or a one-key object."""
    if isinstance(spec, str):
        try:
            return SIMPLE[spec]
        except KeyError:
            raise SpecError(f"unknown transform '{spec}' (known: {', '.join(_known())})") from None
    if isinstance(spec, dict) and len(spec) == 1:
        ((name, arg),) = spec.items()
        if name == "map":
            if isinstance(arg, dict) and "values" in arg:
                options = {k: v for k, v in arg.items() if k != "values"}
                unknown = set(options) - {"default", "case_sensitive"}
                if unknown:
                    raise SpecError(f"map: unknown option(s) {_names(unknown)}")
                return value_map(arg["values"], **options)
            if isinstance(arg, dict):
                return value_map(arg)
            raise SpecError("map: expects an object of HR value -> SCIM value")
        if name == "date":
            if isinstance(arg, str):
                return date_parse([arg])
            if isinstance(arg, list):
                return date_parse([str(f) for f in arg])
            if isinstance(arg, dict):
                unknown = set(arg) - {"formats", "output"}
                if unknown:
                    raise SpecError(f"date: unknown option(s) {_names(unknown)}")
                formats = arg.get("formats")
                if isinstance(formats, str):
                    formats = [formats]
                if not isinstance(formats, list):
                    raise SpecError("date: 'formats' must be a list of strptime formats")
                return date_parse([str(f) for f in formats], str(arg.get("output", "date")))
            raise SpecError(
                "date: expects a format, a list of formats, or an object with formats and output"
            )
        if name == "default":
            return default(arg)
        if name in SIMPLE:
            raise SpecError(f"transform '{name}' takes no options; write it as a plain name")
        raise SpecError(f"unknown transform '{name}' (known: {', '.join(_known())})")
    if isinstance(spec, dict):
        found = f"an object with the keys {_names(spec)}" if spec else "an empty object"
    else:
        found = "a list" if isinstance(spec, list) else f"the value {spec}"
    raise SpecError(f"a transform is a name or an object with one key, not {found}")


def _names(keys: Any) -> str:
    return ", ".join(f"'{key}'" for key in sorted(map(str, keys)))


def _known() -> list[str]:
    return [*SIMPLE, "map", "date", "default"]


def chain(transforms: list[Transform]) -> Transform | None:
    if not transforms:
        return None
    if len(transforms) == 1:
        return transforms[0]

    def apply(value: Value) -> Value:
        for transform in transforms:
            value = transform(value)
        return value

    return apply
