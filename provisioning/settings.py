"""All configuration, read once from environment / Functions app settings into one typed object.

Every field is documented in the README (Settings). Names are the field names upper-cased with
the ``PROVISIONING_`` prefix, e.g. ``PROVISIONING_MAPPING``; the storage connection follows the
Functions convention for identity-based connections (``HRSTORAGE__blobServiceUri`` ...).
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .bulk import MAX_OPERATIONS

# Name of the storage connection used by the blob trigger and by our own blob clients.
STORAGE_CONNECTION = "HRSTORAGE"
INBOUND_CONTAINER = "hr-inbound"
RESULTS_CONTAINER = "results"
STATE_CONTAINER = "state"
FLUSH_QUEUE = "provisioning-flush"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROVISIONING_", extra="ignore", frozen=True)

    # --- conversion ---
    # Built-in mapping name (microsoft-sample, hr-suite) or path to a YAML/JSON mapping file.
    mapping: str = "microsoft-sample"
    # Input format; by default it is chosen from the file extension.
    input_format: Literal["csv", "json", "jsonl", "xlsx"] | None = None
    # Operations per bulk request (Graph allows at most 50).
    batch_size: int = Field(default=MAX_OPERATIONS, ge=1, le=MAX_OPERATIONS)

    # --- joiners, movers, leavers ---
    # Feed modes by feed (sub-folder of hr-inbound), e.g. "employees=full,contractors=delta".
    feed_modes: str = ""
    # Mode of feeds not listed: full (the file is the whole workforce) or delta (changes only).
    default_feed_mode: Literal["full", "delta"] = "delta"
    # Send every valid record, changed or not (e.g. after changing the mapping).
    full_send: bool = False
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
    allowed_client_ids: str = ""
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
    # Timeout of one bulkUpload call.
    request_timeout_seconds: float = Field(default=60.0, gt=0)

    # --- scheduled reconciliation (timer) ---
    # NCRONTAB schedule of the reconciliation timer (six fields, seconds first).
    reconcile_schedule: str = "0 */10 * * * *"
    # A record with no provisioning-log entry this long after Graph accepted it is unconfirmed.
    outcome_timeout_minutes: int = Field(default=120, ge=1)
    # Sends of one record in all (first send included) when Entra reports a transient failure.
    max_record_attempts: int = Field(default=3, ge=1)
    # Extra provisioning-log error codes to treat as transient (comma-separated).
    transient_error_codes: str = ""
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

    def feed_mode(self, feed: str) -> Literal["full", "delta"]:
        for item in self.feed_modes.split(","):
            name, _, mode = item.partition("=")
            if name.strip() == feed and mode.strip() in ("full", "delta"):
                return mode.strip()  # type: ignore[return-value]
        return self.default_feed_mode

    @property
    def graph_configured(self) -> bool:
        return bool(self.service_principal_id and self.job_id)
