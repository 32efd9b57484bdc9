"""The Alink signature in the MQTT authentication chain, with a real paho client on MQTT 3.1.1
(the Link SDK's version): right signatures are admitted as the device, wrong ones, stale
timestamps and unknown devices are refused with CONNACK 4 (bad user name or password; paho 2 names it 0x86)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gatehub.domain.model import NodeType
from gatehub.protocols import alink
from tests.integration.mqtt_helpers import V311, Paho, eventually, mqtt_node

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


async def test_alink_signature_connects_and_refuses(tmp_path: Path, db_url: str) -> None:
    async with mqtt_node(tmp_path, db_url, mqtt_anonymous_tenant=None) as m:
        st = m.store
        await st.accounts.create_tenant("ali")
        await st.catalog.create_product("ali", "a1GwPk", node_type=NodeType.GATEWAY)
        dev = await st.devices.create("ali", "gw-0001", "a1GwPk", device_id="gw-0001")
        secret = dev.secret

        def creds(
            method: str, ts: str | None, *, name: str = "gw-0001", key: str | None = None
        ) -> tuple[str, str, str]:
            params = f"securemode=3,signmethod={method}" + (f",timestamp={ts}" if ts else "")
            cid = f"a1GwPk&{name}|{params}|"
            pw = alink.sign(key or secret, method, f"a1GwPk&{name}", name, "a1GwPk", ts)
            return cid, f"{name}&a1GwPk", pw

        now_ms = str(int(time.time() * 1000))
        for method, ts in (("hmacsha1", now_ms), ("hmacsha256", str(int(time.time()))), ("hmacmd5", None)):
            cid, user, pw = creds(method, ts)
            with Paho(cid, V311) as c:
                rc, _ = await c.connect(m.port, username=user, password=pw)
                assert rc == 0, method
                await eventually(lambda: m.hub.session_for_device("gw-0001") is not None)
                await c.disconnect()

        refused = [
            creds("hmacsha1", now_ms, key="not-the-secret"),  # wrong signature
            creds("hmacsha1", str(int(time.time() * 1000) - 3_600_000)),  # stale timestamp
            creds("hmacsha1", now_ms, name="ghost"),  # unknown device
        ]
        for cid, user, pw in refused:
            with Paho(cid, V311) as c:
                rc, _ = await c.connect(m.port, username=user, password=pw)
                assert rc == 0x86, (cid, rc)  # 3.1.1 code 4 on the wire; paho 2 reports it as 0x86
