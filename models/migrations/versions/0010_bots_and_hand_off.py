"""bots, their channels and embed tokens, sessions handed off, flagged messages, end-user attributes

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 19:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bots",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organization_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("avatar_url", sa.String(length=2000), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column(
            "flow",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "commands",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("webhook_url", sa.String(length=2000), nullable=True),
        sa.Column("webhook_salt", sa.String(length=64), nullable=True),
        sa.Column("timeout_seconds", sa.Float(), server_default="10", nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("kind IN ('flow', 'webhook')", name=op.f("ck_bots_kind")),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_bots_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bots")),
    )
    with op.batch_alter_table("bots", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_bots_organization_id"), ["organization_id"], unique=False
        )

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bot_id", sa.String(length=36), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_api_keys_bot_id_bots"), "bots", ["bot_id"], ["id"], ondelete="CASCADE"
        )

    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bot_id", sa.String(length=36), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_channels_bot_id_bots"), "bots", ["bot_id"], ["id"], ondelete="SET NULL"
        )

    with op.batch_alter_table("conversation_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("handed_off_at", sa.DateTime(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "bot_state",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )

    with op.batch_alter_table("embed_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bot_id", sa.String(length=36), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_embed_tokens_bot_id_bots"),
            "bots",
            ["bot_id"],
            ["id"],
            ondelete="SET NULL",
        )

    with op.batch_alter_table("end_users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "attributes",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("flagged", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("flagged")

    with op.batch_alter_table("end_users", schema=None) as batch_op:
        batch_op.drop_column("attributes")

    with op.batch_alter_table("embed_tokens", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_embed_tokens_bot_id_bots"), type_="foreignkey")
        batch_op.drop_column("bot_id")

    with op.batch_alter_table("conversation_sessions", schema=None) as batch_op:
        batch_op.drop_column("bot_state")
        batch_op.drop_column("handed_off_at")

    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_channels_bot_id_bots"), type_="foreignkey")
        batch_op.drop_column("bot_id")

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_api_keys_bot_id_bots"), type_="foreignkey")
        batch_op.drop_column("bot_id")

    with op.batch_alter_table("bots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bots_organization_id"))

    op.drop_table("bots")
