"""The Runner protocol: how the supervisor launches a turn on any backend and reads what it does.

A runner is pure: it builds a ``LaunchPlan`` (argv, environment, cwd) and a ``StreamParser`` that maps the
backend's stdout, line by line, into normalized events (events.py). It never spawns anything itself:
runners/process.py is the one place that starts and kills process groups. That keeps every backend's argv building
and parsing testable on recorded output, and real processes only for exit/kill behaviour.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from agent_fleet_mcp.events import Event
from agent_fleet_mcp.spec import AgentSpec


@dataclass(frozen=True)
class TurnLimits:
    """What one turn may use, computed by the supervisor when it starts the turn (None: no bound). Cost and tokens
    are what is *left* of the agent's whole-life budget, the fleet's daily budget and the batch's budget."""

    max_turns: int | None = None  # model requests within this turn
    cost_usd: float | None = None  # left of the agent's max_cost_usd
    tokens: int | None = None  # left of the agent's max_tokens
    fleet_usd: float | None = None  # left of AGENT_FLEET_BUDGET_USD today (UTC)
    batch_usd: float | None = None  # left of the run_agents batch's budget_usd

    @property
    def cost_cap(self) -> float | None:
        """The smallest of the cost figures: what this turn may spend at most."""
        caps = [c for c in (self.cost_usd, self.fleet_usd, self.batch_usd) if c is not None]
        return min(caps) if caps else None


@dataclass(frozen=True)
class TurnRequest:
    """One turn to launch."""

    agent_id: str
    agent_name: str
    turn: int  # 1-based number of the turn within the agent
    prompt: str
    spec: AgentSpec
    cwd: Path  # the agent's working directory (absolute, exists)
    agent_dir: Path  # the agent's private folder under the fleet home (history, scratch)
    session_id: str | None = None  # from the previous turn's `session` event: resume it
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))  # the server's environment
    limits: TurnLimits = TurnLimits()


@dataclass(frozen=True)
class LaunchPlan:
    """What process.py runs. ``env`` is the complete (scrubbed) environment of the child."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    stdin_text: str | None = None  # written to a file and given as stdin; None -> /dev/null
    # "module:function", a whitelisted entry point (runners/forkserver.py ENTRIES) equivalent to this plan: argv is
    # ``[sys.executable, "-m", <module>, *args]`` and ``function(args)`` does the same in a fork of a process that
    # preloaded the module. process.spawn then forks it from the fleet home's fork server (else it runs argv).
    preload: str | None = None


class StreamParser(Protocol):
    """Incremental parser of one turn's stdout. One instance per turn; feed lines in order."""

    def feed(self, line: str) -> list[Event]:
        """Map one stdout line (without newline) to zero or more normalized events."""
        ...

    def finish(self, exit_code: int | None, stderr_tail: str) -> list[Event]:
        """The process ended. Return the closing events the stream did not carry itself: a `result` (or an
        `error` then a `result` with ``is_error``) built from the exit code and stderr. Return [] when the stream
        already ended with a `result`. ``exit_code`` is None when it is unknown (process was not ours)."""
        ...


class Runner(Protocol):
    name: str

    def check_available(self, spec: AgentSpec, env: Mapping[str, str]) -> None:
        """Raise ``RunnerUnavailable`` with an actionable message when this runner cannot start here."""
        ...

    def build(self, req: TurnRequest) -> LaunchPlan: ...

    def new_parser(self, req: TurnRequest) -> StreamParser: ...


# Environment every child gets from the server's environment; runners add their own keys (ANTHROPIC_* ...).
BASE_ENV_KEYS: tuple[str, ...] = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "TMPDIR", "TZ",
    "SYSTEMROOT", "PYTHONPATH", "VIRTUAL_ENV", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
)  # fmt: skip
# The nesting guards, and the HTTP server's bearer token (an agent holding it could drive the whole fleet).
NEVER_PASS: frozenset[str] = frozenset(("CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT", "AGENT_FLEET_HTTP_TOKEN"))


def scrubbed_env(
    env: Mapping[str, str], *, prefixes: tuple[str, ...] = (), keys: tuple[str, ...] = ()
) -> dict[str, str]:
    """The child environment: the base keys, ``LC_*``, the given keys and prefixes; never the nesting guards."""
    out: dict[str, str] = {}
    for k, v in env.items():
        if k in NEVER_PASS:
            continue
        if k in BASE_ENV_KEYS or k in keys or k.startswith("LC_") or any(k.startswith(p) for p in prefixes):
            out[k] = v
    return out


def result_from_exit(exit_code: int | None, text: str, stderr_tail: str) -> list[Event]:
    """Closing events for a stream that carried no `result`: success iff exit code 0."""
    from agent_fleet_mcp.events import make

    if exit_code == 0:
        return [make("result", text=text, is_error=False)]
    if exit_code is None:
        msg = "the process ended without reporting a result and its exit code is unknown"
    elif exit_code < 0 or exit_code > 128:
        sig = -exit_code if exit_code < 0 else exit_code - 128
        msg = f"the process was killed by signal {sig}"
    else:
        msg = f"the process exited with code {exit_code}"
    if stderr_tail.strip():
        msg += f": {stderr_tail.strip()[-500:]}"
    return [
        make("error", kind="exit", message=msg),
        make("result", text=text, is_error=True, reason="exit_code" if exit_code is not None else "unknown"),
    ]
