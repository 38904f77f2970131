#!/usr/bin/env bash
# External MCP conformance: the official MCP Inspector CLI (pinned, from .tools/) talks to `agent-fleet-mcp` over
# stdio: tools/list must list exactly our 8 tools and a tools/call of list_task_agents must succeed. Then over
# streamable HTTP, exactly as README.md shows it: with the bearer token from `agent-fleet http-token` tools/list
# works; without it the server refuses.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
INSPECTOR="$ROOT/.tools/bin/mcp-inspector"
SERVER="$ROOT/.venv/bin/agent-fleet-mcp"
FLEET="$ROOT/.venv/bin/agent-fleet"
[[ -x "$INSPECTOR" ]] || { echo "conformance: $INSPECTOR missing; run scripts/install-tools.sh" >&2; exit 1; }
home="$(mktemp -d)"
server_pid=""
cleanup() {
  local rc=$?
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$home"
  exit "$rc"
}
trap cleanup EXIT

list="$(timeout 120 "$INSPECTOR" --cli "$SERVER" -e AGENT_FLEET_HOME="$home" --method tools/list --format json -q)"
call="$(timeout 120 "$INSPECTOR" --cli "$SERVER" -e AGENT_FLEET_HOME="$home" --method tools/call \
  --tool-name list_task_agents --format json -q)"
LIST="$list" CALL="$call" python3 - <<'PY'
import json, os, sys
tools = sorted(t["name"] for t in json.loads(os.environ["LIST"])["result"]["tools"])
want = sorted(["list_task_agents", "create_agent", "command_agent", "get_agent_status", "wait_for_agents",
               "get_agent_output", "delete_agent", "run_agents", "merge_agent"])
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

# -- streamable HTTP, with the README's command line -----------------------------------------------------------
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
AGENT_FLEET_HOME="$home" "$SERVER" --http --port "$port" 2>"$home/http-server.err" &
server_pid=$!
for _ in $(seq 600); do # until the port accepts (at most ~60 s), or the server died
  python3 -c "import socket, sys; sys.exit(socket.socket().connect_ex(('127.0.0.1', $port)))" && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$home/http-server.err" >&2; exit 1; }
  sleep 0.1
done
url="http://127.0.0.1:$port/mcp"
http_list="$(AGENT_FLEET_HOME="$home" timeout 120 "$INSPECTOR" --cli "$url" \
  --header "Authorization: Bearer $(AGENT_FLEET_HOME="$home" "$FLEET" http-token)" --method tools/list --format json -q)"
n="$(HTTP_LIST="$http_list" python3 -c 'import json, os; print(len(json.loads(os.environ["HTTP_LIST"])["result"]["tools"]))')"
[[ "$n" == 9 ]] || { echo "conformance: tools/list over HTTP gave $n tools, want 9" >&2; exit 1; }
if refused="$(timeout 120 "$INSPECTOR" --cli "$url" --header "Authorization: Bearer wrong-token-0123456789" \
  --method tools/list --format json -q 2>&1)"; then
  echo "conformance: tools/list over HTTP with a wrong token succeeded" >&2
  exit 1
fi
[[ "$refused" == *auth* ]] || { echo "conformance: a wrong token failed, but not for auth: $refused" >&2; exit 1; }
echo "conformance: ok over streamable HTTP (bearer token required; $n tools)"
