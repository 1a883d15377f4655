"""Group commit for send_message: concurrent sends share one transaction.

Every message still gets its own authorization check, its own gap-free seq and its own ack,
and no ack is given before the commit that stores it. What is shared is the transaction:
BEGIN, the row locks, the statements and the COMMIT cost the same for one message or fifty,
and on a busy server they are most of a message's cost (docs/benchmarks.md).

One writer task per process drains a queue; while it commits a batch the next one gathers,
so the batch size follows the load: one message when idle, many under pressure.

The outbox rows of the batch's durable events (MessageCreated, and ConversationAssigned when
an agent's message opens a session) are written in the same transaction: on SQLite by the
unit of work before its commit, on PostgreSQL inside the one write statement, so the batch
still costs two round trips.

One message's failure never fails another's: when a batch's transaction fails, for any
reason but an unreachable database, its messages are written again one by one and only the
failing one's sender gets the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import bindparam, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from models import Conversation, ConversationSession, EndUser, Message
from models.base import new_id, utcnow
from server import serializers
from server.actors import Actor
from server.db import Database, outbox_rows
from server.domain_events import ConversationAssigned, MessageCreated
from server.errors import Conflict, Forbidden, NotFound, infrastructure_error

log = logging.getLogger(__name__)

_C = Conversation.__table__
_S = ConversationSession.__table__
_E = EndUser.__table__
_M = Message.__table__

BATCH_MAX = 64

# Locks the batch's conversations in id order: two batches (on any process) that share
# conversations then wait for each other instead of deadlocking.
_LOCK_CONVERSATIONS = (
    select(_C.c.id, _C.c.organization_id, _C.c.last_seq, _E.c.external_id)
    .select_from(_C.join(_E, _E.c.id == _C.c.end_user_id))
    .where(_C.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_C.c.id)
    .with_for_update(of=_C)
)
# A separate statement after the lock: in READ COMMITTED it sees sessions opened by the
# transactions we waited for.
_OPEN_SESSIONS = select(_S.c.conversation_id, _S.c.id, _S.c.assigned_agent_id).where(
    _S.c.conversation_id.in_(bindparam("ids", expanding=True)), _S.c.status == "open"
)
_SET_SEQ = (
    update(_C)
    .where(_C.c.id == bindparam("b_id"))
    .values(last_seq=bindparam("b_seq"), updated_at=bindparam("b_now"))
)
_INSERT_MESSAGES = insert(_M)

# PostgreSQL: the same statements, sent straight to psycopg (prepared after a few uses), and
# the seq update and the inserts as one statement. On a busy process this path is about half
# of a message's CPU, most of it per-statement overhead, not PostgreSQL's work
# (docs/benchmarks.md). The SQL is written for the tables of models/ and is covered by the
# whole test suite on PostgreSQL.
_PG_LOCK = """
SELECT c.id, c.organization_id, c.last_seq, e.external_id
FROM conversations AS c JOIN end_users AS e ON e.id = c.end_user_id
WHERE c.id = ANY(%(ids)s::text[]) ORDER BY c.id FOR UPDATE OF c
"""
_PG_OPEN_SESSIONS = """
SELECT conversation_id, id, assigned_agent_id FROM conversation_sessions
WHERE conversation_id = ANY(%(ids)s::text[]) AND status = 'open'
"""
_PG_NEW_SESSION = """
INSERT INTO conversation_sessions (id, conversation_id, organization_id, status,
    assigned_agent_id, tags, first_message_at, assigned_at, created_at)
VALUES (%(id)s, %(conversation_id)s, %(organization_id)s, %(status)s, %(assigned_agent_id)s,
    '[]'::jsonb, %(first_message_at)s, %(assigned_at)s, %(created_at)s)
"""
_PG_WRITE = """
WITH bumped AS (
    UPDATE conversations AS c SET last_seq = v.seq, updated_at = %(now)s
    FROM unnest(%(c_ids)s::text[], %(c_seqs)s::int[]) AS v(id, seq)
    WHERE c.id = v.id
)
INSERT INTO messages (id, conversation_id, session_id, seq, sender_type, sender_id,
    client_message_id, content_type, content, rich_media, read_by, created_at)
SELECT m.id, m.conversation_id, m.session_id, m.seq, m.sender_type, m.sender_id,
    m.client_message_id, m.content_type, m.content, m.rich_media, '{}'::jsonb, %(now)s
FROM jsonb_to_recordset(%(messages)s::jsonb)
    AS m(id text, conversation_id text, session_id text, seq int, sender_type text,
         sender_id text, client_message_id text, content_type text, content text,
         rich_media jsonb)
"""
# The same write, plus the batch's outbox rows in one more CTE (ids in event order), whose
# ids the statement returns (the messages' INSERT becomes a CTE: PostgreSQL runs every
# data-modifying CTE to completion whether or not the main query reads it).
_PG_WRITE_OUTBOX = (
    """
WITH outboxed AS (
    INSERT INTO outbox (subscriber, event, organization_id, conversation_id, payload,
        created_at, status, attempts, next_attempt_at, locked_by, locked_until)
    SELECT o.subscriber, o.event, o.organization_id, o.conversation_id, o.payload,
        %(now)s, 'pending', o.attempts, %(now)s, o.locked_by, o.locked_until
    FROM ROWS FROM (jsonb_to_recordset(%(outbox)s::jsonb) AS (subscriber text, event text,
        organization_id text, conversation_id text, payload jsonb, attempts int,
        locked_by text, locked_until timestamp)) WITH ORDINALITY
        AS o(subscriber, event, organization_id, conversation_id, payload, attempts,
             locked_by, locked_until, n)
    ORDER BY o.n
    RETURNING id
),"""
    + _PG_WRITE.replace("WITH bumped AS", "bumped AS", 1).replace(
        ")\nINSERT INTO messages", "),\nstored AS (\nINSERT INTO messages", 1
    )
    + """)
SELECT id FROM outboxed ORDER BY id
"""
)


@dataclass(frozen=True, slots=True)
class NewMessage:
    conversation_id: str
    content: str
    content_type: str = "text"
    rich_media: dict | None = None
    client_message_id: str | None = None


@dataclass(slots=True)
class _Item:
    actor: Actor
    msg: NewMessage
    future: asyncio.Future | None = None
    result: tuple[dict[str, Any], bool] | None = None
    error: BaseException | None = None

    @property
    def dedupe_key(self) -> tuple | None:
        if not self.msg.client_message_id:
            return None
        return (
            self.msg.conversation_id,
            self.actor.sender_type,
            self.actor.sender_id,
            self.msg.client_message_id,
        )


@dataclass
class MessageWriter:
    db: Database
    batch_max: int = BATCH_MAX
    # Told each batch's size and each commit's duration (rest/observability.Metrics).
    observer: Any = None
    _queue: asyncio.Queue | None = field(default=None, init=False)
    _task: asyncio.Task | None = field(default=None, init=False)

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="message-writer")

    async def stop(self, timeout: float = 10.0) -> None:
        """Finish what was queued (for at most `timeout` seconds), then stop."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            log.warning("stopping with %d unwritten messages", self._queue.qsize())
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        self._queue = None

    async def send(self, actor: Actor, msg: NewMessage) -> tuple[dict[str, Any], bool]:
        item = _Item(actor, msg)
        if self._queue is None:
            # Not started (CLI, scripts): write inline, one message per transaction.
            await self._write([item])
        else:
            item.future = asyncio.get_running_loop().create_future()
            self._queue.put_nowait(item)
            await item.future
        if item.error is not None:
            raise item.error
        return item.result

    async def _run(self) -> None:
        queue = self._queue
        while True:
            batch = [await queue.get()]
            while len(batch) < self.batch_max and not queue.empty():
                batch.append(queue.get_nowait())
            if self.observer is not None:
                self.observer.writer_batch(len(batch))
            try:
                await self._write(batch)
            except Exception as exc:  # the batch failed as a whole: tell every sender
                if infrastructure_error(exc) is not None:
                    log.warning(
                        "message batch of %d failed: database unavailable (%r)", len(batch), exc
                    )
                else:
                    log.exception("message batch of %d failed", len(batch))
                for item in batch:
                    if item.result is None and item.error is None:
                        item.error = exc
            finally:
                for item in batch:
                    if item.future is not None and not item.future.done():
                        item.future.set_result(None)
                    queue.task_done()

    async def _write(self, batch: list[_Item]) -> None:
        try:
            await self._resolve_retries(batch)
            pending = [i for i in batch if i.result is None and i.error is None]
            if pending:
                await self._store(pending)
        except Exception as exc:
            todo = [i for i in batch if i.result is None]
            if len(todo) <= 1:
                if todo and isinstance(exc, IntegrityError | psycopg.IntegrityError):
                    # A retry raced its original on another connection (the unique
                    # client_message_id refused it): answer it with the original.
                    await self._resolve_retries(todo)
                    if todo[0].result is not None:
                        return
                raise
            if infrastructure_error(exc) is not None:
                # The database is unreachable: every message would fail alone too, each
                # after its own wait. Every sender is told at once (and may retry).
                raise
            # One message the database refused (a value it cannot store, a racing retry)
            # rolled back the transaction for all: write them one by one, so that only that
            # message's sender gets the error. Queue order, hence seq order, is kept.
            log.warning(
                "message batch of %d failed (%s: %s); writing its messages one by one",
                len(todo),
                type(exc).__name__,
                exc,
            )
            for item in todo:
                item.error = None
                try:
                    await self._write([item])
                except Exception as item_exc:  # noqa: BLE001 - reported to that sender only
                    item.error = item_exc

    async def _resolve_retries(self, batch: list[_Item]) -> None:
        """Answer retries of stored messages with the original; store nothing for them."""
        keyed = [i for i in batch if i.dedupe_key is not None and i.result is None]
        if not keyed:
            return
        keys = list({i.dedupe_key for i in keyed})
        stmt = select(_M).where(
            tuple_(
                _M.c.conversation_id, _M.c.sender_type, _M.c.sender_id, _M.c.client_message_id
            ).in_(keys)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).all()
        found = {
            (r.conversation_id, r.sender_type, r.sender_id, r.client_message_id): r for r in rows
        }
        for item in keyed:
            row = found.get(item.dedupe_key)
            if row is not None:
                item.result = (serializers.message(row), False)

    async def _store(self, items: list[_Item]) -> None:
        now = utcnow()
        conv_ids = sorted({i.msg.conversation_id for i in items})
        started = time.perf_counter()
        async with self.db.unit_of_work() as uow:
            pg = await _psycopg(uow.conn)
            if pg is not None:
                plan = await self._store_pg(pg, uow, items, conv_ids, now)
            else:
                plan = await self._store_core(uow, items, conv_ids, now)
        # Committed: only now do the senders get their acks (and the rooms their events).
        if self.observer is not None:
            self.observer.writer_committed(len(plan.accepted), time.perf_counter() - started)
        for item, message in plan.accepted:
            item.result = (message, True)
        for item, message in plan.duplicates:
            item.result = (message, False)

    async def _store_core(self, uow, items, conv_ids, now) -> _Plan:
        """The portable path (SQLite): SQLAlchemy Core statements."""
        s = uow.conn
        convs = {r.id: r for r in (await s.execute(_LOCK_CONVERSATIONS, {"ids": conv_ids}))}
        sessions = {
            r.conversation_id: [r.id, r.assigned_agent_id]
            for r in (await s.execute(_OPEN_SESSIONS, {"ids": conv_ids}))
        }
        plan = _plan(uow, items, convs, sessions, now)
        if plan.new_sessions:
            await s.execute(insert(_S), plan.new_sessions)
        if plan.accepted:
            await s.execute(
                _SET_SEQ, [{"b_id": c, "b_seq": q, "b_now": now} for c, q in plan.seqs.items()]
            )
            await s.execute(
                _INSERT_MESSAGES,
                [
                    {**m, "client_message_id": i.msg.client_message_id, "created_at": now}
                    for i, m in plan.accepted
                ],
            )
        return plan

    async def _store_pg(self, pg, uow, items, conv_ids, now) -> _Plan:
        """PostgreSQL: the same transaction in two round trips, with psycopg's pipeline mode.

        The first carries BEGIN, the row locks and the open-session read; the server runs
        them in order, so the session read still starts after the locks are held and sees
        what the transactions it waited for committed. The second carries any new sessions,
        the seq update with the inserts, and COMMIT. SQLAlchemy's own commit then finds the
        transaction finished and sends nothing.
        """
        async with (
            pg.pipeline(),
            pg.cursor(row_factory=namedtuple_row) as locked,
            pg.cursor(row_factory=namedtuple_row) as opened,
        ):
            await locked.execute(_PG_LOCK, {"ids": conv_ids})
            await opened.execute(_PG_OPEN_SESSIONS, {"ids": conv_ids})
            convs = {r.id: r for r in await locked.fetchall()}
            sessions = {
                r.conversation_id: [r.id, r.assigned_agent_id] for r in await opened.fetchall()
            }
            plan = _plan(uow, items, convs, sessions, now)
            if plan.new_sessions:
                await locked.executemany(_PG_NEW_SESSION, plan.new_sessions)
            rows = outbox_rows(self.db.bus, uow.events, now, self.db.outbox_lease)
            if plan.accepted:
                params = _pg_write_params(now, plan.seqs, plan.accepted)
                if rows:
                    params.update(_pg_outbox_params(rows))
                    await locked.execute(_PG_WRITE_OUTBOX, params)
                else:
                    await locked.execute(_PG_WRITE, params)
            # Events come only with accepted messages: nothing is left for the unit of work
            # to write (its connection's transaction ends here).
            uow.outbox_written = True
            await pg.commit()
            if plan.accepted and rows:
                # Read after the commit: fetching first would cost a round trip of its own.
                ids = [r.id for r in await locked.fetchall()]
                for row, row_id in zip(rows, ids, strict=True):
                    row["id"] = row_id
                uow.outbox = rows
        return plan


@dataclass(slots=True)
class _Plan:
    accepted: list[tuple[_Item, dict[str, Any]]] = field(default_factory=list)
    duplicates: list[tuple[_Item, dict[str, Any]]] = field(default_factory=list)
    seqs: dict[str, int] = field(default_factory=dict)
    new_sessions: list[dict[str, Any]] = field(default_factory=list)


def _plan(uow, items: list[_Item], convs: dict, sessions: dict, now) -> _Plan:
    """Decide each message of a batch under the conversations' locks: scope, permission,
    session, seq. Rows to write are collected; events are queued on the unit of work."""
    plan = _Plan()
    firsts: dict[tuple, dict[str, Any]] = {}
    for item in items:
        actor, msg = item.actor, item.msg
        conv = convs.get(msg.conversation_id)
        if conv is None or not actor.reaches(conv.organization_id, conv.external_id):
            item.error = NotFound("Conversation not found.")
            continue
        key = item.dedupe_key
        if key is not None and key in firsts:
            plan.duplicates.append((item, firsts[key]))
            continue
        session = sessions.get(conv.id)
        if session is None and not actor.opens_sessions:
            item.error = Conflict("The conversation has no open session.")
            continue
        if session is None:
            # The first message, or the first after a resolve, opens a new session.
            # An agent who writes into a resolved conversation takes it.
            agent_id = actor.takes_on_write
            session = sessions[conv.id] = [new_id(), agent_id]
            plan.new_sessions.append(
                {
                    "id": session[0],
                    "conversation_id": conv.id,
                    "organization_id": conv.organization_id,
                    "status": "open",
                    "assigned_agent_id": agent_id,
                    "tags": [],
                    "first_message_at": now,
                    "assigned_at": now if agent_id else None,
                    "created_at": now,
                }
            )
            if agent_id:
                uow.raise_event(
                    ConversationAssigned(
                        conv.organization_id, conv.id, session[0], agent_id, serializers.iso(now)
                    )
                )
        elif not actor.may_act_on(session[1]):
            item.error = Forbidden("This conversation is assigned to another agent.")
            continue
        seq = plan.seqs[conv.id] = plan.seqs.get(conv.id, conv.last_seq) + 1
        message = {
            "id": new_id(),
            "conversation_id": conv.id,
            "session_id": session[0],
            "seq": seq,
            "sender_type": actor.sender_type,
            "sender_id": actor.sender_id,
            "content_type": msg.content_type,
            "content": msg.content,
            "rich_media": msg.rich_media,
            "read_by": {},
            "flagged": False,
            "created_at": serializers.iso(now),
        }
        if key is not None:
            firsts[key] = message
        plan.accepted.append((item, message))
        uow.raise_event(MessageCreated(conv.organization_id, conv.id, message))
    return plan


async def _psycopg(conn):
    """The psycopg connection under a PostgreSQL AsyncConnection (None on other databases).

    It is the connection of the transaction SQLAlchemy has open: statements sent here are part
    of it, and SQLAlchemy's commit or rollback ends it.
    """
    if conn.dialect.name != "postgresql":
        return None
    raw = await conn.get_raw_connection()
    return raw.driver_connection


def _pg_write_params(now, seqs: dict[str, int], accepted) -> dict[str, Any]:
    return {
        "now": now,
        "c_ids": list(seqs),
        "c_seqs": list(seqs.values()),
        # One JSON document (one orjson call): psycopg would quote and escape every element
        # of text[] parameters in Python, a measured share of the write path.
        "messages": orjson.dumps(
            [
                {
                    "id": m["id"],
                    "conversation_id": m["conversation_id"],
                    "session_id": m["session_id"],
                    "seq": m["seq"],
                    "sender_type": m["sender_type"],
                    "sender_id": m["sender_id"],
                    "client_message_id": i.msg.client_message_id,
                    "content_type": m["content_type"],
                    "content": m["content"],
                    "rich_media": m["rich_media"],
                }
                for i, m in accepted
            ]
        ).decode(),
    }


def _pg_outbox_params(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The outbox rows as one JSON document (one orjson call; psycopg would quote and escape
    every payload of a text[] parameter in Python, a measured share of the write path)."""
    fields = (
        "subscriber",
        "event",
        "organization_id",
        "conversation_id",
        "payload",
        "attempts",
        "locked_by",
        "locked_until",
    )
    return {"outbox": orjson.dumps([{f: r[f] for f in fields} for r in rows]).decode()}


__all__ = ["MessageWriter", "NewMessage"]
