"""Reading a turn's transcript file incrementally and normalizing it with the runner's parser.

What comes out is checked (``events.is_event``): an event a parser built without a field its type requires is
dropped, so readers can rely on the types in events.py.
"""

from __future__ import annotations

from pathlib import Path

from agent_fleet_mcp.events import EVENT_TYPES, Event, is_event
from agent_fleet_mcp.runners.base import StreamParser

STDERR_TAIL_BYTES = 4000


class TranscriptReader:
    """Follows one transcript file: each ``read_new`` returns the normalized events of the lines completed since
    the last call. ``close`` parses an unterminated last line and adds the parser's closing events."""

    def __init__(self, path: Path, parser: StreamParser) -> None:
        self.path = path
        self.parser = parser
        self.offset = 0
        self._partial = b""

    def read_new(self) -> list[Event]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        if not data:
            return []
        self.offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        events: list[Event] = []
        for raw in lines:
            events.extend(_checked(self.parser.feed(raw.decode("utf-8", errors="replace").rstrip("\r"))))
        return events

    def close(self, exit_code: int | None, stderr_path: Path | None) -> list[Event]:
        events = self.read_new()
        if self._partial:
            events.extend(_checked(self.parser.feed(self._partial.decode("utf-8", errors="replace"))))
            self._partial = b""
        events.extend(_checked(self.parser.finish(exit_code, read_tail(stderr_path) if stderr_path else "")))
        return events


def _checked(events: list[Event]) -> list[Event]:
    """Drop the events of a known type that lack a field it requires (another ``type`` is left for its reader:
    ``logs --raw`` passes raw lines through)."""
    return [ev for ev in events if ev.get("type") not in EVENT_TYPES or is_event(ev)]


def read_tail(path: Path, max_bytes: int = STDERR_TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
