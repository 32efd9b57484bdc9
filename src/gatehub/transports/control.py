"""The hub's control socket: a UNIX socket in the data folder through which a command-line
process on the same machine tells the running hub that the database changed.

``gatehub cert blacklist add`` writes the blacklist to the database (the source of truth) and
then connects to ``{data_dir}/hub.sock``, sends one line naming what changed (``blacklist``) and
waits for the hub's answer: the hub re-reads that part of the database, applies it (closing the
revoked sessions) and answers ``ok``. The message carries no data, only "look again", so a lost
or refused message costs nothing but time: the hub's poll (``pki_blacklist_poll``) remains the
fallback, and is how changes made on another machine (nodes sharing a PostgreSQL database)
arrive.

Why a socket in the data folder rather than the REST API or a store notification: it works the
same on SQLite and PostgreSQL; it needs no port, host, TLS or API key to be known (the REST port
may be 0 = any free port); it reaches exactly the hub that uses this data folder; and the
folder's permissions already decide who may manage the hub. The socket is mode 0600.

This module imports only the standard library: the CLI loads it for every blacklist command.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

__all__ = ["SOCKET_NAME", "ControlServer", "notify", "socket_path"]

log = logging.getLogger(__name__)

SOCKET_NAME = "hub.sock"
_MAX_PATH = 107  # sun_path holds 108 bytes with the terminating NUL (Linux)
_MAX_LINE = 64


def socket_path(data_dir: Path) -> Path | None:
    """The control socket of the hub using ``data_dir``; None if the path is too long for a
    UNIX socket (then only the poll carries changes)."""
    path = data_dir.absolute() / SOCKET_NAME
    return path if len(os.fsencode(path)) <= _MAX_PATH else None


def _alive(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(os.fspath(path))
        except OSError:
            return False
    return True


class ControlServer:
    """Answers ``TOPIC\\n`` with ``ok\\n`` after ``handlers[TOPIC]()`` ran, ``error: ...\\n`` if it
    failed or the topic is unknown. Calls for one topic run one at a time."""

    def __init__(self, data_dir: Path, handlers: Mapping[str, Callable[[], Awaitable[object]]]) -> None:
        self.path = socket_path(data_dir)
        self._handlers = dict(handlers)
        self._locks = {name: asyncio.Lock() for name in handlers}
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None

    async def start(self) -> bool:
        """Listen; False (with a warning) if another live hub owns the socket or it cannot be made."""
        path = self.path
        if path is None:
            log.warning("the data folder path is too long for a UNIX socket: CLI changes arrive by polling only")
            return False
        if path.exists() or path.is_symlink():
            if await asyncio.to_thread(_alive, path):
                log.warning("another hub answers on %s: CLI changes reach that one at once, this one by polling", path)
                return False
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # left by a hub that did not stop cleanly
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._server = await asyncio.start_unix_server(self._serve, path=os.fspath(path))
            os.chmod(path, 0o600)
            self._inode = path.stat().st_ino
        except OSError as exc:
            log.warning("cannot listen on %s (%s): CLI changes arrive by polling only", path, exc)
            await self.stop()
            return False
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            topic = line[:_MAX_LINE].decode("ascii", "replace").strip()
            handler = self._handlers.get(topic)
            if handler is None:
                answer = f"error: unknown topic {topic!r}\n"
            else:
                try:
                    async with self._locks[topic]:
                        await handler()
                    answer = "ok\n"
                except Exception as exc:
                    log.warning("applying a %s change announced on the control socket failed: %s", topic, exc)
                    answer = f"error: {exc}\n"
            writer.write(answer.encode("utf-8", "replace"))
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        path = self.path
        if path is not None and self._inode is not None:
            with contextlib.suppress(OSError):
                if path.stat().st_ino == self._inode:  # ours, not a successor's
                    path.unlink()
            self._inode = None


def notify(data_dir: Path, topic: str, timeout: float = 10.0) -> str | None:
    """Tell the hub using ``data_dir`` that ``topic`` changed in the database and wait until it
    applied the change: None when it did or when no hub runs; otherwise what went wrong (the
    hub's poll will still pick the change up)."""
    path = socket_path(data_dir)
    if path is None or not path.exists():
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(os.fspath(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return None  # a socket left by a hub that stopped: none runs
        except OSError as exc:
            return f"cannot reach the running hub on {path}: {exc}"
        try:
            s.sendall(topic.encode("ascii") + b"\n")
            answer = b""
            while not answer.endswith(b"\n") and len(answer) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            return f"the running hub did not confirm within {timeout:g} s"
        except OSError as exc:
            return f"the running hub did not confirm: {exc}"
    text = answer.decode("utf-8", "replace").strip()
    if text == "ok":
        return None
    return text.removeprefix("error: ") or "the running hub closed the connection without an answer"
