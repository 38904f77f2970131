"""Rendering for the human CLI (rich): the catalog, fleet status, one agent in detail, logs, cost, and the live
`watch` screen. Pure: report models in (reader_models.py), renderables out; no store, no printing (commands.py
prints). This module is never used by the stdio server.

Every value taken from the fleet is shown as plain ``Text`` (never parsed as rich markup), so agent output with
brackets prints as it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from agent_fleet_mcp.catalog import Catalog, builtin_agents_dir, trust_command
from agent_fleet_mcp.deprecation import DefinitionNotice
from agent_fleet_mcp.errors import UntrustedDefinition
from agent_fleet_mcp.event_text import render_event
from agent_fleet_mcp.events import Event
from agent_fleet_mcp.reader_models import (
    EMPTY_FLEET,
    STALL_AFTER_S,
    AgentDetail,
    AgentStatus,
    BatchReport,
    CostGroup,
    CostReport,
    StatusReport,
)
from agent_fleet_mcp.schemas import Tokens
from agent_fleet_mcp.spec import TaskAgentDefinition
from agent_fleet_mcp.store.models import RUN_DONE
from agent_fleet_mcp.text import preview

STATUS_STYLE = {
    "running": "bold green", "queued": "yellow", "idle": "cyan", "failed": "bold red", "stopped": "magenta",
    "deleted": "dim", "succeeded": "green", "cancelled": "magenta", "lost": "red", "waiting": "yellow",
}  # fmt: skip
RUN_MARK = {"succeeded": "✓", "running": "⟳", "waiting": "…", "failed": "✗"}
EVENT_STYLE = {
    "started": "dim", "session": "dim", "text": "", "tool_use": "cyan", "usage": "dim", "error": "bold red",
}  # fmt: skip
ERROR_CHARS = 90
CHANGES_CHARS = 48
WIDE = 140  # terminal columns from which status shows every column
NARROW = 110  # under this, only the essential ones
ACTIVITY_CHARS = 60
PROMPT_CHARS = 70
STAMP_WIDTH = 9  # "HH:MM:SS "
RESULT_LOG_CHARS = 2_000
FAILED_ERROR_CHARS = 300


def make_console(*, stderr: bool = False, soft_wrap: bool = False) -> Console:
    return Console(highlight=False, stderr=stderr, soft_wrap=soft_wrap)


# -- small formats ---------------------------------------------------------------------------------------------


def fmt_tokens(n: int) -> str:
    if n < 1_000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1_000:.1f}k"
    return f"{n / 1_000_000:.2f}M"


def fmt_cost(usd: float | None, *, unpriced: int = 0) -> str:
    if usd is None or (unpriced and not usd):
        return "?"
    text = f"${usd:.4f}" if usd < 10 else f"${usd:,.2f}"
    return text + (" + ?" if unpriced else "")


def fmt_duration(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 10:
        return f"{s:.1f}s"
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{int(s // 60)}m {int(s % 60):02d}s"
    if s < 86400:
        return f"{int(s // 3600)}h {int(s % 3600 // 60):02d}m"
    return f"{int(s // 86400)}d {int(s % 86400 // 3600)}h"


def fmt_clock(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "-"
    now = time.time() if now is None else now
    fmt = "%H:%M:%S" if now - ts < 20 * 3600 else "%Y-%m-%d %H:%M"
    return time.strftime(fmt, time.localtime(ts))


def _tokens_in_out(t: Tokens) -> str:
    return f"{fmt_tokens(t.input)}/{fmt_tokens(t.output)}"


# -- status ----------------------------------------------------------------------------------------------------


def status_view(report: StatusReport, *, width: int = WIDE) -> RenderableType:
    if not report.agents and not report.batches:
        if report.deleted_agents:
            n = report.deleted_agents
            return Text(f"No live agents ({n} deleted: `agent-fleet status --all` lists them, `agent-fleet cost` "
                        "adds up what they spent).")  # fmt: skip
        return Text(EMPTY_FLEET)
    parts: list[RenderableType] = [agents_table(report.agents, width=width), fleet_line(report)]
    for a in report.agents:
        if a.status == "failed" and a.last_error:
            line = Text(f"✗ {a.name}: ", style="bold red")
            line.append(preview(a.last_error, FAILED_ERROR_CHARS), style="red")
            parts.append(line)
    for b in report.batches:
        parts.append(Text(""))
        parts.append(batch_lines(b))
    if report.older_batches:
        parts.append(Text(f"({report.older_batches} older batches not shown)", style="dim"))
    return Group(*parts)


def make_table(**kwargs: Any) -> Table:
    return Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True, **kwargs)


def one_line(text: str, style: str = "") -> Text:
    """A cell that never wraps (clipped with …): its column can shrink on a narrow terminal."""
    return Text(text, style=style, no_wrap=True, overflow="ellipsis")


def agents_table(rows: list[AgentStatus], *, width: int = WIDE) -> Table:
    """One row per agent. Narrower terminals drop the runner and context % (under WIDE), then the model, turns
    and elapsed columns (under NARROW); the last-error column only appears when some agent has an error."""
    cols = ["agent", "runner", "model", "status", "activity", "turns", "tokens in/out", "ctx", "cost", "elapsed"]
    if width < WIDE:
        cols = [c for c in cols if c not in ("runner", "ctx")]
    if width < NARROW:
        cols = [c for c in cols if c not in ("model", "turns", "elapsed")]
    if width >= NARROW and any(r.changes for r in rows):  # worktree agents: their changes, ⚠ with overlaps
        cols.append("changes")
    if width >= WIDE and any(r.last_error for r in rows):  # narrower: the ✗ lines under the table say it
        cols.append("last error")
    longest = max((len(r.name) for r in rows), default=5)
    table = make_table()
    for col in cols:
        if col == "agent":
            table.add_column(col, style="bold", min_width=min(longest, 24))
        elif col == "model":
            table.add_column(col, min_width=5, max_width=24)
        elif col == "activity":
            table.add_column(col, min_width=8, max_width=ACTIVITY_CHARS)
        elif col == "last error":
            table.add_column(col, min_width=10, max_width=ERROR_CHARS)
        elif col == "changes":
            table.add_column(col, min_width=16, max_width=CHANGES_CHARS)
        else:
            table.add_column(col, no_wrap=True, justify="left" if col in ("runner", "status") else "right")
    for r in rows:
        cells: dict[str, RenderableType] = {
            "agent": one_line(r.name), "runner": Text(r.runner), "model": one_line(r.model or "-"),
            "status": status_cell(r), "activity": activity_cell(r), "turns": str(r.turns),
            "tokens in/out": _tokens_in_out(r.tokens),
            "ctx": f"{r.context_pct:.0f}%" if r.context_pct is not None else "-",
            "cost": Text(fmt_cost(r.cost_usd)), "elapsed": fmt_duration(r.elapsed_s),
            "last error": one_line(preview(r.last_error, ERROR_CHARS), "red"), "changes": changes_cell(r),
        }  # fmt: skip
        table.add_row(*(cells[c] for c in cols), style="dim" if r.status == "deleted" else None)
    return table


def changes_cell(r: AgentStatus) -> Text:
    """'+12 -3, 2 files' and, when other agents changed some of the same files, '⚠ b2' (the overlapping ones)."""
    text = one_line(r.changes or "")
    if r.overlaps:
        text.append(f" ⚠ {', '.join(r.overlaps)}", style="yellow")
    return text


def status_cell(r: AgentStatus) -> Text:
    text = Text(r.status, style=STATUS_STYLE.get(r.status, ""))
    if r.queued and r.status == "running":
        text.append(f" +{r.queued} queued", style="yellow")
    if r.process_gone:  # ended while no server was up: the outcome shown is read from its files
        text.append(" · unrecorded", style="yellow")
    elif r.stalled:
        text.append(f" ⚠ stalled {fmt_duration(r.idle_s)}", style="bold yellow")
    return text


def activity_cell(r: AgentStatus) -> Text:
    if r.turn_status == "running":
        return one_line(r.activity or "starting")
    if r.turn_status == "queued" and r.status == "running" and r.turn:
        return one_line(f"turn {r.turn - r.queued} running, turn {r.turn} queued", "yellow")
    if r.turn_status == "queued":
        return one_line(f"turn {r.turn} waiting for a slot", "yellow")
    if r.turn is None:
        return one_line("no turns yet", "dim")
    return one_line(f"turn {r.turn} {r.turn_status}", "dim")


def fleet_line(report: StatusReport) -> Text:
    f = report.fleet
    line = Text("fleet ", style="bold")
    counts = [("running", f.running), ("queued", f.queued), ("idle", f.idle), ("failed", f.failed)]
    if f.stopped:
        counts.append(("stopped", f.stopped))
    for i, (label, n) in enumerate(counts):
        if i:
            line.append(" · ", style="dim")
        line.append(f"{n} {label}", style=STATUS_STYLE[label] if n else "dim")
    line.append(f"   tokens {fmt_tokens(f.tokens.input)} in / {fmt_tokens(f.tokens.output)} out")
    line.append(f"   cost {fmt_cost(f.cost_usd, unpriced=report.unpriced_agents)}", style="bold")
    if report.unpriced_agents:
        n = report.unpriced_agents
        line.append(f" ({n} unpriced agent{'s' if n > 1 else ''})", style="dim")
    stalled = [a.name for a in report.agents if a.stalled]
    if stalled:
        line.append(f"   stuck: {', '.join(stalled)}", style="bold yellow")
    unrecorded = [a.name for a in report.agents if a.process_gone]
    if unrecorded:
        line.append(f"   unrecorded: {', '.join(unrecorded)} (ended with no server up)", style="yellow")
    return line


def batch_lines(b: BatchReport) -> Group:
    done = sum(1 for r in b.runs if r.status in RUN_DONE)
    head = Text("batch ", style="bold")
    head.append(b.batch, style="bold")
    head.append(f"  {b.status}", style=STATUS_STYLE.get(b.status, ""))
    head.append(f"  {done}/{len(b.runs)} runs done · wall {fmt_duration(b.wall_s)}")
    if b.busy_s is not None:
        head.append(f" · runs {fmt_duration(b.busy_s)}")
    if b.saved_s is not None and b.saved_s > 0 and b.wall_s:
        head.append(f" · parallel saved {fmt_duration(b.saved_s)} ({(b.busy_s or 0) / b.wall_s:.1f}×)", style="green")
    lines: list[RenderableType] = [head]
    for wave in sorted({r.wave for r in b.runs}):
        line = Text(f"  wave {wave}: ", style="dim")
        for i, r in enumerate(x for x in b.runs if x.wave == wave):
            if i:
                line.append(", ")
            line.append(r.id)
            line.append(f" {RUN_MARK.get(r.status, '?')}", style=STATUS_STYLE.get(r.status, ""))
            if r.depends_on:
                verb = "waits on" if r.status == "waiting" else "after"
                line.append(f" ({verb} {', '.join(r.depends_on)})", style="dim")
        lines.append(line)
    for r in b.runs:
        if r.status == "failed":
            lines.append(Text(f"  ✗ {r.id}: {preview(r.reason, 160)}", style="red"))
    return Group(*lines)


# -- one agent -------------------------------------------------------------------------------------------------


def detail_view(d: AgentDetail) -> RenderableType:
    a = d.agent
    now = time.time()
    head = Text(a.name, style="bold")
    head.append("  ")
    head.append_text(status_cell(a))
    head.append(f"  {a.runner} · model {a.model or '-'} · {a.turns} turn{'s' if a.turns != 1 else ''}")
    head.append(f" · tokens {_tokens_in_out(a.tokens)} · cost {fmt_cost(a.cost_usd)}")
    info = Text(f"id {a.id} · template {d.template or '-'} · created {fmt_clock(d.created_at, now)}", style="dim")
    info.append(f" · cwd {d.cwd}")
    if d.session_id:
        info.append(f" · session {d.session_id}")
    parts: list[RenderableType] = [head, info]
    if a.turn_status == "running":
        parts.append(Text(f"now: {a.activity or 'starting'}"))
    table = make_table(title="turns", title_justify="left")
    for col, kw in (
        ("#", {"justify": "right"}), ("status", {}), ("started", {}), ("took", {"justify": "right"}),
        ("tokens in/out", {"justify": "right"}), ("cost", {"justify": "right"}), ("tools", {"justify": "right"}),
        ("read", {"justify": "right"}), ("wrote", {"justify": "right"}),
    ):  # fmt: skip
        table.add_column(col, no_wrap=True, **kw)  # type: ignore[arg-type]
    table.add_column("prompt / outcome", min_width=10, max_width=PROMPT_CHARS)
    for t in d.turns:
        outcome = one_line(preview(t.prompt, PROMPT_CHARS))
        if t.error:
            outcome = one_line(preview(t.error, PROMPT_CHARS), "red")
        elif t.reason and t.status != "succeeded":
            outcome = one_line(t.reason, "red")
        table.add_row(
            str(t.n), Text(t.status, style=STATUS_STYLE.get(t.status, "")), fmt_clock(t.started_at, now),
            fmt_duration(t.duration_s), _tokens_in_out(t.tokens), fmt_cost(t.cost_usd), str(t.tool_calls),
            str(t.reads), str(t.writes), outcome,
        )  # fmt: skip
    parts.append(table)
    for label, files in (("files read", d.reads), ("files written", d.writes)):
        title = Text(f"{label} ({files.total})", style="bold")
        if not files.total:
            title.append(" none recorded", style="dim")
        parts.append(title)
        parts.extend(Text(f"  {p}") for p in files.shown)
        if files.total > len(files.shown):
            parts.append(Text(f"  … and {files.total - len(files.shown)} more", style="dim"))
    if d.last_error:
        parts.append(Text("last error: ", style="bold red") + Text(d.last_error, style="red"))
    if d.result_turn is not None and d.result_preview is not None:
        more = d.result_chars - len(d.result_preview)
        title = Text(f"result of turn {d.result_turn} ({d.result_chars:,} chars", style="bold")
        title.append(f", first {len(d.result_preview)} shown)" if more > 0 else ")", style="bold")
        parts.append(title)
        parts.append(Padding(Text(d.result_preview + (" …" if more > 0 else "")), (0, 0, 0, 2)))
    if d.transcript:
        parts.append(Text(f"transcript {d.transcript}  (agent-fleet logs {a.name})", style="dim"))
    if d.workspace is not None:
        parts.extend(workspace_lines(d))
    return Group(*parts)


def workspace_lines(d: AgentDetail) -> list[RenderableType]:
    """`status AGENT` of an isolated agent: branch, base, change summary, overlaps, changed files."""
    ws = d.workspace
    assert ws is not None
    a = d.agent
    title = Text("worktree ", style="bold")
    title.append(f"branch {ws.branch} · base {ws.base[:10]} · ")
    title.append(a.changes or "no changes", style="" if a.changes else "dim")
    if ws.merged_at is not None:
        title.append(f" · merged {fmt_clock(ws.merged_at)}", style="green")
    parts: list[RenderableType] = [title, Text(f"  {ws.path}  (from {ws.repo})", style="dim")]
    if a.overlaps:
        parts.append(Text(f"  ⚠ overlaps: {', '.join(a.overlaps)} changed some of the same files", style="yellow"))
    parts.extend(Text(f"  {p}") for p in ws.files.shown)
    if ws.files.total > len(ws.files.shown):
        parts.append(Text(f"  … and {ws.files.total - len(ws.files.shown)} more", style="dim"))
    if a.changes:
        parts.append(Text(f"  agent-fleet diff {a.name}  ·  merge_agent(agent={a.name!r}) applies it", style="dim"))
    return parts


# -- diff ------------------------------------------------------------------------------------------------------

DIFF_STYLE = (("+++", "bold"), ("---", "bold"), ("+", "green"), ("-", "red"), ("@@", "cyan"), ("diff ", "bold"))


# Control characters an agent may have written into a file, shown as ^[ / \x9b instead of reaching the terminal
# (an escape sequence could set the window title, write the clipboard, clear the screen).
_VISIBLE_CONTROLS = (
    {c: f"^{chr(c + 64)}" for c in range(0x20) if c not in (0x09, 0x0A)}
    | {0x7F: "^?"}
    | {c: f"\\x{c:02x}" for c in range(0x80, 0xA0)}
)


def diff_view(diff: str) -> Text:
    """A unified diff coloured line by line (added green, removed red, hunks cyan, file headers bold); control
    characters in it are shown, never sent to the terminal."""
    out = Text()
    for line in diff.translate(_VISIBLE_CONTROLS).splitlines(keepends=True):
        style = next((st for prefix, st in DIFF_STYLE if line.startswith(prefix)), "")
        out.append(line, style=style)
    return out


# -- logs ------------------------------------------------------------------------------------------------------


def event_text(ev: Event) -> Text:
    """One normalized event as a styled line (event_text.render_event's wording; continuation lines indented)."""
    kind = str(ev.get("type"))
    stamp = time.strftime("%H:%M:%S ", time.localtime(ev["ts"])) if ev.get("ts") else " " * STAMP_WIDTH
    if ev["type"] == "result" and len(ev["text"]) > RESULT_LOG_CHARS:
        full = ev["text"]
        cut = f"{full[:RESULT_LOG_CHARS]} [... {len(full) - RESULT_LOG_CHARS:,} more chars: `agent-fleet logs --raw`]"
        ev = {**ev, "text": cut}
    body = render_event(ev, with_time=False)
    style = EVENT_STYLE.get(kind, "")
    if kind == "tool_result":
        style = "green" if ev.get("ok", True) else "red"
    elif kind == "result":
        style = "bold red" if ev.get("is_error") else "bold green"
    text = Text(stamp, style="dim")
    text.append(body.replace("\n", "\n" + " " * STAMP_WIDTH), style=style)
    return text


class LogLines:
    """Renders a turn's events in order; a result that only repeats the text already shown is not printed twice
    (the final answer, or a command's whole stdout)."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def render(self, ev: Event) -> Text:
        if ev["type"] == "text":
            self.texts.append(ev["text"])
        elif ev["type"] == "result" and self.texts:
            result = _non_blank(str(ev.get("text") or ""))
            if result and result in (_non_blank(self.texts[-1]), _non_blank("\n".join(self.texts))):
                ev = {**ev, "text": f"(the text above, {len(str(ev.get('text'))):,} chars)"}
        return event_text(ev)


def _non_blank(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines() if line.strip())


def log_header(agent_name: str, runner: str, turn_n: int, last_n: int, status: str, prompt: str, path: Path) -> Text:
    text = Text(f"{agent_name} · turn {turn_n} of {last_n} · ", style="bold")
    text.append(status, style=STATUS_STYLE.get(status, ""))
    text.append(f" · {runner}", style="bold")
    text.append(f"\nprompt: {preview(prompt, 160)}\ntranscript: {path}", style="dim")
    return text


# -- cost ------------------------------------------------------------------------------------------------------


def budget_line(report: CostReport) -> Text:
    b = report.budget
    if b is None:
        return Text("")
    if b.budget_usd is None:
        spent = fmt_cost(b.spent_today_usd)
        return Text(f"fleet budget: none (AGENT_FLEET_BUDGET_USD unset) · spent today (UTC) {spent}", style="dim")
    line = Text("fleet budget: ", style="bold")
    line.append(
        f"{fmt_cost(b.left_usd)} left of {fmt_cost(b.budget_usd)} today (UTC) · spent {fmt_cost(b.spent_today_usd)}"
        f" · resets {fmt_clock(b.resets_at)}"
    )
    return line


def cost_view(report: CostReport) -> RenderableType:
    if report.total.turns == 0:
        when = "" if report.since is None else f" since {_since(report.since)}"
        return Group(Text(f"No turns{when}."), budget_line(report))
    title = Text("cost", style="bold")
    title.append(" (all time)" if report.since is None else f" since {_since(report.since)}", style="bold")
    total = report.total
    title.append(
        f"   {total.turns} turns · tokens {fmt_tokens(total.tokens.input)} in / {fmt_tokens(total.tokens.output)} out"
        f" · cache {fmt_tokens(total.tokens.cache_read)} read / {fmt_tokens(total.tokens.cache_write)} written"
    )
    title.append(f" · {fmt_cost(total.cost_usd, unpriced=total.unpriced_turns)}", style="bold")
    parts: list[RenderableType] = [title, budget_line(report)]
    parts.append(_cost_table("by agent", report.by_agent, extra=("runner", "model")))
    parts.append(_cost_table("by runner", report.by_runner, extra=()))
    parts.append(_cost_table("by model", report.by_model, extra=("runner",)))
    if total.unpriced_turns:
        parts.append(
            Text(
                "? = cost unknown: the runner reported no price (command agents, models missing from the price "
                "table); totals with '+ ?' are lower bounds.",
                style="dim",
            )
        )
    return Group(*parts)


def _since(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def _cost_table(title: str, groups: list[CostGroup], *, extra: tuple[str, ...]) -> Table:
    table = make_table(title=title, title_justify="left")
    table.add_column(title.removeprefix("by "), style="bold", min_width=6)
    for col in extra:
        table.add_column(col, min_width=5, max_width=28)
    for col in ("turns", "input", "output", "cache read", "cache write", "cost"):
        table.add_column(col, justify="right", no_wrap=True)
    for g in groups:
        values = {"runner": g.runner or "-", "model": g.model or "-"}
        name = one_line(g.name)
        if g.deleted:
            name.append(" (deleted)", style="dim")
        table.add_row(
            name, *(one_line(values[c]) for c in extra), str(g.turns), fmt_tokens(g.tokens.input),
            fmt_tokens(g.tokens.output), fmt_tokens(g.tokens.cache_read), fmt_tokens(g.tokens.cache_write),
            fmt_cost(g.cost_usd, unpriced=g.unpriced_turns),
        )  # fmt: skip
    return table


def watch_frame(report: StatusReport | None, *, home: Path, interval: float, width: int) -> RenderableType:
    head = Text("agent-fleet watch", style="bold")
    head.append(f"  {home}  {time.strftime('%H:%M:%S')}  every {interval:g}s  stalled after {STALL_AFTER_S:g}s")
    head.append("  Ctrl-C to quit", style="dim")
    body = Text(EMPTY_FLEET) if report is None else status_view(report, width=width)
    return Group(head, Text(""), body)


# -- catalog ---------------------------------------------------------------------------------------------------


def untrusted_lines(untrusted: Sequence[UntrustedDefinition], short: Callable[[str], str]) -> list[Text]:
    """What `agent-fleet agents` prints about untrusted files: each with the command to trust it, then why."""
    out: list[Text] = []
    for u in untrusted:
        line = Text("not trusted ", style="bold yellow")
        what = ": changed since trusted" if u.changed else ": new file"
        line.append(short(u.path) + (f" ({u.name})" if u.name else "") + what)
        line.append(f"\n  review it, then: {trust_command(u.path)}", style="dim")
        out.append(line)
    if untrusted:
        out.append(Text(
            f"{len(untrusted)} definition file(s) are not used until you trust them: a file outside the built-ins "
            "could have been written by an agent. `agent-fleet trust --all` trusts every one that no agent turn "
            "wrote.", style="yellow",
        ))  # fmt: skip
    return out


def catalog_view(
    cat: Catalog, defs: Sequence[TaskAgentDefinition], notices: Sequence[DefinitionNotice], project_dir: Path
) -> RenderableType:
    """`agent-fleet agents`: the definitions, then shadowed ones, definition errors, model notices, untrusted files
    and the folders searched."""
    builtin = str(builtin_agents_dir())
    home = str(Path.home())

    def short(path: str) -> str:
        """Built-in files by name, project files relative to the project, the rest with ~ for the home folder."""
        p = Path(path)
        if p.is_relative_to(builtin):
            return f"built-in {p.name}"
        if p.is_relative_to(project_dir):
            return str(p.relative_to(project_dir))
        return "~" + path[len(home) :] if p.is_relative_to(home) else path

    table = make_table(title=f"task agents ({len(defs)})", title_justify="left", title_style="bold")
    table.add_column("name", style="bold", no_wrap=True)
    for col in ("runner", "model", "permission"):
        table.add_column(col, no_wrap=True)
    table.add_column("tags", min_width=6)
    table.add_column("source", min_width=10)
    for d in defs:
        name = Text(d.name)
        if d.visibility == "private":
            name.append(" (private)", style="dim")
        table.add_row(
            name, Text(d.spec.runner), Text(d.spec.model or "-"), Text(d.spec.permission), Text(", ".join(d.tags)),
            Text(short(d.source), overflow="fold"),
        )  # fmt: skip
    parts: list[RenderableType] = [table]
    for name, used, hidden in cat.shadowed:
        line = Text("shadowed ", style="bold yellow")
        line.append(f"{name}: {short(hidden)} is hidden by {short(used)}")
        parts.append(line)
    untrusted = cat.untrusted
    for p in cat.problems:
        if p in untrusted:
            continue
        line = Text("definition error ", style="bold red")
        line.append(str(p))
        parts.append(line)
    for n in notices:
        line = Text(f"model {n.notice.level} ", style="bold red" if n.notice.level == "error" else "bold yellow")
        line.append(str(n))
        parts.append(line)
    for text in untrusted_lines(untrusted, short):
        parts.append(text)

    def folder(d: Path) -> str:
        if str(d) == builtin:
            return "built-in"
        return "./" + str(d.relative_to(project_dir)) if d.is_relative_to(project_dir) else short(str(d))

    parts.append(Text(f"searched (first wins): {', '.join(folder(d) for d in cat.dirs)}", style="dim"))
    return Group(*parts)
