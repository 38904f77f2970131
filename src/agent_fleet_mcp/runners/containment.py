"""The boundary around a turn: which kernel containment this machine allows, and how to enter it.

Modes, strongest first (docs/containment.md):

- ``pidns``: every turn runs in its own user + PID namespace with its own ``/proc``. The namespace's init is the
  turn's last process: when it exits (the program ended) or dies (its outer process was killed: ``--kill-child``),
  the kernel kills everything else in the namespace, whatever session or process group it moved to. The program
  runs one user namespace further down, so the ``/proc`` mount it sees is locked: it cannot unmount it to look at
  the server's (or any ancestor's) ``/proc/<pid>/environ``. Needs util-linux ``unshare`` and user namespaces.
- ``pgroup``: the turn's own session/process group, killed as a whole (runners/process.py ``kill_group``), plus the
  descendants that left the group seen before the kill. The last resort: a double fork that was reparented, or a
  background job left when the turn ended normally, escapes it, and ``/proc`` shows the ancestors.

``detect()`` probes once per process (a ~30 ms ``unshare ... /bin/true``) and says why a stronger mode is not
available; ``AGENT_FLEET_CONTAINMENT=pgroup`` forces the last resort (diagnosis, comparison). The fork server's
child enters the same namespaces with ``enter_turn_namespaces`` (unshare(2) through ctypes: it is single-threaded).
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import shutil
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Mode = Literal["pidns", "pgroup"]
MODE_ENV = "AGENT_FLEET_CONTAINMENT"  # "pgroup": use the last resort even where namespaces work
PROBE_TIMEOUT_S = 5.0

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 0x4000, 0x40000
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4


@dataclass(frozen=True)
class Containment:
    mode: Mode
    unshare: str | None  # the util-linux binary (pidns mode)
    why_not: tuple[str, ...] = ()  # why each stronger mode is not in use

    def describe(self) -> str:
        if self.mode == "pidns":
            return "pidns: a user + PID namespace with its own /proc per turn (and per bash-tool command)"
        return "pgroup: process-group kill only (the last resort)"


def namespace_prefix(unshare: str, uid: int | None = None, gid: int | None = None) -> list[str]:
    """argv that runs the rest of the command line as init of a new user + PID namespace with its own /proc,
    dying with the caller (``--kill-child``), then in a nested user namespace mapped back to the caller's ids (so
    the program sees its own uid, and the /proc mount is locked: it cannot be unmounted to reveal the host's)."""
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid
    return [
        unshare, "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "--kill-child", "--",
        unshare, "--user", f"--map-user={uid}", f"--map-group={gid}", "--",
    ]  # fmt: skip


def choose(env: Mapping[str, str] | None = None, *, fresh: bool = False) -> Containment:
    """The containment for a turn whose environment is ``env`` (``AGENT_FLEET_CONTAINMENT=pgroup`` there forces the
    last resort), else the strongest this process can use (``fresh``: probed now with ``env``'s PATH)."""
    env = os.environ if env is None else env
    if env.get(MODE_ENV, "").strip().lower() == "pgroup":
        return Containment("pgroup", None, (f"{MODE_ENV}=pgroup forces the last resort",))
    return detect_on(env.get("PATH") or os.defpath) if fresh else detect()


@functools.cache
def detect() -> Containment:
    """The strongest containment this process can use (probed once; never raises)."""
    return detect_on(os.environ.get("PATH") or os.defpath)


def detect_on(path: str) -> Containment:
    """The strongest containment with the programs found on ``path`` (uncached)."""
    unshare = shutil.which("unshare", path=path)
    if unshare is None:
        return Containment("pgroup", None, ("pidns: util-linux `unshare` is not on PATH",))
    why = _probe(unshare)
    if why is None:
        return Containment("pidns", unshare)
    return Containment("pgroup", None, (f"pidns: {why}",))


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


def enter_turn_namespaces() -> int:
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
            _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount(/, private)")
            _check(libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "mount(/proc)")
            _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare(user, mount)")  # locks the /proc mount
            _map_ids(uid, 0, gid, 0)
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


def make_undumpable() -> None:
    """PR_SET_DUMPABLE 0: a process of the same uid without CAP_SYS_PTRACE over us (any tool command in its own
    user namespace, or any non-root one) cannot read our /proc/<pid>/environ, mem or fds. Best effort."""
    with contextlib.suppress(OSError, AttributeError):
        _libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
