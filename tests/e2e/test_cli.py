"""`python -m orchestrator sagas ...` against a running worker: what an operator types."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest

from simulators.participants import Behaviour
from tests.support.flows import ended, publish_partners
from tests.support.worker import OPERATOR_TOKEN, ROOT, Worker

pytestmark = pytest.mark.stack

FAST = {"SAGA_BACKOFF_S": "0.2", "SAGA_UNDO_MAX_ATTEMPTS": "2", "DEADLINE_TICK_S": "0.1"}


def cli(worker: Worker, *args: str, token: str | None = OPERATOR_TOKEN,
        argv: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m orchestrator sagas --url <worker> ARGS` (or `python -m orchestrator ARGV`),
    with `token` in SAGA_TOKEN (None: no token at all)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPERATOR_TOKEN", "SAGA_TOKEN")}
    if token is not None:
        env["SAGA_TOKEN"] = token
    argv = argv if argv is not None else ["sagas", "--url", worker.url, *args]
    return subprocess.run([sys.executable, "-m", "orchestrator", *argv],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


async def listed(worker: Worker, *args: str, at_least: int, within_s: float = 60.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within_s
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        done = cli(worker, "--json", "list", *args)
        assert done.returncode == 0, done.stderr
        rows = json.loads(done.stdout)
        if len(rows) >= at_least:
            return rows
        await asyncio.sleep(0.5)
    raise AssertionError(f"list {args} gave {len(rows)} sagas, wanted {at_least}")


@pytest.mark.parametrize("behaviour", [Behaviour(fail_alliance=0.5, fail_revert=1.0)], ids=["half-stuck"])
async def test_the_cli_lists_shows_and_operates_sagas(spawn, participants, taps, behaviour) -> None:  # type: ignore[no-untyped-def]
    worker = spawn(env=FAST)
    await worker.wait_ready(timeout=60)
    partners = await publish_partners(participants, 8)
    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) == 8, 60, "8 sagas to end")

    rows = await listed(worker, "--all", at_least=8)
    by_status: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_status.setdefault(r["status"], []).append(r)
    assert set(by_status) <= {"completed", "compensation_failed"} and len(rows) == 8
    stuck = by_status["compensation_failed"]
    assert stuck and by_status["completed"]

    # Filters: several statuses at once, origin, search by partner id (and by saga id).
    both = await listed(worker, "--status", "completed", "--status", "compensation_failed", at_least=8)
    assert len(both) == 8
    assert json.loads(cli(worker, "--json", "list", "--origin", "http").stdout) == []
    one = json.loads(cli(worker, "--json", "list", "--search", partners[0]).stdout)
    assert [r["partner_id"] for r in one] == [partners[0]]
    again = json.loads(cli(worker, "--json", "list", "--search", one[0]["saga_id"]).stdout)
    assert [r["saga_id"] for r in again] == [one[0]["saga_id"]]
    paged = cli(worker, "--json", "list", "--limit", "3")
    assert len(json.loads(paged.stdout)) == 3 and "--cursor" in paged.stderr
    # Options after the command, or before `sagas`, as well as between.
    for argv in (["sagas", "list", "--json", "--url", worker.url],
                 ["--url", worker.url, "sagas", "list", "--json"]):
        placed = cli(worker, argv=argv)
        assert placed.returncode == 0 and len(json.loads(placed.stdout)) == 8, placed.stderr

    # Tables, needs attention, a saga's page.
    text = cli(worker, "list").stdout
    assert "SAGA ID" in text and "compensation_failed" in text and "ago" in text
    attention = json.loads(cli(worker, "--json", "list", "--attention").stdout)
    assert {r["saga_id"] for r in attention} == {r["saga_id"] for r in stuck}
    assert all("gave up after 2 attempts" in r["reason"] for r in attention)
    saga_id = stuck[0]["saga_id"]
    shown = cli(worker, "show", saga_id)
    assert shown.returncode == 0, shown.stderr
    assert "compensation_failed  (needs attention)" in shown.stdout
    assert "timeline" in shown.stdout and "- -> started" in shown.stdout and "RevertPartner" in shown.stdout
    assert "-> compensation_failed" in shown.stdout
    history = json.loads(cli(worker, "--json", "history", saga_id).stdout)
    assert history[0]["to_status"] == "started" and history[-1]["to_status"] == "compensation_failed"

    # Exit codes: not found 1, usage 2; every call needs a token (refused: 1, saying why).
    assert cli(worker, "show", str(uuid.uuid4())).returncode == 1
    assert cli(worker, "list", "--status", "no-such-status").returncode == 2
    assert cli(worker, "list", "--limit", "0").returncode == 2
    assert cli(worker, "frobnicate").returncode == 2
    for args in (("retry", saga_id), ("list",), ("show", saga_id)):
        no_token = cli(worker, *args, token=None)
        assert no_token.returncode == 1 and "401" in no_token.stderr and "SAGA_TOKEN" in no_token.stderr
    wrong = cli(worker, "retry", saga_id, token="wrong-token-0123456789")
    assert wrong.returncode == 1 and "401" in wrong.stderr
    given = cli(worker, "--token", "wrong-token-0123456789", "list", token=OPERATOR_TOKEN)
    assert given.returncode == 1 and "401" in given.stderr  # --token wins over the environment
    retried = cli(worker, "retry", saga_id)
    assert retried.returncode == 0 and "accepted" in retried.stdout, retried.stderr
    assert cli(worker, "retry", str(uuid.uuid4())).returncode == 1


@pytest.mark.parametrize("behaviour", [Behaviour(no_reply_alliance=1.0)], ids=["alianzas-silent"])
async def test_the_cli_cancels_a_live_saga(spawn, participants, taps, behaviour) -> None:  # type: ignore[no-untyped-def]
    worker = spawn(env={**FAST, "SAGA_CREATE_ALLIANCE_TIMEOUT_S": "120"})
    await worker.wait_ready(timeout=60)
    await publish_partners(participants, 1)
    (row,) = await listed(worker, "--status", "alliance_creation_in_progress", at_least=1)
    done = cli(worker, "cancel", row["saga_id"], "--reason", "operator said so")
    assert done.returncode == 0, done.stderr
    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) == 1, 60, "the cancelled saga to end")
    shown = json.loads(cli(worker, "--json", "show", row["saga_id"]).stdout)
    assert shown["state"]["status"] == "compensated" and shown["state"]["reason"] == "operator said so"
