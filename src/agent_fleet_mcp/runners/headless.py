"""The base of the headless-CLI runners (claude-code, codex, gemini) and the helpers they share.

A headless-CLI runner drives a vendor's coding CLI in its non-interactive mode: one process a turn, the prompt in,
one JSON object a line out. ``HeadlessRunner`` holds what every such runner does the same way:

- finding the CLI binary: ``$AGENT_FLEET_TOOLS_BIN``, then the child's ``PATH``, then the project-local
  ``.tools/node_modules/.bin`` that scripts/install-tools.sh fills (``RunnerUnavailable`` names the npm package);
- refusing a readonly spec whose ``tools`` could write (permissions.py) before any argv is built;
- the child's environment: the base keys plus the runner's own prefixes and keys (base.py ``scrubbed_env``).

``HeadlessParser`` holds the stream plumbing: one JSON object a line, read defensively, and a closing `result` built
from the exit code when the stream carried none. A runner module keeps only what differs: its argv flags, its
tool-call summaries and its mapping of stream objects to events.

Also here: short human summaries of tool calls (paths relative to the agent's cwd), the ``usage`` event of a run,
and ``CumulativeLedger``: some backends report running totals over a resumed conversation (claude's
``total_cost_usd``, codex's ``turn.completed.usage``). The parser turns them into per-turn amounts by remembering
the total each turn ended at, in a small JSON file in the agent's folder.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from agent_fleet_mcp.errors import RunnerUnavailable
from agent_fleet_mcp.events import Event, UsageEvent, make, parse_object
from agent_fleet_mcp.jsonish import as_dict, as_list
from agent_fleet_mcp.permissions import check_readonly
from agent_fleet_mcp.runners.base import LaunchPlan, StreamParser, TurnRequest, result_from_exit, scrubbed_env
from agent_fleet_mcp.spec import AgentSpec
from agent_fleet_mcp.text import first_line

TOOLS_BIN_ENV = "AGENT_FLEET_TOOLS_BIN"
# src/agent_fleet_mcp/runners/headless.py -> the checkout root (only meaningful in a source checkout)
_REPO_ROOT = Path(__file__).resolve().parents[3]
REPO_TOOLS_BIN = _REPO_ROOT / ".tools" / "node_modules" / ".bin"

SUMMARY_CHARS = 80


def find_cli(name: str, env: Mapping[str, str]) -> str | None:
    """Absolute path of the CLI ``name``, or None. Looks in ``$AGENT_FLEET_TOOLS_BIN``, the env's PATH, then the
    project-local ``.tools/node_modules/.bin``."""
    dirs: list[str] = []
    if explicit := env.get(TOOLS_BIN_ENV):
        dirs.append(explicit)
    dirs.extend(p for p in env.get("PATH", "").split(os.pathsep) if p)
    if REPO_TOOLS_BIN.is_dir():
        dirs.append(str(REPO_TOOLS_BIN))
    found = shutil.which(name, path=os.pathsep.join(dirs)) if dirs else None
    return str(Path(found).absolute()) if found else None


def require_cli(name: str, env: Mapping[str, str], *, package: str) -> str:
    """Like ``find_cli`` but raises ``RunnerUnavailable`` with the install command."""
    exe = find_cli(name, env)
    if exe is None:
        raise RunnerUnavailable(
            f"{name} is not installed: npm install -g {package} "
            f"(or run scripts/install-tools.sh, or point ${TOOLS_BIN_ENV} at a folder holding `{name}`)"
        )
    return exe


class HeadlessRunner(ABC):
    """A runner that starts a vendor CLI in headless mode. A subclass names the CLI (``cli``, its npm ``package``),
    the environment it needs (``env_prefixes``, ``env_keys``), and builds its command line (``command``) and
    stream parser (``new_parser``)."""

    name: str  # the runner's name in agent specs
    cli: str  # the executable
    package: str  # the npm package that installs it
    env_prefixes: tuple[str, ...] = ()  # variables passed to the child besides base.py's BASE_ENV_KEYS
    env_keys: tuple[str, ...] = ()

    def check_available(self, spec: AgentSpec, env: Mapping[str, str]) -> None:
        require_cli(self.cli, env, package=self.package)

    def build(self, req: TurnRequest) -> LaunchPlan:
        exe = require_cli(self.cli, req.env, package=self.package)
        env = scrubbed_env(req.env, prefixes=self.env_prefixes, keys=self.env_keys)
        check_readonly(req.spec)  # a readonly agent never gets a tool that writes or runs commands (permissions.py)
        argv, stdin_text = self.command(exe, req)
        return LaunchPlan(argv=argv, env=env, cwd=req.cwd, stdin_text=stdin_text)

    def command(self, exe: str, req: TurnRequest) -> tuple[list[str], str | None]:
        """The argv that runs ``exe`` for this turn, and the text for its stdin (None: none). By default the
        prompt goes on stdin (no argv length limit)."""
        return self.argv(exe, req), req.prompt

    def argv(self, exe: str, req: TurnRequest) -> list[str]:
        """The argv of the turn when the prompt goes on stdin (see ``command``)."""
        raise NotImplementedError(f"{type(self).__name__} builds neither command() nor argv()")

    @abstractmethod
    def new_parser(self, req: TurnRequest) -> StreamParser: ...


class HeadlessParser(ABC):
    """The plumbing of a headless CLI's stream parser. ``feed`` hands each JSON object line to ``on_object``; blank
    lines, log noise and non-objects are skipped. A subclass sets ``_done`` when the stream carried its own `result`
    and keeps ``_last_text`` (the latest reply), which the `result` that ``finish`` builds from the exit code
    carries otherwise."""

    def __init__(self, req: TurnRequest) -> None:
        self._req = req
        self._started = False  # the `started` event went out
        self._done = False  # a `result` went out
        self._last_text = ""

    def feed(self, line: str) -> list[Event]:
        obj = parse_line(line)
        return [] if obj is None else self.on_object(obj)

    @abstractmethod
    def on_object(self, obj: dict[str, Any]) -> list[Event]:
        """The events of one stream object."""

    def finish(self, exit_code: int | None, stderr_tail: str) -> list[Event]:
        if self._done:
            return []
        self._done = True
        return result_from_exit(exit_code, self._last_text, stderr_tail)


def run_usage(
    *, input: int, output: int, cache_read: int, cache_write: int, model: str | None, cost_usd: float | None = None,
    context_tokens: int | None = None,
) -> UsageEvent:  # fmt: skip
    """The `usage` event of a whole run (scope ``run``). ``cost_usd`` is always present: null says the CLI reported
    no cost, so the fleet prices the tokens itself."""
    return make(
        "usage", scope="run", input=input, output=output, cache_read=cache_read, cache_write=cache_write,
        cost_usd=cost_usd, model=model, context_tokens=context_tokens,
    )  # fmt: skip


def parse_line(line: str) -> dict[str, Any] | None:
    """One native stream line as a JSON object, or None for blank lines, log noise and non-objects."""
    return parse_object(line)


def summary_line(text: str) -> str:
    """A tool call's summary: the first line of ``text``, at most ``SUMMARY_CHARS`` characters."""
    return first_line(text, SUMMARY_CHARS)


def rel_path(path: str, cwd: Path) -> str:
    """``path`` relative to ``cwd`` when it lies inside it, else unchanged."""
    if not path:
        return path
    p = Path(path)
    if not p.is_absolute():
        return path
    with contextlib.suppress(ValueError):
        rel = p.relative_to(cwd)
        return str(rel) if str(rel) != "." else "."
    return path


def text_size(content: Any) -> int:
    """Characters of a tool result's content: a string, or a list of content blocks (text counted)."""
    if isinstance(content, str):
        return len(content)
    size = 0
    for block in as_list(content):
        b = as_dict(block)
        text = b.get("text")
        if isinstance(text, str):
            size += len(text)
        elif b:
            size += len(json.dumps(b, ensure_ascii=False))
    return size


class CumulativeLedger:
    """Running totals a backend reported, per session and turn, kept in ``<agent_dir>/<name>``.

    ``baseline(session, turn)`` is the total the conversation stood at before ``turn``: the entry of the latest
    earlier turn. ``record`` stores the total a turn ended at. Re-parsing a turn (reconciliation after a restart)
    finds the same baseline, so the per-turn amount never changes. Missing or corrupt file = no history.
    """

    MAX_SESSIONS = 50
    MAX_TURNS_PER_SESSION = 200

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return as_dict(data)

    def baseline(self, session_id: str, turn: int) -> dict[str, float] | None:
        entries = as_dict(self._load().get(session_id))
        earlier = [int(t) for t in entries if t.isdigit() and int(t) < turn]
        if not earlier:
            return None
        row = as_dict(entries[str(max(earlier))])
        return {k: float(v) for k, v in row.items() if isinstance(v, int | float)}

    def record(self, session_id: str, turn: int, totals: Mapping[str, float]) -> None:
        data = self._load()
        entries = as_dict(data.pop(session_id, None))
        entries[str(turn)] = dict(totals)
        if len(entries) > self.MAX_TURNS_PER_SESSION:
            keep = sorted(int(t) for t in entries if t.isdigit())[-self.MAX_TURNS_PER_SESSION :]
            entries = {str(t): entries[str(t)] for t in keep}
        data[session_id] = entries  # re-inserted last: most recently used
        while len(data) > self.MAX_SESSIONS:
            data.pop(next(iter(data)))
        _write_atomic(self.path, json.dumps(data, separators=(",", ":")))


def deltas(totals: Mapping[str, float], baseline: Mapping[str, float] | None, keys: Iterable[str]) -> dict[str, float]:
    """Per-turn amounts from running totals. A total that went down (the backend did not report a running total
    after all) is taken as the turn's own amount."""
    out: dict[str, float] = {}
    for k in keys:
        now = totals.get(k, 0.0)
        before = (baseline or {}).get(k, 0.0)
        out[k] = now - before if now >= before else now
    return out


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
