"""Turn supervision: starting queued turns under the fleet-wide cap, following running ones, stopping them, and
recovering what a dead server left behind. ``Fleet`` (fleet.py) owns one ``Supervisor`` and is the write-side facade.

Life of a turn: ``queued`` (inserted) -> ``running`` (claimed atomically under the fleet-wide cap, process
spawned, followed by a follower task that folds its transcript into the store) -> ``succeeded | failed |
cancelled | lost``. Intentional stops (delete, replace, timeout, budget) write the final status *before* killing,
so whichever follower sees the death afterwards changes nothing. Every server sharing a fleet home follows every
running turn (idempotent), so a turn is never left ``running`` while some server is up.

Processes are started, watched and killed through ``Processes``: runners/process.py in production, an in-process
fake in unit tests (testing/fake_runner.py).
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import anyio
import anyio.abc
import structlog

from agent_fleet_mcp import budgets, isolation
from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.events import Event
from agent_fleet_mcp.exit_watch import ExitWatch, next_look
from agent_fleet_mcp.followed import Followed, Known, read_new, tokens_of
from agent_fleet_mcp.reader import turn_files, turn_request
from agent_fleet_mcp.runners import process as proc
from agent_fleet_mcp.runners import started as started_mod
from agent_fleet_mcp.runners.base import LaunchPlan, Runner, TurnLimits, TurnRequest
from agent_fleet_mcp.store.models import AgentRow, AgentStatus, TurnEnd, TurnRow
from agent_fleet_mcp.store.protocol import Store
from agent_fleet_mcp.transcript import TranscriptReader
from agent_fleet_mcp.turn_outcome import ended_on_disk, turn_outcome
from agent_fleet_mcp.turn_stats import TurnStats

log = structlog.get_logger("agent_fleet.fleet")

STATS_FLUSH_S = 0.5
ORPHAN_CLAIM_S = 30.0  # a claimed turn with no process after this long was claimed by a server that died
TICK_S = 1.0
CGROUP_SWEEP_S = 30.0  # how often a running server removes the empty turn cgroups left by a dead one
SPAWN_CONCURRENCY = 32  # claimed turns a dispatch spawns at once (each in a worker thread; anyio lends 40)
CLOSED_CHECK_S = 2.0  # how often a follower looks whether another process closed its turn (then stops it)
CLAIM_BATCH = 32  # queued turns claimed per transaction


class Processes(Protocol):
    """What the supervisor does to turn processes. The module runners/process.py is the real one; the blocking
    calls run in worker threads."""

    def spawn(self, plan: LaunchPlan, files: proc.TurnFiles) -> proc.Spawned: ...

    def is_alive(self, pid: int, start_time: float | None) -> bool: ...

    def exit_fd(self, pid: int, start_time: float | None) -> int | None: ...

    def exit_code(self, files: proc.TurnFiles, pid: int | None = None) -> int | None: ...

    def kill_group(
        self, pid: int, start_time: float | None, *, grace_s: float = 3.0, files: proc.TurnFiles | None = None
    ) -> bool: ...

    def release_turn(self, files: proc.TurnFiles) -> bool: ...

    def remove_empty_cgroups(self, home: Path, *, keep: Callable[[str, int], bool]) -> int: ...


class Supervisor:
    """Starts, follows and stops the turns of the fleet home it shares with other servers."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        runner_for: Callable[[str], Runner],
        processes: Processes = proc,
        advance_batches: Callable[[], Awaitable[object]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self._runner_for = runner_for
        self._procs = processes
        self._advance_batches = advance_batches
        self._clock = clock
        self._tg: anyio.abc.TaskGroup | None = None
        self._changed = anyio.Event()
        self._stirred = anyio.Event()  # any change, usage included (notify_spend)
        self._dispatch_lock = anyio.Lock()
        self._spawn_limiter = anyio.CapacityLimiter(SPAWN_CONCURRENCY)
        self._followed: set[tuple[str, int]] = set()
        self._spawning: dict[tuple[str, int], float] = {}  # claimed here, spawn in flight: monotonic time claimed
        self._swept_at: float | None = None  # monotonic time of the last sweep of empty turn cgroups
        self._claimer = started_mod.claimer_identity()
        # Only a server of the host (not one an agent started: AGENT_FLEET_DEPTH > 0) starts, follows and stops turn
        # processes. An agent's turn is contained in its own PID namespace, where the host's pids mean nothing: a
        # server in there only records agents and turns in the shared store, and the host's servers run them.
        self.supervises = settings.depth == 0

    # -- lifecycle -------------------------------------------------------------------------------------------
    @asynccontextmanager
    async def running(self) -> AsyncGenerator[None]:
        """Run the scheduler and the followers for the duration of the block. Agent processes are detached:
        leaving the block stops following them, it does not kill them."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            if self.supervises:
                await self.reconcile()
            tg.start_soon(self._ticker)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()
                self._tg = None

    async def reconcile(self) -> None:
        """Re-attach the live agents' worktrees and prune those of agents that no longer live, adopt running turns
        (follow them; dead ones are closed from their transcript) and start queued ones."""
        await isolation.reattach_and_prune(self.store, self.settings.home)
        await self._adopt_running()
        await self._advance_batches()
        await self.dispatch()

    async def _adopt_running(self) -> None:
        """Follow every running turn; recover the claimed ones whose pid was never recorded (not those this server
        is spawning: for up to ``ORPHAN_CLAIM_S`` their spawn records the pid, or fails the turn). Empty cgroups of
        turns that are over are removed (never a populated one: the kernel refuses) at the server's start and then
        every ``CGROUP_SWEEP_S``: a follower removes its own turn's cgroup when the turn ends, so the sweep is for a
        server that died first (each sweep reads every turn cgroup of the home: on every tick, with 200 turns
        running, it was a twentieth of the server's CPU)."""
        running = await self.store.running_turn_pids()  # a narrow read: the whole rows only where needed
        live = {(agent_id, n) for agent_id, n, _ in running}
        now = time.monotonic()
        if self._swept_at is None or now - self._swept_at >= CGROUP_SWEEP_S:
            self._swept_at = now
            await anyio.to_thread.run_sync(
                lambda: self._procs.remove_empty_cgroups(self.settings.home, keep=lambda a, n: (a, n) in live)
            )
        for agent_id, n, pid in running:
            if pid is not None:
                self._start_follower(agent_id, n)
                continue
            spawning_since = self._spawning.get((agent_id, n))
            if spawning_since is not None and now - spawning_since < ORPHAN_CLAIM_S:
                continue  # this server spawns it right now and records its pid (a wave's ticks looked at each)
            turn = await self.store.get_turn(agent_id, n)  # its claimer may be recording the pid right now
            if turn is not None and turn.status == "running":
                if turn.pid is None:
                    await self._recover_unrecorded(turn)
                else:
                    self._start_follower(agent_id, n)

    async def _recover_unrecorded(self, turn: TurnRow) -> None:
        """A claimed turn without a recorded pid: its claimer is spawning it now, or died in the spawn window. The
        turn's started marker tells whether it ran (runners/started.py): adopt its process (followed, or closed
        from its exit file if gone); no marker and a dead claimer (or an old claim) means it never started:
        queue it again. A late spawn of the old claim cannot run it twice: the marker is taken exclusively."""
        files = self.turn_files(turn.agent_id, turn.n)
        now = self._clock()
        mark = await anyio.to_thread.run_sync(lambda: started_mod.read(files.exit, now=now))
        if mark is not None and mark.pid is not None:
            if await self.store.adopt_turn_process(
                turn.agent_id, turn.n, pid=mark.pid, proc_start=mark.proc_start, out_path=str(files.out)
            ):
                log.info("turn_adopted", agent_id=turn.agent_id, turn=turn.n, pid=mark.pid, alive=mark.alive)
            self._start_follower(turn.agent_id, turn.n)
        elif mark is not None:
            if mark.stale:
                await self.store.finish_turn(
                    turn.agent_id, turn.n, status="lost", reason="started, but its process could not be identified",
                    error="the turn started but its process could not be identified; command the agent again",
                    is_error=True, agent_status="failed",
                )  # fmt: skip
        elif not started_mod.claimer_alive(turn.claimed_by) or now - (turn.started_at or now) > ORPHAN_CLAIM_S:
            await self.store.requeue_turn(turn.agent_id, turn.n)
            log.info("turn_requeued", agent_id=turn.agent_id, turn=turn.n, claimed_by=turn.claimed_by)
            self.notify()

    async def _ticker(self) -> None:
        """Periodic pass for what other processes sharing the home may have changed."""
        while True:
            mark = self._stirred
            with anyio.move_on_after(TICK_S):
                await mark.wait()
            try:
                if self.supervises:
                    await self._adopt_running()
                    await self.enforce_shared_budgets()
                await self._advance_batches()
                await self.dispatch()
            except Exception:  # keep the supervisor alive; the next tick retries
                log.exception("tick_failed")

    def notify(self) -> None:
        """The fleet's state changed (a turn, an agent, a run): wakes the waits, the tick and the notifications."""
        self._changed.set()
        self._changed = anyio.Event()
        self.notify_spend()

    def notify_spend(self) -> None:
        """Only a running turn's usage changed, or a turn was queued: wakes the tick (the shared budgets) and the
        resource notifications, not the waits, which neither can end (in a wave of 200 runs, 400 of the 1,001
        notifications were usage flushes, and each woke every wait for a look at its batch)."""
        self._stirred.set()
        self._stirred = anyio.Event()

    async def stirred(self, within_s: float) -> None:
        """Return when anything changed in this process, usage included, or after ``within_s``."""
        with anyio.move_on_after(within_s):
            await self._stirred.wait()

    def change_mark(self) -> anyio.Event:
        """Take before looking at the state; ``changed(since=mark)`` then also returns for a change made while
        looking (one that a plain ``changed`` afterwards would miss, sleeping a whole poll)."""
        return self._changed

    async def changed(self, within_s: float, *, since: anyio.Event | None = None) -> None:
        """Return when something changed in this process (since ``since``, a ``change_mark``), or after
        ``within_s`` (other processes are polled)."""
        with anyio.move_on_after(within_s):
            await (since or self._changed).wait()

    # -- paths -----------------------------------------------------------------------------------------------
    def agent_dir(self, agent_id: str) -> Path:
        return self.settings.agents_dir / agent_id

    def turn_files(self, agent_id: str, n: int) -> proc.TurnFiles:
        return turn_files(self.settings, agent_id, n)

    def turn_request(self, agent: AgentRow, turn: TurnRow, limits: TurnLimits | None = None) -> TurnRequest:
        return turn_request(self.settings, agent, turn, limits)

    # -- scheduling ------------------------------------------------------------------------------------------
    async def dispatch(self) -> None:
        """Start queued turns, oldest first, while the fleet-wide cap allows (one running turn per agent). A server
        inside an agent starts nothing: the host's servers do (see ``supervises``)."""
        if not self.supervises:
            return
        # the claimed turns spawn side by side, outside the lock once claiming is over; dispatch returns when spawned
        async with anyio.create_task_group() as spawns, self._dispatch_lock:
            while True:
                claimed = await self.store.claim_queued(
                    max_running=self.settings.max_concurrent, claimer=self._claimer, limit=CLAIM_BATCH
                )
                for turn in claimed:  # each one's checks and spawn side by side: the first does not wait for the 31st
                    self._spawning[(turn.agent_id, turn.n)] = time.monotonic()
                    spawns.start_soon(self._start_claimed, turn)
                if len(claimed) < CLAIM_BATCH:
                    break

    async def _start_claimed(self, turn: TurnRow) -> None:
        """A turn this server just claimed: spawn it, unless its agent was deleted meanwhile or a budget refuses. A
        failure is logged (not to cancel its siblings): the turn is recovered like one whose claimer died."""
        try:
            agent = await self.store.get_agent(turn.agent_id)
            if agent is None:  # deleted meanwhile
                await self.store.finish_turn(turn.agent_id, turn.n, status="cancelled", reason="agent deleted")
                return
            spent = await budgets.agent_spent(self.store, agent.id, exclude_turn=turn.n)  # its follower's too
            limits = await budgets.turn_limits(self.store, self.settings, agent, now=self._clock(), spent=spent)
            if not await self._refused(agent, turn, limits):
                await self._spawn(agent, turn, limits, spent)
        except Exception:
            log.exception("start_claimed_failed", agent_id=turn.agent_id, turn=turn.n)
        finally:
            self._spawning.pop((turn.agent_id, turn.n), None)

    async def _refused(self, agent: AgentRow, turn: TurnRow, limits: TurnLimits) -> bool:
        """A budget ran out while the claimed turn was queued: close it (it never starts) and say so."""
        before = await self.store.count_turns(agent.id, "succeeded", "failed", "lost")
        stop = budgets.refusal(agent, self.settings, limits, turns_before=before)
        if stop is None:
            return False
        await self.store.finish_turn(
            agent.id, turn.n, status="failed", reason=stop.reason, error=stop.message, is_error=True,
            agent_status="failed",
        )  # fmt: skip
        log.info("turn_refused", agent=agent.name, turn=turn.n, reason=stop.reason)
        self.notify()
        return True

    async def _spawn(self, agent: AgentRow, turn: TurnRow, limits: TurnLimits, spent: budgets.Spent) -> None:
        """Start one claimed turn (dispatch runs these side by side, at most SPAWN_CONCURRENCY at once). A failure
        after the spawn is logged (not to cancel its siblings): the turn is recovered like one whose claimer died."""
        try:
            async with self._spawn_limiter:
                await self._spawn_claimed(agent, turn, limits, spent)
        except Exception:
            log.exception("spawn_task_failed", agent=agent.name, turn=turn.n)

    async def _spawn_claimed(self, agent: AgentRow, turn: TurnRow, limits: TurnLimits, spent: budgets.Spent) -> None:
        await isolation.before_turn(self.store, agent, turn.n)  # its worktree is there, earlier work committed
        req = self.turn_request(agent, turn, limits)
        files = self.turn_files(agent.id, turn.n)
        try:
            runner = self._runner_for(agent.spec.runner)
            # the plan is built in the spawn's worker thread: it writes files (the system prompt, a CLI's settings),
            # and each blocking call on the event loop's thread waits its turn for the GIL behind the spawn threads
            spawned = await anyio.to_thread.run_sync(lambda: self._procs.spawn(runner.build(req), files))
        except Exception as exc:
            msg = f"could not start the turn: {exc}"
            log.warning("spawn_failed", agent=agent.name, turn=turn.n, error=str(exc))
            await self.store.finish_turn(
                agent.id, turn.n, status="failed", reason="spawn_failed", error=msg, is_error=True,
                agent_status="failed",
            )  # fmt: skip
            self.notify()
            return
        if not await self.store.set_turn_process(
            agent.id, turn.n, pid=spawned.pid, proc_start=spawned.start_time, out_path=str(files.out),
            model=agent.spec.model,
        ):  # fmt: skip
            await self._not_running_after_spawn(agent, turn, files, spawned)
            return
        log.info("turn_started", agent=agent.name, turn=turn.n, pid=spawned.pid, runner=agent.spec.runner)
        # what its follower needs is known here: it starts without reading the agent, the turn and its usage again
        running = replace(turn, pid=spawned.pid, proc_start=spawned.start_time, out_path=str(files.out),
                          model=agent.spec.model or turn.model)  # fmt: skip  (as set_turn_process recorded it)
        self._start_follower(agent.id, turn.n, Known(agent, running, spent))

    async def _not_running_after_spawn(
        self, agent: AgentRow, turn: TurnRow, files: proc.TurnFiles, spawned: proc.Spawned
    ) -> None:
        """The turn stopped running while its process was being spawned. Closed (its agent deleted, the turn
        stopped): whoever closed it found no pid to kill, so the process is stopped here, not left to run on
        unsupervised. Queued again (a recovery took the claim for dead): the process is left alone; the turn's
        next spawn finds it started (its marker) and follows it, so it still runs once."""
        now = await self.store.get_turn(agent.id, turn.n)
        if now is not None and not now.done:
            log.info("turn_requeued_during_spawn", agent=agent.name, turn=turn.n, pid=spawned.pid)
            return

        def stop() -> None:  # as a follower would at the end: killed, its cgroup gone, its process reaped
            self._procs.kill_group(spawned.pid, spawned.start_time, grace_s=self.settings.kill_grace_s, files=files)
            self._procs.release_turn(files)
            self._procs.exit_code(files, spawned.pid)

        await anyio.to_thread.run_sync(stop)
        log.info("turn_stopped_after_spawn", agent=agent.name, turn=turn.n, pid=spawned.pid)

    # -- following -------------------------------------------------------------------------------------------
    def _start_follower(self, agent_id: str, n: int, known: Known | None = None) -> None:
        key = (agent_id, n)
        if key in self._followed or self._tg is None or not self.supervises:
            return
        self._followed.add(key)
        self._tg.start_soon(self._follow, agent_id, n, known)

    async def _follow(self, agent_id: str, n: int, known: Known | None) -> None:
        notified = False
        try:
            notified = await self._follow_turn(agent_id, n, known)
        except Exception:
            log.exception("follow_failed", agent_id=agent_id, turn=n)
        finally:
            self._followed.discard((agent_id, n))
            if not notified:  # a close said so already: a second wake-up was a second look by every wait
                self.notify()

    async def _follow_turn(self, agent_id: str, n: int, known: Known | None = None) -> bool:
        """Fold the turn's transcript into the store while its process runs; stop it when a limit is reached or
        another process closed it; record how it came out once the process is gone. True when it closed the turn
        (and said so: ``notify``)."""
        f = await self._begin_following(agent_id, n, known)
        if f is None:
            return False
        watch = ExitWatch(self._procs, f.pid, f.turn.proc_start)
        interval = self.settings.poll_interval_s
        try:
            while True:
                alive = watch.alive()
                f.seen_alive = f.seen_alive or alive
                events = await read_new(f)
                await self._absorb(f, events)
                interval = self.settings.poll_interval_s if events else watch.backed_off(interval)
                if not alive:
                    if await self._adopt_started(f):
                        watch.close()
                        watch = ExitWatch(self._procs, f.pid, f.turn.proc_start)
                        continue  # the turn runs in another process: follow that one
                    break
                if await self._closed_elsewhere(f) or await self._stop_over_limit(f):
                    return False
                # read again then, or at the exit
                await watch.wait(next_look(interval, f.turn.started_at, f.limits.timeout_s, self._clock()))
        finally:
            watch.close()
        return await self._close_ended(f)

    async def _begin_following(self, agent_id: str, n: int, known: Known | None = None) -> Followed | None:
        """What following the turn needs (read, unless its spawn here says: ``known``); None when it is not running
        with a recorded process (any more)."""
        if known is not None:
            agent, turn = known.agent, known.turn
        else:
            agent = await self.store.get_agent(agent_id, include_deleted=True)
            turn = await self.store.get_turn(agent_id, n)
        if agent is None or turn is None or turn.status != "running" or turn.pid is None:
            return None
        files = self.turn_files(agent_id, n)
        parser = self._runner_for(agent.spec.runner).new_parser(self.turn_request(agent, turn))
        return Followed(
            agent=agent, turn=turn, files=files, reader=TranscriptReader(files.out, parser),
            limits=budgets.Limits.of(agent.spec, self.settings),
            spent_before=known.spent if known else await budgets.agent_spent(self.store, agent_id, exclude_turn=n),
            session_saved=agent.session_id, last_check=self._clock(),
        )  # fmt: skip

    async def _absorb(self, f: Followed, events: list[Event]) -> None:
        """Fold new events into the turn's stats; save a new session id; flush the stats now and then (and look
        at the shared budgets when it does)."""
        for ev in events:
            f.stats.apply(ev)
        await self._save_session(f)
        now = self._clock()
        if events and now - f.last_flush >= STATS_FLUSH_S:
            await self.store.update_turn_stats(f.agent.id, f.turn.n, f.stats.db_fields())
            f.last_flush = now
            self.notify_spend()
            f.shared = f.shared or await budgets.shared_breach(self.store, self.settings, f.agent)

    async def _save_session(self, f: Followed) -> None:
        if f.stats.session_id and f.stats.session_id != f.session_saved:
            await self.store.set_session_id(f.agent.id, f.stats.session_id)
            f.session_saved = f.stats.session_id

    async def _closed_elsewhere(self, f: Followed) -> bool:
        """Another process (a server inside an agent) closed the running turn: stop its process. Looked at every
        ``CLOSED_CHECK_S``."""
        now = self._clock()
        if now - f.last_check < CLOSED_CHECK_S:
            return False
        f.last_check = now
        current = await self.store.get_turn(f.agent.id, f.turn.n)
        if current is not None and current.status == "running":
            return False
        kill = functools.partial(self._procs.kill_group, f.pid, f.turn.proc_start,
                                 grace_s=self.settings.kill_grace_s, files=f.files)  # fmt: skip
        await anyio.to_thread.run_sync(kill)
        log.info("turn_stopped_for_another", agent=f.agent.name, turn=f.turn.n)
        return True

    async def _stop_over_limit(self, f: Followed) -> bool:
        """Stop the turn when it ran out of time or of a budget (its agent's, the fleet's or its batch's)."""
        now = self._clock()
        elapsed = None if f.turn.started_at is None else now - f.turn.started_at
        tokens = tokens_of(f.stats)
        stop = budgets.running_breach(f.limits, f.spent_before, f.stats.cost_usd, tokens, elapsed) or f.shared
        if stop is not None and stop.reason != "timeout" and f.agent.spec.runner in budgets.SELF_LIMITING:
            # the runner stops itself on its budget (and its answer may be on its way): give it a moment
            f.breach_at = f.breach_at or now
            if now - f.breach_at < budgets.SELF_STOP_GRACE_S:
                stop = None
        if stop is None:
            return False
        await self.store.update_turn_stats(f.agent.id, f.turn.n, f.stats.db_fields())  # what it spent, for budgets
        await self.stop_turn(f.agent, f.turn, status="failed", reason=stop.reason, error=stop.message, stats=f.stats)
        await isolation.commit_turn(self.store, f.agent, f.turn.prompt)  # what it did before the stop is kept
        await self.dispatch()  # the agent's next queued turn may start now
        return True

    async def _adopt_started(self, f: Followed) -> bool:
        """The followed pid is gone: if the turn's started marker names another process (this spawn found the turn
        already started and ran nothing), follow that one instead (True). False: the process was the turn's."""
        turn, files = f.turn, f.files
        now = self._clock()
        mark = await anyio.to_thread.run_sync(lambda: started_mod.read(files.exit, now=now))
        if mark is None or mark.pid is None or mark.pid == turn.pid:
            return False
        await self.store.adopt_turn_process(
            turn.agent_id, turn.n, pid=mark.pid, proc_start=mark.proc_start, out_path=str(files.out)
        )
        log.info("turn_adopted", agent_id=turn.agent_id, turn=turn.n, pid=mark.pid, was=turn.pid, alive=mark.alive)
        got = await self.store.get_turn(turn.agent_id, turn.n)
        if got is None or got.status != "running" or got.pid != mark.pid:
            return False
        f.turn = got
        return True

    async def _close_ended(self, f: Followed) -> bool:
        """The turn's process is gone: read the rest of its transcript and record how the turn came out. True when
        this closed it (another process may have first)."""

        def collect() -> tuple[int | None, list[Event], list[Event]]:  # one trip to a worker thread, not four
            self._procs.release_turn(f.files)  # what it left in its cgroup ends too
            code = self._procs.exit_code(f.files, f.pid)
            return code, f.reader.read_new(), f.reader.close(code, f.files.err)

        code, rest, closing = await anyio.to_thread.run_sync(collect)
        for ev in rest:
            f.stats.apply(ev)
        stream_result = f.stats.has_result
        for ev in closing:
            f.stats.apply(ev)
        await self._save_session(f)
        status, reason, error = turn_outcome(f.stats, stream_result=stream_result, exit_code=code)
        # the turn's commit exists before the turn is closed: a finished wait sees it, the next turn starts from it
        await isolation.commit_turn(self.store, f.agent, f.turn.prompt)
        # a process that ended while no server watched ended when its files say, not when this server noticed
        ended = None if f.seen_alive else await anyio.to_thread.run_sync(ended_on_disk, f.files)
        started_at = f.turn.started_at
        closed = await self.store.finish_turn(
            f.agent.id, f.turn.n, status=status, reason=reason, exit_code=code, result_text=f.stats.result_text,
            is_error=status != "succeeded", error=error, agent_status="idle" if status == "succeeded" else "failed",
            ended_at=None if ended is None else max(ended, started_at or ended), stats=f.stats.db_fields(),
        )  # fmt: skip  (its usage in the same write: one trip to the store's thread per turn end, not two)
        if closed:
            log.info("turn_finished", agent=f.agent.name, turn=f.turn.n, status=status, reason=reason, exit_code=code)
            self.notify()  # waiters see it now, not after the next dispatch
        await self.dispatch()
        return closed

    # -- stopping --------------------------------------------------------------------------------------------
    async def enforce_shared_budgets(self) -> None:
        """Stop every running turn once the fleet's daily budget or its batch's budget is spent (a turn that
        reports no usage of its own is stopped too: the budget is shared)."""
        cache: dict[str, budgets.Stop | None] = {}
        if not await budgets.any_shared_breach(self.store, self.settings, cache):
            return  # the usual case, seen without reading every running turn and its agent (each tick)
        for turn in await self.store.turns_with_status("running"):
            agent = await self.store.get_agent(turn.agent_id)
            if agent is None or (self.settings.budget_usd is None and agent.batch_id is None):
                continue
            if agent.spec.runner in budgets.SELF_LIMITING and turn.pid is not None:
                continue  # its follower stops it, after giving it a moment to stop itself
            stop = await budgets.shared_breach(self.store, self.settings, agent, cache)
            if stop is not None:
                await self.stop_turn(agent, turn, status="failed", reason=stop.reason, error=stop.message)

    async def stop_turn(
        self, agent: AgentRow, turn: TurnRow, *, status: TurnEnd, reason: str, error: str | None = None,
        stats: TurnStats | None = None, agent_status: AgentStatus | None = None,
    ) -> None:  # fmt: skip
        """Close the turn first (first closer wins), then kill its process group. A server that does not supervise
        only closes it: the host's follower of the turn sees it closed and stops the process."""
        closed = await self.store.finish_turn(
            agent.id, turn.n, status=status, reason=reason, error=error or reason,
            result_text=stats.result_text if stats else None, is_error=True,
            agent_status=agent_status or ("failed" if status == "failed" else "stopped"),
        )  # fmt: skip
        if turn.pid is not None and self.supervises:
            await anyio.to_thread.run_sync(
                lambda: self._procs.kill_group(turn.pid or 0, turn.proc_start, grace_s=self.settings.kill_grace_s,
                                               files=self.turn_files(agent.id, turn.n))
            )  # fmt: skip
        if closed:
            log.info("turn_stopped", agent=agent.name, turn=turn.n, status=status, reason=reason)
        self.notify()

    async def stop_turns(
        self, agent: AgentRow, *, status: TurnEnd, reason: str, agent_status: AgentStatus | None = None
    ) -> int:
        """Cancel every queued turn and stop every running turn of the agent (kills in parallel)."""
        turns = [t for t in await self.store.turns_of(agent.id) if not t.done]
        async with anyio.create_task_group() as tg:
            for t in turns:
                if t.status == "queued":
                    await self.store.finish_turn(agent.id, t.n, status="cancelled", reason=reason)
                else:
                    tg.start_soon(
                        lambda t=t: self.stop_turn(agent, t, status=status, reason=reason, agent_status=agent_status)
                    )
        return len(turns)
