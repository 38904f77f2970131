"""The pure pieces of the worktree surface: change summaries, overlaps and the agents a conflict comes from."""

from __future__ import annotations

from agent_fleet_mcp.reader_models import caused_by, changes_summary, overlaps


def test_changes_summary() -> None:
    assert changes_summary(12, 3, 2) == "+12 -3, 2 files"
    assert changes_summary(0, 1, 1) == "+0 -1, 1 file"
    assert changes_summary(5, 5, 0) is None


def test_overlaps_name_the_other_agents_that_touch_the_same_files() -> None:
    changed = {
        "b1": ["inventory/stock.py", "README.md"],
        "b2": ["inventory/stock.py"],
        "b3": ["README.md", "docs/x.md"],
        "b4": ["tests/test_x.py"],
        "b5": [],
    }
    assert overlaps(changed) == {"b1": ["b2", "b3"], "b2": ["b1"], "b3": ["b1"]}


def test_no_overlap_for_a_single_agent_or_disjoint_files() -> None:
    assert overlaps({"a": ["x"]}) == {}
    assert overlaps({"a": ["x"], "b": ["y"]}) == {}


def test_caused_by_maps_each_conflict_to_the_agents_that_changed_it() -> None:
    others = {"b2": ["inventory/stock.py", "a.py"], "b3": ["a.py"], "b4": ["z.py"]}
    assert caused_by(["inventory/stock.py", "a.py", "mine.py"], others) == {
        "inventory/stock.py": ["b2"], "a.py": ["b2", "b3"],
    }  # fmt: skip


def test_merge_result_renders_its_note_and_each_conflict() -> None:
    from agent_fleet_mcp.schemas import MergeOut

    out = MergeOut(
        agent="b2", merged=False, dry_run=False, strategy="merge", conflicts=["a.py"], caused_by={"a.py": ["b1"]},
        note="conflict: fleet/b2 and your checkout both changed a.py",
    )  # fmt: skip
    assert out.render() == "conflict: fleet/b2 and your checkout both changed a.py\na.py: also changed by b1"
