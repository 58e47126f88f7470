"""Database connection: SQLite by file path (the default), PostgreSQL by URL; schema by migrations."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import sessionmaker

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def db_url(target: str) -> str:
    """A URL stays a URL (postgresql://... is driven by psycopg 3); anything else is a SQLite file."""
    if "://" not in target:
        return f"sqlite:///{Path(target).expanduser().resolve()}"
    if target.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + target.split("://", 1)[1]
    return target


def make_engine(target: str) -> Engine:
    url = db_url(target)
    if url.startswith("sqlite"):
        # One writer at a time, taken at BEGIN: a read-then-write transaction never fails halfway
        # with "database is locked" when another worker writes; WAL keeps readers off its back.
        engine = create_engine(url, connect_args={"timeout": 60, "isolation_level": None})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record) -> None:
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA synchronous=FULL")
            dbapi_conn.execute("PRAGMA foreign_keys=ON")

        @event.listens_for(engine, "begin")
        def _on_begin(conn) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True)


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` with the alembic migrations (idempotent)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def open_db(target: str) -> sessionmaker:
    """Engine + migrated schema + session factory: what every command starts with."""
    engine = make_engine(target)
    migrate(engine)
    return sessionmaker(engine, expire_on_commit=False)
