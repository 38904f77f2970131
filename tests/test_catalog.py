"""The task-agent catalog: parsing, search order, problems, placeholders, search, lookup and the cache."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent_fleet_mcp import catalog as catalog_mod
from agent_fleet_mcp.catalog import (
    Catalog,
    builtin_agents_dir,
    catalog_dirs,
    fleet_home,
    load_catalog,
    parse_definition,
)
from agent_fleet_mcp.errors import DefinitionError, NotFound
from agent_fleet_mcp.trust import trust_files

REPO = Path(__file__).resolve().parent.parent
FIXTURE_AGENTS = REPO / "tests" / "agents"
BUILTINS = ("builder", "code-reviewer", "planner", "researcher", "scout", "test-writer")
FIXTURES = (
    "delegator", "echo", "failer", "gate", "hanger", "hanger-timeout", "sleeper", "sleeper-reject", "sleeper-replace",
    "spawner", "stubborn", "tally",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    catalog_mod.clear_cache()
    yield
    catalog_mod.clear_cache()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    p = tmp_path / "project"
    p.mkdir()
    return p


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A hermetic environment: home and fleet home inside tmp_path."""
    return {"HOME": str(tmp_path / "home"), "AGENT_FLEET_HOME": str(tmp_path / "fleet-home")}


def write_def(folder: Path, file_name: str, body: str = "You are a test agent.", **fields: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name
    path.write_text(f"---\n{yaml.safe_dump(fields, sort_keys=False)}---\n{body}\n", encoding="utf-8")
    return path


def write_raw(folder: Path, file_name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name
    path.write_text(text, encoding="utf-8")
    return path


def load(project: Path, env: dict[str, str]) -> Catalog:
    """``load_catalog`` once every file on the search path is trusted, as a person does with `agent-fleet trust`
    (these tests are about parsing and the search order; trust has its own tests in security/)."""
    untrusted = load_catalog(project, env).untrusted
    if untrusted:
        trust_files(fleet_home(project, env), [Path(u.path) for u in untrusted])
    return load_catalog(project, env)


def problem_for(cat: Catalog, path: Path) -> DefinitionError:
    matches = [p for p in cat.problems if p.path == str(path)]
    assert len(matches) == 1, cat.problems
    return matches[0]


# ------------------------------------------------------------------------------------------------ shipped files


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_definition_parses_with_sane_settings(name: str) -> None:
    d = parse_definition(builtin_agents_dir() / f"{name}.md")
    assert d.name == name
    assert d.spec.template == name
    assert d.spec.runner == "anthropic"
    assert d.spec.model in ("claude-sonnet-5-5", "claude-haiku-5-5")
    assert d.visibility == "public"
    assert len(d.description) > 40
    assert d.tags
    assert d.spec.max_turns is not None and 10 <= d.spec.max_turns <= 100
    assert d.spec.max_cost_usd is not None and 0 < d.spec.max_cost_usd <= 10
    assert d.spec.timeout_s is not None and 60 <= d.spec.timeout_s <= 3600
    assert d.spec.command == ()
    lines = d.spec.system_prompt.splitlines()
    assert 25 <= len(lines) <= 60
    assert d.spec.system_prompt == d.spec.system_prompt.strip()
    assert "## Output" in d.spec.system_prompt


def test_builtin_definitions_have_their_roles() -> None:
    defs = {n: parse_definition(builtin_agents_dir() / f"{n}.md") for n in BUILTINS}
    reviewer = defs["code-reviewer"]
    assert reviewer.spec.permission == "readonly"
    assert {"code-review", "quality"} <= set(reviewer.tags)
    assert (reviewer.spec.concurrency.strategy, reviewer.spec.concurrency.max_queued) == ("queue", 5)
    scout = defs["scout"]
    assert scout.spec.model == "claude-haiku-5-5"
    assert scout.spec.permission == "readonly"
    assert {"search", "context"} <= set(scout.tags)
    assert scout.spec.concurrency.strategy == "queue"
    assert defs["builder"].spec.permission == "readwrite"
    assert defs["builder"].spec.concurrency.strategy == "reject"
    assert defs["test-writer"].spec.permission == "readwrite"
    assert defs["planner"].spec.permission == "readonly"
    assert defs["researcher"].spec.permission == "readonly"


def test_fresh_project_gets_the_builtins(project: Path, env: dict[str, str]) -> None:
    cat = load(project, env)
    assert sorted(cat.definitions) == sorted(BUILTINS)
    assert cat.problems == []
    assert cat.shadowed == []
    assert cat.dirs[-1] == builtin_agents_dir()


def test_repo_agents_folder_holds_only_the_readme(env: dict[str, str]) -> None:
    assert [p.name for p in (REPO / "agents").iterdir()] == ["README.md"]
    cat = load(REPO, env)
    assert cat.problems == []
    assert all(d.source.startswith(str(builtin_agents_dir())) for d in cat.definitions.values())


def test_fixture_definitions_load_and_point_at_existing_scripts(project: Path, env: dict[str, str]) -> None:
    cat = load(project, {**env, "AGENT_FLEET_AGENTS": str(FIXTURE_AGENTS)})
    assert cat.problems == []
    assert set(FIXTURES) <= set(cat.definitions)
    for name in FIXTURES:
        spec = cat.get(name).spec
        assert spec.runner == "command"
        assert spec.command[0] == sys.executable
        assert Path(spec.command[1]).is_file(), spec.command
    assert cat.get("sleeper").spec.concurrency.max_queued == 2
    assert cat.get("sleeper-reject").spec.concurrency.strategy == "reject"
    assert cat.get("sleeper-replace").spec.concurrency.strategy == "replace"
    assert cat.get("hanger").spec.timeout_s is None
    assert cat.get("hanger-timeout").spec.timeout_s == 1.5


def test_echo_fixture_runs_from_any_cwd(tmp_path: Path) -> None:
    spec = parse_definition(FIXTURE_AGENTS / "echo.md").spec
    done = subprocess.run(
        list(spec.command), input="hello fleet", capture_output=True, text=True, cwd=tmp_path, timeout=30
    )
    assert done.returncode == 0
    assert done.stdout.strip() == "echo: hello fleet"


def test_failer_fixture_exits_3_with_boom(tmp_path: Path) -> None:
    spec = parse_definition(FIXTURE_AGENTS / "failer.md").spec
    done = subprocess.run(
        list(spec.command), input="bad input", capture_output=True, text=True, cwd=tmp_path, timeout=30
    )
    assert done.returncode == 3
    assert "boom: bad input" in done.stderr
    assert "working 1/3" in done.stdout


# ------------------------------------------------------------------------------------------------ fields


def test_every_field(tmp_path: Path) -> None:
    path = write_def(
        tmp_path,
        "full.md",
        body="\n\n  Line one.\nLine two.\n\n",
        name="full-agent_1",
        description="  Does everything.  ",
        tags=["alpha", "Beta"],
        runner="codex",
        model="gpt-5-codex",
        permission="readwrite",
        tools=["read_file", "bash"],
        concurrency={"strategy": "replace", "max_queued": 7},
        max_turns=12,
        max_cost_usd=1.5,
        timeout_s=30,
        visibility="private",
    )
    d = parse_definition(path)
    assert d.name == "full-agent_1"
    assert d.description == "Does everything."
    assert d.tags == ("alpha", "Beta")
    assert d.visibility == "private"
    assert d.source == str(path)
    s = d.spec
    assert (s.runner, s.model, s.permission) == ("codex", "gpt-5-codex", "readwrite")
    assert s.tools == ("read_file", "bash")
    assert (s.concurrency.strategy, s.concurrency.max_queued) == ("replace", 7)
    assert (s.max_turns, s.max_cost_usd, s.timeout_s) == (12, 1.5, 30.0)
    assert s.system_prompt == "Line one.\nLine two."
    assert s.template == "full-agent_1"
    assert s.command == ()


def test_defaults(tmp_path: Path) -> None:
    d = parse_definition(write_def(tmp_path, "min.md", name="minimal"))
    assert (d.description, d.tags, d.visibility) == ("", (), "public")
    s = d.spec
    assert (s.runner, s.model, s.permission, s.tools) == ("anthropic", None, "readonly", ())
    assert (s.concurrency.strategy, s.concurrency.max_queued) == ("queue", 5)
    assert (s.max_turns, s.max_cost_usd, s.timeout_s) == (None, None, None)
    assert s.system_prompt == "You are a test agent."


@pytest.mark.parametrize(
    ("tools", "expected"),
    [
        (["read_file", "grep"], ("read_file", "grep")),
        ("read_file, grep", ("read_file", "grep")),
        ("Read,Grep, Glob ,Read", ("Read", "Grep", "Glob")),
        ([], ()),
    ],
)
def test_tools_as_list_or_comma_string(tmp_path: Path, tools: object, expected: tuple[str, ...]) -> None:
    d = parse_definition(write_def(tmp_path, "t.md", name="t", permission="readwrite", tools=tools))
    assert d.spec.tools == expected


def test_tags_as_comma_string(tmp_path: Path) -> None:
    assert parse_definition(write_def(tmp_path, "t.md", name="t", tags="a, b")).tags == ("a", "b")


def test_concurrency_shorthand_string(tmp_path: Path) -> None:
    d = parse_definition(write_def(tmp_path, "c.md", name="c", concurrency="reject"))
    assert d.spec.concurrency.strategy == "reject"


def test_model_inherit_means_default(tmp_path: Path) -> None:
    assert parse_definition(write_def(tmp_path, "m.md", name="m", model="inherit")).spec.model is None


def test_empty_body_is_an_empty_system_prompt(tmp_path: Path) -> None:
    path = write_raw(tmp_path, "e.md", "---\nname: e\n---\n")
    assert parse_definition(path).spec.system_prompt == ""


def test_leading_blank_lines_and_bom_are_tolerated(tmp_path: Path) -> None:
    path = write_raw(tmp_path, "b.md", "\ufeff\n\n---\nname: b\n---\nbody\n")
    assert parse_definition(path).spec.system_prompt == "body"


def test_horizontal_rule_in_body_is_kept(tmp_path: Path) -> None:
    path = write_raw(tmp_path, "h.md", "---\nname: h\n---\nabove\n\n---\n\nbelow\n")
    assert parse_definition(path).spec.system_prompt == "above\n\n---\n\nbelow"


# ------------------------------------------------------------------------------------------------ bad files


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        ("---\nname: x\ndescription: [oops\n---\nbody\n", None, "invalid YAML frontmatter at line"),
        ("---\ndescription: no name\n---\nbody\n", "name", "required"),
        ("---\nname: Bad Name\n---\n", "name", "not a valid name"),
        ("---\nname: 42\n---\n", "name", "not a valid name"),
        (f"---\nname: {'a' * 64}\n---\n", "name", "not a valid name"),
        ("---\nname: x\nrunner: antropic\n---\n", "runner", "did you mean 'anthropic'"),
        ("---\nname: x\npermission: write\n---\n", "permission", "readonly, readwrite"),
        ("---\nname: x\nvisibility: hidden\n---\n", "visibility", "public, private"),
        ("---\nname: x\nmodle: claude\n---\n", "modle", "did you mean 'model'"),
        ("---\nname: x\ncolor: red\n---\n", "color", "unknown field"),
        ("---\nname: x\ntags: 3\n---\n", "tags", "list of strings"),
        ("---\nname: x\ntools: [read_file, 3]\n---\n", "tools", "must be a string"),
        ("---\nname: x\ndescription: [a]\n---\n", "description", "must be a string"),
        ("---\nname: x\nmodel: 4\n---\n", "model", "must be a string"),
        ("---\nname: x\nmax_turns: true\n---\n", "max_turns", "whole number"),
        ("---\nname: x\nmax_turns: 2.5\n---\n", "max_turns", "whole number"),
        ("---\nname: x\nmax_turns: 0\n---\n", "max_turns", "greater than or equal to 1"),
        ("---\nname: x\nmax_cost_usd: cheap\n---\n", "max_cost_usd", "must be a number"),
        ("---\nname: x\ntimeout_s: -1\n---\n", "timeout_s", "greater than 0"),
        ("---\nname: x\nconcurrency: queu\n---\n", "concurrency.strategy", "did you mean 'queue'"),
        ("---\nname: x\nconcurrency: {strategy: queue, max: 3}\n---\n", "concurrency.max", "unknown field"),
        ("---\nname: x\nconcurrency: {max_queued: 500}\n---\n", "concurrency.max_queued", "less than or equal"),
        ("---\nname: x\nconcurrency: [queue]\n---\n", "concurrency", "must be a mapping"),
        ("---\nname: x\nrunner: command\n---\n", "command", "required for `runner: command`"),
        ("---\nname: x\ncommand: [echo]\n---\n", "command", "only used by `runner: command`"),
        ("---\nname: x\nrunner: command\ncommand: []\n---\n", "command", "non-empty list"),
        ("---\nname: x\nrunner: command\ncommand: [echo, '']\n---\n", "command", "non-empty string"),
        ("no frontmatter here\n", None, "no YAML frontmatter"),
        ("---\nname: x\nbody without a closing line\n", None, "not closed"),
        ("---\n- a\n- b\n---\nbody\n", None, "must be a mapping"),
    ],
)
def test_bad_file_is_reported_with_field_and_good_ones_still_load(
    project: Path, env: dict[str, str], text: str, field: str | None, fragment: str
) -> None:
    agents = project / "agents"
    bad = write_raw(agents, "bad.md", text)
    write_def(agents, "good.md", name="good")
    cat = load(project, env)
    assert "good" in cat.definitions
    problem = problem_for(cat, bad)
    assert problem.field == field
    assert fragment in problem.message
    assert str(bad) in str(problem)
    with pytest.raises(DefinitionError) as raised:
        parse_definition(bad)
    assert (raised.value.field, raised.value.message) == (field, problem.message)


def test_yaml_error_names_the_file_line(tmp_path: Path) -> None:
    path = write_raw(tmp_path, "y.md", "---\nname: x\ndescription: ok\ntags: [a, b\n---\nbody\n")
    with pytest.raises(DefinitionError, match="at line 5: "):
        parse_definition(path)


def test_unknown_key_error_lists_known_fields(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError) as raised:
        parse_definition(write_def(tmp_path, "u.md", name="u", max_turn=3))
    assert raised.value.field == "max_turn"
    assert "did you mean 'max_turns'" in raised.value.message
    assert "known fields: name, description" in raised.value.message


def test_command_as_string_is_rejected_with_list_hint(tmp_path: Path) -> None:
    path = write_def(tmp_path, "s.md", name="s", runner="command", command="python3 tool.py --fast")
    with pytest.raises(DefinitionError) as raised:
        parse_definition(path)
    assert raised.value.field == "command"
    assert "must be an argv list, not a string" in raised.value.message
    assert "['python3', 'tool.py', '--fast']" in raised.value.message


def test_unreadable_file_is_a_problem(project: Path, env: dict[str, str]) -> None:
    bad = project / "agents" / "binary.md"
    bad.parent.mkdir()
    bad.write_bytes(b"---\nname: x\n---\n\xff\xfe\x00")
    cat = load(project, env)
    assert "cannot read the file" in problem_for(cat, bad).message


# ------------------------------------------------------------------------------------------------ placeholders


def test_placeholders_in_command(tmp_path: Path) -> None:
    folder = tmp_path / "defs"
    path = write_def(
        folder,
        "p.md",
        name="p",
        runner="command",
        command=["{python}", "{definition_dir}/run.py", '--json={{"a": 1}}', "plain {not a placeholder"],
    )
    spec = parse_definition(path).spec
    assert spec.command == (
        sys.executable,
        f"{folder.resolve()}/run.py",
        '--json={"a": 1}',
        "plain {not a placeholder",
    )


def test_unknown_placeholder_is_an_error(tmp_path: Path) -> None:
    path = write_def(tmp_path, "p.md", name="p", runner="command", command=["{pyhton}", "x.py"])
    with pytest.raises(DefinitionError) as raised:
        parse_definition(path)
    assert raised.value.field == "command"
    assert "unknown placeholder {pyhton}" in raised.value.message
    assert "did you mean 'python'" in raised.value.message


# ------------------------------------------------------------------------------------------------ Claude Code


def test_claude_code_file_maps_to_claude_code_runner(project: Path, env: dict[str, str]) -> None:
    path = write_raw(
        project / ".claude" / "agents",
        "security-auditor.md",
        "---\nname: security-auditor\ndescription: Use proactively after auth changes.\n"
        "tools: Read, Grep, Glob\nmodel: sonnet\ncolor: red\nhooks: {}\nskills: [audit]\n---\n"
        "You audit code.\n",
    )
    cat = load(project, env)
    assert cat.problems == []
    d = cat.get("security-auditor")
    assert d.source == str(path)
    assert d.spec.runner == "claude-code"
    assert d.spec.model == "sonnet"
    assert d.spec.tools == ("Read", "Grep", "Glob")
    assert d.spec.permission == "readonly"
    assert d.spec.system_prompt == "You audit code."


@pytest.mark.parametrize(
    ("extra", "permission", "max_turns"),
    [
        ({"permissionMode": "acceptEdits"}, "readwrite", None),
        ({"permissionMode": "bypassPermissions", "maxTurns": 9}, "readwrite", 9),
        ({"permissionMode": "plan"}, "readonly", None),
        ({"permissionMode": "acceptEdits", "permission": "readonly", "maxTurns": 9, "max_turns": 4}, "readonly", 4),
    ],
)
def test_claude_code_permission_mode_and_max_turns(
    tmp_path: Path, extra: dict[str, Any], permission: str, max_turns: int | None
) -> None:
    path = write_def(tmp_path / ".claude" / "agents", "a.md", name="a", **extra)
    d = parse_definition(path, claude_code=True)
    assert (d.spec.permission, d.spec.max_turns) == (permission, max_turns)


def test_claude_code_inherit_model_and_explicit_runner(tmp_path: Path) -> None:
    path = write_def(tmp_path, "a.md", name="a", model="inherit")
    assert parse_definition(path, claude_code=True).spec.model is None
    path = write_def(tmp_path, "b.md", name="b", runner="anthropic", model="claude-opus-4-1")
    spec = parse_definition(path, claude_code=True).spec
    assert (spec.runner, spec.model) == ("anthropic", "claude-opus-4-1")


def test_claude_code_file_still_rejects_unknown_keys(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError) as raised:
        parse_definition(write_def(tmp_path, "a.md", name="a", colour="red"), claude_code=True)
    assert raised.value.field == "colour"


def test_claude_agents_folder_from_env_is_read_as_claude_code(project: Path, env: dict[str, str]) -> None:
    user_claude = Path(env["HOME"]) / ".claude" / "agents"
    write_def(user_claude, "helper.md", name="helper", color="blue")
    cat = load(project, {**env, "AGENT_FLEET_AGENTS": "~/.claude/agents"})
    assert cat.problems == []
    assert cat.get("helper").spec.runner == "claude-code"


# ------------------------------------------------------------------------------------------------ search order


def test_catalog_dirs_order(project: Path, tmp_path: Path, env: dict[str, str]) -> None:
    extra_a, extra_b = tmp_path / "extra-a", tmp_path / "extra-b"
    dirs = catalog_dirs(project, {**env, "AGENT_FLEET_AGENTS": os.pathsep.join([str(extra_a), "", "rel"])})
    assert dirs == [
        project / "agents",
        project / ".claude" / "agents",
        extra_a,
        project / "rel",
        tmp_path / "fleet-home" / "agents",
        builtin_agents_dir(),
    ]
    assert extra_b not in dirs


def test_catalog_dirs_default_home_and_dedupe(project: Path, tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path / "home"), "AGENT_FLEET_AGENTS": str(project / "agents")}
    dirs = catalog_dirs(project, env)
    assert dirs == [
        project / "agents",
        project / ".claude" / "agents",
        tmp_path / "home" / ".agent-fleet" / "agents",
        builtin_agents_dir(),
    ]


def test_catalog_dirs_list_a_folder_reached_through_a_symlink_once(project: Path, tmp_path: Path) -> None:
    (project / "agents").mkdir(parents=True, exist_ok=True)
    (tmp_path / "link").symlink_to(project / "agents")
    env = {"HOME": str(tmp_path / "home"), "AGENT_FLEET_AGENTS": str(tmp_path / "link")}
    assert catalog_dirs(project, env) == [
        project / "agents",
        project / ".claude" / "agents",
        tmp_path / "home" / ".agent-fleet" / "agents",
        builtin_agents_dir(),
    ]


def test_first_name_wins_and_later_ones_are_shadowed(project: Path, tmp_path: Path, env: dict[str, str]) -> None:
    extra = tmp_path / "extra"
    home_agents = tmp_path / "fleet-home" / "agents"
    env = {**env, "AGENT_FLEET_AGENTS": str(extra)}
    p1 = write_def(project / "agents", "a.md", name="dup", description="project")
    p2 = write_def(project / ".claude" / "agents", "a.md", name="dup", description="claude")
    p3 = write_def(extra, "a.md", name="dup", description="env")
    p4 = write_def(home_agents, "a.md", name="dup", description="home")
    write_def(home_agents, "only-home.md", name="only-home")
    p5 = write_def(project / "agents", "reviewer.md", name="code-reviewer", description="ours")

    cat = load(project, env)
    assert cat.problems == []
    assert cat.get("dup").description == "project"
    assert cat.get("only-home").source == str(home_agents / "only-home.md")
    assert cat.get("code-reviewer").description == "ours"
    assert ("dup", str(p1), str(p2)) in cat.shadowed
    assert ("dup", str(p1), str(p3)) in cat.shadowed
    assert ("dup", str(p1), str(p4)) in cat.shadowed
    assert ("code-reviewer", str(p5), str(builtin_agents_dir() / "code-reviewer.md")) in cat.shadowed
    assert len(cat.shadowed) == 4

    p1.unlink()
    cat = load(project, env)
    assert cat.get("dup").description == "claude"
    p2.unlink()
    assert load(project, env).get("dup").description == "env"
    p3.unlink()
    assert load(project, env).get("dup").description == "home"


def test_duplicate_names_in_one_folder_shadow_in_file_order(project: Path, env: dict[str, str]) -> None:
    a = write_def(project / "agents", "a.md", name="same", description="first")
    b = write_def(project / "agents", "b.md", name="same", description="second")
    cat = load(project, env)
    assert cat.get("same").description == "first"
    assert cat.shadowed == [("same", str(a), str(b))]


def test_readme_underscore_dotfiles_and_other_files_are_skipped(project: Path, env: dict[str, str]) -> None:
    agents = project / "agents"
    write_raw(agents, "README.md", "# not a definition\n")
    write_raw(agents, "readme.md", "# not a definition either\n")
    write_raw(agents, "_draft.md", "---\nname: draft\nbogus: 1\n---\n")
    write_raw(agents, ".hidden.md", "---\nname: hidden\n---\n")
    write_raw(agents, "notes.txt", "---\nname: notes\n---\n")
    (agents / "sub.md").mkdir()
    write_def(agents / "nested", "deep.md", name="deep")
    write_def(agents, "real.md", name="real")
    cat = load(project, env)
    assert cat.problems == []
    assert "real" in cat.definitions
    assert not {"draft", "hidden", "notes", "deep"} & set(cat.definitions)


# ------------------------------------------------------------------------------------------------ search + get


@pytest.fixture
def searchable(project: Path, env: dict[str, str]) -> Catalog:
    agents = project / "agents"
    write_def(agents, "a.md", name="sql-reviewer", description="Reviews SQL migrations", tags=["Code-Review", "db"])
    write_def(agents, "b.md", name="doc-writer", description="Writes documentation", tags=["docs"])
    write_def(agents, "c.md", name="secret-helper", description="Internal helper", tags=["db"], visibility="private")
    return load(project, env)


def names(defs: list[Any]) -> list[str]:
    return [d.name for d in defs]


def test_search_by_tags_all_must_match(searchable: Catalog) -> None:
    assert names(searchable.search(tags=["code-review"])) == ["code-reviewer", "sql-reviewer"]
    assert names(searchable.search(tags=["code-review", "db"])) == ["sql-reviewer"]
    assert names(searchable.search(tags=["db"], include_private=True)) == ["secret-helper", "sql-reviewer"]
    assert searchable.search(tags=["code-review", "nope"]) == []


def test_search_by_query_is_case_insensitive_over_name_description_tags(searchable: Catalog) -> None:
    assert names(searchable.search(query="SQL MIGRATIONS")) == ["sql-reviewer"]
    assert names(searchable.search(query="doc-wr")) == ["doc-writer"]
    assert names(searchable.search(query="documentation")) == ["doc-writer"]
    assert names(searchable.search(query="DB")) == ["sql-reviewer"]  # tag
    assert names(searchable.search(query="internal")) == []
    assert names(searchable.search(query="internal", include_private=True)) == ["secret-helper"]
    assert names(searchable.search(query="migrations", tags=["docs"])) == []


def test_search_without_filters_lists_public_sorted(searchable: Catalog) -> None:
    listed = names(searchable.search())
    assert listed == sorted(listed)
    assert "secret-helper" not in listed
    assert set(BUILTINS) | {"sql-reviewer", "doc-writer"} == set(listed)
    assert names(searchable.search(query="  ", tags=[])) == listed


def test_get_private_by_name_works(searchable: Catalog) -> None:
    assert searchable.get("secret-helper").visibility == "private"


def test_get_unknown_suggests_close_match(searchable: Catalog) -> None:
    with pytest.raises(NotFound) as raised:
        searchable.get("code-reviewr")
    msg = str(raised.value)
    assert msg.startswith("unknown template 'code-reviewr' (did you mean 'code-reviewer'?); call list_task_agents")
    assert "to see the 8 available: builder, code-reviewer, doc-writer" in msg
    assert "secret-helper" not in msg


def test_get_unknown_without_close_match(searchable: Catalog) -> None:
    with pytest.raises(NotFound) as raised:
        searchable.get("secret-helpr")
    assert "secret-helper" not in str(raised.value)  # private names are never suggested or listed
    assert "did you mean" not in str(raised.value)
    with pytest.raises(NotFound) as raised:
        searchable.get("zzz")
    assert "did you mean" not in str(raised.value)


def test_get_on_empty_catalog() -> None:
    with pytest.raises(NotFound, match="catalog is empty"):
        Catalog({}, [], []).get("x")


# ------------------------------------------------------------------------------------------------ cache


def count_parses(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    seen: list[Path] = []
    real = catalog_mod.parse_definition

    def counting(path: Path, *, claude_code: bool = False, data: bytes | None = None) -> Any:
        seen.append(path)
        return real(path, claude_code=claude_code, data=data)

    monkeypatch.setattr(catalog_mod, "parse_definition", counting)
    return seen


def test_repeated_loads_do_not_reparse(project: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    write_def(project / "agents", "a.md", name="a")
    parsed = count_parses(monkeypatch)
    first = load(project, env)
    assert len(parsed) == len(BUILTINS) + 1
    second = load(project, env)
    assert len(parsed) == len(BUILTINS) + 1
    assert second.definitions == first.definitions
    second.definitions.clear()  # callers get copies: the cache is not affected
    assert "a" in load(project, env).definitions


def test_changed_file_is_reparsed_alone(project: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_def(project / "agents", "a.md", name="a", description="old")
    load(project, env)
    parsed = count_parses(monkeypatch)

    before = path.stat()
    path.write_text(path.read_text().replace("old", "new"), encoding="utf-8")  # same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 2_000_000_000))
    cat = load(project, env)
    assert cat.get("a").description == "new"
    assert parsed == [path]


def test_added_and_removed_files_are_seen(project: Path, env: dict[str, str]) -> None:
    assert "b" not in load(project, env).definitions
    path = write_def(project / "agents", "b.md", name="b")
    assert "b" in load(project, env).definitions
    path.unlink()
    assert "b" not in load(project, env).definitions


def test_fixing_a_bad_file_clears_the_problem(project: Path, env: dict[str, str]) -> None:
    path = write_raw(project / "agents", "x.md", "---\nname: x\nrunner: nope\n---\n")
    assert len(load(project, env).problems) == 1
    write_raw(project / "agents", "x.md", "---\nname: x\nrunner: codex\n---\n")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    cat = load(project, env)
    assert cat.problems == []
    assert cat.get("x").spec.runner == "codex"
