"""Every issue-12 bench in one command, one table.

    uv run python bench/all.py                 # all of them (~5-10 min on a 2-core box)
    uv run python bench/all.py --only status   # the benches whose name contains "status"
    uv run python bench/all.py --list          # what would run

Each bench runs as its own process with ``--json`` and prints a list of {"figure", "value", "target", "ok"}
(optionally "note"); this script runs them one after another (never side by side: they time the same machine) and
prints one Markdown table. A bench that is missing (bench/context.py comes with the compact-output work) or cannot
run here (the claude-code peer needs `bash scripts/install-tools.sh`) is a row saying so, not a crash. Exits 1 when
a figure misses its target.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).parent

# (name, script, arguments): the issue-12 figures
BENCHES: list[tuple[str, str, list[str]]] = [
    ("context", "context.py", []),
    ("turn_start 20x3s", "turn_start.py", ["--runs", "20", "--latency", "3", "--repeat", "3"]),
    # the median of 3: one 200 x 5 s wave moves by +-0.1 s (2%) from run to run on a shared 2-core box
    ("turn_start 200x5s", "turn_start.py", ["--runs", "200", "--latency", "5", "--repeat", "3"]),
    ("queue_cost", "queue_cost.py", ["400"]),
    ("status_speed", "status_speed.py", ["--calls", "20", "500", "5000"]),
    # 8 rounds, alternating: either server moves by +-0.3-0.5 s from round to round (the 10 CLIs take ~10 s of CPU);
    # --parity: a third run per round, the peer with its CLIs in our turns' boundary (shown, no target)
    ("claude_code_peer", "claude_code_peer.py", ["--turns", "10", "--latency", "1", "--repeat", "8", "--parity"]),
]


def run_one(name: str, script: str, args: list[str]) -> tuple[list[dict[str, Any]], float]:
    path = BENCH / script
    t0 = time.monotonic()
    if not path.is_file():
        return [{"figure": f"({script} not in this checkout)", "value": None, "target": "", "ok": None}], 0.0
    proc = subprocess.run([sys.executable, str(path), *args, "--json"], capture_output=True, text=True, check=False)
    took = time.monotonic() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:160]
        return [{"figure": f"({script} failed, exit {proc.returncode})", "value": None, "target": "", "ok": False,
                 "note": tail}], took  # fmt: skip
    return json.loads(lines[-1]), took


def cell(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default="", help="run only the benches whose name contains this")
    p.add_argument("--list", action="store_true")
    a = p.parse_args()
    chosen = [b for b in BENCHES if a.only in b[0]]
    if a.list:
        for name, script, args in chosen:
            print(f"{name:<20} bench/{script} {' '.join(args)} --json")
        return 0
    rows: list[tuple[str, dict[str, Any]]] = []
    for name, script, args in chosen:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        figures, took = run_one(name, script, args)
        print(f"  {name}: {took:.0f} s", file=sys.stderr, flush=True)
        rows += [(name, f) for f in figures]
    print("| bench | figure | value | target | ok | note |")
    print("|---|---|---|---|---|---|")
    for name, f in rows:
        ok = {True: "yes", False: "**no**", None: "-"}[f.get("ok")]
        print(f"| {name} | {f['figure']} | {cell(f.get('value'))} | {f.get('target', '')} | {ok} | "
              f"{f.get('note', '')} |")  # fmt: skip
    return 1 if any(f.get("ok") is False for _, f in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
