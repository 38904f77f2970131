"""10 claude-code turns at once: through our server vs through @steipete/claude-code-mcp (the peer), same run.

    uv run python bench/claude_code_peer.py [--turns 10] [--latency 1] [--repeat 2] [--think 1] [--parity] [--json]

Both servers run over real stdio with the same pinned `claude` CLI (.tools/, bash scripts/install-tools.sh) against
the same loopback scripted Messages API (``--latency`` s per answer; ANTHROPIC_BASE_URL,
CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1, a fresh HOME). Ours: one `run_agents` call with ``--turns`` runs of the
bench's claude-code template (bench/agents/cc.md), waiting for them all. The peer: ``--turns`` `claude_code` tool
calls sent at once (its way to run turns side by side). Wall time is from the first call to the last answer, with
both servers initialized and their tools listed ``--think`` s before it (a host connects long before its model writes
the first tool call; both servers get the same idle time, and the host's one-time costs are paid before: see
HOST_IMPORTS); the first requests' spread is when the CLIs reached the model. The repeats
alternate (ours, peer, ours, peer, ...) so both see the same machine load. Target: ours <= 1.0x the peer.

The peer runs its CLIs with no boundary at all; ours run each turn in its own cgroup and user + PID namespaces, with
the fleet home's guards bound read-only (docs/containment.md). ``--parity`` adds a third server to each round: the
peer again, its CLI replaced by a script that enters the same boundary the way our spawn does (the same `sh`
wrappers, `unshare` chain, two guards and a cgroup of its own, ``contained_cli``), and reports ours against it as
well: what our server costs, with the boundary on both sides.

The peer is found at $AGENT_FLEET_PEER_MCP or .tools/node_modules/@steipete/claude-code-mcp/dist/server.js
(bash scripts/install-tools.sh peer).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import anyio
import psutil
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult

from agent_fleet_mcp.runners import cgroups, containment, forkserver, process
from agent_fleet_mcp.runners.headless import find_cli
from agent_fleet_mcp.testing import Reply, ScriptedModelServer
from agent_fleet_mcp.trust import trust_files

BENCH = Path(__file__).parent
ROOT = BENCH.parent
SERVER = str(Path(sys.executable).parent / "agent-fleet-mcp")
PEER_DEFAULT = ROOT / ".tools" / "node_modules" / "@steipete" / "claude-code-mcp" / "dist" / "server.js"
TARGET = 1.0

warnings.filterwarnings("ignore")

# The bench is the host of both servers, and a host has paid its one-time costs before the measured call: it lists
# the tools on connecting (its model can only call tools it was shown), and the mcp SDK's client validates a result's
# structuredContent against the tool's output schema, importing jsonschema at the first one (~0.1-0.3 s of CPU,
# once per host process) and compiling that tool's validator (~26 ms for run_agents, once per session). The
# TypeScript SDK's client (Claude Code, VS Code) compiles every validator when it lists the tools. Our tools declare
# output schemas and the peer's do not, so without this the first result of ours would carry the host's import and
# compile. Importing HOST_IMPORTS first, and `connected` before each run, settle both for either server alike.
HOST_IMPORTS = ("jsonschema",)


@dataclass
class Run:
    wall_s: float
    spread_s: float  # first request of the earliest CLI to that of the latest


def peer_path() -> Path | None:
    p = Path(os.environ.get("AGENT_FLEET_PEER_MCP") or PEER_DEFAULT)
    return p if p.is_file() else None


def base_env(tmp: Path, srv: ScriptedModelServer, claude: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "AGENT_FLEET_", "CLAUDE"))}
    (tmp / "home").mkdir()
    env.update(
        HOME=str(tmp / "home"), ANTHROPIC_BASE_URL=srv.base_url, ANTHROPIC_API_KEY="bench",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", PATH=f"{Path(claude).parent}:{env.get('PATH', '')}",
    )  # fmt: skip
    return env


def firsts(srv: ScriptedModelServer, t0: float, n: int) -> float:
    """Spread of the first request of each turn (the first n requests: each CLI's first comes before any second)."""
    ts = sorted(r.ts for r in srv.message_requests if r.path.startswith("/v1/messages"))[:n]
    assert len(ts) == n, f"{len(ts)} of {n} turns reached the model"
    return ts[-1] - ts[0]


async def connected(c: Client) -> None:
    """What a host does on connecting: list the tools, and (as the TypeScript SDK's client does then) compile the
    validator of each tool's output schema. The Python client compiles one at a tool's first result; a result of
    ``{}`` compiles it through the public ``validate_tool_result`` and fails validation, which is ignored."""
    for tool in (await c.list_tools()).tools:
        if tool.output_schema is not None:
            with contextlib.suppress(RuntimeError):
                await c.session.validate_tool_result(tool.name, CallToolResult(content=[], structured_content={}))


def contained_cli(tmp: Path, claude: str) -> tuple[Path, Path, Path | None] | None:
    """A stand-in for ``claude`` that runs it in the boundary our spawn gives a claude-code turn in pidns mode
    (runners/process.py ``wrapped_argv``): joins a cgroup of its own, claims a marker, enters the user + PID
    namespaces with two guards bound read-only (an empty token over /dev/null, a trust file over itself), and runs
    the CLI under the namespace init's `sh`, which writes its exit file in ``tmp/turns``. Returns the script, that
    folder, and the cgroup folder to remove after the run; None where turns get no namespaces (``containment.detect``).
    """
    boundary = containment.detect()
    if boundary.mode != "pidns" or boundary.unshare is None:
        return None
    guard = tmp / "guards"
    guard.mkdir()
    (guard / "token").write_text("")
    (guard / "trust.json").write_text("{}")
    guards = [("/dev/null", str(guard / "token")), (str(guard / "trust.json"), str(guard / "trust.json"))]
    prefix = containment.namespace_prefix(boundary.unshare, guards=guards)
    runs = tmp / "turns"
    runs.mkdir()
    cg = None
    join = ""
    if boundary.cgroup_base is not None:
        cg = boundary.cgroup_base / f"{cgroups.PREFIX}bench-peer-{os.getpid()}"
        if cgroups.create(cg):
            join = f'd={shlex.quote(str(cg))}/t$$; mkdir "$d" && export {cgroups.JOIN_ENV}="$d"\n'
        else:
            cg = None
    exit_file = f"{shlex.quote(str(runs))}/t$$.exit"
    # the spawn's own wrapper scripts (private to runners/process.py: a bench that copied them would drift)
    inner = ["/bin/sh", "-c", process._INNER]  # pyright: ignore[reportPrivateUsage]
    script = tmp / "claude-contained"
    script.write_text(
        f"#!/bin/sh\n{join}exec /bin/sh -c {shlex.quote(process._ENTER)} {exit_file} {shlex.join(prefix)} "
        f'{shlex.join(inner)} {exit_file} {shlex.quote(claude)} "$@"\n'
    )
    script.chmod(0o755)
    return script, runs, cg


def stop_zygote(home: Path) -> None:
    """Our server started its home's fork server (it may still be preloading, having given way to our CLIs): it
    is gone before the peer's run, so none of our CPU falls into the peer's time."""
    pid = forkserver.zygote_pid(home)
    if pid is None:
        return
    try:
        proc = psutil.Process(pid)
        proc.terminate()
        proc.wait(timeout=10)
    except psutil.Error:
        return


async def ours(turns: int, latency_s: float, claude: str, think_s: float) -> Run:
    with tempfile.TemporaryDirectory(prefix="bench-peer-ours-") as d, \
            ScriptedModelServer([Reply("done")] * turns, latency_s=latency_s, default_policy=False) as srv:  # fmt: skip
        tmp = Path(d)
        env = base_env(tmp, srv, claude)
        fleet_home = tmp / "fleet"
        trust_files(fleet_home, [BENCH / "agents" / "cc.md"])
        env.update(AGENT_FLEET_HOME=str(fleet_home), AGENT_FLEET_AGENTS=str(BENCH / "agents"),
                   AGENT_FLEET_MAX_CONCURRENT=str(max(turns, 4)))  # fmt: skip
        (tmp / "proj").mkdir()
        params = StdioServerParameters(command=SERVER, args=[], env=env, cwd=str(tmp / "proj"))
        async with Client(params, mode="legacy") as c:
            runs = [{"agent": "cc", "id": f"t{i}", "input": f"task {i}: say done", "cwd": str(tmp / "proj")}
                    for i in range(turns)]  # fmt: skip
            await connected(c)
            await anyio.sleep(think_s)
            t0 = time.time()
            r = await c.call_tool("run_agents", {"runs": runs, "wait_s": 45})
            wall = time.time() - t0
            sc = r.structured_content or {}
            assert not r.is_error and sc.get("done"), r.content
            failed = [x for x in (sc.get("batch") or {}).get("runs", []) if x.get("status") != "succeeded"]
            assert not failed, failed
            await c.call_tool("delete_agent", {"agents": "all"})
        stop_zygote(fleet_home)
        return Run(wall, firsts(srv, t0, turns))


async def peer(
    turns: int, latency_s: float, claude: str, server_js: Path, think_s: float, *, contained: bool = False
) -> Run:
    """The peer's run; ``contained``: its CLIs in our boundary (``contained_cli``)."""
    node = shutil.which("node")
    assert node, "node is not installed"
    with tempfile.TemporaryDirectory(prefix="bench-peer-theirs-") as d, contextlib.ExitStack() as cleanup, \
            ScriptedModelServer([Reply("done")] * turns, latency_s=latency_s, default_policy=False) as srv:  # fmt: skip
        tmp = Path(d)
        env = base_env(tmp, srv, claude)
        env["CLAUDE_CLI_NAME"] = claude  # an absolute path: the same CLI as ours
        if contained:
            made = contained_cli(tmp, claude)
            assert made is not None, "turns get no namespaces on this machine (agent-fleet doctor says why)"
            script, runs, cg = made
            env["CLAUDE_CLI_NAME"] = str(script)
            if cg is not None:
                cleanup.callback(cgroups.remove, cg)  # also when the run fails
        if os.geteuid() == 0:  # the CLI refuses the peer's --dangerously-skip-permissions as root, unless sandboxed
            env["IS_SANDBOX"] = "1"
        (tmp / "proj").mkdir()
        params = StdioServerParameters(command=node, args=[str(server_js)], env=env, cwd=str(tmp / "proj"))
        async with Client(params, mode="legacy") as c:
            errors: list[str] = []

            async def one(i: int) -> None:
                r = await c.call_tool("claude_code", {"prompt": f"task {i}: say done", "workFolder": str(tmp / "proj")})
                if r.is_error:
                    errors.append(str(r.content)[:300])

            await connected(c)
            await anyio.sleep(think_s)
            t0 = time.time()
            async with anyio.create_task_group() as tg:
                for i in range(turns):
                    tg.start_soon(one, i)
            wall = time.time() - t0
            assert not errors, errors
        if contained:  # every CLI ran inside: its namespace init wrote its exit status, 0
            codes = [f.read_text().strip() for f in runs.glob("*.exit")]
            assert codes == ["0"] * turns, f"exit files of the contained CLIs: {codes}"
            if cg is not None:
                made_cgroups = [x for x in cg.iterdir() if x.is_dir()]  # (the rest are the kernel's interface files)
                assert len(made_cgroups) == turns, f"{len(made_cgroups)} cgroups for {turns} contained CLIs"
        return Run(wall, firsts(srv, t0, turns))


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--turns", type=int, default=10)
    p.add_argument("--latency", type=float, default=1.0)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--think", type=float, default=1.0, help="seconds between each server's start and the calls")
    p.add_argument("--parity", action="store_true", help="also run the peer with its CLIs in our turns' boundary")
    p.add_argument("--json", action="store_true", help="print [{figure, value, target, ok}] instead of a table")
    a = p.parse_args()
    claude = find_cli("claude", os.environ)
    server_js = peer_path()
    figure = f"{a.turns} claude-code turns at once, wall vs @steipete/claude-code-mcp"
    if claude is None or server_js is None:
        msg = "needs the pinned claude CLI and the peer: bash scripts/install-tools.sh"
        if a.json:
            print(json.dumps([{"figure": figure, "value": None, "target": f"<= {TARGET}x", "ok": None, "note": msg}]))
            return
        sys.exit(msg)
    parity = a.parity and containment.detect().mode == "pidns"
    for name in HOST_IMPORTS:
        importlib.import_module(name)
    mine: list[Run] = []
    theirs: list[Run] = []
    boxed: list[Run] = []  # the peer with its CLIs in our boundary (--parity)
    for _ in range(a.repeat):
        mine.append(await ours(a.turns, a.latency, claude, a.think))
        theirs.append(await peer(a.turns, a.latency, claude, server_js, a.think))
        if parity:
            boxed.append(await peer(a.turns, a.latency, claude, server_js, a.think, contained=True))
    w_ours = statistics.median(r.wall_s for r in mine)
    w_peer = statistics.median(r.wall_s for r in theirs)
    ratio = w_ours / w_peer
    by_round = round_range(mine, theirs)
    figures = [
        {"figure": figure, "value": round(ratio, 3), "target": f"<= {TARGET}x", "ok": ratio <= TARGET,
         "note": f"ours {w_ours:.2f} s, peer {w_peer:.2f} s; {by_round}"},
    ]  # fmt: skip
    if boxed:
        w_boxed = statistics.median(r.wall_s for r in boxed)
        figures.append({
            "figure": f"{a.turns} claude-code turns, wall vs the peer with its CLIs in our turns' boundary",
            "value": round(w_ours / w_boxed, 3), "target": "(shown)", "ok": None,
            "note": f"peer in our boundary {w_boxed:.2f} s; {round_range(mine, boxed)}",
        })  # fmt: skip
    elif a.parity:
        figures.append({"figure": "parity run", "value": None, "target": "(shown)", "ok": None,
                        "note": "turns get no namespaces here: agent-fleet doctor says why"})  # fmt: skip
    if a.json:
        print(json.dumps(figures))
        return
    print(f"claude: {claude}\npeer: {server_js}")
    print(f"{a.turns} claude-code turns at once, scripted model at {a.latency:g} s latency")
    head = ["#", "ours wall s", "peer wall s", "ratio", "ours spread s", "peer spread s"]
    widths = [2, 11, 11, 5, 13, 13]
    if boxed:
        head += ["peer in boundary s", "ratio"]
        widths += [18, 5]
    print("| " + " | ".join(f"{h:>{w}}" for h, w in zip(head, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for i, (m, t) in enumerate(zip(mine, theirs, strict=True), 1):
        row = f"| {i:>2} | {m.wall_s:11.2f} | {t.wall_s:11.2f} | {m.wall_s / t.wall_s:5.2f} | {m.spread_s:13.2f} " \
              f"| {t.spread_s:13.2f} |"  # fmt: skip
        if boxed:
            row += f" {boxed[i - 1].wall_s:18.2f} | {m.wall_s / boxed[i - 1].wall_s:5.2f} |"
        print(row)
    print(f"median: ours {w_ours:.2f} s, peer {w_peer:.2f} s = {ratio:.3f}x the peer (target <= {TARGET}x); {by_round}")
    if boxed:
        f = figures[-1]
        print(f"median: the peer in our boundary {statistics.median(r.wall_s for r in boxed):.2f} s: ours = "
              f"{f['value']:.3f}x it; {round_range(mine, boxed)}")  # fmt: skip


def round_range(mine: list[Run], theirs: list[Run]) -> str:
    """Each round's own ratio (ours / the other server's run right after it): how far one round moves the figure."""
    rounds = sorted(m.wall_s / t.wall_s for m, t in zip(mine, theirs, strict=True))
    return f"rounds {rounds[0]:.2f}-{rounds[-1]:.2f}x" if len(rounds) > 1 else "one round"


if __name__ == "__main__":
    anyio.run(main)
