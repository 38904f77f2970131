"""The one error hierarchy of the fleet.

Caller mistakes (``InvalidRequest``, ``NotFound``, ``Conflict``) are kept apart from runtime failures
(``RunnerUnavailable``). Only the edges (server/, cli/) turn these into MCP ``ToolError`` or exit codes;
every message says what to do next.
"""

from __future__ import annotations


class FleetError(Exception):
    """Base of every error the fleet raises on purpose."""


class InvalidRequest(FleetError):
    """The caller asked for something malformed (bad name, missing cwd, prompt too large ...)."""


class NotFound(FleetError):
    """The named agent, turn, batch or template does not exist."""


class Conflict(FleetError):
    """The request clashes with the current state (busy agent under `reject`, name taken by another spec ...)."""


class AlreadyExists(Conflict):
    """The store refused a new row a unique key forbids: a live agent already holds this name or idempotency key,
    or a batch this idempotency key (possibly created by another server a moment ago). ``field`` is ``"name"``,
    ``"idempotency_key"`` or ``"id"``; ``holder`` says what holds it."""

    def __init__(self, field: str, value: str, *, holder: str = "a live agent") -> None:
        self.field = field
        self.value = value
        self.holder = holder
        super().__init__(f"{holder} already has this {field} ({value[:100]!r})")


class LimitReached(Conflict):
    """A budget or bound stops this: an agent's, the fleet's daily or a batch's budget, the delegation depth, or
    the size of a delegation tree. The message says which, how much is left, and what to change."""


class RunnerUnavailable(FleetError):
    """The runner cannot start here (CLI not installed, API key missing)."""


class DefinitionError(FleetError):
    """A catalog file is malformed; carries the file and field so the user can fix it."""

    def __init__(self, path: str, field: str | None, message: str, *, name: str | None = None) -> None:
        self.path = path
        self.field = field
        self.message = message
        self.name = name  # the definition's name when the file got that far
        where = f"{path}: {field}" if field else path
        super().__init__(f"{where}: {message}")


class StoreDamaged(FleetError):
    """The fleet database cannot be read (not SQLite, truncated, corrupt pages). Names the file and the repair."""

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(
            f"the fleet database {path} is damaged ({detail}); run `agent-fleet doctor --repair` to keep it aside "
            "and rebuild the fleet from the turn files on disk (stop every agent-fleet server on this home first)"
        )


class UntrustedDefinition(DefinitionError):
    """A catalog file no person has trusted in its current content (new or changed): it is not used."""

    def __init__(self, path: str, message: str, *, name: str | None, sha256: str, changed: bool) -> None:
        super().__init__(path, None, message, name=name)
        self.sha256 = sha256
        self.changed = changed
