"""A changed partner-creation flow, as a team would ship it as version 2: a step added (wait
for compliance to approve the alliance's contract) and a timeout changed (create_partner's
reply timeout 30 s -> 10 s)."""

from __future__ import annotations

from dataclasses import replace

from domain.definition import Action, RetryPolicy, SagaDefinition, Step, partner_creation
from domain.messages import Destination

V2_CREATE_PARTNER_TIMEOUT_S = 10.0


def partner_creation_v2() -> SagaDefinition:
    v1 = partner_creation()
    create_partner, create_alliance = v1.steps
    faster = replace(create_partner, do=replace(create_partner.do,
                                                policy=RetryPolicy(reply_timeout_s=V2_CREATE_PARTNER_TIMEOUT_S)))
    compliance = Step(name="await_compliance", in_progress="awaiting_compliance", done="contract_approved",
                      do=Action(None, Destination.COMPLIANCE, succeeded="ContractApproved",
                                failed="ContractRejected",
                                policy=RetryPolicy(reply_timeout_s=60.0, max_attempts=1)),
                      undo=None)
    return replace(v1, version=2, steps=(faster, create_alliance, compliance))
