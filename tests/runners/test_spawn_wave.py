"""A wave of turns spawned at once (one ``run_agents`` of 20) does the work the spawns share once, not once per spawn
thread: the containment probe (an ``unshare`` subprocess and a cgroup probe) and the code stamp the fork server
checks (a scan of the package). A shared answer is never older than the call that gets it."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

import pytest

from agent_fleet_mcp.runners import containment, forkserver

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


class GatedScan:
    """A stand-in for ``code_stamp``: scan N returns ``vN``; a scan blocks while the gate is closed."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.began = 0
        self.fail_next = False

    def __call__(self) -> str:
        self.began += 1
        number = self.began
        assert self.gate.wait(WAIT_S), "the test never opened the gate"
        if self.fail_next:
            self.fail_next = False
            raise OSError("scan failed")
        return f"v{number}"


def test_a_call_never_gets_a_scan_that_began_before_it() -> None:
    """The code may have changed between a running scan's start and this call: the call waits for the next scan
    (a cache by age would hand it the running one's result, and a turn could start on code the zygote lacks)."""
    scan = GatedScan()
    flight = forkserver.StampFlight(scan)
    first, first_result = in_threads(1, flight)
    wait_until(lambda: scan.began == 1, "the first scan to begin")
    second, second_result = in_threads(1, flight)
    wait_until(lambda: flight.waiting == 1, "the second call to wait")
    scan.gate.set()
    join(first + second)
    assert first_result == ["v1"]
    assert second_result == ["v2"]


def test_calls_made_while_a_scan_runs_share_the_next_one() -> None:
    scan = GatedScan()
    flight = forkserver.StampFlight(scan)
    first, _ = in_threads(1, flight)
    wait_until(lambda: scan.began == 1, "the first scan to begin")
    wave, results = in_threads(8, flight)
    wait_until(lambda: flight.waiting == 8, "eight calls to wait")
    scan.gate.set()
    join(first + wave)
    assert results == ["v2"] * 8
    assert scan.began == 2  # one scan per spawn thread before: 9


def test_a_failed_scan_raises_in_its_caller_and_the_next_caller_scans_again() -> None:
    scan = GatedScan()
    scan.fail_next = True
    flight = forkserver.StampFlight(scan)
    first, first_result = in_threads(1, flight)
    wait_until(lambda: scan.began == 1, "the first scan to begin")
    second, second_result = in_threads(1, flight)
    wait_until(lambda: flight.waiting == 1, "the second call to wait")
    scan.gate.set()
    join(first + second)
    assert isinstance(first_result[0], OSError)
    assert second_result == ["v2"]
    assert flight() == "v3"  # nothing is kept from before a call


def test_spawns_ask_for_the_stamp_of_the_code_now() -> None:
    assert forkserver.fresh_code_stamp() == forkserver.code_stamp()


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
