"""Run the Alembic migrations in models/migrations against the configured database, and the
lock that serializes start-up work between processes sharing one database."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config

import models

MIGRATIONS_DIR = Path(models.__file__).parent / "migrations"

# The advisory-lock key models/migrations/env.py takes (as a transaction lock) around the
# migrations on PostgreSQL.
MIGRATION_LOCK_KEY = 726354


def alembic_config(database_url: str) -> Config:
    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def _sqlite_path(database_url: str) -> Path | None:
    if database_url.startswith("sqlite") and ":///" in database_url:
        path = database_url.split(":///", 1)[1]
        if path and path != ":memory:":
            return Path(path)
    return None


def _ensure_sqlite_dir(database_url: str) -> None:
    path = _sqlite_path(database_url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def upgrade(database_url: str) -> None:
    """Bring the schema to the newest revision (synchronous; call outside an event loop)."""
    _ensure_sqlite_dir(database_url)
    command.upgrade(alembic_config(database_url), "head")


@contextmanager
def migration_lock(database_url: str) -> Iterator[None]:
    """Hold the migration lock across processes (synchronous; call outside an event loop).

    For start-up work that must happen once however many replicas start together (the demo
    organization): on PostgreSQL the session-level form of the migrations' advisory lock, on
    a SQLite file an exclusive flock on `<file>.lock` beside it. Do not call `upgrade` inside:
    the migrations take the same PostgreSQL lock on another connection and would wait forever.
    """
    if database_url.startswith("postgresql"):
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        engine = create_engine(database_url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(
                        text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY}
                    )
                    conn.commit()
        finally:
            engine.dispose()
        return
    path = _sqlite_path(database_url)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
