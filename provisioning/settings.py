"""All configuration, read once from environment / Functions app settings into one typed object.

Every field is documented in the README (Settings). Names are the field names upper-cased with
the ``PROVISIONING_`` prefix, e.g. ``PROVISIONING_MAPPING``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .bulk import MAX_OPERATIONS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROVISIONING_", extra="ignore", frozen=True)

    # Built-in mapping name (microsoft-sample, hr-suite) or path to a YAML/JSON mapping file.
    mapping: str = "microsoft-sample"
    # Input format; by default it is chosen from the file extension.
    input_format: Literal["csv", "json", "jsonl", "xlsx"] | None = None
    # Operations per bulk request (Graph allows at most 50).
    batch_size: int = Field(default=MAX_OPERATIONS, ge=1, le=MAX_OPERATIONS)
