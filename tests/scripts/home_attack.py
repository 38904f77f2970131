"""Test agent: attacks the fleet home it runs under (prompt: the home's path). Reads the HTTP bearer token, then
tries to plant trust in trusted-agents.json (write in place, replace by rename, unlink). Prints one line per try:
"<what>: ok <detail>" or "<what>: refused <error>".

With ``--wait-for-go`` it first writes ``watching`` into its cwd and waits (up to 60 s) for a file ``go`` there (the
test changed the home's files meanwhile, as a person would while turns run), then tries the same."""

import os
import sys
from pathlib import Path

home = Path((sys.stdin.read() if not sys.stdin.isatty() else "").strip() or os.environ.get("AGENT_PROMPT", ""))
token, trust = home / "http-token", home / "trusted-agents.json"

if "--wait-for-go" in sys.argv:
    import time

    Path("watching").write_text("")
    deadline = time.monotonic() + 60
    while not Path("go").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    print("go" if Path("go").exists() else "no go after 60 s", flush=True)


def attempt(what: str, fn: object) -> None:
    try:
        detail = fn()  # type: ignore[operator]
        print(f"{what}: ok {detail!r}", flush=True)
    except OSError as exc:
        print(f"{what}: refused {exc.strerror}", flush=True)


attempt("read token", lambda: token.read_text())
attempt("write trust", lambda: trust.write_text('{"version": 1, "files": {"/planted.md": {}}}'))
attempt("append trust", lambda: trust.open("a").write(" "))


def replace() -> str:
    fake = home / "planted-trust.json"
    fake.write_text('{"version": 1, "files": {}}')
    try:
        os.replace(fake, trust)
    finally:
        fake.unlink(missing_ok=True)
    return "replaced"


attempt("replace trust", replace)
attempt("unlink trust", lambda: trust.unlink())
