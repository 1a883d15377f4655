"""Property-based fuzzing of the public HTTP surface: the widget's JSON endpoints, the widget
page and its assets, served uploads, the login (JSON and form) and logout, and the pages.

Whatever the input: never a 5xx or `internal_error`, no error in the server's log, and a
refused request changes nothing (no end user, conversation or session created).
"""

from __future__ import annotations

import re
import uuid

import pytest
from hypothesis import strategies as st

from tests.factories import PASSWORD
from tests.fuzz import strategies as fz
from tests.fuzz.harness import search
from tests.fuzz.http import AUTHS, CONTENT_TYPES, Req, bodies, path_ids, queries, request_and_check
from tests.rest.helpers import csrf_meta, elsewhere, fetch

NUMBER_STRINGS = st.one_of(
    fz.hostile_ints().map(str), st.sampled_from(("99999999999999999999999", "-1", "1e3", "٣"))
)
ORIGIN_HEADERS = st.one_of(
    st.just({}),
    st.just({}),
    st.sampled_from(("https://evil.example", "null", "https://a.test", "http://127.0.0.1")).map(
        lambda o: {"Origin": o}
    ),
)


def _widget(world) -> dict[str, st.SearchStrategy[Req]]:
    tokens = st.sampled_from(
        (world.org.embed_token,) * 4 + (world.foreign_org.embed_token, "ew_" + "0" * 40)
    )
    open_body = st.fixed_dictionaries(
        {
            "embed_token": tokens,
            "external_id": st.one_of(
                st.sampled_from(world.external_ids), st.uuids().map(lambda u: "v-" + u.hex[:10])
            ),
        },
        optional={"customer_name": st.one_of(st.none(), st.text(max_size=20))},
    )
    typed_open = {
        "embed_token": fz.hostile_strings(),
        "external_id": fz.hostile_strings(),
        "customer_name": fz.hostile_strings(),
    }
    history_query = queries(
        st.fixed_dictionaries(
            {"external_id": st.sampled_from(world.external_ids)},
            optional={"after_seq": st.integers(0, 5).map(str)},
        ),
        typed={"after_seq": NUMBER_STRINGS, "external_id": fz.hostile_strings()},
    )
    page_query = queries(
        st.fixed_dictionaries(
            {
                "embed_token": tokens,
                "session_id": st.one_of(
                    st.sampled_from(world.external_ids), st.uuids().map(lambda u: u.hex[:12])
                ),
            },
            optional={
                "customer_name": st.text(max_size=20),
                "title": st.text(min_size=1, max_size=20),
            },
        ),
        typed={
            "embed_token": fz.hostile_strings(),
            "session_id": fz.hostile_strings(),
            "customer_name": fz.hostile_strings(),
            "title": fz.hostile_strings(),
        },
    )
    conv_ids = path_ids([world.conv["id"], world.foreign_conv["id"], str(uuid.UUID(int=3))])
    names = st.one_of(
        st.sampled_from(("widget.js", "widget.css", "socket.io.min.js", "socket.io.min.js.map")),
        fz.hostile_strings().filter(lambda s: 0 < len(s) < 300),
    ).map(fz.pct)
    none = st.just("none")
    return {
        "POST /chat-widget/conversations": st.builds(
            Req,
            method=st.just("POST"),
            path=st.just("/chat-widget/conversations"),
            auth=none,
            body=bodies(open_body, typed=typed_open),
            content_type=CONTENT_TYPES,
            headers=ORIGIN_HEADERS,
        ),
        "GET /chat-widget/history/{id}": st.builds(
            Req,
            method=st.just("GET"),
            path=conv_ids.map(lambda i: f"/chat-widget/history/{i}"),
            query=history_query,
            auth=none,
        ),
        "GET /chat-widget": st.builds(
            Req, method=st.just("GET"), path=st.just("/chat-widget"), query=page_query, auth=none
        ),
        "GET static files": st.one_of(
            st.builds(
                Req,
                method=st.just("GET"),
                path=names.map(lambda n: f"/chat-widget/assets/{n}"),
                query=queries(st.fixed_dictionaries({}, optional={"v": st.text(max_size=10)})),
                auth=none,
            ),
            st.builds(
                Req,
                method=st.just("GET"),
                path=names.map(lambda n: f"/inbox/vendor/{n}"),
                auth=st.sampled_from(AUTHS),
            ),
            st.builds(
                Req,
                method=st.just("GET"),
                path=names.map(lambda n: f"/inbox/static/{n}"),
                auth=none,
            ),
            st.builds(
                Req,
                method=st.just("GET"),
                path=st.tuples(
                    st.one_of(st.just("0123456789abcdef0123456789abcdef"), names), names
                ).map(lambda p: f"/uploads/{p[0]}/{p[1]}"),
                auth=none,
            ),
            st.builds(
                Req,
                method=st.sampled_from(("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS")),
                path=st.sampled_from(
                    ("/", "/healthz", "/inbox", "/chat-widget/embed.js", "/auth/login")
                ),
                query=queries(
                    st.fixed_dictionaries({}, optional={"next": st.just("/inbox")}),
                    typed={"next": fz.hostile_strings()},
                ),
                auth=st.sampled_from(AUTHS),
                headers=ORIGIN_HEADERS,
            ),
        ),
    }


def _auth(world, login_csrf: tuple[str, str]) -> dict[str, st.SearchStrategy[Req]]:
    emails = st.sampled_from((world.agent.email, world.owner.email, "nobody@example.com"))
    passwords = st.sampled_from((PASSWORD, "wrong-password"))
    login = st.fixed_dictionaries({"email": emails, "password": passwords})
    typed = {"email": fz.hostile_strings(), "password": fz.hostile_strings()}
    seed, token = login_csrf
    form = st.fixed_dictionaries(
        {"email": emails, "password": passwords, "csrf_token": st.just(token)},
        optional={"next": st.sampled_from(("/inbox", "//evil.example", "/\\evil"))},
    )
    form_typed = {**typed, "csrf_token": fz.hostile_strings(), "next": fz.hostile_strings()}
    return {
        "POST /auth/login": st.one_of(
            st.builds(
                Req,
                method=st.just("POST"),
                path=st.just("/auth/login"),
                auth=st.just("none"),
                body=bodies(login, typed=typed),
                content_type=CONTENT_TYPES,
            ),
            st.builds(
                Req,
                method=st.just("POST"),
                path=st.just("/auth/login"),
                auth=st.just("none"),
                body=fz.mutated(
                    form,
                    st.one_of(fz.hostile_strings(), fz.hostile_ints().map(str)),
                    typed=form_typed,
                ),
                content_type=st.just("application/x-www-form-urlencoded"),
                headers=st.just({"Cookie": f"login_csrf={seed}"}),
            ),
        ),
        "POST /auth/logout": st.builds(
            Req,
            method=st.just("POST"),
            path=st.just("/auth/logout"),
            # Only the agent logs out: the owner's session serves the other requests.
            auth=st.sampled_from(("agent", "agent", "none", "bad_csrf")),
            body=st.one_of(st.none(), bodies(st.just({}))),
            content_type=CONTENT_TYPES,
        ),
    }


ENDPOINTS = (
    "POST /chat-widget/conversations",
    "GET /chat-widget/history/{id}",
    "GET /chat-widget",
    "GET static files",
    "POST /auth/login",
    "POST /auth/logout",
)


def seeds(world, endpoint: str) -> list[Req]:
    """The issue's attacks on this endpoint, tried before the search."""
    history = f"/chat-widget/history/{world.conv['id']}"
    token = world.org.embed_token
    return {
        "POST /chat-widget/conversations": [
            Req("POST", "/chat-widget/conversations", auth="none", body=fz.Deep(10_000)),
            Req(
                "POST",
                "/chat-widget/conversations",
                auth="none",
                body={"embed_token": token, "external_id": "v\x00"},
            ),
            Req(
                "POST",
                "/chat-widget/conversations",
                auth="none",
                body={"embed_token": token, "external_id": "v-1", "customer_name": "\ud800"},
            ),
        ],
        "GET /chat-widget/history/{id}": [
            Req("GET", history, {"external_id": world.ext, "after_seq": str(2**63)}, auth="none"),
        ],
        "GET /chat-widget": [
            Req("GET", "/chat-widget", {"embed_token": token, "session_id": "s\x00"}, auth="none"),
        ],
        "POST /auth/login": [
            Req("POST", "/auth/login", auth="none", body={"email": "a\x00@b.c", "password": "x"}),
            Req("POST", "/auth/login", auth="none", body={"email": "\udc00@b.c", "password": "x"}),
        ],
    }.get(endpoint, [])


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_public_endpoints_survive_hostile_requests(world, endpoint):
    factory = world.factory
    page = await fetch(factory, "GET", "/auth/login")
    login_csrf = (page.cookies["login_csrf"].value, csrf_meta(page.body))
    strategies = {**_widget(world), **_auth(world, login_csrf)}
    async with elsewhere() as http:

        async def check(req):
            try:
                await request_and_check(world, http, req)
            finally:
                if req.path == "/auth/logout":
                    # Logged out: log the agent in again, so every example starts alike.
                    status, _ = await factory.get("/api/me", world.agent)
                    if status == 401:
                        await factory.login(world.agent)
                        world.snapshot.invalidate()

        name = "fuzz_" + re.sub(r"\W+", "_", endpoint).strip("_")
        await search(name, strategies[endpoint], check, seeds=seeds(world, endpoint))
