"""structlog setup: JSON lines to a rotating file under the fleet home and, at a configurable level, to stderr.
Never stdout (it is the MCP channel of the stdio server). Secrets are redacted from every line."""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
from pathlib import Path
from typing import Any

import structlog
from structlog.typing import EventDict

from agent_fleet_mcp import secrets
from agent_fleet_mcp.private import open_private, private_dirs

SECRET_RE = re.compile(
    r"(sk-ant-[A-Za-z0-9_\-]{8,}|sk-[A-Za-z0-9_\-]{20,}|(?i:bearer)\s+[A-Za-z0-9._\-]{8,}"
    r"|(?i:(?:api[_-]?key|auth[_-]?token|x-api-key|authorization)[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9._\-]{6,})"
)


def redact(text: str) -> str:
    text = secrets.redact(text)  # the values the fleet knows, whatever their shape

    def sub(m: re.Match[str]) -> str:
        s = m.group(0)
        keep = re.match(r"(?i)(bearer\s+|[a-z_\-]+[\"']?\s*[:=]\s*[\"']?|sk-ant-|sk-)", s)
        return (keep.group(0) if keep else "") + "[REDACTED]"

    return SECRET_RE.sub(sub, text)


def _redact_processor(_: Any, __: str, event_dict: EventDict) -> EventDict:
    return {k: redact(v) if isinstance(v, str) else v for k, v in event_dict.items()}


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


_configured = False


def ensure_configured() -> None:
    """Library use (tests, embedding): make sure structlog never falls back to printing on stdout."""
    if not _configured:
        configure(None)


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Log files are created 0600 (the first one and each one after a rotation), whatever the umask."""

    def _open(self) -> Any:
        return open_private(Path(self.baseFilename), "a", encoding=self.encoding)


def configure(logs_dir: Path | None, *, stderr_level: str = "WARNING", file_level: str = "INFO") -> None:
    """Idempotent. stdlib logging carries structlog's rendered JSON to the handlers."""
    global _configured
    _configured = True
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_agent_fleet", False):
            root.removeHandler(h)
            if isinstance(h, logging.FileHandler):
                h.close()
    fmt = _RedactingFormatter("%(message)s")
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(stderr_level.upper())
    err.setFormatter(fmt)
    err._agent_fleet = True  # type: ignore[attr-defined]
    root.addHandler(err)
    if logs_dir is not None:
        private_dirs(logs_dir)
        fh = _PrivateRotatingFileHandler(logs_dir / "fleet.log", maxBytes=5_000_000, backupCount=3, encoding="utf-8")
        fh.setLevel(file_level.upper())
        fh.setFormatter(fmt)
        fh._agent_fleet = True  # type: ignore[attr-defined]
        root.addHandler(fh)
    levels = logging.getLevelNamesMapping()
    root.setLevel(min(levels[stderr_level.upper()], levels[file_level.upper()]))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact_processor,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
