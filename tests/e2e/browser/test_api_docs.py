"""The API reference page in a real browser: served without a session, from the platform
itself (no CDN), it renders the OpenAPI document's operations."""

from __future__ import annotations

from playwright.async_api import expect


async def test_the_reference_page_renders_the_documented_operations(browser, factory):
    context = await browser.new_context()
    page = await context.new_page()
    foreign: list[str] = []
    page.on(
        "request",
        lambda req: foreign.append(req.url) if not req.url.startswith(factory.url) else None,
    )
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        await page.goto(factory.url + "/api/docs")
        await expect(page.locator(".swagger-ui .title")).to_contain_text("chatd HTTP API")
        operation = page.locator(".opblock-summary-path", has_text="/api/v1/conversations")
        await expect(operation.first).to_be_visible()
        await expect(page.locator(".opblock-tag", has_text="Integration API")).to_be_visible()
    finally:
        await context.close()
    assert errors == []
    assert [u for u in foreign if not u.startswith("data:")] == []
