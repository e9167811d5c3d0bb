"""structlog for everything: Waymark's own logs, the standard library's, uvicorn's and Temporal's.

JSON when stderr is not a TTY (production, CI), a readable console on a TTY. Context (request id,
workspace, flow, profile) is bound through `structlog.contextvars` and lands on every line.
"""

from __future__ import annotations

import logging
import logging.config
import sys

import structlog

from core.settings import Settings


def _drop_color_message(_logger: object, _name: str, event_dict: dict) -> dict:
    # uvicorn adds an ANSI-coloured copy of each message; the renderer colours on its own.
    event_dict.pop("color_message", None)
    return event_dict


_SHARED: list[structlog.types.Processor] = [
    _drop_color_message,
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.ExtraAdder(),
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.StackInfoRenderer(),
]


def configure_logging(settings: Settings) -> None:
    use_json = settings.log_format == "json" or (
        settings.log_format == "auto" and not sys.stderr.isatty()
    )
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(),
            # Locals in tracebacks can hold customer data and cost seconds to draw.
            exception_formatter=structlog.dev.RichTracebackFormatter(show_locals=False),
        )
    )
    structlog.configure(
        processors=[
            *_SHARED,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if use_json else _identity,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # uvicorn and temporalio log through the root handler, never their own.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "temporalio"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    core_level = "WARN" if root.level <= logging.WARNING else "ERROR"
    _forward_temporal_core_logs(core_level)
    # Libraries that narrate routine work at INFO.
    for name in ("sqlalchemy.engine", "pgserver", "httpx", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _forward_temporal_core_logs(level: str) -> None:
    """The Temporal SDK's core (Rust) logs into the `temporalio.core` logger, so they are
    rendered like every other line. Must run before the first client or worker is made."""
    from temporalio.runtime import (
        LogForwardingConfig,
        LoggingConfig,
        Runtime,
        TelemetryConfig,
        TelemetryFilter,
    )

    telemetry = TelemetryConfig(
        logging=LoggingConfig(
            filter=TelemetryFilter(core_level=level, other_level="ERROR"),
            forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
        )
    )
    Runtime.set_default(Runtime(telemetry=telemetry), error_if_already_set=False)


def _identity(_logger: object, _name: str, event_dict: dict) -> dict:
    return event_dict


def uvicorn_log_config() -> dict:
    """A uvicorn `log_config` that leaves handlers to `configure_logging`."""
    return {"version": 1, "disable_existing_loggers": False}
