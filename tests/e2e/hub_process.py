"""``gatehub serve`` as a separate process, started the way README.md tells a user to.

:class:`HubProcess` writes a TOML config file (free ports on 127.0.0.1 for every listener, a
fresh data dir), runs the ``gatehub`` console script of this virtualenv with ``--config`` on the
default event loop (uvloop), waits for ``/healthz``, reads the admin key the hub wrote, and
stops the process with SIGTERM, asserting a clean exit. It also runs the real CLI against the
same config and offers a REST client with the admin key (see ``tests/e2e/conftest.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

GATEHUB = Path(sys.executable).parent / "gatehub"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
CLI_TIMEOUT = 60.0


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port the kernel considers free on 127.0.0.1 now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Ports:
    http: int
    iotda: int
    mqtt: int
    mqtts: int
    grpc: int
    stream: int
    stream_tls: int

    @classmethod
    def pick(cls) -> Ports:
        seen: set[int] = set()
        values = []
        for _ in range(7):
            p = free_port()
            while p in seen:
                p = free_port()
            seen.add(p)
            values.append(p)
        return cls(*values)


class CliError(AssertionError):
    pass


class HubProcess:
    """One ``gatehub serve`` process (see the module docstring)."""

    def __init__(self, root: Path, **settings: Any) -> None:
        self.root = root
        self.data_dir = root / "var"
        self.config = root / "hub.toml"
        self.stdout_path = root / "hub.stdout"
        self.stderr_path = root / "hub.stderr"
        self.ports = Ports.pick()
        self.settings: dict[str, Any] = {
            "data_dir": str(self.data_dir),
            "bind_host": "127.0.0.1",
            "http_port": self.ports.http,
            "iotda_port": self.ports.iotda,
            "mqtt_port": self.ports.mqtt,
            "mqtts_port": self.ports.mqtts,
            "grpc_port": self.ports.grpc,
            "devicelink_stream_port": self.ports.stream,
            "devicelink_stream_tls_port": self.ports.stream_tls,
            # device links: 0..0 = each link on a port the kernel picks (a fixed range could be taken)
            "devicelink_port_min": 0,
            "devicelink_port_max": 0,
            "log_level": "info",
        }
        self.settings.update(settings)
        self.proc: subprocess.Popen[bytes] | None = None
        self.admin_key = ""
        self.certs = root / "certs"
        self._rest: httpx.Client | None = None
        self.stop_seconds = 0.0  # SIGTERM to exit, set by stop()

    # --- files -------------------------------------------------------------------------------
    def write_config(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        lines = [f"{k} = {_toml(v)}" for k, v in self.settings.items()]
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports.http}"

    @property
    def ca_file(self) -> Path:
        return self.certs / "ca.crt"

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace") if self.stderr_path.exists() else ""

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace") if self.stdout_path.exists() else ""

    # --- the process -------------------------------------------------------------------------
    def start(self, attempts: int = 3) -> None:
        """Start and wait for ``/healthz``. Free ports are found by binding port 0 and releasing
        it, so another process on this machine can take one before the hub binds it: the hub
        then exits with "address already in use" and is started again on new ports."""
        for attempt in range(1, attempts + 1):
            self.write_config()
            if self._start_once():
                break
            if attempt == attempts or "address already in use" not in self.stderr().lower():
                raise AssertionError(f"gatehub serve exited with {self._exit_code()}:\n{self.stderr()[-4000:]}")
            self.ports = Ports.pick()
            for name in ("http", "iotda", "mqtt", "mqtts", "grpc"):
                self.settings[f"{name}_port"] = getattr(self.ports, name)
            self.settings["devicelink_stream_port"] = self.ports.stream
            self.settings["devicelink_stream_tls_port"] = self.ports.stream_tls
        key_file = self.data_dir / "admin.key"
        self.admin_key = key_file.read_text(encoding="ascii").strip()
        assert key_file.stat().st_mode & 0o777 == 0o600, oct(key_file.stat().st_mode)

    def _exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    def _start_once(self) -> bool:
        """True once ``/healthz`` answers; False when the process exited first."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHUB_")}
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [str(GATEHUB), "serve", "--config", str(self.config)],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
                env=env,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                return False
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return True
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"no /healthz within {START_TIMEOUT} s:\n{self.stderr()[-4000:]}")
            time.sleep(0.1)

    def stop(self) -> int:
        """SIGTERM; the exit code (the process is killed after STOP_TIMEOUT and that fails)."""
        if self._rest is not None:
            self._rest.close()
            self._rest = None
        proc = self.proc
        assert proc is not None
        if proc.poll() is None:
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"gatehub serve still running {STOP_TIMEOUT} s after SIGTERM") from None
            self.stop_seconds = time.monotonic() - started
        return proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def assert_clean_exit(self, code: int) -> None:
        err = self.stderr()
        assert code == 0, f"gatehub serve exited with {code}:\n{err[-4000:]}"
        assert "Traceback" not in err, err[-8000:]

    # --- the CLI -----------------------------------------------------------------------------
    def cli(self, *args: str, json_out: bool = True, check: bool = True) -> Any:
        """``gatehub ARGS --config hub.toml [--json]``: the parsed JSON (or the output text)."""
        cmd = [str(GATEHUB), *args, "--config", str(self.config)]
        if json_out:
            cmd.append("--json")
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=CLI_TIMEOUT, cwd=self.root)
        if check and r.returncode != 0:
            raise CliError(f"{' '.join(cmd)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
        if not json_out or not check:
            return r
        return json.loads(r.stdout)

    # --- REST --------------------------------------------------------------------------------
    @property
    def rest(self) -> httpx.Client:
        """A REST client with the system admin key (synchronous: the hub is another process)."""
        if self._rest is None:
            self._rest = httpx.Client(
                base_url=self.url + "/api/v1", headers={"Authorization": f"Bearer {self.admin_key}"}, timeout=30
            )
        return self._rest

    def api(self, method: str, path: str, expect: int = 200, **kw: Any) -> Any:
        r = self.rest.request(method, path, **kw)
        assert r.status_code == expect, f"{method} {path} -> {r.status_code}: {r.text}"
        return r.json() if r.content else None

    def async_rest(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url + "/api/v1", headers={"Authorization": f"Bearer {self.admin_key}"}, timeout=30
        )

    # --- provisioning ------------------------------------------------------------------------
    def tenant(self, tenant_id: str) -> dict[str, Any]:
        out: dict[str, Any] = self.cli("tenant", "create", tenant_id)
        return out

    def product(self, tenant: str, product_id: str, node_type: str = "direct", **fields: Any) -> dict[str, Any]:
        if not fields:
            out: dict[str, Any] = self.cli(
                "product", "create", product_id, "--tenant", tenant, "--node-type", node_type
            )
            return out
        body = {"id": product_id, "nodeType": node_type, **fields}
        out = self.api("POST", "/products", 201, params={"tenantId": tenant}, json=body)
        return out

    def gateway(self, tenant: str, gateway_id: str, product: str, token: str) -> dict[str, Any]:
        out: dict[str, Any] = self.cli(
            "gateway",
            "create",
            gateway_id,
            "--tenant",
            tenant,
            "--product",
            product,
            "--id",
            gateway_id,
            "--token",
            token,
        )
        return out

    def device(
        self, tenant: str, device_id: str, product: str, *, parent: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": device_id, "id": device_id, "productId": product, **fields}
        if parent is not None:
            body["parentId"] = parent
        out: dict[str, Any] = self.api("POST", "/devices", 201, params={"tenantId": tenant}, json=body)
        return out

    def find_device(self, tenant: str, name: str) -> dict[str, Any] | None:
        items = self.api("GET", "/devices", params={"tenantId": tenant, "namePrefix": name})["items"]
        for d in items:
            if d["name"] == name:
                return d  # type: ignore[no-any-return]
        return None

    def telemetry(self, device_id: str, keys: str) -> dict[str, Any]:
        out: dict[str, Any] = self.api("GET", f"/devices/{device_id}/telemetry", params={"keys": keys})
        return out

    def gateway_cert(self, tenant: str, gateway_id: str) -> tuple[Path, Path, int]:
        """``gatehub cert gateway``: (certificate file, key file, serial)."""
        out = self.cli("cert", "gateway", gateway_id, "--tenant", tenant, "--out", str(self.certs))
        return self.certs / f"{gateway_id}.crt", self.certs / f"{gateway_id}.key", int(out["serialNO"])

    def client_tls(self, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
        """A client context that trusts the hub CA (and presents ``cert``/``key`` if given)."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        if cert is not None:
            ctx.load_cert_chain(str(cert), str(key) if key else None)
        return ctx


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return json.dumps(str(v))


def wait_until(check: Any, timeout: float = 15.0, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(interval)
