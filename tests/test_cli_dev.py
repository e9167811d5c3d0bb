"""`waymark dev`, the newcomer's command: the whole stack comes up, answers, stops, and comes back
with the same data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from core.embedded import port_is_open
from tests.api.test_health import free_port
from workflows import TASK_QUEUE


def start_dev(tmp_path, ports: dict[str, int]) -> subprocess.Popen:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "TEMPORAL_ADDRESS") and not k.startswith("WAYMARK_")
    }
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "dev",
            "--api-port",
            str(ports["api"]),
            "--temporal-port",
            str(ports["temporal"]),
            "--ui-port",
            str(ports["ui"]),
            "--data-dir",
            str(tmp_path / "data"),
        ],  # fmt: skip
        cwd=tmp_path,
        env=env,
        stdout=(tmp_path / "dev.out").open("ab"),
        stderr=subprocess.STDOUT,
    )


def wait_until(predicate, timeout: float, what: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, f"waymark dev exited while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def api_ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGINT)
    return process.wait(60)


async def worker_pollers(temporal_port: int) -> int:
    client = await Client.connect(f"127.0.0.1:{temporal_port}")
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace="default",
            task_queue=TaskQueue(name=TASK_QUEUE),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return len(response.pollers)


@pytest.mark.timeout(240)
async def test_dev_brings_up_everything_and_keeps_data(tmp_path):
    ports = {"api": free_port(), "temporal": free_port(), "ui": free_port()}
    dev = start_dev(tmp_path, ports)
    try:
        wait_until(lambda: api_ready(ports["api"]), 120, "/readyz", dev)
        wait_until(lambda: "Press Ctrl-C" in (tmp_path / "dev.out").read_text(), 30, "banner", dev)
        output = (tmp_path / "dev.out").read_text()
        demo = json.loads((tmp_path / "data" / "demo-workspace.json").read_text())
        for shown in (
            f"http://127.0.0.1:{ports['api']}/docs",
            f"http://127.0.0.1:{ports['ui']}",
            demo["admin_key"],
            demo["write_key"],
        ):
            assert shown in output, f"the banner does not show {shown}"
        # The Temporal Web UI answers and lists the default namespace.
        async with httpx.AsyncClient(timeout=10) as http:
            namespaces = await http.get(f"http://127.0.0.1:{ports['ui']}/api/v1/namespaces")
        assert "default" in {n["namespaceInfo"]["name"] for n in namespaces.json()["namespaces"]}
        # The worker polls its task queue.
        deadline = time.monotonic() + 30
        while await worker_pollers(ports["temporal"]) == 0:
            assert time.monotonic() < deadline, "no worker polls the task queue"
        # The demo keys work.
        auth = {"Authorization": f"Bearer {demo['admin_key']}"}
        async with httpx.AsyncClient(timeout=10) as http:
            r = await http.get(f"http://127.0.0.1:{ports['api']}/v1/workspace", headers=auth)
        assert r.status_code == 200 and r.json()["public_key"] == demo["write_key"]
    finally:
        assert stop(dev) == 0
    for port in ports.values():
        assert not port_is_open("127.0.0.1", port), f"port {port} still open after Ctrl-C"

    # Run again: the same data (the demo key still works, no second demo workspace).
    dev = start_dev(tmp_path, ports)
    try:
        wait_until(lambda: api_ready(ports["api"]), 120, "/readyz after restart", dev)
        again = json.loads((tmp_path / "data" / "demo-workspace.json").read_text())
        assert again == demo
        auth = {"Authorization": f"Bearer {demo['admin_key']}"}
        async with httpx.AsyncClient(timeout=10) as http:
            r = await http.get(f"http://127.0.0.1:{ports['api']}/v1/workspace", headers=auth)
        assert r.status_code == 200
    finally:
        assert stop(dev) == 0
