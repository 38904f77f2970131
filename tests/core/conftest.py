"""Fixtures shared by the core tests that count processes with a /proc scan."""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Callable, Iterator

import pytest

from .proc_scan import carrying


@pytest.fixture
def new_marker() -> Iterator[Callable[[], str]]:
    """Markers for this test's processes; whatever still carries one at the end is killed (a failed test must not
    leave sleepers behind)."""
    made: list[str] = []

    def make() -> str:
        made.append(f"brk-{uuid.uuid4().hex}")
        return made[-1]

    yield make
    for marker in made:
        for pid in carrying(marker):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
