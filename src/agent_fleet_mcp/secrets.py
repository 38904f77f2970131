"""The secrets the fleet knows, and their redaction at write time.

A secret is the value of an environment variable whose name says it is one (``*_API_KEY``, ``*_TOKEN``,
``*_SECRET*``, ``*PASSWORD*``, ``*CREDENTIAL*``...) and that is long enough to be unambiguous. The worker redacts
the ones in its environment from every transcript event it writes (worker/output.py); logs.py redacts the ones in
the process environment and those registered with ``register`` (the server's Settings.env) from every log line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

SECRET_NAME_RE = re.compile(r"(?i)(API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE_KEY|AUTH)")
MIN_LEN = 8  # shorter values ("test", "1") would redact ordinary words

_known: dict[str, str] = {}  # value -> variable name
_env_scanned = False


def from_env(env: Mapping[str, str]) -> dict[str, str]:
    """value -> name of every secret-looking variable of ``env``."""
    return {v: k for k, v in env.items() if SECRET_NAME_RE.search(k) and len(v.strip()) >= MIN_LEN}


def register(env: Mapping[str, str]) -> None:
    """Remember these secrets (besides the process environment's) for ``redact``."""
    _known.update(from_env(env))


def known() -> dict[str, str]:
    global _env_scanned
    if not _env_scanned:
        _env_scanned = True
        for value, name in from_env(os.environ).items():
            _known.setdefault(value, name)
    return _known


def redact(text: str, values: Iterable[tuple[str, str]] | None = None) -> str:
    """``text`` with every known secret value replaced by ``[redacted NAME]`` (longest first)."""
    pairs = sorted(known().items() if values is None else values, key=lambda p: -len(p[0]))
    for value, name in pairs:
        if value in text:
            text = text.replace(value, f"[redacted {name}]")
    return text
