"""Who may call the HTTP change API (``POST /api/changes``, ``GET /api/changes/{id}``).

Two layers protect those routes. The function key (auth level ``FUNCTION``) is checked by the
Functions host on every call, before any code here runs. App Service Authentication (Easy Auth),
when it is enabled in front of the app, validates the caller's Microsoft Entra token and hands
the caller's claims to the function in the ``X-MS-CLIENT-PRINCIPAL`` header (base64 of a JSON
object); Easy Auth strips that header from incoming requests, so only the platform can set it.

:func:`refusal` is the app's own check on that header against ``PROVISIONING_ALLOWED_CLIENT_IDS``:

- empty allow-list: the function key alone protects the API; the header is not read (without
  Easy Auth it could come from the caller itself);
- allow-list set and no header: ``401``. Failing closed here is what makes the allow-list
  mean something: a deployment that lost Easy Auth must not silently fall back to key-only;
- a header that cannot be read (not base64, not JSON, not the principal's shape): ``401``;
- a caller whose client id (claim ``appid``, or ``azp`` for v2 tokens) is not on the list:
  ``403``.

Refusals are RFC 9457 problem details, like every other error of the API.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Collection

from pydantic import BaseModel, ConfigDict, ValidationError

from .replies import Reply, problem

log = logging.getLogger(__name__)

PRINCIPAL_HEADER = "X-MS-CLIENT-PRINCIPAL"
# Claims naming the calling application: v1 access tokens carry appid, v2 tokens azp.
CLIENT_ID_CLAIMS = ("appid", "azp")
_ALLOW_LIST = "PROVISIONING_ALLOWED_CLIENT_IDS"


class Claim(BaseModel):
    # Strict: a number or a list where a string belongs means the header is not Easy Auth's.
    model_config = ConfigDict(strict=True)

    typ: str
    val: str


class Principal(BaseModel):
    """The decoded ``X-MS-CLIENT-PRINCIPAL``; other keys (``name_typ``, ``role_typ``) are
    ignored."""

    model_config = ConfigDict(strict=True)

    auth_typ: str = ""
    claims: list[Claim]


def parse_principal(header: str) -> Principal | None:
    """The principal in the header, or None when the header cannot be read as one."""
    try:
        # validate=True: without it, characters outside the alphabet are dropped silently and
        # a garbled header could still decode to something.
        decoded = base64.b64decode(header, validate=True)
        # pydantic parses the JSON itself, with a nesting limit, and reports deep nesting as a
        # ValidationError; RecursionError is caught anyway, as json.loads would raise it.
        return Principal.model_validate_json(decoded)
    except (ValueError, binascii.Error, ValidationError, RecursionError):
        return None


def client_id(principal: Principal) -> str | None:
    claims: dict[str, str] = {}
    for claim in principal.claims:
        claims.setdefault(claim.typ.lower(), claim.val)
    for name in CLIENT_ID_CLAIMS:
        if claims.get(name):
            return claims[name]
    return None


def refusal(principal_header: str | None, allowed: Collection[str]) -> Reply | None:
    """None when the call may proceed, else the ``401`` or ``403`` problem to answer.
    ``allowed``: PROVISIONING_ALLOWED_CLIENT_IDS, lower-cased (Settings)."""
    if not allowed:
        return None
    if principal_header is None:
        log.warning("change call refused: no Easy Auth principal while %s is set", _ALLOW_LIST)
        return _unauthenticated(
            f"{_ALLOW_LIST} is set, so Easy Auth (App Service authentication) must identify "
            f"the caller; the request has no {PRINCIPAL_HEADER} header"
        )
    principal = parse_principal(principal_header)
    if principal is None:
        log.warning("change call refused: unreadable %s header", PRINCIPAL_HEADER)
        return _unauthenticated(
            f"the {PRINCIPAL_HEADER} header is not an Easy Auth principal "
            "(base64 of a JSON object with a claims array of {typ, val} strings)"
        )
    caller = client_id(principal)
    if caller is None:
        log.warning("change call refused: the Easy Auth principal names no client id")
        return problem(
            403,
            "forbidden",
            "Caller not allowed",
            f"the caller's token has no appid or azp claim, so it cannot be on {_ALLOW_LIST}",
        )
    if caller.strip().lower() not in allowed:
        log.warning("change call refused: client id %r is not on %s", caller, _ALLOW_LIST)
        return problem(
            403,
            "forbidden",
            "Caller not allowed",
            f"the calling application is not on {_ALLOW_LIST}",
        )
    return None


def _unauthenticated(detail: str) -> Reply:
    reply = problem(401, "unauthenticated", "Caller not identified", detail)
    # RFC 9110: a 401 names the scheme that would authenticate; here an Entra bearer token
    # presented to Easy Auth.
    reply.headers["WWW-Authenticate"] = "Bearer"
    return reply
