"""A cgroup v2 per turn: where it lives, how a process joins it, how it is ended (``cgroup.kill``) and removed.

Layout (docs/containment.md): ``<base>/agent-fleet-<hash of the fleet home>/<agent id>-<turn>``, where ``<base>`` is
this process's own cgroup v2 directory (``0::`` of /proc/self/cgroup under the cgroup2 mount: the root of
``/sys/fs/cgroup/unified`` on a hybrid machine, the delegated user service on a systemd one). The name comes from
the turn's identity only, so any server (a restarted one included) finds it again: nothing is kept in memory. No
controller is enabled, so the "no internal processes" rule does not apply: the server stays where it is.

The turn's outer process joins its cgroup as its first act after claiming the turn (``echo $$ > cgroup.procs``),
before it starts anything, so everything the turn starts is inside. ``kill`` writes ``1`` to ``cgroup.kill``
(kernel >= 5.14): the kernel SIGKILLs every process in it, in any session, process group or PID namespace.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import time
from pathlib import Path

PREFIX = "agent-fleet-"
JOIN_ENV = "AGENT_FLEET_TURN_CGROUP"  # the cgroup a spawned turn's outer process joins (removed before the program)
PROBE_TIMEOUT_S = 5.0
STALE_PROBE_S = 60.0  # a probe cgroup this old was left by a process that died during its probe


def _mountpoint() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (the first cgroup2 line of /proc/self/mountinfo)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        left, _, right = line.partition(" - ")
        if right.split()[:1] == ["cgroup2"] and len(left.split()) > 4 and left.split()[3] == "/":
            return Path(left.split()[4].replace("\\040", " "))
    return None


def _own_path() -> str | None:
    """This process's cgroup v2 path (``0::/path``), cut above any turn cgroup it runs in (a server inside an agent
    puts its turns beside its own turn's, never inside it)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            path = line[3:].strip()
            return path.split(f"/{PREFIX}", 1)[0] if f"/{PREFIX}" in path else path
    return None


def base() -> tuple[Path | None, str]:
    """The cgroup v2 directory turn cgroups are created under, or (None, why not)."""
    mount = _mountpoint()
    if mount is None:
        return None, "no cgroup v2 hierarchy is mounted (only cgroup v1)"
    own = _own_path()
    if own is None:
        return None, "this process has no cgroup v2 path (/proc/self/cgroup has no 0:: line)"
    here = mount / own.lstrip("/")
    if not here.is_dir():
        return None, f"{here} (this process's cgroup) is not visible here"
    if not os.access(here, os.W_OK) or not os.access(here / "cgroup.procs", os.W_OK):
        return None, f"this user may not create cgroups under {here} (not delegated)"
    return here, ""


def probe() -> tuple[Path | None, str]:
    """The base when a turn cgroup can be made, joined and killed here; else (None, why not in words to act on)."""
    where, why = base()
    if where is None:
        return None, why
    remove_stale_probes(where)
    trial = where / f"{PREFIX}probe-{os.getpid()}"
    try:
        trial.mkdir(exist_ok=True)
    except OSError as exc:
        return None, f"cannot create a cgroup under {where}: {exc.strerror}"
    try:
        if not (trial / "cgroup.kill").exists():
            return None, "cgroup.kill is missing (kernel < 5.14)"
        res = subprocess.run(
            ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs"', str(trial)], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=PROBE_TIMEOUT_S, check=False,
        )  # fmt: skip
        if res.returncode != 0:
            err = res.stderr.decode(errors="replace").strip().splitlines()
            return None, f"a process cannot be moved into {trial}: {err[-1] if err else res.returncode}"
        return where, ""
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"cgroup probe failed: {exc}"
    finally:
        remove(trial, timeout_s=1.0)


def remove_stale_probes(base_dir: Path) -> int:
    """Remove probe cgroups older than ``STALE_PROBE_S``: a probe removes its own within ~6 s (its timeout, then
    the removal's), so an older one is left by a process that died during it (a server killed as it started). Age,
    not the pid in the name, decides: a server inside an agent names its probe with a pid of its own PID
    namespace. rmdir never removes a populated cgroup."""
    now, removed = time.time(), 0
    for stale in base_dir.glob(f"{PREFIX}probe-*"):
        with contextlib.suppress(OSError):
            if now - stale.stat().st_mtime > STALE_PROBE_S:
                stale.rmdir()
                removed += 1
    return removed


def home_dir(base_dir: Path, home: Path) -> Path:
    """The parent cgroup of one fleet home's turns."""
    return base_dir / f"{PREFIX}{hashlib.sha256(str(home).encode()).hexdigest()[:12]}"


def turn_dir(base_dir: Path, exit_file: Path) -> Path:
    """A turn's cgroup, named from its files (``<home>/agents/<agent id>/turns/NNNN.exit``)."""
    turns = exit_file.parent
    agent_dir = turns.parent
    home = agent_dir.parent.parent
    return home_dir(base_dir, home) / f"{agent_dir.name}-{exit_file.name.split('.')[0]}"


def create(path: Path) -> bool:
    """Make the turn's cgroup (and its home's parent). False when the kernel refuses (the turn runs without)."""
    for _ in range(3):  # the parent may be removed (empty) by another server between the two mkdirs: again
        try:
            path.parent.mkdir(exist_ok=True)
            path.mkdir(exist_ok=True)
        except FileNotFoundError:
            continue
        except OSError:
            return False
        return True
    return False


def join(path: Path, pid: int) -> bool:
    try:
        (path / "cgroup.procs").write_text(f"{pid}\n")
    except OSError:
        return False
    return True


def populated(path: Path) -> bool:
    """True while any process is in the cgroup or below it (False when it does not exist)."""
    try:
        for line in (path / "cgroup.events").read_text().splitlines():
            if line.startswith("populated "):
                return line.split()[1] != "0"
    except OSError:
        return False
    return False


def pids(path: Path) -> list[int]:
    try:
        return [int(x) for x in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def kill(path: Path, *, timeout_s: float = 5.0) -> bool:
    """``cgroup.kill`` the cgroup, wait until it is empty, remove it. True when something was in it."""
    if not path.is_dir():
        return False
    had = populated(path)
    if had:
        with contextlib.suppress(OSError):
            (path / "cgroup.kill").write_text("1\n")
    remove(path, timeout_s=timeout_s)
    return had


def remove(path: Path, *, timeout_s: float = 5.0) -> bool:
    """rmdir the cgroup (and any cgroups below it) once it is empty; False when it is still populated."""
    deadline = time.monotonic() + timeout_s
    while populated(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    for parent, dirs, _files in os.walk(path, topdown=False):  # deepest first; the entries' types come with
        for name in dirs:  # the listing (a cgroup holds ~50 interface files: no stat for each)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(parent, name))
    try:
        path.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    if path.parent.name.startswith(PREFIX):
        with contextlib.suppress(OSError):  # the home's parent goes with its last turn (EBUSY while others remain)
            path.parent.rmdir()
    return True


def own_turn_cgroup() -> Path | None:
    """The turn cgroup this process runs in (a worker), or None."""
    mount = _mountpoint()
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if mount is not None and line.startswith("0::") and f"/{PREFIX}" in line:
            here = mount / line[3:].strip().lstrip("/")
            return here if here.is_dir() else None
    return None


def leftovers(base_dir: Path, home: Path) -> list[Path]:
    """The home's turn cgroups that are empty now (a server start removes them)."""
    parent = home_dir(base_dir, home)
    try:
        kids = [p for p in parent.iterdir() if p.is_dir()]
    except OSError:
        return []
    return [p for p in kids if not populated(p)]
