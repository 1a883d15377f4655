"""Agent authentication: password login, server-side sessions, CSRF tokens, login throttling."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, insert, select

from models import AuthSession, User
from models.base import utcnow
from server.actors import AgentActor
from server.db import Database
from server.errors import NotAuthenticated, RateLimited
from server.security import (
    csrf_matches,
    csrf_token_for,
    new_session_token,
    sha256_hex,
    verify_password,
)
from server.services.ratelimit import RateLimiter
from server.settings import Settings

_U = User.__table__
_A = AuthSession.__table__


def user_public(row) -> dict:
    return {
        "id": row.id,
        "organization_id": row.organization_id,
        "email": row.email,
        "display_name": row.display_name,
        "role": row.role,
    }


class AuthService:
    def __init__(self, db: Database, limiter: RateLimiter, settings: Settings) -> None:
        self.db = db
        self.limiter = limiter
        self.settings = settings

    def _throttle_keys(self, email: str, client_ip: str | None) -> list[str]:
        keys = [f"login:email:{email}"]
        if client_ip:
            keys.append(f"login:ip:{client_ip}")
        return keys

    async def login(
        self, email: str, password: str, client_ip: str | None = None
    ) -> tuple[str, dict]:
        """Check credentials and open a session. Returns (session token, user).

        Raises RateLimited after too many failures for the address or the client, and
        NotAuthenticated for wrong credentials (which also counts as a failure).
        """
        email = email.strip().lower()
        keys = self._throttle_keys(email, client_ip)
        limit, window = self.settings.login_attempts, self.settings.login_window_seconds
        # The IP allowance is wider: many agents may share an office address.
        limits = [limit, limit * 5]
        for key, lim in zip(keys, limits, strict=False):
            retry = await self.limiter.blocked_for(key, lim, window)
            if retry:
                raise RateLimited(retry, "Too many failed logins; try again later.")
        async with self.db.read() as session:
            row = (await session.execute(select(_U).where(_U.c.email == email))).first()
        if not verify_password(row.password_hash if row else None, password):
            for key, lim in zip(keys, limits, strict=False):
                await self.limiter.hit(key, lim, window)
            raise NotAuthenticated("Invalid email or password.")
        token = new_session_token()
        now = utcnow()
        async with self.db.unit_of_work() as uow:
            await uow.session.execute(
                insert(_A).values(
                    id_hash=sha256_hex(token),
                    user_id=row.id,
                    created_at=now,
                    expires_at=now + timedelta(seconds=self.settings.session_ttl_seconds),
                )
            )
            # Housekeeping: expired sessions of this user go when they log in again.
            await uow.session.execute(
                delete(_A).where(_A.c.user_id == row.id, _A.c.expires_at < now)
            )
        return token, user_public(row)

    async def agent_for_session(self, token: str | None) -> AgentActor | None:
        if not token or len(token) > 200:
            return None
        stmt = (
            select(_U.c.id, _U.c.organization_id, _U.c.role, _U.c.email, _U.c.display_name)
            .select_from(_A.join(_U, _U.c.id == _A.c.user_id))
            .where(_A.c.id_hash == sha256_hex(token), _A.c.expires_at > utcnow())
        )
        async with self.db.read() as session:
            row = (await session.execute(stmt)).first()
        if row is None:
            return None
        return AgentActor(row.id, row.organization_id, row.role, row.email, row.display_name)

    async def user(self, actor: AgentActor) -> dict:
        async with self.db.read() as session:
            row = (await session.execute(select(_U).where(_U.c.id == actor.user_id))).one()
        return user_public(row)

    async def logout(self, token: str | None) -> None:
        if not token:
            return
        async with self.db.unit_of_work() as uow:
            await uow.session.execute(delete(_A).where(_A.c.id_hash == sha256_hex(token)))

    def csrf_token(self, session_token: str) -> str:
        return csrf_token_for(self.settings.secret_key, session_token)

    def csrf_valid(self, session_token: str, candidate: str | None) -> bool:
        return csrf_matches(self.settings.secret_key, session_token, candidate)
