"""Keys the fleet knows never reach a transcript or a log line, whatever their shape (redacted at write time)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from agent_fleet_mcp import logs, secrets
from agent_fleet_mcp.testing import ScriptedModelServer, ToolCall
from worker.helpers import finish, start_worker, worker_env


def test_worker_transcript_never_holds_its_key(tmp_path: Path, project: Path) -> None:
    key = f"plainkey{uuid.uuid4().hex}"  # no sk- prefix: only knowing the value can catch it
    script = [ToolCall("bash", {"command": f"echo {key} > k.txt"}), f"your key is {key}, I wrote it to k.txt"]
    with ScriptedModelServer(script) as srv:
        env = worker_env(srv.base_url, ANTHROPIC_API_KEY=key)
        run = finish(start_worker(srv.base_url, tmp_path / "agent", project, "leak it", permission="readwrite",
                                  env=env))  # fmt: skip
    assert run.code == 0, run.stderr
    text = "\n".join(str(e) for e in run.events)
    assert key not in text
    assert "[redacted ANTHROPIC_API_KEY]" in run.result["text"]
    assert "[redacted ANTHROPIC_API_KEY]" in run.of("tool_use")[0]["summary"]


@pytest.fixture
def log_dir(tmp_path: Path) -> Iterator[Path]:
    logs.configure(tmp_path, stderr_level="ERROR", file_level="INFO")
    yield tmp_path
    for h in list(logging.getLogger().handlers):
        if getattr(h, "_agent_fleet", False):
            logging.getLogger().removeHandler(h)
            h.close()
    logs._configured = False  # pyright: ignore[reportPrivateUsage]


def test_log_lines_never_hold_a_known_key(log_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    aws, gh = f"aws{uuid.uuid4().hex}", f"gh{uuid.uuid4().hex}"
    monkeypatch.setattr(secrets, "_known", {})
    monkeypatch.setattr(secrets, "_env_scanned", False)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", aws)
    secrets.register({"GITHUB_TOKEN": gh, "LANG": "C.UTF-8-long-enough"})
    structlog.get_logger("agent_fleet.test").warning("oops", detail=f"cmd failed with {aws} and {gh}")
    text = (log_dir / "fleet.log").read_text()
    assert aws not in text and gh not in text
    assert "[redacted AWS_SECRET_ACCESS_KEY]" in text and "[redacted GITHUB_TOKEN]" in text
    assert "C.UTF-8-long-enough" not in secrets.known()  # only secret-looking names count
