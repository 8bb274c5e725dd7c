"""The project's one retry policy: exponential backoff with jitter (tenacity), a cap per wait,
and a budget after which the caller gives up and says so.

Every loop that waits and tries again (a Pulsar send, a PostgreSQL write, a participant's
HTTP API, a restarted bridge or mirror) takes its `Policy` from `POLICIES` by name, so the
figures live here, in one table, and can be changed per deployment without code:
`RETRY_<NAME>=initial_s,max_s,budget_s` (budget `inf`: retry until it works, for loops whose
caller reports the trouble elsewhere, e.g. /ready). Jitter spreads the retries of several
workers that failed together.

Two shapes:
- exceptions: `async for attempt in policy.retrying(retry_on=(...,)): with attempt: ...`
  (tenacity's AsyncRetrying), or `await policy.call(fn, retry_on=...)`;
- results (a batch whose items fail one by one): `waits = policy.waits()` then
  `await waits.sleep()` between rounds; `waits.exhausted` once the budget is spent.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    stop_never,
    wait_exponential_jitter,
)

__all__ = ["POLICIES", "Policy", "Waits", "policy"]

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Policy:
    """Wait `initial_s`, doubling up to `max_s` (plus up to `initial_s` of jitter), until
    `budget_s` seconds have passed since the first try (math.inf: no end)."""

    name: str
    initial_s: float
    max_s: float
    budget_s: float = math.inf

    def wait(self) -> wait_exponential_jitter:
        return wait_exponential_jitter(multiplier=self.initial_s, max=self.max_s, jitter=self.initial_s)

    def retrying(self, *, retry_on: tuple[type[BaseException], ...] = (Exception,),
                 logger: logging.Logger | None = None) -> AsyncRetrying:
        """tenacity's AsyncRetrying with this policy; the last error is re-raised when the
        budget is spent."""
        lg = logger or log

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            lg.warning("%s: try %d failed (%r); retrying in %.1fs", self.name, state.attempt_number,
                       exc, wait)

        return AsyncRetrying(
            wait=self.wait(),
            stop=stop_never if math.isinf(self.budget_s) else stop_after_delay(self.budget_s),
            retry=retry_if_exception_type(retry_on),
            before_sleep=before_sleep,
            reraise=True,
        )

    async def call(self, fn: Callable[[], Awaitable[T]], *,
                   retry_on: tuple[type[BaseException], ...] = (Exception,),
                   logger: logging.Logger | None = None) -> T:
        async for attempt in self.retrying(retry_on=retry_on, logger=logger):
            with attempt:
                return await fn()
        raise AssertionError("unreachable: tenacity re-raises when it stops")  # pragma: no cover

    def waits(self) -> Waits:
        return Waits(self)


class Waits:
    """The waits of one retry loop whose failures are results, not exceptions."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._wait = policy.wait()
        self._started = time.monotonic()
        self.attempt = 0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    @property
    def exhausted(self) -> bool:
        return self.elapsed >= self.policy.budget_s

    def next_delay(self) -> float:
        self.attempt += 1
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = self.attempt
        return float(self._wait(state))

    async def sleep(self) -> float:
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay

    def reset(self) -> None:
        """It worked for a while: the next failure is a new one, waited for from the start."""
        self._wait = self.policy.wait()
        self._started = time.monotonic()
        self.attempt = 0


_DEFAULTS = (
    # Pulsar sends of commands and dead letters: until they go through (/ready and the
    # metrics say meanwhile that they do not).
    Policy("pulsar-send", 0.2, 5.0),
    # A send round of the outbound bridge that failed (dead-lettering or acknowledging):
    # past the budget the worker is not ready, past it twice it stops (bridges/pulsar_outbound.py).
    Policy("outbound-round", 0.2, 5.0, budget_s=30.0),
    # Opening Pulsar producers at start-up.
    Policy("pulsar-producer", 0.5, 10.0),
    # A bridge pump that failed (Pulsar or Kafka unreachable a while) is started again.
    Policy("bridge-restart", 1.0, 30.0),
    # The snapshot mirror (child process or task) started again after a crash.
    Policy("mirror-restart", 1.0, 30.0),
    # A snapshot write to PostgreSQL: until it answers (the changelog keeps everything).
    Policy("snapshot-write", 0.5, 1.0),
    # Creating the snapshot schema when the mirror runs elsewhere.
    Policy("snapshot-schema", 1.0, 30.0),
    # One call to a participant's HTTP API: its tries within one saga attempt (the saga's
    # own step retries come on top).
    Policy("participant-http", 0.2, 5.0, budget_s=15.0),
    # An Alpes command sent on Pulsar (the saga's deadline gives up on the step in time).
    Policy("participant-pulsar", 0.2, 5.0, budget_s=60.0),
    # Looking up a partner at integraciones (PartnerCreado of an unknown partner).
    Policy("partner-lookup", 0.5, 10.0, budget_s=60.0),
)
POLICIES: dict[str, Policy] = {p.name: p for p in _DEFAULTS}


def _from_env(env: Mapping[str, str]) -> None:
    for name, p in list(POLICIES.items()):
        raw = env.get("RETRY_" + name.upper().replace("-", "_"))
        if not raw:
            continue
        try:
            initial, most, budget = (float(x) for x in raw.split(","))
        except ValueError as exc:
            raise SystemExit(f"RETRY_{name.upper().replace('-', '_')} must be initial_s,max_s,budget_s "
                             f"(budget inf: no end), got {raw!r}") from exc
        if not (0 < initial <= most and budget > 0):
            raise SystemExit(f"RETRY_{name.upper().replace('-', '_')}: need 0 < initial_s <= max_s and "
                             f"budget_s > 0, got {raw!r}")
        POLICIES[name] = replace(p, initial_s=initial, max_s=most, budget_s=budget)


_from_env(os.environ)


def policy(name: str) -> Policy:
    return POLICIES[name]
