"""Pure pieces of the worker loop: request building (cache breakpoints), usage pricing, SIGTERM shielding."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agent_fleet_mcp.worker import signals
from agent_fleet_mcp.worker.loop import (
    Options,
    assistant_message,
    max_retries_from_env,
    parse_tool_input,
    request_params,
    system_prompt,
    usage_fields,
)


def opts(**kw: object) -> Options:
    return Options(agent_dir=Path("/a"), cwd=Path("/p"), model="claude-haiku-4-5", permission="readonly", **kw)  # type: ignore[arg-type]


def test_request_marks_the_static_prefix_and_newest_block_for_caching_without_touching_history() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "grep", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x"}]},
    ]
    params = request_params(opts(max_tokens=100), messages, "SYS", [{"name": "grep"}])
    assert params["system"] == [{"type": "text", "text": "SYS", "cache_control": {"type": "ephemeral"}}]
    assert params["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in str(params["messages"][:2])
    assert "cache_control" not in str(messages)  # the persisted history stays clean
    assert (params["model"], params["max_tokens"], params["tools"]) == ("claude-haiku-4-5", 100, [{"name": "grep"}])
    assert "tools" not in request_params(opts(), messages, "SYS", [])


def test_system_prompt_tells_the_agent_where_it_works_then_adds_the_spec_prompt() -> None:
    text = system_prompt(opts(system="Review only."))
    assert text.startswith("You are an autonomous agent working in the directory /p (readonly).")
    assert text.endswith("\n\nReview only.") and "edit" not in text.split("\n")[0]
    assert "edit and run commands" in system_prompt(Options(Path("/a"), Path("/p"), "m", "readwrite"))


def test_usage_fields_price_one_request_and_split_one_hour_cache_writes() -> None:
    usage = SimpleNamespace(
        input_tokens=10, output_tokens=20, cache_read_input_tokens=1000, cache_creation_input_tokens=300,
        cache_creation=SimpleNamespace(ephemeral_5m_input_tokens=100, ephemeral_1h_input_tokens=200),
    )  # fmt: skip
    fields = usage_fields(usage, "claude-haiku-4-5-20251001")
    # haiku-4-5: 1 in, 5 out, 1.25 write 5m, 2 write 1h, 0.10 read per Mtok
    expected = (10 * 1 + 20 * 5 + 1000 * 0.10 + 100 * 1.25 + 200 * 2) / 1e6
    assert fields["cost_usd"] == pytest.approx(expected)
    assert (fields["context_tokens"], fields["cache_write"], fields["scope"]) == (1310, 300, "request")
    unknown = usage_fields(SimpleNamespace(input_tokens=1, output_tokens=1), "mystery-model")
    assert unknown["cost_usd"] is None and unknown["cache_read"] == 0


def test_assistant_message_keeps_text_and_tool_use_only() -> None:
    content = [
        SimpleNamespace(type="text", text="Let me look."),
        SimpleNamespace(type="text", text=""),
        SimpleNamespace(type="tool_use", id="t1", name="grep", input={"pattern": "x"}),
        SimpleNamespace(type="server_tool_use", id="s1"),
    ]
    assert assistant_message(content) == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "t1", "name": "grep", "input": {"pattern": "x"}},
        ],
    }
    assert assistant_message([SimpleNamespace(type="text", text="")]) is None


def test_small_parsers() -> None:
    assert parse_tool_input('{"path": "a"}') == {"path": "a"}
    assert parse_tool_input("[1]") == {} and parse_tool_input(None) == {}
    assert max_retries_from_env({}) == 2
    assert max_retries_from_env({"AGENT_FLEET_MAX_RETRIES": "0"}) == 0
    assert max_retries_from_env({"AGENT_FLEET_MAX_RETRIES": "lots"}) == 2


@pytest.fixture
def worker_signals() -> Iterator[None]:
    old = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    signals.install()
    yield
    signal.signal(signal.SIGTERM, old[0])
    signal.signal(signal.SIGINT, old[1])
    signals._depth, signals._pending, signals._cancelled = 0, False, False  # pyright: ignore[reportPrivateUsage]


def test_sigterm_inside_shielded_is_held_until_the_block_ends(worker_signals: None) -> None:
    done = []
    with pytest.raises(signals.Cancelled):
        with signals.shielded():
            os.kill(os.getpid(), signal.SIGTERM)
            done.append("line written")  # not interrupted halfway
        done.append("never")
    assert done == ["line written"] and signals.cancelled()
    os.kill(os.getpid(), signal.SIGTERM)  # further signals are ignored during clean-up


def test_sigterm_interrupts_a_blocking_wait_at_once(worker_signals: None) -> None:
    timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGTERM))
    started = time.monotonic()
    timer.start()
    with pytest.raises(signals.Cancelled):
        time.sleep(10)
    timer.join()
    assert time.monotonic() - started < 5
