"""The blacklist as the node's listeners see it, kept equal to the one in the store.

The store is the source of truth (the registry, REST, gRPC and ``gatehub cert blacklist``
write there). :class:`Blacklist` makes the TLS listeners follow it:

- :meth:`Blacklist.reload` re-reads it, swaps the CRL of every TLS context (new handshakes see it
  at once) and publishes ``pki.blacklist`` on the bus, where the listeners that hold sessions
  authenticated by certificate close the revoked ones. The registry calls it after each change
  made on this node.
- :meth:`Blacklist.check` reloads only when the store's differs from the listeners': what the
  control socket (a CLI process on this machine changed the database) and the poll run.
- every ``pki_blacklist_poll`` seconds the poll runs ``check``: the fallback for a CLI that could
  not reach the control socket, and how a change made by another node sharing the database
  arrives. In a cluster, ``pki.blacklist`` on the bus is what reaches every node at once.
"""

from __future__ import annotations

import asyncio
import logging

from gatehub.bus import Bus
from gatehub.loop import stop_task
from gatehub.pki import TlsContextProvider
from gatehub.store import Store

__all__ = ["Blacklist"]

log = logging.getLogger("gatehub.pki")


class Blacklist:
    def __init__(self, store: Store, tls: TlsContextProvider, bus: Bus, poll_interval: float) -> None:
        self.store = store
        self.tls = tls
        self.bus = bus
        self.poll_interval = poll_interval
        self._task: asyncio.Task[None] | None = None

    async def reload(self) -> None:
        """Re-read the blacklist and apply it on every listener of this node."""
        blacklist = await self.store.certificates.blacklist()
        self.tls.update_blacklist(blacklist)
        self.bus.publish("pki.blacklist", {"serials": sorted(blacklist)})

    async def check(self) -> bool:
        """Reload the blacklist if the store's differs from the listeners' (True if it did)."""
        current = set(await self.store.certificates.blacklist())
        if current == set(self.tls.blacklist):
            return False
        await self.reload()
        return True

    async def start(self) -> None:
        if self.poll_interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="pki-blacklist-watch")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.check()
            except Exception as exc:  # the database may be briefly away; keep watching
                log.warning("checking the certificate blacklist failed: %s", exc)

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None
