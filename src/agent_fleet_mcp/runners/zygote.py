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
import os
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

from agent_fleet_mcp.runners import cgroups, containment, preload_pause, zygote_child
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
from agent_fleet_mcp.runners.spare_refill import IDLE_CORES, SpareRefill
from agent_fleet_mcp.runners.started import DUPLICATE_EXIT

# -- daemon ---------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -c LAUNCHER --home H [--idle-s S]`` (see ``launch``): serve until retired or idle. 1 if it crashed."""
    p = argparse.ArgumentParser(prog="agent-fleet forkserver")
    p.add_argument("--home", required=True, type=Path)
    p.add_argument("--idle-s", type=float, default=DEFAULT_IDLE_S)
    p.add_argument("--spares", type=int, default=0, help="children to keep forked ahead of the spawns")
    p.add_argument("--spare-idle-cores", type=float, default=IDLE_CORES,
                   help="idle CPU (in cores) a look must find before spares are made; 0: any")  # fmt: skip
    p.add_argument("--own-session", action="store_true", help="we run in a session of our own (launch starts us in "
                   "one): its CPU priority, which turns may lower while we preload, is ours to reset")  # fmt: skip
    args = p.parse_args(argv)
    zygote = _Zygote(args.home.resolve(), args.idle_s, own_session=args.own_session, spares=args.spares,
                     spare_idle_cores=args.spare_idle_cores)  # fmt: skip
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
    spare: bool = False  # the child was a spare, forked ahead


@dataclass
class _Spare:
    """A child forked ahead of the spawn that will use it (``_Zygote._make_spare``): in its own session, in new
    namespaces with its ids mapped when ``cloned``, its turn's path warmed. It waits on ``sock`` for its turn."""

    pid: int
    sock: socket.socket
    cloned: bool


class _Zygote:
    def __init__(
        self, home: Path, idle_s: float, *, own_session: bool = False, spares: int = 0,
        spare_idle_cores: float = IDLE_CORES,
    ) -> None:  # fmt: skip
        self.home, self.idle_s = home, idle_s
        self.spare_target = max(0, spares)
        self.spares: dict[int, _Spare] = {}  # by pid, oldest first
        self.refill = SpareRefill(idle_cores=spare_idle_cores)
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
        preload_pause.clear(self.home)  # an earlier preload's requests (we hold the lock: none is under way)
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
        self.entries, paused_s = preload_pause.preload(self.home, ENTRIES, on_pause=lambda: _log("preload_paused"))
        self.contain = containment.detect().mode == "pidns"  # probed once here; the forks inherit the answer
        gc.collect()
        gc.freeze()  # keep the preloaded objects out of GC passes: fewer copy-on-write faults in the children
        self._state("serving")
        self.last_active = time.monotonic()  # idle from now: a preload longer than idle_s retired it at once
        preload_nice = self._normal_priority(attempts=5)  # no turn lowers it now: yield_preload needs "preloading"
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno(), warn_on_full_buffer=False)
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        self.selector.register(listener, selectors.EVENT_READ)
        _log("serving", home=self.home, stamp=self.stamp, preload_ms=round((time.monotonic() - t0) * 1000),
             preload_nice=preload_nice, preload_paused_s=round(paused_s, 2),
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
            self._drop_spares()
            _log("retiring", reason=reason, live_children=len(self.children))

    def _drop_spares(self) -> None:
        """Each spare sees its socket closed and exits (it ran nothing); the loop reaps them."""
        for spare in self.spares.values():
            spare.sock.close()
        self.spares.clear()

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
            refill_in = self._refill_in()
            if refill_in is not None:
                timeout = min(timeout, refill_in)
            events = self.selector.select(timeout)
            if not events and refill_in == 0.0:  # nothing to serve: one more spare, then look again
                self._make_spare()
            for key, _ in events:
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
            if (spare := self.spares.pop(pid, None)) is not None or pid not in self.children:
                if spare is not None:  # it died waiting (killed, out of memory): the next spawn forks anew
                    spare.sock.close()
                    _log("spare_died", pid=pid, code=code)
                continue  # a spare, never used: no turn, no exit file
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
                send_message(conn, {"pid": os.getpid(), "stamp": self.stamp, "children": sorted(self.children),
                                    "spares": sorted(self.spares)})  # fmt: skip
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
        self.refill.spawned(time.monotonic())
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
        assignment = {"entry": str(msg["entry"]), "args": args, "env": env, "cwd": str(msg["cwd"]),
                      "exit": str(exit_file), "umask": umask}  # fmt: skip
        if (pid := self._hand_to_spare(cloned, assignment, [*fds, ready_w, go_r])) is not None:
            os.close(ready_w)
            os.close(go_r)
            self._track(conn, pid, msg, exit_file, ready_r, go_w, env if cloned else None, spare=True)
            return True
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
        self._track(conn, pid, msg, exit_file, ready_r, go_w, env if cloned else None)
        return True

    def _track(
        self, conn: socket.socket, pid: int, msg: dict[str, Any], exit_file: Path, ready_r: int, go_w: int,
        cloned_env: dict[str, str] | None, *, spare: bool = False,
    ) -> None:  # fmt: skip
        """A child that has its turn: follow its ready, then the client's ack (``_step``)."""
        self.children[pid] = None
        os.set_blocking(ready_r, False)
        p = _Pending(conn, pid, exit_file, str(msg["entry"]), str(msg["cwd"]), ready_r, go_w,
                     time.monotonic() + READY_TIMEOUT_S,
                     cgroup=cloned_env.get(cgroups.JOIN_ENV) if cloned_env is not None else None,
                     spare=spare)  # fmt: skip
        self.pending[pid] = p
        self.selector.register(ready_r, selectors.EVENT_READ, p)

    # spares
    def _refill_in(self) -> float | None:
        """Seconds until a spare may be made (0.0: now), None when none is wanted: the target is met, a spawn is in
        progress, or we retire (the when: ``SpareRefill``)."""
        wanted = not (self.retiring or self.pending or len(self.spares) >= self.spare_target or self.listener is None)
        return self.refill.due_in(time.monotonic(), wanted=wanted)

    def _make_spare(self) -> None:
        """Fork a child ahead of the spawn that will use it: cloned into new namespaces (its ids mapped; the rest
        of their set-up, guards included, waits for its turn) when turns are, in a session of its own, its turn's
        path warmed by the entries' ``warm_spare`` (the pages it touches copied now rather than at the turn's
        start). It then waits for its turn on a socket; at EOF (we retire or die) it exits, having run nothing."""
        cloned = self.contain and containment.can_clone() and containment.choose().mode == "pidns"
        ours, theirs = socket.socketpair()
        ids = os.getuid(), os.getgid()
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = containment.fork_into_turn_namespaces() if cloned else os.fork()
        except OSError as exc:
            ours.close()
            theirs.close()
            _log("spare_failed", error=exc)
            self.spare_target = 0  # the kernel refuses: spawns fork as before
            return
        if pid == 0:
            try:
                ours.close()
                self._spare(theirs, ids if cloned else None)
            finally:
                os._exit(127)
        theirs.close()
        self.spares[pid] = _Spare(pid, ours, cloned)

    def _hand_to_spare(self, cloned: bool, assignment: dict[str, Any], fds: list[int]) -> int | None:
        """Give the turn to the oldest spare of its kind; its pid, or None when there is none (then we fork)."""
        for pid in [pid for pid, spare in self.spares.items() if spare.cloned == cloned]:
            spare = self.spares.pop(pid)
            try:
                send_message(spare.sock, assignment, fds)
                return pid
            except OSError as exc:  # it died meanwhile (the loop reaps it)
                _log("spare_lost", pid=pid, error=exc)
            finally:
                spare.sock.close()
        return None

    def _spare(self, sock: socket.socket, cloned_as: tuple[int, int] | None) -> NoReturn:
        """In a spare child: leave the zygote's loop behind (``zygote_child.run_spare`` does the rest)."""
        zygote_child.run_spare(sock, self.entries, cloned_as, leave=self._detach, contain=self.contain)

    def _detach(self) -> None:
        """In a child: drop what is the zygote's (its signal handling, sockets, spawns in progress, spares, lock)."""
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        for other in self.pending.values():  # the spawns in progress are the zygote's, not this child's
            other.conn.close()
            os.close(other.ready_r)
            os.close(other.go_w)
        for spare in self.spares.values():  # an open end of a spare's socket here would keep it waiting
            spare.sock.close()
        if self.listener is not None:
            self.listener.close()
        self.selector.close()
        self.wake_r.close()
        self.wake_w.close()
        if self.lock_fd >= 0:
            os.close(self.lock_fd)

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
                _log("spawned", pid=p.pid, entry=p.entry, cwd=p.cwd, spare=p.spare)
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
        it forks (``containment.enter_turn_namespaces``), where the turn wants them. (A spare: ``_spare``.)"""

        def leave_zygote() -> None:
            conn.close()
            self._detach()
            os.setsid()  # own session and process group: pgid == pid, so kill_group works unchanged

        zygote_child.become_turn(
            entry, entry_name, args, env, cwd, exit_file, umask, fds, ready_w, go_r,
            leave=leave_zygote, cloned_as=cloned_as, ids_mapped=False,
            contain=self.contain,
        )  # fmt: skip
