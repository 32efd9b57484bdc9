"""The credential-failure guard: brute force costs time, refusals do not flood the log.

Every credential check of every transport (MQTT CONNECT, REST API keys, IoTDA device auth and
access tokens, gRPC login tokens, device-link stream tokens) goes through one
:class:`CredentialGuard`:

1. ``await guard.admit(host, transport)`` before the check. A source that is backed off waits
   here (in the task of its own connection or request: ``asyncio.sleep``, never blocking the
   loop or other clients) until its next attempt is due; each admitted attempt of a backed-off
   source pushes the next one back by the current delay, so parallel connections from one
   source are checked one per delay, not all at once. A source whose wait would exceed
   ``guard_backoff_max``, or that is locked out, gets a :class:`Refusal` without any check.
2. ``await guard.refused(host, transport, identity, reason)`` after a failed check: counted,
   logged (rate-limited), and, once the source has more than ``guard_backoff_after`` failures,
   the refusal answer itself is delayed by ``guard_backoff_base * 2 ** (failures - after)``,
   at most ``guard_backoff_max`` seconds. Failures that are not guesses (an expired but genuine
   token, a server-side error, no credentials at all) pass ``score=False``: counted and logged,
   but they do not back the source off.
3. ``guard.succeeded(host)`` after a good check (see "success" below).

The failure count of a source decays exponentially (halved every ``guard_decay_half_life``
seconds), so a source that stops failing is back to normal after a few half-lives. With
``guard_lockout_after`` > 0 (off by default) a source reaching that many failures is refused
outright, unchecked, for ``guard_lockout_minutes``.

Sources. A source is the client's IP address; IPv6 addresses are grouped by their
``guard_ipv6_prefix`` (default /64: one subscriber usually holds a whole /64, so per-address
keys would give an attacker 2**64 fresh sources), IPv4 by ``guard_ipv4_prefix`` (default /32).
Trade-off: a fleet of legitimate devices behind one NAT address shares one source, so one
misconfigured device that keeps failing slows the admission of its neighbours (they are
admitted one per delay while the source is backed off). Keying on (source, identity) would
spare them but does not stop guessing, where the identity *is* the guess (an access token as
user name); we chose per-source keys. Deployments with such a NAT list its address in
``guard_exempt_networks``: its refusals are still counted and logged, never delayed.

Success. A good check does *not* clear the source's failures: if it did, anyone holding one
valid credential (one device's own token) could wipe the back-off between guesses by
interleaving a successful login. What a success clears is the log rate window (the next
refusal of that source is logged again). Decay is what forgives.

Memory: at most ``guard_max_sources`` sources are tracked (least recently failed dropped
first); a periodic sweep drops sources whose count has decayed to nothing.

Logging: the first ``guard_log_per_source`` refusals of a source per ``guard_log_interval``
seconds are logged with source, transport, identity and reason; the rest are counted and one
summary line per interval says how many were suppressed. Refused TLS handshakes (unknown CA,
expired, revoked/blacklisted, no certificate, ...) are logged the same way by
:meth:`CredentialGuard.tls_refused` (they do not back off: a certificate cannot be guessed).
Counters are in :attr:`CredentialGuard.failures` and :attr:`CredentialGuard.tls_refusals`,
served on /metrics.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import math
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from gatehub.config import Settings
from gatehub.errors import RateLimited, Unauthenticated
from gatehub.loop import stop_task

log = logging.getLogger("gatehub.guard")

__all__ = [
    "REFUSAL_MESSAGES",
    "CredentialGuard",
    "GuardPolicy",
    "Refusal",
    "key_id",
    "mask",
    "policy_from",
    "tls_reason",
]

T = TypeVar("T")
_FORGET_BELOW = 0.5  # a decayed count below this (and nothing pending) is dropped by the sweep
_SUMMARY_SOURCES = 20  # per-source summary lines per interval at most; the rest in one line


class Refusal(enum.Enum):
    """Why ``admit`` refuses without checking the credentials."""

    LOCKED_OUT = "locked_out"
    BACKED_OFF = "backed_off"


REFUSAL_MESSAGES = {
    Refusal.LOCKED_OUT: "too many failed credential checks from this address: locked out for a while",
    Refusal.BACKED_OFF: "too many failed credential checks from this address: retry later",
}


@dataclass(frozen=True, slots=True)
class GuardPolicy:
    """The guard's numbers (see :func:`policy_from` for the settings they come from)."""

    backoff_after: int = 5
    backoff_base: float = 0.1
    backoff_max: float = 5.0
    half_life: float = 60.0
    lockout_after: int = 0  # 0 = no lock-out
    lockout_seconds: float = 600.0
    max_sources: int = 100_000
    ipv4_prefix: int = 32
    ipv6_prefix: int = 64
    exempt: tuple[str, ...] = ()
    log_per_source: int = 5
    log_interval: float = 60.0


class _Source:
    __slots__ = ("at", "exempt", "locked_until", "logged", "next_at", "score", "suppressed", "window")

    def __init__(self, now: float, exempt: bool) -> None:
        self.score = 0.0
        self.at = now  # when score was last decayed
        self.next_at = 0.0  # the next attempt is not checked before this
        self.locked_until = 0.0
        self.window = now  # start of the current log window
        self.logged = 0
        self.suppressed = 0
        self.exempt = exempt


def mask(secret: str | None, keep: int = 4) -> str:
    """A credential shortened for a log line: its first ``keep`` characters and its length."""
    if secret is None:
        return "-"
    if len(secret) <= keep:
        return "*" * len(secret)
    return f"{secret[:keep]}…({len(secret)})"


def key_id(key: str) -> str:
    """The public part of an API key ``ghk_<id>_<secret>`` for a log line (never the secret)."""
    parts = key.split("_", 2)
    return f"{parts[0][:8]}_{parts[1][:40]}_…" if len(parts) == 3 else mask(key)


def tls_reason(exc: BaseException) -> str:
    """A short label for a failed TLS handshake (server side), for logs and metrics."""
    verify = getattr(exc, "verify_message", None)
    text = f"{verify or ''} {getattr(exc, 'reason', '') or ''} {exc}".lower()
    if "alert" in text and not verify:  # the client ended the handshake: it refused *our* certificate
        if any(
            a in text for a in ("unknown ca", "unknown_ca", "bad certificate", "certificate unknown", "bad_certificate")
        ):
            return "client_refused_server_certificate"
        if "protocol version" in text or "protocol_version" in text:
            return "protocol_version"
    for needle, label in (
        ("revoked", "revoked"),
        ("expired", "expired"),
        ("not yet valid", "not_yet_valid"),
        ("self-signed", "unknown_ca"),
        ("self signed", "unknown_ca"),
        ("unable to get local issuer", "unknown_ca"),
        ("unknown ca", "unknown_ca"),
        ("unable to get issuer", "unknown_ca"),
        ("peer did not return a certificate", "no_certificate"),
        ("certificate required", "no_certificate"),
        ("unsupported protocol", "protocol_version"),
        ("wrong version number", "protocol_version"),
        ("no shared cipher", "no_shared_cipher"),
        ("http request", "not_tls"),
        ("certificate verify failed", "certificate_invalid"),
        ("bad certificate", "bad_certificate"),
    ):
        if needle in text:
            return label
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionError | OSError) and not text.strip():
        return "connection_lost"
    return "handshake_failed"


class CredentialGuard:
    """See the module docstring. ``clock`` (monotonic seconds) and ``sleep`` are for tests."""

    def __init__(
        self,
        policy: GuardPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self.policy = p = policy or GuardPolicy()
        self.clock = clock
        self._sleep = sleep
        self._sources: OrderedDict[str, _Source] = OrderedDict()
        self._exempt = tuple(ipaddress.ip_network(n, strict=False) for n in p.exempt)
        self._ln2_over_half_life = math.log(2) / p.half_life if p.half_life > 0 else 0.0
        self.failures: Counter[tuple[str, str]] = Counter()  # (transport, reason) -> refusals
        self.tls_refusals: Counter[tuple[str, str]] = Counter()  # (listener, reason) -> handshakes
        self.delayed_seconds = 0.0  # total delay imposed on refusals and admissions
        self._tls_log = _RateLog(p.log_per_source, p.log_interval)
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle (the periodic sweep: summaries of suppressed lines, forgetting) --------------

    async def start(self) -> None:
        if self._task is None and self.policy.log_interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._sweep_loop(), name="credential-guard")

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None
        self.sweep()

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.policy.log_interval)
            try:
                self.sweep()
            except Exception:
                log.exception("credential guard sweep failed")

    # -- sources ------------------------------------------------------------------------------

    def source_of(self, host: str | None) -> str:
        """The key of a client address: IPv4 by ``ipv4_prefix``, IPv6 by ``ipv6_prefix``."""
        if not host:
            return "?"
        p = self.policy
        if ":" not in host and p.ipv4_prefix >= 32:
            return host
        try:
            addr = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return host
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        prefix = p.ipv4_prefix if addr.version == 4 else p.ipv6_prefix
        if prefix >= addr.max_prefixlen:
            return str(addr)
        return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))

    def _is_exempt(self, host: str | None) -> bool:
        if not self._exempt or not host:
            return False
        try:
            addr = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        return any(addr in net for net in self._exempt)

    def _decayed(self, src: _Source, now: float) -> float:
        if src.score and now > src.at and self._ln2_over_half_life:
            src.score *= math.exp(-self._ln2_over_half_life * (now - src.at))
        src.at = now
        return src.score

    def delay_for(self, score: float) -> float:
        """The back-off delay of a source with ``score`` failures (0 below the threshold)."""
        p = self.policy
        over = score - p.backoff_after
        if over <= 0 or p.backoff_base <= 0:
            return 0.0
        delay: float = p.backoff_base * math.pow(2.0, min(over - 1.0, 60.0))
        return min(p.backoff_max, delay)

    def failures_of(self, host: str | None) -> float:
        """The decayed failure count of ``host``'s source now (0 if not tracked)."""
        src = self._sources.get(self.source_of(host))
        return 0.0 if src is None else self._decayed(src, self.clock())

    # -- the three calls around a credential check --------------------------------------------

    async def admit(self, host: str | None, transport: str, identity: str = "") -> Refusal | None:
        """Wait until an attempt of ``host`` may be checked; a :class:`Refusal` if it may not
        (it is then already counted and logged: answer the client at once)."""
        if not self._sources:
            return None
        key = self.source_of(host)
        src = self._sources.get(key)
        if src is None or src.exempt:
            return None
        now = self.clock()
        if src.locked_until > now:
            self._count(key, src, transport, identity, Refusal.LOCKED_OUT.value, now)
            return Refusal.LOCKED_OUT
        spacing = self.delay_for(self._decayed(src, now))
        wait = src.next_at - now
        if wait <= 0 and spacing <= 0:
            return None
        if wait > self.policy.backoff_max:
            self._count(key, src, transport, identity, Refusal.BACKED_OFF.value, now)
            return Refusal.BACKED_OFF
        src.next_at = max(src.next_at, now) + spacing
        if wait > 0:
            await self._pause(wait)
        return None

    async def refused(
        self, host: str | None, transport: str, identity: str, reason: str, *, score: bool = True
    ) -> float:
        """Count and log a failed check; back the source off (``score``) and wait out the delay
        of this refusal before returning it (seconds waited)."""
        now = self.clock()
        key = self.source_of(host)
        src = self._sources.get(key)
        if src is None:
            src = _Source(now, self._is_exempt(host))
            if len(self._sources) >= self.policy.max_sources:
                self._sources.popitem(last=False)
            self._sources[key] = src
        else:
            self._sources.move_to_end(key)
        self._count(key, src, transport, identity, reason, now)
        if not score or src.exempt:
            return 0.0
        p = self.policy
        failures = self._decayed(src, now) + 1.0
        src.score = failures
        if p.lockout_after > 0 and failures + 0.5 >= p.lockout_after:  # M quick failures (decay: ~M - 0.1)
            src.locked_until = now + p.lockout_seconds
            src.score = min(failures, float(p.backoff_after))  # after the lock-out, back-off goes on
            log.warning(
                "%s locked out for %.0f s after %d credential failures (last: %s %s)",
                key,
                p.lockout_seconds,
                round(failures),
                transport,
                reason,
            )
        delay = self.delay_for(failures)
        if delay <= 0:
            return 0.0
        src.next_at = max(src.next_at, now + delay)
        await self._pause(delay)
        return delay

    async def check(
        self,
        host: str | None,
        transport: str,
        identity: str,
        attempt: Callable[[], Awaitable[T]],
        *,
        reason: str = "bad_credentials",
    ) -> T:
        """``admit``, run ``attempt`` (a credential check raising :class:`Unauthenticated`),
        then ``refused`` or ``succeeded``. A refusal without a check raises :class:`RateLimited`."""
        refusal = await self.admit(host, transport, identity)
        if refusal is not None:
            raise RateLimited(REFUSAL_MESSAGES[refusal])
        try:
            result = await attempt()
        except Unauthenticated as exc:
            await self.refused(host, transport, f"{identity}: {exc.message}", reason)
            raise
        self.succeeded(host)
        return result

    def succeeded(self, host: str | None) -> None:
        """A good check from ``host``: its failures stay (they decay); its log window restarts."""
        if not self._sources:
            return
        src = self._sources.get(self.source_of(host))
        if src is not None and not src.suppressed:
            src.logged = 0

    def tls_refused(self, host: str | None, listener: str, exc: BaseException) -> str:
        """A refused TLS handshake: counted per (listener, reason) and logged, rate-limited."""
        reason = tls_reason(exc)
        self.tls_refusals[(listener, reason)] += 1
        key = self.source_of(host)
        if self._tls_log.allow(key, self.clock()):
            detail = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or exc
            log.warning("%s: refused TLS handshake from %s: %s (%s)", listener, host or "?", reason, detail)
        return reason

    # -- counting and logging -----------------------------------------------------------------

    def _count(self, key: str, src: _Source, transport: str, identity: str, reason: str, now: float) -> None:
        self.failures[(transport, reason)] += 1
        p = self.policy
        if now - src.window >= p.log_interval:
            self._summary(key, src)
            src.window = now
            src.logged = 0
        if src.logged < p.log_per_source:
            src.logged += 1
            log.warning("refused %s from %s: %s (%s)", transport, key, reason, identity or "-")
        else:
            src.suppressed += 1

    @staticmethod
    def _summary(key: str, src: _Source) -> None:
        if src.suppressed:
            log.warning("%d more refusals from %s suppressed", src.suppressed, key)
            src.suppressed = 0

    def sweep(self) -> None:
        """Summaries of suppressed refusals, and forgetting sources that have decayed away."""
        now = self.clock()
        summarised = 0
        rest_sources = rest_lines = 0
        for key in list(self._sources):
            src = self._sources[key]
            if src.suppressed:
                if summarised < _SUMMARY_SOURCES:
                    self._summary(key, src)
                    summarised += 1
                else:
                    rest_sources += 1
                    rest_lines += src.suppressed
                    src.suppressed = 0
            src.window = now
            src.logged = 0
            if self._decayed(src, now) < _FORGET_BELOW and src.locked_until <= now and src.next_at <= now:
                del self._sources[key]
        if rest_sources:
            log.warning("%d more refusals from %d other sources suppressed", rest_lines, rest_sources)
        self._tls_log.flush(now)

    async def _pause(self, seconds: float) -> None:
        self.delayed_seconds += seconds
        if self._sleep is not None:
            res = self._sleep(seconds)
            if asyncio.iscoroutine(res):
                await res
        else:
            await asyncio.sleep(seconds)

    # -- for /metrics -------------------------------------------------------------------------

    def backed_off(self) -> int:
        """Sources whose attempts are delayed now."""
        now = self.clock()
        after = self.policy.backoff_after
        return sum(
            1
            for s in self._sources.values()
            if not s.exempt and s.locked_until <= now and (s.next_at > now or self._decayed(s, now) > after)
        )

    def locked_out(self) -> int:
        now = self.clock()
        return sum(1 for s in self._sources.values() if s.locked_until > now)

    def tracked(self) -> int:
        return len(self._sources)

    @staticmethod
    def labelled(counter: Counter[tuple[str, str]]) -> Iterable[tuple[tuple[str, str], float]]:
        return [(k, float(v)) for k, v in sorted(counter.items())]


class _RateLog:
    """Per key: the first ``per_key`` lines per ``interval`` pass, the rest are counted and
    summarised on :meth:`flush` (or when the key's next window starts)."""

    __slots__ = ("_keys", "interval", "per_key")

    def __init__(self, per_key: int, interval: float) -> None:
        self.per_key = per_key
        self.interval = interval
        self._keys: OrderedDict[str, list[float]] = OrderedDict()  # key -> [window start, logged, suppressed]

    def allow(self, key: str, now: float) -> bool:
        entry = self._keys.get(key)
        if entry is None:
            if len(self._keys) >= 10_000:
                self._keys.popitem(last=False)
            entry = self._keys[key] = [now, 0.0, 0.0]
        if now - entry[0] >= self.interval:
            self._emit(key, entry)
            entry[0], entry[1] = now, 0.0
        if entry[1] < self.per_key:
            entry[1] += 1
            return True
        entry[2] += 1
        return False

    @staticmethod
    def _emit(key: str, entry: list[float]) -> None:
        if entry[2]:
            log.warning("%d more refused TLS handshakes from %s suppressed", int(entry[2]), key)
            entry[2] = 0.0

    def flush(self, now: float) -> None:
        for key in list(self._keys):
            entry = self._keys[key]
            self._emit(key, entry)
            if now - entry[0] >= self.interval:
                del self._keys[key]


def policy_from(settings: Settings) -> GuardPolicy:
    """The guard's policy from the ``guard_*`` settings."""
    s = settings
    return GuardPolicy(
        backoff_after=s.guard_backoff_after,
        backoff_base=s.guard_backoff_base,
        backoff_max=s.guard_backoff_max,
        half_life=s.guard_decay_half_life,
        lockout_after=s.guard_lockout_after,
        lockout_seconds=s.guard_lockout_minutes * 60.0,
        max_sources=s.guard_max_sources,
        ipv4_prefix=s.guard_ipv4_prefix,
        ipv6_prefix=s.guard_ipv6_prefix,
        exempt=tuple(s.guard_exempt_networks),
        log_per_source=s.guard_log_per_source,
        log_interval=s.guard_log_interval,
    )
