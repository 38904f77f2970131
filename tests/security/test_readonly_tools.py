"""Attack: a readonly agent whose `tools` would let it write or run commands. Every runner refuses it before argv
is built, with an error naming the tools; catalog files and create_agent refuse it where the spec is made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agent_fleet_mcp.catalog import parse_definition
from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.errors import DefinitionError, InvalidRequest
from agent_fleet_mcp.runners import get_runner, headless
from agent_fleet_mcp.runners.base import TurnRequest
from agent_fleet_mcp.spec import AgentSpec
from agent_fleet_mcp.trust import trust_files


def fake_exe(folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("#!/bin/sh\nexit 0\n")
    (folder / name).chmod(0o755)


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(headless, "REPO_TOOLS_BIN", tmp_path / "no-such-dir")
    folder = tmp_path / "bin"
    for exe in ("claude", "gemini", "codex"):
        fake_exe(folder, exe)
    return folder


def request(tmp_path: Path, bin_dir: Path, spec: AgentSpec) -> TurnRequest:
    return TurnRequest(
        agent_id="ag_1", agent_name="ro", turn=1, prompt="look around", spec=spec, cwd=tmp_path,
        agent_dir=tmp_path / "agent", env={"PATH": str(bin_dir), "HOME": str(tmp_path), "ANTHROPIC_API_KEY": "k"},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("runner", "tools", "refused"),
    [
        ("claude-code", ("Bash",), ["Bash"]),
        ("claude-code", ("Read", "Edit", "Bash(git status)", "Write"), ["Edit", "Bash(git status)", "Write"]),
        ("claude-code", ("MultiEdit", "NotebookEdit", "Task"), ["MultiEdit", "NotebookEdit", "Task"]),
        ("gemini", ("run_shell_command", "write_file"), ["run_shell_command", "write_file"]),
        ("gemini", ("read_file", "replace", "run_shell_command(ls)"), ["replace", "run_shell_command(ls)"]),
        ("codex", ("workspace-write",), ["workspace-write"]),
        ("anthropic", ("read_file", "bash", "write_file"), ["bash", "write_file"]),
    ],
)
def test_readonly_agent_with_write_or_shell_tools_gets_no_argv(
    tmp_path: Path, bin_dir: Path, runner: str, tools: tuple[str, ...], refused: list[str]
) -> None:
    spec = AgentSpec(runner=runner, permission="readonly", tools=tools)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest) as info:
        plan = get_runner(runner).build(request(tmp_path, bin_dir, spec))
        pytest.fail(f"argv was built for a readonly agent with {tools}: {plan.argv}")
    message = str(info.value)
    assert f"does not allow tool(s) {', '.join(refused)}" in message
    assert "readwrite" in message  # says what to do


@pytest.mark.parametrize(
    ("runner", "tools"),
    [
        ("claude-code", ("Read", "Grep", "Read(src/**)", "WebSearch")),
        ("gemini", ("read_file", "glob", "list_directory")),
        ("anthropic", ("read_file", "grep")),
    ],
)
def test_readonly_agent_with_read_tools_builds(
    tmp_path: Path, bin_dir: Path, runner: str, tools: tuple[str, ...]
) -> None:
    spec = AgentSpec(runner=runner, permission="readonly", tools=tools)  # type: ignore[arg-type]
    argv = get_runner(runner).build(request(tmp_path, bin_dir, spec)).argv
    assert ",".join(tools) in argv


def test_readwrite_agent_keeps_its_tools(tmp_path: Path, bin_dir: Path) -> None:
    spec = AgentSpec(runner="claude-code", permission="readwrite", tools=("Bash(pytest *)", "Edit"))
    argv = get_runner("claude-code").build(request(tmp_path, bin_dir, spec)).argv
    assert argv[argv.index("--allowedTools") + 1] == "Bash(pytest *),Edit"


def test_readonly_codex_and_gemini_argv_stay_read_only(tmp_path: Path, bin_dir: Path) -> None:
    codex = get_runner("codex").build(request(tmp_path, bin_dir, AgentSpec(runner="codex"))).argv
    assert codex[codex.index("-s") + 1] == "read-only"
    gemini = get_runner("gemini").build(request(tmp_path, bin_dir, AgentSpec(runner="gemini"))).argv
    assert gemini[gemini.index("--approval-mode") + 1] == "default"
    assert "--allowed-tools" not in gemini


def test_catalog_file_with_readonly_bash_is_a_definition_error(tmp_path: Path) -> None:
    path = tmp_path / "ro.md"
    meta = {"name": "ro", "runner": "claude-code", "permission": "readonly", "tools": ["Read", "Bash"]}
    path.write_text(f"---\n{yaml.safe_dump(meta)}---\nLook only.\n", encoding="utf-8")
    with pytest.raises(DefinitionError) as info:
        parse_definition(path)
    assert info.value.field == "tools"
    assert "does not allow tool(s) Bash" in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.anyio
async def test_create_agent_and_run_agents_refuse_readonly_with_shell(
    client: Any, project: Path, settings: Settings
) -> None:
    folder = project / "agents"
    folder.mkdir()
    defs = {
        "shell-rw": {
            "name": "shell-rw",
            "runner": "anthropic",
            "permission": "readwrite",
            "tools": ["read_file", "bash"],
        },
        "shell-ro": {"name": "shell-ro", "runner": "gemini", "permission": "readonly", "tools": ["run_shell_command"]},
    }
    for name, meta in defs.items():
        (folder / f"{name}.md").write_text(f"---\n{yaml.safe_dump(meta)}---\nbody\n", encoding="utf-8")
    trust_files(settings.home, sorted(folder.glob("*.md")))  # a person trusted them: the readonly rule still holds
    res = await client.call_tool(
        "create_agent", {"name": "a", "template": "shell-rw", "permission": "readonly", "prompt": "look"}
    )
    assert res.is_error and "does not allow tool(s) bash" in res.content[0].text
    res = await client.call_tool("run_agents", {"runs": [{"agent": "shell-ro", "input": "look"}]})
    assert res.is_error and "does not allow tool(s) run_shell_command" in res.content[0].text
    assert str(folder / "shell-ro.md") in res.content[0].text
    status = await client.call_tool("get_agent_status", {})
    assert status.structured_content is not None and status.structured_content["agents"] == []
