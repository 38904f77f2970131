"""The default policy: a mini tool loop on a real folder, for both tool vocabularies, through the real SDK."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from agent_fleet_mcp.testing import (
    Create,
    Replace,
    Reply,
    ScriptedModelServer,
    ToolCall,
    default_policy,
    parse_edit_instructions,
)
from agent_fleet_mcp.testing.conversation import listing_paths

Executor = Callable[[str, dict[str, Any]], str]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / ".git").mkdir()
    (tmp_path / "README.md").write_text("# Gadget service\nIt turns gadgets into reports.\n")
    (tmp_path / "src" / "widget_parser.py").write_text(
        "import re\n\n\ndef parse_widget(text):\n    return text.strip()\n"
    )
    (tmp_path / "src" / "util.py").write_text("def helper():\n    return 1\n")
    (tmp_path / ".git" / "config").write_text("[core]\n")
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\r\n")
    return tmp_path


def schema(*props: str) -> dict[str, Any]:
    return {"type": "object", "properties": {p: {"type": "string"} for p in props}}


WORKER_TOOLS: list[Any] = [
    {"name": "list_files", "input_schema": schema("pattern")},
    {"name": "read_file", "input_schema": schema("path", "start_line", "end_line")},
    {"name": "grep", "input_schema": schema("pattern", "path")},
    {"name": "write_file", "input_schema": schema("path", "content")},
    {"name": "edit_file", "input_schema": schema("path", "old", "new")},
    {"name": "bash", "input_schema": schema("command")},
]
CLAUDE_TOOLS: list[Any] = [
    {"name": "Task", "input_schema": schema("prompt")},
    {"name": "Bash", "input_schema": schema("command")},
    {"name": "Glob", "input_schema": schema("pattern", "path")},
    {"name": "Grep", "input_schema": schema("pattern", "path", "output_mode", "-n", "-i")},
    {"name": "Read", "input_schema": schema("file_path", "offset", "limit")},
    {"name": "Edit", "input_schema": schema("file_path", "old_string", "new_string")},
    {"name": "Write", "input_schema": schema("file_path", "content")},
    {"name": "TodoWrite", "input_schema": schema("todos")},
]


def files_of(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and ".git" not in p.parts)


def worker_executor(root: Path) -> Executor:
    """Our worker's tools, relative paths, ``N\\tline`` read output, ``path:N:line`` grep output."""

    def run(name: str, args: dict[str, Any]) -> str:
        if name == "list_files":
            rels = [p.relative_to(root).as_posix() for p in files_of(root)]
            return "\n".join(r for r in rels if fnmatch.fnmatch(r, args["pattern"]) or "/" not in r)
        if name == "read_file":
            lines = (root / args["path"]).read_text().splitlines()
            return "\n".join(f"{i:>6}\t{line}" for i, line in enumerate(lines, 1))
        if name == "grep":
            hits = [
                f"{p.relative_to(root).as_posix()}:{i}:{line}"
                for p in files_of(root)
                if p.suffix != ".png"
                for i, line in enumerate(p.read_text().splitlines(), 1)
                if re.search(args["pattern"], line)
            ]
            return "\n".join(hits) or "No matches."
        if name == "edit_file":
            path = root / args["path"]
            path.write_text(path.read_text().replace(args["old"], args["new"], 1))
            return f"Edited {args['path']}"
        if name == "write_file":
            (root / args["path"]).parent.mkdir(parents=True, exist_ok=True)
            (root / args["path"]).write_text(args["content"])
            return f"Wrote {args['path']}"
        raise ValueError(f"unknown tool {name}")

    return run


def claude_executor(root: Path) -> Executor:
    """Claude Code's tools: absolute paths, ``cat -n`` with an arrow, Edit only after Read."""
    read: set[str] = set()

    def run(name: str, args: dict[str, Any]) -> str:
        if name == "Glob":
            return "\n".join(str(p) for p in files_of(root))
        if name == "Read":
            assert args["file_path"].startswith("/"), "Claude Code wants absolute paths"
            read.add(args["file_path"])
            lines = Path(args["file_path"]).read_text().splitlines()
            return "\n".join(f"{i:>6}→{line}" for i, line in enumerate(lines, 1))
        if name == "Grep":
            assert args.get("output_mode") == "content"
            flags = re.IGNORECASE if args.get("-i") else 0
            hits = [
                f"{p}:{i}:{line}"
                for p in files_of(root)
                if p.suffix != ".png"
                for i, line in enumerate(p.read_text().splitlines(), 1)
                if re.search(args["pattern"], line, flags)
            ]
            return "\n".join(hits) or "No matches found"
        if name == "Edit":
            if args["file_path"] not in read:
                raise ValueError("File has not been read yet. Read it first before writing to it.")
            path = Path(args["file_path"])
            path.write_text(path.read_text().replace(args["old_string"], args["new_string"], 1))
            return f"The file {path} has been updated."
        if name == "Write":
            Path(args["file_path"]).parent.mkdir(parents=True, exist_ok=True)
            Path(args["file_path"]).write_text(args["content"])
            return f"File created successfully at: {args['file_path']}"
        raise ValueError(f"unknown tool {name}")

    return run


@pytest.fixture
def client() -> Iterator[anthropic.Anthropic]:
    with (
        ScriptedModelServer() as srv,
        anthropic.Anthropic(base_url=srv.base_url, api_key="t", max_retries=0) as c,
    ):
        yield c


def loop(
    client: anthropic.Anthropic, prompt: str, tools: list[Any], execute: Executor, *, system: str = ""
) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """A minimal agent loop; returns the final text and the tool calls made."""
    messages: list[Any] = [
        {"role": "system", "content": "ignored"},
        {"role": "user", "content": [{"type": "text", "text": "<system-reminder>be nice</system-reminder>"}, prompt]},
    ]
    messages[1]["content"][1] = {"type": "text", "text": prompt}
    calls: list[tuple[str, dict[str, Any]]] = []
    for _ in range(10):
        with client.messages.stream(
            model="m", max_tokens=4096, system=system or "You are an agent.", messages=messages, tools=tools
        ) as stream:
            msg = stream.get_final_message()
        messages.append({"role": "assistant", "content": [b.to_dict() for b in msg.content]})
        if msg.stop_reason != "tool_use":
            return "".join(b.text for b in msg.content if b.type == "text"), calls
        results: list[Any] = []
        for block in msg.content:
            if block.type == "tool_use":
                args = dict(block.input)  # type: ignore[call-overload]
                calls.append((block.name, args))
                try:
                    out, err = execute(block.name, args), False
                except Exception as exc:
                    out, err = f"Error: {exc}", True
                results.append({"type": "tool_result", "tool_use_id": block.id, "content": out, "is_error": err})
        messages.append({"role": "user", "content": results})
    raise AssertionError("the policy did not finish within 10 requests")


PROMPT = "Explain how the widget parser works"


def test_worker_vocabulary_explores_and_summarizes(client: anthropic.Anthropic, folder: Path) -> None:
    text, calls = loop(client, PROMPT, WORKER_TOOLS, worker_executor(folder))
    names = [name for name, _ in calls]
    assert names[0] == "list_files" and names[-1] == "grep" and len(calls) <= 6
    assert ("read_file", {"path": "src/widget_parser.py"}) in calls
    assert all(".git" not in str(args) and "logo.png" not in str(args) for _, args in calls)
    assert "src/widget_parser.py" in text and "def parse_widget(text):" in text
    assert "Searching for `widget`" in text


def test_claude_code_vocabulary_explores_with_absolute_paths(client: anthropic.Anthropic, folder: Path) -> None:
    system = f"You are Claude Code.\n<env>\nWorking directory: {folder}\nIs directory a git repo: No\n</env>"
    text, calls = loop(client, PROMPT, CLAUDE_TOOLS, claude_executor(folder), system=system)
    assert calls[0][0] == "Glob" and len(calls) <= 6
    assert ("Read", {"file_path": f"{folder}/src/widget_parser.py"}) in calls
    grep = next(args for name, args in calls if name == "Grep")
    assert grep == {"pattern": "widget", "output_mode": "content", "-n": True, "-i": True}
    assert "src/widget_parser.py" in text and "import re" in text


def test_falls_back_to_readme_and_sources_when_nothing_matches(client: anthropic.Anthropic, folder: Path) -> None:
    text, calls = loop(client, "What is going on here?", WORKER_TOOLS, worker_executor(folder))
    reads = [args["path"] for name, args in calls if name == "read_file"]
    assert reads[0] == "README.md" and len(reads) == 2
    assert "# Gadget service" in text


@pytest.mark.parametrize("vocabulary", ["worker", "claude"])
def test_edit_grammar_performs_the_edit(client: anthropic.Anthropic, folder: Path, vocabulary: str) -> None:
    prompt = 'Please replace "return text.strip()" with "return text.strip().lower()" in src/widget_parser.py.'
    if vocabulary == "worker":
        text, calls = loop(client, prompt, WORKER_TOOLS, worker_executor(folder))
        assert calls[-1] == (
            "edit_file",
            {"path": "src/widget_parser.py", "old": "return text.strip()", "new": "return text.strip().lower()"},
        )
    else:
        system = f"Working directory: {folder}"
        text, calls = loop(client, prompt, CLAUDE_TOOLS, claude_executor(folder), system=system)
        assert [name for name, _ in calls] == ["Read", "Edit"]
        assert calls[1][1]["file_path"] == f"{folder}/src/widget_parser.py"
    assert "return text.strip().lower()" in (folder / "src" / "widget_parser.py").read_text()
    assert "Replaced" in text and "src/widget_parser.py" in text


def test_create_file_grammar(client: anthropic.Anthropic, folder: Path) -> None:
    prompt = 'Then create file notes/todo.md with content "# TODO\\n- ship it\\n" please.'
    text, calls = loop(client, prompt, WORKER_TOOLS, worker_executor(folder))
    assert calls == [("write_file", {"path": "notes/todo.md", "content": "# TODO\n- ship it\n"})]
    assert (folder / "notes" / "todo.md").read_text() == "# TODO\n- ship it\n"
    assert "Created `notes/todo.md`" in text


def test_failed_edit_is_reported(client: anthropic.Anthropic, folder: Path) -> None:
    prompt = "replace 'nope' with 'x' in missing.py"
    text, calls = loop(client, prompt, WORKER_TOOLS, worker_executor(folder))
    assert [name for name, _ in calls] == ["read_file", "edit_file"]
    assert "Could not change `missing.py`" in text


def test_edit_without_write_tool_explores_and_says_so(client: anthropic.Anthropic, folder: Path) -> None:
    tools = [t for t in WORKER_TOOLS if t["name"] not in ("write_file", "edit_file")]
    text, _ = loop(client, "replace 'a' with 'b' in README.md", tools, worker_executor(folder))
    assert "no write tool" in text


def test_parse_edit_instructions() -> None:
    prompt = (
        'First replace `foo()` with `bar()` in file \'src/a b.py\'; then replace "x\\"y" with "z" in c.txt. '
        'Finally write a new file out/notes.md with content: "line1\\nline2"'
    )
    assert parse_edit_instructions(prompt) == [
        Replace("src/a b.py", "foo()", "bar()"),
        Replace("c.txt", 'x"y', "z"),
        Create("out/notes.md", "line1\nline2"),
    ]
    assert parse_edit_instructions("Summarize the folder; do not replace anything.") == []


def body(messages: Any, tools: Any = None, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 1000, "messages": messages, "tools": tools, **extra}


def test_no_tools_gives_text() -> None:
    step = default_policy(body([{"role": "user", "content": "Write a haiku about queues"}]))
    assert isinstance(step, Reply) and "haiku" in step.text


def test_bash_only_vocabulary_uses_shell_commands() -> None:
    tools = [{"name": "bash", "input_schema": schema("command")}]
    step = default_policy(body([{"role": "user", "content": "look around"}], tools))
    assert isinstance(step, ToolCall) and step.name == "bash" and step.input["command"].startswith("find .")


def test_tool_call_cap() -> None:
    messages: list[Any] = [{"role": "user", "content": "grep everything"}]
    for i in range(6):
        use = {"type": "tool_use", "id": f"t{i}", "name": "grep", "input": {"pattern": "x"}}
        messages += [
            {"role": "assistant", "content": [use]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{i}", "content": "a:1:x"}]},
        ]
    assert isinstance(default_policy(body(messages, WORKER_TOOLS)), Reply)


def test_new_prompt_starts_a_new_task() -> None:
    use = {"type": "tool_use", "id": "t1", "name": "list_files", "input": {"pattern": "**/*"}}
    messages: list[Any] = [
        {"role": "user", "content": "first task"},
        {"role": "assistant", "content": [use]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "a.py"}]},
        {"role": "assistant", "content": "Done with the first."},
        {"role": "user", "content": "second task about a.py"},
    ]
    step = default_policy(body(messages, WORKER_TOOLS))
    assert isinstance(step, ToolCall) and step.name == "list_files"


@pytest.mark.parametrize(
    "messages",
    [
        None,
        "not a list",
        [],
        [42, None, "x"],
        [{"role": "user"}],
        [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": "AAAA"}}]}],
        [{"role": "assistant", "content": "prefill"}],
        [
            {"role": "user", "content": "read it"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "Mystery", "input": "??"}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "is_error": True}]},
        ],
        [
            {"role": "user", "content": "summarize"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "a", "name": "list_files", "input": dict[str, Any]()}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "a", "content": [{"type": "image"}, {"type": "text"}]}
                ],
            },
        ],
    ],
)
@pytest.mark.parametrize("tools", [None, [], [{"name": "weird"}, "junk"], WORKER_TOOLS, CLAUDE_TOOLS])
def test_odd_input_never_crashes(messages: Any, tools: Any) -> None:
    step = default_policy(body(messages, tools, system=[{"type": "text", "text": "cwd: /tmp"}]))
    assert isinstance(step, Reply | ToolCall)


def test_max_tokens_truncates_text() -> None:
    step = default_policy(body([{"role": "user", "content": "x " * 200}], max_tokens=2))
    assert isinstance(step, Reply) and step.stop_reason == "max_tokens" and len(step.text) == 8


def test_listing_formats() -> None:
    tree = "- /repo/\n  - README.md\n  - src/\n    - app.py\n"
    assert listing_paths(tree, "/repo") == ["README.md", "src/app.py"]
    flat = "./a.py\nsrc/b.py\t120 bytes\nc.md (3 lines)\n\nNo files found\n/repo/d.txt\n… and 3 more files"
    assert listing_paths(flat, "/repo") == ["a.py", "src/b.py", "c.md", "d.txt"]


def test_read_results_lose_line_numbers_and_notes() -> None:
    from agent_fleet_mcp.testing.conversation import file_lines

    worker = "     1\tfirst\n     2\t\n     3\tthird\n… [f.py has 900 lines; showed 1-3. Read more with start_line=4]"
    assert file_lines(worker) == ["first", "", "third"]
    claude = "     1→alpha\n     2→beta\n\n<system-reminder>\nmalware?\n</system-reminder>\n"
    assert file_lines(claude)[:2] == ["alpha", "beta"]
