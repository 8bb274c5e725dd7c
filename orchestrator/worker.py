"""The worker module: the app with every topic, table, agent, bridge and view registered.

    python -m orchestrator worker --web-port 6066     (what `make worker` runs)
"""

from __future__ import annotations

import agents.deadlines
import agents.partner_routing
import agents.partner_saga
import agents.ports
import agents.retention
import bridges.alpes
import bridges.outbox
import bridges.pulsar_inbound
import bridges.pulsar_outbound
import orchestrator.services
import orchestrator.web
import orchestrator.web_ops
import streams.partner_saga
import tables.partner_saga
from runtime.app import app

__all__ = ["app"]

# The adapters the agents use (agents/ports.py).
agents.ports.bind(partners=bridges.alpes.ALPES, snapshots=orchestrator.services.STORE)

_registered = (agents.deadlines, agents.partner_routing, agents.partner_saga, agents.retention,
               bridges.outbox, bridges.pulsar_inbound, bridges.pulsar_outbound, orchestrator.services,
               orchestrator.web, orchestrator.web_ops, streams.partner_saga, tables.partner_saga)
