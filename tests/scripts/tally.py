"""Test agent: appends "done-<turn>" to $AGENT_DIR/tally.log (one line per run of a turn), sleeps the first number in
the prompt (default 0), prints "done-<turn>" and exits 0."""

import os
import re
import sys
import time
from pathlib import Path

prompt = sys.stdin.read() if not sys.stdin.isatty() else ""
line = f"done-{os.environ['AGENT_TURN']}"
with open(Path(os.environ["AGENT_DIR"]) / "tally.log", "a") as f:
    f.write(line + "\n")
match = re.search(r"\d+(?:\.\d+)?", prompt)
time.sleep(float(match.group(0)) if match else 0.0)
print(line, flush=True)
