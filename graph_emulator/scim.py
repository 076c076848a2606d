"""The bulkUpload request contract (as Microsoft documents it) and the SCIM -> Graph user mapping.

Validation messages name JSON paths and keys only, never attribute values.
"""

from __future__ import annotations

from typing import Any

BULK_REQUEST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
MAX_OPERATIONS = 50
SCIM_MEDIA_TYPE = "application/scim+json"


class InvalidBulkRequest(ValueError):
    """The request violates the bulkUpload contract (answered with 400)."""


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def summarize(body: Any) -> tuple[int, list[tuple[str | None, str | None]]]:
    """Best-effort operation count and (bulkId, externalId) pairs of any received body."""
    if not isinstance(body, dict):
        return 0, []
    operations = body.get("Operations")
    if not isinstance(operations, list):
        return 0, []
    pairs: list[tuple[str | None, str | None]] = []
    for op in operations:
        bulk = op.get("bulkId") if isinstance(op, dict) else None
        data = op.get("data") if isinstance(op, dict) else None
        ext = data.get("externalId") if isinstance(data, dict) else None
        pairs.append(
            (bulk if isinstance(bulk, str) else None, ext if isinstance(ext, str) else None)
        )
    return len(operations), pairs


def _fail(message: str) -> InvalidBulkRequest:
    return InvalidBulkRequest(message)


def _check_object(value: Any, where: str) -> None:
    if value is not None and not isinstance(value, dict):
        raise _fail(f"{where} must be an object")


def _check_multi_valued(data: dict[str, Any], key: str, where: str) -> None:
    if key not in data or data[key] is None:
        return
    items = data[key]
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise _fail(f"{where}.{key} must be an array of objects")


def _check_data(data: Any, where: str) -> None:
    if not isinstance(data, dict):
        raise _fail(f"{where} must be an object")
    schemas = data.get("schemas")
    if not isinstance(schemas, list) or not all(isinstance(s, str) for s in schemas):
        raise _fail(f"{where}.schemas must be an array of schema URNs")
    listed = {s.lower() for s in schemas}
    if CORE_USER.lower() not in listed:
        raise _fail(f"{where}.schemas must include {CORE_USER}")
    for key in data:
        if key.lower().startswith("urn:"):
            if key.lower() not in listed:
                raise _fail(f"{where} has the extension object {key} but {where}.schemas omits it")
            _check_object(data[key], f"{where}.{key}")
            if data[key] is None:
                raise _fail(f"{where}.{key} must be an object")
    external_id = data.get("externalId")
    if not isinstance(external_id, str) or not external_id.strip():
        raise _fail(f"{where}.externalId must be a non-empty string")
    if "active" in data and not isinstance(data["active"], bool):
        raise _fail(f"{where}.active must be a boolean when present")
    for key in ("userName", "displayName", "title", "userType", "preferredLanguage"):
        if key in data and data[key] is not None and not isinstance(data[key], str):
            raise _fail(f"{where}.{key} must be a string")
    _check_object(data.get("name"), f"{where}.name")
    for key in ("emails", "phoneNumbers", "addresses"):
        _check_multi_valued(data, key, where)
    enterprise = _find_key(data, ENTERPRISE_USER)
    if enterprise is not None:
        ext = data[enterprise]
        manager = ext.get("manager")
        if manager is not None:
            if not isinstance(manager, dict):
                raise _fail(f"{where}.{enterprise}.manager must be an object")
            value = manager.get("value")
            if value is not None and not isinstance(value, str):
                raise _fail(f"{where}.{enterprise}.manager.value must be a string")


def validate_bulk_request(body: Any) -> list[dict[str, Any]]:
    """Return the operations of a valid bulk request, or raise ``InvalidBulkRequest``."""
    if not isinstance(body, dict):
        raise _fail("the request body must be a JSON object")
    if body.get("schemas") != [BULK_REQUEST_SCHEMA]:
        raise _fail(f'"schemas" must be ["{BULK_REQUEST_SCHEMA}"]')
    if "failOnErrors" in body and body["failOnErrors"] is not None:
        fail_on = body["failOnErrors"]
        if isinstance(fail_on, bool) or not isinstance(fail_on, int):
            raise _fail('"failOnErrors" must be null or an integer')
    operations = body.get("Operations")
    if not isinstance(operations, list):
        raise _fail('"Operations" must be an array of operations')
    if not operations:
        raise _fail('"Operations" must contain at least one operation')
    if len(operations) > MAX_OPERATIONS:
        raise _fail(
            f'"Operations" has {len(operations)} operations; a bulk request can contain a '
            f"maximum of {MAX_OPERATIONS} operations"
        )
    seen: dict[str, int] = {}
    for index, op in enumerate(operations):
        where = f"Operations[{index}]"
        if not isinstance(op, dict):
            raise _fail(f"{where} must be an object")
        method = op.get("method")
        if not isinstance(method, str) or method.upper() != "POST":
            raise _fail(f"{where}.method must be POST (the only method bulkUpload supports)")
        path = op.get("path")
        if not isinstance(path, str) or path.lower() != "/users":
            raise _fail(f'{where}.path must be "/Users"')
        bulk_id = op.get("bulkId")
        if not isinstance(bulk_id, str) or not bulk_id.strip():
            raise _fail(f"{where}.bulkId must be a non-empty string")
        if bulk_id in seen:
            raise _fail(f"{where}.bulkId duplicates Operations[{seen[bulk_id]}].bulkId")
        seen[bulk_id] = index
        _check_data(op.get("data"), f"{where}.data")
    return operations


def _find_key(data: dict[str, Any], urn: str) -> str | None:
    for key in data:
        if key.lower() == urn.lower() and isinstance(data[key], dict):
            return key
    return None


def _work_entry(items: Any) -> dict[str, Any] | None:
    """The work-typed entry of a multi-valued attribute (the primary one first)."""
    if not isinstance(items, list):
        return None
    work = [i for i in items if isinstance(i, dict) and str(i.get("type", "")).lower() == "work"]
    primary = [i for i in work if i.get("primary") is True]
    chosen = primary or work
    return chosen[0] if chosen else None


# Graph user properties the emulator derives from SCIM (the default API-driven mapping).
MAPPED_PROPERTIES = (
    "employeeId",
    "userPrincipalName",
    "displayName",
    "givenName",
    "surname",
    "jobTitle",
    "department",
    "companyName",
    "employeeOrgData",
    "employeeType",
    "mail",
    "businessPhones",
    "streetAddress",
    "city",
    "state",
    "postalCode",
    "country",
    "preferredLanguage",
    "accountEnabled",
)


def graph_fields(data: dict[str, Any]) -> dict[str, Any]:
    """Graph user properties present in a SCIM user; absent SCIM attributes yield absent keys."""
    out: dict[str, Any] = {"employeeId": data["externalId"]}
    for scim_key, graph_key in (
        ("userName", "userPrincipalName"),
        ("displayName", "displayName"),
        ("title", "jobTitle"),
        ("userType", "employeeType"),
        ("preferredLanguage", "preferredLanguage"),
        ("active", "accountEnabled"),
    ):
        if scim_key in data:
            out[graph_key] = data[scim_key]
    name = data.get("name")
    if isinstance(name, dict):
        if "givenName" in name:
            out["givenName"] = name["givenName"]
        if "familyName" in name:
            out["surname"] = name["familyName"]
    if "emails" in data:
        email = _work_entry(data["emails"])
        out["mail"] = email.get("value") if email else None
    if "phoneNumbers" in data:
        phone = _work_entry(data["phoneNumbers"])
        out["businessPhones"] = [phone["value"]] if phone and phone.get("value") else []
    if "addresses" in data:
        address = _work_entry(data["addresses"]) or {}
        for scim_key, graph_key in (
            ("streetAddress", "streetAddress"),
            ("locality", "city"),
            ("region", "state"),
            ("postalCode", "postalCode"),
            ("country", "country"),
        ):
            out[graph_key] = address.get(scim_key)
    enterprise_key = _find_key(data, ENTERPRISE_USER)
    if enterprise_key is not None:
        ext = data[enterprise_key]
        if "department" in ext:
            out["department"] = ext["department"]
        if "organization" in ext:
            out["companyName"] = ext["organization"]
        org = {key: ext[key] for key in ("division", "costCenter") if key in ext}
        if org:
            out["employeeOrgData"] = org  # partial: merged into the user's existing value
    return out


def manager_reference(data: dict[str, Any]) -> tuple[bool, str | None]:
    """(present, manager externalId). ``present`` is False when the record says nothing."""
    enterprise_key = _find_key(data, ENTERPRISE_USER)
    if enterprise_key is None or "manager" not in data[enterprise_key]:
        return False, None
    manager = data[enterprise_key]["manager"]
    if not isinstance(manager, dict):
        return True, None
    value = manager.get("value")
    return True, value if isinstance(value, str) and value else None
