"""Configuration from the environment (documented in README.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent_fleet_mcp.errors import InvalidRequest

DEFAULT_MAX_CONCURRENT = 8
# Every agent's limits when neither its definition nor create_agent sets them (README "Budgets").
DEFAULT_MAX_TURNS = 30  # model requests per turn (claude -p's own --max-turns default here); command: turns per life
DEFAULT_TIMEOUT_S = 3600.0  # one turn's wall clock
DEFAULT_MAX_COST_USD = 5.0  # an agent's whole life
DEFAULT_MAX_TOKENS = 20_000_000  # an agent's whole life: input + output + cache read + cache write
DEFAULT_MAX_DEPTH = 2  # host -> agent (1) -> sub-agent (2); a sub-agent's own server refuses to create more
DEFAULT_MAX_TREE_AGENTS = 20  # agents per delegation tree, the root included (deleted ones count)


@dataclass(frozen=True)
class Settings:
    home: Path
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    project_dir: Path = field(default_factory=Path.cwd)
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    kill_grace_s: float = 1.5
    poll_interval_s: float = 0.2
    default_max_turns: int = DEFAULT_MAX_TURNS
    default_timeout_s: float = DEFAULT_TIMEOUT_S
    default_max_cost_usd: float = DEFAULT_MAX_COST_USD
    default_max_tokens: int = DEFAULT_MAX_TOKENS
    budget_usd: float | None = None  # fleet-wide, per UTC day (AGENT_FLEET_BUDGET_USD)
    max_depth: int = DEFAULT_MAX_DEPTH
    max_tree_agents: int = DEFAULT_MAX_TREE_AGENTS
    # Where this server sits in a delegation tree: set (in its environment) when an agent's turn started it.
    depth: int = 0
    root_id: str | None = None
    parent_id: str | None = None

    @property
    def db_path(self) -> Path:
        return self.home / "fleet.db"

    @property
    def agents_dir(self) -> Path:
        return self.home / "agents"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    def child_env(self, agent_id: str, root_id: str | None, depth: int) -> dict[str, str]:
        """What a server started inside an agent's turn must know: the same home and limits, and where the agent
        sits in its delegation tree (read back by ``from_env``)."""
        env = {
            "AGENT_FLEET_HOME": str(self.home), "AGENT_FLEET_DEPTH": str(depth),
            "AGENT_FLEET_ROOT": root_id or agent_id, "AGENT_FLEET_AGENT_ID": agent_id,
            "AGENT_FLEET_MAX_DEPTH": str(self.max_depth), "AGENT_FLEET_MAX_TREE_AGENTS": str(self.max_tree_agents),
            "AGENT_FLEET_MAX_CONCURRENT": str(self.max_concurrent),
            "AGENT_FLEET_DEFAULT_MAX_TURNS": str(self.default_max_turns),
            "AGENT_FLEET_DEFAULT_TIMEOUT_S": repr(self.default_timeout_s),
            "AGENT_FLEET_DEFAULT_MAX_COST_USD": repr(self.default_max_cost_usd),
            "AGENT_FLEET_DEFAULT_MAX_TOKENS": str(self.default_max_tokens),
        }  # fmt: skip
        if self.budget_usd is not None:
            env["AGENT_FLEET_BUDGET_USD"] = repr(self.budget_usd)
        return env

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, project_dir: Path | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        home = Path(env.get("AGENT_FLEET_HOME") or Path.home() / ".agent-fleet").expanduser().resolve()
        cap = int(_number(env, "AGENT_FLEET_MAX_CONCURRENT", DEFAULT_MAX_CONCURRENT, integer=True, low=1))
        budget = env.get("AGENT_FLEET_BUDGET_USD", "").strip()
        return cls(
            home=home, max_concurrent=cap, project_dir=(project_dir or Path.cwd()).resolve(), env=env,
            default_max_turns=int(_number(env, "AGENT_FLEET_DEFAULT_MAX_TURNS", DEFAULT_MAX_TURNS, integer=True,
                                          low=1)),
            default_timeout_s=_number(env, "AGENT_FLEET_DEFAULT_TIMEOUT_S", DEFAULT_TIMEOUT_S),
            default_max_cost_usd=_number(env, "AGENT_FLEET_DEFAULT_MAX_COST_USD", DEFAULT_MAX_COST_USD),
            default_max_tokens=int(_number(env, "AGENT_FLEET_DEFAULT_MAX_TOKENS", DEFAULT_MAX_TOKENS, integer=True,
                                           low=1)),
            budget_usd=_number(env, "AGENT_FLEET_BUDGET_USD", 0.0) if budget else None,
            max_depth=int(_number(env, "AGENT_FLEET_MAX_DEPTH", DEFAULT_MAX_DEPTH, integer=True, low=1)),
            max_tree_agents=int(_number(env, "AGENT_FLEET_MAX_TREE_AGENTS", DEFAULT_MAX_TREE_AGENTS, integer=True,
                                        low=1)),
            # where this server sits in a delegation tree (set by the fleet in an agent's environment)
            depth=int(_number(env, "AGENT_FLEET_DEPTH", 0, integer=True, low=0)),
            root_id=env.get("AGENT_FLEET_ROOT", "").strip() or None,
            parent_id=env.get("AGENT_FLEET_AGENT_ID", "").strip() or None,
        )  # fmt: skip


def _number(env: Mapping[str, str], key: str, default: float, *, integer: bool = False, low: float = 0) -> float:
    """A whole number >= ``low``, or (``integer=False``) a finite number > 0."""
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise InvalidRequest(f"{key} must be {kind}, got {raw[:100]!r}; fix or unset it") from None
    if integer and value < low:
        raise InvalidRequest(f"{key} must be at least {low:g}, got {value}; fix or unset it")
    if not integer and not (0 < value < float("inf")):
        raise InvalidRequest(f"{key} must be a number greater than 0, got {raw[:100]!r}; fix or unset it")
    return value
