"""Application services: the use cases of the hub, transport-neutral and ready for a bus.

A transport (MQTT dialect, HTTP, gRPC, device-link listener) translates its wire format into
calls on these; a service never imports a transport and never knows which dialect spoke. When a
service must reach a device's session it goes through a small port that the transport holding
the session implements (e.g. the RPC service's ``Downlink``), so that a later cluster bus can
carry the same call to another node.

- ``registry``: tenants' device gateways, their certificates and the blacklist (G-SDK rules)
- ``pki``: the blacklist the listeners apply, kept equal to the store's
- ``context``: :class:`Services`, what the composition root builds and every transport receives
"""
