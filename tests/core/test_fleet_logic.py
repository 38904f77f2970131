"""Fleet logic without processes: the concurrency strategies, the fleet-wide cap, timeouts, budgets, delete while
running and exactly-once claims, with the in-process fake runner (testing/fake_runner.py). Real processes are
tested at the edges (test_concurrency.py, test_exactly_once.py ...)."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from typing import Any

import anyio
import pytest

from agent_fleet_mcp import exit_watch, supervisor
from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.errors import Conflict
from agent_fleet_mcp.fleet import Fleet
from agent_fleet_mcp.store.models import TurnRow
from agent_fleet_mcp.store.sqlite import SqliteStore
from agent_fleet_mcp.testing.fake_runner import FakeRunner, FakeTurn, started_then_run

pytestmark = pytest.mark.anyio

WAIT_S = 30.0  # generous: the CI box is busy; a passing test never waits this long


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return replace(settings, poll_interval_s=0.01, max_concurrent=3)


@asynccontextmanager
async def fleets(settings: Settings, fake: FakeRunner, count: int = 1) -> AsyncGenerator[list[Fleet]]:
    """``count`` running fleets on one home (servers sharing it), all on the one fake process table."""
    async with AsyncExitStack() as stack:
        out: list[Fleet] = []
        for _ in range(count):
            store = await stack.enter_async_context(SqliteStore(settings.db_path))
            fleet = Fleet(settings, store, runner_for=fake.runner_for, processes=fake, clock=fake.clock)
            out.append(await stack.enter_async_context(fleet.running()))
        yield out


async def until(check: Callable[[], Awaitable[bool]], what: str, *, tick: Callable[[], None] | None = None) -> None:
    """Poll ``check`` until it holds (``tick`` runs between polls); fail after WAIT_S naming ``what``."""
    try:
        with anyio.fail_after(WAIT_S):
            while not await check():
                if tick is not None:
                    tick()
                await anyio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"waited {WAIT_S:g} s for {what}") from None


async def finish_all(fake: FakeRunner, total: int, *, at_once: int) -> None:
    """Until ``total`` turns were spawned and none is left running: end up to ``at_once`` running turns (succeed),
    letting queued ones take their slots."""

    async def over() -> bool:
        for turn in fake.alive()[:at_once]:
            turn.succeed()
        return len(fake.turns) >= total and not fake.alive()

    await until(over, f"{total} turns spawned and ended")


async def turn_of(fleet: Fleet, agent: str, n: int) -> TurnRow:
    row = await fleet.get_agent(agent, include_deleted=True)
    turn = await fleet.store.get_turn(row.id, n)
    assert turn is not None
    return turn


async def settled(fleet: Fleet, agent: str, n: int, status: str) -> TurnRow:
    async def check() -> bool:
        return (await turn_of(fleet, agent, n)).status == status

    await until(check, f"{agent} turn {n} {status}")
    return await turn_of(fleet, agent, n)


async def killed(turn: FakeTurn) -> None:
    """A stopped turn is closed first, then its process group killed (``Supervisor.stop_turn``)."""

    async def check() -> bool:
        return turn.killed

    await until(check, f"{turn.agent_name} turn {turn.n}'s process killed")


async def test_a_turn_is_followed_and_recorded(fast: Settings) -> None:
    fake = FakeRunner()
    async with fleets(fast, fake) as (fleet,):
        await fleet.create_agent(name="a", prompt="go")
        turn = await fake.wait_started("a", 1)
        turn.emit("tool_use", name="read", summary="read README.md", reads=["README.md"])
        turn.emit("usage", input=10, output=5, cache_read=0, cache_write=0, cost_usd=0.01, scope="request")
        turn.succeed("all done")
        row = await settled(fleet, "a", 1, "succeeded")
        assert (row.result_text, row.tool_calls, row.input_tokens, row.cost_usd) == ("all done", 1, 10, 0.01)
        assert (await fleet.get_agent("a")).status == "idle"


async def test_a_turn_is_closed_when_its_process_ends_not_at_the_next_poll(fast: Settings) -> None:
    """The follower sleeps on the process's end (a pidfd; the fake's pipe) between its reads of the transcript:
    with a poll interval of an hour, a turn that ends is still closed at once."""
    fake = FakeRunner()
    async with fleets(replace(fast, poll_interval_s=3600), fake) as (fleet,):
        await fleet.create_agent(name="a", prompt="go")
        turn = await fake.wait_started("a", 1)
        turn.emit("tool_use", name="read", summary="read README.md")

        async def read_once() -> bool:  # the follower has looked, and is now waiting for its next look
            return (await turn_of(fleet, "a", 1)).tool_calls == 1

        await until(read_once, "the follower's first read")
        turn.succeed("all done")
        row = await settled(fleet, "a", 1, "succeeded")
        assert row.result_text == "all done"


async def test_an_exit_without_result_fails_and_an_unknown_exit_is_lost(fast: Settings) -> None:
    fake = FakeRunner()
    async with fleets(fast, fake) as (fleet,):
        await fleet.create_agent(name="crash", prompt="go")
        await fleet.create_agent(name="vanish", prompt="go")
        (await fake.wait_started("crash", 1)).exit(3)
        (await fake.wait_started("vanish", 1)).exit(None)
        crashed = await settled(fleet, "crash", 1, "failed")
        assert crashed.reason == "exit_code" and "code 3" in (crashed.error or "")
        lost = await settled(fleet, "vanish", 1, "lost")
        assert "exit status is unknown" in (lost.error or "")


async def test_queue_strategy_runs_turns_in_order(fast: Settings) -> None:
    fake = FakeRunner()
    async with fleets(fast, fake) as (fleet,):
        await fleet.create_agent(name="q", template="gate", prompt="first")
        await fake.wait_started("q", 1)
        second = await fleet.command_agent("q", "second")
        third = await fleet.command_agent("q", "third")
        assert (second.status, third.status) == ("queued", "queued")
        with pytest.raises(Conflict, match="max_queued 2"):
            await fleet.command_agent("q", "fourth")
        for n in (1, 2, 3):
            turn = await fake.wait_started("q", n)
            assert [t.n for t in fake.alive()] == [n]  # one turn of an agent at a time, in number order
            turn.succeed(f"did {turn.prompt}")
            await settled(fleet, "q", n, "succeeded")
        assert [t.prompt for t in fake.turns] == ["first", "second", "third"]


async def test_reject_strategy_refuses_a_busy_agent(fast: Settings) -> None:
    fake = FakeRunner()
    async with fleets(fast, fake) as (fleet,):
        await fleet.create_agent(name="r", template="sleeper-reject", prompt="1")
        turn = await fake.wait_started("r", 1)
        with pytest.raises(Conflict, match=r"busy \(strategy reject\).*wait_for_agents"):
            await fleet.command_agent("r", "2")
        assert len(fake.turns) == 1 and turn.alive
        turn.succeed()
        await settled(fleet, "r", 1, "succeeded")
        assert (await fleet.command_agent("r", "2")).n == 2  # idle again: accepted


async def test_replace_strategy_stops_the_running_turn(fast: Settings) -> None:
    fake = FakeRunner()
    async with fleets(fast, fake) as (fleet,):
        await fleet.create_agent(name="rep", template="sleeper-replace", prompt="old")
        old = await fake.wait_started("rep", 1)
        assert (await fleet.command_agent("rep", "new")).n == 2
        new = await fake.wait_started("rep", 2)
        assert old.killed and not old.alive and new.alive
        first = await turn_of(fleet, "rep", 1)
        assert (first.status, first.reason) == ("cancelled", "replaced by a newer command")
        new.succeed()
        await settled(fleet, "rep", 2, "succeeded")
        assert (await turn_of(fleet, "rep", 1)).status == "cancelled"  # its follower's close changed nothing


async def test_fleet_wide_cap_queues_the_rest(fast: Settings) -> None:
    fake = FakeRunner()
    async with fleets(fast, fake) as (fleet,):
        for i in range(7):
            await fleet.create_agent(name=f"g{i}", template="gate", prompt=str(i))

        async def at_cap() -> bool:
            return len(fake.alive()) == fast.max_concurrent

        await until(at_cap, "the cap's worth of turns running")
        assert len(await fleet.store.turns_with_status("queued")) == 4
        await finish_all(fake, 7, at_once=1)
        for i in range(7):
            await settled(fleet, f"g{i}", 1, "succeeded")
        assert fake.max_alive == fast.max_concurrent


async def test_a_turn_queued_behind_a_full_cap_reads_no_queue(fast: Settings) -> None:
    """create_agent and command_agent dispatch after queueing a turn. With the cap full and the agent not under
    another, that dispatch could start nothing, and read every queued turn all the same: create_agent took 1.6x
    as long with 440 queued. Now it is skipped; the turns still start when slots free up."""
    fake = FakeRunner()
    async with fleets(fast, fake) as (fleet,):
        for i in range(fast.max_concurrent):
            await fleet.create_agent(name=f"g{i}", template="gate", prompt=str(i))

        async def at_cap() -> bool:
            return len(fake.alive()) == fast.max_concurrent

        await until(at_cap, "the cap's worth of turns running")
        dispatches: list[int] = []
        real = fleet.dispatch

        async def counted() -> None:  # the fleet's own dispatch: the one after queueing (ticks and ends: the
            dispatches.append(1)  # supervisor's)
            await real()

        fleet.dispatch = counted  # type: ignore[method-assign]
        await fleet.create_agent(name="late", template="gate", prompt="x")
        await fleet.command_agent("g0", "again")
        assert dispatches == [] and (await turn_of(fleet, "late", 1)).status == "queued"
        await finish_all(fake, fast.max_concurrent + 2, at_once=1)
        await settled(fleet, "late", 1, "succeeded")
        await settled(fleet, "g0", 2, "succeeded")
        await fleet.create_agent(name="free", template="gate", prompt="y")  # a free slot: it dispatches
        assert dispatches == [1]


async def test_delete_while_running_kills_and_cancels(fast: Settings) -> None:
    fake = FakeRunner()
    async with fleets(fast, fake) as (fleet,):
        await fleet.create_agent(name="d", template="gate", prompt="1")
        running = await fake.wait_started("d", 1)
        await fleet.command_agent("d", "2")
        [(agent, stopped)] = await fleet.delete_agents(["d"])
        assert stopped == 2 and running.killed
        assert agent.name == "d" and (await fleet.get_agent("d", include_deleted=True)).status == "deleted"
        assert [(t.n, t.status) for t in await fleet.store.turns_of(agent.id)] == [(1, "cancelled"), (2, "cancelled")]
        assert len(fake.turns) == 1  # the queued turn never started


async def test_timeout_stops_the_turn(fast: Settings) -> None:
    fake = FakeRunner()
    async with fleets(fast, fake) as (fleet,):
        await fleet.create_agent(name="slow", template="gate", prompt="1", timeout_s=60)
        turn = await fake.wait_started("slow", 1)
        fake.advance(61)
        row = await settled(fleet, "slow", 1, "failed")
        assert row.reason == "timeout" and "timed out after 60 s" in (row.error or "")
        await killed(turn)


def test_a_quiet_turn_is_looked_at_again_just_after_its_timeout() -> None:
    """A follower backs off to 1 s between looks at a quiet transcript, but never sleeps past the turn's timeout
    (a 60 s timeout was enforced up to 1 s late)."""
    slack = exit_watch.TIMEOUT_SLACK_S
    assert exit_watch.next_look(1.0, started_at=100.0, timeout_s=60.0, now=120.0) == 1.0
    assert exit_watch.next_look(1.0, started_at=100.0, timeout_s=60.0, now=159.7) == pytest.approx(0.3 + slack)
    assert exit_watch.next_look(1.0, started_at=100.0, timeout_s=60.0, now=170.0) == slack  # overdue: look now
    assert exit_watch.next_look(0.01, started_at=100.0, timeout_s=60.0, now=159.9) == 0.01
    assert exit_watch.next_look(1.0, started_at=None, timeout_s=60.0, now=159.9) == 1.0  # not started yet


async def test_an_agent_budget_stops_the_turn(fast: Settings) -> None:
    fake = FakeRunner()
    async with fleets(fast, fake) as (fleet,):
        await fleet.create_agent(name="spender", runner="codex", prompt="go", max_cost_usd=1.0)
        turn = await fake.wait_started("spender", 1)
        turn.emit("usage", input=1, output=1, cache_read=0, cache_write=0, cost_usd=1.5, scope="run")
        row = await settled(fleet, "spender", 1, "failed")
        assert row.reason == "max_cost" and row.cost_usd == 1.5
        await killed(turn)


async def test_a_tick_without_a_spent_budget_reads_no_running_turn_or_agent(
    fast: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shared budgets are looked at on every tick: while none is spent, a few narrow reads say so. Before,
    every tick read every running turn twice and each one's agent (with 200 running, most of the tick's cost)."""
    fake = FakeRunner()
    async with fleets(replace(fast, budget_usd=100.0, max_concurrent=5), fake) as (fleet,):
        for i in range(5):
            await fleet.create_agent(name=f"w{i}", template="gate", prompt=str(i))

        async def all_running() -> bool:  # and recorded (a turn without its pid yet is looked at closely)
            recorded = [pid for _, _, pid in await fleet.store.running_turn_pids() if pid is not None]
            return len(fake.alive()) == 5 and len(recorded) == 5

        await until(all_running, "five turns running, their processes recorded")
        reads: list[str] = []
        mine = contextvars.ContextVar("mine", default=False)  # the followers read on their own meanwhile
        for name in ("turns_with_status", "get_agent", "get_turn"):
            real = getattr(fleet.store, name)

            async def counted(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
                if mine.get():
                    reads.append(_name)
                return await _real(*args, **kwargs)

            monkeypatch.setattr(fleet.store, name, counted)
        mine.set(True)
        await fleet.supervisor.enforce_shared_budgets()
        await fleet.supervisor._adopt_running()  # pyright: ignore[reportPrivateUsage]
        mine.set(False)
        assert reads == []
        assert len(fake.alive()) == 5  # nothing was stopped
        monkeypatch.undo()
        await finish_all(fake, 5, at_once=5)


async def test_a_tick_leaves_alone_the_turns_this_server_is_spawning(
    fast: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A turn claimed here has no pid until its spawn records it. Before, each tick of a wave (one per agent
    created) looked at every such turn closely: its row, then its started marker in a worker thread. It still does
    for a spawn older than ``ORPHAN_CLAIM_S`` (one that hung: its turn is recovered as before)."""
    fake = FakeRunner()
    async with fleets(fast, fake) as (fleet,):

        async def looks() -> None:
            await held_while_spawning(fleet, monkeypatch)

        await while_spawn_held(fleet, fake, monkeypatch, "held", looks, template="gate", prompt="1")
        await finish_all(fake, 1, at_once=1)


async def held_while_spawning(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ticks' looks at the turn whose spawn is held in flight: none; then, the spawn made to look hung, one."""
    looks: list[str] = []
    mine = contextvars.ContextVar("mine", default=False)  # the create_agent call reads on its own meanwhile
    real_get_turn, real_read = fleet.store.get_turn, supervisor.started_mod.read

    async def get_turn(*args: Any, **kwargs: Any) -> Any:
        if mine.get():
            looks.append("row")
        return await real_get_turn(*args, **kwargs)

    def read_marker(*args: Any, **kwargs: Any) -> Any:
        if mine.get():  # in a worker thread: anyio carries the context there
            looks.append("marker")
        return real_read(*args, **kwargs)

    monkeypatch.setattr(fleet.store, "get_turn", get_turn)
    monkeypatch.setattr(supervisor.started_mod, "read", read_marker)
    mine.set(True)
    await fleet.supervisor._adopt_running()  # pyright: ignore[reportPrivateUsage]
    assert looks == []
    spawning_since = fleet.supervisor._spawning  # pyright: ignore[reportPrivateUsage]
    (key,) = spawning_since
    spawning_since[key] -= supervisor.ORPHAN_CLAIM_S  # a spawn that hung
    await fleet.supervisor._adopt_running()  # pyright: ignore[reportPrivateUsage]
    assert looks == ["row", "marker"]  # nothing ran (no marker), its claimer lives: left claimed, as before
    mine.set(False)
    monkeypatch.undo()


async def test_a_turns_end_writes_its_usage_with_the_close(fast: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The turn's last usage goes to the store with its close, in one write (it was a write of its own first: with
    20 turns ending together, each close waited in line twice)."""
    monkeypatch.setattr(supervisor, "STATS_FLUSH_S", 3600.0)  # after its first usage, no flush while it runs
    fake = FakeRunner()
    async with fleets(fast, fake) as (fleet,):
        usage_writes: list[int] = []
        real = fleet.store.update_turn_stats

        async def update_turn_stats(agent_id: str, n: int, stats: Any) -> None:
            usage_writes.append(n)
            await real(agent_id, n, stats)

        monkeypatch.setattr(fleet.store, "update_turn_stats", update_turn_stats)
        await fleet.create_agent(name="spender", template="gate", prompt="go")
        turn = await fake.wait_started("spender", 1)
        turn.emit("usage", input=5, output=2, cache_read=0, cache_write=0, cost_usd=0.125, scope="run")

        async def flushed() -> bool:
            return (await turn_of(fleet, "spender", 1)).cost_usd == 0.125

        await until(flushed, "the first usage flushed")
        assert usage_writes == [1]
        turn.emit("usage", input=9, output=4, cache_read=0, cache_write=0, cost_usd=0.25, scope="run")
        turn.succeed()
        row = await settled(fleet, "spender", 1, "succeeded")
        assert (row.input_tokens, row.output_tokens, row.cost_usd) == (9, 4, 0.25)
        assert usage_writes == [1]  # the last usage came with the close


async def test_a_turns_end_wakes_the_waits_once(fast: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The close of a turn notifies the waits; the end of its follower did too, right after, so every wait of the
    fleet looked at its batch twice per turn end."""
    fake = FakeRunner()
    async with fleets(fast, fake) as (fleet,):
        await fleet.create_agent(name="once", template="gate", prompt="go")
        turn = await fake.wait_started("once", 1)
        sup = fleet.supervisor
        notified = 0
        real = sup.notify

        def notify() -> None:
            nonlocal notified
            notified += 1
            real()

        monkeypatch.setattr(sup, "notify", notify)
        turn.succeed()
        await settled(fleet, "once", 1, "succeeded")

        async def unfollowed() -> bool:
            return not sup._followed  # pyright: ignore[reportPrivateUsage]

        await until(unfollowed, "its follower gone")
        assert notified == 1


async def test_a_self_limiting_runner_gets_a_grace_period(fast: Settings) -> None:
    fake = FakeRunner()
    async with fleets(fast, fake) as (fleet,):
        await fleet.create_agent(name="self", runner="anthropic", prompt="go", max_cost_usd=1.0)
        turn = await fake.wait_started("self", 1)
        turn.emit("usage", input=1, output=1, cache_read=0, cache_write=0, cost_usd=1.5, scope="run")

        async def flushed() -> bool:
            return (await turn_of(fleet, "self", 1)).cost_usd == 1.5

        await until(flushed, "the usage recorded")
        assert turn.alive  # over budget, but within its grace: the runner may be stopping itself
        row = await settled_ticking(fleet, fake, "self", 1, "failed")
        assert row.reason == "max_cost"
        await killed(turn)


async def settled_ticking(fleet: Fleet, fake: FakeRunner, agent: str, n: int, status: str) -> TurnRow:
    async def check() -> bool:
        return (await turn_of(fleet, agent, n)).status == status

    await until(check, f"{agent} turn {n} {status}", tick=lambda: fake.advance(0.5))
    return await turn_of(fleet, agent, n)


async def test_servers_sharing_a_home_start_each_turn_once(fast: Settings) -> None:
    fake = FakeRunner()
    async with fleets(fast, fake, count=3) as three:
        for i in range(9):
            await three[i % 3].create_agent(name=f"x{i}", template="gate", prompt=str(i))
        await finish_all(fake, 9, at_once=9)
        for i in range(9):
            await settled(three[0], f"x{i}", 1, "succeeded")
        assert sorted((t.agent_name, t.n) for t in fake.turns) == [(f"x{i}", 1) for i in range(9)]
        assert fake.max_alive <= fast.max_concurrent


async def test_claimed_turns_spawn_side_by_side(fast: Settings) -> None:
    """Spawning does not serialise on the dispatch lock: turns created at once are in ``spawn`` at the same time
    (each spawn here blocks until all of them are in it; one at a time, the barrier would break)."""
    barrier = threading.Barrier(fast.max_concurrent, timeout=WAIT_S / 2)

    def meet_then_run(turn: FakeTurn) -> None:
        barrier.wait()
        started_then_run(turn)

    fake = FakeRunner(meet_then_run)
    async with fleets(fast, fake) as (fleet,):
        async with anyio.create_task_group() as tg:  # created at once, as run_agents' runs or several hosts do
            for i in range(fast.max_concurrent):
                tg.start_soon(lambda i=i: fleet.create_agent(name=f"a{i}", prompt="go"))
        for i in range(fast.max_concurrent):
            assert (await settled(fleet, f"a{i}", 1, "running")).pid is not None

        async def all_alive() -> bool:
            return len(fake.alive()) == fast.max_concurrent

        await until(all_alive, "every spawned turn alive")
        assert not barrier.broken
        await finish_all(fake, fast.max_concurrent, at_once=fast.max_concurrent)


async def test_a_crash_right_after_an_agent_is_stored_leaves_its_first_turn_queued(
    fast: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server dies the moment create_agent's insert returns (the process killed before anything else ran):
    the agent and its first turn were stored together, so the turn runs once the fleet is up again, and the host's
    retry of the same create_agent answers with that turn instead of a bare agent that never runs."""

    class Killed(BaseException):  # what the rest of create_agent sees of a SIGKILL: nothing more runs
        pass

    fake = FakeRunner()
    real_insert = SqliteStore.insert_agent

    async def insert_then_die(self: SqliteStore, **kwargs: Any) -> Any:
        await real_insert(self, **kwargs)
        raise Killed

    monkeypatch.setattr(SqliteStore, "insert_agent", insert_then_die)
    async with fleets(fast, fake) as (fleet,):
        with pytest.raises(Killed):
            await fleet.create_agent(name="a", prompt="go")
    monkeypatch.setattr(SqliteStore, "insert_agent", real_insert)
    async with fleets(fast, fake) as (fleet,):
        again = await fleet.create_agent(name="a", prompt="go")  # the host retries the call that failed
        assert not again.created and again.turn is not None and again.turn.n == 1
        (await fake.wait_started("a", 1)).succeed("done")
        assert (await settled(fleet, "a", 1, "succeeded")).result_text == "done"
        assert [(t.agent_name, t.n) for t in fake.turns] == [("a", 1)]


async def test_a_usage_flush_wakes_the_tick_not_the_waits(fast: Settings) -> None:
    """A running turn's usage cannot end a wait: a flush of it wakes the tick (the shared budgets) and the resource
    notifications, and leaves the waits asleep (in a wave of 200 runs, 400 of 1,001 wake-ups were usage flushes,
    each a look at every open run of the wait's batch)."""
    fake = FakeRunner()
    async with fleets(fast, fake) as (fleet,):
        await fleet.create_agent(name="spender", runner="codex", prompt="go", max_cost_usd=100.0)
        turn = await fake.wait_started("spender", 1)
        state = fleet.change_mark()  # what a wait sleeps on
        stir = fleet.supervisor._stirred  # pyright: ignore[reportPrivateUsage] (what the tick sleeps on)
        turn.emit("usage", input=1, output=1, cache_read=0, cache_write=0, cost_usd=0.5, scope="run")

        async def flushed() -> bool:  # in the store, and the follower past it (the store shows a commit first)
            row = await fleet.store.get_turn(turn.agent_id, 1)
            return row is not None and row.cost_usd == 0.5 and stir.is_set()

        await until(flushed, "the usage flushed to the store and the tick woken", tick=lambda: fake.advance(0.5))
        assert not state.is_set(), "a usage flush woke the waits"
        turn.succeed()
        await settled(fleet, "spender", 1, "succeeded")


async def test_the_empty_cgroup_sweep_runs_at_start_and_then_every_30_s(
    fast: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A follower removes its own turn's cgroup; the sweep is for a server that died first. It ran at every tick
    (each a read of every turn cgroup of the home: with 200 turns running, a twentieth of the server's CPU)."""
    fake = FakeRunner()
    async with fleets(fast, fake) as (fleet,):
        sweeps: list[float] = []

        def sweep(home: Any, *, keep: Any) -> int:
            sweeps.append(time.monotonic())
            return 0

        monkeypatch.setattr(fake, "remove_empty_cgroups", sweep)
        sup = fleet.supervisor
        await sup._adopt_running()  # pyright: ignore[reportPrivateUsage]
        await sup._adopt_running()  # pyright: ignore[reportPrivateUsage]
        assert sweeps == []  # the start's sweep was moments ago
        sup._swept_at = time.monotonic() - supervisor.CGROUP_SWEEP_S  # pyright: ignore[reportPrivateUsage]
        await sup._adopt_running()  # pyright: ignore[reportPrivateUsage]
        await sup._adopt_running()  # pyright: ignore[reportPrivateUsage]
        assert len(sweeps) == 1


async def while_spawn_held(
    fleet: Fleet, fake: FakeRunner, monkeypatch: pytest.MonkeyPatch, name: str, during: Callable[[], Awaitable[None]],
    *, template: str | None = None, prompt: str = "go",
) -> None:  # fmt: skip
    """``create_agent(name)``, with its first turn's spawn held in flight while ``during`` runs; then the spawn goes
    on (later spawns are not held) and the create is awaited."""
    in_spawn, release = threading.Event(), threading.Event()
    real_spawn = fake.spawn

    def held_spawn(plan: Any, files: Any) -> Any:
        in_spawn.set()
        release.wait(WAIT_S)
        return real_spawn(plan, files)

    async def spawning() -> bool:
        return in_spawn.is_set()

    monkeypatch.setattr(fake, "spawn", held_spawn)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: fleet.create_agent(name=name, template=template, prompt=prompt))
        try:
            await until(spawning, "the spawn in flight")
            monkeypatch.setattr(fake, "spawn", real_spawn)
            await during()
        finally:
            release.set()


async def test_a_turn_closed_while_its_spawn_is_in_flight_does_not_run_on(
    fast: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent is deleted while its turn's process is being spawned (the turn has no pid yet, so the delete
    closes it and has nothing to kill). When the spawn then returns, the process it started must be stopped, not
    left running unsupervised until it ends by itself."""
    fake = FakeRunner()
    async with fleets(fast, fake) as (fleet,):

        async def delete() -> None:
            await fleet.delete_agents("late")

        await while_spawn_held(fleet, fake, monkeypatch, "late", delete)
        assert (await turn_of(fleet, "late", 1)).status == "cancelled"
        turn = await fake.wait_started("late", 1)
        await killed(turn)


async def test_new_work_does_not_wake_the_waits_an_end_does(fast: Settings) -> None:
    """A queued turn can end no wait: creating agents stirs the tick and the resource notifications only. A turn's
    end wakes the waits at once."""
    fake = FakeRunner()
    async with fleets(fast, fake) as (fleet,):
        mark = fleet.change_mark()
        stirred = fleet.supervisor._stirred  # pyright: ignore[reportPrivateUsage]
        await fleet.create_agent(name="a", prompt="go")
        turn = await fake.wait_started("a", 1)
        assert stirred.is_set() and not mark.is_set()
        turn.succeed("done")
        with anyio.fail_after(WAIT_S):
            await mark.wait()
        assert (await turn_of(fleet, "a", 1)).status == "succeeded"


async def test_a_turn_requeued_while_its_spawn_is_in_flight_keeps_its_process(
    fast: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recovery (another server taking this claim for dead) queues the turn again while its spawn is in flight.
    That process is not stopped: the turn's next spawn finds it started and follows it, so the turn still runs
    once. Only a closed turn's process is stopped after its spawn."""
    fake = FakeRunner()
    async with fleets(fast, fake) as (fleet,):

        async def requeue() -> None:  # as the recovery of another server does
            agent = await fleet.get_agent("slow")
            await fleet.store.requeue_turn(agent.id, 1)

        await while_spawn_held(fleet, fake, monkeypatch, "slow", requeue)
        first = await fake.wait_started("slow", 1)
        assert not first.killed
