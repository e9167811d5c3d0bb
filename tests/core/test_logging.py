"""One renderer for every log line: Waymark's, the standard library's and uvicorn's, as JSON off
a TTY, with the request context bound."""

from __future__ import annotations

import json
import logging

import structlog

from core.logging import configure_logging
from core.settings import Settings


def test_json_lines_with_bound_context(capsys):
    configure_logging(Settings(_env_file=None, log_format="json", log_level="INFO"))
    try:
        structlog.contextvars.bind_contextvars(request_id="r-1", workspace_id="w-1")
        structlog.get_logger("waymark.test").info("hello", answer=42)
        logging.getLogger("uvicorn.error").warning("from uvicorn %s", "here")
        structlog.contextvars.clear_contextvars()
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    finally:
        configure_logging(Settings(_env_file=None, log_format="json", log_level="WARNING"))
    ours = next(line for line in lines if line["event"] == "hello")
    assert ours["answer"] == 42 and ours["request_id"] == "r-1"
    assert ours["workspace_id"] == "w-1" and ours["level"] == "info"
    theirs = next(line for line in lines if line["logger"] == "uvicorn.error")
    assert theirs["event"] == "from uvicorn here" and theirs["level"] == "warning"
