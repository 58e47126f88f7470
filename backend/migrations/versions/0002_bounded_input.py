"""bounded input (#18): anomalies keep raw_len and raw_sha256 (raw is cut to 4 KiB unless the device
signed it); anomaly_counts (a flood is counted, not stored row by row)

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('anomalies', schema=None) as batch_op:
        batch_op.add_column(sa.Column('raw_len', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('raw_sha256', sa.String(length=64), nullable=True))

    op.create_table('anomaly_counts',
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('hour', sa.BigInteger(), nullable=False),
    sa.Column('seen', sa.BigInteger(), nullable=False),
    sa.Column('last_at', sa.BigInteger(), nullable=False),
    sa.Column('last_topic', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('source', 'kind', 'hour')
    )


def downgrade() -> None:
    op.drop_table('anomaly_counts')
    with op.batch_alter_table('anomalies', schema=None) as batch_op:
        batch_op.drop_column('raw_sha256')
        batch_op.drop_column('raw_len')
