"""The preloaded fork server behind process.spawn: real zygotes, real workers, the scripted Messages API on loopback.

Most tests share one zygote (module fixture, started explicitly so a slow machine cannot push the first spawn onto
the plain path); the ones about starting, staleness and idling use a home of their own. Every zygote is stopped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent_fleet_mcp.runners import containment, forkserver, process, started
from agent_fleet_mcp.runners.anthropic import AnthropicRunner
from agent_fleet_mcp.runners.base import LaunchPlan, TurnRequest
from agent_fleet_mcp.runners.process import Spawned, TurnFiles
from agent_fleet_mcp.spec import AgentSpec
from agent_fleet_mcp.testing import Reply, ScriptedModelServer, ToolCall

BOOT_S = 60.0  # generous: a loaded CI box may take a while to import anthropic


def base_env(home: Path, base_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "AGENT_FLEET_", "CLAUDE"))}
    env.pop("PYTHONPATH", None)
    env.update(ANTHROPIC_BASE_URL=base_url, ANTHROPIC_API_KEY="test", AGENT_FLEET_MAX_RETRIES="0")
    env.update(AGENT_FLEET_HOME=str(home), **extra)
    return env


@dataclass
class Turn:
    files: TurnFiles
    spawned: Spawned

    @property
    def pid(self) -> int:
        return self.spawned.pid

    def wait(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while (code := process.exit_code(self.files, self.pid)) is None:
            assert time.monotonic() < deadline, f"turn {self.pid} did not end: {self.files.err.read_text()}"
            time.sleep(0.02)
        return code

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.files.out.read_text().splitlines()]


def plan_for(
    home: Path, srv: ScriptedModelServer, work: Path, name: str, prompt: str = "say hi", **env: str
) -> LaunchPlan:
    cwd = work / "proj"
    cwd.mkdir(parents=True, exist_ok=True)
    req = TurnRequest(agent_id=name, agent_name=name, turn=1, prompt=prompt, spec=AgentSpec(), cwd=cwd,
                      agent_dir=work / name, env=base_env(home, srv.base_url, **env))  # fmt: skip
    return AnthropicRunner().build(req)


def start_turn(home: Path, srv: ScriptedModelServer, work: Path, name: str, **env: str) -> Turn:
    files = TurnFiles.for_turn(work / name / "turns", 1)
    return Turn(files, process.spawn(plan_for(home, srv, work, name, **env), files))


def forked_by_zygote(home: Path, pid: int) -> bool:
    return f" spawned pid={pid} " in (home / "logs" / forkserver.LOG_NAME).read_text()


def started_plain(pid: int) -> bool:
    """The plain path's sh wrapper is our child (a zombie until exit_code reaps it)."""
    return psutil.Process(pid).ppid() == os.getpid()


def normalized(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k not in ("ts", "pid")} for e in events]


def wait_started_zygote(home: Path) -> dict[str, Any]:
    deadline = time.monotonic() + BOOT_S
    while (st := forkserver.status(home)) is None:
        assert time.monotonic() < deadline, (home / "logs" / forkserver.LOG_NAME).read_text()
        time.sleep(0.05)
    return st


def wait_gone(pid: int, timeout: float = 15) -> None:
    try:
        p = psutil.Process(pid)
        deadline = time.monotonic() + timeout
        while p.is_running() and p.status() != psutil.STATUS_ZOMBIE:  # nobody may reap it here (pid 1)
            assert time.monotonic() < deadline, f"{pid} still running"
            time.sleep(0.05)
    except psutil.NoSuchProcess:
        pass


def pids_in_group(pgid: int) -> list[int]:
    """Live (non-zombie) processes of the group, from /proc (as tests/conftest.py's fixture does)."""
    out: list[int] = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields and int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


def make_home(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


@pytest.fixture
def slow_reach(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let a spawn wait for a zygote that is still importing, however slow this machine is."""
    monkeypatch.setattr(forkserver, "REACH_TIMEOUT_S", BOOT_S)


@pytest.fixture
def fresh_home(tmp_path: Path) -> Iterator[Path]:
    home = make_home(tmp_path / "home")
    yield home
    forkserver.stop(home)


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = make_home(tmp_path_factory.mktemp("fs") / "home")
    forkserver.launch(home, env=os.environ, idle_s=300)
    wait_started_zygote(home)
    yield home
    forkserver.stop(home)


@pytest.fixture
def srv() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer() as s:
        yield s


# -- the turn itself -------------------------------------------------------------------------------------------


def test_same_transcript_and_exit_code_as_the_plain_path(shared_home: Path, tmp_path: Path) -> None:
    with ScriptedModelServer([Reply("hello there"), Reply("hello there")]) as srv:
        forked = start_turn(shared_home, srv, tmp_path, "forked")
        plain = start_turn(shared_home, srv, tmp_path, "plain", AGENT_FLEET_FORKSERVER="0")
        assert started_plain(plain.pid)
        assert (forked.wait(), plain.wait()) == (0, 0), forked.files.err.read_text()
    assert forked_by_zygote(shared_home, forked.pid) and not forked_by_zygote(shared_home, plain.pid)
    assert [e["type"] for e in forked.events()] == ["started", "text", "usage", "result"]
    assert normalized(forked.events()) == normalized(plain.events())
    if containment.detect().mode == "pidns":  # the worker runs as init of the turn's PID namespace
        assert forked.events()[0]["pid"] == 1
    else:  # the worker runs in the forked child itself
        assert forked.events()[0]["pid"] == forked.pid
    assert forked.files.exit.read_text() == "0\n"  # the same exit file, readable after a restart (no pid)
    reaped = rf" reaped pid={forked.pid} code=0 cpu_ms=[\d.]+ faults=\d+"  # what bench/turn_start.py reads
    deadline = time.monotonic() + 30
    while not re.search(reaped, (shared_home / "logs" / forkserver.LOG_NAME).read_text()):
        assert time.monotonic() < deadline, "the fork server did not log the turn's resource use when it reaped it"
        time.sleep(0.02)
    assert process.exit_code(forked.files) == 0
    assert [r.body["messages"] for r in srv.message_requests[:1]] == [
        r.body["messages"] for r in srv.message_requests[1:]
    ]


def test_a_contained_turn_is_one_process_the_init_of_its_namespace(
    shared_home: Path, tmp_path: Path, srv: ScriptedModelServer
) -> None:
    """Where turns get namespaces, the zygote clones the child straight into them: the pid the server follows is
    the namespace's init (PID 1 inside), the worker itself, with nothing of the turn outside the namespace. Before,
    a forked child entered them by forking the init and waiting for it: two processes of 83 MB per turn."""
    if containment.detect().mode != "pidns" or not containment.can_clone():
        pytest.skip(f"no turn namespaces by clone(2) here: {'; '.join(containment.detect().why_not)}")
    srv.latency_s = 30  # hold the turn mid-request
    turn = start_turn(shared_home, srv, tmp_path, "clone")
    try:
        assert srv.wait_for_requests(1, timeout=30)
        status = Path(f"/proc/{turn.pid}/status").read_text()
        nspid = next(line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:"))
        assert nspid[0] == str(turn.pid) and nspid[-1] == "1"  # the outer pid is PID 1 of the turn's namespace
        assert psutil.Process(turn.pid).children(recursive=True) == []  # the worker itself: nothing forked
        assert psutil.Process(turn.pid).ppid() == forkserver.status(shared_home)["pid"]  # type: ignore[index]
        assert started.marker_path(turn.files.exit).read_text() == f"{turn.pid}\n"  # the server's pid for it, not 1
    finally:
        process.kill_group(turn.pid, turn.spawned.start_time, grace_s=1)
    assert turn.wait() != 0


def test_where_clone_is_refused_the_child_forks_the_init_and_waits(
    shared_home: Path, tmp_path: Path, srv: ScriptedModelServer
) -> None:
    """The path for a kernel that refuses clone(2) with namespaces (forced here): the forked child takes the marker,
    enters the namespaces and forks the worker as their init, then waits for it. The same turn comes out."""
    if containment.detect().mode != "pidns":
        pytest.skip(f"no turn namespaces here: {'; '.join(containment.detect().why_not)}")
    srv.latency_s = 30
    turn = start_turn(shared_home, srv, tmp_path, "forked", AGENT_FLEET_FORKSERVER_CLONE="0")
    try:
        assert srv.wait_for_requests(1, timeout=30)
        status = Path(f"/proc/{turn.pid}/status").read_text()
        nspid = next(line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:"))
        assert nspid == [str(turn.pid)]  # outside the namespace: it waits for the init it forked
        [init] = psutil.Process(turn.pid).children()
        init_status = Path(f"/proc/{init.pid}/status").read_text()
        assert next(line for line in init_status.splitlines() if line.startswith("NSpid:")).split()[-1] == "1"
        assert started.marker_path(turn.files.exit).read_text() == f"{turn.pid}\n"
    finally:
        process.kill_group(turn.pid, turn.spawned.start_time, grace_s=1)
    assert turn.wait() != 0
    with ScriptedModelServer([Reply("done")]) as quick:
        done = start_turn(shared_home, quick, tmp_path, "forked-whole", AGENT_FLEET_FORKSERVER_CLONE="0")
        assert done.wait() == 0, done.files.err.read_text()
    assert [e["type"] for e in done.events()] == ["started", "text", "usage", "result"]
    assert done.events()[0]["pid"] == 1 and forked_by_zygote(shared_home, done.pid)


def test_child_gets_its_own_session_cwd_env_and_stdio(
    shared_home: Path, tmp_path: Path, srv: ScriptedModelServer
) -> None:
    srv.latency_s = 30  # hold the turn mid-request
    turn = start_turn(shared_home, srv, tmp_path, "probe")
    try:
        assert srv.wait_for_requests(1, timeout=30)
        p = psutil.Process(turn.pid)
        assert os.getpgid(turn.pid) == turn.pid and os.getsid(turn.pid) == turn.pid
        assert p.ppid() == forkserver.status(shared_home)["pid"]  # type: ignore[index]
        assert p.cwd() == str(tmp_path / "proj")
        # The env was replaced: the request reached this server through the plan's ANTHROPIC_BASE_URL (the zygote has
        # none). /proc/PID/environ still shows the zygote's exec-time block, as for any forked process.
        assert srv.message_requests[0].body["messages"][0]["content"][0]["text"] == "say hi"
        fds = {n: os.readlink(f"/proc/{turn.pid}/fd/{n}") for n in (0, 1, 2)}
        assert fds == {0: str(turn.files.prompt), 1: str(turn.files.out), 2: str(turn.files.err)}
        assert not [f for f in p.open_files() if forkserver.LOCK_NAME in f.path]  # the home lock stays the zygote's
        assert process.is_alive(turn.pid, turn.spawned.start_time)
    finally:
        process.kill_group(turn.pid, turn.spawned.start_time, grace_s=5)


def test_forked_child_of_an_already_started_turn_runs_nothing(
    shared_home: Path, tmp_path: Path, srv: ScriptedModelServer
) -> None:
    """A second spawn of a turn whose started marker exists (runners/started.py): the forked child exits 75 before
    the entry runs; no model request, no transcript, and the zygote leaves the first run's exit file alone."""
    files = TurnFiles.for_turn(tmp_path / "dup" / "turns", 1)
    files.out.parent.mkdir(parents=True)
    started.marker_path(files.exit).write_text(f"{os.getpid()}\n")  # the first run (alive: this process)
    plan = plan_for(shared_home, srv, tmp_path, "dup")
    assert plan.preload is not None
    with open(os.devnull, "rb") as i, open(files.out, "ab") as o, open(files.err, "ab") as e:
        pid = forkserver.spawn(
            shared_home, entry=plan.preload, args=plan.argv[3:], env=plan.env, cwd=plan.cwd, exit_file=files.exit,
            stdio=(i.fileno(), o.fileno(), e.fileno()),
        )  # fmt: skip
    log = shared_home / "logs" / forkserver.LOG_NAME
    deadline = time.monotonic() + 30
    while f"reaped pid={pid} code={started.DUPLICATE_EXIT}" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.05)
    assert not files.exit.exists() and files.out.read_text() == "" and srv.message_requests == []
    assert process.spawn(plan, files).pid == os.getpid()  # the spawn path adopts the marker's process instead


# -- exit files and kills -------------------------------------------------------------------------------------


def test_kill_group_sigterm_cancels_the_worker_exit_1(
    shared_home: Path, tmp_path: Path, srv: ScriptedModelServer
) -> None:
    srv.latency_s = 30
    turn = start_turn(shared_home, srv, tmp_path, "term")
    assert srv.wait_for_requests(1, timeout=30)
    assert process.kill_group(turn.pid, turn.spawned.start_time, grace_s=10)
    assert pids_in_group(turn.pid) == []
    assert not process.is_alive(turn.pid, turn.spawned.start_time)
    assert turn.wait() == 1
    assert turn.files.exit.read_text() == "1\n"
    assert turn.events()[-1]["type"] == "result" and turn.events()[-1]["reason"] == "cancelled"


def test_sigkill_exit_file_137_written_by_the_zygote(
    shared_home: Path, tmp_path: Path, srv: ScriptedModelServer
) -> None:
    srv.latency_s = 30
    turn = start_turn(shared_home, srv, tmp_path, "kill")
    assert srv.wait_for_requests(1, timeout=30)
    os.killpg(turn.pid, signal.SIGKILL)
    assert turn.wait() == 137  # the zygote reaps the child and writes 128+9, like sh
    assert turn.files.exit.read_text() == "137\n"
    assert pids_in_group(turn.pid) == []
    assert not process.kill_group(turn.pid, turn.spawned.start_time, grace_s=1)  # nothing left to signal


def test_two_concurrent_spawns_start_one_zygote_in_a_deep_home(tmp_path: Path, slow_reach: None) -> None:
    home = make_home(tmp_path / ("deep-" * 16) / "home")
    assert len(str(forkserver.socket_path(home))) > 108  # too long for sun_path: reached through /proc/self/fd
    try:
        with ScriptedModelServer([Reply("one"), Reply("two")]) as srv, ThreadPoolExecutor(2) as pool:
            turns = list(pool.map(partial(start_turn, home, srv, tmp_path), ["a", "b"]))
            assert [t.wait() for t in turns] == [0, 0]
        assert all(forked_by_zygote(home, t.pid) for t in turns)
        assert sorted(t.events()[1]["text"] for t in turns) == ["one", "two"]
        log = (home / "logs" / forkserver.LOG_NAME).read_text()
        assert log.count(" serving ") == 1, log
    finally:
        forkserver.stop(home)


def test_child_gets_the_callers_umask(shared_home: Path, tmp_path: Path) -> None:
    # the probe is a file the agent writes in its cwd (files under the fleet home are 0600 whatever the umask)
    script = [ToolCall("write_file", {"path": "probe.txt", "content": "x"}), Reply("done")]
    with ScriptedModelServer(script) as srv:
        cwd = tmp_path / "proj"
        cwd.mkdir()
        req = TurnRequest(agent_id="umask", agent_name="umask", turn=1, prompt="write", cwd=cwd,
                          spec=AgentSpec(permission="readwrite"), agent_dir=tmp_path / "umask",
                          env=base_env(shared_home, srv.base_url))  # fmt: skip
        files = TurnFiles.for_turn(tmp_path / "umask" / "turns", 1)
        old = os.umask(0o027)  # the shared zygote was started under another one
        try:
            turn = Turn(files, process.spawn(AnthropicRunner().build(req), files))
        finally:
            os.umask(old)
        assert turn.wait() == 0 and forked_by_zygote(shared_home, turn.pid)
    assert (cwd / "probe.txt").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "umask" / "history.json").stat().st_mode & 0o777 == 0o600


# -- starting, staleness, fallback ---------------------------------------------------------------------------


def test_stale_zygote_is_retired_and_replaced(fresh_home: Path, tmp_path: Path, slow_reach: None) -> None:
    """A zygote running other code (a copy of the package: another path, other mtimes) is told to go."""
    old_code = tmp_path / "old"
    src = Path(forkserver.__file__).parents[1]
    shutil.copytree(src, old_code / src.name, ignore=shutil.ignore_patterns("__pycache__"))
    forkserver.launch(fresh_home, env={**os.environ, "PYTHONPATH": str(old_code)}, idle_s=300)
    old = wait_started_zygote(fresh_home)
    assert old["stamp"] != forkserver.code_stamp()
    with ScriptedModelServer([Reply("fresh")]) as srv:
        turn = start_turn(fresh_home, srv, tmp_path, "a")
        assert turn.wait() == 0
    new = forkserver.status(fresh_home)
    assert new is not None and new["pid"] != old["pid"] and new["stamp"] == forkserver.code_stamp()
    assert forked_by_zygote(fresh_home, turn.pid)
    wait_gone(old["pid"])
    assert "retiring reason=stale" in (fresh_home / "logs" / forkserver.LOG_NAME).read_text()


SPAWN_ONE = """
import json, os, sys
from pathlib import Path
from agent_fleet_mcp.runners import forkserver
home = Path(sys.argv[1])
stdio = tuple(os.open(os.devnull, os.O_RDWR) for _ in range(3))
pid = forkserver.spawn(home, entry="agent_fleet_mcp.worker.__main__:main", args=[], env=dict(os.environ), cwd=home,
                       exit_file=home / (sys.argv[2] + ".exit"), stdio=stdio, timeout_s=60)
print(json.dumps({"pid": pid, "zygote": forkserver.status(home)["pid"]}))
"""


def test_a_code_change_on_disk_retires_the_zygote_at_the_next_spawn(fresh_home: Path, tmp_path: Path) -> None:
    """An edit in place (no new file, the folder's mtime unchanged) made before a spawn is asked for is seen by
    that spawn: the zygote looks at the code on disk for every batch of spawns it takes, after they connected."""
    copy = tmp_path / "code"
    src = Path(forkserver.__file__).parents[1]
    shutil.copytree(src, copy / src.name, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(copy), "AGENT_FLEET_FORKSERVER_IDLE_S": "300"}

    def spawn(n: str) -> dict[str, int]:
        out = subprocess.run([sys.executable, "-c", SPAWN_ONE, str(fresh_home), n], env=env, capture_output=True,
                             text=True, timeout=120, check=True)  # fmt: skip
        return json.loads(out.stdout)

    first = spawn("0001")
    module = copy / src.name / "text.py"
    module.write_text(module.read_text() + "# edited in place\n")  # same file, new size and mtime
    second = spawn("0002")
    assert second["zygote"] != first["zygote"]
    assert "retiring reason=stale: the code changed on disk" in (fresh_home / "logs" / forkserver.LOG_NAME).read_text()
    wait_gone(first["zygote"])


def test_disabled_by_env_spawns_plain(fresh_home: Path, tmp_path: Path, srv: ScriptedModelServer) -> None:
    turn = start_turn(fresh_home, srv, tmp_path, "a", AGENT_FLEET_FORKSERVER="0")
    assert started_plain(turn.pid)
    assert turn.wait() == 0
    assert forkserver.status(fresh_home) is None and not forkserver.socket_path(fresh_home).exists()


def test_no_fleet_home_spawns_plain(tmp_path: Path, srv: ScriptedModelServer) -> None:
    turn = start_turn(tmp_path / "missing", srv, tmp_path, "a")
    assert started_plain(turn.pid)
    assert turn.wait() == 0


def test_unusable_socket_path_falls_back_within_the_reach_timeout(
    fresh_home: Path, tmp_path: Path, srv: ScriptedModelServer
) -> None:
    forkserver.socket_path(fresh_home).mkdir()  # nobody can listen there
    t0 = time.monotonic()
    first = start_turn(fresh_home, srv, tmp_path, "a")
    assert time.monotonic() - t0 < forkserver.REACH_TIMEOUT_S + 2
    t1 = time.monotonic()
    second = start_turn(fresh_home, srv, tmp_path, "b")
    assert time.monotonic() - t1 < 1.0  # a zygote that failed is not waited for again right away
    assert started_plain(first.pid) and started_plain(second.pid)
    assert (first.wait(), second.wait()) == (0, 0)
    forkserver.socket_path(fresh_home).rmdir()


def test_dead_zygotes_socket_is_replaced(
    fresh_home: Path, tmp_path: Path, srv: ScriptedModelServer, slow_reach: None
) -> None:
    with socket.socket(socket.AF_UNIX) as s:  # a socket file nobody listens on (a zygote that was SIGKILLed)
        s.bind(str(forkserver.socket_path(fresh_home)))
    turn = start_turn(fresh_home, srv, tmp_path, "a")
    assert turn.wait() == 0 and forked_by_zygote(fresh_home, turn.pid)
    assert forkserver.socket_path(fresh_home).stat().st_mode & 0o777 == 0o600


STARTER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from agent_fleet_mcp.runners import forkserver, process, started
    from agent_fleet_mcp.runners.anthropic import AnthropicRunner
    from agent_fleet_mcp.runners.base import TurnRequest
    from agent_fleet_mcp.spec import AgentSpec
    import os
    forkserver.REACH_TIMEOUT_S = 60
    work = Path(sys.argv[1])
    (work / "proj").mkdir(exist_ok=True)
    req = TurnRequest(agent_id="s", agent_name="s", turn=1, prompt="say hi", spec=AgentSpec(), cwd=work / "proj",
                      agent_dir=work / "s", env=dict(os.environ))
    files = process.TurnFiles.for_turn(work / "s" / "turns", 1)
    spawned = process.spawn(AnthropicRunner().build(req), files)
    while process.exit_code(files, spawned.pid) is None:
        time.sleep(0.02)
    """
)


def test_zygote_is_detached_from_its_starter_and_idles_out(fresh_home: Path, tmp_path: Path, slow_reach: None) -> None:
    with ScriptedModelServer([Reply("from the starter"), Reply("from the test")]) as srv:
        env = base_env(fresh_home, srv.base_url, AGENT_FLEET_FORKSERVER_IDLE_S="10")  # reachable again when loaded
        starter = subprocess.Popen(
            [sys.executable, "-c", STARTER, str(tmp_path)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        # EOF on the pipe once the starter exits: the zygote holds neither its stdout nor its stderr.
        out, err = starter.communicate(timeout=BOOT_S + 30)
        assert starter.returncode == 0, err
        assert out == b""
        zygote = forkserver.status(fresh_home)
        assert zygote is not None  # outlived its starter
        pid = zygote["pid"]
        assert psutil.Process(pid).ppid() != starter.pid and os.getsid(pid) not in (os.getsid(0), starter.pid)
        assert {os.readlink(f"/proc/{pid}/fd/{n}") for n in (0, 1)} == {os.devnull}
        assert (tmp_path / "s" / "turns" / "0001.exit").read_text() == "0\n"
        turn = start_turn(fresh_home, srv, tmp_path, "t")  # another "server" uses the same zygote
        assert turn.wait() == 0 and forked_by_zygote(fresh_home, turn.pid)
    wait_gone(pid, timeout=60)  # idle 10 s with no live child: it exits
    assert not forkserver.socket_path(fresh_home).exists()
    assert "retiring reason=idle" in (fresh_home / "logs" / forkserver.LOG_NAME).read_text()


def test_only_whitelisted_entries_are_forked(shared_home: Path, tmp_path: Path) -> None:
    with open(os.devnull, "rb") as null, pytest.raises(forkserver.Unavailable, match="not a fork server entry"):
        forkserver.spawn(shared_home, entry="os:system", args=["true"], env={}, cwd=tmp_path,
                         exit_file=tmp_path / "x.exit", stdio=(n := null.fileno(), n, n))  # fmt: skip
    with socket.socket(socket.AF_UNIX) as s, open(os.devnull, "rb") as null:  # a hand-made request is refused too
        s.connect(str(forkserver.socket_path(shared_home)))
        request: dict[str, Any] = {
            "op": "spawn", "install": forkserver.install_id(), "entry": "os:system", "args": ["true"], "env": {}
        }  # fmt: skip
        request |= {"cwd": str(tmp_path), "exit": str(tmp_path / "x.exit"), "deadline": time.time() + 9}
        forkserver.send_message(s, request, [null.fileno()] * 3)
        assert "refused" in forkserver.recv_message(s)[0]["error"]
    assert forkserver.socket_path(shared_home).stat().st_mode & 0o777 == 0o600


def test_a_spawn_waiting_for_its_ack_does_not_hold_up_the_next(
    shared_home: Path, tmp_path: Path, srv: ScriptedModelServer
) -> None:
    """The zygote forks, hands out the pid and waits for the client's ack without blocking its loop: a second spawn
    is served meanwhile (one after another, 20 turns spawned at once took ~1 s), and the first child still runs once
    its ack comes. Before, the zygote sat on the first connection until the ack's 2 s timeout and abandoned it."""
    plan = plan_for(shared_home, srv, tmp_path, "held", prompt="first")
    assert plan.preload is not None
    held_files = TurnFiles.for_turn(tmp_path / "held" / "turns", 1)
    held_files.out.parent.mkdir(parents=True)
    held_files.prompt.write_text(plan.stdin_text or "")
    with socket.socket(socket.AF_UNIX) as s, open(held_files.prompt, "rb") as i, open(held_files.out, "ab") as o, \
            open(held_files.err, "ab") as e:  # fmt: skip
        s.connect(str(forkserver.socket_path(shared_home)))
        request: dict[str, Any] = {
            "op": "spawn", "install": forkserver.install_id(), "entry": plan.preload, "args": plan.argv[3:],
            "env": plan.env, "cwd": str(plan.cwd), "exit": str(held_files.exit), "deadline": time.time() + 30,
        }  # fmt: skip
        forkserver.send_message(s, request, [i.fileno(), o.fileno(), e.fileno()])
        held_pid = int(forkserver.recv_message(s)[0]["pid"])  # forked, waiting for our ack
        second = start_turn(shared_home, srv, tmp_path, "second")  # served while the first is not acked
        forkserver.send_message(s, {"ack": True})
    assert second.wait() == 0 and forked_by_zygote(shared_home, second.pid)
    assert Turn(held_files, Spawned(held_pid, 0.0)).wait() == 0, held_files.err.read_text()
    assert {r.body["messages"][0]["content"][0]["text"] for r in srv.message_requests} == {"first", "say hi"}


# -- spares: children forked ahead of the spawns ---------------------------------------------------------------


# These zygotes make their spares whatever the machine's load (spare_idle_cores=0): a CI box running the suite on
# both cores may never have half a core idle, and the wait for spares would time out.


def wait_spares(home: Path, n: int, *, other_than: frozenset[int] = frozenset()) -> list[int]:
    """The zygote's spares once it holds ``n`` of them, none of ``other_than``."""
    deadline = time.monotonic() + BOOT_S
    while True:
        st = forkserver.status(home)
        spares = [] if st is None else [int(p) for p in st["spares"]]
        if len(spares) == n and not other_than & set(spares):
            return spares
        assert time.monotonic() < deadline, (st, (home / "logs" / forkserver.LOG_NAME).read_text())
        time.sleep(0.05)


def test_spares_are_forked_ahead_and_take_the_next_spawns(fresh_home: Path, tmp_path: Path) -> None:
    """The zygote keeps `--spares` children forked ahead; a spawn hands its turn to one (no fork on its path) and
    the turn is the same as a forked one; once the spawns are over, new spares replace the used ones."""
    forkserver.launch(fresh_home, env=os.environ, idle_s=300, spares=2, spare_idle_cores=0)
    ahead = wait_spares(fresh_home, 2)
    with ScriptedModelServer([Reply("one"), Reply("two"), Reply("three")]) as srv:
        turns = [start_turn(fresh_home, srv, tmp_path, name) for name in ("a", "b", "c")]
        assert [t.wait() for t in turns] == [0, 0, 0], [t.files.err.read_text() for t in turns]
    assert [t.pid for t in turns[:2]] == ahead  # the oldest spare first
    assert turns[2].pid not in ahead and forked_by_zygote(fresh_home, turns[2].pid)  # none left: forked
    # the three run side by side: which one's request reaches the model first (and gets "one") is theirs to race
    results = [[e["text"] for e in t.events() if e["type"] == "result"] for t in turns]
    assert sorted(results) == [["one"], ["three"], ["two"]], results
    log = (fresh_home / "logs" / forkserver.LOG_NAME).read_text()
    assert all(f" spawned pid={t.pid} " in log for t in turns)
    assert f" spawned pid={ahead[0]} " in log and "spare=True" in log.split(f" spawned pid={ahead[0]} ")[1][:200]
    wait_spares(fresh_home, 2, other_than=frozenset(t.pid for t in turns))  # made again, quietly


def test_spares_leave_with_the_zygote_having_run_nothing(fresh_home: Path, tmp_path: Path) -> None:
    """A spare is not a turn: it holds no zygote alive (idle retire counts turns only), and when the zygote retires
    each spare sees its socket close and exits."""
    forkserver.launch(fresh_home, env=os.environ, idle_s=5, spares=3, spare_idle_cores=0)  # idle from serving on
    spares = wait_spares(fresh_home, 3)
    zygote = forkserver.status(fresh_home)
    assert zygote is not None and zygote["children"] == []
    for pid in [zygote["pid"], *spares]:
        wait_gone(pid, timeout=60)  # idle 5 s, spares or not
    log = (fresh_home / "logs" / forkserver.LOG_NAME).read_text()
    assert "retiring reason=idle" in log and " reaped " not in log and "spare_died" not in log


def test_a_spare_that_died_waiting_costs_no_turn(fresh_home: Path, tmp_path: Path) -> None:
    """A spare killed while it waits (the OOM killer, a person) is reaped and forgotten; the next spawn forks. (One
    that dies just as it gets its turn is a child that died before its ready: the spawn goes the plain way.)"""
    forkserver.launch(fresh_home, env=os.environ, idle_s=300, spares=1, spare_idle_cores=0)
    [spare] = wait_spares(fresh_home, 1)
    os.kill(spare, signal.SIGKILL)
    log = fresh_home / "logs" / forkserver.LOG_NAME
    deadline = time.monotonic() + 30
    while f" spare_died pid={spare} code=137" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)
    with ScriptedModelServer([Reply("still here")]) as srv:
        turn = start_turn(fresh_home, srv, tmp_path, "t")
        assert turn.wait() == 0, turn.files.err.read_text()
    assert turn.pid != spare and forked_by_zygote(fresh_home, turn.pid)
    assert [e["text"] for e in turn.events() if e["type"] == "result"] == ["still here"]


def test_spares_follow_the_concurrency_cap_unless_set() -> None:
    assert forkserver.spares_from({}) == 8  # the default cap of running turns
    assert forkserver.spares_from({"AGENT_FLEET_MAX_CONCURRENT": "3"}) == 3
    assert forkserver.spares_from({"AGENT_FLEET_MAX_CONCURRENT": "500"}) == forkserver.SPARES_BY_DEFAULT_AT_MOST
    assert forkserver.spares_from({"AGENT_FLEET_MAX_CONCURRENT": "500"}, cap=20) == 20  # the server's own setting
    assert forkserver.spares_from({forkserver.SPARES_ENV: "0"}, cap=20) == 0
    assert forkserver.spares_from({forkserver.SPARES_ENV: "1000"}) == forkserver.MAX_SPARES
    assert forkserver.spares_from({forkserver.SPARES_ENV: "many", "AGENT_FLEET_MAX_CONCURRENT": "5"}) == 5
