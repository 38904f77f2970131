"""The network edge of `agent-fleet-mcp --http`: who may call the tools and on which addresses.

- Every request needs ``Authorization: Bearer <token>`` (compared in constant time); anything else gets 401 before
  the MCP app sees it. The token is ``AGENT_FLEET_HTTP_TOKEN`` when set, else ``<fleet home>/http-token``, created
  on first use (0600 whatever the umask; `agent-fleet http-token` prints it, `--new` writes a new one over it).
- Host and Origin are checked on every bind address, not only the loopback ones the SDK guards by itself: the SDK's
  own DNS-rebinding check (``TransportSecuritySettings``) gets an explicit allow-list of the bind address, the
  loopback names and any ``--allowed-host``, each with the server's port. A foreign Host gets 421, Origin 403.
- A bind address that is not loopback needs ``allow_remote`` (the ``--allow-remote`` flag).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp.server.transport_security import TransportSecuritySettings

from agent_fleet_mcp.errors import InvalidRequest

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer
    from starlette.types import ASGIApp, Receive, Scope, Send

TOKEN_ENV = "AGENT_FLEET_HTTP_TOKEN"
TOKEN_FILE = "http-token"
MIN_TOKEN_CHARS = 16
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


@dataclass(frozen=True)
class HttpToken:
    value: str
    source: str  # where it came from, safe to print: the file path or "from AGENT_FLEET_HTTP_TOKEN"


def _check_token(value: str, where: str, fix: str) -> str:
    if len(value) < MIN_TOKEN_CHARS or not all("!" <= ch <= "~" for ch in value):
        raise InvalidRequest(f"{where} must be at least {MIN_TOKEN_CHARS} visible ASCII characters, no spaces; {fix}")
    return value


def load_or_create_token(home: Path, env: Mapping[str, str]) -> HttpToken:
    """The bearer token of the HTTP server (see the module docstring). Safe against two servers starting at once:
    the file appears complete or not at all (written aside, then hard-linked into place)."""
    if from_env := env.get(TOKEN_ENV, "").strip():
        fix = "use a random one, e.g. `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        return HttpToken(_check_token(from_env, TOKEN_ENV, fix), f"from {TOKEN_ENV}")
    path = home / TOKEN_FILE
    if not path.exists():
        _create_token_file(home, path)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)  # someone loosened it: only the owner may read the token
        value = os.read(fd, 4096).decode("ascii", errors="replace").strip()
    finally:
        os.close(fd)
    fix = "run `agent-fleet http-token --new` to write a new one"
    return HttpToken(_check_token(value, f"the token in {path}", fix), str(path))


def renew_token(home: Path, env: Mapping[str, str]) -> HttpToken:
    """A new bearer token in ``<home>/http-token``, written over the old one in the same file. The same file, not a
    new one: each running turn's namespace has ``/dev/null`` bound on this very file (containment.home_guards), and
    that mount goes away there when the file is deleted or replaced, so a turn running then could read its
    successor. A server already running keeps the token it read at its start until it restarts."""
    if env.get(TOKEN_ENV, "").strip():
        raise InvalidRequest(f"the token comes from {TOKEN_ENV}, not from a file; set a new value there instead")
    path = home / TOKEN_FILE
    if not path.exists():
        return load_or_create_token(home, {})
    value = secrets.token_urlsafe(32)  # always 43 characters: the file keeps its size, one write
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchmod(fd, 0o600)
        data = (value + "\n").encode("ascii")
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        os.fsync(fd)
    finally:
        os.close(fd)
    return HttpToken(value, str(path))


def _create_token_file(home: Path, path: Path) -> None:
    if not home.exists():
        home.mkdir(parents=True, exist_ok=True)
        os.chmod(home, 0o700)
    aside = home / f".{TOKEN_FILE}.{secrets.token_hex(8)}"
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask may have taken bits away, never added: set exactly 0600
        os.write(fd, (secrets.token_urlsafe(32) + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(aside, path)
    except FileExistsError:
        pass  # another server made it first: use theirs
    finally:
        os.unlink(aside)


# -- bind address and Host/Origin ------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """True for the loopback names and addresses (127.0.0.0/8, ::1, localhost); a host name other than localhost
    counts as not loopback (it may resolve anywhere)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, allow_remote: bool) -> None:
    if allow_remote or is_loopback(host):
        return
    raise InvalidRequest(
        f"refusing to listen on {host}: that address is reachable from the network, and anyone who can reach it "
        "and holds the token can run agents (and their shell commands) as you. Use --host 127.0.0.1 (the "
        "default) and an SSH tunnel or a reverse proxy, or pass --allow-remote if you really mean it (then add "
        "--allowed-host NAME for the name clients use to reach this machine)"
    )


def _netloc(host: str, port: int) -> str:
    """``host:port`` as it appears in a Host header; a bare IPv6 address gets its brackets."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _with_port(entry: str, port: int) -> str:
    """An --allowed-host value as a Host header: ``name`` means ``name:<server port>``; ``name:port`` and
    ``[v6]:port`` are taken as they are."""
    if entry.startswith("["):
        return entry if "]:" in entry else f"{entry}:{port}"
    if entry.count(":") == 1:
        return entry
    return _netloc(entry, port)


def transport_security(host: str, port: int, allowed_hosts: Sequence[str] = ()) -> TransportSecuritySettings:
    """The SDK's DNS-rebinding check, switched on for any bind address, allowing exactly: the bind address, the
    loopback names and each ``allowed_hosts`` entry, on the server's port (http:// origins of the same)."""
    hosts = [_netloc(host, port), *(f"{n}:{port}" for n in LOOPBACK_NAMES)]
    hosts += [_with_port(h.strip(), port) for h in allowed_hosts if h.strip()]
    if port == 80:  # clients leave out the default port
        hosts += [h.removesuffix(":80") for h in hosts]
    unique = list(dict.fromkeys(hosts))
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=unique,
        allowed_origins=[f"http://{h}" for h in unique],
    )


# -- the bearer token check ------------------------------------------------------------------------------------


class BearerTokenMiddleware:
    """ASGI middleware: every HTTP request (any path) needs ``Authorization: Bearer <token>``; otherwise 401 and
    the wrapped app never sees it. Lifespan events pass through."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = token.encode("ascii")

    def _authorized(self, scope: Scope) -> bool:
        values = [v for k, v in scope.get("headers", []) if k.lower() == b"authorization"]
        if len(values) != 1:
            return False
        scheme, _, given = bytes(values[0]).strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(given.strip(), self._expected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # a websocket: refuse the handshake
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps(
            {
                "error": "invalid_token",
                "error_description": "missing or wrong bearer token: send 'Authorization: Bearer <token>' "
                "(`agent-fleet http-token` prints it on the server's machine)",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="agent-fleet", error="invalid_token"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def build_http_app(
    server: MCPServer[Any], *, host: str, port: int, token: str, allowed_hosts: Sequence[str]
) -> ASGIApp:
    """The streamable-HTTP app at /mcp behind the token and the Host/Origin allow-list."""
    app = server.streamable_http_app(
        streamable_http_path="/mcp", transport_security=transport_security(host, port, allowed_hosts), host=host
    )
    return BearerTokenMiddleware(app, token)


def startup_line(host: str, port: int, token: HttpToken) -> str:
    where = token.source if token.source.startswith("from ") else f"in {token.source}"
    return (
        f"agent-fleet-mcp: serving MCP at http://{_netloc(host, port)}/mcp; bearer token {where} "
        "(`agent-fleet http-token` prints it)"
    )


def serve_http(
    server: MCPServer[Any],
    *,
    host: str,
    port: int,
    token: HttpToken,
    allowed_hosts: Sequence[str],
    log_level: str = "warning",
) -> None:
    """Run uvicorn on the guarded app until interrupted (what MCPServer.run("streamable-http") does, plus the
    token check)."""
    import anyio
    import uvicorn

    app = build_http_app(server, host=host, port=port, token=token.value, allowed_hosts=allowed_hosts)
    uv_server = uvicorn.Server(uvicorn.Config(app, host=host.strip("[]"), port=port, log_level=log_level))
    anyio.run(uv_server.serve)
