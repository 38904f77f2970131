"""A tolerant reading of a Messages API request: the current prompt, the tool calls made since, offered tools.

Two tool vocabularies are understood (matched by name; argument keys follow the offered ``input_schema``
when it names them):

=========  ===========================================  =============================================
kind       agent-fleet worker                           Claude Code
=========  ===========================================  =============================================
list       ``list_files {pattern}``                     ``Glob {pattern}`` / ``LS {path}``
read       ``read_file {path}``                         ``Read {file_path}``
grep       ``grep {pattern, path?}``                    ``Grep {pattern, path?, output_mode, -n}``
write      ``write_file {path, content}``               ``Write {file_path, content}``
edit       ``edit_file {path, old, new}``               ``Edit {file_path, old_string, new_string}``
bash       ``bash {command}``                           ``Bash {command}`` (fallback for list/read/grep)
=========  ===========================================  =============================================
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent_fleet_mcp.jsonish import as_dict, as_list, is_object
from agent_fleet_mcp.testing.wire import conversation

TOOL_NAMES: Mapping[str, tuple[str, ...]] = {
    "list": ("list_files", "Glob", "glob", "LS"),
    "read": ("read_file", "Read"),
    "grep": ("grep", "Grep"),
    "write": ("write_file", "Write"),
    "edit": ("edit_file", "Edit"),
    "bash": ("bash", "Bash"),
}
_KIND_OF = {name: kind for kind, names in TOOL_NAMES.items() for name in names}
_REMINDER = re.compile(r"<system-reminder>.*?(?:</system-reminder>|$)", re.DOTALL)
_CWD = re.compile(r"(?im)^\s*(?:current\s+)?(?:working directory|cwd)\s*[:=]\s*`?(/[^\s`]*)`?\s*$")
_LINE_NO = re.compile(r"^\s*\d+(?:→|\t|: ?|\| ?)")


def text_of(content: Any) -> str:
    """The text of a message/tool_result ``content`` (string or list of blocks); images and others skipped."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for item in as_list(content):
        block = as_dict(item)
        if block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif isinstance(item, str):
            parts.append(item)
    return "\n".join(parts)


def _blocks(message: Any) -> list[dict[str, Any]]:
    content = as_dict(message).get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [item for item in as_list(content) if is_object(item)]


def _role(message: Any) -> str | None:
    role = as_dict(message).get("role")
    return role if isinstance(role, str) else None


@dataclass(frozen=True, slots=True)
class Call:
    """One tool call the assistant made (since the current prompt) and its result, if any."""

    kind: str | None
    name: str
    input: Mapping[str, Any]
    result: str = ""
    is_error: bool = False
    answered: bool = False

    @property
    def path(self) -> str | None:
        for key in ("path", "file_path"):
            value = self.input.get(key)
            if isinstance(value, str):
                return value
        if self.kind == "bash" and isinstance(cmd := self.input.get("command"), str):
            return bash_target(cmd)
        return None


@dataclass(slots=True)
class Tool:
    name: str
    properties: frozenset[str] = field(default_factory=frozenset[str])

    def key(self, *candidates: str) -> str:
        """The first candidate argument the schema declares, else the default of this tool's vocabulary."""
        for candidate in candidates:
            if candidate in self.properties:
                return candidate
        return candidates[0] if self.name[:1].islower() else candidates[-1]


@dataclass(slots=True)
class View:
    prompt: str = ""
    calls: list[Call] = field(default_factory=list[Call])
    tools: dict[str, Tool] = field(default_factory=dict[str, Tool])  # kind -> tool
    cwd: str | None = None
    last_role: str | None = None

    def tool(self, kind: str) -> Tool | None:
        return self.tools.get(kind)


def _offered_tools(body: Mapping[str, Any]) -> dict[str, Tool]:
    tools: dict[str, Tool] = {}
    for item in as_list(body.get("tools")):
        spec = as_dict(item)
        name = spec.get("name")
        if not isinstance(name, str):
            continue
        kind = _KIND_OF.get(name)
        props = as_dict(as_dict(spec.get("input_schema")).get("properties"))
        properties = frozenset(str(k) for k in props)
        # earlier names in TOOL_NAMES win (Glob over LS; our names over Claude Code's when both exist)
        if kind and (kind not in tools or TOOL_NAMES[kind].index(name) < TOOL_NAMES[kind].index(tools[kind].name)):
            tools[kind] = Tool(name, properties)
    return tools


def _cwd(body: Mapping[str, Any]) -> str | None:
    system = body.get("system")
    m = _CWD.search(text_of(system) if not isinstance(system, str) else system)
    return m.group(1).rstrip("/") or "/" if m else None


def read_view(body: Mapping[str, Any]) -> View:
    """Parse the request: the latest user prompt (not a tool-result message) and the calls made after it."""
    view = View(tools=_offered_tools(body), cwd=_cwd(body))
    messages = conversation(body)
    start = 0
    for i in range(len(messages) - 1, -1, -1):
        blocks = _blocks(messages[i])
        if _role(messages[i]) != "user" or any(b.get("type") == "tool_result" for b in blocks):
            continue
        text = _REMINDER.sub("", text_of(blocks)).strip()
        if text:
            view.prompt, start = text, i + 1
            break
    view.last_role = _role(messages[-1]) if messages else None
    results: dict[str, dict[str, Any]] = {}
    for message in messages[start:]:
        for block in _blocks(message):
            if block.get("type") == "tool_result" and isinstance(block.get("tool_use_id"), str):
                results[block["tool_use_id"]] = block
    for message in messages[start:]:
        if _role(message) != "assistant":
            continue
        for block in _blocks(message):
            if block.get("type") != "tool_use":
                continue
            name = str(block.get("name", ""))
            raw_input = block.get("input")
            args: dict[str, Any] = dict(as_dict(raw_input))
            result = results.get(str(block.get("id")))
            kind = _KIND_OF.get(name)
            if kind == "bash" and isinstance(cmd := args.get("command"), str):
                kind = bash_kind(cmd)
            view.calls.append(
                Call(
                    kind=kind,
                    name=name,
                    input=args,
                    result=text_of(result.get("content")) if result else "",
                    is_error=bool(result.get("is_error")) if result else False,
                    answered=result is not None,
                )
            )
    return view


# -- bash fallback: the commands the policy issues, and how to recognise them again ------------------------

BASH_LIST = "find . -type f -not -path '*/.git/*' | sort | head -200"


def bash_read(path: str) -> str:
    return f"sed -n '1,200p' {shlex.quote(path)}"


def bash_grep(pattern: str) -> str:
    return f"grep -rn --exclude-dir=.git -e {shlex.quote(pattern)} . | head -50"


def bash_kind(command: str) -> str:
    if command.startswith("find "):
        return "list"
    if command.startswith("sed -n "):
        return "read"
    if command.startswith("grep "):
        return "grep"
    return "bash"


def bash_target(command: str) -> str | None:
    if not command.startswith("sed -n "):
        return None
    try:
        return shlex.split(command)[-1]
    except ValueError:
        return None


# -- reading tool results ----------------------------------------------------------------------------------


def listing_paths(result: str, cwd: str | None) -> list[str]:
    """Paths from a listing result: one per line (Glob, list_files, find) or an ``LS`` tree of ``- x`` lines.

    Trailing annotations after a tab, or in parentheses, are dropped. Paths under ``cwd`` come back relative.
    """
    paths: list[str] = []
    stack: list[tuple[int, str]] = []  # LS tree: (indent, dir path)
    for raw in result.splitlines():
        if not raw.strip():
            continue
        tree = re.match(r"^(\s*)- (.+)$", raw)
        if tree:
            indent, name = len(tree.group(1)), tree.group(2).strip()
            while stack and stack[-1][0] >= indent:
                stack.pop()
            full = posixpath.join(stack[-1][1], name) if stack else name
            if name.endswith("/"):
                stack.append((indent, full.rstrip("/")))
            else:
                paths.append(full)
            continue
        line = raw.split("\t", 1)[0].strip()
        line = re.sub(r"\s+\(.*\)$", "", line)
        if not line or line[0] in "([#<…*" or line.lower().startswith(("no files", "found ", "total ", "...")):
            continue
        if " " in line and not line.startswith("/"):
            line = line.split()[0]
        paths.append(line)
    return [relative(p, cwd) for p in paths]


def relative(path: str, cwd: str | None) -> str:
    if cwd and path.startswith(cwd.rstrip("/") + "/"):
        return path[len(cwd.rstrip("/")) + 1 :]
    return path[2:] if path.startswith("./") else path


def same_path(a: str | None, b: str | None, cwd: str | None) -> bool:
    if a is None or b is None:
        return False
    return posixpath.normpath(relative(a, cwd)) == posixpath.normpath(relative(b, cwd))


def file_lines(result: str) -> list[str]:
    """The file's lines from a read result, without ``cat -n`` style line numbers when every line has one.

    Notes starting with ``…`` (e.g. the worker's ``… [f has 900 lines; showed 1-400 ...]``) are dropped.
    """
    lines = [line for line in _REMINDER.sub("", result).splitlines() if not line.startswith("…")]
    numbered = [line for line in lines if line.strip()]
    if numbered and all(_LINE_NO.match(line) for line in numbered):
        return [_LINE_NO.sub("", line, count=1) for line in lines]
    return lines
