"""All configuration, read once from environment / Functions app settings into one typed object.

Every field is documented in the README (Settings). Names are the field names upper-cased with
the ``PROVISIONING_`` prefix, e.g. ``PROVISIONING_MAPPING``; the storage connection follows the
Functions convention for identity-based connections (``HRSTORAGE__blobServiceUri`` ...).

Build settings with :func:`load_settings`: an invalid setting (or an unknown ``PROVISIONING_*``
name, a misspelling) raises :class:`~provisioning.errors.ConfigurationError` with one line per
problem, each naming the environment variable and what it must be.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from annotated_types import Ge, Gt, Le, Lt
from pydantic import AliasChoices, BeforeValidator, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .convert.bulk import MAX_OPERATIONS
from .errors import ConfigurationError, plain_reason

# Name of the storage connection used by the blob trigger and by our own blob clients.
STORAGE_CONNECTION = "HRSTORAGE"
INBOUND_CONTAINER = "hr-inbound"
RESULTS_CONTAINER = "results"
STATE_CONTAINER = "state"
FLUSH_QUEUE = "provisioning-flush"
ENV_PREFIX = "PROVISIONING_"
FEED_MODES = ("full", "delta")
# Settings whose value is never shown in an error (a connection string carries the account key).
SECRET_SETTINGS = frozenset({"storage_connection_string"})
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})

FeedMode = Literal["full", "delta"]


def parse_feed_modes(text: str) -> dict[str, FeedMode]:
    """``employees=full,contractors=delta`` by feed name; ValueError naming a bad entry."""
    modes: dict[str, FeedMode] = {}
    for item in text.split(","):
        entry = item.strip()
        if not entry:
            continue
        name, equals, mode = (part.strip() for part in entry.partition("="))
        shape = "entries are feed=full or feed=delta, comma-separated"
        if not equals:
            raise ValueError(f'entry "{_shown(entry)}" has no "=" ({shape})')
        if not name:
            raise ValueError(f'entry "{_shown(entry)}" names no feed ({shape})')
        if mode not in FEED_MODES:
            raise ValueError(f'entry "{_shown(entry)}": the mode must be full or delta')
        if name in modes and modes[name] != mode:
            raise ValueError(f'feed "{_shown(name)}" is listed twice, with different modes')
        modes[name] = mode  # type: ignore[assignment]
    return modes


def _comma_separated(value: Any) -> Any:
    """A comma-separated app setting as a set of its non-empty entries (values given from code,
    already a collection, pass as they are)."""
    if isinstance(value, str):
        return frozenset(item.strip() for item in value.split(",") if item.strip())
    return value


def _feed_modes(value: Any) -> Any:
    # Kept as sorted (feed, mode) pairs: settings are hashable (frozen), a dict is not.
    if isinstance(value, str):
        value = parse_feed_modes(value)
    return tuple(sorted(value.items())) if isinstance(value, dict) else value


def _lower_ids(value: Any) -> Any:
    # Client ids are GUIDs, whose case carries no meaning.
    value = _comma_separated(value)
    return frozenset(str(item).lower() for item in value) if isinstance(value, frozenset) else value


# Comma-separated settings are parsed once, here, into typed values (NoDecode: not as JSON).
FeedModes = Annotated[tuple[tuple[str, FeedMode], ...], NoDecode, BeforeValidator(_feed_modes)]
CommaSeparated = Annotated[frozenset[str], NoDecode, BeforeValidator(_comma_separated)]
ClientIds = Annotated[frozenset[str], NoDecode, BeforeValidator(_lower_ids)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, allow_inf_nan=False
    )

    # --- conversion ---
    # Built-in mapping name (microsoft-sample, hr-suite) or path to a YAML/JSON mapping file.
    mapping: str = "microsoft-sample"
    # Input format; by default it is chosen from the file extension.
    input_format: Literal["csv", "json", "jsonl", "xlsx"] | None = None
    # Operations per bulk request (Graph allows at most 50).
    batch_size: int = Field(default=MAX_OPERATIONS, ge=1, le=MAX_OPERATIONS)

    # --- joiners, movers, leavers ---
    # Feed modes by feed (sub-folder of hr-inbound), e.g. "employees=full,contractors=delta".
    feed_modes: FeedModes = ()
    # Mode of feeds not listed: full (the file is the whole workforce) or delta (changes only).
    default_feed_mode: FeedMode = "delta"
    # Send every valid record, changed or not (e.g. after changing the mapping).
    full_send: bool = False
    # A worker never provisioned whose first record is already inactive (a leaver, or a
    # pre-hire marked inactive): false skips them (counted in the plan as "skipped"), true
    # creates them as disabled accounts.
    create_inactive_joiners: bool = False
    # Hold a joiner whose hire date is further ahead than this many days.
    hire_lookahead_days: int = Field(default=14, ge=0)
    # Time zone in which HR dates (hire, termination) are read.
    hr_timezone: str = "UTC"
    # Accidental-leaver guard: a run disabling more than max(count, percent of the feed's
    # active workers) disables nobody until approved.
    leaver_threshold_percent: float = Field(default=5.0, ge=0)
    leaver_threshold_count: int = Field(default=50, ge=0)

    # --- HTTP changes (Logic Apps) ---
    # Client ids (app ids) allowed to call when Easy Auth identifies the caller; comma-separated.
    allowed_client_ids: ClientIds = frozenset()
    # Calls arriving within this many seconds are sent together in full bulk requests.
    coalesce_seconds: float = Field(default=2.0, ge=0)

    # --- Microsoft Graph ---
    # Object id of the API-driven provisioning app's service principal.
    service_principal_id: str = ""
    # Provisioning job id (API2AAD.<hex>.<guid> or API2AD.<...>).
    job_id: str = ""
    # Graph root including the version; a loopback http URL is allowed for the emulator.
    graph_url: str = "https://graph.microsoft.com/v1.0"
    # auto: managed identity when the Functions host provides one (IDENTITY_ENDPOINT),
    # otherwise DefaultAzureCredential (developer sign-in).
    credential: Literal["auto", "managedidentity", "default"] = "auto"
    # Client id of a user-assigned managed identity; empty for the system-assigned one.
    managed_identity_client_id: str = ""

    # --- pacing and retries of bulkUpload ---
    # At most this many requests per window (Entra documents 40 per 5 seconds).
    rate_limit_requests: int = Field(default=40, ge=1)
    rate_limit_window_seconds: float = Field(default=5.0, gt=0)
    # Attempts per bulk request on 429, 5xx, timeouts and dropped connections.
    max_attempts: int = Field(default=8, ge=1)
    # Exponential backoff: base * 2^(attempt-1), capped, with jitter; Retry-After wins if sent.
    retry_base_seconds: float = Field(default=2.0, ge=0)
    retry_max_seconds: float = Field(default=300.0, ge=0)
    # Longest single wait before a send (Retry-After, backoff or the pacing penalty); a longer
    # one ends the batch "failed" (the run is interrupted and resumes later) instead of holding
    # the run's claim, e.g. for the day-long Retry-After of an exhausted daily quota.
    max_wait_seconds: float = Field(default=300.0, ge=1)
    # Pacing is shared by every process through state/pace.json: windows are this much longer
    # than Graph's, for the spread of the time a request takes to reach Graph.
    pace_margin_seconds: float = Field(default=0.25, ge=0)
    # A read or write of state/pace.json slower than this makes the process pace itself ...
    pace_storage_timeout_seconds: float = Field(default=2.0, gt=0)
    # ... at this share of the limit, for a while, until storage answers again.
    pace_fallback_share: float = Field(default=0.25, gt=0, le=1)
    # Graph answered 500 "bucket full": every sender stops this long (Microsoft: 5-10 minutes).
    bucket_full_pause_minutes: float = Field(default=10.0, gt=0)
    # Timeout of one bulkUpload call.
    request_timeout_seconds: float = Field(default=60.0, gt=0)

    # --- scheduled reconciliation (timer) ---
    # NCRONTAB schedule of the reconciliation timer (six fields, seconds first).
    reconcile_schedule: str = "0 */10 * * * *"
    # A record with no provisioning-log entry this long after Graph accepted it is unconfirmed.
    outcome_timeout_minutes: int = Field(default=120, ge=1)
    # Sends of one record in all (first send included) when Entra reports a transient failure.
    max_record_attempts: int = Field(default=3, ge=1)
    # Provisioning-log reads (GET /auditLogs/provisioning) allowed per window, for the tenant:
    # Graph throttles identity and access reports at 5 requests per 10 s per app per tenant.
    log_read_requests: int = Field(default=5, ge=1)
    log_read_window_seconds: float = Field(default=10.0, gt=0)
    # Each outcome pass re-reads this much of the log before its checkpoint, for entries that
    # became visible late (their activityDateTime is older than entries already read).
    log_overlap_seconds: float = Field(default=60.0, ge=0)
    # What one reconciliation pass may take; its outcome step stops reading the log before
    # then and goes on in the next pass (the Functions timeout must be longer).
    reconcile_budget_seconds: float = Field(default=480.0, gt=0)
    # Follow-up sends of a worker whose manager Entra could not resolve, once that manager
    # exists in Entra; after this many the link is reported and left alone.
    max_manager_followups: int = Field(default=3, ge=0)
    # Extra provisioning-log error codes to treat as transient (comma-separated).
    transient_error_codes: CommaSeparated = frozenset()
    # Attempts at one dropped file before it is moved to hr-inbound/failed/.
    max_file_attempts: int = Field(default=5, ge=1)
    # Hours between drift reports; 0 turns the drift report off.
    drift_interval_hours: float = Field(default=24.0, ge=0)
    # Re-send the HR record of workers whose Entra account drifted from it.
    drift_auto_fix: bool = False
    # bulkUpload calls allowed per 24 hours (2,000 with Entra ID P1/P2, 6,000 with Governance).
    daily_call_quota: int = Field(default=2000, ge=1)
    # Warn when the calls of the last 24 hours reach this percent of the quota.
    quota_warn_percent: float = Field(default=80.0, ge=0, le=100)

    # Lease on a run's claim: how long a dead instance blocks a retry (Azure allows 15-60).
    lease_seconds: int = Field(default=60, ge=15, le=60)

    # --- storage (identity-based connection, or a connection string for local use) ---
    storage_connection_string: str = Field(
        default="", validation_alias=AliasChoices(STORAGE_CONNECTION)
    )
    storage_blob_service_uri: str = Field(
        default="", validation_alias=AliasChoices(f"{STORAGE_CONNECTION}__blobServiceUri")
    )
    storage_queue_service_uri: str = Field(
        default="", validation_alias=AliasChoices(f"{STORAGE_CONNECTION}__queueServiceUri")
    )
    storage_client_id: str = Field(
        default="", validation_alias=AliasChoices(f"{STORAGE_CONNECTION}__clientId")
    )

    @field_validator("input_format", mode="before")
    @classmethod
    def _empty_format_is_none(cls, value: Any) -> Any:
        # An app setting present but empty means the default: from the file extension.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("hr_timezone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not a known IANA time zone (e.g. UTC, Europe/Paris)") from None
        return value

    @field_validator("graph_url")
    @classmethod
    def _graph_root(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            host = parts.hostname
        except ValueError:
            host = None
        if host and (parts.scheme == "https" or (parts.scheme == "http" and host in _LOOPBACK)):
            return value
        raise ValueError(
            "must be an https URL with the Graph version, e.g. https://graph.microsoft.com/v1.0 "
            "(plain http only on a loopback address, for the emulator)"
        )

    def feed_mode(self, feed: str) -> FeedMode:
        return dict(self.feed_modes).get(feed, self.default_feed_mode)

    @property
    def graph_configured(self) -> bool:
        return bool(self.service_principal_id and self.job_id)


def env_name(field: str) -> str:
    """The environment variable (app setting) of a Settings field."""
    info = Settings.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    if isinstance(alias, str):
        return alias
    return ENV_PREFIX + field.upper()


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (``overrides``: by field name, they win). Every problem,
    not only the first, is reported in one ConfigurationError: one line each, joined by "; "."""
    problems: list[str] = []
    known = {env_name(field): field for field in Settings.model_fields}
    values: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in Settings.model_fields:
            problems.append(f"{_shown(key)}: not a setting")
        elif Settings.model_fields[key].validation_alias is not None:
            values[env_name(key)] = value  # an aliased field is given by its alias only
        else:
            values[key] = value
    try:
        settings: Settings | None = Settings(**values)
    except ValidationError as exc:
        settings = None
        for error in exc.errors():
            line = _describe(error)
            if line not in problems:
                problems.append(line)
    problems.extend(_unknown_names(os.environ, known))
    if problems or settings is None:
        raise ConfigurationError("; ".join(problems))
    return settings


def _unknown_names(environ: Mapping[str, str], known: Mapping[str, str]) -> list[str]:
    """PROVISIONING_* variables that are no setting: a misspelt name would be ignored silently
    and its setting left at the default."""
    names = {name.upper() for name in known}
    problems = []
    for variable in sorted(environ):
        upper = variable.upper()
        if upper.startswith(ENV_PREFIX) and upper not in names:
            close = difflib.get_close_matches(upper, sorted(names), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"{_shown(variable)}: not a setting{hint}")
    return problems


def _describe(error: Any) -> str:
    """One line for one pydantic error: the variable, its value (unless secret), what it must be."""
    loc = error.get("loc") or ("?",)
    field = str(loc[0])
    # An aliased field's errors are located by its alias (HRSTORAGE...).
    field = next((f for f in Settings.model_fields if env_name(f) == field), field)
    if field in Settings.model_fields:
        name = env_name(field)
        value = error.get("input")
        if field in SECRET_SETTINGS or not isinstance(value, str | int | float):
            subject = name  # a secret, or no text (an override from code): never a repr
        else:
            subject = f"{name}={_shown(str(value))}" if str(value).strip() else f"{name} (empty)"
    else:
        subject = _shown(field)
    return f"{subject}: {plain_reason(error, _bounds(field))}"


def _bounds(field: str) -> str:
    """The allowed range of a numeric field in words ("between 1 and 50"), or ""."""
    if field not in Settings.model_fields:
        return ""
    low = high = ""
    low_open = high_open = False
    for item in Settings.model_fields[field].metadata:
        if isinstance(item, Ge):
            low = _number(item.ge)
        elif isinstance(item, Gt):
            low, low_open = _number(item.gt), True
        elif isinstance(item, Le):
            high = _number(item.le)
        elif isinstance(item, Lt):
            high, high_open = _number(item.lt), True
    if low and high and not low_open and not high_open:
        return f"between {low} and {high}"
    parts = []
    if low:
        parts.append(f"greater than {low}" if low_open else f"at least {low}")
    if high:
        parts.append(f"less than {high}" if high_open else f"at most {high}")
    return " and ".join(parts)


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _shown(text: str, limit: int = 60) -> str:
    """A value fit for one log line: no control characters (no line breaks), bounded length."""
    clean = "".join(c if c.isprintable() else "\N{REPLACEMENT CHARACTER}" for c in text)
    return clean if len(clean) <= limit else clean[: limit - 1] + "\N{HORIZONTAL ELLIPSIS}"
