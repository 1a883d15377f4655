"""Domain events: facts about what happened to a conversation or a team, in the domain's words.

Services raise them inside their unit of work (`uow.raise_event`); the bus hands them, after
the commit, to every after-commit subscriber in order (the Socket.IO projection is one), and
the durable ones are also written to the outbox in the same transaction as the change, for
subscribers that must not lose them (webhooks, push). A fact never names a room, a socket or
a transport: who hears about it is each subscriber's business.

A few facts are not transactional (typing, presence): they are published on the bus directly
and never reach the outbox (`durable = False`).

Each event has a stable `name` (the outbox's `kind` and a webhook's `event` field) and a JSON
form, `to_dict()` / `from_dict()`, with times as ISO 8601 strings in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

# name -> event class, filled by @_register.
EVENT_TYPES: dict[str, type[DomainEvent]] = {}


def _register(cls: type[DomainEvent]) -> type[DomainEvent]:
    EVENT_TYPES[cls.name] = cls
    return cls


@dataclass(frozen=True, slots=True)
class DomainEvent:
    organization_id: str
    # The conversation the fact is about; None for facts about a team (presence).
    conversation_id: str | None

    name: ClassVar[str] = ""
    durable: ClassVar[bool] = True

    def to_dict(self) -> dict[str, Any]:
        """The event's fields as JSON-ready values (lists, dicts, strings, numbers)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @staticmethod
    def from_dict(name: str, data: dict[str, Any]) -> DomainEvent:
        """The event of `name` from its to_dict() form. Raises KeyError for an unknown name."""
        cls = EVENT_TYPES[name]
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@_register
@dataclass(frozen=True, slots=True)
class ConversationCreated(DomainEvent):
    """An end user's conversation was opened on a channel for the first time."""

    channel_id: str
    end_user: dict[str, Any]  # {id, external_id, display_name}
    created_at: str

    name: ClassVar[str] = "conversation.created"


@_register
@dataclass(frozen=True, slots=True)
class MessageCreated(DomainEvent):
    """A message was stored. `message` is its full stored shape (serializers.message)."""

    message: dict[str, Any]

    name: ClassVar[str] = "message.created"

    @property
    def seq(self) -> int:
        return self.message["seq"]


@_register
@dataclass(frozen=True, slots=True)
class ConversationAssigned(DomainEvent):
    """An agent took the conversation's open session (a claim, or writing into a resolved
    conversation, which opens a new session held by the writer)."""

    session_id: str
    agent_id: str | None  # None: unassigned (back in the queue)
    assigned_at: str

    name: ClassVar[str] = "conversation.assigned"


@_register
@dataclass(frozen=True, slots=True)
class ConversationResolved(DomainEvent):
    session_id: str
    tags: list[str]
    resolved_at: str
    # Who resolved it: {"type": actor kind, "id": actor id}.
    resolved_by: dict[str, str]

    name: ClassVar[str] = "conversation.resolved"


@_register
@dataclass(frozen=True, slots=True)
class MessagesRead(DomainEvent):
    message_ids: list[str]
    reader_type: str
    reader_id: str
    read_at: str

    name: ClassVar[str] = "messages.read"


@_register
@dataclass(frozen=True, slots=True)
class ConversationHandedOff(DomainEvent):
    """The bot handed the open session to people: it now waits in the queue for an agent.
    `reason`: requested (the end user asked), intent (the bot's flow says so), fallback (too
    many misunderstandings), bot_failed (the bot did not answer in time, or failed), bot
    (a webhook bot decided)."""

    session_id: str
    bot_id: str
    reason: str
    handed_off_at: str

    name: ClassVar[str] = "conversation.handed_off"


@_register
@dataclass(frozen=True, slots=True)
class ConversationHandedToBot(DomainEvent):
    """An agent handed the open session back to the conversation's bot (no agent holds it)."""

    session_id: str
    bot_id: str
    agent_id: str
    at: str

    name: ClassVar[str] = "conversation.handed_to_bot"


@_register
@dataclass(frozen=True, slots=True)
class MessageFlagged(DomainEvent):
    """Moderation marked an end user's message: agents see it flagged, end users other than
    its sender never see it. `flagged_by`: {"type": "bot", "id": bot id}."""

    message_id: str
    seq: int
    flagged_by: dict[str, str]
    reason: str

    name: ClassVar[str] = "message.flagged"


@_register
@dataclass(frozen=True, slots=True)
class AgentStatusChanged(DomainEvent):
    """An agent came online (a first socket on any process) or went offline (the last)."""

    agent_id: str
    status: str  # online | offline

    name: ClassVar[str] = "agent.status_changed"
    durable: ClassVar[bool] = False


@_register
@dataclass(frozen=True, slots=True)
class TypingStarted(DomainEvent):
    """Someone is typing in the conversation; shown to the other participants."""

    sender_type: str
    sender_id: str

    name: ClassVar[str] = "typing.started"
    durable: ClassVar[bool] = False


@_register
@dataclass(frozen=True, slots=True)
class TypingStopped(DomainEvent):
    """The typist sent a message, stopped, or left."""

    sender_type: str
    sender_id: str

    name: ClassVar[str] = "typing.stopped"
    durable: ClassVar[bool] = False


__all__ = [
    "EVENT_TYPES",
    "AgentStatusChanged",
    "ConversationAssigned",
    "ConversationCreated",
    "ConversationHandedOff",
    "ConversationHandedToBot",
    "ConversationResolved",
    "DomainEvent",
    "MessageCreated",
    "MessageFlagged",
    "MessagesRead",
    "TypingStarted",
    "TypingStopped",
]
