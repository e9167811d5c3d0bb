"""Production mode refuses to start with placeholder secrets or local-only addresses."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.settings import Settings

PRODUCTION = {
    "env": "production",
    "secret_key": "x" * 48,
    "database_url": "postgresql://waymark:pw@db:5432/waymark",
    "temporal_address": "temporal:7233",
    "public_url": "https://waymark.shop.example",
}


def test_development_defaults_start():
    settings = Settings(_env_file=None)
    assert settings.env == "development" and settings.api_port == 8000


def test_production_with_real_values_starts():
    assert Settings(_env_file=None, **PRODUCTION).env == "production"


@pytest.mark.parametrize(
    ("field", "value", "complaint"),
    [
        ("secret_key", "dev-insecure-secret-change-me", "WAYMARK_SECRET_KEY"),
        ("secret_key", "change-me", "WAYMARK_SECRET_KEY"),
        ("secret_key", "short", "WAYMARK_SECRET_KEY"),
        ("database_url", None, "DATABASE_URL"),
        ("temporal_address", None, "TEMPORAL_ADDRESS"),
        ("public_url", "http://127.0.0.1:8000", "WAYMARK_PUBLIC_URL"),
    ],
)
def test_production_refuses_placeholders(field, value, complaint):
    with pytest.raises(ValidationError, match=complaint):
        Settings(_env_file=None, **{**PRODUCTION, field: value})


def test_environment_variables_and_aliases(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://a@b/c")
    monkeypatch.setenv("TEMPORAL_ADDRESS", "t:7233")
    monkeypatch.setenv("WAYMARK_API_PORT", "9001")
    settings = Settings(_env_file=None)
    assert (settings.database_url, settings.temporal_address, settings.api_port) == (
        "postgresql://a@b/c",
        "t:7233",
        9001,
    )
