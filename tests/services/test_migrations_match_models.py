"""The migrations build exactly the schema of models/: a column, index or constraint added to
a model without its migration (or to a migration without its model) fails here, on the
suite's database (SQLite or PostgreSQL), which the migrations built."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

import models  # noqa: F401 - registers every table on the metadata
from models.base import Base


def _differences(sync_conn) -> list:
    context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
    return compare_metadata(context, Base.metadata)


async def test_the_migrated_database_has_the_models_schema(base_settings):
    engine = create_async_engine(base_settings.database_url)
    try:
        async with engine.connect() as conn:
            differences = await conn.run_sync(_differences)
    finally:
        await engine.dispose()
    assert differences == []
