"""The worker's stdout: normalized events, one JSON line each, written by ``emit`` and nothing else.

``capture_stdout`` keeps the real stdout for ``emit`` and points ``sys.stdout`` at stderr, so a stray ``print`` in a
library cannot corrupt the transcript. A line is written inside ``signals.shielded`` so a SIGTERM never cuts one.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any, TextIO

from agent_fleet_mcp import secrets
from agent_fleet_mcp.events import Event, EventType, dumps, make
from agent_fleet_mcp.worker.signals import shielded

_out: TextIO = sys.stdout
_secrets: list[tuple[str, str]] | None = None  # (JSON-escaped value, name) of the keys in our environment


def redact_line(line: str) -> str:
    """An event line without any secret of the worker's environment (its API key echoed by a tool, say)."""
    global _secrets
    if _secrets is None:
        _secrets = [(json.dumps(v)[1:-1], n) for v, n in secrets.from_env(os.environ).items()]
    return secrets.redact(line, _secrets) if _secrets else line


def capture_stdout() -> None:
    """Keep the real stdout (UTF-8 whatever the locale) for events; everything else printing goes to stderr."""
    global _out
    _out = sys.stdout
    with contextlib.suppress(AttributeError, ValueError):
        _out.reconfigure(encoding="utf-8", errors="replace")  # type: ignore[attr-defined]
    sys.stdout = sys.stderr


def emit(type_: EventType, /, **fields: Any) -> Event:
    """Write one event line and flush it (the transcript is read live). An unknown cost stays an explicit null."""
    event = make(type_, **fields)  # keeps an explicit null cost_usd
    line = redact_line(dumps(event))
    with shielded():
        _out.write(line)
        _out.flush()
    return event


def note(message: str) -> None:
    """A diagnostic for humans (stderr; never the transcript)."""
    sys.stderr.write(f"agent-fleet worker: {message}\n")
    sys.stderr.flush()
