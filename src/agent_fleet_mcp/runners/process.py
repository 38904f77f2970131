"""The ONE place that spawns and kills agent processes.

Every turn runs in its own process group (``start_new_session``) under a tiny ``/bin/sh`` wrapper that records the
exit code in a file, so the outcome survives the server. stdout goes straight to the turn's transcript file and
stderr to a sibling file: the process needs nothing from the server once started, which is what lets agents keep
running across a server restart. Killing = SIGTERM to the whole group, a grace period, then SIGKILL.

These functions block (briefly); the supervisor calls them from a worker thread.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from agent_fleet_mcp.runners.base import LaunchPlan

# `sh -c SCRIPT EXITFILE ARGV...`: run ARGV, then write its exit status atomically next to the transcript.
_WRAPPER = 'f=$0; "$@"; c=$?; echo $c > "$f.tmp" && mv "$f.tmp" "$f"; exit $c'

# Popen objects of the children this process started, so they are reaped (no zombies) and their exit seen.
_children: dict[int, subprocess.Popen[bytes]] = {}
# Exit statuses collected when reaping, until exit_code() asks for them.
_reaped: dict[int, int] = {}


@dataclass(frozen=True)
class TurnFiles:
    """Where one turn's process writes. All live in the agent's folder under the fleet home."""

    out: Path  # stdout: the raw transcript (normalized JSONL for our worker; the backend's stream otherwise)
    err: Path
    exit: Path
    prompt: Path

    @classmethod
    def for_turn(cls, turns_dir: Path, turn: int) -> TurnFiles:
        base = turns_dir / f"{turn:04d}"
        return cls(
            out=base.with_suffix(".out.jsonl"),
            err=base.with_suffix(".err.log"),
            exit=base.with_suffix(".exit"),
            prompt=base.with_suffix(".prompt.txt"),
        )


@dataclass(frozen=True)
class Spawned:
    pid: int
    start_time: float  # psutil create_time: (pid, start_time) identifies the process across pid reuse


def spawn(plan: LaunchPlan, files: TurnFiles) -> Spawned:
    """Start the plan in a new session (own process group), stdout/stderr to files, stdin from the prompt file."""
    files.out.parent.mkdir(parents=True, exist_ok=True)
    files.prompt.write_text(plan.stdin_text or "", encoding="utf-8")
    files.exit.unlink(missing_ok=True)
    argv = ["/bin/sh", "-c", _WRAPPER, str(files.exit), *plan.argv]
    with (
        open(files.prompt, "rb") as stdin,
        open(files.out, "ab") as stdout,
        open(files.err, "ab") as stderr,
    ):
        proc = subprocess.Popen(
            argv,
            stdin=stdin if plan.stdin_text is not None else subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            cwd=plan.cwd,
            env=plan.env,
            start_new_session=True,
            close_fds=True,
        )
    _children[proc.pid] = proc
    try:
        start = psutil.Process(proc.pid).create_time()
    except psutil.Error:  # already gone: still a valid identity for "dead"
        start = 0.0
    return Spawned(pid=proc.pid, start_time=start)


def _reap(pid: int) -> None:
    proc = _children.get(pid)
    if proc is not None and (code := proc.poll()) is not None:
        _children.pop(pid, None)
        _reaped[pid] = code


def is_alive(pid: int, start_time: float | None) -> bool:
    """True while the process with this identity runs (zombies and recycled pids count as dead)."""
    _reap(pid)
    try:
        p = psutil.Process(pid)
        if start_time and abs(p.create_time() - start_time) > 0.05:
            return False
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def group_alive(pgid: int) -> bool:
    """True while any process of the group exists (after reaping our own child)."""
    _reap(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Only zombies left (not ours to reap)? Treat as gone.
    for p in psutil.process_iter(["pid", "status"]):
        with contextlib.suppress(psutil.Error):
            if os.getpgid(p.info["pid"]) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                return True
    return False


def exit_code(files: TurnFiles, pid: int | None = None) -> int | None:
    """The turn's exit status: from our Popen if we started it, else from the wrapper's exit file."""
    if pid is not None:
        _reap(pid)
        if pid in _reaped:
            return _reaped.pop(pid)
    try:
        return int(files.exit.read_text().strip())
    except (OSError, ValueError):
        return None


def kill_group(pid: int, start_time: float | None, *, grace_s: float = 3.0) -> bool:
    """SIGTERM the turn's whole process group, wait up to ``grace_s``, then SIGKILL what is left.

    Returns True when something was signalled. Never signals a recycled pid: the leader's identity is checked
    first; a group whose leader is already gone is still signalled (its stragglers are ours).
    """
    if is_alive(pid, start_time) is False and not group_alive(pid):
        return False
    if start_time and _leader_recycled(pid, start_time):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not group_alive(pid):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and group_alive(pid):
        time.sleep(0.02)
    return True


def _leader_recycled(pid: int, start_time: float) -> bool:
    try:
        p = psutil.Process(pid)
    except psutil.Error:
        return False  # leader gone; stragglers may remain in its group
    return abs(p.create_time() - start_time) > 0.05 and os.getpgid(pid) != pid
