#!/usr/bin/env python3
"""Run sagas through a running deployment (local or compose) and report how they ended.

Starts N sagas with `POST /api/v1/saga/partner-creation`, spread over the workers given,
then polls `GET /api/v1/saga/status/{saga_id}` until each saga reaches a final status. With
the participant simulators behind the deployment, every saga's right ending is known in
advance (the simulators pick failures by a hash of the saga id, simulators/participants.py),
and the script checks each one against it; against real participants, pass --no-expect.

    python scripts/test_saga_integration.py                        # make run / make worker
    python scripts/test_saga_integration.py --url http://127.0.0.1:6069 --url http://127.0.0.1:6070
    python scripts/test_saga_integration.py --sagas 200 --fail-alliance 0.1 --fail-revert 0

Every call carries a bearer token with the read and start roles: --token, default
$SAGA_TOKEN, else $OPERATOR_TOKEN, else the local one `make run` and `make full-up` keep in
.stack/api-token. A worker that stops answering (killed, restarting) is skipped: every
request is retried on the others. Exit code 0: every saga ended, as expected; 1: some did
not; 2: bad arguments or no worker answers. Standard library only: any Python 3.11 runs it.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FINAL = ("completed", "compensated", "failed", "compensation_failed")


def share(saga_id: str, salt: str) -> float:
    """The simulators' stable draw in [0, 1) for a saga (simulators/participants.py `_share`)."""
    h = hashlib.blake2b(f"{salt}:{saga_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


@dataclass(frozen=True)
class Simulated:
    """The simulators' failure shares (their SIM_* settings) that decide each saga's end."""

    fail_partner: float = 0.05
    fail_alliance: float = 0.1
    no_reply_alliance: float = 0.0
    fail_revert: float = 0.1

    def expected(self, saga_id: str) -> set[str]:
        """The final statuses a saga started over HTTP may rightly end in."""
        if share(saga_id, "fail-partner") < self.fail_partner:
            return {"failed"}
        if share(saga_id, "no-reply-alliance") < self.no_reply_alliance or \
                share(saga_id, "fail-alliance") < self.fail_alliance:
            # Undone; a revert failing on every try (each try draws anew) ends it flagged.
            return {"compensated"} if self.fail_revert == 0 else {"compensated", "compensation_failed"}
        return {"completed"}


def default_token() -> str | None:
    """$SAGA_TOKEN, else $OPERATOR_TOKEN, else the local token in $STACK_DIR/api-token (what
    stack/token.sh generates for `make run` and `make full-up`), else None."""
    token = os.environ.get("SAGA_TOKEN") or os.environ.get("OPERATOR_TOKEN")
    if token:
        return token
    stack_dir = os.environ.get("STACK_DIR") or Path(__file__).resolve().parent.parent / ".stack"
    local = Path(stack_dir) / "api-token"
    try:
        return local.read_text().strip() or None
    except OSError:
        return None


class Workers:
    """The deployment's web addresses; a request goes to the next worker that answers, with
    the bearer token `token`."""

    def __init__(self, urls: Sequence[str], timeout_s: float = 5.0, token: str | None = None) -> None:
        self.urls = [u.rstrip("/") for u in urls]
        self.timeout_s = timeout_s
        self.token = token
        self._next = 0
        self._lock = threading.Lock()

    def _order(self) -> list[str]:
        with self._lock:
            self._next = (self._next + 1) % len(self.urls)
            return self.urls[self._next:] + self.urls[:self._next]

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """(status, JSON body) from the first worker that answers; (0, reason) if none did."""
        last = "no worker answered"
        for url in self._order():
            data = None if body is None else json.dumps(body).encode()
            headers = {"content-type": "application/json"}
            if self.token:
                headers["authorization"] = f"Bearer {self.token}"
            req = urllib.request.Request(url + path, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                    return r.status, json.loads(r.read() or b"null")
            except urllib.error.HTTPError as e:
                payload = e.read()
                if e.code in (502, 503, 504):  # owner gone or partition moving: try another
                    last = f"{url}: {e.code} {payload[:200]!r}"
                    continue
                try:
                    return e.code, json.loads(payload)
                except ValueError:
                    return e.code, payload.decode(errors="replace")
            except (OSError, ValueError, http.client.HTTPException) as e:
                # Refused, reset, timed out: a worker gone. HTTPException: not an HTTP answer,
                # as when a dead worker's host port lies in the ephemeral range and the client's
                # connection to it lands on itself (TCP self-connect) and reads its own request.
                last = f"{url}: {e!r}"
        return 0, last

    def wait_ready(self, within_s: float, path: str = "/health") -> bool:
        """True once one worker answers `path` with 200."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if self.request("GET", path)[0] == 200:
                return True
            time.sleep(1)
        return False

    def wait_all_ready(self, within_s: float) -> list[str]:
        """Wait until every worker answers /ready with 200 in the same round (joined its
        group, not rebalancing or recovering, Pulsar and PostgreSQL reachable); the workers
        that did not, empty when all did."""
        deadline = time.monotonic() + within_s
        while True:
            not_ready = [url for url in self.urls
                         if Workers([url], token=self.token).request("GET", "/ready")[0] != 200]
            if not not_ready or time.monotonic() > deadline:
                return not_ready
            time.sleep(1)


@dataclass
class Run:
    started: dict[str, str] = field(default_factory=dict)  # saga id -> correlation id
    ended: dict[str, str] = field(default_factory=dict)  # saga id -> final status
    refused: list[str] = field(default_factory=list)


def start_sagas(workers: Workers, n: int, tag: str, *, retry_for_s: float = 120.0,
                rate: float | None = None, on_started: Callable[[int], None] | None = None) -> Run:
    """POST n sagas (idempotent per correlation id, so a retry after a lost answer is safe);
    with `rate`, saga i is started no sooner than i / rate seconds after the first."""
    run = Run()
    lock = threading.Lock()
    t0 = time.monotonic()

    def one(i: int) -> None:
        if rate:
            time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
        corr = f"{tag}-{i}"
        body = {"nombre": f"Partner {tag} {i}", "email": f"p{i}@{tag}.example.com",
                "telefono": "+57 300 000 0000", "direccion": "Calle 1 # 2-3", "correlation_id": corr}
        deadline = time.monotonic() + retry_for_s
        while True:
            status, answer = workers.request("POST", "/api/v1/saga/partner-creation", body)
            if status == 202:
                with lock:
                    run.started[answer["saga_id"]] = corr
                    if on_started:
                        on_started(len(run.started))
                return
            if (status != 0 and status < 500) or time.monotonic() > deadline:
                with lock:
                    run.refused.append(f"{corr}: {status} {answer}")
                return
            time.sleep(0.5)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(n)))
    return run


def wait_ended(workers: Workers, run: Run, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        pending = [s for s in run.started if s not in run.ended]
        if not pending:
            return

        def poll(saga_id: str) -> None:
            status, answer = workers.request("GET", f"/api/v1/saga/status/{saga_id}")
            if status == 200 and isinstance(answer, dict) and answer.get("status") in FINAL:
                run.ended[saga_id] = answer["status"]

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(poll, pending))
        time.sleep(1)


def report(run: Run, expect: Simulated | None) -> bool:
    """Print how the sagas ended; True when every one ended, as expected."""
    counts = Counter(run.ended.values())
    not_ended = [s for s in run.started if s not in run.ended]
    wrong = [] if expect is None else [
        f"{s} ended {st}, expected {' or '.join(sorted(expect.expected(s)))}"
        for s, st in run.ended.items() if st not in expect.expected(s)]
    print(f"sagas started: {len(run.started)}   refused: {len(run.refused)}")
    print("ended: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) if counts else "ended: none")
    print(f"not ended: {len(not_ended)}" + ("" if expect is None else f"   ended wrongly: {len(wrong)}"))
    for line in (run.refused[:5] + [f"{s} not ended" for s in not_ended[:5]] + wrong[:5]):
        print(f"  {line}")
    return bool(run.started) and not run.refused and not not_ended and not wrong


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", action="append", help="a worker's web address (repeatable); "
                   "default http://127.0.0.1:6066")
    p.add_argument("--token", default=default_token(),
                   help="bearer token with the read and start roles (default $SAGA_TOKEN, else "
                        "$OPERATOR_TOKEN, else .stack/api-token)")
    p.add_argument("--sagas", type=int, default=20)
    p.add_argument("--within", type=float, default=180.0, help="seconds for every saga to end")
    p.add_argument("--rate", type=float, help="start at most this many sagas a second (default: at once)")
    p.add_argument("--no-expect", action="store_true", help="real participants: only report")
    p.add_argument("--fail-partner", type=float, default=0.05, help="the simulators' SIM_FAIL_PARTNER")
    p.add_argument("--fail-alliance", type=float, default=0.1, help="the simulators' SIM_FAIL_ALLIANCE")
    p.add_argument("--no-reply-alliance", type=float, default=0.0, help="SIM_NO_REPLY_ALLIANCE")
    p.add_argument("--fail-revert", type=float, default=0.1, help="the simulators' SIM_FAIL_REVERT")
    args = p.parse_args(argv)
    if args.sagas < 1:
        p.error("--sagas must be at least 1")
    workers = Workers(args.url or ["http://127.0.0.1:6066"], token=args.token)
    if not workers.wait_ready(60):
        print(f"no worker answers /health at {', '.join(workers.urls)}", file=sys.stderr)
        return 2
    expect = None if args.no_expect else Simulated(args.fail_partner, args.fail_alliance,
                                                   args.no_reply_alliance, args.fail_revert)
    t0 = time.monotonic()
    run = start_sagas(workers, args.sagas, f"itest-{uuid.uuid4().hex[:8]}", rate=args.rate)
    wait_ended(workers, run, args.within)
    print(f"({time.monotonic() - t0:.1f} s)")
    if any(r.split(": ", 1)[-1].startswith(("401", "403")) for r in run.refused):
        print("the workers refused the token (401/403): give one with the read and start roles "
              "(--token, SAGA_TOKEN or OPERATOR_TOKEN)", file=sys.stderr)
    return 0 if report(run, expect) else 1


if __name__ == "__main__":
    sys.exit(main())
