"""A turn cannot read the fleet home's HTTP token nor change its catalog trust (pidns mode: both files are covered
by a read-only bind mount of /dev/null in the turn's mount namespace, locked one user namespace further down)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.http_auth import load_or_create_token, renew_token
from agent_fleet_mcp.runners import containment, forkserver
from agent_fleet_mcp.server import app, build_server
from agent_fleet_mcp.testing import ScriptedModelServer, ToolCall
from agent_fleet_mcp.trust import trust_file, trust_files

from .helpers import call, wait_all

pytestmark = pytest.mark.anyio
SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def skip_without_namespaces() -> None:
    if containment.detect().mode != "pidns":
        pytest.skip(f"no user + PID namespaces here: {'; '.join(containment.detect().why_not)}")


def assert_refused(text: str, home: Path, token: str, trust_before: bytes) -> None:
    """Every try of tests/scripts/home_attack.py failed: the token was not read (an empty read at most), the trust
    file is unchanged."""
    for what in ("write trust", "append trust", "replace trust", "unlink trust"):
        assert f"{what}: refused" in text, text
    assert "read token: refused" in text or "read token: ok ''" in text, text
    assert token not in text
    assert trust_file(home).read_bytes() == trust_before
    assert (home / "http-token").read_text().strip() == token


async def test_a_command_agent_cannot_read_the_token_nor_write_the_trust_file(client: Any, settings: Any) -> None:
    skip_without_namespaces()
    home = Path(settings.home)
    token = load_or_create_token(home, {}).value
    trust_before = trust_file(home).read_bytes()
    await call(client, "create_agent", name="x", template="home-attack", prompt=str(home))
    out = await wait_all(client, ["x"])
    assert out["finished"][0]["status"] == "succeeded", out
    text = (await call(client, "get_agent_output", agent="x", mode="tail"))["text"]
    assert_refused(text, home, token, trust_before)


@pytest.mark.parametrize("change", ["trust a file", "renew the token"])
async def test_a_running_turn_stays_out_after_a_person_changes_the_guarded_files(
    client: Any, settings: Any, project: Path, tmp_path: Path, change: str
) -> None:
    """The guards are bind mounts on the two files themselves. A file renamed over one (as `agent-fleet trust` did)
    or deleted and made again (as the token's error message advised) took its mount away in the namespaces of the
    turns running then: they could rewrite the trust file, or read the new token. Both are now written in place."""
    skip_without_namespaces()
    home = Path(settings.home)
    load_or_create_token(home, {})
    await call(client, "create_agent", name="r", template="home-race", prompt=str(home))
    deadline = time.monotonic() + 30
    while not (project / "watching").exists():  # the turn runs, its guards in place
        assert time.monotonic() < deadline, "the home-race turn did not start"
        await anyio.sleep(0.02)
    if change == "trust a file":
        extra = tmp_path / "extra.md"
        extra.write_text("---\nname: extra\ndescription: x\n---\nx\n")
        trust_files(home, [extra])  # what `agent-fleet trust` does
    else:
        renew_token(home, {})  # what `agent-fleet http-token --new` does
    token, trust_after = load_or_create_token(home, {}).value, trust_file(home).read_bytes()
    (project / "go").write_text("")
    out = await wait_all(client, ["r"], timeout_s=40)
    assert out["finished"][0]["status"] == "succeeded", out
    text = (await call(client, "get_agent_output", agent="r", mode="tail"))["text"]
    assert "\ngo\n" in f"\n{text}\n" or "text: go\n" in text, text
    assert_refused(text, home, token, trust_after)


@pytest.mark.parametrize("how", ["forkserver", "spare", "plain"])
async def test_a_worker_bash_command_cannot_either(
    tmp_path: Path, project: Path, fleet_env: dict[str, str], how: str
) -> None:
    """``spare``: the worker is a child the fork server forked ahead (zygote.py), in namespaces made then; its
    guards are set up when it gets its turn, like a child forked for the turn."""
    skip_without_namespaces()
    env = dict(fleet_env, ANTHROPIC_API_KEY="test")
    if how == "plain":
        env[forkserver.DISABLE_ENV] = "0"
    home = Path(env["AGENT_FLEET_HOME"])
    token = load_or_create_token(home, {}).value
    trust_before = trust_file(home).read_bytes()
    spares: list[int] = []
    if how == "spare":
        forkserver.launch(home, env=env, idle_s=60, spares=1, spare_idle_cores=0)  # a busy CI box: make it anyway
        deadline = time.monotonic() + 60
        while not (spares := list((forkserver.status(home) or {}).get("spares", []))):
            assert time.monotonic() < deadline, "no spare came"
            time.sleep(0.05)
    attack = f"{sys.executable} {SCRIPTS / 'home_attack.py'} < /dev/null"
    try:
        with ScriptedModelServer([ToolCall("bash", {"command": f"AGENT_PROMPT={home} {attack}"}), "done"]) as srv:
            env["ANTHROPIC_BASE_URL"] = srv.base_url
            settings = Settings(home=home, project_dir=project, env=env, poll_interval_s=0.05)
            async with Client(build_server(settings)) as c:
                await call(c, "create_agent", name="w", runner="anthropic", permission="readwrite", prompt="go")
                out = await wait_all(c, ["w"])
                assert out["finished"][0]["status"] == "succeeded", out
            srv.assert_complete()
            text = str(srv.message_requests[1].body["messages"][-1]["content"][0]["content"])
    finally:
        forkserver.stop(home)
    assert_refused(text, home, token, trust_before)
    if how == "spare":
        assert f" spawned pid={spares[0]} " in (home / "logs" / forkserver.LOG_NAME).read_text()


def test_the_guards_look_for_mount_until_found_then_no_more(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every spawn in namespaces asks for the home's guards. It walked PATH for mount(8) each time: ~20 stats, each a
    hand-over of the server's interpreter lock among a wave's spawn threads."""
    looked: list[str] = []
    found: list[str | None] = [None, "/usr/bin/mount"]  # missing at first (no guards then), installed later

    def which(name: str, *args: Any, **kwargs: Any) -> str | None:
        looked.append(name)
        return found[min(len(looked), len(found)) - 1]

    monkeypatch.setattr(containment.shutil, "which", which)
    monkeypatch.setattr(containment, "_mount_found", [], raising=False)  # nothing found yet in this process
    home = tmp_path / "home"
    home.mkdir()
    assert containment.home_guards(home) == []
    guards = [("/dev/null", str(home / "http-token")), (str(trust_file(home)), str(trust_file(home)))]
    for _ in range(5):
        assert containment.home_guards(home) == guards
    assert looked == ["mount", "mount"]


def test_a_server_start_makes_the_guarded_files_before_any_spawn(
    tmp_path: Path, project: Path, fleet_env: dict[str, str]
) -> None:
    """In a new home the first wave's spawns each raced to create the HTTP token file (an fsync each, on the spawn
    path): the server's start-up warm-up makes both guarded files instead."""
    skip_without_namespaces()
    home = tmp_path / "new-home"
    home.mkdir(mode=0o700)
    settings = Settings(home=home, project_dir=project, env=fleet_env)
    app._warm_first_call(settings, supervises=True)  # pyright: ignore[reportPrivateUsage]
    assert (home / "http-token").is_file() and trust_file(home).is_file()
