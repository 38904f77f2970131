"""merge_agent, get_agent_output(mode="diff") and the status rows' changes/overlaps, through the real MCP client
with real git repositories and real command-runner agents (the `scribe` fixture writes files in its cwd)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .helpers import call, err, wait_all

pytestmark = pytest.mark.anyio

GIT_ENV = {"GIT_AUTHOR_NAME": "u", "GIT_AUTHOR_EMAIL": "u@x.invalid", "GIT_COMMITTER_NAME": "u",
           "GIT_COMMITTER_EMAIL": "u@x.invalid"}  # fmt: skip


def git(repo: Path, *args: str) -> str:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GIT_")}, **GIT_ENV}
    done = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True)
    return done.stdout


@pytest.fixture
def repo(project: Path) -> Path:
    """The server's project as a git repository with one commit (README.md, app.py)."""
    (project / "app.py").write_text("x = 1\n")
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "start")
    return project


def checkout_state(repo: Path) -> dict[str, Any]:
    """Everything a failed merge must leave as it was."""
    gitdir = repo / ".git"
    return {
        "head": git(repo, "rev-parse", "HEAD"), "status": git(repo, "status", "--porcelain"),
        "index": (gitdir / "index").read_bytes(), "stash": git(repo, "stash", "list"),
        "merge_head": (gitdir / "MERGE_HEAD").exists(), "lock": (gitdir / "index.lock").exists(),
        "files": {p.name: p.read_bytes() for p in sorted(repo.iterdir()) if p.is_file()},
    }  # fmt: skip


async def scribe(client: Any, name: str, prompt: str) -> dict[str, Any]:
    await call(client, "create_agent", name=name, template="scribe", prompt=prompt)
    await wait_all(client, [name])
    [row] = (await call(client, "get_agent_status", agents=[name]))["agents"]
    return row


async def test_merge_clean_after_a_dry_run(client: Any, repo: Path) -> None:
    row = await scribe(client, "w1", "set notes.txt hello\nset app.py x = 2")
    assert row["changes"] == "+2 -1, 2 files" and not row.get("overlaps")
    assert not (repo / "notes.txt").exists() and (repo / "app.py").read_text() == "x = 1\n"

    before = checkout_state(repo)
    dry = await call(client, "merge_agent", agent="w1", dry_run=True)
    assert dry["merged"] is False and dry["dry_run"] is True and not dry.get("conflicts")
    assert sorted(dry["files"]) == ["app.py", "notes.txt"] and (dry["added"], dry["removed"]) == (2, 1)
    assert checkout_state(repo) == before

    done = await call(client, "merge_agent", agent="w1")
    assert done["merged"] is True and done["commit"] and not done.get("conflicts")
    assert (repo / "notes.txt").read_text() == "hello\n" and (repo / "app.py").read_text() == "x = 2\n"
    assert git(repo, "rev-parse", "HEAD").strip() == done["commit"]
    assert git(repo, "status", "--porcelain") == ""
    [row] = (await call(client, "get_agent_status", agents=["w1"]))["agents"]
    assert row["changes"].endswith("merged")


async def test_squash_leaves_the_changes_uncommitted(client: Any, repo: Path) -> None:
    await scribe(client, "sq", "set notes.txt squashed")
    head = git(repo, "rev-parse", "HEAD")
    done = await call(client, "merge_agent", agent="sq", strategy="squash")
    assert done["merged"] is True and done.get("commit") is None
    assert git(repo, "rev-parse", "HEAD") == head
    assert (repo / "notes.txt").read_text() == "squashed\n" and "notes.txt" in git(repo, "status", "--porcelain")


async def test_overlaps_then_a_conflict_that_changes_nothing(client: Any, repo: Path) -> None:
    await call(client, "create_agent", name="a1", template="scribe", prompt="set app.py x = 'a1'")
    await call(client, "create_agent", name="a2", template="scribe", prompt="set app.py x = 'a2'\nset b.txt b")
    await call(client, "create_agent", name="a3", template="scribe", prompt="set other.txt c")
    await wait_all(client, ["a1", "a2", "a3"])
    rows = {r["name"]: r for r in (await call(client, "get_agent_status"))["agents"]}
    assert rows["a1"]["overlaps"] == ["a2"] and rows["a2"]["overlaps"] == ["a1"]
    assert not rows["a3"].get("overlaps") and rows["a3"]["changes"] == "+1 -0, 1 file"
    assert (repo / "app.py").read_text() == "x = 1\n"  # both edited their own worktree

    assert (await call(client, "merge_agent", agent="a1"))["merged"] is True
    before = checkout_state(repo)
    clash = await call(client, "merge_agent", agent="a2")
    assert clash["merged"] is False and clash["conflicts"] == ["app.py"]
    assert clash["caused_by"] == {"app.py": ["a1"]} and not clash.get("user_edits")
    assert "app.py" in clash["note"]
    assert checkout_state(repo) == before
    assert (repo / "app.py").read_text() == "x = 'a1'\n" and not (repo / "b.txt").exists()


async def test_the_users_uncommitted_edit_is_a_conflict_never_overwritten(client: Any, repo: Path) -> None:
    await scribe(client, "u1", "set app.py x = 'agent'")
    (repo / "app.py").write_text("x = 'mine'\n")  # after the agent's base
    before = checkout_state(repo)
    for dry in (True, False):
        clash = await call(client, "merge_agent", agent="u1", dry_run=dry)
        assert clash["merged"] is False and clash["conflicts"] == ["app.py"] and clash["user_edits"] == ["app.py"]
        assert checkout_state(repo) == before


async def test_diff_mode_pages_like_the_other_modes(client: Any, repo: Path) -> None:
    await scribe(client, "big", "set big.txt " + "y" * 9000)
    first = await call(client, "get_agent_output", agent="big", mode="diff", max_chars=4000)
    assert first["mode"] == "diff" and first["truncated"] and first["next_cursor"] == 4000
    assert "big.txt" in first["text"] and len(first["text"]) == 4000
    rest = await call(client, "get_agent_output", agent="big", mode="diff", max_chars=20000, cursor=4000)
    whole = first["text"] + rest["text"]
    assert not rest.get("truncated") and rest.get("next_cursor") is None and len(whole) == first["total_chars"]
    assert "+" + "y" * 9000 in whole


async def test_agents_without_a_worktree_say_why(client: Any, repo: Path) -> None:
    await call(client, "create_agent", name="inplace", template="scribe", prompt="set here.txt x", isolation="none")
    await call(client, "create_agent", name="reader", template="echo", prompt="hi")
    await wait_all(client, ["inplace", "reader"])
    assert (repo / "here.txt").read_text() == "x\n"
    for name in ("inplace", "reader"):
        msg = err(await client.call_tool("merge_agent", {"agent": name}))
        assert "no worktree" in msg and "isolation none" in msg
        msg = err(await client.call_tool("get_agent_output", {"agent": name, "mode": "diff"}))
        assert "no worktree" in msg
    msg = err(await client.call_tool("merge_agent", {"agent": "nobody"}))
    assert "no agent named" in msg


async def test_merge_waits_for_a_working_agent(client: Any, repo: Path) -> None:
    await call(client, "create_agent", name="slow", template="scribe", prompt="sleep 30\nset late.txt x")
    msg = err(await client.call_tool("merge_agent", {"agent": "slow"}))
    assert "still working" in msg and "wait_for_agents" in msg
    await call(client, "delete_agent", agents="slow", purge=True)


def _untitled(node: Any) -> Any:
    """A schema without its "title" keys (generated noise that `compact` drops from every tool)."""
    if isinstance(node, dict):
        return {k: _untitled(v) for k, v in node.items() if k != "title"}  # pyright: ignore[reportUnknownVariableType]
    if isinstance(node, list):
        return [_untitled(v) for v in node]  # pyright: ignore[reportUnknownVariableType]
    return node


async def test_merge_agent_and_isolation_stay_within_their_share_of_the_schema_budget(client: Any) -> None:
    """The nine tools' model-facing schemas must stay under 8,000 chars; `compact` cuts the eight others to about
    6,900, so merge_agent and the two isolation parameters get about 900-1,000."""
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert len(tools) == 9 and tools["merge_agent"].annotations.destructive_hint is True
    assert tools["merge_agent"].annotations.read_only_hint is False
    merge = tools["merge_agent"]
    size = len(merge.name) + len(" ".join((merge.description or "").split()))
    size += len(json.dumps(_untitled(merge.input_schema)))
    size += len(json.dumps({"isolation": _untitled(tools["create_agent"].input_schema["properties"]["isolation"])}))
    run_in = tools["run_agents"].input_schema["$defs"]["RunIn"]["properties"]["isolation"]
    size += len(json.dumps({"isolation": _untitled(run_in)}))
    assert size <= 1_000, size


async def test_delete_says_when_it_keeps_a_branch_with_unmerged_work(client: Any, repo: Path) -> None:
    await scribe(client, "done1", "set done.txt merged")
    await scribe(client, "open1", "set open.txt not merged")
    await scribe(client, "gone1", "set gone.txt purged")
    assert (await call(client, "merge_agent", agent="done1"))["merged"] is True
    out = await call(client, "delete_agent", agents=["done1", "open1"])
    by = {d["name"]: d for d in out["deleted"]}
    assert not by["done1"].get("branch_kept")
    assert "fleet/open1" in by["open1"]["branch_kept"] and "git merge fleet/open1" in by["open1"]["branch_kept"]
    purged = await call(client, "delete_agent", agents="gone1", purge=True)
    assert not purged["deleted"][0].get("branch_kept")
    assert git(repo, "branch", "--list", "fleet/*").split() == ["fleet/open1"]


async def test_a_chain_of_runs_merges_in_order(client: Any, repo: Path) -> None:
    """b depends on a: b's worktree starts from a's branch, so b sees a's edit; merged in order, both land. Out of
    order, b conflicts on what a changed, and caused_by names a."""
    runs = [
        {"id": "a", "agent": "scribe", "input": "set app.py x = 2\nset a.txt from a"},
        {"id": "b", "agent": "scribe", "input": "set app.py x = 3", "depends_on": ["a"]},
    ]
    out = await call(client, "run_agents", runs=runs, wait_s=0)
    done = await call(client, "wait_for_agents", batch=out["batch"]["batch"], timeout_s=40)
    assert done["done"] and done["batch"]["status"] == "succeeded", done
    names = {r["id"]: r["agent"] for r in done["batch"]["runs"]}
    early = await call(client, "merge_agent", agent=names["b"], dry_run=True)  # out of order: a's edit is missing
    assert early["conflicts"] == ["app.py"] and early["caused_by"] == {"app.py": [names["a"]]}
    assert (await call(client, "merge_agent", agent=names["a"]))["merged"] is True
    second = await call(client, "merge_agent", agent=names["b"])
    assert second["merged"] is True, second
    assert (repo / "app.py").read_text() == "x = 3\n" and (repo / "a.txt").read_text() == "from a\n"


async def test_diff_of_a_deleted_agent_says_where_its_work_is(client: Any, repo: Path) -> None:
    await scribe(client, "left", "set left.txt unmerged")
    await call(client, "delete_agent", agents="left")
    msg = err(await client.call_tool("get_agent_output", {"agent": "left", "mode": "diff"}))
    assert "was deleted" in msg and "fleet/left" in msg and str(repo) in msg


async def test_merge_re_makes_a_worktree_whose_folder_was_deleted(client: Any, repo: Path) -> None:
    import shutil

    await scribe(client, "lost", "set lost.txt kept on the branch")
    [path] = [p for p in git(repo, "worktree", "list", "--porcelain").split("\n") if "/worktrees/" in p]
    shutil.rmtree(path.removeprefix("worktree "))
    done = await call(client, "merge_agent", agent="lost")
    assert done["merged"] is True and (repo / "lost.txt").read_text() == "kept on the branch\n"


async def test_run_agents_isolation_reaches_the_run(client: Any, repo: Path) -> None:
    runs = [
        {"id": "inplace", "agent": "scribe", "input": "set inplace.txt in place", "isolation": "none"},
        {"id": "isolated", "agent": "scribe", "input": "set isolated.txt isolated"},
    ]
    out = await call(client, "run_agents", runs=runs, wait_s=0)
    done = await call(client, "wait_for_agents", batch=out["batch"]["batch"], timeout_s=40)
    assert done["done"] and done["batch"]["status"] == "succeeded", done
    assert (repo / "inplace.txt").read_text() == "in place\n" and not (repo / "isolated.txt").exists()
    msg = err(await client.call_tool("run_agents", {"runs": [{"agent": "scribe", "input": "x", "isolation": "vm"}]}))
    assert "isolation" in msg and "worktree" in msg
