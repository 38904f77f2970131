"""Test agent that edits files in its cwd. Each prompt line is one instruction:

  append PATH TEXT   append the line TEXT to PATH (made with its folders)
  write PATH TEXT    replace PATH's contents with the line TEXT
  delete PATH        remove PATH
  fail               exit 3 now (the edits before it stay)
Any other line is ignored. Prints "cwd=<cwd>" and then "edited: <paths>".
"""

import os
import sys
from pathlib import Path

prompt = sys.stdin.read() if not sys.stdin.isatty() else ""
prompt = prompt.strip() or os.environ.get("AGENT_PROMPT", "").strip()
print(f"cwd={os.getcwd()}", flush=True)
edited: list[str] = []
for line in prompt.splitlines():
    op, _, rest = line.strip().partition(" ")
    path, _, text = rest.partition(" ")
    if op in ("append", "write"):
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("a" if op == "append" else "w") as f:
            f.write(text + "\n")
        edited.append(path)
    elif op == "delete":
        Path(path).unlink()
        edited.append(path)
    elif op == "fail":
        print(f"edited: {' '.join(edited)}; failing", flush=True)
        sys.exit(3)
print(f"edited: {' '.join(edited)}", flush=True)
