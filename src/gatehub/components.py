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
    from gatehub.transports.mqtt.component import build as build_mqtt

    builders.append(build_mqtt)
    from gatehub.pki_service import build_pki_service
    from gatehub.transports.grpc.server import build_grpc_listener

    builders += [build_pki_service, build_grpc_listener]
    from gatehub.transports.http.iotda import build_iotda

    builders.append(build_iotda)
    from gatehub.devicelink.component import build as build_devicelink

    builders.append(build_devicelink)
    from gatehub.store.compaction import build as build_compaction

    builders.append(build_compaction)
    return builders
