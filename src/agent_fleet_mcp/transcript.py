"""Reading a turn's transcript file incrementally and normalizing it with the runner's parser."""

from __future__ import annotations

from pathlib import Path

from agent_fleet_mcp.events import Event
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
            events.extend(self.parser.feed(raw.decode("utf-8", errors="replace").rstrip("\r")))
        return events

    def close(self, exit_code: int | None, stderr_path: Path | None) -> list[Event]:
        events = self.read_new()
        if self._partial:
            events.extend(self.parser.feed(self._partial.decode("utf-8", errors="replace")))
            self._partial = b""
        events.extend(self.parser.finish(exit_code, read_tail(stderr_path) if stderr_path else ""))
        return events


def read_tail(path: Path, max_bytes: int = STDERR_TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
