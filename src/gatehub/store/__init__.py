"""Persistence: tables, migrations, repositories and the ingest writer."""

from __future__ import annotations

from gatehub.bus import Bus
from gatehub.store.accounts import Accounts
from gatehub.store.catalog import Catalog
from gatehub.store.certificates import Certificates
from gatehub.store.data import Data
from gatehub.store.db import Database
from gatehub.store.devices import DeviceFilter, Devices
from gatehub.store.ingest import IngestWriter, WriteBatch, WriteResult
from gatehub.store.provisioning import Provisioning
from gatehub.store.topology import Topology

__all__ = [
    "Accounts",
    "Catalog",
    "Data",
    "Database",
    "DeviceFilter",
    "Devices",
    "IngestWriter",
    "Provisioning",
    "Store",
    "Topology",
    "WriteBatch",
    "WriteResult",
]


class Store:
    """The repositories over one database."""

    def __init__(self, db: Database, bus: Bus | None = None) -> None:
        self.db = db
        self.accounts = Accounts(db, bus)
        self.catalog = Catalog(db, bus)
        self.devices = Devices(db, self.catalog, bus)
        self.topology = Topology(db, self.catalog, self.devices)
        self.provisioning = Provisioning(db, self.catalog, self.devices)
        self.data = Data(db)
        self.certificates = Certificates(db)
