"""provisioning/changes/openapi.json: served as is, valid OpenAPI 3, and true to the HTTP handlers.

The handlers run in-process behind tests/wsgi_adapter.py (real func.HttpRequest objects, as the
host builds them), against Azurite and the Graph emulator (the ``env`` fixture). Schemathesis
generates requests from the document, positive and negative, for every operation and checks
that no answer is a 5xx and that each one is documented: status code, content type, headers and
body schema.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from werkzeug.test import Client

from tests.wsgi_adapter import FunctionsWsgiApp

DOCUMENT = Path(__file__).resolve().parent.parent / "provisioning" / "changes" / "openapi.json"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES = 30


@pytest.fixture(scope="module")
def wsgi_app() -> Any:
    app = FunctionsWsgiApp()
    yield app
    app.close()


def test_served_document_is_the_file(wsgi_app: Any) -> None:
    response = Client(wsgi_app).get("/api/openapi.json")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.get_json() == json.loads(DOCUMENT.read_text(encoding="utf-8"))


def test_document_is_valid_openapi_3() -> None:
    document = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    assert document["openapi"] == "3.0.3"
    validate(document)
    operations = {op["operationId"] for path in document["paths"].values() for op in path.values()}
    assert operations == {"SubmitChanges", "GetChange", "GetOpenApiDocument"}


def test_document_examples_match_their_schemas() -> None:
    """Every request and response example validates against its media type's schema."""
    import jsonschema

    document = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    checked = 0
    for path in document["paths"].values():
        for operation in path.values():
            bodies = [operation.get("requestBody", {}), *operation["responses"].values()]
            for body in bodies:
                for media in body.get("content", {}).values():
                    for example in media.get("examples", {}).values():
                        jsonschema.validate(example["value"], json_schema(media["schema"]))
                        checked += 1
    assert checked >= 8


def json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI 3.0 schema of the document as JSON Schema: nullable, component references."""
    components = json.loads(DOCUMENT.read_text(encoding="utf-8"))["components"]["schemas"]
    out = json.loads(json.dumps(schema).replace("#/components/schemas/", "#/$defs/"))
    out["$defs"] = json.loads(json.dumps(components).replace("#/components/schemas/", "#/$defs/"))
    return _nullable(out)


def _nullable(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _nullable(v) for k, v in node.items()}
        if node.pop("nullable", False):
            return {"anyOf": [node, {"type": "null"}]}
        return node
    if isinstance(node, list):
        return [_nullable(v) for v in node]
    return node


def test_handlers_conform_to_the_document(env: dict[str, str], wsgi_app: Any) -> None:
    schema = schemathesis.openapi.from_path(DOCUMENT)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 3
    strategy = st.one_of(
        [
            operation.as_strategy(generation_mode=mode)
            for operation in operations
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        ]
    )
    seen: dict[tuple[str, int], int] = {}

    @settings(
        max_examples=EXAMPLES * len(operations) * 2,  # ~EXAMPLES per operation and mode
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        response = case.call_and_validate(
            app=wsgi_app, base_url="http://localhost/api", checks=CHECKS
        )
        key = (case.operation.label, response.status_code)
        seen[key] = seen.get(key, 0) + 1

    run()
    statuses = {status for _, status in seen}
    # the run reached the handlers, not only the router: accepted, refused and looked-up calls
    assert {202, 400, 404} <= statuses, seen


def _operation(schema: Any, path: str, method: str) -> Any:
    return schema[path][method]


def test_examples_round_trip(env: dict[str, str], wsgi_app: Any) -> None:
    """The document's own examples, sent, retried, looked up before and after the flush."""
    schema = schemathesis.openapi.from_path(DOCUMENT)
    post = _operation(schema, "/changes", "POST")
    get = _operation(schema, "/changes/{id}", "GET")
    base = "http://localhost/api"
    examples = post.definition.raw["requestBody"]["content"]["application/json"]["examples"]
    ids = []
    for name, example in examples.items():
        case = post.Case(body=example["value"], headers={"Idempotency-Key": f"run-{name}"})
        first = case.call_and_validate(app=wsgi_app, base_url=base, checks=CHECKS)
        assert first.status_code == 202, first.text
        body = first.json()
        assert first.headers["location"] == [f"/api/changes/{body['id']}"]
        assert body["duplicate"] is False
        again = case.call_and_validate(app=wsgi_app, base_url=base, checks=CHECKS)
        assert again.status_code == 202
        assert again.json()["duplicate"] is True
        assert again.json()["id"] == body["id"]
        ids.append(body["id"])

    def looked_up(change_id: str) -> dict[str, Any]:
        case = get.Case(path_parameters={"id": change_id})
        response = case.call_and_validate(app=wsgi_app, base_url=base, checks=CHECKS)
        assert response.status_code == 200, response.text
        return response.json()

    assert {looked_up(i)["status"] for i in ids} <= {"queued", "done"}
    wsgi_app.run("flush_changes", func.QueueMessage(body=b"flush"))
    after = [looked_up(i) for i in ids]
    # Examples restating a worker of an earlier example supersede it: only the newest goes.
    assert {c["status"] for c in after} <= {"sent", "done", "superseded"}, after
    sent = [r for c in after for r in c["records"] if r["status"] == "sent"]
    assert sent and all(r["request_id"] for r in sent)
    newest: dict[str, str] = {}
    for change in after:
        for record in change["records"]:
            if record["status"] in ("sent", "superseded"):
                newest[record["externalId"]] = record["status"]
    assert set(newest.values()) == {"sent"}  # the last change of every worker was sent


def _principal(client_id: str) -> str:
    """Easy Auth's X-MS-CLIENT-PRINCIPAL for an application caller."""
    claims = {"auth_typ": "aad", "claims": [{"typ": "appid", "val": client_id}]}
    return base64.b64encode(json.dumps(claims).encode()).decode()


LOGIC_APP = "11111111-1111-1111-1111-111111111111"
# Easy Auth's header for a caller whose client id is not on PROVISIONING_ALLOWED_CLIENT_IDS
STRANGER = _principal("11111111-2222-3333-4444-555555555555")
JSON = {"Content-Type": "application/json"}


def _conforms(response: Any, path: str, method: str, status: int) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/problem+json"
    schema = schemathesis.openapi.from_path(DOCUMENT)
    operation = _operation(schema, path, method)
    if method == "POST":
        case = operation.Case(body={}, media_type="application/json")
    else:
        case = operation.Case(path_parameters={"id": "x"})
    case.validate_response(response, checks=CHECKS[1:])
    assert response.get_json()["status"] == status


@pytest.mark.parametrize(
    ("status", "headers", "body"),
    [
        (415, {"Content-Type": "text/csv"}, b"WorkerID\n1513\n"),
        (413, JSON, b"[" + b" " * (1 << 20) + b"]"),
        (400, JSON, b"[" + b",".join([b"{}"] * 51) + b"]"),
        (400, JSON, b"{not json"),
    ],
    ids=["415-csv", "413-too-large", "400-51-records", "400-not-json"],
)
def test_refusals_are_documented_problems(
    env: dict[str, str], wsgi_app: Any, status: int, headers: dict[str, str], body: bytes
) -> None:
    response = Client(wsgi_app).post("/api/changes", headers=headers, data=body)
    _conforms(response, "/changes", "POST", status)


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize(
    ("status", "principal"),
    [(401, None), (401, "%%%"), (403, STRANGER)],
    ids=["401-no-principal", "401-unreadable-principal", "403-not-allowed"],
)
def test_caller_refusals_are_documented_problems(
    env: dict[str, str],
    wsgi_app: Any,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    status: int,
    principal: str | None,
) -> None:
    """With an allow-list, both operations refuse an unidentified caller (401, with the
    scheme to use) and one not on the list (403), as the document says."""
    monkeypatch.setenv("PROVISIONING_ALLOWED_CLIENT_IDS", LOGIC_APP)
    headers = {**JSON, **({"X-MS-CLIENT-PRINCIPAL": principal} if principal else {})}
    if method == "POST":
        response = Client(wsgi_app).post("/api/changes", headers=headers, data=b"{}")
        _conforms(response, "/changes", "POST", status)
    else:
        response = Client(wsgi_app).get("/api/changes/x", headers=headers)
        _conforms(response, "/changes/{id}", "GET", status)
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_logic_app_sample_calls_the_documented_operations() -> None:
    """infra/logicapp/workflow.json posts what the document describes, as the README says."""
    workflow = json.loads(
        (Path(__file__).resolve().parent.parent / "infra/logicapp/workflow.json").read_text()
    )
    document = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    definition = workflow["definition"]
    assert set(workflow["parameters"]) <= set(definition["parameters"])
    submit = definition["actions"]["Submit_change"]["inputs"]
    assert (submit["method"], submit["uri"].rsplit("/api", 1)[1]) == ("POST", "/changes")
    assert submit["authentication"]["type"] == "ManagedServiceIdentity"
    assert submit["headers"]["Idempotency-Key"] == "@{workflow().run.name}"
    assert set(submit["queries"]) <= {
        p["name"] for p in document["paths"]["/changes"]["post"]["parameters"]
    }
    trigger = definition["triggers"]["When_HR_posts_a_worker"]["inputs"]["schema"]
    record = document["components"]["schemas"]["HrRecord"]["properties"]
    assert set(trigger["properties"]) <= set(record)
    poll = definition["actions"]["If_accepted"]["actions"]["Until_sent"]["actions"]
    assert poll["Get_change_status"]["inputs"]["uri"].rsplit("/api", 1)[1].startswith("/changes/")
