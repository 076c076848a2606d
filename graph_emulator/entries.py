"""Provisioning-log entries (``provisioningObjectSummary``) shaped like Microsoft's real page
``tests/data/microsoft/provisioning-log-sample.json``: the same keys, the same step names and
types, Microsoft's wording in the descriptions, ``activityDateTime`` to the second.

The sample shows creates, updates of existing users, a manager reference Entra could not
resolve (``EntrySynchronizationSkip``) and the follow-up update that sets the manager. What it
does not show (a failure, a disable, a record with nothing to change) is shaped with the same
keys and step vocabulary; each such choice is marked "assumed" where it is made.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from ._util import iso_seconds, new_guid
from .scim import ENTERPRISE_USER

# sourceIdentity.identityType and the object type the descriptions name, in every entry of the
# sample (its records carry the enterprise extension; the emulator assumes Entra names the
# same type whatever extensions a record carries).
SOURCE_TYPE = ENTERPRISE_USER
# The sample (January 2023) predates the rename to Microsoft Entra ID; its wording is kept
# verbatim, since it is the only real text we have.
TARGET = "Azure Active Directory"
INITIATOR = "Azure AD Provisioning Service"
# provisioningAction (lower camel case, Graph's enum) -> action (capitalised, as the sample
# prints "Create" and "Update"; the capitalisation of the others is assumed to follow suit).
ACTIONS = {
    "create": "Create",
    "update": "Update",
    "disable": "Disable",
    "delete": "Delete",
    "stagedDelete": "StagedDelete",
    "other": "Other",
}
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")


def text(value: Any) -> str | None:
    """modifiedProperty values and step details are strings in Graph."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items() if v is not None)
    return str(value)


def flatten_scim(data: dict[str, Any]) -> dict[str, str]:
    """A SCIM record as ``EntryImportAdd`` lists it in the sample: ``namegivenName``,
    ``urnietfparamsscimschemasextensionenterprise20Userdepartment``,
    ``addresses[type eq "work"]country``, the manager as its ``value``; strings only."""
    out: dict[str, str] = {}

    def put(key: str, value: Any) -> None:
        rendered = text(value)
        if rendered is not None and not isinstance(value, dict | list):
            out[key] = rendered

    for key, value in data.items():
        if key == "schemas" or value is None:
            continue
        prefix = _NOT_ALNUM.sub("", key) if key.lower().startswith("urn:") else key
        if isinstance(value, dict):
            for sub, inner in value.items():
                if isinstance(inner, dict):
                    put(prefix + sub, inner.get("value"))
                else:
                    put(prefix + sub, inner)
        elif isinstance(value, list):
            if all(not isinstance(item, dict) for item in value):
                put(key, ",".join(str(item) for item in value))
                continue
            for item in value:
                if not isinstance(item, dict) or not isinstance(item.get("type"), str):
                    continue
                for sub, inner in item.items():
                    if sub not in ("type", "primary"):
                        put(f'{key}[type eq "{item["type"]}"]{sub}', inner)
        else:
            put(key, value)
    return out


def step(name: str, kind: str, status: str, description: str, details: dict[str, str]) -> dict:
    return {
        "name": name,
        "provisioningStepType": kind,
        "status": status,
        "description": description,
        "details": details,
    }


def import_add(external_id: str, data: dict[str, Any]) -> dict:
    # "(Add)" for updates too: the sample's updates of existing users say so.
    return step(
        "EntryImportAdd",
        "import",
        "success",
        f"Received {SOURCE_TYPE} '{external_id}' change of type (Add) from API",
        flatten_scim(data),
    )


def import_existing(user: dict[str, Any], properties: tuple[str, ...]) -> dict:
    """``EntryImport`` (matching): the user as Entra found it before this change."""
    upn = user.get("userPrincipalName") or ""
    details: dict[str, str] = {"objectId": user["id"]}
    for key in properties:
        value = text(user.get(key))
        if value:
            details[key] = value
    details["IsSoftDeleted"] = "False"
    details["originalUserPrincipalName"] = upn
    # The double space is the sample's.
    return step("EntryImport", "matching", "success", f"Retrieved  '{upn}' from {TARGET}", details)


def scoping(active: bool) -> dict:
    return step(
        "EntrySynchronizationScoping",
        "scoping",
        "success",
        f"Determine if {SOURCE_TYPE} in scope by evaluating against each scoping filter",
        {
            "Active in the source system": "True" if active else "False",
            "Scoping filter evaluation passed": "True",
            "ScopeEvaluationResult": "{}",
        },
    )


def matching_add(external_id: str) -> dict:
    return step(
        "EntrySynchronizationAdd",
        "matching",
        "success",
        f"{SOURCE_TYPE} '{external_id}' will be created in {TARGET} ({SOURCE_TYPE} is active "
        f"and assigned in API, but no matching {SOURCE_TYPE} was found in {TARGET})",
        {},
    )


def manager_skip(manager_id: str, upn: str) -> dict:
    """The sample's step for a manager reference that did not resolve (its text verbatim,
    trailing space included)."""
    return step(
        "EntrySynchronizationSkip",
        "processing",
        "success",
        f"We were unable to assign {manager_id} as the manager of {upn}. In order to ensure "
        "that the references are updated properly, you have two options. First, ensure that "
        f"{manager_id} is in scope for provisioning. Provision {manager_id} on-demand and then "
        f"provision {upn} on-demand. Alternatively, you can restart provisioning after ensuring "
        f"that {manager_id} is in scope for provisioning. ",
        {
            manager_id: "manager Add",
            "PropertyName": "manager",
            "SkipReason": "UnableToResolveReferenceAttributeValue",
        },
    )


def redundant_skip(external_id: str) -> dict:
    """Assumed (the sample has no such entry): a record whose values the user already has is
    skipped at processing, with a SkipReason in the details as the manager skip has."""
    return step(
        "EntrySynchronizationSkip",
        "processing",
        "skipped",
        f"{SOURCE_TYPE} '{external_id}' was skipped: the values to export are already the "
        f"values of the object in {TARGET}",
        {"SkipReason": "RedundantExport"},
    )


def export_add(upn: str, external_id: str, changes: list[tuple[str, Any, Any]]) -> dict:
    details = {
        name.replace(".", ""): rendered
        for name, _, new in changes
        if (rendered := text(new)) is not None
    }
    details["ReportableIdentifier"] = external_id
    return step(
        "EntryExportAdd",
        "export",
        "success",
        f"{SOURCE_TYPE[0].upper()}{SOURCE_TYPE[1:]} '{upn}' was created in {TARGET}",
        details,
    )


def export_update(name: str, external_id: str) -> dict:
    """``name`` is the UPN in an update's own entry and the externalId in the follow-up entry
    that sets a manager, as in the sample."""
    return step(
        "EntryExportUpdate",
        "export",
        "success",
        f"{SOURCE_TYPE[0].upper()}{SOURCE_TYPE[1:]} '{name}' was updated in {TARGET}",
        {"ReportableIdentifier": external_id},
    )


def export_failed(action: str, external_id: str, reason: str) -> dict:
    """Assumed wording and details (the sample has no failure)."""
    name = "EntryExportAdd" if action == "create" else "EntryExportUpdate"
    verb = "create" if action == "create" else "update"
    return step(
        name,
        "export",
        "failure",
        f"Failed to {verb} {SOURCE_TYPE} '{external_id}' in {TARGET}. {reason}",
        {"ReportableIdentifier": external_id},
    )


def entry(
    *,
    stamp: float,
    tenant_id: str,
    job_id: str,
    cycle_id: str,
    change_id: str,
    sp_id: str,
    application_id: str,
    app_name: str,
    action: str,
    status: str,
    error: dict[str, Any] | None,
    steps: list[dict],
    changes: list[tuple[str, Any, Any]],
    external_id: str,
    user: dict[str, Any] | None,
    duration_ms: int | None = None,
) -> dict[str, Any]:
    target_id = (user or {}).get("id") or ""
    target_name = (user or {}).get("displayName") or ""
    upn = (user or {}).get("userPrincipalName") or ""
    return {
        "id": new_guid(),
        "activityDateTime": iso_seconds(stamp),
        "tenantId": tenant_id,
        "jobId": job_id,
        "cycleId": cycle_id,
        "changeId": change_id,
        "action": ACTIONS[action],
        "provisioningAction": action,
        "durationInMilliseconds": (
            duration_ms if duration_ms is not None else 300 + secrets.randbelow(3500)
        ),
        "servicePrincipal": {"id": sp_id, "displayName": app_name},
        # The sample's sourceSystem.id and targetSystem.id differ in every entry, even in the
        # two of one change; what they identify is not documented, so each entry gets new ones.
        "sourceSystem": {"id": new_guid(), "displayName": "API", "details": {}},
        "targetSystem": {
            "id": new_guid(),
            "displayName": TARGET,
            "details": {
                "ApplicationId": application_id,
                "ServicePrincipalId": sp_id,
                "ServicePrincipalDisplayName": app_name,
            },
        },
        "initiatedBy": {"id": "", "displayName": INITIATOR, "initiatorType": "system"},
        # The sample's sourceIdentity.displayName is always "", whatever the record's name.
        "sourceIdentity": {
            "id": external_id,
            "displayName": "",
            "identityType": SOURCE_TYPE,
            "details": {},
        },
        "targetIdentity": {
            "id": target_id,
            "displayName": target_name,
            "identityType": "User",
            "details": {
                "id": target_id,
                "odatatype": "User",
                "DisplayName": target_name,
                "UserPrincipalName": upn,
            },
        },
        "provisioningStatusInfo": {"status": status, "errorInformation": error},
        # statusInfo is a statusBase in the sample ({"status"} only); the emulator keeps that
        # key set for failures too (Graph may send a statusDetails there: not shown, assumed).
        "statusInfo": {"status": status},
        "provisioningSteps": steps,
        "modifiedProperties": [
            {"displayName": name, "oldValue": text(old), "newValue": text(new)}
            for name, old, new in changes
        ],
    }
