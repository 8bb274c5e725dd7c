"""The saga definitions with the step policies taken from the settings."""

from __future__ import annotations

from domain.definition import Definitions, RetryPolicy, SagaDefinition, alpes_partner, partner_creation
from runtime.settings import Settings

__all__ = ["definition_from", "definitions_from"]


def _policy(cfg: Settings, timeout: float | None, attempts: int) -> RetryPolicy:
    return RetryPolicy(reply_timeout_s=timeout or cfg.reply_timeout_s, max_attempts=attempts,
                       backoff_s=cfg.backoff_s, backoff_max_s=cfg.backoff_max_s)


def definitions_from(cfg: Settings) -> Definitions:
    """Every deployed version of every flow: a saga keeps the flow and version it started
    with (`SagaState.flow`, `flow_version`). A new version of a flow is added here beside the
    ones that still have sagas (docs/upgrades.md, "Saga definitions")."""
    partner = {
        "create_partner": _policy(cfg, cfg.create_partner_timeout_s, cfg.max_attempts),
        "create_alliance": _policy(cfg, cfg.create_alliance_timeout_s, cfg.max_attempts),
        "revert_partner": _policy(cfg, cfg.revert_partner_timeout_s, cfg.undo_max_attempts),
        "cancel_alliance": _policy(cfg, cfg.cancel_alliance_timeout_s, cfg.undo_max_attempts),
    }
    alpes = {
        "create_partner": partner["create_partner"],
        "delete_partner": _policy(cfg, cfg.revert_partner_timeout_s, cfg.undo_max_attempts),
        "await_contract": _policy(cfg, cfg.alpes_contract_timeout_s, 1),
        "await_compliance": _policy(cfg, cfg.alpes_compliance_timeout_s, 1),
    }
    return Definitions((partner_creation(partner), alpes_partner(alpes)))


def definition_from(cfg: Settings, deployed: Definitions | None = None) -> SagaDefinition:
    """The flow new sagas start with, at its newest version: the participant profile's
    (PARTICIPANTS)."""
    deployed = deployed or definitions_from(cfg)
    return deployed.newest("alpes-partner" if cfg.participants == "alpes" else "partner-creation")
