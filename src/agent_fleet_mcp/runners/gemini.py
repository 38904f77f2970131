"""The `gemini` runner: Google Gemini CLI's headless mode (``gemini -p PROMPT -o stream-json``).

argv: ``gemini -o stream-json --approval-mode default|auto_edit [-m model] [--allowed-tools ..]
[--resume SESSION] -p PROMPT``. Gemini has no flag to add to its system prompt, so ``spec.system_prompt`` is put
in front of the first turn's prompt. A prompt too long for one argv entry goes on stdin instead (the CLI reads
piped stdin in front of ``-p``), with an empty ``-p``.

Permissions: readonly -> ``--approval-mode default`` (headless, tools that need a confirmation are not offered:
no edits, no shell); readwrite -> ``--approval-mode auto_edit`` (file edits are approved). ``spec.tools`` ->
``--allowed-tools`` (run without confirmation); a readonly spec may only list read-only tools (permissions.py).

Stream (gemini-cli ``JsonStreamEvent``): ``init{session_id, model}`` -> started + session; assistant ``message``
chunks (``delta: true``) are concatenated into one ``text`` per reply; ``tool_use`` / ``tool_result``;
``error{severity}`` -> error; ``result{status, error?, stats}`` -> usage (scope run: the CLI's session metrics
of this process; ``input`` = uncached prompt tokens, ``cached`` -> cache_read; no cost) + result.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from agent_fleet_mcp.events import Event, make
from agent_fleet_mcp.jsonish import as_dict, as_int
from agent_fleet_mcp.runners.base import TurnRequest
from agent_fleet_mcp.runners.headless import HeadlessParser, HeadlessRunner, rel_path, run_usage, summary_line

APPROVAL = {"readonly": "default", "readwrite": "auto_edit"}
MAX_ARGV_PROMPT = 100_000  # bytes; Linux caps one argv entry at 128 KiB
# FatalError exit codes of gemini-cli (packages/core/src/utils/errors.ts)
EXIT_REASONS = {41: "auth", 42: "input", 52: "config", 53: "max_turns", 130: "cancelled"}
ERROR_TYPE_REASONS = {
    "FatalTurnLimitedError": "max_turns",
    "FatalAuthenticationError": "auth",
    "FatalCancellationError": "cancelled",
}
READ_TOOLS = frozenset(("read_file", "read_many_files"))
WRITE_TOOLS = frozenset(("write_file", "replace", "edit"))


def full_prompt(req: TurnRequest) -> str:
    if req.session_id is None and req.spec.system_prompt.strip():
        return f"<instructions>\n{req.spec.system_prompt.strip()}\n</instructions>\n\n{req.prompt}"
    return req.prompt


def build_argv(exe: str, req: TurnRequest, prompt: str) -> tuple[list[str], str | None]:
    """argv and the stdin text (None unless the prompt is too long for argv). (HeadlessRunner.build has refused a
    readonly spec naming run_shell_command/write_file... before.)"""
    spec = req.spec
    argv = [exe, "-o", "stream-json", "--approval-mode", APPROVAL[spec.permission]]
    if spec.model:
        argv += ["-m", spec.model]
    if spec.tools:
        argv += ["--allowed-tools", ",".join(spec.tools)]
    if req.session_id:
        argv += ["--resume", req.session_id]
    if len(prompt.encode("utf-8")) <= MAX_ARGV_PROMPT:
        return [*argv, "-p", prompt], None
    return [*argv, "-p", ""], prompt


def summarize_tool(name: str, params: Mapping[str, Any], req: TurnRequest) -> dict[str, Any]:
    p = as_dict(params)

    def s(*keys: str) -> str:
        for k in keys:
            v = p.get(k)
            if isinstance(v, str) and v:
                return v
        return ""

    path = rel_path(s("file_path", "absolute_path", "path"), req.cwd)
    if name in READ_TOOLS and path:
        return {"summary": f"{name} {path}", "reads": [path]}
    if name in WRITE_TOOLS and path:
        return {"summary": f"{name} {path}", "writes": [path]}
    if name == "run_shell_command":
        return {"summary": summary_line(f"$ {s('command')}")}
    if name in ("search_file_content", "grep_search", "grep"):
        return {"summary": summary_line(f"grep '{s('pattern')}' in {path or '.'}")}
    if name == "glob":
        return {"summary": summary_line(f"glob '{s('pattern')}'" + (f" in {path}" if path else ""))}
    if name == "list_directory":
        return {"summary": f"ls {path or '.'}"}
    if name == "google_web_search":
        return {"summary": summary_line(f"web search '{s('query')}'")}
    args = json.dumps(p, ensure_ascii=False, separators=(",", ":")) if p else ""
    return {"summary": summary_line(f"{name} {args}".strip())}


class GeminiParser(HeadlessParser):
    """Maps ``gemini -o stream-json`` lines to normalized events."""

    def __init__(self, req: TurnRequest) -> None:
        super().__init__(req)
        self._model: str | None = req.spec.model
        self._buffer: list[str] = []  # assistant chunks of the reply being streamed

    def on_object(self, obj: dict[str, Any]) -> list[Event]:
        kind = obj.get("type")
        if kind == "message":
            if obj.get("role") == "assistant" and isinstance(obj.get("content"), str):
                self._buffer.append(obj["content"])
                if not obj.get("delta"):
                    return self._flush()
            return []
        events = self._flush()
        if kind == "init":
            events += self._init(obj)
        elif kind == "tool_use":
            name = str(obj.get("tool_name") or "tool")
            fields = summarize_tool(name, as_dict(obj.get("parameters")), self._req)
            events.append(make("tool_use", name=name, id=_str(obj.get("tool_id")), **fields))
        elif kind == "tool_result":
            out = obj.get("output")
            size = len(out) if isinstance(out, str) else len(str(as_dict(obj.get("error")).get("message") or ""))
            events.append(
                make("tool_result", ok=obj.get("status") == "success", size=size, id=_str(obj.get("tool_id")))
            )
        elif kind == "error":
            severity = obj.get("severity")
            events.append(
                make("error", kind="warning" if severity == "warning" else "backend", message=str(obj.get("message")))
            )
        elif kind == "result":
            events += self._result(obj)
        return events

    def finish(self, exit_code: int | None, stderr_tail: str) -> list[Event]:
        events = self._flush()  # first: the reply it completes is the one a closing result carries
        closing = super().finish(exit_code, stderr_tail)
        reason = EXIT_REASONS.get(exit_code or 0)
        last = closing[-1] if closing else None  # nothing when the stream already closed the turn
        if reason and last is not None and last["type"] == "result" and last["is_error"]:
            last["reason"] = reason
        return events + closing

    def _flush(self) -> list[Event]:
        text = "".join(self._buffer)
        self._buffer.clear()
        if not text.strip():
            return []
        self._last_text = text
        return [make("text", text=text)]

    def _init(self, obj: dict[str, Any]) -> list[Event]:
        if self._started:
            return []
        self._started = True
        if isinstance(obj.get("model"), str) and obj["model"]:
            self._model = obj["model"]
        events = [make("started", runner="gemini", model=self._model)]
        if sid := _str(obj.get("session_id")):
            events.append(make("session", session_id=sid))
        return events

    def _result(self, obj: dict[str, Any]) -> list[Event]:
        self._done = True
        events: list[Event] = []
        stats = as_dict(obj.get("stats"))
        if stats:
            cached = as_int(stats.get("cached"))
            uncached = as_int(stats["input"]) if "input" in stats else as_int(stats.get("input_tokens")) - cached
            usage = run_usage(
                input=max(0, uncached),
                output=as_int(stats.get("output_tokens")),
                cache_read=cached,
                cache_write=0,
                model=self._model,
            )
            events.append(usage)
        if obj.get("status") == "error":
            err = as_dict(obj.get("error"))
            message = str(err.get("message") or "the gemini turn failed")
            error_type = _str(err.get("type"))
            reason = ERROR_TYPE_REASONS.get(error_type or "", "error")
            kind = "max_turns" if reason == "max_turns" else "api_error"
            events.append(make("error", kind=kind, message=message, error_type=error_type))
            events.append(make("result", text=self._last_text or message, is_error=True, reason=reason))
        else:
            events.append(make("result", text=self._last_text, is_error=False))
        return events


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class GeminiRunner(HeadlessRunner):
    name = "gemini"
    cli = "gemini"
    package = "@google/gemini-cli"
    env_prefixes = ("GEMINI_", "GOOGLE_", "AGENT_FLEET_")
    env_keys = ("CLOUDSDK_CONFIG", "NODE_EXTRA_CA_CERTS", "NO_BROWSER")

    def command(self, exe: str, req: TurnRequest) -> tuple[list[str], str | None]:
        return build_argv(exe, req, full_prompt(req))

    def new_parser(self, req: TurnRequest) -> GeminiParser:
        return GeminiParser(req)
