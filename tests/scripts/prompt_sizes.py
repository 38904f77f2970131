"""Test agent: reports how its prompt arrived (stdin, $AGENT_PROMPT_FILE, $AGENT_PROMPT) and exits 0."""

import os
import sys

stdin = sys.stdin.read()
with open(os.environ["AGENT_PROMPT_FILE"], encoding="utf-8") as f:
    from_file = f.read()
env = os.environ.get("AGENT_PROMPT", "")
print(f"stdin={len(stdin)} file={len(from_file)} env={len(env)} same={stdin == from_file}", flush=True)
