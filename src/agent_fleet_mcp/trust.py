"""Which catalog files a person has trusted (direnv's ``allow``, Claude Code's workspace trust).

A definition file outside the package's built-ins is used only once its exact bytes were trusted: the trust file
``<fleet home>/trusted-agents.json`` (mode 0600) maps each file (its folder resolved, its own name kept: that is
what ``{definition_dir}`` expands to) to the sha256 of its content. Changing one byte of a trusted file makes it
untrusted again. Nothing here runs on its own: only ``agent-fleet trust`` (a person) and test fixtures call
``trust_files``; an agent turn has no tool that reaches it.

The file is rewritten in place, under an exclusive lock so two ``agent-fleet trust`` runs never lose each other's
entries. In place, not replaced: each running turn's namespace has a read-only bind mount on this very file
(containment.home_guards), and a file renamed over it detached that mount there, so the turns running at that moment
could write the new one. A missing or unreadable trust file trusts nothing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from agent_fleet_mcp.errors import InvalidRequest
from agent_fleet_mcp.private import FILE_MODE, private_dirs

TRUST_FILE = "trusted-agents.json"
_LOCK_FILE = ".trusted-agents.lock"
VERSION = 1
_READ_ATTEMPTS = 3  # a read that met a rewrite half-way reads again
LOCK_WAIT_S = 10.0  # how long a change of the trust list waits for its lock


@dataclass(frozen=True)
class Trusted:
    path: str  # the key: folder resolved, file name kept
    sha256: str
    trusted_at: float


def trust_file(home: Path) -> Path:
    return home / TRUST_FILE


def file_key(path: Path) -> str:
    """How a definition file is named in the trust file: its folder resolved (symlinks, ``..``), its name kept."""
    path = Path(path).expanduser().absolute()
    try:
        folder = path.parent.resolve()
    except OSError:
        folder = path.parent
    return str(folder / path.name)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_trusted(home: Path) -> dict[str, Trusted]:
    """Every trusted file, by key. A missing or corrupt trust file trusts nothing (never raises)."""
    files, _ = _read_list(home)
    out: dict[str, Trusted] = {}
    for key, entry in (files or {}).items():
        if not isinstance(key, str) or not isinstance(entry, dict):
            continue
        e = cast("dict[str, object]", entry)
        sha, at = e.get("sha256"), e.get("trusted_at")
        if isinstance(sha, str) and len(sha) == 64:
            out[key] = Trusted(key, sha, float(at) if isinstance(at, int | float) else 0.0)
    return out


def list_problem(home: Path) -> str | None:
    """What makes the trust list unusable (then it trusts nothing), or None: fine, or not made yet. A rewrite is in
    place (``_write``), so a crash half-way leaves a list that does not parse."""
    return _read_list(home)[1]


def _read_list(home: Path) -> tuple[dict[object, object] | None, str | None]:
    """The list's ``files`` object, or None and what is wrong with it (None too when there is no list yet). A read in
    the middle of a rewrite (``_write``: in place) may see a mix of both: it reads again, a few times."""
    for attempt in range(_READ_ATTEMPTS):
        try:
            text = trust_file(home).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None, None
        except (OSError, UnicodeDecodeError) as exc:
            return None, f"it cannot be read ({type(exc).__name__}: {exc})"
        try:
            raw: object = json.loads(text)
        except ValueError as exc:
            if attempt < _READ_ATTEMPTS - 1:
                time.sleep(0.005)
                continue
            return None, f"it is not JSON ({exc})" if text.strip() else "it is empty"
        files = cast("dict[str, Any]", raw).get("files") if isinstance(raw, dict) else None
        if isinstance(files, dict):
            return cast("dict[object, object]", files), None
        return None, 'it has no "files" object'
    return None, None  # not reached: the last attempt returns


def trust_version(home: Path) -> str | None:
    """The digest of the trust file's content: part of the catalog cache key. Its content, not its stat: a rewrite
    keeps the inode, and two of the same size within one clock tick of the file system keep mtime and size."""
    try:
        return digest(trust_file(home).read_bytes())
    except OSError:
        return None


def trust_files(home: Path, paths: Iterable[Path]) -> list[Trusted]:
    """Trust the current content of each file (read now, hashed, recorded). Returns the entries written.
    Raises ``InvalidRequest`` naming a file that cannot be read (nothing is recorded then)."""
    entries: list[Trusted] = []
    now = time.time()
    for p in paths:
        try:
            data = Path(p).read_bytes()
        except OSError as exc:
            raise InvalidRequest(f"cannot trust {p}: {exc.strerror or exc}; name an existing definition file") from None
        entries.append(Trusted(file_key(Path(p)), digest(data), now))
    if entries:
        with _locked(home):
            current = load_trusted(home)
            current.update({e.path: e for e in entries})
            _write(home, current)
    return entries


def revoke_files(home: Path, paths: Iterable[Path]) -> list[str]:
    """Forget the trust of each file (by path; the file need not exist). Returns the keys that were trusted."""
    keys = [file_key(Path(p)) for p in paths]
    with _locked(home):
        current = load_trusted(home)
        gone = [k for k in keys if current.pop(k, None) is not None]
        if gone:
            _write(home, current)
    return gone


def is_trusted(trusted: Mapping[str, Trusted], key: str, sha256: str) -> bool:
    entry = trusted.get(key)
    return entry is not None and entry.sha256 == sha256


@contextlib.contextmanager
def _locked(home: Path) -> Generator[None]:
    """The trust list's lock, waited for up to LOCK_WAIT_S. The lock file is in the fleet home, which turns can
    write: a turn holding it must not make `agent-fleet trust` wait forever."""
    private_dirs(home)
    path = home / _LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise InvalidRequest(
                        f"the trust list stayed locked for {LOCK_WAIT_S:g} s ({path}): another `agent-fleet trust` "
                        "may still be running; if none is, a running agent may hold the lock. Check `agent-fleet "
                        "status`, stop what holds it, and try again; nothing was changed"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def _write(home: Path, entries: Mapping[str, Trusted]) -> None:
    data = {
        "version": VERSION,
        "files": {k: {"sha256": e.sha256, "trusted_at": round(e.trusted_at, 3)} for k, e in sorted(entries.items())},
    }
    body = (json.dumps(data, indent=1) + "\n").encode()
    path = trust_file(home)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:  # ELOOP: a symlink was planted there; anything else is a real error
        if exc.errno != errno.ELOOP:
            raise
        _replace(home, body)
        return
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            _replace(home, body)
            return
        if st.st_mode & 0o077:
            os.fchmod(fd, FILE_MODE)
        # spaces over the old tail first (JSON allows them), then cut: a reader never sees the old tail after the
        # new document; it may see a mix while the bytes are written (load_trusted reads again then)
        padded = body + b" " * max(0, st.st_size - len(body))
        written = 0
        while written < len(padded):
            written += os.pwrite(fd, padded[written:], written)
        os.ftruncate(fd, len(body))
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace(home: Path, body: bytes) -> None:
    """Put a regular file where something else is (a symlink, a folder's name taken): atomically, by rename."""
    fd, tmp = tempfile.mkstemp(prefix=".trusted-agents.", suffix=".tmp", dir=home)  # created 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, trust_file(home))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
