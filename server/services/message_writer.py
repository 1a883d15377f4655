"""Group commit for send_message: concurrent sends share one transaction.

Every message still gets its own authorization check, its own gap-free seq and its own ack,
and no ack is given before the commit that stores it. What is shared is the transaction:
BEGIN, the row locks, the statements and the COMMIT cost the same for one message or fifty,
and on a busy server they are most of a message's cost (docs/benchmarks.md).

One writer task per process drains a queue; while it commits a batch the next one gathers,
so the batch size follows the load: one message when idle, many under pressure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from models import Conversation, ConversationSession, EndUser, Message
from models.base import new_id, utcnow
from server import events
from server.actors import Actor, AgentActor
from server.db import Database
from server.errors import Forbidden, NotFound

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


def _in_scope(actor: Actor, conv) -> bool:
    if isinstance(actor, AgentActor):
        return conv.organization_id == actor.organization_id
    return conv.external_id == actor.external_id


def may_act_on(actor: Actor, assigned_agent_id: str | None) -> bool:
    """An agent of role `agent` may not act on a session another agent holds."""
    if not isinstance(actor, AgentActor) or actor.is_admin:
        return True
    return assigned_agent_id is None or assigned_agent_id == actor.user_id


@dataclass
class MessageWriter:
    db: Database
    batch_max: int = BATCH_MAX
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
            try:
                await self._write(batch)
            except Exception as exc:  # the batch failed as a whole: tell every sender
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
        await self._resolve_retries(batch)
        pending = [i for i in batch if i.result is None and i.error is None]
        if not pending:
            return
        try:
            await self._store(pending)
        except IntegrityError:
            # A retry raced its original on another connection (the unique client_message_id
            # refused it) and the whole transaction rolled back: redo one by one, so that
            # only the duplicate is answered with its original.
            if len(pending) == 1:
                item = pending[0]
                await self._resolve_retries(pending)
                if item.result is None:
                    raise
                return
            for item in pending:
                try:
                    await self._write([item])
                except Exception as exc:  # noqa: BLE001 - reported to that sender only
                    item.error = exc

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
                item.result = (events.message_public(row), False)

    async def _store(self, items: list[_Item]) -> None:
        now = utcnow()
        conv_ids = sorted({i.msg.conversation_id for i in items})
        accepted: list[tuple[_Item, dict[str, Any]]] = []
        async with self.db.unit_of_work() as uow:
            s = uow.session
            convs = {r.id: r for r in (await s.execute(_LOCK_CONVERSATIONS, {"ids": conv_ids}))}
            sessions = {
                r.conversation_id: [r.id, r.assigned_agent_id]
                for r in (await s.execute(_OPEN_SESSIONS, {"ids": conv_ids}))
            }
            seqs: dict[str, int] = {}
            firsts: dict[tuple, dict[str, Any]] = {}
            duplicates: list[tuple[_Item, dict[str, Any]]] = []
            for item in items:
                actor, msg = item.actor, item.msg
                conv = convs.get(msg.conversation_id)
                if conv is None or not _in_scope(actor, conv):
                    item.error = NotFound("Conversation not found.")
                    continue
                key = item.dedupe_key
                if key is not None and key in firsts:
                    duplicates.append((item, firsts[key]))
                    continue
                session = sessions.get(conv.id)
                if session is None:
                    # The first message, or the first after a resolve, opens a new session.
                    # An agent who writes into a resolved conversation takes it.
                    agent_id = actor.user_id if isinstance(actor, AgentActor) else None
                    session = sessions[conv.id] = [new_id(), agent_id]
                    await s.execute(
                        insert(_S).values(
                            id=session[0],
                            conversation_id=conv.id,
                            organization_id=conv.organization_id,
                            status="open",
                            assigned_agent_id=agent_id,
                            tags=[],
                            first_message_at=now,
                            assigned_at=now if agent_id else None,
                            created_at=now,
                        )
                    )
                    if agent_id:
                        uow.emit(
                            events.conversation_assigned(conv.organization_id, conv.id, agent_id)
                        )
                elif not may_act_on(actor, session[1]):
                    item.error = Forbidden("This conversation is assigned to another agent.")
                    continue
                seq = seqs[conv.id] = seqs.get(conv.id, conv.last_seq) + 1
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
                    "created_at": events.iso(now),
                }
                if key is not None:
                    firsts[key] = message
                accepted.append((item, message))
                uow.emit(events.message_received(message))
                uow.emit(events.conversation_updated(conv.organization_id, message))
            if accepted:
                await s.execute(
                    _SET_SEQ, [{"b_id": c, "b_seq": q, "b_now": now} for c, q in seqs.items()]
                )
                await s.execute(
                    _INSERT_MESSAGES,
                    [
                        {**m, "client_message_id": i.msg.client_message_id, "created_at": now}
                        for i, m in accepted
                    ],
                )
        # Committed: only now do the senders get their acks (and the rooms their events).
        for item, message in accepted:
            item.result = (message, True)
        for item, message in duplicates:
            item.result = (message, False)


__all__ = ["MessageWriter", "NewMessage", "may_act_on"]
