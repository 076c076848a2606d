"""The SCIM we produce, checked by an independent implementation (scim2-models).

Microsoft's sample HR files (samples/*.csv) go through the microsoft-sample mapping; a small
HR-suite export written here goes through the hr-suite mapping, whose custom extension
scim2-models does not know and which is therefore checked by hand.

Two deliberate adjustments before handing our data to scim2-models, both for the manager:
scim2-models marks ``manager.$ref`` as required, while Entra's documented bulkUpload payload
sends only ``manager.value`` (the manager's externalId, which the service resolves). So each
manager is first checked to be exactly ``{"value": <non-empty string>}`` and then given a
placeholder ``$ref`` for validation only.
"""

from __future__ import annotations

import copy
import csv
import datetime as dt
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from scim2_models import BulkRequest, Context, EnterpriseUser, User

from provisioning.convert.mapping import load_mapping
from provisioning.convert.pipeline import Source, Summary, convert_all
from provisioning.convert.validation import RowError
from tests.columns import HR_SUITE_HEADER

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SAMPLE_FILES = sorted(SAMPLES.glob("*.csv"))

CORE_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
BULK_URN = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
CONTOSO_URN = "urn:ietf:params:scim:schemas:extension:contoso:1.0:User"

ScimUser = User[EnterpriseUser]


def convert(path: Path, mapping: str) -> tuple[list[dict[str, Any]], Summary, list[RowError]]:
    rejected: list[RowError] = []
    requests, summary = convert_all(
        Source.from_path(path), load_mapping(mapping), on_reject=rejected.append
    )
    bodies = [json.loads(request.body) for request in requests]
    return bodies, summary, rejected


def for_scim2_models(data: dict[str, Any], custom_urn: str | None = None) -> dict[str, Any]:
    """A copy of ``data`` prepared for scim2-models (see the module docstring)."""
    data = copy.deepcopy(data)
    enterprise = data.get(ENTERPRISE_URN, {})
    if "manager" in enterprise:
        manager = enterprise["manager"]
        assert set(manager) == {"value"}
        assert isinstance(manager["value"], str) and manager["value"]
        manager["$ref"] = f"../Users/{manager['value']}"
    if custom_urn is not None:
        data.pop(custom_urn, None)
        data["schemas"] = [urn for urn in data["schemas"] if urn != custom_urn]
    return data


def check_schemas_list(data: dict[str, Any]) -> None:
    """data.schemas is the core URN followed by exactly the extension URNs that hold values."""
    schemas = data["schemas"]
    assert schemas[0] == CORE_URN
    assert len(schemas) == len(set(schemas))
    used = [key for key in data if key.startswith("urn:")]
    assert set(schemas[1:]) == set(used)
    for urn in used:
        assert isinstance(data[urn], dict) and data[urn]


def validate_user(data: dict[str, Any], custom_urn: str | None = None) -> None:
    check_schemas_list(data)
    prepared = for_scim2_models(data, custom_urn)
    user = ScimUser.model_validate(prepared, scim_ctx=Context.RESOURCE_CREATION_REQUEST)
    # No coercion happened: the validated model serialises back to exactly what we sent.
    assert user.model_dump(scim_ctx=Context.RESOURCE_CREATION_REQUEST) == prepared
    assert user.external_id == data["externalId"]
    for kind in ("emails", "phoneNumbers", "addresses"):
        for entry in data.get(kind, []):
            assert entry["type"] == "work"


def validate_envelope(body: dict[str, Any], custom_urn: str | None = None) -> None:
    assert body["schemas"] == [BULK_URN]
    assert body["failOnErrors"] is None
    assert 1 <= len(body["Operations"]) <= 50
    prepared = copy.deepcopy(body)
    for op in prepared["Operations"]:
        assert op["method"] == "POST"
        assert op["path"] == "/Users"
        op["data"] = for_scim2_models(op["data"], custom_urn)
    request = BulkRequest[ScimUser].model_validate(prepared, scim_ctx=Context.BULK_REQUEST)
    assert request.fail_on_errors is None
    assert len(request.operations) == len(body["Operations"])
    for op, raw in zip(request.operations, body["Operations"], strict=True):
        # In BULK_REQUEST context an invalid operation is kept as a failed one (status 400).
        assert op.status is None, op.response
        assert op.response is None
        assert op.method == "POST"
        assert op.bulk_id == raw["bulkId"]
        assert isinstance(op.data, ScimUser)
        assert op.data.external_id == raw["data"]["externalId"]


# --- Microsoft's sample files -------------------------------------------------------------------


def expected_outcome(path: Path) -> tuple[int, set[str], set[int]]:
    """Rows, ids occurring more than once and the lines of their rows, read with plain csv."""
    with path.open(newline="", encoding="utf-8-sig") as stream:
        reader = csv.reader(stream)
        header = next(reader)
        column = header.index("WorkerID")
        rows: list[tuple[int, str]] = []
        start = reader.line_num + 1
        for values in reader:
            rows.append((start, values[column].strip()))
            start = reader.line_num + 1
    counts = Counter(worker_id for _, worker_id in rows)
    repeated = {worker_id for worker_id, n in counts.items() if n > 1}
    lines = {line for line, worker_id in rows if worker_id in repeated}
    return len(rows), repeated, lines


def test_sample_files_are_present() -> None:
    names = {path.name for path in SAMPLE_FILES}
    assert {"csv-with-1000-records.csv", "csv-with-2-records.csv"} <= names


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_sample_file_converts_to_valid_scim(path: Path) -> None:
    bodies, summary, rejected = convert(path, "microsoft-sample")
    rows, repeated, duplicate_lines = expected_outcome(path)

    assert summary.file_error is None
    assert summary.rows_read == rows
    assert summary.duplicate_ids == len(repeated)
    assert summary.rows_rejected == len(duplicate_lines)
    assert summary.users == rows - len(duplicate_lines)
    assert summary.requests == len(bodies) == -(-summary.users // 50)
    # Every rejection is a duplicate externalId, on exactly the rows that share one.
    assert {e.line for e in rejected} == duplicate_lines
    assert {e.attribute for e in rejected} <= {"externalId"}
    assert {e.value for e in rejected} == repeated

    sent_ids = []
    bulk_ids = []
    for body in bodies:
        validate_envelope(body)
        for op in body["Operations"]:
            validate_user(op["data"])
            sent_ids.append(op["data"]["externalId"])
            bulk_ids.append(op["bulkId"])
    assert len(sent_ids) == summary.users
    assert len(set(sent_ids)) == len(sent_ids)
    assert not set(sent_ids) & repeated
    assert len(set(bulk_ids)) == len(bulk_ids)


def test_thousand_record_sample_rejects_its_265_repeated_worker_ids() -> None:
    path = SAMPLES / "csv-with-1000-records.csv"
    bodies, summary, rejected = convert(path, "microsoft-sample")
    rows, repeated, duplicate_lines = expected_outcome(path)
    assert len(repeated) == 265
    assert summary.duplicate_ids == 265
    assert summary.rows_read == rows == 1000
    assert summary.rows_rejected == len(duplicate_lines)
    assert summary.users + summary.rows_rejected == 1000
    assert summary.users > 0
    assert all(len(body["Operations"]) <= 50 for body in bodies)
    assert sum(len(body["Operations"]) for body in bodies) == summary.users
    by_id = Counter(e.value for e in rejected)
    # Each repeated id is rejected on every row it appears on, and says how many rows that is.
    for error in rejected:
        assert f"appears on {by_id[error.value]} rows" in error.reason


def test_two_record_sample_content() -> None:
    (body,), summary, rejected = convert(SAMPLES / "csv-with-2-records.csv", "microsoft-sample")
    assert rejected == []
    assert summary.users == 2
    first, second = (op["data"] for op in body["Operations"])
    assert first["externalId"] == "1222"
    assert first["active"] is False  # Inactive
    assert second["externalId"] == "1513"
    assert second["active"] is True
    assert first[ENTERPRISE_URN]["manager"] == {"value": "1684"}
    user = ScimUser.model_validate(
        for_scim2_models(second), scim_ctx=Context.RESOURCE_CREATION_REQUEST
    )
    assert user.user_name == "EMP1513"
    assert user.name is not None and user.name.given_name == "Ginnie"
    assert user[EnterpriseUser].department == "Product Engineering"
    assert user.addresses is not None and user.addresses[0].locality == "Frankfurt"


def test_scim2_models_catches_what_we_would_get_wrong() -> None:
    """The independent check is not a rubber stamp: broken data fails it."""
    (body,), _, _ = convert(SAMPLES / "csv-with-2-records.csv", "microsoft-sample")
    good = for_scim2_models(body["Operations"][0]["data"])
    for breakage in (
        lambda d: d.update(emails=[{"value": "not-an-address", "type": "work"}]),
        lambda d: d.pop("userName"),
        lambda d: d.update(nonsense=1),
        lambda d: d.update({CONTOSO_URN: {"x": "y"}}),
    ):
        broken = copy.deepcopy(good)
        breakage(broken)
        with pytest.raises(ValueError):
            ScimUser.model_validate(broken, scim_ctx=Context.RESOURCE_CREATION_REQUEST)


# --- the hr-suite mapping, with its custom extension ----------------------------------------------


HR_ROWS = [
    [
        "E001",
        "Dana",
        "",
        "Boss",
        "Ceo@Contoso.com",
        "Chief Executive",
        "Employee",
        "Active",
        "+1 425 555 0100",
        "1 Microsoft Way",
        "Redmond",
        "WA",
        "98052",
        "us",
        "Board",
        "CC-1",
        "Contoso",
        "Corporate",
        "",
        "01/15/2010",
        "",
        "HQ",
    ],  # unknown status: rejected
    [
        "E002",
        "Alice",
        "Ally",
        "Smith",
        "alice.smith+hr@contoso.com",
        "Engineer",
        "",
        "On Leave",
        "",
        "",
        "Oslo",
        "",
        "",
        "no",
        "R&D",
        "",
        "",
        "Cloud",
        "E001",
        "2021-03-15",
        "",
        "",
    ],  # day-first date: rejected
    [
        "E003",
        "Bob",
        "",
        "Jones",
        "bob@contoso.com",
        "",
        "Contractor",
        "Terminated",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "Fabrikam",
        "",
        "E001",
        "12/01/2019",
        "6/30/2024",
        "Remote",
    ],
    [
        "E004",
        "Carol",
        "",
        "",
        "carol@sales.contoso.com",
        "",
        "",
        "inactive",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
    ],
    [
        "E005",
        "Eve",
        "",
        "Adams",
        "eve@contoso.com",
        "",
        "",
        "Retired",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
    ],
    [
        "E006",
        "Frank",
        "",
        "Moss",
        "frank@contoso.com",
        "",
        "",
        "Active",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "31/12/2020",
        "",
        "",
    ],
]


@pytest.fixture
def hr_export(tmp_path: Path) -> Path:
    path = tmp_path / "hr-suite-export.csv"
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(HR_SUITE_HEADER)
        writer.writerows(HR_ROWS)
    return path


def check_custom_part(data: dict[str, Any]) -> None:
    custom = data.get(CONTOSO_URN)
    if custom is None:
        assert CONTOSO_URN not in data["schemas"]
        return
    assert CONTOSO_URN in data["schemas"]
    assert custom and set(custom) <= {"hireDate", "terminationDate", "workLocation"}
    for key, value in custom.items():
        assert isinstance(value, str) and value
        if key.endswith("Date"):
            assert value.endswith("Z") and len(value) == 20
            parsed = dt.datetime.fromisoformat(value)  # ISO 8601; 'Z' is accepted by 3.11
            assert parsed.utcoffset() == dt.timedelta(0)
            assert parsed.strftime("%Y-%m-%dT%H:%M:%SZ") == value


def test_hr_suite_export_converts_to_valid_scim(hr_export: Path) -> None:
    bodies, summary, rejected = convert(hr_export, "hr-suite")
    assert summary.rows_read == 6
    assert summary.users == 4
    assert summary.rows_rejected == 2
    assert sorted((e.line, e.attribute) for e in rejected) == [
        (6, "active"),
        (7, f"{CONTOSO_URN}:hireDate"),
    ]
    assert all(len(body["Operations"]) <= 50 for body in bodies)

    users = {}
    for body in bodies:
        validate_envelope(body, custom_urn=CONTOSO_URN)
        for op in body["Operations"]:
            data = op["data"]
            validate_user(data, custom_urn=CONTOSO_URN)
            check_custom_part(data)
            users[data["externalId"]] = data
    assert list(users) == ["E001", "E002", "E003", "E004"]

    ceo, alice, bob, carol = users.values()
    assert ceo["schemas"] == [CORE_URN, ENTERPRISE_URN, CONTOSO_URN]
    assert ceo[CONTOSO_URN] == {"hireDate": "2010-01-15T00:00:00Z", "workLocation": "HQ"}
    assert ceo["userName"] == "ceo@contoso.com"
    assert ceo["emails"] == [{"value": "ceo@contoso.com", "primary": True, "type": "work"}]
    assert ceo["addresses"][0]["country"] == "US"
    assert "manager" not in ceo[ENTERPRISE_URN]

    assert alice["active"] is True
    assert alice["name"]["givenName"] == "Ally"
    assert alice[CONTOSO_URN] == {"hireDate": "2021-03-15T00:00:00Z"}
    assert alice[ENTERPRISE_URN]["manager"] == {"value": "E001"}
    assert alice["userType"] == "Employee"
    assert alice[ENTERPRISE_URN]["organization"] == "Contoso"

    assert bob["active"] is False
    assert bob[CONTOSO_URN]["terminationDate"] == "2024-06-30T00:00:00Z"

    assert carol["active"] is False
    assert carol["schemas"] == [CORE_URN, ENTERPRISE_URN]
    assert CONTOSO_URN not in carol
    assert "phoneNumbers" not in carol and "addresses" not in carol


def test_hr_suite_custom_urn_is_what_scim2_models_rejects(hr_export: Path) -> None:
    """Why the custom part is checked by hand: scim2-models does not know the extension."""
    bodies, _, _ = convert(hr_export, "hr-suite")
    data = bodies[0]["Operations"][0]["data"]
    assert CONTOSO_URN in data
    with pytest.raises(ValueError):
        ScimUser.model_validate(for_scim2_models(data), scim_ctx=Context.RESOURCE_CREATION_REQUEST)


def test_many_hr_rows_split_into_valid_requests(tmp_path: Path) -> None:
    path = tmp_path / "many.csv"
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(HR_SUITE_HEADER)
        for n in range(1, 124):
            row = dict.fromkeys(HR_SUITE_HEADER, "")
            row.update(
                {
                    "Employee ID": f"W{n:04d}",
                    "Work Email": f"w{n}@contoso.com",
                    "First Name": f"W{n}",
                    "Last Name": "Worker",
                    "Employment Status": "Active" if n % 3 else "Terminated",
                    "Manager Employee ID": "W0001" if n > 1 else "",
                    "Hire Date": f"{(n % 12) + 1:02d}/01/2020" if n % 2 else "",
                }
            )
            writer.writerow([row[c] for c in HR_SUITE_HEADER])
    bodies, summary, rejected = convert(path, "hr-suite")
    assert rejected == []
    assert summary.users == 123
    assert [len(body["Operations"]) for body in bodies] == [50, 50, 23]
    for body in bodies:
        validate_envelope(body, custom_urn=CONTOSO_URN)
        for op in body["Operations"]:
            validate_user(op["data"], custom_urn=CONTOSO_URN)
            check_custom_part(op["data"])
