"""The fork server's preload (``preload``), which pauses while CLI turns start on a busy machine, until a turn
waits for it.

The zygote (zygote.py) preloads for ~2 s of CPU, most of it ``import anthropic``, in the background of a server that
just started. A claude-code, codex or gemini turn needs no fork server, and its CLI takes ~1 s of CPU to start.
Giving the preload nice 19 (``forkserver.yield_preload``) was not enough: in a wave of 10 claude-code turns on two
cores, started one second after the server, the preload still took ~1 CPU-s of the wave, and the wave took
0.2-0.35 s longer (median of 5-6 rounds) than with no fork server at all (bench/README.md). So the preload also
stops between its imports:

- ``request(home)``: a CLI turn starts (process.spawn, through ``forkserver.yield_preload``). It touches the home's
  ``forkserver.yield``; its mtime is the last such start.
- ``PreloadPause``, on the zygote's ``sys.meta_path`` for its preload only: before a module is looked for (at most
  every ``CHECK_S``), while a CLI turn started within ``HOLD_S`` and the other processes leave less than
  ``IDLE_CORES`` of the machine idle (``/proc/stat``, less our own CPU), it naps ``NAP_S`` and looks again. A
  machine with CPU to spare, or a hold that ran out, lets it go on.
- ``hurry(home)``: a turn waits for the fork server (forkserver.spawn). The home's ``forkserver.hurry`` makes the
  preload go on at once and never pause again (a CLI that starts after it no longer holds it).
- The zygote removes both files before it says it is preloading (``clear``), and never pauses for more than
  ``MAX_PAUSE_S`` in all: a clock that jumped, or a stream of CLI turns, cannot hold it for ever.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from agent_fleet_mcp.runners.spare_refill import cpu_times

YIELD_FILE = "forkserver.yield"  # its mtime: when a CLI turn last started
HURRY_FILE = "forkserver.hurry"  # exists: a turn waits for the preload
HOLD_S = 10.0  # a CLI turn's start holds the preload this long, while the machine is busy
CHECK_S = 0.01  # looks at the files at most this often (a preload imports ~3,000 modules)
LOOK_S = 0.25  # the machine's idle CPU is measured over at least this long
IDLE_CORES = 1.0  # ... and must be at least this (the preload is one thread: a core nobody else wants)
NAP_S = 0.05  # one nap of a paused preload; a hurry is seen within it
MAX_PAUSE_S = 120.0  # the most a preload pauses in all


def request(home: Path) -> None:
    """A CLI turn starts: a preload that is under way pauses while the machine is busy (for ``HOLD_S``)."""
    path = home / YIELD_FILE
    try:
        os.utime(path)
    except FileNotFoundError:
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    except OSError:
        pass


def hurry(home: Path) -> None:
    """A turn waits for the fork server: its preload goes on now and pauses no more."""
    with contextlib.suppress(OSError):
        os.close(os.open(home / HURRY_FILE, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))


def hurried(home: Path) -> bool:
    """Whether a turn waits for this preload (CLI turns no longer ask it to give way)."""
    return (home / HURRY_FILE).exists()


def clear(home: Path) -> None:
    """A new preload begins (by the zygote, before it says it preloads): an earlier one's requests are void."""
    for name in (YIELD_FILE, HURRY_FILE):
        with contextlib.suppress(FileNotFoundError):
            (home / name).unlink()


class PreloadPause:
    """A ``sys.meta_path`` finder that finds nothing: it only pauses before a lookup when asked (module doc).
    ``clock`` (wall, for the file's mtime), ``mono``, ``sleep``, ``machine`` ((idle, total) ticks since boot) and
    ``own_cpu`` (our CPU seconds) are for the tests."""

    def __init__(
        self, home: Path, *, clock: Callable[[], float] = time.time, mono: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep, machine: Callable[[], tuple[int, int] | None] = cpu_times,
        own_cpu: Callable[[], float] = time.process_time, cores: int | None = None, tick_s: float | None = None,
        on_pause: Callable[[], None] | None = None,
    ) -> None:  # fmt: skip
        self.yield_file, self.hurry_file = home / YIELD_FILE, home / HURRY_FILE
        self._clock, self._mono, self._sleep, self._machine, self._own = clock, mono, sleep, machine, own_cpu
        self._cores = cores or os.cpu_count() or 1
        self._tick_s = tick_s or 1.0 / os.sysconf("SC_CLK_TCK")
        self._on_pause = on_pause
        self.paused_s = 0.0  # in all
        self.pauses = 0  # times it began to pause
        self._hurried = False
        self._checked = -1e9  # mono of the last check
        self._look: tuple[float, int, int, float] | None = None  # (mono, idle, total ticks, own CPU s)
        self._busy = False  # what the last look found

    # the finder protocol: never finds a module, only pauses before the others look
    def find_spec(self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None) -> None:
        with contextlib.suppress(Exception):  # an optimisation only: never the reason an import fails
            self.check()

    def check(self) -> None:
        now = self._mono()
        if now - self._checked < CHECK_S:
            return
        self._checked = now
        paused = False
        while self._held():
            if not self._machine_busy():
                break
            if not paused:
                paused = True
                self.pauses += 1
                if self._on_pause is not None:
                    self._on_pause()
            t0 = self._mono()
            self._sleep(NAP_S)
            self.paused_s += self._mono() - t0
        self._checked = self._mono()

    def _held(self) -> bool:
        """A CLI turn started within ``HOLD_S``, no turn waits for us, and the pause budget is not spent."""
        if self._hurried or self.paused_s >= MAX_PAUSE_S:
            return False
        if self.hurry_file.exists():  # (hurried(), without building the path at each check)
            self._hurried = True
            return False
        try:
            age = self._clock() - self.yield_file.stat().st_mtime
        except OSError:
            return False
        return 0.0 <= age <= HOLD_S

    def _machine_busy(self) -> bool:
        """Whether the other processes left less than ``IDLE_CORES`` idle since the last look (taken at least
        ``LOOK_S`` before; a look older than a few of those starts a new one, counted as busy meanwhile)."""
        now = self._mono()
        sample = self._machine()
        if sample is None:  # no /proc/stat: nothing to measure; nice 19 is all the preload's yielding
            return False
        own = self._own()
        look = self._look
        if look is None or now - look[0] > 4 * LOOK_S:
            self._look = (now, *sample, own)
            self._busy = True
            return True
        if now - look[0] < LOOK_S:
            return self._busy
        wall = now - look[0]
        busy_s = ((sample[1] - look[2]) - (sample[0] - look[1])) * self._tick_s
        others = max(0.0, busy_s - (own - look[3]))  # what the other processes used, in CPU seconds
        self._busy = self._cores * wall - others < IDLE_CORES * wall
        self._look = (now, *sample, own)
        return self._busy


def preload(
    home: Path, entries: Iterable[str], *, on_pause: Callable[[], None] | None = None
) -> tuple[dict[str, Callable[[list[str]], int]], float]:
    """The zygote's preload: import each entry's module ("module:function") and run its ``preload()`` if it has
    one, pausing as the module doc says. Returns the entry functions by name, and the seconds it paused."""
    found: dict[str, Callable[[list[str]], int]] = {}
    with pausing(home, on_pause=on_pause) as pause:
        for name in sorted(entries):
            module_name, func = name.split(":")
            module = importlib.import_module(module_name)
            warm = getattr(module, "preload", None)
            if callable(warm):
                warm()
            found[name] = getattr(module, func)
    return found, pause.paused_s


@contextlib.contextmanager
def pausing(home: Path, **kwargs: Any) -> Generator[PreloadPause]:
    """``PreloadPause`` first on ``sys.meta_path`` for the block (the zygote's preload)."""
    pause = PreloadPause(home, **kwargs)
    sys.meta_path.insert(0, pause)
    try:
        yield pause
    finally:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(pause)
