"""Test agent: prints a few lines, writes "boom: <reason>" to stderr and exits 3.

The reason is the prompt (stdin, else $AGENT_PROMPT), or "requested failure" when it is empty.
"""

import os
import sys

prompt = sys.stdin.read() if not sys.stdin.isatty() else ""
reason = prompt.strip() or os.environ.get("AGENT_PROMPT", "").strip() or "requested failure"
for step in range(1, 4):
    print(f"working {step}/3", flush=True)
print(f"boom: {reason}", file=sys.stderr, flush=True)
sys.exit(3)
