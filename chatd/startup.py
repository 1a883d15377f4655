"""Checks `chatd` makes before it starts: every infrastructure failure becomes one line that
names the cause and the setting to change (`chatd: <reason> (set VARIABLE)`, exit status 2)
instead of a traceback from deep inside a driver.
"""

from __future__ import annotations

import asyncio
import difflib
import errno
import re
import socket
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from server import settings as settings_module
from server.migrate import _sqlite_path
from server.settings import Settings

# Retry period of --wait-for-services.
_RETRY_SECONDS = 0.5


class StartupError(Exception):
    """Something outside the process keeps the server from starting."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix

    def line(self) -> str:
        return f"chatd: {self.reason} (set {self.fix})"


def _first_line(exc: BaseException) -> str:
    exc = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
    text = str(exc).strip() or type(exc).__name__
    line = text.splitlines()[0].strip()
    return line if len(line) <= 200 else line[:197] + "..."


# ---- environment names ---------------------------------------------------------------------


def known_env_names() -> set[str]:
    """Every CHATD_* name the settings read (found in server/settings.py, so a setting added
    there is known here without a second list)."""
    source = Path(settings_module.__file__).read_text(encoding="utf-8")
    return set(re.findall(r"\bCHATD_[A-Z0-9_]*[A-Z0-9]\b", source))


def unknown_env_warnings(env: Mapping[str, str]) -> list[str]:
    """One warning line per CHATD_* name nothing reads (a typo is otherwise silently ignored)."""
    known = known_env_names()
    lines = []
    for name in sorted(env):
        if not name.startswith("CHATD_") or name in known:
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        lines.append(f"chatd: warning: {name} is not a chatd setting and is ignored{hint}")
    return lines


# ---- local resources -----------------------------------------------------------------------


def check_data_dirs(settings: Settings) -> None:
    """The data directory (and the upload and SQLite directories) exist or can be created, and
    are writable."""
    dirs: list[tuple[Path, str]] = [(settings.data_dir, "CHATD_DATA_DIR")]
    if settings.upload_dir is not None:
        dirs.append((settings.upload_dir, "CHATD_UPLOAD_DIR"))
    sqlite_file = _sqlite_path(settings.database_url)
    if sqlite_file is not None and sqlite_file.parent != settings.data_dir:
        dirs.append((sqlite_file.parent, "DATABASE_URL"))
    for path, variable in dirs:
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path, prefix=".chatd-probe-"):
                pass
        except FileExistsError:
            raise StartupError(f"data directory {path} is not a directory", variable) from None
        except OSError as exc:
            reason = exc.strerror or _first_line(exc)
            raise StartupError(f"data directory {path} is unusable: {reason}", variable) from None


def check_port(host: str, port: int) -> None:
    """Nothing else listens on host:port (bound and released at once, as the server binds it)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise StartupError(f"cannot listen on {host}: {_first_line(exc)}", "--host") from None
    for family, kind, proto, _name, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise port_error(host, port, exc) from None


def port_error(host: str, port: int, exc: OSError) -> StartupError:
    if exc.errno == errno.EADDRINUSE:
        return StartupError(f"port {port} on {host} is already in use", "--port")
    if exc.errno == errno.EACCES:
        return StartupError(f"no permission to listen on port {port}", "--port")
    return StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", "--host/--port")


# ---- services ------------------------------------------------------------------------------


def _database_where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"


def _redis_where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path}"


async def _probe_database(url: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    engine = create_async_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


async def _probe_redis(url: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def _until_up(probe, url: str, what: str, variable: str, deadline: float) -> None:
    waited = False
    while True:
        try:
            await probe(url)
            return
        except Exception as exc:  # noqa: BLE001 - any driver error means "does not answer"
            if time.monotonic() >= deadline:
                raise StartupError(
                    f"{what} is unreachable: {_first_line(exc)}", variable
                ) from None
            if not waited:
                print(f"chatd: waiting for {what} ...", file=sys.stderr, flush=True)
                waited = True
            await asyncio.sleep(_RETRY_SECONDS)


async def check_services(settings: Settings, wait_seconds: float = 0.0, redis: bool = True) -> None:
    """PostgreSQL (when configured) and Redis (when configured) answer; with wait_seconds,
    retried until they do or the time is up."""
    deadline = time.monotonic() + max(wait_seconds, 0.0)
    if settings.database_url.startswith("postgresql"):
        what = f"PostgreSQL at {_database_where(settings.database_url)}"
        await _until_up(_probe_database, settings.database_url, what, "DATABASE_URL", deadline)
    if redis and settings.redis_url:
        what = f"Redis at {_redis_where(settings.redis_url)}"
        await _until_up(_probe_redis, settings.redis_url, what, "REDIS_URL", deadline)
