"""Persistence: tables, migrations, repositories and the ingest writer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

import orjson

from gatehub.bus import Bus
from gatehub.domain.telemetry import value_of
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
    "commit_publisher",
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


_first = itemgetter(0)


def commit_publisher(bus: Bus) -> Callable[[Sequence[WriteBatch]], None]:
    """What the ingest writer calls after each commit: publish what was stored on the bus."""

    def publish(batches: Sequence[WriteBatch]) -> None:
        for b in batches:
            if b.telemetry:
                # only devices someone listens to are converted: no Python code per row otherwise
                wanted = {
                    dev
                    for dev in dict.fromkeys(map(_first, b.telemetry))
                    if bus.has_subscribers(f"t.{b.tenant_id}.telemetry.{dev}")
                }
                per_dev: dict[str, dict[str, list[list[Any]]]] = {}
                if wanted:
                    for dev, key, ts, kind, vi, vf, vs in b.telemetry:
                        if dev in wanted:
                            per_dev.setdefault(dev, {}).setdefault(key, []).append([ts, value_of(kind, vi, vf, vs)])
                for dev, data in per_dev.items():
                    bus.publish(
                        f"t.{b.tenant_id}.telemetry.{dev}", {"type": "telemetry", "deviceId": dev, "data": data}
                    )
            if b.attributes:
                per_scope: dict[tuple[str, str], dict[str, Any]] = {}
                for dev, scope, key, value, _ts in b.attributes:
                    per_scope.setdefault((dev, scope), {})[key] = orjson.loads(value)
                for (dev, scope), data in per_scope.items():
                    bus.publish(
                        f"t.{b.tenant_id}.attributes.{dev}",
                        {"type": "attributes", "deviceId": dev, "scope": scope, "data": data},
                    )
            for _tenant, ev_dev, ts, type_, body in b.events:
                subject = f"t.{b.tenant_id}.message.{ev_dev or '_'}"
                if bus.has_subscribers(subject):
                    bus.publish(subject, {"type": type_, "deviceId": ev_dev, "ts": ts, "body": orjson.loads(body)})

    return publish
