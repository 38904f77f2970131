"""Streamable HTTP transport (`agent-fleet-mcp --http`). The MCP prompts are in test_prompts.py."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from .helpers import call

pytestmark = pytest.mark.anyio


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_streamable_http(fleet_env: dict[str, str], project: Path) -> None:
    fleet_env["AGENT_FLEET_HTTP_TOKEN"] = token = "http-and-prompts-token-0123456789"
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "agent_fleet_mcp", "--http", "--host", "127.0.0.1", "--port", str(port)],
        env=fleet_env, cwd=project, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
            Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http)) as c,
        ):
            assert len((await c.list_tools()).tools) == 9
            out = await call(c, "create_agent", name="h", template="echo", prompt="via http")
            assert out["created"] is True
            done = await call(c, "wait_for_agents", agents=["h"], timeout_s=20)
            assert done["done"]
            assert "echo: via http" in (await call(c, "get_agent_output", agent="h"))["text"]
    finally:
        server.terminate()
        server.communicate(timeout=10)
