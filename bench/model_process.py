"""The scripted model in a process of its own, for benches: a real model API is not in the server's process, and a
scripted model inside the bench process competes with the fleet server for one interpreter lock (20 answers at
once delayed the workers' first byte by up to 0.9 s on 2 cores).

    with ModelProcess(replies=20, latency_s=3) as model:
        env["ANTHROPIC_BASE_URL"] = model.base_url
        ...
        model.message_times()   # wall-clock times of the POST /v1/messages requests it received

The child serves ``[Reply("done")] * replies`` and, when its stdin closes, prints the request times as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from types import TracebackType

CHILD = """
import json, sys
from agent_fleet_mcp.testing import Reply, ScriptedModelServer
n, latency = int(sys.argv[1]), float(sys.argv[2])
with ScriptedModelServer([Reply("done")] * n, latency_s=latency) as srv:
    print(srv.base_url, flush=True)
    sys.stdin.read()
    print(json.dumps([r.ts for r in srv.message_requests]), flush=True)
"""


class ModelProcess:
    def __init__(self, *, replies: int, latency_s: float) -> None:
        self._argv = [sys.executable, "-c", CHILD, str(replies), str(latency_s)]
        self._proc: subprocess.Popen[str] | None = None
        self.base_url = ""
        self._times: list[float] | None = None

    def __enter__(self) -> ModelProcess:
        self._proc = subprocess.Popen(self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        self.base_url = self._proc.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            raise RuntimeError(f"the scripted model process did not start: {self.base_url!r}")
        return self

    def message_times(self) -> list[float]:
        """Stops the model (once) and returns when each POST /v1/messages arrived."""
        if self._times is None:
            assert self._proc is not None and self._proc.stdin is not None and self._proc.stdout is not None
            self._proc.stdin.close()
            self._times = [float(t) for t in json.loads(self._proc.stdout.readline() or "[]")]
            self._proc.wait(timeout=30)
        return self._times

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
