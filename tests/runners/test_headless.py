"""runners/headless.py: what the claude-code, codex and gemini runners share (finding the CLI, the readonly check,
the environment, stdin, the stream plumbing, the run's usage event)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent_fleet_mcp.errors import InvalidRequest, RunnerUnavailable
from agent_fleet_mcp.events import Event, make
from agent_fleet_mcp.runners import get_runner, headless
from agent_fleet_mcp.runners.base import TurnRequest
from agent_fleet_mcp.runners.headless import HeadlessParser, HeadlessRunner, run_usage
from agent_fleet_mcp.spec import AgentSpec

from .helpers import CliBin, MakeRequest, replay

CLIS = [("claude-code", "claude", "@anthropic-ai/claude-code"), ("codex", "codex", "@openai/codex"),
        ("gemini", "gemini", "@google/gemini-cli")]  # fmt: skip


@pytest.mark.parametrize(("runner", "cli", "package"), CLIS)
def test_a_missing_cli_is_unavailable_with_its_install_command(
    runner: str, cli: str, package: str, tmp_path: Path, no_repo_tools: None
) -> None:
    with pytest.raises(RunnerUnavailable, match=rf"^{cli} is not installed: npm install -g {package} "):
        get_runner(runner).check_available(AgentSpec(runner=runner), {"PATH": str(tmp_path)})  # type: ignore[arg-type]


@pytest.mark.parametrize(("runner", "cli", "package"), CLIS)
def test_the_cli_is_found_on_path_and_in_the_tools_bin(runner: str, cli: str, package: str, cli_bin: CliBin) -> None:
    found = get_runner(runner)
    assert isinstance(found, HeadlessRunner) and found.name == runner and found.package == package
    spec = AgentSpec(runner=runner)  # type: ignore[arg-type]
    found.check_available(spec, {"PATH": str(cli_bin(cli))})
    found.check_available(spec, {"PATH": "", headless.TOOLS_BIN_ENV: str(cli_bin(cli))})


class Echo(HeadlessRunner):
    """A made-up CLI: ``echo-cli --json`` that prints the prompt back."""

    name = "codex"  # a runner name the spec accepts
    cli = "echo-cli"
    package = "@example/echo-cli"
    env_prefixes = ("ECHO_",)
    env_keys = ("ECHO_HOME_DIR",)

    def __init__(self) -> None:
        self.argv_calls = 0

    def argv(self, exe: str, req: TurnRequest) -> list[str]:
        self.argv_calls += 1
        return [exe, "--json"]

    def new_parser(self, req: TurnRequest) -> EchoParser:
        return EchoParser(req)


class EchoParser(HeadlessParser):
    def on_object(self, obj: dict[str, Any]) -> list[Event]:
        if obj.get("type") == "say":
            self._last_text = str(obj.get("text"))
            return [make("text", text=self._last_text)]
        if obj.get("type") == "done":
            self._done = True
            return [make("result", text=self._last_text, is_error=False)]
        return []


def test_build_runs_the_cli_found_with_a_scrubbed_env_and_the_prompt_on_stdin(
    make_request: MakeRequest, cli_bin: CliBin
) -> None:
    folder = cli_bin("echo-cli")
    env = {"PATH": str(folder), "HOME": "/h", "ECHO_TOKEN": "t", "ECHO_HOME_DIR": "/e", "OPENAI_API_KEY": "o",
           "CLAUDECODE": "1", "AGENT_FLEET_HTTP_TOKEN": "secret"}  # fmt: skip
    plan = Echo().build(make_request("codex", env=env, prompt="hello"))
    assert plan.argv == [str(folder / "echo-cli"), "--json"]
    assert plan.env == {"PATH": str(folder), "HOME": "/h", "ECHO_TOKEN": "t", "ECHO_HOME_DIR": "/e"}
    assert plan.stdin_text == "hello" and plan.cwd == Path("/home/dev/proj")


def test_a_readonly_spec_with_a_writing_tool_is_refused_before_any_argv(
    make_request: MakeRequest, cli_bin: CliBin
) -> None:
    runner = Echo()
    req = make_request("codex", env={"PATH": str(cli_bin("echo-cli"))}, tools=["Bash"])
    with pytest.raises(InvalidRequest, match="permission readonly does not allow tool"):
        runner.build(req)
    assert runner.argv_calls == 0


def test_the_parser_skips_noise_and_closes_from_the_exit_code(make_request: MakeRequest) -> None:
    lines = ["", "npm warn: something", "[1, 2]", '{"type": "say", "text": "half done"}', '{"type": "other"}']
    events = replay(Echo().new_parser(make_request("codex")), lines, exit_code=3, stderr="boom\n")
    assert [e["type"] for e in events] == ["text", "error", "result"]
    assert events[1]["message"] == "the process exited with code 3: boom"
    assert events[2] == {"type": "result", "text": "half done", "is_error": True, "reason": "exit_code"}


def test_a_stream_that_carried_its_result_closes_with_nothing_more(make_request: MakeRequest) -> None:
    lines = ['{"type": "say", "text": "hi"}', '{"type": "done"}']
    events = replay(Echo().new_parser(make_request("codex")), lines, exit_code=1)
    assert [e["type"] for e in events] == ["text", "result"] and events[1]["is_error"] is False


def test_run_usage_always_carries_cost_even_when_unknown() -> None:
    unknown = run_usage(input=5, output=2, cache_read=1, cache_write=0, model=None)
    assert unknown.get("cost_usd", "absent") is None and "model" not in unknown
    assert [k for k in unknown if k != "ts"] == ["type", "scope", "input", "output", "cache_read", "cache_write",
                                                 "cost_usd"]  # fmt: skip
    known = run_usage(input=5, output=2, cache_read=1, cache_write=0, model="m", cost_usd=0.25, context_tokens=9)
    assert {k: v for k, v in known.items() if k != "ts"} == {
        "type": "usage", "scope": "run", "input": 5, "output": 2, "cache_read": 1, "cache_write": 0,
        "cost_usd": 0.25, "model": "m", "context_tokens": 9,
    }  # fmt: skip
