"""The task-agent catalog: Markdown definitions (YAML frontmatter + a system-prompt body) -> ``AgentSpec``.

Search order (first name wins, later duplicates are recorded as shadowed):

1. ``<project>/agents``
2. ``<project>/.claude/agents`` (Claude Code subagent files; runner ``claude-code`` unless they say otherwise)
3. each folder of ``$AGENT_FLEET_AGENTS`` (``os.pathsep``-separated; relative ones are taken from the project)
4. ``$AGENT_FLEET_HOME/agents`` (home defaults to ``~/.agent-fleet``)
5. the built-in definitions shipped in this package (``builtin_agents/``)

A bad file becomes a ``DefinitionError`` in ``Catalog.problems`` and never hides the good ones.

Trust (trust.py): a file outside the built-ins is used only when a person trusted its exact bytes
(``agent-fleet trust FILE``). A new or changed file is an ``UntrustedDefinition`` problem, carrying the command to
run; it neither defines nor shadows anything, so an agent that writes ``agents/scout.md`` changes nothing the fleet
runs. The bytes that are hashed are the bytes that are parsed.
``load_catalog`` is called per request: it stats the folders and re-parses only files that changed.

``command`` items may use ``{definition_dir}`` (the absolute folder of the definition file) and ``{python}``
(the interpreter running the server); ``{{`` and ``}}`` are literal braces. The format: docs/catalog.md.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import shlex
import stat
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import cast

import yaml
from frontmatter.default_handlers import YAMLHandler
from pydantic import ValidationError

from agent_fleet_mcp import trust
from agent_fleet_mcp.errors import DefinitionError, InvalidRequest, NotFound, UntrustedDefinition
from agent_fleet_mcp.inputs import quote
from agent_fleet_mcp.permissions import readonly_problem
from agent_fleet_mcp.spec import ISOLATIONS, RUNNER_NAMES, AgentSpec, TaskAgentDefinition, inapplicable_limits

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
PERMISSIONS: tuple[str, ...] = ("readonly", "readwrite")
STRATEGIES: tuple[str, ...] = ("queue", "reject", "replace")
VISIBILITIES: tuple[str, ...] = ("public", "private")
FIELDS: tuple[str, ...] = (
    "name", "description", "tags", "runner", "model", "permission", "tools", "concurrency",
    "max_turns", "max_cost_usd", "max_tokens", "timeout_s", "visibility", "command", "isolation",
)  # fmt: skip
# Claude Code subagent keys we have no use for: ignored in .claude/agents files only (elsewhere: typos).
CLAUDE_CODE_IGNORED: frozenset[str] = frozenset(
    (
        "color",
        "hooks",
        "disallowedTools",
        "skills",
        "mcpServers",
        "memory",
        "background",
        "effort",
    )
)
# Claude Code keys we translate (ours win when both are given).
CLAUDE_CODE_MAPPED: tuple[str, ...] = ("permissionMode", "maxTurns")
CLAUDE_CODE_WRITE_MODES: frozenset[str] = frozenset(("acceptEdits", "bypassPermissions"))
PLACEHOLDERS: tuple[str, ...] = ("definition_dir", "python")
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SUGGEST_MAX_LISTED = 20

_FailFn = Callable[[str | None, str], DefinitionError]  # builds the error for one field of the current file


@dataclass(frozen=True)
class Catalog:
    """The loaded catalog. Treat it as read-only (``load_catalog`` hands out a fresh copy each call)."""

    definitions: dict[str, TaskAgentDefinition]
    problems: list[DefinitionError]
    shadowed: list[tuple[str, str, str]]  # (name, winner path, shadowed path)
    dirs: tuple[Path, ...] = field(default=())  # the folders searched, in order (missing ones included)

    def get(self, name: str) -> TaskAgentDefinition:
        """The definition called ``name`` (private ones too). Raises ``NotFound`` saying what exists, or
        ``InvalidRequest`` quoting the problem when the only file defining ``name`` is untrusted or broken."""
        found = self.definitions.get(name)
        if found is not None:
            return found
        for problem in self.problems:
            if problem.name == name:
                raise InvalidRequest(f"template {name!r} cannot be used: {problem}")
        public = sorted(n for n, d in self.definitions.items() if d.visibility == "public")
        if not public:
            raise NotFound(
                f"unknown template {quote(name)}; the task-agent catalog is empty: add Markdown definitions to "
                "<project>/agents (see docs/catalog.md)"
            )
        listed = ", ".join(public[:_SUGGEST_MAX_LISTED]) + (", ..." if len(public) > _SUGGEST_MAX_LISTED else "")
        raise NotFound(
            f"unknown template {quote(name)}{_did_you_mean(name, public)}; call list_task_agents to see the "
            f"{len(public)} available: {listed}"
        )

    @property
    def untrusted(self) -> list[UntrustedDefinition]:
        return [p for p in self.problems if isinstance(p, UntrustedDefinition)]

    def search(
        self, *, tags: Sequence[str] | None = None, query: str | None = None, include_private: bool = False
    ) -> list[TaskAgentDefinition]:
        """Definitions sorted by name. ``tags``: all must match (case-insensitive). ``query``:
        case-insensitive substring of the name, the description or a tag."""
        wanted = {t.strip().lower() for t in tags or () if t.strip()}
        needle = (query or "").strip().lower()
        out: list[TaskAgentDefinition] = []
        for name in sorted(self.definitions):
            d = self.definitions[name]
            if d.visibility == "private" and not include_private:
                continue
            own_tags = {t.lower() for t in d.tags}
            if not wanted <= own_tags:
                continue
            if needle and not (
                needle in d.name.lower() or needle in d.description.lower() or any(needle in t for t in own_tags)
            ):
                continue
            out.append(d)
        return out


# -------------------------------------------------------------------------------------------- search path


@functools.cache  # where the installed package is does not change while we run (each create_agent asked)
def builtin_agents_dir() -> Path:
    """The folder of the definitions shipped with the package (searched last)."""
    return Path(str(resources.files("agent_fleet_mcp") / "builtin_agents"))


def catalog_dirs(project_dir: Path, env: Mapping[str, str]) -> list[Path]:
    """The folders searched, in priority order, duplicates removed. Missing folders are listed but skipped."""
    project = project_dir.expanduser().absolute()
    dirs = [project / "agents", project / ".claude" / "agents"]
    for entry in env.get("AGENT_FLEET_AGENTS", "").split(os.pathsep):
        if entry.strip():
            dirs.append(_expand(entry.strip(), env, base=project))
    dirs.append(fleet_home(project_dir, env) / "agents")
    dirs.append(builtin_agents_dir())
    seen: set[object] = set()
    unique: list[Path] = []
    for d in dirs:
        key = _folder_key(d)
        if key not in seen:
            seen.add(key)
            unique.append(d)
    return unique


def fleet_home(project_dir: Path, env: Mapping[str, str]) -> Path:
    """``$AGENT_FLEET_HOME`` (relative: from the project) or ``~/.agent-fleet``: where the trust file lives."""
    project = project_dir.expanduser().absolute()
    home_entry = env.get("AGENT_FLEET_HOME", "").strip()
    return _expand(home_entry, env, base=project) if home_entry else _home(env) / ".agent-fleet"


def trust_command(path: str | Path) -> str:
    """The command a person runs to trust one file."""
    return f"agent-fleet trust {shlex.quote(str(path))}"


def _home(env: Mapping[str, str]) -> Path:
    return Path(env["HOME"]) if env.get("HOME") else Path.home()


def _expand(entry: str, env: Mapping[str, str], *, base: Path) -> Path:
    if entry == "~" or entry.startswith("~/"):
        return _home(env) / entry[2:]
    path = Path(entry).expanduser()
    return path if path.is_absolute() else base / path


def _folder_key(path: Path) -> object:
    """What makes two entries of the search path the same folder: its device and inode (one stat; the resolved path
    took a stat of every component of every folder, a third of each create_agent's CPU); for a missing folder its
    resolved path."""
    try:
        st = os.stat(path)
    except OSError:
        return _real(path)
    return (st.st_dev, st.st_ino)


def _real(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path


def is_claude_code_dir(path: Path) -> bool:
    """A ``.claude/agents`` folder holds Claude Code subagent files (project or ``~/.claude/agents``)."""
    return path.name == "agents" and path.parent.name == ".claude"


# -------------------------------------------------------------------------------------------- loading + cache

# A folder's listing: (file name, mtime_ns, size) of each candidate file, or None when the folder is missing.
_Listing = tuple[tuple[str, int, int], ...] | None
_CacheKey = tuple[tuple[tuple[Path, _Listing], ...], str | None]  # folders, trust file digest
_Parsed = TaskAgentDefinition | DefinitionError

_lock = threading.Lock()
_catalogs: dict[tuple[Path, ...], tuple[_CacheKey, Catalog]] = {}
_files: dict[tuple[Path, bool], tuple[tuple[int, int], _Parsed, str]] = {}  # ... -> (version, parsed, sha256)
_MAX_CATALOGS = 32
_MAX_FILES = 4096


def load_catalog(project_dir: Path, env: Mapping[str, str]) -> Catalog:
    """Load every definition on the search path. Cheap when nothing changed: it stats the folders and files
    and reuses the previous result; a changed file (mtime or size) is re-parsed alone."""
    dirs = tuple(catalog_dirs(project_dir, env))
    home = fleet_home(project_dir, env)
    key: _CacheKey = (tuple((d, _list_dir(d)) for d in dirs), trust.trust_version(home))
    with _lock:
        hit = _catalogs.get(dirs)
    if hit is not None and hit[0] == key:
        return _copy_of(hit[1])
    catalog = _assemble(key[0], trust.load_trusted(home))
    with _lock:
        if len(_catalogs) >= _MAX_CATALOGS:
            _catalogs.clear()
        _catalogs[dirs] = (key, catalog)
    return _copy_of(catalog)


def _copy_of(catalog: Catalog) -> Catalog:
    return Catalog(dict(catalog.definitions), list(catalog.problems), list(catalog.shadowed), catalog.dirs)


def clear_cache() -> None:
    """Forget every parsed file (tests; a long-lived process never needs it)."""
    with _lock:
        _catalogs.clear()
        _files.clear()


def _is_candidate(file_name: str) -> bool:
    return file_name.endswith(".md") and not file_name.startswith(("_", ".")) and file_name.lower() != "readme.md"


def _list_dir(directory: Path) -> _Listing:
    try:
        entries = list(os.scandir(directory))
    except OSError:  # missing, not a folder, unreadable
        return None
    files: list[tuple[str, int, int]] = []
    for entry in entries:
        if not _is_candidate(entry.name):
            continue
        try:
            st = entry.stat()  # follows symlinks
        except OSError:  # dangling symlink
            continue
        if stat.S_ISREG(st.st_mode):
            files.append((entry.name, st.st_mtime_ns, st.st_size))
    return tuple(sorted(files))


def _assemble(folders: tuple[tuple[Path, _Listing], ...], trusted: Mapping[str, trust.Trusted]) -> Catalog:
    definitions: dict[str, TaskAgentDefinition] = {}
    problems: list[DefinitionError] = []
    shadowed: list[tuple[str, str, str]] = []
    untrusted: list[tuple[Path, _Parsed, str, bool]] = []
    builtin = _real(builtin_agents_dir())
    for directory, listing in folders:
        if listing is None:
            continue
        claude_code = is_claude_code_dir(directory)
        is_builtin = _real(directory) == builtin
        for file_name, mtime_ns, size in listing:
            path = directory / file_name
            parsed, sha = _parse_cached(path, (mtime_ns, size), claude_code=claude_code)
            if not is_builtin:
                key = trust.file_key(path)
                if not trust.is_trusted(trusted, key, sha):
                    untrusted.append((path, parsed, sha, key in trusted))
                    continue
            if isinstance(parsed, DefinitionError):
                problems.append(parsed)
            elif parsed.name in definitions:
                shadowed.append((parsed.name, definitions[parsed.name].source, str(path)))
            else:
                definitions[parsed.name] = parsed
    for path, parsed, sha, changed in untrusted:
        problems.append(_untrusted(path, parsed, sha, changed=changed, definitions=definitions))
    return Catalog(definitions, problems, shadowed, tuple(d for d, _ in folders))


def _untrusted(
    path: Path, parsed: _Parsed, sha: str, *, changed: bool, definitions: Mapping[str, TaskAgentDefinition]
) -> UntrustedDefinition:
    name = parsed.name
    what = "changed since it was trusted" if changed else "new"
    message = f"not trusted ({what}): not used until you review it and run `{trust_command(path)}`"
    if name is not None and name in definitions:
        message += f"; meanwhile {name!r} is the one from {definitions[name].source}"
    return UntrustedDefinition(str(path), message, name=name, sha256=sha, changed=changed)


def _parse_cached(path: Path, version: tuple[int, int], *, claude_code: bool) -> tuple[_Parsed, str]:
    """The parsed file and the sha256 of exactly the bytes that were parsed."""
    with _lock:
        hit = _files.get((path, claude_code))
    if hit is not None and hit[0] == version:
        return hit[1], hit[2]
    parsed: _Parsed
    try:
        data = path.read_bytes()
    except OSError as e:
        data = b""
        parsed = DefinitionError(str(path), None, f"cannot read the file: {e}")
    else:
        try:
            parsed = parse_definition(path, claude_code=claude_code, data=data)
        except DefinitionError as e:
            parsed = e
    sha = trust.digest(data)
    with _lock:
        if len(_files) >= _MAX_FILES:
            _files.clear()
        _files[(path, claude_code)] = (version, parsed, sha)
    return parsed, sha


# -------------------------------------------------------------------------------------------- one file


def parse_definition(path: Path, *, claude_code: bool = False, data: bytes | None = None) -> TaskAgentDefinition:
    """Parse one definition file (``data``: its bytes, already read). ``claude_code``: a Claude Code subagent
    file (runner ``claude-code`` by default, Claude Code-only keys ignored). Raises ``DefinitionError`` naming
    the file and the field."""
    where = str(path)
    try:
        raw = path.read_bytes() if data is None else data
        text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # as read_text() would
    except (OSError, UnicodeDecodeError) as e:
        raise DefinitionError(where, None, f"cannot read the file: {e}") from e
    meta, body = _split_frontmatter(where, text)
    return _build(path, meta, body, claude_code=claude_code)


def _split_frontmatter(where: str, text: str) -> tuple[dict[str, object], str]:
    handler = YAMLHandler()
    text = text.removeprefix("\ufeff")
    stripped = text.lstrip()
    line_offset = text[: len(text) - len(stripped)].count("\n")
    if not handler.detect(stripped):
        raise DefinitionError(
            where,
            None,
            "no YAML frontmatter: the file must start with a '---' line, then `name: ...`, then '---'",
        )
    try:
        front, body = handler.split(stripped)
    except ValueError:
        raise DefinitionError(where, None, "the frontmatter is not closed: add a '---' line after it") from None
    try:
        data: object = handler.load(front)
    except yaml.YAMLError as e:
        raise DefinitionError(where, None, _yaml_message(e, line_offset)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DefinitionError(
            where,
            None,
            f"the frontmatter must be a mapping of `key: value` lines, not a {type(data).__name__}",
        )
    meta = {str(k): v for k, v in cast("dict[object, object]", data).items()}
    return meta, body


def _yaml_message(error: yaml.YAMLError, line_offset: int) -> str:
    if not isinstance(error, yaml.MarkedYAMLError):
        return f"invalid YAML frontmatter: {error}"
    message = error.problem or error.context or "invalid YAML"
    if error.problem and error.context:
        where = f" at line {error.context_mark.line + 1 + line_offset}" if error.context_mark else ""
        message += f" ({error.context}{where})"
    mark = error.problem_mark or error.context_mark
    at = f" at line {mark.line + 1 + line_offset}" if mark is not None else ""
    return f"invalid YAML frontmatter{at}: {message}"


def _build(path: Path, meta: dict[str, object], body: str, *, claude_code: bool) -> TaskAgentDefinition:
    where = str(path)
    known: list[str] = []  # the name, once it is valid

    def fail(field_name: str | None, message: str) -> DefinitionError:
        return DefinitionError(where, field_name, message, name=known[0] if known else None)

    allowed: set[str] = set(FIELDS)
    if claude_code:
        allowed |= set(CLAUDE_CODE_MAPPED) | CLAUDE_CODE_IGNORED
    for key in meta:
        if key not in allowed:
            raise fail(
                key,
                f"unknown field{_did_you_mean(key, FIELDS)}; known fields: {', '.join(FIELDS)} (see docs/catalog.md)",
            )

    name = meta.get("name")
    if name is None:
        raise fail("name", "required: every definition needs `name: <lowercase-name>`")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise fail(
            "name",
            f"{name!r} is not a valid name: use 1-63 lowercase letters, digits, '-' or '_', starting with a "
            "letter or digit",
        )
    known.append(name)
    description = _optional_str(fail, "description", meta.get("description")) or ""
    tags = _str_list(fail, "tags", meta.get("tags"))
    runner = _choice(fail, "runner", meta.get("runner"), RUNNER_NAMES) or (
        "claude-code" if claude_code else "anthropic"
    )
    model = _optional_str(fail, "model", meta.get("model"))
    if model is not None and model.strip().lower() in ("", "inherit"):
        model = None
    permission = _choice(fail, "permission", meta.get("permission"), PERMISSIONS)
    if permission is None and claude_code:
        mode = _optional_str(fail, "permissionMode", meta.get("permissionMode"))
        permission = "readwrite" if mode in CLAUDE_CODE_WRITE_MODES else None
    max_turns = _number(fail, "max_turns", meta.get("max_turns"), integer=True)
    if max_turns is None and claude_code:
        max_turns = _number(fail, "maxTurns", meta.get("maxTurns"), integer=True)

    spec_fields: dict[str, object] = {
        "runner": runner,
        "model": model,
        "system_prompt": body.strip(),
        "permission": permission or "readonly",
        "tools": _str_list(fail, "tools", meta.get("tools")),
        "concurrency": _concurrency(fail, meta.get("concurrency")),
        "max_turns": max_turns,
        "max_cost_usd": _number(fail, "max_cost_usd", meta.get("max_cost_usd")),
        "max_tokens": _number(fail, "max_tokens", meta.get("max_tokens"), integer=True),
        "timeout_s": _number(fail, "timeout_s", meta.get("timeout_s")),
        "command": _command(fail, meta.get("command"), runner=runner, definition_dir=_real(path.parent)),
        "template": name,
        "isolation": _choice(fail, "isolation", meta.get("isolation"), ISOLATIONS),
    }
    try:
        spec = AgentSpec.model_validate(spec_fields)
    except ValidationError as e:
        raise _from_validation(fail, e) from None
    if bad := inapplicable_limits(spec):
        raise fail(bad[0], f"does not apply to runner {spec.runner!r} (it reports no cost or tokens); remove it "
                   "and bound the agent with max_turns and timeout_s")  # fmt: skip
    if (problem := readonly_problem(spec)) is not None:
        raise fail("tools", problem)
    return TaskAgentDefinition.model_validate(
        {
            "name": name,
            "description": description.strip(),
            "tags": tags,
            "visibility": _choice(fail, "visibility", meta.get("visibility"), VISIBILITIES) or "public",
            "source": where,
            "spec": spec,
        }
    )


# -------------------------------------------------------------------------------------------- field checks


def _optional_str(fail: _FailFn, field_name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise fail(field_name, f"must be a string, got {value!r}")
    return value


def _choice(fail: _FailFn, field_name: str, value: object, choices: Sequence[str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value not in choices:
        hint = _did_you_mean(value, choices) if isinstance(value, str) else ""
        raise fail(field_name, f"must be one of {', '.join(choices)}, got {value!r}{hint}")
    return value


def _str_list(fail: _FailFn, field_name: str, value: object) -> tuple[str, ...]:
    """A YAML list of strings or one comma-separated string (``tools: Read, Grep``); deduplicated."""
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[object] = list(value.split(","))
    elif isinstance(value, list):
        items = list(cast("list[object]", value))
    else:
        raise fail(field_name, f"must be a list of strings (or a comma-separated string), got {value!r}")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise fail(field_name, f"every item must be a string, got {item!r}")
        item = item.strip()
        if item and item not in out:
            out.append(item)
    return tuple(out)


def _number(fail: _FailFn, field_name: str, value: object, *, integer: bool = False) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
        kind = "a whole number" if integer else "a number"
        raise fail(field_name, f"must be {kind}, got {value!r}")
    return value


def _concurrency(fail: _FailFn, value: object) -> dict[str, object]:
    """``concurrency: {strategy: queue, max_queued: 5}`` or the shorthand ``concurrency: reject``."""
    if value is None:
        return {}
    if isinstance(value, str):
        return {"strategy": _choice(fail, "concurrency.strategy", value, STRATEGIES)}
    if not isinstance(value, dict):
        raise fail("concurrency", f"must be a mapping like {{strategy: queue, max_queued: 5}}, got {value!r}")
    out: dict[str, object] = {}
    for k, v in cast("dict[object, object]", value).items():
        if k == "strategy":
            out["strategy"] = _choice(fail, "concurrency.strategy", v, STRATEGIES)
        elif k == "max_queued":
            out["max_queued"] = _number(fail, "concurrency.max_queued", v, integer=True)
        else:
            raise fail(f"concurrency.{k}", "unknown field; use `strategy` (queue|reject|replace) and `max_queued`")
    return {k: v for k, v in out.items() if v is not None}


def _command(fail: _FailFn, value: object, *, runner: str, definition_dir: Path) -> tuple[str, ...]:
    if value is None:
        if runner == "command":
            raise fail("command", 'required for `runner: command`: an argv list, e.g. ["{python}", "tool.py"]')
        return ()
    if runner != "command":
        raise fail("command", f"only used by `runner: command` (this definition's runner is {runner!r})")
    if isinstance(value, str):
        raise fail(
            "command",
            f"must be an argv list, not a string (nothing splits it into words): write "
            f"command: [{', '.join(repr(w) for w in value.split())}]",
        )
    if not isinstance(value, list) or not value:
        raise fail("command", f"must be a non-empty list of strings, got {value!r}")
    values = {"definition_dir": str(definition_dir), "python": sys.executable}
    argv: list[str] = []
    for item in cast("list[object]", value):
        if not isinstance(item, str) or not item:
            raise fail("command", f"every item must be a non-empty string, got {item!r}")
        argv.append(_expand_placeholders(fail, item, values))
    return tuple(argv)


def _expand_placeholders(fail: _FailFn, item: str, values: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        key = match.group(1)
        if key not in values:
            known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            raise fail(
                "command",
                f"unknown placeholder {token}{_did_you_mean(key, PLACEHOLDERS)}; known: {known} "
                "(write {{ and }} for literal braces)",
            )
        return values[key]

    return _PLACEHOLDER.sub(replace, item)


def _from_validation(fail: _FailFn, error: ValidationError) -> DefinitionError:
    first = error.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    return fail(loc or None, f"{first['msg']}, got {first.get('input')!r}")


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
