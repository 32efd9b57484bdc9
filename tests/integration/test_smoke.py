from __future__ import annotations

from tests.conftest import RunningHub


async def test_healthz_and_first_key(hub: RunningHub) -> None:
    r = await hub.client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    key_file = hub.node.settings.admin_key_path
    assert key_file.stat().st_mode & 0o777 == 0o600
