"""The fork server's daemon side ("zygote"): one per fleet home; imports the whitelisted entries' heavy modules
once, then forks one worker per request. Single-threaded selector loop (SIGCHLD through a wakeup fd), so forking is
safe; reaps its children and writes their exit files; retires when stale, stopped, unlinked or idle. The client side
and the wire protocol live in runners/forkserver.py; design in docs/forkserver.md.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gc
import importlib
import os
import random
import selectors
import signal
import socket
import struct
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, cast

from agent_fleet_mcp.runners import cgroups, containment
from agent_fleet_mcp.runners.forkserver import (
    DEFAULT_IDLE_S,
    ENTRIES,
    LOCK_NAME,
    code_stamp,
    install_id,
    recv_message,
    send_message,
    session_nice,
    set_session_nice,
    sock_address,
    socket_path,
    status,
    write_exit_file,
)
from agent_fleet_mcp.runners.started import DUPLICATE_EXIT
from agent_fleet_mcp.runners.started import create as create_started_marker

# -- daemon ---------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -c LAUNCHER --home H [--idle-s S]`` (see ``launch``): serve until retired or idle. 1 if it crashed."""
    p = argparse.ArgumentParser(prog="agent-fleet forkserver")
    p.add_argument("--home", required=True, type=Path)
    p.add_argument("--idle-s", type=float, default=DEFAULT_IDLE_S)
    p.add_argument("--own-session", action="store_true", help="we run in a session of our own (launch starts us in "
                   "one): its CPU priority, which turns may lower while we preload, is ours to reset")  # fmt: skip
    args = p.parse_args(argv)
    zygote = _Zygote(args.home.resolve(), args.idle_s, own_session=args.own_session)
    try:
        if not zygote.open():
            return 0
        zygote.loop()
    except Exception:
        _log("crashed", error=traceback.format_exc())
        return 1
    finally:
        zygote.close()
    return 0


def _log(event: str, **fields: Any) -> None:
    """One line to the zygote's stderr: the home's logs/forkserver.log."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    extra = " ".join(f"{k}={v}" for k, v in fields.items())
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"{stamp} pid={os.getpid()} {event} {extra}\n".rstrip() + "\n")
        sys.stderr.flush()


CLONE_ENV = "AGENT_FLEET_FORKSERVER_CLONE"  # "0" in a plan's env: fork, then enter the namespaces (the old path)
READY_TIMEOUT_S = 5.0  # fork -> the child says it is set up
ACK_TIMEOUT_S = 10.0  # pid sent -> the client's ack (waiting blocks no other spawn; a client acks at once)


@dataclass
class _Pending:
    """A forked child between its fork and the client's ack. The loop serves other requests meanwhile, so many
    spawns at once are not one round trip (child ready, pid sent, ack back) after another."""

    conn: socket.socket
    pid: int
    exit_file: Path
    entry: str
    cwd: str
    ready_r: int
    go_w: int
    deadline: float
    ready: bytes = b""
    acking: bool = False  # the pid was sent: waiting for the ack on conn
    cgroup: str | None = None  # a child in its own namespaces is moved into its turn's cgroup by us, before the go


class _Zygote:
    def __init__(self, home: Path, idle_s: float, *, own_session: bool = False) -> None:
        self.home, self.idle_s = home, idle_s
        self.path = socket_path(home)
        self.lock_fd = -1
        self.listener: socket.socket | None = None
        self.inode = 0
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = socket.socketpair()
        self.entries: dict[str, Callable[[list[str]], int]] = {}
        self.children: dict[int, Path | None] = {}  # pid -> exit file (None: aborted before it ran)
        self.pending: dict[int, _Pending] = {}  # by pid: forked, not acked yet
        self.stamp = ""
        self.code_now: str | None = None  # the code on disk, for the spawns of one batch of connections
        self.retiring = False
        self.terminate = False
        self.last_active = time.monotonic()
        self.contain = False
        self.own_session = own_session

    # setup / teardown
    def open(self) -> bool:
        os.chdir(self.home)
        if not self._lock():
            _log("not_started", reason="another zygote holds the lock")
            return False
        self._state("preloading")  # before binding: a client that reaches us knows to wait (forkserver.preloading)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a dead zygote's socket (we hold the lock: no live one owns it)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        umask = os.umask(0o177)  # born 0600 (single-threaded here: the umask is ours to borrow)
        try:
            with sock_address(self.path) as addr:
                listener.bind(addr)
        finally:
            os.umask(umask)
        os.chmod(self.path, 0o600)
        listener.listen(128)
        listener.setblocking(False)
        self.listener, self.inode = listener, os.stat(self.path).st_ino
        self.stamp = code_stamp()  # before importing: a change during the import makes us stale, not wrong
        t0 = time.monotonic()
        for name in sorted(ENTRIES):
            module_name, func = name.split(":")
            module = importlib.import_module(module_name)
            warm = getattr(module, "preload", None)
            if callable(warm):
                warm()
            self.entries[name] = getattr(module, func)
        self.contain = containment.detect().mode == "pidns"  # probed once here; the forks inherit the answer
        gc.collect()
        gc.freeze()  # keep the preloaded objects out of GC passes: fewer copy-on-write faults in the children
        self._state("serving")
        preload_nice = self._normal_priority(attempts=5)  # no turn lowers it now: yield_preload needs "preloading"
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno(), warn_on_full_buffer=False)
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        self.selector.register(listener, selectors.EVENT_READ)
        _log("serving", home=self.home, stamp=self.stamp, preload_ms=round((time.monotonic() - t0) * 1000),
             preload_nice=preload_nice,
             idle_s=self.idle_s, python=sys.executable)  # fmt: skip
        return True

    def _normal_priority(self, attempts: int = 1) -> int | None:
        """Turns that do not need us lower our session's priority while we preload (forkserver.yield_preload); we
        serve at normal priority (each forked turn gets a session of its own, at normal priority). Called once
        serving, and again at each spawn: a turn that saw us preloading may have lowered it just after. Returns
        the nice value found (None: not our own session, or no autogroup here)."""
        found = session_nice(os.getpid()) if self.own_session else None
        if found:
            set_session_nice(os.getpid(), 0, attempts=attempts)
        return found

    def _state(self, state: str) -> None:
        """The lock file holds our pid and whether we are still preloading (clients wait for that, up to a bound)."""
        os.ftruncate(self.lock_fd, 0)
        os.pwrite(self.lock_fd, f"{os.getpid()} {state}\n".encode(), 0)

    def _lock(self) -> bool:
        """The home's lock, held while we listen. A retiring zygote releases it within ms: retry for a moment."""
        self.lock_fd = os.open(self.home / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + 2.0
        while True:
            try:
                fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() > deadline or status(self.home, timeout_s=0.2) is not None:
                    return False
                time.sleep(0.05)

    def close(self) -> None:
        self._unlisten()
        self.selector.close()
        self.wake_r.close()
        self.wake_w.close()

    def _unlisten(self) -> None:
        """Stop taking spawns: remove our socket (only if it is still ours) and let another zygote start."""
        if self.listener is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(self.listener)
            self.listener.close()
            self.listener = None
            with contextlib.suppress(OSError):
                if os.stat(self.path).st_ino == self.inode:
                    self.path.unlink()
        if self.lock_fd >= 0:
            os.close(self.lock_fd)
            self.lock_fd = -1

    def _retire(self, reason: str) -> None:
        if not self.retiring:
            self.retiring = True
            self._unlisten()
            _log("retiring", reason=reason, live_children=len(self.children))

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum != signal.SIGCHLD:
            self.terminate = True  # handled by the loop (the wakeup fd woke it)

    # the loop
    def loop(self) -> None:
        while True:
            self._reap()
            if self.terminate:
                self._retire("signal")
            if self.retiring and not self.children:
                break
            if not self.retiring and not self.children and time.monotonic() - self.last_active > self.idle_s:
                self._retire(f"idle for {self.idle_s:g} s")
                continue
            if not self.retiring and not self._socket_is_ours():
                self._retire("socket removed or replaced")
                continue
            self._expire_pending()
            timeout = min(2.0, max(0.05, self.idle_s - (time.monotonic() - self.last_active)))
            if self.pending:
                timeout = min(timeout, max(0.0, min(p.deadline for p in self.pending.values()) - time.monotonic()))
            for key, _ in self.selector.select(timeout):
                if isinstance(key.data, _Pending):
                    self._step(key.data)
                elif key.fileobj is self.wake_r:
                    with contextlib.suppress(OSError):
                        while self.wake_r.recv(4096):
                            pass
                elif key.fileobj is self.listener:
                    self._accept_all()
        _log("exit")

    def _socket_is_ours(self) -> bool:
        try:
            return os.stat(self.path).st_ino == self.inode
        except OSError:
            return False

    def _accept_all(self) -> None:
        """Take every pending connection, then serve them. The spawns among them share one look at the code on
        disk (``_code_now``): each of them connected before it began."""
        conns: list[socket.socket] = []
        while self.listener is not None:
            try:
                conns.append(self.listener.accept()[0])
            except (BlockingIOError, InterruptedError):
                break
        self.code_now = None
        for conn in conns:
            kept = False
            self.last_active = time.monotonic()
            try:
                kept = self._handle(conn)
            except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
                _log("request_failed", error=f"{type(exc).__name__}: {exc}")
            finally:
                if not kept:  # a spawn in progress keeps its connection until the ack (_step)
                    conn.close()

    def _code_now(self) -> str:
        """The stamp of the code on disk, looked at once per batch of connections (after they all connected, so
        a change made before a spawn was asked for is never missed). The server scanned it for every spawn before:
        a third of its CPU for a wave of 20, 0.2 s of it for 200."""
        if self.code_now is None:
            self.code_now = code_stamp()
        return self.code_now

    def _reap(self) -> None:
        while True:
            try:
                pid, wstatus, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(wstatus)
            code = 128 - code if code < 0 else code  # killed by signal N -> 128+N, as sh reports it
            exit_file = self.children.pop(pid, None)
            self.last_active = time.monotonic()
            # the child writes its own on a normal exit; a duplicate spawn ran nothing and the turn's file is not its
            if exit_file is not None and code != DUPLICATE_EXIT and not exit_file.exists():
                try:
                    write_exit_file(exit_file, code)
                except OSError as exc:
                    _log("exit_file_failed", pid=pid, error=exc)
            _log("reaped", pid=pid, code=code, cpu_ms=round((usage.ru_utime + usage.ru_stime) * 1000, 1),
                 faults=usage.ru_minflt)  # fmt: skip  (the turn's whole process, its reaped children included)

    # one request
    def _handle(self, conn: socket.socket) -> bool:
        """Serve one request; True when a spawn keeps the connection (it goes on in ``_step``)."""
        conn.setblocking(True)
        conn.settimeout(2.0)
        if hasattr(socket, "SO_PEERCRED"):
            _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            if uid != os.getuid():
                _log("refused", peer_uid=uid)
                return False
        msg, fds = recv_message(conn, max_fds=3)
        try:
            op = msg.get("op")
            if op == "status":
                send_message(conn, {"pid": os.getpid(), "stamp": self.stamp, "children": sorted(self.children)})
            elif op == "stop":
                self._retire("stop requested")
                send_message(conn, {"pid": os.getpid()})
            elif op == "spawn":
                return self._spawn(conn, msg, fds)
            else:
                send_message(conn, {"error": f"unknown op {op!r}"})
            return False
        finally:
            for fd in fds:
                os.close(fd)

    def _spawn(self, conn: socket.socket, msg: dict[str, Any], fds: list[int]) -> bool:
        """Fork the child; the rest (its ready, the pid sent, the client's ack, the go) happens in ``_step`` while
        the loop serves other requests. True when the fork happened (the connection is kept for that)."""
        if msg.get("install") != install_id() or self._code_now() != self.stamp:
            self._retire("stale: the code changed on disk" if msg.get("install") == install_id()
                         else "stale: another install asks")  # fmt: skip
            send_message(conn, {"error": "stale zygote (the code changed); it is retiring", "stale": True})
            return False
        entry = self.entries.get(str(msg.get("entry")))
        if entry is None or len(fds) != 3:
            send_message(conn, {"error": "refused: unknown entry point or missing stdio fds"})
            return False
        if time.time() > float(msg["deadline"]):
            send_message(conn, {"error": "too late: the client gave up"})
            return False
        self._normal_priority()
        args = [str(a) for a in msg["args"]]
        env = {str(k): str(v) for k, v in cast("dict[str, Any]", msg["env"]).items()}
        exit_file = Path(msg["exit"])
        umask = int(msg.get("umask", 0o022)) & 0o777
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        ids = os.getuid(), os.getgid()  # the child's own read as the overflow id until it maps them
        cloned = (self.contain and containment.can_clone() and containment.choose(env).mode == "pidns"
                  and env.get(CLONE_ENV, "").strip() != "0")  # fmt: skip
        try:
            pid = containment.fork_into_turn_namespaces() if cloned else os.fork()
        except OSError as exc:  # the kernel refused the namespaces: the child enters them after a plain fork
            _log("clone_failed", error=exc)
            cloned, pid = False, os.fork()
        if pid == 0:  # never returns into the zygote's loop, whatever happens
            try:
                os.close(ready_r)
                os.close(go_w)
                self._child(
                    conn, entry, str(msg["entry"]), args, env, Path(msg["cwd"]), exit_file, umask, fds, ready_w, go_r,
                    cloned_as=ids if cloned else None,
                )  # fmt: skip
            finally:
                os._exit(127)
        os.close(ready_w)
        os.close(go_r)
        self.children[pid] = None
        os.set_blocking(ready_r, False)
        p = _Pending(conn, pid, exit_file, str(msg["entry"]), str(msg["cwd"]), ready_r, go_w,
                     time.monotonic() + READY_TIMEOUT_S,
                     cgroup=env.get(cgroups.JOIN_ENV) if cloned else None)  # fmt: skip
        self.pending[pid] = p
        self.selector.register(ready_r, selectors.EVENT_READ, p)
        return True

    def _step(self, p: _Pending) -> None:
        """The next step of a spawn in progress: the child's ready (then the pid goes to the client), or the
        client's ack (then the child gets its go)."""
        try:
            if not p.acking:
                chunk = os.read(p.ready_r, 4096)
                if chunk:
                    p.ready += chunk
                    return  # the child closes its end after writing: wait for that
                self.selector.unregister(p.ready_r)
                if p.ready != b"ok":
                    self._spawn_failed(p, p.ready[1:].decode(errors="replace"))
                    return
                send_message(p.conn, {"pid": p.pid})
                p.acking, p.deadline = True, time.monotonic() + ACK_TIMEOUT_S
                self.selector.register(p.conn, selectors.EVENT_READ, p)
                return
            self.selector.unregister(p.conn)
            try:
                ack = recv_message(p.conn)[0].get("ack") is True
            except (OSError, EOFError, ValueError):
                ack = False
            if not ack or p.pid not in self.children:  # the client gave up (or the child died): nothing runs
                _log("spawn_abandoned", pid=p.pid)
            else:
                self.children[p.pid] = p.exit_file
                if p.cgroup:  # before anything of the turn runs (a child outside namespaces joins by itself)
                    cgroups.join(Path(p.cgroup), p.pid)
                os.write(p.go_w, f"go {p.pid}".encode())  # the pid as the server sees it (PID 1 in its namespace)
                _log("spawned", pid=p.pid, entry=p.entry, cwd=p.cwd)
            self._end_pending(p)
        except BlockingIOError:
            return
        except (OSError, ValueError) as exc:
            _log("request_failed", pid=p.pid, error=f"{type(exc).__name__}: {exc}")
            self._end_pending(p)

    def _spawn_failed(self, p: _Pending, why: str) -> None:
        _log("spawn_failed", pid=p.pid, error=why or "no answer")
        with contextlib.suppress(OSError, ValueError):
            send_message(p.conn, {"error": f"the forked child could not start: {why}"})
        self._end_pending(p)

    def _expire_pending(self) -> None:
        """A child that never said ready, or a client that never acked: the child gets no go (it exits, 125)."""
        now = time.monotonic()
        for p in [p for p in self.pending.values() if p.deadline <= now]:
            if p.acking:
                _log("spawn_abandoned", pid=p.pid)
                self._end_pending(p)
            else:
                self._spawn_failed(p, "")

    def _end_pending(self, p: _Pending) -> None:
        self.pending.pop(p.pid, None)
        for obj in (p.ready_r, p.conn):
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(obj)
        for fd in (p.ready_r, p.go_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        p.conn.close()

    def _child(
        self, conn: socket.socket, entry: Callable[[list[str]], int], entry_name: str, args: list[str],
        env: dict[str, str], cwd: Path, exit_file: Path, umask: int, fds: list[int], ready_w: int, go_r: int,
        *, cloned_as: tuple[int, int] | None = None,
    ) -> NoReturn:  # fmt: skip
        """In the forked child: become a fresh process of its own session, wait for the go, run the entry, exit.
        ``cloned_as`` (the zygote's uid and gid): the child was cloned into the turn's namespaces (PID 1 there) and
        sets them up before saying it is ready; else it enters them after the go, as the outer process of an init
        it forks (``containment.enter_turn_namespaces``), where the turn wants them."""
        raw_guards = env.pop(containment.GUARDS_ENV, "").split("\0")
        guards = list(zip(raw_guards[0::2], raw_guards[1::2], strict=False))
        try:
            for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            conn.close()
            for other in self.pending.values():  # the spawns in progress are the zygote's, not this child's
                other.conn.close()
                os.close(other.ready_r)
                os.close(other.go_w)
            if self.listener is not None:
                self.listener.close()
            self.selector.close()
            self.wake_r.close()
            self.wake_w.close()
            if self.lock_fd >= 0:
                os.close(self.lock_fd)
            os.setsid()  # own session and process group: pgid == pid, so kill_group works unchanged
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
                os.close(fd)
            os.chdir(cwd)
            os.umask(umask)  # the requesting server's, as a plain spawn would inherit it
            if cloned_as is not None:  # fails closed: the spawn fails, and goes the plain way (unshare(1) there)
                containment.init_turn_namespaces(guards, *cloned_as)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.write(ready_w, b"E" + f"{type(exc).__name__}: {exc}".encode()[:500])
            os._exit(127)
        os.write(ready_w, b"ok")
        os.close(ready_w)
        go = _read_pipe(go_r, timeout_s=None).split()
        if len(go) != 2 or go[0] != b"go" or not go[1].isdigit():
            os._exit(125)  # the zygote or the client gave up before the go: nothing ran
        os.close(go_r)
        if not create_started_marker(exit_file, int(go[1])):
            os._exit(DUPLICATE_EXIT)  # the turn already started (runners/started.py): never run it twice
        cg = env.pop(cgroups.JOIN_ENV, None)
        if cg and cloned_as is None:  # into the turn's cgroup before anything else runs (the zygote moved a clone)
            cgroups.join(Path(cg), os.getpid())
        os.environ.clear()
        os.environ.update(env)
        time.tzset()
        random.seed()
        sys.argv = [entry_name.split(":")[0], *args]
        # Fresh std streams on the new fds 0-2 (buffering and error handling as a fresh interpreter sets them).
        sys.stdin = open(0, closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)  # noqa: SIM115
        if cloned_as is None and self.contain and containment.choose(env).mode == "pidns":
            try:  # from here on this process only waits; the entry runs as init of the turn's namespaces
                containment.enter_turn_namespaces(guards)
            except OSError as exc:  # never lose a turn to containment
                sys.stderr.write(f"agent-fleet: this turn runs without its namespaces: {exc}\n")
        _run_and_exit(entry, args, exit_file)


def _run_and_exit(entry: Callable[[list[str]], int], args: list[str], exit_file: Path) -> NoReturn:
    """Run the turn's entry, write its exit file and leave (no interpreter teardown)."""
    result: object = 1
    try:
        result = entry(args)
    except SystemExit as exc:  # as the interpreter reports it: None -> 0, a message -> 1
        result = exc.code
        if isinstance(exc.code, str):
            sys.stderr.write(exc.code + "\n")
    except BaseException:
        traceback.print_exc()
    code = (result if isinstance(result, int) else 0 if result is None else 1) & 0xFF
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    with contextlib.suppress(OSError):
        write_exit_file(exit_file, code)  # before dying, like the sh wrapper: the file is there when it is gone
    os._exit(code)


def _read_pipe(fd: int, *, timeout_s: float | None) -> bytes:
    """What was written to the pipe before its writer closed it; b"" when nothing came within ``timeout_s``."""
    data = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while sel.select(None if deadline is None else max(0.0, deadline - time.monotonic())):
            if not (chunk := os.read(fd, 4096)):
                return data
            data += chunk
    return b""
