"""Organizations, agents, channels and embed tokens: the operator's and admins' use cases."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from models import Bot, Channel, EmbedToken, Organization, User
from models.base import new_id, utcnow
from models.orgs import IDENTITY_JWT_ALGORITHMS, IDENTITY_MODES
from server.actors import AgentActor
from server.db import Database
from server.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.identity import IdentityVerifier
from server.origins import normalize_origin
from server.security import hash_password, new_embed_token, sha256_hex
from server.serializers import iso
from server.services.auth import user_public

_O = Organization.__table__
_U = User.__table__
_Ch = Channel.__table__
_T = EmbedToken.__table__
_B = Bot.__table__

ROLES = ("owner", "admin", "agent")
MIN_PASSWORD = 8
MOBILE_KEY_PREFIX = "mc_"


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"Password must be at least {MIN_PASSWORD} characters.")


def token_public(row) -> dict[str, Any]:
    return {
        "id": row.id,
        "channel_id": row.channel_id,
        "name": row.name,
        "token_prefix": row.token_prefix,
        "allowed_origins": list(row.allowed_origins or []),
        "bot_id": row.bot_id,
        "revoked_at": iso(row.revoked_at),
        "created_at": iso(row.created_at),
    }


def channel_public(row) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": row.type,
        "name": row.name,
        "created_at": iso(row.created_at),
        # What native apps present to open conversations (mobile channels; null for web chat).
        "public_key": row.public_key,
        "bot_id": row.bot_id,
        "identity": {
            "mode": row.identity_mode,
            "jwt_algorithm": row.identity_jwt_algorithm,
            "jwks_url": row.identity_jwks_url,
        },
    }


async def organization_channel(conn, organization_id: str, channel_id: str):
    """The channel row, if it is the organization's (else NotFound: another organization's
    channel is not told apart from none)."""
    row = (
        await conn.execute(
            select(_Ch).where(_Ch.c.id == channel_id, _Ch.c.organization_id == organization_id)
        )
    ).first()
    if row is None:
        raise NotFound("Channel not found.")
    return row


async def _own_bot(conn, organization_id: str, bot_id: str | None) -> None:
    """NotFound unless `bot_id` (when given) is a bot of the organization."""
    if bot_id is None:
        return
    found = (
        await conn.execute(
            select(_B.c.id).where(_B.c.id == bot_id, _B.c.organization_id == organization_id)
        )
    ).first()
    if found is None:
        raise NotFound("Bot not found.")


def new_channel_key() -> str:
    return MOBILE_KEY_PREFIX + secrets.token_urlsafe(24)


class OrgService:
    def __init__(self, db: Database, identity: IdentityVerifier | None = None) -> None:
        self.db = db
        self.identity = identity or IdentityVerifier("")

    async def bootstrap(
        self, org_name: str, email: str, password: str, allowed_origins: list[str] | None = None
    ) -> dict[str, str]:
        """Create (or reuse) the organization, its owner and a webchat channel, and issue a
        new embed token. The token is returned once; only its hash is stored."""
        email = email.strip().lower()
        origins = [normalize_origin(o) for o in (allowed_origins or [])]
        token = new_embed_token()
        now = utcnow()
        async with self.db.unit_of_work() as uow:
            s = uow.conn
            org_id = (await s.execute(select(_O.c.id).where(_O.c.name == org_name))).scalar()
            if org_id is None:
                org_id = new_id()
                await s.execute(insert(_O).values(id=org_id, name=org_name, created_at=now))
            user = (await s.execute(select(_U).where(_U.c.email == email))).first()
            if user is None:
                _check_password(password)
                user_id = new_id()
                await s.execute(
                    insert(_U).values(
                        id=user_id,
                        organization_id=org_id,
                        email=email,
                        display_name=email.split("@")[0],
                        password_hash=hash_password(password),
                        role="owner",
                        created_at=now,
                    )
                )
            elif user.organization_id != org_id:
                raise Conflict(f"{email} already belongs to another organization.")
            else:
                user_id = user.id
            channel_id = (
                await s.execute(
                    select(_Ch.c.id)
                    .where(_Ch.c.organization_id == org_id, _Ch.c.type == "webchat")
                    .order_by(_Ch.c.created_at)
                    .limit(1)
                )
            ).scalar()
            if channel_id is None:
                channel_id = new_id()
                await s.execute(
                    insert(_Ch).values(
                        id=channel_id,
                        organization_id=org_id,
                        type="webchat",
                        name="Web chat",
                        created_at=now,
                    )
                )
            await self._insert_token(s, org_id, channel_id, "Default", token, origins)
        return {
            "org_id": org_id,
            "user_id": user_id,
            "channel_id": channel_id,
            "embed_token": token,
        }

    async def _insert_token(self, s, org_id, channel_id, name, token, origins) -> str:
        token_id = new_id()
        await s.execute(
            insert(_T).values(
                id=token_id,
                organization_id=org_id,
                channel_id=channel_id,
                name=name,
                token_hash=sha256_hex(token),
                token_prefix=token[:8],
                allowed_origins=origins,
                created_at=utcnow(),
            )
        )
        return token_id

    async def add_user(
        self, org_id: str, email: str, password: str, role: str, display_name: str | None = None
    ) -> dict[str, Any]:
        """Operator path (CLI): add an agent to an organization."""
        if role not in ROLES:
            raise InvalidInput("role must be one of owner, admin, agent.")
        _check_password(password)
        email = email.strip().lower()
        if "@" not in email:
            raise InvalidInput("email must be an email address.")
        user_id = new_id()
        try:
            async with self.db.unit_of_work() as uow:
                s = uow.conn
                if (await s.execute(select(_O.c.id).where(_O.c.id == org_id))).first() is None:
                    raise NotFound("Organization not found.")
                await s.execute(
                    insert(_U).values(
                        id=user_id,
                        organization_id=org_id,
                        email=email,
                        display_name=display_name or email.split("@")[0],
                        password_hash=hash_password(password),
                        role=role,
                        created_at=utcnow(),
                    )
                )
        except IntegrityError:
            raise Conflict("A user with this email already exists.") from None
        return {"user_id": user_id, "organization_id": org_id, "email": email, "role": role}

    # ---- admin use cases (owner/admin agents of the organization) ---------------------

    @staticmethod
    def _require_admin(actor: AgentActor) -> None:
        if not actor.is_admin:
            raise Forbidden("Your role does not allow this.")

    async def list_users(self, actor: AgentActor) -> list[dict[str, Any]]:
        self._require_admin(actor)
        async with self.db.read() as s:
            rows = (
                await s.execute(
                    select(_U)
                    .where(_U.c.organization_id == actor.organization_id)
                    .order_by(_U.c.email)
                )
            ).all()
        return [user_public(r) for r in rows]

    async def team(self, actor: AgentActor) -> list[dict[str, Any]]:
        """The actor's colleagues as the inbox shows them (names for the presence list).

        Any role may read it: no email, nothing an admin listing adds. Scoped to the actor's
        organization; ordered by display name.
        """
        async with self.db.read() as s:
            rows = (
                await s.execute(
                    select(_U.c.id, _U.c.display_name, _U.c.role)
                    .where(_U.c.organization_id == actor.organization_id)
                    .order_by(_U.c.display_name, _U.c.id)
                )
            ).all()
        return [{"id": r.id, "display_name": r.display_name, "role": r.role} for r in rows]

    async def create_user(
        self, actor: AgentActor, email: str, password: str, role: str, display_name: str | None
    ) -> dict[str, Any]:
        """Owners add anyone; admins add agents and admins. Raises Forbidden, Conflict."""
        self._require_admin(actor)
        if role == "owner" and actor.role != "owner":
            raise Forbidden("Only an owner can add an owner.")
        created = await self.add_user(actor.organization_id, email, password, role, display_name)
        async with self.db.read() as s:
            row = (await s.execute(select(_U).where(_U.c.id == created["user_id"]))).one()
        return user_public(row)

    async def list_channels(self, actor: AgentActor) -> list[dict[str, Any]]:
        self._require_admin(actor)
        async with self.db.read() as s:
            rows = (
                await s.execute(
                    select(_Ch)
                    .where(_Ch.c.organization_id == actor.organization_id)
                    .order_by(_Ch.c.created_at)
                )
            ).all()
        return [channel_public(r) for r in rows]

    async def create_channel(
        self, actor: AgentActor, type: str, name: str, bot_id: str | None = None
    ) -> dict[str, Any]:
        """A channel of the agent's organization, answered by `bot_id` (a bot of the
        organization, else NotFound and nothing is created) when given."""
        self._require_admin(actor)
        channel_id = new_id()
        async with self.db.unit_of_work() as uow:
            await _own_bot(uow.conn, actor.organization_id, bot_id)
            await uow.conn.execute(
                insert(_Ch).values(
                    id=channel_id,
                    organization_id=actor.organization_id,
                    type=type,
                    name=name,
                    created_at=utcnow(),
                    public_key=new_channel_key() if type == "mobile_sdk" else None,
                    identity_mode="off",
                    bot_id=bot_id,
                )
            )
            row = (await uow.conn.execute(select(_Ch).where(_Ch.c.id == channel_id))).one()
        return channel_public(row)

    # ---- verified identity of a channel's end users (server/identity.py) ----------------

    async def _own_channel(self, s, actor: AgentActor, channel_id: str):
        return await organization_channel(s, actor.organization_id, channel_id)

    def _identity_settings(self, row) -> dict[str, Any]:
        """A channel's identity settings with its secret (owners and admins only: the
        customer's server needs it to sign user ids)."""
        # Shown while verification is off too (once drawn with rotate-secret), so the
        # customer's servers can sign before the channel starts refusing unsigned users.
        uses_secret = row.identity_salt is not None and (
            row.identity_mode != "jwt" or row.identity_jwt_algorithm == "HS256"
        )
        return {
            "channel_id": row.id,
            "mode": row.identity_mode,
            "jwt_algorithm": row.identity_jwt_algorithm,
            "jwks_url": row.identity_jwks_url,
            "secret": self.identity.secret_for(row.id, row.identity_salt) if uses_secret else None,
        }

    async def channel_identity(self, actor: AgentActor, channel_id: str) -> dict[str, Any]:
        self._require_admin(actor)
        async with self.db.read() as s:
            return self._identity_settings(await self._own_channel(s, actor, channel_id))

    async def set_channel_identity(
        self,
        actor: AgentActor,
        channel_id: str,
        mode: str,
        jwt_algorithm: str | None = None,
        jwks_url: str | None = None,
    ) -> dict[str, Any]:
        """Set how the channel verifies its end users. "hmac" and "jwt" with HS256 use the
        channel's identity secret (made on first use, kept across mode changes); RS256 and
        ES256 need the identity provider's JWKS URL. Turning verification on refuses every
        end user without a proof from then on, on every way in. InvalidInput, NotFound."""
        self._require_admin(actor)
        if mode not in IDENTITY_MODES:
            raise InvalidInput("mode must be off, hmac or jwt.")
        if mode == "jwt":
            jwt_algorithm = jwt_algorithm or "HS256"
            if jwt_algorithm not in IDENTITY_JWT_ALGORITHMS:
                raise InvalidInput("jwt_algorithm must be HS256, RS256 or ES256.")
            if jwt_algorithm != "HS256" and not jwks_url:
                raise InvalidInput(f"{jwt_algorithm} needs jwks_url, the identity provider's keys.")
            if jwt_algorithm == "HS256":
                jwks_url = None
        else:
            jwt_algorithm, jwks_url = None, None
        async with self.db.unit_of_work() as uow:
            row = await self._own_channel(uow.conn, actor, channel_id)
            values: dict[str, Any] = {
                "identity_mode": mode,
                "identity_jwt_algorithm": jwt_algorithm,
                "identity_jwks_url": jwks_url,
            }
            if row.identity_salt is None and mode != "off":
                values["identity_salt"] = secrets.token_hex(16)
            await uow.conn.execute(update(_Ch).where(_Ch.c.id == row.id).values(**values))
            row = (await uow.conn.execute(select(_Ch).where(_Ch.c.id == row.id))).one()
        return self._identity_settings(row)

    async def rotate_identity_secret(self, actor: AgentActor, channel_id: str) -> dict[str, Any]:
        """A new identity secret: proofs made with the old one are refused from now on. On a
        channel that does not verify yet, this draws the secret to prepare with."""
        self._require_admin(actor)
        async with self.db.unit_of_work() as uow:
            row = await self._own_channel(uow.conn, actor, channel_id)
            await uow.conn.execute(
                update(_Ch).where(_Ch.c.id == row.id).values(identity_salt=secrets.token_hex(16))
            )
            row = (await uow.conn.execute(select(_Ch).where(_Ch.c.id == row.id))).one()
        return self._identity_settings(row)

    async def list_embed_tokens(self, actor: AgentActor) -> list[dict[str, Any]]:
        self._require_admin(actor)
        async with self.db.read() as s:
            rows = (
                await s.execute(
                    select(_T)
                    .where(_T.c.organization_id == actor.organization_id)
                    .order_by(_T.c.created_at)
                )
            ).all()
        return [token_public(r) for r in rows]

    async def create_embed_token(
        self,
        actor: AgentActor,
        channel_id: str,
        name: str,
        allowed_origins: list[str],
        bot_id: str | None = None,
    ) -> dict[str, Any]:
        """Issue a token for a webchat channel of the actor's org; the token is shown once.
        `bot_id`: the bot that answers under it (a bot of the organization, else NotFound)."""
        self._require_admin(actor)
        origins = [normalize_origin(o) for o in allowed_origins]
        token = new_embed_token()
        async with self.db.unit_of_work() as uow:
            s = uow.conn
            channel = await organization_channel(s, actor.organization_id, channel_id)
            if channel.type != "webchat":
                raise InvalidInput("Embed tokens are for webchat channels.")
            await _own_bot(s, actor.organization_id, bot_id)
            token_id = await self._insert_token(
                s, actor.organization_id, channel_id, name, token, origins
            )
            if bot_id is not None:
                await s.execute(update(_T).where(_T.c.id == token_id).values(bot_id=bot_id))
            row = (await s.execute(select(_T).where(_T.c.id == token_id))).one()
        return {**token_public(row), "token": token}

    async def revoke_embed_token(self, actor: AgentActor, token_id: str) -> dict[str, Any]:
        self._require_admin(actor)
        async with self.db.unit_of_work() as uow:
            s = uow.conn
            await s.execute(
                update(_T)
                .where(
                    _T.c.id == token_id,
                    _T.c.organization_id == actor.organization_id,
                    _T.c.revoked_at.is_(None),
                )
                .values(revoked_at=utcnow())
            )
            row = (
                await s.execute(
                    select(_T).where(
                        _T.c.id == token_id, _T.c.organization_id == actor.organization_id
                    )
                )
            ).first()
            if row is None:
                raise NotFound("Embed token not found.")
        return token_public(row)

    # ---- operator use cases (the CLI) ---------------------------------------------------
    # The operator runs `chatd` on the server with the database credentials, so is trusted
    # with every organization: no actor and no role check; every load is still scoped to the
    # organization named on the command line.

    async def _require_org(self, s, org_id: str) -> None:
        if (await s.execute(select(_O.c.id).where(_O.c.id == org_id))).first() is None:
            raise NotFound("Organization not found.")

    async def operator_list_embed_tokens(self, org_id: str) -> list[dict[str, Any]]:
        """Operator path: the organization's embed tokens (never the secrets). NotFound."""
        async with self.db.read() as s:
            await self._require_org(s, org_id)
            rows = (
                await s.execute(
                    select(_T).where(_T.c.organization_id == org_id).order_by(_T.c.created_at)
                )
            ).all()
        return [token_public(r) for r in rows]

    async def operator_create_embed_token(
        self,
        org_id: str,
        channel_id: str | None,
        name: str,
        allowed_origins: list[str],
    ) -> dict[str, Any]:
        """Operator path: issue a token for a webchat channel of the organization (its first
        webchat channel when none is named); the token is shown once. NotFound, InvalidInput."""
        origins = [normalize_origin(o) for o in allowed_origins]
        token = new_embed_token()
        async with self.db.unit_of_work() as uow:
            s = uow.conn
            await self._require_org(s, org_id)
            query = select(_Ch).where(_Ch.c.organization_id == org_id)
            if channel_id is None:
                query = query.where(_Ch.c.type == "webchat").order_by(_Ch.c.created_at).limit(1)
            else:
                query = query.where(_Ch.c.id == channel_id)
            channel = (await s.execute(query)).first()
            if channel is None:
                raise NotFound("Channel not found.")
            if channel.type != "webchat":
                raise InvalidInput("Embed tokens are for webchat channels.")
            token_id = await self._insert_token(s, org_id, channel.id, name, token, origins)
            row = (await s.execute(select(_T).where(_T.c.id == token_id))).one()
        return {**token_public(row), "token": token}

    async def operator_revoke_embed_token(self, org_id: str, token_id: str) -> dict[str, Any]:
        """Operator path: revoke a token of the organization (idempotent); open widget sockets
        under it are cut by the access sweep. NotFound."""
        async with self.db.unit_of_work() as uow:
            s = uow.conn
            await s.execute(
                update(_T)
                .where(
                    _T.c.id == token_id,
                    _T.c.organization_id == org_id,
                    _T.c.revoked_at.is_(None),
                )
                .values(revoked_at=utcnow())
            )
            row = (
                await s.execute(
                    select(_T).where(_T.c.id == token_id, _T.c.organization_id == org_id)
                )
            ).first()
            if row is None:
                raise NotFound("Embed token not found.")
        return token_public(row)

    async def has_any_organization(self) -> bool:
        async with self.db.read() as s:
            return (await s.execute(select(_O.c.id).limit(1))).first() is not None
