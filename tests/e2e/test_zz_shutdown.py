"""Runs after every other e2e test (see conftest.py): the shared hub stops on SIGTERM, cleanly."""

from __future__ import annotations

from tests.e2e.hub_process import HubProcess


def test_zz_clean_exit(e2e_hub: HubProcess) -> None:
    assert e2e_hub.proc is not None and e2e_hub.proc.poll() is None, "the hub died during the tests"
    code = e2e_hub.stop()
    e2e_hub.assert_clean_exit(code)
    assert e2e_hub.stop_seconds < 5.0, e2e_hub.stop_seconds
