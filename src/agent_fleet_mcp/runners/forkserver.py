"""The preloaded fork server ("zygote"): one daemon per fleet home that imported a worker's heavy modules once and
forks one worker per turn, for ``process.spawn`` (plans with a ``preload`` entry). Design: docs/forkserver.md.

Client (``spawn``, ``status``, ``stop``, ``launch``): one length-prefixed JSON request per connection to
``<home>/forkserver.sock``; a spawn carries the worker's stdin/stdout/stderr fds (SCM_RIGHTS) and gets the child's
pid, which it acknowledges: the child runs only after that ack, so a client that gave up never leaves a copy running.
Daemon: runners/zygote.py (single-threaded selector loop; forks whitelisted entries only, reaps its children and
writes their exit files; retires when stale, stopped, unlinked or idle).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import psutil

import agent_fleet_mcp
from agent_fleet_mcp.private import open_private, private_dirs, write_private
from agent_fleet_mcp.runners import preload_pause

# The only code a zygote runs: "module:function" -> called as function(args) in the forked child. The module may
# define ``preload()``, called once at zygote start to import/warm everything a turn needs.
ENTRIES: frozenset[str] = frozenset({"agent_fleet_mcp.worker.__main__:main"})

SOCKET_NAME = "forkserver.sock"
LOCK_NAME = "forkserver.lock"
LOG_NAME = "forkserver.log"
DISABLE_ENV = "AGENT_FLEET_FORKSERVER"  # "0" in the plan's env: spawn the plain way
IDLE_ENV = "AGENT_FLEET_FORKSERVER_IDLE_S"
DEFAULT_IDLE_S = 600.0
REACH_TIMEOUT_S = 3.0  # connect (+ start) + fork, else the caller spawns the plain way
RETRY_AFTER_FAILURE_S = 60.0  # after a zygote failed to come up for a home, go plain at once for this long
BOOT_WAIT_S = 20.0  # a spawn waits this long for a zygote that is alive and still preloading (a busy machine)
WARM_ENV = "AGENT_FLEET_FORKSERVER_WARM"  # "0": the server does not start the zygote at its own start
SPARES_ENV = "AGENT_FLEET_FORKSERVER_SPARES"  # children forked ahead of the spawns that will use them (zygote.py)
SPARES_BY_DEFAULT_AT_MOST = 32  # by default one per slot of the concurrency cap, at most this many (~8 MB each)
MAX_SPARES = 64
YIELD_NICE = 19  # a preloading zygote's CPU priority while our other turns start and none waits for it
LOG_MAX_BYTES = 5_000_000

DAEMON_MODULE = "agent_fleet_mcp.runners.zygote"  # appears in the daemon's command line (see process.py)

_HEADER = struct.Struct("!I")
_MAX_MESSAGE = 16 * 1024 * 1024
_PACKAGE_DIR = Path(agent_fleet_mcp.__file__).resolve().parent
_down_until: dict[Path, float] = {}  # home -> monotonic time before which we do not try its zygote again
_launch_lock = threading.Lock()  # concurrent spawns of one process start one zygote, not one each
_launched_at: dict[Path, float] = {}  # home -> monotonic time of this process's last launch

# `python -c LAUNCHER --home H ...`: fork at once (the caller reaps the short-lived parent), then serve.
_LAUNCHER = (
    "import os, sys\n"
    "if os.fork():\n"
    "    os._exit(0)\n"
    "from agent_fleet_mcp.runners.zygote import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


class Unavailable(Exception):
    """The zygote could not take this spawn; the caller spawns the plain way. The message says why."""


# -- shared ---------------------------------------------------------------------------------------------------


def socket_path(home: Path) -> Path:
    return home / SOCKET_NAME


@functools.cache
def install_id() -> str:
    """Which install a process runs: package version, interpreter and the package's folder. A spawn carries the
    server's; a zygote of another install retires (two installs sharing a home: correct, if slow)."""
    return hashlib.sha256(f"{agent_fleet_mcp.__version__}\0{sys.executable}\0{_PACKAGE_DIR}".encode()).hexdigest()[:16]


def code_stamp() -> str:
    """Identity of the code a zygote would run: package version, interpreter, the (path, mtime, size) of every
    module of the package, and the installed distributions of the site-packages folders (name and mtime of each
    ``*.dist-info``: an install, upgrade or reinstall replaces it). Not the folder's own mtime: importing a
    top-level module creates ``site-packages/__pycache__``, which changed it on the first start after a sync and
    retired the zygote at once as stale. ~0.5 ms."""
    h = hashlib.sha256(f"{agent_fleet_mcp.__version__}\0{sys.executable}\0{_PACKAGE_DIR}\0".encode())
    stack = [str(_PACKAGE_DIR)]
    files: list[str] = []
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != "__pycache__":
                        stack.append(entry.path)
                elif entry.name.endswith(".py"):
                    st = entry.stat()
                    files.append(f"{entry.path}\0{st.st_mtime_ns}\0{st.st_size}")
    for site in sorted({p for p in sys.path if p.endswith("site-packages")}):
        with contextlib.suppress(OSError), os.scandir(site) as it:
            for entry in it:
                if entry.name.endswith((".dist-info", ".egg-info", ".pth")):
                    with contextlib.suppress(OSError):
                        files.append(f"{entry.path}\0{entry.stat(follow_symlinks=False).st_mtime_ns}")
    h.update("\n".join(sorted(files)).encode())
    return h.hexdigest()[:16]


def current_umask() -> int:
    """This process's umask, read without changing it (os.umask would, racing other threads' file creation)."""
    with contextlib.suppress(OSError, ValueError, StopIteration), open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("Umask:")).split()[1], 8)
    return 0o022


def write_exit_file(path: Path, code: int) -> None:
    """Like the sh wrapper: ``$exit.tmp`` then an atomic rename."""
    tmp = path.with_name(path.name + ".tmp")
    write_private(tmp, f"{code}\n")
    os.replace(tmp, path)


@contextlib.contextmanager
def sock_address(path: Path) -> Generator[str]:
    """A unix socket address for ``path``; long paths (> 100 bytes: deep pytest/tmp homes) go through the folder's
    fd as ``/proc/self/fd/N/name``."""
    if len(os.fsencode(path)) < 100:
        yield str(path)
        return
    dirfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{dirfd}/{path.name}"
    finally:
        os.close(dirfd)


def send_message(sock: socket.socket, message: Mapping[str, Any], fds: Sequence[int] = ()) -> None:
    data = json.dumps(message).encode()
    data = _HEADER.pack(len(data)) + data
    sent = socket.send_fds(sock, [data], list(fds)) if fds else sock.send(data)
    if sent < len(data):
        sock.sendall(data[sent:])


def recv_message(sock: socket.socket, *, max_fds: int = 0) -> tuple[dict[str, Any], list[int]]:
    """One message (and the fds that came with it). Raises EOFError when the peer closed first."""
    fds: list[int] = []
    buf = bytearray()
    need = _HEADER.size
    try:
        while len(buf) < need:
            if max_fds and not buf:  # the fds travel with the first bytes
                chunk, got, _flags, _addr = socket.recv_fds(sock, 65536, max_fds)
                fds += got
            else:
                chunk = sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            buf += chunk
            if need == _HEADER.size and len(buf) >= _HEADER.size:
                size = _HEADER.unpack_from(buf)[0]
                if size > _MAX_MESSAGE:
                    raise EOFError(f"message of {size} bytes refused")
                need += size
        message = cast("dict[str, Any]", json.loads(bytes(buf[_HEADER.size : need])))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return message, fds


# -- client ---------------------------------------------------------------------------------------------------


def spawn(
    home: Path,
    *,
    entry: str,
    args: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    exit_file: Path,
    stdio: tuple[int, int, int],
    timeout_s: float | None = None,
) -> int:
    """Fork ``entry(args)`` in the home's zygote (started if needed) with these stdin/stdout/stderr fds, in its own
    session, cwd and environment; its exit status lands in ``exit_file``. Returns the pid. Raises ``Unavailable``
    when the zygote cannot take it within ``timeout_s``; then nothing was started."""
    if entry not in ENTRIES:
        raise Unavailable(f"{entry!r} is not a fork server entry point")
    now = time.monotonic()
    if _down_until.get(home, 0.0) > now:
        raise Unavailable("the zygote failed to start recently")
    deadline = now + (REACH_TIMEOUT_S if timeout_s is None else timeout_s)
    boot_deadline = max(deadline, now + BOOT_WAIT_S)
    request = {
        "op": "spawn", "install": install_id(), "entry": entry, "args": list(args), "env": dict(env),
        "cwd": str(cwd), "exit": str(exit_file), "umask": current_umask(),
    }  # fmt: skip
    launched, launches, restarted, hurried = False, 0, False, False
    while True:
        # a zygote that is alive and preloading (seconds on a busy machine) is waited for, up to BOOT_WAIT_S
        booting = preloading(home)
        if booting and not hurried:  # a turn waits for it now: it no longer gives way to other turns
            hurried = True
            hurry(home)
        remaining = (boot_deadline if booting else deadline) - time.monotonic()
        if remaining <= 0:
            if not booting:
                _down_until[home] = time.monotonic() + RETRY_AFTER_FAILURE_S
            raise Unavailable(
                f"the zygote was still preloading after {boot_deadline - now:.1f} s" if booting
                else f"the zygote did not answer within {deadline - now:.1f} s"
            )  # fmt: skip
        try:
            with _connect(home, remaining) as sock:
                send_message(sock, {**request, "deadline": time.time() + remaining}, stdio)
                reply, _ = recv_message(sock)
                if "pid" in reply:
                    send_message(sock, {"ack": True})  # the commit point: the child runs from here on
                    _down_until.pop(home, None)
                    return int(reply["pid"])
        except (FileNotFoundError, ConnectionRefusedError):  # nobody listens: start one, wait for it to bind
            if not launched and launches < 2:
                launched, launches = True, launches + 1
                _launch_once(home, env, remaining)
            time.sleep(0.01)
            continue
        except (EOFError, ConnectionResetError, BrokenPipeError):  # it exited meanwhile (retired, crashed)
            launched = False
            time.sleep(0.01)
            continue
        except TimeoutError:
            continue  # the loop's deadline check gives up
        if reply.get("stale") and not restarted:  # it retired; start one with the current code
            restarted, launched = True, False
            continue
        raise Unavailable(str(reply.get("error", "refused")))


def preloading(home: Path) -> bool:
    """Whether the home's zygote is alive and still importing its entries (its lock file says so, zygote.py)."""
    try:
        pid_text, _, state = (home / LOCK_NAME).read_text().partition(" ")
        return state.strip() == "preloading" and psutil.pid_exists(int(pid_text))
    except (OSError, ValueError):
        return False


def session_nice(pid: int) -> int | None:
    """The nice value of ``pid``'s autogroup (its session's share of the CPU), or None where the kernel does not
    schedule by session (no ``/proc/PID/autogroup``, or ``kernel.sched_autogroup_enabled`` is 0)."""
    try:
        if Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() != "1":
            return None
        # "/autogroup-123 nice 19"
        return int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def set_session_nice(pid: int, nice: int, *, attempts: int = 5) -> bool:
    """Set the nice value of ``pid``'s autogroup; True once it holds ``nice``. Where the kernel schedules by session
    (autogroup), a session's nice weighs it against the other sessions, so a lone daemon at 19 takes only idle CPU.
    Raising it, and lowering it back to 0, needs no privilege (only a negative value does). The kernel takes one
    change per 100 ms from a process without CAP_SYS_ADMIN (EAGAIN): retried that long. False where there is no
    autogroup, or the process is gone."""
    for attempt in range(attempts):
        current = session_nice(pid)
        if current is None:
            return False
        if current == nice:
            return True
        try:
            Path(f"/proc/{pid}/autogroup").write_text(str(nice))
        except BlockingIOError:  # EAGAIN: the rate limit
            if attempt < attempts - 1:
                time.sleep(0.05)
        except OSError:
            return False
    return session_nice(pid) == nice


def zygote_pid(home: Path, *, state: str | None = None) -> int | None:
    """The pid the home's lock file names, if that process is a zygote (a dead zygote's pid may be anyone's now)
    and, with ``state``, the lock says it is in that state ("preloading", "serving")."""
    try:
        pid_text, _, found = (home / LOCK_NAME).read_text().partition(" ")
        if state is not None and found.strip() != state:
            return None
        pid = int(pid_text)
        return pid if DAEMON_MODULE in " ".join(psutil.Process(pid).cmdline()) else None
    except (OSError, ValueError, psutil.Error):
        return None


def yield_preload(home: Path) -> bool:
    """A turn that does not need the fork server starts (a claude-code, codex or gemini CLI, ~1 s of CPU each): a
    zygote still preloading (~2 s of CPU, most of it ``import anthropic``) gives way to it, until a turn waits for
    it (``hurry``) or it serves: its imports pause while the machine is busy (runners/preload_pause.py), and the
    rest runs at nice 19. Best effort; True when a preloading zygote was asked (not when a turn waits for it)."""
    pid = zygote_pid(home, state="preloading")
    if pid is None or preload_pause.hurried(home):
        return False
    preload_pause.request(home)
    set_session_nice(pid, YIELD_NICE, attempts=1)
    return True


def hurry(home: Path) -> bool:
    """A spawn waits for the home's zygote, which is still preloading: its preload goes on at normal priority and
    pauses no more, in case it gave way to other turns (``yield_preload``). True when it holds normal priority."""
    pid = zygote_pid(home, state="preloading")
    if pid is None:
        return False
    preload_pause.hurry(home)
    return set_session_nice(pid, 0)


def _launch_once(home: Path, env: Mapping[str, str], timeout_s: float, *, spares: int | None = None) -> None:
    """Launch a zygote unless this process launched one for the home moments ago (concurrent spawns share it)."""
    with _launch_lock:
        if time.monotonic() - _launched_at.get(home, -1e9) < REACH_TIMEOUT_S:
            return
        launch(home, env=env, idle_s=_idle_from(env), timeout_s=timeout_s, spares=spares)
        _launched_at[home] = time.monotonic()


def warm(home: Path, env: Mapping[str, str], *, spares: int | None = None) -> bool:
    """Start the home's zygote in the background unless one answers already, so the first turn finds it warm
    (called by the server at its start, in a worker thread). Returns whether it launched one."""
    if status(home, timeout_s=0.5) is not None or preloading(home):
        return False
    _launch_once(home, env, REACH_TIMEOUT_S, spares=spares)
    return True


def warm_wanted(env: Mapping[str, str]) -> bool:
    """Whether a server with this environment warms the fork server at its start: not disabled
    (``AGENT_FLEET_FORKSERVER=0`` or ``AGENT_FLEET_FORKSERVER_WARM=0``) and fork and unix sockets exist here."""
    off = env.get(DISABLE_ENV, "").strip() == "0" or env.get(WARM_ENV, "").strip() == "0"
    return not off and hasattr(os, "fork") and hasattr(socket, "AF_UNIX") and sys.platform.startswith("linux")


def status(home: Path, *, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """The running zygote's pid, stamp and live children, or None when none answers."""
    try:
        with _connect(home, timeout_s) as sock:
            send_message(sock, {"op": "status"})
            return recv_message(sock)[0]
    except (OSError, EOFError):
        return None


def stop(home: Path, *, timeout_s: float = 5.0) -> int | None:
    """Tell the home's zygote to stop taking spawns and exit once its children are reaped; wait up to ``timeout_s``
    for it to be gone. Returns its pid, or None when none was running. A zygote still preloading answers nothing
    until it has (seconds on a busy machine): it has no children yet, and SIGTERM ends it."""
    if (pid := zygote_pid(home, state="preloading")) is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # its handler (installed once serving, if it got that far) retires it too
        _wait_gone(pid, timeout_s)
        return pid
    try:
        with _connect(home, timeout_s) as sock:
            send_message(sock, {"op": "stop"})
            pid = int(recv_message(sock)[0]["pid"])
    except (OSError, EOFError):
        return None
    _wait_gone(pid, timeout_s)
    return pid


def launch(
    home: Path, *, env: Mapping[str, str], idle_s: float, timeout_s: float = REACH_TIMEOUT_S, spares: int | None = None,
    spare_idle_cores: float | None = None,
) -> None:
    """Start a zygote for ``home`` in the background (it exits at once if another one holds the home's lock).
    ``spares``: how many children it keeps forked ahead (default: from ``env``, ``spares_from``);
    ``spare_idle_cores``: the idle CPU it waits for before making them (default: spare_refill.IDLE_CORES)."""
    from agent_fleet_mcp.runners.base import scrubbed_env

    logs = home / "logs"
    private_dirs(logs)
    log_file = logs / LOG_NAME
    with contextlib.suppress(OSError):
        if log_file.stat().st_size > LOG_MAX_BYTES:
            os.replace(log_file, log_file.with_name(LOG_NAME + ".1"))
    argv = [sys.executable, "-c", _LAUNCHER, "--home", str(home), "--idle-s", repr(float(idle_s)),
            "--spares", str(spares_from(env) if spares is None else spares),
            *([] if spare_idle_cores is None else ["--spare-idle-cores", repr(float(spare_idle_cores))]),
            "--own-session"]  # fmt: skip  (start_new_session below)
    with open_private(log_file, "ab") as err:
        launcher = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, cwd=home,
            env=scrubbed_env(env), start_new_session=True, close_fds=True,
        )  # fmt: skip
    try:
        launcher.wait(timeout=max(timeout_s, 0.5))
    except subprocess.TimeoutExpired:  # it is stuck before its fork: not worth keeping
        launcher.kill()
        launcher.wait()


def spares_from(env: Mapping[str, str], *, cap: int | None = None) -> int:
    """How many spares a zygote keeps: ``AGENT_FLEET_FORKSERVER_SPARES`` (0 to MAX_SPARES) when set to a number,
    else one per turn the server may run at once (``cap``, else ``AGENT_FLEET_MAX_CONCURRENT``, else its default
    of 8), at most SPARES_BY_DEFAULT_AT_MOST: a wave up to the cap then starts without a fork."""
    from agent_fleet_mcp.config import DEFAULT_MAX_CONCURRENT

    with contextlib.suppress(KeyError, ValueError):
        return min(MAX_SPARES, max(0, int(env[SPARES_ENV])))
    if cap is None:
        try:
            cap = int(env.get("AGENT_FLEET_MAX_CONCURRENT", DEFAULT_MAX_CONCURRENT))
        except ValueError:
            cap = DEFAULT_MAX_CONCURRENT
    return min(SPARES_BY_DEFAULT_AT_MOST, max(0, cap))


def _idle_from(env: Mapping[str, str]) -> float:
    try:
        return max(0.1, float(env.get(IDLE_ENV, DEFAULT_IDLE_S)))
    except ValueError:
        return DEFAULT_IDLE_S


@contextlib.contextmanager
def _connect(home: Path, timeout_s: float) -> Generator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(max(timeout_s, 0.01))
        with sock_address(socket_path(home)) as addr:
            sock.connect(addr)
        yield sock
    finally:
        sock.close()


def _wait_gone(pid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.Error:
            return
        time.sleep(0.02)
