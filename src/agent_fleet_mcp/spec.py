"""What an agent is: the resolved specification a turn is launched from.

A catalog definition (agents/*.md) and an ad-hoc ``create_agent`` call both end up as an ``AgentSpec``. The spec is
stored with the agent (JSON) so a restarted server launches later turns exactly as the first.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

RunnerName = Literal["anthropic", "claude-code", "codex", "gemini", "command"]
RUNNER_NAMES: tuple[str, ...] = ("anthropic", "claude-code", "codex", "gemini", "command")
Permission = Literal["readonly", "readwrite"]
Strategy = Literal["queue", "reject", "replace"]
Isolation = Literal["worktree", "none"]
ISOLATIONS: tuple[str, ...] = ("worktree", "none")


class Concurrency(BaseModel):
    """What happens when a busy agent is commanded again."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Strategy = "queue"
    max_queued: int = Field(default=5, ge=0, le=100)


class AgentSpec(BaseModel):
    """Everything needed to launch any turn of one agent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runner: RunnerName = "anthropic"
    model: str | None = None
    system_prompt: str = ""
    permission: Permission = "readonly"
    tools: tuple[str, ...] = ()
    concurrency: Concurrency = Concurrency()
    # Limits; None = the fleet's default (config.py, README "Budgets"). max_turns: model requests per turn (for
    # runner=command, whose turn is one step: turns per life); max_cost_usd and max_tokens: the agent's whole life.
    max_turns: int | None = Field(default=None, ge=1, le=1000)
    max_cost_usd: float | None = Field(default=None, gt=0)
    max_tokens: int | None = Field(default=None, ge=1)
    timeout_s: float | None = Field(default=None, gt=0)
    # Only for runner=command, and only ever from a catalog file on disk: never from tool arguments.
    command: tuple[str, ...] = ()
    template: str | None = None
    cwd: str = "."
    # A git worktree of its own (readwrite agents): None = automatic (a worktree for a readwrite agent whose cwd is
    # in a git repository, else none). Resolved at creation; the agent's workspace is stored with it (fleet.py).
    isolation: Isolation | None = None


# Runners that report neither cost nor tokens: a cost or token limit cannot bound them, so asking for one is an
# error (max_turns and timeout_s bound them instead).
UNMETERED_RUNNERS: frozenset[str] = frozenset(("command",))


def inapplicable_limits(spec: AgentSpec) -> list[str]:
    """The limits set on ``spec`` that its runner cannot enforce."""
    if spec.runner in UNMETERED_RUNNERS:
        return [f for f in ("max_cost_usd", "max_tokens") if getattr(spec, f) is not None]
    return []


class TaskAgentDefinition(BaseModel):
    """A catalog entry: a reusable task-agent template loaded from a Markdown file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    tags: tuple[str, ...] = ()
    visibility: Literal["public", "private"] = "public"
    source: str  # the file it came from
    spec: AgentSpec
