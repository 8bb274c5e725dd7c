"""The saga definition with the step policies taken from the settings."""

from __future__ import annotations

from domain.definition import RetryPolicy, SagaDefinition, partner_creation
from orchestrator.config import Settings

__all__ = ["definition_from"]


def definition_from(cfg: Settings) -> SagaDefinition:
    def policy(timeout: float | None, attempts: int) -> RetryPolicy:
        return RetryPolicy(reply_timeout_s=timeout or cfg.reply_timeout_s, max_attempts=attempts,
                           backoff_s=cfg.backoff_s, backoff_max_s=cfg.backoff_max_s)

    return partner_creation({
        "create_partner": policy(cfg.create_partner_timeout_s, cfg.max_attempts),
        "create_alliance": policy(cfg.create_alliance_timeout_s, cfg.max_attempts),
        "revert_partner": policy(cfg.revert_partner_timeout_s, cfg.undo_max_attempts),
        "cancel_alliance": policy(cfg.cancel_alliance_timeout_s, cfg.undo_max_attempts),
    })
