"""HTTP answers of the change API: a status, a body built from a model of models.py, and RFC
9457 problem details."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .models import Body, Problem, RecordError

_PROBLEM = "https://github.com/hr-entra-provisioning/docs/problems/"


class Reply:
    """An HTTP answer: status, body (one of the API's models), extra headers."""

    def __init__(self, status: int, model: Body, headers: dict[str, str] | None = None):
        self.status = status
        self.model = model
        self.headers = headers or {}

    @property
    def body(self) -> dict[str, Any]:
        """The JSON body; optional fields not set are left out."""
        return self.model.model_dump(mode="json", exclude_unset=True)

    @property
    def content_type(self) -> str:
        return "application/problem+json" if self.status >= 400 else "application/json"


def problem(
    status: int,
    kind: str,
    title: str,
    detail: str,
    *,
    errors: Sequence[RecordError] | None = None,
) -> Reply:
    fields: dict[str, Any] = {"errors": list(errors)} if errors is not None else {}
    return Reply(
        status,
        Problem(type=_PROBLEM + kind, title=title, status=status, detail=detail, **fields),
    )
