"""Cancellation: SIGTERM/SIGINT become a ``Cancelled`` exception in the main thread.

The handler raises at the next bytecode, which interrupts a blocking socket read or ``wait()`` at once (PEP 475
retries only when the handler returns). Code that must not be cut in half (writing an event line, saving history)
runs inside ``shielded()``: a signal arriving there is held and raised when the block ends. After the first
signal, further ones are ignored so the clean-up (history save, final ``result``) can finish.
"""

from __future__ import annotations

import signal
from collections.abc import Generator
from contextlib import contextmanager
from types import FrameType


class Cancelled(BaseException):
    """The worker was asked to stop (SIGTERM/SIGINT). A BaseException so ``except Exception`` never eats it."""


_depth = 0
_pending = False
_cancelled = False


def _handler(signum: int, frame: FrameType | None) -> None:
    global _pending, _cancelled
    if _cancelled:
        return
    if _depth:
        _pending = True
        return
    _cancelled = True
    raise Cancelled(signal.Signals(signum).name)


def install() -> None:
    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)


def cancelled() -> bool:
    return _cancelled


@contextmanager
def shielded() -> Generator[None]:
    """Hold signals for the duration of the block; raise ``Cancelled`` at its end if one came."""
    global _depth, _pending, _cancelled
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending:
            _pending = False
            _cancelled = True
            raise Cancelled("SIGTERM")
