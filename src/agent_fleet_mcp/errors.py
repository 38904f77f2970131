"""The one error hierarchy of the fleet.

Caller mistakes (``InvalidRequest``, ``NotFound``, ``Conflict``) are kept apart from runtime failures
(``RunnerUnavailable``). Only the edges (server.py, cli.py) turn these into MCP ``ToolError`` or exit codes;
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


class UntrustedDefinition(DefinitionError):
    """A catalog file no person has trusted in its current content (new or changed): it is not used."""

    def __init__(self, path: str, message: str, *, name: str | None, sha256: str, changed: bool) -> None:
        super().__init__(path, None, message, name=name)
        self.sha256 = sha256
        self.changed = changed
