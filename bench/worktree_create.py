"""Worktree costs on a real repository: create (p50 over 10), changes() after a turn, commit_turn, remove.

    uv run python bench/worktree_create.py [REPO] [--json]     # REPO defaults to /work/main, else this checkout

The repository is never written to: it is cloned (``git clone --local``: hard-linked objects) into a temporary
folder, the clone gets a few uncommitted edits and an untracked file (so every base is a snapshot commit, the
expensive path), and every worktree lives under a temporary fleet home. Prints a table, or with ``--json`` a list of
``{"figure", "value", "target", "ok"}``.
"""

from __future__ import annotations

import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import structlog

from agent_fleet_mcp import worktrees

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))  # stdout is the table
RUNS = 10
TARGETS_MS = {"create p50": 1000.0, "changes p50": 150.0, "commit_turn p50": 300.0, "remove p50": 500.0}


def clone(src: str, dst: Path) -> None:
    subprocess.run(["git", "clone", "--quiet", "--local", src, str(dst)], check=True)
    files = subprocess.run(["git", "ls-files"], cwd=dst, capture_output=True, text=True, check=True).stdout.split()
    for rel in [f for f in files if f.endswith(".py")][:3]:
        with (dst / rel).open("a") as f:
            f.write("# uncommitted edit\n")
    (dst / "untracked_note.md").write_text("an untracked file the agents must see\n")


async def measure(repo: Path, home: Path, edit: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in TARGETS_MS}
    for i in range(RUNS):
        t0 = time.perf_counter()
        ws = await worktrees.create(cwd=str(repo), home=home, agent_id=f"a{i}", agent_name=f"bench-{i}")
        out["create p50"].append((time.perf_counter() - t0) * 1000)
        async with await anyio.open_file(Path(ws.path) / edit, "a") as f:  # the agent's turn: one edit
            await f.write("x = 1\n")
        t0 = time.perf_counter()
        ch = await worktrees.changes(ws)
        out["changes p50"].append((time.perf_counter() - t0) * 1000)
        assert ch.files, ch
        t0 = time.perf_counter()
        assert await worktrees.commit_turn(ws, "bench turn")
        out["commit_turn p50"].append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        await worktrees.remove(ws, delete_branch=True)
        out["remove p50"].append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--json"]
    src = args[0] if args else ("/work/main" if Path("/work/main/.git").exists() else str(Path(__file__).parents[1]))
    with tempfile.TemporaryDirectory(prefix="wt-bench-") as tmp:
        repo, home = Path(tmp) / "repo", Path(tmp) / "home"
        clone(src, repo)
        files = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True).stdout.split()
        n_files = len(files)
        times = anyio.run(measure, repo, home, next(f for f in files if f.endswith(".py")))
    rows = [
        {"figure": k, "value": round(statistics.median(v), 1), "target": TARGETS_MS[k],
         "ok": statistics.median(v) <= TARGETS_MS[k]}
        for k, v in times.items()
    ]  # fmt: skip
    if "--json" in sys.argv:
        print(json.dumps(rows))
        return
    print(f"{src}: {n_files} tracked files, {RUNS} runs, dirty checkout (3 edits + 1 untracked file)")
    print(f"{'figure':<18}{'p50 ms':>10}{'max ms':>10}{'target ms':>12}  ok")
    for r, v in zip(rows, times.values(), strict=True):
        print(f"{r['figure']:<18}{r['value']:>10}{max(v):>10.1f}{r['target']:>12}  {'yes' if r['ok'] else 'NO'}")


if __name__ == "__main__":
    main()
