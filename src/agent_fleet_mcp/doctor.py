"""`agent-fleet doctor`: checks of this machine and fleet home, each with what to do when it is not fine.

A check is a plain function ``(Settings) -> list[Check]`` listed in ``CHECKS``; it never raises (a check that
cannot tell reports ``warn`` with why). Containment, home permissions, store integrity and runner availability each
add their own check function here. Rendering lives in cli/doctor.py; this module only gathers facts.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.private import CHMOD_FIX, open_to_others

Level = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    detail: str
    fix: str | None = None  # the next step when level is warn/fail


def check_python(settings: Settings) -> list[Check]:
    v = sys.version_info
    if v < (3, 11):
        return [Check("python", "fail", f"Python {v.major}.{v.minor}", "use Python 3.11 or newer")]
    return [Check("python", "ok", f"Python {v.major}.{v.minor}.{v.micro} ({sys.executable})")]


def check_home(settings: Settings) -> list[Check]:
    home = settings.home
    if not home.exists():
        return [Check("fleet home", "ok", f"{home} (not created yet; the first server start creates it)")]
    if not home.is_dir():
        return [Check("fleet home", "fail", f"{home} is not a directory", "set AGENT_FLEET_HOME to a folder")]
    return [Check("fleet home", "ok", str(home))]


def check_runners(settings: Settings) -> list[Check]:
    out: list[Check] = []
    path = settings.env.get("PATH")
    key = bool(settings.env.get("ANTHROPIC_API_KEY") or settings.env.get("ANTHROPIC_AUTH_TOKEN"))
    if key:
        out.append(Check("runner anthropic", "ok", "ANTHROPIC_API_KEY is set"))
    else:
        fix = "set ANTHROPIC_API_KEY in the MCP host's config for this server (the offline demo needs none)"
        out.append(Check("runner anthropic", "warn", "no ANTHROPIC_API_KEY in the environment", fix))
    for runner, exe in (("claude-code", "claude"), ("codex", "codex"), ("gemini", "gemini")):
        found = shutil.which(exe, path=path)
        out.append(
            Check(f"runner {runner}", "ok", found)
            if found
            else Check(f"runner {runner}", "warn", f"`{exe}` is not on PATH", f"install the {exe} CLI to use it")
        )
    return out


def check_containment(settings: Settings) -> list[Check]:
    """Which boundary turns get here (runners/containment.py), and why a stronger one is not in use."""
    from agent_fleet_mcp.runners import containment

    boundary = containment.choose(settings.env, fresh=True)
    why = "; ".join(boundary.why_not)
    forced = containment.MODE_ENV in settings.env and "forces" in why
    if boundary.mode == "pidns" and not forced:
        detail = boundary.describe() + (f" (not: {why})" if why else "")
        if shutil.which("mount", path=settings.env.get("PATH") or os.defpath) is None:
            return [Check("containment", "warn", f"{detail}; util-linux `mount` is not on PATH",
                          "install util-linux `mount`: until then a turn can read the fleet home's http-token and "
                          "rewrite its trusted-agents.json (docs/containment.md)")]  # fmt: skip
        return [Check("containment", "ok", detail)]
    if forced:
        fix = f"unset {containment.MODE_ENV} to use the strongest containment this machine allows"
    elif boundary.mode == "cgroup":
        fix = (
            "allow unprivileged user namespaces (and install util-linux `unshare`) for the pidns mode too: until "
            "then nothing outlives a turn, but agents can read ancestors' /proc/<pid>/environ (docs/containment.md)"
        )
    else:
        fix = (
            "install util-linux `unshare` and allow unprivileged user namespaces (sysctl "
            "kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile allowing `userns`), or run the "
            "server in a cgroup v2 delegated to your user (systemd-run --user --scope -p Delegate=yes); until then "
            "a process a turn double-forks can outlive it and agents can read ancestors' /proc (docs/containment.md)"
        )
    return [Check("containment", "warn", f"{boundary.describe()}; {why}", fix)]


def check_trust(settings: Settings) -> list[Check]:
    """The trust list of catalog files (trusted-agents.json): one that does not parse trusts nothing."""
    from agent_fleet_mcp import trust

    path = trust.trust_file(settings.home)
    if (problem := trust.list_problem(settings.home)) is not None:
        return [Check("trust list", "fail", f"{path}: {problem}; no catalog file is trusted until it is rewritten "
                      "(a crash while it was being rewritten, or an edit by hand)",
                      "trust your catalog files again: `agent-fleet trust FILE...` (or `--all`) writes the list "
                      "anew; `agent-fleet agents` lists the untrusted ones")]  # fmt: skip
    if not path.exists():
        return [Check("trust list", "ok", f"{path} (not created yet: no catalog file trusted)")]
    n = len(trust.load_trusted(settings.home))
    return [Check("trust list", "ok", f"{path} ({n} catalog file{'' if n == 1 else 's'} trusted)")]


STORE_CHECK_S = 5.0


def check_store(settings: Settings) -> list[Check]:
    """fleet.db's integrity (SQLite quick_check, bounded in time)."""
    from agent_fleet_mcp.store.integrity import quick_check

    db = settings.db_path
    if not db.exists():
        return [Check("store", "ok", f"{db} (not created yet)")]
    got = quick_check(db, time_budget_s=STORE_CHECK_S) if db.is_file() else None
    if got is None:
        return [Check("store", "fail", f"{db} is not a file", "move it away; the next server start creates the store")]
    if got.ok is None:
        return [Check("store", "warn", f"{db}: integrity check {'; '.join(got.problems)}", "run doctor again later")]
    if not got.ok:
        detail = f"{db} is damaged: {'; '.join(got.problems)[:300]}"
        fix = "stop the servers on this home, then `agent-fleet doctor --repair` (keeps the file aside, rebuilds)"
        return [Check("store", "fail", detail, fix)]
    return [Check("store", "ok", f"{db} (integrity ok)")]


def check_home_private(settings: Settings) -> list[Check]:
    """Nothing in the fleet home may be readable by group or others (prompts, transcripts, fleet.db)."""
    home = settings.home
    if not home.is_dir():
        return []
    open_ = list(open_to_others(home))
    if not open_:
        return [Check("home permissions", "ok", f"{home} and everything in it are private (0700 folders, 0600 files)")]
    shown = ", ".join(f"{stat.filemode(p.lstat().st_mode)} {p}" for p in open_[:3])
    more = f" and {len(open_) - 3} more" if len(open_) > 3 else ""
    return [
        Check(
            "home permissions", "warn",
            f"{len(open_)} {'entry' if len(open_) == 1 else 'entries'} under {home} are readable by other users: "
            f"{shown}{more}",
            CHMOD_FIX.format(home=home),
        )
    ]  # fmt: skip


def check_worktrees(settings: Settings) -> list[Check]:
    """Agents' git worktrees under the fleet home (issue 11): stale ones (their agent is deleted or unknown) and
    live agents whose worktree is gone."""
    import anyio

    from agent_fleet_mcp.isolation import survey, worktrees_dir
    from agent_fleet_mcp.store.sqlite import SqliteStore

    root = worktrees_dir(settings.home)
    if not root.is_dir() or not any(root.iterdir()):
        return [Check("worktrees", "ok", f"no agent worktrees in {root}")]

    async def look() -> tuple[list[str], list[str], int] | None:
        store = SqliteStore(settings.db_path)
        if not await store.open_existing():
            return None
        try:
            found = await survey(store, settings.home)
            live = sum(1 for a in await store.isolated_agents() if a.status != "deleted")
        finally:
            await store.close()
        return [str(p) for p in found.stale], [f"{a.name} ({a.workspace.path if a.workspace else '?'})"
                                               for a in found.missing], live  # fmt: skip

    got = anyio.run(look)
    if got is None:
        return [Check("worktrees", "warn", f"{root} holds worktrees but there is no {settings.db_path}",
                      f"remove {root} once no agent of yours needs it (their branches stay in your repositories)")]
    stale, missing, live = got
    out: list[Check] = []
    if stale:
        shown = ", ".join(stale[:3]) + (f" and {len(stale) - 3} more" if len(stale) > 3 else "")
        out.append(Check("worktrees", "warn", f"{len(stale)} stale worktree(s) of agents that no longer exist: {shown}",
                         "`agent-fleet doctor --repair` prunes them (their branches stay: merge or `git branch -D` "
                         "them); a server start prunes them too"))  # fmt: skip
    if missing:
        out.append(Check("worktrees", "warn", f"live agent(s) whose worktree is gone: {', '.join(missing[:5])}",
                         "the next server start (or the agent's next turn) re-makes it from its branch"))  # fmt: skip
    if not out:
        out.append(Check("worktrees", "ok", f"{live} live agent worktree(s) in {root}, none stale"))
    return out


def prune_worktrees(settings: Settings) -> list[str]:
    """``doctor --repair``: remove the stale worktrees (``check_worktrees``) and their registrations in the users'
    repositories. Only with an intact store to tell which agents live (never guesses); returns what it removed."""
    import anyio

    from agent_fleet_mcp.isolation import prune, worktrees_dir
    from agent_fleet_mcp.store.sqlite import SqliteStore

    if not worktrees_dir(settings.home).is_dir():
        return []

    async def run() -> list[str]:
        store = SqliteStore(settings.db_path)
        if not await store.open_existing():
            return []
        try:
            live = {a.id for a in await store.isolated_agents() if a.status != "deleted"}
        finally:
            await store.close()
        return await prune(settings.home, live)

    return anyio.run(run)


CHECKS: list[Callable[[Settings], list[Check]]] = [
    check_python, check_home, check_home_private, check_store, check_trust, check_runners, check_containment,
    check_worktrees,
]


def run_checks(settings: Settings) -> list[Check]:
    out: list[Check] = []
    for fn in CHECKS:
        try:
            out.extend(fn(settings))
        except Exception as exc:  # a broken check is reported, never fatal
            out.append(Check(fn.__name__.removeprefix("check_"), "warn", f"check failed: {type(exc).__name__}: {exc}"))
    return out
