"""The agent's conversation across turns: ``<agent_dir>/history.json``, the full Messages API ``messages`` list.

Written atomically (temp file + ``os.replace``) only in consistent states: after a request that ended the turn and
after each tool round. A turn killed at any moment therefore leaves either the previous or the next consistent
state. ``repair`` still runs on every load, so a file from an older worker, a hand edit or a crash between rounds
can never make the next request invalid: every ``tool_use`` gets a ``tool_result`` (an error saying the tool did
not run), orphan results and empty blocks are dropped, roles alternate, and the first message is from the user.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, cast

from agent_fleet_mcp.private import open_private

HISTORY_FILE = "history.json"
FORMAT_VERSION = 1
NOT_RUN = "not run: the previous turn ended before this tool ran"

Message = dict[str, Any]
Block = dict[str, Any]


def history_path(agent_dir: Path) -> Path:
    return agent_dir / HISTORY_FILE


def load(agent_dir: Path) -> tuple[list[Message], list[str]]:
    """The repaired conversation and notes on what was repaired (for stderr). A missing file is a new agent; an
    unreadable one is moved aside (``history.json.corrupt-<ts>``) and the conversation restarts."""
    path = history_path(agent_dir)
    try:
        raw_text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], []
    try:
        data: Any = json.loads(raw_text)
        raw: Any = cast(Any, data["messages"]) if isinstance(data, dict) else data
        if not isinstance(raw, list):
            raise ValueError("messages is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        aside = path.with_name(f"{HISTORY_FILE}.corrupt-{int(time.time())}")
        os.replace(path, aside)
        return [], [f"history unreadable ({exc}); moved to {aside.name}, starting a new conversation"]
    messages, notes = repair(raw)  # pyright: ignore[reportUnknownArgumentType]
    return messages, notes


def save(agent_dir: Path, messages: list[Message]) -> None:
    """Atomically replace the history file (same-directory temp file, fsync, ``os.replace``)."""
    agent_dir.mkdir(parents=True, exist_ok=True)
    path = history_path(agent_dir)
    tmp = path.with_name(f".{HISTORY_FILE}.{os.getpid()}.tmp")
    payload = {"version": FORMAT_VERSION, "updated": round(time.time(), 3), "messages": messages}
    with open_private(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, ensure_ascii=False, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def add_prompt(messages: list[Message], prompt: str) -> None:
    """Append the user's prompt; merged into a trailing user message (e.g. tool results of a stopped turn)."""
    block: Block = {"type": "text", "text": prompt}
    if messages and messages[-1]["role"] == "user":
        messages[-1] = {"role": "user", "content": [*messages[-1]["content"], block]}
    else:
        messages.append({"role": "user", "content": [block]})


def tool_use_ids(message: Message) -> list[str]:
    if message.get("role") != "assistant":
        return []
    return [b["id"] for b in message["content"] if b.get("type") == "tool_use" and isinstance(b.get("id"), str)]


def error_result(tool_use_id: str, text: str) -> Block:
    return {"type": "tool_result", "tool_use_id": tool_use_id, "content": text, "is_error": True}


def repair(raw: list[Any]) -> tuple[list[Message], list[str]]:
    """A valid conversation from whatever ``raw`` holds, and notes on each change made."""
    notes: list[str] = []
    messages = _normalize(raw, notes)
    for _ in range(4):  # pairing can empty a message, which can make two messages of one role adjacent
        fixed = _pair_tool_results(messages, notes)
        again = _normalize(fixed, notes)
        if again == messages:
            break
        messages = again
    return messages, notes


def _normalize(raw: list[Any], notes: list[str]) -> list[Message]:
    out: list[Message] = []
    for i, item in enumerate(raw):
        m = cast(dict[str, Any], item) if isinstance(item, dict) else None
        if m is None or m.get("role") not in ("user", "assistant"):
            notes.append(f"dropped malformed message #{i}")
            continue
        content: Any = m.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not isinstance(content, list):
            notes.append(f"dropped message #{i} without content")
            continue
        candidates = [cast(Block, b) for b in cast(list[Any], content) if isinstance(b, dict)]
        blocks = [b for b in candidates if isinstance(b.get("type"), str) and not _empty_text(b)]
        if not blocks:
            continue
        role: str = m["role"]
        if out and out[-1]["role"] == role:
            merged = [*out[-1]["content"], *blocks]
            if role == "user":  # tool results must lead a user message
                merged.sort(key=lambda b: b.get("type") != "tool_result")
            out[-1] = {"role": role, "content": merged}
        else:
            out.append({"role": role, "content": blocks})
    while out and out[0]["role"] != "user":
        out.pop(0)
        notes.append("dropped a leading assistant message")
    return out


def _empty_text(block: Block) -> bool:
    return block.get("type") == "text" and not (isinstance(block.get("text"), str) and block["text"].strip())


def _pair_tool_results(messages: list[Message], notes: list[str]) -> list[Message]:
    """Every tool_use answered in the next user message; results answering nothing dropped."""
    out: list[Message] = []
    for i, m in enumerate(messages):
        if m["role"] == "assistant":
            out.append(m)
            ids = tool_use_ids(m)
            nxt = messages[i + 1] if i + 1 < len(messages) else None
            if ids and nxt is None:
                out.append({"role": "user", "content": [error_result(t, NOT_RUN) for t in ids]})
                notes.append(f"answered {len(ids)} unanswered tool call(s) at the end of the history")
            continue
        expected = tool_use_ids(out[-1]) if out else []
        answered: set[str] = set()
        results: list[Block] = []
        others: list[Block] = []
        for b in m["content"]:
            if b.get("type") == "tool_result":
                tid = b.get("tool_use_id")
                if tid in expected and tid not in answered:
                    answered.add(tid)
                    results.append(b)
                else:
                    notes.append(f"dropped an orphan tool_result ({tid})")
            else:
                others.append(b)
        missing = [t for t in expected if t not in answered]
        if missing:
            notes.append(f"answered {len(missing)} unanswered tool call(s)")
        results += [error_result(t, NOT_RUN) for t in missing]
        # Results in the order of the calls, then the rest.
        order = {t: k for k, t in enumerate(expected)}
        results.sort(key=lambda b: order.get(b["tool_use_id"], 0))
        out.append({"role": "user", "content": results + others})
    return out
