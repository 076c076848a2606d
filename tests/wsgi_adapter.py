"""A tiny WSGI app serving the function app's HTTP functions, for tests (schemathesis).

Each WSGI request becomes a real ``azure.functions.HttpRequest`` (method, URL, headers, query
params, route params parsed from the function's route template, body bytes) and is handed to
the user function of the HTTP-triggered function whose route and methods match, as the
Functions host would. Coroutine functions run on one ``asyncio`` event loop kept by the adapter
(the Python worker, too, runs every async function on one loop). The ``func.HttpResponse`` is
returned as the WSGI response, with the content type the Python worker would set; an exception
becomes a 500 (with the traceback as text, for the test's report), as the host would answer.

Not the host: no function keys, no Easy Auth headers are checked or added (send
``X-MS-CLIENT-PRINCIPAL`` yourself to play Easy Auth), and the route prefix is ``/api``.
``run(name, ...)`` calls any other function of the app (a queue trigger, say) on the same loop.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

import azure.functions as func

ROUTE_PREFIX = "/api"
# {name}, {name?}, {name:constraint}, {*name} (catch-all) in a Functions route template
_SEGMENT = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::[^}?]*)?(\??)\}")

# get_functions() may run only once per FunctionApp (it records the function names and refuses
# them the second time), as in the host: the result is kept here, by app. function_app.app's
# is tests/e2e.py's shared ``functions()``, so that every test module shares one indexing.
_FUNCTIONS: dict[int, list[Any]] = {}


def app_functions(app: func.FunctionApp | None = None) -> list[Any]:
    """``app.get_functions()`` (default: ``function_app.app``), computed once per app."""
    import function_app

    if app is None or app is function_app.app:
        from tests.e2e import functions

        return list(functions().values())
    key = id(app)
    if key not in _FUNCTIONS:
        _FUNCTIONS[key] = app.get_functions()
    return _FUNCTIONS[key]


def route_pattern(route: str) -> re.Pattern[str]:
    """A Functions route template (``changes/{id}``) as a regex with named groups."""
    parts: list[str] = []
    position = 0
    for match in _SEGMENT.finditer(route):
        parts.append(re.escape(route[position : match.start()]))
        catch_all, name, optional = match.groups()
        body = f"(?P<{name}>.*)" if catch_all else f"(?P<{name}>[^/]+)"
        if optional:
            # an optional last segment may be absent along with the slash before it
            if parts and parts[-1].endswith("/"):
                parts[-1] = parts[-1][:-1]
                body = f"(?:/{body})?"
            else:
                body += "?"
        parts.append(body)
        position = match.end()
    parts.append(re.escape(route[position:]))
    return re.compile("".join(parts) + "/?", re.IGNORECASE)


@dataclass(frozen=True)
class HttpFunction:
    name: str
    pattern: re.Pattern[str]
    methods: frozenset[str] | None  # None: any method
    user_function: Callable[..., Any]
    arg_name: str


def http_functions(app: func.FunctionApp | None = None) -> list[HttpFunction]:
    found: list[HttpFunction] = []
    for function in app_functions(app):
        trigger = function.get_trigger()
        if trigger is None or trigger.get_binding_name() != "httpTrigger":
            continue
        route = (trigger.route or function.get_function_name()).strip("/")
        methods = frozenset(str(m).upper() for m in trigger.methods) if trigger.methods else None
        found.append(
            HttpFunction(
                function.get_function_name(),
                route_pattern(route),
                methods,
                function.get_user_function(),
                trigger.name,
            )
        )
    return found


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = value
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    return headers


def _url(environ: dict[str, Any]) -> str:
    host = environ.get("HTTP_HOST") or (
        f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '80')}"
    )
    url = f"{environ.get('wsgi.url_scheme', 'http')}://{host}{environ.get('PATH_INFO', '')}"
    if environ.get("QUERY_STRING"):
        url += "?" + environ["QUERY_STRING"]
    return url


def _body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    return stream.read(length) if length > 0 else stream.read()


def _plain(status: int, start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = HTTPStatus(status).phrase.encode()
    start_response(
        f"{status} {HTTPStatus(status).phrase}",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


class FunctionsWsgiApp:
    """WSGI callable for ``app``'s HTTP functions (default: ``function_app.app``)."""

    def __init__(self, app: func.FunctionApp | None = None) -> None:
        self.functions = http_functions(app)
        self.user_functions = {
            f.get_function_name(): f.get_user_function() for f in app_functions(app)
        }
        # one event loop for every call, as the Python worker runs all async functions on one
        self.loop = asyncio.new_event_loop()

    def close(self) -> None:
        self.loop.close()

    def run(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the app's function ``name`` (any trigger) with these arguments, as the host."""
        result = self.user_functions[name](*args, **kwargs)
        if inspect.isawaitable(result):
            result = self.loop.run_until_complete(_awaited(result))
        return result

    def build_request(self, environ: dict[str, Any]) -> tuple[HttpFunction, func.HttpRequest] | int:
        """The matching function and its request, or the HTTP status when none matches."""
        path = environ.get("PATH_INFO", "") or "/"
        if not path.lower().startswith(ROUTE_PREFIX + "/"):
            return 404
        path = path[len(ROUTE_PREFIX) + 1 :]
        method = environ.get("REQUEST_METHOD", "GET").upper()
        status = 404
        for function in self.functions:
            match = function.pattern.fullmatch(path)
            if match is None:
                continue
            if function.methods is not None and method not in function.methods:
                status = 405
                continue
            request = func.HttpRequest(
                method=method,
                url=_url(environ),
                headers=_headers(environ),
                params=dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)),
                route_params={k: v for k, v in match.groupdict().items() if v is not None},
                body=_body(environ),
            )
            return function, request
        return status

    def call(self, function: HttpFunction, request: func.HttpRequest) -> func.HttpResponse:
        result = self.run(function.name, **{function.arg_name: request})
        if isinstance(result, str):
            return func.HttpResponse(result)
        return result

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        found = self.build_request(environ)
        if isinstance(found, int):
            return _plain(found, start_response)
        try:
            response = self.call(*found)
        except Exception:
            # the host answers 500 when a function raises; the traceback helps a failing test
            body = traceback.format_exc().encode()
            start_response(
                "500 Internal Server Error",
                [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
            )
            return [body]
        headers = dict(response.headers.items())
        if not any(name.lower() == "content-type" for name in headers):
            mimetype = response.mimetype
            headers["Content-Type"] = (
                f"{mimetype}; charset={response.charset}"
                if mimetype.startswith("text/")
                else mimetype
            )
        body = response.get_body() or b""
        headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
        headers["Content-Length"] = str(len(body))
        status = response.status_code
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        start_response(f"{status} {phrase}", list(headers.items()))
        return [body]


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
