"""Budgets and limits: what an agent may still spend, and why a turn is refused or stopped. No I/O but the store.

Three budgets bound spend, each checked when a turn would start (refused with the figure left) and while it runs
(stopped with the reason recorded on the turn):

- the agent's ``max_cost_usd`` and ``max_tokens`` over its whole life (every turn, input + output + cache),
- the fleet's ``AGENT_FLEET_BUDGET_USD`` per UTC day (every agent, deleted ones too),
- a ``run_agents`` batch's ``budget_usd`` (every agent created for the batch).

Limits an agent does not set come from the fleet's defaults (config.py). The figures left are handed to the turn's
runner at spawn (``TurnLimits``) so a runner that can stop itself (our worker, ``claude --max-budget-usd``) ends
before its next model request; the supervisor's follower is the bound for the others.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.runners.base import TurnLimits
from agent_fleet_mcp.spec import UNMETERED_RUNNERS, AgentSpec
from agent_fleet_mcp.store.models import AgentRow, AgentTotals
from agent_fleet_mcp.store.protocol import Store

# Runners handed the figures left at spawn that stop themselves on them (our worker; claude --max-budget-usd): the
# supervisor waits this long after seeing a budget reached before killing one (its final answer may be on its way).
SELF_LIMITING: frozenset[str] = frozenset(("anthropic", "claude-code"))
SELF_STOP_GRACE_S = 2.0


@dataclass(frozen=True)
class Limits:
    """An agent's effective limits: its spec's, else the fleet's defaults. Cost and tokens are None for runners
    that report neither (they cannot be bounded by them)."""

    max_turns: int
    timeout_s: float
    max_cost_usd: float | None
    max_tokens: int | None

    @classmethod
    def of(cls, spec: AgentSpec, settings: Settings) -> Limits:
        metered = spec.runner not in UNMETERED_RUNNERS
        return cls(
            max_turns=spec.max_turns or settings.default_max_turns,
            timeout_s=spec.timeout_s or settings.default_timeout_s,
            max_cost_usd=(spec.max_cost_usd or settings.default_max_cost_usd) if metered else None,
            max_tokens=(spec.max_tokens or settings.default_max_tokens) if metered else None,
        )


@dataclass(frozen=True)
class Spent:
    """What an agent's finished and running turns used so far."""

    cost_usd: float = 0.0
    tokens: int = 0
    turns: int = 0

    @classmethod
    def from_totals(cls, tot: AgentTotals) -> Spent:
        return cls(cost_usd=tot.cost_usd or 0.0, tokens=tot.tokens, turns=tot.turns)


@dataclass(frozen=True)
class Stop:
    """Why a turn is refused or stopped: ``reason`` goes in the turn's reason column, ``message`` is for people."""

    reason: str
    message: str


def day_start(now: float) -> float:
    """00:00 UTC of the day ``now`` falls in (the fleet budget's period)."""
    d = dt.datetime.fromtimestamp(now, tz=dt.UTC)
    return d.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


async def fleet_spent_today(store: Store, now: float) -> float:
    return await store.spend_since(day_start(now))


async def agent_spent(store: Store, agent_id: str, *, exclude_turn: int | None = None) -> Spent:
    """Usage of the agent's turns (all of them, or all but ``exclude_turn``: the one being followed)."""
    turns = await store.turns_of(agent_id)
    cost = sum(t.cost_usd or 0.0 for t in turns if t.n != exclude_turn)
    tokens = sum(
        t.input_tokens + t.output_tokens + t.cache_read_tokens + t.cache_write_tokens
        for t in turns
        if t.n != exclude_turn
    )
    return Spent(cost_usd=cost, tokens=tokens, turns=sum(1 for t in turns if t.n != exclude_turn))


async def turn_limits(
    store: Store, settings: Settings, agent: AgentRow, *, now: float, exclude_turn: int | None = None,
    spent: Spent | None = None,
) -> TurnLimits:
    """What a turn of ``agent`` may use if it starts now (figures left; may be <= 0). ``spent``: the agent's usage
    when the caller read it already (``agent_spent``)."""
    limits = Limits.of(agent.spec, settings)
    spent = spent or await agent_spent(store, agent.id, exclude_turn=exclude_turn)
    fleet_left = None
    if settings.budget_usd is not None:
        fleet_left = settings.budget_usd - await fleet_spent_today(store, now)
    batch_left = None
    if agent.batch_id is not None:
        batch = await store.get_batch(agent.batch_id)
        if batch is not None and batch.budget_usd is not None:
            batch_left = batch.budget_usd - await store.batch_spend(agent.batch_id)
    return TurnLimits(
        max_turns=limits.max_turns,
        cost_usd=None if limits.max_cost_usd is None else limits.max_cost_usd - spent.cost_usd,
        tokens=None if limits.max_tokens is None else limits.max_tokens - spent.tokens,
        fleet_usd=fleet_left,
        batch_usd=batch_left,
    )


def refusal(agent: AgentRow, settings: Settings, tl: TurnLimits, *, turns_before: int) -> Stop | None:
    """Why a new turn of ``agent`` must not start (``turns_before``: its turns before this one), or None."""
    limits = Limits.of(agent.spec, settings)
    name = agent.name
    if agent.spec.runner in UNMETERED_RUNNERS and turns_before >= limits.max_turns:
        return Stop("max_turns", f"agent {name!r} has run {turns_before} turn(s), its max_turns ({limits.max_turns}; "
                    "for a command agent, turns over its life); create a new agent to continue")  # fmt: skip
    if tl.cost_usd is not None and tl.cost_usd <= 0 and limits.max_cost_usd is not None:
        spent = limits.max_cost_usd - tl.cost_usd
        return Stop("max_cost", f"agent {name!r} has spent ${spent:.4f} of its max_cost_usd ${limits.max_cost_usd:g} "
                    "(remaining $0; the budget covers its whole life); create a new agent with a larger "
                    "max_cost_usd to continue")  # fmt: skip
    if tl.tokens is not None and tl.tokens <= 0 and limits.max_tokens is not None:
        spent_tokens = limits.max_tokens - tl.tokens
        return Stop("max_tokens", f"agent {name!r} has used {spent_tokens:,} tokens of its max_tokens "
                    f"{limits.max_tokens:,} (remaining 0; input + output + cache, whole life); create a new agent "
                    "with a larger max_tokens to continue")  # fmt: skip
    if tl.fleet_usd is not None and tl.fleet_usd <= 0 and settings.budget_usd is not None:
        return Stop("fleet_budget", fleet_budget_message(settings.budget_usd, settings.budget_usd - tl.fleet_usd))
    if tl.batch_usd is not None and tl.batch_usd <= 0:
        return Stop("batch_budget", "the run_agents batch's budget_usd is spent (remaining $0); start a new batch "
                    "with a larger budget_usd")  # fmt: skip
    return None


def fleet_budget_message(budget: float, spent: float) -> str:
    return (
        f"the fleet's daily budget is spent: ${spent:.4f} of AGENT_FLEET_BUDGET_USD ${budget:g} today (UTC), "
        "remaining $0; it resets at 00:00 UTC, or raise AGENT_FLEET_BUDGET_USD and restart the server"
    )


def running_breach(
    limits: Limits, spent_before: Spent, cost: float | None, tokens: int, elapsed_s: float | None
) -> Stop | None:
    """Why a running turn must be stopped now (its own usage so far: ``cost``, ``tokens``), or None."""
    if elapsed_s is not None and elapsed_s > limits.timeout_s:
        return Stop("timeout", f"timed out after {limits.timeout_s:g} s (timeout_s); raise it or split the task")
    total_cost = spent_before.cost_usd + (cost or 0.0)
    if limits.max_cost_usd is not None and total_cost >= limits.max_cost_usd:
        return Stop("max_cost", f"stopped at ${total_cost:.4f} over the agent's life: max_cost_usd "
                    f"{limits.max_cost_usd:g} reached")  # fmt: skip
    total_tokens = spent_before.tokens + tokens
    if limits.max_tokens is not None and total_tokens >= limits.max_tokens:
        return Stop("max_tokens", f"stopped at {total_tokens:,} tokens over the agent's life: max_tokens "
                    f"{limits.max_tokens:,} reached")  # fmt: skip
    return None


async def any_shared_breach(store: Store, settings: Settings, cache: dict[str, Stop | None]) -> bool:
    """Whether the fleet's daily budget, or the budget of a batch with a running turn, is spent; the answers go in
    ``cache`` for ``shared_breach`` (a few narrow reads, not one per running turn)."""
    batches = await store.budgeted_batches_running()
    fleet = settings.budget_usd is not None and bool(batches or await store.running_turn_pids())
    if not fleet and not batches:
        return False
    found = fleet and await breach_of(store, settings, None, cache) is not None
    for batch_id in batches:
        found = await breach_of(store, settings, batch_id, cache) is not None or found
    return found


async def shared_breach(
    store: Store, settings: Settings, agent: AgentRow, cache: dict[str, Stop | None] | None = None
) -> Stop | None:
    """The fleet's daily budget or the agent's batch budget is spent (every turn's flushed usage counts). ``cache``
    keeps the answers of one pass over many turns ("" for the fleet, batch ids)."""
    return await breach_of(store, settings, agent.batch_id, cache)


async def breach_of(
    store: Store, settings: Settings, batch_id: str | None, cache: dict[str, Stop | None] | None = None
) -> Stop | None:
    """``shared_breach`` for an agent of this batch (None: of no batch)."""
    cache = {} if cache is None else cache
    if settings.budget_usd is not None:
        if "" not in cache:
            spent = await fleet_spent_today(store, time.time())
            over = spent >= settings.budget_usd
            cache[""] = Stop("fleet_budget", fleet_budget_message(settings.budget_usd, spent)) if over else None
        if cache[""] is not None:
            return cache[""]
    if batch_id is None:
        return None
    if batch_id not in cache:
        cache[batch_id] = None
        batch = await store.get_batch(batch_id)
        if batch is not None and batch.budget_usd is not None:
            spent = await store.batch_spend(batch_id)
            if spent >= batch.budget_usd:
                cache[batch_id] = Stop("batch_budget", f"stopped: batch {batch_id} has spent "
                                             f"${spent:.4f} of its budget_usd ${batch.budget_usd:g}")  # fmt: skip
    return cache[batch_id]
