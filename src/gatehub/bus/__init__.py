"""The bus: every cross-component event travels here.

Subjects are dot-separated tokens, NATS style, so that a NATS implementation can replace the
in-process one without changing callers; ``*`` matches one token and ``>`` the rest:

    t.{tenant}.status.{device}         presence changes   {"deviceId", "kind", "presence", "ts", ...}
    t.{tenant}.telemetry.{device}      committed points   {"deviceId", "data": {key: [[ts, value], ...]}}
    t.{tenant}.attributes.{device}     attribute changes  {"deviceId", "scope", "data": {...}, "deleted": [...]}
    t.{tenant}.topology.{gateway}      topology changes   {"gatewayId", "version", "added": [...], "removed": [...]}
    t.{tenant}.rpc.{device}            RPC requests for the session serving the device
    t.{tenant}.message.{device}        device messages (message log)

Messages are dicts of JSON-able values. ``request`` / ``serve`` give request-reply with a
timeout. Subscribers read from a bounded queue; a subscriber that falls behind is marked
``overflowed`` and closed instead of stalling the publisher or other subscribers.
"""

from gatehub.bus.base import Bus, Message, Subscription, subject_matches
from gatehub.bus.local import LocalBus

__all__ = ["Bus", "LocalBus", "Message", "Subscription", "subject_matches"]
