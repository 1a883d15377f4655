"""API keys: the credentials of servers and bots that use the integration API (/api/v1/).

A key belongs to one organization and carries scopes. It is shown once, when it is created;
only its SHA-256 is stored (keys are 256-bit random values: a slow hash would add nothing but
latency to every request). Every request looks the key up, so a revocation takes effect on
the next request on every process.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import insert, select, update

from models import ApiKey, Organization
from models.base import new_id, utcnow
from models.orgs import API_KEY_SCOPES
from server.actors import AgentActor, IntegrationActor
from server.db import Database
from server.errors import Forbidden, InvalidInput, NotFound
from server.security import API_KEY_PREFIX, new_api_key, sha256_hex
from server.serializers import iso

_K = ApiKey.__table__
_O = Organization.__table__

SCOPES = API_KEY_SCOPES
# last_used_at is a hint for people, not an audit log: written at most this often per key.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def api_key_public(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "key_prefix": row.key_prefix,
        "scopes": list(row.scopes or []),
        "created_by": row.created_by,
        "created_at": iso(row.created_at),
        "last_used_at": iso(row.last_used_at),
        "revoked_at": iso(row.revoked_at),
    }


def _check_scopes(scopes: list[str]) -> list[str]:
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise InvalidInput(f"Unknown scope {unknown[0]!r}; scopes are {', '.join(SCOPES)}.")
    if not scopes:
        raise InvalidInput("An API key needs at least one scope.")
    return list(dict.fromkeys(scopes))


class ApiKeyService:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def _require_admin(actor: AgentActor) -> None:
        if not actor.is_admin:
            raise Forbidden("Your role does not allow this.")

    async def create(self, actor: AgentActor, name: str, scopes: list[str]) -> dict[str, Any]:
        """A new key of the agent's organization (owner or admin). Returns its public shape
        and, this once, the key itself ("key"). Raises Forbidden, InvalidInput."""
        self._require_admin(actor)
        return await self._create(actor.organization_id, name, scopes, actor.user_id)

    async def create_for_organization(
        self, organization_id: str, name: str, scopes: list[str]
    ) -> dict[str, Any]:
        """The operator's path (the CLI, which has shell access to the server already).
        Raises NotFound for an unknown organization."""
        async with self.db.read() as conn:
            found = (await conn.execute(select(_O.c.id).where(_O.c.id == organization_id))).first()
        if found is None:
            raise NotFound("Organization not found.")
        return await self._create(organization_id, name, scopes, None)

    async def _create(
        self,
        organization_id: str,
        name: str,
        scopes: list[str],
        created_by: str | None,
        bot_id: str | None = None,
    ) -> dict[str, Any]:
        scopes = _check_scopes(scopes)
        key = new_api_key()
        key_id = new_id()
        async with self.db.unit_of_work() as uow:
            await uow.conn.execute(
                insert(_K).values(
                    id=key_id,
                    organization_id=organization_id,
                    name=name,
                    key_hash=sha256_hex(key),
                    key_prefix=key[: len(API_KEY_PREFIX) + 6],
                    scopes=scopes,
                    created_by=created_by,
                    bot_id=bot_id,
                    created_at=utcnow(),
                )
            )
            row = (await uow.conn.execute(select(_K).where(_K.c.id == key_id))).one()
        return {**api_key_public(row), "key": key}

    async def create_for_bot(
        self, organization_id: str, bot_id: str, name: str, created_by: str | None
    ) -> dict[str, Any]:
        """A webhook bot's own key (conversations:read and :write): what it sends through
        the integration API is the bot's message. Returns the key this once ("key")."""
        return await self._create(
            organization_id,
            name,
            ["conversations:read", "conversations:write"],
            created_by,
            bot_id,
        )

    async def list(self, actor: AgentActor) -> list[dict[str, Any]]:
        self._require_admin(actor)
        return await self.list_for_organization(actor.organization_id)

    async def list_for_organization(self, organization_id: str) -> list[dict[str, Any]]:
        """The organization's keys, newest first (never the keys themselves)."""
        stmt = (
            select(_K)
            .where(_K.c.organization_id == organization_id)
            .order_by(_K.c.created_at.desc(), _K.c.id)
        )
        async with self.db.read() as conn:
            return [api_key_public(r) for r in await conn.execute(stmt)]

    async def revoke(self, actor: AgentActor, key_id: str) -> dict[str, Any]:
        """Revoke a key of the agent's organization; a second revoke keeps the first time.
        Raises Forbidden (role), NotFound (no such key in this organization)."""
        self._require_admin(actor)
        return await self.revoke_for_organization(actor.organization_id, key_id)

    async def revoke_for_organization(self, organization_id: str, key_id: str) -> dict[str, Any]:
        """The operator's revoke (the CLI); scoped to the named organization."""
        async with self.db.unit_of_work() as uow:
            await uow.conn.execute(
                update(_K)
                .where(
                    _K.c.id == key_id,
                    _K.c.organization_id == organization_id,
                    _K.c.revoked_at.is_(None),
                )
                .values(revoked_at=utcnow())
            )
            row = (
                await uow.conn.execute(
                    select(_K).where(_K.c.id == key_id, _K.c.organization_id == organization_id)
                )
            ).first()
        if row is None:
            raise NotFound("API key not found.")
        return api_key_public(row)

    async def authenticate(self, key: str | None) -> IntegrationActor | None:
        """The integration a presented key stands for, or None (unknown, malformed or
        revoked: the caller answers all of them alike)."""
        if not key or not key.startswith(API_KEY_PREFIX):
            return None
        stmt = select(
            _K.c.id, _K.c.organization_id, _K.c.name, _K.c.scopes, _K.c.last_used_at, _K.c.bot_id
        )
        stmt = stmt.where(_K.c.key_hash == sha256_hex(key), _K.c.revoked_at.is_(None))
        async with self.db.read() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            return None
        now = utcnow()
        if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
            async with self.db.unit_of_work() as uow:
                await uow.conn.execute(update(_K).where(_K.c.id == row.id).values(last_used_at=now))
        return IntegrationActor(
            row.id, row.organization_id, frozenset(row.scopes or ()), row.name, row.bot_id
        )
