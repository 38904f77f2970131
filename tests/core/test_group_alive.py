"""``process.group_alive`` scans the process table for stragglers of a turn's group; a process that ends between
the listing and the look at its group (as many do while a fleet is deleted) is not in the group, never an error
(it failed ``delete_agent`` with ProcessLookupError in CI)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from agent_fleet_mcp.runners import process


def test_a_process_that_ended_during_the_scan_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    leader = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    gone = subprocess.Popen(["true"])
    gone.wait()  # reaped: its pid no longer exists
    real_iter = psutil.process_iter

    ended = SimpleNamespace(info={"pid": gone.pid, "status": psutil.STATUS_RUNNING})

    def listing(attrs: list[str]) -> Iterator[Any]:
        yield ended  # listed, then ended before its group was asked for
        yield from real_iter(attrs)

    monkeypatch.setattr(process.psutil, "process_iter", listing)
    try:
        assert process.group_alive(leader.pid)
        leader.kill()
        leader.wait()
        def group_answers(pgid: int, sig: int) -> None:  # the group looks alive: the scan decides
            return None

        monkeypatch.setattr(process.os, "killpg", group_answers)
        assert not process.group_alive(leader.pid)
    finally:
        if leader.poll() is None:
            leader.kill()
            leader.wait()
