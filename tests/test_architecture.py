"""docs/architecture.md is the map of the code, and this test keeps it true.

The map's table names every module of the package with its layer. The tests fail when a module is missing from the
map, when the map names a module that no longer exists, when an import goes up the layers, and when one of the
layering rules (only the process layer starts processes, only the edges speak MCP errors or exit codes) is broken.
That only `store/` touches SQLite is checked by tests/core/test_store_protocol.py.
"""

from __future__ import annotations

import ast
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "agent_fleet_mcp"
DOC = ROOT / "docs" / "architecture.md"
LAYERS = ("base", "store", "agents", "core", "read", "write", "edge")  # bottom up
ROW = re.compile(r"^\|\s*`([\w/.]+\.py)`\s*\|\s*(\w+)\s*\|")

# Modules that may start or signal processes, and why (everything else goes through runners/process.py).
SPAWNERS = {
    "demo.py": "makes the demo's sample project a git repository and shows `git status` after the merges",
    "runners/process.py": "starts, follows and kills agent turns",
    "runners/forkserver.py": "the worker fork server (a warm interpreter that forks anthropic turns)",
    "runners/zygote.py": "the fork server's child side",
    "runners/containment.py": "probes and enters namespaces for a turn",
    "runners/cgroups.py": "probes whether cgroup v2 is writable",
    "worker/tools.py": "the worker's own bash tool, inside the agent's turn",
    "worktree_git.py": "runs git for the agents' worktrees (create, commit, diff, merge, remove)",
}
# Modules that may turn errors into MCP tool errors or exit codes: the edges.
EDGE_PREFIXES = ("server/", "cli/", "__main__.py", "worker/__main__.py", "runners/zygote.py", "runners/forkserver.py")


def module_map() -> dict[str, str]:
    rows: dict[str, str] = {}
    for line in DOC.read_text().splitlines():
        m = ROW.match(line)
        if m:
            path, layer = m.groups()
            assert path not in rows, f"{path} is listed twice in {DOC.name}"
            rows[path] = layer
    return rows


def modules() -> list[str]:
    return sorted(p.relative_to(PKG).as_posix() for p in PKG.rglob("*.py"))


def _module_file(dotted: str) -> str | None:
    rel = dotted.removeprefix("agent_fleet_mcp").lstrip(".").replace(".", "/")
    for cand in (f"{rel}.py", f"{rel}/__init__.py" if rel else "__init__.py"):
        if (PKG / cand).is_file():
            return cand
    return None


def imports_of(path: str) -> set[str]:
    """The package modules `path` imports (at any depth: inside functions too)."""
    tree = ast.parse((PKG / path).read_text())
    here = path.removesuffix(".py").split("/")
    base = here[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base[: len(base) - node.level + 1]
                mod = ".".join(["agent_fleet_mcp", *parent, *([node.module] if node.module else [])])
            else:
                mod = node.module or ""
            names = [f"{mod}.{a.name}" for a in node.names] + [mod]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            if name.startswith("agent_fleet_mcp"):
                target = _module_file(name)
                if target and target != path:
                    found.add(target)
                    break
    return found


def test_every_module_is_on_the_map() -> None:
    missing = [m for m in modules() if m not in module_map()]
    assert not missing, f"add these modules to the module map in {DOC.relative_to(ROOT)}: {missing}"


def test_the_map_names_only_modules_that_exist() -> None:
    stale = sorted(set(module_map()) - set(modules()))
    assert not stale, f"the module map in {DOC.relative_to(ROOT)} names modules that are gone: {stale}"


def test_layers_are_known() -> None:
    bad = {m: layer for m, layer in module_map().items() if layer not in LAYERS}
    assert not bad, f"unknown layers (use one of {LAYERS}): {bad}"


def test_imports_go_down_the_layers() -> None:
    layer = {m: LAYERS.index(name) for m, name in module_map().items() if name in LAYERS}
    upward = [
        f"{m} ({LAYERS[layer[m]]}) imports {t} ({LAYERS[layer[t]]})"
        for m in modules()
        if m in layer
        for t in sorted(imports_of(m))
        if t in layer and layer[t] > layer[m]
    ]
    assert not upward, "imports that go up the layers:\n" + "\n".join(upward)


def _code(path: str) -> str:
    """The module's code without its comments and strings (docstrings may name what the code must not do)."""
    with (PKG / path).open("rb") as f:
        kept = [
            tok.string
            for tok in tokenize.tokenize(f.readline)
            if tok.type not in (tokenize.COMMENT, tokenize.STRING, tokenize.ENCODING)
        ]
    return " ".join(kept)


def _uses(path: str, pattern: str) -> bool:
    return re.search(pattern, _code(path)) is not None


def test_only_the_process_layer_starts_processes() -> None:
    pattern = r"\bsubprocess\b|\bos \. (fork|exec\w*|posix_spawn\w*) \(|\bopen_process \(|\bcreate_subprocess_\w+ \("
    offenders = [m for m in modules() if m not in SPAWNERS and _uses(m, pattern)]
    assert not offenders, f"start processes through runners/process.py, not in: {offenders}"


def test_only_the_edges_speak_tool_errors_and_exit_codes() -> None:
    pattern = r"\bToolError\b|\bsys \. exit \(|\braise SystemExit\b|\bclick \. exceptions\b"
    own_tool_error = {"worker/paths.py", "worker/tools.py"}  # the worker's own ToolError: a tool result, not MCP's
    offenders = [
        m for m in modules() if not m.startswith(EDGE_PREFIXES) and m not in own_tool_error and _uses(m, pattern)
    ]
    assert not offenders, f"only server/ and cli/ turn FleetError into tool errors or exit codes: {offenders}"
