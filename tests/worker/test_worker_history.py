"""The persisted conversation: atomic saves, prompt merging, and repair of any incomplete tail on load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent_fleet_mcp.worker import history
from agent_fleet_mcp.worker.history import NOT_RUN, add_prompt, load, repair, save


def user(*blocks: Any) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


def assistant(*blocks: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": list(blocks)}


def text(t: str) -> dict[str, Any]:
    return {"type": "text", "text": t}


def call(i: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": i, "name": "read_file", "input": {"path": "a"}}


def result(i: str) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": i, "content": "ok"}


def test_save_then_load_round_trips_atomically(tmp_path: Path) -> None:
    msgs = [user(text("hi")), assistant(call("t1")), user(result("t1")), assistant(text("done"))]
    save(tmp_path, msgs)
    assert load(tmp_path) == (msgs, [])
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]  # no temp file left
    assert json.loads((tmp_path / "history.json").read_text())["version"] == history.FORMAT_VERSION


def test_missing_history_is_a_new_conversation(tmp_path: Path) -> None:
    assert load(tmp_path / "nope") == ([], [])


def test_corrupt_history_is_moved_aside(tmp_path: Path) -> None:
    (tmp_path / "history.json").write_text('{"messages": [')
    msgs, notes = load(tmp_path)
    assert msgs == [] and "moved to history.json.corrupt-" in notes[0]
    assert len(list(tmp_path.glob("history.json.corrupt-*"))) == 1


def test_prompt_merges_into_a_trailing_user_message() -> None:
    msgs = [user(text("a")), assistant(call("t1")), user(result("t1"))]
    add_prompt(msgs, "next")
    assert msgs[-1] == user(result("t1"), text("next"))
    msgs.append(assistant(text("ok")))
    add_prompt(msgs, "again")
    assert msgs[-1] == user(text("again"))


def test_dangling_tool_use_at_the_end_gets_error_results() -> None:
    msgs, notes = repair([user(text("go")), assistant(text("reading"), call("t1"), call("t2"))])
    assert msgs[-1] == user(
        {"type": "tool_result", "tool_use_id": "t1", "content": NOT_RUN, "is_error": True},
        {"type": "tool_result", "tool_use_id": "t2", "content": NOT_RUN, "is_error": True},
    )
    assert notes


def test_partially_answered_round_is_completed_in_call_order() -> None:
    msgs, _ = repair([user(text("go")), assistant(call("t1"), call("t2")), user(result("t2"), text("more"))])
    assert [b.get("tool_use_id") for b in msgs[-1]["content"]] == ["t1", "t2", None]
    assert msgs[-1]["content"][0]["is_error"] is True


def test_orphan_results_empty_blocks_and_bad_roles_are_dropped() -> None:
    raw: list[Any] = [
        assistant(text("leading assistant")),
        "junk",
        {"role": "system", "content": "x"},
        user(result("nobody"), text("hello"), text("")),
        {"role": "user", "content": "plain string"},
        assistant(text("")),
        assistant(text("answer")),
    ]
    msgs, notes = repair(raw)
    assert msgs == [user(text("hello"), text("plain string")), assistant(text("answer"))]
    assert len(notes) >= 3


def test_user_message_of_only_orphans_disappears_and_roles_still_alternate() -> None:
    msgs, _ = repair([user(text("a")), assistant(text("b")), user(result("zz")), assistant(text("c"))])
    assert [m["role"] for m in msgs] == ["user", "assistant"]
    assert msgs[1]["content"] == [text("b"), text("c")]


def test_a_valid_history_is_left_alone() -> None:
    msgs = [user(text("hi")), assistant(text("x"), call("t1")), user(result("t1")), assistant(text("done"))]
    assert repair(msgs) == (msgs, [])
