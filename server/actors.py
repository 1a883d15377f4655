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
    """An anonymous visitor, known only by the external_id the widget or app holds."""

    external_id: str

    sender_type = "end_user"

    @property
    def sender_id(self) -> str:
        return self.external_id


Actor = AgentActor | EndUserActor
