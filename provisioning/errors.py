"""The app's own exceptions: what went wrong, said in one line a person can act on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ProvisioningError(Exception):
    """Base of the app's own errors; the message is one human line, never a Python repr."""


class ConfigurationError(ProvisioningError):
    """A setting is missing or invalid; the message names each setting (its environment
    variable) and what it must be, never the value of a secret one."""


def plain_reason(error: Mapping[str, Any], bounds: str = "") -> str:
    """What one pydantic error asks for, in words ("must be a whole number, between 1 and
    50"), never pydantic's own text, which names classes and prints reprs. ``bounds``: the
    allowed range, when the caller knows it."""
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    within = f", {bounds}" if bounds else ""
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"])
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known key"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"must be {bounds}" if bounds else "is out of range"
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return "must be a whole number" + within
    if kind in ("float_parsing", "float_type"):
        return "must be a number" + within
    if kind == "finite_number":
        return "must be a finite number" + within
    if kind in ("bool_parsing", "bool_type"):
        return "must be true or false"
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "")
        return f"must be one of {expected}" if expected else "is not one of the allowed values"
    if kind in ("string_type", "string_too_long", "string_too_short"):
        return "must be text"
    if kind in ("dict_type", "model_type", "model_attributes_type", "mapping_type"):
        return "must be an object (keys with values)"
    if kind in ("list_type", "tuple_type", "set_type"):
        return "must be a list"
    return "is not valid"
