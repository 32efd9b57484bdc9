"""The optional parts of a node, in start order.

Each entry is an async builder ``(node) -> Component | None``: it reads the node's settings,
returns None when its listener is switched off (port -1), and may add REST routers to
``node.ctx.extras["routers"]`` or metrics to ``node.ctx.extras["metrics"]`` before the HTTP app
is built. Add one line here per module; the node starts them in this order and stops them in
reverse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gatehub.node import ComponentFactory


def component_builders() -> list[ComponentFactory]:
    builders: list[ComponentFactory] = []
    return builders
