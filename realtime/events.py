"""One builder per Socket.IO event of the contract, with exactly the integration guide's
fields and the room it goes to. The projection (realtime/projection.py) builds them from
domain events; message shapes per audience come from server/serializers.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server import rooms, serializers

MESSAGE_RECEIVED = "message_received"
CONVERSATION_UPDATED = "conversation_updated"
CONVERSATION_ASSIGNED = "conversation_assigned"
CONVERSATION_RESOLVED = "conversation_resolved"
TYPING_INDICATOR = "typing_indicator"
TYPING_CLEARED = "typing_cleared"
AGENT_STATUS_CHANGED = "agent_status_changed"
MESSAGES_READ = "messages_read"
# Not in the guide: an addition (docs/widget.md, docs/inbox.md) for repairing live delivery.
CONVERSATION_HEAD = "conversation_head"
# Not in the guide: moderation flagged an end user's message (docs/bots.md); agents only.
MESSAGE_FLAGGED = "message_flagged"
ERROR = "error"


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    payload: dict[str, Any]
    room: str | list[str]
    skip_sid: str | list[str] | None = None


def message_received(message: dict[str, Any]) -> Event:
    return Event(
        MESSAGE_RECEIVED,
        serializers.message_for_socket(message),
        rooms.conversation(message["conversation_id"]),
    )


def conversation_updated(org_id: str, message: dict[str, Any]) -> Event:
    return Event(
        CONVERSATION_UPDATED,
        {
            "conversation_id": message["conversation_id"],
            "sender_type": message["sender_type"],
            "content_type": message["content_type"],
            "content": message["content"],
        },
        rooms.org_queue(org_id),
    )


def conversation_handed_over(org_id: str, conversation_id: str, handled_by: str, **extra) -> Event:
    """conversation_updated for a change of who answers (no message): `handled_by` is "queue"
    (the bot handed it to people) or "bot" (an agent handed it back). Inboxes re-read it."""
    return Event(
        CONVERSATION_UPDATED,
        {
            "conversation_id": conversation_id,
            "sender_type": "bot",
            "content_type": "text",
            "content": "",
            "handled_by": handled_by,
            **extra,
        },
        rooms.org_queue(org_id),
    )


def message_flagged(org_id: str, conversation_id: str, message_id: str, seq: int) -> Event:
    return Event(
        MESSAGE_FLAGGED,
        {"conversation_id": conversation_id, "message_id": message_id, "seq": seq},
        rooms.org_queue(org_id),
    )


def conversation_assigned(org_id: str, conversation_id: str, agent_id: str) -> Event:
    return Event(
        CONVERSATION_ASSIGNED,
        {"conversation_id": conversation_id, "assigned_to": agent_id},
        rooms.org_queue(org_id),
    )


def conversation_resolved(
    room: str | list[str],
    conversation_id: str,
    session_id: str,
    tags: list[str],
    resolved_at: str,
) -> Event:
    return Event(
        CONVERSATION_RESOLVED,
        {
            "conversation_id": conversation_id,
            "session_id": session_id,
            "tags": tags,
            "resolved_at": resolved_at,
        },
        room,
    )


def typing_indicator(
    conversation_id: str, sender_type: str, skip_sid: str | list[str] | None
) -> Event:
    return Event(
        TYPING_INDICATOR,
        {"conversation_id": conversation_id, "sender_type": sender_type},
        rooms.conversation(conversation_id),
        skip_sid,
    )


def typing_cleared(conversation_id: str) -> Event:
    return Event(
        TYPING_CLEARED, {"conversation_id": conversation_id}, rooms.conversation(conversation_id)
    )


def agent_status_changed(org_id: str, agent_id: str, status: str) -> Event:
    return Event(
        AGENT_STATUS_CHANGED, {"agent_id": agent_id, "status": status}, rooms.org_presence(org_id)
    )


def messages_read(
    conversation_id: str,
    message_ids: list[str],
    reader_type: str,
    reader_id: str,
    read_at: str,
) -> Event:
    return Event(
        MESSAGES_READ,
        {
            "conversation_id": conversation_id,
            "message_ids": message_ids,
            "reader_type": reader_type,
            "reader_id": reader_id,
            "read_at": read_at,
        },
        rooms.conversation(conversation_id),
    )


def conversation_head(conversation_id: str, last_seq: int) -> Event:
    """The conversation's highest stored seq, announced to its room after a fan-out outage:
    a client holding less fetches what it lacks (after_seq)."""
    return Event(
        CONVERSATION_HEAD,
        {"conversation_id": conversation_id, "last_seq": last_seq},
        rooms.conversation(conversation_id),
    )
