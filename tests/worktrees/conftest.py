"""Real git repositories for the worktree tests (no mocks of git): a user's checkout with a commit, and helpers to
run git the way a user would and to fingerprint everything a merge must not touch."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

GIT_ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    "GIT_AUTHOR_NAME": "User", "GIT_AUTHOR_EMAIL": "user@example.invalid",
    "GIT_COMMITTER_NAME": "User", "GIT_COMMITTER_EMAIL": "user@example.invalid",
    "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "GIT_OPTIONAL_LOCKS": "0",
}  # fmt: skip


def git(cwd: Path | str, *args: str, check: bool = True) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout.rstrip()


def write(root: Path, rel: str, text: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def fingerprint(repo: Path) -> dict[str, object]:
    """Everything a failed or dry merge must leave as it was: HEAD, the user's refs, the index file's bytes, the
    status, the stash list, every file (ignored ones too), and no MERGE_HEAD / lock / rebase state."""
    gd = repo / ".git"
    files = {
        str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(repo.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(repo).parts
    }
    return {
        "head": git(repo, "rev-parse", "HEAD"),
        "refs": [
            r
            for r in git(repo, "for-each-ref", "--format=%(refname) %(objectname)").splitlines()
            if not r.startswith("refs/heads/fleet/")
        ],  # the user's refs: the agents' own branches move
        "index": hashlib.sha256((gd / "index").read_bytes()).hexdigest() if (gd / "index").exists() else None,
        "status": git(repo, "status", "--porcelain=v1", "--untracked-files=all", "--ignored"),
        "stash": git(repo, "stash", "list"),
        "files": files,
        "leftovers": sorted(
            n
            for n in (
                "MERGE_HEAD",
                "MERGE_MSG",
                "SQUASH_MSG",
                "index.lock",
                "HEAD.lock",
                "rebase-merge",
                "rebase-apply",
                "CHERRY_PICK_HEAD",
                "ORIG_HEAD",
                "AUTO_MERGE",
            )
            if (gd / n).exists()
        ),
    }


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A user's checkout: main with one commit (README, src/app.py, a .gitignore for *.log)."""
    r = tmp_path / "user repo"  # a space in the path on purpose
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    write(r, "README.md", "# sample\n")
    write(r, "src/app.py", "".join(f"line {i}\n" for i in range(1, 21)))
    write(r, ".gitignore", "*.log\n")
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "initial")
    return r


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h
