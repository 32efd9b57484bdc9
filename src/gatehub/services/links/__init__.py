"""Device links (seed 002): TCP/UDP relays through the hub to a device, or to a sub-device through
its gateway's tunnel. The use cases (``service.DeviceLinks``), what a link is (``model``), the port
pool (``pool``) and the shapes the relays and the tunnel share (``contracts``)."""

from gatehub.services.links.model import Link, LinkRequest, Mode, Target, normalise_ip
from gatehub.services.links.service import DeviceLinks

__all__ = ["DeviceLinks", "Link", "LinkRequest", "Mode", "Target", "normalise_ip"]
