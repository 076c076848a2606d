"""provisioning/changes/openapi.json: served as is, valid OpenAPI 3, and true to the HTTP handlers.

The handlers run in-process behind tests/wsgi_adapter.py (real func.HttpRequest objects, as the
host builds them), against Azurite and the Graph emulator (the ``env`` fixture). Schemathesis
generates requests from the document, positive and negative, for every operation and checks
that no answer is a 5xx and that each one is documented: status code, content type, headers and
body schema. The document's component schemas are checked against the pydantic models of the
bodies (provisioning/changes/models.py).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, get_args

import azure.functions as func
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from pydantic.json_schema import models_json_schema
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from werkzeug.test import Client

from provisioning.changes import models
from provisioning.convert.mapping import BUILTIN, load_mapping
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


# --- the document and the models ---------------------------------------------------------
#
# The document is checked against the models, not generated from them. It is written for the
# people and tools that read it: prose on every schema, examples, the sample mapping's columns
# listed on HrRecord, and OpenAPI 3.0's `nullable`, where pydantic writes JSON Schema 2020-12
# (`anyOf` with `null`). Generating it would mean moving all of that into the models, or a
# merge step that would need checking in turn. Checked, the document stays the one file edited
# by hand, while each structural claim it makes (which components exist, required fields,
# properties, types, enums, bounds) must be the models' own: a model and its documented schema
# cannot change apart.

# What each body is, as the handlers build them (requests as read, answers as written).
BODY_MODELS = [
    (models.ChangeRequest, "validation"),
    (models.ChangeAccepted, "serialization"),
    (models.Change, "serialization"),
    (models.Problem, "serialization"),
]
# Keywords that document rather than constrain; every other keyword must be compared.
PROSE = frozenset({"description", "title", "example", "examples", "default"})
COMPARED = frozenset(
    {"type", "enum", "format", "minimum", "maximum", "minLength", "maxLength", "minItems"}
    | {"maxItems", "pattern"}
)


def model_schemas() -> dict[str, Any]:
    _, schema = models_json_schema(BODY_MODELS, ref_template="#/components/schemas/{model}")
    defs: dict[str, Any] = schema["$defs"]
    return defs


def shape(node: dict[str, Any]) -> dict[str, Any]:
    """What a schema requires, written one way for the document and pydantic: no prose;
    `nullable` for OpenAPI 3.0's keyword and for an `anyOf` with `null`; `const` as a
    one-value enum; references by component name; enums and alternatives in a set order."""
    node = {k: v for k, v in node.items() if k not in PROSE}
    nullable = bool(node.pop("nullable", False))
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for key in ("anyOf", "oneOf"):
        if key not in node:
            continue
        given = node.pop(key)
        options = [o for o in given if o != {"type": "null"}]
        nullable = nullable or len(options) < len(given)
        if key == "anyOf" and len(options) == 1 and not node:
            single = shape(options[0])
            return {**single, "nullable": True} if nullable else single
        node[key] = options
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref":
            out[key] = value.rsplit("/", 1)[-1]
        elif key == "properties":
            out[key] = {name: shape(schema) for name, schema in value.items()}
        elif key == "required":
            out[key] = sorted(value)
        elif key in ("items", "additionalProperties"):
            out[key] = shape(value) if isinstance(value, dict) else value
        elif key == "enum":
            out[key] = sorted(value, key=_canonical)
        elif key in ("anyOf", "oneOf"):
            out[key] = sorted((shape(o) for o in value), key=_canonical)
        else:
            assert key in COMPARED, f"{key}: a keyword this check does not compare yet"
            out[key] = value
    if nullable:
        out["nullable"] = True
    return out


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def test_document_schemas_are_the_models() -> None:
    documented = json.loads(DOCUMENT.read_text(encoding="utf-8"))["components"]["schemas"]
    modelled = model_schemas()
    assert set(documented) == set(modelled), "components without a model, or models undocumented"
    record = dict(documented["HrRecord"])
    # HrRecord lists the sample mapping's columns for the reader; the API takes any mapping's
    # columns, so these are checked against that mapping, the rest against the model.
    columns = record.pop("properties")
    assert set(load_mapping("microsoft-sample").columns) <= set(columns)
    assert all(shape(c) == {"type": "string"} for c in columns.values())
    documented = {**documented, "HrRecord": record}
    for name, schema in modelled.items():
        assert shape(documented[name]) == shape(schema), name


def test_operations_use_the_models() -> None:
    """Each documented body is the component of the model the handler builds it with."""
    document = json.loads(DOCUMENT.read_text(encoding="utf-8"))

    def component(content: dict[str, Any]) -> str:
        (media,) = content.values()
        ref: str = media["schema"]["$ref"]
        return ref.rsplit("/", 1)[-1]

    post = document["paths"]["/changes"]["post"]
    get = document["paths"]["/changes/{id}"]["get"]
    assert component(post["requestBody"]["content"]) == models.ChangeRequest.__name__
    expected = {"202": models.ChangeAccepted.__name__, "200": models.Change.__name__}
    for operation in (post, get):
        for status, response in operation["responses"].items():
            wanted = models.Problem.__name__ if int(status) >= 400 else expected[status]
            assert component(response["content"]) == wanted, status


def test_mapping_names_are_the_built_in_mappings() -> None:
    assert get_args(models.MappingName.__value__) == BUILTIN


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
