"""Wire facts of the gatehub extensions of the ThingsBoard gateway API, version 1, shared by the
hub (``transports/mqtt/thingsboard_ext.py``) and the agent (``agent/``). Specified in
docs/thingsboard.md, "gatehub extensions"."""

from __future__ import annotations

import hashlib
import hmac

EXT_VERSION = 1
TOPO_REQUEST = "v1/gateway/topology/request"
TOPO_RESPONSE = "v1/gateway/topology/response"
TOPO_ADD = "v1/gateway/topology/add"
TOPO_ADD_RESPONSE = "v1/gateway/topology/add/response"
TOPO_DELETE = "v1/gateway/topology/delete"
TOPO_DELETE_RESPONSE = "v1/gateway/topology/delete/response"
TOPO_CHANGE = "v1/gateway/topology/change"
REGISTER = "v1/gateway/register"
REGISTER_RESPONSE = "v1/gateway/register/response"
BATCH = "v1/gateway/batch"
ANSWERS = {
    TOPO_REQUEST: TOPO_RESPONSE,
    TOPO_ADD: TOPO_ADD_RESPONSE,
    TOPO_DELETE: TOPO_DELETE_RESPONSE,
    REGISTER: REGISTER_RESPONSE,
}
MAX_PER_REQUEST = 100  # devices in one add, delete or register request
SEQ_MAX = 2**63 - 1


def register_sign(product_secret: str, device_name: str, product_key: str, random: str) -> str:
    """HMAC-SHA256 (lowercase hex) keyed by the product secret over
    ``deviceName{name}productKey{key}random{random}``, as Alink's dynamic registration signs."""
    msg = f"deviceName{device_name}productKey{product_key}random{random}".encode()
    return hmac.new(product_secret.encode(), msg, hashlib.sha256).hexdigest()
