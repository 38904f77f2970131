"""Confinement: every path a file tool touches must resolve inside the agent's cwd."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent_fleet_mcp.worker.paths import Sandbox, ToolError, glob_to_regex


@pytest.fixture
def box(tmp_path: Path) -> Sandbox:
    root = tmp_path / "proj"
    (root / "src").mkdir(parents=True)
    (root / "src" / "a.py").write_text("x = 1\n")
    (tmp_path / "secret.txt").write_text("s3cret\n")
    return Sandbox(root)


def test_relative_and_absolute_paths_inside_cwd_resolve(box: Sandbox) -> None:
    assert box.resolve("src/a.py") == box.root / "src" / "a.py"
    assert box.resolve(str(box.root / "src" / "a.py")) == box.root / "src" / "a.py"
    assert box.resolve("src/../src/a.py") == box.root / "src" / "a.py"  # '..' that stays inside is harmless
    assert box.resolve("new/file.txt") == box.root / "new" / "file.txt"  # not existing yet (write targets)
    assert box.rel(box.root) == "."


@pytest.mark.parametrize("raw", ["../secret.txt", "src/../../secret.txt", "/etc/passwd", "..", "/"])
def test_paths_outside_cwd_are_refused(box: Sandbox, raw: str) -> None:
    with pytest.raises(ToolError, match="outside the working directory"):
        box.resolve(raw)


def test_symlinks_pointing_out_are_refused(box: Sandbox, tmp_path: Path) -> None:
    (box.root / "link.txt").symlink_to(tmp_path / "secret.txt")
    (box.root / "outdir").symlink_to(tmp_path)
    (box.root / "dangling").symlink_to(tmp_path / "nope" / "x")
    for raw in ("link.txt", "outdir/secret.txt", "outdir", "dangling"):
        with pytest.raises(ToolError, match="symlink"):
            box.resolve(raw)


def test_symlinks_inside_cwd_are_fine(box: Sandbox) -> None:
    (box.root / "alias.py").symlink_to(box.root / "src" / "a.py")
    assert box.resolve("alias.py") == box.root / "src" / "a.py"


def test_empty_and_nul_paths_are_tool_errors(box: Sandbox) -> None:
    for raw in ("", "  ", "a\x00b"):
        with pytest.raises(ToolError):
            box.resolve(raw)


def test_walk_skips_vendored_dirs_and_links_out(box: Sandbox, tmp_path: Path) -> None:
    for d in (".git", "node_modules", ".venv"):
        (box.root / d).mkdir()
        (box.root / d / "f.txt").write_text("x")
    (box.root / "out.txt").symlink_to(tmp_path / "secret.txt")
    (box.root / "outdir").symlink_to(tmp_path)
    files = [box.rel(p) for p in box.walk_files(box.root)]
    assert files == ["src/a.py"]


@pytest.mark.parametrize(
    ("pattern", "path", "hit"),
    [
        ("**/*", "a/b/c.txt", True),
        ("**/*.py", "x.py", True),
        ("**/*.py", "a/b/x.py", True),
        ("*.py", "a/x.py", False),
        ("src/*.py", "src/x.py", True),
        ("src/*.py", "src/sub/x.py", False),
        ("src/**", "src/sub/x.py", True),
        ("file?.[ch]", "file1.c", True),
        ("file?.[!ch]", "file1.c", False),
    ],
)
def test_glob_semantics(pattern: str, path: str, hit: bool) -> None:
    assert bool(glob_to_regex(pattern).match(path)) is hit


def test_sandbox_root_is_the_real_path(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "via")
    assert Sandbox(tmp_path / "via").root == real
