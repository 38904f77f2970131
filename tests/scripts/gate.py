"""Test agent: waits until the file named by its prompt exists (the test's gate), then prints "done" and exits 0."""

import os
import sys
import time
from pathlib import Path

prompt = sys.stdin.read() if not sys.stdin.isatty() else ""
gate = Path((prompt.strip() or os.environ.get("AGENT_PROMPT", "")).strip())
print(f"waiting for {gate}", flush=True)
deadline = time.monotonic() + 300
ticked = False
while not gate.exists() and time.monotonic() < deadline:
    time.sleep(0.05)
    if not ticked:
        print("tick 1", flush=True)
        ticked = True
print("done", flush=True)
