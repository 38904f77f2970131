"""Test agent: sleeps, printing a progress line every 0.2 s, then prints "done" and exits 0.

Duration: $SLEEP_S (or $AGENT_FLEET_SLEEP_S, which survives the runner's scrubbed environment), else the first
number in the prompt, else 2 seconds.
"""

import os
import re
import sys
import time

TICK_S = 0.2


def duration(prompt: str) -> float:
    for key in ("SLEEP_S", "AGENT_FLEET_SLEEP_S"):
        if os.environ.get(key):
            return float(os.environ[key])
    match = re.search(r"\d+(?:\.\d+)?", prompt)
    return float(match.group(0)) if match else 2.0


def main() -> None:
    prompt = sys.stdin.read() if not sys.stdin.isatty() else ""
    total = duration(prompt or os.environ.get("AGENT_PROMPT", ""))
    print(f"sleeping {total:g}s", flush=True)
    deadline = time.monotonic() + total
    tick = 0
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(TICK_S, left))
        tick += 1
        print(f"tick {tick}", flush=True)
    print("done", flush=True)


main()
