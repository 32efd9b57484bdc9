"""SQLAlchemy Core tables. Alembic migrations in ``migrations/versions`` create them; this
metadata is what the repositories query and what `alembic check` compares against.

Telemetry keeps its hot write path append-like: on SQLite the primary key of ``telemetry`` leads
with the timestamp (see DESIGN.md, "Storage layout decides ingest speed"); on PostgreSQL the points
of one series and group commit are one row of arrays in ``telemetry_chunks``, and ``telemetry``
is a view of the points (migration 0005, docs/storage.md). ``latest`` holds one upserted row per
(device, key) for current values.
"""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

tenants = Table(
    "tenants",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

customers = Table(
    "customers",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("tenant_id", String(128), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("tenant_id", "name"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(128), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=True),
    Column("customer_id", String(128), ForeignKey("customers.id", ondelete="CASCADE"), nullable=True),
    Column("name", String(255), nullable=False),
    Column("role", String(32), nullable=False),
    Column("permissions", JSON, nullable=False),
    Column("secret_hash", String(128), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

products = Table(
    "products",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("tenant_id", String(128), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("node_type", String(16), nullable=False),
    Column("secret", String(128), nullable=False),
    Column("thing_model", JSON, nullable=False),
    Column("trusted_gateway_add", Boolean, nullable=False, default=False),
    Column("dynamic_register", Boolean, nullable=False, default=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("tenant_id", "name"),
)

devices = Table(
    "devices",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("number", BigInteger, nullable=False, unique=True),
    Column("tenant_id", String(128), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("product_id", String(128), ForeignKey("products.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("parent_id", String(128), ForeignKey("devices.id", ondelete="SET NULL"), nullable=True),
    Column("access_token", String(256), nullable=True, unique=True),
    Column("secret", String(128), nullable=True),
    Column("secret_delivered", Boolean, nullable=False, default=False),
    Column("customer_id", String(128), ForeignKey("customers.id", ondelete="SET NULL"), nullable=True),
    Column("topology_version", BigInteger, nullable=False, default=0),
    Column("presence", String(16), nullable=False, default="offline"),
    Column("last_seen", BigInteger, nullable=True),
    Column("last_address", String(255), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("tenant_id", "name"),
    Index(None, "parent_id"),
    Index(None, "product_id"),
)

# Device ids and data keys of the time series compare byte by byte on PostgreSQL (migration 0004):
# cheaper index inserts than the locale's collation, and the same order as SQLite.
_ID = String(128).with_variant(String(128, collation="C"), "postgresql")
_KEY = String(255).with_variant(String(255, collation="C"), "postgresql")

# Time series. ts-leading primary key: appends stay at the right edge of the B-tree.
telemetry = Table(
    "telemetry",
    metadata,
    Column("ts", BigInteger, nullable=False),
    Column("device_id", _ID, nullable=False),
    Column("key", _KEY, nullable=False),
    Column("kind", String(1), nullable=False),
    Column("v_int", BigInteger, nullable=True),
    Column("v_float", Float, nullable=True),
    Column("v_str", Text, nullable=True),
    PrimaryKeyConstraint("ts", "device_id", "key"),
    sqlite_with_rowid=False,
)

# PostgreSQL only (migration 0005): the points of one series written in one transaction.
# ``kind`` holds one kind letter per point; a value array is NULL when no point has that column.
telemetry_chunks = Table(
    "telemetry_chunks",
    metadata,
    Column("device_id", _ID, nullable=False),
    Column("key", _KEY, nullable=False),
    Column("ts_max", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("ts_min", BigInteger, nullable=False),
    Column("ts", ARRAY(BigInteger), nullable=False),
    Column("kind", Text, nullable=False),
    Column("v_int", ARRAY(BigInteger), nullable=True),
    Column("v_float", ARRAY(Float), nullable=True),
    Column("v_str", ARRAY(Text), nullable=True),
    PrimaryKeyConstraint("device_id", "key", "ts_max", "seq"),
)

# PostgreSQL only: the window of chunk sequence numbers the compactor merges next (one row)
telemetry_compaction = Table(
    "telemetry_compaction",
    metadata,
    Column("done_upto", BigInteger, nullable=False),
    Column("next_upto", BigInteger, nullable=False),
)

latest = Table(
    "latest",
    metadata,
    Column("device_id", _ID, nullable=False),
    Column("key", _KEY, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("kind", String(1), nullable=False),
    Column("v_int", BigInteger, nullable=True),
    Column("v_float", Float, nullable=True),
    Column("v_str", Text, nullable=True),
    PrimaryKeyConstraint("device_id", "key"),
)

attributes = Table(
    "attributes",
    metadata,
    Column("device_id", String(128), ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    Column("scope", String(8), nullable=False),
    Column("key", String(255), nullable=False),
    Column("value", Text, nullable=False),  # JSON text
    Column("updated_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("device_id", "scope", "key"),
)

rpc_calls = Table(
    "rpc_calls",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(128), nullable=False),
    Column("device_id", String(128), ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    Column("request_id", BigInteger, nullable=False),
    Column("method", String(255), nullable=False),
    Column("params", Text, nullable=False),
    Column("oneway", Boolean, nullable=False),
    Column("persistent", Boolean, nullable=False),
    Column("status", String(16), nullable=False),
    Column("timeout_ms", BigInteger, nullable=False),
    Column("expiration", BigInteger, nullable=False),
    Column("response", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index(None, "device_id", "status"),
)

claims = Table(
    "claims",
    metadata,
    Column("device_id", String(128), ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    Column("secret_key", String(255), nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("claimed_by", String(128), nullable=True),
    Column("claimed_at", BigInteger, nullable=True),
)

# Event / message log: status changes, topology changes, device messages.
events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(128), nullable=False),
    Column("device_id", String(128), nullable=True),
    Column("ts", BigInteger, nullable=False),
    Column("type", String(64), nullable=False),
    Column("body", Text, nullable=False),  # JSON text
    Index(None, "tenant_id", "ts"),
    Index(None, "device_id", "ts"),
)

# Replay de-duplication: the last batch sequence number acknowledged per gateway (agent outbox).
ingest_sequences = Table(
    "ingest_sequences",
    metadata,
    Column("gateway_id", String(128), primary_key=True),
    Column("epoch", String(64), nullable=False),
    Column("last_seq", BigInteger, nullable=False),
)

# Certificates issued by the hub CA: issuance history and the blacklist.
certificates = Table(
    "certificates",
    metadata,
    Column("serial", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(16), nullable=False),  # server, gateway, tenant, admin
    Column("tenant_id", String(128), nullable=True),
    Column("gateway_id", String(128), nullable=True),
    Column("subject", JSON, nullable=False),  # PKIName fields
    Column("not_before", BigInteger, nullable=False),  # Unix seconds
    Column("not_after", BigInteger, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("blacklisted", Boolean, nullable=False, default=False),
    Column("blacklisted_at", BigInteger, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Index(None, "tenant_id", "gateway_id"),
)

# IoTDA-style device access tokens (HTTPS device API). Only a hash of the token is kept.
device_tokens = Table(
    "device_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("device_id", String(128), ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    Column("expires_at", BigInteger, nullable=False),  # ms
    Column("superseded_at", BigInteger, nullable=True),  # ms; the token stays valid 30 s after this
    Column("created_at", BigInteger, nullable=False),
    Index(None, "device_id"),
)
