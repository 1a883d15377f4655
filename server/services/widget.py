"""WidgetService: the visitor's side of the web embed.

Opening the widget page (the same conversation call as POST /chat-widget/conversations, plus
which sites may frame it) and proving that a visitor holds a conversation of a live token's
channel (for uploads). Nothing here knows HTTP; the edges render the results.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from models import Conversation, EndUser
from server.db import Database
from server.errors import Forbidden, NotFound
from server.services.conversations import ConversationService

_C = Conversation.__table__
_E = EndUser.__table__

# What a frame-ancestors source may be. Allowed origins are checked when a token is made
# (orgs.normalize_origin), but a value with ";" or "," would end the directive, so the policy
# is built only from values that cannot.
_ORIGIN_SOURCE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?\Z")


@dataclass(frozen=True, slots=True)
class WidgetPage:
    conversation: dict[str, Any]
    # The sources of Content-Security-Policy: frame-ancestors, never empty.
    frame_ancestors: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VisitorConversation:
    organization_id: str
    channel_id: str
    conversation_id: str
    external_id: str


def frame_ancestors(allowed_origins: list[str] | None) -> tuple[str, ...]:
    """The token's allowed origins; every origin ("*") when the list is empty, as the guide
    says; nobody ("'none'") when a list was given but none of it can be used."""
    if not allowed_origins:
        return ("*",)
    usable = tuple(o for o in allowed_origins if _ORIGIN_SOURCE.match(o))
    return usable or ("'none'",)


def origin_allowed(allowed_origins: list[str] | None, origin: str | None, own: str | None) -> bool:
    """A browser Origin may use a token when the token names it (or names none), or when it
    is the server's own (the widget page itself). The same rule as opening a conversation."""
    if not origin or not allowed_origins:
        return True
    return origin.rstrip("/") in allowed_origins or origin == own


class WidgetService:
    def __init__(self, db: Database, conversations: ConversationService) -> None:
        self.db = db
        self.conversations = conversations

    async def open_page(
        self, embed_token: str, external_id: str, customer_name: str | None
    ) -> WidgetPage:
        """The widget page of a visitor: their conversation (created on the first visit,
        renamed when customer_name changes) and who may frame the page.

        Actor: the anonymous visitor holding external_id. Raises Forbidden for an unknown or
        revoked token. Emits nothing (a conversation is announced by its first message).
        """
        token = await self.conversations.embed_token(embed_token)
        if token is None:
            raise Forbidden("Embed token invalid.")
        conversation, _created = await self.conversations.create_or_get_conversation(
            embed_token, external_id, customer_name
        )
        return WidgetPage(conversation, frame_ancestors(token.allowed_origins))

    async def handshake_token(self, embed_token: str, origin: str | None):
        """The live token a visitor's socket presents in its handshake (the widget's `auth`).

        origin: the browser Origin when it is not the server's own (None for the widget page
        itself and for native apps). Raises Forbidden for an unknown or revoked token, or an
        Origin outside the token's allowed origins (when it has any). Returns the token row.
        """
        token = await self.conversations.embed_token(embed_token)
        if token is None:
            raise Forbidden("Embed token invalid.")
        if not origin_allowed(token.allowed_origins, origin, None):
            raise Forbidden("Origin not allowed for this embed token.")
        return token

    async def visitor_conversation(
        self,
        embed_token: str,
        external_id: str,
        conversation_id: str,
        origin: str | None = None,
        own_origin: str | None = None,
    ) -> VisitorConversation:
        """Check that the visitor holding external_id owns the conversation on the live
        token's channel.

        Raises Forbidden (unknown or revoked token, or a browser Origin the token does not
        allow) and NotFound (no such conversation for this visitor on this channel: "not
        yours" and "does not exist" are the same answer).
        """
        token = await self.conversations.embed_token(embed_token)
        if token is None:
            raise Forbidden("Embed token invalid.")
        if not origin_allowed(token.allowed_origins, origin, own_origin):
            raise Forbidden("Origin not allowed for this embed token.")
        stmt = (
            select(_C.c.id)
            .select_from(_C.join(_E, _E.c.id == _C.c.end_user_id))
            .where(
                _C.c.id == conversation_id,
                _C.c.channel_id == token.channel_id,
                _E.c.channel_id == token.channel_id,
                _E.c.external_id == external_id,
            )
        )
        async with self.db.read() as session:
            found = (await session.execute(stmt)).first()
        if found is None:
            raise NotFound("Conversation not found.")
        return VisitorConversation(
            token.organization_id, token.channel_id, conversation_id, external_id
        )
