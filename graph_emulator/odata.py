"""The slice of OData the emulated endpoints accept: ``$filter`` clauses joined by ``and``,
``$top``, ``$select``, ``$orderby`` and opaque ``$skiptoken`` continuation tokens."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from ._util import parse_iso


class ODataError(ValueError):
    """An unsupported or malformed query option (answered with 400)."""


@dataclass(frozen=True, slots=True)
class Clause:
    prop: str  # canonical property path, e.g. "sourceIdentity/id"
    op: str  # eq, ne, gt, ge, lt, le, in, contains
    value: Any  # str, bool, float (timestamps) or a tuple of str for "in"


# Every operator the parser knows, by property kind; an endpoint narrows them (``operators``).
ALL_OPERATORS: dict[str, frozenset[str]] = {
    "string": frozenset({"eq", "ne", "in"}),
    "bool": frozenset({"eq", "ne"}),
    "datetime": frozenset({"eq", "gt", "ge", "lt", "le"}),
}
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)
_OR_NOT = re.compile(r"(?:^|\s)(or|not)(?:\s|\(|$)", re.IGNORECASE)
_CLAUSE = re.compile(r"^\s*([A-Za-z][\w/]*)\s+([A-Za-z]+)\s+(.+?)\s*$")
_FUNCTION = re.compile(r"^\s*([A-Za-z]+)\s*\((.*)\)\s*$", re.DOTALL)
_STRING = re.compile(r"^'((?:[^']|'')*)'$")


def _outside_quotes(text: str) -> str:
    """``text`` with every quoted literal blanked, so keywords inside values are not seen."""
    return re.sub(r"'(?:[^']|'')*'", lambda m: "'" + " " * (len(m.group(0)) - 2) + "'", text)


def _split_and(text: str) -> list[str]:
    """Split on `` and `` outside quoted literals."""
    parts: list[str] = []
    buf: list[str] = []
    quoted = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "'":
            quoted = not quoted
        if not quoted:
            match = _AND.match(text, i)
            if match:
                parts.append("".join(buf))
                buf = []
                i = match.end()
                continue
        buf.append(ch)
        i += 1
    if quoted:
        raise ODataError("unterminated string literal in $filter")
    parts.append("".join(buf))
    return parts


def _string(literal: str) -> str:
    match = _STRING.match(literal.strip())
    if not match:
        raise ODataError("expected a quoted string literal in $filter")
    return match.group(1).replace("''", "'")


def _property(name: str, properties: Mapping[str, str]) -> str:
    prop = properties.get(name.strip().lower())
    if prop is None:
        raise ODataError(f"filtering on property '{name.strip()}' is not supported")
    return prop


def parse_filter(
    text: str | None,
    properties: Mapping[str, str],
    kinds: Mapping[str, str],
    operators: Mapping[str, Collection[str]] | None = None,
    functions: Collection[str] = (),
) -> list[Clause]:
    """Parse ``prop op value [and ...]`` and, where ``functions`` allows, ``fn(prop, 'x')``.

    ``properties`` maps lower-cased names to canonical ones (so ``jobid`` means ``jobId``);
    ``kinds`` gives each canonical property's type: ``string``, ``bool`` or ``datetime``;
    ``operators`` the comparison operators allowed per kind (default ``ALL_OPERATORS``);
    ``functions`` the string functions allowed (only ``contains`` is implemented). Anything
    else raises ``ODataError`` naming the property, operator or function, never the literal.
    """
    if text is None or not text.strip():
        return []
    allowed = operators if operators is not None else ALL_OPERATORS
    blanked = _outside_quotes(text)
    if blanked.count("'") % 2:
        raise ODataError("unterminated string literal in $filter")
    keyword = _OR_NOT.search(blanked)
    if keyword:
        raise ODataError(f"the '{keyword.group(1).lower()}' operator is not supported in $filter")
    clauses: list[Clause] = []
    for part in _split_and(text.strip()):
        part = part.strip()
        while part.startswith("(") and part.endswith(")"):
            part = part[1:-1].strip()
        function = _FUNCTION.match(part)
        if function:
            name = function.group(1)
            if name.lower() not in functions:
                raise ODataError(f"the function '{name}' is not supported in $filter")
            args = _split_commas(function.group(2))
            if len(args) != 2:
                raise ODataError(f"'{name.lower()}' takes a property and a string literal")
            prop = _property(args[0], properties)
            if kinds[prop] != "string":
                raise ODataError(f"'{name.lower()}' is not supported for '{prop}'")
            clauses.append(Clause(prop, name.lower(), _string(args[1])))
            continue
        match = _CLAUSE.match(part)
        if not match:
            raise ODataError("unsupported $filter clause; expected <property> <operator> <literal>")
        name, op, literal = match.group(1), match.group(2).lower(), match.group(3)
        prop = _property(name, properties)
        kind = kinds[prop]
        if op not in ALL_OPERATORS["string"] | ALL_OPERATORS["datetime"]:
            raise ODataError(f"the operator '{match.group(2)}' is not supported in $filter")
        if op not in allowed.get(kind, ()):
            raise ODataError(f"'{op}' is not supported for '{prop}'")
        value: Any
        if op == "in":
            inner = literal.strip()
            if not (inner.startswith("(") and inner.endswith(")")):
                raise ODataError("'in' expects a parenthesised list of string literals")
            items = [item for item in _split_commas(inner[1:-1]) if item.strip()]
            value = tuple(_string(item) for item in items)
        elif kind == "datetime":
            try:
                value = parse_iso(literal)
            except ValueError as exc:
                raise ODataError(f"'{prop}' expects a DateTimeOffset literal") from exc
        elif kind == "bool":
            if literal.lower() not in ("true", "false"):
                raise ODataError(f"'{prop}' supports only eq/ne true|false")
            value = literal.lower() == "true"
        else:
            value = _string(literal)
        clauses.append(Clause(prop, op, value))
    return clauses


def _split_commas(text: str) -> list[str]:
    items: list[str] = []
    buf: list[str] = []
    quoted = False
    for ch in text:
        if ch == "'":
            quoted = not quoted
        if ch == "," and not quoted:
            items.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    items.append("".join(buf))
    return items


def _fold(value: Any) -> Any:
    if isinstance(value, str):
        return value.casefold()
    if isinstance(value, tuple):
        return tuple(_fold(item) for item in value)
    return value


def matches(clauses: list[Clause], get: Callable[[str], Any], fold_case: bool = False) -> bool:
    """Whether a record satisfies every clause; ``fold_case`` compares strings caselessly."""
    for clause in clauses:
        actual = get(clause.prop)
        value = clause.value
        if fold_case:
            actual, value = _fold(actual), _fold(value)
        if clause.op == "in":
            ok = actual in value
        elif clause.op == "contains":
            ok = isinstance(actual, str) and value in actual
        elif clause.op == "eq":
            ok = actual == value
        elif clause.op == "ne":
            ok = actual != value
        elif actual is None:
            ok = False
        elif clause.op == "gt":
            ok = actual > value
        elif clause.op == "ge":
            ok = actual >= value
        elif clause.op == "lt":
            ok = actual < value
        else:
            ok = actual <= value
        if not ok:
            return False
    return True


def parse_top(text: str | None, default: int, maximum: int) -> int:
    if text is None or text == "":
        return default
    try:
        top = int(text)
    except ValueError as exc:
        raise ODataError("$top must be an integer") from exc
    if not 1 <= top <= maximum:
        raise ODataError(f"$top must be between 1 and {maximum}")
    return top


def encode_token(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> dict[str, Any]:
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ODataError("$skiptoken is not valid") from exc
    if not isinstance(payload, dict):
        raise ODataError("$skiptoken is not valid")
    return payload
