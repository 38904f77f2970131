"""The fork server's warm-up of the response path (worker/warmup.py): after ``preload()``, a turn's request and
streamed answer build no pydantic validator, so a forked worker spends no CPU on that when its answer arrives
(20 answers landing together on 2 cores finished up to 1 s late without it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agent_fleet_mcp.testing import Reply, ScriptedModelServer
from agent_fleet_mcp.worker import warmup

# In a fresh interpreter: optionally preload (as the zygote does), then count the pydantic schemas built while one
# real turn runs against the scripted model, and the generic model classes it makes. Prints the turn's events, then
# {"schemas": N, "classes": M, "imports": [modules], "rc": exit code}.
CHILD = r"""
import io, json, sys
from pydantic._internal import _generate_schema, _generics
from agent_fleet_mcp.worker import __main__ as worker

if sys.argv[1] == "preload":
    import gc
    worker.preload()
    gc.collect()  # as the fork server does before it forks: what only a cycle kept alive is gone
    gc.freeze()
built = made = 0
original = _generate_schema.GenerateSchema.generate_schema
def counting(self, *args, **kwargs):
    global built
    built += 1
    return original(self, *args, **kwargs)
_generate_schema.GenerateSchema.generate_schema = counting
new_class = _generics.create_generic_submodel
def counting_classes(*args, **kwargs):
    global made
    made += 1
    return new_class(*args, **kwargs)
_generics.create_generic_submodel = counting_classes
sys.stdin = io.TextIOWrapper(io.BytesIO(b"say done"))
modules = set(sys.modules)
rc = worker.main(["--agent-dir", sys.argv[2], "--cwd", sys.argv[3], "--model", "claude-haiku-4-5",
                  "--permission", "readonly"])
imported = sorted(set(sys.modules) - modules)
summary = {"schemas": built, "classes": made, "imports": imported, "rc": rc}
sys.__stdout__.write(json.dumps(summary) + "\n")  # after the turn's event lines
sys.__stdout__.flush()  # frozen objects are not finalized at exit: flush by hand
"""


def run_turn(tmp_path: Path, mode: str) -> dict[str, object]:
    agent_dir, cwd = tmp_path / f"agent-{mode}", tmp_path / "cwd"
    agent_dir.mkdir()
    cwd.mkdir(exist_ok=True)
    with ScriptedModelServer([Reply("done")]) as model:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ANTHROPIC_BASE_URL": model.base_url,
               "ANTHROPIC_API_KEY": "test"}  # fmt: skip
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, mode, str(agent_dir), str(cwd)],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    *events, summary = [json.loads(line) for line in proc.stdout.strip().splitlines()]
    return {**summary, "result": events[-1]}


def test_the_warm_up_parses_every_block_type_a_turn_handles() -> None:
    message = warmup.warm_stream()
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use"]
    assert message.content[2].input == {"path": "a"}
    assert message.stop_reason == "tool_use" and message.usage.output_tokens == 5


def test_after_preload_a_turn_builds_no_validator_on_its_response_path(tmp_path: Path) -> None:
    cold = run_turn(tmp_path, "cold")
    warm = run_turn(tmp_path, "preload")
    for got in (cold, warm):  # the same turn either way
        assert got["rc"] == 0
        result = got["result"]
        assert isinstance(result, dict)
        assert (result["type"], result["text"], result["is_error"]) == ("result", "done", False)
    assert isinstance(cold["schemas"], int) and cold["schemas"] > 50  # what every forked worker paid before
    assert warm["schemas"] == 0
    assert warm["classes"] == 0  # ParsedMessage[ResponseFormatT], at every event: built again in each worker before
    assert warm["imports"] == []  # encodings.idna (the host name's codec) was imported by each worker before
