"""The mapping document: its pydantic models and how its YAML/JSON text is read.

:func:`read_document` parses the text (YAML 1.2 booleans, no duplicate keys) into a
:class:`MappingFile`, the whole file; :class:`LeafSpec` is one leaf of it. Validation here covers
the document's shape (one source per leaf, known keys, version); whether a path is a SCIM
attribute is checked when the document is compiled (:mod:`.compile`).
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import plain_reason
from .transforms import SpecError
from .validation import TYPES

LIFECYCLE = "lifecycle"
LIFECYCLE_DATES = ("hire_date", "termination_date")
_SOURCES = ("column", "constant", "template", "coalesce")


class LeafSpec(BaseModel):
    """One leaf of the mapping: exactly one source (column, constant, template or coalesce)
    and the options that shape its value (transforms, default, required, type, max_length)."""

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
    """A whole mapping document as written: the ``user`` tree, still raw (its leaves become
    :class:`LeafSpec` when compiled), the ``lifecycle`` dates and the file-wide options."""

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


def read_document(text: str, *, name: str) -> MappingFile:
    """Parse and validate a mapping document; every fault is a :class:`SpecError` naming it."""
    try:
        data = yaml.load(text, Loader=_MappingLoader)  # a SafeLoader subclass: no objects
    except yaml.YAMLError as exc:
        raise SpecError(f"mapping '{name}' is not valid YAML/JSON: {exc}") from None
    try:
        return MappingFile.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"mapping '{name}': {pydantic_reason(exc)}") from None


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


def pydantic_reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        reason = plain_reason(err)
        if where:
            parts.append(f"{where} {reason}")
        else:  # the mapping as a whole, or a rule of ours that names what it checks
            parts.append(reason if err["type"] == "value_error" else f"the mapping {reason}")
    return "; ".join(parts)
