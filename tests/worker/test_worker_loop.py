"""The worker end to end: a real subprocess, the real anthropic SDK, the scripted Messages API on loopback.

Each worker process pays the ~2 s SDK import, so independent scenarios run concurrently inside one test.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from pathlib import Path

import pytest

from agent_fleet_mcp import pricing
from agent_fleet_mcp.testing import ApiError, Reply, ScriptedModelServer, ToolCall, Turn
from agent_fleet_mcp.worker import history
from agent_fleet_mcp.worker.tools import READ_TOOLS

from .helpers import finish, run_worker, start_worker, strip_cache, tool_names, worker_env

USAGE = {
    "input_tokens": 1000,
    "output_tokens": 100,
    "cache_read_input_tokens": 5000,
    "cache_creation_input_tokens": 2000,
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    p = tmp_path / "project"
    p.mkdir()
    (p / "a.py").write_text("x = 1\n")
    (tmp_path / "secret.txt").write_text("outside\n")
    return p


def test_tool_loop_then_a_second_turn_continues_the_conversation(tmp_path: Path, project: Path) -> None:
    agent = tmp_path / "agent"
    system_file = tmp_path / "system.md"
    system_file.write_text("You review code.")
    script = [
        Turn(
            [
                ToolCall("read_file", {"path": "a.py"}, text="Reading."),
                ToolCall("read_file", {"path": "../secret.txt"}),
            ],
            usage=USAGE,
        ),
        Reply("a.py sets x.", usage=USAGE),
    ]
    with ScriptedModelServer(script) as srv:
        # readonly: write tools are never offered, even when --tools asks for them
        args = ["--system-file", str(system_file), "--tools", "read_file,list_files,grep,bash"]
        first = run_worker(srv.base_url, agent, project, "review a.py", args=args)
        srv.assert_complete()
        second = run_worker(srv.base_url, agent, project, "now look for TODO")  # the default policy answers
        reqs = [r.body for r in srv.message_requests]

    assert first.code == 0, first.stderr
    assert first.types == ["started", "text", "usage", "tool_use", "tool_result", "tool_use", "tool_result",
                           "text", "usage", "result"]  # fmt: skip
    started = first.events[0]
    assert (started["runner"], started["model"], type(started["pid"])) == ("anthropic", "claude-sonnet-4-5", int)
    uses, results = first.of("tool_use"), first.of("tool_result")
    assert [(u["name"], u["summary"], u.get("reads")) for u in uses] == [
        ("read_file", "read a.py", ["a.py"]),
        ("read_file", "read ../secret.txt", ["../secret.txt"]),
    ]
    assert [(r["ok"], r["id"]) for r in results] == [(True, uses[0]["id"]), (False, uses[1]["id"])]
    usage = first.of("usage")[0]
    assert usage == {
        "type": "usage", "ts": usage["ts"], "input": 1000, "output": 100, "cache_read": 5000, "cache_write": 2000,
        "cost_usd": pricing.cost_usd("claude-sonnet-4-5", input=1000, output=100, cache_read=5000, cache_write=2000),
        "model": "claude-sonnet-4-5",
        "context_tokens": 8000, "scope": "request",
    }  # fmt: skip
    assert usage["cost_usd"] == pytest.approx((1000 * 3 + 100 * 15 + 5000 * 0.3 + 2000 * 3.75) / 1e6)
    assert first.result == {"type": "result", "ts": first.result["ts"], "text": "a.py sets x.", "is_error": False}

    assert tool_names(reqs[0]) == list(READ_TOOLS)
    assert "You review code." in reqs[0]["system"][0]["text"] and reqs[0]["stream"] is True
    tool_round = reqs[1]["messages"][2]["content"]
    assert "x = 1" in tool_round[0]["content"] and "is_error" not in tool_round[0]
    assert tool_round[1]["is_error"] is True and "outside the working directory" in tool_round[1]["content"]
    assert "outside\n" not in str(reqs[1])

    # turn 2 is a new process: its first request carries all of turn 1, then the new prompt
    assert second.code == 0 and second.result["is_error"] is False, second.stderr
    turn2 = strip_cache(reqs[2]["messages"])
    assert turn2[:3] == strip_cache(reqs[1]["messages"])
    assert turn2[3:] == [
        {"role": "assistant", "content": [{"type": "text", "text": "a.py sets x."}]},
        {"role": "user", "content": [{"type": "text", "text": "now look for TODO"}]},
    ]
    assert len(reqs) > 3 and second.of("tool_use")  # the policy agent used tools on turn 2
    saved, notes = history.load(agent)
    assert notes == [] and saved[-1]["role"] == "assistant" and len(saved) == len(reqs[-1]["messages"]) + 1


def test_readwrite_agent_edits_and_runs_commands_but_skips_truncated_calls(tmp_path: Path, project: Path) -> None:
    script = [
        Turn([ToolCall("write_file", {"path": "big.txt", "content": "partial"})], stop_reason="max_tokens"),
        ToolCall("edit_file", {"path": "a.py", "old": "x = 1", "new": "x = 2"}),
        ToolCall("bash", {"command": "cat a.py; echo key=${ANTHROPIC_API_KEY:-unset}"}),
        Reply("edited"),
    ]
    with ScriptedModelServer(script) as srv:
        run = run_worker(srv.base_url, tmp_path / "agent", project, "set x to 2", permission="readwrite",
                         args=["--tools", "read_file,write_file,edit_file,bash"])  # fmt: skip
        srv.assert_complete()
        reqs = [r.body for r in srv.message_requests]
    assert run.code == 0, run.stderr
    assert tool_names(reqs[0]) == ["read_file", "write_file", "edit_file", "bash"]
    truncated = reqs[1]["messages"][-1]["content"][0]
    assert truncated["is_error"] is True and "max_tokens" in truncated["content"]
    assert not (project / "big.txt").exists()
    assert (project / "a.py").read_text() == "x = 2\n"
    bash_out = reqs[3]["messages"][-1]["content"][0]["content"]
    assert "x = 2" in bash_out and "key=unset" in bash_out and "[exit code 0]" in bash_out
    assert [u["summary"] for u in run.of("tool_use")] == [
        "edit a.py",
        "$ cat a.py; echo key=${ANTHROPIC_API_KEY:-unset}",
    ]
    assert run.of("tool_use")[0]["writes"] == ["a.py"]


def test_max_turns_and_max_cost_stop_the_turn(tmp_path: Path, project: Path) -> None:
    pricey = {"input_tokens": 10_000, "output_tokens": 0}  # $0.03 a request on sonnet-4-5
    with (
        ScriptedModelServer([ToolCall("list_files", {})] * 5) as turns_srv,
        ScriptedModelServer([ToolCall("list_files", {}, usage=pricey)] * 5) as cost_srv,
    ):
        by_turns = start_worker(turns_srv.base_url, tmp_path / "a1", project, "loop", model="local-model",
                                args=["--max-turns", "2"])  # fmt: skip
        by_cost = start_worker(cost_srv.base_url, tmp_path / "a2", project, "loop", args=["--max-cost-usd", "0.05"])
        turns_run, cost_run = finish(by_turns), finish(by_cost)
        assert len(turns_srv.message_requests) == 2 and len(cost_srv.message_requests) == 2

    for run, reason in ((turns_run, "max_turns"), (cost_run, "max_cost")):
        assert run.code == 1, run.stderr
        assert (run.result["is_error"], run.result["reason"]) == (True, reason)
        assert f"stopped: reached {reason}" in run.result["text"] or "reached max_cost_usd" in run.result["text"]
        assert len(run.of("usage")) == 2 and len(run.of("tool_result")) == 1  # the 2nd round's call never ran
    assert sum(u["cost_usd"] for u in cost_run.of("usage")) == pytest.approx(0.06)
    assert [u["cost_usd"] for u in turns_run.of("usage")] == [None, None]  # unknown model: null, never a guess
    for agent in (tmp_path / "a1", tmp_path / "a2"):
        saved, notes = history.load(agent)
        assert notes == []
        last = saved[-1]["content"][0]
        assert last["is_error"] is True and last["content"].startswith("not run: the turn stopped")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_api_errors_end_the_turn_with_actionable_messages(tmp_path: Path, project: Path) -> None:
    cases = {
        "auth": ([ApiError(401)], "0"),
        "rate_limit": ([ApiError(429, retry_after=0.01), ApiError(429, retry_after=0.01)], "1"),
        "overloaded": ([ApiError(529, mid_stream=True)], "0"),
    }
    servers = {kind: ScriptedModelServer(script).start() for kind, (script, _) in cases.items()}
    try:
        procs = {
            kind: start_worker(None, tmp_path / kind, project, "hi",
                               env=worker_env(servers[kind].base_url, AGENT_FLEET_MAX_RETRIES=retries))
            for kind, (_, retries) in cases.items()
        }  # fmt: skip
        dead_url = f"http://127.0.0.1:{_closed_port()}"
        procs["connection"] = start_worker(None, tmp_path / "conn", project, "hi",
                                           env=worker_env(dead_url, AGENT_FLEET_MAX_RETRIES="0"))  # fmt: skip
        runs = {kind: finish(p) for kind, p in procs.items()}
        for srv in servers.values():
            srv.assert_complete()
    finally:
        for srv in servers.values():
            srv.stop()

    messages = {}
    for kind, run in runs.items():
        assert run.code == 1, (kind, run.stderr)
        errors = run.of("error")
        assert [e["kind"] for e in errors] == [kind], run.events
        assert (run.result["is_error"], run.result["reason"]) == (True, "api_error")
        assert errors[0]["message"] in run.result["text"]
        messages[kind] = errors[0]["message"]
    assert messages["auth"] == "authentication failed (401): check ANTHROPIC_API_KEY / ANTHROPIC_AUTH_TOKEN"
    assert messages["rate_limit"].startswith("rate limited after 1 retry: scripted rate_limit_error")
    assert messages["overloaded"].startswith("the API is overloaded (529)")
    assert messages["connection"].startswith(f"cannot reach {dead_url}")
    assert not (tmp_path / "auth" / "history.json").exists()  # a failed first request leaves history as it was


def test_missing_key_and_empty_prompt_fail_fast_without_importing_the_sdk(tmp_path: Path, project: Path) -> None:
    started = time.monotonic()
    no_key = run_worker(None, tmp_path / "a", project, "hi")
    empty = run_worker("http://127.0.0.1:9", tmp_path / "a", project, "  \n")
    assert time.monotonic() - started < 2.0  # the anthropic import alone takes ~2 s
    assert no_key.code == 1 and no_key.of("error")[0]["message"].startswith("ANTHROPIC_API_KEY is not set")
    assert empty.code == 1 and "empty prompt" in empty.of("error")[0]["message"]
    assert [r.types for r in (no_key, empty)] == [["started", "error", "result"]] * 2


def test_sigterm_mid_stream_cancels_and_leaves_a_loadable_history(tmp_path: Path, project: Path) -> None:
    agent = tmp_path / "agent"
    with ScriptedModelServer([ToolCall("read_file", {"path": "a.py"}), Reply("never", latency_s=30)]) as srv:
        proc = start_worker(srv.base_url, agent, project, "read a.py")
        assert srv.wait_for_requests(2, timeout=20)  # the 2nd request is in flight, its answer 30 s away
        os.kill(proc.pid, signal.SIGTERM)
        run = finish(proc, timeout=20)  # ends without the answer, which is 30 s away
    assert run.code == 1
    assert (run.result["is_error"], run.result["reason"]) == (True, "cancelled")
    saved, notes = history.load(agent)
    assert notes == []
    assert [m["role"] for m in saved] == ["user", "assistant", "user"]
    assert "x = 1" in saved[-1]["content"][0]["content"]


def test_sigterm_during_a_command_kills_it_and_answers_the_call(tmp_path: Path, project: Path) -> None:
    from core.proc_scan import wait_until_none

    agent = tmp_path / "agent"
    marker = f"cmd-{uuid.uuid4().hex}"  # in the command's environment: found by a /proc scan while it lives
    command = f"export MARK={marker}; echo go > started.txt; sleep 30"
    with ScriptedModelServer([ToolCall("bash", {"command": command})]) as srv:
        proc = start_worker(srv.base_url, agent, project, "wait", permission="readwrite")
        deadline = time.monotonic() + 20
        while not (project / "started.txt").exists() or not (project / "started.txt").read_text().strip():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGTERM)
        run = finish(proc, timeout=10)
    assert run.result["reason"] == "cancelled"
    assert run.types[-3:] == ["tool_use", "tool_result", "result"] and run.of("tool_result")[0]["ok"] is False
    assert wait_until_none(marker) == []
    saved, notes = history.load(agent)
    assert notes == []
    answer = saved[-1]["content"][0]
    assert answer["is_error"] is True and answer["content"].startswith("cancelled")
