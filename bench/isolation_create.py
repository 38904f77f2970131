"""create_agent with and without a worktree, and delete, on a real repository (issue 11's creation-time figure at
the fleet level: store insert + isolation decision + git).

    uv run python bench/isolation_create.py [REPO] [--json]     # REPO defaults to /work/main, else this checkout

The repository is never written to: it is cloned (``git clone --local``) into a temporary folder with a few
uncommitted edits and an untracked file (every base is a snapshot commit, the expensive path); the fleet home is
temporary. Agents are readwrite ``anthropic`` agents created without a prompt (no turn runs, no model is called).
Prints a table of p50 over 10, or with ``--json`` a list of ``{"figure", "value_ms"}``.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import structlog

from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.fleet import Fleet
from agent_fleet_mcp.store.sqlite import SqliteStore

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))  # stdout is the table
RUNS = 10


def clone(src: str, dst: Path) -> None:
    subprocess.run(["git", "clone", "--quiet", "--local", src, str(dst)], check=True)
    files = subprocess.run(["git", "ls-files"], cwd=dst, capture_output=True, text=True, check=True).stdout.split()
    for rel in [f for f in files if f.endswith(".py")][:3]:
        with (dst / rel).open("a") as f:
            f.write("# uncommitted edit\n")
    (dst / "untracked_note.md").write_text("an untracked file the agents must see\n")


async def measure(repo: Path, home: Path) -> dict[str, list[float]]:
    env = {**os.environ, "AGENT_FLEET_HOME": str(home), "ANTHROPIC_API_KEY": "bench"}
    settings = Settings(home=home, project_dir=repo, env=env)
    out: dict[str, list[float]] = {"create (worktree)": [], "create (none)": [], "delete (worktree)": []}
    async with SqliteStore(settings.db_path) as store:
        fleet = Fleet(settings, store)
        for i in range(RUNS):
            for iso in ("worktree", "none"):
                t0 = time.perf_counter()
                await fleet.create_agent(name=f"{iso}-{i}", runner="anthropic", permission="readwrite",
                                         cwd=str(repo / "src"), isolation=iso)  # fmt: skip
                out[f"create ({iso})"].append(1000 * (time.perf_counter() - t0))
        for i in range(RUNS):
            t0 = time.perf_counter()
            await fleet.delete([f"worktree-{i}"], purge=True)
            out["delete (worktree)"].append(1000 * (time.perf_counter() - t0))
    return out


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--json"]
    src = args[0] if args else ("/work/main" if Path("/work/main/.git").exists() else str(Path(__file__).parents[1]))
    with tempfile.TemporaryDirectory(prefix="bench-iso-") as tmp:
        repo = Path(tmp) / "repo"
        clone(src, repo)
        (repo / "src").mkdir(exist_ok=True)
        got = anyio.run(measure, repo, Path(tmp) / "home")
    rows = [(name, statistics.median(v), max(v)) for name, v in got.items()]
    if "--json" in sys.argv:
        sys.stdout.write(json.dumps([{"figure": n, "p50_ms": round(p, 1), "max_ms": round(m, 1)} for n, p, m in rows]))
        sys.stdout.write("\n")
        return
    sys.stdout.write(f"{'figure':<20} {'p50 ms':>8} {'max ms':>8}   ({RUNS} runs on a clone of {src})\n")
    for n, p, m in rows:
        sys.stdout.write(f"{n:<20} {p:>8.1f} {m:>8.1f}\n")


if __name__ == "__main__":
    main()
