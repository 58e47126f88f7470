"""Alembic environment: runs on the connection backend.db.migrate() hands over (or a URL)."""
from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from backend.models import Base


def run(conn: Connection) -> None:
    context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


given = context.config.attributes.get("connection")
if given is not None:
    run(given)
else:  # the plain `alembic` command line, with sqlalchemy.url set
    from backend.db import db_url

    with create_engine(db_url(context.config.get_main_option("sqlalchemy.url"))).begin() as conn:
        run(conn)
