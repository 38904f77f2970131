"""The three MCP prompts, seen through an in-process MCP client.

Claude Code fills a prompt's arguments from the typed text split on whitespace, word by word, and shows the model
the whole text in <command-args> (tests/runners/test_slash_commands_real.py checks that with the real CLI). So each
prompt takes one argument, keeps every word it is given (hosts that pass the text whole), and points the model at
<command-args> (Claude Code, which passes only the first word)."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.anyio

PHRASE = "make the retry count configurable"


def text_of(result: Any) -> str:
    (message,) = result.messages
    return message.content.text


async def arguments(client: Any) -> dict[str, list[Any]]:
    return {p.name: list(p.arguments or []) for p in (await client.list_prompts()).prompts}


async def test_every_prompt_takes_one_described_argument(client: Any) -> None:
    args = await arguments(client)
    assert set(args) == {"orchestrate", "review", "fleet"}
    for name, listed in args.items():
        assert len(listed) == 1, f"{name} takes {[a.name for a in listed]}: a second word would fill the second one"
        assert listed[0].description, name


@pytest.mark.parametrize("name", ["orchestrate", "review", "fleet"])
async def test_a_multi_word_argument_keeps_every_word(client: Any, name: str) -> None:
    (arg,) = (await arguments(client))[name]
    body = text_of(await client.get_prompt(name, {arg.name: PHRASE}))
    assert PHRASE in body


@pytest.mark.parametrize("name", ["orchestrate", "review", "fleet"])
async def test_words_split_like_claude_code_fill_nothing_but_the_first_argument(client: Any, name: str) -> None:
    """The attack: what Claude Code sends for `/mcp__fleet__<name> make the retry count configurable` is the words
    zipped onto the listed arguments. The rendering must be the first word's alone (no word became a `cwd` or a
    `focus`), and it must send the model to <command-args> for the whole text."""
    listed = (await arguments(client))[name]
    words = PHRASE.split()
    as_claude_code_sends = {a.name: w for a, w in zip(listed, words, strict=False)}
    body = text_of(await client.get_prompt(name, as_claude_code_sends))
    assert body == text_of(await client.get_prompt(name, {listed[0].name: words[0]}))
    assert "<command-args>" in body and "WHOLE text" in body


async def test_prompts_need_no_argument(client: Any) -> None:
    orch = text_of(await client.get_prompt("orchestrate", {}))
    assert "ask the user for one" in orch and "{{scout-id}}" in orch and "run_agents" in orch
    review = text_of(await client.get_prompt("review", {}))
    assert "git diff HEAD" in review and "code-reviewer" in review and "test-writer" in review
    assert "get_agent_status" in text_of(await client.get_prompt("fleet", {}))


async def test_braces_in_the_task_are_kept_literally(client: Any) -> None:
    body = text_of(await client.get_prompt("orchestrate", {"task": "rename {cwd} to {{task}} in src/"}))
    assert "rename {cwd} to {{task}} in src/" in body


async def test_cwd_is_guidance_not_a_parameter(client: Any) -> None:
    body = text_of(await client.get_prompt("orchestrate", {"task": "fix the build in ../other-repo"}))
    assert "current project" in body and "only when the task names another folder" in body


async def test_prompts_teach_worktrees_and_merge_agent(client: Any) -> None:
    orch = text_of(await client.get_prompt("orchestrate", {"task": "add a flag"}))
    assert "own worktree" in orch and "overlaps" in orch and "dry_run=true" in orch
    assert "nothing is" in orch and "caused" in orch and 'strategy="squash"' in orch
    review = text_of(await client.get_prompt("review", {}))
    assert 'mode="diff"' in review and "merge_agent" in review
