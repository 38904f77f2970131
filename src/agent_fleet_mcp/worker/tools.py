"""The worker's built-in tools: read_file, list_files, grep (always) and write_file, edit_file, bash (readwrite only).

File tools are confined to the agent's cwd (paths.Sandbox). Every failure the model can fix becomes a ``ToolError``
and an ``is_error`` tool_result with a message saying what to do; a tool never crashes the worker. Outputs are
capped so one call cannot flood the context. ``bash`` is NOT a sandbox: it runs any command in cwd, which is why
only readwrite agents get it. Where the machine allows it each command runs in its own user + PID namespace with
its own locked /proc (runners/containment.py): everything it starts ends when the command returns, and it cannot
see the worker (nor read its API key through /proc). Elsewhere its process group is killed on timeout and when the
call ends (a double-forked child that left the group escapes that).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_fleet_mcp.runners import cgroups, containment
from agent_fleet_mcp.worker.paths import Sandbox, ToolError, glob_to_regex

READ_TOOLS: tuple[str, ...] = ("read_file", "list_files", "grep")
WRITE_TOOLS: tuple[str, ...] = ("write_file", "edit_file", "bash")
ALL_TOOLS: tuple[str, ...] = READ_TOOLS + WRITE_TOOLS

MAX_OUTPUT_CHARS = 40_000  # any tool result
READ_MAX_LINES = 2_000
LINE_MAX_CHARS = 2_000
LIST_MAX_FILES = 500
GREP_MAX_MATCHES = 200
GREP_LINE_CHARS = 300
GREP_MAX_FILE_BYTES = 5_000_000
BASH_DEFAULT_TIMEOUT_S = 60
BASH_MAX_TIMEOUT_S = 600
BASH_HEAD_CHARS = 8_000
BASH_TAIL_CHARS = 24_000
# Never handed to commands the model runs: the worker's own credentials and fleet settings.
BASH_ENV_DROP_PREFIXES: tuple[str, ...] = ("ANTHROPIC_", "AGENT_FLEET_", "CLAUDE")

_PATH_PROP = {"type": "string", "description": "Path relative to the working directory."}
DEFINITIONS: dict[str, dict[str, Any]] = {
    "read_file": {
        "description": (
            f"Read a text file; returns numbered lines (at most {READ_MAX_LINES} per call). "
            "Use start_line/end_line (1-based, inclusive) to read a large file in parts."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "path": _PATH_PROP,
                "start_line": {"type": "integer", "minimum": 1},
                "end_line": {"type": "integer", "minimum": 1},
            },
            "required": ["path"],
        },
    },
    "list_files": {
        "description": (
            "List files matching a glob relative to the working directory, e.g. '**/*.py' (recursive) or "
            f"'src/*.ts'. Skips .git, node_modules, .venv. At most {LIST_MAX_FILES} paths."
        ),
        "input_schema": {
            "type": "object",
            "properties": {"pattern": {"type": "string", "default": "**/*"}},
        },
    },
    "grep": {
        "description": (
            "Search file contents with a Python regular expression; returns file:line:text "
            f"(at most {GREP_MAX_MATCHES} matches). `path` is a file or directory (default '.'), `glob` filters "
            "file names (e.g. '*.py')."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "pattern": {"type": "string"},
                "path": {**_PATH_PROP, "default": "."},
                "glob": {"type": "string"},
            },
            "required": ["pattern"],
        },
    },
    "write_file": {
        "description": "Create or overwrite a text file with `content` (parent directories are created).",
        "input_schema": {
            "type": "object",
            "properties": {"path": _PATH_PROP, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    },
    "edit_file": {
        "description": (
            "Replace the exact text `old` with `new` in a file. `old` must occur exactly once: include enough "
            "surrounding lines to make it unique (whitespace matters)."
        ),
        "input_schema": {
            "type": "object",
            "properties": {"path": _PATH_PROP, "old": {"type": "string"}, "new": {"type": "string"}},
            "required": ["path", "old", "new"],
        },
    },
    "bash": {
        "description": (
            "Run a shell command (bash -c) in the working directory; returns combined stdout/stderr (capped) and "
            f"the exit code. Killed after timeout_s (default {BASH_DEFAULT_TIMEOUT_S}, max {BASH_MAX_TIMEOUT_S}). "
            "Background processes do not outlive the call."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "command": {"type": "string"},
                "timeout_s": {"type": "integer", "minimum": 1, "maximum": BASH_MAX_TIMEOUT_S},
            },
            "required": ["command"],
        },
    },
}


def select_tools(permission: str, only: list[str] | None) -> tuple[list[str], list[str]]:
    """(tools this agent gets, names of ``only`` that were dropped because readonly forbids them).

    Unknown names raise ``ValueError``. ``only=None`` means every tool the permission allows.
    """
    allowed = list(ALL_TOOLS if permission == "readwrite" else READ_TOOLS)
    if only is None:
        return allowed, []
    unknown = [n for n in only if n not in ALL_TOOLS]
    if unknown:
        raise ValueError(f"unknown tool(s) {', '.join(unknown)}; available: {', '.join(ALL_TOOLS)}")
    return [n for n in allowed if n in only], [n for n in only if n not in allowed]


def tool_definitions(names: list[str]) -> list[dict[str, Any]]:
    return [{"name": n, **DEFINITIONS[n]} for n in names]


@dataclass(frozen=True)
class CallInfo:
    """How a call is shown in the transcript (the `tool_use` event)."""

    summary: str
    reads: list[str] = field(default_factory=list[str])
    writes: list[str] = field(default_factory=list[str])


@dataclass(frozen=True)
class ToolOutput:
    text: str
    is_error: bool = False


def _get_str(args: Mapping[str, Any], key: str, *, default: str | None = None) -> str:
    value = args.get(key, default)
    if value is None:
        raise ToolError(f"missing required argument {key!r}")
    if not isinstance(value, str):
        raise ToolError(f"argument {key!r} must be a string, got {type(value).__name__}")
    return value


def _get_int(args: Mapping[str, Any], key: str) -> int | None:
    value = args.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ToolError(f"argument {key!r} must be an integer")
    try:
        return int(value)
    except ValueError:
        raise ToolError(f"argument {key!r} must be an integer, got {value!r}") from None


def _short(text: str, limit: int = 100) -> str:
    """The first line of ``text``, at most ``limit`` chars; "…" marks anything left out."""
    lines = text.strip().splitlines() or [""]
    line = lines[0]
    if len(line) > limit:
        return line[: limit - 1] + "…"
    return line + (" …" if len(lines) > 1 else "")


def cap(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… [output truncated: {len(text) - limit} more chars]"


def _is_binary(path: Path) -> bool:
    with open(path, "rb") as f:
        return b"\x00" in f.read(8192)


class Toolbox:
    """The tools one agent may use, bound to its sandboxed cwd."""

    def __init__(self, sandbox: Sandbox, names: list[str], *, env: Mapping[str, str] | None = None) -> None:
        self.sandbox = sandbox
        self.names = names
        base_env = os.environ if env is None else env
        self.bash_env = {k: v for k, v in base_env.items() if not k.startswith(BASH_ENV_DROP_PREFIXES)}
        self._mode_env = {containment.MODE_ENV: base_env.get(containment.MODE_ENV, "")}
        self._commands = 0

    def bash_argv(self, command: str, cgroup: Path | None = None) -> list[str]:
        """``bash -c command``, inside a namespace of its own when the machine allows it, else in ``cgroup``."""
        boundary = containment.choose(self._mode_env)
        prefix = containment.namespace_prefix(boundary.unshare) if boundary.unshare else []
        if not prefix and cgroup is not None:
            prefix = ["/bin/sh", "-c", '{ echo $$ > "$0/cgroup.procs"; } 2>/dev/null; exec "$@"', str(cgroup)]
        return [*prefix, "/bin/bash", "-c", command]

    def command_cgroup(self) -> Path | None:
        """A cgroup for one bash command below the turn's (cgroup mode without namespaces), or None."""
        boundary = containment.choose(self._mode_env)
        if boundary.unshare is not None or boundary.cgroup_base is None:
            return None
        turn = cgroups.own_turn_cgroup()
        if turn is None:
            return None
        self._commands += 1
        cg = turn / f"cmd-{os.getpid()}-{self._commands}"
        return cg if cgroups.create(cg) else None

    def definitions(self) -> list[dict[str, Any]]:
        return tool_definitions(self.names)

    def describe(self, name: str, args: Mapping[str, Any]) -> CallInfo:
        """Summary and touched paths of a call, for the transcript. Never raises."""
        try:
            return self._describe(name, args)
        except Exception:  # a summary is cosmetic: odd input must not break the turn
            return CallInfo(name)

    def _describe(self, name: str, args: Mapping[str, Any]) -> CallInfo:
        d = self.sandbox.display

        def s(key: str, default: str = "") -> str:
            v = args.get(key, default)
            return v if isinstance(v, str) else str(v)

        if name == "read_file":
            rng = ""
            if args.get("start_line") or args.get("end_line"):
                rng = f":{args.get('start_line') or 1}-{args.get('end_line') or ''}"
            return CallInfo(f"read {d(s('path'))}{rng}", reads=[d(s("path"))])
        if name == "list_files":
            return CallInfo(f"list {s('pattern', '**/*')}")
        if name == "grep":
            where = d(s("path", ".") or ".")
            with contextlib.suppress(ToolError, OSError, RuntimeError):
                if where != "." and self.sandbox.resolve(s("path", ".")).is_dir():
                    where += "/"
            glob = f" ({s('glob')})" if args.get("glob") else ""
            return CallInfo(f"grep {_short(s('pattern'), 60)!r} in {where}{glob}", reads=[where.rstrip("/") or "."])
        if name == "write_file":
            return CallInfo(f"write {d(s('path'))} ({len(s('content'))} chars)", writes=[d(s("path"))])
        if name == "edit_file":
            return CallInfo(f"edit {d(s('path'))}", writes=[d(s("path"))])
        if name == "bash":
            return CallInfo(f"$ {_short(s('command'))}")
        return CallInfo(name)

    def run(self, name: str, args: Mapping[str, Any]) -> ToolOutput:
        """Execute one call. Tool errors and unexpected exceptions become an error output; signals propagate."""
        if name not in self.names:
            return ToolOutput(f"unknown tool {name!r}; available: {', '.join(self.names)}", is_error=True)
        if not isinstance(args, Mapping):  # pyright: ignore[reportUnnecessaryIsInstance]
            return ToolOutput("tool input must be a JSON object", is_error=True)
        try:
            out = getattr(self, f"_{name}")(args)
        except ToolError as exc:
            return ToolOutput(f"error: {exc}", is_error=True)
        except (OSError, ValueError, RuntimeError, UnicodeError, re.error) as exc:
            return ToolOutput(f"error: {type(exc).__name__}: {exc}", is_error=True)
        assert isinstance(out, ToolOutput)
        return ToolOutput(cap(out.text) or "(no output)", out.is_error)

    # -- read tools -------------------------------------------------------------------------------------------

    def _read_file(self, args: Mapping[str, Any]) -> ToolOutput:
        raw = _get_str(args, "path")
        path = self.sandbox.resolve(raw)
        if not path.exists():
            raise ToolError(f"{raw} does not exist; use list_files to find the right path")
        if path.is_dir():
            raise ToolError(f"{raw} is a directory; use list_files with pattern '{self.sandbox.rel(path)}/*'")
        if not path.is_file():
            raise ToolError(f"{raw} is not a regular file (device, socket or pipe)")
        if _is_binary(path):
            raise ToolError(f"{raw} is a binary file ({path.stat().st_size} bytes); it cannot be shown as text")
        start = max(_get_int(args, "start_line") or 1, 1)
        end = _get_int(args, "end_line")
        last = start + READ_MAX_LINES - 1 if end is None else min(end, start + READ_MAX_LINES - 1)
        if end is not None and end < start:
            raise ToolError(f"end_line ({end}) is before start_line ({start})")
        out: list[str] = []
        size = 0
        total = 0
        stopped_at: int | None = None
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            for total, line in enumerate(f, 1):
                if total < start or total > last or stopped_at is not None:
                    continue
                line = line.rstrip("\r\n")
                if len(line) > LINE_MAX_CHARS:
                    line = line[:LINE_MAX_CHARS] + f"… [{len(line) - LINE_MAX_CHARS} more chars]"
                entry = f"{total:6}\t{line}"
                if size + len(entry) > MAX_OUTPUT_CHARS - 500:
                    stopped_at = total
                    continue
                out.append(entry)
                size += len(entry) + 1
        if total == 0:
            return ToolOutput(f"({raw} is empty)")
        if start > total:
            raise ToolError(f"start_line {start} is past the end of {raw} ({total} lines)")
        shown_to = (stopped_at - 1) if stopped_at is not None else min(last, total)
        text = "\n".join(out)
        if shown_to < total:
            text += (
                f"\n… [{raw} has {total} lines; showed {start}-{shown_to}. Read more with start_line={shown_to + 1}]"
            )
        return ToolOutput(text)

    def _pattern_regex(self, pattern: str) -> re.Pattern[str]:
        pattern = pattern.strip() or "**/*"
        if pattern.startswith("/") or ".." in Path(pattern).parts:
            raise ToolError(
                f"pattern {pattern!r} refused: patterns are relative to the working directory and cannot use '..'"
            )
        return glob_to_regex(pattern.removeprefix("./"))

    def _list_files(self, args: Mapping[str, Any]) -> ToolOutput:
        pattern = _get_str(args, "pattern", default="**/*")
        regex = self._pattern_regex(pattern)
        # Walk only below the pattern's literal directory prefix ("src/**/*.py" walks src/).
        literal: list[str] = []
        for part in Path(pattern.strip().removeprefix("./")).parts[:-1]:
            if any(ch in part for ch in "*?["):
                break
            literal.append(part)
        top = self.sandbox.resolve(os.path.join(".", *literal)) if literal else self.sandbox.root
        if not top.is_dir():
            return ToolOutput(f"no files match {pattern!r} ({'/'.join(literal)} is not a directory)")
        found = sorted(rel for p in self.sandbox.walk_files(top) if regex.match(rel := self.sandbox.rel(p)))
        matches, more = found[:LIST_MAX_FILES], max(0, len(found) - LIST_MAX_FILES)
        if not matches:
            hint = " (patterns without '/' match only the top directory; try '**/" + pattern + "')"
            return ToolOutput(f"no files match {pattern!r}" + (hint if "/" not in pattern else ""))
        text = "\n".join(matches)
        if more:
            text += f"\n… and {more} more files (use a narrower pattern)"
        return ToolOutput(text)

    def _grep(self, args: Mapping[str, Any]) -> ToolOutput:
        pattern = _get_str(args, "pattern")
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ToolError(f"invalid regular expression {pattern!r}: {exc}") from None
        raw_path = _get_str(args, "path", default=".") or "."
        top = self.sandbox.resolve(raw_path)
        if not top.exists():
            raise ToolError(f"{raw_path} does not exist")
        glob = args.get("glob")
        name_re: re.Pattern[str] | None = None
        if glob:
            if not isinstance(glob, str):
                raise ToolError("argument 'glob' must be a string")
            name_re = self._pattern_regex(glob)
        hits: list[str] = []
        more = 0
        for p in self.sandbox.walk_files(top):
            rel = self.sandbox.rel(p)
            if name_re is not None and not name_re.match(rel if "/" in str(glob) else p.name):
                continue
            try:
                if not p.is_file() or p.stat().st_size > GREP_MAX_FILE_BYTES or _is_binary(p):
                    continue
                with open(p, encoding="utf-8", errors="replace") as f:
                    for n, line in enumerate(f, 1):
                        if regex.search(line):
                            if len(hits) >= GREP_MAX_MATCHES:
                                more += 1
                                continue
                            text = line.rstrip("\r\n")
                            if len(text) > GREP_LINE_CHARS:
                                text = text[:GREP_LINE_CHARS] + "…"
                            hits.append(f"{rel}:{n}:{text}")
            except OSError:
                continue
        if not hits:
            return ToolOutput(f"no matches for {pattern!r} in {raw_path}")
        text = "\n".join(hits)
        if more:
            text += f"\n… and {more} more matches (narrow the pattern, path or glob)"
        return ToolOutput(text)

    # -- write tools ------------------------------------------------------------------------------------------

    def _write_file(self, args: Mapping[str, Any]) -> ToolOutput:
        raw = _get_str(args, "path")
        content = _get_str(args, "content")
        path = self.sandbox.resolve(raw)
        existed = path.exists()
        if existed and not path.is_file():
            raise ToolError(f"{raw} exists and is not a regular file (a directory, device or pipe)")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        lines = content.count("\n") + (1 if content and not content.endswith("\n") else 0)
        verb = "overwrote" if existed else "created"
        return ToolOutput(f"{verb} {self.sandbox.rel(path)} ({lines} lines, {len(content)} chars)")

    def _edit_file(self, args: Mapping[str, Any]) -> ToolOutput:
        raw = _get_str(args, "path")
        old = _get_str(args, "old")
        new = _get_str(args, "new")
        path = self.sandbox.resolve(raw)
        if not path.is_file():
            raise ToolError(f"{raw} does not exist or is not a file; use write_file to create it")
        if not old:
            raise ToolError("`old` is empty; give the exact text to replace (use write_file for a new file)")
        if old == new:
            raise ToolError("`old` and `new` are identical: nothing to change")
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
        count = text.count(old)
        if count == 0:
            raise ToolError(
                f"`old` text not found in {raw}; read_file it and copy the exact text (whitespace and "
                "indentation matter)"
            )
        if count > 1:
            raise ToolError(
                f"`old` text occurs {count} times in {raw}; include more surrounding lines so it occurs once"
            )
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text.replace(old, new, 1))
        line = text[: text.index(old)].count("\n") + 1
        delta = new.count("\n") - old.count("\n")
        return ToolOutput(f"edited {self.sandbox.rel(path)} at line {line} ({delta:+d} lines)")

    def _bash(self, args: Mapping[str, Any]) -> ToolOutput:
        command = _get_str(args, "command")
        if not command.strip():
            raise ToolError("command is empty")
        timeout = _get_int(args, "timeout_s") or BASH_DEFAULT_TIMEOUT_S
        timeout = min(max(timeout, 1), BASH_MAX_TIMEOUT_S)
        started = time.monotonic()
        cgroup = self.command_cgroup()
        with tempfile.TemporaryFile() as out:
            proc = subprocess.Popen(
                self.bash_argv(command, cgroup),
                cwd=self.sandbox.root,
                env=self.bash_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            timed_out = False
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    _kill_group(proc.pid, signal.SIGKILL)
                    proc.wait()
            finally:
                # Background leftovers and an interrupted call (worker cancelled) both end with the group.
                _kill_group(proc.pid, signal.SIGKILL)
                if cgroup is not None:  # and whatever left the group: setsid, double fork
                    cgroups.kill(cgroup)
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            output = _head_tail(out)
        elapsed = time.monotonic() - started
        if timed_out:
            return ToolOutput(f"{output}\n[timed out after {timeout}s: the command was killed]", is_error=True)
        code = proc.returncode
        status = f"[exit code {code}]" if code >= 0 else f"[killed by signal {-code}]"
        return ToolOutput(f"{output}\n{status} ({elapsed:.1f}s)".lstrip("\n"), is_error=code != 0)


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _head_tail(f: Any) -> str:
    """The start and end of a captured output file, with the middle elided."""
    size = f.seek(0, os.SEEK_END)
    f.seek(0)
    if size <= BASH_HEAD_CHARS + BASH_TAIL_CHARS:
        return f.read().decode("utf-8", errors="replace").rstrip("\n")
    head = f.read(BASH_HEAD_CHARS).decode("utf-8", errors="replace")
    f.seek(size - BASH_TAIL_CHARS)
    tail = f.read().decode("utf-8", errors="replace")
    return f"{head}\n… [{size - BASH_HEAD_CHARS - BASH_TAIL_CHARS} bytes elided]\n{tail}".rstrip("\n")
