"""Waymark's HTTP API (FastAPI): `create_app()` builds it; one router per resource in `routes/`."""

from api.app import create_app

__all__ = ["create_app"]
