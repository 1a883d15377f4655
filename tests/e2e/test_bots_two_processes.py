"""Flow bots across processes: two `chatd serve` on one PostgreSQL and one Redis, end users on
both. Whichever process delivers an outbox row, every end user's message gets exactly one
answer: at least once (a killed process's leased rows are taken over when the lease expires)
plus replies whose client_message_ids come from the message answered (a redelivery stores
nothing twice)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.e2e.test_two_processes import (
    Clients,
    bootstrap,
    multi_process_env,
    open_conversation,
)
from tests.factories import Recorder, quiet, uid

# A killed process's claims are taken over this soon (the default is 30 s).
LEASE_SECONDS = 3.0
GREETING = "Hi, I am Pingbot."
FLOW = {
    "greeting": [GREETING],
    "intents": [{"name": "ping", "keywords": ["ping"], "replies": ["pong"]}],
}


@pytest.fixture
def cluster_env(base_settings):
    return multi_process_env(
        base_settings,
        CHATD_OUTBOX_LEASE_SECONDS=str(LEASE_SECONDS),
        CHATD_OUTBOX_POLL_SECONDS="0.2",
    )


class Team:
    """The organization's owner, logged in on process A, with its flow bot attached."""

    def __init__(self, clients: Clients, url: str, org: dict, cookie: str, csrf: str) -> None:
        self.clients = clients
        self.url = url
        self.org = org
        self.headers = {"Cookie": f"session={cookie}", "X-CSRFToken": csrf}
        self.bot: dict = {}

    @classmethod
    async def with_bot(cls, clients: Clients, url: str, env: dict) -> Team:
        org = bootstrap(env)
        cookie, csrf = await clients.login(url, org["email"])
        team = cls(clients, url, org, cookie, csrf)
        status, team.bot = await team.send(
            "POST", "/api/admin/bots", {"name": "Pingbot", "kind": "flow", "flow": FLOW}
        )
        assert status == 201, team.bot
        status, channel = await team.send(
            "PUT", f"/api/admin/channels/{org['channel_id']}/bot", {"bot_id": team.bot["id"]}
        )
        assert status == 200 and channel["bot_id"] == team.bot["id"], channel
        # The other process learns of the organization's bot within a second.
        await asyncio.sleep(1.5)
        return team

    async def send(self, method: str, path: str, body=None):
        async with self.clients.http.request(
            method, self.url + path, headers=self.headers, json=body
        ) as resp:
            return resp.status, await resp.json()

    async def history(self, conv_id: str) -> list[dict]:
        status, items = await self.send("GET", f"/api/conversations/{conv_id}/messages?limit=200")
        assert status == 200, items
        return items


class Visitor:
    """An end user in one conversation, connected to one process; `say` sends with a
    client_message_id and, when that process is gone, reconnects to `fallback` and sends the
    same message again (the client's retry)."""

    def __init__(self, clients: Clients, conv: dict, url: str, fallback: str | None = None):
        self.clients = clients
        self.conv = conv
        self.url = url
        self.fallback = fallback
        self.rec: Recorder | None = None
        self.retried = 0

    async def connect(self, url: str) -> None:
        self.url = url
        self.rec = await self.clients.connect(url)
        joined = await self.rec.call(
            "join_conversation",
            {
                "conversation_id": self.conv["id"],
                "external_id": self.conv["end_user"]["external_id"],
            },
        )
        assert "error" not in joined, joined

    async def say(self, content: str, client_message_id: str) -> dict:
        payload = {
            "conversation_id": self.conv["id"],
            "content": content,
            "content_type": "text",
            "sender_type": "end_user",
            "external_id": self.conv["end_user"]["external_id"],
            "client_message_id": client_message_id,
        }
        for _ in range(3):
            try:
                ack = await self.rec.call("send_message", payload, timeout=2.0)
            except Exception:  # noqa: BLE001 - the process died: no ack, maybe stored
                assert self.fallback and self.url != self.fallback, f"{content}: no ack"
                self.retried += 1
                await self.connect(self.fallback)
                continue
            assert "error" not in ack, ack
            return ack
        raise AssertionError(f"{content} was never acknowledged")


def expected_answers(pings: int) -> list[tuple[int, str]]:
    """(index of the end user's message answered, reply) in order: the greeting and a pong
    for the first ping, a pong for each other one."""
    return [(0, GREETING)] + [(k, "pong") for k in range(pings)]


def answered_exactly_once(items: list[dict], pings: int, bot_id: str) -> str | None:
    """None if the history is the pings in order, each followed (not necessarily at once) by
    exactly its reply(ies), with gap-free seq; else what is wrong."""
    if [m["seq"] for m in items] != list(range(1, len(items) + 1)):
        return f"seq not gap-free: {[m['seq'] for m in items]}"
    mine = [m["content"] for m in items if m["sender_type"] == "end_user"]
    if mine != [f"ping {k}" for k in range(pings)]:
        return f"end user's messages: {mine}"
    expected = expected_answers(pings)
    replies = [m for m in items if m["sender_type"] == "bot"]
    if [m["content"] for m in replies] != [reply for _, reply in expected]:
        return f"bot replies: {[m['content'] for m in replies]}"
    if any(m["sender_id"] != bot_id for m in replies):
        return "a reply is not the bot's"
    seen, answer = 0, 0
    for m in items:
        if m["sender_type"] == "end_user":
            seen += 1
        elif m["sender_type"] == "bot":
            if expected[answer][0] >= seen:
                return f"reply {answer} ({m['content']}) came before its message"
            answer += 1
    return None


async def wait_answered(team: Team, convs: list[dict], pings: int, timeout: float) -> None:
    """Every conversation is answered exactly once per message; then, after a quiet while
    (a redelivery would have stored its duplicates by then), still so."""
    deadline = time.monotonic() + timeout
    pending = list(convs)
    problems: dict[str, str] = {}
    while pending:
        for conv in list(pending):
            problem = answered_exactly_once(await team.history(conv["id"]), pings, team.bot["id"])
            if problem is None:
                pending.remove(conv)
            else:
                problems[conv["id"]] = problem
        if pending:
            assert time.monotonic() < deadline, {c["id"]: problems[c["id"]] for c in pending}
            await asyncio.sleep(0.2)
    await quiet(1.0)
    for conv in convs:
        items = await team.history(conv["id"])
        assert answered_exactly_once(items, pings, team.bot["id"]) is None, items


async def open_conversations(clients, team, procs, count: int, fallback: str | None = None):
    """`count` conversations opened and joined on the processes in turn."""
    convs, visitors = [], []
    for i in range(count):
        url = procs[i % len(procs)].url
        conv = await open_conversation(clients, url, team.org["embed_token"])
        visitor = Visitor(clients, conv, url, fallback)
        await visitor.connect(url)
        convs.append(conv)
        visitors.append(visitor)
    return convs, visitors


async def test_each_message_gets_exactly_one_answer_whichever_process_takes_it(
    cluster, clients, cluster_env
):
    a, b = cluster
    team = await Team.with_bot(clients, a.url, cluster_env)
    convs, visitors = await open_conversations(clients, team, (a, b), 6)
    pings = 5

    async def burst(visitor: Visitor) -> None:
        tag = uid()
        for k in range(pings):
            await visitor.say(f"ping {k}", f"{tag}-{k}")

    await asyncio.gather(*(burst(v) for v in visitors))
    await wait_answered(team, convs, pings, timeout=10)
    # Live too: each visitor got its bot's replies, whichever process wrote them.
    for visitor in visitors:
        got = await visitor.rec.wait_for(
            "message_received", lambda m: m["sender_type"] == "bot", count=pings + 1
        )
        assert [m["content"] for m in got] == [GREETING] + ["pong"] * pings


async def test_a_process_killed_mid_burst_leaves_each_message_answered_exactly_once(
    cluster, clients, cluster_env
):
    a, b = cluster
    team = await Team.with_bot(clients, a.url, cluster_env)
    convs, visitors = await open_conversations(clients, team, (a, b), 6, fallback=a.url)
    pings = 8
    acked = 0

    async def burst(visitor: Visitor) -> None:
        nonlocal acked
        tag = uid()
        for k in range(pings):
            await visitor.say(f"ping {k}", f"{tag}-{k}")
            acked += 1
            if visitor.url == b.url and acked >= len(visitors) * pings // 2:
                # SIGKILL just after B committed a message: B is most likely delivering its
                # outbox rows to the bot, which stay leased by the dead process. Its sockets
                # drop with it.
                b.kill()
            await asyncio.sleep(0.05)

    await asyncio.gather(*(burst(v) for v in visitors))
    assert b.proc.returncode is not None
    # The visitors of B came back on A and sent again what B had not acknowledged.
    assert sum(v.retried for v in visitors[1::2]) >= 3
    await wait_answered(team, convs, pings, timeout=LEASE_SECONDS + 10)
