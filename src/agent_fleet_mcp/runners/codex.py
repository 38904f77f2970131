"""The `codex` runner: OpenAI Codex CLI's headless mode (``codex exec --json``).

argv: ``codex exec --json -s read-only|workspace-write --skip-git-repo-check -C <cwd> [-m model]
[-c developer_instructions=..] -`` and, to continue a thread, ``codex exec <same options> resume <thread_id> -``
(options go before the ``resume`` subcommand, where every codex version accepts them). ``-`` makes codex read the
prompt from stdin (no argv length limit).

Stream (codex-rs/exec ``ThreadEvent``): ``thread.started{thread_id}`` -> started + session; ``item.started`` /
``item.completed`` with item types ``agent_message`` -> text (the last one is the turn's result),
``command_execution`` -> tool_use / tool_result (exit code), ``file_change`` -> tool_use with writes,
``mcp_tool_call``, ``web_search``; ``reasoning`` and ``todo_list`` are skipped; ``turn.completed{usage}`` -> usage
+ result; ``turn.failed`` -> error + result (is_error); a top-level ``error`` -> error (not for the transient
"Reconnecting... 2/5" retries); a fatal one is followed by ``turn.failed`` or a non-zero exit.

Usage: ``turn.completed.usage`` is cumulative over a resumed thread, and ``input_tokens`` includes
``cached_input_tokens``. The parser keeps the totals each turn ended at in ``<agent_dir>/codex_usage.json`` and
reports this turn's difference as one ``usage`` with scope ``run``: input = uncached input, cache_read = cached
input. Codex reports no cost (``cost_usd`` null: the fleet prices tokens).
"""

from __future__ import annotations

import json
import shlex
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

USAGE_LEDGER = "codex_usage.json"
SANDBOX = {"readonly": "read-only", "readwrite": "workspace-write"}
_USAGE_KEYS = ("input_tokens", "cached_input_tokens", "output_tokens")


def build_argv(exe: str, req: TurnRequest) -> list[str]:
    """The argv of a turn; the prompt goes on stdin. Readonly is ``-s read-only`` (and HeadlessRunner.build has
    refused a readonly spec whose ``tools`` pretend otherwise)."""
    spec = req.spec
    argv = [exe, "exec", "--json", "-s", SANDBOX[spec.permission], "--skip-git-repo-check", "-C", str(req.cwd)]
    if spec.model:
        argv += ["-m", spec.model]
    if spec.system_prompt.strip():
        # a TOML value: a JSON string literal is a valid TOML basic string
        argv += ["-c", f"developer_instructions={json.dumps(spec.system_prompt)}"]
    if req.session_id:
        argv += ["resume", req.session_id]
    argv.append("-")  # prompt from stdin
    return argv


def _unwrap_shell(command: str) -> str:
    """``bash -lc 'cat a.py'`` -> ``cat a.py`` (codex wraps every command in a login shell)."""
    try:
        parts = shlex.split(command)
    except ValueError:
        return command
    if len(parts) == 3 and parts[0].rsplit("/", 1)[-1] in ("bash", "sh", "zsh") and parts[1] in ("-lc", "-c"):
        return parts[2]
    return command


class CodexParser(HeadlessParser):
    """Maps ``codex exec --json`` lines to normalized events."""

    def __init__(self, req: TurnRequest) -> None:
        super().__init__(req)
        self._ledger = CumulativeLedger(req.agent_dir / USAGE_LEDGER)
        self._thread_id: str | None = req.session_id
        self._last_error = ""
        self._open_tools: set[str] = set()

    def on_object(self, obj: dict[str, Any]) -> list[Event]:
        kind = obj.get("type")
        if kind == "thread.started":
            return self._thread_started(obj)
        if kind in ("item.started", "item.completed"):
            return self._item(as_dict(obj.get("item")), completed=kind == "item.completed")
        if kind == "turn.completed":
            return self._turn_completed(as_dict(obj.get("usage")))
        if kind == "turn.failed":
            return self._turn_failed(as_dict(obj.get("error")))
        if kind == "error":
            self._last_error = str(obj.get("message") or "error")
            if self._last_error.startswith("Reconnecting"):
                return []  # a retry in progress; a fatal error follows as turn.failed (or a non-zero exit)
            return [make("error", kind="backend", message=self._last_error)]
        return []  # turn.started, item.updated, item.plan.delta ...

    def finish(self, exit_code: int | None, stderr_tail: str) -> list[Event]:
        return super().finish(exit_code, stderr_tail if stderr_tail.strip() else self._last_error)

    def _thread_started(self, obj: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        if not self._started:
            self._started = True
            events.append(make("started", runner="codex", model=self._req.spec.model))
        tid = obj.get("thread_id")
        if isinstance(tid, str) and tid:
            self._thread_id = tid
            events.append(make("session", session_id=tid))
        return events

    def _item(self, item: dict[str, Any], *, completed: bool) -> list[Event]:
        itype = item.get("type")
        item_id = str(item.get("id") or "")
        if itype == "agent_message":
            text = item.get("text")
            if completed and isinstance(text, str) and text.strip():
                self._last_text = text
                return [make("text", text=text)]
            return []
        if itype == "command_execution":
            command = _unwrap_shell(str(item.get("command") or ""))
            events = self._tool_use_once(item_id, "shell", summary_line(f"$ {command}"))
            if completed:
                exit_code = item.get("exit_code")
                ok = item.get("status") == "completed" and exit_code in (0, None)
                out = item.get("aggregated_output")
                events.append(
                    make("tool_result", ok=ok, size=len(out) if isinstance(out, str) else 0, id=item_id or None,
                         exit_code=exit_code if isinstance(exit_code, int) else None)
                )  # fmt: skip
            return events
        if itype == "file_change":
            paths = [rel_path(str(as_dict(c).get("path") or ""), self._req.cwd) for c in as_list(item.get("changes"))]
            paths = [p for p in paths if p]
            summary = summary_line("Edit " + ", ".join(paths)) if paths else "Edit (no files)"
            events = self._tool_use_once(item_id, "apply_patch", summary, writes=paths or None)
            if completed:
                events.append(make("tool_result", ok=item.get("status") == "completed", size=0, id=item_id or None))
            return events
        if itype == "mcp_tool_call":
            name = f"{item.get('server') or 'mcp'}.{item.get('tool') or 'tool'}"
            args = item.get("arguments")
            args_s = json.dumps(args, ensure_ascii=False, separators=(",", ":")) if args else ""
            events = self._tool_use_once(item_id, name, summary_line(f"{name} {args_s}".strip()))
            if completed:
                result = as_dict(item.get("result"))
                ok = item.get("status") == "completed" and not item.get("error")
                size = (
                    text_size(result.get("content"))
                    if result
                    else len(str(as_dict(item.get("error")).get("message") or ""))
                )
                events.append(make("tool_result", ok=ok, size=size, id=item_id or None))
            return events
        if itype == "web_search":
            events = self._tool_use_once(item_id, "web_search", summary_line(f"WebSearch '{item.get('query') or ''}'"))
            if completed:
                events.append(make("tool_result", ok=True, size=0, id=item_id or None))
            return events
        if itype == "error" and completed:
            message = str(item.get("message") or "error")
            return [make("error", kind="warning", message=message)]
        return []  # reasoning, todo_list, plan, collab tool calls

    def _tool_use_once(self, item_id: str, name: str, summary: str, **fields: Any) -> list[Event]:
        """One tool_use per item, whether codex sent item.started or only item.completed."""
        if item_id and item_id in self._open_tools:
            return []
        if item_id:
            self._open_tools.add(item_id)
        return [make("tool_use", name=name, summary=summary, id=item_id or None, **fields)]

    def _turn_completed(self, usage: dict[str, Any]) -> list[Event]:
        self._done = True
        totals = {k: float(as_int(usage.get(k))) for k in _USAGE_KEYS}
        turn = totals
        if self._thread_id:
            turn = deltas(totals, self._ledger.baseline(self._thread_id, self._req.turn), _USAGE_KEYS)
            self._ledger.record(self._thread_id, self._req.turn, totals)
        cached = int(turn["cached_input_tokens"])
        run = run_usage(
            input=max(0, int(turn["input_tokens"]) - cached),
            output=int(turn["output_tokens"]),
            cache_read=cached,
            cache_write=0,
            model=self._req.spec.model,
        )
        return [run, make("result", text=self._last_text, is_error=False)]

    def _turn_failed(self, error: dict[str, Any]) -> list[Event]:
        self._done = True
        message = str(error.get("message") or self._last_error or "the codex turn failed")
        return [
            make("error", kind="api_error", message=message),
            make("result", text=self._last_text or message, is_error=True, reason="error"),
        ]


class CodexRunner(HeadlessRunner):
    name = "codex"
    cli = "codex"
    package = "@openai/codex"
    env_prefixes = ("OPENAI_", "CODEX_", "AGENT_FLEET_")
    env_keys = ("AZURE_OPENAI_API_KEY", "NODE_EXTRA_CA_CERTS")

    def argv(self, exe: str, req: TurnRequest) -> list[str]:
        return build_argv(exe, req)

    def new_parser(self, req: TurnRequest) -> CodexParser:
        return CodexParser(req)
