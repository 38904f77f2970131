"""The ONE place that spawns and kills agent processes.

Every turn runs in its own process group (``start_new_session``) under a tiny ``/bin/sh`` wrapper that records the
exit code in a file, so the outcome survives the server. stdout goes straight to the turn's transcript file and
stderr to a sibling file: the process needs nothing from the server once started, which is what lets agents keep
running across a server restart. Killing = SIGTERM to the whole group, a grace period, then SIGKILL.

The turn's boundary (runners/containment.py, docs/containment.md): where user namespaces work, the wrapper execs
`unshare` into a user + PID namespace with its own locked /proc; the program runs under a second sh that is the
namespace's init and writes the exit file. Whatever the program started, in any session or group, dies when that
init exits or when the outer pid (still the turn's identity) is killed. Elsewhere the process group is the boundary
(the last resort; ``kill_group`` also remembers descendants that left the group). Where the user may create cgroup
v2s, the outer process also joins a cgroup of its own turn first (runners/cgroups.py): ``kill_group`` and
``release_turn`` end it with ``cgroup.kill``, which no session, group or double fork escapes.

A plan with a ``preload`` entry is forked instead by the fleet home's preloaded fork server (runners/forkserver.py):
same files, own session, and the fork server writes the same exit file. Whenever it cannot take the turn within
~3 s (up to 20 s while it is still preloading), or ``AGENT_FLEET_FORKSERVER=0`` is in the plan's env, the turn is
spawned the plain way.

These functions block (briefly); the supervisor calls them from a worker thread.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil
import structlog

from agent_fleet_mcp import logs
from agent_fleet_mcp.private import open_private, private_dirs, write_private
from agent_fleet_mcp.runners import cgroups, containment, forkserver, started
from agent_fleet_mcp.runners.base import LaunchPlan

log = structlog.get_logger("agent_fleet.process")

# The first step of every turn claims its `.started` marker (exclusive create, holding the outer pid, private; if it
# exists the turn already started: run nothing, exit 75, see runners/started.py). It runs in the outer process, never
# as PID 1 of a namespace ($$ in the subshell is still the wrapper's pid).
_CLAIM = 'f=$0; m="${f%.exit}.started"; ( umask 077; set -C; echo $$ > "$m" ) 2>/dev/null || exit 75; '
# Run ARGV, then write its exit status atomically next to the transcript (umask 077 once the program is done: the
# exit file is private like the rest of the fleet home).
_RUN = '"$@"; c=$?; umask 077; echo $c > "$f.tmp" && mv "$f.tmp" "$f"; exit $c'
# cgroup containment: the outer process joins the turn's cgroup (named in the env by spawn) before it starts anything.
_JOIN = (
    f'[ -z "${cgroups.JOIN_ENV}" ] || {{ echo $$ > "${cgroups.JOIN_ENV}/cgroup.procs"; }} 2>/dev/null; '
    f"unset {cgroups.JOIN_ENV}; "
)
# `sh -c SCRIPT EXITFILE ARGV...`: claim the marker, join the cgroup, then run.
_WRAPPER = _CLAIM + _JOIN + _RUN
# pidns containment: the outer sh (the turn's pid) claims the marker, then becomes `unshare` (exec: same pid), whose
# namespace init runs _INNER: the program, then its exit file. The init's exit ends everything left in the
# namespace; killing the outer pid kills the init (--kill-child) and so the namespace.
# Outer argv: EXITFILE UNSHARE-PREFIX... sh -c _INNER EXITFILE ARGV...
_ENTER = _CLAIM + _JOIN + 'exec "$@"'
# Runs as PID 1 of the namespace: $$ is 1 there, so nothing in it may rely on $$.
_INNER = 'f=$0; ' + _RUN

# Popen objects of the children this process started, so they are reaped (no zombies) and their exit seen.
_children: dict[int, subprocess.Popen[bytes]] = {}
# Exit statuses collected when reaping, until exit_code() asks for them.
_reaped: dict[int, int] = {}
# Pids forked by a fork server for this process: their exit file is written by the fork server just after death.
_forked: set[int] = set()
EXIT_FILE_WAIT_S = 2.0


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
    """Start the plan in a new session (own process group), stdout/stderr to files, stdin from the prompt file.
    A turn that already started (its ``.started`` marker exists) is adopted, never started again."""
    if (already := started.wait_read(files.exit)) is not None and already.pid is not None:
        return Spawned(pid=already.pid, start_time=already.proc_start)
    private_dirs(files.out.parent)
    write_private(files.prompt, plan.stdin_text or "")
    files.exit.unlink(missing_ok=True)  # no marker: no run of this turn began, so any exit file is stale
    env = plan.env
    boundary = containment.choose(plan.env)
    if boundary.cgroup_base is not None and cgroups.create(cg := cgroups.turn_dir(boundary.cgroup_base, files.exit)):
        env = {**env, cgroups.JOIN_ENV: str(cg)}
    guards = containment.home_guards(_home_of(files)) if boundary.unshare is not None else []
    if guards:
        env = {**env, containment.GUARDS_ENV: "\0".join(x for pair in guards for x in pair)}
    with (
        open(files.prompt if plan.stdin_text is not None else os.devnull, "rb") as stdin,
        open_private(files.out, "ab") as stdout,
        open_private(files.err, "ab") as stderr,
    ):
        pid, reason = _fork_preloaded(plan, files, (stdin.fileno(), stdout.fileno(), stderr.fileno()), env)
        if pid is not None:
            _forked.add(pid)
        else:
            if plan.preload is None:  # a CLI's start (~1 s of CPU) goes before a preload no turn waits for yet
                forkserver.yield_preload(zygote_home(plan.env))
            plain_env = {k: v for k, v in env.items() if k != containment.GUARDS_ENV}
            proc = subprocess.Popen(
                wrapped_argv(plan, files, guards),
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                cwd=plan.cwd,
                env=plain_env,
                start_new_session=True,
                close_fds=True,
            )
            pid = proc.pid
            _children[pid] = proc
            if plan.preload is not None:
                logs.ensure_configured()
                log.info("turn_spawned", via="plain", pid=pid, reason=reason)
    try:
        start = psutil.Process(pid).create_time()
    except psutil.Error:  # already gone: still a valid identity for "dead"
        start = 0.0
    return Spawned(pid=pid, start_time=start)


def _home_of(files: TurnFiles) -> Path:
    return files.exit.parent.parent.parent.parent  # <home>/agents/<agent id>/turns/NNNN.exit


def wrapped_argv(plan: LaunchPlan, files: TurnFiles, guards: list[tuple[str, str]] | None = None) -> list[str]:
    """The plain spawn's argv: the program under the sh wrapper, inside the turn's namespaces where possible (with
    the fleet home's ``guards``, containment.home_guards)."""
    boundary = containment.choose(plan.env)
    if boundary.mode == "pidns" and boundary.unshare is not None:
        prefix = containment.namespace_prefix(boundary.unshare, guards=guards or [])
        return [
            "/bin/sh", "-c", _ENTER, str(files.exit), *prefix,
            "/bin/sh", "-c", _INNER, str(files.exit), *plan.argv,
        ]  # fmt: skip
    _log_weak_containment(boundary)
    return ["/bin/sh", "-c", _WRAPPER, str(files.exit), *plan.argv]


_weak_logged = False


def _log_weak_containment(boundary: containment.Containment) -> None:
    global _weak_logged
    if not _weak_logged:
        _weak_logged = True
        logs.ensure_configured()
        log.warning("containment_weak", mode=boundary.mode, why=list(boundary.why_not))


def zygote_home(env: Mapping[str, str]) -> Path:
    """The fleet home whose fork server a plan with this environment uses."""
    raw_home = env.get("AGENT_FLEET_HOME") or str(Path(env.get("HOME") or "~") / ".agent-fleet")
    return Path(raw_home).expanduser().resolve()


def _fork_preloaded(
    plan: LaunchPlan, files: TurnFiles, stdio: tuple[int, int, int], env: dict[str, str]
) -> tuple[int | None, str]:
    """The pid forked by the fleet home's fork server, or (None, why not) when the plan is to be spawned plainly."""
    if plan.preload is None:
        return None, "no preload entry"
    if plan.env.get(forkserver.DISABLE_ENV, "").strip() == "0":
        return None, f"{forkserver.DISABLE_ENV}=0"
    if plan.argv[:2] != [sys.executable, "-m"] or len(plan.argv) < 3:
        return None, "argv is not `<this python> -m <module> ...`"
    home = zygote_home(plan.env)
    if not home.is_dir():
        return None, f"no fleet home at {home}"
    logs.ensure_configured()
    t0 = time.monotonic()
    try:
        pid = forkserver.spawn(
            home, entry=plan.preload, args=plan.argv[3:], env=env, cwd=plan.cwd, exit_file=files.exit,
            stdio=stdio,
        )  # fmt: skip
    except Exception as exc:  # never lose a turn to the fork server
        return None, f"fork server: {type(exc).__name__}: {exc}"
    log.info("turn_spawned", via="forkserver", pid=pid, ms=round((time.monotonic() - t0) * 1000, 1))
    return pid, ""


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


def exit_fd(pid: int, start_time: float | None) -> int | None:
    """A descriptor that turns readable the moment the process ends (a Linux pidfd; the caller closes it), so a
    follower sleeps until then instead of looking every poll. None where there is none (not Linux, an old kernel)
    or the process is not there any more (recycled pid included): the caller then polls ``is_alive``."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        fd: int = pidfd_open(pid)
    except OSError:
        return None
    if not is_alive(pid, start_time):  # it ended (or the pid is another process's) before the fd was made
        os.close(fd)
        return None
    return fd


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
        with contextlib.suppress(psutil.Error, OSError):  # one that ended since the listing is not in the group
            if os.getpgid(p.info["pid"]) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                return True
    return False


def exit_code(files: TurnFiles, pid: int | None = None) -> int | None:
    """The turn's exit status: from our Popen if we started it, else from the exit file (the sh wrapper's, or the
    fork server's: written just after the process died, so a dead pid waits briefly for it)."""
    if pid is not None:
        _reap(pid)
        if pid in _reaped:
            return _reaped.pop(pid)
    code = _read_exit_file(files.exit)
    if code is None and pid is not None and _exit_file_pending(pid):
        deadline = time.monotonic() + EXIT_FILE_WAIT_S
        while code is None and time.monotonic() < deadline:
            time.sleep(0.01)
            code = _read_exit_file(files.exit)
    if code is not None and pid is not None:
        _forked.discard(pid)
    return code


def _read_exit_file(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _exit_file_pending(pid: int) -> bool:
    """Dead, and its exit file may still come: a fork-server child we started that is gone, or any fork-server
    child not reaped yet (a zombie: the fork server reaps it and writes the file within milliseconds)."""
    try:
        p = psutil.Process(pid)
        if p.status() != psutil.STATUS_ZOMBIE:
            return False
        parent = p.parent()
        return parent is not None and any(forkserver.DAEMON_MODULE in a for a in parent.cmdline())
    except psutil.Error:  # gone
        return pid in _forked


def turn_cgroup(files: TurnFiles) -> Path | None:
    """The turn's cgroup when it has one (named from the turn's files: any server finds it)."""
    base, _ = cgroups.base()
    cg = None if base is None else cgroups.turn_dir(base, files.exit)
    return cg if cg is not None and cg.is_dir() else None


def release_turn(files: TurnFiles) -> bool:
    """A turn that ended: kill what is left in its cgroup (background jobs, setsid/double-forked descendants, the
    program when its wrapper was killed) and remove the cgroup. True when something was left."""
    cg = turn_cgroup(files)
    return cg is not None and cgroups.kill(cg)


def remove_empty_cgroups(home: Path, *, keep: Callable[[str, int], bool]) -> int:
    """Remove the home's empty turn cgroups (a server start), except those ``keep(agent_id, turn)`` names."""
    base, _ = cgroups.base()
    removed = 0
    for cg in [] if base is None else cgroups.leftovers(base, home):
        agent_id, _, n = cg.name.rpartition("-")
        if n.isdigit() and keep(agent_id, int(n)):
            continue
        removed += cgroups.remove(cg, timeout_s=0)
    return removed


def kill_group(pid: int, start_time: float | None, *, grace_s: float = 3.0, files: TurnFiles | None = None) -> bool:
    """SIGTERM the turn's whole process group, wait up to ``grace_s``, then SIGKILL what is left.

    Returns True when something was signalled. Never signals a recycled pid: the leader's identity is checked
    first; a group whose leader is already gone is still signalled (its stragglers are ours). A turn with a cgroup
    (``files`` given) gets the same SIGTERM grace for its group, then ``cgroup.kill``: nothing in it survives.
    """
    cg = None if files is None else turn_cgroup(files)
    if cg is not None:
        if not (start_time and _leader_recycled(pid, start_time)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and group_alive(pid):
                time.sleep(0.05)
        done = cgroups.kill(cg)
        _reap(pid)
        return done
    if is_alive(pid, start_time) is False and not group_alive(pid):
        return False
    if start_time and _leader_recycled(pid, start_time):
        return False
    escaped = _escaped_descendants(pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and group_alive(pid):
        time.sleep(0.05)
    if group_alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and group_alive(pid):
            time.sleep(0.02)
    _kill_escaped(escaped)
    return True


def _escaped_descendants(pid: int) -> list[psutil.Process]:
    """Descendants of the leader that moved to process groups of their own (a tool running a command in a new
    session, say): killing the turn's group does not reach them, so they are remembered before the kill."""
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    out: list[psutil.Process] = []
    for k in kids:
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(k.pid) != pid:
                out.append(k)
    return out


def _kill_escaped(procs: list[psutil.Process]) -> None:
    """After the turn's group is gone, SIGKILL what is left of the escaped descendants (and their groups).
    psutil checks each process's identity (pid + creation time) before signalling, so recycled pids are safe."""
    for p in procs:
        with contextlib.suppress(psutil.Error, OSError):
            if p.is_running():
                if os.getpgid(p.pid) == p.pid:
                    os.killpg(p.pid, signal.SIGKILL)
                else:
                    p.kill()
    psutil.wait_procs(procs, timeout=1.0)


def _leader_recycled(pid: int, start_time: float) -> bool:
    try:
        p = psutil.Process(pid)
        return abs(p.create_time() - start_time) > 0.05 and os.getpgid(pid) != pid
    except (psutil.Error, OSError):
        return False  # leader gone (maybe just now); stragglers may remain in its group
