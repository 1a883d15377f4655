"""HTTP requests for the fuzz tests and the checks on every answer."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import yarl
from hypothesis import strategies as st

from tests.fuzz import strategies as fz
from tests.fuzz.harness import changes, fault, short
from tests.fuzz.world import World

AUTHS = ("owner",) * 8 + ("agent", "foreign", "none", "bad_csrf")


@dataclass(frozen=True)
class Raw:
    """A body sent as these bytes exactly."""

    data: bytes

    def __repr__(self) -> str:
        return f"Raw({short(self.data, 240)})"

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))  # hypothesis prints dataclasses field by field otherwise


@dataclass(frozen=True)
class Req:
    method: str
    path: str  # already percent-encoded
    query: dict[str, Any] = field(default_factory=dict)
    auth: str = "owner"
    body: Any = None  # a JSON value, a Raw, or None for no body
    content_type: str | None = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        path = self.path if len(self.path) <= 200 else self.path[:200] + "..."
        parts = [f"{self.method} {path}"]
        if self.query:
            parts.append(f"query={self.query!r}")
        if self.auth != "owner":
            parts.append(f"auth={self.auth}")
        if self.body is not None:
            parts.append(f"body={short(self.body, 200)}")
        if self.content_type != "application/json":
            parts.append(f"content_type={self.content_type!r}")
        if self.headers:
            parts.append(f"headers={self.headers!r}")
        return "Req(" + ", ".join(parts) + ")"

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))  # hypothesis prints dataclasses field by field otherwise


RAW_BODIES = st.sampled_from(
    (
        b"",
        b"{",
        b"[]",
        b"null",
        b'"text"',
        b"1e999",
        b"\xff\xfe\x00",
        b'{"tags": ["a"], "tags": 5}',
        b'{"a": NaN}',
        b'{"\\ud800": 1}',
        b"[" * 100_000,
    )
).map(Raw)


def bodies(base: st.SearchStrategy[dict], typed: dict | None = None) -> st.SearchStrategy[Any]:
    """JSON bodies from a valid base, mutated; sometimes raw garbage."""
    hostile = fz.hostile_json(raw_depth=True)
    return st.one_of(
        fz.mutated(base, hostile, typed=typed),
        fz.mutated(base, hostile, typed=typed),
        fz.mutated(base, hostile, typed=typed),
        RAW_BODIES,
    )


def queries(base: st.SearchStrategy[dict], typed: dict | None = None) -> st.SearchStrategy[dict]:
    """Query strings: values are strings (or lists of them, a repeated key)."""
    value = st.one_of(
        fz.hostile_strings(),
        fz.hostile_ints().map(str),
        st.sampled_from(("1e3", "0x10", " 5", "٣", "+1", "1_000", "5.0", "-0", "")),
        st.lists(st.sampled_from(("1", "2")), min_size=2, max_size=2),
    )

    def as_strings(q):
        return (
            {str(k): v if isinstance(v, list | str) else str(v) for k, v in q.items()}
            if isinstance(q, dict)
            else {}
        )

    # Bounded: aiohttp answers a request line over 8 KiB itself, before the application.
    return (
        fz.mutated(base, value, typed=typed)
        .map(as_strings)
        .filter(lambda q: len(fz.query_string(q)) < 4000)
    )


def path_ids(real: list[str]) -> st.SearchStrategy[str]:
    """Percent-encoded path segments: real ids mostly, else hostile ones."""
    return st.one_of(
        st.just(real[0]),
        st.just(real[0]),
        st.just(real[0]),
        st.sampled_from(real),
        # Bounded: aiohttp answers a request line over 8 KiB itself, before the application.
        st.one_of(st.sampled_from(fz.BAD_UUIDS), fz.hostile_strings()).filter(
            lambda s: 0 < len(s) < 1000
        ),
    ).map(fz.pct)


CONTENT_TYPES = st.sampled_from(
    (
        "application/json",
        "application/json",
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        None,
        "application/x-www-form-urlencoded",
    )
)


def _headers(world: World, auth: str) -> dict[str, str]:
    agent = {"owner": world.owner, "agent": world.agent, "foreign": world.foreign_owner}.get(
        auth, world.owner if auth == "bad_csrf" else None
    )
    if agent is None:
        return {}
    csrf = agent.csrf if auth != "bad_csrf" else agent.csrf[::-1]
    return {"Cookie": f"session={agent.cookie}", "X-CSRFToken": csrf}


def _encode(req: Req) -> bytes | None:
    if req.body is None:
        return None
    if isinstance(req.body, Raw):
        return req.body.data
    if req.content_type == "application/x-www-form-urlencoded" and isinstance(req.body, dict):
        return fz.query_string(
            {k: v if isinstance(v, str) else str(v) for k, v in req.body.items()}
        ).encode()
    return fz.encode_json(req.body)


# Endpoints that never read a body: what is in it is not accepted, only ignored.
BODILESS = re.compile(r"/assign$|/revoke$|^/auth/logout$")


def _carries_unstorable(req: Req) -> bool:
    """A body (JSON or form) with NUL or a lone surrogate, or such a value in the query of
    the widget page (which stores the visitor's session id and name)."""
    if BODILESS.search(req.path):
        return False
    if isinstance(req.body, dict | list) and fz.has_unstorable(req.body):
        return True
    return req.path == "/chat-widget" and fz.has_unstorable(req.query)


async def send(world: World, http: aiohttp.ClientSession, req: Req):
    """One request; (status, JSON body or text)."""
    url = world.factory.url + req.path
    if req.query:
        url += "?" + fz.query_string(req.query)
    headers = {**_headers(world, req.auth), **req.headers}
    skip = []
    if req.content_type is None:
        skip.append("Content-Type")
    else:
        headers["Content-Type"] = req.content_type
    async with http.request(
        req.method,
        yarl.URL(url, encoded=True),
        data=_encode(req),
        headers=headers,
        skip_auto_headers=skip,
        allow_redirects=False,
    ) as resp:
        raw = await resp.read()
        if resp.content_type == "application/json":
            try:
                return resp.status, await resp.json()
            except ValueError:
                return resp.status, raw
        return resp.status, raw.decode("utf-8", "replace")


async def request_and_check(world: World, http: aiohttp.ClientSession, req: Req):
    """Send one request and hold the answer to the rules for any input:

    - never a 5xx;
    - a JSON error is never `internal_error`;
    - the server logged no error or traceback;
    - a refused request (4xx) stored nothing and changed nothing.
    """
    before = await world.snapshot.current()
    world.snapshot.invalidate()  # a failure before the `take` below leaves no stale state
    watch = world.watch
    mark = watch.mark()
    status, body = await send(world, http, req)
    logged = watch.since(mark)
    if status >= 500:
        raise fault(f"http_{status}", watch.cause(mark))(
            f"HTTP {status} for {req!r}: {short(body)}; server log: {logged}"
        )
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        if body["error"].get("code") == "internal_error":
            raise fault("internal_error", watch.cause(mark))(f"internal_error for {req!r}")
    if logged:
        raise fault("logged_error", watch.cause(mark))(
            f"the server logged errors for {req!r}: {logged}"
        )
    after = await world.snapshot.take()
    if status < 400 and _carries_unstorable(req):
        raise fault("accepted_unstorable")(
            f"HTTP {status}: accepted a NUL or lone surrogate in {req!r}"
        )
    if status >= 400:
        diff = changes(before, after)
        if diff:
            raise fault("stored_on_refusal", "_".join(sorted(diff)))(
                f"refused {req!r} (HTTP {status}) still changed {diff}"
            )
    return status, body
