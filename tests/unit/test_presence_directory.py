"""The session directory: which session serves a client or a device, takeover, events."""

from __future__ import annotations

from gatehub.services.presence import PresenceEvent, SessionDirectory, SessionHandle


class Handle:
    """A transport's session as the directory sees it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False
        self.evicted: list[str] = []

    def evict(self, reason: str) -> None:
        self.evicted.append(reason)
        self.closed = True

    def __repr__(self) -> str:
        return f"Handle({self.name})"


def _handle(name: str) -> Handle:
    h = Handle(name)
    _: SessionHandle = h  # satisfies the protocol
    return h


async def test_bind_and_lookup_by_client_and_device() -> None:
    d = SessionDirectory(clock=lambda: 42.0)
    h = _handle("a")
    displaced = d.bind(h, tenant_id="t1", client_id="c1", device_id="dev1", transport="mqtt")
    assert displaced.client is None and displaced.device is None
    assert d.local_client("t1", "c1") is h
    assert d.local_device("dev1") is h
    assert d.local_client("t2", "c1") is None  # client ids live inside their tenant
    entry = await d.find_device("dev1")
    assert entry is not None and entry.handle is h
    assert (entry.tenant_id, entry.client_id, entry.device_id, entry.transport, entry.since) == (
        "t1",
        "c1",
        "dev1",
        "mqtt",
        42.0,
    )
    assert entry.key == ("t1", "c1")
    assert await d.find_client("t1", "c1") == entry
    assert await d.find_client("t1", "nope") is None and await d.find_device("nope") is None
    assert d.count() == 1 and d.count("mqtt") == 1 and d.count("grpc") == 0


async def test_anonymous_session_has_no_device_key() -> None:
    d = SessionDirectory()
    h = _handle("anon")
    d.bind(h, tenant_id="t1", client_id="c1", transport="mqtt")
    assert d.local_client("t1", "c1") is h
    assert dict(d.devices) == {}


async def test_takeover_of_the_client_key_replaces_the_old_handle() -> None:
    d = SessionDirectory()
    old, new = _handle("old"), _handle("new")
    d.bind(old, tenant_id="t1", client_id="c1", device_id="dev1", transport="mqtt")
    displaced = d.bind(new, tenant_id="t1", client_id="c1", device_id="dev1", transport="mqtt")
    assert displaced.client is old and displaced.device is None  # old left with both its keys
    assert d.local_client("t1", "c1") is new and d.local_device("dev1") is new
    assert d.count() == 1
    # the old handle's late unbind changes nothing
    assert d.unbind(old) is None
    assert d.local_client("t1", "c1") is new and d.local_device("dev1") is new


async def test_takeover_of_a_device_by_another_client_id() -> None:
    d = SessionDirectory()
    old, new = _handle("old"), _handle("new")
    d.bind(old, tenant_id="t1", client_id="c-old", device_id="dev1", transport="mqtt")
    displaced = d.bind(new, tenant_id="t1", client_id="c-new", device_id="dev1", transport="mqtt")
    assert displaced.client is None and displaced.device is old
    assert d.local_device("dev1") is new
    # the old connection keeps its client key until its transport unbinds it
    assert d.local_client("t1", "c-old") is old
    entry = d.unbind(old)
    assert entry is not None and entry.handle is old
    assert d.local_client("t1", "c-old") is None
    assert d.local_device("dev1") is new  # unbinding the old one leaves the new one
    assert d.local_client("t1", "c-new") is new


async def test_unbind_removes_only_that_handle() -> None:
    d = SessionDirectory()
    a, b, stranger = _handle("a"), _handle("b"), _handle("stranger")
    d.bind(a, tenant_id="t1", client_id="c1", device_id="dev1", transport="mqtt")
    d.bind(b, tenant_id="t1", client_id="c2", device_id="dev2", transport="mqtt")
    assert d.unbind(stranger) is None
    assert d.count() == 2
    assert d.unbind(a) is not None
    assert d.local_client("t1", "c1") is None and d.local_device("dev1") is None
    assert d.local_client("t1", "c2") is b and d.local_device("dev2") is b
    assert d.unbind(a) is None  # twice is harmless
    assert d.count() == 1 and d.count("mqtt") == 1


async def test_rebinding_a_handle_moves_it() -> None:
    d = SessionDirectory()
    h = _handle("h")
    d.bind(h, tenant_id="t1", client_id="c1", device_id="dev1", transport="mqtt")
    displaced = d.bind(h, tenant_id="t1", client_id="c1", device_id="dev2", transport="mqtt")
    assert displaced.client is None and displaced.device is None  # not displaced by itself
    assert d.local_device("dev1") is None and d.local_device("dev2") is h
    assert d.count() == 1


async def test_listing_per_tenant_and_transport() -> None:
    d = SessionDirectory()
    a, b, c, closing = _handle("a"), _handle("b"), _handle("c"), _handle("closing")
    d.bind(a, tenant_id="t1", client_id="c1", device_id="d1", transport="mqtt")
    d.bind(b, tenant_id="t2", client_id="c1", device_id="d2", transport="mqtt")
    d.bind(c, tenant_id="t1", client_id="c2", transport="grpc")
    d.bind(closing, tenant_id="t1", client_id="c3", transport="mqtt")
    closing.closed = True  # its transport has not unbound it yet: no longer listed or found
    assert [e.handle for e in await d.sessions("t1")] == [a, c]
    assert [e.handle for e in await d.sessions("t2")] == [b]
    assert [e.handle for e in await d.sessions()] == [a, b, c]
    assert [e.handle for e in await d.sessions("t1", transport="mqtt")] == [a]
    assert await d.sessions("t3") == []
    assert await d.find_client("t1", "c3") is None
    assert d.local_client("t1", "c3") is closing  # the local read is raw


async def test_evict_ends_the_session_through_its_handle() -> None:
    d = SessionDirectory()
    h = _handle("h")
    d.bind(h, tenant_id="t1", client_id="c1", transport="mqtt")
    assert await d.evict("t1", "c1", "operator said so")
    assert h.evicted == ["operator said so"]
    assert not await d.evict("t1", "c1", "again")  # closed now: nothing to end
    assert not await d.evict("t1", "nobody", "x")


async def test_events_for_bind_and_unbind() -> None:
    d = SessionDirectory()
    seen: list[PresenceEvent] = []
    stop = d.watch(seen.append)

    def broken(_: PresenceEvent) -> None:
        raise RuntimeError("a listener that fails does not stop the others")

    d.watch(broken)
    old, new = _handle("old"), _handle("new")
    d.bind(old, tenant_id="t1", client_id="c1", device_id="dev1", transport="mqtt")
    d.bind(new, tenant_id="t1", client_id="c1", device_id="dev1", transport="mqtt")
    d.unbind(new)
    assert [(e.kind, e.subject) for e in seen] == [
        ("bound", "t.t1.presence.bound"),
        ("unbound", "t.t1.presence.unbound"),  # the taken-over one
        ("bound", "t.t1.presence.bound"),
        ("unbound", "t.t1.presence.unbound"),
    ]
    assert seen[0].data() == {"tenantId": "t1", "clientId": "c1", "deviceId": "dev1", "transport": "mqtt"}
    stop()
    d.bind(old, tenant_id="t1", client_id="c1", transport="mqtt")
    assert len(seen) == 4
