"""What an operator watches: GET /readyz, GET /metrics, request ids and the access log.

docs/operations.md lists the probes, the metrics worth alerting on and the log format.

Metrics live in a registry per application (not prometheus-client's global one): several
apps in one process (the tests) each count their own. Live values (sockets by kind, the bus
queue, fan-out publish errors) are read at scrape time from the objects that hold them.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest

from rest.forwarded import REQUEST_ID
from rest.keys import SERVICES, SIO
from server.logs import request_id_var

access_log = logging.getLogger("chatd.access")
log = logging.getLogger(__name__)

PROBE_TIMEOUT = 2.0


class Metrics:
    """The application's metrics. The writer and the limiter report to it (observer hooks);
    the rest is read when /metrics is scraped."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages_persisted = Counter(
            "chatd_messages_persisted", "Messages stored (committed), all senders.", registry=r
        )
        self.writer_batch_size = Histogram(
            "chatd_writer_batch_size",
            "Messages per group-commit batch taken by the message writer.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.writer_commit_seconds = Histogram(
            "chatd_writer_commit_seconds",
            "Time to store and commit one message batch.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.rate_limited = Counter(
            "chatd_rate_limited",
            "Requests and events refused by a rate limit, by limit.",
            ["limit"],
            registry=r,
        )
        self.login_failures = Counter(
            "chatd_login_failures", "Agent logins refused for wrong credentials.", registry=r
        )
        self.http_requests = Counter(
            "chatd_http_requests",
            "HTTP requests answered, by status class.",
            ["status"],
            registry=r,
        )
        self.shutting_down = False

    # ---- hooks (server/services/message_writer.py, CountingLimiter) -----------------------

    def writer_batch(self, size: int) -> None:
        self.writer_batch_size.observe(size)

    def writer_committed(self, stored: int, seconds: float) -> None:
        self.writer_commit_seconds.observe(seconds)
        if stored:
            self.messages_persisted.inc(stored)

    def limit_refused(self, limit: str) -> None:
        self.rate_limited.labels(limit).inc()

    def login_failed(self) -> None:
        self.login_failures.inc()

    def watch(self, live: Callable[[], list]) -> None:
        """Register a collector whose `live()` returns metric families at scrape time."""
        self.registry.register(_Live(live))


class _Live:
    def __init__(self, live: Callable[[], list]) -> None:
        self._live = live

    def collect(self):
        return self._live()


def live_metrics(app: web.Application, namespace) -> Callable[[], list]:
    """Sockets by kind (from the namespace's clients), the bus queue, fan-out errors, and the
    outcomes of the outbox's and the webhooks' deliveries."""

    def collect() -> list:
        kinds = {"agent": 0, "end_user": 0, "anonymous": 0}
        for state in list(namespace.clients.values()):
            if state.agent is not None:
                kinds["agent"] += 1
            elif state.embed_token_id or state.unchecked_embed_token or state.visitor_facts:
                kinds["end_user"] += 1
            else:
                kinds["anonymous"] += 1
        sockets = GaugeMetricFamily(
            "chatd_sockets_connected", "Connected Socket.IO clients, by kind.", labels=["kind"]
        )
        for kind, count in kinds.items():
            sockets.add_metric([kind], count)
        # services.bus keeps its queue private; its depth is read, never changed.
        queue = getattr(app[SERVICES].bus, "_queue", None)
        depth = GaugeMetricFamily(
            "chatd_bus_queue_depth",
            "Domain events waiting for the live subscribers (the Socket.IO fan-out).",
            value=queue.qsize() if queue is not None else 0,
        )
        errors = CounterMetricFamily(
            "chatd_fanout_publish_errors",
            "Event batches that could not be published to Redis (other processes missed them).",
            value=getattr(app[SIO].manager, "publish_errors", 0),
        )
        services = app[SERVICES]
        outcomes = CounterMetricFamily(
            "chatd_queue_deliveries",
            "Rows of the outbox (to durable subscribers) and of the webhook queue handled by "
            "this process, by outcome: delivered, retried (an attempt failed), dead (given up).",
            labels=["queue", "outcome"],
        )
        for queue_name, queue in (
            ("outbox", services.outbox),
            ("webhooks", services.webhook_sender),
        ):
            if queue is not None:
                for outcome, count in queue.outcomes.items():
                    outcomes.add_metric([queue_name, outcome], count)
        return [sockets, depth, errors, outcomes]

    return collect


class CountingLimiter:
    """The shared RateLimiter, counting refusals by limit (the key's first part) and failed
    logins (each failure records one hit on its login:email: key) for /metrics."""

    def __init__(self, inner, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    # The second part of a key that names the kind of limit (login:ip:<address>); other keys
    # carry an id there (send:<organization>:<end user>), never a label.
    _KINDS = frozenset({"addr", "token", "conv", "ip", "email"})

    @classmethod
    def _limit(cls, key: str) -> str:
        parts = key.split(":", 2)
        return f"{parts[0]}:{parts[1]}" if len(parts) > 1 and parts[1] in cls._KINDS else parts[0]

    async def hit(self, key: str, limit: int, window_s: float) -> int:
        retry = await self.inner.hit(key, limit, window_s)
        if key.startswith("login:email:"):
            self.metrics.login_failed()
        elif retry:
            self.metrics.limit_refused(self._limit(key))
        return retry

    async def blocked_for(self, key: str, limit: int, window_s: float) -> int:
        retry = await self.inner.blocked_for(key, limit, window_s)
        if retry:
            self.metrics.limit_refused(self._limit(key))
        return retry

    async def reset(self, key: str) -> None:
        await self.inner.reset(key)

    def __getattr__(self, name):  # anything else the concrete limiter offers
        return getattr(self.inner, name)


METRICS = web.AppKey("metrics", Metrics)


# ---- HTTP: request ids, access log ----------------------------------------------------------


@web.middleware
async def access_middleware(request: web.Request, handler):
    """Echo the request id (rest/forwarded.py: the trusted proxy's X-Request-Id, else a new
    one) and log one line per request: method, path (never the query: tokens travel there),
    status, duration, request id. Socket.IO websockets skip the chain (rest/middlewares.py)."""
    rid = request.get(REQUEST_ID) or uuid.uuid4().hex
    token = request_id_var.set(rid)
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        if not response.prepared:
            response.headers["X-Request-Id"] = rid
        return response
    except web.HTTPException as exc:
        status = exc.status
        exc.headers["X-Request-Id"] = rid
        raise
    finally:
        duration_ms = round((time.perf_counter() - start) * 1000, 2)
        metrics = request.app.get(METRICS)
        if metrics is not None:
            metrics.http_requests.labels(f"{status // 100}xx").inc()
        access_log.info(
            "%s %s %s %.2fms",
            request.method,
            request.path,
            status,
            duration_ms,
            extra={
                "method": request.method,
                "path": request.path,
                "status": status,
                "duration_ms": duration_ms,
                "remote": request.remote,
            },
        )
        request_id_var.reset(token)


# ---- handlers -------------------------------------------------------------------------------


async def metrics_handler(request: web.Request) -> web.Response:
    """Prometheus text format. With CHATD_METRICS_TOKEN set, only for `Authorization: Bearer
    <token>`; without it, open (docs/operations.md: keep it off the public proxy)."""
    token = request.app[SERVICES].settings.metrics_token
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return web.json_response(
                {"error": {"code": "not_authenticated", "message": "Bearer token required."}},
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def readyz(request: web.Request) -> web.Response:
    """200 when this process can serve: the database and Redis answer and a probe published
    on the fan-out channel comes back through this process's own subscription. 503 with the
    failed checks named, and while shutting down."""
    app = request.app
    services = app[SERVICES]
    checks: dict[str, str] = {}
    if app[METRICS].shutting_down:
        checks["shutdown"] = "in progress"
    checks["database"] = await _check(services.db.ping())
    if services.redis is None:
        checks["redis"] = "not configured"
        checks["fanout"] = "not configured"
    else:
        checks["redis"] = await _check(services.redis.ping())
        sio = app[SIO]
        if hasattr(sio, "start_manager"):
            sio.start_manager()  # started at start-up; here for an app run without startup
        probe = getattr(sio.manager, "probe", None)
        checks["fanout"] = await _check(probe(PROBE_TIMEOUT)) if probe else "not configured"
    failed = sorted(k for k, v in checks.items() if v not in ("ok", "not configured"))
    body = {"status": "unavailable" if failed else "ok", "failed": failed, "checks": checks}
    return web.json_response(body, status=503 if failed else 200)


async def _check(awaitable) -> str:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT + 1):
            await awaitable
    except Exception as exc:  # noqa: BLE001 - named in the answer, not raised
        log.debug("readiness check failed: %r", exc)
        return "timeout" if isinstance(exc, TimeoutError) else "unavailable"
    return "ok"


async def mark_shutting_down(app: web.Application) -> None:
    app[METRICS].shutting_down = True
