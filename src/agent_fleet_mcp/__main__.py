"""`agent-fleet-mcp` / `python -m agent_fleet_mcp`: the MCP server (stdio by default, --http for streamable HTTP)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    from agent_fleet_mcp.cli import serve_main

    serve_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
