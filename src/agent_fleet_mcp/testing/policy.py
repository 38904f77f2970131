"""The default policy: a small, diligent, deterministic agent computed from the request alone (stateless).

Flow for a task prompt when tools are offered (see ``conversation`` for the two tool vocabularies):

1. list the folder (``**/*``),
2. read up to 3 files whose names share words with the prompt (else up to 2 of README / main source files),
3. grep for a keyword of the prompt (a quoted word, an identifier, else the longest word),
4. answer with a grounded summary naming the files read, quoting their first lines and what grep found.

When the prompt holds edit instructions (``grammar`` documents them) and a write/edit tool is offered, it reads
the file, edits it (``edit_file``/``Edit``, or ``write_file``/``Write``) and reports. At most ``MAX_CALLS`` tool
calls per prompt; no tools -> a text answer; anything odd -> a text answer, never an exception.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Mapping
from typing import Any

from agent_fleet_mcp.testing.conversation import (
    BASH_LIST,
    Call,
    View,
    bash_grep,
    bash_read,
    file_lines,
    listing_paths,
    read_view,
    relative,
    same_path,
)
from agent_fleet_mcp.testing.grammar import (
    Create,
    EditInstruction,
    Replace,
    choose_files,
    grep_keyword,
    parse_edit_instructions,
    prompt_words,
)
from agent_fleet_mcp.testing.script import Reply, ToolCall
from agent_fleet_mcp.text import shorten

log = logging.getLogger(__name__)

MAX_CALLS = 6


def default_policy(body: Mapping[str, Any]) -> Reply | ToolCall:
    """The next assistant message for this request (never raises)."""
    try:
        step = _decide(read_view(body))
    except Exception as exc:  # the policy must answer whatever it is sent
        log.warning("scripted default policy fell back to text: %r", exc)
        step = Reply(f"I could not follow this conversation ({type(exc).__name__}), so here is a plain answer: done.")
    return _fit(step, body.get("max_tokens"))


def _fit(step: Reply | ToolCall, max_tokens: Any) -> Reply | ToolCall:
    if isinstance(step, Reply) and isinstance(max_tokens, int) and 0 < max_tokens < len(step.text) // 4:
        return Reply(step.text[: max_tokens * 4], stop_reason="max_tokens")
    return step


def _decide(view: View) -> Reply | ToolCall:
    if view.last_role == "assistant":
        return Reply("Done.")
    if not view.tools:
        return Reply(_text_only_answer(view.prompt))
    instructions = parse_edit_instructions(view.prompt)
    if instructions and (view.tool("edit") or view.tool("write")):
        return _edit_flow(view, instructions)
    note = "I cannot make the requested edit: no write tool was offered to me." if instructions else None
    return _explore_flow(view, note)


def _excerpt(text: str, limit: int = 100) -> str:
    return shorten(" ".join(text.split()), limit, ellipsis="...")


def _first_line(text: str) -> str:
    return _excerpt(next((line for line in text.splitlines() if line.strip()), "(empty)"), 160)


def _text_only_answer(prompt: str) -> str:
    if not prompt:
        return "Hello from the scripted model. Give me a task."
    words = prompt_words(prompt)[:5]
    topics = f" It is about: {', '.join(words)}." if words else ""
    return f'Answer without tools to: "{_excerpt(prompt)}".{topics} Done.'


# -- tool calls --------------------------------------------------------------------------------------------


def _target(view: View, kind: str, rel: str) -> str:
    """Claude Code's file tools want absolute paths: join with the working directory when it is known."""
    tool = view.tool(kind)
    if tool and tool.key("path", "file_path") == "file_path" and view.cwd and not rel.startswith("/"):
        return posixpath.join(view.cwd, rel)
    return rel


def _list_call(view: View) -> ToolCall | None:
    text = "Let me look at the files in this folder."
    if tool := view.tool("list"):
        if tool.name == "LS":
            return ToolCall(tool.name, {tool.key("path"): view.cwd or "."}, text=text)
        return ToolCall(tool.name, {tool.key("pattern"): "**/*"}, text=text)
    if bash := view.tool("bash"):
        return ToolCall(bash.name, {bash.key("command"): BASH_LIST}, text=text)
    return None


def _read_call(view: View, rel: str, text: str | None = None) -> ToolCall | None:
    text = text or f"Reading {rel}."
    if tool := view.tool("read"):
        return ToolCall(tool.name, {tool.key("path", "file_path"): _target(view, "read", rel)}, text=text)
    if bash := view.tool("bash"):
        return ToolCall(bash.name, {bash.key("command"): bash_read(rel)}, text=text)
    return None


def _grep_call(view: View, keyword: str) -> ToolCall | None:
    text = f"Searching for `{keyword}`."
    if tool := view.tool("grep"):
        args: dict[str, Any] = {tool.key("pattern"): keyword}
        props = tool.properties or (frozenset({"output_mode", "-n", "-i"}) if tool.name == "Grep" else frozenset())
        if "output_mode" in props:
            args["output_mode"] = "content"
        if "-n" in props:
            args["-n"] = True
        if keyword.islower() and "-i" in props:
            args["-i"] = True
        return ToolCall(tool.name, args, text=text)
    if bash := view.tool("bash"):
        return ToolCall(bash.name, {bash.key("command"): bash_grep(keyword)}, text=text)
    return None


# -- exploring ---------------------------------------------------------------------------------------------


def _explore_flow(view: View, note: str | None) -> Reply | ToolCall:
    calls = view.calls
    lists = [c for c in calls if c.kind == "list"]
    if len(calls) < MAX_CALLS:
        if not lists and (call := _list_call(view)):
            return call
        listing = listing_paths(lists[-1].result, view.cwd) if lists and not lists[-1].is_error else []
        reads = [c for c in calls if c.kind == "read"]
        for rel in choose_files(listing, view.prompt):
            if not any(same_path(c.path, rel, view.cwd) for c in reads):
                if call := _read_call(view, rel):
                    return call
                break
        if not any(c.kind == "grep" for c in calls) and (call := _grep_call(view, grep_keyword(view.prompt))):
            return call
    return Reply(_summary(view, note))


def _summary(view: View, note: str | None) -> str:
    out = [
        f'Here is what I found for: "{_excerpt(view.prompt)}"' if view.prompt else "Here is what I found.",
        "",
    ]
    read_ok: list[str] = []
    for call in view.calls:
        if call.kind == "list":
            if call.is_error:
                out.append(f"- Listing the folder failed: {_first_line(call.result)}")
            else:
                paths = [p for p in listing_paths(call.result, view.cwd) if not p.endswith("/")]
                out.append(f"- The folder has {len(paths)} files (e.g. {', '.join(paths[:5]) or 'none'}).")
        elif call.kind == "read":
            rel = relative(call.path or "?", view.cwd)
            if call.is_error or not call.answered:
                out.append(f"- Could not read `{rel}`: {_first_line(call.result)}")
                continue
            lines = file_lines(call.result)
            quotes = [f'"{_excerpt(line.strip(), 100)}"' for line in lines if line.strip()][:2]
            out.append(f"- Read `{rel}` ({len(lines)} lines): {' / '.join(quotes) or '(empty)'}")
            read_ok.append(f"`{rel}`")
        elif call.kind == "grep":
            out.append(_grep_line(call, view.cwd))
        elif call.kind in ("write", "edit"):
            out.append(f"- Changed `{relative(call.path or '?', view.cwd)}`: {_first_line(call.result)}")
    if read_ok:
        out += [
            "",
            f"Summary: the most relevant files are {', '.join(read_ok)}; the quotes show what they hold.",
        ]
    else:
        out += ["", "Summary: I could not read any file, so this answer is based on the prompt alone."]
    if note:
        out.append(note)
    return "\n".join(out)


def _grep_line(call: Call, cwd: str | None) -> str:
    pattern = str(call.input.get("pattern") or call.input.get("command") or "?")
    result = call.result.replace(cwd.rstrip("/") + "/", "") if cwd else call.result
    lines = [ln.strip() for ln in result.splitlines() if ln.strip()]
    notes = ("found ", "no matches", "no files", "(no match", "…")
    lines = [ln for ln in lines if not ln.lower().startswith(notes)]
    if call.is_error or not lines:
        return f"- Searching for `{pattern}` found no matches."
    examples = " and ".join(f"`{_excerpt(ln, 120)}`" for ln in lines[:2])
    return f"- Searching for `{pattern}` found {len(lines)} matching line(s), e.g. {examples}."


# -- editing -----------------------------------------------------------------------------------------------


def _edit_flow(view: View, instructions: list[EditInstruction]) -> Reply | ToolCall:
    reports: list[str] = []
    for ins in instructions:
        outcome = _edit_step(view, ins)
        if isinstance(outcome, ToolCall):
            if len(view.calls) >= MAX_CALLS:
                reports.append(f"- Stopped before `{ins.path}`: tool call limit reached.")
                break
            return outcome
        reports.append(outcome)
    return Reply("\n".join(["I made the requested changes:" if reports else "Nothing to do.", *reports]))


def _matches(call: Call, ins: EditInstruction, view: View) -> bool:
    if call.kind not in ("edit", "write") or not same_path(call.path, ins.path, view.cwd):
        return False
    if isinstance(ins, Replace) and call.kind == "edit":
        old = call.input.get("old", call.input.get("old_string", call.input.get("old_str")))
        return old == ins.old
    return True


def _edit_step(view: View, ins: EditInstruction) -> ToolCall | str:
    """The next tool call for ``ins``, or (when it is finished or impossible) its report line."""
    done = next((c for c in view.calls if _matches(c, ins, view)), None)
    if done is not None:
        if done.is_error:
            return f"- Could not change `{ins.path}`: {_first_line(done.result)}"
        if isinstance(ins, Replace):
            return f'- Replaced "{_excerpt(ins.old, 60)}" with "{_excerpt(ins.new, 60)}" in `{ins.path}`.'
        return f"- Created `{ins.path}` ({len(ins.content)} characters)."
    write, edit = view.tool("write"), view.tool("edit")
    if isinstance(ins, Create):
        if write is None:
            return f"- Could not create `{ins.path}`: no write tool was offered."
        args = {
            write.key("path", "file_path"): _target(view, "write", ins.path),
            write.key("content"): ins.content,
        }
        return ToolCall(write.name, args, text=f"Creating {ins.path}.")
    read = next((c for c in view.calls if c.kind == "read" and same_path(c.path, ins.path, view.cwd)), None)
    if read is None and (view.tool("read") or (edit is None and view.tool("bash"))):
        call = _read_call(view, ins.path, text=f"Reading {ins.path} before editing it.")
        if call:
            return call
    if edit is not None:
        args = {
            edit.key("path", "file_path"): _target(view, "edit", ins.path),
            edit.key("old", "old_str", "old_string"): ins.old,
            edit.key("new", "new_str", "new_string"): ins.new,
        }
        return ToolCall(edit.name, args, text=f'Replacing "{_excerpt(ins.old, 40)}" in {ins.path}.')
    if read is None or read.is_error or write is None:
        reason = _first_line(read.result) if read is not None else "I could not read it"
        return f"- Could not change `{ins.path}`: {reason}"
    content = "\n".join(file_lines(read.result))
    if ins.old not in content:
        return f'- Could not change `{ins.path}`: "{_excerpt(ins.old, 60)}" is not in the file.'
    args = {
        write.key("path", "file_path"): _target(view, "write", ins.path),
        write.key("content"): content.replace(ins.old, ins.new, 1),
    }
    return ToolCall(write.name, args, text=f"Writing {ins.path} with the replacement.")
