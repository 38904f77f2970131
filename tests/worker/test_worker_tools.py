"""The built-in tools, called directly: outputs, caps, and errors the model can act on."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from agent_fleet_mcp.worker import tools
from agent_fleet_mcp.worker.paths import Sandbox
from agent_fleet_mcp.worker.tools import ALL_TOOLS, READ_TOOLS, Toolbox, select_tools


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "proj"
    (r / "src" / "pkg").mkdir(parents=True)
    (r / "src" / "pkg" / "core.py").write_text("def main():\n    # TODO: handle errors\n    return 1\n")
    (r / "src" / "util.py").write_text("import os\n# TODO later\n")
    (r / "README.md").write_text("# Demo\n\nA TODO list app.\n")
    (r / "node_modules").mkdir()
    (r / "node_modules" / "dep.js").write_text("// TODO vendored\n")
    (tmp_path / "secret.txt").write_text("TODO secret\n")
    return r


@pytest.fixture
def box(root: Path) -> Toolbox:
    return Toolbox(Sandbox(root), list(ALL_TOOLS), env={"PATH": os.environ["PATH"], "ANTHROPIC_API_KEY": "sk-x"})


def test_select_tools_by_permission_and_subset() -> None:
    assert select_tools("readonly", None) == (list(READ_TOOLS), [])
    assert select_tools("readwrite", None) == (list(ALL_TOOLS), [])
    assert select_tools("readwrite", ["grep", "bash"]) == (["grep", "bash"], [])
    assert select_tools("readonly", ["grep", "bash", "write_file"]) == (["grep"], ["bash", "write_file"])
    with pytest.raises(ValueError, match="unknown tool"):
        select_tools("readonly", ["Read"])


def test_definitions_are_valid_tool_params() -> None:
    for d in tools.tool_definitions(list(ALL_TOOLS)):
        assert set(d) == {"name", "description", "input_schema"}
        assert d["input_schema"]["type"] == "object"


def test_read_file_numbers_lines_and_ranges(box: Toolbox) -> None:
    out = box.run("read_file", {"path": "src/pkg/core.py"})
    assert not out.is_error
    assert out.text.splitlines()[1] == "     2\t    # TODO: handle errors"
    part = box.run("read_file", {"path": "src/pkg/core.py", "start_line": 2, "end_line": 2})
    assert part.text.startswith("     2\t")
    assert "has 3 lines; showed 2-2" in part.text


def test_read_file_caps_long_files(box: Toolbox, root: Path) -> None:
    (root / "big.txt").write_text("".join(f"line {i}\n" for i in range(5000)))
    out = box.run("read_file", {"path": "big.txt"})
    assert out.text.count("\n") < tools.READ_MAX_LINES + 5
    assert "Read more with start_line=2001" in out.text
    assert len(box.run("read_file", {"path": "big.txt", "start_line": 4999}).text.splitlines()) == 2


def test_read_file_errors(box: Toolbox, root: Path) -> None:
    (root / "bin.dat").write_bytes(b"\x00\x01\x02")
    cases = {
        "missing.py": "does not exist",
        "src": "is a directory",
        "bin.dat": "binary file",
        "../secret.txt": "outside the working directory",
    }
    for path, msg in cases.items():
        out = box.run("read_file", {"path": path})
        assert out.is_error and msg in out.text, (path, out.text)
    assert box.run("read_file", {}).is_error
    assert box.run("read_file", {"path": 3}).is_error
    assert "past the end" in box.run("read_file", {"path": "README.md", "start_line": 99}).text


def test_special_files_are_never_opened(box: Toolbox, root: Path) -> None:
    os.mkfifo(root / "pipe")  # opening it would block the worker forever
    assert "not a regular file" in box.run("read_file", {"path": "pipe"}).text
    assert box.run("write_file", {"path": "pipe", "content": "x"}).is_error
    assert "pipe" not in box.run("grep", {"pattern": "."}).text


def test_list_files_globs_and_skips_vendored(box: Toolbox) -> None:
    assert box.run("list_files", {}).text.splitlines() == ["README.md", "src/pkg/core.py", "src/util.py"]
    assert box.run("list_files", {"pattern": "**/*.py"}).text.splitlines() == ["src/pkg/core.py", "src/util.py"]
    assert box.run("list_files", {"pattern": "src/*.py"}).text == "src/util.py"
    nothing = box.run("list_files", {"pattern": "*.py"})
    assert not nothing.is_error and "try '**/*.py'" in nothing.text
    assert box.run("list_files", {"pattern": "../*"}).is_error
    assert box.run("list_files", {"pattern": "/etc/*"}).is_error


def test_list_files_caps_the_count(box: Toolbox, root: Path) -> None:
    (root / "many").mkdir()
    for i in range(tools.LIST_MAX_FILES + 7):
        (root / "many" / f"f{i:04d}.txt").write_text("")
    out = box.run("list_files", {"pattern": "many/*"})
    assert len(out.text.splitlines()) == tools.LIST_MAX_FILES + 1
    assert out.text.endswith("… and 7 more files (use a narrower pattern)")


def test_grep_reports_file_line_text(box: Toolbox) -> None:
    out = box.run("grep", {"pattern": r"TODO\b"})
    assert sorted(out.text.splitlines()) == [
        "README.md:3:A TODO list app.",
        "src/pkg/core.py:2:    # TODO: handle errors",
        "src/util.py:2:# TODO later",
    ]  # node_modules skipped, nothing from outside cwd
    assert box.run("grep", {"pattern": "TODO", "path": "src", "glob": "*.py"}).text.count("\n") == 1
    assert box.run("grep", {"pattern": "TODO", "path": "src/util.py"}).text == "src/util.py:2:# TODO later"
    assert "no matches" in box.run("grep", {"pattern": "nothing-like-this"}).text


def test_grep_errors_and_cap(box: Toolbox, root: Path) -> None:
    assert "invalid regular expression" in box.run("grep", {"pattern": "("}).text
    assert box.run("grep", {"pattern": "x", "path": ".."}).is_error
    (root / "many.txt").write_text("hit\n" * (tools.GREP_MAX_MATCHES + 3))
    out = box.run("grep", {"pattern": "hit", "path": "many.txt"})
    assert out.text.endswith("… and 3 more matches (narrow the pattern, path or glob)")


def test_write_file_creates_dirs_and_overwrites(box: Toolbox, root: Path) -> None:
    out = box.run("write_file", {"path": "new/dir/x.txt", "content": "a\nb\n"})
    assert out.text == "created new/dir/x.txt (2 lines, 4 chars)"
    assert (root / "new" / "dir" / "x.txt").read_text() == "a\nb\n"
    assert box.run("write_file", {"path": "new/dir/x.txt", "content": "c"}).text.startswith("overwrote")
    assert box.run("write_file", {"path": "../escape.txt", "content": "x"}).is_error
    assert not (root.parent / "escape.txt").exists()
    assert box.run("write_file", {"path": "src", "content": "x"}).is_error


def test_write_through_symlink_out_is_refused(box: Toolbox, root: Path) -> None:
    (root / "out").symlink_to(root.parent)
    out = box.run("write_file", {"path": "out/pwned.txt", "content": "x"})
    assert out.is_error and "symlink" in out.text
    assert not (root.parent / "pwned.txt").exists()


def test_edit_file_needs_exactly_one_occurrence(box: Toolbox, root: Path) -> None:
    ok = box.run("edit_file", {"path": "src/pkg/core.py", "old": "return 1", "new": "return 2\n    # done"})
    assert ok.text == "edited src/pkg/core.py at line 3 (+1 lines)"
    assert "return 2\n    # done" in (root / "src" / "pkg" / "core.py").read_text()
    (root / "dup.txt").write_text("x\nx\n")
    dup = box.run("edit_file", {"path": "dup.txt", "old": "x", "new": "y"})
    assert dup.is_error and "occurs 2 times" in dup.text
    missing = box.run("edit_file", {"path": "dup.txt", "old": "zzz", "new": "y"})
    assert missing.is_error and "not found" in missing.text
    assert "empty" in box.run("edit_file", {"path": "dup.txt", "old": "", "new": "y"}).text
    assert box.run("edit_file", {"path": "nope.txt", "old": "a", "new": "b"}).is_error
    assert (root / "dup.txt").read_text() == "x\nx\n"


def test_bash_runs_in_cwd_without_credentials(box: Toolbox, root: Path) -> None:
    out = box.run("bash", {"command": "pwd; echo key=${ANTHROPIC_API_KEY:-none}; ls src"})
    assert not out.is_error
    lines = out.text.splitlines()
    assert lines[:2] == [str(root), "key=none"]
    assert lines[-1].startswith("[exit code 0]")
    failed = box.run("bash", {"command": "echo oops >&2; exit 3"})
    assert failed.is_error and "oops" in failed.text and "[exit code 3]" in failed.text


def test_bash_timeout_kills_the_whole_group(box: Toolbox, root: Path) -> None:
    started = time.monotonic()
    out = box.run("bash", {"command": "(sleep 30; touch late.txt) & sleep 30", "timeout_s": 1})
    assert out.is_error and "timed out after 1s" in out.text
    assert time.monotonic() - started < 10
    time.sleep(0.2)
    assert not (root / "late.txt").exists()


def test_bash_background_processes_do_not_outlive_the_call(box: Toolbox, root: Path) -> None:
    out = box.run("bash", {"command": "(sleep 1; touch late.txt) & echo started"})
    assert out.text.startswith("started")
    time.sleep(1.5)
    assert not (root / "late.txt").exists()


def test_bash_output_is_capped_head_and_tail(box: Toolbox) -> None:
    out = box.run("bash", {"command": "seq 1 200000"})
    assert out.text.startswith("1\n2\n")
    assert "bytes elided" in out.text and "200000\n[exit code 0]" in out.text
    assert len(out.text) < tools.BASH_HEAD_CHARS + tools.BASH_TAIL_CHARS + 200


def test_unknown_or_unoffered_tool_is_an_error_not_a_crash(root: Path) -> None:
    ro = Toolbox(Sandbox(root), list(READ_TOOLS))
    out = ro.run("bash", {"command": "touch x"})
    assert out.is_error and "unknown tool 'bash'" in out.text
    assert not (root / "x").exists()
    assert ro.run("read_file", "not a dict").is_error  # type: ignore[arg-type]


def test_summaries_for_the_transcript(box: Toolbox) -> None:
    d = box.describe
    assert d("grep", {"pattern": "TODO", "path": "src"}).summary == "grep 'TODO' in src/"
    assert d("grep", {"pattern": "TODO", "path": "src", "glob": "*.py"}).reads == ["src"]
    assert d("read_file", {"path": "./src/util.py", "start_line": 3}).summary == "read src/util.py:3-"
    assert d("read_file", {"path": "src/util.py"}).reads == ["src/util.py"]
    assert d("write_file", {"path": "n.txt", "content": "abc"}).writes == ["n.txt"]
    assert d("edit_file", {"path": "src/util.py", "old": "a", "new": "b"}).summary == "edit src/util.py"
    assert d("bash", {"command": "pytest -q\necho done"}).summary == "$ pytest -q …"
    assert d("list_files", {}).summary == "list **/*"
    assert d("read_file", {"path": "../secret.txt"}).summary == "read ../secret.txt"
