"""The database: an async SQLAlchemy engine for SQLite (default) or PostgreSQL, and migrations.

``Database.open(url)`` creates the engine with the right settings for the dialect (SQLite: WAL,
synchronous=FULL, foreign keys on, busy timeout) and ``migrate()`` brings the schema to the
newest Alembic revision. Driver errors become StorageError at this boundary.

``migrate()`` first reads the schema's revision (one query): when it is already the newest one,
Alembic is not even imported, which keeps every CLI command from paying for it.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection as SyncConnection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from gatehub.errors import ConfigError, StorageError

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` and ``sqlite:///`` URLs and pick the async drivers."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url[len("postgresql://") :]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    return url


class Database:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect: str = engine.dialect.name

    @classmethod
    def open(cls, url: str, *, pool_size: int = 8) -> Database:
        url = normalise_url(url)
        try:
            parsed = make_url(url)
        except Exception as exc:  # sqlalchemy raises ArgumentError with a vague message
            raise ConfigError(f"database_url is not a valid URL: {url!r}") from exc
        kwargs: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        elif parsed.get_backend_name() == "postgresql":
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = pool_size
        else:
            raise ConfigError(f"unsupported database {parsed.get_backend_name()!r}: use sqlite or postgresql")
        engine = create_async_engine(url, **kwargs)
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return cls(engine)

    async def migrate(self) -> None:
        """Upgrade the schema to the newest revision (idempotent)."""
        head = head_revision()
        if head is not None and await self._revision() == head:
            return
        try:
            async with self.engine.begin() as conn:
                await conn.run_sync(_upgrade)
        except SQLAlchemyError as exc:
            raise StorageError(f"database migration failed: {exc}") from exc

    async def _revision(self) -> str | None:
        """The schema's Alembic revision; None before the first migration or if unreadable."""
        try:
            async with self.engine.connect() as conn:
                rows = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
        except SQLAlchemyError:
            return None
        return str(rows[0][0]) if len(rows) == 1 else None

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A transaction; driver errors surface as StorageError."""
        try:
            async with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StorageError(f"database error: {exc.__class__.__name__}: {exc}") from exc

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StorageError(f"database error: {exc.__class__.__name__}: {exc}") from exc

    async def close(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA cache_size=-65536")
    cur.close()


_REVISION = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*(None|['\"]([^'\"]+)['\"])\s*$", re.M)


@functools.cache
def head_revision() -> str | None:
    """The newest migration's revision, read from the migration files without Alembic: the one
    no other names as its ``down_revision``; None if that is not one clear revision."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = {m.group(1): m.group(3) for m in _REVISION.finditer(path.read_text("utf-8"))}
        if "revision" not in found:
            continue
        if found["revision"] is None:
            return None
        revisions.add(found["revision"])
        if found.get("down_revision"):
            parents.add(str(found["down_revision"]))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _upgrade(sync_conn: SyncConnection) -> None:
    from alembic import command

    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")
