"""Short forms of longer text, for one-line displays: tool-call summaries, transcript lines, scripted replies.

- ``shorten(text, limit)``: ``text`` in at most ``limit`` characters, its end replaced by an ellipsis when cut;
- ``first_line(text, limit)``: the first line only, in at most ``limit`` characters, "…" when anything was left out;
- ``preview(text, limit)``: the first line, "…" when it was cut, " …" after it when only later lines were left out;
- ``clip(text, limit)``: the whole text cut after ``limit`` characters, with a note of how many were cut.
"""

from __future__ import annotations

ELLIPSIS = "…"


def shorten(text: str, limit: int, *, ellipsis: str = ELLIPSIS) -> str:
    """``text`` itself when it has at most ``limit`` characters, else its start and ``ellipsis``, ``limit`` in all.

    >>> shorten("abcdefgh", 5), shorten("abcdefgh", 6, ellipsis="...")
    ('abcd…', 'abc...')
    """
    return text if len(text) <= limit else text[: limit - len(ellipsis)] + ellipsis


def first_line(text: str, limit: int) -> str:
    """The first line of ``text`` (stripped), at most ``limit`` characters. It ends in "…" when anything was left
    out: the end of the line, or the lines after it. Spaces before the "…" are dropped.

    >>> first_line("  make\\nmake test", 80), first_line("Bash: pytest -q tests", 12)
    ('make…', 'Bash: pytes…')
    """
    lines = text.strip().splitlines()
    first = lines[0] if lines else ""
    if len(first) > limit or len(lines) > 1:
        return first[: limit - 1].rstrip() + ELLIPSIS
    return first


def preview(text: str | None, limit: int) -> str:
    """The first line of ``text`` (stripped) for a table cell: cut to ``limit`` characters ending in "…", or, when
    it fits but more lines follow, whole and followed by " …" (so a cut line and a short first line differ).

    >>> preview("make\\nmake test", 80), preview("Bash: pytest -q tests", 12), preview(None, 5)
    ('make …', 'Bash: pytes…', '')
    """
    stripped = (text or "").strip()
    first = stripped.splitlines()[0] if stripped else ""
    if len(first) > limit:
        return first[: limit - 1] + ELLIPSIS
    return first + (" " + ELLIPSIS if "\n" in stripped else "")


def clip(text: str, limit: int) -> str:
    """``text`` (stripped) cut after ``limit`` characters, followed by how many characters were cut.

    >>> clip(" hello world ", 5)
    'hello [... 6 chars]'
    """
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + f" [... {len(text) - limit} chars]"
