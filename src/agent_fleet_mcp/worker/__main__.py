"""``python -m agent_fleet_mcp.worker``: run one turn of an agent (prompt on stdin, events on stdout).

The `started` event goes out before anything slow (the ``anthropic`` import), so the supervisor sees the turn
running within ~50 ms of the spawn. Exit 0 when the turn succeeded, 1 when its `result` is an error, 2 for bad
arguments (argparse).
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import functools
import os
import sys
from pathlib import Path

from agent_fleet_mcp.runners import containment
from agent_fleet_mcp.worker import output, signals
from agent_fleet_mcp.worker.output import emit


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return parser().parse_args(argv)


@functools.cache
def parser() -> argparse.ArgumentParser:
    """Built once (at the fork server's preload for forked workers: 0.4 ms of each turn's CPU before)."""
    p = argparse.ArgumentParser(prog="python -m agent_fleet_mcp.worker", description=__doc__)
    p.add_argument("--agent-dir", required=True, type=Path, help="the agent's private folder (history.json)")
    p.add_argument("--cwd", required=True, type=Path, help="the directory the tools are confined to")
    p.add_argument("--model", required=True)
    p.add_argument("--permission", required=True, choices=("readonly", "readwrite"))
    p.add_argument("--max-turns", type=int, default=None, help="max model requests in this turn")
    p.add_argument(
        "--max-cost-usd",
        type=float,
        default=None,
        help="stop before the next request once this turn cost this much (what is left of the agent's)",
    )
    p.add_argument(
        "--max-total-tokens",
        type=int,
        default=None,
        help="stop before the next request once this turn used this many tokens (input+output+cache)",
    )
    p.add_argument("--fleet-budget-usd", type=float, default=None, help="what is left of the fleet's daily budget")
    p.add_argument("--batch-budget-usd", type=float, default=None, help="what is left of the batch's budget")
    p.add_argument("--system-file", type=Path, default=None, help="file holding the agent's system prompt")
    p.add_argument("--tools", default=None, help="comma-separated subset of the built-in tools")
    p.add_argument("--max-tokens", type=int, default=None, help="max output tokens per request")
    return p


def _fail(kind: str, message: str) -> int:
    emit("error", kind=kind, message=message)
    emit("result", text=f"[error: {message}]", is_error=True, reason="config_error")
    return 1


def run(args: argparse.Namespace) -> int:
    emit("started", runner="anthropic", model=args.model, pid=os.getpid())
    prompt = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    if not prompt.strip():
        return _fail("config", "empty prompt: the turn's prompt arrives on stdin")
    if not (os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN")):
        return _fail(
            "auth",
            "ANTHROPIC_API_KEY is not set (nor ANTHROPIC_AUTH_TOKEN); a custom ANTHROPIC_BASE_URL needs one too "
            "(any placeholder value if the endpoint checks none)",
        )
    if not args.cwd.is_dir():
        return _fail("config", f"cwd {args.cwd} is not a directory")
    system = ""
    if args.system_file is not None:
        try:
            system = args.system_file.read_text(encoding="utf-8")
        except OSError as exc:
            return _fail("config", f"cannot read the system prompt file: {exc}")
    tools = None if args.tools is None else [t.strip() for t in args.tools.split(",") if t.strip()]

    from agent_fleet_mcp.worker.loop import DEFAULT_MAX_TOKENS, Options, Turn
    from agent_fleet_mcp.worker.tools import select_tools

    try:
        select_tools(args.permission, tools)
    except ValueError as exc:
        return _fail("config", str(exc))
    opts = Options(
        agent_dir=args.agent_dir.resolve(),
        cwd=args.cwd.resolve(),
        model=args.model,
        permission=args.permission,
        max_turns=args.max_turns,
        max_cost_usd=args.max_cost_usd,
        max_total_tokens=args.max_total_tokens,
        fleet_budget_usd=args.fleet_budget_usd,
        batch_budget_usd=args.batch_budget_usd,
        system=system,
        tools=tools,
        max_tokens=args.max_tokens or DEFAULT_MAX_TOKENS,
    )
    try:
        turn = Turn(opts)
    except (OSError, ValueError) as exc:  # unreadable agent folder or history
        return _fail("config", f"cannot prepare the turn: {type(exc).__name__}: {exc}")
    return turn.run(prompt)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    containment.make_undumpable()  # our API key is in our environ and memory: not for our tools' eyes
    output.capture_stdout()
    signals.install()
    try:
        return run(args)
    except signals.Cancelled:  # before the loop took over (e.g. during the anthropic import)
        emit("result", text="[cancelled before it started]", is_error=True, reason="cancelled")
        return 1


def preload() -> None:
    """For the fork server (runners/forkserver.py): import everything a turn needs once, so a worker forked from it
    skips the ~1 s ``anthropic`` import. ``main(argv)`` then runs in the forked child as it does here."""
    import anthropic

    from agent_fleet_mcp.worker import loop, tools

    del tools  # imported for its side effect: loaded once, shared by every fork
    client = anthropic.Anthropic(api_key="preload", base_url="http://127.0.0.1:9")
    client.messages  # noqa: B018  (imports the lazily loaded resources)
    client.close()
    loop.preload_tls()
    parser()
    codecs.lookup("idna")  # the socket module encodes the API's host name with it: an import in every worker before
    import ctypes  # containment.make_undumpable's, at every turn's start

    del ctypes
    from agent_fleet_mcp.worker import warmup

    try:  # builds the SDK's response validators once (0.2 s of CPU per turn otherwise); an optimisation only
        warmup.warm_stream()
    except Exception as exc:  # a changed SDK must not cost us the fork server: the turns still work, just slower
        output.note(f"the fork server's warm-up of the response path failed: {type(exc).__name__}: {exc}")


def warm_spare() -> None:
    """For a spare child of the fork server (zygote.py), made ahead of its turn: run the response path once, as
    ``preload`` did. A forked turn's first request copies ~1,000 of the fork server's pages it touches (~10 ms of
    CPU each turn, all of a wave's at once); a spare copies them while it waits. An optimisation only."""
    from agent_fleet_mcp.worker import warmup

    with contextlib.suppress(Exception):
        warmup.warm_stream()


def exit_now(code: int) -> None:
    """Leave without interpreter finalization: tearing down the SDK's module graph takes 0.2-0.6 s after the
    `result` is out, and the supervisor sees the turn end only at exit. Events are flushed line by line and the
    history is fsynced, so nothing is lost."""
    for stream in (sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
