"""Entra's users, read page by page through msgraph-sdk (``/users`` with ``$select``, and
``$expand=manager`` for the drift report's manager check), and users looked up by employeeId.

Limits Microsoft documents, kept here:

- a page of ``/users`` holds at most 999 users, and at most 100 when ``$expand`` is used
  (known issues, "$expand: for directory objects, returns a maximum of 100 objects");
- ``employeeId`` supports ``$filter`` with ``eq`` and ``in`` (user resource); ``in`` takes at
  most 15 values outside advanced queries (filter query parameter), and ``$expand`` is not
  supported with advanced queries, so lookups go 15 ids a request without them.

A lookup's URL names employeeIds (HR ids) in its ``$filter``, and httpx logs the URL of every
request at INFO (which the Functions host ships to Application Insights): the query of a
``/users`` request is cut from those log records (:class:`_UsersQueryFilter`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import httpx
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphServiceClient
from msgraph.generated.users.users_request_builder import UsersRequestBuilder

from .client import json_pages

PAGE_SIZE = 999  # the most Graph returns in one page of /users
EXPAND_PAGE_SIZE = 100  # the most it returns in one page when a relationship is expanded
IN_LIMIT = 15  # values of one ``in`` clause of $filter (without advanced queries)
MANAGER = "manager"


class _UsersQueryFilter(logging.Filter):
    """Cuts the query of ``/users`` URLs from httpx's request log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(
            isinstance(a, httpx.URL) and a.path.rstrip("/").endswith("/users") for a in record.args
        ):
            record.args = tuple(
                a.copy_with(query=None)
                if isinstance(a, httpx.URL) and a.path.rstrip("/").endswith("/users")
                else a
                for a in record.args
            )
        return True


def _quiet_users_queries() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _UsersQueryFilter) for f in logger.filters):
        logger.addFilter(_UsersQueryFilter())


_quiet_users_queries()


async def entra_users(
    graph_sdk: GraphServiceClient,
    select: Sequence[str],
    *,
    page_size: int = PAGE_SIZE,
    expand_manager: bool = False,
) -> AsyncIterator[dict[str, Any]]:
    """Every user of the tenant as a plain dict of the ``select``ed properties (Graph names),
    following ``@odata.nextLink``; one page is alive at a time.

    ``expand_manager``: also ``manager``, the object id of the user's manager (None without
    one). Graph gives the expanded manager's default properties only, which leave employeeId
    out (it is returned only on $select), so the id is all that is kept of it."""
    if expand_manager:
        page_size = min(page_size, EXPAND_PAGE_SIZE)
    query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
        select=list(select), top=page_size, expand=[MANAGER] if expand_manager else None
    )
    config = RequestConfiguration(query_parameters=query)
    async for page in json_pages(graph_sdk.request_adapter, graph_sdk.users, config):
        for user in page:
            out = {name: user.get(name) for name in select}
            if expand_manager:
                manager = user.get(MANAGER)
                out[MANAGER] = manager.get("id") if isinstance(manager, dict) else None
            yield out


def odata_string(value: str) -> str:
    """``value`` as an OData string literal (a quote inside is doubled)."""
    return "'" + value.replace("'", "''") + "'"


async def users_by_employee_id(
    graph_sdk: GraphServiceClient, employee_ids: Iterable[str]
) -> dict[str, str]:
    """The users whose employeeId is one of ``employee_ids``: {employeeId casefolded: object
    id}. Graph compares employeeId without case, so the keys are casefolded."""
    wanted = sorted({e for e in employee_ids if e})
    found: dict[str, str] = {}
    for start in range(0, len(wanted), IN_LIMIT):
        chunk = wanted[start : start + IN_LIMIT]
        query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
            select=["id", "employeeId"],
            filter=f"employeeId in ({', '.join(odata_string(e) for e in chunk)})",
            top=PAGE_SIZE,
        )
        config = RequestConfiguration(query_parameters=query)
        async for page in json_pages(graph_sdk.request_adapter, graph_sdk.users, config):
            for user in page:
                employee_id, object_id = user.get("employeeId"), user.get("id")
                if isinstance(employee_id, str) and isinstance(object_id, str):
                    found[employee_id.casefold()] = object_id
    return found
