"""channels: verified identity settings, and mobile channels' public keys

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 16:00:00
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("public_key", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("identity_mode", sa.String(length=8), server_default="off", nullable=False)
        )
        batch_op.add_column(sa.Column("identity_salt", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("identity_jwt_algorithm", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("identity_jwks_url", sa.String(length=2000), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_channels_public_key"), ["public_key"])
        batch_op.create_check_constraint(
            batch_op.f("ck_channels_identity_mode"), "identity_mode IN ('off', 'hmac', 'jwt')"
        )
    # Mobile channels made before keys existed get one now.
    conn = op.get_bind()
    channels = sa.table("channels", sa.column("id"), sa.column("type"), sa.column("public_key"))
    ids = conn.execute(sa.select(channels.c.id).where(channels.c.type == "mobile_sdk")).all()
    for (channel_id,) in ids:
        conn.execute(
            channels.update()
            .where(channels.c.id == channel_id)
            .values(public_key="mc_" + secrets.token_urlsafe(24))
        )


def downgrade() -> None:
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_channels_identity_mode"), type_="check")
        batch_op.drop_constraint(batch_op.f("uq_channels_public_key"), type_="unique")
        batch_op.drop_column("identity_jwks_url")
        batch_op.drop_column("identity_jwt_algorithm")
        batch_op.drop_column("identity_salt")
        batch_op.drop_column("identity_mode")
        batch_op.drop_column("public_key")
