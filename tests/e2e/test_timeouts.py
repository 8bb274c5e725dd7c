"""Timeouts: a participant that never answers does not leave a saga hanging.

Deadlines live in the changelog-backed index (tables/deadline_index.py); the timer of the
worker owning a saga's partition turns a due one into an event in the saga's stream."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest

from simulators.participants import Behaviour
from tests.support.flows import by_type, ended, publish_partners

pytestmark = pytest.mark.stack


def _ce_time(ce: dict) -> float:  # type: ignore[type-arg]
    return datetime.fromisoformat(ce["time"].replace("Z", "+00:00")).timestamp()


def _ids_per_saga(commands: list[dict]) -> dict[str, set[str]]:  # type: ignore[type-arg]
    out: dict[str, set[str]] = {}
    for c in commands:
        out.setdefault(c["sagaid"], set()).add(c["id"])
    return out


SILENT_ALIANZAS = Behaviour(no_reply_alliance=1.0)


@pytest.mark.parametrize("behaviour", [SILENT_ALIANZAS], ids=["alianzas-silent"])
async def test_500_silent_sagas_each_compensate_exactly_once(
        spawn, participants, taps, behaviour) -> None:  # type: ignore[no-untyped-def]
    # How fast they compensate is a benchmark's question (make bench-timeouts), not a test's:
    # the bounds below only stop a hung run, and hold on a machine several times slower.
    worker = spawn(env={"SAGA_CREATE_ALLIANCE_TIMEOUT_S": "2", "SAGA_MAX_ATTEMPTS": "2"})
    await worker.wait_ready(timeout=90)
    await publish_partners(participants, 500)
    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) == 500, 300, "500 sagas to compensate")
    assert all(types == ["SagaCompensated"] for types in ended(taps["lifecycle"]).values())
    # The taps read the command topics on subscriptions of their own: let them catch up.
    await taps["integraciones"].wait_for(
        lambda t: len(_ids_per_saga(by_type(t).get("RevertPartner", []))) == 500, 60,
        "a RevertPartner for each saga")
    await taps["alianzas"].wait_for(
        lambda t: sum(len(ids) for ids in _ids_per_saga(by_type(t).get("CreateAlliance", [])).values())
        >= 1000, 60, "two CreateAlliance attempts for each saga")
    # Two attempts of CreateAlliance each (distinct ids); then, since one may have been
    # carried out, exactly one CancelAlliance naming both, and exactly one RevertPartner.
    creates = _ids_per_saga(by_type(taps["alianzas"])["CreateAlliance"])
    cancels = by_type(taps["alianzas"])["CancelAlliance"]
    reverts = _ids_per_saga(by_type(taps["integraciones"])["RevertPartner"])
    assert len(creates) == 500 and all(len(ids) == 2 for ids in creates.values())
    assert len(_ids_per_saga(cancels)) == 500 and all(len(i) == 1 for i in _ids_per_saga(cancels).values())
    assert all(set(c["data"]["command_ids"]) == creates[c["sagaid"]] for c in cancels)
    assert len(reverts) == 500 and all(len(ids) == 1 for ids in reverts.values())
    assert set(reverts) == set(creates) == set(ended(taps["lifecycle"]))


@pytest.mark.parametrize("behaviour", [SILENT_ALIANZAS], ids=["alianzas-silent"])
async def test_a_deadline_set_before_sigkill_fires_after_restart(
        spawn, participants, taps, behaviour, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = {"SAGA_CREATE_ALLIANCE_TIMEOUT_S": "6", "SAGA_MAX_ATTEMPTS": "1"}
    first = spawn("a", env=env, datadir=tmp_path / "data")
    await first.wait_ready(timeout=30)
    await publish_partners(participants, 20)
    await taps["alianzas"].wait_for(lambda t: len(t.messages) >= 20, 30, "20 CreateAlliance")
    first_due = min(_ce_time(c) for c in taps["alianzas"].events()) + 6.0
    first.kill(signal.SIGKILL)
    assert time.time() < first_due, "the worker must die before any deadline is due"
    assert not ended(taps["lifecycle"])

    second = spawn("b", env=env, datadir=tmp_path / "data")  # same datadir: a restart
    await second.wait_ready(timeout=60)
    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) == 20, 60, "20 sagas to time out")
    assert all(types == ["SagaCompensated"] for types in ended(taps["lifecycle"]).values())
    assert len(_ids_per_saga(by_type(taps["integraciones"])["RevertPartner"])) == 20


@pytest.mark.parametrize("behaviour", [SILENT_ALIANZAS], ids=["alianzas-silent"])
async def test_with_two_workers_and_one_stopping_every_timeout_fires_once(
        spawn, participants, taps, behaviour) -> None:  # type: ignore[no-untyped-def]
    env = {"SAGA_CREATE_ALLIANCE_TIMEOUT_S": "3", "SAGA_MAX_ATTEMPTS": "2"}
    a, b = spawn("a", env=env), spawn("b", env=env)
    await asyncio.gather(a.wait_ready(timeout=60), b.wait_ready(timeout=60))
    await asyncio.sleep(3)  # let the group settle with both members
    await publish_partners(participants, 200)
    await taps["alianzas"].wait_for(lambda t: len(t.messages) >= 200, 30, "first attempts")
    b.stop()  # mid-run: its sagas' deadlines are pending, some may be firing
    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) == 200, 120, "200 sagas to time out")

    assert all(types == ["SagaCompensated"] for types in ended(taps["lifecycle"]).values())
    creates = _ids_per_saga(by_type(taps["alianzas"])["CreateAlliance"])
    reverts = _ids_per_saga(by_type(taps["integraciones"])["RevertPartner"])
    # A timeout applied twice would show as a third attempt or a second RevertPartner id.
    assert len(creates) == 200 and all(len(ids) == 2 for ids in creates.values())
    assert len(reverts) == 200 and all(len(ids) == 1 for ids in reverts.values())


async def test_a_completed_saga_never_times_out(spawn, participants, taps) -> None:  # type: ignore[no-untyped-def]
    worker = spawn(env={"SAGA_REPLY_TIMEOUT_S": "1", "SAGA_MAX_ATTEMPTS": "1"})
    await worker.wait_ready(timeout=30)
    await publish_partners(participants, 50)
    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) == 50, 30, "50 sagas to complete")
    await asyncio.sleep(3)  # well past every deadline they ever had
    assert all(types == ["SagaCompleted"] for types in ended(taps["lifecycle"]).values())
    assert "RevertPartner" not in by_type(taps["integraciones"])
    assert all(len(ids) == 1 for ids in _ids_per_saga(by_type(taps["alianzas"])["CreateAlliance"]).values())
    _, metrics = await worker.get("/metrics")
    assert "saga_timeouts_fired_total" not in metrics


@pytest.mark.parametrize("behaviour", [Behaviour(alliance_latency_s=3.0, duplicate_replies=True)],
                         ids=["alianzas-late"])
async def test_a_late_alliance_after_compensation_yields_exactly_one_cancel(
        spawn, participants, taps, behaviour) -> None:  # type: ignore[no-untyped-def]
    worker = spawn(env={"SAGA_CREATE_ALLIANCE_TIMEOUT_S": "1", "SAGA_MAX_ATTEMPTS": "1"})
    await worker.wait_ready(timeout=30)
    await publish_partners(participants, 30)
    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) == 30, 30, "30 sagas to compensate")
    await taps["alianzas"].wait_for(
        lambda t: sum(1 for e in t.events() if e["type"] == "CancelAlliance") >= 30, 30,
        "the late alliances to be cancelled")
    await asyncio.sleep(2)  # room for a wrong second cancel to show up
    assert all(types == ["SagaCompensated"] for types in ended(taps["lifecycle"]).values())
    cancels = _ids_per_saga(by_type(taps["alianzas"])["CancelAlliance"])
    assert len(cancels) == 30 and all(len(ids) == 1 for ids in cancels.values())
    assert participants.counts["alliance_created"] == 30
    assert participants.live_alliances == set()


@pytest.mark.parametrize("behaviour", [Behaviour(lose_alliance_reply=1.0)], ids=["alliance-replies-lost"])
async def test_a_step_whose_replies_were_lost_is_undone(
        spawn, participants, taps, behaviour) -> None:  # type: ignore[no-untyped-def]
    """Alianzas carries out every CreateAlliance, but every reply is lost: the saga gives up
    on the step and undoes it anyway (by partner id and every attempt's command id), so no
    alliance is left next to a reverted partner."""
    worker = spawn(env={"SAGA_CREATE_ALLIANCE_TIMEOUT_S": "1", "SAGA_MAX_ATTEMPTS": "2"})
    await worker.wait_ready(timeout=30)
    partners = await publish_partners(participants, 20)
    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) == 20, 60, "20 sagas to compensate")
    assert all(types == ["SagaCompensated"] for types in ended(taps["lifecycle"]).values())
    await taps["alianzas"].wait_for(lambda t: len(by_type(t).get("CancelAlliance", [])) >= 20, 30,
                                    "the CancelAlliances")
    assert participants.counts["alliance_created"] == 40  # each attempt made one
    assert participants.live_alliances == set()
    cancels = by_type(taps["alianzas"])["CancelAlliance"]
    assert {c["data"]["partner_id"] for c in cancels} == set(partners)
    assert all(len(c["data"]["command_ids"]) == 2 and c["data"]["alliance_id"] is None for c in cancels)
