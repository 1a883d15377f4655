"""The Socket.IO projection: an after-commit subscriber of the bus that turns domain events
into the guide's Socket.IO events, and chooses their rooms.

| domain event         | Socket.IO event(s)                      | room(s)                     |
|----------------------|-----------------------------------------|-----------------------------|
| MessageCreated       | message_received, conversation_updated  | conv:{id}; org:{org}:queue  |
| ConversationAssigned | conversation_assigned                   | org:{org}:queue             |
| ConversationResolved | conversation_resolved (once per socket) | org:{org}:queue + conv:{id} |
| MessagesRead         | messages_read                           | conv:{id}                   |
| AgentStatusChanged   | agent_status_changed                    | org:{org}:presence          |
| TypingStarted        | typing_indicator (not to the typist)    | conv:{id}                   |
| TypingStopped        | typing_cleared                          | conv:{id}                   |
| ConversationHandedOff| conversation_updated (handled_by queue) | org:{org}:queue             |
| ConversationHandedToBot | conversation_updated (handled_by bot) | org:{org}:queue             |
| MessageFlagged       | message_flagged                         | org:{org}:queue             |
| ConversationCreated  | (none: the guide has no such event)     |                             |

Through Redis when it is configured (the server's manager), so every process's sockets get
them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from realtime import events
from realtime.events import Event
from server import rooms
from server.domain_events import (
    AgentStatusChanged,
    ConversationAssigned,
    ConversationHandedOff,
    ConversationHandedToBot,
    ConversationResolved,
    DomainEvent,
    MessageCreated,
    MessageFlagged,
    MessagesRead,
    TypingStarted,
    TypingStopped,
)

# Who, on this process, is the typist: sids of the conversation room's sockets that act as
# (sender_type, sender_id) there. Given by the namespace, which knows its sockets.
TypistSockets = Callable[[str, str, str], list[str]]


class SocketProjection:
    def __init__(self, sio: Any, typist_sockets: TypistSockets) -> None:
        self.sio = sio
        self.typist_sockets = typist_sockets
        self._build: dict[type, Callable[[Any], Iterable[Event]]] = {
            MessageCreated: self._message_created,
            ConversationAssigned: self._assigned,
            ConversationResolved: self._resolved,
            MessagesRead: self._read,
            AgentStatusChanged: self._status,
            TypingStarted: self._typing_started,
            TypingStopped: self._typing_stopped,
            ConversationHandedOff: self._handed_off,
            ConversationHandedToBot: self._handed_to_bot,
            MessageFlagged: self._flagged,
        }

    async def __call__(self, ev: DomainEvent) -> None:
        build = self._build.get(type(ev))
        if build is None:
            return
        for out in build(ev):
            await self.sio.emit(out.name, out.payload, room=out.room, skip_sid=out.skip_sid)

    async def flush(self) -> None:
        """Wait until what was emitted has left the process (Redis), at shutdown."""
        flush = getattr(self.sio.manager, "flush_published", None)
        if flush is not None:
            await flush()

    @staticmethod
    def _message_created(ev: MessageCreated) -> Iterable[Event]:
        return (
            events.message_received(ev.message),
            events.conversation_updated(ev.organization_id, ev.message),
        )

    @staticmethod
    def _assigned(ev: ConversationAssigned) -> Iterable[Event]:
        return (events.conversation_assigned(ev.organization_id, ev.conversation_id, ev.agent_id),)

    @staticmethod
    def _handed_off(ev: ConversationHandedOff) -> Iterable[Event]:
        return (
            events.conversation_handed_over(
                ev.organization_id, ev.conversation_id, "queue", reason=ev.reason
            ),
        )

    @staticmethod
    def _handed_to_bot(ev: ConversationHandedToBot) -> Iterable[Event]:
        # conversation_assigned (to null) comes from the ConversationAssigned raised with it.
        return (events.conversation_handed_over(ev.organization_id, ev.conversation_id, "bot"),)

    @staticmethod
    def _flagged(ev: MessageFlagged) -> Iterable[Event]:
        return (
            events.message_flagged(ev.organization_id, ev.conversation_id, ev.message_id, ev.seq),
        )

    @staticmethod
    def _resolved(ev: ConversationResolved) -> Iterable[Event]:
        # One emit to both rooms: an agent in both receives it once.
        both = [rooms.org_queue(ev.organization_id), rooms.conversation(ev.conversation_id)]
        return (
            events.conversation_resolved(
                both, ev.conversation_id, ev.session_id, ev.tags, ev.resolved_at
            ),
        )

    @staticmethod
    def _read(ev: MessagesRead) -> Iterable[Event]:
        return (
            events.messages_read(
                ev.conversation_id, ev.message_ids, ev.reader_type, ev.reader_id, ev.read_at
            ),
        )

    @staticmethod
    def _status(ev: AgentStatusChanged) -> Iterable[Event]:
        return (events.agent_status_changed(ev.organization_id, ev.agent_id, ev.status),)

    def _typing_started(self, ev: TypingStarted) -> Iterable[Event]:
        skip = self.typist_sockets(ev.conversation_id, ev.sender_type, ev.sender_id)
        return (events.typing_indicator(ev.conversation_id, ev.sender_type, skip or None),)

    @staticmethod
    def _typing_stopped(ev: TypingStopped) -> Iterable[Event]:
        return (events.typing_cleared(ev.conversation_id),)
