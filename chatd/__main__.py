"""The operator CLI: `chatd serve | migrate | bootstrap | add-user` (also `python -m chatd`).

Scripts depend on the exact forms and the one-line JSON outputs of bootstrap and add-user.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import secrets
import sys

from server import migrate
from server.errors import DomainError
from server.logs import configure_logging
from server.settings import Settings, SettingsError


def _services(settings: Settings):
    from chatd.wiring import build_services

    return build_services(settings)


async def _bootstrap(settings: Settings, args) -> dict:
    services = _services(settings)
    try:
        return await services.orgs.bootstrap(
            args.org, args.email, args.password, args.allowed_origin or []
        )
    finally:
        await services.db.dispose()


async def _add_user(settings: Settings, args) -> dict:
    services = _services(settings)
    try:
        created = await services.orgs.add_user(args.org_id, args.email, args.password, args.role)
        return {"user_id": created["user_id"]}
    finally:
        await services.db.dispose()


async def _demo_if_empty(settings: Settings, host: str, port: int) -> None:
    services = _services(settings)
    try:
        if await services.orgs.has_any_organization():
            return
        password = secrets.token_urlsafe(9)
        created = await services.orgs.bootstrap("Demo", "agent@example.com", password)
    finally:
        await services.db.dispose()
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{shown}:{port}"
    print(
        "\nchatd: created a demo organization (shown once; it is not printed again)\n"
        f"  agent login   {base}/auth/login\n"
        f"  email         agent@example.com\n"
        f"  password      {password}\n"
        f"  embed token   {created['embed_token']}\n"
        f"  org id        {created['org_id']}\n"
        f"  channel id    {created['channel_id']}\n",
        flush=True,
    )


def _tune_gc(settings: Settings) -> None:
    # Python's cyclic GC is the first bottleneck of a busy socket server (docs/benchmarks.md):
    # freeze what start-up allocated and collect the young generation less often.
    if settings.gc_freeze:
        gc.collect()
        gc.freeze()
    threshold = gc.get_threshold()
    gc.set_threshold(settings.gc_gen0_threshold, threshold[1], threshold[2])


def serve(settings: Settings, host: str, port: int) -> None:
    from aiohttp import web

    from chatd.app import create_app

    migrate.upgrade(settings.database_url)
    if settings.demo_on_empty:
        asyncio.run(_demo_if_empty(settings, host, port))
    app = create_app(settings)

    async def _on_startup(_app) -> None:
        _tune_gc(settings)

    app.on_startup.append(_on_startup)
    loop = None
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is optional on other platforms
        pass
    web.run_app(
        app,
        host=host,
        port=port,
        loop=loop,
        access_log=None,
        # aiohttp's default of 128 pending connections overflows when thousands of widgets
        # reconnect at once (a deploy, a network blip); the kernel caps it at somaxconn.
        backlog=4096,
        print=lambda msg: print(msg, flush=True),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatd", description="Live chat platform server.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the server (migrates the database first)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)

    sub.add_parser("migrate", help="bring the database schema up to date")

    p = sub.add_parser("bootstrap", help="create an org, its owner, a webchat channel and token")
    p.add_argument("--org", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--allowed-origin", action="append", dest="allowed_origin")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("add-user", help="add an agent to an organization")
    p.add_argument("--org-id", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--role", choices=("agent", "admin", "owner"), default="agent")
    p.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"chatd: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    try:
        if args.command == "serve":
            serve(settings, args.host, args.port)
        elif args.command == "migrate":
            migrate.upgrade(settings.database_url)
            print("chatd: database schema is up to date")
        elif args.command == "bootstrap":
            # Refuse a bad --allowed-origin before touching the database (the service checks
            # again; the rule is orgs.normalize_origin).
            from server.services.orgs import normalize_origin

            for origin in args.allowed_origin or []:
                normalize_origin(origin)
            migrate.upgrade(settings.database_url)
            out = asyncio.run(_bootstrap(settings, args))
            if args.json:
                print(json.dumps(out))
            else:
                for key, value in out.items():
                    print(f"{key}: {value}")
        elif args.command == "add-user":
            migrate.upgrade(settings.database_url)
            out = asyncio.run(_add_user(settings, args))
            print(json.dumps(out) if args.json else f"user_id: {out['user_id']}")
    except DomainError as err:
        print(f"chatd: {err.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
