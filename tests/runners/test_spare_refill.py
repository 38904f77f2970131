"""When the fork server makes its spares (runners/spare_refill.py): after a quiet moment, and only while the machine
has CPU to spare."""

from __future__ import annotations

import pytest

from agent_fleet_mcp.runners import spare_refill
from agent_fleet_mcp.runners.spare_refill import CPU_LOOK_S, QUIET_S, SpareRefill


@pytest.fixture
def cpu(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The (idle, total) samples /proc/stat would give, one per look."""
    samples: list[tuple[int, int]] = []
    monkeypatch.setattr(spare_refill, "cpu_times", lambda: samples.pop(0))
    monkeypatch.setattr(spare_refill.os, "cpu_count", lambda: 2)
    return samples


def test_none_while_not_wanted_then_after_a_quiet_moment_and_a_look(cpu: list[tuple[int, int]]) -> None:
    r = SpareRefill()
    assert r.due_in(100.0, wanted=False) is None
    r.spawned(100.0)
    assert r.due_in(100.1, wanted=True) == pytest.approx(QUIET_S - 0.1)  # a wave's spawns come first
    cpu += [(1000, 2000), (1090, 2100)]  # over the look: 90 of 100 ticks idle on 2 cores = 1.8 cores
    assert r.due_in(100.6, wanted=True) == CPU_LOOK_S  # a first sample: look again then
    assert r.due_in(100.6 + CPU_LOOK_S, wanted=True) == 0.0
    assert r.due_in(100.7 + CPU_LOOK_S, wanted=True) == 0.0  # within the look's time: no new sample
    assert cpu == []


def test_a_busy_machine_gets_no_spare(cpu: list[tuple[int, int]]) -> None:
    r = SpareRefill()
    cpu += [(1000, 2000), (1010, 2100), (1100, 2200)]  # 10 % idle of 2 cores = 0.2 core; then 90 %
    assert r.due_in(10.0, wanted=True) == CPU_LOOK_S
    assert r.due_in(10.0 + CPU_LOOK_S, wanted=True) == CPU_LOOK_S  # busy: wait
    assert r.due_in(10.0 + 2 * CPU_LOOK_S, wanted=True) == 0.0
    r.spawned(11.0)  # a spawn: quiet again first, and a new look
    assert r.due_in(11.2, wanted=True) == pytest.approx(QUIET_S - 0.2)


def test_where_there_is_no_proc_stat_it_does_not_look(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spare_refill, "cpu_times", lambda: None)
    assert SpareRefill().due_in(5.0, wanted=True) == 0.0


def test_with_no_idle_cores_asked_a_busy_machine_gets_spares(cpu: list[tuple[int, int]]) -> None:
    r = SpareRefill(idle_cores=0)
    cpu += [(1000, 2000), (1000, 2100)]  # not one idle tick
    assert r.due_in(10.0, wanted=True) == CPU_LOOK_S
    assert r.due_in(10.0 + CPU_LOOK_S, wanted=True) == 0.0

