"""gatehub.agent: the gateway side of gatehub (seed 001), as a library and a daemon.

The agent connects a gateway to a hub over MQTT 5 (aiomqtt) with the ThingsBoard gateway API
and gatehub's extension, keeps seed 001's LocalTopoList, LocalDevList and RemovedDevList,
reconciles them with the hub after every connect, and sends every reading through a persistent
outbox. A gateway maker writes only a driver (``gatehub.agent.drivers.Driver``). docs/agent.md.
"""

from __future__ import annotations

from gatehub.agent.agent import Agent
from gatehub.agent.config import AgentConfig, agent_config, load_agent_config
from gatehub.agent.contracts import SubDeviceView
from gatehub.agent.extensions import AgentExtension, ExtensionContext

__all__ = [
    "Agent",
    "AgentConfig",
    "AgentExtension",
    "ExtensionContext",
    "SubDeviceView",
    "agent_config",
    "load_agent_config",
]
