"""run_agents: parallel start, depends_on waves, {{id}} data passing, failure propagation, validation."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import call, err

pytestmark = pytest.mark.anyio


async def test_dag_waves_and_data_passing(client: Any) -> None:
    runs = [
        {"id": "a", "agent": "echo", "input": "alpha"},
        {"id": "b", "agent": "echo", "input": "beta"},
        {"id": "c", "agent": "echo", "input": "merge [{{a}}] and [{{ b }}]", "depends_on": ["a", "b"]},
        {"id": "d", "agent": "echo", "input": "final <{{c}}>", "depends_on": ["c"]},
    ]
    out = await call(client, "run_agents", runs=runs, wait_s=30)
    assert out["done"] is True
    batch = out["batch"]
    by = {r["id"]: r for r in batch["runs"]}
    assert {k: v["wave"] for k, v in by.items()} == {"a": 1, "b": 1, "c": 2, "d": 3}
    assert all(r["status"] == "succeeded" for r in batch["runs"])
    assert by["c"]["result"] == "echo: merge [echo: alpha] and [echo: beta]"
    assert by["d"]["result"] == "echo: final <echo: merge [echo: alpha] and [echo: beta]>"
    assert batch["status"] == "succeeded" and batch["wall_s"] is not None
    # each run is a real agent the orchestrator can read
    full = await call(client, "get_agent_output", agent=by["d"]["agent"])
    assert full["text"] == by["d"]["result"]


async def test_parallel_start_and_batch_wait(client: Any) -> None:
    runs = [{"id": f"s{i}", "agent": "sleeper", "input": "1.5"} for i in range(3)]
    out = await call(client, "run_agents", runs=runs, wait_s=0)
    assert out["done"] is False and "wait_for_agents" in out["note"]
    assert [r["status"] for r in out["batch"]["runs"]] == ["running"] * 3
    batch_id = out["batch"]["batch"]
    waited = await call(client, "wait_for_agents", batch=batch_id, timeout_s=30)
    view = waited["batch"]
    assert waited["done"] is True and [r["status"] for r in view["runs"]] == ["succeeded"] * 3
    assert view["status"] == "succeeded"
    # three 1.5 s runs in parallel: the wall time is well under their sum
    assert view["sum_run_s"] >= 4.0 and view["wall_s"] < view["sum_run_s"]


async def test_failed_dependency_fails_dependents(client: Any) -> None:
    runs = [
        {"id": "bad", "agent": "failer", "input": "x"},
        {"id": "next", "agent": "echo", "input": "use {{bad}}", "depends_on": ["bad"]},
        {"id": "last", "agent": "echo", "input": "after", "depends_on": ["next"]},
        {"id": "free", "agent": "echo", "input": "independent"},
    ]
    out = await call(client, "run_agents", runs=runs, wait_s=30)
    assert out["done"] is True
    by = {r["id"]: r for r in out["batch"]["runs"]}
    assert by["bad"]["status"] == "failed" and "exited with code 3" in by["bad"]["reason"]
    assert by["next"]["status"] == "failed" and "dependency 'bad' failed" in by["next"]["reason"]
    assert by["last"]["status"] == "failed" and "dependency 'next' failed" in by["last"]["reason"]
    assert "agent" not in by["next"]  # never started
    assert by["free"]["status"] == "succeeded"
    assert out["batch"]["status"] == "failed"


@pytest.mark.parametrize(
    ("runs", "needle"),
    [
        ([{"id": "a", "agent": "echo", "input": "x", "depends_on": ["b"]},
          {"id": "b", "agent": "echo", "input": "y", "depends_on": ["a"]}], "cycle"),
        ([{"id": "a", "agent": "echo", "input": "x", "depends_on": ["zzz"]}], "unknown run 'zzz'"),
        ([{"id": "a", "agent": "nope", "input": "x"}], "unknown template"),
        ([{"id": "a", "agent": "echo", "input": "{{b}}"}, {"id": "b", "agent": "echo", "input": "y"}],
         "does not depend on it"),
        ([{"id": "a", "agent": "echo", "input": "x"}, {"id": "a", "agent": "echo", "input": "y"}], "duplicate run id"),
        ([], "runs is empty"),
    ],
)  # fmt: skip
async def test_invalid_batches_start_nothing(client: Any, runs: list[dict[str, Any]], needle: str) -> None:
    msg = err(await client.call_tool("run_agents", {"runs": runs, "wait_s": 0}))
    assert needle in msg
    assert (await call(client, "get_agent_status"))["agents"] == []


async def test_default_run_ids_from_template(client: Any) -> None:
    out = await call(
        client, "run_agents", runs=[{"agent": "echo", "input": "1"}, {"agent": "echo", "input": "2"}], wait_s=20
    )
    assert [r["id"] for r in out["batch"]["runs"]] == ["echo", "echo-2"]
    assert "batch" in (await call(client, "wait_for_agents", batch=out["batch"]["batch"], timeout_s=1))
    assert "no batch" in err(await client.call_tool("wait_for_agents", {"batch": "b_nope"}))


async def test_run_agents_idempotency_key(client: Any) -> None:
    runs = [{"id": "a", "agent": "echo", "input": "once"}]
    first = await call(client, "run_agents", runs=runs, wait_s=20, idempotency_key="job-1")
    again = await call(client, "run_agents", runs=runs, wait_s=20, idempotency_key="job-1")
    assert again["batch"]["batch"] == first["batch"]["batch"]
    assert (await call(client, "get_agent_status"))["fleet"]["agents"] == 1  # the retry started nothing
    msg = err(await client.call_tool("run_agents", {"runs": [{"agent": "echo", "input": "other"}],
                                                    "idempotency_key": "job-1"}))  # fmt: skip
    assert "already used" in msg and first["batch"]["batch"] in msg
