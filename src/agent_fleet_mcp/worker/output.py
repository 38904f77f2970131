"""The worker's stdout: normalized events, one JSON line each, written by ``emit`` and nothing else.

``capture_stdout`` keeps the real stdout for ``emit`` and points ``sys.stdout`` at stderr, so a stray ``print`` in a
library cannot corrupt the transcript. A line is written inside ``signals.shielded`` so a SIGTERM never cuts one.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from agent_fleet_mcp.events import Event, EventType, dumps, make
from agent_fleet_mcp.worker.signals import shielded

_out: TextIO = sys.stdout


def capture_stdout() -> None:
    global _out
    _out = sys.stdout
    sys.stdout = sys.stderr


def emit(type_: EventType, /, **fields: Any) -> Event:
    """Write one event line and flush it (the transcript is read live)."""
    event = make(type_, **fields)
    line = dumps(event)
    with shielded():
        _out.write(line)
        _out.flush()
    return event


def note(message: str) -> None:
    """A diagnostic for humans (stderr; never the transcript)."""
    sys.stderr.write(f"agent-fleet worker: {message}\n")
    sys.stderr.flush()
