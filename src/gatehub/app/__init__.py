"""The composition root: :class:`gatehub.app.node.Node` builds the services
(:mod:`gatehub.services`) and the transports from Settings, starts and stops them."""
