"""Who may call the HTTP change API (provisioning/changes/auth.py): the Easy Auth principal header
against PROVISIONING_ALLOWED_CLIENT_IDS, unit-tested and through the functions themselves (real
func.HttpRequest objects, Azurite for state and the flush queue)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from provisioning.changes.auth import Principal, client_id, parse_principal, refusal
from provisioning.settings import STATE_CONTAINER, Settings
from provisioning.storage import FlushQueue
from tests.columns import worker
from tests.e2e import functions, store


def allowed(setting: str) -> frozenset[str]:
    """PROVISIONING_ALLOWED_CLIENT_IDS as the settings parse it."""
    return Settings(allowed_client_ids=setting).allowed_client_ids


LOGIC_APP = "11111111-1111-1111-1111-111111111111"
OTHER_APP = "22222222-2222-2222-2222-222222222222"
HEADER = "X-MS-CLIENT-PRINCIPAL"
DOCUMENT = Path(__file__).resolve().parent.parent / "provisioning" / "changes" / "openapi.json"


def encoded(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.b64encode(raw).decode()


def principal(*claims: tuple[str, str], auth_typ: str = "aad") -> str:
    """Easy Auth's header for a caller with these (typ, val) claims."""
    return encoded(
        {
            "auth_typ": auth_typ,
            "claims": [{"typ": typ, "val": val} for typ, val in claims],
            "name_typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
            "role_typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
        }
    )


# Headers Easy Auth would never send; each must be a 401, never an exception.
MALFORMED = {
    "null-claims": encoded({"auth_typ": "aad", "claims": None}),
    "numeric-claims": encoded({"auth_typ": "aad", "claims": 5}),
    "string-claims": encoded({"auth_typ": "aad", "claims": "appid"}),
    "missing-claims": encoded({"auth_typ": "aad"}),
    "claim-not-an-object": encoded({"claims": [LOGIC_APP]}),
    "claim-null": encoded({"claims": [None]}),
    "typ-a-list": encoded({"claims": [{"typ": ["appid"], "val": LOGIC_APP}]}),
    "typ-a-number": encoded({"claims": [{"typ": 1, "val": LOGIC_APP}]}),
    "val-a-number": encoded({"claims": [{"typ": "appid", "val": 11111111}]}),
    "val-an-object": encoded({"claims": [{"typ": "appid", "val": {"id": LOGIC_APP}}]}),
    "val-missing": encoded({"claims": [{"typ": "appid"}]}),
    "auth-typ-null": encoded({"auth_typ": None, "claims": []}),
    "json-array": encoded([{"typ": "appid", "val": LOGIC_APP}]),
    "json-string": encoded("appid"),
    "json-null": encoded(None),
    "not-json": encoded(b"{appid: 1111}"),
    "not-utf8": encoded(b"\xff\xfe\xfd"),
    "deeply-nested-array": encoded(b"[" * 100_000),
    "deeply-nested-object": encoded(b'{"claims":' * 100_000),
    "not-base64": "%%%",
    "base64-without-padding": encoded({"claims": []}).rstrip("="),
    "not-ascii": "é" * 8,
    "empty": "",
}


# --- the decision alone ---


def test_empty_allow_list_lets_every_call_through() -> None:
    # The function key alone protects the API; the header is not even read.
    for header in (None, principal(("appid", OTHER_APP)), *MALFORMED.values()):
        assert refusal(header, allowed("")) is None
        assert refusal(header, allowed(" , ")) is None


def test_allow_list_without_principal_fails_closed() -> None:
    reply = refusal(None, allowed(LOGIC_APP))
    assert reply is not None and reply.status == 401
    assert "Easy Auth" in reply.body["detail"] and HEADER in reply.body["detail"]
    assert reply.headers["WWW-Authenticate"] == "Bearer"
    assert reply.content_type == "application/problem+json"


@pytest.mark.parametrize("header", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_principal_is_401(header: str) -> None:
    assert parse_principal(header) is None
    reply = refusal(header, allowed(LOGIC_APP))
    assert reply is not None and reply.status == 401
    assert reply.body["detail"].startswith(f"the {HEADER} header is not an Easy Auth principal")


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        ((("appid", LOGIC_APP),), None),
        ((("azp", LOGIC_APP),), None),  # v2 tokens
        ((("appid", LOGIC_APP.upper()),), None),  # GUIDs: case carries no meaning
        ((("appid", OTHER_APP),), 403),
        ((("appid", OTHER_APP), ("azp", LOGIC_APP)), 403),  # appid names the caller first
        ((("oid", LOGIC_APP), ("aud", LOGIC_APP)), 403),  # other claims name no caller
        ((), 403),
    ],
    ids=["appid", "azp", "upper-case", "other", "appid-first", "no-client-claim", "no-claims"],
)
def test_client_id_decides(claims: tuple[tuple[str, str], ...], status: int | None) -> None:
    reply = refusal(
        principal(*claims), allowed(f" {LOGIC_APP.lower()} , 33333333-0000-0000-0000-0000 ")
    )
    assert (reply.status if reply else None) == status
    if reply:
        assert reply.body["type"].endswith("/forbidden")


def test_principal_model_reads_easy_auth_shape() -> None:
    parsed = parse_principal(principal(("appid", LOGIC_APP), auth_typ="aad"))
    assert isinstance(parsed, Principal) and parsed.auth_typ == "aad"
    assert client_id(parsed) == LOGIC_APP


def test_documented_401_examples_are_what_the_code_answers() -> None:
    """The problem details in provisioning/changes/openapi.json are the function's own words."""
    document = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    answered = [refusal(None, allowed(LOGIC_APP)), refusal("%%%", allowed(LOGIC_APP))]
    for path, method in (("/changes", "post"), ("/changes/{id}", "get")):
        examples = document["paths"][path][method]["responses"]["401"]["content"][
            "application/problem+json"
        ]["examples"]
        documented = [e["value"] for e in examples.values()]
        assert [r.body for r in answered if r] == documented


# --- through the HTTP functions ---


def call(name: str, *, headers: dict[str, str], body: bytes = b"", **kwargs: Any) -> Any:
    request = func.HttpRequest(
        method="POST" if name == "post_changes" else "GET",
        url="http://localhost/api/changes",
        headers=headers,
        params={},
        body=body,
        **kwargs,
    )
    return functions()[name].get_user_function()(request)


def post(headers: dict[str, str] | None = None) -> func.HttpResponse:
    return call(
        "post_changes",
        headers={"Content-Type": "application/json", **(headers or {})},
        body=json.dumps(worker(1)).encode(),
    )


def problem_of(response: func.HttpResponse, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_body()
    assert response.mimetype == "application/problem+json"
    reply: dict[str, Any] = json.loads(response.get_body())
    assert reply["status"] == status
    return reply


def nothing_queued() -> bool:
    outbox = list(store().list(STATE_CONTAINER, "outbox/"))
    return not outbox and FlushQueue.from_settings(Settings()).pending() == 0


@pytest.fixture
def allow_list(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("PROVISIONING_ALLOWED_CLIENT_IDS", LOGIC_APP)
    return LOGIC_APP


@pytest.mark.parametrize("header", list(MALFORMED.values()), ids=list(MALFORMED))
def test_post_with_malformed_principal_is_401_and_queues_nothing(
    allow_list: str, header: str
) -> None:
    reply = problem_of(post({HEADER: header}), 401)
    assert reply["title"] == "Caller not identified"
    assert nothing_queued()


def test_post_without_principal_is_401_and_queues_nothing(allow_list: str) -> None:
    response = post()
    reply = problem_of(response, 401)
    assert "Easy Auth" in reply["detail"]
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert nothing_queued()


def test_post_from_another_client_is_403_and_queues_nothing(allow_list: str) -> None:
    problem_of(post({HEADER: principal(("appid", OTHER_APP))}), 403)
    assert nothing_queued()


def test_post_from_the_allowed_client_is_accepted(allow_list: str) -> None:
    response = post({HEADER: principal(("azp", LOGIC_APP))})
    assert response.status_code == 202, response.get_body()
    assert not nothing_queued()


def test_get_change_is_guarded_the_same_way(allow_list: str) -> None:
    change = json.loads(post({HEADER: principal(("appid", LOGIC_APP))}).get_body())["id"]

    def get(headers: dict[str, str]) -> func.HttpResponse:
        return call("get_change", headers=headers, route_params={"id": change})

    assert get({HEADER: principal(("appid", LOGIC_APP))}).status_code == 200
    problem_of(get({}), 401)
    problem_of(get({HEADER: MALFORMED["deeply-nested-array"]}), 401)
    problem_of(get({HEADER: principal(("appid", OTHER_APP))}), 403)


def test_without_allow_list_no_principal_is_needed(env: dict[str, str]) -> None:
    assert post().status_code == 202
