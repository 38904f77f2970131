"""MCP prompts that teach the host model the sleeping-orchestrator pattern with our 9 tools.

Claude Code shows them as /mcp__<server>__orchestrate etc.; Claude Desktop in its prompt menu. Each prompt takes ONE
argument: Claude Code splits what the user types after the command on whitespace and fills the arguments word by
word (the first word alone in a one-argument prompt), but shows the model the whole typed text in <command-args>. So
the text tells the model that the whole typed text is the argument, and no stray word can become a second one."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from pydantic import Field

WHOLE_TEXT = """{what}: the WHOLE text the user typed after the slash command. In Claude Code that is everything in
<command-args> above (this prompt receives only its first word); elsewhere it is: {arg}"""

ORCHESTRATE = """You are the orchestrator of an agent fleet. Your job is to delegate, sleep, and integrate — not to do
the work yourself, and not to read everything the agents read.

{task}
If there is no task, ask the user for one and stop.

Method:
1. Call list_task_agents once to see the templates (scout, planner, builder, code-reviewer, ...).
2. Decompose the task into a small DAG. Typically: 2-4 scouts in parallel, each on a distinct area or question
   (what files matter, what the current behaviour is); one planner that depends on all scouts and receives their
   findings through {{{{scout-id}}}} placeholders; one builder that depends on the planner and receives
   {{{{plan}}}}. Add a code-reviewer after the builder when the change is risky.
3. Start it with ONE run_agents call (give each run an `id`; set depends_on). Agents work in the current project;
   set a run's cwd only when the task names another folder. Inputs must be self-contained: the agents do not see
   this conversation.
4. Sleep: call wait_for_agents(batch=<id>) until done is true. Do not poll get_agent_status in a loop and do not
   read transcripts while they work; progress notifications tell you enough.
5. When the batch finishes, read only what you need: the run results in the batch view, or get_agent_output for a
   specific agent (results are capped; follow next_cursor only if you must). If a run failed, read its reason,
   decide whether to re-run it with command_agent (clearer input) or report the failure.
6. Integrate the edits. In a git repository every readwrite agent (builder, test-writer) edits its own worktree
   (branch fleet/<agent>), never the user's checkout, so parallel builders cannot overwrite each other; a builder
   that depends on another starts from that one's branch (merge them in that order). Its status row shows
   `changes` and `overlaps` (other agents that changed the same files). Check with merge_agent(agent,
   dry_run=true), then merge_agent(agent) to apply the changes to the checkout (strategy="squash" leaves them
   uncommitted). On a conflict nothing is changed: the result names the files and the agents (or your
   uncommitted edits) that caused it; merge the other agent first, or ask a builder to redo the change on top,
   or tell the user. Never copy files by hand.
7. Report to the user: what was done, which files changed (merged or not), what was verified, the cost
   (get_agent_status fleet line), and any open problems.
8. Clean up with delete_agent("all") unless the user wants to keep the agents (an unmerged agent's branch is
   kept and the result says so; purge=true drops it).
"""

REVIEW = """Review code by delegating, in parallel, to two task agents, then merge their findings.

{target}
It names what to review (a path, a diff, a branch) and may add a focus. If it is empty, review the uncommitted
changes of the current project (git diff HEAD).

1. run_agents with two runs and no dependencies:
   - id "review", agent "code-reviewer": review that target, with the focus if one was given. Ask for findings
     ranked by severity with file:line and a concrete fix each.
   - id "tests", agent "test-writer": identify the untested behaviour in that target and write the missing tests
     (or, when it must not write, list them precisely).
2. wait_for_agents(batch=<id>) until done.
3. Merge: one list, deduplicated, ordered by severity; mark which findings the new tests cover. Quote file:line.
   Keep it short; link to get_agent_output for details rather than pasting transcripts.
4. In a git repository the test-writer wrote its tests in its own worktree, not in the user's files:
   get_agent_output(agent, mode="diff") shows them; apply them with merge_agent(agent) only if the user wants
   them (merge_agent(agent, dry_run=true) first; strategy="squash" leaves them uncommitted for review).
5. delete_agent for the two agents when the user has what they need.
"""

FLEET = """Summarize the agent fleet for the user in a few lines.

Call get_agent_status (no arguments). Report: how many agents are running / queued / idle / failed (the summary
counts the whole fleet; not_shown counts agents left out of the rows); for each running agent, what it is doing now
(activity); any stalled agent (stalled: true) or failed agent with its error and what to do about it; agents whose
worktree changes overlap (overlaps); total tokens and cost. Do not read transcripts unless a failure needs
explaining; then use get_agent_output(mode="tail") for that one agent only.

{detail}
If it asks for more, cover that too.
"""


def _whole_text(what: str, arg: str) -> str:
    return WHOLE_TEXT.format(what=what, arg=arg.strip() or "(nothing)")


def orchestrate(
    task: Annotated[
        str, Field(description="The task, in your own words: everything typed after the command (one argument)")
    ] = "",
) -> str:
    return ORCHESTRATE.format(task=_whole_text("The task", task))


def review(
    target: Annotated[
        str,
        Field(description="What to review and any focus, e.g. `src/auth/ token expiry`; empty = uncommitted changes"),
    ] = "",
) -> str:
    return REVIEW.format(target=_whole_text("The target", target))


def fleet(
    detail: Annotated[str, Field(description="Anything else the summary should cover (optional)")] = "",
) -> str:
    return FLEET.format(detail=_whole_text("The request", detail))


def register(mcp: MCPServer[Any]) -> None:
    mcp.prompt(
        name="orchestrate", description="Delegate a task to a fleet: scouts -> plan -> build, sleeping while they work"
    )(orchestrate)
    mcp.prompt(name="review", description="Parallel code review + test writing for a path or diff, findings merged")(
        review
    )
    mcp.prompt(name="fleet", description="Summarize fleet status and costs")(fleet)
