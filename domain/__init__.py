"""The saga's rules: states, transitions and compensations, with no I/O.

Nothing here imports Faust, a broker client or a database driver; `tests/unit` checks
that, and tests every status against every event type.
"""

from domain.definition import (
    ALPES_PARTNER,
    PARTNER_CREATION,
    Definitions,
    RetryPolicy,
    SagaDefinition,
    UnknownDefinition,
    alpes_partner,
    definitions,
    partner_creation,
)
from domain.messages import (
    ALL_EVENT_TYPES,
    PARTICIPANT_EVENT_TYPES,
    Command,
    Destination,
    PartnerData,
    SagaEvent,
)
from domain.state import TERMINAL, Deadline, SagaState, SagaStatus, Transition
from domain.transition import Decision, decide

__all__ = [
    "ALL_EVENT_TYPES",
    "ALPES_PARTNER",
    "PARTICIPANT_EVENT_TYPES",
    "PARTNER_CREATION",
    "TERMINAL",
    "Command",
    "Deadline",
    "Decision",
    "Definitions",
    "Destination",
    "PartnerData",
    "RetryPolicy",
    "SagaDefinition",
    "SagaEvent",
    "SagaState",
    "SagaStatus",
    "Transition",
    "UnknownDefinition",
    "alpes_partner",
    "decide",
    "definitions",
    "partner_creation",
]
