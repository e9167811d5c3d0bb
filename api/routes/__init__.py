"""One router per resource; `ROUTERS` is the order they are mounted in."""

from api.routes import health, keys, tracking, workspace

ROUTERS = [health.router, workspace.router, keys.router, tracking.router]
