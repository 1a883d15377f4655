"""Set-up through the services and the public API, never raw rows.

`Factory` makes organizations, agents, logged-in agent clients, visitors and conversations
against a running test server, and records what each Socket.IO client receives.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import socketio

from rest.keys import SERVICES

PASSWORD = "correct-horse-battery"
CONTRACT_EVENTS = (
    "message_received",
    "conversation_updated",
    "conversation_assigned",
    "conversation_resolved",
    "typing_indicator",
    "typing_cleared",
    "agent_status_changed",
    "messages_read",
    "error",
)


def uid(prefix: str = "") -> str:
    return prefix + uuid.uuid4().hex[:12]


class Recorder:
    """Every event one Socket.IO client receives, in order, with waiting helpers."""

    def __init__(self, client: socketio.AsyncClient) -> None:
        self.client = client
        self.events: list[tuple[str, Any]] = []
        self._changed = asyncio.Event()
        client.on("*", self._on_any)

    async def _on_any(self, event: str, data: Any = None) -> None:
        self.events.append((event, data))
        self._changed.set()

    def of(self, event: str) -> list[Any]:
        return [d for e, d in self.events if e == event]

    async def wait_for(self, event: str, predicate=None, timeout: float = 5.0, count: int = 1):
        """Wait until `count` events named `event` (matching predicate) arrived; return them."""

        def matching() -> list[Any]:
            return [d for d in self.of(event) if predicate is None or predicate(d)]

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(matching()) < count:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out waiting for {count} x {event!r}; got {self.events!r}"
                )
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass
        return matching()

    def clear(self) -> None:
        self.events.clear()

    async def call(self, event: str, data: Any = None, timeout: float = 10.0) -> Any:
        return await self.client.call(event, data, timeout=timeout)

    async def emit(self, event: str, data: Any = None) -> None:
        await self.client.emit(event, data)


@dataclass
class Org:
    org_id: str
    owner_id: str
    owner_email: str
    channel_id: str
    embed_token: str
    password: str = PASSWORD


@dataclass
class Agent:
    user_id: str
    email: str
    role: str
    org_id: str
    cookie: str = ""
    csrf: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Cookie": f"session={self.cookie}", "X-CSRFToken": self.csrf}


@dataclass
class Factory:
    server: Any
    _clients: list[socketio.AsyncClient] = field(default_factory=list)
    _http: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return self.server.base_url

    @property
    def services(self):
        return self.server.app[SERVICES]

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            # No cookie jar: every request names its agent explicitly.
            self._http = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        return self._http

    async def close(self) -> None:
        async def _close(c: socketio.AsyncClient) -> None:
            if not c.connected:
                return
            if c.transport() == "polling":
                # A graceful polling disconnect waits out the pending long-poll (ping interval).
                await c.eio.disconnect(abort=True)
            else:
                await c.disconnect()

        await asyncio.gather(*(_close(c) for c in self._clients))
        if self._http is not None:
            await self._http.close()

    # ---- organizations and agents -------------------------------------------------------

    async def org(self, allowed_origins: list[str] | None = None) -> Org:
        email = f"{uid('owner-')}@example.com"
        created = await self.services.orgs.bootstrap(
            uid("Org "), email, PASSWORD, allowed_origins or []
        )
        return Org(
            created["org_id"],
            created["user_id"],
            email,
            created["channel_id"],
            created["embed_token"],
        )

    async def agent(self, org: Org, role: str = "agent", login: bool = True) -> Agent:
        email = f"{uid(role + '-')}@example.com"
        created = await self.services.orgs.add_user(org.org_id, email, PASSWORD, role)
        agent = Agent(created["user_id"], email, role, org.org_id)
        if login:
            await self.login(agent)
        return agent

    async def owner(self, org: Org) -> Agent:
        agent = Agent(org.owner_id, org.owner_email, "owner", org.org_id)
        await self.login(agent)
        return agent

    async def login(self, agent: Agent) -> Agent:
        async with self.http.post(
            self.url + "/auth/login", json={"email": agent.email, "password": PASSWORD}
        ) as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.json()
            agent.cookie = resp.cookies["session"].value
            agent.csrf = body["csrf_token"]
        return agent

    # ---- visitors and conversations -----------------------------------------------------

    async def conversation(
        self, org: Org, external_id: str | None = None, name: str | None = None
    ) -> dict:
        external_id = external_id or uid("visitor-")
        body = {"embed_token": org.embed_token, "external_id": external_id}
        if name:
            body["customer_name"] = name
        async with self.http.post(self.url + "/chat-widget/conversations", json=body) as resp:
            assert resp.status in (200, 201), await resp.text()
            return await resp.json()

    # ---- Socket.IO clients --------------------------------------------------------------

    async def client(
        self, agent: Agent | None = None, transport: str = "websocket", headers=None
    ) -> Recorder:
        sio = socketio.AsyncClient(reconnection=False)
        rec = Recorder(sio)
        hdrs = dict(headers or {})
        if agent is not None:
            hdrs["Cookie"] = f"session={agent.cookie}"
        await sio.connect(self.url, headers=hdrs, transports=[transport], wait_timeout=10)
        self._clients.append(sio)
        return rec

    async def visitor(self, conv: dict, transport: str = "websocket", last_seq=None) -> Recorder:
        """A visitor's client joined to its conversation room."""
        rec = await self.client(transport=transport)
        payload = {"conversation_id": conv["id"], "external_id": conv["end_user"]["external_id"]}
        if last_seq is not None:
            payload["last_seq"] = last_seq
        ack = await rec.call("join_conversation", payload)
        assert "error" not in ack, ack
        return rec

    async def visitor_send(self, rec: Recorder, conv: dict, content: str = "Hello", **extra):
        payload = {
            "conversation_id": conv["id"],
            "content": content,
            "content_type": "text",
            "sender_type": "end_user",
            "external_id": conv["end_user"]["external_id"],
            **extra,
        }
        return await rec.call("send_message", payload)

    async def agent_send(self, rec: Recorder, conv: dict, content: str = "Hi", **extra):
        payload = {
            "conversation_id": conv["id"],
            "content": content,
            "content_type": "text",
            "sender_type": "agent",
            **extra,
        }
        return await rec.call("send_message", payload)

    # ---- REST ---------------------------------------------------------------------------

    async def get(self, path: str, agent: Agent | None = None, **kwargs):
        headers = agent.headers if agent else {}
        async with self.http.get(self.url + path, headers=headers, **kwargs) as resp:
            return resp.status, await _body(resp)

    async def post(self, path: str, agent: Agent | None = None, json=None, csrf=True, **kwargs):
        headers = dict(agent.headers) if agent else {}
        if not csrf:
            headers.pop("X-CSRFToken", None)
        headers.update(kwargs.pop("headers", {}))
        async with self.http.post(self.url + path, headers=headers, json=json, **kwargs) as resp:
            return resp.status, await _body(resp)

    async def message_count(self, conversation_id: str) -> int:
        from sqlalchemy import func, select

        from models import Message

        async with self.services.db.read() as s:
            return (
                await s.execute(
                    select(func.count())
                    .select_from(Message)
                    .where(Message.conversation_id == conversation_id)
                )
            ).scalar_one()


async def _body(resp: aiohttp.ClientResponse):
    if resp.content_type == "application/json":
        return await resp.json()
    return await resp.text()


async def quiet(seconds: float = 0.4) -> None:
    """Let in-flight events arrive before asserting that something did not."""
    await asyncio.sleep(seconds)
