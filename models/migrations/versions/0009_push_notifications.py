"""push notifications: credentials, devices, delivery log

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "push_credentials",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organization_id", sa.String(length=36), nullable=False),
        sa.Column("channel_id", sa.String(length=36), nullable=False),
        sa.Column("platform", sa.String(length=8), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column(
            "summary",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "platform IN ('fcm', 'apns')", name=op.f("ck_push_credentials_platform")
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name=op.f("fk_push_credentials_channel_id_channels"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_push_credentials_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_credentials")),
        sa.UniqueConstraint("channel_id", "platform", name=op.f("uq_push_credentials_channel_id")),
    )
    with op.batch_alter_table("push_credentials", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_push_credentials_channel_id"), ["channel_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_push_credentials_organization_id"), ["organization_id"], unique=False
        )

    op.create_table(
        "push_devices",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organization_id", sa.String(length=36), nullable=False),
        sa.Column("channel_id", sa.String(length=36), nullable=False),
        sa.Column("conversation_id", sa.String(length=36), nullable=False),
        sa.Column("platform", sa.String(length=8), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("app_version", sa.String(length=64), nullable=True),
        sa.Column("locale", sa.String(length=35), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("platform IN ('fcm', 'apns')", name=op.f("ck_push_devices_platform")),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name=op.f("fk_push_devices_channel_id_channels"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_push_devices_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_push_devices_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_devices")),
        sa.UniqueConstraint(
            "channel_id", "platform", "token_hash", name=op.f("uq_push_devices_channel_id")
        ),
    )
    with op.batch_alter_table("push_devices", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_push_devices_channel_id"), ["channel_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_push_devices_conversation_id"), ["conversation_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_push_devices_organization_id"), ["organization_id"], unique=False
        )

    op.create_table(
        "push_deliveries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("organization_id", sa.String(length=36), nullable=False),
        sa.Column("channel_id", sa.String(length=36), nullable=False),
        sa.Column("conversation_id", sa.String(length=36), nullable=False),
        sa.Column("device_id", sa.String(length=36), nullable=True),
        sa.Column("platform", sa.String(length=8), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name=op.f("fk_push_deliveries_channel_id_channels"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["push_devices.id"],
            name=op.f("fk_push_deliveries_device_id_push_devices"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_push_deliveries_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_deliveries")),
    )
    with op.batch_alter_table("push_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_push_deliveries_channel_id_id", ["channel_id", "id"], unique=False
        )
        batch_op.create_index("ix_push_deliveries_message_id", ["message_id"], unique=False)

    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("push_preview", sa.String(length=8), server_default="full", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.drop_column("push_preview")

    with op.batch_alter_table("push_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_push_deliveries_message_id")
        batch_op.drop_index("ix_push_deliveries_channel_id_id")

    op.drop_table("push_deliveries")
    with op.batch_alter_table("push_devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_push_devices_organization_id"))
        batch_op.drop_index(batch_op.f("ix_push_devices_conversation_id"))
        batch_op.drop_index(batch_op.f("ix_push_devices_channel_id"))

    op.drop_table("push_devices")
    with op.batch_alter_table("push_credentials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_push_credentials_organization_id"))
        batch_op.drop_index(batch_op.f("ix_push_credentials_channel_id"))

    op.drop_table("push_credentials")
