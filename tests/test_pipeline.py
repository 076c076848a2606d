"""HR file -> SCIM bulk requests (provisioning/pipeline.py, provisioning/bulk.py)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from provisioning.convert.bulk import MAX_OPERATIONS
from provisioning.convert.mapping import Mapping, load_mapping
from provisioning.convert.pipeline import Conversion, Source, Summary, convert_all
from provisioning.convert.rows import FileError
from provisioning.convert.validation import CORE, ENTERPRISE, RowError
from provisioning.runs.reports import RejectedCsv
from tests.columns import HR_SUITE_HEADER
from tests.columns import worker as hr_worker

CONTOSO = "urn:ietf:params:scim:schemas:extension:contoso:1.0:User"

# Every column the Microsoft sample mapping reads.
HEADER = load_mapping("microsoft-sample").columns


def worker(n: int, **overrides: str) -> dict[str, str]:
    row = {
        "WorkerID": str(1000 + n),
        "WorkerStatus": "Active" if n % 2 else "Inactive",
        "WorkerType": "Employee",
        "UserID": f"EMP{1000 + n}",
        "FirstName": f"First{n}",
        "LastName": f"Last{n}",
        "FullName": f"First{n} Last{n}",
        "ManagerID": "1000",
        "Department": "Sales",
        "Division": "Food",
        "CostCenter": "CC1",
        "Company": "Woodgrove",
        "JobTitle": "Clerk",
        "StreetAddress": f"{n} Main St",
        "City": "Chicago",
        "CountryCode": "US",
        "OfficePhone": "555-0100",
        "ZipCode": "60601",
    }
    row.update(overrides)
    return row


def write_csv(path: Path, rows: list[dict[str, str]], header: list[str] = HEADER) -> Path:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def sample() -> Mapping:
    return load_mapping("microsoft-sample")


def convert(
    path: Path, mapping: Mapping, **options: Any
) -> tuple[list[Any], Summary, list[RowError]]:
    rejected: list[RowError] = []
    requests, summary = convert_all(
        Source.from_path(path), mapping, on_reject=rejected.append, **options
    )
    return requests, summary, rejected


def operations(requests: list[Any]) -> list[dict[str, Any]]:
    return [op for request in requests for op in json.loads(request.body)["Operations"]]


# --- counts -----------------------------------------------------------------------------------


def test_counts(tmp_path: Path, sample: Mapping) -> None:
    rows = [worker(i) for i in range(1, 8)]
    rows[2]["WorkerStatus"] = "Retired"  # unknown value -> rejected
    rows[4]["WorkerID"] = ""  # missing externalId -> rejected
    path = write_csv(tmp_path / "hr.csv", rows)
    requests, summary, rejected = convert(path, sample)
    assert summary.file == "hr.csv"
    assert summary.format == "csv"
    assert summary.mapping == "builtin:microsoft-sample"
    assert summary.rows_read == 7
    assert summary.rows_rejected == 2
    assert summary.users == 5
    assert summary.requests == 1 == len(requests)
    assert summary.duplicate_ids == 0
    assert summary.file_error is None
    assert summary.rejections_by_attribute == {"active": 1, "externalId": 1}
    assert len(rejected) == 2
    assert len(requests[0].operations) == 5
    assert [op.external_id for op in requests[0].operations] == [
        "1001",
        "1002",
        "1004",
        "1006",
        "1007",
    ]


def test_no_rows_no_requests(tmp_path: Path, sample: Mapping) -> None:
    path = write_csv(tmp_path / "empty.csv", [])
    requests, summary, rejected = convert(path, sample)
    assert requests == []
    assert (summary.rows_read, summary.users, summary.requests) == (0, 0, 0)
    assert rejected == []


# --- errors -----------------------------------------------------------------------------------


def test_errors_carry_file_line_column_attribute_reason(tmp_path: Path, sample: Mapping) -> None:
    rows = [worker(1), worker(2, WorkerStatus="Retired"), worker(3, FullName="x" * 300)]
    path = write_csv(tmp_path / "feed.csv", rows)
    _, summary, rejected = convert(path, sample)
    assert summary.rows_rejected == 2
    first, second = rejected
    assert first.file == "feed.csv"
    assert first.line == 3  # header is line 1, worker(1) line 2
    assert first.column == "WorkerStatus"
    assert first.attribute == "active"
    assert "mapped values" in first.reason
    assert "Retired" not in first.reason
    assert first.value == "Retired"  # the raw cell, for the run report only
    assert second.line == 4
    assert second.column == "FullName"
    assert second.attribute == "displayName"
    assert "too long" in second.reason


def test_all_errors_of_a_row_are_reported(tmp_path: Path, sample: Mapping) -> None:
    path = write_csv(tmp_path / "hr.csv", [worker(1, WorkerStatus="?", FullName="y" * 257)])
    _, summary, rejected = convert(path, sample)
    assert summary.rows_rejected == 1
    assert {e.attribute for e in rejected} == {"active", "displayName"}
    assert {e.line for e in rejected} == {2}


def test_line_numbers_follow_multiline_cells(tmp_path: Path, sample: Mapping) -> None:
    rows = [worker(1, StreetAddress="1 Main St\nSuite 2"), worker(2, WorkerStatus="bad")]
    path = write_csv(tmp_path / "hr.csv", rows)
    _, _, rejected = convert(path, sample)
    assert [e.line for e in rejected] == [4]


def test_enterprise_attribute_errors_use_the_full_path(tmp_path: Path, sample: Mapping) -> None:
    path = write_csv(tmp_path / "hr.csv", [worker(1, Department="d" * 65)])
    _, _, rejected = convert(path, sample)
    (error,) = rejected
    assert error.attribute == f"{ENTERPRISE}:department"
    assert error.column == "Department"


# --- duplicates -------------------------------------------------------------------------------


def test_duplicate_external_ids_reject_every_occurrence(tmp_path: Path, sample: Mapping) -> None:
    rows = [
        worker(1),
        worker(2),
        worker(3, WorkerID="1002", FirstName="Other"),
        worker(4),
        worker(5, WorkerID="1002"),
        worker(6, WorkerID="1004"),
    ]
    path = write_csv(tmp_path / "dups.csv", rows)
    requests, summary, rejected = convert(path, sample)
    assert summary.rows_read == 6
    assert summary.duplicate_ids == 2
    assert summary.rows_rejected == 5
    assert summary.users == 1
    assert [op.external_id for op in requests[0].operations] == ["1001"]
    assert sorted(e.line for e in rejected) == [3, 4, 5, 6, 7]
    by_line = {e.line: e for e in rejected}
    for line in (3, 4, 6):
        assert "3 rows" in by_line[line].reason
        assert by_line[line].attribute == "externalId"
        assert by_line[line].column == "WorkerID"
        assert by_line[line].value == "1002"
    for line in (5, 7):
        assert "2 rows" in by_line[line].reason


def test_duplicates_compare_trimmed_ids(tmp_path: Path, sample: Mapping) -> None:
    path = write_csv(tmp_path / "hr.csv", [worker(1), worker(2, WorkerID=" 1001 ")])
    requests, summary, _ = convert(path, sample)
    assert requests == []
    assert summary.rows_rejected == 2


def test_duplicate_with_other_errors_reports_both(tmp_path: Path, sample: Mapping) -> None:
    path = write_csv(tmp_path / "hr.csv", [worker(1), worker(2, WorkerID="1001", WorkerStatus="?")])
    _, summary, rejected = convert(path, sample)
    assert summary.rows_rejected == 2
    assert summary.rejections_by_attribute == {"externalId": 2, "active": 1}
    assert sorted((e.line, e.attribute) for e in rejected) == [
        (2, "externalId"),
        (3, "active"),
        (3, "externalId"),
    ]


# --- malformed rows ---------------------------------------------------------------------------


def test_row_with_too_many_fields_is_rejected(tmp_path: Path, sample: Mapping) -> None:
    path = write_csv(tmp_path / "hr.csv", [worker(1), worker(2), worker(3)])
    lines = path.read_text("utf-8").splitlines()
    lines[2] += ",surplus"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    requests, summary, rejected = convert(path, sample)
    assert summary.rows_read == 3
    assert summary.rows_rejected == 1
    assert summary.users == 2
    assert [op.external_id for op in requests[0].operations] == ["1001", "1003"]
    (error,) = rejected
    assert error.line == 3
    width = len(HEADER)
    assert f"{width + 1} fields" in error.reason and f"header has {width}" in error.reason
    assert summary.rejections_by_attribute == {"row": 1}


def test_row_with_too_few_fields_is_rejected(tmp_path: Path, sample: Mapping) -> None:
    path = write_csv(tmp_path / "hr.csv", [worker(1)])
    with path.open("a", encoding="utf-8") as stream:
        stream.write("1002,Active\n")
    requests, summary, rejected = convert(path, sample)
    assert summary.rows_rejected == 1
    assert summary.users == 1
    assert [op.external_id for op in requests[0].operations] == ["1001"]
    assert rejected[0].line == 3


def test_short_row_before_the_external_id_column_is_rejected(tmp_path: Path) -> None:
    # Was a bug: the duplicate pass does not skip rows with the wrong number of fields.
    mapping_path = tmp_path / "m.yaml"
    mapping_path.write_text("user:\n  externalId: Id\n  displayName: Name\n", "utf-8")
    path = tmp_path / "short.csv"
    path.write_text("Name,Other,Id\nAlice,x,1\nBob\n", "utf-8")
    requests, summary, rejected = convert(path, load_mapping(mapping_path))
    assert len(requests) == 1
    assert summary.users == 1
    assert summary.rows_rejected == 1
    assert rejected[0].line == 3


# --- batching ---------------------------------------------------------------------------------


def test_fifty_operation_split(tmp_path: Path, sample: Mapping) -> None:
    path = write_csv(tmp_path / "big.csv", [worker(i) for i in range(1, 121)])
    requests, summary, _ = convert(path, sample)
    assert [len(r.operations) for r in requests] == [50, 50, 20]
    assert [r.index for r in requests] == [1, 2, 3]
    assert summary.requests == 3
    assert summary.users == 120
    assert all(len(json.loads(r.body)["Operations"]) <= MAX_OPERATIONS for r in requests)
    ids = [op.external_id for r in requests for op in r.operations]
    assert ids == [str(1000 + i) for i in range(1, 121)]  # file order kept


def test_exactly_fifty_rows_make_one_request(tmp_path: Path, sample: Mapping) -> None:
    path = write_csv(tmp_path / "fifty.csv", [worker(i) for i in range(1, 51)])
    requests, _, _ = convert(path, sample)
    assert [len(r.operations) for r in requests] == [50]


def test_rejected_rows_do_not_leave_gaps_in_batches(tmp_path: Path, sample: Mapping) -> None:
    rows = [worker(i, WorkerStatus="bad" if i % 10 == 0 else "Active") for i in range(1, 111)]
    path = write_csv(tmp_path / "hr.csv", rows)
    requests, summary, _ = convert(path, sample)
    assert summary.users == 99
    assert [len(r.operations) for r in requests] == [50, 49]


def test_batch_size_option(tmp_path: Path, sample: Mapping) -> None:
    path = write_csv(tmp_path / "hr.csv", [worker(i) for i in range(1, 24)])
    requests, summary, _ = convert(path, sample, batch_size=10)
    assert [len(r.operations) for r in requests] == [10, 10, 3]
    assert summary.requests == 3
    requests, _, _ = convert(path, sample, batch_size=1)
    assert len(requests) == 23


@pytest.mark.parametrize("size", [51, 0, -1])
def test_batch_size_out_of_range(tmp_path: Path, sample: Mapping, size: int) -> None:
    path = write_csv(tmp_path / "hr.csv", [worker(1)])
    with pytest.raises(ValueError, match="between 1 and 50"):
        convert(path, sample, batch_size=size)


# --- bulkIds ----------------------------------------------------------------------------------


def test_bulk_ids_unique_within_a_run(tmp_path: Path, sample: Mapping) -> None:
    path = write_csv(tmp_path / "hr.csv", [worker(i) for i in range(1, 121)])
    requests, _, _ = convert(path, sample)
    ids = [op["bulkId"] for op in operations(requests)]
    assert len(ids) == 120
    assert len(set(ids)) == 120
    assert all(isinstance(i, str) and i for i in ids)


def test_bulk_ids_and_bodies_are_deterministic(tmp_path: Path, sample: Mapping) -> None:
    rows = [worker(i) for i in range(1, 61)]
    first = write_csv(tmp_path / "monday.csv", rows)
    second = tmp_path / "renamed-export.csv"
    second.write_bytes(first.read_bytes())
    a, _, _ = convert(first, sample)
    b, _, _ = convert(second, sample)
    again, _, _ = convert(first, sample)
    assert [r.body for r in a] == [r.body for r in b] == [r.body for r in again]
    assert [op.bulk_id for r in a for op in r.operations] == [
        op.bulk_id for r in b for op in r.operations
    ]


def test_different_content_gives_different_bulk_ids(tmp_path: Path, sample: Mapping) -> None:
    rows = [worker(i) for i in range(1, 6)]
    first = write_csv(tmp_path / "a.csv", rows)
    rows[4]["JobTitle"] = "Manager"
    second = write_csv(tmp_path / "b.csv", rows)
    a = {op["bulkId"] for op in operations(convert(first, sample)[0])}
    b = {op["bulkId"] for op in operations(convert(second, sample)[0])}
    assert len(a) == len(b) == 5
    assert a.isdisjoint(b)


def test_bulk_id_changes_when_only_a_rejected_row_changes(tmp_path: Path, sample: Mapping) -> None:
    rows = [worker(1), worker(2, WorkerStatus="bad")]
    first = write_csv(tmp_path / "a.csv", rows)
    rows[1]["WorkerStatus"] = "worse"
    second = write_csv(tmp_path / "b.csv", rows)
    a = operations(convert(first, sample)[0])
    b = operations(convert(second, sample)[0])
    assert a[0]["data"] == b[0]["data"]
    assert a[0]["bulkId"] != b[0]["bulkId"]  # ids are per file content, not per record


# --- data.schemas -----------------------------------------------------------------------------


def test_schemas_core_only_without_extension_values(tmp_path: Path, sample: Mapping) -> None:
    bare = worker(
        1,
        ManagerID="",
        Department="",
        Division="",
        CostCenter="",
        Company="",
    )
    # employeeNumber comes from WorkerID in the sample mapping, so use a custom mapping here.
    mapping_path = tmp_path / "core-ent.yaml"
    mapping_path.write_text(
        "user:\n  externalId: WorkerID\n  displayName: FullName\n"
        f"  {ENTERPRISE}:\n    department: Department\n    manager:\n      value: ManagerID\n",
        "utf-8",
    )
    mapping = load_mapping(mapping_path)
    path = write_csv(
        tmp_path / "hr.csv",
        [bare, worker(2, ManagerID="", Department="Ops"), worker(3, Department="")],
    )
    data = [op["data"] for op in operations(convert(path, mapping)[0])]
    assert data[0]["schemas"] == [CORE]
    assert ENTERPRISE not in data[0]
    assert data[1]["schemas"] == [CORE, ENTERPRISE]
    assert data[1][ENTERPRISE] == {"department": "Ops"}
    assert data[2]["schemas"] == [CORE, ENTERPRISE]
    assert data[2][ENTERPRISE] == {"manager": {"value": "1000"}}


def test_schemas_with_the_sample_mapping(tmp_path: Path, sample: Mapping) -> None:
    path = write_csv(tmp_path / "hr.csv", [worker(1)])
    (op,) = operations(convert(path, sample)[0])
    assert op["data"]["schemas"] == [CORE, ENTERPRISE]
    assert op["data"][ENTERPRISE]["employeeNumber"] == "1001"


def hr_row(n: int, **overrides: str) -> dict[str, str]:
    row = dict.fromkeys(HR_SUITE_HEADER, "")
    row.update(
        {
            "Employee ID": f"E{n:03d}",
            "Work Email": f"user{n}@contoso.com",
            "First Name": f"First{n}",
            "Last Name": f"Last{n}",
            "Employment Status": "Active",
        }
    )
    row.update(overrides)
    return row


def test_custom_urn_listed_only_when_used(tmp_path: Path) -> None:
    mapping = load_mapping("hr-suite")
    rows = [
        hr_row(1),
        hr_row(2, **{"Hire Date": "01/31/2020"}),
        hr_row(3, Location="Oslo", Department="Ops"),
    ]
    path = write_csv(tmp_path / "hr.csv", rows, HR_SUITE_HEADER)
    requests, summary, rejected = convert(path, mapping)
    assert rejected == []
    assert summary.users == 3
    data = [op["data"] for op in operations(requests)]
    # Enterprise is always present: organization has a default (Contoso) and employeeNumber.
    assert data[0]["schemas"] == [CORE, ENTERPRISE]
    assert CONTOSO not in data[0]
    assert data[1]["schemas"] == [CORE, ENTERPRISE, CONTOSO]
    assert data[1][CONTOSO] == {"hireDate": "2020-01-31T00:00:00Z"}
    assert data[2]["schemas"] == [CORE, ENTERPRISE, CONTOSO]
    assert data[2][CONTOSO] == {"workLocation": "Oslo"}
    for item in data:
        used = {key for key in item if key.startswith("urn:")}
        assert set(item["schemas"]) == {CORE, *used}


# --- pass-through of spreadsheet-formula-looking values ---------------------------------------


def test_formula_like_values_pass_through_unchanged(tmp_path: Path, sample: Mapping) -> None:
    row = worker(
        1,
        FullName='=HYPERLINK("http://x")',
        JobTitle="+Lead",
        Department="-Ops",
        Division="@Home",
        OfficePhone="+1 555 0100",
    )
    path = write_csv(tmp_path / "hr.csv", [row])
    requests, _, rejected = convert(path, sample)
    assert rejected == []
    data = operations(requests)[0]["data"]
    assert data["displayName"] == '=HYPERLINK("http://x")'
    assert data["title"] == "+Lead"
    assert data[ENTERPRISE]["department"] == "-Ops"
    assert data[ENTERPRISE]["division"] == "@Home"
    assert data["phoneNumbers"] == [{"value": "+1 555 0100", "type": "work"}]


# --- bad files --------------------------------------------------------------------------------


def test_header_lacking_a_mapped_column_is_a_file_error(tmp_path: Path, sample: Mapping) -> None:
    header = [c for c in HEADER if c not in {"ManagerID", "City"}]
    rows = [{k: v for k, v in worker(i).items() if k in header} for i in range(1, 60)]
    path = write_csv(tmp_path / "bad.csv", rows, header)
    conversion = Conversion(Source.from_path(path), sample)
    stream = conversion.requests()
    with pytest.raises(FileError) as info:
        next(stream)
    assert "'ManagerID'" in str(info.value) and "'City'" in str(info.value)
    summary = conversion.summary
    assert summary.file_error == str(info.value)
    assert summary.requests == 0
    assert summary.users == 0
    assert summary.rows_read == 0


def test_broken_quoting_late_in_the_file_fails_before_any_request(
    tmp_path: Path, sample: Mapping
) -> None:
    path = write_csv(tmp_path / "hr.csv", [worker(i) for i in range(1, 121)])
    with path.open("a", encoding="utf-8") as stream:
        stream.write('9999,Active,Employee,"unterminated\n')
    conversion = Conversion(Source.from_path(path), sample)
    yielded = []
    with pytest.raises(FileError):
        for request in conversion.requests():
            yielded.append(request)
    assert yielded == []
    assert conversion.summary.file_error
    assert conversion.summary.requests == 0


def test_unknown_extension_is_a_file_error(tmp_path: Path, sample: Mapping) -> None:
    path = tmp_path / "hr.doc"
    path.write_text("WorkerID\n1\n", "utf-8")
    conversion = Conversion(Source.from_path(path), sample)
    with pytest.raises(FileError):
        list(conversion.requests())
    assert conversion.summary.file_error


def test_source_from_an_in_memory_opener(sample: Mapping) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HEADER, lineterminator="\n")
    writer.writeheader()
    writer.writerow(worker(1))
    content = buffer.getvalue().encode("utf-8")
    source = Source("upload.csv", lambda: io.BytesIO(content))
    requests, summary = convert_all(source, sample)
    assert summary.users == 1
    assert summary.file == "upload.csv"
    assert len(requests) == 1


# --- request body -----------------------------------------------------------------------------


def test_request_body_shape(tmp_path: Path, sample: Mapping) -> None:
    path = write_csv(tmp_path / "hr.csv", [worker(i) for i in range(1, 4)])
    (request,) = convert(path, sample)[0]
    body = json.loads(request.body)
    assert set(body) == {"schemas", "Operations", "failOnErrors"}
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"]
    assert body["failOnErrors"] is None
    assert '"failOnErrors":null' in request.body.decode("utf-8")
    assert len(body["Operations"]) == 3
    for op, expected in zip(body["Operations"], request.operations, strict=True):
        assert set(op) == {"method", "path", "bulkId", "data"}
        assert op["method"] == "POST"
        assert op["path"] == "/Users"
        assert op["bulkId"] == expected.bulk_id
        assert op["data"] == expected.data
        assert op["data"]["externalId"] == expected.external_id
        assert next(iter(op["data"])) == "schemas"


def test_request_body_values(tmp_path: Path, sample: Mapping) -> None:
    path = write_csv(
        tmp_path / "hr.csv",
        [worker(1, WorkerStatus="Active"), worker(2, WorkerStatus="inactive")],
    )
    body = json.loads(convert(path, sample)[0][0].body)
    active = [op["data"]["active"] for op in body["Operations"]]
    assert active == [True, False]
    assert body["Operations"][0]["data"]["name"] == {"givenName": "First1", "familyName": "Last1"}


def test_body_is_utf8_json_with_non_ascii(tmp_path: Path, sample: Mapping) -> None:
    path = write_csv(tmp_path / "hr.csv", [worker(1, FirstName="Zoë", FullName="Zoë Ångström")])
    raw = convert(path, sample)[0][0].body
    assert isinstance(raw, bytes)
    data = json.loads(raw.decode("utf-8"))["Operations"][0]["data"]
    assert data["displayName"] == "Zoë Ångström"


def test_a_repeated_bulk_id_starts_the_next_request() -> None:
    from provisioning.convert.bulk import Operation, batches

    ops = [Operation(f"h-{n % 3}", str(n), n, {}) for n in range(5)]
    requests = list(batches(ops, 50))
    for request in requests:
        ids = [op.bulk_id for op in request.operations]
        assert len(ids) == len(set(ids))
    assert [op.external_id for r in requests for op in r.operations] == [str(n) for n in range(5)]
    assert len(requests) == 2


def _rejections(rows: list[dict[str, str]]) -> tuple[Summary, list[RowError]]:
    data = json.dumps(rows).encode("utf-8")
    errors: list[RowError] = []
    conversion = Conversion(
        Source("export.json", lambda: io.BytesIO(data)),
        load_mapping("microsoft-sample"),
        on_reject=errors.append,
    )
    list(conversion.requests())
    return conversion.summary, errors


@pytest.mark.parametrize(
    ("cell", "code"), [("Ad\x00a", "U+0000"), ("x\x1b[2J", "U+001B"), ("\x85", "U+0085")]
)
def test_a_control_character_in_a_mapped_cell_rejects_the_row_naming_the_column(
    cell: str, code: str
) -> None:
    summary, errors = _rejections([hr_worker(1), hr_worker(2, FirstName=cell), hr_worker(3)])
    assert (summary.users, summary.rows_rejected) == (2, 1)
    (error,) = errors
    assert (error.record, error.line, error.column) == (2, 1, "FirstName")
    assert code in error.reason and cell not in error.reason


def test_a_lone_surrogate_is_rejected_and_the_reports_still_write() -> None:
    _, errors = _rejections([hr_worker(1, LastName="x\ud800")])
    (error,) = errors
    assert error.column == "LastName" and "surrogate" in error.reason
    out = io.StringIO()
    RejectedCsv(out)(error)
    out.getvalue().encode("utf-8")  # nothing unencodable reached the report


def test_control_characters_in_columns_the_mapping_does_not_read_are_left_alone() -> None:
    row = hr_worker(1)
    row["Notes"] = "tab\there, bell \x07"
    summary, errors = _rejections([row])
    assert (summary.users, errors) == (1, [])


def test_multi_line_values_are_not_control_characters() -> None:
    summary, errors = _rejections([hr_worker(1, FullName="Ada\r\nLovelace\tX")])
    assert (summary.users, errors) == (1, [])


def test_external_ids_differing_only_in_case_are_one_hr_worker() -> None:
    summary, errors = _rejections(
        [hr_worker("e2"), hr_worker("E2"), hr_worker("e3"), hr_worker("E4")]
    )
    assert (summary.users, summary.duplicate_ids) == (2, 1)
    assert [e.record for e in errors] == [1, 2]
    assert all("different upper and lower case" in e.reason for e in errors)


def test_exact_repeats_do_not_mention_case() -> None:
    _, errors = _rejections([hr_worker("e2"), hr_worker("e2")])
    assert len(errors) == 2 and not any("case" in e.reason for e in errors)


@pytest.mark.parametrize(
    ("name", "head", "fragment"),
    [
        ("export.csv", b"\x1f\x8b\x08\x00", "gzip-compressed"),
        ("export.csv.gz", b"\x1f\x8b\x08\x00", "gzip-compressed"),
        ("export.csv", b"PK\x03\x04", "a ZIP archive"),
        ("export.json", b"PK\x03\x04", "a ZIP archive"),
    ],
)
def test_an_archive_is_named_as_such(name: str, head: bytes, fragment: str) -> None:
    data = head + bytes(range(256))
    with pytest.raises(FileError, match=fragment):
        convert_all(Source(name, lambda: io.BytesIO(data)), load_mapping("microsoft-sample"))
