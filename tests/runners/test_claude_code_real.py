"""The real `claude` CLI, spawned through runners/process.py, against the scripted Messages API on loopback.

Needs the pinned CLI (``bash scripts/install-tools.sh claude`` puts it in .tools/). Without it these tests are
skipped loudly on a developer machine and FAIL in CI (CI=true), so a missing install step cannot hide.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent_fleet_mcp.runners import containment, process
from agent_fleet_mcp.runners.base import TurnRequest
from agent_fleet_mcp.runners.claude_code import ClaudeCodeParser, ClaudeCodeRunner
from agent_fleet_mcp.runners.process import TurnFiles
from agent_fleet_mcp.spec import AgentSpec
from agent_fleet_mcp.testing import ApiError, Reply, ScriptedModelServer, ToolCall

from .helpers import Json, of_type, real_claude

pytestmark = pytest.mark.claude_cli

TURN_TIMEOUT_S = 60.0


@pytest.fixture(scope="module", autouse=True)
def claude_exe() -> str:
    return real_claude("the claude-code runner tests against the real CLI")


@dataclass
class Agent:
    """One agent's folders: a project (cwd), a HOME for the CLI, the fleet's agent dir."""

    cwd: Path
    home: Path
    agent_dir: Path

    def request(
        self, srv: ScriptedModelServer, prompt: str, *, turn: int = 1, session_id: str | None = None, **spec: Any
    ) -> TurnRequest:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "ANTHROPIC_BASE_URL": srv.base_url,
            "ANTHROPIC_API_KEY": "test",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "CLAUDECODE": "1",  # must not reach the child (nested-session guard)
        }
        if tools_bin := os.environ.get("AGENT_FLEET_TOOLS_BIN"):
            env["AGENT_FLEET_TOOLS_BIN"] = tools_bin
        return TurnRequest(
            agent_id="ag_real",
            agent_name="real",
            turn=turn,
            prompt=prompt,
            spec=AgentSpec(runner="claude-code", **spec),
            cwd=self.cwd,
            agent_dir=self.agent_dir,
            session_id=session_id,
            env=env,
        )


@dataclass
class TurnOutcome:
    exit_code: int | None
    events: list[Json]  # the normalized events, as the JSON objects they are on disk
    raw: list[dict[str, Any]]  # the CLI's own stream lines

    def one(self, type_: str) -> Json:
        (ev,) = of_type(self.events, type_)
        return ev

    @property
    def result(self) -> Json:
        return self.one("result")


@pytest.fixture
def agent(tmp_path: Path) -> Agent:
    cwd = tmp_path / "proj"
    (cwd / "src").mkdir(parents=True)
    (cwd / "src" / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    home = tmp_path / "home"
    home.mkdir()
    return Agent(cwd=cwd, home=home, agent_dir=tmp_path / "agent")


def start(req: TurnRequest) -> tuple[process.Spawned, TurnFiles]:
    plan = ClaudeCodeRunner().build(req)
    assert "CLAUDECODE" not in plan.env
    files = TurnFiles.for_turn(req.agent_dir / "turns", req.turn)
    return process.spawn(plan, files), files


def wait_exit(spawned: process.Spawned, files: TurnFiles, timeout: float = TURN_TIMEOUT_S) -> int | None:
    deadline = time.monotonic() + timeout
    while process.is_alive(spawned.pid, spawned.start_time):
        if time.monotonic() > deadline:
            process.kill_group(spawned.pid, spawned.start_time, grace_s=1.0)
            pytest.fail(f"claude did not finish within {timeout:.0f}s; stderr: {files.err.read_text()[-2000:]}")
        time.sleep(0.02)
    return process.exit_code(files, spawned.pid)


def collect(req: TurnRequest, files: TurnFiles, code: int | None) -> TurnOutcome:
    parser: ClaudeCodeParser = ClaudeCodeRunner().new_parser(req)
    lines = files.out.read_text(encoding="utf-8").splitlines()
    events: list[Json] = [dict(ev) for line in lines for ev in parser.feed(line)]
    events += [dict(ev) for ev in parser.finish(code, files.err.read_text(encoding="utf-8")[-2000:])]
    raw = [json.loads(line) for line in lines if line.startswith("{")]
    return TurnOutcome(code, events, raw)


def run_turn(req: TurnRequest, groups: set[int]) -> TurnOutcome:
    spawned, files = start(req)
    groups.add(spawned.pid)
    return collect(req, files, wait_exit(spawned, files))


def only_messages_endpoint(srv: ScriptedModelServer) -> None:
    """The CLI talks to nothing but POST /v1/messages (CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1)."""
    seen = {(r.method, r.path) for r in srv.requests}
    assert seen <= {("POST", "/v1/messages")}, f"unexpected requests from the claude CLI: {sorted(seen)}"


def test_turn_with_a_tool_call(agent: Agent, no_leftover_groups: set[int]) -> None:
    target = agent.cwd / "src" / "calc.py"
    script = [ToolCall("Read", {"file_path": str(target)}, text="Reading it."), Reply("calc.py defines add().")]
    with ScriptedModelServer(script, default_policy=False) as srv:
        out = run_turn(agent.request(srv, "What does src/calc.py define?"), no_leftover_groups)
        srv.assert_complete()
        only_messages_endpoint(srv)
        second = srv.message_requests[1].body
    assert out.exit_code == 0
    assert [e["type"] for e in out.events] == [
        "started", "session", "text", "tool_use", "tool_result", "text", "usage", "result",
    ]  # fmt: skip
    tool = out.one("tool_use")
    assert (tool["name"], tool["summary"], tool["reads"]) == ("Read", "Read src/calc.py", ["src/calc.py"])
    assert out.one("tool_result")["ok"] is True
    # the file's content went back to the model in the next request
    assert "return a + b" in json.dumps(second["messages"][-1])
    usage = out.one("usage")
    assert usage["scope"] == "run" and usage["input"] > 0 and usage["output"] > 0
    assert usage["cost_usd"] == pytest.approx(out.raw[-1]["total_cost_usd"])
    assert out.result == {**out.result, "text": "calc.py defines add().", "is_error": False}


def test_resumed_turn_continues_the_conversation_and_reports_the_cost_delta(
    agent: Agent, no_leftover_groups: set[int]
) -> None:
    with ScriptedModelServer([Reply("Noted: 42."), Reply("You told me 42.")], default_policy=False) as srv:
        first = run_turn(agent.request(srv, "Remember the number 42."), no_leftover_groups)
        session_id = first.one("session")["session_id"]
        second = run_turn(
            agent.request(srv, "Which number did I tell you?", turn=2, session_id=session_id), no_leftover_groups
        )
        srv.assert_complete()
        only_messages_endpoint(srv)
        turn2_request = json.dumps(srv.message_requests[1].body["messages"])
    assert first.exit_code == second.exit_code == 0
    assert second.one("session")["session_id"] == session_id
    assert "Remember the number 42." in turn2_request and "Noted: 42." in turn2_request
    total1, total2 = first.raw[-1]["total_cost_usd"], second.raw[-1]["total_cost_usd"]
    assert total2 > total1 > 0  # the CLI reports a running total over the session
    assert first.one("usage")["cost_usd"] == pytest.approx(total1)
    assert second.one("usage")["cost_usd"] == pytest.approx(total2 - total1)
    assert second.result["text"] == "You told me 42."


def test_max_turns(agent: Agent, no_leftover_groups: set[int]) -> None:
    read = ToolCall("Read", {"file_path": str(agent.cwd / "src" / "calc.py")})
    with ScriptedModelServer([read, read, read, Reply("never reached")], default_policy=False) as srv:
        out = run_turn(agent.request(srv, "Keep reading.", max_turns=2), no_leftover_groups)
        assert len(srv.message_requests) == 2
    assert out.exit_code == 1
    assert out.raw[-1]["subtype"] == "error_max_turns"
    assert out.one("error")["kind"] == "max_turns"
    assert (out.result["is_error"], out.result["reason"]) == (True, "max_turns")


def test_api_error(agent: Agent, no_leftover_groups: set[int]) -> None:
    # 403 is not retried by the CLI (401/429/5xx are retried with back-off, 400 a few times)
    error = ApiError(status=403, type="permission_error", message="this key may not use this model")
    with ScriptedModelServer([error], default_policy=False) as srv:
        started = time.monotonic()
        out = run_turn(agent.request(srv, "Hello?"), no_leftover_groups)
        elapsed = time.monotonic() - started
        assert len(srv.message_requests) == 1
    assert out.exit_code == 1
    assert elapsed < 20
    err = out.one("error")
    assert err["kind"] == "api_error" and err["status"] == 403
    assert "this key may not use this model" in err["message"]
    assert (out.result["is_error"], out.result["reason"]) == (True, "api_error")
    assert not of_type(out.events, "text")


def test_readonly_denies_writes(agent: Agent, no_leftover_groups: set[int]) -> None:
    target = agent.cwd / "new.txt"
    script = [
        ToolCall("Write", {"file_path": str(target), "content": "x"}),  # not even offered to the model
        ToolCall("Bash", {"command": "touch new.txt", "description": "create it"}),  # denied (dontAsk)
        ToolCall("Bash", {"command": "ls src", "description": "list"}),  # read-only commands still run
        Reply("I could not write."),
    ]
    with ScriptedModelServer(script, default_policy=False) as srv:
        out = run_turn(agent.request(srv, "Create new.txt", permission="readonly"), no_leftover_groups)
        srv.assert_complete()
        offered = {t["name"] for t in srv.message_requests[0].body["tools"]}
    assert not target.exists()
    assert "Write" not in offered and "Edit" not in offered and "Read" in offered
    assert [r["ok"] for r in of_type(out.events, "tool_result")] == [False, False, True]
    assert out.result["is_error"] is False
    assert out.result["permission_denials"] == ["Bash: touch new.txt"]


def test_kill_mid_turn_leaves_no_processes(agent: Agent, no_leftover_groups: set[int]) -> None:
    with ScriptedModelServer([Reply("too late", latency_s=60)], default_policy=False) as srv:
        req = agent.request(srv, "Think for a long time.")
        spawned, files = start(req)
        no_leftover_groups.add(spawned.pid)
        assert srv.wait_for_requests(1, timeout=TURN_TIMEOUT_S), files.err.read_text()[-2000:]
        assert process.kill_group(spawned.pid, spawned.start_time, grace_s=2.0) is True
        assert not process.group_alive(spawned.pid)
        code = process.exit_code(files, spawned.pid)
    out = collect(req, files, code)
    # SIGTERM to the group: the sh wrapper dies of it (-15, the reaped status kept for exit_code()), or in a turn
    # namespace the init reports the program's death by signal 15 as 143, like any shell
    assert code == (143 if containment.detect().mode == "pidns" else -15)
    assert out.events[0]["type"] == "started"
    assert out.result["is_error"] is True and out.result["reason"] == "exit_code"
    assert any("killed by signal 15" in e["message"] for e in of_type(out.events, "error"))
    assert not of_type(out.events, "usage")
