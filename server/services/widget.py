"""WidgetService: the visitor's side of the web embed.

Opening the widget page (the same conversation call as POST /chat-widget/conversations, plus
which sites may frame it) and proving that a visitor holds a conversation of a live token's
channel (for uploads). Nothing here knows HTTP; the edges render the results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from models import Conversation, EndUser
from server.actors import IdentityProof
from server.db import Database
from server.errors import Forbidden, NotFound, RateLimited
from server.origins import frame_ancestors
from server.services.conversations import ConversationService, channel_identity_of
from server.services.ratelimit import RateLimiter
from server.settings import Settings

_C = Conversation.__table__
_E = EndUser.__table__


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


class WidgetService:
    def __init__(
        self,
        db: Database,
        conversations: ConversationService,
        limits: VisitorLimits | None = None,
    ) -> None:
        self.db = db
        self.conversations = conversations
        self.limits = limits

    async def open_page(
        self,
        embed_token: str,
        external_id: str,
        customer_name: str | None,
        client_address: str | None = None,
        proof: IdentityProof | None = None,
    ) -> WidgetPage:
        """The widget page of a visitor: their conversation (created on the first visit,
        renamed when customer_name changes) and who may frame the page.

        Actor: the anonymous visitor holding external_id. Raises Forbidden for an unknown or
        revoked token, IdentityRequired / IdentityRefused when the channel verifies its end
        users and the proof is missing or wrong, RateLimited as open_conversation does.
        Emits nothing (a conversation is announced by its first message).
        """
        token = await self.conversations.live_embed_token(embed_token)
        conversation, _created = await self.open_conversation(
            embed_token, external_id, customer_name, client_address=client_address, proof=proof
        )
        return WidgetPage(conversation, frame_ancestors(token.allowed_origins))

    async def handshake_token(self, embed_token: str, origin: str | None):
        """The live token a visitor's socket presents in its handshake (the widget's `auth`).

        origin: the browser Origin when it is not the server's own (None for the widget page
        itself and for native apps). Raises Forbidden for an unknown or revoked token, or an
        Origin outside the token's allowed origins (when it has any). Returns the token row.
        """
        return await self.conversations.live_embed_token(embed_token, origin)

    async def visitor_conversation(
        self,
        embed_token: str,
        external_id: str,
        conversation_id: str,
        origin: str | None = None,
        own_origin: str | None = None,
        proof: IdentityProof | None = None,
    ) -> VisitorConversation:
        """Check that the visitor holding external_id owns the conversation on the live
        token's channel.

        Raises Forbidden (unknown or revoked token, or a browser Origin the token does not
        allow) and NotFound (no such conversation for this visitor on this channel: "not
        yours" and "does not exist" are the same answer).
        """
        token = await self.conversations.live_embed_token(embed_token, origin, own_origin)
        await self.conversations.identity.verify(channel_identity_of(token), external_id, proof)
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

    # ---- throttled opening (REST abuse limits) -------------------------------------------

    async def open_conversation(
        self,
        embed_token: str,
        external_id: str,
        customer_name: str | None = None,
        origin: str | None = None,
        own_origin: str | None = None,
        client_address: str | None = None,
        proof: IdentityProof | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """ConversationService.create_or_get_conversation for a visitor on the public web,
        with the limits on new conversations (per client address, per embed token).

        A visitor who already has a conversation on the token's channel is not counted (the
        widget calls this again to set the name). Every attempt that would create one counts,
        before it is made, so that concurrent attempts cannot slip through together. Raises
        RateLimited over a limit (nothing created), and what create_or_get_conversation
        raises. Returns (conversation, created).
        """
        if self.limits is not None:
            try:
                token = await self.conversations.live_embed_token(embed_token, origin, own_origin)
            except Forbidden:
                token = None  # creates nothing: create_or_get_conversation says why
            if token is not None:
                # An unproven visitor is refused before it counts against anyone's limits.
                await self.conversations.identity.verify(
                    channel_identity_of(token), external_id, proof
                )
                if not await self.conversations.has_conversation(token.channel_id, external_id):
                    await self.limits.new_conversation(client_address, token.id)
        return await self.conversations.create_or_get_conversation(
            embed_token,
            external_id,
            customer_name,
            origin=origin,
            own_origin=own_origin,
            proof=proof,
        )


class VisitorLimits:
    """The REST abuse limits on what anonymous visitors may do (server.settings: "REST abuse
    limits"), on the shared RateLimiter: per process without Redis, across processes with it.

    Each check records the attempt and raises RateLimited (retry_after_ms) over the limit; a
    limit of 0 is off. Keys carry no secrets: token ids, conversation ids, addresses.
    """

    def __init__(self, limiter: RateLimiter, settings: Settings) -> None:
        self.limiter = limiter
        self.settings = settings

    async def _take(self, key: str, limit: int, window_s: float, message: str) -> None:
        if limit <= 0:
            return
        retry_ms = await self.limiter.hit(key, limit, window_s)
        if retry_ms:
            raise RateLimited(retry_ms, message)

    async def new_conversation(self, client_address: str | None, token_id: str) -> None:
        s = self.settings
        window = s.new_conversations_window_seconds
        if client_address:
            await self._take(
                f"open:addr:{client_address}",
                s.new_conversations_per_address,
                window,
                "Too many new conversations from this address; try again later.",
            )
        await self._take(
            f"open:token:{token_id}",
            s.new_conversations_per_token,
            window,
            "Too many new conversations on this chat; try again later.",
        )

    async def visitor_upload_from(self, client_address: str | None) -> None:
        s = self.settings
        if client_address:
            await self._take(
                f"upload:addr:{client_address}",
                s.visitor_uploads_per_address,
                s.visitor_uploads_window_seconds,
                "Too many uploads from this address; try again later.",
            )

    async def visitor_upload_by(self, conversation_id: str) -> None:
        s = self.settings
        await self._take(
            f"upload:conv:{conversation_id}",
            s.visitor_uploads_per_visitor,
            s.visitor_uploads_window_seconds,
            "Too many uploads; try again later.",
        )
