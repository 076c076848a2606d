"""What a valid SCIM user for Entra's API-driven provisioning looks like, and row-level checks.

The mapping compiler attaches these checks to each attribute, so validation runs inside the
single pass that builds the user instead of walking the result a second time.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .transforms import ValueProblem

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
MULTI_VALUED = ("emails", "phoneNumbers", "addresses")

# The SCIM User attributes the provisioning service understands, with their SCIM type.
_STRING, _BOOLEAN, _EMAIL, _INTEGER, _DATE = "string", "boolean", "email", "integer", "date"
TYPES = (_STRING, _BOOLEAN, _EMAIL, _INTEGER, _DATE)
LIFECYCLE = "lifecycle"
LIFECYCLE_ATTRIBUTES = {"hire_date": _DATE, "termination_date": _DATE}
CORE_ATTRIBUTES: dict[str, str] = {
    "externalId": _STRING,
    "userName": _STRING,
    "displayName": _STRING,
    "nickName": _STRING,
    "profileUrl": _STRING,
    "title": _STRING,
    "userType": _STRING,
    "preferredLanguage": _STRING,
    "locale": _STRING,
    "timezone": _STRING,
    "active": _BOOLEAN,
    "name.formatted": _STRING,
    "name.familyName": _STRING,
    "name.givenName": _STRING,
    "name.middleName": _STRING,
    "name.honorificPrefix": _STRING,
    "name.honorificSuffix": _STRING,
    "emails.value": _EMAIL,
    "emails.display": _STRING,
    "emails.primary": _BOOLEAN,
    "phoneNumbers.value": _STRING,
    "phoneNumbers.display": _STRING,
    "phoneNumbers.primary": _BOOLEAN,
    "addresses.formatted": _STRING,
    "addresses.streetAddress": _STRING,
    "addresses.locality": _STRING,
    "addresses.region": _STRING,
    "addresses.postalCode": _STRING,
    "addresses.country": _STRING,
    "addresses.primary": _BOOLEAN,
}
ENTERPRISE_ATTRIBUTES: dict[str, str] = {
    "employeeNumber": _STRING,
    "costCenter": _STRING,
    "organization": _STRING,
    "division": _STRING,
    "department": _STRING,
    "manager.value": _STRING,
}
# Longest value Entra ID stores in the user property each attribute lands in by default
# (Microsoft Graph user resource). Longer values fail in Entra, so they are rejected here.
MAX_LENGTH: dict[str, int] = {
    "externalId": 16,  # lands in employeeId, whose documented maximum is 16
    "userName": 113,
    "displayName": 256,
    "nickName": 64,
    "title": 128,
    "name.givenName": 64,
    "name.familyName": 64,
    "emails.value": 256,
    "phoneNumbers.value": 64,
    "addresses.streetAddress": 1024,
    "addresses.locality": 128,
    "addresses.region": 128,
    "addresses.postalCode": 40,
    "addresses.country": 128,
    f"{ENTERPRISE}:department": 64,
    f"{ENTERPRISE}:organization": 64,
}

Check = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class RowError:
    """Why one row was rejected, with where to look in the file.

    ``value`` is the offending cell as read; it is personal data and goes only into the
    run's reports, never into logs.
    """

    file: str
    record: int  # ordinal of the record in the file (1-based, header not counted)
    line: int  # where the record starts; many records share a line in a one-line JSON array
    column: str
    attribute: str
    reason: str
    value: str = ""


# Fast acceptance of the everyday address shape (dot-atom local part, LDH labels, alphabetic
# TLD). Anything else gets the full RFC check of email-validator, which also explains the fault.
_PLAIN_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


def _check_email(value: str) -> None:
    local_length = value.rfind("@")
    if local_length > 64:  # RFC 5321; email-validator 2.x does not enforce it
        raise ValueProblem("not a valid email address: more than 64 characters before the @")
    if len(value) <= 254 and _PLAIN_EMAIL.fullmatch(value):
        return
    from email_validator import EmailNotValidError, validate_email

    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        # email-validator's messages do not repeat the address, so they are safe to show.
        raise ValueProblem(f"not a valid email address: {exc}") from None


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def plain_text(value: Any) -> str:
    """The check of an unbounded string: any value is fine as text."""
    return value if isinstance(value, str) else _as_text(value)


def make_check(scim_type: str, max_length: int | None) -> Check:
    """Return a function that coerces a mapped value to ``scim_type`` or raises ValueProblem."""
    if scim_type == _BOOLEAN:

        def boolean(value: Any) -> bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text == "true":
                return True
            if text == "false":
                return False
            raise ValueProblem(
                "must be true or false; add a map transform from the HR values to true/false"
            )

        return boolean
    if scim_type == _INTEGER:

        def integer(value: Any) -> int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            try:
                return int(str(value).strip())
            except ValueError:
                raise ValueProblem("must be a whole number") from None

        return integer
    if scim_type == _DATE:

        def iso_day(value: Any) -> str:
            text = str(value).strip()
            try:
                return dt.date.fromisoformat(text[:10]).isoformat()
            except ValueError:
                raise ValueProblem(
                    "not an ISO date (YYYY-MM-DD); add a date transform with the HR format"
                ) from None

        return iso_day
    is_email = scim_type == _EMAIL
    if max_length is None and not is_email:
        return plain_text

    def string(value: Any) -> str:
        text = value if isinstance(value, str) else _as_text(value)
        if max_length is not None and len(text) > max_length:
            raise ValueProblem(f"too long: {len(text)} characters, at most {max_length} allowed")
        if is_email:
            _check_email(text)
        return text

    return string


def attribute_type(namespace: str, path: str) -> str | None:
    """SCIM type of a known attribute (``None`` if the namespace does not define it)."""
    if namespace == CORE:
        return CORE_ATTRIBUTES.get(path)
    if namespace == ENTERPRISE:
        return ENTERPRISE_ATTRIBUTES.get(path)
    if namespace == LIFECYCLE:
        return LIFECYCLE_ATTRIBUTES.get(path)
    return _STRING


def default_max_length(namespace: str, path: str) -> int | None:
    key = path if namespace == CORE else f"{namespace}:{path}"
    return MAX_LENGTH.get(key)


def field_count_problem(found: int, expected: int) -> str:
    return (
        f"row has {found} fields but the header has {expected}; "
        "a delimiter or quote is probably missing or extra"
    )


# Characters no directory attribute should hold: C0 controls but tab, line feed and carriage
# return (multi-line addresses are real), DEL, C1 controls (usually a mis-decoded export),
# lone surrogates (not Unicode text: they cannot even be encoded as UTF-8) and the
# noncharacters U+FFFE/U+FFFF.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None


def control_problem(text: str) -> str | None:
    """Why a cell's text cannot be sent, or None."""
    found = _CONTROL.search(text)
    if found is None:
        return None
    code = ord(found.group())
    what = "a lone surrogate" if 0xD800 <= code <= 0xDFFF else "the control character"
    return (
        f"holds {what} U+{code:04X} at position {found.start() + 1}, which must not reach "
        "a directory attribute; remove it in the HR system"
    )


def duplicate_reason(count: int, cased: bool = False) -> str:
    spelt = (
        " (in different upper and lower case, which Entra and AD may match to one account)"
        if cased
        else ""
    )
    return (
        f"externalId appears on {count} rows of this file{spelt}; all of them are rejected "
        "so the HR system can decide which one is right"
    )


def id_key(external_id: str) -> str:
    """The form in which two externalIds are the same worker. Microsoft does not document
    whether inbound provisioning matches externalId to employeeId with or without case;
    AD's employeeID is a case-insensitive Unicode String (MS-ADA1, Employee-ID, syntax
    2.5.5.12) and Entra's string filters ignore case, so ids differing only in case are
    treated as one worker (README, "Duplicate externalIds")."""
    return external_id.casefold()


class Duplicates(dict[str, int]):
    """Occurrences of each repeated externalId, by :func:`id_key`; ``cased``: the keys whose
    rows spell the id in more than one way."""

    def __init__(self, counts: dict[str, int], cased: set[str]) -> None:
        super().__init__(counts)
        self.cased = cased


class DuplicateFinder:
    """Find externalIds that occur more than once in a file (ignoring case, see
    :func:`id_key`), with memory that stays small.

    The first pass keeps only a 64-bit hash per id (8 bytes each, bucketed so no big sort is
    needed); a hash seen twice marks a *candidate*. Hash collisions are possible, so candidates
    are confirmed by counting their exact ids in a second pass, which a file without duplicates
    never needs.
    """

    _BUCKET_BITS = 12

    def __init__(self) -> None:
        from array import array

        self._buckets = [array("q") for _ in range(1 << self._BUCKET_BITS)]
        self._shift = 64 - self._BUCKET_BITS

    def add(self, external_id: str) -> None:
        value = hash(id_key(external_id))
        self._buckets[(value & 0xFFFFFFFFFFFFFFFF) >> self._shift].append(value)

    def candidates(self) -> set[int]:
        found: set[int] = set()
        for bucket in self._buckets:
            if len(bucket) > 1:
                seen: set[int] = set()
                for value in bucket:
                    if value in seen:
                        found.add(value)
                    else:
                        seen.add(value)
        self._buckets = []
        return found

    @staticmethod
    def confirm(candidates: set[int], ids: Iterable[str]) -> Duplicates:
        """Exact occurrence counts of the ids (among ``ids``) that really repeat."""
        counts: dict[str, int] = {}
        spellings: dict[str, set[str]] = {}
        for external_id in ids:
            key = id_key(external_id)
            if hash(key) in candidates:
                counts[key] = counts.get(key, 0) + 1
                spellings.setdefault(key, set()).add(external_id)
        repeated = {k: n for k, n in counts.items() if n > 1}
        return Duplicates(repeated, {k for k in repeated if len(spellings[k]) > 1})
