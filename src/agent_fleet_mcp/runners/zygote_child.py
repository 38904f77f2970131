"""What runs in a child of the fork server (zygote.py): a spare's wait for its turn, and a turn once it has one (set
up, say ready, wait for the go, take the turn's started marker, run the entry as a fresh process would, leave
without interpreter teardown)."""

from __future__ import annotations

import contextlib
import os
import random
import selectors
import socket
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn, cast

from agent_fleet_mcp.runners import cgroups, containment
from agent_fleet_mcp.runners.forkserver import recv_message, write_exit_file
from agent_fleet_mcp.runners.started import DUPLICATE_EXIT
from agent_fleet_mcp.runners.started import create as create_started_marker


def run_spare(
    sock: socket.socket, entries: Mapping[str, Callable[[list[str]], int]], cloned_as: tuple[int, int] | None, *,
    leave: Callable[[], None], contain: bool,
) -> NoReturn:  # fmt: skip
    """A spare (zygote.py ``_make_spare``): ``leave`` the zygote's state, map its ids when it was cloned into new
    namespaces, warm the entries' turn path (``warm_spare``), then wait on ``sock`` for a turn and become it. At
    EOF (the zygote retires or died) it exits, having run nothing."""
    try:
        leave()
        if cloned_as is not None:
            containment.map_turn_ids(*cloned_as)
        for name in sorted(entries):
            warm = getattr(sys.modules[name.split(":")[0]], "warm_spare", None)
            if callable(warm):
                warm()
        # A session of its own only now: where the kernel shares the CPU by session (autogroup), the spares'
        # warm-ups share the zygote's one share, not one each next to whatever else starts meanwhile (the CLIs of
        # claude-code turns, each in its session).
        os.setsid()
        sock.setblocking(True)
        msg, fds = recv_message(sock, max_fds=5)
        sock.close()
    except (EOFError, OSError, ValueError):
        os._exit(0)  # no turn came (the zygote retires, or died): nothing ran
    entry_name = str(msg.get("entry"))
    if len(fds) != 5 or entry_name not in entries:
        os._exit(127)
    env = {str(k): str(v) for k, v in cast("dict[str, Any]", msg["env"]).items()}
    become_turn(
        entries[entry_name], entry_name, [str(a) for a in msg["args"]], env, Path(msg["cwd"]), Path(msg["exit"]),
        int(msg["umask"]), fds[:3], fds[3], fds[4], leave=None, cloned_as=cloned_as, ids_mapped=True,
        contain=contain,
    )  # fmt: skip


def become_turn(
    entry: Callable[[list[str]], int], entry_name: str, args: list[str], env: dict[str, str], cwd: Path,
    exit_file: Path, umask: int, fds: list[int], ready_w: int, go_r: int, *, leave: Callable[[], None] | None,
    cloned_as: tuple[int, int] | None, ids_mapped: bool, contain: bool,
) -> NoReturn:  # fmt: skip
    """Become the turn: ``leave`` (a child forked for this turn: drop the zygote's state, take a session of its
    own), stdio on ``fds``, ``cwd``, the caller's ``umask``, the turn's namespaces; then "ok" on ``ready_w`` (or the
    error, and exit 127), wait for the go on ``go_r``, run. ``cloned_as`` (the zygote's uid and gid): the child was
    cloned into the turn's namespaces (PID 1 there) and sets them up before it says it is ready (only their
    second half when ``ids_mapped``: a spare did the first); else, where turns are contained (``contain``), it
    enters them after the go, as the outer process of an init it forks (``containment.enter_turn_namespaces``)."""
    raw_guards = env.pop(containment.GUARDS_ENV, "").split("\0")
    guards = list(zip(raw_guards[0::2], raw_guards[1::2], strict=False))
    try:
        if leave is not None:
            leave()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(cwd)
        os.umask(umask)  # the requesting server's, as a plain spawn would inherit it
        if cloned_as is not None:  # fails closed: the spawn fails, and goes the plain way (unshare(1) there)
            if ids_mapped:
                containment.set_up_turn_init(guards, *cloned_as)
            else:
                containment.init_turn_namespaces(guards, *cloned_as)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.write(ready_w, b"E" + f"{type(exc).__name__}: {exc}".encode()[:500])
        os._exit(127)
    os.write(ready_w, b"ok")
    os.close(ready_w)
    go = read_pipe(go_r, timeout_s=None).split()
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
    if cloned_as is None and contain and containment.choose(env).mode == "pidns":
        try:  # from here on this process only waits; the entry runs as init of the turn's namespaces
            containment.enter_turn_namespaces(guards)
        except OSError as exc:  # never lose a turn to containment
            sys.stderr.write(f"agent-fleet: this turn runs without its namespaces: {exc}\n")
    run_and_exit(entry, args, exit_file)


def run_and_exit(entry: Callable[[list[str]], int], args: list[str], exit_file: Path) -> NoReturn:
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


def read_pipe(fd: int, *, timeout_s: float | None) -> bytes:
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
