"""A wave of turns spawned at once (one ``run_agents`` of 20) does the work the spawns share once, not once per spawn
thread: the containment probe (an ``unshare`` subprocess and a cgroup probe). The code stamp is looked at by the
fork server, once per batch of connections (tests/runners/test_forkserver.py)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

import pytest

from agent_fleet_mcp.runners import containment

WAIT_S = 30.0  # bound on waiting for a thread to reach a state (never reached: the test fails, it does not hang)


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def in_threads(n: int, fn: Callable[[], Any]) -> tuple[list[threading.Thread], list[Any]]:
    results: list[Any] = []

    def run() -> None:
        try:
            results.append(fn())
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    return threads, results


def join(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.join(WAIT_S)
        assert not t.is_alive(), "a caller never returned"


@pytest.fixture
def fresh_detection() -> Generator[None]:
    """``containment.detect`` forgets its answer before and after the test (later tests get the real one)."""
    containment._detected.cache_clear()  # pyright: ignore[reportPrivateUsage]
    yield
    containment._detected.cache_clear()  # pyright: ignore[reportPrivateUsage]


def test_concurrent_first_spawns_run_one_containment_probe(
    fresh_detection: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first spawns after a server start come from many threads at once; they wait for one probe (before,
    each thread that missed the empty cache ran its own: 19 ``unshare`` subprocesses in a 20-turn wave)."""
    probes: list[str] = []
    gate = threading.Event()

    def slow_probe(path: str) -> containment.Containment:
        probes.append(path)
        assert gate.wait(WAIT_S)
        return containment.Containment("pgroup", None, ("stand-in",))

    def stopped(thread: threading.Thread) -> bool:
        """In the probe, or blocked in ``detect`` itself (on its lock)."""
        frame = sys._current_frames().get(thread.ident or -1)  # pyright: ignore[reportPrivateUsage]
        if frame is not None and frame.f_code is containment.detect.__code__:
            return True
        while frame is not None:
            if frame.f_code is slow_probe.__code__:
                return True
            frame = frame.f_back
        return False

    monkeypatch.setattr(containment, "detect_on", slow_probe)
    threads, results = in_threads(8, containment.detect)
    wait_until(lambda: all(stopped(t) for t in threads), "every thread to reach the probe or wait for it")
    gate.set()
    join(threads)
    assert len(probes) == 1
    assert len(results) == 8 and all(r is results[0] for r in results)
