"""The origin rules, each written once: which browser Origins an embed token admits, which
Origins may ride on an agent's session cookie, and which sites may frame the widget page.

An Origin is scheme://host[:port] as a browser sends it (RFC 6454). Allowed origins are
stored normalized (normalize_origin), so a browser's Origin is compared as it comes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from server.errors import InvalidInput

# An origin as browsers send it (RFC 6454): scheme://host[:port], nothing else. Hosts are
# DNS names (IDNs in their xn-- form) or IPv4 addresses: what a Content-Security-Policy
# source and an Origin header can both carry. No userinfo, path, query, fragment, spaces,
# ";" or "," — the value ends up in the widget page's CSP header.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_ORIGIN = re.compile(rf"(https?)://({_LABEL}(?:\.{_LABEL})*)(?::([0-9]{{1,5}}))?\Z")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(origin: str) -> str:
    """The origin as a browser's Origin header would spell it: lowercase, the default port
    left out, one trailing "/" forgiven. Raises InvalidInput for anything that is not
    http(s)://host[:port]; the rule for every way a token's allowed origins are set (admin
    API, bootstrap, CLI)."""
    value = origin[:-1] if isinstance(origin, str) and origin.endswith("/") else origin
    m = _ORIGIN.match(value.lower()) if isinstance(value, str) and value.isascii() else None
    port = int(m.group(3)) if m and m.group(3) else None
    if m is None or len(m.group(2)) > 253 or (port is not None and not 0 < port < 65536):
        raise InvalidInput(
            "An allowed origin must be http(s)://host[:port] with nothing after it, "
            f"like https://example.com; got {origin!r}."
        )
    scheme, host = m.group(1), m.group(2)
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def token_allows(
    allowed_origins: Iterable[str] | None, origin: str | None, own_origin: str | None = None
) -> bool:
    """May a page on `origin` use an embed token with these allowed origins? Yes when the
    token names none (any site, as the guide says), when it names this one, when there is no
    Origin (native apps, the widget page's own navigations), or when it is the server's own
    (`own_origin`: the widget page itself)."""
    if not origin or not allowed_origins:
        return True
    if origin.rstrip("/") in allowed_origins:
        return True
    return own_origin is not None and origin == own_origin


def is_own_origin(origin: str, host: str | None) -> bool:
    """Is the Origin the server's own? The browser sets both Origin and Host; a page cannot
    forge either."""
    try:
        return bool(host) and urlsplit(origin).netloc.lower() == host.lower()
    except ValueError:
        return False


def agent_origin_allowed(origin: str, host: str | None, allowed: Iterable[str]) -> bool:
    """May a page on `origin` use an agent's session cookie (the inbox's socket)? Only the
    server's own origin and the operator's CHATD_ALLOWED_ORIGINS: a page on another site must
    not ride on the agent's cookie (cross-site WebSocket hijacking)."""
    return origin.rstrip("/") in allowed or is_own_origin(origin, host)


# What a frame-ancestors source may be. Allowed origins are checked when a token is made
# (orgs.normalize_origin), but a value with ";" or "," would end the directive, so the policy
# is built only from values that cannot.
_ORIGIN_SOURCE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?\Z")


def frame_ancestors(allowed_origins: list[str] | None) -> tuple[str, ...]:
    """The sources of the widget page's Content-Security-Policy frame-ancestors: the token's
    allowed origins; every origin ("*") when the list is empty, as the guide says; nobody
    ("'none'") when a list was given but none of it can be used."""
    if not allowed_origins:
        return ("*",)
    usable = tuple(o for o in allowed_origins if _ORIGIN_SOURCE.match(o))
    return usable or ("'none'",)
