"""claude-code runner: finding the CLI, argv, permissions, environment (no process is started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_fleet_mcp.errors import RunnerUnavailable
from agent_fleet_mcp.runners import get_runner, headless
from agent_fleet_mcp.runners.claude_code import ClaudeCodeRunner
from agent_fleet_mcp.spec import AgentSpec

from .helpers import MakeRequest, fake_exe

SPEC = AgentSpec(runner="claude-code")


@pytest.fixture
def tools_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tools folder holding a stub `claude`; the checkout's own .tools is hidden from the lookup."""
    monkeypatch.setattr(headless, "REPO_TOOLS_BIN", tmp_path / "no-such-dir")
    folder = tmp_path / "bin"
    fake_exe(folder, "claude")
    return folder


def test_registry_resolves_the_runner() -> None:
    assert isinstance(get_runner("claude-code"), ClaudeCodeRunner)


def test_missing_cli_is_unavailable_with_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(headless, "REPO_TOOLS_BIN", tmp_path / "no-such-dir")
    with pytest.raises(RunnerUnavailable, match=r"claude is not installed: npm install -g @anthropic-ai/claude-code"):
        ClaudeCodeRunner().check_available(SPEC, {"PATH": str(tmp_path)})


def test_cli_found_on_path_in_tools_bin_env_and_in_repo_tools(
    tmp_path: Path, tools_bin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = ClaudeCodeRunner()
    runner.check_available(SPEC, {"PATH": f"/nonexistent:{tools_bin}"})
    runner.check_available(SPEC, {"PATH": "/nonexistent", headless.TOOLS_BIN_ENV: str(tools_bin)})
    monkeypatch.setattr(headless, "REPO_TOOLS_BIN", tools_bin)
    runner.check_available(SPEC, {"PATH": "/nonexistent"})
    assert headless.find_cli("claude", {"PATH": ""}) == str(tools_bin / "claude")


def test_tools_bin_env_wins_over_path(tmp_path: Path, tools_bin: Path) -> None:
    other = tmp_path / "other"
    fake_exe(other, "claude")
    env = {"PATH": str(other), headless.TOOLS_BIN_ENV: str(tools_bin)}
    assert headless.find_cli("claude", env) == str(tools_bin / "claude")


def test_default_argv_is_readonly_headless_with_max_turns(make_request: MakeRequest, tools_bin: Path) -> None:
    req = make_request("claude-code", env={"PATH": str(tools_bin), "HOME": "/home/dev"}, prompt="Review src/")
    plan = ClaudeCodeRunner().build(req)
    assert plan.argv == [
        str(tools_bin / "claude"), "-p", "--output-format", "stream-json", "--verbose", "--max-turns", "30",
        "--permission-mode", "dontAsk", "--allowedTools", "Read,Grep,Glob,LS",
        "--disallowedTools", "Write,Edit,MultiEdit,NotebookEdit", "--strict-mcp-config",
    ]  # fmt: skip
    assert plan.stdin_text == "Review src/"  # the prompt goes on stdin, never in argv
    assert plan.cwd == req.cwd


def test_full_argv_readwrite_resume(make_request: MakeRequest, tools_bin: Path) -> None:
    req = make_request(
        "claude-code",
        env={"PATH": str(tools_bin)},
        turn=2,
        session_id="12e2e7cf-7ca0-495e-bb0e-98ab57ea9918",
        permission="readwrite",
        model="claude-sonnet-4-5",
        tools=("Read", "Edit", "Bash(pytest *)"),
        system_prompt="You are the builder.\nKeep diffs small.",
        max_turns=7,
        max_cost_usd=2.5,
    )
    argv = ClaudeCodeRunner().build(req).argv
    assert argv[1:] == [
        "-p", "--output-format", "stream-json", "--verbose", "--max-turns", "7",
        "--permission-mode", "acceptEdits", "--allowedTools", "Read,Edit,Bash(pytest *)",
        "--strict-mcp-config", "--model", "claude-sonnet-4-5",
        "--append-system-prompt", "You are the builder.\nKeep diffs small.",
        "--max-budget-usd", "2.5", "--resume", "12e2e7cf-7ca0-495e-bb0e-98ab57ea9918",
    ]  # fmt: skip


def test_readonly_tools_narrow_the_allowed_list_and_writes_stay_denied(
    make_request: MakeRequest, tools_bin: Path
) -> None:
    req = make_request("claude-code", env={"PATH": str(tools_bin)}, tools=("Read", "Grep"))
    argv = ClaudeCodeRunner().build(req).argv
    assert argv[argv.index("--allowedTools") + 1] == "Read,Grep"
    assert argv[argv.index("--disallowedTools") + 1] == "Write,Edit,MultiEdit,NotebookEdit"


def test_blank_system_prompt_is_not_passed(make_request: MakeRequest, tools_bin: Path) -> None:
    req = make_request("claude-code", env={"PATH": str(tools_bin)}, system_prompt="  \n ")
    assert "--append-system-prompt" not in ClaudeCodeRunner().build(req).argv


def test_environment_is_scrubbed(make_request: MakeRequest, tools_bin: Path) -> None:
    env = {
        "PATH": str(tools_bin),
        "HOME": "/home/dev",
        "ANTHROPIC_API_KEY": "sk-test",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDECODE": "1",
        "CLAUDE_CODE_ENTRYPOINT": "cli",
        "AGENT_FLEET_HOME": "/tmp/fleet",
        "OPENAI_API_KEY": "sk-other",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "LC_ALL": "C.UTF-8",
    }
    plan = ClaudeCodeRunner().build(make_request("claude-code", env=env))
    assert plan.env == {
        "PATH": str(tools_bin),
        "HOME": "/home/dev",
        "ANTHROPIC_API_KEY": "sk-test",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "AGENT_FLEET_HOME": "/tmp/fleet",
        "LC_ALL": "C.UTF-8",
    }


def test_build_without_cli_raises(make_request: MakeRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(headless, "REPO_TOOLS_BIN", tmp_path / "no-such-dir")
    with pytest.raises(RunnerUnavailable):
        ClaudeCodeRunner().build(make_request("claude-code", env={"PATH": str(tmp_path)}))
