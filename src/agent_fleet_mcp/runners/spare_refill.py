"""When the fork server (zygote.py) makes its spares: with CPU nothing else wants. Not among a wave's spawns (their
children need it; ours can wait), nor while the machine is busy (a claude-code turn's CLI takes ~1 s of CPU to
start). Once a look at the CPU found some idle, spares are made one after another for ``CPU_LOOK_S``."""

from __future__ import annotations

import os

QUIET_S = 0.5  # spares are made once no spawn came for this long
CPU_LOOK_S = 0.25  # ... and only while the machine had CPU to spare over the last look this long
IDLE_CORES = 0.5  # ... that is, at least this much of a core idle


class SpareRefill:
    def __init__(self, *, idle_cores: float = IDLE_CORES) -> None:
        """``idle_cores``: how much idle CPU a look must find (0: any; tests on a busy machine)."""
        self.idle_cores = idle_cores
        self.last_spawn = -1e9  # monotonic time of the last spawn request
        self._look: tuple[float, int, int] | None = None  # (monotonic, idle, total) at the last look at the CPU
        self._idle_until = -1e9  # spares may be made until then: the last look found CPU to spare

    def spawned(self, now: float) -> None:
        self.last_spawn = now

    def due_in(self, now: float, *, wanted: bool) -> float | None:
        """Seconds until a spare may be made (0.0: now); None when none is ``wanted``."""
        if not wanted:
            self._look = None
            return None
        if (quiet := QUIET_S - (now - self.last_spawn)) > 0:
            self._look = None
            return quiet
        if now < self._idle_until:
            return 0.0
        sample = cpu_times()
        if sample is None:  # no /proc/stat: no look
            return 0.0
        look = self._look
        if look is None or now - look[0] < CPU_LOOK_S / 2:
            self._look = look or (now, *sample)
            return CPU_LOOK_S
        self._look = (now, *sample)
        idle, total = sample[0] - look[1], sample[1] - look[2]
        if total > 0 and idle / total * (os.cpu_count() or 1) < self.idle_cores:
            return CPU_LOOK_S  # busy: look again then
        self._idle_until = now + CPU_LOOK_S
        return 0.0


def cpu_times() -> tuple[int, int] | None:
    """(idle, total) time of all CPUs since boot, in clock ticks (/proc/stat; idle counts I/O wait); None where
    there is no /proc/stat."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return fields[3] + fields[4], sum(fields)
