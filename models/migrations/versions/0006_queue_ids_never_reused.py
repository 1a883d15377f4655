"""queue ids are never reused on SQLite (AUTOINCREMENT)

An INTEGER PRIMARY KEY without AUTOINCREMENT takes max(id) + 1: once the outbox's delivered
rows were deleted, the next row could get the id of one already delivered, and subscribers
dedupe on that id (the webhooks fan-out keeps one delivery per endpoint and outbox id, so the
new event was dropped as a duplicate). AUTOINCREMENT never hands out an id twice. The
sequence starts above every id used so far, including the outbox ids the webhook delivery
log still holds. PostgreSQL's sequences never reuse ids: nothing to do there.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 13:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table -> the queries of ids it has handed out (the highest is where its sequence starts)
USED_IDS = {
    "outbox": (
        "SELECT max(id) FROM outbox",
        "SELECT max(outbox_id) FROM webhook_deliveries",
    ),
    "webhook_deliveries": (
        "SELECT max(id) FROM webhook_deliveries",
        "SELECT max(redelivery_of) FROM webhook_deliveries",
    ),
}


def _recreate(autoincrement: bool) -> None:
    bind = op.get_bind()
    for table, queries in USED_IDS.items():
        highest = max((bind.execute(sa.text(q)).scalar() or 0) for q in queries)
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass
        if autoincrement:
            bind.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = :t"), {"t": table})
            bind.execute(
                sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :seq)"),
                {"t": table, "seq": highest},
            )


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _recreate(autoincrement=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _recreate(autoincrement=False)
