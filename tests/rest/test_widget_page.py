"""The web embed over HTTP: the loader (GET /chat-widget/embed.js), the widget page
(GET /chat-widget) and its assets: content types, caching, sizes, framing headers, errors."""

from __future__ import annotations

import gzip
import re
from html import unescape
from urllib.parse import urlencode

import pytest

from rest.widget_assets import SOCKET_IO_CLIENT
from tests.factories import uid
from tests.rest.helpers import fetch

LOADER = "/chat-widget/embed.js"
LOADER_MAX_GZIP = 2 * 1024
PAGE_MAX_GZIP = 60 * 1024


def page_path(**params) -> str:
    return "/chat-widget?" + urlencode(params)


def gz(body: str | bytes) -> int:
    data = body.encode() if isinstance(body, str) else body
    return len(gzip.compress(data, 9))


def body_attr(html: str, name: str) -> str:
    match = re.search(rf'{name}="([^"]*)"', html)
    assert match, (name, html)
    return match.group(1)


async def revoke(factory, org) -> None:
    owner = await factory.owner(org)
    status, tokens = await factory.get("/api/admin/embed-tokens", owner)
    assert status == 200
    (token,) = [t for t in tokens if org.embed_token.startswith(t["token_prefix"])]
    status, _ = await factory.post(f"/api/admin/embed-tokens/{token['id']}/revoke", owner)
    assert status == 200


# ---- the loader ----------------------------------------------------------------------------


async def test_loader_is_javascript_with_caching_headers(factory):
    reply = await fetch(factory, "GET", LOADER)

    assert reply.status == 200
    assert reply.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert "max-age=300" in reply.headers["Cache-Control"]
    assert "public" in reply.headers["Cache-Control"]
    assert reply.headers["ETag"]
    assert "data-embed-token" in reply.body and "cw_sid_" in reply.body


async def test_loader_revalidates_with_its_etag(factory):
    first = await fetch(factory, "GET", LOADER)
    again = await fetch(factory, "GET", LOADER, headers={"If-None-Match": first.headers["ETag"]})

    assert again.status == 304
    assert again.body == ""


async def test_loader_is_sent_gzipped_to_clients_that_accept_it(factory):
    plain = await fetch(factory, "GET", LOADER, headers={"Accept-Encoding": "identity"})
    zipped = await fetch(factory, "GET", LOADER, headers={"Accept-Encoding": "gzip"})

    assert "Content-Encoding" not in plain.headers
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert zipped.body == plain.body  # the client decodes it
    assert "Accept-Encoding" in zipped.headers["Vary"]


async def test_loader_stays_under_two_kib_gzipped(factory, capsys):
    reply = await fetch(factory, "GET", LOADER, headers={"Accept-Encoding": "identity"})

    size = gz(reply.body)
    with capsys.disabled():
        print(f"\n[size] embed.js: {len(reply.body.encode())} bytes, {size} bytes gzipped")
    assert size < LOADER_MAX_GZIP, size


async def test_loader_is_wrapped_in_one_function(factory):
    # (The browser test checks that running it adds no property to window.)
    reply = await fetch(factory, "GET", LOADER)
    code = "\n".join(
        line for line in reply.body.splitlines() if line.strip() and not line.startswith("/*")
    )
    assert code.startswith("(function () {") and code.rstrip().endswith("})();")


# ---- the page ------------------------------------------------------------------------------


async def test_widget_page_opens_the_visitors_conversation_as_the_api_does(factory):
    org = await factory.org()
    external_id = uid("browser-session-")

    reply = await fetch(
        factory,
        "GET",
        page_path(embed_token=org.embed_token, session_id=external_id, customer_name="Ann"),
    )
    api = await fetch(
        factory,
        "POST",
        "/chat-widget/conversations",
        json={"embed_token": org.embed_token, "external_id": external_id},
    )

    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/html")
    assert api.status == 200  # the page created it; the API finds the same one
    assert body_attr(reply.body, "data-conversation-id") == api.body["id"]
    assert body_attr(reply.body, "data-external-id") == external_id
    assert api.body["end_user"]["display_name"] == "Ann"
    assert "<title>Chat with us</title>" in reply.body
    assert reply.headers["Cache-Control"] == "no-store"


async def test_widget_page_shows_the_given_title(factory):
    org = await factory.org()
    reply = await fetch(
        factory,
        "GET",
        page_path(embed_token=org.embed_token, session_id=uid(), title="Support Chat"),
    )
    assert reply.status == 200
    assert "<title>Support Chat</title>" in reply.body
    assert '<h1 class="cw-title">Support Chat</h1>' in reply.body


async def test_widget_page_escapes_every_value_it_renders(factory):
    org = await factory.org()
    hostile = '"><script>alert(1)</script>'

    reply = await fetch(
        factory,
        "GET",
        page_path(
            embed_token=org.embed_token, session_id=hostile, customer_name=hostile, title=hostile
        ),
    )

    assert reply.status == 200
    assert "<script>alert(1)" not in reply.body
    # Escaped (quotes and brackets as entities), so it reads back as the very value.
    assert unescape(body_attr(reply.body, "data-external-id")) == hostile
    title = re.search(r"<title>([^<]*)</title>", reply.body)
    assert title and unescape(title.group(1)) == hostile


async def test_widget_page_may_be_framed_by_the_tokens_allowed_origins_only(factory):
    org = await factory.org(allowed_origins=["https://shop.example", "http://localhost:8000"])

    reply = await fetch(factory, "GET", page_path(embed_token=org.embed_token, session_id=uid()))

    assert reply.status == 200
    policy = [d.strip() for d in reply.headers["Content-Security-Policy"].split(";")]
    assert "frame-ancestors https://shop.example http://localhost:8000" in policy
    assert "X-Frame-Options" not in reply.headers
    assert "script-src 'self'" in policy


async def test_widget_page_of_a_token_without_origins_may_be_framed_anywhere(factory):
    org = await factory.org()

    reply = await fetch(factory, "GET", page_path(embed_token=org.embed_token, session_id=uid()))

    policy = [d.strip() for d in reply.headers["Content-Security-Policy"].split(";")]
    assert "frame-ancestors *" in policy
    assert "X-Frame-Options" not in reply.headers


async def test_other_html_pages_still_refuse_other_sites_frames(factory):
    reply = await fetch(factory, "GET", "/auth/login")
    assert "frame-ancestors 'self'" in reply.headers["Content-Security-Policy"]
    assert reply.headers["X-Frame-Options"] == "SAMEORIGIN"


async def test_widget_page_with_an_unknown_token_is_a_forbidden_page(factory):
    reply = await fetch(factory, "GET", page_path(embed_token="ew_unknown-token", session_id=uid()))

    assert reply.status == 403
    assert reply.headers["Content-Type"].startswith("text/html")
    assert "This chat is not available." in reply.body
    assert "X-Frame-Options" not in reply.headers


async def test_widget_page_with_a_revoked_token_is_forbidden_and_creates_nothing(factory):
    org = await factory.org()
    agent = await factory.owner(org)
    await revoke(factory, org)

    reply = await fetch(factory, "GET", page_path(embed_token=org.embed_token, session_id=uid()))

    assert reply.status == 403
    assert "This chat is not available." in reply.body
    status, listed = await factory.get("/api/conversations/?filter=all", agent)
    assert status == 200 and listed == []


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"session_id": "visitor"},
        {"embed_token": "TOKEN"},
        {"embed_token": "TOKEN", "session_id": ""},
        {"embed_token": "TOKEN", "session_id": "x" * 256},
        {"embed_token": "TOKEN", "session_id": "v", "title": ""},
        {"embed_token": "TOKEN", "session_id": "v", "colour": "red"},
    ],
)
async def test_widget_page_with_missing_or_bad_parameters_is_a_bad_request_page(factory, query):
    org = await factory.org()
    agent = await factory.owner(org)
    query = {k: (org.embed_token if v == "TOKEN" else v) for k, v in query.items()}

    reply = await fetch(factory, "GET", "/chat-widget?" + urlencode(query))

    assert reply.status == 400, reply.body
    assert reply.headers["Content-Type"].startswith("text/html")
    assert 'role="alert"' in reply.body
    status, listed = await factory.get("/api/conversations/?filter=all", agent)
    assert status == 200 and listed == []


# ---- the page's assets ---------------------------------------------------------------------


def asset_urls(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/chat-widget/assets/[^"]+)"', html)


async def test_widget_page_links_versioned_assets_cached_for_a_year(factory):
    org = await factory.org()
    page = await fetch(factory, "GET", page_path(embed_token=org.embed_token, session_id=uid()))
    urls = asset_urls(page.body)

    assert {u.split("?")[0].removeprefix("/chat-widget/assets/") for u in urls} == {
        "shared/render.css",
        "widget/widget.css",
        "widget/widget.js",
        # The modules widget.js imports, preloaded.
        "shared/render.js",
        "shared/format.js",
        "seqgap.js",
        "socket.io.min.js",
    }
    for url in urls:
        reply = await fetch(factory, "GET", url)
        assert reply.status == 200, url
        assert "immutable" in reply.headers["Cache-Control"], url
        assert reply.headers["Content-Type"].split(";")[0] in ("text/javascript", "text/css")


async def test_socket_io_client_is_the_npm_build_served_as_is(factory):
    org = await factory.org()
    page = await fetch(factory, "GET", page_path(embed_token=org.embed_token, session_id=uid()))
    (url,) = [u for u in asset_urls(page.body) if "socket.io.min.js" in u]

    async with factory.http.get(factory.url + url) as resp:
        served = await resp.read()

    assert served == SOCKET_IO_CLIENT.read_bytes()


async def test_unknown_asset_is_not_found(factory):
    reply = await fetch(factory, "GET", "/chat-widget/assets/..%2Fembed.js")
    assert reply.status == 404
    # The agent app's code is not the widget's.
    reply = await fetch(factory, "GET", "/chat-widget/assets/inbox/main.js")
    assert reply.status == 404


async def test_widget_page_with_all_its_scripts_stays_under_sixty_kib_gzipped(factory, capsys):
    org = await factory.org()
    page = await fetch(factory, "GET", page_path(embed_token=org.embed_token, session_id=uid()))
    sizes = {"page": gz(page.body)}
    for url in asset_urls(page.body):
        async with factory.http.get(factory.url + url) as resp:
            sizes[url.split("?")[0].removeprefix("/chat-widget/assets/")] = gz(await resp.read())

    total = sum(sizes.values())
    with capsys.disabled():
        print(f"\n[size] widget page gzipped: {sizes}, total {total} bytes")
    # The page, two stylesheets, socket.io and widget.js with every module it imports.
    assert len(sizes) == 8, sizes
    assert total < PAGE_MAX_GZIP, sizes


async def test_a_module_imports_its_dependencies_by_their_current_versions(factory):
    # A module cached for a year must import the version of its dependency it was built with.
    org = await factory.org()
    page = await fetch(factory, "GET", page_path(embed_token=org.embed_token, session_id=uid()))
    urls = {u.split("?")[0].removeprefix("/chat-widget/assets/"): u for u in asset_urls(page.body)}

    widget = await fetch(factory, "GET", urls["widget/widget.js"])

    for dep in ("seqgap.js", "shared/render.js", "shared/format.js"):
        version = urls[dep].split("?v=")[1]
        assert f'from "../{dep}?v={version}"' in widget.body, dep
