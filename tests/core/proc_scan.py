"""A /proc scan as an attacker's auditor would run it: live processes carrying a marker, and secrets readable."""

from __future__ import annotations

import os
import time
from pathlib import Path


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def carrying(marker: str) -> list[int]:
    """Pids of live (non-zombie) processes whose environ or cmdline contains ``marker`` (never this process)."""
    needle = marker.encode()
    out: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        stat = _read(entry / "stat")
        if not stat or stat[stat.rfind(b")") + 2 :].split()[:1] == [b"Z"]:
            continue
        if needle in _read(entry / "environ") or needle in _read(entry / "cmdline"):
            out.append(int(entry.name))
    return out


def wait_until_none(marker: str, timeout_s: float = 10.0) -> list[int]:
    """Poll until no process carries ``marker`` (the state we expect), or the deadline: then the survivors."""
    deadline = time.monotonic() + timeout_s
    while (left := carrying(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left
