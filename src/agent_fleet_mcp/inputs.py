"""What a tool argument may be: size limits for every string and list, no unusable characters, bounded quoting.

Checked on the raw arguments of every tool call before anything else runs (``arguments.ArgumentCheckingServer``),
so a 10 MB ``system_prompt`` or a NUL in a prompt is refused at the edge with a message that says what to do, and
never reaches the store or a process. The limits are documented in README.md ("Limits").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from agent_fleet_mcp.errors import InvalidRequest

MAX_PROMPT_CHARS = 200_000
# A system prompt travels in one argv entry for claude-code/codex (Linux caps one entry at 128 KiB): 30,000 chars is
# at most 120,000 UTF-8 bytes.
MAX_SYSTEM_PROMPT_CHARS = 30_000
MAX_CWD_CHARS = 4_096  # PATH_MAX
MAX_IDENT_CHARS = 256  # names, templates, runners, models, keys, batch and run ids (their own rules are stricter)
MAX_QUERY_CHARS = 1_000
MAX_TAG_CHARS = 64
MAX_OTHER_CHARS = 1_000  # any string argument not listed below
MAX_LIST_ITEMS = 500  # agents=[...] and any list not listed below
MAX_TAGS = 32
MAX_RUNS = 50
MAX_DEPENDS_ON = 50
MAX_CALL_CHARS = 2_000_000  # all strings of one call together (50 runs x 200,000-char inputs would be 10 MB)
QUOTE_CHARS = 100

# parameter (or field of a run) -> its limit. Strings by length in characters, lists by number of items.
STRING_LIMITS: dict[str, int] = {
    "prompt": MAX_PROMPT_CHARS,
    "input": MAX_PROMPT_CHARS,
    "system_prompt": MAX_SYSTEM_PROMPT_CHARS,
    "cwd": MAX_CWD_CHARS,
    "name": MAX_IDENT_CHARS,
    "agent": MAX_IDENT_CHARS,
    "agents": MAX_IDENT_CHARS,
    "template": MAX_IDENT_CHARS,
    "runner": MAX_IDENT_CHARS,
    "model": MAX_IDENT_CHARS,
    "idempotency_key": MAX_IDENT_CHARS,
    "batch": MAX_IDENT_CHARS,
    "id": MAX_IDENT_CHARS,
    "depends_on": MAX_IDENT_CHARS,
    "query": MAX_QUERY_CHARS,
    "tags": MAX_TAG_CHARS,
}
LIST_LIMITS: dict[str, int] = {"tags": MAX_TAGS, "runs": MAX_RUNS, "depends_on": MAX_DEPENDS_ON}
_HINTS: dict[str, str] = {
    "prompt": "put large context in a file in the agent's cwd and tell the agent to read it",
    "input": "put large context in a file in the agent's cwd and tell the agent to read it",
    "system_prompt": "keep standing instructions short; put reference material in a file the agent reads",
    "cwd": "pass an existing directory with a shorter absolute path",
}

# C0 controls except tab, newline and carriage return; DEL; lone UTF-16 surrogates (not encodable as UTF-8).
_UNUSABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """``repr`` of a caller's value, cut to about ``limit`` chars with its full length: never echo a 1 MB value."""
    if not isinstance(value, str):
        text = repr(value)
        return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} chars)"
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value):,} chars)"


def unusable_char(text: str) -> tuple[int, str] | None:
    """Position and description of the first character no agent can receive (NUL, controls, lone surrogates)."""
    m = _UNUSABLE.search(text)
    if m is None:
        return None
    ch = m.group()
    code = ord(ch)
    what = "NUL" if code == 0 else ("a lone surrogate" if 0xD800 <= code <= 0xDFFF else "a control character")
    return m.start(), f"{what} (U+{code:04X})"


def check_text(param: str, text: str, limit: int) -> None:
    if len(text) > limit:
        hint = _HINTS.get(param.rsplit(".", 1)[-1].split("[", 1)[0], "shorten it")
        raise InvalidRequest(f"`{param}` is {len(text):,} chars; the limit is {limit:,}: {hint}")
    bad = unusable_char(text)
    if bad is not None:
        pos, what = bad
        raise InvalidRequest(
            f"`{param}` contains {what} at position {pos:,}; remove it (agents take text: tabs and newlines are fine)"
        )


@dataclass
class _Budget:
    chars: int = 0


def check_arguments(arguments: Mapping[str, object]) -> None:
    """Refuse over-long strings and lists, unusable characters and over-large calls, naming the parameter."""
    budget = _Budget()
    for key, value in arguments.items():
        _check_value(key, key, value, budget)
    if budget.chars > MAX_CALL_CHARS:
        raise InvalidRequest(
            f"this call carries {budget.chars:,} chars of text; the limit is {MAX_CALL_CHARS:,} per call: split it "
            "into several calls or put large context in files the agents read"
        )


def _check_value(path: str, key: str, value: object, budget: _Budget) -> None:
    if isinstance(value, str):
        budget.chars += len(value)
        check_text(path, value, STRING_LIMITS.get(key, MAX_OTHER_CHARS))
    elif isinstance(value, list):
        items: list[object] = value  # pyright: ignore[reportUnknownVariableType]
        limit = LIST_LIMITS.get(key, MAX_LIST_ITEMS)
        if len(items) > limit:
            raise InvalidRequest(f"`{path}` has {len(items):,} items; the limit is {limit:,}: pass fewer")
        for i, item in enumerate(items):
            _check_value(f"{path}[{i}]", key, item, budget)
    elif isinstance(value, dict):
        fields: dict[object, object] = value  # pyright: ignore[reportUnknownVariableType]
        if len(fields) > MAX_LIST_ITEMS:
            raise InvalidRequest(f"`{path}` has {len(fields):,} fields; pass only the documented ones")
        for k, v in fields.items():
            name = str(k)
            check_text(f"{path} key", name, MAX_IDENT_CHARS)
            _check_value(f"{path}.{name}", name, v, budget)
