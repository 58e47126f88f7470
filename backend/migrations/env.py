"""Alembic environment: runs on the connection backend.db.migrate() hands over (or a URL)."""
from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from backend.models import Base

target_metadata = Base.metadata
conn = context.config.attributes.get("connection")
if conn is None:  # the plain `alembic` command line, with sqlalchemy.url set
    from backend.db import db_url

    engine = create_engine(db_url(context.config.get_main_option("sqlalchemy.url")))
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
