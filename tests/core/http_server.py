"""Start the real `agent-fleet-mcp --http` process for a test and talk to it with raw HTTP, as an attacker would."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

TOKEN = "test-token-0123456789abcdefghij"
ACCEPT = "application/json, text/event-stream"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    stderr: str = ""  # filled in when the server has exited

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/mcp"

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"


def wait_accepting(proc: subprocess.Popen[bytes], host: str, port: int, deadline_s: float = 30) -> None:
    """Poll until the port accepts a connection (never a fixed sleep); fail early if the server exited."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"server exited with {proc.returncode}: {err.decode()} {out.decode()}")
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"server did not accept on {host}:{port} within {deadline_s}s")


def server_argv(host: str, port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "agent_fleet_mcp", "--http", "--host", host, "--port", str(port), *extra]


@contextmanager
def serve(env: dict[str, str], cwd: Path, host: str, *extra: str, umask: int = -1) -> Generator[Served]:
    port = free_port(host)
    proc = subprocess.Popen(
        server_argv(host, port, *extra), env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, umask=umask,
    )  # fmt: skip
    served = Served(proc, host, port)
    try:
        wait_accepting(proc, host, port)
        yield served
    finally:
        if proc.poll() is None:
            proc.terminate()
        served.stderr = proc.communicate(timeout=20)[1].decode()


def _initialize() -> dict[str, Any]:
    return {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "p", "version": "0"}},
    }  # fmt: skip


def raw_create_agent(url: str, headers: dict[str, str], name: str) -> list[int]:
    """initialize -> notifications/initialized -> tools/call create_agent, with exactly the given extra headers.
    Returns the three HTTP status codes."""
    base = {"Accept": ACCEPT, "Content-Type": "application/json", **headers}
    codes: list[int] = []
    with httpx2.Client(timeout=30) as http:
        r = http.post(url, json=_initialize(), headers=base)
        codes.append(r.status_code)
        sid = r.headers.get("mcp-session-id")
        session = {**base, "mcp-protocol-version": "2025-11-25", **({"mcp-session-id": sid} if sid else {})}
        r = http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
        codes.append(r.status_code)
        call = {
            "jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "create_agent", "arguments": {"name": name, "template": "echo", "prompt": "pwned"}},
        }  # fmt: skip
        r = http.post(url, json=call, headers=session)
        codes.append(r.status_code)
    return codes


def agents_in(home: Path) -> list[str]:
    """Names of the agents in the fleet home's store (empty when the store was never created)."""
    db = home / "fleet.db"
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return [row[0] for row in conn.execute("SELECT name FROM agents")]
