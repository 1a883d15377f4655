"""Helpers for the REST tests: raw HTTP with full access to headers and cookies, clients on
other loopback addresses, conversation states set up through the services, and the guide's
shapes.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from html.parser import HTMLParser
from http.cookies import SimpleCookie
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from server.actors import AgentActor, EndUserActor
from server.services.conversations import NewMessage
from tests.factories import Agent, Factory, Org

CONVERSATION_KEYS = {"id", "end_user", "channel_id", "active_session", "created_at", "updated_at"}
# The guide's fields, and the platform's additions (docs/bots.md): what a bot collected, who
# answers the session.
END_USER_KEYS = {"id", "display_name", "external_id", "attributes"}
SESSION_KEYS = {
    "id",
    "status",
    "assigned_agent_id",
    "tags",
    "handled_by",
    "bot_id",
    "handed_off_at",
}
HISTORY_ITEM_KEYS = {
    "id",
    "conversation_id",
    "session_id",
    "seq",
    "sender_type",
    "sender_id",
    "content_type",
    "content",
    "rich_media",
    "read_by",
    "flagged",
    "created_at",
}
WIDGET_HISTORY_ITEM_KEYS = HISTORY_ITEM_KEYS - {"session_id", "read_by", "flagged"}
USER_KEYS = {"id", "organization_id", "email", "display_name", "role"}


@dataclass
class Reply:
    status: int
    body: Any
    headers: CIMultiDictProxy[str]
    cookies: SimpleCookie

    def set_cookie_header(self, name: str) -> str | None:
        """The raw Set-Cookie line for `name`, to check its attributes as the browser sees them."""
        for line in self.headers.getall("Set-Cookie", []):
            if line.startswith(name + "="):
                return line
        return None


async def fetch(
    factory: Factory,
    method: str,
    path: str,
    *,
    cookies: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    http: aiohttp.ClientSession | None = None,
    **kwargs: Any,
) -> Reply:
    """One request that does not follow redirects and names its cookies explicitly."""
    hdrs = dict(headers or {})
    if cookies:
        hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    kwargs.setdefault("allow_redirects", False)
    client = http or factory.http
    async with client.request(method, factory.url + path, headers=hdrs, **kwargs) as resp:
        if resp.content_type == "application/json":
            body = await resp.json()
        else:
            body = await resp.text()
        return Reply(resp.status, body, resp.headers, resp.cookies)


@asynccontextmanager
async def elsewhere() -> AsyncIterator[aiohttp.ClientSession]:
    """A client on a fresh loopback address (127.x.y.z).

    Login throttling also counts failures per client address, and with Redis that count
    outlives the test server; tests that fail logins on purpose do it from here so that they
    never throttle the 127.0.0.1 the other tests log in from.
    """
    address = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(2, 254)}"
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as http:
        yield http


class _MetaTags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.metas: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "meta":
            self.metas.append(dict(attrs))


def csrf_meta(html: str) -> str:
    """The content of the page's <meta name="csrf-token">, which must be present."""
    parser = _MetaTags()
    parser.feed(html)
    found = [m.get("content") or "" for m in parser.metas if m.get("name") == "csrf-token"]
    assert len(found) == 1, html
    return found[0]


def assert_error(body: Any, code: str) -> None:
    """The one JSON error shape: {"error": {"code", "message", ...}}."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body


def assert_iso(value: Any) -> None:
    assert isinstance(value, str), value
    datetime.fromisoformat(value)


def assert_conversation_shape(conv: Any) -> None:
    assert set(conv) == CONVERSATION_KEYS, conv
    assert set(conv["end_user"]) == END_USER_KEYS, conv
    if conv["active_session"] is not None:
        assert set(conv["active_session"]) == SESSION_KEYS, conv
        assert conv["active_session"]["status"] == "open"
        assert isinstance(conv["active_session"]["tags"], list)
    assert_iso(conv["created_at"])
    assert_iso(conv["updated_at"])


# ---- conversation states, set up through the services ------------------------------------


def actor(agent: Agent) -> AgentActor:
    return AgentActor(agent.user_id, agent.org_id, agent.role, agent.email)


async def visitor_says(factory: Factory, conv: dict, content: str = "Hello", **extra) -> dict:
    message, _ = await factory.services.conversations.send_message(
        EndUserActor(conv["end_user"]["external_id"]), NewMessage(conv["id"], content, **extra)
    )
    return message


async def agent_says(factory: Factory, agent: Agent, conv: dict, content: str = "Hi") -> dict:
    message, _ = await factory.services.conversations.send_message(
        actor(agent), NewMessage(conv["id"], content)
    )
    return message


async def waiting_conversation(factory: Factory, org: Org, name: str | None = None) -> dict:
    """A conversation whose visitor wrote once: an open, unassigned session."""
    conv = await factory.conversation(org, name=name)
    await visitor_says(factory, conv)
    return conv


async def assigned_conversation(factory: Factory, org: Org, agent: Agent) -> dict:
    conv = await waiting_conversation(factory, org)
    await factory.services.conversations.assign_conversation(actor(agent), conv["id"])
    return conv


async def resolved_conversation(factory: Factory, org: Org, agent: Agent) -> dict:
    conv = await assigned_conversation(factory, org, agent)
    await factory.services.conversations.resolve(actor(agent), conv["id"], [])
    return conv


async def current(factory: Factory, agent: Agent, conv: dict) -> dict:
    """The conversation as the agent's REST API shows it now."""
    status, body = await factory.get(f"/api/conversations/{conv['id']}", agent)
    assert status == 200, body
    return body
