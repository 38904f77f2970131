"""A fork server's preload pauses between its imports while CLI turns start on a busy machine, until a turn waits
for it (runners/preload_pause.py, docs/forkserver.md)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Generator
from pathlib import Path

import pytest

from agent_fleet_mcp.runners import forkserver, preload_pause
from agent_fleet_mcp.runners.preload_pause import HOLD_S, LOOK_S, NAP_S, PreloadPause

from .test_forkserver import wait_started_zygote
from .test_forkserver_warm import gated_zygote, wait_for

TICK_S = 0.001


class Box:
    """A machine of ``cores`` CPUs on which other processes use ``others`` of them, and a preload that runs (its
    CPU counts) except while it naps. Time moves only when the test or a nap moves it."""

    def __init__(self, home: Path, *, cores: int = 2, others: float = 2.0) -> None:
        self.home, self.cores, self.others = home, cores, others
        self.wall, self.mono, self.own = time.time(), 1000.0, 0.0
        self.idle_ticks, self.total_ticks = 0, 0
        self.naps = 0
        self.on_nap: Callable[[Box], None] | None = None

    def advance(self, dt: float, *, running: bool) -> None:
        used = min(self.cores, self.others + (1.0 if running else 0.0)) * dt
        self.total_ticks += round(self.cores * dt / TICK_S)
        self.idle_ticks += round((self.cores * dt - used) / TICK_S)
        self.wall += dt
        self.mono += dt
        if running:
            self.own += dt

    def sleep(self, dt: float) -> None:
        self.naps += 1
        self.advance(dt, running=False)
        if self.on_nap is not None:
            self.on_nap(self)

    def cli_started(self) -> None:
        """What ``preload_pause.request`` does, at this box's time."""
        path = self.home / preload_pause.YIELD_FILE
        path.touch()
        os.utime(path, (self.wall, self.wall))

    def pause(self, **kwargs: object) -> PreloadPause:
        return PreloadPause(
            self.home, clock=lambda: self.wall, mono=lambda: self.mono, sleep=self.sleep,
            machine=lambda: (self.idle_ticks, self.total_ticks), own_cpu=lambda: self.own, cores=self.cores,
            tick_s=TICK_S, **kwargs,  # type: ignore[arg-type]
        )  # fmt: skip


def test_no_cli_turn_started_no_pause(tmp_path: Path) -> None:
    box = Box(tmp_path)
    pause = box.pause()
    pause.check()
    assert (box.naps, pause.paused_s) == (0, 0.0)


def test_a_cli_turn_on_a_busy_machine_pauses_the_preload_until_its_hold_ends(tmp_path: Path) -> None:
    box = Box(tmp_path, others=2.0)
    noted: list[float] = []
    pause = box.pause(on_pause=lambda: noted.append(box.mono))
    box.cli_started()
    pause.check()
    assert HOLD_S - NAP_S <= pause.paused_s <= HOLD_S + NAP_S
    assert pause.pauses == 1 and len(noted) == 1  # one pause, logged once


def test_a_machine_with_a_core_to_spare_lets_the_preload_go_on(tmp_path: Path) -> None:
    """A first look takes ``LOOK_S`` (counted as busy), then an idle core lets it go on."""
    box = Box(tmp_path, cores=2, others=0.9)
    pause = box.pause()
    box.cli_started()
    pause.check()
    assert LOOK_S <= pause.paused_s <= LOOK_S + NAP_S
    before = pause.paused_s
    for _ in range(200):  # 2 s of imports, a check every 10 ms, the other processes still on 0.9 of a core
        box.advance(0.01, running=True)
        pause.check()
    assert pause.paused_s == before  # the preload's own core is not counted as the others'


def test_a_turn_that_waits_ends_the_pause_at_once_and_for_good(tmp_path: Path) -> None:
    box = Box(tmp_path, others=2.0)
    pause = box.pause()
    box.cli_started()

    def waits_on_third_nap(b: Box) -> None:
        if b.naps == 3:
            preload_pause.hurry(tmp_path)

    box.on_nap = waits_on_third_nap
    pause.check()
    assert box.naps == 3
    box.on_nap = None
    box.advance(0.05, running=True)
    box.cli_started()  # a CLI turn that starts after: the preload no longer pauses
    pause.check()
    assert box.naps == 3


def test_a_stream_of_cli_turns_cannot_hold_the_preload_for_ever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(preload_pause, "MAX_PAUSE_S", 2.0)
    box = Box(tmp_path, others=2.0)
    box.on_nap = Box.cli_started  # one starts at every nap
    pause = box.pause()
    box.cli_started()
    pause.check()
    assert 2.0 <= pause.paused_s <= 2.0 + NAP_S


def test_a_start_stamped_in_the_future_holds_nothing(tmp_path: Path) -> None:
    """A clock that jumped back must not make a hold last until the clock catches up."""
    box = Box(tmp_path, others=2.0)
    box.cli_started()
    os.utime(tmp_path / preload_pause.YIELD_FILE, (box.wall + 3600, box.wall + 3600))
    pause = box.pause()
    pause.check()
    assert box.naps == 0


def test_a_failing_look_never_fails_an_import(tmp_path: Path) -> None:
    def broken() -> tuple[int, int]:
        raise RuntimeError("no /proc")

    box = Box(tmp_path)
    box.cli_started()
    pause = PreloadPause(tmp_path, clock=lambda: box.wall, machine=broken)
    assert pause.find_spec("json") is None
    with preload_pause.pausing(tmp_path, machine=broken), pytest.raises(ModuleNotFoundError):
        __import__("no_such_module_for_the_pause_test")


def test_pausing_is_first_on_the_import_path_for_the_block_only(tmp_path: Path) -> None:
    box = Box(tmp_path, others=2.0)
    before = list(sys.meta_path)
    with preload_pause.pausing(tmp_path, clock=lambda: box.wall, mono=lambda: box.mono, sleep=box.sleep,
                               machine=lambda: (box.idle_ticks, box.total_ticks), cores=2) as pause:  # fmt: skip
        assert sys.meta_path[0] is pause
        box.cli_started()
        with contextlib.suppress(ModuleNotFoundError):
            __import__("no_such_module_for_the_pause_test")
        assert pause.pauses == 1  # the import looked first
    assert sys.meta_path == before


# -- the real zygote, on a machine kept busy ----------------------------------------------------------------------

# A preload that keeps importing (modules that do not exist: each one is looked for on sys.meta_path) and counts
# its imports in GATE/count, until GATE/go.
IMPORTING_ENTRY = '''
import os
from pathlib import Path

GATE = Path(os.environ["GATE"])

def preload():
    (GATE / "nice").write_text("0")
    n = 0
    while not (GATE / "go").exists():
        try:
            __import__(f"gated_missing_{n}")
        except ImportError:
            pass
        n += 1
        if n % 20 == 0:
            (GATE / "count.tmp").write_text(str(n))
            os.replace(GATE / "count.tmp", GATE / "count")

def main(args):
    return 0
'''


@contextlib.contextmanager
def busy_machine() -> Generator[None]:
    """Every core busy (one process more than cores), for the block."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range((os.cpu_count() or 1) + 1)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def count(gate: Path) -> int:
    try:
        return int((gate / "count").read_text())
    except (OSError, ValueError):
        return 0


def test_a_preloading_zygote_pauses_for_a_cli_turn_on_a_busy_machine_until_a_turn_waits(tmp_path: Path) -> None:
    """The zygote's own imports stop while a CLI turn starts on a machine with no core to spare; a spawn that waits
    for it (``hurry``) lets them go on at once, and a CLI turn that starts after no longer stops them. A hurry
    left over from an earlier zygote is void."""
    gate, log = tmp_path / "gate", tmp_path / "zygote.err"

    def stale_hurry(home: Path) -> None:
        preload_pause.hurry(home)

    with busy_machine(), gated_zygote(tmp_path, entry=IMPORTING_ENTRY, before=stale_hurry) as (home, _):
        wait_for(lambda: count(gate) > 0, "the preload did not import")
        assert forkserver.yield_preload(home)  # what process.spawn does for a CLI turn
        wait_for(lambda: "preload_paused" in log.read_text(), "the preload did not pause")
        assert forkserver.hurry(home)  # what forkserver.spawn does when it waits for the preload
        paused_at = count(gate)
        wait_for(lambda: count(gate) > paused_at + 100, "the preload did not go on")
        assert not forkserver.yield_preload(home)  # a CLI turn after the hurry: a turn waits, no more giving way
        now = count(gate)
        wait_for(lambda: count(gate) > now + 100, "a CLI turn after a hurry paused the preload")
        (gate / "go").touch()
        wait_started_zygote(home)
        assert log.read_text().count(" preload_paused\n") == 1
        paused_s = float(log.read_text().split("preload_paused_s=")[1].split()[0])
        assert paused_s > 0
