"""One router per resource; `ROUTERS` is the order they are mounted in."""

from api.routes import (
    consents,
    health,
    imports,
    keys,
    lists,
    profiles,
    push,
    suppressions,
    tracking,
    workspace,
)

ROUTERS = [
    health.router,
    workspace.router,
    keys.router,
    profiles.router,
    consents.router,
    suppressions.router,
    push.router,
    tracking.router,
    lists.router,
    imports.router,
]
