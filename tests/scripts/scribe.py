"""Test agent: each prompt line `set PATH TEXT` writes TEXT + newline to PATH (relative to the cwd, folders created);
`delete PATH` removes PATH; `sleep SECONDS` sleeps. Prints one line per change and exits 0."""

import sys
import time
from pathlib import Path

prompt = sys.stdin.read() if not sys.stdin.isatty() else ""
for line in prompt.splitlines():
    words = line.split(" ", 2)
    if len(words) == 3 and words[0] == "set":
        path = Path(words[1])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(words[2] + "\n")
        print(f"wrote {path}", flush=True)
    elif len(words) == 2 and words[0] == "sleep":
        time.sleep(float(words[1]))
    elif len(words) == 2 and words[0] == "delete":
        Path(words[1]).unlink()
        print(f"deleted {words[1]}", flush=True)
