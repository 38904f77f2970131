"""Tool-argument errors in the tool's own words, for every tool.

The MCP SDK validates a call's arguments with a pydantic model and, on failure, returns the raw ``ValidationError``
text (``get_agent_outputArguments ... https://errors.pydantic.dev/...``). ``ArgumentCheckingServer`` sits at the one
place every call passes (``MCPServer.call_tool``): it first applies the size and character rules of ``inputs`` to
the raw arguments, then turns a validation error into "parameter, what is allowed, what to do" using the tool's
published input schema. The original ``ValidationError`` stays the ``__cause__``, so the SDK still logs field names
only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, cast

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.types import CallToolResult, InputRequiredResult
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from agent_fleet_mcp.errors import InvalidRequest
from agent_fleet_mcp.inputs import check_arguments, quote

Schema = Mapping[str, Any]
LifespanT = TypeVar("LifespanT")


class ArgumentCheckingServer(MCPServer[LifespanT]):
    """An ``MCPServer`` whose tools refuse bad arguments with clear messages (see the module docstring)."""

    _schemas: dict[str, Schema] | None = None

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[LifespanT, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        schemas = await self._input_schemas()
        if name in schemas:
            try:
                check_arguments(arguments)
            except InvalidRequest as exc:
                raise ToolError(f"{name}: {exc}") from None
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(exc, UnexpectedToolError) or not isinstance(cause, ValidationError):
                raise
            raise ToolError(describe(name, cause, schemas.get(name, {}))) from cause

    async def _input_schemas(self) -> dict[str, Schema]:
        if self._schemas is None:
            self._schemas = {t.name: t.input_schema for t in await self.list_tools()}
        return self._schemas


def describe(tool: str, error: ValidationError, schema: Schema) -> str:
    """A validation error as the tool's own sentence: each bad parameter, what it accepts, and what to do."""
    problems = list(dict.fromkeys(_one(e, schema) for e in error.errors(include_url=False)))
    more = len(problems) - 5
    problems = problems[:5]
    tail = f" (and {more} more)" if more > 0 else ""
    return f"{tool}: invalid arguments: {'; '.join(problems)}{tail}. Fix the argument(s) and call {tool} again."


def _one(err: ErrorDetails, schema: Schema) -> str:
    loc = _clean_loc(err["loc"], schema)
    param = _path(loc)
    kind = err["type"]
    if kind == "missing":
        return f"`{param}` is required ({_allowed(_prop(schema, loc), schema)})"
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        known = sorted(_properties(_prop(schema, loc[:-1]), schema))
        listed = f"; known: {', '.join(known)}" if known else ""
        return f"`{param}` is not a parameter{listed}"
    got = quote(err.get("input"), 60)
    return f"`{param}` must be {_allowed(_prop(schema, loc), schema)}; got {got}"


def _clean_loc(loc: Sequence[int | str], schema: Schema) -> tuple[int | str, ...]:
    """Drop pydantic's union-member tags (``agents.list[str]``): keep only real fields and list indexes."""
    out: list[int | str] = []
    node: Schema = schema
    for part in loc:
        if isinstance(part, str) and part not in _properties(node, schema) and len(_variants(node, schema)) > 1:
            continue  # which member of a union failed: an implementation detail
        out.append(part)
        node = _prop(schema, out)
    return tuple(out)


def _path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "arguments"


def _resolve(node: Schema, root: Schema) -> Schema:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        defs = cast(Mapping[str, Schema], root.get("$defs", {}))
        return defs.get(ref.removeprefix("#/$defs/"), {})
    return node


def _variants(node: Schema, root: Schema) -> list[Schema]:
    node = _resolve(node, root)
    options = node.get("anyOf") or node.get("oneOf")
    if isinstance(options, list):
        return [_resolve(o, root) for o in cast(list[Schema], options)]
    return [node]


def _properties(node: Schema, root: Schema) -> dict[str, Schema]:
    for v in _variants(node, root):
        props = v.get("properties")
        if isinstance(props, dict):
            return cast(dict[str, Schema], props)
    return {}


def _prop(schema: Schema, loc: Sequence[int | str]) -> Schema:
    """The schema of the value at ``loc`` (through properties, list items, $refs and optional unions)."""
    node: Schema = schema
    for part in loc:
        if isinstance(part, int):
            items = next((v.get("items") for v in _variants(node, schema) if v.get("type") == "array"), None)
            node = cast(Schema, items) if isinstance(items, dict) else {}
        else:
            node = _properties(node, schema).get(part, {})
    return node


def _allowed(node: Schema, root: Schema) -> str:
    """What a schema accepts, in words: 'a whole number from 200 to 20000', "one of 'all', 'any'" ..."""
    words = [w for w in (_one_allowed(v, root) for v in _variants(node, root)) if w]
    return " or ".join(dict.fromkeys(words)) or "a valid value (see the tool's input schema)"


def _one_allowed(node: Schema, root: Schema) -> str:
    if "const" in node:
        return repr(node["const"])
    if isinstance(node.get("enum"), list):
        return "one of " + ", ".join(repr(x) for x in cast(list[object], node["enum"]))
    kind = node.get("type")
    if kind in ("integer", "number"):
        noun = "a whole number" if kind == "integer" else "a number"
        low, high = node.get("minimum"), node.get("maximum")
        xlow, xhigh = node.get("exclusiveMinimum"), node.get("exclusiveMaximum")
        if low is not None and high is not None:
            return f"{noun} from {low:g} to {high:g}"
        bounds = [
            f"at least {low:g}" if low is not None else "",
            f"above {xlow:g}" if xlow is not None else "",
            f"at most {high:g}" if high is not None else "",
            f"below {xhigh:g}" if xhigh is not None else "",
        ]
        return " ".join([noun, ", ".join(b for b in bounds if b)]).strip()
    if kind == "string":
        return "a string"
    if kind == "boolean":
        return "true or false"
    if kind == "null":
        return "null (omit it)"
    if kind == "array":
        items = node.get("items")
        inner = _allowed(cast(Schema, items), root) if isinstance(items, dict) else "values"
        return f"a list of {inner.removeprefix('a ').removeprefix('an ')}s" if inner.startswith("a ") else "a list"
    if kind == "object":
        props = node.get("properties")
        names = ", ".join(cast(dict[str, object], props)) if isinstance(props, dict) else ""
        return f"an object with {names}" if names else "an object"
    return ""
