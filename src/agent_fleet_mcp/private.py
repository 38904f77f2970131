"""The fleet home is private: folders 0700, files 0600, whatever the umask.

Prompts, transcripts, histories, logs and fleet.db hold the user's code and conversations; other local users must
not read them. Every place that creates something under the home goes through these helpers (an ``os.open`` mode
can only be narrowed by the umask, never widened; folders are chmod-ed after creation because ``mkdir(mode=)`` is
narrowed too and, with ``parents=True``, ignored for the parents). ``secure_home`` runs at server start: it creates
the home 0700, and tightens an existing home that others can read (a home made by an older version), saying so.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

DIR_MODE = 0o700
FILE_MODE = 0o600
OPEN_TO_OTHERS = 0o077  # group and other bits
CHMOD_FIX = "chmod -R go= {home}"


def private_dirs(path: Path) -> Path:
    """``mkdir -p`` where every folder it creates is 0700. Existing folders are left as they are."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # created meanwhile by another process
        os.chmod(d, DIR_MODE)
    return path


def open_private(path: Path, mode: str = "ab", *, encoding: str | None = None) -> IO[Any]:
    """``open(path, mode)`` for ``"ab"``, ``"wb"``, ``"a"`` or ``"w"``; a file it creates is 0600."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_APPEND if mode.startswith("a") else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    try:
        return open(fd, mode, encoding=encoding)
    except BaseException:
        os.close(fd)
        raise


def write_private(path: Path, text: str) -> None:
    """``path.write_text(text)`` (UTF-8), a new file being 0600."""
    with open_private(path, "w", encoding="utf-8") as f:
        f.write(text)


def touch_private(path: Path) -> None:
    """Create ``path`` empty as 0600 if it does not exist (e.g. fleet.db before SQLite opens it: its -wal and -shm
    files take the database file's mode)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE))


def open_to_others(home: Path, *, limit: int = 100_000) -> Iterator[Path]:
    """Entries under ``home`` (``home`` included) that group or others may read, write or enter. Symlinks are not
    followed; at most ``limit`` entries are looked at."""
    seen = 0
    stack = [home]
    while stack and seen < limit:
        p = stack.pop()
        seen += 1
        try:
            st = p.lstat()
        except OSError:
            continue
        if stat.S_ISLNK(st.st_mode):
            continue
        if st.st_mode & OPEN_TO_OTHERS:
            yield p
        if stat.S_ISDIR(st.st_mode):
            try:
                stack.extend(p.iterdir())
            except OSError:
                continue


def secure_home(home: Path) -> list[Path]:
    """Create the home 0700, or tighten an existing one that others can enter: remove the group/other bits of
    everything in it that we own. A 0700 home is not walked (nothing in it is reachable by others; `agent-fleet
    doctor` still lists stray modes). Returns what was changed (the caller logs it)."""
    if not home.exists():
        private_dirs(home)
        return []
    try:
        if not home.stat().st_mode & OPEN_TO_OTHERS:
            return []
    except OSError:
        return []
    changed: list[Path] = []
    for p in list(open_to_others(home)):
        try:
            st = p.lstat()
            if st.st_uid != os.getuid():
                continue
            os.chmod(p, stat.S_IMODE(st.st_mode) & ~OPEN_TO_OTHERS)
        except OSError:
            continue
        changed.append(p)
    return changed
