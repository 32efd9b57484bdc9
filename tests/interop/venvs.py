"""Virtualenvs of the real third-party clients, each of its own, created once and cached.

A client (``tb-mqtt-client``, ``thingsboard-gateway``) is installed into ``.venv-interop/<name>``
(gitignored; ``GATEHUB_INTEROP_DIR`` moves it) from its lock, ``locks/<name>.txt``: the whole
dependency tree at exact versions with hashes (``pip --require-hashes --no-deps``), so an upstream
release cannot change what a test runs against. The direct pins are in ``locks/<name>.in``;
``make lock-interop`` rewrites the ``.txt`` files from them (a deliberate change). Scripts run in
the venv as subprocesses, never imported into the test process. Pre-installs follow PROTOCOLS.md: both
clients pip-install missing modules at import time, so those are installed here first.
Scripts get a clean environment: no proxy to the outside (HTTPS_PROXY points at a closed
loopback port), and none of the variables that silently override thingsboard-gateway's config.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("GATEHUB_INTEROP_DIR", ROOT / ".venv-interop"))

LOCKS = Path(__file__).resolve().parent / "locks"
CLIENTS = sorted(p.stem for p in LOCKS.glob("*.in"))
OVERRIDING_ENV = ("host", "port", "type", "accessToken", "username", "password", "caCert", "privateKey", "cert")


def _base_python() -> str:
    return getattr(sys, "_base_executable", None) or sys.executable


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


_PIN = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+)", re.MULTILINE)


def _pins(text: str) -> dict[str, str]:
    return {m.group(1).lower().replace("_", "-"): m.group(2) for m in _PIN.finditer(text)}


def locked_requirements(name: str) -> str:
    """The text of client ``name``'s lock, after checking that it holds each pin of its ``.in``."""
    source, lock = LOCKS / f"{name}.in", LOCKS / f"{name}.txt"
    if not lock.exists():
        raise RuntimeError(f"{lock} is missing: run 'make lock-interop'")
    text = lock.read_text()
    locked = _pins(text)
    stale = [f"{n}=={v}" for n, v in _pins(source.read_text()).items() if locked.get(n) != v]
    if stale:
        raise RuntimeError(f"{lock.name} does not match {source.name} ({', '.join(stale)}): run 'make lock-interop'")
    return text


def ensure_venv(name: str, timeout: float = 900.0) -> Path:
    """The python of client ``name``'s virtualenv, created and installed from its lock on first use
    (made anew when the lock changes). When the packages cannot be installed the test is skipped
    with the reason, or fails under CI."""
    want = locked_requirements(name)
    venv = CACHE / name
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    with _lock(CACHE / f".{name}.lock"):
        if stamp.exists() and stamp.read_text() == want and python.exists():
            return python
        try:
            if venv.exists():
                shutil.rmtree(venv)
            subprocess.run([_base_python(), "-m", "venv", str(venv)], check=True, timeout=120)
            subprocess.run(
                [
                    str(python),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    "--no-deps",
                    "--require-hashes",
                    "-r",
                    str(LOCKS / f"{name}.txt"),
                ],
                check=True,
                timeout=timeout,
                capture_output=True,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            out = getattr(exc, "stderr", b"") or b""
            why = f"could not install {name} from {name}.txt: {out.decode(errors='replace')[-500:]}"
            if os.environ.get("CI"):  # in CI the interop evidence is required, never skipped
                pytest.fail(why)
            pytest.skip(why)
        stamp.write_text(want)
    return python


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def client_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OVERRIDING_ENV and not k.lower().endswith("_proxy")}
    dead = f"http://127.0.0.1:{closed_port()}"
    env.update({"HTTPS_PROXY": dead, "https_proxy": dead, "HTTP_PROXY": dead, "http_proxy": dead})
    env["NO_PROXY"] = env["no_proxy"] = ""
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONPATH", None)
    env.update(extra or {})
    return env


def start_script(
    name: str, script: str, args: list[str], cwd: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Run ``script`` (source text) with client ``name``'s python; stdout/stderr go to files in cwd."""
    python = ensure_venv(name)
    cwd.mkdir(parents=True, exist_ok=True)
    path = cwd / "client_script.py"
    path.write_text(script)
    out = (cwd / "stdout.txt").open("wb")
    err = (cwd / "stderr.txt").open("wb")
    return subprocess.Popen([str(python), str(path), *args], cwd=cwd, stdout=out, stderr=err, env=client_env(extra_env))


if __name__ == "__main__":  # python -m tests.interop.venvs [name ...]: prepare the venvs ahead of a test run
    for n in sys.argv[1:] or CLIENTS:
        print(n, ensure_venv(n))
