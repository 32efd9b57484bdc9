"""States of a server connection."""

from __future__ import annotations

from enum import Enum


class State(Enum):
    AWAITING_CONNECT = "awaiting_connect"
    CONNECTING = "connecting"  # CONNECT received; waiting for accept() / refuse() (or AUTH)
    CONNECTED = "connected"
    CLOSED = "closed"
