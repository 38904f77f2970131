"""Test agent: tries every way out of its turn, then exits 0 ("exit") or stays running ("stay").

Prompt (stdin, else $AGENT_PROMPT): "<marker> exit|stay". It starts four `sleep 300`s that a process-group kill
misses or that outlive their parent: a shell background job (`&`), `nohup`, `setsid`, and a double fork into a new
session. Each carries the marker in its environment ($AGENT_PROMPT, and $BREAKOUT_CASE=<marker>:<case> with case
amp, nohup, setsid or doublefork) so a /proc scan finds survivors, per case. Prints "ready" once all four run.
"""

import os
import subprocess
import sys
import time
from typing import Any

prompt = (sys.stdin.read() if not sys.stdin.isatty() else "").strip() or os.environ.get("AGENT_PROMPT", "")
marker, _, end = prompt.strip().partition(" ")
quiet: dict[str, Any] = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}


def case(name: str) -> dict[str, str]:
    os.environ["BREAKOUT_CASE"] = f"{marker}:{name}"
    return dict(os.environ)


subprocess.run(["/bin/sh", "-c", "sleep 300 &"], check=True, env=case("amp"), **quiet)  # a background job, orphaned
subprocess.Popen(["nohup", "sleep", "300"], env=case("nohup"), **quiet)
subprocess.Popen(["setsid", "sleep", "300"], env=case("setsid"), **quiet)
case("doublefork")
r, w = os.pipe()
if os.fork() == 0:  # double fork: the grandchild is in a new session and nobody's child
    os.setsid()
    if os.fork() == 0:
        os.close(r)
        os.write(w, b"x")
        os.close(w)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.execvp("sleep", ["sleep", "300"])
    os._exit(0)
os.close(w)
os.read(r, 1)
os.wait()
os.environ["BREAKOUT_CASE"] = f"{marker}:program"
print(f"ready {os.getpid()}", flush=True)
if end.strip() != "exit":
    while True:
        time.sleep(3600)
