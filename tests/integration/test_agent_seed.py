"""Seed 001's gateway scenarios with the real agent (simulated access network) against a real hub
(MQTT, SQLite and PostgreSQL). Each test asserts the agent's three lists and the hub's topology."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gatehub.agent.drivers.simulator import SimulatorDriver
from gatehub.agent.state import LocalState
from gatehub.domain.model import NodeType, Presence
from tests.integration.agent_helpers import agent_cfg, device, names, running_agent, synced, until
from tests.interop.tbhub import TENANT, TbHub, tb_hub


@pytest.fixture
async def h(tmp_path: Path, db_url: str) -> AsyncIterator[TbHub]:
    async with tb_hub(tmp_path, db_url) as hub:
        yield hub


async def children(h: TbHub) -> dict[str, Presence]:
    return {d.name: d.presence for d in await h.store.devices.children("gw1")}


async def presence(h: TbHub, name: str) -> Presence | None:
    d = await h.store.devices.find_by_name(TENANT, name)
    return d.presence if d is not None else None


def sim(*uids: str) -> SimulatorDriver:
    return SimulatorDriver([device(u) for u in uids], poll_interval=0.1)


async def test_data_up_command_down_offline_and_back_online(h: TbHub, tmp_path: Path) -> None:
    s = SimulatorDriver(
        [device("th-1"), device("valve-1", "valve", setpoint={"kind": "setpoint", "value": 10})], poll_interval=0.1
    )
    async with running_agent(agent_cfg(h.port, tmp_path / "a.db"), s) as agent:
        await synced(agent)
        assert names(agent, "LocalTopoList") == ["th-1", "valve-1"]
        assert names(agent, "LocalDevList") == ["th-1", "valve-1"]
        assert names(agent, "RemovedDevList") == []
        await until(lambda: _is(children(h), {"th-1": Presence.ONLINE, "valve-1": Presence.ONLINE}), what="online")
        th = await h.device("th-1")
        assert (await h.store.catalog.get_product(TENANT, th.product_id)).name == "thermo"

        # data up: the simulated temperature reaches the hub
        pts = await until(lambda: _points(h, th.id, "t", 5), what="readings of th-1")
        assert all(18 <= p["value"] <= 26 for p in pts)

        # command down: an RPC through the REST API reaches the driver, and the reply comes back
        valve = await h.device("valve-1")
        r = await h.http.post(
            f"/api/v1/devices/{valve.id}/rpc", json={"method": "set", "params": {"setpoint": 42}, "timeout": 10000}
        )
        assert r.status_code == 200, r.text
        assert r.json() == {"setpoint": 42}
        assert s.writes[-1] == ("valve-1", "set", {"setpoint": 42})
        await until(lambda: _latest_is(h, valve.id, "setpoint", 42), what="setpoint 42 reported")
        r = await h.http.post(f"/api/v1/devices/{valve.id}/rpc", json={"method": "reboot", "timeout": 10000})
        assert "error" in r.json()

        # a sub-device goes offline: reported offline, still in LocalTopoList
        s.set_online("th-1", False)
        await until(lambda: _presence_is(h, "th-1", Presence.OFFLINE), what="th-1 offline on the hub")
        assert names(agent, "LocalTopoList") == ["th-1", "valve-1"]
        assert [d["online"] for d in agent.lists()["LocalDevList"]] == [False, True]

        # ... and back online
        s.set_online("th-1", True)
        await until(lambda: _presence_is(h, "th-1", Presence.ONLINE), what="th-1 online again")
        assert [d["online"] for d in agent.lists()["LocalDevList"]] == [True, True]


async def test_powered_off_while_a_sub_device_is_deleted_on_the_hub(h: TbHub, tmp_path: Path) -> None:
    state = tmp_path / "a.db"
    async with running_agent(agent_cfg(h.port, state), sim("th-1", "th-2")) as agent:
        await synced(agent)
        assert names(agent, "LocalTopoList") == ["th-1", "th-2"]
    # the gateway is off; a user deletes th-2 on the hub
    th2 = await h.device("th-2")
    assert (await h.http.delete(f"/api/v1/devices/{th2.id}")).status_code == 204

    s = sim("th-1", "th-2")  # power on: the access network still has th-2
    async with running_agent(agent_cfg(h.port, state), s) as agent:
        await synced(agent)
        assert names(agent, "LocalTopoList") == ["th-1"]
        assert names(agent, "LocalDevList") == ["th-1"]
        assert names(agent, "RemovedDevList") == []
        assert s.removed == ["th-2"]  # deleted from the access network too
        await until(lambda: _is(children(h), {"th-1": Presence.ONLINE}), what="hub topology")
        th1 = await h.device("th-1")
        await until(lambda: _points(h, th1.id, "t", 3), what="th-1 still reports")
        assert await h.store.devices.find_by_name(TENANT, "th-2") is None  # not brought back by data


async def test_renamed_on_the_hub_is_not_deleted(h: TbHub, tmp_path: Path) -> None:
    state = tmp_path / "a.db"
    async with running_agent(agent_cfg(h.port, state), sim("th-1", "th-2")) as agent:
        await synced(agent)
    th2 = await h.device("th-2")
    assert (await h.http.patch(f"/api/v1/devices/{th2.id}", json={"name": "boiler"})).status_code == 200
    s = sim("th-1", "th-2")
    async with running_agent(agent_cfg(h.port, state), s) as agent:
        await synced(agent)
        assert names(agent, "LocalTopoList") == ["boiler", "th-1"]
        assert names(agent, "LocalDevList") == ["boiler", "th-1"]
        assert s.removed == []
        await until(lambda: _is(children(h), {"boiler": Presence.ONLINE, "th-1": Presence.ONLINE}), what="topology")
        n = len((await h.points(th2.id)).get("t", []))
        await until(lambda: _points(h, th2.id, "t", n + 3), what="readings of the renamed device, same id")
        assert await h.store.devices.find_by_name(TENANT, "th-2") is None


async def test_cable_pulled_while_a_sub_device_is_deleted_locally(h: TbHub, tmp_path: Path) -> None:
    state = tmp_path / "a.db"
    mqtt = h.node.mqtt
    s = sim("th-1", "th-2")
    async with running_agent(agent_cfg(h.port, state), s) as agent:
        await synced(agent)
        await mqtt.stop_listener("tcp", close_sessions=True)  # the cable is pulled
        await until(lambda: agent.link is None, what="disconnected")
        s.delete("th-2")  # a user deletes th-2 on the gateway's own web page
        await asyncio.wait_for(agent.settled(), 20)
        assert names(agent, "RemovedDevList") == ["th-2"]
        assert names(agent, "LocalTopoList") == ["th-1"]
        assert names(agent, "LocalDevList") == ["th-1"]
        assert "th-2" in await children(h)  # the hub does not know yet
    # RemovedDevList is persistent: it survives a restart of the gateway
    st = await LocalState.open(state)
    assert list(st.removed) == ["th-2"] and list(st.topo) == ["th-1"]
    await st.close()

    await mqtt.start_listener("tcp")  # the cable is back
    async with running_agent(agent_cfg(h.port, state), sim("th-1")) as agent:
        await synced(agent)
        assert names(agent, "RemovedDevList") == []
        assert names(agent, "LocalTopoList") == ["th-1"]
        assert await children(h) == {"th-1": Presence.ONLINE}
        th2 = await h.device("th-2")  # out of the topology, still a device of the hub
        assert th2.parent_id is None and th2.presence is Presence.OFFLINE


async def test_new_sub_device_while_offline(h: TbHub, tmp_path: Path) -> None:
    mqtt = h.node.mqtt
    s = sim("th-1")
    async with running_agent(agent_cfg(h.port, tmp_path / "a.db"), s) as agent:
        await synced(agent)
        await mqtt.stop_listener("tcp", close_sessions=True)
        await until(lambda: agent.link is None, what="disconnected")
        s.add(device("th-3"))
        await asyncio.wait_for(agent.settled(), 20)
        assert names(agent, "LocalDevList") == ["th-1", "th-3"]
        assert names(agent, "LocalTopoList") == ["th-1"]  # not proxied yet
        assert await h.store.devices.find_by_name(TENANT, "th-3") is None
        await until(lambda: agent.outbox.readings_in > 20, what="readings while offline")

        await mqtt.start_listener("tcp")
        await synced(agent)
        assert names(agent, "LocalTopoList") == ["th-1", "th-3"]
        await until(lambda: _is(children(h), {"th-1": Presence.ONLINE, "th-3": Presence.ONLINE}), what="th-3 added")
        th3 = await h.device("th-3")
        await until(lambda: _points(h, th3.id, "t", 10), what="readings of th-3, taken offline too")


async def test_sub_device_deleted_on_the_hub_while_connected(h: TbHub, tmp_path: Path) -> None:
    s = sim("th-1", "th-2")
    async with running_agent(agent_cfg(h.port, tmp_path / "a.db"), s) as agent:
        await synced(agent)
        th2 = await h.device("th-2")
        assert (await h.http.patch(f"/api/v1/devices/{th2.id}", json={"parentId": None})).status_code == 200
        await until(lambda: names(agent, "LocalTopoList") == ["th-1"], what="the pushed change applied")
        assert names(agent, "LocalDevList") == ["th-1"] and s.removed == ["th-2"]
        assert await children(h) == {"th-1": Presence.ONLINE}


async def test_credentials_dynamic_registration_once(h: TbHub, tmp_path: Path) -> None:
    st = h.store
    prod = await st.catalog.create_product(TENANT, "meter", "meter", NodeType.SUBDEVICE, dynamic_register=True)
    await st.devices.create(TENANT, "MT-1", "meter")  # pre-registered (whitelist)
    await st.catalog.create_product(TENANT, "valve", "valve", NodeType.SUBDEVICE)
    extra = {
        "credentials": {
            "models": {
                "pm1": {"product_key": "meter", "product_secret": prod.secret, "dynamic_register": True},
                "v2": {"product_key": "valve"},
            },
            "devices": [{"uid": "00:11", "name": "valve-7"}],
        }
    }
    state = tmp_path / "a.db"
    devices = [device("MT-1", "pm1"), device("MT-9", "pm1"), device("00:11", "v2")]
    async with running_agent(agent_cfg(h.port, state, **extra), SimulatorDriver(devices, 0.1)) as agent:
        await synced(agent)
        assert names(agent, "LocalTopoList") == ["MT-1", "valve-7"]  # MT-9 is not whitelisted
        refused = {d["name"]: d["refused"] for d in agent.lists()["LocalDevList"]}
        assert refused["MT-9"] and "not_registered" in refused["MT-9"]
        mt1 = await h.device("MT-1")
        cred = agent.state.credentials["MT-1"]
        assert cred.device_secret == mt1.secret and cred.source == "registered" and mt1.secret_delivered
        assert mt1.parent_id == "gw1" and (await h.device("valve-7")).product_id == "valve"
        await until(lambda: _points(h, mt1.id, "t", 3), what="MT-1 data")
        assert await st.devices.find_by_name(TENANT, "MT-9") is None  # its readings did not create it
    # after a restart the stored secret is used: no second registration (the hub would refuse it)
    async with running_agent(agent_cfg(h.port, state, **extra), SimulatorDriver(devices, 0.1)) as agent:
        await synced(agent)
        assert names(agent, "LocalTopoList") == ["MT-1", "valve-7"]
        assert agent.state.credentials["MT-1"].device_secret == mt1.secret


async def _is(coro: object, want: dict[str, Presence]) -> bool:
    return await coro == want  # type: ignore[misc]


async def _presence_is(h: TbHub, name: str, want: Presence) -> bool:
    return await presence(h, name) is want


async def _points(h: TbHub, device_id: str, key: str, n: int) -> list[dict[str, object]] | None:
    pts = (await h.points(device_id)).get(key, [])
    return pts if len(pts) >= n else None


async def _latest_is(h: TbHub, device_id: str, key: str, value: object) -> bool:
    latest = await h.store.data.latest(device_id, [key])
    return bool(latest.get(key) and latest[key]["value"] == value)
