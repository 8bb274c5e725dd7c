"""The partner -> saga index: finds the saga of a participant event that names only a partner.

A PartnerCreated that names a saga (sagaid, or the correlationid of an HTTP-started saga)
registers its partner with that saga; one that names none opens the partner's own saga.
A partner has one partner-creation saga: a second PartnerCreated for it goes to the saga it
already has, which records it as a duplicate.
"""

from __future__ import annotations

from faust.types import StreamT
from pydantic import ValidationError

from agents.dead_letters import dead_letter
from domain import ids
from orchestrator.app import app
from orchestrator.metrics import METRICS
from streams.partner_saga import partner_routing, saga_events
from tables.partner_saga import partner_sagas
from wire.cloudevents import Inbound
from wire.internal import PartnerRouted, SagaEnvelope
from wire.routing import saga_for

__all__ = ["route_partner_events"]


@app.agent(partner_routing, name="partner-routing")
async def route_partner_events(stream: StreamT[bytes]) -> None:
    async for event in stream.events():
        try:
            msg = PartnerRouted.model_validate_json(event.value)
        except ValidationError as exc:
            await dead_letter(event.value, f"invalid routing message: {exc.errors()[0]['msg']}",
                              origin=partner_routing.get_topic_name())
            continue
        known_raw = partner_sagas.get(msg.partner_id)
        known = known_raw.decode() if known_raw is not None else None
        if msg.type == "ForgetPartner":  # retention: its saga left the live tables
            if known is not None and known == msg.saga_id:
                del partner_sagas[msg.partner_id]
            continue
        saga_id = saga_for(msg, known)
        if saga_id is not None and saga_id == msg.tried:
            saga_id = None  # the partner's own saga, already tried: it does not exist
        if saga_id is None:
            await dead_letter(msg.raw.encode(), f"no saga to match: no saga for partner {msg.partner_id}",
                              origin=msg.origin, message_id=msg.event_id)
            continue
        inbound = Inbound(msg.type, msg.event_id, msg.saga_id, msg.correlation_id, msg.partner_id,
                          msg.fields)
        try:
            envelope = SagaEnvelope(event=inbound.event(saga_id), raw=msg.raw, origin=msg.origin,
                                    received_at=msg.received_at)
        except ValidationError as exc:
            await dead_letter(msg.raw.encode(), f"invalid event: {exc.errors()[0]['msg']}",
                              origin=msg.origin, message_id=msg.event_id)
            continue
        if msg.type == "PartnerCreated" and known in (None, saga_id) \
                and saga_id != ids.saga_id_for_partner(msg.partner_id):
            # Only sagas whose id the partner id does not give (HTTP-started ones) need an
            # entry. Written again on a replay too: the changelog must hold it even if the
            # first write reached only the local store before a crash.
            partner_sagas[msg.partner_id] = saga_id.encode()
        METRICS.inc("routed_total", type=msg.type)
        await saga_events.send(key=saga_id.encode(), value=envelope.model_dump_json().encode())
