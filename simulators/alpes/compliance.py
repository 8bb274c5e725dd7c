"""compliance as it is: consumes ContratoCreado, applies its rules, publishes raw JSON on
contrato-aprobado or contrato-rechazado."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import datetime
from typing import Any

from simulators.alpes.common import (
    ALPES_NS,
    ESTADOS_VALIDOS,
    MONEDAS_PERMITIDAS,
    MONTO_MAXIMO,
    VALIDACIONES,
    AlpesTopics,
    Publish,
    log,
)
from wire.alpes import (
    DecodeError,
    json_decode,
    json_encode,
)

# --- compliance --------------------------------------------------------------------------------


def contrato_id_for(partner_id: str) -> str:
    """compliance's contrato_id for a contract whose id is null: a uuid5 of the partner id."""
    return str(uuid.uuid5(ALPES_NS, f"contrato:{partner_id}"))


def _validacion_fallida(causa: str) -> str:
    """The real service names the failed rule from its message, in this order."""
    lower = causa.lower()
    if "monto" in lower or "límite" in lower:
        return "MONTO_INVALIDO"
    if "moneda" in lower:
        return "MONEDA_NO_PERMITIDA"
    if "partner" in lower:
        return "PARTNER_INVALIDO"
    if "estado" in lower:
        return "ESTADO_INVALIDO"
    return "VALIDACION_GENERAL"


def review(contract: dict[str, Any], now: datetime | None = None) -> tuple[bool, dict[str, Any]]:
    """compliance's verdict on a ContratoCreado: (approved, the JSON to publish).

    Rules, in the real order, the first broken one rejecting: monto > 50000 (MONTO_INVALIDO);
    moneda not in USD, EUR, COP, MXN (MONEDA_NO_PERMITIDA; the case is NOT folded);
    partner_id shorter than 10 characters (PARTNER_INVALIDO); estado.upper() not in ACTIVO,
    PENDIENTE, SUSPENDIDO (ESTADO_INVALIDO; the case IS folded, so alianzas' "activo"
    passes). Missing fields default as in the real consumer (monto 0, moneda "USD", estado
    "PENDIENTE"); a value the rules cannot compare (monto null or a string, estado not a
    string) rejects with ERROR_TECNICO. contrato_id is the contract's id when not null, else
    contrato_id_for(partner_id); tipo defaults to "STANDARD"; estado is echoed as received.
    """
    now = now or datetime.now()
    partner_id = contract.get("partner_id")
    contrato_id = contract.get("id")
    if contrato_id is None:
        contrato_id = contrato_id_for(str(partner_id))
    monto = contract.get("monto", 0)
    moneda = contract.get("moneda", "USD")
    estado = contract.get("estado", "PENDIENTE")
    out: dict[str, Any] = {"partner_id": partner_id, "contrato_id": contrato_id, "monto": monto,
                           "moneda": moneda, "estado": estado, "tipo": contract.get("tipo") or "STANDARD"}
    try:
        if monto > MONTO_MAXIMO:
            raise ValueError(f"Monto {monto} excede límite máximo de 50,000")
        if moneda not in MONEDAS_PERMITIDAS:
            raise ValueError(f"Moneda {moneda} no está en la lista de permitidas")
        if not partner_id or len(partner_id) < 10:
            raise ValueError("Partner ID inválido")
        if estado.upper() not in ESTADOS_VALIDOS:
            raise ValueError(f"Estado {estado} no válido")
    except ValueError as exc:
        causa, fallida = str(exc), _validacion_fallida(str(exc))
    except Exception as exc:
        causa, fallida = f"Error técnico en procesamiento: {exc}", "ERROR_TECNICO"
    else:
        return True, {**out, "fecha_aprobacion": now.isoformat(), "validaciones_pasadas": list(VALIDACIONES)}
    return False, {**out, "fecha_rechazo": now.isoformat(), "causa_rechazo": causa,
                   "validacion_fallida": fallida}


class Compliance:
    """compliance: approves or rejects every contract on `ContratoCreado` (see review), on
    `contrato-aprobado` / `contrato-rechazado` (raw JSON). Bytes that are not a JSON object,
    or an object without a partner_id string, are logged and acked, nothing published."""

    def __init__(self, publish: Publish, topics: AlpesTopics | None = None,
                 counts: Counter[str] | None = None, latency_s: float = 0.0) -> None:
        self.publish = publish
        self.topics = topics or AlpesTopics()
        self.counts: Counter[str] = counts if counts is not None else Counter()
        self.latency_s = latency_s
        self.approved: list[dict[str, Any]] = []  # what was published, in order
        self.rejected: list[dict[str, Any]] = []

    async def on_contrato_creado(self, payload: bytes) -> None:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        try:
            contract = json_decode(payload)
        except DecodeError as exc:
            self.counts["garbage_contrato_creado"] += 1
            log.warning("compliance: undecodable ContratoCreado dropped: %s", exc)
            return
        partner_id = contract.get("partner_id")
        if not isinstance(partner_id, str) or not partner_id:
            self.counts["garbage_contrato_creado"] += 1
            log.warning("compliance: ContratoCreado without partner_id dropped: %s", contract)
            return
        approved, body = review(contract)
        topic = self.topics.contrato_aprobado if approved else self.topics.contrato_rechazado
        await self.publish(topic, json_encode(body))
        if approved:
            self.counts["approvals"] += 1
            self.approved.append(body)
            log.info("compliance: contract of partner %s approved", partner_id)
        else:
            self.counts["rejections"] += 1
            self.rejected.append(body)
            log.info("compliance: contract of partner %s rejected: %s", partner_id, body["causa_rechazo"])
