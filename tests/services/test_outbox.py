"""The outbox: rows written in the same transaction as the change, delivered by the dispatcher
at least once, in order per conversation, with retries, a dead letter and leases.

Real databases (the suite's SQLite file or PostgreSQL); services built by the composition
root's wiring, with durable subscribers of the test's own (unique names: the rows of other
tests' subscribers are left alone by these dispatchers)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import defaultdict

import pytest
from sqlalchemy import func, select

from chatd.wiring import build_services
from models import Message, OutboxEvent
from server.actors import AgentActor, EndUserActor
from server.bus import DurableSubscriber
from server.domain_events import ConversationResolved
from server.errors import Conflict, Forbidden, NotFound
from server.outbox import Delivery, OutboxConfig, OutboxDispatcher
from server.services.message_writer import NewMessage
from tests.factories import PASSWORD, uid

_O = OutboxEvent.__table__

FAST = OutboxConfig(
    poll_seconds=0.1,
    batch_size=100,
    lease_seconds=5.0,
    max_attempts=10,
    backoff_base_seconds=0.05,
    backoff_cap_seconds=0.2,
    retention_seconds=3600.0,
)


class Recorder:
    """A durable subscriber's handler that records every delivery; `fail(delivery)` says
    whether to raise instead."""

    def __init__(self, name: str | None = None, fail=None, kinds=None, delay: float = 0.0):
        self.name = name or uid("sub-")
        self.fail = fail
        self.delay = delay
        self.attempts: list[tuple[float, Delivery]] = []
        self.delivered: list[Delivery] = []
        self.changed = asyncio.Event()
        self.subscriber = DurableSubscriber(
            self.name, self.handle, frozenset(kinds) if kinds else None
        )

    async def handle(self, delivery: Delivery) -> None:
        self.attempts.append((time.monotonic(), delivery))
        self.changed.set()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None and self.fail(delivery):
            raise RuntimeError(f"refused {delivery.outbox_id} attempt {delivery.attempt}")
        self.delivered.append(delivery)
        self.changed.set()

    async def wait_delivered(self, count: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.delivered) < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{len(self.delivered)} of {count} delivered in time"
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)


@pytest.fixture
async def make_services(base_settings):
    made = []

    async def make(*recorders: Recorder, config: OutboxConfig | None = FAST):
        """Services with these durable subscribers; `config=None`: no dispatcher."""
        services = build_services(base_settings)
        for r in recorders:
            services.bus.subscribe_durable(r.subscriber)
        services.outbox = (
            OutboxDispatcher(services.db, services.bus, config) if config is not None else None
        )
        await services.start()
        made.append(services)
        return services

    yield make
    for services in made:
        await services.close()


async def _org(services) -> dict:
    created = await services.orgs.bootstrap(uid("Org "), f"{uid('o-')}@example.com", PASSWORD)
    agent = await services.orgs.add_user(
        created["org_id"], f"{uid('a-')}@example.com", PASSWORD, "agent"
    )
    created["agent"] = AgentActor(agent["user_id"], created["org_id"], "agent")
    return created


async def _conversation(services, org) -> tuple[dict, EndUserActor]:
    external_id = uid("visitor-")
    conv, _ = await services.conversations.create_or_get_conversation(
        org["embed_token"], external_id
    )
    return conv, EndUserActor(external_id)


async def _rows(services, **where) -> list:
    stmt = select(_O).order_by(_O.c.id)
    for column, value in where.items():
        stmt = stmt.where(_O.c[column] == value)
    async with services.db.read() as conn:
        return (await conn.execute(stmt)).all()


async def _settled(services, subscriber: str, timeout: float = 10.0) -> list:
    """The subscriber's rows once none is pending (outcomes are recorded after the handler
    returned: polled, with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await _rows(services, subscriber=subscriber)
        if all(r.status != "pending" for r in rows):
            return rows
        assert time.monotonic() < deadline, "rows still pending"
        await asyncio.sleep(0.05)


def _send(services, actor, conv_id: str, content: str, **extra):
    return services.conversations.send_message(
        actor, NewMessage(conversation_id=conv_id, content=content, **extra)
    )


# ---- written in the same transaction ----------------------------------------------------


async def test_a_committed_use_case_writes_one_row_per_subscriber_that_wants_its_event(
    make_services,
):
    every = Recorder()
    resolved_only = Recorder(kinds={"conversation.resolved"})
    services = await make_services(every, resolved_only, config=None)
    org = await _org(services)
    conv, visitor = await _conversation(services, org)
    agent = org["agent"]

    await _send(services, visitor, conv["id"], "hello")
    await services.conversations.assign_conversation(agent, conv["id"])
    await _send(services, agent, conv["id"], "hi")
    await services.conversations.resolve(agent, conv["id"], ["done"])
    # An agent writing into the resolved conversation takes a new session: two events, one
    # statement on PostgreSQL.
    await _send(services, agent, conv["id"], "back again")

    rows = await _rows(services, subscriber=every.name)
    assert [r.event for r in rows] == [
        "conversation.created",
        "message.created",
        "conversation.assigned",
        "message.created",
        "conversation.resolved",
        "conversation.assigned",
        "message.created",
    ]
    assert {r.conversation_id for r in rows} == {conv["id"]}
    assert {r.organization_id for r in rows} == {org["org_id"]}
    assert all(r.status == "pending" and r.attempts == 0 for r in rows)
    messages = [r.payload["message"] for r in rows if r.event == "message.created"]
    assert [(m["seq"], m["content"]) for m in messages] == [
        (1, "hello"),
        (2, "hi"),
        (3, "back again"),
    ]
    resolved = await _rows(services, subscriber=resolved_only.name)
    assert [r.event for r in resolved] == ["conversation.resolved"]
    assert resolved[0].payload["tags"] == ["done"]
    assert resolved[0].payload["resolved_by"] == {"type": "agent", "id": agent.user_id}


async def test_a_rolled_back_use_case_writes_no_row(make_services):
    sub = Recorder()
    services = await make_services(sub, config=None)
    org = await _org(services)
    conv, visitor = await _conversation(services, org)
    before = len(await _rows(services, subscriber=sub.name))
    assert before == 1  # conversation.created

    # Refused by the service: nothing was changed, nothing is written.
    with pytest.raises(Conflict):
        await services.conversations.resolve(org["agent"], conv["id"])
    with pytest.raises(NotFound):
        await _send(services, EndUserActor(uid("stranger-")), conv["id"], "not mine")
    # A unit of work that raised an event and then failed.
    with pytest.raises(RuntimeError):
        async with services.db.unit_of_work() as uow:
            uow.raise_event(
                ConversationResolved(
                    org["org_id"], conv["id"], "s", [], "2026-01-01T00:00:00Z", {"type": "x"}
                )
            )
            raise RuntimeError("the use case failed after raising its event")
    assert len(await _rows(services, subscriber=sub.name)) == before


async def test_no_row_is_written_without_durable_subscribers(make_services):
    services = await make_services(config=None)
    org = await _org(services)
    conv, visitor = await _conversation(services, org)
    await _send(services, visitor, conv["id"], "hello")
    await services.conversations.assign_conversation(org["agent"], conv["id"])
    await services.conversations.resolve(org["agent"], conv["id"])
    assert await _rows(services, conversation_id=conv["id"]) == []


async def test_the_writers_batches_write_one_row_per_stored_message_and_none_for_refused(
    make_services,
):
    sub = Recorder(kinds={"message.created"})
    services = await make_services(sub, config=None)
    org = await _org(services)
    convs = [await _conversation(services, org) for _ in range(4)]
    # The last conversation is another agent's: our agent's messages there are refused.
    other = await services.orgs.add_user(
        org["org_id"], f"{uid('a-')}@example.com", PASSWORD, "agent"
    )
    held_by_other = AgentActor(other["user_id"], org["org_id"], "agent")
    await _send(services, convs[3][1], convs[3][0]["id"], "opens the session")
    await services.conversations.assign_conversation(held_by_other, convs[3][0]["id"])
    before = {r.payload["message"]["id"] for r in await _rows(services, subscriber=sub.name)}

    writer = services.conversations.writer
    sends = []
    for i in range(60):
        conv, visitor = convs[i % 4]
        if i % 4 == 3:
            sends.append(writer.send(org["agent"], NewMessage(conv["id"], f"refused {i}")))
        elif i % 10 == 1:
            sends.append(writer.send(EndUserActor(uid("x-")), NewMessage(conv["id"], "no")))
        elif i == 20:
            # A value PostgreSQL cannot store fails the batch's transaction: its messages are
            # written again one by one (SQLite stores it).
            sends.append(writer.send(visitor, NewMessage(conv["id"], "nul\x00here")))
        else:
            sends.append(
                writer.send(visitor, NewMessage(conv["id"], f"m{i}", client_message_id=f"c{i}"))
            )
    # Retries of stored messages: answered with the original, not stored again.
    sends += [
        writer.send(convs[0][1], NewMessage(convs[0][0]["id"], "m0", client_message_id="c0"))
        for _ in range(3)
    ]
    results = await asyncio.gather(*sends, return_exceptions=True)

    stored = {r[0]["id"] for r in results if isinstance(r, tuple) and r[1]}
    refused = [r for r in results if isinstance(r, Exception)]
    assert any(isinstance(r, Forbidden) for r in refused)
    assert any(isinstance(r, NotFound) for r in refused)
    assert len(stored) >= 40
    rows = [
        r
        for r in await _rows(services, subscriber=sub.name)
        if r.payload["message"]["id"] not in before
    ]
    written = [r.payload["message"]["id"] for r in rows]
    assert sorted(written) == sorted(stored)  # one row per stored message, none for refused
    async with services.db.read() as conn:
        messages = await conn.execute(
            select(func.count()).select_from(Message).where(Message.id.in_(written))
        )
    assert messages.scalar() == len(written)
    for conv, _ in convs:
        seqs = [r.payload["message"]["seq"] for r in rows if r.conversation_id == conv["id"]]
        assert seqs == sorted(seqs)  # ids follow seq within a conversation


# ---- the dispatcher -----------------------------------------------------------------------


async def test_rows_are_delivered_in_order_per_conversation_through_retries_with_backoff(
    make_services,
):
    config = OutboxConfig(
        poll_seconds=0.1,
        lease_seconds=5.0,
        max_attempts=10,
        backoff_base_seconds=0.2,
        backoff_cap_seconds=1.0,
        retention_seconds=3600.0,
    )

    def fail(d: Delivery) -> bool:
        # The second message of each conversation fails twice, then succeeds.
        return d.event.name == "message.created" and d.event.seq == 2 and d.attempt <= 2

    sub = Recorder(fail=fail, kinds={"message.created"})
    services = await make_services(sub, config=config)
    org = await _org(services)
    convs = [await _conversation(services, org) for _ in range(3)]
    for i in range(5):
        await asyncio.gather(*(_send(services, v, c["id"], f"m{i}") for c, v in convs))
    await sub.wait_delivered(15)

    by_conv = defaultdict(list)
    for d in sub.delivered:
        by_conv[d.event.conversation_id].append(d.event.seq)
    assert {k: v for k, v in by_conv.items()} == {c["id"]: [1, 2, 3, 4, 5] for c, _ in convs}
    ids = [d.outbox_id for d in sub.delivered if d.event.conversation_id == convs[0][0]["id"]]
    assert ids == sorted(ids)
    # Seq 2 was tried three times, each retry after its backoff (jitter: at least half).
    for conv, _ in convs:
        tries = [
            (t, d)
            for t, d in sub.attempts
            if d.event.conversation_id == conv["id"] and d.event.seq == 2
        ]
        assert [d.attempt for _, d in tries] == [1, 2, 3]
        assert tries[1][0] - tries[0][0] >= 0.2 * 0.5
        assert tries[2][0] - tries[1][0] >= 0.4 * 0.5
        # Nothing later in that conversation was handed over while seq 2 was pending.
        later = [
            t for t, d in sub.attempts if d.event.conversation_id == conv["id"] and d.event.seq > 2
        ]
        assert min(later) > tries[2][0]
    rows = await _settled(services, sub.name)
    assert {r.status for r in rows} == {"done"}
    retried = [r for r in rows if r.payload["message"]["seq"] == 2]
    assert all(r.attempts == 3 and "refused" in r.last_error for r in retried)


async def test_a_row_that_always_fails_is_dead_after_max_attempts_and_later_rows_proceed(
    make_services, caplog
):
    config = OutboxConfig(
        poll_seconds=0.1,
        lease_seconds=5.0,
        max_attempts=3,
        backoff_base_seconds=0.02,
        backoff_cap_seconds=0.05,
        retention_seconds=3600.0,
    )
    sub = Recorder(fail=lambda d: d.event.message["content"] == "poison", kinds={"message.created"})
    services = await make_services(sub, config=config)
    org = await _org(services)
    conv, visitor = await _conversation(services, org)
    for content in ("a", "poison", "b", "c"):
        await _send(services, visitor, conv["id"], content)
    await sub.wait_delivered(3)

    assert [d.event.message["content"] for d in sub.delivered] == ["a", "b", "c"]
    poison_tries = [d.attempt for _, d in sub.attempts if d.event.message["content"] == "poison"]
    assert poison_tries == [1, 2, 3]
    rows = await _settled(services, sub.name)
    dead = [r for r in rows if r.status == "dead"]
    assert len(dead) == 1 and dead[0].payload["message"]["content"] == "poison"
    assert dead[0].attempts == 3 and "refused" in dead[0].last_error
    assert "is dead after 3 attempts" in caplog.text


async def test_a_backlog_drains_in_runs_per_conversation_not_a_row_per_round(make_services):
    """Rows written while no dispatcher ran (a subscriber down for a while): each round claims
    a conversation's head and the run behind it, delivered in order by one task, so 2 x 60
    rows take a handful of rounds (a row per conversation per round would take 60)."""
    name = uid("sub-")
    writer = await make_services(Recorder(name=name), config=None)
    org = await _org(writer)
    convs = [await _conversation(writer, org) for _ in range(2)]
    for i in range(60):
        await asyncio.gather(*(_send(writer, v, c["id"], f"m{i}") for c, v in convs))

    sub = Recorder(name=name)
    services = await make_services(config=None)
    services.bus.subscribe_durable(sub.subscriber)
    dispatcher = OutboxDispatcher(
        services.db, services.bus, OutboxConfig(poll_seconds=0.1, batch_size=50)
    )
    rounds = 0
    counted = dispatcher._round

    async def counting(claim: bool = True) -> bool:
        nonlocal rounds
        rounds += claim
        return await counted(claim)

    dispatcher._round = counting
    await dispatcher.start()
    try:
        await sub.wait_delivered(122)
        for conv, _ in convs:
            seqs = [
                d.event.seq
                for d in sub.delivered
                if d.event.name == "message.created" and d.event.conversation_id == conv["id"]
            ]
            assert seqs == list(range(1, 61))
        assert rounds <= 10, rounds
    finally:
        await dispatcher.stop()
    assert {r.status for r in await _settled(services, name)} == {"done"}


async def test_a_failure_in_a_run_releases_the_rest_which_wait_for_it(make_services):
    name = uid("sub-")
    writer = await make_services(Recorder(name=name), config=None)
    org = await _org(writer)
    conv, visitor = await _conversation(writer, org)
    for i in range(6):
        await _send(writer, visitor, conv["id"], f"m{i}")

    sub = Recorder(
        name=name,
        fail=lambda d: d.event.name == "message.created" and d.event.seq == 3 and d.attempt == 1,
    )
    await make_services(sub)
    await sub.wait_delivered(7)
    tried = [(d.event.name, getattr(d.event, "seq", None), d.attempt) for _, d in sub.attempts]
    assert tried == [("conversation.created", None, 1)] + [
        ("message.created", seq, 1) for seq in (1, 2, 3)
    ] + [("message.created", 3, 2)] + [("message.created", seq, 1) for seq in (4, 5, 6)]
    rows = await _settled(writer, name)
    assert [r.attempts for r in rows] == [1, 1, 1, 2, 1, 1, 1]  # released rows: no attempt


async def test_a_slow_subscriber_does_not_hold_up_another_subscribers_rows(make_services):
    gate = asyncio.Event()

    async def stuck(_delivery):
        await gate.wait()

    slow = DurableSubscriber(uid("slow-"), stuck)
    fast = Recorder(kinds={"message.created"})
    services = await make_services(fast)
    services.bus.durable.insert(0, slow)  # registered before start would be the same
    await services.outbox.stop()
    await services.outbox.start()
    try:
        org = await _org(services)
        conv, visitor = await _conversation(services, org)
        for i in range(5):
            await _send(services, visitor, conv["id"], f"m{i}")
        await fast.wait_delivered(5)
        assert [d.event.seq for d in fast.delivered] == [1, 2, 3, 4, 5]
        pending = await _rows(services, subscriber=slow.name, status="pending")
        assert len(pending) == 6  # conversation.created + 5 messages, the first in flight
    finally:
        gate.set()


def _count_claims(dispatcher: OutboxDispatcher, name: str) -> list[int]:
    """The ids of `name`'s rows that this dispatcher claims from now on."""
    claimed: list[int] = []
    original = dispatcher._claim

    async def counting(conn, free):
        rows = await original(conn, free)
        claimed.extend(r.id for r in rows if r.subscriber == name)
        return rows

    dispatcher._claim = counting
    return claimed


def _content(row) -> str | None:
    """The content of an outbox row's message (None: not a message.created row)."""
    return row.payload.get("message", {}).get("content")


def _said(event) -> str | None:
    """The content of a delivered event's message (None: not a message)."""
    message = getattr(event, "message", None)
    return message["content"] if message else None


async def test_rows_are_written_leased_to_the_running_dispatcher_and_delivered_unclaimed(
    make_services,
):
    """The rows a process writes for its own dispatcher's subscribers are leased to it in the
    same statement (their first attempt has begun) and handed over after the commit: delivered
    from memory, in order, and never claimed (no second write before they are finished)."""
    gate = asyncio.Event()
    sub = Recorder(kinds={"message.created"})
    held = sub.handle

    async def handle(delivery):
        await gate.wait()
        await held(delivery)

    sub.subscriber = DurableSubscriber(sub.name, handle, frozenset({"message.created"}))
    services = await make_services(sub)
    claimed = _count_claims(services.outbox, sub.name)
    org = await _org(services)
    convs = [await _conversation(services, org) for _ in range(3)]
    for i in range(4):
        await asyncio.gather(*(_send(services, v, c["id"], f"m{i}") for c, v in convs))

    # Committed, none delivered yet: every row is already this dispatcher's, first attempt.
    rows = await _rows(services, subscriber=sub.name)
    assert len(rows) == 12
    assert {(r.status, r.locked_by, r.attempts) for r in rows} == {
        ("pending", services.outbox.token, 1)
    }
    assert all(r.locked_until is not None for r in rows)
    gate.set()
    await sub.wait_delivered(12)
    for conv, _ in convs:
        seqs = [d.event.seq for d in sub.delivered if d.event.conversation_id == conv["id"]]
        assert seqs == [1, 2, 3, 4]
    assert {d.attempt for d in sub.delivered} == {1}
    rows = await _settled(services, sub.name)
    assert {r.status for r in rows} == {"done"}
    assert claimed == []


async def test_a_written_row_waits_for_an_earlier_row_of_its_conversation_held_elsewhere(
    make_services,
):
    """Another process claimed the conversation's first rows and died; this process then
    writes the next message, leased to its own dispatcher. That row is not delivered before
    the earlier ones: it is given back, and claimed behind them once their lease expires."""
    lease = 1.5
    name = uid("sub-")
    other = await make_services(Recorder(name=name), config=None)
    org = await _org(other)
    conv, visitor = await _conversation(other, org)
    await _send(other, visitor, conv["id"], "m0")
    crashed = OutboxDispatcher(other.db, other.bus, OutboxConfig(lease_seconds=lease))
    async with other.db.engine.begin() as conn:
        assert len(await crashed.claim(conn, name, 100)) == 2  # created, m0
    claimed_at = time.monotonic()

    survivor = Recorder(name=name)
    services = await make_services(
        survivor, config=OutboxConfig(lease_seconds=6.0, poll_seconds=0.1)
    )
    await _send(services, visitor, conv["id"], "m1")
    (written,) = [r for r in await _rows(services, subscriber=name) if _content(r) == "m1"]
    assert written.locked_by == services.outbox.token

    await survivor.wait_delivered(3)
    assert [(d.event.name, _said(d.event)) for d in survivor.delivered] == [
        ("conversation.created", None),
        ("message.created", "m0"),
        ("message.created", "m1"),
    ]
    assert survivor.attempts[0][0] - claimed_at >= lease - 0.2  # not before the lease expired
    assert [d.attempt for d in survivor.delivered] == [2, 2, 1]


async def test_written_rows_behind_a_retry_are_given_back_and_delivered_after_it(
    make_services,
):
    """Rows written behind a row that waits for its retry: their leases are given back (no
    attempt counted) and the claim delivers them after the retried row, in order."""
    config = OutboxConfig(
        poll_seconds=0.1,
        lease_seconds=1.0,
        backoff_base_seconds=1.6,
        backoff_cap_seconds=1.6,
        retention_seconds=3600.0,
    )
    sub = Recorder(
        fail=lambda d: _said(d.event) == "m1" and d.attempt == 1, kinds={"message.created"}
    )
    services = await make_services(sub, config=config)
    claimed = _count_claims(services.outbox, sub.name)
    org = await _org(services)
    conv, visitor = await _conversation(services, org)
    for content in ("m1", "m2", "m3"):
        await _send(services, visitor, conv["id"], content)
    await sub.wait_delivered(3)

    assert [(_said(d.event), d.attempt) for d in sub.delivered] == [
        ("m1", 2),
        ("m2", 1),
        ("m3", 1),
    ]
    retried_at = next(t for t, d in sub.attempts if d.attempt == 2)
    assert min(t for t, d in sub.attempts if _said(d.event) != "m1") > retried_at
    rows = await _settled(services, sub.name)
    given_back = [r.id for r in rows if _content(r) in ("m2", "m3")]
    assert sorted(claimed) == sorted([r.id for r in rows if _content(r) == "m1"] + given_back)
    assert [r.attempts for r in rows] == [2, 1, 1]


async def test_a_claimed_row_is_not_delivered_by_another_dispatcher_until_its_lease_expires(
    make_services,
):
    """A process that claimed rows and died: its leases hold them, then they are redelivered."""
    lease = 1.5
    name = uid("sub-")
    writer_side = Recorder(name=name)
    services = await make_services(writer_side, config=None)
    org = await _org(services)
    conv, visitor = await _conversation(services, org)
    for i in range(3):
        await _send(services, visitor, conv["id"], f"m{i}")

    # The "dead" dispatcher: claims the conversation's head row on its own engine and never
    # delivers it.
    dead = await make_services(Recorder(name=name), config=None)
    crashed = OutboxDispatcher(
        dead.db, dead.bus, OutboxConfig(lease_seconds=lease, poll_seconds=0.1)
    )
    async with dead.db.engine.begin() as conn:
        claimed = await crashed.claim(conn, name, 100)
    claimed_at = time.monotonic()
    # The conversation's head and the run that follows it.
    assert [r.event for r in claimed] == ["conversation.created"] + ["message.created"] * 3

    survivor = Recorder(name=name)
    await make_services(survivor, config=OutboxConfig(lease_seconds=lease, poll_seconds=0.1))
    await survivor.wait_delivered(4)
    first = survivor.attempts[0]
    assert first[1].outbox_id == claimed[0].id
    assert first[1].attempt == 2  # the dead claim counted as an attempt
    assert {d.attempt for _, d in survivor.attempts} == {2}  # the whole run was held
    assert first[0] - claimed_at >= lease - 0.2  # not before the lease expired
    assert [d.event.name for d in survivor.delivered] == ["conversation.created"] + [
        "message.created"
    ] * 3


@pytest.mark.parametrize("retention", [86_400.0, 0.0], ids=["kept", "deleted"])
async def test_two_dispatchers_deliver_every_row_once_and_never_the_same_row_at_once(
    make_services, base_settings, retention
):
    """Delivered rows marked done (kept) or deleted (the default): the same promise."""
    if not base_settings.database_url.startswith("postgresql"):
        pytest.skip("several dispatchers share rows on PostgreSQL only (SQLite: one process)")
    name = uid("sub-")
    holding: set[int] = set()
    everything = asyncio.Event()
    overlaps: list[int] = []
    by: dict[int, list[str]] = defaultdict(list)
    events = 6 * 11  # six conversations: each created, then ten messages

    def handler(tag):
        async def handle(d: Delivery) -> None:
            if d.outbox_id in holding:
                overlaps.append(d.outbox_id)
            holding.add(d.outbox_id)
            await asyncio.sleep(0.01)
            holding.discard(d.outbox_id)
            by[d.outbox_id].append(tag)
            if len(by) >= events:
                everything.set()

        return handle

    config = OutboxConfig(
        poll_seconds=0.05, batch_size=2, lease_seconds=10.0, retention_seconds=retention
    )
    a = await make_services(Recorder(name=name), config=None)
    a.bus.durable[0] = DurableSubscriber(name, handler("a"))
    a.outbox = OutboxDispatcher(a.db, a.bus, config)
    await a.outbox.start()
    b = await make_services(Recorder(name=name), config=None)
    b.bus.durable[0] = DurableSubscriber(name, handler("b"))
    b.outbox = OutboxDispatcher(b.db, b.bus, config)
    await b.outbox.start()

    org = await _org(a)
    convs = [await _conversation(a, org) for _ in range(6)]
    for i in range(10):
        await asyncio.gather(*(_send(a, v, c["id"], f"m{i}") for c, v in convs))
    await asyncio.wait_for(everything.wait(), 30)
    rows = await _settled(a, name)
    assert len(by) == events
    assert overlaps == []
    assert {k: v for k, v in by.items() if len(v) != 1} == {}  # exactly once: nobody crashed
    tags = {v[0] for v in by.values()}
    assert tags == {"a", "b"}  # both took part
    if retention:
        assert {r.id for r in rows} == set(by) and {r.status for r in rows} == {"done"}
    else:
        assert rows == []  # every delivered row deleted, none left behind


async def test_two_processes_writing_into_one_conversation_deliver_its_rows_in_order(
    make_services, base_settings
):
    """Messages of one conversation written by two processes in turn: each process's rows are
    leased to its own dispatcher, and each waits for the other's earlier rows."""
    if not base_settings.database_url.startswith("postgresql"):
        pytest.skip("two processes share a database on PostgreSQL only (SQLite: one process)")
    name = uid("sub-")
    delivered: list[tuple[str, int]] = []

    def recorder(tag):
        async def handle(d: Delivery) -> None:
            await asyncio.sleep(0.005)
            delivered.append((tag, d.event.seq))

        return handle

    config = OutboxConfig(poll_seconds=0.2, lease_seconds=10.0)
    processes = []
    for tag in ("a", "b"):
        services = await make_services(config=None)
        services.bus.subscribe_durable(
            DurableSubscriber(name, recorder(tag), frozenset({"message.created"}))
        )
        services.outbox = OutboxDispatcher(services.db, services.bus, config)
        await services.outbox.start()
        processes.append(services)
    org = await _org(processes[0])
    conv, visitor = await _conversation(processes[0], org)
    for i in range(30):
        await _send(processes[i % 2], visitor, conv["id"], f"m{i}")
    deadline = time.monotonic() + 20
    while len(delivered) < 30:
        assert time.monotonic() < deadline, delivered
        await asyncio.sleep(0.05)
    assert [seq for _, seq in delivered] == list(range(1, 31)), delivered


async def test_written_rows_go_as_one_run_only_up_to_another_processs_row_between_them(
    make_services, base_settings
):
    """A process holds two rows of a conversation with another process's row between them (its
    rounds were held up while both were written): it delivers the first, gives the second
    back, and the second is delivered after the other process's row."""
    if not base_settings.database_url.startswith("postgresql"):
        pytest.skip("two processes share a database on PostgreSQL only (SQLite: one process)")
    name = uid("sub-")
    delivered: list[str | None] = []

    async def handle(d: Delivery) -> None:
        delivered.append(_said(d.event))

    config = OutboxConfig(poll_seconds=0.2, lease_seconds=10.0)
    processes = []
    for _ in range(2):
        services = await make_services(config=None)
        services.bus.subscribe_durable(
            DurableSubscriber(name, handle, frozenset({"message.created"}))
        )
        services.outbox = OutboxDispatcher(services.db, services.bus, config)
        processes.append(services)
    a, b = processes
    # A's rounds wait until both of its rows are written.
    resume = asyncio.Event()
    round_of_a = a.outbox._round

    async def held(claim: bool = True) -> bool:
        await resume.wait()
        return await round_of_a(claim)

    a.outbox._round = held
    for services in processes:
        await services.outbox.start()
    try:
        org = await _org(a)
        conv, visitor = await _conversation(a, org)
        await _send(a, visitor, conv["id"], "m1")
        await _send(b, visitor, conv["id"], "m2")
        await _send(a, visitor, conv["id"], "m3")
        rows = {_content(r): r for r in await _rows(a, subscriber=name)}
        assert rows["m1"].locked_by == rows["m3"].locked_by == a.outbox.token
        assert len(a.outbox._born) == 2  # m1 and m3, in memory
    finally:
        resume.set()
    deadline = time.monotonic() + 15
    while len(delivered) < 3:
        assert time.monotonic() < deadline, delivered
        await asyncio.sleep(0.05)
    assert delivered == ["m1", "m2", "m3"]


async def test_a_graceful_stop_releases_in_flight_leases(make_services):
    gate = asyncio.Event()
    started = asyncio.Event()

    async def blocked(_d):
        started.set()
        await gate.wait()

    name = uid("sub-")
    services = await make_services(config=None)
    services.bus.subscribe_durable(DurableSubscriber(name, blocked))
    dispatcher = OutboxDispatcher(services.db, services.bus, FAST)
    await dispatcher.start()
    org = await _org(services)
    await _conversation(services, org)
    await asyncio.wait_for(started.wait(), 10)
    await dispatcher.stop(timeout=0.1)
    (row,) = await _rows(services, subscriber=name)
    assert row.status == "pending" and row.locked_until is None and row.attempts == 0
    gate.set()


async def test_delivered_rows_are_pruned_after_the_retention(make_services):
    sub = Recorder()
    config = OutboxConfig(poll_seconds=0.1, retention_seconds=1.0)
    services = await make_services(sub, config=config)
    org = await _org(services)
    await _conversation(services, org)
    await sub.wait_delivered(1)
    deadline = time.monotonic() + 10
    while await _rows(services, subscriber=sub.name):
        assert time.monotonic() < deadline, "the delivered row was not pruned"
        await asyncio.sleep(0.1)


async def test_without_a_retention_delivered_rows_are_deleted_and_dead_rows_kept(make_services):
    """The default (CHATD_OUTBOX_RETENTION_SECONDS=0): a row is deleted by the round that
    records its delivery, after its retries too; a dead row stays, with its error."""
    config = dataclasses.replace(FAST, max_attempts=2, retention_seconds=0.0)
    sub = Recorder(
        fail=lambda d: d.attempt == 1 or d.event.message["content"] == "poison",
        kinds={"message.created"},
    )
    services = await make_services(sub, config=config)
    org = await _org(services)
    conv, visitor = await _conversation(services, org)
    for content in ("a", "poison", "b"):
        await _send(services, visitor, conv["id"], content)
    await sub.wait_delivered(2)
    assert [d.event.message["content"] for d in sub.delivered] == ["a", "b"]
    assert all(d.attempt == 2 for d in sub.delivered)  # each was retried once first
    rows = await _settled(services, sub.name)
    assert [(r.status, r.payload["message"]["content"]) for r in rows] == [("dead", "poison")]
    assert "refused" in rows[0].last_error
    # An id is never handed out again once its row is deleted (subscribers dedupe on it):
    # "b" had the highest id in the table; SQLite without AUTOINCREMENT would reuse it.
    seen = [d.outbox_id for _, d in sub.attempts]
    await _send(services, visitor, conv["id"], "c")
    await sub.wait_delivered(3)
    assert sub.delivered[-1].event.message["content"] == "c"
    assert sub.delivered[-1].outbox_id > max(seen)


def test_migration_0003_upgrades_an_existing_database_and_downgrades(tmp_path):
    """On a database of the previous revision (a SQLite file of the test's own: downgrading
    the suite's shared database would pull the table from under the other tests)."""
    from alembic import command
    from sqlalchemy import create_engine as create_sync_engine
    from sqlalchemy import inspect

    from server import migrate

    url = f"sqlite+aiosqlite:///{tmp_path / 'migrate.sqlite3'}"
    cfg = migrate.alembic_config(url)
    sync = create_sync_engine(f"sqlite:///{tmp_path / 'migrate.sqlite3'}")

    def tables() -> set[str]:
        return set(inspect(sync).get_table_names())

    def indexes() -> set[str]:
        return {ix["name"] for ix in inspect(sync).get_indexes("outbox")}

    migrate._ensure_sqlite_dir(url)
    command.upgrade(cfg, "0002")
    assert "conversations" in tables() and "outbox" not in tables()
    command.upgrade(cfg, "head")
    assert "outbox" in tables()
    assert indexes() == {
        "ix_outbox_pending_due",
        "ix_outbox_pending_conversation",
        "ix_outbox_done",
    }
    command.downgrade(cfg, "0002")
    assert "outbox" not in tables() and "conversations" in tables()
    command.upgrade(cfg, "head")
    assert "outbox" in tables()
    sync.dispose()
