"""Wall time of one claude-code turn against the scripted Messages API, split into CLI start-up and model time.

    uv run python bench/claude_turn.py [--runs 5] [--tool]

start-up = spawn (runners/process.py) -> the first request reaches the server
model    = first request -> the process has exited (the scripted server answers at once, so this is the CLI's
           own request/stream handling, tool execution and shutdown; with --tool two requests and a Read)
Prints one JSON object (medians, min, max in seconds). Needs the claude CLI (bash scripts/install-tools.sh claude).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from agent_fleet_mcp.runners import process
from agent_fleet_mcp.runners.base import TurnRequest
from agent_fleet_mcp.runners.claude_code import ClaudeCodeRunner
from agent_fleet_mcp.runners.headless import find_cli
from agent_fleet_mcp.runners.process import TurnFiles
from agent_fleet_mcp.spec import AgentSpec
from agent_fleet_mcp.testing import Reply, ScriptedModelServer, ToolCall


def one_turn(root: Path, n: int, *, tool: bool) -> dict[str, float]:
    cwd, home = root / "proj", root / "home"
    cwd.mkdir(exist_ok=True)
    home.mkdir(exist_ok=True)
    (cwd / "a.py").write_text("def add(a, b):\n    return a + b\n")
    script = [ToolCall("Read", {"file_path": str(cwd / "a.py")}), Reply("done")] if tool else [Reply("done")]
    with ScriptedModelServer(script, default_policy=False) as srv:
        req = TurnRequest(
            agent_id="bench", agent_name="bench", turn=n, prompt="Say done.", spec=AgentSpec(runner="claude-code"),
            cwd=cwd, agent_dir=root / "agent", env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
                "ANTHROPIC_BASE_URL": srv.base_url, "ANTHROPIC_API_KEY": "test",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            },
        )  # fmt: skip
        plan = ClaudeCodeRunner().build(req)
        files = TurnFiles.for_turn(root / "agent" / "turns", n)
        t0 = time.time()
        spawned = process.spawn(plan, files)
        while process.is_alive(spawned.pid, spawned.start_time):
            time.sleep(0.002)
        t_exit = time.time()
        code = process.exit_code(files, spawned.pid)
        if code != 0 or not srv.message_requests:
            raise SystemExit(f"turn failed (exit {code}): {files.err.read_text()[-1000:]}")
        first = srv.message_requests[0].ts
    return {"startup_s": first - t0, "model_s": t_exit - first, "total_s": t_exit - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tool", action="store_true", help="a turn with one Read tool call (two requests)")
    args = ap.parse_args()
    exe = find_cli("claude", os.environ)
    if exe is None:
        sys.exit("claude CLI not found: bash scripts/install-tools.sh claude")
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-claude-") as tmp:
        one_turn(Path(tmp), 1, tool=args.tool)  # warm-up (first run creates ~/.claude, page cache)
        for i in range(args.runs):
            runs.append(one_turn(Path(tmp), i + 2, tool=args.tool))
    out: dict[str, object] = {"claude": exe, "runs": args.runs, "tool_call": args.tool}
    for key in ("startup_s", "model_s", "total_s"):
        vals = [r[key] for r in runs]
        out[key] = {"median": round(statistics.median(vals), 3), "min": round(min(vals), 3), "max": round(max(vals), 3)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
