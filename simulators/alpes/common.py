"""What the Alpes simulators share: the behaviour (faults drawn per partner email), the
topics, the services' enums, the publish signature."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime

from simulators.participants import _share

log = logging.getLogger("simulators.alpes")

#: Namespace of the uuid5 ids made up here (compliance's contrato_id when the contract has none).
ALPES_NS = uuid.UUID("5d0c8f8e-3b0a-4c47-9a55-8f2b6c1e7a40")

#: Publishes one message: (full topic name, payload). Pulsar in AlpesParticipants; a fake in tests.
Publish = Callable[[str, bytes], Awaitable[None]]

#: AlpesBehaviour field -> salt of its share. `chooses` and `email_with` accept either name.
FAULTS: dict[str, str] = {
    "fail_post_after_save": "fail-post",
    "fail_delete": "fail-delete",
    "reject_contract": "reject-contract",
    "no_contract": "no-contract",
}
_FIELD_OF_SALT = {salt: name for name, salt in FAULTS.items()}

# gestion-de-alianzas' enums (TipoContrato, EstadoContrato: lower-case values) and compliance's lists.
TIPOS_CONTRATO = ("CPA", "CPL", "CPC", "revshare", "fijo")
ESTADOS_CONTRATO = ("activo", "inactivo", "vencido", "cancelado", "rechazado")
CONDICIONES = ("Condición A", "Condición B", "Condición C", "Condición D")
MONEDAS_CONTRATO = ("COP", "USD")  # what the simulated alianzas picks from (all pass compliance)
MONTO_MAXIMO = 50000
MONTO_RECHAZO = 75000.0  # the monto of a contract drawn by `reject_contract`
MONEDAS_PERMITIDAS = ("USD", "EUR", "COP", "MXN")
ESTADOS_VALIDOS = ("ACTIVO", "PENDIENTE", "SUSPENDIDO")
VALIDACIONES = ("monto_y_limites", "moneda_y_jurisdiccion", "partner_y_reputacion", "estado_y_vigencia")


def _topic(name: str) -> str:
    return name if "://" in name else f"persistent://public/default/{name}"


def _now() -> datetime:
    """Naive UTC, as the real services' datetime.utcnow()."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class AlpesBehaviour:
    """Faults, each a share of partners drawn by a stable hash of the partner's email (so a
    run is reproducible, and `email_with` finds an email that has, or has not, a fault)."""

    # Share of emails whose first POST saves the partner, then answers 500. Every later POST
    # of that email gets 409 (the partner exists), as with the real service.
    fail_post_after_save: float = 0.0
    # Whether such a failed POST still published PartnerCreado before its 500 (the partner
    # exists, so alianzas then makes a contract); False: no event at all for that partner.
    publish_on_failed_post: bool = True
    fail_delete: float = 0.0  # share of emails whose every DELETE answers 500, deleting nothing
    reject_contract: float = 0.0  # share of emails whose contract has monto 75000 (compliance rejects)
    no_contract: float = 0.0  # share of emails for which alianzas never publishes a contract
    latency_s: float = 0.0  # before each HTTP answer and each message handled

    def chooses(self, email: str, salt_name: str) -> bool:
        """Whether the fault `salt_name` ("fail-post", "fail-delete", "reject-contract",
        "no-contract", or the field's name) is drawn for this email."""
        name = _FIELD_OF_SALT.get(salt_name, salt_name)
        if name not in FAULTS:
            raise ValueError(f"unknown fault {salt_name!r}; one of {sorted(FAULTS.values())}")
        share: float = getattr(self, name)
        return _share(email, FAULTS[name]) < share


def email_with(behaviour: AlpesBehaviour, fault: str, want: bool = True, prefix: str = "p",
               avoid: Iterable[str] = (), limit: int = 100_000) -> str:
    """The first `f"{prefix}-{n}@example.com"` that has (want=True) or has not the fault, and
    none of the faults in `avoid`. Raises ValueError if none is found in `limit` tries (e.g.
    want=True for a share of 0)."""
    avoided = list(avoid)
    for n in range(limit):
        email = f"{prefix}-{n}@example.com"
        if behaviour.chooses(email, fault) == want and not any(behaviour.chooses(email, a) for a in avoided):
            return email
    raise ValueError(f"no email with {fault}={want} (avoiding {avoided}) among {limit} tries")


@dataclass
class AlpesTopics:
    """The Alpes topic names; each becomes `persistent://public/default/NAME` unless given in full."""

    partner_creado: str = "PartnerCreado"
    comando_crear_partner: str = "comando-crear-partner"
    partner_eliminado: str = "eventos-partners-eliminado"
    contrato_creado: str = "ContratoCreado"
    contrato_aprobado: str = "contrato-aprobado"
    contrato_rechazado: str = "contrato-rechazado"

    def __post_init__(self) -> None:
        for f in fields(self):
            setattr(self, f.name, _topic(getattr(self, f.name)))

    @classmethod
    def prefixed(cls, prefix: str) -> AlpesTopics:
        """`{prefix}-{default name}` for every topic: a test's own topics (the prefix may be a
        bare name, e.g. f"alpes-{uuid4()}", or a full persistent://tenant/ns/name)."""
        return cls(**{f.name: f"{prefix}-{f.default}" for f in fields(cls)})
