"""A follower's watch on its process's end (exit_watch.ExitWatch) works with any descriptor number: a fleet of
hundreds has more than FD_SETSIZE (1024) descriptors open, where ``select.select`` raises."""

from __future__ import annotations

import os
import resource
from typing import Any, cast

from agent_fleet_mcp.exit_watch import ExitWatch

HIGH_FD = 1500


class _Procs:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def exit_fd(self, pid: int, start_time: float | None) -> int | None:
        return self.fd


def test_a_watch_on_a_descriptor_above_fd_setsize() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft <= HIGH_FD:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))  # as a long-lived server may have
    r, w = os.pipe()
    high = os.dup2(r, min(HIGH_FD, hard - 1))  # above 1024 wherever a server can hold hundreds of turns
    os.close(r)
    try:
        watch = ExitWatch(cast(Any, _Procs(high)), 1, None)
        assert watch.alive()
        os.close(w)  # the process ends: its descriptor turns readable
        w = -1
        assert not watch.alive()
        watch.close()
    finally:
        if w >= 0:
            os.close(w)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
