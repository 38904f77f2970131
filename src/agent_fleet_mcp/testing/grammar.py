"""What the default policy understands in a prompt: edit instructions, keywords, relevant file names.

Edit grammar (case-insensitive keywords; quotes are ``"..."``, ``'...'`` or backticks; inside ``"`` and ``'``
quotes ``\\n``, ``\\t``, ``\\"``, ``\\'`` and ``\\\\`` are escapes; PATH is quoted or a bare token whose
trailing ``.,;:!?)`` is dropped):

- ``replace "OLD" with "NEW" in PATH`` (also ``in file PATH``) -> edit_file / Edit (or read + write_file)
- ``create file PATH with content "TEXT"`` (also ``write file ...``, ``create a new file ...``) -> write_file / Write

Several instructions in one prompt are carried out in order of appearance.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "'": "'", "\\": "\\"}


def _quoted(name: str) -> str:
    return (
        rf'(?:"(?P<{name}_d>(?:[^"\\]|\\.)*)"'
        rf"|'(?P<{name}_s>(?:[^'\\]|\\.)*)'"
        rf"|`(?P<{name}_b>[^`]*)`)"
    )


_PATH = rf"(?:{_quoted('path')}|(?P<path_bare>[^\s\"'`]+))"
_REPLACE = re.compile(
    rf"\breplace\s+{_quoted('old')}\s+with\s+{_quoted('new')}\s+in\s+(?:the\s+)?(?:file\s+)?{_PATH}",
    re.IGNORECASE,
)
_CREATE = re.compile(
    rf"\b(?:create|write)\s+(?:a\s+|the\s+)?(?:new\s+)?file\s+(?:named\s+|called\s+)?{_PATH}"
    rf"\s+(?:with|containing)\s+(?:the\s+)?(?:content|contents|text)?\s*:?\s*{_quoted('content')}",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Replace:
    path: str
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class Create:
    path: str
    content: str


EditInstruction = Replace | Create


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), text)


def _group(match: re.Match[str], name: str) -> str | None:
    if (value := match.group(f"{name}_d")) is not None or (value := match.group(f"{name}_s")) is not None:
        return _unescape(value)
    return match.group(f"{name}_b")


def _path(match: re.Match[str]) -> str:
    quoted = _group(match, "path")
    if quoted is not None:
        return quoted
    return match.group("path_bare").rstrip(".,;:!?)")


def parse_edit_instructions(prompt: str) -> list[EditInstruction]:
    """All edit instructions in ``prompt``, in order of appearance."""
    found: list[tuple[int, EditInstruction]] = []
    for m in _REPLACE.finditer(prompt):
        old, new = _group(m, "old"), _group(m, "new")
        if old is not None and new is not None and old and _path(m):
            found.append((m.start(), Replace(_path(m), old, new)))
    for m in _CREATE.finditer(prompt):
        content = _group(m, "content")
        if content is not None and _path(m):
            found.append((m.start(), Create(_path(m), content)))
    return [ins for _, ins in sorted(found, key=lambda pair: pair[0])]


def _words(*lines: str) -> frozenset[str]:
    return frozenset(" ".join(lines).split())


STOPWORDS = _words(
    "the and for with this that from into what which does did done file files read list lists listing",
    "summarize summary summarise please about code folder directory dir project repo repository explain find",
    "look tell give show describe each all any are how its you your use using make sure then there their them",
    "they have has had should would could will can just also only over under when where who why than these",
    "those some more most other onto been being was were not but out our ours his her here via per want need",
    "like well very write create replace content contents text new agent result results answer short brief",
    "report say says main",
)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
_QUOTE = re.compile(r"\"([^\"]{2,80})\"|`([^`]{2,80})`")
BINARY_SUFFIXES = _words(
    ".png .jpg .jpeg .gif .ico .pdf .zip .gz .tgz .tar .bz2 .xz .whl .pyc .pyo .so .dylib .dll .exe .bin .db",
    ".sqlite .sqlite3 .woff .woff2 .ttf .otf .mp3 .mp4 .mov .wav .class .jar .o .a .lock",
)
SKIP_DIRS = _words(
    ".git node_modules __pycache__ .venv venv .tox .mypy_cache .pytest_cache .ruff_cache dist build .idea",
    ".vscode .next target",
)
_SOURCE_SUFFIXES = _words(".py .md .rst .txt .ts .tsx .js .jsx .go .rs .java .rb .c .h .cpp .toml .cfg")


def prompt_words(prompt: str) -> list[str]:
    """Lower-case content words of the prompt (no stopwords), in order, without duplicates."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(prompt):
        low = word.lower()
        if low not in STOPWORDS:
            seen.setdefault(low, None)
    return list(seen)


def grep_keyword(prompt: str) -> str:
    """The word to search for: from a quoted string, else an identifier-like token, else the longest word."""
    for m in _QUOTE.finditer(prompt):
        words = [w for w in _WORD.findall(m.group(1) or m.group(2) or "") if w.lower() not in STOPWORDS]
        if words:
            return max(words, key=len)
    tokens = [w for w in _WORD.findall(prompt) if w.lower() not in STOPWORDS]
    for token in tokens:
        if "_" in token.strip("_") or any(c.isdigit() for c in token) or any(c.isupper() for c in token[1:]):
            return token
    words = [w for w in prompt_words(prompt) if len(w) >= 4]
    return max(words, key=len) if words else "TODO"


def is_candidate_file(rel: str) -> bool:
    """A listing entry worth reading: not a directory, not binary, not under a tool/cache directory."""
    if not rel or rel.endswith("/"):
        return False
    path = PurePosixPath(rel)
    if any(part in SKIP_DIRS for part in path.parts[:-1]):
        return False
    return path.suffix.lower() not in BINARY_SUFFIXES and path.name not in {".DS_Store"}


def relevance(rel: str, prompt: str, words: list[str]) -> int:
    """How much the prompt points at file ``rel`` (0: not at all)."""
    path = PurePosixPath(rel)
    low_prompt = prompt.lower()
    score = 0
    if rel.lower() in low_prompt or (len(path.name) > 3 and path.name.lower() in low_prompt):
        score += 10
    parts = {p for p in re.split(r"[/._\-\s]+", rel.lower()) if len(p) >= 3}
    score += 3 * sum(1 for w in words if w in parts or (len(w) >= 5 and any(w in p for p in parts)))
    return score


def fallback_rank(rel: str) -> tuple[int, int, str]:
    """Sort key when nothing is relevant: README first, then source files near the root."""
    path = PurePosixPath(rel)
    readme = 0 if path.name.lower().startswith("readme") else 1
    source = 0 if path.suffix.lower() in _SOURCE_SUFFIXES else 1
    return (readme * 2 + source, len(path.parts), rel)


def choose_files(rels: list[str], prompt: str, *, limit_relevant: int = 3, limit_fallback: int = 2) -> list[str]:
    """Up to 3 files the prompt points at, topped up to 2 with README / main source files."""
    candidates = [r for r in dict.fromkeys(rels) if is_candidate_file(r)]
    words = prompt_words(prompt)
    scored = [(relevance(r, prompt, words), r) for r in candidates]
    relevant = [r for s, r in sorted(scored, key=lambda p: (-p[0], len(PurePosixPath(p[1]).parts), p[1])) if s > 0]
    chosen = relevant[:limit_relevant]
    for rel in sorted(candidates, key=fallback_rank):
        if len(chosen) >= limit_fallback:
            break
        if rel not in chosen:
            chosen.append(rel)
    return chosen
