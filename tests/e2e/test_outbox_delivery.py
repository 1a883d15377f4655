"""The outbox end to end: real server processes (tests/e2e/outbox_app.py, the platform with a
durable subscriber that records each delivery in a file), the guide's assignment flow over
the widget endpoint, Socket.IO and REST, a kill -9 between commit and delivery, and two
processes sharing one PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from pathlib import Path

import aiohttp
import pytest
import socketio
from sqlalchemy import select

from models import OutboxEvent
from server.db import create_engine
from tests.e2e.procs import ServerProcess, run_cli
from tests.factories import PASSWORD, Recorder, uid

_O = OutboxEvent.__table__
LEASE = 2.0
GUIDE_FLOW = [
    "conversation.created",
    "message.created",  # the visitor's
    "conversation.assigned",
    "message.created",  # the agent's reply
    "conversation.resolved",
]


class Outbox:
    """One test's durable subscriber: its name, its delivery log, its hold marker."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.name = uid("e2e-")
        self.log = tmp_path / "deliveries.jsonl"
        self.hold = tmp_path / "hold"
        self.database_url = database_url

    def env(self, lease: float = LEASE) -> dict[str, str]:
        return {
            "OUTBOX_TEST_SUBSCRIBER": self.name,
            "OUTBOX_TEST_LOG": str(self.log),
            "OUTBOX_TEST_HOLD": str(self.hold),
            "CHATD_OUTBOX_LEASE_SECONDS": str(lease),
            "CHATD_OUTBOX_POLL_SECONDS": "0.2",
            # Delivered rows are kept (marked done), so that the test reads what was delivered.
            "CHATD_OUTBOX_RETENTION_SECONDS": "3600",
        }

    def deliveries(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    async def rows(self) -> list:
        engine = create_engine(self.database_url)
        try:
            async with engine.connect() as conn:
                stmt = select(_O).where(_O.c.subscriber == self.name).order_by(_O.c.id)
                return (await conn.execute(stmt)).all()
        finally:
            await engine.dispose()

    async def wait_all_done(self, count: int, timeout: float = 30.0) -> list:
        """Poll (another process writes them) until `count` rows are done, with a deadline."""
        deadline = time.monotonic() + timeout
        while True:
            rows = await self.rows()
            if len(rows) == count and all(r.status == "done" for r in rows):
                return rows
            assert time.monotonic() < deadline, [(r.id, r.event, r.status) for r in rows]
            await asyncio.sleep(0.1)


class Clients:
    def __init__(self) -> None:
        self.sockets: list[socketio.AsyncClient] = []
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())

    async def connect(self, url: str, cookie: str | None = None) -> Recorder:
        sio = socketio.AsyncClient(reconnection=False)
        rec = Recorder(sio)
        headers = {"Cookie": f"session={cookie}"} if cookie else {}
        await sio.connect(url, headers=headers, transports=["websocket"], wait_timeout=10)
        self.sockets.append(sio)
        return rec

    async def login(self, url: str, email: str) -> tuple[str, str]:
        async with self.http.post(
            url + "/auth/login", json={"email": email, "password": PASSWORD}
        ) as resp:
            assert resp.status == 200, await resp.text()
            return resp.cookies["session"].value, (await resp.json())["csrf_token"]

    async def close(self) -> None:
        for s in self.sockets:
            if s.connected:
                await s.disconnect()
        self.sockets = []

    async def aclose(self) -> None:
        await self.close()
        await self.http.close()


@pytest.fixture
async def clients():
    c = Clients()
    yield c
    await c.aclose()


def bootstrap(env: dict[str, str]) -> dict:
    email = f"{uid('owner-')}@example.com"
    out = run_cli(
        "bootstrap",
        "--org",
        uid("Org "),
        "--email",
        email,
        "--password",
        PASSWORD,
        "--json",
        env=env,
    )
    data = json.loads(out.strip().splitlines()[-1])
    data["email"] = email
    return data


async def guide_flow(clients: Clients, visitor_url: str, agent_url: str, org: dict, n: int):
    """The guide's assignment flow: the visitor opens a conversation (widget endpoint) and
    writes, the agent claims it and replies over Socket.IO, and resolves it over REST.
    Returns the conversation's id once every step was acknowledged (committed)."""
    body = {"embed_token": org["embed_token"], "external_id": uid("visitor-")}
    async with clients.http.post(visitor_url + "/chat-widget/conversations", json=body) as resp:
        assert resp.status in (200, 201), await resp.text()
        conv = await resp.json()
    ext = conv["end_user"]["external_id"]
    visitor = await clients.connect(visitor_url)
    ack = await visitor.call(
        "join_conversation", {"conversation_id": conv["id"], "external_id": ext}
    )
    assert "error" not in ack, ack
    ack = await visitor.call(
        "send_message",
        {
            "conversation_id": conv["id"],
            "content": f"Hello {n}",
            "content_type": "text",
            "sender_type": "end_user",
            "external_id": ext,
        },
    )
    assert ack.get("seq") == 1, ack

    cookie, csrf = await clients.login(agent_url, org["email"])
    agent = await clients.connect(agent_url, cookie)
    claim = await agent.call("claim_conversation", {"conversation_id": conv["id"]})
    assert "error" not in claim, claim
    reply = await agent.call(
        "send_message",
        {
            "conversation_id": conv["id"],
            "content": f"Hi {n}",
            "content_type": "text",
            "sender_type": "agent",
        },
    )
    assert reply.get("seq") == 2, reply
    async with clients.http.post(
        f"{agent_url}/api/conversations/{conv['id']}/resolve",
        json={"tags": ["done"]},
        headers={"Cookie": f"session={cookie}", "X-CSRFToken": csrf},
    ) as resp:
        assert resp.status == 200, await resp.text()
    return conv["id"]


def assert_in_order_per_conversation(rows: list, deliveries: list[dict]) -> None:
    """Every row delivered; per conversation, deliveries in outbox-id order, and in the
    guide's order of events, with the messages in seq order."""
    assert {d["outbox_id"] for d in deliveries} == {r.id for r in rows}
    per_conv = defaultdict(list)
    for d in deliveries:
        per_conv[d["conversation_id"]].append(d)
    for conv_id, got in per_conv.items():
        ids = [d["outbox_id"] for d in got]
        assert ids == sorted(ids), (conv_id, ids)
        first_time = list(dict.fromkeys(ids))
        events = [next(d["event"] for d in got if d["outbox_id"] == i) for i in first_time]
        assert events == GUIDE_FLOW, (conv_id, events)
        seqs = [d["seq"] for d in got if d["seq"] is not None]
        assert seqs == sorted(seqs)


@pytest.fixture
def server_env(base_settings, tmp_path) -> tuple[dict[str, str], str]:
    """The environment of the test's server processes and their database URL: the suite's
    PostgreSQL (+ Redis) in that pass, a SQLite file of the test's own in the embedded one."""
    env = {"CHATD_DEMO": "false", "CHATD_DATA_DIR": str(tmp_path / "data")}
    if base_settings.database_url.startswith("postgresql"):
        env["DATABASE_URL"] = base_settings.database_url
        if base_settings.redis_url:
            env["REDIS_URL"] = base_settings.redis_url
        return env, base_settings.database_url
    url = f"sqlite+aiosqlite:///{tmp_path / 'outbox.sqlite3'}"
    env["DATABASE_URL"] = url
    env["REDIS_URL"] = ""
    return env, url


async def test_events_committed_before_a_kill_9_are_delivered_after_the_restart(
    server_env, clients, tmp_path
):
    env, database_url = server_env
    outbox = Outbox(tmp_path, database_url)
    env = {**env, **outbox.env()}
    outbox.hold.touch()  # commits go on, deliveries wait
    org = bootstrap(env)

    first = ServerProcess(env, tmp_path / "first.log", module="tests.e2e.outbox_app")
    try:
        await first.wait_healthy()
        conv_ids = [await guide_flow(clients, first.url, first.url, org, n) for n in range(3)]
        rows = await outbox.rows()
        # Committed: every durable event has its row; delivered: none.
        assert len(rows) == 3 * len(GUIDE_FLOW)
        assert {r.conversation_id for r in rows} == set(conv_ids)
        assert outbox.deliveries() == []
        # The heads of the three conversations are claimed (the subscriber holds them).
        deadline = time.monotonic() + 10
        while not (held := [r for r in await outbox.rows() if r.locked_until is not None]):
            assert time.monotonic() < deadline, "no row was claimed"
            await asyncio.sleep(0.05)
        await clients.close()
        first.kill()  # SIGKILL between commit and delivery
    finally:
        first.stop()

    assert outbox.deliveries() == []
    outbox.hold.unlink()
    second = ServerProcess(env, tmp_path / "second.log", module="tests.e2e.outbox_app")
    try:
        await second.wait_healthy()
        rows = await outbox.wait_all_done(3 * len(GUIDE_FLOW), timeout=30)
    finally:
        second.stop()

    deliveries = outbox.deliveries()
    assert_in_order_per_conversation(rows, deliveries)
    # The rows the killed process held were delivered again: their attempt there counts
    # (a held delivery also times out at 90% of the lease and is retried: at least 2).
    attempts = {d["outbox_id"]: d["attempt"] for d in deliveries}
    assert all(attempts[r.id] >= 2 for r in held), [(r.id, attempts[r.id]) for r in held]
    assert {d["pid"] for d in deliveries} == {second.proc.pid}


async def test_two_processes_deliver_every_row_exactly_once(server_env, clients, tmp_path):
    env, database_url = server_env
    if not database_url.startswith("postgresql") or not env.get("REDIS_URL"):
        pytest.skip("two processes need PostgreSQL and Redis (SQLite: one process)")
    outbox = Outbox(tmp_path, database_url)
    # The default lease: a short one expires under a loaded machine's scheduling delays and
    # the row is (rightly) delivered again, which is not what this test is about.
    env = {**env, **outbox.env(lease=30.0)}
    org = bootstrap(env)
    procs = [
        ServerProcess(env, tmp_path / f"server-{i}.log", module="tests.e2e.outbox_app")
        for i in range(2)
    ]
    try:
        await asyncio.gather(*(p.wait_healthy() for p in procs))
        a, b = procs
        # Visitors on one process, agents on the other, both ways round, concurrently.
        conv_ids = await asyncio.gather(
            *(guide_flow(clients, (a, b)[n % 2].url, (b, a)[n % 2].url, org, n) for n in range(8))
        )
        rows = await outbox.wait_all_done(8 * len(GUIDE_FLOW), timeout=30)
        assert {r.conversation_id for r in rows} == set(conv_ids)
        deliveries = outbox.deliveries()
    finally:
        for p in procs:
            p.stop()

    assert_in_order_per_conversation(rows, deliveries)
    ids = [d["outbox_id"] for d in deliveries]
    assert len(ids) == len(set(ids)) == len(rows)  # exactly once: nobody crashed
    assert {d["attempt"] for d in deliveries} == {1}
