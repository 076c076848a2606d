"""Compile a validated mapping document into a tree of leaves checked against the SCIM schema.

The result, :class:`Mapping`, knows every column it reads; :meth:`Mapping.bind` resolves them
against a file's header (:mod:`.bind`).
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from . import transforms as tf
from .bind import BoundMapping
from .document import LIFECYCLE, LIFECYCLE_DATES, LeafSpec, MappingFile, pydantic_reason
from .rows import FileError
from .transforms import SpecError
from .validation import (
    CORE,
    ENTERPRISE,
    MULTI_VALUED,
    attribute_type,
    default_max_length,
    make_check,
)


@dataclass(frozen=True)
class Leaf:
    """One compiled attribute: where it goes in the user, its spec, its transform chain and the
    check of its SCIM type and length."""

    path: str  # e.g. "name.givenName" or "urn:…:enterprise:2.0:User:manager.value"
    spec: LeafSpec
    transform: tf.Transform | None
    check: Callable[[Any], Any]

    @property
    def columns(self) -> list[str]:
        if self.spec.column is not None:
            return [self.spec.column]
        if self.spec.coalesce is not None:
            return list(self.spec.coalesce)
        if self.spec.template is not None:
            return [f for _, f, _, _ in string.Formatter().parse(self.spec.template) if f]
        return []


@dataclass(frozen=True)
class Node:
    """An object in the user: named leaves, named sub-objects and multi-valued lists."""

    leaves: list[tuple[str, Leaf]]
    objects: list[tuple[str, Node]]
    lists: list[tuple[str, list[Node]]]


@dataclass
class Mapping:
    """A compiled mapping: the user tree (``root``), the lifecycle dates and the extension URNs
    it can fill. :meth:`bind` resolves its columns against one file's header."""

    name: str
    source: str
    trim: bool
    root: Node
    extensions: list[str]
    lifecycle: Node

    @property
    def columns(self) -> list[str]:
        """Every column the mapping reads, in mapping order, without repeats."""
        seen: dict[str, None] = {}
        for leaf in [*_walk(self.root), *_walk(self.lifecycle)]:
            for column in leaf.columns:
                seen[column] = None
        return list(seen)

    def bind(self, header: list[str]) -> BoundMapping:
        missing = [c for c in self.columns if c not in header]
        if missing:
            raise FileError(
                f"the header lacks column(s) the mapping '{self.name}' reads: "
                + ", ".join(f"'{c}'" for c in missing)
            )
        return BoundMapping(self, header)


def _walk(node: Node) -> list[Leaf]:
    out = [leaf for _, leaf in node.leaves]
    for _, child in node.objects:
        out.extend(_walk(child))
    for _, entries in node.lists:
        for entry in entries:
            out.extend(_walk(entry))
    return out


def compile_mapping(spec: MappingFile, *, name: str, source: str) -> Mapping:
    """Compile a validated document; a path that is not a SCIM attribute is a SpecError."""
    root, extensions = _compile_user(spec.user)
    lifecycle = _compile_object(spec.lifecycle, LIFECYCLE, "", "lifecycle")
    return Mapping(
        name=name,
        source=source,
        trim=spec.trim,
        root=root,
        extensions=extensions,
        lifecycle=lifecycle,
    )


def _compile_user(user: dict[str, Any]) -> tuple[Node, list[str]]:
    extensions: list[str] = []
    core: dict[str, Any] = {}
    objects: list[tuple[str, Node]] = []
    for key, value in user.items():
        if key.startswith("urn:"):
            if key.casefold() == CORE.casefold():
                raise SpecError("put core attributes directly under 'user', not under the core URN")
            if key.casefold() == ENTERPRISE.casefold() and key != ENTERPRISE:
                raise SpecError(f"user.{key}: the enterprise extension URN is spelt {ENTERPRISE}")
            if not isinstance(value, dict):
                raise SpecError(f"user.{key}: an extension must be an object of attributes")
            objects.append((key, _compile_object(value, key, "", f"user.{key}")))
            extensions.append(key)
        else:
            core[key] = value
    root = _compile_object(core, CORE, "", "user")
    return Node(root.leaves, root.objects + objects, root.lists), extensions


_LEAF_KEYS = frozenset(LeafSpec.model_fields)


def _is_leaf(value: Any) -> bool:
    # Any leaf option marks a leaf, so a leaf that forgot its source gets the source error.
    return isinstance(value, str) or (isinstance(value, dict) and not _LEAF_KEYS.isdisjoint(value))


def _compile_object(obj: dict[str, Any], namespace: str, prefix: str, where: str) -> Node:
    leaves: list[tuple[str, Leaf]] = []
    objects: list[tuple[str, Node]] = []
    lists: list[tuple[str, list[Node]]] = []
    for key, value in obj.items():
        path = f"{prefix}{key}"
        here = f"{where}.{key}"
        if _is_leaf(value):
            leaves.append((key, _compile_leaf(value, namespace, path, here)))
        elif namespace == CORE and not prefix and key in MULTI_VALUED:
            entries = value if isinstance(value, list) else [value]
            lists.append(
                (key, [_compile_entry(e, key, f"{here}[{i}]") for i, e in enumerate(entries)])
            )
        elif isinstance(value, dict):
            if namespace != ENTERPRISE and namespace != CORE:
                raise SpecError(f"{here}: custom extension attributes must be single values")
            if (namespace == CORE and key != "name") or (
                namespace == ENTERPRISE and key != "manager"
            ):
                raise SpecError(f"{here}: '{key}' is not a complex attribute of the schema")
            objects.append((key, _compile_object(value, namespace, f"{path}.", here)))
        else:
            raise SpecError(f"{here}: expected a column name, a leaf object or a nested object")
    return Node(leaves, objects, lists)


def _compile_entry(entry: Any, attribute: str, where: str) -> Node:
    if not isinstance(entry, dict):
        raise SpecError(f"{where}: each {attribute} entry is an object of sub-attributes")
    entry = dict(entry)
    kind = entry.pop("type", "work")
    if kind != "work":
        raise SpecError(f"{where}.type: Entra processes only type 'work' entries, not '{kind}'")
    node = _compile_object(entry, CORE, f"{attribute}.", where)
    if not node.leaves:
        raise SpecError(f"{where}: the entry maps no sub-attribute")
    return node


def _compile_leaf(raw: Any, namespace: str, path: str, where: str) -> Leaf:
    try:
        spec = LeafSpec(column=raw) if isinstance(raw, str) else LeafSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(f"{where}: {pydantic_reason(exc)}") from None
    known = attribute_type(namespace, path)
    if known is None:
        if namespace == LIFECYCLE:
            raise SpecError(f"{where}: lifecycle knows only {', '.join(LIFECYCLE_DATES)}")
        schema = "core User" if namespace == CORE else "enterprise User extension"
        raise SpecError(f"{where}: '{path}' is not an attribute of the SCIM {schema} schema")
    try:
        steps = [tf.compile_transform(t) for t in spec.transforms]
    except SpecError as exc:
        raise SpecError(f"{where}: {exc}") from None
    if "default" in spec.model_fields_set:
        steps.append(tf.default(spec.default))
    if spec.template is not None:
        _check_template(spec.template, where)
    if spec.type is not None and namespace in (CORE, ENTERPRISE, LIFECYCLE) and spec.type != known:
        raise SpecError(f"{where}: '{path}' is a SCIM {known}; its type cannot be changed")
    scim_type = spec.type or known
    max_length = spec.max_length or default_max_length(namespace, path)
    full_path = path if namespace == CORE else f"{namespace}:{path}"
    return Leaf(full_path, spec, tf.chain(steps), make_check(scim_type, max_length))


def _check_template(template: str, where: str) -> None:
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(template)]
    except ValueError as exc:
        raise SpecError(f"{where}: bad template: {exc}") from None
    if all(name is None for name, _, _ in fields):
        raise SpecError(f"{where}: the template names no column; use constant for fixed text")
    for name, format_spec, conversion in fields:
        if name is None:
            continue
        if not name or format_spec or conversion:
            raise SpecError(f"{where}: template fields are plain column names like {{FirstName}}")
