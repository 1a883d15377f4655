"""MobileService: native apps on mobile channels (the guide's "Mobile SDK Integration").

An app opens its user's conversation with the channel's id or public key (the guide's planned
native call, POST /api/mobile/conversations), proving the user's identity when the channel
requires it, then talks Socket.IO like the widget (join_conversation, send_message). Nothing
here knows HTTP.
"""

from __future__ import annotations

from typing import Any

from server.actors import IdentityProof
from server.services.conversations import ConversationService, channel_identity_of
from server.services.widget import VisitorLimits


class MobileService:
    def __init__(
        self, conversations: ConversationService, limits: VisitorLimits | None = None
    ) -> None:
        self.conversations = conversations
        self.limits = limits

    async def open_conversation(
        self,
        channel_id: str | None,
        channel_key: str | None,
        external_id: str,
        display_name: str | None = None,
        proof: IdentityProof | None = None,
        client_address: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """The app user's conversation on the mobile channel (created on first use, renamed
        when display_name changes). Actor: the app user holding external_id (and its proof).

        Raises NotFound (no such mobile channel), IdentityRequired / IdentityRefused (the
        channel verifies its users), RateLimited (new conversations per address and per
        channel, as for the widget; a proven user with a conversation is not counted).
        Returns (conversation, created).
        """
        channel = await self.conversations.mobile_channel(channel_id, channel_key)
        if self.limits is not None:
            await self.conversations.identity.verify(
                channel_identity_of(channel, channel.id), external_id, proof
            )
            if not await self.conversations.has_conversation(channel.id, external_id):
                await self.limits.new_conversation(client_address, "channel:" + channel.id)
        return await self.conversations.open_on_mobile_channel(
            channel, external_id, display_name, proof
        )
