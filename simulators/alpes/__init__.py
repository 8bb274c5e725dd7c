"""Simulators of the real Alpes participant services, in their own wire formats (wire.alpes):
one module per service (integraciones.py, alianzas.py, compliance.py), the three together on
Pulsar (participants.py), what they share (common.py), the command line (__main__.py).

Unlike simulators.participants (this project's CloudEvents contract), these behave like the
services on the main branch of the Alpes project, quirks included:

- gestion-de-integraciones (Flask in reality; aiohttp here, default port 5001): partners over
  HTTP (`/api/v1/partners`), a `comando-crear-partner` consumer (Avro), and Avro events
  `PartnerCreado` (after every creation, published BEFORE the HTTP 201 is answered) and
  `eventos-partners-eliminado` (after a soft delete). It knows nothing of idempotency keys.
  Like the real service, its consumer and producers register its Avro schemas with Pulsar
  (`AlpesParticipants.schemas`): started after something opened `comando-crear-partner`
  without a schema, its consumer is refused (IncompatibleSchema) and `start()` raises, as the
  real service's consumer thread gives up.
- gestion-de-alianzas (FastAPI in reality; aiohttp here, default port 8001): consumes
  `PartnerCreado` itself, makes a contract for the partner and publishes it as raw UTF-8 JSON
  on `ContratoCreado`, with `"id": null` (as the real one does).
- compliance: consumes `ContratoCreado`, applies its rules and publishes raw JSON on
  `contrato-aprobado` or `contrato-rechazado`.

Faults are drawn per partner EMAIL with simulators.participants._share (see AlpesBehaviour),
so a test picks an email that triggers, or avoids, each fault with `email_with`.

    python -m simulators.alpes [--reject-contract 0.2] [--fail-delete 0.1] ...
"""

from simulators.alpes.alianzas import Alianzas, make_contract
from simulators.alpes.common import ALPES_NS, FAULTS, AlpesBehaviour, AlpesTopics, Publish, email_with
from simulators.alpes.compliance import Compliance, contrato_id_for, review
from simulators.alpes.integraciones import Integraciones
from simulators.alpes.participants import AlpesParticipants

__all__ = [
    "ALPES_NS",
    "FAULTS",
    "Alianzas",
    "AlpesBehaviour",
    "AlpesParticipants",
    "AlpesTopics",
    "Compliance",
    "Integraciones",
    "Publish",
    "contrato_id_for",
    "email_with",
    "make_contract",
    "review",
]

