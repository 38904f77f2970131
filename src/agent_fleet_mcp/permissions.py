"""What ``permission: readonly`` means for every runner: no tool that writes files or runs commands.

A readonly agent's ``tools`` may only name tools known to be read-only for its runner (deny by default: a tool
this table does not know is refused, so a new write tool of a backend is never let through). Checked where a spec
is made (catalog files, ``create_agent``, ``run_agents``) and again by each runner just before it builds argv, so a
readonly agent stored by an older version is refused at its next turn instead of getting its tools.

- anthropic (our worker): ``read_file``, ``list_files``, ``grep``; ``write_file``, ``edit_file``, ``bash`` refused.
- claude-code: Read, Grep, Glob, LS, NotebookRead, WebFetch, WebSearch, TodoWrite (a rule such as ``Read(src/**)``
  counts by its tool name); Bash, Write, Edit, MultiEdit, NotebookEdit, Task/Agent, MCP tools ... refused.
- gemini: read_file, read_many_files, list_directory, glob, search_file_content, grep_search, grep, web_fetch,
  google_web_search; run_shell_command, write_file, replace, edit, save_memory ... refused.
- codex: it has no per-tool list; readonly always runs it with ``-s read-only``, and any ``tools`` entry (such as a
  sandbox mode like ``workspace-write``) is refused rather than silently ignored.
- command: argv comes from a trusted catalog file; ``permission`` is passed to it as ``AGENT_PERMISSION`` and is the
  program's own business (docs/runners.md).
"""

from __future__ import annotations

from agent_fleet_mcp.errors import InvalidRequest
from agent_fleet_mcp.spec import AgentSpec
from agent_fleet_mcp.worker.tools import READ_TOOLS as WORKER_READ_TOOLS

GEMINI_READ_TOOLS: tuple[str, ...] = (
    "read_file", "read_many_files", "list_directory", "glob", "search_file_content", "grep_search", "grep",
    "web_fetch", "google_web_search",
)  # fmt: skip
READONLY_TOOLS: dict[str, frozenset[str]] = {
    "anthropic": frozenset(WORKER_READ_TOOLS),
    "claude-code": frozenset(("Read", "Grep", "Glob", "LS", "NotebookRead", "WebFetch", "WebSearch", "TodoWrite")),
    "gemini": frozenset(GEMINI_READ_TOOLS),
    "codex": frozenset(),
}


def tool_name(rule: str) -> str:
    """``Bash(git status)`` -> ``Bash``: a permission rule counts as the tool it names."""
    return rule.split("(", 1)[0].strip()


def readonly_violations(spec: AgentSpec) -> list[str]:
    """The entries of ``spec.tools`` a readonly agent may not have (empty for readwrite and command agents)."""
    if spec.permission != "readonly" or spec.runner not in READONLY_TOOLS:
        return []
    allowed = READONLY_TOOLS[spec.runner]
    return [t for t in spec.tools if tool_name(t) not in allowed]


def readonly_problem(spec: AgentSpec) -> str | None:
    """Why this readonly spec is refused, naming the tools and what to do; None when it is fine."""
    bad = readonly_violations(spec)
    if not bad:
        return None
    allowed = sorted(READONLY_TOOLS[spec.runner])
    if allowed:
        may = f"a readonly {spec.runner} agent may only have {', '.join(allowed)}"
    else:
        may = f"a readonly {spec.runner} agent has no tool list (it runs with sandbox read-only)"
    return (
        f"permission readonly does not allow tool(s) {', '.join(bad)}: they write files or run commands; {may}. "
        "Remove them from `tools`, or make the agent permission readwrite"
    )


def check_readonly(spec: AgentSpec) -> None:
    """Raise ``InvalidRequest`` when a readonly spec names tools that write or run commands."""
    problem = readonly_problem(spec)
    if problem is not None:
        raise InvalidRequest(problem)
