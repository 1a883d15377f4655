"""Who is acting: an agent (session cookie) or an end user (external_id on a conversation)."""

from __future__ import annotations

from dataclasses import dataclass

ADMIN_ROLES = frozenset({"owner", "admin"})


@dataclass(frozen=True, slots=True)
class AgentActor:
    user_id: str
    organization_id: str
    role: str
    email: str = ""
    display_name: str = ""

    sender_type = "agent"

    @property
    def sender_id(self) -> str:
        return self.user_id

    @property
    def is_admin(self) -> bool:
        return self.role in ADMIN_ROLES


@dataclass(frozen=True, slots=True)
class EndUserActor:
    """An anonymous visitor, known only by the external_id the widget or app holds.

    A client may also say which embed token it is under (the widget's handshake), and a
    browser says which page it runs on: both narrow what the visitor reaches (see
    ConversationService.facts).
    """

    external_id: str
    # The live embed token the client presented, if any.
    embed_token_id: str | None = None
    # The browser Origin, when it is not the server's own (the widget page's own is None).
    origin: str | None = None

    sender_type = "end_user"

    @property
    def sender_id(self) -> str:
        return self.external_id


Actor = AgentActor | EndUserActor
