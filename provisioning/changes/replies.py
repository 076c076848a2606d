"""HTTP answers of the change API: a status, a JSON body, and RFC 9457 problem details."""

from __future__ import annotations

from typing import Any

_PROBLEM = "https://github.com/hr-entra-provisioning/docs/problems/"


class Reply:
    """An HTTP answer: status, JSON body, extra headers."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        self.status = status
        self.body = body
        self.headers = headers or {}

    @property
    def content_type(self) -> str:
        return "application/problem+json" if self.status >= 400 else "application/json"


def problem(status: int, kind: str, title: str, detail: str, **extra: Any) -> Reply:
    return Reply(
        status,
        {"type": _PROBLEM + kind, "title": title, "status": status, "detail": detail, **extra},
    )
