"""text.py: the short forms of text used by runner summaries, transcripts and the scripted model."""

from __future__ import annotations

import doctest

import pytest

from agent_fleet_mcp import text
from agent_fleet_mcp.text import clip, first_line, preview, shorten


def test_the_docstring_examples_hold() -> None:
    result = doctest.testmod(text)
    assert result.attempted >= 4 and result.failed == 0


@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [
        ("abc", 3, "abc"),  # exactly the limit: untouched
        ("abcd", 3, "ab…"),
        ("", 3, ""),
        ("  spaced  ", 4, "  s…"),  # no stripping: the text is taken as it is
    ],
)
def test_shorten(value: str, limit: int, expected: str) -> None:
    assert shorten(value, limit) == expected
    assert len(shorten(value, limit)) <= limit


def test_shorten_with_another_ellipsis_keeps_the_limit() -> None:
    assert shorten("a" * 200, 120, ellipsis="...") == "a" * 117 + "..."


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ""),
        ("   \n\n  ", ""),
        ("ls -la", "ls -la"),
        ("x" * 10, "x" * 10),  # exactly the limit: untouched
        ("x" * 11, "x" * 9 + "…"),
        ("make\nmake test", "make…"),  # later lines left out: marked too
        ("\n\n  first  \nsecond", "first…"),  # blank lines and spaces around the text do not count
        ("abcd     efgh", "abcd…"),  # the cut falls after spaces: they go
        ("x" * 10 + "\nmore", "x" * 9 + "…"),  # still within the limit with the mark
    ],
)
def test_first_line(value: str, expected: str) -> None:
    assert first_line(value, 10) == expected
    assert len(first_line(value, 10)) <= 10


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ""),
        ("", ""),
        ("ls -la", "ls -la"),
        ("x" * 10, "x" * 10),
        ("x" * 11, "x" * 9 + "…"),
        ("make\nmake test", "make …"),  # later lines left out: marked apart from the line
        ("x" * 10 + "\nmore", "x" * 10 + " …"),  # the line is whole, the mark goes after it
        ("x" * 11 + "\nmore", "x" * 9 + "…"),  # a cut line: only the cut is marked
        ("abcd     efgh", "abcd     …"),  # spaces before the cut stay
        ("\n  first  \nsecond", "first   …"),  # as the status table cut it: spaces at the end of the line stay
    ],
)
def test_preview(value: str | None, expected: str) -> None:
    assert preview(value, 10) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("short", "short"),
        ("  padded  ", "padded"),
        ("0123456789", "0123456789"),
        ("0123456789abc", "0123456789 [... 3 chars]"),
        ("line one\nline two", "line one\nl [... 7 chars]"),  # every line counts, not only the first
    ],
)
def test_clip(value: str, expected: str) -> None:
    assert clip(value, 10) == expected
