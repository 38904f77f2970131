"""The anthropic runner: availability, argv/env of the worker launch, and parsing its (normalized) stream."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from agent_fleet_mcp.errors import RunnerUnavailable
from agent_fleet_mcp.events import dumps, make
from agent_fleet_mcp.runners import get_runner, process
from agent_fleet_mcp.runners.anthropic import DEFAULT_MODEL, AnthropicRunner, no_key_message
from agent_fleet_mcp.runners.base import TurnRequest
from agent_fleet_mcp.spec import AgentSpec
from agent_fleet_mcp.testing import Reply, ScriptedModelServer

ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/me",
    "ANTHROPIC_API_KEY": "sk-test",
    "ANTHROPIC_BASE_URL": "http://127.0.0.1:1",
    "AGENT_FLEET_MAX_RETRIES": "0",
    "CLAUDECODE": "1",
    "CLAUDE_CODE_ENTRYPOINT": "cli",
    "AWS_SECRET_ACCESS_KEY": "nope",
    "OPENAI_API_KEY": "nope",
}


def request(tmp_path: Path, spec: AgentSpec, env: dict[str, str] | None = None, prompt: str = "do it") -> TurnRequest:
    cwd = tmp_path / "proj"
    cwd.mkdir(exist_ok=True)
    return TurnRequest(agent_id="a1", agent_name="rev", turn=1, prompt=prompt, spec=spec, cwd=cwd,
                       agent_dir=tmp_path / "agent", env=ENV if env is None else env)  # fmt: skip


def test_registered_under_its_name() -> None:
    assert isinstance(get_runner("anthropic"), AnthropicRunner)


def test_check_available_needs_a_key_or_token() -> None:
    r, spec = AnthropicRunner(), AgentSpec()
    r.check_available(spec, {"ANTHROPIC_API_KEY": "k"})
    r.check_available(spec, {"ANTHROPIC_AUTH_TOKEN": "t"})
    with pytest.raises(RunnerUnavailable, match=r"ANTHROPIC_API_KEY is not set: set ANTHROPIC_API_KEY \(or ANTHROP"):
        r.check_available(spec, {})
    with pytest.raises(RunnerUnavailable, match="no tool"):
        r.check_available(AgentSpec(tools=("Read", "grep")), {"ANTHROPIC_API_KEY": "k"})


def test_no_key_message_says_a_base_url_still_needs_a_key() -> None:
    """A custom ANTHROPIC_BASE_URL does not replace the key: the SDK refuses requests without one."""
    r, spec = AnthropicRunner(), AgentSpec()
    with pytest.raises(RunnerUnavailable) as caught:
        r.check_available(spec, {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9", "ANTHROPIC_API_KEY": ""})
    msg = str(caught.value)
    assert "still needs a key" in msg and "ANTHROPIC_API_KEY=dummy" in msg
    assert "point ANTHROPIC_BASE_URL at a compatible endpoint" not in msg
    r.check_available(spec, {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9", "ANTHROPIC_API_KEY": "dummy"})  # the fix
    without_url = no_key_message({})
    assert "agent-fleet scripted-model" in without_url and "ANTHROPIC_API_KEY=dummy" in without_url


def test_build_minimal(tmp_path: Path) -> None:
    req = request(tmp_path, AgentSpec())
    plan = AnthropicRunner().build(req)
    assert plan.argv == [
        sys.executable, "-m", "agent_fleet_mcp.worker", "--agent-dir", str(req.agent_dir), "--cwd", str(req.cwd),
        "--model", DEFAULT_MODEL, "--permission", "readonly",
    ]  # fmt: skip
    assert plan.env == {
        "PATH": "/usr/bin:/bin",
        "HOME": "/home/me",
        "ANTHROPIC_API_KEY": "sk-test",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:1",
        "AGENT_FLEET_MAX_RETRIES": "0",
    }  # no CLAUDECODE nesting guard, no unrelated secrets
    assert (plan.cwd, plan.stdin_text) == (req.cwd, "do it")
    assert not (req.agent_dir / "system_prompt.md").exists()


def test_build_full_spec_puts_the_system_prompt_in_a_file(tmp_path: Path) -> None:
    spec = AgentSpec(model="claude-opus-4-5", permission="readwrite", max_turns=7, max_cost_usd=0.5,
                     system_prompt="Be terse.\n" * 5000, tools=("read_file", "bash"))  # fmt: skip
    req = request(tmp_path, spec)
    argv = AnthropicRunner().build(req).argv
    opts = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert opts == {
        "--agent-dir": str(req.agent_dir), "--cwd": str(req.cwd), "--model": "claude-opus-4-5",
        "--permission": "readwrite", "--max-turns": "7", "--max-cost-usd": "0.5",
        "--system-file": str(req.agent_dir / "system_prompt.md"), "--tools": "read_file,bash",
    }  # fmt: skip
    assert (req.agent_dir / "system_prompt.md").read_text() == spec.system_prompt
    assert sum(len(a) for a in argv) < 1000  # the system prompt stays out of argv


def test_parser_passes_events_and_closes_only_streams_without_a_result() -> None:
    r = AnthropicRunner()
    p = r.new_parser(None)  # type: ignore[arg-type]
    assert p.feed("not json") == []
    assert dict(p.feed(dumps(make("text", text="partial")).strip())[0])["text"] == "partial"
    closing = [dict(e) for e in p.finish(-9, "")]
    assert [e["type"] for e in closing] == ["error", "result"]
    assert closing[1]["is_error"] is True and closing[1]["text"] == "partial"

    p = r.new_parser(None)  # type: ignore[arg-type]
    p.feed(dumps(make("result", text="done", is_error=False)))
    assert p.finish(0, "") == []


def test_launched_through_process_module_end_to_end(tmp_path: Path) -> None:
    with ScriptedModelServer([Reply("hello from the worker")]) as srv:
        env = {**ENV, "ANTHROPIC_BASE_URL": srv.base_url, "PATH": "/usr/bin:/bin"}
        req = request(tmp_path, AgentSpec(system_prompt="Greet."), env=env, prompt="say hello")
        runner = AnthropicRunner()
        runner.check_available(req.spec, env)
        files = process.TurnFiles.for_turn(req.agent_dir / "turns", 1)
        spawned = process.spawn(runner.build(req), files)
        deadline = time.monotonic() + 30
        while (code := process.exit_code(files, spawned.pid)) is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    parser = runner.new_parser(req)
    events = [dict(e) for line in files.out.read_text().splitlines() for e in parser.feed(line)]
    events += [dict(e) for e in parser.finish(code, files.err.read_text())]
    assert code == 0, files.err.read_text()
    assert [e["type"] for e in events] == ["started", "text", "usage", "result"]
    assert events[-1]["text"] == "hello from the worker"
    assert srv.message_requests[0].body["system"][0]["text"].endswith("Greet.")
