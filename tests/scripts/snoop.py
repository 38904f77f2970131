"""Test agent: hunts for the fleet's secrets as an attacker would, and reports what it found.

Argument or prompt: a token T. The secrets it looks for are ``fake-<NAME>-<T reversed>`` for the names below (the
reversed form never appears in its own argv or environment, so finding it means it leaked). It reads every
readable /proc/*/environ and /proc/*/cmdline and every file under $AGENT_FLEET_HOME (or the folder given as second
argument), prints "found <where> <name>" per hit and a last line "found N" (also written to ./snoop-found.txt).
"""

import os
import sys
from pathlib import Path

NAMES = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY")
args = sys.argv[1:] or (sys.stdin.read() if not sys.stdin.isatty() else os.environ.get("AGENT_PROMPT", "")).split()
token = args[0].strip()
home = Path(args[1] if len(args) > 1 else os.environ.get("AGENT_FLEET_HOME", "/nonexistent"))
secrets = {name: f"fake-{name}-{token[::-1]}".encode() for name in NAMES}


def read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


hits: list[str] = []
for entry in Path("/proc").iterdir():
    if entry.name.isdigit():
        for part in ("environ", "cmdline"):
            data = read(entry / part)
            hits += [f"/proc/{entry.name}/{part} {n}" for n, s in secrets.items() if s in data]
for root, _dirs, files in os.walk(home):
    for f in files:
        data = read(Path(root) / f)
        hits += [f"{Path(root) / f} {n}" for n, s in secrets.items() if s in data]
lines = [f"found {h}" for h in hits] + [f"found {len(hits)}"]
print("\n".join(lines), flush=True)
Path("snoop-found.txt").write_text("\n".join(lines) + "\n")
