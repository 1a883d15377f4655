"""Agent authentication: password login, server-side sessions, CSRF tokens, login throttling.

A session ends at logout or expiry; whoever holds a connection on it (the Socket.IO layer)
listens for logouts on this process and asks `live_sessions` which sessions still stand.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
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
from server.validation import unstorable_reason

log = logging.getLogger(__name__)

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
        self._logout_listeners: list[Callable[[str], Awaitable[None]]] = []

    def on_logout(self, listener: Callable[[str], Awaitable[None]]) -> None:
        """Call `listener(session_key)` after a session of this process is logged out."""
        self._logout_listeners.append(listener)

    @staticmethod
    def session_key(token: str) -> str:
        """What identifies a session without being its secret (the stored hash)."""
        return sha256_hex(token)

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
            await uow.conn.execute(
                insert(_A).values(
                    id_hash=sha256_hex(token),
                    user_id=row.id,
                    created_at=now,
                    expires_at=now + timedelta(seconds=self.settings.session_ttl_seconds),
                )
            )
            # Housekeeping: expired sessions of this user go when they log in again.
            await uow.conn.execute(
                delete(_A).where(_A.c.user_id == row.id, _A.c.expires_at < now)
            )
        return token, user_public(row)

    async def agent_for_session(self, token: str | None) -> AgentActor | None:
        """The agent of a live session, or None. Raises what the database raises when it is
        unreachable (the caller decides: 401, 503, or a refused socket)."""
        if not token or len(token) > 200 or unstorable_reason(token):
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

    async def live_sessions(self, session_keys: list[str]) -> set[str]:
        """Which of these sessions (session_key values) still stand: not logged out, not
        expired. One query per 500 keys."""
        live: set[str] = set()
        now = utcnow()
        async with self.db.read() as session:
            for i in range(0, len(session_keys), 500):
                chunk = session_keys[i : i + 500]
                rows = await session.execute(
                    select(_A.c.id_hash).where(_A.c.id_hash.in_(chunk), _A.c.expires_at > now)
                )
                live.update(r.id_hash for r in rows)
        return live

    async def logout(self, token: str | None) -> None:
        """End the session. After the commit, this process's logout listeners cut what is
        open on it at once; other processes find out in their next sweep (live_sessions)."""
        if not token or unstorable_reason(token):
            return
        key = sha256_hex(token)
        async with self.db.unit_of_work() as uow:
            await uow.conn.execute(delete(_A).where(_A.c.id_hash == key))
        for listener in self._logout_listeners:
            try:
                await listener(key)
            except Exception:  # noqa: BLE001 - the logout stands; the sweep cuts the rest
                log.exception("logout listener failed")

    def csrf_token(self, session_token: str) -> str:
        return csrf_token_for(self.settings.secret_key, session_token)

    def csrf_valid(self, session_token: str, candidate: str | None) -> bool:
        return csrf_matches(self.settings.secret_key, session_token, candidate)
