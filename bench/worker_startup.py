"""Start-up cost of the anthropic worker through ``process.spawn``: the plain way vs the preloaded fork server.

    uv run python bench/worker_startup.py [--runs 20] [--no-forkserver]

Each turn is built by the anthropic runner and started by ``runners.process.spawn`` exactly as the fleet does it,
against the scripted Messages API server on loopback; ``AGENT_FLEET_FORKSERVER=0`` in the plan's env selects the
plain ``/bin/sh`` wrapper + ``python -m agent_fleet_mcp.worker``. Measures:

(a) spawn -> `started` in the transcript, spawn -> first request received by the server, and the whole turn
    (spawn -> exit code known), p50/p90 of --runs sequential turns;
(b) RSS / PSS / USS (psutil ``memory_full_info``) of the worker process mid-turn (the server holds the answer), one
    worker alone and each of 4 running at once.

The fork server's own boot (first spawn on a home: zygote start + ``anthropic`` import) is reported separately.
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
from typing import Any

import psutil

from agent_fleet_mcp.runners import forkserver, process
from agent_fleet_mcp.runners.anthropic import AnthropicRunner
from agent_fleet_mcp.runners.base import TurnRequest
from agent_fleet_mcp.runners.process import Spawned, TurnFiles
from agent_fleet_mcp.spec import AgentSpec
from agent_fleet_mcp.testing import Reply, ScriptedModelServer

MB = 1024 * 1024


class Bench:
    def __init__(self, work: Path, *, forked: bool) -> None:
        self.work, self.forked = work, forked
        self.home = work / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        (work / "proj").mkdir(exist_ok=True)
        self.n = 0

    def env(self, base_url: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "AGENT_FLEET_", "CLAUDE"))}
        env.update(ANTHROPIC_BASE_URL=base_url, ANTHROPIC_API_KEY="bench", AGENT_FLEET_MAX_RETRIES="0")
        env.update(AGENT_FLEET_HOME=str(self.home), AGENT_FLEET_FORKSERVER="1" if self.forked else "0")
        return env

    def spawn(self, base_url: str) -> tuple[Spawned, TurnFiles]:
        self.n += 1
        name = f"a{self.n}"
        req = TurnRequest(agent_id=name, agent_name=name, turn=1, prompt="say ok", spec=AgentSpec(),
                          cwd=self.work / "proj", agent_dir=self.work / name, env=self.env(base_url))  # fmt: skip
        files = TurnFiles.for_turn(req.agent_dir / "turns", 1)
        return process.spawn(AnthropicRunner().build(req), files), files

    def worker_pid(self, spawned: Spawned) -> int:
        """The python worker: the spawned pid itself when forked, the sh wrapper's child otherwise."""
        if self.forked:
            return spawned.pid
        deadline = time.monotonic() + 10
        while not (kids := psutil.Process(spawned.pid).children()):
            assert time.monotonic() < deadline
            time.sleep(0.001)
        return kids[0].pid


def wait_exit(spawned: Spawned, files: TurnFiles) -> int:
    while (code := process.exit_code(files, spawned.pid)) is None:
        time.sleep(0.002)
    return code


def wait_started(files: TurnFiles) -> float:
    while True:
        with open(files.out, "rb") as f:
            line = f.readline()
        if line.endswith(b"\n"):
            assert json.loads(line)["type"] == "started", line
            return time.time()
        time.sleep(0.001)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def startup_times(bench: Bench, runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"started": [], "first_request": [], "turn": []}
    with ScriptedModelServer([Reply("ok")] * runs) as srv:
        for i in range(runs):
            t0 = time.time()
            spawned, files = bench.spawn(srv.base_url)
            t_started = wait_started(files)
            assert srv.wait_for_requests(i + 1, timeout=30)
            t_request = srv.message_requests[i].ts
            assert wait_exit(spawned, files) == 0, files.err.read_text()
            out["started"].append(t_started - t0)
            out["first_request"].append(t_request - t0)
            out["turn"].append(time.time() - t0)
    return out


def memory_mid_turn(bench: Bench, n: int) -> list[dict[str, float]]:
    with ScriptedModelServer([Reply("ok")] * n, latency_s=4.0) as srv:
        turns = [bench.spawn(srv.base_url) for _ in range(n)]
        assert srv.wait_for_requests(n, timeout=60)
        time.sleep(0.3)  # the request is sent; the worker is waiting for the answer
        mem: list[dict[str, float]] = []
        for spawned, _ in turns:
            info = psutil.Process(bench.worker_pid(spawned)).memory_full_info()
            mem.append({"rss": info.rss / MB, "pss": info.pss / MB, "uss": info.uss / MB})
        for spawned, files in turns:
            wait_exit(spawned, files)
    return mem


def report(name: str, bench: Bench, runs: int) -> dict[str, Any]:
    with ScriptedModelServer([Reply("warm")]) as srv:  # .pyc compiled, and the zygote started, outside the numbers
        t0 = time.time()
        spawned, files = bench.spawn(srv.base_url)
        wait_exit(spawned, files)
        first = time.time() - t0
    times = startup_times(bench, runs)
    one = memory_mid_turn(bench, 1)
    four = memory_mid_turn(bench, 4)
    print(f"\n== {name} ({runs} runs)")
    note = "  (includes starting the fork server)" if bench.forked else ""
    print(f"  {'first turn on the home':22} {first * 1000:7.0f} ms{note}")
    for key, label in (
        ("started", "spawn -> started"),
        ("first_request", "spawn -> 1st request"),
        ("turn", "whole turn"),
    ):
        v = times[key]
        print(f"  {label:22} p50 {statistics.median(v) * 1000:7.0f} ms   p90 {pct(v, 0.9) * 1000:7.0f} ms")
    for label, mem in (("1 worker", one), ("4 workers, each", four)):
        rss = statistics.mean(m["rss"] for m in mem)
        pss = statistics.mean(m["pss"] for m in mem)
        uss = statistics.mean(m["uss"] for m in mem)
        print(f"  memory mid-turn {label:16} RSS {rss:5.1f} MB  PSS {pss:5.1f} MB  USS {uss:5.1f} MB")
    return {"times": times, "mem1": one, "mem4": four}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--no-forkserver", action="store_true")
    args = ap.parse_args()
    forkserver.REACH_TIMEOUT_S = 60  # measure the fork server even on a slow box (the product default is ~3 s)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, anthropic worker start-up via process.spawn")
    with tempfile.TemporaryDirectory() as tmp:
        report(
            "plain: sh wrapper + python -m agent_fleet_mcp.worker", Bench(Path(tmp) / "plain", forked=False), args.runs
        )
        if not args.no_forkserver:
            bench = Bench(Path(tmp) / "forked", forked=True)
            try:
                report("fork server: forked from the preloaded zygote", bench, args.runs)
                zygote = forkserver.status(bench.home)
                assert zygote is not None
                zmem = psutil.Process(zygote["pid"]).memory_full_info()
                print(f"  the zygote itself: RSS {zmem.rss / MB:5.1f} MB  PSS {zmem.pss / MB:5.1f} MB (once per home)")
            finally:
                forkserver.stop(bench.home)


if __name__ == "__main__":
    main()
