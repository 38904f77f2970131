"""The boundary around a turn: which kernel containment this machine allows, and how to enter it.

Modes, strongest first (docs/containment.md):

- ``pidns``: every turn runs in its own user + PID namespace with its own ``/proc``. The namespace's init is the
  turn's last process: when it exits (the program ended) or dies (its outer process was killed: ``--kill-child``),
  the kernel kills everything else in the namespace, whatever session or process group it moved to. The program
  runs one user namespace further down, so the ``/proc`` mount it sees is locked: it cannot unmount it to look at
  the server's (or any ancestor's) ``/proc/<pid>/environ``. Needs util-linux ``unshare`` and user namespaces.
- ``cgroup``: every turn runs in a cgroup v2 of its own (``agent-fleet-<home hash>/<agent id>-<turn>`` under the
  server's cgroup, runners/cgroups.py): stopping or ending the turn writes ``1`` to its ``cgroup.kill``, which ends
  every process in it, whatever session, group or parent it has. Used together with ``pidns`` when both work.
- ``pgroup``: the turn's own session/process group, killed as a whole (runners/process.py ``kill_group``), plus the
  descendants that left the group seen before the kill. The last resort: a double fork that was reparented, or a
  background job left when the turn ended normally, escapes it, and ``/proc`` shows the ancestors.

``detect()`` probes once per process (a ~30 ms ``unshare ... /bin/true``) and says why a stronger mode is not
available; ``AGENT_FLEET_CONTAINMENT=pidns|cgroup|pgroup`` forces one mode (diagnosis, comparison, tests). The
fork server's child enters the same namespaces with ``enter_turn_namespaces`` (unshare(2) through ctypes: it is
single-threaded).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Mode = Literal["pidns", "cgroup", "pgroup"]
MODE_ENV = "AGENT_FLEET_CONTAINMENT"  # "pidns" | "cgroup" | "pgroup": use only that mode (tests, comparison)
PROBE_TIMEOUT_S = 5.0

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 0x4000, 0x40000
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1, 32, 4096, 1024, 2048, 1 << 21
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4


@dataclass(frozen=True)
class Containment:
    mode: Mode  # the namespace side: "pidns" when turns get namespaces, else "cgroup" when only a cgroup, else pgroup
    unshare: str | None  # the util-linux binary (pidns mode)
    why_not: tuple[str, ...] = ()  # why each stronger mode is not in use
    cgroup_base: Path | None = None  # the cgroup v2 directory the turn cgroups go under (cgroup mode)

    @property
    def label(self) -> str:
        return "pidns+cgroup" if self.mode == "pidns" and self.cgroup_base else self.mode

    def describe(self) -> str:
        parts: list[str] = []
        if self.mode == "pidns":
            parts.append("a user + PID namespace with its own /proc per turn (and per bash-tool command)")
        if self.cgroup_base is not None:
            parts.append(f"a cgroup v2 per turn under {self.cgroup_base}, ended with cgroup.kill")
        if not parts:
            return "pgroup: process-group kill only (the last resort)"
        return f"{self.label}: {'; '.join(parts)}"


# In the turn's first user namespace (mapped root, own mount namespace): `sh -c _GUARD MOUNT SOURCE TARGET... --
# REST`: each SOURCE is bound read-only over its TARGET, then REST runs. Fails closed (exit 126): a turn never runs
# with its guards missing.
_GUARD = (
    'm=$0; while [ "$1" != -- ]; do "$m" -n --bind "$1" "$2" && "$m" -n -o remount,bind,ro "$2" '
    '|| { echo "agent-fleet: cannot guard $2" >&2; exit 126; }; shift 2; done; shift; exec "$@"'
)
GUARDS_ENV = "AGENT_FLEET_TURN_GUARDS"  # the fork server's child reads its guards here (SOURCE\0TARGET\0...)
_EMPTY_TRUST = '{\n "version": 1,\n "files": {}\n}\n'


def namespace_prefix(
    unshare: str, uid: int | None = None, gid: int | None = None, guards: Sequence[tuple[str, str]] = ()
) -> list[str]:
    """argv that runs the rest of the command line as init of a new user + PID namespace with its own /proc,
    dying with the caller (``--kill-child``), then in a nested user namespace mapped back to the caller's ids (so
    the program sees its own uid, and the /proc mount is locked: it cannot be unmounted to reveal the host's).
    ``guards`` (see ``home_guards``) are bound read-only in between, where they can no longer be undone."""
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid
    pairs = [x for pair in guards for x in pair]
    guard = ["/bin/sh", "-c", _GUARD, _mount_tool() or "mount", *pairs, "--"] if guards else []
    return [
        unshare, "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "--kill-child", "--",
        *guard, unshare, "--user", f"--map-user={uid}", f"--map-group={gid}", "--",
    ]  # fmt: skip


def home_guards(home: Path) -> list[tuple[str, str]]:
    """What a turn in namespaces must not touch in the fleet home (same user as the server): the HTTP bearer token
    (``/dev/null`` over it: reads are empty) and the catalog trust file (bound over itself read-only: readable, not
    writable, not replaceable, not removable). Both are created first if missing (a token file nobody uses yet, an
    empty trust list), so a turn cannot plant them either. Empty when ``mount`` is missing (doctor says so)."""
    from agent_fleet_mcp.http_auth import TOKEN_FILE, load_or_create_token
    from agent_fleet_mcp.trust import trust_file

    if _mount_tool() is None or not home.is_dir():
        return []
    token, trust = home / TOKEN_FILE, trust_file(home)
    with contextlib.suppress(OSError, ValueError):
        if not token.exists():
            load_or_create_token(home, {})
    with contextlib.suppress(FileExistsError):
        fd = os.open(trust, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, _EMPTY_TRUST.encode())
        finally:
            os.close(fd)
    return [(src, str(t)) for src, t in (("/dev/null", token), (str(trust), trust)) if t.is_file()]


_mount_found: list[str] = []  # mount(8)'s path, once found


def _mount_tool() -> str | None:
    """Where ``mount`` is; looked for until found, then remembered. A wave of 20 spawns each walked PATH for it
    (~20 stats, each one a hand-over of the server's interpreter lock among the spawn threads)."""
    if not _mount_found and (found := shutil.which("mount")) is not None:
        _mount_found.append(found)
    return _mount_found[0] if _mount_found else None


def choose(env: Mapping[str, str] | None = None, *, fresh: bool = False) -> Containment:
    """The containment for a turn whose environment is ``env`` (``AGENT_FLEET_CONTAINMENT=pidns|cgroup|pgroup``
    there forces that mode), else the strongest this process can use (``fresh``: probed now with ``env``'s PATH)."""
    env = os.environ if env is None else env
    best = detect_on(env.get("PATH") or os.defpath) if fresh else detect()
    forced = env.get(MODE_ENV, "").strip().lower()
    if forced == "pgroup":
        return Containment("pgroup", None, (f"{MODE_ENV}=pgroup forces the last resort",))
    if forced == "pidns" and best.mode == "pidns":
        return Containment("pidns", best.unshare, (f"cgroup: {MODE_ENV}=pidns forces namespaces only",))
    if forced == "cgroup" and best.cgroup_base is not None:
        return Containment("cgroup", None, (f"pidns: {MODE_ENV}=cgroup forces the cgroup only",), best.cgroup_base)
    return best


_detect_lock = threading.Lock()


def detect() -> Containment:
    """The strongest containment this process can use (probed once; never raises). The first wave of turns asks
    from many spawn threads at once: they wait for one probe instead of each running its own (19 ``unshare``
    subprocesses and cgroup probes in the first 20-turn wave after a server start, before)."""
    with _detect_lock:
        return _detected()


@functools.cache
def _detected() -> Containment:
    return detect_on(os.environ.get("PATH") or os.defpath)


def detect_on(path: str) -> Containment:
    """The strongest containment with the programs found on ``path`` (uncached): namespaces and a cgroup each
    where they work, both when both do."""
    from agent_fleet_mcp.runners import cgroups

    base, cg_why = cgroups.probe()
    why_not: list[str] = [] if base is not None else [f"cgroup: {cg_why}"]
    unshare = shutil.which("unshare", path=path)
    ns_why = "util-linux `unshare` is not on PATH" if unshare is None else _probe(unshare)
    if ns_why is None:
        return Containment("pidns", unshare, tuple(why_not), base)
    why_not.insert(0, f"pidns: {ns_why}")
    return Containment("cgroup" if base is not None else "pgroup", None, tuple(why_not), base)


def _probe(unshare: str) -> str | None:
    """None when a turn namespace can be made here; else why not, in words a user can act on."""
    try:
        res = subprocess.run(
            [*namespace_prefix(unshare), "/bin/true"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, timeout=PROBE_TIMEOUT_S, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return f"`unshare` could not run: {exc}"
    if res.returncode == 0:
        return None
    err = res.stderr.decode(errors="replace").strip().splitlines()
    detail = err[-1] if err else f"exit code {res.returncode}"
    return f"{userns_blocker() or 'user namespaces are not available'} ({detail})"


def userns_blocker() -> str | None:
    """The kernel setting that forbids unprivileged user namespaces here, if one does."""
    settings = {
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns": (
            "1", "user namespaces blocked by AppArmor (kernel.apparmor_restrict_unprivileged_userns=1)"),
        "/proc/sys/kernel/unprivileged_userns_clone": (
            "0", "user namespaces disabled (kernel.unprivileged_userns_clone=0)"),
        "/proc/sys/user/max_user_namespaces": ("0", "user namespaces disabled (user.max_user_namespaces=0)"),
    }  # fmt: skip
    for path, (bad, why) in settings.items():
        with contextlib.suppress(OSError):
            if Path(path).read_text().strip() == bad:
                return why
    return None


# -- inside a forked child (the fork server's) ----------------------------------------------------------------


def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)  # the interpreter's own symbols: libc (no ldconfig lookup per turn)


def _check(result: int, what: str) -> None:
    if result != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _map_ids(inside_uid: int, outside_uid: int, inside_gid: int, outside_gid: int) -> None:
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{inside_uid} {outside_uid} 1")
    Path("/proc/self/gid_map").write_text(f"{inside_gid} {outside_gid} 1")


def _guard(libc: Any, source: str, target: str) -> None:
    """Bind ``source`` read-only over ``target`` (keeping the flags the kernel locks in a user namespace)."""
    _check(libc.mount(source.encode(), target.encode(), None, MS_BIND, None), f"mount(bind {target})")
    f = os.statvfs(target).f_flag
    keep = (f & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME)) | (MS_RELATIME if f & 4096 else 0)
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY | keep
    _check(libc.mount(None, target.encode(), None, flags, None), f"mount(remount ro {target})")


def enter_turn_namespaces(guards: Sequence[tuple[str, str]] = ()) -> int:
    """Make the calling single-threaded process the outer process of a turn namespace (as ``namespace_prefix``).

    Returns 0 in the namespace's init (PID 1 there, with its own locked /proc, the caller's uid/gid): the caller
    goes on to run the turn. In the outer process it never returns: it waits for the init and ``_exit``s with its
    status (128+N for signal N), ignoring SIGTERM/SIGINT/SIGHUP meanwhile (a group kill reaches the init itself;
    SIGKILL of the outer process takes the init, and so the whole namespace, with it). Raises ``OSError`` before
    anything irreversible happened when the kernel refuses the namespaces.
    """
    libc = _libc()
    uid, gid = os.getuid(), os.getgid()
    _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS), "unshare(user, pid, mount)")
    _map_ids(0, uid, 0, gid)
    alive_r, alive_w = os.pipe()  # the init checks that its parent still lives once its death signal is set
    pid = os.fork()
    if pid == 0:
        try:
            os.close(alive_w)
            _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
            if select.select([alive_r], [], [], 0)[0]:  # EOF: the outer process already died
                os._exit(137)
            os.close(alive_r)
            _set_up_init(libc, guards, uid, gid)
        except BaseException:
            os._exit(127)
        return 0
    os.close(alive_r)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            os._exit(127)
    code = os.waitstatus_to_exitcode(status)
    os._exit(128 - code if code < 0 else code)


def _set_up_init(libc: Any, guards: Sequence[tuple[str, str]], uid: int, gid: int) -> None:
    """In the init of a new user (mapped root) + PID + mount namespace: its own /proc, the guards bound read-only,
    then one user namespace further down, mapped back to ``uid``/``gid`` (which locks the /proc mount)."""
    _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount(/, private)")
    _check(libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "mount(/proc)")
    for source, target in guards:
        _guard(libc, source, target)
    _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare(user, mount)")  # locks the /proc mount
    _map_ids(uid, 0, gid, 0)


_SYS_CLONE = {"x86_64": 56, "aarch64": 220}.get(platform.machine())  # clone(2): the same arguments, all 0 but flags


def can_clone() -> bool:
    """``fork_into_turn_namespaces`` is available on this machine (Linux on x86_64 or aarch64)."""
    return _SYS_CLONE is not None and sys.platform == "linux"


def fork_into_turn_namespaces() -> int:
    """``os.fork()`` whose child starts as init of a new user + PID + mount namespace (one clone(2)). For the fork
    server, single-threaded: the child then calls ``init_turn_namespaces`` and runs the turn as PID 1. One process
    per turn where ``enter_turn_namespaces`` after a fork makes two (an outer one that waits, and the init), each
    copying and tearing down the fork server's page tables (docs/forkserver.md has the cost). CPython's own fork
    hooks run around it (``PyOS_BeforeFork``/``AfterFork_*``, as ``os.fork`` does; glibc >= 2.34 sends a signal to
    the calling thread by its kernel tid, so nothing stale is left that a turn uses). Raises ``OSError`` when the
    kernel refuses (then nothing was started)."""
    import ctypes

    if _SYS_CLONE is None:
        raise OSError(errno.ENOSYS, f"no clone(2) number known for {platform.machine()}")
    python, libc = ctypes.pythonapi, ctypes.PyDLL(None, use_errno=True)  # PyDLL: the GIL stays held, as in os.fork
    libc.syscall.restype = ctypes.c_long
    flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | signal.SIGCHLD
    python.PyOS_BeforeFork()
    pid = int(libc.syscall(ctypes.c_long(_SYS_CLONE), ctypes.c_ulong(flags), None, None, None, None))
    if pid == 0:
        python.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    python.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone(user, pid, mount): {os.strerror(err)}")
    return pid


def init_turn_namespaces(guards: Sequence[tuple[str, str]], uid: int, gid: int) -> None:
    """In the child of ``fork_into_turn_namespaces`` (PID 1 of its namespace, root of its user namespace until its
    ids are mapped): map ``uid``/``gid`` (the parent's), then set up as ``enter_turn_namespaces``'s init."""
    map_turn_ids(uid, gid)
    set_up_turn_init(guards, uid, gid)


def map_turn_ids(uid: int, gid: int) -> None:
    """The first half of ``init_turn_namespaces``: root of the new user namespace is ``uid``/``gid`` outside. A
    spare child of the fork server does this when it is made, and the second half when it gets its turn."""
    _map_ids(0, uid, 0, gid)


def set_up_turn_init(guards: Sequence[tuple[str, str]], uid: int, gid: int) -> None:
    """The second half of ``init_turn_namespaces``: its own /proc, the guards, then locked one user namespace down.
    Done when the turn is known, so the guards are the files as they are at the turn's start, and the mount table
    stops following the host's only then (until this, the copy of a namespace made by a user follows its mounts)."""
    _set_up_init(_libc(), guards, uid, gid)


def make_undumpable() -> None:
    """PR_SET_DUMPABLE 0: a process of the same uid without CAP_SYS_PTRACE over us (any tool command in its own
    user namespace, or any non-root one) cannot read our /proc/<pid>/environ, mem or fds. Best effort."""
    with contextlib.suppress(OSError, AttributeError):
        _libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
