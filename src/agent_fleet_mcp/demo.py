"""`agent-fleet demo`: the sleeping-orchestrator pattern, end to end, offline.

Starts the scripted Messages API (unless --live), the real MCP server over stdio, connects a real MCP client and
plays what a host model would do: discover templates, delegate scouts -> planner -> two builders with run_agents,
sleep with wait_for_agents (printing progress notifications), read statuses, costs and capped outputs. The sample
project is a git repository, so each builder edits its own worktree: both change the same line in parallel, the
status rows warn of the overlap, one merge_agent succeeds and the other reports its conflict with the checkout left
untouched. Then it cleans up.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

SAMPLE: dict[str, str] = {
    "README.md": (
        "# inventory\n\nA tiny stock-keeping service. `python -m inventory.report` prints the low-stock report.\n\n"
        "Known issue: the low-stock threshold is hard-coded in inventory/stock.py; operators want to set it\n"
        "through the LOW_STOCK_THRESHOLD environment variable.\n"
    ),
    "inventory/__init__.py": '"""Stock keeping."""\n',
    "inventory/stock.py": (
        '"""Stock levels and the low-stock rule."""\n\nimport os\n\nLOW_STOCK_THRESHOLD = 3\n\n\n'
        "def low_stock(items: dict[str, int]) -> list[str]:\n"
        '    """Names of the items at or below the threshold, sorted."""\n'
        "    return sorted(name for name, qty in items.items() if qty <= LOW_STOCK_THRESHOLD)\n"
    ),
    "inventory/report.py": (
        '"""The low-stock report."""\n\nfrom inventory.stock import low_stock\n\n'
        'ITEMS = {"bolts": 2, "nuts": 40, "washers": 3, "gears": 9}\n\n\n'
        "def main() -> None:\n"
        "    for name in low_stock(ITEMS):\n"
        '        print(f"LOW: {name}")  # TODO: print totals too\n\n\n'
        'if __name__ == "__main__":\n    main()\n'
    ),
    "tests/test_stock.py": (
        "from inventory.stock import low_stock\n\n\n"
        "def test_threshold_is_inclusive():\n"
        '    assert low_stock({"a": 3, "b": 4}) == ["a"]\n'
    ),
}

EDIT = (
    'replace "LOW_STOCK_THRESHOLD = 3" with '
    "\"LOW_STOCK_THRESHOLD = int(os.environ.get('LOW_STOCK_THRESHOLD', '3'))\" in inventory/stock.py"
)
RIVAL_EDIT = 'replace "LOW_STOCK_THRESHOLD = 3" with "LOW_STOCK_THRESHOLD = 5" in inventory/stock.py'

RUNS: list[dict[str, Any]] = [
    {"id": "scout-rule", "agent": "scout", "input": "Where is the low-stock threshold defined and used?"},
    {"id": "scout-config", "agent": "scout", "input": "How does the inventory package read configuration "
     "(environment variables, settings files)?"},
    {"id": "scout-tests", "agent": "scout", "input": "Which tests cover the stock rules (low_stock)?"},
    {"id": "plan", "agent": "planner", "depends_on": ["scout-rule", "scout-config", "scout-tests"],
     "input": "Plan: make the low-stock threshold configurable through the LOW_STOCK_THRESHOLD environment "
     "variable (default 3). Scout findings:\n\n## rule\n{{scout-rule}}\n\n## config\n{{scout-config}}\n\n"
     "## tests\n{{scout-tests}}"},
    {"id": "build", "agent": "builder", "depends_on": ["plan"],
     "input": f"Implement the plan. Precisely: {EDIT}.\n\nThe plan, for context:\n{{{{plan}}}}"},
    {"id": "build-quick", "agent": "builder", "depends_on": ["plan"],
     "input": f"Quick fix while the plan is built: raise the default threshold. Precisely: {RIVAL_EDIT}."},
]  # fmt: skip
GIT_ENV = {"GIT_AUTHOR_NAME": "demo", "GIT_AUTHOR_EMAIL": "demo@agent-fleet.invalid", "GIT_COMMITTER_NAME": "demo",
           "GIT_COMMITTER_EMAIL": "demo@agent-fleet.invalid"}  # fmt: skip


def write_sample(root: Path) -> None:
    for rel, text in SAMPLE.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def run_demo(*, live: bool = False, keep: bool = False) -> int:
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    if live and not (os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN")):
        console.print("[red]--live needs ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN) in the environment.[/red]")
        return 2
    with ExitStack() as stack:
        base = Path(tempfile.mkdtemp(prefix="agent-fleet-demo-"))
        if not keep:
            import shutil

            stack.callback(shutil.rmtree, base, True)
        project, home = base / "inventory", base / "home"
        write_sample(project)
        anyio.run(_git_init, project)
        env = {k: v for k, v in os.environ.items() if k != "CLAUDECODE"}
        env.update(AGENT_FLEET_HOME=str(home), AGENT_FLEET_MAX_CONCURRENT="4")
        if live:
            where = "LIVE: the real Anthropic API (costs real money)"
        else:
            from agent_fleet_mcp.testing import ScriptedModelServer

            srv = stack.enter_context(ScriptedModelServer())
            env.update(ANTHROPIC_BASE_URL=srv.base_url, ANTHROPIC_API_KEY="offline-demo")
            where = f"offline: scripted Messages API at {srv.base_url} (no API key, no network)"
        console.print(Panel.fit(f"[bold]agent-fleet demo[/bold] — {where}\nsample project: {project}"))
        try:
            code = anyio.run(_play, console, env, project)
        finally:
            from agent_fleet_mcp.runners import forkserver

            forkserver.stop(home)  # the demo's preloaded worker fork server ends with the demo
        if keep:
            console.print(f"\nKept everything under {base}\n  AGENT_FLEET_HOME={home} agent-fleet status")
        return code


async def _git(project: Path, *args: str) -> str:
    """Run git in the sample project (a fixed author: works with no git config)."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GIT_")}, **GIT_ENV}
    done = await anyio.run_process(["git", "-c", "core.hooksPath=/dev/null", *args], cwd=project, env=env)
    return done.stdout.decode().strip()


async def _git_init(project: Path) -> None:
    await _git(project, "init", "-q", "-b", "main")
    await _git(project, "add", "-A")
    await _git(project, "commit", "-q", "-m", "inventory: the sample project")


async def _play(console: Console, env: dict[str, str], project: Path) -> int:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(command=sys.executable, args=["-m", "agent_fleet_mcp"], env=env, cwd=str(project))
    before = (project / "inventory/stock.py").read_text()
    async with Client(params, mode="legacy") as client:

        async def call(tool: str, say: str, **args: Any) -> dict[str, Any]:
            console.print(f"\n[bold cyan]▶ {tool}[/bold cyan] {say}")
            res = await client.call_tool(tool, args, progress_callback=progress)
            if res.is_error:
                raise RuntimeError(" ".join(getattr(c, "text", "") for c in res.content))
            assert res.structured_content is not None
            return res.structured_content

        async def progress(progress: float, total: float | None, message: str | None) -> None:
            console.print(Text(f"   … progress: {message or progress}", style="dim"))

        catalog = await call("list_task_agents", "— what can I delegate to?")
        console.print("   " + ", ".join(f"{a['name']} ({a['runner']}, {a.get('permission', 'readonly')})"
                                        for a in catalog["agents"]))  # fmt: skip

        console.print("\n[bold]The orchestrator delegates and goes to sleep:[/bold]")
        for r in RUNS:
            deps = f"  ⇐ {', '.join(r['depends_on'])}" if r.get("depends_on") else ""
            console.print(Text(f"   {r['id']:<13} {r['agent']:<8} {r['input'].splitlines()[0][:70]}{deps}"))
        t0 = time.monotonic()
        out = await call("run_agents", "— 3 scouts in parallel, then planner, then 2 builders", runs=RUNS, wait_s=20)
        batch = out["batch"]
        while not out.get("done"):
            out = await call("wait_for_agents", f"— sleeping on batch {batch['batch']}", batch=batch["batch"],
                             timeout_s=30)  # fmt: skip
            batch = out["batch"]
        wall = time.monotonic() - t0
        _runs_table(console, batch)
        saved = (batch.get("sum_run_s") or 0) - (batch.get("wall_s") or 0)
        console.print(
            f"   batch {batch['status']} in {wall:.1f} s wall; runs took {batch.get('sum_run_s')} s in sum "
            f"(parallel waves saved {max(saved, 0):.1f} s)"
        )

        names = [r["agent"] for r in batch["runs"] if r.get("agent")]
        for tool, say, args in (
            ("wait_for_agents", "— what finished (already done: returns at once)", {"agents": names, "timeout_s": 0}),
            ("get_agent_status", "— the fleet at a glance (bounded: at most 20 rows)", {}),
        ):
            seen = await call(tool, say, **args)
            console.print(Text(f"   {json.dumps(seen, separators=(',', ':'), ensure_ascii=False)}", style="dim"))
        status = await call("get_agent_status", "— the batch's agents, with detail", agents=names)
        _status_table(console, status)
        warned: set[str] = set()
        for a in status["agents"]:
            if a.get("overlaps") and a["name"] not in warned:
                warned.update([a["name"], *a["overlaps"]])
                console.print(Text(f"   ⚠ overlaps: {a['name']} and {', '.join(a['overlaps'])} changed the same "
                                   "file(s), each in its own worktree", style="bold yellow"))  # fmt: skip

        build_agent = next(r["agent"] for r in batch["runs"] if r["id"] == "build")
        rival = next(r["agent"] for r in batch["runs"] if r["id"] == "build-quick")
        res = await call("get_agent_output", f"— the builder's result, capped ({build_agent})",
                         agent=build_agent, max_chars=800)  # fmt: skip
        console.print(Panel(Text(res["text"]), title=f"{build_agent} result ({res['total_chars']} chars"
                            f"{', truncated' if res.get('truncated') else ''})"))  # fmt: skip
        res = await call("get_agent_output", '(mode="diff") — what it changed in its worktree', agent=build_agent,
                         mode="diff", max_chars=1500)  # fmt: skip
        console.print(Panel(Text(res["text"] or "(no change)"), title=f"{build_agent}: diff against its base"))
        untouched = (project / "inventory/stock.py").read_text() == before
        console.print(f"   the checkout is {'still untouched' if untouched else 'CHANGED'}: agents edit worktrees")

        merged = await _merge_both(console, call, project, build_agent, rival)
        after = (project / "inventory/stock.py").read_text()
        diff = "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True), "a/inventory/stock.py",
                                            "b/inventory/stock.py"))  # fmt: skip
        log = await _git(project, "log", "--graph", "--format=%h %an: %s", "-4")
        console.print(Panel(Text(log), title="git log in the checkout: the agent's turn, merged"))

        gone = await call("delete_agent", '("all") — clean up', agents="all")
        console.print(f"   deleted {len(gone['deleted'])} agents (everything their turns started is stopped)")
        for d in gone["deleted"]:
            if d.get("branch_kept"):
                console.print(Text(f"   {d['name']}: {d['branch_kept']}", style="dim"))
        ok = batch["status"] == "succeeded" and bool(diff) and untouched and merged
        console.print("\n[bold green]demo complete[/bold green]" if ok else "\n[bold red]demo failed[/bold red]")
        return 0 if ok else 1


async def _merge_both(console: Console, call: Any, project: Path, first: str, second: str) -> bool:
    """merge_agent the first builder (a dry run, then for real), then the second, whose change to the same line
    conflicts: the demo shows that nothing in the checkout moved. True when the story went as told."""
    check = await call("merge_agent", f"(dry_run=true) — would {first} merge cleanly?", agent=first, dry_run=True)
    console.print(f"   {check['note']}")
    done = await call("merge_agent", f"— apply {first}'s changes to the checkout", agent=first)
    console.print(f"   {done['note']}")
    head = await _git(project, "rev-parse", "HEAD")
    clash = await call("merge_agent", f"— apply {second}'s changes too", agent=second)
    console.print(Text(f"   {clash['note']}", style="yellow" if clash.get("conflicts") else ""))
    for path, agents in clash.get("caused_by", {}).items():
        console.print(Text(f"   conflict in {path}: also changed by {', '.join(agents)}", style="yellow"))
    porcelain = await _git(project, "status", "--porcelain")
    same_head = await _git(project, "rev-parse", "HEAD") == head
    console.print(f"   checkout untouched: git status {'clean' if not porcelain else 'NOT clean'}, HEAD "
                  f"{'unchanged' if same_head else 'MOVED'} ({head[:10]})")  # fmt: skip
    return bool(done["merged"]) and not clash["merged"] and bool(clash.get("conflicts")) and not porcelain and same_head


def _runs_table(console: Console, batch: dict[str, Any]) -> None:
    table = Table(title=f"batch {batch['batch']}", title_justify="left")
    for col in ("wave", "run", "template", "status", "result (first line)"):
        table.add_column(col, overflow="fold")
    for r in sorted(batch["runs"], key=lambda r: r.get("wave", 0)):
        first = (r.get("result") or r.get("reason") or "").strip().splitlines()
        table.add_row(str(r.get("wave", 0)), r["id"], r["template"], r["status"], first[0][:90] if first else "")
    console.print(table)


def _status_table(console: Console, status: dict[str, Any]) -> None:
    table = Table(title_justify="left")
    for col in ("agent", "model", "status", "turns", "tools", "tokens in/out", "cost", "reads", "writes", "changes"):
        table.add_column(col)
    for a in status["agents"]:
        cost = "?" if a.get("cost_usd") is None else f"${a['cost_usd']:.4f}"
        tokens: dict[str, int] = a.get("tokens") or {}
        table.add_row(
            a["name"], a.get("model") or "-", a["status"], str(a.get("turns", 0)), str(a.get("tool_calls", 0)),
            f"{tokens.get('input', 0)}/{tokens.get('output', 0)}", cost, str(a.get("reads", 0)),
            str(a.get("writes", 0)), a.get("changes") or "",
        )  # fmt: skip
    console.print(table)
    f = status["fleet"]
    tokens = f.get("tokens", {})
    console.print(
        f"   fleet: {f.get('agents', 0)} agents, {f.get('running', 0)} running, {f.get('failed', 0)} failed; "
        f"{tokens.get('input', 0) + tokens.get('output', 0)} tokens, ${f.get('cost_usd', 0.0):.4f}"
    )
