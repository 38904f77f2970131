"""What a model request costs: USD per million tokens for current Claude models.

Used where the backend does not report cost itself (our anthropic worker, codex, gemini ...). An unknown model gives
``None``: a cost is never guessed from a similar name. Model ids are matched with their dated and provider variants
(``claude-sonnet-4-5``, ``claude-sonnet-4-5-20250929``, ``claude-3-7-sonnet-latest``,
``us.anthropic.claude-sonnet-4-5-20250929-v1:0``, ``claude-sonnet-4-5@20250929``); bare family aliases (``sonnet``)
name no single model and give ``None``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

# Source: Claude Code 2.1.329's model catalog, cross-checked against the costUSD it reported on real runs; the public
# reference is the pricing page of Anthropic's Claude API documentation. Update the table and this date together.
PRICES_AS_OF = "2026-11"

# Where the catalog gives no cache price, the API's standard multipliers of the input price apply:
# cache write 5 min x1.25, cache write 1 h x2, cache read x0.1.
_W5M, _W1H, _READ = 1.25, 2.0, 0.1


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float
    # Requests whose prompt (input + cache read + cache write tokens) exceeds this are priced at ``long`` entirely.
    long_prompt_over: int | None = None
    long: Price | None = None


def _std(inp: float, out: float, *, read: float | None = None) -> Price:
    return Price(inp, out, inp * _W5M, inp * _W1H, inp * _READ if read is None else read)


_OPUS_4_5_TO_5 = Price(5, 25, 6.25, 10, 0.50)
_SONNET_3_7_TO_4_6 = Price(3, 15, 3.75, 6, 0.30)

# Keys are "<family>-<major>-<minor>" (claude-opus-5 == opus-5-0, claude-sonnet-4-20250514 == sonnet-4-0).
PRICES: dict[str, Price] = {
    "opus-5-5": Price(4, 20, 5, 8, 0.20),
    "opus-5-0": _OPUS_4_5_TO_5,
    "opus-4-8": _OPUS_4_5_TO_5,
    "opus-4-7": _OPUS_4_5_TO_5,
    "opus-4-6": _OPUS_4_5_TO_5,
    "opus-4-5": _OPUS_4_5_TO_5,
    "opus-4-1": _std(15, 75),
    "opus-4-0": _std(15, 75),
    "sonnet-5-5": Price(2, 10, 2.5, 4, 0.10),
    "sonnet-5-0": _std(2, 10, read=0.20),
    "sonnet-4-6": _SONNET_3_7_TO_4_6,
    "sonnet-4-5": _SONNET_3_7_TO_4_6,
    "sonnet-4-0": _SONNET_3_7_TO_4_6,
    "sonnet-3-7": _SONNET_3_7_TO_4_6,
    "haiku-5-5": Price(
        0.10, 0.50, 0.10 * _W5M, 0.10 * _W1H, 0.10 * _READ, long_prompt_over=100_000, long=_std(0.50, 2.50)
    ),
    "haiku-4-5": _std(1, 5),
    "fable-5-2": _std(8, 40),
}

_FAMILIES = "opus|sonnet|haiku|fable"
_FAMILY_FIRST = re.compile(rf"^({_FAMILIES})-(\d{{1,2}})(?:-(\d{{1,2}}))?$")
_VERSION_FIRST = re.compile(rf"^(\d{{1,2}})(?:-(\d{{1,2}}))?-({_FAMILIES})$")  # claude-3-7-sonnet


@functools.lru_cache(maxsize=4096)  # called per turn and per end-of-life table entry; a few dozen ids in practice
def model_key(model: str) -> str | None:
    """The price-table key of a model id, or ``None`` when the id names no single known-format model."""
    m = model.strip().lower()
    m = re.sub(r"\[[^\]]*\]$", "", m)  # claude-sonnet-4-5[1m]
    m = re.sub(r"^(?:[a-z]{2,4}\.)?anthropic\.", "", m)  # bedrock: us.anthropic.claude-...
    m = re.sub(r"-v\d+(?::\d+)?$", "", m)  # bedrock: ...-v1:0
    m = re.sub(r"[-@]\d{8}$", "", m)  # dated: -20250929, vertex @20250929
    m = re.sub(r"-latest$", "", m)
    m = re.sub(r"^claude-", "", m)
    if found := _FAMILY_FIRST.match(m):
        family, major, minor = found.groups()
    elif found := _VERSION_FIRST.match(m):
        major, minor, family = found.groups()
    else:
        return None
    return f"{family}-{int(major)}-{int(minor or 0)}"


def price_of(model: str | None) -> Price | None:
    if not model:
        return None
    key = model_key(model)
    return PRICES.get(key) if key else None


def cost_usd(
    model: str | None,
    *,
    input: int,
    output: int,
    cache_read: int = 0,
    cache_write: int = 0,
    cache_write_1h: int = 0,
) -> float | None:
    """USD cost of ONE model request; ``None`` for a model not in the table.

    The token counts are keyword-only (named like the fields of a ``usage`` event): ``input`` is the uncached input,
    ``cache_read`` the input read from the cache, ``cache_write`` all cache-creation tokens (the API's
    ``cache_creation_input_tokens``) and ``cache_write_1h`` the part of them written with a 1-hour TTL (priced
    higher), when known.
    """
    price = price_of(model)
    if price is None:
        return None
    prompt = input + cache_read + cache_write
    if price.long is not None and price.long_prompt_over is not None and prompt > price.long_prompt_over:
        price = price.long
    cache_write_1h = min(max(cache_write_1h, 0), cache_write)
    total = (
        input * price.input
        + output * price.output
        + cache_read * price.cache_read
        + (cache_write - cache_write_1h) * price.cache_write_5m
        + cache_write_1h * price.cache_write_1h
    ) / 1_000_000
    return round(total, 8)
