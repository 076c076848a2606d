"""The hot path: a compiled mapping bound to one file's header builds a SCIM user per row.

Binding resolves every column to its index once and turns each leaf into a closure, so building
a user is a walk over closures with no lookups by name.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .transforms import ValueProblem
from .validation import CORE, plain_text

if TYPE_CHECKING:
    from .compile import Leaf, Mapping, Node
    from .document import LeafSpec

Errors = list[tuple["Leaf", str]]
# A built value getter: row values -> SCIM value (None when empty). May raise ValueProblem.
Getter = Callable[[list[str]], Any]


class BoundMapping:
    """A mapping whose columns are resolved against one file's header."""

    def __init__(self, mapping: Mapping, header: list[str]) -> None:
        self.mapping = mapping
        self.header = header
        self.width = len(header)
        self._index = {name: i for i, name in enumerate(header)}
        self._trim = mapping.trim
        self._root = self._bind_node(mapping.root, seed=("schemas",))
        ext_leaf = next(leaf for key, leaf in mapping.root.leaves if key == "externalId")
        self.external_id_leaf = ext_leaf
        self._external_id = self._getter(ext_leaf)
        self.extensions = mapping.extensions
        self._dates = [(key, self._bind_leaf(leaf)) for key, leaf in mapping.lifecycle.leaves]

    def external_id(self, values: list[str]) -> str | None:
        """The row's externalId, or None when it is empty or cannot be computed."""
        try:
            value = self._external_id(values)
        except ValueProblem:
            return None
        return None if value is None else str(value)

    def build(self, values: list[str], errors: list[tuple[Leaf, str]]) -> dict[str, Any]:
        """Build the SCIM user of one row; problems are appended to ``errors``.

        ``schemas`` lists exactly the URNs the user carries: core, plus each extension that
        got at least one value in this row.
        """
        user = self._root(values, errors)
        schemas = [CORE]
        for urn in self.extensions:
            if urn in user:
                schemas.append(urn)
        user["schemas"] = schemas
        return user

    def dates(self, values: list[str], errors: list[tuple[Leaf, str]]) -> dict[str, str]:
        """The row's lifecycle dates (ISO 8601 days) that are present."""
        out = {}
        for key, leaf in self._dates:
            value = leaf(values, errors)
            if value is not None:
                out[key] = value
        return out

    def raw_value(self, leaf: Leaf, values: list[str]) -> str:
        for column in leaf.columns:
            text = values[self._index[column]]
            if text.strip():
                return text
        return ""

    def _source(self, spec: LeafSpec) -> Getter:
        trim = self._trim
        if spec.column is not None:
            i = self._index[spec.column]
            if trim:
                return lambda v: v[i].strip() or None
            return lambda v: v[i] or None
        if spec.coalesce is not None:
            indexes = [self._index[c] for c in spec.coalesce]

            def first(v: list[str]) -> str | None:
                for i in indexes:
                    text = v[i].strip() if trim else v[i]
                    if text:
                        return text
                return None

            return first
        if spec.template is not None:
            parts = [
                (literal, None if name is None else self._index[name])
                for literal, name, _, _ in string.Formatter().parse(spec.template)
            ]

            def render(v: list[str]) -> str | None:
                out = []
                filled = False
                for literal, i in parts:
                    out.append(literal)
                    if i is not None:
                        text = v[i].strip() if trim else v[i]
                        filled = filled or bool(text)
                        out.append(text)
                # A template over only empty columns is empty, not just its literal text.
                return " ".join("".join(out).split()) if filled else None

            return render
        constant = spec.constant
        return lambda v: constant

    def _getter(self, leaf: Leaf) -> Getter:
        source = self._source(leaf.spec)
        transform = leaf.transform
        if transform is None:
            return source
        return lambda v: transform(source(v))

    def _bind_leaf(self, leaf: Leaf) -> Callable[[list[str], list[tuple[Leaf, str]]], Any]:
        check = leaf.check
        required = leaf.spec.required or leaf.path == "externalId"
        if leaf.spec.column is not None and leaf.transform is None:
            return self._bind_column(leaf, check, required)
        get = self._getter(leaf)

        def value(v: list[str], errors: list[tuple[Leaf, str]]) -> Any:
            try:
                result = get(v)
                if result is None or result == "":
                    if required:
                        errors.append((leaf, _missing(leaf)))
                    return None
                return check(result)
            except ValueProblem as exc:
                errors.append((leaf, str(exc)))
                return None

        return value

    def _bind_column(
        self, leaf: Leaf, check: Callable[[Any], Any], required: bool
    ) -> Callable[[list[str], list[tuple[Leaf, str]]], Any]:
        """The common leaf, a plain column, in one closure: it runs for every cell of a file."""
        i = self._index[leaf.spec.column or ""]
        trim = self._trim
        plain = check is plain_text

        def value(v: list[str], errors: list[tuple[Leaf, str]]) -> Any:
            text = v[i].strip() if trim else v[i]
            if not text:
                if required:
                    errors.append((leaf, _missing(leaf)))
                return None
            if plain:
                return text
            try:
                return check(text)
            except ValueProblem as exc:
                errors.append((leaf, str(exc)))
                return None

        return value

    def _bind_node(
        self, node: Node, seed: tuple[str, ...] = ()
    ) -> Callable[[list[str], list[tuple[Leaf, str]]], dict[str, Any]]:
        """Builder of one object; ``seed`` keys are put first (schemas leads a SCIM user)."""
        leaves = [(key, self._bind_leaf(leaf)) for key, leaf in node.leaves]
        objects = [(key, self._bind_node(child)) for key, child in node.objects]
        # An entry counts only if a column filled it: a lone constant such as primary: true
        # must not produce an empty email or phone.
        lists = [
            (key, [(self._bind_node(e), _data_keys(e)) for e in entries])
            for key, entries in node.lists
        ]

        def build(v: list[str], errors: list[tuple[Leaf, str]]) -> dict[str, Any]:
            out: dict[str, Any] = dict.fromkeys(seed)
            for key, leaf in leaves:
                result = leaf(v, errors)
                if result is not None:
                    out[key] = result
            for key, child in objects:
                sub = child(v, errors)
                if sub:
                    out[key] = sub
            for key, entries in lists:
                items = []
                for entry, data_keys in entries:
                    sub = entry(v, errors)
                    if any(k in sub for k in data_keys):
                        sub["type"] = "work"
                        items.append(sub)
                if items:
                    out[key] = items
            return out

        return build


def _data_keys(node: Node) -> set[str]:
    return {key for key, leaf in node.leaves if leaf.columns}


def _missing(leaf: Leaf) -> str:
    columns = ", ".join(leaf.columns) or "constant"
    if leaf.path == "externalId":
        return f"missing externalId: {columns} is empty (Entra needs it to match the worker)"
    return f"required attribute {leaf.path} is empty ({columns})"
