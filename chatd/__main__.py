"""The operator CLI: `chatd serve | migrate | bootstrap | add-user | token | api-key` (also
`python -m chatd`).

Scripts depend on the exact forms and the one-line JSON outputs of bootstrap, add-user and
token. Every failure prints one line `chatd: <reason>` on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import secrets
import sys
from importlib.metadata import PackageNotFoundError, version

from models.orgs import API_KEY_SCOPES
from server import migrate
from server.errors import DomainError
from server.logs import configure_logging
from server.settings import Settings, SettingsError

DEMO_OWNER_EMAIL = "owner@example.com"


def _version() -> str:
    try:
        return version("chatd")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout, not installed
        return "unknown (not installed)"


def _services(settings: Settings):
    from chatd.wiring import build_services

    return build_services(settings)


async def _with_services(settings: Settings, use):
    services = _services(settings)
    try:
        return await use(services)
    finally:
        await services.db.dispose()


def _password(args) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    return args.password


async def _demo_if_empty(settings: Settings, host: str, port: int) -> None:
    services = _services(settings)
    try:
        if await services.orgs.has_any_organization():
            return
        password = secrets.token_urlsafe(9)
        created = await services.orgs.bootstrap("Demo", DEMO_OWNER_EMAIL, password)
    finally:
        await services.db.dispose()
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{shown}:{port}"
    token = created["embed_token"]
    print(
        "\nchatd: created a demo organization (shown once; it is not printed again)\n"
        f"  owner login   {base}/auth/login\n"
        f"  email         {DEMO_OWNER_EMAIL}\n"
        f"  password      {password}\n"
        f"  inbox         {base}/inbox   (answer visitors here after signing in)\n"
        f"  embed token   {token}\n"
        f"  org id        {created['org_id']}\n"
        f"  channel id    {created['channel_id']}\n"
        "  widget        paste into any web page:\n"
        f'  <script src="{base}/chat-widget/embed.js" data-embed-token="{token}"></script>\n',
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


def serve(settings: Settings, host: str, port: int, wait_for_services: float = 0.0) -> None:
    from aiohttp import web

    from chatd import startup
    from chatd.app import create_app

    startup.check_data_dirs(settings)
    asyncio.run(startup.check_services(settings, wait_for_services))
    startup.check_port(host, port)
    migrate.upgrade(settings.database_url)
    if settings.demo_on_empty:
        # Replicas started together on an empty database: one creates the demo organization,
        # the others then find it.
        with migrate.migration_lock(settings.database_url):
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
    try:
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
    except OSError as exc:
        # Taken between the check and the bind.
        raise startup.port_error(host, port, exc) from None


def _add_password(p: argparse.ArgumentParser, who: str) -> None:
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--password", help=f"{who}'s password (8+ characters)")
    group.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input (keeps it out of the "
        "process list and the shell history)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatd",
        description="Live chat platform server and its operator commands. Configuration is "
        "by environment variable (DATABASE_URL, REDIS_URL, CHATD_*; see README.md).",
    )
    parser.add_argument(
        "--version", action="version", version=f"chatd {_version()}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the server (migrates the database first)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument(
        "--port", type=int, default=8080, help="TCP port to listen on (default %(default)s)"
    )
    p.add_argument(
        "--wait-for-services",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="retry PostgreSQL and Redis for up to SECONDS until they answer, instead of "
        "exiting at once (for orchestrators that start everything together)",
    )

    sub.add_parser("migrate", help="bring the database schema up to date")

    p = sub.add_parser("bootstrap", help="create an org, its owner, a webchat channel and token")
    p.add_argument("--org", required=True, help="organization name (reused if it exists)")
    p.add_argument("--email", required=True, help="the owner's email (reused if it exists)")
    _add_password(p, "the owner")
    p.add_argument(
        "--allowed-origin",
        action="append",
        dest="allowed_origin",
        metavar="URL",
        help="a site origin allowed to use the embed token (repeatable; none: any site)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON line")

    p = sub.add_parser("add-user", help="add an agent to an organization")
    p.add_argument("--org-id", required=True, help="the organization's id")
    p.add_argument("--email", required=True, help="the new user's email")
    _add_password(p, "the new user")
    p.add_argument(
        "--role",
        choices=("agent", "admin", "owner"),
        default="agent",
        help="the new user's role (default %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON line")

    p = sub.add_parser("token", help="create, revoke or list an organization's embed tokens")
    tokens = p.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    t = tokens.add_parser("create", help="issue an embed token (printed once)")
    t.add_argument("--org-id", required=True, help="the organization's id")
    t.add_argument(
        "--channel-id", help="a webchat channel of the organization (default: its first one)"
    )
    t.add_argument("--name", default="CLI", help="a label for the token (default %(default)s)")
    t.add_argument(
        "--allowed-origin",
        action="append",
        dest="allowed_origin",
        metavar="URL",
        help="a site origin allowed to use the token (repeatable; none: any site)",
    )
    t.add_argument("--json", action="store_true", help="print one JSON line")
    t = tokens.add_parser("revoke", help="revoke an embed token (widgets under it disconnect)")
    t.add_argument("--org-id", required=True, help="the organization's id")
    t.add_argument("--token-id", required=True, help="the token's id (from `token list`)")
    t.add_argument("--json", action="store_true", help="print one JSON line")
    t = tokens.add_parser("list", help="list the organization's embed tokens (never the secrets)")
    t.add_argument("--org-id", required=True, help="the organization's id")
    t.add_argument("--json", action="store_true", help="print one JSON line")

    p = sub.add_parser("api-key", help="create, revoke or list an organization's API keys")
    keys = p.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    k = keys.add_parser("create", help="create an API key for /api/v1/ (printed once)")
    k.add_argument("--org-id", required=True, help="the organization's id")
    k.add_argument("--name", required=True, help="a label for the key, e.g. its integration")
    k.add_argument(
        "--scope",
        action="append",
        dest="scopes",
        choices=API_KEY_SCOPES,
        help="a scope of the key (repeatable; default: conversations:read and :write)",
    )
    k.add_argument("--json", action="store_true", help="print one JSON line")
    k = keys.add_parser("revoke", help="revoke an API key (refused from its next request)")
    k.add_argument("--org-id", required=True, help="the organization's id")
    k.add_argument("--key-id", required=True, help="the key's id (from `api-key list`)")
    k.add_argument("--json", action="store_true", help="print one JSON line")
    k = keys.add_parser("list", help="list the organization's API keys (never the keys)")
    k.add_argument("--org-id", required=True, help="the organization's id")
    k.add_argument("--json", action="store_true", help="print one JSON line")
    return parser


def _api_key_command(settings: Settings, args) -> None:
    keys = lambda services: services.api_keys  # noqa: E731
    if args.key_command == "create":
        scopes = args.scopes or ["conversations:read", "conversations:write"]
        out = asyncio.run(
            _with_services(
                settings,
                lambda s: keys(s).create_for_organization(args.org_id, args.name, scopes),
            )
        )
        _print_record(out, args.json)
    elif args.key_command == "revoke":
        out = asyncio.run(
            _with_services(
                settings, lambda s: keys(s).revoke_for_organization(args.org_id, args.key_id)
            )
        )
        _print_record(out, args.json)
    else:
        rows = asyncio.run(
            _with_services(settings, lambda s: keys(s).list_for_organization(args.org_id))
        )
        if args.json:
            print(json.dumps({"api_keys": rows}))
        else:
            for row in rows:
                state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "live"
                scopes = ",".join(row["scopes"])
                print(f"{row['id']}  {row['key_prefix']}...  {row['name']}  {scopes}  {state}")


def _print_record(out: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key}: {value}")


def _token_command(settings: Settings, args) -> None:
    orgs = lambda services: services.orgs  # noqa: E731
    if args.token_command == "create":
        from server.origins import normalize_origin

        for origin in args.allowed_origin or []:
            normalize_origin(origin)
        out = asyncio.run(
            _with_services(
                settings,
                lambda s: orgs(s).operator_create_embed_token(
                    args.org_id, args.channel_id, args.name, args.allowed_origin or []
                ),
            )
        )
        _print_record(out, args.json)
    elif args.token_command == "revoke":
        out = asyncio.run(
            _with_services(
                settings, lambda s: orgs(s).operator_revoke_embed_token(args.org_id, args.token_id)
            )
        )
        _print_record(out, args.json)
    else:
        rows = asyncio.run(
            _with_services(settings, lambda s: orgs(s).operator_list_embed_tokens(args.org_id))
        )
        if args.json:
            print(json.dumps({"tokens": rows}))
        else:
            for row in rows:
                state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "live"
                print(f"{row['id']}  {row['token_prefix']}...  {row['name']}  {state}")


def _run(args, settings: Settings) -> None:
    from chatd import startup

    if args.command == "serve":
        serve(settings, args.host, args.port, args.wait_for_services)
        return
    asyncio.run(startup.check_services(settings, redis=False))
    if args.command == "migrate":
        migrate.upgrade(settings.database_url)
        print("chatd: database schema is up to date")
    elif args.command == "bootstrap":
        # Refuse a bad --allowed-origin before touching the database (the service checks
        # again; the rule is orgs.normalize_origin).
        from server.services.orgs import normalize_origin

        for origin in args.allowed_origin or []:
            normalize_origin(origin)
        password = _password(args)
        migrate.upgrade(settings.database_url)
        out = asyncio.run(
            _with_services(
                settings,
                lambda s: s.orgs.bootstrap(
                    args.org, args.email, password, args.allowed_origin or []
                ),
            )
        )
        _print_record(out, args.json)
    elif args.command == "add-user":
        password = _password(args)
        migrate.upgrade(settings.database_url)
        created = asyncio.run(
            _with_services(
                settings,
                lambda s: s.orgs.add_user(args.org_id, args.email, password, args.role),
            )
        )
        out = {"user_id": created["user_id"]}
        print(json.dumps(out) if args.json else f"user_id: {out['user_id']}")
    elif args.command == "token":
        migrate.upgrade(settings.database_url)
        _token_command(settings, args)
    elif args.command == "api-key":
        migrate.upgrade(settings.database_url)
        _api_key_command(settings, args)


def main(argv: list[str] | None = None) -> int:
    from chatd import startup

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    for warning in startup.unknown_env_warnings(os.environ):
        print(warning, file=sys.stderr, flush=True)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"chatd: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    try:
        _run(args, settings)
    except startup.StartupError as err:
        print(err.line(), file=sys.stderr, flush=True)
        return 2
    except DomainError as err:
        print(f"chatd: {err.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
