#!/usr/bin/env bash
# External MCP conformance: the official MCP Inspector CLI (pinned, from .tools/) talks to `agent-fleet-mcp` over
# stdio: tools/list must list exactly our 8 tools and a tools/call of list_task_agents must succeed.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
INSPECTOR="$ROOT/.tools/bin/mcp-inspector"
SERVER="$ROOT/.venv/bin/agent-fleet-mcp"
[[ -x "$INSPECTOR" ]] || { echo "conformance: $INSPECTOR missing; run scripts/install-tools.sh" >&2; exit 1; }
home="$(mktemp -d)"
trap 'rm -rf "$home"' EXIT

list="$(timeout 120 "$INSPECTOR" --cli "$SERVER" -e AGENT_FLEET_HOME="$home" --method tools/list --format json -q)"
call="$(timeout 120 "$INSPECTOR" --cli "$SERVER" -e AGENT_FLEET_HOME="$home" --method tools/call \
  --tool-name list_task_agents --format json -q)"
LIST="$list" CALL="$call" python3 - <<'PY'
import json, os, sys
tools = sorted(t["name"] for t in json.loads(os.environ["LIST"])["result"]["tools"])
want = sorted(["list_task_agents", "create_agent", "command_agent", "get_agent_status", "wait_for_agents",
               "get_agent_output", "delete_agent", "run_agents"])
if tools != want:
    sys.exit(f"conformance: tools/list gave {tools}, want {want}")
res = json.loads(os.environ["CALL"])["result"]
if res.get("isError"):
    sys.exit(f"conformance: list_task_agents failed: {res}")
names = [a["name"] for a in res["structuredContent"]["agents"]]
if "scout" not in names:
    sys.exit(f"conformance: list_task_agents lacks the built-in scout: {names}")
print(f"conformance: ok ({len(tools)} tools; list_task_agents -> {len(names)} templates)")
PY
