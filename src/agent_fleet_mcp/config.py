"""Configuration from the environment (documented in README.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent_fleet_mcp.errors import InvalidRequest

DEFAULT_MAX_CONCURRENT = 8


@dataclass(frozen=True)
class Settings:
    home: Path
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    project_dir: Path = field(default_factory=Path.cwd)
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    kill_grace_s: float = 1.5
    poll_interval_s: float = 0.2

    @property
    def db_path(self) -> Path:
        return self.home / "fleet.db"

    @property
    def agents_dir(self) -> Path:
        return self.home / "agents"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, project_dir: Path | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        home = Path(env.get("AGENT_FLEET_HOME") or Path.home() / ".agent-fleet").expanduser().resolve()
        raw = env.get("AGENT_FLEET_MAX_CONCURRENT", "").strip()
        try:
            cap = int(raw) if raw else DEFAULT_MAX_CONCURRENT
        except ValueError:
            raise InvalidRequest(f"AGENT_FLEET_MAX_CONCURRENT must be a whole number, got {raw!r}") from None
        if cap < 1:
            raise InvalidRequest(f"AGENT_FLEET_MAX_CONCURRENT must be at least 1, got {cap}")
        return cls(home=home, max_concurrent=cap, project_dir=(project_dir or Path.cwd()).resolve(), env=env)
