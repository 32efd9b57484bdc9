"""Deprecated import path: the node now lives in :mod:`gatehub.app.node` (the composition root).

Kept for one release so that ``from gatehub.node import Node, serve`` keeps working.
"""

from __future__ import annotations

import warnings

from gatehub.app.node import Component, Endpoints, Node, run_loop, serve, settle_heap

__all__ = ["Component", "Endpoints", "Node", "run_loop", "serve", "settle_heap"]

warnings.warn(
    "gatehub.node is deprecated and goes away in the next release: import from gatehub.app.node",
    DeprecationWarning,
    stacklevel=2,
)
