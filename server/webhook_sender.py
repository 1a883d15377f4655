"""The webhook sender: POSTs each delivery row (server/services/webhooks.py writes them) to its
endpoint, signed as Standard Webhooks specify (`webhook-id`, `webhook-timestamp`,
`webhook-signature`, signed with the `standardwebhooks` package).

It is a leased queue keyed by endpoint (server/queue.py): at least once, in order per
(endpoint, conversation), exponential retries over about a day, several processes on
PostgreSQL. Each endpoint has its own share of requests in flight
(CHATD_WEBHOOK_IN_FLIGHT_PER_ENDPOINT), so a slow or dead endpoint delays only its own
deliveries, never chat (the sender is a background task) nor other endpoints.

A delivery succeeds on a 2xx answer within CHATD_WEBHOOK_TIMEOUT_SECONDS; anything else
(another status, a redirect, a timeout, a refused connection) is a failed attempt, recorded
in the delivery log with its status code and latency. An endpoint that has failed without a
single success for CHATD_WEBHOOK_DISABLE_AFTER_SECONDS is disabled, with the reason shown to
its owners; its pending deliveries wait until it is turned on again.

Connections are checked against SSRF at connect time too (a name that resolved to a public
address when the endpoint was saved may resolve to a private one now): the resolver refuses
loopback, private and link-local results unless CHATD_WEBHOOK_ALLOW_PRIVATE_TARGETS is on.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook

from models import WebhookDelivery, WebhookEndpoint
from models.base import utcnow
from server.queue import Failed, LeasedQueue, QueueConfig
from server.serializers import iso
from server.services.webhooks import address_refused

if TYPE_CHECKING:
    from server.db import Database
    from server.services.webhooks import WebhookService
    from server.settings import Settings

log = logging.getLogger(__name__)

_E = WebhookEndpoint.__table__
USER_AGENT = "chatd-webhooks/1"
# What is read of a receiver's answer (the body is not kept; reading a little lets the
# connection be reused).
MAX_RESPONSE_BYTES = 64 * 1024
# The endpoints' URLs and secrets are re-read at most this often.
ENDPOINTS_REFRESH_SECONDS = 0.5


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, refusing names that resolve to addresses webhooks may not reach."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(self, host, port=0, family=0):
        results = await self._inner.resolve(host, port, family)
        for result in results:
            why = address_refused(result["host"])
            if why:
                raise OSError(f"{host} resolves to {result['host']}, {why}")
        return results

    async def close(self) -> None:
        await self._inner.close()


class _Endpoint:
    __slots__ = ("failing_since", "id", "previous", "previous_until", "signer", "url")

    def __init__(self, row, secret: str, previous: str | None) -> None:
        self.id = row.id
        self.url = row.url
        self.signer = Webhook(secret)
        # The secret before the last rotation signs too, until then (naive UTC).
        self.previous = Webhook(previous) if previous is not None else None
        self.previous_until = row.previous_secret_expires_at
        self.failing_since = row.failing_since

    def sign(self, webhook_id: str, sent_at: datetime, body: str) -> str:
        """The webhook-signature header: `v1,<sig>`, or `v1,<sig> v1,<previous sig>` while
        the previous secret is valid (Standard Webhooks: any one signature verifies)."""
        signature = self.signer.sign(webhook_id, sent_at, body)
        if self.previous is not None and utcnow() < self.previous_until:
            signature += " " + self.previous.sign(webhook_id, sent_at, body)
        return signature


def sender_config(settings: Settings) -> QueueConfig:
    return QueueConfig(
        poll_seconds=settings.outbox_poll_seconds,
        batch_size=settings.webhook_in_flight_per_endpoint,
        # A run of an endpoint's conversation holds its lease while it sends several requests.
        lease_seconds=max(30.0, settings.webhook_timeout_seconds * 4),
        max_attempts=settings.webhook_max_attempts,
        backoff_base_seconds=settings.webhook_backoff_base_seconds,
        backoff_cap_seconds=settings.webhook_backoff_cap_seconds,
        retention_seconds=settings.webhook_retention_seconds,
    )


class WebhookSender(LeasedQueue):
    table = WebhookDelivery.__table__
    key_column = "endpoint_id"
    label = "webhooks"

    def __init__(self, db: Database, settings: Settings, webhooks: WebhookService) -> None:
        super().__init__(db, sender_config(settings))
        self.settings = settings
        self.webhooks = webhooks
        self._endpoints: dict[str, _Endpoint] = {}
        self._salts: dict[str, tuple] = {}
        self._refreshed = -ENDPOINTS_REFRESH_SECONDS
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._task is not None:
            return
        connector = aiohttp.TCPConnector(
            resolver=None if self.settings.webhook_allow_private_targets else GuardedResolver(),
            limit=100,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.settings.webhook_timeout_seconds),
            headers={"User-Agent": USER_AGENT},
        )
        self.webhooks.on_deliveries = self.wake
        self._refreshed = -ENDPOINTS_REFRESH_SECONDS
        self._begin()

    async def stop(self, timeout: float = 5.0) -> None:
        if self._task is not None:
            self.webhooks.on_deliveries = None
        await super().stop(timeout)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def keys(self) -> list[str]:
        now = time.monotonic()
        if now - self._refreshed >= ENDPOINTS_REFRESH_SECONDS:
            self._refreshed = now
            stmt = select(
                _E.c.id,
                _E.c.url,
                _E.c.secret_salt,
                _E.c.previous_secret_salt,
                _E.c.previous_secret_expires_at,
                _E.c.failing_since,
            ).where(_E.c.enabled.is_(True))
            async with self.db.read() as conn:
                rows = (await conn.execute(stmt)).all()
            endpoints = {}
            for row in rows:
                known = self._endpoints.get(row.id)
                signing = (
                    row.url,
                    row.secret_salt,
                    row.previous_secret_salt,
                    row.previous_secret_expires_at,
                )
                if known is not None and self._salts.get(row.id) == signing:
                    known.failing_since = row.failing_since
                    endpoints[row.id] = known
                else:
                    secret = self.webhooks.secret_for(row.id, row.secret_salt)
                    previous = None
                    if row.previous_secret_salt and row.previous_secret_expires_at:
                        previous = self.webhooks.secret_for(row.id, row.previous_secret_salt)
                    endpoints[row.id] = _Endpoint(row, secret, previous)
                    self._salts[row.id] = signing
            self._endpoints = endpoints
        return list(self._endpoints)

    async def handle(self, key: str, row) -> dict[str, Any]:
        endpoint = self._endpoints.get(key)
        if endpoint is None or self._session is None:
            raise Failed("the endpoint was disabled or deleted", last_attempt_at=utcnow())
        body = json.dumps(row.payload, separators=(",", ":"), ensure_ascii=False)
        sent_at = datetime.now(UTC)
        webhook_id = row.payload["id"]
        headers = {
            "Content-Type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": endpoint.sign(webhook_id, sent_at, body),
        }
        started = time.monotonic()
        code: int | None = None
        error: str | None = None
        try:
            self._check_literal_address(endpoint.url)
            async with self._session.post(
                endpoint.url, data=body.encode(), headers=headers, allow_redirects=False
            ) as resp:
                code = resp.status
                read = 0
                while read < MAX_RESPONSE_BYTES:
                    chunk = await resp.content.readany()
                    if not chunk:
                        break
                    read += len(chunk)
        except TimeoutError:
            error = f"no answer within {self.settings.webhook_timeout_seconds:g}s"
        except (aiohttp.ClientError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        latency = int((time.monotonic() - started) * 1000)
        outcome = {"response_code": code, "latency_ms": latency, "last_attempt_at": utcnow()}
        if error is None and code is not None and 200 <= code < 300:
            if endpoint.failing_since is not None:
                await self._recovered(endpoint)
            return {**outcome, "last_error": None}
        if error is None:
            error = f"HTTP {code}"
        await self._failing(endpoint, error)
        raise Failed(error, **outcome)

    def _check_literal_address(self, url: str) -> None:
        """An IP literal in the URL skips the resolver: check it here."""
        if self.settings.webhook_allow_private_targets:
            return
        host = (urlsplit(url).hostname or "").strip("[]")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return
        why = address_refused(host)
        if why:
            raise OSError(f"{host} is {why}")

    async def _recovered(self, endpoint: _Endpoint) -> None:
        endpoint.failing_since = None
        async with self.db.unit_of_work() as uow:
            await uow.conn.execute(
                update(_E).where(_E.c.id == endpoint.id).values(failing_since=None)
            )

    async def _failing(self, endpoint: _Endpoint, error: str) -> None:
        """Note the first failure since a success; disable the endpoint once it has failed
        for CHATD_WEBHOOK_DISABLE_AFTER_SECONDS."""
        now = utcnow()
        if endpoint.failing_since is None:
            endpoint.failing_since = now
            async with self.db.unit_of_work() as uow:
                await uow.conn.execute(
                    update(_E)
                    .where(_E.c.id == endpoint.id, _E.c.failing_since.is_(None))
                    .values(failing_since=now)
                )
            return
        limit = timedelta(seconds=self.settings.webhook_disable_after_seconds)
        if now - endpoint.failing_since < limit:
            return
        reason = (
            f"Disabled at {iso(now)}: every delivery has failed since "
            f"{iso(endpoint.failing_since)} (last: {error})."
        )[:1000]
        log.warning("webhooks: endpoint %s disabled: %s", endpoint.id, reason)
        self._endpoints.pop(endpoint.id, None)
        async with self.db.unit_of_work() as uow:
            await uow.conn.execute(
                update(_E)
                .where(_E.c.id == endpoint.id, _E.c.enabled.is_(True))
                .values(enabled=False, disabled_reason=reason, updated_at=now)
            )
