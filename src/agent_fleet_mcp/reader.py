"""The read side of a fleet home: every read the MCP tools, the resources and the CLI do goes through one
``FleetReader`` built from a store and the settings (transcripts are files under the home). The server's reader is
the running fleet's (``Fleet.reader``); the CLI reads through ``reader_reports.ReportReader``, opened read-only
(``open_reader``), and never builds a ``Fleet``. Shaping into models is reader_models.py; no SQL here (store/), no
rendering (cli/render.py)."""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal

import anyio

from agent_fleet_mcp import budgets, turn_outcome, worktrees
from agent_fleet_mcp.batches import waves
from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.errors import InvalidRequest, NotFound
from agent_fleet_mcp.event_text import render_events
from agent_fleet_mcp.events import Event
from agent_fleet_mcp.inputs import quote
from agent_fleet_mcp.reader_models import (
    CURSOR_START,
    EMPTY_FLEET,
    FILES_SHOWN,
    AgentStatus,
    BatchReport,
    EndedOnDisk,
    StatusReport,
    agent_row,
    changes_summary,
    finished_line,
    fleet_summary,
    live_by_status,
    overlaps,
    page,
    parse_cursor,
    unpriced,
)  # fmt: skip
from agent_fleet_mcp.runners import get_runner
from agent_fleet_mcp.runners import process as proc
from agent_fleet_mcp.runners.base import Runner, TurnLimits, TurnRequest
from agent_fleet_mcp.schemas import (
    AgentRowOut,
    BatchOut,
    Finished,
    FleetSummary,
    OutputOut,
    RunOut,
    StatusOut,
    Tokens,
    agent_line,
)  # fmt: skip
from agent_fleet_mcp.store.models import AgentRow, AgentTotals, BatchRow, FleetTotals, OpenRun, RunRow, TurnRow
from agent_fleet_mcp.store.models import AgentStatus as AgentState
from agent_fleet_mcp.store.protocol import Store
from agent_fleet_mcp.transcript import TranscriptReader
from agent_fleet_mcp.turn_stats import TurnStats

GONE_GRACE_S = 3.0  # a dead process whose turn is still `running` this long after exiting: no server records it
FOLLOW_POLL_S = 0.25
BATCH_RESULT_CHARS = 200  # a run's result preview in run_agents / wait_for_agents (their result_chars raises it)
STATUS_RUN_RESULT_CHARS = 200  # a run's result in `agent-fleet status --json` (the batch lines show none)
RECENT_ACTIVITY_CHARS = 3_000  # the transcript tail in the fleet://agents/{agent} resource
RECENT_BATCHES = 10
AGENTS_IN_HINT = 30
ACTIVITY_CHARS = 120  # the busiest agent's activity in a wait's progress message
NO_TURNS_CLI = " (it was created without a prompt)"
STATUS_ROWS = 20  # rows of get_agent_status without agents
LIVE_STATUSES: tuple[AgentState, ...] = ("running", "queued", "failed", "idle", "stopped")
FINISHED_SHOWN = 20  # finished agents listed by wait_for_agents without agents


def turn_files(settings: Settings, agent_id: str, n: int) -> proc.TurnFiles:
    return proc.TurnFiles.for_turn(settings.agents_dir / agent_id / "turns", n)


def turn_request(settings: Settings, agent: AgentRow, turn: TurnRow, limits: TurnLimits | None = None) -> TurnRequest:
    """What the agent's runner gets for this turn (to start it, or to build the parser that reads its transcript)."""
    return TurnRequest(
        agent_id=agent.id, agent_name=agent.name, turn=turn.n, prompt=turn.prompt, spec=agent.spec,
        cwd=Path(agent.cwd), agent_dir=settings.agents_dir / agent.id, session_id=agent.session_id,
        env={**settings.env, **settings.child_env(agent.id, agent.root_id, agent.depth)},
        limits=limits or TurnLimits(),
    )  # fmt: skip



def not_found_message(ref: str, names: list[str], *, deleted: list[str] | None = None) -> str:
    """Says which agents exist (and the closest name) so the next command can be right."""
    deleted = list(dict.fromkeys(deleted or ()))
    if not names and not deleted:
        return f"no agent named {ref!r}. {EMPTY_FLEET}"
    close = difflib.get_close_matches(ref, names + deleted, n=1)
    msg = f"no agent named {ref!r}." + (f" Did you mean {close[0]!r}?" if close else "")
    for label, group in (("Agents", names), ("Deleted", deleted)):
        if group:
            more = f" (+{len(group) - AGENTS_IN_HINT} more)" if len(group) > AGENTS_IN_HINT else ""
            msg += f" {label}: {', '.join(group[:AGENTS_IN_HINT])}{more}."
    if not names:
        msg += " No live agents."
    return msg


def no_worktree(agent: AgentRow) -> InvalidRequest:
    return InvalidRequest(
        f"agent {agent.name!r} has no worktree (isolation none): it edits {agent.cwd} in place, so there is no diff "
        "to read and nothing to merge; readwrite agents created inside a git repository get one"
    )


class FleetReader:
    """Reads a fleet home: agents, turns, outputs, batches, cost. Writes nothing."""

    def __init__(
        self, settings: Settings, store: Store, *, runner_for: Callable[[str], Runner] = get_runner
    ) -> None:
        self.settings = settings
        self._store = store
        self._runner_for = runner_for

    # -- agents ----------------------------------------------------------------------------------------------
    async def list_agents(self, *, include_deleted: bool = False) -> list[AgentRow]:
        return await self._store.list_agents(include_deleted=include_deleted)

    async def get_agent(self, ref: str, *, include_deleted: bool = False) -> AgentRow:
        """A live agent by name or id; with include_deleted, else the newest deleted one of that name (its
        transcripts stay readable until a purge). ``NotFound`` names the live agents (the tools' wording)."""
        agent = await self._store.get_agent(ref, include_deleted=include_deleted)
        if agent is None:
            live = [a.name for a in await self._store.list_agents()]
            hint = f"live agents: {', '.join(live[:20])}" if live else "the fleet is empty; create_agent first"
            raise NotFound(f"no agent named {quote(ref)} ({hint})")
        return agent

    async def find_agent(self, ref: str) -> AgentRow:
        """A live agent by name or id (else the newest deleted one of that name). ``NotFound`` lists the agents
        and the closest name (the CLI's wording)."""
        agent = await self._store.get_agent(ref, include_deleted=True)
        if agent is not None:
            return agent
        everyone = await self._store.list_agents(include_deleted=True)
        live = [a.name for a in everyone if a.status != "deleted"]
        raise NotFound(not_found_message(ref, live, deleted=[a.name for a in everyone if a.status == "deleted"]))

    async def agents_by_id(self, ids: Iterable[str]) -> list[AgentRow]:
        """The agents as they are now (deleted ones too; purged ones are left out)."""
        found = [await self._store.get_agent(i, include_deleted=True) for i in ids]
        return [a for a in found if a is not None]

    async def open_runs(self, batch_id: str) -> list[OpenRun]:
        """The batch's runs not yet over (``Store.open_runs``): one narrow read."""
        return await self._store.open_runs(batch_id)

    async def busy(self, agent_ids: Sequence[str]) -> set[str]:
        """Agents with unfinished work. An agent's turns start in number order, so its latest turn is the last to
        finish: the agent is busy exactly while that turn is not done."""
        latest = await self._store.latest_turns(agent_ids)
        return {aid for aid, t in latest.items() if not t.done}

    async def latest_activity(self, agent_ids: list[str]) -> str:
        """'scout-2: grep 'auth' in src/' for the most recently active of the agents."""
        if not agent_ids:
            return ""
        latest = await self._store.latest_turns(agent_ids)
        best = max(latest.values(), key=lambda t: t.last_event_at or 0.0, default=None)
        if best is None or not best.activity:
            return ""
        agent = await self._store.get_agent(best.agent_id, include_deleted=True)
        name = agent.name if agent else best.agent_id
        return f"{name}: {best.activity}"[:ACTIVITY_CHARS]

    # -- status rows -----------------------------------------------------------------------------------------
    async def agent_rows(self, agents: list[AgentRow]) -> list[AgentRowOut]:
        ids = [a.id for a in agents]
        latest = await self._store.latest_turns(ids)
        totals = await self._store.agent_totals(ids)
        now = time.time()
        rows = [
            agent_row(
                a, latest.get(a.id), totals.get(a.id, AgentTotals()), now, budgets.Limits.of(a.spec, self.settings)
            )
            for a in agents
        ]
        return await self.with_changes(agents, rows)

    async def status(
        self, names: list[str] | None = None, *, statuses: Sequence[AgentState] | None = None,
        limit: int = STATUS_ROWS, cursor: str | None = None,
    ) -> StatusOut:  # fmt: skip
        """get_agent_status. Named agents: exactly their rows, with detail. Else, bounded: with no filter and no cursor,
        the agents running, queued or failed and then the most recently changed, at most ``limit``, with what is left
        out counted by status; with ``statuses`` or a ``cursor``, a page of the agents (those statuses, default every
        live one) in creation order and the cursor of the next. The fleet's summary is always the whole fleet's."""
        fleet = _fleet_summary(totals := await self._store.fleet_totals())
        if names:
            rows = await self.agent_rows([await self.get_agent(a) for a in names])
            return StatusOut(fleet=fleet, agents=[agent_line(r, detail=True) for r in rows])
        if statuses is None and cursor is None:
            rows = await self.agent_rows(await self._store.status_agents(limit=limit))
            by_status = live_by_status(totals)
            for r in rows:
                by_status[r.status] = by_status.get(r.status, 0) - 1
            hidden = {s: n for s, n in by_status.items() if n > 0}
            return StatusOut(
                fleet=fleet, agents=[agent_line(r) for r in rows], not_shown=hidden,
                next_cursor=CURSOR_START if hidden else None,
                note="the rest: status=[...] or cursor (every agent, in creation order)" if hidden else None,
            )  # fmt: skip
        want = list(dict.fromkeys(statuses or LIVE_STATUSES))
        page_rows = await self._store.page_agents(statuses=want, after=parse_cursor(cursor), limit=limit + 1)
        more = len(page_rows) > limit
        page_rows = page_rows[:limit]
        rows = await self.agent_rows(page_rows)
        last = page_rows[-1] if page_rows else None
        return StatusOut(
            fleet=fleet, agents=[agent_line(r) for r in rows],
            next_cursor=f"{last.created_at!r}/{last.id}" if more and last else None,
        )  # fmt: skip

    async def finished_lines(self, agents: list[AgentRow], *, limit: int | None = None) -> tuple[list[Finished], int]:
        """What finished, as wait_for_agents shows it: name, the latest turn's status and the first line of its result
        (or error), latest finished first; at most ``limit`` (and how many were left out)."""
        latest = await self._store.latest_turns([a.id for a in agents])
        done = [(a, latest.get(a.id)) for a in agents]
        done.sort(key=lambda at: -((at[1].ended_at or 0.0) if at[1] else 0.0))
        cut = done if limit is None else done[:limit]
        return [finished_line(a, t) for a, t in cut], len(done) - len(cut)

    async def agent_statuses(self, agents: list[AgentRow]) -> list[AgentStatus]:
        """Rows as get_agent_status shows them, except a turn whose process ended while no server recorded it:
        that one shows its real outcome and duration, read from its files (``process_gone``)."""
        rows = await self.agent_rows(agents)
        latest = await self._store.latest_turns([a.id for a in agents])
        by_id = {a.id: a for a in agents}
        running = [(by_id[t.agent_id], t) for t in latest.values() if t.status == "running" and t.pid is not None]
        ended = await anyio.to_thread.run_sync(self._ended_turns, running, time.time())
        out: list[AgentStatus] = []
        for a, row in zip(agents, rows, strict=True):
            status = AgentStatus(**row.model_dump(), id=a.id)
            if (end := ended.get(a.id)) is not None:
                status = status.model_copy(
                    update={
                        "process_gone": True, "status": "idle" if end.status == "succeeded" else "failed",
                        "turn_status": end.status, "elapsed_s": end.elapsed_s, "idle_s": None, "stalled": False,
                        "last_error": end.error or row.last_error,
                    }
                )  # fmt: skip
            out.append(status)
        return out

    def _ended_turns(self, turns: Iterable[tuple[AgentRow, TurnRow]], now: float) -> dict[str, EndedOnDisk]:
        """Agent id -> the real outcome of its running turn whose process has exited (from the exit file and the
        transcript, exactly as a following server closes it). Blocking (psutil, files): call from a thread."""
        out: dict[str, EndedOnDisk] = {}
        for agent, t in turns:
            if t.pid is None or proc.is_alive(t.pid, t.proc_start):
                continue
            files = self.turn_files(t.agent_id, t.n)
            code = proc.exit_code(files)
            ended = turn_outcome.ended_on_disk(files) or t.last_event_at or t.started_at or now
            if code is None and now - ended <= GONE_GRACE_S:
                continue  # just died: its exit file may be on its way
            reader = self._transcript(agent, t)
            stats = TurnStats()
            for ev in reader.read_new():
                stats.apply(ev)
            stream_result = stats.has_result
            for ev in reader.close(code, files.err):
                stats.apply(ev)
            status, _reason, error = turn_outcome.turn_outcome(stats, stream_result=stream_result, exit_code=code)
            ended = max(ended, t.started_at or ended)
            elapsed = round(ended - t.started_at, 1) if t.started_at is not None else None
            out[t.agent_id] = EndedOnDisk(status=status, error=error, exit_code=code, ended_at=ended, elapsed_s=elapsed)
        return out

    async def status_report(self, *, include_all: bool = False) -> StatusReport:
        """Every live agent and the running batches; with ``include_all`` also the deleted agents (counted in the
        totals) and the most recent finished batches."""
        everyone = await self._store.list_agents(include_deleted=True)
        agents = everyone if include_all else [a for a in everyone if a.status != "deleted"]
        rows = await self.agent_statuses(agents)
        batches = await self._store.list_batches() if include_all else await self._store.list_batches(status="running")
        older = max(0, len(batches) - RECENT_BATCHES) if include_all else 0
        now = time.time()
        return StatusReport(
            home=str(self.settings.home), at=now, fleet=fleet_summary(list(rows)),
            unpriced_agents=sum(1 for r in rows if unpriced(r)), agents=rows,
            deleted_agents=sum(1 for a in everyone if a.status == "deleted"),
            batches=[await self.batch_report(b, now) for b in batches[older:]], older_batches=older,
        )  # fmt: skip

    # -- turns and outputs -----------------------------------------------------------------------------------
    def turn_files(self, agent_id: str, n: int) -> proc.TurnFiles:
        return turn_files(self.settings, agent_id, n)

    def _transcript(self, agent: AgentRow, turn: TurnRow) -> TranscriptReader:
        """A reader of the turn's transcript through its runner's parser (every backend reads the same)."""
        parser = self._runner_for(agent.spec.runner).new_parser(turn_request(self.settings, agent, turn))
        return TranscriptReader(self.turn_files(agent.id, turn.n).out, parser)

    async def turns_of(self, agent: AgentRow) -> list[TurnRow]:
        return await self._store.turns_of(agent.id)

    async def latest_turn(self, agent: AgentRow) -> TurnRow | None:
        return (await self._store.latest_turns([agent.id])).get(agent.id)

    async def pick_turn(
        self, agent: AgentRow, n: int | None, *, no_turns: str = NO_TURNS_CLI, missing: str = "there is no turn"
    ) -> TurnRow:
        """Turn ``n`` of the agent (default: its latest). ``NotFound`` ends with ``no_turns`` when it has none,
        and says ``{missing} {n}`` for a number it does not have (the tools and the CLI word these apart)."""
        turns = await self._store.turns_of(agent.id)
        if not turns:
            raise NotFound(f"agent {agent.name!r} has no turns yet{no_turns}")
        if n is None:
            return turns[-1]
        for t in turns:
            if t.n == n:
                return t
        raise NotFound(f"agent {agent.name!r} has turns 1..{turns[-1].n}; {missing} {n}")

    async def read_events(self, agent: AgentRow, turn: TurnRow) -> list[Event]:
        """Re-read a turn's transcript through its runner's parser (finished turns get their closing events too)."""
        files = self.turn_files(agent.id, turn.n)
        reader = self._transcript(agent, turn)

        def read() -> list[Event]:
            events = reader.read_new()
            if turn.done:
                events.extend(reader.close(turn.exit_code, files.err))
            return events

        return await anyio.to_thread.run_sync(read)

    async def transcript_text(self, agent: AgentRow, turn: TurnRow) -> str:
        return render_events(await self.read_events(agent, turn))

    async def recent_activity(self, agent: AgentRow) -> str:
        """The tail of the latest turn's transcript ("" without turns)."""
        turns = await self._store.turns_of(agent.id)
        if not turns:
            return ""
        return (await self.transcript_text(agent, turns[-1]))[-RECENT_ACTIVITY_CHARS:]

    async def output(
        self, ref: str, *, turn: int | None, mode: Literal["result", "tail", "transcript", "diff"], cursor: int,
        max_chars: int,
    ) -> OutputOut:
        """get_agent_output: a bounded page of a turn's result, live tail or transcript (deleted agents too), or of
        the agent's diff against its base (mode="diff")."""
        row = await self.get_agent(ref, include_deleted=True)
        t = await self.pick_turn(row, turn, no_turns="; command_agent gives it work", missing="no turn")
        path = str(self.turn_files(row.id, t.n).out)
        if mode == "result":
            if t.done:
                text = t.result_text or (f"(no result text; {t.status}: {t.error or t.reason})" if t.error else "")
            else:
                text = f"(turn {t.n} is {t.status}; no result yet. Use mode='tail' for live progress.)"
            chunk, more, nxt = page(text, cursor, max_chars)
        elif mode == "diff":
            text = await self.diff(row)
            chunk, more, nxt = page(text, cursor, max_chars)
        elif mode == "tail":
            text = await self.transcript_text(row, t)
            chunk, more, nxt = text[-max_chars:], len(text) > max_chars, None
        else:
            text = await self.transcript_text(row, t)
            chunk, more, nxt = page(text, cursor, max_chars)
        return OutputOut(
            agent=row.name, turn=t.n, turn_status=t.status, mode=mode, text=chunk, truncated=more, next_cursor=nxt,
            total_chars=len(text), transcript_path=path, files_read=t.reads[:FILES_SHOWN],
            files_written=t.writes[:FILES_SHOWN], reads_total=len(t.reads), writes_total=len(t.writes),
        )  # fmt: skip

    async def written_files(self) -> list[tuple[Path, AgentRow, int]]:
        """Every file an agent turn recorded as written (deleted agents too): (path, agent, turn number)."""
        out: list[tuple[Path, AgentRow, int]] = []
        for agent in await self._store.list_agents(include_deleted=True):
            for turn in await self._store.turns_of(agent.id):
                for rel in turn.writes:
                    out.append((Path(rel) if Path(rel).is_absolute() else Path(agent.cwd) / rel, agent, turn.n))
        return out

    # -- worktrees (issue 11) --------------------------------------------------------------------------------
    async def with_changes(self, agents: Sequence[AgentRow], rows: list[AgentRowOut]) -> list[AgentRowOut]:
        """The rows with ``changes`` (the stored summary of each worktree) and ``overlaps`` (other live agents whose
        stored changed files intersect its own). From the store only, no git call; the other agents are read only
        when one of these rows has changes."""
        if not any(a.changes is not None and a.changes.files for a in agents):
            return rows
        changed = {
            a.name: a.changes.files
            for a in await self._store.isolated_agents()
            if a.changes is not None and a.status != "deleted"
        }
        changed.update({a.name: a.changes.files for a in agents if a.changes is not None and a.status != "deleted"})
        over = overlaps(changed)
        out: list[AgentRowOut] = []
        for a, row in zip(agents, rows, strict=True):
            if a.changes is None or not a.changes.files:
                out.append(row)
                continue
            summary = changes_summary(a.changes.added, a.changes.removed, len(a.changes.files))
            if summary and a.merged_at is not None:
                summary += ", merged"
            out.append(row.model_copy(update={"changes": summary, "overlaps": over.get(a.name)}))
        return out

    async def diff(self, agent: AgentRow) -> str:
        """The agent's diff against its base (committed turns and uncommitted work of its worktree)."""
        ws = agent.workspace
        if ws is None:
            raise no_worktree(agent)
        if agent.status == "deleted":
            raise NotFound(
                f"agent {agent.name!r} was deleted and its worktree removed; if delete_agent kept its branch (it "
                f"held unmerged work), `git diff {ws.base[:12]} {ws.branch}` in {ws.repo} shows its changes"
            )
        return await worktrees.diff(ws)

    # -- batches ---------------------------------------------------------------------------------------------
    async def batch_runs(self, batch_id: str) -> list[RunRow]:
        if await self._store.get_batch(batch_id) is None:
            raise NotFound(f"no batch {batch_id!r}; run_agents returns the batch id to wait on")
        return await self._store.runs_of(batch_id)

    async def batch_view(self, batch_id: str, *, result_chars: int = BATCH_RESULT_CHARS) -> BatchOut:
        """A batch's runs by wave, each finished one with the first ``result_chars`` of its result."""
        runs = await self.batch_runs(batch_id)
        batch = await self._store.get_batch(batch_id)
        assert batch is not None
        wave_of = waves({r.run_id: r.depends_on for r in runs})
        names = await self._store.batch_agent_names(batch_id)
        done = [r.agent_id for r in runs if r.status in ("succeeded", "failed") and r.agent_id]
        firsts = await self._store.first_turns(done)
        out: list[RunOut] = []
        durations: list[float] = []
        for r in runs:
            result, truncated, text = None, False, ""
            if r.status in ("succeeded", "failed") and r.agent_id:
                turn = firsts.get(r.agent_id)
                text = (turn.result_text if turn else None) or ""
                if text:
                    truncated = len(text) > result_chars
                    result = text[:result_chars] if result_chars else None
            if r.started_at and r.ended_at:
                durations.append(r.ended_at - r.started_at)
            out.append(
                RunOut(
                    id=r.run_id, template=r.template, agent=names.get(r.agent_id or ""), status=r.status,
                    wave=wave_of[r.run_id], depends_on=r.depends_on, result=result, truncated=truncated,
                    result_chars=len(text) if truncated else 0, reason=r.reason,
                )
            )  # fmt: skip
        end = batch.ended_at or time.time()
        return BatchOut(
            batch=batch_id, status=batch.status, runs=out, wall_s=round(end - batch.created_at, 1) or None,
            sum_run_s=round(sum(durations), 1) or None,  # under 0.05 s: left out (a result carries no zeros)
        )  # fmt: skip

    async def batch_report(self, batch: BatchRow, now: float) -> BatchReport:
        view = await self.batch_view(batch.id, result_chars=STATUS_RUN_RESULT_CHARS)
        spans = [((r.ended_at or now) - r.started_at) for r in await self._store.runs_of(batch.id) if r.started_at]
        busy = round(sum(spans), 1) if spans else None
        saved = round(busy - view.wall_s, 1) if busy is not None and view.wall_s is not None else None
        return BatchReport(**view.model_dump(), created_at=batch.created_at, busy_s=busy, saved_s=saved)


def _fleet_summary(t: FleetTotals) -> FleetSummary:
    return FleetSummary(
        agents=t.agents, running=t.running, queued=t.queued, idle=t.idle, failed=t.failed, stopped=t.stopped,
        tokens=Tokens(input=t.input_tokens, output=t.output_tokens, cache_read=t.cache_read_tokens,
                      cache_write=t.cache_write_tokens),
        cost_usd=t.cost_usd,
    )  # fmt: skip
