"""The declarative attribute mapping: load, check and compile it into a fast row -> user function.

A mapping file (YAML or JSON) mirrors the SCIM user it builds. Its ``user`` object holds core
attributes, ``name``, the work ``emails``/``phoneNumbers``/``addresses`` lists, the enterprise
extension and any custom extension URN. Each leaf is a column name, or an object with exactly
one source (``column``, ``constant``, ``template``, ``coalesce``) and optional ``transforms``,
``default``, ``required``, ``type`` and ``max_length``. See the README for the full reference.

Everything that can be wrong with a mapping is found by :func:`load_mapping` and
:meth:`Mapping.bind` (which checks the file header), so a bad mapping fails once, up front.

This module is the public entry point: :func:`load_mapping` and :func:`parse_mapping` read a
mapping document (:mod:`.document`), compile it (:mod:`.compile`) and return the
:class:`Mapping`, whose :meth:`Mapping.bind` gives the row builder (:mod:`.bind`).
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from .compile import Mapping, compile_mapping
from .document import read_document
from .transforms import SpecError

__all__ = ["BUILTIN", "Mapping", "load_mapping", "parse_mapping"]

BUILTIN = ("microsoft-sample", "hr-suite")


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
    """Read, validate and compile mapping text (YAML or JSON) named ``name`` from ``source``."""
    return compile_mapping(read_document(text, name=name), name=name, source=source)
