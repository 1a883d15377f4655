"""create_app(settings): the one composition root. Builds the database engine, Redis, the
services, the Socket.IO server and the REST routes, registers the subscribers of the bus, and
ties their lifecycles to the app."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from chatd.wiring import build_services
from realtime.namespace import ChatNamespace
from realtime.projection import SocketProjection
from realtime.server import create_sio
from realtime.upstream.transport import close_connections
from rest.forwarded import FORWARDED, ForwardedHeaders
from rest.keys import SERVICES, SIO
from rest.middlewares import middlewares
from rest.observability import METRICS, Metrics, live_metrics, mark_shutting_down
from rest.routes import setup_routes
from server.app_services import Services
from server.bus import DurableSubscriber
from server.domain_events import MessageCreated
from server.services.bots import EVENT_TYPES as BOT_EVENT_TYPES
from server.services.bots import SUBSCRIBER_NAME as BOTS_SUBSCRIBER
from server.services.push import SUBSCRIBER_NAME as PUSH_SUBSCRIBER
from server.services.webhooks import EVENT_TYPES as WEBHOOK_EVENT_TYPES
from server.services.webhooks import SUBSCRIBER_NAME as WEBHOOKS_SUBSCRIBER
from server.settings import Settings


def create_app(
    settings: Settings | None = None, *, durable: Iterable[DurableSubscriber] = ()
) -> web.Application:
    """The application. `durable`: extra durable subscribers of the bus (fed from the outbox)."""
    settings = settings or Settings.from_env()
    metrics = Metrics()
    services = build_services(settings, metrics=metrics)
    app = web.Application(middlewares=middlewares(), client_max_size=256 * 1024)
    app[SERVICES] = services
    app[METRICS] = metrics
    app[FORWARDED] = ForwardedHeaders(settings.trusted_proxies)

    sio = create_sio(settings)
    namespace = ChatNamespace(services)
    sio.register_namespace(namespace)
    sio.manager.head_lookup = services.conversations.last_seqs  # fan-out outage repair
    sio.attach(app)
    app[SIO] = sio

    # Subscribers of the bus: one registration each. The live path first.
    projection = SocketProjection(sio, namespace.typist_sockets)
    services.bus.subscribe(projection, flush=projection.flush)
    # Durable subscribers (the outbox): webhooks, push, bots, then any the caller adds.
    services.bus.subscribe_durable(
        DurableSubscriber(
            WEBHOOKS_SUBSCRIBER,
            services.webhooks.fan_out,
            frozenset(WEBHOOK_EVENT_TYPES),
            accepts=services.webhooks.wants,
        )
    )
    services.bus.subscribe_durable(
        DurableSubscriber(
            PUSH_SUBSCRIBER,
            services.push.handle,
            frozenset({MessageCreated.name}),
            accepts=services.push.wants,
        )
    )
    services.bus.subscribe_durable(
        DurableSubscriber(
            BOTS_SUBSCRIBER,
            services.bots.handle,
            frozenset(BOT_EVENT_TYPES),
            accepts=services.bots.wants,
        )
    )
    for subscriber in durable:
        services.bus.subscribe_durable(subscriber)

    metrics.watch(live_metrics(app, namespace))
    setup_routes(app)
    app.cleanup_ctx.append(_services_ctx)
    app.on_startup.append(_start_manager)
    app.on_shutdown.append(mark_shutting_down)  # first: /readyz answers 503 from here on
    app.on_shutdown.append(_close_connections)
    return app


async def _start_manager(app: web.Application) -> None:
    app[SIO].start_manager()


async def _close_connections(app: web.Application) -> None:
    await close_connections(app, app[SIO])


async def _services_ctx(app: web.Application):
    services: Services = app[SERVICES]
    await services.start()
    yield
    await services.close()
