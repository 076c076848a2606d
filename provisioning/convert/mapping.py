"""The declarative attribute mapping: load, check and compile it into a fast row -> user function.

A mapping file (YAML or JSON) mirrors the SCIM user it builds. Its ``user`` object holds core
attributes, ``name``, the work ``emails``/``phoneNumbers``/``addresses`` lists, the enterprise
extension and any custom extension URN. Each leaf is a column name, or an object with exactly
one source (``column``, ``constant``, ``template``, ``coalesce``) and optional ``transforms``,
``default``, ``required``, ``type`` and ``max_length``. See the README for the full reference.

Everything that can be wrong with a mapping is found by :func:`load_mapping` and
:meth:`Mapping.bind` (which checks the file header), so a bad mapping fails once, up front.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import plain_reason
from . import transforms as tf
from .readers import FileError
from .transforms import SpecError, ValueProblem
from .validation import (
    CORE,
    ENTERPRISE,
    MULTI_VALUED,
    TYPES,
    attribute_type,
    default_max_length,
    make_check,
    plain_text,
)

BUILTIN = ("microsoft-sample", "hr-suite")
LIFECYCLE = "lifecycle"
LIFECYCLE_DATES = ("hire_date", "termination_date")
_SOURCES = ("column", "constant", "template", "coalesce")


class LeafSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    column: str | None = None
    constant: Any = None
    template: str | None = None
    coalesce: list[str] | None = None
    transforms: list[Any] = Field(default_factory=list)
    default: Any = None
    required: bool = False
    type: str | None = None
    max_length: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> LeafSpec:
        given = [s for s in _SOURCES if s in self.model_fields_set]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of {', '.join(_SOURCES)} (found {', '.join(given) or 'none'})"
            )
        if self.coalesce is not None and not self.coalesce:
            raise ValueError("coalesce needs at least one column")
        if self.type is not None and self.type not in TYPES:
            raise ValueError(f"type must be one of {', '.join(TYPES)}")
        return self


class MappingFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    description: str = ""
    trim: bool = True
    user: dict[str, Any]
    # Dates that drive joiner/leaver timing; read from the file, not sent to Entra.
    lifecycle: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _supported(self) -> MappingFile:
        if self.version != 1:
            raise ValueError("only mapping version 1 exists")
        if "externalId" not in self.user:
            raise ValueError("user.externalId must be mapped: it is how Entra matches workers")
        unknown = set(self.lifecycle) - set(LIFECYCLE_DATES)
        if unknown:
            raise ValueError(
                f"lifecycle: unknown key(s) {sorted(unknown)}; known: {', '.join(LIFECYCLE_DATES)}"
            )
        return self


Errors = list[tuple["Leaf", str]]
# A built value getter: row values -> SCIM value (None when empty). May raise ValueProblem.
Getter = Callable[[list[str]], Any]


@dataclass(frozen=True)
class Leaf:
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


def load_mapping(ref: str | Path | None = None) -> Mapping:
    """Load a mapping by built-in name or file path (``None``: the Microsoft sample mapping)."""
    ref = ref or "microsoft-sample"
    if isinstance(ref, str) and ref in BUILTIN:
        return _builtin(ref)
    path = Path(ref)
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise SpecError(
            f"cannot read mapping '{ref}': {exc.strerror} (built-in: {', '.join(BUILTIN)})"
        ) from None
    return parse_mapping(text, name=path.stem, source=str(path))


@functools.cache
def _builtin(name: str) -> Mapping:
    # Built-in mappings never change in a process; HTTP calls would otherwise parse YAML each.
    text = (
        resources.files("provisioning.convert.mappings").joinpath(f"{name}.yaml").read_text("utf-8")
    )
    return parse_mapping(text, name=name, source=f"builtin:{name}")


def parse_mapping(text: str, *, name: str, source: str) -> Mapping:
    try:
        data = yaml.load(text, Loader=_MappingLoader)  # a SafeLoader subclass: no objects
    except yaml.YAMLError as exc:
        raise SpecError(f"mapping '{name}' is not valid YAML/JSON: {exc}") from None
    try:
        spec = MappingFile.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"mapping '{name}': {_pydantic_reason(exc)}") from None
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


class _MappingLoader(yaml.SafeLoader):
    """YAML as people write mappings: only true/false are booleans (YAML 1.2), so HR values
    such as Yes, No, On, Off stay text; a key given twice is an error, not last-one-wins."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' appears twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_MappingLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_MappingLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def _pydantic_reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        reason = plain_reason(err)
        if where:
            parts.append(f"{where} {reason}")
        else:  # the mapping as a whole, or a rule of ours that names what it checks
            parts.append(reason if err["type"] == "value_error" else f"the mapping {reason}")
    return "; ".join(parts)


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
        raise SpecError(f"{where}: {_pydantic_reason(exc)}") from None
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
