"""Test agent: echoes its prompt (stdin, else $AGENT_PROMPT) as "echo: <prompt>" and exits 0."""

import os
import sys

prompt = sys.stdin.read() if not sys.stdin.isatty() else ""
prompt = prompt.strip() or os.environ.get("AGENT_PROMPT", "").strip()
print(f"echo: {prompt}", flush=True)
