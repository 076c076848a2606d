"""The app's own exceptions: what went wrong, said in one line a person can act on.

One hierarchy; each class carries the exit code of the command line (README, "Statuses and
exit codes") and the label it prints before its one line on stderr::

    ProvisioningError                 2  error
    ├── ConfigurationError            2  error           a setting is missing or invalid
    ├── InputFileError                2  file rejected   the HR file as a whole is unusable
    │   └── FileError                                    (convert.rows)
    ├── MappingError                  2  mapping error   the attribute mapping is wrong
    │   └── SpecError                                    (convert.transforms)
    ├── GraphServiceError             3  Graph error     Graph (or its token) failed or refused
    │   └── GraphUnavailable, GraphError, TransportError (graph.client)
    └── StorageError                  3  storage error   the storage account failed or refused
        └── PreconditionFailed                           (storage)

2 means "fix the input or the setting, then run again", 3 "the work waits: run again once
Graph or storage answers" (as the statuses ``interrupted`` and ``failed`` do). A message never
carries the value of an HR attribute or of a secret setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

# Exit codes of the command line for errors (README, "Statuses and exit codes"); 0 and 1, and
# the same 2 and 3 for run statuses, are in provisioning.runs.claims.
EXIT_UNUSABLE = 2  # a setting, an argument, the mapping or the file as a whole is unusable
EXIT_UNFINISHED = 3  # the work waits: Graph or storage failed, held, stopped, busy...
EXIT_INTERNAL = 4  # an unexpected error (a bug): one line naming where, --traceback for more
EXIT_INTERRUPTED = 130  # stopped by Ctrl-C (128 + SIGINT); a resumable run resumes


class ProvisioningError(Exception):
    """Base of the app's own errors; the message is one human line, never a Python repr.

    ``exit_code`` is the command line's exit code for it, ``label`` what the line starts with."""

    exit_code: ClassVar[int] = EXIT_UNUSABLE
    label: ClassVar[str] = "error"


class ConfigurationError(ProvisioningError):
    """A setting is missing or invalid; the message names each setting (its environment
    variable) and what it must be, never the value of a secret one."""


class InputFileError(ProvisioningError):
    """The input file as a whole cannot be used (missing, unreadable, not UTF-8, broken
    quoting, a column the mapping reads is missing...): no row of it may be used."""

    label = "file rejected"


class MappingError(ProvisioningError):
    """The attribute mapping itself is wrong (or cannot be read); found before any row is read."""

    label = "mapping error"


class GraphServiceError(ProvisioningError):
    """Microsoft Graph, or the token endpoint in front of it, could not be reached or refused
    a call. Transient, or fixed outside the data (permissions, the job): run again later."""

    exit_code = EXIT_UNFINISHED
    label = "Graph error"


class StorageError(ProvisioningError):
    """The storage account could not be reached, refused a call, or changed under us (a
    condition on a write did not hold). Nothing is lost: run again once it answers."""

    exit_code = EXIT_UNFINISHED
    label = "storage error"


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
