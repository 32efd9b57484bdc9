"""The agent's reconciliation plan and its state file (real SQLite files)."""

from __future__ import annotations

from pathlib import Path

import orjson

from gatehub.agent.config import OutboxConfig
from gatehub.agent.outbox import Bucket, Outbox, device_rate
from gatehub.agent.state import Credentials, LocalState
from gatehub.agent.topology import plan_after_connect


def test_plan_follows_the_seed() -> None:
    plan = plan_after_connect(
        topo={"a", "b", "c"},  # LocalTopoList
        online={"a": True, "b": False, "d": True, "e": False},  # LocalDevList
        removed={"r"},  # RemovedDevList
        hub={"a", "b", "r", "x"},  # the hub deleted c; x is unknown here
    )
    assert plan.drop == ["c"]
    assert plan.report_online == ["a"]  # b is offline: nothing to report
    assert plan.add == ["d", "e"]  # connected, not proxied (offline ones are added too)
    assert plan.delete == ["r"]
    assert plan.unknown == ["x"]


async def test_lists_and_credentials_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    st = await LocalState.open(path)
    epoch = st.epoch
    await st.save_credentials(Credentials("m1", "meter", "s3cret", "tok", "registered"))
    await st.add_topo("m1", "uid-1", "pm", "meter", "meter_m1")
    await st.add_topo("m2", "uid-2", "pm", "meter", "meter_m2")
    await st.mark_removed("m2", "uid-2")
    await st.close()

    st = await LocalState.open(path)
    assert st.epoch == epoch
    assert list(st.topo) == ["m1"] and list(st.removed) == ["m2"]
    assert st.topo["m1"].credentials is not None and st.topo["m1"].credentials.device_secret == "s3cret"
    await st.drop_topo("m1")
    assert "m1" in st.credentials  # a registered secret outlives the topology entry
    await st.add_topo("m2", "uid-2", "pm", "meter", None)  # back: out of RemovedDevList
    assert list(st.removed) == []
    await st.close()


async def test_outbox_sequence_numbers_are_never_reused(tmp_path: Path) -> None:
    st = await LocalState.open(tmp_path / "s.db")
    a = await st.append(b'{"telemetry":{"d":[{"ts":1,"values":{"x":1}}]}}', {"d": 1}, 1)
    b = await st.append(b'{"telemetry":{"d":[{"ts":2,"values":{"x":2}}]}}', {"d": 1}, 1)
    await st.delete_batches([a, b])  # the newest row is gone too
    c = await st.append(b"{}", {}, 0)
    assert a < b < c
    await st.close()
    st = await LocalState.open(tmp_path / "s.db")
    assert await st.append(b"{}", {}, 0) > c
    await st.close()


async def test_purge_keeps_the_batch_and_its_number(tmp_path: Path) -> None:
    st = await LocalState.open(tmp_path / "s.db")
    box = Outbox(st, OutboxConfig())
    box.add("keep", {"x": 1, "y": 2}, 10)
    box.add("gone", {"x": 3}, 10)
    box.add_attributes("gone", {"fw": "1"})
    await box.flush()
    seq = (await st.next_batches(0, 10))[0].seq
    assert await st.purge({"gone"}) == 2
    [row] = await st.next_batches(0, 10)
    assert row.seq == seq and row.names == {"keep": 2} and row.readings == 2
    assert orjson.loads(row.body) == {"telemetry": {"keep": [{"ts": 10, "values": {"x": 1, "y": 2}}]}}
    wire = orjson.loads(box.payload(row))
    assert wire["epoch"] == st.epoch and wire["seq"] == seq and wire["v"] == 1 and "telemetry" in wire
    assert await st.purge({"keep"}) == 2
    [row] = await st.next_batches(0, 10)
    assert row.body == b"{}" and orjson.loads(box.payload(row)) == {"v": 1, "epoch": st.epoch, "seq": seq}
    await st.close()


def test_session_limits_and_pacing() -> None:
    assert device_rate({"rateLimits": {"telemetryDataPoints": "20000:2"}}) == (10000.0, 20000.0)
    assert device_rate({"rateLimits": {"telemetryDataPoints": "100:1,3000:60"}}) == (50.0, 3000.0)
    assert device_rate({"rateLimits": {"telemetryDataPoints": ""}}) is None
    b = Bucket(1000, 1000)
    assert b.delay(1000) == 0.0
    assert 0.4 < b.delay(500) <= 0.5
