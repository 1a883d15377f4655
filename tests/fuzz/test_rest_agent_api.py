"""Property-based fuzzing of the agent REST API: conversations and the admin endpoints.

Whatever the query string, path id, body, content type and credentials (the owner, an agent,
another organization's owner, none, a wrong CSRF token): never a 5xx or `internal_error`,
no error in the server's log, and a refused request changes nothing.
"""

from __future__ import annotations

import re
import uuid

import pytest
from hypothesis import strategies as st

from tests.fuzz import strategies as fz
from tests.fuzz.harness import search
from tests.fuzz.http import AUTHS, CONTENT_TYPES, Req, bodies, path_ids, queries, request_and_check
from tests.rest.helpers import elsewhere

NUMBER_STRINGS = st.one_of(
    fz.hostile_ints().map(str), st.sampled_from(("99999999999999999999999", "-1", "1e3", "٣"))
)
TAGS = st.lists(st.sampled_from(("billing", "vip", "urgent", "Billing")), max_size=4)
TYPED_TAGS = {
    "tags": st.one_of(
        st.lists(fz.hostile_strings(), min_size=1, max_size=3),
        st.lists(st.just("t"), min_size=51, max_size=51),
        fz.hostile_json(raw_depth=True),
    )
}


def conversation_ids(world) -> st.SearchStrategy[str]:
    return path_ids([*world.conv_ids, str(uuid.UUID(int=7))])


def _reads(world) -> dict[str, st.SearchStrategy[Req]]:
    ids = conversation_ids(world)
    list_query = queries(
        st.fixed_dictionaries(
            {},
            optional={
                "filter": st.sampled_from(("unassigned", "mine", "all")),
                "limit": st.integers(1, 500).map(str),
                "offset": st.integers(0, 5).map(str),
            },
        ),
        typed={"offset": NUMBER_STRINGS, "limit": NUMBER_STRINGS},
    )
    history_query = queries(
        st.fixed_dictionaries(
            {},
            optional={
                "limit": st.integers(1, 200).map(str),
                "offset": st.integers(0, 5).map(str),
                "after_seq": st.integers(0, 5).map(str),
            },
        ),
        typed={"offset": NUMBER_STRINGS, "limit": NUMBER_STRINGS, "after_seq": NUMBER_STRINGS},
    )
    auth = st.sampled_from(AUTHS)
    get = st.just("GET")
    return {
        "GET /api/conversations/": st.builds(
            Req,
            method=get,
            path=st.sampled_from(("/api/conversations/", "/api/conversations")),
            query=list_query,
            auth=auth,
        ),
        "GET /api/conversations/{id}": st.builds(
            Req, method=get, path=ids.map(lambda i: f"/api/conversations/{i}"), auth=auth
        ),
        "GET /api/conversations/{id}/messages": st.builds(
            Req,
            method=get,
            path=ids.map(lambda i: f"/api/conversations/{i}/messages"),
            query=history_query,
            auth=auth,
        ),
        "GET /api/me, /api/team": st.builds(
            Req,
            method=get,
            path=st.sampled_from(("/api/me", "/api/team")),
            query=queries(st.just({})),
            auth=auth,
        ),
    }


def _actions(world) -> dict[str, st.SearchStrategy[Req]]:
    ids = conversation_ids(world)
    auth = st.sampled_from(AUTHS)
    tag_body = bodies(st.fixed_dictionaries({"tags": TAGS}), typed=TYPED_TAGS)
    resolve_body = st.one_of(
        st.none(), bodies(st.fixed_dictionaries({}, optional={"tags": TAGS}), typed=TYPED_TAGS)
    )

    def post(action, body):
        return st.builds(
            Req,
            method=st.just("POST"),
            path=ids.map(lambda i: f"/api/conversations/{i}/{action}"),
            auth=auth,
            body=body,
            content_type=CONTENT_TYPES,
        )

    return {
        "POST /api/conversations/{id}/assign": post(
            "assign", st.one_of(st.none(), bodies(st.just({})))
        ),
        "POST /api/conversations/{id}/resolve": post("resolve", resolve_body),
        "POST /api/conversations/{id}/tags": post("tags", tag_body),
    }


# What an allowed origin may be once stored: scheme://host[:port], nothing else (it ends up
# in a Content-Security-Policy header).
ORIGIN_RE = re.compile(
    r"^https?://([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?\Z"
)
ORIGINS = st.lists(
    st.sampled_from(("https://a.test", "http://localhost:3000", "https://shop.example.com")),
    max_size=3,
)


def _admin(world) -> dict[str, st.SearchStrategy[Req]]:
    auth = st.sampled_from(AUTHS)
    hostile_origins = st.lists(
        st.one_of(
            fz.hostile_strings(),
            st.sampled_from(
                (
                    "https://a.test; script-src *",
                    "https://a.test,https://b.test",
                    "https://a.test/path",
                    "https://a.test:99999",
                    "https://user@a.test",
                    "javascript://a.test",
                    "https://a.test\n",
                    "https://*.test",
                    "https://a.test'",
                )
            ),
        ),
        min_size=1,
        max_size=3,
    )
    user = st.fixed_dictionaries(
        {
            "email": st.uuids().map(lambda u: f"fuzz-{u.hex[:12]}@example.com"),
            "password": st.just("correct-horse-battery"),
        },
        optional={
            "role": st.sampled_from(("agent", "admin", "owner")),
            "display_name": st.text(min_size=1, max_size=20),
        },
    )
    channel = st.fixed_dictionaries(
        {
            "type": st.sampled_from(("webchat", "mobile_sdk")),
            "name": st.text(min_size=1, max_size=20),
        }
    )
    token = st.fixed_dictionaries(
        {
            "channel_id": st.sampled_from(
                (world.channel_id, world.channel_id.upper(), world.foreign_org.channel_id)
            )
        },
        optional={"name": st.text(min_size=1, max_size=20), "allowed_origins": ORIGINS},
    )
    typed_token = {
        "allowed_origins": hostile_origins,
        "channel_id": st.one_of(st.sampled_from(fz.BAD_UUIDS), fz.hostile_strings()),
        "name": fz.hostile_strings(),
    }
    typed_user = {
        "email": fz.hostile_strings(),
        "password": fz.hostile_strings(),
        "display_name": fz.hostile_strings(),
    }
    token_ids = path_ids([world.spare_token_id, world.foreign_token_id, str(uuid.UUID(int=9))])

    def post(path, body):
        return st.builds(
            Req,
            method=st.just("POST"),
            path=st.just(path),
            auth=auth,
            body=body,
            content_type=CONTENT_TYPES,
        )

    return {
        "GET /api/admin/*": st.builds(
            Req,
            method=st.just("GET"),
            path=st.sampled_from(
                ("/api/admin/users", "/api/admin/channels", "/api/admin/embed-tokens")
            ),
            auth=auth,
        ),
        "POST /api/admin/users": post("/api/admin/users", bodies(user, typed=typed_user)),
        "POST /api/admin/channels": post(
            "/api/admin/channels", bodies(channel, typed={"name": fz.hostile_strings()})
        ),
        "POST /api/admin/embed-tokens": post(
            "/api/admin/embed-tokens", bodies(token, typed=typed_token)
        ),
        "POST /api/admin/embed-tokens/{id}/revoke": st.builds(
            Req,
            method=st.just("POST"),
            path=token_ids.map(lambda i: f"/api/admin/embed-tokens/{i}/revoke"),
            auth=auth,
        ),
    }


ENDPOINTS = (
    "GET /api/conversations/",
    "GET /api/conversations/{id}",
    "GET /api/conversations/{id}/messages",
    "GET /api/me, /api/team",
    "POST /api/conversations/{id}/assign",
    "POST /api/conversations/{id}/resolve",
    "POST /api/conversations/{id}/tags",
    "GET /api/admin/*",
    "POST /api/admin/users",
    "POST /api/admin/channels",
    "POST /api/admin/embed-tokens",
    "POST /api/admin/embed-tokens/{id}/revoke",
)


def stored_origins_are_origins(req, status, body):
    """An embed token's allowed origins are scheme://host[:port] once stored."""
    if req.path == "/api/admin/embed-tokens" and req.method == "POST" and status == 201:
        for origin in body["allowed_origins"]:
            assert ORIGIN_RE.match(origin), f"allowed origin {origin!r} stored from {req!r}"


def seeds(world, endpoint: str) -> list[Req]:
    """The issue's attacks on this endpoint, tried before the search."""
    conv = f"/api/conversations/{world.conv['id']}"
    huge = "99999999999999999999999"
    deep = fz.Deep(10_000)
    return {
        "GET /api/conversations/": [
            Req("GET", "/api/conversations/", {"offset": huge}),
            Req("GET", "/api/conversations/", {"limit": "1", "offset": str(2**63)}),
        ],
        "GET /api/conversations/{id}/messages": [
            Req("GET", conv + "/messages", {"offset": huge}),
            Req("GET", conv + "/messages", {"after_seq": str(2**63)}),
        ],
        "POST /api/conversations/{id}/resolve": [
            Req("POST", conv + "/resolve", body={"tags": deep}),
            Req("POST", conv + "/resolve", body={"tags": ["a\x00b"]}),
        ],
        "POST /api/conversations/{id}/tags": [
            Req("POST", conv + "/tags", body={"tags": deep}),
            Req("POST", conv + "/tags", body={"tags": ["a\x00b"]}),
            Req("POST", conv + "/tags", body={"tags": ["x\ud800"]}),
        ],
        "POST /api/admin/embed-tokens": [
            Req(
                "POST",
                "/api/admin/embed-tokens",
                body={
                    "channel_id": world.channel_id,
                    "allowed_origins": ["https://a.test; script-src *"],
                },
            ),
        ],
        "POST /api/admin/users": [
            Req(
                "POST",
                "/api/admin/users",
                body={"email": "a\x00b@example.com", "password": "correct-horse-battery"},
            ),
        ],
    }.get(endpoint, [])


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_agent_api_survives_hostile_requests(world, endpoint):
    strategies = {**_reads(world), **_actions(world), **_admin(world)}
    async with elsewhere() as http:

        async def check(req):
            status, body = await request_and_check(world, http, req)
            stored_origins_are_origins(req, status, body)

        name = "fuzz_" + re.sub(r"\W+", "_", endpoint).strip("_")
        await search(name, strategies[endpoint], check, seeds=seeds(world, endpoint))
