"""Test doubles that ship with the package: a scripted Anthropic Messages API server on loopback.

Real clients (the ``anthropic`` SDK, the ``claude`` CLI via ``ANTHROPIC_BASE_URL``) talk to it unchanged::

    from agent_fleet_mcp.testing import ScriptedModelServer, Reply, ToolCall, ApiError

    with ScriptedModelServer([ToolCall("read_file", {"path": "README.md"}), Reply("It is a demo.")]) as srv:
        client = anthropic.Anthropic(base_url=srv.base_url, api_key="test")
        ...
        srv.assert_complete()

Steps are documented in ``script``; when the script runs out, ``default_policy`` (a small deterministic agent
that lists, reads, greps and summarizes, or performs edits phrased in the grammar of ``grammar``) answers.

``fake_runner.FakeRunner`` runs a fleet's turns in process (no model, no process) for unit tests of fleet logic.
"""

from agent_fleet_mcp.testing.grammar import Create, Replace, parse_edit_instructions
from agent_fleet_mcp.testing.policy import default_policy
from agent_fleet_mcp.testing.script import ApiError, RecordedRequest, Reply, Step, ToolCall, Turn, When
from agent_fleet_mcp.testing.server import ScriptedModelServer, run_standalone

__all__ = [
    "ApiError",
    "Create",
    "RecordedRequest",
    "Replace",
    "Reply",
    "ScriptedModelServer",
    "Step",
    "ToolCall",
    "Turn",
    "When",
    "default_policy",
    "parse_edit_instructions",
    "run_standalone",
]
