"""Entra's users, read page by page through msgraph-sdk (``/users`` with ``$select``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphServiceClient
from msgraph.generated.users.users_request_builder import UsersRequestBuilder

from .client import json_pages

PAGE_SIZE = 999  # the most Graph returns in one page of /users


async def entra_users(
    graph_sdk: GraphServiceClient, select: Sequence[str], *, page_size: int = PAGE_SIZE
) -> AsyncIterator[dict[str, Any]]:
    """Every user of the tenant as a plain dict of the ``select``ed properties (Graph names),
    following ``@odata.nextLink``; one page is alive at a time."""
    query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
        select=list(select), top=page_size
    )
    config = RequestConfiguration(query_parameters=query)
    async for page in json_pages(graph_sdk.request_adapter, graph_sdk.users, config):
        for user in page:
            yield {name: user.get(name) for name in select}
