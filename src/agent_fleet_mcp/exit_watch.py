"""A follower's watch on its turn's process: the end seen the moment it happens (a pidfd), and how long it sleeps
between looks at the transcript (backed off while nothing comes, cut short at the turn's timeout). Used by
supervisor.py."""

from __future__ import annotations

import os
import select
from typing import Protocol

import anyio

TIMEOUT_SLACK_S = 0.01  # a follower wakes this long after a turn's timeout, so the look sees it passed
IDLE_POLL_S = 1.0  # the longest a follower waits between transcript reads while nothing new comes (end watched)


class Ends(Protocol):
    """What the watch needs from the process layer (``supervisor.Processes`` has it)."""

    def exit_fd(self, pid: int, start_time: float | None) -> int | None: ...

    def is_alive(self, pid: int, start_time: float | None) -> bool: ...


class ExitWatch:
    """A followed process's end, seen the moment it happens where the process layer gives a descriptor for it (a
    pidfd): the follower sleeps on it between its reads of the transcript, and 20 turns ending together are closed
    at once instead of at the next poll. Without one, ``alive`` asks the process layer each time (a /proc read)."""

    def __init__(self, procs: Ends, pid: int, start_time: float | None) -> None:
        self._procs, self._pid, self._start = procs, pid, start_time
        self._fd = procs.exit_fd(pid, start_time)

    def backed_off(self, interval_s: float) -> float:
        """The next wait after a read that found nothing new: twice as long, up to ``IDLE_POLL_S``, when the end is
        watched (a turn waiting for its model is looked at a few times, not 5 times a second, and its end is still
        seen at once); unchanged when it is not (then each look is also the only way to see the end)."""
        return interval_s if self._fd is None else max(interval_s, min(interval_s * 2, IDLE_POLL_S))

    def alive(self) -> bool:
        if self._fd is None:
            return self._procs.is_alive(self._pid, self._start)
        looked = select.poll()  # not select.select: a fleet of hundreds has descriptors above FD_SETSIZE (1024)
        looked.register(self._fd, select.POLLIN)
        return not looked.poll(0)

    async def wait(self, timeout_s: float) -> None:
        """Until the process ends or ``timeout_s`` passed."""
        with anyio.move_on_after(timeout_s):
            if self._fd is None:
                await anyio.sleep(timeout_s)
            else:
                await anyio.wait_readable(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def next_look(interval_s: float, started_at: float | None, timeout_s: float, now: float) -> float:
    """How long a follower sleeps before its next look at a running turn: ``interval_s``, cut short to wake just
    after the turn's timeout. A quiet transcript backs off to 1 s between looks, which let a timed-out turn run up
    to that much past its ``timeout_s``."""
    if started_at is None:
        return interval_s
    return min(interval_s, max(started_at + timeout_s - now, 0.0) + TIMEOUT_SLACK_S)
