"""The "started" marker: what makes a turn run at most once, whatever crashes around its spawn.

The very first thing a spawned turn does (the sh wrapper in runners/process.py, the fork server's child in
runners/zygote.py) is to create ``<turn>.started`` next to its exit file with an exclusive create (``O_EXCL``),
holding its own pid: the outer pid, the one ``process.spawn`` returns and the store records. A second spawn of the
same turn (a server that requeued a turn whose claimer died, two servers racing) finds the marker and exits at
once with ``DUPLICATE_EXIT`` without running anything and without writing the exit file.

So a claimed turn whose pid the store never got (the server died in the spawn window) is recovered from the disk:
a marker means it started (adopt its pid, follow it or close it from its exit file), no marker and a dead claimer
means it never started (requeue it). ``claimer_identity`` / ``claimer_alive`` name the server that claimed a turn.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

DUPLICATE_EXIT = 75  # the turn had already started: this spawn ran nothing (EX_TEMPFAIL)
SUFFIX = ".started"
EMPTY_MARKER_GRACE_S = 5.0  # an empty marker older than this: its writer died between create and write
_SAME_PROCESS_SLACK_S = 0.1  # psutil's create_time is tick-rounded; the marker is written after the process began


def marker_path(exit_file: Path) -> Path:
    """``<turns>/0001.exit`` -> ``<turns>/0001.started``."""
    return exit_file.with_suffix(SUFFIX)


def create(exit_file: Path, pid: int) -> bool:
    """Exclusively create the turn's marker holding ``pid``. False when it already exists (or cannot be made):
    the caller must not run the turn."""
    try:
        fd = os.open(marker_path(exit_file), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError:
        return False
    try:
        os.write(fd, f"{pid}\n".encode())
    finally:
        os.close(fd)
    return True


@dataclass(frozen=True)
class Started:
    """What a turn's marker says. ``pid`` None: the marker exists but its writer has not written the pid yet (or
    died in between: then ``stale``)."""

    pid: int | None
    proc_start: float  # psutil create_time of the live process, else the marker's mtime (never matches a reuse)
    alive: bool
    stale: bool = False


def read(exit_file: Path, *, now: float) -> Started | None:
    """The turn's marker, or None when the turn never started. Blocking (stat, psutil)."""
    path = marker_path(exit_file)
    try:
        st = path.stat()
        text = path.read_text().strip()
    except OSError:
        return None
    try:
        pid = int(text)
    except ValueError:
        return Started(pid=None, proc_start=st.st_mtime, alive=False, stale=now - st.st_mtime > EMPTY_MARKER_GRACE_S)
    with contextlib.suppress(psutil.Error):
        p = psutil.Process(pid)
        created = p.create_time()
        # The marker was written by a process that already existed then; a reused pid was born after it died.
        if created <= st.st_mtime + _SAME_PROCESS_SLACK_S and p.status() != psutil.STATUS_ZOMBIE:
            return Started(pid=pid, proc_start=created, alive=True)
    return Started(pid=pid, proc_start=st.st_mtime, alive=False)


def wait_read(exit_file: Path, *, wait_s: float = 1.0) -> Started | None:
    """``read``, waiting up to ``wait_s`` for a just-created marker's pid. None: the turn never started."""
    deadline = time.monotonic() + wait_s
    while True:
        got = read(exit_file, now=time.time())
        if got is None or got.pid is not None or got.stale or time.monotonic() > deadline:
            return got
        time.sleep(0.01)


def claimer_identity() -> str:
    """This process, as recorded on the turns it claims: ``pid@create_time``."""
    return f"{os.getpid()}@{psutil.Process().create_time():.3f}"


def claimer_alive(identity: str | None) -> bool:
    """True while the process that claimed a turn still runs (a malformed or missing identity counts as alive:
    the age fallback decides then)."""
    if not identity:
        return True
    try:
        raw_pid, raw_start = identity.split("@", 1)
        pid, start = int(raw_pid), float(raw_start)
    except ValueError:
        return True
    try:
        p = psutil.Process(pid)
        return abs(p.create_time() - start) < 0.05 and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
