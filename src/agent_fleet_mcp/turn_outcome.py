"""How a turn whose process has ended came out, decided the same way by the supervisor (supervisor.py), the CLI
when no server is up (reader.py) and ``doctor --repair`` (repair.py): pure functions of what the turn left on
disk."""

from __future__ import annotations

from agent_fleet_mcp.runners import process as proc
from agent_fleet_mcp.store.models import TurnEnd
from agent_fleet_mcp.turn_stats import TurnStats


def turn_outcome(
    stats: TurnStats, *, stream_result: bool, exit_code: int | None
) -> tuple[TurnEnd, str | None, str | None]:
    """(status, reason, error) of a turn whose process has ended, from its transcript (``stream_result``: the
    stream itself carried a result) and its exit code. The server records it; the CLI shows it when none is up."""
    status: TurnEnd
    if stats.has_result and (stream_result or exit_code is not None):
        status = "failed" if stats.is_error else "succeeded"
        reason = stats.reason if stats.is_error else None
    else:
        status, reason = "lost", "the process ended without a result and its exit status is unknown"
    if status == "lost":
        return status, reason, reason
    return status, reason, (stats.error_text() or reason or "failed") if status != "succeeded" else None


def ended_on_disk(files: proc.TurnFiles) -> float | None:
    """When a turn's process ended, as its files say: the exit file's mtime (written as it exits), else the
    transcript's last write. None when neither exists. Blocking (stat)."""
    for path in (files.exit, files.out):
        try:
            return path.stat().st_mtime
        except OSError:
            continue
    return None
