"""The Graph emulator's provisioning logs against Microsoft's real log page
(tests/data/microsoft/provisioning-log-sample.json) over real HTTP: the shape of every kind of
entry, managers resolved as Entra resolves them, the documented and Postman queries, and the
identity and access reports throttle (5 reads per 10 s per app)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from graph_emulator import GraphEmulator
from graph_emulator.__main__ import main as cli_main
from graph_emulator._util import parse_iso
from graph_emulator.state import FaultError

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = json.loads((ROOT / "tests/data/microsoft/provisioning-log-sample.json").read_text())
POSTMAN = ROOT.parent / "shared/reference/entra-inbound-samples/postman-collection.json"
BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
SCIM = "application/scim+json"

GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
IS_GUID = re.compile(rf"^{GUID}$")
IS_SECOND = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
IS_JOB_ID = re.compile(rf"^API2AAD\.[0-9a-f]{{32}}\.{GUID}$")
# The objects whose keys are fixed in every entry of the sample (path -> keys).
FIXED = (
    ("servicePrincipal",),
    ("sourceSystem",),
    ("targetSystem",),
    ("targetSystem", "details"),
    ("initiatedBy",),
    ("sourceIdentity",),
    ("sourceIdentity", "details"),
    ("targetIdentity",),
    ("targetIdentity", "details"),
    ("provisioningStatusInfo",),
    ("statusInfo",),
)
STEP_TYPES = {
    "EntryImportAdd": "import",
    "EntryImport": "matching",
    "EntrySynchronizationScoping": "scoping",
    "EntrySynchronizationAdd": "matching",
    "EntrySynchronizationSkip": "processing",
    "EntryExportAdd": "export",
    "EntryExportUpdate": "export",
}


def user(external_id: str, manager: str | None = None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schemas": [CORE, ENTERPRISE],
        "externalId": external_id,
        "userName": f"{external_id.lower()}@contoso.test",
        "displayName": f"User {external_id}",
        "name": {"givenName": "Given", "familyName": f"Family{external_id}"},
        "title": "Engineer",
        "active": True,
        "addresses": [{"type": "work", "country": "NL", "primary": True}],
        ENTERPRISE: {"department": "Research"},
    }
    if manager is not None:
        data[ENTERPRISE]["manager"] = {"value": manager}
    data.update(extra)
    return data


def bulk(*datas: dict[str, Any]) -> bytes:
    operations = [
        {"method": "POST", "path": "/Users", "bulkId": f"b-{d['externalId']}", "data": d}
        for d in datas
    ]
    return json.dumps({"schemas": [BULK], "Operations": operations}).encode()


def post(http: httpx.Client, emu: GraphEmulator, *datas: dict[str, Any]) -> None:
    response = http.post(
        emu.bulk_upload_url(), content=bulk(*datas), headers={"Content-Type": SCIM}
    )
    assert response.status_code == 202, response.text


def read_all(http: httpx.Client, emu: GraphEmulator, query: str = "") -> list[dict[str, Any]]:
    url = f"{emu.graph_url}/auditLogs/provisioning?$top=1000{query}"
    response = http.get(url)
    assert response.status_code == 200, response.text
    assert "@odata.nextLink" not in response.json()
    value: list[dict[str, Any]] = response.json()["value"]
    return value


def client_for(emu: GraphEmulator, client_id: str | None = None) -> httpx.Client:
    token = emu.issue_token(client_id=client_id)
    return httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=5)


@pytest.fixture
def emu() -> Iterator[GraphEmulator]:
    with GraphEmulator(rate_limit=None, log_rate_limit=None) as emulator:
        yield emulator


@pytest.fixture
def http(emu: GraphEmulator) -> Iterator[httpx.Client]:
    with client_for(emu) as client:
        yield client


def at(entry: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = entry
    for part in path:
        value = value[part]
    return value


def by_name(entry: dict[str, Any]) -> list[str]:
    return [s["name"] for s in entry["provisioningSteps"]]


# ---------------------------------------------------------------------------- shape
def check_shape(entry: dict[str, Any]) -> None:
    """``entry`` has the sample's keys, JSON types and formats."""
    model = SAMPLE["value"][0]
    assert set(entry) == set(model)
    for key, value in model.items():
        if key == "provisioningStatusInfo":
            continue
        assert type(entry[key]) is type(value), key
    for path in FIXED:
        assert set(at(entry, path)) == set(at(model, path)), path
        for key, value in at(model, path).items():
            if key != "errorInformation":
                assert type(at(entry, path)[key]) is type(value), (path, key)
    error = entry["provisioningStatusInfo"]["errorInformation"]
    assert error is None or isinstance(error, dict)
    assert IS_SECOND.match(entry["activityDateTime"])
    for path in (
        ("id",),
        ("tenantId",),
        ("cycleId",),
        ("changeId",),
        ("servicePrincipal", "id"),
        ("sourceSystem", "id"),
        ("targetSystem", "id"),
        ("targetSystem", "details", "ApplicationId"),
        ("targetSystem", "details", "ServicePrincipalId"),
    ):
        assert IS_GUID.match(at(entry, path)), path
    assert IS_JOB_ID.match(entry["jobId"])
    assert entry["sourceIdentity"]["identityType"] == ENTERPRISE
    assert entry["sourceIdentity"]["displayName"] == ""
    assert entry["targetIdentity"]["identityType"] == "User"
    assert entry["targetIdentity"]["details"]["odatatype"] == "User"
    if entry["targetIdentity"]["id"]:
        assert IS_GUID.match(entry["targetIdentity"]["id"])
        assert entry["targetIdentity"]["details"]["id"] == entry["targetIdentity"]["id"]
    assert (
        entry["action"] == entry["provisioningAction"][0].upper() + entry["provisioningAction"][1:]
    )
    assert entry["statusInfo"]["status"] == entry["provisioningStatusInfo"]["status"]
    assert entry["provisioningSteps"]
    for step in entry["provisioningSteps"]:
        assert set(step) == set(model["provisioningSteps"][0])
        assert step["provisioningStepType"] == STEP_TYPES[step["name"]]
        assert step["status"] in ("success", "skipped", "failure")
        assert isinstance(step["description"], str) and step["description"]
        assert isinstance(step["details"], dict)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in step["details"].items())
    for prop in entry["modifiedProperties"]:
        assert set(prop) == set(model["modifiedProperties"][0])
        assert isinstance(prop["displayName"], str)
        assert all(prop[k] is None or isinstance(prop[k], str) for k in ("oldValue", "newValue"))


def test_the_shape_check_holds_for_microsofts_sample() -> None:
    """The checks below are right about Graph: every entry of the real page passes them."""
    assert len(SAMPLE["value"]) == 15
    for entry in SAMPLE["value"]:
        check_shape(entry)


def test_every_kind_of_entry_has_the_sample_shape(emu: GraphEmulator, http: httpx.Client) -> None:
    emu.set_faults(fail_records={"F1": {"errorCode": "EmulatedFailure", "reason": "No."}})
    post(http, emu, user("A1", manager="B1"), user("B1", manager="C1"))  # create, skip
    post(http, emu, user("A1", manager="B1", title="Lead"))  # update
    post(http, emu, user("A1", manager="B1", title="Lead"))  # nothing to change
    post(http, emu, user("A1", manager="B1", title="Lead", active=False))  # leaver
    post(http, emu, user("F1"))  # failure
    emu.advance(2)  # the follow-up entry that sets A1's manager shows 2 s later
    entries = read_all(http, emu)
    assert len(entries) == 7 == len(emu.logs())
    for entry in entries:
        check_shape(entry)
    kinds = sorted(
        (e["sourceIdentity"]["id"], e["action"], e["provisioningStatusInfo"]["status"])
        for e in entries
    )
    assert kinds == [
        ("A1", "Create", "success"),
        ("A1", "Disable", "success"),
        ("A1", "Other", "skipped"),
        ("A1", "Update", "success"),
        ("A1", "Update", "success"),
        ("B1", "Create", "success"),
        ("F1", "Create", "failure"),
    ]
    steps = {(e["sourceIdentity"]["id"], e["action"], tuple(by_name(e))) for e in entries}
    assert (
        "A1",
        "Other",
        (
            "EntryImportAdd",
            "EntryImport",
            "EntrySynchronizationScoping",
            "EntrySynchronizationSkip",
        ),
    ) in steps
    assert ("A1", "Update", ("EntryExportUpdate",)) in steps
    assert (
        "A1",
        "Update",
        ("EntryImportAdd", "EntryImport", "EntrySynchronizationScoping", "EntryExportUpdate"),
    ) in steps
    failure = next(e for e in entries if e["sourceIdentity"]["id"] == "F1")
    assert failure["provisioningStatusInfo"]["errorInformation"]["errorCode"] == "EmulatedFailure"
    assert failure["provisioningSteps"][-1]["status"] == "failure"
    assert failure["modifiedProperties"] == [] and failure["targetIdentity"]["id"] == ""
    leaver = next(e for e in entries if e["action"] == "Disable")
    assert leaver["provisioningSteps"][2]["details"]["Active in the source system"] == "False"
    assert leaver["modifiedProperties"] == [
        {"displayName": "accountEnabled", "oldValue": "True", "newValue": "False"}
    ]
    # A create lists what the sample's creates list besides the mapped attributes.
    create = next(e for e in entries if e["sourceIdentity"]["id"] == "B1")
    created = {p["displayName"]: p["newValue"] for p in create["modifiedProperties"]}
    assert created["IsSoftDeleted"] == "False"
    assert created["passwordProfile.password"] == "[Redacted]"
    assert created["employeeId"] == "B1" and created["accountEnabled"] == "True"
    imported = create["provisioningSteps"][0]["details"]
    assert imported["namegivenName"] == "Given"
    assert imported["urnietfparamsscimschemasextensionenterprise20Userdepartment"] == "Research"
    assert imported["urnietfparamsscimschemasextensionenterprise20Usermanager"] == "C1"
    assert imported['addresses[type eq "work"]country'] == "NL"
    export = create["provisioningSteps"][-1]
    assert export["details"]["ReportableIdentifier"] == "B1"
    assert export["details"]["passwordProfilepassword"] == "[Redacted]"
    assert export["description"] == (
        "Urn:ietf:params:scim:schemas:extension:enterprise:2.0:User 'b1@contoso.test' was "
        "created in Azure Active Directory"
    )


# ---------------------------------------------------------------------------- managers
def test_a_manager_later_in_the_request_is_set_by_a_second_entry(
    emu: GraphEmulator, http: httpx.Client
) -> None:
    """The sample's 10018 -> 10019 -> 10020: A (manager B) before B (manager C, absent)."""
    post(http, emu, user("A", manager="B"), user("B", manager="C"))
    users = {u["employeeId"]: u for u in emu.directory()}
    assert users["A"]["manager"] == {"id": users["B"]["id"]}
    assert users["B"]["manager"] is None  # C never came: B keeps its (absent) manager

    visible = read_all(http, emu)
    assert sorted(e["sourceIdentity"]["id"] for e in visible) == ["A", "B"]  # not yet the 2nd
    emu.advance(2)
    entries = read_all(http, emu, "&$orderby=activityDateTime asc")
    a_entries = [e for e in entries if e["sourceIdentity"]["id"] == "A"]
    [b_entry] = [e for e in entries if e["sourceIdentity"]["id"] == "B"]

    create, update = a_entries
    assert create["changeId"] == update["changeId"] != b_entry["changeId"]
    assert create["cycleId"] == update["cycleId"] == b_entry["cycleId"]
    assert (create["action"], update["action"]) == ("Create", "Update")
    assert parse_iso(update["activityDateTime"]) - parse_iso(create["activityDateTime"]) == 2
    assert by_name(create) == [
        "EntryImportAdd",
        "EntrySynchronizationScoping",
        "EntrySynchronizationAdd",
        "EntrySynchronizationSkip",
        "EntryExportAdd",
    ]
    skip = create["provisioningSteps"][3]
    assert skip["status"] == "success"
    assert skip["details"] == {
        "B": "manager Add",
        "PropertyName": "manager",
        "SkipReason": "UnableToResolveReferenceAttributeValue",
    }
    assert skip["description"].startswith(
        "We were unable to assign B as the manager of a@contoso.test. In order to ensure that "
        "the references are updated properly, you have two options."
    )
    assert "manager" not in {p["displayName"] for p in create["modifiedProperties"]}
    assert by_name(update) == ["EntryExportUpdate"]
    assert update["provisioningSteps"][0]["details"] == {"ReportableIdentifier": "A"}
    assert update["modifiedProperties"] == [
        {"displayName": "manager", "oldValue": None, "newValue": users["B"]["id"]}
    ]
    assert update["provisioningStatusInfo"] == {"status": "success", "errorInformation": None}
    assert update["targetIdentity"]["id"] == users["A"]["id"]

    assert b_entry["provisioningStatusInfo"]["status"] == "success"
    assert "EntrySynchronizationSkip" in by_name(b_entry)
    assert b_entry["provisioningSteps"][3]["details"]["C"] == "manager Add"


def test_the_second_entry_waits_for_the_log_delay_too() -> None:
    with (
        GraphEmulator(rate_limit=None, log_rate_limit=None, log_delay=5) as emu,
        client_for(emu) as http,
    ):
        post(http, emu, user("A", manager="B"), user("B"))
        emu.advance(5)
        assert len(emu.logs(visible_only=True)) == 2
        emu.advance(2)
        assert len(emu.logs(visible_only=True)) == 3


def test_a_manager_present_before_the_cycle_resolves_at_once(
    emu: GraphEmulator, http: httpx.Client
) -> None:
    post(http, emu, user("M"))
    post(http, emu, user("E", manager="M"))
    emu.advance(5)
    users = {u["employeeId"]: u for u in emu.directory()}
    assert users["E"]["manager"] == {"id": users["M"]["id"]}
    [entry] = [e for e in read_all(http, emu) if e["sourceIdentity"]["id"] == "E"]
    assert "EntrySynchronizationSkip" not in by_name(entry)
    changed = {p["displayName"]: p for p in entry["modifiedProperties"]}
    assert changed["manager"] == {
        "displayName": "manager",
        "oldValue": None,
        "newValue": users["M"]["id"],
    }
    # The manager's record sent in the same request as its report still counts as "before":
    # it was in the directory when the cycle began.
    post(http, emu, user("E", manager="M", title="Lead"), user("M", title="Boss"))
    emu.advance(5)
    assert len(emu.logs()) == 4


def test_an_existing_user_keeps_its_manager_until_the_new_one_exists(
    emu: GraphEmulator, http: httpx.Client
) -> None:
    post(http, emu, user("M"), user("E"))
    post(http, emu, user("E", manager="M"))
    manager_of = lambda: {u["employeeId"]: u for u in emu.directory()}["E"]["manager"]  # noqa: E731
    old = manager_of()
    assert old is not None

    # The new manager never appears: success with the skip step, nothing changed, no 2nd entry.
    post(http, emu, user("E", manager="X"))
    emu.advance(5)
    assert manager_of() == old
    last = emu.logs()[-1]
    assert (last["action"], last["provisioningStatusInfo"]["status"]) == ("Update", "success")
    assert by_name(last) == [
        "EntryImportAdd",
        "EntryImport",
        "EntrySynchronizationScoping",
        "EntrySynchronizationSkip",
        "EntryExportUpdate",
    ]
    assert last["modifiedProperties"] == []

    # The new manager joins in the same request, after its report: set by the 2nd entry.
    post(http, emu, user("E", manager="Y"), user("Y"))
    follow_up = emu.logs()[-1]
    y_id = {u["employeeId"]: u for u in emu.directory()}["Y"]["id"]
    assert manager_of() == {"id": y_id}
    assert follow_up["modifiedProperties"] == [
        {"displayName": "manager", "oldValue": old["id"], "newValue": y_id}
    ]
    assert follow_up["changeId"] == emu.logs()[-3]["changeId"]


# ---------------------------------------------------------------------------- queries
@pytest.fixture
def populated(emu: GraphEmulator, http: httpx.Client) -> dict[str, Any]:
    emu.advance(1)
    post(http, emu, user("701984"), user("701985"))
    emu.advance(3)
    emu.set_faults(fail_records={"701986": {"errorCode": "EmulatedFailure"}})
    post(http, emu, user("701986"), user("701984", title="Lead"))
    emu.advance(3)
    entries = read_all(http, emu, "&$orderby=activityDateTime asc")
    assert len(entries) == 4
    return {"entries": entries, "url": f"{emu.graph_url}/auditLogs/provisioning"}


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return sorted(e["id"] for e in response.json()["value"])


def test_the_postman_collection_queries(
    emu: GraphEmulator, http: httpx.Client, populated: dict[str, Any]
) -> None:
    """The three log requests of Microsoft's Postman collection, spelled as it spells them."""
    base = "https://graph.microsoft.com/beta"
    urls = [
        f"{base}/auditLogs/provisioning/?$filter=jobid eq '{{{{jobId}}}}'",
        f"{base}/auditLogs/provisioning/?$filter=jobid eq '{{{{jobId}}}}' and statusInfo/status"
        " eq 'failure' and activityDateTime ge 2022-10-10T09:47:34Z",
        f"{base}/auditLogs/provisioning/?$filter=jobid eq '{{{{jobId}}}}' and sourceIdentity/id"
        " eq '701984'",
    ]
    if POSTMAN.exists():  # the collection itself, where the shared reference is checked out
        items = json.loads(POSTMAN.read_text())["item"]
        raw = [i["request"]["url"]["raw"] for i in items if "auditLogs" in str(i["request"])]
        assert raw == urls
    assert len(urls) == 3
    entries = populated["entries"]
    expected = [
        sorted(e["id"] for e in entries),
        sorted(e["id"] for e in entries if e["sourceIdentity"]["id"] == "701986"),
        sorted(e["id"] for e in entries if e["sourceIdentity"]["id"] == "701984"),
    ]
    assert [len(x) for x in expected] == [4, 1, 2]
    for url, want in zip(urls, expected, strict=True):
        local = url.replace(base, emu.beta_url).replace("{{jobId}}", emu.job_id)
        assert ids(http.get(local)) == want, url


def test_documented_filters(
    emu: GraphEmulator, http: httpx.Client, populated: dict[str, Any]
) -> None:
    entries, url = populated["entries"], populated["url"]
    first, failure = entries[0], entries[2]
    assert failure["provisioningStatusInfo"]["status"] == "failure"

    def query(text: str) -> list[str]:
        return ids(http.get(url, params={"$filter": text}))

    assert query(f"id eq '{first['id']}'") == [first["id"]]
    assert query(f"changeId eq '{first['changeId']}'") == [first["id"]]
    assert query(f"cycleId eq '{first['cycleId']}'") == sorted(e["id"] for e in entries[:2])
    assert query("provisioningStatusInfo/status eq 'failure'") == [failure["id"]]
    assert query("statusInfo/status eq 'failure'") == [failure["id"]]
    assert query("statusInfo/status eq 'Failure'") == []  # "The filters are all case sensitive"
    assert query("sourceIdentity/id eq '701984'") == query("contains(sourceIdentity/id, '984')")
    assert len(query("contains(sourceIdentity/id, '7019')")) == 4
    assert query(f"JOBID eq '{emu.job_id}' and Action eq 'Update'") == [entries[3]["id"]]
    assert query(f"jobId eq '{emu.job_id.upper()}'") == []

    stamps = sorted({e["activityDateTime"] for e in entries})
    assert len(stamps) == 2  # two cycles, two entries in each second
    older, newer = stamps
    second = [e["id"] for e in entries if e["activityDateTime"] == newer]
    assert query(f"activityDateTime ge {newer}") == sorted(second)
    assert query(f"activityDateTime gt {older}") == sorted(second)
    assert query(f"activityDateTime eq {newer}") == sorted(second)
    assert len(query(f"activityDateTime lt {newer}")) == 2
    assert len(query(f"activityDateTime le {newer}")) == 4
    # Second precision: an entry of 10:00:00 is not at or after 10:00:00.5.
    assert query(f"activityDateTime ge {newer[:-1]}.5Z") == []
    assert query(
        f"jobid eq '{emu.job_id}' and statusInfo/status eq 'failure' and "
        "activityDateTime ge 2022-10-10T09:47:34Z"
    ) == [failure["id"]]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("displayName eq 'x'", "displayName"),
        ("jobId ne 'x'", "ne"),
        ("jobId in ('x')", "in"),
        ("jobId gt 'x'", "gt"),
        ("jobId eq 'x' or cycleId eq 'y'", "or"),
        ("not (jobId eq 'x')", "not"),
        ("startswith(jobId, 'API2AAD')", "startswith"),
        ("contains(activityDateTime, '2024')", "contains"),
        ("jobId eq 'x", "literal"),
        ("jobId eq x", "literal"),
        ("jobId", "clause"),
        ("activityDateTime ge yesterday", "activityDateTime"),
        ("activityDateTime ne 2024-01-01T00:00:00Z", "ne"),
    ],
)
def test_unsupported_filters_are_400(
    emu: GraphEmulator, http: httpx.Client, text: str, named: str
) -> None:
    response = http.get(f"{emu.graph_url}/auditLogs/provisioning", params={"$filter": text})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "BadRequest"
    assert named in error["message"]


def test_paging_is_exact_across_entries_of_one_second(
    emu: GraphEmulator, http: httpx.Client
) -> None:
    post(http, emu, *(user(f"P{i:02d}") for i in range(30)))
    url = f"{emu.graph_url}/auditLogs/provisioning"
    for order in ("asc", "desc"):
        seen: list[str] = []
        response = http.get(url, params={"$top": 7, "$orderby": f"activityDateTime {order}"})
        while True:
            assert response.status_code == 200
            seen += [e["id"] for e in response.json()["value"]]
            if "@odata.nextLink" not in response.json():
                break
            # an entry written meanwhile in the same second does not shift the pages
            response = http.get(response.json()["@odata.nextLink"])
        assert len(seen) == len(set(seen)) == 30


# ---------------------------------------------------------------------------- throttling
def test_log_reads_are_throttled_per_app() -> None:
    with GraphEmulator(rate_limit=None) as emu, client_for(emu) as http:
        assert emu.log_reads()["log_rate_limit"] == [5, 10.0]
        post(http, emu, user("E1"))
        url = f"{emu.graph_url}/auditLogs/provisioning"
        entry_id = http.get(url).json()["value"][0]["id"]
        statuses = [http.get(url).status_code for _ in range(2)]
        statuses += [http.get(f"{url}/{entry_id}").status_code for _ in range(2)]
        assert statuses == [200] * 4  # with the first read, five in the window
        throttled = http.get(url)
        assert throttled.status_code == 429
        error = throttled.json()["error"]
        assert error["code"] == "TooManyRequests"
        assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
        wait = int(throttled.headers["Retry-After"])
        assert 1 <= wait <= 10
        by_id = http.get(f"{url}/{entry_id}")
        assert by_id.status_code == 429 and "Retry-After" in by_id.headers

        # Another app of the tenant has its own window.
        with client_for(emu, client_id="00000000-0000-0000-0000-0000000000aa") as other:
            assert other.get(url).status_code == 200
        post(http, emu, user("E2"))  # bulkUpload is not a log read
        reads = emu.log_reads()
        assert (reads["admitted"], reads["throttled"], reads["max_in_window"]) == (6, 2, 5)
        assert emu.pacing()["log_reads"]["throttled"] == 2
        assert httpx.get(f"{emu.url}/_emulator/pacing").json()["log_reads"]["admitted"] == 6

        emu.advance(wait)
        assert http.get(url).status_code == 200
        assert emu.log_reads()["max_in_window"] == 5


def test_the_log_read_limit_can_be_changed_or_turned_off() -> None:
    with GraphEmulator(rate_limit=None, log_rate_limit="2/1") as emu, client_for(emu) as http:
        url = f"{emu.graph_url}/auditLogs/provisioning"
        assert [http.get(url).status_code for _ in range(3)] == [200, 200, 429]
        assert emu.faults()["log_rate_limit"] == [2, 1.0]
        emu.set_faults(log_rate_limit=None)
        assert all(http.get(url).status_code == 200 for _ in range(12))
        admin = httpx.post(f"{emu.url}/_emulator/faults", json={"log_rate_limit": "3/60"})
        assert admin.status_code == 200 and admin.json()["log_rate_limit"] == [3, 60.0]
        assert http.get(url).status_code == 429  # the reads of the last minute still count
        emu.advance(60)
        assert [http.get(url).status_code for _ in range(4)] == [200, 200, 200, 429]
        assert (
            httpx.post(f"{emu.url}/_emulator/faults", json={"log_rate_limit": "0/1"}).status_code
            == 400
        )
        emu.reset()
        assert emu.faults()["log_rate_limit"] == [2, 1.0]
        assert emu.log_reads()["admitted"] == 0
    with pytest.raises(FaultError):
        GraphEmulator(log_rate_limit="many")
    with GraphEmulator(log_rate_limit="none") as emu:
        assert emu.log_reads()["log_rate_limit"] is None


def test_command_line_log_rate_limit(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--log-rate-limit", "x/y"]) == 2
    assert "--log-rate-limit" in capsys.readouterr().err
