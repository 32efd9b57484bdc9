"""The node's certificate service: registry, REST routes, and keeping the blacklist current.

Built first among the optional components (see :mod:`gatehub.components`). It

- puts the :class:`gatehub.registry.GatewayRegistry` in ``ctx.extras["registry"]`` for the
  gRPC services and the REST API, with ``node.reload_blacklist`` as its blacklist hook;
- adds the ``/api/v1/certificates`` routes (CRL, CA certificate, issuance, blacklist);
- records the hub's TLS server certificate in the issuance history (the TLS context provider
  issues it before the database is wired to it);
- listens on the control socket ``{data_dir}/hub.sock`` (:mod:`gatehub.control`): after
  ``gatehub cert blacklist`` (another process) changed the database it asks there, and this
  service re-reads the blacklist and closes the revoked sessions before answering;
- every ``pki_blacklist_poll`` seconds compares the database blacklist with the one the TLS
  listeners use and reloads it when they differ: the fallback for a CLI that could not reach
  the socket, and how a change made by another node (a shared PostgreSQL database) reaches this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from gatehub.control import ControlServer
from gatehub.registry import GatewayRegistry

if TYPE_CHECKING:
    from gatehub.node import Node

__all__ = ["PkiService", "build_pki_service"]

log = logging.getLogger(__name__)


class PkiService:
    name = "pki"

    def __init__(self, node: Node, registry: GatewayRegistry) -> None:
        self.node = node
        self.registry = registry
        self._task: asyncio.Task[None] | None = None
        self.control = ControlServer(node.settings.data_dir, {"blacklist": self.check_blacklist})

    async def start(self) -> None:
        pki = self.node.pki
        assert pki is not None
        server = pki.server_certificate
        if await self.registry.record_server_certificate(server.serial, server.cert_pem):
            log.info("recorded the hub server certificate %d in the issuance history", server.serial)
        await self.control.start()
        interval = self.node.settings.pki_blacklist_poll
        if interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._watch(interval), name="pki-blacklist-watch")

    async def check_blacklist(self) -> bool:
        """Reload the blacklist if the database's differs from the listeners' (True if it did)."""
        node = self.node
        assert node.store is not None and node.pki is not None
        current = set(await node.store.certificates.blacklist())
        if current == set(node.pki.blacklist):
            return False
        await node.reload_blacklist()
        return True

    async def _watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check_blacklist()
            except Exception as exc:  # the database may be briefly away; keep watching
                log.warning("checking the certificate blacklist failed: %s", exc)

    async def stop(self) -> None:
        await self.control.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


async def build_pki_service(node: Node) -> PkiService | None:
    assert node.store is not None and node.pki is not None and node.ctx is not None
    registry = GatewayRegistry(node.store, node.pki.ca, on_blacklist_change=node.reload_blacklist)
    node.ctx.extras["registry"] = registry
    from gatehub.transports.http.api import certificates

    node.ctx.extras.setdefault("routers", []).append(certificates.router)
    return PkiService(node, registry)
