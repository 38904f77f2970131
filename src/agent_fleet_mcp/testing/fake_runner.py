"""An in-process fake of the runner and of the process layer, so fleet logic is unit-tested without processes.

``FakeRunner`` is both seams of ``Fleet`` (fleet.py): the ``Runner`` every runner name maps to (``runner_for``) and
the ``Processes`` the supervisor spawns, watches and kills turns through (supervisor.py), plus a clock a test moves
on. A turn "runs" from ``spawn`` until the test ends it; its events go to its real transcript file, so the supervisor
reads, folds and records them exactly as a real turn's::

    fake = FakeRunner()                  # every turn writes a `started` event, then runs until the test ends it
    fleet = Fleet(settings, store, runner_for=fake.runner_for, processes=fake, clock=fake.clock)
    async with fleet.running():
        await fleet.create_agent(name="a", prompt="go")
        turn = await fake.wait_started("a", 1)
        turn.emit("text", text="working")
        turn.succeed("done")             # or turn.fail("boom"); turn.exit(3) (no result); or leave it running

Pids handed out are above the kernel's largest pid (2**22), so a fake pid can never name a real process. Share one
``FakeRunner`` between several fleets on one home: it is their common process table.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from agent_fleet_mcp.events import Event, EventType, dumps, loads, make
from agent_fleet_mcp.runners.base import LaunchPlan, Runner, TurnRequest, result_from_exit
from agent_fleet_mcp.runners.process import Spawned, TurnFiles
from agent_fleet_mcp.spec import AgentSpec

FIRST_PID = 5_000_000  # > 2**22, the largest pid_max Linux allows
KILLED_EXIT = -15  # what a real turn killed by SIGTERM exits with


@dataclass
class FakeTurn:
    """One spawned turn. Its methods are what its process would do; call them from the test."""

    agent_id: str
    agent_name: str
    n: int
    prompt: str
    pid: int
    files: TurnFiles
    exit_code: int | None = None
    alive: bool = True
    killed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # the write ends of exit_fd's pipes, each closed exactly once: at the exit, or with the turn if a test leaves it
    # running (a second close would close whatever descriptor reused the number)
    _exit_ws: list[Callable[[], object]] = field(default_factory=list[Callable[[], object]], repr=False)

    def exit_fd(self) -> int | None:
        """Like a pidfd: a descriptor that turns readable (EOF) when this turn exits; None once it has."""
        with self._lock:
            if not self.alive:
                return None
            r, w = os.pipe()
            self._exit_ws.append(weakref.finalize(self, _close_quietly, w))
            return r

    def emit(self, type_: EventType, /, **fields: Any) -> Event:
        """Write one normalized event to the turn's transcript (what a worker prints)."""
        event = make(type_, **fields)
        with self._lock, open(self.files.out, "a", encoding="utf-8") as f:
            f.write(dumps(event))
        return event

    def succeed(self, text: str = "done") -> None:
        self.emit("result", text=text, is_error=False)
        self.exit(0)

    def fail(self, message: str = "it failed", *, reason: str | None = None) -> None:
        self.emit("error", kind="fake", message=message)
        self.emit("result", text="", is_error=True, reason=reason)
        self.exit(1)

    def exit(self, code: int | None) -> None:
        """The process ends with ``code`` (None: its exit status is unknown) without writing anything more."""
        with self._lock:
            if self.alive:
                self.alive, self.exit_code = False, code
                for close_w in self._exit_ws:
                    close_w()  # a finalizer runs once: never again at collection
                self._exit_ws.clear()


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def started_then_run(turn: FakeTurn) -> None:
    """The default script: announce the turn, then run until the test (or a kill) ends it."""
    turn.emit("started", runner="fake")


def succeed_at_once(turn: FakeTurn) -> None:
    started_then_run(turn)
    turn.succeed(f"did: {turn.prompt}")


class FakeParser:
    """The fake's transcript is already normalized; a turn that ended without a result gets one from its exit."""

    def __init__(self) -> None:
        self.saw_result = False

    def feed(self, line: str) -> list[Event]:
        event = loads(line)
        if event is None:
            return []
        self.saw_result = self.saw_result or event["type"] == "result"
        return [event]

    def finish(self, exit_code: int | None, stderr_tail: str) -> list[Event]:
        return [] if self.saw_result else result_from_exit(exit_code, "", stderr_tail)


class FakeRunner:
    """The runner, the process table and the clock of the fleets that use it (see the module docstring)."""

    name = "fake"

    def __init__(self, script: Callable[[FakeTurn], None] = started_then_run) -> None:
        self.script = script
        self.turns: list[FakeTurn] = []  # in spawn order
        self.max_alive = 0  # the most turns alive at once
        self.offset_s = 0.0
        self._requests: dict[tuple[str, int], TurnRequest] = {}
        self._next_pid = FIRST_PID
        self._lock = threading.Lock()

    # -- the Runner --------------------------------------------------------------------------------------------
    def runner_for(self, name: str) -> Runner:
        return self

    def check_available(self, spec: AgentSpec, env: Mapping[str, str]) -> None:
        return None

    def build(self, req: TurnRequest) -> LaunchPlan:
        with self._lock:
            self._requests[(req.agent_id, req.turn)] = req
        return LaunchPlan(argv=["fake-turn", req.agent_id, str(req.turn)], env={}, cwd=req.cwd, stdin_text=req.prompt)

    def new_parser(self, req: TurnRequest) -> FakeParser:
        return FakeParser()

    # -- the clock ---------------------------------------------------------------------------------------------
    def clock(self) -> float:
        return time.time() + self.offset_s

    def advance(self, seconds: float) -> None:
        """Move the fleets' clock on (timeouts, grace periods) without waiting."""
        self.offset_s += seconds

    # -- the Processes -----------------------------------------------------------------------------------------
    def spawn(self, plan: LaunchPlan, files: TurnFiles) -> Spawned:
        req = self._requests[(plan.argv[1], int(plan.argv[2]))]
        files.out.parent.mkdir(parents=True, exist_ok=True)
        files.out.touch()
        with self._lock:
            turn = FakeTurn(req.agent_id, req.agent_name, req.turn, req.prompt, self._next_pid, files)
            self._next_pid += 1
            self.turns.append(turn)
            self.max_alive = max(self.max_alive, sum(t.alive for t in self.turns))
        self.script(turn)
        return Spawned(pid=turn.pid, start_time=float(turn.pid))

    def is_alive(self, pid: int, start_time: float | None) -> bool:
        turn = self._by_pid(pid)
        return turn is not None and turn.alive

    def exit_fd(self, pid: int, start_time: float | None) -> int | None:
        turn = self._by_pid(pid)
        return None if turn is None else turn.exit_fd()

    def exit_code(self, files: TurnFiles, pid: int | None = None) -> int | None:
        turn = None if pid is None else self._by_pid(pid)
        return None if turn is None else turn.exit_code

    def kill_group(
        self, pid: int, start_time: float | None, *, grace_s: float = 3.0, files: TurnFiles | None = None
    ) -> bool:
        turn = self._by_pid(pid)
        if turn is None or not turn.alive:
            return False
        turn.killed = True
        turn.exit(KILLED_EXIT)
        return True

    def release_turn(self, files: TurnFiles) -> bool:
        return False

    def remove_empty_cgroups(self, home: Path, *, keep: Callable[[str, int], bool]) -> int:
        return 0

    # -- for the test ------------------------------------------------------------------------------------------
    def alive(self) -> list[FakeTurn]:
        with self._lock:
            return [t for t in self.turns if t.alive]

    def find(self, agent_name: str, n: int) -> FakeTurn | None:
        with self._lock:
            return next((t for t in self.turns if t.agent_name == agent_name and t.n == n), None)

    async def wait_started(self, agent_name: str, n: int, *, timeout_s: float = 30.0) -> FakeTurn:
        """The turn once it was spawned (fails after ``timeout_s``: it never was)."""
        with anyio.fail_after(timeout_s):
            while True:
                if (turn := self.find(agent_name, n)) is not None:
                    return turn
                await anyio.sleep(0.005)  # spawn runs in a worker thread: polled, not signalled

    def _by_pid(self, pid: int) -> FakeTurn | None:
        with self._lock:
            return next((t for t in self.turns if t.pid == pid), None)
