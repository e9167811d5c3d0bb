"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.deps import EngineDep, TemporalDep
from core.db import ping

router = APIRouter(tags=["health"])

CHECK_TIMEOUT = 3.0


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is alive."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(engine: EngineDep, temporal: TemporalDep) -> JSONResponse:
    """PostgreSQL and Temporal are both reachable; 503 names the one that is not."""

    async def database() -> str:
        await asyncio.wait_for(ping(engine), CHECK_TIMEOUT)
        return "ok"

    async def temporal_server() -> str:
        healthy = await temporal.service_client.check_health(
            timeout=timedelta(seconds=CHECK_TIMEOUT)
        )
        return "ok" if healthy else "not serving"

    names = ("database", "temporal")
    results = await asyncio.gather(database(), temporal_server(), return_exceptions=True)
    checks = {
        name: (result if isinstance(result, str) else f"unreachable: {type(result).__name__}")
        for name, result in zip(names, results, strict=True)
    }
    down = [name for name, state in checks.items() if state != "ok"]
    body = Readiness(status="down: " + ", ".join(down) if down else "ok", checks=checks)
    return JSONResponse(body.model_dump(), status_code=503 if down else 200)
