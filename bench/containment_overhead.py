"""Spawn -> exit of `/bin/true` through process.spawn, per containment mode: the cost of the turn boundary.

uv run python bench/containment_overhead.py [pgroup|pidns] [N]
"""

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from agent_fleet_mcp.runners import process
from agent_fleet_mcp.runners.base import LaunchPlan

mode = sys.argv[1] if len(sys.argv) > 1 else "pidns"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 40
env = dict(os.environ)
env.pop("AGENT_FLEET_CONTAINMENT", None)
if mode == "pgroup":
    env["AGENT_FLEET_CONTAINMENT"] = "pgroup"
xs = []
with tempfile.TemporaryDirectory() as d:
    for i in range(n):
        files = process.TurnFiles.for_turn(Path(d), i + 1)
        plan = LaunchPlan(argv=["/bin/true"], env=env, cwd=Path(d))
        t0 = time.perf_counter()
        s = process.spawn(plan, files)
        while process.exit_code(files, s.pid) is None:
            time.sleep(0.001)
        xs.append((time.perf_counter() - t0) * 1000)
print(mode, f"spawn->exit of /bin/true p50 {statistics.median(xs):.1f} ms  p90 {sorted(xs)[int(0.9 * (n - 1))]:.1f} ms")
