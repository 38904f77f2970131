"""The fork server is warm before the first turn and survives a slow preload: the server starts it in the
background, a spawn waits (up to a bound) for a zygote that is still preloading instead of giving up on it for a
minute, and a fresh install does not make a new zygote look stale (docs/forkserver.md)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import replace
from pathlib import Path

import pytest

from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.runners import forkserver, preload_pause, process
from agent_fleet_mcp.runners.base import LaunchPlan
from agent_fleet_mcp.runners.process import TurnFiles

from .test_forkserver import BOOT_S, make_home, wait_started_zygote

ENTRY = "agent_fleet_mcp.worker.__main__:main"


def test_code_stamp_ignores_pycache_in_site_packages_but_sees_an_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first import of a top-level module after `uv sync` creates site-packages/__pycache__ (the folder's
    mtime changes): that is not new code. A new or reinstalled distribution is."""
    site = tmp_path / "lib" / "site-packages"
    (site / "foo-1.0.dist-info").mkdir(parents=True)
    monkeypatch.setattr(sys, "path", [*sys.path, str(site)])
    before = forkserver.code_stamp()
    (site / "__pycache__").mkdir()
    later = os.stat(site).st_mtime_ns + 5_000_000_000
    os.utime(site, ns=(later, later))  # what creating __pycache__ does (whatever this file system's granularity)
    assert forkserver.code_stamp() == before
    (site / "bar-2.0.dist-info").mkdir()
    assert forkserver.code_stamp() != before


@contextlib.contextmanager
def preloading_zygote(home: Path, *, answer_after_s: float | None) -> Generator[list[dict[str, object]]]:
    """A stand-in zygote that says it is preloading (its lock file) and listens; after ``answer_after_s`` (None:
    never) it says it serves, takes one spawn and answers a made-up pid. Yields the requests it took."""
    (home / forkserver.LOCK_NAME).write_text(f"{os.getpid()} preloading\n")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with forkserver.sock_address(forkserver.socket_path(home)) as addr:
        listener.bind(addr)
    listener.listen(16)
    taken: list[dict[str, object]] = []
    done = threading.Event()

    def serve() -> None:
        if answer_after_s is None or done.wait(answer_after_s):
            return
        (home / forkserver.LOCK_NAME).write_text(f"{os.getpid()} serving\n")
        conn, _ = listener.accept()
        with conn:
            msg, fds = forkserver.recv_message(conn, max_fds=3)
            for fd in fds:
                os.close(fd)
            forkserver.send_message(conn, {"pid": 4242})
            taken.append({**msg, "ack": forkserver.recv_message(conn)[0].get("ack")})

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield taken
    finally:
        done.set()
        thread.join(10)
        listener.close()


def spawn_once(home: Path, work: Path) -> int:
    with open(os.devnull, "rb") as stdin, open(work / "out", "ab") as out:
        return forkserver.spawn(
            home, entry=ENTRY, args=[], env={}, cwd=work, exit_file=work / "0001.exit",
            stdio=(stdin.fileno(), out.fileno(), out.fileno()),
        )  # fmt: skip


def test_a_spawn_waits_for_a_zygote_that_is_still_preloading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A preload slower than the reach timeout (a busy machine) is waited for: the turn is forked, not sent the
    plain way, and the fork server is not written off for a minute."""
    home = make_home(tmp_path / "home")
    monkeypatch.setattr(forkserver, "REACH_TIMEOUT_S", 0.2)
    monkeypatch.setattr(forkserver, "BOOT_WAIT_S", BOOT_S)
    with preloading_zygote(home, answer_after_s=1.0) as taken:
        assert forkserver.preloading(home)
        assert spawn_once(home, tmp_path) == 4242
    assert [t["ack"] for t in taken] == [True]
    assert home not in forkserver._down_until  # pyright: ignore[reportPrivateUsage]


def test_a_preload_that_never_ends_falls_back_for_that_turn_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = make_home(tmp_path / "home")
    monkeypatch.setattr(forkserver, "REACH_TIMEOUT_S", 0.1)
    monkeypatch.setattr(forkserver, "BOOT_WAIT_S", 0.5)
    with preloading_zygote(home, answer_after_s=None):
        with pytest.raises(forkserver.Unavailable, match="still preloading"):
            spawn_once(home, tmp_path)
        assert home not in forkserver._down_until  # pyright: ignore[reportPrivateUsage]


def test_warm_wanted_only_when_the_fork_server_is_on() -> None:
    assert forkserver.warm_wanted({})
    assert not forkserver.warm_wanted({forkserver.DISABLE_ENV: "0"})
    assert not forkserver.warm_wanted({forkserver.WARM_ENV: "0"})


@pytest.mark.anyio
async def test_the_server_starts_the_fork_server_at_its_start(settings: Settings) -> None:
    """No turn is asked for: the zygote comes up because the server started (in the background)."""
    from mcp import Client

    from agent_fleet_mcp.server import build_server

    env = {k: v for k, v in settings.env.items() if k != forkserver.WARM_ENV}
    cfg = replace(settings, env=env)
    try:
        async with Client(build_server(cfg)) as client:
            await client.list_tools()
            deadline = time.monotonic() + BOOT_S
            while forkserver.status(cfg.home, timeout_s=0.5) is None:
                assert time.monotonic() < deadline, "no zygote came up"
                time.sleep(0.05)
            assert wait_started_zygote(cfg.home)["stamp"] == forkserver.code_stamp()
    finally:
        forkserver.stop(cfg.home)


# -- a preload gives way to the turns that start meanwhile, until a turn waits for it ----------------------------

needs_autogroup = pytest.mark.skipif(
    forkserver.session_nice(os.getpid()) is None,
    reason="this kernel does not schedule by session (no autogroup): the preload competes as any process does",
)

# A zygote whose only entry's preload records its session's nice value and then waits for a "go" file: the test
# acts while it is still preloading, however fast this machine imports.
GATED_ENTRY = '''
import os, time
from pathlib import Path
from agent_fleet_mcp.runners import forkserver, preload_pause, process
from agent_fleet_mcp.runners.base import LaunchPlan
from agent_fleet_mcp.runners.process import TurnFiles

GATE = Path(os.environ["GATE"])

def preload():
    (GATE / "nice.tmp").write_text(str(forkserver.session_nice(os.getpid())))
    os.replace(GATE / "nice.tmp", GATE / "nice")
    while not (GATE / "go").exists():
        time.sleep(0.02)

def main(args):
    return 0
'''
GATED_ZYGOTE = """
import sys
import agent_fleet_mcp.runners.zygote as zygote  # named in our command line, as in the real launcher's
from agent_fleet_mcp.runners import forkserver
forkserver.ENTRIES = zygote.ENTRIES = frozenset({"gated_entry:main"})
sys.exit(zygote.main(sys.argv[1:]))
"""


def wait_for(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BOOT_S
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


@contextlib.contextmanager
def gated_zygote(
    tmp_path: Path, entry: str = GATED_ENTRY, before: Callable[[Path], None] | None = None
) -> Generator[tuple[Path, subprocess.Popen[bytes]]]:
    """A real zygote (the module's code, in a session of its own as ``launch`` starts it) held in its preload.
    ``entry``: the source of the module `gated_entry`, whose preload writes its nice value to GATE/nice and holds
    until GATE/go; ``before(home)`` runs before the zygote starts."""
    home, gate = make_home(tmp_path / "home"), make_home(tmp_path / "gate")
    if before is not None:
        before(home)
    (tmp_path / "gated_entry.py").write_text(entry)
    env = {**os.environ, "GATE": str(gate), "PYTHONPATH": str(tmp_path)}
    argv = [sys.executable, "-c", GATED_ZYGOTE, "--home", str(home), "--own-session"]
    with open(tmp_path / "zygote.err", "wb") as err:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                start_new_session=True)  # fmt: skip
    try:
        wait_for(lambda: (gate / "nice").exists() or proc.poll() is not None, "the preload did not start")
        assert (gate / "nice").read_text() == "0", (tmp_path / "zygote.err").read_text()  # normal priority at first
        assert forkserver.preloading(home)
        yield home, proc
    finally:
        (gate / "go").touch()
        forkserver.stop(home)
        proc.kill()
        proc.wait()


def command_plan(home: Path, work: Path) -> LaunchPlan:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_FLEET_")}
    return LaunchPlan(argv=["true"], env={**env, "AGENT_FLEET_HOME": str(home)}, cwd=work)


@needs_autogroup
@pytest.mark.parametrize("then", ["serves", "a-turn-waits"])
def test_a_preload_gives_way_to_a_cli_turn_until_a_turn_waits_for_it(tmp_path: Path, then: str) -> None:
    """A turn that does not need the fork server (a CLI) starts while the zygote preloads: the preload gives way
    (its session at nice 19), so the CLIs started right after the server get the CPU. A turn that waits for the
    zygote gives it normal priority back; and it serves at normal priority either way."""
    with gated_zygote(tmp_path) as (home, proc):
        files = TurnFiles.for_turn(tmp_path / "cli" / "turns", 1)
        cli = process.spawn(command_plan(home, tmp_path), files)
        assert forkserver.session_nice(proc.pid) == forkserver.YIELD_NICE
        assert (home / preload_pause.YIELD_FILE).exists()  # and its imports pause while the machine is busy
        if then == "a-turn-waits":
            assert forkserver.hurry(home)
            assert forkserver.session_nice(proc.pid) == 0
            assert (home / preload_pause.HURRY_FILE).exists()
        (tmp_path / "gate" / "go").touch()
        wait_started_zygote(home)
        assert forkserver.session_nice(proc.pid) == 0  # serving: forks are turns someone waits for
        log = (tmp_path / "zygote.err").read_text()
        expected = 0 if then == "a-turn-waits" else forkserver.YIELD_NICE
        assert f"preload_nice={expected}" in log, log
        assert wait_exit(cli.pid, files) == 0


def wait_exit(pid: int, files: TurnFiles) -> int | None:
    deadline = time.monotonic() + BOOT_S
    while (code := process.exit_code(files, pid)) is None:
        assert time.monotonic() < deadline, "the CLI turn did not end"
        time.sleep(0.02)
    return code


@needs_autogroup
def test_only_a_preloading_zygote_is_asked_to_give_way(tmp_path: Path) -> None:
    """A lock file naming a pid that is not a zygote (a dead zygote's pid, reused) is left alone."""
    home = make_home(tmp_path / "home")
    other = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        (home / forkserver.LOCK_NAME).write_text(f"{other.pid} preloading\n")
        assert not forkserver.yield_preload(home)
        assert forkserver.session_nice(other.pid) == 0
    finally:
        other.kill()
        other.wait()


@needs_autogroup
def test_a_spawn_that_waits_for_a_preload_gives_it_normal_priority(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with gated_zygote(tmp_path) as (home, proc):
        assert forkserver.yield_preload(home)
        assert forkserver.session_nice(proc.pid) == forkserver.YIELD_NICE
        monkeypatch.setattr(forkserver, "BOOT_WAIT_S", 0.5)  # the gated preload never ends by itself
        with pytest.raises(forkserver.Unavailable, match="still preloading"):
            spawn_once(home, tmp_path)
        assert forkserver.session_nice(proc.pid) == 0


@needs_autogroup
def test_a_zygote_lowered_as_it_began_to_serve_forks_at_normal_priority(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CLI turn that saw the zygote preloading may lower it just after it began to serve: its next spawn puts
    it back to normal priority, so it never serves turns from the background."""
    with gated_zygote(tmp_path) as (home, proc):
        (tmp_path / "gate" / "go").touch()
        wait_started_zygote(home)
        assert forkserver.set_session_nice(proc.pid, forkserver.YIELD_NICE)  # that late yield
        monkeypatch.setattr(forkserver, "ENTRIES", frozenset({"gated_entry:main"}))
        with open(os.devnull, "rb") as stdin, open(tmp_path / "out", "ab") as out:
            forkserver.spawn(
                home, entry="gated_entry:main", args=[], env={}, cwd=tmp_path, exit_file=tmp_path / "0001.exit",
                stdio=(stdin.fileno(), out.fileno(), out.fileno()),
            )  # fmt: skip
        assert forkserver.session_nice(proc.pid) == 0


def test_stop_ends_a_zygote_that_is_still_preloading(tmp_path: Path) -> None:
    """A zygote answers nothing while it preloads (5 s under CI load): `stop` (the demo's end, the tests' cleanup)
    waited for an answer that never came, and the zygote then idled for 10 minutes."""
    with gated_zygote(tmp_path) as (home, proc):
        assert forkserver.stop(home, timeout_s=10) == proc.pid
        assert proc.wait(timeout=10) is not None
        assert not forkserver.preloading(home)
