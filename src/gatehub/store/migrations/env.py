"""Alembic environment: runs on a connection handed over by gatehub.store.db (or a URL)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from gatehub.store.tables import metadata

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        url = config.get_main_option("sqlalchemy.url") or "sqlite:///var/gatehub.db"
        engine = create_engine(url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg"))
        with engine.begin() as conn:
            context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
            with context.begin_transaction():
                context.run_migrations()
        return
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run()
