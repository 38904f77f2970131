"""Which models are at or past end of life: read from the installed ``anthropic`` SDK's own deprecation table.

The SDK warns on every request to a deprecated model (``DEPRECATED_MODELS`` in
``anthropic/resources/messages/messages.py`` and ``anthropic/_data/deprecated_models.py``: model id -> end-of-life
date). We read those tables from the installed package's source (no ``import anthropic``: that costs ~2 s and
~80 MB in the server), so upgrading the SDK updates the fleet's view with no hand-kept copy.

A model within ``WARN_DAYS`` of its end of life gets a warning; past it, an error naming the replacement. The SDK
names no replacement, so it is the current model of the same tier (``CURRENT``).
"""

from __future__ import annotations

import ast
import datetime as dt
import functools
import importlib.util
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent_fleet_mcp.pricing import model_key
from agent_fleet_mcp.spec import TaskAgentDefinition

WARN_DAYS = 30
# The current generation, one per tier (2026-11). A deprecated model is replaced by the one of its tier.
CURRENT: dict[str, str] = {
    "opus": "claude-opus-5-5",
    "sonnet": "claude-sonnet-5-5",
    "haiku": "claude-haiku-5-5",
}
DEFAULT_REPLACEMENT = CURRENT["sonnet"]
# Where the SDK keeps its tables, relative to the installed package (both are read; they agree where they overlap).
SDK_TABLE_FILES: tuple[str, ...] = ("resources/messages/messages.py", "_data/deprecated_models.py")
_DATE = re.compile(r"^\s*([A-Za-z]+)\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})\s*$")


@dataclass(frozen=True)
class ModelNotice:
    """A model at or near its end of life."""

    model: str
    end_of_life: dt.date
    replacement: str
    level: Literal["warning", "error"]

    @property
    def message(self) -> str:
        when = self.end_of_life.isoformat()
        if self.level == "error":
            return (
                f"model {self.model!r} reached end of life on {when} (the anthropic SDK's deprecation table): "
                f"requests to it fail; use {self.replacement!r} instead"
            )
        return (
            f"model {self.model!r} reaches end of life on {when} (the anthropic SDK's deprecation table): "
            f"switch to {self.replacement!r} before then"
        )


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def parse_eol_date(text: str) -> dt.date | None:
    """``"November 30th, 2026"`` (the SDK's format) or ISO ``2026-11-30`` -> a date; ``None`` if unreadable."""
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        pass
    m = _DATE.match(text)
    if not m:
        return None
    try:
        return dt.datetime.strptime(f"{m[1]} {m[2]} {m[3]}", "%B %d %Y").date()
    except ValueError:
        return None


def _dict_literal(source: str, name: str) -> dict[str, str]:
    """The string->string dict literal assigned to ``name`` at module level of ``source``."""
    found: dict[str, str] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        else:
            continue
        if not (isinstance(target, ast.Name) and target.id == name and isinstance(value, ast.Dict)):
            continue
        for k, v in zip(value.keys, value.values, strict=True):
            key = k.value if isinstance(k, ast.Constant) else None
            when = v.value if isinstance(v, ast.Constant) else None
            if isinstance(key, str) and isinstance(when, str):
                found[key] = when
    return found


def _sdk_dir() -> Path | None:
    spec = importlib.util.find_spec("anthropic")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def sdk_table() -> dict[str, dt.date]:
    """The installed SDK's deprecation table: model id -> end-of-life date (empty if the SDK is not installed)."""
    root = _sdk_dir()
    table: dict[str, dt.date] = {}
    if root is None:
        return table
    for rel in SDK_TABLE_FILES:
        try:
            source = (root / rel).read_text(encoding="utf-8")
        except OSError:
            continue
        for model, when in _dict_literal(source, "DEPRECATED_MODELS").items():
            day = parse_eol_date(when)
            if day is not None:
                table.setdefault(model, day)
    return table


def replacement_for(model: str) -> str:
    key = model_key(model)
    family = key.split("-", 1)[0] if key else None
    return CURRENT.get(family or "", DEFAULT_REPLACEMENT)


def end_of_life(model: str, table: dict[str, dt.date] | None = None) -> dt.date | None:
    """The model's end-of-life date: an exact id in the table, else any entry naming the same model (dated,
    provider-prefixed or ``-latest`` variants: ``us.anthropic.claude-sonnet-4-5-20250929-v1:0``)."""
    table = sdk_table() if table is None else table
    name = model.strip()
    if name in table:
        return table[name]
    key = model_key(name)
    if key is None:
        return None
    dates = [day for listed, day in table.items() if model_key(listed) == key]
    return min(dates) if dates else None


def check_model(
    model: str | None, *, today: dt.date | None = None, table: dict[str, dt.date] | None = None
) -> ModelNotice | None:
    """A notice when ``model`` reaches end of life within ``WARN_DAYS`` (warning) or already has (error)."""
    if not model:
        return None
    eol = end_of_life(model, table)
    if eol is None:
        return None
    today = today or utc_today()
    if today >= eol:
        level: Literal["warning", "error"] = "error"
    elif (eol - today).days <= WARN_DAYS:
        level = "warning"
    else:
        return None
    return ModelNotice(model=model.strip(), end_of_life=eol, replacement=replacement_for(model), level=level)


def effective_model(runner: str, model: str | None) -> str | None:
    """The model a turn will request: the spec's, else the anthropic runner's default (other runners' CLIs pick
    their own default, which we do not know)."""
    if model:
        return model
    if runner == "anthropic":
        from agent_fleet_mcp.runners.anthropic import DEFAULT_MODEL

        return DEFAULT_MODEL
    return None


@dataclass(frozen=True)
class DefinitionNotice:
    """A catalog definition whose model is at or near end of life."""

    source: str
    notice: ModelNotice

    def __str__(self) -> str:
        return f"{self.source}: {self.notice.message}"


def definition_notices(
    definitions: Iterable[TaskAgentDefinition], *, today: dt.date | None = None
) -> list[DefinitionNotice]:
    """The definitions whose model is at or near end of life (for ``problems`` lists)."""
    out: list[DefinitionNotice] = []
    for d in definitions:
        notice = check_model(effective_model(d.spec.runner, d.spec.model), today=today)
        if notice is not None:
            out.append(DefinitionNotice(d.source, notice))
    return out
