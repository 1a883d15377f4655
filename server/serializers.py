"""What each audience sees of a message, a conversation or a domain event: built here, once.

Audiences: the agent's REST API (everything, `read_by` included), Socket.IO events (the
guide's event fields: no `read_by`), the widget's history (no `read_by`, no `session_id`), and
webhooks / the outbox (a domain event's JSON envelope). `read_by` is added or stripped here
only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from server.domain_events import DomainEvent


def iso(value: datetime | None) -> str | None:
    """UTC, ISO 8601 with microseconds, as in the guide's examples."""
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f")


# ---- messages ---------------------------------------------------------------------------------


def message(row: Any) -> dict[str, Any]:
    """A stored message, whole: the agent's REST history, and MessageCreated.message."""
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
        "flagged": bool(row.flagged),
        "created_at": iso(row.created_at),
    }


def message_for_socket(msg: dict[str, Any]) -> dict[str, Any]:
    """message_received and the send_message ack: the guide's fields, without read_by (nor
    moderation's flag, which agents get from the REST history and message_flagged)."""
    return {k: v for k, v in msg.items() if k not in _NOT_FOR_SOCKETS}


_NOT_FOR_SOCKETS = frozenset({"read_by", "flagged"})


def message_for_widget(msg: dict[str, Any]) -> dict[str, Any]:
    """The widget's history: what a visitor's page needs, without who read what or the
    session id."""
    return {k: v for k, v in msg.items() if k not in _NOT_FOR_WIDGET}


# Who read what, the session, and moderation's verdict stay with the team.
_NOT_FOR_WIDGET = frozenset({"read_by", "session_id", "flagged"})


# ---- conversations ----------------------------------------------------------------------------


def _session(row: Any) -> dict[str, Any] | None:
    if row.session_id is None:
        return None
    return {
        "id": row.session_id,
        "status": row.session_status,
        "assigned_agent_id": row.assigned_agent_id,
        "tags": list(row.tags or []),
        "handled_by": handled_by(row.assigned_agent_id, row.bot_id, row.handed_off_at),
        "bot_id": row.bot_id,
        "handed_off_at": iso(row.handed_off_at),
    }


def handled_by(assigned_agent_id: str | None, bot_id: str | None, handed_off_at) -> str:
    """Who answers an open session: "agent" (one holds it), "bot" (the conversation's
    enabled bot, until it hands off), or "queue" (waiting for a person)."""
    if assigned_agent_id is not None:
        return "agent"
    if bot_id is not None and handed_off_at is None:
        return "bot"
    return "queue"


def conversation(row: Any) -> dict[str, Any]:
    """The guide's conversation shape (REST, the widget's open call)."""
    return {
        "id": row.id,
        "end_user": {
            "id": row.end_user_id,
            "display_name": row.display_name,
            "external_id": row.external_id,
            "attributes": row.end_user_attributes or {},
        },
        "channel_id": row.channel_id,
        "active_session": _session(row),
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def conversation_for_integration(row: Any) -> dict[str, Any]:
    """The integration API's conversation: the guide's shape, plus the integration's own
    metadata and the seq of the conversation's last message."""
    return {**conversation(row), "metadata": row.metadata, "last_seq": row.last_seq}


# ---- domain events (outbox, webhooks) ---------------------------------------------------------


def event_envelope(event: DomainEvent, event_id: str | None = None) -> dict[str, Any]:
    """A domain event as durable subscribers and webhooks receive it."""
    return {
        "id": event_id,
        "event": event.name,
        "organization_id": event.organization_id,
        "conversation_id": event.conversation_id,
        "data": event.to_dict(),
    }
