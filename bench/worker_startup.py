"""Start-up cost of the anthropic worker, and a prototype of a preloaded fork server ("zygote").

    uv run python bench/worker_startup.py [--runs 20] [--no-zygote]

Measures, against the scripted Messages API server on loopback:

(a) spawn -> `started` event and spawn -> first request received by the server (p50/p90 of --runs sequential
    turns), for a plain ``python -m agent_fleet_mcp.worker`` spawn (what runners/anthropic.py launches);
(b) RSS / PSS / USS (psutil ``memory_full_info``) of a worker mid-turn (the server holds the answer), one worker
    alone and each of 4 running at once;
(c) the same for workers forked from a zygote: a process that has imported ``anthropic`` and the worker modules
    once (``gc.freeze()`` then fork per turn; stdin/stdout/stderr passed over a unix socket with SCM_RIGHTS).

The zygote is a prototype for this measurement only; the process model stays runners/process.py's.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import psutil

from agent_fleet_mcp.testing import Reply, ScriptedModelServer

WORKER_ARGS = ["--model", "claude-sonnet-4-5", "--permission", "readonly"]
MB = 1024 * 1024


# -- launching a worker: plain spawn or zygote fork -------------------------------------------------------


def _argv(agent_dir: Path, cwd: Path) -> list[str]:
    return ["--agent-dir", str(agent_dir), "--cwd", str(cwd), *WORKER_ARGS]


def _env(base_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "AGENT_FLEET_", "CLAUDE"))}
    env.update(ANTHROPIC_BASE_URL=base_url, ANTHROPIC_API_KEY="bench", AGENT_FLEET_MAX_RETRIES="0")
    return env


class Launched:
    """A running worker: its pid and a pipe to read its stdout (events) from."""

    def __init__(self, pid: int, stdout: BinaryIO, popen: subprocess.Popen[bytes] | None = None) -> None:
        self.pid, self.stdout, self.popen = pid, stdout, popen

    def wait(self) -> None:
        self.stdout.read()  # EOF when the worker exits
        self.stdout.close()
        if self.popen is not None:
            self.popen.wait()


def spawn_plain(base_url: str, agent_dir: Path, cwd: Path, prompt_file: Path) -> Launched:
    with open(prompt_file, "rb") as stdin:
        p = subprocess.Popen(
            [sys.executable, "-m", "agent_fleet_mcp.worker", *_argv(agent_dir, cwd)],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_env(base_url),
            cwd=cwd,
            start_new_session=True,
        )
    assert p.stdout is not None
    return Launched(p.pid, p.stdout, p)  # pyright: ignore[reportArgumentType]


class Zygote:
    """Client of the fork server below (a subprocess of this bench)."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="zygote-")
        self.sock = os.path.join(self.dir, "zygote.sock")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, __file__, "--zygote-serve", self.sock], stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == b"ready"
        self.boot_s = time.perf_counter() - t0

    def spawn(self, base_url: str, agent_dir: Path, cwd: Path, prompt_file: Path) -> Launched:
        r, w = os.pipe()
        with open(prompt_file, "rb") as stdin, open(os.devnull, "wb") as devnull, socket.socket(socket.AF_UNIX) as s:
            s.connect(self.sock)
            req = {"argv": _argv(agent_dir, cwd), "env": _env(base_url), "cwd": str(cwd)}
            socket.send_fds(s, [json.dumps(req).encode()], [stdin.fileno(), w, devnull.fileno()])
            os.close(w)
            pid = int(s.recv(64))
        return Launched(pid, os.fdopen(r, "rb"))

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()
        with contextlib.suppress(OSError):
            os.unlink(self.sock)
            os.rmdir(self.dir)


def zygote_serve(sock_path: str) -> None:
    """The fork server: preload, then fork one worker per request."""
    import anthropic

    from agent_fleet_mcp.worker import __main__ as worker_main
    from agent_fleet_mcp.worker import loop  # noqa: F401  (preload every worker module)

    # Touch the lazily imported parts too (client.messages imports resources.messages), then drop the client.
    anthropic.Anthropic(api_key="warm", base_url="http://127.0.0.1:9").messages  # noqa: B018
    gc.collect()
    gc.freeze()  # keep the preloaded objects out of GC passes: fewer copy-on-write page faults in children
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    server = socket.socket(socket.AF_UNIX)
    server.bind(sock_path)
    server.listen(64)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        conn, _ = server.accept()
        msg, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
        req = json.loads(msg)
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                server.close()
                conn.close()
                os.setsid()
                for target, fd in enumerate(fds):
                    os.dup2(fd, target)
                    os.close(fd)
                os.chdir(req["cwd"])
                os.environ.clear()
                os.environ.update(req["env"])
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the bash tool waits for its children
                code = worker_main.main(req["argv"])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            finally:
                sys.stdout.flush()
                os._exit(code)
        conn.sendall(str(pid).encode())
        conn.close()
        for fd in fds:
            os.close(fd)


# -- measurements -----------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def startup_times(launch: Callable[..., Launched], runs: int, work: Path) -> dict[str, list[float]]:
    cwd = work / "proj"
    cwd.mkdir(exist_ok=True)
    prompt = work / "prompt.txt"
    prompt.write_text("say ok")
    out: dict[str, list[float]] = {"started": [], "first_request": [], "turn": []}
    with ScriptedModelServer([Reply("ok")] * runs) as srv:
        for i in range(runs):
            t0 = time.time()
            w = launch(srv.base_url, work / f"agent{i}", cwd, prompt)
            first = json.loads(w.stdout.readline())
            t_started = time.time()
            assert first["type"] == "started", first
            assert srv.wait_for_requests(i + 1, timeout=30)
            t_request = srv.message_requests[i].ts
            w.wait()
            out["started"].append(t_started - t0)
            out["first_request"].append(t_request - t0)
            out["turn"].append(time.time() - t0)
    return out


def memory_mid_turn(launch: Callable[..., Launched], n: int, work: Path) -> list[dict[str, float]]:
    cwd = work / "proj"
    cwd.mkdir(exist_ok=True)
    prompt = work / "prompt.txt"
    prompt.write_text("say ok")
    with ScriptedModelServer([Reply("ok")] * n, latency_s=4.0) as srv:
        workers = [launch(srv.base_url, work / f"mem{n}-{i}", cwd, prompt) for i in range(n)]
        assert srv.wait_for_requests(n, timeout=60)
        time.sleep(0.3)  # the request is sent; the worker is waiting for the answer
        mem = []
        for w in workers:
            info = psutil.Process(w.pid).memory_full_info()
            mem.append({"rss": info.rss / MB, "pss": info.pss / MB, "uss": info.uss / MB})
        for w in workers:
            w.wait()
    return mem


def report(name: str, launch: Callable[..., Launched], runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        launch(*_warmup_args(work)).wait()  # compile .pyc etc. outside the measurement
        times = startup_times(launch, runs, work)
        one = memory_mid_turn(launch, 1, work)
        four = memory_mid_turn(launch, 4, work)
    print(f"\n== {name} ({runs} runs)")
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


def _warmup_args(work: Path) -> tuple[str, Path, Path, Path]:
    srv = ScriptedModelServer([Reply("warm")]).start()
    _servers.append(srv)
    (work / "proj").mkdir(exist_ok=True)
    (work / "prompt.txt").write_text("warm up")
    return srv.base_url, work / "warm", work / "proj", work / "prompt.txt"


_servers: list[ScriptedModelServer] = []


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--no-zygote", action="store_true")
    ap.add_argument("--zygote-serve", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.zygote_serve:
        zygote_serve(args.zygote_serve)
        return
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, anthropic worker start-up")
    try:
        report("plain spawn: python -m agent_fleet_mcp.worker", spawn_plain, args.runs)
        if not args.no_zygote:
            zygote = Zygote()
            try:
                print(f"\n(zygote boot: {zygote.boot_s * 1000:.0f} ms, once)")
                zmem = psutil.Process(zygote.proc.pid).memory_full_info()
                print(f"  zygote itself: RSS {zmem.rss / MB:5.1f} MB  PSS {zmem.pss / MB:5.1f} MB")
                report("zygote fork (prototype)", zygote.spawn, args.runs)
            finally:
                zygote.close()
    finally:
        for srv in _servers:
            srv.stop()


if __name__ == "__main__":
    main()
