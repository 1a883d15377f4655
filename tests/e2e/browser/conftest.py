"""Browser fixtures: Debian's Chromium driven by Playwright, and a host site on another origin.

Screenshots go to test-artifacts/ (kept by CI as the suite's artifacts).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import async_playwright

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser(single_pass):
    """Browser tests run once per CI run (the embedded-default pass): what a person sees does
    not depend on the backend, and the server paths they drive are covered on both."""
    assert Path(CHROMIUM).exists(), "Debian's chromium is required (apt-get install chromium)"  # noqa: ASYNC240
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        await b.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
async def host_site(aiohttp_server):
    """A customer's website on another origin (http://localhost:<port>, while the chat server
    is http://127.0.0.1:<port>). `await host_site.page(html)` publishes a page, returns its URL."""
    pages: dict[str, str] = {}

    async def serve(request: web.Request) -> web.Response:
        html = pages.get(request.match_info["name"])
        if html is None:
            raise web.HTTPNotFound()
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/{name}", serve)
    srv = await aiohttp_server(app, host="127.0.0.1")

    class Site:
        origin = f"http://localhost:{srv.port}"

        def page(self, html: str, name: str = "index.html") -> str:
            pages[name] = html
            return f"{self.origin}/{name}"

    return Site()
