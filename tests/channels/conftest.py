"""Fixtures for the provider adapters: Prism mocks of SendGrid's and Twilio's official OpenAPI
specs (they reject any request that breaks the real API), and a scriptable local HTTP sink."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(
    os.environ.get("MOCK_PROVIDERS_SCRIPT", REPO.parent / "shared" / "contracts" / "mock-providers")
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class MockProviders:
    sendgrid_url: str
    twilio_url: str
    state_dir: Path

    def log(self, name: str) -> str:
        return (self.state_dir / f"{name}.log").read_text(errors="replace")

    def validated(self, name: str) -> int:
        """How many requests the mock has checked against the spec and accepted."""
        return self.log(name).count("The request passed the validation rules")

    def rejected(self, name: str) -> int:
        return self.log(name).count("Request did not pass the validation rules")


@pytest.fixture(scope="session")
def mock_providers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockProviders]:
    if not SCRIPT.is_file():
        pytest.fail(
            f"the provider contract mocks are missing: expected {SCRIPT} (the `shared/` folder "
            "beside the repository; or set MOCK_PROVIDERS_SCRIPT)",
            pytrace=False,
        )
    state = tmp_path_factory.mktemp("mock-providers")
    env = {**os.environ, "MOCK_PROVIDERS_DIR": str(state)}
    started = subprocess.run(
        [str(SCRIPT), "start", str(free_port()), str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    try:
        if started.returncode != 0:
            pytest.fail(f"mock-providers did not start:\n{started.stderr}", pytrace=False)
        urls = dict(
            line.split("=", 1) for line in started.stdout.splitlines() if "_BASE_URL=" in line
        )
        yield MockProviders(urls["SENDGRID_BASE_URL"], urls["TWILIO_BASE_URL"], state)
    finally:
        subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, timeout=60)


@dataclass
class Sink:
    """A local HTTP server answering from a script of (status, headers, body); records requests."""

    url: str
    answers: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    default: tuple[int, dict[str, str], bytes] = (202, {}, b"")


@pytest.fixture
def sink() -> Iterator[Sink]:
    lock = threading.Lock()
    holder: dict[str, Sink] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                s = holder["sink"]
                s.requests.append((self.command, self.path, dict(self.headers), body))
                status, headers, answer = s.answers.pop(0) if s.answers else s.default
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["sink"] = Sink(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder["sink"]
    finally:
        server.shutdown()
        server.server_close()
