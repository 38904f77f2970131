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
    max_turns: int | None = Field(default=None, ge=1, le=1000)
    max_cost_usd: float | None = Field(default=None, gt=0)
    timeout_s: float | None = Field(default=None, gt=0)
    # Only for runner=command, and only ever from a catalog file on disk: never from tool arguments.
    command: tuple[str, ...] = ()
    template: str | None = None
    cwd: str = "."


class TaskAgentDefinition(BaseModel):
    """A catalog entry: a reusable task-agent template loaded from a Markdown file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    tags: tuple[str, ...] = ()
    visibility: Literal["public", "private"] = "public"
    source: str  # the file it came from
    spec: AgentSpec
