"""The `claude-code` runner: Claude Code's headless mode (``claude -p``) with its stream-json output.

argv: ``claude -p --output-format stream-json --verbose --max-turns N --permission-mode M [--allowedTools ..]
[--disallowedTools ..] --strict-mcp-config [--model ..] [--append-system-prompt ..] [--max-budget-usd ..]
[--resume SESSION]``; the prompt goes on stdin (no argv length limit).

Permissions (checked against the pinned CLI, see docs/runners.md):
- readonly  -> ``--permission-mode dontAsk``: only pre-approved tools run, everything else is denied without
  prompting. Allowed: ``spec.tools`` or Read/Grep/Glob/LS; Write/Edit/MultiEdit/NotebookEdit always disallowed.
  A readonly spec whose ``tools`` name a tool that writes or runs commands (Bash, Edit ...) is refused
  (permissions.py), never passed to ``--allowedTools``.
  (The CLI still lets read-only shell commands such as ``grep``/``ls`` through its own classifier.)
- readwrite -> ``--permission-mode acceptEdits``: file edits inside the cwd are accepted; ``spec.tools``
  pre-approves more (e.g. ``Bash(pytest *)``).

Stream mapping: ``system/init`` -> started + session; every ``assistant`` line is ONE content block of a message
whose ``usage`` is the message_start snapshot repeated on each block, so usage is never taken from them (only the
last request's prompt size, for ``context_tokens``); ``user`` tool_result blocks -> tool_result; ``result`` -> one
``usage`` (scope run, tokens of this run) + ``result``.

Cost: ``result.total_cost_usd`` is cumulative over a resumed session. The parser keeps the total each turn ended at
in ``<agent_dir>/claude_cost.json`` (keyed by session id, then turn number) and reports the difference.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from agent_fleet_mcp.events import Event, make
from agent_fleet_mcp.jsonish import as_dict, as_int, as_list
from agent_fleet_mcp.runners.base import TurnRequest
from agent_fleet_mcp.runners.headless import (
    CumulativeLedger,
    HeadlessParser,
    HeadlessRunner,
    deltas,
    rel_path,
    run_usage,
    summary_line,
    text_size,
)

DEFAULT_MAX_TURNS = 30
COST_LEDGER = "claude_cost.json"
READONLY_TOOLS: tuple[str, ...] = ("Read", "Grep", "Glob", "LS")
WRITE_TOOLS: tuple[str, ...] = ("Write", "Edit", "MultiEdit", "NotebookEdit")
SUBTYPE_REASONS = {
    "error_max_turns": "max_turns",
    "error_max_budget_usd": "max_cost",
    "error_during_execution": "error",
}
MAX_DENIALS_REPORTED = 10


def build_argv(exe: str, req: TurnRequest) -> list[str]:
    """The argv of a turn; the prompt goes on stdin. (HeadlessRunner.build has refused a readonly spec naming
    Bash/Write/Edit... before.)"""
    spec = req.spec
    max_turns = req.limits.max_turns or spec.max_turns or DEFAULT_MAX_TURNS
    argv = [exe, "-p", "--output-format", "stream-json", "--verbose", "--max-turns", str(max_turns)]
    if spec.permission == "readonly":
        allowed = spec.tools or READONLY_TOOLS
        argv += ["--permission-mode", "dontAsk", "--allowedTools", ",".join(allowed)]
        argv += ["--disallowedTools", ",".join(WRITE_TOOLS)]
    else:
        argv += ["--permission-mode", "acceptEdits"]
        if spec.tools:
            argv += ["--allowedTools", ",".join(spec.tools)]
    argv.append("--strict-mcp-config")  # only MCP servers we name (none): no user/project servers leak in
    if spec.model:
        argv += ["--model", spec.model]
    if spec.system_prompt.strip():
        argv += ["--append-system-prompt", spec.system_prompt]
    # what is left of the agent's, the fleet's and the batch's budgets when the turn starts (the CLI applies it
    # to this run: docs/runners.md)
    budget = req.limits.cost_cap if req.limits.cost_cap is not None else spec.max_cost_usd
    if budget is not None:
        argv += ["--max-budget-usd", str(round(max(budget, 0.0), 6))]
    if req.session_id:
        argv += ["--resume", req.session_id]
    return argv


def summarize_tool(name: str, tool_input: Mapping[str, Any], req: TurnRequest) -> dict[str, Any]:
    """``tool_use`` fields for one Claude Code tool call: summary plus reads/writes."""
    inp = as_dict(tool_input)

    def s(key: str) -> str:
        v = inp.get(key)
        return v if isinstance(v, str) else ""

    path = rel_path(s("file_path") or s("notebook_path"), req.cwd)
    out: dict[str, Any] = {}
    if name == "Read" and path:
        out.update(summary=f"Read {path}", reads=[path])
    elif name in WRITE_TOOLS and path:
        out.update(summary=f"{name} {path}", writes=[path])
    elif name == "Grep":
        where = rel_path(s("path"), req.cwd) or "."
        out["summary"] = summary_line(f"Grep '{s('pattern')}' in {where}")
    elif name == "Glob":
        where = rel_path(s("path"), req.cwd)
        out["summary"] = summary_line(f"Glob '{s('pattern')}'" + (f" in {where}" if where else ""))
    elif name == "LS":
        out["summary"] = f"LS {rel_path(s('path'), req.cwd) or '.'}"
    elif name == "Bash":
        out["summary"] = summary_line(f"Bash: {s('command')}")
    elif name in ("Task", "Agent"):
        out["summary"] = summary_line(f"{name}: {s('description') or s('prompt')}")
    elif name == "WebFetch":
        out["summary"] = summary_line(f"WebFetch {s('url')}")
    elif name == "WebSearch":
        out["summary"] = summary_line(f"WebSearch '{s('query')}'")
    else:
        args = json.dumps(inp, ensure_ascii=False, separators=(",", ":")) if inp else ""
        out["summary"] = summary_line(f"{name} {args}".strip())
    return out


class ClaudeCodeParser(HeadlessParser):
    """Maps ``claude -p --output-format stream-json --verbose`` lines to normalized events."""

    def __init__(self, req: TurnRequest) -> None:
        super().__init__(req)
        self._ledger = CumulativeLedger(req.agent_dir / COST_LEDGER)
        self._model: str | None = req.spec.model
        self._session_id: str | None = req.session_id
        self._context_tokens: int | None = None
        self._tool_names: dict[str, str] = {}

    def on_object(self, obj: dict[str, Any]) -> list[Event]:
        kind = obj.get("type")
        if kind == "system":
            return self._system(obj)
        if kind == "assistant":
            return self._assistant(obj)
        if kind == "user":
            return self._user(obj)
        if kind == "result":
            return self._result(obj)
        return []

    # -- line kinds -------------------------------------------------------------------------------------------

    def _system(self, obj: dict[str, Any]) -> list[Event]:
        if obj.get("subtype") != "init" or self._started:
            return []  # api_retry, permission_denied (summarized by the result), compact_boundary, hooks ...
        self._started = True
        model = obj.get("model")
        if isinstance(model, str) and model:
            self._model = model
        events = [make("started", runner="claude-code", model=self._model)]
        sid = obj.get("session_id")
        if isinstance(sid, str) and sid:
            self._session_id = sid
            events.append(make("session", session_id=sid))
        return events

    def _assistant(self, obj: dict[str, Any]) -> list[Event]:
        msg = as_dict(obj.get("message"))
        if obj.get("is_api_error_message") or msg.get("model") == "<synthetic>":
            return []  # the CLI's own rendering of an API error; the `result` line carries it
        main_thread = obj.get("parent_tool_use_id") is None
        if main_thread:
            usage = as_dict(msg.get("usage"))
            # message_start snapshot: the prompt size of this request (never summed over blocks or messages)
            self._context_tokens = (
                as_int(usage.get("input_tokens"))
                + as_int(usage.get("cache_read_input_tokens"))
                + as_int(usage.get("cache_creation_input_tokens"))
            ) or self._context_tokens
        events: list[Event] = []
        for block in as_list(msg.get("content")):
            b = as_dict(block)
            btype = b.get("type")
            if btype == "text":
                text = b.get("text")
                if isinstance(text, str) and text.strip():
                    if main_thread:
                        self._last_text = text
                    events.append(make("text", text=text))
            elif btype == "tool_use":
                name = str(b.get("name") or "tool")
                tool_id = b.get("id") if isinstance(b.get("id"), str) else None
                if tool_id:
                    self._tool_names[tool_id] = name
                fields = summarize_tool(name, as_dict(b.get("input")), self._req)
                events.append(make("tool_use", name=name, id=tool_id, **fields))
        return events

    def _user(self, obj: dict[str, Any]) -> list[Event]:
        content = as_dict(obj.get("message")).get("content")
        events: list[Event] = []
        for block in as_list(content):
            b = as_dict(block)
            if b.get("type") != "tool_result":
                continue
            tool_id = b.get("tool_use_id") if isinstance(b.get("tool_use_id"), str) else None
            events.append(
                make("tool_result", ok=not bool(b.get("is_error")), size=text_size(b.get("content")), id=tool_id)
            )
        return events

    def _result(self, obj: dict[str, Any]) -> list[Event]:
        self._done = True
        sid = obj.get("session_id") if isinstance(obj.get("session_id"), str) else self._session_id
        events: list[Event] = [self._usage(obj, sid)]
        is_error = bool(obj.get("is_error"))
        subtype = str(obj.get("subtype") or "")
        terminal = obj.get("terminal_reason") if isinstance(obj.get("terminal_reason"), str) else None
        text = obj.get("result") if isinstance(obj.get("result"), str) else None
        errors = [str(e) for e in as_list(obj.get("errors")) if e]
        reason = SUBTYPE_REASONS.get(subtype)
        if is_error and reason is None:
            reason = "api_error" if terminal == "api_error" or obj.get("api_error_status") else "error"
        if is_error:
            message = "; ".join(errors) or text or subtype or "the turn failed"
            status = obj.get("api_error_status")
            events.append(make("error", kind=reason, message=message, status=status))
        denials = [self._denial(d) for d in as_list(obj.get("permission_denials"))]
        events.append(
            make(
                "result",
                text=text if text is not None else self._last_text,
                is_error=is_error,
                reason=reason,
                terminal_reason=terminal,
                num_turns=obj.get("num_turns") if isinstance(obj.get("num_turns"), int) else None,
                permission_denials=denials[:MAX_DENIALS_REPORTED] or None,
                permission_denials_count=len(denials) if len(denials) > MAX_DENIALS_REPORTED else None,
            )
        )
        return events

    def _usage(self, obj: dict[str, Any], sid: str | None) -> Event:
        usage = as_dict(obj.get("usage"))
        total = obj.get("total_cost_usd")
        cost: float | None = None
        if isinstance(total, int | float) and not isinstance(total, bool):
            cost = float(total)
            if sid:
                baseline = self._ledger.baseline(sid, self._req.turn)
                cost = deltas({"cost_usd": cost}, baseline, ("cost_usd",))["cost_usd"]
                self._ledger.record(sid, self._req.turn, {"cost_usd": float(total)})
            cost = round(cost, 6)
        model = self._model
        model_usage = as_dict(obj.get("modelUsage"))
        if len(model_usage) == 1:
            model = next(iter(model_usage))
        return run_usage(
            input=as_int(usage.get("input_tokens")),
            output=as_int(usage.get("output_tokens")),
            cache_read=as_int(usage.get("cache_read_input_tokens")),
            cache_write=as_int(usage.get("cache_creation_input_tokens")),
            cost_usd=cost,
            model=model,
            context_tokens=self._context_tokens,
        )

    def _denial(self, denial: Any) -> str:
        d = as_dict(denial)
        name = str(d.get("tool_name") or "tool")
        return str(summarize_tool(name, as_dict(d.get("tool_input")), self._req).get("summary") or name)


class ClaudeCodeRunner(HeadlessRunner):
    name = "claude-code"
    cli = "claude"
    package = "@anthropic-ai/claude-code"
    env_prefixes = ("ANTHROPIC_", "CLAUDE_CODE_", "AGENT_FLEET_")
    env_keys = (
        "CLAUDE_CONFIG_DIR", "IS_SANDBOX", "DISABLE_AUTOUPDATER", "DISABLE_TELEMETRY", "DISABLE_ERROR_REPORTING",
        "NODE_EXTRA_CA_CERTS",
    )  # fmt: skip

    def argv(self, exe: str, req: TurnRequest) -> list[str]:
        return build_argv(exe, req)

    def new_parser(self, req: TurnRequest) -> ClaudeCodeParser:
        return ClaudeCodeParser(req)
