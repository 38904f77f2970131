"""http_auth without a network listener: the guarded app for non-loopback binds (0.0.0.0, ::, a LAN address) driven
in-process, so these tests never open a port beyond loopback; plus the token and bind rules."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest

from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.errors import InvalidRequest
from agent_fleet_mcp.http_auth import (
    HttpToken,
    build_http_app,
    check_bind,
    is_loopback,
    load_or_create_token,
    renew_token,
    startup_line,
    transport_security,
)
from agent_fleet_mcp.server import build_server

from .http_server import ACCEPT, TOKEN

pytestmark = pytest.mark.anyio

INIT = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "p", "version": "0"}},
}  # fmt: skip


@asynccontextmanager
async def guarded(settings: Settings, host: str, allowed: list[str]) -> AsyncGenerator[httpx2.AsyncClient]:
    app: Any = build_http_app(build_server(settings), host=host, port=8765, token=TOKEN, allowed_hosts=allowed)
    inner = app.app  # the SDK's Starlette app: run its lifespan (the session manager) around the requests
    async with inner.router.lifespan_context(inner), httpx2.AsyncClient(transport=httpx2.ASGITransport(app)) as c:
        yield c


async def post_init(c: httpx2.AsyncClient, netloc: str, headers: dict[str, str]) -> int:
    base = {"Accept": ACCEPT, "Content-Type": "application/json", "Host": netloc}
    r = await c.post(f"http://{netloc}/mcp", json=INIT, headers={**base, **headers})
    return r.status_code


REMOTE_BINDS = [("0.0.0.0", "0.0.0.0:8765"), ("::", "[::]:8765"), ("192.168.1.20", "192.168.1.20:8765")]


@pytest.mark.parametrize(("host", "netloc"), REMOTE_BINDS)
async def test_non_loopback_binds_check_token_host_and_origin(host: str, netloc: str, settings: Settings) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with guarded(settings, host, ["fleet.lan"]) as c:
        assert await post_init(c, netloc, {}) == 401
        assert await post_init(c, netloc, {"Authorization": "Bearer nope-nope-nope-nope"}) == 401
        assert await post_init(c, "evil.example", auth) == 421
        assert await post_init(c, "evil.example:8765", auth) == 421
        assert await post_init(c, netloc, {**auth, "Origin": "http://evil.example:8765"}) == 403
        assert await post_init(c, netloc, {**auth, "Origin": f"http://{netloc}"}) == 200
        assert await post_init(c, "localhost:8765", auth) == 200
        assert await post_init(c, "fleet.lan:8765", {**auth, "Origin": "http://fleet.lan:8765"}) == 200
        assert await post_init(c, "fleet.lan:9999", auth) == 421


def test_allow_list() -> None:
    sec = transport_security("0.0.0.0", 8765, ["fleet.lan", "proxy.lan:443", "fe80::1", "[fe80::2]"])
    assert sec.enable_dns_rebinding_protection
    assert sec.allowed_hosts == [
        "0.0.0.0:8765", "127.0.0.1:8765", "localhost:8765", "[::1]:8765",
        "fleet.lan:8765", "proxy.lan:443", "[fe80::1]:8765", "[fe80::2]:8765",
    ]  # fmt: skip
    assert "http://fleet.lan:8765" in sec.allowed_origins and "http://evil.example:8765" not in sec.allowed_origins


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_binds_need_no_flag(host: str) -> None:
    assert is_loopback(host)
    check_bind(host, allow_remote=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "fleet.example"])
def test_remote_binds_need_the_flag(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(InvalidRequest, match="--allow-remote"):
        check_bind(host, allow_remote=False)
    check_bind(host, allow_remote=True)


def test_env_token_wins_and_must_be_long(tmp_path: Path) -> None:
    tok = load_or_create_token(tmp_path / "home", {"AGENT_FLEET_HTTP_TOKEN": TOKEN})
    assert tok == HttpToken(TOKEN, "from AGENT_FLEET_HTTP_TOKEN")
    assert not (tmp_path / "home").exists()  # nothing written when the token comes from the environment
    for weak in ["short", "has a space in it somewhere"]:
        with pytest.raises(InvalidRequest, match="AGENT_FLEET_HTTP_TOKEN"):
            load_or_create_token(tmp_path / "home", {"AGENT_FLEET_HTTP_TOKEN": weak})


def test_token_file_is_created_once_and_tightened(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = load_or_create_token(home, {})
    assert first.source == str(home / "http-token") and len(first.value) >= 32
    assert load_or_create_token(home, {}) == first
    (home / "http-token").chmod(0o644)
    assert load_or_create_token(home, {}) == first
    assert (home / "http-token").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in home.iterdir()] == ["http-token"]  # no temporary file left behind


def test_startup_line_names_the_place_not_the_token(tmp_path: Path) -> None:
    tok = load_or_create_token(tmp_path, {})
    line = startup_line("127.0.0.1", 8765, tok)
    assert tok.value not in line and str(tmp_path / "http-token") in line and "http://127.0.0.1:8765/mcp" in line
    env_line = startup_line("::1", 9000, HttpToken(TOKEN, "from AGENT_FLEET_HTTP_TOKEN"))
    assert TOKEN not in env_line and "from AGENT_FLEET_HTTP_TOKEN" in env_line and "http://[::1]:9000/mcp" in env_line
    assert "\n" not in line + env_line


@pytest.mark.parametrize("runner", ["command", "anthropic", "claude-code", "codex", "gemini"])
def test_agents_never_get_the_http_token(runner: str, tmp_path: Path) -> None:
    """An agent holding the token could call the fleet over HTTP and start agents beyond its own boundary."""
    from agent_fleet_mcp.runners import get_runner
    from agent_fleet_mcp.runners.base import TurnRequest
    from agent_fleet_mcp.spec import AgentSpec

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for exe in ("claude", "codex", "gemini"):
        (bin_dir / exe).write_text("#!/bin/sh\n")
        (bin_dir / exe).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "AGENT_FLEET_TOOLS_BIN": str(bin_dir),
           "AGENT_FLEET_HOME": str(tmp_path / "home"), "AGENT_FLEET_HTTP_TOKEN": TOKEN}  # fmt: skip
    spec = AgentSpec(runner=runner, command=["true"]) if runner == "command" else AgentSpec(runner=runner)  # type: ignore[arg-type]
    req = TurnRequest(
        agent_id="ag_1", agent_name="w", turn=1, prompt="p", spec=spec, cwd=tmp_path, agent_dir=tmp_path / "agent",
        session_id=None, env=env,
    )  # fmt: skip
    plan = get_runner(runner).build(req)
    assert "AGENT_FLEET_HTTP_TOKEN" not in plan.env and TOKEN not in " ".join([*plan.env.values(), *plan.argv])
    assert plan.env["AGENT_FLEET_HOME"] == str(tmp_path / "home")  # the rest of AGENT_FLEET_* still passes


def test_a_damaged_token_file_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "http-token").write_text("\n")
    with pytest.raises(InvalidRequest, match="agent-fleet http-token --new"):
        load_or_create_token(tmp_path, {})


def test_a_new_token_is_written_over_the_old_one_in_the_same_file(tmp_path: Path) -> None:
    """Running turns have /dev/null bound on this very file: a new file in its place would be theirs to read."""
    home = tmp_path / "home"
    old = load_or_create_token(home, {})
    inode = (home / "http-token").stat().st_ino
    new = renew_token(home, {})
    assert new.value != old.value and len(new.value) >= 32 and new.source == str(home / "http-token")
    assert (home / "http-token").stat().st_ino == inode
    assert load_or_create_token(home, {}) == new
    assert (home / "http-token").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in home.iterdir()] == ["http-token"]
    assert renew_token(tmp_path / "fresh", {}).value == load_or_create_token(tmp_path / "fresh", {}).value
    with pytest.raises(InvalidRequest, match="set a new value there"):
        renew_token(home, {"AGENT_FLEET_HTTP_TOKEN": TOKEN})


def test_the_cli_renews_the_token(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from agent_fleet_mcp.cli import main

    env = {"AGENT_FLEET_HOME": str(tmp_path / "home"), "AGENT_FLEET_HTTP_TOKEN": ""}
    runner = CliRunner()
    first = runner.invoke(main, ["http-token"], env=env)
    assert first.exit_code == 0, first.output
    renewed = runner.invoke(main, ["http-token", "--new"], env=env)
    assert renewed.exit_code == 0, renewed.output
    assert renewed.stdout.strip() != first.stdout.strip()
    assert "restart any running `agent-fleet-mcp --http`" in renewed.stderr
    assert runner.invoke(main, ["http-token"], env=env).stdout == renewed.stdout
