"""What the HTTP layer serves: the node's application services (``HubContext`` is their name
in the HTTP code, kept so that routers read as before)."""

from __future__ import annotations

from gatehub.services.context import Services as HubContext

__all__ = ["HubContext"]
