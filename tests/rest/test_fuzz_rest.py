"""Property-based fuzzing of the REST edge (hypothesis), on whichever backend the suite runs.

Every JSON body, query string and upload form the platform takes is fed generated input:
plausible values, wrong types, NUL and lone surrogates, integers beyond any column, unknown
keys. Whatever comes in, the server never answers 5xx or internal_error, and a refused request
(4xx) stores nothing.

Hypothesis drives synchronous tests, so the application runs on a real port in a thread of
its own, and the fuzzer speaks plain HTTP from a loopback address of its own (its failed logins
must not throttle the 127.0.0.1 the other tests log in from).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import random
import threading
import uuid
from urllib.parse import quote

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from chatd.app import create_app
from models import (
    Channel,
    Conversation,
    ConversationSession,
    EmbedToken,
    EndUser,
    Message,
    Organization,
    User,
)
from rest.keys import SERVICES
from server.actors import AgentActor, EndUserActor
from server.services.conversations import NewMessage
from tests.factories import PASSWORD

MODELS = (
    Organization,
    User,
    Channel,
    EmbedToken,
    EndUser,
    Conversation,
    ConversationSession,
    Message,
)
FUZZ = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class LiveServer:
    """The whole application on 127.0.0.1 and a free port, its event loop in a thread."""

    def __init__(self, app_settings) -> None:
        self.settings = app_settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.address = (
            f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(2, 254)}"
        )

    def run(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        self.app = create_app(self.settings)
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    def start(self) -> None:
        self.thread.start()
        self.run(self._start())

    def stop(self) -> None:
        self.run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    @property
    def services(self):
        return self.app[SERVICES]

    def request(self, method: str, path: str, body: bytes | None = None, headers=None):
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=30, source_address=(self.address, 0)
        )
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type") or "", resp.read()
        finally:
            conn.close()

    async def _counts(self) -> tuple[int, ...]:
        async with self.services.db.read() as s:
            return tuple(
                [
                    (await s.execute(select(func.count()).select_from(m))).scalar_one()
                    for m in MODELS
                ]
            )

    def counts(self) -> tuple[int, ...]:
        return self.run(self._counts())


@pytest.fixture(scope="module")
def live(base_settings):
    server = LiveServer(base_settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def world(live):
    """An organization, its owner signed in, and a visitor's open conversation."""

    async def build():
        services = live.services
        email = f"fuzz-{uuid.uuid4().hex[:10]}@example.com"
        org = await services.orgs.bootstrap(f"Fuzz {uuid.uuid4().hex[:8]}", email, PASSWORD)
        token, _user = await services.auth.login(email, PASSWORD)
        conv, _ = await services.conversations.create_or_get_conversation(
            org["embed_token"], "fuzz-visitor"
        )
        await services.conversations.send_message(
            EndUserActor("fuzz-visitor"), NewMessage(conv["id"], "hello")
        )
        actor = AgentActor(org["user_id"], org["org_id"], "owner", email)
        await services.conversations.assign_conversation(actor, conv["id"])
        return {
            **org,
            "conv": conv["id"],
            "external_id": "fuzz-visitor",
            "agent_headers": {
                "Cookie": f"session={token}",
                "X-CSRFToken": services.auth.csrf_token(token),
            },
        }

    return live.run(build())


# ---- strategies -----------------------------------------------------------------------------

SPECIAL = [
    "\x00",
    "\ud800",
    "\udfff",
    "a\x00b",
    "",
    " ",
    "\n",
    "x" * 400,
    str(2**31),
    str(2**63),
    "-1",
    "1e400",
    "NaN",
    "https://a.test; script-src *",
    "https://shop.example",
    "webchat",
    "agent",
    "owner",
    "all",
    "<script>",
]
texts = st.one_of(
    st.text(max_size=20),
    st.sampled_from(SPECIAL),
    st.builds(
        lambda a, b, c: a + b + c,
        st.text(max_size=4),
        st.sampled_from(SPECIAL),
        st.text(max_size=4),
    ),
)
integers = st.one_of(
    st.integers(min_value=-5, max_value=600),
    st.sampled_from([2**31 - 1, 2**31, 2**53, 2**63, 10**30, -(2**63)]),
)
scalars = st.one_of(st.none(), st.booleans(), integers, st.floats(allow_nan=False), texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)


def body_of(keys: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    """A JSON object with some of `keys` (each a plausible value or junk), now and then an
    unknown key."""
    known = st.fixed_dictionaries(
        {}, optional={k: st.one_of(v, json_values) for k, v in keys.items()}
    )
    extra = st.dictionaries(texts, json_values, max_size=1)
    return st.builds(lambda a, b: {**b, **a}, known, st.one_of(st.just({}), extra))


def encode(value) -> bytes:
    # ensure_ascii: lone surrogates travel as JSON escapes, as a client would send them.
    return json.dumps(value).encode()


def query_of(params: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    items = st.fixed_dictionaries(
        {}, optional={k: st.one_of(v, texts, integers.map(str)) for k, v in params.items()}
    )
    return st.builds(
        lambda d: "&".join(
            f"{quote(str(k), safe='')}={quote(str(v), safe='', errors='surrogatepass')}"
            for k, v in d.items()
        ),
        items,
    )


def check(live, method: str, path: str, body: bytes | None = None, headers=None) -> None:
    before = live.counts()
    status, content_type, raw = live.request(method, path, body, headers)
    assert status < 500, (method, path, body, raw[:300])
    if "json" in content_type:
        data = json.loads(raw)
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            assert data["error"].get("code") != "internal_error", (path, body, data)
    if status >= 400:
        assert live.counts() == before, (method, path, body, status, raw[:300])


# ---- JSON bodies ----------------------------------------------------------------------------

TAGS = st.lists(texts, max_size=4)
JSON_ENDPOINTS = {
    "login": ("/auth/login", False, {"email": texts, "password": texts}),
    "open_conversation": (
        "/chat-widget/conversations",
        False,
        {"embed_token": st.just("EMBED"), "external_id": texts, "customer_name": texts},
    ),
    "tags": ("/api/conversations/CONV/tags", True, {"tags": TAGS}),
    "resolve": ("/api/conversations/CONV/resolve", True, {"tags": TAGS}),
    "create_user": (
        "/api/admin/users",
        True,
        {
            "email": st.builds(lambda t: f"{uuid.uuid4().hex[:8]}{t}@example.com", texts),
            "password": texts,
            "role": texts,
            "display_name": texts,
        },
    ),
    "create_channel": ("/api/admin/channels", True, {"type": texts, "name": texts}),
    "create_embed_token": (
        "/api/admin/embed-tokens",
        True,
        {
            "channel_id": st.just("CHANNEL"),
            "name": texts,
            "allowed_origins": st.lists(texts, max_size=3),
        },
    ),
}


def _fill(value, world):
    """Put the world's real ids where the strategies left placeholders."""
    if isinstance(value, str):
        return {"EMBED": world["embed_token"], "CHANNEL": world["channel_id"]}.get(value, value)
    return value


@pytest.mark.parametrize("endpoint", JSON_ENDPOINTS)
def test_json_endpoints_never_fail_on_generated_bodies(live, world, endpoint):
    path, as_agent, keys = JSON_ENDPOINTS[endpoint]
    path = path.replace("CONV", world["conv"])
    headers = {"Content-Type": "application/json"}
    if as_agent:
        headers.update(world["agent_headers"])

    @FUZZ
    @given(body=st.one_of(body_of(keys), json_values))
    def run(body):
        if isinstance(body, dict):
            body = {k: _fill(v, world) for k, v in body.items()}
        check(live, "POST", path, encode(body), headers)

    run()


# ---- query strings --------------------------------------------------------------------------

QUERY_ENDPOINTS = {
    "list": ("/api/conversations/", True, {"filter": texts, "limit": integers, "offset": integers}),
    "history": (
        "/api/conversations/CONV/messages",
        True,
        {"limit": integers, "offset": integers, "after_seq": integers},
    ),
    "widget_history": (
        "/chat-widget/history/CONV",
        False,
        {"external_id": st.just("fuzz-visitor") | texts, "after_seq": integers},
    ),
    "widget_page": (
        "/chat-widget",
        False,
        {
            "embed_token": st.just("EMBED"),
            "session_id": texts,
            "customer_name": texts,
            "title": texts,
        },
    ),
}


@pytest.mark.parametrize("endpoint", QUERY_ENDPOINTS)
def test_query_endpoints_never_fail_on_generated_query_strings(live, world, endpoint):
    path, as_agent, params = QUERY_ENDPOINTS[endpoint]
    path = path.replace("CONV", world["conv"])
    headers = dict(world["agent_headers"]) if as_agent else {}

    @FUZZ
    @given(query=query_of(params))
    def run(query):
        query = query.replace("EMBED", world["embed_token"])
        check(live, "GET", f"{path}?{query}", None, headers)

    run()


# ---- upload forms ---------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
BOUNDARY = "fuzzBoundary1"


def multipart(fields: list[tuple[str, str]], filename: str | None, content_type: str) -> bytes:
    out = b""
    for name, value in fields:
        out += f"--{BOUNDARY}\r\n".encode()
        out += b'Content-Disposition: form-data; name="' + name.encode("utf-8", "surrogatepass")
        out += b'"\r\n\r\n' + value.encode("utf-8", "surrogatepass") + b"\r\n"
    if filename is not None:
        out += f"--{BOUNDARY}\r\n".encode()
        out += b'Content-Disposition: form-data; name="file"; filename="'
        out += filename.encode("utf-8", "surrogatepass") + b'"\r\n'
        out += b"Content-Type: " + content_type.encode("utf-8", "surrogatepass") + b"\r\n\r\n"
        out += PNG + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


field_text = st.text(max_size=10).filter(lambda t: '"' not in t and "\r" not in t and "\n" not in t)


@pytest.mark.parametrize("who", ["agent", "visitor"])
def test_upload_endpoints_never_fail_on_generated_forms(live, world, who):
    path = "/api/uploads" if who == "agent" else "/chat-widget/uploads"
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    if who == "agent":
        headers.update(world["agent_headers"])
    real = {
        "embed_token": world["embed_token"],
        "external_id": world["external_id"],
        "conversation_id": world["conv"],
    }
    names = st.sampled_from([*real, "x", "file", "a\x00"]) | field_text
    values = st.sampled_from(list(real.values())) | texts.filter(lambda t: "\r" not in t)

    @FUZZ
    @given(
        fields=st.lists(st.tuples(names, values), max_size=4),
        filename=st.none()
        | st.sampled_from(["a.png", "a\x00.png", "a%00.png", "..png"])
        | field_text,
        content_type=st.sampled_from(["image/png", "text/html", "", "image/svg+xml"]),
    )
    def run(fields, filename, content_type):
        check(live, "POST", path, multipart(fields, filename, content_type), headers)

    run()
