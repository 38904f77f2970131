"""Confinement of the built-in file tools to the agent's working directory.

Every path a tool touches is resolved (symlinks followed, ``..`` collapsed) and must land inside the resolved cwd:
``../x``, an absolute path elsewhere and a symlink pointing out are refused with a message the model can act on.
Walking (list_files, grep) never follows directory symlinks and skips files whose target lies outside.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

SKIP_DIRS: frozenset[str] = frozenset(
    (".git", "node_modules", ".venv", "venv", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox")
)


class ToolError(Exception):
    """A tool call the model got wrong or that failed: becomes an ``is_error`` tool_result, never a crash."""


class Sandbox:
    """The agent's cwd, resolved once; all path checks go through it."""

    def __init__(self, cwd: str | os.PathLike[str]) -> None:
        self.root = Path(cwd).resolve(strict=True)
        if not self.root.is_dir():
            raise NotADirectoryError(f"cwd {cwd} is not a directory")

    def resolve(self, raw: str) -> Path:
        """The real path of ``raw`` (relative to cwd, or absolute inside it); ``ToolError`` when it leaves cwd."""
        if not isinstance(raw, str) or not raw.strip():  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ToolError("path is required (relative to the working directory)")
        if "\x00" in raw:
            raise ToolError("path contains a NUL byte")
        candidate = Path(raw.strip())
        if not candidate.is_absolute():
            candidate = self.root / candidate
        resolved = candidate.resolve(strict=False)
        if not self.contains(resolved):
            lexical = Path(os.path.normpath(candidate))
            if self.contains(lexical) or candidate.is_symlink():
                why = "it is (or goes through) a symlink pointing outside the working directory"
            else:
                why = "it is outside the working directory"
            raise ToolError(f"access to {raw!r} refused: {why} ({self.root}); use paths inside it")
        return resolved

    def contains(self, path: Path) -> bool:
        return path == self.root or path.is_relative_to(self.root)

    def rel(self, path: Path) -> str:
        """``path`` relative to cwd, POSIX style ("." for cwd itself)."""
        try:
            r = path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)
        return r or "."

    def display(self, raw: str) -> str:
        """A cwd-relative form of a path the model gave, for summaries (the raw text when it does not resolve)."""
        try:
            return self.rel(self.resolve(raw))
        except (ToolError, OSError, RuntimeError):
            return raw

    def walk_files(self, top: Path) -> Iterator[Path]:
        """Files under ``top`` (sorted per directory), pruning ``SKIP_DIRS``, never leaving cwd."""
        if top.is_file():
            yield top
            return
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            base = Path(dirpath)
            for name in sorted(filenames):
                p = base / name
                if p.is_symlink():
                    try:
                        target = p.resolve(strict=True)
                    except (OSError, RuntimeError):
                        continue  # dangling or looping link
                    if not self.contains(target) or not target.is_file():
                        continue
                yield p


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a glob over POSIX relative paths: ``**`` spans directories, ``*`` and ``?`` do not, ``[..]`` sets."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and (j := pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "]") else i + 1)) != -1:
            body = pattern[i + 1 : j]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z")
