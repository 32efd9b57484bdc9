"""End-to-end tests: a real ``gatehub serve`` process and real clients.

What ships is tested here the way a user runs it: the ``gatehub`` console script of this
virtualenv, a TOML file passed with ``--config``, a fresh data dir, free ports on 127.0.0.1 for
every listener, the default event loop (uvloop), stdout/stderr to files in the test's folder.
The in-process suite (``tests/integration``) cannot see a defect of the process, its config
handling, its loop or its shutdown; these tests can.

The fixture for later issues
----------------------------
``e2e_hub`` (session scope) is a started :class:`tests.e2e.hub_process.HubProcess`:

- ``.ports`` (``http``, ``iotda``, ``mqtt``, ``mqtts``, ``grpc``, ``stream``, ``stream_tls``),
  ``.url``, ``.config`` (the TOML file), ``.data_dir``, ``.certs`` (PEM files written by the CLI;
  ``ca.crt`` is the hub CA, ``admin.crt``/``admin.key`` the G-SDK admin certificate that
  ``gatehub cert init`` made before the first start), ``.admin_key``;
- ``.cli(*args)``: runs ``gatehub ARGS --config hub.toml --json`` and returns the parsed JSON
  (``json_out=False`` for the CompletedProcess);
- ``.rest`` (an ``httpx.Client`` on ``/api/v1`` with the admin key), ``.api(method, path,
  expect, **kw)``, ``.async_rest()``;
- provisioning: ``.tenant(id)`` and ``.gateway(...)`` with the CLI, ``.product(...)`` with the CLI
  (or REST when it needs fields the CLI lacks), ``.device(...)`` with REST (it can set a secret),
  ``.gateway_cert(tenant, gw)`` with ``gatehub cert gateway``, ``.client_tls(cert, key)``.

Tests share the one hub, so each uses its own tenant (``unique("name")``). At the end of the
session the hub gets SIGTERM and must exit 0 within a few seconds with no ``Traceback`` in its
stderr (``test_zz_clean_exit`` checks it early in the same session too, so the failure is a
test's failure, not a teardown error). A test that needs a hub of its own (other settings, a
restart) makes a ``HubProcess(tmp_path / "hub", **settings)`` and calls ``start()``/``stop()``.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.hub_process import HubProcess

_ids = itertools.count(1)


def unique(name: str) -> str:
    return f"{name}-{next(_ids)}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The clean-exit check stops the shared hub: it goes right after the last other e2e test
    (not at the end of the whole run, so the hub does not outlive the e2e part)."""
    last = [i for i in items if i.name == "test_zz_clean_exit"]
    if not last:
        return
    rest = [i for i in items if i.name != "test_zz_clean_exit"]
    e2e = [n for n, i in enumerate(rest) if "tests/e2e/" in i.nodeid or i.nodeid.startswith("e2e/")]
    at = e2e[-1] + 1 if e2e else len(rest)
    items[:] = rest[:at] + last + rest[at:]


@pytest.fixture(scope="session")
def e2e_hub() -> Iterator[HubProcess]:
    root = Path(tempfile.mkdtemp(prefix="gatehub-e2e-", dir=os.environ.get("GATEHUB_TEST_TMP")))
    hub = HubProcess(root)
    hub.write_config()
    # as docs/master-gateway.md sets up a master gateway: the CA and the admin certificate first
    hub.cli("cert", "init", "--out", str(hub.certs))
    hub.start()
    try:
        yield hub
    finally:
        if hub.proc is not None and hub.proc.returncode is None:
            code = hub.stop()
            hub.assert_clean_exit(code)
