"""Integrity of a fleet database file, read without the store (and without creating anything): the bounded
``quick_check`` the store, the server and ``agent-fleet doctor`` run first, and the salvage of readable agent rows
that ``doctor --repair`` starts from. SQL stays in store/."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Integrity:
    """What ``PRAGMA quick_check`` said about a database file: ``ok`` None when it could not finish in time."""

    ok: bool | None
    problems: list[str]


def quick_check(path: Path, *, time_budget_s: float = 2.0) -> Integrity:
    """Integrity of the database at ``path`` (read-only, never creates it), within ``time_budget_s``: a damaged
    header, truncation or garbage in a page is a problem; a check that runs out of time says ``ok=None``."""
    deadline = time.monotonic() + time_budget_s
    try:
        db = sqlite3.connect(path.as_uri() + "?mode=ro", uri=True, timeout=min(2.0, time_budget_s))
    except sqlite3.Error as exc:
        return Integrity(False, [f"cannot open: {exc}"])
    try:
        db.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        rows = [str(r[0]) for r in db.execute("PRAGMA quick_check(20)").fetchall()]
        db.execute("SELECT name FROM sqlite_master").fetchall()
    except sqlite3.OperationalError as exc:
        if "interrupted" in str(exc):
            return Integrity(None, [f"not finished within {time_budget_s:g} s"])
        if "locked" in str(exc) or "busy" in str(exc):
            return Integrity(None, [f"busy: {exc}"])
        return Integrity(False, [str(exc)])
    except sqlite3.DatabaseError as exc:
        return Integrity(False, [str(exc)])
    finally:
        db.close()
    return Integrity(True, []) if rows == ["ok"] else Integrity(False, rows)


def salvage_agents(path: Path) -> list[dict[str, Any]]:
    """The agent rows still readable from a damaged database (best effort: [] when none can be read)."""
    try:
        db = sqlite3.connect(path.as_uri() + "?mode=ro", uri=True, timeout=1.0)
    except sqlite3.Error:
        return []
    db.row_factory = sqlite3.Row
    out: list[dict[str, Any]] = []
    try:
        ids = [r[0] for r in db.execute("SELECT id FROM agents").fetchall()]
        for agent_id in ids:
            with contextlib.suppress(sqlite3.Error):
                row = db.execute("SELECT * FROM agents WHERE id = ?", (agent_id,)).fetchone()
                if row is not None:
                    out.append(dict(row))
    except sqlite3.Error:
        pass
    finally:
        db.close()
    return out
