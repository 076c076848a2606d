"""The Graph emulator over real HTTP: managed identity tokens, the bulkUpload contract,
provisioning logs, the synchronization job, users, faults and the admin API."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from graph_emulator import BUCKET_FULL_CODE, BUCKET_FULL_MESSAGE, GraphEmulator
from graph_emulator._util import parse_iso

ROOT = Path(__file__).resolve().parent.parent
BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
SCIM = "application/scim+json"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def user(external_id: str, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schemas": [CORE, ENTERPRISE],
        "externalId": external_id,
        "userName": f"{external_id.lower()}@contoso.test",
        "displayName": f"User {external_id}",
        "name": {"givenName": "Given", "familyName": f"Family{external_id}"},
        "title": "Engineer",
        "userType": "Employee",
        "active": True,
        "emails": [
            {"type": "home", "value": f"{external_id}@home.test"},
            {"type": "work", "value": f"{external_id}@contoso.test", "primary": True},
        ],
        ENTERPRISE: {
            "department": "Research",
            "organization": "Contoso",
            "division": "Labs",
            "costCenter": "CC-1",
        },
    }
    data.update(extra)
    return data


def op(data: dict[str, Any], bulk_id: str | None = None) -> dict[str, Any]:
    return {
        "method": "POST",
        "path": "/Users",
        "bulkId": bulk_id or f"b-{data['externalId']}",
        "data": data,
    }


def bulk(*datas: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [BULK], "Operations": [op(d) for d in datas], "failOnErrors": None}


@pytest.fixture
def emu() -> Iterator[GraphEmulator]:
    with GraphEmulator(rate_limit=None) as emulator:
        yield emulator


@pytest.fixture
def client(emu: GraphEmulator) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {emu.issue_token()}"}
    with httpx.Client(headers=headers, timeout=5) as http:
        yield http


def upload(
    http: httpx.Client,
    emu: GraphEmulator,
    body: Any,
    content_type: str | None = SCIM,
    **kw: Any,
) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    headers.update(kw.pop("headers", {}))
    return http.post(kw.pop("url", emu.bulk_upload_url()), content=raw, headers=headers, **kw)


def graph_error(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"code", "message", "innerError"}
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
    assert error["innerError"]["request-id"] == response.headers["request-id"]
    return error


def collect(http: httpx.Client, url: str, params: dict[str, Any] | None = None) -> list[Any]:
    """Follow @odata.nextLink to the end; return every page's value list."""
    pages = []
    response = http.get(url, params=params)
    while True:
        assert response.status_code == 200, response.text
        payload = response.json()
        pages.append(payload["value"])
        if "@odata.nextLink" not in payload:
            return pages
        response = http.get(payload["@odata.nextLink"])


# ---------------------------------------------------------------------------- identity
@pytest.fixture
def identity_env(emu: GraphEmulator, monkeypatch: pytest.MonkeyPatch) -> GraphEmulator:
    for name in ("IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "MSI_ENDPOINT", "MSI_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", emu.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", emu.identity_header)
    return emu


def test_managed_identity_credential_system_assigned(identity_env: GraphEmulator) -> None:
    from azure.identity import ManagedIdentityCredential

    emu = identity_env
    with ManagedIdentityCredential() as credential:
        token = credential.get_token(GRAPH_SCOPE)
    assert token.expires_on > time.time() + 3600
    response = httpx.get(
        f"{emu.graph_url}/users", headers={"Authorization": f"Bearer {token.token}"}
    )
    assert response.status_code == 200
    assert response.json()["value"] == []


def test_managed_identity_credential_user_assigned(identity_env: GraphEmulator) -> None:
    from azure.identity import ManagedIdentityCredential

    client_id = "0b3c9f0e-5d52-4a54-9a39-7f0b5c1e2d11"
    with ManagedIdentityCredential(client_id=client_id) as credential:
        token = credential.get_token(GRAPH_SCOPE)
    assert token.token in identity_env.state.tokens
    assert identity_env.state.tokens[token.token].client_id == client_id
    response = httpx.get(
        f"{identity_env.graph_url}/users", headers={"Authorization": f"Bearer {token.token}"}
    )
    assert response.status_code == 200


def test_unknown_user_assigned_identity_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.identity import CredentialUnavailableError, ManagedIdentityCredential

    with GraphEmulator(msi_client_ids=["11111111-1111-1111-1111-111111111111"]) as emu:
        monkeypatch.setenv("IDENTITY_ENDPOINT", emu.identity_endpoint)
        monkeypatch.setenv("IDENTITY_HEADER", emu.identity_header)
        for name in ("IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT"):
            monkeypatch.delenv(name, raising=False)
        with (
            ManagedIdentityCredential(client_id="22222222-2222-2222-2222-222222222222") as cred,
            pytest.raises(CredentialUnavailableError),
        ):
            cred.get_token(GRAPH_SCOPE)


def test_token_endpoint_protocol(emu: GraphEmulator) -> None:
    params = {"api-version": "2019-08-01", "resource": "https://graph.microsoft.com"}
    good = {"X-IDENTITY-HEADER": emu.identity_header}
    assert httpx.get(emu.identity_endpoint, params=params).status_code == 400
    assert (
        httpx.get(emu.identity_endpoint, params=params, headers={"X-IDENTITY-HEADER": "x"})
    ).status_code == 401
    old = {**params, "api-version": "2017-09-01"}
    assert httpx.get(emu.identity_endpoint, params=old, headers=good).status_code == 400
    no_resource = {"api-version": "2019-08-01"}
    assert httpx.get(emu.identity_endpoint, params=no_resource, headers=good).status_code == 400

    response = httpx.get(emu.identity_endpoint, params=params, headers=good)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert body["token_type"] == "Bearer"
    assert body["resource"] == "https://graph.microsoft.com"
    assert isinstance(body["expires_on"], str) and body["expires_on"].isdigit()
    assert int(body["expires_on"]) > time.time()


def test_token_endpoint_fault(emu: GraphEmulator) -> None:
    params = {"api-version": "2019-08-01", "resource": "https://graph.microsoft.com"}
    good = {"X-IDENTITY-HEADER": emu.identity_header}
    assert emu.faults()["token_failures"] == 0 and emu.faults()["token_status"] == 500

    emu.set_faults(token_failures=2)
    failed = [httpx.get(emu.identity_endpoint, params=params, headers=good) for _ in range(2)]
    assert [r.status_code for r in failed] == [500, 500]
    assert failed[0].json()["statusCode"] == 500 and "access_token" not in failed[0].json()
    assert emu.faults()["token_failures"] == 0
    assert httpx.get(emu.identity_endpoint, params=params, headers=good).status_code == 200

    # 0 drops the connection without an answer; the fault comes before any check of the request
    emu.set_faults(token_failures=2, token_status=0)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(emu.identity_endpoint, params=params, headers=good)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(emu.identity_endpoint)
    assert httpx.get(emu.identity_endpoint, params=params, headers=good).status_code == 200

    emu.set_faults(token_failures=1, token_status=503)
    assert httpx.get(emu.identity_endpoint, params=params, headers=good).status_code == 503
    # the admin API issues tokens whatever the fault, and Graph is not affected
    emu.set_faults(token_failures=5)
    token = httpx.post(f"{emu.url}/_emulator/tokens", json={}).json()["access_token"]
    graph = httpx.get(f"{emu.graph_url}/users", headers={"Authorization": f"Bearer {token}"})
    assert graph.status_code == 200
    assert emu.faults()["token_failures"] == 5
    # over the admin API too, and reset heals it
    admin = httpx.post(f"{emu.url}/_emulator/faults", json={"token_failures": 3, "token_status": 0})
    assert admin.status_code == 200
    assert (admin.json()["token_failures"], admin.json()["token_status"]) == (3, 0)
    emu.reset()
    assert (emu.faults()["token_failures"], emu.faults()["token_status"]) == (0, 500)
    for bad in ({"token_failures": -1}, {"token_failures": True}, {"token_status": 200}):
        with pytest.raises(ValueError):
            emu.set_faults(**bad)


def test_token_endpoint_fault_seen_by_managed_identity_credential(
    identity_env: GraphEmulator,
) -> None:
    """The asynchronous credential, as the app uses it (the synchronous one goes through MSAL,
    which remembers a 5xx for a while and would not ask again at once)."""
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity.aio import ManagedIdentityCredential

    emu = identity_env
    emu.set_faults(token_failures=1)

    async def main() -> str:
        # retry_total=0: azure-identity would otherwise retry the 500 by itself and succeed
        async with ManagedIdentityCredential(retry_total=0) as credential:
            with pytest.raises(ClientAuthenticationError):
                await credential.get_token(GRAPH_SCOPE)
            return (await credential.get_token(GRAPH_SCOPE)).token  # the next request gets one

    assert asyncio.run(main()) in emu.state.tokens


def test_read_sequence_fault(emu: GraphEmulator, client: httpx.Client) -> None:
    job_url = f"{emu.graph_url}/servicePrincipals/{emu.sp_id}/synchronization/jobs/{emu.job_id}"
    emu.set_faults(read_sequence=[0, 503, 200, 429, 500])
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(job_url)
    unavailable = client.get(job_url)
    assert unavailable.status_code == 503
    assert graph_error(unavailable)["code"] == "ServiceUnavailable"
    # bulkUpload does not take from the read sequence
    assert upload(client, emu, bulk(user("E1"))).status_code == 202
    assert client.get(job_url).status_code == 200
    throttled = client.get(f"{emu.graph_url}/users")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "1"
    # before the token check: even an unauthenticated read gets the fault
    assert httpx.get(f"{emu.graph_url}/auditLogs/provisioning").status_code == 500
    assert emu.faults()["read_sequence"] == []
    assert client.get(job_url).status_code == 200
    with pytest.raises(ValueError):
        emu.set_faults(read_sequence=[202])
    with pytest.raises(ValueError):
        emu.set_faults(read_sequence=["500"])


# ---------------------------------------------------------------------------- auth on Graph
def test_graph_requires_a_valid_bearer_token(emu: GraphEmulator) -> None:
    url = emu.bulk_upload_url()
    missing = httpx.post(url, json=bulk(user("E1")), headers={"Content-Type": SCIM})
    assert missing.status_code == 401
    assert graph_error(missing)["code"] == "InvalidAuthenticationToken"
    bogus = httpx.get(f"{emu.graph_url}/users", headers={"Authorization": "Bearer nope"})
    assert bogus.status_code == 401
    storage = emu.issue_token(resource="https://storage.azure.com")
    wrong_audience = httpx.get(
        f"{emu.graph_url}/users", headers={"Authorization": f"Bearer {storage}"}
    )
    assert wrong_audience.status_code == 401
    assert "audience" in graph_error(wrong_audience)["message"]
    assert emu.directory() == []
    assert [u["status"] for u in emu.uploads()] == [401]


def test_expired_token_is_rejected_with_the_documented_message() -> None:
    with GraphEmulator(token_lifetime=0) as emu:
        token = emu.issue_token()
        response = httpx.get(f"{emu.graph_url}/users", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    error = graph_error(response)
    assert error["code"] == "InvalidAuthenticationToken"
    assert error["message"] == "Access token has expired or is not yet valid."


def test_request_id_headers(emu: GraphEmulator, client: httpx.Client) -> None:
    echoed = client.get(f"{emu.graph_url}/users", headers={"client-request-id": "abc-123"})
    assert echoed.headers["client-request-id"] == "abc-123"
    assert len(echoed.headers["request-id"]) == 36
    fresh = client.get(f"{emu.graph_url}/users")
    assert len(fresh.headers["client-request-id"]) == 36
    assert fresh.headers["request-id"] != echoed.headers["request-id"]


# ---------------------------------------------------------------------------- bulkUpload contract
@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain"])
def test_wrong_content_type_is_400(
    emu: GraphEmulator, client: httpx.Client, content_type: str | None
) -> None:
    response = upload(client, emu, bulk(user("E1")), content_type=content_type)
    assert response.status_code == 400
    error = graph_error(response)
    assert "Invalid Data Format" in error["message"]
    assert SCIM in error["message"]
    assert emu.directory() == []
    assert emu.logs() == []


def test_content_type_parameters_are_allowed(emu: GraphEmulator, client: httpx.Client) -> None:
    response = upload(
        client, emu, bulk(user("E1")), content_type="Application/SCIM+json; charset=utf-8"
    )
    assert response.status_code == 202


def test_51_operations_are_refused_50_accepted(emu: GraphEmulator, client: httpx.Client) -> None:
    too_many = upload(client, emu, bulk(*(user(f"E{i}") for i in range(51))))
    assert too_many.status_code == 400
    assert "maximum of 50" in graph_error(too_many)["message"]
    assert emu.directory() == []
    fifty = upload(client, emu, bulk(*(user(f"E{i}") for i in range(50))))
    assert fifty.status_code == 202
    assert len(emu.directory()) == 50
    assert [(u["status"], u["operations"]) for u in emu.uploads()] == [(400, 51), (202, 50)]


def _bad(mutate: Any) -> Any:
    body = bulk(user("E1"), user("E2"))
    mutate(body)
    return body


BAD_BODIES: dict[str, Any] = {
    "not json": b"{not json",
    "array body": [1, 2],
    "missing schemas": _bad(lambda b: b.pop("schemas")),
    "wrong schemas": _bad(
        lambda b: b.update(schemas=["urn:ietf:params:scim:api:messages:2.0:Bulk"])
    ),
    "extra schema": _bad(lambda b: b["schemas"].append(CORE)),
    "missing Operations": _bad(lambda b: b.pop("Operations")),
    "empty Operations": _bad(lambda b: b.update(Operations=[])),
    "Operations not a list": _bad(lambda b: b.update(Operations={"a": 1})),
    "method DELETE": _bad(lambda b: b["Operations"][1].update(method="DELETE")),
    "method PATCH": _bad(lambda b: b["Operations"][0].update(method="PATCH")),
    "path /Groups": _bad(lambda b: b["Operations"][0].update(path="/Groups")),
    "missing bulkId": _bad(lambda b: b["Operations"][0].pop("bulkId")),
    "empty bulkId": _bad(lambda b: b["Operations"][0].update(bulkId="")),
    "numeric bulkId": _bad(lambda b: b["Operations"][0].update(bulkId=7)),
    "duplicate bulkId": _bad(lambda b: b["Operations"][1].update(bulkId="b-E1")),
    "missing data": _bad(lambda b: b["Operations"][0].pop("data")),
    "no core schema": _bad(lambda b: b["Operations"][0]["data"].update(schemas=[ENTERPRISE])),
    "unlisted extension": _bad(lambda b: b["Operations"][0]["data"].update(schemas=[CORE])),
    "unlisted custom urn": _bad(
        lambda b: b["Operations"][0]["data"].update({"urn:contoso:employee": {"HireDate": "x"}})
    ),
    "missing externalId": _bad(lambda b: b["Operations"][0]["data"].pop("externalId")),
    "empty externalId": _bad(lambda b: b["Operations"][0]["data"].update(externalId=" ")),
    "numeric externalId": _bad(lambda b: b["Operations"][0]["data"].update(externalId=42)),
    "active as string": _bad(lambda b: b["Operations"][0]["data"].update(active="true")),
    "active null": _bad(lambda b: b["Operations"][0]["data"].update(active=None)),
    "failOnErrors string": _bad(lambda b: b.update(failOnErrors="no")),
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_bad_bodies_are_400(emu: GraphEmulator, client: httpx.Client, name: str) -> None:
    response = upload(client, emu, BAD_BODIES[name])
    assert response.status_code == 400, name
    error = graph_error(response)
    assert error["code"] == "BadRequest"
    assert error["message"].startswith("Invalid Data Format")
    assert emu.directory() == []
    assert emu.logs() == []
    assert emu.uploads()[-1]["status"] == 400


def test_error_messages_carry_no_attribute_values(emu: GraphEmulator, client: httpx.Client) -> None:
    data = user("E1", active="secret-value")
    response = upload(client, emu, bulk(data))
    assert response.status_code == 400
    assert "secret-value" not in response.text


def test_custom_schema_and_case_insensitive_method_path(
    emu: GraphEmulator, client: httpx.Client
) -> None:
    data = user("E1", schemas=[CORE, ENTERPRISE, "urn:contoso:employee"])
    data["urn:contoso:employee"] = {"HireDate": "2021-05-01", "JobCode": "AB-1002"}
    body = bulk(data)
    body["Operations"][0].update(method="post", path="/users")
    body.pop("failOnErrors")
    assert upload(client, emu, body).status_code == 202
    assert emu.directory()[0]["scim"]["urn:contoso:employee"]["JobCode"] == "AB-1002"


def test_chunked_body_and_concurrent_uploads(emu: GraphEmulator, client: httpx.Client) -> None:
    raw = json.dumps(bulk(user("C1"))).encode()
    chunked = client.post(
        emu.bulk_upload_url(), content=iter([raw[:10], raw[10:]]), headers={"Content-Type": SCIM}
    )
    assert chunked.status_code == 202

    def send(i: int) -> int:
        return upload(client, emu, bulk(user(f"P{i}"), user(f"Q{i}"))).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(send, range(24))) == {202}
    assert len(emu.directory()) == 49
    assert len(emu.uploads()) == 25 and len(emu.logs()) == 49


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_bulk_upload_is_post_only(emu: GraphEmulator, client: httpx.Client, method: str) -> None:
    response = client.request(method, emu.bulk_upload_url())
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    graph_error(response)
    assert emu.uploads()[-1]["method"] == method


def test_unknown_service_principal_or_job_is_404(emu: GraphEmulator, client: httpx.Client) -> None:
    for url in (
        emu.bulk_upload_url(job_id="API2AAD.0.00000000-0000-0000-0000-000000000000"),
        emu.bulk_upload_url(sp_id="00000000-0000-0000-0000-000000000000"),
    ):
        response = upload(client, emu, bulk(user("E1")), url=url)
        assert response.status_code == 404
        graph_error(response)
    assert emu.directory() == []


# ---------------------------------------------------------------------------- accepted uploads
def test_accepted_upload_updates_directory_and_writes_logs(
    emu: GraphEmulator, client: httpx.Client
) -> None:
    before = time.time()
    manager, report = user("M1"), user("E1")
    report[ENTERPRISE]["manager"] = {"value": "M1", "displayName": "Boss"}
    # The report comes first: a manager later in the same request still resolves.
    response = upload(client, emu, bulk(report, manager), headers={"client-request-id": "c-1"})
    assert response.status_code == 202
    assert response.content == b""
    location = response.headers["Location"]
    assert location == (
        f"{emu.graph_url}/auditLogs/provisioning/?$filter=jobid%20eq%20'{emu.job_id}'"
    )

    users = {u["employeeId"]: u for u in emu.directory()}
    assert set(users) == {"E1", "M1"}
    e1 = users["E1"]
    assert e1["userPrincipalName"] == "e1@contoso.test"
    assert e1["displayName"] == "User E1"
    assert (e1["givenName"], e1["surname"]) == ("Given", "FamilyE1")
    assert (e1["jobTitle"], e1["employeeType"]) == ("Engineer", "Employee")
    assert (e1["department"], e1["companyName"]) == ("Research", "Contoso")
    assert e1["employeeOrgData"] == {"division": "Labs", "costCenter": "CC-1"}
    assert e1["mail"] == "E1@contoso.test"
    assert e1["accountEnabled"] is True
    assert e1["manager"] == {"id": users["M1"]["id"]}
    assert e1["scim"] == report

    [record] = emu.uploads()
    assert record["status"] == 202
    assert record["operations"] == 2
    assert record["records"] == [("b-E1", "E1"), ("b-M1", "M1")]
    assert record["client_request_id"] == "c-1"
    assert record["held"] is False

    logs = client.get(location).json()
    assert logs["@odata.context"].endswith("/$metadata#auditLogs/provisioning")
    entries = {e["sourceIdentity"]["id"]: e for e in logs["value"]}
    assert set(entries) == {"E1", "M1"}
    entry = entries["E1"]
    assert entry["jobId"] == emu.job_id
    assert (entry["action"], entry["provisioningAction"]) == ("Create", "create")
    assert entry["provisioningStatusInfo"] == {"status": "success", "errorInformation": None}
    assert entry["statusInfo"] == {"status": "success"}
    assert entry["sourceIdentity"] == {
        "id": "E1",
        "displayName": "",
        "identityType": ENTERPRISE,
        "details": {},
    }
    assert entry["targetIdentity"] == {
        "id": e1["id"],
        "displayName": "User E1",
        "identityType": "User",
        "details": {
            "id": e1["id"],
            "odatatype": "User",
            "DisplayName": "User E1",
            "UserPrincipalName": "e1@contoso.test",
        },
    }
    assert entry["servicePrincipal"]["id"] == emu.sp_id
    assert entry["activityDateTime"].endswith("Z") and "." not in entry["activityDateTime"]
    assert entry["cycleId"] == entries["M1"]["cycleId"]
    assert entry["changeId"] != entries["M1"]["changeId"]
    assert isinstance(entry["durationInMilliseconds"], int)
    changed = {p["displayName"]: p for p in entry["modifiedProperties"]}
    assert changed["accountEnabled"] == {
        "displayName": "accountEnabled",
        "oldValue": None,
        "newValue": "True",
    }
    # M1 comes later in the request, so E1's own create cannot resolve it (the skip step);
    # a second entry of the same change sets it 2 s later.
    assert "manager" not in changed
    steps = [s["name"] for s in entry["provisioningSteps"]]
    assert steps == [
        "EntryImportAdd",
        "EntrySynchronizationScoping",
        "EntrySynchronizationAdd",
        "EntrySynchronizationSkip",
        "EntryExportAdd",
    ]
    same_change = [e for e in emu.logs() if e["changeId"] == entry["changeId"]]
    assert [e["action"] for e in same_change] == ["Create", "Update"]
    assert same_change[1]["modifiedProperties"] == [
        {"displayName": "manager", "oldValue": None, "newValue": users["M1"]["id"]}
    ]
    assert time.time() >= before


def test_update_disable_and_unchanged(emu: GraphEmulator, client: httpx.Client) -> None:
    assert upload(client, emu, bulk(user("E1"))).status_code == 202
    original = emu.directory()[0]
    assert upload(client, emu, bulk(user("E1", title="Lead"))).status_code == 202
    assert upload(client, emu, bulk(user("E1", title="Lead"))).status_code == 202
    assert upload(client, emu, bulk(user("E1", title="Lead", active=False))).status_code == 202
    no_active = user("E1", title="Lead")
    no_active.pop("active")
    assert upload(client, emu, bulk(no_active)).status_code == 202

    [current] = emu.directory()
    assert current["id"] == original["id"]
    assert current["jobTitle"] == "Lead"
    assert current["accountEnabled"] is False  # an omitted active leaves it unchanged
    summary = [(e["provisioningAction"], e["provisioningStatusInfo"]["status"]) for e in emu.logs()]
    assert summary == [
        ("create", "success"),
        ("update", "success"),
        ("other", "skipped"),
        ("disable", "success"),
        ("other", "skipped"),
    ]
    update = emu.logs()[1]["modifiedProperties"]
    assert update == [{"displayName": "jobTitle", "oldValue": "Engineer", "newValue": "Lead"}]


def test_create_without_active_enables_and_unresolved_manager_is_skipped(
    emu: GraphEmulator, client: httpx.Client
) -> None:
    data = user("E1")
    data.pop("active")
    data[ENTERPRISE]["manager"] = {"value": "NOBODY"}
    assert upload(client, emu, bulk(data)).status_code == 202
    [created] = emu.directory()
    assert created["accountEnabled"] is True
    assert created["manager"] is None
    [entry] = emu.logs()  # the manager never appears: no second entry
    assert entry["provisioningAction"] == "create"
    assert entry["provisioningStatusInfo"] == {"status": "success", "errorInformation": None}
    [skip] = [s for s in entry["provisioningSteps"] if s["name"] == "EntrySynchronizationSkip"]
    assert skip["details"] == {
        "NOBODY": "manager Add",
        "PropertyName": "manager",
        "SkipReason": "UnableToResolveReferenceAttributeValue",
    }


def test_log_entries_appear_after_the_log_delay() -> None:
    with GraphEmulator(rate_limit=None, log_delay=0.4) as emu:
        http = httpx.Client(headers={"Authorization": f"Bearer {emu.issue_token()}"})
        response = upload(http, emu, bulk(user("E1")))
        assert response.status_code == 202
        assert len(emu.directory()) == 1
        assert http.get(response.headers["Location"]).json()["value"] == []
        assert len(emu.logs()) == 1 and emu.logs(visible_only=True) == []
        time.sleep(0.45)
        assert len(http.get(response.headers["Location"]).json()["value"]) == 1
        http.close()


def test_beta_endpoint(emu: GraphEmulator, client: httpx.Client) -> None:
    response = upload(client, emu, bulk(user("E1")), url=emu.bulk_upload_url(version="beta"))
    assert response.status_code == 202
    assert response.headers["Location"].startswith(f"{emu.beta_url}/auditLogs/provisioning/")
    assert len(client.get(response.headers["Location"]).json()["value"]) == 1


# ---------------------------------------------------------------------------- provisioning logs
@pytest.fixture
def two_jobs() -> Iterator[tuple[GraphEmulator, httpx.Client, str]]:
    sp = "5f1b2a7c-0000-4000-8000-000000000001"
    other = "API2AAD.00000000000000000000000000000002.5f1b2a7c-0000-4000-8000-000000000002"
    first = "API2AAD.00000000000000000000000000000001.5f1b2a7c-0000-4000-8000-000000000001"
    with GraphEmulator(rate_limit=None, log_rate_limit=None, jobs={sp: [first, other]}) as emulator:
        assert (emulator.sp_id, emulator.job_id) == (sp, first)
        with httpx.Client(headers={"Authorization": f"Bearer {emulator.issue_token()}"}) as http:
            yield emulator, http, other


def test_provisioning_log_paging_and_filters(
    two_jobs: tuple[GraphEmulator, httpx.Client, str],
) -> None:
    emu, http, other = two_jobs
    for batch in range(3):
        ids = [f"A{batch}{i}" for i in range(4)]
        assert upload(http, emu, bulk(*(user(x) for x in ids))).status_code == 202
        emu.advance(1)  # activityDateTime has whole seconds: the next cycle is a second later
    middle = emu.state.wall()
    emu.advance(1)
    response = upload(http, emu, bulk(user("B1")), url=emu.bulk_upload_url(job_id=other))
    assert response.status_code == 202
    url = f"{emu.graph_url}/auditLogs/provisioning"

    everything = collect(http, url, {"$top": 5})
    assert [len(page) for page in everything] == [5, 5, 3]
    flat = [e for page in everything for e in page]
    assert len({e["id"] for e in flat}) == 13
    times = [e["activityDateTime"] for e in flat]
    assert times == sorted(times, reverse=True)  # newest first, like Graph

    # Four entries share each second: pages of 3 cut through them and still list each once.
    ascending = collect(http, url, {"$top": 3, "$orderby": "activityDateTime asc"})
    asc = [e for page in ascending for e in page]
    asc_times = [e["activityDateTime"] for e in asc]
    assert asc_times == sorted(asc_times) and len(asc_times) == 13
    assert sorted(e["id"] for e in asc) == sorted(e["id"] for e in flat)

    by_job = collect(http, url, {"$filter": f"JobId eq '{emu.job_id}'", "$top": 5})
    assert sum(len(p) for p in by_job) == 12
    assert all(e["jobId"] == emu.job_id for p in by_job for e in p)

    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(middle + 0.999))
    since = collect(http, url, {"$filter": f"activityDateTime ge {stamp}"})
    assert [e["sourceIdentity"]["id"] for p in since for e in p] == ["B1"]
    until = collect(
        http, url, {"$filter": f"jobid eq '{emu.job_id}' and activityDateTime le {stamp}"}
    )
    assert sum(len(p) for p in until) == 12

    newest = flat[0]["activityDateTime"]
    same = {"$filter": f"activityDateTime ge {newest}"}
    assert flat[0] in http.get(url, params=same).json()["value"]
    exact = http.get(url, params={"$filter": f"activityDateTime eq {newest}"}).json()["value"]
    assert exact == [flat[0]]
    after = {"$filter": f"activityDateTime gt {newest}"}
    assert http.get(url, params=after).json()["value"] == []

    one = http.get(url, params={"$filter": "sourceIdentity/id eq 'A11'"}).json()["value"]
    assert [e["sourceIdentity"]["id"] for e in one] == ["A11"]
    single = http.get(f"{url}/{one[0]['id']}")
    assert single.status_code == 200 and single.json()["id"] == one[0]["id"]


@pytest.mark.parametrize(
    "params",
    [
        {"$top": "1001"},
        {"$top": "0"},
        {"$filter": "displayName eq 'x'"},
        {"$filter": "jobid eq unquoted"},
        {"$filter": "activityDateTime ge yesterday"},
        {"$skiptoken": "!!!"},
        {"$orderby": "jobId"},
        {"$filter": "jobId ne 'x'"},
        {"$filter": "jobId in ('x')"},
        {"$filter": "jobId eq 'x' or cycleId eq 'y'"},
        {"$filter": "not (jobId eq 'x')"},
        {"$filter": "startswith(jobId, 'API2AAD')"},
        {"$filter": "contains(activityDateTime, '2024')"},
        {"$filter": "jobId gt 'x'"},
        {"$filter": "jobId eq 'x"},
        {"$filter": "jobId eq"},
        {"$filter": "activityDateTime ne 2024-01-01T00:00:00Z"},
    ],
)
def test_provisioning_log_bad_queries_are_400(
    emu: GraphEmulator, client: httpx.Client, params: dict[str, str]
) -> None:
    response = client.get(f"{emu.graph_url}/auditLogs/provisioning", params=params)
    assert response.status_code == 400
    graph_error(response)


# ---------------------------------------------------------------------------- job and users
def test_synchronization_job(emu: GraphEmulator, client: httpx.Client) -> None:
    url = f"{emu.graph_url}/servicePrincipals/{emu.sp_id}/synchronization/jobs/{emu.job_id}"
    job = client.get(url).json()
    assert job["id"] == emu.job_id
    assert job["templateId"] == "API2AAD"
    assert job["status"]["code"] == "Active"
    assert job["status"]["quarantine"] is None
    assert job["status"]["lastExecution"] is None
    assert upload(client, emu, bulk(user("E1"))).status_code == 202
    assert client.get(url).json()["status"]["lastExecution"]["state"] == "Succeeded"
    listing = client.get(f"{emu.graph_url}/servicePrincipals/{emu.sp_id}/synchronization/jobs")
    assert [j["id"] for j in listing.json()["value"]] == [emu.job_id]
    assert client.get(url.replace(emu.job_id, "API2AAD.1.2")).status_code == 404
    assert emu.job_id.startswith("API2AAD.") and len(emu.job_id.split(".")[1]) == 32


def test_users_paging_select_and_filter(emu: GraphEmulator, client: httpx.Client) -> None:
    emu.seed_users(
        [
            {"employeeId": f"S{i}", "displayName": f"Seed {i}", "accountEnabled": i != 2}
            for i in range(7)
        ]
    )
    url = f"{emu.graph_url}/users"
    pages = collect(client, url, {"$select": "id,employeeId", "$top": 3})
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [u["employeeId"] for p in pages for u in p] == [f"S{i}" for i in range(7)]
    assert all(set(u) == {"id", "employeeId"} for p in pages for u in p)

    default = client.get(url, params={"$top": 1}).json()["value"][0]
    assert "employeeId" not in default and "accountEnabled" not in default
    assert {"id", "displayName", "userPrincipalName", "mail"} <= set(default)

    found = client.get(url, params={"$filter": "employeeId eq 's3'", "$select": "employeeId"})
    assert found.json()["value"] == [{"employeeId": "S3"}]
    several = client.get(
        url, params={"$filter": "employeeId in ('S1','S5','nope')", "$select": "employeeId"}
    )
    assert [u["employeeId"] for u in several.json()["value"]] == ["S1", "S5"]
    disabled = client.get(
        url, params={"$filter": "accountEnabled eq false", "$select": "employeeId"}
    )
    assert disabled.json()["value"] == [{"employeeId": "S2"}]
    assert client.get(url, params={"$select": "nonsense"}).status_code == 400
    assert client.get(url, params={"$filter": "city eq 'x'"}).status_code == 400
    assert client.get(url, params={"$top": "1000"}).status_code == 400

    one = pages[0][0]["id"]
    assert client.get(f"{url}/{one}", params={"$select": "employeeId"}).json()["employeeId"] == "S0"
    assert client.get(f"{url}/00000000-0000-0000-0000-000000000000").status_code == 404


def test_msgraph_sdk_reads_logs_job_and_users(emu: GraphEmulator, client: httpx.Client) -> None:
    """The SDK the app uses parses the emulator's payloads (and follows its nextLink)."""
    from kiota_abstractions.authentication import AnonymousAuthenticationProvider
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.generated.audit_logs.provisioning.provisioning_request_builder import (
        ProvisioningRequestBuilder,
    )

    assert upload(client, emu, bulk(user("E1"), user("E2"), user("E3"))).status_code == 202
    token = emu.issue_token()

    async def run() -> tuple[list[str], str, str]:
        adapter = GraphRequestAdapter(AnonymousAuthenticationProvider())
        adapter.base_url = emu.graph_url
        sdk = GraphServiceClient(request_adapter=adapter)
        headers = {"Authorization": f"Bearer {token}"}
        query = ProvisioningRequestBuilder.ProvisioningRequestBuilderGetQueryParameters(
            filter=f"jobid eq '{emu.job_id}'", top=2
        )
        config: RequestConfiguration[Any] = RequestConfiguration(
            query_parameters=query, headers=headers
        )
        page = await sdk.audit_logs.provisioning.get(config)
        assert page is not None and page.value is not None and page.odata_next_link
        seen = [e.source_identity.id for e in page.value if e.source_identity]
        rest = await sdk.audit_logs.provisioning.with_url(page.odata_next_link).get(
            RequestConfiguration(headers=headers)
        )
        assert rest is not None and rest.value is not None
        seen += [e.source_identity.id for e in rest.value if e.source_identity]
        job = await (
            sdk.service_principals.by_service_principal_id(emu.sp_id)
            .synchronization.jobs.by_synchronization_job_id(emu.job_id)
            .get(RequestConfiguration(headers=headers))
        )
        assert job is not None and job.status is not None and job.status.code is not None
        users = await sdk.users.get(RequestConfiguration(headers=headers))
        assert users is not None and users.value
        return [s for s in seen if s], str(job.status.code.value), str(users.value[0].id)

    seen, code, first_user = asyncio.run(run())
    assert sorted(seen) == ["E1", "E2", "E3"]
    assert code == "Active"
    assert first_user == emu.directory()[0]["id"]


# ---------------------------------------------------------------------------- throttling
def test_rate_limit_answers_429_with_retry_after() -> None:
    with GraphEmulator(rate_limit=(3, 1.0)) as emu:
        http = httpx.Client(headers={"Authorization": f"Bearer {emu.issue_token()}"})
        statuses = [upload(http, emu, bulk(user(f"E{i}"))).status_code for i in range(3)]
        assert statuses == [202, 202, 202]
        throttled = upload(http, emu, bulk(user("E9")))
        assert throttled.status_code == 429
        assert graph_error(throttled)["code"] == "TooManyRequests"
        assert throttled.headers["Retry-After"] == "1"
        assert len(emu.directory()) == 3
        time.sleep(float(throttled.headers["Retry-After"]))
        assert upload(http, emu, bulk(user("E9"))).status_code == 202

        emu.set_faults(rate_limit=(1, 0.3), retry_after=False)
        time.sleep(0.3)
        assert upload(http, emu, bulk(user("F1"))).status_code == 202
        quiet = upload(http, emu, bulk(user("F2")))
        assert quiet.status_code == 429 and "Retry-After" not in quiet.headers
        emu.set_faults(rate_limit=None)
        assert upload(http, emu, bulk(user("F2"))).status_code == 202
        assert [u["status"] for u in emu.uploads()] == [202, 202, 202, 429, 202, 202, 429, 202]
        http.close()


def test_rate_limit_and_daily_quota_are_tenant_wide(
    two_jobs: tuple[GraphEmulator, httpx.Client, str],
) -> None:
    """One emulator is one tenant: both jobs draw from one rate window and one daily quota."""
    emu, http, other = two_jobs
    emu.set_faults(rate_limit=(1, 5), daily_quota=3)
    assert upload(http, emu, bulk(user("E1"))).status_code == 202
    assert upload(http, emu, bulk(user("E2"))).status_code == 429
    other_job = upload(http, emu, bulk(user("E3")), url=emu.bulk_upload_url(other))
    assert other_job.status_code == 429 and other_job.headers["Retry-After"] == "5"
    assert "rate limit" in graph_error(other_job)["message"]
    emu.set_faults(rate_limit=None)
    assert upload(http, emu, bulk(user("E4"))).status_code == 202
    assert upload(http, emu, bulk(user("E5")), url=emu.bulk_upload_url(other)).status_code == 202
    for url in (emu.bulk_upload_url(), emu.bulk_upload_url(other)):
        over_quota = upload(http, emu, bulk(user("E6")), url=url)
        assert over_quota.status_code == 429 and int(over_quota.headers["Retry-After"]) > 86000
        assert "quota" in graph_error(over_quota)["message"]
    pacing = emu.pacing()
    assert pacing["throttled"] == {"rate": 2, "quota": 2, "injected": 0}
    assert pacing["admitted"] == pacing["calls_last_24h"] == 3
    assert emu.count_429() == 4


def test_max_in_window_counts_admitted_requests_and_429s() -> None:
    with GraphEmulator(rate_limit=(5, 30.0)) as emu:
        token = emu.issue_token()
        headers = {"Authorization": f"Bearer {token}"}

        def send(i: int) -> int:
            with httpx.Client(headers=headers, timeout=5) as http:
                return upload(http, emu, bulk(user(f"E{i}"))).status_code

        with ThreadPoolExecutor(max_workers=12) as pool:
            statuses = list(pool.map(send, range(12)))
        assert statuses.count(202) == 5 and statuses.count(429) == 7
        assert emu.max_in_window(30.0) == 5
        assert emu.count_429() == 7
        assert emu.pacing()["throttled"] == {"rate": 7, "quota": 0, "injected": 0}
        # An injected 429 counts as a 429 answer, and its request was admitted.
        emu.set_faults(status_sequence=[429], rate_limit=None)
        emu.advance(100)
        assert send(99) == 429
        assert emu.count_429() == 8 and emu.pacing()["throttled"]["injected"] == 1
        # Windows are sliding, measured on the emulator clock.
        for i in range(5):
            assert send(100 + i) == 202
        emu.advance(3)
        assert send(200) == 202
        assert emu.max_in_window(2.0) == 6  # the 429's request and the 5 after it
        assert emu.max_in_window(5.0) == 7  # and the one after the advance
        assert emu.max_in_window(1000.0) == 12
        pacing = httpx.get(f"{emu.url}/_emulator/pacing", params={"window": 1000}).json()
        assert (pacing["max_in_window"], pacing["answered_429"], pacing["admitted"]) == (12, 8, 12)
        assert httpx.get(f"{emu.url}/_emulator/pacing").json()["window_seconds"] is None
        with pytest.raises(ValueError):
            emu.max_in_window(0)


def test_daily_quota_spreads_over_simulated_days() -> None:
    """A quota of N and 3N calls: three days of the emulator clock, no real waiting."""
    with GraphEmulator(rate_limit=(40, 5.0), daily_quota=3) as emu:
        http = httpx.Client(headers={"Authorization": f"Bearer {emu.issue_token()}"}, timeout=5)
        assert upload(http, emu, bulk(user("D0"))).status_code == 202
        emu.advance(3600)
        assert upload(http, emu, bulk(user("D1"))).status_code == 202
        assert upload(http, emu, bulk(user("D2"))).status_code == 202
        refused = upload(http, emu, bulk(user("D3")))
        assert refused.status_code == 429
        # Until the oldest call of the last 24 h leaves the window: 23 h from now.
        assert abs(int(refused.headers["Retry-After"]) - (86400 - 3600)) <= 1
        emu.advance(int(refused.headers["Retry-After"]) - 5)
        assert upload(http, emu, bulk(user("D3"))).status_code == 429
        emu.advance(5)
        assert upload(http, emu, bulk(user("D3"))).status_code == 202
        refused = upload(http, emu, bulk(user("D4")))
        assert abs(int(refused.headers["Retry-After"]) - 3600) <= 1

        emu.reset()
        emu.set_faults(daily_quota=3)
        assert emu.clock_offset() == 0
        sent, days = 0, 0
        while sent < 9:
            response = upload(http, emu, bulk(user(f"Q{sent}")))
            if response.status_code == 429:
                emu.advance(int(response.headers["Retry-After"]))
                days += 1
                continue
            assert response.status_code == 202
            sent += 1
        assert days >= 2 and 2 * 86400 <= emu.clock_offset() < 2 * 86400 + 10
        assert [u["status"] for u in emu.uploads()].count(429) == days
        assert emu.max_in_window(86400) == 3 and len(emu.directory()) == 9
        http.close()


def test_advance_moves_the_clock_for_windows_logs_and_stamps() -> None:
    with GraphEmulator(rate_limit=(1, 60.0), log_delay=600) as emu:
        http = httpx.Client(headers={"Authorization": f"Bearer {emu.issue_token()}"}, timeout=5)
        started = time.time()
        assert upload(http, emu, bulk(user("E1"))).status_code == 202
        assert upload(http, emu, bulk(user("E2"))).status_code == 429
        assert emu.logs(visible_only=True) == []
        admin = f"{emu.url}/_emulator/clock"
        assert httpx.get(admin).json()["offset_seconds"] == 0
        moved = httpx.post(admin, json={"advance": 600})
        assert moved.status_code == 200 and moved.json()["offset_seconds"] == 600
        assert [e["sourceIdentity"]["id"] for e in emu.logs(visible_only=True)] == ["E1"]
        assert upload(http, emu, bulk(user("E2"))).status_code == 202  # the 60 s window passed
        emu.advance(2 * 86400)  # tokens keep real time: the client's token is still good
        assert upload(http, emu, bulk(user("E3"))).status_code == 202
        stamps = [parse_iso(e["activityDateTime"]) for e in emu.logs()]
        assert stamps[0] < started + 5
        assert math.floor(started) + 600 <= stamps[1] < time.time() + 605
        assert stamps[2] >= math.floor(started) + 600 + 2 * 86400
        assert emu.uploads()[-1]["time"] >= started + 2 * 86400
        assert httpx.post(admin, json={"advance": -1}).status_code == 400
        assert httpx.post(admin, json={"back": 1}).status_code == 400
        with pytest.raises(ValueError):
            emu.advance(-5)
        emu.reset()
        assert emu.clock_offset() == 0 and httpx.get(admin).json()["offset_seconds"] == 0
        http.close()


def test_bucket_full_for_a_stretch(emu: GraphEmulator, client: httpx.Client) -> None:
    emu.set_faults(daily_quota=3, status_sequence=[503])
    assert emu.bucket_full_for(600) == pytest.approx(600, abs=1)
    for i in range(5):  # more than the quota: bucket-full calls do not use it
        full = upload(client, emu, bulk(user(f"E{i}")))
        assert full.status_code == 500 and "Retry-After" not in full.headers
        error = graph_error(full)
        assert (error["code"], error["message"]) == (BUCKET_FULL_CODE, BUCKET_FULL_MESSAGE)
    assert emu.directory() == [] and emu.logs() == []
    assert emu.pacing()["calls_last_24h"] == 0 and emu.pacing()["admitted"] == 5
    assert 590 < emu.faults()["bucket_full_remaining"] <= 600
    assert emu.faults()["status_sequence"] == [503]  # not consumed during the stretch
    emu.advance(599)
    assert upload(client, emu, bulk(user("E9"))).status_code == 500
    emu.advance(2)  # the stretch follows the emulator clock
    assert emu.faults()["bucket_full_remaining"] == 0
    assert upload(client, emu, bulk(user("E9"))).status_code == 503
    assert upload(client, emu, bulk(user("E9"))).status_code == 202
    assert [u["status"] for u in emu.uploads()] == [500] * 6 + [503, 202]
    assert emu.uploads()[0]["error"] == BUCKET_FULL_MESSAGE

    # The admin API; real time ends a stretch too; 0 ends one at once.
    emu.set_faults(daily_quota=None)
    reply = httpx.post(f"{emu.url}/_emulator/faults", json={"bucket_full_for": 0.3})
    assert reply.status_code == 200 and 0 < reply.json()["bucket_full_remaining"] <= 0.3
    assert upload(client, emu, bulk(user("E10"))).status_code == 500
    time.sleep(0.35)
    assert upload(client, emu, bulk(user("E10"))).status_code == 202
    emu.bucket_full_for(60)
    emu.bucket_full_for(0)
    assert upload(client, emu, bulk(user("E11"))).status_code == 202
    for bad in (-1, "soon", True):
        assert (
            httpx.post(f"{emu.url}/_emulator/faults", json={"bucket_full_for": bad}).status_code
            == 400
        )


def test_bucket_full_requests_count_in_the_rate_window() -> None:
    """A bucket-full answer is a call that passed the rate check: it takes a slot."""
    with GraphEmulator(rate_limit=(2, 60.0)) as emu:
        http = httpx.Client(headers={"Authorization": f"Bearer {emu.issue_token()}"}, timeout=5)
        emu.bucket_full_for(30)
        statuses = [upload(http, emu, bulk(user("E1"))).status_code for _ in range(3)]
        assert statuses == [500, 500, 429]
        emu.advance(60)
        assert upload(http, emu, bulk(user("E1"))).status_code == 202
        assert emu.max_in_window(60) == 2
        http.close()


# ---------------------------------------------------------------------------- faults
def test_status_sequence_fault(emu: GraphEmulator, client: httpx.Client) -> None:
    emu.set_faults(status_sequence=[500, 503, 400, 401, 403, 429])
    responses = [upload(client, emu, bulk(user("E1"))) for _ in range(6)]
    assert [r.status_code for r in responses] == [500, 503, 400, 401, 403, 429]
    errors = [graph_error(r) for r in responses]
    assert errors[0]["message"] == BUCKET_FULL_MESSAGE and "bucket" in errors[0]["message"]
    assert errors[3]["code"] == "InvalidAuthenticationToken"
    assert errors[4]["code"] == "Authorization_RequestDenied"
    assert emu.directory() == [] and emu.logs() == []
    assert upload(client, emu, bulk(user("E1"))).status_code == 202
    assert [u["status"] for u in emu.uploads()] == [500, 503, 400, 401, 403, 429, 202]
    assert len(emu.directory()) == 1 and len(emu.logs()) == 1


def test_latency_fault(emu: GraphEmulator, client: httpx.Client) -> None:
    emu.set_faults(latency_ms=300)
    started = time.monotonic()
    assert upload(client, emu, bulk(user("E1"))).status_code == 202
    assert time.monotonic() - started >= 0.3
    emu.set_faults(latency_ms=0)
    started = time.monotonic()
    assert upload(client, emu, bulk(user("E2"))).status_code == 202
    assert time.monotonic() - started < 0.3


def test_drop_connection_fault(emu: GraphEmulator, client: httpx.Client) -> None:
    emu.set_faults(drop_connections=2)
    for _ in range(2):
        with pytest.raises(httpx.RemoteProtocolError):
            upload(client, emu, bulk(user("E1")))
    assert emu.directory() == [] and emu.logs() == []
    emu.set_faults(status_sequence=[0])
    with pytest.raises(httpx.RemoteProtocolError):
        upload(client, emu, bulk(user("E1")))
    assert upload(client, emu, bulk(user("E1"))).status_code == 202
    assert [(u["status"], u["operations"]) for u in emu.uploads()] == [
        (0, 1),
        (0, 1),
        (0, 1),
        (202, 1),
    ]
    assert len(emu.directory()) == 1


def test_fail_records_fault(emu: GraphEmulator, client: httpx.Client) -> None:
    assert upload(client, emu, bulk(user("E1"))).status_code == 202
    failure = {
        "errorCode": "AzureActiveDirectoryInvalidUserPrincipalName",
        "reason": "The UPN is not valid.",
        "recommendedAction": "Fix the UPN mapping.",
    }
    emu.set_faults(fail_records={"E1": failure, "E2": failure})
    response = upload(client, emu, bulk(user("E1", title="Changed"), user("E2"), user("E3")))
    assert response.status_code == 202
    directory = {u["employeeId"]: u for u in emu.directory()}
    assert set(directory) == {"E1", "E3"}
    assert directory["E1"]["jobTitle"] == "Engineer"
    entries = {e["sourceIdentity"]["id"]: e for e in emu.logs()[1:]}
    for key, action in (("E1", "update"), ("E2", "create")):
        info = entries[key]["provisioningStatusInfo"]
        assert info["status"] == "failure"
        assert entries[key]["provisioningAction"] == action
        assert info["errorInformation"]["errorCode"] == failure["errorCode"]
        assert info["errorInformation"]["reason"] == failure["reason"]
        assert info["errorInformation"]["recommendedAction"] == failure["recommendedAction"]
        assert entries[key]["modifiedProperties"] == []
    assert entries["E2"]["targetIdentity"]["id"] == ""
    assert entries["E3"]["provisioningStatusInfo"]["status"] == "success"


@pytest.mark.parametrize("status", ["Paused", "Quarantine", "NotRun", "NotConfigured"])
def test_inactive_job_holds_operations_until_active(
    emu: GraphEmulator, client: httpx.Client, status: str
) -> None:
    job_url = f"{emu.graph_url}/servicePrincipals/{emu.sp_id}/synchronization/jobs/{emu.job_id}"
    emu.set_faults(job_status=status)
    assert upload(client, emu, bulk(user("E1"), user("E2"))).status_code == 202
    assert upload(client, emu, bulk(user("E1", title="Lead"))).status_code == 202
    assert emu.directory() == [] and emu.logs() == []
    assert [u["held"] for u in emu.uploads()] == [True, True]
    job = client.get(job_url).json()
    assert job["status"]["code"] == status
    if status == "Quarantine":
        assert job["status"]["quarantine"]["reason"] == "TooManyDeletes"
        assert job["status"]["quarantine"]["seriesCount"] == 1
    else:
        assert job["status"]["quarantine"] is None
    assert emu.faults()["jobs"][emu.job_id]["held_operations"] == 3

    emu.set_faults(job_status="Active")
    assert client.get(job_url).json()["status"]["code"] == "Active"
    users = {u["employeeId"]: u for u in emu.directory()}
    assert set(users) == {"E1", "E2"} and users["E1"]["jobTitle"] == "Lead"
    assert [e["provisioningAction"] for e in emu.logs()] == ["create", "create", "update"]


def test_quarantine_reason(emu: GraphEmulator, client: httpx.Client) -> None:
    emu.set_faults(job_status="Quarantine", quarantine_reason="EncounteredQuarantineException")
    url = f"{emu.graph_url}/servicePrincipals/{emu.sp_id}/synchronization/jobs/{emu.job_id}"
    quarantine = client.get(url).json()["status"]["quarantine"]
    assert quarantine["reason"] == "EncounteredQuarantineException"
    assert {"currentBegan", "nextAttempt", "seriesBegan", "seriesCount"} <= set(quarantine)
    with pytest.raises(ValueError):
        emu.set_faults(job_status="Sleeping")
    with pytest.raises(ValueError):
        emu.set_faults(no_such_fault=True)


# ---------------------------------------------------------------------------- admin API and CLI
def test_admin_api(emu: GraphEmulator, client: httpx.Client) -> None:
    admin = f"{emu.url}/_emulator"
    info = httpx.get(f"{admin}/info").json()
    assert info["job_id"] == emu.job_id and info["identity_header"] == emu.identity_header
    faults = httpx.post(f"{admin}/faults", json={"status_sequence": [503], "rate_limit": "5/1"})
    assert faults.status_code == 200 and faults.json()["rate_limit"] == [5, 1.0]
    assert upload(client, emu, bulk(user("E1"))).status_code == 503
    assert upload(client, emu, bulk(user("E1"))).status_code == 202
    assert [u["status"] for u in httpx.get(f"{admin}/uploads").json()] == [503, 202]
    assert httpx.get(f"{admin}/directory").json()[0]["employeeId"] == "E1"
    assert len(httpx.get(f"{admin}/logs").json()) == 1
    assert httpx.post(f"{admin}/faults", json={"bogus": 1}).status_code == 400
    assert httpx.post(f"{admin}/faults", json={"job_status": "Paused"}).status_code == 200
    assert emu.job()["status"]["code"] == "Paused"
    assert httpx.post(f"{admin}/reset").json() == {"ok": True}
    assert emu.directory() == [] and emu.uploads() == [] and emu.logs() == []
    assert emu.job()["status"]["code"] == "Active"
    assert emu.faults()["rate_limit"] is None  # back to the constructor's setting
    token = httpx.post(f"{admin}/tokens", json={}).json()["access_token"]
    seeded = httpx.post(f"{admin}/users", json=[{"employeeId": "Z1"}]).json()
    response = httpx.get(
        f"{emu.graph_url}/users/{seeded[0]['id']}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200


def test_only_loopback_addresses() -> None:
    with pytest.raises(ValueError):
        GraphEmulator(host="0.0.0.0")


def test_command_line() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "graph_emulator",
            "--port",
            "0",
            "--rate-limit",
            "2/1",
            "--job-id",
            "API2AAD.cli.job",
            "--sp-id",
            "sp-cli",
            "--log-delay",
            "0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("graph-emulator listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        info = httpx.get(f"{url}/_emulator/info").json()
        assert (info["sp_id"], info["job_id"]) == ("sp-cli", "API2AAD.cli.job")
        assert httpx.get(f"{url}/_emulator/faults").json()["rate_limit"] == [2, 1.0]
    finally:
        process.terminate()
        assert process.wait(timeout=5) == 0
