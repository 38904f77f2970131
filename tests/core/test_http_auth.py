"""`agent-fleet-mcp --http` as an attacker meets it: no token, a wrong token, DNS rebinding (a foreign Host or
Origin) on loopback and non-loopback binds, a non-loopback bind without --allow-remote. Real server process, raw
HTTP; the fleet home's store tells whether anything ran."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from .helpers import call
from .http_server import ACCEPT, TOKEN, agents_in, free_port, raw_create_agent, serve, server_argv

pytestmark = pytest.mark.anyio

LOOPBACK_BINDS = ["127.0.0.1", "127.0.0.2"]


def home_of(env: dict[str, str]) -> Path:
    return Path(env["AGENT_FLEET_HOME"])


@pytest.fixture
def token_env(fleet_env: dict[str, str]) -> dict[str, str]:
    return {**fleet_env, "AGENT_FLEET_HTTP_TOKEN": TOKEN}


@pytest.mark.parametrize("host", LOOPBACK_BINDS)
def test_no_token_or_a_wrong_one_gets_401_and_runs_nothing(host: str, token_env: dict[str, str], project: Path) -> None:
    with serve(token_env, project, host) as srv:
        assert raw_create_agent(srv.url, {}, "nobody") == [401, 401, 401]
        assert raw_create_agent(srv.url, {"Authorization": "Bearer wrong-" + TOKEN}, "wrong") == [401, 401, 401]
        assert raw_create_agent(srv.url, {"Authorization": TOKEN}, "bare") == [401, 401, 401]  # no "Bearer "
        assert raw_create_agent(srv.url, {"Authorization": "Basic " + TOKEN}, "basic") == [401, 401, 401]
        with httpx2.Client(timeout=30) as http:  # every path, not only /mcp
            assert http.get(f"http://{srv.netloc}/").status_code == 401
        assert agents_in(home_of(token_env)) == []
        # the same requests with the token do run (so the 401s above are the token's doing)
        assert raw_create_agent(srv.url, {"Authorization": f"Bearer {TOKEN}"}, "owner") == [200, 202, 200]
        assert agents_in(home_of(token_env)) == ["owner"]


@pytest.mark.parametrize("host", LOOPBACK_BINDS)
def test_dns_rebinding_is_refused_on_every_bind(host: str, token_env: dict[str, str], project: Path) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with serve(token_env, project, host) as srv:
        evil_host = raw_create_agent(srv.url, {**auth, "Host": "evil.example", "Origin": "http://evil.example"}, "a")
        assert evil_host[0] == 421, evil_host
        evil_port = raw_create_agent(srv.url, {**auth, "Host": f"{srv.host}:1"}, "b")
        assert evil_port[0] == 421, evil_port
        evil_origin = raw_create_agent(srv.url, {**auth, "Origin": "http://evil.example"}, "c")
        assert evil_origin[0] == 403, evil_origin
        # a rebinding page at evil.example:PORT sees the victim's port but its own name
        rebind = raw_create_agent(srv.url, {**auth, "Origin": f"http://evil.example:{srv.port}"}, "d")
        assert rebind[0] == 403, rebind
        with httpx2.Client(timeout=30) as http:  # the 2026-07-28 era takes another path through the SDK
            modern = {**auth, "Accept": ACCEPT, "mcp-protocol-version": "2026-07-28"}
            discover: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {}}
            for extra, status in [({"Host": "evil.example"}, 421), ({"Origin": "http://evil.example"}, 403)]:
                assert http.post(srv.url, json=discover, headers={**modern, **extra}).status_code == status, extra
            # the same request with good headers passes the checks (the protocol layer answers it)
            assert http.post(srv.url, json=discover, headers=modern).status_code not in (401, 403, 421)
        assert agents_in(home_of(token_env)) == []
        # the loopback names and the bind address itself are fine, with or without an Origin
        for netloc in {srv.netloc, f"localhost:{srv.port}", f"127.0.0.1:{srv.port}"}:
            codes = raw_create_agent(srv.url, {**auth, "Host": netloc, "Origin": f"http://{netloc}"}, "ok" + netloc)
            assert codes == [200, 202, 200], (netloc, codes)


def test_allowed_host_adds_a_name(token_env: dict[str, str], project: Path) -> None:
    with serve(token_env, project, "127.0.0.2", "--allowed-host", "fleet.internal") as srv:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        name = f"fleet.internal:{srv.port}"
        assert raw_create_agent(srv.url, {**auth, "Host": name, "Origin": f"http://{name}"}, "x") == [200, 202, 200]
        assert raw_create_agent(srv.url, {**auth, "Host": "other.internal"}, "y")[0] == 421
        assert agents_in(home_of(token_env)) == ["x"]


async def test_the_right_token_gives_a_full_session(token_env: dict[str, str], project: Path) -> None:
    with serve(token_env, project, "127.0.0.2") as srv:
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as http,
            Client(streamable_http_client(srv.url, http_client=http)) as c,
        ):
            out = await call(c, "create_agent", name="h", template="echo", prompt="via http")
            assert out["created"] is True
            assert (await call(c, "wait_for_agents", agents=["h"], timeout_s=20))["done"]
            assert "echo: via http" in (await call(c, "get_agent_output", agent="h"))["text"]


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "fleet.example"])
def test_a_non_loopback_bind_needs_allow_remote(host: str, token_env: dict[str, str], project: Path) -> None:
    proc = subprocess.run(
        server_argv(host, free_port()), env=token_env, cwd=project, stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "--allow-remote" in proc.stderr and "network" in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_generated_token_is_private_printed_by_http_token_and_never_logged(
    fleet_env: dict[str, str], project: Path
) -> None:
    fleet_env.pop("AGENT_FLEET_HTTP_TOKEN", None)
    home = home_of(fleet_env)
    with serve(fleet_env, project, "127.0.0.1", umask=0) as srv:
        token_file = home / "http-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600  # even under umask 0
        printed = subprocess.run(
            [sys.executable, "-c", "from agent_fleet_mcp.cli import main; main()", "http-token"],
            env=fleet_env, capture_output=True, text=True, timeout=60, check=True,
        ).stdout.strip()  # fmt: skip
        assert printed == token_file.read_text().strip() and len(printed) >= 32
        codes = raw_create_agent(srv.url, {"Authorization": f"Bearer {printed}"}, "owner")
        assert codes == [200, 202, 200]
    err = srv.stderr
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert printed not in err
    assert any(srv.url in ln and str(token_file) in ln for ln in lines), err
    # a restart keeps the same token
    with serve(fleet_env, project, "127.0.0.1") as srv2:
        assert raw_create_agent(srv2.url, {"Authorization": f"Bearer {printed}"}, "again") == [200, 202, 200]


def test_http_token_creates_the_token_when_missing(fleet_env: dict[str, str]) -> None:
    fleet_env.pop("AGENT_FLEET_HTTP_TOKEN", None)
    out = subprocess.run(
        [sys.executable, "-c", "from agent_fleet_mcp.cli import main; main()", "http-token"],
        env=fleet_env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    token_file = home_of(fleet_env) / "http-token"
    assert out.stdout.strip() == token_file.read_text().strip()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert os.stat(home_of(fleet_env)).st_mode & 0o077 == 0
