"""One worker turn: the Messages API tool loop with the official SDK, streaming, full history each request.

request -> `text` events as blocks complete -> `usage` -> (tool calls: `tool_use`/`tool_result` each, history saved)
-> next request ... until the model answers without tools (or a budget, an API error or SIGTERM ends the turn).
The ``anthropic`` import (~2 s) happens in ``make_client``, after ``__main__`` has emitted `started`.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_fleet_mcp import pricing
from agent_fleet_mcp.worker import history
from agent_fleet_mcp.worker.api_errors import ApiFailure, describe_api_error
from agent_fleet_mcp.worker.output import emit, note
from agent_fleet_mcp.worker.paths import Sandbox
from agent_fleet_mcp.worker.signals import Cancelled, shielded
from agent_fleet_mcp.worker.tools import Toolbox, select_tools

if TYPE_CHECKING:
    from anthropic import Anthropic

DEFAULT_MAX_TOKENS = 16_384
DEFAULT_MAX_RETRIES = 2
EPHEMERAL = {"type": "ephemeral"}
CANCELLED_TOOL = "cancelled: the turn was stopped before this tool finished"
TRUNCATED_TOOL = (
    "not run: your response hit max_tokens, so this call may be truncated; retry it in smaller steps "
    "(e.g. write a large file in parts)"
)

PREAMBLE = (
    "You are an autonomous agent working in the directory {cwd} ({permission}). Use the tools to inspect{write} "
    "files there; paths are relative to that directory and cannot leave it. Work until the task is done, then "
    "answer with a concise final report."
)


@dataclass(frozen=True)
class Options:
    agent_dir: Path
    cwd: Path
    model: str
    permission: str
    max_turns: int | None = None
    max_cost_usd: float | None = None  # what is left of the agent's budget when the turn started
    max_total_tokens: int | None = None  # likewise, tokens (input + output + cache read + cache write)
    fleet_budget_usd: float | None = None  # what is left of the fleet's daily budget
    batch_budget_usd: float | None = None  # what is left of the run_agents batch's budget
    system: str = ""
    tools: list[str] | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS


def max_retries_from_env(env: Mapping[str, str] = os.environ) -> int:
    try:
        return max(0, int(env.get("AGENT_FLEET_MAX_RETRIES", DEFAULT_MAX_RETRIES)))
    except ValueError:
        return DEFAULT_MAX_RETRIES


_TLS_ENV = ("SSL_CERT_FILE", "SSL_CERT_DIR")  # what the default TLS context is made from
_preloaded_tls: tuple[tuple[str | None, ...], ssl.SSLContext] | None = None


def preload_tls() -> None:
    """The fork server makes the default TLS context once: loading the CA certificates costs ~50 ms of CPU per
    client, which 20 turns forked at once paid side by side before their first request. Each fork reuses it."""
    global _preloaded_tls
    import httpx2  # the SDK's HTTP client; its default context, exactly

    _preloaded_tls = (tuple(os.environ.get(k) for k in _TLS_ENV), httpx2.create_ssl_context())


def make_client() -> Anthropic:
    import anthropic  # the slow import, deliberately late

    tls = _preloaded_tls
    if tls is not None and tls[0] == tuple(os.environ.get(k) for k in _TLS_ENV):
        http = anthropic.DefaultHttpxClient(verify=tls[1])  # proxies etc. still from this turn's environment
        return anthropic.Anthropic(max_retries=max_retries_from_env(), http_client=http)
    return anthropic.Anthropic(max_retries=max_retries_from_env())


def system_prompt(opts: Options) -> str:
    write = ", edit and run commands on" if opts.permission == "readwrite" else ""
    text = PREAMBLE.format(cwd=opts.cwd, permission=opts.permission, write=write)
    return f"{text}\n\n{opts.system.strip()}" if opts.system.strip() else text


def request_params(
    opts: Options, messages: list[history.Message], system: str, tools: list[dict[str, Any]]
) -> dict[str, Any]:
    """The Messages API arguments, with prompt-cache breakpoints on the static prefix and the newest message."""
    msgs = list(messages)
    last = msgs[-1]
    blocks = list(last["content"])
    blocks[-1] = {**blocks[-1], "cache_control": EPHEMERAL}
    msgs[-1] = {"role": last["role"], "content": blocks}
    params: dict[str, Any] = {
        "model": opts.model,
        "max_tokens": opts.max_tokens,
        "messages": msgs,
        "system": [{"type": "text", "text": system, "cache_control": EPHEMERAL}],
    }
    if tools:
        params["tools"] = tools
    return params


def assistant_message(content: list[Any]) -> history.Message | None:
    """The SDK's response blocks as a history message (text and tool_use; thinking kept verbatim)."""
    blocks: list[history.Block] = []
    for b in content:
        if b.type == "text" and b.text:
            blocks.append({"type": "text", "text": b.text})
        elif b.type == "tool_use":
            blocks.append({"type": "tool_use", "id": b.id, "name": b.name, "input": b.input})
        elif b.type in ("thinking", "redacted_thinking"):
            blocks.append(b.model_dump(mode="json", exclude_none=True))
    return {"role": "assistant", "content": blocks} if blocks else None


def usage_fields(usage: Any, model: str) -> dict[str, Any]:
    """The `usage` event of one request, priced by the table (null cost for an unknown model)."""
    inp = usage.input_tokens or 0
    out = usage.output_tokens or 0
    read = getattr(usage, "cache_read_input_tokens", None) or 0
    write = getattr(usage, "cache_creation_input_tokens", None) or 0
    creation = getattr(usage, "cache_creation", None)
    write_1h = (getattr(creation, "ephemeral_1h_input_tokens", None) or 0) if creation is not None else 0
    cost = pricing.cost_usd(model, input=inp, output=out, cache_read=read, cache_write=write, cache_write_1h=write_1h)
    return {
        "input": inp,
        "output": out,
        "cache_read": read,
        "cache_write": write,
        "cost_usd": cost,
        "model": model,
        "context_tokens": inp + read + write,
        "scope": "request",
    }


class Turn:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.sandbox = Sandbox(opts.cwd)
        names, dropped = select_tools(opts.permission, opts.tools)
        if dropped:
            note(f"readonly agent: ignoring write tools {', '.join(dropped)}")
        self.toolbox = Toolbox(self.sandbox, names)
        self.messages, notes = history.load(opts.agent_dir)
        for n in notes:
            note(f"history repaired: {n}")
        self.requests = 0
        self.cost = 0.0
        self.tokens = 0
        self.cost_unknown = False
        self.last_text = ""
        self.completed_request = False  # history is only saved once this turn got an answer
        self.pending: list[tuple[str, history.Block | None]] | None = None  # (tool_use id, result) this round
        self.finished: int | None = None  # exit code once the `result` is out
        self.running: str | None = None  # id of the tool call being executed

    # -- the loop ---------------------------------------------------------------------------------------------

    def run(self, prompt: str) -> int:
        history.add_prompt(self.messages, prompt)
        try:
            client = make_client()
            system = system_prompt(self.opts)
            tools = self.toolbox.definitions()
            while True:
                message = self._request(client, system, tools)
                stop = self._after_request(message)
                if stop is not None:
                    return stop
        except Cancelled:
            if self.finished is not None:  # the signal came as the result line went out
                return self.finished
            if self.running is not None:  # close the transcript's open tool call
                emit("tool_result", ok=False, size=0, id=self.running)
            self._close_pending(CANCELLED_TOOL)
            self._save()
            return self._finish(is_error=True, reason="cancelled", note="cancelled before it finished")
        except ApiFailure as exc:
            emit("error", kind=exc.kind, message=exc.message)
            self._save()
            return self._finish(is_error=True, reason="api_error", note=f"error: {exc.message}")
        except Exception as exc:  # a bug, not the model's or the API's fault: still end with a result
            message = f"{type(exc).__name__}: {exc}"
            emit("error", kind="internal", message=message)
            self._close_pending(f"not run: internal error ({message})")
            self._save()
            return self._finish(is_error=True, reason="internal_error", note=f"internal error: {message}")

    def _request(self, client: Anthropic, system: str, tools: list[dict[str, Any]]) -> Any:
        import anthropic

        params = request_params(self.opts, self.messages, system, tools)
        try:
            with client.messages.stream(**params) as stream:
                for event in stream:
                    if event.type == "content_block_stop":
                        block = event.content_block
                        if block.type == "text" and block.text:
                            emit("text", text=block.text)
                message = stream.get_final_message()
        except anthropic.APIError as exc:
            raise describe_api_error(exc, base_url=str(client.base_url), model=self.opts.model) from exc
        self.requests += 1
        return message

    def _after_request(self, message: Any) -> int | None:
        """Record one response, run its tool calls; an exit code when the turn is over."""
        calls = [b for b in message.content if b.type == "tool_use"]
        with shielded():  # the response is recorded whole (its calls pending) or not at all
            model = getattr(message, "model", None) or self.opts.model
            usage = usage_fields(message.usage, model)
            emit("usage", **usage)
            self.tokens += usage["input"] + usage["output"] + usage["cache_read"] + usage["cache_write"]
            if usage["cost_usd"] is None:
                self.cost_unknown = True
            else:
                self.cost += usage["cost_usd"]
            reply = assistant_message(list(message.content))
            if reply is not None:
                self.messages.append(reply)
            self.completed_request = True
            text = "\n\n".join(b.text for b in message.content if b.type == "text" and b.text)
            if text:
                self.last_text = text
            self.pending = [(c.id, None) for c in calls] if calls else None
        if not calls:
            self._save()
            return self._finish(is_error=False)
        assert self.pending is not None
        if message.stop_reason == "max_tokens":
            self._close_pending(TRUNCATED_TOOL)
            self._save()
            return None
        if (budget := self._budget_exhausted()) is not None:
            reason, why = budget
            self._close_pending(f"not run: the turn stopped ({reason} reached) before this tool ran")
            self._save()
            emit("error", kind=reason, message=why)  # the supervisor records it as the turn's error
            return self._finish(is_error=True, reason=reason, note=why)
        for i, call in enumerate(calls):
            args = parse_tool_input(call.input)
            info = self.toolbox.describe(call.name, args)
            with shielded():
                emit(
                    "tool_use",
                    name=call.name,
                    summary=info.summary,
                    id=call.id,
                    reads=info.reads or None,
                    writes=info.writes or None,
                )
                self.running = call.id
            out = self.toolbox.run(call.name, args)
            result: history.Block = {"type": "tool_result", "tool_use_id": call.id, "content": out.text}
            if out.is_error:
                result["is_error"] = True
            with shielded():  # result recorded, announced and the call closed: all or nothing
                self.pending[i] = (call.id, result)
                emit("tool_result", ok=not out.is_error, size=len(out.text), id=call.id)
                self.running = None
        self._close_pending(CANCELLED_TOOL)
        self._save()
        return None

    def _budget_exhausted(self) -> tuple[str, str] | None:  # (reason, note)
        """Checked after every response that asks for tools, i.e. before the next request: a budget reached here
        is overshot by at most the request that reached it."""
        o = self.opts
        if o.max_turns is not None and self.requests >= o.max_turns:
            return ("max_turns", f"stopped: reached max_turns ({o.max_turns} model requests) before finishing; "
                    "command the agent again to continue")  # fmt: skip
        left = "left when the turn started"
        if o.max_cost_usd is not None and self.cost >= o.max_cost_usd:
            return ("max_cost", f"stopped: reached max_cost_usd: this turn cost ${self.cost:.4f}, the agent had "
                    f"${o.max_cost_usd:.4f} {left} (the budget covers its whole life)")  # fmt: skip
        if o.max_total_tokens is not None and self.tokens >= o.max_total_tokens:
            return ("max_tokens", f"stopped: reached max_tokens: this turn used {self.tokens:,} tokens, the agent had "
                    f"{o.max_total_tokens:,} {left} (input + output + cache, whole life)")  # fmt: skip
        if o.fleet_budget_usd is not None and self.cost >= o.fleet_budget_usd:
            return ("fleet_budget", f"stopped: reached the fleet's daily budget (AGENT_FLEET_BUDGET_USD): this turn "
                    f"cost ${self.cost:.4f}, the fleet had ${o.fleet_budget_usd:.4f} {left}")  # fmt: skip
        if o.batch_budget_usd is not None and self.cost >= o.batch_budget_usd:
            return ("batch_budget", f"stopped: reached the batch's budget_usd: this turn cost ${self.cost:.4f}, the "
                    f"batch had ${o.batch_budget_usd:.4f} {left}")  # fmt: skip
        priced = (o.max_cost_usd, o.fleet_budget_usd, o.batch_budget_usd)
        if any(b is not None for b in priced) and self.cost_unknown and self.requests == 1:
            note(f"cost budgets cannot be enforced: no price known for model {self.opts.model!r} (max_tokens is)")
        return None

    # -- state --------------------------------------------------------------------------------------------------

    def _close_pending(self, missing_text: str) -> None:
        """Answer this round's tool calls (finished ones with their results) in one user message."""
        if self.pending is None:
            return
        blocks = [r if r is not None else history.error_result(tid, missing_text) for tid, r in self.pending]
        self.messages.append({"role": "user", "content": blocks})
        self.pending = None

    def _save(self) -> None:
        if not self.completed_request:  # the model never saw this turn's prompt: keep the history as it was
            return
        with shielded():
            history.save(self.opts.agent_dir, self.messages)

    def _finish(self, *, is_error: bool, reason: str | None = None, note: str | None = None) -> int:
        text = self.last_text
        if note:
            text = f"{text}\n\n[{note}]" if text else f"[{note}]"
        self.finished = 1 if is_error else 0
        emit("result", text=text, is_error=is_error, reason=reason)
        return self.finished


def parse_tool_input(raw: Any) -> dict[str, Any]:
    """Tool input as a dict (the SDK gives a dict; a JSON string from an odd endpoint is accepted too)."""
    if isinstance(raw, dict):
        return raw  # pyright: ignore[reportUnknownVariableType]
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}  # pyright: ignore[reportUnknownVariableType]
    return {}
