"""The bytes a listener's connections hold before their CONNECT is accepted, under one bound.

A connection that has not authenticated yet can make the hub hold what it sent and the decoder
could not process: at most one CONNECT of ``mqtt_max_connect_size`` (its header is judged first),
plus one read, plus what it pipelined behind the CONNECT while that is authenticated (the socket
stops being read beyond ``mqtt_max_connect_size``). Many such connections together are bounded
by ``mqtt_preauth_buffer_limit`` per listener: when their sum is over it, the connection holding
the most is closed, again until the sum is within the limit. The largest, not the newest: an
attacker who filled the budget with slow CONNECTs cannot lock out a client whose small CONNECT
arrives whole, and every close frees as much as possible.
"""

from __future__ import annotations

from typing import Protocol


class PreauthHolder(Protocol):
    def preauth_evict(self) -> None:
        """Close the connection at once and forget what it holds (it calls ``hold(self, 0)``)."""
        ...


class PreauthBudget:
    __slots__ = ("evicted", "holders", "limit", "total")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self.evicted = 0  # connections closed because the budget was over its limit
        self.holders: dict[PreauthHolder, int] = {}

    def hold(self, holder: PreauthHolder, n: int) -> None:
        """``holder`` now holds ``n`` bytes (0: none, or it authenticated or closed)."""
        holders = self.holders
        old = holders.pop(holder, 0) if not n else holders.get(holder, 0)
        if n:
            holders[holder] = n
        self.total += n - old
        while self.total > self.limit and holders:
            victim = max(holders, key=holders.__getitem__)
            self.evicted += 1
            before = len(holders)
            victim.preauth_evict()
            if len(holders) == before:  # a holder that did not let go: forget it here
                self.total -= holders.pop(victim)
