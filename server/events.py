"""One builder per contract event, with exactly the integration guide's fields.

The public shape of a message is built here once and used by socket events and REST history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server import rooms

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
ERROR = "error"


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    payload: dict[str, Any]
    room: str | list[str]
    skip_sid: str | None = None


def iso(value: datetime | None) -> str | None:
    """UTC, ISO 8601 with microseconds, as in the guide's examples."""
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f")


def message_public(row: Any) -> dict[str, Any]:
    """A stored message as socket events and the agent's history show it."""
    return {
        "id": row.id,
        "conversation_id": row.conversation_id,
        "session_id": row.session_id,
        "seq": row.seq,
        "sender_type": row.sender_type,
        "sender_id": row.sender_id,
        "content_type": row.content_type,
        "content": row.content,
        "rich_media": row.rich_media,
        "read_by": row.read_by or {},
        "created_at": iso(row.created_at),
    }


def message_received(message: dict[str, Any]) -> Event:
    payload = {k: v for k, v in message.items() if k != "read_by"}
    return Event(MESSAGE_RECEIVED, payload, rooms.conversation(message["conversation_id"]))


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
    resolved_at: datetime,
) -> Event:
    return Event(
        CONVERSATION_RESOLVED,
        {
            "conversation_id": conversation_id,
            "session_id": session_id,
            "tags": tags,
            "resolved_at": iso(resolved_at),
        },
        room,
    )


def typing_indicator(conversation_id: str, sender_type: str, skip_sid: str | None) -> Event:
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
    read_at: datetime,
) -> Event:
    return Event(
        MESSAGES_READ,
        {
            "conversation_id": conversation_id,
            "message_ids": message_ids,
            "reader_type": reader_type,
            "reader_id": reader_id,
            "read_at": iso(read_at),
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
