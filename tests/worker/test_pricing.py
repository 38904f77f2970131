"""The price table: model id matching (dated, provider and legacy forms), cost math, unknown -> None."""

from __future__ import annotations

import pytest

from agent_fleet_mcp import pricing
from agent_fleet_mcp.pricing import cost_usd, model_key


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ("claude-sonnet-4-5", "sonnet-4-5"),
        ("claude-sonnet-4-5-20250929", "sonnet-4-5"),
        ("claude-sonnet-4-5@20250929", "sonnet-4-5"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "sonnet-4-5"),
        ("claude-sonnet-4-5[1m]", "sonnet-4-5"),
        ("claude-sonnet-4-20250514", "sonnet-4-0"),
        ("claude-sonnet-4-0", "sonnet-4-0"),
        ("claude-opus-4-1-20250805", "opus-4-1"),
        ("claude-4-opus-20250514", "opus-4-0"),
        ("claude-3-7-sonnet-latest", "sonnet-3-7"),
        ("claude-opus-5", "opus-5-0"),
        ("Claude-Haiku-5-5", "haiku-5-5"),
        ("sonnet-4-6", "sonnet-4-6"),
        ("sonnet", None),
        ("claude-sonnet", None),
        ("gpt-5", None),
        ("claude-sonnet-4-5-preview", None),
    ],
)
def test_model_ids_map_to_table_keys(model: str, key: str | None) -> None:
    assert model_key(model) == key


def test_every_table_key_is_reachable_from_its_claude_id() -> None:
    for key in pricing.PRICES:
        family, major, minor = key.split("-")
        assert model_key(f"claude-{family}-{major}-{minor}") == key


def test_cost_of_one_request_uses_input_output_and_cache_prices() -> None:
    # sonnet-4-5: 3 in, 15 out, 3.75 cache write (5m), 0.30 cache read per Mtok
    cost = cost_usd(
        "claude-sonnet-4-5-20250929", input=1_000_000, output=100_000, cache_read=2_000_000, cache_write=400_000
    )
    assert cost == pytest.approx(3 + 1.5 + 0.6 + 1.5)


def test_token_counts_are_keyword_only_so_they_cannot_be_swapped() -> None:
    with pytest.raises(TypeError, match="positional"):
        cost_usd("claude-sonnet-4-5", 1_000, 100)  # type: ignore[misc]  # pyright: ignore[reportCallIssue]


def test_one_hour_cache_writes_are_priced_higher() -> None:
    five_min = cost_usd("claude-opus-4-5", input=0, output=0, cache_write=1_000_000)
    one_hour = cost_usd("claude-opus-4-5", input=0, output=0, cache_write=1_000_000, cache_write_1h=1_000_000)
    assert (five_min, one_hour) == (pytest.approx(6.25), pytest.approx(10.0))


def test_catalog_specific_cache_prices() -> None:
    assert cost_usd("claude-sonnet-5-5", input=0, output=0, cache_read=1_000_000) == pytest.approx(0.10)
    assert cost_usd("claude-sonnet-5", input=0, output=0, cache_read=1_000_000) == pytest.approx(0.20)
    assert cost_usd("claude-opus-5-5", input=1_000_000, output=1_000_000) == pytest.approx(24.0)


def test_haiku_5_5_long_prompt_tier_applies_above_100k_prompt_tokens() -> None:
    short = cost_usd("claude-haiku-5-5", input=100_000, output=1_000)
    assert short == pytest.approx((100_000 * 0.10 + 1_000 * 0.50) / 1e6)
    # the prompt counts cache reads and writes too: 60k + 50k > 100k -> every token at the long tier
    long = cost_usd("claude-haiku-5-5", input=60_000, output=1_000, cache_read=50_000)
    assert long == pytest.approx((60_000 * 0.50 + 1_000 * 2.50 + 50_000 * 0.05) / 1e6)


def test_unknown_model_costs_none_never_a_guess() -> None:
    assert cost_usd("claude-sonnet-9-9", input=10, output=10) is None
    assert cost_usd("my-local-llama", input=10, output=10) is None
    assert cost_usd(None, input=10, output=10) is None
    assert cost_usd("sonnet", input=10, output=10) is None


def test_prices_are_dated() -> None:
    assert pricing.PRICES_AS_OF == "2026-11"
