"""Who may talk to the service from a browser: allowed hosts, and no cross-site writes.

A service on localhost is reachable from every web page the user opens. Two attacks follow, and
one middleware stops both:

- **DNS rebinding**: a page of `evil.example` makes its own name resolve to 127.0.0.1 and then
  reads the service as "same origin". Its requests still carry `Host: evil.example`, so a Host
  outside CNNZOO_ALLOWED_HOSTS is refused (400 `unknown_host`).
- **Cross-site requests** (CSRF): any page may POST a form to any address; the browser sends it
  and only hides the answer. A state-changing request that a browser marks as coming from
  another site (`Sec-Fetch-Site`, or an `Origin` that is neither this host nor an allowed one)
  is refused (403 `cross_site_request`). Clients that are not browsers send neither header and
  are not affected; the service's own page sends `same-origin`.

The health probes answer any Host: a kubelet asks `Host: <pod IP>`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from litestar.datastructures import Headers
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from service.errors import CrossSiteRequest, UnknownHost
from service.settings import Settings

ANY_HOST = "any_host"  # a route's opt key: answer whatever the Host (health probes)
ANY = "*"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
EVERY_ADDRESS = ("0.0.0.0", "::", "")  # binds that name no host of their own
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Sec-Fetch-Site values of requests the user's own browsing sent: this page, or the address bar.
OWN_FETCHES = frozenset({"same-origin", "none"})


def hostname(authority: str) -> str:
    """"Localhost:8000" -> "localhost", "[::1]:8000" -> "::1", "::1" -> "::1" (no port, lower case)."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority[1:].partition("]")[0]
    if authority.count(":") == 1:
        authority = authority.partition(":")[0]
    return authority.rstrip(".")


class AllowedHosts:
    """Host names, `*` (any) or `*.example.com` (that domain's subdomains)."""

    def __init__(self, names: Iterable[str]) -> None:
        names = [name.strip().lower() for name in names]
        self.any = ANY in names
        self.suffixes = tuple(name[1:] for name in names if name.startswith("*."))
        self.names = frozenset(hostname(name) for name in names if not name.startswith("*"))

    @classmethod
    def of(cls, settings: Settings) -> AllowedHosts:
        """CNNZOO_ALLOWED_HOSTS, or by default the loopback names and the host the server binds."""
        if settings.allowed_hosts is not None:
            return cls(settings.allowed_hosts)
        bound = () if settings.host in EVERY_ADDRESS else (settings.host,)
        return cls((*LOOPBACK_NAMES, *bound))

    def allow(self, name: str) -> bool:
        return self.any or name in self.names or name.endswith(self.suffixes)


class RequestGuard(ASGIMiddleware):
    """Refuses unknown Host headers and cross-site state-changing requests (see the module)."""

    scopes = (ScopeType.HTTP,)
    exclude_opt_key = ANY_HOST

    def __init__(self, hosts: AllowedHosts) -> None:
        self.hosts = hosts

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        self.check(Headers.from_scope(scope), scope["method"])
        await next_app(scope, receive, send)

    def check(self, headers: Mapping[str, str], method: str) -> None:
        """Raises UnknownHost or CrossSiteRequest for a request the module refuses. `headers`:
        lower-case names, the first value of each (as Litestar's `Headers.get` gives)."""
        host = headers.get("host")
        # No Host at all (HTTP/1.0) is no browser's request, so nothing to guard against.
        if host is not None and not self.hosts.allow(hostname(host)):
            raise UnknownHost(f"this server does not answer to the host {host!r} "
                              "(CNNZOO_ALLOWED_HOSTS names those it does)")
        if method not in SAFE_METHODS:
            self._refuse_cross_site(headers, host)

    def _refuse_cross_site(self, headers: Mapping[str, str], host: str | None) -> None:
        fetch_site = headers.get("sec-fetch-site")
        origin = headers.get("origin")
        if fetch_site is not None and fetch_site.lower() not in OWN_FETCHES:
            raise CrossSiteRequest(f"a {fetch_site!r} request from a browser page"
                                   f"{f' of {origin!r}' if origin else ''} is refused: pages of other "
                                   "sites may not send requests that act; use this server's own page, "
                                   "or a client that is not a browser")
        if origin is not None and not self._own_origin(origin, host):
            raise CrossSiteRequest(f"a request from a page of {origin!r} is refused: that origin is neither "
                                   "this server nor one of CNNZOO_ALLOWED_HOSTS")

    def _own_origin(self, origin: str, host: str | None) -> bool:
        """`Origin: null` (a file, a sandboxed frame) never is; else this very host, or an allowed name."""
        try:
            parts = urlsplit(origin.strip())
            name = parts.hostname
        except ValueError:
            return False
        if origin.strip() == "null" or not name:
            return False
        return (host is not None and parts.netloc.lower() == host.strip().lower()) or self.hosts.allow(name)
