"""The client's scheme, host and address behind trusted proxies (CHATD_TRUSTED_PROXIES).

Written here instead of using aiohttp-remotes: its middlewares are coroutines that await the
handler, so every Socket.IO websocket would keep their frames for the life of the connection
(the chain in rest/middlewares.py is built to leave none), and a websocket upgrade needs the
forwarded values too (the handshake's own-origin check reads the Host header). This is a
plain function that returns the request, or a clone of it with the forwarded values.

Only a request whose TCP peer is trusted has its X-Forwarded-* headers read:
- the client address is the right-most X-Forwarded-For entry that is not itself a trusted
  proxy (each proxy appends the address it saw; entries left of an untrusted one are the
  client's own claims);
- the scheme is X-Forwarded-Proto as the nearest proxy set it (its last value);
- the host is X-Forwarded-Host when present (the Host header is replaced with it, so every
  reader agrees), else the Host the proxy passed on (nginx: `proxy_set_header Host
  $http_host`);
- X-Request-Id is kept as the request's id (rest/observability.py generates one otherwise).
With no trusted proxy configured every request is taken as it comes: the TCP peer is the
client, as before.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from aiohttp import web
from multidict import CIMultiDict

REQUEST_ID = web.RequestKey("request_id", str)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}\Z")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _last(values: Iterable[str]) -> str | None:
    items = [v.strip() for value in values for v in value.split(",") if v.strip()]
    return items[-1] if items else None


class ForwardedHeaders:
    def __init__(self, trusted: Iterable[str]) -> None:
        self.networks: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(t, strict=False) for t in trusted
        )

    def trusts(self, address: str | None) -> bool:
        if not address or not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(address.strip().strip("[]"))
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.networks)

    def client_address(self, peer: str, forwarded_for: list[str]) -> str:
        hops = [h.strip().strip("[]") for v in forwarded_for for h in v.split(",") if h.strip()]
        client = peer
        for hop in reversed(hops):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                break  # garbage from beyond the last trusted hop: the hop before it is the client
            client = hop
            if not self.trusts(hop):
                break
        return client

    def resolve(self, request: web.Request) -> web.Request:
        peer = request.remote
        if not self.trusts(peer):
            return request  # nothing stored: an idle websocket carries no extra state
        headers = request.headers
        changes: dict = {}
        forwarded_for = headers.getall("X-Forwarded-For", [])
        if forwarded_for:
            changes["remote"] = self.client_address(peer or "", forwarded_for)
        proto = _last(headers.getall("X-Forwarded-Proto", []))
        if proto and proto.lower() in ("http", "https"):
            changes["scheme"] = proto.lower()
        host = _last(headers.getall("X-Forwarded-Host", []))
        if host:
            replaced = CIMultiDict(headers)
            replaced["Host"] = host
            changes["headers"] = replaced
            changes["host"] = host
        clone = request.clone(**changes) if changes else request
        given = headers.get("X-Request-Id", "")
        if _REQUEST_ID.match(given):
            clone[REQUEST_ID] = given
        return clone


FORWARDED = web.AppKey("forwarded", ForwardedHeaders)
