"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api.errors import ERROR_RESPONSES, install_error_handlers
from api.guards import reject_nul
from api.middleware import RequestContextMiddleware
from api.routes import ROUTERS
from core import temporal
from core.db import create_engine
from core.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = create_engine(settings)
        # Lazy: the API starts (and /readyz says so) even while Temporal is down.
        app.state.temporal = await temporal.connect(settings, lazy=True)
        try:
            yield
        finally:
            await app.state.engine.dispose()

    app = FastAPI(
        title="Waymark",
        version="0.1.0",
        summary="Marketing automation for online shops: flows, campaigns, segments.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
        dependencies=[Depends(reject_nul)],
    )
    app.state.settings = settings
    install_error_handlers(app)
    # Storefronts call the tracking and push endpoints from the browser. Keys travel in the
    # Authorization header, never in cookies, so any origin may call.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        max_age=86400,
    )
    app.add_middleware(RequestContextMiddleware)
    for router in ROUTERS:
        app.include_router(router)
    return app
