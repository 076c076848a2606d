"""Settings tell the truth: every invalid setting is one line naming its environment variable,
what it must be, and (unless secret) the value given; the command line exits 2 without a
traceback, and a function logs the line once and neither raises (blob drop, timer) nor answers
anything but the 500 problem (HTTP)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import azure.functions as func
import jsonschema
import pytest

from provisioning.errors import ConfigurationError, ProvisioningError
from provisioning.settings import Settings, load_settings, parse_feed_modes
from tests.e2e import functions, trigger_argument

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "csv-with-2-records.csv"
LOCAL_STORAGE = "UseDevelopmentStorage=true"

# (variable, value, words the line must carry)
BAD = [
    ("PROVISIONING_BATCH_SIZE", "100", "PROVISIONING_BATCH_SIZE=100: must be between 1 and 50"),
    ("PROVISIONING_BATCH_SIZE", "0", "PROVISIONING_BATCH_SIZE=0: must be between 1 and 50"),
    ("PROVISIONING_BATCH_SIZE", "ten", "must be a whole number, between 1 and 50"),
    ("PROVISIONING_HR_TIMEZONE", "Mars/Base", "Mars/Base: not a known IANA time zone"),
    ("PROVISIONING_FEED_MODES", "employees=ful", 'entry "employees=ful": the mode must be full'),
    ("PROVISIONING_FEED_MODES", "employees=full,contractors", 'entry "contractors" has no "="'),
    ("PROVISIONING_FEED_MODES", "=full", "names no feed"),
    ("PROVISIONING_DEFAULT_FEED_MODE", "fulll", "must be one of full or delta"),
    ("PROVISIONING_INPUT_FORMAT", "xls", "must be one of csv, json, jsonl or xlsx"),
    ("PROVISIONING_FULL_SEND", "maybe", "PROVISIONING_FULL_SEND=maybe: must be true or false"),
    ("PROVISIONING_LEASE_SECONDS", "90", "must be between 15 and 60"),
    ("PROVISIONING_QUOTA_WARN_PERCENT", "101", "must be between 0 and 100"),
    ("PROVISIONING_RATE_LIMIT_WINDOW_SECONDS", "0", "must be greater than 0"),
    ("PROVISIONING_COALESCE_SECONDS", "-1", "must be at least 0"),
    ("PROVISIONING_COALESCE_SECONDS", "nan", "must be a finite number"),
    ("PROVISIONING_GRAPH_URL", "http://graph.microsoft.com/v1.0", "must be an https URL"),
    ("PROVISIONING_BACH_SIZE", "20", "not a setting (did you mean PROVISIONING_BATCH_SIZE?)"),
]


@pytest.fixture(autouse=True)
def _no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from the defaults: no PROVISIONING_* or HRSTORAGE* variable."""
    for name in list(os.environ):
        if name.upper().startswith(("PROVISIONING_", "HRSTORAGE")):
            monkeypatch.delenv(name)


def _problem(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> str:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    return str(raised.value)


@pytest.mark.parametrize(("name", "value", "expected"), BAD, ids=[f"{n}={v}" for n, v, _ in BAD])
def test_each_bad_setting_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    message = _problem(monkeypatch, name, value)
    assert message.startswith(name)
    assert expected in message
    assert "\n" not in message
    # Human words, no pydantic wording and no Python reprs.
    for raw in ("Input should", "validation error", "{", "}", "[", "]", "'"):
        assert raw not in message


def test_every_problem_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISIONING_BATCH_SIZE", "100")
    monkeypatch.setenv("PROVISIONING_HR_TIMEZONE", "Mars/Base")
    monkeypatch.setenv("PROVISIONING_MAX_ATTEMPTS", "0")
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    lines = str(raised.value).split("; ")
    assert [line.split("=")[0] for line in lines] == [
        "PROVISIONING_BATCH_SIZE",
        "PROVISIONING_HR_TIMEZONE",
        "PROVISIONING_MAX_ATTEMPTS",
    ]
    assert isinstance(raised.value, ProvisioningError)


def test_a_secret_is_named_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings(storage_connection_string={"AccountKey": "hunter2"})
    assert str(raised.value) == "HRSTORAGE: must be text"


def test_a_value_never_breaks_the_line(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _problem(monkeypatch, "PROVISIONING_HR_TIMEZONE", "Europe/\nParis" + "x" * 200)
    assert "\n" not in message and len(message) < 200


def test_valid_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISIONING_BATCH_SIZE", "50")
    monkeypatch.setenv("PROVISIONING_HR_TIMEZONE", "Europe/Paris")
    monkeypatch.setenv("PROVISIONING_FEED_MODES", " employees = full , contractors=delta,")
    monkeypatch.setenv("PROVISIONING_INPUT_FORMAT", "")  # present but empty: the default
    monkeypatch.setenv("PROVISIONING_GRAPH_URL", "http://127.0.0.1:8080/v1.0")  # the emulator
    monkeypatch.setenv("HRSTORAGE", LOCAL_STORAGE)
    settings = load_settings(lease_seconds=15)
    assert (settings.batch_size, settings.hr_timezone, settings.lease_seconds) == (
        50,
        "Europe/Paris",
        15,
    )
    assert settings.input_format is None
    assert settings.feed_mode("employees") == "full"
    assert settings.feed_mode("contractors") == "delta"
    assert settings.feed_mode("others") == settings.default_feed_mode
    assert settings.storage_connection_string == LOCAL_STORAGE
    assert load_settings(storage_connection_string="x").storage_connection_string == "x"
    assert parse_feed_modes("a=full,b=delta") == {"a": "full", "b": "delta"}
    assert isinstance(settings, Settings)


def test_comma_separated_settings_are_parsed_once_into_typed_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROVISIONING_FEED_MODES", "employees=full, contractors=delta")
    monkeypatch.setenv("PROVISIONING_ALLOWED_CLIENT_IDS", " AbC-1 ,def-2,, abc-1 ")
    monkeypatch.setenv("PROVISIONING_TRANSIENT_ERROR_CODES", "SystemForCrossDomain,Timeout ")
    settings = load_settings()
    assert settings.feed_modes == (("contractors", "delta"), ("employees", "full"))
    assert settings.allowed_client_ids == frozenset({"abc-1", "def-2"})
    assert settings.transient_error_codes == frozenset({"SystemForCrossDomain", "Timeout"})
    # Given from code as typed values, they are taken as they are; an override is checked too.
    assert load_settings(feed_modes={"hr": "full"}).feed_mode("hr") == "full"
    with pytest.raises(ConfigurationError, match=r"^PROVISIONING_FEED_MODES.*full or delta"):
        load_settings(feed_modes="hr=fulll")
    hash(settings)  # settings stay hashable: the functions cache what they build from them


def test_an_override_that_is_no_setting_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"^batchsize: not a setting$"):
        load_settings(batchsize=3)


# --- the command line, as a person runs it --------------------------------------------------


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.upper().startswith(("PROVISIONING_", "HRSTOR"))
    }
    return subprocess.run(
        [sys.executable, "-m", "provisioning", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


CLI_BAD = [BAD[0], BAD[3], BAD[4], BAD[9], BAD[16]]


@pytest.mark.parametrize(
    ("name", "value", "expected"), CLI_BAD, ids=[f"{n}={v}" for n, v, _ in CLI_BAD]
)
def test_cli_bad_setting_one_line_exit_2(name: str, value: str, expected: str) -> None:
    done = _cli("validate", str(SAMPLE), **{name: value})
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: {name}")
    assert expected in lines[0]
    assert done.stdout == ""


def test_cli_all_problems_on_one_line_even_on_a_narrow_pipe() -> None:
    done = _cli(
        "validate",
        str(SAMPLE),
        PROVISIONING_HR_TIMEZONE="Mars/Base",
        PROVISIONING_FEED_MODES="employees=ful",
        COLUMNS="40",
    )
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1
    assert "PROVISIONING_HR_TIMEZONE" in done.stderr and "PROVISIONING_FEED_MODES" in done.stderr


def test_cli_missing_graph_settings_one_line_exit_2() -> None:
    done = _cli("release", HRSTORAGE=LOCAL_STORAGE)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        "error: PROVISIONING_SERVICE_PRINCIPAL_ID: not set (needed to send: the object id of the "
        "provisioning app's service principal); PROVISIONING_JOB_ID: not set (needed to send: "
        "the provisioning app's job id)"
    ]


def test_cli_missing_storage_one_line_exit_2() -> None:
    done = _cli("approve", "20260101T000000-abcdef12-123456")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("error: HRSTORAGE__blobServiceUri: not set")


# --- the functions, called as the host calls them -------------------------------------------


def _errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


def _one_error_line(caplog: pytest.LogCaptureFixture, *words: str) -> str:
    errors = _errors(caplog)
    assert len(errors) == 1, [r.getMessage() for r in errors]
    record = errors[0]
    assert record.exc_info is None  # no traceback
    line = record.getMessage()
    assert "\n" not in line
    for word in words:
        assert word in line
    return line


def test_blob_drop_with_a_bad_setting_logs_one_line_and_returns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PROVISIONING_BATCH_SIZE", "100")
    monkeypatch.setenv("HRSTORAGE", LOCAL_STORAGE)
    blob = trigger_argument("workers.csv")  # nothing is read: the settings stop it first
    function = functions()["hr_file_dropped"].get_user_function()
    with caplog.at_level(logging.INFO):
        assert asyncio.run(function(blob)) is None
    line = _one_error_line(caplog, "hr-inbound/workers.csv", "PROVISIONING_BATCH_SIZE=100")
    assert "between 1 and 50" in line


def test_timer_with_a_bad_setting_logs_one_line_and_returns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PROVISIONING_HR_TIMEZONE", "Mars/Base")
    function = functions()["reconcile"].get_user_function()
    with caplog.at_level(logging.INFO):
        assert asyncio.run(function(func.timer.TimerRequest())) is None
    _one_error_line(caplog, "PROVISIONING_HR_TIMEZONE=Mars/Base")


def test_timer_without_graph_settings_logs_one_line_and_returns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HRSTORAGE", LOCAL_STORAGE)
    monkeypatch.setenv("PROVISIONING_SERVICE_PRINCIPAL_ID", "00000000-0000-0000-0000-000000000001")
    function = functions()["reconcile"].get_user_function()
    with caplog.at_level(logging.INFO):
        assert asyncio.run(function(func.timer.TimerRequest(past_due=True))) is None
    line = _one_error_line(caplog, "PROVISIONING_JOB_ID: not set")
    assert "PROVISIONING_SERVICE_PRINCIPAL_ID" not in line


def test_http_with_a_bad_setting_answers_the_500_problem(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.test_openapi import json_schema

    monkeypatch.setenv("HRSTORAGE", LOCAL_STORAGE)
    monkeypatch.setenv("PROVISIONING_FEED_MODES", "api=sometimes")
    request = func.HttpRequest(
        "POST",
        "http://localhost/api/changes",
        headers={"Content-Type": "application/json"},
        body=b'{"records": []}',
    )
    with caplog.at_level(logging.INFO):
        response = functions()["post_changes"].get_user_function()(request)
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    body = json.loads(response.get_body())
    jsonschema.validate(body, json_schema({"$ref": "#/components/schemas/Problem"}))
    assert body["type"].endswith("/configuration")
    assert body["detail"].startswith("PROVISIONING_FEED_MODES=api=sometimes: ")
    line = _one_error_line(caplog, "PROVISIONING_FEED_MODES")
    assert body["detail"] in line

    caplog.clear()
    monkeypatch.delenv("PROVISIONING_FEED_MODES")
    monkeypatch.delenv("HRSTORAGE")
    monkeypatch.setenv("HRSTORAGE__blobServiceUri", "https://account.blob.core.windows.net")
    get = func.HttpRequest(
        "GET", "http://localhost/api/changes/x", route_params={"id": "x"}, body=b""
    )
    with caplog.at_level(logging.INFO):
        response = functions()["get_change"].get_user_function()(get)
    assert response.status_code == 500
    assert json.loads(response.get_body())["detail"].startswith("HRSTORAGE__queueServiceUri")
    _one_error_line(caplog, "HRSTORAGE__queueServiceUri: not set")


def test_flush_with_a_bad_setting_logs_one_line_and_keeps_its_message(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from provisioning.functions.http_trigger import FlushNotConfigured

    monkeypatch.setenv("PROVISIONING_COALESCE_SECONDS", "soon")
    function = functions()["flush_changes"].get_user_function()
    message: Any = func.QueueMessage(id="1", body=b"flush")
    with caplog.at_level(logging.INFO), pytest.raises(FlushNotConfigured) as raised:
        asyncio.run(function(message))
    # Raised so that the host delivers the message again (then keeps it in the poison queue).
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    _one_error_line(caplog, "PROVISIONING_COALESCE_SECONDS=soon: must be a number")
