"""Structured logs: JSON lines in the fleet home's log file, never on stdout, secrets redacted."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import structlog

from agent_fleet_mcp import logs


@pytest.fixture
def log_dir(tmp_path: Path):
    logs.configure(tmp_path, stderr_level="ERROR", file_level="INFO")
    yield tmp_path
    for h in list(logging.getLogger().handlers):
        if getattr(h, "_agent_fleet", False):
            logging.getLogger().removeHandler(h)
            h.close()
    logs._configured = False  # pyright: ignore[reportPrivateUsage]


@pytest.mark.parametrize(
    "secret",
    [
        "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
        "Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig",
        "ANTHROPIC_API_KEY=abcdef123456789",
        '"x-api-key": "abcdef0123456789"',
    ],
)
def test_redact(secret: str) -> None:
    out = logs.redact(f"calling with {secret} now")
    assert "[REDACTED]" in out
    tail = secret[-8:]
    assert tail not in out


def test_lines_are_json_with_context_and_no_secrets(log_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = structlog.get_logger("agent_fleet.test")
    log.info("turn_started", agent="scout-1", turn=2, auth="Bearer sk-ant-api03-SECRETSECRETSECRET123")
    log.warning("api_error", agent="scout-1", turn=2, message="401 for key sk-ant-api03-ANOTHERSECRET99999")
    text = (log_dir / "fleet.log").read_text()
    assert "SECRETSECRET" not in text and "ANOTHERSECRET" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["event"] for line in lines] == ["turn_started", "api_error"]
    assert all(line["agent"] == "scout-1" and line["turn"] == 2 for line in lines)
    captured = capsys.readouterr()
    assert captured.out == ""  # stdout belongs to the MCP protocol
